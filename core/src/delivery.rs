//! What to do after trying to forward an event: a pure policy, table-tested.
//!
//! 2xx: delivered. 429, 5xx (and 408), a timeout or a network error: retry with exponential
//! backoff, never sooner than the destination's `Retry-After`. A 3xx: the destination moved, and
//! the body (signed, personal data included) is never re-sent to wherever `Location` points, nor
//! turned into a bodiless GET that would count as delivered: dead-letter it with its own code so
//! an operator can fix `FORWARD_URL` and re-drive. Any other status: the destination refuses this
//! event, so retrying cannot help; dead-letter it. Retries exhausted: dead-letter.
//!
//! How many forwards one invocation runs at once ([`MAX_CONCURRENT_FORWARDS`]) and when the rest
//! of a batch goes back to the queue instead of waiting ([`BatchBudget`]) are decided here too.

/// What happened on one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The destination answered with this status; `retry_after_secs` is its parsed
    /// `Retry-After` (see [`parse_retry_after`]).
    Answered {
        /// HTTP status code.
        status: u16,
        /// `Retry-After`, in seconds from now, when sent and valid.
        retry_after_secs: Option<u64>,
    },
    /// No answer within the timeout.
    TimedOut,
    /// The connection failed (refused, reset, DNS…).
    NetworkError,
    /// A step before the forward failed (a HubSpot read or write, the record store), so
    /// nothing reached the destination: retried with the same backoff, never sooner than
    /// `retry_after_secs` (a HubSpot rate-limit wait), and never counted as a delivery.
    StepFailed {
        /// The earliest retry the failed step asked for, in seconds from now.
        retry_after_secs: Option<u64>,
    },
}

impl Attempt {
    /// The longest `Location` kept from a 3xx answer ([`Attempt::from_answer`]): a URL for the
    /// operator, bounded so that a hostile one cannot bloat the dead letter.
    pub const MAX_LOCATION_CHARS: usize = 512;

    /// A destination's answer as an attempt: its `status`, its `Retry-After` header read at
    /// `now_secs` ([`parse_retry_after`]), and for a 3xx its `Location` header (recorded, never
    /// followed; at most [`Attempt::MAX_LOCATION_CHARS`]).
    pub fn from_answer(
        status: u16,
        retry_after: Option<&str>,
        location: Option<&str>,
        now_secs: u64,
    ) -> (Self, Option<String>) {
        let location = if (300..400).contains(&status) {
            location.map(|l| l.chars().take(Self::MAX_LOCATION_CHARS).collect())
        } else {
            None
        };
        let answered = Self::Answered {
            status,
            retry_after_secs: retry_after.and_then(|v| parse_retry_after(v, now_secs)),
        };
        (answered, location)
    }

    /// The attempt as a code for logs and dead letters: `status_503`, `timeout`,
    /// `network_error` or `step_failed` (the metrics' failure class reads it).
    pub fn code(self) -> String {
        match self {
            Self::Answered { status, .. } => format!("status_{status}"),
            Self::TimedOut => "timeout".into(),
            Self::NetworkError => "network_error".into(),
            Self::StepFailed { .. } => "step_failed".into(),
        }
    }
}

/// The decision for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryDecision {
    /// Delivered: acknowledge and remember it.
    Deliver,
    /// Try again after this many seconds.
    Retry {
        /// Delay before the next attempt.
        delay_secs: u64,
    },
    /// Give up on this event and keep it in the dead-letter store.
    DeadLetter(GiveUp),
}

/// Why an event was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The destination rejected it with a status retrying cannot fix (4xx other than 408/429).
    Rejected(u16),
    /// The destination answered with a redirect (3xx). Redirects are never followed: a
    /// 301/302/303 would become a bodiless GET whose 2xx looks like a delivery, a 307/308 would
    /// re-send the signed body to wherever `Location` points.
    Redirected(u16),
    /// The last attempt failed and no attempts are left.
    RetriesExhausted,
    /// The configuration this event needs (forwarding, enrichment, the HubSpot API) stayed
    /// invalid for all its attempts: not the destination's fault. Re-drive it once fixed.
    ConfigInvalid,
    /// The event cannot be forwarded as it is (it does not parse, or a step refused it for
    /// good): no attempt can help, and the destination never saw it. The caller's own reason
    /// code, when it has one, is the dead letter's reason.
    Unforwardable,
}

impl GiveUp {
    /// Stable code: `destination_rejected`, `destination_redirected`, `retries_exhausted`,
    /// `config_invalid` or `event_unforwardable`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "destination_rejected",
            Self::Redirected(_) => "destination_redirected",
            Self::RetriesExhausted => "retries_exhausted",
            Self::ConfigInvalid => "config_invalid",
            Self::Unforwardable => "event_unforwardable",
        }
    }
}

/// Retry limits. The defaults spread 8 attempts over about 40 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryRetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    /// Delay after the first failure; doubled after each further one.
    pub base_delay_secs: u64,
    /// Upper bound of any delay, `Retry-After` included. Cloudflare Queues cap a retry delay
    /// at 12 hours.
    pub max_delay_secs: u64,
}

impl Default for DeliveryRetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay_secs: 10,
            max_delay_secs: 30 * 60,
        }
    }
}

/// Cloudflare Queues' largest retry delay (12 hours).
pub const MAX_QUEUE_DELAY_SECS: u64 = 12 * 60 * 60;

impl DeliveryRetryPolicy {
    /// Decides what follows `attempt` (1-based) that ended in `outcome`.
    ///
    /// `jitter` in `[0, 1)` comes from the caller (the core has no randomness); the backoff is
    /// scaled into `[½, 1]` of its nominal value so that events failing together do not retry
    /// together. A `Retry-After` is honoured as a floor, capped at `max_delay_secs`.
    pub fn decide(&self, attempt: u32, outcome: Attempt, jitter: f64) -> DeliveryDecision {
        let retry_after = match outcome {
            Attempt::Answered {
                status: 200..=299, ..
            } => return DeliveryDecision::Deliver,
            Attempt::Answered {
                status: 408 | 429 | 500..=599,
                retry_after_secs,
            } => retry_after_secs,
            Attempt::Answered {
                status: status @ 300..=399,
                ..
            } => return DeliveryDecision::DeadLetter(GiveUp::Redirected(status)),
            Attempt::Answered { status, .. } => {
                return DeliveryDecision::DeadLetter(GiveUp::Rejected(status))
            }
            Attempt::TimedOut | Attempt::NetworkError => None,
            Attempt::StepFailed { retry_after_secs } => retry_after_secs,
        };
        if attempt >= self.max_attempts {
            return DeliveryDecision::DeadLetter(GiveUp::RetriesExhausted);
        }
        let cap = self.max_delay_secs.min(MAX_QUEUE_DELAY_SECS);
        let jittered = backoff(self.base_delay_secs, attempt, cap, jitter);
        let delay = jittered.max(retry_after.unwrap_or(0)).min(cap).max(1);
        DeliveryDecision::Retry { delay_secs: delay }
    }
}

/// Exponential backoff with "equal jitter": `base · 2^(attempt − 1)`, capped at `cap`, then
/// scaled into `[½, 1]` of itself by `jitter` in `[0, 1)` (out-of-range jitter is clamped,
/// non-finite jitter counts as 0). Shared by the forwarding and the HubSpot API retry policies.
pub(crate) fn backoff(base: u64, attempt: u32, cap: u64, jitter: f64) -> u64 {
    let exp = attempt.saturating_sub(1).min(32);
    let nominal = base.saturating_mul(1u64 << exp).min(cap);
    // Precision loss is irrelevant at these magnitudes (delays of at most days).
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let jittered = ((nominal as f64) * (0.5 + clamp_jitter(jitter) / 2.0)).round() as u64;
    jittered
}

/// Jitter in `[0, 1]`; NaN and infinities count as 0.
pub(crate) fn clamp_jitter(jitter: f64) -> f64 {
    if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The most forwards one invocation has in flight at once.
///
/// Cloudflare lets an invocation have 6 connections waiting for response headers at once
/// (<https://developers.cloudflare.com/workers/platform/limits/#simultaneous-open-connections>);
/// a seventh `fetch` waits inside the runtime, its timeout already running. So the consumer
/// starts at most this many forwards, each one's timer started when it is sent, and runs no other
/// I/O while they are in flight.
pub const MAX_CONCURRENT_FORWARDS: usize = 6;

/// How long one queue batch may spend forwarding before the forwards not yet started go back to
/// the queue (as the same attempt, not a failure) instead of waiting.
///
/// A slow destination (one connection at a time, a second per request) takes 100 s for a batch
/// of 100; a consumer invocation may run for minutes, but holding a whole batch that long delays
/// every later event and risks the invocation being cut off with the batch half done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchBudget {
    started_ms: u64,
    budget_ms: u64,
}

/// What [`BatchBudget::admit`] says about the next forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Send it now.
    Send,
    /// The budget is spent: put it back on the queue as the same attempt, after
    /// [`DEFERRED_DELAY_SECS`].
    Defer,
}

/// The delay of a forward deferred by [`BatchBudget`]: a little, so that the next batch does
/// not start on the same slow destination at once.
pub const DEFERRED_DELAY_SECS: u64 = 1;

impl BatchBudget {
    /// A budget of `budget_ms` for a batch that started at `started_ms`.
    pub fn new(started_ms: u64, budget_ms: u64) -> Self {
        Self {
            started_ms,
            budget_ms,
        }
    }

    /// Whether a forward may start at `now_ms`. One that started inside the budget finishes
    /// (it has its own timeout); none starts after it.
    pub fn admit(&self, now_ms: u64) -> Admit {
        if now_ms.saturating_sub(self.started_ms) < self.budget_ms {
            Admit::Send
        } else {
            Admit::Defer
        }
    }
}

/// What became of the state a delivered job writes after its forward (the enriched record's
/// snapshot, committed by compare-and-set on the version the job read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Nothing to write, or written.
    Ok,
    /// Another consumer wrote the object first: the job's events must be processed again
    /// against the newer state.
    Conflict,
    /// The store could not be reached.
    Failed,
}

/// How a job's queue messages are settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Delivered and recorded: mark delivered, acknowledge.
    Ack,
    /// Back on the queue as the same attempt after this delay: not a failure (a record
    /// conflict, or the batch's budget).
    Requeue {
        /// Delay before it is taken again.
        delay_secs: u64,
    },
    /// Back on the queue as the next attempt after this delay.
    Retry {
        /// Delay before the next attempt.
        delay_secs: u64,
    },
    /// Give up: the dead-letter store.
    DeadLetter(GiveUp),
}

impl DeliveryRetryPolicy {
    /// Settles a job whose forward was decided `decision` (see [`DeliveryRetryPolicy::decide`]) and
    /// whose state write then ended `recorded`, at `attempt`.
    ///
    /// A delivered change whose record was not written is never acknowledged: with a conflict
    /// it is processed again at once (the same attempt); with a failed store it is retried like
    /// a failed forward, and since the stored version did not move, the same change goes out
    /// under the same id (the receiver dedupes on it).
    pub fn settle(
        &self,
        attempt: u32,
        decision: DeliveryDecision,
        recorded: Recorded,
        jitter: f64,
    ) -> Settle {
        match (decision, recorded) {
            (DeliveryDecision::Deliver, Recorded::Ok) => Settle::Ack,
            (DeliveryDecision::Deliver, Recorded::Conflict) => Settle::Requeue {
                delay_secs: DEFERRED_DELAY_SECS,
            },
            (DeliveryDecision::Deliver, Recorded::Failed) => {
                match self.decide(attempt, Attempt::NetworkError, jitter) {
                    DeliveryDecision::Retry { delay_secs } => Settle::Retry { delay_secs },
                    DeliveryDecision::DeadLetter(give_up) => Settle::DeadLetter(give_up),
                    DeliveryDecision::Deliver => Settle::Retry { delay_secs: 1 },
                }
            }
            (DeliveryDecision::Retry { delay_secs }, _) => Settle::Retry { delay_secs },
            (DeliveryDecision::DeadLetter(give_up), _) => Settle::DeadLetter(give_up),
        }
    }
}

impl DeliveryRetryPolicy {
    /// Settles a message at `attempt` that could not be handled because the configuration it
    /// needs is invalid (a missing `FORWARD_URL`, an invalid `ENRICHMENT_MAP`…). Nothing was
    /// sent, so it is not the destination's fault and nothing is lost: it goes back on the
    /// queue as the next attempt with this policy's backoff (bounded by `max_delay_secs` and
    /// Queues' 12 h), giving the operator the event's whole retry budget to fix the
    /// configuration, and then to the dead-letter store as [`GiveUp::ConfigInvalid`], from
    /// where it is re-driven once the configuration is fixed.
    pub fn settle_config_invalid(&self, attempt: u32, jitter: f64) -> Settle {
        match self.decide(attempt, Attempt::NetworkError, jitter) {
            DeliveryDecision::Retry { delay_secs } => Settle::Retry { delay_secs },
            DeliveryDecision::Deliver | DeliveryDecision::DeadLetter(_) => {
                Settle::DeadLetter(GiveUp::ConfigInvalid)
            }
        }
    }
}

/// Parses a `Retry-After` value: delta-seconds, or an IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`) read against `now_secs`. `None` when invalid.
pub fn parse_retry_after(value: &str, now_secs: u64) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok();
    }
    let at = parse_imf_fixdate(value)?;
    Some(at.saturating_sub(now_secs))
}

fn parse_imf_fixdate(s: &str) -> Option<u64> {
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let rest = s.split_once(", ")?.1;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: u64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let days = crate::time::days_from_civil(year, month, day)?;
    // Checked: a far-future year must be invalid, not an overflow.
    days.checked_mul(86_400)?
        .checked_add(h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn an_answer_keeps_a_redirects_location_bounded_and_reads_retry_after() {
        let long = "h".repeat(600);
        let (attempt, location) = Attempt::from_answer(302, Some("7"), Some(&long), 1_000);
        assert_eq!(
            attempt,
            Attempt::Answered {
                status: 302,
                retry_after_secs: Some(7)
            }
        );
        assert_eq!(location.map(|l| l.len()), Some(Attempt::MAX_LOCATION_CHARS));
        // Not a redirect: no location kept.
        let (attempt, location) = Attempt::from_answer(503, None, Some("https://x"), 1_000);
        assert_eq!(
            attempt,
            Attempt::Answered {
                status: 503,
                retry_after_secs: None
            }
        );
        assert_eq!(location, None);
        let (_, location) = Attempt::from_answer(301, Some("soon"), Some("https://x"), 1_000);
        assert_eq!(location.as_deref(), Some("https://x"));
    }

    fn answered(status: u16, retry_after_secs: Option<u64>) -> Attempt {
        Attempt::Answered {
            status,
            retry_after_secs,
        }
    }

    #[test]
    fn table() {
        let p = DeliveryRetryPolicy {
            max_attempts: 5,
            base_delay_secs: 10,
            max_delay_secs: 600,
        };
        let retry = |delay_secs| DeliveryDecision::Retry { delay_secs };
        let dead = DeliveryDecision::DeadLetter;
        let step = |retry_after_secs| Attempt::StepFailed { retry_after_secs };
        let cases = [
            // (attempt, outcome, jitter, decision)
            (1, answered(200, None), 0.0, DeliveryDecision::Deliver),
            (5, answered(204, None), 0.0, DeliveryDecision::Deliver),
            (1, answered(500, None), 1.0, retry(10)),
            (2, answered(503, None), 1.0, retry(20)),
            (3, Attempt::TimedOut, 1.0, retry(40)),
            (4, Attempt::NetworkError, 1.0, retry(80)),
            (1, answered(500, None), 0.0, retry(5)),
            (1, answered(408, None), 1.0, retry(10)),
            // Retry-After is a floor…
            (1, answered(429, Some(120)), 1.0, retry(120)),
            (1, answered(503, Some(3)), 1.0, retry(10)),
            // …capped at the policy's maximum.
            (1, answered(429, Some(86_400)), 1.0, retry(600)),
            // Exhausted.
            (5, answered(500, None), 0.5, dead(GiveUp::RetriesExhausted)),
            (5, Attempt::TimedOut, 0.5, dead(GiveUp::RetriesExhausted)),
            // Refusals are not retried.
            (1, answered(400, None), 0.5, dead(GiveUp::Rejected(400))),
            (1, answered(404, None), 0.5, dead(GiveUp::Rejected(404))),
            (1, answered(410, None), 0.5, dead(GiveUp::Rejected(410))),
            // Redirects are never followed, and never retried.
            (1, answered(301, None), 0.5, dead(GiveUp::Redirected(301))),
            (1, answered(302, None), 0.5, dead(GiveUp::Redirected(302))),
            (1, answered(303, None), 0.5, dead(GiveUp::Redirected(303))),
            (
                1,
                answered(307, Some(1)),
                0.5,
                dead(GiveUp::Redirected(307)),
            ),
            (1, answered(308, None), 0.5, dead(GiveUp::Redirected(308))),
            // A step before the forward failed: retried like a network error, a HubSpot wait
            // as the floor, never a delivery, exhausted like the rest.
            (1, step(None), 1.0, retry(10)),
            (2, step(Some(90)), 1.0, retry(90)),
            (1, step(Some(86_400)), 1.0, retry(600)),
            (5, step(None), 0.5, dead(GiveUp::RetriesExhausted)),
            // Bad jitter cannot produce a zero or huge delay.
            (1, answered(500, None), f64::NAN, retry(5)),
            (1, answered(500, None), 7.0, retry(10)),
        ];
        for (attempt, outcome, jitter, expected) in cases {
            assert_eq!(
                p.decide(attempt, outcome, jitter),
                expected,
                "{attempt} {outcome:?} {jitter}"
            );
        }
        let tiny = DeliveryRetryPolicy {
            max_attempts: 3,
            base_delay_secs: 0,
            max_delay_secs: 0,
        };
        assert_eq!(tiny.decide(1, Attempt::TimedOut, 0.0), retry(1));
        let huge = DeliveryRetryPolicy {
            max_attempts: 100,
            base_delay_secs: 10,
            max_delay_secs: u64::MAX,
        };
        assert_eq!(
            huge.decide(60, Attempt::TimedOut, 1.0),
            retry(MAX_QUEUE_DELAY_SECS)
        );
    }

    #[test]
    fn settle_table() {
        let p = DeliveryRetryPolicy {
            max_attempts: 3,
            base_delay_secs: 10,
            max_delay_secs: 600,
        };
        let retry = |delay_secs| DeliveryDecision::Retry { delay_secs };
        let cases = [
            (1, DeliveryDecision::Deliver, Recorded::Ok, Settle::Ack),
            // Another consumer won the object: again, same attempt, no failure counted.
            (
                1,
                DeliveryDecision::Deliver,
                Recorded::Conflict,
                Settle::Requeue {
                    delay_secs: DEFERRED_DELAY_SECS,
                },
            ),
            (
                3,
                DeliveryDecision::Deliver,
                Recorded::Conflict,
                Settle::Requeue {
                    delay_secs: DEFERRED_DELAY_SECS,
                },
            ),
            // Delivered, not recorded: never acknowledged.
            (
                1,
                DeliveryDecision::Deliver,
                Recorded::Failed,
                Settle::Retry { delay_secs: 10 },
            ),
            (
                3,
                DeliveryDecision::Deliver,
                Recorded::Failed,
                Settle::DeadLetter(GiveUp::RetriesExhausted),
            ),
            (2, retry(7), Recorded::Ok, Settle::Retry { delay_secs: 7 }),
            (
                1,
                DeliveryDecision::DeadLetter(GiveUp::Redirected(302)),
                Recorded::Ok,
                Settle::DeadLetter(GiveUp::Redirected(302)),
            ),
        ];
        for (attempt, decision, recorded, expected) in cases {
            assert_eq!(
                p.settle(attempt, decision, recorded, 1.0),
                expected,
                "{attempt} {decision:?} {recorded:?}"
            );
        }
    }

    #[test]
    fn config_invalid_retried_with_backoff_then_dead_lettered() {
        let p = DeliveryRetryPolicy {
            max_attempts: 3,
            base_delay_secs: 10,
            max_delay_secs: 25,
        };
        let cases = [
            (1, 1.0, Settle::Retry { delay_secs: 10 }),
            (1, 0.0, Settle::Retry { delay_secs: 5 }),
            (2, 1.0, Settle::Retry { delay_secs: 20 }),
            (3, 1.0, Settle::DeadLetter(GiveUp::ConfigInvalid)),
            // An attempt count beyond the policy (the policy was lowered meanwhile).
            (9, 1.0, Settle::DeadLetter(GiveUp::ConfigInvalid)),
        ];
        for (attempt, jitter, expected) in cases {
            assert_eq!(
                p.settle_config_invalid(attempt, jitter),
                expected,
                "{attempt} {jitter}"
            );
        }
        let long = DeliveryRetryPolicy {
            max_attempts: 10,
            base_delay_secs: 10,
            max_delay_secs: 25,
        };
        assert_eq!(
            long.settle_config_invalid(5, 1.0),
            Settle::Retry { delay_secs: 25 }
        );
        let once = DeliveryRetryPolicy {
            max_attempts: 1,
            ..DeliveryRetryPolicy::default()
        };
        assert_eq!(
            once.settle_config_invalid(1, 0.5),
            Settle::DeadLetter(GiveUp::ConfigInvalid)
        );
        assert_eq!(GiveUp::ConfigInvalid.code(), "config_invalid");
    }

    #[test]
    fn budget_admits_until_spent() {
        let b = BatchBudget::new(1_000, 30_000);
        assert_eq!(b.admit(1_000), Admit::Send);
        assert_eq!(b.admit(30_999), Admit::Send);
        assert_eq!(b.admit(31_000), Admit::Defer);
        assert_eq!(b.admit(90_000), Admit::Defer);
        // A clock that goes back never defers.
        assert_eq!(b.admit(0), Admit::Send);
        assert_eq!(BatchBudget::new(5, 0).admit(5), Admit::Defer);
    }

    #[test]
    fn retry_after_forms() {
        let now = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("120", now), Some(120));
        assert_eq!(parse_retry_after(" 0 ", now), Some(0));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(0)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:51:37 GMT", now),
            Some(120)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(0)
        );
        for bad in [
            "",
            "-5",
            "1.5",
            "soon",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 PST",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }
}
