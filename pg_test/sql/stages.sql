-- A fund's own stage set (issue #14): define, see, rank, rename, remove, refusals, reset.
SET client_min_messages = notice;
-- The default set, as a view: position, the built-in forms each stage takes, its aliases.
TABLE stage_norm.stages;
SELECT to_regtype('stage_norm.stage_set') IS NULL AS default_set;

-- A table governed by the trigger and by add_check, a narrow column, an alias.
CREATE TABLE deals (id int PRIMARY KEY, stage text, prior varchar(9));
SELECT stage_norm.attach('deals', 'stage', 'prior');
INSERT INTO deals VALUES (1, 'Series A', 'seed'), (2, 'Series D', 'Series C');
CALL stage_norm.add_check('deals', 'stage');
SELECT stage_norm.add_alias('Angel', 'pre-seed');

-- Refusals, each leaving everything as it was.
SELECT stage_norm.set_stages('Seed');
SELECT stage_norm.set_stages('pre-seed', 'pre_seed');
SELECT stage_norm.set_stages('series-c', 'series-c+');
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'a-very-long-stage-name');   -- prior is varchar(9)
SELECT stage_norm.set_stages('seed', 'series-a', 'series-b', 'series-c');                  -- Angel -> pre-seed
SELECT stage_norm.remove_alias('Angel');
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');  -- row 2 holds series-c+
DO $$
DECLARE s text; d text;
BEGIN
    PERFORM stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, d = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'sqlstate=% detail=%', s, d;
END $$;
TABLE stage_norm.stages;
-- Names: one shape, no NULL, no invalid UTF-8, none ending in "round" (it could not map to itself).
SELECT stage_norm.set_stages('seed-', 'x--y');
SELECT stage_norm.set_stages('seed', NULL);
SELECT stage_norm.set_stages('pre-seed', 'seed', 'seed-round');
CREATE CAST (bytea AS text) WITHOUT FUNCTION;
SELECT stage_norm.set_stages(VARIADIC ARRAY['seed', '\xc3'::bytea::text]);
SELECT stage_norm._check_stage_set('\x73656564c3'::bytea::text);
DROP CAST (bytea AS text);
SELECT stage_norm.rename_stage('seed', 'series-a');
-- An index, a generated column or a materialized view over is_canonical_stage would go stale:
-- refused while one exists.
CREATE INDEX deals_unmigrated ON deals (id) WHERE NOT stage_norm.is_canonical_stage(stage);
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c+', 'pre-ipo');
DROP INDEX deals_unmigrated;
CREATE MATERIALIZED VIEW deals_ok AS SELECT id, stage_norm.is_canonical_stage(stage) AS ok FROM deals;
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c+', 'pre-ipo');
DROP MATERIALIZED VIEW deals_ok;

-- Moving rows of a CHECK-governed column to a new set: one transaction, documented.
BEGIN;
ALTER TABLE deals DROP CONSTRAINT stage_stage_canonical;
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');
UPDATE deals SET stage = 'series-d' WHERE stage = 'series-c+';
COMMIT;
CALL stage_norm.add_check('deals', 'stage');
TABLE stage_norm.stages;
SELECT enum_range(NULL::stage_norm.stage_set) AS the_enum_type;
SELECT array_agg(s) AS canonical_stages FROM stage_norm.canonical_stages() s;

-- The normalizer, rank and CHECK helper follow the set; the IMMUTABLE builtin does not.
SELECT x AS label, stage_norm.normalize_stage(x), stage_norm.stage_rank(stage_norm.normalize_stage(x)),
       stage_norm.is_canonical_stage(x), stage_norm.normalize_stage_builtin(x)
  FROM unnest(ARRAY['Series C', 'series d2', 'Series E', 'Series C+', 'Growth Round', 'growth', 'pre seed', 'series-c+']) x;
SELECT stage FROM unnest(ARRAY['growth', 'seed', 'series-d', 'pre-seed', 'series-a']) stage
 WHERE stage_norm.stage_rank(stage) >= stage_norm.stage_rank('series-a') ORDER BY stage_norm.stage_rank(stage);
-- Aliases point at stages of the current set; the rules of the set cannot be redefined.
SELECT stage_norm.add_alias('Series E', 'growth');
SELECT stage_norm.add_alias('Series C', 'growth');
SELECT stage_norm.add_alias('IPO prep', 'series-c+');

-- The trigger, in warn and enforce, with the messages naming the current set.
INSERT INTO deals VALUES (3, 'Series E', 'series c'), (4, 'Growth', 'pre_seed');
SET stage_norm.mode = 'enforce';
INSERT INTO deals VALUES (5, 'Series C+', NULL);
RESET stage_norm.mode;
SELECT * FROM deals ORDER BY id;

-- Rename: aliases follow; rows are moved by the documented UPDATE (no CHECK on growth rows here).
BEGIN;
ALTER TABLE deals DROP CONSTRAINT stage_stage_canonical;
SELECT stage_norm.rename_stage('growth', 'pre-ipo');
UPDATE deals SET stage = 'pre-ipo' WHERE stage = 'growth';
COMMIT;
CALL stage_norm.add_check('deals', 'stage', validate => false);
ALTER TABLE deals VALIDATE CONSTRAINT stage_stage_canonical;
TABLE stage_norm.stages;
SELECT stage_norm.rename_stage('nope', 'x');

-- A CHECK that runs user-defined code is not re-checked with the extension owner's rights: the
-- change is refused instead (it would run that code as the owner).
CREATE ROLE sn_mallory;
CREATE FUNCTION mallory_ok(text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN RAISE NOTICE 'ran as a superuser'; END IF; RETURN true; END $$;
ALTER FUNCTION mallory_ok(text) OWNER TO sn_mallory;
CREATE TABLE trap (stage text CHECK (stage_norm.is_canonical_stage(stage) AND mallory_ok(stage)));
INSERT INTO trap VALUES ('seed');
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'pre-ipo', 'growth');
DROP TABLE trap;
DROP FUNCTION mallory_ok(text);
DROP ROLE sn_mallory;
-- A refused change shows failing values only to a caller who may read them.
CREATE ROLE sn_stage_dba LOGIN;
GRANT EXECUTE ON FUNCTION stage_norm.set_stages(text[]) TO sn_stage_dba;
CREATE TABLE secret (id int, stage text);
INSERT INTO secret VALUES (1, 'series-d');
CALL stage_norm.add_check('secret', 'stage');
\c - sn_stage_dba
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'pre-ipo');
\c - postgres
GRANT SELECT ON secret TO sn_stage_dba;
\c - sn_stage_dba
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'pre-ipo');
\c - postgres
DROP TABLE secret;
REVOKE ALL ON FUNCTION stage_norm.set_stages(text[]) FROM sn_stage_dba;
DROP ROLE sn_stage_dba;
SET client_min_messages = notice;

-- Who may change the set: not PUBLIC.
CREATE ROLE sn_stage_app;
SET ROLE sn_stage_app;
SELECT stage_norm.set_stages('seed');
SELECT stage_norm.rename_stage('seed', 'seedling');
SELECT stage_norm.reset_stages();
RESET ROLE;
DROP ROLE sn_stage_app;

-- Back to the default set in one call (after moving the rows that only the custom set knows).
SELECT stage_norm.remove_alias('Series E');
BEGIN;
ALTER TABLE deals DROP CONSTRAINT stage_stage_canonical;
SELECT stage_norm.reset_stages();
UPDATE deals SET stage = coalesce(stage_norm.normalize_stage(stage), 'series-c+');  -- later stages fold into the catch-all
COMMIT;
SELECT to_regtype('stage_norm.stage_set') IS NULL AS default_set;
SELECT * FROM deals ORDER BY id;
DROP TABLE deals;
-- DROP EXTENSION leaves schema stage_norm (and a custom set's type) behind; a new install
-- starts from the default set.
SELECT stage_norm.set_stages('pre-seed', 'seed', 'growth');
DROP EXTENSION stage_norm;
SELECT to_regtype('stage_norm.stage_set') IS NOT NULL AS type_left_behind;
CREATE EXTENSION stage_norm;
SELECT array_agg(s) AS canonical_stages FROM stage_norm.canonical_stages() s;
