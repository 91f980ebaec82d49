#!/usr/bin/env bash
# Bundles the operator dashboard (dashboard/: index.html, app.js, style.css, uPlot from npm) with
# the pinned esbuild into build/assets/admin/, the Workers static assets directory of
# wrangler.toml's [assets] (served at GET /admin/ by worker/src/dashboard.rs). Called by
# scripts/build-worker.sh. Prints the gzipped script size (BENCHMARKS.md, "Dashboard").
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_npm

# Built into a scratch directory, then only files whose bytes changed are copied over: every
# running `wrangler dev` watches the assets directory and reloads on any change, so a rebuild
# with nothing new (the run command, an e2e scenario starting a Worker) must not touch it.
out="$ROOT/build/assets/admin"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
"$ROOT/node_modules/.bin/esbuild" "$ROOT/dashboard/app.js" --bundle --minify --format=iife \
  --target=es2020 --legal-comments=none --log-level=warning --outdir="$scratch" >&2
cp "$ROOT/dashboard/index.html" "$scratch/index.html"
mkdir -p "$out"
for f in "$scratch"/*; do
  name="$(basename "$f")"
  cmp -s "$f" "$out/$name" || cp "$f" "$out/$name"
done
for f in "$out"/*; do
  [ -e "$scratch/$(basename "$f")" ] || rm -f "$f"
done
say "dashboard: $(gzip -9c "$out/app.js" | wc -c) bytes of script gzipped, $(gzip -9c "$out/app.css" | wc -c) bytes of CSS gzipped"
