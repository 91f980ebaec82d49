# shellcheck shell=bash
# Sourced by the other scripts. Installs, at pinned versions, whatever the build needs and is
# missing: the wasm32 target, worker-build, wasm-bindgen-cli (the version in Cargo.lock) and the
# npm packages (wrangler, Node 22, binaryen's wasm-opt, esbuild). Only crates.io and the npm
# registry are used; nothing is downloaded from anywhere else.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="${HUBSPOT_EDGE_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/hubspot-edge/tools}"
WORKER_BUILD_VERSION="0.8.7"

say() { printf '==> %s\n' "$*" >&2; }

wasm_bindgen_version() {
  awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock"
}

ensure_wasm_target() {
  if ! (cd "$ROOT" && rustup target list --installed | grep -qx wasm32-unknown-unknown); then
    say "adding the wasm32-unknown-unknown target"
    (cd "$ROOT" && rustup target add wasm32-unknown-unknown)
  fi
}

# cargo_tool NAME VERSION BINARY: installs crate NAME@VERSION (--locked) under TOOLS_DIR once.
cargo_tool() {
  local name="$1" version="$2" binary="$3" root="$TOOLS_DIR/$1-$2"
  if [ ! -x "$root/bin/$binary" ]; then
    say "installing $name $version (once; a few minutes)"
    (cd /tmp && cargo install "$name" --version "$version" --locked --root "$root" --quiet) >&2
  fi
  printf '%s/bin/%s' "$root" "$binary"
}

ensure_npm() {
  local stamp="$ROOT/node_modules/.hubspot-edge-lock"
  local want
  want="$(sha256sum "$ROOT/package-lock.json" | cut -d' ' -f1)"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "npm ci"
    # The `node` package fetches its platform binary in a preinstall script; retry once if that
    # step fails transiently.
    (cd "$ROOT" && { npm ci --no-audit --no-fund --loglevel=error || npm ci --no-audit --no-fund --loglevel=error; }) >&2
    "$ROOT/node_modules/.bin/node" --version >/dev/null
    echo "$want" > "$stamp"
  fi
}

# Exports what worker-build needs so it downloads nothing.
ensure_build_tools() {
  ensure_wasm_target
  ensure_npm
  WORKER_BUILD_BIN="$(cargo_tool worker-build "$WORKER_BUILD_VERSION" worker-build)"
  WASM_BINDGEN_BIN="$(cargo_tool wasm-bindgen-cli "$(wasm_bindgen_version)" wasm-bindgen)"
  WASM_BINDGEN_TEST_RUNNER="$(dirname "$WASM_BINDGEN_BIN")/wasm-bindgen-test-runner"
  export WORKER_BUILD_BIN WASM_BINDGEN_BIN WASM_BINDGEN_TEST_RUNNER
  export WASM_OPT_BIN="$ROOT/node_modules/.bin/wasm-opt"
  export ESBUILD_BIN="$ROOT/node_modules/.bin/esbuild"
  # wrangler needs Node >= 22.12: the npm package `node` provides it.
  export PATH="$ROOT/node_modules/.bin:$PATH"
}

# Fuzzing (scripts/fuzz.sh, FUZZING.md): cargo-fuzz needs a nightly toolchain (libFuzzer and
# sanitizer flags). Nightly is used for the fuzz targets only; the project builds on the pinned
# stable. RUSTUP_AUTO_INSTALL=0 on these machines: install it explicitly when missing.
FUZZ_TOOLCHAIN="${HUBSPOT_EDGE_FUZZ_TOOLCHAIN:-nightly}"
CARGO_FUZZ_VERSION="0.13.2"
ensure_fuzz_tools() {
  if ! rustup run "$FUZZ_TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    say "installing the $FUZZ_TOOLCHAIN toolchain (minimal profile; fuzzing only)"
    rustup toolchain install "$FUZZ_TOOLCHAIN" --profile minimal >&2
  fi
  CARGO_FUZZ="$(cargo_tool cargo-fuzz "$CARGO_FUZZ_VERSION" cargo-fuzz)"
  export CARGO_FUZZ FUZZ_TOOLCHAIN
}

# The dashboard's browser test (tests/e2e/dashboard.rs): Debian's Chromium, run headless by
# puppeteer-core (npm; it downloads no browser). Installed with apt only when missing.
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    say "installing Debian's chromium (apt; once, ~1 min)"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2
  fi
}

# The dependency audit (deny.toml): cargo-deny, pinned.
CARGO_DENY_VERSION="0.20.2"
ensure_deny() {
  CARGO_DENY="$(cargo_tool cargo-deny "$CARGO_DENY_VERSION" cargo-deny)"
  export CARGO_DENY
}

# A Python venv under the tools cache, from PyPI, pinned by a requirements file, recreated
# only when that file or the Python version changes. `$1`: its name, `$2`: the requirements
# file, `$3`: what it is for (said when it is built). Sets VENV to its path.
ensure_venv() {
  local req="$2" stamp want
  VENV="${XDG_CACHE_HOME:-$HOME/.cache}/hubspot-edge/$1"
  stamp="$VENV/.hubspot-edge-requirements"
  want="$(python3 --version 2>&1) $(sha256sum "$req" | cut -d' ' -f1)"
  if [ ! -x "$VENV/bin/python" ] || [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    say "python venv for $3 (pip install -r ${req#"$ROOT"/})"
    rm -rf "$VENV"
    python3 -m venv "$VENV" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
    echo "$want" > "$stamp"
  fi
}

# The Python package's venv (bindings/python/requirements-test.txt: maturin, pytest, Flask and
# HubSpot's official Python client), then the wheel built from this checkout and installed into
# it. Exports HUBSPOT_EDGE_PYTHON (the venv's python).
ensure_python_package() {
  ensure_venv python-package "$ROOT/bindings/python/requirements-test.txt" "the hubspot_edge wheel"
  local out="$ROOT/target/wheels"
  rm -rf "$out"
  (cd "$ROOT/bindings/python" && "$VENV/bin/maturin" build --release --locked --quiet -o "$out") >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall \
    --no-deps "$out"/hubspot_edge-*.whl >&2
  export HUBSPOT_EDGE_PYTHON="$VENV/bin/python"
}

# HubSpot's official clients run against the mock (tests/mock/clients/, the hubspot-mock
# crate's official_clients test): the Node client comes with `npm ci` (root package.json); the
# Python client goes into a venv (tests/mock/clients/python/requirements.txt). Exports the
# interpreters the test reads.
ensure_python_clients() {
  ensure_venv python-clients "$ROOT/tests/mock/clients/python/requirements.txt" \
    "HubSpot's official Python client"
  export HUBSPOT_MOCK_PYTHON="$VENV/bin/python"
  export HUBSPOT_MOCK_NODE="$ROOT/node_modules/.bin/node"
}
