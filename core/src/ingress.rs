//! The webhook endpoint's decisions for a verified body: which events go on the queue (once
//! each, filtered, by reference when too large for a message), which elements are dead
//! letters, and what to answer HubSpot. Pure: the host verifies the signature (see
//! [`crate::signature`]), parses with [`crate::event::parse_batch`], calls [`triage`], then
//! sends the messages and answers with [`TriageCounts::response`]. The Worker's ingress and its
//! admin re-drive are two such hosts; the ingress benchmark is a third.
//!
//! A body that is not a JSON array is the host's to keep whole (its dead-letter store) and to
//! acknowledge: HubSpot would retry it ten times for nothing (docs/hubspot.md §2.5).

use std::collections::HashSet;

use serde_json::json;

use crate::dedupe::DedupeKey;
use crate::event::Element;
use crate::filter::{Filter, Verdict};
use crate::queue::{event_message_json, DeadLetterMessage, MAX_MESSAGE_BYTES};

/// Where the host keeps the body of an event carried by reference: this prefix and the
/// event's dedupe key. The consumer reads [`crate::queue::EventMessage::event_ref`].
pub const EVENT_BODY_PREFIX: &str = "evt:";

/// The store key of an event carried by reference (`key`: its dedupe key, or the key of the
/// message that carries it).
pub fn event_body_key(key: &str) -> String {
    format!("{EVENT_BODY_PREFIX}{key}")
}

/// `/path?query` of an absolute URL string (`/` when it has no path), without re-encoding
/// anything: what HubSpot signed after the public base URL.
pub fn path_and_query(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..]
        .find('/')
        .map_or("/", |i| &url[after_scheme + i..])
}

/// What became of a batch's elements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TriageCounts {
    /// Elements in the batch.
    pub events: usize,
    /// Events queued (by reference included).
    pub queued: usize,
    /// Events the filter dropped.
    pub filtered: usize,
    /// The same event twice in the batch: queued once.
    pub duplicates: usize,
    /// Elements that are not events.
    pub dead_lettered: usize,
    /// Events queued by reference (too large for a queue message).
    pub by_reference: usize,
}

impl TriageCounts {
    /// Counts the batch into `m`: the events by stage (`received`, `filtered`, `duplicate`,
    /// `queued`, `dead_lettered`; stages with none are left out) and the messages put on the
    /// `events` queue.
    pub fn count_into(&self, m: &mut crate::metrics::Metrics) {
        use crate::metrics::Counter;
        for (stage, n) in [
            ("received", self.events),
            ("filtered", self.filtered),
            ("duplicate", self.duplicates),
            ("queued", self.queued),
            ("dead_lettered", self.dead_lettered),
        ] {
            if n > 0 {
                m.add(Counter::Events, &[("stage", stage)], n as u64);
            }
        }
        if self.queued > 0 {
            m.add(
                Counter::QueueEnqueued,
                &[("queue", "events")],
                self.queued as u64,
            );
        }
    }

    /// The body of the 200 answer to HubSpot (logged by HubSpot, read by people testing).
    pub fn response(&self, request_id: &str) -> serde_json::Value {
        json!({
            "requestId": request_id,
            "events": self.events,
            "queued": self.queued,
            "filtered": self.filtered,
            "duplicates": self.duplicates,
            "deadLettered": self.dead_lettered,
        })
    }
}

/// An event too large for a queue message: the host stores `event` under `store_key` first,
/// then queues `message`, which refers to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ByReference {
    /// Where the event's JSON goes ([`event_body_key`]).
    pub store_key: String,
    /// The event's JSON, verbatim.
    pub event: String,
    /// The queue message, `event` `null` and `eventRef` = `store_key`.
    pub message: String,
}

/// The host's work for one batch, in the order to do it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Triage {
    /// Messages for the events queue (Cloudflare Queues: sent in batches of at most 100
    /// messages and 256 KB).
    pub queue: Vec<String>,
    /// Events to store, then queue by reference (rare).
    pub by_reference: Vec<ByReference>,
    /// Dead-letter messages for elements that are not events.
    pub dead_letters: Vec<String>,
    /// Dead letters too large for a queue message: straight to the dead-letter store (rare).
    pub oversized_dead_letters: Vec<String>,
    /// The counts, for the answer, the log line and the metrics.
    pub counts: TriageCounts,
}

/// Who received the batch and when: what every message carries.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    /// When the ingress received the batch (Unix ms).
    pub at_ms: u64,
    /// The ingress request's id.
    pub request_id: &'a str,
    /// The ingress span's W3C `traceparent` ([`crate::trace`]), carried by every message.
    pub traceparent: Option<&'a str>,
}

/// Sorts a batch: events the filter keeps go on the queue once each (the same dedupe key
/// twice in one batch is queued once; across batches the consumer dedupes), as a message or,
/// past [`MAX_MESSAGE_BYTES`], by reference; elements that are not events become dead letters
/// with their code; nothing is dropped without being counted.
pub fn triage(elements: &[Element<'_>], filter: &Filter, received: Received<'_>) -> Triage {
    let mut out = Triage {
        queue: Vec::with_capacity(elements.len()),
        counts: TriageCounts {
            events: elements.len(),
            ..TriageCounts::default()
        },
        ..Triage::default()
    };
    let mut seen = HashSet::with_capacity(elements.len());
    for element in elements {
        let event = match &element.event {
            Ok(event) => event,
            Err(e) => {
                out.counts.dead_lettered += 1;
                let message = dead_letter_message(e.code(), &e.to_string(), received, element.raw);
                if message.len() > MAX_MESSAGE_BYTES {
                    out.oversized_dead_letters.push(message);
                } else {
                    out.dead_letters.push(message);
                }
                continue;
            }
        };
        if let Verdict::Drop(_) = filter.decide(event) {
            out.counts.filtered += 1;
            continue;
        }
        let key = DedupeKey::of(event);
        if !seen.insert(key.clone()) {
            out.counts.duplicates += 1;
            continue;
        }
        out.counts.queued += 1;
        let message = event_message_json(
            key.as_str(),
            1,
            received.at_ms,
            received.request_id,
            received.traceparent,
            element.raw,
            None,
        );
        if message.len() <= MAX_MESSAGE_BYTES {
            out.queue.push(message);
            continue;
        }
        // One long multi-byte text property is enough to pass 128 KB.
        let store_key = event_body_key(key.as_str());
        out.counts.by_reference += 1;
        out.by_reference.push(ByReference {
            message: event_message_json(
                key.as_str(),
                1,
                received.at_ms,
                received.request_id,
                received.traceparent,
                "null",
                Some(&store_key),
            ),
            store_key,
            event: element.raw.to_owned(),
        });
    }
    out
}

/// A dead-letter message for an element that is not an event (`reason`: its code).
fn dead_letter_message(reason: &str, detail: &str, received: Received<'_>, raw: &str) -> String {
    // `raw` is the element's text from a parsed JSON array: valid JSON, so this always reads.
    let Ok(raw) = serde_json::from_str::<&serde_json::value::RawValue>(raw) else {
        return String::new();
    };
    let message = DeadLetterMessage {
        v: 1,
        reason: reason.into(),
        detail: detail.into(),
        attempts: 0,
        key: None,
        received_at: received.at_ms,
        request_id: received.request_id.into(),
        traceparent: received.traceparent.map(Into::into),
        event_ref: None,
        event: raw,
    };
    // Strings, integers and a valid RawValue always serialise.
    serde_json::to_string(&message).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::event::parse_batch;
    use crate::queue::{EventMessage, OwnedEvent};

    const AT: u64 = 1_700_000_000_000;

    fn event(id: u64, kind: &str, note: &str) -> String {
        format!(
            r#"{{"eventId":{id},"subscriptionId":2,"portalId":3,"appId":4,"occurredAt":{AT},"subscriptionType":"{kind}","attemptNumber":0,"objectId":{id},"note":"{note}"}}"#
        )
    }

    const TRACE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn received() -> Received<'static> {
        Received {
            at_ms: AT,
            request_id: "req-1",
            traceparent: Some(TRACE),
        }
    }

    #[test]
    fn sorts_a_mixed_batch_and_counts_everything() {
        let body = format!(
            "[{},{},{},{},{}]",
            event(1, "contact.creation", "a"),
            event(2, "deal.creation", "b"),
            event(1, "contact.creation", "a"),
            r#"{"nope":true}"#,
            event(3, "contact.propertyChange", "c"),
        );
        let elements = parse_batch(body.as_bytes()).unwrap();
        let filter = Filter::from_json(r#"{"include":[{"types":["contact.*"]}]}"#).unwrap();
        let t = triage(&elements, &filter, received());
        assert_eq!(
            t.counts,
            TriageCounts {
                events: 5,
                queued: 2,
                filtered: 1,
                duplicates: 1,
                dead_lettered: 1,
                by_reference: 0,
            }
        );
        let queued: Vec<EventMessage<OwnedEvent>> = t
            .queue
            .iter()
            .map(|m| serde_json::from_str(m).unwrap())
            .collect();
        assert_eq!(queued.len(), 2);
        assert_eq!(queued[0].attempt, 1);
        assert_eq!(queued[0].request_id, "req-1");
        assert_eq!(queued[0].received_at, AT);
        assert_eq!(queued[0].event.get(), event(1, "contact.creation", "a"));
        assert_eq!(queued[0].traceparent.as_deref(), Some(TRACE));
        let dead: DeadLetterMessage<OwnedEvent> = serde_json::from_str(&t.dead_letters[0]).unwrap();
        assert_eq!(dead.reason, "event_missing_field");
        assert_eq!(dead.event.get(), r#"{"nope":true}"#);
        assert_eq!(
            t.counts.response("req-1"),
            json!({"requestId": "req-1", "events": 5, "queued": 2, "filtered": 1,
                   "duplicates": 1, "deadLettered": 1})
        );
    }

    #[test]
    fn an_event_too_large_for_a_message_goes_by_reference() {
        let big = "é".repeat(MAX_MESSAGE_BYTES / 2 + 10);
        let body = format!("[{}]", event(7, "contact.creation", &big));
        let elements = parse_batch(body.as_bytes()).unwrap();
        let t = triage(&elements, &Filter::default(), received());
        assert!(t.queue.is_empty());
        assert_eq!((t.counts.queued, t.counts.by_reference), (1, 1));
        let r = &t.by_reference[0];
        assert!(r.store_key.starts_with(EVENT_BODY_PREFIX));
        assert_eq!(r.event, event(7, "contact.creation", &big));
        let m: EventMessage<OwnedEvent> = serde_json::from_str(&r.message).unwrap();
        assert_eq!(m.event_ref.as_deref(), Some(r.store_key.as_str()));
        assert_eq!(m.event.get(), "null");
        assert!(r.message.len() < 1024);
    }

    #[test]
    fn a_dead_letter_too_large_for_a_message_goes_to_the_store() {
        let big = "x".repeat(MAX_MESSAGE_BYTES + 1);
        let body = format!(r#"[{{"nope":"{big}"}}]"#);
        let elements = parse_batch(body.as_bytes()).unwrap();
        let t = triage(&elements, &Filter::default(), received());
        assert!(t.dead_letters.is_empty());
        assert_eq!(t.oversized_dead_letters.len(), 1);
        assert_eq!(t.counts.dead_lettered, 1);
    }

    #[test]
    fn the_path_and_query_hubspot_signed() {
        assert_eq!(
            path_and_query("https://edge.example/webhooks/hubspot?x=1&y=%20"),
            "/webhooks/hubspot?x=1&y=%20"
        );
        assert_eq!(path_and_query("https://edge.example"), "/");
        assert_eq!(path_and_query("/already/a/path"), "/already/a/path");
    }

    #[test]
    fn a_batch_counts_by_stage_and_queued_messages() {
        use crate::metrics::{Counter, Metrics};
        let counts = TriageCounts {
            events: 5,
            queued: 2,
            filtered: 1,
            duplicates: 1,
            dead_lettered: 1,
            by_reference: 1,
        };
        let mut m = Metrics::new();
        counts.count_into(&mut m);
        for (stage, n) in [
            ("received", 5),
            ("filtered", 1),
            ("duplicate", 1),
            ("queued", 2),
            ("dead_lettered", 1),
        ] {
            assert_eq!(m.count(Counter::Events, &[("stage", stage)]), n, "{stage}");
        }
        assert_eq!(m.count(Counter::QueueEnqueued, &[("queue", "events")]), 2);
        let mut none = Metrics::new();
        TriageCounts::default().count_into(&mut none);
        assert!(none.is_empty(), "no series for stages with nothing");
    }
}
