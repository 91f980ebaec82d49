#!/usr/bin/env bash
# Builds the Worker into worker/build/ (wrangler.toml's [build] command runs this).
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_build_tools
cd "$ROOT/worker"
"$WORKER_BUILD_BIN" --release >&2
