#!/usr/bin/env bash
# Builds the executors only the tests use for wasm32-wasip2 and copies the components
# to tests/guests/components/, where the tests find them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/../../scripts/build-rust-guests" "$here"
