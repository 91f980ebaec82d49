//! The consumer's unit of work: a job is one forward (or none) and the queue messages it
//! settles, built by the thin path, by enrichment ([`crate::enrich`]) or for a rule's effect
//! ([`crate::rules`]), and run by the consumer ([`crate::consumer`]).

pub(crate) use hubspot_edge_core::queue::consume::{JobAction, StoreWrite};
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
