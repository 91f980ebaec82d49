//! Coalescing: several updates to one record within a window become one write.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::InboundRecord;
use crate::mapping::Record;

/// Where one contribution to a pending update came from: for receipts and dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceRef {
    /// The request's receipt id ([`super::receipt_id`]).
    pub receipt: String,
    /// The record's index in that request.
    pub index: usize,
    /// The user's id of the record.
    pub external_id: String,
}

/// The merged, not yet written update of one record (one normalised `idProperty` value).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PendingUpdate {
    /// The normalised `idProperty` value.
    pub key: String,
    /// The fields to write, merged from every contribution.
    pub fields: Record,
    /// Per field, when the user's system changed it (Unix ms): the record's `updatedAt`, or
    /// when the request was received if it gave none.
    pub changed_at: BTreeMap<String, i64>,
    /// Every request record merged in, oldest first.
    pub sources: Vec<SourceRef>,
    /// When the first contribution arrived (Unix ms): the window runs from here.
    pub first_at_ms: u64,
}

/// The pending updates of one object type, kept by the host between requests (the Worker: in
/// the sync Durable Object, serialised with serde). Keyed by normalised `idProperty` value, so
/// two inputs resolving to the same record are never in one batch (HubSpot rejects such a
/// batch: the segmentio/action-destinations#3969 failure).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Coalescer {
    pending: BTreeMap<String, PendingUpdate>,
}

impl Coalescer {
    /// Nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many records have updates pending.
    pub fn len(&self) -> usize {
        self.pending.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// Adds the records of one accepted request (receipt `receipt`), received at `now_ms`.
    ///
    /// A field given again replaces the pending value unless the pending one changed later
    /// (by `updatedAt`): updates arriving out of order do not undo a newer one. On equal times
    /// the later arrival wins.
    pub fn add(&mut self, receipt: &str, records: Vec<InboundRecord>, now_ms: u64) {
        let received = i64::try_from(now_ms).unwrap_or(i64::MAX);
        for record in records {
            let at = record.updated_at_ms.unwrap_or(received);
            let entry = self
                .pending
                .entry(record.key.clone())
                .or_insert_with(|| PendingUpdate {
                    key: record.key.clone(),
                    fields: Record::new(),
                    changed_at: BTreeMap::new(),
                    sources: Vec::new(),
                    first_at_ms: now_ms,
                });
            let fields: serde_json::Map<String, Value> = record.fields.into();
            for (field, value) in fields {
                let newer = entry.changed_at.get(&field).is_none_or(|&old| at >= old);
                if newer {
                    entry.changed_at.insert(field.clone(), at);
                    entry.fields.insert(field, value);
                }
            }
            entry.sources.push(SourceRef {
                receipt: receipt.to_owned(),
                index: record.index,
                external_id: record.external_id,
            });
        }
    }

    /// When the earliest pending update is due (Unix ms): the time for the host's next alarm.
    pub fn next_due_ms(&self, window_ms: u64) -> Option<u64> {
        self.pending
            .values()
            .map(|p| p.first_at_ms.saturating_add(window_ms))
            .min()
    }

    /// The offset (ms from `now_ms`) to set the host's alarm at for `at_ms`, or `None` to keep
    /// the alarm set at `current_ms` (Unix ms, if any): it is still to come and no later than
    /// `at_ms`. An alarm in the past (or now) is replaced.
    pub fn alarm_offset(current_ms: Option<i64>, at_ms: u64, now_ms: u64) -> Option<i64> {
        let current = current_ms.map(|c| u64::try_from(c).unwrap_or(0));
        if current.is_some_and(|c| c <= at_ms && c > now_ms) {
            return None;
        }
        Some(i64::try_from(at_ms.saturating_sub(now_ms)).unwrap_or(0))
    }

    /// Takes the updates to write now, oldest first: those whose window (`window_ms` after
    /// their first contribution) has passed; and, when that leaves at least `batch_size`
    /// pending, the oldest full batches of the rest too (a full batch gains nothing by
    /// waiting, and a steady stream must not grow the pending set without bound).
    pub fn take_due(
        &mut self,
        now_ms: u64,
        window_ms: u64,
        batch_size: usize,
    ) -> Vec<PendingUpdate> {
        let batch_size = batch_size.max(1);
        let mut order: Vec<(u64, String)> = self
            .pending
            .values()
            .map(|p| (p.first_at_ms, p.key.clone()))
            .collect();
        order.sort();
        let due = order
            .iter()
            .take_while(|(first, _)| first.saturating_add(window_ms) <= now_ms)
            .count();
        let rest = order.len() - due;
        let take = due + rest / batch_size * batch_size;
        order
            .into_iter()
            .take(take)
            .filter_map(|(_, key)| self.pending.remove(&key))
            .collect()
    }

    /// Puts updates back (a whole batch to retry later), merged under any newer pending
    /// update of the same record: the newer fields win, the sources are kept.
    pub fn put_back(&mut self, updates: Vec<PendingUpdate>) {
        for old in updates {
            match self.pending.remove(&old.key) {
                None => {
                    self.pending.insert(old.key.clone(), old);
                }
                Some(newer) => {
                    let mut merged = old;
                    let fields: serde_json::Map<String, Value> = newer.fields.into();
                    for (field, value) in fields {
                        let at = newer.changed_at.get(&field).copied().unwrap_or(i64::MAX);
                        if merged.changed_at.get(&field).is_none_or(|&o| at >= o) {
                            merged.changed_at.insert(field.clone(), at);
                            merged.fields.insert(field, value);
                        }
                    }
                    merged.sources.extend(newer.sources);
                    self.pending.insert(merged.key.clone(), merged);
                }
            }
        }
    }
}
