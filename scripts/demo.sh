#!/usr/bin/env bash
# make demo: what normalize_stage does, then docs/runbook.md's rollout in nine steps on a sample
# portfolio of 50,000 rows with messy stage labels, while an "application" keeps writing
# (demo.app(n): n single-row INSERTs, as a writer sends them). Each step prints its title, the
# SQL it runs (psql's ECHO) and its numbers. The data are generated deterministically (a hash
# of the id), so every count is the same from run to run; only the timings vary, and nothing
# depends on them. Runs inside scripts/with-cluster.sh (a throwaway cluster with stage_norm
# preloaded, so the cluster-wide statistics exist).
set -euo pipefail
# psql prefixes a script's messages with "psql:<stdin>:LINE: "; the demo reads better without.
# The script goes to psql on standard input; psql has no loop, so the migration's further windows
# (each only while the run is not finished) are written by the shell.
{
cat <<'SQL'
\pset footer off
\pset null '(null)'
\set VERBOSITY terse
\echo
\echo '== stage_norm demo ======================================================================'
\echo 'Funds keep a portfolio company''s stage as free text; stage_norm maps it to canonical stages'
\echo '(pre-seed, seed, series-a, series-b, series-c+) inside the database. NULL = unknown: no guessing.'
\echo
\set ECHO queries
CREATE EXTENSION stage_norm;
SELECT format('%L', label) AS label, stage_norm.normalize_stage(label) AS canonical
  FROM unnest(ARRAY['Series A ', 'pre_seed', 'seriesB', 'Series A-2 Round', 'Ｓｅｒｉｅｓ　Ａ', 'Series D', 'Seed Round', 'Angel']) AS label;
\set ECHO none

-- ---------------------------------------------------------------------------------------------
-- The sample portfolio and the application (setup, not echoed).
-- ---------------------------------------------------------------------------------------------
CREATE SCHEMA demo;
-- Labels and their weight per 1000 rows: in the stored portfolio, and in what the application
-- writes (fewer unknown labels: only 'Bridge Round' stays unknown once 'Angel' and 'Growth'
-- have aliases, 0.3% of its rows).
CREATE TABLE demo.labels (label text, stored int, app int);
INSERT INTO demo.labels VALUES
  ('seed', 155, 120), ('series-a', 100, 100), ('series-b', 80, 80), ('pre-seed', 50, 50), ('series-c+', 40, 40),
  ('Series A ', 80, 90), ('Series A', 60, 70), ('series a', 30, 40), ('Series A-2 Round', 20, 20), ('Ｓｅｒｉｅｓ　Ａ', 5, 5),
  ('Seed Round', 60, 70), ('SEED', 30, 30), ('pre_seed', 40, 40), ('Pre-Seed', 30, 30),
  ('seriesB', 40, 40), ('Series B', 50, 50), ('Series B–1', 10, 10),
  ('Series C', 30, 30), ('Series D', 20, 20), ('Series C Plus', 10, 10),
  ('Angel', 25, 12), ('Growth', 15, 6), ('Bridge Round', 5, 3), ('TBD', 3, 0), ('', 2, 0), (NULL, 10, 35);
CREATE TABLE demo.stored_ranges AS
  SELECT label, sum(stored) OVER (ORDER BY label NULLS FIRST ROWS UNBOUNDED PRECEDING) - stored AS lo, stored AS w FROM demo.labels;
CREATE TABLE demo.app_ranges AS
  SELECT label, sum(app) OVER (ORDER BY label NULLS FIRST ROWS UNBOUNDED PRECEDING) - app AS lo, app AS w FROM demo.labels;
CREATE FUNCTION demo.pick(id bigint, app boolean) RETURNS text LANGUAGE sql STABLE AS $$
  SELECT label FROM (SELECT * FROM demo.stored_ranges WHERE NOT app UNION ALL SELECT * FROM demo.app_ranges WHERE app) r
   WHERE w > 0 AND (abs(hashint8(id)) % 1000) >= lo AND (abs(hashint8(id)) % 1000) < lo + w $$;

CREATE TABLE portfolio (id bigint PRIMARY KEY, company text NOT NULL, fund_id int NOT NULL, stage text);
INSERT INTO portfolio SELECT i, 'Company ' || i, 1 + i % 40, demo.pick(i, false) FROM generate_series(1, 50000) i;
ANALYZE portfolio;

-- The stage_norm statistics of portfolio, summed as docs/monitoring/rules.yml sums them.
CREATE VIEW demo.portfolio_stats AS
SELECT coalesce(sum(count) FILTER (WHERE outcome IN ('passed', 'normalized', 'warned', 'rejected', 'would_normalize', 'would_reject')), 0)::bigint AS judged,
       coalesce(sum(count) FILTER (WHERE outcome IN ('warned', 'rejected', 'would_reject')), 0)::bigint AS unknown,
       coalesce(sum(count) FILTER (WHERE outcome = 'rejected'), 0)::bigint AS rejected
  FROM stage_norm.stats WHERE datname = current_database() AND table_name = 'portfolio';
CREATE TABLE demo.ticks (tick serial PRIMARY KEY, at_step int, rows_sent int, stored int, by_trigger int, by_check int,
                         judged bigint, unknown bigint, rejected bigint, ms numeric);
CREATE SEQUENCE demo.app_ids START 1000001;
CREATE TABLE demo.step (n int);
INSERT INTO demo.step VALUES (0);

-- The application: n single-row INSERTs (one subtransaction each, so a refused row is counted
-- and the others go on), its WARNINGs not shown; then COMMIT (the statistics are flushed at
-- the end of a transaction) and what stage_norm.stats counted for these writes.
CREATE PROCEDURE demo.app(n int) LANGUAGE plpgsql AS $$
DECLARE
  i bigint; stored int := 0; by_trigger int := 0; by_check int := 0; con text;
  s0 demo.portfolio_stats; s1 demo.portfolio_stats; t0 timestamptz := clock_timestamp();
  cmm text := current_setting('client_min_messages');
BEGIN
  SELECT * INTO s0 FROM demo.portfolio_stats;
  PERFORM set_config('client_min_messages', 'error', false);
  FOR k IN 1 .. n LOOP
    i := nextval('demo.app_ids');
    BEGIN
      INSERT INTO portfolio VALUES (i, 'App Co ' || i, 1 + i % 40, demo.pick(i, true));
      stored := stored + 1;
    EXCEPTION WHEN check_violation THEN
      GET STACKED DIAGNOSTICS con = CONSTRAINT_NAME;
      IF con = '' THEN by_trigger := by_trigger + 1; ELSE by_check := by_check + 1; END IF;
    END;
  END LOOP;
  PERFORM set_config('client_min_messages', cmm, false);
  COMMIT;
  SELECT * INTO s1 FROM demo.portfolio_stats;
  INSERT INTO demo.ticks (at_step, rows_sent, stored, by_trigger, by_check, judged, unknown, rejected, ms)
  SELECT d.n, app.n, stored, by_trigger, by_check, s1.judged - s0.judged, s1.unknown - s0.unknown, s1.rejected - s0.rejected,
         round(extract(epoch FROM clock_timestamp() - t0)::numeric * 1000)
    FROM demo.step d;
  RAISE NOTICE 'app: % rows sent, % stored, % refused (23514: % by the trigger, % by the CHECK) | stage_norm.stats: % values judged, % unknown (%)',
    n, stored, by_trigger + by_check, by_trigger, by_check, s1.judged - s0.judged, s1.unknown - s0.unknown,
    round(100.0 * (s1.unknown - s0.unknown) / nullif(s1.judged - s0.judged, 0), 2) || '%';
END $$;

\echo '== the sample portfolio ================================================================='
\echo 'portfolio: 50,000 companies in 40 funds, stage as the funds typed it, and an application that'
\echo 'keeps inserting rows (CALL demo.app(n): n single-row INSERTs). What is stored:'
SELECT count(*) AS rows, count(DISTINCT stage) AS distinct_labels,
       count(*) FILTER (WHERE stage_norm.is_canonical_stage(stage)) AS canonical,
       count(*) FILTER (WHERE stage_norm.normalize_stage(stage) IS NOT NULL AND NOT stage_norm.is_canonical_stage(stage)) AS known_variant,
       count(*) FILTER (WHERE stage IS NOT NULL AND stage_norm.normalize_stage(stage) IS NULL) AS unknown,
       count(*) FILTER (WHERE stage IS NULL) AS nulls
  FROM portfolio;

\echo
\echo '== step 1: observe (shadow) ============================================================='
\echo 'Nothing changes for the application; the trigger counts what it would do.'
UPDATE demo.step SET n = 1;
\set ECHO queries
SELECT stage_norm.set_table_mode('portfolio', 'shadow');
SELECT stage_norm.attach('portfolio', 'stage');
CALL demo.app(5000);
SELECT table_name, column_name, outcome, count FROM stage_norm.stats
 WHERE datname = current_database() AND count > 0 ORDER BY 1, 2, 3;
SELECT stage, count(*) FROM portfolio WHERE stage_norm.normalize_stage(stage) IS NULL
 GROUP BY stage ORDER BY 2 DESC;
\set ECHO none
\echo '(would_normalize: known variants the trigger would rewrite; would_reject: unknown labels;'
\echo ' unchanged: already canonical. The last query: unknown labels already stored; (null) is NULL.)'

\echo
\echo '== step 2: normalize on write (warn) ===================================================='
\echo 'Known variants are rewritten on every INSERT and UPDATE; unknown values are stored, with a WARNING.'
UPDATE demo.step SET n = 2;
\set ECHO queries
SELECT stage_norm.set_table_mode('portfolio', 'warn');
INSERT INTO portfolio VALUES (900001, 'Hand Typed Ltd', 7, 'Series B-2 Round'), (900002, 'Mystery Inc', 7, 'Mezzanine')
RETURNING id, stage;
CALL demo.app(5000);
SELECT outcome, count FROM stage_norm.stats
 WHERE datname = current_database() AND table_name = 'portfolio' AND count > 0 ORDER BY 1;
\set ECHO none

\echo
\echo '== step 3: teach it the fund''s words ===================================================='
\echo 'Every stored label no rule or alias knows, most frequent first (unknown_labels), then one alias per label that means a stage:'
UPDATE demo.step SET n = 3;
\set ECHO queries
SELECT * FROM stage_norm.unknown_labels('portfolio', 'stage');
SELECT stage_norm.add_alias('Angel', 'pre-seed');
SELECT stage_norm.add_alias('Growth', (SELECT stage FROM stage_norm.stages ORDER BY position DESC LIMIT 1));  -- the last stage
\set ECHO none
\echo 'Left unknown: Bridge Round, TBD, Mezzanine and the empty label mean no stage; they go to a human (step 5).'
\echo 'The application''s writes from here on are the "ready to enforce" watch window (step 6).'
SELECT max(tick) AS watch_after FROM demo.ticks \gset
\set ECHO queries
CALL demo.app(5000);
\set ECHO none

\echo
\echo '== step 4: migrate existing rows, in windows ============================================'
\echo 'Windows of at most 4 batches of 5000 rows, one COMMIT each (the runbook uses 20); the application'
\echo 'writes between windows; each call resumes the run until it is finished.'
UPDATE demo.step SET n = 4;
\timing on
\set ECHO queries
CALL stage_norm.migrate('portfolio', 'stage', batch_size => 5000, max_batches => 4);
\set ECHO none
\timing off
\set ECHO queries
SELECT run_id, status, batches, rows_scanned, rows_updated, rows_unknown, percent_done FROM stage_norm.migration_progress;
CALL demo.app(2000);
\set ECHO none
-- Further windows while the run is not finished (at most 5 more).
SELECT status <> 'finished' AS more FROM stage_norm.migration_runs ORDER BY run_id DESC LIMIT 1 \gset
\if :more
\timing on
\set ECHO queries
CALL stage_norm.migrate('portfolio', 'stage', batch_size => 5000, max_batches => 4);
\set ECHO none
\timing off
\set ECHO queries
SELECT run_id, status, batches, rows_scanned, rows_updated, rows_unknown, percent_done FROM stage_norm.migration_progress;
CALL demo.app(2000);
\set ECHO none
\endif
SQL
for _ in 1 2 3 4; do
cat <<'SQL'
SELECT status <> 'finished' AS more FROM stage_norm.migration_runs ORDER BY run_id DESC LIMIT 1 \gset
\if :more
\timing on
\set ECHO queries
CALL stage_norm.migrate('portfolio', 'stage', batch_size => 5000, max_batches => 4);
\set ECHO none
\timing off
\endif
SQL
done
cat <<'SQL'
\echo 'The run (each batch''s rows and milliseconds are in the NOTICEs above; timings vary from run to run):'
\set ECHO queries
SELECT run_id, status, batches, rows_before, rows_scanned, rows_updated, rows_unknown, rows_after,
       (SELECT round(sum(duration_ms)) FROM stage_norm.migration_batches b WHERE b.run_id = r.run_id) AS batch_ms
  FROM stage_norm.migration_runs r ORDER BY run_id DESC LIMIT 1;
\set ECHO none

\echo
\echo '== step 5: verify ======================================================================='
UPDATE demo.step SET n = 5;
\set ECHO queries
\x on
SELECT v->'rows' AS rows, v->'nulls' AS nulls, v->'non_canonical' AS non_canonical, v->'stages' AS stages,
       v->'top_non_canonical' AS top_non_canonical
  FROM stage_norm.verify('portfolio', 'stage') v;
\x off
\set ON_ERROR_STOP 0
SELECT stage_norm.assert_verified('portfolio', 'stage') IS NOT NULL AS verified;
\set ON_ERROR_STOP 1
\set ECHO none
\echo 'Refused (23514): unknown labels are left as they were. A human decides: here, they mean "stage not known":'
\set ECHO queries
UPDATE portfolio SET stage = NULL WHERE stage IS NOT NULL AND stage_norm.normalize_stage(stage) IS NULL;
SELECT stage_norm.assert_verified('portfolio', 'stage') IS NOT NULL AS verified;
\set ECHO none

\echo
\echo '== step 6: wait for "ready to enforce" =================================================='
\echo 'The gate is the Prometheus rule stage_norm:ready_to_enforce (docs/monitoring/rules.yml):'
\echo '  (stage_norm:unknown_ratio:avg_7d < bool 0.005) * (stage_norm:unknown_ratio:max_1h_7d <= bool 0.01)'
\echo '  unknown = warned + rejected + would_reject; judged = passed + normalized + warned + rejected + would_normalize + would_reject'
\echo 'plus assert_verified (step 5). The same from stage_norm.stats in SQL, over the application''s writes'
\echo 'since step 3 (the watch window: in production 7 days; here each CALL demo.app stands in for an hour):'
UPDATE demo.step SET n = 6;
\set ECHO queries
SELECT count(*) AS hours, sum(judged) AS judged, sum(unknown) AS unknown,
       round(100.0 * sum(unknown) / sum(judged), 3) AS "unknown % (avg)",
       round(100.0 * max(unknown::numeric / nullif(judged, 0)), 3) AS "worst hour %",
       (sum(unknown)::numeric / sum(judged) < 0.005 AND max(unknown::numeric / nullif(judged, 0)) <= 0.01) AS ready_to_enforce
  FROM demo.ticks WHERE tick > :watch_after;
SELECT stage_norm.assert_verified('portfolio', 'stage') IS NOT NULL AS verified;
\set ECHO none
\echo 'Arm the circuit breaker meanwhile: above 5% rejected over 5 minutes it caps the table at warn.'
\set ECHO queries
LOAD 'stage_norm';
ALTER SYSTEM SET stage_norm.breaker_reject_ratio = 0.05;
ALTER SYSTEM SET stage_norm.breaker_window = 300;
ALTER SYSTEM SET stage_norm.breaker_min_rows = 1000;
\set setting stage_norm.breaker_min_rows
\set expected 1000
\i :reload_wait
SHOW stage_norm.breaker_reject_ratio;
\set ECHO none

\echo
\echo '== step 7: enforce, as a canary ========================================================='
\echo 'Unknown values of 10% of the rows (by primary key) are rejected by the trigger; the rest are'
\echo 'stored with a warning (the CHECK comes last, step 9, so the canary and the breaker govern).'
UPDATE demo.step SET n = 7;
\set ECHO queries
LOAD 'stage_norm';
ALTER SYSTEM SET stage_norm.enforce_percent = 10;
\set setting stage_norm.enforce_percent
\set expected 10
\i :reload_wait
SHOW stage_norm.enforce_percent;
SELECT stage_norm.set_table_mode('portfolio', 'enforce');
CALL demo.app(5000);
CALL demo.app(5000);
SELECT outcome, count FROM stage_norm.stats
 WHERE datname = current_database() AND table_name = 'portfolio' AND outcome IN ('rejected', 'warned') ORDER BY 1;
SELECT tripped, window_values, window_rejects FROM stage_norm.breakers WHERE datname = current_database() AND table_name = 'portfolio';
\set ECHO none

\echo
\echo '== step 8: enforce fully ================================================================'
UPDATE demo.step SET n = 8;
\set ECHO queries
LOAD 'stage_norm';
ALTER SYSTEM RESET stage_norm.enforce_percent;
\set setting stage_norm.enforce_percent
\set expected 100
\i :reload_wait
SHOW stage_norm.enforce_percent;
SELECT stage_norm.effective_mode('portfolio');
CALL demo.app(5000);
\set ECHO none
\echo 'The message a writer gets for an unknown label:'
\set VERBOSITY default
\set ON_ERROR_STOP 0
\set ECHO queries
INSERT INTO portfolio VALUES (900003, 'Late Typo GmbH', 3, 'Serie Z');
\set ECHO none
\set ON_ERROR_STOP 1
\set VERBOSITY terse

\echo
\echo '== step 9: prove the column canonical: a CHECK =========================================='
\echo 'Last, once nothing unknown can be stored. The canary stored some unknown labels (outside its 10%):'
\echo 'they are what the constraint would refuse, so they are fixed first (here: cleared), then the CHECK is'
\echo 'added NOT VALID (a brief lock) and validated (no lock that blocks writes).'
UPDATE demo.step SET n = 9;
\set ECHO queries
SELECT * FROM stage_norm.unknown_labels('portfolio', 'stage');
UPDATE portfolio SET stage = NULL WHERE stage IS NOT NULL AND stage_norm.normalize_stage(stage) IS NULL;
CALL stage_norm.add_check('portfolio', 'stage', validate => false);
CALL demo.app(5000);
\timing on
ALTER TABLE portfolio VALIDATE CONSTRAINT stage_stage_canonical;
\timing off
SELECT conname, convalidated, pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'portfolio'::regclass AND contype = 'c';
\set ECHO none

\echo
\echo '== the end state ========================================================================'
\set ECHO queries
SELECT table_name, columns, override_mode, effective_mode, trigger_enabled, breaker_tripped FROM stage_norm.table_modes;
SELECT stage, count(*) FROM portfolio GROUP BY stage ORDER BY stage_norm.stage_rank(stage) NULLS LAST;
SELECT outcome, count FROM stage_norm.stats WHERE datname = current_database() AND table_name = 'portfolio' AND count > 0 ORDER BY 1;
SELECT sampled_calls, round(mean_us::numeric, 2) AS mean_us, round(p50_us::numeric, 2) AS p50_us, round(p99_us::numeric, 2) AS p99_us
  FROM stage_norm.latency WHERE datname = current_database() AND table_name = 'portfolio';
\set ECHO none
\echo 'The application''s writes, step by step:'
SELECT at_step AS step, count(*) AS calls, sum(rows_sent) AS sent, sum(stored) AS stored, sum(by_trigger) AS refused_by_trigger,
       sum(by_check) AS refused_by_check, sum(judged) AS judged, sum(unknown) AS unknown, sum(rejected) AS rejected, sum(ms) AS ms
  FROM demo.ticks GROUP BY at_step ORDER BY 1;
\echo 'Roll back any step in one statement: docs/runbook.md ("Roll back"); the emergency one is'
\echo '  LOAD ''stage_norm''; ALTER SYSTEM SET stage_norm.max_mode = ''warn''; SELECT pg_reload_conf();'
\echo
\echo '== end of demo (the throwaway cluster is removed) ========================================'
SQL
} | psql -X -q -v ON_ERROR_STOP=1 -v reload_wait="$(cd "$(dirname "$0")" && pwd)/demo-reload-wait.sql" -d postgres 2>&1 | sed -u -E 's/^psql:<stdin>:[0-9]+: //'
