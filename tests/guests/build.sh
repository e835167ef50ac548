#!/usr/bin/env bash
# Builds the executors only the tests use for wasm32-wasip2 and copies the components
# to tests/guests/components/, where the tests find them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$here/Cargo.toml"
target_dir="${CARGO_TARGET_DIR:-$here/target}"
out="$here/components"
mkdir -p "$out"
for wasm in "$target_dir"/wasm32-wasip2/release/*.wasm; do
    name="$(basename "$wasm")"
    # Copy then rename, so that a reader never sees half a component.
    cp "$wasm" "$out/.$name.$$"
    mv "$out/.$name.$$" "$out/$name"
done
