//! The record store's rules: each object's last forwarded snapshot with a version, changed only
//! by compare-and-set, so that there is one truth per object however many consumers run.
//!
//! The store itself is the host's (the Worker keeps it in a Durable Object per portal and object
//! type, SQLite storage: strongly consistent, one writer at a time). This module decides what a
//! write does to the stored state, and the identity of what is forwarded:
//!
//! - Every object has a version: 0 before anything was stored, incremented by every committed
//!   write, deletes included. A deletion keeps a tombstone (the version, no snapshot, so no
//!   personal data) so that a later write that read the object before the deletion cannot
//!   resurrect it: its expected version no longer matches.
//! - A consumer reads the snapshot and its version, diffs, forwards, and then commits with
//!   [`Commit::expect`] = the version it read. If another consumer committed in between, the
//!   commit is refused ([`CommitOutcome::Conflict`]) and the first consumer's events are processed
//!   again against the newer snapshot: no change is lost, and none is diffed against a stale
//!   snapshot.
//! - What is forwarded is named by [`change_id`]: the object, the version it was diffed
//!   against and the content. A retry after a failed forward or a failed commit reads the same
//!   version, so the same change goes out under the same `webhook-id` however the queue
//!   regrouped its events, and a receiver that dedupes on `webhook-id` sees it once.

use sha2::{Digest, Sha256};

/// The snapshot field in which the outbound sync keeps a hash of the associations it delivered
/// with the record (`SYNC_ASSOCIATIONS`, [`crate::sync::Associations`]): not a mapped field.
/// [`crate::diff::diff`] ignores it, webhook enrichment carries it over when it writes a
/// snapshot ([`carry_over`]), and the sync compares it, so an association change alone makes
/// the record changed for the sync, and a change enrichment delivered is not delivered again.
pub const ASSOCIATIONS_KEY: &str = "$hubspot-edge.associations";

/// The snapshot field in which writers of changes read from HubSpot (webhook enrichment, the
/// outbound sync) record when HubSpot changed each field since the inbound sync last wrote it:
/// `{"field": unix ms}`. The inbound sync reads it as [`crate::sync::inbound::Known`]'s
/// `hubspot_changed_at` to find conflicts (both sides changed a `both` field since the last
/// sync) and clears a field's entry when it writes that field. Not a mapped field:
/// [`crate::diff::diff`] ignores it and [`carry_over`] keeps it.
pub const CHANGED_AT_KEY: &str = "$hubspot-edge.changedAt";

/// Whether a snapshot field is the integration's bookkeeping ([`ASSOCIATIONS_KEY`],
/// [`CHANGED_AT_KEY`]), not a mapped field: they all start with `$hubspot-edge.`.
pub fn is_reserved(field: &str) -> bool {
    field.starts_with("$hubspot-edge.")
}

/// `record`'s snapshot text, keeping the bookkeeping fields ([`is_reserved`]) of `old` (the
/// snapshot it replaces) that `record` does not set: a writer that does not read associations
/// (webhook enrichment) leaves the sync's knowledge of them as it was, and change times stay.
pub fn carry_over(old: Option<&crate::mapping::Record>, record: &crate::mapping::Record) -> String {
    let Some(old) = old else {
        return record.to_snapshot();
    };
    let mut r = record.clone();
    for (field, value) in old.as_map() {
        if is_reserved(field) && record.get(field).is_none() {
            r.insert(field.clone(), value.clone());
        }
    }
    r.to_snapshot()
}

/// Records in `record` (the snapshot about to replace `old`) that HubSpot changed `fields` at
/// `at_ms` ([`CHANGED_AT_KEY`]), keeping `old`'s times for the other fields. A field's time
/// only moves forward.
pub fn stamp_changes<'a>(
    old: Option<&crate::mapping::Record>,
    record: &mut crate::mapping::Record,
    fields: impl IntoIterator<Item = &'a str>,
    at_ms: i64,
) {
    let mut times = old.map(changed_at).unwrap_or_default();
    for field in fields {
        if is_reserved(field) {
            continue;
        }
        let t = times.entry(field.to_owned()).or_insert(at_ms);
        *t = (*t).max(at_ms);
    }
    set_changed_at(record, &times);
}

/// The change times a snapshot holds ([`CHANGED_AT_KEY`]); empty when none (or unreadable).
pub fn changed_at(snapshot: &crate::mapping::Record) -> std::collections::BTreeMap<String, i64> {
    snapshot
        .get(CHANGED_AT_KEY)
        .and_then(serde_json::Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_i64()?)))
                .collect()
        })
        .unwrap_or_default()
}

/// Forgets HubSpot's change times of `fields` (the inbound sync wrote them: the two sides agree
/// again).
pub fn clear_changed_at<'a>(
    record: &mut crate::mapping::Record,
    fields: impl IntoIterator<Item = &'a str>,
) {
    let mut times = changed_at(record);
    for field in fields {
        times.remove(field);
    }
    set_changed_at(record, &times);
}

fn set_changed_at(
    record: &mut crate::mapping::Record,
    times: &std::collections::BTreeMap<String, i64>,
) {
    if times.is_empty() {
        record.remove(CHANGED_AT_KEY);
    } else {
        let map: serde_json::Map<String, serde_json::Value> = times
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
            .collect();
        record.insert(CHANGED_AT_KEY, serde_json::Value::Object(map));
    }
}

/// An object's stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The version: 0 when nothing was ever stored.
    pub version: u64,
    /// The snapshot ([`crate::mapping::Record::to_snapshot`]); `None` for a tombstone or an
    /// object never stored.
    pub snapshot: Option<String>,
}

impl Stored {
    /// The state of an object the store has never seen.
    pub fn absent() -> Self {
        Self {
            version: 0,
            snapshot: None,
        }
    }
}

/// [`Stored::absent`].
impl Default for Stored {
    fn default() -> Self {
        Self::absent()
    }
}

/// Writes of ours to HubSpot in flight for one record store (one portal and object type):
/// raised by the inbound sync before it sends a batch upsert, lowered once it has committed
/// what HubSpot stored.
///
/// It closes a race. HubSpot notifies our own write like any other change, and its webhook can
/// be consumed between HubSpot's answer and our commit of the new snapshot: enrichment would
/// then diff it against the old snapshot and forward our write back to the system it came
/// from. While a fence [`covers`](Self::covers) an object, enrichment defers its events (back
/// on the queue as the same attempt, [`crate::queue::consume::JobAction::Defer`]); once the commit
/// is in, they diff as unchanged.
///
/// What it covers: the HubSpot ids being updated, and, when the writes create records (an
/// upsert whose `idProperty` value has no HubSpot id yet: HubSpot picks the id), every object
/// the store has no snapshot of. A record we "create" that HubSpot already had under that
/// `idProperty` value, and that enrichment had forwarded before, is covered by neither: its
/// echo can still be forwarded (README, inbound "Guarantees").
///
/// The host keeps a fence for at most [`Self::LEASE_MS`] after raising it, so a writer that
/// dies mid-flush delays events, never holds them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteFence {
    ids: std::collections::BTreeSet<String>,
    creates: bool,
}

impl WriteFence {
    /// How long a raised fence holds at most (ms). A batch upsert's call through the gate waits
    /// at most 15 s per retry (the Worker's transport cap), with a few retries, then the
    /// commit: a minute covers it. Past it the fence lapses, and an event is forwarded as if
    /// there were none.
    pub const LEASE_MS: u64 = 60_000;

    /// A fence over updates of `ids` (HubSpot ids), and over records without a snapshot when
    /// `creates`.
    pub fn new(ids: impl IntoIterator<Item = String>, creates: bool) -> Self {
        Self {
            ids: ids.into_iter().collect(),
            creates,
        }
    }

    /// The HubSpot ids being updated, in order (for the host to store).
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.ids.iter().map(String::as_str)
    }

    /// Whether the writes create records.
    pub fn creates(&self) -> bool {
        self.creates
    }

    /// Whether it covers nothing (nothing to raise).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty() && !self.creates
    }

    /// Whether events of object `id`, whose stored state is `stored`, wait for the write.
    pub fn covers(&self, id: &str, stored: &Stored) -> bool {
        self.ids.contains(id) || (self.creates && stored.snapshot.is_none())
    }
}

/// What a commit writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Store this snapshot.
    Put(String),
    /// Drop the snapshot, keeping a tombstone.
    Delete,
}

/// One write to one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The object id.
    pub id: String,
    /// The version the writer read; `None` writes whatever is stored (the merged-away ids of a
    /// merge, a privacy deletion: those must happen whatever another consumer did).
    pub expect: Option<u64>,
    /// What to write.
    pub write: Write,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written; the object is now at this version.
    Committed {
        /// The new version.
        version: u64,
    },
    /// Refused: the object is at this version, not the one expected.
    Conflict {
        /// The version stored.
        current: u64,
    },
}

/// Applies `commit` to `current`: the new state (when written) and the outcome.
pub fn apply(current: &Stored, commit: &Commit) -> (Option<Stored>, CommitOutcome) {
    if let Some(expected) = commit.expect {
        if expected != current.version {
            return (
                None,
                CommitOutcome::Conflict {
                    current: current.version,
                },
            );
        }
    }
    let version = current.version.saturating_add(1);
    let snapshot = match &commit.write {
        Write::Put(s) => Some(s.clone()),
        Write::Delete => None,
    };
    (
        Some(Stored { version, snapshot }),
        CommitOutcome::Committed { version },
    )
}

/// One commit of a [`CommitBatch`], applied: what to store (`None`: nothing changes, a
/// conflict) and the outcome to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The object id.
    pub id: String,
    /// The state to store for `id`, when the commit was written.
    pub write: Option<Stored>,
    /// What the commit did.
    pub outcome: CommitOutcome,
}

/// The commits of one request to the store, applied in order against the states read once for
/// the whole request (the host reads [`CommitBatch::reads`], not one read per commit): a
/// second commit of one id sees the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitBatch {
    commits: Vec<Commit>,
}

impl CommitBatch {
    /// The batch of `commits`, in the order they apply.
    pub fn new(commits: Vec<Commit>) -> Self {
        Self { commits }
    }

    /// The ids whose stored state the batch needs: each once, sorted.
    pub fn reads(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.commits.iter().map(|c| c.id.clone()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Applies the commits in order given the states `read` (ids not in it are absent): one
    /// [`Applied`] per commit, in order; the host stores each `write` and answers each outcome.
    pub fn apply(self, read: Vec<(String, Stored)>) -> Vec<Applied> {
        // Found by scan (at most a request's ids, ≤ 100 a batch): no map instance in the wasm.
        let mut states = read;
        let mut out = Vec::with_capacity(self.commits.len());
        for commit in self.commits {
            let at = states.iter().position(|(id, _)| *id == commit.id);
            let current = at.map_or_else(Stored::absent, |i| states[i].1.clone());
            let (write, outcome) = apply(&current, &commit);
            if let Some(next) = &write {
                match at {
                    Some(i) => states[i].1 = next.clone(),
                    None => states.push((commit.id.clone(), next.clone())),
                }
            }
            out.push(Applied {
                id: commit.id,
                write,
                outcome,
            });
        }
        out
    }
}

/// The store's live ids (a snapshot kept, not a tombstone) in `[from, to)`, ascending, at most
/// `max`, read page by page: [`LiveIdsWalk::ask`] the next query, perform it,
/// [`LiveIdsWalk::answer`] its ids, until `ask` is `None`; then [`LiveIdsWalk::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveIdsWalk {
    from: u64,
    to: u64,
    max: usize,
    ids: Vec<u64>,
}

impl LiveIdsWalk {
    /// Ids per query: a reconcile window is one page (at most 200 ids read), so one query
    /// usually answers it; more stored ids (records HubSpot no longer has) take more queries.
    pub const PER_QUERY: u32 = 1_000;

    /// The walk of `[from, to)`, at most `max` ids.
    pub fn new(from: u64, to: u64, max: usize) -> Self {
        Self {
            from,
            to,
            max,
            ids: Vec::new(),
        }
    }

    /// The next query, `(from, to, limit)`: live ids in `[from, to)`, ascending, at most
    /// `limit`; `None` when the walk is done.
    pub fn ask(&self) -> Option<(u64, u64, u32)> {
        (self.from < self.to && self.ids.len() < self.max).then_some((
            self.from,
            self.to,
            Self::PER_QUERY,
        ))
    }

    /// The ids the last query answered (ascending). A full page continues after its last id;
    /// a short one ends the walk.
    pub fn answer(&mut self, ids: Vec<u64>) {
        let full = ids.len() >= Self::PER_QUERY as usize;
        match ids.last() {
            Some(&last) if full => self.from = last.saturating_add(1),
            _ => self.from = self.to,
        }
        self.ids.extend(ids);
    }

    /// The ids found, at most `max`.
    pub fn finish(mut self) -> Vec<u64> {
        self.ids.truncate(self.max);
        self.ids
    }
}

/// The `webhook-id` of an enriched record event: `hsc1_` and 40 hex digits of SHA-256 over the
/// object (portal, object type, id), the version its diff was made against, the outbound type and
/// the forwarded content (`content`: the record, changes and merged ids as JSON).
///
/// The same change is the same id however its events were grouped, retried or re-delivered;
/// the same content diffed against another version (a value that went back and forth) is another
/// id, so it is not taken for a duplicate.
pub fn change_id(
    portal: crate::id::PortalId,
    object_type: &str,
    object_id: &str,
    base_version: u64,
    event_type: &str,
    content: &str,
) -> String {
    let mut hash = Sha256::new();
    for part in [
        portal.to_string().as_str(),
        object_type,
        object_id,
        base_version.to_string().as_str(),
        event_type,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hash.update(content.as_bytes());
    let digest = hash.finalize();
    let mut id = String::with_capacity(45);
    id.push_str("hsc1_");
    for byte in &digest[..20] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::id::PortalId;
    use crate::mapping::Record;

    #[test]
    fn a_write_fence_covers_its_updates_and_unstored_records_for_creations() {
        let kept = Stored {
            version: 2,
            snapshot: Some("{}".into()),
        };
        let tombstone = Stored {
            version: 3,
            snapshot: None,
        };
        let updates = WriteFence::new(["7".to_owned()], false);
        assert!(updates.covers("7", &kept) && updates.covers("7", &Stored::absent()));
        assert!(
            !updates.covers("8", &Stored::absent()),
            "no creation: an unknown id waits not"
        );
        let creates = WriteFence::new([], true);
        assert!(creates.covers("8", &Stored::absent()) && creates.covers("8", &tombstone));
        assert!(
            !creates.covers("8", &kept),
            "a stored record is not ours to create"
        );
        assert!(WriteFence::new([], false).is_empty() && !creates.is_empty());
        // What the host stores, and builds it again from.
        let both = WriteFence::new(["9".to_owned(), "7".to_owned()], true);
        assert_eq!(both.ids().collect::<Vec<_>>(), ["7", "9"]);
        assert!(both.creates() && !updates.creates());
        assert_eq!(
            WriteFence::new(both.ids().map(str::to_owned), both.creates()),
            both
        );
    }

    #[test]
    fn change_times_are_stamped_carried_and_cleared() {
        let rec = |s: &str| Record::from_snapshot(s).expect("snapshot");
        let old = rec(
            r#"{"a":1,"b":2,"$hubspot-edge.changedAt":{"a":10},"$hubspot-edge.associations":"h"}"#,
        );
        // A writer that does not know the bookkeeping keeps it.
        let next = rec(&carry_over(Some(&old), &rec(r#"{"a":1,"b":3}"#)));
        assert_eq!(next.get(ASSOCIATIONS_KEY), old.get(ASSOCIATIONS_KEY));
        assert_eq!(changed_at(&next), [("a".to_owned(), 10)].into());
        // b changed at 20; a keeps 10; a time only moves forward.
        let mut stamped = rec(r#"{"a":1,"b":3}"#);
        stamp_changes(Some(&old), &mut stamped, ["b", "a", ASSOCIATIONS_KEY], 5);
        assert_eq!(
            changed_at(&stamped),
            [("a".to_owned(), 10), ("b".to_owned(), 5)].into()
        );
        // Written by the inbound sync: forgotten; the key goes when empty.
        clear_changed_at(&mut stamped, ["a", "b"]);
        assert!(stamped.get(CHANGED_AT_KEY).is_none());
        assert!(changed_at(&rec(r#"{"$hubspot-edge.changedAt":"x"}"#)).is_empty());
        assert!(is_reserved(CHANGED_AT_KEY) && is_reserved(ASSOCIATIONS_KEY) && !is_reserved("a"));
    }

    fn put(id: &str, expect: Option<u64>, s: &str) -> Commit {
        Commit {
            id: id.into(),
            expect,
            write: Write::Put(s.into()),
        }
    }

    #[test]
    fn compare_and_set() {
        let absent = Stored::absent();
        let (state, outcome) = apply(&absent, &put("1", Some(0), "a"));
        assert_eq!(outcome, CommitOutcome::Committed { version: 1 });
        let state = state.unwrap();
        assert_eq!(state.snapshot.as_deref(), Some("a"));
        // A writer that read version 0 is refused once version 1 is stored.
        let (none, outcome) = apply(&state, &put("1", Some(0), "stale"));
        assert!(none.is_none());
        assert_eq!(outcome, CommitOutcome::Conflict { current: 1 });
        // Unconditional writes always land.
        let (deleted, outcome) = apply(
            &state,
            &Commit {
                id: "1".into(),
                expect: None,
                write: Write::Delete,
            },
        );
        assert_eq!(outcome, CommitOutcome::Committed { version: 2 });
        let deleted = deleted.unwrap();
        assert_eq!(deleted.snapshot, None);
        // The tombstone keeps the version: a writer from before the deletion cannot resurrect.
        assert_eq!(
            apply(&deleted, &put("1", Some(1), "b")).1,
            CommitOutcome::Conflict { current: 2 }
        );
        assert_eq!(
            apply(&deleted, &put("1", Some(2), "b")).1,
            CommitOutcome::Committed { version: 3 }
        );
    }

    /// Two consumers race on one object: both read version v and diff; one commits first.
    /// The loser's commit is refused, so the stored snapshot is never the older one, and the
    /// loser re-diffs against the winner's snapshot: every change that reached the store is
    /// in exactly one committed snapshot, and a forward repeated by the loser before it lost has
    /// the same id as the winner's when the content is the same.
    #[test]
    fn racing_writers_never_leave_a_stale_snapshot() {
        let v1 = Stored {
            version: 1,
            snapshot: Some("old".into()),
        };
        let a = put("9", Some(1), "new-a");
        let b = put("9", Some(1), "new-b");
        let (after_a, _) = apply(&v1, &a);
        let after_a = after_a.unwrap();
        assert_eq!(
            apply(&after_a, &b).1,
            CommitOutcome::Conflict { current: 2 }
        );
        assert_eq!(after_a.snapshot.as_deref(), Some("new-a"));
        let same = change_id(PortalId::new(1), "contact", "9", 1, "t", "{\"x\":1}");
        assert_eq!(
            same,
            change_id(PortalId::new(1), "contact", "9", 1, "t", "{\"x\":1}")
        );
    }

    #[test]
    fn change_ids() {
        let id = change_id(
            PortalId::new(62515),
            "contact",
            "5",
            3,
            "hubspot-edge.record.changed",
            "[1]",
        );
        assert!(id.starts_with("hsc1_") && id.len() == 45, "{id}");
        assert!(id[5..].bytes().all(|b| b.is_ascii_hexdigit()));
        // Every input matters.
        for other in [
            change_id(
                PortalId::new(62516),
                "contact",
                "5",
                3,
                "hubspot-edge.record.changed",
                "[1]",
            ),
            change_id(
                PortalId::new(62515),
                "company",
                "5",
                3,
                "hubspot-edge.record.changed",
                "[1]",
            ),
            change_id(
                PortalId::new(62515),
                "contact",
                "6",
                3,
                "hubspot-edge.record.changed",
                "[1]",
            ),
            change_id(
                PortalId::new(62515),
                "contact",
                "5",
                4,
                "hubspot-edge.record.changed",
                "[1]",
            ),
            change_id(
                PortalId::new(62515),
                "contact",
                "5",
                3,
                "hubspot-edge.record.created",
                "[1]",
            ),
            change_id(
                PortalId::new(62515),
                "contact",
                "5",
                3,
                "hubspot-edge.record.changed",
                "[2]",
            ),
        ] {
            assert_ne!(id, other);
        }
        // Parts cannot run into each other.
        assert_ne!(
            change_id(PortalId::new(1), "ab", "c", 0, "t", ""),
            change_id(PortalId::new(1), "a", "bc", 0, "t", "")
        );
    }

    #[test]
    fn a_batch_applies_in_order_against_one_read() {
        let put = |id: &str, expect, s: &str| Commit {
            id: id.into(),
            expect,
            write: Write::Put(s.into()),
        };
        let batch = CommitBatch::new(vec![
            put("b", Some(2), "b3"),
            put("a", Some(0), "a1"),
            // Sees the first commit of `a`: expecting 0 again conflicts at 1.
            put("a", Some(0), "a-stale"),
            put("a", Some(1), "a2"),
            Commit {
                id: "b".into(),
                expect: None,
                write: Write::Delete,
            },
            put("c", Some(7), "c"),
        ]);
        assert_eq!(batch.reads(), ["a", "b", "c"]);
        let stored = |version, s: Option<&str>| Stored {
            version,
            snapshot: s.map(Into::into),
        };
        let applied = batch.apply(vec![("b".into(), stored(2, Some("b2")))]);
        let got: Vec<(&str, Option<Stored>, CommitOutcome)> = applied
            .iter()
            .map(|a| (a.id.as_str(), a.write.clone(), a.outcome))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    "b",
                    Some(stored(3, Some("b3"))),
                    CommitOutcome::Committed { version: 3 }
                ),
                (
                    "a",
                    Some(stored(1, Some("a1"))),
                    CommitOutcome::Committed { version: 1 }
                ),
                ("a", None, CommitOutcome::Conflict { current: 1 }),
                (
                    "a",
                    Some(stored(2, Some("a2"))),
                    CommitOutcome::Committed { version: 2 }
                ),
                (
                    "b",
                    Some(stored(4, None)),
                    CommitOutcome::Committed { version: 4 }
                ),
                ("c", None, CommitOutcome::Conflict { current: 0 }),
            ]
        );
    }

    #[test]
    fn live_ids_are_walked_page_by_page_up_to_max() {
        let per = u64::from(LiveIdsWalk::PER_QUERY);
        // A full page continues after its last id; a short one ends the walk.
        let mut walk = LiveIdsWalk::new(10, 1_000_000, 5_000);
        assert_eq!(walk.ask(), Some((10, 1_000_000, LiveIdsWalk::PER_QUERY)));
        walk.answer((10..10 + per).collect());
        assert_eq!(
            walk.ask(),
            Some((10 + per, 1_000_000, LiveIdsWalk::PER_QUERY))
        );
        walk.answer(vec![5_000, 5_001]);
        assert_eq!(walk.ask(), None);
        assert_eq!(walk.finish().len(), per as usize + 2);
        // At most `max`, even from one page.
        let mut walk = LiveIdsWalk::new(0, u64::MAX, 3);
        walk.answer((0..per).collect());
        assert_eq!(walk.ask(), None);
        assert_eq!(walk.finish(), [0, 1, 2]);
        // An empty range asks nothing; an empty answer ends it.
        assert_eq!(LiveIdsWalk::new(5, 5, 10).ask(), None);
        let mut walk = LiveIdsWalk::new(0, 9, 10);
        walk.answer(Vec::new());
        assert_eq!(walk.ask(), None);
        assert!(walk.finish().is_empty());
    }
}
