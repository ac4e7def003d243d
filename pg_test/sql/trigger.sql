-- The normalizing trigger: attach/detach, every mode, UPDATE semantics, column types.
SET client_min_messages = notice;
CREATE TABLE pc (id int PRIMARY KEY, stage text, other int DEFAULT 0);
-- attach: errors first.
SELECT stage_norm.attach('pc', 'other');
SELECT stage_norm.attach('pc', 'nope');
SELECT stage_norm.attach('pc', VARIADIC ARRAY[]::name[]);
SELECT stage_norm.attach('pc', 'stage', 'stage');
CREATE TABLE short_v (stage varchar(5));
SELECT stage_norm.attach('short_v', 'stage');
DO $$
DECLARE s text; n text; t text; c text;
BEGIN
    PERFORM stage_norm.attach('short_v', 'stage');
EXCEPTION WHEN datatype_mismatch THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, n = SCHEMA_NAME, t = TABLE_NAME, c = COLUMN_NAME;
    RAISE NOTICE 'sqlstate=% schema=% table=% column=%', s, n, t, c;
END $$;
-- A domain over varchar(5) is as short as varchar(5) (attach used to accept it, and the first
-- row then failed with 42804).
CREATE DOMAIN short_stage AS varchar(5);
CREATE TABLE short_d (stage short_stage);
SELECT stage_norm.attach('short_d', 'stage');
DROP TABLE short_d;
DROP DOMAIN short_stage;
SELECT stage_norm.attach('pc', 'stage');
SELECT tgname, tgtype, pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'pc'::regclass ORDER BY tgname;
-- attach again replaces (same names, no error).
SELECT stage_norm.attach('pc', 'stage');
SELECT count(*) FROM pg_trigger WHERE tgrelid = 'pc'::regclass;

-- The settings exist once the library is loaded in the session (its first function call or
-- trigger firing, or shared_preload_libraries / session_preload_libraries).
SHOW stage_norm.mode;
SELECT stage_norm.effective_mode('pc');
SHOW stage_norm.mode;
-- warn (the default): known variants rewritten, unknown stored, bounded warnings + summary.
INSERT INTO pc (id, stage) VALUES (1, 'Series A '), (2, 'seed'), (3, 'Angel'), (4, NULL),
    (5, 'x1'), (6, 'x2'), (7, 'x3'), (8, 'x4'), (9, 'Ｓｅｒｉｅｓ　Ｃ＋');
SELECT id, stage FROM pc ORDER BY id;
SELECT * FROM stage_norm.session_counters;
-- A big statement still gets at most 3 warnings and one summary with the exact count.
INSERT INTO pc (id, stage) SELECT i, CASE WHEN i % 10 = 0 THEN 'mystery ' || i ELSE 'Series B' END
  FROM generate_series(100, 10099) i;
SELECT count(*) FILTER (WHERE stage = 'series-b') AS rewritten, count(*) FILTER (WHERE stage LIKE 'mystery%') AS kept
  FROM pc WHERE id >= 100;
DELETE FROM pc WHERE id >= 100;

-- enforce: unknown values abort the statement with 23514 and the error fields.
SET stage_norm.mode = enforce;
INSERT INTO pc (id, stage) VALUES (20, 'pre_seed');
INSERT INTO pc (id, stage) VALUES (21, 'Series Q+'), (22, 'Bridge');
SELECT id, stage FROM pc WHERE id >= 20 ORDER BY id;
DO $$
DECLARE s text; n text; t text; c text; m text;
BEGIN
    INSERT INTO pc (id, stage) VALUES (23, 'Bridge');
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS s = RETURNED_SQLSTATE, n = SCHEMA_NAME, t = TABLE_NAME, c = COLUMN_NAME, m = MESSAGE_TEXT;
    RAISE NOTICE 'sqlstate=% schema=% table=% column=% message=%', s, n, t, c, m;
END $$;
-- A long value is quoted shortened in the message.
INSERT INTO pc (id, stage) VALUES (24, repeat('z', 200));
-- NULL is never rejected.
INSERT INTO pc (id, stage) VALUES (25, NULL);
-- UPDATE: a value the statement did not change is left alone, even if unknown.
UPDATE pc SET other = other + 1;
UPDATE pc SET stage = stage WHERE id = 3;
UPDATE pc SET stage = 'SEED' WHERE id = 3;
SELECT id, stage, other FROM pc WHERE id IN (3, 5) ORDER BY id;
UPDATE pc SET stage = 'nonsense' WHERE id = 5;
-- An alias makes a value known, from the next statement.
SELECT stage_norm.add_alias('Bridge', 'seed');
INSERT INTO pc (id, stage) VALUES (26, 'BRIDGE');
SELECT stage FROM pc WHERE id = 26;
SELECT stage_norm.remove_alias('bridge');

-- shadow: the row is never changed, nothing is rejected; only counted.
SET stage_norm.mode = shadow;
INSERT INTO pc (id, stage) VALUES (30, 'pre_seed'), (31, 'Nope'), (32, 'seed');
SELECT id, stage FROM pc WHERE id >= 30 ORDER BY id;
-- off: nothing at all.
SET stage_norm.mode = off;
INSERT INTO pc (id, stage) VALUES (40, 'pre_seed'), (41, 'Nope');
SELECT id, stage FROM pc WHERE id >= 40 ORDER BY id;
SELECT * FROM stage_norm.session_counters;

-- Per-table override and the ceiling.
SELECT stage_norm.set_table_mode('pc', 'enforce');
SELECT table_name, columns, override_mode, effective_mode, trigger_enabled FROM stage_norm.table_modes;
INSERT INTO pc (id, stage) VALUES (50, 'Nope');
SET stage_norm.max_mode = warn;
INSERT INTO pc (id, stage) VALUES (50, 'Nope');
SET stage_norm.max_mode = off;
INSERT INTO pc (id, stage) VALUES (51, 'Series A');
SELECT id, stage FROM pc WHERE id >= 50 ORDER BY id;
RESET stage_norm.max_mode;
SELECT stage_norm.set_table_mode('pc', 'bogus');
SELECT stage_norm.set_table_mode('pc', NULL);
SELECT table_name, override_mode, effective_mode FROM stage_norm.table_modes;

-- The precedence table: effective = min(override, else stage_norm.mode; stage_norm.max_mode).
CREATE TABLE prec (stage text);
CREATE FUNCTION pg_temp.prec_matrix() RETURNS TABLE (override text, max_mode text, "mode=off" text, "mode=shadow" text, "mode=warn" text, "mode=enforce" text)
LANGUAGE plpgsql AS $$
DECLARE o text; x text; r text[]; m text;
BEGIN
    FOREACH o IN ARRAY ARRAY['(none)', 'off', 'shadow', 'warn', 'enforce'] LOOP
        PERFORM stage_norm.set_table_mode('prec', CASE WHEN o = '(none)' THEN NULL ELSE o END);
        FOREACH x IN ARRAY ARRAY['off', 'shadow', 'warn', 'enforce'] LOOP
            PERFORM set_config('stage_norm.max_mode', x, true);
            r := ARRAY[]::text[];
            FOREACH m IN ARRAY ARRAY['off', 'shadow', 'warn', 'enforce'] LOOP
                PERFORM set_config('stage_norm.mode', m, true);
                r := r || stage_norm.effective_mode('prec');
            END LOOP;
            override := o; max_mode := x;
            "mode=off" := r[1]; "mode=shadow" := r[2]; "mode=warn" := r[3]; "mode=enforce" := r[4];
            RETURN NEXT;
        END LOOP;
    END LOOP;
END $$;
BEGIN;
SELECT * FROM pg_temp.prec_matrix();
ROLLBACK;

-- Canary: enforce_percent rejects a deterministic share of rows, by primary key.
CREATE TABLE canary (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('canary', 'stage');
SET stage_norm.mode = enforce;
SET client_min_messages = error;
CREATE FUNCTION pg_temp.try_insert(p_id int, p_stage text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO canary VALUES (p_id, p_stage);
    DELETE FROM canary WHERE id = p_id;
    RETURN true;
EXCEPTION WHEN check_violation THEN
    RETURN false;
END $$;
SET stage_norm.enforce_percent = 0;
SELECT count(*) FILTER (WHERE NOT pg_temp.try_insert(i, 'Nope')) AS rejected_at_0 FROM generate_series(1, 1000) i;
SET stage_norm.enforce_percent = 100;
SELECT count(*) FILTER (WHERE NOT pg_temp.try_insert(i, 'Nope')) AS rejected_at_100 FROM generate_series(1, 1000) i;
SET stage_norm.enforce_percent = 10;
SELECT count(*) FILTER (WHERE NOT pg_temp.try_insert(i, 'Nope')) BETWEEN 50 AND 150 AS about_10_percent
  FROM generate_series(1, 1000) i;
-- Deterministic: the same rows get the same answer every time.
SELECT (SELECT array_agg(i ORDER BY i) FROM generate_series(1, 300) i WHERE NOT pg_temp.try_insert(i, 'Nope'))
     = (SELECT array_agg(i ORDER BY i) FROM generate_series(1, 300) i WHERE NOT pg_temp.try_insert(i, 'Other'))
       AS same_rows_whatever_the_value;
-- Without a primary key, the bucket is a hash of the value: the same value, the same answer.
CREATE TABLE canary_nopk (stage text);
SELECT stage_norm.attach('canary_nopk', 'stage');
CREATE FUNCTION pg_temp.try_nopk(p_stage text) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO canary_nopk VALUES (p_stage);
    RETURN true;
EXCEPTION WHEN check_violation THEN
    RETURN false;
END $$;
SELECT count(DISTINCT pg_temp.try_nopk('value ' || (i % 50))) <= 2 AS consistent,
       bool_and(pg_temp.try_nopk('value 7') = pg_temp.try_nopk('value 7')) AS same_value_same_answer
  FROM generate_series(1, 200) i;
-- The bucket hashes the primary key as the row was written, even when the key is a governed
-- column that the same row rewrites ('Seed' -> 'seed') before another column's unknown value
-- asks for it: the same rows are rejected as when the key column is not governed.
SET stage_norm.enforce_percent = 50;
CREATE TABLE canary_key (stage text, round text, amt int, PRIMARY KEY (stage, amt));
SELECT stage_norm.attach('canary_key', 'stage', 'round');
CREATE TABLE canary_key_ref (stage text, round text, amt int, PRIMARY KEY (stage, amt));
SELECT stage_norm.attach('canary_key_ref', 'round');
CREATE FUNCTION pg_temp.try_key(tbl regclass, p_amt int) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('INSERT INTO %s VALUES (%L, %L, %s)', tbl, 'Seed', 'Nope', p_amt);
    RETURN true;
EXCEPTION WHEN check_violation THEN
    RETURN false;
END $$;
CREATE TEMP TABLE canary_key_answers AS
  SELECT i, pg_temp.try_key('canary_key', i) AS governed, pg_temp.try_key('canary_key_ref', i) AS not_governed
  FROM generate_series(1, 100) i;
SELECT count(*) FILTER (WHERE NOT governed) BETWEEN 20 AND 80 AS about_half,
       bool_and(governed = not_governed) AS key_as_written
  FROM canary_key_answers;
SELECT count(*) FILTER (WHERE stage = 'seed') = count(*) AS stored_rewritten FROM canary_key;
DROP TABLE canary_key, canary_key_ref;
RESET client_min_messages;
RESET stage_norm.enforce_percent;

-- Column types: char(n) is padded, varchar and citext work, several columns at once.
CREATE TABLE types (c char(12), v varchar(20), t text);
SELECT stage_norm.attach('types', 'c', 'v', 't');
INSERT INTO types VALUES ('Series B', 'pre seed', 'SEED'), ('seed', 'series-a', NULL);
SELECT c, octet_length(c) AS c_bytes, v, t FROM types;
CREATE EXTENSION citext;
CREATE TABLE ci (stage citext);
SELECT stage_norm.attach('ci', 'stage');
INSERT INTO ci VALUES ('SERIES-A'), ('Seed Round');
SELECT stage, pg_typeof(stage) FROM ci;
DROP TABLE ci;
DROP EXTENSION citext;
-- DDL on governed columns (more in ddl.sql): a renamed column stays governed; a retype is
-- refused while the column is governed, and allowed once it is not.
ALTER TABLE types RENAME COLUMN v TO v2;
INSERT INTO types VALUES ('seed', 'Seed', 'seed') RETURNING v2;
ALTER TABLE types RENAME COLUMN v2 TO v;
ALTER TABLE types ALTER COLUMN t TYPE int USING NULL;
SELECT stage_norm.attach('types', 'c', 'v');
ALTER TABLE types ALTER COLUMN t TYPE int USING NULL;
INSERT INTO types VALUES ('seed', 'Series C', 1);
-- Partitioned tables: attach on the parent governs every partition; the parent's override
-- applies to its partitions unless a partition has its own.
CREATE TABLE parted (id int, stage text, PRIMARY KEY (id)) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (100) TO (200);
SELECT stage_norm.attach('parted', 'stage');
SET stage_norm.mode = warn;
SELECT stage_norm.set_table_mode('parted', 'enforce');
SELECT stage_norm.effective_mode('parted_1') AS inherited, stage_norm.effective_mode('parted_2') AS inherited_too;
INSERT INTO parted VALUES (1, 'Series A'), (150, 'pre seed');
INSERT INTO parted VALUES (2, 'Nope');
SELECT stage_norm.set_table_mode('parted_2', 'shadow');
INSERT INTO parted VALUES (151, 'Nope');
SELECT tableoid::regclass, id, stage FROM parted ORDER BY id;
SELECT stage_norm.set_table_mode('parted', NULL), stage_norm.set_table_mode('parted_2', NULL);
RESET stage_norm.mode;
DROP TABLE parted;
-- Misuse: the trigger function only works as BEFORE ... FOR EACH ROW.
CREATE TABLE misuse (stage text);
CREATE TRIGGER wrong AFTER INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION stage_norm.normalize_trigger('stage');
INSERT INTO misuse VALUES ('seed');
SELECT stage_norm.normalize_trigger();
-- detach.
SELECT stage_norm.detach('pc'), stage_norm.detach('pc');
SET stage_norm.mode = enforce;
INSERT INTO pc (id, stage) VALUES (60, 'Nope');
RESET stage_norm.mode;
DROP TABLE pc, short_v, prec, canary, canary_nopk, types, misuse;

-- Trigger functions called the wrong way (#27 item 4): 39P01, never a panic. summary_trigger
-- as a BEFORE ROW trigger used to make the INSERT store nothing.
SELECT stage_norm.summary_trigger();
SELECT stage_norm.config_changed();
SELECT stage_norm.normalize_trigger();
CREATE TABLE misuse (id int, stage text);
CREATE TRIGGER wrong BEFORE INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION stage_norm.summary_trigger();
INSERT INTO misuse VALUES (1, 'seed');
DROP TRIGGER wrong ON misuse;
CREATE TRIGGER wrong AFTER DELETE ON misuse FOR EACH STATEMENT EXECUTE FUNCTION stage_norm.summary_trigger();
DELETE FROM misuse;
DROP TRIGGER wrong ON misuse;
CREATE TRIGGER wrong AFTER INSERT ON misuse FOR EACH ROW EXECUTE FUNCTION stage_norm.config_changed();
INSERT INTO misuse VALUES (2, 'seed');
DROP TRIGGER wrong ON misuse;
CREATE TRIGGER wrong AFTER INSERT ON misuse FOR EACH STATEMENT EXECUTE FUNCTION stage_norm.normalize_trigger('stage');
INSERT INTO misuse VALUES (3, 'seed');
DROP TRIGGER wrong ON misuse;
SELECT count(*) AS stored FROM misuse;
DROP TABLE misuse;
