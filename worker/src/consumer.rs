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
use serde_json::value::RawValue;
use worker::{
    AbortController, Date, Delay, Env, Fetch, Headers, MessageBatch, MessageExt, Method, Queue,
    QueueRetryOptionsBuilder, RawMessage, Request, RequestInit, Result,
};

use crate::config::Forward;
use crate::log::Line;
use crate::queue::{self, DeadLetterMessage, EventMessage, OwnedEvent};
use crate::store;

/// Consumer of the `EVENTS` queue.
pub(crate) async fn forward_batch(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let started = Date::now().as_millis();
    let batch_id = crate::log::random_id();
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

    // Object types with a field map are enriched (read, mapped, diffed); the rest go thin.
    let jobs = match &config.enrichment {
        None => to_forward.into_iter().map(Job::thin).collect(),
        Some(mapping) => {
            crate::enrich::jobs(mapping, env, &kv, to_forward, &batch_id, &mut stats.enrich).await
        }
    };
    let verdicts = join_all(jobs.iter().map(|job| run_job(&config, job))).await;
    let mut effects: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> =
        Vec::with_capacity(verdicts.len());
    for (job, (decision, reason, detail)) in jobs.into_iter().zip(verdicts) {
        let Job { members, after, .. } = job;
        let attempt = members.iter().map(|(_, e)| e.attempt).max().unwrap_or(1);
        match decision {
            Decision::Deliver => {
                stats.delivered += members.len();
                let (kv, ttl) = (&kv, config.dedupe_ttl_secs);
                effects.push(Box::pin(async move {
                    // The snapshot first: a message acknowledged with a stale snapshot would
                    // make the next change diff against old values.
                    for write in after {
                        if let Err(e) = write.apply(kv).await {
                            Line::warn("snapshot_write_failed")
                                .field("error", e.to_string())
                                .emit();
                        }
                    }
                    join_all(members.into_iter().map(|(message, envelope)| async move {
                        if let Err(e) = store::mark_seen(kv, &envelope.key, ttl).await {
                            Line::warn("dedupe_mark_failed")
                                .field("key", envelope.key.as_str())
                                .field("error", e.to_string())
                                .emit();
                        }
                        message.ack();
                    }))
                    .await;
                }));
            }
            Decision::Retry { delay_secs } => {
                stats.retried += members.len();
                Line::warn("forward_retry")
                    .field(
                        "keys",
                        members
                            .iter()
                            .map(|(_, e)| e.key.clone())
                            .collect::<Vec<_>>(),
                    )
                    .field("attempt", attempt)
                    .field("outcome", detail.as_str())
                    .field("delay_secs", delay_secs)
                    .emit();
                let events_queue = &events_queue;
                for (message, envelope) in members {
                    let next = EventMessage {
                        attempt: envelope.attempt + 1,
                        ..envelope
                    };
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
                                    .with_delay_seconds(
                                        u32::try_from(delay_secs).unwrap_or(u32::MAX),
                                    )
                                    .build(),
                            );
                        }
                    }));
                }
            }
            Decision::DeadLetter(give_up) => {
                stats.dead_lettered += members.len();
                let reason = reason.unwrap_or_else(|| give_up.code().to_owned());
                for (message, envelope) in members {
                    Line::warn("forward_dead_lettered")
                        .field("key", envelope.key.as_str())
                        .field("attempt", envelope.attempt)
                        .field("reason", reason.as_str())
                        .field("outcome", detail.as_str())
                        .emit();
                    let letter = DeadLetterMessage {
                        v: 1,
                        reason: reason.clone(),
                        detail: detail.clone(),
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
    }
    // The follow-ups (dedupe marks, re-queues, dead letters) run concurrently, not one by one.
    join_all(effects).await;
    stats.log("queue_batch", &queue_name, &batch_id, started);
    Ok(())
}

/// One forward (or none) and the queue messages it settles: one message for a thin event,
/// every message about one object for an enriched one.
pub(crate) struct Job {
    pub(crate) members: Vec<Pending>,
    pub(crate) action: JobAction,
    /// KV writes once the forward succeeded (at once when there is nothing to forward).
    pub(crate) after: Vec<KvWrite>,
}

/// A queue message and its decoded envelope.
pub(crate) type Pending = (RawMessage, EventMessage<OwnedEvent>);

pub(crate) enum JobAction {
    /// Forward the one member's event as the thin event.
    Thin,
    /// Forward this body with this `webhook-id`.
    Send { id: String, body: String },
    /// Nothing to forward: acknowledge (an unmapped change, an unchanged record, our echo).
    Nothing,
    /// The events cannot be forwarded: dead-letter them with this stable reason.
    Fail { reason: String, detail: String },
    /// A step before the forward failed (the HubSpot read): retry like a failed forward.
    Retry { attempt: Attempt, detail: String },
}

/// A KV write that follows a successful forward.
pub(crate) enum KvWrite {
    Put { key: String, value: String },
    Delete { key: String },
}

impl KvWrite {
    async fn apply(self, kv: &worker::kv::KvStore) -> Result<()> {
        match self {
            Self::Put { key, value } => store::put_text(kv, &key, value, None).await,
            Self::Delete { key } => store::delete(kv, &key).await,
        }
    }
}

impl Job {
    fn thin(pending: Pending) -> Self {
        Self {
            members: vec![pending],
            action: JobAction::Thin,
            after: Vec::new(),
        }
    }
}

/// Runs a job's forward: the decision, an explicit dead-letter reason when there is one, and
/// a detail for logs.
async fn run_job(config: &Forward, job: &Job) -> (Decision, Option<String>, String) {
    let attempt = job
        .members
        .iter()
        .map(|(_, e)| e.attempt)
        .max()
        .unwrap_or(1);
    let jitter = js_sys::Math::random();
    let rejected = Decision::DeadLetter(hubspot_edge_core::delivery::GiveUp::Rejected(0));
    match &job.action {
        JobAction::Thin => match job.members.first() {
            Some((_, envelope)) => match forward_one(config, envelope).await {
                Ok(a) => (config.retry.decide(attempt, a, jitter), None, describe(a)),
                Err(reason) => (rejected, Some(reason.clone()), reason),
            },
            None => (Decision::Deliver, None, "empty".into()),
        },
        JobAction::Send { id, body } => {
            let a = send_signed(config, id, body).await;
            (config.retry.decide(attempt, a, jitter), None, describe(a))
        }
        JobAction::Nothing => (Decision::Deliver, None, "nothing_to_forward".into()),
        JobAction::Fail { reason, detail } => (rejected, Some(reason.clone()), detail.clone()),
        JobAction::Retry { attempt: a, detail } => {
            let decision = match config.retry.decide(attempt, *a, jitter) {
                // A failed read is never a delivery.
                Decision::Deliver => Decision::Retry { delay_secs: 1 },
                d => d,
            };
            (decision, None, detail.clone())
        }
    }
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
    Ok(send_signed(config, key.as_str(), &body).await)
}

/// One Standard Webhooks POST of `body` to `FORWARD_URL` with `webhook-id` `id`.
async fn send_signed(config: &Forward, id: &str, body: &str) -> Attempt {
    let now_secs = Date::now().as_millis() / 1000;
    let signature = config.secret.sign(id, now_secs, body.as_bytes());

    let build = || -> Result<Request> {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set(
            "user-agent",
            concat!("hubspot-edge/", env!("CARGO_PKG_VERSION")),
        )?;
        headers.set(HEADER_WEBHOOK_ID, id)?;
        headers.set(HEADER_WEBHOOK_TIMESTAMP, &now_secs.to_string())?;
        headers.set(HEADER_WEBHOOK_SIGNATURE, &signature)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(body.to_owned().into()));
        Request::new_with_init(&config.url, &init)
    };
    let Ok(request) = build() else {
        // FORWARD_URL was checked to be http(s) with the configuration; a URL the runtime
        // still refuses is a destination that cannot be reached.
        return Attempt::NetworkError;
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
    attempt
}

pub(crate) fn describe(attempt: Attempt) -> String {
    match attempt {
        Attempt::Answered { status, .. } => format!("status_{status}"),
        Attempt::TimedOut => "timeout".into(),
        Attempt::NetworkError => "network_error".into(),
    }
}

#[derive(Debug, Default)]
struct Stats {
    enrich: crate::enrich::Counts,
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

    fn log(&self, msg: &str, queue: &str, batch_id: &str, started: u64) {
        let mut line = Line::info(msg)
            .field("request_id", batch_id)
            .field("queue", queue)
            .field("messages", self.messages)
            .field("delivered", self.delivered)
            .field("duplicates", self.duplicates)
            .field("retried", self.retried)
            .field("dead_lettered", self.dead_lettered)
            .field(
                "duration_ms",
                Date::now().as_millis().saturating_sub(started),
            );
        if self.enrich.objects > 0 || self.enrich.associations > 0 {
            line = self.enrich.fields(line);
        }
        line.emit();
    }
}
