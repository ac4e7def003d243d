#!/usr/bin/env bash
# make package [PG=17|18]: a Debian package of stage_norm for one PostgreSQL major,
#   target/postgresql-NN-stage-norm_<version>-1_<arch>.deb
# laid out as Debian's postgresql-NN keeps extensions (/usr/lib/postgresql/NN/lib,
# /usr/share/postgresql/NN/extension): 15's pg_config reports those paths, and the 17 and 18
# servers built here (scripts/build-pg.sh) keep their libraries and shared files there too.
# with the shared library, the control file, the install script of this version, the frozen
# 0.1.0 install script and the upgrade script, under the paths pg_config reports. Depends on
# postgresql-15. Built with cargo pgrx package (release) and dpkg-deb (dpkg-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -1)
arch=$(dpkg --print-architecture)
name=postgresql-$major-stage-norm
stage=target/package/$name
rm -rf "$stage" && mkdir -p "$stage"
lib_dir=$("$PG_CONFIG" --pkglibdir) share_dir=$("$PG_CONFIG" --sharedir)
[[ $lib_dir == /usr/lib/postgresql/$major/lib && $share_dir == /usr/share/postgresql/$major ]] \
  || { echo "package: $PG_CONFIG does not have Debian's layout ($lib_dir, $share_dir)" >&2; exit 1; }
# shellcheck disable=SC2086
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$stage" ${PGRX_FLAGS:-} >/dev/null
ext="$stage$("$PG_CONFIG" --sharedir)/extension"
install -m 644 sql/stage_norm--0.1.0.sql "$ext/"
bash scripts/upgrade-script.sh "$ext" >/dev/null
# every file the package must carry, or it is not built
for f in "$stage$("$PG_CONFIG" --pkglibdir)/stage_norm.so" "$ext/stage_norm.control" "$ext/stage_norm--$version.sql" \
         "$ext/stage_norm--0.1.0.sql" "$ext/stage_norm--0.1.0--$version.sql"; do
  [[ -f "$f" ]] || { echo "package: $f is missing" >&2; exit 1; }
done
doc="$stage/usr/share/doc/$name"
mkdir -p "$doc" && install -m 644 LICENSE CHANGELOG.md README.md "$doc/"
size=$(du -sk "$stage" | cut -f1)
mkdir -p "$stage/DEBIAN"
cat > "$stage/DEBIAN/control" <<CONTROL
Package: $name
Version: $version-1
Architecture: $arch
Maintainer: stage_norm authors <stage-norm@localhost>
Depends: postgresql-$major, libc6
Section: database
Priority: optional
Installed-Size: $size
Description: canonical investment stages for PostgreSQL $major
 The stage_norm extension: normalize_stage() and CHECK helpers, a BEFORE
 INSERT/UPDATE trigger with off/shadow/warn/enforce modes, jsonb stage
 distributions and stage arrays, batched reversible migration with a
 verifier, cluster-wide counters and a circuit breaker.
CONTROL
out=target/${name}_${version}-1_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "package: $out"
dpkg-deb --info "$out" | sed -n 's/^ *\(Package\|Version\|Depends\|Installed-Size\):/  &/p'
