//! HubSpot's side: realistic webhook events and HubSpot-signed requests.
//!
//! ```no_run
//! use hubspot_edge_tests::{HubSpotEvent, HubSpotRequest};
//! # fn demo(base_url: &str) -> hubspot_edge_tests::Result<()> {
//! let id = hubspot_edge_tests::unique_id();
//! let body = HubSpotEvent::batch(&[
//!     HubSpotEvent::property_change("contact", id, "email", "a@example.com"),
//!     HubSpotEvent::creation("deal", id + 1).change_source("IMPORT"),
//! ]);
//! let resp = HubSpotRequest::new(base_url, "client-secret", body).send()?;
//! resp.expect_status(200)?;
//! # Ok(()) }
//! ```

use hubspot_edge_core::dedupe::DedupeKey;
use hubspot_edge_core::event::parse_batch;
use hubspot_edge_core::signature::{
    sign_v1, sign_v2, sign_v3, ClientSecret, HEADER_REQUEST_TIMESTAMP, HEADER_SIGNATURE,
    HEADER_SIGNATURE_V3, HEADER_SIGNATURE_VERSION,
};
use serde_json::{json, Map, Value};

use crate::http::{self, HttpResponse};
use crate::{now_ms, unique_id, Error, Result};

/// The path the Worker receives HubSpot webhooks on.
pub const WEBHOOK_PATH: &str = "/webhooks/hubspot";

/// Default `portalId` of built events.
pub const PORTAL_ID: u64 = 62_515;
/// Default `appId` of built events.
pub const APP_ID: u64 = 54_321;
/// Default `subscriptionId` of built events.
pub const SUBSCRIPTION_ID: u64 = 12_345;

/// One HubSpot webhook event as HubSpot sends it (an element of the JSON array body).
///
/// The constructors fill every field HubSpot sends with realistic values: a fresh
/// `eventId` ([`unique_id`]), `occurredAt` = now, `attemptNumber` 0, the default portal, app
/// and subscription. Chain setters to change any of them, or [`set`](Self::set) /
/// [`remove`](Self::remove) for anything else (including malformed values).
#[derive(Debug, Clone, PartialEq)]
pub struct HubSpotEvent(Map<String, Value>);

impl HubSpotEvent {
    fn base(subscription_type: String) -> Self {
        let mut m = Map::new();
        m.insert("eventId".into(), json!(unique_id()));
        m.insert("subscriptionId".into(), json!(SUBSCRIPTION_ID));
        m.insert("portalId".into(), json!(PORTAL_ID));
        m.insert("appId".into(), json!(APP_ID));
        m.insert("occurredAt".into(), json!(now_ms()));
        m.insert("subscriptionType".into(), json!(subscription_type));
        m.insert("attemptNumber".into(), json!(0));
        m.insert("changeSource".into(), json!("CRM_UI"));
        m.insert("sourceId".into(), json!("userId:47812075"));
        Self(m)
    }

    /// `{object_type}.propertyChange` (e.g. `contact`, `company`, `deal`, `ticket`).
    pub fn property_change(object_type: &str, object_id: u64, property: &str, value: &str) -> Self {
        Self::base(format!("{object_type}.propertyChange"))
            .object_id(object_id)
            .set("propertyName", property)
            .set("propertyValue", value)
    }

    /// `{object_type}.creation`.
    pub fn creation(object_type: &str, object_id: u64) -> Self {
        Self::base(format!("{object_type}.creation"))
            .object_id(object_id)
            .set("changeFlag", "NEW")
    }

    /// `{object_type}.deletion`.
    pub fn deletion(object_type: &str, object_id: u64) -> Self {
        Self::base(format!("{object_type}.deletion"))
            .object_id(object_id)
            .set("changeFlag", "DELETED")
    }

    /// `{object_type}.merge`: `merged` were merged into `primary`, producing `new_object_id`.
    pub fn merge(object_type: &str, primary: u64, merged: &[u64], new_object_id: u64) -> Self {
        Self::base(format!("{object_type}.merge"))
            .object_id(primary)
            .set("primaryObjectId", primary)
            .set("mergedObjectIds", merged.to_vec())
            .set("newObjectId", new_object_id)
            .set("numberOfPropertiesMoved", 4)
    }

    /// `{object_type}.associationChange` from `from` to `to` (e.g. `CONTACT_TO_COMPANY`).
    /// Like HubSpot's, it has no `objectId`, so the forwarded event's `objectId` is null; add
    /// one with [`object_id`](Self::object_id) to make it scriptable at the [`Destination`](crate::Destination).
    pub fn association_change(
        object_type: &str,
        from: u64,
        to: u64,
        association_type: &str,
        removed: bool,
    ) -> Self {
        Self::base(format!("{object_type}.associationChange"))
            .set("associationType", association_type)
            .set("fromObjectId", from)
            .set("toObjectId", to)
            .set("associationRemoved", removed)
            .set("isPrimaryAssociation", false)
    }

    /// A generic-webhook event (`object.propertyChange` etc.) for `object_type_id` such as
    /// `0-3` (deal) or `2-12345` (a custom object).
    pub fn generic(action: &str, object_type_id: &str, object_id: u64) -> Self {
        Self::base(format!("object.{action}"))
            .set("objectTypeId", object_type_id)
            .object_id(object_id)
    }

    /// Sets `objectId` (a JSON number, as HubSpot sends it).
    #[must_use]
    pub fn object_id(self, id: u64) -> Self {
        self.set("objectId", id)
    }

    /// Sets `eventId`.
    #[must_use]
    pub fn event_id(self, id: u64) -> Self {
        self.set("eventId", id)
    }

    /// Sets `portalId`.
    #[must_use]
    pub fn portal_id(self, id: u64) -> Self {
        self.set("portalId", id)
    }

    /// Sets `appId`.
    #[must_use]
    pub fn app_id(self, id: u64) -> Self {
        self.set("appId", id)
    }

    /// Sets `subscriptionId`.
    #[must_use]
    pub fn subscription_id(self, id: u64) -> Self {
        self.set("subscriptionId", id)
    }

    /// Sets `occurredAt` (epoch milliseconds).
    #[must_use]
    pub fn occurred_at(self, ms: u64) -> Self {
        self.set("occurredAt", ms)
    }

    /// Sets `attemptNumber` (HubSpot's retry counter).
    #[must_use]
    pub fn attempt_number(self, n: u64) -> Self {
        self.set("attemptNumber", n)
    }

    /// Sets `changeSource` (`CRM_UI`, `IMPORT`, `API`, `INTEGRATION`, …).
    #[must_use]
    pub fn change_source(self, source: &str) -> Self {
        self.set("changeSource", source)
    }

    /// Sets any field to any JSON value.
    #[must_use]
    pub fn set(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// Removes a field (to build events HubSpot would never send).
    #[must_use]
    pub fn remove(mut self, key: &str) -> Self {
        self.0.remove(key);
        self
    }

    /// A field's value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key)
    }

    /// `objectId`, when it is a number.
    pub fn get_object_id(&self) -> Option<u64> {
        self.0.get("objectId").and_then(Value::as_u64)
    }

    /// The event as a JSON value.
    pub fn to_value(&self) -> Value {
        Value::Object(self.0.clone())
    }

    /// The `webhook-id` the Worker will forward this event under (the core's [`DedupeKey`]).
    ///
    /// # Errors
    /// When the core cannot parse the event (a required field is missing or mistyped).
    pub fn dedupe_key(&self) -> Result<String> {
        let body = Self::batch(std::slice::from_ref(self));
        let batch = parse_batch(&body).map_err(|e| Error::new(e.to_string()))?;
        let element = batch
            .first()
            .ok_or_else(|| Error::new("batch of one parsed to nothing"))?;
        let event = element
            .event
            .as_ref()
            .map_err(|e| Error::new(e.to_string()))?;
        Ok(DedupeKey::of(event).as_str().to_owned())
    }

    /// The JSON array body HubSpot would POST for these events.
    pub fn batch(events: &[HubSpotEvent]) -> Vec<u8> {
        Value::Array(events.iter().map(Self::to_value).collect())
            .to_string()
            .into_bytes()
    }
}

impl From<HubSpotEvent> for Value {
    fn from(e: HubSpotEvent) -> Self {
        Value::Object(e.0)
    }
}

/// Which HubSpot signature a [`HubSpotRequest`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureScheme {
    /// `X-HubSpot-Signature-v3` + `X-HubSpot-Request-Timestamp` (what HubSpot sends today).
    V3,
    /// `X-HubSpot-Signature` (sha256 of secret + body) + `X-HubSpot-Signature-Version: v1`.
    V1,
    /// `X-HubSpot-Signature` (sha256 of secret + method + uri + body) + `…-Version: v2`.
    V2,
    /// No signature headers at all.
    Unsigned,
}

/// A POST as HubSpot would send it, signed with the client secret; tweak anything before
/// [`send`](Self::send) to build the negative cases.
#[derive(Debug, Clone)]
pub struct HubSpotRequest {
    url: String,
    signed_url: Option<String>,
    secret: String,
    body: Vec<u8>,
    signed_body: Option<Vec<u8>>,
    timestamp_ms: Option<String>,
    scheme: SignatureScheme,
    headers: Vec<(String, String)>,
    omit: Vec<String>,
    method: String,
}

impl HubSpotRequest {
    /// A v3-signed `POST {base_url}/webhooks/hubspot` with `body`, timestamped now.
    pub fn new(base_url: &str, secret: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::to_url(
            &format!("{}{WEBHOOK_PATH}", base_url.trim_end_matches('/')),
            secret,
            body,
        )
    }

    /// Like [`new`](Self::new), to a full URL (the URL signed is exactly this one).
    pub fn to_url(url: &str, secret: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            url: url.to_owned(),
            signed_url: None,
            secret: secret.to_owned(),
            body: body.into(),
            signed_body: None,
            timestamp_ms: None,
            scheme: SignatureScheme::V3,
            headers: vec![("content-type".into(), "application/json".into())],
            omit: Vec::new(),
            method: "POST".into(),
        }
    }

    /// Chooses the signature scheme (default [`SignatureScheme::V3`]).
    #[must_use]
    pub fn scheme(mut self, scheme: SignatureScheme) -> Self {
        self.scheme = scheme;
        self
    }

    /// Signs with `secret` instead (a wrong secret gives a well-formed, invalid signature).
    #[must_use]
    pub fn secret(mut self, secret: &str) -> Self {
        secret.clone_into(&mut self.secret);
        self
    }

    /// `X-HubSpot-Request-Timestamp` in epoch milliseconds (default: now at send time).
    #[must_use]
    pub fn timestamp_ms(mut self, ms: u64) -> Self {
        self.timestamp_ms = Some(ms.to_string());
        self
    }

    /// The exact timestamp header string (signed as-is), for malformed timestamps.
    #[must_use]
    pub fn timestamp_raw(mut self, ts: &str) -> Self {
        self.timestamp_ms = Some(ts.to_owned());
        self
    }

    /// Signs this URL instead of the one requested (e.g. the public URL behind a proxy).
    #[must_use]
    pub fn sign_url(mut self, url: &str) -> Self {
        self.signed_url = Some(url.to_owned());
        self
    }

    /// Signs these bytes but sends the original body (a tampered-in-transit body).
    #[must_use]
    pub fn sign_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.signed_body = Some(body.into());
        self
    }

    /// Uses another HTTP method (signed with it too).
    #[must_use]
    pub fn method(mut self, method: &str) -> Self {
        method.clone_into(&mut self.method);
        self
    }

    /// Adds a header, or replaces the computed one of the same name (case-insensitive), e.g.
    /// a hand-made `X-HubSpot-Signature-v3`.
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// Leaves out a header, computed or added (e.g. `X-HubSpot-Request-Timestamp`).
    #[must_use]
    pub fn without_header(mut self, name: &str) -> Self {
        self.omit.push(name.to_ascii_lowercase());
        self
    }

    /// The headers [`send`](Self::send) would send, signature included.
    pub fn headers(&self) -> Vec<(String, String)> {
        let ts = self
            .timestamp_ms
            .clone()
            .unwrap_or_else(|| now_ms().to_string());
        let secret = ClientSecret::new(&self.secret);
        let url = self.signed_url.as_deref().unwrap_or(&self.url);
        let body = self.signed_body.as_deref().unwrap_or(&self.body);
        let mut computed: Vec<(String, String)> = match self.scheme {
            SignatureScheme::V3 => vec![
                (
                    HEADER_SIGNATURE_V3.into(),
                    sign_v3(&secret, &self.method, url, body, &ts),
                ),
                (HEADER_REQUEST_TIMESTAMP.into(), ts),
            ],
            SignatureScheme::V1 => vec![
                (HEADER_SIGNATURE.into(), sign_v1(&secret, body)),
                (HEADER_SIGNATURE_VERSION.into(), "v1".into()),
            ],
            SignatureScheme::V2 => vec![
                (
                    HEADER_SIGNATURE.into(),
                    sign_v2(&secret, &self.method, url, body),
                ),
                (HEADER_SIGNATURE_VERSION.into(), "v2".into()),
            ],
            SignatureScheme::Unsigned => Vec::new(),
        };
        computed.retain(|(k, _)| !self.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(k)));
        computed.extend(self.headers.iter().cloned());
        computed.retain(|(k, _)| !self.omit.iter().any(|o| o.eq_ignore_ascii_case(k)));
        computed
    }

    /// Sends it; any status is an answer.
    ///
    /// # Errors
    /// Transport failures only.
    pub fn send(&self) -> Result<HttpResponse> {
        let headers = self.headers();
        let refs: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        http::request(&self.method, &self.url, &refs, Some(&self.body))
    }
}

/// `POST {base_url}{path}` with `body`, v3-signed with `secret` at `timestamp_ms`.
///
/// # Errors
/// Transport failures only; any status is returned.
pub fn signed_post(
    base_url: &str,
    path: &str,
    body: &[u8],
    secret: &str,
    timestamp_ms: u64,
) -> Result<HttpResponse> {
    let url = format!("{}{path}", base_url.trim_end_matches('/'));
    HubSpotRequest::to_url(&url, secret, body)
        .timestamp_ms(timestamp_ms)
        .send()
}

/// `POST {base_url}{path}` with `body`, v1-signed with `secret`.
///
/// # Errors
/// Transport failures only; any status is returned.
pub fn signed_post_v1(
    base_url: &str,
    path: &str,
    body: &[u8],
    secret: &str,
) -> Result<HttpResponse> {
    let url = format!("{}{path}", base_url.trim_end_matches('/'));
    HubSpotRequest::to_url(&url, secret, body)
        .scheme(SignatureScheme::V1)
        .send()
}

#[cfg(test)]
mod tests {
    use hubspot_edge_core::signature::{SignedRequest, Verifier};

    use super::*;

    #[test]
    fn events_parse_in_the_core_and_have_dedupe_keys() {
        let e = HubSpotEvent::property_change("contact", 123, "email", "a@b.c")
            .event_id(1)
            .occurred_at(1_564_113_600_000);
        assert_eq!(
            e.dedupe_key().unwrap(),
            "hs1_62515_54321_12345_1_123_1564113600000"
        );
        let all = [
            e,
            HubSpotEvent::creation("deal", 1),
            HubSpotEvent::deletion("company", 2),
            HubSpotEvent::merge("contact", 3, &[4, 5], 6),
            HubSpotEvent::association_change("contact", 7, 8, "CONTACT_TO_COMPANY", false),
            HubSpotEvent::generic("creation", "2-12345", 9),
        ];
        let body = HubSpotEvent::batch(&all);
        let parsed = parse_batch(&body).unwrap();
        assert_eq!(parsed.len(), all.len());
        for el in &parsed {
            assert!(el.event.is_ok(), "{}", el.raw);
        }
        assert_eq!(parsed[3].event.as_ref().unwrap().action(), "merge");
        assert_eq!(parsed[4].event.as_ref().unwrap().object_id(), None);
    }

    #[test]
    fn v3_headers_verify_in_the_core_and_can_be_overridden() {
        let url = "http://127.0.0.1:8787/webhooks/hubspot";
        let req = HubSpotRequest::to_url(url, "s3cret", b"[]".to_vec()).timestamp_ms(1_000);
        let h = req.headers();
        let get = |name: &str| {
            h.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let sig = get(HEADER_SIGNATURE_V3).unwrap();
        assert_eq!(
            sig,
            sign_v3(&ClientSecret::new("s3cret"), "POST", url, b"[]", "1000")
        );
        assert_eq!(get(HEADER_REQUEST_TIMESTAMP).as_deref(), Some("1000"));
        let mut map = ::http::HeaderMap::new();
        for (k, v) in &h {
            map.insert(
                ::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let signed = SignedRequest {
            method: "POST",
            uri: url,
            headers: &map,
            body: b"[]",
        };
        Verifier::new(ClientSecret::new("s3cret"))
            .verify(&signed, 1_000)
            .unwrap();
        assert!(Verifier::new(ClientSecret::new("other"))
            .verify(&signed, 1_000)
            .is_err());
        let h = req
            .clone()
            .header("X-HubSpot-Signature-v3", "bogus")
            .without_header("x-hubspot-request-timestamp")
            .headers();
        assert!(h
            .iter()
            .any(|(k, v)| k == "x-hubspot-signature-v3" && v == "bogus"));
        assert_eq!(
            h.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(HEADER_SIGNATURE_V3))
                .count(),
            1
        );
        assert!(!h.iter().any(|(k, _)| k == HEADER_REQUEST_TIMESTAMP));
        let v1 = HubSpotRequest::to_url(url, "s3cret", b"[]".to_vec())
            .scheme(SignatureScheme::V1)
            .headers();
        assert!(v1
            .iter()
            .any(|(k, v)| k == HEADER_SIGNATURE_VERSION && v == "v1"));
    }
}
