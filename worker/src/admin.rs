//! Operator endpoints under `/admin`, all behind `Authorization: Bearer $ADMIN_TOKEN`.
//!
//! - `GET  /admin/dead-letters?limit=&cursor=&reason=`: list (oldest first), summaries only.
//! - `GET  /admin/dead-letters/{id}`: one dead letter with its payload.
//! - `DELETE /admin/dead-letters/{id}`: remove one.
//! - `POST /admin/dead-letters/{id}/redrive`: queue it again and remove it from the store. A
//!   sync letter (a record the outbound sync could not deliver) is not queued: its type's sync
//!   coordinator reads the record again ([`crate::sync::recheck`]); an inbound letter (a record
//!   HubSpot refused on `POST /sync/{type}`) goes back to its type's pending writes
//!   ([`crate::sync_inbound::redrive`]).
//! - `POST /admin/dead-letters/redrive?cursor=&reason=&limit=`: the same for all, resumable:
//!   a bounded slice per call (core's [`plan_redrive`]), then call again with the returned
//!   `cursor` until it is `null`. What cannot be re-driven is skipped, reported and left in place.
//! - `POST /admin/faults/dead-letter-store`, `POST /admin/faults/record-store`: only with
//!   `FAULT_INJECTION=true` (tests): the next N store writes (dead letters, record commits) fail;
//!   `POST /admin/faults/inbound-commit-delay`: the next N inbound commits wait 2 s.
//! - `GET  /admin/records/{portal}/{objectType}/{id}`: an object's record-store version and
//!   whether a snapshot is kept (never its values).
//! - `/admin/hubspot/…`: HubSpot API calls through the executor (see [`crate::hubspot`]).

use futures_util::future::join_all;
use hubspot_edge_core::auth::bearer_matches;
use hubspot_edge_core::dead_letter::{
    plan_redrive, ListQuery, Listed, RedriveQuery, RedriveRoute, SkipReason,
};
use hubspot_edge_core::event::parse_batch;
use hubspot_edge_core::filter::Filter;
use hubspot_edge_core::ingress::event_body_key;
use hubspot_edge_core::sync::SyncLetter;
use serde_json::{json, Value};
use worker::kv::KvStore;
use worker::{Env, Method, Request, Response, Result};

use crate::config;
use crate::ingress::{config_error, enqueue};
use crate::queue::{self, EventMessage};
use crate::respond;
use crate::store::{self, DeadLetter};

/// Keys listed per re-drive call: KV's largest page, one operation.
const REDRIVE_LIST_PAGE: u64 = 1000;
/// KV reads and deletes in flight at once (a Worker invocation keeps at most 6 connections).
const KV_CONCURRENCY: usize = 6;

pub(crate) async fn handle(
    req: &mut Request,
    env: &Env,
    path: &str,
    request_id: &str,
) -> Result<Response> {
    let token = match config::admin_token(env) {
        Ok(t) => t,
        Err(e) => return config_error(&e, request_id),
    };
    let authorization = req.headers().get("authorization")?;
    if !bearer_matches(authorization.as_deref(), &token) {
        return respond::error(401, "unauthorized", "missing or invalid admin token");
    }
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    if let ["hubspot", rest @ ..] = segments.as_slice() {
        return crate::hubspot::handle(req, env, rest, request_id).await;
    }
    if let ["actions", rest @ ..] = segments.as_slice() {
        return crate::actions::admin(req, env, rest).await;
    }
    if let ["sync", rest @ ..] = segments.as_slice() {
        return crate::sync::admin(req, env, rest).await;
    }
    if let ["faults", rest @ ..] = segments.as_slice() {
        return faults(req, env, rest).await;
    }
    if let (Method::Get, ["metrics" | "metrics.json"]) = (req.method(), segments.as_slice()) {
        let url = req.url()?;
        let query = url.query().map_or_else(String::new, |q| format!("?{q}"));
        return crate::metrics::read(env, &format!("{}{query}", url.path())).await;
    }
    let kv = env.kv(store::STATE)?;
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["dead-letters"]) => list(req, &kv).await,
        (Method::Post, ["dead-letters", "redrive"]) => redrive_all(req, env, &kv).await,
        (Method::Get, ["dead-letters", id]) => match store::get_dead_letter(&kv, id).await? {
            Some(letter) => respond::json(200, &serde_json::to_value(letter)?),
            None => not_found(),
        },
        (Method::Delete, ["dead-letters", id]) => {
            // One read, so that a wrong id is a 404 rather than a silent no-op.
            if store::get_dead_letter(&kv, id).await?.is_none() {
                return not_found();
            }
            store::delete_dead_letter(&kv, id).await?;
            crate::dead_letters::removed(&kv, "deleted", &[id]).await;
            respond::json(200, &json!({ "deleted": id }))
        }
        (Method::Post, ["dead-letters", id, "redrive"]) => {
            let Some(letter) = store::get_dead_letter(&kv, id).await? else {
                return not_found();
            };
            match prepare(&letter) {
                Err(skip) => respond::error(
                    409,
                    skip.code(),
                    "this dead letter cannot be re-driven as it is",
                ),
                Ok(ready) => {
                    let queued = match ready {
                        Ready::Event(message) => {
                            let message = by_reference_if_large(&kv, message).await?;
                            queue::send_one(&env.queue(queue::EVENTS)?, message, 0).await?;
                            1
                        }
                        Ready::Batch(body) => enqueue_batch(env, &letter, &body).await?,
                        Ready::Inbound(payload) => {
                            crate::sync_inbound::redrive(env, vec![payload]).await?
                        }
                        Ready::Action(payload) => {
                            crate::actions::redrive(env, vec![payload]).await?
                        }
                        Ready::Sync(sync) => {
                            let taken = crate::sync::recheck(env, &sync).await?;
                            if taken.status_code() >= 300 {
                                return Ok(taken);
                            }
                            0
                        }
                    };
                    store::delete_dead_letter(&kv, &letter.id).await?;
                    crate::dead_letters::removed(&kv, "redriven", &[&letter.id]).await;
                    respond::json(202, &json!({ "redriven": 1, "queued": queued }))
                }
            }
        }
        (Method::Get, ["records", portal, object_type, id]) => {
            crate::records::admin_get(env, portal, object_type, id).await
        }
        (_, ["dead-letters", ..]) => {
            respond::error(405, "method_not_allowed", "method not allowed")
        }
        _ => respond::error(404, "not_found", "no such admin endpoint"),
    }
}

fn not_found() -> Result<Response> {
    respond::error(404, "dead_letter_not_found", "no dead letter with this id")
}

/// The query parameters as pairs.
fn query(req: &Request) -> Result<Vec<(String, String)>> {
    Ok(req
        .url()?
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect())
}

async fn list(req: &Request, kv: &KvStore) -> Result<Response> {
    let mut q = ListQuery::parse(&query(req)?);
    // One KV list per call; with `reason`, a page may hold fewer (or no) items: follow the
    // cursor until it is null.
    let (items, next) = store::list_dead_letters(kv, q.limit, q.cursor.take()).await?;
    let items: Vec<Value> = items
        .into_iter()
        .filter(|(_, summary)| q.keeps(summary.as_ref().map(|s| s.reason.as_str())))
        .map(|(id, summary)| {
            let mut v = summary
                .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
                .unwrap_or(json!({}));
            if let Value::Object(map) = &mut v {
                map.insert("id".into(), id.into());
            }
            v
        })
        .collect();
    respond::json(200, &json!({ "items": items, "cursor": next }))
}

/// One bounded slice of "re-drive all".
///
/// KV operations per call (an invocation may make 1,000): 1 list (≤ 1,000 keys) + ≤ 100 gets +
/// ≤ 100 deletes + ≤ 10 lists for the store size gauge (core's `SIZE_PAGES`) = ≤ 211. Queue sends: the event letters go out together, ≤ 100 messages and
/// 256 KB per `sendBatch` (core's 1 MiB budget per call: ≤ ~5 calls), plus the sends of each
/// whole webhook body re-driven (usually one).
///
/// Order per letter: queued first, deleted after. A failure in between leaves a letter that was
/// queued still in the store; re-driving it again queues it again under the same dedupe key
/// (the event's own: core's `DedupeKey::of`, kept from the original message), and the consumer's
/// `seen:` check delivers it once.
async fn redrive_all(req: &Request, env: &Env, kv: &KvStore) -> Result<Response> {
    let RedriveQuery {
        cursor,
        reason,
        limits,
    } = match RedriveQuery::parse(&query(req)?) {
        Ok(q) => q,
        Err(e) => return respond::error(400, e.code(), &e.to_string()),
    };
    let (items, next_page) =
        store::list_dead_letters(kv, REDRIVE_LIST_PAGE, cursor.page.clone()).await?;
    let listed: Vec<Listed<'_>> = items
        .iter()
        .map(|(id, summary)| Listed {
            id,
            kind: summary.as_ref().map(|s| s.kind.into()),
            reason: summary.as_ref().map(|s| s.reason.as_str()),
            bytes: summary.as_ref().and_then(|s| s.bytes),
        })
        .collect();
    let plan = plan_redrive(
        &listed,
        cursor.page.as_deref(),
        next_page.as_deref(),
        cursor.after.as_deref(),
        reason.as_deref(),
        limits,
    );
    let mut skipped: Vec<Value> = plan
        .skip
        .iter()
        .map(|(id, why)| json!({ "id": id, "code": why.code() }))
        .collect();

    // Read what the plan takes, a few at a time, and prepare each.
    let mut letters = Vec::with_capacity(plan.take.len());
    for chunk in plan.take.chunks(KV_CONCURRENCY) {
        let read = join_all(chunk.iter().map(|id| store::get_dead_letter(kv, id))).await;
        for letter in read {
            letters.push(letter?);
        }
    }
    let mut gone = 0usize;
    let mut event_ids = Vec::new();
    let mut event_messages = Vec::new();
    let mut batches = Vec::new();
    let (mut inbound, mut inbound_ids) = (Vec::new(), Vec::new());
    let (mut actions, mut action_ids) = (Vec::new(), Vec::new());
    let mut syncs = Vec::new();
    for (id, letter) in plan.take.iter().zip(letters) {
        let Some(letter) = letter else {
            // Deleted or expired since the listing.
            gone += 1;
            continue;
        };
        match prepare(&letter) {
            Err(skip) => skipped.push(json!({ "id": id, "code": skip.code() })),
            Ok(Ready::Event(message)) => {
                event_ids.push(letter.id.clone());
                event_messages.push(by_reference_if_large(kv, message).await?);
            }
            Ok(Ready::Batch(body)) => batches.push((letter, body)),
            Ok(Ready::Inbound(payload)) => {
                inbound_ids.push(letter.id.clone());
                inbound.push(payload);
            }
            Ok(Ready::Sync(sync)) => syncs.push((letter.id.clone(), sync)),
            Ok(Ready::Action(payload)) => {
                action_ids.push(letter.id.clone());
                actions.push(payload);
            }
        }
    }
    if !inbound.is_empty() {
        crate::sync_inbound::redrive(env, inbound).await?;
    }
    if !actions.is_empty() {
        crate::actions::redrive(env, actions).await?;
    }

    // Queue, then delete.
    let mut queued = event_messages.len();
    if !event_messages.is_empty() {
        queue::send_all(&env.queue(queue::EVENTS)?, event_messages).await?;
    }
    let mut redriven_ids = event_ids;
    queued += inbound_ids.len() + action_ids.len();
    redriven_ids.extend(inbound_ids);
    redriven_ids.extend(action_ids);
    for (letter, body) in batches {
        queued += enqueue_batch(env, &letter, &body).await?;
        redriven_ids.push(letter.id);
    }
    // Sync records: one coordinator request each (≤ `limit` letters per call); a refusal
    // leaves the letter in the store, reported with its code.
    for (id, sync) in syncs {
        let mut taken = crate::sync::recheck(env, &sync).await?;
        if taken.status_code() < 300 {
            redriven_ids.push(id);
        } else {
            let code = taken
                .json::<Value>()
                .await
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_owned))
                .unwrap_or_else(|| "sync_recheck_failed".into());
            skipped.push(json!({ "id": id, "code": code }));
        }
    }
    for chunk in redriven_ids.chunks(KV_CONCURRENCY) {
        for deleted in join_all(chunk.iter().map(|id| store::delete_dead_letter(kv, id))).await {
            deleted?;
        }
    }
    let ids: Vec<&str> = redriven_ids.iter().map(String::as_str).collect();
    crate::dead_letters::removed(kv, "redriven", &ids).await;
    respond::json(
        202,
        &json!({
            "redriven": redriven_ids.len(),
            "queued": queued,
            "skipped": skipped,
            "gone": gone,
            "remaining": plan.remaining,
            "cursor": plan.next.map(|c| c.encode()),
        }),
    )
}

/// A letter ready to be queued again.
enum Ready {
    /// The `EVENTS` message of one event (or of a rule's effect).
    Event(String),
    /// A whole webhook body to enqueue like the ingress does.
    Batch(Vec<u8>),
    /// A record HubSpot refused on an inbound write: back to its type's pending writes.
    Inbound(Value),
    /// A sync record to read again (its type's coordinator takes it).
    Sync(SyncLetter),
    /// A workflow action's completion HubSpot refused: back to its portal's batcher.
    Action(Value),
}

/// What re-driving `letter` takes (core's [`RedriveRoute`]), or why it cannot be re-driven as
/// it is.
fn prepare(letter: &DeadLetter) -> std::result::Result<Ready, SkipReason> {
    let route = RedriveRoute::of(
        letter.kind.into(),
        letter.payload.as_ref(),
        letter.payload_base64.as_deref(),
        letter.key.as_deref(),
    )?;
    let payload = || letter.payload.clone().unwrap_or(Value::Null);
    Ok(match route {
        RedriveRoute::Inbound => Ready::Inbound(payload()),
        RedriveRoute::Action => Ready::Action(payload()),
        RedriveRoute::Sync(sync) => Ready::Sync(sync),
        RedriveRoute::Batch(body) => Ready::Batch(body),
        // Back on the queue under its key; a re-drive continues the admin request's trace.
        RedriveRoute::Effect { key, json } | RedriveRoute::Event { key, json } => {
            Ready::Event(queue::event_message_json(
                &key,
                1,
                letter.received_at,
                &letter.request_id,
                crate::log::current_traceparent().as_deref(),
                &json,
                None,
            ))
        }
    })
}

/// Enqueues a re-driven webhook body like the ingress does; the number of events queued.
async fn enqueue_batch(env: &Env, letter: &DeadLetter, body: &[u8]) -> Result<usize> {
    let Ok(elements) = parse_batch(body) else {
        return Ok(0);
    };
    let filter = config::ingress(env)
        .map(|c| c.filter)
        .unwrap_or_else(|_| Filter::default());
    Ok(enqueue(
        env,
        &elements,
        &filter,
        letter.received_at,
        &letter.request_id,
    )
    .await?
    .queued)
}

/// `POST /admin/faults/dead-letter-store` `{"failNext": N}`: the next N dead-letter store writes
/// fail. Only with `FAULT_INJECTION=true` (a test-only setting); otherwise there is no such
/// endpoint.
/// An event message too large for a queue message, carried by reference instead (its event in
/// KV, as the ingress does): a re-driven large event is delivered like any other.
async fn by_reference_if_large(kv: &KvStore, message: String) -> Result<String> {
    if message.len() <= queue::MAX_MESSAGE_BYTES {
        return Ok(message);
    }
    let m: EventMessage<queue::OwnedEvent> = serde_json::from_str(&message)?;
    let event_ref = event_body_key(&m.key);
    store::put_event_body(kv, &event_ref, m.event.get().to_owned()).await?;
    Ok(queue::event_message_json(
        &m.key,
        m.attempt,
        m.received_at,
        &m.request_id,
        m.traceparent.as_deref(),
        "null",
        Some(&event_ref),
    ))
}

async fn faults(req: &mut Request, env: &Env, rest: &[&str]) -> Result<Response> {
    if !config::fault_injection(env).unwrap_or(false) {
        return respond::error(404, "not_found", "no such admin endpoint");
    }
    let fault: &crate::fault::Countdown = match (req.method(), rest) {
        (Method::Post, ["dead-letter-store"]) => &crate::dead_letters::STORE_FAILURES,
        (Method::Post, ["record-store"]) => &crate::records::COMMIT_FAILURES,
        (Method::Post, ["sync-unit"]) => &crate::sync::LOST_UNITS,
        (Method::Post, ["inbound-commit-delay"]) => &crate::sync_inbound::COMMIT_DELAYS,
        _ => return respond::error(404, "not_found", "no such fault"),
    };
    let body: Value = req.json().await.unwrap_or(Value::Null);
    let Some(n) = body["failNext"]
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
    else {
        return respond::error(400, "fault_invalid", "expected {\"failNext\": N}");
    };
    fault.arm(n);
    respond::json(200, &json!({ "failNext": n }))
}
