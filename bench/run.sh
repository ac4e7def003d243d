#!/usr/bin/env bash
# make bench: runs every benchmark suite against the throwaway cluster (scripts/with-cluster.sh)
# and prints medians and ratios. BENCH_ROUNDS (default 7) rounds per variant, interleaved.
# A suite is bench/<name>.sql run through psql, or bench/<name>.sh run by bash when there is one
# (migrate: procedures that COMMIT, timed from the shell; its own BENCH_MIGRATE_ROUNDS, default 3).
# Besides its tables every suite prints machine-readable RESULT lines (format: bench/lib.sql),
# which bench/report.js turns into docs/benchmarks.md's generated section; this script prints the
# RESULT meta lines (machine, PostgreSQL, settings, rounds).
# BENCH_QUICK=1: a quick check of the pipeline, not a measurement: 3 rounds, 100,000 rows
# (normalize keeps its 1,000,000), 1 migrate round, 2 stats rounds of 3 s, fewer calls.
set -euo pipefail
cd "$(dirname "$0")"
quick=${BENCH_QUICK:-}
psql_vars=()
node_calls=200000
if [[ -n $quick && $quick != 0 ]]; then
  quick=1
  : "${BENCH_ROUNDS:=3}" "${BENCH_ROWS:=100000}" "${BENCH_MIGRATE_ROUNDS:=1}" "${BENCH_STATS_ROUNDS:=2}" "${BENCH_STATS_SECONDS:=3}"
  export BENCH_MIGRATE_ROUNDS BENCH_STATS_ROUNDS BENCH_STATS_SECONDS
  psql_vars=(-v dist_calls=10000 -v dist_batches=200 -v stages_calls=10 -v stages_batches=40)
  node_calls=20000
else
  quick=0
fi
rounds=${BENCH_ROUNDS:-7}
rows=${BENCH_ROWS:-1000000}
suites=${BENCH_SUITES:-normalize normalize_custom trigger distributions migrate stats}
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE bench" >/dev/null
export PGDATABASE=bench
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION stage_norm" -f lib.sql >/dev/null
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(psql -X -At -c 'SHOW server_version'); rounds=$rounds; $(psql -X -At -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit', 'shared_buffers')")"
meta() { printf 'RESULT\tmeta\t%s\t%s\n' "$1" "$2"; }
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta commit "$(git -C .. rev-parse --short HEAD 2>/dev/null || echo unknown)"
meta cores "$(nproc)"
meta ram "$(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
meta cpu "$(awk -F': *' '/^model name/{print $2; exit}' /proc/cpuinfo)"
meta os "$(. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"), kernel $(uname -r)"
meta postgres "$(psql -X -At -c 'SHOW server_version')"
meta stage_norm "$(psql -X -At -c "SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'"), library installed $(date -u -r "$(pg_config --pkglibdir 2>/dev/null || /usr/lib/postgresql/15/bin/pg_config --pkglibdir)/stage_norm.so" '+%Y-%m-%d %H:%M UTC' 2>/dev/null || echo '?')"
meta settings "$(psql -X -At -c "SELECT string_agg(name || ' = ' || current_setting(name), ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit', 'shared_buffers', 'max_wal_size', 'checkpoint_timeout', 'shared_preload_libraries')")"
meta rounds "$rounds"
meta rows "$rows"
meta migrate_rounds "${BENCH_MIGRATE_ROUNDS:-3}"
meta stats_rounds "${BENCH_STATS_ROUNDS:-5} x ${BENCH_STATS_SECONDS:-10} s"
meta quick "$quick"
meta suites "$suites"
meta loadavg_start "$(cut -d' ' -f1-3 /proc/loadavg)"
for s in $suites; do
  echo "== $s"
  if [[ -f "$s.sh" ]]; then
    BENCH_ROWS=$rows bash "$s.sh"
  else
    PGOPTIONS="-c bench.rounds=$rounds -c bench.rows=$rows" psql -X -q -v ON_ERROR_STOP=1 "${psql_vars[@]}" -f "$s.sql"
  fi
done
if command -v node >/dev/null; then echo "== node"; node node/bench.js "$node_calls"; fi
meta loadavg_end "$(cut -d' ' -f1-3 /proc/loadavg)"
