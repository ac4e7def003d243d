#!/usr/bin/env bash
# Instruction counts (valgrind --tool=callgrind) of one INSERT ... SELECT per trigger variant, in a
# single-user backend: deterministic where wall-clock ratios are too noisy to call.
#   bench/callgrind.sh [rows]      (default 100000; needs `make install` first)
# Prints instructions per row over the no-trigger baseline, and keeps the enforce profile in
# bench/results/ for callgrind_annotate.
set -euo pipefail
rows=${1:-100000}
BIN=/usr/lib/postgresql/15/bin
here=$(cd "$(dirname "$0")" && pwd)
out=$here/results; mkdir -p "$out"
dir=$(mktemp -d /tmp/stage_norm_cg.XXXXXX); chown postgres: "$dir"
trap '[[ -n "${KEEP:-}" ]] || rm -rf "$dir"' EXIT
as_pg() { (cd / && runuser -u postgres -- "$@"); }
as_pg "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
printf "fsync = off\nsynchronous_commit = off\nshared_buffers = 256MB\nmax_wal_size = 4GB\nautovacuum = off\n" >> "$dir/data/postgresql.conf"
single() { as_pg "$BIN/postgres" --single -D "$dir/data" -j postgres > "$dir/setup.out" 2>&1; }
cat > "$dir/setup.sql" <<SQL
CREATE EXTENSION stage_norm;
CREATE EXTENSION insert_username;
CREATE EXTENSION lo;
CREATE TABLE src AS SELECT i::bigint AS id, (ARRAY['Series A ','pre_seed','seriesB','Series D','Seed Round','seed','series-a','PRE-SEED','Series C Plus','series b2','Series A-2 Round','series-c+','Series E','seed round','Pre Seed','SERIES B','series a','Series C+','pre-seed','series-b'])[1 + i % 20] AS stage FROM generate_series(1, $rows) i;
CREATE TABLE src_canonical AS SELECT id, stage_norm.normalize_stage_builtin(stage) AS stage FROM src;
CREATE TABLE t_none (id bigint PRIMARY KEY, stage text);
CREATE TABLE t_canonical (id bigint PRIMARY KEY, stage text);
SELECT stage_norm.attach('t_canonical', 'stage');
CREATE TABLE t_enforce (id bigint PRIMARY KEY, stage text);
SELECT stage_norm.attach('t_enforce', 'stage');
CREATE TABLE t_off (id bigint PRIMARY KEY, stage text);
SELECT stage_norm.attach('t_off', 'stage');
SELECT stage_norm.set_table_mode('t_off', 'off');
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
CHECKPOINT;
SQL
single < "$dir/setup.sql"
declare -A ir
for v in none lo off username enforce canonical u_none u_lo u_enforce; do
  # A fresh backend per variant; it also pays its start-up, the same for every variant.
  from=src; [[ $v == canonical ]] && from=src_canonical
  if [[ $v == u_* ]]; then
    # UPDATE of a column that is not governed, rolled back: every variant updates the same state.
    printf "SET stage_norm.mode = enforce;\nBEGIN;\nUPDATE %s SET n = n + 1;\nROLLBACK;\n" "$v" > "$dir/$v.sql"
  else
    printf "SET stage_norm.mode = enforce;\nTRUNCATE t_%s;\nINSERT INTO t_%s SELECT * FROM %s;\nTRUNCATE t_%s;\n" "$v" "$v" "$from" "$v" > "$dir/$v.sql"
  fi
  cp "$dir/$v.sql" "$dir/$v.run"; chown postgres: "$dir/$v.run"
  as_pg valgrind --tool=callgrind --callgrind-out-file="$dir/cg.$v" \
      "$BIN/postgres" --single -D "$dir/data" -j postgres < "$dir/$v.run" >/dev/null 2>"$dir/vg.$v" || { cat "$dir/vg.$v"; exit 1; }
  ir[$v]=$(grep -m1 '^summary:' "$dir/cg.$v" | awk '{print $2}')
  [[ -n "${ir[$v]}" ]] || { echo "callgrind: no summary for $v" >&2; cat "$dir/vg.$v" >&2; exit 1; }
done
cp "$dir/cg.enforce" "$out/callgrind.enforce"
base=${ir[none]}
echo "instructions per row over no trigger ($rows rows, one INSERT ... SELECT, single-user backend):"
for v in lo off username enforce canonical; do
  awk -v v="$v" -v a="${ir[$v]}" -v b="$base" -v n="$rows" -v lo="${ir[lo]}" \
    'BEGIN { printf "  %-9s %8.0f  (vs lo_manage %+.0f)\n", v, (a-b)/n, (a-lo)/n }'
done
echo "(canonical: enforce on values that are all canonical already, so nothing is rewritten)"
echo "UPDATE t SET n = n + 1 ($rows rows, n not governed), per row over no trigger:"
for v in u_lo u_enforce; do
  awk -v v="$v" -v a="${ir[$v]}" -v b="${ir[u_none]}" -v n="$rows" 'BEGIN { printf "  %-9s %8.0f\n", v, (a-b)/n }'
done
echo "ratios of total instructions (whole backend run, start-up included):"
awk -v e="${ir[enforce]}" -v c="${ir[canonical]}" -v b="${ir[none]}" -v l="${ir[lo]}" -v o="${ir[off]}" -v u="${ir[username]}" \
    -v ue="${ir[u_enforce]}" -v ul="${ir[u_lo]}" -v un="${ir[u_none]}" 'BEGIN {
  printf "  INSERT enforce / none      %.3f\n", e / b
  printf "  INSERT enforce / username  %.3f\n", e / u
  printf "  INSERT canonical / none    %.3f\n", c / b
  printf "  INSERT off / lo_manage     %.3f\n", o / l
  printf "  UPDATE enforce / lo_manage %.3f   (lo_manage / none %.3f)\n", ue / ul, ul / un
}'
echo "total instructions, no trigger: $base ($(awk -v b="$base" -v n="$rows" 'BEGIN{printf "%.0f", b/n}') per row incl. startup)"
