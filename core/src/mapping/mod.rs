//! Declarative field mapping between HubSpot properties and destination records, with the
//! property value conventions of docs/hubspot.md §7 applied in both directions.
//!
//! # Configuration
//!
//! One JSON document (a Worker setting), read once with [`Mapping::from_json`].
//! Unknown keys are errors, so a typo cannot silently drop a field.
//!
//! ```json
//! {
//!   "objects": {
//!     "contacts": {
//!       "fields": [
//!         { "hubspot": "email", "type": "email" },
//!         { "hubspot": "firstname", "field": "first_name" },
//!         { "hubspot": "lifecyclestage", "field": "stage", "type": "enumeration",
//!           "values": { "lead": "LEAD", "customer": "CUSTOMER" }, "unmappedValues": "keep" },
//!         { "hubspot": "interests", "type": "multiselect",
//!           "values": { "chocolate": "choc", "strawberry": "straw" } },
//!         { "hubspot": "closedate", "field": "close_date", "type": "date" },
//!         { "hubspot": "createdate", "field": "created_at", "type": "datetime", "readOnly": true },
//!         { "hubspot": "num_employees", "field": "employees", "type": "number", "default": 0 },
//!         { "hubspot": "hs_email_optout", "field": "opted_out", "type": "bool" },
//!         { "hubspot": "hubspot_owner_id", "field": "owner", "type": "owner" },
//!         { "field": "source", "constant": "hubspot" }
//!       ]
//!     },
//!     "deals": { "fields": [{ "hubspot": "amount", "type": "number" }] }
//!   }
//! }
//! ```
//!
//! `objects` is keyed by object type, written as in API paths (`contacts`, `line_items`), as in
//! webhook events (`contact`), as a type id (`0-1`), or as a custom object's `2-…` id;
//! [`Mapping::object`] accepts any of these spellings. Each entry of `fields` is one
//! destination field, in the order patches list them:
//!
//! | key | meaning |
//! | --- | --- |
//! | `hubspot` | the HubSpot property's internal name |
//! | `field` | the destination field name (rename); defaults to `hubspot` |
//! | `type` | `string` (default), `number`, `bool`, `date`, `datetime`, `enumeration`, `multiselect`, `email`, `owner` |
//! | `values` | `enumeration` and `multiselect` only: HubSpot option value → destination value, one to one |
//! | `unmappedValues` | with `values`: `reject` (default) makes an option missing from `values` an error; `keep` passes it through unchanged |
//! | `default` | destination value used when HubSpot has none (absent, `null` or `""`) |
//! | `constant` | instead of `hubspot`: a JSON value the destination field always has; never written to HubSpot |
//! | `readOnly` | `true` for properties HubSpot computes (`createdate`): read, never written; the same as `direction: from_hubspot` |
//! | `direction` | who owns the field in a two-way sync ([`FieldDirection`]): `both` (default), `to_hubspot` or `from_hubspot` |
//!
//! A HubSpot property and a destination field may each appear once per object.
//!
//! # Normalisation (docs/hubspot.md §7)
//!
//! | type | HubSpot value read | destination value | HubSpot value written |
//! | --- | --- | --- | --- |
//! | `string` | as is | string | as is, at most 65,536 characters |
//! | `number` | `17`, `-12.50`, `1e3`; separators (`1,000`) rejected | JSON number, exact (an error when an `f64` cannot hold it exactly) | canonical digits: `-12.5`, `1000` |
//! | `bool` | `true` / `false`, any case | `true` / `false` | `"true"` / `"false"` |
//! | `date` | `YYYY-MM-DD`, midnight-UTC milliseconds, or a midnight-UTC ISO datetime; any other time of day is an error | `"2015-05-01"` | midnight-UTC milliseconds: `"1430438400000"` |
//! | `datetime` | ISO-8601 with `Z` or an offset, or Unix milliseconds | `"2024-09-11T18:21:50.012Z"` | the same ISO-8601 text |
//! | `enumeration` | the option value, through `values` | string | the option value |
//! | `multiselect` | `a;b`, any order | array, sorted, without duplicates | `a;b`, sorted (never a leading `;`, which would append) |
//! | `email` | trimmed, lowercased; must look like `local@domain` | string | the same |
//! | `owner` | the owner id, digits | string | the digits |
//!
//! No value: HubSpot's `""` and `null` become `null`; a property HubSpot did not return leaves
//! the field absent (unless it has a `default`). Written back, `null`, `""` and `[]` become `""`,
//! which clears the property (docs/hubspot.md §7), and an absent field is not written.
//!
//! On the way back to HubSpot (and when [`crate::diff`] compares values) destination values are
//! read more leniently: numbers as strings, milliseconds as numbers, ISO datetimes with offsets
//! or a space for `T`, `"true"`/`"false"`, `;` lists, owner ids as numbers. A datetime given for a
//! `date` must be midnight UTC; a date is never silently truncated. Digits of a datetime finer
//! than the millisecond are dropped (HubSpot stores milliseconds). Dates run from year 1 to 9999.
//!
//! A `default` is one-way: the destination cannot tell it from a real value, so writing such a
//! record back writes the default into HubSpot. Diff-only writes ([`crate::diff`]) avoid that
//! unless the field itself changed.
//!
//! # Errors
//!
//! [`MapError`] names the object type, field, property, field type, direction and the JSON type
//! of the offending value, never the value: the message is safe to log.

pub(crate) mod calendar;
mod config;
mod number;
mod record;
mod value;

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use thiserror::Error;

pub use config::MapConfigError;
pub use record::{Record, SnapshotError};
pub use value::FieldType;

use value::{json_kind, Canon};

/// A compiled field map for every configured object type. The default maps nothing.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    /// Keyed by canonical object type (`contact`, `line_item`, `2-123`).
    objects: BTreeMap<String, ObjectMap>,
}

impl Mapping {
    /// Compiles the configuration (see the module docs).
    ///
    /// # Errors
    /// [`MapConfigError`] naming the bad entry (`objects.contacts.fields[2] (stage): …`) for
    /// invalid JSON, unknown keys or types, conflicting keys, duplicate names, a value map that
    /// is not one to one, or a `default` that is not a valid value of its field.
    pub fn from_json(json: &str) -> Result<Self, MapConfigError> {
        config::compile(json).map(|objects| Self { objects })
    }

    /// The map of one object type, in any spelling: `contacts`, `contact`, `0-1`; `None` when the
    /// type is not configured.
    pub fn object(&self, object_type: &str) -> Option<&ObjectMap> {
        self.objects.get(canonical_object_type(object_type))
    }

    /// The configured object types, canonical (`contact`, `2-123`).
    pub(crate) fn object_types(&self) -> impl Iterator<Item = &str> {
        self.objects.keys().map(String::as_str)
    }
}

/// The field map of one object type.
#[derive(Debug, Clone)]
pub struct ObjectMap {
    /// As configured, for messages.
    object_type: String,
    /// Canonical (`contact`), for fingerprints.
    canonical_type: String,
    fields: Vec<Field>,
    /// HubSpot properties to read, in field order.
    properties: Vec<String>,
    by_field: BTreeMap<String, usize>,
    by_property: BTreeMap<String, usize>,
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Constant(Value),
    Property(Property),
}

#[derive(Debug, Clone)]
struct Property {
    name: String,
    ty: FieldType,
    values: Option<ValueMap>,
    /// In the destination's vocabulary.
    default: Option<Canon>,
    direction: FieldDirection,
}

/// Which way a field is synchronised (the `direction` key of a field, see the module docs).
///
/// Webhook enrichment (HubSpot → destination) maps every field whatever its direction, as it
/// did before directions existed: the default, `both`, keeps today's behaviour. The direction
/// decides inbound writes ([`crate::sync::inbound`]): a `from_hubspot` field is never written to
/// HubSpot, and it decides who wins a conflict (a `to_hubspot` field is the destination's, so
/// the destination's value always wins; a `both` field follows the configured rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldDirection {
    /// Both sides write the field; conflicts follow the configured rule.
    #[default]
    Both,
    /// The destination owns the field: written to HubSpot, the destination wins conflicts.
    #[serde(rename = "to_hubspot")]
    ToHubSpot,
    /// HubSpot owns the field: read, never written (`readOnly: true`).
    #[serde(rename = "from_hubspot")]
    FromHubSpot,
}

/// A one-to-one map of option values (see `unmappedValues` in the module docs).
#[derive(Debug, Clone)]
struct ValueMap {
    to_destination: BTreeMap<String, String>,
    to_hubspot: BTreeMap<String, String>,
    keep_unmapped: bool,
}

impl ValueMap {
    /// An option passes through unchanged only when that cannot be confused with a mapped one,
    /// so that mapping there and back always returns the original.
    fn translate(
        &self,
        value: &str,
        forward: &BTreeMap<String, String>,
        backward: &BTreeMap<String, String>,
    ) -> Result<String, MapErrorKind> {
        match forward.get(value) {
            Some(mapped) => Ok(mapped.clone()),
            None if self.keep_unmapped && !backward.contains_key(value) => Ok(value.to_owned()),
            None => Err(MapErrorKind::UnknownOption),
        }
    }

    fn apply(&self, canon: Canon, to_hubspot: bool) -> Result<Canon, MapErrorKind> {
        let (forward, backward) = if to_hubspot {
            (&self.to_hubspot, &self.to_destination)
        } else {
            (&self.to_destination, &self.to_hubspot)
        };
        Ok(match canon {
            Canon::Text(s) => Canon::Text(self.translate(&s, forward, backward)?),
            Canon::Multi(items) => {
                let mapped = items
                    .iter()
                    .map(|s| self.translate(s, forward, backward))
                    .collect::<Result<Vec<_>, _>>()?;
                // Mapped options are non-empty and trimmed (checked with the configuration).
                Canon::multi(mapped.iter().map(String::as_str)).ok_or(MapErrorKind::Malformed)?
            }
            other => other,
        })
    }
}

impl ObjectMap {
    /// The object type as configured.
    pub fn object_type(&self) -> &str {
        &self.object_type
    }

    /// The HubSpot properties to read for this object type, in field order, each once (the
    /// `properties` parameter of a read; docs/hubspot.md §4.1).
    pub fn properties(&self) -> &[String] {
        &self.properties
    }

    /// Whether `property` feeds a field: a `propertyChange` event for any other property cannot
    /// change the mapped record, so it can be skipped before any API call.
    pub fn is_mapped(&self, property: &str) -> bool {
        self.by_property.contains_key(property)
    }

    /// Maps a HubSpot record's `properties` (as HubSpot returns them: strings or `null`) to the
    /// destination record. Properties that are not mapped are ignored.
    ///
    /// # Errors
    /// [`MapError`] for the first field, in field order, whose value cannot be read as its type.
    pub fn to_destination(
        &self,
        properties: &BTreeMap<String, Option<String>>,
    ) -> Result<Record, MapError> {
        let mut record = Record::new();
        for field in &self.fields {
            let value = match &field.source {
                Source::Constant(value) => value.clone(),
                Source::Property(p) => {
                    let present = properties.get(&p.name);
                    let error = |kind| self.error(field, p, Direction::FromHubSpot, "string", kind);
                    let read = match present {
                        Some(Some(text)) => Canon::from_hubspot(p.ty, text).map_err(error)?,
                        Some(None) | None => None,
                    };
                    let canon = match (read, &p.values) {
                        (Some(c), Some(values)) => Some(values.apply(c, false).map_err(error)?),
                        (Some(c), None) => Some(c),
                        (None, _) => p.default.clone(),
                    };
                    match canon {
                        Some(c) => c.to_destination().map_err(error)?,
                        None if present.is_none() => continue,
                        None => Value::Null,
                    }
                }
            };
            record.insert(field.name.clone(), value);
        }
        Ok(record)
    }

    /// Maps a destination record back to HubSpot property values, ready for an update or create
    /// body. Fields the record lacks are not written; `null` clears (`""`). Constant and
    /// `from_hubspot` (`readOnly`) fields, and fields the map does not know, are skipped.
    ///
    /// # Errors
    /// [`MapError`] for the first field, in field order, whose value is not valid for its type.
    pub fn to_hubspot(&self, record: &Record) -> Result<BTreeMap<String, String>, MapError> {
        let mut out = BTreeMap::new();
        for field in &self.fields {
            let Source::Property(p) = &field.source else {
                continue;
            };
            let Some(value) = record
                .get(&field.name)
                .filter(|_| p.direction != FieldDirection::FromHubSpot)
            else {
                continue;
            };
            let error = |kind| self.error(field, p, Direction::ToHubSpot, json_kind(value), kind);
            let text = match Canon::from_destination(p.ty, value).map_err(error)? {
                None => String::new(),
                Some(c) => {
                    let c = match &p.values {
                        Some(values) => values.apply(c, true).map_err(error)?,
                        None => c,
                    };
                    c.check_length().map_err(error)?;
                    c.to_hubspot()
                }
            };
            out.insert(p.name.clone(), text);
        }
        Ok(out)
    }

    /// The direction of destination field `field`: `None` when the map has no such field or it is
    /// a `constant` (never written).
    pub fn field_direction(&self, field: &str) -> Option<FieldDirection> {
        self.property_of(field).map(|p| p.direction)
    }

    /// The HubSpot property that destination field `field` maps to, if it is a property field.
    pub fn property_of_field(&self, field: &str) -> Option<&str> {
        self.property_of(field).map(|p| p.name.as_str())
    }

    /// Field names in map order.
    pub(crate) fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// The destination field `property` feeds, if it is mapped.
    pub(crate) fn field_of_property(&self, property: &str) -> Option<&str> {
        self.by_property
            .get(property)
            .map(|&i| self.fields[i].name.as_str())
    }

    /// Where `field` comes in map order (fields outside the map after all of them).
    pub(crate) fn field_position(&self, field: &str) -> usize {
        self.by_field.get(field).copied().unwrap_or(usize::MAX)
    }

    /// Whether the map has a destination field of this name.
    pub(crate) fn has_field(&self, field: &str) -> bool {
        self.by_field.contains_key(field)
    }

    /// The object type in the vocabulary of webhook events (`contact`).
    pub(crate) fn canonical_type(&self) -> &str {
        &self.canonical_type
    }

    /// Whether two destination values of `field` are the same value: compared in canonical form
    /// for a typed field when both sides read as its type, as JSON otherwise. Absent and `null`
    /// are the same "no value" (HubSpot either returns `null` or omits an empty property:
    /// docs/hubspot.md §4.1, §8 item 11).
    pub(crate) fn same_value(&self, field: &str, a: Option<&Value>, b: Option<&Value>) -> bool {
        let a = a.unwrap_or(&Value::Null);
        let b = b.unwrap_or(&Value::Null);
        if let Some(p) = self.property_of(field) {
            if let (Ok(x), Ok(y)) = (
                Canon::from_destination(p.ty, a),
                Canon::from_destination(p.ty, b),
            ) {
                return x == y;
            }
        }
        a == b
    }

    /// A HubSpot value in canonical HubSpot form, so that the value we wrote and HubSpot's
    /// spelling of it read back compare equal (`1430438400000` and `2015-05-01` for a date,
    /// `b;a` and `a;b`). No value is `""`; values of unmapped properties and values that do not
    /// read as their type are kept as they are.
    pub(crate) fn normalise_hubspot(&self, property: &str, value: Option<&str>) -> String {
        let value = value.unwrap_or("");
        let typed = self
            .by_property
            .get(property)
            .and_then(|&i| match &self.fields[i].source {
                Source::Property(p) => Some(p.ty),
                Source::Constant(_) => None,
            });
        match typed.map(|ty| Canon::from_hubspot(ty, value)) {
            Some(Ok(Some(canon))) => canon.to_hubspot(),
            Some(Ok(None)) => String::new(),
            Some(Err(_)) | None => value.to_owned(),
        }
    }

    fn property_of(&self, field: &str) -> Option<&Property> {
        match &self.fields[*self.by_field.get(field)?].source {
            Source::Property(p) => Some(p),
            Source::Constant(_) => None,
        }
    }

    fn error(
        &self,
        field: &Field,
        property: &Property,
        direction: Direction,
        value_kind: &'static str,
        kind: MapErrorKind,
    ) -> MapError {
        MapError {
            object_type: self.object_type.clone(),
            field: field.name.clone(),
            property: property.name.clone(),
            field_type: property.ty,
            direction,
            value_kind,
            kind,
        }
    }
}

/// Which way a value was being mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// HubSpot property → destination field ([`ObjectMap::to_destination`]).
    FromHubSpot,
    /// Destination field → HubSpot property ([`ObjectMap::to_hubspot`]).
    ToHubSpot,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::FromHubSpot => "from hubspot",
            Self::ToHubSpot => "to hubspot",
        })
    }
}

/// What is wrong with a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MapErrorKind {
    /// The JSON type cannot hold this field type (an object for a number, a number for a bool).
    #[error("value has a json type the field type cannot take")]
    WrongType,
    /// The text does not read as the field type (`1,000` for a number, `yes` for a bool, a
    /// datetime without a UTC offset, an email without `@`).
    #[error("value is malformed for the field type")]
    Malformed,
    /// A date with a time of day other than midnight UTC (docs/hubspot.md §7; HubSpot answers such
    /// writes with `INVALID_DATE`).
    #[error("date is not at midnight utc")]
    NotMidnight,
    /// A date outside years 1–9999, or a number too large or too precise to carry exactly.
    #[error("value is out of range for the field type")]
    OutOfRange,
    /// An option that the field's `values` do not map (with `unmappedValues: reject`, or one
    /// that would be confused with a mapped option).
    #[error("value is not one of the mapped options")]
    UnknownOption,
    /// Text longer than HubSpot's 65,536 characters (docs/hubspot.md §7).
    #[error("text is longer than 65,536 characters")]
    TooLong,
}

impl MapErrorKind {
    /// Stable code: `mapping_wrong_type`, `mapping_malformed`, `mapping_not_midnight`,
    /// `mapping_out_of_range`, `mapping_unknown_option` or `mapping_too_long`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::WrongType => "mapping_wrong_type",
            Self::Malformed => "mapping_malformed",
            Self::NotMidnight => "mapping_not_midnight",
            Self::OutOfRange => "mapping_out_of_range",
            Self::UnknownOption => "mapping_unknown_option",
            Self::TooLong => "mapping_too_long",
        }
    }
}

/// One field of one record could not be mapped. The record's data is at fault, not the
/// configuration: other records are unaffected. The message never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error(
    "cannot map {object_type} field `{field}` (hubspot `{property}`, {field_type}) {direction}: \
     {kind} ({value_kind} value)"
)]
pub struct MapError {
    object_type: String,
    field: String,
    property: String,
    field_type: FieldType,
    direction: Direction,
    value_kind: &'static str,
    kind: MapErrorKind,
}

impl MapError {
    /// Stable code of [`Self::kind`], e.g. `mapping_not_midnight`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }

    /// What is wrong with the value.
    pub fn kind(&self) -> MapErrorKind {
        self.kind
    }

    /// The object type as configured (`contacts`).
    pub fn object_type(&self) -> &str {
        &self.object_type
    }

    /// The destination field.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// The HubSpot property.
    pub fn property(&self) -> &str {
        &self.property
    }

    /// The field's configured type.
    pub fn field_type(&self) -> FieldType {
        self.field_type
    }

    /// Which way the value was being mapped.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The JSON type of the offending value (`string`, `number`, `array`…); HubSpot values are
    /// always `string`.
    pub fn value_kind(&self) -> &'static str {
        self.value_kind
    }
}

/// Object types in the vocabulary of webhook events: `contacts`, `contact` and `0-1` are all
/// `contact`. Custom objects keep their `2-…` id or name.
pub(crate) fn canonical_object_type(name: &str) -> &str {
    crate::event::canonical_object_type(name)
}

#[cfg(test)]
mod tests;

// Two attributes, not `all(test, …)`: clippy's test-code allowances look for `cfg(test)`.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod proptests;
