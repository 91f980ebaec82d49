//! Interpreting HubSpot responses: typed success bodies, the error body (every field optional,
//! docs/hubspot.md §4.5) mapped to [`ApiError`], and the `X-HubSpot-RateLimit-*` headers (§5.2).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A CRM record (`SimplePublicObject`, docs/hubspot.md §4.1).
///
/// A property without a value may be `null` or missing (docs/hubspot.md §4.1, §8.11): `null` is
/// kept as `None`, a missing key is simply absent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimpleObject {
    /// Record ID.
    #[serde(deserialize_with = "id_string")]
    pub id: String,
    /// Property values, all strings.
    #[serde(default)]
    pub properties: BTreeMap<String, Option<String>>,
    /// The history of the properties asked for with `propertiesWithHistory` (docs/hubspot.md §4.1),
    /// by property, in the order HubSpot sent them: HubSpot documents no order, so sort by
    /// [`HistoryValue::timestamp_ms`] before relying on one. Empty when none was asked for.
    #[serde(default)]
    pub properties_with_history: BTreeMap<String, Vec<HistoryValue>>,
    /// ISO 8601 creation time.
    #[serde(default)]
    pub created_at: Option<String>,
    /// ISO 8601 last update time.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Whether the record is archived.
    #[serde(default)]
    pub archived: bool,
    /// ISO 8601 time the record was archived (list with `archived=true`, docs/hubspot.md §4.1:
    /// `SimplePublicObject.archivedAt`); `None` for live records.
    #[serde(default)]
    pub archived_at: Option<String>,
    /// The input's trace ID, echoed on batch writes.
    #[serde(default)]
    pub object_write_trace_id: Option<String>,
    /// Upsert only: `true` when the record was created.
    #[serde(default)]
    pub new: Option<bool>,
}

/// One past value of a property (`ValueWithTimestamp`, docs/hubspot.md §4.1): the value it took and
/// when. The source fields (`sourceType`, `sourceId`, `sourceLabel`, `updatedByUserId`) are not
/// kept: nothing here needs them, and they may name people.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HistoryValue {
    /// The value it took (`null` or `""` when it was cleared).
    #[serde(default)]
    pub value: Option<String>,
    /// When, as HubSpot sent it: ISO 8601 (the spec's `date-time`), or Unix milliseconds.
    #[serde(default, deserialize_with = "optional_text")]
    pub timestamp: Option<String>,
}

impl HistoryValue {
    /// [`Self::timestamp`] in Unix milliseconds; `None` when absent or unreadable.
    pub fn timestamp_ms(&self) -> Option<i64> {
        let text = self.timestamp.as_deref()?.trim();
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text.parse().ok();
        }
        crate::mapping::calendar::parse_datetime(text).ok()
    }
}

/// A batch response: 200/201, or 207 when some inputs failed (docs/hubspot.md §4.1).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct BatchResponse<T = SimpleObject> {
    /// `COMPLETE`, `PENDING`, `PROCESSING` or `CANCELED`.
    #[serde(default)]
    pub status: String,
    /// The inputs that succeeded.
    #[serde(default = "Vec::new")]
    pub results: Vec<T>,
    /// One entry per failure; see [`Self::errors_by_input`].
    #[serde(default)]
    pub errors: Vec<ErrorDetail>,
}

impl<T> BatchResponse<T> {
    /// Maps each error back to the inputs it concerns: `keys[i]` is what identifies input `i`
    /// (the id for read, update, upsert and archive; the `objectWriteTraceId` for create).
    ///
    /// An error is matched through its `context.ids`, `context.id` and
    /// `context.objectWriteTraceId` values (docs/hubspot.md §4.1, §4.5: "Each error's
    /// `context.objectWriteTraceId` points back to the input"); one error may concern several
    /// inputs. Returns `(input index, error)` pairs, and separately the errors that matched no
    /// input (HubSpot does not always say which input failed: treat those as concerning the
    /// whole chunk).
    pub fn errors_by_input<'a>(
        &'a self,
        keys: &[&str],
    ) -> (Vec<(usize, &'a ErrorDetail)>, Vec<&'a ErrorDetail>) {
        let mut matched = Vec::new();
        let mut unmatched = Vec::new();
        for err in &self.errors {
            let before = matched.len();
            for field in ["ids", "id", "objectWriteTraceId"] {
                for value in err.context_values(field) {
                    for (i, key) in keys.iter().enumerate() {
                        if *key == value && !matched[before..].iter().any(|&(j, _)| j == i) {
                            matched.push((i, err));
                        }
                    }
                }
            }
            if matched.len() == before {
                unmatched.push(err);
            }
        }
        (matched, unmatched)
    }
}

/// A list or search page (docs/hubspot.md §4.2, §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The records.
    pub results: Vec<SimpleObject>,
    /// `paging.next.after`: the cursor of the next page; `None` on the last page.
    pub next_after: Option<String>,
    /// Search only: total matches (capped at 10,000 pages' reach by HubSpot).
    pub total: Option<u64>,
}

impl<'de> Deserialize<'de> for Page {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Next {
            after: Option<String>,
        }
        #[derive(Deserialize)]
        struct Paging {
            next: Option<Next>,
        }
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            results: Vec<SimpleObject>,
            paging: Option<Paging>,
            total: Option<u64>,
        }
        let raw = Raw::deserialize(d)?;
        Ok(Self {
            results: raw.results,
            next_after: raw.paging.and_then(|p| p.next).and_then(|n| n.after),
            total: raw.total,
        })
    }
}

/// A `{"id": …}` reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ObjectRef {
    /// Record ID (HubSpot sends a string or a number; kept as a string).
    #[serde(deserialize_with = "id_string")]
    pub id: String,
}

/// One association type on an association.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationTypeRef {
    /// `HUBSPOT_DEFINED`, `USER_DEFINED` or `INTEGRATOR_DEFINED`.
    #[serde(default)]
    pub category: String,
    /// Association type ID.
    #[serde(default)]
    pub type_id: u32,
    /// Label, for labelled associations.
    #[serde(default)]
    pub label: Option<String>,
}

/// One associated record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssociationTarget {
    /// ID of the associated record.
    #[serde(deserialize_with = "id_string")]
    pub to_object_id: String,
    /// The types linking the two.
    #[serde(default)]
    pub association_types: Vec<AssociationTypeRef>,
}

/// One result of an associations v4 batch read: `BatchResponse<AssociationResult>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AssociationResult {
    /// The record the associations start from.
    pub from: ObjectRef,
    /// Its associated records.
    #[serde(default)]
    pub to: Vec<AssociationTarget>,
    /// `paging.next.after`: more associated records follow; read them with this input's `after`
    /// ([`super::ApiConfig::batch_read_associations_after`]). `None` on the last page.
    #[serde(default, rename = "paging", deserialize_with = "paging_next_after")]
    pub next_after: Option<String>,
}

/// `{"next":{"after":"…"}}` → the `after`.
fn paging_next_after<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Next {
        #[serde(default)]
        after: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Paging {
        next: Option<Next>,
    }
    Ok(Option::<Paging>::deserialize(d)?
        .and_then(|p| p.next)
        .and_then(|n| n.after)
        .and_then(|a| match a {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }))
}

/// The OAuth token endpoint's answer (docs/hubspot.md §6). `Debug` redacts the tokens.
#[derive(Clone, PartialEq, Eq, Deserialize)]
pub struct TokenResponse {
    /// `bearer`.
    #[serde(default)]
    pub token_type: String,
    /// The access token (up to 512 characters).
    pub access_token: String,
    /// The long-lived refresh token.
    #[serde(default)]
    pub refresh_token: Option<String>,
    /// Lifetime of the access token in seconds (1800 in examples): refresh on this, not on 401.
    pub expires_in: u64,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("access_token", &"[redacted]")
            .field(
                "refresh_token",
                &self.refresh_token.as_ref().map(|_| "[redacted]"),
            )
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// HubSpot's error body. Every field is optional (docs/hubspot.md §4.5: "should all be treated as
/// optional"); a body that is not a JSON object gives the default (all empty).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorBody {
    /// Usually `"error"`.
    pub status: Option<String>,
    /// Human-readable message.
    pub message: Option<String>,
    /// HubSpot's request correlation ID: log it.
    pub correlation_id: Option<String>,
    /// E.g. `VALIDATION_ERROR`, `OBJECT_NOT_FOUND`, `CONFLICT`, `MISSING_SCOPES`, `RATE_LIMITS`.
    pub category: Option<String>,
    /// Finer category (a string or an object depending on the endpoint).
    pub sub_category: Option<Value>,
    /// Detailed errors (validation, batch).
    pub errors: Vec<ErrorDetail>,
    /// Context, usually a map of string to list of strings.
    pub context: BTreeMap<String, Value>,
    /// 429 only: `TEN_SECONDLY_ROLLING`, `DAILY`, … (docs/hubspot.md §5.3).
    pub policy_name: Option<String>,
    /// 429 only: `RATE_LIMIT`.
    pub error_type: Option<String>,
    /// OAuth errors: e.g. `invalid_grant` (docs/hubspot.md §6).
    pub error: Option<String>,
}

/// One entry of `errors[]`, in an error body or a batch response.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ErrorDetail {
    /// `"error"` on batch entries.
    pub status: Option<String>,
    /// Category, on batch entries.
    pub category: Option<String>,
    /// Message.
    pub message: Option<String>,
    /// Code, e.g. `INVALID_INTEGER`, `PROPERTY_DOESNT_EXIST`.
    pub code: Option<String>,
    /// Context: `ids`, `objectWriteTraceId`, `propertyName`, … each a list of strings.
    pub context: BTreeMap<String, Value>,
    /// Finer category.
    pub sub_category: Option<Value>,
}

impl ErrorDetail {
    /// The entry as the admin API shows it: `{"category","code","message","context"}`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "category": self.category,
            "code": self.code,
            "message": self.message,
            "context": self.context,
        })
    }

    /// The string values of `context[field]` (a list of strings, or a single string).
    pub fn context_values(&self, field: &str) -> Vec<&str> {
        context_strings(&self.context, field)
    }
}

fn context_strings<'a>(context: &'a BTreeMap<String, Value>, field: &str) -> Vec<&'a str> {
    match context.get(field) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

/// Which rate limit a 429 reports (`policyName`, docs/hubspot.md §5.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RateLimitPolicy {
    /// `TEN_SECONDLY_ROLLING`: the burst limit.
    TenSecondlyRolling,
    /// `DAILY`: the daily limit, reset at midnight in the account's time zone.
    Daily,
    /// The search limit (`SECONDLY`, or the message "You have reached your secondly limit.",
    /// which is what the Node SDK matches).
    Secondly,
    /// Anything else, with the `policyName` as sent (empty when absent).
    Unknown(String),
}

/// A parsed `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryAfter {
    /// Delta-seconds.
    Seconds(u64),
    /// An HTTP date, as Unix seconds (resolved against `now` by the retry policy).
    At(u64),
}

impl RetryAfter {
    fn parse(headers: &http::HeaderMap) -> Option<Self> {
        let value = headers
            .get(http::header::RETRY_AFTER)?
            .to_str()
            .ok()?
            .trim();
        if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
            return value.parse().ok().map(Self::Seconds);
        }
        // Against `now = 0`, the delay *is* the absolute Unix time.
        crate::delivery::parse_retry_after(value, 0).map(Self::At)
    }

    /// Milliseconds from `now_ms` until the retry is allowed.
    pub fn delay_ms(self, now_ms: u64) -> u64 {
        match self {
            Self::Seconds(s) => s.saturating_mul(1000),
            Self::At(at) => at.saturating_mul(1000).saturating_sub(now_ms),
        }
    }
}

/// The `X-HubSpot-RateLimit-*` headers (docs/hubspot.md §5.2), each `None` when absent or not a
/// number. Search responses and OAuth-authorised calls (daily) send none or some of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `X-HubSpot-RateLimit-Max`: requests allowed per interval.
    pub max: Option<u64>,
    /// `X-HubSpot-RateLimit-Remaining`: left in the current interval.
    pub remaining: Option<u64>,
    /// `X-HubSpot-RateLimit-Interval-Milliseconds`, e.g. 10000.
    pub interval_ms: Option<u64>,
    /// `X-HubSpot-RateLimit-Secondly` (deprecated, not enforced).
    pub secondly: Option<u64>,
    /// `X-HubSpot-RateLimit-Secondly-Remaining` (deprecated, not enforced).
    pub secondly_remaining: Option<u64>,
    /// `X-HubSpot-RateLimit-Daily` (private apps only).
    pub daily: Option<u64>,
    /// `X-HubSpot-RateLimit-Daily-Remaining` (private apps only).
    pub daily_remaining: Option<u64>,
}

impl RateLimitHeaders {
    /// Reads the headers (names are case-insensitive).
    pub fn from_headers(headers: &http::HeaderMap) -> Self {
        let num = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok())
        };
        Self {
            max: num("x-hubspot-ratelimit-max"),
            remaining: num("x-hubspot-ratelimit-remaining"),
            interval_ms: num("x-hubspot-ratelimit-interval-milliseconds"),
            secondly: num("x-hubspot-ratelimit-secondly"),
            secondly_remaining: num("x-hubspot-ratelimit-secondly-remaining"),
            daily: num("x-hubspot-ratelimit-daily"),
            daily_remaining: num("x-hubspot-ratelimit-daily-remaining"),
        }
    }
}

/// A HubSpot call failed. Every variant keeps HubSpot's error body (boxed: it is large).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// 401: the token is invalid or expired (`INVALID_AUTHENTICATION`,
    /// `EXPIRED_AUTHENTICATION`). HubSpot says a 401 alone does not prove a new token is needed.
    #[error("hubspot rejected the credentials (401)")]
    Unauthorized {
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// 403: the token lacks a scope (`MISSING_SCOPES`) or access is denied.
    #[error("hubspot refused access (403)")]
    Forbidden {
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// 404: no such object (`OBJECT_NOT_FOUND`) or endpoint.
    #[error("hubspot object not found (404)")]
    NotFound {
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// 409: the object already exists; `existing_id` parsed from
    /// "Contact already exists. Existing ID: N" when present (docs/hubspot.md §4.5).
    #[error("hubspot object already exists (409)")]
    Conflict {
        /// The ID of the existing record, when the message names it.
        existing_id: Option<String>,
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// 423: the record is locked for about 2 seconds (docs/hubspot.md §4.5).
    #[error("hubspot record locked (423)")]
    Locked {
        /// `Retry-After`, if sent.
        retry_after: Option<RetryAfter>,
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// 429: a rate limit was hit (docs/hubspot.md §5.3).
    #[error("hubspot rate limit hit (429)")]
    RateLimited {
        /// Which limit.
        policy: RateLimitPolicy,
        /// `Retry-After`, if sent (undocumented for API 429s).
        retry_after: Option<RetryAfter>,
        /// `X-HubSpot-RateLimit-Interval-Milliseconds`, if sent.
        interval_ms: Option<u64>,
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// 477: a migration is in progress; `Retry-After` is "typically up to 24 hours".
    #[error("hubspot migration in progress (477)")]
    MigrationInProgress {
        /// `Retry-After`, if sent.
        retry_after: Option<RetryAfter>,
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// 400: the request was invalid (`VALIDATION_ERROR`, details in `body.errors`), or an
    /// OAuth grant was refused (`body.error`, e.g. `invalid_grant`).
    #[error("hubspot rejected the request as invalid (400)")]
    Validation {
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// 5xx: HubSpot or its edge failed.
    #[error("hubspot server error ({status})")]
    Server {
        /// The status.
        status: u16,
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// Any other non-2xx status (e.g. 405, 414).
    #[error("hubspot answered {status}")]
    Other {
        /// The status.
        status: u16,
        /// Error body.
        body: Box<ErrorBody>,
    },
    /// A 2xx body did not have the expected shape: HubSpot changed, or the wrong type was
    /// asked for (our bug).
    #[error("unexpected hubspot response body ({status}): {reason}")]
    Decode {
        /// The status.
        status: u16,
        /// What serde said.
        reason: String,
    },
}

impl ApiError {
    /// Stable code, usable as a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized { .. } => "unauthorized",
            Self::Forbidden { .. } => "forbidden",
            Self::NotFound { .. } => "not_found",
            Self::Conflict { .. } => "conflict",
            Self::Locked { .. } => "locked",
            Self::RateLimited { .. } => "rate_limited",
            Self::MigrationInProgress { .. } => "migration_in_progress",
            Self::Validation { .. } => "validation",
            Self::Server { .. } => "server_error",
            Self::Other { .. } => "unexpected_status",
            Self::Decode { .. } => "decode",
        }
    }

    /// HubSpot's error body, when there is one.
    pub fn body(&self) -> Option<&ErrorBody> {
        match self {
            Self::Unauthorized { body }
            | Self::Forbidden { body }
            | Self::NotFound { body }
            | Self::Conflict { body, .. }
            | Self::Locked { body, .. }
            | Self::RateLimited { body, .. }
            | Self::MigrationInProgress { body, .. }
            | Self::Validation { body }
            | Self::Server { body, .. }
            | Self::Other { body, .. } => Some(body),
            Self::Decode { .. } => None,
        }
    }
}

/// Interprets a response: a 2xx body (207 included) is parsed as `T` (an empty body as JSON
/// `null`, so `T = ()` suits 204); anything else becomes an [`ApiError`].
///
/// Typical `T`s: [`SimpleObject`], [`BatchResponse`], [`BatchResponse<AssociationResult>`],
/// [`Page`], [`TokenResponse`], `()`, or `serde_json::Value`.
///
/// # Errors
/// The [`ApiError`] the status and body describe, or [`ApiError::Decode`] for an unexpected
/// 2xx body.
pub fn interpret<T: DeserializeOwned>(
    status: u16,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<T, ApiError> {
    if (200..300).contains(&status) {
        let bytes = if body.iter().all(u8::is_ascii_whitespace) {
            b"null".as_slice()
        } else {
            body
        };
        return serde_json::from_slice(bytes).map_err(|e| ApiError::Decode {
            status,
            reason: e.to_string(),
        });
    }
    let body: Box<ErrorBody> = Box::new(serde_json::from_slice(body).unwrap_or_default());
    let retry_after = RetryAfter::parse(headers);
    Err(match status {
        400 => ApiError::Validation { body },
        401 => ApiError::Unauthorized { body },
        403 => ApiError::Forbidden { body },
        404 => ApiError::NotFound { body },
        409 => ApiError::Conflict {
            existing_id: body.message.as_deref().and_then(existing_id),
            body,
        },
        423 => ApiError::Locked { retry_after, body },
        429 => ApiError::RateLimited {
            policy: policy(&body),
            retry_after,
            interval_ms: RateLimitHeaders::from_headers(headers).interval_ms,
            body,
        },
        477 => ApiError::MigrationInProgress { retry_after, body },
        500..=599 => ApiError::Server { status, body },
        _ => ApiError::Other { status, body },
    })
}

fn policy(body: &ErrorBody) -> RateLimitPolicy {
    match body.policy_name.as_deref() {
        Some("TEN_SECONDLY_ROLLING") => RateLimitPolicy::TenSecondlyRolling,
        Some("DAILY") => RateLimitPolicy::Daily,
        Some("SECONDLY") => RateLimitPolicy::Secondly,
        _ if body.message.as_deref() == Some("You have reached your secondly limit.") => {
            RateLimitPolicy::Secondly
        }
        other => RateLimitPolicy::Unknown(other.unwrap_or_default().to_owned()),
    }
}

/// "Contact already exists. Existing ID: 123" → `123`.
fn existing_id(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("Existing ID:")?;
    let id: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    (!id.is_empty()).then_some(id)
}

/// Accepts an ID sent as a string or as a number.
/// A string, or a number kept as its text; `null` as `None`.
fn optional_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn id_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "expected an id string or number, got {other}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use http::{HeaderMap, HeaderValue};

    use super::*;

    const UNAUTHORIZED_401: &str = r#"{"status":"error","message":"Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview","correlationId":"cc6f9a4b-4ee0-4a12-a5b1-8b9a7d2d0e0f","category":"INVALID_AUTHENTICATION"}"#;
    const TEN_SECONDLY_429: &str = r#"{"status":"error","message":"You have reached your ten_secondly_rolling limit.","errorType":"RATE_LIMIT","correlationId":"9c5e6b4e-2f7d-4a55-9a2e-1c1d3c0c7e11","policyName":"TEN_SECONDLY_ROLLING","requestId":"0b3c1a5e-7f0e-4c1d-9d8a-6e2b5f4a3c21"}"#;
    const DAILY_429: &str = r#"{"status":"error","message":"You have reached your daily limit.","errorType":"RATE_LIMIT","correlationId":"c033cdaa-2c40-4a64-ae48-b4cec88dad24","policyName":"DAILY","requestId":"3d3e35b7-0dae-4b9f-a6e3-9c230cbcf8dd"}"#;
    const SEARCH_429: &str = r#"{"status":"error","message":"You have reached your secondly limit.","errorType":"RATE_LIMIT","correlationId":"a1b2c3d4-0000-4000-8000-000000000000"}"#;
    const CONFLICT_409: &str = r#"{"status":"error","message":"Contact already exists. Existing ID: 12345","correlationId":"5f7e0b8e-1f5c-4f5e-9a0e-3c7a1b2c3d4e","category":"CONFLICT"}"#;
    const VALIDATION_400: &str = r#"{"status":"error","message":"This will be a human readable message with details about the error.","errors":[{"message":"discount was not a valid number","code":"INVALID_INTEGER","context":{"propertyName":["discount"]}}],"category":"VALIDATION_ERROR","correlationId":"a43683b0-5717-4ceb-80b4-104d02915d8c"}"#;
    const NOT_FOUND_404: &str = r#"{"status":"error","message":"resource not found","correlationId":"0ee8b5c2-48ad-4a4c-9f4b-2c1f7f0c9a3b","category":"OBJECT_NOT_FOUND"}"#;
    const MISSING_SCOPES_403: &str = r#"{"status":"error","message":"This app hasn't been granted all required scopes to make this call.","correlationId":"e8f1b2a3-1234-4abc-9def-0123456789ab","category":"MISSING_SCOPES","errors":[{"message":"One or more of the following scopes are required.","context":{"requiredScopes":["crm.objects.contacts.write"]}}]}"#;
    const BATCH_207: &str = r#"{"status":"COMPLETE","results":[{"id":"512","properties":{"email":"ok@example.com","firstname":null,"createdate":"2024-09-11T18:21:50.012Z"},"createdAt":"2024-09-11T18:21:50.012Z","updatedAt":"2024-09-11T18:21:50.012Z","archived":false,"objectWriteTraceId":"t-0"}],"numErrors":2,"errors":[{"status":"error","category":"VALIDATION_ERROR","message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Property \\\"colour\\\" does not exist\",\"error\":\"PROPERTY_DOESNT_EXIST\",\"name\":\"colour\"}]","context":{"objectWriteTraceId":["t-1"]}},{"status":"error","category":"OBJECT_NOT_FOUND","message":"Could not get some CONTACT objects, they may be deleted or not exist.","context":{"ids":["777","888"]}}],"startedAt":"2024-09-11T18:21:49.900Z","completedAt":"2024-09-11T18:21:50.100Z"}"#;
    const SEARCH_PAGE: &str = r#"{"total":2,"results":[{"id":"1","properties":{"email":"a@b.com","hs_object_id":"1"},"createdAt":"2024-01-01T00:00:00Z","updatedAt":"2024-01-02T00:00:00Z","archived":false},{"id":"2","properties":{"email":"c@d.com"}}],"paging":{"next":{"after":"2","link":"?after=2"}}}"#;
    const ASSOC_READ: &str = r#"{"status":"COMPLETE","results":[{"from":{"id":"101"},"to":[{"toObjectId":2001,"associationTypes":[{"category":"HUBSPOT_DEFINED","typeId":279,"label":null},{"category":"HUBSPOT_DEFINED","typeId":1,"label":"Primary"}]}]}],"startedAt":"2024-01-01T00:00:00Z","completedAt":"2024-01-01T00:00:01Z"}"#;
    const TOKEN: &str = r#"{"token_type":"bearer","refresh_token":"example-refresh-token-not-real","access_token":"example-access-token-not-real","expires_in":1800}"#;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn err(status: u16, h: &HeaderMap, body: &str) -> ApiError {
        interpret::<Value>(status, h, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn error_statuses() {
        let none = HeaderMap::new();
        let e = err(401, &none, UNAUTHORIZED_401);
        assert_eq!(e.code(), "unauthorized");
        assert_eq!(
            e.body().unwrap().category.as_deref(),
            Some("INVALID_AUTHENTICATION")
        );
        let e = err(403, &none, MISSING_SCOPES_403);
        assert_eq!(e.code(), "forbidden");
        assert_eq!(
            e.body().unwrap().errors[0].context_values("requiredScopes"),
            ["crm.objects.contacts.write"]
        );
        assert_eq!(err(404, &none, NOT_FOUND_404).code(), "not_found");
        match err(409, &none, CONFLICT_409) {
            ApiError::Conflict { existing_id, body } => {
                assert_eq!(existing_id.as_deref(), Some("12345"));
                assert_eq!(body.category.as_deref(), Some("CONFLICT"));
            }
            other => panic!("{other:?}"),
        }
        match err(409, &none, r#"{"message":"conflict"}"#) {
            ApiError::Conflict { existing_id, .. } => assert_eq!(existing_id, None),
            other => panic!("{other:?}"),
        }
        match err(400, &none, VALIDATION_400) {
            ApiError::Validation { body } => {
                assert_eq!(body.category.as_deref(), Some("VALIDATION_ERROR"));
                assert_eq!(body.errors[0].code.as_deref(), Some("INVALID_INTEGER"));
                assert_eq!(body.errors[0].context_values("propertyName"), ["discount"]);
                assert_eq!(
                    body.correlation_id.as_deref(),
                    Some("a43683b0-5717-4ceb-80b4-104d02915d8c")
                );
            }
            other => panic!("{other:?}"),
        }
        let locked = err(423, &headers(&[("retry-after", "3")]), "");
        assert_eq!(
            locked,
            ApiError::Locked {
                retry_after: Some(RetryAfter::Seconds(3)),
                body: Box::default()
            }
        );
        let h = headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT")]);
        match err(477, &h, "<html>migrating</html>") {
            ApiError::MigrationInProgress { retry_after, body } => {
                assert_eq!(retry_after, Some(RetryAfter::At(784_111_777)));
                assert_eq!(retry_after.unwrap().delay_ms(784_111_770_000), 7_000);
                assert_eq!(*body, ErrorBody::default());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err(502, &none, "Bad Gateway"),
            ApiError::Server {
                status: 502,
                body: Box::default()
            }
        );
        assert_eq!(err(414, &none, "").code(), "unexpected_status");
        assert_eq!(err(500, &none, "").code(), "server_error");
        let oauth = err(
            400,
            &none,
            r#"{"error":"invalid_grant","error_description":"refresh token is invalid, expired or revoked","status":"BAD_REFRESH_TOKEN","message":"missing or invalid refresh token"}"#,
        );
        assert_eq!(
            oauth.body().unwrap().error.as_deref(),
            Some("invalid_grant")
        );
    }

    #[test]
    fn rate_limits() {
        let h = headers(&[
            ("X-HubSpot-RateLimit-Interval-Milliseconds", "10000"),
            ("X-HubSpot-RateLimit-Max", "190"),
            ("X-HubSpot-RateLimit-Remaining", "0"),
        ]);
        match err(429, &h, TEN_SECONDLY_429) {
            ApiError::RateLimited {
                policy,
                retry_after,
                interval_ms,
                body,
            } => {
                assert_eq!(policy, RateLimitPolicy::TenSecondlyRolling);
                assert_eq!(retry_after, None);
                assert_eq!(interval_ms, Some(10_000));
                assert_eq!(body.error_type.as_deref(), Some("RATE_LIMIT"));
            }
            other => panic!("{other:?}"),
        }
        let policy_of = |body: &str| match err(429, &HeaderMap::new(), body) {
            ApiError::RateLimited { policy, .. } => policy,
            other => panic!("{other:?}"),
        };
        assert_eq!(policy_of(DAILY_429), RateLimitPolicy::Daily);
        assert_eq!(policy_of(SEARCH_429), RateLimitPolicy::Secondly);
        assert_eq!(
            policy_of(r#"{"policyName":"MINUTELY"}"#),
            RateLimitPolicy::Unknown("MINUTELY".into())
        );
        assert_eq!(
            policy_of("not json"),
            RateLimitPolicy::Unknown(String::new())
        );
    }

    #[test]
    fn rate_limit_headers() {
        let h = headers(&[
            ("x-hubspot-ratelimit-daily", "500000"),
            ("x-hubspot-ratelimit-daily-remaining", "499997"),
            ("x-hubspot-ratelimit-interval-milliseconds", "10000"),
            ("x-hubspot-ratelimit-max", "100"),
            ("x-hubspot-ratelimit-remaining", "97"),
            ("x-hubspot-ratelimit-secondly", "10"),
            ("x-hubspot-ratelimit-secondly-remaining", "junk"),
        ]);
        assert_eq!(
            RateLimitHeaders::from_headers(&h),
            RateLimitHeaders {
                max: Some(100),
                remaining: Some(97),
                interval_ms: Some(10_000),
                secondly: Some(10),
                secondly_remaining: None,
                daily: Some(500_000),
                daily_remaining: Some(499_997),
            }
        );
        assert_eq!(
            RateLimitHeaders::from_headers(&HeaderMap::new()),
            RateLimitHeaders::default()
        );
    }

    #[test]
    fn batch_207_maps_errors_to_inputs() {
        let batch: BatchResponse = interpret(207, &HeaderMap::new(), BATCH_207.as_bytes()).unwrap();
        assert_eq!(batch.status, "COMPLETE");
        let ok = &batch.results[0];
        assert_eq!(ok.id, "512");
        assert_eq!(ok.properties["email"].as_deref(), Some("ok@example.com"));
        assert_eq!(ok.properties["firstname"], None);
        assert!(!ok.properties.contains_key("lastname"));
        assert_eq!(ok.object_write_trace_id.as_deref(), Some("t-0"));
        // Create: keys are trace IDs.
        let (matched, unmatched) = batch.errors_by_input(&["t-0", "t-1", "t-2"]);
        assert_eq!(matched.len(), 1);
        assert_eq!(matched[0].0, 1);
        assert_eq!(matched[0].1.category.as_deref(), Some("VALIDATION_ERROR"));
        assert_eq!(unmatched.len(), 1);
        // Read/update: keys are ids; one error can concern several inputs.
        let (matched, unmatched) = batch.errors_by_input(&["777", "1", "888"]);
        let idx: Vec<usize> = matched.iter().map(|(i, _)| *i).collect();
        assert_eq!(idx, [0, 2]);
        assert_eq!(unmatched.len(), 1);
    }

    #[test]
    fn two_errors_on_one_input_both_match() {
        let body = br#"{"status":"COMPLETE","results":[],"errors":[
            {"message":"a","context":{"ids":["1"]}},{"message":"b","context":{"id":"1"}}]}"#;
        let batch: BatchResponse = interpret(207, &HeaderMap::new(), body).unwrap();
        let (matched, unmatched) = batch.errors_by_input(&["1"]);
        assert_eq!(matched.len(), 2);
        assert!(unmatched.is_empty());
    }

    #[test]
    fn pages_objects_and_tokens() {
        let none = HeaderMap::new();
        let page: Page = interpret(200, &none, SEARCH_PAGE.as_bytes()).unwrap();
        assert_eq!(page.total, Some(2));
        assert_eq!(page.next_after.as_deref(), Some("2"));
        assert_eq!(page.results.len(), 2);
        assert_eq!(page.results[1].created_at, None);
        let last: Page = interpret(200, &none, br#"{"results":[]}"#).unwrap();
        assert_eq!((last.next_after, last.total), (None, None));

        let obj: SimpleObject =
            interpret(200, &none, br#"{"id":"5","properties":{},"archived":true}"#).unwrap();
        assert!(obj.archived);

        let assoc: BatchResponse<AssociationResult> =
            interpret(200, &none, ASSOC_READ.as_bytes()).unwrap();
        assert_eq!(assoc.results[0].from.id, "101");
        assert_eq!(assoc.results[0].to[0].to_object_id, "2001");
        assert_eq!(assoc.results[0].to[0].association_types[1].type_id, 1);

        let tok: TokenResponse = interpret(200, &none, TOKEN.as_bytes()).unwrap();
        assert_eq!(tok.expires_in, 1800);
        assert!(!format!("{tok:?}").contains("example-access-token"));

        interpret::<()>(204, &none, b"").unwrap();
        let e = interpret::<SimpleObject>(200, &none, b"{}").unwrap_err();
        assert_eq!(e.code(), "decode");
        assert!(e.body().is_none());
    }
}
