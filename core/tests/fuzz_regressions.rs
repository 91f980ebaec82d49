//! Inputs the fuzz targets (fuzz/, FUZZING.md) found to crash, kept as regression tests against
//! the public API. Each names its target.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use hubspot_edge_core::delivery::parse_retry_after;

/// `retry_after`: an HTTP date with a year of 17 digits overflowed the day count (a panic in
/// debug builds, a wrapped, wrong delay in release).
#[test]
fn retry_after_with_a_huge_year_is_invalid_not_an_overflow() {
    for value in [
        "Sun, 06 Nov 99999999999999999 08:49:37 GMT",
        "Sun, 06 Nov 18446744073709551615 08:49:37 GMT",
        "Sun, 06 Nov 50000000000000 23:59:60 GMT",
    ] {
        assert_eq!(parse_retry_after(value, 0), None, "{value}");
    }
    // The largest dates that fit still parse.
    assert_eq!(
        parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", 0),
        Some(253_402_300_799)
    );
}
