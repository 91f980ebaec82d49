//! The webhook batch parser (`event::parse_batch`), on any bytes.
//!
//! Properties, beyond "no panic":
//! - every element's `raw` is one JSON value, and parsing it alone (`Event::from_json`) gives
//!   the same typed fields, or the same kind of error, as parsing it inside the batch;
//! - the batch re-serialised from the raw texts (`[raw0,raw1,…]`) parses to the same elements;
//! - a batch that parses came from a body that is a JSON array (serde_json agrees).
#![no_main]

use hubspot_edge_core::event::{parse_batch, Element, Event, EventError};
use libfuzzer_sys::fuzz_target;

/// Every typed field of an event, for comparison (`Event` has no `PartialEq`: it borrows).
#[derive(Debug, PartialEq)]
struct Fields<'a> {
    raw: &'a str,
    subscription_type: String,
    action: String,
    object_type: String,
    portal_id: u64,
    event_id: u64,
    occurred_at_ms: u64,
    subscription_id: Option<u64>,
    app_id: Option<u64>,
    object_id: Option<u64>,
    object_type_id: Option<String>,
    property_name: Option<String>,
    change_source: Option<String>,
    source_id: Option<String>,
    attempt_number: Option<u64>,
}

fn fields<'a>(e: &Event<'a>) -> Fields<'a> {
    Fields {
        raw: e.raw(),
        subscription_type: e.subscription_type().to_owned(),
        action: e.action().to_owned(),
        object_type: e.object_type().to_owned(),
        portal_id: e.portal_id().get(),
        event_id: e.event_id(),
        occurred_at_ms: e.occurred_at_ms(),
        subscription_id: e.subscription_id(),
        app_id: e.app_id(),
        object_id: e.object_id().map(|id| id.get()),
        object_type_id: e.object_type_id().map(str::to_owned),
        property_name: e.property_name().map(str::to_owned),
        change_source: e.change_source().map(str::to_owned),
        source_id: e.source_id().map(str::to_owned),
        attempt_number: e.attempt_number(),
    }
}

/// The element reduced to what must survive a round trip: its raw text, and its fields or the
/// error's stable code.
fn summary<'a>(el: &Element<'a>) -> (&'a str, Result<Fields<'a>, &'static str>) {
    (
        el.raw,
        el.event.as_ref().map(fields).map_err(EventError::code),
    )
}

fuzz_target!(|body: &[u8]| {
    let Ok(elements) = parse_batch(body) else {
        return;
    };
    // The parser accepted it: it must be a JSON array with as many elements.
    let array: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(body).expect("an accepted batch is a JSON array");
    assert_eq!(array.len(), elements.len());

    for (el, raw) in elements.iter().zip(&array) {
        assert_eq!(el.raw, raw.get(), "raw text is the element's exact span");
        // Parsing the element alone gives the same result as inside the batch.
        let alone = Event::from_json(el.raw);
        assert_eq!(
            alone.as_ref().map(fields).map_err(EventError::code),
            el.event.as_ref().map(fields).map_err(EventError::code),
            "element parsed alone differs: {}",
            el.raw
        );
    }

    // Re-serialise from the raw texts: the same events come back.
    let again = format!(
        "[{}]",
        elements.iter().map(|e| e.raw).collect::<Vec<_>>().join(",")
    );
    let reparsed = parse_batch(again.as_bytes()).expect("a re-serialised batch parses");
    assert_eq!(reparsed.len(), elements.len());
    for (a, b) in elements.iter().zip(&reparsed) {
        assert_eq!(summary(a), summary(b));
    }
});
