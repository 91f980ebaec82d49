//! The no-I/O core of hubspot-edge.
//!
//! Everything here is deterministic: no network, no clock, no randomness. Callers pass in the
//! current time, the raw bytes and the headers; the core returns values that say what to do
//! next. The same code runs natively, in `wasm32` inside a Cloudflare Worker, and in any other
//! runtime that embeds it.
//!
//! - [`signature`]: HubSpot request signatures v1, v2 and v3 (verify and sign).

#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod api;
pub mod auth;
pub mod dedupe;
pub mod delivery;
pub mod event;
pub mod filter;
pub mod outbound;
pub mod ratelimit;
pub mod search;
pub mod signature;
pub mod time;
