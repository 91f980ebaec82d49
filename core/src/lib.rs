//! The no-I/O core of hubspot-edge.
//!
//! Everything here is deterministic: no network, no clock, no randomness. Callers pass in the
//! current time, the raw bytes and the headers; the core returns values that say what to do
//! next. The same code runs natively, in `wasm32` inside a Cloudflare Worker, and in any other
//! runtime that embeds it.
//!
//! - [`signature`]: HubSpot request signatures v1, v2 and v3 (verify and sign).
//! - [`event`]: the webhook event model, parsed in one pass without copying.
//! - [`filter`]: declarative include/exclude rules and the own-changes loop guard.
//! - [`dedupe`]: stable event identities that survive HubSpot's retries.
//! - [`id`]: typed account and record ids ([`id::PortalId`], [`id::ObjectId`]).
//! - [`ingress`]: the webhook endpoint's triage of a verified batch (what to queue, by
//!   reference or not, what to dead-letter, the answer), one for every host.
//! - [`object_type`]: HubSpot's object types under every spelling (`contact`, `contacts`,
//!   `CONTACT`, `0-1`), one table.
//! - [`outbound`]: the forwarded event (`hubspot-edge.event.v1`) and Standard Webhooks signing.
//! - [`delivery`]: what to do after a forwarding attempt (retry, give up), how many forwards
//!   run at once and when the rest of a batch goes back to the queue.
//! - [`config`]: the Worker's configuration keys parsed from any key lookup, with documented
//!   ranges and errors that name the key, and the whole deployment's check (every problem by
//!   key, code and part).
//! - [`dead_letter`]: what the dead-letter store does when it fails, how long letters are kept,
//!   and resumable, bounded re-drive planning.
//! - [`queue`]: the queue message and dead-letter formats, one serialisation for every host,
//!   and the forwarding consumer's decisions for one batch ([`queue::consume::Consume`]).
//! - [`records`]: the record store's compare-and-set rules and the ids of enriched changes.
//! - [`auth`]: constant-time bearer-token checks.
//! - [`time`]: calendar arithmetic on instants the caller passes in.
//! - [`trace`]: W3C Trace Context `traceparent` (parse, format, child spans) that follows an
//!   event from the webhook request to the destination and HubSpot.
//! - [`mapping`]: declarative field maps between HubSpot properties and destination records,
//!   normalising values both ways.
//! - [`diff`]: type-aware changes between two mapped records, and the echo guard for our own
//!   writes.
//! - [`enrich`]: what to read, forward and store for the webhook events about one object
//!   (grouping, ordering, create/change/delete/merge, echoes, objects gone in between).
//! - [`rules`]: event-driven rules (`RULES`): conditions on mapped old/new values, effects
//!   (forward to a named destination, update HubSpot, complete a blocked action, emit) from a
//!   pure `evaluate`, loops rejected at configuration time; named destinations.
//! - [`api`], [`ratelimit`], [`search`]: the HubSpot API client's requests, rate governor and
//!   search planner, the call loop (retries, refresh once on 401) and the OAuth token cache.
//! - [`actions`]: custom workflow actions (execution requests, answers, blocked executions,
//!   batched completions, definitions).
//! - [`metrics`]: counters, gauges and latency histograms as mergeable values, their minute and
//!   hour timeline, the OpenMetrics exposition, and alert rules with hysteresis.
//! - [`sync`]: the outbound sync (backfill, incremental runs, deletes, merges, reconcile) as
//!   work units and delivery batches (`docs/sync.md`), and the inbound sync
//!   ([`sync::inbound`]: the user's writes into HubSpot).
//!
//! # The public API
//!
//! Each module above is one domain, and its public items are the contract: the files inside a
//! module are private and the module re-exports what callers use, so every path is
//! `hubspot_edge_core::<domain>::<Item>` (the way `http::header` and `rustls::server` are
//! laid out). No two public types share a name, so a glob import of two domains never clashes.
//! Error enums whose codes are a contract are `#[non_exhaustive]`; their codes are stable.
//!
//! # Verify a HubSpot webhook
//!
//! The [`prelude`] holds what an embedder needs first. Verify the request as it arrived (the
//! raw body bytes, the URL HubSpot called, its headers), then read the events:
//!
//! ```
//! use hubspot_edge_core::prelude::*;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let (secret, url, now_ms) = ("my-client-secret", "https://hooks.example.com/hubspot", 1_700_000_000_000);
//! # let body = br#"[{"eventId":1,"subscriptionId":2,"portalId":3,"appId":4,"occurredAt":1700000000000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":5}]"#;
//! # let signature = sign_v3(&ClientSecret::new(secret), "POST", url, body, "1700000000000");
//! # let mut headers = http::HeaderMap::new();
//! # headers.insert("x-hubspot-signature-v3", signature.parse()?);
//! # headers.insert("x-hubspot-request-timestamp", "1700000000000".parse()?);
//! let verifier = Verifier::new(ClientSecret::new(secret));
//! let request = SignedRequest { method: "POST", uri: url, headers: &headers, body };
//! let version = verifier.verify(&request, now_ms)?; // constant time, 5-minute window
//! assert_eq!(version, SignatureVersion::V3);
//! for element in parse_batch(body)? {
//!     let event = element.event?; // or dead-letter `element.raw` with the error's code
//!     let key = DedupeKey::of(&event); // the same across HubSpot's retries
//!     println!("{} {} {}", key.as_str(), event.subscription_type(), event.portal_id());
//! }
//! # Ok(())
//! # }
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod actions;
pub mod api;
pub mod auth;
pub mod config;
pub mod dead_letter;
pub mod dedupe;
pub mod delivery;
pub mod diff;
pub mod enrich;
pub mod event;
pub mod filter;
pub mod id;
pub mod ingress;
pub mod mapping;
pub mod metrics;
pub mod object_type;
pub mod outbound;
pub mod queue;
pub mod ratelimit;
pub mod records;
pub mod rules;
pub mod search;
pub mod signature;
pub mod sync;
pub mod time;
pub mod trace;
mod wire;

/// The types most embedders start with: signature verification, the event model, the filter,
/// dedupe keys, field maps and diffs, Standard Webhooks. Everything else is in its module.
pub mod prelude {
    pub use crate::dedupe::DedupeKey;
    pub use crate::diff::{diff, Diff};
    pub use crate::event::{parse_batch, BatchError, Element, Event, EventError};
    pub use crate::filter::{Filter, Verdict};
    pub use crate::id::{ObjectId, PortalId};
    pub use crate::mapping::{Mapping, ObjectMap, Record};
    pub use crate::outbound::WebhookSecret;
    pub use crate::signature::{
        sign_v3, ClientSecret, LegacySignatures, SignatureError, SignatureVersion, SignedRequest,
        Verifier,
    };
}
