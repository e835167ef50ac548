#!/usr/bin/env bash
# Builds the Python, JavaScript and C example executors into guest-examples/components/
# (upper_py, finalize_py, approve_py, reverse_js, approve_js, upper_c), where
# polyglot.toml and the tests find them.
# Needs the tools that scripts/install-guest-tools installs: componentize-py, node with
# sdk/js's npm packages, clang with wasi-libc, wit-bindgen, wasm-tools and the
# WASI preview1 adapter. A component newer than all of its sources is not rebuilt.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wit="$here/../wit"
sdk="$here/../sdk"
out="$here/components"
tools="${SUPERSTEP_GUEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/superstep/tools}"
export PATH="$tools/bin:$PATH"
mkdir -p "$out"

# up_to_date OUT SOURCE...: true when OUT exists and no source (file or directory
# tree) is newer.
up_to_date() {
    local target="$1"
    shift
    [[ -f "$target" ]] || return 1
    [[ -z "$(find "$@" "$wit" -newer "$target" -print -quit)" ]]
}

# publish TMP NAME: moves a finished build into place, so that a reader never sees
# half a component.
publish() {
    mv "$1" "$out/$2.wasm"
    echo "built $2.wasm ($(($(stat -c %s "$out/$2.wasm") / 1024)) KiB)"
}

for name in upper finalize approve; do
    target="$out/${name}_py.wasm"
    up_to_date "$target" "$sdk/python/superstep_guest" "$sdk/python/superstep_guest_build.py" "$here/python/$name" && continue
    PYTHONPATH="$sdk/python" python3 -m superstep_guest_build \
        "$here/python/$name/app.py" "$target.tmp"
    publish "$target.tmp" "${name}_py"
done

for name in reverse approve; do
    target="$out/${name}_js.wasm"
    up_to_date "$target" "$sdk/js/superstep-guest.js" "$sdk/js/build.mjs" "$sdk/js/wit" "$here/js/$name" && continue
    node "$sdk/js/build.mjs" "$here/js/$name/$name.js" "$target.tmp"
    publish "$target.tmp" "${name}_js"
done

for name in upper; do
    target="$out/${name}_c.wasm"
    up_to_date "$target" "$here/c/$name.c" && continue
    build="$(mktemp -d)"
    wit-bindgen c "$wit" --world executor --out-dir "$build" 2>&1 | { grep -v "^Generating" || true; }
    # A preview1 reactor module (no main), then a component through the adapter.
    clang --target=wasm32-wasi --sysroot=/usr -O2 -Wall -Wextra -Werror \
        -mexec-model=reactor -I "$build" \
        -o "$build/$name.core.wasm" "$here/c/$name.c" "$build/executor.c" \
        "$build/executor_component_type.o"
    wasm-tools component new "$build/$name.core.wasm" \
        --adapt "wasi_snapshot_preview1=$tools/wasi_snapshot_preview1.reactor.wasm" \
        -o "$target.tmp"
    rm -rf "$build"
    publish "$target.tmp" "${name}_c"
done
