//! What to do after trying to forward an event: a pure policy, table-tested.
//!
//! 2xx: delivered. 429, 5xx (and 408), a timeout or a network error: retry with exponential
//! backoff, never sooner than the destination's `Retry-After`. Any other status: the destination
//! refuses this event, so retrying cannot help; dead-letter it. Retries exhausted: dead-letter.

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
}

/// The decision for one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
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
    /// The last attempt failed and no attempts are left.
    RetriesExhausted,
}

impl GiveUp {
    /// Stable code: `destination_rejected` or `retries_exhausted`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Rejected(_) => "destination_rejected",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }
}

/// Retry limits. The defaults spread 8 attempts over about 40 minutes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    /// Delay after the first failure; doubled after each further one.
    pub base_delay_secs: u64,
    /// Upper bound of any delay, `Retry-After` included. Cloudflare Queues cap a retry delay
    /// at 12 hours.
    pub max_delay_secs: u64,
}

impl Default for RetryPolicy {
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

impl RetryPolicy {
    /// Decides what follows `attempt` (1-based) that ended in `outcome`.
    ///
    /// `jitter` in `[0, 1)` comes from the caller (the core has no randomness); the backoff is
    /// scaled into `[½, 1]` of its nominal value so that events failing together do not retry
    /// together. A `Retry-After` is honoured as a floor, capped at `max_delay_secs`.
    pub fn decide(&self, attempt: u32, outcome: Attempt, jitter: f64) -> Decision {
        let retry_after = match outcome {
            Attempt::Answered {
                status: 200..=299, ..
            } => return Decision::Deliver,
            Attempt::Answered {
                status: 408 | 429 | 500..=599,
                retry_after_secs,
            } => retry_after_secs,
            Attempt::Answered { status, .. } => {
                return Decision::DeadLetter(GiveUp::Rejected(status))
            }
            Attempt::TimedOut | Attempt::NetworkError => None,
        };
        if attempt >= self.max_attempts {
            return Decision::DeadLetter(GiveUp::RetriesExhausted);
        }
        let cap = self.max_delay_secs.min(MAX_QUEUE_DELAY_SECS);
        let jittered = backoff(self.base_delay_secs, attempt, cap, jitter);
        let delay = jittered.max(retry_after.unwrap_or(0)).min(cap).max(1);
        Decision::Retry { delay_secs: delay }
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
    Some(days * 86_400 + h * 3600 + m * 60 + sec)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn answered(status: u16, retry_after_secs: Option<u64>) -> Attempt {
        Attempt::Answered {
            status,
            retry_after_secs,
        }
    }

    #[test]
    fn table() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay_secs: 10,
            max_delay_secs: 600,
        };
        let retry = |delay_secs| Decision::Retry { delay_secs };
        let dead = Decision::DeadLetter;
        let cases = [
            // (attempt, outcome, jitter, decision)
            (1, answered(200, None), 0.0, Decision::Deliver),
            (5, answered(204, None), 0.0, Decision::Deliver),
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
            (1, answered(301, None), 0.5, dead(GiveUp::Rejected(301))),
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
        let tiny = RetryPolicy {
            max_attempts: 3,
            base_delay_secs: 0,
            max_delay_secs: 0,
        };
        assert_eq!(tiny.decide(1, Attempt::TimedOut, 0.0), retry(1));
        let huge = RetryPolicy {
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
