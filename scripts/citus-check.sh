#!/usr/bin/env bash
# stage_norm on Citus: builds Citus from a source tree you provide (scripts/citus-build.sh),
# starts a coordinator and two workers as throwaway clusters on 127.0.0.1 (and a third worker
# later), and runs the assertion suite of docs/scaling.md. Exits non-zero on any failure.
#   make citus-check CITUS_SRC=<citus source dir>        (tag v13.2.2 checked)
#   scripts/citus-check.sh <citus source dir>
# stage_norm must be installed (make install). CI cannot install Citus (not in Debian, nothing
# of it is committed), so this is not part of make test.
# CITUS_CHECK_KEEP=1 leaves the clusters running (ports in the output) for a look around.
set -uo pipefail
src=${1:?usage: citus-check.sh <citus source dir>}
here=$(cd "$(dirname "$0")" && pwd)
# PostgreSQL 15 (Debian's), or the server of STAGE_NORM_PG_BIN (make PG=17 citus-check).
BIN=${STAGE_NORM_PG_BIN:-/usr/lib/postgresql/15/bin}
export PATH="$BIN:$PATH"
PG_CONFIG=$BIN/pg_config CITUS_BUILD_DIR=/tmp/stage_norm_citus_build_$("$BIN/pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/') \
  bash "$here/citus-build.sh" "$src" || exit 1
[[ -f "$($BIN/pg_config --sharedir)/extension/stage_norm.control" ]] || { echo "citus-check: stage_norm is not installed (make install)" >&2; exit 1; }

as_pg() { if [[ $(id -un) == postgres ]]; then "$@"; else (cd / && runuser -u postgres -- "$@"); fi; }
root=$(mktemp -d /tmp/stage_norm_citus.XXXXXX); chmod 755 "$root"; chown postgres: "$root" 2>/dev/null || true
base=${CITUS_CHECK_PORT:-57000}
while (exec 3<>"/dev/tcp/127.0.0.1/$base") 2>/dev/null; do base=$((base + 10)); done
CO=$base; W1=$((base + 1)); W2=$((base + 2)); W3=$((base + 3))
nodes=()
start_node() {  # port
  local p=$1 d="$root/n$1"
  mkdir -p "$d"; chown postgres: "$d" 2>/dev/null || true
  as_pg "$BIN/initdb" -D "$d/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
  cat >> "$d/data/postgresql.conf" <<C
listen_addresses = '127.0.0.1'
port = $p
unix_socket_directories = '$d'
fsync = off
synchronous_commit = off
shared_preload_libraries = 'citus,stage_norm'
max_prepared_transactions = 100
lc_messages = 'C'
stage_norm.mode = 'enforce'
C
  as_pg "$BIN/pg_ctl" -D "$d/data" -l "$d/log" -w start >/dev/null || { cat "$d/log"; exit 1; }
  nodes+=("$p")
  psql -h 127.0.0.1 -p "$p" -U postgres -qXc "CREATE EXTENSION citus" postgres >/dev/null
}
cleanup() {
  if [[ -n "${CITUS_CHECK_KEEP:-}" ]]; then echo "citus-check: clusters kept in $root (ports ${nodes[*]})"; return; fi
  for p in "${nodes[@]}"; do as_pg "$BIN/pg_ctl" -D "$root/n$p/data" -m immediate -w stop >/dev/null 2>&1; done
  rm -rf "$root"
}
trap cleanup EXIT

pass=0; fail=0
ok()   { pass=$((pass + 1)); echo "ok    $1"; }
bad()  { fail=$((fail + 1)); echo "FAIL  $1"; [[ -n "${2:-}" ]] && echo "$2" | sed 's/^/      /'; }
# q PORT SQL: the result, unaligned, errors to stderr
q() { psql -h 127.0.0.1 -p "$1" -U postgres -XtAq -v ON_ERROR_STOP=1 -c "$2" postgres; }
# eq NAME EXPECTED PORT SQL
eq() {
  local got; got=$(q "$3" "$4" 2>"$root/stderr")
  if [[ "$got" == "$2" ]]; then ok "$1"; else bad "$1" "expected: $2"$'\n'"got:      $got"$'\n'"$(cat "$root/stderr")"; fi
}
# err NAME SQLSTATE PATTERN PORT SQL [psql -c ...]: the statement fails with SQLSTATE and a message matching PATTERN
err() {
  local name=$1 state=$2 pat=$3 port=$4; shift 4
  local out; out=$(psql -h 127.0.0.1 -p "$port" -U postgres -XtAq -v VERBOSITY=verbose "$@" postgres 2>&1)
  if grep -q "ERROR:  $state:" <<<"$out" && grep -Eq -- "$pat" <<<"$out"; then ok "$name"; else bad "$name" "expected ERROR $state matching /$pat/; got:"$'\n'"$out"; fi
}
# all NAME EXPECTED SQL: the same result on every node
all() {
  local name=$1 want=$2 sql=$3 p got bad_nodes=""
  for p in "${nodes[@]}"; do got=$(q "$p" "$sql" 2>&1); [[ "$got" == "$want" ]] || bad_nodes+="node $p: $got"$'\n'; done
  if [[ -z "$bad_nodes" ]]; then ok "$name (every node)"; else bad "$name" "expected: $want"$'\n'"$bad_nodes"; fi
}

echo "== cluster: coordinator $CO, workers $W1 $W2"
start_node "$CO"; start_node "$W1"; start_node "$W2"
q "$CO" "SELECT citus_set_coordinator_host('127.0.0.1', $CO)" >/dev/null
q "$CO" "SELECT citus_add_node('127.0.0.1', $W1)" >/dev/null
q "$CO" "SELECT citus_add_node('127.0.0.1', $W2)" >/dev/null
eq "Citus version" "$(q "$CO" "SELECT extversion FROM pg_extension WHERE extname = 'citus'")" "$CO" "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
echo "   Citus $(q "$CO" "SELECT citus_version()")"
q "$CO" "CREATE EXTENSION stage_norm" >/dev/null
all "CREATE EXTENSION on the coordinator installs stage_norm on the workers" "0.2.0" "SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'"

echo "== plpgsql_check over stage_norm's Citus functions (pg_test/lint skips them: they need Citus)"
q "$CO" "CREATE EXTENSION IF NOT EXISTS plpgsql_check" >/dev/null
eq "no findings" "" "$CO" "SELECT p.oid::regprocedure || ': ' || c.level || ': ' || c.message FROM pg_proc p
      CROSS JOIN LATERAL plpgsql_check_function_tb(p.oid) c
     WHERE p.pronamespace = 'stage_norm'::regnamespace AND p.prosrc LIKE '%-- lint: needs Citus%' ORDER BY 1"
eq "the Citus functions checked" "10" "$CO" "SELECT count(*) FROM pg_proc WHERE pronamespace = 'stage_norm'::regnamespace AND prosrc LIKE '%-- lint: needs Citus%'"

echo "== before citus_setup: changes that would reach one node are refused"
q "$CO" "CREATE TABLE pc (fund_id int, id int, stage text, PRIMARY KEY (fund_id, id)); SELECT create_distributed_table('pc', 'fund_id', shard_count => 32)" >/dev/null
err "add_alias refused before citus_setup" 55000 "needs the configuration shared" "$CO" -c "SELECT stage_norm.add_alias('angel round', 'pre-seed')"
err "attach on a distributed table refused before citus_setup" 55000 "citus_setup" "$CO" -c "SELECT stage_norm.attach('pc', 'stage')"
err "set_table_mode on a distributed table refused before citus_setup" 55000 "citus_setup" "$CO" -c "SELECT stage_norm.set_table_mode('pc', 'warn')"
eq "citus_check before setup: every node matches" "0" "$CO" "SELECT count(*) FROM stage_norm.citus_check() WHERE NOT matches"

echo "== citus_setup: one configuration"
eq "citus_setup makes the configuration reference tables" \
   "reference tables: stage_norm.citus_table_modes, stage_norm.aliases; 0 override(s) of Citus tables moved to stage_norm.citus_table_modes" \
   "$CO" "SELECT stage_norm.citus_setup()"
eq "citus_setup again: nothing to do" "already set up; 0 override(s) of Citus tables moved to stage_norm.citus_table_modes" "$CO" "SELECT stage_norm.citus_setup()"
eq "aliases and citus_table_modes are reference tables" "reference|reference" "$CO" \
   "SELECT stage_norm._citus_table('stage_norm.aliases') || '|' || stage_norm._citus_table('stage_norm.citus_table_modes')"

echo "== the stage set reaches every node, in the same transaction"
q "$CO" "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'growth')" >/dev/null
all "set_stages on the coordinator" "pre-seed,seed,series-a,series-b,growth" "SELECT string_agg(s, ',') FROM stage_norm.canonical_stages() s"
q "$CO" "BEGIN; SELECT stage_norm.set_stages('a', 'b'); ROLLBACK" >/dev/null
all "set_stages rolled back on the coordinator is rolled back everywhere" "pre-seed,seed,series-a,series-b,growth" "SELECT string_agg(s, ',') FROM stage_norm.canonical_stages() s"
q "$CO" "SELECT stage_norm.reset_stages()" >/dev/null
all "reset_stages" "pre-seed,seed,series-a,series-b,series-c+" "SELECT string_agg(s, ',') FROM stage_norm.canonical_stages() s"

echo "== aliases reach every node; a distributed SELECT sees them"
q "$CO" "SELECT stage_norm.add_alias('angel round', 'pre-seed'), stage_norm.add_alias('growth equity', 'series-c+')" >/dev/null
all "add_alias on the coordinator" "angel round=pre-seed,growth equity=series-c+" \
    "SELECT string_agg(alias || '=' || stage, ',' ORDER BY alias) FROM $(q "$CO" "SELECT stage_norm._citus_local_placement('stage_norm.aliases')")"
all "normalize_stage on every node (cache read from the local placement)" "pre-seed" "SELECT stage_norm.normalize_stage('Angel Round')"
q "$CO" "INSERT INTO pc SELECT i % 50, i, (ARRAY['Series A ', 'pre_seed', 'seriesB', 'angel round', 'Growth Equity', 'bogus'])[1 + i % 6] FROM generate_series(1, 6000) i" >/dev/null
eq "distributed SELECT normalize_stage: the aliased label is not NULL" "2000" "$CO" \
   "SELECT count(*) FROM pc WHERE stage_norm.normalize_stage(stage) = 'pre-seed'"
q "$CO" "BEGIN; SELECT stage_norm.add_alias('zebra', 'seed'); ROLLBACK" >/dev/null
all "add_alias rolled back: on no node" "" "SELECT stage_norm.normalize_stage('zebra')"

echo "== a change reaches every node or none: a worker down refuses it"
as_pg "$BIN/pg_ctl" -D "$root/n$W2/data" -m immediate -w stop >/dev/null
err "add_alias with a worker down fails (08006)" 08006 "connection to the remote node" "$CO" -c "SELECT stage_norm.add_alias('unicorn round', 'seed')"
as_pg "$BIN/pg_ctl" -D "$root/n$W2/data" -l "$root/n$W2/log" -w start >/dev/null
all "and no node has it" "" "SELECT stage_norm.normalize_stage('unicorn round')"

echo "== the trigger on a distributed table knows its logical table"
eq "attach on a distributed table (citus.enable_unsafe_triggers set for its own statements)" "off" "$CO" \
   "SELECT coalesce(current_setting('citus.enable_unsafe_triggers', true), 'off') FROM (SELECT stage_norm.attach('pc', 'stage')) a"
eq "every shard's trigger names the logical table" "32" "$CO" \
   "SELECT count(*) FROM run_command_on_shards('pc', \$\$SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND encode(tgargs, 'escape') LIKE '@table=public.pc\\\\000stage\\\\000'\$\$) WHERE result = '1'"
eq "table_modes lists pc with its column (not the @table argument)" "pc|{stage}|enforce" "$CO" \
   "SELECT table_name || '|' || columns::text || '|' || effective_mode FROM stage_norm.table_modes WHERE table_name = 'pc'::regclass"

echo "== overrides and the ceiling reach the shards"
q "$CO" "SELECT stage_norm.set_table_mode('pc', 'warn')" >/dev/null
all "set_table_mode on the coordinator: effective_mode on every node" "warn" "SELECT stage_norm.effective_mode('pc')"
out=$(psql -h 127.0.0.1 -p "$CO" -U postgres -XtAq -c "INSERT INTO pc VALUES (1, 100001, 'Serie Z')" postgres 2>&1)
if grep -q 'WARNING:  value "Serie Z" for column "stage" of table "pc" (shard "pc_[0-9]*") is not a known investment stage' <<<"$out"; then
  ok "warn through the coordinator: the WARNING names the logical table, the shard in parentheses"; else bad "warn names the logical table" "$out"; fi
eq "warn stored the row" "Serie Z" "$CO" "SELECT stage FROM pc WHERE id = 100001"
q "$CO" "SELECT stage_norm.set_table_mode('pc', NULL)" >/dev/null
all "override cleared: effective_mode back to stage_norm.mode" "enforce" "SELECT stage_norm.effective_mode('pc')"
# An ordinary role, owner of a distributed table: its set_table_mode writes the reference table on
# every node through row security (may_set_table_mode on each node's shell table), and the stamp
# trigger records it there; another role is refused.
q "$CO" "CREATE ROLE app_owner LOGIN" >/dev/null; q "$CO" "CREATE ROLE app_other LOGIN" >/dev/null
q "$CO" "CREATE TABLE own_t (id int PRIMARY KEY, stage text); SELECT create_distributed_table('own_t', 'id', shard_count => 4)" >/dev/null
q "$CO" "ALTER TABLE own_t OWNER TO app_owner" >/dev/null
q "$CO" "SET ROLE app_owner; SELECT stage_norm.set_table_mode('own_t', 'shadow')" >/dev/null 2>"$root/stderr" || cat "$root/stderr"
all "an ordinary owner's set_table_mode on its distributed table: effective_mode" "shadow" "SELECT stage_norm.effective_mode('own_t')"
all "... its override stamped with the role that set it" "app_owner" "SELECT set_by FROM stage_norm.citus_table_modes WHERE table_name = 'public.own_t'"
err "another ordinary role may not set it (42501)" 42501 "" "$CO" -c "SET ROLE app_other" -c "SELECT stage_norm.set_table_mode('own_t', 'off')"
all "... and nothing changed" "shadow" "SELECT stage_norm.effective_mode('own_t')"
q "$CO" "SELECT stage_norm.set_table_mode('own_t', NULL); DROP TABLE own_t" >/dev/null; q "$CO" "DROP ROLE app_owner" >/dev/null; q "$CO" "DROP ROLE app_other" >/dev/null
err "enforce through the coordinator: 23514, table, column and value in the message" 23514 \
    'value "Serie Z" for column "stage" of table "pc" \(shard "pc_[0-9]+"\) is not a known investment stage' "$CO" -c "INSERT INTO pc VALUES (1, 100002, 'Serie Z')"
err "enforce on the COPY path (INSERT ... SELECT): XX000, the logical table still named" XX000 \
    'of table "pc" \(shard "pc_[0-9]+"\)' "$CO" -c "INSERT INTO pc SELECT 1, 100002 + i, 'Serie Z' FROM generate_series(1, 3) i"
err "enforce on the COPY path (\\copy): XX000, the logical table still named" XX000 'of table "pc"' "$CO" \
    -c "\\copy pc FROM program 'printf \"2\t100010\tSerie Z\n\"'"
eq "set_cluster_setting max_mode = warn: every node shows it" "warn,warn,warn" "$CO" \
   "SELECT string_agg(setting, ',' ORDER BY nodeid) FROM stage_norm.set_cluster_setting('stage_norm.max_mode', 'warn')"
all "the ceiling reaches the shards" "warn" "SELECT stage_norm.effective_mode('pc')"
eq "under the ceiling an unknown value is stored" "1" "$CO" "INSERT INTO pc VALUES (1, 100020, 'Serie Z'); SELECT count(*) FROM pc WHERE id = 100020"
eq "set_cluster_setting RESET" "enforce,enforce,enforce" "$CO" \
   "SELECT string_agg(setting, ',' ORDER BY nodeid) FROM stage_norm.set_cluster_setting('stage_norm.max_mode', NULL)"
# docs/scaling.md's by-hand commands, as written there
q "$CO" "SELECT * FROM run_command_on_all_nodes(\$\$ALTER SYSTEM SET stage_norm.max_mode = 'warn'\$\$)" >/dev/null
q "$CO" "SELECT * FROM run_command_on_all_nodes(\$\$SELECT pg_reload_conf()\$\$)" >/dev/null; sleep 1
eq "by hand: run_command_on_all_nodes ALTER SYSTEM + reload" "warn,warn,warn" "$CO" \
   "SELECT string_agg(value, ',' ORDER BY nodeid) FROM stage_norm.citus_check() WHERE item = 'stage_norm.max_mode'"
q "$CO" "SELECT * FROM run_command_on_all_nodes(\$\$ALTER SYSTEM RESET stage_norm.max_mode\$\$)" >/dev/null
q "$CO" "SELECT * FROM run_command_on_all_nodes(\$\$SELECT pg_reload_conf()\$\$)" >/dev/null; sleep 1
eq "by hand: RESET" "enforce,enforce,enforce" "$CO" \
   "SELECT string_agg(value, ',' ORDER BY nodeid) FROM stage_norm.citus_check() WHERE item = 'stage_norm.max_mode'"
err "set_cluster_setting refuses other settings" 22023 "stage_norm's settings only" "$CO" -c "SELECT * FROM stage_norm.set_cluster_setting('work_mem', '1MB')"
psql -h 127.0.0.1 -p "$CO" -U postgres -XqAt -v ON_ERROR_STOP=1 -c "BEGIN" -c "SET LOCAL citus.propagate_set_commands = 'local'" \
     -c "SET LOCAL stage_norm.mode = 'warn'" -c "INSERT INTO pc VALUES (1, 100030, 'Serie Z')" -c "COMMIT" postgres >/dev/null 2>"$root/stderr"
eq "SET LOCAL stage_norm.mode with citus.propagate_set_commands = local reaches the shards" "1" "$CO" "SELECT count(*) FROM pc WHERE id = 100030"
err "a plain SET does not reach the shards (documented)" 23514 'of table "pc"' "$CO" \
    -c "SET stage_norm.mode = 'warn'" -c "INSERT INTO pc VALUES (1, 100031, 'Serie Z')"
err "a direct write of a Citus table's override to table_mode_settings is refused" 0A000 "citus_table_modes" "$CO" \
    -c "INSERT INTO stage_norm.table_mode_settings (tbl, mode) VALUES ('pc', 'off')"

echo "== bounded noise"
q "$CO" "SELECT stage_norm.set_table_mode('pc', 'warn')" >/dev/null
n=$(psql -h 127.0.0.1 -p "$CO" -U postgres -XtAq -c "INSERT INTO pc SELECT i % 50, 200000 + i, 'unknown ' || (i % 7)::text FROM generate_series(1, 200) i" postgres 2>&1 | grep -c '^WARNING')
shards=$(q "$CO" "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'pc'::regclass")
if (( n > 0 && n <= 4 * shards )); then ok "200 unknown values in one INSERT ... SELECT: $n WARNING lines, within 4 per shard ($((4 * shards)))"; else bad "warning bound" "$n lines for $shards shards"; fi
q "$CO" "DELETE FROM pc WHERE id >= 100000" >/dev/null
q "$CO" "SELECT stage_norm.set_table_mode('pc', NULL)" >/dev/null

echo "== migrate and verify across shards"
eq "verify before: counts over every shard" "6000|6000" "$CO" "SELECT (v->>'rows') || '|' || (v->>'non_canonical') FROM stage_norm.verify('pc', 'stage') v"
out=$(psql -h 127.0.0.1 -p "$CO" -U postgres -XtAq -v ON_ERROR_STOP=1 -c "CALL stage_norm.migrate('pc', 'stage', batch_size => 100)" postgres 2>&1)
if grep -q "NOTICE:  stage_norm.migrate: 32 shard placements of public.pc migrated" <<<"$out"; then ok "migrate on a distributed table: shard by shard"; else bad "migrate" "$out"; fi
eq "verify after: only the unknown label is left" "6000|1000|[{\"count\": 1000, \"value\": \"bogus\"}]" "$CO" \
   "SELECT (v->>'rows') || '|' || (v->>'non_canonical') || '|' || (v->'top_non_canonical')::text FROM stage_norm.verify('pc', 'stage') v"
eq "verify adds up the shards' runs" '{"shards": 32, "finished": 32, "statuses": ["finished"], "rows_unknown": 1000, "rows_updated": 5000, "no_null_introduced": true, "row_count_unchanged": true}' "$CO" \
   "SELECT (stage_norm.verify('pc', 'stage')->'last_run')::text"
eq "each shard's run is on its node" "32" "$CO" \
   "SELECT sum(result::int) FROM run_command_on_workers(\$\$SELECT count(*) FROM stage_norm.migration_runs WHERE status = 'finished'\$\$)"
q "$CO" "SELECT stage_norm.add_alias('bogus', 'seed')" >/dev/null
q "$CO" "CALL stage_norm.migrate('pc', 'stage', batch_size => 100)" >/dev/null 2>&1
eq "a second pass after an alias: nothing non-canonical" "0" "$CO" "SELECT stage_norm.verify('pc', 'stage')->>'non_canonical'"
eq "assert_verified on the distributed table" "6000" "$CO" "SELECT stage_norm.assert_verified('pc', 'stage')->>'rows'"

echo "== a table name with a quote (the shard name reaches the workers as a literal)"
cat > "$root/quote.sql" <<'SQL'
CREATE TABLE "o'brien" (id int PRIMARY KEY, stage text);
SELECT create_distributed_table('"o''brien"', 'id', shard_count => 4);
SELECT stage_norm.attach('"o''brien"', 'stage');
SELECT stage_norm.set_table_mode('"o''brien"', 'warn');
INSERT INTO "o'brien" SELECT i, 'Series A ' FROM generate_series(1, 40) i;
UPDATE "o'brien" SET stage = 'seriesB' WHERE id <= 10;
SQL
psql -h 127.0.0.1 -p "$CO" -U postgres -XqAt -v ON_ERROR_STOP=1 -f "$root/quote.sql" postgres >/dev/null 2>"$root/stderr" || cat "$root/stderr"
q "$CO" "SELECT stage_norm.detach('\"o''brien\"')" >/dev/null
q "$CO" "UPDATE \"o'brien\" SET stage = 'seriesB' WHERE id <= 10" >/dev/null
q "$CO" "CALL stage_norm.migrate('\"o''brien\"', 'stage', batch_size => 5)" >/dev/null 2>"$root/stderr" || cat "$root/stderr"
eq "migrate and verify on \"o'brien\"" '0|4' "$CO" \
   "SELECT (v->>'non_canonical') || '|' || (v->'last_run'->>'finished') FROM stage_norm.verify('\"o''brien\"', 'stage') v"

echo "== % in the column's and the tenant column's names (doubled for Citus's format)"
cat > "$root/pct.sql" <<'SQL'
CREATE TABLE pct (id int PRIMARY KEY, "st%sage" text, "fund%" int);
SELECT create_distributed_table('pct', 'id', shard_count => 4);
INSERT INTO pct SELECT i, CASE WHEN i % 3 = 0 THEN 'seriesB' ELSE 'Series A ' END, i % 2 FROM generate_series(1, 40) i;
SQL
psql -h 127.0.0.1 -p "$CO" -U postgres -XqAt -v ON_ERROR_STOP=1 -f "$root/pct.sql" postgres >/dev/null 2>"$root/stderr" || cat "$root/stderr"
q "$CO" "CALL stage_norm.migrate('pct', 'st%sage', batch_size => 5, tenant => 'fund%')" >/dev/null 2>"$root/stderr" || cat "$root/stderr"
eq "migrate (tenant by tenant) and verify with % in the names" '0|4' "$CO" \
   "SELECT (v->>'non_canonical') || '|' || (v->'last_run'->>'finished') FROM stage_norm.verify('pct', 'st%sage') v"

echo "== rollback_column_migration from the coordinator: 200,000 rows, while another session inserts"
cat > "$root/rbc.sql" <<'SQL'
CREATE TABLE rbc (fund_id int, id int, stage text, PRIMARY KEY (fund_id, id));
SELECT create_distributed_table('rbc', 'fund_id', shard_count => 8);
INSERT INTO rbc SELECT i % 97, i, (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Seed Round', 'SERIES C+', 'Pre Seed', 'series b', 'seed'])[1 + i % 8]
  FROM generate_series(1, 200000) i;
SELECT stage_norm.attach('rbc', 'stage');
SELECT stage_norm.set_table_mode('rbc', 'warn');
SQL
psql -h 127.0.0.1 -p "$CO" -U postgres -XqAt -v ON_ERROR_STOP=1 -f "$root/rbc.sql" postgres >/dev/null 2>"$root/stderr" || cat "$root/stderr"
rbc_sum="SELECT count(*) || ':' || md5(string_agg(id || '=' || stage, ',' ORDER BY id)) FROM rbc WHERE id <= 200000"
before=$(q "$CO" "$rbc_sum")
q "$CO" "CALL stage_norm.migrate('rbc', 'stage', batch_size => 2000)" >/dev/null 2>"$root/stderr" || cat "$root/stderr"
eq "rbc migrated: 175,000 values rewritten, none left" "0|175000" "$CO" \
   "SELECT (v->>'non_canonical') || '|' || (v->'last_run'->>'rows_updated') FROM stage_norm.verify('rbc', 'stage') v"
rm -f "$root/stop" "$root/ins.fail"
( i=300000
  while [[ ! -f "$root/stop" ]]; do
    i=$((i + 1))
    q "$CO" "INSERT INTO rbc VALUES ($((i % 97)), $i, 'Series A ')" >/dev/null 2>>"$root/ins.err" || echo "$i" >> "$root/ins.fail"
  done ) &
ins=$!
out=$(psql -h 127.0.0.1 -p "$CO" -U postgres -XtAq -v ON_ERROR_STOP=1 -c "CALL stage_norm.rollback_column_migration('rbc', 'stage', batch_size => 2000)" postgres 2>&1)
touch "$root/stop"; wait "$ins"
if grep -q "NOTICE:  stage_norm.rollback_column_migration: 8 shard placements of public.rbc rolled back" <<<"$out"; then
  ok "rollback_column_migration on the coordinator: every shard placement"
else
  bad "rollback_column_migration on the coordinator" "$out"
fi
eq "the original values restored exactly (count and checksum of the 200,000 rows)" "$before" "$CO" "$rbc_sum"
eq "the rows inserted meanwhile: stored, canonical, left alone by the rollback" "t" "$CO" \
   "SELECT count(*) > 0 AND bool_and(stage = 'series-a') FROM rbc WHERE id > 300000"
if [[ -s "$root/ins.fail" ]]; then bad "no insert failed during the rollback" "$(head -5 "$root/ins.err")"; else ok "no insert failed during the rollback ($(q "$CO" "SELECT count(*) FROM rbc WHERE id > 300000") rows)"; fi
eq "every shard's run rolled back, on its node" "8" "$CO" \
   "SELECT sum(result::int) FROM run_command_on_workers(\$\$SELECT count(*) FROM stage_norm.migration_runs WHERE status = 'rolled back' AND table_name LIKE '%rbc\\_%'\$\$)"
q "$CO" "SELECT stage_norm.set_table_mode('rbc', NULL)" >/dev/null

echo "== add_check on a distributed table"
out=$(psql -h 127.0.0.1 -p "$CO" -U postgres -XtAq -v ON_ERROR_STOP=1 -c "CALL stage_norm.add_check('pc', 'stage')" postgres 2>&1)
eq "add_check: a validated constraint on every shard" "32" "$CO" \
   "SELECT count(*) FROM run_command_on_shards('pc', \$\$SELECT count(*) FROM pg_constraint WHERE conrelid = '%s'::regclass AND conname LIKE 'stage_stage_canonical%%' AND convalidated\$\$) WHERE result = '1'"

echo "== the stage set changes with CHECKs on a distributed table"
q "$CO" "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c+', 'growth')" >/dev/null 2>"$root/stderr"
all "a stage added while every shard has the CHECK" "pre-seed,seed,series-a,series-b,series-c+,growth" "SELECT string_agg(s, ',') FROM stage_norm.canonical_stages() s"
err "a stage in use cannot go: the CHECK on the shards is re-checked (23514)" 23514 "would break CHECK constraints" "$CO" \
    -c "SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-c+', 'growth')"
all "refused on every node" "pre-seed,seed,series-a,series-b,series-c+,growth" "SELECT string_agg(s, ',') FROM stage_norm.canonical_stages() s"
q "$CO" "SELECT stage_norm.reset_stages()" >/dev/null

echo "== a reference table: identical copies"
q "$CO" "CREATE TABLE funds (id int PRIMARY KEY, stage text); SELECT create_reference_table('funds'); SELECT stage_norm.set_table_mode('funds', 'warn'); SELECT stage_norm.attach('funds', 'stage')" >/dev/null
q "$CO" "INSERT INTO funds VALUES (1, 'angel round'), (2, 'Series A '), (3, 'weird')" >/dev/null 2>&1
eq "the rows every placement stores are the same" "1" "$CO" \
   "SELECT count(DISTINCT result) FROM run_command_on_placements('funds', \$\$SELECT string_agg(id || '=' || stage, ',' ORDER BY id) FROM %s\$\$)"
eq "the reference table's rows" "1=pre-seed,2=series-a,3=weird" "$CO" "SELECT string_agg(id || '=' || stage, ',' ORDER BY id) FROM funds"
# Citus writes every copy and relays each node's WARNINGs: only the first copy's reach the client.
out=$(psql -h 127.0.0.1 -p "$CO" -U postgres -XtAq -c "INSERT INTO funds VALUES (4, 'odd one')" postgres 2>&1)
n=$(grep -c '^WARNING' <<<"$out" || true)
if [[ $n == 1 ]]; then ok "an unknown value in a reference table: one WARNING, not one per copy ($(q "$CO" "SELECT count(*) FROM pg_dist_placement p JOIN pg_dist_shard s USING (shardid) WHERE s.logicalrelid = 'funds'::regclass") copies)"
else bad "reference table WARNING once" "$out"; fi

echo "== a Citus-local table"
q "$CO" "CREATE TABLE notes (id int PRIMARY KEY, stage text); SELECT citus_add_local_table_to_metadata('notes'); SELECT stage_norm.set_table_mode('notes', 'warn'); SELECT stage_norm.attach('notes', 'stage')" >/dev/null
eq "its override applies (shard trigger finds the logical table)" "1" "$CO" "INSERT INTO notes VALUES (1, 'odd'); SELECT count(*) FROM notes"

echo "== drift: a node written directly is reported, and citus_sync repairs it"
shard=$(q "$W1" "SELECT stage_norm._citus_local_placement('stage_norm.aliases')")
q "$W1" "SET citus.enable_manual_changes_to_shards = on; INSERT INTO $shard (alias, stage) VALUES ('rogue', 'seed')" >/dev/null
eq "citus_check reports the worker's aliases" "127.0.0.1:$W1|aliases" "$CO" "SELECT node || '|' || item FROM stage_norm.citus_check() WHERE NOT matches"
eq "citus_sync rewrites every copy from the coordinator's" "3 alias(es) and 3 override(s) written to every node" "$CO" "SELECT stage_norm.citus_sync()"
eq "citus_check after citus_sync: nothing differs" "0" "$CO" "SELECT count(*) FROM stage_norm.citus_check() WHERE NOT matches"
all "the rogue alias is gone" "" "SELECT stage_norm.normalize_stage('rogue')"
# A worker that failed between PREPARE and COMMIT keeps the transaction (and serves the old
# configuration) until the coordinator recovers it: citus_check says so and names the remedy.
# Made here by hand on the worker, with a gid of our own (so rolled back by hand after).
psql -h 127.0.0.1 -p "$W1" -U postgres -XqAt -v ON_ERROR_STOP=1 postgres >/dev/null <<SQL
BEGIN;
SET LOCAL citus.enable_manual_changes_to_shards = on;
INSERT INTO $shard (alias, stage) VALUES ('pending one', 'seed');
PREPARE TRANSACTION 'sn_check_pending';
SQL
eq "citus_check names a worker's prepared configuration change and the remedy" "127.0.0.1:$W1|prepared_config_changes|true|true" "$CO" \
   "SELECT node || '|' || item || '|' || (value LIKE 'sn_check_pending (%') || '|' || (value LIKE '%SELECT recover_prepared_transactions() on the coordinator%') FROM stage_norm.citus_check() WHERE NOT matches"
q "$W1" "ROLLBACK PREPARED 'sn_check_pending'" >/dev/null
eq "citus_check once it is gone: nothing differs" "0" "$CO" "SELECT count(*) FROM stage_norm.citus_check() WHERE NOT matches"
psql -h 127.0.0.1 -p "$W2" -U postgres -XqAt -c "ALTER SYSTEM SET stage_norm.max_mode = 'shadow'" -c "SELECT pg_reload_conf()" postgres >/dev/null; sleep 1
eq "citus_check reports a node's different setting" "127.0.0.1:$W2|stage_norm.max_mode|shadow" "$CO" "SELECT node || '|' || item || '|' || value FROM stage_norm.citus_check() WHERE NOT matches"
psql -h 127.0.0.1 -p "$W2" -U postgres -XqAt -c "ALTER SYSTEM RESET stage_norm.max_mode" -c "SELECT pg_reload_conf()" postgres >/dev/null; sleep 1

echo "== a third worker added later"
start_node "$W3"
q "$CO" "SELECT citus_add_node('127.0.0.1', $W3)" >/dev/null
eq "stage_norm is installed on the new worker" "0.2.0" "$W3" "SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'"
eq "citus_sync places the configuration on the new worker" "3 alias(es) and 3 override(s) written to every node" "$CO" "SELECT stage_norm.citus_sync()"
eq "citus_check: the new worker matches" "0|12" "$CO" "SELECT count(*) FILTER (WHERE NOT matches) || '|' || count(*) FILTER (WHERE node = '127.0.0.1:$W3') FROM stage_norm.citus_check()"
eq "the new worker has the aliases" "seed" "$W3" "SELECT stage_norm.normalize_stage('bogus')"
moved=$(q "$CO" "SELECT shardid FROM citus_shards WHERE table_name = 'pc'::regclass AND nodeport = $W1 ORDER BY shardid LIMIT 1")
q "$CO" "SELECT citus_move_shard_placement($moved, '127.0.0.1', $W1, '127.0.0.1', $W3, shard_transfer_mode => 'block_writes')" >/dev/null
eq "a shard moved to the new worker" "$W3" "$CO" "SELECT nodeport FROM citus_shards WHERE shardid = $moved"
fund=$(q "$CO" "SELECT f FROM generate_series(0, 999) f WHERE get_shard_id_for_distribution_column('pc', f) = $moved LIMIT 1")
err "the moved shard's trigger still enforces and names pc" 23514 'of table "pc" \(shard "pc_'"$moved"'"\)' "$CO" \
    -c "INSERT INTO pc VALUES ($fund, 300000, 'Serie Z')"
echo "== a governed column renamed on the distributed table"
q "$CO" "ALTER TABLE pc RENAME COLUMN stage TO stage_label" >/dev/null 2>"$root/stderr"
eq "every shard's trigger follows the new name" "32" "$CO" \
   "SELECT count(*) FROM run_command_on_shards('pc', \$\$SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND encode(tgargs, 'escape') LIKE '@table=public.pc\\\\000stage_label\\\\000'\$\$) WHERE result = '1'"
err "and still enforces" 23514 'for column "stage_label" of table "pc"' "$CO" -c "INSERT INTO pc VALUES (1, 400000, 'Serie Z')"
q "$CO" "ALTER TABLE pc RENAME COLUMN stage_label TO stage" >/dev/null 2>"$root/stderr"

echo "== detach"
q "$CO" "SELECT stage_norm.detach('pc')" >/dev/null
eq "detach drops the trigger of every shard" "0" "$CO" \
   "SELECT sum(result::int) FROM run_command_on_shards('pc', \$\$SELECT count(*) FROM pg_trigger WHERE tgrelid = '%s'::regclass AND tgname LIKE 'stage_norm%%'\$\$)"

echo "== INSERT cost on the distributed table (200,000 rows, 32 shards), warn, trigger vs none"
q "$CO" "ALTER TABLE pc DROP CONSTRAINT stage_stage_canonical; SELECT stage_norm.set_table_mode('pc', 'warn'); SELECT stage_norm.attach('pc', 'stage'); TRUNCATE pc" >/dev/null
q "$CO" "CREATE TABLE pc_none (fund_id int, id int, stage text, PRIMARY KEY (fund_id, id)); SELECT create_distributed_table('pc_none', 'fund_id', colocate_with => 'pc')" >/dev/null
rounds=${CITUS_BENCH_ROUNDS:-7}
ins="SELECT i % 1000, i, (ARRAY['series-a', 'Series A ', 'pre_seed', 'seriesB', 'seed', 'angel round'])[1 + i % 6] FROM generate_series(1, 200000) i"
ratios=(); t_with=(); t_none=()
for r in $(seq "$rounds"); do
  for t in pc pc_none; do q "$CO" "TRUNCATE $t" >/dev/null; q "$CO" "VACUUM $t" >/dev/null; done
  # alternate which goes first
  order=(pc pc_none); (( r % 2 == 0 )) && order=(pc_none pc)
  for t in "${order[@]}"; do
    s=$(date +%s%N); q "$CO" "INSERT INTO $t $ins" >/dev/null; e=$(date +%s%N)
    if [[ $t == pc ]]; then a=$(( (e - s) / 1000000 )); else b=$(( (e - s) / 1000000 )); fi
  done
  t_with+=("$a"); t_none+=("$b"); ratios+=("$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", a/b}')")
done
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
echo "   rounds=$rounds  with trigger (ms): ${t_with[*]}"
echo "   rounds=$rounds  without (ms):      ${t_none[*]}"
echo "   paired ratios: ${ratios[*]}"
echo "   median ms: with $(med "${t_with[@]}"), without $(med "${t_none[@]}"); median paired ratio $(med "${ratios[@]}")"
eq "every row was normalized" "200000" "$CO" "SELECT count(*) FROM pc WHERE stage_norm.is_canonical_stage(stage)"

echo
echo "citus-check: $pass passed, $fail failed (Citus $(q "$CO" "SELECT extversion FROM pg_extension WHERE extname = 'citus'"), PostgreSQL $(q "$CO" "SHOW server_version"), stage_norm $(q "$CO" "SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'"))"
(( fail == 0 ))
