//! The outbound sync, HubSpot → the user's system: backfill, incremental runs, deletes, merges
//! and the reconcile, as pure poll-style steps. The design, with the arithmetic of the read path
//! and HubSpot's documentation, is `docs/sync.md`; this is its code.
//!
//! The host (the Worker) does the I/O: it keeps a [`Run`] per (portal, object type) in a
//! Durable Object, queues [`UnitMessage`]s, and for each unit message, in a consumer:
//!
//! 1. asks the [`Unit`] for its next [`Read`] (a search, a list page or a batch read), performs
//!    it through the rate gate, and feeds the page to a clone of the unit ([`Unit::on_page`]):
//!    a [`Step`] with the records to decide;
//!    With associations configured ([`SyncConfig::associations`]), reads them for the step's
//!    records ([`AssocPlan`], associations v4 batch reads through the rate gate) and puts them
//!    into the step;
//! 2. reads the stored state of [`lookups`] from the record store (the one webhook enrichment
//!    writes, [`crate::records`]) and [`decide`]s: unchanged records are dropped, the others
//!    become [`PendingChange`] records with their store writes;
//! 3. groups them into [`batches`], delivers each (Standard Webhooks, `webhook-id` = the batch
//!    id), and after a 2xx commits its writes; a refused commit ([`Batch::conflicts`]) is
//!    decided again against the newer state ([`Step::only`]);
//! 4. when the step has a window (range units, full runs), asks the store for its live ids in
//!    it; [`missing_in_window`] gives the reconcile's candidates, carried by the report
//!    ([`UnitReport::add_missing`]);
//! 5. keeps the advanced unit, and after [`SyncConfig::pages_per_unit`] pages (or when done)
//!    reports it ([`UnitReport`]); the run answers with the messages to queue next.
//!
//! Every step is deterministic: the same reads give the same deliveries with the same ids, so
//! a unit re-run after an interruption delivers nothing new for what was committed and the same
//! `webhook-id` for what was delivered but not committed.
//!
//! The inbound direction, the user's system → HubSpot, is [`inbound`].

mod assoc;
mod batch;
mod config;
mod coordinate;
mod detect;
pub mod inbound;
mod letter;
mod run;
#[cfg(test)]
mod tests;
mod unit;
mod work;

pub use assoc::{AssocPlan, AssocRead, Associations, MAX_ASSOCIATION_ROUNDS};
pub use batch::{batch_id, batches, Batch, SyncBatchBody, SCHEMA_SYNC_BATCH_V1, TYPE_SYNC_BATCH};
pub use config::{
    backfill_bound_ms, delivery_requests, list_share_for, list_share_percent, modified_property,
    records_per_second, SyncConfig, DEFAULT_BATCH_MAX_BYTES, DEFAULT_BATCH_RECORDS,
    MAX_LIST_PROPERTIES_CHARS, MAX_PAGES_PER_UNIT_FACTOR, MERGED_IDS_PROPERTY, SEARCH_PACE_PERCENT,
};
pub use coordinate::{Coordinator, Launch, Rechecked};
pub use detect::{
    decide, lookups, missing_in_window, Decided, DeleteReason, Op, PendingChange, Rejection,
    SyncRecord,
};
pub use letter::{SyncLetter, SyncSource};
pub use run::{
    Counts, Mode, Phase, Run, RunReport, UnitMessage, UnitReport, ID_END, MAX_REPORTED_MISSING,
};
pub use unit::{
    ArchivedUnit, IdWindow, ModifiedUnit, Path, RangeUnit, Read, Step, Unit, VerifyUnit,
};
pub use work::{UnitAsk, UnitWork};

use crate::search::SearchPlanError;

/// Why a sync step failed. Per-record problems are not errors: they are [`Rejection`]s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// A page could not be used by the search walk (HubSpot's answer is not one to the query).
    #[error("search walk: {0}")]
    Search(#[from] SearchPlanError),
    /// A page held a record whose id is not a number (not an answer to a CRM read).
    #[error("a record had a non-numeric id")]
    NonNumericId {
        /// The id as sent.
        id: String,
    },
    /// A unit message would not fit a queue message (128 KB).
    #[error("unit message of {bytes} bytes exceeds the queue message limit")]
    MessageTooLarge {
        /// Its size.
        bytes: usize,
    },
    /// A state the code does not produce (our bug).
    #[error("internal: {0}")]
    Internal(&'static str),
}

impl SyncError {
    /// Stable code: the search walk's code (`missing_sort_value`, …), `non_numeric_id`,
    /// `sync_message_too_large` or `sync_internal`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Search(e) => e.code(),
            Self::NonNumericId { .. } => "non_numeric_id",
            Self::MessageTooLarge { .. } => "sync_message_too_large",
            Self::Internal(_) => "sync_internal",
        }
    }
}
