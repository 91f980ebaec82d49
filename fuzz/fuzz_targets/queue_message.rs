//! The queue message and dead-letter formats (`queue::EventMessage`, `queue::DeadLetterMessage`,
//! `queue::event_message_json`): what a consumer reads back from a queue, and what the ingress
//! writes by hand.
//!
//! Properties, beyond "no panic":
//! - any bytes read as either message give `Ok` or a serde error;
//! - an event message read back re-serialises (`to_queue_json`) to text that reads back to the
//!   same fields (the event verbatim, unless carried by reference) and then re-serialises to the
//!   same text (a fixed point); a dead letter likewise through serde;
//! - the hand-written `event_message_json` and serde agree: what it writes reads back to the
//!   fields it was given, and re-serialises to the same text.
//!
//! Input: attempt (4 bytes, little-endian), received_at (8), flags (1: bit 0 = by reference),
//! then NUL-separated: key, request id, event reference, event JSON. The whole input is also
//! read as a received message.
#![no_main]

use hubspot_edge_core::queue::{event_message_json, DeadLetterMessage, EventMessage, OwnedEvent};
use hubspot_edge_fuzz::{split_nul, Reader};
use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;

/// The fields that must survive a round trip.
fn fields(m: &EventMessage<OwnedEvent>) -> (u8, &str, u32, u64, &str, Option<&str>, Option<&str>) {
    (
        m.v,
        &m.key,
        m.attempt,
        m.received_at,
        &m.request_id,
        m.event_ref.as_deref(),
        // By reference, the event on the queue is `null` whatever was read.
        m.event_ref.is_none().then(|| m.event.get()),
    )
}

fn event_round_trip(m: &EventMessage<OwnedEvent>) {
    let text = m.to_queue_json().expect("a message read back serialises");
    let again: EventMessage<OwnedEvent> =
        serde_json::from_str(&text).expect("what we write reads back");
    // The by-reference form is written as format version 1 whatever was read.
    let mut want = fields(m);
    if m.event_ref.is_some() {
        want.0 = 1;
    }
    assert_eq!(fields(&again), want);
    assert_eq!(
        again.to_queue_json().expect("serialises"),
        text,
        "a fixed point"
    );
}

fuzz_target!(|data: &[u8]| {
    // As received from a queue.
    if let Ok(m) = serde_json::from_slice::<EventMessage<OwnedEvent>>(data) {
        event_round_trip(&m);
    }
    if let Ok(d) = serde_json::from_slice::<DeadLetterMessage<OwnedEvent>>(data) {
        let text = serde_json::to_string(&d).expect("a dead letter read back serialises");
        let again: DeadLetterMessage<OwnedEvent> =
            serde_json::from_str(&text).expect("what we write reads back");
        assert_eq!(serde_json::to_string(&again).expect("serialises"), text);
        assert_eq!(
            (
                again.v,
                &again.reason,
                &again.detail,
                again.attempts,
                &again.key
            ),
            (d.v, &d.reason, &d.detail, d.attempts, &d.key)
        );
        assert_eq!(
            (
                again.received_at,
                &again.request_id,
                &again.event_ref,
                again.event.get()
            ),
            (d.received_at, &d.request_id, &d.event_ref, d.event.get())
        );
    }

    // As written by the ingress.
    let mut r = Reader::new(data);
    let attempt = r.u32();
    let received_at = r.u64();
    let by_ref = r.u8() & 1 == 1;
    let [key, request_id, event_ref, event] = split_nul::<4>(r.rest());
    let (Ok(key), Ok(request_id), Ok(event_ref), Ok(event)) = (
        std::str::from_utf8(key),
        std::str::from_utf8(request_id),
        std::str::from_utf8(event_ref),
        std::str::from_utf8(event),
    ) else {
        return;
    };
    // The ingress passes already-validated JSON text (an element of the webhook batch).
    let Ok(event) = serde_json::from_str::<&RawValue>(event) else {
        return;
    };
    let event_ref = by_ref.then_some(event_ref);
    let text = event_message_json(
        key,
        attempt,
        received_at,
        request_id,
        None,
        event.get(),
        event_ref,
    );
    let m: EventMessage<OwnedEvent> =
        serde_json::from_str(&text).expect("the hand-written message reads back");
    assert_eq!(
        fields(&m),
        (
            1,
            key,
            attempt,
            received_at,
            request_id,
            event_ref,
            event_ref.is_none().then(|| event.get())
        )
    );
    assert_eq!(
        m.to_queue_json().expect("serialises"),
        text,
        "hand-written and serde agree"
    );
    event_round_trip(&m);
});
