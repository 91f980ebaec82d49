//! Receipts: what became of each record of an inbound request.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{BatchResult, Conflict, InboundPlan, InboundRecord, SourceRef};
use crate::id::PortalId;

/// The receipt id of an inbound request: `hsr1_` and 40 hex digits of SHA-256 over the portal,
/// the object type (as in the route) and the request's `webhook-id`.
///
/// The `webhook-id` is the idempotency key: Standard Webhooks senders repeat it on every retry
/// of one message, so a retry finds the receipt of the first attempt and is not processed again.
pub fn receipt_id(portal: PortalId, object_type: &str, webhook_id: &str) -> String {
    let mut hash = Sha256::new();
    for part in [portal.to_string().as_str(), object_type, webhook_id] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut id = String::with_capacity(45);
    id.push_str("hsr1_");
    for byte in &digest[..20] {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// What became of one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RecordStatus {
    /// Accepted, not yet written (coalescing, or waiting for HubSpot's budget).
    Pending,
    /// Written to HubSpot.
    Written {
        /// The HubSpot id.
        #[serde(rename = "hubspotId")]
        hubspot_id: String,
        /// Whether the write created the record.
        created: bool,
        /// Properties HubSpot stored with another value ([`super::Written::rewritten`]).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rewritten: Vec<String>,
    },
    /// Nothing to write: HubSpot already had these values (or won every conflict).
    Unchanged,
    /// HubSpot refused it; a dead letter holds it.
    Failed {
        /// HubSpot's code (see [`super::Failed::code`]).
        code: String,
    },
}

/// One record's line in a [`Receipt`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Read through a flat struct (crate::wire): no buffering `ContentDeserializer`.
#[serde(rename_all = "camelCase", try_from = "crate::wire::RecordOutcomeWire")]
pub struct RecordOutcome {
    /// Its index in the request.
    pub index: usize,
    /// The user's id for it.
    pub external_id: String,
    /// What became of it.
    #[serde(flatten)]
    pub status: RecordStatus,
    /// Conflicts met, with the losing values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<Conflict>,
}

/// Per request: what became of each record. Stored by the host (the sync Durable Object) under
/// [`Self::id`] and served by `GET /sync/receipts/{id}`; serialises as
/// `{"id","objectType","receivedAt","records":[{"index","externalId","status",…}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    /// [`receipt_id`].
    pub id: String,
    /// The object type, as in the route.
    pub object_type: String,
    /// When the request was accepted (Unix ms).
    pub received_at: u64,
    /// One line per record, in request order.
    pub records: Vec<RecordOutcome>,
}

impl Receipt {
    /// How long a receipt is kept (7 days): the host drops older ones at the next accepted
    /// request ([`Receipt::expired_before`]).
    pub const TTL_MS: u64 = 7 * 24 * 3_600_000;

    /// Receipts received before this (Unix ms) have expired at `now_ms`.
    pub fn expired_before(now_ms: u64) -> u64 {
        now_ms.saturating_sub(Self::TTL_MS)
    }

    /// The receipt of a request just accepted: every record pending.
    pub fn new(id: &str, object_type: &str, received_at: u64, records: &[InboundRecord]) -> Self {
        Self {
            id: id.to_owned(),
            object_type: object_type.to_owned(),
            received_at,
            records: records
                .iter()
                .map(|r| RecordOutcome {
                    index: r.index,
                    external_id: r.external_id.clone(),
                    status: RecordStatus::Pending,
                    conflicts: Vec::new(),
                })
                .collect(),
        }
    }

    /// Whether every record has its final status.
    pub fn is_complete(&self) -> bool {
        self.records
            .iter()
            .all(|r| r.status != RecordStatus::Pending)
    }

    /// Records an outcome for the lines `sources` names in this receipt (others are ignored).
    pub fn record(&mut self, sources: &[SourceRef], status: &RecordStatus, conflicts: &[Conflict]) {
        for source in sources.iter().filter(|s| s.receipt == self.id) {
            if let Some(line) = self.records.get_mut(source.index) {
                line.status = status.clone();
                line.conflicts = conflicts.to_vec();
            }
        }
    }

    /// Records the unchanged records of a plan.
    pub fn record_plan(&mut self, plan: &InboundPlan) {
        for u in &plan.unchanged {
            self.record(&u.sources, &RecordStatus::Unchanged, &u.conflicts);
        }
    }

    /// Records the outcome of a batch (a retry decides nothing; a split, its failed inputs).
    pub fn record_batch(&mut self, result: &BatchResult) {
        if let BatchResult::Split { failed, .. } = result {
            for f in failed {
                let status = RecordStatus::Failed {
                    code: f.code.clone(),
                };
                self.record(&f.update.sources, &status, &[]);
            }
        }
        if let BatchResult::Done { written, failed } = result {
            for w in written {
                let status = RecordStatus::Written {
                    hubspot_id: w.hubspot_id.clone(),
                    created: w.created,
                    rewritten: w.rewritten.clone(),
                };
                self.record(&w.sources, &status, &w.conflicts);
            }
            for f in failed {
                let status = RecordStatus::Failed {
                    code: f.code.clone(),
                };
                self.record(&f.update.sources, &status, &[]);
            }
        }
    }
}
