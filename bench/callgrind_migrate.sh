#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) of migrating a column, against the one statement
#   UPDATE t SET stage = stage_norm.normalize_stage(stage)
#    WHERE stage IS DISTINCT FROM stage_norm.normalize_stage(stage)
# in a single-user backend (issue #28): the wall-clock ratios of bench/migrate.sh are noisy on
# two cores, and what they leave undecided the counts decide. Same table as bench/migrate.sh:
# t (id bigint PRIMARY KEY, stage text), 8 labels cycling, 7 of them rewritten, the trigger
# attached; a fresh copy per variant, VACUUM ANALYZE, CHECKPOINT.
#   bench/callgrind_migrate.sh [rows...]      (default 100000 1000000; needs `make install`)
# (Single-user input: a statement ends with a semicolon and a blank line, postgres -j.)
# Variants: update, migrate_noundo (keep_undo => false), migrate_undo (the default). Printed per
# size: instructions per table row over a backend that runs `SELECT 1`, and each migrate's
# ratio to the UPDATE (throughput: update / migrate), and the per-row cost's growth from the
# first size to the last.
set -euo pipefail
sizes=("$@"); ((${#sizes[@]})) || sizes=(100000 1000000)
BIN=${STAGE_NORM_PG_BIN:-/usr/lib/postgresql/15/bin}
dir=$(mktemp -d /tmp/stage_norm_cgm.XXXXXX); chown postgres: "$dir"
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$dir"' EXIT
as_pg() { (cd / && runuser -u postgres -- "$@"); }
as_pg "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
printf "fsync = off\nsynchronous_commit = off\nshared_buffers = 1GB\nmax_wal_size = 8GB\nautovacuum = off\n" >> "$dir/data/postgresql.conf"
single() { as_pg "$BIN/postgres" --single -D "$dir/data" -j postgres; }
counted() {  # instructions of a single-user backend running the SQL in $1
  local f="$dir/cg.$RANDOM"
  printf '%s\n' "$1" > "$dir/stmt.sql"
  as_pg valgrind --tool=callgrind --callgrind-out-file="$f" "$BIN/postgres" --single -D "$dir/data" -j postgres \
    < "$dir/stmt.sql" > "$dir/run.out" 2>&1 || { cat "$dir/run.out" >&2; exit 1; }
  if grep -q "ERROR" "$dir/run.out"; then cat "$dir/run.out" >&2; exit 1; fi
  awk '/^summary:/ {print $2}' "$f"; if [[ -n "${KEEP:-}" ]]; then cp "$f" "$f.kept"; fi; rm -f "$f"
}
printf 'CREATE EXTENSION stage_norm;\n' | single > "$dir/setup.out" 2>&1
printf "%-10s %-16s %16s %14s %10s\n" rows variant instructions per_row "vs UPDATE"
declare -A per_row
for rows in "${sizes[@]}"; do
  single > "$dir/setup.out" 2>&1 <<SQL
DROP TABLE IF EXISTS src;

CREATE TABLE src AS SELECT i::bigint AS id,
    (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Seed Round', 'SERIES C+', 'Pre Seed', 'series b', 'seed'])[1 + i % 8] AS stage
  FROM generate_series(1, $rows) i;

VACUUM (FREEZE, ANALYZE) src;

SQL
  base=$(counted "SELECT 1;")
  for v in update migrate_noundo migrate_undo; do
    single > "$dir/setup.out" 2>&1 <<'SQL'
DROP TABLE IF EXISTS t;

TRUNCATE stage_norm.migration_undo, stage_norm.migration_batches, stage_norm.migration_runs;

CREATE TABLE t (id bigint PRIMARY KEY, stage text);

INSERT INTO t SELECT id, stage FROM src ORDER BY id;

SELECT stage_norm.attach('t', 'stage');

VACUUM (FREEZE, ANALYZE) t;

VACUUM ANALYZE stage_norm.migration_runs, stage_norm.migration_batches, stage_norm.migration_undo;

CHECKPOINT;

SQL
    case $v in
      update) sql="UPDATE t SET stage = stage_norm.normalize_stage(stage) WHERE stage IS DISTINCT FROM stage_norm.normalize_stage(stage);" ;;
      migrate_noundo) sql="CALL stage_norm.migrate('t', 'stage', keep_undo => false);" ;;
      migrate_undo) sql="CALL stage_norm.migrate('t', 'stage');" ;;
    esac
    n=$(counted "$sql")
    left=$(printf 'SELECT count(*) FROM t WHERE NOT stage_norm.is_canonical_stage(stage);\n' | single 2>&1 | sed -nE 's/^\s*1: count = "([0-9]+)".*/\1/p')
    [[ $left == 0 ]] || { echo "callgrind_migrate: $v left $left rows not canonical" >&2; exit 1; }
    per_row[$rows.$v]=$(( (n - base) / rows ))
    ratio=""
    [[ $v == update ]] || ratio=$(awk -v u="${per_row[$rows.update]}" -v m="${per_row[$rows.$v]}" 'BEGIN {printf "%.3fx", u / m}')
    printf "%-10s %-16s %16d %14d %10s\n" "$rows" "$v" "$((n - base))" "${per_row[$rows.$v]}" "$ratio"
  done
done
if ((${#sizes[@]} > 1)); then
  first=${sizes[0]} last=${sizes[-1]}
  for v in update migrate_noundo migrate_undo; do
    awk -v a="${per_row[$first.$v]}" -v b="${per_row[$last.$v]}" -v v="$v" -v f="$first" -v l="$last" \
      'BEGIN {printf "per-row growth %s: %d rows -> %d rows: %+.1f%%\n", v, f, l, 100 * (b / a - 1)}'
  done
fi
