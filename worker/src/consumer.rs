//! Queue consumers: forward events to the user's endpoint, and keep dead letters.
//!
//! Dedupe happens here, not at the ingress: a `seen:{key}` mark is written to KV after a
//! successful forward and checked before each attempt, so neither HubSpot's retries nor a queue
//! redelivery cause a second delivery. Retries are explicit: a retryable failure re-sends the
//! message with `attempt + 1` and a delay, then acknowledges the original, so the attempt count
//! and the backoff are ours (the queue's own `max_retries` and dead-letter queue remain the
//! safety net for a consumer that crashes).

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use hubspot_edge_core::dedupe::DedupeKey;
use hubspot_edge_core::delivery::{
    Admit, Attempt, BatchBudget, DeliveryDecision, GiveUp, Recorded, Settle, DEFERRED_DELAY_SECS,
    MAX_CONCURRENT_FORWARDS,
};
use hubspot_edge_core::event::Event;
use hubspot_edge_core::metrics::{Counter, Histogram, Metrics};
use hubspot_edge_core::outbound;
use hubspot_edge_core::records::{Commit, CommitOutcome};
use serde_json::value::RawValue;
use worker::{
    Date, Env, MessageBatch, MessageExt, Queue, QueueRetryOptionsBuilder, RawMessage, Result,
};

use crate::config::Forward;
use crate::forward::{describe, send_signed};
use crate::jobs::{Job, JobAction, Pending};
use crate::log::{Line, Scope};
use crate::queue::{self, DeadLetterMessage, EventMessage, OwnedEvent};
use crate::store;

/// Consumer of the `EVENTS` queue.
///
/// Four phases, so that no other I/O competes with the forwards for the invocation's
/// connections: decode and dedupe (KV reads), build the jobs (enrichment's reads), forward (at
/// most [`MAX_CONCURRENT_FORWARDS`] at once, each timed from when it is sent, none started once
/// the batch's budget is spent), then commit the record store and settle every message.
///
/// KV operations per batch of at most 100 messages (Cloudflare allows 1,000 per invocation):
/// ≤ 100 `seen:` reads, ≤ 100 echo-guard reads (enriched changes), ≤ 100 `seen:` writes, and
/// one read per event carried by reference: ≤ 400.
pub(crate) async fn forward_batch(batch: MessageBatch<String>, env: &Env) -> Result<()> {
    let started = Date::now().as_millis();
    // The queue invocation's id (lib.rs): the batch's lines carry it.
    let batch_id = crate::log::current_request_id();
    let queue_name = batch.queue();
    let events_queue = env.queue(queue::EVENTS)?;
    let dead_queue = env.queue(queue::DEAD_LETTERS)?;
    let config = match Forward::from_env(env) {
        Ok(c) => c,
        Err(problems) => {
            let queues = (&events_queue, &dead_queue);
            let stats = hold_for_config(&batch, env, &problems, queues, &batch_id).await;
            stats.log("queue_batch", &queue_name, &batch_id, started);
            crate::metrics::count(|m| stats.count_into(m));
            return Ok(());
        }
    };
    let kv = env.kv(store::STATE)?;

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
    let mut to_load = Vec::with_capacity(pending.len());
    for ((message, envelope), seen) in pending.into_iter().zip(seen) {
        if matches!(seen, Ok(true)) {
            stats.skip_duplicate(&message, &envelope);
        } else {
            // A KV read error is treated as "not seen": at-least-once beats losing the event.
            to_load.push((message, envelope));
        }
    }

    // Events carried by reference (too large for a queue message) are loaded from KV.
    let loaded = join_all(to_load.into_iter().map(|item| load_event(&kv, item))).await;
    let mut to_forward = Vec::with_capacity(loaded.len());
    for item in loaded {
        match item {
            Ok(item) => to_forward.push(item),
            Err((message, envelope)) => {
                // Not readable yet (KV lag or an error): the queue redelivers it later.
                Line::warn("event_body_unavailable")
                    .event(&envelope.request_id, envelope.traceparent.as_deref())
                    .field("key", envelope.key.as_str())
                    .emit();
                stats.retried += 1;
                message.retry_with_options(
                    &QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(
                            u32::try_from(config.retry.base_delay_secs).unwrap_or(60),
                        )
                        .build(),
                );
            }
        }
    }

    // Effects of rules (queued by an earlier batch) are carried out as they are; events are
    // enriched when their object type has a field map (read, mapped, diffed, rules evaluated),
    // the rest go thin.
    let (mut jobs, to_forward) = crate::rules::split_effects(to_forward);
    match &config.enrichment {
        None => jobs.extend(to_forward.into_iter().map(Job::thin)),
        Some(mapping) => jobs.extend(
            crate::enrich::jobs(
                mapping,
                &config.rules,
                env,
                &kv,
                to_forward,
                &batch_id,
                &mut stats.enrich,
            )
            .await,
        ),
    }

    // The forwards: at most MAX_CONCURRENT_FORWARDS in flight (the runtime's
    // simultaneous-connection limit), none started after the batch's budget.
    let budget = BatchBudget::new(started, config.batch_budget_ms);
    // Unordered: a slow answer holds one slot, not the whole batch (an ordered buffer would
    // start nothing new until the slow head finished). Results are put back in job order.
    let mut indexed: Vec<(usize, Verdict)> =
        stream::iter(jobs.iter().enumerate().map(|(index, job)| {
            let (config, budget) = (&config, &budget);
            // The job's lines and requests carry its (first) event's request id and trace.
            let scope = job.members.first().map_or_else(
                || Scope::new(&batch_id, None),
                |(_, e)| Scope::of_event(&e.request_id, e.traceparent.as_deref()),
            );
            crate::log::scoped(scope, async move {
                (index, run_job(config, env, job, budget).await)
            })
        }))
        .buffer_unordered(MAX_CONCURRENT_FORWARDS)
        .collect()
        .await;
    indexed.sort_unstable_by_key(|(index, _)| *index);
    let verdicts: Vec<Verdict> = indexed.into_iter().map(|(_, v)| v).collect();

    // Delivered jobs commit their record-store writes: one call per portal and object type.
    let recorded = commit_all(env, &jobs, &verdicts).await;

    let mut follow_ups: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> =
        Vec::with_capacity(verdicts.len());
    for ((job, verdict), recorded) in jobs.into_iter().zip(verdicts).zip(recorded) {
        let Job {
            members, effects, ..
        } = job;
        let attempt = attempt_of(&members);
        let jitter = js_sys::Math::random();
        let (next, reason, detail) = match verdict {
            Verdict::Deferred => (
                Settle::Requeue {
                    delay_secs: DEFERRED_DELAY_SECS,
                },
                None,
                "deferred".to_owned(),
            ),
            Verdict::Decided(decision, reason, detail) => {
                let next = config.retry.settle(attempt, decision, recorded, jitter);
                match recorded {
                    Recorded::Conflict => {
                        // Another consumer committed this object in between: the events are
                        // processed again against its snapshot.
                        Line::info("record_conflict")
                            .field("request_id", batch_id.as_str())
                            .field("keys", keys_of(&members))
                            .emit();
                        (next, reason, detail)
                    }
                    Recorded::Failed => (
                        next,
                        Some(RECORD_STORE_UNAVAILABLE.to_owned()),
                        RECORD_STORE_UNAVAILABLE.to_owned(),
                    ),
                    Recorded::Ok => (next, reason, detail),
                }
            }
        };
        let class = failure_class(&detail);
        match next {
            Settle::Ack => {
                stats.delivered += members.len();
                let now = Date::now().as_millis();
                stats
                    .metrics
                    .add(Counter::Deliveries, &[("result", "success")], 1);
                for (_, envelope) in &members {
                    let latency = now.saturating_sub(envelope.received_at);
                    stats
                        .metrics
                        .observe(Histogram::DeliveryLatency, &[], latency);
                }
                stats.rule_effects += effects.len();
                let (kv, ttl, events_queue) = (&kv, config.dedupe_ttl_secs, &events_queue);
                follow_ups.push(Box::pin(async move {
                    // The rules' effects go on the queue before the change counts as
                    // delivered: if they cannot, the change is processed again (its effects
                    // keep their keys, so none is carried out twice).
                    if let Err(e) = crate::rules::queue_effects(kv, events_queue, effects).await {
                        Line::error("rule_effects_queue_failed")
                            .field("keys", keys_of(&members))
                            .field("error", e.to_string())
                            .emit();
                        for (message, _) in members {
                            message.retry();
                        }
                        return;
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
            Settle::Requeue { delay_secs } => {
                stats.deferred += members.len();
                for (message, envelope) in members {
                    follow_ups.push(Box::pin(requeue(
                        &events_queue,
                        message,
                        envelope,
                        delay_secs,
                    )));
                }
            }
            Settle::Retry { delay_secs } => {
                stats.retried += members.len();
                stats.metrics.add(
                    Counter::Deliveries,
                    &[("result", "failure"), ("class", class)],
                    1,
                );
                stats
                    .metrics
                    .add(Counter::DeliveryRetries, &[], members.len() as u64);
                Line::warn("forward_retry")
                    .event(first_request_id(&members), first_traceparent(&members))
                    .field("keys", keys_of(&members))
                    .field("attempt", attempt)
                    .field("outcome", detail.as_str())
                    .field("delay_secs", delay_secs)
                    .emit();
                for (message, envelope) in members {
                    let next = EventMessage {
                        attempt: envelope.attempt + 1,
                        ..envelope
                    };
                    follow_ups.push(Box::pin(requeue(&events_queue, message, next, delay_secs)));
                }
            }
            Settle::DeadLetter(give_up) => {
                stats.dead_lettered += members.len();
                let reason = reason.unwrap_or_else(|| give_up.code().to_owned());
                stats.metrics.add(
                    Counter::Deliveries,
                    &[("result", "failure"), ("class", class)],
                    1,
                );
                for (message, envelope) in members {
                    Line::warn("forward_dead_lettered")
                        .event(&envelope.request_id, envelope.traceparent.as_deref())
                        .field("key", envelope.key.as_str())
                        .field("attempt", envelope.attempt)
                        .field("reason", reason.as_str())
                        .field("outcome", detail.as_str())
                        .emit();
                    let letter = dead_letter_of(envelope, reason.clone(), detail.clone());
                    let dead_queue = &dead_queue;
                    follow_ups.push(Box::pin(async move {
                        settle(&message, send_dead(dead_queue, &letter).await);
                    }));
                }
            }
        }
    }
    // The follow-ups (dedupe marks, re-queues, dead letters) run concurrently, not one by one.
    join_all(follow_ups).await;
    stats.log("queue_batch", &queue_name, &batch_id, started);
    crate::metrics::count(|m| stats.count_into(m));
    Ok(())
}

/// The forwarding configuration (or `ENRICHMENT_MAP`) is invalid, so nothing can be sent:
/// `problems` are logged, and each message is settled by core's
/// [`DeliveryRetryPolicy::settle_config_invalid`](hubspot_edge_core::delivery::DeliveryRetryPolicy::settle_config_invalid):
/// back on the queue as its next attempt with the forwarding backoff (the operator's
/// `FORWARD_*` policy if those keys are valid, else the default), and once its attempts are
/// spent to the dead-letter store with reason `config_invalid` and the keys in its detail
/// (`FORWARD_URL: config_missing`), to be re-driven once fixed. Each retry is a new message,
/// so the queue's own `max_retries` never ends it.
async fn hold_for_config(
    batch: &MessageBatch<String>,
    env: &Env,
    problems: &[hubspot_edge_core::config::ConfigError],
    (events_queue, dead_queue): (&Queue, &Queue),
    batch_id: &str,
) -> Stats {
    crate::config::log_problems(problems, batch_id);
    let policy = crate::config::retry_policy(env);
    let detail = hubspot_edge_core::config::summary(problems);
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    let mut stats = Stats {
        messages: messages.len(),
        ..Stats::default()
    };
    let mut effects: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> =
        Vec::with_capacity(messages.len());
    for message in messages {
        let text = message.body().as_string().unwrap_or_default();
        let Ok(envelope) = serde_json::from_str::<EventMessage<OwnedEvent>>(&text) else {
            stats.dead_lettered += 1;
            let letter = unknown_message(&text, "message_invalid");
            effects.push(Box::pin(async move {
                settle(&message, send_dead(dead_queue, &letter).await);
            }));
            continue;
        };
        let settled = policy.settle_config_invalid(envelope.attempt, js_sys::Math::random());
        if let Settle::Retry { delay_secs } = settled {
            stats.retried += 1;
            let next = EventMessage {
                attempt: envelope.attempt + 1,
                ..envelope
            };
            effects.push(Box::pin(requeue(events_queue, message, next, delay_secs)));
            continue;
        }
        // The only other answer: the attempts are spent.
        let reason = match settled {
            Settle::DeadLetter(give_up) => give_up.code(),
            _ => GiveUp::ConfigInvalid.code(),
        };
        stats.dead_lettered += 1;
        Line::warn("forward_dead_lettered")
            .event(&envelope.request_id, envelope.traceparent.as_deref())
            .field("key", envelope.key.as_str())
            .field("attempt", envelope.attempt)
            .field("reason", reason)
            .field("outcome", detail.as_str())
            .emit();
        let letter = dead_letter_of(envelope, reason.to_owned(), detail.clone());
        effects.push(Box::pin(async move {
            settle(&message, send_dead(dead_queue, &letter).await);
        }));
    }
    join_all(effects).await;
    stats
}

/// The dead letter of an event message; an event carried by reference stays a reference (the
/// dead-letter consumer loads it).
fn dead_letter_of(
    envelope: EventMessage<OwnedEvent>,
    reason: String,
    detail: String,
) -> DeadLetterMessage<OwnedEvent> {
    let event = if envelope.event_ref.is_some() {
        RawValue::NULL.to_owned()
    } else {
        envelope.event
    };
    DeadLetterMessage {
        v: 1,
        reason,
        detail,
        attempts: envelope.attempt,
        key: Some(envelope.key),
        received_at: envelope.received_at,
        request_id: envelope.request_id,
        traceparent: envelope.traceparent,
        event_ref: envelope.event_ref,
        event,
    }
}

/// The request id of a job's first event (a line about several names the first's).
fn first_request_id(members: &[Pending]) -> &str {
    members.first().map_or("", |(_, e)| e.request_id.as_str())
}

/// The `traceparent` of a job's first event.
fn first_traceparent(members: &[Pending]) -> Option<&str> {
    members.first().and_then(|(_, e)| e.traceparent.as_deref())
}

fn keys_of(members: &[Pending]) -> Vec<String> {
    members.iter().map(|(_, e)| e.key.clone()).collect()
}

/// Puts `envelope` back on the queue after `delay_secs` and acknowledges the original; if the
/// send fails the queue redelivers the original instead.
async fn requeue(
    queue: &Queue,
    message: RawMessage,
    envelope: EventMessage<OwnedEvent>,
    delay_secs: u64,
) {
    let sent = match envelope.to_queue_json() {
        Ok(text) => queue::send_one(queue, text, delay_secs).await,
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
}

/// Loads an event carried by reference. `Err` gives the message and its envelope back when the body
/// cannot be read now.
async fn load_event(
    kv: &worker::kv::KvStore,
    (message, mut envelope): Pending,
) -> std::result::Result<Pending, Pending> {
    let Some(event_ref) = envelope.event_ref.as_deref() else {
        return Ok((message, envelope));
    };
    let text = match store::get_text(kv, event_ref).await {
        Ok(Some(text)) => text,
        Ok(None) | Err(_) => return Err((message, envelope)),
    };
    match RawValue::from_string(text) {
        Ok(event) => {
            envelope.event = event;
            Ok((message, envelope))
        }
        Err(_) => Err((message, envelope)),
    }
}

/// The dead-letter reason of events whose record-store writes could not be made.
const RECORD_STORE_UNAVAILABLE: &str = "record_store_unavailable";

/// Commits the writes of every delivered job, one record-store call per portal and object type:
/// per job, what became of them ([`Recorded::Ok`] when there were none).
async fn commit_all(env: &Env, jobs: &[Job], verdicts: &[Verdict]) -> Vec<Recorded> {
    let delivered =
        |verdict: &Verdict| matches!(verdict, Verdict::Decided(DeliveryDecision::Deliver, ..));
    let mut by_store: BTreeMap<(u64, &str), Vec<(usize, &Commit)>> = BTreeMap::new();
    for (index, (job, verdict)) in jobs.iter().zip(verdicts).enumerate() {
        if !delivered(verdict) {
            continue;
        }
        for write in &job.after {
            by_store
                .entry((write.portal, write.object_type.as_str()))
                .or_default()
                .push((index, &write.commit));
        }
    }
    let mut out = vec![Recorded::Ok; jobs.len()];
    let answers = join_all(
        by_store
            .into_iter()
            .map(|((portal, object_type), items)| async move {
                let commits: Vec<Commit> = items.iter().map(|(_, c)| (*c).clone()).collect();
                let answer = crate::records::commit(env, portal, object_type, &commits).await;
                (items, answer)
            }),
    )
    .await;
    for (items, answer) in answers {
        match answer {
            Ok(outcomes) => {
                for ((index, _), (_, outcome)) in items.iter().zip(outcomes) {
                    if matches!(outcome, CommitOutcome::Conflict { .. }) {
                        out[*index] = Recorded::Conflict;
                    }
                }
            }
            Err(e) => {
                Line::error("record_store_failed")
                    .field("error", e.to_string())
                    .emit();
                for (index, _) in items {
                    out[index] = Recorded::Failed;
                }
            }
        }
    }
    out
}

/// The attempt of a job: the highest of its messages'.
fn attempt_of(members: &[Pending]) -> u32 {
    members.iter().map(|(_, e)| e.attempt).max().unwrap_or(1)
}

/// What became of a job's forward.
enum Verdict {
    /// The decision, an explicit dead-letter reason when there is one, and a detail for logs.
    Decided(DeliveryDecision, Option<String>, String),
    /// Not sent: the batch's budget was spent. Back on the queue as the same attempt.
    Deferred,
}

/// Runs a job's forward, unless the batch's budget is spent.
async fn run_job(config: &Forward, env: &Env, job: &Job, budget: &BatchBudget) -> Verdict {
    let attempt = attempt_of(&job.members);
    let jitter = js_sys::Math::random();
    let rejected = DeliveryDecision::DeadLetter(GiveUp::Unforwardable);
    let sends = matches!(
        job.action,
        JobAction::Thin | JobAction::Send { .. } | JobAction::Effect(_)
    );
    if sends && budget.admit(Date::now().as_millis()) == Admit::Defer {
        return Verdict::Deferred;
    }
    let sent = |(a, location): (Attempt, Option<String>)| {
        let decision = config.retry.decide(attempt, a, jitter);
        let detail = match location {
            // The Location is recorded, the body is not re-sent anywhere.
            Some(l) => format!("{} location={l}", describe(a)),
            None => describe(a),
        };
        Verdict::Decided(decision, None, detail)
    };
    match &job.action {
        JobAction::Thin => match job.members.first() {
            Some((_, envelope)) => match forward_one(config, envelope).await {
                Ok(answer) => sent(answer),
                Err(reason) => Verdict::Decided(rejected, Some(reason.clone()), reason),
            },
            None => Verdict::Decided(DeliveryDecision::Deliver, None, "empty".into()),
        },
        JobAction::Send { id, body } => sent(send_signed(config, id, body).await),
        JobAction::Nothing => {
            Verdict::Decided(DeliveryDecision::Deliver, None, "nothing_to_forward".into())
        }
        JobAction::Fail { reason, detail } => {
            Verdict::Decided(rejected, Some(reason.clone()), detail.clone())
        }
        JobAction::Retry {
            attempt: a,
            code,
            detail,
        } => retry(config, attempt, *a, code, detail, jitter),
        JobAction::Effect(effect) => match crate::rules::run(config, env, effect).await {
            crate::rules::Outcome::Sent(a, detail) => {
                Verdict::Decided(config.retry.decide(attempt, a, jitter), None, detail)
            }
            crate::rules::Outcome::Retry {
                attempt: a,
                code,
                detail,
            } => retry(config, attempt, a, &code, &detail, jitter),
            crate::rules::Outcome::Fail { reason, detail } => {
                Verdict::Decided(rejected, Some(reason), detail)
            }
            crate::rules::Outcome::Done(detail) => {
                Verdict::Decided(DeliveryDecision::Deliver, None, detail)
            }
        },
    }
}

/// A step that failed before anything was delivered: retried like a failed forward, and
/// dead-lettered with `code` once the attempts are spent.
fn retry(
    config: &Forward,
    attempt: u32,
    failed: Attempt,
    code: &str,
    detail: &str,
    jitter: f64,
) -> Verdict {
    // `failed` is an `Attempt::StepFailed`: core never decides it a delivery.
    let decision = config.retry.decide(attempt, failed, jitter);
    Verdict::Decided(decision, Some(code.to_owned()), detail.to_owned())
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
        traceparent: None,
        event_ref: None,
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
) -> std::result::Result<(Attempt, Option<String>), String> {
    let event = Event::parse(&envelope.event).map_err(|e| e.code().to_owned())?;
    let key = DedupeKey::of(&event);
    let body = outbound::event_body(&event, &key, envelope.received_at);
    Ok(send_signed(config, key.as_str(), &body).await)
}

/// A delivery failure's class for metrics (a closed set, so the label stays bounded):
/// `describe`'s `status_503` is `http_5xx`, and so on.
fn failure_class(detail: &str) -> &'static str {
    match detail
        .strip_prefix("status_")
        .and_then(|s| s.parse::<u16>().ok())
    {
        Some(429) => "http_429",
        Some(300..=399) => "redirect",
        Some(400..=499) => "http_4xx",
        Some(500..=599) => "http_5xx",
        Some(_) => "http_other",
        None => match detail {
            "timeout" => "timeout",
            "network_error" => "network",
            RECORD_STORE_UNAVAILABLE => "record_store",
            _ => "other",
        },
    }
}

#[derive(Debug, Default)]
struct Stats {
    /// What this batch counted for the metrics object (worker/src/metrics.rs).
    metrics: Metrics,
    enrich: crate::enrich::Counts,
    messages: usize,
    delivered: usize,
    duplicates: usize,
    retried: usize,
    /// Put back on the queue unsent (the batch's budget was spent, or a record conflict).
    deferred: usize,
    dead_lettered: usize,
    /// Rule effects queued by delivered changes.
    rule_effects: usize,
}

impl Stats {
    /// Adds this batch's counts to the invocation's metrics: the deliveries recorded as they
    /// settled, plus the queue's settled and re-sent messages and enrichment's echoes.
    fn count_into(&self, m: &mut Metrics) {
        m.merge(&self.metrics);
        let q = [("queue", "events")];
        m.add(Counter::QueueSettled, &q, self.messages as u64);
        // A retry or a deferral is a new message (the old one is acknowledged).
        let resent = (self.retried + self.deferred) as u64;
        if resent > 0 {
            m.add(Counter::QueueEnqueued, &q, resent);
        }
        if self.duplicates > 0 {
            m.add(
                Counter::Events,
                &[("stage", "duplicate")],
                self.duplicates as u64,
            );
        }
        if self.enrich.echo > 0 {
            m.add(
                Counter::Events,
                &[("stage", "echo_suppressed")],
                self.enrich.echo as u64,
            );
        }
    }

    /// Acknowledges a copy of an event that was already delivered (or is already in hand).
    fn skip_duplicate(&mut self, message: &RawMessage, envelope: &EventMessage<OwnedEvent>) {
        self.duplicates += 1;
        Line::info("duplicate_skipped")
            .event(&envelope.request_id, envelope.traceparent.as_deref())
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
            .field("deferred", self.deferred)
            .field("dead_lettered", self.dead_lettered)
            .field("rule_effects", self.rule_effects)
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
