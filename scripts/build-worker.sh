#!/usr/bin/env bash
# Builds the Worker into worker/build/ (wrangler.toml's [build] command runs this).
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_build_tools
cd "$ROOT/worker"
"$WORKER_BUILD_BIN" --release >&2
# The `name` section (function names, only for stack traces; a panic aborts anyway) is ~190 KB
# of the module; strip it and the producers section (BENCHMARKS.md, "Sizes").
"$WASM_OPT_BIN" "$ROOT/worker/build/index_bg.wasm" --strip-debug --strip-producers \
  -o "$ROOT/worker/build/index_bg.wasm" >&2
