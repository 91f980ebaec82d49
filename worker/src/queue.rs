//! Queue hand-off: batched sends within Cloudflare Queues' limits. The message formats are
//! core's ([`hubspot_edge_core::queue`]).

pub(crate) use hubspot_edge_core::queue::{
    event_message_json, DeadLetterMessage, EventMessage, OwnedEvent, MAX_MESSAGE_BYTES,
};
use worker::{BatchMessageBuilder, MessageBuilder, Queue, QueueContentType};

/// Binding of the queue that carries accepted events to the forwarding consumer.
pub(crate) const EVENTS: &str = "EVENTS";
/// Binding of the dead-letter queue, whose consumer keeps every message in the store.
pub(crate) const DEAD_LETTERS: &str = "DEAD_LETTERS";

/// Cloudflare Queues: at most 100 messages and 256 KB per `sendBatch`, 128 KB per message.
const MAX_BATCH_MESSAGES: usize = 100;
const MAX_BATCH_BYTES: usize = 250 * 1024;

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
