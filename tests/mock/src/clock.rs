//! The mock's notion of "now": everything time-based (rate-limit windows, the daily budget's
//! reset, OAuth token expiry, `createdAt`/`updatedAt`/`archivedAt`, webhook `occurredAt` and
//! signature timestamps) reads a [`Clock`], never the wall clock directly.
//!
//! [`SystemClock`] is the default; a test passes a [`ManualClock`] to
//! [`MockHubSpot::start_with_clock`](crate::MockHubSpot::start_with_clock) and moves time on
//! with [`ManualClock::advance`] instead of sleeping. Delays the mock really waits (the
//! `latency` fault, the webhook batch window and retry delay) stay real time.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time, in milliseconds since the Unix epoch (the unit of HubSpot's
/// `occurredAt` and `X-HubSpot-Request-Timestamp`).
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to: share it (`Arc<ManualClock>`) between a test and the
/// mock.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock standing at `now_ms` (milliseconds since the Unix epoch).
    pub fn new(now_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(now_ms),
        }
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // `fetch_update` with a saturating add: never wraps around to 1970.
        let _ = self
            .now_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| {
                Some(t.saturating_add(ms))
            });
    }

    /// Sets the clock to `now_ms` (also backwards: the mock's limiter tolerates it).
    pub fn set(&self, now_ms: u64) {
        self.now_ms.store(now_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(1_000);
        assert_eq!(c.now_ms(), 1_000);
        c.advance(Duration::from_secs(2));
        assert_eq!(c.now_ms(), 3_000);
        c.advance(Duration::MAX);
        assert_eq!(c.now_ms(), u64::MAX);
        c.set(5);
        assert_eq!(c.now_ms(), 5);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
