//! One consumer invocation on one unit message, as a poll-style machine: [`UnitWork`] says what
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

    /// Whether the unit, between two pages, has read its `pagesPerUnit` pages: from then on it
    /// no longer holds its queue batch (it reads on only while another unit does).
    pub fn read_its_share(&self) -> bool {
        matches!(self.stage, Stage::Top) && self.pages_read >= self.config.pages_per_unit.max(1)
    }

    /// Live records whose associations were left out so far (beyond HubSpot's paging rounds,
    /// [`AssocPlan::truncated`]).
    pub fn truncated_associations(&self) -> usize {
        self.truncated
    }

    /// What to do next; `others_busy`: another unit of the queue batch still reads its first
    /// pages (asked between pages only).
    pub fn next(&mut self, others_busy: bool) -> UnitAsk {
        loop {
            match &mut self.stage {
                Stage::Top => {
                    if !self.config.reads_more(self.pages_read, others_busy) {
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
    pub fn on_delivered(
        &mut self,
        results: Vec<(Batch, Result<Vec<(String, CommitOutcome)>, String>)>,
    ) {
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

    /// The report (the unit where it got to), whether any page was settled (or a list range
    /// fell back to search), and the error that stopped it early.
    pub fn finish(self) -> (UnitReport, bool, Option<String>) {
        let mut report = self.report;
        report.unit = self.unit;
        (report, self.progress, self.error)
    }
}
