//! What we send to the user's endpoint: the versioned outbound event and its Standard Webhooks
//! signature (<https://www.standardwebhooks.com>).
//!
//! The event shape is `hubspot-edge.event.v1`, described by `schema/outbound-event.v1.json`
//! at the repository root. Fields are only ever added within a version; a breaking change
//! gets a new `schema` value.

use std::fmt;

use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq as _;
use thiserror::Error;

use crate::dedupe::DedupeKey;
use crate::event::Event;
use crate::signature::hmac_sha256;
use crate::time::iso8601_ms;

/// The `schema` value of every event this version sends.
pub const SCHEMA_V1: &str = "hubspot-edge.event.v1";

/// `webhook-id` header: the event's [`DedupeKey`], stable across retries.
pub const HEADER_WEBHOOK_ID: &str = "webhook-id";
/// `webhook-timestamp` header: Unix seconds of this delivery attempt.
pub const HEADER_WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// `webhook-signature` header: `v1,<base64 HMAC-SHA256>` (space-separated when several).
pub const HEADER_WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The JSON body of one forwarded event (schema `hubspot-edge.event.v1`).
///
/// # Errors
/// None in practice: serialising these fields cannot fail; the `Result` is serde_json's.
pub fn event_body(event: &Event<'_>, key: &DedupeKey, received_at_ms: u64) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        schema: &'static str,
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        portal_id: u64,
        object_type: &'a str,
        object_id: Option<String>,
        occurred_at: String,
        received_at: String,
        hubspot: &'a RawValue,
    }
    // The event's text was validated when it was parsed; reading it back as a RawValue only
    // re-checks it (this runs in the consumer, once per event, off the webhook's hot path).
    #[allow(clippy::expect_used)]
    let hubspot: &RawValue = serde_json::from_str(event.raw()).expect("event text is valid JSON");
    let body = Body {
        schema: SCHEMA_V1,
        id: key.as_str(),
        kind: event.subscription_type(),
        portal_id: event.portal_id(),
        object_type: event.object_type(),
        object_id: event.object_id().map(|id| id.to_string()),
        occurred_at: iso8601_ms(event.occurred_at_ms()),
        received_at: iso8601_ms(received_at_ms),
        hubspot,
    };
    // Serialising strings, integers and an already-valid RawValue into a String cannot fail.
    #[allow(clippy::expect_used)]
    serde_json::to_string(&body).expect("outbound event serialises")
}

/// A Standard Webhooks signing secret: `whsec_` followed by base64 key bytes.
/// Its `Debug` output is redacted.
#[derive(Clone)]
pub struct WebhookSecret(Box<[u8]>);

/// The signing secret is not `whsec_<base64>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("webhook secret must be `whsec_` followed by base64 (at least 16 bytes)")]
pub struct WebhookSecretError;

impl WebhookSecretError {
    /// Stable code: `webhook_secret_invalid`.
    pub fn code(&self) -> &'static str {
        "webhook_secret_invalid"
    }
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`; the key must be at least 16 bytes (128 bits).
    ///
    /// # Errors
    /// [`WebhookSecretError`] when the prefix is missing, the base64 is invalid or the key short.
    pub fn parse(s: &str) -> Result<Self, WebhookSecretError> {
        let b64 = s.trim().strip_prefix("whsec_").ok_or(WebhookSecretError)?;
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| WebhookSecretError)?;
        if key.len() < 16 {
            return Err(WebhookSecretError);
        }
        Ok(Self(key.into()))
    }

    /// The `webhook-signature` value for one delivery: `v1,` + base64 of
    /// HMAC-SHA256(key, `{id}.{timestamp}.{body}`).
    pub fn sign(&self, id: &str, timestamp_secs: u64, body: &[u8]) -> String {
        let mac = hmac_sha256(&self.0, &signed_content(id, timestamp_secs, body));
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(mac)
        )
    }

    /// Verifies a Standard Webhooks delivery, as a receiver would: the timestamp must be within
    /// `tolerance_secs` of `now_secs`, and one of the space-separated `v1,` signatures must
    /// match (constant-time).
    ///
    /// # Errors
    /// [`WebhookVerifyError`] saying which check failed.
    pub fn verify(
        &self,
        id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now_secs: u64,
        tolerance_secs: u64,
    ) -> Result<(), WebhookVerifyError> {
        let ts: u64 = timestamp
            .parse()
            .map_err(|_| WebhookVerifyError::TimestampInvalid)?;
        if now_secs.abs_diff(ts) > tolerance_secs {
            return Err(WebhookVerifyError::TimestampOutOfWindow);
        }
        let expected = hmac_sha256(&self.0, &signed_content(id, ts, body));
        let engine = &base64::engine::general_purpose::STANDARD;
        let matched = signatures
            .split(' ')
            .filter_map(|s| s.strip_prefix("v1,"))
            .filter_map(|b64| engine.decode(b64).ok())
            .any(|sig| bool::from(sig.as_slice().ct_eq(&expected)));
        if matched {
            Ok(())
        } else {
            Err(WebhookVerifyError::Mismatch)
        }
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// Why a Standard Webhooks delivery did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WebhookVerifyError {
    /// `webhook-timestamp` is not a decimal number of seconds.
    #[error("webhook timestamp is not a number of seconds")]
    TimestampInvalid,
    /// `webhook-timestamp` is outside the tolerance.
    #[error("webhook timestamp is outside the tolerance")]
    TimestampOutOfWindow,
    /// No `v1,` signature matched.
    #[error("no webhook signature matched")]
    Mismatch,
}

fn signed_content(id: &str, timestamp_secs: u64, body: &[u8]) -> Vec<u8> {
    let ts = timestamp_secs.to_string();
    let mut content = Vec::with_capacity(id.len() + ts.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(ts.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::event::parse_batch;

    #[test]
    fn event_body_shape() {
        let json = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM","changeFlag":"NEW","appId":54321}]"#;
        let batch = parse_batch(json.as_bytes()).unwrap();
        let event = batch[0].event.as_ref().unwrap();
        let body = event_body(event, &DedupeKey::of(event), 1_564_113_601_500);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["schema"], "hubspot-edge.event.v1");
        assert_eq!(v["id"], "hs1_62515_54321_12345_1_123_1564113600000");
        assert_eq!(v["type"], "contact.creation");
        assert_eq!(v["objectType"], "contact");
        assert_eq!(v["objectId"], "123");
        assert_eq!(v["portalId"], 62515);
        assert_eq!(v["occurredAt"], "2019-07-26T04:00:00.000Z");
        assert_eq!(v["receivedAt"], "2019-07-26T04:00:01.500Z");
        assert_eq!(v["hubspot"]["changeFlag"], "NEW");
    }
}
