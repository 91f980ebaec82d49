//! The outbound Standard Webhooks signer and verifier (`outbound::WebhookSecret`): any secret
//! text parses or gives `webhook_secret_invalid`; a delivery we signed verifies; one changed
//! byte in the id, timestamp, body or signature makes it fail; and any headers a receiver might
//! get give `Ok` or a typed error, never a panic.
#![no_main]

use base64::Engine as _;
use hubspot_edge_core::outbound::WebhookSecret;
use hubspot_edge_fuzz::{split_nul, Reader};
use libfuzzer_sys::fuzz_target;

#[derive(Debug)]
enum Part {
    Id,
    Timestamp,
    Body,
    Signature,
}

/// Input: which part to change (1 byte), where (2), the XOR mask (1), the signing timestamp (8,
/// little-endian), `now` and the tolerance for the any-headers check (8 + 8), the signing key
/// (24 bytes), then NUL-separated: a secret text, the id, a received timestamp, received
/// signatures, the body.
struct Input<'a> {
    secret_text: &'a str,
    key: [u8; 24],
    id: &'a str,
    timestamp_secs: u64,
    body: &'a [u8],
    part: Part,
    position: usize,
    flip: u8,
    any_timestamp: &'a str,
    any_signatures: &'a str,
    now_secs: u64,
    tolerance_secs: u64,
}

fn input(data: &[u8]) -> Option<Input<'_>> {
    let mut r = Reader::new(data);
    let part = match r.u8() % 4 {
        0 => Part::Id,
        1 => Part::Timestamp,
        2 => Part::Body,
        _ => Part::Signature,
    };
    let position = usize::from(r.u16());
    let flip = r.u8();
    let timestamp_secs = r.u64();
    let now_secs = r.u64();
    let tolerance_secs = r.u64();
    let key = r.bytes::<24>();
    let [secret_text, id, any_timestamp, any_signatures, body] = split_nul::<5>(r.rest());
    let text = |b| std::str::from_utf8(b).ok();
    Some(Input {
        secret_text: text(secret_text)?,
        key,
        id: text(id)?,
        timestamp_secs,
        body,
        part,
        position,
        flip,
        any_timestamp: text(any_timestamp)?,
        any_signatures: text(any_signatures)?,
        now_secs,
        tolerance_secs,
    })
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = input(data) else { return };
    if let Err(e) = WebhookSecret::parse(input.secret_text) {
        assert_eq!(e.code(), "webhook_secret_invalid");
    }
    let text = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(input.key)
    );
    let secret = WebhookSecret::parse(&text).expect("24 bytes of base64 is a valid secret");
    let _ = secret.verify(
        input.id,
        input.any_timestamp,
        input.any_signatures,
        input.body,
        input.now_secs,
        input.tolerance_secs,
    );

    let ts = input.timestamp_secs.to_string();
    let sig = secret.sign(input.id, input.timestamp_secs, input.body);
    let now = input.timestamp_secs;
    assert_eq!(
        secret.verify(input.id, &ts, &sig, input.body, now, 0),
        Ok(()),
        "a delivery we signed verifies"
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
    let ok = match input.part {
        Part::Id => {
            let Some(id) = mutate(input.id.as_bytes()).and_then(|b| String::from_utf8(b).ok())
            else {
                return;
            };
            secret.verify(&id, &ts, &sig, input.body, now, 0)
        }
        Part::Timestamp => {
            let Some(t) = mutate(ts.as_bytes()).and_then(|b| String::from_utf8(b).ok()) else {
                return;
            };
            // Any `now`: the signature itself must not match another timestamp.
            let now = t.parse().unwrap_or(now);
            secret.verify(input.id, &t, &sig, input.body, now, 0)
        }
        Part::Body => {
            let Some(body) = mutate(input.body) else {
                return;
            };
            secret.verify(input.id, &ts, &sig, &body, now, 0)
        }
        Part::Signature => {
            let Some(s) = mutate(sig.as_bytes()).and_then(|b| String::from_utf8(b).ok()) else {
                return;
            };
            secret.verify(input.id, &ts, &s, input.body, now, 0)
        }
    };
    assert!(ok.is_err(), "a changed delivery must not verify: {ok:?}");
});
