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
-- Inheritance: ALTER TABLE recurses to children, and their own triggers follow the rename.
CREATE TABLE ip (stage text);
CREATE TABLE ic () INHERITS (ip);
SELECT stage_norm.attach('ip', 'stage'), stage_norm.attach('ic', 'stage');
ALTER TABLE ip RENAME COLUMN stage TO phase;
INSERT INTO ic VALUES ('Seed') RETURNING *;
DROP TABLE ic, ip;
-- With USAGE on schema stage_norm revoked from PUBLIC, ordinary DDL and writes still work (the
-- event trigger is SECURITY DEFINER; the trigger reads its configuration as a superuser).
CREATE ROLE sn_carol LOGIN;
GRANT CREATE ON SCHEMA public TO sn_carol;
CREATE TABLE gov (id int, stage text);
SELECT stage_norm.attach('gov', 'stage');
GRANT INSERT, SELECT ON gov TO sn_carol;
REVOKE USAGE ON SCHEMA stage_norm FROM PUBLIC;
\c - sn_carol
CREATE TABLE carol_t (a int);
ALTER TABLE carol_t ADD COLUMN b text;
CREATE TEMP TABLE carol_tmp (a int);
INSERT INTO gov VALUES (1, 'Series A') RETURNING *;
-- Dropped here, not at the session's exit: DROP ROLE below would race the exiting backend's
-- cleanup of its temporary schema (PostgreSQL's "cache lookup failed for relation").
DROP TABLE carol_tmp;
\c - postgres
GRANT USAGE ON SCHEMA stage_norm TO PUBLIC;
DROP TABLE carol_t, gov;
REVOKE CREATE ON SCHEMA public FROM sn_carol;
DROP ROLE sn_carol;
-- DROP TABLE needs no CASCADE.
DROP TABLE g, h;
