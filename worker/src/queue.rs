//! Queue hand-off: the message formats on our queues and batched sends within Cloudflare
//! Queues' limits.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use worker::{BatchMessageBuilder, MessageBuilder, Queue, QueueContentType};

/// Binding of the queue that carries accepted events to the forwarding consumer.
pub(crate) const EVENTS: &str = "EVENTS";
/// Binding of the dead-letter queue, whose consumer keeps every message in the store.
pub(crate) const DEAD_LETTERS: &str = "DEAD_LETTERS";

/// Cloudflare Queues: at most 100 messages and 256 KB per `sendBatch`, 128 KB per message.
const MAX_BATCH_MESSAGES: usize = 100;
const MAX_BATCH_BYTES: usize = 250 * 1024;
pub(crate) const MAX_MESSAGE_BYTES: usize = 127 * 1024;

/// One accepted event on the `EVENTS` queue. `E` is `&RawValue` when sending and
/// `Box<RawValue>` when receiving: the event's JSON is carried verbatim.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventMessage<E> {
    pub(crate) v: u8,
    /// The core's dedupe key (also the outbound `webhook-id`).
    pub(crate) key: String,
    /// 1 for the first delivery attempt; re-sent with +1 after each retryable failure.
    pub(crate) attempt: u32,
    pub(crate) received_at: u64,
    pub(crate) request_id: String,
    /// Set when the event is too large for a queue message (Queues: 128 KB per message): the
    /// event's JSON is in KV under this key ([`crate::store::put_event_body`]) and `event` is
    /// `null` on the queue. The consumer loads it before anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_ref: Option<String>,
    pub(crate) event: E,
}

impl EventMessage<OwnedEvent> {
    /// The message as it goes back on the queue: by reference when it came by reference.
    pub(crate) fn to_queue_json(&self) -> serde_json::Result<String> {
        match &self.event_ref {
            Some(event_ref) => Ok(event_message_json(
                &self.key,
                self.attempt,
                self.received_at,
                &self.request_id,
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
pub(crate) struct DeadLetterMessage<E> {
    pub(crate) v: u8,
    /// Stable reason code (`event_missing_field`, `destination_rejected`, `retries_exhausted`…).
    pub(crate) reason: String,
    /// Human-readable detail without property values (a status code, a field name).
    pub(crate) detail: String,
    pub(crate) attempts: u32,
    #[serde(default)]
    pub(crate) key: Option<String>,
    pub(crate) received_at: u64,
    pub(crate) request_id: String,
    /// As in [`EventMessage::event_ref`]: the event is in KV, `event` is `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) event_ref: Option<String>,
    pub(crate) event: E,
}

pub(crate) type OwnedEvent = Box<RawValue>;

/// The JSON of an [`EventMessage`] whose event is already-validated JSON text, written directly
/// so the hot path does not scan the event again to make a `RawValue` of it. With `event_ref`,
/// the event is in KV under that key and `event` is `null`.
pub(crate) fn event_message_json(
    key: &str,
    attempt: u32,
    received_at: u64,
    request_id: &str,
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

/// Sends text messages in as few `sendBatch` calls as the limits allow.
pub(crate) async fn send_all(queue: &Queue, messages: Vec<String>) -> worker::Result<()> {
    let mut batch: Vec<String> = Vec::new();
    let mut bytes = 0;
    for message in messages {
        if !batch.is_empty()
            && (batch.len() == MAX_BATCH_MESSAGES || bytes + message.len() > MAX_BATCH_BYTES)
        {
            send_batch(queue, std::mem::take(&mut batch)).await?;
            bytes = 0;
        }
        bytes += message.len();
        batch.push(message);
    }
    if !batch.is_empty() {
        send_batch(queue, batch).await?;
    }
    Ok(())
}

async fn send_batch(queue: &Queue, messages: Vec<String>) -> worker::Result<()> {
    let messages = messages.into_iter().map(|m| {
        MessageBuilder::new(m)
            .content_type(QueueContentType::Text)
            .build()
    });
    queue
        .send_batch(BatchMessageBuilder::new().messages(messages).build())
        .await
}

/// Sends one text message, optionally delayed (Queues caps delays at 12 hours).
pub(crate) async fn send_one(
    queue: &Queue,
    message: String,
    delay_secs: u64,
) -> worker::Result<()> {
    let delay = u32::try_from(delay_secs.min(hubspot_edge_core::delivery::MAX_QUEUE_DELAY_SECS))
        .unwrap_or(u32::MAX);
    let mut builder = MessageBuilder::new(message).content_type(QueueContentType::Text);
    if delay > 0 {
        builder = builder.delay_seconds(delay);
    }
    queue.send(builder.build()).await
}
