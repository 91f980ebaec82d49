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

/// A seeded share of failing answers, for load runs ([`Destination::set_faults`]).
///
/// Each request draws its answer from `(seed, object, attempt)`: the object is the body's
/// `objectId` (else a hash of the `webhook-id`), the attempt is how many requests that
/// `webhook-id` had before. The same run (seed, objects, order of attempts per id) therefore
/// gets the same failures, whatever the interleaving of requests across connections. Shares
/// are per mille of requests; the rest get the default answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Faults {
    /// Seed of the draw.
    pub seed: u64,
    /// Answered 500, 502, 503 or 504 (drawn too).
    pub server_error_per_mille: u32,
    /// Answered 429 with `Retry-After: retry_after_secs`.
    pub too_many_requests_per_mille: u32,
    /// The `Retry-After` of those 429s, in seconds.
    pub retry_after_secs: u64,
    /// Answered 200 after `slow`.
    pub slow_per_mille: u32,
    /// How long a slow answer takes.
    pub slow: Duration,
}

impl Faults {
    /// The failing answer request number `nth` (from 0) for `object` gets, or `None` for the
    /// default answer.
    #[must_use]
    pub fn pick(&self, object: u64, nth: u32) -> Option<Behavior> {
        let h = splitmix64(self.seed ^ splitmix64(object ^ splitmix64(u64::from(nth))));
        // The low bits pick the kind, the high bits the 5xx status.
        let r = u32::try_from(h % 1000).unwrap_or(0);
        let server_error = self.server_error_per_mille;
        let too_many = server_error + self.too_many_requests_per_mille;
        let slow = too_many + self.slow_per_mille;
        if r < server_error {
            let status = [500, 502, 503, 504][usize::try_from(h >> 62).unwrap_or(0)];
            Some(Behavior::Status(status))
        } else if r < too_many {
            Some(Behavior::StatusWithRetryAfter(429, self.retry_after_secs))
        } else if r < slow {
            Some(Behavior::Delayed(self.slow, 200))
        } else {
            None
        }
    }
}

/// A window in which every verified request gets the same answer (an outage of the
/// endpoint), whatever its script or [`Faults`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When it starts.
    pub start: Instant,
    /// When it ends (exclusive).
    pub end: Instant,
    /// The answer meanwhile (e.g. `Status(503)` or `Drop`).
    pub behavior: Behavior,
}

impl Outage {
    /// The outage's answer for a request read at `at`, if the outage covers it.
    #[must_use]
    pub fn behavior_at(&self, at: Instant) -> Option<Behavior> {
        (self.start <= at && at < self.end).then_some(self.behavior)
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash of `x` (Steele, Lea, Flood 2014), for
/// seeded draws without a random-number crate.
#[must_use]
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a of `s`: a stable 64-bit key for a `webhook-id` without an object.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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
    /// Seeded failures for requests with no (remaining) script ([`Destination::set_faults`]).
    faults: Option<Faults>,
    /// A window in which every verified request gets one answer ([`Destination::schedule_outage`]).
    outage: Option<Outage>,
    /// How many requests each `webhook-id` has had so far (the attempt index the seeded
    /// failures are drawn for).
    requests_by_id: HashMap<String, u32>,
}

/// Called with each request once it has been answered (or left unanswered), in arrival order
/// per connection; the `receiver` binary prints deliveries with it.
pub type Observer = Arc<dyn Fn(&Delivery) + Send + Sync>;

struct Shared {
    state: Mutex<State>,
    secret: WebhookSecret,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state", &self.state)
            .field("observer", &self.observer.is_some())
            .finish_non_exhaustive()
    }
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
        Self::start_on(0, secret, None)
    }

    /// Starts on `127.0.0.1:port` (0: a random port), verifying with `secret`, and calls
    /// `observer` with each request once it is answered.
    ///
    /// # Errors
    /// When the secret is not `whsec_<base64>` or the port cannot be bound.
    pub fn start_on(port: u16, secret: &str, observer: Option<Observer>) -> Result<Self> {
        let secret = WebhookSecret::parse(secret)
            .map_err(|e| Error::new(format!("destination secret: {e}")))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                deliveries: Vec::new(),
                scripts: HashMap::new(),
                default: Behavior::Status(200),
                faults: None,
                outage: None,
                requests_by_id: HashMap::new(),
            }),
            secret,
            observer,
        });
        let handler_shared = Arc::clone(&shared);
        // One request per connection, closed after it (answered or not).
        let server = Server::start("destination", port, false, move |request, responder| {
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

    /// Answers a seeded share of requests with failures (see [`Faults`]); requests with a
    /// script are answered as scripted. `None` turns it off.
    pub fn set_faults(&self, faults: Option<Faults>) {
        self.shared.lock().faults = faults;
    }

    /// From `start`, for `duration`, answers every verified request with `behavior` (an
    /// outage), replacing any earlier one. Scripts and [`Faults`] are not consumed meanwhile.
    pub fn schedule_outage(&self, start: Instant, duration: Duration, behavior: Behavior) {
        self.shared.lock().outage = Some(Outage {
            start,
            end: start + duration,
            behavior,
        });
    }

    /// Cancels the outage, if any.
    pub fn clear_outage(&self) {
        self.shared.lock().outage = None;
    }

    /// How many requests arrived so far (the `seq` the next one gets).
    pub fn request_count(&self) -> usize {
        self.shared.lock().deliveries.len()
    }

    /// Runs `f` over every request so far, in arrival order, without copying them (for
    /// polling a long run); the destination waits meanwhile, so keep `f` short.
    pub fn with_deliveries<R>(&self, f: impl FnOnce(&[Delivery]) -> R) -> R {
        f(&self.shared.lock().deliveries)
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
        let nth = webhook_id.as_ref().map_or(0, |id| {
            let n = state.requests_by_id.entry(id.clone()).or_insert(0);
            *n += 1;
            *n - 1
        });
        let behavior = if verify.is_err() {
            Behavior::Status(401)
        } else if let Some(b) = state.outage.and_then(|o| o.behavior_at(received_at)) {
            b
        } else {
            let default = state.default;
            let faults = state.faults;
            object_id
                .and_then(|id| state.scripts.get_mut(&id))
                .and_then(VecDeque::pop_front)
                .or_else(|| {
                    let key = object_id.unwrap_or_else(|| webhook_id.as_deref().map_or(0, fnv1a));
                    faults.and_then(|f| f.pick(key, nth))
                })
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
    if let Some(observer) = &shared.observer {
        let delivery = shared.lock().deliveries.get(seq).cloned();
        if let Some(d) = delivery {
            observer(&d);
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
    fn seeded_faults_are_reproducible_and_in_proportion() {
        let faults = Faults {
            seed: 7,
            server_error_per_mille: 50,
            too_many_requests_per_mille: 30,
            retry_after_secs: 2,
            slow_per_mille: 20,
            slow: Duration::from_millis(300),
        };
        let draws: Vec<_> = (0..20_000u64)
            .map(|o| faults.pick(1_000 + o, u32::try_from(o % 3).unwrap()))
            .collect();
        let again: Vec<_> = (0..20_000u64)
            .map(|o| faults.pick(1_000 + o, u32::try_from(o % 3).unwrap()))
            .collect();
        assert_eq!(draws, again);
        let share = |f: &dyn Fn(&Behavior) -> bool| {
            draws.iter().flatten().filter(|b| f(b)).count() as f64 / draws.len() as f64
        };
        let server = share(&|b| matches!(b, Behavior::Status(500..=504)));
        let too_many = share(&|b| *b == Behavior::StatusWithRetryAfter(429, 2));
        let slow = share(&|b| *b == Behavior::Delayed(Duration::from_millis(300), 200));
        assert!((0.04..0.06).contains(&server), "{server}");
        assert!((0.02..0.04).contains(&too_many), "{too_many}");
        assert!((0.013..0.027).contains(&slow), "{slow}");
        // All four 5xx statuses occur; another seed draws other requests; a later attempt of
        // the same object is drawn afresh.
        for status in [500, 502, 503, 504] {
            assert!(draws.contains(&Some(Behavior::Status(status))), "{status}");
        }
        let other = Faults { seed: 8, ..faults };
        assert!((0..1_000u64).any(|o| other.pick(o, 0) != faults.pick(o, 0)));
        assert!((0..1_000u64).any(|o| faults.pick(o, 1) != faults.pick(o, 0)));
        let none = Faults {
            server_error_per_mille: 0,
            too_many_requests_per_mille: 0,
            slow_per_mille: 0,
            ..faults
        };
        assert!((0..1_000u64).all(|o| none.pick(o, 0).is_none()));
    }

    #[test]
    fn faults_count_attempts_per_webhook_id_and_an_outage_overrides_everything() {
        let dest = Destination::start(SECRET).unwrap();
        // Every request fails: the first with 5xx, whatever the draw.
        dest.set_faults(Some(Faults {
            seed: 1,
            server_error_per_mille: 1000,
            too_many_requests_per_mille: 0,
            retry_after_secs: 1,
            slow_per_mille: 0,
            slow: Duration::ZERO,
        }));
        let body = r#"{"objectId":"11"}"#;
        let first = deliver(&dest, "f", body, SECRET).status;
        assert!((500..=504).contains(&first), "{first}");
        // A script still wins over the faults.
        dest.script(11, vec![Behavior::Status(202)]);
        assert_eq!(deliver(&dest, "f", body, SECRET).status, 202);
        dest.set_faults(None);
        assert_eq!(deliver(&dest, "f", body, SECRET).status, 200);

        dest.script(11, vec![Behavior::Status(201)]);
        dest.schedule_outage(
            Instant::now(),
            Duration::from_secs(60),
            Behavior::Status(503),
        );
        assert_eq!(deliver(&dest, "g", body, SECRET).status, 503);
        // Unverified requests are still refused as such.
        assert_eq!(
            deliver(&dest, "g", body, "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").status,
            401
        );
        dest.clear_outage();
        // The script was not consumed by the outage.
        assert_eq!(deliver(&dest, "g", body, SECRET).status, 201);
        // An outage in the future does not apply yet.
        dest.schedule_outage(
            Instant::now() + Duration::from_secs(60),
            Duration::from_secs(1),
            Behavior::Drop,
        );
        assert_eq!(deliver(&dest, "g", body, SECRET).status, 200);

        assert_eq!(dest.request_count(), 7);
        let answers = dest.with_deliveries(|ds| ds.iter().map(|d| d.answered).collect::<Vec<_>>());
        assert_eq!(
            answers[1..],
            [
                Some(202),
                Some(200),
                Some(503),
                Some(401),
                Some(201),
                Some(200)
            ]
        );
        let counts = dest.shared.lock().requests_by_id.clone();
        assert_eq!(counts.get("f"), Some(&3));
        assert_eq!(counts.get("g"), Some(&4));
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
