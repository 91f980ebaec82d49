//! Inbound sync: the user's system writes records into HubSpot (`POST /sync/{objectType}`).
//!
//! Everything here is a decision; the host (the Worker and its Durable Object) does the I/O.
//! The path of one request, and who does what:
//!
//! 1. **Verify** the Standard Webhooks signature with `INBOUND_SECRET`
//!    ([`verify_request`]: [`crate::outbound::WebhookSecret::verify`] over `webhook-id`,
//!    `webhook-timestamp`, `webhook-signature` and the raw body; bad signature: 401). The `webhook-id` is signed, so
//!    the idempotency key below cannot be forged.
//! 2. **Parse** the body with [`parse_request`]: every record in the user's field names (the
//!    field map's destination names) with its `externalId`, mapped back to HubSpot's property
//!    formats (docs/hubspot.md §7: a date becomes midnight-UTC milliseconds, and so on). One
//!    malformed record rejects the whole request with the record's index and a stable code
//!    ([`InboundError`]; the Worker answers 400 and stores nothing).
//! 3. **Idempotency**: the request's key is its `webhook-id` header (Standard Webhooks: a
//!    sender's retries of one message carry the same id). [`receipt_id`] derives the receipt id
//!    from it; a request whose receipt exists is answered 202 with that receipt and not
//!    processed again. A different `webhook-id` with the same content is processed, and writes
//!    nothing: every record diffs as unchanged against the state the first request committed
//!    (records that failed are tried again: that is how a dead letter is re-driven). A sender
//!    that reuses a `webhook-id` for another body gets the first receipt and its new body is
//!    ignored, as Standard Webhooks ids name one message.
//! 4. **Coalesce** ([`Coalescer`], kept in the Durable Object): updates to one record (one
//!    normalised `idProperty` value) within [`InboundConfig::coalesce_window_ms`] merge into
//!    one write, field by field, the newer change winning. [`Coalescer::take_due`] says what to
//!    flush at `now`; [`Coalescer::next_due_ms`] when to set the next alarm.
//! 5. **Plan** ([`plan`]): each flushed update is diffed against the record's stored state
//!    ([`Known`]: the one record store of [`crate::records`], looked up through the id map
//!    `idProperty value → HubSpot id`). Only changed properties are written; a record with no
//!    change causes no call; `from_hubspot` fields are never written; a `both` field that
//!    HubSpot changed too is a [`Conflict`] resolved by the [`ConflictRule`], the losing value
//!    reported. The rest is cut into [`InboundBatch`]es of at most [`InboundConfig::batch_size`]
//!    (≤ 100, HubSpot's batch limit) upserts by `idProperty`, each input with a unique
//!    `objectWriteTraceId`.
//! 6. **Write**: the host raises the chunk's [`crate::records::WriteFence`] in the record store
//!    (so enrichment defers HubSpot's webhooks for these writes until they are committed),
//!    then sends [`InboundBatch::request`] through the HubSpot gate and feeds the answer
//!    to [`InboundBatch::complete`]: per input a [`Written`] (commit it with [`Written::commit`], keep
//!    [`Written::echo`] so HubSpot's webhook for our write is not forwarded back, and map the
//!    idProperty value to [`Written::hubspot_id`]) or a [`Failed`] (a dead letter with HubSpot's
//!    code, re-drivable by re-submitting the record); or, for a whole-batch failure that may
//!    pass later (429, 5xx, 423), [`BatchResult::Retry`] with nothing decided.
//! 7. **Receipt** ([`Receipt`]): per request, what became of each record (written, unchanged,
//!    failed with code, and conflicts), a serialisable value stored in the Durable Object and
//!    served by `GET /sync/receipts/{id}`.
//!
//! # Limits
//!
//! - A request carries at most [`InboundConfig::max_records`] records (default 1,000): parsed
//!   whole, its records must stay far inside a Worker's 128 MB.
//! - After [`Coalescer::take_due`], fewer than `batch_size` updates stay pending (full batches
//!   never wait), so the pending state the Durable Object keeps is small whatever the load.
//! - A batch is at most 100 inputs: "Batch requests to CRM object endpoints are limited to 100
//!   records per request" (<https://developers.hubspot.com/docs/developer-tooling/platform/usage-guidelines>).
//! - `email` as `idProperty` (the default for contacts): HubSpot does not support partial
//!   upserts by email (<https://developers.hubspot.com/docs/api/crm/contacts>); use a custom
//!   unique property where that matters.

mod batch;
mod coalesce;
mod commit;
mod flush;
mod parse;
mod receipt;
mod settings;
mod verify;

#[cfg(test)]
mod tests;

// Two attributes, not `all(test, …)`: clippy's test-code allowances look for `cfg(test)`.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod proptests;

use thiserror::Error;

use crate::api::MAX_BATCH_INPUTS;
use crate::mapping::{FieldDirection, ObjectMap};

pub use batch::{
    plan, BatchResult, Conflict, Failed, InboundBatch, InboundPlan, Known, PlannedInput, Side,
    Unchanged, Written,
};
pub use coalesce::{Coalescer, PendingUpdate, SourceRef};
pub use commit::{InboundCommit, InboundCommitAsk};
pub use flush::{InboundFlush, InboundFlushAsk, InboundFlushCounts};
pub use parse::{parse_request, InboundError, InboundErrorKind, InboundRecord};
pub use receipt::{receipt_id, Receipt, RecordOutcome, RecordStatus};
pub use settings::{InboundSettings, MAX_RECORDS, MAX_WINDOW_MS};
pub use verify::{verify_request, TOLERANCE_SECS};

/// Who wins when both sides changed a `both` field since the last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConflictRule {
    /// The newer change by timestamp wins; HubSpot on a tie (the default).
    #[default]
    NewerWins,
    /// HubSpot's value always wins.
    #[serde(rename = "hubspot_wins")]
    HubSpotWins,
    /// The user's value always wins.
    UserWins,
}

/// The inbound settings of one object type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundConfig {
    /// The unique HubSpot property the upserts go by (`idProperty`); it must be mapped, and
    /// every record must give it a value.
    pub id_property: String,
    /// Inputs per batch upsert, 1–100 (HubSpot's batch limit).
    pub batch_size: usize,
    /// Updates to one record within this window become one write.
    pub coalesce_window_ms: u64,
    /// How conflicts on `both` fields are resolved.
    pub conflict_rule: ConflictRule,
    /// Records per request at most.
    pub max_records: usize,
}

/// The inbound configuration does not fit the field map.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("inbound sync configuration is invalid: {detail}")]
pub struct InboundConfigError {
    detail: String,
}

impl InboundConfigError {
    /// Stable code: `inbound_config_invalid`.
    pub fn code(&self) -> &'static str {
        "inbound_config_invalid"
    }
}

impl InboundConfig {
    /// Default coalescing window: 2 s, long enough to merge a burst of saves of one record,
    /// short enough that a write is not noticeably late.
    pub const DEFAULT_WINDOW_MS: u64 = 2_000;
    /// Default records per request.
    pub const DEFAULT_MAX_RECORDS: usize = 1_000;

    /// The defaults for an object type: `email` for contacts, otherwise `id_property` must be
    /// given (`None` when neither: there is no unique property every type has).
    pub fn for_object_type(object_type: &str, id_property: Option<&str>) -> Option<Self> {
        let contacts = crate::object_type::ObjectType::parse(object_type).type_id() == "0-1";
        let id_property = match (id_property, contacts) {
            (Some(p), _) => p.to_owned(),
            (None, true) => "email".to_owned(),
            (None, false) => return None,
        };
        Some(Self {
            id_property,
            batch_size: MAX_BATCH_INPUTS,
            coalesce_window_ms: Self::DEFAULT_WINDOW_MS,
            conflict_rule: ConflictRule::default(),
            max_records: Self::DEFAULT_MAX_RECORDS,
        })
    }

    /// Checks the settings against the field map: the `idProperty` must be mapped and writable,
    /// the batch size 1–100, the record limit at least 1.
    ///
    /// # Errors
    /// [`InboundConfigError`] naming the problem.
    pub fn check(&self, map: &ObjectMap) -> Result<(), InboundConfigError> {
        let invalid = |detail: String| Err(InboundConfigError { detail });
        if !(1..=MAX_BATCH_INPUTS).contains(&self.batch_size) {
            return invalid(format!("batch size must be 1 to {MAX_BATCH_INPUTS}"));
        }
        if self.max_records == 0 {
            return invalid("max records must be at least 1".to_owned());
        }
        match id_field(map, &self.id_property) {
            None => invalid(format!(
                "idProperty `{}` is not a mapped property of {}",
                self.id_property,
                map.object_type()
            )),
            Some(field) if map.field_direction(field) == Some(FieldDirection::FromHubSpot) => {
                invalid(format!(
                    "idProperty `{}` is mapped from_hubspot: it is never written",
                    self.id_property
                ))
            }
            Some(_) => Ok(()),
        }
    }
}

/// The destination field that carries `id_property`.
fn id_field<'m>(map: &'m ObjectMap, id_property: &str) -> Option<&'m str> {
    map.field_of_property(id_property)
}
