//! A loopback HTTP server that behaves like HubSpot's CRM objects API (`docs/hubspot.md`
//! §4–§7) and its workflow engine for custom workflow actions (§3): a drop-in base URL for any
//! HubSpot client in tests.
//!
//! ```no_run
//! use hubspot_mock::{MockConfig, MockHubSpot};
//! # fn demo() -> hubspot_mock::Result<()> {
//! let hubspot = MockHubSpot::start(MockConfig {
//!     seed_contacts: 1_000,
//!     ..MockConfig::default()
//! })?;
//! let url = format!("{}/crm/v3/objects/contacts?limit=100", hubspot.base_url());
//! // … send with `Authorization: Bearer <hubspot.token()>` …
//! # let _ = url; Ok(()) }
//! ```
//!
//! What it serves, its flags, faults, webhook emitter and clock: `tests/mock/README.md`; each
//! behaviour it reproduces, and what not yet: `tests/mock/BEHAVIOURS.md`.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use serde_json::{json, Value};

use crate::server::{Request, Responder, Response, Server};

pub mod http;
#[doc(hidden)]
pub mod server;

mod api;
mod assoc;
mod clock;
mod faults;
mod limits;
mod oauth;
mod store;
mod time;
mod webhooks;
mod workflows;

pub use clock::{Clock, ManualClock, SystemClock};
pub use faults::{parse_next_list, Fault, FaultConfig};
pub use oauth::TEST_CODE;
pub use webhooks::WebhookConfig;
pub use workflows::WorkflowConfig;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_assoc;
#[cfg(test)]
mod tests_clock;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_sync;
#[cfg(test)]
mod tests_workflows;

use limits::{Limiter, Limits};
use store::{Kind, Store};

/// What went wrong in the mock or its HTTP plumbing (not an assertion failure in a scenario).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// An error with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self(format!("i/o error: {e}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self(format!("json error: {e}"))
    }
}

/// `Result` with the infrastructure [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How the mock is set up. Defaults follow §5.1 for a Free/Starter private app.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The one valid `Authorization: Bearer` token.
    pub token: String,
    /// Seeded contacts (`contact{i}@example.com`).
    pub seed_contacts: usize,
    /// Seeded companies.
    pub seed_companies: usize,
    /// Seeded deals.
    pub seed_deals: usize,
    /// Associates each seeded contact with one seeded company (contact `i` with company
    /// `i mod companies`, as its primary company: types 1 and 279, and 280 back, §4.3).
    pub seed_associations: bool,
    /// Requests allowed per `window` per token (§5.1: 100 / 10 s).
    pub burst: u32,
    /// The rolling window (`X-HubSpot-RateLimit-Interval-Milliseconds`).
    pub window: Duration,
    /// Requests allowed per (UTC) day (§5.1: 250,000).
    pub daily: u64,
    /// Search requests allowed per second (§4.4: 5).
    pub search_per_second: u32,
    /// OAuth app `client_id` for `POST /oauth/v1/token` (§6).
    pub client_id: String,
    /// OAuth app `client_secret`.
    pub client_secret: String,
    /// A refresh token valid from the start (besides those issued for codes).
    pub refresh_token: String,
    /// An authorization code accepted besides [`TEST_CODE`].
    pub auth_code: String,
    /// Lifetime of issued access tokens (`expires_in`; §6: 1800 s).
    pub token_ttl: Duration,
    /// Faults active from the start (more through `POST /__mock/faults`).
    pub faults: FaultConfig,
    /// Deliver webhooks for API writes (§2) when set.
    pub webhook: Option<WebhookConfig>,
    /// The workflow engine for custom workflow actions (§3): definitions API key, signing,
    /// retries, timeouts. Execution requests are signed with [`MockConfig::client_secret`].
    pub workflows: WorkflowConfig,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            port: 0,
            token: "pat-na1-mock-token".into(),
            seed_contacts: 0,
            seed_companies: 0,
            seed_deals: 0,
            seed_associations: false,
            burst: 100,
            window: Duration::from_secs(10),
            daily: 250_000,
            search_per_second: 5,
            client_id: "mock-client-id".into(),
            client_secret: "mock-client-secret".into(),
            refresh_token: "mock-refresh-token".into(),
            auth_code: String::new(),
            token_ttl: Duration::from_secs(1800),
            faults: FaultConfig::default(),
            webhook: None,
            workflows: WorkflowConfig::default(),
        }
    }
}

#[derive(Debug)]
struct Data {
    /// Every "now" the mock uses (never the wall clock directly).
    clock: Arc<dyn Clock>,
    store: Store,
    assoc: assoc::Associations,
    limiter: Limiter,
    next_correlation: u64,
    oauth: oauth::OAuth,
    faults: faults::Faults,
    stats: faults::Stats,
    /// Webhook events produced by the current request (drained after it).
    outbox: Vec<Value>,
    next_event_id: u64,
    webhooks_on: bool,
    /// Replaces [`WebhookConfig::url`] once set (`POST /__mock/webhook`).
    webhook_url: Option<String>,
    /// Added to every reading of `clock` (`POST /__mock/clock`: moves a system clock on too).
    clock_offset_ms: u64,
    /// Action definitions and enrollments (§3).
    workflows: workflows::State,
}

#[derive(Debug)]
struct Shared {
    token: String,
    data: Mutex<Data>,
    webhook_tx: Mutex<Option<Sender<Value>>>,
    /// The app's client secret: signs execution requests (§1.3).
    client_secret: String,
    /// Attempts of execution requests waiting to be sent (§3.2).
    dispatcher: workflows::Dispatcher,
}

impl Data {
    /// Milliseconds since the Unix epoch, from the mock's [`Clock`].
    fn now_ms(&self) -> u64 {
        self.clock.now_ms().saturating_add(self.clock_offset_ms)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking handler cannot leave the store half-written in a way that matters to a test.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running mock HubSpot. Stops on drop.
#[derive(Debug)]
pub struct MockHubSpot {
    shared: Arc<Shared>,
    addr: SocketAddr,
    /// `None` once stopped (it stops before the emitter).
    server: Option<Server>,
    emitter: Option<JoinHandle<()>>,
    /// The workflow engine's threads sending execution requests.
    dispatchers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl MockHubSpot {
    /// Seeds the store, binds `127.0.0.1:port` and starts serving, on the system clock.
    ///
    /// # Errors
    /// When the socket cannot be bound or a thread cannot be spawned.
    pub fn start(config: MockConfig) -> Result<Self> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`start`](Self::start), with every "now" read from `clock`: rate-limit windows,
    /// the daily reset, OAuth token expiry, record timestamps, webhook `occurredAt` and
    /// signature timestamps. With a [`ManualClock`] a test moves time on instead of sleeping.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use hubspot_mock::{ManualClock, MockConfig, MockHubSpot};
    /// # fn demo() -> hubspot_mock::Result<()> {
    /// let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    /// let hubspot = MockHubSpot::start_with_clock(MockConfig::default(), clock.clone())?;
    /// // … 100 requests use up the 10-second window …
    /// clock.advance(Duration::from_secs(10)); // … and it is full again.
    /// # drop(hubspot); Ok(()) }
    /// ```
    ///
    /// # Errors
    /// When the socket cannot be bound or a thread cannot be spawned.
    pub fn start_with_clock(config: MockConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let mut store = Store::default();
        let first = store.seed(&[
            (Kind::Contact, config.seed_contacts),
            (Kind::Company, config.seed_companies),
            (Kind::Deal, config.seed_deals),
        ]);
        let mut associations = assoc::Associations::default();
        if config.seed_associations && config.seed_companies > 0 {
            associations.seed_contact_companies(
                first[0],
                config.seed_contacts,
                first[1],
                config.seed_companies,
            );
        }
        let limiter = Limiter::new(Limits {
            burst: config.burst,
            window: config.window,
            daily: config.daily,
            search_per_second: config.search_per_second,
        });
        let shared = Arc::new(Shared {
            token: config.token,
            data: Mutex::new(Data {
                clock,
                store,
                assoc: associations,
                limiter,
                next_correlation: 0,
                oauth: oauth::OAuth::new(
                    &config.client_id,
                    &config.client_secret,
                    &config.refresh_token,
                    &config.auth_code,
                    config.token_ttl,
                ),
                faults: faults::Faults::new(&config.faults),
                stats: faults::Stats::default(),
                outbox: Vec::new(),
                next_event_id: 1_000,
                webhooks_on: config.webhook.is_some(),
                webhook_url: None,
                clock_offset_ms: 0,
                workflows: workflows::State::new(config.workflows.clone()),
            }),
            webhook_tx: Mutex::new(None),
            client_secret: config.client_secret.clone(),
            dispatcher: workflows::Dispatcher::default(),
        });
        // Events queue in the channel until the emitter starts.
        let webhook = config.webhook.map(|wh| {
            let (tx, rx) = mpsc::channel();
            *lock(&shared.webhook_tx) = Some(tx);
            (wh, rx)
        });
        let handler_shared = Arc::clone(&shared);
        let server = Server::start("hubspot-mock", config.port, true, move |req, responder| {
            serve(&handler_shared, &req, responder);
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let emitter = match webhook {
            None => None,
            Some((wh, rx)) => {
                let (s, st) = (Arc::clone(&shared), Arc::clone(&stop));
                Some(
                    thread::Builder::new()
                        .name("hubspot-mock-webhooks".into())
                        .spawn(move || webhooks::run(&wh, &rx, &s, &st))?,
                )
            }
        };
        let mut dispatchers = Vec::new();
        for _ in 0..config.workflows.concurrency.max(1) {
            let s = Arc::clone(&shared);
            dispatchers.push(
                thread::Builder::new()
                    .name("hubspot-mock-workflows".into())
                    .spawn(move || workflows::run_dispatcher(&s))?,
            );
        }
        Ok(Self {
            shared,
            addr: server.addr(),
            server: Some(server),
            emitter,
            dispatchers,
            stop,
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash), to use as HubSpot's `https://api.hubapi.com`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The valid bearer token.
    pub fn token(&self) -> &str {
        &self.shared.token
    }

    /// Points webhook deliveries at `url` from now on (also `POST /__mock/webhook`): the target
    /// usually starts after the mock (a Worker that is given the mock's URL).
    pub fn set_webhook_target(&self, url: &str) {
        lock(&self.shared.data).webhook_url = Some(url.to_owned());
    }

    /// Enrolls objects in a workflow that runs a custom action (also `POST
    /// /__mock/workflows/enroll`, same body): `{"definitionId", "objectType", "objectId" |
    /// "objectIds", "inputFields"?, "count"?, "workflowId"?, "actionId"?}`. Returns the
    /// `callbackId`s; each execution request is sent to the definition's `actionUrl` from a
    /// dispatcher thread.
    ///
    /// # Errors
    /// The enrollment was refused (unknown or unpublished definition, object type not in
    /// `objectTypes`, unknown object, missing required or undeclared input): the message says
    /// why.
    pub fn enroll(&self, request: &Value) -> Result<Vec<String>> {
        let body = serde_json::to_vec(request)?;
        let resp = {
            let mut data = lock(&self.shared.data);
            workflows::enroll(&self.shared, &mut data, &body)
        };
        let v: Value = serde_json::from_slice(&resp.body)?;
        if resp.status != 200 {
            return Err(Error::new(format!(
                "enrollment refused ({}): {}",
                resp.status, v["message"]
            )));
        }
        Ok(v["callbackIds"]
            .as_array()
            .map(|ids| {
                ids.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The enrollments (also `GET /__mock/workflows/executions?…`): `query` is
    /// `callbackId=…&definitionId=…&state=…` or `""`; answers `{"executions": […], "counts":
    /// {state: n}, "nowMs"}`.
    pub fn workflow_executions(&self, query: &str) -> Value {
        let mut data = lock(&self.shared.data);
        let resp = workflows::executions(&mut data, query);
        serde_json::from_slice(&resp.body).unwrap_or(Value::Null)
    }

    /// Sends an execution's request once more, byte for byte (also `POST
    /// /__mock/workflows/redeliver`): HubSpot's retry of an execution whose answer it lost.
    /// Answers `{"status", "body"}` (the action's answer; `status` null and `error` when it did
    /// not answer); the execution's state does not change.
    ///
    /// # Errors
    /// No execution has that `callbackId`.
    pub fn redeliver(&self, callback_id: &str) -> Result<Value> {
        let body = serde_json::to_vec(&json!({ "callbackId": callback_id }))?;
        let resp = workflows::redeliver(&self.shared, &body);
        let v: Value = serde_json::from_slice(&resp.body)?;
        if resp.status == 200 {
            Ok(v)
        } else {
            Err(Error::new(format!(
                "redelivery refused ({}): {}",
                resp.status, v["message"]
            )))
        }
    }

    /// Moves the mock's clock on by `d` (also `POST /__mock/clock` `{"advanceMs"}`), whatever
    /// [`Clock`] it runs on: blocked executions expire, and so do OAuth tokens and rate-limit
    /// windows.
    pub fn advance_clock(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let mut data = lock(&self.shared.data);
        data.clock_offset_ms = data.clock_offset_ms.saturating_add(ms);
    }

    /// The developer API key the definitions API takes as `?hapikey=`.
    pub fn developer_api_key(&self) -> String {
        lock(&self.shared.data)
            .workflows
            .developer_api_key()
            .to_owned()
    }

    /// Blocks until the process is killed (for the `hubspot-mock` binary).
    pub fn serve_forever(self) {
        loop {
            thread::park();
        }
    }
}

impl Drop for MockHubSpot {
    fn drop(&mut self) {
        // Stop serving first, so no request queues a webhook event after the emitter is gone.
        drop(self.server.take());
        self.stop.store(true, Ordering::Relaxed);
        drop(lock(&self.shared.webhook_tx).take());
        if let Some(e) = self.emitter.take() {
            let _ = e.join();
        }
        // A dispatcher in the middle of an attempt finishes it first (≤ the action timeout).
        self.shared.dispatcher.stop();
        for d in self.dispatchers.drain(..) {
            let _ = d.join();
        }
    }
}

/// Answers one request ([`respond`]); a dropped connection is no answer.
fn serve(shared: &Shared, req: &Request, responder: &mut Responder<'_>) {
    let Some(mut resp) = respond(shared, req) else {
        return;
    };
    if resp.status != 204 && !resp.body.is_empty() {
        resp.headers
            .push(("Content-Type", "application/json;charset=utf-8".into()));
    }
    let _ = responder.send(&resp);
}

/// Routes one request: admin endpoints, injected faults, OAuth, then the API. `None` means
/// "drop the connection".
fn respond(shared: &Shared, req: &Request) -> Option<Response> {
    let path = req.target.split('?').next().unwrap_or("");
    if let Some(admin) = path.strip_prefix("/__mock/") {
        // Sends a request itself: must not hold the data lock meanwhile.
        if admin == "workflows/redeliver" && req.method == "POST" {
            return Some(workflows::redeliver(shared, &req.body));
        }
        let resp = admin_endpoint(shared, req, admin);
        flush_outbox(shared);
        return Some(resp);
    }
    let (fault, latency) = {
        let mut data = lock(&shared.data);
        data.stats.count(&req.method, path);
        if let Some(traceparent) = req.header("traceparent") {
            data.stats.traced(&req.method, path, traceparent);
        }
        (data.faults.pick(), data.faults.latency)
    };
    if !latency.is_zero() {
        thread::sleep(latency);
    }
    let resp = match fault {
        Some(Fault::Drop) => {
            lock(&shared.data).stats.dropped += 1;
            return None;
        }
        Some(Fault::Status {
            status,
            policy,
            retry_after,
        }) => api::injected(shared, status, policy.as_deref(), retry_after),
        None if workflows::is_definitions_path(path) => workflows::definitions(shared, req),
        None if path == "/oauth/v1/token" => {
            let (status, body) = if req.method == "POST" {
                let mut data = lock(&shared.data);
                let now = data.now_ms();
                data.oauth.token(&req.body, now)
            } else {
                (405, json!({"status": "error", "message": "POST only"}))
            };
            api::json_response(status, &body)
        }
        None => api::handle(shared, req),
    };
    flush_outbox(shared);
    Some(resp)
}

/// Hands the webhook events a request queued to the emitter thread.
fn flush_outbox(shared: &Shared) {
    let events = std::mem::take(&mut lock(&shared.data).outbox);
    if !events.is_empty() {
        if let Some(tx) = lock(&shared.webhook_tx).as_ref() {
            for e in events {
                let _ = tx.send(e);
            }
        }
    }
}

/// `/__mock/faults` (GET, POST), `/__mock/stats` (GET), `/__mock/reset-stats` (POST),
/// `/__mock/expire-tokens` (POST: every issued OAuth access token expires now),
/// `/__mock/refuse-tokens` (POST `{"refuse":bool}`: every OAuth access token, issued or to be
/// issued, gets 401 while set), `/__mock/restore` (POST `{"objectType","id"}`: the recycling
/// bin's restore, with its `*.restore` webhook), `/__mock/erase` (POST `{"objectType","id"}`:
/// the record and its associations are gone without a trace and without a webhook, as a
/// deletion whose notification was lost), `/__mock/webhook`
/// (POST `{"url":…}`: the webhook target from now on).
fn admin_endpoint(shared: &Shared, req: &Request, what: &str) -> Response {
    let mut data = lock(&shared.data);
    let data = &mut *data;
    match (req.method.as_str(), what) {
        ("GET", "stats") => {
            let mut stats = data
                .stats
                .to_json(data.oauth.refreshes, data.oauth.code_exchanges);
            stats["workflows"] = data.workflows.stats_json();
            api::json_response(200, &stats)
        }
        ("POST", "workflows/enroll") => workflows::enroll(shared, data, &req.body),
        ("GET", "workflows/executions") => {
            workflows::executions(data, req.target.split_once('?').map_or("", |(_, q)| q))
        }
        ("GET", "clock") => api::json_response(200, &json!({"nowMs": data.now_ms()})),
        ("POST", "clock") => {
            let advance = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v["advanceMs"].as_u64());
            match advance {
                Some(ms) => {
                    data.clock_offset_ms = data.clock_offset_ms.saturating_add(ms);
                    api::json_response(200, &json!({"nowMs": data.now_ms()}))
                }
                None => api::json_response(
                    400,
                    &json!({"status": "error", "message": "expected {\"advanceMs\":N}"}),
                ),
            }
        }
        ("POST", "reset-stats") => {
            data.stats = faults::Stats::default();
            data.workflows.reset_stats();
            data.oauth.refreshes = 0;
            data.oauth.code_exchanges = 0;
            api::json_response(200, &json!({"ok": true}))
        }
        ("POST", "expire-tokens") => {
            let now = data.now_ms();
            let expired = data.oauth.expire_all(now);
            api::json_response(200, &json!({ "expired": expired }))
        }
        ("POST", "refuse-tokens") => {
            let refuse = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v["refuse"].as_bool());
            match refuse {
                Some(refuse) => {
                    data.oauth.refuse_all = refuse;
                    api::json_response(200, &json!({ "refuse": refuse }))
                }
                None => api::json_response(
                    400,
                    &json!({"status": "error", "message": "expected {\"refuse\":true|false}"}),
                ),
            }
        }
        ("POST", "webhook") => {
            let url = serde_json::from_slice::<Value>(&req.body)
                .ok()
                .and_then(|v| v["url"].as_str().map(str::to_owned));
            match url {
                Some(url) => {
                    data.webhook_url = Some(url.clone());
                    api::json_response(200, &json!({ "url": url }))
                }
                None => api::json_response(
                    400,
                    &json!({"status": "error", "message": "expected {\"url\":\"…\"}"}),
                ),
            }
        }
        ("POST", "restore") => api::restore(data, &req.body),
        ("POST", "erase") => api::erase(data, &req.body),
        ("GET", "faults") => api::json_response(200, &data.faults.to_json()),
        ("POST", "faults") => {
            let applied = serde_json::from_slice::<Value>(&req.body)
                .map_err(|e| e.to_string())
                .and_then(|v| data.faults.apply(&v));
            match applied {
                Ok(()) => api::json_response(200, &data.faults.to_json()),
                Err(e) => api::json_response(400, &json!({"status": "error", "message": e})),
            }
        }
        _ => api::json_response(
            404,
            &json!({"status": "error", "message": "unknown admin endpoint"}),
        ),
    }
}
