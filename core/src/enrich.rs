//! Enrichment decisions: what to read, forward and store for the webhook events about one
//! object, given the object type's [`ObjectMap`], the last forwarded snapshot and what HubSpot
//! returns now. No I/O: the Worker's queue consumer reads and writes, this module decides.
//!
//! # The steps, for the events of one queue batch
//!
//! 1. [`route`] each event: events of an object type without a map, and events this module does
//!    not model, stay thin (forwarded as they are); association changes are forwarded on their
//!    own, without a read; everything else is grouped by the object it concerns
//!    ([`Route::Object`]: the surviving id for a merge, HUBSPOT.md §2.2).
//! 2. [`plan`] each group (its events in `occurredAt` order): [`Plan::Ignore`] (only changes to
//!    unmapped properties), [`Plan::Delete`] (the last lifecycle event is a deletion or privacy
//!    deletion) or [`Plan::Read`] with the reason for the read.
//! 3. Read the objects of each type in batches of up to 100 (HUBSPOT.md §4.1), the mapped
//!    properties only ([`ObjectMap::properties`]).
//! 4. [`decide`] each group with its snapshot, its current HubSpot properties (or
//!    [`Current::Missing`] when the batch read did not return it) and the echo guard, if any.
//!    The [`Decision`] says what to forward (at most one message per object) and what to do
//!    with the snapshot once the forward succeeded.
//!
//! A group with a creation and later changes forwards one `created` with the current record; a
//! deletion followed by a restore forwards the restore. An object HubSpot no longer returns was
//! deleted in between: nothing is forwarded for it (its deletion event follows).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::diff::{diff, Change, Diff, EchoGuard};
use crate::event::Event;
use crate::mapping::{MapError, Mapping, ObjectMap, Record};

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

/// The lifecycle actions of HubSpot's CRM subscriptions (HUBSPOT.md §2.3).
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

/// The fields of merge and association events that [`Event`] does not model (HUBSPOT.md §2.2).
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
        /// The last lifecycle event was a privacy deletion (HUBSPOT.md §2.2).
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
    /// Mapped properties changed: forward the diff against the snapshot.
    Change {
        /// The mapped properties the events name, sorted, each once.
        properties: Vec<String>,
    },
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
    let mut properties: Vec<String> = Vec::new();
    for event in &sorted {
        match action(event) {
            Some(a @ (Action::Deletion | Action::PrivacyDeletion)) => {
                // A privacy deletion and its companion deletion (HUBSPOT.md §2.2) are one.
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
                    properties.push(p.to_owned());
                }
            }
            Some(Action::AssociationChange) | None => {}
        }
    }
    merged.retain(|id| id != survivor);
    merged.sort_unstable();
    merged.dedup();
    properties.sort_unstable();
    properties.dedup();
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
pub struct Decision {
    /// What to forward; `None` with [`Self::skip`] saying why.
    pub forward: Option<Forward>,
    /// Why nothing is forwarded, when nothing is.
    pub skip: Option<Skip>,
    /// What to store once the forward succeeded (at once when nothing is forwarded).
    pub snapshot: SnapshotWrite,
}

impl Decision {
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
/// properties now, `echo` the guard of this integration's latest write to it, if any.
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
    echo: Option<&EchoGuard>,
) -> Result<Decision, MapError> {
    let Current::Found(properties) = current else {
        return Ok(Decision::skip(Skip::Missing, SnapshotWrite::Keep));
    };
    let record = map.to_destination(properties)?;
    let put = SnapshotWrite::Put(record.to_snapshot());
    let empty = Record::new();
    let old = snapshot.unwrap_or(&empty);
    Ok(match need {
        Need::Create => Decision::forward(Forward::Created(record), put),
        Need::Restore => Decision::forward(Forward::Restored(record), put),
        Need::Merge { merged_ids } => {
            let changes = match snapshot.map(|s| diff(map, s, &record)) {
                Some(Diff::Changed(patch)) => patch.changes().to_vec(),
                Some(Diff::Unchanged) | None => Vec::new(),
            };
            let snapshot = SnapshotWrite::Merge {
                snapshot: record.to_snapshot(),
                merged_ids: merged_ids.clone(),
            };
            Decision::forward(
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
                .is_some_and(|guard| names.iter().all(|p| guard.is_echo(map, id, p, properties)));
            if is_echo {
                return Ok(Decision::skip(Skip::Echo, put));
            }
            match diff(map, old, &record) {
                Diff::Unchanged => Decision::skip(Skip::Unchanged, SnapshotWrite::Keep),
                Diff::Changed(patch) => {
                    Decision::forward(Forward::Changed(patch.changes().to_vec()), put)
                }
            }
        }
    })
}

/// What a batch read said about one requested id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOutcome {
    /// Returned, with these properties.
    Found(BTreeMap<String, Option<String>>),
    /// HubSpot says it does not exist (`OBJECT_NOT_FOUND`): archived or merged away since the
    /// events. Its deletion or merge event follows; skip it once.
    Missing,
    /// HubSpot named it in another error (validation, a temporary error…), or did not account
    /// for it at all. Retry, then dead-letter with [`Self::code`].
    Failed {
        /// Stable code: `hubspot_read_` and HubSpot's error category in lower case
        /// (`hubspot_read_validation_error`), or `hubspot_read_incomplete` for an id the answer
        /// neither returned nor named.
        code: String,
    },
}

/// Reads a batch-read answer (200 or 207) for the requested `ids` (HUBSPOT.md §4.1: a 207
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
    let mut found: std::collections::HashMap<String, BTreeMap<String, Option<String>>> = response
        .results
        .into_iter()
        .map(|o| (o.id, o.properties))
        .collect();
    ids.iter()
        .zip(error_of)
        .map(|(id, error)| {
            let outcome = match (found.remove(id), error.or_else(|| blanket.clone())) {
                (Some(properties), _) => ReadOutcome::Found(properties),
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

/// The association of an `associationChange` event (HUBSPOT.md §2.2), as forwarded.
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
            matches!(outcome(0), ReadOutcome::Found(ref p) if p["email"].as_deref() == Some("a@b.c"))
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
                properties: vec!["email".into(), "firstname".into()]
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
            properties: vec!["numberofemployees".into()],
        };
        let snapshot = Record::from_snapshot(r#"{"email":"a@b.c","employees":17}"#).unwrap();
        let now = props(&[("email", "A@b.c"), ("numberofemployees", "17.0")]);

        // Same value in another spelling: nothing to forward, nothing to store.
        let d = decide(
            map,
            "5",
            &change,
            Some(&snapshot),
            Current::Found(&now),
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
            None,
        )
        .unwrap();
        assert_eq!(
            d.forward,
            Some(Forward::Changed(vec![Change {
                field: "employees".into(),
                old: json!(17),
                new: json!(18)
            }]))
        );
        assert_eq!(
            d.snapshot,
            SnapshotWrite::Put(r#"{"email":"a@b.c","employees":18}"#.into())
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
            Some(&other),
        )
        .unwrap();
        assert!(matches!(d.forward, Some(Forward::Changed(_))));

        // Gone in between.
        let d = decide(map, "5", &change, Some(&snapshot), Current::Missing, None).unwrap();
        assert_eq!(
            (d.forward, d.skip, d.snapshot),
            (None, Some(Skip::Missing), SnapshotWrite::Keep)
        );

        // Created: the whole record, dates as dates.
        let born = props(&[("email", "a@b.c"), ("date_of_birth", "1430438400000")]);
        let d = decide(map, "5", &Need::Create, None, Current::Found(&born), None).unwrap();
        let Some(Forward::Created(record)) = d.forward else {
            panic!("not created: {d:?}")
        };
        assert_eq!(record.get("birthday"), Some(&json!("2015-05-01")));

        // A value that does not map is the record's fault, with a code and no value.
        let bad = props(&[("date_of_birth", "2015-05-01T10:00:00Z")]);
        let err = decide(map, "5", &Need::Create, None, Current::Found(&bad), None).unwrap_err();
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
