//! A loopback HTTP server that behaves like HubSpot's CRM objects API (`/work/shared/HUBSPOT.md`
//! §4–§7): a drop-in base URL for any HubSpot client in tests.
//!
//! ```no_run
//! use hubspot_edge_tests::mock::{MockConfig, MockHubSpot};
//! # fn demo() -> hubspot_edge_tests::Result<()> {
//! let hubspot = MockHubSpot::start(MockConfig {
//!     seed_contacts: 1_000,
//!     ..MockConfig::default()
//! })?;
//! let url = format!("{}/crm/v3/objects/contacts?limit=100", hubspot.base_url());
//! // … send with `Authorization: Bearer <hubspot.token()>` …
//! # let _ = url; Ok(()) }
//! ```
//!
//! What it reproduces, and what not yet: `tests/src/mock/BEHAVIOURS.md`.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::Result;

mod api;
mod assoc;
mod faults;
mod limits;
mod oauth;
mod store;
mod time;
mod webhooks;

pub use faults::{parse_next_list, Fault, FaultConfig};
pub use oauth::TEST_CODE;
pub use webhooks::WebhookConfig;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_ops;

use limits::{Limiter, Limits};
use store::{Kind, Store};

/// The largest request body read.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Idle keep-alive connections are closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            port: 0,
            token: "pat-na1-mock-token".into(),
            seed_contacts: 0,
            seed_companies: 0,
            seed_deals: 0,
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
        }
    }
}

#[derive(Debug)]
struct Data {
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
}

#[derive(Debug, Default)]
struct Conns {
    stopping: bool,
    open: HashMap<u64, TcpStream>,
    next: u64,
    workers: Vec<JoinHandle<()>>,
}

#[derive(Debug)]
struct Shared {
    token: String,
    data: Mutex<Data>,
    conns: Mutex<Conns>,
    webhook_tx: Mutex<Option<Sender<Value>>>,
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
    accept: Option<JoinHandle<()>>,
    emitter: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl MockHubSpot {
    /// Seeds the store, binds `127.0.0.1:port` and starts serving.
    ///
    /// # Errors
    /// When the socket cannot be bound or a thread cannot be spawned.
    pub fn start(config: MockConfig) -> Result<Self> {
        let mut store = Store::default();
        store.seed(&[
            (Kind::Contact, config.seed_contacts),
            (Kind::Company, config.seed_companies),
            (Kind::Deal, config.seed_deals),
        ]);
        let limiter = Limiter::new(Limits {
            burst: config.burst,
            window: config.window,
            daily: config.daily,
            search_per_second: config.search_per_second,
        });
        let listener = TcpListener::bind(("127.0.0.1", config.port))?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            token: config.token,
            data: Mutex::new(Data {
                store,
                assoc: assoc::Associations::default(),
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
            }),
            conns: Mutex::new(Conns::default()),
            webhook_tx: Mutex::new(None),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let emitter = match config.webhook {
            None => None,
            Some(wh) => {
                let (tx, rx) = mpsc::channel();
                *lock(&shared.webhook_tx) = Some(tx);
                let (s, st) = (Arc::clone(&shared), Arc::clone(&stop));
                Some(
                    thread::Builder::new()
                        .name("hubspot-mock-webhooks".into())
                        .spawn(move || webhooks::run(&wh, &rx, &s, &st))?,
                )
            }
        };
        let accept_shared = Arc::clone(&shared);
        let accept = thread::Builder::new()
            .name("hubspot-mock-accept".into())
            .spawn(move || accept_loop(&listener, &accept_shared))?;
        Ok(Self {
            shared,
            addr,
            accept: Some(accept),
            emitter,
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

    /// Blocks until the process is killed (for the `hubspot-mock` binary).
    pub fn serve_forever(self) {
        loop {
            thread::park();
        }
    }
}

impl Drop for MockHubSpot {
    fn drop(&mut self) {
        let workers = {
            let mut c = lock(&self.shared.conns);
            c.stopping = true;
            for s in c.open.values() {
                let _ = s.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut c.workers)
        };
        // Wake the blocking accept() so the loop sees `stopping`.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        for w in workers {
            let _ = w.join();
        }
        let late = std::mem::take(&mut lock(&self.shared.conns).workers);
        for w in late {
            let _ = w.join();
        }
        self.stop.store(true, Ordering::Relaxed);
        drop(lock(&self.shared.webhook_tx).take());
        if let Some(e) = self.emitter.take() {
            let _ = e.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        let mut c = lock(&shared.conns);
        if c.stopping {
            return;
        }
        let Ok(stream) = conn else { continue };
        let id = c.next;
        c.next += 1;
        if let Ok(clone) = stream.try_clone() {
            c.open.insert(id, clone);
        }
        c.workers.retain(|w| !w.is_finished());
        let conn_shared = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("hubspot-mock-conn".into())
            .spawn(move || {
                serve(stream, &conn_shared);
                lock(&conn_shared.conns).open.remove(&id);
            });
        if let Ok(h) = spawned {
            c.workers.push(h);
        }
    }
}

/// One parsed HTTP request.
#[derive(Debug)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    keep_alive: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP response.
#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IDLE_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(msg) => {
                let resp = Response {
                    status: 400,
                    headers: Vec::new(),
                    body: msg.into_bytes(),
                };
                let _ = write_response(&mut writer, &resp, false);
                return;
            }
        };
        let Some(resp) = respond(shared, &req) else {
            // An injected dropped connection.
            let _ = writer.shutdown(Shutdown::Both);
            return;
        };
        if write_response(&mut writer, &resp, req.keep_alive).is_err() || !req.keep_alive {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// Reads one request; `Ok(None)` on a clean end of stream between requests.
fn read_request(reader: &mut BufReader<TcpStream>) -> std::result::Result<Option<Request>, String> {
    let mut line = String::new();
    let mut head_bytes = 0;
    // Tolerate blank lines before the request line (RFC 9112 §2.2).
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        if n == 0 {
            return Ok(None);
        }
        head_bytes += n;
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target), version) = (parts.next(), parts.next(), parts.next()) else {
        return Err("bad request line".into());
    };
    let (method, target) = (method.to_owned(), target.to_owned());
    let http10 = version == Some("HTTP/1.0");
    let mut headers = Vec::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
        head_bytes += n;
        if n == 0 || head_bytes > MAX_HEAD_BYTES {
            return Err("truncated or oversized head".into());
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let connection = get("connection").map(str::to_ascii_lowercase);
    let keep_alive = match connection.as_deref() {
        Some(c) if c.contains("close") => false,
        Some(c) if c.contains("keep-alive") => true,
        _ => !http10,
    };
    if get("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        // curl waits a second for this before sending bodies over 1 KiB.
        let w = reader.get_mut();
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .and_then(|()| w.flush())
            .map_err(|e| e.to_string())?;
    }
    let chunked =
        get("transfer-encoding").is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let len: usize = match get("content-length") {
            Some(v) => v.parse().map_err(|_| "bad content-length".to_owned())?,
            None => 0,
        };
        if len > MAX_BODY_BYTES {
            return Err("body too large".into());
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).map_err(|e| e.to_string())?;
        body
    };
    Ok(Some(Request {
        method,
        target,
        headers,
        body,
        keep_alive,
    }))
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> std::result::Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let size_hex = line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| "bad chunk size".to_owned())?;
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(|e| e.to_string())?;
                if n == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY_BYTES {
            return Err("body too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| e.to_string())?;
        let mut crlf = [0; 2];
        reader.read_exact(&mut crlf).map_err(|e| e.to_string())?;
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        207 => "Multi-Status",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        423 => "Locked",
        429 => "Too Many Requests",
        477 => "Migration in Progress",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

fn write_response(w: &mut TcpStream, resp: &Response, keep_alive: bool) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if resp.status != 204 {
        if !resp.body.is_empty() {
            head.push_str("Content-Type: application/json;charset=utf-8\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut out = head.into_bytes();
    if resp.status != 204 {
        out.extend_from_slice(&resp.body);
    }
    w.write_all(&out)?;
    w.flush()
}

/// Routes one request: admin endpoints, injected faults, OAuth, then the API. `None` means
/// "drop the connection".
fn respond(shared: &Shared, req: &Request) -> Option<Response> {
    let path = req.target.split('?').next().unwrap_or("");
    if let Some(admin) = path.strip_prefix("/__mock/") {
        return Some(admin_endpoint(shared, req, admin));
    }
    let (fault, latency) = {
        let mut data = lock(&shared.data);
        data.stats.count(&req.method, path);
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
        None if path == "/oauth/v1/token" => {
            let (status, body) = if req.method == "POST" {
                lock(&shared.data).oauth.token(&req.body, Instant::now())
            } else {
                (405, json!({"status": "error", "message": "POST only"}))
            };
            api::json_response(status, &body)
        }
        None => api::handle(shared, req),
    };
    let events = std::mem::take(&mut lock(&shared.data).outbox);
    if !events.is_empty() {
        if let Some(tx) = lock(&shared.webhook_tx).as_ref() {
            for e in events {
                let _ = tx.send(e);
            }
        }
    }
    Some(resp)
}

/// `/__mock/faults` (GET, POST), `/__mock/stats` (GET), `/__mock/reset-stats` (POST),
/// `/__mock/expire-tokens` (POST: every issued OAuth access token expires now).
fn admin_endpoint(shared: &Shared, req: &Request, what: &str) -> Response {
    let mut data = lock(&shared.data);
    let data = &mut *data;
    match (req.method.as_str(), what) {
        ("GET", "stats") => api::json_response(
            200,
            &data
                .stats
                .to_json(data.oauth.refreshes, data.oauth.code_exchanges),
        ),
        ("POST", "reset-stats") => {
            data.stats = faults::Stats::default();
            data.oauth.refreshes = 0;
            data.oauth.code_exchanges = 0;
            api::json_response(200, &json!({"ok": true}))
        }
        ("POST", "expire-tokens") => {
            let expired = data.oauth.expire_all(Instant::now());
            api::json_response(200, &json!({ "expired": expired }))
        }
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
