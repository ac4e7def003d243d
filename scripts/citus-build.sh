#!/usr/bin/env bash
# Builds and installs Citus into PostgreSQL (PG_CONFIG; the system's 15 by default) from a source tree the user provides
# (tag v13.2.2 was checked: docs/scaling.md). The tree is copied first; the user's own copy is
# never modified. One local fix is applied to the copy (../shared/CITUS-NOTES.md): PostgreSQL
# 15.14+ exports have_createdb_privilege(), which Citus's pg_version_compat.h defines again as a
# static function for PostgreSQL < 16; the copy is renamed.
#   scripts/citus-build.sh <citus source dir>
# Idempotent: a build of the same commit already installed is reused (the stamp file).
set -euo pipefail
src=${1:?usage: citus-build.sh <citus source dir>}
[[ -f "$src/configure" && -d "$src/src/backend/distributed" ]] || { echo "citus-build: $src is not a Citus source tree" >&2; exit 2; }
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
build=${CITUS_BUILD_DIR:-/tmp/stage_norm_citus_build}
rev=$(git -C "$src" rev-parse HEAD 2>/dev/null || stat -c %Y "$src/configure")
stamp="$($PG_CONFIG --pkglibdir)/citus.stage_norm_build"
if [[ -f "$($PG_CONFIG --pkglibdir)/citus.so" && -f "$stamp" && "$(cat "$stamp")" == "$rev" ]]; then
  echo "citus-build: Citus $rev is already installed"; exit 0
fi
# The build dependencies (Debian), idempotently.
need=(libcurl4-openssl-dev liblz4-dev libzstd-dev libkrb5-dev libselinux1-dev libpam0g-dev autoconf flex bison make gcc)
missing=()
for p in "${need[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
if ((${#missing[@]})); then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
rm -rf "$build" && mkdir -p "$build"
if git -C "$src" rev-parse HEAD >/dev/null 2>&1; then
  git -C "$src" archive HEAD | tar -x -C "$build"
else
  cp -a "$src/." "$build/"
fi
compat="$build/src/include/pg_version_compat.h"
if ! grep -q citus_compat_have_createdb_privilege "$compat"; then
  # Rename the static copy (and every call Citus makes of it) before its definition.
  sed -i '0,/^have_createdb_privilege(void)/s//citus_compat_have_createdb_privilege(void)/' "$compat"
  # For PostgreSQL < 16 (the #else branch) calls go to the renamed copy.
  awk 'BEGIN{done=0} /^static inline bool$/ && !done {getline nxt; if (nxt ~ /^citus_compat_have_createdb_privilege\(void\)/) {print "#define have_createdb_privilege citus_compat_have_createdb_privilege"; done=1} print; print nxt; next} {print}' "$compat" > "$compat.new"
  mv "$compat.new" "$compat"
fi
cd "$build"
./configure PG_CONFIG="$PG_CONFIG" --quiet >/dev/null
make -j"$(nproc)" -s >/dev/null
make install -s >/dev/null
echo "$rev" > "$stamp"
echo "citus-build: installed Citus $(git -C "$src" describe --tags 2>/dev/null || echo "$rev") into $($PG_CONFIG --pkglibdir)"
