//! The enrichment of one queue batch as a poll-style plan ([`Enrichment`]): the steps of the
//! [module docs](super) for every event of the batch, with the host's I/O asked for and fed
//! back. No I/O here.

use std::collections::{BTreeMap, HashMap};

use crate::api::{BatchResponse, GiveUpReason, HistoryValue, SimpleObject};
use crate::delivery::Attempt;
use crate::diff::EchoGuard;
use crate::event::Event;
use crate::mapping::{Mapping, Record};
use crate::outbound::{self, RecordEvent, RecordEventKind};
use crate::queue::consume::JobAction;
use crate::queue::{EventMessage, OwnedEvent};
use crate::records::{change_id, Commit, Stored, Write};
use crate::rules::{self, Rules};

use super::{
    classify_read, decide, plan, read_plan, route, sort_events, Association, Current,
    EnrichDecision, Forward, Need, Plan, ReadChunk, ReadOutcome, Route, Skip, SnapshotWrite,
    MAX_CONCURRENT_READS,
};

/// The object a group of events is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey {
    /// The HubSpot account.
    pub portal: crate::id::PortalId,
    /// In the events' vocabulary (`contact`, `2-123`): the record store's and the echo guard's.
    pub object_type: String,
    /// The object id (the survivor for a merge).
    pub id: String,
}

/// The I/O an [`Enrichment`] asks for next ([`Enrichment::next_io`]). Answers are fed back by
/// position in the step's list; an answer not fed back before the next call counts as a
/// failure (a drop not made, a store not reached, an echo guard absent, a read that returned
/// nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrichIo {
    /// Privacy deletions: commit each of these now, before any forward, whether or not the
    /// forward succeeds later (personal data is not kept for it). Answer with
    /// [`Enrichment::on_dropped`].
    Drop(Vec<(ObjectKey, Commit)>),
    /// The stored state of these objects (one record-store call per portal and object type:
    /// `ids` of `object_type`), and the echo guards of these objects (the host's short-lived
    /// marks). Answer with [`Enrichment::on_stored`] and [`Enrichment::on_echo_guard`], and
    /// with [`Enrichment::on_writing`] for the ids a write fence of the store covers. The
    /// HubSpot reads follow: a host that cannot make them says so now
    /// ([`Enrichment::fail_reads`]).
    Lookup {
        /// `(portal, object type, ids)`, one per record-store call.
        stored: Vec<(crate::id::PortalId, String, Vec<String>)>,
        /// The changed objects whose echo guard to read.
        echo: Vec<ObjectKey>,
    },
    /// HubSpot batch reads to make, all at once (never more than [`MAX_CONCURRENT_READS`]).
    /// Answer with [`Enrichment::on_read`] or [`Enrichment::on_read_failed`].
    Read(Vec<HubSpotRead>),
    /// Nothing left to do: [`Enrichment::finish`].
    Done,
}

/// One HubSpot batch read (`POST /crm/v3/objects/{type}/batch/read`, one request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubSpotRead {
    /// The object type, in the events' vocabulary.
    pub object_type: String,
    /// The ids, and the properties whose history to ask for.
    pub chunk: ReadChunk,
    /// The mapped properties (`properties`).
    pub properties: Vec<String>,
    /// The message (index given to [`Enrichment::new`]) whose trace the read carries: the first
    /// event of its first object.
    pub traced_by: Option<usize>,
}

/// One forward (or none) and the messages it settles.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichJob {
    /// The messages (indexes given to [`Enrichment::new`]).
    pub members: Vec<usize>,
    /// The object, for an enriched group (`None`: a thin event or an association change).
    pub object: Option<ObjectKey>,
    /// What to do (never a [`JobAction::Effect`]: effects follow in `effects`).
    pub action: JobAction,
    /// Record-store writes of `object`'s store once the forward succeeded (at once when there
    /// is nothing to forward), compare-and-set on the version the decision read.
    pub after: Vec<Commit>,
    /// The rules' effects, queued once the forward succeeded: `(dedupe key, effect)`.
    pub effects: Vec<(String, rules::Queued)>,
}

/// What happened to the objects of a batch, for logs (ids and codes only, never a value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrichNote {
    /// Nothing is forwarded for it: `unmapped`, `unchanged`, `echo` or `missing`.
    Skipped {
        /// The object.
        object: ObjectKey,
        /// The code.
        reason: &'static str,
    },
    /// Deferred: a write of ours to it was in flight ([`JobAction::Defer`]).
    Deferred {
        /// The object.
        object: ObjectKey,
    },
    /// A rule matched its change.
    RuleMatched {
        /// The object.
        object: ObjectKey,
        /// The rule's name.
        rule: String,
    },
    /// Its stored snapshot did not read: diffed as if never seen (the commit replaces it).
    SnapshotUnreadable {
        /// The object.
        object: ObjectKey,
        /// The error's code.
        code: &'static str,
    },
    /// Its current values did not map: its events are dead-lettered with `code`.
    MapFailed {
        /// The object.
        object: ObjectKey,
        /// The error's code.
        code: &'static str,
    },
}

/// Counts of one batch's enrichment, for its log line and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnrichCounts {
    /// Objects (groups of events) enriched.
    pub objects: usize,
    /// Association changes forwarded.
    pub associations: usize,
    /// Batch-read requests sent (history reads and fallbacks included).
    pub reads: usize,
    /// Of those, the ones asking for property history (first changes).
    pub history_reads: usize,
    /// History reads HubSpot refused (400), read again without history.
    pub history_fallbacks: usize,
    /// Objects not returned by the read.
    pub missing: usize,
    /// Objects read and unchanged.
    pub unchanged: usize,
    /// Changes that were this integration's own writes.
    pub echo: usize,
    /// Groups of changes to unmapped properties only.
    pub unmapped: usize,
    /// Groups retried or dead-lettered because a step failed.
    pub failed: usize,
    /// Objects deferred: a write of ours to them was in flight.
    pub deferred: usize,
}

impl std::ops::AddAssign<&EnrichCounts> for EnrichCounts {
    fn add_assign(&mut self, o: &EnrichCounts) {
        self.objects += o.objects;
        self.associations += o.associations;
        self.reads += o.reads;
        self.history_reads += o.history_reads;
        self.history_fallbacks += o.history_fallbacks;
        self.missing += o.missing;
        self.unchanged += o.unchanged;
        self.echo += o.echo;
        self.unmapped += o.unmapped;
        self.failed += o.failed;
        self.deferred += o.deferred;
    }
}

/// What [`Enrichment::finish`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichOutcome {
    /// Every message given to [`Enrichment::new`] is a member of exactly one job.
    pub jobs: Vec<EnrichJob>,
    /// What happened, in order, for the logs.
    pub notes: Vec<EnrichNote>,
    /// The counts.
    pub counts: EnrichCounts,
}

/// A read's answer for one object.
#[derive(Debug)]
enum ReadResult {
    Found(SimpleObject),
    Missing,
    Failed {
        attempt: Attempt,
        code: String,
        detail: String,
    },
}

/// A group waiting for I/O.
#[derive(Debug)]
struct Group {
    key: ObjectKey,
    members: Vec<usize>,
    wait: Wait,
}

// One per object of a batch, few of them drops: not worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Wait {
    /// A privacy deletion: `Some(ok)` once the drop was tried.
    Drop(Option<bool>),
    /// A read.
    Read {
        need: Need,
        /// `None`: the store was not reached (or did not name it).
        stored: Option<Stored>,
        /// The stored snapshot, parsed.
        snapshot: Option<Record>,
        echo: Option<EchoGuard>,
        /// A write fence of the store covers it: deferred, not read.
        writing: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Start,
    Dropping,
    LookingUp,
    Reading,
    Done,
}

/// The enrichment of one queue batch (`ENRICHMENT_MAP`): its events become at most one forward
/// per object, read from HubSpot, mapped and diffed against the snapshot last forwarded (or the
/// values before, from HubSpot's history), with the record-store writes and rule effects that
/// follow a successful forward.
///
/// Poll-style: [`next`](Self::next_io) says what I/O to do ([`EnrichIo`]): privacy deletions'
/// drops, then the stored snapshots and echo guards, then HubSpot batch reads (in steps of at
/// most [`MAX_CONCURRENT_READS`]; a refused history read comes back in a later step without
/// history); the host does it and feeds the answers back; [`finish`](Self::finish) gives the
/// jobs.
///
/// ```
/// use hubspot_edge_core::enrich::{EnrichIo, Enrichment};
/// use hubspot_edge_core::mapping::Mapping;
/// use hubspot_edge_core::rules::Rules;
///
/// let mapping = Mapping::from_json(r#"{"objects":{"contacts":{"fields":[{"hubspot":"email"}]}}}"#).unwrap();
/// let rules = Rules::default();
/// let mut plan = Enrichment::new(&mapping, &rules, [], 1_700_000_000_000);
/// loop {
///     match plan.next_io() {
///         EnrichIo::Done => break,
///         _ => { /* do the I/O, feed the answers back */ }
///     }
/// }
/// assert!(plan.finish().jobs.is_empty());
/// ```
#[derive(Debug)]
pub struct Enrichment<'a> {
    mapping: &'a Mapping,
    rules: &'a Rules,
    now_ms: u64,
    messages: Vec<&'a EventMessage<OwnedEvent>>,
    /// Each message's event (`None`: it did not parse).
    events: Vec<Option<Event<'a>>>,
    groups: Vec<Group>,
    jobs: Vec<EnrichJob>,
    notes: Vec<EnrichNote>,
    counts: EnrichCounts,
    phase: Phase,
    /// The groups of the current step's drops or echo guards, by position.
    asked: Vec<usize>,
    /// The record stores of the current lookup step, by position.
    stores: Vec<(crate::id::PortalId, String)>,
    /// Reads still to make, and the current step's (taken when answered).
    queue: Vec<(String, ReadChunk)>,
    wave: Vec<Option<(String, ReadChunk)>>,
    /// The reads' answers by object type and id (reads are per object type, whatever the
    /// portal), the last one counts.
    results: Vec<(String, String, ReadResult)>,
    /// Set by [`Self::fail_reads`].
    abandoned: Option<(Attempt, String, String)>,
}

impl<'a> Enrichment<'a> {
    /// Routes and plans the batch's `messages` (steps 1 and 2 of the [module docs](super)):
    /// thin events, association changes, changes to unmapped properties and deletions are
    /// decided at once; the rest wait for their I/O. `now_ms` is when the rules run.
    pub fn new(
        mapping: &'a Mapping,
        rules: &'a Rules,
        messages: impl IntoIterator<Item = &'a EventMessage<OwnedEvent>>,
        now_ms: u64,
    ) -> Self {
        let messages: Vec<_> = messages.into_iter().collect();
        let events: Vec<Option<Event<'a>>> = messages
            .iter()
            .map(|m| Event::parse(&m.event).ok())
            .collect();
        let mut this = Self {
            mapping,
            rules,
            now_ms,
            messages,
            events,
            groups: Vec::new(),
            jobs: Vec::new(),
            notes: Vec::new(),
            counts: EnrichCounts::default(),
            phase: Phase::Start,
            asked: Vec::new(),
            stores: Vec::new(),
            queue: Vec::new(),
            wave: Vec::new(),
            results: Vec::new(),
            abandoned: None,
        };
        let mut grouped: BTreeMap<ObjectKey, Vec<usize>> = BTreeMap::new();
        for index in 0..this.messages.len() {
            let Some(event) = &this.events[index] else {
                this.jobs.push(thin(index));
                continue;
            };
            match route(mapping, event) {
                Route::Thin => this.jobs.push(thin(index)),
                Route::Association => {
                    this.counts.associations += 1;
                    let (id, body) = association(event, this.messages[index]);
                    this.jobs
                        .push(job(vec![index], None, JobAction::Send { id, body }));
                }
                Route::Object(id) => grouped
                    .entry(ObjectKey {
                        portal: event.portal_id(),
                        object_type: event.object_type().to_owned(),
                        id,
                    })
                    .or_default()
                    .push(index),
            }
        }
        for (key, members) in grouped {
            this.counts.objects += 1;
            let Some(map) = mapping.object(&key.object_type) else {
                this.jobs.extend(members.into_iter().map(thin));
                continue;
            };
            let planned = plan(map, &key.id, &this.refs(&members));
            let wait = match planned {
                Plan::Ignore => {
                    this.counts.unmapped += 1;
                    this.skipped(&key, "unmapped");
                    this.jobs.push(job(members, Some(key), JobAction::Nothing));
                    continue;
                }
                Plan::Delete { privacy: false } => {
                    let action =
                        this.send_grouped(&members, &key.id, &Forward::Deleted { privacy: false });
                    let mut j = job(members, Some(key.clone()), action);
                    j.after = vec![delete(&key.id)];
                    this.jobs.push(j);
                    continue;
                }
                Plan::Delete { privacy: true } => Wait::Drop(None),
                Plan::Read(need) => Wait::Read {
                    need,
                    stored: None,
                    snapshot: None,
                    echo: None,
                    writing: false,
                },
            };
            this.groups.push(Group { key, members, wait });
        }
        this
    }

    /// The I/O to do next. Answers to the previous step not fed back count as failures (see
    /// [`EnrichIo`]); once [`EnrichIo::Done`], it stays done.
    pub fn next_io(&mut self) -> EnrichIo {
        self.asked.clear();
        loop {
            match self.phase {
                Phase::Start => {
                    self.phase = Phase::Dropping;
                    let drops: Vec<(ObjectKey, Commit)> = self
                        .groups
                        .iter()
                        .enumerate()
                        .filter(|(_, g)| matches!(g.wait, Wait::Drop(_)))
                        .map(|(i, g)| {
                            self.asked.push(i);
                            (g.key.clone(), delete(&g.key.id))
                        })
                        .collect();
                    if !drops.is_empty() {
                        return EnrichIo::Drop(drops);
                    }
                }
                Phase::Dropping => {
                    self.phase = Phase::LookingUp;
                    if self.abandoned.is_some() {
                        continue;
                    }
                    let mut stored: BTreeMap<(crate::id::PortalId, &str), Vec<String>> =
                        BTreeMap::new();
                    let mut echo = Vec::new();
                    for (i, g) in self.groups.iter().enumerate() {
                        if let Wait::Read { need, .. } = &g.wait {
                            stored
                                .entry((g.key.portal, g.key.object_type.as_str()))
                                .or_default()
                                .push(g.key.id.clone());
                            // Only a change can be an echo.
                            if matches!(need, Need::Change { .. }) {
                                self.asked.push(i);
                                echo.push(g.key.clone());
                            }
                        }
                    }
                    if !stored.is_empty() {
                        self.stores = stored
                            .keys()
                            .map(|&(portal, t)| (portal, t.to_owned()))
                            .collect();
                        let stored = stored
                            .into_iter()
                            .map(|((portal, t), ids)| (portal, t.to_owned(), ids))
                            .collect();
                        return EnrichIo::Lookup { stored, echo };
                    }
                }
                Phase::LookingUp => {
                    self.phase = Phase::Reading;
                    if self.abandoned.is_none() {
                        self.plan_reads();
                    }
                }
                Phase::Reading => {
                    self.wave.clear();
                    if self.abandoned.is_some() || self.queue.is_empty() {
                        self.phase = Phase::Done;
                        continue;
                    }
                    let rest = self
                        .queue
                        .split_off(self.queue.len().min(MAX_CONCURRENT_READS));
                    self.wave.extend(
                        std::mem::replace(&mut self.queue, rest)
                            .into_iter()
                            .map(Some),
                    );
                    self.counts.reads += self.wave.len();
                    self.counts.history_reads += self
                        .wave
                        .iter()
                        .flatten()
                        .filter(|(_, c)| !c.history.is_empty())
                        .count();
                    let reads = self
                        .wave
                        .iter()
                        .flatten()
                        .map(|(object_type, chunk)| HubSpotRead {
                            object_type: object_type.clone(),
                            chunk: chunk.clone(),
                            properties: self
                                .mapping
                                .object(object_type)
                                .map(|m| m.properties().to_vec())
                                .unwrap_or_default(),
                            traced_by: chunk
                                .ids
                                .iter()
                                .find_map(|id| self.group_of(object_type, id))
                                .and_then(|g| self.groups[g].members.first().copied()),
                        })
                        .collect();
                    return EnrichIo::Read(reads);
                }
                Phase::Done => return EnrichIo::Done,
            }
        }
    }

    /// Feeds back whether the `index`th drop of an [`EnrichIo::Drop`] step was committed.
    pub fn on_dropped(&mut self, index: usize, committed: bool) {
        if self.phase != Phase::Dropping {
            return;
        }
        if let Some(&g) = self.asked.get(index) {
            if let Wait::Drop(done) = &mut self.groups[g].wait {
                *done = Some(committed);
            }
        }
    }

    /// Feeds back the `index`th record-store call of an [`EnrichIo::Lookup`] step: the stored
    /// state by id, or `None` when the store could not be reached (its objects are retried,
    /// not read). An id the answer does not name is treated the same way.
    pub fn on_stored(&mut self, index: usize, answer: Option<HashMap<String, Stored>>) {
        let (Some(answer), Some((portal, object_type))) = (answer, self.stores.get(index).cloned())
        else {
            return;
        };
        for (id, state) in answer {
            let key = ObjectKey {
                portal,
                object_type: object_type.clone(),
                id,
            };
            let Some(g) = self.groups.iter().position(|g| g.key == key) else {
                continue;
            };
            let Wait::Read {
                stored, snapshot, ..
            } = &mut self.groups[g].wait
            else {
                continue;
            };
            if let Some(text) = state.snapshot.as_deref() {
                match Record::from_snapshot(text) {
                    Ok(record) => *snapshot = Some(record),
                    Err(e) => self.notes.push(EnrichNote::SnapshotUnreadable {
                        object: key,
                        code: e.code(),
                    }),
                }
            }
            *stored = Some(state);
        }
    }

    /// Feeds back the ids of the `index`th record-store call of an [`EnrichIo::Lookup`] step
    /// that one of the store's write fences covers ([`crate::records::WriteFence::covers`]):
    /// their events are deferred ([`JobAction::Defer`]), not read.
    pub fn on_writing(&mut self, index: usize, ids: impl IntoIterator<Item = String>) {
        let Some((portal, object_type)) = self.stores.get(index).cloned() else {
            return;
        };
        for id in ids {
            let key = ObjectKey {
                portal,
                object_type: object_type.clone(),
                id,
            };
            if let Some(g) = self.groups.iter().position(|g| g.key == key) {
                if let Wait::Read { writing, .. } = &mut self.groups[g].wait {
                    *writing = true;
                }
            }
        }
    }

    /// Feeds back the echo guard of the `index`th object of an [`EnrichIo::Lookup`] step, as
    /// stored (JSON); `None` when there is none or it could not be read. One that does not
    /// parse counts as none.
    pub fn on_echo_guard(&mut self, index: usize, text: Option<&str>) {
        if self.phase != Phase::LookingUp {
            return;
        }
        let Some(guard) = text.and_then(|t| serde_json::from_str::<EchoGuard>(t).ok()) else {
            return;
        };
        let Some(&g) = self.asked.get(index) else {
            return;
        };
        if let Wait::Read { echo, .. } = &mut self.groups[g].wait {
            *echo = Some(guard);
        }
    }

    /// The host cannot read HubSpot (its configuration is invalid): every object waiting for
    /// a read is retried with `code` and `detail` instead, and nothing more is read or looked
    /// up.
    pub fn fail_reads(&mut self, attempt: Attempt, code: &str, detail: &str) {
        self.abandoned = Some((attempt, code.to_owned(), detail.to_owned()));
        self.queue.clear();
        self.wave.clear();
    }

    /// Feeds back the answer (200 or 207) to the `index`th read of an [`EnrichIo::Read`]
    /// step: each id is found, missing (deleted or merged away in between) or failed
    /// ([`super::classify_read`]).
    pub fn on_read(&mut self, index: usize, response: BatchResponse) {
        let Some((object_type, chunk)) = self.wave.get_mut(index).and_then(Option::take) else {
            return;
        };
        for (id, outcome) in classify_read(&chunk.ids, response) {
            let result = match outcome {
                ReadOutcome::Found(object) => ReadResult::Found(object),
                ReadOutcome::Missing => ReadResult::Missing,
                ReadOutcome::Failed { code } => ReadResult::Failed {
                    attempt: Attempt::StepFailed {
                        retry_after_secs: None,
                    },
                    detail: code.clone(),
                    code,
                },
            };
            self.results.push((object_type.clone(), id, result));
        }
    }

    /// Feeds back a failed `index`th read of an [`EnrichIo::Read`] step: `attempt` for the
    /// retry policy, a stable `code`, and `refused` when HubSpot answered and the API client
    /// gave up for that reason. A history read HubSpot refused ([`ReadChunk::fallback`]) is
    /// read again, without history, in a later step; otherwise its objects are retried.
    pub fn on_read_failed(
        &mut self,
        index: usize,
        attempt: Attempt,
        code: &str,
        refused: Option<GiveUpReason>,
    ) {
        let Some((object_type, chunk)) = self.wave.get_mut(index).and_then(Option::take) else {
            return;
        };
        if let Some(plain) = refused.and_then(|r| chunk.fallback(r)) {
            self.counts.history_fallbacks += 1;
            self.queue.push((object_type, plain));
            return;
        }
        for id in &chunk.ids {
            let result = ReadResult::Failed {
                attempt,
                code: code.to_owned(),
                detail: format!("hubspot_read_failed: {code}"),
            };
            self.results.push((object_type.clone(), id.clone(), result));
        }
    }

    /// Decides every group (step 4): the jobs, the notes for the logs and the counts.
    pub fn finish(mut self) -> EnrichOutcome {
        let groups = std::mem::take(&mut self.groups);
        let results = std::mem::take(&mut self.results);
        for group in groups {
            let Group { key, members, wait } = group;
            let action_job = match wait {
                Wait::Drop(Some(true)) => {
                    let action =
                        self.send_grouped(&members, &key.id, &Forward::Deleted { privacy: true });
                    job(members, Some(key), action)
                }
                Wait::Drop(_) => self.retry(members, key, RECORD_STORE_UNAVAILABLE),
                Wait::Read { writing: true, .. } if self.abandoned.is_none() => {
                    self.counts.deferred += 1;
                    self.notes.push(EnrichNote::Deferred {
                        object: key.clone(),
                    });
                    job(members, Some(key), JobAction::Defer)
                }
                Wait::Read {
                    need,
                    stored,
                    snapshot,
                    echo,
                    ..
                } => {
                    let result = results
                        .iter()
                        .rev()
                        .find(|(t, id, _)| *t == key.object_type && *id == key.id)
                        .map(|(_, _, r)| r);
                    self.decided(key, members, &need, stored, snapshot, echo, result)
                }
            };
            self.jobs.push(action_job);
        }
        EnrichOutcome {
            jobs: self.jobs,
            notes: self.notes,
            counts: self.counts,
        }
    }

    /// The job of a group that waited for a read.
    #[allow(clippy::too_many_arguments)]
    fn decided(
        &mut self,
        key: ObjectKey,
        members: Vec<usize>,
        need: &Need,
        stored: Option<Stored>,
        snapshot: Option<Record>,
        echo: Option<EchoGuard>,
        result: Option<&ReadResult>,
    ) -> EnrichJob {
        if let Some((attempt, code, detail)) = self.abandoned.clone() {
            self.counts.failed += 1;
            return job(
                members,
                Some(key),
                JobAction::Retry {
                    attempt,
                    code,
                    detail,
                },
            );
        }
        let Some(map) = self.mapping.object(&key.object_type) else {
            return job(members, Some(key), JobAction::Thin);
        };
        // Without the stored version no change can be named or committed: retry the group.
        let Some(stored) = stored else {
            return self.retry(members, key, RECORD_STORE_UNAVAILABLE);
        };
        let no_history = BTreeMap::new();
        let (current, history): (Current<'_>, &BTreeMap<String, Vec<HistoryValue>>) = match &result
        {
            Some(ReadResult::Found(object)) => (
                Current::Found(&object.properties),
                &object.properties_with_history,
            ),
            Some(ReadResult::Missing) => (Current::Missing, &no_history),
            Some(ReadResult::Failed {
                attempt,
                code,
                detail,
            }) => {
                self.counts.failed += 1;
                let action = JobAction::Retry {
                    attempt: *attempt,
                    code: code.clone(),
                    detail: detail.clone(),
                };
                return job(members, Some(key), action);
            }
            None => return self.retry(members, key, "hubspot_read_incomplete"),
        };
        // The mapped record now, for the rules (none: not mapped twice).
        let new_record = match current {
            Current::Found(properties) if !self.rules.is_empty() => {
                map.to_destination(properties).ok()
            }
            _ => None,
        };
        match decide(
            map,
            &key.id,
            need,
            snapshot.as_ref(),
            current,
            history,
            echo.as_ref(),
        ) {
            Ok(decision) => self.job_of(
                decision,
                members,
                key,
                stored.version,
                snapshot.as_ref(),
                new_record.as_ref(),
            ),
            Err(e) => {
                self.counts.failed += 1;
                self.notes.push(EnrichNote::MapFailed {
                    object: key.clone(),
                    code: e.code(),
                });
                let action = JobAction::Fail {
                    reason: e.code().to_owned(),
                    detail: e.to_string(),
                };
                job(members, Some(key), action)
            }
        }
    }

    /// The job of a decided group. `base_version` is the stored version the decision was made
    /// against: the commit expects it, and it names the change
    /// ([`crate::records::change_id`]), so a retry is the same `webhook-id`.
    fn job_of(
        &mut self,
        decision: EnrichDecision,
        members: Vec<usize>,
        key: ObjectKey,
        base_version: u64,
        old: Option<&Record>,
        new: Option<&Record>,
    ) -> EnrichJob {
        let put = |snapshot: String| Commit {
            id: key.id.clone(),
            expect: Some(base_version),
            write: Write::Put(snapshot),
        };
        let after = match decision.snapshot {
            SnapshotWrite::Keep => Vec::new(),
            SnapshotWrite::Put(snapshot) => vec![put(snapshot)],
            SnapshotWrite::Delete => vec![Commit {
                expect: Some(base_version),
                ..delete(&key.id)
            }],
            SnapshotWrite::Merge {
                snapshot,
                merged_ids,
            } => std::iter::once(put(snapshot))
                .chain(merged_ids.iter().map(|id| delete(id)))
                .collect(),
        };
        let mut effects = Vec::new();
        let action = match (&decision.forward, decision.skip) {
            (Some(forward), _) => {
                let id = change_id(
                    key.portal,
                    &key.object_type,
                    &key.id,
                    base_version,
                    forward.event_type(),
                    &forward.content(),
                );
                let action = self.send(&members, &key.id, forward, id);
                if let JobAction::Send { id, body } = &action {
                    effects = self.rule_effects(forward, &members, &key, id, body, old, new);
                }
                action
            }
            (None, skip) => {
                match skip {
                    Some(Skip::Missing) => self.counts.missing += 1,
                    Some(Skip::Echo) => self.counts.echo += 1,
                    Some(Skip::Unchanged) | None => self.counts.unchanged += 1,
                }
                self.skipped(&key, skip.map_or("none", |s| s.code()));
                JobAction::Nothing
            }
        };
        EnrichJob {
            members,
            object: Some(key),
            action,
            after,
            effects,
        }
    }

    /// The rules' effects for a forwarded change ([`rules::evaluate`] and [`rules::plan`]),
    /// with `id` the change's `webhook-id` and `body` what `default` gets. A first change
    /// without a snapshot (`old`) takes its old values from the forwarded changes (HubSpot's
    /// history); a creation or restore has none. Only changes this integration did not make get
    /// here: the echo guard and the snapshot of our own writes skip them before.
    #[allow(clippy::too_many_arguments)]
    fn rule_effects(
        &mut self,
        forward: &Forward,
        members: &[usize],
        key: &ObjectKey,
        id: &str,
        body: &str,
        old: Option<&Record>,
        new: Option<&Record>,
    ) -> Vec<(String, rules::Queued)> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let from_history;
        let old = match (old, forward, new) {
            (Some(old), ..) => Some(old),
            (None, Forward::Changed(changes), Some(new)) => {
                let mut old = new.clone();
                for change in changes {
                    match &change.old {
                        Some(value) => old.insert(change.field.clone(), value.clone()),
                        // Unknown: counts as "no value" (README "Rules").
                        None => old.remove(&change.field),
                    };
                }
                from_history = old;
                Some(&from_history)
            }
            _ => None,
        };
        let refs = self.refs(members);
        let ctx = rules::EventContext {
            events: &refs,
            object_type: &key.object_type,
            object_id: &key.id,
            old,
            new,
            origin: rules::Origin::External,
            now_ms: self.now_ms,
        };
        let effects = rules::evaluate(self.rules, &ctx);
        let matched: Vec<EnrichNote> = effects
            .iter()
            .map(|effect| EnrichNote::RuleMatched {
                object: key.clone(),
                rule: effect.rule().to_owned(),
            })
            .collect();
        let queued = rules::plan(effects, key.portal, id, body, &ctx);
        self.notes.extend(matched);
        queued
    }

    /// The forward of a deletion: `webhook-id` from all the members' keys (the deletion events
    /// are what it is).
    fn send_grouped(&self, members: &[usize], object_id: &str, forward: &Forward) -> JobAction {
        let keys: Vec<&str> = members
            .iter()
            .map(|&i| self.messages[i].key.as_str())
            .collect();
        self.send(members, object_id, forward, outbound::group_id(&keys))
    }

    /// The forward of `forward` for a group, under `id`, with the latest event (by
    /// `occurredAt`) as `hubspot`.
    fn send(&self, members: &[usize], object_id: &str, forward: &Forward, id: String) -> JobAction {
        let mut refs = self.refs(members);
        sort_events(&mut refs);
        let Some(latest) = refs.last() else {
            return JobAction::Nothing;
        };
        let keys: Vec<&str> = members
            .iter()
            .map(|&i| self.messages[i].key.as_str())
            .collect();
        let received_at_ms = members
            .iter()
            .map(|&i| self.messages[i].received_at)
            .max()
            .unwrap_or(0);
        let body = outbound::record_event_body(&RecordEvent {
            id: &id,
            source_ids: &keys,
            latest,
            received_at_ms,
            object_id,
            what: RecordEventKind::Record(forward),
        });
        JobAction::Send { id, body }
    }

    fn retry(&mut self, members: Vec<usize>, key: ObjectKey, code: &str) -> EnrichJob {
        self.counts.failed += 1;
        let action = JobAction::Retry {
            attempt: Attempt::StepFailed {
                retry_after_secs: None,
            },
            code: code.to_owned(),
            detail: code.to_owned(),
        };
        job(members, Some(key), action)
    }

    fn skipped(&mut self, key: &ObjectKey, reason: &'static str) {
        self.notes.push(EnrichNote::Skipped {
            object: key.clone(),
            reason,
        });
    }

    /// The parsed events of `members`.
    fn refs(&self, members: &[usize]) -> Vec<&Event<'a>> {
        members
            .iter()
            .filter_map(|&i| self.events[i].as_ref())
            .collect()
    }

    fn group_of(&self, object_type: &str, id: &str) -> Option<usize> {
        self.groups
            .iter()
            .position(|g| g.key.object_type == object_type && g.key.id == id)
    }

    /// The reads of every object whose stored state is known (step 3): [`read_plan`] per object
    /// type; a changed object without a snapshot asks for history.
    fn plan_reads(&mut self) {
        let mut by_type: BTreeMap<&str, Vec<(&str, Vec<String>)>> = BTreeMap::new();
        for g in &self.groups {
            if let Wait::Read {
                need,
                stored: Some(_),
                snapshot,
                writing: false,
                ..
            } = &g.wait
            {
                by_type
                    .entry(g.key.object_type.as_str())
                    .or_default()
                    .push((g.key.id.as_str(), need.history(snapshot.is_some())));
            }
        }
        for (object_type, objects) in by_type {
            if self.mapping.object(object_type).is_some() {
                self.queue.extend(
                    read_plan(objects)
                        .into_iter()
                        .map(|chunk| (object_type.to_owned(), chunk)),
                );
            }
        }
    }
}

const RECORD_STORE_UNAVAILABLE: &str = "record_store_unavailable";

fn job(members: Vec<usize>, object: Option<ObjectKey>, action: JobAction) -> EnrichJob {
    EnrichJob {
        members,
        object,
        action,
        after: Vec::new(),
        effects: Vec::new(),
    }
}

fn thin(index: usize) -> EnrichJob {
    job(vec![index], None, JobAction::Thin)
}

fn delete(id: &str) -> Commit {
    Commit {
        id: id.to_owned(),
        expect: None,
        write: Write::Delete,
    }
}

/// The `webhook-id` and body of an association change.
fn association(event: &Event<'_>, message: &EventMessage<OwnedEvent>) -> (String, String) {
    let association = Association::of(event);
    let object_id = event
        .object_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let sources = [message.key.as_str()];
    let id = outbound::group_id(&sources);
    let body = outbound::record_event_body(&RecordEvent {
        id: &id,
        source_ids: &sources,
        latest: event,
        received_at_ms: message.received_at,
        object_id: &object_id,
        what: RecordEventKind::Association(&association),
    });
    (id, body)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::{BTreeMap, HashMap};

    use serde_json::{json, Value};

    use super::*;
    use crate::diff::EchoGuard;
    use crate::mapping::Mapping;
    use crate::rules::{Destination, Destinations, Rules};

    const PORTAL: crate::id::PortalId = crate::id::PortalId::new(33);
    const MAP: &str = r#"{"objects":{
        "contacts":{"fields":[{"hubspot":"email","type":"email"},{"hubspot":"firstname","field":"first_name"}]},
        "companies":{"fields":[{"hubspot":"name"}]}}}"#;

    fn mapping() -> Mapping {
        Mapping::from_json(MAP).unwrap()
    }

    /// A queue message carrying `event` (portal and ids filled in).
    fn message(n: u64, event: Value) -> EventMessage<OwnedEvent> {
        let mut event = event;
        let o = event.as_object_mut().unwrap();
        o.entry("portalId").or_insert(json!(PORTAL));
        o.entry("eventId").or_insert(json!(n));
        o.entry("occurredAt").or_insert(json!(1_000 + n));
        o.entry("subscriptionId").or_insert(json!(1));
        o.entry("appId").or_insert(json!(1));
        o.entry("attemptNumber").or_insert(json!(0));
        EventMessage {
            v: 1,
            key: format!("k{n}"),
            attempt: 1,
            received_at: 2_000 + n,
            request_id: format!("req{n}"),
            traceparent: None,
            event_ref: None,
            event: serde_json::value::RawValue::from_string(event.to_string()).unwrap(),
        }
    }

    fn change(n: u64, id: u64, property: &str, value: &str) -> EventMessage<OwnedEvent> {
        message(
            n,
            json!({"subscriptionType":"contact.propertyChange","objectId":id,
                   "propertyName":property,"propertyValue":value}),
        )
    }

    fn lifecycle(n: u64, id: u64, action: &str) -> EventMessage<OwnedEvent> {
        message(
            n,
            json!({"subscriptionType":format!("contact.{action}"),"objectId":id}),
        )
    }

    fn key(id: &str) -> ObjectKey {
        ObjectKey {
            portal: PORTAL,
            object_type: "contact".into(),
            id: id.into(),
        }
    }

    /// A fake host: the record store, KV's echo guards and HubSpot, with the steps it saw.
    #[derive(Default)]
    struct Host {
        /// By id (contacts): version and snapshot.
        stored: HashMap<String, Stored>,
        store_down: bool,
        drop_fails: bool,
        echo: HashMap<String, String>,
        /// By id: HubSpot's properties now, and the history of each.
        hubspot: HashMap<String, Value>,
        /// Errors named in the 207s: id → category.
        errors: HashMap<String, &'static str>,
        /// Refuse history reads with this reason; fail every read with this code.
        refuse_history: Option<GiveUpReason>,
        fail_all: Option<&'static str>,
        /// Answer nothing to reads.
        silent: bool,
        /// The host cannot read HubSpot.
        no_api: bool,
        /// Ids a write fence of the store covers.
        writing: Vec<String>,
        steps: Vec<EnrichIo>,
    }

    impl Host {
        fn run(&mut self, plan: &mut Enrichment<'_>) {
            loop {
                let step = plan.next_io();
                self.steps.push(step.clone());
                match step {
                    EnrichIo::Done => return,
                    EnrichIo::Drop(drops) => {
                        for (i, (_, commit)) in drops.iter().enumerate() {
                            assert_eq!(commit.expect, None, "a privacy drop happens whatever");
                            plan.on_dropped(i, !self.drop_fails);
                        }
                    }
                    EnrichIo::Lookup { stored, echo } => {
                        if self.no_api {
                            let attempt = Attempt::StepFailed {
                                retry_after_secs: None,
                            };
                            plan.fail_reads(attempt, "config_invalid", "KEY: code");
                            continue;
                        }
                        for (i, (_, _, ids)) in stored.iter().enumerate() {
                            let answer = (!self.store_down).then(|| {
                                ids.iter()
                                    .map(|id| {
                                        (
                                            id.clone(),
                                            self.stored.get(id).cloned().unwrap_or_default(),
                                        )
                                    })
                                    .collect()
                            });
                            plan.on_stored(i, answer);
                            let fenced = ids.iter().filter(|id| self.writing.contains(id));
                            plan.on_writing(i, fenced.cloned());
                        }
                        for (i, k) in echo.iter().enumerate() {
                            plan.on_echo_guard(i, self.echo.get(&k.id).map(String::as_str));
                        }
                    }
                    EnrichIo::Read(reads) => {
                        assert!(reads.len() <= MAX_CONCURRENT_READS, "{}", reads.len());
                        for (i, read) in reads.iter().enumerate() {
                            let failed = Attempt::StepFailed {
                                retry_after_secs: None,
                            };
                            if self.silent {
                                continue;
                            } else if let Some(code) = self.fail_all {
                                plan.on_read_failed(i, failed, code, None);
                            } else if let (Some(reason), false) =
                                (self.refuse_history, read.chunk.history.is_empty())
                            {
                                plan.on_read_failed(i, failed, reason.code(), Some(reason));
                            } else {
                                plan.on_read(i, self.answer(read));
                            }
                        }
                    }
                }
            }
        }

        /// A 200 or 207 for `read`: history only when asked for.
        fn answer(&self, read: &HubSpotRead) -> BatchResponse {
            let mut results = Vec::new();
            let mut errors = Vec::new();
            for id in &read.chunk.ids {
                if let Some(category) = self.errors.get(id) {
                    errors.push(json!({"status":"error","category":category,"message":"x",
                        "context":{"ids":[id]}}));
                    continue;
                }
                let Some(object) = self.hubspot.get(id) else {
                    continue;
                };
                let mut o = json!({"id": id, "properties": object["properties"]});
                if !read.chunk.history.is_empty() {
                    o["propertiesWithHistory"] = object["history"].clone();
                }
                results.push(o);
            }
            serde_json::from_value(json!({"status":"COMPLETE","results":results,"errors":errors}))
                .unwrap()
        }

        fn reads(&self) -> Vec<&HubSpotRead> {
            self.steps
                .iter()
                .flat_map(|s| match s {
                    EnrichIo::Read(r) => r.iter().collect(),
                    _ => Vec::new(),
                })
                .collect()
        }
    }

    fn contact(properties: Value, history: Value) -> Value {
        json!({"properties": properties, "history": history})
    }

    fn stored(version: u64, snapshot: Option<&str>) -> Stored {
        Stored {
            version,
            snapshot: snapshot.map(str::to_owned),
        }
    }

    fn enrich(
        host: &mut Host,
        rules: &Rules,
        messages: &[EventMessage<OwnedEvent>],
    ) -> EnrichOutcome {
        let mapping = mapping();
        let mut plan = Enrichment::new(&mapping, rules, messages, 5_000);
        host.run(&mut plan);
        let outcome = plan.finish();
        // Every message is settled by exactly one job.
        let mut members: Vec<usize> = outcome
            .jobs
            .iter()
            .flat_map(|j| j.members.clone())
            .collect();
        members.sort_unstable();
        assert_eq!(members, (0..messages.len()).collect::<Vec<_>>());
        outcome
    }

    fn job_of<'o>(outcome: &'o EnrichOutcome, id: &str) -> &'o EnrichJob {
        outcome
            .jobs
            .iter()
            .find(|j| j.object.as_ref().is_some_and(|k| k.id == id))
            .unwrap_or_else(|| panic!("no job for {id}: {outcome:#?}"))
    }

    fn body(job: &EnrichJob) -> Value {
        match &job.action {
            JobAction::Send { body, .. } => serde_json::from_str(body).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    fn retry_code(job: &EnrichJob) -> (&str, &str) {
        match &job.action {
            JobAction::Retry { code, detail, .. } => (code.as_str(), detail.as_str()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn groups_by_object_and_decides_what_needs_no_read() {
        let messages = [
            change(1, 5, "firstname", "Bo"),
            change(2, 5, "email", "b@c.d"),
            change(3, 6, "firstname", "Cy"),
            // No map for deals; not an event at all.
            message(4, json!({"subscriptionType":"deal.creation","objectId":9})),
            message(5, json!({"nonsense": true})),
            message(
                6,
                json!({"subscriptionType":"contact.associationChange","objectId":5,
                       "fromObjectId":5,"toObjectId":9,"associationType":"CONTACT_TO_COMPANY"}),
            ),
            // Only an unmapped property; a deletion.
            change(7, 7, "phone", "123"),
            lifecycle(8, 8, "deletion"),
        ];
        let mut host = Host::default();
        host.hubspot.insert(
            "5".into(),
            contact(json!({"firstname":"Bo","email":"b@c.d"}), json!({})),
        );
        host.hubspot
            .insert("6".into(), contact(json!({"firstname":"Cy"}), json!({})));
        let outcome = enrich(&mut host, &Rules::default(), &messages);

        // One lookup for the two objects read, one read for both; the rest decided at once.
        assert_eq!(
            host.steps[0],
            EnrichIo::Lookup {
                stored: vec![(PORTAL, "contact".into(), vec!["5".into(), "6".into()])],
                echo: vec![key("5"), key("6")],
            }
        );
        let reads = host.reads();
        assert_eq!(reads.len(), 1);
        assert_eq!(reads[0].chunk.ids, ["5", "6"]);
        assert_eq!(reads[0].properties, ["email", "firstname"]);
        assert_eq!(reads[0].traced_by, Some(0));
        assert_eq!(job_of(&outcome, "5").members, [0, 1]);
        let thin: Vec<usize> = outcome
            .jobs
            .iter()
            .filter(|j| j.action == JobAction::Thin)
            .flat_map(|j| j.members.clone())
            .collect();
        assert_eq!(thin, [3, 4]);
        let association = outcome.jobs.iter().find(|j| j.members == [5]).unwrap();
        assert_eq!(
            body(association)["type"],
            "hubspot-edge.association.changed"
        );
        assert_eq!(job_of(&outcome, "7").action, JobAction::Nothing);
        assert!(outcome.notes.contains(&EnrichNote::Skipped {
            object: key("7"),
            reason: "unmapped"
        }));
        // A deletion: forwarded without a read, the snapshot dropped after it.
        let deleted = job_of(&outcome, "8");
        assert_eq!(body(deleted)["type"], "hubspot-edge.record.deleted");
        assert_eq!(deleted.after, [delete("8")]);
        let c = outcome.counts;
        assert_eq!(
            (
                c.objects,
                c.associations,
                c.unmapped,
                c.reads,
                c.history_reads
            ),
            (4, 1, 1, 1, 2 - 1)
        );
    }

    #[test]
    fn reads_are_chunked_and_never_more_than_the_connection_limit_at_once() {
        // 650 objects with snapshots: 7 plain reads of up to 100, in two steps (6 + 1).
        let messages: Vec<_> = (0..650)
            .map(|i| change(i, 1_000 + i, "firstname", "Bo"))
            .collect();
        let mut host = Host::default();
        for i in 0..650 {
            host.stored.insert(
                (1_000 + i).to_string(),
                stored(1, Some(r#"{"first_name":"Bo"}"#)),
            );
        }
        host.silent = true;
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        let waves: Vec<Vec<usize>> = host
            .steps
            .iter()
            .filter_map(|s| match s {
                EnrichIo::Read(r) => Some(r.iter().map(|r| r.chunk.ids.len()).collect()),
                _ => None,
            })
            .collect();
        assert_eq!(waves, [vec![100; 6], vec![50]]);
        assert!(host.reads().iter().all(|r| r.chunk.history.is_empty()));
        // Unanswered reads: retried, not taken for "gone".
        assert_eq!(
            retry_code(job_of(&outcome, "1000")),
            ("hubspot_read_incomplete", "hubspot_read_incomplete")
        );
        assert_eq!(outcome.counts.failed, 650);
        assert_eq!(outcome.counts.reads, 7);

        // Without snapshots, first changes ask for history: 50 per read.
        let messages: Vec<_> = (0..120)
            .map(|i| change(i, 1_000 + i, "firstname", "Bo"))
            .collect();
        let mut host = Host {
            silent: true,
            ..Host::default()
        };
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        let sizes: Vec<(usize, Vec<String>)> = host
            .reads()
            .iter()
            .map(|r| (r.chunk.ids.len(), r.chunk.history.clone()))
            .collect();
        let firstname = vec!["firstname".to_owned()];
        assert_eq!(
            sizes,
            [
                (50, firstname.clone()),
                (50, firstname.clone()),
                (20, firstname)
            ]
        );
        assert_eq!((outcome.counts.reads, outcome.counts.history_reads), (3, 3));
    }

    #[test]
    fn found_missing_and_failed_ids_of_one_read() {
        let messages = [
            change(1, 5, "firstname", "Bo"),
            change(2, 6, "firstname", "Bo"),
            change(3, 7, "firstname", "Bo"),
        ];
        let mut host = Host::default();
        for id in ["5", "6", "7"] {
            host.stored
                .insert(id.into(), stored(4, Some(r#"{"first_name":"Ada"}"#)));
        }
        host.hubspot
            .insert("5".into(), contact(json!({"firstname":"Bo"}), json!({})));
        host.errors.insert("6".into(), "OBJECT_NOT_FOUND");
        host.errors.insert("7".into(), "VALIDATION_ERROR");
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        let sent = job_of(&outcome, "5");
        assert_eq!(
            body(sent)["changes"],
            json!([{"field":"first_name","old":"Ada","new":"Bo"}])
        );
        let JobAction::Send { id, .. } = &sent.action else {
            unreachable!()
        };
        // Named by the change and the version it was diffed against; committed on that version.
        let Forward::Changed(changes) = decide_change("Ada", "Bo") else {
            unreachable!()
        };
        let content = Forward::Changed(changes).content();
        assert_eq!(
            *id,
            change_id(
                PORTAL,
                "contact",
                "5",
                4,
                outbound::TYPE_RECORD_CHANGED,
                &content
            )
        );
        assert_eq!(sent.after.len(), 1);
        assert_eq!(sent.after[0].expect, Some(4));
        // Gone in between: skipped once, nothing stored.
        let gone = job_of(&outcome, "6");
        assert_eq!((&gone.action, gone.after.len()), (&JobAction::Nothing, 0));
        assert!(outcome.notes.contains(&EnrichNote::Skipped {
            object: key("6"),
            reason: "missing"
        }));
        // Another error: retried with HubSpot's category.
        assert_eq!(
            retry_code(job_of(&outcome, "7")).0,
            "hubspot_read_validation_error"
        );
        let c = outcome.counts;
        assert_eq!((c.missing, c.failed, c.reads), (1, 1, 1));
    }

    /// The `changed` forward of `first_name` from `old` to `new`.
    fn decide_change(old: &str, new: &str) -> Forward {
        Forward::Changed(vec![crate::diff::Change {
            field: "first_name".into(),
            old: Some(json!(old)),
            new: json!(new),
        }])
    }

    #[test]
    fn a_failed_read_is_retried_and_a_refused_history_read_is_read_again_plainly() {
        let messages = [change(1, 5, "firstname", "Bo")];
        let mut host = Host {
            fail_all: Some("hubspot_rate_limited"),
            ..Host::default()
        };
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert_eq!(
            retry_code(job_of(&outcome, "5")),
            (
                "hubspot_rate_limited",
                "hubspot_read_failed: hubspot_rate_limited"
            )
        );
        assert_eq!(outcome.counts.failed, 1);

        // HubSpot refused the history read (400): the same ids again, without history; the
        // change goes out with its old value unknown.
        let mut host = Host {
            refuse_history: Some(GiveUpReason::Validation),
            ..Host::default()
        };
        host.hubspot
            .insert("5".into(), contact(json!({"firstname":"Bo"}), json!({})));
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        let reads = host.reads();
        assert_eq!(reads.len(), 2);
        assert_eq!(reads[0].chunk.history, ["firstname"]);
        assert_eq!(reads[1].chunk.ids, reads[0].chunk.ids);
        assert!(reads[1].chunk.history.is_empty());
        assert_eq!(
            body(job_of(&outcome, "5"))["changes"],
            json!([{"field":"first_name","new":"Bo"}])
        );
        let c = outcome.counts;
        assert_eq!((c.reads, c.history_reads, c.history_fallbacks), (2, 1, 1));

        // Refused for another reason: not read again.
        let mut host = Host {
            refuse_history: Some(GiveUpReason::Forbidden),
            ..Host::default()
        };
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert_eq!(host.reads().len(), 1);
        assert_eq!(retry_code(job_of(&outcome, "5")).0, "forbidden");
    }

    #[test]
    fn a_first_change_takes_old_from_history_and_a_snapshot_is_diffed() {
        let messages = [change(1, 5, "firstname", "Bo")];
        let history = json!({"firstname":[
            {"value":"Bo","timestamp":"1001"},{"value":"Ada","timestamp":"500"}]});
        let mut host = Host::default();
        host.hubspot.insert(
            "5".into(),
            contact(json!({"firstname":"Bo","email":"a@b.c"}), history.clone()),
        );
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        let job = job_of(&outcome, "5");
        assert_eq!(
            body(job)["changes"],
            json!([{"field":"first_name","old":"Ada","new":"Bo"}])
        );
        // Stored once forwarded, on version 0 (never stored).
        assert_eq!(job.after[0].expect, Some(0));

        // An unreadable snapshot: noted, diffed as if never seen (history asked for).
        let mut host = Host::default();
        host.stored.insert("5".into(), stored(2, Some("not json")));
        host.hubspot
            .insert("5".into(), contact(json!({"firstname":"Bo"}), history));
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert!(matches!(
            &outcome.notes[0],
            EnrichNote::SnapshotUnreadable { object, .. } if *object == key("5")
        ));
        assert_eq!(host.reads()[0].chunk.history, ["firstname"]);
        assert_eq!(body(job_of(&outcome, "5"))["changes"][0]["old"], "Ada");
        assert_eq!(job_of(&outcome, "5").after[0].expect, Some(2));

        // Equal to the snapshot: nothing forwarded, nothing stored.
        let mut host = Host::default();
        host.stored
            .insert("5".into(), stored(3, Some(r#"{"first_name":"Bo"}"#)));
        host.hubspot
            .insert("5".into(), contact(json!({"firstname":"Bo"}), json!({})));
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        let job = job_of(&outcome, "5");
        assert_eq!((&job.action, job.after.len()), (&JobAction::Nothing, 0));
        assert_eq!(outcome.counts.unchanged, 1);
    }

    #[test]
    fn a_store_that_cannot_be_read_retries_without_reading() {
        let messages = [change(1, 5, "firstname", "Bo")];
        let mut host = Host {
            store_down: true,
            ..Host::default()
        };
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert!(host.reads().is_empty());
        assert_eq!(
            retry_code(job_of(&outcome, "5")).0,
            "record_store_unavailable"
        );
        assert_eq!(outcome.counts.failed, 1);

        // The host cannot read HubSpot: every group waiting for a read is retried with its code.
        let mut host = Host {
            no_api: true,
            ..Host::default()
        };
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert!(host.reads().is_empty());
        assert_eq!(
            retry_code(job_of(&outcome, "5")),
            ("config_invalid", "KEY: code")
        );
        assert_eq!(host.steps.last(), Some(&EnrichIo::Done));
    }

    #[test]
    fn the_echo_of_our_own_write_is_not_forwarded() {
        let mapping = mapping();
        let map = mapping.object("contact").unwrap();
        let written = BTreeMap::from([("firstname".to_owned(), "Bo".to_owned())]);
        let guard = serde_json::to_string(&EchoGuard::new(map, "5", &written)).unwrap();
        let messages = [change(1, 5, "firstname", "Bo")];
        let mut host = Host::default();
        host.stored
            .insert("5".into(), stored(1, Some(r#"{"first_name":"Ada"}"#)));
        host.echo.insert("5".into(), guard);
        host.hubspot
            .insert("5".into(), contact(json!({"firstname":"Bo"}), json!({})));
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        let job = job_of(&outcome, "5");
        assert_eq!(job.action, JobAction::Nothing);
        // The snapshot follows HubSpot's values, for the next real change.
        assert_eq!(
            job.after[0].write,
            Write::Put(r#"{"first_name":"Bo"}"#.into())
        );
        assert!(outcome.notes.contains(&EnrichNote::Skipped {
            object: key("5"),
            reason: "echo"
        }));
        assert_eq!(outcome.counts.echo, 1);

        // A guard that does not read counts as none: the change is forwarded.
        host.echo.insert("5".into(), "{".into());
        host.steps.clear();
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert_eq!(body(job_of(&outcome, "5"))["changes"][0]["new"], "Bo");
        // Only changes look for a guard.
        let messages = [lifecycle(1, 5, "creation")];
        host.steps.clear();
        enrich(&mut host, &Rules::default(), &messages);
        assert!(matches!(&host.steps[0], EnrichIo::Lookup { echo, .. } if echo.is_empty()));
    }

    #[test]
    fn an_object_under_a_write_fence_is_deferred_not_read() {
        // 5 is being written by the inbound sync; 6 is not.
        let messages = [
            change(1, 5, "firstname", "Bo"),
            lifecycle(2, 5, "creation"),
            change(3, 6, "firstname", "Cy"),
        ];
        let mut host = Host::default();
        host.stored
            .insert("6".into(), stored(1, Some(r#"{"first_name":"Ada"}"#)));
        host.hubspot
            .insert("5".into(), contact(json!({"firstname":"Bo"}), json!({})));
        host.hubspot
            .insert("6".into(), contact(json!({"firstname":"Cy"}), json!({})));
        host.writing = vec!["5".into()];
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        let job = job_of(&outcome, "5");
        assert_eq!(job.action, JobAction::Defer);
        assert_eq!(job.members, [0, 1], "both events wait");
        assert!(job.after.is_empty(), "nothing stored for it");
        assert!(outcome
            .notes
            .contains(&EnrichNote::Deferred { object: key("5") }));
        assert_eq!(outcome.counts.deferred, 1);
        assert!(
            host.reads()
                .iter()
                .all(|r| !r.chunk.ids.contains(&"5".to_owned())),
            "a deferred object is not read"
        );
        assert_eq!(body(job_of(&outcome, "6"))["changes"][0]["new"], "Cy");

        // Fence lowered (the write committed): the same events are decided as usual.
        host.writing.clear();
        host.steps.clear();
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert!(matches!(
            job_of(&outcome, "5").action,
            JobAction::Send { .. }
        ));
        assert_eq!(outcome.counts.deferred, 0);
    }

    #[test]
    fn a_privacy_deletion_drops_the_snapshot_before_the_forward() {
        let messages = [
            lifecycle(1, 5, "privacyDeletion"),
            lifecycle(2, 5, "deletion"),
        ];
        let mut host = Host::default();
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert_eq!(host.steps[0], EnrichIo::Drop(vec![(key("5"), delete("5"))]));
        assert_eq!(host.steps[1], EnrichIo::Done);
        let job = job_of(&outcome, "5");
        assert_eq!(job.members, [0, 1]);
        assert_eq!(body(job)["privacy"], true);
        assert!(job.after.is_empty());

        // The drop failed: retried, not forwarded.
        let mut host = Host {
            drop_fails: true,
            ..Host::default()
        };
        let outcome = enrich(&mut host, &Rules::default(), &messages);
        assert_eq!(
            retry_code(job_of(&outcome, "5")).0,
            "record_store_unavailable"
        );
        // Not answered at all: the same.
        let mapping = mapping();
        let rules = Rules::default();
        let mut plan = Enrichment::new(&mapping, &rules, &messages, 0);
        assert!(matches!(plan.next_io(), EnrichIo::Drop(_)));
        assert_eq!(plan.next_io(), EnrichIo::Done);
        let outcome = plan.finish();
        assert_eq!(
            retry_code(job_of(&outcome, "5")).0,
            "record_store_unavailable"
        );
    }

    #[test]
    fn rules_see_the_change_and_queue_their_effects_under_its_id() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let destination = || Destination {
            url: "https://example.com/hook".into(),
            secret: crate::outbound::WebhookSecret::parse(secret).unwrap(),
        };
        let destinations = Destinations::from_json(
            r#"{"sales":{"url":"https://sales.example.com/"}}"#,
            Some(destination()),
            |_| Some(secret.to_owned()),
        )
        .unwrap();
        let rules = Rules::from_json(
            &json!({"rules":[{"name":"renamed",
                "when":{"objectTypes":["contact"],"changes":[
                    {"field":"first_name","op":"changed_to","value":"Bo"}]},
                "then":[{"forward":{"destination":"sales"}}]}]})
            .to_string(),
            Some(&mapping()),
            &destinations,
        )
        .unwrap();
        let messages = [change(1, 5, "firstname", "Bo")];
        let mut host = Host::default();
        host.stored
            .insert("5".into(), stored(1, Some(r#"{"first_name":"Ada"}"#)));
        host.hubspot
            .insert("5".into(), contact(json!({"firstname":"Bo"}), json!({})));
        let outcome = enrich(&mut host, &rules, &messages);
        let job = job_of(&outcome, "5");
        let JobAction::Send { id, .. } = &job.action else {
            panic!("{job:?}")
        };
        assert_eq!(job.effects.len(), 1);
        assert_eq!(job.effects[0].0, format!("{id}.r0"));
        assert!(outcome.notes.contains(&EnrichNote::RuleMatched {
            object: key("5"),
            rule: "renamed".into()
        }));

        // Already "Bo" in the snapshot: unchanged, no rule runs.
        host.stored
            .insert("5".into(), stored(2, Some(r#"{"first_name":"Bo"}"#)));
        let outcome = enrich(&mut host, &rules, &messages);
        assert!(job_of(&outcome, "5").effects.is_empty());
        // Our own write (echo): no rule runs either.
        let map = mapping();
        let written = BTreeMap::from([("firstname".to_owned(), "Bo".to_owned())]);
        let guard = EchoGuard::new(map.object("contact").unwrap(), "5", &written);
        host.stored
            .insert("5".into(), stored(3, Some(r#"{"first_name":"Ada"}"#)));
        host.echo
            .insert("5".into(), serde_json::to_string(&guard).unwrap());
        let outcome = enrich(&mut host, &rules, &messages);
        assert!(job_of(&outcome, "5").effects.is_empty());
        assert!(!outcome
            .notes
            .iter()
            .any(|n| matches!(n, EnrichNote::RuleMatched { .. })));
    }
}
