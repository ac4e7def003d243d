#!/usr/bin/env bash
# Runs a command against a throwaway PostgreSQL cluster (15, or the server whose programs are in
# STAGE_NORM_PG_BIN: make PG=17 and PG=18 set it): initdb as the postgres user in a
# temporary directory, a private port on 127.0.0.1, stopped and removed when the command ends
# (whatever its outcome). The command sees PGHOST, PGPORT, PGUSER, PGDATABASE, STAGE_NORM_DSN,
# STAGE_NORM_CLUSTER_LOG and STAGE_NORM_PGDATA.
#   scripts/with-cluster.sh [--conf 'name = value']... -- command args...
#
# stage_norm (its cluster-wide statistics and breaker need it) and pg_cron
# (postgresql-15-cron, scripts/bootstrap.sh) are preloaded; pg_cron's jobs are scheduled from
# database postgres and run as ordinary libpq clients over 127.0.0.1 (so a job may CALL a
# procedure that COMMITs, e.g. stage_norm.migrate with max_batches):
#   shared_preload_libraries = 'pg_cron,stage_norm'   cron.database_name = 'postgres'   cron.host = '127.0.0.1'
# These defaults are written first and every --conf line after them; postgresql.conf keeps the
# last setting of a name, so a --conf overrides a default. shared_preload_libraries is one list,
# not additive: --conf "shared_preload_libraries = 'stage_norm'" drops pg_cron, and
# --conf "shared_preload_libraries = ''" preloads nothing (stage_norm then runs without its
# shared memory, as users without the preload have it). Without pg_cron installed the
# cron lines are left out, with a warning.
set -euo pipefail
BIN=${STAGE_NORM_PG_BIN:-/usr/lib/postgresql/15/bin}
# That server's client programs first (psql, pg_dump, pg_basebackup, pg_regress's psql).
export PATH="$BIN:$PATH" STAGE_NORM_PG_BIN="$BIN"
conf=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
  case "$1" in
    --conf) conf+=("$2"); shift 2 ;;
    *) echo "with-cluster: unknown option $1" >&2; exit 2 ;;
  esac
done
[[ "${1:-}" == "--" ]] && shift
(($#)) || { echo "usage: with-cluster.sh [--conf 'k = v']... -- command" >&2; exit 2; }

# From /, so that a private working directory (a clone under /root) is no concern of postgres's.
as_pg() { if [[ $(id -un) == postgres ]]; then "$@"; else (cd / && runuser -u postgres -- "$@"); fi; }

dir=$(mktemp -d /tmp/stage_norm_cluster.XXXXXX)
chmod 755 "$dir"
chown postgres: "$dir" 2>/dev/null || true
port=${STAGE_NORM_PORT:-55432}
while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done

cleanup() {
  as_pg "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  if [[ -n "${STAGE_NORM_KEEP_LOG:-}" ]]; then cp "$dir/log" "$STAGE_NORM_KEEP_LOG" 2>/dev/null || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT

as_pg "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null
{
  echo "listen_addresses = '127.0.0.1'"
  echo "port = $port"
  echo "unix_socket_directories = '$dir'"
  echo "fsync = off"
  echo "full_page_writes = off"
  echo "synchronous_commit = off"
  echo "shared_buffers = 512MB"
  echo "max_wal_size = 8GB"
  echo "checkpoint_timeout = 30min"
  echo "lc_messages = 'C'"
  echo "max_prepared_transactions = 10"   # tests/prepared_config.rs: two-phase commit
  if [[ -f "$($BIN/pg_config --pkglibdir)/pg_cron.so" ]]; then
    echo "shared_preload_libraries = 'pg_cron,stage_norm'"
    echo "cron.database_name = 'postgres'"
    echo "cron.host = '127.0.0.1'"
  else
    echo "shared_preload_libraries = 'stage_norm'"
    echo "with-cluster: pg_cron is not installed (scripts/bootstrap.sh installs it); not preloaded" >&2
  fi
  # Last: a --conf line overrides any default above (postgresql.conf: the last setting wins).
  for c in "${conf[@]}"; do echo "$c"; done
} >> "$dir/data/postgresql.conf"
as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null || { cat "$dir/log" >&2; exit 1; }

export PGHOST=127.0.0.1 PGPORT=$port PGUSER=postgres PGDATABASE=postgres
export STAGE_NORM_DSN="host=127.0.0.1 port=$port user=postgres dbname=postgres"
export STAGE_NORM_CLUSTER_LOG="$dir/log"
export STAGE_NORM_PGDATA="$dir/data"
"$@"
