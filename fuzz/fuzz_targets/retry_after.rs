//! `Retry-After` parsing (`delivery::parse_retry_after`, and through it the API client's),
//! on any text and any `now`: `Some` delay or `None`, never a panic or an overflow. A delay in
//! seconds does not depend on `now`; an HTTP date's delay shrinks by exactly the time elapsed.
//!
//! Input: `now_secs` (8 bytes, little-endian), then the header value.
#![no_main]

use hubspot_edge_core::delivery::parse_retry_after;
use hubspot_edge_fuzz::Reader;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let now_secs = r.u64();
    let Ok(value) = std::str::from_utf8(r.rest()) else {
        return;
    };
    let at_epoch = parse_retry_after(value, 0);
    let now = parse_retry_after(value, now_secs);
    assert_eq!(
        at_epoch.is_some(),
        now.is_some(),
        "validity does not depend on now"
    );
    let trimmed = value.trim();
    if !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        assert_eq!(now, at_epoch, "delta-seconds do not depend on now");
    } else if let (Some(at), Some(delay)) = (at_epoch, now) {
        assert_eq!(delay, at.saturating_sub(now_secs));
    }
});
