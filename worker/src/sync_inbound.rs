//! The inbound sync, the user's system → HubSpot (README "Sync", inbound): the I/O around core's
//! [`hubspot_edge_core::sync::inbound`], whose module docs list the seven steps.
//!
//! - `POST /sync/{objectType}`: verified with `INBOUND_SECRET` (Standard Webhooks; 401
//!   `inbound_signature_invalid`), parsed whole by core (400 with the record's `index`, `code`
//!   and `field`, nothing stored), handed to the portal's [`InboundSync`] object, answered 202
//!   `{"receiptId"}`. The receipt id is derived from the signed `webhook-id`, so a retry of the
//!   same message gets the same receipt and is not processed again.
//! - `GET /sync/receipts/{id}`: what became of each record, signed the same way (the user's
//!   system holds `INBOUND_SECRET`; the admin token is the operator's): Standard Webhooks
//!   headers over an empty body, any `webhook-id`.
//! - [`InboundSync`]: one Durable Object **per portal** (`INBOUND_SYNC`, SQLite storage), not
//!   the outbound `SyncCoordinator` (one per portal and type, with one JSON value of state): the
//!   inbound state is many small rows (the id map, receipts, pending updates), a receipt is
//!   looked up by id alone, and HubSpot's rate limits are per account, so one writer per portal
//!   is the natural place to pace the writes. Tables: `pending` (core's [`Coalescer`], one row
//!   per record), `ids` (normalised `idProperty` value → HubSpot id), `receipts`.
//! - Its `alarm()` flushes at [`Coalescer::next_due_ms`]: plan diff-only against the **one**
//!   record store ([`crate::records`], the snapshots enrichment and the outbound sync commit),
//!   batch upserts through the gate ([`crate::hubspot::execute`]), commit what was written
//!   with compare-and-set (so HubSpot's webhooks for our writes diff as unchanged and are not
//!   forwarded back), keep enrichment's echo guard in KV for the records HubSpot stored with
//!   another value than the one written, dead-letter what HubSpot refused (`inbound_rejected`),
//!   put back what may pass later (429, 5xx) and set the alarm again.
//! - `POST /admin/dead-letters/…/redrive` of an inbound letter puts its update back ([`redrive`]).
//!
//! Conflicts: core resolves `both` fields from [`Known::hubspot_changed_at`], read from the
//! stored snapshot's change times (`records::CHANGED_AT_KEY`), which webhook enrichment and the
//! outbound sync set for the fields HubSpot changed and an inbound write clears.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use futures_util::future::join_all;
use hubspot_edge_core::api::{ApiError, BatchResponse, Outcome, RequestKind};
use hubspot_edge_core::config::{Inbound, Lookup};
use hubspot_edge_core::mapping::ObjectMap;
use hubspot_edge_core::records::Stored;
use hubspot_edge_core::sync::inbound::{
    parse_request, receipt_id, verify_request, BatchResult, Coalescer, Failed, InboundBatch,
    InboundCommit, InboundCommitAsk, InboundConfig, InboundFlush, InboundFlushAsk,
    InboundFlushCounts, Known, PendingUpdate, Receipt, Written,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, Date, DurableObject, Env, Method, Request, RequestInit, Response, Result,
    SqlStorageValue, State,
};

use crate::config::HubSpotApi;
use crate::hubspot::{execute, CallError};
use crate::log::Line;
use crate::{records, respond, store};

/// The Durable Object binding (wrangler.toml).
pub(crate) const BINDING: &str = "INBOUND_SYNC";
/// The largest body read (a request is parsed whole: core's `maxRecords` bounds it too).
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Batch upserts per alarm: each costs about 4 subrequests (the gate's permit, HubSpot, the
/// record store's read and commit), far inside an invocation's subrequests (Cloudflare Workers
/// paid plan: 10,000 by default), and the alarm's work stays bounded (plan and JSON for at most
/// 5,000 records at a time, well inside 128 MB). More waits for the next alarm, set at once.
const MAX_BATCHES_PER_ALARM: usize = 50;
/// KV operations one alarm may spend on echo guards: an invocation may make at most 1,000 KV
/// operations (Cloudflare KV limits). A written record costs one when HubSpot stored a value
/// other than the one written (`Written::rewritten`): otherwise the record store's snapshot
/// already makes HubSpot's webhook for our write an unchanged record. A wave of batches is
/// admitted only if every record of it could need one (the worst case), so the limit holds.
const MAX_KV_PER_ALARM: usize = 900;

/// Commits delayed on purpose by [`INJECTED_COMMIT_DELAY`]: HubSpot's webhooks for the writes
/// then arrive before the commit, the race the write fence closes.
/// `POST /admin/faults/inbound-commit-delay`.
pub(crate) static COMMIT_DELAYS: crate::fault::Countdown = crate::fault::Countdown::new();
/// How long a delayed commit waits.
const INJECTED_COMMIT_DELAY: std::time::Duration = std::time::Duration::from_secs(2);
/// Batch upserts in flight at once: an invocation keeps at most 6 connections (Cloudflare).
const MAX_IN_FLIGHT: usize = 6;

fn lookup(env: &Env) -> Lookup<impl Fn(&str) -> Option<String> + '_> {
    Lookup::new(move |key: &str| env.var(key).ok().map(|v| v.to_string()))
}

/// The inbound configuration: `Ok(None)` when `INBOUND_SECRET` is unset (inbound off).
fn settings(env: &Env) -> std::result::Result<Option<Inbound>, String> {
    Inbound::read(&lookup(env)).map_err(|e| hubspot_edge_core::config::summary(&e))
}

/// The record store's and the echo guard's name of a type (`contact`).
fn store_type(object_type: &str) -> &str {
    crate::enrich::event_object_type(object_type)
}

// ---------------------------------------------------------------------------------------------
// The routes.

/// `/sync/…` (not `/admin/sync`): the inbound routes.
pub(crate) async fn handle(req: &mut Request, env: &Env, path: &str) -> Result<Response> {
    let inbound = match settings(env) {
        Ok(Some(i)) => i,
        Ok(None) => {
            return respond::error(
                404,
                "inbound_off",
                "the inbound sync is off (INBOUND_SECRET is unset)",
            )
        }
        Err(e) => {
            Line::error("config_invalid")
                .field("error", e.as_str())
                .emit();
            return respond::error(503, "config_invalid", &e);
        }
    };
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(2).collect();
    match (req.method(), segments.as_slice()) {
        (Method::Get, ["receipts", id]) => {
            let id = (*id).to_owned();
            receipt(req, env, &inbound, &id).await
        }
        (Method::Post, [t]) if *t != "receipts" => {
            let t = (*t).to_owned();
            accept(req, env, &inbound, &t).await
        }
        (_, ["receipts", _]) => respond::error(405, "method_not_allowed", "use GET"),
        (_, [_]) => respond::error(405, "method_not_allowed", "use POST"),
        _ => respond::error(404, "not_found", "no such endpoint"),
    }
}

/// Checks the Standard Webhooks headers over `body` (core's [`verify_request`]): the
/// `webhook-id`, or the 401 to answer.
fn verify(
    req: &Request,
    inbound: &Inbound,
    body: &[u8],
) -> Result<std::result::Result<String, Response>> {
    let header = |name: &str| req.headers().get(name).ok().flatten().unwrap_or_default();
    let id = header("webhook-id");
    let now_secs = Date::now().as_millis() / 1000;
    let checked = verify_request(
        &inbound.secret,
        &id,
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        body,
        now_secs,
    );
    match checked {
        Ok(()) => Ok(Ok(id)),
        Err(e) => Ok(Err(respond::error(401, "inbound_signature_invalid", &e)?)),
    }
}

async fn accept(
    req: &mut Request,
    env: &Env,
    inbound: &Inbound,
    object_type: &str,
) -> Result<Response> {
    let Some((map, config)) = type_of(inbound, object_type) else {
        return respond::error(
            404,
            "inbound_type_unknown",
            "INBOUND_TYPES does not configure this object type",
        );
    };
    let body = req.bytes().await?;
    if body.len() > MAX_BODY_BYTES {
        return respond::error(413, "inbound_body_too_large", "at most 8 MiB per request");
    }
    let webhook_id = match verify(req, inbound, &body)? {
        Ok(id) => id,
        Err(refused) => return Ok(refused),
    };
    let records = match parse_request(map, config, &body) {
        Ok(r) => r,
        Err(e) => {
            return respond::json(
                400,
                &json!({"error": {
                    "code": e.code(),
                    "message": e.to_string(),
                    "index": e.index(),
                    "field": e.field_name(),
                    "cause": e.cause(),
                }}),
            )
        }
    };
    let id = receipt_id(inbound.portal_id, object_type, &webhook_id);
    let Ok(text) = String::from_utf8(body) else {
        return respond::error(400, "inbound_body_malformed", "not UTF-8");
    };
    let ask = Ask::Accept {
        object_type: object_type.to_owned(),
        receipt: id.clone(),
        body: text,
    };
    let mut answer = call(env, inbound.portal_id, &ask).await?;
    if answer.status_code() != 200 {
        return respond::error(
            503,
            "inbound_store_unavailable",
            "the inbound state could not be written; send the same request again",
        );
    }
    let value: serde_json::Value = answer.json().await?;
    Line::info("inbound_accepted")
        .field("object_type", object_type)
        .field("receipt_id", id.as_str())
        .field("records", records.len())
        .field("duplicate", value["duplicate"].as_bool().unwrap_or(false))
        .emit();
    respond::json(
        202,
        &json!({"receiptId": id, "records": records.len(), "duplicate": value["duplicate"]}),
    )
}

async fn receipt(req: &Request, env: &Env, inbound: &Inbound, id: &str) -> Result<Response> {
    if let Err(refused) = verify(req, inbound, b"")? {
        return Ok(refused);
    }
    let ask = Ask::Receipt { id: id.to_owned() };
    let mut answer = call(env, inbound.portal_id, &ask).await?;
    match answer.status_code() {
        200 => respond::json(200, &answer.json::<serde_json::Value>().await?),
        404 => respond::error(404, "receipt_not_found", "no receipt with this id"),
        _ => respond::error(503, "inbound_store_unavailable", "try again"),
    }
}

/// The field map and inbound settings of a type named as in the route.
fn type_of<'a>(
    inbound: &'a Inbound,
    object_type: &str,
) -> Option<(&'a ObjectMap, &'a InboundConfig)> {
    let map = inbound.mapping.object(object_type)?;
    let config = inbound.settings.get(&inbound.mapping, object_type)?;
    Some((map, config))
}

/// `POST /admin/dead-letters/…/redrive` of inbound letters (reason `inbound_rejected`, payload
/// `source: inbound`): their updates go back to pending, per portal, and are planned again at
/// the next flush (diffed again: a record written meanwhile is `unchanged`). The receipt line
/// of the original request then says what became of it. The number of re-driven records.
///
/// # Errors
/// A letter whose payload is not an inbound update, or the state not reachable: nothing is
/// deleted (the caller deletes the letters after this succeeds).
pub(crate) async fn redrive(env: &Env, payloads: Vec<serde_json::Value>) -> Result<usize> {
    let mut by_portal: BTreeMap<hubspot_edge_core::id::PortalId, Vec<(String, PendingUpdate)>> =
        BTreeMap::new();
    let n = payloads.len();
    for p in &payloads {
        let (portal, object_type, update) =
            PendingUpdate::from_letter(p).map_err(worker::Error::RustError)?;
        by_portal
            .entry(portal)
            .or_default()
            .push((object_type, update));
    }
    for (portal, updates) in by_portal {
        let r = call(env, portal, &Ask::Redrive { updates }).await?;
        if r.status_code() != 200 {
            return Err(worker::Error::RustError(format!(
                "the inbound state answered {}",
                r.status_code()
            )));
        }
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
    /// A verified, parsed request: store its receipt and coalesce its records (the body is
    /// parsed again here: it is small next to a round trip, and no unparsed state is kept).
    Accept {
        object_type: String,
        receipt: String,
        body: String,
    },
    Receipt {
        id: String,
    },
    /// Dead letters re-driven by the admin: each `(type, update)` back to pending.
    Redrive {
        updates: Vec<(String, PendingUpdate)>,
    },
}

async fn call(env: &Env, portal: hubspot_edge_core::id::PortalId, ask: &Ask) -> Result<Response> {
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(&portal.to_string())?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(serde_json::to_string(ask)?.into()));
    stub.fetch_with_request(Request::new_with_init("https://inbound/", &init)?)
        .await
}

/// The Durable Object. See the [module docs](self).
#[durable_object]
pub struct InboundSync {
    state: State,
    env: Env,
}

impl std::fmt::Debug for InboundSync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundSync").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct BodyRow {
    body: String,
}

#[derive(Deserialize)]
struct IdRow {
    key: String,
    hubspot_id: String,
}

#[derive(Deserialize)]
struct TypeRow {
    object_type: String,
}

fn int(v: u64) -> Result<SqlStorageValue> {
    SqlStorageValue::try_from_i64(i64::try_from(v).unwrap_or(i64::MAX))
}

fn coalescer_of(rows: Vec<BodyRow>) -> Result<Coalescer> {
    let mut updates = Vec::with_capacity(rows.len());
    for row in rows {
        updates.push(serde_json::from_str::<PendingUpdate>(&row.body)?);
    }
    let mut coalescer = Coalescer::new();
    coalescer.put_back(updates);
    Ok(coalescer)
}

/// Every update of `coalescer`, oldest first.
fn drain(coalescer: &mut Coalescer) -> Vec<PendingUpdate> {
    coalescer.take_due(u64::MAX, 0, 1)
}

/// Durable Object SQLite: at most 100 bound parameters per query
/// (<https://developers.cloudflare.com/durable-objects/platform/limits/>).
const MAX_PARAMS: usize = 100;

impl InboundSync {
    fn sql(&self) -> worker::SqlStorage {
        self.state.storage().sql()
    }

    /// Every pending update of a type (read only).
    fn load_pending(&self, object_type: &str) -> Result<Coalescer> {
        let rows: Vec<BodyRow> = self
            .sql()
            .exec(
                "SELECT body FROM pending WHERE object_type = ?",
                vec![SqlStorageValue::from(object_type)],
            )?
            .to_array()?;
        coalescer_of(rows)
    }

    /// The rows of `table` (`pending` or `inflight`) for `keys`.
    fn load_keys(&self, table: &str, object_type: &str, keys: &[String]) -> Result<Coalescer> {
        let mut rows: Vec<BodyRow> = Vec::new();
        for chunk in keys.chunks(MAX_PARAMS - 1) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut params = vec![SqlStorageValue::from(object_type)];
            params.extend(chunk.iter().map(|k| SqlStorageValue::from(k.as_str())));
            rows.extend(
                self.sql()
                    .exec(
                        &format!(
                            "SELECT body FROM {table} WHERE object_type = ? AND key IN ({marks})"
                        ),
                        params,
                    )?
                    .to_array::<BodyRow>()?,
            );
        }
        coalescer_of(rows)
    }

    /// Writes `updates` into `table`, replacing the rows of their keys.
    fn put_rows(&self, table: &str, object_type: &str, updates: &[PendingUpdate]) -> Result<()> {
        let sql = self.sql();
        for u in updates {
            sql.exec(
                &format!(
                    "INSERT INTO {table} (object_type, key, body) VALUES (?, ?, ?) \
                     ON CONFLICT(object_type, key) DO UPDATE SET body = excluded.body"
                ),
                vec![
                    SqlStorageValue::from(object_type),
                    SqlStorageValue::from(u.key.as_str()),
                    SqlStorageValue::from(serde_json::to_string(u)?),
                ],
            )?;
        }
        Ok(())
    }

    fn delete_keys(&self, table: &str, object_type: &str, keys: &[String]) -> Result<()> {
        for chunk in keys.chunks(MAX_PARAMS - 1) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut params = vec![SqlStorageValue::from(object_type)];
            params.extend(chunk.iter().map(|k| SqlStorageValue::from(k.as_str())));
            self.sql().exec(
                &format!("DELETE FROM {table} WHERE object_type = ? AND key IN ({marks})"),
                params,
            )?;
        }
        Ok(())
    }

    /// Merges `updates` into pending, under any newer pending update of the same record
    /// ([`Coalescer::put_back`]). No await: atomic in the object.
    fn merge_pending(&self, object_type: &str, updates: Vec<PendingUpdate>) -> Result<()> {
        if updates.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = updates.iter().map(|u| u.key.clone()).collect();
        let mut coalescer = self.load_keys("pending", object_type, &keys)?;
        coalescer.put_back(updates);
        self.put_rows("pending", object_type, &drain(&mut coalescer))
    }

    /// Moves `updates` (taken from pending) in flight: a flush that dies finds them there.
    fn to_inflight(&self, object_type: &str, updates: &[PendingUpdate]) -> Result<()> {
        let keys: Vec<String> = updates.iter().map(|u| u.key.clone()).collect();
        self.delete_keys("pending", object_type, &keys)?;
        self.put_rows("inflight", object_type, updates)
    }

    /// Updates left in flight by a flush that did not finish go back to pending (under newer
    /// ones).
    fn recover(&self, object_type: &str) -> Result<()> {
        let rows: Vec<BodyRow> = self
            .sql()
            .exec(
                "SELECT body FROM inflight WHERE object_type = ?",
                vec![SqlStorageValue::from(object_type)],
            )?
            .to_array()?;
        if rows.is_empty() {
            return Ok(());
        }
        let mut coalescer = coalescer_of(rows)?;
        self.merge_pending(object_type, drain(&mut coalescer))?;
        self.sql().exec(
            "DELETE FROM inflight WHERE object_type = ?",
            vec![SqlStorageValue::from(object_type)],
        )?;
        Ok(())
    }

    fn load_receipt(&self, id: &str) -> Result<Option<Receipt>> {
        let rows: Vec<BodyRow> = self
            .sql()
            .exec(
                "SELECT body FROM receipts WHERE id = ?",
                vec![SqlStorageValue::from(id)],
            )?
            .to_array()?;
        match rows.into_iter().next() {
            Some(row) => Ok(Some(serde_json::from_str(&row.body)?)),
            None => Ok(None),
        }
    }

    fn save_receipt(&self, receipt: &Receipt) -> Result<()> {
        self.sql().exec(
            "INSERT INTO receipts (id, received_ms, body) VALUES (?, ?, ?) \
             ON CONFLICT(id) DO UPDATE SET body = excluded.body",
            vec![
                SqlStorageValue::from(receipt.id.as_str()),
                int(receipt.received_at)?,
                SqlStorageValue::from(serde_json::to_string(receipt)?),
            ],
        )?;
        Ok(())
    }

    fn hubspot_ids(&self, object_type: &str, keys: &[String]) -> Result<HashMap<String, String>> {
        let mut out = HashMap::new();
        for chunk in keys.chunks(MAX_PARAMS - 1) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut params = vec![SqlStorageValue::from(object_type)];
            params.extend(chunk.iter().map(|k| SqlStorageValue::from(k.as_str())));
            let rows: Vec<IdRow> = self
                .sql()
                .exec(
                    &format!(
                        "SELECT key, hubspot_id FROM ids WHERE object_type = ? AND key IN ({marks})"
                    ),
                    params,
                )?
                .to_array()?;
            out.extend(rows.into_iter().map(|r| (r.key, r.hubspot_id)));
        }
        Ok(out)
    }

    fn map_id(&self, object_type: &str, key: &str, hubspot_id: &str) -> Result<()> {
        self.sql().exec(
            "INSERT INTO ids (object_type, key, hubspot_id) VALUES (?, ?, ?) \
             ON CONFLICT(object_type, key) DO UPDATE SET hubspot_id = excluded.hubspot_id",
            vec![
                SqlStorageValue::from(object_type),
                SqlStorageValue::from(key),
                SqlStorageValue::from(hubspot_id),
            ],
        )?;
        Ok(())
    }

    /// Sets the alarm at `at_ms` unless one is set sooner (core's [`Coalescer::alarm_offset`]).
    async fn alarm_at(&self, at_ms: u64) -> Result<()> {
        let storage = self.state.storage();
        let current = storage.get_alarm().await?;
        match Coalescer::alarm_offset(current, at_ms, Date::now().as_millis()) {
            Some(offset) => storage.set_alarm(offset).await,
            None => Ok(()),
        }
    }

    async fn accept(&self, object_type: &str, receipt: &str, body: &str) -> Result<Response> {
        if let Some(existing) = self.load_receipt(receipt)? {
            return Response::from_json(&json!({"duplicate": true, "receiptId": existing.id}));
        }
        let inbound = settings(&self.env)
            .map_err(worker::Error::RustError)?
            .ok_or_else(|| worker::Error::RustError("inbound is off".into()))?;
        let Some((map, config)) = type_of(&inbound, object_type) else {
            return Response::error("type not configured", 404);
        };
        let records = parse_request(map, config, body.as_bytes())
            .map_err(|e| worker::Error::RustError(e.code().into()))?;
        let now = Date::now().as_millis();
        let canonical = store_type(object_type).to_owned();
        // Only the rows of this request's records are read and written: O(request).
        let keys: Vec<String> = records.iter().map(|r| r.key.clone()).collect();
        let mut coalescer = self.load_keys("pending", &canonical, &keys)?;
        self.save_receipt(&Receipt::new(receipt, object_type, now, &records))?;
        coalescer.add(receipt, records, now);
        let due = coalescer.next_due_ms(config.coalesce_window_ms);
        self.put_rows("pending", &canonical, &drain(&mut coalescer))?;
        self.sql().exec(
            "DELETE FROM receipts WHERE received_ms < ?",
            vec![int(Receipt::expired_before(now))?],
        )?;
        if let Some(due) = due {
            self.alarm_at(due).await?;
        }
        Response::from_json(&json!({"duplicate": false, "receiptId": receipt}))
    }

    async fn redrive(&self, updates: Vec<(String, PendingUpdate)>) -> Result<Response> {
        let mut by_type: BTreeMap<String, Vec<PendingUpdate>> = BTreeMap::new();
        for (t, u) in updates {
            by_type.entry(t).or_default().push(u);
        }
        let now = Date::now().as_millis();
        for (object_type, mut updates) in by_type {
            // A new window from now: `first_at_ms` is when it came back.
            for u in &mut updates {
                u.first_at_ms = now;
            }
            self.merge_pending(&object_type, updates)?;
        }
        self.alarm_at(now).await?;
        Response::from_json(&json!({"redriven": true}))
    }

    /// Flushes what is due, type by type, within [`MAX_BATCHES_PER_ALARM`] and
    /// [`MAX_KV_PER_ALARM`].
    async fn flush(&self) -> Result<()> {
        let Ok(Some(inbound)) = settings(&self.env) else {
            Line::error("config_invalid")
                .field("part", "inbound")
                .emit();
            // Kept pending; tried again in a minute.
            return self
                .alarm_at(Date::now().as_millis() + InboundFlush::SETTINGS_RETRY_MS)
                .await;
        };
        let api =
            HubSpotApi::from_env(&self.env).map_err(|e| worker::Error::RustError(e.message()))?;
        let types: Vec<TypeRow> = self
            .sql()
            .exec(
                "SELECT DISTINCT object_type FROM pending \
                 UNION SELECT DISTINCT object_type FROM inflight",
                None,
            )?
            .to_array()?;
        let mut budget = MAX_BATCHES_PER_ALARM;
        let mut kv_left = MAX_KV_PER_ALARM;
        let mut next: Option<u64> = None;
        let mut soonest = |at: u64| next = Some(next.map_or(at, |n: u64| n.min(at)));
        for TypeRow { object_type } in types {
            let Some((map, config)) = type_of(&inbound, &object_type) else {
                continue;
            };
            let mut flusher = Flusher {
                object: self,
                env: &self.env,
                api: &api,
                portal: inbound.portal_id,
                object_type: &object_type,
                map,
                config,
                receipts: BTreeMap::new(),
            };
            // Updates move to `inflight` chunk by chunk before any await (`Flusher::run`): a
            // request accepted meanwhile changes `pending` only, and an alarm that dies
            // mid-flush finds them again (`recover`): written twice at worst (an upsert is
            // idempotent), never lost.
            self.recover(&object_type)?;
            let mut pending = self.load_pending(&object_type)?;
            let now = Date::now().as_millis();
            let due = pending.take_due(now, config.coalesce_window_ms, config.batch_size);
            let mut flush = InboundFlush::new(map, config, due, budget, kv_left);
            let retry = flusher.run(&mut flush).await?;
            (budget, kv_left) = (flush.budget(), flush.kv_left());
            for receipt in flusher.receipts.values() {
                self.save_receipt(receipt)?;
            }
            log_counts(&object_type, &flush.counts());
            // HubSpot asked to wait, the budget spent, or the next window (core's
            // `InboundFlush::next_alarm_ms`).
            let pending = self.load_pending(&object_type)?;
            if let Some(at) = flush.next_alarm_ms(retry, &pending, Date::now().as_millis()) {
                soonest(at);
            }
        }
        if let Some(at) = next {
            self.alarm_at(at).await?;
        }
        Ok(())
    }
}

fn log_counts(object_type: &str, counts: &InboundFlushCounts) {
    Line::info("inbound_flush")
        .field("object_type", object_type)
        .field("updates", counts.updates)
        .field("unchanged", counts.unchanged)
        .field("hubspot_calls", counts.calls)
        .field("written", counts.written)
        .field("failed", counts.failed)
        .field("retried", counts.retried)
        .emit();
}

/// One type's flush within an alarm.
struct Flusher<'a> {
    object: &'a InboundSync,
    env: &'a Env,
    api: &'a HubSpotApi,
    portal: hubspot_edge_core::id::PortalId,
    object_type: &'a str,
    map: &'a ObjectMap,
    config: &'a InboundConfig,
    /// The receipts touched, saved at the end.
    receipts: BTreeMap<String, Receipt>,
}

impl Flusher<'_> {
    fn store(&self) -> &str {
        store_type(self.object_type)
    }

    fn receipt(&mut self, id: &str) -> Result<Option<&mut Receipt>> {
        if !self.receipts.contains_key(id) {
            if let Some(r) = self.object.load_receipt(id)? {
                self.receipts.insert(id.to_owned(), r);
            }
        }
        Ok(self.receipts.get_mut(id))
    }

    /// Applies `f` to every receipt a set of sources names.
    fn with_receipts(
        &mut self,
        ids: impl IntoIterator<Item = String>,
        f: impl Fn(&mut Receipt),
    ) -> Result<()> {
        let ids: BTreeSet<String> = ids.into_iter().collect();
        for id in ids {
            if let Some(r) = self.receipt(&id)? {
                f(r);
            }
        }
        Ok(())
    }

    /// Performs what core's [`InboundFlush`] asks until it is done: moves chunks in flight
    /// (before any await), looks up what the store knows, sends the waves of batch upserts and
    /// commits what HubSpot accepted, records the receipts, dead-letters what HubSpot refused
    /// and puts back what was not sent. `true` when HubSpot (or the way to it) asked to wait:
    /// the rest waits for the retry alarm.
    async fn run(&mut self, flush: &mut InboundFlush<'_>) -> Result<bool> {
        let object_type = self.object_type.to_owned();
        // The chunk's stored states (by HubSpot id): the commits' expected versions.
        let mut stored: HashMap<String, Stored> = HashMap::new();
        // The chunk's write fence, once raised.
        let mut fence_token: Option<String> = None;
        loop {
            match flush.ask() {
                InboundFlushAsk::Take { fresh, keys } => {
                    self.object.to_inflight(&object_type, &fresh)?;
                    let ids = self.object.hubspot_ids(self.store(), &keys)?;
                    stored = records::get(
                        self.env,
                        self.portal,
                        self.store(),
                        ids.values().cloned().collect(),
                    )
                    .await?;
                    let known: BTreeMap<String, Known> = ids
                        .iter()
                        .map(|(key, id)| (key.clone(), Known::of(id, stored.get(id))))
                        .collect();
                    let planned = flush.on_known(&known);
                    let sources: Vec<String> = planned
                        .unchanged
                        .iter()
                        .flat_map(|u| u.sources.iter().map(|s| s.receipt.clone()))
                        .collect();
                    self.with_receipts(sources, |r| r.record_plan(&planned))?;
                }
                InboundFlushAsk::Fence(fence) => {
                    // Before the sends: HubSpot's webhooks for these writes are deferred by
                    // enrichment until the commit (core's `WriteFence`). A fence that cannot be
                    // raised only reopens that window: the writes go on.
                    let token = crate::log::random_id();
                    match records::raise(self.env, self.portal, self.store(), &token, fence).await {
                        Ok(()) => fence_token = Some(token),
                        Err(e) => Line::warn("write_fence_failed")
                            .field("object_type", self.object_type)
                            .field("error", e.to_string())
                            .emit(),
                    }
                }
                InboundFlushAsk::Send(wave) => {
                    // Each batch's accepted records are committed as soon as HubSpot answers it,
                    // before anything else: HubSpot's webhooks for them are already on their
                    // way, and the snapshot is what tells enrichment they are ours.
                    let results = join_all(wave.into_iter().map(|b| async {
                        let result = self.send(b).await;
                        let committed = match &result {
                            BatchResult::Done { written, .. } => {
                                self.commit(written, &stored).await
                            }
                            _ => Ok(()),
                        };
                        (result, committed)
                    }))
                    .await;
                    let mut sent = Vec::with_capacity(results.len());
                    for (result, committed) in results {
                        committed?;
                        self.with_receipts(result.receipts(), |r| r.record_batch(&result))?;
                        if let BatchResult::Retry { error, updates } = &result {
                            Line::warn("inbound_batch_retry")
                                .field("object_type", self.object_type)
                                .field("code", error.code())
                                .field("updates", updates.len())
                                .emit();
                        }
                        sent.push(result);
                    }
                    flush.on_sent(sent);
                }
                InboundFlushAsk::Settle {
                    failed,
                    leftover,
                    done,
                    lower,
                } => {
                    self.dead_letter(&failed).await?;
                    // No await from here to the next chunk: leftovers back under anything newer.
                    self.object.merge_pending(&object_type, leftover)?;
                    self.object.delete_keys("inflight", &object_type, &done)?;
                    if let Some(token) = fence_token.take().filter(|_| lower) {
                        // Unlowered, it lapses after its lease (deferring events, never
                        // holding them).
                        if let Err(e) =
                            records::lower(self.env, self.portal, self.store(), &token).await
                        {
                            Line::warn("write_fence_failed")
                                .field("object_type", self.object_type)
                                .field("error", e.to_string())
                                .emit();
                        }
                    }
                }
                InboundFlushAsk::Done { put_back, retry } => {
                    if !put_back.is_empty() {
                        let keys: Vec<String> = put_back.iter().map(|u| u.key.clone()).collect();
                        self.object.merge_pending(&object_type, put_back)?;
                        self.object.delete_keys("inflight", &object_type, &keys)?;
                    }
                    return Ok(retry);
                }
            }
        }
    }

    /// One batch upsert through the gate: HubSpot's answer as core reads it, or the updates
    /// back when no answer came (timeout, throttled, no token): a retry later.
    async fn send(&self, batch: InboundBatch) -> BatchResult {
        let api_type = crate::enrich::api_object_type(self.store());
        let no_answer = |batch: InboundBatch, reason: String| {
            Line::warn("inbound_batch_unsent")
                .field("object_type", self.object_type)
                .field("error", reason)
                .emit();
            BatchResult::Retry {
                error: ApiError::Server {
                    status: 503,
                    body: Box::default(),
                },
                updates: batch.inputs.into_iter().map(|i| i.update).collect(),
            }
        };
        let request = batch.request(&self.api.api, &api_type, &self.config.id_property);
        let answer =
            execute::<BatchResponse>(self.api, self.env, RequestKind::Write, &request).await;
        match answer {
            Ok(response) => batch.settle(self.map, &self.config.id_property, Ok(response)),
            Err(CallError::GaveUp {
                last: Outcome::Failed(error),
                ..
            }) => batch.settle(self.map, &self.config.id_property, Err(error)),
            Err(e) => no_answer(batch, format!("{e:?}")),
        }
    }

    /// Commits the written records to the record store (compare-and-set, re-read on conflict),
    /// maps their keys to HubSpot ids and keeps their echo guards.
    async fn commit(&self, written: &[Written], stored: &HashMap<String, Stored>) -> Result<()> {
        if written.is_empty() {
            return Ok(());
        }
        if COMMIT_DELAYS.fires() {
            worker::Delay::from(INJECTED_COMMIT_DELAY).await;
        }
        for w in written {
            self.object.map_id(self.store(), &w.key, &w.hubspot_id)?;
        }
        let mut commit = InboundCommit::new(written, stored);
        let unsettled = loop {
            match commit.ask() {
                InboundCommitAsk::Commit(commits) => {
                    let outcomes =
                        records::commit(self.env, self.portal, self.store(), &commits).await?;
                    commit.on_committed(&outcomes);
                }
                InboundCommitAsk::Read(ids) => {
                    commit.on_read(records::get(self.env, self.portal, self.store(), ids).await?);
                }
                InboundCommitAsk::Done { unsettled } => break unsettled,
            }
        };
        if unsettled > 0 {
            // Written to HubSpot, not recorded: the next identical request writes again (a
            // duplicate write, never a loss). Logged.
            Line::warn("inbound_commit_conflicts")
                .field("object_type", self.object_type)
                .field("records", unsettled)
                .emit();
        }
        // Then the echo guards (enrichment's), for the records HubSpot stored with another value
        // than the one written: their webhooks would differ from the snapshot (which keeps the
        // user's value). One KV write each, within MAX_KV_PER_ALARM (counted by core's
        // `InboundFlush`).
        let kv = self.env.kv(store::STATE)?;
        let rewritten: Vec<&Written> = written.iter().filter(|w| !w.rewritten.is_empty()).collect();
        let guards = rewritten.into_iter().map(|w| {
            let kv = &kv;
            async move {
                let key = store::echo_key(self.store(), &w.hubspot_id);
                let text = serde_json::to_string(&w.echo).unwrap_or_default();
                if let Err(e) = store::put_text(kv, &key, text, Some(store::ECHO_TTL_SECS)).await {
                    Line::warn("echo_guard_write_failed")
                        .field("error", e.to_string())
                        .emit();
                }
            }
        });
        // At most 6 connections at once (Cloudflare): KV writes in slices of 6.
        let guards: Vec<_> = guards.collect();
        let mut guards = guards.into_iter();
        loop {
            let slice: Vec<_> = guards.by_ref().take(MAX_IN_FLIGHT).collect();
            if slice.is_empty() {
                break;
            }
            join_all(slice).await;
        }
        Ok(())
    }

    /// Each refused record: one dead letter, reason `inbound_rejected`, HubSpot's code in the
    /// detail. The letter holds the update (the user's values, kept like any dead letter,
    /// never logged); re-drive by sending the record again (a new `webhook-id`).
    async fn dead_letter(&self, failed: &[Failed]) -> Result<()> {
        if failed.is_empty() {
            return Ok(());
        }
        let now = Date::now().as_millis();
        let mut texts = Vec::with_capacity(failed.len());
        for f in failed {
            let (payload, detail, key) = f.letter(self.portal, self.object_type);
            let letter = crate::queue::DeadLetterMessage {
                v: 1,
                reason: "inbound_rejected".into(),
                detail,
                attempts: 1,
                key,
                received_at: now,
                request_id: format!("inbound-{now}"),
                traceparent: None,
                event_ref: None,
                event: serde_json::value::to_raw_value(&payload)?,
            };
            texts.push(serde_json::to_string(&letter)?);
        }
        crate::queue::send_all(&self.env.queue(crate::queue::DEAD_LETTERS)?, texts).await
    }
}

impl DurableObject for InboundSync {
    fn new(state: State, env: Env) -> Self {
        // Idempotent: runs on every start of the object.
        let sql = state.storage().sql();
        let created = [
            "CREATE TABLE IF NOT EXISTS pending (object_type TEXT NOT NULL, key TEXT NOT NULL, \
             body TEXT NOT NULL, PRIMARY KEY (object_type, key))",
            "CREATE TABLE IF NOT EXISTS inflight (object_type TEXT NOT NULL, key TEXT NOT NULL, \
             body TEXT NOT NULL, PRIMARY KEY (object_type, key))",
            "CREATE TABLE IF NOT EXISTS ids (object_type TEXT NOT NULL, key TEXT NOT NULL, \
             hubspot_id TEXT NOT NULL, PRIMARY KEY (object_type, key))",
            "CREATE TABLE IF NOT EXISTS receipts (id TEXT PRIMARY KEY, \
             received_ms INTEGER NOT NULL, body TEXT NOT NULL)",
        ]
        .iter()
        .try_for_each(|q| sql.exec(q, None).map(|_| ()));
        if let Err(e) = created {
            Line::error("inbound_store_init_failed")
                .field("error", e.to_string())
                .emit();
        }
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            let Ok(ask) = serde_json::from_str::<Ask>(&req.text().await?) else {
                return Response::error("bad inbound request", 400);
            };
            let result = match ask {
                Ask::Accept {
                    object_type,
                    receipt,
                    body,
                } => self.accept(&object_type, &receipt, &body).await,
                Ask::Redrive { updates } => self.redrive(updates).await,
                Ask::Receipt { id } => match self.load_receipt(&id) {
                    Ok(Some(r)) => Response::from_json(&r),
                    Ok(None) => Response::error("no such receipt", 404),
                    Err(e) => Err(e),
                },
            };
            result.or_else(|e| {
                Line::error("inbound_store_failed")
                    .field("error", e.to_string())
                    .emit();
                Response::error("inbound store failed", 503)
            })
        })
        .await
    }

    async fn alarm(&self) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            if let Err(e) = self.flush().await {
                Line::error("inbound_flush_failed")
                    .field("error", e.to_string())
                    .emit();
                // Nothing is lost (the pending rows are only replaced after a flush); again soon.
                self.alarm_at(Date::now().as_millis() + InboundFlush::RETRY_DELAY_MS)
                    .await?;
            }
            // The flush's HubSpot calls were counted in this object's isolate: sent from here
            // (on Cloudflare a Durable Object runs apart from the Worker's invocations).
            crate::metrics::flush_pending(&self.env).await;
            Response::ok("flushed")
        })
        .await
    }
}
