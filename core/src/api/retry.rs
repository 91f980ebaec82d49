//! The API retry policy: a pure function of what happened, table-tested (docs/hubspot.md §4.5,
//! §5.4).
//!
//! | outcome | decision |
//! |---|---|
//! | 2xx | [`CallDecision::Accept`] |
//! | timeout, network error, 5xx (but 501, 505, 522, 525, 526) | exponential backoff with jitter |
//! | the same, for [`RequestKind::Create`] (timeouts, 504, 524) | give up: `not_idempotent` |
//! | 423 Locked | after `max(2 s, Retry-After)` |
//! | 429 `TEN_SECONDLY_ROLLING` | after `Retry-After`, else the interval header, else 10 s |
//! | 429 secondly (search) | after `Retry-After`, else 1 s |
//! | 429 unknown policy | as secondly for [`RequestKind::Search`], else as ten-secondly |
//! | 429 `DAILY` | give up: `daily_limit` |
//! | 477 | after `Retry-After`; give up (`migration_in_progress`) without one |
//! | 401 | [`CallDecision::RefreshToken`] on attempt 1 of a non-OAuth request, then give up |
//! | 400, 403, 404, 409, other statuses, undecodable 2xx | give up |
//!
//! Rate-limit and lock waits are stretched by up to 10 % (`jitter`) so that requests limited
//! together do not come back together; backoffs are scaled into `[½, 1]` of their nominal value,
//! as in [`crate::delivery`].
//!
//! Choices:
//! - **`DAILY` is never retried.** It resets "at midnight based on your time zone setting"
//!   (docs/hubspot.md §5.1): the account's time zone is not known here, so the reset time cannot be
//!   computed. Pausing until the reset is the rate governor's job ([`crate::ratelimit`]).
//! - **Creates are not retried when the request may have run** (timeout, network error,
//!   504/524): a second `POST` would create a duplicate. Updates, upserts, archives and
//!   associations ([`RequestKind::Write`]) set a state and are safe to repeat.
//! - **401 → refresh once.** HubSpot warns that a 401 is "not a valid indicator that a new
//!   access token must be retrieved" (docs/hubspot.md §6): callers should refresh on `expires_in`;
//!   the single [`CallDecision::RefreshToken`] covers a token revoked or expired early. Callers
//!   with a static private-app token treat it as giving up.
//! - **Once per token, not once per call.** Whoever holds the shared OAuth token (the Worker's
//!   gate) asks [`TokenState::on_refused`] before refreshing: a token that was itself obtained
//!   because its predecessor was refused, and is refused too, is an authorization problem
//!   (revoked install, missing scope) that a refresh will not fix. It is reported once
//!   ([`OnRefused::Unauthorized`]`{ first: true }`) and not refreshed again before it expires,
//!   however many calls it fails.

use super::response::{ApiError, RateLimitPolicy};

/// What kind of request was attempted; decides what is safe to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// Reads: single, batch, list, association reads.
    Read,
    /// Idempotent writes: update, upsert, archive, associate.
    Write,
    /// Non-idempotent writes: create, batch create.
    Create,
    /// CRM search (its own per-second limit).
    Search,
    /// OAuth token exchange or refresh.
    OAuth,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A 2xx response that was interpreted successfully.
    Success,
    /// HubSpot answered with an error (from [`interpret`](super::interpret)).
    Failed(ApiError),
    /// No answer within the timeout: the request may have run.
    Timeout,
    /// The connection failed; whether the request was sent is unknown.
    Network,
}

impl Outcome {
    /// The outcome as a short label for logs and answers: `ok`, an [`ApiError::code`],
    /// `timeout` or `network_error`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Success => "ok",
            Self::Failed(e) => e.code(),
            Self::Timeout => "timeout",
            Self::Network => "network_error",
        }
    }
}

/// What to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallDecision {
    /// Done: use the result.
    Accept,
    /// Send the same request again later.
    Retry {
        /// Delay from `now`.
        after_ms: u64,
        /// `now_ms + after_ms`.
        at_ms: u64,
    },
    /// Refresh the OAuth access token, then send the request again.
    RefreshToken,
    /// Stop; the request failed.
    GiveUp {
        /// Why.
        reason: GiveUpReason,
    },
}

/// Why a request was given up on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// 401 again, or on an OAuth request.
    Unauthorized,
    /// 403.
    Forbidden,
    /// 404.
    NotFound,
    /// 409.
    Conflict,
    /// 400.
    Validation,
    /// 429 `DAILY`.
    DailyLimit,
    /// 477 without `Retry-After`.
    MigrationInProgress,
    /// A create that may have run (timeout, network error, 504, 524).
    NotIdempotent,
    /// A status retrying cannot fix (other 4xx, 501, 505, 522, 525, 526).
    Rejected,
    /// A 2xx body of an unexpected shape.
    Decode,
    /// The last retryable failure, with no attempts left.
    RetriesExhausted,
}

impl GiveUpReason {
    /// Stable code, usable as a metric label.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::Conflict => "conflict",
            Self::Validation => "validation",
            Self::DailyLimit => "daily_limit",
            Self::MigrationInProgress => "migration_in_progress",
            Self::NotIdempotent => "not_idempotent",
            Self::Rejected => "rejected",
            Self::Decode => "decode",
            Self::RetriesExhausted => "retries_exhausted",
        }
    }

    /// How a call that gave up for this reason, its `last` attempt ending so, is answered to
    /// the host's caller (the admin API): HTTP status, stable error code and message. A
    /// validation error's message is the default, for when HubSpot's body carries none.
    pub fn answer(self, last: &Outcome) -> (u16, &'static str, &'static str) {
        match (self, last) {
            (Self::Unauthorized, _) => (
                502,
                "hubspot_unauthorized",
                "HubSpot rejected the access token (HUBSPOT_ACCESS_TOKEN or the OAuth token)",
            ),
            (Self::Forbidden, _) => (
                502,
                "hubspot_forbidden",
                "the access token lacks a scope for this call",
            ),
            (Self::NotFound, _) => (404, "not_found", "no such HubSpot record"),
            (Self::Conflict, _) => (409, "conflict", "the record exists"),
            (Self::Validation, _) => (400, "validation", "HubSpot rejected the request"),
            (Self::DailyLimit, _) => (503, "daily_limit", "HubSpot's daily API limit is reached"),
            (Self::MigrationInProgress, _) => (
                503,
                "migration_in_progress",
                "the HubSpot account is being migrated",
            ),
            (Self::NotIdempotent, _) => (
                504,
                "not_idempotent",
                "the create may or may not have happened; check before retrying",
            ),
            (Self::RetriesExhausted, Outcome::Failed(ApiError::RateLimited { .. })) => {
                (503, "rate_limited", "HubSpot kept rate limiting")
            }
            (Self::RetriesExhausted, Outcome::Failed(ApiError::Locked { .. })) => {
                (503, "locked", "the record stayed locked")
            }
            (Self::RetriesExhausted, Outcome::Timeout) => {
                (504, "timeout", "HubSpot did not answer in time")
            }
            (Self::RetriesExhausted, _) => (502, "hubspot_unavailable", "HubSpot kept failing"),
            (Self::Decode, _) => (502, "decode", "unexpected HubSpot response body"),
            (Self::Rejected, _) => (502, "hubspot_rejected", "HubSpot refused the request"),
        }
    }
}

/// Retry limits. Defaults: 5 attempts; backoff 500 ms doubling to at most 30 s (the Node SDK
/// waits 200 ms × n on 5xx, docs/hubspot.md §5.4; a little longer spares a struggling HubSpot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included.
    pub max_attempts: u32,
    /// Backoff after the first failure; doubled after each further one.
    pub base_backoff_ms: u64,
    /// Largest backoff (does not cap rate-limit, lock or `Retry-After` waits).
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            base_backoff_ms: 500,
            max_backoff_ms: 30_000,
        }
    }
}

/// The lock wait HubSpot asks for (docs/hubspot.md §4.5: "at least 2 seconds").
const LOCK_WAIT_MS: u64 = 2_000;
/// The burst window when no header says otherwise (docs/hubspot.md §5.2).
const TEN_SECONDLY_WAIT_MS: u64 = 10_000;
/// The search window (docs/hubspot.md §4.4).
const SECONDLY_WAIT_MS: u64 = 1_000;

/// [`RetryPolicy::decide`] with the default policy.
pub fn decide(
    kind: RequestKind,
    attempt: u32,
    outcome: &Outcome,
    now_ms: u64,
    jitter: f64,
) -> CallDecision {
    RetryPolicy::default().decide(kind, attempt, outcome, now_ms, jitter)
}

enum Wait {
    Backoff,
    AtLeast(u64),
}

impl RetryPolicy {
    /// Decides what follows `attempt` (1-based) of a `kind` request that ended in `outcome`.
    /// `jitter` in `[0, 1)` comes from the caller; out-of-range values are clamped, NaN is 0.
    pub fn decide(
        &self,
        kind: RequestKind,
        attempt: u32,
        outcome: &Outcome,
        now_ms: u64,
        jitter: f64,
    ) -> CallDecision {
        let give_up = |reason| CallDecision::GiveUp { reason };
        let may_have_run = || {
            if kind == RequestKind::Create {
                Err(give_up(GiveUpReason::NotIdempotent))
            } else {
                Ok(Wait::Backoff)
            }
        };
        let wait = match outcome {
            Outcome::Success => return CallDecision::Accept,
            Outcome::Timeout | Outcome::Network => may_have_run(),
            Outcome::Failed(err) => match err {
                ApiError::Unauthorized { .. } if attempt == 1 && kind != RequestKind::OAuth => {
                    Err(CallDecision::RefreshToken)
                }
                ApiError::Unauthorized { .. } => Err(give_up(GiveUpReason::Unauthorized)),
                ApiError::Forbidden { .. } => Err(give_up(GiveUpReason::Forbidden)),
                ApiError::NotFound { .. } => Err(give_up(GiveUpReason::NotFound)),
                ApiError::Conflict { .. } => Err(give_up(GiveUpReason::Conflict)),
                ApiError::Validation { .. } => Err(give_up(GiveUpReason::Validation)),
                ApiError::Other { .. } => Err(give_up(GiveUpReason::Rejected)),
                ApiError::Decode { .. } => Err(give_up(GiveUpReason::Decode)),
                ApiError::Server {
                    status: 501 | 505 | 522 | 525 | 526,
                    ..
                } => Err(give_up(GiveUpReason::Rejected)),
                ApiError::Server {
                    status: 504 | 524, ..
                } => may_have_run(),
                ApiError::Server { .. } => Ok(Wait::Backoff),
                ApiError::Locked { retry_after, .. } => Ok(Wait::AtLeast(
                    retry_after
                        .map_or(0, |r| r.delay_ms(now_ms))
                        .max(LOCK_WAIT_MS),
                )),
                ApiError::MigrationInProgress { retry_after, .. } => match retry_after {
                    Some(r) => Ok(Wait::AtLeast(r.delay_ms(now_ms))),
                    None => Err(give_up(GiveUpReason::MigrationInProgress)),
                },
                ApiError::RateLimited {
                    policy,
                    retry_after,
                    interval_ms,
                    ..
                } => {
                    let secondly = match policy {
                        RateLimitPolicy::Daily => return give_up(GiveUpReason::DailyLimit),
                        RateLimitPolicy::Secondly => true,
                        RateLimitPolicy::TenSecondlyRolling => false,
                        RateLimitPolicy::Unknown(_) => kind == RequestKind::Search,
                    };
                    let default = if secondly {
                        SECONDLY_WAIT_MS
                    } else {
                        interval_ms.unwrap_or(TEN_SECONDLY_WAIT_MS)
                    };
                    Ok(Wait::AtLeast(
                        retry_after.map_or(default, |r| r.delay_ms(now_ms)),
                    ))
                }
            },
        };
        let wait = match wait {
            Ok(wait) => wait,
            Err(decision) => return decision,
        };
        if attempt >= self.max_attempts {
            return give_up(GiveUpReason::RetriesExhausted);
        }
        let jitter = crate::delivery::clamp_jitter(jitter);
        // Precision loss is irrelevant at these magnitudes (milliseconds, at most days).
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss
        )]
        let after_ms = match wait {
            Wait::Backoff => {
                crate::delivery::backoff(self.base_backoff_ms, attempt, self.max_backoff_ms, jitter)
            }
            Wait::AtLeast(ms) => ms.saturating_add(((ms as f64) * jitter / 10.0).round() as u64),
        };
        CallDecision::Retry {
            after_ms,
            at_ms: now_ms.saturating_add(after_ms),
        }
    }
}

/// How the current OAuth access token was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenOrigin {
    /// The first token, or a refresh before expiry (`expires_in` minus the margin).
    Scheduled,
    /// A refresh because HubSpot answered 401 to the previous token.
    AfterRefusal,
}

/// What to do when HubSpot answers 401 to an OAuth access token; see [`TokenState::on_refused`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum OnRefused {
    /// A newer token than the refused one is already there: send with it.
    UseCurrent,
    /// Refresh, and record the new token with this origin.
    Refresh(TokenOrigin),
    /// The token obtained after a refusal is refused too: an authorization error, not a reason
    /// to refresh again. `first`: the first report of this token's refusal (log it then only).
    Unauthorized {
        /// This is the first report for this token.
        first: bool,
    },
}

/// The shared OAuth access token as its holder sees it: the token, its expiry, how it was
/// obtained and whether HubSpot has refused it. Pure: the caller passes `now`. `Debug`
/// redacts the token.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenState {
    token: String,
    expires_at_ms: u64,
    origin: TokenOrigin,
    refused: bool,
}

impl std::fmt::Debug for TokenState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenState")
            .field("token", &"[redacted]")
            .field("expires_at_ms", &self.expires_at_ms)
            .field("origin", &self.origin)
            .field("refused", &self.refused)
            .finish()
    }
}

impl TokenState {
    /// A token just obtained (or restored from storage with its flags).
    pub fn new(token: String, expires_at_ms: u64, origin: TokenOrigin) -> Self {
        Self {
            token,
            expires_at_ms,
            origin,
            refused: false,
        }
    }

    /// The same, remembering that HubSpot refused it (restored from storage).
    pub fn with_refused(mut self, refused: bool) -> Self {
        self.refused = refused;
        self
    }

    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// When the token expires (ms since the epoch).
    pub fn expires_at_ms(&self) -> u64 {
        self.expires_at_ms
    }

    /// How it was obtained.
    pub fn origin(&self) -> TokenOrigin {
        self.origin
    }

    /// Whether HubSpot has refused it after a refresh for a refusal (it is still handed out:
    /// HubSpot decides each call, and a refusal that ends needs no refresh).
    pub fn is_refused(&self) -> bool {
        self.refused
    }

    /// Whether to keep sending it at `now_ms`: not within `margin_ms` of its expiry. A refused
    /// token stays usable until then; only a refresh on schedule replaces it.
    pub fn is_usable(&self, margin_ms: u64, now_ms: u64) -> bool {
        self.expires_at_ms.saturating_sub(margin_ms) > now_ms
    }

    /// HubSpot answered 401 to `refused` at `now_ms`. Decides between using a newer token,
    /// refreshing (once per token), and reporting an authorization error; records the refusal.
    ///
    /// - `refused` is not the current token: [`OnRefused::UseCurrent`].
    /// - the current token has expired (the 401 is explained): refresh on schedule.
    /// - the current token was obtained on schedule: refresh once, the new token marked
    ///   [`TokenOrigin::AfterRefusal`].
    /// - the current token was obtained after a refusal: [`OnRefused::Unauthorized`], `first`
    ///   only the first time.
    pub fn on_refused(&mut self, refused: &str, now_ms: u64) -> OnRefused {
        if refused != self.token {
            return OnRefused::UseCurrent;
        }
        if self.expires_at_ms <= now_ms {
            return OnRefused::Refresh(TokenOrigin::Scheduled);
        }
        match self.origin {
            TokenOrigin::Scheduled => OnRefused::Refresh(TokenOrigin::AfterRefusal),
            TokenOrigin::AfterRefusal => {
                let first = !self.refused;
                self.refused = true;
                OnRefused::Unauthorized { first }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::api::{ErrorBody, RetryAfter};

    use RequestKind::{Create, OAuth, Read, Search, Write};

    const NOW: u64 = 1_700_000_000_000;

    fn failed(e: ApiError) -> Outcome {
        Outcome::Failed(e)
    }
    fn body() -> Box<ErrorBody> {
        Box::default()
    }
    fn server(status: u16) -> Outcome {
        failed(ApiError::Server {
            status,
            body: body(),
        })
    }
    fn limited(
        policy: RateLimitPolicy,
        retry_after: Option<RetryAfter>,
        interval_ms: Option<u64>,
    ) -> Outcome {
        failed(ApiError::RateLimited {
            policy,
            retry_after,
            interval_ms,
            body: body(),
        })
    }
    fn retry(after_ms: u64) -> CallDecision {
        CallDecision::Retry {
            after_ms,
            at_ms: NOW + after_ms,
        }
    }
    fn give_up(reason: GiveUpReason) -> CallDecision {
        CallDecision::GiveUp { reason }
    }

    #[test]
    fn table() {
        use GiveUpReason as G;
        use RateLimitPolicy as P;
        let unauthorized = failed(ApiError::Unauthorized { body: body() });
        let ten = limited(P::TenSecondlyRolling, None, None);
        let cases: Vec<(RequestKind, u32, Outcome, f64, CallDecision)> = vec![
            // Success.
            (Read, 1, Outcome::Success, 0.0, CallDecision::Accept),
            (Create, 5, Outcome::Success, 0.5, CallDecision::Accept),
            // 5xx and timeouts: backoff 500 ms × 2^(n-1) scaled into [½, 1].
            (Read, 1, server(500), 0.0, retry(250)),
            (Read, 1, server(503), 0.999_999, retry(500)),
            (Read, 2, server(502), 0.0, retry(500)),
            (Write, 3, Outcome::Timeout, 0.0, retry(1_000)),
            (Search, 4, Outcome::Network, 1.0, retry(4_000)),
            (OAuth, 1, server(521), 0.5, retry(375)),
            (Read, 5, server(500), 0.0, give_up(G::RetriesExhausted)),
            (Read, 9, Outcome::Timeout, 0.0, give_up(G::RetriesExhausted)),
            (Read, 1, server(501), 0.0, give_up(G::Rejected)),
            (Read, 1, server(505), 0.0, give_up(G::Rejected)),
            (Read, 1, server(522), 0.0, give_up(G::Rejected)),
            (Read, 1, server(525), 0.0, give_up(G::Rejected)),
            (Read, 1, server(526), 0.0, give_up(G::Rejected)),
            (Read, 1, server(504), 0.0, retry(250)),
            (Read, 1, server(524), 0.0, retry(250)),
            // Creates are not repeated when they may have run.
            (Create, 1, Outcome::Timeout, 0.0, give_up(G::NotIdempotent)),
            (Create, 1, Outcome::Network, 0.0, give_up(G::NotIdempotent)),
            (Create, 1, server(504), 0.0, give_up(G::NotIdempotent)),
            (Create, 1, server(524), 0.0, give_up(G::NotIdempotent)),
            (Create, 1, server(500), 0.0, retry(250)),
            // 423: at least 2 s, stretched by up to 10 %.
            (
                Write,
                1,
                failed(ApiError::Locked {
                    retry_after: None,
                    body: body(),
                }),
                0.0,
                retry(2_000),
            ),
            (
                Write,
                1,
                failed(ApiError::Locked {
                    retry_after: None,
                    body: body(),
                }),
                0.5,
                retry(2_100),
            ),
            (
                Write,
                1,
                failed(ApiError::Locked {
                    retry_after: Some(RetryAfter::Seconds(1)),
                    body: body(),
                }),
                0.0,
                retry(2_000),
            ),
            (
                Write,
                1,
                failed(ApiError::Locked {
                    retry_after: Some(RetryAfter::Seconds(5)),
                    body: body(),
                }),
                0.0,
                retry(5_000),
            ),
            (
                Write,
                5,
                failed(ApiError::Locked {
                    retry_after: None,
                    body: body(),
                }),
                0.0,
                give_up(G::RetriesExhausted),
            ),
            // 429 TEN_SECONDLY_ROLLING: Retry-After, else the interval header, else 10 s.
            (Read, 1, ten.clone(), 0.0, retry(10_000)),
            (Read, 1, ten.clone(), 0.5, retry(10_500)),
            (
                Write,
                2,
                limited(P::TenSecondlyRolling, None, Some(1_000)),
                0.0,
                retry(1_000),
            ),
            (
                Write,
                2,
                limited(
                    P::TenSecondlyRolling,
                    Some(RetryAfter::Seconds(3)),
                    Some(10_000),
                ),
                0.0,
                retry(3_000),
            ),
            (
                Create,
                1,
                limited(
                    P::TenSecondlyRolling,
                    Some(RetryAfter::At(NOW / 1000 + 4)),
                    None,
                ),
                0.0,
                retry(4_000),
            ),
            (Read, 5, ten, 0.0, give_up(G::RetriesExhausted)),
            // Search's secondly limit: about 1 s.
            (
                Search,
                1,
                limited(P::Secondly, None, None),
                0.0,
                retry(1_000),
            ),
            (
                Search,
                2,
                limited(P::Secondly, None, None),
                0.9,
                retry(1_090),
            ),
            (
                Search,
                1,
                limited(P::Secondly, Some(RetryAfter::Seconds(2)), None),
                0.0,
                retry(2_000),
            ),
            // Unknown policy: by request kind.
            (
                Search,
                1,
                limited(P::Unknown(String::new()), None, None),
                0.0,
                retry(1_000),
            ),
            (
                Read,
                1,
                limited(P::Unknown("X".into()), None, None),
                0.0,
                retry(10_000),
            ),
            (
                Read,
                1,
                limited(P::Unknown("X".into()), None, Some(2_000)),
                0.0,
                retry(2_000),
            ),
            // DAILY: never retried, even with a Retry-After.
            (
                Read,
                1,
                limited(P::Daily, None, None),
                0.0,
                give_up(G::DailyLimit),
            ),
            (
                Search,
                1,
                limited(P::Daily, Some(RetryAfter::Seconds(1)), None),
                0.0,
                give_up(G::DailyLimit),
            ),
            // 477: Retry-After honoured (uncapped), else give up.
            (
                Write,
                1,
                failed(ApiError::MigrationInProgress {
                    retry_after: Some(RetryAfter::Seconds(3_600)),
                    body: body(),
                }),
                0.0,
                retry(3_600_000),
            ),
            (
                Write,
                1,
                failed(ApiError::MigrationInProgress {
                    retry_after: None,
                    body: body(),
                }),
                0.0,
                give_up(G::MigrationInProgress),
            ),
            // 401: refresh once, never for the token endpoint itself.
            (
                Read,
                1,
                unauthorized.clone(),
                0.0,
                CallDecision::RefreshToken,
            ),
            (
                Create,
                1,
                unauthorized.clone(),
                0.0,
                CallDecision::RefreshToken,
            ),
            (Read, 2, unauthorized.clone(), 0.0, give_up(G::Unauthorized)),
            (OAuth, 1, unauthorized, 0.0, give_up(G::Unauthorized)),
            // Never retried.
            (
                Read,
                1,
                failed(ApiError::Forbidden { body: body() }),
                0.0,
                give_up(G::Forbidden),
            ),
            (
                Read,
                1,
                failed(ApiError::NotFound { body: body() }),
                0.0,
                give_up(G::NotFound),
            ),
            (
                Create,
                1,
                failed(ApiError::Conflict {
                    existing_id: Some("1".into()),
                    body: body(),
                }),
                0.0,
                give_up(G::Conflict),
            ),
            (
                Write,
                1,
                failed(ApiError::Validation { body: body() }),
                0.0,
                give_up(G::Validation),
            ),
            (
                OAuth,
                1,
                failed(ApiError::Validation { body: body() }),
                0.0,
                give_up(G::Validation),
            ),
            (
                Read,
                1,
                failed(ApiError::Other {
                    status: 414,
                    body: body(),
                }),
                0.0,
                give_up(G::Rejected),
            ),
            (
                Read,
                1,
                failed(ApiError::Decode {
                    status: 200,
                    reason: String::new(),
                }),
                0.0,
                give_up(G::Decode),
            ),
        ];
        for (i, (kind, attempt, outcome, jitter, want)) in cases.into_iter().enumerate() {
            let got = decide(kind, attempt, &outcome, NOW, jitter);
            assert_eq!(
                got, want,
                "case {i}: {kind:?} attempt {attempt} {outcome:?} jitter {jitter}"
            );
        }
    }

    #[test]
    fn backoff_is_capped_and_jitter_sanitised() {
        let p = RetryPolicy {
            max_attempts: 100,
            ..RetryPolicy::default()
        };
        assert_eq!(
            p.decide(Read, 60, &server(500), 0, 1.0),
            CallDecision::Retry {
                after_ms: 30_000,
                at_ms: 30_000
            }
        );
        assert_eq!(
            p.decide(Read, 1, &server(500), 0, f64::NAN),
            CallDecision::Retry {
                after_ms: 250,
                at_ms: 250
            }
        );
        assert_eq!(
            p.decide(Read, 1, &server(500), 0, -3.0),
            CallDecision::Retry {
                after_ms: 250,
                at_ms: 250
            }
        );
        // A Retry-After date in the past means "now" (plus the spread).
        let past = limited(
            RateLimitPolicy::TenSecondlyRolling,
            Some(RetryAfter::At(1)),
            None,
        );
        assert_eq!(p.decide(Read, 1, &past, NOW, 0.0), retry(0));
    }

    #[test]
    fn codes_are_stable() {
        use GiveUpReason as G;
        let all = [
            (G::Unauthorized, "unauthorized"),
            (G::Forbidden, "forbidden"),
            (G::NotFound, "not_found"),
            (G::Conflict, "conflict"),
            (G::Validation, "validation"),
            (G::DailyLimit, "daily_limit"),
            (G::MigrationInProgress, "migration_in_progress"),
            (G::NotIdempotent, "not_idempotent"),
            (G::Rejected, "rejected"),
            (G::Decode, "decode"),
            (G::RetriesExhausted, "retries_exhausted"),
        ];
        for (reason, code) in all {
            assert_eq!(reason.code(), code);
        }
    }

    #[test]
    fn token_refused_refreshes_once_per_token() {
        use OnRefused::{Refresh, Unauthorized, UseCurrent};
        use TokenOrigin::{AfterRefusal, Scheduled};
        let exp = NOW + 1_800_000;
        // (token state, refused token, now, decision, refused afterwards)
        let cases: Vec<(TokenState, &str, u64, OnRefused, bool)> = vec![
            // A token obtained on schedule: refresh once.
            (
                TokenState::new("a".into(), exp, Scheduled),
                "a",
                NOW,
                Refresh(AfterRefusal),
                false,
            ),
            // A stale token reported after a refresh: use the current one.
            (
                TokenState::new("b".into(), exp, AfterRefusal),
                "a",
                NOW,
                UseCurrent,
                false,
            ),
            (
                TokenState::new("b".into(), exp, AfterRefusal).with_refused(true),
                "a",
                NOW,
                UseCurrent,
                true,
            ),
            // The token from that refresh refused too: an authorization error, reported once.
            (
                TokenState::new("b".into(), exp, AfterRefusal),
                "b",
                NOW,
                Unauthorized { first: true },
                true,
            ),
            (
                TokenState::new("b".into(), exp, AfterRefusal).with_refused(true),
                "b",
                NOW + 60_000,
                Unauthorized { first: false },
                true,
            ),
            // Expired: the 401 is explained; refresh on schedule, whatever the origin.
            (
                TokenState::new("b".into(), exp, AfterRefusal).with_refused(true),
                "b",
                exp,
                Refresh(Scheduled),
                true,
            ),
            (
                TokenState::new("a".into(), exp, Scheduled),
                "a",
                exp + 1,
                Refresh(Scheduled),
                false,
            ),
        ];
        for (i, (mut state, refused, now, decision, after)) in cases.into_iter().enumerate() {
            assert_eq!(state.on_refused(refused, now), decision, "case {i}");
            assert_eq!(state.is_refused(), after, "case {i}");
        }
    }

    #[test]
    fn token_sequence_under_permanent_refusal() {
        // Every token refused: N calls make exactly one refresh and one first report.
        let mut state = TokenState::new("t1".into(), NOW + 1_800_000, TokenOrigin::Scheduled);
        let mut refreshes = 0;
        let mut reports = 0;
        for call in 0..20u64 {
            let now = NOW + call * 1000;
            let token = state.token().to_owned();
            match state.on_refused(&token, now) {
                OnRefused::Refresh(origin) => {
                    refreshes += 1;
                    state = TokenState::new(format!("t{}", refreshes + 1), now + 1_800_000, origin);
                    // The retry with the new token is refused too.
                    let fresh = state.token().to_owned();
                    if state.on_refused(&fresh, now) == (OnRefused::Unauthorized { first: true }) {
                        reports += 1;
                    }
                }
                OnRefused::Unauthorized { first: true } => reports += 1,
                OnRefused::Unauthorized { first: false } | OnRefused::UseCurrent => {}
            }
        }
        assert_eq!((refreshes, reports), (1, 1));
        assert!(state.is_usable(0, NOW + 20_000));
        assert!(!state.is_usable(300_000, NOW + 1_500_000));
        assert!(!format!("{state:?}").contains("t2"));
    }

    #[test]
    fn a_give_up_is_answered_by_reason_and_last_outcome() {
        use GiveUpReason as R;
        let code = |r: R, last: &Outcome| {
            let (status, code, _) = r.answer(last);
            (status, code)
        };
        assert_eq!(
            code(R::Unauthorized, &Outcome::Network),
            (502, "hubspot_unauthorized")
        );
        assert_eq!(
            code(R::Forbidden, &Outcome::Network),
            (502, "hubspot_forbidden")
        );
        assert_eq!(code(R::NotFound, &Outcome::Network), (404, "not_found"));
        assert_eq!(code(R::Conflict, &Outcome::Network), (409, "conflict"));
        assert_eq!(code(R::Validation, &Outcome::Network), (400, "validation"));
        assert_eq!(code(R::DailyLimit, &Outcome::Network), (503, "daily_limit"));
        assert_eq!(
            code(R::MigrationInProgress, &Outcome::Network),
            (503, "migration_in_progress")
        );
        assert_eq!(
            code(R::NotIdempotent, &Outcome::Timeout),
            (504, "not_idempotent")
        );
        assert_eq!(code(R::Decode, &Outcome::Success), (502, "decode"));
        assert_eq!(
            code(R::Rejected, &Outcome::Network),
            (502, "hubspot_rejected")
        );
        // Retries exhausted: told apart by how the last attempt ended.
        assert_eq!(
            code(R::RetriesExhausted, &Outcome::Timeout),
            (504, "timeout")
        );
        assert_eq!(
            code(R::RetriesExhausted, &Outcome::Network),
            (502, "hubspot_unavailable")
        );
        assert_eq!(
            code(
                R::RetriesExhausted,
                &limited(RateLimitPolicy::Secondly, None, None)
            ),
            (503, "rate_limited")
        );
        let locked = failed(ApiError::Locked {
            retry_after: None,
            body: body(),
        });
        assert_eq!(code(R::RetriesExhausted, &locked), (503, "locked"));
    }
}
