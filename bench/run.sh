#!/usr/bin/env bash
# make bench: runs every benchmark suite against the throwaway cluster (scripts/with-cluster.sh)
# and prints medians and ratios. BENCH_ROUNDS (default 7) rounds per variant, interleaved.
# A suite is bench/<name>.sql run through psql, or bench/<name>.sh run by bash when there is one
# (migrate: procedures that COMMIT, timed from the shell; its own BENCH_MIGRATE_ROUNDS, default 3).
set -euo pipefail
cd "$(dirname "$0")"
rounds=${BENCH_ROUNDS:-7}
suites=${BENCH_SUITES:-normalize normalize_custom trigger distributions migrate stats}
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE DATABASE bench" >/dev/null
export PGDATABASE=bench
psql -X -q -v ON_ERROR_STOP=1 -c "CREATE EXTENSION stage_norm" -f lib.sql >/dev/null
echo "machine: $(nproc) cores, $(awk '/MemTotal/{printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(psql -X -At -c 'SHOW server_version'); rounds=$rounds; $(psql -X -At -c "SELECT string_agg(name || '=' || setting, ', ' ORDER BY name) FROM pg_settings WHERE name IN ('fsync', 'full_page_writes', 'synchronous_commit', 'shared_buffers')")"
for s in $suites; do
  echo "== $s"
  if [[ -f "$s.sh" ]]; then
    BENCH_ROWS=${BENCH_ROWS:-1000000} bash "$s.sh"
  else
    PGOPTIONS="-c bench.rounds=$rounds -c bench.rows=${BENCH_ROWS:-1000000}" psql -X -q -v ON_ERROR_STOP=1 -f "$s.sql"
  fi
done
if command -v node >/dev/null; then echo "== node"; node node/bench.js; fi
