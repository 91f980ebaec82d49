//! Queue consumers: forward events to the user's endpoint, and keep dead letters.
//!
//! Dedupe happens here, not at the ingress: a `seen:{key}` mark is written to KV after a
//! successful forward and checked before each attempt, so neither HubSpot's retries nor a queue
//! redelivery cause a second delivery. Retries are explicit: a retryable failure re-sends the
//! message with `attempt + 1` and a delay, then acknowledges the original, so the attempt count
//! and the backoff are ours (the queue's own `max_retries` and dead-letter queue remain the
//! safety net for a consumer that crashes).
//!
//! Every decision is core's ([`Consume`]); this module reads and writes KV, runs the jobs'
//! forwards, sends to the queues and settles the messages.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;

use futures_util::future::join_all;
use futures_util::stream::{self, StreamExt};
use hubspot_edge_core::dedupe::DedupeKey;
use hubspot_edge_core::delivery::{BatchBudget, Recorded, Settle, MAX_CONCURRENT_FORWARDS};
use hubspot_edge_core::event::Event;
use hubspot_edge_core::outbound;
use hubspot_edge_core::queue::consume::{
    BatchCommits, Consume, Disposal, JobRun, JobSettle, JobVerdict,
};
use worker::{
    Date, Env, MessageBatch, MessageExt, Queue, QueueRetryOptionsBuilder, RawMessage, Result,
};

use crate::config::Forward;
use crate::forward::send_signed;
use crate::jobs::{Job, JobAction, Pending};
use crate::log::{Line, Scope};
use crate::queue::{self, DeadLetterMessage, EventMessage, OwnedEvent};
use crate::store;

/// A batch's follow-ups (sends, marks, acknowledgements), run together at the end.
type FollowUps<'a> = Vec<Pin<Box<dyn Future<Output = ()> + 'a>>>;

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
    let queues = (&events_queue, &dead_queue);
    let messages: Vec<RawMessage> = batch.raw_iter().collect();
    let config = Forward::from_env(env);
    let policy = match &config {
        Ok(c) => c.retry,
        // The operator's retry policy if those keys are valid, else the default.
        Err(_) => crate::config::retry_policy(env),
    };
    // The bodies' text lives only while the plan parses it (a batch may hold 100 × 128 KB).
    let mut plan = {
        let texts: Vec<String> = messages
            .iter()
            .map(|m| m.body().as_string().unwrap_or_default())
            .collect();
        Consume::new(texts.iter().map(String::as_str), policy, started)
    };
    let mut raw: Vec<Option<RawMessage>> = messages.into_iter().map(Some).collect();

    let config = match config {
        Ok(c) => c,
        Err(problems) => {
            // Nothing can be sent: see `Consume::hold`.
            crate::config::log_problems(&problems, &batch_id);
            plan.hold(&hubspot_edge_core::config::summary(&problems), || {
                js_sys::Math::random()
            });
            let mut follow_ups: FollowUps<'_> = Vec::new();
            dispose(&mut plan, &mut raw, queues, &mut follow_ups);
            join_all(follow_ups).await;
            log_batch(&plan, None, &queue_name, &batch_id, started);
            return Ok(());
        }
    };
    let kv = env.kv(store::STATE)?;
    let mut follow_ups: FollowUps<'_> = Vec::new();

    // Skip what was already delivered (a HubSpot retry, or a redelivery after success).
    let checks: Vec<(usize, String)> = plan
        .to_check()
        .into_iter()
        .map(|(i, key)| (i, key.to_owned()))
        .collect();
    let seen = join_all(checks.iter().map(|(_, key)| store::is_seen(&kv, key))).await;
    for ((index, _), seen) in checks.into_iter().zip(seen) {
        plan.seen(index, matches!(seen, Ok(true)));
    }

    // Events carried by reference (too large for a queue message) are loaded from KV.
    let loads: Vec<(usize, String)> = plan
        .to_load()
        .into_iter()
        .map(|(i, key)| (i, key.to_owned()))
        .collect();
    let bodies = join_all(loads.iter().map(|(_, key)| store::get_text(&kv, key))).await;
    for ((index, _), body) in loads.into_iter().zip(bodies) {
        plan.loaded(index, body.ok().flatten());
    }
    let to_forward: Vec<Pending> = plan
        .take_ready()
        .into_iter()
        .filter_map(|(index, envelope)| Some((raw.get_mut(index)?.take()?, envelope)))
        .collect();
    dispose(&mut plan, &mut raw, queues, &mut follow_ups);

    // Effects of rules (queued by an earlier batch) are carried out as they are; events are
    // enriched when their object type has a field map (read, mapped, diffed, rules evaluated),
    // the rest go thin.
    let mut enrich_counts = crate::enrich::Counts::default();
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
                &mut enrich_counts,
            )
            .await,
        ),
    }

    // The forwards: at most MAX_CONCURRENT_FORWARDS in flight (the runtime's
    // simultaneous-connection limit), none started after the batch's budget.
    let budget = BatchBudget::new(started, config.batch_budget_ms);
    // Unordered: a slow answer holds one slot, not the whole batch (an ordered buffer would
    // start nothing new until the slow head finished). Results are put back in job order.
    let mut indexed: Vec<(usize, JobRun)> =
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
    let verdicts: Vec<JobVerdict> = jobs
        .iter()
        .zip(indexed)
        .map(|(job, (_, run))| plan.verdict(&envelopes(&job.members), run, js_sys::Math::random()))
        .collect();

    // Delivered jobs commit their record-store writes: one call per portal and object type.
    let recorded = commit_all(env, &jobs, &verdicts).await;

    for ((job, verdict), recorded) in jobs.into_iter().zip(verdicts).zip(recorded) {
        let Job {
            members, effects, ..
        } = job;
        let settled = plan.settle(&envelopes(&members), verdict, recorded, effects.len());
        if settled.conflict {
            // Another consumer committed this object in between: the events are processed
            // again against its snapshot.
            Line::info("record_conflict")
                .field("request_id", batch_id.as_str())
                .field("keys", keys_of(&members))
                .emit();
        }
        let (kv, ttl, events_queue) = (&kv, config.dedupe_ttl_secs, &events_queue);
        match settled.settle {
            Settle::Ack => follow_ups.push(Box::pin(async move {
                // The rules' effects go on the queue before the change counts as delivered:
                // if they cannot, the change is processed again (its effects keep their keys,
                // so none is carried out twice).
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
            })),
            Settle::Requeue { delay_secs } | Settle::Retry { delay_secs } => {
                if matches!(settled.settle, Settle::Retry { .. }) {
                    Line::warn("forward_retry")
                        .event(first_request_id(&members), first_traceparent(&members))
                        .field("keys", keys_of(&members))
                        .field("attempt", settled.attempt)
                        .field("outcome", settled.detail.as_str())
                        .field("delay_secs", delay_secs)
                        .emit();
                }
                for (message, envelope) in members {
                    let next = settled.next(envelope);
                    follow_ups.push(Box::pin(requeue(events_queue, message, next, delay_secs)));
                }
            }
            Settle::DeadLetter(_) => {
                for (message, envelope) in members {
                    let letter = dead_letter(&settled, envelope);
                    follow_ups.push(Box::pin(send_letter(&dead_queue, message, letter)));
                }
            }
        }
    }
    // The follow-ups (dedupe marks, re-queues, dead letters) run concurrently, not one by one.
    join_all(follow_ups).await;
    log_batch(&plan, Some(&enrich_counts), &queue_name, &batch_id, started);
    Ok(())
}

/// Carries out the plan's settlements made outside jobs (duplicates, invalid messages, bodies
/// not readable yet, the hold for configuration), taking each message out of `raw`.
fn dispose<'a>(
    plan: &mut Consume,
    raw: &mut [Option<RawMessage>],
    (events_queue, dead_queue): (&'a Queue, &'a Queue),
    follow_ups: &mut FollowUps<'a>,
) {
    for (index, disposal) in plan.take_disposals() {
        let Some(message) = raw.get_mut(index).and_then(Option::take) else {
            continue;
        };
        match disposal {
            Disposal::Duplicate(envelope) => {
                // A copy of an event that was already delivered (or is already in hand).
                Line::info("duplicate_skipped")
                    .event(&envelope.request_id, envelope.traceparent.as_deref())
                    .field("key", envelope.key.as_str())
                    .field("attempt", envelope.attempt)
                    .emit();
                message.ack();
            }
            Disposal::Invalid(letter) => {
                follow_ups.push(Box::pin(send_letter(dead_queue, message, letter)));
            }
            Disposal::Unavailable {
                envelope,
                delay_secs,
            } => {
                // Not readable yet (KV lag or an error): the queue redelivers it later.
                Line::warn("event_body_unavailable")
                    .event(&envelope.request_id, envelope.traceparent.as_deref())
                    .field("key", envelope.key.as_str())
                    .emit();
                message.retry_with_options(
                    &QueueRetryOptionsBuilder::new()
                        .with_delay_seconds(u32::try_from(delay_secs).unwrap_or(60))
                        .build(),
                );
            }
            Disposal::Retry { next, delay_secs } => {
                follow_ups.push(Box::pin(requeue(events_queue, message, next, delay_secs)));
            }
            Disposal::DeadLetter(letter) => {
                log_dead_lettered(&letter);
                follow_ups.push(Box::pin(send_letter(dead_queue, message, letter)));
            }
        }
    }
}

/// The envelopes of a job's messages.
fn envelopes(members: &[Pending]) -> Vec<&EventMessage<OwnedEvent>> {
    members.iter().map(|(_, e)| e).collect()
}

/// A member's dead letter, logged.
fn dead_letter(
    settled: &JobSettle,
    envelope: EventMessage<OwnedEvent>,
) -> DeadLetterMessage<OwnedEvent> {
    let letter = settled.letter(envelope);
    log_dead_lettered(&letter);
    letter
}

fn log_dead_lettered(letter: &DeadLetterMessage<OwnedEvent>) {
    Line::warn("forward_dead_lettered")
        .event(&letter.request_id, letter.traceparent.as_deref())
        .field("key", letter.key.as_deref().unwrap_or_default())
        .field("attempt", letter.attempts)
        .field("reason", letter.reason.as_str())
        .field("outcome", letter.detail.as_str())
        .emit();
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

/// Commits the writes of every delivered job, one record-store call per portal and object type
/// (core's [`BatchCommits`]): per job, what became of them.
async fn commit_all(env: &Env, jobs: &[Job], verdicts: &[JobVerdict]) -> Vec<Recorded> {
    let mut plan = BatchCommits::new(
        verdicts
            .iter()
            .zip(jobs)
            .map(|(verdict, job)| (verdict, job.after.as_slice())),
    );
    // The answers as they come. The calls are boxed like the batch's follow-ups: one
    // `join_all` instantiation for both.
    let answers = RefCell::new(Vec::new());
    let calls: FollowUps<'_> = plan
        .calls()
        .map(|(call, portal, object_type, commits)| {
            let answers = &answers;
            Box::pin(async move {
                let answer = crate::records::commit(env, portal, object_type, commits).await;
                answers.borrow_mut().push((call, answer));
            }) as Pin<Box<dyn Future<Output = ()> + '_>>
        })
        .collect();
    join_all(calls).await;
    for (call, answer) in answers.into_inner() {
        match answer {
            Ok(outcomes) => plan.answered(call, outcomes.into_iter().map(|(_, o)| o)),
            Err(e) => {
                Line::error("record_store_failed")
                    .field("error", e.to_string())
                    .emit();
                plan.failed(call);
            }
        }
    }
    plan.recorded()
}

/// Runs a job's forward, unless the batch's budget is spent or there is nothing to send (core's
/// [`JobAction::start`]).
async fn run_job(config: &Forward, env: &Env, job: &Job, budget: &BatchBudget) -> JobRun {
    if let Some(run) = job.action.start(budget, Date::now().as_millis()) {
        return run;
    }
    let sent = |(attempt, location): (hubspot_edge_core::delivery::Attempt, Option<String>)| {
        // The Location is recorded, the body is not re-sent anywhere.
        JobRun::sent(attempt, None, location.as_deref())
    };
    match &job.action {
        JobAction::Thin => match job.members.first() {
            Some((_, envelope)) => match forward_one(config, envelope).await {
                Ok(answer) => sent(answer),
                Err(reason) => JobRun::Refused {
                    detail: reason.clone(),
                    reason,
                },
            },
            None => JobRun::Done {
                detail: "empty".into(),
            },
        },
        JobAction::Send { id, body } => sent(send_signed(config, id, body).await),
        JobAction::Effect(effect) => crate::rules::run(config, env, effect).await,
        // Nothing, Defer, Fail, Retry: decided by `start` above, never here (were one to be, it
        // would go back on the queue unchanged).
        _ => JobRun::Deferred,
    }
}

/// Hands `letter` to the dead-letter queue and acknowledges `message`; if the send fails the
/// queue redelivers the message.
async fn send_letter(queue: &Queue, message: RawMessage, letter: DeadLetterMessage<OwnedEvent>) {
    let sent = match serde_json::to_string(&letter) {
        Ok(text) => queue::send_one(queue, text, 0).await,
        Err(e) => Err(e.into()),
    };
    match sent {
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
) -> std::result::Result<(hubspot_edge_core::delivery::Attempt, Option<String>), String> {
    let event = Event::parse(&envelope.event).map_err(|e| e.code().to_owned())?;
    let key = DedupeKey::of(&event);
    let body = outbound::event_body(&event, &key, envelope.received_at);
    Ok(send_signed(config, key.as_str(), &body).await)
}

/// The batch's log line and metrics.
fn log_batch(
    plan: &Consume,
    enrich: Option<&crate::enrich::Counts>,
    queue: &str,
    batch_id: &str,
    started: u64,
) {
    let stats = plan.stats();
    let mut line = Line::info("queue_batch")
        .field("request_id", batch_id)
        .field("queue", queue)
        .field("messages", stats.messages)
        .field("delivered", stats.delivered)
        .field("duplicates", stats.duplicates)
        .field("retried", stats.retried)
        .field("deferred", stats.deferred)
        .field("dead_lettered", stats.dead_lettered)
        .field("rule_effects", stats.rule_effects)
        .field(
            "duration_ms",
            Date::now().as_millis().saturating_sub(started),
        );
    if let Some(counts) = enrich.filter(|c| c.objects > 0 || c.associations > 0) {
        line = counts.fields(line);
    }
    line.emit();
    let echoes = enrich.map_or(0, |c| c.echo);
    crate::metrics::count(|m| stats.count_into(m, echoes));
}
