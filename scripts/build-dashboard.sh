#!/usr/bin/env bash
# Bundles the operator dashboard (dashboard/: index.html, app.js, style.css, uPlot from npm) with
# the pinned esbuild into build/assets/admin/, the Workers static assets directory of
# wrangler.toml's [assets] (served at GET /admin/ by worker/src/dashboard.rs). Called by
# scripts/build-worker.sh. Prints the gzipped script size (BENCHMARKS.md, "Dashboard").
source "$(dirname "${BASH_SOURCE[0]}")/tools.sh"
ensure_npm

out="$ROOT/build/assets/admin"
rm -rf "$ROOT/build/assets"
mkdir -p "$out"
"$ROOT/node_modules/.bin/esbuild" "$ROOT/dashboard/app.js" --bundle --minify --format=iife \
  --target=es2020 --legal-comments=none --log-level=warning --outdir="$out" >&2
cp "$ROOT/dashboard/index.html" "$out/index.html"
say "dashboard: $(gzip -9c "$out/app.js" | wc -c) bytes of script gzipped, $(gzip -9c "$out/app.css" | wc -c) bytes of CSS gzipped"
