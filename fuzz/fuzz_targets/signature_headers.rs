//! HubSpot signature headers and the v3 URI decoding, on any request: any header values, URI,
//! method and body give `Ok` or a typed `SignatureError` (never a panic), with v1/v2 accepted
//! too so that every branch is reached. `v3_canonical_uri` is idempotent, never longer than its
//! input, and the identity on URIs without `%`.
//!
//! Input: `now_ms` (8 bytes, little-endian), a legacy flag (1 byte), then an HTTP-like request:
//! `METHOD URI`, header lines, an empty line, the body.
#![no_main]

use hubspot_edge_core::signature::{
    v3_canonical_uri, ClientSecret, LegacySignatures, SignedRequest, Verifier,
};
use hubspot_edge_fuzz::{message, Reader};
use libfuzzer_sys::fuzz_target;

/// The secret of HubSpot's documented examples (docs/hubspot.md §1), used by the seed vectors.
const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";

fuzz_target!(|data: &[u8]| {
    let mut r = Reader::new(data);
    let now_ms = r.u64();
    let legacy = if r.u8() % 2 == 0 {
        LegacySignatures::Accept
    } else {
        LegacySignatures::Reject
    };
    let msg = message(r.rest());
    let Ok(first) = std::str::from_utf8(msg.first_line) else {
        return;
    };
    let (method, uri) = first.split_once(' ').unwrap_or((first, ""));
    let verifier = Verifier::new(ClientSecret::new(SECRET)).with_legacy(legacy);
    let request = SignedRequest {
        method,
        uri,
        headers: &msg.headers,
        body: msg.body,
    };
    match verifier.challenge(&request, now_ms) {
        Ok(challenge) => {
            let version = challenge.version();
            if let Ok(v) = challenge.check_in_software() {
                assert_eq!(v, version);
            }
        }
        Err(e) => assert!(!e.code().is_empty() && !e.public_code().is_empty()),
    }
    if let Err(e) = verifier.verify_ignoring_timestamp(&request) {
        assert!(!e.code().is_empty());
    }

    let canonical = v3_canonical_uri(uri);
    assert!(canonical.len() <= uri.len());
    assert_eq!(
        v3_canonical_uri(&canonical),
        canonical,
        "decoding is idempotent"
    );
    if !uri.contains('%') {
        assert_eq!(canonical, uri);
    }
});
