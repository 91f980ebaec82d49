//! One consumer invocation on one unit message, as a poll-style machine: [`UnitWork::ask`] says what
//! to do next ([`UnitAsk`]: a HubSpot read, an associations read, a record-store lookup, dead
//! letters, deliveries with their commits, a window of the store's live ids), the host performs
//! it and feeds the answer back, until [`UnitAsk::Done`]; then [`UnitWork::finish`] gives the
//! report. The steps are those of the [module docs](super) (1 to 5).

use std::collections::HashMap;

use super::assoc::{AssocPlan, AssocRead};
use super::batch::{batches, Batch, SyncBatchBody};
use super::config::SyncConfig;
use super::detect::{decide, lookups, missing_in_window};
use super::run::{Counts, UnitMessage, UnitReport, MAX_REPORTED_MISSING};
use super::unit::{Read, Step, Unit};
use crate::api::{AssociationResult, BatchResponse, Page};
use crate::mapping::ObjectMap;
use crate::records::{CommitOutcome, Stored};

/// Record-store commit conflicts decided again per page before the unit gives up for now.
const MAX_SETTLE_ROUNDS: usize = 10;

/// A delivered batch's commit outcomes, or why it was not delivered or committed.
type Delivery = Result<Vec<(String, CommitOutcome)>, String>;

/// What the host does next for a [`UnitWork`].
#[derive(Debug, Clone, PartialEq)]
pub enum UnitAsk {
    /// Perform this read (through the rate gate): [`UnitWork::on_page`], or
    /// [`UnitWork::on_read_failed`].
    Read(Read),
    /// Perform this associations v4 batch read (through the rate gate):
    /// [`UnitWork::on_associations`].
    Associations(AssocRead),
    /// Read the stored state of these record ids from the record store:
    /// [`UnitWork::on_stored`].
    Lookup(Vec<String>),
    /// Dead-letter these records, `(id, code)` (values that do not map, too large): reference
    /// them by type and id only. Then ask again ([`UnitWork::on_failed`] if they could not be
    /// queued).
    DeadLetter(Vec<(String, String)>),
    /// Deliver each batch (`webhook-id` = its id) and, after a 2xx, commit its writes; hand
    /// each batch back with the commit's outcomes, or why it was not delivered or committed:
    /// [`UnitWork::on_delivered`]. They may go at the same time.
    Deliver(Vec<Batch>),
    /// The record store's live ids in `[from, to)`, at most `max`, ascending:
    /// [`UnitWork::on_window`].
    Window {
        /// First id.
        from: u64,
        /// First id after.
        to: u64,
        /// At most this many.
        max: usize,
    },
    /// Nothing more in this invocation: [`UnitWork::finish`], then report.
    Done,
}

#[derive(Debug)]
enum Stage {
    /// Between pages.
    Top,
    /// A read is out.
    Reading,
    /// Reading the page's associations.
    Assoc(AssocPlan),
    /// Deciding and delivering the page (a round per conflict).
    Settle(Settle),
    /// The page is settled: its window, if any, is next.
    Settled,
    /// The window's store ids are out.
    Window,
    Done,
}

/// A page being decided and delivered.
#[derive(Debug)]
struct Settle {
    /// The records still to settle (all of the page, then those whose commit was refused).
    todo: Step,
    round: usize,
    /// Whether `todo`'s stored state is in (it is decided).
    decided: bool,
    missing_deleted: Vec<String>,
    rejected: Vec<(String, String)>,
    batches: Vec<Batch>,
}

/// One unit message's work in one consumer invocation: up to
/// [`SyncConfig::pages_per_unit`] pages, more while other units of the queue batch still read
/// theirs ([`SyncConfig::reads_more`]). Every failure stops it with its error; nothing of the
/// page then counts as settled (the unit reads the page again).
#[derive(Debug)]
pub struct UnitWork<'a> {
    config: &'a SyncConfig,
    map: &'a ObjectMap,
    properties: Vec<String>,
    unit: Unit,
    /// The page's advanced unit, kept once the page is settled.
    next: Option<Unit>,
    step: Option<Step>,
    report: UnitReport,
    progress: bool,
    error: Option<String>,
    pages_read: u32,
    truncated: usize,
    stage: Stage,
}

impl<'a> UnitWork<'a> {
    /// Delay before a unit that stopped without progress (a HubSpot limit, a destination that
    /// refused) is worked again from the same state, by the queue's own redelivery: long
    /// enough not to spin, short against the lease ([`super::Coordinator::DEFAULT_LEASE_MS`]).
    pub const RETRY_DELAY_SECS: u32 = 30;

    /// Starts on `msg` with the type's configuration and map.
    pub fn new(config: &'a SyncConfig, map: &'a ObjectMap, msg: &UnitMessage) -> Self {
        Self {
            config,
            map,
            properties: config.read_properties(map),
            unit: msg.unit.clone(),
            next: None,
            step: None,
            report: UnitReport {
                run_id: msg.run_id.clone(),
                unit_id: msg.unit_id,
                seq: msg.seq,
                unit: msg.unit.clone(),
                counts: Counts::default(),
                missing: Vec::new(),
                missing_overflow: 0,
                missing_deleted: Vec::new(),
            },
            progress: false,
            error: None,
            pages_read: 0,
            truncated: 0,
            stage: Stage::Top,
        }
    }

    /// Live records whose associations were left out so far (beyond HubSpot's paging rounds,
    /// [`AssocPlan::truncated`]).
    pub fn truncated_associations(&self) -> usize {
        self.truncated
    }

    /// What to do next. Between pages it asks `others_busy` whether another unit of the queue
    /// batch still reads its first pages, telling it whether this one has read its
    /// `pagesPerUnit` pages (from then on it no longer holds the batch: it reads on only while
    /// another unit does, [`SyncConfig::reads_more`]).
    pub fn ask(&mut self, others_busy: impl FnOnce(bool) -> bool) -> UnitAsk {
        let mut others_busy = Some(others_busy);
        loop {
            match &mut self.stage {
                Stage::Top => {
                    let read_its_share = self.pages_read >= self.config.pages_per_unit.max(1);
                    let busy = others_busy.take().is_some_and(|f| f(read_its_share));
                    if !self.config.reads_more(self.pages_read, busy) {
                        return self.stop(None);
                    }
                    self.pages_read += 1;
                    return match self.unit.next_read(&self.properties) {
                        Ok(Some(read)) => {
                            self.report.counts.hubspot_calls += 1;
                            self.stage = Stage::Reading;
                            UnitAsk::Read(read)
                        }
                        Ok(None) => self.stop(None),
                        Err(e) => self.stop(Some(e.code().to_owned())),
                    };
                }
                Stage::Assoc(plan) => {
                    if let Some(read) = plan.next_read() {
                        self.report.counts.hubspot_calls += 1;
                        return UnitAsk::Associations(read.clone());
                    }
                    let (Stage::Assoc(plan), Some(step)) = (
                        std::mem::replace(&mut self.stage, Stage::Reading),
                        self.step.as_mut(),
                    ) else {
                        return self.stop(Some("sync_internal".into()));
                    };
                    self.truncated += plan.truncated();
                    plan.finish(step);
                    self.report.counts.fallbacks += u64::from(step.fell_back);
                    self.report.counts.read += step.live.len() as u64;
                    self.stage = Stage::Settle(Settle {
                        todo: step.clone(),
                        round: 0,
                        decided: false,
                        missing_deleted: Vec::new(),
                        rejected: Vec::new(),
                        batches: Vec::new(),
                    });
                }
                Stage::Settle(s) => {
                    if !s.decided {
                        return UnitAsk::Lookup(lookups(&s.todo));
                    }
                    if !s.rejected.is_empty() {
                        return UnitAsk::DeadLetter(std::mem::take(&mut s.rejected));
                    }
                    if !s.batches.is_empty() {
                        return UnitAsk::Deliver(std::mem::take(&mut s.batches));
                    }
                    // Nothing to deliver: settled.
                    self.on_delivered(Vec::new());
                }
                Stage::Settled => {
                    let window = self.step.as_ref().and_then(|s| s.window.as_ref());
                    match window {
                        Some((w, seen)) => {
                            let ask = UnitAsk::Window {
                                from: w.from,
                                to: w.to,
                                max: seen.len() + MAX_REPORTED_MISSING,
                            };
                            self.stage = Stage::Window;
                            return ask;
                        }
                        None => self.advance(),
                    }
                }
                Stage::Reading | Stage::Window | Stage::Done => return self.stop(None),
            }
        }
    }

    fn stop(&mut self, error: Option<String>) -> UnitAsk {
        if error.is_some() {
            self.error = error;
        }
        self.stage = Stage::Done;
        UnitAsk::Done
    }

    /// The page is settled (and its window reconciled): the unit moves past it.
    fn advance(&mut self) {
        if let Some(next) = self.next.take() {
            self.unit = next;
        }
        self.step = None;
        self.progress = true;
        self.stage = Stage::Top;
    }

    /// The page [`UnitAsk::Read`] asked for.
    pub fn on_page(&mut self, page: &Page) {
        let mut next = self.unit.clone();
        match next.on_page(page) {
            Ok(step) => {
                self.stage = Stage::Assoc(AssocPlan::new(self.config, &step));
                self.step = Some(step);
                self.next = Some(next);
            }
            Err(e) => {
                self.stop(Some(e.code().to_owned()));
            }
        }
    }

    /// The read failed with `error`; `invalid`: HubSpot refused it as invalid (400), which a
    /// list range answers by reading by search from where it is ([`Unit::on_refused`]).
    /// Anything else stops the unit.
    pub fn on_read_failed(&mut self, error: String, invalid: bool) {
        if invalid && self.unit.on_refused() {
            self.report.counts.fallbacks += 1;
            self.progress = true;
            self.stage = Stage::Top;
        } else {
            self.stop(Some(error));
        }
    }

    /// An asked operation failed (an associations read, the record store, the dead-letter
    /// queue): the unit stops with `error`.
    pub fn on_failed(&mut self, error: String) {
        self.stop(Some(error));
    }

    /// HubSpot's answer to [`UnitAsk::Associations`].
    pub fn on_associations(&mut self, answer: &BatchResponse<AssociationResult>) {
        if let Stage::Assoc(plan) = &mut self.stage {
            if let Err(e) = plan.on_answer(answer) {
                self.stop(Some(e.code().to_owned()));
            }
        }
    }

    /// The stored state [`UnitAsk::Lookup`] asked for: the records are decided, the unchanged
    /// dropped, the rest batched (or rejected).
    pub fn on_stored(&mut self, stored: &HashMap<String, Stored>) {
        let Stage::Settle(s) = &mut self.stage else {
            return;
        };
        let decided = decide(self.config, self.map, &s.todo, stored);
        let counts = &mut self.report.counts;
        counts.unchanged += decided.unchanged;
        let (made, too_large) = batches(self.config, decided.pending);
        s.rejected = decided
            .rejected
            .into_iter()
            .chain(too_large)
            .map(|r| (r.id, r.code))
            .collect();
        counts.rejected += s.rejected.len() as u64;
        counts.batches += made.len() as u64;
        s.batches = made;
        s.decided = true;
    }

    /// Each batch of [`UnitAsk::Deliver`] handed back with its commit's outcomes, or why it
    /// was not delivered or committed: the first such stops the unit (the page is read again,
    /// and a batch delivered but not committed goes out again with the same id). Refused
    /// commits are decided again against the newer state (a new [`UnitAsk::Lookup`]), up to
    /// 10 rounds.
    pub fn on_delivered(&mut self, results: Vec<(Batch, Delivery)>) {
        let Stage::Settle(s) = &mut self.stage else {
            return;
        };
        let mut conflicts = Vec::new();
        for (batch, result) in results {
            let outcomes = match result {
                Ok(o) => o,
                Err(e) => {
                    self.stop(Some(e));
                    return;
                }
            };
            let Ok(body) = serde_json::from_str::<SyncBatchBody>(&batch.body) else {
                self.stop(Some("batch body".into()));
                return;
            };
            let refused = Batch::conflicts(&outcomes);
            s.missing_deleted
                .extend(self.report.counts.settle_batch(&body, &refused));
            conflicts.extend(refused);
        }
        if conflicts.is_empty() {
            let deleted = std::mem::take(&mut s.missing_deleted);
            self.report.missing_deleted.extend(deleted);
            self.stage = Stage::Settled;
            return;
        }
        s.round += 1;
        if s.round >= MAX_SETTLE_ROUNDS {
            self.stop(Some("record store conflicts did not settle".into()));
            return;
        }
        s.todo = s.todo.only(&conflicts);
        s.decided = false;
    }

    /// The store's live ids [`UnitAsk::Window`] asked for: the reconcile's missing candidates
    /// go into the report, and the unit moves past the page.
    pub fn on_window(&mut self, stored: Vec<u64>) {
        if !matches!(self.stage, Stage::Window) {
            return;
        }
        if let Some((_, seen)) = self.step.as_ref().and_then(|s| s.window.as_ref()) {
            self.report.add_missing(missing_in_window(seen, stored));
        }
        self.advance();
    }

    /// Whether a unit that [`finish`](Self::finish)ed with `progress` and `failed` is retried
    /// from its message's state (after a delay) rather than reported: it stopped on an error
    /// without settling a page. A reported unit's message is acknowledged once the coordinator
    /// accepts the report, retried otherwise.
    pub fn retries(progress: bool, failed: bool) -> bool {
        !progress && failed
    }

    /// The report (the unit where it got to), whether any page was settled (or a list range
    /// fell back to search), and the error that stopped it early.
    pub fn finish(self) -> (UnitReport, bool, Option<String>) {
        let mut report = self.report;
        report.unit = self.unit;
        (report, self.progress, self.error)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::mapping::Mapping;
    use crate::sync::VerifyUnit;

    const MAP: &str = r#"{"objects":{"contacts":{"fields":[
        {"hubspot":"email","type":"email"},
        {"hubspot":"firstname","field":"first_name"}]}}}"#;

    fn map() -> ObjectMap {
        Mapping::from_json(MAP)
            .expect("map")
            .object("contacts")
            .expect("contacts")
            .clone()
    }

    fn config() -> SyncConfig {
        SyncConfig {
            pages_per_unit: 1,
            ..SyncConfig::new(crate::id::PortalId::new(62_515), "contacts")
        }
    }

    fn message(ids: &[u64]) -> UnitMessage {
        UnitMessage {
            v: 1,
            run_id: "contacts:1".into(),
            unit_id: 3,
            seq: 2,
            unit: Unit::Verify(VerifyUnit { ids: ids.to_vec() }),
        }
    }

    fn page(ids: &[u64]) -> Page {
        let results: Vec<serde_json::Value> = ids
            .iter()
            .map(|id| {
                serde_json::json!({"id": id.to_string(), "properties": {
                    "email": format!("p{id}@example.com"), "firstname": "Ann",
                    "hs_object_id": id.to_string(),
                    "lastmodifieddate": "2026-01-01T00:00:00.000Z"}})
            })
            .collect();
        serde_json::from_value(serde_json::json!({ "results": results })).expect("page")
    }

    fn committed(b: &Batch) -> Vec<(String, CommitOutcome)> {
        b.commits
            .iter()
            .map(|c| (c.id.clone(), CommitOutcome::Committed { version: 1 }))
            .collect()
    }

    #[test]
    fn a_page_is_read_decided_delivered_and_committed_then_the_unit_moves_on() {
        let (config, map) = (config(), map());
        let msg = message(&[7]);
        let mut work = UnitWork::new(&config, &map, &msg);
        let UnitAsk::Read(Read::BatchRead { ids, .. }) = work.ask(|_| false) else {
            panic!("a verify unit reads by batch read");
        };
        assert_eq!(ids, ["7"]);
        work.on_page(&page(&[7]));
        assert_eq!(work.ask(|_| false), UnitAsk::Lookup(vec!["7".to_owned()]));
        work.on_stored(&HashMap::new());
        let UnitAsk::Deliver(batches) = work.ask(|_| false) else {
            panic!("a new record is delivered");
        };
        assert_eq!(batches.len(), 1);
        let results = batches
            .into_iter()
            .map(|b| {
                let c = committed(&b);
                (b, Ok(c))
            })
            .collect();
        work.on_delivered(results);
        let mut told = None;
        assert_eq!(
            work.ask(|share| {
                told = Some(share);
                false
            }),
            UnitAsk::Done
        );
        assert_eq!(told, Some(true), "its one page read and settled");
        let (report, progress, error) = work.finish();
        assert!(progress);
        assert_eq!(error, None);
        assert_eq!((report.counts.upserted, report.counts.batches), (1, 1));
        assert_eq!(report.counts.hubspot_calls, 1);
        assert!(report.unit.is_done(), "the unit moved past its page");
        assert_eq!(
            (report.unit_id, report.seq),
            (3, 2),
            "the message's unit and sequence"
        );
    }

    #[test]
    fn a_failed_delivery_stops_the_unit_where_it_was() {
        let (config, map) = (config(), map());
        let msg = message(&[7]);
        let mut work = UnitWork::new(&config, &map, &msg);
        assert!(matches!(work.ask(|_| false), UnitAsk::Read(_)));
        work.on_page(&page(&[7]));
        assert!(matches!(work.ask(|_| false), UnitAsk::Lookup(_)));
        work.on_stored(&HashMap::new());
        let UnitAsk::Deliver(batches) = work.ask(|_| false) else {
            panic!("delivers");
        };
        let results = batches
            .into_iter()
            .map(|b| (b, Err("delivery x: 503".to_owned())))
            .collect();
        work.on_delivered(results);
        assert_eq!(work.ask(|_| true), UnitAsk::Done);
        let (report, progress, error) = work.finish();
        assert!(!progress, "nothing settled: retried from the same state");
        assert_eq!(error.as_deref(), Some("delivery x: 503"));
        assert_eq!(report.unit, msg.unit, "the page is read again");
        assert_eq!(report.counts.upserted, 0);
    }

    #[test]
    fn refused_commits_are_decided_again_then_given_up() {
        let (config, map) = (config(), map());
        let msg = message(&[7]);
        let mut work = UnitWork::new(&config, &map, &msg);
        assert!(matches!(work.ask(|_| false), UnitAsk::Read(_)));
        work.on_page(&page(&[7]));
        let mut lookups = 0;
        loop {
            match work.ask(|_| false) {
                UnitAsk::Lookup(ids) => {
                    assert_eq!(ids, ["7"]);
                    lookups += 1;
                    work.on_stored(&HashMap::new());
                }
                UnitAsk::Deliver(batches) => {
                    let results = batches
                        .into_iter()
                        .map(|b| {
                            let refused = b
                                .commits
                                .iter()
                                .map(|c| (c.id.clone(), CommitOutcome::Conflict { current: 9 }))
                                .collect();
                            (b, Ok(refused))
                        })
                        .collect();
                    work.on_delivered(results);
                }
                UnitAsk::Done => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(lookups, MAX_SETTLE_ROUNDS);
        let (report, progress, error) = work.finish();
        assert_eq!(
            error.as_deref(),
            Some("record store conflicts did not settle")
        );
        assert!(!progress);
        assert_eq!(report.counts.upserted, 0, "nothing committed");
        assert_eq!(report.counts.batches, MAX_SETTLE_ROUNDS as u64);
    }

    #[test]
    fn a_read_that_gave_up_stops_the_unit_and_an_invalid_one_stops_a_verify_unit_too() {
        let (config, map) = (config(), map());
        let msg = message(&[7]);
        for invalid in [false, true] {
            let mut work = UnitWork::new(&config, &map, &msg);
            assert!(matches!(work.ask(|_| false), UnitAsk::Read(_)));
            work.on_read_failed("hubspot gave up".into(), invalid);
            assert_eq!(work.ask(|_| false), UnitAsk::Done);
            let (report, progress, error) = work.finish();
            assert_eq!(
                (progress, error.as_deref()),
                (false, Some("hubspot gave up"))
            );
            assert_eq!(report.counts.hubspot_calls, 1);
            assert_eq!(report.unit, msg.unit);
        }
    }

    #[test]
    fn an_unmappable_record_is_dead_lettered_by_id_and_code() {
        let (config, map) = (config(), map());
        let msg = message(&[7]);
        let mut work = UnitWork::new(&config, &map, &msg);
        assert!(matches!(work.ask(|_| false), UnitAsk::Read(_)));
        let mut bad = page(&[7]);
        bad.results[0]
            .properties
            .insert("email".into(), Some("not an email".into()));
        work.on_page(&bad);
        assert!(matches!(work.ask(|_| false), UnitAsk::Lookup(_)));
        work.on_stored(&HashMap::new());
        let UnitAsk::DeadLetter(letters) = work.ask(|_| false) else {
            panic!("dead-lettered");
        };
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].0, "7");
        assert!(!letters[0].1.is_empty(), "with its code");
        // Nothing left to deliver: the page is settled.
        assert_eq!(work.ask(|_| false), UnitAsk::Done);
        let (report, progress, error) = work.finish();
        assert_eq!((progress, error), (true, None));
        assert_eq!(report.counts.rejected, 1);
    }

    #[test]
    fn a_unit_is_retried_only_when_it_stopped_without_progress() {
        assert!(UnitWork::retries(false, true));
        assert!(!UnitWork::retries(true, true), "progress: reported");
        assert!(
            !UnitWork::retries(false, false),
            "done without pages: reported"
        );
        assert!(!UnitWork::retries(true, false));
    }
}
