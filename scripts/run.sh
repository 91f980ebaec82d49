#!/usr/bin/env bash
# The run command: builds the Worker and serves it on local workerd with local KV and Queues.
# Configuration comes from .dev.vars (see .dev.vars.example); listens on $PORT (default 8787).
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_build_tools
cd "$ROOT"
if [ ! -f .dev.vars ]; then
  say "no .dev.vars: copy .dev.vars.example to .dev.vars and fill it in (the Worker reports each missing key)"
fi
# Request.cf (the caller's location) is not used by the Worker; without this, wrangler fetches a
# sample from workers.cloudflare.com at start and prints an error stack when offline.
export CLOUDFLARE_CF_FETCH_ENABLED="${CLOUDFLARE_CF_FETCH_ENABLED:-false}"
exec wrangler dev --ip "${IP:-127.0.0.1}" --port "${PORT:-8787}" --persist-to "${PERSIST_TO:-.wrangler/state}" "$@"
