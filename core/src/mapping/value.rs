//! One value of one field in its canonical form, and the normalisation rules of each field type
//! in both directions (docs/hubspot.md §7).

use std::fmt;

use serde::Deserialize;
use serde_json::Value;

use super::calendar;
use super::number::Decimal;
use super::MapErrorKind;

/// HubSpot's limit on a string property value, in characters (docs/hubspot.md §7).
const MAX_STRING_CHARS: usize = 65_536;

/// The type of a mapped field: how its value is normalised on the way in and out.
///
/// In the configuration these are spelled `string`, `number`, `bool`, `date`, `datetime`,
/// `enumeration`, `multiselect`, `email` and `owner`. The module docs of
/// [`crate::mapping`] give the exact rules of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldType {
    /// Text, kept exactly as it is.
    String,
    /// A decimal number: a JSON number at the destination, canonical digits in HubSpot.
    Number,
    /// A single checkbox: JSON `true`/`false` at the destination, `"true"`/`"false"` in HubSpot.
    Bool,
    /// A calendar date: `YYYY-MM-DD` at the destination, midnight-UTC milliseconds in HubSpot.
    Date,
    /// An instant: ISO-8601 UTC with milliseconds, in both places.
    #[serde(rename = "datetime")]
    DateTime,
    /// One option of a select, radio or dropdown property.
    Enumeration,
    /// Several options: a JSON array at the destination, a `;` list in HubSpot.
    #[serde(rename = "multiselect")]
    MultiSelect,
    /// An email address, trimmed and lowercased.
    Email,
    /// A HubSpot owner id (`hubspot_owner_id`), digits kept as a string.
    Owner,
}

impl FieldType {
    /// The configuration spelling: `string`, `datetime`, `multiselect`…
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Bool => "bool",
            Self::Date => "date",
            Self::DateTime => "datetime",
            Self::Enumeration => "enumeration",
            Self::MultiSelect => "multiselect",
            Self::Email => "email",
            Self::Owner => "owner",
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A present value in canonical form. Equal values are equal however they were spelled: the same
/// instant in milliseconds or ISO text, `1.0` and `1`, options in any order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Canon {
    /// `string`, `enumeration`, `email` (trimmed, lowercased) and `owner` (digits).
    Text(String),
    /// `number`.
    Number(Decimal),
    /// `bool`.
    Bool(bool),
    /// `date`: days since 1970-01-01.
    Date(i64),
    /// `datetime`: Unix milliseconds.
    DateTime(i64),
    /// `multiselect`: sorted, without duplicates or empty options, never empty.
    Multi(Vec<String>),
}

/// The name of a JSON value's type, for error messages that must not carry the value.
pub(super) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl Canon {
    /// Reads a HubSpot property value. `Ok(None)` is "no value": `""` (docs/hubspot.md §7: clearing
    /// sends `""`), or only whitespace for the types that are trimmed.
    pub(super) fn from_hubspot(ty: FieldType, text: &str) -> Result<Option<Self>, MapErrorKind> {
        if text.is_empty() {
            return Ok(None);
        }
        let trimmed = text.trim_ascii();
        if trimmed.is_empty() && ty != FieldType::String && ty != FieldType::Enumeration {
            return Ok(None);
        }
        let canon = match ty {
            FieldType::String | FieldType::Enumeration => Self::Text(text.to_owned()),
            FieldType::Number => Self::Number(Decimal::parse(trimmed)?),
            FieldType::Bool => Self::Bool(parse_bool(trimmed)?),
            FieldType::Date => Self::Date(if calendar::is_epoch_ms(trimmed) {
                calendar::midnight_days(calendar::parse_epoch_ms(trimmed)?)?
            } else if trimmed.len() == 10 {
                calendar::parse_date(trimmed)?
            } else {
                calendar::midnight_days(calendar::parse_datetime(trimmed)?)?
            }),
            FieldType::DateTime => Self::DateTime(if calendar::is_epoch_ms(trimmed) {
                calendar::parse_epoch_ms(trimmed)?
            } else {
                calendar::parse_datetime(trimmed)?
            }),
            FieldType::MultiSelect => return Ok(Self::multi(trimmed.split(';'))),
            FieldType::Email => Self::Text(parse_email(trimmed)?),
            FieldType::Owner => Self::Text(parse_owner(trimmed)?),
        };
        Ok(Some(canon))
    }

    /// Reads a destination value, more leniently than [`Self::from_hubspot`]: JSON numbers and
    /// booleans where HubSpot would have strings, milliseconds as JSON numbers, multi-selects as
    /// arrays or `;` lists. `Ok(None)` is "no value": `null`, `""`, `[]`.
    pub(super) fn from_destination(
        ty: FieldType,
        value: &Value,
    ) -> Result<Option<Self>, MapErrorKind> {
        match (ty, value) {
            (_, Value::Null) => Ok(None),
            (_, Value::String(s)) => Self::from_hubspot(ty, s),
            (FieldType::MultiSelect, Value::Array(items)) => {
                let texts = items
                    .iter()
                    .map(|v| v.as_str().ok_or(MapErrorKind::WrongType))
                    .collect::<Result<Vec<_>, _>>()?;
                if texts.iter().any(|t| t.contains(';')) {
                    return Err(MapErrorKind::Malformed);
                }
                Ok(Self::multi(texts.into_iter()))
            }
            (FieldType::Bool, Value::Bool(b)) => Ok(Some(Self::Bool(*b))),
            (
                FieldType::String
                | FieldType::Enumeration
                | FieldType::Number
                | FieldType::Date
                | FieldType::DateTime
                | FieldType::Owner,
                Value::Number(n),
            ) => Self::from_hubspot(ty, &n.to_string()),
            (FieldType::String | FieldType::Enumeration, Value::Bool(b)) => {
                Ok(Some(Self::Text(b.to_string())))
            }
            _ => Err(MapErrorKind::WrongType),
        }
    }

    /// The destination's JSON value.
    ///
    /// # Errors
    /// [`MapErrorKind::OutOfRange`] for a number no JSON number holds exactly.
    pub(super) fn to_destination(&self) -> Result<Value, MapErrorKind> {
        Ok(match self {
            Self::Text(s) => Value::String(s.clone()),
            Self::Number(d) => Value::Number(d.to_json()?),
            Self::Bool(b) => Value::Bool(*b),
            Self::Date(days) => Value::String(calendar::format_date(*days)),
            Self::DateTime(ms) => Value::String(calendar::format_datetime(*ms)),
            Self::Multi(items) => Value::Array(items.iter().cloned().map(Value::String).collect()),
        })
    }

    /// The HubSpot property string.
    ///
    /// Dates are written as midnight-UTC milliseconds, which HubSpot accepts on every API
    /// version and is what it takes in search filters (docs/hubspot.md §7: "you must use an EPOCH
    /// millisecond timestamp … set to midnight UTC"); by construction it is always midnight.
    /// Datetimes are written as ISO-8601 with milliseconds and `Z`, the form HubSpot returns.
    pub(super) fn to_hubspot(&self) -> String {
        match self {
            Self::Text(s) => s.clone(),
            Self::Number(d) => d.as_str().to_owned(),
            Self::Bool(b) => b.to_string(),
            Self::Date(days) => calendar::days_to_ms(*days).to_string(),
            Self::DateTime(ms) => calendar::format_datetime(*ms),
            Self::Multi(items) => items.join(";"),
        }
    }

    /// Whether HubSpot would take this value's text (docs/hubspot.md §7: strings are limited to
    /// 65,536 characters).
    pub(super) fn check_length(&self) -> Result<(), MapErrorKind> {
        match self {
            Self::Text(s) if s.len() > MAX_STRING_CHARS && s.chars().count() > MAX_STRING_CHARS => {
                Err(MapErrorKind::TooLong)
            }
            _ => Ok(()),
        }
    }

    /// Options from any order, trimmed, without empties and duplicates; `None` when none is left.
    pub(super) fn multi<'a>(items: impl Iterator<Item = &'a str>) -> Option<Self> {
        let mut items: Vec<String> = items
            .map(str::trim_ascii)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        items.sort_unstable();
        items.dedup();
        (!items.is_empty()).then_some(Self::Multi(items))
    }
}

/// docs/hubspot.md §7: single checkboxes are `"true"` / `"false"` (any case accepted on the way
/// in).
fn parse_bool(s: &str) -> Result<bool, MapErrorKind> {
    if s.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(MapErrorKind::Malformed)
    }
}

/// Trimmed and lowercased (docs/hubspot.md §7: normalise before lookups and upserts, since
/// HubSpot's own case handling is unconfirmed). Only the shape is checked, `local@domain` without
/// spaces: HubSpot validates the rest on write.
fn parse_email(s: &str) -> Result<String, MapErrorKind> {
    let email = s.to_lowercase();
    match email.split_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && !email.chars().any(char::is_whitespace) =>
        {
            Ok(email)
        }
        _ => Err(MapErrorKind::Malformed),
    }
}

/// docs/hubspot.md §7: owner properties hold the owner `id`, digits.
fn parse_owner(s: &str) -> Result<String, MapErrorKind> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_owned())
    } else {
        Err(MapErrorKind::Malformed)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use FieldType as T;

    /// HubSpot text → destination JSON (or error kind).
    fn read(ty: FieldType, text: &str) -> Result<Value, MapErrorKind> {
        match Canon::from_hubspot(ty, text)? {
            Some(c) => c.to_destination(),
            None => Ok(Value::Null),
        }
    }

    /// Destination JSON → HubSpot text (or error kind).
    fn write(ty: FieldType, value: &Value) -> Result<String, MapErrorKind> {
        Ok(Canon::from_destination(ty, value)?
            .map(|c| c.to_hubspot())
            .unwrap_or_default())
    }

    #[test]
    fn reading_hubspot_values() {
        let ok = [
            (T::String, "  Ada ", json!("  Ada ")),
            (T::String, "", json!(null)),
            (T::String, " ", json!(" ")),
            (T::Number, "17", json!(17)),
            (T::Number, "1.0", json!(1)),
            (T::Number, "-12.50", json!(-12.5)),
            (T::Number, "", json!(null)),
            (T::Bool, "true", json!(true)),
            (T::Bool, "false", json!(false)),
            (T::Bool, "TRUE", json!(true)),
            (T::Date, "2015-05-01", json!("2015-05-01")),
            (T::Date, "1430438400000", json!("2015-05-01")),
            (T::Date, "1572480000000", json!("2019-10-31")),
            (T::Date, "2015-05-01T00:00:00.000Z", json!("2015-05-01")),
            (T::Date, "-86400000", json!("1969-12-31")),
            (
                T::DateTime,
                "2024-09-11T18:21:50.012Z",
                json!("2024-09-11T18:21:50.012Z"),
            ),
            (
                T::DateTime,
                "1726078910012",
                json!("2024-09-11T18:21:50.012Z"),
            ),
            (
                T::DateTime,
                "2020-02-29T03:30:17Z",
                json!("2020-02-29T03:30:17.000Z"),
            ),
            (
                T::DateTime,
                "2020-02-29T04:30:17+01:00",
                json!("2020-02-29T03:30:17.000Z"),
            ),
            (
                T::Enumeration,
                "salesqualifiedlead",
                json!("salesqualifiedlead"),
            ),
            (
                T::MultiSelect,
                "strawberry;chocolate",
                json!(["chocolate", "strawberry"]),
            ),
            (T::MultiSelect, "b;a;b;", json!(["a", "b"])),
            (T::MultiSelect, ";", json!(null)),
            (T::Email, "  Ada@Example.COM ", json!("ada@example.com")),
            (T::Email, " ", json!(null)),
            (T::Owner, "12345", json!("12345")),
        ];
        for (ty, text, expected) in ok {
            assert_eq!(read(ty, text), Ok(expected), "{ty:?} {text:?}");
        }
        let errors = [
            (T::Number, "1,000", MapErrorKind::Malformed),
            (T::Number, "1.000.000", MapErrorKind::Malformed),
            (T::Number, "12345678901234567.5", MapErrorKind::OutOfRange),
            (T::Bool, "yes", MapErrorKind::Malformed),
            (T::Bool, "1", MapErrorKind::Malformed),
            (T::Date, "1430438400001", MapErrorKind::NotMidnight),
            (T::Date, "2015-05-01T10:00:00Z", MapErrorKind::NotMidnight),
            (T::Date, "2015-02-30", MapErrorKind::Malformed),
            (T::Date, "05/01/2015", MapErrorKind::Malformed),
            (T::DateTime, "2024-09-11T18:21:50", MapErrorKind::Malformed),
            (T::DateTime, "2024-09-11", MapErrorKind::Malformed),
            (T::DateTime, "99999999999999999", MapErrorKind::OutOfRange),
            (T::Email, "ada", MapErrorKind::Malformed),
            (T::Email, "ada@", MapErrorKind::Malformed),
            (T::Email, "a@b@c", MapErrorKind::Malformed),
            (T::Email, "a b@c.d", MapErrorKind::Malformed),
            (T::Owner, "owner-1", MapErrorKind::Malformed),
        ];
        for (ty, text, kind) in errors {
            assert_eq!(read(ty, text), Err(kind), "{ty:?} {text:?}");
        }
    }

    #[test]
    fn writing_hubspot_values() {
        let ok = [
            (T::String, json!("Ada"), "Ada"),
            (T::String, json!(null), ""),
            (T::String, json!(""), ""),
            (T::String, json!(42), "42"),
            (T::Number, json!(17), "17"),
            (T::Number, json!(1.5), "1.5"),
            (T::Number, json!(1e20), "100000000000000000000"),
            (T::Number, json!("1.50"), "1.5"),
            (T::Number, json!(null), ""),
            (T::Bool, json!(true), "true"),
            (T::Bool, json!("false"), "false"),
            (T::Date, json!("2015-05-01"), "1430438400000"),
            (T::Date, json!("1965-03-01"), "-152668800000"),
            (T::Date, json!(1_430_438_400_000_i64), "1430438400000"),
            (T::Date, json!("2015-05-01T00:00:00Z"), "1430438400000"),
            (
                T::DateTime,
                json!("2024-09-11T18:21:50.012Z"),
                "2024-09-11T18:21:50.012Z",
            ),
            (
                T::DateTime,
                json!(1_726_078_910_012_i64),
                "2024-09-11T18:21:50.012Z",
            ),
            (
                T::DateTime,
                json!("2024-09-11 20:21:50.012345+02:00"),
                "2024-09-11T18:21:50.012Z",
            ),
            (T::Enumeration, json!("lead"), "lead"),
            (
                T::MultiSelect,
                json!(["strawberry", "chocolate"]),
                "chocolate;strawberry",
            ),
            (T::MultiSelect, json!("b;a"), "a;b"),
            (T::MultiSelect, json!([]), ""),
            (T::Email, json!(" Ada@Example.com"), "ada@example.com"),
            (T::Owner, json!(12345), "12345"),
            (T::Owner, json!("12345"), "12345"),
        ];
        for (ty, value, expected) in ok {
            assert_eq!(write(ty, &value), Ok(expected.to_owned()), "{ty:?} {value}");
        }
        let errors = [
            (
                T::Date,
                json!("2015-05-01T10:00:00Z"),
                MapErrorKind::NotMidnight,
            ),
            (
                T::Date,
                json!(1_430_438_400_001_i64),
                MapErrorKind::NotMidnight,
            ),
            (T::Number, json!(true), MapErrorKind::WrongType),
            (T::Number, json!({"a": 1}), MapErrorKind::WrongType),
            (T::Bool, json!(1), MapErrorKind::WrongType),
            (T::MultiSelect, json!(["a;b"]), MapErrorKind::Malformed),
            (T::MultiSelect, json!([1]), MapErrorKind::WrongType),
            (T::Email, json!(["a@b.c"]), MapErrorKind::WrongType),
            (T::Owner, json!(-1), MapErrorKind::Malformed),
            (T::Owner, json!(1.5), MapErrorKind::Malformed),
            (T::DateTime, json!(1.5), MapErrorKind::Malformed),
        ];
        for (ty, value, kind) in errors {
            assert_eq!(write(ty, &value), Err(kind), "{ty:?} {value}");
        }
    }

    #[test]
    fn equal_values_have_one_canonical_form() {
        let same = [
            (
                T::DateTime,
                json!("2024-09-11T18:21:50.012Z"),
                json!(1_726_078_910_012_i64),
            ),
            (
                T::DateTime,
                json!("2024-09-11T18:21:50.012Z"),
                json!("1726078910012"),
            ),
            (T::Date, json!("2015-05-01"), json!(1_430_438_400_000_i64)),
            (T::Number, json!("1.0"), json!(1)),
            (T::Number, json!(1.0), json!("1")),
            (T::MultiSelect, json!(["a", "b"]), json!(["b", "a"])),
            (T::MultiSelect, json!(["a", "b"]), json!("b;a")),
            (T::Bool, json!(true), json!("true")),
            (T::Email, json!("A@B.C"), json!("a@b.c")),
            (T::String, json!(""), json!(null)),
            (T::MultiSelect, json!([]), json!(null)),
        ];
        for (ty, a, b) in same {
            assert_eq!(
                Canon::from_destination(ty, &a),
                Canon::from_destination(ty, &b),
                "{ty:?} {a} {b}"
            );
        }
    }

    #[test]
    fn long_strings_are_refused_for_hubspot() {
        let ok = Canon::Text("é".repeat(MAX_STRING_CHARS));
        assert_eq!(ok.check_length(), Ok(()));
        let long = Canon::Text("a".repeat(MAX_STRING_CHARS + 1));
        assert_eq!(long.check_length(), Err(MapErrorKind::TooLong));
    }
}
