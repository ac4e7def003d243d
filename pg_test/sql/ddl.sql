-- DDL on governed columns (issue #13, item 5). The trigger depends on the columns it governs
-- (pg_depend), as a trigger with UPDATE OF does: DROP COLUMN is refused unless CASCADE,
-- ALTER COLUMN TYPE is refused, RENAME COLUMN keeps the column governed.
SET client_min_messages = notice;
CREATE TABLE g (id int PRIMARY KEY, stage text, prior text, other text);
SELECT stage_norm.attach('g', 'stage', 'prior');
SELECT pg_describe_object(classid, objid, objsubid) AS dependent,
       pg_describe_object(refclassid, refobjid, refobjsubid) AS referenced, deptype
  FROM pg_depend WHERE classid = 'pg_trigger'::regclass AND refobjsubid > 0
   AND objid IN (SELECT oid FROM pg_trigger WHERE tgrelid = 'g'::regclass) ORDER BY 2;
ALTER TABLE g DROP COLUMN stage;
ALTER TABLE g ALTER COLUMN stage TYPE varchar(40);
ALTER TABLE g ALTER COLUMN prior TYPE int USING NULL;
-- Other columns are free.
ALTER TABLE g ALTER COLUMN other TYPE varchar(10);
ALTER TABLE g DROP COLUMN other;
-- Rename: the trigger follows.
ALTER TABLE g RENAME COLUMN stage TO phase;
SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'g'::regclass AND tgname = 'stage_norm_normalize';
INSERT INTO g VALUES (1, 'Series A', 'pre seed') RETURNING *;
ALTER TABLE g RENAME COLUMN prior TO earlier;
UPDATE g SET earlier = 'SEED' RETURNING *;
-- DROP COLUMN ... CASCADE drops the trigger (PostgreSQL says so); the table's writes go on.
ALTER TABLE g DROP COLUMN phase CASCADE;
INSERT INTO g VALUES (2, 'whatever') RETURNING *;
SELECT stage_norm.attach('g', 'earlier');
INSERT INTO g VALUES (3, 'Series B') RETURNING *;
-- A trigger created by hand (or by a restore) gets its dependencies from the event trigger.
CREATE TABLE h (id int, stage text);
CREATE TRIGGER stage_norm_normalize BEFORE INSERT OR UPDATE ON h
    FOR EACH ROW EXECUTE FUNCTION stage_norm.normalize_trigger('stage');
ALTER TABLE h DROP COLUMN stage;
ALTER TABLE h RENAME COLUMN stage TO "Stage; drop table h --";
INSERT INTO h VALUES (1, 'seed round') RETURNING *;
-- DROP TABLE needs no CASCADE.
DROP TABLE g, h;
