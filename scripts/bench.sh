#!/usr/bin/env bash
# Ingress-path benchmark, native and wasm32-in-V8 side by side with a JS baseline.
#
#   scripts/bench.sh [--quick]
#
# Builds bench/native natively and for wasm32-unknown-unknown, runs wasm-bindgen (--target
# nodejs) into bench/pkg, optimises it with binaryen's wasm-opt when installed (npm), then runs
# the native binary and bench/run.mjs under Node 22 in one go. Prints BENCH, RATIO, TARGET and
# SIZE lines. Tools come from scripts/tools.sh: only crates.io (the wasm-bindgen CLI, once) and
# the npm registry (Node 22 and binaryen, only if node_modules has no Node yet).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=()
[[ "${1:-}" == "--quick" ]] && QUICK=(--quick)

TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PROFILE=bench-native
# NODE and WASM_OPT may be overridden (e.g. with copies, if node_modules is being reinstalled).
NODE=${NODE:-$ROOT/node_modules/.bin/node}

# --- toolchain -----------------------------------------------------------------------------------
# Shared with the other scripts: wasm32 target, pinned cargo tools under
# ~/.cache/hubspot-edge/tools (HUBSPOT_EDGE_TOOLS), the wasm-bindgen version from Cargo.lock.
source "$ROOT/scripts/tools.sh"
ensure_wasm_target
if [[ ! -x "$NODE" ]]; then
  # `npm ci` replaces node_modules wholesale; only run it when Node is missing altogether.
  ensure_npm
fi
node_major=$("$NODE" -p 'process.versions.node.split(".")[0]')
if (( node_major < 22 )); then
  echo "bench.sh: $NODE is Node $node_major; Node >= 22 expected (package.json pins it)" >&2
  exit 1
fi

# wasm-bindgen CLI: exactly the version of the wasm-bindgen crate in Cargo.lock.
WB_VERSION=$(wasm_bindgen_version)
if [[ -z "$WB_VERSION" ]]; then
  echo "bench.sh: no wasm-bindgen entry in Cargo.lock" >&2
  exit 1
fi
# WASM_BINDGEN may point at an existing CLI; it is used only if it is exactly $WB_VERSION.
if [[ -n "${WASM_BINDGEN:-}" && "$("$WASM_BINDGEN" --version 2>/dev/null)" != "wasm-bindgen $WB_VERSION" ]]; then
  say "ignoring WASM_BINDGEN=$WASM_BINDGEN: not wasm-bindgen $WB_VERSION"
  WASM_BINDGEN=
fi
# Otherwise: `cargo install wasm-bindgen-cli --version $WB_VERSION --locked` into the tools dir, once.
WASM_BINDGEN=${WASM_BINDGEN:-$(cargo_tool wasm-bindgen-cli "$WB_VERSION" wasm-bindgen)}

# --- build ---------------------------------------------------------------------------------------
say "building native ($PROFILE)"
cargo build --profile "$PROFILE" -p hubspot-edge-bench --bin hubspot-edge-bench >&2
say "building wasm32 ($PROFILE)"
cargo build --target wasm32-unknown-unknown --profile "$PROFILE" -p hubspot-edge-bench --lib >&2
rm -rf bench/pkg
"$WASM_BINDGEN" --target nodejs --out-dir bench/pkg \
  "$TARGET_DIR/wasm32-unknown-unknown/$PROFILE/hubspot_edge_bench.wasm"
WASM_OPT=${WASM_OPT:-$ROOT/node_modules/binaryen/bin/wasm-opt}
if [[ -f "$WASM_OPT" && -z "${BENCH_NO_WASM_OPT:-}" ]]; then
  say "wasm-opt -O3"
  # binaryen's npm wasm-opt is a Node script; run it with the same Node 22.
  "$NODE" "$WASM_OPT" -O3 --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
    --enable-mutable-globals --enable-reference-types --enable-multivalue \
    bench/pkg/hubspot_edge_bench_bg.wasm -o bench/pkg/hubspot_edge_bench_bg.wasm
  WASM_OPT_USED=yes
else
  WASM_OPT_USED=no
fi

# --- run -----------------------------------------------------------------------------------------
echo "MACHINE nproc=$(nproc) cpu=\"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\" node=$("$NODE" --version) rustc=\"$(rustc --version)\" wasm_bindgen=$WB_VERSION wasm_opt=$WASM_OPT_USED loadavg=\"$(cut -d" " -f1-3 /proc/loadavg)\""
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
"$TARGET_DIR/$PROFILE/hubspot-edge-bench" "${QUICK[@]}" | tee -a "$OUT"
"$NODE" bench/run.mjs "${QUICK[@]}" | tee -a "$OUT"

# Ratios across the two processes, and the targets.
awk '
  /^BENCH / { split($2, n, "="); split($3, v, "="); ns[n[2]] = v[2] }
  END {
    split("wasm_host_hmac/native_full wasm_software_hmac/native_full js_baseline/native_full native_enrich_full/native_enrich_decode wasm_enrich_full/native_enrich_full", pairs, " ")
    for (i in pairs) {
      split(pairs[i], p, "/")
      if ((p[1] in ns) && (p[2] in ns) && ns[p[2]] > 0) printf "RATIO %s=%.2f\n", pairs[i], ns[p[1]] / ns[p[2]]
    }
    if ("native_full" in ns)
      printf "TARGET native_full<=50000ns %s (%d ns)\n", (ns["native_full"] <= 50000 ? "PASS" : "FAIL"), ns["native_full"]
    for (k = 1; k <= 2; k++) {
      w = (k == 1 ? "wasm_host_hmac" : "wasm_software_hmac")
      if ((w in ns) && ("js_baseline" in ns))
        printf "TARGET %s<=js_baseline %s (%.2fx)\n", w, (ns[w] <= ns["js_baseline"] ? "PASS" : "FAIL"), ns[w] / ns["js_baseline"]
    }
  }' "$OUT"

# --- sizes ---------------------------------------------------------------------------------------
echo "SIZE bench_wasm_gzip9_bytes=$(gzip -9 -c bench/pkg/hubspot_edge_bench_bg.wasm | wc -c) raw_bytes=$(wc -c < bench/pkg/hubspot_edge_bench_bg.wasm)"
shopt -s nullglob globstar
worker_wasm=(worker/build/**/*.wasm)
if (( ${#worker_wasm[@]} )); then
  for f in "${worker_wasm[@]}"; do
    echo "SIZE worker_wasm_gzip9_bytes=$(gzip -9 -c "$f" | wc -c) raw_bytes=$(wc -c < "$f") file=$f"
  done
else
  echo "SIZE worker: no worker/build/**/*.wasm (build the Worker first, e.g. worker-build --release)"
fi
