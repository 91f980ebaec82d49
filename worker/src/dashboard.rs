//! The operator dashboard (README, "Operating it", "Dashboard"): a static page at `GET /admin/`
//! served from Workers static assets (the `ASSETS` binding, `[assets]` in wrangler.toml, built
//! from `dashboard/` by scripts/build-dashboard.sh). The page holds no data and no secret: it
//! asks for the admin token and calls the admin API with it, which checks it as always.
//! `run_worker_first` keeps every request going through this Worker, so only the files listed
//! here are reachable (https://developers.cloudflare.com/workers/static-assets/binding/).

use worker::{Env, Headers, Request, Response, Result};

/// The dashboard's files, as URL paths (the assets directory holds `admin/…`).
const FILES: [&str; 3] = ["/admin/", "/admin/app.js", "/admin/app.css"];

/// Whether a GET or HEAD of `path` is the dashboard (`/admin` redirects to `/admin/`).
pub(crate) fn is_dashboard(path: &str) -> bool {
    path == "/admin" || FILES.contains(&path)
}

/// Serves a dashboard file from the static assets, or redirects `/admin` to `/admin/`.
pub(crate) async fn serve(req: Request, env: &Env) -> Result<Response> {
    if req.path() == "/admin" {
        // Built by hand: `Response.redirect`'s headers are immutable, and every answer gets
        // its request id added.
        let headers = Headers::new();
        headers.set("location", "/admin/")?;
        return Ok(Response::empty()?.with_status(308).with_headers(headers));
    }
    let mut asset = env.assets("ASSETS")?.fetch_request(req).await?;
    // The fetched response's headers are immutable (the request id is added to every answer):
    // copy it, with headers that keep the page from being framed or loading foreign code.
    let headers = asset.headers().clone();
    headers.set("content-security-policy", CSP)?;
    headers.set("x-content-type-options", "nosniff")?;
    headers.set("referrer-policy", "no-referrer")?;
    headers.set("cache-control", "no-cache")?;
    let status = asset.status_code();
    // A 304 (the browser's copy is current) must have no body at all.
    let response = if status == 304 {
        Response::empty()?
    } else {
        Response::from_bytes(asset.bytes().await?)?
    };
    Ok(response.with_status(status).with_headers(headers))
}

/// Only this origin's script and styles (uPlot sets inline styles on its elements), no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";
