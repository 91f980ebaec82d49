//! What we send to the user's endpoint: the versioned outbound event and its Standard Webhooks
//! signature (<https://www.standardwebhooks.com>).
//!
//! The event shape is `hubspot-edge.event.v1`, described by `schema/outbound-event.v1.json`
//! at the repository root. Fields are only ever added within a version; a breaking change
//! gets a new `schema` value.
//!
//! Two kinds of body share the version: the thin event ([`event_body`]: one HubSpot event, its
//! `type` HubSpot's subscription type) and, for object types with a field map, the enriched
//! record event ([`record_event_body`]: `type` one of the `hubspot-edge.*` values below, with
//! the mapped `record`, the `changes`, `mergedIds` or `association`; see [`crate::enrich`]).

use std::fmt;

use base64::Engine as _;
use serde::Serialize;
use serde_json::value::RawValue;
use subtle::ConstantTimeEq as _;
use thiserror::Error;

use crate::dedupe::DedupeKey;
use crate::diff::Change;
use crate::enrich::{Association, Forward};
use crate::event::Event;
use crate::id::PortalId;
use crate::mapping::Record;
use crate::signature::hmac_sha256;
use crate::time::iso8601_ms;

/// The `schema` value of every event this version sends.
pub const SCHEMA_V1: &str = "hubspot-edge.event.v1";

/// `type` of an enriched creation: `record` is the whole mapped record.
pub const TYPE_RECORD_CREATED: &str = "hubspot-edge.record.created";
/// `type` of an enriched change: `changes` lists the changed fields with old and new values.
pub const TYPE_RECORD_CHANGED: &str = "hubspot-edge.record.changed";
/// `type` of a deletion (also a privacy deletion) of an enriched object type.
pub const TYPE_RECORD_DELETED: &str = "hubspot-edge.record.deleted";
/// `type` of a merge: `objectId` survives, `mergedIds` are gone; `record` and `changes` are
/// the survivor's.
pub const TYPE_RECORD_MERGED: &str = "hubspot-edge.record.merged";
/// `type` of a restore from the recycling bin: `record` is the whole mapped record.
pub const TYPE_RECORD_RESTORED: &str = "hubspot-edge.record.restored";
/// `type` of an association change of an enriched object type: `association`.
pub const TYPE_ASSOCIATION_CHANGED: &str = "hubspot-edge.association.changed";

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
        portal_id: PortalId,
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

/// The id of a forward made from several HubSpot events: the [`DedupeKey`] itself for one
/// event, else `hsg1_` and 40 hex digits of SHA-256 over the sorted keys, one per line. The same
/// events give the same id whatever their order, so a retried forward keeps its `webhook-id`.
pub fn group_id<S: AsRef<str>>(keys: &[S]) -> String {
    use sha2::{Digest as _, Sha256};
    if let [one] = keys {
        return one.as_ref().to_owned();
    }
    let mut sorted: Vec<&str> = keys.iter().map(AsRef::as_ref).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let digest = Sha256::digest(sorted.join("\n").as_bytes());
    let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
    format!("hsg1_{hex}")
}

/// What an enriched record event is made of (see [`record_event_body`]).
#[derive(Debug)]
pub struct RecordEvent<'a> {
    /// [`group_id`] of the source events' keys: the body's `id` and the `webhook-id`.
    pub id: &'a str,
    /// The source events' dedupe keys (`sourceIds`).
    pub source_ids: &'a [&'a str],
    /// The latest source event (by `occurredAt`): `portalId`, `occurredAt` and `hubspot`
    /// come from it.
    pub latest: &'a Event<'a>,
    /// When the Worker accepted the latest source event.
    pub received_at_ms: u64,
    /// The object: the survivor for a merge.
    pub object_id: &'a str,
    /// What happened.
    pub what: RecordEventKind<'a>,
}

/// The kind-specific part of a [`RecordEvent`].
#[derive(Debug)]
pub enum RecordEventKind<'a> {
    /// A record event decided by [`crate::enrich::decide`] (or a deletion).
    Record(&'a Forward),
    /// An association change.
    Association(&'a Association),
}

/// The JSON body of one enriched event (schema `hubspot-edge.event.v1`, `type`
/// `hubspot-edge.*`): the thin event's fields, plus `sourceIds` and the kind's own fields.
pub fn record_event_body(e: &RecordEvent<'_>) -> String {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct AssociationBody<'a> {
        from_id: Option<&'a str>,
        to_id: Option<&'a str>,
        #[serde(rename = "type")]
        kind: Option<&'a str>,
        removed: bool,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        schema: &'static str,
        id: &'a str,
        #[serde(rename = "type")]
        kind: &'a str,
        portal_id: PortalId,
        object_type: &'a str,
        object_id: &'a str,
        occurred_at: String,
        received_at: String,
        source_ids: &'a [&'a str],
        #[serde(skip_serializing_if = "Option::is_none")]
        record: Option<&'a Record>,
        #[serde(skip_serializing_if = "Option::is_none")]
        changes: Option<&'a [Change]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        merged_ids: Option<&'a [String]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        privacy: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        association: Option<AssociationBody<'a>>,
        hubspot: &'a RawValue,
    }
    // As in `event_body`: the text was validated when the event was parsed.
    #[allow(clippy::expect_used)]
    let hubspot: &RawValue =
        serde_json::from_str(e.latest.raw()).expect("event text is valid JSON");
    let mut body = Body {
        schema: SCHEMA_V1,
        id: e.id,
        kind: TYPE_ASSOCIATION_CHANGED,
        portal_id: e.latest.portal_id(),
        object_type: e.latest.object_type(),
        object_id: e.object_id,
        occurred_at: iso8601_ms(e.latest.occurred_at_ms()),
        received_at: iso8601_ms(e.received_at_ms),
        source_ids: e.source_ids,
        record: None,
        changes: None,
        merged_ids: None,
        privacy: None,
        association: None,
        hubspot,
    };
    match &e.what {
        RecordEventKind::Association(a) => {
            body.association = Some(AssociationBody {
                from_id: a.from_id.as_deref(),
                to_id: a.to_id.as_deref(),
                kind: a.association_type.as_deref(),
                removed: a.removed,
            });
        }
        RecordEventKind::Record(forward) => {
            body.kind = forward.event_type();
            match forward {
                Forward::Created(r) | Forward::Restored(r) => body.record = Some(r),
                Forward::Changed(changes) => body.changes = Some(changes),
                Forward::Merged {
                    record,
                    changes,
                    merged_ids,
                } => {
                    body.record = Some(record);
                    body.changes = Some(changes);
                    body.merged_ids = Some(merged_ids);
                }
                Forward::Deleted { privacy } => body.privacy = Some(*privacy),
            }
        }
    }
    // Strings, numbers, JSON values and a valid RawValue always serialise.
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

impl WebhookVerifyError {
    /// Stable code: `webhook_timestamp_invalid`, `webhook_timestamp_out_of_window` or
    /// `webhook_signature_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TimestampInvalid => "webhook_timestamp_invalid",
            Self::TimestampOutOfWindow => "webhook_timestamp_out_of_window",
            Self::Mismatch => "webhook_signature_mismatch",
        }
    }
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

    #[test]
    fn group_ids_are_stable_and_order_free() {
        assert_eq!(group_id(&["hs1_1_-_-_1_5_9"]), "hs1_1_-_-_1_5_9");
        let a = group_id(&["hs1_b", "hs1_a"]);
        assert_eq!(a, group_id(&["hs1_a", "hs1_b", "hs1_a"]));
        assert!(a.starts_with("hsg1_") && a.len() == 45, "{a}");
        assert_ne!(a, group_id(&["hs1_a", "hs1_c"]));
    }

    #[test]
    fn record_event_shapes() {
        use serde_json::json;
        let text = r#"{"eventId":7,"subscriptionId":3,"portalId":33,"occurredAt":1564113600000,"subscriptionType":"contact.propertyChange","objectId":5,"propertyName":"email","propertyValue":"x@y.z","appId":1}"#;
        let latest = Event::from_json(text).unwrap();
        let sources = ["hs1_a", "hs1_b"];
        let id = group_id(&sources);
        let changed = Forward::Changed(vec![Change {
            field: "email".into(),
            old: Some(json!("a@b.c")),
            new: json!("x@y.z"),
        }]);
        let body = record_event_body(&RecordEvent {
            id: &id,
            source_ids: &sources,
            latest: &latest,
            received_at_ms: 1_564_113_601_500,
            object_id: "5",
            what: RecordEventKind::Record(&changed),
        });
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["schema"], SCHEMA_V1);
        assert_eq!(v["id"], id.as_str());
        assert_eq!(v["type"], "hubspot-edge.record.changed");
        assert_eq!(v["objectType"], "contact");
        assert_eq!(v["objectId"], "5");
        assert_eq!(v["sourceIds"], json!(["hs1_a", "hs1_b"]));
        assert_eq!(
            v["changes"],
            json!([{"field":"email","old":"a@b.c","new":"x@y.z"}])
        );
        assert_eq!(v["hubspot"]["eventId"], 7);
        assert!(v.get("record").is_none() && v.get("mergedIds").is_none());

        let mut record = Record::new();
        record.insert("email", json!("x@y.z"));
        let merged = Forward::Merged {
            record,
            changes: Vec::new(),
            merged_ids: vec!["6".into()],
        };
        let body = record_event_body(&RecordEvent {
            id: "hs1_a",
            source_ids: &sources[..1],
            latest: &latest,
            received_at_ms: 0,
            object_id: "5",
            what: RecordEventKind::Record(&merged),
        });
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "hubspot-edge.record.merged");
        assert_eq!(v["record"], json!({"email":"x@y.z"}));
        assert_eq!(v["mergedIds"], json!(["6"]));
        assert_eq!(v["changes"], json!([]));

        let association = Association {
            from_id: Some("5".into()),
            to_id: Some("9".into()),
            association_type: Some("CONTACT_TO_COMPANY".into()),
            removed: true,
        };
        let body = record_event_body(&RecordEvent {
            id: "hs1_a",
            source_ids: &sources[..1],
            latest: &latest,
            received_at_ms: 0,
            object_id: "5",
            what: RecordEventKind::Association(&association),
        });
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["type"], "hubspot-edge.association.changed");
        assert_eq!(
            v["association"],
            json!({"fromId":"5","toId":"9","type":"CONTACT_TO_COMPANY","removed":true})
        );
    }
}
