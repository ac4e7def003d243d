#!/usr/bin/env bash
# Checks docs/monitoring/ (make monitoring; part of make cluster-tests):
#   1. promtool check rules docs/monitoring/rules.yml
#   2. promtool test rules docs/monitoring/rules_test.yml
#   3. every query of docs/monitoring/dashboard.json is a rule (its expr or record name) of
#      rules.yml or an expr of rules_test.yml, whitespace aside: a panel cannot rot unseen
#   4. end to end: postgres_exporter with docs/monitoring/queries.yaml against the cluster of
#      PGHOST/PGPORT/PGUSER (stage_norm preloaded), in its own database sn_monitoring, logged in
#      as a member of pg_monitor (role sn_monitoring_metrics), as docs/monitoring/README.md
#      deploys it; both dropped at the end. A known workload, then the exact values of
#      /metrics; a circuit breaker tripped, then its gauge in a new scrape.
#   scripts/with-cluster.sh --conf "shared_preload_libraries = 'stage_norm'" -- bash scripts/monitoring-check.sh
#   bash scripts/monitoring-check.sh --static      # 1-3 only, no cluster
# Needs (Debian): prometheus (promtool), prometheus-postgres-exporter, jq, yq, curl, postgresql-client.
set -euo pipefail
cd "$(dirname "$0")/.."
MON=docs/monitoring
EXPORTER=${POSTGRES_EXPORTER:-prometheus-postgres-exporter}
DB=sn_monitoring
ROLE=sn_monitoring_metrics
static=0
case "${1:-}" in
  --static) static=1 ;;
  "") ;;
  *) echo "usage: monitoring-check.sh [--static]" >&2; exit 2 ;;
esac

passed=0
ok() { passed=$((passed + 1)); echo "  ok: $*"; }
fail() {
  echo "monitoring-check: FAILED: $*" >&2
  echo "monitoring: $passed passed, 1 failed"
  exit 1
}
need() { command -v "$1" >/dev/null 2>&1 || fail "$1 not found (Debian package $2; scripts/bootstrap.sh installs it)"; }
need promtool prometheus
need jq jq
need yq yq
started=$SECONDS

# --- 1, 2: the rules and their unit tests ------------------------------------------------------
echo "monitoring-check: promtool check rules"
out=$(promtool check rules "$MON/rules.yml" 2>&1) || { echo "$out" >&2; fail "promtool check rules $MON/rules.yml"; }
echo "$out" | sed 's/^/    /'
ok "promtool check rules $MON/rules.yml"
echo "monitoring-check: promtool test rules"
out=$(promtool test rules "$MON/rules_test.yml" 2>&1) || { echo "$out" >&2; fail "promtool test rules $MON/rules_test.yml"; }
echo "$out" | grep -v '^\s*$' | sed 's/^/    /'
ok "promtool test rules $MON/rules_test.yml"

# --- 3: every dashboard query is a rule or is unit-tested --------------------------------------
echo "monitoring-check: dashboard queries"
norm='gsub("\\s+"; " ") | sub("^ "; "") | sub(" $"; "")'
known=$({
  yq -r ".groups[].rules[] | (.expr, .record // empty) | $norm" "$MON/rules.yml"
  yq -r ".tests[].promql_expr_test[]?.expr | $norm" "$MON/rules_test.yml"
}) || fail "could not read the expressions of $MON/rules.yml and $MON/rules_test.yml"
panels=$(jq -r "[.. | objects | select(has(\"targets\"))] | .[] | .title as \$t | .targets[]
                | [\$t, ((.expr // \"\") | $norm)] | @tsv" "$MON/dashboard.json") \
  || fail "could not read the panel queries of $MON/dashboard.json"
n=0
while IFS=$'\t' read -r title expr; do
  [[ -n "$expr" ]] || fail "dashboard panel \"$title\": a query without expr"
  grep -qxF -- "$expr" <<<"$known" \
    || fail "dashboard panel \"$title\": query \`$expr\` is neither a rule of $MON/rules.yml nor an expr of $MON/rules_test.yml"
  n=$((n + 1))
done <<<"$panels"
((n > 0)) || fail "no panel query found in $MON/dashboard.json"
ok "dashboard: all $n panel queries are in rules.yml or rules_test.yml"

if ((static)); then
  echo "monitoring: $passed passed, 0 failed ($((SECONDS - started)) s; end to end skipped: --static)"
  exit 0
fi

# --- 4: end to end, postgres_exporter against the cluster --------------------------------------
echo "monitoring-check: postgres_exporter end to end"
need "$EXPORTER" prometheus-postgres-exporter
need curl curl
need psql postgresql-client
[[ -n "${PGPORT:-}" ]] || fail "PGPORT is not set: run under scripts/with-cluster.sh --conf \"shared_preload_libraries = 'stage_norm'\" (or pass --static)"
export PGHOST=${PGHOST:-127.0.0.1} PGUSER=${PGUSER:-postgres}
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

preload=$(q -d postgres -c 'SHOW shared_preload_libraries') || fail "cannot connect to PostgreSQL at $PGHOST:$PGPORT"
[[ ",${preload// /}," == *,stage_norm,* ]] \
  || fail "stage_norm is not in shared_preload_libraries ('$preload'): run under scripts/with-cluster.sh --conf \"shared_preload_libraries = 'stage_norm'\""

tmp=$(mktemp -d /tmp/stage_norm_monitoring.XXXXXX)
exporter_pid=
cleanup() {
  if [[ -n "$exporter_pid" ]]; then kill "$exporter_pid" 2>/dev/null || true; wait "$exporter_pid" 2>/dev/null || true; fi
  q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
    -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

q -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" \
  -c "DROP ROLE IF EXISTS $ROLE" -c "CREATE ROLE $ROLE LOGIN IN ROLE pg_monitor" -c "CREATE DATABASE $DB" >/dev/null \
  || fail "could not create database $DB and role $ROLE"
# t: 1,000 rows, a quarter each canonical, known variant, unknown, NULL (warn mode).
# m: 1,000 rows written before attach, then a migration stopped after 2 batches of 250.
# b: one canonical row, for the breaker below.
# The exporter's role reads the statistics views through pg_monitor; migration_progress (per
# database, not granted to pg_monitor) needs its own grant.
# The session's settings pin what the workload gives, whatever ALTER SYSTEM left in this cluster.
q -d "$DB" -v role="$ROLE" >/dev/null <<'SQL' || fail "the workload in database $DB failed (above)"
SET client_min_messages = error;
SET stage_norm.max_mode = 'enforce'; SET stage_norm.mode = 'warn'; SET stage_norm.track_stats = on;
SET stage_norm.breaker_reject_ratio = 0;
CREATE EXTENSION stage_norm;
GRANT SELECT ON stage_norm.migration_progress TO :"role";
CREATE TABLE t (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('t', 'stage');
INSERT INTO t SELECT i, (ARRAY['Series A', 'seed', 'bogus', NULL])[1 + i % 4] FROM generate_series(1, 1000) i;
CREATE TABLE m (id int PRIMARY KEY, stage text);
INSERT INTO m SELECT i, 'Series A' FROM generate_series(1, 1000) i;
SELECT stage_norm.attach('m', 'stage');
CALL stage_norm.migrate('m', 'stage', batch_size => 250, max_batches => 2);
SELECT stage_norm.set_table_mode('m', 'warn');
CREATE TABLE b (id int PRIMARY KEY, stage text);
SELECT stage_norm.attach('b', 'stage');
INSERT INTO b VALUES (0, 'seed');
SQL

port=${STAGE_NORM_EXPORTER_PORT:-19187}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
if [[ "$PGHOST" == /* ]]; then
  dsn="host=$PGHOST port=$PGPORT user=$ROLE dbname=$DB sslmode=disable"
else
  dsn="postgresql://$ROLE@$PGHOST:$PGPORT/$DB?sslmode=disable"
fi
DATA_SOURCE_NAME=$dsn "$EXPORTER" --web.listen-address="127.0.0.1:$port" \
  --disable-default-metrics --disable-settings-metrics --no-collector.database --no-collector.bgwriter \
  --extend.query-path="$MON/queries.yaml" --log.level=warn >"$tmp/exporter.log" 2>&1 &
exporter_pid=$!

scrape() {
  curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" >"$tmp/metrics" || return 1
  grep -q '^stage_norm_validations_total{' "$tmp/metrics"
}
deadline=$((SECONDS + 15))
until scrape; do
  kill -0 "$exporter_pid" 2>/dev/null || { cat "$tmp/exporter.log" >&2; fail "$EXPORTER exited"; }
  ((SECONDS < deadline)) || { cat "$tmp/exporter.log" "$tmp/metrics" >&2 2>/dev/null || true; fail "no stage_norm metrics on 127.0.0.1:$port/metrics after 15 s"; }
  sleep 0.2
done
ok "$EXPORTER on 127.0.0.1:$port serves stage_norm metrics"

# The value of the one sample of metric $1 whose labels include all of $2... (k="v"); returns
# 1 unless exactly one sample matches.
value() {
  local name=$1; shift
  local found
  found=$(awk -v name="$name" -v want="$*" '
    BEGIN { n = split(want, w, " ") }
    index($0, name "{") == 1 || index($0, name " ") == 1 {
      labels = substr($0, length(name) + 1); sub(/}? [^ ]+$/, ",", labels); sub(/^\{/, ",", labels)
      for (i = 1; i <= n; i++) if (index(labels, "," w[i] ",") == 0) next
      print $NF
    }' "$tmp/metrics")
  [[ -n "$found" && $(wc -l <<<"$found") == 1 ]] || return 1
  echo "$found"
}
# expect NAME 'k="v" ...' VALUE: the sample equals VALUE (as numbers, to 1e-9 relative).
expect() {
  local got
  local sel="$1{${2// /,}}"
  got=$(value "$1" "$2") || fail "$sel: $(grep -c "^$1[{ ]" "$tmp/metrics") samples of $1 in /metrics, none or several with these labels"
  awk -v a="$got" -v b="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; m = (b < 0 ? -b : b); exit !(d <= 1e-9 * (m > 1 ? m : 1)) }' \
    || fail "$sel is $got in /metrics, expected $3"
  ok "$sel $got"
}

lbl='datname="sn_monitoring" schema="public"'
grep -qx 'pg_exporter_last_scrape_error 0' "$tmp/metrics" || { cat "$tmp/exporter.log" >&2; fail "pg_exporter_last_scrape_error is not 0 (a query of $MON/queries.yaml failed)"; }
ok "pg_exporter_last_scrape_error 0 (every query of queries.yaml ran)"
# Prometheus' own lint of the exposition (types, _total, histogram shape); the one finding
# accepted is the latency unit, microseconds by choice (docs/monitoring/README.md).
lint=$(grep -E '^(# (HELP|TYPE) )?stage_norm_' "$tmp/metrics" | promtool check metrics 2>&1 \
       | grep -vF 'stage_norm_trigger_latency_microseconds use base unit "seconds" instead of "microseconds"' || true)
[[ -z "$lint" ]] || fail "promtool check metrics on the stage_norm metrics: $lint"
ok "promtool check metrics: the stage_norm metrics pass Prometheus' lint (but the microseconds unit)"

# Outcome counters of t.stage, as the workload makes them.
for o in passed:250 normalized:250 warned:250 nulls:250 rejected:0 would_normalize:0 would_reject:0 unchanged:0; do
  expect stage_norm_validations_total "$lbl table=\"t\" column=\"stage\" outcome=\"${o%%:*}\"" "${o#*:}"
done

# The histogram of t: _count = latency_buckets.total, _sum = sum_us, every bucket as the view.
read -r total sum_us < <(q -d "$DB" -F ' ' -c "SELECT total, sum_us FROM stage_norm.latency_buckets
                                                WHERE datname = current_database() AND table_name = 't' LIMIT 1") || true
[[ "${total:-0}" -gt 0 ]] || fail "stage_norm.latency_buckets has no sampled call for t"
expect stage_norm_trigger_latency_microseconds_count "$lbl table=\"t\"" "$total"
expect stage_norm_trigger_latency_microseconds_sum "$lbl table=\"t\"" "$sum_us"
expect stage_norm_trigger_latency_microseconds_bucket "$lbl table=\"t\" le=\"+Inf\"" "$total"
q -d "$DB" -c "SELECT le || ' ' || count FROM stage_norm.latency_buckets
               WHERE datname = current_database() AND table_name = 't' ORDER BY le" >"$tmp/view_buckets"
awk '/^stage_norm_trigger_latency_microseconds_bucket\{/ && /datname="sn_monitoring"/ && /table="t"/ {
       match($0, /,le="[^"]*"/); le = substr($0, RSTART + 5, RLENGTH - 6)
       if (le == "+Inf") print "Infinity", $NF; else printf "%.10g %s\n", le + 0, $NF }' "$tmp/metrics" >"$tmp/metric_buckets"
diff "$tmp/view_buckets" "$tmp/metric_buckets" >"$tmp/bucket_diff" \
  || { cat "$tmp/bucket_diff" >&2; fail "the buckets of stage_norm_trigger_latency_microseconds{table=\"t\"} differ from stage_norm.latency_buckets (< view, > metrics)"; }
ok "stage_norm_trigger_latency_microseconds_bucket{table=\"t\"}: all $(wc -l <"$tmp/view_buckets") buckets (le and count) as stage_norm.latency_buckets"

# Breakers: none tripped.
for tb in t b; do expect stage_norm_breaker_tripped "$lbl table=\"$tb\"" 0; done
expect stage_norm_breaker_window_reject_ratio "$lbl table=\"t\"" 0

# Migration progress of m, and the statistics table, as their views.
read -r run_id pct < <(q -d "$DB" -F ' ' -c "SELECT run_id, percent_done FROM stage_norm.migration_progress WHERE table_name = 'm'") || true
[[ "${pct:-}" == 50.0 ]] || fail "stage_norm.migration_progress: m at '$pct' percent, expected 50.0 (2 batches of 250 of 1,000 rows)"
expect stage_norm_migration_percent_done "datname=\"sn_monitoring\" table=\"m\" column=\"stage\" run_id=\"$run_id\"" 50
# migrate's own rewrites are not the application's writes: not counted (#28), so m, written
# before attach and then migrated, has no count at all.
m_counted=$(q -d "$DB" -c "SELECT coalesce(sum(count), 0) FROM stage_norm.stats WHERE datname = current_database() AND table_name = 'm'")
[[ "$m_counted" == 0 ]] || fail "stage_norm.stats counts $m_counted values of m, written by migrate only (expected 0)"
# (m of this database: the statistics are the cluster's, and other tests' databases have an m)
! awk '/^stage_norm_validations_total\{/ && /datname="sn_monitoring"/ && /table="m"/ && $NF != 0 { found = 1 } END { exit !found }' "$tmp/metrics" \
  || fail "stage_norm_validations_total counts values of m (migrate's own writes): $(grep 'datname="sn_monitoring"' "$tmp/metrics" | grep 'table="m"' | grep -v ' 0$')"
ok "migrate's own rewrites (500 rows of m) are not counted"
# m's override: warn, set seconds ago (StageNormWarnTooLong reads it).
m_warn=$(value stage_norm_table_mode_seconds 'datname="sn_monitoring" schema="public" table="m" mode="warn"') \
  || fail "no stage_norm_table_mode_seconds sample for m in warn"
awk -v v="$m_warn" 'BEGIN { exit !(v >= 0 && v < 600) }' || fail "stage_norm_table_mode_seconds of m is $m_warn, expected seconds since its override was set"
ok "stage_norm_table_mode_seconds{table=\"m\",mode=\"warn\"} $m_warn"
read -r cu cm tu tm dropped < <(q -d "$DB" -F ' ' -c "SELECT columns_used, columns_max, tables_used, tables_max, dropped FROM stage_norm.stats_info") || true
[[ -n "${dropped:-}" ]] || fail "could not read stage_norm.stats_info"
expect stage_norm_stats_entries_used 'kind="columns"' "$cu"
expect stage_norm_stats_entries_max 'kind="columns"' "$cm"
expect stage_norm_stats_entries_used 'kind="tables"' "$tu"
expect stage_norm_stats_entries_max 'kind="tables"' "$tm"
expect stage_norm_stats_dropped_total '' "$dropped"

# Trip b's breaker: enforce, breaker at 10% rejects over >= 5 values; one unknown value per
# statement (each rejected: 23514), until stage_norm.breakers says it tripped.
{
  echo "SET client_min_messages = error;"
  echo "SET stage_norm.max_mode = 'enforce'; SET stage_norm.mode = 'enforce'; SET stage_norm.enforce_percent = 100;"
  echo "SET stage_norm.track_stats = on; SET stage_norm.breaker_window = 300;"
  echo "SET stage_norm.breaker_reject_ratio = 0.1; SET stage_norm.breaker_min_rows = 5;"
  for i in $(seq 1 30); do
    echo "INSERT INTO b VALUES ($i, 'bogus');"
    echo "SELECT tripped AS tripped FROM stage_norm.breakers WHERE datname = current_database() AND table_name = 'b' \\gset"
    echo "\\if :tripped"
    echo "  \\q"
    echo "\\endif"
  done
} >"$tmp/trip.sql"
psql -X -q -At -d "$DB" -f "$tmp/trip.sql" >/dev/null 2>"$tmp/trip.err" || true
read -r tripped rejects values < <(q -d "$DB" -F ' ' -c "SELECT tripped, window_rejects, window_values FROM stage_norm.breakers
                                                      WHERE datname = current_database() AND table_name = 'b'") || true
[[ "${tripped:-}" == t ]] || { cat "$tmp/trip.err" >&2; fail "b's circuit breaker did not trip (stage_norm.breakers.tripped = '$tripped')"; }
ok "stage_norm.breakers: b tripped ($rejects rejects of $values values in the window)"
rejected=$(q -d "$DB" -c "SELECT sum(count) FROM stage_norm.stats WHERE datname = current_database() AND table_name = 'b' AND outcome = 'rejected'") \
  || fail "could not read stage_norm.stats"

scrape || fail "second scrape of 127.0.0.1:$port/metrics"
grep -qx 'pg_exporter_last_scrape_error 0' "$tmp/metrics" || fail "pg_exporter_last_scrape_error is not 0 in the second scrape"
expect stage_norm_breaker_tripped "$lbl table=\"b\"" 1
expect stage_norm_breaker_tripped "$lbl table=\"t\"" 0
expect stage_norm_breaker_window_reject_ratio "$lbl table=\"b\"" "$(awk -v r="$rejects" -v v="$values" 'BEGIN { printf "%.17g", r / v }')"
expect stage_norm_validations_total "$lbl table=\"b\" column=\"stage\" outcome=\"rejected\"" "$rejected"

echo "monitoring: $passed passed, 0 failed ($((SECONDS - started)) s)"
