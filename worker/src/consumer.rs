//! Queue consumers: forward events to the user's endpoint, and keep dead letters.
//!
//! Dedupe happens here, not at the ingress: a `seen:{key}` mark is written to KV after a
//! successful forward and checked before each attempt, so neither HubSpot's retries nor a queue
//! redelivery cause a second delivery. Retries are explicit: a retryable failure re-sends the
//! message with `attempt + 1` and a delay, then acknowledges the original, so the attempt count
//! and the backoff are ours (the queue's own `max_retries` and dead-letter queue remain the
//! safety net for a consumer that crashes).

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use futures_util::future::{join_all, select, Either};
use hubspot_edge_core::dedupe::DedupeKey;
use hubspot_edge_core::delivery::{parse_retry_after, Attempt, Decision};
use hubspot_edge_core::event::Event;
use hubspot_edge_core::outbound::{
    self, HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP,
};
use hubspot_edge_core::time::iso8601_ms;
use serde_json::value::RawValue;
use worker::{
    AbortController, Date, Delay, Env, Fetch, Headers, MessageBatch, MessageExt, Method, Queue,
    QueueRetryOptionsBuilder, RawMessage, Request, RequestInit, Result,
};

use crate::config::Forward;
use crate::log::Line;
use crate::queue::{self, DeadLetterMessage, EventMessage, OwnedEvent};
use crate::store::{self, DeadLetter, Kind};

/// Consumer of the `EVENTS` queue.
pub(crate) async fn forward_batch(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let started = Date::now().as_millis();
    let queue_name = batch.queue();
    let config = match Forward::from_env(env) {
        Ok(c) => c,
        Err(e) => {
            // Keep everything queued until the configuration is fixed.
            Line::error("config_invalid")
                .field("key", e.key)
                .field("error", e.message())
                .emit();
            batch.retry_all_with_options(
                &QueueRetryOptionsBuilder::new()
                    .with_delay_seconds(60)
                    .build(),
            );
            return Ok(());
        }
    };
    let kv = env.kv(store::STATE)?;
    let events_queue = env.queue(queue::EVENTS)?;
    let dead_queue = env.queue(queue::DEAD_LETTERS)?;

    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    let mut stats = Stats {
        messages: messages.len(),
        ..Stats::default()
    };
    let mut pending: Vec<(RawMessage, EventMessage<OwnedEvent>)> =
        Vec::with_capacity(messages.len());
    let mut keys_in_batch = HashSet::new();
    for message in messages {
        let text = message.body().as_string().unwrap_or_default();
        match serde_json::from_str::<EventMessage<OwnedEvent>>(&text) {
            Ok(envelope) if keys_in_batch.insert(envelope.key.clone()) => {
                pending.push((message, envelope))
            }
            Ok(envelope) => {
                stats.skip_duplicate(&message, &envelope);
            }
            Err(_) => {
                let letter = unknown_message(&text, "message_invalid");
                settle(&message, send_dead(&dead_queue, &letter).await);
                stats.dead_lettered += 1;
            }
        }
    }

    // Skip what was already delivered (a HubSpot retry, or a redelivery after success).
    let seen = join_all(pending.iter().map(|(_, e)| store::is_seen(&kv, &e.key))).await;
    let mut to_forward = Vec::with_capacity(pending.len());
    for ((message, envelope), seen) in pending.into_iter().zip(seen) {
        if matches!(seen, Ok(true)) {
            stats.skip_duplicate(&message, &envelope);
        } else {
            // A KV read error is treated as "not seen": at-least-once beats losing the event.
            to_forward.push((message, envelope));
        }
    }

    let outcomes = join_all(to_forward.iter().map(|(_, e)| forward_one(&config, e))).await;
    let mut effects: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> =
        Vec::with_capacity(outcomes.len());
    for ((message, envelope), outcome) in to_forward.into_iter().zip(outcomes) {
        let (decision, detail) = match outcome {
            Ok(attempt) => {
                let jitter = js_sys::Math::random();
                (
                    config.retry.decide(envelope.attempt, attempt, jitter),
                    describe(attempt),
                )
            }
            Err(reason) => (
                Decision::DeadLetter(hubspot_edge_core::delivery::GiveUp::Rejected(0)),
                reason,
            ),
        };
        match decision {
            Decision::Deliver => {
                stats.delivered += 1;
                let (kv, ttl) = (&kv, config.dedupe_ttl_secs);
                effects.push(Box::pin(async move {
                    if let Err(e) = store::mark_seen(kv, &envelope.key, ttl).await {
                        Line::warn("dedupe_mark_failed")
                            .field("key", envelope.key.as_str())
                            .field("error", e.to_string())
                            .emit();
                    }
                    message.ack();
                }));
            }
            Decision::Retry { delay_secs } => {
                stats.retried += 1;
                Line::warn("forward_retry")
                    .field("key", envelope.key.as_str())
                    .field("attempt", envelope.attempt)
                    .field("outcome", detail.as_str())
                    .field("delay_secs", delay_secs)
                    .emit();
                let next = EventMessage {
                    attempt: envelope.attempt + 1,
                    ..envelope
                };
                let events_queue = &events_queue;
                effects.push(Box::pin(async move {
                    let sent = match serde_json::to_string(&next) {
                        Ok(text) => queue::send_one(events_queue, text, delay_secs).await,
                        Err(e) => Err(e.into()),
                    };
                    if sent.is_ok() {
                        message.ack();
                    } else {
                        message.retry_with_options(
                            &QueueRetryOptionsBuilder::new()
                                .with_delay_seconds(u32::try_from(delay_secs).unwrap_or(u32::MAX))
                                .build(),
                        );
                    }
                }));
            }
            Decision::DeadLetter(give_up) => {
                stats.dead_lettered += 1;
                let reason = if detail.starts_with("event_") {
                    detail.clone()
                } else {
                    give_up.code().to_owned()
                };
                Line::warn("forward_dead_lettered")
                    .field("key", envelope.key.as_str())
                    .field("attempt", envelope.attempt)
                    .field("reason", reason.as_str())
                    .field("outcome", detail.as_str())
                    .emit();
                let letter = DeadLetterMessage {
                    v: 1,
                    reason,
                    detail,
                    attempts: envelope.attempt,
                    key: Some(envelope.key),
                    received_at: envelope.received_at,
                    request_id: envelope.request_id,
                    event: envelope.event,
                };
                let dead_queue = &dead_queue;
                effects.push(Box::pin(async move {
                    settle(&message, send_dead(dead_queue, &letter).await);
                }));
            }
        }
    }
    // The follow-ups (dedupe marks, re-queues, dead letters) run concurrently, not one by one.
    join_all(effects).await;
    stats.log("queue_batch", &queue_name, started);
    Ok(())
}

/// Consumer of the `DEAD_LETTERS` queue: keeps every message in the store.
pub(crate) async fn store_dead_letters(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let started = Date::now().as_millis();
    let queue_name = batch.queue();
    let kv = env.kv(store::STATE)?;
    let mut stats = Stats::default();
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
    stats.messages = stored.len();
    stats.dead_lettered = stored.iter().filter(|ok| **ok).count();
    stats.log("queue_batch", &queue_name, started);
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

fn unknown_message(text: &str, reason: &str) -> DeadLetterMessage<OwnedEvent> {
    let event = serde_json::value::to_raw_value(text).unwrap_or_else(|_| RawValue::NULL.to_owned());
    DeadLetterMessage {
        v: 1,
        reason: reason.into(),
        detail: "queue message is not an event envelope".into(),
        attempts: 0,
        key: None,
        received_at: Date::now().as_millis(),
        request_id: String::new(),
        event,
    }
}

async fn send_dead(queue: &Queue, letter: &DeadLetterMessage<OwnedEvent>) -> Result<()> {
    queue::send_one(queue, serde_json::to_string(letter)?, 0).await
}

/// Acknowledges after a successful hand-off; otherwise lets the queue redeliver.
fn settle(message: &RawMessage, handed_off: Result<()>) {
    match handed_off {
        Ok(()) => message.ack(),
        Err(e) => {
            Line::error("dead_letter_send_failed")
                .field("error", e.to_string())
                .emit();
            message.retry();
        }
    }
}

/// One delivery attempt. `Err` carries a dead-letter reason for an event that cannot be
/// forwarded at all.
async fn forward_one(
    config: &Forward,
    envelope: &EventMessage<OwnedEvent>,
) -> std::result::Result<Attempt, String> {
    let event = Event::parse(&envelope.event).map_err(|e| e.code().to_owned())?;
    let key = DedupeKey::of(&event);
    let body = outbound::event_body(&event, &key, envelope.received_at);
    let now_secs = Date::now().as_millis() / 1000;
    let signature = config.secret.sign(key.as_str(), now_secs, body.as_bytes());

    let build = || -> Result<Request> {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set(
            "user-agent",
            concat!("hubspot-edge/", env!("CARGO_PKG_VERSION")),
        )?;
        headers.set(HEADER_WEBHOOK_ID, key.as_str())?;
        headers.set(HEADER_WEBHOOK_TIMESTAMP, &now_secs.to_string())?;
        headers.set(HEADER_WEBHOOK_SIGNATURE, &signature)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(body.clone().into()));
        Request::new_with_init(&config.url, &init)
    };
    let Ok(request) = build() else {
        return Err("forward_url_invalid".into());
    };

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let send = Box::pin(fetch.send_with_signal(&signal));
    let timeout = Box::pin(Delay::from(std::time::Duration::from_millis(
        config.timeout_ms,
    )));
    let raced = match select(send, timeout).await {
        Either::Left((result, _)) => Some(result),
        Either::Right(((), _)) => None,
    };
    let attempt = match raced {
        Some(Ok(response)) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .ok()
                .flatten()
                .and_then(|v| parse_retry_after(&v, now_secs));
            Attempt::Answered {
                status: response.status_code(),
                retry_after_secs: retry_after,
            }
        }
        Some(Err(_)) => Attempt::NetworkError,
        None => {
            controller.abort();
            Attempt::TimedOut
        }
    };
    Ok(attempt)
}

fn describe(attempt: Attempt) -> String {
    match attempt {
        Attempt::Answered { status, .. } => format!("status_{status}"),
        Attempt::TimedOut => "timeout".into(),
        Attempt::NetworkError => "network_error".into(),
    }
}

#[derive(Debug, Default)]
struct Stats {
    messages: usize,
    delivered: usize,
    duplicates: usize,
    retried: usize,
    dead_lettered: usize,
}

impl Stats {
    /// Acknowledges a copy of an event that was already delivered (or is already in hand).
    fn skip_duplicate(&mut self, message: &RawMessage, envelope: &EventMessage<OwnedEvent>) {
        self.duplicates += 1;
        Line::info("duplicate_skipped")
            .field("key", envelope.key.as_str())
            .field("attempt", envelope.attempt)
            .emit();
        message.ack();
    }

    fn log(&self, msg: &str, queue: &str, started: u64) {
        Line::info(msg)
            .field("request_id", crate::log::random_id())
            .field("queue", queue)
            .field("messages", self.messages)
            .field("delivered", self.delivered)
            .field("duplicates", self.duplicates)
            .field("retried", self.retried)
            .field("dead_lettered", self.dead_lettered)
            .field(
                "duration_ms",
                Date::now().as_millis().saturating_sub(started),
            )
            .emit();
    }
}
