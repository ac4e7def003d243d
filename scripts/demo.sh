#!/usr/bin/env bash
# make demo: a sample portfolio with messy stage labels, and what stage_norm makes of them.
# Runs inside scripts/with-cluster.sh (a throwaway cluster).
set -euo pipefail
psql -X -q -v ON_ERROR_STOP=1 -d postgres 2>&1 <<'SQL'
\pset footer off
\echo
\echo '== stage_norm demo ====================================================='
CREATE EXTENSION stage_norm;
CREATE TABLE portfolio (id int PRIMARY KEY, company text, stage text);
INSERT INTO portfolio (id, company, stage) VALUES
  (1, 'Acme Robotics',   'Series A '),
  (2, 'Bolt Energy',     'pre_seed'),
  (3, 'Cobalt Health',   'seriesB'),
  (4, 'Delta Freight',   'Series D'),
  (5, 'Echo Audio',      'Series A-2 Round'),
  (6, 'Fuji Foods',      'Ｓｅｒｉｅｓ　Ａ'),
  (7, 'Gamma Labs',      'Series C Plus'),
  (8, 'Helio Solar',     'Seed Round'),
  (9, 'Ion Batteries',   'PRE-SEED'),
  (10, 'Juno Space',     'Series B–1'),
  (11, 'Kite Finance',   'Angel'),
  (12, 'Lumen Optics',   'Growth'),
  (13, 'Mango Retail',   'Series A+'),
  (14, 'Nova Bio',       ''),
  (15, 'Orbit Maps',     NULL);

\echo
\echo 'What normalize_stage makes of each label (NULL = unknown):'
SELECT id, company, format('%L', stage) AS label, stage_norm.normalize_stage(stage) AS canonical
  FROM portfolio ORDER BY id;

\echo 'Labels that stay unknown (no guessing):'
SELECT format('%L', stage) AS unknown_label, count(*) AS rows
  FROM portfolio WHERE stage IS NOT NULL AND stage_norm.normalize_stage(stage) IS NULL
 GROUP BY stage ORDER BY 1;

\echo 'A DBA teaches it the fund''s own words with aliases:'
SELECT stage_norm.add_alias('Angel', 'pre-seed') AS angel_key, stage_norm.add_alias('Growth', 'series-c+') AS growth_key;
SELECT format('%L', stage) AS label, stage_norm.normalize_stage(stage) AS now_canonical
  FROM portfolio WHERE stage IN ('Angel', 'Growth');

\echo 'Migrate the column, then prove it canonical with a CHECK constraint:'
UPDATE portfolio SET stage = coalesce(stage_norm.normalize_stage(stage), stage);
SELECT format('%L', stage) AS stage, count(*) AS rows FROM portfolio GROUP BY stage
 ORDER BY stage_norm.is_canonical_stage(stage) DESC NULLS LAST, stage;
\echo 'Rows still not canonical (unknown labels) go to a human; here we drop them:'
DELETE FROM portfolio WHERE NOT stage_norm.is_canonical_stage(stage);
CALL stage_norm.add_check('portfolio', 'stage');
\echo 'Now a bad label is refused by the constraint:'
\set ON_ERROR_STOP 0
INSERT INTO portfolio VALUES (99, 'Zeta', 'Series Z?');
\set ON_ERROR_STOP 1
\echo
\echo '== the write path: a trigger that follows stage_norm.mode =============='
CREATE TABLE deals (id int PRIMARY KEY, company text, stage text);
DO $$ BEGIN PERFORM stage_norm.attach('deals', 'stage'); END $$;
\echo 'stage_norm.attach(''deals'', ''stage'') governs deals.stage. In warn mode (the default),'
\echo 'known variants are rewritten and unknown ones stored with a WARNING:'
INSERT INTO deals VALUES (1, 'Pine Labs', 'Series B-2 Round'), (2, 'Quartz', 'Mezzanine');
SELECT id, company, stage FROM deals ORDER BY id;
\echo 'In enforce mode, unknown values are rejected with SQLSTATE 23514:'
SET stage_norm.mode = enforce;
\set ON_ERROR_STOP 0
INSERT INTO deals VALUES (3, 'Rho', 'Bridge Round');
\set ON_ERROR_STOP 1
\echo 'The mode of each governed table in this session, and what the trigger did:'
SELECT table_name, columns, override_mode, effective_mode FROM stage_norm.table_modes;
SELECT * FROM stage_norm.session_counters;
\echo
\echo '== your own stages ====================================================='
\echo 'The fund tracks series-c, series-d and growth instead of series-c+. Then the normalizer,'
\echo 'ranks, aliases and the trigger follow the set.'
RESET stage_norm.mode;
\echo 'Refused, with nothing changed, while the alias Growth -> series-c+ exists, and while'
\echo 'portfolio rows under its CHECK hold series-c+:'
\set ON_ERROR_STOP 0
\set VERBOSITY terse
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');
SELECT stage_norm.remove_alias('Growth') AS alias_removed;
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');
\set VERBOSITY default
\set ON_ERROR_STOP 1
\echo 'So the set and the rows move together, in one transaction (docs/normalization.md):'
BEGIN;
ALTER TABLE portfolio DROP CONSTRAINT stage_stage_canonical;
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');
UPDATE portfolio SET stage = 'growth' WHERE stage = 'series-c+';
COMMIT;
CALL stage_norm.add_check('portfolio', 'stage');
SELECT position, stage, forms FROM stage_norm.stages;
SELECT label, stage_norm.normalize_stage(label) AS canonical, stage_norm.stage_rank(stage_norm.normalize_stage(label)) AS rank
  FROM unnest(ARRAY['Series C', 'series d2', 'Growth Round', 'Series E', 'Series C Plus']) AS label;
INSERT INTO deals (id, company, stage) VALUES (3, 'Rook Games', 'Series D');
SELECT id, company, stage FROM deals ORDER BY id;
\echo
\echo 'Stage distributions (jsonb: stage -> weight, exact decimal) and stage arrays (docs/distributions.md):'
SELECT d AS distribution, stage_norm.normalize_stage_distribution(d) AS canonical, stage_norm.stage_distribution_errors(d) AS reasons
  FROM (VALUES ('{"Series A ": 0.5, "seed round": 0.25, "Seed": 0.25}'::jsonb),
               ('{"seed": 0.1, "series-a": 0.2, "Growth": 0.7}'),
               ('{"seed": 50, "series-a": 50}'),
               ('{"Angel": 0.5, "seed": 0.4}')) v(d);
CREATE TABLE strategy (id int PRIMARY KEY, alloc jsonb, path text[]);
SELECT stage_norm.attach('strategy', 'alloc', 'path');
INSERT INTO strategy VALUES (1, '{"Series A": 0.6, "seed": 0.4}', ARRAY['Seed', 'Series A', 'Series D2']);
SELECT * FROM strategy;
\echo 'Under enforce, an invalid distribution is rejected with every reason:'
SET stage_norm.mode = enforce;
\set ON_ERROR_STOP 0
INSERT INTO strategy VALUES (2, '{"seed": 0.5, "series-a": 0.4}', NULL);
\set ON_ERROR_STOP 1
RESET stage_norm.mode;
\echo
\echo 'Rollback of every table at once (docs/runbook.md): LOAD ''stage_norm''; then'
\echo '  ALTER SYSTEM SET stage_norm.max_mode = ''warn''; then SELECT pg_reload_conf();'
\echo
\echo '== end of demo (the throwaway cluster is removed) ======================'
SQL
