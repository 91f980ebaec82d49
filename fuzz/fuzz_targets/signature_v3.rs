//! HubSpot v3 signatures: a request signed by our signer verifies, and one changed byte in the
//! body, the URI, the timestamp header or the signature header makes it fail. The only changes
//! that keep it valid are the documented equivalences: a URI byte change that leaves
//! `v3_canonical_uri` unchanged (an escape's hex digit in the other case), and `+` read as a
//! space in the signature header (a proxy's rewrite, docs/hubspot.md §1.7).
#![no_main]

use http::{HeaderMap, HeaderValue};
use hubspot_edge_core::signature::{
    sign_v3, v3_canonical_uri, ClientSecret, SignatureVersion, SignedRequest, Verifier,
    HEADER_REQUEST_TIMESTAMP, HEADER_SIGNATURE_V3,
};
use hubspot_edge_fuzz::{split_nul, Reader};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
enum Part {
    Body,
    Uri,
    Timestamp,
    Signature,
}

fn verify(
    verifier: &Verifier,
    method: &str,
    uri: &str,
    body: &[u8],
    ts: &[u8],
    sig: &[u8],
) -> Option<bool> {
    let mut headers = HeaderMap::new();
    // A byte a header cannot carry cannot reach the verifier either.
    headers.insert(HEADER_SIGNATURE_V3, HeaderValue::from_bytes(sig).ok()?);
    headers.insert(HEADER_REQUEST_TIMESTAMP, HeaderValue::from_bytes(ts).ok()?);
    let request = SignedRequest {
        method,
        uri,
        headers: &headers,
        body,
    };
    // `now` is the signed timestamp, so a valid request is inside the window.
    let now = std::str::from_utf8(ts)
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    Some(match verifier.verify(&request, now) {
        Ok(v) => {
            assert_eq!(v, SignatureVersion::V3);
            true
        }
        Err(_) => false,
    })
}

/// Input: which part to change (1 byte), where (2), the XOR mask (1), GET or POST (1), the
/// timestamp in ms (8), then secret, NUL, URI, NUL, body.
struct Input {
    secret: Vec<u8>,
    method_post: bool,
    uri: String,
    body: Vec<u8>,
    timestamp_ms: u64,
    part: Part,
    position: usize,
    flip: u8,
}

fn input(data: &[u8]) -> Option<Input> {
    let mut r = Reader::new(data);
    let part = match r.u8() % 4 {
        0 => Part::Body,
        1 => Part::Uri,
        2 => Part::Timestamp,
        _ => Part::Signature,
    };
    let position = usize::from(r.u16());
    let flip = r.u8();
    let method_post = r.u8() % 2 == 0;
    // The verifier reads at most 19 digits (a 20-digit millisecond time is 584 million years
    // away and would not fit every u64 anyway), so sign only timestamps it can read.
    let timestamp_ms = r.u64() % 10_000_000_000_000_000_000;
    let [secret, uri, body] = split_nul::<3>(r.rest());
    Some(Input {
        secret: secret.to_vec(),
        method_post,
        uri: String::from_utf8(uri.to_vec()).ok()?,
        body: body.to_vec(),
        timestamp_ms,
        part,
        position,
        flip,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else { return };
    let secret = ClientSecret::new(&input.secret);
    let verifier = Verifier::new(secret.clone());
    let method = if input.method_post { "POST" } else { "GET" };
    let ts = input.timestamp_ms.to_string();
    let sig = sign_v3(&secret, method, &input.uri, &input.body, &ts);
    assert_eq!(
        verify(
            &verifier,
            method,
            &input.uri,
            &input.body,
            ts.as_bytes(),
            sig.as_bytes()
        ),
        Some(true),
        "a request we signed must verify"
    );

    let flip = if input.flip == 0 { 1 } else { input.flip };
    let mutate = |bytes: &[u8]| -> Option<Vec<u8>> {
        if bytes.is_empty() {
            return None;
        }
        let mut out = bytes.to_vec();
        let i = input.position % out.len();
        out[i] ^= flip;
        Some(out)
    };
    match input.part {
        Part::Body => {
            let Some(body) = mutate(&input.body) else {
                return;
            };
            assert_eq!(
                verify(
                    &verifier,
                    method,
                    &input.uri,
                    &body,
                    ts.as_bytes(),
                    sig.as_bytes()
                ),
                Some(false),
                "a changed body must not verify"
            );
        }
        Part::Uri => {
            let Some(uri) = mutate(input.uri.as_bytes()) else {
                return;
            };
            let Ok(uri) = String::from_utf8(uri) else {
                return;
            };
            let same = v3_canonical_uri(&uri) == v3_canonical_uri(&input.uri);
            assert_eq!(
                verify(
                    &verifier,
                    method,
                    &uri,
                    &input.body,
                    ts.as_bytes(),
                    sig.as_bytes()
                ),
                Some(same),
                "a changed URI verifies only when its canonical form is the same"
            );
        }
        Part::Timestamp => {
            let Some(ts2) = mutate(ts.as_bytes()) else {
                return;
            };
            if let Some(ok) = verify(
                &verifier,
                method,
                &input.uri,
                &input.body,
                &ts2,
                sig.as_bytes(),
            ) {
                assert!(!ok, "a changed timestamp must not verify");
            }
        }
        Part::Signature => {
            let Some(sig2) = mutate(sig.as_bytes()) else {
                return;
            };
            let i = input.position % sig2.len();
            let plus_as_space = sig.as_bytes()[i] == b'+' && sig2[i] == b' ';
            if let Some(ok) = verify(
                &verifier,
                method,
                &input.uri,
                &input.body,
                ts.as_bytes(),
                &sig2,
            ) {
                assert_eq!(ok, plus_as_space, "a changed signature must not verify");
            }
        }
    }
});
