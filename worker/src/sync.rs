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
use hubspot_edge_core::config::{Due, Sync as SyncSettings};
use hubspot_edge_core::delivery::{Attempt, MAX_CONCURRENT_FORWARDS};
use hubspot_edge_core::mapping::ObjectMap;
use hubspot_edge_core::records::Stored;
use hubspot_edge_core::sync::{
    batches, decide, lookups, missing_in_window, AssocPlan, Batch, Counts, Mode, Read, Run,
    RunReport, Step, SyncBatchBody, SyncConfig, SyncLetter, Unit, UnitMessage, UnitReport,
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
/// The coordinator's alarm period while a run is going (checks the leases, `SYNC_LEASE_SECS`):
/// a minute, or half the lease when shorter.
const ALARM_MS: u64 = 60_000;

fn alarm_ms(env: &Env) -> i64 {
    let lease = settings(env)
        .ok()
        .flatten()
        .map_or(ALARM_MS * 2, |s| s.lease_ms);
    i64::try_from(ALARM_MS.min(lease / 2)).unwrap_or(60_000)
}

/// Unit messages still to drop on purpose (`FAULT_INJECTION` only, per isolate): a lost
/// message, which the coordinator's lease must re-queue. `POST /admin/faults/sync-unit`.
static DROP_NEXT_UNITS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Makes the next `n` sync unit messages of this isolate vanish unworked (test only).
pub(crate) fn inject_lost_units(n: u32) {
    DROP_NEXT_UNITS.store(n, std::sync::atomic::Ordering::SeqCst);
}
/// Record-store commit conflicts decided again per step before the unit gives up for now.
const MAX_SETTLE_ROUNDS: usize = 10;
/// Delay before a unit that failed without progress is tried again (a HubSpot limit, a
/// destination that refused): long enough not to spin, short against the lease.
const RETRY_DELAY_SECS: u32 = 30;
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

/// Ids waiting for the next incremental run, at most: 100,000 ids are ~2 MB of JSON, the
/// largest value Durable Object storage keeps; past this, a full run is the cheaper re-read.
const MAX_RECHECK: usize = 20_000;

/// What a coordinator keeps (one storage value, at most a run's state: ~65 KB of missing
/// candidates at most, far below a value's 2 MB).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Coordinated {
    object_type: String,
    run: Option<Run>,
    cursor_ms: Option<u64>,
    paused: bool,
    last_started_ms: Option<u64>,
    last_full_ms: Option<u64>,
    last_finished_ms: Option<u64>,
    last: Option<RunReport>,
    errors: u64,
    last_error: Option<String>,
    /// Records to read again (re-driven dead letters), taken by the next incremental run.
    #[serde(default)]
    recheck: std::collections::BTreeSet<u64>,
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
    async fn load(&self) -> Result<Coordinated> {
        match self.state.storage().get::<String>(STATE_KEY).await? {
            Some(text) => Ok(serde_json::from_str(&text)?),
            None => Ok(Coordinated::default()),
        }
    }

    async fn save(&self, c: &Coordinated) -> Result<()> {
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
    /// admin's). `mode` `None`: whatever is due (the cron).
    async fn start(&self, object_type: String, mode: Option<Mode>) -> Result<Response> {
        let now = Date::now().as_millis();
        let mut c = self.load().await?;
        c.object_type.clone_from(&object_type);
        if let Some(run) = &c.run {
            return Response::from_json(&json!({
                "started": false, "reason": "already_running", "runId": run.id(),
            }));
        }
        if c.paused {
            return Response::from_json(&json!({"started": false, "reason": "paused"}));
        }
        let mode = match mode {
            Some(m) => m,
            None => {
                let due = match settings(&self.env) {
                    Ok(Some(s)) => s.due(now, c.last_started_ms, c.last_full_ms, false, c.paused),
                    _ => Due::Nothing,
                };
                match due {
                    Due::Nothing => {
                        return Response::from_json(&json!({"started": false, "reason": "not_due"}))
                    }
                    Due::Incremental => Mode::Incremental,
                    Due::Full => Mode::Full,
                }
            }
        };
        let (config, _) = match self.config(&object_type) {
            Ok(c) => c,
            Err(e) => {
                return crate::respond::error(503, "config_invalid", &e);
            }
        };
        let run = match Run::start(
            &config,
            format!("{object_type}:{now}"),
            mode,
            c.cursor_ms,
            now,
        ) {
            Ok(r) => r,
            Err(e) => return crate::respond::error(500, e.code(), &e.to_string()),
        };
        let mut run = run;
        if run.mode() == Mode::Incremental && !c.recheck.is_empty() {
            let ids: Vec<u64> = std::mem::take(&mut c.recheck).into_iter().collect();
            // Taken at start: the units are queued below with the run's other units. (A full
            // run leaves them for the next incremental one: one batch read per 1,000 ids,
            // and nothing lost if its probe fails.)
            let _ = run.recheck(&ids);
        }
        let run_id = run.id().to_owned();
        let mode = run.mode();
        let probe = run.probe();
        c.last_started_ms = Some(now);
        if mode == Mode::Full {
            c.last_full_ms = Some(now);
        }
        c.run = Some(run);
        self.save(&c).await?;
        self.state.storage().set_alarm(alarm_ms(&self.env)).await?;
        Line::info("sync_run_started")
            .field("object_type", object_type.as_str())
            .field("run_id", run_id.as_str())
            .field("mode", format!("{mode:?}"))
            .emit();
        let messages = match probe {
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
                        return self.fail(&run_id, &describe_call(&e)).await;
                    }
                };
                let mut c = self.load().await?;
                let Some(run) = c.run.as_mut().filter(|r| r.id() == run_id) else {
                    return Response::from_json(&json!({"started": false, "reason": "superseded"}));
                };
                let out = match run.on_probe(&config, &a, &b, Date::now().as_millis()) {
                    Ok(out) => out,
                    Err(e) => {
                        drop(c);
                        return self.fail(&run_id, e.code()).await;
                    }
                };
                self.save(&c).await?;
                out
            }
            None => c.run.as_ref().map(Run::outstanding).unwrap_or_default(),
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
        if c.run.as_ref().is_some_and(|r| r.id() == run_id) {
            c.run = None;
            // Not started after all: due again at the next poke.
            c.last_started_ms = None;
            c.last_full_ms = c
                .last
                .as_ref()
                .filter(|l| l.mode == Mode::Full)
                .map(|l| l.started_ms);
        }
        c.errors += 1;
        c.last_error = Some(error.chars().take(300).collect());
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
        let object_type = c.object_type.clone();
        let Some(run) = c.run.as_mut() else {
            return Response::from_json(&json!({"accepted": false}));
        };
        let (config, _) = match self.config(&object_type) {
            Ok(c) => c,
            Err(e) => return crate::respond::error(503, "config_invalid", &e),
        };
        let out = run.on_report(&config, report, now);
        if run.is_done() {
            c.cursor_ms = run.next_cursor();
            let report = run.report();
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
            c.last = Some(report);
            c.last_finished_ms = Some(now);
            c.run = None;
        }
        let paused = c.paused;
        self.save(&c).await?;
        // Paused: the continuations stay in the run (queued again on resume).
        if !paused {
            self.queue(out).await?;
        }
        // The cursor rides back to the reporting unit, which sets the lag gauge.
        Response::from_json(&json!({"accepted": true, "cursorMs": c.cursor_ms}))
    }

    /// One more error for the admin API (`errors`, `lastError`): a unit invocation that
    /// stopped early (a HubSpot read that gave up, a delivery refused, the record store).
    async fn unit_failed(&self, error: &str) -> Result<Response> {
        let mut c = self.load().await?;
        c.errors += 1;
        c.last_error = Some(error.chars().take(300).collect());
        self.save(&c).await?;
        Response::from_json(&json!({"counted": true}))
    }

    /// Re-driven records: read again by the running run when it can take them, else kept for
    /// the next incremental run, started now when the type is idle and not paused.
    async fn recheck(&self, object_type: String, ids: Vec<u64>) -> Result<Response> {
        let mut c = self.load().await?;
        c.object_type.clone_from(&object_type);
        if let Some(run) = c.run.as_mut() {
            if !c.paused {
                if let Some(messages) = run.recheck(&ids) {
                    self.save(&c).await?;
                    self.queue(messages).await?;
                    return Response::from_json(&json!({"rechecked": ids.len(), "when": "now"}));
                }
            }
        }
        if c.recheck.len() + ids.len() > MAX_RECHECK {
            return crate::respond::error(
                409,
                "sync_recheck_full",
                "too many records waiting to be read again: run a full sync instead",
            );
        }
        c.recheck.extend(ids.iter().copied());
        let (idle, paused) = (c.run.is_none(), c.paused);
        self.save(&c).await?;
        if idle && !paused {
            let started = self.start(object_type, Some(Mode::Incremental)).await?;
            if started.status_code() >= 300 {
                return Ok(started);
            }
        }
        Response::from_json(&json!({"rechecked": ids.len(), "when": "next_run"}))
    }

    async fn status(&self, object_type: String) -> Result<Response> {
        let c = self.load().await?;
        Response::from_json(&status_json(&object_type, &c, Date::now().as_millis()))
    }

    async fn pause(&self, object_type: String, paused: bool) -> Result<Response> {
        let mut c = self.load().await?;
        c.object_type = object_type;
        let resumed = c.paused && !paused;
        c.paused = paused;
        self.save(&c).await?;
        if resumed {
            if let Some(run) = &c.run {
                self.queue(run.outstanding()).await?;
                self.state.storage().set_alarm(alarm_ms(&self.env)).await?;
            }
        }
        Response::from_json(&json!({"paused": paused}))
    }
}

fn status_json(object_type: &str, c: &Coordinated, now: u64) -> serde_json::Value {
    let current = c.run.as_ref().map(Run::report);
    let state = match (&c.run, c.paused) {
        (_, true) => "paused",
        (Some(_), false) => "running",
        (None, false) => "idle",
    };
    json!({
        "objectType": object_type,
        "state": state,
        "cursorMs": c.cursor_ms,
        // How far behind HubSpot the destination may be: changes since the cursor.
        "lagMs": c.cursor_ms.map(|cursor| now.saturating_sub(cursor)),
        "lastStartedMs": c.last_started_ms,
        "lastFullMs": c.last_full_ms,
        "lastFinishedMs": c.last_finished_ms,
        "current": current,
        "last": c.last,
        "errors": c.errors,
        "lastError": c.last_error,
    })
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
            let Some(run) = c.run.as_mut() else {
                return Response::ok("idle");
            };
            if c.paused {
                return Response::ok("paused");
            }
            let lease = settings(&self.env)
                .ok()
                .flatten()
                .map_or(900_000, |s| s.lease_ms);
            let again = run.overdue(Date::now().as_millis(), lease);
            let n = again.len();
            self.save(&c).await?;
            if n > 0 {
                Line::warn("sync_units_requeued")
                    .field("object_type", c.object_type.as_str())
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

async fn coordinator(env: &Env, portal: u64, object_type: &str, ask: &Ask) -> Result<Response> {
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
            ids: vec![id],
        },
    )
    .await
}

async fn send_units(env: &Env, messages: Vec<UnitMessage>) -> Result<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let search_queue = env.queue(SEARCH_QUEUE).ok();
    let (mut list, mut search) = (Vec::new(), Vec::new());
    for m in messages {
        let to_search = search_queue.is_some()
            && m.unit.budget() == hubspot_edge_core::ratelimit::Budget::Search;
        // Within 128 KB by construction (core checks it).
        let text = m
            .to_json()
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        if to_search {
            search.push(text);
        } else {
            list.push(text);
        }
    }
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
            let mode = match req
                .url()?
                .query_pairs()
                .find(|(k, _)| k == "mode")
                .map(|(_, v)| v.into_owned())
                .as_deref()
            {
                None | Some("incremental") => Mode::Incremental,
                Some("full") => Mode::Full,
                Some(_) => {
                    return crate::respond::error(
                        400,
                        "mode_invalid",
                        "mode is incremental or full",
                    )
                }
            };
            let ask = Ask::Start {
                object_type: (*t).to_owned(),
                mode: Some(mode),
            };
            let mut r = coordinator(env, portal, t, &ask).await?;
            let status = r.status_code();
            let body = r.json::<serde_json::Value>().await?;
            let status = if body["reason"] == "already_running" || body["reason"] == "paused" {
                409
            } else if status == 200 {
                202
            } else {
                status
            };
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
fn cursor_gauge(portal: u64, object_type: &str, cursor_ms: Option<u64>) {
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

fn describe_call(e: &CallError) -> String {
    match e {
        CallError::GaveUp {
            reason, attempts, ..
        } => {
            format!("hubspot gave up after {attempts} attempts: {reason:?}")
        }
        CallError::Throttled { wait_ms } => format!("rate limited for {wait_ms} ms"),
        CallError::Build(m) | CallError::OAuthRefresh(m) | CallError::Gate(m) => m.clone(),
    }
}

/// Whether HubSpot refused the read as invalid (400): a list `after` it does not take.
fn refused(e: &CallError) -> bool {
    matches!(
        e,
        CallError::GaveUp {
            last: hubspot_edge_core::api::Outcome::Failed(err),
            ..
        } if matches!(err, hubspot_edge_core::api::ApiError::Validation { .. })
    )
}

/// The sync queue's consumer: each message is one unit, worked for up to `pagesPerUnit` pages,
/// then reported. A unit that could make no progress (HubSpot limits, the destination down)
/// is retried after [`RETRY_DELAY_SECS`] from the same state.
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
                .with_delay_seconds(RETRY_DELAY_SECS)
                .build(),
        );
    };
    if DROP_NEXT_UNITS
        .fetch_update(
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
            |n| n.checked_sub(1),
        )
        .is_ok()
    {
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
    if !progress && error.is_some() {
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

/// How one delivery ended.
enum Delivered {
    /// Delivered and committed; the ids whose commit was refused (decide them again).
    Done {
        conflicts: Vec<String>,
        body: SyncBatchBody,
    },
    Failed(String),
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
    /// theirs (core's `reads_more`, at most 4 ×; one page held at a time): the report, whether
    /// any page was settled, and the error that stopped it early.
    async fn run(
        &self,
        msg: &UnitMessage,
        busy: &Cell<usize>,
        held: &mut bool,
    ) -> (UnitReport, bool, Option<String>) {
        let properties = self.config.read_properties(self.map);
        let mut unit: Unit = msg.unit.clone();
        let mut report = UnitReport {
            run_id: msg.run_id.clone(),
            unit_id: msg.unit_id,
            seq: msg.seq,
            unit: msg.unit.clone(),
            counts: Counts::default(),
            missing: Vec::new(),
            missing_overflow: 0,
            missing_deleted: Vec::new(),
        };
        let mut progress = false;
        let mut error = None;
        let mut pages_read: u32 = 0;
        loop {
            // Its first `pagesPerUnit` pages read, the unit no longer holds the batch; it reads
            // on while another unit of the batch still does (the invocation lasts until then
            // anyway), up to core's cap.
            if pages_read >= self.config.pages_per_unit.max(1) && *held {
                *held = false;
                busy.set(busy.get().saturating_sub(1));
            }
            let others_busy = busy.get() > usize::from(*held);
            if !self.config.reads_more(pages_read, others_busy) {
                break;
            }
            pages_read += 1;
            let read = match unit.next_read(&properties) {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.code().to_owned());
                    break;
                }
            };
            report.counts.hubspot_calls += 1;
            let t0 = Date::now().as_millis();
            let page = perform(self.api, self.env, self.object_type, &read).await;
            self.time(0, t0);
            let page = match page {
                Ok(p) => p,
                Err(e) if refused(&e) && unit.on_refused() => {
                    report.counts.fallbacks += 1;
                    progress = true;
                    continue;
                }
                Err(e) => {
                    error = Some(describe_call(&e));
                    break;
                }
            };
            let mut next = unit.clone();
            let mut step = match next.on_page(&page) {
                Ok(s) => s,
                Err(e) => {
                    error = Some(e.code().to_owned());
                    break;
                }
            };
            if let Err(e) = self.associations(&mut step, &mut report.counts).await {
                error = Some(e);
                break;
            }
            report.counts.fallbacks += u64::from(step.fell_back);
            report.counts.read += step.live.len() as u64;
            let t0 = Date::now().as_millis();
            let settled = self.settle(&step, &mut report.counts).await;
            self.time(1, t0);
            match settled {
                Ok(deleted) => report.missing_deleted.extend(deleted),
                Err(e) => {
                    error = Some(e);
                    break;
                }
            }
            if let Some((window, seen)) = &step.window {
                // The store's live ids in the window: the reconcile's merge-join.
                let max = seen.len() + hubspot_edge_core::sync::MAX_REPORTED_MISSING;
                let t0 = Date::now().as_millis();
                let stored = crate::records::live_ids(
                    self.env,
                    self.config.portal_id,
                    self.store(),
                    window.from,
                    window.to,
                    max,
                )
                .await;
                self.time(2, t0);
                match stored {
                    Ok(stored) => report.add_missing(missing_in_window(seen, stored)),
                    Err(e) => {
                        error = Some(e.to_string());
                        break;
                    }
                }
            }
            unit = next;
            progress = true;
        }
        report.unit = unit;
        (report, progress, error)
    }

    /// Reads the associations of the step's live records (core's [`AssocPlan`]; none unless
    /// `SYNC_ASSOCIATIONS` names this type), one v4 batch read at a time through the gate, and
    /// puts them into the step. An error stops the unit before anything of the page is
    /// delivered: it reads the page again.
    async fn associations(
        &self,
        step: &mut Step,
        counts: &mut Counts,
    ) -> std::result::Result<(), String> {
        let mut plan = AssocPlan::new(self.config, step);
        while let Some(read) = plan.next_read() {
            let request = self.api.api.batch_read_associations_after(
                self.object_type,
                &read.to_type,
                &read.inputs,
            );
            counts.hubspot_calls += 1;
            let answer: BatchResponse<AssociationResult> =
                execute(self.api, self.env, RequestKind::Read, &request)
                    .await
                    .map_err(|e| describe_call(&e))?;
            plan.on_answer(&answer).map_err(|e| e.code().to_owned())?;
        }
        if plan.truncated() > 0 {
            Line::warn("sync_associations_truncated")
                .field("object_type", self.object_type)
                .field("records", plan.truncated())
                .emit();
        }
        plan.finish(step);
        Ok(())
    }

    /// Decides a step, delivers and commits; conflicts are decided again. The ids delivered as
    /// `delete` (`missing`), or the error that stopped it (nothing of the step is then counted
    /// as settled: the unit reads the page again).
    async fn settle(
        &self,
        step: &Step,
        counts: &mut Counts,
    ) -> std::result::Result<Vec<String>, String> {
        let mut todo = step.clone();
        let mut missing_deleted = Vec::new();
        for _ in 0..MAX_SETTLE_ROUNDS {
            let t0 = Date::now().as_millis();
            let stored: HashMap<String, Stored> = crate::records::get(
                self.env,
                self.config.portal_id,
                self.store(),
                lookups(&todo),
            )
            .await
            .map_err(|e| e.to_string())?;
            self.time(3, t0);
            let t0 = Date::now().as_millis();
            let decided = decide(self.config, self.map, &todo, &stored);
            counts.unchanged += decided.unchanged;
            let (batches, too_large) = batches(self.config, decided.pending);
            let rejected: Vec<(String, String)> = decided
                .rejected
                .into_iter()
                .chain(too_large)
                .map(|r| (r.id, r.code))
                .collect();
            counts.rejected += rejected.len() as u64;
            self.dead_letter(&rejected).await?;
            counts.batches += batches.len() as u64;
            self.time(4, t0);
            // At most 6 connections at once per invocation (Cloudflare), shared by the units of
            // the batch (`consume`): each delivery, then its commit, one after the other within
            // a slot.
            let results: Vec<Delivered> = stream::iter(batches.iter())
                .map(|b| self.deliver(b))
                .buffer_unordered(self.deliveries)
                .collect()
                .await;
            let mut conflicts = Vec::new();
            for r in results {
                match r {
                    Delivered::Failed(e) => return Err(e),
                    Delivered::Done { conflicts: c, body } => {
                        missing_deleted.extend(counts.settle_batch(&body, &c));
                        conflicts.extend(c);
                    }
                }
            }
            if conflicts.is_empty() {
                return Ok(missing_deleted);
            }
            todo = todo.only(&conflicts);
        }
        Err("record store conflicts did not settle".into())
    }

    async fn deliver(&self, batch: &Batch) -> Delivered {
        let t0 = Date::now().as_millis();
        let (attempt, _) = crate::forward::send_signed(self.forward, &batch.id, &batch.body).await;
        self.time(6, t0);
        if !matches!(attempt, Attempt::Answered { status, .. } if (200..300).contains(&status)) {
            return Delivered::Failed(format!(
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
        let outcomes = match committed {
            Ok(o) => o,
            // Delivered, not committed: read again, the same batch id goes out again.
            Err(e) => return Delivered::Failed(e.to_string()),
        };
        let Ok(body) = serde_json::from_str::<SyncBatchBody>(&batch.body) else {
            return Delivered::Failed("batch body".into());
        };
        Delivered::Done {
            conflicts: Batch::conflicts(&outcomes),
            body,
        }
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
            let event = serde_json::value::to_raw_value(&SyncLetter::new(
                self.config.portal_id,
                self.object_type,
                id,
            ))
            .map_err(|e| e.to_string())?;
            let letter = crate::queue::DeadLetterMessage {
                v: 1,
                reason: code.clone(),
                detail: format!("sync: {} record {id} was not delivered", self.object_type),
                attempts: 1,
                key: Some(format!("sync:{}:{id}", self.object_type)),
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
