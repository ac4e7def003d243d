-- add_check: CHECK (stage_norm.is_canonical_stage(col)), NOT VALID then VALIDATE.
CREATE TABLE portfolio (id int PRIMARY KEY, stage text, stage_v varchar(20), stage_c char(12), n int);
INSERT INTO portfolio VALUES (1, 'seed', 'series-a', 'series-b', 1), (2, NULL, NULL, NULL, 2);
CALL stage_norm.add_check('portfolio', 'stage');
SELECT conname, convalidated, pg_get_constraintdef(oid) FROM pg_constraint
 WHERE conrelid = 'portfolio'::regclass AND contype = 'c' ORDER BY conname;
-- NULL passes (NOT NULL is a NOT NULL constraint's job); anything non-canonical fails.
INSERT INTO portfolio (id, stage) VALUES (3, NULL);
INSERT INTO portfolio (id, stage) VALUES (4, 'Seed');
-- Running it again is a no-op.
CALL stage_norm.add_check('portfolio', 'stage');
-- validate => false leaves it NOT VALID, for a later VALIDATE CONSTRAINT; allowed in a transaction.
BEGIN;
CALL stage_norm.add_check('portfolio', 'stage_v', validate => false);
COMMIT;
SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'portfolio'::regclass AND conname = 'stage_v_stage_canonical';
ALTER TABLE portfolio VALIDATE CONSTRAINT stage_v_stage_canonical;
-- char(n) works (the value is blank-trimmed by the cast to text).
CALL stage_norm.add_check('portfolio', 'stage_c');
-- Validation fails on existing bad rows and leaves the NOT VALID constraint for the DBA.
CREATE TABLE legacy (id int PRIMARY KEY, stage text);
INSERT INTO legacy VALUES (1, 'Series A');
CALL stage_norm.add_check('legacy', 'stage');
SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'legacy'::regclass AND contype <> 'n';  -- (18 records NOT NULL there)
-- Errors: inside a transaction block (with validate), missing table, missing column, not text.
BEGIN;
CALL stage_norm.add_check('portfolio', 'stage');
ROLLBACK;
CALL stage_norm.add_check('no_such_table', 'stage');
CALL stage_norm.add_check('portfolio', 'no_such_column');
CALL stage_norm.add_check('portfolio', 'n');
CALL stage_norm.add_check('portfolio', NULL);
-- The error fields are set, for clients that branch on them.
DO $$
DECLARE t text; c text; n text; s text;
BEGIN
    CALL stage_norm.add_check('portfolio', 'n', false);
EXCEPTION WHEN datatype_mismatch THEN
    GET STACKED DIAGNOSTICS t = TABLE_NAME, c = COLUMN_NAME, n = SCHEMA_NAME, s = RETURNED_SQLSTATE;
    RAISE NOTICE 'sqlstate=% schema=% table=% column=%', s, n, t, c;
END $$;
-- Domains over text are accepted.
CREATE DOMAIN stage_label AS text;
CREATE TABLE d (stage stage_label);
CALL stage_norm.add_check('d', 'stage');
-- A long column name gets a short predictable name.
CREATE TABLE long_names (a_very_long_column_name_that_goes_on_and_on_for_a_while text);
CALL stage_norm.add_check('long_names', 'a_very_long_column_name_that_goes_on_and_on_for_a_while');
SELECT conname FROM pg_constraint WHERE conrelid = 'long_names'::regclass;
DROP TABLE portfolio, legacy, d, long_names;
DROP DOMAIN stage_label;
