#!/usr/bin/env bash
# The Debian package, installed as a user would: the files `make install` put into the
# PostgreSQL under test (PG_CONFIG: 15's, or 17's or 18's built here) are set aside first (so only the package provides stage_norm), the .deb is
# installed with dpkg, a throwaway cluster runs CREATE EXTENSION and a smoke query (and the
# 0.1.0 -> 0.2.0 update from the package's own scripts), the package is removed with dpkg -r and
# every one of its files must be gone; then the set-aside files are put back.
#   scripts/package-test.sh target/postgresql-15-stage-norm_<version>-1_<arch>.deb
set -euo pipefail
deb=$(realpath "${1:?usage: package-test.sh <deb>}")
here=$(cd "$(dirname "$0")" && pwd)
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
name=$(dpkg-deb -f "$deb" Package)
lib=$("$PG_CONFIG" --pkglibdir); ext=$("$PG_CONFIG" --sharedir)/extension
aside=$(mktemp -d /tmp/stage_norm_aside.XXXXXX)
files=("$lib/stage_norm.so" "$ext"/stage_norm.control "$ext"/stage_norm--*.sql)
restore() {
  dpkg -r "$name" >/dev/null 2>&1 || true
  for f in "$aside"/*; do [[ -e "$f" ]] && mv "$f" "$( [[ $f == *.so ]] && echo "$lib" || echo "$ext")/"; done
  rmdir "$aside" 2>/dev/null || true
}
trap restore EXIT
for f in "${files[@]}"; do [[ -e "$f" ]] && mv "$f" "$aside/"; done
[[ ! -e "$lib/stage_norm.so" ]] || { echo "package-test: could not set aside $lib/stage_norm.so" >&2; exit 1; }
# On 17 and 18 the server here is built from source, not Debian's postgresql-NN package (whose
# binaries need a newer libc than Debian 12's), so the dependency cannot be met by dpkg here; on
# trixie or forky it is.
force=()
[[ $name == postgresql-15-* ]] || force=(--force-depends)
dpkg "${force[@]}" -i "$deb" >/dev/null
echo "package-test: installed $(dpkg-query -W -f='${Package} ${Version}' "$name")"
mapfile -t owned < <(dpkg -L "$name" | while read -r p; do [[ -f "$p" ]] && echo "$p"; done)
printf '  %s\n' "${owned[@]}"
bash "$here/with-cluster.sh" --conf "shared_preload_libraries = 'stage_norm'" -- bash "$here/package-smoke.sh"
dpkg -r "$name" >/dev/null
left=()
for f in "${owned[@]}"; do [[ -e "$f" ]] && left+=("$f"); done
((${#left[@]} == 0)) || { echo "package-test: dpkg -r left ${left[*]}" >&2; exit 1; }
dpkg-query -W "$name" >/dev/null 2>&1 && [[ "$(dpkg-query -W -f='${Status}' "$name")" != *not-installed* ]] && { echo "package-test: still registered" >&2; exit 1; }
echo "package-test: removed cleanly (${#owned[@]} files gone)"
