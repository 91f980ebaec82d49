//! The coordinator: one (portal, object type)'s sync state, kept by its host (the Worker's
//! `SyncCoordinator` Durable Object, as one JSON value) around the [`Run`]: the incremental
//! cursor, the last run's report, the paused flag, the error count and the ids waiting to be
//! read again. Poll-style like [`Run`]: the host loads it, calls one method with `now`,
//! performs what it answers (the probe's two searches, queueing unit messages), saves it.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::SyncConfig;
use super::run::{Mode, Run, RunReport, UnitMessage, UnitReport};
use super::SyncError;
use crate::api::{Page, SearchRequest};
use crate::config::{Due, Sync as SyncSettings};

/// Ids waiting for the next incremental run, at most: 100,000 ids are ~2 MB of JSON, the
/// largest value Durable Object storage keeps; past this, a full run is the cheaper re-read.
const MAX_RECHECK: usize = 20_000;

/// What a coordinator keeps (one storage value, at most a run's state: ~65 KB of missing
/// candidates at most, far below a Durable Object value's 2 MB). Stored as JSON text: ids up
/// to 2^63 − 1 (a run's open range) are not exact as JS numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Coordinator {
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
    recheck: BTreeSet<u64>,
}

/// A run just started by [`Coordinator::launch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// The run's id (`{objectType}:{now}`).
    pub run_id: String,
    /// Its mode.
    pub mode: Mode,
    /// A full run's probe (the two searches of [`Run::probe`]): perform them and feed the
    /// pages to [`Coordinator::on_probe`]. `None`: queue [`Launch::queue`] now.
    pub probe: Option<[SearchRequest; 2]>,
    /// The unit messages to queue (empty while a probe is to be made).
    pub queue: Vec<UnitMessage>,
}

/// What [`Coordinator::recheck`] did with re-driven ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rechecked {
    /// The running run reads them: queue these messages.
    Now(Vec<UnitMessage>),
    /// Kept for the next incremental run; `start`: the type is idle and not paused, start one
    /// now (incremental).
    NextRun {
        /// Whether to start an incremental run now.
        start: bool,
    },
    /// Too many ids wait already (20,000 at most); nothing kept: a full run is the re-read.
    Full,
}

impl Coordinator {
    /// The lease when `SYNC_LEASE_SECS` cannot be read: its default, 15 minutes, Queues' wall
    /// time per consumer invocation ([`crate::config::SYNC_LEASE_SECS`]), so that only a dead
    /// unit is queued again.
    pub const DEFAULT_LEASE_MS: u64 = crate::config::SYNC_LEASE_SECS.default * 1000;

    /// The longest period of the coordinator's alarm while a run is going
    /// ([`Coordinator::alarm_period_ms`]): a minute, so a lost unit waits at most a minute past
    /// its lease.
    pub const MAX_ALARM_PERIOD_MS: u64 = 60_000;

    /// How often the coordinator's alarm checks the leases while a run is going
    /// ([`Coordinator::overdue`]): [`Coordinator::MAX_ALARM_PERIOD_MS`], or half the lease
    /// (`lease_ms`, configured) when that is shorter.
    pub fn alarm_period_ms(lease_ms: Option<u64>) -> u64 {
        lease_ms.map_or(Self::MAX_ALARM_PERIOD_MS, |lease| {
            Self::MAX_ALARM_PERIOD_MS.min(lease / 2)
        })
    }

    /// The lease the alarm checks: the configured one (`SYNC_LEASE_SECS`), else
    /// [`Coordinator::DEFAULT_LEASE_MS`].
    pub fn lease_ms(configured: Option<u64>) -> u64 {
        configured.unwrap_or(Self::DEFAULT_LEASE_MS)
    }

    /// The status `POST /admin/sync/{type}/run` answers, from the coordinator's `status` and
    /// `answer` to the start: 409 when a run is going or the type is paused, 202 when it
    /// started (200 from the coordinator), else the coordinator's own status.
    pub fn admin_run_status(status: u16, answer: &Value) -> u16 {
        if answer["reason"] == "already_running" || answer["reason"] == "paused" {
            409
        } else if status == 200 {
            202
        } else {
            status
        }
    }

    /// The run going on, if any.
    pub fn run(&self) -> Option<&Run> {
        self.run.as_ref()
    }

    /// The incremental cursor (`None` before the first run finished).
    pub fn cursor_ms(&self) -> Option<u64> {
        self.cursor_ms
    }

    /// The object type, as last named by a start, recheck or pause.
    pub fn object_type(&self) -> &str {
        &self.object_type
    }

    /// Whether a start may go on, and in which mode: `mode` is the admin's; `None` is the
    /// cron's "whatever is due" by `settings` (nothing is due without settings). `Err`: the
    /// answer to give instead (`{"started": false, "reason": …}`: `already_running`,
    /// `paused`, `not_due`). Then [`Coordinator::launch`].
    pub fn start_mode(
        &mut self,
        object_type: &str,
        mode: Option<Mode>,
        settings: Option<&SyncSettings>,
        now_ms: u64,
    ) -> Result<Mode, Value> {
        object_type.clone_into(&mut self.object_type);
        if let Some(run) = &self.run {
            return Err(json!({
                "started": false, "reason": "already_running", "runId": run.id(),
            }));
        }
        if self.paused {
            return Err(json!({"started": false, "reason": "paused"}));
        }
        if let Some(m) = mode {
            return Ok(m);
        }
        let due = settings.map_or(Due::Nothing, |s| {
            s.due(
                now_ms,
                self.last_started_ms,
                self.last_full_ms,
                false,
                self.paused,
            )
        });
        match due {
            Due::Nothing => Err(json!({"started": false, "reason": "not_due"})),
            Due::Incremental => Ok(Mode::Incremental),
            Due::Full => Ok(Mode::Full),
        }
    }

    /// Starts a run of `mode` at `now_ms` ([`Run::start`], id `{objectType}:{now_ms}`). An
    /// incremental run takes the ids waiting to be read again (a full run leaves them to the
    /// next incremental one: one batch read per 1,000 ids, and nothing lost if its probe
    /// fails).
    ///
    /// # Errors
    /// [`Run::start`]'s; nothing changes then.
    pub fn launch(
        &mut self,
        config: &SyncConfig,
        mode: Mode,
        now_ms: u64,
    ) -> Result<Launch, SyncError> {
        let mut run = Run::start(
            config,
            format!("{}:{now_ms}", self.object_type),
            mode,
            self.cursor_ms,
            now_ms,
        )?;
        if run.mode() == Mode::Incremental && !self.recheck.is_empty() {
            let ids: Vec<u64> = std::mem::take(&mut self.recheck).into_iter().collect();
            let _ = run.recheck(&ids);
        }
        let probe = run.probe();
        let launch = Launch {
            run_id: run.id().to_owned(),
            mode: run.mode(),
            queue: if probe.is_some() {
                Vec::new()
            } else {
                run.outstanding()
            },
            probe,
        };
        self.last_started_ms = Some(now_ms);
        if launch.mode == Mode::Full {
            self.last_full_ms = Some(now_ms);
        }
        self.run = Some(run);
        Ok(launch)
    }

    /// The probe's two pages for run `run_id` ([`Run::on_probe`]): the unit messages to queue.
    /// `None`: that run is no longer the one going on (superseded).
    ///
    /// # Errors
    /// [`Run::on_probe`]'s: then [`Coordinator::fail`] the run.
    pub fn on_probe(
        &mut self,
        run_id: &str,
        config: &SyncConfig,
        lo: &Page,
        hi: &Page,
        now_ms: u64,
    ) -> Option<Result<Vec<UnitMessage>, SyncError>> {
        let run = self.run.as_mut().filter(|r| r.id() == run_id)?;
        Some(run.on_probe(config, lo, hi, now_ms))
    }

    /// A run that could not start (its probe failed): dropped, due again at the next poke, the
    /// error kept for the admin API.
    pub fn fail(&mut self, run_id: &str, error: &str) {
        if self.run.as_ref().is_some_and(|r| r.id() == run_id) {
            self.run = None;
            self.last_started_ms = None;
            self.last_full_ms = self
                .last
                .as_ref()
                .filter(|l| l.mode == Mode::Full)
                .map(|l| l.started_ms);
        }
        self.unit_failed(error);
    }

    /// One more error for the admin API (`errors`, `lastError`, its first 300 characters): a
    /// unit invocation that stopped early, or a run that could not start.
    pub fn unit_failed(&mut self, error: &str) {
        self.errors += 1;
        self.last_error = Some(error.chars().take(300).collect());
    }

    /// A unit's report ([`Run::on_report`]): the messages to queue (none while paused: the
    /// continuations stay in the run, queued again on resume) and, when the run is done, its
    /// report (the cursor moved, the run dropped). `None` when no run is going (the report is
    /// not accepted).
    pub fn on_report(
        &mut self,
        config: &SyncConfig,
        report: UnitReport,
        now_ms: u64,
    ) -> Option<(Vec<UnitMessage>, Option<RunReport>)> {
        let run = self.run.as_mut()?;
        let out = run.on_report(config, report, now_ms);
        let mut finished = None;
        if run.is_done() {
            self.cursor_ms = run.next_cursor();
            let report = run.report();
            self.last = Some(report.clone());
            self.last_finished_ms = Some(now_ms);
            self.run = None;
            finished = Some(report);
        }
        let out = if self.paused { Vec::new() } else { out };
        Some((out, finished))
    }

    /// Re-driven records: read by the running run when it can take them (and the type is not
    /// paused), else kept for the next incremental run.
    pub fn recheck(&mut self, object_type: &str, ids: &[u64]) -> Rechecked {
        object_type.clone_into(&mut self.object_type);
        if let Some(run) = self.run.as_mut() {
            if !self.paused {
                if let Some(messages) = run.recheck(ids) {
                    return Rechecked::Now(messages);
                }
            }
        }
        if self.recheck.len() + ids.len() > MAX_RECHECK {
            return Rechecked::Full;
        }
        self.recheck.extend(ids.iter().copied());
        Rechecked::NextRun {
            start: self.run.is_none() && !self.paused,
        }
    }

    /// Pauses or resumes. On a resume with a run going: its outstanding units, to queue again
    /// (and the lease alarm to set).
    pub fn pause(&mut self, object_type: &str, paused: bool) -> Option<Vec<UnitMessage>> {
        object_type.clone_into(&mut self.object_type);
        let resumed = self.paused && !paused;
        self.paused = paused;
        if resumed {
            self.run.as_ref().map(Run::outstanding)
        } else {
            None
        }
    }

    /// The lease check (the host's alarm): the units overdue by `lease_ms` to queue again
    /// ([`Run::overdue`]). `Err`: nothing to check, `"idle"` (no run) or `"paused"`.
    pub fn overdue(
        &mut self,
        now_ms: u64,
        lease_ms: u64,
    ) -> Result<Vec<UnitMessage>, &'static str> {
        let Some(run) = self.run.as_mut() else {
            return Err("idle");
        };
        if self.paused {
            return Err("paused");
        }
        Ok(run.overdue(now_ms, lease_ms))
    }

    /// The admin API's status of the type (`GET /admin/sync`): state (`idle`, `running`,
    /// `paused`), cursor and lag, the current run's report and the last one's, errors.
    pub fn status(&self, object_type: &str, now_ms: u64) -> Value {
        let current = self.run.as_ref().map(Run::report);
        let state = match (&self.run, self.paused) {
            (_, true) => "paused",
            (Some(_), false) => "running",
            (None, false) => "idle",
        };
        json!({
            "objectType": object_type,
            "state": state,
            "cursorMs": self.cursor_ms,
            // How far behind HubSpot the destination may be: changes since the cursor.
            "lagMs": self.cursor_ms.map(|cursor| now_ms.saturating_sub(cursor)),
            "lastStartedMs": self.last_started_ms,
            "lastFullMs": self.last_full_ms,
            "lastFinishedMs": self.last_finished_ms,
            "current": current,
            "last": self.last,
            "errors": self.errors,
            "lastError": self.last_error,
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::api::SimpleObject;
    use crate::sync::Counts;

    const NOW: u64 = 1_700_000_000_000;

    fn config() -> SyncConfig {
        SyncConfig {
            initial_units: 2,
            ..SyncConfig::new(crate::id::PortalId::new(62_515), "contacts")
        }
    }

    fn settings() -> SyncSettings {
        SyncSettings {
            portal_id: crate::id::PortalId::new(62_515),
            object_types: vec!["contacts".into()],
            incremental_ms: 60_000,
            full_ms: 86_400_000,
            lag_ms: 2_000,
            lease_ms: 900_000,
            associations: Vec::new(),
        }
    }

    fn page(id: u64) -> Page {
        Page {
            results: vec![
                serde_json::from_value::<SimpleObject>(json!({"id": id.to_string()}))
                    .expect("record"),
            ],
            next_after: None,
            total: None,
        }
    }

    /// Reports every outstanding message of the run as done, until the run is.
    fn finish(c: &mut Coordinator, mut queue: Vec<UnitMessage>, now: u64) -> RunReport {
        for _ in 0..100 {
            let mut next = Vec::new();
            for m in queue {
                let mut unit = m.unit.clone();
                // Done without reading.
                match &mut unit {
                    crate::sync::Unit::Range(r) => r.done = true,
                    crate::sync::Unit::Modified(_) => unreachable!("full runs only"),
                    crate::sync::Unit::Archived(u) => u.done = true,
                    crate::sync::Unit::Verify(u) => u.ids.clear(),
                }
                let report = UnitReport {
                    run_id: m.run_id.clone(),
                    unit_id: m.unit_id,
                    seq: m.seq,
                    unit,
                    counts: Counts {
                        read: 1,
                        ..Counts::default()
                    },
                    missing: Vec::new(),
                    missing_overflow: 0,
                    missing_deleted: Vec::new(),
                };
                let (out, finished) = c.on_report(&config(), report, now).expect("running");
                if let Some(done) = finished {
                    return done;
                }
                next.extend(out);
            }
            queue = next;
        }
        panic!("the run does not finish");
    }

    #[test]
    fn the_cron_starts_a_full_run_first_then_incremental_when_due() {
        let mut c = Coordinator::default();
        let s = settings();
        assert_eq!(
            c.start_mode("contacts", None, None, NOW),
            Err(json!({"started": false, "reason": "not_due"})),
            "no settings: nothing due"
        );
        assert_eq!(
            c.start_mode("contacts", None, Some(&s), NOW),
            Ok(Mode::Full)
        );
        let launch = c.launch(&config(), Mode::Full, NOW).expect("starts");
        assert_eq!(launch.run_id, format!("contacts:{NOW}"));
        assert!(
            launch.probe.is_some() && launch.queue.is_empty(),
            "a full run probes first"
        );
        assert_eq!(
            c.start_mode("contacts", Some(Mode::Full), Some(&s), NOW),
            Err(json!({"started": false, "reason": "already_running", "runId": launch.run_id}))
        );
        let queue = c
            .on_probe(&launch.run_id, &config(), &page(10), &page(5_000), NOW)
            .expect("the run")
            .expect("probed");
        assert_eq!(
            queue.len(),
            4,
            "initial_units ranges, and the open ones below and above"
        );
        assert_eq!(
            c.on_probe("contacts:1", &config(), &page(10), &page(20), NOW),
            None,
            "another run's probe"
        );
        let done = finish(&mut c, queue, NOW + 10);
        assert_eq!(done.run_id, launch.run_id);
        assert!(c.run().is_none());
        assert_eq!(c.cursor_ms(), Some(NOW - config().lag_ms));
        let status = c.status("contacts", NOW + 10);
        assert_eq!(status["state"], "idle");
        assert_eq!(status["last"]["runId"], launch.run_id);
        assert_eq!(status["lastFinishedMs"], NOW + 10);
        assert_eq!(status["lagMs"], 10 + config().lag_ms);
        // Not due again within SYNC_INCREMENTAL_MINUTES; then incremental.
        assert!(c
            .start_mode("contacts", None, Some(&s), NOW + 30_000)
            .is_err());
        assert_eq!(
            c.start_mode("contacts", None, Some(&s), NOW + 60_000),
            Ok(Mode::Incremental)
        );
        let launch = c
            .launch(&config(), Mode::Incremental, NOW + 60_000)
            .expect("starts");
        assert!(
            launch.probe.is_none() && !launch.queue.is_empty(),
            "queued at once"
        );
        assert_eq!(
            c.status("contacts", NOW)["lastFullMs"],
            NOW,
            "only a full run moves lastFullMs"
        );
    }

    #[test]
    fn a_failed_probe_drops_the_run_and_makes_it_due_again() {
        let mut c = Coordinator::default();
        c.start_mode("contacts", None, Some(&settings()), NOW)
            .expect("due");
        let launch = c.launch(&config(), Mode::Full, NOW).expect("starts");
        c.fail("contacts:other", "unrelated");
        assert!(c.run().is_some(), "another run's failure keeps this one");
        c.fail(&launch.run_id, &"x".repeat(400));
        assert!(c.run().is_none());
        let status = c.status("contacts", NOW);
        assert_eq!(status["errors"], 2);
        assert_eq!(
            status["lastError"].as_str().map(str::len),
            Some(300),
            "truncated"
        );
        assert_eq!(status["lastStartedMs"], Value::Null);
        assert_eq!(
            c.start_mode("contacts", None, Some(&settings()), NOW + 1),
            Ok(Mode::Full),
            "due again"
        );
    }

    #[test]
    fn paused_types_neither_start_nor_queue_and_resume_with_their_units() {
        let mut c = Coordinator::default();
        let launch = c.launch(&config(), Mode::Incremental, NOW).expect("starts");
        assert_eq!(launch.mode, Mode::Full, "no cursor yet: a full run");
        let queue = c
            .on_probe(&launch.run_id, &config(), &page(10), &page(5_000), NOW)
            .expect("run")
            .expect("probed");
        assert_eq!(c.pause("contacts", true), None, "pausing queues nothing");
        assert_eq!(c.status("contacts", NOW)["state"], "paused");
        assert_eq!(c.overdue(NOW + 1_000_000, 900_000), Err("paused"));
        // A report while paused: taken, its continuation kept in the run.
        let m = &queue[0];
        let report = UnitReport {
            run_id: m.run_id.clone(),
            unit_id: m.unit_id,
            seq: m.seq,
            unit: m.unit.clone(),
            counts: Counts::default(),
            missing: Vec::new(),
            missing_overflow: 0,
            missing_deleted: Vec::new(),
        };
        let (out, finished) = c.on_report(&config(), report, NOW).expect("running");
        assert!(out.is_empty() && finished.is_none());
        let again = c.pause("contacts", false).expect("resumed with a run");
        assert_eq!(again.len(), 4, "every unit queued again");
        assert!(again
            .iter()
            .any(|a| a.unit_id == m.unit_id && a.seq == m.seq + 1));
        assert_eq!(
            c.pause("contacts", false),
            None,
            "resuming twice queues nothing"
        );
        assert_eq!(
            c.overdue(NOW + 1, 900_000),
            Ok(Vec::new()),
            "within the lease"
        );
        assert_eq!(c.overdue(NOW + 900_001, 900_000).map(|v| v.len()), Ok(4));
        c.pause("contacts", true);
        assert_eq!(
            c.start_mode("contacts", Some(Mode::Full), None, NOW),
            Err(json!({"started": false, "reason": "already_running", "runId": launch.run_id}))
        );
        let mut idle = Coordinator::default();
        assert_eq!(idle.overdue(NOW, 1), Err("idle"));
        idle.pause("contacts", true);
        assert_eq!(
            idle.start_mode("contacts", Some(Mode::Full), None, NOW),
            Err(json!({"started": false, "reason": "paused"}))
        );
    }

    #[test]
    fn rechecked_ids_wait_for_the_next_incremental_run_or_join_the_running_one() {
        let mut c = Coordinator::default();
        assert_eq!(
            c.recheck("contacts", &[7, 8]),
            Rechecked::NextRun { start: true }
        );
        assert_eq!(c.object_type(), "contacts");
        // A full run leaves them waiting.
        let launch = c.launch(&config(), Mode::Full, NOW).expect("starts");
        let mut queue = c
            .on_probe(&launch.run_id, &config(), &page(10), &page(5_000), NOW)
            .expect("run")
            .expect("probed");
        match c.recheck("contacts", &[9]) {
            Rechecked::Now(m) => queue.extend(m),
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(queue.last().map(|m| &m.unit), Some(crate::sync::Unit::Verify(v)) if v.ids == [9]),
            "the running run reads it at once"
        );
        c.pause("contacts", true);
        assert_eq!(
            c.recheck("contacts", &[10]),
            Rechecked::NextRun { start: false },
            "paused: kept"
        );
        c.pause("contacts", false);
        finish(&mut c, queue, NOW);
        let launch = c
            .launch(&config(), Mode::Incremental, NOW + 1)
            .expect("starts");
        let verify: Vec<u64> = launch
            .queue
            .iter()
            .filter_map(|m| match &m.unit {
                crate::sync::Unit::Verify(v) => Some(v.ids.clone()),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(
            verify,
            [7, 8, 10],
            "the incremental run takes the waiting ids"
        );
        assert_eq!(
            c.recheck("contacts", &[]),
            Rechecked::Now(Vec::new()),
            "running"
        );
        let mut full = Coordinator::default();
        let many: Vec<u64> = (0..MAX_RECHECK as u64).collect();
        assert_eq!(
            full.recheck("contacts", &many),
            Rechecked::NextRun { start: true }
        );
        assert_eq!(full.recheck("contacts", &[1]), Rechecked::Full);
    }

    #[test]
    fn the_stored_state_keeps_its_field_names() {
        let mut c = Coordinator::default();
        c.recheck("contacts", &[1]);
        let text = serde_json::to_string(&c).expect("json");
        for key in [
            "objectType",
            "cursorMs",
            "lastStartedMs",
            "lastFullMs",
            "lastFinishedMs",
            "lastError",
            "recheck",
        ] {
            assert!(text.contains(&format!("\"{key}\"")), "{key} in {text}");
        }
        // A state written before `recheck` existed still reads.
        let old: Coordinator = serde_json::from_str(
            r#"{"objectType":"contacts","run":null,"cursorMs":5,"paused":false,"lastStartedMs":null,"lastFullMs":null,"lastFinishedMs":null,"last":null,"errors":0,"lastError":null}"#,
        )
        .expect("reads");
        assert_eq!(old.cursor_ms(), Some(5));
    }

    #[test]
    fn the_admin_run_parses_its_mode_and_maps_the_coordinators_answer() {
        assert_eq!(Mode::from_query(None), Some(Mode::Incremental));
        assert_eq!(
            Mode::from_query(Some("incremental")),
            Some(Mode::Incremental)
        );
        assert_eq!(Mode::from_query(Some("full")), Some(Mode::Full));
        assert_eq!(Mode::from_query(Some("Full")), None);
        assert_eq!(Mode::from_query(Some("")), None);
        let mut c = Coordinator::default();
        let launch = c.launch(&config(), Mode::Incremental, NOW).expect("starts");
        let running = c
            .start_mode("contacts", Some(Mode::Full), None, NOW)
            .expect_err("running");
        assert_eq!(Coordinator::admin_run_status(200, &running), 409);
        let started = json!({"started": true, "runId": launch.run_id, "mode": "incremental"});
        assert_eq!(Coordinator::admin_run_status(200, &started), 202);
        let mut paused = Coordinator::default();
        paused.pause("contacts", true);
        let refused = paused
            .start_mode("contacts", Some(Mode::Full), None, NOW)
            .expect_err("paused");
        assert_eq!(Coordinator::admin_run_status(200, &refused), 409);
        // The coordinator's own errors keep their status.
        let failed = json!({"error": {"code": "sync_start_failed"}});
        assert_eq!(Coordinator::admin_run_status(502, &failed), 502);
        assert_eq!(Coordinator::admin_run_status(503, &failed), 503);
    }

    #[test]
    fn unit_messages_go_to_the_search_queue_only_when_there_is_one() {
        let mut c = Coordinator::default();
        let launch = c.launch(&config(), Mode::Full, NOW).expect("starts");
        let queue = c
            .on_probe(&launch.run_id, &config(), &page(10), &page(500_000), NOW)
            .expect("current")
            .expect("probed");
        let searching = queue
            .iter()
            .filter(|m| m.unit.budget() == crate::ratelimit::Budget::Search)
            .count();
        assert!(searching > 0 && searching < queue.len(), "{queue:?}");
        let texts: Vec<String> = queue.iter().map(|m| m.to_json().expect("fits")).collect();
        let (list, search) = UnitMessage::by_queue(queue.clone(), true).expect("fits");
        assert_eq!(
            (list.len(), search.len()),
            (queue.len() - searching, searching)
        );
        for t in &search {
            let m: UnitMessage = serde_json::from_str(t).expect("a unit message");
            assert_eq!(m.unit.budget(), crate::ratelimit::Budget::Search);
        }
        let (list, search) = UnitMessage::by_queue(queue, false).expect("fits");
        assert_eq!(
            (list, search.len()),
            (texts, 0),
            "one queue: all of them, in order"
        );
        assert_eq!(
            UnitMessage::by_queue(Vec::new(), true),
            Ok((Vec::new(), Vec::new()))
        );
    }

    #[test]
    fn the_alarm_checks_the_leases_every_minute_or_half_a_short_lease() {
        assert_eq!(Coordinator::alarm_period_ms(None), 60_000);
        assert_eq!(Coordinator::alarm_period_ms(Some(900_000)), 60_000);
        assert_eq!(Coordinator::alarm_period_ms(Some(120_000)), 60_000);
        assert_eq!(Coordinator::alarm_period_ms(Some(30_000)), 15_000);
    }

    #[test]
    fn without_a_readable_lease_the_alarm_uses_queues_fifteen_minutes() {
        assert_eq!(Coordinator::DEFAULT_LEASE_MS, 900_000);
        assert_eq!(Coordinator::lease_ms(None), 900_000);
        assert_eq!(Coordinator::lease_ms(Some(20_000)), 20_000);
        // A unit without progress is tried again well within the lease.
        let retry_ms = u64::from(crate::sync::UnitWork::RETRY_DELAY_SECS) * 1000;
        assert!(retry_ms < Coordinator::DEFAULT_LEASE_MS);
    }
}
