//! HubSpot's workflow engine for custom workflow actions (docs/hubspot.md §3):
//! action definitions (`/automation/v4/actions/{appId}…`, developer API key), enrollments that
//! call the definition's `actionUrl` with a v2-signed execution request and honour the answer
//! (`SUCCESS`, `FAIL_CONTINUE`, `BLOCK` with an expiration on the mock's clock, 4xx failed, 429
//! and 5xx and timeouts retried with backoff), and the callback completion endpoints.
//!
//! Documentation followed:
//! <https://developers.hubspot.com/docs/api/automation/custom-workflow-actions> (request, answer,
//! `BLOCK`, retries), <https://developers.hubspot.com/docs/api-reference/automation-actions-v4-v4/guide>
//! (definitions, callbacks) and
//! <https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests> (v2).
//! What is chosen where HubSpot documents nothing is said in `tests/mock/BEHAVIOURS.md`.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use hubspot_edge_core::signature::{sign_v2, sign_v3, ClientSecret};
use serde_json::{json, Map, Value};

use super::api::{error, error_with, json_response, parse_query, rate_limited};
use super::store::Kind;
use super::{lock, Data, Request, Response, Shared};

/// "retries will continue for up to 3 days before failing" (custom workflow actions guide).
const HUBSPOT_RETRY_WINDOW: Duration = Duration::from_secs(3 * 24 * 3600);
/// "If not provided, a default expiration of 1 week is used." (custom workflow actions guide)
const DEFAULT_EXPIRATION_MS: u64 = 7 * 24 * 3600 * 1000;
/// Definitions per list page when `limit` is not given, and the most a page holds (HubSpot
/// documents neither; the CRM lists' 10 and 100).
const LIST_DEFAULT_LIMIT: usize = 10;
const LIST_MAX_LIMIT: usize = 100;
/// The first definition id (the documentation example's `actionDefinitionId`).
const FIRST_DEFINITION_ID: u64 = 10_646_377;
/// The first enrollment id (the number inside the documentation example's `callbackId`).
const FIRST_ENROLLMENT_ID: u64 = 56_776_413_549;
/// Enrollments one `POST /__mock/workflows/enroll` may create (a burst test's 1,000 and room).
const MAX_ENROLL: usize = 10_000;
/// The 401 text for a missing or wrong `hapikey` (HubSpot's wording is not in docs/hubspot.md).
const HAPIKEY_MESSAGE: &str = "The API key provided is invalid.";

/// How the mock's workflow engine behaves. The signing key is [`crate::MockConfig::client_secret`]
/// (actions are signed with the app's client secret, docs/hubspot.md §1.1).
#[derive(Debug, Clone)]
pub struct WorkflowConfig {
    /// The developer API key the definitions API requires as `?hapikey=` (the specification's
    /// only security scheme for `/automation/v4/actions/{appId}`).
    pub developer_api_key: String,
    /// `origin.portalId` and the portal in `callbackId`.
    pub portal_id: u64,
    /// Also send `X-HubSpot-Signature-v3` and `X-HubSpot-Request-Timestamp` (HubSpot does not
    /// say whether action requests carry them: off by default).
    pub sign_v3: bool,
    /// Execution requests in flight at once (HubSpot's concurrency is undocumented).
    pub concurrency: usize,
    /// An `actionUrl` answer slower than this is a failed attempt, retried like a 5xx
    /// (undocumented; 20 s is what hs-x.dev claims).
    pub timeout: Duration,
    /// First retry delay after a 5xx, a timeout or a connection failure; doubled per attempt.
    /// HubSpot's own schedule is unpublished ("exponential backoff … up to 3 days"); tests
    /// want milliseconds.
    pub retry_base: Duration,
    /// The longest retry delay.
    pub retry_cap: Duration,
    /// Attempts (first included) before an execution fails for good.
    pub max_attempts: u32,
    /// How long (on the mock's clock) after the first attempt retries continue (HubSpot: 3
    /// days).
    pub retry_window: Duration,
    /// Read a 429's `Retry-After` as seconds. Default milliseconds: HubSpot's 2026
    /// error-handling page says "the `Retry-After` value is in milliseconds" for workflows;
    /// an older doc said seconds.
    pub retry_after_in_seconds: bool,
    /// Refuse a completion without `typedOutputs` on the v4 paths too. The date-versioned
    /// paths always require it (the `2026-03` specification's `CallbackCompletionRequest`
    /// does); the v4 specification requires only `outputFields`, and HubSpot's official Node
    /// and Python clients send only that.
    pub require_typed_outputs: bool,
    /// Inputs one batch completion may carry (undocumented: 100, HubSpot's usual batch size).
    pub max_batch_completions: usize,
}

impl Default for WorkflowConfig {
    fn default() -> Self {
        Self {
            developer_api_key: "mock-developer-api-key".into(),
            portal_id: 33,
            sign_v3: false,
            concurrency: 8,
            timeout: Duration::from_secs(20),
            retry_base: Duration::from_millis(200),
            retry_cap: Duration::from_secs(5),
            max_attempts: 10,
            retry_window: HUBSPOT_RETRY_WINDOW,
            retry_after_in_seconds: false,
            require_typed_outputs: false,
            max_batch_completions: 100,
        }
    }
}

/// Where an enrollment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ExecState {
    /// Waiting for its first attempt, or an attempt is in flight.
    Pending,
    /// Waiting to retry after a 429, 5xx, timeout or connection failure.
    Retrying,
    /// Answered `BLOCK`: waits for a completion until it expires.
    Blocked,
    /// `SUCCESS` or `FAIL_CONTINUE` (answered or completed).
    Completed,
    /// A 4xx, an answer the engine cannot use, or retries exhausted.
    Failed,
    /// Blocked past its expiration: the workflow moved on.
    Expired,
}

impl ExecState {
    fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Blocked => "blocked",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Retrying,
            Self::Blocked,
            Self::Completed,
            Self::Failed,
            Self::Expired,
        ]
        .into_iter()
        .find(|st| st.name() == s)
    }

    fn is_final(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Expired)
    }
}

#[derive(Debug)]
struct Definition {
    app_id: String,
    /// The definition's fields as given (the egg, patched), without `functions`.
    fields: Map<String, Value>,
    /// `functionType` of each function (sources are not kept: nothing runs them).
    functions: Vec<String>,
    revision: u64,
    archived_at: Option<u64>,
}

impl Definition {
    fn render(&self, id: u64) -> Value {
        let mut v = self.fields.clone();
        v.insert("id".into(), json!(id.to_string()));
        v.insert("revisionId".into(), json!(self.revision.to_string()));
        v.insert(
            "functions".into(),
            Value::Array(
                self.functions
                    .iter()
                    .enumerate()
                    .map(|(i, t)| json!({"functionType": t, "id": i.to_string()}))
                    .collect(),
            ),
        );
        v.entry("outputFields").or_insert_with(|| json!([]));
        if let Some(at) = self.archived_at {
            v.insert("archivedAt".into(), json!(at));
        }
        Value::Object(v)
    }

    fn published(&self) -> bool {
        self.fields.get("published") == Some(&Value::Bool(true))
    }
}

#[derive(Debug)]
struct Execution {
    callback_id: String,
    definition_id: u64,
    definition_version: u64,
    object_type: String,
    object_id: u64,
    url: String,
    body: Vec<u8>,
    /// Signs this execution's requests instead of the app's client secret (a forged request,
    /// for a receiver's 401 path; enroll `signingSecret`).
    forged_secret: Option<String>,
    state: ExecState,
    /// `SUCCESS` / `FAIL_CONTINUE` once completed.
    execution_state: Option<String>,
    attempts: u32,
    in_flight: bool,
    outputs: Map<String, Value>,
    typed_outputs: Option<Value>,
    enrolled_at: u64,
    first_attempt_at: Option<u64>,
    expires_at: Option<u64>,
    finished_at: Option<u64>,
    /// `response`, `callback`, `batchCallback`, `expiry`, `retriesExhausted`.
    finished_by: Option<&'static str>,
    reason: Option<String>,
    history: Vec<Value>,
}

impl Execution {
    fn to_json(&self) -> Value {
        json!({
            "callbackId": self.callback_id,
            "definitionId": self.definition_id.to_string(),
            "definitionVersion": self.definition_version,
            "objectType": self.object_type,
            "objectId": self.object_id.to_string(),
            "state": self.state.name(),
            "executionState": self.execution_state,
            "attempts": self.attempts,
            "inFlight": self.in_flight,
            "outputs": self.outputs,
            "typedOutputs": self.typed_outputs,
            "enrolledAt": self.enrolled_at,
            "expiresAt": self.expires_at,
            "finishedAt": self.finished_at,
            "finishedBy": self.finished_by,
            "reason": self.reason,
            "history": self.history,
            "actionUrl": self.url,
            "request": serde_json::from_slice::<Value>(&self.body).unwrap_or(Value::Null),
        })
    }
}

/// Counters for `GET /__mock/stats` → `workflows`.
#[derive(Debug, Default)]
struct WfStats {
    definition_creates: u64,
    definition_updates: u64,
    definition_deletes: u64,
    definition_reads: u64,
    enrollments: u64,
    attempts: u64,
    completion_single_calls: u64,
    completion_batch_calls: u64,
    completion_inputs: u64,
    completions_applied: u64,
    completions_refused: u64,
}

/// The engine's state, inside the mock's one data lock.
#[derive(Debug)]
pub(super) struct State {
    config: WorkflowConfig,
    definitions: BTreeMap<u64, Definition>,
    next_definition_id: u64,
    executions: Vec<Execution>,
    by_callback: HashMap<String, usize>,
    next_enrollment: u64,
    stats: WfStats,
}

impl State {
    pub(super) fn new(config: WorkflowConfig) -> Self {
        Self {
            config,
            definitions: BTreeMap::new(),
            next_definition_id: FIRST_DEFINITION_ID,
            executions: Vec::new(),
            by_callback: HashMap::new(),
            next_enrollment: FIRST_ENROLLMENT_ID,
            stats: WfStats::default(),
        }
    }

    pub(super) fn developer_api_key(&self) -> &str {
        &self.config.developer_api_key
    }

    pub(super) fn reset_stats(&mut self) {
        self.stats = WfStats::default();
    }

    pub(super) fn stats_json(&self) -> Value {
        let s = &self.stats;
        json!({
            "definitions": {
                "creates": s.definition_creates,
                "updates": s.definition_updates,
                "deletes": s.definition_deletes,
                "writes": s.definition_creates + s.definition_updates + s.definition_deletes,
                "reads": s.definition_reads,
            },
            "enrollments": s.enrollments,
            "attempts": s.attempts,
            "completions": {
                "singleCalls": s.completion_single_calls,
                "batchCalls": s.completion_batch_calls,
                "calls": s.completion_single_calls + s.completion_batch_calls,
                "inputs": s.completion_inputs,
                "applied": s.completions_applied,
                "refused": s.completions_refused,
            },
        })
    }

    /// Blocked executions whose expiration passed at `now` expire (checked whenever their
    /// state can be observed, so a clock moved forward takes effect at once).
    fn expire_due(&mut self, now: u64) {
        for e in &mut self.executions {
            if e.state == ExecState::Blocked && e.expires_at.is_some_and(|t| t <= now) {
                e.state = ExecState::Expired;
                e.finished_at = e.expires_at;
                e.finished_by = Some("expiry");
            }
        }
    }
}

/// The dispatcher's queue of attempts, shared by its threads (outside the data lock: never
/// hold it while taking the data lock).
#[derive(Debug, Default)]
pub(super) struct Dispatcher {
    queue: Mutex<Queue>,
    wake: Condvar,
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    jobs: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
}

impl Dispatcher {
    fn push(&self, due: Instant, callback_id: String) {
        let mut q = lock(&self.queue);
        q.seq += 1;
        let seq = q.seq;
        q.jobs.push(Reverse((due, seq, callback_id)));
        drop(q);
        self.wake.notify_one();
    }

    /// The next due job; `None` once stopping.
    fn next(&self) -> Option<String> {
        let mut q = lock(&self.queue);
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return None;
            }
            let now = Instant::now();
            let wait = match q.jobs.peek() {
                Some(Reverse((due, _, _))) if *due <= now => {
                    let Reverse((_, _, id)) = q.jobs.pop()?;
                    if !q.jobs.is_empty() {
                        // Another thread may take the next one.
                        self.wake.notify_one();
                    }
                    return Some(id);
                }
                Some(Reverse((due, _, _))) => *due - now,
                None => Duration::from_secs(3600),
            };
            q = match self.wake.wait_timeout(q, wait) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _guard = lock(&self.queue);
        self.wake.notify_all();
    }
}

/// One dispatcher thread: takes due attempts, sends them, records the answer.
pub(super) fn run_dispatcher(shared: &Shared) {
    let secret = ClientSecret::new(shared.client_secret.as_bytes());
    while let Some(callback_id) = shared.dispatcher.next() {
        attempt(shared, &secret, &callback_id);
    }
}

fn attempt(shared: &Shared, secret: &ClientSecret, callback_id: &str) {
    let fetched = {
        let mut data = lock(&shared.data);
        let now = data.now_ms();
        let wf = &mut data.workflows;
        let config = wf.config.clone();
        let Some(&i) = wf.by_callback.get(callback_id) else {
            return;
        };
        let e = &mut wf.executions[i];
        if e.state.is_final() || e.state == ExecState::Blocked {
            return;
        }
        e.in_flight = true;
        e.state = ExecState::Pending;
        e.attempts += 1;
        e.first_attempt_at.get_or_insert(now);
        wf.stats.attempts += 1;
        let forged = e.forged_secret.as_deref().map(ClientSecret::new);
        (e.url.clone(), e.body.clone(), config, now, forged)
    };
    let (url, body, config, now, forged) = fetched;
    let (result, elapsed) = send(forged.as_ref().unwrap_or(secret), &url, &body, &config, now);
    let answer = match &result {
        Ok(r) => Answer::Http {
            status: r.status,
            retry_after: r.header("retry-after").map(str::to_owned),
            body: &r.body,
        },
        Err(_) if elapsed >= config.timeout => Answer::Timeout,
        Err(_) => Answer::Unreachable,
    };
    let mut data = lock(&shared.data);
    let now = data.now_ms();
    let wf = &mut data.workflows;
    let Some(&i) = wf.by_callback.get(callback_id) else {
        return;
    };
    let e = &mut wf.executions[i];
    e.in_flight = false;
    let verdict = judge(&answer, &config, e.attempts);
    let mut entry = json!({
        "attempt": e.attempts,
        "at": now,
        "status": match &answer { Answer::Http { status, .. } => json!(status), _ => Value::Null },
        "error": match &answer {
            Answer::Timeout => json!("timeout"),
            Answer::Unreachable => json!("connection failed"),
            Answer::Http { .. } => Value::Null,
        },
        "durationMs": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "body": match &answer { Answer::Http { body, .. } => answer_body(body), _ => Value::Null },
    });
    if e.state.is_final() {
        // Completed by a callback while this attempt was in flight: its answer changes nothing.
        entry["outcome"] = json!("ignored (already final)");
        e.history.push(entry);
        return;
    }
    let retry = match verdict {
        Verdict::Complete { state, outputs } => {
            entry["outcome"] = json!(state);
            e.state = ExecState::Completed;
            e.execution_state = Some(state);
            e.outputs = outputs;
            e.finished_at = Some(now);
            e.finished_by = Some("response");
            None
        }
        Verdict::Block { expires_in_ms } => {
            entry["outcome"] = json!("BLOCK");
            e.state = ExecState::Blocked;
            e.expires_at = Some(now.saturating_add(expires_in_ms));
            None
        }
        Verdict::Fail(reason) => {
            entry["outcome"] = json!("failed");
            e.state = ExecState::Failed;
            e.reason = Some(reason);
            e.finished_at = Some(now);
            e.finished_by = Some("response");
            None
        }
        Verdict::Retry(delay) => {
            let window = u64::try_from(config.retry_window.as_millis()).unwrap_or(u64::MAX);
            let elapsed = now.saturating_sub(e.first_attempt_at.unwrap_or(now));
            if e.attempts >= config.max_attempts || elapsed >= window {
                entry["outcome"] = json!("failed (retries exhausted)");
                e.state = ExecState::Failed;
                e.reason = Some(format!("retries exhausted after {} attempts", e.attempts));
                e.finished_at = Some(now);
                e.finished_by = Some("retriesExhausted");
                None
            } else {
                entry["outcome"] = json!("retry");
                entry["retryInMs"] = json!(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                e.state = ExecState::Retrying;
                Some(delay)
            }
        }
    };
    e.history.push(entry);
    drop(data);
    if let Some(delay) = retry {
        shared
            .dispatcher
            .push(Instant::now() + delay, callback_id.to_owned());
    }
}

/// POSTs `body` to `url` signed v2 (and v3 when configured; its timestamp is `now_ms`), within
/// the configured timeout. Returns the answer or the transport error, and how long it took.
fn send(
    secret: &ClientSecret,
    url: &str,
    body: &[u8],
    config: &WorkflowConfig,
    now_ms: u64,
) -> (crate::Result<crate::http::HttpResponse>, Duration) {
    let v2 = sign_v2(secret, "POST", url, body);
    let timestamp = now_ms.to_string();
    let mut headers = vec![
        ("content-type", "application/json".to_owned()),
        ("x-hubspot-signature", v2),
        ("x-hubspot-signature-version", "v2".to_owned()),
    ];
    if config.sign_v3 {
        let v3 = sign_v3(secret, "POST", url, body, &timestamp);
        headers.push(("x-hubspot-signature-v3", v3));
        headers.push(("x-hubspot-request-timestamp", timestamp));
    }
    let header_refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    let result =
        crate::http::request_with_timeout("POST", url, &header_refs, Some(body), config.timeout);
    (result, started.elapsed())
}

/// `POST /__mock/workflows/redeliver` `{"callbackId"}`: sends the execution's request once more,
/// byte for byte (HubSpot's retry of an execution whose answer it lost: same `callbackId`), and
/// answers `{"status", "body"}` with what the `actionUrl` said (`status` null and `error` on a
/// timeout or connection failure). Counted as an attempt and in the history; the execution's
/// state does not change.
pub(super) fn redeliver(shared: &Shared, body: &[u8]) -> Response {
    let callback_id = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["callbackId"].as_str().map(str::to_owned));
    let Some(callback_id) = callback_id else {
        return json_response(
            400,
            &json!({"status": "error", "message": "expected {\"callbackId\":\"…\"}"}),
        );
    };
    let found = {
        let mut data = lock(&shared.data);
        let now = data.now_ms();
        let wf = &mut data.workflows;
        let config = wf.config.clone();
        wf.by_callback.get(&callback_id).copied().map(|i| {
            wf.stats.attempts += 1;
            let e = &mut wf.executions[i];
            e.attempts += 1;
            let secret = e.forged_secret.clone();
            (i, e.url.clone(), e.body.clone(), config, now, secret)
        })
    };
    let Some((i, url, request, config, now, forged)) = found else {
        return json_response(
            404,
            &json!({"status": "error", "message": format!("no execution {callback_id}")}),
        );
    };
    let secret = ClientSecret::new(
        forged
            .as_deref()
            .unwrap_or(&shared.client_secret)
            .as_bytes(),
    );
    let (result, elapsed) = send(&secret, &url, &request, &config, now);
    let answer = match &result {
        Ok(r) => json!({
            "status": r.status,
            "body": answer_body(&r.body),
        }),
        Err(_) if elapsed >= config.timeout => json!({"status": null, "error": "timeout"}),
        Err(_) => json!({"status": null, "error": "connection failed"}),
    };
    let mut data = lock(&shared.data);
    let now = data.now_ms();
    let e = &mut data.workflows.executions[i];
    e.history.push(json!({
        "attempt": e.attempts,
        "at": now,
        "status": answer["status"],
        "error": answer.get("error").cloned().unwrap_or(Value::Null),
        "durationMs": u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
        "outcome": "redelivery (state unchanged)",
    }));
    json_response(200, &answer)
}

/// An answer's body for the history: its JSON, else its text (at most 2,000 characters).
fn answer_body(body: &[u8]) -> Value {
    serde_json::from_slice::<Value>(body).unwrap_or_else(|_| {
        json!(String::from_utf8_lossy(body)
            .chars()
            .take(2_000)
            .collect::<String>())
    })
}

/// What the `actionUrl` did.
#[derive(Debug)]
pub(super) enum Answer<'a> {
    Http {
        status: u16,
        retry_after: Option<String>,
        body: &'a [u8],
    },
    /// No answer within [`WorkflowConfig::timeout`].
    Timeout,
    /// Refused, reset, or closed without an answer.
    Unreachable,
}

/// What the engine does with an answer.
#[derive(Debug, PartialEq)]
pub(super) enum Verdict {
    Complete {
        state: String,
        outputs: Map<String, Value>,
    },
    Block {
        expires_in_ms: u64,
    },
    Fail(String),
    Retry(Duration),
}

/// The custom workflow actions guide's rules: `hs_execution_state` decides when present
/// (`SUCCESS`/`FAIL_CONTINUE` complete, `BLOCK` waits until `hs_expiration_duration`, default
/// one week); without it the status decides (2xx success whatever the body, 4xx failed); 429
/// and 5xx are always retried, 429 after `Retry-After`, 5xx with exponential backoff.
/// `attempts` counts the attempt just made (1 for the first).
pub(super) fn judge(answer: &Answer<'_>, config: &WorkflowConfig, attempts: u32) -> Verdict {
    let backoff = || {
        let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(30));
        config
            .retry_base
            .saturating_mul(factor)
            .min(config.retry_cap)
    };
    let (status, retry_after, body) = match answer {
        Answer::Timeout | Answer::Unreachable => return Verdict::Retry(backoff()),
        Answer::Http {
            status,
            retry_after,
            body,
        } => (*status, retry_after, *body),
    };
    if status == 429 {
        let parsed = retry_after
            .as_deref()
            .and_then(|v| v.trim().parse::<u64>().ok());
        return Verdict::Retry(match parsed {
            Some(n) if config.retry_after_in_seconds => Duration::from_secs(n),
            Some(n) => Duration::from_millis(n),
            None => backoff(),
        });
    }
    if status >= 500 {
        return Verdict::Retry(backoff());
    }
    // Any body, or none: HubSpot does not validate it (docs/hubspot.md §3.2).
    let mut outputs = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("outputFields").and_then(Value::as_object).cloned())
        .unwrap_or_default();
    let state = outputs.remove("hs_execution_state").map(|s| {
        s.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| s.to_string())
    });
    let expiration = outputs.remove("hs_expiration_duration");
    match state.as_deref() {
        Some("SUCCESS" | "FAIL_CONTINUE") => Verdict::Complete {
            state: state.unwrap_or_default(),
            outputs,
        },
        Some("BLOCK") => match expiration {
            None => Verdict::Block {
                expires_in_ms: DEFAULT_EXPIRATION_MS,
            },
            Some(Value::String(d)) => match parse_duration_ms(&d) {
                Some(ms) => Verdict::Block { expires_in_ms: ms },
                None => Verdict::Fail(format!(
                    "hs_expiration_duration {d:?} is not an ISO-8601 duration"
                )),
            },
            Some(other) => Verdict::Fail(format!(
                "hs_expiration_duration {other} is not an ISO-8601 duration"
            )),
        },
        Some("ASYNC") => Verdict::Fail("ASYNC is not modelled by the mock".into()),
        Some(other) => Verdict::Fail(format!("unknown hs_execution_state {other:?}")),
        None if (200..300).contains(&status) => Verdict::Complete {
            state: "SUCCESS".into(),
            outputs,
        },
        None => Verdict::Fail(format!("status {status}")),
    }
}

/// An ISO-8601 duration (`P1W`, `P1WT1H`, `PT30S`, `PT0.5S`) in milliseconds; years count 365
/// days and months 30 (HubSpot's calendar arithmetic is undocumented).
pub(super) fn parse_duration_ms(text: &str) -> Option<u64> {
    let rest = text.strip_prefix('P')?;
    let (date, time) = match rest.split_once('T') {
        Some((_, "")) => return None,
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    const DAY: f64 = 86_400_000.0;
    /// The sum of `s`'s parts in ms and how many there were; units once each, in order.
    fn scan(s: &str, units: &[(char, f64)]) -> Option<(f64, usize)> {
        let (mut total, mut parts, mut next) = (0.0, 0, 0);
        let mut number = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() || c == '.' {
                number.push(c);
                continue;
            }
            let pos = units[next..].iter().position(|(u, _)| *u == c)?;
            let value: f64 = number.parse().ok()?;
            total += value * units[next + pos].1;
            next += pos + 1;
            number.clear();
            parts += 1;
        }
        number.is_empty().then_some((total, parts))
    }
    let (mut total, mut parts) = scan(
        date,
        &[
            ('Y', 365.0 * DAY),
            ('M', 30.0 * DAY),
            ('W', 7.0 * DAY),
            ('D', DAY),
        ],
    )?;
    if let Some(t) = time {
        let (ms, n) = scan(t, &[('H', 3_600_000.0), ('M', 60_000.0), ('S', 1_000.0)])?;
        if n == 0 {
            return None;
        }
        total += ms;
        parts += n;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (parts > 0 && total.is_finite()).then_some(total.round() as u64)
}

/// HubSpot's upper-case object type name (`CONTACT`) or a `2-N` custom type.
fn type_name(kind: Kind) -> String {
    match kind {
        Kind::Custom(_) => kind.object_type_id(),
        _ => kind.label().to_owned(),
    }
}

/// `CONTACT`, `contacts`, `contact`, `0-1`, `2-123` → the type.
fn parse_type(s: &str) -> Option<Kind> {
    Kind::parse(&s.to_ascii_lowercase())
}

/// `/automation/v4/actions/{appId}` and `/automation/v4/actions/{appId}/{definitionId}` (not
/// `…/callbacks/…`: those are the API's, with a bearer token).
pub(super) fn is_definitions_path(path: &str) -> bool {
    definitions_rest(path).is_some()
}

/// Whether `s` is a date version such as `2026-03` (§0).
pub(super) fn is_date_version(s: &str) -> bool {
    s.len() == 7
        && s.as_bytes()[4] == b'-'
        && s.bytes()
            .enumerate()
            .all(|(i, b)| i == 4 || b.is_ascii_digit())
}

/// The part after the definitions prefix: `/automation/v4/actions/` or the date-versioned
/// `/automation/actions/{YYYY-MM}/` (§3.1); `None` for other paths and for callbacks.
fn definitions_rest(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/automation/v4/actions/").or_else(|| {
        let after = path.strip_prefix("/automation/actions/")?;
        let (version, rest) = after.split_once('/')?;
        is_date_version(version).then_some(rest)
    })?;
    (!rest.starts_with("callbacks")).then_some(rest)
}

/// The definitions API, authenticated by `?hapikey=` (the specification's `developer_hapikey`
/// scheme), counted against the burst and daily limits under the developer key.
pub(super) fn definitions(shared: &Shared, req: &Request) -> Response {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let query = parse_query(query);
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let mut data = lock(&shared.data);
    let data = &mut *data;
    let key = get("hapikey");
    let expected = data.workflows.config.developer_api_key.clone();
    if !key.is_some_and(|k| constant_time_eq(k.as_bytes(), expected.as_bytes())) {
        return error(data, 401, "INVALID_AUTHENTICATION", HAPIKEY_MESSAGE);
    }
    let now = data.now_ms();
    let outcome = data.limiter.check("developer-api-key", false, now);
    if let Some(policy) = outcome.refused {
        let mut resp = rate_limited(data, policy);
        resp.headers.extend(outcome.headers);
        return resp;
    }
    let rest = definitions_rest(path).unwrap_or_default();
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let archived = get("archived") == Some("true");
    let mut resp = match (req.method.as_str(), segs.as_slice()) {
        ("POST", [app]) => create(data, app, &req.body),
        ("GET", [app]) => {
            let limit = get("limit").and_then(|l| l.parse::<usize>().ok());
            let after = get("after").and_then(|a| a.parse::<usize>().ok());
            list(data, app, limit, after.unwrap_or(0), archived, req)
        }
        ("GET", [app, id]) => match find(data, app, id, archived) {
            Some(id) => {
                data.workflows.stats.definition_reads += 1;
                json_response(200, &data.workflows.definitions[&id].render(id))
            }
            None => not_found(data, id),
        },
        ("PATCH", [app, id]) => match find(data, app, id, false) {
            Some(id) => patch(data, id, &req.body),
            None => not_found(data, id),
        },
        ("DELETE", [app, id]) => match find(data, app, id, false) {
            Some(id) => {
                data.workflows.stats.definition_deletes += 1;
                if let Some(d) = data.workflows.definitions.get_mut(&id) {
                    d.archived_at = Some(now);
                }
                Response {
                    status: 204,
                    headers: Vec::new(),
                    body: Vec::new(),
                }
            }
            None => not_found(data, id),
        },
        _ => error(data, 404, "OBJECT_NOT_FOUND", "resource not found"),
    };
    resp.headers.extend(outcome.headers);
    resp
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn not_found(data: &mut Data, id: &str) -> Response {
    error(
        data,
        404,
        "OBJECT_NOT_FOUND",
        &format!("No action definition with id {id}"),
    )
}

/// A definition of app `app` by id: live ones, or with `archived` archived ones only.
fn find(data: &Data, app: &str, id: &str, archived: bool) -> Option<u64> {
    let id: u64 = id.parse().ok()?;
    let d = data.workflows.definitions.get(&id)?;
    (d.app_id == app && d.archived_at.is_some() == archived).then_some(id)
}

/// HubSpot's message when required attributes are missing (its Java `Cannot build X, some of
/// required attributes are not set [..]`, seen on every v3/v4 endpoint; not in docs/hubspot.md).
fn missing_fields(data: &mut Data, schema: &str, missing: &[String]) -> Response {
    let errors: Vec<Value> = missing
        .iter()
        .map(|f| json!({"message": format!("{f} is required"), "in": f, "code": "REQUIRED_FIELD"}))
        .collect();
    error_with(
        data,
        400,
        "VALIDATION_ERROR",
        &format!(
            "Invalid input JSON: Cannot build {schema}, some of required attributes are not set [{}]",
            missing.join(", ")
        ),
        Some(Value::Array(errors)),
    )
}

fn invalid_field(data: &mut Data, field: &str, why: &str) -> Response {
    error_with(
        data,
        400,
        "VALIDATION_ERROR",
        &format!("Invalid input JSON: {field} {why}"),
        Some(json!([{"message": format!("{field} {why}"), "in": field, "code": "INVALID_FIELD"}])),
    )
}

/// Checks the types of the fields present (`PublicActionDefinitionEgg` /
/// `PublicActionDefinitionPatch`); the first wrong one is named.
fn check_types(data: &mut Data, body: &Map<String, Value>) -> Result<(), Response> {
    let expect = |name: &str, ok: fn(&Value) -> bool, what: &str| -> Option<(String, String)> {
        body.get(name)
            .filter(|v| !ok(v))
            .map(|_| (name.to_owned(), format!("must be {what}")))
    };
    let problem = expect("actionUrl", Value::is_string, "a string")
        .or_else(|| expect("published", Value::is_boolean, "a boolean"))
        .or_else(|| expect("functions", Value::is_array, "an array"))
        .or_else(|| expect("inputFields", Value::is_array, "an array"))
        .or_else(|| expect("outputFields", Value::is_array, "an array"))
        .or_else(|| expect("objectTypes", Value::is_array, "an array"))
        .or_else(|| expect("labels", Value::is_object, "an object"))
        .or_else(|| expect("objectRequestOptions", Value::is_object, "an object"));
    if let Some((field, why)) = problem {
        return Err(invalid_field(data, &field, &why));
    }
    if let Some(types) = body.get("objectTypes").and_then(Value::as_array) {
        for t in types {
            if t.as_str().and_then(parse_type).is_none() {
                return Err(invalid_field(
                    data,
                    "objectTypes",
                    &format!("has an unknown object type {t}"),
                ));
            }
        }
    }
    if let Some(fields) = body.get("inputFields").and_then(Value::as_array) {
        for (i, f) in fields.iter().enumerate() {
            let name = f.pointer("/typeDefinition/name").and_then(Value::as_str);
            if name.is_none() || f.get("isRequired").and_then(Value::as_bool).is_none() {
                return Err(invalid_field(
                    data,
                    &format!("inputFields[{i}]"),
                    "needs isRequired and typeDefinition.name",
                ));
            }
        }
    }
    if let Some(labels) = body.get("labels").and_then(Value::as_object) {
        // "English is required" (custom workflow actions guide).
        if labels
            .get("en")
            .and_then(|en| en.get("actionName"))
            .and_then(Value::as_str)
            .is_none()
        {
            return Err(invalid_field(data, "labels", "needs en.actionName"));
        }
    }
    Ok(())
}

fn body_object(data: &mut Data, body: &[u8]) -> Result<Map<String, Value>, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(error(
            data,
            400,
            "VALIDATION_ERROR",
            "Invalid input JSON: expected an object",
        )),
        Err(e) => Err(error(
            data,
            400,
            "VALIDATION_ERROR",
            &format!("Invalid input JSON: {e}"),
        )),
    }
}

fn function_types(functions: Option<&Value>) -> Vec<String> {
    functions
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .filter_map(|f| f.get("functionType").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `POST /automation/v4/actions/{appId}`: 201 with the definition, revision 1.
fn create(data: &mut Data, app: &str, body: &[u8]) -> Response {
    let mut body = match body_object(data, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let missing: Vec<String> = [
        "actionUrl",
        "functions",
        "inputFields",
        "labels",
        "objectTypes",
        "published",
    ]
    .iter()
    .filter(|f| body.get(**f).is_none_or(Value::is_null))
    .map(|f| (*f).to_owned())
    .collect();
    if !missing.is_empty() {
        return missing_fields(data, "PublicActionDefinitionEgg", &missing);
    }
    if let Err(r) = check_types(data, &body) {
        return r;
    }
    let functions = function_types(body.remove("functions").as_ref());
    body.remove("id");
    body.remove("revisionId");
    let wf = &mut data.workflows;
    let id = wf.next_definition_id;
    wf.next_definition_id += 1;
    wf.stats.definition_creates += 1;
    let def = Definition {
        app_id: app.to_owned(),
        fields: body,
        functions,
        revision: 1,
        archived_at: None,
    };
    let rendered = def.render(id);
    wf.definitions.insert(id, def);
    json_response(201, &rendered)
}

/// `PATCH …/{definitionId}`: the fields present replace; every PATCH is a new revision
/// (whether HubSpot skips a revision for an unchanged PATCH is undocumented).
fn patch(data: &mut Data, id: u64, body: &[u8]) -> Response {
    let body = match body_object(data, body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(r) = check_types(data, &body) {
        return r;
    }
    let wf = &mut data.workflows;
    wf.stats.definition_updates += 1;
    let Some(def) = wf.definitions.get_mut(&id) else {
        return json_response(404, &json!({"status": "error"}));
    };
    for (k, v) in body {
        // `functions` is not part of PublicActionDefinitionPatch (HubSpot drops it, §C).
        if !matches!(k.as_str(), "functions" | "id" | "revisionId" | "archivedAt") {
            def.fields.insert(k, v);
        }
    }
    def.revision += 1;
    json_response(200, &def.render(id))
}

/// `GET /automation/v4/actions/{appId}`: `results` and `paging.next.after` (an offset).
fn list(
    data: &mut Data,
    app: &str,
    limit: Option<usize>,
    after: usize,
    archived: bool,
    req: &Request,
) -> Response {
    let limit = limit.unwrap_or(LIST_DEFAULT_LIMIT).clamp(1, LIST_MAX_LIMIT);
    let wf = &mut data.workflows;
    wf.stats.definition_reads += 1;
    let all: Vec<Value> = wf
        .definitions
        .iter()
        .filter(|(_, d)| d.app_id == app && d.archived_at.is_some() == archived)
        .map(|(id, d)| d.render(*id))
        .collect();
    let page: Vec<Value> = all.iter().skip(after).take(limit).cloned().collect();
    let mut body = json!({ "results": page });
    if after + limit < all.len() {
        let next = (after + limit).to_string();
        let path = req.target.split('?').next().unwrap_or("");
        body["paging"] = json!({"next": {"after": next, "link": format!("{path}?after={next}")}});
    }
    json_response(200, &body)
}

/// `POST /__mock/workflows/enroll`: `{"definitionId", "objectType", "objectId" | "objectIds",
/// "inputFields"?, "count"?, "workflowId"?, "actionId"?, "signingSecret"?}` →
/// `{"callbackIds": […]}`; each enrollment's execution request is built now and queued for the
/// dispatcher. `signingSecret` signs them with another secret: forged requests.
pub(super) fn enroll(shared: &Shared, data: &mut Data, body: &[u8]) -> Response {
    let bad = |msg: String| json_response(400, &json!({"status": "error", "message": msg}));
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(body) else {
        return bad("expected a JSON object".into());
    };
    let id_of = |v: &Value| match v {
        Value::String(s) => s.parse::<u64>().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    let Some(def_id) = body.get("definitionId").and_then(id_of) else {
        return bad("definitionId is required".into());
    };
    let Some(kind) = body
        .get("objectType")
        .and_then(Value::as_str)
        .and_then(parse_type)
    else {
        return bad("objectType is required (CONTACT, contacts, 0-1, 2-N…)".into());
    };
    let mut object_ids: Vec<u64> = match (body.get("objectId"), body.get("objectIds")) {
        (Some(v), None) => match id_of(v) {
            Some(id) => vec![id],
            None => return bad("objectId must be an id".into()),
        },
        (None, Some(Value::Array(ids))) => match ids.iter().map(id_of).collect() {
            Some(ids) => ids,
            None => return bad("objectIds must be ids".into()),
        },
        _ => return bad("objectId or objectIds is required".into()),
    };
    let count = body.get("count").and_then(Value::as_u64).unwrap_or(1);
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    if object_ids.is_empty() || count == 0 || object_ids.len().saturating_mul(count) > MAX_ENROLL {
        return bad(format!(
            "between 1 and {MAX_ENROLL} enrollments per call (objectIds × count)"
        ));
    }
    if count > 1 {
        object_ids = object_ids
            .iter()
            .flat_map(|id| std::iter::repeat_n(*id, count))
            .collect();
    }
    let forged_secret = match body.get("signingSecret") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return bad("signingSecret must be a string".into()),
    };
    let inputs: Map<String, Value> = match body.get("inputFields") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => return bad("inputFields must be an object".into()),
    };
    let Some(def) = data.workflows.definitions.get(&def_id) else {
        return json_response(
            404,
            &json!({"status": "error", "message": format!("no definition {def_id}")}),
        );
    };
    if def.archived_at.is_some() {
        return bad(format!("definition {def_id} is archived"));
    }
    if !def.published() {
        return bad(format!(
            "definition {def_id} is not published: workflows cannot use it"
        ));
    }
    let allowed = def
        .fields
        .get("objectTypes")
        .and_then(Value::as_array)
        .is_some_and(|ts| {
            ts.iter()
                .filter_map(Value::as_str)
                .filter_map(parse_type)
                .any(|k| k == kind)
        });
    if !allowed {
        return bad(format!(
            "definition {def_id} does not accept {} objects (objectTypes)",
            type_name(kind)
        ));
    }
    // Declared inputs: the required ones must be given, unknown ones are refused.
    let declared: Vec<(String, bool)> = def
        .fields
        .get("inputFields")
        .and_then(Value::as_array)
        .map(|fs| {
            fs.iter()
                .filter_map(|f| {
                    Some((
                        f.pointer("/typeDefinition/name")?.as_str()?.to_owned(),
                        f.get("isRequired")
                            .and_then(Value::as_bool)
                            .unwrap_or(false),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let names: HashSet<&str> = declared.iter().map(|(n, _)| n.as_str()).collect();
    if let Some(unknown) = inputs.keys().find(|k| !names.contains(k.as_str())) {
        return bad(format!(
            "input field {unknown} is not declared by the definition"
        ));
    }
    if let Some((missing, _)) = declared
        .iter()
        .find(|(n, required)| *required && inputs.get(n).is_none_or(Value::is_null))
    {
        return bad(format!("required input field {missing} is missing"));
    }
    let url = def
        .fields
        .get("actionUrl")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let version = def.revision;
    let requested: Vec<String> = def
        .fields
        .get("objectRequestOptions")
        .and_then(|o| o.get("properties"))
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    // Values as HubSpot sends them (observed: strings, typed `STRING`).
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let input_strings: Map<String, Value> = inputs
        .iter()
        .map(|(k, v)| (k.clone(), json!(text(v))))
        .collect();
    let typed: Map<String, Value> = inputs
        .iter()
        .map(|(k, v)| (k.clone(), json!({"value": text(v), "type": "STRING"})))
        .collect();
    let workflow_id = body
        .get("workflowId")
        .and_then(id_of)
        .unwrap_or(192_814_114);
    let action_id = body.get("actionId").and_then(id_of).unwrap_or(7);
    let portal = data.workflows.config.portal_id;
    let now = data.now_ms();
    // Check every object first: all or none enrolled.
    let mut properties = HashMap::new();
    for id in &object_ids {
        if properties.contains_key(id) {
            continue;
        }
        let Some(rec) = data.store.find(kind, &id.to_string(), None, false) else {
            return json_response(
                404,
                &json!({"status": "error", "message": format!("no {} {id}", type_name(kind))}),
            );
        };
        let props: Map<String, Value> = requested
            .iter()
            .filter_map(|p| rec.prop(p).map(|v| (p.clone(), json!(v))))
            .collect();
        properties.insert(*id, props);
    }
    let mut callback_ids = Vec::with_capacity(object_ids.len());
    let wf = &mut data.workflows;
    for id in object_ids {
        let enrollment = wf.next_enrollment;
        wf.next_enrollment += 1;
        let callback_id = format!("ap-{portal}-{enrollment}-{action_id}-0");
        let request = json!({
            "callbackId": callback_id,
            "origin": {
                "portalId": portal,
                "actionDefinitionId": def_id,
                "actionDefinitionVersion": version,
            },
            "context": {
                "source": "WORKFLOWS",
                "workflowId": workflow_id,
                "actionId": action_id,
                "actionExecutionIndexIdentifier": {
                    "enrollmentId": enrollment,
                    "actionExecutionIndex": 0,
                },
            },
            "object": {
                "objectId": id,
                "objectType": type_name(kind),
                "properties": properties.get(&id).cloned().unwrap_or_default(),
            },
            "fields": input_strings,
            "inputFields": input_strings,
            "typedInputs": typed,
        });
        wf.by_callback
            .insert(callback_id.clone(), wf.executions.len());
        wf.executions.push(Execution {
            callback_id: callback_id.clone(),
            definition_id: def_id,
            definition_version: version,
            object_type: type_name(kind),
            object_id: id,
            url: url.clone(),
            body: serde_json::to_vec(&request).unwrap_or_default(),
            forged_secret: forged_secret.clone(),
            state: ExecState::Pending,
            execution_state: None,
            attempts: 0,
            in_flight: false,
            outputs: Map::new(),
            typed_outputs: None,
            enrolled_at: now,
            first_attempt_at: None,
            expires_at: None,
            finished_at: None,
            finished_by: None,
            reason: None,
            history: Vec::new(),
        });
        wf.stats.enrollments += 1;
        callback_ids.push(callback_id);
    }
    let due = Instant::now();
    for id in &callback_ids {
        shared.dispatcher.push(due, id.clone());
    }
    json_response(200, &json!({ "callbackIds": callback_ids }))
}

/// `GET /__mock/workflows/executions?callbackId=&definitionId=&state=`: the enrollments, in
/// enrollment order, with `counts` by state.
pub(super) fn executions(data: &mut Data, query: &str) -> Response {
    let now = data.now_ms();
    let wf = &mut data.workflows;
    wf.expire_due(now);
    let query = parse_query(query);
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if let Some(s) = get("state") {
        if ExecState::parse(s).is_none() {
            return json_response(
                400,
                &json!({"status": "error", "message": format!("unknown state {s}")}),
            );
        }
    }
    let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for e in &wf.executions {
        *counts.entry(e.state.name()).or_default() += 1;
        let keep = get("callbackId").is_none_or(|c| c == e.callback_id)
            && get("definitionId").is_none_or(|d| d == e.definition_id.to_string())
            && get("state").is_none_or(|s| s == e.state.name());
        if keep {
            out.push(e.to_json());
        }
    }
    json_response(
        200,
        &json!({"executions": out, "counts": counts, "nowMs": now}),
    )
}

/// `POST /automation/v4/actions/callbacks/{callbackId}/complete` and
/// `POST /automation/v4/actions/callbacks/complete`: 204; errors in HubSpot's shape. `rest` is
/// the path after `callbacks/` (after `callbacks/{YYYY-MM}/` when `dated`). Rate limits were
/// applied by the caller (no exemption, §C).
pub(super) fn callbacks(
    data: &mut Data,
    req: &Request,
    rest: &[&str],
    dated: bool,
    now: u64,
) -> Response {
    let typed_required = dated || data.workflows.config.require_typed_outputs;
    data.workflows.expire_due(now);
    let body = match body_object(data, &req.body) {
        Ok(b) => b,
        Err(r) => {
            data.workflows.stats.completions_refused += 1;
            return r;
        }
    };
    match (req.method.as_str(), rest) {
        ("POST", [callback_id, "complete"]) => {
            data.workflows.stats.completion_single_calls += 1;
            data.workflows.stats.completion_inputs += 1;
            let checked = check_completion(
                data,
                callback_id,
                &body,
                "CallbackCompletionRequest",
                typed_required,
            );
            match checked {
                Ok(c) => {
                    apply(data, c, now, "callback");
                    no_content()
                }
                Err(r) => {
                    data.workflows.stats.completions_refused += 1;
                    r
                }
            }
        }
        ("POST", ["complete"]) => {
            data.workflows.stats.completion_batch_calls += 1;
            let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
                data.workflows.stats.completions_refused += 1;
                return missing_fields(
                    data,
                    "BatchInputCallbackCompletionBatchRequest",
                    &["inputs".into()],
                );
            };
            data.workflows.stats.completion_inputs += inputs.len() as u64;
            let max = data.workflows.config.max_batch_completions;
            if inputs.len() > max {
                data.workflows.stats.completions_refused += inputs.len() as u64;
                return error(
                    data,
                    400,
                    "VALIDATION_ERROR",
                    &format!(
                        "Batch of {} inputs is too large: at most {max} per call",
                        inputs.len()
                    ),
                );
            }
            // All or nothing: any bad input refuses the batch, naming each bad input.
            let mut ok = Vec::new();
            let mut errors = Vec::new();
            let mut seen = HashSet::new();
            for (i, input) in inputs.iter().enumerate() {
                let Some(obj) = input.as_object() else {
                    errors.push(json!({"message": format!("inputs[{i}] is not an object"), "in": format!("inputs[{i}]")}));
                    continue;
                };
                let Some(id) = obj.get("callbackId").and_then(Value::as_str) else {
                    errors.push(json!({"message": format!("inputs[{i}].callbackId is required"), "in": format!("inputs[{i}].callbackId")}));
                    continue;
                };
                if !seen.insert(id.to_owned()) {
                    errors.push(json!({"message": format!("callbackId {id} appears twice"), "in": format!("inputs[{i}].callbackId"), "context": {"callbackId": [id]}}));
                    continue;
                }
                match check_completion(
                    data,
                    id,
                    obj,
                    "CallbackCompletionBatchRequest",
                    typed_required,
                ) {
                    Ok(c) => ok.push(c),
                    Err(r) => {
                        let msg = serde_json::from_slice::<Value>(&r.body)
                            .ok()
                            .and_then(|v| v["message"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        errors.push(json!({"message": msg, "in": format!("inputs[{i}]"), "code": r.status.to_string(), "context": {"callbackId": [id]}}));
                    }
                }
            }
            if !errors.is_empty() {
                data.workflows.stats.completions_refused += inputs.len() as u64;
                return error_with(
                    data,
                    400,
                    "VALIDATION_ERROR",
                    &format!(
                        "{} of {} inputs cannot be completed; none was",
                        errors.len(),
                        inputs.len()
                    ),
                    Some(Value::Array(errors)),
                );
            }
            for c in ok {
                apply(data, c, now, "batchCallback");
            }
            no_content()
        }
        _ => error(data, 404, "OBJECT_NOT_FOUND", "resource not found"),
    }
}

fn no_content() -> Response {
    Response {
        status: 204,
        headers: Vec::new(),
        body: Vec::new(),
    }
}

struct CheckedCompletion {
    index: usize,
    state: String,
    outputs: Map<String, Value>,
    typed: Option<Value>,
}

/// Validates one completion against the body schema and the execution's state.
fn check_completion(
    data: &mut Data,
    callback_id: &str,
    body: &Map<String, Value>,
    schema: &str,
    typed_required: bool,
) -> Result<CheckedCompletion, Response> {
    let mut missing = Vec::new();
    let outputs = match body.get("outputFields") {
        Some(Value::Object(o)) => Some(o.clone()),
        None | Some(Value::Null) => {
            missing.push("outputFields".to_owned());
            None
        }
        Some(_) => return Err(invalid_field(data, "outputFields", "must be an object")),
    };
    let typed = body.get("typedOutputs").filter(|v| !v.is_null()).cloned();
    if typed.is_none() && typed_required {
        missing.push("typedOutputs".to_owned());
    }
    if !missing.is_empty() {
        return Err(missing_fields(data, schema, &missing));
    }
    if typed.as_ref().is_some_and(|t| !t.is_object()) {
        return Err(invalid_field(data, "typedOutputs", "must be an object"));
    }
    let mut outputs = outputs.unwrap_or_default();
    if let Some((k, _)) = outputs.iter().find(|(_, v)| v.is_object() || v.is_array()) {
        let k = k.clone();
        return Err(invalid_field(
            data,
            &format!("outputFields.{k}"),
            "must be a string",
        ));
    }
    let state = match outputs.remove("hs_execution_state") {
        Some(Value::String(s)) if s == "SUCCESS" || s == "FAIL_CONTINUE" => s,
        other => {
            return Err(invalid_field(
                data,
                "outputFields.hs_execution_state",
                &format!(
                    "must be SUCCESS or FAIL_CONTINUE to complete an execution (got {})",
                    other.map_or_else(|| "nothing".to_owned(), |v| v.to_string())
                ),
            ))
        }
    };
    let Some(&index) = data.workflows.by_callback.get(callback_id) else {
        return Err(error(
            data,
            404,
            "OBJECT_NOT_FOUND",
            &format!("No action execution with callbackId {callback_id}"),
        ));
    };
    let e = &data.workflows.executions[index];
    let conflict = match e.state {
        ExecState::Blocked => None,
        // A completion racing the BLOCK answer it follows: HubSpot's ordering is undocumented;
        // the mock takes it.
        ExecState::Pending if e.in_flight => None,
        ExecState::Completed => Some("is already completed"),
        ExecState::Expired => Some("has expired: the workflow moved on"),
        ExecState::Failed => Some("has failed"),
        ExecState::Pending | ExecState::Retrying => Some("is not waiting for a callback"),
    };
    if let Some(why) = conflict {
        return Err(error(
            data,
            409,
            "CONFLICT",
            &format!("Action execution {callback_id} {why}"),
        ));
    }
    Ok(CheckedCompletion {
        index,
        state,
        outputs,
        typed,
    })
}

fn apply(data: &mut Data, c: CheckedCompletion, now: u64, by: &'static str) {
    let wf = &mut data.workflows;
    wf.stats.completions_applied += 1;
    let e = &mut wf.executions[c.index];
    e.state = ExecState::Completed;
    e.execution_state = Some(c.state);
    e.outputs = c.outputs;
    e.typed_outputs = c.typed;
    e.finished_at = Some(now);
    e.finished_by = Some(by);
}
