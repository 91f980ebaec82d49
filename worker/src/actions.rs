//! Custom workflow actions (README "Workflow actions"): the I/O around core's
//! [`hubspot_edge_core::actions`].
//!
//! - `POST /actions/{actionKey}`: HubSpot's execution request. Verified with the app's client
//!   secret (`HUBSPOT_CLIENT_SECRET`; v2, which HubSpot documents for actions, or v3 when its
//!   headers are present), 401 with the signature's code and nothing run when it does not
//!   verify. Parsed and checked against the action's definition (`ACTIONS`): a bad request is a
//!   400 with HubSpot's error body (HubSpot shows it; any 2xx would count as success). Then the
//!   portal's [`ActionExecutions`] object admits it by `callbackId` (a retry of a finished
//!   execution gets the same body; one that arrives while the first runs gets `BLOCK`, and the
//!   first's result goes to HubSpot as a completion), the action runs and the answer is recorded.
//!   - `map_and_write`: outputs from the object's properties through `ENRICHMENT_MAP`, no call.
//!   - `approval`: `BLOCK` with the action's expiration.
//!   - `lookup`: the user's system is called (Standard Webhooks-signed) within
//!     `ACTIONS_BUDGET_MS` (default 3 s). Later than that, the answer is `BLOCK` and the call
//!     goes on in `ctx.wait_until` (Cloudflare keeps a Worker alive at most 30 s after its
//!     response for `waitUntil`, so the call is cut at [`LOOKUP_HARD_LIMIT_MS`] = 25 s): its
//!     reply becomes a completion, no reply a `FAIL_CONTINUE` completion (`lookup_unreachable`).
//!     `waitUntil` rather than the Durable Object: the object would have to hold the call open
//!     across requests, which its own 30 s CPU/wall limits per event do not promise either, and
//!     a reply that never comes is covered by the completion of `FAIL_CONTINUE` here.
//! - `POST /actions/callbacks/{callbackId}`: the user's system completes a blocked execution,
//!   Standard Webhooks-signed with `ACTIONS_CALLBACK_SECRET`, body
//!   `{"portalId"?, "outputs": {…}, "state"?: "SUCCESS" | "FAIL_CONTINUE", "reason"?}`: 202,
//!   or 400 (outputs that do not fit), 401, 404 `callback_unknown`, 409 `callback_completed` /
//!   `callback_running`, 410 `callback_expired`.
//! - [`ActionExecutions`]: one Durable Object **per portal** (`ACTION_EXECUTIONS`, SQLite), the
//!   idempotency record of every execution (core's [`ExecutionRecord`]), the blocked ones' expiry and the
//!   completions waiting for the batcher. Its alarm expires blocks and sends due completions as
//!   batch completions (at most 100 each, core's [`due_batches`]) through the HubSpot gate and
//!   executor with that portal's credentials (today the one configured token or OAuth app: the
//!   portal id is in every key, so several can follow). A batch that finally fails is
//!   dead-lettered per completion (reason `action_completion_failed`, with its `callbackId`),
//!   re-driven by `POST /admin/dead-letters/…/redrive` ([`redrive`]).
//! - `POST /admin/actions/publish`: creates or patches the configured definitions for
//!   `HUBSPOT_APP_ID` with `HUBSPOT_DEVELOPER_API_KEY` (core's [`plan_publish`]); nothing is
//!   written when HubSpot's copy already says what the configuration says.
//! - `GET /admin/actions/executions/{portalId}/{callbackId}`: an execution's state (no values).
//! - `GET /admin/actions/executions/{portalId}`: the portal's executions waiting (blocked, or a
//!   completion queued), at most 100, oldest change first: callback id, action, state, since,
//!   age, expiry; no values.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::{join_all, select, Either};
use hubspot_edge_core::actions::{
    batch_request, expire, hubspot_error_body, late_lookup_completion, lookup_answer, object_key,
    ActionLetter, ActionSettings, Answer, AnswerWire, BatchFate, CallbackAnswer, CallbackRoute,
    CallbackStep, Completion, CompletionFlush, Definition, DefinitionsApi, ExecutionLedger,
    ExecutionRecord, ExecutionRefusal, ExecutionState, ExecutionStep, LateCompletionRetry,
    LedgerStep, LookupReply, ObjectCompletion, Pending, PublishNext, PublishRun,
    DEFAULT_EXPIRATION,
};
use hubspot_edge_core::api::{Call, CallStep, Outcome, RequestKind};
use hubspot_edge_core::config::ACTIONS_COMPLETE_WINDOW_MS;
use hubspot_edge_core::id::PortalId;
use hubspot_edge_core::metrics::{Counter, Gauge, Histogram};
use hubspot_edge_core::signature::SignedRequest;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use worker::{
    durable_object, AbortController, Context, Date, Delay, DurableObject, Env, Fetch, Headers,
    Method, Request, RequestInit, Response, Result, SqlStorageValue, State,
};

use crate::config::HubSpotApi;
use crate::hubspot::{execute as execute_api, CallError};
use crate::log::Line;
use crate::respond;

/// The Durable Object binding (wrangler.toml).
pub(crate) const BINDING: &str = "ACTION_EXECUTIONS";
/// The largest execution request or callback read (HubSpot's are a few KB).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A late lookup is cut here: `waitUntil` keeps the Worker at most 30 s after its response
/// (Cloudflare Workers limits, "waitUntil").
const LOOKUP_HARD_LIMIT_MS: u64 = 25_000;
/// A failed alarm runs again after this long (core's batcher retry delay).
const RETRY_DELAY_MS: u64 = CompletionFlush::RETRY_DELAY_MS;

fn var(env: &Env, key: &str) -> Option<String> {
    env.var(key)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
}

/// The actions configuration (core's [`ActionSettings`]): `Ok(None)` when `ACTIONS` is unset.
fn settings(
    env: &Env,
) -> std::result::Result<Option<ActionSettings>, hubspot_edge_core::config::ConfigError> {
    ActionSettings::from_lookup(|key| var(env, key))
}

/// The settings, or the response that says why there are none (404 off, 503 invalid).
fn settings_or_answer(env: &Env) -> Result<std::result::Result<ActionSettings, Response>> {
    match settings(env) {
        Ok(Some(s)) => Ok(Ok(s)),
        Ok(None) => Ok(Err(respond::error(
            404,
            "actions_off",
            "workflow actions are off (ACTIONS is unset)",
        )?)),
        Err(e) => {
            Line::error("config_invalid")
                .field("part", "actions")
                .field("key", e.key())
                .field("code", e.code())
                .field("error", e.to_string())
                .emit();
            Ok(Err(respond::error(503, "config_invalid", e.code())?))
        }
    }
}

fn hubspot_error(status: u16, message: &str, code: &str, field: Option<&str>) -> Result<Response> {
    raw_json(status, hubspot_error_body(message, code, field))
}

fn raw_json(status: u16, body: Vec<u8>) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::from_bytes(body)?
        .with_status(status)
        .with_headers(headers))
}

async fn read_body(req: &mut Request) -> Result<Option<Vec<u8>>> {
    let body = req.bytes().await?;
    Ok((body.len() <= MAX_BODY_BYTES).then_some(body))
}

// ---------------------------------------------------------------------------------------------
// POST /actions/{actionKey}

/// `/actions/…` routes.
pub(crate) async fn handle(
    req: &mut Request,
    env: &Env,
    ctx: &Context,
    path: &str,
) -> Result<Response> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    match (req.method(), segments.as_slice()) {
        (Method::Post, ["callbacks", id]) => {
            let id = (*id).to_owned();
            callback(req, env, &id).await
        }
        (Method::Post, [key]) => {
            let key = (*key).to_owned();
            run(req, env, ctx, &key).await
        }
        (_, [_] | ["callbacks", _]) => respond::error(405, "method_not_allowed", "use POST"),
        _ => respond::error(404, "not_found", "no such endpoint"),
    }
}

async fn run(req: &mut Request, env: &Env, ctx: &Context, key: &str) -> Result<Response> {
    let started = Date::now().as_millis();
    let s = match settings_or_answer(env)? {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let Some(body) = read_body(req).await? else {
        return hubspot_error(413, "request body too large", "action_body_too_large", None);
    };
    // The URL HubSpot signed: the configured public base URL with this path and query, or the
    // raw request URL (as the webhook ingress does).
    let raw_url = req.inner().url();
    let signed_url = s.signed_url(&raw_url, crate::ingress::path_and_query(&raw_url));
    let headers = crate::ingress::signature_headers(req)?;
    let signed = SignedRequest {
        method: "POST",
        uri: &signed_url,
        headers: &headers,
        body: &body,
    };
    let origin = req.url()?.origin().ascii_serialization();
    let prepared = match s.prepare(key, &signed, &origin, started) {
        Ok(p) => p,
        Err(ExecutionRefusal::Signature(e)) => {
            Line::warn("action_signature_rejected")
                .field("action", key)
                .field("code", e.code())
                .emit();
            return respond::error(401, e.public_code(), "request signature rejected");
        }
        Err(refusal) => {
            if let ExecutionRefusal::Refused { portal_id, .. } = &refusal {
                let (status, code) = (refusal.status(), refusal.code());
                log_execution(key, *portal_id, "refused", status, started, Some(code));
            }
            return raw_json(refusal.status(), refusal.hubspot_body().unwrap_or_default());
        }
    };
    let (definition, request) = (prepared.definition, &prepared.request);
    let portal = request.origin.portal_id;
    let callback_id = request.callback_id.clone();
    let admitted = ask(
        env,
        portal,
        &Ask::ExecutionAdmit {
            callback_id: callback_id.clone(),
            action: key.to_owned(),
            object: Some(request.object.key()),
            // Known before anything runs: admitted and recorded in one round trip.
            answer: prepared.known_answer(),
        },
    )
    .await;
    let admitted = match admitted {
        Ok(v) => v,
        // HubSpot retries a 5xx (docs/hubspot.md §3.3): nothing ran.
        Err(e) => {
            Line::error("action_store_failed")
                .field("error", e.to_string())
                .emit();
            return hubspot_error(503, "try again", "action_store_unavailable", None);
        }
    };
    // Core reads the reply: run it, or answer at once (a replay, a retry told BLOCK, a known
    // answer recorded).
    if let Some((outcome, body)) =
        ExecutionLedger::admitted(&admitted).map_err(|e| worker::Error::RustError(e.into()))?
    {
        log_execution(key, portal, outcome, 200, started, None);
        return raw_json(200, body.as_bytes().to_vec());
    }
    let answer = match prepared.step {
        ExecutionStep::Answer(a) => a,
        ExecutionStep::Call(call) => {
            lookup(env, ctx, definition, portal, &callback_id, *call).await
        }
    };
    let body = match finish_remote(env, portal, &callback_id, &answer).await {
        Ok(body) => body,
        Err(e) => {
            // Ran, not recorded: a retry is answered BLOCK and waits for its expiry (logged).
            Line::error("action_store_failed")
                .field("error", e.to_string())
                .emit();
            return hubspot_error(503, "try again", "action_store_unavailable", None);
        }
    };
    log_execution(key, portal, answer.state.as_str(), 200, started, None);
    raw_json(200, body.into_bytes())
}

fn log_execution(
    key: &str,
    portal: PortalId,
    outcome: &str,
    status: u16,
    started: u64,
    code: Option<&str>,
) {
    let mut line = Line::info("action_execution")
        .field("action", key)
        .field("portal_id", portal.get())
        .field("outcome", outcome)
        .field("status", status)
        .field(
            "duration_ms",
            Date::now().as_millis().saturating_sub(started),
        );
    if let Some(c) = code {
        line = line.field("code", c);
    }
    line.emit();
    // `key` names a configured action here (checked before any call), a closed set.
    let outcome = outcome.to_ascii_lowercase();
    crate::metrics::count(|m| {
        m.add(
            Counter::ActionExecutions,
            &[("action", key), ("outcome", &outcome)],
            1,
        );
    });
}

/// The lookup's reply, owned (the late path moves it into `waitUntil`).
enum Fetched {
    Answered(u16, Vec<u8>),
    Failed,
}

impl Fetched {
    fn reply(&self) -> LookupReply<'_> {
        match self {
            Self::Answered(status, body) => LookupReply::Answered {
                status: *status,
                body,
            },
            Self::Failed => LookupReply::Failed,
        }
    }
}

fn to_worker_request(request: &http::Request<Vec<u8>>) -> Result<Request> {
    let headers = Headers::new();
    for (name, value) in request.headers() {
        if let Ok(v) = value.to_str() {
            headers.set(name.as_str(), v)?;
        }
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(request.method().as_str().to_owned()))
        .with_headers(headers)
        .with_body(Some(
            js_sys::Uint8Array::from(request.body().as_slice()).into(),
        ));
    Request::new_with_init(&request.uri().to_string(), &init)
}

/// Calls the user's system, cut at [`LOOKUP_HARD_LIMIT_MS`].
async fn fetch_lookup(request: http::Request<Vec<u8>>) -> Fetched {
    let Ok(js_request) = to_worker_request(&request) else {
        return Fetched::Failed;
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = Box::pin(async {
        let mut response = Fetch::Request(js_request).send_with_signal(&signal).await?;
        let status = response.status_code();
        let body = response.bytes().await?;
        Ok::<_, worker::Error>((status, body))
    });
    let limit = Box::pin(Delay::from(Duration::from_millis(LOOKUP_HARD_LIMIT_MS)));
    let fetched = match select(exchange, limit).await {
        Either::Left((Ok((status, body)), _)) => Fetched::Answered(status, body),
        Either::Left((Err(_), _)) => Fetched::Failed,
        Either::Right(((), _)) => {
            controller.abort();
            Fetched::Failed
        }
    };
    fetched
}

/// The lookup within the budget: its answer, or `BLOCK` with the call going on in
/// `waitUntil` and its reply completing the execution.
async fn lookup(
    env: &Env,
    ctx: &Context,
    definition: &Definition,
    portal: PortalId,
    callback_id: &str,
    call: hubspot_edge_core::actions::LookupCall,
) -> Answer {
    let mut fetch = Box::pin(fetch_lookup(call.request));
    let budget = Box::pin(Delay::from(Duration::from_millis(call.budget_ms)));
    match select(&mut fetch, budget).await {
        Either::Left((reply, _)) => lookup_answer(definition, &reply.reply(), DEFAULT_EXPIRATION),
        Either::Right(_) => {
            let (env, owned, callback_id) =
                (env.clone(), definition.clone(), callback_id.to_owned());
            ctx.wait_until(crate::log::in_current(async move {
                let reply = fetch.await;
                // None: a 202, the user's system completes it with the callback.
                let Some(completion) = late_lookup_completion(&owned, &callback_id, &reply.reply())
                else {
                    return;
                };
                // Sent again while the BLOCK answer is not recorded yet (core's retry).
                let mut retry = LateCompletionRetry::default();
                loop {
                    match complete_remote(&env, portal, &completion).await {
                        Ok((status, code)) => {
                            if let Some(ms) = retry.again_after(status, &code) {
                                Delay::from(Duration::from_millis(ms)).await;
                                continue;
                            }
                            Line::info("action_lookup_late_reply")
                                .field("action", owned.key.as_str())
                                .field("status", status)
                                .field("code", code)
                                .emit();
                        }
                        Err(e) => {
                            Line::error("action_store_failed")
                                .field("error", e.to_string())
                                .emit();
                        }
                    }
                    return;
                }
            }));
            lookup_answer(definition, &LookupReply::Late, DEFAULT_EXPIRATION)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// POST /actions/callbacks/{callbackId}

async fn callback(req: &mut Request, env: &Env, callback_id: &str) -> Result<Response> {
    let s = match settings_or_answer(env)? {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let body = read_body(req).await?;
    let header = |name: &str| req.headers().get(name).ok().flatten().unwrap_or_default();
    let headers = [
        header("webhook-id"),
        header("webhook-timestamp"),
        header("webhook-signature"),
    ];
    // Core's checks in order; the Worker reads the record and queues the completion.
    let route = CallbackRoute::new(&s, callback_id, body.as_deref());
    let mut step = route.start(
        headers.each_ref().map(String::as_str),
        Date::now().as_millis() / 1000,
    );
    let answer = loop {
        step = match step {
            CallbackStep::Load { portal } => {
                let get = Ask::Get {
                    callback_id: callback_id.to_owned(),
                };
                let record = ask(env, portal, &get).await;
                let action = record.as_ref().map(|r| r["action"].as_str());
                route.on_record(portal, action.map_err(drop))
            }
            CallbackStep::Complete { portal, completion } => {
                let done = complete_remote(env, portal, &completion).await;
                break route
                    .on_completed(done.as_ref().map(|(s, c)| (*s, c.as_str())).map_err(drop));
            }
            CallbackStep::Answer(a) => break a,
        };
    };
    match answer {
        CallbackAnswer::Refused {
            status,
            code,
            message,
        } => respond::error(status, &code, &message),
        CallbackAnswer::Accepted => respond::json(
            202,
            &json!({"callbackId": callback_id, "state": "completing"}),
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Rules: `complete_action`.

/// At most this many executions blocked for one object are completed by one rule effect: one
/// batch completion's worth (docs/hubspot.md §3.4, 100 per call); an object enrolled in more
/// blocking workflows at once is not a case we know of (the rest wait for the next effect).
const MAX_BLOCKED_PER_OBJECT: u64 = hubspot_edge_core::actions::MAX_COMPLETION_BATCH as u64;

/// Completes the executions blocked for the object with the rule's `outputs`
/// (core's [`rule_completion`] per action); `Err((code, retryable))` when it could not look.
pub(crate) async fn complete_for_object(
    env: &Env,
    portal: PortalId,
    object_type: &str,
    object_id: &str,
    outputs: &Map<String, Value>,
) -> std::result::Result<ObjectCompletion, (&'static str, bool)> {
    let s = match settings(env) {
        Ok(Some(s)) => s,
        Ok(None) => return Err(("actions_off", false)),
        // The key and code are logged where the actions routes refuse (`config_invalid`).
        Err(_) => return Err(("config_invalid", true)),
    };
    let object = object_key(object_type, object_id);
    let blocked = ask(env, portal, &Ask::Blocked { object })
        .await
        .map_err(|_| ("action_store_unavailable", true))?;
    let (completions, mut done) = s.definitions.complete_blocked(&blocked, outputs);
    if completions.is_empty() {
        return Ok(done);
    }
    let mut items = Vec::with_capacity(completions.len());
    for c in completions {
        items.push(ManyItem {
            callback_id: c.callback_id,
            outputs: c.outputs,
        });
    }
    let answers = ask(env, portal, &Ask::CompleteMany { completions: items })
        .await
        .map_err(|_| ("action_store_unavailable", true))?;
    done.count(&answers);
    Ok(done)
}

// ---------------------------------------------------------------------------------------------
// Admin: publish, an execution's state.

/// `/admin/actions/…` (the admin token is checked by the caller); `segments` after `actions`.
pub(crate) async fn admin(req: &mut Request, env: &Env, segments: &[&str]) -> Result<Response> {
    match (req.method(), segments) {
        (Method::Post, ["publish"]) => {
            let origin = req.url()?.origin().ascii_serialization();
            publish(env, &origin).await
        }
        (Method::Get, ["executions", portal]) => {
            let portal = match portal.parse::<PortalId>() {
                Ok(portal) => portal,
                Err(e) => return respond::error(400, e.code(), &e.to_string()),
            };
            let mut v = ask(env, portal, &Ask::Waiting).await?;
            if let Value::Object(map) = &mut v {
                map.insert("portalId".into(), portal.get().into());
            }
            respond::json(200, &v)
        }
        (Method::Get, ["executions", portal, id]) => {
            let portal = match portal.parse::<PortalId>() {
                Ok(portal) => portal,
                Err(e) => return respond::error(400, e.code(), &e.to_string()),
            };
            let v = ask(
                env,
                portal,
                &Ask::Get {
                    callback_id: (*id).to_owned(),
                },
            )
            .await?;
            if v.is_null() {
                return respond::error(
                    404,
                    "callback_unknown",
                    "no execution with this callbackId",
                );
            }
            respond::json(200, &v)
        }
        _ => respond::error(404, "not_found", "no such admin endpoint"),
    }
}

/// One call to a developer-key endpoint (no bearer token), retried by core's policy.
async fn call_with_key(
    api: &HubSpotApi,
    request: &http::Request<Vec<u8>>,
    kind: RequestKind,
) -> std::result::Result<Value, String> {
    // The retry policy and the wait cap are core's `Call` (no token to refresh: the developer
    // API key rides in the request).
    let mut call = Call::new(kind, false, Call::MAX_WAIT_MS);
    loop {
        let sent = crate::hubspot::send(api, request, None).await;
        let now = Date::now().as_millis();
        let (outcome, value) = match sent {
            Ok((status, headers, body)) => {
                match hubspot_edge_core::api::interpret::<Value>(status, &headers, &body) {
                    Ok(v) => (Outcome::Success, Some(v)),
                    Err(e) => (Outcome::Failed(e), None),
                }
            }
            Err(o) => (o, None),
        };
        match call.answered(&outcome, now, js_sys::Math::random()) {
            CallStep::Accepted => return Ok(value.unwrap_or(Value::Null)),
            CallStep::Wait { ms } => Delay::from(Duration::from_millis(ms)).await,
            _ => {
                return Err(match outcome {
                    Outcome::Failed(e) => e.code().to_owned(),
                    Outcome::Timeout => "timeout".into(),
                    Outcome::Network => "network".into(),
                    Outcome::Success => "decode".into(),
                })
            }
        }
    }
}

/// `origin`: the publish request's own origin, the `actionUrl`s' base when `PUBLIC_BASE_URL`
/// is unset (a local run).
async fn publish(env: &Env, origin: &str) -> Result<Response> {
    let s = match settings_or_answer(env)? {
        Ok(s) => s,
        Err(r) => return Ok(r),
    };
    let base = s.public_base_url.as_deref().unwrap_or(origin);
    let Some(app_id) = var(env, "HUBSPOT_APP_ID").and_then(|v| v.trim().parse::<u64>().ok()) else {
        return respond::error(
            409,
            "hubspot_app_id_missing",
            "HUBSPOT_APP_ID (a number) is required",
        );
    };
    let Some(key) = var(env, "HUBSPOT_DEVELOPER_API_KEY") else {
        return respond::error(
            409,
            "developer_api_key_missing",
            "HUBSPOT_DEVELOPER_API_KEY is required",
        );
    };
    let api = HubSpotApi::from_env(env).map_err(|e| worker::Error::RustError(e.message()))?;
    let endpoints = DefinitionsApi {
        api: &api.api,
        app_id,
        developer_key: key.trim(),
    };
    let mut run = PublishRun::new(endpoints, &s.definitions, base);
    loop {
        match run.next_step() {
            PublishNext::Call(request, kind) => {
                run.answered(call_with_key(&api, &request, kind).await);
            }
            PublishNext::Failed(code) => {
                return respond::error(502, "hubspot_publish_failed", &code)
            }
            PublishNext::Done(report) => {
                Line::info("actions_published")
                    .field("created", report["created"].as_u64().unwrap_or(0))
                    .field("patched", report["patched"].as_u64().unwrap_or(0))
                    .field("unchanged", report["unchanged"].as_u64().unwrap_or(0))
                    .emit();
                return respond::json(200, &report);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Re-drive of dead-lettered completions.

/// `POST /admin/dead-letters/…/redrive` of action letters (payload `source: action`): each
/// completion goes back to its portal's batcher. The number re-driven.
///
/// # Errors
/// A letter that is not an action completion, or the state unreachable: nothing is deleted.
pub(crate) async fn redrive(env: &Env, payloads: Vec<Value>) -> Result<usize> {
    let mut by_portal: BTreeMap<PortalId, Vec<ActionLetter>> = BTreeMap::new();
    let n = payloads.len();
    for p in payloads {
        let letter: ActionLetter = serde_json::from_value(p)?;
        by_portal.entry(letter.portal_id).or_default().push(letter);
    }
    for (portal, letters) in by_portal {
        ask(env, portal, &Ask::Redrive { letters }).await?;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// The Durable Object.

// Externally tagged (`{"variant": {…}}`), not `tag = …`: an internally tagged enum is
// deserialised through serde's buffering `ContentDeserializer`, the largest generic cost in the
// wasm (BENCHMARKS.md, "Worker size"). Worker↔object only (one deployment): no stored format.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ask {
    ExecutionAdmit {
        callback_id: String,
        action: String,
        /// The enrolled object ([`ActionObject::key`]): rules complete by object.
        #[serde(default)]
        object: Option<String>,
        /// The answer, when it is known before anything runs: recorded at once.
        #[serde(default)]
        answer: Option<AnswerWire>,
    },
    Finish {
        callback_id: String,
        // Not `flatten` (serde's buffering `FlatMapDeserializer`): the answer is its own field.
        answer: AnswerWire,
    },
    Complete {
        callback_id: String,
        outputs: Map<String, Value>,
        success: bool,
    },
    Get {
        callback_id: String,
    },
    /// The executions blocked for an object ([`ActionObject::key`]).
    Blocked {
        object: String,
    },
    /// Completes each with `SUCCESS` (a rule's `complete_action`).
    CompleteMany {
        completions: Vec<ManyItem>,
    },
    Redrive {
        letters: Vec<ActionLetter>,
    },
    /// The executions waiting (blocked, or a completion queued), oldest change first.
    Waiting,
}

#[derive(Deserialize)]
struct WaitingRow {
    callback_id: String,
    record: String,
    expires_ms: Option<i64>,
    updated_ms: i64,
}

/// One completion of [`Ask::CompleteMany`].
#[derive(Debug, Serialize, Deserialize)]
struct ManyItem {
    callback_id: String,
    outputs: Map<String, Value>,
}

/// Asks the portal's object; its JSON answer (`null` for "none"), or an error when it failed.
async fn ask(env: &Env, portal: PortalId, ask: &Ask) -> Result<Value> {
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(&portal.to_string())?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(serde_json::to_string(ask)?.into()));
    let mut r = stub
        .fetch_with_request(Request::new_with_init(
            &format!("https://actions/{portal}"),
            &init,
        )?)
        .await?;
    if r.status_code() >= 500 {
        return Err(worker::Error::RustError(format!(
            "the action store answered {}",
            r.status_code()
        )));
    }
    let mut v: Value = r.json().await?;
    if let Some(m) = v.as_object_mut() {
        let n = m.remove("blockedCount").and_then(|n| n.as_u64());
        let at = m.remove("blockedAtMs").and_then(|n| n.as_u64());
        if let (Some(n), Some(at_ms)) = (n, at) {
            blocked_gauge(portal, n, at_ms);
        }
    }
    Ok(v)
}

/// The gauge of blocked executions waiting, per portal (one object per portal knows its own).
///
/// `at_ms` is the object's clock when it counted, not the asking isolate's: two answers that
/// reach their isolates in the other order must not leave the older count as the gauge's last
/// value (a gauge keeps the value with the latest time).
fn blocked_gauge(portal: PortalId, n: u64, at_ms: u64) {
    let portal = portal.to_string();
    crate::metrics::count(|m| {
        m.set(
            Gauge::ActionsBlocked,
            &[("portal", &portal)],
            i64::try_from(n).unwrap_or(i64::MAX),
            at_ms,
        );
    });
}

async fn finish_remote(
    env: &Env,
    portal: PortalId,
    callback_id: &str,
    answer: &Answer,
) -> Result<String> {
    let v = ask(
        env,
        portal,
        &Ask::Finish {
            callback_id: callback_id.to_owned(),
            answer: AnswerWire::from(answer),
        },
    )
    .await?;
    v["body"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| worker::Error::RustError("no body from the action store".into()))
}

/// `(status, code)`: 202 when the completion is queued, else the refusal's.
async fn complete_remote(
    env: &Env,
    portal: PortalId,
    completion: &Completion,
) -> Result<(u16, String)> {
    let v = ask(
        env,
        portal,
        &Ask::Complete {
            callback_id: completion.callback_id.clone(),
            outputs: completion.outputs.clone(),
            success: completion.state == ExecutionState::Success,
        },
    )
    .await?;
    let status = v["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .unwrap_or(500);
    Ok((status, v["code"].as_str().unwrap_or_default().to_owned()))
}

/// The Durable Object. See the [module docs](self).
#[durable_object]
pub struct ActionExecutions {
    state: State,
    env: Env,
}

impl std::fmt::Debug for ActionExecutions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionExecutions").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct RecordRow {
    callback_id: String,
    record: String,
}

#[derive(Deserialize)]
struct QueuedRow {
    callback_id: String,
    queued_ms: i64,
}

#[derive(Deserialize)]
struct AtRow {
    at: Option<i64>,
}

fn int(v: u64) -> Result<SqlStorageValue> {
    SqlStorageValue::try_from_i64(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Durable Object SQLite: at most 100 bound parameters per query
/// (<https://developers.cloudflare.com/durable-objects/platform/limits/>).
const MAX_PARAMS: usize = 100;

impl ActionExecutions {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    fn load(&self, callback_id: &str) -> Result<Option<ExecutionRecord>> {
        let rows: Vec<RecordRow> = self
            .sql()
            .exec(
                "SELECT callback_id, record FROM executions WHERE callback_id = ?",
                vec![SqlStorageValue::from(callback_id)],
            )?
            .to_array()?;
        match rows.into_iter().next() {
            Some(r) => Ok(Some(serde_json::from_str(&r.record)?)),
            None => Ok(None),
        }
    }

    fn load_many(&self, ids: &[String]) -> Result<BTreeMap<String, ExecutionRecord>> {
        let mut out = BTreeMap::new();
        for chunk in ids.chunks(MAX_PARAMS) {
            let marks = vec!["?"; chunk.len()].join(",");
            let rows: Vec<RecordRow> = self
                .sql()
                .exec(
                    &format!(
                        "SELECT callback_id, record FROM executions WHERE callback_id IN ({marks})"
                    ),
                    chunk
                        .iter()
                        .map(|i| SqlStorageValue::from(i.as_str()))
                        .collect::<Vec<_>>(),
                )?
                .to_array()?;
            for r in rows {
                out.insert(r.callback_id, serde_json::from_str(&r.record)?);
            }
        }
        Ok(out)
    }

    fn save(&self, callback_id: &str, record: &ExecutionRecord, now: u64) -> Result<()> {
        let queued = match record {
            ExecutionRecord::Completing { queued_ms, .. } => Some(*queued_ms),
            _ => None,
        };
        let opt = |v: Option<u64>| -> Result<SqlStorageValue> {
            match v {
                Some(n) => int(n),
                None => Ok(SqlStorageValue::Null),
            }
        };
        self.sql().exec(
            "INSERT INTO executions (callback_id, record, expires_ms, queued_ms, updated_ms) \
             VALUES (?, ?, ?, ?, ?) ON CONFLICT(callback_id) DO UPDATE SET \
             record = excluded.record, expires_ms = excluded.expires_ms, \
             queued_ms = excluded.queued_ms, updated_ms = excluded.updated_ms",
            vec![
                SqlStorageValue::from(callback_id),
                SqlStorageValue::from(serde_json::to_string(record)?),
                opt(record.expires_at_ms())?,
                opt(queued)?,
                int(now)?,
            ],
        )?;
        Ok(())
    }

    /// Sets the alarm at `at_ms` unless one is set sooner (and still ahead).
    async fn alarm_at(&self, at_ms: u64) -> Result<()> {
        let storage = self.state.storage();
        let current = storage
            .get_alarm()
            .await?
            .map(|c| u64::try_from(c).unwrap_or(0));
        let now = Date::now().as_millis();
        if ExecutionLedger::new(now).keeps_alarm(current, at_ms) {
            return Ok(());
        }
        storage
            .set_alarm(i64::try_from(at_ms.saturating_sub(now)).unwrap_or(0))
            .await
    }

    /// The portal this object keeps (written by the first request it gets).
    fn portal(&self) -> Result<PortalId> {
        let rows: Vec<AtRow> = self
            .sql()
            .exec("SELECT v AS at FROM meta WHERE k = 'portal'", None)?
            .to_array()?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.at)
            .and_then(|p| u64::try_from(p).ok())
            .map_or(PortalId::new(0), PortalId::new))
    }

    fn window_ms(&self) -> u64 {
        ACTIONS_COMPLETE_WINDOW_MS
            .parse(var(&self.env, ACTIONS_COMPLETE_WINDOW_MS.key).as_deref())
            .unwrap_or(ACTIONS_COMPLETE_WINDOW_MS.default)
    }

    fn pending(&self) -> Result<Vec<Pending>> {
        let rows: Vec<QueuedRow> = self
            .sql()
            .exec(
                "SELECT callback_id, queued_ms FROM executions WHERE queued_ms IS NOT NULL",
                None,
            )?
            .to_array()?;
        Ok(rows
            .into_iter()
            .map(|r| Pending {
                callback_id: r.callback_id,
                queued_ms: u64::try_from(r.queued_ms).unwrap_or(0),
            })
            .collect())
    }

    /// Sets the alarm for core's next time (the batcher's, `retry_at`, or a block's expiry).
    async fn schedule(&self, retry_at: Option<u64>) -> Result<()> {
        let rows: Vec<AtRow> = self
            .sql()
            .exec(
                "SELECT MIN(expires_ms) AS at FROM executions WHERE expires_ms IS NOT NULL",
                None,
            )?
            .to_array()?;
        let expiry = rows
            .into_iter()
            .next()
            .and_then(|r| r.at)
            .and_then(|a| u64::try_from(a).ok());
        let next =
            ExecutionLedger::next_alarm(&self.pending()?, self.window_ms(), retry_at, expiry);
        if let Some(at) = next {
            self.alarm_at(at).await?;
        }
        Ok(())
    }

    /// Writes what core's ledger decided; its reply.
    fn apply(&self, callback_id: &str, step: LedgerStep, now: u64) -> Result<Value> {
        if let Some(record) = &step.save {
            self.save(callback_id, record, now)?;
        }
        Ok(step.reply)
    }

    async fn on_ask(&self, ask: Ask) -> Result<Value> {
        let now = Date::now().as_millis();
        let ledger = ExecutionLedger::new(now);
        match ask {
            Ask::ExecutionAdmit {
                callback_id,
                action,
                object,
                answer,
            } => {
                let existing = self.load(&callback_id)?;
                if let Some(object) = object {
                    self.sql().exec(
                        "INSERT INTO execution_objects (callback_id, object_key) VALUES (?, ?) \
                         ON CONFLICT(callback_id) DO NOTHING",
                        vec![
                            SqlStorageValue::from(callback_id.as_str()),
                            SqlStorageValue::from(object),
                        ],
                    )?;
                }
                let step = ledger.admit(
                    existing.as_ref(),
                    &action,
                    answer.map(AnswerWire::into_answer),
                );
                let schedule = step.schedule;
                let reply = self.apply(&callback_id, step, now)?;
                if schedule {
                    self.schedule(None).await?;
                }
                Ok(reply)
            }
            Ask::Finish {
                callback_id,
                answer,
            } => {
                let current = self.load(&callback_id)?;
                let step = ledger.finish(current.as_ref(), &answer.into_answer());
                let reply = self.apply(&callback_id, step, now)?;
                self.schedule(None).await?;
                Ok(reply)
            }
            Ask::Complete {
                callback_id,
                outputs,
                success,
            } => {
                let completion = Completion {
                    callback_id,
                    outputs,
                    state: if success {
                        ExecutionState::Success
                    } else {
                        ExecutionState::FailContinue
                    },
                };
                let answer = self.complete_one(&ledger, &completion, now)?;
                self.schedule(None).await?;
                Ok(answer)
            }
            Ask::CompleteMany { completions } => {
                let mut answers = Map::new();
                for c in completions {
                    let completion = Completion {
                        callback_id: c.callback_id,
                        outputs: c.outputs,
                        state: ExecutionState::Success,
                    };
                    answers.insert(
                        completion.callback_id.clone(),
                        self.complete_one(&ledger, &completion, now)?,
                    );
                }
                self.schedule(None).await?;
                Ok(Value::Object(answers))
            }
            Ask::Get { callback_id } => {
                Ok(ledger.get(&callback_id, self.load(&callback_id)?.as_ref()))
            }
            Ask::Blocked { object } => {
                let rows: Vec<RecordRow> = self
                    .sql()
                    .exec(
                        "SELECT e.callback_id AS callback_id, e.record AS record \
                         FROM execution_objects o JOIN executions e USING (callback_id) \
                         WHERE o.object_key = ? LIMIT ?",
                        vec![SqlStorageValue::from(object), int(MAX_BLOCKED_PER_OBJECT)?],
                    )?
                    .to_array()?;
                let mut records: Vec<(String, ExecutionRecord)> = Vec::with_capacity(rows.len());
                for r in rows {
                    records.push((r.callback_id, serde_json::from_str(&r.record)?));
                }
                Ok(ledger.blocked(records))
            }
            Ask::Waiting => {
                // No values: the callback id, the action key, the state and times only.
                let rows: Vec<WaitingRow> = self
                    .sql()
                    .exec(
                        "SELECT callback_id, record, expires_ms, updated_ms FROM executions \
                         WHERE expires_ms IS NOT NULL OR queued_ms IS NOT NULL \
                         ORDER BY updated_ms LIMIT ?",
                        vec![int(ExecutionLedger::MAX_WAITING as u64 + 1)?],
                    )?
                    .to_array()?;
                Ok(ledger.waiting(rows.into_iter().map(|r| {
                    let record = serde_json::from_str(&r.record).ok();
                    (r.callback_id, record, r.expires_ms, r.updated_ms)
                })))
            }
            Ask::Redrive { letters } => {
                for l in letters {
                    let id = l.callback_id.clone();
                    if let Some(record) = ledger.redrive(self.load(&id)?.as_ref(), l) {
                        self.save(&id, &record, now)?;
                    }
                }
                self.schedule(None).await?;
                Ok(json!({"redriven": true}))
            }
        }
    }

    /// Queues `completion` for the batcher: `{"status": 202}`, or the refusal's status and code.
    fn complete_one(
        &self,
        ledger: &ExecutionLedger,
        completion: &Completion,
        now: u64,
    ) -> Result<Value> {
        let existing = self.load(&completion.callback_id)?;
        let step = ledger.complete(existing.as_ref(), completion);
        self.apply(&completion.callback_id, step, now)
    }

    /// Blocked executions waiting for a completion (only a block has an expiry).
    fn blocked(&self) -> Result<u64> {
        let rows: Vec<AtRow> = self
            .sql()
            .exec(
                "SELECT COUNT(*) AS at FROM executions WHERE expires_ms IS NOT NULL",
                None,
            )?
            .to_array()?;
        Ok(rows
            .into_iter()
            .next()
            .and_then(|r| r.at)
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0))
    }

    /// Expires blocks, drops old finished records, sends the due batches (core's
    /// [`CompletionFlush`]).
    async fn flush(&self) -> Result<()> {
        let now = Date::now().as_millis();
        let expired: Vec<RecordRow> = self
            .sql()
            .exec(
                "SELECT callback_id, record FROM executions WHERE expires_ms IS NOT NULL AND expires_ms <= ?",
                vec![int(now)?],
            )?
            .to_array()?;
        for row in expired {
            let record: ExecutionRecord = serde_json::from_str(&row.record)?;
            if let Some(e) = expire(&record, now) {
                self.save(&row.callback_id, &e, now)?;
                crate::metrics::count(|m| {
                    m.add(Counter::ActionCompletions, &[("outcome", "expired")], 1);
                });
            }
        }
        self.sql().exec(
            "DELETE FROM executions WHERE updated_ms < ? AND expires_ms IS NULL AND queued_ms IS NULL",
            vec![int(ExecutionLedger::new(now).forget_before())?],
        )?;
        self.sql().exec(
            "DELETE FROM execution_objects WHERE callback_id NOT IN \
             (SELECT callback_id FROM executions)",
            None,
        )?;
        let mut plan = CompletionFlush::new(&self.pending()?, now, self.window_ms());
        let mut wave = plan.next_wave();
        if !wave.is_empty() {
            let api = HubSpotApi::from_env(&self.env)
                .map_err(|e| worker::Error::RustError(e.message()))?;
            while !wave.is_empty() {
                for fate in join_all(wave.iter().map(|b| self.send(&api, b))).await {
                    plan.settled(fate?.as_ref());
                }
                wave = plan.next_wave();
            }
        }
        self.schedule(plan.retry_at(Date::now().as_millis())).await
    }

    /// One batch completion: its fate (`None`: nothing was left to send in it), the records
    /// and dead letters it decided written.
    async fn send(&self, api: &HubSpotApi, ids: &[String]) -> Result<Option<BatchFate>> {
        let records = self.load_many(ids)?;
        let completions: Vec<(String, &ExecutionRecord, Completion)> = ids
            .iter()
            .filter_map(|id| {
                let r = records.get(id)?;
                r.completion(id).map(|c| (id.clone(), r, c))
            })
            .collect();
        if completions.is_empty() {
            return Ok(None);
        }
        let list: Vec<Completion> = completions.iter().map(|(_, _, c)| c.clone()).collect();
        let sent_ids: Vec<String> = completions.iter().map(|(id, _, _)| id.clone()).collect();
        let request =
            batch_request(&api.api, &list).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let result = execute_api::<Value>(api, &self.env, RequestKind::Write, &request).await;
        let now = Date::now().as_millis();
        let fate = BatchFate::of_call(&sent_ids, result.as_ref().map(drop), now, 0.5);
        // HubSpot never answered for good (throttled, no token, the gate down).
        if let Err(e) = &result {
            if !matches!(e, CallError::GaveUp { .. }) {
                Line::warn("action_completion_unsent")
                    .field("completions", list.len())
                    .field("error", format!("{e:?}"))
                    .emit();
            }
        }
        Line::info("action_completion_batch")
            .field("completions", list.len())
            .field("outcome", fate.code())
            .emit();
        match &fate {
            BatchFate::Completed => {
                for (id, r, _) in &completions {
                    self.save(id, &r.settled(Ok(())), now)?;
                    if let ExecutionRecord::Completing { queued_ms, .. } = r {
                        let took = now.saturating_sub(*queued_ms);
                        crate::metrics::count(|m| {
                            m.observe(Histogram::ActionCompletionLatency, &[], took);
                        });
                    }
                }
                crate::metrics::count(|m| {
                    let n = completions.len() as u64;
                    m.add(Counter::ActionCompletions, &[("outcome", "completed")], n);
                });
            }
            BatchFate::Retry { .. } => {}
            BatchFate::DeadLetter { code } => self.dead_letter(&completions, code, now).await?,
            BatchFate::Split { failed, code, .. } => {
                let failed: Vec<_> = completions
                    .into_iter()
                    .filter(|(id, _, _)| failed.contains(id))
                    .collect();
                self.dead_letter(&failed, code, now).await?;
            }
        }
        Ok(Some(fate))
    }

    /// Each completion to the dead-letter store (core's [`ActionLetter`], re-drivable with its
    /// outputs), its record `failed` with `code`.
    async fn dead_letter(
        &self,
        completions: &[(String, &ExecutionRecord, Completion)],
        code: &str,
        now: u64,
    ) -> Result<()> {
        if completions.is_empty() {
            return Ok(());
        }
        let portal = self.portal()?;
        let mut texts = Vec::with_capacity(completions.len());
        for (_, r, c) in completions {
            let letter = ActionLetter::new(portal, r, c, code);
            texts.push(serde_json::to_string(&letter.message(now)?)?);
        }
        crate::queue::send_all(&self.env.queue(crate::queue::DEAD_LETTERS)?, texts).await?;
        for (id, r, _) in completions {
            self.save(id, &r.settled(Err(code)), now)?;
        }
        crate::metrics::count(|m| {
            let n = completions.len() as u64;
            m.add(Counter::ActionCompletions, &[("outcome", "failed")], n);
        });
        Ok(())
    }
}

impl DurableObject for ActionExecutions {
    fn new(state: State, env: Env) -> Self {
        // Idempotent: runs on every start of the object.
        let sql = state.storage().sql();
        let created = [
            "CREATE TABLE IF NOT EXISTS executions (callback_id TEXT PRIMARY KEY, \
             record TEXT NOT NULL, expires_ms INTEGER, queued_ms INTEGER, \
             updated_ms INTEGER NOT NULL)",
            "CREATE INDEX IF NOT EXISTS executions_queued ON executions (queued_ms)",
            "CREATE INDEX IF NOT EXISTS executions_expires ON executions (expires_ms)",
            "CREATE INDEX IF NOT EXISTS executions_updated ON executions (updated_ms)",
            "CREATE TABLE IF NOT EXISTS meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL)",
            // Which object each execution is for (`ActionObject::key`): rules complete the
            // executions blocked for an object. Its own table, so that objects created before
            // it keep their schema.
            "CREATE TABLE IF NOT EXISTS execution_objects (callback_id TEXT PRIMARY KEY, \
             object_key TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS execution_objects_key ON execution_objects (object_key)",
        ]
        .iter()
        .try_for_each(|q| sql.exec(q, None).map(|_| ()));
        if let Err(e) = created {
            Line::error("action_store_init_failed")
                .field("error", e.to_string())
                .emit();
        }
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            if let Ok(portal) = req.path().trim_start_matches('/').parse::<PortalId>() {
                self.sql().exec(
                    "INSERT INTO meta (k, v) VALUES ('portal', ?) ON CONFLICT(k) DO NOTHING",
                    vec![int(portal.get())?],
                )?;
            }
            let Ok(ask) = serde_json::from_str::<Ask>(&req.text().await?) else {
                return Response::error("bad action request", 400);
            };
            match self.on_ask(ask).await {
                Ok(mut v) => {
                    // The blocked executions waiting, for the metrics gauge the asking isolate
                    // sets ([`blocked_gauge`]): one indexed count, no extra call.
                    if let (Value::Object(map), Ok(n)) = (&mut v, self.blocked()) {
                        map.insert("blockedCount".into(), n.into());
                        map.insert("blockedAtMs".into(), Date::now().as_millis().into());
                    }
                    Response::from_json(&v)
                }
                Err(e) => {
                    Line::error("action_store_failed")
                        .field("error", e.to_string())
                        .emit();
                    Response::error("action store failed", 503)
                }
            }
        })
        .await
    }

    async fn alarm(&self) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            let flushed = self.flush().await;
            // What the alarm counted (completions, expiries, HubSpot calls) and the blocked count
            // after it: one update of the metrics object per alarm, not per completion.
            if let Ok(n) = self.blocked() {
                blocked_gauge(
                    self.portal().unwrap_or(PortalId::new(0)),
                    n,
                    Date::now().as_millis(),
                );
            }
            crate::metrics::flush_pending(&self.env).await;
            if let Err(e) = flushed {
                Line::error("action_flush_failed")
                    .field("error", e.to_string())
                    .emit();
                // Nothing is lost (records change only after HubSpot answered); again soon.
                self.alarm_at(Date::now().as_millis() + RETRY_DELAY_MS)
                    .await?;
            }
            Response::ok("flushed")
        })
        .await
    }
}
