#!/usr/bin/env bash
# Builds PostgreSQL 17 or 18 from Debian's source packages, once per machine (a second run only
# checks): programs and headers under /opt/stage_norm/pgNN, and the server's libraries and shared
# files where Debian's postgresql-NN keeps them (/usr/lib/postgresql/NN/lib,
# /usr/share/postgresql/NN), so that a package built for Debian's layout installs where this
# server looks. No psql under /usr/lib/postgresql/NN/bin: postgresql-common's wrappers
# (/usr/bin/psql, pg_dump) do not take it for an installed version and keep running 15's. Debian 12 ships 15 as binaries; the trixie/forky binary
# packages need a newer libc, so the servers are built here (docs/testing.md).
#
#   scripts/build-pg.sh 17|18        prints the prefix's pg_config on its last line
#
# Where the sources come from: deb.debian.org's pool (the only server this machine reaches). The
# upstream tarball inside Debian's source package is PostgreSQL's own release tarball; each is
# pinned by its SHA-256 below. 17.12 (trixie's and trixie-security's index) is listed but its
# files are absent from the pool here; 17.11 is the newest 17 the pool serves.
set -euo pipefail

major=${1:?usage: build-pg.sh 17|18}
case $major in
  17) version=17.11 sha=dd27f2b3c59e73ed14aa3324901242bf69a032a6347805f274e6260322d42979 ;;
  18) version=18.6  sha=555610c24d53e4316da5b7d3fc25c279d96856d5e0e23ee308c328c5fa881d9f ;;
  *) echo "build-pg.sh: PostgreSQL $major is not built here (15 comes from Debian's binaries; 16 has no reachable source)" >&2; exit 2 ;;
esac
prefix=/opt/stage_norm/pg$major
# One build at a time per machine (two makes running the bootstrap would share the source tree).
mkdir -p /var/tmp/stage_norm-pg-build
exec 9>/var/tmp/stage_norm-pg-build/lock-$major
flock 9
say() { printf 'build-pg: %s\n' "$*" >&2; }

if [[ -f $prefix/.stage_norm-built && "$($prefix/bin/pg_config --version 2>/dev/null)" == "PostgreSQL $version" ]]; then
  say "PostgreSQL $version present in $prefix"
  echo "$prefix/bin/pg_config"
  exit 0
fi

work=${BUILD_PG_WORK:-/var/tmp/stage_norm-pg-build}
mkdir -p "$work"
tarball=$work/postgresql-${major}_$version.orig.tar.bz2
if ! echo "$sha  $tarball" | sha256sum -c --status 2>/dev/null; then
  say "downloading postgresql-${major}_$version.orig.tar.bz2 from Debian's pool"
  curl -sSf -o "$tarball.part" "http://deb.debian.org/debian/pool/main/p/postgresql-$major/postgresql-${major}_$version.orig.tar.bz2"
  echo "$sha  $tarball.part" | sha256sum -c --status || { say "checksum mismatch"; exit 1; }
  mv "$tarball.part" "$tarball"
fi

src=$work/postgresql-$version
rm -rf "$src"
tar -xjf "$tarball" -C "$work"
cd "$src"
say "configuring $version into $prefix (ICU, OpenSSL, LZ4, zstd, libxml; no debug, no assertions)"
./configure --prefix="$prefix" --libdir="/usr/lib/postgresql/$major/lib" --datadir="/usr/share/postgresql/$major" --with-icu --with-openssl --with-lz4 --with-zstd --with-libxml \
  --with-readline --with-zlib >"$work/configure-$major.log" 2>&1 \
  || { tail -30 "$work/configure-$major.log" >&2; exit 1; }
# Run from `make` (make test -> deps -> bootstrap), this script inherits MAKELEVEL >= 1, and
# PostgreSQL's Makefile.global builds its generated headers (utils/errcodes.h, ...) only at
# MAKELEVEL 0: src/common then fails on a clean machine. Its make starts as a top-level one.
unset MAKELEVEL MAKEFLAGS MFLAGS
say "building (a few minutes on two cores; log: $work/make-$major.log)"
{ make -j"$(nproc)" && make -j"$(nproc)" -C contrib && make install && make -C contrib install; } \
  >"$work/make-$major.log" 2>&1 || { tail -40 "$work/make-$major.log" >&2; exit 1; }
# initdb refuses root; the test clusters run as postgres, which must read the installation.
chmod -R a+rX "$prefix" "/usr/lib/postgresql/$major" "/usr/share/postgresql/$major"
touch "$prefix/.stage_norm-built"
cd / && rm -rf "$src"
say "PostgreSQL $version installed in $prefix"
echo "$prefix/bin/pg_config"
