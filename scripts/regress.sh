#!/usr/bin/env bash
# Runs the pg_regress suite in pg_test/ against the running cluster (PGHOST/PGPORT set by
# with-cluster.sh), in a fresh database. Prints the diffs on failure.
set -euo pipefail
pg_regress=$1
cd "$(dirname "$0")/../pg_test"
db=stage_norm_regress
psql -q -X -d postgres -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
rm -rf results regression.diffs regression.out
if ! "$pg_regress" --use-existing --host="$PGHOST" --port="$PGPORT" --user=postgres \
      --dbname=$db --inputdir=. --outputdir=. --schedule=schedule; then
  cat regression.diffs >&2 || true
  exit 1
fi
