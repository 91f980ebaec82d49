//! Known-answer vectors from docs/hubspot.md §1.6, each labelled by source, and negative twins.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::*;

const SECRET: &str = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy";
const URI: &str = "https://www.example.com/webhook_uri";
const DOCS_V1_BODY: &str = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
const SDK_BODY: &str = "{'example_field':'example_value'}";

fn secret() -> ClientSecret {
    ClientSecret::new(SECRET)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn legacy() -> Verifier {
    Verifier::new(secret()).with_legacy(LegacySignatures::Accept)
}

fn check(
    verifier: &Verifier,
    method: &str,
    uri: &str,
    body: &str,
    pairs: &[(&str, &str)],
    now_ms: u64,
) -> Result<SignatureVersion, SignatureError> {
    let headers = headers(pairs);
    let request = SignedRequest {
        method,
        uri,
        headers: &headers,
        body: body.as_bytes(),
    };
    let software = verifier.verify(&request, now_ms);
    // The split path must agree with the all-in-one path on every input.
    let split = verifier.challenge(&request, now_ms).and_then(|c| {
        let digest = digest_in_software(c.algorithm(), c.hmac_key(), c.message());
        c.check(&digest)
    });
    assert_eq!(software, split);
    software
}

// --- v1 -------------------------------------------------------------------------------------

#[test]
fn v1_docs_vector() {
    // Source: official docs, validating-requests v1 section (also Node and PHP SDK tests).
    let sig = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de";
    assert_eq!(sign_v1(&secret(), DOCS_V1_BODY.as_bytes()), sig);
    let h = [
        ("X-HubSpot-Signature", sig),
        ("X-HubSpot-Signature-Version", "v1"),
    ];
    assert_eq!(
        check(&legacy(), "POST", URI, DOCS_V1_BODY, &h, 0),
        Ok(SignatureVersion::V1)
    );
}

#[test]
fn v1_sdk_vector() {
    // Source: Python and Ruby SDK tests (single-quoted body).
    let sig = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750";
    assert_eq!(sign_v1(&secret(), SDK_BODY.as_bytes()), sig);
    let h = [
        ("x-hubspot-signature", sig),
        ("x-hubspot-signature-version", "v1"),
    ];
    assert_eq!(
        check(&legacy(), "POST", URI, SDK_BODY, &h, 0),
        Ok(SignatureVersion::V1)
    );
}

#[test]
fn v1_negative_twins() {
    let sig = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de";
    let h = [
        ("X-HubSpot-Signature", sig),
        ("X-HubSpot-Signature-Version", "v1"),
    ];
    let altered = DOCS_V1_BODY.replace("62515", "62516");
    assert_eq!(
        check(&legacy(), "POST", URI, &altered, &h, 0),
        Err(SignatureError::Mismatch)
    );
    let wrong = Verifier::new(ClientSecret::new("zzzzzzzz-yyyy-yyyy-yyyy-yyyyyyyyyyyy"))
        .with_legacy(LegacySignatures::Accept);
    assert_eq!(
        check(&wrong, "POST", URI, DOCS_V1_BODY, &h, 0),
        Err(SignatureError::Mismatch)
    );
    let truncated = [
        ("X-HubSpot-Signature", &sig[..62]),
        ("X-HubSpot-Signature-Version", "v1"),
    ];
    assert_eq!(
        check(&legacy(), "POST", URI, DOCS_V1_BODY, &truncated, 0),
        Err(SignatureError::Malformed)
    );
    let not_hex = "z".repeat(64);
    let h2 = [
        ("X-HubSpot-Signature", not_hex.as_str()),
        ("X-HubSpot-Signature-Version", "v1"),
    ];
    assert_eq!(
        check(&legacy(), "POST", URI, DOCS_V1_BODY, &h2, 0),
        Err(SignatureError::Malformed)
    );
    // v1 is rejected by the default policy, even when correct.
    assert_eq!(
        check(&Verifier::new(secret()), "POST", URI, DOCS_V1_BODY, &h, 0),
        Err(SignatureError::LegacyRejected)
    );
    // Version header missing or unknown.
    let h3 = [("X-HubSpot-Signature", sig)];
    assert_eq!(
        check(&legacy(), "POST", URI, DOCS_V1_BODY, &h3, 0),
        Err(SignatureError::VersionMissing)
    );
    let h4 = [
        ("X-HubSpot-Signature", sig),
        ("X-HubSpot-Signature-Version", "v9"),
    ];
    assert_eq!(
        check(&legacy(), "POST", URI, DOCS_V1_BODY, &h4, 0),
        Err(SignatureError::VersionUnsupported)
    );
    // Uppercase hex is the same value.
    let upper = sig.to_uppercase();
    let h5 = [
        ("X-HubSpot-Signature", upper.as_str()),
        ("X-HubSpot-Signature-Version", "V1"),
    ];
    assert_eq!(
        check(&legacy(), "POST", URI, DOCS_V1_BODY, &h5, 0),
        Ok(SignatureVersion::V1)
    );
}

// --- v2 -------------------------------------------------------------------------------------

#[test]
fn v2_docs_vectors() {
    // Source: official docs, v2 GET and v2 POST examples.
    let get = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e";
    assert_eq!(sign_v2(&secret(), "GET", URI, b""), get);
    let h = [
        ("X-HubSpot-Signature", get),
        ("X-HubSpot-Signature-Version", "v2"),
    ];
    assert_eq!(
        check(&legacy(), "GET", URI, "", &h, 0),
        Ok(SignatureVersion::V2)
    );

    let body = r#"{"example_field":"example_value"}"#;
    let post = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900";
    assert_eq!(sign_v2(&secret(), "POST", URI, body.as_bytes()), post);
    let h = [
        ("X-HubSpot-Signature", post),
        ("X-HubSpot-Signature-Version", "v2"),
    ];
    assert_eq!(
        check(&legacy(), "POST", URI, body, &h, 0),
        Ok(SignatureVersion::V2)
    );
}

#[test]
fn v2_sdk_vector() {
    // Source: Python and Ruby SDK tests (single-quoted body).
    let sig = "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383";
    assert_eq!(sign_v2(&secret(), "POST", URI, SDK_BODY.as_bytes()), sig);
}

#[test]
fn v2_negative_twins() {
    let post = "9569219f8ba981ffa6f6f16aa0f48637d35d728c7e4d93d0d52efaa512af7900";
    let body = r#"{"example_field":"example_value"}"#;
    let h = [
        ("X-HubSpot-Signature", post),
        ("X-HubSpot-Signature-Version", "v2"),
    ];
    let mismatch = Err(SignatureError::Mismatch);
    assert_eq!(check(&legacy(), "PUT", URI, body, &h, 0), mismatch);
    assert_eq!(
        check(
            &legacy(),
            "POST",
            "https://www.example.com/other",
            body,
            &h,
            0
        ),
        mismatch
    );
    assert_eq!(
        check(
            &legacy(),
            "POST",
            "http://www.example.com/webhook_uri",
            body,
            &h,
            0
        ),
        mismatch
    );
    assert_eq!(check(&legacy(), "POST", URI, "{}", &h, 0), mismatch);
}

// --- v3 -------------------------------------------------------------------------------------

const TS_PY: &str = "1693657560000";
const TS_PY_MS: u64 = 1_693_657_560_000;

fn v3_headers<'a>(sig: &'a str, ts: &'a str) -> [(&'a str, &'a str); 2] {
    [
        ("X-HubSpot-Signature-v3", sig),
        ("X-HubSpot-Request-Timestamp", ts),
    ]
}

#[test]
fn v3_python_sdk_vector() {
    // Source: Python SDK test `test_get_signature__v3`.
    let sig = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
    assert_eq!(
        sign_v3(&secret(), "POST", URI, SDK_BODY.as_bytes(), TS_PY),
        sig
    );
    let v = Verifier::new(secret());
    assert_eq!(
        check(&v, "POST", URI, SDK_BODY, &v3_headers(sig, TS_PY), TS_PY_MS),
        Ok(SignatureVersion::V3)
    );
}

#[test]
fn v3_ruby_sdk_vector() {
    // Source: Ruby SDK `spec/helpers/signature_spec.rb`.
    let sig = "RnbPH7+UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw=";
    let ts = "1700000300000";
    assert_eq!(
        sign_v3(&secret(), "POST", URI, SDK_BODY.as_bytes(), ts),
        sig
    );
    let v = Verifier::new(secret());
    assert_eq!(
        check(
            &v,
            "POST",
            URI,
            SDK_BODY,
            &v3_headers(sig, ts),
            1_700_000_300_000 + 1000
        ),
        Ok(SignatureVersion::V3)
    );
}

#[test]
fn v3_computed_vectors() {
    // Source: computed from the documented algorithm (docs/hubspot.md §1.6, vectors 8-10), not
    // published by HubSpot.
    let body = r#"{"example_field":"example_value"}"#;
    assert_eq!(
        sign_v3(&secret(), "POST", URI, body.as_bytes(), TS_PY),
        "oaA3M5dEtt6kFsseJD/Hv/x+JNl1vsoxFj4oxmwP6Go="
    );
    let raw = "https://www.example.com/webhook_uri?state=a%3Ab%2Cc&x=1%202";
    assert_eq!(
        v3_canonical_uri(raw),
        "https://www.example.com/webhook_uri?state=a:b,c&x=1%202"
    );
    let decoded_sig = "SH/fkvGTgpt54x5RiLpHMZ3ApU2l6p2/Vd3U1EGtL9s=";
    assert_eq!(
        sign_v3(
            &secret(),
            "POST",
            raw,
            DOCS_V1_BODY.as_bytes(),
            "1700000000000"
        ),
        decoded_sig
    );
    let v = Verifier::new(secret());
    let now = 1_700_000_000_000;
    assert_eq!(
        check(
            &v,
            "POST",
            raw,
            DOCS_V1_BODY,
            &v3_headers(decoded_sig, "1700000000000"),
            now
        ),
        Ok(SignatureVersion::V3)
    );
    // The signature over the raw (undecoded) URI is not what v3 accepts.
    let raw_sig = "91IL5/7wK51iCJge1w8scGr0MXsfIwuImoyeB+xk188=";
    assert_eq!(
        check(
            &v,
            "POST",
            raw,
            DOCS_V1_BODY,
            &v3_headers(raw_sig, "1700000000000"),
            now
        ),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn v3_decode_table() {
    let all = "https://h/p?a=%3A%2F%3F%40%21%24%27%28%29%2A%2C%3B";
    assert_eq!(v3_canonical_uri(all), "https://h/p?a=:/?@!$'()*,;");
    assert_eq!(v3_canonical_uri("https://h/p?a=%3a%2c"), "https://h/p?a=:,");
    assert_eq!(
        v3_canonical_uri("https://h/p?a=%20%26%3D%2B"),
        "https://h/p?a=%20%26%3D%2B"
    );
    assert_eq!(v3_canonical_uri("https://h/p?a=%3"), "https://h/p?a=%3");
    assert_eq!(v3_canonical_uri("https://h/p%2C"), "https://h/p,");
    assert_eq!(v3_canonical_uri("%%3A"), "%:");
    assert!(matches!(v3_canonical_uri("https://h/p"), Cow::Borrowed(_)));
}

#[test]
fn v3_negative_twins() {
    let sig = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
    let v = Verifier::new(secret());
    let h = v3_headers(sig, TS_PY);
    let now = TS_PY_MS;
    let mismatch = Err(SignatureError::Mismatch);
    // Altered body, URI, method, timestamp, secret.
    assert_eq!(
        check(
            &v,
            "POST",
            URI,
            "{'example_field':'example_valuE'}",
            &h,
            now
        ),
        mismatch
    );
    assert_eq!(
        check(
            &v,
            "POST",
            "https://www.example.com/webhook_urI",
            SDK_BODY,
            &h,
            now
        ),
        mismatch
    );
    assert_eq!(check(&v, "GET", URI, SDK_BODY, &h, now), mismatch);
    assert_eq!(
        check(
            &v,
            "POST",
            URI,
            SDK_BODY,
            &v3_headers(sig, "1693657560001"),
            now
        ),
        mismatch
    );
    let wrong = Verifier::new(ClientSecret::new("yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyz"));
    assert_eq!(check(&wrong, "POST", URI, SDK_BODY, &h, now), mismatch);
    // Truncated and non-base64 signatures.
    assert_eq!(
        check(
            &v,
            "POST",
            URI,
            SDK_BODY,
            &v3_headers(&sig[..40], TS_PY),
            now
        ),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        check(
            &v,
            "POST",
            URI,
            SDK_BODY,
            &v3_headers("not base64 at all!!", TS_PY),
            now
        ),
        Err(SignatureError::Malformed)
    );
    // Missing headers.
    assert_eq!(
        check(&v, "POST", URI, SDK_BODY, &[], now),
        Err(SignatureError::Missing)
    );
    assert_eq!(
        check(
            &v,
            "POST",
            URI,
            SDK_BODY,
            &[("X-HubSpot-Signature-v3", sig)],
            now
        ),
        Err(SignatureError::TimestampMissing)
    );
    // Non-numeric and overlong timestamps.
    for ts in ["", "1693657560000.0", "-1", "0x10", "99999999999999999999"] {
        assert_eq!(
            check(&v, "POST", URI, SDK_BODY, &v3_headers(sig, ts), now),
            Err(SignatureError::TimestampInvalid),
            "{ts:?}"
        );
    }
}

#[test]
fn v3_timestamp_window() {
    let sig = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
    let h = v3_headers(sig, TS_PY);
    let v = Verifier::new(secret());
    let ok = Ok(SignatureVersion::V3);
    assert_eq!(check(&v, "POST", URI, SDK_BODY, &h, TS_PY_MS + 300_000), ok);
    assert_eq!(
        check(&v, "POST", URI, SDK_BODY, &h, TS_PY_MS + 300_001),
        Err(SignatureError::TimestampExpired)
    );
    assert_eq!(check(&v, "POST", URI, SDK_BODY, &h, TS_PY_MS - 60_000), ok);
    assert_eq!(
        check(&v, "POST", URI, SDK_BODY, &h, TS_PY_MS - 60_001),
        Err(SignatureError::TimestampInFuture)
    );
    // Configurable, and the stale check runs before the digest.
    let strict = Verifier::new(secret())
        .with_max_age_ms(1000)
        .with_max_future_ms(0);
    assert_eq!(
        check(&strict, "POST", URI, SDK_BODY, &h, TS_PY_MS + 1001),
        Err(SignatureError::TimestampExpired)
    );
    assert_eq!(
        check(&strict, "POST", URI, SDK_BODY, &h, TS_PY_MS - 1),
        Err(SignatureError::TimestampInFuture)
    );
    // A stale request can still be checked deliberately, by the named call.
    let headers = headers(&h);
    let req = SignedRequest {
        method: "POST",
        uri: URI,
        headers: &headers,
        body: SDK_BODY.as_bytes(),
    };
    assert_eq!(v.verify_ignoring_timestamp(&req), ok);
}

#[test]
fn v3_header_names_in_any_case_and_plus_as_space() {
    let sig = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y=";
    let v = Verifier::new(secret());
    for name in [
        "X-HubSpot-Signature-V3",
        "x-hubspot-signature-v3",
        "X-HUBSPOT-SIGNATURE-V3",
    ] {
        let h = [(name, sig), ("X-HUBSPOT-REQUEST-TIMESTAMP", TS_PY)];
        assert_eq!(
            check(&v, "POST", URI, SDK_BODY, &h, TS_PY_MS),
            Ok(SignatureVersion::V3)
        );
    }
    let spaced = sig.replace('+', " ");
    assert_eq!(
        check(
            &v,
            "POST",
            URI,
            SDK_BODY,
            &v3_headers(&spaced, TS_PY),
            TS_PY_MS
        ),
        Ok(SignatureVersion::V3)
    );
}

#[test]
fn v3_headers_win_over_legacy() {
    // A bad v3 header is never rescued by a good v1 header.
    let v1 = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750";
    let h = [
        (
            "X-HubSpot-Signature-v3",
            "RnbPH7+UMKVkbV32P8bz450N4M56aPmcru1+D3kSDtw=",
        ),
        ("X-HubSpot-Request-Timestamp", TS_PY),
        ("X-HubSpot-Signature", v1),
        ("X-HubSpot-Signature-Version", "v1"),
    ];
    assert_eq!(
        check(&legacy(), "POST", URI, SDK_BODY, &h, TS_PY_MS),
        Err(SignatureError::Mismatch)
    );
}

#[test]
fn errors_have_stable_codes_and_debug_hides_secrets() {
    assert_eq!(SignatureError::Mismatch.code(), "signature_mismatch");
    assert_eq!(SignatureError::Mismatch.public_code(), "signature_invalid");
    assert_eq!(
        SignatureError::TimestampExpired.public_code(),
        "timestamp_out_of_window"
    );
    assert_eq!(SignatureError::Missing.public_code(), "signature_missing");
    assert!(!format!("{:?}", secret()).contains("yyyy"));
    let h = headers(&[
        ("X-HubSpot-Signature", "00"),
        ("X-HubSpot-Signature-Version", "v1"),
    ]);
    let req = SignedRequest {
        method: "POST",
        uri: URI,
        headers: &h,
        body: b"",
    };
    let err = legacy().challenge(&req, 0).unwrap_err();
    assert_eq!(err, SignatureError::Malformed);
}
