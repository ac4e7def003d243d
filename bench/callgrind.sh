#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) of one INSERT ... SELECT per trigger variant, in a
# single-user backend: deterministic where wall-clock ratios are too noisy to call.
#   bench/callgrind.sh [rows]      (default 100000; needs `make install` first)
#   VARIANTS="startup none enforce" bench/callgrind.sh   a subset of the variants; the jsonb
#       distribution variants run only when named: VARIANTS="startup j_none j_enforce j_canonical j_plpgsql"
#   VARIANTS="startup a_none a_enforce a_canonical" bench/callgrind.sh 20000   stage arrays (text[]),
#       likewise run only when named
#   VARIANTS="startup none s_enforce s_enforce_off s_canonical s_canonical_off" bench/callgrind.sh
#       the cluster-wide statistics (#17): with any s_* variant the backend preloads stage_norm;
#       s_X is X with the statistics on, s_X_off the same with stage_norm.track_stats = off
#   VARIANTS="startup f_count_ascii f_lower_ascii f_normalize_ascii f_count_mixed f_lower_mixed f_normalize_mixed"
#       normalize_stage against lower() over the labels of bench/normalize.sql (#31)
#   VARIANTS="startup none off enforce" bench/callgrind.sh 1   what a backend pays once for its first
#       governed row (ALIASES=1: with two aliases configured)
#   STAGE_SET=custom bench/callgrind.sh   the same under the 7-stage set pre-seed, seed, series-a,
#                                         series-b, series-c, series-d, growth (labels that set
#                                         does not know are replaced by ones it does)
# Prints instructions per row over the no-trigger baseline, and keeps the enforce profile in
# bench/results/ for callgrind_annotate.
set -euo pipefail
rows=${1:-100000}
labels="'Series A ','pre_seed','seriesB','Series D','Seed Round','seed','series-a','PRE-SEED','Series C Plus','series b2','Series A-2 Round','series-c+','Series E','seed round','Pre Seed','SERIES B','series a','Series C+','pre-seed','series-b'"
set_sql=""
canonical_fn=normalize_stage_builtin
# ALIASES=1: two aliases in the configuration (as bench/normalize.sql adds), for the cost a backend
# pays once to load it (bench/callgrind.sh 1)
[[ -n "${ALIASES:-}" ]] && set_sql="SELECT stage_norm.add_alias('Angel', 'pre-seed'), stage_norm.add_alias('Growth', 'series-c+');"
if [[ ${STAGE_SET:-default} == custom ]]; then
  labels="'Series A ','pre_seed','seriesB','Series D','Seed Round','seed','series-a','PRE-SEED','growth round','series b2','Series A-2 Round','series-c','Growth','seed round','Pre Seed','SERIES B','series a','Series C','pre-seed','series-b'"
  set_sql="SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'series-d', 'growth');"
  canonical_fn=normalize_stage
fi
BIN=${STAGE_NORM_PG_BIN:-/usr/lib/postgresql/15/bin}   # make PG=17|18: that server
here=$(cd "$(dirname "$0")" && pwd)
out=$here/results; mkdir -p "$out"
dir=$(mktemp -d /tmp/stage_norm_cg.XXXXXX); chown postgres: "$dir"
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$dir"' EXIT
as_pg() { (cd / && runuser -u postgres -- "$@"); }
as_pg "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
printf "fsync = off\nsynchronous_commit = off\nshared_buffers = 256MB\nmax_wal_size = 4GB\nautovacuum = off\n" >> "$dir/data/postgresql.conf"
if [[ " ${VARIANTS:-} " == *" s_"* ]]; then echo "shared_preload_libraries = 'stage_norm'" >> "$dir/data/postgresql.conf"; fi
single() { as_pg "$BIN/postgres" --single -D "$dir/data" -j postgres > "$dir/setup.out" 2>&1; }
{ echo "CREATE SCHEMA bench;"; echo; cat "$here/peers.sql"; echo; cat "$here/dist_peers.sql"; echo; sed -n '/^-- 1,000,000 messy labels/,/^\$\$;/p' "$here/lib.sql"; echo; } > "$dir/peers.sql"
cat "$dir/peers.sql" - > "$dir/setup.sql" <<SQL
CREATE EXTENSION stage_norm;
$set_sql
CREATE TABLE src AS SELECT i::bigint AS id, (ARRAY[$labels])[1 + i % 20] AS stage FROM generate_series(1, $rows) i;
CREATE TABLE src_canonical AS SELECT id, stage_norm.$canonical_fn(stage) AS stage FROM src;
-- normalize_stage against lower() (#2, #31): the labels of bench/normalize.sql, ASCII and 1 in 10
-- non-ASCII; the f_* variants run only when named.
CREATE TABLE labels_ascii AS SELECT s AS stage FROM bench.messy_labels($rows, false) s;
CREATE TABLE labels_mixed AS SELECT s AS stage FROM bench.messy_labels($rows, true) s;
CREATE TABLE t_none (id bigint PRIMARY KEY, stage text);
CREATE TABLE t_canonical (id bigint PRIMARY KEY, stage text);
SELECT stage_norm.attach('t_canonical', 'stage');
CREATE TABLE t_enforce (id bigint PRIMARY KEY, stage text);
SELECT stage_norm.attach('t_enforce', 'stage');
CREATE TABLE t_off (id bigint PRIMARY KEY, stage text);
SELECT stage_norm.attach('t_off', 'stage');
SELECT stage_norm.set_table_mode('t_off', 'off');
CREATE TABLE t_override (id bigint PRIMARY KEY, stage text);
SELECT stage_norm.attach('t_override', 'stage');
SELECT stage_norm.set_table_mode('t_override', 'enforce');
CREATE TABLE t_plpgsql (id bigint PRIMARY KEY, stage text);
CREATE TRIGGER p BEFORE INSERT OR UPDATE ON t_plpgsql FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_normalize_stage();
CREATE TABLE t_username (id bigint PRIMARY KEY, stage text);
CREATE TRIGGER u BEFORE INSERT OR UPDATE ON t_username FOR EACH ROW EXECUTE FUNCTION insert_username(stage);
CREATE TABLE t_lo (id bigint PRIMARY KEY, stage text);
CREATE TRIGGER l BEFORE INSERT OR UPDATE ON t_lo FOR EACH ROW EXECUTE FUNCTION lo_manage(stage);
CREATE TABLE u_none (id bigint PRIMARY KEY, stage text, n int DEFAULT 0);
CREATE TABLE u_lo (id bigint PRIMARY KEY, stage text, n int DEFAULT 0);
CREATE TRIGGER l BEFORE INSERT OR UPDATE ON u_lo FOR EACH ROW EXECUTE FUNCTION lo_manage(stage);
CREATE TABLE u_enforce (id bigint PRIMARY KEY, stage text, n int DEFAULT 0);
SELECT stage_norm.attach('u_enforce', 'stage');
INSERT INTO u_none SELECT * FROM src;
INSERT INTO u_lo SELECT * FROM src;
INSERT INTO u_enforce SELECT * FROM src;
-- Stage distributions (jsonb, 5 keys; 3 in 4 rows with messy keys) and their peers.
CREATE TABLE jsrc AS SELECT i::bigint AS id, CASE WHEN i % 4 = 0
    THEN '{"pre-seed": 0.1, "seed": 0.25, "series-a": 0.2, "series-b": 0.3, "series-c+": 0.15}'::jsonb
    ELSE '{"Series A ": 0.2, "pre_seed": 0.1, "seriesB": 0.3, "Seed Round": 0.25, "series c+": 0.15}'::jsonb END AS alloc
  FROM generate_series(1, $rows) i;
CREATE TABLE jsrc_canonical AS SELECT id, stage_norm.normalize_stage_distribution(alloc) AS alloc FROM jsrc;
CREATE TABLE t_j_none (id bigint PRIMARY KEY, alloc jsonb);
CREATE TABLE t_j_enforce (id bigint PRIMARY KEY, alloc jsonb);
SELECT stage_norm.attach('t_j_enforce', 'alloc');
CREATE TABLE t_j_canonical (id bigint PRIMARY KEY, alloc jsonb);
SELECT stage_norm.attach('t_j_canonical', 'alloc');
CREATE TABLE t_j_plpgsql (id bigint PRIMARY KEY, alloc jsonb);
CREATE TRIGGER p BEFORE INSERT OR UPDATE ON t_j_plpgsql FOR EACH ROW EXECUTE FUNCTION bench.plpgsql_distribution_trigger();
-- Stage arrays (text[], 3 elements; 3 in 4 rows with messy elements), #31: run only when named,
-- VARIANTS="startup a_none a_enforce a_canonical" bench/callgrind.sh 20000
CREATE TABLE asrc AS SELECT i::bigint AS id, CASE WHEN i % 4 = 0
    THEN ARRAY['seed', 'series-a', 'series-b']
    ELSE ARRAY['Seed Round', 'Series A ', 'seriesB'] END AS stages
  FROM generate_series(1, $rows) i;
CREATE TABLE asrc_canonical AS SELECT id, stage_norm.normalize_stages(stages) AS stages FROM asrc;
CREATE TABLE t_a_none (id bigint PRIMARY KEY, stages text[]);
CREATE TABLE t_a_enforce (id bigint PRIMARY KEY, stages text[]);
SELECT stage_norm.attach('t_a_enforce', 'stages');
CREATE TABLE t_a_canonical (id bigint PRIMARY KEY, stages text[]);
SELECT stage_norm.attach('t_a_canonical', 'stages');

-- Hint bits set and pages frozen in every source table now: otherwise the first variant to read
-- a source pays for them (4.2M instructions of TransactionIdIsCurrentTransactionId & co per
-- 100,000 rows), which showed up as a +183 per row 'cost' of whichever variant ran first.
-- (single-user mode with -j: a statement ends at a semicolon and an empty line, and VACUUM
-- must be a command of its own)
VACUUM (FREEZE) src, src_canonical, jsrc, jsrc_canonical, asrc, asrc_canonical, labels_ascii, labels_mixed;

CHECKPOINT;
SQL
single < "$dir/setup.sql"
if grep -q "ERROR" "$dir/setup.out"; then grep -m3 "ERROR" "$dir/setup.out" >&2; echo "callgrind: setup failed" >&2; exit 1; fi
declare -A ir
# VARIANTS="startup none enforce canonical" runs a subset (the checks then print only what they can).
for v in ${VARIANTS:-startup none lo off username enforce canonical override plpgsql u_none u_lo u_enforce}; do
  # A fresh backend per variant; it also pays its start-up, the same for every variant (the
  # startup variant measures it alone, to be subtracted).
  from=src; [[ $v == canonical || $v == s_canonical* ]] && from=src_canonical
  [[ $v == j_* ]] && from=jsrc; [[ $v == j_canonical ]] && from=jsrc_canonical
  [[ $v == a_* ]] && from=asrc; [[ $v == a_canonical ]] && from=asrc_canonical
  # override: the table's own enforce override under a session in warn, with the canary at 10%.
  sets="SET stage_norm.mode = enforce;"
  [[ $v == override ]] && sets="SET stage_norm.mode = warn; SET stage_norm.enforce_percent = 10;"
  [[ $v == s_*_off ]] && sets="$sets SET stage_norm.track_stats = off;"
  table=$v; [[ $v == s_* ]] && { table=${v#s_}; table=${table%_off}; }
  if [[ $v == startup ]]; then
    printf "SELECT 1;\n" > "$dir/$v.sql"
  elif [[ $v == f_* ]]; then
    # f_lower_ascii, f_normalize_mixed, ...: one scan of a labels table with the function
    fn=${v#f_}; fn=${fn%_*}; [[ $fn == normalize ]] && fn=stage_norm.normalize_stage; [[ $fn == count ]] && fn=""
    printf "SELECT count(%s(stage)) FROM labels_%s;\n" "$fn" "${v##*_}" > "$dir/$v.sql"
  elif [[ $v == u_* ]]; then
    # UPDATE of a column that is not governed, rolled back: every variant updates the same state.
    printf "%s\nBEGIN;\nUPDATE %s SET n = n + 1;\nROLLBACK;\n" "$sets" "$v" > "$dir/$v.sql"
  else
    printf "%s\nTRUNCATE t_%s;\nINSERT INTO t_%s SELECT * FROM %s;\nTRUNCATE t_%s;\n" "$sets" "$table" "$table" "$from" "$table" > "$dir/$v.sql"
  fi
  cp "$dir/$v.sql" "$dir/$v.run"; chown postgres: "$dir/$v.run"
  as_pg valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$v" \
      "$BIN/postgres" --single -D "$dir/data" -j postgres < "$dir/$v.run" >/dev/null 2>"$dir/vg.$v" || { cat "$dir/vg.$v"; exit 1; }
  ir[$v]=$(grep -m1 '^summary:' "$dir/cg.$v" | awk '{print $2}')
  [[ -n "${ir[$v]}" ]] || { echo "callgrind: no summary for $v" >&2; cat "$dir/vg.$v" >&2; exit 1; }
done
if [[ -n "${VARIANTS:-}" ]]; then
  echo "instructions per row over no trigger ($rows rows), start-up subtracted:"
  for v in ${VARIANTS}; do
    [[ $v == startup || $v == none || $v == j_none || $v == a_none || $v == u_* || $v == f_* ]] && continue
    b=${ir[none]:-}; [[ $v == j_* ]] && b=${ir[j_none]:-}; [[ $v == a_* ]] && b=${ir[a_none]:-}
    [[ -n "$b" ]] && awk -v v="$v" -v a="${ir[$v]}" -v b="$b" -v n="$rows" 'BEGIN { printf "  %-12s %8.0f\n", v, (a-b)/n }'
  done
  for v in enforce canonical; do
    if [[ -n "${ir[s_$v]:-}" && -n "${ir[s_${v}_off]:-}" && -n "${ir[startup]:-}" ]]; then
      awk -v v="$v" -v S="${ir[startup]}" -v on="${ir[s_$v]}" -v off="${ir[s_${v}_off]}" -v n="$rows" 'BEGIN {
        printf "statistics (#17), INSERT %s: on %+.1f instructions per row over off; on / off %.4f (ceiling 1.02)\n", v, (on-off)/n, (on-S)/(off-S) }'
    fi
  done
  for m in ascii mixed; do
    if [[ -n "${ir[f_lower_$m]:-}" && -n "${ir[f_normalize_$m]:-}" && -n "${ir[startup]:-}" ]]; then
      awk -v m="$m" -v S="${ir[startup]}" -v l="${ir[f_lower_$m]}" -v f="${ir[f_normalize_$m]}" -v c="${ir[f_count_$m]:-0}" -v n="$rows" 'BEGIN {
        printf "count(normalize_stage(x)) / count(lower(x)), %s labels: %.3f (ceiling 0.6, #31)", m, (f-S)/(l-S)
        if (c > 0) printf "; per call over count(x): normalize_stage %.0f, lower %.0f", (f-c)/n, (l-c)/n
        printf "\n"
        r = (f-S)/(l-S); printf "RESULT\tcheck\tcallgrind\tn_default_%s\tcount(normalize_stage(x)) / count(lower(x)), %s labels\t<=\t0.6\t%.4f\t\t%s\n", m, m, r, r <= 0.6 ? "met" : "NOT MET"
      }'
    fi
  done
  if [[ -n "${ir[j_none]:-}" && -n "${ir[j_canonical]:-}" && -n "${ir[startup]:-}" ]]; then
    awk -v S="${ir[startup]}" -v b="${ir[j_none]}" -v e="${ir[j_enforce]:-0}" -v c="${ir[j_canonical]}" -v p="${ir[j_plpgsql]:-0}" -v n="$rows" 'BEGIN {
      printf "jsonb distributions (start-up subtracted): INSERT with no trigger %.0f per row\n", (b-S)/n
      printf "  canonical / none                       %.3f  (ceiling 1.10)\n", (c-S)/(b-S)
      if (p > 0 && e > 0) printf "  (enforce - none) / (plpgsql - none)    %.3f  (ceiling 0.05)\n", (e-b)/(p-b)
      # Machine-readable lines (bench/lib.sql format) for bench/report.js: the keys of bench/distributions.sql.
      printf "RESULT\tmeta\tcallgrind_jsonb_rows\t%d\n", n
      printf "RESULT\tmeta\tcallgrind_jsonb_none_per_row\t%.0f\n", (b-S)/n
      r = (c-S)/(b-S); printf "RESULT\tcheck\tcallgrind\td8\tjsonb insert canonical: stage_norm / none\t<=\t1.10\t%.4f\t\t%s\n", r, r <= 1.10 ? "met" : "NOT MET"
      if (p > 0 && e > 0) { r = (e-b)/(p-b); printf "RESULT\tcheck\tcallgrind\td7\tjsonb insert messy: (stage_norm - none) / (plpgsql - none)\t<=\t0.05\t%.4f\t\t%s\n", r, r <= 0.05 ? "met" : "NOT MET" }
    }'
  fi
  exit 0
fi
cp "$dir/cg.enforce" "$out/callgrind.enforce"
base=${ir[none]}
echo "instructions per row over no trigger ($rows rows, one INSERT ... SELECT, single-user backend):"
for v in lo off username enforce canonical override plpgsql; do
  awk -v v="$v" -v a="${ir[$v]}" -v b="$base" -v n="$rows" -v lo="${ir[lo]}" \
    'BEGIN { printf "  %-9s %8.0f  (vs lo_manage %+.0f)\n", v, (a-b)/n, (a-lo)/n }'
done
echo "(canonical: enforce on values that are all canonical already, so nothing is rewritten)"
echo "UPDATE t SET n = n + 1 ($rows rows, n not governed), per row over no trigger:"
for v in u_lo u_enforce; do
  awk -v v="$v" -v a="${ir[$v]}" -v b="${ir[u_none]}" -v n="$rows" 'BEGIN { printf "  %-9s %8.0f\n", v, (a-b)/n }'
done
echo "checks of the issue by instructions per row (start-up subtracted: (variant - startup) / (baseline - startup)):"
awk -v S="${ir[startup]}" -v e="${ir[enforce]}" -v c="${ir[canonical]}" -v b="${ir[none]}" -v l="${ir[lo]}" -v o="${ir[off]}" \
    -v u="${ir[username]}" -v p="${ir[plpgsql]}" -v ov="${ir[override]}" \
    -v ue="${ir[u_enforce]}" -v ul="${ir[u_lo]}" -v un="${ir[u_none]}" 'BEGIN {
  printf "  1 INSERT enforce / none                        %.3f  (ceiling 1.10)\n", (e-S) / (b-S)
  printf "  2 INSERT enforce / insert_username             %.3f  (ceiling < 1)\n", (e-S) / (u-S)
  printf "  3 INSERT (enforce - none) / (plpgsql - none)   %.3f  (ceiling 0.05)\n", (e-b) / (p-b)
  printf "  4 INSERT off / lo_manage                       %.3f  (ceiling 1.05)\n", (o-S) / (l-S)
  printf "  5 INSERT override + enforce_percent 10 / enforce %.3f  (ceiling 1.02)\n", (ov-S) / (e-S)
  printf "  6 UPDATE enforce / lo_manage                   %.3f  (ceiling 1.05)\n", (ue-S) / (ul-S)
  printf "    INSERT enforce on canonical values / none    %.3f\n", (c-S) / (b-S)
}'
echo "start-up alone: ${ir[startup]} instructions; INSERT with no trigger: $(awk -v b="${ir[none]}" -v S="${ir[startup]}" -v n="$rows" 'BEGIN{printf "%.0f", (b-S)/n}') per row"
# Machine-readable lines (bench/lib.sql's format) for bench/report.js; check keys t1..t6 are
# bench/trigger.sql's checks 1..6; variants named as there.
awk -v S="${ir[startup]}" -v b="${ir[none]}" -v n="$rows" -v lo="${ir[lo]}" -v o="${ir[off]}" -v u="${ir[username]}" \
    -v e="${ir[enforce]}" -v c="${ir[canonical]}" -v ov="${ir[override]}" -v p="${ir[plpgsql]}" \
    -v un="${ir[u_none]}" -v ul="${ir[u_lo]}" -v ue="${ir[u_enforce]}" '
  function m(cmp, v, x) { printf "RESULT\tmedian\tcallgrind\t%s\t%s\t%.0f\tinstr/row\t1\n", cmp, v, x }
  function chk(k, label, op, bound, x) {
    ok = (op == "<") ? (x < bound) : (x <= bound)
    printf "RESULT\tcheck\tcallgrind\t%s\t%s\t%s\t%s\t%.4f\t\t%s\n", k, label, op, bound, x, ok ? "pass" : "FAIL" }
  BEGIN {
    printf "RESULT\tmeta\tcallgrind_rows\t%d\n", n
    printf "RESULT\tmeta\tcallgrind_startup\t%.0f\n", S
    printf "RESULT\tmeta\tcallgrind_none_per_row\t%.0f\n", (b-S)/n
    printf "RESULT\tmeta\tcallgrind_update_none_per_row\t%.0f\n", (un-S)/n
    printf "RESULT\tmeta\tcallgrind_enforce_minus_off\t%.0f\n", (e-o)/n
    printf "RESULT\ttitle\tcallgrind\tcg_insert\tInstructions per row over the INSERT with no trigger (%d rows, one INSERT ... SELECT per variant, single-user backend under callgrind)\n", n
    m("cg_insert", "lo_manage", (lo-b)/n); m("cg_insert", "off", (o-b)/n)
    m("cg_insert", "enforce, values already canonical", (c-b)/n); m("cg_insert", "enforce", (e-b)/n)
    m("cg_insert", "enforce_override_p10", (ov-b)/n); m("cg_insert", "insert_username", (u-b)/n)
    m("cg_insert", "plpgsql", (p-b)/n)
    printf "RESULT\ttitle\tcallgrind\tcg_update\tInstructions per row over the UPDATE with no trigger (UPDATE t SET n = n + 1, %d rows, n not governed)\n", n
    m("cg_update", "lo_manage", (ul-un)/n); m("cg_update", "enforce", (ue-un)/n)
    chk("t1", "insert: enforce / none", "<=", "1.10", (e-S)/(b-S))
    chk("t2", "insert: enforce / insert_username", "<", "1.00", (e-S)/(u-S))
    chk("t3", "insert: (enforce - none) / (plpgsql - none)", "<=", "0.05", (e-b)/(p-b))
    chk("t4", "insert: off / lo_manage", "<=", "1.05", (o-S)/(lo-S))
    chk("t5", "insert: override enforce + enforce_percent 10 / enforce", "<=", "1.02", (ov-S)/(e-S))
    chk("t6", "update non-governed column: enforce / lo_manage", "<=", "1.05", (ue-S)/(ul-S))
    printf "RESULT\tcheck\tcallgrind\ttc\tinsert: enforce on values already canonical / none\t\t\t%.4f\t\t\n", (c-S)/(b-S)
  }'
