//! The inbound request body, validated whole.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use thiserror::Error;

use super::{id_field, InboundConfig};
use crate::mapping::{calendar, FieldDirection, ObjectMap, Record};

/// One record of an accepted request.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRecord {
    /// Its position in the request's `records` array.
    pub index: usize,
    /// The user's own id for it (reported in receipts and dead letters).
    pub external_id: String,
    /// The normalised `idProperty` value: the key upserts, coalescing and the id map go by.
    pub key: String,
    /// When the user's system changed it (`updatedAt`, Unix ms), if it said.
    pub updated_at_ms: Option<i64>,
    /// The writable fields it gives, in the destination's names (`from_hubspot` and `constant`
    /// fields dropped).
    pub fields: Record,
}

/// What is wrong with an inbound request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InboundErrorKind {
    /// Not JSON, or not `{"records": [...]}`.
    BodyMalformed,
    /// More records than [`InboundConfig::max_records`].
    TooManyRecords,
    /// A record is not an object with a non-empty string `externalId` and an object `fields`,
    /// or has other keys.
    RecordMalformed,
    /// A field the map does not know (a typo must not silently drop a value).
    UnknownField,
    /// A value that is not valid for its field's type (the mapping's code says why).
    InvalidValue,
    /// No value for the field that carries the `idProperty`.
    MissingId,
    /// `updatedAt` is neither ISO-8601 with an offset nor Unix milliseconds.
    BadTimestamp,
}

impl InboundErrorKind {
    /// Stable code: `inbound_body_malformed`, `inbound_too_many_records`,
    /// `inbound_record_malformed`, `inbound_unknown_field`, `inbound_invalid_value`,
    /// `inbound_missing_id` or `inbound_bad_timestamp`.
    pub fn code(self) -> &'static str {
        match self {
            Self::BodyMalformed => "inbound_body_malformed",
            Self::TooManyRecords => "inbound_too_many_records",
            Self::RecordMalformed => "inbound_record_malformed",
            Self::UnknownField => "inbound_unknown_field",
            Self::InvalidValue => "inbound_invalid_value",
            Self::MissingId => "inbound_missing_id",
            Self::BadTimestamp => "inbound_bad_timestamp",
        }
    }
}

/// The request is rejected (400): nothing of it is accepted. The message names the record's
/// index and field, never a value, so it is safe to log and to return.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}{}{}: {detail}", kind.code(),
    index.map(|i| format!(" at records[{i}]")).unwrap_or_default(),
    field.as_ref().map(|f| format!(" field `{f}`")).unwrap_or_default())]
pub struct InboundError {
    kind: InboundErrorKind,
    index: Option<usize>,
    field: Option<String>,
    /// The mapping's code for an invalid value.
    cause: Option<&'static str>,
    detail: String,
}

impl InboundError {
    fn new(kind: InboundErrorKind, index: Option<usize>, detail: impl Into<String>) -> Self {
        Self {
            kind,
            index,
            field: None,
            cause: None,
            detail: detail.into(),
        }
    }

    fn field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }

    /// What is wrong.
    pub fn kind(&self) -> InboundErrorKind {
        self.kind
    }

    /// The stable code of [`Self::kind`].
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// The index of the offending record, when one is at fault.
    pub fn index(&self) -> Option<usize> {
        self.index
    }

    /// The offending field, when one is at fault.
    pub fn field_name(&self) -> Option<&str> {
        self.field.as_deref()
    }

    /// For [`InboundErrorKind::InvalidValue`]: the mapping's code (`mapping_not_midnight`…).
    pub fn cause(&self) -> Option<&'static str> {
        self.cause
    }
}

/// Parses and validates an inbound request body:
///
/// ```json
/// {"records": [
///   {"externalId": "crm-17", "updatedAt": "2026-11-27T10:00:00Z",
///    "fields": {"email": "ada@example.com", "first_name": "Ada", "close_date": "2026-12-01"}}
/// ]}
/// ```
///
/// `fields` uses the destination's field names of `map`; `updatedAt` (optional: ISO-8601 with
/// an offset, or Unix milliseconds) is when the user's system changed the record, used to
/// resolve conflicts. Every record must give the field carrying `config.id_property`. Values are
/// checked by rendering them in HubSpot's formats ([`ObjectMap::to_hubspot`]). `from_hubspot`
/// and `constant` fields are accepted and ignored (a system may send back its whole record).
///
/// # Errors
/// The first problem, in record order ([`InboundError`]): the request is rejected whole.
pub fn parse_request(
    map: &ObjectMap,
    config: &InboundConfig,
    body: &[u8],
) -> Result<Vec<InboundRecord>, InboundError> {
    use InboundErrorKind as K;
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        InboundError::new(
            K::BodyMalformed,
            None,
            format!("not json: line {} column {}", e.line(), e.column()),
        )
    })?;
    let records = match value {
        Value::Object(mut top) if top.len() == 1 => match top.remove("records") {
            Some(Value::Array(records)) => records,
            _ => {
                return Err(InboundError::new(
                    K::BodyMalformed,
                    None,
                    "expected {\"records\": [...]}",
                ))
            }
        },
        _ => {
            return Err(InboundError::new(
                K::BodyMalformed,
                None,
                "expected {\"records\": [...]}",
            ))
        }
    };
    if records.len() > config.max_records {
        return Err(InboundError::new(
            K::TooManyRecords,
            None,
            format!("{} records, at most {}", records.len(), config.max_records),
        ));
    }
    let id_field = id_field(map, &config.id_property);
    records
        .into_iter()
        .enumerate()
        .map(|(index, raw)| parse_record(map, &config.id_property, id_field, index, raw))
        .collect()
}

fn parse_record(
    map: &ObjectMap,
    id_property: &str,
    id_field: Option<&str>,
    index: usize,
    raw: Value,
) -> Result<InboundRecord, InboundError> {
    use InboundErrorKind as K;
    let at = Some(index);
    let malformed = |detail: &str| InboundError::new(K::RecordMalformed, at, detail);
    let Value::Object(mut obj) = raw else {
        return Err(malformed("a record must be an object"));
    };
    let external_id = match obj.remove("externalId") {
        Some(Value::String(s)) if !s.is_empty() => s,
        _ => return Err(malformed("`externalId` must be a non-empty string")),
    };
    let fields = match obj.remove("fields") {
        Some(Value::Object(fields)) => fields,
        _ => return Err(malformed("`fields` must be an object")),
    };
    let updated_at_ms = match obj.remove("updatedAt") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_i64().ok_or_else(|| {
            InboundError::new(
                K::BadTimestamp,
                at,
                "`updatedAt` milliseconds must be an integer",
            )
        })?),
        Some(Value::String(s)) => Some(calendar::parse_datetime(s.trim()).map_err(|_| {
            InboundError::new(
                K::BadTimestamp,
                at,
                "`updatedAt` must be ISO-8601 with an offset",
            )
        })?),
        Some(_) => {
            return Err(InboundError::new(
                K::BadTimestamp,
                at,
                "`updatedAt` has the wrong json type",
            ))
        }
    };
    if let Some(other) = obj.keys().next() {
        return Err(malformed(&format!(
            "unknown key `{}` (expected externalId, updatedAt, fields)",
            other.chars().take(64).collect::<String>()
        )));
    }
    let mut writable = Map::new();
    for (name, value) in fields {
        if !map.has_field(&name) {
            let name: String = name.chars().take(64).collect();
            return Err(
                InboundError::new(K::UnknownField, at, "not a field of the map").field(&name),
            );
        }
        match map.field_direction(&name) {
            None | Some(FieldDirection::FromHubSpot) => {}
            Some(_) => {
                writable.insert(name, value);
            }
        }
    }
    let fields = Record::from(writable);
    let properties: BTreeMap<String, String> = map.to_hubspot(&fields).map_err(|e| {
        let mut err = InboundError::new(K::InvalidValue, at, e.kind().to_string()).field(e.field());
        err.cause = Some(e.code());
        err
    })?;
    let key = properties
        .get(id_property)
        .map(|v| map.normalise_hubspot(id_property, Some(v)))
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            let err = InboundError::new(
                K::MissingId,
                at,
                format!("no value for idProperty `{id_property}`"),
            );
            match id_field {
                Some(f) => err.field(f),
                None => err,
            }
        })?;
    Ok(InboundRecord {
        index,
        external_id,
        key,
        updated_at_ms,
        fields,
    })
}
