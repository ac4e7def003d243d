#!/usr/bin/env bash
# Installs what stage_norm needs to build and test, and nothing that is already there.
# Idempotent: a second run only checks. Needs root (Debian 12) and the package registries.
set -euo pipefail

PG_MAJOR=15
PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
PGRX_VERSION=0.18.1

say() { printf 'bootstrap: %s\n' "$*"; }

# 1. Debian packages (apt-get update only when something is missing).
# postgresql-NN-cron: pg_cron, preloaded by scripts/with-cluster.sh (migrate in scheduled windows).
# prometheus (promtool), prometheus-postgres-exporter, jq, yq, curl: scripts/monitoring-check.sh.
# pgbouncer, postgresql-NN-partman: tests/tests/one_server.rs. dpkg-dev: make package.
# gnuplot-nox: make bench's chart (docs/benchmarks.png, bench/report.js).
pkgs=(postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-contrib libclang-dev clang
      pkg-config sudo postgresql-$PG_MAJOR-plpgsql-check valgrind postgresql-$PG_MAJOR-cron
      prometheus prometheus-postgres-exporter jq yq curl pgbouncer postgresql-$PG_MAJOR-partman dpkg-dev
      gnuplot-nox
      # scripts/build-pg.sh: PostgreSQL 17 and 18 from source
      build-essential bison flex libicu-dev libssl-dev liblz4-dev libzstd-dev libxml2-dev
      libreadline-dev zlib1g-dev bzip2)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
else
  say "Debian packages present"
fi

# 2. cargo-pgrx, pinned (pgrx 0.19 needs a newer rustc than this machine has).
if [[ "$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $PGRX_VERSION" ]]; then
  say "installing cargo-pgrx $PGRX_VERSION (a few minutes)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
else
  say "cargo-pgrx $PGRX_VERSION present"
fi

# 3. PostgreSQL 17 and 18, built from Debian's source packages (once per machine; about eight
#    minutes each on two cores): scripts/build-pg.sh.
here=$(cd "$(dirname "$0")" && pwd)
PG17_CONFIG=$(bash "$here/build-pg.sh" 17)
PG18_CONFIG=$(bash "$here/build-pg.sh" 18)

# 4. pgrx's config pointing at the three servers (offline; no download).
config="${PGRX_HOME:-$HOME/.pgrx}/config.toml"
if ! grep -qs "pg$PG_MAJOR = \"$PG_CONFIG\"" "$config" || ! grep -qs "pg17 = \"$PG17_CONFIG\"" "$config" \
   || ! grep -qs "pg18 = \"$PG18_CONFIG\"" "$config"; then
  say "cargo pgrx init --pg$PG_MAJOR $PG_CONFIG --pg17 $PG17_CONFIG --pg18 $PG18_CONFIG"
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG" --pg17 "$PG17_CONFIG" --pg18 "$PG18_CONFIG" >/dev/null
else
  say "pgrx configured for pg$PG_MAJOR, pg17 and pg18"
fi
