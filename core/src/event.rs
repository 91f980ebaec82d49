//! The webhook event model: HubSpot's JSON array of events, parsed without copying
//! (docs/hubspot.md §2.1–2.3).
//!
//! Each event keeps its original JSON text ([`Event::raw`]) so that fields we do not model,
//! including those of future subscription types, are forwarded untouched; the fields we filter
//! and dedupe on are read once into borrowed, typed values.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use thiserror::Error;

use crate::id::{ObjectId, PortalId};

/// One HubSpot webhook event: typed fields plus its original JSON.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    raw: &'a str,
    subscription_type: Cow<'a, str>,
    portal_id: PortalId,
    event_id: u64,
    occurred_at_ms: u64,
    subscription_id: Option<u64>,
    app_id: Option<u64>,
    object_id: Option<ObjectId>,
    object_type_id: Option<Cow<'a, str>>,
    property_name: Option<Cow<'a, str>>,
    change_source: Option<Cow<'a, str>>,
    source_id: Option<Cow<'a, str>>,
    attempt_number: Option<u64>,
}

/// The body is not a JSON array of objects; nothing in it can be trusted to be an event.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("webhook body is not a json array: {detail}")]
pub struct BatchError {
    detail: String,
}

impl BatchError {
    /// Stable code: `batch_malformed`.
    pub fn code(&self) -> &'static str {
        "batch_malformed"
    }
}

/// One element of the batch is not an event we can key (the rest of the batch is unaffected).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EventError {
    /// A field the pipeline needs is absent: the type (`subscriptionType` or `eventType`),
    /// `portalId`, `eventId` or `occurredAt`.
    #[error("event has no `{0}`")]
    MissingField(&'static str),
    /// A field has the wrong JSON type, or the element is not an object.
    #[error("event field has the wrong type: {0}")]
    WrongType(String),
}

impl EventError {
    /// Stable code: `event_missing_field` or `event_wrong_type`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingField(_) => "event_missing_field",
            Self::WrongType(_) => "event_wrong_type",
        }
    }
}

/// One element of a parsed batch: the event, or why it is not one, with its raw JSON either way.
#[derive(Debug, Clone)]
pub struct Element<'a> {
    /// The element's JSON text exactly as received (always one valid JSON value).
    pub raw: &'a str,
    /// The parsed event, or why it could not be parsed.
    pub event: Result<Event<'a>, EventError>,
}

/// Parses a webhook body: a JSON array whose elements are parsed one by one.
///
/// # Errors
/// [`BatchError`] when the body is not a JSON array at all. Elements that are not events come
/// back as [`Element`]s with an [`EventError`], never dropped.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Element<'_>>, BatchError> {
    // One pass: each element is read straight into its typed fields, and the span it occupied
    // becomes its raw text. (Reading `Vec<&RawValue>` first and then each element again costs
    // a second scan of the whole body.)
    let err = |detail: &str| BatchError {
        detail: detail.to_owned(),
    };
    // Validating UTF-8 once up front lets serde_json read from a `str` and skip re-validating
    // every string, and lets each element's span be sliced without another check.
    let text = std::str::from_utf8(body).map_err(|_| err("body is not utf-8"))?;
    let mut pos = skip_ws(body, 0);
    if body.get(pos) != Some(&b'[') {
        return Err(err("expected `[`"));
    }
    pos = skip_ws(body, pos + 1);
    // HubSpot events are a few hundred bytes each; sizing up front avoids regrowing the Vec.
    let mut elements = Vec::with_capacity(body.len() / 256 + 1);
    if body.get(pos) == Some(&b']') {
        pos += 1;
    } else {
        loop {
            let (element, len) = parse_element(&text[pos..]).map_err(|e| err(&e))?;
            elements.push(element);
            pos = skip_ws(body, pos + len);
            match body.get(pos) {
                Some(b',') => pos = skip_ws(body, pos + 1),
                Some(b']') => {
                    pos += 1;
                    break;
                }
                _ => return Err(err("expected `,` or `]` after an element")),
            }
        }
    }
    if skip_ws(body, pos) != body.len() {
        return Err(err("trailing characters after the array"));
    }
    Ok(elements)
}

/// Parses the JSON value at the start of `input`; returns it and the bytes it spans.
fn parse_element(input: &str) -> Result<(Element<'_>, usize), String> {
    let mut stream = serde_json::Deserializer::from_str(input).into_iter::<Wire<'_>>();
    match stream.next() {
        Some(Ok(wire)) => {
            let end = stream.byte_offset();
            let raw = &input[..end];
            Ok((
                Element {
                    raw,
                    event: Event::from_wire(raw, wire),
                },
                end,
            ))
        }
        // Not an event-shaped object: find the value's extent to keep it whole.
        Some(Err(wire_error)) => {
            let mut stream = serde_json::Deserializer::from_str(input).into_iter::<&RawValue>();
            match stream.next() {
                Some(Ok(_)) => {
                    let end = stream.byte_offset();
                    let event = Err(EventError::WrongType(strip_position(&wire_error)));
                    Ok((
                        Element {
                            raw: &input[..end],
                            event,
                        },
                        end,
                    ))
                }
                Some(Err(e)) => Err(strip_position(&e)),
                None => Err("unexpected end of input".into()),
            }
        }
        None => Err("unexpected end of input".into()),
    }
}

fn skip_ws(body: &[u8], mut pos: usize) -> usize {
    while matches!(body.get(pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        pos += 1;
    }
    pos
}

impl<'a> Event<'a> {
    /// Parses one event from its JSON text.
    ///
    /// # Errors
    /// [`EventError`] when it is not an object or lacks a required field.
    pub fn parse(raw: &'a RawValue) -> Result<Self, EventError> {
        Self::from_json(raw.get())
    }

    /// Parses one event from JSON text.
    ///
    /// # Errors
    /// [`EventError`] when it is not an object or lacks a required field.
    pub fn from_json(json: &'a str) -> Result<Self, EventError> {
        let wire: Wire<'a> =
            serde_json::from_str(json).map_err(|e| EventError::WrongType(strip_position(&e)))?;
        Self::from_wire(json, wire)
    }

    fn from_wire(raw: &'a str, wire: Wire<'a>) -> Result<Self, EventError> {
        // HubSpot's docs call the type `eventType`, its deliveries `subscriptionType`
        // (docs/hubspot.md §2.2); accept both, preferring the latter.
        let subscription_type = wire
            .subscription_type
            .or(wire.event_type)
            .ok_or(EventError::MissingField("subscriptionType"))?
            .0;
        Ok(Self {
            raw,
            subscription_type,
            portal_id: PortalId::new(
                wire.portal_id
                    .ok_or(EventError::MissingField("portalId"))?
                    .0,
            ),
            event_id: wire.event_id.ok_or(EventError::MissingField("eventId"))?.0,
            occurred_at_ms: wire
                .occurred_at
                .ok_or(EventError::MissingField("occurredAt"))?
                .0,
            subscription_id: wire.subscription_id.map(|i| i.0),
            app_id: wire.app_id.map(|i| i.0),
            object_id: wire.object_id.map(|i| ObjectId::new(i.0)),
            object_type_id: wire.object_type_id.map(|t| t.0),
            property_name: wire.property_name.map(|t| t.0),
            change_source: wire.change_source.map(|t| t.0),
            source_id: wire.source_id.map(|t| t.0),
            attempt_number: wire.attempt_number.map(|i| i.0),
        })
    }

    /// The event's JSON text exactly as HubSpot sent it.
    pub fn raw(&self) -> &'a str {
        self.raw
    }

    /// The subscription type as sent, e.g. `contact.propertyChange`, `object.creation`, or a
    /// type this version does not know (kept as is).
    pub fn subscription_type(&self) -> &str {
        &self.subscription_type
    }

    /// The part after the dot: `creation`, `propertyChange`, `merge`… (empty if there is none).
    pub fn action(&self) -> &str {
        self.subscription_type
            .split_once('.')
            .map_or("", |(_, action)| action)
    }

    /// The object type in one vocabulary for both legacy and generic subscriptions: `contact`,
    /// `company`, `deal`, `ticket`, `product`, `line_item`, `conversation`… and for generic
    /// `object.*` events the name of a standard `objectTypeId` (`0-1` → `contact`) or the raw
    /// id (`2-123456`) of a custom object.
    pub fn object_type(&self) -> &str {
        let prefix = self
            .subscription_type
            .split_once('.')
            .map_or("", |(p, _)| p);
        if prefix == "object" {
            if let Some(id) = self.object_type_id.as_deref() {
                return canonical_object_type(id);
            }
        }
        prefix
    }

    /// `portalId`: the HubSpot account the event belongs to.
    pub fn portal_id(&self) -> PortalId {
        self.portal_id
    }

    /// `eventId`; HubSpot does not guarantee it is unique (docs/hubspot.md §2.1).
    pub fn event_id(&self) -> u64 {
        self.event_id
    }

    /// `occurredAt` in Unix milliseconds.
    pub fn occurred_at_ms(&self) -> u64 {
        self.occurred_at_ms
    }

    /// `subscriptionId`, when sent.
    pub fn subscription_id(&self) -> Option<u64> {
        self.subscription_id
    }

    /// `appId`, when sent.
    pub fn app_id(&self) -> Option<u64> {
        self.app_id
    }

    /// `objectId` (for conversations, the thread id), when sent.
    pub fn object_id(&self) -> Option<ObjectId> {
        self.object_id
    }

    /// `objectTypeId` of generic events, e.g. `0-1`.
    pub fn object_type_id(&self) -> Option<&str> {
        self.object_type_id.as_deref()
    }

    /// `propertyName` of property-change events.
    pub fn property_name(&self) -> Option<&str> {
        self.property_name.as_deref()
    }

    /// `changeSource`, e.g. `CRM_UI`, `API`, `IMPORT`.
    pub fn change_source(&self) -> Option<&str> {
        self.change_source.as_deref()
    }

    /// `sourceId`, e.g. `userId:47812075` (seen in deliveries, not documented: docs/hubspot.md
    /// §2.2).
    pub fn source_id(&self) -> Option<&str> {
        self.source_id.as_deref()
    }

    /// `attemptNumber`: 0 on the first delivery, incremented on HubSpot's retries.
    pub fn attempt_number(&self) -> Option<u64> {
        self.attempt_number
    }
}

/// Maps a standard object type's name, API name or id (`contact`, `contacts`, `0-1`) to the
/// vocabulary of [`Event::object_type`] (one table: [`crate::object_type`]).
pub(crate) fn canonical_object_type(name_or_id: &str) -> &str {
    crate::object_type::event_name(name_or_id)
}

fn strip_position(e: &serde_json::Error) -> String {
    // serde_json appends " at line L column C"; the reason alone is enough and stable.
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire<'a> {
    #[serde(borrow, default)]
    subscription_type: Option<Text<'a>>,
    #[serde(borrow, default)]
    event_type: Option<Text<'a>>,
    #[serde(default)]
    portal_id: Option<Id>,
    #[serde(default)]
    event_id: Option<Id>,
    #[serde(default)]
    occurred_at: Option<Id>,
    #[serde(default)]
    subscription_id: Option<Id>,
    #[serde(default)]
    app_id: Option<Id>,
    #[serde(default)]
    object_id: Option<Id>,
    #[serde(borrow, default)]
    object_type_id: Option<Text<'a>>,
    #[serde(borrow, default)]
    property_name: Option<Text<'a>>,
    #[serde(borrow, default)]
    change_source: Option<Text<'a>>,
    #[serde(borrow, default)]
    source_id: Option<Text<'a>>,
    #[serde(default)]
    attempt_number: Option<Id>,
}

/// A string that borrows from the input unless it contains escapes. (`Option<Cow<str>>` would
/// always allocate: serde borrows only for a bare `Cow` field marked `borrow`.)
#[derive(Deserialize)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// A non-negative integer sent as a JSON number or as a decimal string.
struct Id(u64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl Visitor<'_> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative integer")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
                Ok(Id(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
                u64::try_from(v)
                    .map(Id)
                    .map_err(|_| E::custom("a negative id"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                v.parse()
                    .map(Id)
                    .map_err(|_| E::custom("a non-numeric id string"))
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn one(json: &str) -> Result<Event<'_>, EventError> {
        let elements = parse_batch(json.as_bytes()).unwrap();
        assert_eq!(elements.len(), 1);
        elements.into_iter().next().unwrap().event
    }

    #[test]
    fn docs_example_with_event_type_field() {
        // docs/hubspot.md §2.2, the docs example (type field named `eventType`).
        let body = r#"[{"objectId":1246965,"propertyName":"lifecyclestage","propertyValue":"subscriber","changeSource":"ACADEMY","eventId":3816279340,"subscriptionId":25,"portalId":33,"appId":1160452,"occurredAt":1462216307945,"eventType":"contact.propertyChange","attemptNumber":0},
 {"objectId":1246978,"changeSource":"IMPORT","eventId":3816279480,"subscriptionId":22,"portalId":33,"appId":1160452,"occurredAt":1462216307945,"eventType":"contact.creation","attemptNumber":0}]"#;
        let events: Vec<_> = parse_batch(body.as_bytes())
            .unwrap()
            .into_iter()
            .map(|e| e.event.unwrap())
            .collect();
        assert_eq!(events.len(), 2);
        let e = &events[0];
        assert_eq!(e.subscription_type(), "contact.propertyChange");
        assert_eq!(e.action(), "propertyChange");
        assert_eq!(e.object_type(), "contact");
        assert_eq!(e.property_name(), Some("lifecyclestage"));
        assert_eq!(e.change_source(), Some("ACADEMY"));
        assert_eq!(
            (e.portal_id(), e.event_id(), e.object_id()),
            (
                PortalId::new(33),
                3_816_279_340,
                Some(ObjectId::new(1_246_965))
            )
        );
        assert_eq!(
            (e.app_id(), e.subscription_id(), e.attempt_number()),
            (Some(1_160_452), Some(25), Some(0))
        );
        assert_eq!(e.occurred_at_ms(), 1_462_216_307_945);
        assert!(e.raw().contains(r#""propertyValue":"subscriber""#));
        assert_eq!(events[1].action(), "creation");
    }

    #[test]
    fn every_documented_subscription_type_parses() {
        // docs/hubspot.md §2.3.
        let types = [
            "contact.creation",
            "contact.deletion",
            "contact.propertyChange",
            "contact.merge",
            "contact.associationChange",
            "contact.restore",
            "contact.privacyDeletion",
            "company.creation",
            "company.merge",
            "deal.associationChange",
            "ticket.restore",
            "product.propertyChange",
            "line_item.merge",
            "conversation.newMessage",
            "conversation.privacyDeletion",
            "object.creation",
            "object.associationChange",
            "event.completed",
        ];
        for t in types {
            let json = format!(
                r#"[{{"subscriptionType":"{t}","portalId":1,"eventId":2,"occurredAt":3,"objectId":4}}]"#
            );
            let e = one(&json).unwrap();
            assert_eq!(e.subscription_type(), t);
        }
    }

    #[test]
    fn merge_association_and_generic_fields_survive_in_raw() {
        let merge = r#"[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"contact.merge","objectId":10,"primaryObjectId":10,"mergedObjectIds":[11,12],"newObjectId":13,"numberOfPropertiesMoved":4}]"#;
        let e = one(merge).unwrap();
        assert!(e.raw().contains(r#""mergedObjectIds":[11,12]"#));
        let generic = r#"[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"object.propertyChange","objectTypeId":"0-3","objectId":5,"propertyName":"amount","isSensitive":false}]"#;
        let e = one(generic).unwrap();
        assert_eq!(e.object_type(), "deal");
        assert_eq!(e.object_type_id(), Some("0-3"));
        let custom = r#"[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"object.creation","objectTypeId":"2-12345","objectId":5}]"#;
        assert_eq!(one(custom).unwrap().object_type(), "2-12345");
    }

    #[test]
    fn unknown_types_and_fields_are_kept() {
        let json = r#"[{"subscriptionType":"invoice.teleported","portalId":1,"eventId":2,"occurredAt":3,"brandNew":{"nested":[1,2]},"sourceId":"userId:47812075","changeFlag":"CREATED"}]"#;
        let e = one(json).unwrap();
        assert_eq!(e.subscription_type(), "invoice.teleported");
        assert_eq!(e.object_type(), "invoice");
        assert_eq!(e.object_id(), None);
        assert_eq!(e.source_id(), Some("userId:47812075"));
        assert!(e.raw().contains(r#""brandNew":{"nested":[1,2]}"#));
    }

    #[test]
    fn ids_as_strings_and_escaped_strings() {
        let json = r#"[{"subscriptionType":"contact.propertyChange","portalId":"1","eventId":"2","occurredAt":3,"propertyName":"first\u005fname"}]"#;
        let e = one(json).unwrap();
        assert_eq!(e.portal_id(), PortalId::new(1));
        assert_eq!(e.property_name(), Some("first_name"));
    }

    #[test]
    fn bad_elements_are_reported_not_dropped() {
        let json = r#"[{"portalId":1,"eventId":2,"occurredAt":3},{"subscriptionType":"contact.creation","eventId":2,"occurredAt":3},7,{"subscriptionType":"contact.creation","portalId":-1,"eventId":2,"occurredAt":3},{"subscriptionType":"contact.creation","portalId":1,"eventId":2,"occurredAt":3}]"#;
        let elements = parse_batch(json.as_bytes()).unwrap();
        assert_eq!(elements.len(), 5);
        assert_eq!(
            elements[0].event.as_ref().unwrap_err(),
            &EventError::MissingField("subscriptionType")
        );
        assert_eq!(
            elements[1].event.as_ref().unwrap_err(),
            &EventError::MissingField("portalId")
        );
        assert_eq!(
            elements[2].event.as_ref().unwrap_err().code(),
            "event_wrong_type"
        );
        assert_eq!(elements[2].raw, "7");
        assert_eq!(
            elements[3].event.as_ref().unwrap_err().code(),
            "event_wrong_type"
        );
        assert!(elements[4].event.is_ok());
    }

    #[test]
    fn non_arrays_are_batch_errors() {
        for body in [
            "",
            "{}",
            "[",
            "null",
            r#"{"events":[]}"#,
            "[1,]",
            "[1 2]",
            "[{}",
            "[]x",
            "[{\"a\":}]",
            "[,]",
        ] {
            let err = parse_batch(body.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "batch_malformed", "{body:?}");
        }
        assert!(parse_batch(b"[]").unwrap().is_empty());
        assert!(parse_batch(b" \n[ ] \t").unwrap().is_empty());
        let spaced = parse_batch(b" [ {\"x\":1} , 2 ,\n\"s\" ] ").unwrap();
        let raws: Vec<&str> = spaced.iter().map(|e| e.raw).collect();
        assert_eq!(raws, [r#"{"x":1}"#, "2", r#""s""#]);
        let tight = parse_batch(b"[1,2.5,true,null,[3],{}]").unwrap();
        let raws: Vec<&str> = tight.iter().map(|e| e.raw).collect();
        assert_eq!(raws, ["1", "2.5", "true", "null", "[3]", "{}"]);
    }
}
