//! `hubspot_edge._core`: the Rust side of the `hubspot-edge` Python package. The Python side
//! (`python/hubspot_edge/`) re-exports these with their types (`__init__.pyi`) and defines the
//! exceptions raised here, each carrying the core's stable code.
//!
//! The same code as the Worker: signature checks in constant time, the event parser, filters,
//! dedupe keys, field maps and diffs (`hubspot-edge-core`).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

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
use pyo3::prelude::*;

/// An instance of `hubspot_edge.errors.<class>(code, message)` as the error to raise.
fn error(py: Python<'_>, class: &str, code: &str, message: &str) -> PyErr {
    let made = py
        .import("hubspot_edge.errors")
        .and_then(|m| m.getattr(class))
        .and_then(|c| c.call1((code, message)));
    match made {
        Ok(instance) => PyErr::from_value(instance),
        Err(e) => e,
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A Python object from JSON text (`json.loads`).
fn from_json<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// JSON text of a Python object (`json.dumps`).
fn to_json(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<String> {
    py.import("json")?
        .call_method1("dumps", (value,))?
        .extract::<String>()
}

/// Headers from a mapping (or an iterable of pairs), names case-insensitive.
fn header_map(py: Python<'_>, headers: &Bound<'_, PyAny>) -> PyResult<http::HeaderMap> {
    let pairs = if headers.hasattr("items")? {
        headers.call_method0("items")?
    } else {
        headers.clone()
    };
    let mut map = http::HeaderMap::new();
    for item in pairs.try_iter()? {
        let (name, value): (String, String) = item?.extract()?;
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) else {
            return Err(error(
                py,
                "SignatureError",
                "header_invalid",
                &format!("not a valid header: {name:?}"),
            ));
        };
        map.append(name, value);
    }
    Ok(map)
}

/// Verifies a HubSpot request signature (v3; v1 and v2 too with `allow_legacy`), in constant
/// time. Returns the version that verified (`"v3"`, `"v2"`, `"v1"`).
#[pyfunction]
#[pyo3(signature = (secret, *, method, url, headers, body, now_ms=None, allow_legacy=false, max_age_ms=300_000))]
#[allow(clippy::too_many_arguments)]
fn verify_signature(
    py: Python<'_>,
    secret: &str,
    method: &str,
    url: &str,
    headers: &Bound<'_, PyAny>,
    body: &[u8],
    now_ms: Option<u64>,
    allow_legacy: bool,
    max_age_ms: u64,
) -> PyResult<&'static str> {
    let headers = header_map(py, headers)?;
    let verifier = Verifier::new(ClientSecret::new(secret))
        .with_max_age_ms(max_age_ms)
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
        .verify(&request, now_ms.unwrap_or_else(self::now_ms))
        .map(|v| v.as_str())
        .map_err(|e| error(py, "SignatureError", e.code(), &e.to_string()))
}

/// The `X-HubSpot-Signature-v3` value for a request.
#[pyfunction]
#[pyo3(signature = (secret, *, method, url, body, timestamp_ms))]
fn sign_v3(secret: &str, method: &str, url: &str, body: &[u8], timestamp_ms: u64) -> String {
    core_sign_v3(
        &ClientSecret::new(secret),
        method,
        url,
        body,
        &timestamp_ms.to_string(),
    )
}

/// The `X-HubSpot-Signature` value of a v2 request.
#[pyfunction]
#[pyo3(signature = (secret, *, method, url, body))]
fn sign_v2(secret: &str, method: &str, url: &str, body: &[u8]) -> String {
    core_sign_v2(&ClientSecret::new(secret), method, url, body)
}

/// The `X-HubSpot-Signature` value of a v1 request.
#[pyfunction]
#[pyo3(signature = (secret, *, body))]
fn sign_v1(secret: &str, body: &[u8]) -> String {
    core_sign_v1(&ClientSecret::new(secret), body)
}

/// Parses a webhook body (a JSON array of events) into dicts: each event's own fields under
/// `"event"`, with `"dedupe_key"`, `"subscription_type"`, `"object_type"`, `"portal_id"`,
/// `"object_id"`, and `"verdict"` (`"keep"` or why the filter drops it) when `filter` is
/// given. An element that is not an event comes back as `{"error": code, "raw": text}`.
#[pyfunction]
#[pyo3(signature = (body, filter=None))]
fn parse_events<'py>(
    py: Python<'py>,
    body: &[u8],
    filter: Option<&Filter>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let elements =
        parse_batch(body).map_err(|e| error(py, "EventError", e.code(), &e.to_string()))?;
    let mut out = Vec::with_capacity(elements.len());
    for element in elements {
        let dict = pyo3::types::PyDict::new(py);
        match &element.event {
            Ok(event) => {
                dict.set_item("event", from_json(py, element.raw)?)?;
                dict.set_item("dedupe_key", DedupeKey::of(event).as_str())?;
                dict.set_item("subscription_type", event.subscription_type())?;
                dict.set_item("object_type", event.object_type())?;
                dict.set_item("portal_id", event.portal_id().get())?;
                dict.set_item("object_id", event.object_id().map(|id| id.get()))?;
                if let Some(f) = filter {
                    let verdict = match f.inner.decide(event) {
                        Verdict::Keep => "keep",
                        Verdict::Drop(reason) => reason.code(),
                    };
                    dict.set_item("verdict", verdict)?;
                }
            }
            Err(e) => {
                dict.set_item("error", e.code())?;
                dict.set_item("raw", element.raw)?;
            }
        }
        out.push(dict.into_any());
    }
    Ok(out)
}

/// A compiled filter (the Worker's `FILTER_RULES` JSON).
#[pyclass(frozen, module = "hubspot_edge")]
struct Filter {
    inner: CoreFilter,
}

#[pymethods]
impl Filter {
    #[new]
    fn new(py: Python<'_>, rules: &str) -> PyResult<Self> {
        CoreFilter::from_json(rules)
            .map(|inner| Self { inner })
            .map_err(|e| error(py, "ConfigError", e.code(), &e.to_string()))
    }
}

/// A field map (the Worker's `ENRICHMENT_MAP` JSON).
#[pyclass(frozen, module = "hubspot_edge")]
struct Mapping {
    inner: CoreMapping,
}

impl Mapping {
    fn object(&self, py: Python<'_>, object_type: &str) -> PyResult<&ObjectMap> {
        self.inner.object(object_type).ok_or_else(|| {
            error(
                py,
                "MappingError",
                "mapping_object_unknown",
                &format!("the map has no object type {object_type:?}"),
            )
        })
    }
}

fn record_of(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<Record> {
    serde_json::from_str(&to_json(py, value)?)
        .map_err(|e| error(py, "MappingError", "record_invalid", &e.to_string()))
}

#[pymethods]
impl Mapping {
    #[new]
    fn new(py: Python<'_>, config: &str) -> PyResult<Self> {
        CoreMapping::from_json(config)
            .map(|inner| Self { inner })
            .map_err(|e| error(py, "ConfigError", e.code(), &e.to_string()))
    }

    /// HubSpot properties (text or None) to your record.
    fn to_record<'py>(
        &self,
        py: Python<'py>,
        object_type: &str,
        properties: BTreeMap<String, Option<String>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let record = self
            .object(py, object_type)?
            .to_destination(&properties)
            .map_err(|e| error(py, "MappingError", e.code(), &e.to_string()))?;
        from_json(py, &serde_json::to_string(&record).unwrap_or_default())
    }

    /// Your record back to HubSpot property values (text).
    fn to_hubspot(
        &self,
        py: Python<'_>,
        object_type: &str,
        record: &Bound<'_, PyAny>,
    ) -> PyResult<BTreeMap<String, String>> {
        let record = record_of(py, record)?;
        self.object(py, object_type)?
            .to_hubspot(&record)
            .map_err(|e| error(py, "MappingError", e.code(), &e.to_string()))
    }

    /// The changes between two of your records, typed by the map: a list of
    /// `{"field", "old", "new"}` (empty when nothing changed).
    fn diff<'py>(
        &self,
        py: Python<'py>,
        object_type: &str,
        old: &Bound<'_, PyAny>,
        new: &Bound<'_, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let map = self.object(py, object_type)?;
        let d = diff(map, &record_of(py, old)?, &record_of(py, new)?);
        let changes = d.patch().map(|p| p.changes()).unwrap_or_default();
        from_json(py, &serde_json::to_string(changes).unwrap_or_default())
    }
}

/// A Standard Webhooks secret (`whsec_…`): signs what you send, verifies what you receive.
#[pyclass(frozen, module = "hubspot_edge")]
struct StandardWebhook {
    secret: WebhookSecret,
}

#[pymethods]
impl StandardWebhook {
    #[new]
    fn new(py: Python<'_>, secret: &str) -> PyResult<Self> {
        WebhookSecret::parse(secret)
            .map(|secret| Self { secret })
            .map_err(|e| error(py, "ConfigError", e.code(), &e.to_string()))
    }

    /// The `webhook-signature` value (`v1,<base64>`) for a message.
    fn sign(&self, msg_id: &str, timestamp_s: u64, body: &[u8]) -> String {
        self.secret.sign(msg_id, timestamp_s, body)
    }

    /// Verifies `webhook-id`, `webhook-timestamp` and `webhook-signature` (from `headers`)
    /// against `body`, in constant time; raises `WebhookError` with the code.
    #[pyo3(signature = (headers, body, now_s=None, tolerance_s=300))]
    fn verify(
        &self,
        py: Python<'_>,
        headers: &Bound<'_, PyAny>,
        body: &[u8],
        now_s: Option<u64>,
        tolerance_s: u64,
    ) -> PyResult<()> {
        let headers = header_map(py, headers)?;
        let get = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        self.secret
            .verify(
                &get("webhook-id"),
                &get("webhook-timestamp"),
                &get("webhook-signature"),
                body,
                now_s.unwrap_or_else(|| now_ms() / 1000),
                tolerance_s,
            )
            .map_err(|e| error(py, "WebhookError", e.code(), &e.to_string()))
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(verify_signature, m)?)?;
    m.add_function(wrap_pyfunction!(sign_v3, m)?)?;
    m.add_function(wrap_pyfunction!(sign_v2, m)?)?;
    m.add_function(wrap_pyfunction!(sign_v1, m)?)?;
    m.add_function(wrap_pyfunction!(parse_events, m)?)?;
    m.add_class::<Filter>()?;
    m.add_class::<Mapping>()?;
    m.add_class::<StandardWebhook>()?;
    Ok(())
}
