//! The formats of hubspot-edge's queue messages: an accepted event on its way to the
//! destination ([`EventMessage`]) and a dead letter on its way to the store
//! ([`DeadLetterMessage`]). One serialisation, shared by every host that runs the pipeline, and
//! fuzzed (`fuzz/fuzz_targets/queue_message.rs`).
//!
//! A message must fit a Cloudflare Queues message ([`MAX_MESSAGE_BYTES`]); an event that does
//! not is carried by reference ([`EventMessage::event_ref`]).
//!
//! What the forwarding consumer does with one batch of them is [`consume::Consume`].

pub mod consume;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The largest message we put on a queue: Cloudflare Queues allow 128 KB per message
/// (<https://developers.cloudflare.com/queues/platform/limits/>), less room for the runtime's
/// own framing.
pub const MAX_MESSAGE_BYTES: usize = 127 * 1024;

/// One accepted event on the `EVENTS` queue. `E` is `&RawValue` when sending and
/// `Box<RawValue>` when receiving: the event's JSON is carried verbatim.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventMessage<E> {
    /// Format version (1).
    pub v: u8,
    /// The core's dedupe key (also the outbound `webhook-id`).
    pub key: String,
    /// 1 for the first delivery attempt; re-sent with +1 after each retryable failure.
    pub attempt: u32,
    /// When the ingress received the event (Unix ms).
    pub received_at: u64,
    /// The ingress request's id, for logs.
    pub request_id: String,
    /// The W3C `traceparent` of the ingress span ([`crate::trace`]): the consumer sends a child
    /// of it to the destination and to HubSpot. Absent in messages queued before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// Set when the event is too large for a queue message (Queues: 128 KB per message): the
    /// event's JSON is in the host's store under this key (the Worker: KV `evt:{key}`) and
    /// `event` is `null` on the queue. The consumer loads it before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ref: Option<String>,
    /// The event's JSON (`null` when carried by reference).
    pub event: E,
}

impl EventMessage<OwnedEvent> {
    /// The message as it goes back on the queue: by reference when it came by reference.
    ///
    /// # Errors
    /// Only if serialisation fails, which valid JSON text cannot make it do.
    pub fn to_queue_json(&self) -> serde_json::Result<String> {
        match &self.event_ref {
            Some(event_ref) => Ok(event_message_json(
                &self.key,
                self.attempt,
                self.received_at,
                &self.request_id,
                self.traceparent.as_deref(),
                "null",
                Some(event_ref),
            )),
            None => serde_json::to_string(self),
        }
    }
}

/// One dead letter on the `DEAD_LETTERS` queue.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterMessage<E> {
    /// Format version (1).
    pub v: u8,
    /// Stable reason code (`event_missing_field`, `destination_rejected`, `retries_exhausted`…).
    pub reason: String,
    /// Human-readable detail without property values (a status code, a field name).
    pub detail: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The event's dedupe key, when it is an event.
    #[serde(default)]
    pub key: Option<String>,
    /// When the ingress received it (Unix ms).
    pub received_at: u64,
    /// The ingress request's id, for logs.
    pub request_id: String,
    /// As in [`EventMessage::traceparent`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// As in [`EventMessage::event_ref`]: the event is in the host's store, `event` is `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_ref: Option<String>,
    /// The event's JSON (`null` when carried by reference).
    pub event: E,
}

/// An event as received from a queue: its JSON, verbatim.
pub type OwnedEvent = Box<RawValue>;

/// The JSON of an [`EventMessage`] whose event is already-validated JSON text, written directly
/// so the hot path does not scan the event again to make a `RawValue` of it. With `event_ref`,
/// the event is in the host's store under that key and `event` is `null`.
pub fn event_message_json(
    key: &str,
    attempt: u32,
    received_at: u64,
    request_id: &str,
    traceparent: Option<&str>,
    event: &str,
    event_ref: Option<&str>,
) -> String {
    let quote = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::with_capacity(event.len() + key.len() + request_id.len() + 96);
    out.push_str(r#"{"v":1,"key":"#);
    out.push_str(&quote(key));
    out.push_str(&format!(
        r#","attempt":{attempt},"receivedAt":{received_at},"requestId":"#
    ));
    out.push_str(&quote(request_id));
    if let Some(t) = traceparent {
        out.push_str(r#","traceparent":"#);
        out.push_str(&quote(t));
    }
    if let Some(r) = event_ref {
        out.push_str(r#","eventRef":"#);
        out.push_str(&quote(r));
        out.push_str(r#","event":null"#);
        out.push('}');
        return out;
    }
    out.push_str(r#","event":"#);
    out.push_str(event);
    out.push('}');
    out
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn hand_written_and_serde_agree() {
        let text = event_message_json("hs1_1", 2, 3, "r\"q", None, r#"{"a":[1,"é"]}"#, None);
        let m: EventMessage<OwnedEvent> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            (m.v, m.key.as_str(), m.attempt, m.received_at),
            (1, "hs1_1", 2, 3)
        );
        assert_eq!(m.request_id, "r\"q");
        assert_eq!(m.event.get(), r#"{"a":[1,"é"]}"#);
        assert_eq!(m.event_ref, None);
        assert_eq!(m.to_queue_json().unwrap(), text);

        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let by_ref = event_message_json("hs1_1", 1, 3, "r", Some(tp), "ignored", Some("evt:hs1_1"));
        let m: EventMessage<OwnedEvent> = serde_json::from_str(&by_ref).unwrap();
        assert_eq!(m.event_ref.as_deref(), Some("evt:hs1_1"));
        assert_eq!(m.traceparent.as_deref(), Some(tp));
        assert_eq!(m.event.get(), "null");
        assert_eq!(m.to_queue_json().unwrap(), by_ref);

        let traced = event_message_json("hs1_1", 1, 3, "r", Some(tp), r#"{"a":1}"#, None);
        let m: EventMessage<OwnedEvent> = serde_json::from_str(&traced).unwrap();
        assert_eq!(m.traceparent.as_deref(), Some(tp));
        assert_eq!(m.to_queue_json().unwrap(), traced);
    }

    /// A message queued before `traceparent` existed still reads, without one.
    #[test]
    fn old_messages_without_traceparent_read() {
        let old = r#"{"v":1,"key":"k","attempt":1,"receivedAt":5,"requestId":"r","event":{"x":1}}"#;
        let m: EventMessage<OwnedEvent> = serde_json::from_str(old).unwrap();
        assert_eq!(m.traceparent, None);
        assert_eq!(m.to_queue_json().unwrap(), old);
        let letter = r#"{"v":1,"reason":"x","detail":"d","attempts":1,"receivedAt":5,"requestId":"r","event":null}"#;
        let d: DeadLetterMessage<OwnedEvent> = serde_json::from_str(letter).unwrap();
        assert_eq!(d.traceparent, None);
    }
}
