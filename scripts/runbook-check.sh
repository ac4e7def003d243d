#!/usr/bin/env bash
# make test: docs/runbook.md's SQL, run end to end from the markdown itself, so the runbook
# cannot rot. Against the throwaway cluster of PG* (with-cluster.sh: stage_norm and pg_cron
# preloaded), in database postgres (pg_cron's), on a sample portfolio with the roles the runbook
# names (fund_ops, metrics).
# - ```sql blocks run in order, each with psql -f (statements one by one, ON_ERROR_STOP);
# - a ```sql rollback block runs right after its step, then every ```sql block of that section
#   runs again: both directions work, and the rollout goes on;
# - other ```sql <word> blocks (e.g. citus) are not run here, and are listed.
set -euo pipefail
doc=${1:-$(dirname "$0")/../docs/runbook.md}
work=$(mktemp -d /tmp/stage_norm_runbook.XXXXXX)
trap 'rm -rf "$work"' EXIT
run() { psql -X -q -v ON_ERROR_STOP=1 -d postgres -f "$1" >"$work/out" 2>&1 || { echo "runbook-check: FAILED in $2:"; sed 's/^/  | /' "$1"; echo "  psql said:"; sed 's/^/  | /' "$work/out"; exit 1; }; }

psql -X -q -v ON_ERROR_STOP=1 -d postgres <<'SQL'
CREATE EXTENSION IF NOT EXISTS pg_cron;
CREATE ROLE fund_ops LOGIN;
CREATE ROLE metrics LOGIN;
CREATE TABLE portfolio (id int PRIMARY KEY, company text, stage text);
INSERT INTO portfolio
SELECT i, 'company ' || i,
       (ARRAY['Series A ', 'pre_seed', 'seriesB', 'Seed Round', 'Series C Plus', 'Angel', 'Growth', 'series-a', NULL])[1 + i % 9]
  FROM generate_series(1, 30000) i;
CREATE TABLE portfolio_orig AS SELECT * FROM portfolio;
SQL

# Split the markdown into blocks: <n>.<kind> files (kind: sql, rollback, skip) and the section of each.
awk -v dir="$work" '
  /^## / { section = substr($0, 4) }
  /^```sql/ && !inblock { inblock = 1; n++; info = $0; sub(/^```sql */, "", info)
                          kind = (info == "") ? "sql" : (info == "rollback" ? "rollback" : "skip:" info)
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
  case "$kind" in
    sql) run "$b.sql" "\"$section\""; section_blocks+=("$b.sql"); ran=$((ran + 1)) ;;
    rollback)
      run "$b.sql" "\"$section\" (roll back)"; rolled=$((rolled + 1))
      # The migration's roll back must give back every original value.
      if [[ "$section" == 4.* ]]; then
        got=$(psql -X -qAt -v ON_ERROR_STOP=1 -d postgres -c "SELECT count(*) FROM portfolio p JOIN portfolio_orig o USING (id) WHERE p.stage IS DISTINCT FROM o.stage")
        [[ "$got" == 0 ]] || { echo "runbook-check: FAILED: \"$section\" (roll back) left $got rows migrated"; exit 1; }
      fi
      for again in "${section_blocks[@]}"; do run "$again" "\"$section\" (again, after its roll back)"; done ;;
    skip:*) skipped+=("${kind#skip:} in \"$section\"") ;;
  esac
done

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
echo "runbook-check: docs/runbook.md ran end to end: $ran SQL blocks, $rolled roll-backs (each followed by its step again); not run here: ${skipped[*]:-none}"
