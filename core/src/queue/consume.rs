//! The forwarding consumer's decisions for one queue batch, as a poll-style plan
//! ([`Consume`]): the host hands it the raw message bodies, asks what to check and load,
//! feeds the answers back, runs the jobs it builds from the ready events, and gets back how
//! each message is settled (acknowledged, re-queued, retried with a delay, dead-lettered),
//! with the reasons and the batch's counts for metrics. The host does the I/O only: the
//! queue's messages, the dedupe marks and event bodies in its store, the forwards.
//!
//! Index `i` always names the batch's `i`-th message, in the order given to [`Consume::new`].

use std::collections::HashSet;

use serde_json::value::RawValue;

use super::{DeadLetterMessage, EventMessage, OwnedEvent};
use crate::delivery::{
    Attempt, DeliveryDecision, DeliveryRetryPolicy, GiveUp, Recorded, Settle, DEFERRED_DELAY_SECS,
};
use crate::metrics::{Counter, Histogram, Metrics};

mod job;

pub use job::{BatchCommits, JobAction, StoreWrite};

/// The dead-letter reason of events whose record-store writes could not be made.
const RECORD_STORE_UNAVAILABLE: &str = "record_store_unavailable";

/// One batch of the `EVENTS` queue, from its raw bodies to how each message is settled.
///
/// 1. [`Consume::new`] parses every body: one that is not an event envelope is dead-lettered
///    (`message_invalid`), a second copy of a key already in the batch is a duplicate.
/// 2. [`Consume::to_check`] names the dedupe keys to look up; [`Consume::seen`] feeds each
///    answer (a read error counts as "not seen": at-least-once beats losing the event).
/// 3. [`Consume::to_load`] names the events carried by reference; [`Consume::loaded`] feeds
///    each body (`None`: not readable yet, the queue redelivers the message later).
/// 4. [`Consume::take_ready`] hands over the events to build jobs from; the host runs each
///    job and describes what happened as a [`JobRun`], which [`Consume::verdict`] decides.
/// 5. The host commits the record-store writes of the delivered verdicts, then
///    [`Consume::settle`] says how the job's messages are settled.
///
/// [`Consume::take_disposals`] hands over, at any point, the messages settled so far outside
/// jobs, and [`Consume::stats`] the batch's counts. When the configuration is invalid the
/// host calls [`Consume::hold`] instead of steps 2 to 5.
#[derive(Debug)]
pub struct Consume {
    policy: DeliveryRetryPolicy,
    now_ms: u64,
    slots: Vec<Slot>,
    disposals: Vec<(usize, Disposal)>,
    stats: ConsumeStats,
}

#[derive(Debug)]
enum Slot {
    /// Settled (a disposal was made).
    Done,
    /// The envelope, waiting for the dedupe check.
    Check(EventMessage<OwnedEvent>),
    /// Not yet delivered, waiting for its body (by reference) or to be taken.
    Ready(EventMessage<OwnedEvent>),
    /// Taken by [`Consume::take_ready`].
    Taken,
}

/// How a message is settled outside a job (the host sends, logs, acknowledges).
#[derive(Debug)]
pub enum Disposal {
    /// A copy of an event already delivered or already in this batch: acknowledge it (and log
    /// `duplicate_skipped`).
    Duplicate(EventMessage<OwnedEvent>),
    /// Not an event envelope: hand this letter to the dead-letter queue, then acknowledge.
    Invalid(DeadLetterMessage<OwnedEvent>),
    /// The event's body carried by reference cannot be read now: let the queue redeliver the
    /// message itself after `delay_secs` (the forwarding base delay).
    Unavailable {
        /// The envelope, for the log line.
        envelope: EventMessage<OwnedEvent>,
        /// Delay of the queue's own redelivery.
        delay_secs: u64,
    },
    /// Send this envelope (the next attempt) after `delay_secs`, then acknowledge the original.
    Retry {
        /// The message to send.
        next: EventMessage<OwnedEvent>,
        /// Delay of the new message.
        delay_secs: u64,
    },
    /// Given up on: hand this letter to the dead-letter queue, then acknowledge (and log
    /// `forward_dead_lettered`).
    DeadLetter(DeadLetterMessage<OwnedEvent>),
}

/// What happened when the host ran a job (one forward, or none, for one or more messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobRun {
    /// Not started: the batch's budget was spent. Back on the queue as the same attempt.
    Deferred,
    /// A destination answered (or did not): the retry policy decides. `detail` is for logs
    /// (`status_503`, `timeout`…; its `status_NNN` prefix gives the metrics' failure class).
    Sent {
        /// How the forward ended.
        attempt: Attempt,
        /// For logs and dead letters.
        detail: String,
    },
    /// A step before the forward failed in a way a later attempt may fix (a HubSpot read, the
    /// record store): retried like a failed forward, dead-lettered with `code` once the
    /// attempts are spent.
    Failed {
        /// An [`Attempt::StepFailed`], with the earliest retry the step asked for.
        attempt: Attempt,
        /// The dead letter's reason.
        code: String,
        /// For logs and dead letters.
        detail: String,
    },
    /// Nothing a retry can fix: dead-lettered now with `reason`.
    Refused {
        /// The dead letter's reason.
        reason: String,
        /// For logs and dead letters.
        detail: String,
    },
    /// Done without a forward failing (nothing to forward, an effect carried out).
    Done {
        /// For logs.
        detail: String,
    },
}

impl JobRun {
    /// A forward that was sent (or not answered): its detail is `what` (when given), then the
    /// attempt's code (`status_503`, `timeout`, `network_error`), then the `Location` of a 3xx
    /// answer (recorded, never followed).
    pub fn sent(attempt: Attempt, what: Option<&str>, location: Option<&str>) -> Self {
        let code = attempt.code();
        let mut detail = match what {
            Some(what) => format!("{what} {code}"),
            None => code,
        };
        if let Some(l) = location {
            detail.push_str(" location=");
            detail.push_str(l);
        }
        Self::Sent { attempt, detail }
    }
}

/// A job's decided forward ([`Consume::verdict`]), before its record-store writes.
#[derive(Debug, Clone, PartialEq)]
pub struct JobVerdict {
    /// `None`: deferred by the batch's budget.
    decision: Option<DeliveryDecision>,
    reason: Option<String>,
    detail: String,
    attempt: u32,
    jitter: f64,
}

impl JobVerdict {
    /// Whether the forward counts as delivered, so that the job's record-store writes are
    /// committed now.
    pub fn delivered(&self) -> bool {
        self.decision == Some(DeliveryDecision::Deliver)
    }
}

/// How a job's messages are settled ([`Consume::settle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettle {
    /// Ack (mark delivered, queue the rules' effects), re-queue as the same attempt, retry as
    /// the next attempt, or dead-letter.
    pub settle: Settle,
    /// The job's attempt: the highest of its messages'.
    pub attempt: u32,
    /// The dead-letter reason (for [`Settle::DeadLetter`]): the step's own code when it has
    /// one, else the give-up's code.
    pub reason: String,
    /// For logs and dead letters (`status_503`, `deferred`…).
    pub detail: String,
    /// Another consumer committed the job's object first (log `record_conflict`).
    pub conflict: bool,
}

/// A batch's counts, for the batch's log line and the metrics.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ConsumeStats {
    /// Deliveries recorded as they settled (results, classes, latencies).
    pub metrics: Metrics,
    /// Messages in the batch.
    pub messages: usize,
    /// Messages acknowledged as delivered.
    pub delivered: usize,
    /// Copies of events already delivered or already in the batch.
    pub duplicates: usize,
    /// Messages retried (as the next attempt, or redelivered by the queue).
    pub retried: usize,
    /// Messages put back on the queue unsent (the batch's budget, a record conflict).
    pub deferred: usize,
    /// Messages dead-lettered.
    pub dead_lettered: usize,
    /// Rule effects queued by delivered changes.
    pub rule_effects: usize,
}

impl ConsumeStats {
    /// Adds the batch's counts to `m`: the deliveries recorded as they settled, the queue's
    /// settled and re-sent messages (a retry or a deferral is a new message), the duplicates
    /// and `echoes` (enrichment's suppressed echoes).
    pub fn count_into(&self, m: &mut Metrics, echoes: usize) {
        m.merge(&self.metrics);
        let q = [("queue", "events")];
        m.add(Counter::QueueSettled, &q, self.messages as u64);
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
        if echoes > 0 {
            m.add(
                Counter::Events,
                &[("stage", "echo_suppressed")],
                echoes as u64,
            );
        }
    }
}

impl Consume {
    /// A batch of these raw message bodies, settled with `policy`, received at `now_ms`.
    pub fn new<'a>(
        bodies: impl IntoIterator<Item = &'a str>,
        policy: DeliveryRetryPolicy,
        now_ms: u64,
    ) -> Self {
        let mut plan = Self {
            policy,
            now_ms,
            slots: Vec::new(),
            disposals: Vec::new(),
            stats: ConsumeStats::default(),
        };
        let mut keys = HashSet::new();
        for (index, text) in bodies.into_iter().enumerate() {
            let slot = match serde_json::from_str::<EventMessage<OwnedEvent>>(text) {
                Ok(envelope) if keys.insert(envelope.key.clone()) => Slot::Check(envelope),
                Ok(envelope) => {
                    plan.stats.duplicates += 1;
                    plan.disposals.push((index, Disposal::Duplicate(envelope)));
                    Slot::Done
                }
                Err(_) => {
                    plan.stats.dead_lettered += 1;
                    let letter = invalid_letter(text, now_ms);
                    plan.disposals.push((index, Disposal::Invalid(letter)));
                    Slot::Done
                }
            };
            plan.slots.push(slot);
        }
        plan.stats.messages = plan.slots.len();
        plan
    }

    /// The dedupe keys to look up (already delivered?), by message index.
    pub fn to_check(&self) -> Vec<(usize, &str)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Check(e) => Some((i, e.key.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The answer for message `index`'s key: `true` when it was delivered already (then the
    /// message is a duplicate). Pass `false` when the lookup failed.
    pub fn seen(&mut self, index: usize, seen: bool) {
        let Some(slot) = self.slots.get_mut(index) else {
            return;
        };
        if !matches!(slot, Slot::Check(_)) {
            return;
        }
        let Slot::Check(envelope) = std::mem::replace(slot, Slot::Done) else {
            return;
        };
        if seen {
            self.stats.duplicates += 1;
            self.disposals.push((index, Disposal::Duplicate(envelope)));
        } else {
            *slot = Slot::Ready(envelope);
        }
    }

    /// The store keys of the event bodies carried by reference, by message index (after the
    /// dedupe answers).
    pub fn to_load(&self) -> Vec<(usize, &str)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Slot::Ready(e) => Some((i, e.event_ref.as_deref()?)),
                _ => None,
            })
            .collect()
    }

    /// The body of message `index`'s event carried by reference: `None` when it cannot be
    /// read now (not there yet, a store error); a body that is not JSON counts as unreadable.
    pub fn loaded(&mut self, index: usize, body: Option<String>) {
        let Some(Slot::Ready(envelope)) = self.slots.get_mut(index) else {
            return;
        };
        if let Some(event) = body.and_then(|text| RawValue::from_string(text).ok()) {
            envelope.event = event;
            // The event is in hand: later hand-offs carry it by reference again
            // (`to_queue_json`), so `event_ref` stays.
            return;
        }
        let Slot::Ready(envelope) = std::mem::replace(&mut self.slots[index], Slot::Done) else {
            return;
        };
        self.stats.retried += 1;
        self.disposals.push((
            index,
            Disposal::Unavailable {
                envelope,
                delay_secs: self.policy.base_delay_secs,
            },
        ));
    }

    /// The events ready for jobs, by message index (each handed over once). Call it after
    /// feeding every [`Consume::to_check`] and [`Consume::to_load`] answer (a key not
    /// answered counts as not seen).
    pub fn take_ready(&mut self) -> Vec<(usize, EventMessage<OwnedEvent>)> {
        let mut ready = Vec::new();
        for (index, slot) in self.slots.iter_mut().enumerate() {
            if matches!(slot, Slot::Ready(_) | Slot::Check(_)) {
                if let Slot::Ready(e) | Slot::Check(e) = std::mem::replace(slot, Slot::Taken) {
                    ready.push((index, e));
                }
            }
        }
        ready
    }

    /// The messages settled outside jobs since the last call, by message index.
    pub fn take_disposals(&mut self) -> Vec<(usize, Disposal)> {
        std::mem::take(&mut self.disposals)
    }

    /// Decides a job run for `members` (the job's envelopes) with `jitter` in `[0, 1)`.
    pub fn verdict(
        &self,
        members: &[&EventMessage<OwnedEvent>],
        run: JobRun,
        jitter: f64,
    ) -> JobVerdict {
        let attempt = attempt_of(members);
        let (decision, reason, detail) = match run {
            JobRun::Deferred => (None, None, "deferred".to_owned()),
            JobRun::Sent { attempt: a, detail } => {
                (Some(self.policy.decide(attempt, a, jitter)), None, detail)
            }
            // `a` is an `Attempt::StepFailed`: never decided a delivery.
            JobRun::Failed {
                attempt: a,
                code,
                detail,
            } => (
                Some(self.policy.decide(attempt, a, jitter)),
                Some(code),
                detail,
            ),
            JobRun::Refused { reason, detail } => (
                Some(DeliveryDecision::DeadLetter(GiveUp::Unforwardable)),
                Some(reason),
                detail,
            ),
            JobRun::Done { detail } => (Some(DeliveryDecision::Deliver), None, detail),
        };
        JobVerdict {
            decision,
            reason,
            detail,
            attempt,
            jitter,
        }
    }

    /// How a job's `members` are settled, given its `verdict`, what became of its record-store
    /// writes (`recorded`; [`Recorded::Ok`] when it had none) and how many rule effects it
    /// queues once acknowledged. Counts the messages and the delivery metrics.
    pub fn settle(
        &mut self,
        members: &[&EventMessage<OwnedEvent>],
        verdict: JobVerdict,
        recorded: Recorded,
        effects: usize,
    ) -> JobSettle {
        let JobVerdict {
            decision,
            reason,
            mut detail,
            attempt,
            jitter,
        } = verdict;
        let (settle, reason) = match decision {
            None => (
                Settle::Requeue {
                    delay_secs: DEFERRED_DELAY_SECS,
                },
                reason,
            ),
            Some(decision) => {
                let settle = self.policy.settle(attempt, decision, recorded, jitter);
                if recorded == Recorded::Failed {
                    detail = RECORD_STORE_UNAVAILABLE.to_owned();
                    (settle, Some(RECORD_STORE_UNAVAILABLE.to_owned()))
                } else {
                    (settle, reason)
                }
            }
        };
        let conflict = decision.is_some() && recorded == Recorded::Conflict;
        let n = members.len();
        let class = failure_class(&detail);
        let failure = [("result", "failure"), ("class", class)];
        let stats = &mut self.stats;
        let reason = match settle {
            Settle::Ack => {
                stats.delivered += n;
                stats.rule_effects += effects;
                stats
                    .metrics
                    .add(Counter::Deliveries, &[("result", "success")], 1);
                for m in members {
                    let latency = self.now_ms.saturating_sub(m.received_at);
                    stats
                        .metrics
                        .observe(Histogram::DeliveryLatency, &[], latency);
                }
                String::new()
            }
            Settle::Requeue { .. } => {
                stats.deferred += n;
                String::new()
            }
            Settle::Retry { .. } => {
                stats.retried += n;
                stats.metrics.add(Counter::Deliveries, &failure, 1);
                stats.metrics.add(Counter::DeliveryRetries, &[], n as u64);
                String::new()
            }
            Settle::DeadLetter(give_up) => {
                stats.dead_lettered += n;
                stats.metrics.add(Counter::Deliveries, &failure, 1);
                reason.unwrap_or_else(|| give_up.code().to_owned())
            }
        };
        JobSettle {
            settle,
            attempt,
            reason,
            detail,
            conflict,
        }
    }

    /// The forwarding configuration is invalid, so nothing can be sent: every message still
    /// in hand is settled by [`DeliveryRetryPolicy::settle_config_invalid`] (this plan's
    /// policy, `jitter()` in `[0, 1)` per message): a [`Disposal::Retry`] as its next attempt,
    /// or once its attempts are spent a [`Disposal::DeadLetter`] with reason `config_invalid`
    /// and `detail` (the keys and their codes). Then [`Consume::take_disposals`].
    pub fn hold(&mut self, detail: &str, mut jitter: impl FnMut() -> f64) {
        for index in 0..self.slots.len() {
            let envelope = match std::mem::replace(&mut self.slots[index], Slot::Done) {
                Slot::Check(e) | Slot::Ready(e) => e,
                other => {
                    self.slots[index] = other;
                    continue;
                }
            };
            match self
                .policy
                .settle_config_invalid(envelope.attempt, jitter())
            {
                Settle::Retry { delay_secs } => {
                    self.stats.retried += 1;
                    let next = EventMessage {
                        attempt: envelope.attempt + 1,
                        ..envelope
                    };
                    self.disposals
                        .push((index, Disposal::Retry { next, delay_secs }));
                }
                settled => {
                    let reason = match settled {
                        Settle::DeadLetter(give_up) => give_up,
                        _ => GiveUp::ConfigInvalid,
                    };
                    self.stats.dead_lettered += 1;
                    let letter = dead_letter_of(envelope, reason.code().to_owned(), detail.into());
                    self.disposals.push((index, Disposal::DeadLetter(letter)));
                }
            }
        }
    }

    /// The batch's counts so far.
    pub fn stats(&self) -> &ConsumeStats {
        &self.stats
    }
}

impl JobSettle {
    /// The envelope a member goes back on the queue as: the next attempt for a
    /// [`Settle::Retry`], the same otherwise.
    pub fn next(&self, envelope: EventMessage<OwnedEvent>) -> EventMessage<OwnedEvent> {
        match self.settle {
            Settle::Retry { .. } => EventMessage {
                attempt: envelope.attempt + 1,
                ..envelope
            },
            _ => envelope,
        }
    }

    /// The dead letter of a member (for [`Settle::DeadLetter`]).
    pub fn letter(&self, envelope: EventMessage<OwnedEvent>) -> DeadLetterMessage<OwnedEvent> {
        dead_letter_of(envelope, self.reason.clone(), self.detail.clone())
    }
}

/// The attempt of a job: the highest of its messages'.
fn attempt_of(members: &[&EventMessage<OwnedEvent>]) -> u32 {
    members.iter().map(|e| e.attempt).max().unwrap_or(1)
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

/// The dead letter of a message that is not an event envelope: its text, as a JSON string.
fn invalid_letter(text: &str, now_ms: u64) -> DeadLetterMessage<OwnedEvent> {
    let event = serde_json::value::to_raw_value(text).unwrap_or_else(|_| RawValue::NULL.to_owned());
    DeadLetterMessage {
        v: 1,
        reason: "message_invalid".into(),
        detail: "queue message is not an event envelope".into(),
        attempts: 0,
        key: None,
        received_at: now_ms,
        request_id: String::new(),
        traceparent: None,
        event_ref: None,
        event,
    }
}

/// A delivery failure's class for metrics (a closed set, so the label stays bounded):
/// `status_503` is `http_5xx`, and so on.
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

#[cfg(test)]
mod tests;
