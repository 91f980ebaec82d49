//! The OAuth access token's cache, as one holder keeps it for every caller (docs/hubspot.md §6):
//! refreshed `margin_ms` before it expires and once after a 401, by one refresh at a time (the
//! other callers wait for it), a failed refresh remembered for a while so that nothing retries
//! it in a hot loop, and the token endpoint's answer interpreted into a token or a failure that
//! is safe to show.
//!
//! Poll-style: the holder asks [`TokenCache::next`] what to do, performs the refresh when told
//! to (`POST /oauth/v1/token`, [`super::ApiConfig::oauth_refresh`]), reads the answer with
//! [`refresh_answer`] and feeds it back with [`TokenCache::refreshed`]. The Worker's HubSpot gate
//! (a Durable Object) is one holder; any runtime can be another.

use super::{OnRefused, TokenOrigin, TokenResponse, TokenState};

/// How long a refresh that HubSpot refused (4xx: a revoked refresh token, a wrong client
/// secret) is remembered: no new attempt before. Long enough to stop a hot loop, short enough
/// that a fixed secret is picked up within a minute.
pub const REFRESH_REFUSED_MEMO_MS: u64 = 30_000;
/// How long a refresh that failed otherwise (5xx, no answer, an unreadable body) is remembered.
pub const REFRESH_TRANSIENT_MEMO_MS: u64 = 5_000;

/// A refresh that failed: `message` is safe to show (no token, no secret); no new attempt
/// before `until_ms`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFailure {
    /// No new refresh before this instant (ms since the epoch).
    pub until_ms: u64,
    /// What went wrong, for logs and for the callers that get no token.
    pub message: String,
}

impl RefreshFailure {
    /// The token endpoint did not answer (`code`: the transport's outcome, e.g. `timeout`).
    pub fn unanswered(code: &str, now_ms: u64) -> Self {
        Self {
            until_ms: now_ms.saturating_add(REFRESH_TRANSIENT_MEMO_MS),
            message: format!("the token endpoint did not answer ({code})"),
        }
    }
}

/// The token endpoint's answer to a refresh sent at `sent_at_ms` (the token's lifetime counts
/// from then: the answer's `expires_in` is relative to HubSpot's clock, unknown here, and the
/// send time errs early), for a token with `origin`, read at `now_ms`.
///
/// # Errors
/// A [`RefreshFailure`] for any status but 200 (HubSpot's `status` and `message`, or the
/// OAuth `error_description`, in the message; 4xx remembered [`REFRESH_REFUSED_MEMO_MS`],
/// others [`REFRESH_TRANSIENT_MEMO_MS`]) or a 200 whose body is not a token.
pub fn refresh_answer(
    status: u16,
    body: &[u8],
    sent_at_ms: u64,
    origin: TokenOrigin,
    now_ms: u64,
) -> Result<TokenState, RefreshFailure> {
    let fail = |message: String, memo_ms: u64| RefreshFailure {
        until_ms: now_ms.saturating_add(memo_ms),
        message,
    };
    if status != 200 {
        let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
        let text = |k: &str| v.get(k).and_then(|m| m.as_str()).map(str::to_owned);
        let message = match (
            text("status"),
            text("message").or_else(|| text("error_description")),
        ) {
            (Some(code), Some(m)) => format!("HubSpot answered {status} {code}: {m}"),
            (None, Some(m)) => format!("HubSpot answered {status}: {m}"),
            (Some(code), None) => format!("HubSpot answered {status} {code}"),
            (None, None) => format!("HubSpot answered {status}"),
        };
        let memo = if (400..500).contains(&status) {
            REFRESH_REFUSED_MEMO_MS
        } else {
            REFRESH_TRANSIENT_MEMO_MS
        };
        return Err(fail(message, memo));
    }
    let token: TokenResponse = serde_json::from_slice(body).map_err(|_| {
        fail(
            "unexpected token endpoint response body".into(),
            REFRESH_TRANSIENT_MEMO_MS,
        )
    })?;
    Ok(TokenState::new(
        token.access_token,
        sent_at_ms.saturating_add(token.expires_in.saturating_mul(1000)),
        origin,
    ))
}

/// What the holder does next for a caller that wants a token; see [`TokenCache::next`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum TokenStep {
    /// Send with this token.
    Use(String),
    /// Refresh now (the cache now counts a refresh in flight); the new token has this origin.
    Refresh(TokenOrigin),
    /// Another caller is refreshing: ask again shortly.
    Wait,
    /// No token: a refresh failed recently (the message is safe to show).
    Failed(String),
    /// The token the caller was refused with is known to be refused for good (a token obtained
    /// after a 401, refused too): an authorization error, not a reason to refresh. `first`:
    /// the first report (log it, persist the mark).
    Refused {
        /// This is the first report for this token.
        first: bool,
    },
}

/// The cached token, the refresh in flight and the last refresh failure. `Debug` redacts the
/// token (through [`TokenState`]).
#[derive(Debug, Clone, Default)]
pub struct TokenCache {
    token: Option<TokenState>,
    refreshing: bool,
    failure: Option<RefreshFailure>,
}

impl TokenCache {
    /// The longest a caller waits for another caller's refresh ([`TokenStep::Wait`]) before
    /// giving up: the refresh's own timeout at most, and within [`super::Call::MAX_WAIT_MS`].
    pub const MAX_REFRESH_WAIT_MS: u64 = 15_000;

    /// How long a caller told to [`TokenStep::Wait`] waits before asking again, having waited
    /// since `started_ms`: a short poll (20 ms: a refresh takes one HubSpot round trip), or
    /// `None` once it has waited more than [`TokenCache::MAX_REFRESH_WAIT_MS`] and gives up.
    pub fn refresh_wait(started_ms: u64, now_ms: u64) -> Option<u64> {
        const POLL_MS: u64 = 20;
        (now_ms.saturating_sub(started_ms) <= Self::MAX_REFRESH_WAIT_MS).then_some(POLL_MS)
    }

    /// An empty cache: the first caller refreshes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Restores a token from storage, unless one is already held (a newer one, obtained while
    /// the storage was read).
    pub fn restore(&mut self, stored: Option<TokenState>) {
        if self.token.is_none() {
            self.token = stored;
        }
    }

    /// The token held, with its flags (what the holder persists).
    pub fn token(&self) -> Option<&TokenState> {
        self.token.as_ref()
    }

    /// Whether a refresh is in flight.
    pub fn is_refreshing(&self) -> bool {
        self.refreshing
    }

    /// What to do for a caller at `now_ms`. `rejected`: the token HubSpot just answered 401 to
    /// ([`TokenState::on_refused`] decides what that means: once per token).
    ///
    /// Order: a refresh in flight makes everyone wait; a refusal is judged; a usable token is
    /// handed out (not within `margin_ms` of its expiry); a recent failure is repeated until its
    /// memo ends; otherwise refresh, and count the refresh in flight until
    /// [`Self::refreshed`] or [`Self::abandoned`].
    pub fn next(&mut self, rejected: Option<&str>, margin_ms: u64, now_ms: u64) -> TokenStep {
        if self.refreshing {
            return TokenStep::Wait;
        }
        let decision = match (rejected, self.token.as_mut()) {
            (Some(r), Some(state)) => state.on_refused(r, now_ms),
            (Some(_), None) => OnRefused::Refresh(TokenOrigin::Scheduled),
            (None, _) => OnRefused::UseCurrent,
        };
        let origin = match decision {
            OnRefused::Unauthorized { first } => return TokenStep::Refused { first },
            OnRefused::Refresh(origin) => origin,
            OnRefused::UseCurrent => {
                if let Some(t) = self
                    .token
                    .as_ref()
                    .filter(|t| t.is_usable(margin_ms, now_ms))
                {
                    return TokenStep::Use(t.token().to_owned());
                }
                TokenOrigin::Scheduled
            }
        };
        if let Some(f) = self.failure.as_ref().filter(|f| f.until_ms > now_ms) {
            return TokenStep::Failed(f.message.clone());
        }
        self.refreshing = true;
        TokenStep::Refresh(origin)
    }

    /// The refresh [`Self::next`] asked for ended: its new token, or the failure to remember.
    pub fn refreshed(&mut self, result: Result<TokenState, RefreshFailure>) {
        self.refreshing = false;
        match result {
            Ok(state) => {
                self.token = Some(state);
                self.failure = None;
            }
            Err(failure) => self.failure = Some(failure),
        }
    }

    /// The refresh in flight ended without an answer to feed back (the caller was cancelled):
    /// the next caller refreshes, nobody waits for a refresh that is gone.
    pub fn abandoned(&mut self) {
        self.refreshing = false;
    }

    /// A call gave up after a second 401 with `rejected`: recorded in the token's state, no
    /// refresh. `true` the first time this token is reported (log it, persist the mark).
    pub fn refused_again(&mut self, rejected: &str, now_ms: u64) -> bool {
        self.token.as_mut().is_some_and(|state| {
            state.on_refused(rejected, now_ms) == (OnRefused::Unauthorized { first: true })
        })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    const NOW: u64 = 1_700_000_000_000;
    const MARGIN: u64 = 300_000;

    #[test]
    fn a_waiter_polls_until_it_has_waited_fifteen_seconds() {
        assert_eq!(TokenCache::refresh_wait(NOW, NOW), Some(20));
        assert_eq!(TokenCache::refresh_wait(NOW, NOW + 15_000), Some(20));
        assert_eq!(TokenCache::refresh_wait(NOW, NOW + 15_001), None);
        // A clock that went back does not end the wait.
        assert_eq!(TokenCache::refresh_wait(NOW, NOW - 5), Some(20));
    }

    fn token(name: &str, expires_at_ms: u64, origin: TokenOrigin) -> TokenState {
        TokenState::new(name.into(), expires_at_ms, origin)
    }

    #[test]
    fn first_caller_refreshes_the_others_wait_then_use_it() {
        let mut c = TokenCache::new();
        assert_eq!(
            c.next(None, MARGIN, NOW),
            TokenStep::Refresh(TokenOrigin::Scheduled)
        );
        assert!(c.is_refreshing());
        assert_eq!(c.next(None, MARGIN, NOW), TokenStep::Wait);
        c.refreshed(Ok(token("a", NOW + 1_800_000, TokenOrigin::Scheduled)));
        assert_eq!(c.next(None, MARGIN, NOW + 1), TokenStep::Use("a".into()));
    }

    #[test]
    fn refreshed_within_the_margin_of_its_expiry() {
        let mut c = TokenCache::new();
        c.restore(Some(token("a", NOW + MARGIN + 1, TokenOrigin::Scheduled)));
        assert_eq!(c.next(None, MARGIN, NOW), TokenStep::Use("a".into()));
        assert_eq!(
            c.next(None, MARGIN, NOW + 1),
            TokenStep::Refresh(TokenOrigin::Scheduled)
        );
        // A restore while a newer token is held keeps the newer one.
        c.refreshed(Ok(token("b", NOW + 1_800_000, TokenOrigin::Scheduled)));
        c.restore(Some(token("old", NOW + 9_000_000, TokenOrigin::Scheduled)));
        assert_eq!(c.token().map(TokenState::token), Some("b"));
    }

    #[test]
    fn a_failed_refresh_is_remembered_until_its_memo_ends() {
        let mut c = TokenCache::new();
        let _ = c.next(None, MARGIN, NOW);
        c.refreshed(Err(RefreshFailure {
            until_ms: NOW + REFRESH_REFUSED_MEMO_MS,
            message: "HubSpot answered 400 BAD_REFRESH_TOKEN".into(),
        }));
        for at in [NOW, NOW + REFRESH_REFUSED_MEMO_MS - 1] {
            assert_eq!(
                c.next(None, MARGIN, at),
                TokenStep::Failed("HubSpot answered 400 BAD_REFRESH_TOKEN".into())
            );
        }
        assert_eq!(
            c.next(None, MARGIN, NOW + REFRESH_REFUSED_MEMO_MS),
            TokenStep::Refresh(TokenOrigin::Scheduled)
        );
    }

    #[test]
    fn a_401_refreshes_once_per_token_then_is_an_authorization_error() {
        let mut c = TokenCache::new();
        c.restore(Some(token("a", NOW + 1_800_000, TokenOrigin::Scheduled)));
        // A 401 to an older token than the one held: use the held one.
        assert_eq!(
            c.next(Some("older"), MARGIN, NOW),
            TokenStep::Use("a".into())
        );
        assert_eq!(
            c.next(Some("a"), MARGIN, NOW),
            TokenStep::Refresh(TokenOrigin::AfterRefusal)
        );
        c.refreshed(Ok(token("b", NOW + 1_800_000, TokenOrigin::AfterRefusal)));
        assert_eq!(
            c.next(Some("b"), MARGIN, NOW),
            TokenStep::Refused { first: true }
        );
        assert_eq!(
            c.next(Some("b"), MARGIN, NOW),
            TokenStep::Refused { first: false }
        );
        assert!(c.token().is_some_and(TokenState::is_refused));
        // Refused, it is still handed out to callers without a 401 (HubSpot decides per call).
        assert_eq!(c.next(None, MARGIN, NOW), TokenStep::Use("b".into()));
    }

    #[test]
    fn a_second_401_after_a_refresh_is_reported_once() {
        let mut c = TokenCache::new();
        c.restore(Some(token("b", NOW + 1_800_000, TokenOrigin::AfterRefusal)));
        assert!(c.refused_again("b", NOW));
        assert!(!c.refused_again("b", NOW));
        assert!(!TokenCache::new().refused_again("b", NOW));
    }

    #[test]
    fn an_abandoned_refresh_lets_the_next_caller_refresh() {
        let mut c = TokenCache::new();
        let _ = c.next(None, MARGIN, NOW);
        c.abandoned();
        assert_eq!(
            c.next(None, MARGIN, NOW),
            TokenStep::Refresh(TokenOrigin::Scheduled)
        );
    }

    #[test]
    fn token_endpoint_answers() {
        let ok =
            br#"{"token_type":"bearer","access_token":"t1","refresh_token":"r","expires_in":1800}"#;
        let state = refresh_answer(200, ok, NOW, TokenOrigin::AfterRefusal, NOW + 250).unwrap();
        assert_eq!(state.token(), "t1");
        assert_eq!(state.expires_at_ms(), NOW + 1_800_000);
        assert_eq!(state.origin(), TokenOrigin::AfterRefusal);
        let cases: [(u16, &[u8], &str, u64); 6] = [
            (
                400,
                br#"{"status":"BAD_REFRESH_TOKEN","message":"missing or unknown refresh token"}"#,
                "HubSpot answered 400 BAD_REFRESH_TOKEN: missing or unknown refresh token",
                REFRESH_REFUSED_MEMO_MS,
            ),
            (
                400,
                br#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#,
                "HubSpot answered 400: refresh token revoked",
                REFRESH_REFUSED_MEMO_MS,
            ),
            (
                401,
                br#"{"status":"error"}"#,
                "HubSpot answered 401 error",
                REFRESH_REFUSED_MEMO_MS,
            ),
            (
                502,
                b"<html>bad gateway</html>",
                "HubSpot answered 502",
                REFRESH_TRANSIENT_MEMO_MS,
            ),
            (
                200,
                br#"{"access_token":"t"}"#,
                "unexpected token endpoint response body",
                REFRESH_TRANSIENT_MEMO_MS,
            ),
            (
                200,
                b"not json",
                "unexpected token endpoint response body",
                REFRESH_TRANSIENT_MEMO_MS,
            ),
        ];
        for (status, body, message, memo) in cases {
            assert_eq!(
                refresh_answer(status, body, NOW, TokenOrigin::Scheduled, NOW + 10),
                Err(RefreshFailure {
                    until_ms: NOW + 10 + memo,
                    message: message.into()
                }),
                "{status}"
            );
        }
        assert_eq!(
            RefreshFailure::unanswered("timeout", NOW).message,
            "the token endpoint did not answer (timeout)"
        );
    }
}
