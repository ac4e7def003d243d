#!/usr/bin/env bash
# make bench-run (make bench = make install, then this): every benchmark of make bench in one go,
# its output shown and kept in bench/results/last-run.log, then bench/report.js, which rewrites
# the generated section of docs/benchmarks.md and draws docs/benchmarks.png from the log's
# RESULT lines. Arguments: the cluster's --conf options (the Makefile's BENCH_CONF).
#   1. bench/run.sh on a throwaway cluster (scripts/with-cluster.sh): the wall-clock suites and
#      the Node peer;
#   2. bench/callgrind.sh: instruction counts of the trigger variants (CALLGRIND_ROWS, 100,000),
#      and of normalize_stage against lower() (the f_* variants);
#   3. the jsonb distribution variants by instructions (CALLGRIND_JSONB_ROWS, 1,000,000);
#   4. bench/callgrind_migrate.sh: migrate against the single UPDATE by instructions, at
#      CALLGRIND_MIGRATE_ROWS (default "100000 1000000"; #28's goals are at those sizes).
# BENCH_QUICK=1: the whole pipeline in a few minutes (fewer rounds and rows, see bench/run.sh;
# callgrind on 10,000 rows); the report then says it is a quick run. BENCH_NO_REPORT=1: the
# log only. BENCH_NOTE='...': a sentence the report prints in its header (e.g. what else ran on
# the machine). A failing step fails the whole and leaves docs/ untouched.
set -euo pipefail
cd "$(dirname "$0")/.."
log=bench/results/last-run.log
mkdir -p bench/results
if [[ -n ${BENCH_QUICK:-} && ${BENCH_QUICK} != 0 ]]; then
  : "${CALLGRIND_ROWS:=10000}" "${CALLGRIND_JSONB_ROWS:=10000}" "${CALLGRIND_MIGRATE_ROWS:=10000 100000}"
fi
cg_rows=${CALLGRIND_ROWS:-100000}
cgj_rows=${CALLGRIND_JSONB_ROWS:-1000000}
start=$(date +%s)
# Which build is measured: the installed library's time and checksum, before and after (on a
# shared machine another `make install` may replace it during the run; the report says so).
lib=$(/usr/lib/postgresql/15/bin/pg_config --pkglibdir)/stage_norm.so
lib_id() { echo "installed $(date -u -r "$lib" '+%Y-%m-%d %H:%M:%S UTC'), md5 $(md5sum < "$lib" | cut -c1-12)"; }
set -o pipefail
{
  printf 'RESULT\tmeta\tlibrary_start\t%s\n' "$(lib_id)"
  bash scripts/with-cluster.sh "$@" -- bash bench/run.sh
  echo "== callgrind"
  bash bench/callgrind.sh "$cg_rows"
  echo "== callgrind (normalize_stage against lower())"
  VARIANTS="startup f_count_ascii f_lower_ascii f_normalize_ascii f_count_mixed f_lower_mixed f_normalize_mixed" bash bench/callgrind.sh "$cg_rows"
  echo "== callgrind (jsonb distributions)"
  VARIANTS="startup j_none j_canonical" bash bench/callgrind.sh "$cgj_rows"
  echo "== callgrind (stage arrays)"
  VARIANTS="startup a_none a_enforce a_canonical" bash bench/callgrind.sh "$cgj_rows"
  echo "== callgrind (migrate against one UPDATE)"
  # shellcheck disable=SC2086
  bash bench/callgrind_migrate.sh ${CALLGRIND_MIGRATE_ROWS:-100000 1000000}
  conf=""; for a in "$@"; do if [[ $a == --* ]]; then conf+="$a "; else conf+="'$a' "; fi; done
  printf 'RESULT\tmeta\tcluster_conf\t%s\n' "${conf% }"
  [[ -z ${BENCH_NOTE:-} ]] || printf 'RESULT\tmeta\tnote\t%s\n' "$BENCH_NOTE"
  printf 'RESULT\tmeta\tduration_s\t%s\n' "$(( $(date +%s) - start ))"
  printf 'RESULT\tmeta\tlibrary_end\t%s\n' "$(lib_id)"
  printf 'RESULT\tmeta\tloadavg_after_callgrind\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} 2>&1 | tee "$log"
echo "make bench: $(( $(date +%s) - start )) s; log in $log"
[[ -n ${BENCH_NO_REPORT:-} ]] || node bench/report.js "$log"
