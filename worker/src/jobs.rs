//! The consumer's unit of work: a job is one forward (or none) and the queue messages it
//! settles, built by the thin path, by enrichment ([`crate::enrich`]) or for a rule's effect
//! ([`crate::rules`]), and run by the consumer ([`crate::consumer`]).

use hubspot_edge_core::delivery::Attempt;
use hubspot_edge_core::records::Commit;
use worker::RawMessage;

use crate::queue::{EventMessage, OwnedEvent};

/// One forward (or none) and the queue messages it settles: one message for a thin event,
/// every message about one object for an enriched one.
pub(crate) struct Job {
    pub(crate) members: Vec<Pending>,
    pub(crate) action: JobAction,
    /// Record-store writes once the forward succeeded (at once when there is nothing to
    /// forward), compare-and-set on the version the decision read.
    pub(crate) after: Vec<StoreWrite>,
    /// The rules' effects, queued once the forward succeeded: `(dedupe key, effect)`.
    pub(crate) effects: Vec<(String, hubspot_edge_core::rules::Queued)>,
}

/// A queue message and its decoded envelope.
pub(crate) type Pending = (RawMessage, EventMessage<OwnedEvent>);

pub(crate) enum JobAction {
    /// Forward the one member's event as the thin event.
    Thin,
    /// Forward this body with this `webhook-id`.
    Send { id: String, body: String },
    /// Nothing to forward: acknowledge (an unmapped change, an unchanged record, our echo).
    Nothing,
    /// A write of ours to the object is in flight: back on the queue as the same attempt.
    Defer,
    /// The events cannot be forwarded: dead-letter them with this stable reason.
    Fail { reason: String, detail: String },
    /// A step before the forward failed (the HubSpot read, the record store): retry like a
    /// failed forward, and dead-letter with `code` once the attempts are spent.
    Retry {
        attempt: Attempt,
        code: String,
        detail: String,
    },
    /// Carry out a rule's effect ([`crate::rules::run`]).
    Effect(hubspot_edge_core::rules::Queued),
}

/// A record-store write that follows a successful forward.
pub(crate) struct StoreWrite {
    pub(crate) portal: hubspot_edge_core::id::PortalId,
    pub(crate) object_type: String,
    pub(crate) commit: Commit,
}

impl Job {
    pub(crate) fn thin(pending: Pending) -> Self {
        Self::of(pending, JobAction::Thin)
    }

    /// A job for one message, with no store writes and no effects.
    pub(crate) fn of(pending: Pending, action: JobAction) -> Self {
        Self {
            members: vec![pending],
            action,
            after: Vec::new(),
            effects: Vec::new(),
        }
    }
}
