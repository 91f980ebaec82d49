//! Infrastructure for hubspot-edge's end-to-end tests.
//!
//! The end-to-end tests run the real Worker on workerd through `wrangler dev`, send it
//! HubSpot-signed webhooks over loopback HTTP, and watch what arrives at a loopback
//! [`Destination`] (the user's endpoint) that checks every delivery's Standard Webhooks
//! signature with the core.
//!
//! - [`WranglerDev`]: starts `wrangler dev` in its own process group, captures its output,
//!   waits for `/healthz`, and kills the whole group on drop (also when a test panics).
//! - [`Destination`]: a scripted HTTP server (answer 500, then 429 with `Retry-After`, drop the
//!   connection, hang…) that records and verifies every delivery.
//! - [`hubspot`]: builders for realistic HubSpot events and HubSpot-signed requests (v1, v3).
//! - [`http`]: a small blocking client that never treats a status code as an error.
//! - [`Fixture`]: the destination plus a Worker configured to forward to it, with test secrets.
//! - [`logscan`]: every Worker's log lines, checked after the run for values the scenarios
//!   sent and for the fields every line has.
//!
//! Synchronisation is always [`poll_until`] with a deadline, never a bare sleep.

use std::fmt;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub mod bench;
pub mod destination;
pub mod fixture;
pub mod hubspot;
pub mod logscan;
pub mod process;
pub mod wrangler;

// The blocking client, the HTTP server under the test doubles, and the infrastructure error
// live in the mock's crate (the mock needs them and this crate depends on it).
pub use hubspot_mock::http;
use hubspot_mock::server;
pub use hubspot_mock::{Error, Result};

pub use destination::{Behavior, Delivery, Destination};
pub use fixture::{Fixture, FixtureOptions};
pub use http::HttpResponse;
pub use hubspot::{HubSpotEvent, HubSpotRequest, SignatureScheme};
pub use process::{kill_all, ProcessGroup};
pub use wrangler::{WranglerDev, WranglerOptions};

/// Calls `check` every `interval` until it returns `Some`, or fails once `timeout` has passed.
///
/// `what` describes the condition for the error message ("destination received object 7").
/// `check` always runs at least once, and once more after the deadline, so a condition that
/// became true during the last interval is not reported as a timeout.
///
/// # Errors
/// When `check` has not returned `Some` within `timeout`.
pub fn poll_until<T>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(Error::new(format!(
                "timed out after {timeout:?} waiting for: {what}"
            )));
        }
        thread::sleep(interval.min(deadline - now));
    }
}

/// Like [`poll_until`], but `check` returns a `Result`: `Ok(Some)` succeeds, `Ok(None)` keeps
/// polling, and the last `Err` (if any) is included in the timeout error.
///
/// # Errors
/// When `check` has not returned `Ok(Some)` within `timeout`.
pub fn poll_until_ok<T, E: fmt::Display>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Result<Option<T>, E>,
) -> Result<T> {
    let mut last_err: Option<String> = None;
    poll_until(what, timeout, interval, || match check() {
        Ok(v) => v,
        Err(e) => {
            last_err = Some(e.to_string());
            None
        }
    })
    .map_err(|e| match &last_err {
        Some(last) => Error::new(format!("{e} (last error: {last})")),
        None => e,
    })
}

/// Milliseconds since the Unix epoch (the unit of HubSpot's `occurredAt` and
/// `X-HubSpot-Request-Timestamp`).
pub fn now_ms() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Seconds since the Unix epoch (the unit of `webhook-timestamp`).
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

/// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released).
///
/// # Errors
/// When no loopback socket can be bound.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// A number unique within this test process, for object ids and event ids that must not
/// collide between scenarios running in parallel against one Worker.
///
/// Starts from a value derived from the clock, so ids from two runs rarely collide either.
pub fn unique_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Lazily seed: the first caller swaps 0 for a clock-derived base.
    let seed = (now_ms() % 1_000_000) * 1_000 + 1_000_000;
    let _ = NEXT.compare_exchange(0, seed, Ordering::SeqCst, Ordering::SeqCst);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// The workspace root: the parent of this crate's manifest directory.
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(PathBuf::from).unwrap_or(manifest)
}

/// Whether `E2E_VERBOSE=1` is set (tee wrangler's output, log every delivery).
pub fn verbose() -> bool {
    std::env::var("E2E_VERBOSE").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_until_returns_value_and_times_out_with_description() {
        let mut n = 0;
        let v = poll_until(
            "n reaches 3",
            Duration::from_secs(5),
            Duration::ZERO,
            || {
                n += 1;
                (n >= 3).then_some(n)
            },
        )
        .unwrap();
        assert_eq!(v, 3);
        let err = poll_until::<()>(
            "never",
            Duration::from_millis(30),
            Duration::from_millis(5),
            || None,
        )
        .unwrap_err();
        assert!(err.message().contains("never"), "{err}");
        let err = poll_until_ok::<(), _>(
            "never ok",
            Duration::from_millis(20),
            Duration::from_millis(5),
            || Err("boom"),
        )
        .unwrap_err();
        assert!(err.message().contains("boom"), "{err}");
    }

    #[test]
    fn unique_ids_are_unique_and_free_port_is_nonzero() {
        let a = unique_id();
        let b = unique_id();
        assert!(b > a);
        assert_ne!(free_port().unwrap(), 0);
        assert!(repo_root().join("Cargo.toml").exists());
    }
}
