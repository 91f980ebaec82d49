//! A run: the coordinator's state for one (portal, object type), kept by its Durable Object.
//!
//! [`Run::start`] makes a full run (backfill and reconcile) or an incremental one. A full run
//! first finds the id span ([`Run::probe`]: the smallest and largest id, two searches), then
//! splits it into [`SyncConfig::initial_units`] ranges, some read by list and some by search
//! ([`SyncConfig::list_share_percent`]). An incremental run is one walk by last-modified date.
//! Once the live records are read, the archived records are (all of them, or those archived
//! since the cursor): after, so that a record read live and archived meanwhile ends deleted.
//!
//! Units travel as [`UnitMessage`]s; a consumer reads up to [`SyncConfig::pages_per_unit`]
//! pages, delivers, commits, and reports the unit's new state ([`UnitReport`]). The run answers
//! with the messages to queue next: the continuation, split in two when its range is still wide
//! ([`RangeUnit::split`](super::RangeUnit::split)). A report whose sequence number is not the
//! unit's current one (a duplicate queue delivery, a re-queued unit) is ignored.
//!
//! When every unit is done, the reconcile's missing candidates are re-read
//! ([`Unit::Verify`]); then the run is done and [`Run::next_cursor`] is the incremental cursor:
//! `run start − lag`. It never moves past a change not yet delivered: units advance only past
//! pages whose deliveries are settled, the run is done only when every unit is, and a change
//! made after `run start − lag` is read by the next run.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::batch::SyncBatchBody;
use super::config::SyncConfig;
use super::detect::{DeleteReason, Op};
use super::unit::{ArchivedUnit, ModifiedUnit, Path, RangeUnit, Unit, VerifyUnit};
use super::SyncError;
use crate::api::{
    FilterOp, Page, SearchFilter, SearchRequest, Sort, SortDirection, MAX_SEARCH_LIMIT,
};
use crate::queue::MAX_MESSAGE_BYTES;
use crate::search::{SearchPlan, OBJECT_ID};

/// Ids per verify unit: 10 batch reads, and at most 21 KB of ids in its message (20-digit ids).
const VERIFY_IDS_PER_UNIT: usize = 1_000;
/// The end of the id space: HubSpot record ids are 64-bit signed integers in its API (the spec
/// types `hs_object_id` filters as strings; a larger filter value could not be a record id).
pub const ID_END: u64 = i64::MAX as u64;
/// Missing ids listed in a run's report (the rest are counted).
const REPORTED_MISSING: usize = 100;
/// Missing candidates one unit report carries (at most 42 KB of JSON with 20-digit ids; a
/// report also carries its unit and up to 1,000 deleted ids, and must fit a 128 KB queue
/// message); more are counted.
pub const MAX_REPORTED_MISSING: usize = 2_000;

/// What a run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every record (backfill), the archived ones, and the reconcile against the store.
    Full,
    /// The records modified since the cursor, and those archived since.
    Incremental,
}

impl Mode {
    /// The mode of the admin's `POST /admin/sync/{type}/run?mode=`: absent or `incremental`
    /// is [`Mode::Incremental`], `full` is [`Mode::Full`]; `None` for anything else (a 400).
    pub fn from_query(mode: Option<&str>) -> Option<Self> {
        match mode {
            None | Some("incremental") => Some(Self::Incremental),
            Some("full") => Some(Self::Full),
            Some(_) => None,
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Full run: waiting for the id span ([`Run::probe`]).
    Probe,
    /// The live records' units are out (ranges, or the modified walk).
    Units,
    /// The archived walk is out.
    Archived,
    /// Re-reading the missing candidates.
    Verify,
    /// Finished.
    Done,
}

/// Counters of a unit's work, summed over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    /// Live records read.
    pub read: u64,
    /// Records delivered as `upsert`.
    pub upserted: u64,
    /// Records read and found unchanged.
    pub unchanged: u64,
    /// Records delivered as `delete`.
    pub deleted: u64,
    /// Records delivered as `merge`.
    pub merged: u64,
    /// Records dead-lettered (mapping errors, too large).
    pub rejected: u64,
    /// Delivery requests made (retries not counted).
    pub batches: u64,
    /// HubSpot requests made (retries not counted).
    pub hubspot_calls: u64,
    /// List ranges switched to search.
    pub fallbacks: u64,
}

impl Counts {
    /// Counts what a delivered batch settled: each record of `body` whose store commit was
    /// not refused (`refused`: the ids to decide again, [`Batch::conflicts`](super::Batch::conflicts)),
    /// by its op. Returns the ids delivered as `delete` with reason `missing` (the reconcile's
    /// finds, for the run report).
    pub fn settle_batch(&mut self, body: &SyncBatchBody, refused: &[String]) -> Vec<String> {
        let mut missing_deleted = Vec::new();
        for r in body.records.iter().filter(|r| !refused.contains(&r.id)) {
            match r.op {
                Op::Upsert => self.upserted += 1,
                Op::Merge => self.merged += 1,
                Op::Delete => {
                    self.deleted += 1;
                    if r.reason == Some(DeleteReason::Missing) {
                        missing_deleted.push(r.id.clone());
                    }
                }
            }
        }
        missing_deleted
    }

    fn add(&mut self, o: &Counts) {
        self.read += o.read;
        self.upserted += o.upserted;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
        self.merged += o.merged;
        self.rejected += o.rejected;
        self.batches += o.batches;
        self.hubspot_calls += o.hubspot_calls;
        self.fallbacks += o.fallbacks;
    }
}

/// A unit on its way to a consumer (one queue message, under [`MAX_MESSAGE_BYTES`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitMessage {
    /// Format version (1).
    pub v: u8,
    /// The run.
    pub run_id: String,
    /// The unit within the run.
    pub unit_id: u32,
    /// The unit's sequence number: its report must carry it.
    pub seq: u32,
    /// The unit's state.
    pub unit: Unit,
}

impl UnitMessage {
    /// The queue messages of `messages`, split between the two sync queues: the list queue's
    /// and the search queue's (units whose [`Unit::budget`] is search), when the host has a
    /// separate search queue (`search_apart`); without one, every message goes to the first.
    ///
    /// # Errors
    /// [`UnitMessage::to_json`]'s.
    pub fn by_queue(
        messages: Vec<Self>,
        search_apart: bool,
    ) -> Result<(Vec<String>, Vec<String>), SyncError> {
        let (mut list, mut search) = (Vec::new(), Vec::new());
        for m in messages {
            let text = m.to_json()?;
            if search_apart && m.unit.budget() == crate::ratelimit::Budget::Search {
                search.push(text);
            } else {
                list.push(text);
            }
        }
        Ok((list, search))
    }

    /// The message's JSON.
    ///
    /// # Errors
    /// [`SyncError::MessageTooLarge`] when it exceeds [`MAX_MESSAGE_BYTES`] (it cannot: a unit
    /// holds at most a page of ids, or 1,000 ids to verify).
    pub fn to_json(&self) -> Result<String, SyncError> {
        let json = serde_json::to_string(self).map_err(|_| SyncError::Internal("serialise"))?;
        if json.len() > MAX_MESSAGE_BYTES {
            return Err(SyncError::MessageTooLarge { bytes: json.len() });
        }
        Ok(json)
    }
}

/// What a consumer reports after working on a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitReport {
    /// The run.
    pub run_id: String,
    /// The unit.
    pub unit_id: u32,
    /// The sequence number of the message worked on.
    pub seq: u32,
    /// The unit's state now (done, or where to continue).
    pub unit: Unit,
    /// What was done.
    pub counts: Counts,
    /// Full runs: the reconcile's missing candidates its windows gave
    /// ([`super::missing_in_window`]), at most [`MAX_REPORTED_MISSING`]; more are counted in
    /// `missing_overflow`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u64>,
    /// Candidates beyond [`MAX_REPORTED_MISSING`].
    #[serde(default)]
    pub missing_overflow: u64,
    /// Verify units: the ids delivered as `delete` (`missing`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_deleted: Vec<String>,
}

impl UnitReport {
    /// The report's JSON, for a queue message or a Durable Object request.
    ///
    /// # Errors
    /// [`SyncError::MessageTooLarge`] beyond [`MAX_MESSAGE_BYTES`] (it cannot: the unit is as
    /// small as in its message, the ids are bounded by [`MAX_REPORTED_MISSING`] and a verify
    /// unit's 1,000).
    pub fn to_json(&self) -> Result<String, SyncError> {
        let json = serde_json::to_string(self).map_err(|_| SyncError::Internal("serialise"))?;
        if json.len() > MAX_MESSAGE_BYTES {
            return Err(SyncError::MessageTooLarge { bytes: json.len() });
        }
        Ok(json)
    }

    /// Adds a window's missing candidates, within [`MAX_REPORTED_MISSING`].
    pub fn add_missing(&mut self, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            if self.missing.len() < MAX_REPORTED_MISSING {
                self.missing.push(id);
            } else {
                self.missing_overflow += 1;
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Slot {
    seq: u32,
    unit: Unit,
    /// When it was last queued or reported (Unix ms).
    #[serde(default)]
    active_ms: u64,
}

/// One run. See the [`sync`](super) module docs and docs/sync.md.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Run {
    id: String,
    mode: Mode,
    started_ms: u64,
    horizon_ms: u64,
    since_ms: Option<u64>,
    phase: Phase,
    units: BTreeMap<u32, Slot>,
    next_unit: u32,
    missing: BTreeSet<u64>,
    missing_overflow: u64,
    found_missing: Vec<String>,
    found_missing_count: u64,
    counts: Counts,
    /// The latest `now` the run was given.
    #[serde(default)]
    clock_ms: u64,
}

/// Cuts `[lo, end)` into `initial_units` ranges: `list_share_percent` of the ids in list ranges
/// and the rest in search ranges, so that both budgets finish together when ids are spread
/// evenly (docs/sync.md, "Read path"); list and search ranges alternate, so that a dense
/// stretch of ids is shared by both.
fn split_span(lo: u64, end: u64, config: &SyncConfig) -> Vec<(u64, u64, Path)> {
    let n = u128::from(config.initial_units.max(1));
    let share = u128::from(config.list_share_percent.min(100));
    let span = u128::from(end - lo);
    // At least one range of a budget that has a share.
    let mut lists = (n * share + 50) / 100;
    if share > 0 && lists == 0 {
        lists = 1;
    }
    if share < 100 && lists == n && n > 1 {
        lists = n - 1;
    }
    let searches = n - lists;
    let list_ids = span * share / 100;
    let mut out = Vec::new();
    let (mut start, mut l, mut s) = (u128::from(lo), 0u128, 0u128);
    let end = u128::from(end);
    while l + s < n && start < end {
        // Alternate, keeping the proportion: list next when behind its share of the units.
        let list = l < lists && (s >= searches || l * n <= (l + s) * lists);
        let width = if list {
            l += 1;
            list_ids / lists
        } else {
            s += 1;
            (span - list_ids) / searches.max(1)
        };
        let stop = if l + s == n {
            end
        } else {
            (start + width.max(1)).min(end)
        };
        // Both bounds are within [lo, end], which fit in u64.
        let (a, b) = (
            u64::try_from(start).unwrap_or(u64::MAX),
            u64::try_from(stop).unwrap_or(u64::MAX),
        );
        out.push((a, b, if list { Path::List } else { Path::Search }));
        start = stop;
    }
    out
}

/// What a finished (or running) run did, for the admin API and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunReport {
    /// The run.
    pub run_id: String,
    /// Full or incremental.
    pub mode: Mode,
    /// Where it is.
    pub phase: Phase,
    /// When it started (Unix ms).
    pub started_ms: u64,
    /// Its counters.
    pub counts: Counts,
    /// Units not yet done.
    pub units_open: usize,
    /// Reconcile: records stored but no longer in HubSpot (deleted while no webhook arrived),
    /// delivered as `delete` (`missing`): how many.
    pub missing_found: u64,
    /// The first of them (ids only).
    pub missing_ids: Vec<String>,
    /// Reconcile: candidates beyond [`SyncConfig::max_missing`], left to the next reconcile.
    pub missing_overflow: u64,
    /// The cursor to store once done.
    pub next_cursor_ms: Option<u64>,
}

impl Run {
    /// Starts a run at `now_ms`. An incremental run without a cursor (never synced) is a full
    /// run. `id` names the run in messages (say `{objectType}:{now_ms}`).
    ///
    /// # Errors
    /// [`SyncError::Search`] if the incremental walk cannot be planned (it always can: it adds
    /// one filter to HubSpot's limits of 6 per group).
    pub fn start(
        config: &SyncConfig,
        id: impl Into<String>,
        mode: Mode,
        cursor_ms: Option<u64>,
        now_ms: u64,
    ) -> Result<Self, SyncError> {
        let mode = if cursor_ms.is_none() {
            Mode::Full
        } else {
            mode
        };
        let horizon_ms = now_ms.saturating_sub(config.lag_ms);
        let since_ms = match mode {
            Mode::Full => None,
            Mode::Incremental => cursor_ms.map(|c| c.saturating_sub(config.overlap_ms)),
        };
        let mut run = Self {
            id: id.into(),
            mode,
            started_ms: now_ms,
            horizon_ms,
            since_ms,
            phase: Phase::Probe,
            units: BTreeMap::new(),
            next_unit: 0,
            missing: BTreeSet::new(),
            missing_overflow: 0,
            found_missing: Vec::new(),
            found_missing_count: 0,
            counts: Counts::default(),
            clock_ms: now_ms,
        };
        if mode == Mode::Incremental {
            let since = since_ms.unwrap_or(0);
            let date = config.modified_property.as_str();
            // Changes up to the horizon only: later ones are the next run's (search is
            // eventually consistent near now, docs/hubspot.md §4.4).
            let bound = vec![vec![SearchFilter {
                property: date.to_owned(),
                op: FilterOp::Lt(horizon_ms.to_string()),
            }]];
            let plan = SearchPlan::modified_since(date, since, bound, MAX_SEARCH_LIMIT)?;
            run.phase = Phase::Units;
            run.add_unit(Unit::Modified(ModifiedUnit { plan }));
        }
        Ok(run)
    }

    /// The run's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Full or incremental.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Where it is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the run is finished.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// A full run's id span searches: the smallest id and the largest (two search calls, one
    /// record each). `None` once known.
    pub fn probe(&self) -> Option<[SearchRequest; 2]> {
        if self.phase != Phase::Probe {
            return None;
        }
        let one = |direction| SearchRequest {
            filter_groups: Vec::new(),
            sort: Some(Sort {
                property: OBJECT_ID.to_owned(),
                direction,
            }),
            properties: vec![OBJECT_ID.to_owned()],
            query: None,
            limit: Some(1),
            after: None,
        };
        Some([
            one(SortDirection::Ascending),
            one(SortDirection::Descending),
        ])
    }

    /// Feeds back the answers to [`probe`](Self::probe): the first record of each. Returns the
    /// units to queue; `now_ms` is when.
    ///
    /// # Errors
    /// [`SyncError::NonNumericId`] when an answer's id is not a number.
    pub fn on_probe(
        &mut self,
        config: &SyncConfig,
        smallest: &Page,
        largest: &Page,
        now_ms: u64,
    ) -> Result<Vec<UnitMessage>, SyncError> {
        if self.phase != Phase::Probe {
            return Ok(Vec::new());
        }
        self.clock_ms = self.clock_ms.max(now_ms);
        let first = |p: &Page| -> Result<Option<u64>, SyncError> {
            p.results
                .first()
                .map(|o| {
                    o.id.parse()
                        .map_err(|_| SyncError::NonNumericId { id: o.id.clone() })
                })
                .transpose()
        };
        let (lo, hi) = (first(smallest)?, first(largest)?);
        self.counts.hubspot_calls += 2;
        self.phase = Phase::Units;
        // The ranges cover every possible id, not only the span found: the reconcile compares
        // every stored id, and records created meanwhile above the span are read too. Ids
        // outside the span are read by open ranges that never split (usually one empty search).
        let open = |lo, hi| {
            Unit::Range(RangeUnit {
                open: true,
                ..RangeUnit::new(lo, hi, Path::Search)
            })
        };
        match (lo, hi) {
            (Some(lo), Some(hi)) => {
                let (lo, end) = (lo.min(hi), lo.max(hi).saturating_add(1).min(ID_END));
                if lo > 0 {
                    self.add_unit(open(0, lo));
                }
                for (start, stop, path) in split_span(lo, end, config) {
                    self.add_unit(Unit::Range(RangeUnit::new(start, stop, path)));
                }
                if end < ID_END {
                    self.add_unit(open(end, ID_END));
                }
            }
            _ => {
                self.add_unit(open(0, ID_END));
            }
        }
        Ok(self.outstanding())
    }

    fn add_unit(&mut self, unit: Unit) -> u32 {
        let id = self.next_unit;
        self.next_unit += 1;
        self.units.insert(
            id,
            Slot {
                seq: 0,
                unit,
                active_ms: self.clock_ms,
            },
        );
        id
    }

    fn message(&self, unit_id: u32, slot: &Slot) -> UnitMessage {
        UnitMessage {
            v: 1,
            run_id: self.id.clone(),
            unit_id,
            seq: slot.seq,
            unit: slot.unit.clone(),
        }
    }

    /// Adds verify units that read `ids` again by batch read and decide them like any record
    /// the run reads: a live record is delivered if it differs from the stored state, a record
    /// HubSpot no longer returns is delivered as deleted (`missing`). This is how a re-driven
    /// sync dead letter is retried (its record was never committed, so it differs).
    ///
    /// Returns the messages to queue, or `None` when the run cannot take them: before its
    /// probe (a full run, which reads every record anyway) or when it is done. Ids are
    /// deduplicated; 1,000 per unit keeps each message far below 128 KB.
    pub fn recheck(&mut self, ids: &[u64]) -> Option<Vec<UnitMessage>> {
        if matches!(self.phase, Phase::Probe | Phase::Done) {
            return None;
        }
        let ids: BTreeSet<u64> = ids.iter().copied().collect();
        let ids: Vec<u64> = ids.into_iter().collect();
        let mut out = Vec::new();
        for chunk in ids.chunks(VERIFY_IDS_PER_UNIT) {
            let id = self.add_unit(Unit::Verify(VerifyUnit {
                ids: chunk.to_vec(),
            }));
            let slot = self.units[&id].clone();
            out.push(self.message(id, &slot));
        }
        Some(out)
    }

    /// Every unit not yet done, as messages: what to queue again after an interruption (a
    /// consumer that died, a lost message). Re-queued units carry their last reported state; a
    /// late report of a copy that was already superseded is ignored.
    pub fn outstanding(&self) -> Vec<UnitMessage> {
        self.units
            .iter()
            .map(|(&id, slot)| self.message(id, slot))
            .collect()
    }

    /// The units queued or reported last more than `lease_ms` before `now_ms`, as messages to
    /// queue again: their consumer died, or their message was lost (Queues deliver at least
    /// once, but a message whose retries ran out is gone). Call it from the coordinator's alarm.
    /// Each is re-queued at most once per lease; the copy keeps the sequence number, so
    /// whichever copy reports first is taken and the other's report is stale. A lease longer
    /// than a unit invocation can last (Queues: 15 minutes of wall time) re-queues only dead
    /// units.
    pub fn overdue(&mut self, now_ms: u64, lease_ms: u64) -> Vec<UnitMessage> {
        self.clock_ms = self.clock_ms.max(now_ms);
        let due: Vec<u32> = self
            .units
            .iter()
            .filter(|(_, slot)| now_ms.saturating_sub(slot.active_ms) > lease_ms)
            .map(|(&id, _)| id)
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for id in due {
            if let Some(slot) = self.units.get_mut(&id) {
                slot.active_ms = now_ms;
                let slot = slot.clone();
                out.push(self.message(id, &slot));
            }
        }
        out
    }

    /// Adds the reconcile's missing candidates (what reports carry). Beyond
    /// [`SyncConfig::max_missing`] they are counted, not kept: the next reconcile finds them.
    fn add_missing(&mut self, config: &SyncConfig, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            if self.missing.len() < config.max_missing || self.missing.contains(&id) {
                self.missing.insert(id);
            } else {
                self.missing_overflow += 1;
            }
        }
    }

    /// Records the deletions a verify unit delivered (for the report).
    fn note_missing_deleted(&mut self, ids: &[String]) {
        self.found_missing_count += ids.len() as u64;
        for id in ids {
            if self.found_missing.len() < REPORTED_MISSING {
                self.found_missing.push(id.clone());
            }
        }
    }

    /// Takes a consumer's report; returns the messages to queue (the continuation, a split-off
    /// range, the verify units once all others are done). A stale report (not the unit's
    /// current sequence number, or an unknown unit) changes nothing and returns nothing.
    /// `now_ms` is when the report arrived.
    pub fn on_report(
        &mut self,
        config: &SyncConfig,
        report: UnitReport,
        now_ms: u64,
    ) -> Vec<UnitMessage> {
        if report.run_id != self.id {
            return Vec::new();
        }
        let now_ms = self.clock_ms.max(now_ms);
        if self.units.get(&report.unit_id).map(|slot| slot.seq) != Some(report.seq) {
            return Vec::new();
        }
        self.counts.add(&report.counts);
        self.clock_ms = now_ms;
        self.missing_overflow += report.missing_overflow;
        let (missing, deleted) = (report.missing, report.missing_deleted);
        self.add_missing(config, missing);
        self.note_missing_deleted(&deleted);
        let Some(slot) = self.units.get_mut(&report.unit_id) else {
            return Vec::new(); // Checked above.
        };
        let mut out = Vec::new();
        if report.unit.is_done() {
            self.units.remove(&report.unit_id);
        } else {
            let mut unit = report.unit;
            let split = match &mut unit {
                Unit::Range(r) => r.split(config.min_split_span, config.pages_per_unit),
                _ => None,
            };
            slot.seq += 1;
            slot.unit = unit;
            slot.active_ms = now_ms;
            let slot = slot.clone();
            out.push(self.message(report.unit_id, &slot));
            if let Some(upper) = split {
                let id = self.add_unit(Unit::Range(upper));
                let slot = self.units[&id].clone();
                out.push(self.message(id, &slot));
            }
        }
        if self.units.is_empty() {
            out.extend(self.advance());
        }
        out
    }

    /// All units done: verify the missing candidates, or finish.
    fn advance(&mut self) -> Vec<UnitMessage> {
        if self.phase == Phase::Units {
            // After the live records: a record read live, then archived, then tombstoned by
            // this walk cannot be brought back by a live read decided after the tombstone.
            self.phase = Phase::Archived;
            self.add_unit(Unit::Archived(ArchivedUnit {
                since_ms: self.since_ms,
                after: None,
                done: false,
            }));
            return self.outstanding();
        }
        if self.phase == Phase::Archived && !self.missing.is_empty() {
            self.phase = Phase::Verify;
            let ids: Vec<u64> = std::mem::take(&mut self.missing).into_iter().collect();
            for chunk in ids.chunks(VERIFY_IDS_PER_UNIT) {
                self.add_unit(Unit::Verify(VerifyUnit {
                    ids: chunk.to_vec(),
                }));
            }
            return self.outstanding();
        }
        self.phase = Phase::Done;
        Vec::new()
    }

    /// The incremental cursor to store once the run is done: `run start − lag`. `None` before.
    pub fn next_cursor(&self) -> Option<u64> {
        self.is_done().then_some(self.horizon_ms)
    }

    /// The run's report.
    pub fn report(&self) -> RunReport {
        RunReport {
            run_id: self.id.clone(),
            mode: self.mode,
            phase: self.phase,
            started_ms: self.started_ms,
            counts: self.counts,
            units_open: self.units.len(),
            missing_found: self.found_missing_count,
            missing_ids: self.found_missing.clone(),
            missing_overflow: self.missing_overflow,
            next_cursor_ms: self.next_cursor(),
        }
    }
}
