//! The Rust side of the `hubspot-edge` npm package: the core's functions through
//! wasm-bindgen, with plain arguments (strings, bytes, numbers) and JSON where a structure
//! crosses. `bindings/npm/index.js` wraps them in the package's JavaScript API and turns the
//! errors (JSON `{"kind", "code", "message"}`) into error classes with the stable `code`.

use std::collections::BTreeMap;

use hubspot_edge_core::dedupe::DedupeKey;
use hubspot_edge_core::diff::diff;
use hubspot_edge_core::event::parse_batch;
use hubspot_edge_core::filter::{Filter as CoreFilter, Verdict};
use hubspot_edge_core::mapping::{Mapping as CoreMapping, ObjectMap, Record};
use hubspot_edge_core::outbound::WebhookSecret;
use hubspot_edge_core::signature::{
    sign_v1 as core_sign_v1, sign_v2 as core_sign_v2, sign_v3 as core_sign_v3, ClientSecret,
    LegacySignatures, SignedRequest, Verifier,
};
use serde_json::{json, Value};
use wasm_bindgen::prelude::*;

/// An error for the JavaScript side: `{"kind", "code", "message"}` as a string.
fn error(kind: &str, code: &str, message: &str) -> JsValue {
    JsValue::from_str(&json!({"kind": kind, "code": code, "message": message}).to_string())
}

/// Milliseconds as JavaScript numbers carry them (whole, non-negative; others count as 0).
fn ms(n: f64) -> u64 {
    if n.is_finite() && n >= 0.0 {
        // A JavaScript time in ms fits in 2^53.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let v = n as u64;
        v
    } else {
        0
    }
}

/// Headers from a JSON array of `[name, value]` pairs.
fn header_map(pairs_json: &str) -> Result<http::HeaderMap, JsValue> {
    let pairs: Vec<(String, String)> = serde_json::from_str(pairs_json)
        .map_err(|e| error("SignatureError", "header_invalid", &e.to_string()))?;
    let mut map = http::HeaderMap::new();
    for (name, value) in pairs {
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) else {
            return Err(error(
                "SignatureError",
                "header_invalid",
                &format!("not a valid header: {name:?}"),
            ));
        };
        map.append(n, v);
    }
    Ok(map)
}

/// Verifies a HubSpot request signature; the version that verified.
///
/// # Errors
/// A `SignatureError` with the core's code.
#[wasm_bindgen(js_name = verifySignature)]
#[allow(clippy::too_many_arguments)]
pub fn verify_signature(
    secret: &str,
    method: &str,
    url: &str,
    headers_json: &str,
    body: &[u8],
    now_ms: f64,
    allow_legacy: bool,
    max_age_ms: f64,
) -> Result<String, JsValue> {
    let headers = header_map(headers_json)?;
    let verifier = Verifier::new(ClientSecret::new(secret))
        .with_max_age_ms(ms(max_age_ms))
        .with_legacy(if allow_legacy {
            LegacySignatures::Accept
        } else {
            LegacySignatures::Reject
        });
    let request = SignedRequest {
        method,
        uri: url,
        headers: &headers,
        body,
    };
    verifier
        .verify(&request, ms(now_ms))
        .map(|v| v.as_str().to_owned())
        .map_err(|e| error("SignatureError", e.code(), &e.to_string()))
}

/// The `X-HubSpot-Signature-v3` value.
#[wasm_bindgen(js_name = signV3)]
pub fn sign_v3(secret: &str, method: &str, url: &str, body: &[u8], timestamp_ms: f64) -> String {
    core_sign_v3(
        &ClientSecret::new(secret),
        method,
        url,
        body,
        &ms(timestamp_ms).to_string(),
    )
}

/// The v2 `X-HubSpot-Signature` value.
#[wasm_bindgen(js_name = signV2)]
pub fn sign_v2(secret: &str, method: &str, url: &str, body: &[u8]) -> String {
    core_sign_v2(&ClientSecret::new(secret), method, url, body)
}

/// The v1 `X-HubSpot-Signature` value.
#[wasm_bindgen(js_name = signV1)]
pub fn sign_v1(secret: &str, body: &[u8]) -> String {
    core_sign_v1(&ClientSecret::new(secret), body)
}

/// Parses a webhook body: a JSON array with, per element, its byte span in `body`
/// (`start`, `end`: JavaScript decodes the event only when asked) and either the event's facts
/// (`dedupeKey`, `subscriptionType`, `objectType`, `portalId`, `objectId`, and `verdict` with
/// a filter) or `error` (its code).
///
/// # Errors
/// An `EventError` (`batch_malformed`) when the body is not a JSON array.
#[wasm_bindgen(js_name = parseEvents)]
pub fn parse_events(body: &[u8]) -> Result<String, JsValue> {
    events_json(body, None)
}

fn events_json(body: &[u8], filter: Option<&CoreFilter>) -> Result<String, JsValue> {
    let elements = parse_batch(body).map_err(|e| error("EventError", e.code(), &e.to_string()))?;
    let base = body.as_ptr() as usize;
    let out: Vec<Value> = elements
        .iter()
        .map(|element| {
            let start = element.raw.as_ptr() as usize - base;
            let end = start + element.raw.len();
            match &element.event {
                Ok(event) => {
                    let mut v = json!({
                        "start": start,
                        "end": end,
                        "dedupeKey": DedupeKey::of(event).as_str(),
                        "subscriptionType": event.subscription_type(),
                        "objectType": event.object_type(),
                        "portalId": event.portal_id(),
                        "objectId": event.object_id(),
                    });
                    if let Some(f) = filter {
                        v["verdict"] = Value::from(match f.decide(event) {
                            Verdict::Keep => "keep",
                            Verdict::Drop(reason) => reason.code(),
                        });
                    }
                    v
                }
                Err(e) => json!({"start": start, "end": end, "error": e.code()}),
            }
        })
        .collect();
    Ok(Value::Array(out).to_string())
}

/// A compiled filter (the Worker's `FILTER_RULES`).
#[wasm_bindgen]
#[derive(Debug, Clone)]
pub struct Filter {
    inner: CoreFilter,
}

#[wasm_bindgen]
impl Filter {
    /// Compiles `rules` (JSON).
    ///
    /// # Errors
    /// A `ConfigError` (`filter_config_invalid`).
    #[wasm_bindgen(constructor)]
    pub fn new(rules: &str) -> Result<Filter, JsValue> {
        CoreFilter::from_json(rules)
            .map(|inner| Self { inner })
            .map_err(|e| error("ConfigError", e.code(), &e.to_string()))
    }

    /// [`parse_events`] with each event's `verdict`.
    ///
    /// # Errors
    /// As [`parse_events`].
    #[wasm_bindgen(js_name = parseEvents)]
    pub fn parse_events(&self, body: &[u8]) -> Result<String, JsValue> {
        events_json(body, Some(&self.inner))
    }
}

/// A field map (the Worker's `ENRICHMENT_MAP`).
#[wasm_bindgen]
#[derive(Debug)]
pub struct Mapping {
    inner: CoreMapping,
}

impl Mapping {
    fn object(&self, object_type: &str) -> Result<&ObjectMap, JsValue> {
        self.inner.object(object_type).ok_or_else(|| {
            error(
                "MappingError",
                "mapping_object_unknown",
                &format!("the map has no object type {object_type:?}"),
            )
        })
    }
}

fn record_of(json: &str) -> Result<Record, JsValue> {
    serde_json::from_str(json).map_err(|e| error("MappingError", "record_invalid", &e.to_string()))
}

#[wasm_bindgen]
impl Mapping {
    /// Reads `config` (JSON).
    ///
    /// # Errors
    /// A `ConfigError` (`mapping_config_invalid`, …).
    #[wasm_bindgen(constructor)]
    pub fn new(config: &str) -> Result<Mapping, JsValue> {
        CoreMapping::from_json(config)
            .map(|inner| Self { inner })
            .map_err(|e| error("ConfigError", e.code(), &e.to_string()))
    }

    /// HubSpot properties (JSON object of text or null) to the record (JSON).
    ///
    /// # Errors
    /// A `MappingError` with the mapping's code.
    #[wasm_bindgen(js_name = toRecord)]
    pub fn to_record(&self, object_type: &str, properties_json: &str) -> Result<String, JsValue> {
        let properties: BTreeMap<String, Option<String>> = serde_json::from_str(properties_json)
            .map_err(|e| error("MappingError", "properties_invalid", &e.to_string()))?;
        let record = self
            .object(object_type)?
            .to_destination(&properties)
            .map_err(|e| error("MappingError", e.code(), &e.to_string()))?;
        Ok(serde_json::to_string(&record).unwrap_or_default())
    }

    /// A record (JSON) back to HubSpot property values (JSON object of text).
    ///
    /// # Errors
    /// A `MappingError` with the mapping's code.
    #[wasm_bindgen(js_name = toHubSpot)]
    pub fn to_hubspot(&self, object_type: &str, record_json: &str) -> Result<String, JsValue> {
        let properties = self
            .object(object_type)?
            .to_hubspot(&record_of(record_json)?)
            .map_err(|e| error("MappingError", e.code(), &e.to_string()))?;
        Ok(serde_json::to_string(&properties).unwrap_or_default())
    }

    /// The changes between two records (JSON): a JSON list of `{field, old, new}`.
    ///
    /// # Errors
    /// A `MappingError` for an unknown object type or a record that is not an object.
    pub fn diff(
        &self,
        object_type: &str,
        old_json: &str,
        new_json: &str,
    ) -> Result<String, JsValue> {
        let d = diff(
            self.object(object_type)?,
            &record_of(old_json)?,
            &record_of(new_json)?,
        );
        let changes = d.patch().map(|p| p.changes()).unwrap_or_default();
        Ok(serde_json::to_string(changes).unwrap_or_default())
    }
}

/// A Standard Webhooks secret (`whsec_…`).
#[wasm_bindgen]
pub struct StandardWebhook {
    secret: WebhookSecret,
}

impl std::fmt::Debug for StandardWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StandardWebhook(redacted)")
    }
}

#[wasm_bindgen]
impl StandardWebhook {
    /// Reads `whsec_<base64>`.
    ///
    /// # Errors
    /// A `ConfigError` (`webhook_secret_invalid`).
    #[wasm_bindgen(constructor)]
    pub fn new(secret: &str) -> Result<StandardWebhook, JsValue> {
        WebhookSecret::parse(secret)
            .map(|secret| Self { secret })
            .map_err(|e| error("ConfigError", e.code(), &e.to_string()))
    }

    /// The `webhook-signature` value (`v1,<base64>`).
    pub fn sign(&self, msg_id: &str, timestamp_s: f64, body: &[u8]) -> String {
        self.secret.sign(msg_id, ms(timestamp_s), body)
    }

    /// Verifies the three Standard Webhooks headers' values against `body`.
    ///
    /// # Errors
    /// A `WebhookError` with the core's code.
    pub fn verify(
        &self,
        msg_id: &str,
        timestamp: &str,
        signatures: &str,
        body: &[u8],
        now_s: f64,
        tolerance_s: f64,
    ) -> Result<(), JsValue> {
        self.secret
            .verify(
                msg_id,
                timestamp,
                signatures,
                body,
                ms(now_s),
                ms(tolerance_s),
            )
            .map_err(|e| error("WebhookError", e.code(), &e.to_string()))
    }
}
