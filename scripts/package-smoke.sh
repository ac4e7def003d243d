#!/usr/bin/env bash
# package-test.sh's checks against the throwaway cluster of PG* (with-cluster.sh): a fresh
# CREATE EXTENSION with a smoke query, and the update from 0.1.0, from the package's files.
set -euo pipefail
check() { if [[ "$2" == "$3" ]]; then echo "  ok   $1"; else echo "  FAIL $1: expected [$2], got [$3]" >&2; exit 1; fi; }
psql -XqAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE pkg_fresh" -c "CREATE DATABASE pkg_old"
f() { psql -XqAt -v ON_ERROR_STOP=1 -d pkg_fresh -c "$1"; }
f "CREATE EXTENSION stage_norm"
check "version" "0.2.0" "$(f "SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'")"
check "normalize_stage" "series-a" "$(f "SELECT stage_norm.normalize_stage('Series A ')")"
f "CREATE TABLE t (id int PRIMARY KEY, stage text); SELECT stage_norm.attach('t', 'stage')" >/dev/null
f "INSERT INTO t VALUES (1, 'pre_seed')"
check "the trigger" "pre-seed" "$(f "SELECT stage FROM t")"
check "the shared statistics (preloaded)" "normalized=1" "$(f "SELECT outcome || '=' || count FROM stage_norm.stats WHERE table_name = 't' AND datname = current_database() AND count > 0")"
o() { psql -XqAt -v ON_ERROR_STOP=1 -d pkg_old -c "$1"; }
o "CREATE EXTENSION stage_norm VERSION '0.1.0'"
o "ALTER EXTENSION stage_norm UPDATE"
check "update from 0.1.0" "0.2.0" "$(o "SELECT extversion FROM pg_extension WHERE extname = 'stage_norm'")"
