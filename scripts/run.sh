#!/usr/bin/env bash
# The run command: builds the Worker and serves it on local workerd with local KV and Queues.
# Configuration comes from .dev.vars (see .dev.vars.example); listens on $PORT (default 8787).
# Once the Worker answers, its configuration problems (GET /healthz: keys, codes and the part
# each one stops, never values) are printed, or "configuration ok" (scripts/config-report.mjs).
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_build_tools
cd "$ROOT"
# `--env-file FILE` (e.g. the walkthrough's .dev.vars.offline) replaces .dev.vars.
if [ ! -f .dev.vars ] && [[ " $* " != *" --env-file"* ]]; then
  say "no .dev.vars: copy .dev.vars.example to .dev.vars and fill it in (the configuration report below names each missing key)"
fi
# Request.cf (the caller's location) is not used by the Worker; without this, wrangler fetches a
# sample from workers.cloudflare.com at start and prints an error stack when offline.
export CLOUDFLARE_CF_FETCH_ENABLED="${CLOUDFLARE_CF_FETCH_ENABLED:-false}"
ip="${IP:-127.0.0.1}"
port="${PORT:-8787}"
# The reporter polls in the background and stops by itself once it has printed, or as soon as
# wrangler (this process, after `exec`: the pid stays $$) is gone, so it never outlives it.
node "$ROOT/scripts/config-report.mjs" "http://$ip:$port" "${CONFIG_REPORT_TIMEOUT_SECS:-600}" "$$" &
# wrangler stays in the foreground: Ctrl-C and its keyboard shortcuts reach it as before, and it
# stops its own workerd.
exec wrangler dev --ip "$ip" --port "$port" --persist-to "${PERSIST_TO:-.wrangler/state}" "$@"
