//! The user's endpoint: a loopback HTTP server that verifies each delivery's Standard Webhooks
//! signature with the core, answers as scripted, and records everything.
//!
//! ```no_run
//! use std::time::Duration;
//! use hubspot_edge_tests::{Behavior, Destination};
//! # fn demo() -> hubspot_edge_tests::Result<()> {
//! let dest = Destination::start("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")?;
//! // Object 42: first attempt 500, second 429 with Retry-After: 1, then 200 (the default).
//! dest.script(42, vec![Behavior::Status(500), Behavior::StatusWithRetryAfter(429, 1)]);
//! // … make the Worker forward an event for object 42 to dest.url() …
//! let ok = dest.wait_for_ok(&[42], Duration::from_secs(30))?;
//! assert_eq!(dest.deliveries_for(42).len(), 3);
//! # let _ = ok; Ok(()) }
//! ```
//!
//! One `Destination` is shared by scenarios running in parallel, so scripts and queries are
//! per object id: give each scenario its own ids ([`unique_id`](crate::unique_id)).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hubspot_edge_core::outbound::{
    WebhookSecret, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP,
};
use serde_json::Value;

use crate::server::{Request, Responder, Response, Server};
use crate::{now_ms, now_secs, poll_until, verbose, Error, Result};

/// The largest request body the destination reads.
pub use crate::server::MAX_BODY_BYTES;

/// How far `webhook-timestamp` may be from now (the Standard Webhooks default).
pub const TIMESTAMP_TOLERANCE_SECS: u64 = 300;
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// How the destination answers one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    /// Answer with this status.
    Status(u16),
    /// Answer with this status and `Retry-After: <secs>`.
    StatusWithRetryAfter(u16, u64),
    /// Close the connection after reading the request, without answering.
    Drop,
    /// Hold the connection open this long, then close it without answering (a timeout).
    Hang(Duration),
    /// Wait this long, then answer with this status (a slow endpoint).
    Delayed(Duration, u16),
    /// Answer with this (3xx) status and `Location: `[`REDIRECT_PATH`] (relative: this destination), so
    /// a client that follows the redirect shows up as a request to that path.
    Redirect(u16),
}

/// Where [`Behavior::Redirect`] points.
pub const REDIRECT_PATH: &str = "/moved-here";

impl Behavior {
    /// The status this behaviour answers with, if it answers.
    pub fn status(self) -> Option<u16> {
        match self {
            Self::Status(s)
            | Self::StatusWithRetryAfter(s, _)
            | Self::Delayed(_, s)
            | Self::Redirect(s) => Some(s),
            Self::Drop | Self::Hang(_) => None,
        }
    }
}

/// One request the destination received.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Arrival order, from 0.
    pub seq: usize,
    /// The HTTP method.
    pub method: String,
    /// The request target (path and query).
    pub path: String,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// `webhook-id`.
    pub webhook_id: Option<String>,
    /// `webhook-timestamp`, as sent.
    pub webhook_timestamp: Option<String>,
    /// The body bytes.
    pub raw_body: Vec<u8>,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body's `objectId` (a decimal string in `hubspot-edge.event.v1`; numbers accepted).
    pub object_id: Option<u64>,
    /// Whether the Standard Webhooks signature verified.
    pub verified: bool,
    /// Why it did not verify.
    pub verify_error: Option<String>,
    /// What the destination did (`Status(401)` for unverified requests).
    pub behavior: Behavior,
    /// The status actually written, once written; `None` while pending or for
    /// [`Behavior::Drop`] / [`Behavior::Hang`].
    pub answered: Option<u16>,
    /// When the request (head and body) had been read.
    pub received_at: Instant,
    /// The same, in epoch milliseconds.
    pub received_at_ms: u64,
}

impl Delivery {
    /// Verified and answered 2xx: the endpoint accepted it.
    pub fn is_ok(&self) -> bool {
        self.verified && self.answered.is_some_and(|s| (200..300).contains(&s))
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn summary(&self) -> String {
        format!(
            "#{} {} {} id={} object={:?} verified={} behavior={:?} answered={:?}",
            self.seq,
            self.method,
            self.path,
            self.webhook_id.as_deref().unwrap_or("-"),
            self.object_id,
            self.verified,
            self.behavior,
            self.answered
        )
    }
}

#[derive(Debug)]
struct State {
    deliveries: Vec<Delivery>,
    scripts: HashMap<u64, VecDeque<Behavior>>,
    default: Behavior,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    secret: WebhookSecret,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent in a way that matters
        // to a test; keep serving rather than cascading the poison.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A loopback HTTP server standing in for the user's webhook endpoint. Stops on drop.
#[derive(Debug)]
pub struct Destination {
    shared: Arc<Shared>,
    server: Server,
}

impl Destination {
    /// Starts on `127.0.0.1:<random port>`, verifying with `secret` (`whsec_…`).
    ///
    /// # Errors
    /// When the secret is not `whsec_<base64>` or no socket can be bound.
    pub fn start(secret: &str) -> Result<Self> {
        let secret = WebhookSecret::parse(secret)
            .map_err(|e| Error::new(format!("destination secret: {e}")))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                deliveries: Vec::new(),
                scripts: HashMap::new(),
                default: Behavior::Status(200),
            }),
            secret,
        });
        let handler_shared = Arc::clone(&shared);
        // One request per connection, closed after it (answered or not).
        let server = Server::start("destination", 0, false, move |request, responder| {
            serve(&handler_shared, request, responder);
        })?;
        Ok(Self { shared, server })
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr())
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Sets how requests for `object_id` are answered, one behaviour per request in order
    /// (replacing any earlier script for it). Once used up, requests get the default.
    pub fn script(&self, object_id: u64, responses: Vec<Behavior>) {
        self.shared
            .lock()
            .scripts
            .insert(object_id, responses.into());
    }

    /// How requests with no (remaining) script are answered; initially `Status(200)`.
    /// Shared by all scenarios: prefer [`script`](Self::script).
    pub fn set_default(&self, behavior: Behavior) {
        self.shared.lock().default = behavior;
    }

    /// Every request so far, in arrival order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Every request so far for `object_id`, in arrival order.
    pub fn deliveries_for(&self, object_id: u64) -> Vec<Delivery> {
        self.shared
            .lock()
            .deliveries
            .iter()
            .filter(|d| d.object_id == Some(object_id))
            .cloned()
            .collect()
    }

    /// The requests for `object_id` that verified and were answered 2xx.
    pub fn delivered_ok_for(&self, object_id: u64) -> Vec<Delivery> {
        self.shared
            .lock()
            .deliveries
            .iter()
            .filter(|d| d.object_id == Some(object_id) && d.is_ok())
            .cloned()
            .collect()
    }

    /// How many times each `webhook-id` was accepted (verified and answered 2xx); a count
    /// above 1 is a duplicate delivery.
    pub fn count_ok_by_webhook_id(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for d in self.shared.lock().deliveries.iter().filter(|d| d.is_ok()) {
            if let Some(id) = &d.webhook_id {
                *counts.entry(id.clone()).or_insert(0) += 1;
            }
        }
        counts
    }

    /// Waits until every one of `object_ids` has an accepted delivery; returns the first
    /// accepted delivery of each, in the order of `object_ids`.
    ///
    /// # Errors
    /// On timeout, listing what did arrive for the missing ids.
    pub fn wait_for_ok(&self, object_ids: &[u64], timeout: Duration) -> Result<Vec<Delivery>> {
        let what = format!("accepted deliveries for objects {object_ids:?}");
        poll_until(&what, timeout, POLL_INTERVAL, || {
            let state = self.shared.lock();
            object_ids
                .iter()
                .map(|id| {
                    state
                        .deliveries
                        .iter()
                        .find(|d| d.object_id == Some(*id) && d.is_ok())
                        .cloned()
                })
                .collect::<Option<Vec<_>>>()
        })
        .map_err(|e| self.explain(e, object_ids))
    }

    /// Waits until `done` holds for the deliveries of `object_id` (e.g. "three attempts");
    /// returns them.
    ///
    /// # Errors
    /// On timeout, listing what did arrive for the id.
    pub fn wait_for_deliveries(
        &self,
        object_id: u64,
        timeout: Duration,
        what: &str,
        mut done: impl FnMut(&[Delivery]) -> bool,
    ) -> Result<Vec<Delivery>> {
        poll_until(what, timeout, POLL_INTERVAL, || {
            let ds = self.deliveries_for(object_id);
            done(&ds).then_some(ds)
        })
        .map_err(|e| self.explain(e, &[object_id]))
    }

    /// Waits until `done` holds for all deliveries so far; returns them.
    ///
    /// # Errors
    /// On timeout.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Delivery]) -> bool,
    ) -> Result<Vec<Delivery>> {
        poll_until(what, timeout, POLL_INTERVAL, || {
            let ds = self.deliveries();
            done(&ds).then_some(ds)
        })
    }

    /// A one-line-per-request description of everything received for `object_ids` (all
    /// requests when empty), for failure messages.
    pub fn describe(&self, object_ids: &[u64]) -> String {
        let state = self.shared.lock();
        let lines: Vec<String> = state
            .deliveries
            .iter()
            .filter(|d| {
                object_ids.is_empty() || d.object_id.is_some_and(|o| object_ids.contains(&o))
            })
            .map(Delivery::summary)
            .collect();
        if lines.is_empty() {
            "(nothing received)".into()
        } else {
            lines.join("\n")
        }
    }

    fn explain(&self, e: Error, object_ids: &[u64]) -> Error {
        Error::new(format!(
            "{e}; destination received:\n{}",
            self.describe(object_ids)
        ))
    }
}

/// Records, verifies and answers one delivery as scripted.
fn serve(shared: &Shared, request: Request, responder: &mut Responder<'_>) {
    let received_at = Instant::now();
    let received_at_ms = now_ms();
    let header = |name: &str| request.header(name).map(str::to_owned);
    let webhook_id = header(HEADER_WEBHOOK_ID);
    let webhook_timestamp = header(HEADER_WEBHOOK_TIMESTAMP);
    let signature = header(HEADER_WEBHOOK_SIGNATURE);
    let verify = match (&webhook_id, &webhook_timestamp, &signature) {
        (Some(id), Some(ts), Some(sig)) => shared
            .secret
            .verify(
                id,
                ts,
                sig,
                &request.body,
                now_secs(),
                TIMESTAMP_TOLERANCE_SECS,
            )
            .map_err(|e| e.to_string()),
        _ => Err("missing webhook-id, webhook-timestamp or webhook-signature".to_owned()),
    };
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    let object_id = match body.get("objectId") {
        Some(Value::String(s)) => s.parse().ok(),
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    };

    let (seq, behavior) = {
        let mut state = shared.lock();
        let behavior = if verify.is_err() {
            Behavior::Status(401)
        } else {
            let default = state.default;
            object_id
                .and_then(|id| state.scripts.get_mut(&id))
                .and_then(VecDeque::pop_front)
                .unwrap_or(default)
        };
        let seq = state.deliveries.len();
        state.deliveries.push(Delivery {
            seq,
            method: request.method,
            path: request.target,
            headers: request.headers,
            webhook_id,
            webhook_timestamp,
            raw_body: request.body,
            body,
            object_id,
            verified: verify.is_ok(),
            verify_error: verify.err(),
            behavior,
            answered: None,
            received_at,
            received_at_ms,
        });
        (seq, behavior)
    };
    if verbose() {
        let state = shared.lock();
        if let Some(d) = state.deliveries.get(seq) {
            eprintln!("[destination] {}", d.summary());
        }
    }

    // Waits end early when the destination stops.
    let mut location = None;
    let answer = match behavior {
        Behavior::Status(s) => Some((s, None)),
        Behavior::StatusWithRetryAfter(s, secs) => Some((s, Some(secs))),
        Behavior::Drop => None,
        Behavior::Hang(d) => {
            responder.pause(d);
            None
        }
        Behavior::Delayed(d, s) => responder.pause(d).then_some((s, None)),
        Behavior::Redirect(s) => {
            location = Some(REDIRECT_PATH.to_owned());
            Some((s, None))
        }
    };
    if let Some((status, retry_after)) = answer {
        let mut headers = vec![("content-type", "text/plain".to_owned())];
        headers.extend(retry_after.map(|secs| ("retry-after", secs.to_string())));
        headers.extend(location.map(|l| ("location", l)));
        let response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        // Recorded before the write, so a client that has the response also sees it here;
        // taken back if the write fails.
        set_answered(shared, seq, Some(status));
        if responder.send(&response).is_err() {
            set_answered(shared, seq, None);
        }
    }
    // The server then closes the connection (without an answer: abruptly), so the client sees
    // it end rather than a stall.
}

fn set_answered(shared: &Shared, seq: usize, status: Option<u16>) {
    if let Some(d) = shared.lock().deliveries.get_mut(seq) {
        d.answered = status;
    }
}

#[cfg(test)]
mod tests {
    use std::thread;

    use super::*;
    use crate::http;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn deliver(dest: &Destination, id: &str, body: &str, secret: &str) -> http::HttpResponse {
        let ts = now_secs();
        let sig = WebhookSecret::parse(secret)
            .unwrap()
            .sign(id, ts, body.as_bytes());
        let ts = ts.to_string();
        http::request(
            "POST",
            &dest.url(),
            &[
                ("content-type", "application/json"),
                ("webhook-id", id),
                ("webhook-timestamp", &ts),
                ("webhook-signature", &sig),
            ],
            Some(body.as_bytes()),
        )
        .unwrap()
    }

    #[test]
    fn verifies_signatures_and_rejects_bad_ones() {
        let dest = Destination::start(SECRET).unwrap();
        let body = r#"{"schema":"hubspot-edge.event.v1","objectId":"123"}"#;
        assert_eq!(deliver(&dest, "msg_1", body, SECRET).status, 200);
        let other = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert_eq!(deliver(&dest, "msg_2", body, other).status, 401);
        let unsigned = http::post(&dest.url(), body.as_bytes(), None).unwrap();
        assert_eq!(unsigned.status, 401);

        let all = dest.deliveries();
        assert_eq!(all.len(), 3);
        assert!(all[0].verified && all[0].is_ok());
        assert_eq!(all[0].object_id, Some(123));
        assert_eq!(all[0].webhook_id.as_deref(), Some("msg_1"));
        assert_eq!(all[0].body["schema"], "hubspot-edge.event.v1");
        assert!(!all[1].verified);
        assert_eq!(all[1].answered, Some(401));
        assert_eq!(
            all[1].verify_error.as_deref(),
            Some("no webhook signature matched")
        );
        assert!(!all[2].verified);
        assert_eq!(dest.delivered_ok_for(123).len(), 1);
        assert_eq!(dest.count_ok_by_webhook_id().get("msg_1"), Some(&1));
        assert_eq!(dest.count_ok_by_webhook_id().get("msg_2"), None);
    }

    #[test]
    fn scripted_sequence_then_default() {
        let dest = Destination::start(SECRET).unwrap();
        dest.script(
            7,
            vec![
                Behavior::Status(500),
                Behavior::StatusWithRetryAfter(429, 3),
            ],
        );
        let body = r#"{"objectId":"7"}"#;
        assert_eq!(deliver(&dest, "a", body, SECRET).status, 500);
        let r = deliver(&dest, "a", body, SECRET);
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("3"));
        assert_eq!(deliver(&dest, "a", body, SECRET).status, 200);
        assert_eq!(deliver(&dest, "a", body, SECRET).status, 200);
        // Unscripted objects and objects with no id get the default.
        dest.set_default(Behavior::Status(503));
        assert_eq!(
            deliver(&dest, "b", r#"{"objectId":"8"}"#, SECRET).status,
            503
        );
        assert_eq!(deliver(&dest, "c", r#"{"x":1}"#, SECRET).status, 503);

        let ok = dest.wait_for_ok(&[7], Duration::from_secs(5)).unwrap();
        assert_eq!(ok[0].seq, 2);
        assert_eq!(dest.delivered_ok_for(7).len(), 2);
        assert_eq!(dest.count_ok_by_webhook_id().get("a"), Some(&2));
        let statuses: Vec<_> = dest.deliveries_for(7).iter().map(|d| d.answered).collect();
        assert_eq!(statuses, [Some(500), Some(429), Some(200), Some(200)]);
        let err = dest
            .wait_for_ok(&[8], Duration::from_millis(50))
            .unwrap_err();
        assert!(err.message().contains("answered=Some(503)"), "{err}");
    }

    #[test]
    fn drop_and_hang_close_without_answering() {
        let dest = Destination::start(SECRET).unwrap();
        dest.script(
            9,
            vec![Behavior::Drop, Behavior::Hang(Duration::from_millis(200))],
        );
        let body = br#"{"objectId":"9"}"#;
        let ts = now_secs();
        let sig = WebhookSecret::parse(SECRET).unwrap().sign("d", ts, body);
        let raw = format!(
            "POST /hook HTTP/1.1\r\nhost: x\r\nwebhook-id: d\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {sig}\r\ncontent-length: {}\r\n\r\n{}",
            body.len(),
            String::from_utf8_lossy(body)
        );
        let host = dest.addr().to_string();
        let out = http::raw_exchange(&host, raw.as_bytes(), Duration::from_secs(5)).unwrap();
        assert!(out.is_empty(), "{}", String::from_utf8_lossy(&out));
        let started = Instant::now();
        let out = http::raw_exchange(&host, raw.as_bytes(), Duration::from_secs(5)).unwrap();
        assert!(out.is_empty());
        assert!(started.elapsed() >= Duration::from_millis(200));
        // Chunked bodies are read too.
        let chunked = format!(
            "POST /hook HTTP/1.1\r\nhost: x\r\nwebhook-id: d\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {sig}\r\ntransfer-encoding: chunked\r\n\r\n5\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
            String::from_utf8_lossy(&body[..5]),
            body.len() - 5,
            String::from_utf8_lossy(&body[5..])
        );
        let out = http::raw_exchange(&host, chunked.as_bytes(), Duration::from_secs(5)).unwrap();
        assert!(String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200 "));
        let ds = dest.deliveries_for(9);
        assert_eq!(ds.len(), 3);
        assert_eq!(ds[0].answered, None);
        assert_eq!(ds[1].answered, None);
        assert!(ds[2].is_ok());
    }

    #[test]
    fn drop_interrupts_a_hang() {
        let dest = Destination::start(SECRET).unwrap();
        dest.set_default(Behavior::Hang(Duration::from_secs(600)));
        let body = br#"{"objectId":"1"}"#;
        let ts = now_secs();
        let sig = WebhookSecret::parse(SECRET).unwrap().sign("h", ts, body);
        let host = dest.addr().to_string();
        let raw = format!(
            "POST /hook HTTP/1.1\r\nwebhook-id: h\r\nwebhook-timestamp: {ts}\r\nwebhook-signature: {sig}\r\ncontent-length: {}\r\n\r\n{}",
            body.len(),
            String::from_utf8_lossy(body)
        );
        let hanging = thread::spawn(move || {
            http::raw_exchange(&host, raw.as_bytes(), Duration::from_secs(60))
        });
        dest.wait_for_deliveries(1, Duration::from_secs(5), "the hanging request", |d| {
            !d.is_empty()
        })
        .unwrap();
        let started = Instant::now();
        drop(dest);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(hanging.join().unwrap().unwrap().is_empty());
    }
}
