//! Enrichment decisions: what to read, forward and store for the webhook events about one
//! object, given the object type's [`ObjectMap`], the last forwarded snapshot and what HubSpot
//! returns now. No I/O: the Worker's queue consumer reads and writes, this module decides.
//!
//! # The steps, for the events of one queue batch
//!
//! 1. [`route`] each event: events of an object type without a map, and events this module does
//!    not model, stay thin (forwarded as they are); association changes are forwarded on their
//!    own, without a read; everything else is grouped by the object it concerns
//!    ([`Route::Object`]: the surviving id for a merge, docs/hubspot.md §2.2).
//! 2. [`plan`] each group (its events in `occurredAt` order): [`Plan::Ignore`] (only changes to
//!    unmapped properties), [`Plan::Delete`] (the last lifecycle event is a deletion or privacy
//!    deletion) or [`Plan::Read`] with the reason for the read.
//! 3. Read the objects of each type ([`read_plan`]): the mapped properties only
//!    ([`ObjectMap::properties`]), in batches of up to 100 (docs/hubspot.md §4.1); a changed object
//!    without a snapshot also asks for the history of the properties its events name
//!    ([`Need::history`]), in batches of up to [`MAX_HISTORY_BATCH_INPUTS`].
//! 4. [`decide`] each group with its snapshot, its current HubSpot properties (or
//!    [`Current::Missing`] when the batch read did not return it), their history and the echo
//!    guard, if any. The [`EnrichDecision`] says what to forward (at most one message per
//!    object) and
//!    what to do with the snapshot once the forward succeeded.
//!
//! [`Enrichment`] runs these steps for a whole queue batch as a poll-style plan: it asks for the
//! I/O ([`EnrichIo`]: privacy deletions' drops, stored snapshots and echo guards, HubSpot batch
//! reads at most [`MAX_CONCURRENT_READS`] at a time), takes the answers back and gives the jobs
//! (forwards, record-store writes, rule effects), notes for the logs and counts.
//!
//! A group with a creation and later changes forwards one `created` with the current record; a
//! deletion followed by a restore forwards the restore. An object HubSpot no longer returns was
//! deleted in between: nothing is forwarded for it (its deletion event follows).
//!
//! # A first change: `old` from HubSpot's history
//!
//! A change to an object with no snapshot yet (never forwarded, or its snapshot unreadable) has
//! nothing to diff against. Its previous values come from HubSpot's property history instead:
//! for each property its events name, [`value_before`] that property's first change in the
//! batch. The changes forwarded are then those of these properties only, against these values:
//! a field nobody changed is not reported (it used to be, with `old: null`).
//!
//! When the history does not give a previous value (HubSpot returned none for the property, its
//! timestamps do not read, two entries tie, the old value does not map, or the read fell back to
//! one without history), the change is still forwarded, with `old` **absent**: unknown. `old:
//! null` always means the field had no value. See [`Before`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

pub use crate::api::MAX_HISTORY_BATCH_INPUTS;
use crate::api::{HistoryValue, SimpleObject, MAX_BATCH_INPUTS};
use crate::diff::{diff, Change, Diff, EchoGuard};
use crate::event::Event;
use crate::mapping::{MapError, Mapping, ObjectMap, Record};

mod batch;
pub use batch::{
    EnrichCounts, EnrichIo, EnrichJob, EnrichNote, EnrichOutcome, Enrichment, HubSpotRead,
    ObjectKey,
};

/// Where an event goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Forward the event as it is (no map for its type, or an action not modelled here).
    Thin,
    /// Forward as an `association.changed` event, without a read.
    Association,
    /// Group with the other events about this object (id as a decimal string).
    Object(String),
}

/// The lifecycle actions of HubSpot's CRM subscriptions (docs/hubspot.md §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Creation,
    Deletion,
    PrivacyDeletion,
    PropertyChange,
    Merge,
    Restore,
    AssociationChange,
}

fn action(event: &Event<'_>) -> Option<Action> {
    Some(match event.action() {
        "creation" => Action::Creation,
        "deletion" => Action::Deletion,
        "privacyDeletion" => Action::PrivacyDeletion,
        "propertyChange" => Action::PropertyChange,
        "merge" => Action::Merge,
        "restore" => Action::Restore,
        "associationChange" => Action::AssociationChange,
        _ => return None,
    })
}

/// The fields of merge and association events that [`Event`] does not model (docs/hubspot.md §2.2).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Extra {
    primary_object_id: Option<Value>,
    new_object_id: Option<Value>,
    #[serde(default)]
    merged_object_ids: Vec<Value>,
    from_object_id: Option<Value>,
    to_object_id: Option<Value>,
    association_type: Option<Value>,
    association_type_id: Option<Value>,
    association_removed: Option<bool>,
    property_value: Option<Value>,
}

impl Extra {
    fn of(event: &Event<'_>) -> Self {
        // The text parsed as an event already; a field of an unexpected type makes the whole
        // struct default, which reads as "absent".
        serde_json::from_str(event.raw()).unwrap_or_default()
    }
}

/// An id sent as a JSON number or a string of digits.
fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            Some(s.clone())
        }
        _ => None,
    }
}

/// Where `event` goes (step 1 of the module docs). `mapping` decides which object types are
/// enriched.
pub fn route(mapping: &Mapping, event: &Event<'_>) -> Route {
    if mapping.object(event.object_type()).is_none() {
        return Route::Thin;
    }
    let object_id = event.object_id().map(|id| id.to_string());
    match action(event) {
        None => Route::Thin,
        Some(Action::AssociationChange) => Route::Association,
        Some(Action::Merge) => {
            let extra = Extra::of(event);
            id_text(extra.new_object_id.as_ref())
                .or_else(|| id_text(extra.primary_object_id.as_ref()))
                .or(object_id)
                .map_or(Route::Thin, Route::Object)
        }
        Some(_) => object_id.map_or(Route::Thin, Route::Object),
    }
}

/// What a group of events about one object needs (step 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Only changes to properties the map does not read: forward nothing, read nothing.
    Ignore,
    /// The object is gone: forward a deletion and drop the snapshot, without a read.
    Delete {
        /// The last lifecycle event was a privacy deletion (docs/hubspot.md §2.2).
        privacy: bool,
    },
    /// Read the object, then [`decide`].
    Read(Need),
}

/// Why a group needs a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Need {
    /// Created (possibly changed since): forward the whole record.
    Create,
    /// Restored from the recycling bin: forward the whole record.
    Restore,
    /// Other records were merged into this one: forward the survivor with the merged-away ids.
    Merge {
        /// The merged-away ids (`mergedObjectIds`, and `primaryObjectId` when a new record was
        /// created), without the survivor, sorted, each once.
        merged_ids: Vec<String>,
    },
    /// Mapped properties changed: forward the diff against the snapshot (or, without one,
    /// against the values before, from HubSpot's history).
    Change {
        /// The mapped properties the events name, each once, with its first change in the batch.
        properties: BTreeMap<String, FirstChange>,
    },
}

impl Need {
    /// The properties whose history the read asks for (`propertiesWithHistory`): those a
    /// [`Need::Change`] names when the object has no snapshot to diff against; none otherwise
    /// (a creation, restore or merge forwards the whole record; a snapshot is the old value).
    pub fn history(&self, has_snapshot: bool) -> Vec<String> {
        match self {
            Self::Change { properties } if !has_snapshot => properties.keys().cloned().collect(),
            _ => Vec::new(),
        }
    }
}

/// The first `propertyChange` of a property among a group's events (by `occurredAt`, then
/// `eventId`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstChange {
    /// Its `occurredAt`, Unix milliseconds.
    pub at_ms: u64,
    /// Its `propertyValue` (the value set), when the event carries one.
    pub value: Option<String>,
}

/// Orders events as they happened: by `occurredAt`, then `eventId`.
pub fn sort_events(events: &mut [&Event<'_>]) {
    events.sort_by_key(|e| (e.occurred_at_ms(), e.event_id()));
}

/// Plans a group (step 2). `events` are the group's events in any order; `survivor` is the id
/// they were grouped under ([`Route::Object`]).
pub fn plan(map: &ObjectMap, survivor: &str, events: &[&Event<'_>]) -> Plan {
    let mut sorted = events.to_vec();
    sort_events(&mut sorted);
    // The last lifecycle event decides between gone and present.
    let mut lifecycle = None;
    let mut created = false;
    let mut restored = false;
    let mut merged: Vec<String> = Vec::new();
    let mut properties: BTreeMap<String, FirstChange> = BTreeMap::new();
    for event in &sorted {
        match action(event) {
            Some(a @ (Action::Deletion | Action::PrivacyDeletion)) => {
                // A privacy deletion and its companion deletion (docs/hubspot.md §2.2) are one.
                let privacy = a == Action::PrivacyDeletion
                    || lifecycle == Some(Action::PrivacyDeletion) && matches!(a, Action::Deletion);
                lifecycle = Some(if privacy {
                    Action::PrivacyDeletion
                } else {
                    Action::Deletion
                });
            }
            Some(Action::Creation) => {
                lifecycle = Some(Action::Creation);
                created = true;
            }
            Some(Action::Restore) => {
                lifecycle = Some(Action::Restore);
                restored = true;
            }
            Some(Action::Merge) => {
                let extra = Extra::of(event);
                let primary = id_text(extra.primary_object_id.as_ref());
                merged.extend(
                    extra
                        .merged_object_ids
                        .iter()
                        .filter_map(|v| id_text(Some(v)))
                        .chain(primary),
                );
            }
            Some(Action::PropertyChange) => {
                if let Some(p) = event.property_name().filter(|p| map.is_mapped(p)) {
                    // Sorted: the first seen is the first made.
                    properties
                        .entry(p.to_owned())
                        .or_insert_with(|| FirstChange {
                            at_ms: event.occurred_at_ms(),
                            value: match Extra::of(event).property_value {
                                Some(Value::String(s)) => Some(s),
                                Some(Value::Number(n)) => Some(n.to_string()),
                                Some(Value::Bool(b)) => Some(b.to_string()),
                                _ => None,
                            },
                        });
                }
            }
            Some(Action::AssociationChange) | None => {}
        }
    }
    merged.retain(|id| id != survivor);
    merged.sort_unstable();
    merged.dedup();
    match lifecycle {
        Some(Action::Deletion) => return Plan::Delete { privacy: false },
        Some(Action::PrivacyDeletion) => return Plan::Delete { privacy: true },
        _ => {}
    }
    if !merged.is_empty() {
        Plan::Read(Need::Merge { merged_ids: merged })
    } else if created {
        Plan::Read(Need::Create)
    } else if restored {
        Plan::Read(Need::Restore)
    } else if properties.is_empty() {
        Plan::Ignore
    } else {
        Plan::Read(Need::Change { properties })
    }
}

/// The most enrichment batch reads in flight at once. Cloudflare lets an invocation have 6
/// connections waiting for response headers at once (see
/// [`crate::delivery::MAX_CONCURRENT_FORWARDS`]); each read holds one at a time (the rate
/// gate's permit, then the request), and nothing else runs while the reads do.
pub const MAX_CONCURRENT_READS: usize = 6;

/// One batch-read request of the objects of one type ([`read_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadChunk {
    /// The ids to read: at most [`MAX_BATCH_INPUTS`], or [`MAX_HISTORY_BATCH_INPUTS`] when
    /// [`Self::history`] is not empty.
    pub ids: Vec<String>,
    /// `propertiesWithHistory`: what its objects need ([`Need::history`]), sorted, each once;
    /// empty for a plain read.
    pub history: Vec<String>,
}

impl ReadChunk {
    /// The read to send instead when HubSpot refused this one: the same ids without history,
    /// when this one asked for history and HubSpot answered 400 (HubSpot does not say how many
    /// objects a history read may hold: [`MAX_HISTORY_BATCH_INPUTS`] is an assumption). The
    /// objects are then forwarded with their old values unknown. `None` otherwise: the failure
    /// is the read's.
    pub fn fallback(&self, refused: crate::api::GiveUpReason) -> Option<Self> {
        (!self.history.is_empty() && refused == crate::api::GiveUpReason::Validation).then(|| {
            Self {
                ids: self.ids.clone(),
                history: Vec::new(),
            }
        })
    }
}

/// Plans the batch reads of the objects of one type (step 3): `objects` are `(id, history)`
/// pairs, `history` from [`Need::history`] (an id given twice is read once, with both
/// histories).
///
/// Objects that need history go first, [`MAX_HISTORY_BATCH_INPUTS`] per request, each request
/// asking for the history its objects need; the others fill the last of those requests, then
/// go [`MAX_BATCH_INPUTS`] per request. So a batch with history costs
/// `ceil(h / 50)` requests, plus `ceil(rest / 100)` for the plain objects that did not fit: at
/// most one more than without history for a queue batch of 100 messages.
pub fn read_plan<'a>(objects: impl IntoIterator<Item = (&'a str, Vec<String>)>) -> Vec<ReadChunk> {
    let mut order: Vec<(&str, std::collections::BTreeSet<String>)> = Vec::new();
    for (id, history) in objects {
        match order.iter_mut().find(|(seen, _)| *seen == id) {
            Some((_, set)) => set.extend(history),
            None => order.push((id, history.into_iter().collect())),
        }
    }
    let (with, plain): (Vec<_>, Vec<_>) = order.into_iter().partition(|(_, h)| !h.is_empty());
    let mut plain = plain.into_iter().map(|(id, _)| id.to_owned());
    let mut chunks: Vec<ReadChunk> = with
        .chunks(MAX_HISTORY_BATCH_INPUTS)
        .map(|chunk| {
            let mut history: std::collections::BTreeSet<&String> = Default::default();
            for (_, h) in chunk {
                history.extend(h);
            }
            ReadChunk {
                ids: chunk.iter().map(|(id, _)| (*id).to_owned()).collect(),
                history: history.into_iter().cloned().collect(),
            }
        })
        .collect();
    if let Some(last) = chunks.last_mut() {
        let room = MAX_HISTORY_BATCH_INPUTS - last.ids.len();
        last.ids.extend(plain.by_ref().take(room));
    }
    let rest: Vec<String> = plain.collect();
    chunks.extend(rest.chunks(MAX_BATCH_INPUTS).map(|ids| ReadChunk {
        ids: ids.to_vec(),
        history: Vec::new(),
    }));
    chunks
}

/// A property's value before its first change in the batch, as HubSpot's history tells it
/// ([`value_before`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Before {
    /// It had this value (`None`: no value, forwarded as `old: null`).
    Known(Option<String>),
    /// The history does not say (forwarded without `old`).
    Unknown,
}

/// The value of a property just before `first` (its first change in the batch), from its
/// history as HubSpot returned it (`propertiesWithHistory`, docs/hubspot.md §4.1).
///
/// HubSpot documents no order for the history: entries are sorted by timestamp here. Entries
/// after `first.at_ms` are later changes (of this batch or the next). Entries at exactly
/// `first.at_ms` are the change itself; when there is none, the last entry before it that set
/// the value the event reports (`propertyValue`) is taken for the change itself, since HubSpot's
/// history clock and the event's `occurredAt` may differ by a few milliseconds. The value
/// before is the latest remaining entry's (`""` read as no value).
///
/// [`Before::Unknown`] when HubSpot returned no history for the property (it ignores properties
/// an object does not have), when a timestamp does not read, or when the latest entries tie
/// with different values. [`Before::Known`]`(None)` when the history starts with this change:
/// the property had no value before.
pub fn value_before(history: &[HistoryValue], first: &FirstChange) -> Before {
    let Ok(at) = i64::try_from(first.at_ms) else {
        return Before::Unknown;
    };
    if history.is_empty() {
        return Before::Unknown;
    }
    let mut entries = Vec::with_capacity(history.len());
    for entry in history {
        let Some(ms) = entry.timestamp_ms() else {
            return Before::Unknown;
        };
        entries.push((ms, no_empty(entry.value.as_deref())));
    }
    entries.sort_by_key(|&(ms, _)| ms);
    let mut past: Vec<(i64, Option<&str>)> =
        entries.into_iter().filter(|&(ms, _)| ms <= at).collect();
    let own = past.iter().filter(|&&(ms, _)| ms == at).count();
    if own > 0 {
        past.truncate(past.len() - own);
    } else if let (Some(&(_, value)), Some(set)) = (past.last(), first.value.as_deref()) {
        if value == no_empty(Some(set)) {
            past.pop();
        }
    }
    let Some(&(ms, value)) = past.last() else {
        return Before::Known(None);
    };
    if past.iter().any(|&(t, v)| t == ms && v != value) {
        return Before::Unknown;
    }
    Before::Known(value.map(str::to_owned))
}

/// `""` is no value, like `null` (docs/hubspot.md §7: clearing sends `""`).
fn no_empty(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

/// The changes of a first change (no snapshot): the properties `changed` names, against their
/// values before ([`value_before`]); `old` absent where those are unknown. In map order.
fn first_changes(
    map: &ObjectMap,
    properties: &BTreeMap<String, Option<String>>,
    current: &Record,
    changed: &BTreeMap<String, FirstChange>,
    history: &BTreeMap<String, Vec<HistoryValue>>,
) -> Vec<Change> {
    let mut known: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut unknown: Vec<String> = Vec::new();
    for (property, first) in changed {
        match history
            .get(property)
            .map_or(Before::Unknown, |h| value_before(h, first))
        {
            Before::Known(value) => {
                known.insert(property.clone(), value);
            }
            Before::Unknown => unknown.push(property.clone()),
        }
    }
    // The record before: now, with the known old values. An old value that does not map is
    // unknown rather than an error (the record now maps, so this ends).
    let previous = loop {
        let mut before = properties.clone();
        before.extend(known.iter().map(|(k, v)| (k.clone(), v.clone())));
        match map.to_destination(&before) {
            Ok(record) => break record,
            Err(e) => match known.remove_entry(e.property()) {
                Some((property, _)) => unknown.push(property),
                None => {
                    unknown.extend(std::mem::take(&mut known).into_keys());
                }
            },
        }
    };
    let mut changes = match diff(map, &previous, current) {
        Diff::Changed(patch) => patch.changes().to_vec(),
        Diff::Unchanged => Vec::new(),
    };
    changes.extend(unknown.iter().filter_map(|property| {
        let field = map.field_of_property(property)?;
        Some(Change {
            field: field.to_owned(),
            old: None,
            new: current.get(field).cloned().unwrap_or(Value::Null),
        })
    }));
    changes.sort_by_key(|c| map.field_position(&c.field));
    changes
}

/// The object's current HubSpot properties, from the batch read.
#[derive(Debug, Clone, Copy)]
pub enum Current<'a> {
    /// Returned by the read.
    Found(&'a BTreeMap<String, Option<String>>),
    /// Not returned (archived or merged away since the events; HubSpot's 207 error names it).
    Missing,
}

/// What to forward for one object.
#[derive(Debug, Clone, PartialEq)]
pub enum Forward {
    /// `hubspot-edge.record.created`, with the whole record.
    Created(Record),
    /// `hubspot-edge.record.restored`, with the whole record.
    Restored(Record),
    /// `hubspot-edge.record.changed`, with the changed fields.
    Changed(Vec<Change>),
    /// `hubspot-edge.record.merged`: the survivor's whole record, its changes against its own
    /// snapshot (a merge moves values without `propertyChange` events), the merged-away ids.
    Merged {
        /// The survivor now.
        record: Record,
        /// Its changes (empty when it had no snapshot or nothing changed).
        changes: Vec<Change>,
        /// The merged-away ids.
        merged_ids: Vec<String>,
    },
    /// `hubspot-edge.record.deleted`.
    Deleted {
        /// A privacy (GDPR) deletion.
        privacy: bool,
    },
}

impl Forward {
    /// What is forwarded, as compact JSON, without anything about when or how it was grouped:
    /// the content half of the change's identity ([`crate::records::change_id`]).
    pub fn content(&self) -> String {
        let value = match self {
            Self::Created(record) | Self::Restored(record) => {
                serde_json::json!({ "record": record })
            }
            Self::Changed(changes) => serde_json::json!({ "changes": changes }),
            Self::Merged {
                record,
                changes,
                merged_ids,
            } => {
                serde_json::json!({ "record": record, "changes": changes, "mergedIds": merged_ids })
            }
            Self::Deleted { privacy } => serde_json::json!({ "privacy": privacy }),
        };
        value.to_string()
    }

    /// The outbound `type`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Created(_) => crate::outbound::TYPE_RECORD_CREATED,
            Self::Restored(_) => crate::outbound::TYPE_RECORD_RESTORED,
            Self::Changed(_) => crate::outbound::TYPE_RECORD_CHANGED,
            Self::Merged { .. } => crate::outbound::TYPE_RECORD_MERGED,
            Self::Deleted { .. } => crate::outbound::TYPE_RECORD_DELETED,
        }
    }
}

/// What to do with the stored snapshots once the forward (if any) succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotWrite {
    /// Leave them.
    Keep,
    /// Store this snapshot for the object ([`Record::to_snapshot`]).
    Put(String),
    /// Drop the object's snapshot.
    Delete,
    /// Store this snapshot for the survivor and drop the merged-away ids' snapshots.
    Merge {
        /// The survivor's snapshot.
        snapshot: String,
        /// The ids whose snapshots to drop.
        merged_ids: Vec<String>,
    },
}

/// Why nothing is forwarded for a group that was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// No mapped field differs from the snapshot.
    Unchanged,
    /// HubSpot's values are what this integration wrote ([`EchoGuard::matches`]).
    Echo,
    /// The read did not return the object: deleted or merged away in between.
    Missing,
}

impl Skip {
    /// Stable code for logs: `unchanged`, `echo`, `missing`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unchanged => "unchanged",
            Self::Echo => "echo",
            Self::Missing => "missing",
        }
    }
}

/// The outcome of [`decide`].
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub struct EnrichDecision {
    /// What to forward; `None` with `skip` saying why.
    pub forward: Option<Forward>,
    /// Why nothing is forwarded, when nothing is.
    pub skip: Option<Skip>,
    /// What to store once the forward succeeded (at once when nothing is forwarded).
    pub snapshot: SnapshotWrite,
}

impl EnrichDecision {
    fn skip(skip: Skip, snapshot: SnapshotWrite) -> Self {
        Self {
            forward: None,
            skip: Some(skip),
            snapshot,
        }
    }

    fn forward(forward: Forward, snapshot: SnapshotWrite) -> Self {
        Self {
            forward: Some(forward),
            skip: None,
            snapshot,
        }
    }
}

/// Decides a planned group (step 4): `id` is the object read, `snapshot` its last forwarded
/// record (`None` when there is none, or it could not be read), `current` its HubSpot
/// properties now, `history` their history as the read returned it (empty when none was asked
/// for), `echo` the guard of this integration's latest write to it, if any.
///
/// A change without a snapshot is diffed against the values before its events, from `history`
/// (see the module docs): only the properties its events name are forwarded, `old` absent where
/// the history does not tell. A change with a snapshot diffs against the snapshot; `history` is
/// not used.
///
/// A change whose properties were all written by this integration, and whose current values
/// are still exactly those written, is an echo: nothing is forwarded, but the snapshot is
/// updated so that the next real change diffs against HubSpot's values.
///
/// # Errors
/// [`MapError`] when the current values cannot be mapped: the record's data is at fault (dead
/// letter the group's events with [`MapError::code`]), other objects are unaffected.
pub fn decide(
    map: &ObjectMap,
    id: &str,
    need: &Need,
    snapshot: Option<&Record>,
    current: Current<'_>,
    history: &BTreeMap<String, Vec<HistoryValue>>,
    echo: Option<&EchoGuard>,
) -> Result<EnrichDecision, MapError> {
    let Current::Found(properties) = current else {
        return Ok(EnrichDecision::skip(Skip::Missing, SnapshotWrite::Keep));
    };
    let record = map.to_destination(properties)?;
    // The sync's association hash in the old snapshot stays: enrichment does not read them.
    let put = SnapshotWrite::Put(crate::records::carry_over(snapshot, &record));
    Ok(match need {
        // Created with a snapshot already equal to it: the record was written by this
        // integration (an inbound batch upsert commits what it wrote before HubSpot's creation
        // webhook arrives) or already delivered (by the sync): HubSpot's notification of our
        // own write, not forwarded back. Anything that differs is still a creation.
        Need::Create if snapshot.is_some_and(|old| diff(map, old, &record).is_unchanged()) => {
            EnrichDecision::skip(Skip::Unchanged, SnapshotWrite::Keep)
        }
        Need::Create => EnrichDecision::forward(Forward::Created(record), put),
        Need::Restore => EnrichDecision::forward(Forward::Restored(record), put),
        Need::Merge { merged_ids } => {
            let changes = match snapshot.map(|s| diff(map, s, &record)) {
                Some(Diff::Changed(patch)) => patch.changes().to_vec(),
                Some(Diff::Unchanged) | None => Vec::new(),
            };
            let snapshot = SnapshotWrite::Merge {
                snapshot: crate::records::carry_over(snapshot, &record),
                merged_ids: merged_ids.clone(),
            };
            EnrichDecision::forward(
                Forward::Merged {
                    record,
                    changes,
                    merged_ids: merged_ids.clone(),
                },
                snapshot,
            )
        }
        Need::Change { properties: names } => {
            let is_echo = echo
                .is_some_and(|guard| names.keys().all(|p| guard.is_echo(map, id, p, properties)));
            if is_echo {
                return Ok(EnrichDecision::skip(Skip::Echo, put));
            }
            match snapshot {
                Some(old) => match diff(map, old, &record) {
                    Diff::Unchanged => EnrichDecision::skip(Skip::Unchanged, SnapshotWrite::Keep),
                    Diff::Changed(patch) => {
                        // HubSpot changed these fields (by the batch's latest first change):
                        // the inbound sync's conflict rule reads the times.
                        let at = names.values().map(|f| f.at_ms).max().unwrap_or(0);
                        let mut next =
                            Record::from_snapshot(&crate::records::carry_over(Some(old), &record))
                                .unwrap_or_else(|_| record.clone());
                        crate::records::stamp_changes(
                            Some(old),
                            &mut next,
                            patch.changes().iter().map(|c| c.field.as_str()),
                            i64::try_from(at).unwrap_or(i64::MAX),
                        );
                        EnrichDecision::forward(
                            Forward::Changed(patch.changes().to_vec()),
                            SnapshotWrite::Put(next.to_snapshot()),
                        )
                    }
                },
                // Nothing to diff against: the values before, from the history. Unchanged
                // (changed and changed back) still stores the snapshot, for the next change.
                None => match first_changes(map, properties, &record, names, history) {
                    changes if changes.is_empty() => EnrichDecision::skip(Skip::Unchanged, put),
                    changes => EnrichDecision::forward(Forward::Changed(changes), put),
                },
            }
        }
    })
}

/// What a batch read said about one requested id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Returned: its properties, and their history when it was asked for.
    Found(SimpleObject),
    /// HubSpot says it does not exist (`OBJECT_NOT_FOUND`): archived or merged away since the
    /// events. Its deletion or merge event follows; skip it once.
    Missing,
    /// HubSpot named it in another error (validation, a temporary error…), or did not account
    /// for it at all. Retry, then dead-letter with `code`.
    Failed {
        /// Stable code: `hubspot_read_` and HubSpot's error category in lower case
        /// (`hubspot_read_validation_error`), or `hubspot_read_incomplete` for an id the answer
        /// neither returned nor named.
        code: String,
    },
}

/// Reads a batch-read answer (200 or 207) for the requested `ids` (docs/hubspot.md §4.1: a 207
/// carries `errors[]` whose `context.ids` name the inputs they concern).
///
/// Only an `OBJECT_NOT_FOUND` error makes an id [`ReadOutcome::Missing`]; any other error is a
/// failure of that id's read, never "gone". An error that names no input concerns every id the
/// answer did not return. Returns one outcome per requested id, in `ids` order.
pub fn classify_read(
    ids: &[String],
    response: crate::api::BatchResponse,
) -> Vec<(String, ReadOutcome)> {
    const NOT_FOUND: &str = "OBJECT_NOT_FOUND";
    let keys: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (matched, unmatched) = response.errors_by_input(&keys);
    let code_of = |category: Option<&str>| match category {
        Some(NOT_FOUND) => None,
        Some(c) if !c.is_empty() => Some(format!("hubspot_read_{}", c.to_ascii_lowercase())),
        _ => Some("hubspot_read_error".to_owned()),
    };
    let mut error_of: Vec<Option<Option<String>>> = vec![None; ids.len()];
    for (index, error) in matched {
        let code = code_of(error.category.as_deref());
        // A failure wins over not-found when an id is named twice.
        let slot = &mut error_of[index];
        if slot.as_ref().is_none_or(|c| c.is_none()) {
            *slot = Some(code);
        }
    }
    let blanket = unmatched
        .iter()
        .map(|e| code_of(e.category.as_deref()))
        .reduce(|a, b| a.or(b));
    let mut found: std::collections::HashMap<String, SimpleObject> = response
        .results
        .into_iter()
        .map(|o| (o.id.clone(), o))
        .collect();
    ids.iter()
        .zip(error_of)
        .map(|(id, error)| {
            let outcome = match (found.remove(id), error.or_else(|| blanket.clone())) {
                (Some(object), _) => ReadOutcome::Found(object),
                (None, Some(None)) => ReadOutcome::Missing,
                (None, Some(Some(code))) => ReadOutcome::Failed { code },
                (None, None) => ReadOutcome::Failed {
                    code: "hubspot_read_incomplete".into(),
                },
            };
            (id.clone(), outcome)
        })
        .collect()
}

/// The association of an `associationChange` event (docs/hubspot.md §2.2), as forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Association {
    /// `fromObjectId`.
    pub from_id: Option<String>,
    /// `toObjectId`.
    pub to_id: Option<String>,
    /// `associationType` (`CONTACT_TO_COMPANY`), or the generic events' `associationTypeId`.
    pub association_type: Option<String>,
    /// `associationRemoved`: `true` when the association was removed.
    pub removed: bool,
}

impl Association {
    /// Reads the association fields of `event`.
    pub fn of(event: &Event<'_>) -> Self {
        let extra = Extra::of(event);
        let association_type = match extra
            .association_type
            .as_ref()
            .or(extra.association_type_id.as_ref())
        {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Self {
            from_id: id_text(extra.from_object_id.as_ref()),
            to_id: id_text(extra.to_object_id.as_ref()),
            association_type,
            removed: extra.association_removed.unwrap_or(false),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    #[test]
    fn batch_read_errors_are_not_all_missing() {
        let ids: Vec<String> = ["1", "2", "3", "4", "5"].map(String::from).to_vec();
        let body = r#"{"status":"COMPLETE","results":[{"id":"1","properties":{"email":"a@b.c"}}],
            "errors":[
              {"status":"error","category":"OBJECT_NOT_FOUND","message":"Could not get some CONTACT objects","context":{"ids":["2"]}},
              {"status":"error","category":"VALIDATION_ERROR","message":"bad","context":{"ids":["3"]}},
              {"status":"error","category":"RATE_LIMITS","message":"later","context":{"ids":["4"]}}
            ]}"#;
        let response: crate::api::BatchResponse = serde_json::from_str(body).unwrap();
        let got = classify_read(&ids, response);
        let outcome = |i: usize| got[i].1.clone();
        assert!(
            matches!(outcome(0), ReadOutcome::Found(ref o) if o.properties["email"].as_deref() == Some("a@b.c"))
        );
        assert_eq!(outcome(1), ReadOutcome::Missing);
        assert_eq!(
            outcome(2),
            ReadOutcome::Failed {
                code: "hubspot_read_validation_error".into()
            }
        );
        assert_eq!(
            outcome(3),
            ReadOutcome::Failed {
                code: "hubspot_read_rate_limits".into()
            }
        );
        // Neither returned nor named: not "gone".
        assert_eq!(
            outcome(4),
            ReadOutcome::Failed {
                code: "hubspot_read_incomplete".into()
            }
        );

        // An error naming no input concerns every id not returned.
        let body = r#"{"status":"COMPLETE","results":[{"id":"1","properties":{}}],
            "errors":[{"status":"error","category":"OBJECT_NOT_FOUND","message":"x"}]}"#;
        let got = classify_read(&ids[..2], serde_json::from_str(body).unwrap());
        assert!(matches!(got[0].1, ReadOutcome::Found(_)));
        assert_eq!(got[1].1, ReadOutcome::Missing);
        let body =
            r#"{"status":"COMPLETE","results":[],"errors":[{"status":"error","message":"x"}]}"#;
        let got = classify_read(&ids[..1], serde_json::from_str(body).unwrap());
        assert_eq!(
            got[0].1,
            ReadOutcome::Failed {
                code: "hubspot_read_error".into()
            }
        );
    }

    const CONFIG: &str = r#"{"objects":{"contacts":{"fields":[
        {"hubspot":"email","type":"email"},
        {"hubspot":"firstname","field":"first_name"},
        {"hubspot":"date_of_birth","field":"birthday","type":"date"},
        {"hubspot":"numberofemployees","field":"employees","type":"number"}
    ]}}}"#;

    fn mapping() -> Mapping {
        Mapping::from_json(CONFIG).unwrap()
    }

    fn event(v: &Value) -> String {
        let mut v = v.clone();
        let o = v.as_object_mut().unwrap();
        o.entry("portalId").or_insert(json!(33));
        o.entry("eventId").or_insert(json!(1));
        o.entry("occurredAt").or_insert(json!(1000));
        v.to_string()
    }

    fn parsed(texts: &[String]) -> Vec<Event<'_>> {
        texts.iter().map(|t| Event::from_json(t).unwrap()).collect()
    }

    fn plan_of(texts: &[String], survivor: &str) -> Plan {
        let mapping = mapping();
        let events = parsed(texts);
        let refs: Vec<&Event<'_>> = events.iter().collect();
        plan(mapping.object("contact").unwrap(), survivor, &refs)
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn routes() {
        let mapping = mapping();
        let cases = [
            (
                json!({"subscriptionType":"contact.propertyChange","objectId":5}),
                Route::Object("5".into()),
            ),
            (
                json!({"subscriptionType":"company.propertyChange","objectId":5}),
                Route::Thin,
            ),
            (
                json!({"subscriptionType":"contact.newThing","objectId":5}),
                Route::Thin,
            ),
            (
                json!({"subscriptionType":"contact.associationChange","objectId":5}),
                Route::Association,
            ),
            (
                json!({"subscriptionType":"contact.merge","objectId":5,"primaryObjectId":5,"mergedObjectIds":[6],"newObjectId":7}),
                Route::Object("7".into()),
            ),
            (
                json!({"subscriptionType":"contact.merge","objectId":5,"primaryObjectId":"8","mergedObjectIds":[6]}),
                Route::Object("8".into()),
            ),
            (
                json!({"subscriptionType":"object.creation","objectTypeId":"0-1","objectId":9}),
                Route::Object("9".into()),
            ),
            (json!({"subscriptionType":"contact.creation"}), Route::Thin),
        ];
        for (v, want) in cases {
            let text = event(&v);
            assert_eq!(
                route(&mapping, &Event::from_json(&text).unwrap()),
                want,
                "{v}"
            );
        }
    }

    #[test]
    fn plans() {
        let pc = |p: &str, at: u64| {
            event(
                &json!({"subscriptionType":"contact.propertyChange","objectId":5,"propertyName":p,"occurredAt":at}),
            )
        };
        let life = |a: &str, at: u64| {
            event(&json!({"subscriptionType":format!("contact.{a}"),"objectId":5,"occurredAt":at}))
        };
        assert_eq!(
            plan_of(&[pc("hs_lead_status", 1), pc("other", 2)], "5"),
            Plan::Ignore
        );
        assert_eq!(
            plan_of(
                &[
                    pc("firstname", 2),
                    pc("email", 1),
                    pc("firstname", 3),
                    pc("x", 4)
                ],
                "5"
            ),
            Plan::Read(Need::Change {
                properties: BTreeMap::from([
                    (
                        "email".into(),
                        FirstChange {
                            at_ms: 1,
                            value: None
                        }
                    ),
                    (
                        "firstname".into(),
                        FirstChange {
                            at_ms: 2,
                            value: None
                        }
                    ),
                ])
            })
        );
        assert_eq!(
            plan_of(&[pc("firstname", 3), life("creation", 1)], "5"),
            Plan::Read(Need::Create)
        );
        // Out of order in the batch: the deletion happened last.
        assert_eq!(
            plan_of(
                &[life("deletion", 9), life("creation", 1), pc("email", 2)],
                "5"
            ),
            Plan::Delete { privacy: false }
        );
        assert_eq!(
            plan_of(&[life("restore", 9), life("deletion", 5)], "5"),
            Plan::Read(Need::Restore)
        );
        assert_eq!(
            plan_of(&[life("privacyDeletion", 5), life("deletion", 6)], "5"),
            Plan::Delete { privacy: true }
        );
        let merge = event(&json!({"subscriptionType":"contact.merge","objectId":5,
            "primaryObjectId":5,"mergedObjectIds":[7,"6",7],"newObjectId":5}));
        assert_eq!(
            plan_of(&[merge, pc("email", 9)], "5"),
            Plan::Read(Need::Merge {
                merged_ids: vec!["6".into(), "7".into()]
            })
        );
        // A merge that minted a new record: the old primary is merged away too.
        let minted = event(&json!({"subscriptionType":"contact.merge","objectId":5,
            "primaryObjectId":5,"mergedObjectIds":[6],"newObjectId":8}));
        assert_eq!(
            plan_of(&[minted], "8"),
            Plan::Read(Need::Merge {
                merged_ids: vec!["5".into(), "6".into()]
            })
        );
    }

    #[test]
    fn decisions() {
        let mapping = mapping();
        let map = mapping.object("contact").unwrap();
        let change = Need::Change {
            properties: BTreeMap::from([(
                "numberofemployees".into(),
                FirstChange {
                    at_ms: 1,
                    value: None,
                },
            )]),
        };
        let none = BTreeMap::new();
        let snapshot = Record::from_snapshot(r#"{"email":"a@b.c","employees":17}"#).unwrap();
        let now = props(&[("email", "A@b.c"), ("numberofemployees", "17.0")]);

        // Same value in another spelling: nothing to forward, nothing to store.
        let d = decide(
            map,
            "5",
            &change,
            Some(&snapshot),
            Current::Found(&now),
            &none,
            None,
        )
        .unwrap();
        assert_eq!(d.forward, None);
        assert_eq!(d.skip, Some(Skip::Unchanged));
        assert_eq!(d.snapshot, SnapshotWrite::Keep);

        let now = props(&[("email", "a@b.c"), ("numberofemployees", "18")]);
        let d = decide(
            map,
            "5",
            &change,
            Some(&snapshot),
            Current::Found(&now),
            &none,
            None,
        )
        .unwrap();
        assert_eq!(
            d.forward,
            Some(Forward::Changed(vec![Change {
                field: "employees".into(),
                old: Some(json!(17)),
                new: json!(18)
            }]))
        );
        // The snapshot records when HubSpot changed the field (the inbound sync's conflicts).
        assert_eq!(
            d.snapshot,
            SnapshotWrite::Put(
                r#"{"$hubspot-edge.changedAt":{"employees":1},"email":"a@b.c","employees":18}"#
                    .into()
            )
        );

        // Our own write: not forwarded, but remembered.
        let written = BTreeMap::from([("numberofemployees".to_owned(), "18".to_owned())]);
        let guard = EchoGuard::new(map, "5", &written);
        let d = decide(
            map,
            "5",
            &change,
            Some(&snapshot),
            Current::Found(&now),
            &none,
            Some(&guard),
        )
        .unwrap();
        assert_eq!((d.forward, d.skip), (None, Some(Skip::Echo)));
        assert_eq!(
            d.snapshot,
            SnapshotWrite::Put(r#"{"email":"a@b.c","employees":18}"#.into())
        );
        // The same guard, but someone changed the value again: a real change.
        let later = props(&[("email", "a@b.c"), ("numberofemployees", "19")]);
        let d = decide(
            map,
            "5",
            &change,
            Some(&snapshot),
            Current::Found(&later),
            &none,
            Some(&guard),
        )
        .unwrap();
        assert!(matches!(d.forward, Some(Forward::Changed(_))));
        // A guard for another property does not hide this change.
        let other = EchoGuard::new(
            map,
            "5",
            &BTreeMap::from([("email".to_owned(), "a@b.c".to_owned())]),
        );
        let d = decide(
            map,
            "5",
            &change,
            Some(&snapshot),
            Current::Found(&now),
            &none,
            Some(&other),
        )
        .unwrap();
        assert!(matches!(d.forward, Some(Forward::Changed(_))));

        // Gone in between.
        let d = decide(
            map,
            "5",
            &change,
            Some(&snapshot),
            Current::Missing,
            &none,
            None,
        )
        .unwrap();
        assert_eq!(
            (d.forward, d.skip, d.snapshot),
            (None, Some(Skip::Missing), SnapshotWrite::Keep)
        );

        // Created: the whole record, dates as dates.
        let born = props(&[("email", "a@b.c"), ("date_of_birth", "1430438400000")]);
        let d = decide(
            map,
            "5",
            &Need::Create,
            None,
            Current::Found(&born),
            &none,
            None,
        )
        .unwrap();
        let Some(Forward::Created(record)) = d.forward else {
            panic!("not created: {d:?}")
        };
        assert_eq!(record.get("birthday"), Some(&json!("2015-05-01")));

        // Created, and the store already holds these values (an inbound upsert created it and
        // committed what it wrote; absent fields are empty): our own write, skipped. A
        // snapshot that differs still forwards the creation.
        let ours =
            Record::from_snapshot(&json!({"email": "a@b.c", "birthday": "2015-05-01"}).to_string())
                .unwrap();
        let d = decide(
            map,
            "5",
            &Need::Create,
            Some(&ours),
            Current::Found(&born),
            &none,
            None,
        )
        .unwrap();
        assert_eq!(
            (d.forward, d.skip, d.snapshot),
            (None, Some(Skip::Unchanged), SnapshotWrite::Keep)
        );
        let other = Record::from_snapshot(&json!({"email": "x@y.z"}).to_string()).unwrap();
        let d = decide(
            map,
            "5",
            &Need::Create,
            Some(&other),
            Current::Found(&born),
            &none,
            None,
        )
        .unwrap();
        assert!(matches!(d.forward, Some(Forward::Created(_))), "{d:?}");

        // A value that does not map is the record's fault, with a code and no value.
        let bad = props(&[("date_of_birth", "2015-05-01T10:00:00Z")]);
        let err = decide(
            map,
            "5",
            &Need::Create,
            None,
            Current::Found(&bad),
            &none,
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), "mapping_not_midnight");

        // Merge: survivor record, its changes, merged ids' snapshots dropped.
        let merged = Need::Merge {
            merged_ids: vec!["6".into()],
        };
        let now = props(&[
            ("email", "a@b.c"),
            ("numberofemployees", "17"),
            ("firstname", "Ann"),
        ]);
        let d = decide(
            map,
            "5",
            &merged,
            Some(&snapshot),
            Current::Found(&now),
            &none,
            None,
        )
        .unwrap();
        let Some(Forward::Merged {
            changes,
            merged_ids,
            ..
        }) = &d.forward
        else {
            panic!("not merged: {d:?}")
        };
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].field, "first_name");
        assert_eq!(merged_ids, &vec!["6".to_owned()]);
        assert!(matches!(d.snapshot, SnapshotWrite::Merge { .. }));
    }

    fn first(at_ms: u64, value: Option<&str>) -> FirstChange {
        FirstChange {
            at_ms,
            value: value.map(str::to_owned),
        }
    }

    /// A history entry as `(value, timestamp)`.
    type Entry<'a> = (Option<&'a str>, &'a str);
    /// Requests as `(ids, history)`.
    type Shape = Vec<(usize, Vec<String>)>;

    fn entries(list: &[Entry<'_>]) -> Vec<HistoryValue> {
        list.iter()
            .map(|(value, timestamp)| HistoryValue {
                value: value.map(str::to_owned),
                timestamp: Some((*timestamp).to_owned()),
            })
            .collect()
    }

    #[test]
    fn plans_keep_each_property_first_change() {
        let pc = |p: &str, v: &str, at: u64, id: u64| {
            event(
                &json!({"subscriptionType":"contact.propertyChange","objectId":5,
                "propertyName":p,"propertyValue":v,"occurredAt":at,"eventId":id}),
            )
        };
        // Out of order; the same instant ordered by eventId.
        let got = plan_of(
            &[
                pc("firstname", "C", 9, 1),
                pc("firstname", "B", 4, 3),
                pc("firstname", "A", 4, 2),
                pc("email", "x@y.z", 7, 4),
            ],
            "5",
        );
        assert_eq!(
            got,
            Plan::Read(Need::Change {
                properties: BTreeMap::from([
                    ("email".into(), first(7, Some("x@y.z"))),
                    ("firstname".into(), first(4, Some("A"))),
                ])
            })
        );
        let Plan::Read(need) = got else { panic!() };
        assert_eq!(need.history(false), ["email", "firstname"]);
        assert!(need.history(true).is_empty());
        assert!(Need::Create.history(false).is_empty());
    }

    #[test]
    fn history_reads_are_planned() {
        let ids: Vec<String> = (0..300).map(|i| i.to_string()).collect();
        let h = |p: &str| vec![p.to_owned()];
        let shape = |chunks: &[ReadChunk]| -> Shape {
            chunks
                .iter()
                .map(|c| (c.ids.len(), c.history.clone()))
                .collect()
        };
        let hist = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // (objects with history, plain objects) -> (ids per request, history per request)
        let cases: [(usize, usize, Shape); 7] = [
            (0, 0, vec![]),
            (0, 100, vec![(100, vec![])]),
            (0, 101, vec![(100, vec![]), (1, vec![])]),
            (1, 0, vec![(1, hist(&["firstname"]))]),
            // Plain objects fill the history request, up to 50.
            (10, 40, vec![(50, hist(&["firstname"]))]),
            (10, 41, vec![(50, hist(&["firstname"])), (1, vec![])]),
            (
                99,
                1,
                vec![(50, hist(&["firstname"])), (50, hist(&["firstname"]))],
            ),
        ];
        for (with, plain, want) in cases {
            let objects = ids[..with]
                .iter()
                .map(|id| (id.as_str(), h("firstname")))
                .chain(ids[100..100 + plain].iter().map(|id| (id.as_str(), vec![])));
            assert_eq!(shape(&read_plan(objects)), want, "{with} + {plain}");
        }
        // Each request asks for the union of its objects' needs; an id given twice is read once.
        let chunks = read_plan([
            ("1", h("firstname")),
            ("2", vec![]),
            ("1", h("email")),
            ("3", h("date_of_birth")),
        ]);
        assert_eq!(
            chunks,
            vec![ReadChunk {
                ids: vec!["1".into(), "3".into(), "2".into()],
                history: hist(&["date_of_birth", "email", "firstname"]),
            }]
        );
        // HubSpot refused the history read: the same ids, plainly; no fallback otherwise.
        use crate::api::GiveUpReason;
        assert_eq!(
            chunks[0].fallback(GiveUpReason::Validation),
            Some(ReadChunk {
                ids: chunks[0].ids.clone(),
                history: vec![]
            })
        );
        assert_eq!(chunks[0].fallback(GiveUpReason::RetriesExhausted), None);
        let plain = read_plan([("2", vec![])]);
        assert_eq!(plain[0].fallback(GiveUpReason::Validation), None);
    }

    #[test]
    fn values_before_a_change() {
        use Before::{Known, Unknown};
        let ada = |v: &str| Known(Some(v.to_owned()));
        // 1000 ms = 1970-01-01T00:00:01.000Z.
        let cases: Vec<(Vec<Entry<'_>>, FirstChange, Before)> = vec![
            // Newest first, as HubSpot often sends it; sorted here.
            (
                vec![(Some("Bo"), "1000"), (Some("Ada"), "500")],
                first(1000, Some("Bo")),
                ada("Ada"),
            ),
            // ISO timestamps, oldest first.
            (
                vec![
                    (Some("Ada"), "1970-01-01T00:00:00.500Z"),
                    (Some("Bo"), "1970-01-01T00:00:01.000Z"),
                ],
                first(1000, Some("Bo")),
                ada("Ada"),
            ),
            // Several changes in the batch: the value before the first one.
            (
                vec![
                    (Some("Ada"), "100"),
                    (Some("Bo"), "1000"),
                    (Some("Cy"), "2000"),
                ],
                first(1000, Some("Bo")),
                ada("Ada"),
            ),
            // A later change (next batch) is not "before".
            (
                vec![(Some("Ada"), "100"), (Some("Zed"), "5000")],
                first(1000, Some("Bo")),
                ada("Ada"),
            ),
            // History clock a little ahead of occurredAt: its entry is the change itself.
            (
                vec![(Some("Ada"), "100"), (Some("Bo"), "990")],
                first(1000, Some("Bo")),
                ada("Ada"),
            ),
            // ... but without the event's value nothing says so.
            (
                vec![(Some("Ada"), "100"), (Some("Bo"), "990")],
                first(1000, None),
                ada("Bo"),
            ),
            // The entry at the change's instant is the change, whatever its value.
            (
                vec![(Some("Bo"), "100"), (Some("Bo"), "1000")],
                first(1000, Some("Bo")),
                ada("Bo"),
            ),
            // The history starts with this change: there was no value.
            (
                vec![(Some("Bo"), "1000")],
                first(1000, Some("Bo")),
                Known(None),
            ),
            // Cleared before: "" and null are no value.
            (
                vec![(Some("Ada"), "10"), (Some(""), "20"), (Some("Bo"), "1000")],
                first(1000, Some("Bo")),
                Known(None),
            ),
            (
                vec![(None, "20"), (Some("Bo"), "1000")],
                first(1000, Some("Bo")),
                Known(None),
            ),
            // A clearing change: the value before is the last one set.
            (
                vec![(Some("Ada"), "10"), (Some(""), "1000")],
                first(1000, Some("")),
                ada("Ada"),
            ),
            // Two values at one instant: which came last is unknown.
            (
                vec![
                    (Some("Ada"), "10"),
                    (Some("Al"), "10"),
                    (Some("Bo"), "1000"),
                ],
                first(1000, Some("Bo")),
                Unknown,
            ),
            // ... unless they agree.
            (
                vec![
                    (Some("Ada"), "10"),
                    (Some("Ada"), "10"),
                    (Some("Bo"), "1000"),
                ],
                first(1000, Some("Bo")),
                ada("Ada"),
            ),
            // No history returned; an unreadable timestamp.
            (vec![], first(1000, Some("Bo")), Unknown),
            (
                vec![(Some("Ada"), "yesterday"), (Some("Bo"), "1000")],
                first(1000, Some("Bo")),
                Unknown,
            ),
        ];
        for (list, change, want) in cases {
            assert_eq!(
                value_before(&entries(&list), &change),
                want,
                "{list:?} {change:?}"
            );
        }
        // A timestamp-less entry is unreadable too.
        let mut no_time = entries(&[(Some("Ada"), "10")]);
        no_time[0].timestamp = None;
        assert_eq!(value_before(&no_time, &first(1000, None)), Unknown);
    }

    #[test]
    fn a_first_change_carries_the_true_old_value() {
        let mapping = mapping();
        let map = mapping.object("contact").unwrap();
        let change = |props: &[(&str, FirstChange)]| Need::Change {
            properties: props
                .iter()
                .map(|(p, f)| ((*p).to_owned(), f.clone()))
                .collect(),
        };
        let now = props(&[
            ("email", "a@b.c"),
            ("firstname", "Bo"),
            ("numberofemployees", "12"),
            ("date_of_birth", "1430438400000"),
        ]);
        let history = |list: &[(&str, &[Entry<'_>])]| {
            list.iter()
                .map(|(p, e)| ((*p).to_owned(), entries(e)))
                .collect::<BTreeMap<_, _>>()
        };
        let forwarded = |need: &Need, history: &BTreeMap<String, Vec<HistoryValue>>| {
            let d = decide(map, "5", need, None, Current::Found(&now), history, None).unwrap();
            assert!(
                matches!(d.snapshot, SnapshotWrite::Put(_)),
                "the snapshot is stored: {d:?}"
            );
            match d.forward {
                Some(Forward::Changed(changes)) => serde_json::to_value(changes).unwrap(),
                None => json!(d.skip.map(|s| s.code())),
                other => panic!("{other:?}"),
            }
        };

        // Only the changed property, with its value before; email etc. are not reported.
        let firstname = change(&[("firstname", first(1000, Some("Bo")))]);
        let h = history(&[(
            "firstname",
            &[
                (Some("Bo"), "1000"),
                (Some("Ada"), "1970-01-01T00:00:00.001Z"),
            ],
        )]);
        assert_eq!(
            forwarded(&firstname, &h),
            json!([{"field": "first_name", "old": "Ada", "new": "Bo"}])
        );
        // No value before: old is null.
        let h = history(&[("firstname", &[(Some("Bo"), "1000")])]);
        assert_eq!(
            forwarded(&firstname, &h),
            json!([{"field": "first_name", "old": null, "new": "Bo"}])
        );
        // No history for it: old is absent (unknown), not null.
        assert_eq!(
            forwarded(&firstname, &BTreeMap::new()),
            json!([{"field": "first_name", "new": "Bo"}])
        );
        // Old values are mapped like new ones (type-aware), in map order; one that does not map
        // is unknown; one equal to now (changed and changed back) is not a change.
        let several = change(&[
            ("firstname", first(1000, Some("Bo"))),
            ("numberofemployees", first(900, Some("12"))),
            ("date_of_birth", first(800, None)),
            ("email", first(700, Some("a@b.c"))),
        ]);
        let h = history(&[
            ("firstname", &[(Some("Bo"), "1000"), (Some("Bo"), "50")]),
            (
                "numberofemployees",
                &[(Some("12"), "900"), (Some("11.0"), "60")],
            ),
            (
                "date_of_birth",
                &[
                    (Some("1430438400000"), "800"),
                    (Some("2015-05-01T10:00:00Z"), "70"),
                ],
            ),
            ("email", &[(Some("a@b.c"), "700"), (Some("old@b.c"), "80")]),
        ]);
        assert_eq!(
            forwarded(&several, &h),
            json!([
                {"field": "email", "old": "old@b.c", "new": "a@b.c"},
                {"field": "birthday", "new": "2015-05-01"},
                {"field": "employees", "old": 11, "new": 12},
            ])
        );
        // Changed and changed back within the batch: nothing to forward, snapshot stored.
        let h = history(&[(
            "firstname",
            &[
                (Some("Bo"), "10"),
                (Some("Al"), "1000"),
                (Some("Bo"), "1100"),
            ],
        )]);
        assert_eq!(
            forwarded(&change(&[("firstname", first(1000, Some("Al")))]), &h),
            json!("unchanged")
        );

        // With a snapshot the history is not used: the snapshot is the old value.
        let snapshot = Record::from_snapshot(r#"{"email":"a@b.c","first_name":"Cy"}"#).unwrap();
        let h = history(&[("firstname", &[(Some("Ada"), "1"), (Some("Bo"), "1000")])]);
        let d = decide(
            map,
            "5",
            &firstname,
            Some(&snapshot),
            Current::Found(&now),
            &h,
            None,
        )
        .unwrap();
        let Some(Forward::Changed(changes)) = d.forward else {
            panic!("{d:?}")
        };
        assert_eq!(changes[0].field, "first_name");
        assert_eq!(changes[0].old, Some(json!("Cy")));

        // The sync's association hash in the snapshot is not a field: not a change, and the
        // snapshot written keeps it (enrichment does not read associations).
        let key = crate::records::ASSOCIATIONS_KEY;
        let mut with_hash = snapshot.clone();
        with_hash.insert(key, json!("hsa1_x"));
        let d = decide(
            map,
            "5",
            &firstname,
            Some(&with_hash),
            Current::Found(&now),
            &h,
            None,
        )
        .unwrap();
        let Some(Forward::Changed(changes)) = &d.forward else {
            panic!("{d:?}")
        };
        assert!(changes.iter().all(|c| c.field != key), "{changes:?}");
        let SnapshotWrite::Put(text) = &d.snapshot else {
            panic!("{d:?}")
        };
        let stored = Record::from_snapshot(text).unwrap();
        assert_eq!(stored.get(key), Some(&json!("hsa1_x")));
        assert_eq!(stored.get("first_name"), Some(&json!("Bo")));
    }

    #[test]
    fn reads_keep_the_history() {
        let body = r#"{"status":"COMPLETE","results":[{"id":"1","properties":{"firstname":"Bo"},
            "propertiesWithHistory":{"firstname":[
              {"value":"Bo","timestamp":"2024-09-11T18:21:50.012Z","sourceType":"CRM_UI","sourceId":"userId:1","updatedByUserId":1},
              {"value":"Ada","timestamp":"2024-09-11T18:00:00.000Z","sourceType":"IMPORT"}]}}]}"#;
        let got = classify_read(&["1".to_owned()], serde_json::from_str(body).unwrap());
        let ReadOutcome::Found(object) = &got[0].1 else {
            panic!("{got:?}")
        };
        let history = &object.properties_with_history["firstname"];
        assert_eq!(history.len(), 2);
        assert_eq!(history[0].timestamp_ms(), Some(1_726_078_910_012));
        assert_eq!(
            value_before(history, &first(1_726_078_910_012, Some("Bo"))),
            Before::Known(Some("Ada".into()))
        );
    }

    #[test]
    fn associations() {
        let text = event(
            &json!({"subscriptionType":"contact.associationChange","objectId":5,
            "fromObjectId":5,"toObjectId":"9","associationType":"CONTACT_TO_COMPANY",
            "associationRemoved":true,"isPrimaryAssociation":false}),
        );
        let a = Association::of(&Event::from_json(&text).unwrap());
        assert_eq!(
            a,
            Association {
                from_id: Some("5".into()),
                to_id: Some("9".into()),
                association_type: Some("CONTACT_TO_COMPANY".into()),
                removed: true,
            }
        );
        let text = event(
            &json!({"subscriptionType":"object.associationChange","objectTypeId":"0-1",
            "objectId":5,"fromObjectId":5,"toObjectId":9,"associationTypeId":279}),
        );
        let a = Association::of(&Event::from_json(&text).unwrap());
        assert_eq!(a.association_type.as_deref(), Some("279"));
        assert!(!a.removed);
    }
}
