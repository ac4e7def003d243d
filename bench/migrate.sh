#!/usr/bin/env bash
# Issue #16: CALL stage_norm.migrate(...) against the single statement
#   UPDATE t SET stage = stage_norm.normalize_stage(stage)
#    WHERE stage IS DISTINCT FROM stage_norm.normalize_stage(stage)
# on a table t (id bigint PRIMARY KEY, stage text) of BENCH_ROWS rows (default 1,000,000) whose
# labels cycle through 8 values, 7 needing a rewrite and 1 canonical, with stage_norm's trigger
# attached (stage_norm.attach(t, 'stage'), default mode), as users would have it.
#
# Variants: update (the statement above), migrate_noundo (keep_undo => false), migrate_undo
# (keep_undo default true); batch_size default (5000). BENCH_MIGRATE_ROUNDS rounds (default 3),
# the variants' order rotating every round; no warm-up round (each variant runs for seconds).
# Before each variant: t dropped and rebuilt from bench.migrate_src (triggers attached after the
# load), the migration tables emptied, VACUUM ANALYZE t, CHECKPOINT. Measured per variant:
# wall time from the shell (date +%s%N around one psql -c, connection included: a few ms), WAL
# bytes (pg_wal_lsn_diff of pg_current_wal_lsn() read before and after, so the whole cluster's
# WAL, the migration's bookkeeping and undo included), and for migrate the per-batch durations of
# stage_norm.migration_batches (p50, p99 and max over every batch of a variant's runs). A sanity check after each run: every row canonical, row count
# unchanged, rows_updated as expected. Run by bench/run.sh (inside scripts/with-cluster.sh) when
# BENCH_SUITES names `migrate`; it needs PGHOST/PGPORT/PGUSER and PGDATABASE=bench.
set -euo pipefail
rows=${BENCH_ROWS:-1000000}
rounds=${BENCH_MIGRATE_ROUNDS:-3}
variants=(update migrate_noundo migrate_undo)
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"
q() { psql -X -q -v ON_ERROR_STOP=1 "$@"; }
val() { psql -X -q -At -v ON_ERROR_STOP=1 -c "$1"; }

q <<SQL
CREATE SCHEMA IF NOT EXISTS bench;
DROP TABLE IF EXISTS bench.migrate_runs, bench.migrate_batches, bench.migrate_src;
CREATE TABLE bench.migrate_runs (variant text, round int, ms float8, wal_bytes numeric, rows bigint,
                                 rows_updated bigint, batches int, batch_ms_sum float8);
CREATE TABLE bench.migrate_batches (variant text, round int, batch int, rows_updated bigint, duration_ms float8);
-- 7 labels needing a rewrite, then 'seed' (canonical): 7 in 8 rows change.
CREATE TABLE bench.migrate_src WITH (autovacuum_enabled = false) AS
    SELECT i::bigint AS id,
           (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Seed Round', 'SERIES C+', 'Pre Seed', 'series b', 'seed'])[1 + i % 8] AS stage
      FROM generate_series(1, $rows) i;
VACUUM ANALYZE bench.migrate_src;
SQL
# The labels do what the suite says: 7 known variants, 1 canonical.
check=$(val "SELECT count(*) FILTER (WHERE n IS NOT NULL AND n <> x) || '/' || count(*) FILTER (WHERE n = x AND stage_norm.is_canonical_stage(x))
               FROM (SELECT x, stage_norm.normalize_stage(x) AS n FROM unnest(ARRAY['Series A ', 'pre_seed', 'seriesB', 'Seed Round', 'SERIES C+', 'Pre Seed', 'series b', 'seed']) x) s")
[[ $check == 7/1 ]] || { echo "migrate: the labels are not 7 variants + 1 canonical ($check)" >&2; exit 1; }
expected_updates=$(val "SELECT count(*) FROM bench.migrate_src WHERE NOT stage_norm.is_canonical_stage(stage)")
# What is measured: the installed extension's migrate (its definition's md5, to tell versions apart).
echo "stage_norm $(val "SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'"), migrate definition md5 $(val "SELECT left(md5(string_agg(pg_get_functiondef(p.oid), '' ORDER BY p.oid)), 12) FROM pg_proc p WHERE p.proname = 'migrate' AND p.pronamespace = 'stage_norm'::regnamespace")"

prepare() {
  q <<'SQL'
DROP TABLE IF EXISTS public.t;
TRUNCATE stage_norm.migration_undo, stage_norm.migration_batches, stage_norm.migration_runs;
CREATE TABLE public.t (id bigint PRIMARY KEY, stage text) WITH (autovacuum_enabled = false);
INSERT INTO public.t SELECT id, stage FROM bench.migrate_src ORDER BY id;
DO $$ BEGIN PERFORM stage_norm.attach('public.t', 'stage'); END $$;
VACUUM ANALYZE public.t;
VACUUM ANALYZE stage_norm.migration_runs, stage_norm.migration_batches, stage_norm.migration_undo;
CHECKPOINT;
SQL
}

run_variant() {  # variant round
  local v=$1 r=$2 stmt lsn0 lsn1 t0 t1 out
  case $v in
    update) stmt="UPDATE public.t SET stage = stage_norm.normalize_stage(stage) WHERE stage IS DISTINCT FROM stage_norm.normalize_stage(stage)" ;;
    migrate_noundo) stmt="CALL stage_norm.migrate('public.t', 'stage', keep_undo => false)" ;;
    migrate_undo) stmt="CALL stage_norm.migrate('public.t', 'stage')" ;;
  esac
  prepare
  mode=$(val "SELECT stage_norm.effective_mode('public.t')")
  lsn0=$(val "SELECT pg_current_wal_lsn()")
  t0=$(date +%s%N)
  out=$(psql -X -v ON_ERROR_STOP=1 -c "$stmt")
  t1=$(date +%s%N)
  [[ $v == update ]] && out=${out#UPDATE } || out=NULL
  lsn1=$(val "SELECT pg_current_wal_lsn()")
  q <<SQL
INSERT INTO bench.migrate_runs
SELECT '$v', $r, ($t1 - $t0) / 1e6, pg_wal_lsn_diff('$lsn1', '$lsn0'),
       (SELECT count(*) FROM public.t),
       CASE WHEN '$v' = 'update' THEN $out ELSE (SELECT sum(rows_updated) FROM stage_norm.migration_runs) END,
       (SELECT count(*) FROM stage_norm.migration_batches),
       (SELECT sum(duration_ms) FROM stage_norm.migration_batches);
INSERT INTO bench.migrate_batches SELECT '$v', $r, batch, rows_updated, duration_ms FROM stage_norm.migration_batches;
SQL
  # Sanity: every row canonical, none lost, the expected number rewritten (and undo rows kept).
  local bad
  bad=$(val "SELECT concat_ws(', ',
               CASE WHEN (SELECT count(*) FROM public.t WHERE NOT stage_norm.is_canonical_stage(stage)) > 0 THEN 'non-canonical rows left' END,
               CASE WHEN (SELECT count(*) FROM public.t) <> $rows THEN 'row count changed' END,
               CASE WHEN (SELECT rows_updated FROM bench.migrate_runs WHERE variant = '$v' AND round = $r) <> $expected_updates THEN 'rows_updated wrong' END,
               CASE WHEN '$v' <> 'update' AND (SELECT string_agg(status, ',') FROM stage_norm.migration_runs) <> 'finished' THEN 'run not finished' END,
               CASE WHEN (SELECT coalesce(sum(cardinality(old_values)), 0) FROM stage_norm.migration_undo) <> CASE '$v' WHEN 'migrate_undo' THEN $expected_updates ELSE 0 END THEN 'undo values wrong' END)")
  [[ -z $bad ]] || { echo "migrate: $v round $r: $bad" >&2; exit 1; }
  printf '  round %d %-15s %7d ms\n' "$r" "$v" "$(( (t1 - t0) / 1000000 ))"
}

n=${#variants[@]}
for ((r = 1; r <= rounds; r++)); do
  for ((j = 0; j < n; j++)); do
    run_variant "${variants[$(( (r - 1 + j) % n ))]}" "$r"
  done
done
q -c "DROP TABLE IF EXISTS public.t" -c "TRUNCATE stage_norm.migration_undo, stage_norm.migration_batches, stage_norm.migration_runs"

q <<SQL
\echo '$rows rows, 7 in 8 needing a rewrite ($expected_updates), stage_norm trigger attached (effective mode $mode); batch_size 5000; $rounds rounds; wall time from the shell:'
WITH m AS (
    SELECT variant, count(*) AS runs,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY wal_bytes / rows) AS wal_row,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY ms - batch_ms_sum) AS outside_ms,
           min(batches) AS batches
      FROM bench.migrate_runs GROUP BY variant),
b AS (
    SELECT variant, percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms) AS p50,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms) AS p99, max(duration_ms) AS max
      FROM bench.migrate_batches GROUP BY variant),
u AS (SELECT ms AS u_ms, wal_row AS u_wal_row FROM m WHERE variant = 'update')
SELECT m.variant, m.runs, round(m.ms::numeric) AS median_ms, round($rows / (m.ms / 1000)) AS rows_per_s,
       round((u.u_ms / m.ms)::numeric, 3) AS throughput_vs_update,
       round(m.wal_row::numeric, 1) AS wal_bytes_per_row, round((m.wal_row / u.u_wal_row)::numeric, 2) AS wal_vs_update,
       m.batches, round(b.p50::numeric, 1) AS batch_p50_ms, round(b.p99::numeric, 1) AS batch_p99_ms,
       round(b.max::numeric, 1) AS batch_max_ms, round(m.outside_ms::numeric) AS outside_batches_ms
  FROM m CROSS JOIN u LEFT JOIN b ON b.variant = m.variant
 ORDER BY m.ms;
\echo 'per round (ms; WAL bytes per row):'
SELECT round, string_agg(variant || ' ' || round(ms::numeric) || ' (' || round((wal_bytes / rows)::numeric, 1) || ')', ', ' ORDER BY variant) AS runs
  FROM bench.migrate_runs GROUP BY round ORDER BY round;
\echo 'checks (floors/ceilings from the issue; "medians": ratio of the medians, "paired": median over rounds of the ratio within a round):'
CREATE TEMP TABLE migrate_checks AS
WITH x AS (SELECT round, jsonb_object_agg(variant, ms) AS j FROM bench.migrate_runs GROUP BY round),
m AS (SELECT variant, percentile_cont(0.5) WITHIN GROUP (ORDER BY ms) AS ms FROM bench.migrate_runs GROUP BY variant),
def (n, label, op, bound, v) AS (VALUES
      (1, 'throughput migrate keep_undo off / update', '>=', 0.8, 'migrate_noundo'),
      (2, 'throughput migrate keep_undo on / update', '>=', 0.6, 'migrate_undo')),
c AS (
    SELECT d.*, (SELECT u.ms FROM m u WHERE u.variant = 'update') / (SELECT v.ms FROM m v WHERE v.variant = d.v) AS medians,
           (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY (x.j->>'update')::float8 / (x.j->>d.v)::float8) FROM x) AS paired
      FROM def d)
SELECT n AS "#", label AS "check", op || ' ' || bound AS bound, round(medians::numeric, 3) AS medians, round(paired::numeric, 3) AS paired,
       CASE WHEN paired >= bound THEN 'pass' ELSE 'FAIL' END AS "result (paired)"
  FROM c
UNION ALL
SELECT 2 + row_number() OVER (ORDER BY variant), 'longest batch, ' || variant || ' (ms)', '< 200', round(max(duration_ms)::numeric, 1), NULL,
       CASE WHEN max(duration_ms) < 200 THEN 'pass' ELSE 'FAIL' END
  FROM bench.migrate_batches GROUP BY variant;
TABLE migrate_checks ORDER BY 1;
-- Machine-readable lines (bench/lib.sql) for bench/report.js: the runs copied into bench.runs
-- (suite migrate: ms; migrate_wal: WAL bytes per row) after the measurement.
DELETE FROM bench.runs WHERE suite IN ('migrate', 'migrate_wal');
INSERT INTO bench.runs SELECT 'migrate', variant, round, ms FROM bench.migrate_runs;
INSERT INTO bench.runs SELECT 'migrate_wal', variant, round, wal_bytes / rows FROM bench.migrate_runs;
\pset format unaligned
\pset tuples_only on
SELECT bench.result_line('title', 'migrate', 'migrate',
       '$rows rows, 7 in 8 rewritten: CALL stage_norm.migrate vs the single UPDATE, wall time from the shell (ms; ratio > 1 is slower)');
SELECT bench.result_lines('migrate', 'migrate', ARRAY['update']);
SELECT bench.result_line('title', 'migrate', 'migrate_wal', 'WAL bytes per row (whole cluster)');
SELECT bench.result_lines('migrate', 'migrate_wal', ARRAY['update'], 1, 'B/row');
SELECT bench.result_line('check', 'migrate', 'm' || "#", "check", split_part(bound, ' ', 1), split_part(bound, ' ', 2),
                         medians::text, paired::text, "result (paired)")
  FROM migrate_checks ORDER BY "#";
SQL
