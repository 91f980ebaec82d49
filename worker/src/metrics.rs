//! Metrics kept exactly across isolates, and the alerts evaluated over them.
//!
//! - **Counting** happens in the invocation, into a core [`Metrics`] value ([`Recorder`]): a
//!   few map updates per event, no I/O.
//! - **Keeping**: the invocation sends what it counted to one Durable Object (`METRICS`,
//!   instance `metrics`, SQLite) **once**, after its response, through `wait_until`
//!   ([`flush_after_response`]: started by a zero-delay timer, so that none of it runs before
//!   the runtime has the response); never per event. The object merges it into core's [`Timeline`] (minute
//!   buckets for an hour, hour buckets for a day, totals) and writes the three changed buckets as
//!   rows. One object serves every portal (the `portal` label tells them apart): at one update
//!   per invocation it sees a few hundred requests per second at most, inside what one Durable
//!   Object serves (about 1,000 requests per second,
//!   <https://developers.cloudflare.com/durable-objects/platform/limits/>).
//! - **Reading**: `GET /admin/metrics` renders the totals as OpenMetrics text (core's
//!   [`openmetrics::render`]); `GET /admin/metrics.json?span=hour|day` gives the buckets.
//! - **Alerts**: the object's alarm runs once a minute while metrics arrive, evaluates core's
//!   [`Alerts`] over the timeline and POSTs each notice to `ALERT_URL`, signed as Standard
//!   Webhooks with `ALERT_SECRET`, or in Slack's format when `ALERT_FORMAT=slack`. A notice that
//!   cannot be sent is logged (`alert_send_failed`) and the state is kept as evaluated: the
//!   alert stays visible in `/admin/metrics.json` (`alerts`).

use std::cell::RefCell;

use hubspot_edge_core::metrics::alert::{AlertConfig, Alerts, Notice};
use hubspot_edge_core::metrics::{openmetrics, BucketKey, Counter, Metrics, Span, Timeline};
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, Date, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit,
    Response, Result, State,
};

use crate::log::Line;

/// The Durable Object binding (wrangler.toml).
pub(crate) const BINDING: &str = "METRICS";
const INSTANCE: &str = "metrics";
const STATE_ALERTS: &str = "alerts";

thread_local! {
    /// What this isolate counted and has not sent yet. An isolate runs one thread, and
    /// invocations interleave only at `await`s, so any code may count here ([`count`]) without
    /// threading a value through its callers; each invocation sends whatever is pending at its
    /// end ([`flush_pending`]), its own counts and any of an invocation still running, which
    /// that one's flush then misses. Every count is sent exactly once, by the first flush after
    /// it; at most one update per invocation.
    static PENDING: RefCell<Metrics> = RefCell::new(Metrics::new());
}

pub(crate) use hubspot_edge_core::metrics::code_label;

/// Counts into this isolate's pending metrics.
pub(crate) fn count(f: impl FnOnce(&mut Metrics)) {
    PENDING.with(|p| f(&mut p.borrow_mut()));
}

/// Sends this isolate's pending metrics (one request; nothing when nothing is pending), or
/// drops them when `METRICS_ENABLED=false` (core's boolean forms; an invalid value keeps
/// metrics on, and `/healthz` reports it). Call it once at the end of an invocation, after the
/// response (`wait_until`).
pub(crate) async fn flush_pending(env: &Env) {
    let pending = PENDING.with(|p| std::mem::take(&mut *p.borrow_mut()));
    let off = crate::config::lookup(env)
        .boolean("METRICS_ENABLED", true)
        .is_ok_and(|on| !on);
    if !off {
        flush(env, pending).await;
    }
}

/// [`flush_pending`] for an invocation's `wait_until`, after a zero-delay timer.
///
/// A future given to `wait_until` is first polled in the microtask after the handler's, and
/// the runtime sends the response only when JavaScript yields to its event loop, after all
/// microtasks: without the timer the update's synchronous part (taking the counts, serialising
/// them, issuing the subrequest) ran before the response left, and on `wrangler dev`, where
/// the metrics object lives in the same isolate and thread, the object's work (parse, merge,
/// SQLite) could run before it too. A timer fires in a later turn of the event loop. Measured
/// with `pipeline-bench --metrics-ab --drain` (BENCHMARKS.md, "Metrics"): in every run the
/// Worker with the timer answered faster than the one without, and within the run's noise of
/// the Worker with metrics off.
///
/// Exactness is unchanged: the counts are taken when the timer has fired, inside the same
/// `wait_until`, so the runtime keeps the invocation alive until they are sent; a count of
/// another invocation made meanwhile goes with this update (that invocation's own flush then
/// finds less, or nothing). Still at most one update per invocation.
pub(crate) async fn flush_after_response(env: &Env) {
    worker::Delay::from(std::time::Duration::ZERO).await;
    flush_pending(env).await;
}

/// Sends `m` to the metrics object (one request), unless empty or the binding is not
/// configured. Errors are logged, never raised: metrics never fail the work they describe.
async fn flush(env: &Env, mut m: Metrics) {
    if m.is_empty() {
        return;
    }
    crate::analytics::write(env, &mut m);
    let at_ms = Date::now().as_millis();
    let body = json!({ "atMs": at_ms, "metrics": m });
    if let Err(e) = call(env, Method::Post, "/record", Some(body.to_string())).await {
        Line::warn("metrics_flush_failed")
            .field("error", e.to_string())
            .emit();
    }
}

async fn call(env: &Env, method: Method, path: &str, body: Option<String>) -> Result<Response> {
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(INSTANCE)?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(method).with_body(body.map(Into::into));
    let request = Request::new_with_init(&format!("https://metrics{path}"), &init)?;
    stub.fetch_with_request(request).await
}

/// `GET /admin/metrics` (OpenMetrics text) and `GET /admin/metrics.json` (the buckets of a
/// span, the firing alerts): the object's answer as it is.
pub(crate) async fn read(env: &Env, path_and_query: &str) -> Result<Response> {
    let mut answer = call(env, Method::Get, path_and_query, None).await?;
    // A Durable Object's response has immutable headers; the router adds `x-request-id`, so
    // the answer is copied into a new response.
    let content_type = answer
        .headers()
        .get("content-type")?
        .unwrap_or_else(|| "application/json".to_owned());
    let status = answer.status_code();
    let headers = Headers::new();
    headers.set("content-type", &content_type)?;
    Ok(Response::ok(answer.text().await?)?
        .with_status(status)
        .with_headers(headers))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RecordAsk {
    at_ms: u64,
    metrics: Metrics,
}

#[derive(Deserialize)]
struct BucketRow {
    key: String,
    json: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WindowAnswer<'a> {
    span: &'a str,
    /// Upper bounds of the histograms' buckets (core's `BUCKETS_MS`), so that a reader can
    /// compute percentiles from a distribution's `counts`.
    bucket_bounds_ms: &'static [u64],
    now_ms: u64,
    buckets: Vec<BucketOut>,
    alerts: &'a Alerts,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BucketOut {
    start_ms: u64,
    metrics: Metrics,
}

/// The Durable Object. See the [module docs](self).
#[durable_object]
pub struct MetricsStore {
    state: State,
    env: Env,
    timeline: RefCell<Option<Timeline>>,
}

impl std::fmt::Debug for MetricsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsStore").finish_non_exhaustive()
    }
}

impl MetricsStore {
    /// The timeline, loaded from its rows on first use (at most 60 + 24 + 1 rows).
    fn with_timeline<T>(&self, f: impl FnOnce(&mut Timeline) -> T) -> Result<T> {
        let mut slot = self.timeline.borrow_mut();
        if slot.is_none() {
            let rows: Vec<BucketRow> = self
                .state
                .storage()
                .sql()
                .exec("SELECT key, json FROM buckets", None)?
                .to_array()?;
            let mut t = Timeline::new();
            for row in rows {
                let loaded = BucketKey::parse(&row.key)
                    .ok_or_else(|| "unknown key".to_owned())
                    .and_then(|k| t.load_row(k, &row.json).map_err(|e| e.to_string()));
                if let Err(e) = loaded {
                    Line::warn("metrics_bucket_invalid")
                        .field("key", row.key.as_str())
                        .field("error", e)
                        .emit();
                }
            }
            *slot = Some(t);
        }
        Ok(f(slot.as_mut().expect("loaded above")))
    }

    fn record(&self, ask: &RecordAsk) -> Result<()> {
        let now = Date::now().as_millis();
        let mut metrics = ask.metrics.clone();
        metrics.add(Counter::MetricsFlushes, &[], 1);
        let rows = self.with_timeline(|t| {
            let changes = t.record(ask.at_ms.min(now), &metrics, now);
            let changed: Vec<(String, String)> = changes
                .changed
                .iter()
                .filter_map(|k| t.row(*k).map(|text| (k.as_key(), text)))
                .collect();
            (changed, changes.dropped)
        })?;
        let sql = self.state.storage().sql();
        for (key, text) in rows.0 {
            sql.exec(
                "INSERT INTO buckets (key, json) VALUES (?, ?) \
                 ON CONFLICT(key) DO UPDATE SET json = excluded.json",
                vec![key.into(), text.into()],
            )?;
        }
        for key in rows.1 {
            sql.exec(
                "DELETE FROM buckets WHERE key = ?",
                vec![key.as_key().into()],
            )?;
        }
        Ok(())
    }

    async fn alerts(&self) -> Result<Alerts> {
        Ok(self
            .state
            .storage()
            .get::<Alerts>(STATE_ALERTS)
            .await
            .ok()
            .flatten()
            .unwrap_or_default())
    }

    async fn evaluate(&self) -> Result<()> {
        let config = match alert_config(&self.env) {
            Ok(c) => c,
            Err(e) => {
                Line::error("config_invalid")
                    .field("key", "ALERTS")
                    .field("error", e)
                    .emit();
                return Ok(());
            }
        };
        let now = Date::now().as_millis();
        let mut alerts = self.alerts().await?;
        let notices = self.with_timeline(|t| alerts.evaluate(&config, t, now))?;
        self.state.storage().put(STATE_ALERTS, &alerts).await?;
        for n in &notices {
            Line::warn("alert")
                .field("alert", n.alert.as_str())
                .field("status", format!("{:?}", n.status).to_lowercase())
                .emit();
            if let Err(e) = send_alert(&self.env, n).await {
                Line::error("alert_send_failed")
                    .field("alert", n.alert.as_str())
                    .field("error", e.to_string())
                    .emit();
            }
        }
        Ok(())
    }
}

/// The alarm period: `ALERT_EVALUATION_SECS` (core's range; the default when invalid, which
/// `/healthz` reports as a problem of part `alerts`).
fn alert_period_ms(env: &Env) -> i64 {
    let lookup = crate::config::lookup(env);
    let secs = lookup
        .number(hubspot_edge_core::config::ALERT_EVALUATION_SECS)
        .unwrap_or(hubspot_edge_core::config::ALERT_EVALUATION_SECS.default);
    i64::try_from(secs * 1000).unwrap_or(60_000)
}

fn alert_config(env: &Env) -> std::result::Result<AlertConfig, String> {
    match env.var("ALERTS") {
        Ok(v) => AlertConfig::parse(&v.to_string()).map_err(|e| e.to_string()),
        Err(_) => Ok(AlertConfig::default()),
    }
}

/// POSTs `n` to `ALERT_URL` (nothing when unset) as core's [`Notice::post`] builds it
/// (`ALERT_FORMAT`, `ALERT_SECRET`).
async fn send_alert(env: &Env, n: &Notice) -> Result<()> {
    let Ok(url) = env.var("ALERT_URL").map(|v| v.to_string()) else {
        return Ok(());
    };
    let var = |key: &str| env.var(key).ok().map(|v| v.to_string());
    let post = n
        .post(
            var("ALERT_FORMAT").as_deref(),
            var("ALERT_SECRET").as_deref(),
        )
        .map_err(worker::Error::RustError)?;
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    if let Some((id, timestamp, signature)) = &post.signed {
        headers.set("webhook-id", id)?;
        headers.set("webhook-timestamp", timestamp)?;
        headers.set("webhook-signature", signature)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(post.body.into()));
    let response = Fetch::Request(Request::new_with_init(&url, &init)?)
        .send()
        .await?;
    if !(200..300).contains(&response.status_code()) {
        return Err(worker::Error::RustError(format!(
            "ALERT_URL answered {}",
            response.status_code()
        )));
    }
    Ok(())
}

impl DurableObject for MetricsStore {
    fn new(state: State, env: Env) -> Self {
        if let Err(e) = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS buckets (key TEXT PRIMARY KEY, json TEXT NOT NULL)",
            None,
        ) {
            Line::error("metrics_store_init_failed")
                .field("error", e.to_string())
                .emit();
        }
        Self {
            state,
            env,
            timeline: RefCell::new(None),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            let url = req.url()?;
            let now = Date::now().as_millis();
            match (req.method(), url.path()) {
                (Method::Post, "/record") => {
                    let ask: RecordAsk = serde_json::from_str(&req.text().await?)?;
                    self.record(&ask)?;
                    // Alerts are evaluated a minute at a time while metrics arrive.
                    // (`set_alarm` takes an offset from now in milliseconds.)
                    if self.state.storage().get_alarm().await?.is_none() {
                        self.state
                            .storage()
                            .set_alarm(alert_period_ms(&self.env))
                            .await?;
                    }
                    Response::empty()
                }
                (Method::Get, "/admin/metrics") => {
                    let text = self.with_timeline(|t| openmetrics::render(&t.totals()))?;
                    let headers = Headers::new();
                    headers.set("content-type", openmetrics::CONTENT_TYPE)?;
                    Ok(Response::ok(text)?.with_headers(headers))
                }
                (Method::Get, "/admin/metrics.json") => {
                    let span_name = url
                        .query_pairs()
                        .find(|(k, _)| k == "span")
                        .map_or_else(|| "hour".to_owned(), |(_, v)| v.into_owned());
                    let Some(span) = Span::parse(&span_name) else {
                        return Response::from_json(&json!({
                            "error": "metrics_span_invalid",
                            "message": "span is `hour` (by minute) or `day` (by hour)",
                        }))
                        .map(|r| r.with_status(400));
                    };
                    let buckets = self.with_timeline(|t| {
                        t.window(span, now)
                            .into_iter()
                            .map(|(start_ms, metrics)| BucketOut { start_ms, metrics })
                            .collect::<Vec<_>>()
                    })?;
                    let alerts = self.alerts().await?;
                    Response::from_json(&WindowAnswer {
                        span: &span_name,
                        bucket_bounds_ms: &hubspot_edge_core::metrics::BUCKETS_MS,
                        now_ms: now,
                        buckets,
                        alerts: &alerts,
                    })
                }
                _ => Response::error("not found", 404),
            }
        })
        .await
    }

    async fn alarm(&self) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            self.evaluate().await?;
            // Core decides whether the evaluations go on (traffic in the last hour, or a rule
            // firing); otherwise they sleep until the next record.
            let now = Date::now().as_millis();
            let alerts = self.alerts().await?;
            let keep = self.with_timeline(|t| alerts.keep_evaluating(t, now))?;
            if keep {
                self.state
                    .storage()
                    .set_alarm(alert_period_ms(&self.env))
                    .await?;
            }
            Response::empty()
        })
        .await
    }
}
