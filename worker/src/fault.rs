//! Test faults (`FAULT_INJECTION=true` only, armed by `POST /admin/faults/…`): each fires for
//! the next N times its code path runs. Per isolate: `wrangler dev` runs one, so the admin
//! request that arms a fault and the consumer or Durable Object that meets it share it.

use std::sync::atomic::{AtomicU32, Ordering};

/// A fault that fires the next `n` times it is met.
#[derive(Debug)]
pub(crate) struct Countdown(AtomicU32);

impl Countdown {
    /// Not armed.
    pub(crate) const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// Fires the next `n` times.
    pub(crate) fn arm(&self, n: u32) {
        self.0.store(n, Ordering::SeqCst);
    }

    /// Whether it fires now (taking one of those left).
    pub(crate) fn fires(&self) -> bool {
        self.0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}
