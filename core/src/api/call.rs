//! One API call from first attempt to end, as poll-style steps: the retry policy
//! ([`decide`]), the refresh-once rule on 401, and the cap on how long a caller waits inside
//! one call. The caller sends, feeds each attempt's [`Outcome`] to [`Call::answered`] and does
//! what the returned [`CallStep`] says; it passes `now` and the jitter (the core has no clock
//! or randomness).
//!
//! ```
//! use hubspot_edge_core::api::{Call, CallStep, Outcome, RequestKind};
//! let mut call = Call::new(RequestKind::Read, true, 15_000);
//! // The first attempt timed out: wait, then send again.
//! let step = call.answered(&Outcome::Timeout, 1_700_000_000_000, 0.5);
//! assert!(matches!(step, CallStep::Wait { .. }));
//! assert_eq!(call.answered(&Outcome::Success, 1_700_000_001_000, 0.5), CallStep::Accepted);
//! ```

use super::{decide, CallDecision, GiveUpReason, Outcome, RequestKind};

/// What the caller does next; see [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum CallStep {
    /// Done: the last answer is the result.
    Accepted,
    /// Wait `ms`, then send the same request again (the next attempt).
    Wait {
        /// How long, from the `now` that was passed.
        ms: u64,
    },
    /// HubSpot refused the access token (401) and the token can be refreshed: get a newer one
    /// from its holder (core's [`super::TokenCache`] decides whether that means a refresh), then
    /// tell [`Call::token_refreshed`] whether there is one.
    RefreshToken,
    /// The call failed for good.
    Failed(CallFailure),
}

/// Why a call ended without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    /// The retry policy gave up after `attempts` attempts.
    GaveUp {
        /// Why.
        reason: GiveUpReason,
        /// Attempts made, the last included.
        attempts: u32,
        /// A second 401 on a token obtained after a refusal: the token's holder records it
        /// (no refresh before it expires) and logs it once.
        report_refused: bool,
    },
    /// The next attempt would have to wait `wait_ms`, more than the call may wait
    /// ([`Call::new`]'s `max_wait_ms`): the caller retries the whole call later (a queue
    /// retry) instead of holding its invocation.
    Throttled {
        /// The wait the policy asked for.
        wait_ms: u64,
    },
}

/// A call in progress: how many attempts it made and what it may do next.
#[derive(Debug, Clone)]
pub struct Call {
    kind: RequestKind,
    refreshable: bool,
    max_wait_ms: u64,
    attempt: u32,
}

impl Call {
    /// The longest a host waits within one call, for the rate governor or before a retry (its
    /// usual `max_wait_ms`): 15 s, a small share of a Worker invocation's wall time, so that a
    /// longer wait becomes [`CallFailure::Throttled`] and the caller retries later (a queue
    /// retry) instead of holding its invocation.
    pub const MAX_WAIT_MS: u64 = 15_000;

    /// A call of `kind`. `refreshable`: its token can be refreshed (OAuth; a private app's token
    /// cannot, so a 401 ends the call). `max_wait_ms`: the longest it waits between attempts
    /// (a Worker invocation's wall time is the limit behind it).
    pub fn new(kind: RequestKind, refreshable: bool, max_wait_ms: u64) -> Self {
        Self {
            kind,
            refreshable,
            max_wait_ms,
            attempt: 1,
        }
    }

    /// The attempt being made (1-based).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The current attempt ended with `outcome` at `now_ms`; `jitter` in `[0, 1)`.
    pub fn answered(&mut self, outcome: &Outcome, now_ms: u64, jitter: f64) -> CallStep {
        let step = self.step(decide(self.kind, self.attempt, outcome, now_ms, jitter));
        if !matches!(step, CallStep::Accepted | CallStep::Failed(_)) {
            self.attempt += 1;
        }
        step
    }

    /// What the policy's decision means for this call.
    fn step(&self, decision: CallDecision) -> CallStep {
        let gave_up = |reason, report_refused| {
            CallStep::Failed(CallFailure::GaveUp {
                reason,
                attempts: self.attempt,
                report_refused,
            })
        };
        match decision {
            CallDecision::Accept => CallStep::Accepted,
            CallDecision::Retry { after_ms, .. } if after_ms > self.max_wait_ms => {
                CallStep::Failed(CallFailure::Throttled { wait_ms: after_ms })
            }
            CallDecision::Retry { after_ms, .. } => CallStep::Wait { ms: after_ms },
            CallDecision::RefreshToken if self.refreshable => CallStep::RefreshToken,
            // A private-app token cannot be refreshed: a second 401 would say the same.
            CallDecision::RefreshToken => gave_up(GiveUpReason::Unauthorized, false),
            // A 401 after the refresh: the token's holder records it.
            CallDecision::GiveUp {
                reason: GiveUpReason::Unauthorized,
            } => gave_up(GiveUpReason::Unauthorized, self.refreshable),
            CallDecision::GiveUp { reason } => gave_up(reason, false),
        }
    }

    /// After [`CallStep::RefreshToken`]: `newer` is whether the holder gave a newer token (send
    /// again with it at once) or none (the token is known to be refused: the call is
    /// unauthorized).
    pub fn token_refreshed(&mut self, newer: bool) -> CallStep {
        if newer {
            CallStep::Wait { ms: 0 }
        } else {
            CallStep::Failed(CallFailure::GaveUp {
                reason: GiveUpReason::Unauthorized,
                attempts: self.attempt.saturating_sub(1).max(1),
                report_refused: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::api::{ApiError, ErrorBody};

    const NOW: u64 = 1_700_000_000_000;

    fn unauthorized() -> Outcome {
        Outcome::Failed(ApiError::Unauthorized {
            body: Box::<ErrorBody>::default(),
        })
    }

    fn server(status: u16) -> Outcome {
        Outcome::Failed(ApiError::Server {
            status,
            body: Box::<ErrorBody>::default(),
        })
    }

    #[test]
    fn retries_until_accepted_counting_attempts() {
        let mut c = Call::new(RequestKind::Read, true, 15_000);
        assert!(matches!(c.answered(&server(503), NOW, 0.0), CallStep::Wait { ms } if ms > 0));
        assert_eq!(c.attempt(), 2);
        assert!(matches!(
            c.answered(&Outcome::Network, NOW, 0.0),
            CallStep::Wait { .. }
        ));
        assert_eq!(c.answered(&Outcome::Success, NOW, 0.0), CallStep::Accepted);
        assert_eq!(c.attempt(), 3);
    }

    #[test]
    fn a_wait_beyond_the_cap_ends_the_call_throttled() {
        let mut c = Call::new(RequestKind::Read, true, 1);
        assert!(matches!(
            c.answered(&server(503), NOW, 0.9),
            CallStep::Failed(CallFailure::Throttled { wait_ms }) if wait_ms > 1
        ));
    }

    #[test]
    fn oauth_401_refreshes_once_then_reports_the_refusal() {
        let mut c = Call::new(RequestKind::Read, true, 15_000);
        assert_eq!(
            c.answered(&unauthorized(), NOW, 0.0),
            CallStep::RefreshToken
        );
        assert_eq!(c.token_refreshed(true), CallStep::Wait { ms: 0 });
        assert_eq!(
            c.answered(&unauthorized(), NOW, 0.0),
            CallStep::Failed(CallFailure::GaveUp {
                reason: GiveUpReason::Unauthorized,
                attempts: 2,
                report_refused: true,
            })
        );
    }

    #[test]
    fn oauth_401_without_a_newer_token_is_unauthorized() {
        let mut c = Call::new(RequestKind::Write, true, 15_000);
        assert_eq!(
            c.answered(&unauthorized(), NOW, 0.0),
            CallStep::RefreshToken
        );
        assert_eq!(
            c.token_refreshed(false),
            CallStep::Failed(CallFailure::GaveUp {
                reason: GiveUpReason::Unauthorized,
                attempts: 1,
                report_refused: false,
            })
        );
    }

    #[test]
    fn a_private_app_401_is_final_and_not_reported() {
        let mut c = Call::new(RequestKind::Read, false, 15_000);
        assert_eq!(
            c.answered(&unauthorized(), NOW, 0.0),
            CallStep::Failed(CallFailure::GaveUp {
                reason: GiveUpReason::Unauthorized,
                attempts: 1,
                report_refused: false,
            })
        );
    }

    #[test]
    fn a_refusal_is_final() {
        let mut c = Call::new(RequestKind::Write, true, 15_000);
        let outcome = Outcome::Failed(ApiError::NotFound {
            body: Box::<ErrorBody>::default(),
        });
        assert_eq!(
            c.answered(&outcome, NOW, 0.0),
            CallStep::Failed(CallFailure::GaveUp {
                reason: GiveUpReason::NotFound,
                attempts: 1,
                report_refused: false,
            })
        );
    }
}
