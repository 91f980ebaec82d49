//! Consumer of the `DEAD_LETTERS` queue: keeps every message in the dead-letter store.

use futures_util::future::join_all;
use hubspot_edge_core::time::iso8601_ms;
use serde_json::value::RawValue;
use worker::{Date, Env, MessageBatch, MessageExt, Result};

use crate::log::Line;
use crate::queue::{DeadLetterMessage, EventMessage, OwnedEvent};
use crate::store::{self, DeadLetter, Kind};

/// Consumer of the `DEAD_LETTERS` queue: keeps every message in the store.
pub(crate) async fn store_dead_letters(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let started = Date::now().as_millis();
    let queue_name = batch.queue();
    let kv = env.kv(store::STATE)?;
    let now = Date::now().as_millis();
    let stored = join_all(batch.raw_iter().map(|message| {
        let kv = &kv;
        async move {
            let text = message.body().as_string().unwrap_or_default();
            let letter = to_record(&text, now);
            match store::put_dead_letter(kv, &letter).await {
                Ok(()) => {
                    Line::info("dead_letter_stored")
                        .field("dead_letter_id", letter.id.as_str())
                        .field("reason", letter.reason.as_str())
                        .emit();
                    message.ack();
                    true
                }
                Err(e) => {
                    Line::error("dead_letter_store_failed")
                        .field("error", e.to_string())
                        .emit();
                    message.retry();
                    false
                }
            }
        }
    }))
    .await;
    Line::info("queue_batch")
        .field("request_id", crate::log::random_id())
        .field("queue", queue_name.as_str())
        .field("messages", stored.len())
        .field("delivered", 0)
        .field("duplicates", 0)
        .field("retried", 0)
        .field("dead_lettered", stored.iter().filter(|ok| **ok).count())
        .field(
            "duration_ms",
            Date::now().as_millis().saturating_sub(started),
        )
        .emit();
    Ok(())
}

fn to_record(text: &str, now_ms: u64) -> DeadLetter {
    let base =
        |kind, reason: String, detail: String, attempts, key, request_id, received_at, payload| {
            DeadLetter {
                id: store::new_id(now_ms),
                kind,
                reason,
                detail,
                attempts,
                created_at: iso8601_ms(now_ms),
                key,
                request_id,
                received_at,
                payload: Some(payload),
                payload_base64: None,
            }
        };
    let as_value =
        |raw: &RawValue| serde_json::from_str(raw.get()).unwrap_or_else(|_| raw.get().into());
    if let Ok(m) = serde_json::from_str::<DeadLetterMessage<OwnedEvent>>(text) {
        let kind = if m.reason == "message_invalid" {
            Kind::Message
        } else {
            Kind::Event
        };
        let payload = if kind == Kind::Message {
            serde_json::from_str::<String>(m.event.get())
                .map_or_else(|_| as_value(&m.event), Into::into)
        } else {
            as_value(&m.event)
        };
        return base(
            kind,
            m.reason,
            m.detail,
            m.attempts,
            m.key,
            m.request_id,
            m.received_at,
            payload,
        );
    }
    if let Ok(m) = serde_json::from_str::<EventMessage<OwnedEvent>>(text) {
        // The queue itself gave up on it (the consumer failed `max_retries` times).
        return base(
            Kind::Event,
            "queue_retries_exhausted".into(),
            "the queue's max_retries was reached".into(),
            m.attempt,
            Some(m.key),
            m.request_id,
            m.received_at,
            as_value(&m.event),
        );
    }
    base(
        Kind::Message,
        "message_unknown".into(),
        "not a hubspot-edge queue message".into(),
        0,
        None,
        String::new(),
        now_ms,
        text.into(),
    )
}
