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

/// `mapping`: a stored snapshot must read back as the record that was stored, or the next diff
/// sees a change that did not happen (and forwards it again). serde_json's default float parser
/// can be one unit in the last place off, so a number did not survive its own snapshot text;
/// core now enables serde_json's `float_roundtrip`.
#[test]
fn snapshot_numbers_survive_their_own_text() {
    use hubspot_edge_core::mapping::Record;
    // The fuzz input: an integer too large for u64, read as a float.
    let read = Record::from_snapshot(r#"{"n":1000000000000000000000000069729164372184594}"#)
        .expect("a JSON object");
    assert_eq!(Record::from_snapshot(&read.to_snapshot()), Ok(read.clone()));
    // The nearest float to that integer is 1e42.
    assert_eq!(
        read.get("n").and_then(serde_json::Value::as_f64),
        Some(1e42)
    );
    // The shortest text of a float reads back as that float.
    let text = r#"{"n":9.999999999999999e+41}"#;
    let r = Record::from_snapshot(text).expect("a JSON object");
    assert_eq!(r.to_snapshot(), text);
}
