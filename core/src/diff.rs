//! What changed in a record since it was last seen, and the echo guard for this integration's
//! own writes.
//!
//! # Diff
//!
//! [`diff`] compares the last-known snapshot of a mapped record with the current one, field by
//! field, using the field types of the [`ObjectMap`]: the same instant in milliseconds and in ISO
//! text is equal, `"1.0"` equals `1`, multi-select options compare in any order, `""` and `null`
//! and an absent field are all "no value" (HubSpot either returns `null` for an empty property
//! or leaves it out: docs/hubspot.md §4.1, §8 item 11). Values that do not read as their field
//! type, and fields the map does not know (say, removed from the configuration), compare as JSON.
//!
//! The result is [`Diff::Unchanged`] or [`Diff::Changed`] with a minimal [`Patch`]: one
//! [`Change`] per differing field, in the map's field order, then fields outside the map in name
//! order. Each change carries the old and new values as they appear in the two records (`null`
//! for absent); a [`Change`] built elsewhere may leave `old` unknown ([`crate::enrich`]).
//!
//! ```
//! # use hubspot_edge_core::{diff::{diff, Diff}, mapping::{Mapping, Record}};
//! # use std::collections::BTreeMap;
//! let mapping = Mapping::from_json(r#"{"objects":{"contacts":{"fields":[
//!     {"hubspot":"email","type":"email"},{"hubspot":"closedate","type":"date"}]}}}"#).unwrap();
//! let map = mapping.object("contact").unwrap();
//! let snapshot = Record::from_snapshot(r#"{"email":"a@b.c","closedate":"2015-05-01"}"#).unwrap();
//! let hubspot = BTreeMap::from([
//!     ("email".to_owned(), Some("A@B.C".to_owned())),
//!     ("closedate".to_owned(), Some("1430438400000".to_owned())),
//! ]);
//! let current = map.to_destination(&hubspot).unwrap();
//! assert_eq!(diff(map, &snapshot, &current), Diff::Unchanged);
//! ```
//!
//! # Echo guard
//!
//! HubSpot webhooks carry no trustworthy marker of who made a change, so a write of ours comes
//! back as a `propertyChange` like anyone else's and, in a two-way sync, goes out again: the loop
//! of docs/hubspot.md §2.2. Before writing, keep an [`EchoGuard`] for the record: the names of the
//! properties written and a [`fingerprint`] of their values. When a change notification arrives,
//! [`EchoGuard::is_echo`] says whether HubSpot's current values are exactly what we wrote; then
//! the notification is our own echo and is dropped. Values are normalised by field type first,
//! because HubSpot may answer in another spelling than the one written: a date written as
//! midnight milliseconds may read back as `YYYY-MM-DD` (docs/hubspot.md §7 accepts both and does
//! not say which it returns), multi-select options in another order.
//!
//! Store guards with a short expiry (minutes): a person setting the same values again later would
//! otherwise look like our echo. Keep the guard until it expires rather than deleting it on the
//! first match, since HubSpot sends one notification per written property.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::mapping::{ObjectMap, Record};

/// The outcome of [`diff`].
#[must_use]
#[derive(Debug, Clone, PartialEq)]
pub enum Diff {
    /// No field changed: nothing to send, nothing to write.
    Unchanged,
    /// At least one field changed.
    Changed(Patch),
}

impl Diff {
    /// Whether nothing changed.
    pub fn is_unchanged(&self) -> bool {
        matches!(self, Self::Unchanged)
    }

    /// The patch, when something changed.
    pub fn patch(&self) -> Option<&Patch> {
        match self {
            Self::Unchanged => None,
            Self::Changed(patch) => Some(patch),
        }
    }
}

/// The changed fields of one record, never empty. Serialises as a JSON array of
/// `{"field", "old", "new"}` objects.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Patch {
    changes: Vec<Change>,
}

/// One changed field. Serialises as `{"field", "old", "new"}`, without `old` when the old value
/// is unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The destination field.
    pub field: String,
    /// Its value before: `Some(null)` when it had none (or was absent); `None` when it is not
    /// known (a first change whose previous value HubSpot's history does not give:
    /// [`crate::enrich`]). [`diff`] always knows it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub old: Option<Value>,
    /// Its value now; `null` when it has none or is absent.
    pub new: Value,
}

/// A present `old`, `null` included, is known; only an absent one is not (`default`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl Patch {
    /// The changes, in the map's field order, then other fields in name order.
    pub fn changes(&self) -> &[Change] {
        &self.changes
    }

    /// Applies the patch: `record` gets each change's new value (`null` for "no value").
    /// Applied to the snapshot it was computed from, the result equals the current record.
    pub fn apply_to(&self, record: &mut Record) {
        for change in &self.changes {
            record.insert(change.field.clone(), change.new.clone());
        }
    }
}

/// Compares the last-known snapshot of a record with its current mapped form (see the module
/// docs). An empty `old` (no snapshot yet) makes every field with a value a change.
pub fn diff(map: &ObjectMap, old: &Record, new: &Record) -> Diff {
    let others: BTreeSet<&str> = old
        .as_map()
        .keys()
        .chain(new.as_map().keys())
        .map(String::as_str)
        // The integration's bookkeeping (associations, change times) is not a field.
        .filter(|field| !map.has_field(field) && !crate::records::is_reserved(field))
        .collect();
    let changes: Vec<Change> = map
        .field_names()
        .chain(others)
        .filter_map(|field| {
            let (a, b) = (old.get(field), new.get(field));
            (!map.same_value(field, a, b)).then(|| Change {
                field: field.to_owned(),
                old: Some(a.cloned().unwrap_or(Value::Null)),
                new: b.cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    if changes.is_empty() {
        Diff::Unchanged
    } else {
        Diff::Changed(Patch { changes })
    }
}

/// A stable fingerprint of the property values this integration wrote to one record: lowercase
/// hex SHA-256.
///
/// The hashed text is `hubspot-edge.echo.v1`, then the object type (as in webhook events:
/// `contact`), the record id and each property's name and normalised value in name order, each
/// written as its length in bytes, `:`, and its bytes. Normalised means in canonical HubSpot form
/// for the property's field type (`""` for no value); values of unmapped properties, and values
/// that do not read as their type, are hashed as given.
pub fn fingerprint(map: &ObjectMap, id: &str, written: &BTreeMap<String, String>) -> String {
    digest(
        map,
        id,
        written
            .iter()
            .map(|(name, value)| (name.as_str(), Some(value.as_str()))),
    )
}

/// What this integration last wrote to one record, kept (in KV, with a short expiry) to
/// recognise HubSpot's notifications of that write. Serialises compactly as
/// `{"properties":["email","lifecyclestage"],"fingerprint":"<64 hex digits>"}`.
///
/// `current` values come from reading the written properties back. When a single property was
/// written, the notification's own `propertyName` and `propertyValue` are enough, with no API
/// call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EchoGuard {
    properties: Vec<String>,
    fingerprint: String,
}

impl EchoGuard {
    /// The guard for writing `written` (property → value, as sent to HubSpot) to record `id`.
    pub fn new(map: &ObjectMap, id: &str, written: &BTreeMap<String, String>) -> Self {
        Self {
            properties: written.keys().cloned().collect(),
            fingerprint: fingerprint(map, id, written),
        }
    }

    /// The written properties, in name order: the ones to read back for [`Self::is_echo`].
    pub fn properties(&self) -> &[String] {
        &self.properties
    }

    /// The [`fingerprint`] of the write.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Whether a `propertyChange` notification for `property` is the echo of our write: we wrote
    /// `property`, and HubSpot's current values of all the written properties (`current`, as
    /// HubSpot returns them; other entries are ignored) are still what we wrote. A change to a
    /// property we did not write is never an echo.
    pub fn is_echo(
        &self,
        map: &ObjectMap,
        id: &str,
        property: &str,
        current: &BTreeMap<String, Option<String>>,
    ) -> bool {
        self.properties.iter().any(|p| p == property) && self.matches(map, id, current)
    }

    /// Whether HubSpot's current values of the written properties are still what we wrote,
    /// whatever the notification (a creation we made, for instance). A written property missing
    /// from `current` counts as empty (docs/hubspot.md §4.1, §8 item 11).
    pub fn matches(
        &self,
        map: &ObjectMap,
        id: &str,
        current: &BTreeMap<String, Option<String>>,
    ) -> bool {
        // Stored guards may come back in another order; the fingerprint is over sorted names.
        let names: BTreeSet<&str> = self.properties.iter().map(String::as_str).collect();
        let values = names
            .into_iter()
            .map(|name| (name, current.get(name).and_then(Option::as_deref)));
        digest(map, id, values) == self.fingerprint
    }
}

fn digest<'a>(
    map: &ObjectMap,
    id: &str,
    values: impl Iterator<Item = (&'a str, Option<&'a str>)>,
) -> String {
    fn put(hasher: &mut Sha256, text: &str) {
        hasher.update(text.len().to_string().as_bytes());
        hasher.update(b":");
        hasher.update(text.as_bytes());
    }
    let mut hasher = Sha256::new();
    hasher.update(b"hubspot-edge.echo.v1");
    put(&mut hasher, map.canonical_type());
    put(&mut hasher, id);
    for (name, value) in values {
        put(&mut hasher, name);
        put(&mut hasher, &map.normalise_hubspot(name, value));
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0x0f)]])
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::json;

    use super::*;
    use crate::mapping::Mapping;

    const CONFIG: &str = r#"{"objects":{"contacts":{"fields":[
        {"hubspot":"email","type":"email"},
        {"hubspot":"firstname","field":"first_name"},
        {"hubspot":"interests","type":"multiselect"},
        {"hubspot":"closedate","field":"close_date","type":"date"},
        {"hubspot":"lastseen","field":"last_seen","type":"datetime"},
        {"hubspot":"num_employees","field":"employees","type":"number"},
        {"hubspot":"optout","type":"bool"},
        {"hubspot":"hubspot_owner_id","field":"owner","type":"owner"},
        {"field":"source","constant":"hubspot"}
    ]}}}"#;

    fn mapping() -> Mapping {
        Mapping::from_json(CONFIG).unwrap()
    }

    fn record(value: Value) -> Record {
        match value {
            Value::Object(map) => Record::from(map),
            _ => panic!("not an object"),
        }
    }

    fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn current(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
            .collect()
    }

    /// The fields a diff reports, in order.
    fn changed(old: Value, new: Value) -> Vec<String> {
        let mapping = mapping();
        let map = mapping.object("contacts").unwrap();
        match diff(map, &record(old), &record(new)) {
            Diff::Unchanged => vec![],
            Diff::Changed(p) => p.changes().iter().map(|c| c.field.clone()).collect(),
        }
    }

    #[test]
    fn type_aware_equality() {
        let equal = [
            (
                json!({"last_seen": "2024-09-11T18:21:50.012Z"}),
                json!({"last_seen": 1_726_078_910_012_i64}),
            ),
            (
                json!({"last_seen": "2024-09-11T20:21:50.012+02:00"}),
                json!({"last_seen": "1726078910012"}),
            ),
            (
                json!({"close_date": "2015-05-01"}),
                json!({"close_date": 1_430_438_400_000_i64}),
            ),
            (json!({"employees": "1.0"}), json!({"employees": 1})),
            (json!({"employees": 1.5}), json!({"employees": "1.50"})),
            (
                json!({"interests": ["a", "b"]}),
                json!({"interests": ["b", "a"]}),
            ),
            (
                json!({"interests": ["a", "b"]}),
                json!({"interests": "b;a"}),
            ),
            (json!({"email": "A@B.C"}), json!({"email": "a@b.c"})),
            (json!({"optout": "true"}), json!({"optout": true})),
            (json!({"owner": 7}), json!({"owner": "7"})),
            (json!({"first_name": null}), json!({})),
            (json!({"first_name": ""}), json!({"first_name": null})),
            (json!({"interests": []}), json!({})),
            (json!({"extra": null}), json!({})),
            (json!({"extra": {"a": 1}}), json!({"extra": {"a": 1}})),
        ];
        for (a, b) in equal {
            assert_eq!(
                changed(a.clone(), b.clone()),
                Vec::<String>::new(),
                "{a} {b}"
            );
            assert_eq!(
                changed(b.clone(), a.clone()),
                Vec::<String>::new(),
                "{b} {a}"
            );
        }
        let different = [
            (
                json!({"last_seen": "2024-09-11T18:21:50.012Z"}),
                json!({"last_seen": "2024-09-11T18:21:50.013Z"}),
            ),
            (json!({"employees": 1}), json!({"employees": "1.01"})),
            (
                json!({"interests": ["a"]}),
                json!({"interests": ["a", "b"]}),
            ),
            (json!({"first_name": "Ada"}), json!({"first_name": "ada"})),
            (json!({"first_name": "Ada"}), json!({})),
            (json!({"first_name": " "}), json!({"first_name": ""})),
            (json!({"optout": false}), json!({})),
            // Values that do not read as their type compare as JSON.
            (json!({"employees": "n/a"}), json!({"employees": "N/A"})),
            (json!({"extra": ""}), json!({"extra": null})),
        ];
        for (a, b) in different {
            assert_eq!(changed(a.clone(), b.clone()).len(), 1, "{a} {b}");
        }
        assert_eq!(
            changed(json!({"employees": "n/a"}), json!({"employees": "n/a"})),
            Vec::<String>::new()
        );
    }

    #[test]
    fn patches_are_minimal_and_ordered() {
        let old = json!({
            "email": "a@b.c", "first_name": "Ada", "close_date": "2015-05-01",
            "employees": 10, "source": "hubspot", "zeta": 1, "alpha": 1
        });
        let new = json!({
            "alpha": 2, "zeta": 2, "source": "hubspot", "employees": 11,
            "close_date": "2015-05-01", "first_name": null, "email": "a@b.c", "beta": true
        });
        assert_eq!(
            changed(old.clone(), new.clone()),
            ["first_name", "employees", "alpha", "beta", "zeta"]
        );
        let mapping = mapping();
        let map = mapping.object("contacts").unwrap();
        let d = diff(map, &record(old), &record(new));
        let patch = d.patch().unwrap();
        assert_eq!(
            serde_json::to_value(patch).unwrap(),
            json!([
                {"field": "first_name", "old": "Ada", "new": null},
                {"field": "employees", "old": 10, "new": 11},
                {"field": "alpha", "old": 1, "new": 2},
                {"field": "beta", "old": null, "new": true},
                {"field": "zeta", "old": 1, "new": 2}
            ])
        );
        assert!(!d.is_unchanged());
    }

    #[test]
    fn unknown_old_is_absent_and_null_is_kept() {
        let known = Change {
            field: "first_name".into(),
            old: Some(Value::Null),
            new: json!("Ada"),
        };
        let unknown = Change {
            old: None,
            ..known.clone()
        };
        assert_eq!(
            serde_json::to_string(&known).unwrap(),
            r#"{"field":"first_name","old":null,"new":"Ada"}"#
        );
        assert_eq!(
            serde_json::to_string(&unknown).unwrap(),
            r#"{"field":"first_name","new":"Ada"}"#
        );
        for change in [known, unknown] {
            let text = serde_json::to_string(&change).unwrap();
            assert_eq!(serde_json::from_str::<Change>(&text).unwrap(), change);
        }
    }

    #[test]
    fn nothing_changed_is_an_outcome() {
        let mapping = mapping();
        let map = mapping.object("contacts").unwrap();
        let r = record(json!({"email": "a@b.c", "interests": ["x"], "source": "hubspot"}));
        let d = diff(map, &r, &r);
        assert_eq!(d, Diff::Unchanged);
        assert!(d.is_unchanged());
        assert!(d.patch().is_none());
        assert_eq!(diff(map, &Record::new(), &Record::new()), Diff::Unchanged);
    }

    #[test]
    fn first_sight_reports_every_value() {
        assert_eq!(
            changed(
                json!({}),
                json!({"email": "a@b.c", "first_name": null, "source": "hubspot"})
            ),
            ["email", "source"]
        );
    }

    #[test]
    fn applying_a_patch_gives_the_new_record() {
        let mapping = mapping();
        let map = mapping.object("contacts").unwrap();
        let old = record(json!({"email": "a@b.c", "employees": 1, "gone": "x"}));
        let new = record(json!({"email": "b@b.c", "employees": "1.0", "interests": ["x"]}));
        let Diff::Changed(patch) = diff(map, &old, &new) else {
            panic!("expected changes");
        };
        let mut applied = old.clone();
        patch.apply_to(&mut applied);
        assert_eq!(
            applied,
            record(json!({"email": "b@b.c", "employees": 1, "gone": null, "interests": ["x"]}))
        );
        assert_eq!(diff(map, &applied, &new), Diff::Unchanged);
    }

    #[test]
    fn fingerprint_known_answer() {
        let mapping = mapping();
        let map = mapping.object("contacts").unwrap();
        let written = strings(&[("email", "a@b.c"), ("firstname", "Ada")]);
        // Computed independently (Python hashlib) over
        // "hubspot-edge.echo.v17:contact3:5015:email5:a@b.c9:firstname3:Ada".
        assert_eq!(
            fingerprint(map, "501", &written),
            "c5d65d1d21bc4f93f6fbb4931253ef7f9db02907b600cea7106e538e299c49e4"
        );
    }

    #[test]
    fn fingerprints_are_stable_across_spellings() {
        let mapping = mapping();
        let map = mapping.object("contacts").unwrap();
        let ours = strings(&[
            ("closedate", "1430438400000"),
            ("interests", "a;b"),
            ("email", "ada@example.com"),
            ("num_employees", "1500"),
            ("lastseen", "2024-09-11T18:21:50.012Z"),
            ("firstname", ""),
        ]);
        let hubspots = strings(&[
            ("closedate", "2015-05-01"),
            ("interests", "b;a"),
            ("email", "Ada@Example.com"),
            ("num_employees", "1500.0"),
            ("lastseen", "1726078910012"),
            ("firstname", ""),
        ]);
        assert_eq!(
            fingerprint(map, "1", &ours),
            fingerprint(map, "1", &hubspots)
        );
        // Another record, object type or value is another fingerprint.
        assert_ne!(fingerprint(map, "1", &ours), fingerprint(map, "2", &ours));
        let other_mapping = Mapping::from_json(&CONFIG.replace("contacts", "companies")).unwrap();
        let other = other_mapping.object("companies").unwrap();
        assert_ne!(fingerprint(map, "1", &ours), fingerprint(other, "1", &ours));
        let mut changed = ours.clone();
        changed.insert("firstname".to_owned(), "Ada".to_owned());
        assert_ne!(
            fingerprint(map, "1", &ours),
            fingerprint(map, "1", &changed)
        );
        // Lengths keep names and values apart: `ab`+`c` is not `a`+`bc`.
        assert_ne!(
            fingerprint(map, "1", &strings(&[("ab", "c")])),
            fingerprint(map, "1", &strings(&[("a", "bc")]))
        );
        assert_eq!(fingerprint(map, "1", &ours).len(), 64);
    }

    #[test]
    fn echo_guard() {
        let mapping = mapping();
        let map = mapping.object("contact").unwrap();
        let written = strings(&[("closedate", "1430438400000"), ("firstname", "Ada")]);
        let guard = EchoGuard::new(map, "501", &written);
        assert_eq!(guard.properties(), ["closedate", "firstname"]);
        assert_eq!(guard.fingerprint(), fingerprint(map, "501", &written));

        // HubSpot's read-back, in its own spelling, with other properties around.
        let now = current(&[
            ("closedate", Some("2015-05-01")),
            ("firstname", Some("Ada")),
            ("email", Some("someone@else.com")),
        ]);
        assert!(guard.is_echo(map, "501", "firstname", &now));
        assert!(guard.is_echo(map, "501", "closedate", &now));
        // A property we did not write is someone else's change.
        assert!(!guard.is_echo(map, "501", "email", &now));
        assert!(!guard.is_echo(map, "502", "firstname", &now));
        // Someone changed a written property since: not (only) our echo.
        let later = current(&[
            ("closedate", Some("2015-05-02")),
            ("firstname", Some("Ada")),
        ]);
        assert!(!guard.is_echo(map, "501", "firstname", &later));
        assert!(!guard.matches(map, "501", &current(&[("firstname", Some("Ada"))])));

        // A cleared property reads back as null or not at all.
        let cleared = EchoGuard::new(map, "501", &strings(&[("firstname", "")]));
        assert!(cleared.matches(map, "501", &current(&[("firstname", None)])));
        assert!(cleared.matches(map, "501", &current(&[])));

        // Stored compactly, in any order.
        let stored = serde_json::to_string(&guard).unwrap();
        assert_eq!(
            stored,
            format!(
                r#"{{"properties":["closedate","firstname"],"fingerprint":"{}"}}"#,
                guard.fingerprint()
            )
        );
        let reordered = stored.replace(
            r#"["closedate","firstname"]"#,
            r#"["firstname","closedate"]"#,
        );
        let back: EchoGuard = serde_json::from_str(&reordered).unwrap();
        assert!(back.is_echo(map, "501", "firstname", &now));
        assert!(
            serde_json::from_str::<EchoGuard>(r#"{"properties":[],"fingerprint":"","x":1}"#)
                .is_err()
        );
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use proptest::prelude::*;

    use super::*;
    use crate::mapping::Mapping;

    const CONFIG: &str = r#"{"objects":{"contacts":{"fields":[
        {"hubspot":"tags","type":"multiselect"},
        {"hubspot":"amount","type":"number"},
        {"hubspot":"seen","type":"datetime"},
        {"hubspot":"name"}
    ]}}}"#;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-1000i64..1000).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::String),
            proptest::collection::vec("[a-d]", 0..4).prop_map(|v| serde_json::json!(v)),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        proptest::collection::btree_map(
            prop_oneof![
                Just("tags"),
                Just("amount"),
                Just("seen"),
                Just("name"),
                Just("other")
            ],
            value(),
            0..5,
        )
        .prop_map(|m| {
            let mut r = Record::new();
            for (k, v) in m {
                r.insert(k, v);
            }
            r
        })
    }

    proptest! {
        #[test]
        fn a_record_equals_itself(r in record()) {
            let mapping = Mapping::from_json(CONFIG).unwrap();
            let map = mapping.object("contacts").unwrap();
            prop_assert_eq!(diff(map, &r, &r), Diff::Unchanged);
        }

        #[test]
        fn multiselect_order_does_not_matter(
            tags in proptest::collection::vec("[a-z]{1,3}", 0..6),
            seed in any::<u64>(),
        ) {
            let mapping = Mapping::from_json(CONFIG).unwrap();
            let map = mapping.object("contacts").unwrap();
            let mut shuffled = tags.clone();
            shuffled.rotate_left(usize::try_from(seed % 7).unwrap_or(0).min(tags.len()));
            shuffled.reverse();
            let mut a = Record::new();
            a.insert("tags", serde_json::json!(tags));
            let mut b = Record::new();
            b.insert("tags", serde_json::json!(shuffled));
            prop_assert_eq!(diff(map, &a, &b), Diff::Unchanged);
            let mut c = Record::new();
            c.insert("tags", Value::String(shuffled.join(";")));
            prop_assert_eq!(diff(map, &a, &c), Diff::Unchanged);
        }

        #[test]
        fn applying_the_patch_to_old_gives_new(old in record(), new in record()) {
            let mapping = Mapping::from_json(CONFIG).unwrap();
            let map = mapping.object("contacts").unwrap();
            let mut applied = old.clone();
            if let Diff::Changed(patch) = diff(map, &old, &new) {
                for change in patch.changes() {
                    let field = change.field.as_str();
                    prop_assert!(!map.same_value(field, old.get(field), new.get(field)));
                }
                patch.apply_to(&mut applied);
            }
            prop_assert_eq!(diff(map, &applied, &new), Diff::Unchanged);
            // Changed fields hold exactly the new value; the others are untouched.
            for (field, value) in applied.as_map() {
                let expected = new.get(field).unwrap_or(&Value::Null);
                prop_assert!(value == expected || old.get(field) == Some(value));
            }
        }
    }
}
