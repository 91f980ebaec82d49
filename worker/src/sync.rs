//! The outbound sync, HubSpot → `FORWARD_URL` (docs/sync.md): the I/O around core's
//! [`hubspot_edge_core::sync`].
//!
//! - [`SyncCoordinator`]: one Durable Object per `{portalId}:{objectType}` (SQLite-backed),
//!   holding the [`Run`], the incremental cursor, the last run's report and the paused flag. At
//!   most one run per type. Its `alarm()` queues the units overdue by a lease
//!   (`SYNC_LEASE_SECS`) again ([`Run::overdue`]).
//! - The sync queue (`SYNC`, `hubspot-edge-sync`): one message per work unit
//!   ([`UnitMessage`]); [`consume`] works each unit for up to `pagesPerUnit` pages, then reports
//!   to the coordinator, which queues the continuation.
//! - The cron trigger ([`poke_all`]) asks each type's coordinator to start what is due (core's
//!   [`SyncSettings::due`]).
//! - Admin: `GET /admin/sync`, `POST /admin/sync/{type}/run?mode=`, `…/pause`, `…/resume`.
//! - Re-driving a sync dead letter ([`recheck`]) asks the coordinator to read its record again:
//!   the ids wait in its state and the next incremental run reads them ([`Run::recheck`]); one
//!   is started at once when the type is idle.

use std::cell::Cell;
use std::collections::HashMap;

use futures_util::stream::{self, StreamExt};
use hubspot_edge_core::api::{
    AssociationResult, BatchReadOptions, BatchResponse, Page, RequestKind,
};
use hubspot_edge_core::config::Sync as SyncSettings;
use hubspot_edge_core::delivery::{Attempt, MAX_CONCURRENT_FORWARDS};
use hubspot_edge_core::id::PortalId;
use hubspot_edge_core::mapping::ObjectMap;
use hubspot_edge_core::records::{CommitOutcome, Stored};
use hubspot_edge_core::sync::{
    Batch, Coordinator, Mode, Read, Rechecked, SyncConfig, SyncLetter, UnitAsk, UnitMessage,
    UnitReport, UnitWork,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use worker::{
    durable_object, Date, DurableObject, Env, Message, MessageBatch, MessageExt, Method,
    QueueRetryOptionsBuilder, Request, RequestInit, Response, Result, State,
};

use crate::config::{Forward, HubSpotApi};
use crate::hubspot::{execute, CallError};
use crate::log::Line;

/// The coordinator's Durable Object binding (wrangler.toml).
pub(crate) const COORDINATOR: &str = "SYNC_COORDINATOR";
/// The sync queue's producer binding (wrangler.toml).
pub(crate) const QUEUE: &str = "SYNC";
/// The queue of units that read by search (core's `Unit::budget`), when bound; without the
/// binding they share [`QUEUE`]. Apart, a batch of search units (paced at 4 per second) never
/// holds list units back: wrangler dev's local queue dispatches one batch at a time per queue,
/// and a batch lasts as long as its slowest unit (BENCHMARKS.md, "Sync on wrangler dev").
pub(crate) const SEARCH_QUEUE: &str = "SYNC_SEARCH";
/// The sync queue's name, by default (`SYNC_QUEUE_NAME` overrides, as the tests' configs do).
pub(crate) const DEFAULT_QUEUE_NAME: &str = "hubspot-edge-sync";
/// The search units' queue's name, by default (`SYNC_SEARCH_QUEUE_NAME` overrides).
pub(crate) const DEFAULT_SEARCH_QUEUE_NAME: &str = "hubspot-edge-sync-search";
/// The coordinator's alarm period while a run is going (core's
/// [`Coordinator::alarm_period_ms`] of `SYNC_LEASE_SECS`).
fn alarm_ms(env: &Env) -> i64 {
    let lease = settings(env).ok().flatten().map(|s| s.lease_ms);
    let period = Coordinator::alarm_period_ms(lease);
    i64::try_from(period).unwrap_or(i64::MAX)
}

/// Unit messages dropped unworked on purpose: a lost message, which the coordinator's lease
/// must re-queue. `POST /admin/faults/sync-unit`.
pub(crate) static LOST_UNITS: crate::fault::Countdown = crate::fault::Countdown::new();

/// Storage key of the coordinator's state.
const STATE_KEY: &str = "sync";

/// The record store and the enrichment map name types as events do (`contact`); HubSpot's API
/// paths as configured (`contacts`).
fn store_type(object_type: &str) -> &str {
    crate::enrich::event_object_type(object_type)
}

fn settings(env: &Env) -> std::result::Result<Option<SyncSettings>, String> {
    let lookup =
        hubspot_edge_core::config::Lookup::new(|k: &str| env.var(k).ok().map(|v| v.to_string()));
    SyncSettings::read(&lookup).map_err(|e| hubspot_edge_core::config::summary(&e))
}

/// The core configuration of one type's sync and its map (from `ENRICHMENT_MAP`).
fn type_config(
    env: &Env,
    settings: &SyncSettings,
    object_type: &str,
) -> std::result::Result<(SyncConfig, ObjectMap), String> {
    let mapping = crate::config::enrichment(env)
        .map_err(|e| e.message())?
        .ok_or("ENRICHMENT_MAP: config_missing")?;
    let map = mapping
        .object(object_type)
        .ok_or("SYNC_OBJECT_TYPES: sync_type_not_mapped")?
        .clone();
    let mut config = SyncConfig::new(settings.portal_id, object_type);
    // The list share for the rates the gate grants (HUBSPOT_TIER, 90 %), when configured.
    if let Ok(api) = HubSpotApi::from_env(env) {
        config = config.for_governor(&api.governor);
    }
    let mut config = config.for_map(&map);
    config.lag_ms = settings.lag_ms;
    config.associations = settings.associations_of(object_type);
    Ok((config, map))
}

// ---------------------------------------------------------------------------------------------
// The coordinator.

// Externally tagged (`{"variant": {…}}`), not `tag = …`: an internally tagged enum is
// deserialised through serde's buffering `ContentDeserializer`, the largest generic cost in the
// wasm (BENCHMARKS.md, "Worker size"). Worker↔object only (one deployment): no stored format.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ask {
    /// Start a run: of `mode` (the admin), or what is due (`None`: the cron).
    Start {
        object_type: String,
        mode: Option<Mode>,
    },
    Report {
        report: Box<UnitReport>,
    },
    Status {
        object_type: String,
    },
    Pause {
        object_type: String,
        paused: bool,
    },
    /// A unit invocation stopped on an error (it is retried): counted in `errors`.
    UnitFailed {
        error: String,
    },
    /// Read these records again (re-driven dead letters).
    Recheck {
        object_type: String,
        ids: Vec<u64>,
    },
}

/// The Durable Object. See the [module docs](self).
#[durable_object]
pub struct SyncCoordinator {
    state: State,
    env: Env,
}

impl std::fmt::Debug for SyncCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncCoordinator").finish_non_exhaustive()
    }
}

impl SyncCoordinator {
    /// The state is stored as JSON text: ids up to 2^63 − 1 (the run's open range) are not JS
    /// numbers, which a structured value would need.
    async fn load(&self) -> Result<Coordinator> {
        match self.state.storage().get::<String>(STATE_KEY).await? {
            Some(text) => Ok(serde_json::from_str(&text)?),
            None => Ok(Coordinator::default()),
        }
    }

    async fn save(&self, c: &Coordinator) -> Result<()> {
        self.state
            .storage()
            .put(STATE_KEY, serde_json::to_string(c)?)
            .await
    }

    async fn queue(&self, messages: Vec<UnitMessage>) -> Result<()> {
        send_units(&self.env, messages).await
    }

    fn config(&self, object_type: &str) -> std::result::Result<(SyncConfig, ObjectMap), String> {
        let settings = settings(&self.env)?.ok_or("SYNC_OBJECT_TYPES: config_missing")?;
        type_config(&self.env, &settings, object_type)
    }

    /// Starts a run unless one is going (or the type is paused, for a start that is not the
    /// admin's). `mode` `None`: whatever is due (the cron). Core's [`Coordinator::start_mode`]
    /// and [`Coordinator::launch`]; a full run's probe is made here.
    async fn start(&self, object_type: String, mode: Option<Mode>) -> Result<Response> {
        let now = Date::now().as_millis();
        let mut c = self.load().await?;
        let due_settings = settings(&self.env).ok().flatten();
        let mode = match c.start_mode(&object_type, mode, due_settings.as_ref(), now) {
            Ok(m) => m,
            Err(refused) => return Response::from_json(&refused),
        };
        let (config, _) = match self.config(&object_type) {
            Ok(c) => c,
            Err(e) => {
                return crate::respond::error(503, "config_invalid", &e);
            }
        };
        let launch = match c.launch(&config, mode, now) {
            Ok(l) => l,
            Err(e) => return crate::respond::error(500, e.code(), &e.to_string()),
        };
        let (run_id, mode) = (launch.run_id, launch.mode);
        self.save(&c).await?;
        self.state.storage().set_alarm(alarm_ms(&self.env)).await?;
        Line::info("sync_run_started")
            .field("object_type", object_type.as_str())
            .field("run_id", run_id.as_str())
            .field("mode", format!("{mode:?}"))
            .emit();
        let messages = match launch.probe {
            Some([lo, hi]) => {
                // The id span: two one-record searches (core's Run::probe).
                let api = match HubSpotApi::from_env(&self.env) {
                    Ok(a) => a,
                    Err(e) => return self.fail(&run_id, &e.message()).await,
                };
                let (a, b) = (
                    search_page(&api, &self.env, &object_type, &lo).await,
                    search_page(&api, &self.env, &object_type, &hi).await,
                );
                let (a, b) = match (a, b) {
                    (Ok(a), Ok(b)) => (a, b),
                    (Err(e), _) | (_, Err(e)) => {
                        return self.fail(&run_id, &e.describe()).await;
                    }
                };
                let mut c = self.load().await?;
                match c.on_probe(&run_id, &config, &a, &b, Date::now().as_millis()) {
                    None => {
                        return Response::from_json(
                            &json!({"started": false, "reason": "superseded"}),
                        )
                    }
                    Some(Err(e)) => return self.fail(&run_id, e.code()).await,
                    Some(Ok(out)) => {
                        self.save(&c).await?;
                        out
                    }
                }
            }
            None => launch.queue,
        };
        let units = messages.len();
        self.queue(messages).await?;
        Response::from_json(&json!({
            "started": true, "runId": run_id, "mode": mode, "units": units,
        }))
    }

    /// A run that cannot start (the probe failed): dropped, the error kept for the admin API.
    async fn fail(&self, run_id: &str, error: &str) -> Result<Response> {
        let mut c = self.load().await?;
        c.fail(run_id, error);
        self.save(&c).await?;
        Line::error("sync_run_failed")
            .field("run_id", run_id)
            .field("error", error)
            .emit();
        crate::respond::error(502, "sync_start_failed", error)
    }

    async fn report(&self, report: UnitReport) -> Result<Response> {
        let now = Date::now().as_millis();
        let mut c = self.load().await?;
        if c.run().is_none() {
            return Response::from_json(&json!({"accepted": false}));
        }
        let object_type = c.object_type().to_owned();
        let (config, _) = match self.config(&object_type) {
            Ok(c) => c,
            Err(e) => return crate::respond::error(503, "config_invalid", &e),
        };
        let Some((out, finished)) = c.on_report(&config, report, now) else {
            return Response::from_json(&json!({"accepted": false}));
        };
        if let Some(report) = finished {
            Line::info("sync_run_done")
                .field("object_type", object_type.as_str())
                .field("run_id", report.run_id.as_str())
                .field("read", report.counts.read)
                .field("upserted", report.counts.upserted)
                .field("unchanged", report.counts.unchanged)
                .field("deleted", report.counts.deleted)
                .field("hubspot_calls", report.counts.hubspot_calls)
                .field("duration_ms", now.saturating_sub(report.started_ms))
                .emit();
        }
        self.save(&c).await?;
        self.queue(out).await?;
        // The cursor rides back to the reporting unit, which sets the lag gauge.
        Response::from_json(&json!({"accepted": true, "cursorMs": c.cursor_ms()}))
    }

    /// One more error for the admin API (`errors`, `lastError`): a unit invocation that
    /// stopped early (a HubSpot read that gave up, a delivery refused, the record store).
    async fn unit_failed(&self, error: &str) -> Result<Response> {
        let mut c = self.load().await?;
        c.unit_failed(error);
        self.save(&c).await?;
        Response::from_json(&json!({"counted": true}))
    }

    /// Re-driven records: read again by the running run when it can take them, else kept for
    /// the next incremental run, started now when the type is idle and not paused.
    async fn recheck(&self, object_type: String, ids: Vec<u64>) -> Result<Response> {
        let mut c = self.load().await?;
        match c.recheck(&object_type, &ids) {
            Rechecked::Now(messages) => {
                self.save(&c).await?;
                self.queue(messages).await?;
                Response::from_json(&json!({"rechecked": ids.len(), "when": "now"}))
            }
            Rechecked::Full => crate::respond::error(
                409,
                "sync_recheck_full",
                "too many records waiting to be read again: run a full sync instead",
            ),
            Rechecked::NextRun { start } => {
                self.save(&c).await?;
                if start {
                    let started = self.start(object_type, Some(Mode::Incremental)).await?;
                    if started.status_code() >= 300 {
                        return Ok(started);
                    }
                }
                Response::from_json(&json!({"rechecked": ids.len(), "when": "next_run"}))
            }
        }
    }

    async fn status(&self, object_type: String) -> Result<Response> {
        let c = self.load().await?;
        Response::from_json(&c.status(&object_type, Date::now().as_millis()))
    }

    async fn pause(&self, object_type: String, paused: bool) -> Result<Response> {
        let mut c = self.load().await?;
        let again = c.pause(&object_type, paused);
        self.save(&c).await?;
        if let Some(messages) = again {
            self.queue(messages).await?;
            self.state.storage().set_alarm(alarm_ms(&self.env)).await?;
        }
        Response::from_json(&json!({"paused": paused}))
    }
}

impl DurableObject for SyncCoordinator {
    fn new(state: State, env: Env) -> Self {
        Self { state, env }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            // Parsed by serde_json from the text: ids up to 2^63 − 1 (core's ID_END) are not exact
            // as JS numbers, which `Request::json` would go through.
            let Ok(ask) = serde_json::from_str::<Ask>(&req.text().await?) else {
                return Response::error("bad coordinator request", 400);
            };
            let result = match ask {
                Ask::Start { object_type, mode } => self.start(object_type, mode).await,
                Ask::Report { report } => self.report(*report).await,
                Ask::Status { object_type } => self.status(object_type).await,
                Ask::Pause {
                    object_type,
                    paused,
                } => self.pause(object_type, paused).await,
                Ask::UnitFailed { error } => self.unit_failed(&error).await,
                Ask::Recheck { object_type, ids } => self.recheck(object_type, ids).await,
            };
            // Storage or queue failures: a stable code, the detail in the log.
            result.or_else(|e| {
                Line::error("sync_coordinator_failed")
                    .field("error", e.to_string())
                    .emit();
                crate::respond::error(503, "sync_coordinator_failed", &e.to_string())
            })
        })
        .await
    }

    async fn alarm(&self) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            let mut c = self.load().await?;
            let lease =
                Coordinator::lease_ms(settings(&self.env).ok().flatten().map(|s| s.lease_ms));
            let again = match c.overdue(Date::now().as_millis(), lease) {
                Ok(again) => again,
                Err(state) => return Response::ok(state),
            };
            let n = again.len();
            self.save(&c).await?;
            if n > 0 {
                Line::warn("sync_units_requeued")
                    .field("object_type", c.object_type())
                    .field("units", n)
                    .emit();
            }
            self.queue(again).await?;
            self.state.storage().set_alarm(alarm_ms(&self.env)).await?;
            Response::ok("checked")
        })
        .await
    }
}

async fn coordinator(
    env: &Env,
    portal: PortalId,
    object_type: &str,
    ask: &Ask,
) -> Result<Response> {
    let stub = env
        .durable_object(COORDINATOR)?
        .id_from_name(&format!("{portal}:{object_type}"))?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(serde_json::to_string(ask)?.into()));
    stub.fetch_with_request(Request::new_with_init("https://sync/", &init)?)
        .await
}

/// Asks the coordinator of `letter`'s type to read its record again (a re-driven sync dead
/// letter, [`SyncLetter`]). 2xx: taken (read now or by the next run).
pub(crate) async fn recheck(env: &Env, letter: &SyncLetter) -> Result<Response> {
    let Some(id) = letter.id() else {
        return crate::respond::error(
            409,
            "still_invalid",
            "the letter's record id is not a number",
        );
    };
    coordinator(
        env,
        letter.portal_id,
        &letter.object_type,
        &Ask::Recheck {
            object_type: letter.object_type.clone(),
            ids: vec![id.get()],
        },
    )
    .await
}

/// Queues `messages`, split between [`QUEUE`] and [`SEARCH_QUEUE`] (when bound) by core's
/// [`UnitMessage::by_queue`].
async fn send_units(env: &Env, messages: Vec<UnitMessage>) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let search_queue = env.queue(SEARCH_QUEUE).ok();
    let (list, search) = UnitMessage::by_queue(messages, search_queue.is_some())
        .map_err(|e| worker::Error::RustError(e.to_string()))?;
    if !list.is_empty() {
        crate::queue::send_all(&env.queue(QUEUE)?, list).await?;
    }
    if let (Some(q), false) = (search_queue, search.is_empty()) {
        crate::queue::send_all(&q, search).await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The cron trigger and the admin routes.

/// The cron trigger: each configured type's coordinator starts what is due.
pub(crate) async fn poke_all(env: &Env) {
    let settings = match settings(env) {
        Ok(Some(s)) => s,
        Ok(None) => return,
        Err(e) => {
            Line::error("config_invalid").field("error", e).emit();
            return;
        }
    };
    for t in &settings.object_types {
        let ask = Ask::Start {
            object_type: t.clone(),
            mode: None,
        };
        if let Err(e) = coordinator(env, settings.portal_id, t, &ask).await {
            Line::error("sync_poke_failed")
                .field("object_type", t.as_str())
                .field("error", e.to_string())
                .emit();
        }
    }
}

/// `/admin/sync…` (the admin token is checked by the caller); `segments` after `sync`.
pub(crate) async fn admin(req: &Request, env: &Env, segments: &[&str]) -> Result<Response> {
    let settings = match settings(env) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return crate::respond::error(
                404,
                "sync_off",
                "the outbound sync is off (SYNC_OBJECT_TYPES is unset)",
            )
        }
        Err(e) => return crate::respond::error(503, "config_invalid", &e),
    };
    let known = |t: &str| settings.object_types.iter().any(|o| o == t);
    let portal = settings.portal_id;
    match (req.method(), segments) {
        (Method::Get, []) => {
            let mut types = Vec::new();
            for t in &settings.object_types {
                let ask = Ask::Status {
                    object_type: t.clone(),
                };
                let mut r = coordinator(env, portal, t, &ask).await?;
                let status: serde_json::Value = r.json().await?;
                cursor_gauge(portal, t, status["cursorMs"].as_u64());
                types.push(status);
            }
            crate::respond::json(200, &json!({ "portalId": portal, "types": types }))
        }
        (Method::Post, [t, _]) if !known(t) => {
            crate::respond::error(404, "sync_type_unknown", "not in SYNC_OBJECT_TYPES")
        }
        (Method::Post, [t, "run"]) => {
            let query = req.url()?;
            let mode = query
                .query_pairs()
                .find(|(k, _)| k == "mode")
                .map(|(_, v)| v.into_owned());
            let Some(mode) = Mode::from_query(mode.as_deref()) else {
                return crate::respond::error(400, "mode_invalid", "mode is incremental or full");
            };
            let ask = Ask::Start {
                object_type: (*t).to_owned(),
                mode: Some(mode),
            };
            let mut r = coordinator(env, portal, t, &ask).await?;
            let status = r.status_code();
            let body = r.json::<serde_json::Value>().await?;
            let status = Coordinator::admin_run_status(status, &body);
            crate::respond::json(status, &body)
        }
        (Method::Post, [t, action @ ("pause" | "resume")]) => {
            let ask = Ask::Pause {
                object_type: (*t).to_owned(),
                paused: *action == "pause",
            };
            let mut r = coordinator(env, portal, t, &ask).await?;
            crate::respond::json(200, &r.json::<serde_json::Value>().await?)
        }
        _ => crate::respond::error(404, "not_found", "no such admin endpoint"),
    }
}

/// The gauge of how far the sync cursor of `object_type` is behind now (core's
/// [`lag_secs`](hubspot_edge_core::metrics::lag_secs)), per portal and type; nothing before the
/// first run finished (no cursor yet). Set where the cursor is read anyway: a unit's report
/// and `GET /admin/sync`.
fn cursor_gauge(portal: PortalId, object_type: &str, cursor_ms: Option<u64>) {
    let Some(cursor_ms) = cursor_ms else { return };
    let now = Date::now().as_millis();
    let lag = hubspot_edge_core::metrics::lag_secs(cursor_ms, now);
    let portal = portal.to_string();
    crate::metrics::count(|m| {
        m.set(
            hubspot_edge_core::metrics::Gauge::SyncCursorLag,
            &[("object_type", object_type), ("portal", &portal)],
            lag,
            now,
        );
    });
}

// ---------------------------------------------------------------------------------------------
// The consumer.

async fn search_page(
    api: &HubSpotApi,
    env: &Env,
    object_type: &str,
    q: &hubspot_edge_core::api::SearchRequest,
) -> std::result::Result<Page, CallError> {
    execute(
        api,
        env,
        RequestKind::Search,
        &api.api.search(object_type, q),
    )
    .await
}

/// Performs one of a unit's reads (through the gate: the rate governor).
async fn perform(
    api: &HubSpotApi,
    env: &Env,
    object_type: &str,
    read: &Read,
) -> std::result::Result<Page, CallError> {
    match read {
        Read::Search(q) => search_page(api, env, object_type, q).await,
        Read::List(o) => {
            execute(
                api,
                env,
                RequestKind::Read,
                &api.api.list_objects(object_type, o),
            )
            .await
        }
        Read::BatchRead { ids, properties } => {
            let options = BatchReadOptions {
                properties: properties.clone(),
                ..BatchReadOptions::default()
            };
            let mut requests = api.api.batch_read(object_type, ids, &options);
            if requests.is_empty() {
                return Ok(page(Vec::new()));
            }
            let request = requests.remove(0);
            let answer: BatchResponse = execute(api, env, RequestKind::Read, &request).await?;
            Ok(page(answer.results))
        }
    }
}

/// A batch read's answer as the page core's verify unit takes (no cursor).
fn page(results: Vec<hubspot_edge_core::api::SimpleObject>) -> Page {
    Page {
        results,
        next_after: None,
        total: None,
    }
}

/// The sync queue's consumer: each message is one unit, worked for up to `pagesPerUnit` pages,
/// then reported. A unit that could make no progress (HubSpot limits, the destination down)
/// is retried after core's [`UnitWork::RETRY_DELAY_SECS`] from the same state.
///
/// The units of one batch are worked at the same time, sharing the invocation's 6 connections
/// (Cloudflare's simultaneous open connections per invocation): each unit has one HubSpot read
/// in flight at a time, then at most `6 / units` deliveries (at least 1), so a batch of up to
/// 6 units never has more than 6 connections open. Worked one after the other, a batch took the
/// sum of its units' latencies, and wrangler dev's local queue dispatches one batch at a time:
/// the 100,000-contact benchmark ran one unit at a time, 2.3× the rate-limit bound
/// (BENCHMARKS.md, "Sync on wrangler dev").
pub(crate) async fn consume(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let messages = batch.messages()?;
    let deliveries = (MAX_CONCURRENT_FORWARDS / messages.len().max(1)).max(1);
    // The units still reading their first `pagesPerUnit` pages (core's `reads_more`).
    let busy = Cell::new(messages.len());
    futures_util::future::join_all(messages.iter().map(|m| work(m, env, deliveries, &busy))).await;
    Ok(())
}

/// Works one unit message; `deliveries`: its share of the invocation's connections.
/// `busy`: the batch's units still reading their first `pagesPerUnit` pages; this one counts
/// itself out once it has read them or stopped.
async fn work(message: &Message<String>, env: &Env, deliveries: usize, busy: &Cell<usize>) {
    let retry = || {
        message.retry_with_options(
            &QueueRetryOptionsBuilder::new()
                .with_delay_seconds(UnitWork::RETRY_DELAY_SECS)
                .build(),
        );
    };
    if LOST_UNITS.fires() {
        Line::warn("sync_unit_dropped_by_fault").emit();
        message.ack();
        return;
    }
    let Ok(msg) = serde_json::from_str::<UnitMessage>(message.body()) else {
        // Only the coordinator writes unit messages; one that does not parse (another version
        // of the Worker) is dropped here, and its unit is queued again by the coordinator's
        // lease (`Run::overdue`), so no work is lost.
        Line::error("sync_message_invalid").emit();
        message.ack();
        return;
    };
    let object_type = msg.run_id.split(':').next().unwrap_or_default().to_owned();
    let setup = (|| {
        let settings = settings(env)?.ok_or("SYNC_OBJECT_TYPES: config_missing")?;
        let (config, map) = type_config(env, &settings, &object_type)?;
        let api = HubSpotApi::from_env(env).map_err(|e| e.message())?;
        let forward = Forward::from_env(env).map_err(|e| hubspot_edge_core::config::summary(&e))?;
        Ok::<_, String>((config, map, api, forward))
    })();
    let (config, map, api, forward) = match setup {
        Ok(s) => s,
        Err(e) => {
            Line::error("config_invalid")
                .field("run_id", msg.run_id.as_str())
                .field("error", e)
                .emit();
            retry();
            return;
        }
    };
    let ctx = UnitContext {
        env,
        config: &config,
        map: &map,
        api: &api,
        forward: &forward,
        object_type: &object_type,
        deliveries,
        spent: Cell::new([0; 7]),
    };
    let t0 = Date::now().as_millis();
    let mut held = true;
    let (report, progress, error) = ctx.run(&msg, busy, &mut held).await;
    if held {
        busy.set(busy.get().saturating_sub(1));
    }
    let [read, settle, window, lookup, decide, commit, send] = ctx.spent.get();
    let c = &report.counts;
    crate::metrics::count(|m| {
        for (outcome, n) in [
            ("read", c.read),
            ("upserted", c.upserted),
            ("unchanged", c.unchanged),
            ("deleted", c.deleted),
            ("merged", c.merged),
            ("rejected", c.rejected),
        ] {
            if n > 0 {
                m.add(
                    hubspot_edge_core::metrics::Counter::SyncRecords,
                    &[("object_type", object_type.as_str()), ("outcome", outcome)],
                    n,
                );
            }
        }
    });
    Line::info("sync_unit_worked")
        .field("run_id", msg.run_id.as_str())
        .field("unit_id", msg.unit_id)
        .field("calls", report.counts.hubspot_calls)
        .field("records", report.counts.read)
        .field("ms", Date::now().as_millis().saturating_sub(t0))
        .field("read_ms", read)
        .field("settle_ms", settle)
        .field("window_ms", window)
        .field("lookup_ms", lookup)
        .field("decide_ms", decide)
        .field("commit_ms", commit)
        .field("send_ms", send)
        .emit();
    if let Some(e) = &error {
        Line::warn("sync_unit_stopped")
            .field("run_id", msg.run_id.as_str())
            .field("unit_id", msg.unit_id)
            .field("error", e.as_str())
            .emit();
        // Counted for the admin API; a failure to count is only logged (the unit goes on).
        let ask = Ask::UnitFailed { error: e.clone() };
        if let Err(e) = coordinator(env, config.portal_id, &object_type, &ask).await {
            Line::warn("sync_error_not_counted")
                .field("error", e.to_string())
                .emit();
        }
    }
    if UnitWork::retries(progress, error.is_some()) {
        retry();
        return;
    }
    let ask = Ask::Report {
        report: Box::new(report),
    };
    match coordinator(env, config.portal_id, &object_type, &ask).await {
        Ok(mut r) if r.status_code() == 200 => {
            if let Ok(v) = r.json::<serde_json::Value>().await {
                cursor_gauge(config.portal_id, &object_type, v["cursorMs"].as_u64());
            }
            message.ack();
        }
        Ok(r) => {
            Line::error("sync_report_failed")
                .field("status", r.status_code())
                .emit();
            retry();
        }
        Err(e) => {
            Line::error("sync_report_failed")
                .field("error", e.to_string())
                .emit();
            retry();
        }
    }
}

struct UnitContext<'a> {
    env: &'a Env,
    config: &'a SyncConfig,
    map: &'a ObjectMap,
    api: &'a HubSpotApi,
    forward: &'a Forward,
    object_type: &'a str,
    /// Deliveries in flight at once (this unit's share of the invocation's 6 connections).
    deliveries: usize,
    /// Milliseconds spent, for the `sync_unit_worked` line: HubSpot reads (gate included),
    /// settling pages (the next four included), the reconcile's window queries, record-store
    /// lookups, deciding and rendering batches, record-store commits, sending deliveries.
    spent: Cell<[u64; 7]>,
}

impl UnitContext<'_> {
    fn time(&self, phase: usize, since_ms: u64) {
        let mut spent = self.spent.get();
        spent[phase] += Date::now().as_millis().saturating_sub(since_ms);
        self.spent.set(spent);
    }

    fn store(&self) -> &str {
        store_type(self.object_type)
    }

    /// Works `msg` for `pagesPerUnit` pages, more while other units of the batch still read
    /// theirs (core's `reads_more`, at most 4 ×; one page held at a time): drives core's
    /// [`UnitWork`], performing what it asks. The report, whether any page was settled, and
    /// the error that stopped it early.
    async fn run(
        &self,
        msg: &UnitMessage,
        busy: &Cell<usize>,
        held: &mut bool,
    ) -> (UnitReport, bool, Option<String>) {
        let mut work = UnitWork::new(self.config, self.map, msg);
        loop {
            let t0 = Date::now().as_millis();
            // Its first `pagesPerUnit` pages read, the unit no longer holds the batch; it reads
            // on while another unit of the batch still does (the invocation lasts until then
            // anyway), up to core's cap.
            let ask = work.ask(|read_its_share| {
                if read_its_share && *held {
                    *held = false;
                    busy.set(busy.get().saturating_sub(1));
                }
                busy.get() > usize::from(*held)
            });
            match ask {
                UnitAsk::Done => break,
                UnitAsk::Read(read) => {
                    let page = perform(self.api, self.env, self.object_type, &read).await;
                    self.time(0, t0);
                    match page {
                        Ok(p) => work.on_page(&p),
                        Err(e) => work.on_read_failed(e.describe(), e.is_validation()),
                    }
                }
                UnitAsk::Associations(read) => {
                    let request = self.api.api.batch_read_associations_after(
                        self.object_type,
                        &read.to_type,
                        &read.inputs,
                    );
                    let answer: std::result::Result<BatchResponse<AssociationResult>, _> =
                        execute(self.api, self.env, RequestKind::Read, &request).await;
                    match answer {
                        Ok(a) => work.on_associations(&a),
                        Err(e) => work.on_failed(e.describe()),
                    }
                }
                UnitAsk::Lookup(ids) => {
                    let stored: std::result::Result<HashMap<String, Stored>, _> =
                        crate::records::get(self.env, self.config.portal_id, self.store(), ids)
                            .await;
                    self.time(3, t0);
                    let t1 = Date::now().as_millis();
                    match stored {
                        Ok(stored) => work.on_stored(&stored),
                        Err(e) => work.on_failed(e.to_string()),
                    }
                    self.time(4, t1);
                    self.time(1, t0);
                }
                UnitAsk::DeadLetter(rejected) => {
                    if let Err(e) = self.dead_letter(&rejected).await {
                        work.on_failed(e);
                    }
                    self.time(4, t0);
                    self.time(1, t0);
                }
                UnitAsk::Deliver(batches) => {
                    // At most 6 connections at once per invocation (Cloudflare), shared by the
                    // units of the batch (`consume`): each delivery, then its commit, one after
                    // the other within a slot.
                    let results = stream::iter(batches)
                        .map(|b| async move {
                            let outcome = self.deliver(&b).await;
                            (b, outcome)
                        })
                        .buffer_unordered(self.deliveries)
                        .collect()
                        .await;
                    work.on_delivered(results);
                    self.time(1, t0);
                }
                UnitAsk::Window { from, to, max } => {
                    // The store's live ids in the window: the reconcile's merge-join.
                    let stored = crate::records::live_ids(
                        self.env,
                        self.config.portal_id,
                        self.store(),
                        from,
                        to,
                        max,
                    )
                    .await;
                    self.time(2, t0);
                    match stored {
                        Ok(stored) => work.on_window(stored),
                        Err(e) => work.on_failed(e.to_string()),
                    }
                }
            }
        }
        if work.truncated_associations() > 0 {
            Line::warn("sync_associations_truncated")
                .field("object_type", self.object_type)
                .field("records", work.truncated_associations())
                .emit();
        }
        work.finish()
    }

    /// Delivers one batch and, after a 2xx, commits its writes: the commit's outcomes, or why
    /// it was not delivered or committed (delivered, not committed: the page is read again,
    /// the same batch id goes out again).
    async fn deliver(
        &self,
        batch: &Batch,
    ) -> std::result::Result<Vec<(String, CommitOutcome)>, String> {
        let t0 = Date::now().as_millis();
        let (attempt, _) = crate::forward::send_signed(self.forward, &batch.id, &batch.body).await;
        self.time(6, t0);
        if !matches!(attempt, Attempt::Answered { status, .. } if (200..300).contains(&status)) {
            return Err(format!(
                "delivery {}: {}",
                batch.id,
                crate::forward::describe(attempt)
            ));
        }
        let t0 = Date::now().as_millis();
        let committed = crate::records::commit(
            self.env,
            self.config.portal_id,
            self.store(),
            &batch.commits,
        )
        .await;
        self.time(5, t0);
        committed.map_err(|e| e.to_string())
    }

    /// Records whose values do not map (or too large): one dead letter each, with the code.
    /// The record is referenced by type and id only (no values).
    async fn dead_letter(&self, rejected: &[(String, String)]) -> std::result::Result<(), String> {
        if rejected.is_empty() {
            return Ok(());
        }
        let now = Date::now().as_millis();
        let mut texts = Vec::with_capacity(rejected.len());
        for (id, code) in rejected {
            let payload = SyncLetter::new(self.config.portal_id, self.object_type, id);
            let event = serde_json::value::to_raw_value(&payload).map_err(|e| e.to_string())?;
            let letter = crate::queue::DeadLetterMessage {
                v: 1,
                reason: code.clone(),
                detail: payload.detail(),
                attempts: 1,
                key: Some(payload.key()),
                received_at: now,
                request_id: format!("sync-{now}"),
                traceparent: None,
                event_ref: None,
                event,
            };
            texts.push(serde_json::to_string(&letter).map_err(|e| e.to_string())?);
        }
        let queue = self
            .env
            .queue(crate::queue::DEAD_LETTERS)
            .map_err(|e| e.to_string())?;
        crate::queue::send_all(&queue, texts)
            .await
            .map_err(|e| e.to_string())
    }
}
