#!/usr/bin/env bash
# Builds the example executors for wasm32-wasip2 and copies the components to
# guest-examples/components/, where the example manifests find them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../scripts/build-rust-guests" "$here"
