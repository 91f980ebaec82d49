//! Consumer of the `DEAD_LETTERS` queue: keeps every message in the dead-letter store.
//!
//! A dead letter is never dropped. When the store write fails, the letter (already made into
//! its record, so its id stays the same and a repeated write is harmless) is queued again as a
//! [`StoreRetry`] with a delay from core's [`after_store_failure`]: doubling from 2 s up to
//! Queues' 12-hour maximum, where it stays (the last resort) with an error line on every
//! attempt until the store takes it. Each retry is a new queue message, so neither the
//! queue's `max_retries` nor its retention period ends it. Only when that send fails too is
//! the original message retried in place by the queue (after the same delay).
//!
//! `FAULT_INJECTION=true` (tests only) lets `POST /admin/faults/dead-letter-store` make the next
//! N store writes fail, so the end-to-end tests can prove the above.

use futures_util::future::join_all;
use hubspot_edge_core::dead_letter::{
    after_store_failure, store_size, Arrival, LetterKind, Retention, SIZE_PAGES,
};
use hubspot_edge_core::metrics::{Counter, Gauge};
use hubspot_edge_core::time::iso8601_ms;
use serde::{Deserialize, Serialize};
use worker::{Date, Env, MessageBatch, MessageExt, QueueRetryOptionsBuilder, RawMessage, Result};

use crate::log::Line;
use crate::queue;
use crate::store::{self, DeadLetter, Kind};

/// A dead letter whose store write failed, queued again: its record (same id on every attempt)
/// and how many store attempts have failed so far.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct StoreRetry {
    v: u8,
    store_attempts: u32,
    letter: DeadLetter,
}

/// Dead-letter store writes that fail on purpose: `POST /admin/faults/dead-letter-store`.
pub(crate) static STORE_FAILURES: crate::fault::Countdown = crate::fault::Countdown::new();

/// Consumer of the `DEAD_LETTERS` queue: keeps every message in the store.
pub(crate) async fn store_dead_letters(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let started = Date::now().as_millis();
    let queue_name = batch.queue();
    // An invalid retention cannot be written: every letter takes the failed-write path below
    // (queued again with a backoff, never dropped) until the key is fixed.
    let retention = crate::config::dead_letter_retention(env).map_err(|e| {
        let problem = e.message();
        crate::log::Line::error("config_invalid")
            .field("key", e.key)
            .field("code", e.kind)
            .field("error", problem.as_str())
            .emit();
        problem
    });
    let faults = crate::config::fault_injection(env).unwrap_or(false);
    let kv = env.kv(store::STATE)?;
    let dead_queue = env.queue(queue::DEAD_LETTERS)?;
    let now = Date::now().as_millis();
    let stored = join_all(batch.raw_iter().map(|message| {
        let (kv, dead_queue, retention) = (&kv, &dead_queue, &retention);
        async move {
            let text = message.body().as_string().unwrap_or_default();
            let (letter, failed_before) = match serde_json::from_str::<StoreRetry>(&text) {
                Ok(retry) => (retry.letter, retry.store_attempts),
                Err(_) => {
                    let loaded = referenced_event(kv, &text).await;
                    (to_record(&text, now, loaded.as_deref()), 0)
                }
            };
            store_one(
                &message,
                kv,
                dead_queue,
                letter,
                failed_before,
                retention.as_ref().map(|r| *r).map_err(String::as_str),
                faults,
            )
            .await
        }
    }))
    .await;
    let written: Vec<&str> = stored.iter().filter_map(|id| id.as_deref()).collect();
    if !written.is_empty() {
        report_store_size(&kv, &written, &[]).await;
    }
    Line::info("queue_batch")
        .field("request_id", crate::log::random_id())
        .field("queue", queue_name.as_str())
        .field("messages", stored.len())
        .field("delivered", 0)
        .field("duplicates", 0)
        .field("retried", stored.iter().filter(|id| id.is_none()).count())
        .field("dead_lettered", written.len())
        .field(
            "duration_ms",
            Date::now().as_millis().saturating_sub(started),
        )
        .emit();
    Ok(())
}

/// Writes one letter (`retention` is the configured expiry, or the configuration problem that
/// stops writes); on failure queues it again with a backoff. The letter's id when stored.
async fn store_one(
    message: &RawMessage,
    kv: &worker::kv::KvStore,
    dead_queue: &worker::Queue,
    letter: DeadLetter,
    failed_before: u32,
    retention: std::result::Result<Retention, &str>,
    faults: bool,
) -> Option<String> {
    let attempt = failed_before.saturating_add(1);
    let injected = faults && retention.is_ok() && STORE_FAILURES.fires();
    let written = match retention {
        // `DEAD_LETTER_RETENTION_DAYS` is invalid: the letter cannot be written with an expiry
        // the operator chose, so it is held like any failed write.
        Err(problem) => Err(worker::Error::RustError(problem.to_owned())),
        Ok(_) if injected => Err(worker::Error::RustError(
            "injected fault (FAULT_INJECTION)".into(),
        )),
        Ok(retention) => store::put_dead_letter_for(kv, &letter, retention).await,
    };
    let error = match written {
        Ok(()) => {
            let reason = crate::metrics::code_label(&letter.reason);
            crate::metrics::count(|m| {
                m.add(Counter::DeadLetters, &[("reason", reason)], 1);
            });
            Line::info("dead_letter_stored")
                .field("dead_letter_id", letter.id.as_str())
                .field("reason", letter.reason.as_str())
                .field("store_attempt", attempt)
                .emit();
            message.ack();
            return Some(letter.id);
        }
        Err(e) => e.to_string(),
    };
    let next = after_store_failure(attempt);
    let delay_secs = next.delay_secs();
    // One error line per failed attempt; the last resort (held at the longest delay) says so,
    // for an alert on `last_resort`.
    Line::error("dead_letter_store_failed")
        .field("dead_letter_id", letter.id.as_str())
        .field("reason", letter.reason.as_str())
        .field("store_attempt", attempt)
        .field("delay_secs", delay_secs)
        .field("last_resort", next.is_last_resort())
        .field("injected", injected)
        .field("error", error)
        .emit();
    let retry = StoreRetry {
        v: 1,
        store_attempts: attempt,
        letter,
    };
    let requeued = match serde_json::to_string(&retry) {
        Ok(text) if text.len() <= queue::MAX_MESSAGE_BYTES => {
            queue::send_one(dead_queue, text, delay_secs).await
        }
        Ok(_) => Err(worker::Error::RustError(
            "the letter with its record exceeds a queue message".into(),
        )),
        Err(e) => Err(e.into()),
    };
    match requeued {
        Ok(()) => message.ack(),
        Err(e) => {
            Line::error("dead_letter_requeue_failed")
                .field("dead_letter_id", retry.letter.id.as_str())
                .field("delay_secs", delay_secs)
                .field("error", e.to_string())
                .emit();
            message.retry_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(u32::try_from(delay_secs).unwrap_or(u32::MAX))
                    .build(),
            );
        }
    }
    None
}

/// Sets the dead-letter store size gauge (`hubspot_edge_dead_letter_store_size`, one series:
/// one store per deployment) after this invocation wrote `written` or removed `removed`: up to
/// core's [`SIZE_PAGES`] KV lists (≤ 1 % of an invocation's 1,000 KV operations; dead letters
/// and their admin are not the hot path), corrected by core's [`store_size`]. A list that fails
/// leaves the gauge as it was (logged).
pub(crate) async fn report_store_size(
    kv: &worker::kv::KvStore,
    written: &[&str],
    removed: &[&str],
) {
    let mut listed = Vec::new();
    let mut cursor = None;
    for _ in 0..SIZE_PAGES {
        match store::list_dead_letters(kv, 1_000, cursor.take()).await {
            Ok((items, next)) => {
                listed.extend(items.into_iter().map(|(id, _)| id));
                match next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            Err(e) => {
                Line::warn("dead_letter_size_unknown")
                    .field("error", e.to_string())
                    .emit();
                return;
            }
        }
    }
    let size = store_size(listed.iter().map(String::as_str), written, removed);
    let at_ms = Date::now().as_millis();
    crate::metrics::count(|m| {
        m.set(
            Gauge::DeadLetterStoreSize,
            &[],
            i64::try_from(size).unwrap_or(i64::MAX),
            at_ms,
        );
    });
}

/// Counts letters leaving the store (`how`: `redriven`, `deleted`) and sets the size gauge.
pub(crate) async fn removed(kv: &worker::kv::KvStore, how: &str, ids: &[&str]) {
    if ids.is_empty() {
        return;
    }
    crate::metrics::count(|m| {
        m.add(
            Counter::DeadLettersRemoved,
            &[("how", how)],
            ids.len() as u64,
        );
    });
    report_store_size(kv, &[], ids).await;
}

/// The event a message carries by reference ([`queue::EventMessage::event_ref`]), loaded from KV:
/// the dead letter keeps the event itself, not a key that expires.
async fn referenced_event(kv: &worker::kv::KvStore, text: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Ref {
        event_ref: Option<String>,
    }
    let key = serde_json::from_str::<Ref>(text).ok()?.event_ref?;
    match store::get_text(kv, &key).await {
        Ok(found) => found,
        Err(e) => {
            Line::warn("event_body_unavailable")
                .field("key", key.as_str())
                .field("error", e.to_string())
                .emit();
            None
        }
    }
}

/// The record of a dead-letter queue message (core's [`Arrival::read`]); `loaded` is the event
/// it carried by reference.
fn to_record(text: &str, now_ms: u64, loaded: Option<&str>) -> DeadLetter {
    let a = Arrival::read(text, now_ms, loaded);
    DeadLetter {
        id: store::new_id(now_ms),
        kind: match a.kind {
            LetterKind::Event => Kind::Event,
            LetterKind::Batch => Kind::Batch,
            LetterKind::Message => Kind::Message,
        },
        reason: a.reason,
        detail: a.detail,
        attempts: a.attempts,
        created_at: iso8601_ms(now_ms),
        key: a.key,
        request_id: a.request_id,
        received_at: a.received_at,
        payload: Some(a.payload),
        payload_base64: None,
    }
}
