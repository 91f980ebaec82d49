//! Change detection against the record store ([`crate::records`]), and the reconcile's
//! merge-join.
//!
//! Each record read is mapped ([`ObjectMap::to_destination`]) and compared with its stored
//! snapshot ([`crate::diff::diff`]), the one store webhook enrichment also writes: a change
//! enrichment already delivered is stored, so sync finds it unchanged, and the other way round.
//!
//! | read | stored | delivered | store write (after delivery) |
//! | --- | --- | --- | --- |
//! | live | same mapped values (and associations, when configured) | nothing | none |
//! | live | other values, none, or a tombstone | `upsert` | snapshot, expecting the version read |
//! | live, `hs_merged_object_ids` naming stored live ids | any | `merge` with those ids | survivor's snapshot; the merged ids' tombstones |
//! | archived | live snapshot | `delete` (`archived`) | tombstone, expecting the version read |
//! | archived, `hs_merged_object_ids` naming stored live ids | those | `delete` (`archived`) for each | tombstones |
//! | archived | tombstone or none | nothing | none |
//! | gone (reconcile, re-read) | live snapshot | `delete` (`missing`) | tombstone |

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::assoc::Associations;
use super::config::{SyncConfig, MERGED_IDS_PROPERTY};
use super::unit::Step;
use crate::api::SimpleObject;
use crate::diff::{diff, Diff};
use crate::mapping::{ObjectMap, Record};
use crate::records::{change_id, Commit, Stored, Write, ASSOCIATIONS_KEY};

/// What happens to a record in a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The record is as `fields` says (created, changed or restored).
    Upsert,
    /// `mergedIds` were merged into this record, which is as `fields` says.
    Merge,
    /// The record is gone.
    Delete,
}

impl Op {
    /// The event type naming the change in its id ([`change_id`]).
    fn event_type(self) -> &'static str {
        match self {
            Self::Upsert => "hubspot-edge.sync.upsert",
            Self::Merge => "hubspot-edge.sync.merge",
            Self::Delete => "hubspot-edge.sync.delete",
        }
    }
}

/// Why a record is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReason {
    /// HubSpot lists it as archived (the recycling bin).
    Archived,
    /// The reconcile found it stored but HubSpot no longer returns it, archived or not
    /// (deleted for good, a privacy deletion, or deleted while no webhook arrived).
    Missing,
}

/// One record of a delivery (schema `hubspot-edge.sync-batch.v1`, `records[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    /// What happened.
    pub op: Op,
    /// The HubSpot record id (the survivor for a merge).
    pub id: String,
    /// HubSpot's version of it: `updatedAt` (`archivedAt` for an archived record; absent for a
    /// missing one), ISO 8601.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `hsc1_…`: this change's id ([`change_id`]: the object, the stored version it was
    /// compared with, the op and the content). A receiver dedupes records on it.
    pub change_id: String,
    /// The mapped fields (upsert, merge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Record>,
    /// Merge: the ids merged into `id`, ascending.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub merged_ids: Vec<String>,
    /// Delete: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<DeleteReason>,
    /// Upsert, merge, with associations configured (`SYNC_ASSOCIATIONS`): the associated
    /// record ids by object type, every configured type present (empty when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associations: Option<Associations>,
}

/// A record to deliver, with the store writes to make once it is delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingChange {
    /// The record as delivered.
    pub record: SyncRecord,
    /// The writes (compare-and-set on the version read, except the merged ids').
    pub commits: Vec<Commit>,
}

/// A record that cannot be delivered: dead-letter it with `code` (nothing else is held up).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    /// The record id.
    pub id: String,
    /// Stable code: a [`crate::mapping::MapError::code`], or `record_too_large`.
    pub code: String,
}

/// The decisions for one [`Step`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decided {
    /// Records to deliver, in the step's order.
    pub pending: Vec<PendingChange>,
    /// Records read whose mapped values equal the stored ones.
    pub unchanged: u64,
    /// Records that cannot be mapped.
    pub rejected: Vec<Rejection>,
}

/// The ids whose stored state [`decide`] needs: every record of the step, and the ids merged
/// into its live records. Ask the store for these (absent ones are [`Stored::absent`]).
pub fn lookups(step: &Step) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in &step.live {
        out.push(o.id.clone());
        out.extend(merged_ids(o));
    }
    for o in &step.archived {
        out.push(o.id.clone());
        out.extend(merged_ids(o));
    }
    out.extend(step.gone.iter().cloned());
    out.sort_unstable();
    out.dedup();
    out
}

/// The ids HubSpot lists as merged into `o`, without `o` itself.
fn merged_ids(o: &SimpleObject) -> Vec<String> {
    let Some(Some(text)) = o.properties.get(MERGED_IDS_PROPERTY) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = text
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && *s != o.id)
        .map(str::to_owned)
        .collect();
    ids.sort_by_key(|s| (s.len(), s.clone()));
    ids.dedup();
    ids
}

fn is_live(stored: Option<&Stored>) -> bool {
    stored.is_some_and(|s| s.snapshot.is_some())
}

/// Decides a step against the stored states `stored` (from [`lookups`]); see the module docs'
/// table. A record whose values cannot be mapped is rejected with the mapping error's code;
/// a stored snapshot that does not read is treated as absent (delivered again, overwritten).
pub fn decide(
    config: &SyncConfig,
    map: &ObjectMap,
    step: &Step,
    stored: &HashMap<String, Stored>,
) -> Decided {
    let absent = Stored::absent();
    let state = |id: &str| stored.get(id).unwrap_or(&absent);
    let mut out = Decided::default();
    let mut merged_now: Vec<String> = Vec::new();
    for o in &step.live {
        let record = match map.to_destination(&o.properties) {
            Ok(r) => r,
            Err(e) => {
                out.rejected.push(Rejection {
                    id: o.id.clone(),
                    code: e.code().to_owned(),
                });
                continue;
            }
        };
        let current = state(&o.id);
        let merged: Vec<String> = merged_ids(o)
            .into_iter()
            .filter(|id| is_live(stored.get(id)))
            .collect();
        let version = o.updated_at.clone().or_else(|| {
            o.properties
                .get(&config.modified_property)
                .cloned()
                .flatten()
        });
        // With associations configured, the snapshot keeps their hash: an association change
        // alone is a change (read by the next run that reads the record: a full run, or an
        // incremental one when HubSpot moved its last-modified date).
        let associations = (!config.associations.is_empty()).then(|| {
            let mut a = step.associations.get(&o.id).cloned().unwrap_or_default();
            for t in &config.associations {
                a.entry(t.clone()).or_default();
            }
            a
        });
        let hash = associations.as_ref().map(associations_hash);
        let mut snapshot = record.clone();
        if let Some(h) = &hash {
            snapshot.insert(ASSOCIATIONS_KEY, Value::String(h.clone()));
        }
        // HubSpot's change times of the fields that differ from the stored state, at the
        // record's version: the inbound sync's conflict rule reads them (CHANGED_AT_KEY).
        if let Some(old) = current
            .snapshot
            .as_deref()
            .and_then(|s| Record::from_snapshot(s).ok())
        {
            let changed: Vec<String> = match diff(map, &old, &record) {
                Diff::Changed(patch) => patch.changes().iter().map(|c| c.field.clone()).collect(),
                Diff::Unchanged => Vec::new(),
            };
            let at = version
                .as_deref()
                .and_then(super::unit::date_ms)
                .and_then(|ms| i64::try_from(ms).ok())
                .unwrap_or(0);
            crate::records::stamp_changes(
                Some(&old),
                &mut snapshot,
                changed.iter().map(String::as_str),
                at,
            );
        }
        let put = Commit {
            id: o.id.clone(),
            expect: Some(current.version),
            write: Write::Put(snapshot.to_snapshot()),
        };
        if !merged.is_empty() {
            let mut commits = vec![put];
            commits.extend(merged.iter().map(|id| Commit {
                id: id.clone(),
                expect: None,
                write: Write::Delete,
            }));
            merged_now.extend(merged.iter().cloned());
            out.pending.push(pending(
                config,
                current.version,
                SyncRecord {
                    op: Op::Merge,
                    id: o.id.clone(),
                    version,
                    change_id: String::new(),
                    fields: Some(record),
                    merged_ids: merged,
                    reason: None,
                    associations,
                },
                commits,
            ));
            continue;
        }
        let old = current
            .snapshot
            .as_deref()
            .and_then(|s| Record::from_snapshot(s).ok());
        if let Some(old) = &old {
            let same_associations = hash
                .as_deref()
                .is_none_or(|h| old.get(ASSOCIATIONS_KEY).and_then(Value::as_str) == Some(h));
            if same_associations && matches!(diff(map, old, &record), Diff::Unchanged) {
                out.unchanged += 1;
                continue;
            }
        }
        out.pending.push(pending(
            config,
            current.version,
            SyncRecord {
                op: Op::Upsert,
                id: o.id.clone(),
                version,
                change_id: String::new(),
                fields: Some(record),
                merged_ids: Vec::new(),
                reason: None,
                associations,
            },
            vec![put],
        ));
    }
    // An archived record takes the records merged into it along: they are gone too.
    let archived_merged: Vec<(String, Option<String>)> = step
        .archived
        .iter()
        .flat_map(|o| {
            merged_ids(o)
                .into_iter()
                .map(|id| (id, o.archived_at.clone()))
        })
        .collect();
    let deletions = step
        .archived
        .iter()
        .map(|o| (o.id.as_str(), o.archived_at.clone(), DeleteReason::Archived))
        .chain(
            archived_merged
                .iter()
                .map(|(id, at)| (id.as_str(), at.clone(), DeleteReason::Archived)),
        )
        .chain(
            step.gone
                .iter()
                .map(|id| (id.as_str(), None, DeleteReason::Missing)),
        );
    let mut deleting: Vec<&str> = Vec::new();
    for (id, version, reason) in deletions {
        let current = state(id);
        // A merged-away id is the merge's, not a deletion; an id named twice is deleted once.
        if current.snapshot.is_none()
            || merged_now.iter().any(|m| m == id)
            || deleting.contains(&id)
        {
            continue;
        }
        deleting.push(id);
        out.pending.push(pending(
            config,
            current.version,
            SyncRecord {
                op: Op::Delete,
                id: id.to_owned(),
                version,
                change_id: String::new(),
                fields: None,
                merged_ids: Vec::new(),
                reason: Some(reason),
                associations: None,
            },
            vec![Commit {
                id: id.to_owned(),
                expect: Some(current.version),
                write: Write::Delete,
            }],
        ));
    }
    out
}

/// `hsa1_` and 32 hex digits of SHA-256 over the associations' JSON (types and ids in order):
/// what the snapshot keeps of them ([`ASSOCIATIONS_KEY`]), 37 bytes whatever their number.
fn associations_hash(a: &Associations) -> String {
    use sha2::{Digest as _, Sha256};
    // A map of strings to string lists always serialises.
    let digest = Sha256::digest(serde_json::to_string(a).unwrap_or_default().as_bytes());
    let mut out = String::with_capacity(37);
    out.push_str("hsa1_");
    for byte in &digest[..16] {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// Names the record's change ([`change_id`] over its content without the id).
fn pending(
    config: &SyncConfig,
    base_version: u64,
    mut record: SyncRecord,
    commits: Vec<Commit>,
) -> PendingChange {
    // Serialising strings, a record and enums cannot fail.
    let content = serde_json::to_string(&record).unwrap_or_default();
    record.change_id = change_id(
        config.portal_id,
        &config.object_type,
        &record.id,
        base_version,
        record.op.event_type(),
        &content,
    );
    PendingChange { record, commits }
}

/// The reconcile's merge-join for one window a range walk read completely: the stored live ids
/// in the window (`stored`, ascending, streamed from the store) that HubSpot did not return
/// (`seen`, ascending). Bounded memory: one pass over both. These are candidates: re-read them
/// at the end of the run ([`super::Unit::Verify`]), since a record created after the walk
/// passed its id, and stored by enrichment, is not missing.
pub fn missing_in_window(seen: &[u64], stored: impl IntoIterator<Item = u64>) -> Vec<u64> {
    let mut out = Vec::new();
    let mut seen = seen.iter().copied().peekable();
    for id in stored {
        while seen.next_if(|&s| s < id).is_some() {}
        if seen.peek() != Some(&id) {
            out.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn contact(id: &str, email: &str) -> SimpleObject {
        serde_json::from_value(serde_json::json!({
            "id": id, "properties": {"email": email}, "updatedAt": "2026-01-01T00:00:00Z"
        }))
        .expect("object")
    }

    fn assoc(ids: &[&str]) -> Associations {
        let mut a = Associations::new();
        a.insert(
            "companies".to_owned(),
            ids.iter().map(|s| (*s).to_owned()).collect(),
        );
        a
    }

    /// Decides one contact with `associations` read against `stored`; the pending record and
    /// the snapshot it would write, or `None` when unchanged.
    fn decide_one(
        config: &SyncConfig,
        associations: Option<Associations>,
        stored: Option<&str>,
    ) -> Option<(SyncRecord, String)> {
        let mapping = crate::mapping::Mapping::from_json(
            r#"{"objects":{"contacts":{"fields":[{"hubspot":"email"}]}}}"#,
        )
        .expect("map");
        let map = mapping.object("contacts").expect("contacts");
        let mut step = Step {
            live: vec![contact("7", "a@example.com")],
            ..Step::default()
        };
        if let Some(a) = associations {
            step.associations.insert("7".to_owned(), a);
        }
        let mut states = HashMap::new();
        if let Some(text) = stored {
            states.insert(
                "7".to_owned(),
                Stored {
                    version: 3,
                    snapshot: Some(text.to_owned()),
                },
            );
        }
        let decided = decide(config, map, &step, &states);
        let p = decided.pending.into_iter().next()?;
        let Write::Put(snapshot) = &p.commits[0].write else {
            panic!("a put");
        };
        Some((p.record, snapshot.clone()))
    }

    #[test]
    fn associations_are_delivered_and_an_association_change_alone_is_a_change() {
        let with = SyncConfig {
            associations: vec!["companies".to_owned()],
            ..SyncConfig::new(crate::id::PortalId::new(1), "contacts")
        };
        let without = SyncConfig::new(crate::id::PortalId::new(1), "contacts");
        // New: delivered with its associations; the snapshot keeps their hash, not the ids.
        let (record, snapshot) = decide_one(&with, Some(assoc(&["20", "100"])), None).expect("new");
        assert_eq!(record.associations, Some(assoc(&["20", "100"])));
        let json = serde_json::to_value(&record).expect("json");
        assert_eq!(
            json["associations"]["companies"],
            serde_json::json!(["20", "100"])
        );
        assert!(json["fields"].get(ASSOCIATIONS_KEY).is_none());
        let kept = Record::from_snapshot(&snapshot).expect("snapshot");
        let hash = kept.get(ASSOCIATIONS_KEY).and_then(Value::as_str);
        assert!(hash.is_some_and(|h| h.starts_with("hsa1_") && h.len() == 37));
        assert_eq!(kept.as_map().len(), 2);
        // Same values, same associations: unchanged.
        assert_eq!(
            decide_one(&with, Some(assoc(&["20", "100"])), Some(&snapshot)),
            None
        );
        // Only an association changed: delivered, with the new associations.
        let (changed, _) =
            decide_one(&with, Some(assoc(&["20"])), Some(&snapshot)).expect("changed");
        assert_eq!(changed.associations, Some(assoc(&["20"])));
        // A record whose associations were not read (none answered): every configured type,
        // empty, which differs from the stored ones.
        let (none, _) = decide_one(&with, None, Some(&snapshot)).expect("now none");
        assert_eq!(none.associations, Some(assoc(&[])));
        // A snapshot without the hash (stored by enrichment before associations were turned
        // on): delivered once with its associations.
        let plain = r#"{"email":"a@example.com"}"#;
        assert!(decide_one(&with, Some(assoc(&["20"])), Some(plain)).is_some());
        // Associations not configured: none read, none delivered, the hash is not compared
        // (a snapshot that has one is unchanged) and not written.
        assert_eq!(decide_one(&without, None, Some(&snapshot)), None);
        let (bare, written) = decide_one(&without, None, None).expect("new");
        assert_eq!(bare.associations, None);
        assert!(!written.contains(ASSOCIATIONS_KEY));
        assert!(!serde_json::to_string(&bare)
            .expect("json")
            .contains("associations"));
    }

    #[test]
    fn the_association_hash_is_not_a_field_and_enrichment_keeps_it() {
        let mapping = crate::mapping::Mapping::from_json(
            r#"{"objects":{"contacts":{"fields":[{"hubspot":"email"}]}}}"#,
        )
        .expect("map");
        let map = mapping.object("contacts").expect("contacts");
        let old = Record::from_snapshot(&format!(
            r#"{{"email":"a@example.com","{ASSOCIATIONS_KEY}":"hsa1_x"}}"#
        ))
        .expect("snapshot");
        let new = Record::from_snapshot(r#"{"email":"a@example.com"}"#).expect("record");
        assert_eq!(diff(map, &old, &new), Diff::Unchanged);
        // Enrichment's write keeps the sync's hash; a record that has its own keeps that.
        let kept =
            Record::from_snapshot(&crate::records::carry_over(Some(&old), &new)).expect("snapshot");
        assert_eq!(kept.get(ASSOCIATIONS_KEY), old.get(ASSOCIATIONS_KEY));
        assert_eq!(crate::records::carry_over(None, &new), new.to_snapshot());
        assert_eq!(
            crate::records::carry_over(Some(&old), &old),
            old.to_snapshot()
        );
    }

    #[test]
    fn merge_join() {
        assert_eq!(missing_in_window(&[1, 3, 5], [1, 2, 3, 4, 5, 6]), [2, 4, 6]);
        assert_eq!(missing_in_window(&[], [7, 8]), [7, 8]);
        assert_eq!(missing_in_window(&[1, 2], []), [0u64; 0]);
        assert_eq!(missing_in_window(&[2, 4], [1, 2, 3, 4]), [1, 3]);
    }
}
