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
    sign_v1 as core_sign_v1, sign_v2 as core_sign_v2, sign_v3 as core_sign_v3,
    Challenge as CoreChallenge, ClientSecret, DigestAlgorithm, LegacySignatures, SignatureError,
    SignedRequest, Verifier,
};
use serde_json::json;
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

/// The signature headers a request carried (absent ones as `None`): the only headers the
/// verification reads, passed one by one so that no header list crosses as JSON.
fn signature_headers(values: [Option<String>; 4]) -> Result<http::HeaderMap, JsValue> {
    const NAMES: [&str; 4] = [
        "x-hubspot-signature-v3",
        "x-hubspot-request-timestamp",
        "x-hubspot-signature",
        "x-hubspot-signature-version",
    ];
    let mut map = http::HeaderMap::new();
    for (name, value) in NAMES.iter().zip(values) {
        if let Some(value) = value {
            let v = http::HeaderValue::from_str(&value).map_err(|_| {
                error(
                    "SignatureError",
                    "header_invalid",
                    &format!("not a valid value for {name}"),
                )
            })?;
            map.insert(*name, v);
        }
    }
    Ok(map)
}

fn verifier(secret: &str, allow_legacy: bool, max_age_ms: f64) -> Verifier {
    Verifier::new(ClientSecret::new(secret))
        .with_max_age_ms(ms(max_age_ms))
        .with_legacy(if allow_legacy {
            LegacySignatures::Accept
        } else {
            LegacySignatures::Reject
        })
}

fn signature_error(e: &SignatureError) -> JsValue {
    error("SignatureError", e.code(), &e.to_string())
}

/// Verifies a HubSpot request signature (the digest in wasm); the version that verified.
///
/// # Errors
/// A `SignatureError` with the core's code.
#[wasm_bindgen(js_name = verifySignature)]
#[allow(clippy::too_many_arguments)]
pub fn verify_signature(
    secret: &str,
    method: &str,
    url: &str,
    signature_v3: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
    signature_version: Option<String>,
    body: &[u8],
    now_ms: f64,
    allow_legacy: bool,
    max_age_ms: f64,
) -> Result<String, JsValue> {
    prepare(
        secret,
        method,
        url,
        [signature_v3, timestamp, signature, signature_version],
        body,
        now_ms,
        allow_legacy,
        max_age_ms,
    )?
    .check_in_software()
    .map(|v| v.as_str().to_owned())
    .map_err(|e| signature_error(&e))
}

/// The checks both verifications make before the digest (headers, timestamp window).
#[allow(clippy::too_many_arguments)]
fn prepare(
    secret: &str,
    method: &str,
    url: &str,
    header_values: [Option<String>; 4],
    body: &[u8],
    now_ms: f64,
    allow_legacy: bool,
    max_age_ms: f64,
) -> Result<CoreChallenge, JsValue> {
    let headers = signature_headers(header_values)?;
    let request = SignedRequest {
        method,
        uri: url,
        headers: &headers,
        body,
    };
    verifier(secret, allow_legacy, max_age_ms)
        .challenge(&request, ms(now_ms))
        .map_err(|e| signature_error(&e))
}

/// A verification whose digest the caller computes (WebCrypto: native code, several times
/// faster than SHA-256 in wasm on a 30 KB batch) and hands back to [`Challenge::check`].
#[wasm_bindgen]
pub struct Challenge {
    inner: Option<CoreChallenge>,
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Challenge(redacted)")
    }
}

#[wasm_bindgen]
impl Challenge {
    /// `true` for HMAC-SHA-256 keyed with the secret (v3), `false` for plain SHA-256 (v1, v2).
    #[wasm_bindgen(getter)]
    pub fn hmac(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|c| c.algorithm() == DigestAlgorithm::HmacSha256)
    }

    /// The bytes to digest (for v1 and v2 they begin with the secret: never log them).
    pub fn message(&self) -> Vec<u8> {
        self.inner
            .as_ref()
            .map(|c| c.message().to_vec())
            .unwrap_or_default()
    }

    /// Compares `digest` with the received signature in constant time; the version.
    ///
    /// # Errors
    /// A `SignatureError`: `signature_mismatch`, or `challenge_used` the second time.
    pub fn check(&mut self, digest: &[u8]) -> Result<String, JsValue> {
        let challenge = self.inner.take().ok_or_else(|| {
            error(
                "SignatureError",
                "challenge_used",
                "a challenge is checked once",
            )
        })?;
        challenge
            .check(digest)
            .map(|v| v.as_str().to_owned())
            .map_err(|e| signature_error(&e))
    }
}

/// What [`verify_signature`] decides before the digest (headers, timestamp window), as a
/// [`Challenge`] for the caller's digest.
///
/// # Errors
/// A `SignatureError` with the core's code.
#[wasm_bindgen]
#[allow(clippy::too_many_arguments)]
pub fn challenge(
    secret: &str,
    method: &str,
    url: &str,
    signature_v3: Option<String>,
    timestamp: Option<String>,
    signature: Option<String>,
    signature_version: Option<String>,
    body: &[u8],
    now_ms: f64,
    allow_legacy: bool,
    max_age_ms: f64,
) -> Result<Challenge, JsValue> {
    prepare(
        secret,
        method,
        url,
        [signature_v3, timestamp, signature, signature_version],
        body,
        now_ms,
        allow_legacy,
        max_age_ms,
    )
    .map(|c| Challenge { inner: Some(c) })
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

/// Parses a webhook body: a JSON array with, per element, its byte span in `body` (JavaScript
/// decodes the event only when asked) and either the event's facts or its error code (see
/// `events_json` for the layout).
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
    // Arrays, not objects: no key repeated per event, and JSON.parse builds them fastest.
    // `[start, end, dedupeKey, subscriptionType, objectType, portalId, objectId, verdict]` for
    // an event (verdict `null` without a filter), `[start, end, code]` for an element that is
    // not one; index.js reads them.
    let mut out = Vec::with_capacity(elements.len() * 112 + 2);
    out.push(b'[');
    for (i, element) in elements.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let start = element.raw.as_ptr() as usize - base;
        let end = start + element.raw.len();
        let written = match &element.event {
            Ok(event) => {
                let verdict = filter.map(|f| match f.decide(event) {
                    Verdict::Keep => "keep",
                    Verdict::Drop(reason) => reason.code(),
                });
                serde_json::to_writer(
                    &mut out,
                    &(
                        start,
                        end,
                        DedupeKey::of(event).as_str(),
                        event.subscription_type(),
                        event.object_type(),
                        event.portal_id(),
                        event.object_id(),
                        verdict,
                    ),
                )
            }
            Err(e) => serde_json::to_writer(&mut out, &(start, end, e.code())),
        };
        written.map_err(|e| error("EventError", "batch_malformed", &e.to_string()))?;
    }
    out.push(b']');
    // serde_json writes UTF-8 only.
    String::from_utf8(out).map_err(|e| error("EventError", "batch_malformed", &e.to_string()))
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
