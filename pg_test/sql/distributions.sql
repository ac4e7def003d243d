-- Stage distributions (jsonb) and stage arrays: the functions, bad input, CHECKs, and the
-- trigger on jsonb, text[] and varchar[] columns in every mode.
SET client_min_messages = warning;

-- normalize_stage_distribution: keys normalized (aliases too) and merged, weights exact.
SELECT stage_norm.normalize_stage_distribution('{"pre_seed": 0.5, "series-a ": 0.5}');
SELECT stage_norm.normalize_stage_distribution('{"Series A ": 0.2, "pre_seed": 0.1, "seriesB": 0.3, "Seed Round": 0.25, "series c+": 0.15}');
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.1, "Seed": 0.2, "series a": 0.7}');    -- merged: 0.3
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.10, "Seed": 0.200, "series a": 0.7}'); -- the sum keeps the larger scale
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.1, "series-a": 0.2, "series-b": 0.7}'); -- 0.1 + 0.2 + 0.7 is exactly 1
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.9999995}');       -- within 1e-6: kept as it is, not rescaled
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.5, "series-a": 0.500001}');   -- the bound itself
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.5, "series-a": 0.5000011}');  -- beyond it: invalid
SELECT stage_norm.normalize_stage_distribution('{"seed": 1.000001}');        -- a weight above 1: invalid
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.999998}');
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.00000000000000000001, "series-a": 0.99999999999999999999}');
SELECT stage_norm.normalize_stage_distribution('{"seed": 1e-1, "series-a": 9E-1}');
SELECT stage_norm.normalize_stage_distribution('{"seed": 0.5, "growth": 0.5}');
SELECT stage_norm.normalize_stage_distribution(NULL);
-- A canonical input is returned as it is (same bytes).
SELECT d = stage_norm.normalize_stage_distribution(d) FROM (SELECT '{"seed": 0.25, "series-a": 0.75}'::jsonb AS d) s;

-- stage_distribution_errors: every reason, in jsonb's key order (shorter keys first).
SELECT stage_norm.stage_distribution_errors('{"seed": 0.5, "series-a": 0.5}');
SELECT stage_norm.stage_distribution_errors('{"seed": 0.5, "series-a": 0.499}');
SELECT stage_norm.stage_distribution_errors('{"seed": 50, "series a": 50}');        -- percentages
SELECT stage_norm.stage_distribution_errors('{"seed": 25.5, "series-a": 74.5}');
SELECT stage_norm.stage_distribution_errors('{"seed": 150, "series-a": -50}');     -- not percentages: a negative weight
SELECT stage_norm.stage_distribution_errors('{"SEED": 0.5, "seed round": 0.5000010}');  -- merged above 1, total within 1e-6
SELECT stage_norm.normalize_stage_distribution('{"SEED": 0.5, "seed round": 0.5000010}');
SELECT stage_norm.stage_distribution_errors('{"growth": 0.5, "seed": 0.5}');
SELECT stage_norm.stage_distribution_errors('{"seed": "0.5", "series-a": 0.5}');
SELECT stage_norm.stage_distribution_errors('{"seed": "NaN", "series-a": "Infinity"}');
SELECT stage_norm.stage_distribution_errors('{"seed": {"weight": 1}}');             -- nested object
SELECT stage_norm.stage_distribution_errors('{"seed": [1]}');
SELECT stage_norm.stage_distribution_errors('{"seed": null, "series-a": true}');
SELECT stage_norm.stage_distribution_errors('{"seed": 1e308}');
SELECT stage_norm.stage_distribution_errors('{"seed": -1e308, "series-a": 1}');
SELECT stage_norm.stage_distribution_errors('{"seed": -0.1, "series-a": 1.1}');
SELECT stage_norm.stage_distribution_errors('[{"seed": 1}]');                      -- an array where an object is expected
SELECT stage_norm.stage_distribution_errors('"seed"');
SELECT stage_norm.stage_distribution_errors('1');
SELECT stage_norm.stage_distribution_errors('null');
SELECT stage_norm.stage_distribution_errors('{}');
SELECT stage_norm.stage_distribution_errors(NULL);

-- Negative zero is zero.
SELECT stage_norm.normalize_stage_distribution('{"seed": -0, "series-a": 1}'),
       stage_norm.normalize_stage_distribution('{"seed": -0.0, "series-a": 1}'),
       stage_norm.is_valid_stage_distribution('{"seed": -0e10, "series-a": 1}');
-- Duplicate keys in the JSON text: jsonb keeps the last one, before any function sees it.
SELECT '{"seed": 0.9, "seed": 1}'::jsonb AS stored, stage_norm.normalize_stage_distribution('{"seed": 0.9, "seed": 1}');

-- Aliases apply to keys.
SELECT stage_norm.add_alias('Angel', 'pre-seed');
SELECT stage_norm.normalize_stage_distribution('{"angel": 0.5, "Pre Seed": 0.25, "seed": 0.25}');
SELECT stage_norm.remove_alias('Angel');

-- is_valid_stage_distribution: canonical keys only (for CHECKs).
SELECT d, stage_norm.is_valid_stage_distribution(d)
  FROM (VALUES ('{"seed": 1}'::jsonb), ('{"Seed": 1}'), ('{"seed": 0.5}'), ('{"seed": "1"}'), ('[]'), ('{}'),
               ('{"seed": 0.5, "series-c+": 0.5}')) v(d);

-- Large inputs: clear verdicts, memory bounded by the input.
-- 100,000 keys (all unknown; the weights sum to 1): 100,000 reasons.
SELECT cardinality(stage_norm.stage_distribution_errors(d)), stage_norm.normalize_stage_distribution(d) IS NULL
  FROM (SELECT jsonb_object_agg('k' || i, 0.00001) AS d FROM generate_series(1, 100000) i) s;
-- 1,000 distinct keys that all name "seed" (repeated separators), 0.001 each: merged exactly.
SELECT stage_norm.normalize_stage_distribution(d)
  FROM (SELECT jsonb_object_agg('seed' || repeat('_', i), 0.001) AS d FROM generate_series(0, 999) i) s;
-- A 10 MB document: one key whose weight is a 10 MB string.
SELECT stage_norm.stage_distribution_errors(jsonb_build_object('seed', repeat('x', 10 * 1024 * 1024)));
-- Weights of 10,000 digits each.
SELECT stage_norm.stage_distribution_errors(d)
  FROM (SELECT jsonb_object_agg('k' || i, ('0.' || repeat('1', 10000))::numeric) AS d FROM generate_series(1, 3) i) s;

-- Stage arrays.
SELECT stage_norm.normalize_stages(ARRAY['Series A', NULL, 'growth', 'seed']);
SELECT stage_norm.normalize_stages('{}'::text[]);
SELECT stage_norm.normalize_stages('[0:2]={pre seed,Seed,x}'::text[]);               -- lower bound kept
SELECT stage_norm.normalize_stages('{{Series A,seed},{pre seed,x}}'::text[]);        -- dimensions kept
SELECT stage_norm.normalize_stages('[2:3][5:5]={{seed},{SERIES B}}'::text[]);
SELECT stage_norm.normalize_stages(ARRAY['Series A', 'seed']::varchar[]);
SELECT stage_norm.normalize_stages(ARRAY[NULL, NULL]::text[]);
SELECT stage_norm.normalize_stages(NULL);
SELECT a, stage_norm.is_canonical_stage_array(a)
  FROM (VALUES (ARRAY['seed', 'series-a']), (ARRAY['seed', NULL]), (ARRAY['Seed']), ('{}'::text[]),
               (ARRAY[NULL]::text[]), ('{{seed},{growth}}'::text[])) v(a);
-- 1,000,000 elements.
SELECT cardinality(n), array_position(n, NULL) IS NULL AS no_nulls, n[1], n[1000000]
  FROM (SELECT stage_norm.normalize_stages(array_agg(CASE WHEN i % 2 = 0 THEN 'Series A' ELSE 'seed' END)) AS n
          FROM generate_series(1, 1000000) i) s;

-- Labels and strictness of the five functions.
SELECT p.oid::regprocedure, p.provolatile, p.proisstrict, p.proparallel
  FROM pg_proc p
 WHERE p.pronamespace = 'stage_norm'::regnamespace
   AND p.proname IN ('normalize_stage_distribution', 'stage_distribution_errors', 'is_valid_stage_distribution',
                     'normalize_stages', 'is_canonical_stage_array')
 ORDER BY 1::text;

-- add_check on jsonb and array columns.
CREATE TABLE dist_checked (id int PRIMARY KEY, alloc jsonb, path text[]);
INSERT INTO dist_checked VALUES (1, '{"seed": 1}', '{seed,series-a}');
CALL stage_norm.add_check('dist_checked', 'alloc');
CALL stage_norm.add_check('dist_checked', 'path');
SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'dist_checked'::regclass AND contype <> 'n' ORDER BY 1;
INSERT INTO dist_checked VALUES (2, '{"Seed": 1}', NULL);
INSERT INTO dist_checked VALUES (3, NULL, '{Seed}');
INSERT INTO dist_checked VALUES (4, '{"seed": 0.5, "series-a": 0.5}', '{seed,NULL}');
-- A set change re-checks those CHECKs: dropping series-a would break both.
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-b', 'series-c+');
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'growth');
SELECT stage_norm.normalize_stage_distribution('{"Growth": 0.5, "series C": 0.5}');
SELECT stage_norm.reset_stages();
DROP TABLE dist_checked;

-- The trigger on jsonb, text[] and varchar(n)[] columns.
CREATE TABLE portfolio (id int PRIMARY KEY, stage text, alloc jsonb, path text[], tags varchar(12)[]);
SELECT stage_norm.attach('portfolio', 'stage', 'alloc', 'path', 'tags');
SET client_min_messages = notice;
-- off: nothing happens.
SET stage_norm.mode = 'off';
INSERT INTO portfolio VALUES (1, 'Seed', '{"Seed": 1}', '{Seed}', '{Seed}');
-- shadow: rows as they are, counted.
SET stage_norm.mode = 'shadow';
INSERT INTO portfolio VALUES (2, 'Seed', '{"Seed": 1}', '{Seed,growth}', '{seed}');
-- warn: valid values rewritten; the rest stored as they are (an array's known elements
-- rewritten) and reported.
SET stage_norm.mode = 'warn';
INSERT INTO portfolio VALUES (3, 'Series A', '{"Seed": 0.5, "series a": 0.25, "Series-A": 0.25}', '{Seed,NULL,series b}', '{pre seed}');
INSERT INTO portfolio VALUES (4, 'seed', '{"growth": 0.5, "seed": 0.4}', '{Seed,growth}', '{x}');
-- enforce: invalid distributions and arrays with an unknown stage are rejected (23514; the
-- error fields are checked with GET STACKED DIAGNOSTICS below and from a real client in
-- tests/tests/distributions.rs).
SET stage_norm.mode = 'enforce';
INSERT INTO portfolio VALUES (5, 'seed', '{"growth": 0.5, "seed": 0.4}', NULL, NULL);
INSERT INTO portfolio VALUES (5, 'seed', '{"seed": 50, "series-a": 50}', NULL, NULL);
INSERT INTO portfolio VALUES (5, 'seed', NULL, '{a,b,c,d,e,f,g}', NULL);
INSERT INTO portfolio VALUES (5, 'seed', NULL, NULL, '{seed,growth}');
DO $$
DECLARE st text; sch text; tab text; col text; det text;
BEGIN
    INSERT INTO portfolio VALUES (6, 'seed', '{"seed": 0.5}', NULL, NULL);
EXCEPTION WHEN check_violation THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, sch = SCHEMA_NAME, tab = TABLE_NAME, col = COLUMN_NAME, det = PG_EXCEPTION_DETAIL;
    RAISE NOTICE 'sqlstate %, schema %, table %, column %: %', st, sch, tab, col, det;
END $$;
INSERT INTO portfolio VALUES (5, 'seed', '{"SEED": 0.5, "series-b": 0.5}', '{{Seed,series a},{NULL,pre seed}}', '{}');
-- UPDATE: an unchanged value is left alone, even an invalid one stored under warn.
UPDATE portfolio SET stage = 'Seed' WHERE id = 4;
UPDATE portfolio SET path = '{seed}' WHERE id = 4;
UPDATE portfolio SET alloc = '{"Series B": 1}' WHERE id = 4;
SELECT id, stage, alloc, path, tags FROM portfolio ORDER BY id;
SELECT passed, normalized, warned, rejected, would_normalize, would_reject, unchanged, nulls
  FROM stage_norm.session_counters WHERE table_name = 'portfolio'::regclass;
RESET stage_norm.mode;
DROP TABLE portfolio;

-- Columns attach refuses (and a text[] it accepts).
CREATE TABLE not_governed (id int, n int[], j json, short varchar(5)[], nested text[]);
CREATE DOMAIN dist_domain AS jsonb;
ALTER TABLE not_governed ADD COLUMN d dist_domain;
SELECT stage_norm.attach('not_governed', 'n');
SELECT stage_norm.attach('not_governed', 'j');
SELECT stage_norm.attach('not_governed', 'short');
SELECT stage_norm.attach('not_governed', 'd');
SELECT stage_norm.attach('not_governed', 'nested');
DROP TABLE not_governed;
DROP DOMAIN dist_domain;

-- The trigger remembers the keys of the last distribution it judged (a memo of their bytes):
-- an alias removed, or a stage set changed, between two rows with the same keys must be seen.
CREATE TABLE memo_keys (id int PRIMARY KEY, alloc jsonb);
SELECT stage_norm.attach('memo_keys', 'alloc');
SET stage_norm.mode = enforce;
SELECT stage_norm.add_alias('Angel', 'pre-seed');
INSERT INTO memo_keys VALUES (1, '{"Angel": 0.5, "seed": 0.5}');
INSERT INTO memo_keys VALUES (2, '{"Angel": 0.25, "seed": 0.75}');
SELECT stage_norm.remove_alias('Angel');
INSERT INTO memo_keys VALUES (3, '{"Angel": 0.5, "seed": 0.5}');      -- rejected: no alias now
INSERT INTO memo_keys VALUES (4, '{"pre-seed": 0.5, "series-b": 0.5}');
INSERT INTO memo_keys VALUES (5, '{"pre-seed": 0.4, "series-b": 0.6}');
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a');
INSERT INTO memo_keys VALUES (6, '{"pre-seed": 0.5, "series-b": 0.5}');  -- rejected: series-b left the set
SELECT stage_norm.reset_stages();
INSERT INTO memo_keys VALUES (7, '{"pre-seed": 0.5, "series-b": 0.5}');
SELECT id, alloc FROM memo_keys ORDER BY id;
RESET stage_norm.mode;
DROP TABLE memo_keys;

-- Merged weights (#27 item 6): 'Seed' and 'seed round' name one stage, and their weights add up
-- to 1.000001 (the total is within 1 +/- 1e-6): invalid, in every mode. Shadow used to count it
-- as would_normalize while warn and enforce refused it; a negative merged sum is not "above 1".
SELECT stage_norm.stage_distribution_errors('{"Seed": 0.5, "seed round": 0.500001}');
SELECT stage_norm.stage_distribution_errors('{"Seed": -0.5, "seed round": -0.5, "series-a": 2}');
SELECT stage_norm.is_valid_stage_distribution(stage_norm.normalize_stage_distribution('{"Seed": 0.5, "seed round": 0.500001}')) AS normalizes;
CREATE TABLE merged_shadow (id int PRIMARY KEY, d jsonb);
CREATE TABLE merged_enforce (id int PRIMARY KEY, d jsonb);
SELECT stage_norm.attach('merged_shadow', 'd'), stage_norm.attach('merged_enforce', 'd');
SELECT stage_norm.set_table_mode('merged_shadow', 'shadow'), stage_norm.set_table_mode('merged_enforce', 'enforce');
INSERT INTO merged_shadow VALUES (1, '{"Seed": 0.5, "seed round": 0.500001}'), (2, '{"Seed": 0.5, "seed round": 0.4999995}'),
                                 (3, '{"Seed": 0.5, "series-a": 0.500001}');
INSERT INTO merged_enforce VALUES (1, '{"Seed": 0.5, "seed round": 0.500001}');
INSERT INTO merged_enforce VALUES (2, '{"Seed": 0.5, "seed round": 0.4999995}'), (3, '{"Seed": 0.5, "series-a": 0.500001}');
-- The same rows, the same verdicts: shadow counts what enforce does (1 would_reject for 1 rejected).
SELECT c.table_name, c.passed, c.normalized, c.rejected, c.would_normalize, c.would_reject
  FROM stage_norm.session_counters c WHERE c.table_name IN ('merged_shadow'::regclass, 'merged_enforce'::regclass) ORDER BY 1;
SELECT stage_norm.set_table_mode('merged_shadow', NULL), stage_norm.set_table_mode('merged_enforce', NULL);
DROP TABLE merged_shadow, merged_enforce;
