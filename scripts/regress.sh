#!/usr/bin/env bash
# Runs the pg_regress suite in pg_test/ against the running cluster (PGHOST/PGPORT set by
# with-cluster.sh), in a fresh database. Prints the diffs on failure.
set -euo pipefail
pg_regress=$1
cd "$(dirname "$0")/../pg_test"
db=stage_norm_regress
psql -q -X -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
rm -rf results regression.diffs regression.out
# lint needs plpgsql_check, which Debian 12 packages for PostgreSQL 15 only: it checks the
# PL/pgSQL source, the same on every version, so it runs on 15 (docs/testing.md).
schedule=schedule
if [[ "${STAGE_NORM_PG:-15}" != 15 ]]; then
  mkdir -p results && grep -v '^test: lint$' schedule > results/schedule
  schedule=results/schedule
fi
if ! "$pg_regress" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
      --dbname=$db --inputdir=. --outputdir=. --schedule=$schedule --bindir="${STAGE_NORM_PG_BIN:-}"; then
  cat regression.diffs >&2 || true
  exit 1
fi
