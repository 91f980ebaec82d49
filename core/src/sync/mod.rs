//! Sync between HubSpot and the user's system; [`inbound`]: the user's writes into HubSpot.
pub mod inbound;
