//! The hubspot-edge Worker: HubSpot webhooks in at the edge, verified, filtered, deduplicated
//! and forwarded to the user's endpoint through Cloudflare Queues, with a dead-letter store
//! and an admin API. All decisions are made by `hubspot-edge-core`; this crate does the I/O.

mod actions;
mod admin;
mod analytics;
mod config;
mod consumer;
mod crypto;
mod dashboard;
mod dead_letters;
mod echo;
mod enrich;
mod fault;
mod forward;
mod hubspot;
mod ingress;
mod jobs;
mod log;
mod metrics;
mod queue;
mod records;
mod respond;
mod rules;
mod store;
mod sync;
mod sync_inbound;

use serde_json::json;
use worker::{
    event, Context, Date, Env, MessageBatch, Method, Request, Response, Result, ScheduleContext,
    ScheduledEvent,
};

use crate::log::Line;

/// Name of the dead-letter queue whose batches go to the store (wrangler.toml).
const DEFAULT_DEAD_LETTER_QUEUE: &str = "hubspot-edge-dead-letters";

#[event(fetch)]
async fn fetch(req: Request, env: Env, ctx: Context) -> Result<Response> {
    let request_id = log::request_id(req.headers().get("cf-ray").ok().flatten());
    // The W3C trace this request continues (its `traceparent`), or a new one: the events it
    // queues carry it to the destination and to HubSpot.
    let trace = log::trace_of(
        req.headers()
            .get(hubspot_edge_core::trace::HEADER)
            .ok()
            .flatten()
            .as_deref(),
    );
    let scope = log::Scope::new(&request_id, Some(trace));
    log::scoped(scope, handle(req, env, ctx, request_id, trace)).await
}

async fn handle(
    mut req: Request,
    env: Env,
    ctx: Context,
    request_id: String,
    trace: hubspot_edge_core::trace::TraceParent,
) -> Result<Response> {
    let started = Date::now().as_millis();
    let path = req.path();
    let method = req.method();
    let result = match (path.as_str(), &method) {
        ("/webhooks/hubspot", Method::Post) => {
            let result = ingress::handle(req, &env, &request_id).await;
            // Off the response path: one request to the metrics object per invocation.
            let env = env.clone();
            ctx.wait_until(log::in_current(async move {
                metrics::flush_after_response(&env).await;
            }));
            return finish(result, &request_id);
        }
        ("/webhooks/hubspot", _) => respond::error(405, "method_not_allowed", "use POST"),
        ("/healthz", Method::Get | Method::Head) => health(&env),
        ("/healthz", _) => respond::error(405, "method_not_allowed", "use GET"),
        (p, _) if p.starts_with("/actions/") => actions::handle(&mut req, &env, &ctx, p).await,
        (p, _) if p.starts_with("/sync/") => sync_inbound::handle(&mut req, &env, p).await,
        (p, Method::Get | Method::Head) if dashboard::is_dashboard(p) => {
            dashboard::serve(req, &env).await
        }
        (p, _) if p == "/admin" || p.starts_with("/admin/") => {
            admin::handle(&mut req, &env, p, &request_id).await
        }
        _ => respond::error(404, "not_found", "no such endpoint"),
    };
    let result = finish(result, &request_id);
    if let Ok(response) = &result {
        Line::info("request")
            .field("request_id", request_id.as_str())
            .field("trace_id", trace.trace_id_hex())
            .field("method", method.to_string())
            .field("path", route_label(&path))
            .field("status", response.status_code())
            .field(
                "duration_ms",
                Date::now().as_millis().saturating_sub(started),
            )
            .emit();
    }
    // Off the response path: what this invocation counted (HubSpot calls of the admin and sync
    // routes), one request to the metrics object at most.
    ctx.wait_until(log::in_current(async move {
        metrics::flush_after_response(&env).await;
    }));
    result
}

/// `GET /healthz`: 200 `{"status":"ok"}` when the configuration is complete and valid; else 503
/// `{"status":"misconfigured","problems":[{"key","code","part"}]}`, every problem by key and
/// code (core's `config::check`), never a value or range: the endpoint is unauthenticated. A
/// monitor or the run command (`scripts/run.sh`) sees what to fix; the log and an admin caller
/// see the detail.
fn health(env: &Env) -> Result<Response> {
    let problems = config::problems(env);
    if problems.is_empty() {
        return respond::json(200, &json!({ "status": "ok" }));
    }
    let problems: Vec<serde_json::Value> = problems
        .iter()
        .map(|p| json!({ "key": p.key(), "code": p.code(), "part": p.part.name() }))
        .collect();
    respond::json(
        503,
        &json!({ "status": "misconfigured", "problems": problems }),
    )
}

/// Turns an unexpected error into a logged 500 with a stable code, and tags every response
/// with the request id.
fn finish(result: Result<Response>, request_id: &str) -> Result<Response> {
    let mut response = match result {
        Ok(r) => r,
        Err(e) => {
            Line::error("internal_error")
                .field("request_id", request_id)
                .field("error", e.to_string())
                .emit();
            respond::error(500, "internal_error", "internal error")?
        }
    };
    response.headers_mut().set("x-request-id", request_id)?;
    Ok(response)
}

/// The path with ids removed, for logs.
fn route_label(path: &str) -> &'static str {
    match path {
        "/webhooks/hubspot" => "/webhooks/hubspot",
        "/healthz" => "/healthz",
        p if p.starts_with("/admin/dead-letters") => "/admin/dead-letters/*",
        p if p.starts_with("/admin/hubspot") => "/admin/hubspot/*",
        p if p.starts_with("/actions/callbacks/") => "/actions/callbacks/*",
        p if p.starts_with("/actions/") => "/actions/*",
        p if p.starts_with("/admin/actions") => "/admin/actions/*",
        p if p.starts_with("/sync/receipts/") => "/sync/receipts/*",
        p if p.starts_with("/sync/") => "/sync/*",
        _ => "other",
    }
}

#[event(queue)]
async fn queue(batch: MessageBatch<String>, env: Env, ctx: Context) -> Result<()> {
    // The batch's lines carry a consumer invocation id; each event's lines its own request id.
    let scope = log::Scope::new(&log::random_id(), None);
    log::scoped(scope, consume(batch, env, ctx)).await
}

async fn consume(batch: MessageBatch<String>, env: Env, ctx: Context) -> Result<()> {
    let dead_letter_queue = env
        .var("DEAD_LETTER_QUEUE_NAME")
        .map(|v| v.to_string())
        .unwrap_or_else(|_| DEFAULT_DEAD_LETTER_QUEUE.into());
    let sync_queue = env
        .var("SYNC_QUEUE_NAME")
        .map(|v| v.to_string())
        .unwrap_or_else(|_| sync::DEFAULT_QUEUE_NAME.into());
    let sync_search_queue = env
        .var("SYNC_SEARCH_QUEUE_NAME")
        .map(|v| v.to_string())
        .unwrap_or_else(|_| sync::DEFAULT_SEARCH_QUEUE_NAME.into());
    let result = if batch.queue() == dead_letter_queue {
        dead_letters::store_dead_letters(batch, &env).await
    } else if batch.queue() == sync_queue || batch.queue() == sync_search_queue {
        sync::consume(batch, &env).await
    } else {
        consumer::forward_batch(batch, &env).await
    };
    // After the batch is settled: one request to the metrics object per invocation.
    ctx.wait_until(log::in_current(async move {
        metrics::flush_after_response(&env).await;
    }));
    result
}

/// The cron trigger (wrangler.toml `[triggers]`): pokes each synced type's coordinator, which
/// starts the run that is due (core's `config::Sync::due`).
#[event(scheduled)]
async fn scheduled(_event: ScheduledEvent, env: Env, _ctx: ScheduleContext) {
    let scope = log::Scope::new(&log::random_id(), None);
    log::scoped(scope, async move { sync::poke_all(&env).await }).await;
}
