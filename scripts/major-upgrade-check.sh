#!/usr/bin/env bash
# From one PostgreSQL major to a newer one with stage_norm (#29; make PG=17|18 version-test runs
# it): a database that uses every feature on the old major (a custom stage set, aliases, a text,
# a jsonb and an array column governed, a migration with its undo, add_check's CHECK, per-table
# modes), then
#   1. dump and restore: the new major's pg_dump of it, restored into a fresh new cluster;
#   2. pg_upgrade of the old cluster itself (with --pg-upgrade);
# and on each result: every row byte for byte as it was (a checksum), the configuration as it
# was, the migration's run still verified, and enforcement working (a variant rewritten, an
# unknown value refused with 23514, warn on the other table).
#   scripts/major-upgrade-check.sh <old bindir> <new bindir> [--pg-upgrade]
# stage_norm must be installed in both.
#
# Debian 12's PostgreSQL 15.20 stamps every column of every table with an attribute option
# `pg_attver` that 17.11 and 18.6 (the newest this machine reaches) do not know: a dump of any
# 15.20 table, with stage_norm or without, fails to restore there ("unrecognized parameter
# pg_attver"), and so does pg_upgrade, which restores such a dump. So from 15 the dump is taken
# in plain format and those options are left out (what a user of these releases must do too),
# and pg_upgrade is checked from 17 to 18 (docs/operations.md).
set -euo pipefail
OLD=${1:?usage: major-upgrade-check.sh <old bindir> <new bindir> [--pg-upgrade]}
NEW=${2:?usage: major-upgrade-check.sh <old bindir> <new bindir> [--pg-upgrade]}
upgrade=${3:-}
old_major=$("$OLD/pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
new_major=$("$NEW/pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
as_pg() { (cd "$dir" && runuser -u postgres -- "$@"); }
dir=$(mktemp -d /tmp/stage_norm_upgrade.XXXXXX); chmod 755 "$dir"; chown postgres: "$dir"
cleanup() {
  for d in "$dir"/old "$dir"/new "$dir"/restored; do
    [[ -f $d/postmaster.pid ]] && { as_pg "$OLD/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || as_pg "$NEW/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true; }
  done
  rm -rf "$dir"
}
trap cleanup EXIT
pass=0 fail=0
ok()  { pass=$((pass + 1)); echo "ok    $1"; }
bad() { fail=$((fail + 1)); echo "FAIL  $1"; [[ -n "${2:-}" ]] && echo "$2" | sed 's/^/      /'; }
free_port() { local p=$1; while (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; do p=$((p + 1)); done; echo "$p"; }
init() {  # bindir datadir port [initdb options]
  as_pg "$1/initdb" -D "$2" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync "${@:4}" >/dev/null
  printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nfsync = off\nshared_preload_libraries = 'stage_norm'\nlc_messages = 'C'\n" \
    "$3" "$dir" >> "$2/postgresql.conf"
}
start() { as_pg "$1/pg_ctl" -D "$2" -l "$2.log" -w start >/dev/null || { cat "$2.log"; exit 1; }; }
stop() { as_pg "$1/pg_ctl" -D "$2" -w stop >/dev/null; }
q() { "$NEW/psql" -h 127.0.0.1 -p "$1" -U postgres -XtAq -v ON_ERROR_STOP=1 -d fund -c "$2"; }
eq() {  # label expected port sql
  local got; got=$(q "$3" "$4" 2>&1) || true
  if [[ "$got" == "$2" ]]; then ok "$1"; else bad "$1" "expected: $2"$'\n'"got:      $got"; fi
}

old_port=$(free_port 56500)
init "$OLD" "$dir/old" "$old_port"
start "$OLD" "$dir/old"
"$OLD/psql" -h 127.0.0.1 -p "$old_port" -U postgres -XqAt -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE fund" >/dev/null
"$OLD/psql" -h 127.0.0.1 -p "$old_port" -U postgres -XqAt -v ON_ERROR_STOP=1 -d fund >/dev/null <<'SQL'
SET client_min_messages = warning;
CREATE EXTENSION stage_norm;
SELECT stage_norm.set_stages('pre-seed', 'seed', 'series-a', 'series-b', 'series-c', 'growth');
SELECT stage_norm.add_alias('Angel Round', 'pre-seed');
CREATE TABLE portfolio (id int PRIMARY KEY, stage text, alloc jsonb, path text[]);
INSERT INTO portfolio
SELECT g, (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Angel Round', 'Growth Stage', 'seed'])[1 + g % 6],
       CASE WHEN g % 2 = 0 THEN '{"Series A ": 0.5, "seed": 0.5}'::jsonb END, ARRAY['Seed Round', 'series b']
  FROM generate_series(1, 3000) g;
SELECT stage_norm.attach('portfolio', 'stage', 'alloc', 'path');
CALL stage_norm.migrate('portfolio', 'stage', batch_size => 500);
CALL stage_norm.migrate('portfolio', 'alloc', batch_size => 500);
CALL stage_norm.migrate('portfolio', 'path', batch_size => 500);
UPDATE portfolio SET stage = 'growth' WHERE stage = 'Growth Stage';
CALL stage_norm.add_check('portfolio', 'stage');
SELECT stage_norm.set_table_mode('portfolio', 'enforce');
CREATE TABLE notes (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('notes', 'stage');
SELECT stage_norm.set_table_mode('notes', 'warn');
INSERT INTO notes VALUES (1, 'mystery label');
SQL
rows="SELECT md5(string_agg(id || '|' || coalesce(stage, '-') || '|' || coalesce(alloc::text, '-') || '|' || coalesce(path::text, '-'), ',' ORDER BY id)) || ' ' || count(*) FROM portfolio"
config="SELECT (SELECT string_agg(s, ',') FROM stage_norm.canonical_stages() s) || ' ' || (SELECT string_agg(alias || '>' || stage, ',' ORDER BY alias) FROM stage_norm.aliases) || ' ' || (SELECT string_agg(tbl::text || '=' || mode, ',' ORDER BY tbl::text) FROM stage_norm.table_mode_settings)"
runs="SELECT string_agg(column_name || ':' || status || ':' || rows_updated, ',' ORDER BY run_id) FROM stage_norm.migration_runs"
want_rows=$(q "$old_port" "$rows"); want_config=$(q "$old_port" "$config"); want_runs=$(q "$old_port" "$runs")
echo "on $old_major: $want_rows; $want_config; $want_runs"

checks() {  # port what
  local p=$1 what=$2
  eq "$what: extension 0.2.0 on PostgreSQL $new_major" "0.2.0 $new_major" "$p" \
     "SELECT extversion || ' ' || current_setting('server_version_num')::int / 10000 FROM pg_extension WHERE extname = 'stage_norm'"
  eq "$what: every row as it was" "$want_rows" "$p" "$rows"
  eq "$what: the stage set, aliases and modes as they were" "$want_config" "$p" "$config"
  eq "$what: the migration runs as they were" "$want_runs" "$p" "$runs"
  eq "$what: verify still judges the run" "finished 0" "$p" \
     "SELECT (v->'last_run'->>'status') || ' ' || (v->>'non_canonical') FROM stage_norm.verify('portfolio', 'stage') v"
  eq "$what: the migrations' undo is there (its rows)" "$want_undo" "$p" "SELECT count(*) FROM stage_norm.migration_undo"
  eq "$what: the CHECK is there" "stage_stage_canonical|true" "$p" \
     "SELECT conname || '|' || convalidated FROM pg_constraint WHERE conrelid = 'portfolio'::regclass AND contype = 'c'" 
  eq "$what: enforce rewrites a variant (alias of the custom set)" "pre-seed" "$p" "INSERT INTO portfolio (id, stage) VALUES (90001, 'Angel Round') RETURNING stage"
  got=$("$NEW/psql" -h 127.0.0.1 -p "$p" -U postgres -XtAq -v VERBOSITY=sqlstate -d fund -c "INSERT INTO portfolio (id, stage) VALUES (90002, 'Series Z')" 2>&1 || true)
  if [[ $got == "ERROR:  23514" ]]; then ok "$what: enforce refuses an unknown value (23514)"; else bad "$what: enforce refuses an unknown value" "$got"; fi
  eq "$what: warn stores an unknown value" "2" "$p" "SET client_min_messages = error; INSERT INTO notes VALUES (2, 'odd'); SELECT count(*) FROM notes"
  eq "$what: the jsonb and array columns are governed" '{"seed": 0.5, "series-a": 0.5}|{seed,series-b}' "$p" \
     "INSERT INTO portfolio (id, alloc, path) VALUES (90003, '{\"Series A \": 0.5, \"Seed\": 0.5}', '{Seed Round,seriesB}') RETURNING alloc::text || '|' || path::text"
}
want_undo=$(q "$old_port" "SELECT count(*) FROM stage_norm.migration_undo")

# 1. The new major's pg_dump of the old database (plain, without 15.20's pg_attver options),
#    restored into a new cluster.
"$NEW/pg_dump" -h 127.0.0.1 -p "$old_port" -U postgres -Fp fund | grep -v -E '^ALTER TABLE ONLY .* ALTER COLUMN .* SET \(pg_attver=[0-9]+\);$' > "$dir/fund.sql"
stop "$OLD" "$dir/old"
restored_port=$(free_port $((old_port + 1)))
init "$NEW" "$dir/restored" "$restored_port"
start "$NEW" "$dir/restored"
"$NEW/psql" -h 127.0.0.1 -p "$restored_port" -U postgres -XqAt -d postgres -c "CREATE DATABASE fund" >/dev/null
if out=$("$NEW/psql" -h 127.0.0.1 -p "$restored_port" -U postgres -XqAt -v ON_ERROR_STOP=1 -d fund -f "$dir/fund.sql" 2>&1); then
  ok "$old_major's dump restored into PostgreSQL $new_major"; else bad "restore into $new_major" "$out"; fi
checks "$restored_port" "dump/restore"
stop "$NEW" "$dir/restored"

# 2. pg_upgrade of the old cluster (copy mode: the old cluster stays as it was).
if [[ $upgrade == --pg-upgrade ]]; then
new_port=$(free_port $((restored_port + 1)))
# 18's initdb turns data checksums on by default; pg_upgrade needs the old cluster's setting.
extra=(); ((new_major >= 18 && old_major < 18)) && extra=(--no-data-checksums)
init "$NEW" "$dir/new" "$new_port" "${extra[@]}"
if out=$(as_pg "$NEW/pg_upgrade" -b "$OLD" -B "$NEW" -d "$dir/old" -D "$dir/new" -U postgres -p "$old_port" -P "$new_port" 2>&1); then
  ok "pg_upgrade from $old_major to $new_major"
  start "$NEW" "$dir/new"
  checks "$new_port" "pg_upgrade"
  stop "$NEW" "$dir/new"
else bad "pg_upgrade from $old_major to $new_major" "$(tail -5 <<<"$out"; grep -rh -A3 "ERROR" "$dir/new/pg_upgrade_output.d" 2>/dev/null | head -8)"; fi
fi

echo "major-upgrade-check ($old_major -> $new_major): $pass passed, $fail failed"
((fail == 0))
