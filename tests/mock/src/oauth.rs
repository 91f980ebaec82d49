//! OAuth 2.0 token endpoint (`POST /oauth/v1/token`, docs/hubspot.md §6): authorization-code and
//! refresh-token grants, expiring access tokens, and the 401/400 answers around them.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};

use super::api::parse_query;

/// The authorization code always accepted (there is no `/oauth/authorize` page).
pub const TEST_CODE: &str = "test-code";

/// What a bearer token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenState {
    Valid,
    /// Expired this many whole seconds ago.
    Expired(u64),
    Unknown,
}

/// Issued tokens.
#[derive(Debug)]
pub(super) struct OAuth {
    client_id: String,
    client_secret: String,
    codes: HashSet<String>,
    refresh_tokens: HashSet<String>,
    /// Access token → its expiry (ms since the epoch).
    access: HashMap<String, u64>,
    ttl: Duration,
    next: u64,
    pub(super) refreshes: u64,
    pub(super) code_exchanges: u64,
    /// Every issued access token is refused (401 `INVALID_AUTHENTICATION`), also those issued
    /// later: an install whose tokens HubSpot no longer accepts (`/__mock/refuse-tokens`).
    pub(super) refuse_all: bool,
}

/// A form answer: status and JSON body.
pub(super) type Answer = (u16, Value);

impl OAuth {
    pub(super) fn new(
        client_id: &str,
        client_secret: &str,
        refresh_token: &str,
        auth_code: &str,
        ttl: Duration,
    ) -> Self {
        let mut codes = HashSet::from([TEST_CODE.to_owned()]);
        if !auth_code.is_empty() {
            codes.insert(auth_code.to_owned());
        }
        let mut refresh_tokens = HashSet::new();
        if !refresh_token.is_empty() {
            refresh_tokens.insert(refresh_token.to_owned());
        }
        Self {
            client_id: client_id.to_owned(),
            client_secret: client_secret.to_owned(),
            codes,
            refresh_tokens,
            access: HashMap::new(),
            ttl,
            next: 0,
            refreshes: 0,
            code_exchanges: 0,
            refuse_all: false,
        }
    }

    /// What `token` is at `now_ms` (ms since the epoch).
    pub(super) fn check(&self, token: &str, now_ms: u64) -> TokenState {
        match self.access.get(token) {
            None => TokenState::Unknown,
            Some(_) if self.refuse_all => TokenState::Unknown,
            Some(exp) if *exp > now_ms => TokenState::Valid,
            Some(exp) => TokenState::Expired((now_ms - exp) / 1000),
        }
    }

    /// Makes every issued access token expire at `now` (as if its lifetime had run out): the
    /// next call with it gets HubSpot's 401. Returns how many there were.
    pub(super) fn expire_all(&mut self, now_ms: u64) -> usize {
        for expiry in self.access.values_mut() {
            *expiry = (*expiry).min(now_ms);
        }
        self.access.len()
    }

    fn mint(&mut self, prefix: &str, now_ms: u64) -> String {
        self.next += 1;
        // Shaped loosely like HubSpot's opaque tokens (`CJSP5qf1KhICAQEYs-gDIIGOBii1`…).
        let mut z = self
            .next
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(now_ms);
        z ^= z >> 29;
        format!("{prefix}-{:04}-{z:016x}", self.next)
    }

    fn issue(&mut self, refresh_token: String, now_ms: u64) -> Answer {
        let access = self.mint("CMock", now_ms);
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        self.access
            .insert(access.clone(), now_ms.saturating_add(ttl_ms));
        (
            200,
            json!({
                "token_type": "bearer",
                "refresh_token": refresh_token,
                "access_token": access,
                "expires_in": self.ttl.as_secs(),
            }),
        )
    }

    /// `POST /oauth/v1/token` with a form body, at `now_ms` (ms since the epoch).
    pub(super) fn token(&mut self, body: &[u8], now_ms: u64) -> Answer {
        let form = parse_query(&String::from_utf8_lossy(body));
        let get = |k: &str| {
            form.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or("")
        };
        // Only BAD_REFRESH_TOKEN's body is documented (§6); the other `status` values are
        // HubSpot's observed ones, in the same shape.
        let fail = |status: &str, error: &str, message: &str| {
            (
                400,
                json!({
                    "error": error,
                    "error_description": message,
                    "status": status,
                    "message": message,
                }),
            )
        };
        if get("client_id") != self.client_id {
            return fail(
                "BAD_CLIENT_ID",
                "invalid_client",
                "missing or unknown client id",
            );
        }
        if get("client_secret") != self.client_secret {
            return fail(
                "BAD_CLIENT_SECRET",
                "invalid_client",
                "missing or invalid client secret",
            );
        }
        match get("grant_type") {
            "authorization_code" => {
                if !self.codes.contains(get("code")) {
                    return fail(
                        "BAD_AUTH_CODE",
                        "invalid_grant",
                        "missing or unknown auth code",
                    );
                }
                self.code_exchanges += 1;
                let refresh = self.mint("mock-refresh", now_ms);
                self.refresh_tokens.insert(refresh.clone());
                self.issue(refresh, now_ms)
            }
            "refresh_token" => {
                let refresh = get("refresh_token").to_owned();
                if !self.refresh_tokens.contains(&refresh) {
                    return fail(
                        "BAD_REFRESH_TOKEN",
                        "invalid_grant",
                        "refresh token is invalid, expired or revoked",
                    );
                }
                self.refreshes += 1;
                self.issue(refresh, now_ms)
            }
            other => fail(
                "BAD_GRANT_TYPE",
                "unsupported_grant_type",
                &format!("unsupported grant_type: {other}"),
            ),
        }
    }
}

/// The 401 text for an expired access token (HubSpot's observed wording; §4.5/§6 give only
/// the `EXPIRED_AUTHENTICATION` category).
pub(super) fn expired_message(secs: u64) -> String {
    format!("The OAuth token used to make this call expired {secs} second(s) ago.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuse_all_refuses_issued_and_later_tokens_until_cleared() {
        let now: u64 = 1_700_000_000_000;
        let mut oauth = OAuth::new("id", "secret", "r", "", Duration::from_secs(1800));
        let form = b"grant_type=refresh_token&refresh_token=r&client_id=id&client_secret=secret";
        let first = oauth.token(form, now).1["access_token"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert_eq!(oauth.check(&first, now), TokenState::Valid);
        oauth.refuse_all = true;
        assert_eq!(oauth.check(&first, now), TokenState::Unknown);
        let (status, body) = oauth.token(form, now);
        let second = body["access_token"].as_str().unwrap_or_default().to_owned();
        assert_eq!((status, oauth.refreshes), (200, 2));
        assert_eq!(oauth.check(&second, now), TokenState::Unknown);
        oauth.refuse_all = false;
        assert_eq!(oauth.check(&second, now), TokenState::Valid);
    }
}
