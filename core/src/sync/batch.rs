//! Delivery batches: records grouped into signed requests to `FORWARD_URL`, each body rendered
//! through one serde type ([`SyncBatchBody`], schema `schema/sync-batch.v1.json`).
//!
//! A batch holds at most [`SyncConfig::batch_records`] records and its body at most
//! [`SyncConfig::batch_max_bytes`] bytes; a record that alone does not fit is rejected
//! (`record_too_large`, dead-letter it). The batch id (`webhook-id` and the body's `id`) is
//! `hsb1_` and 40 hex digits of SHA-256 over its records' change ids in order: the same records
//! compared against the same stored versions give the same id, so a retried batch, or a batch
//! rebuilt after an interruption, keeps its id. The body holds nothing that varies between
//! attempts (no time, no attempt number): a retry is byte-identical.

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::config::SyncConfig;
use super::detect::{PendingChange, Rejection, SyncRecord};
use crate::id::PortalId;
use crate::records::{Commit, CommitOutcome};

/// The `schema` of a sync delivery.
pub const SCHEMA_SYNC_BATCH_V1: &str = "hubspot-edge.sync-batch.v1";
/// The `type` of a sync delivery.
pub const TYPE_SYNC_BATCH: &str = "hubspot-edge.sync.batch";
/// Length of a batch id: `hsb1_` and 40 hex digits.
const ID_LEN: usize = 45;

/// The JSON body of one delivery (`schema/sync-batch.v1.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncBatchBody {
    /// [`SCHEMA_SYNC_BATCH_V1`].
    pub schema: String,
    /// The batch id, also the `webhook-id` header.
    pub id: String,
    /// [`TYPE_SYNC_BATCH`].
    #[serde(rename = "type")]
    pub kind: String,
    /// The HubSpot account.
    pub portal_id: PortalId,
    /// The object type as configured (`contacts`).
    pub object_type: String,
    /// The records, at least one.
    pub records: Vec<SyncRecord>,
}

/// One delivery: send [`Self::body`] signed with [`Self::id`] as `webhook-id`, then, on a 2xx,
/// commit [`Self::commits`] to the record store.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// `hsb1_…`.
    pub id: String,
    /// The JSON body.
    pub body: String,
    /// The record ids, in body order.
    pub ids: Vec<String>,
    /// The store writes once delivered.
    pub commits: Vec<Commit>,
}

impl Batch {
    /// The ids whose commit was refused (another writer, webhook enrichment or another unit,
    /// committed in between): read their stored state again and decide them again with
    /// [`super::Step::only`]. What the other writer stored may be exactly what was delivered
    /// (then nothing more goes out); otherwise the newer difference is delivered.
    pub fn conflicts(outcomes: &[(String, CommitOutcome)]) -> Vec<String> {
        outcomes
            .iter()
            .filter(|(_, o)| matches!(o, CommitOutcome::Conflict { .. }))
            .map(|(id, _)| id.clone())
            .collect()
    }
}

/// `hsb1_` and 40 hex digits of SHA-256 over the change ids, one per line.
pub fn batch_id<S: AsRef<str>>(change_ids: &[S]) -> String {
    let mut hash = Sha256::new();
    for id in change_ids {
        hash.update(id.as_ref().as_bytes());
        hash.update(b"\n");
    }
    let digest = hash.finalize();
    let mut id = String::with_capacity(ID_LEN);
    id.push_str("hsb1_");
    for byte in &digest[..20] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// Groups `pending` records, in order, into batches within the count and byte limits.
pub fn batches(config: &SyncConfig, pending: Vec<PendingChange>) -> (Vec<Batch>, Vec<Rejection>) {
    let envelope = |records: Vec<SyncRecord>, id: String| SyncBatchBody {
        schema: SCHEMA_SYNC_BATCH_V1.to_owned(),
        id,
        kind: TYPE_SYNC_BATCH.to_owned(),
        portal_id: config.portal_id,
        object_type: config.object_type.clone(),
        records,
    };
    // The body without records (`"records":[]`), with an id of the final length: each record
    // adds its JSON and, after the first, a comma.
    let empty =
        serde_json::to_string(&envelope(Vec::new(), "x".repeat(ID_LEN))).map_or(0, |s| s.len());
    let max_records = config.batch_records.max(1);
    let mut out = Vec::new();
    let mut rejected = Vec::new();
    let mut group: Vec<PendingChange> = Vec::new();
    let mut size = empty;
    let flush = |group: &mut Vec<PendingChange>, out: &mut Vec<Batch>| {
        if group.is_empty() {
            return;
        }
        let taken = std::mem::take(group);
        let change_ids: Vec<&str> = taken.iter().map(|p| p.record.change_id.as_str()).collect();
        let id = batch_id(&change_ids);
        let ids = taken.iter().map(|p| p.record.id.clone()).collect();
        let mut commits = Vec::new();
        let mut records = Vec::with_capacity(taken.len());
        for p in taken {
            commits.extend(p.commits);
            records.push(p.record);
        }
        let body = serde_json::to_string(&envelope(records, id.clone())).unwrap_or_default();
        out.push(Batch {
            id,
            body,
            ids,
            commits,
        });
    };
    for p in pending {
        let len = serde_json::to_string(&p.record).map_or(usize::MAX, |s| s.len());
        if empty.saturating_add(len) > config.batch_max_bytes {
            rejected.push(Rejection {
                id: p.record.id.clone(),
                code: "record_too_large".to_owned(),
            });
            continue;
        }
        let comma = usize::from(!group.is_empty());
        if group.len() >= max_records || size + comma + len > config.batch_max_bytes {
            flush(&mut group, &mut out);
            size = empty;
        }
        size += usize::from(!group.is_empty()) + len;
        group.push(p);
    }
    flush(&mut group, &mut out);
    (out, rejected)
}
