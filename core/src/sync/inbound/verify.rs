//! Step 1 of an inbound request: the Standard Webhooks headers.

use crate::outbound::WebhookSecret;

/// Standard Webhooks: a `webhook-timestamp` further than this from now is refused (5 minutes,
/// against replays).
pub const TOLERANCE_SECS: u64 = 300;
/// The longest `webhook-id` taken (it is the idempotency key, kept in the receipt's id).
const MAX_WEBHOOK_ID_CHARS: usize = 256;

/// Checks an inbound request's Standard Webhooks headers over its raw `body` (empty for
/// `GET /sync/receipts/{id}`) with `secret` at `now_secs`: a `webhook-id` of 1 to 256
/// characters, a timestamp within [`TOLERANCE_SECS`], a matching `v1,` signature.
///
/// # Errors
/// The message of the 401 (`inbound_signature_invalid`) to answer.
pub fn verify_request(
    secret: &WebhookSecret,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now_secs: u64,
) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_WEBHOOK_ID_CHARS {
        return Err("webhook-id missing or longer than 256 characters".to_owned());
    }
    secret
        .verify(id, timestamp, signature, body, now_secs, TOLERANCE_SECS)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn secret() -> WebhookSecret {
        WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret")
    }

    #[test]
    fn the_webhook_id_timestamp_and_signature_are_checked() {
        let s = secret();
        let body = br#"{"records":[]}"#;
        let signature = s.sign("msg_1", NOW, body);
        let ts = NOW.to_string();
        assert_eq!(
            verify_request(&s, "msg_1", &ts, &signature, body, NOW),
            Ok(())
        );
        assert_eq!(
            verify_request(&s, "msg_1", &ts, &signature, body, NOW + TOLERANCE_SECS),
            Ok(()),
            "at the tolerance"
        );
        let refused = |id: &str, ts: &str, sig: &str, body: &[u8], now: u64| {
            verify_request(&s, id, ts, sig, body, now).expect_err("refused")
        };
        let no_id = "webhook-id missing or longer than 256 characters";
        assert_eq!(refused("", &ts, &signature, body, NOW), no_id);
        let long = "a".repeat(257);
        assert_eq!(
            refused(&long, &ts, &s.sign(&long, NOW, body), body, NOW),
            no_id
        );
        let longest = "a".repeat(256);
        assert_eq!(
            verify_request(&s, &longest, &ts, &s.sign(&longest, NOW, body), body, NOW),
            Ok(())
        );
        assert_eq!(
            refused("msg_1", &ts, &signature, body, NOW + TOLERANCE_SECS + 1),
            "webhook timestamp is outside the tolerance"
        );
        assert_eq!(
            refused("msg_1", "soon", &signature, body, NOW),
            "webhook timestamp is not a number of seconds"
        );
        assert_eq!(
            refused("msg_2", &ts, &signature, body, NOW),
            "no webhook signature matched",
            "the id is signed"
        );
        assert_eq!(
            refused("msg_1", &ts, &signature, b"{}", NOW),
            "no webhook signature matched"
        );
        // A receipt's GET: signed over an empty body.
        let get = s.sign("any", NOW, b"");
        assert_eq!(verify_request(&s, "any", &ts, &get, b"", NOW), Ok(()));
    }
}
