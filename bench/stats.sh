#!/usr/bin/env bash
# The cluster-wide statistics' cost under concurrency (#17): 8 pgbench clients, single-row
# INSERTs through the trigger (enforce, messy and canonical labels), with stage_norm.track_stats
# on and off, interleaved rounds of BENCH_STATS_SECONDS (default 10) each. Needs stage_norm in
# shared_preload_libraries (scripts/with-cluster.sh's default). Prints tps per round, medians and
# the paired ratio (ceiling: on / off >= 0.97).
set -euo pipefail
rounds=${BENCH_STATS_ROUNDS:-5}
secs=${BENCH_STATS_SECONDS:-10}
db=bench_stats
psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
psql -X -q -v ON_ERROR_STOP=1 -d $db <<'SQL'
CREATE EXTENSION stage_norm;
CREATE TABLE t (id bigserial PRIMARY KEY, stage text);
SELECT stage_norm.attach('t', 'stage');
SQL
psql -X -At -d $db -c "SHOW shared_preload_libraries" | grep -q stage_norm || { echo "stats: stage_norm is not preloaded" >&2; exit 1; }
script=$(mktemp); trap 'rm -f "$script"' EXIT
cat > "$script" <<'SQL'
\set r random(1, 4)
INSERT INTO t (stage) VALUES (CASE :r WHEN 1 THEN 'Series A ' WHEN 2 THEN 'seed' WHEN 3 THEN 'pre_seed' ELSE 'series-b' END);
SQL
declare -a on off
run() { PGOPTIONS="-c stage_norm.mode=enforce -c stage_norm.track_stats=$1" pgbench -n -c 8 -j 2 -T "$secs" -f "$script" $db 2>/dev/null | awk '/^tps/ {print $3; exit}'; }
for r in $(seq 1 "$rounds"); do
  order="on off"; [[ $((r % 2)) == 0 ]] && order="off on"
  for v in $order; do
    tps=$(run $v)
    if [[ $v == on ]]; then on[$r]=$tps; else off[$r]=$tps; fi
    psql -X -q -d $db -c "TRUNCATE t" >/dev/null
  done
  echo "  round $r: on ${on[$r]} tps, off ${off[$r]} tps"
done
printf '%s\n' "${on[@]}" > /tmp/sn_on.$$; printf '%s\n' "${off[@]}" > /tmp/sn_off.$$
python3 - /tmp/sn_on.$$ /tmp/sn_off.$$ "$secs" <<'PY'
import sys, statistics as st
on=[float(x) for x in open(sys.argv[1])]; off=[float(x) for x in open(sys.argv[2])]
print(f"8 clients, single-row INSERTs, enforce: median tps on {st.median(on):.0f}, off {st.median(off):.0f}; "
      f"on/off medians {st.median(on)/st.median(off):.3f}, paired {st.median([a/b for a,b in zip(on,off)]):.3f} (floor 0.97)")
# Machine-readable lines (bench/lib.sql's format) for bench/report.js.
secs, rounds = sys.argv[3], len(on)
med, paired = st.median(on) / st.median(off), st.median([a / b for a, b in zip(on, off)])
for l in (["title", "stats", "stats_tps", f"8 pgbench clients, single-row INSERTs through the trigger (enforce), {rounds} rounds of {secs} s: stage_norm.track_stats on vs off (tps; ratio < 1 is slower)"],
          ["median", "stats", "stats_tps", "on", f"{st.median(on):.1f}", "tps", str(rounds)],
          ["median", "stats", "stats_tps", "off", f"{st.median(off):.1f}", "tps", str(rounds)],
          ["ratio", "stats", "stats_tps", "on", "off", f"{med:.4f}", f"{paired:.4f}"],
          ["check", "stats", "s1", "tps: track_stats on / off", ">=", "0.97", f"{med:.4f}", f"{paired:.4f}", "pass" if paired >= 0.97 else "FAIL"]):
    print("\t".join(["RESULT"] + l))
PY
rm -f /tmp/sn_on.$$ /tmp/sn_off.$$
psql -X -q -d postgres -c "DROP DATABASE $db"
