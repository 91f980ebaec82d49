#!/usr/bin/env bash
# Builds the Worker into worker/build/ (wrangler.toml's [build] command runs this).
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_build_tools

# The dashboard's static assets (cheap: esbuild, well under a second); not part of the wasm.
bash "$ROOT/scripts/build-dashboard.sh"

# Nothing to do when no input of the build changed since the last one: the inputs' hash is kept
# beside the output (a start of `scripts/run.sh` then costs seconds, not a rebuild and wasm-opt).
# HUBSPOT_EDGE_FORCE_BUILD=1 rebuilds anyway.
stamp="$ROOT/worker/build/.inputs-sha256"
inputs_hash() {
  (cd "$ROOT" && find core worker Cargo.toml Cargo.lock rust-toolchain.toml package-lock.json \
      scripts/build-worker.sh scripts/tools.sh -type f -not -path 'worker/build/*' \
      -not -path '*/target/*' -print0 |
    sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}
want="$(inputs_hash)"
if [ "${HUBSPOT_EDGE_FORCE_BUILD:-}" != 1 ] && [ -f "$stamp" ] &&
  [ -f "$ROOT/worker/build/index_bg.wasm" ] && [ "$(cat "$stamp")" = "$want" ]; then
  say "Worker inputs unchanged since the last build: not rebuilding (HUBSPOT_EDGE_FORCE_BUILD=1 forces it)"
  exit 0
fi
rm -f "$stamp"

cd "$ROOT/worker"
"$WORKER_BUILD_BIN" --release >&2
# The `name` section (function names, only for stack traces; a panic aborts anyway) is ~190 KB
# of the module; strip it and the producers section (BENCHMARKS.md, "Sizes").
"$WASM_OPT_BIN" "$ROOT/worker/build/index_bg.wasm" --strip-debug --strip-producers \
  -o "$ROOT/worker/build/index_bg.wasm" >&2
echo "$want" > "$stamp"
