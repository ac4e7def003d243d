#!/usr/bin/env bash
# scripts/upgrade-script.sh EXTENSION_DIR: writes EXTENSION_DIR/stage_norm--0.1.0--<version>.sql
# from the install script pgrx generated there (stage_norm--<version>.sql), the frozen
# sql/stage_norm--0.1.0.sql and sql/upgrade/{pre,post}.sql, with tools/sqlgen
# (docs/development.md, "Where SQL lives"). make install and make package run it; it fails, and
# says why, when 0.2.0 changes a 0.1.0 object in a way neither hand-written part handles.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:?usage: scripts/upgrade-script.sh EXTENSION_DIR}
version=$(sed -nE 's/^version = "([^"]+)"/\1/p' Cargo.toml | head -1)
cargo build -q --release -p stage_norm_sqlgen
target/release/stage_norm_sqlgen upgrade sql/stage_norm--0.1.0.sql "$dir/stage_norm--$version.sql" \
  sql/upgrade/pre.sql sql/upgrade/post.sql 0.1.0 "$version" "$dir/stage_norm--0.1.0--$version.sql"
echo "upgrade script: $dir/stage_norm--0.1.0--$version.sql ($(wc -l < "$dir/stage_norm--0.1.0--$version.sql") lines)"
