#!/usr/bin/env bash
# make test: docs/runbook.md's SQL, run end to end from the markdown itself, so the runbook
# cannot rot. Against the throwaway cluster of PG* (with-cluster.sh: stage_norm and pg_cron
# preloaded), in database postgres (pg_cron's), on a sample portfolio owned by portfolio_owner,
# with the roles the runbook names (fund_ops, metrics) and an application role (app):
# - ```sql superuser blocks (step 0) run as the cluster's superuser; every other block as
#   fund_ops, the operator the runbook delegates to (it is no superuser);
# - ```sql blocks run in order, each with psql -f (statements one by one, ON_ERROR_STOP);
# - a ```sql rollback block runs right after its step, then every ```sql block of that section
#   runs again: both directions work, and the rollout goes on;
# - other ```sql <word> blocks (e.g. citus) are not run here, and are listed;
# - all along, from before step 1 to the end, the application writes new rows, one INSERT per
#   session (known variants, and the labels step 3 aliases), and must get no error at any step
#   or roll back: the runbook's order keeps every refusal for after enforce, and its labels are
#   all known by then.
set -euo pipefail
doc=${1:-$(dirname "$0")/../docs/runbook.md}
work=$(mktemp -d /tmp/stage_norm_runbook.XXXXXX)
chmod 755 "$work"
writer_pid=
cleanup() { touch "$work/stop"; if [[ -n $writer_pid ]]; then wait "$writer_pid" 2>/dev/null || true; fi; rm -rf "$work"; }
trap cleanup EXIT
run() {  # file what role
  psql -X -q -v ON_ERROR_STOP=1 -U "$3" -d postgres -f "$1" >"$work/out" 2>&1 || {
    echo "runbook-check: FAILED in $2 (as $3):"; sed 's/^/  | /' "$1"; echo "  psql said:"; sed 's/^/  | /' "$work/out"; exit 1; }
}

psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE ROLE portfolio_owner NOLOGIN;
CREATE ROLE fund_ops LOGIN;
CREATE ROLE metrics LOGIN;
CREATE ROLE app LOGIN;
CREATE TABLE portfolio (id int PRIMARY KEY, company text, stage text);
ALTER TABLE portfolio OWNER TO portfolio_owner;
GRANT SELECT, INSERT, UPDATE ON portfolio TO app;
INSERT INTO portfolio
SELECT i, 'company ' || i,
       (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Seed Round', 'Series C Plus', 'Angel', 'Growth', 'series-a', NULL])[1 + i % 9]
  FROM generate_series(1, 30000) i;
CREATE TABLE portfolio_orig AS SELECT * FROM portfolio;
SQL

# The application: one INSERT per session, as long as the runbook runs. Each failure is logged
# with the step that was running.
echo "before step 1" > "$work/step"
writer() {
  local i=1000000 labels=('Series A ' 'pre_seed' 'seriesB' 'Seed Round' 'Angel' 'Growth' 'series-b' 'Pre Seed')
  while [[ ! -f "$work/stop" ]]; do
    i=$((i + 1))
    if ! PGOPTIONS='-c client_min_messages=error' psql -X -q -U app -d postgres \
           -c "INSERT INTO portfolio VALUES ($i, 'app', '${labels[i % 8]}')" >/dev/null 2>"$work/writer.last"; then
      echo "$(cat "$work/step"): row $i: $(tr '\n' ' ' < "$work/writer.last")" >> "$work/writer.errors"
    fi
    echo "$i" > "$work/writer.count"
  done
}
writer &
writer_pid=$!

# Split the markdown into blocks: <n>.<kind> files (kind: sql, rollback, skip) and the section of each.
awk -v dir="$work" '
  /^## / { section = substr($0, 4) }
  /^```sql/ && !inblock { inblock = 1; n++; info = $0; sub(/^```sql */, "", info)
                          kind = (info == "") ? "sql" : (info == "rollback" || info == "superuser" ? info : "skip:" info)
                          file = sprintf("%s/%03d", dir, n); print kind > (file ".kind"); print section > (file ".section"); next }
  /^```/ && inblock { inblock = 0; close(file ".sql"); next }
  inblock { print > (file ".sql") }
' "$doc"

declare -a section_blocks=()
current=""
ran=0; rolled=0; skipped=()
for kindf in "$work"/*.kind; do
  b=${kindf%.kind}; kind=$(cat "$kindf"); section=$(cat "$b.section")
  if [[ "$section" != "$current" ]]; then current=$section; section_blocks=(); fi
  echo "$section" > "$work/step"
  case "$kind" in
    superuser) run "$b.sql" "\"$section\"" postgres; ran=$((ran + 1)) ;;
    sql) run "$b.sql" "\"$section\"" fund_ops; section_blocks+=("$b.sql"); ran=$((ran + 1)) ;;
    rollback)
      echo "$section (roll back)" > "$work/step"
      run "$b.sql" "\"$section\" (roll back)" fund_ops; rolled=$((rolled + 1))
      # The migration's roll back must give back every original value.
      if [[ "$section" == 4.* ]]; then
        got=$(psql -X -qAt -v ON_ERROR_STOP=1 -d postgres -c "SELECT count(*) FROM portfolio p JOIN portfolio_orig o USING (id) WHERE p.stage IS DISTINCT FROM o.stage")
        [[ "$got" == 0 ]] || { echo "runbook-check: FAILED: \"$section\" (roll back) left $got rows migrated"; exit 1; }
      fi
      echo "$section (again)" > "$work/step"
      for again in "${section_blocks[@]}"; do run "$again" "\"$section\" (again, after its roll back)" fund_ops; done ;;
    skip:*) skipped+=("${kind#skip:} in \"$section\"") ;;
  esac
done

# The application wrote all along, and was never refused.
sleep 1
touch "$work/stop"; wait "$writer_pid"; writer_pid=
written=$(( $(cat "$work/writer.count") - 1000000 ))
if [[ -s "$work/writer.errors" ]]; then
  echo "runbook-check: FAILED: the application got $(wc -l < "$work/writer.errors") errors of $written rows:"; sed 's/^/  | /' "$work/writer.errors" | head -20; exit 1
fi
(( written >= 100 )) || { echo "runbook-check: FAILED: the application wrote only $written rows"; exit 1; }

# Where the rollout must have arrived.
check() { local got; got=$(psql -X -qAt -v ON_ERROR_STOP=1 -d postgres -c "$2"); [[ "$got" == "$3" ]] || { echo "runbook-check: FAILED: $1: expected [$3], got [$got]"; exit 1; }; }
check "the table enforces" "SELECT stage_norm.effective_mode('portfolio')" "enforce"
check "every value canonical" "SELECT count(*) FROM portfolio WHERE stage IS NOT NULL AND NOT stage_norm.is_canonical_stage(stage)" "0"
check "the CHECK is validated" "SELECT convalidated FROM pg_constraint WHERE conname = 'stage_stage_canonical'" "t"
check "no cron job left" "SELECT count(*) FROM cron.job" "0"
check "settings back to the server defaults" "SELECT current_setting('stage_norm.max_mode') || ',' || current_setting('stage_norm.enforce_percent')" "enforce,100"
if psql -X -qAt -d postgres -c "INSERT INTO portfolio VALUES (0, 'x', 'Serie Z')" >/dev/null 2>&1; then
  echo "runbook-check: FAILED: an unknown value was accepted at the end"; exit 1
fi
echo "runbook-check: docs/runbook.md ran end to end as fund_ops (step 0 as a superuser): $ran SQL blocks, $rolled roll-backs (each followed by its step again), while the application wrote $written rows without an error; not run here: ${skipped[*]:-none}"
