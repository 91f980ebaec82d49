//! The destination record, and its snapshot form for storage.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// A mapped record: destination field names to typed JSON values.
///
/// `null` means "HubSpot has no value" (`""` or `null` there); a field that is absent was not
/// among the properties HubSpot returned. Fields iterate and serialise in name order (the order
/// of `serde_json::Map` without its `preserve_order` feature), so equal records have identical
/// snapshots.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Record(Map<String, Value>);

/// A stored snapshot cannot be read back as a record. Our state, not the caller's request, is
/// bad: treat the record as never seen (an empty snapshot) and overwrite it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("snapshot is invalid: {detail}")]
pub struct SnapshotError {
    detail: String,
}

impl SnapshotError {
    /// Stable code: `snapshot_invalid`.
    pub fn code(&self) -> &'static str {
        "snapshot_invalid"
    }
}

impl Record {
    /// An empty record: what to diff against when there is no snapshot yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `field`, `None` when absent.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.0.get(field)
    }

    /// Sets `field`, returning its previous value.
    pub fn insert(&mut self, field: impl Into<String>, value: Value) -> Option<Value> {
        self.0.insert(field.into(), value)
    }

    /// Removes `field`, returning its value.
    pub fn remove(&mut self, field: &str) -> Option<Value> {
        self.0.remove(field)
    }

    /// The fields as a JSON object.
    pub fn as_map(&self) -> &Map<String, Value> {
        &self.0
    }

    /// The compact JSON of the record (`{"email":"a@b.c","stage":"LEAD"}`, fields in name order):
    /// the snapshot to store, and to pass to [`Self::from_snapshot`] next time.
    pub fn to_snapshot(&self) -> String {
        // A map of strings to JSON values always serialises (no non-string keys, no NaN).
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Reads a snapshot written by [`Self::to_snapshot`] (any JSON object is accepted).
    ///
    /// # Errors
    /// [`SnapshotError`] when the text is not a JSON object. The message gives the position, never
    /// the stored content.
    pub fn from_snapshot(snapshot: &str) -> Result<Self, SnapshotError> {
        match serde_json::from_str::<Value>(snapshot) {
            Ok(Value::Object(map)) => Ok(Self(map)),
            Ok(_) => Err(SnapshotError {
                detail: "not a json object".to_owned(),
            }),
            Err(e) => Err(SnapshotError {
                detail: format!("malformed json at line {} column {}", e.line(), e.column()),
            }),
        }
    }
}

impl From<Map<String, Value>> for Record {
    fn from(map: Map<String, Value>) -> Self {
        Self(map)
    }
}

impl From<Record> for Map<String, Value> {
    fn from(record: Record) -> Self {
        record.0
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;

    #[test]
    fn snapshots_are_compact_sorted_and_round_trip() {
        let mut r = Record::new();
        r.insert("stage", json!("LEAD"));
        r.insert("email", json!("a@b.c"));
        r.insert("tags", json!(["x", "y"]));
        r.insert("phone", Value::Null);
        r.insert("amount", json!(1.5));
        let snapshot = r.to_snapshot();
        assert_eq!(
            snapshot,
            r#"{"amount":1.5,"email":"a@b.c","phone":null,"stage":"LEAD","tags":["x","y"]}"#
        );
        assert_eq!(Record::from_snapshot(&snapshot), Ok(r));
        assert_eq!(Record::from_snapshot("{}"), Ok(Record::new()));
    }

    #[test]
    fn bad_snapshots_do_not_echo_their_content() {
        for bad in [
            "",
            "[1]",
            "\"secret@example.com\"",
            "{\"email\":\"secret@example.com\"",
        ] {
            let err = Record::from_snapshot(bad).unwrap_err();
            assert_eq!(err.code(), "snapshot_invalid");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }
}
