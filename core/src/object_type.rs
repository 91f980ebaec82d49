//! HubSpot's object types under their several spellings, in one table: webhook events say
//! `contact` (or `0-1` in generic `object.*` events), API paths say `contacts`, workflow actions
//! say `CONTACT`. [`ObjectType`] reads any of them and writes each
//! (<https://developers.hubspot.com/docs/api/crm/understanding-the-crm>, docs/hubspot.md §4.1).
//! Custom objects keep their `2-…` type id (or the name they were given) in every vocabulary.

use std::fmt;

/// The standard objects: (type id, event name, API path segment).
const STANDARD: [(&str, &str, &str); 6] = [
    ("0-1", "contact", "contacts"),
    ("0-2", "company", "companies"),
    ("0-3", "deal", "deals"),
    ("0-5", "ticket", "tickets"),
    ("0-7", "product", "products"),
    ("0-8", "line_item", "line_items"),
];

/// An object type, whatever spelling it came in.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectType {
    /// A standard object (index into the table).
    Standard(StandardObject),
    /// A custom object: its type id (`2-123`) or name, as given.
    Custom(String),
}

/// One of HubSpot's standard objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StandardObject(u8);

impl ObjectType {
    /// Reads `contact`, `contacts`, `CONTACT`, `0-1` … (standard objects, any case) or a custom
    /// object's id or name (kept as given, trimmed).
    pub fn parse(name: &str) -> Self {
        let name = name.trim();
        let lower = name.to_ascii_lowercase();
        STANDARD
            .iter()
            .position(|(id, event, api)| lower == *id || lower == *event || lower == *api)
            .and_then(|i| u8::try_from(i).ok())
            .map_or_else(
                || Self::Custom(name.to_owned()),
                |i| Self::Standard(StandardObject(i)),
            )
    }

    fn entry(&self) -> Option<(&'static str, &'static str, &'static str)> {
        match self {
            Self::Standard(StandardObject(i)) => STANDARD.get(usize::from(*i)).copied(),
            Self::Custom(_) => None,
        }
    }

    /// The name webhook events use (`contact`, `line_item`; a custom object's id).
    pub fn event_name(&self) -> &str {
        match (self.entry(), self) {
            (Some((_, event, _)), _) => event,
            (None, Self::Custom(c)) => c,
            (None, Self::Standard(_)) => "",
        }
    }

    /// The CRM API path segment (`contacts`, `line_items`; a custom object's id).
    pub fn api_segment(&self) -> &str {
        match (self.entry(), self) {
            (Some((_, _, api)), _) => api,
            (None, Self::Custom(c)) => c,
            (None, Self::Standard(_)) => "",
        }
    }

    /// The type id (`0-1`; a custom object's `2-…` id or name as given).
    pub fn type_id(&self) -> &str {
        match (self.entry(), self) {
            (Some((id, _, _)), _) => id,
            (None, Self::Custom(c)) => c,
            (None, Self::Standard(_)) => "",
        }
    }
}

impl fmt::Display for ObjectType {
    /// The event name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.event_name())
    }
}

/// `name` in the vocabulary of webhook events when it is an exact spelling of a standard
/// object (`0-1`, `contact`, `contacts` → `contact`), else `name` itself (a custom object). No
/// allocation: the hot path of event parsing and filtering. [`ObjectType::parse`] also reads
/// other cases (`CONTACT`).
pub fn event_name(name: &str) -> &str {
    STANDARD
        .iter()
        .find(|(id, event, api)| name == *id || name == *event || name == *api)
        .map_or(name, |(_, event, _)| event)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn every_spelling_is_the_same_type() {
        for spelling in [
            "contact",
            "contacts",
            "CONTACT",
            "Contacts",
            "0-1",
            " contact ",
        ] {
            let t = ObjectType::parse(spelling);
            assert_eq!(
                (t.event_name(), t.api_segment(), t.type_id()),
                ("contact", "contacts", "0-1"),
                "{spelling:?}"
            );
        }
        let li = ObjectType::parse("LINE_ITEMS");
        assert_eq!(
            (li.event_name(), li.api_segment()),
            ("line_item", "line_items")
        );
        assert_eq!(ObjectType::parse("0-5").to_string(), "ticket");
    }

    #[test]
    fn custom_objects_keep_their_id() {
        let t = ObjectType::parse("2-123");
        assert_eq!(t, ObjectType::Custom("2-123".into()));
        assert_eq!(
            (t.event_name(), t.api_segment(), t.type_id()),
            ("2-123", "2-123", "2-123")
        );
        assert_eq!(event_name("p_cars"), "p_cars");
        assert_eq!(event_name("deals"), "deal");
        assert_eq!(event_name("0-3"), "deal");
    }
}
