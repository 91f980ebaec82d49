#!/usr/bin/env bash
# The npm package's checks (bindings/npm), a step of scripts/test.sh: build the wasm, run the
# tests under Node 22 (node:test, with HubSpot's official Node client), then `npm pack` and
# install the tarball into an empty project, offline, and import it from there: what a user of
# the published package gets, without the repository around it.
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_build_tools
node="$ROOT/node_modules/.bin/node"

bash "$ROOT/scripts/build-npm.sh"
"$node" --test "$ROOT"/bindings/npm/test/*.test.mjs

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
tarball=$(cd "$ROOT/bindings/npm" && npm pack --silent --pack-destination "$scratch")
say "npm pack: $tarball, $(wc -c < "$scratch/$tarball") bytes"
mkdir "$scratch/app"
(cd "$scratch/app" && echo '{"name":"app","private":true,"type":"module"}' > package.json &&
  npm install --offline --no-audit --no-fund --loglevel=error "$scratch/$tarball" >&2)
cat > "$scratch/app/check.mjs" <<'JS'
import { signV3, verifySignatureAsync, parseEvents } from "hubspot-edge";
const body = JSON.stringify([{ eventId: 1, subscriptionId: 2, portalId: 3, appId: 4, occurredAt: 5, subscriptionType: "contact.creation", attemptNumber: 0, objectId: 6 }]);
const url = "https://hooks.example.com/webhooks/hubspot";
const ts = Date.now();
const headers = { "X-HubSpot-Signature-v3": signV3({ secret: "s", url, body, timestampMs: ts }), "X-HubSpot-Request-Timestamp": String(ts) };
const version = await verifySignatureAsync({ secret: "s", url, headers, body });
const [event] = parseEvents(body);
if (version !== "v3" || event.objectId !== 6) throw new Error(`unexpected: ${version} ${JSON.stringify(event)}`);
console.log(`installed package verified ${version} and parsed event ${event.dedupeKey}`);
JS
(cd "$scratch/app" && "$node" check.mjs)
