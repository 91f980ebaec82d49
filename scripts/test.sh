#!/usr/bin/env bash
# The test command: formatting, lints (native and wasm32), core tests (native and under
# wasm32 in Node), the dependency audit (cargo deny), a fuzz smoke run (cargo-fuzz), and the
# end-to-end tests on real workerd (wrangler dev). `.ci/run` calls this.
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_build_tools
cd "$ROOT"

say "cargo fmt --check"
cargo fmt --all --check

say "clippy (native, all targets)"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "clippy (wasm32: core and worker)"
cargo clippy -p hubspot-edge-core -p hubspot-edge-worker --all-targets --target wasm32-unknown-unknown --locked -- -D warnings

say "the Worker's modules import each other in no cycle (scripts/worker-cycles.py)"
python3 "$ROOT/scripts/worker-cycles.py" "$ROOT"

say "core tests (native)"
cargo test -p hubspot-edge-core --locked

say "the core as a crate: cargo package -p hubspot-edge-core (packaged alone, then built from the package)"
cargo package -p hubspot-edge-core --locked --allow-dirty --quiet

say "official HubSpot clients against the mock (Node @hubspot/api-client, Python hubspot-api-client)"
ensure_python_clients
cargo test -p hubspot-mock --locked --test official_clients
# They ran just now; the crate's other tests follow.
export HUBSPOT_MOCK_SKIP_OFFICIAL_CLIENTS=1

say "command line (hubspot-edge: sign, send, verify, map, diff, check-config)"
cargo test -p hubspot-edge-cli --locked

say "Python package (maturin wheel of bindings/python; pytest, with HubSpot's official Python client)"
ensure_python_package
"$HUBSPOT_EDGE_PYTHON" -m pytest -q "$ROOT/bindings/python/tests"

say "npm package (bindings/npm: wasm build, node:test with @hubspot/api-client, npm pack installed and imported)"
bash "$ROOT/scripts/test-npm.sh"

say "hubspot-mock tests (the HubSpot stand-in's own unit tests)"
cargo test -p hubspot-mock --locked

say "dependency audit: cargo deny check licenses bans sources (deny.toml)"
ensure_deny
"$CARGO_DENY" check licenses bans sources

say "fuzz smoke: each cargo-fuzz target for a few seconds (FUZZING.md)"
bash "$ROOT/scripts/fuzz.sh" smoke

say "core tests (wasm32 in Node, wasm-bindgen-test)"
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER="$WASM_BINDGEN_TEST_RUNNER" \
  cargo test -p hubspot-edge-core --target wasm32-unknown-unknown --locked

say "building the Worker"
bash "$ROOT/scripts/build-worker.sh"

say "end-to-end tests (wrangler dev + workerd + loopback destination; headless Chromium for the dashboard)"
ensure_chromium
cargo test -p hubspot-edge-tests --locked
