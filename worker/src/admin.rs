//! Operator endpoints under `/admin`, all behind `Authorization: Bearer $ADMIN_TOKEN`.
//!
//! - `GET  /admin/dead-letters?limit=&cursor=`: list (oldest first), summaries only.
//! - `GET  /admin/dead-letters/{id}`: one dead letter with its payload.
//! - `POST /admin/dead-letters/{id}/redrive`: queue it again and remove it from the store.
//! - `POST /admin/dead-letters/redrive`: the same for all (up to 500 per call; call again
//!   while `remaining` is true).
//! - `GET  /admin/records/{portal}/{objectType}/{id}`: an object's record-store version and
//!   whether a snapshot is kept (never its values).
//! - `/admin/hubspot/…`: HubSpot API calls through the executor (see [`crate::hubspot`]).

use base64::Engine as _;
use hubspot_edge_core::auth::bearer_matches;
use hubspot_edge_core::dedupe::DedupeKey;
use hubspot_edge_core::event::{parse_batch, Event};
use hubspot_edge_core::filter::Filter;
use serde_json::{json, value::RawValue, Value};
use worker::kv::KvStore;
use worker::{Env, Method, Request, Response, Result};

use crate::config::{self, Ingress};
use crate::ingress::{config_error, enqueue};
use crate::queue::{self, EventMessage};
use crate::respond;
use crate::store::{self, DeadLetter, Kind};

const REDRIVE_ALL_LIMIT: usize = 500;

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
    let kv = env.kv(store::STATE)?;
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["dead-letters"]) => list(req, &kv).await,
        (Method::Post, ["dead-letters", "redrive"]) => redrive_all(env, &kv).await,
        (Method::Get, ["dead-letters", id]) => match store::get_dead_letter(&kv, id).await? {
            Some(letter) => respond::json(200, &serde_json::to_value(letter)?),
            None => respond::error(404, "dead_letter_not_found", "no dead letter with this id"),
        },
        (Method::Post, ["dead-letters", id, "redrive"]) => {
            let Some(letter) = store::get_dead_letter(&kv, id).await? else {
                return respond::error(404, "dead_letter_not_found", "no dead letter with this id");
            };
            match redrive(env, &kv, &letter).await? {
                Ok(queued) => respond::json(202, &json!({ "redriven": 1, "queued": queued })),
                Err(code) => {
                    respond::error(409, code, "this dead letter cannot be re-driven as it is")
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

async fn list(req: &Request, kv: &KvStore) -> Result<Response> {
    let url = req.url()?;
    let mut limit = 100;
    let mut cursor = None;
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "limit" => limit = v.parse::<u64>().unwrap_or(100).clamp(1, 1000),
            "cursor" if !v.is_empty() => cursor = Some(v.into_owned()),
            _ => {}
        }
    }
    let (items, next) = store::list_dead_letters(kv, limit, cursor).await?;
    let items: Vec<Value> = items
        .into_iter()
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

async fn redrive_all(env: &Env, kv: &KvStore) -> Result<Response> {
    let mut redriven = 0;
    let mut skipped = Vec::new();
    let mut cursor = None;
    let mut seen = 0;
    loop {
        let (items, next) = store::list_dead_letters(kv, 100, cursor).await?;
        for (id, _) in items {
            seen += 1;
            let Some(letter) = store::get_dead_letter(kv, &id).await? else {
                continue;
            };
            match redrive(env, kv, &letter).await? {
                Ok(_) => redriven += 1,
                Err(code) => skipped.push(json!({ "id": id, "code": code })),
            }
        }
        cursor = next;
        if cursor.is_none() || seen >= REDRIVE_ALL_LIMIT {
            break;
        }
    }
    respond::json(
        202,
        &json!({ "redriven": redriven, "skipped": skipped, "remaining": cursor.is_some() }),
    )
}

/// Queues a dead letter again and removes it from the store. `Ok(Err(code))` when it cannot be
/// re-driven as it is (it stays in the store).
async fn redrive(
    env: &Env,
    kv: &KvStore,
    letter: &DeadLetter,
) -> Result<std::result::Result<usize, &'static str>> {
    let queued = match letter.kind {
        Kind::Event => {
            let Some(payload) = &letter.payload else {
                return Ok(Err("payload_missing"));
            };
            let raw = RawValue::from_string(serde_json::to_string(payload)?)?;
            let Ok(event) = Event::parse(&raw) else {
                return Ok(Err("still_invalid"));
            };
            let message = EventMessage {
                v: 1,
                key: DedupeKey::of(&event).as_str().into(),
                attempt: 1,
                received_at: letter.received_at,
                request_id: letter.request_id.clone(),
                event_ref: None,
                event: &*raw,
            };
            queue::send_one(
                &env.queue(queue::EVENTS)?,
                serde_json::to_string(&message)?,
                0,
            )
            .await?;
            1
        }
        Kind::Batch => {
            let body = match (&letter.payload, &letter.payload_base64) {
                (Some(Value::String(s)), _) => s.clone().into_bytes(),
                (_, Some(b64)) => base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .unwrap_or_default(),
                _ => return Ok(Err("payload_missing")),
            };
            let Ok(elements) = parse_batch(&body) else {
                return Ok(Err("still_invalid"));
            };
            let filter = Ingress::from_env(env)
                .map(|c| c.filter)
                .unwrap_or_else(|_| Filter::default());
            enqueue(
                env,
                &elements,
                &filter,
                letter.received_at,
                &letter.request_id,
            )
            .await?
            .queued
        }
        Kind::Message => return Ok(Err("not_redrivable")),
    };
    store::delete_dead_letter(kv, &letter.id).await?;
    Ok(Ok(queued))
}
