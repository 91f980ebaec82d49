//! OAuth access tokens for the executor (HUBSPOT.md §6): obtained with the refresh token
//! (`HUBSPOT_REFRESH_TOKEN`, core's [`ApiConfig::oauth_refresh`]), cached in this isolate's
//! memory and in KV (`STATE`, key `oauth:access`), refreshed `margin_ms` before expiry and once
//! after a 401.
//!
//! Single flight is per isolate only: while one refresh runs, other calls in this isolate wait
//! for it. Concurrent isolates may each refresh (a cross-isolate single flight would need a
//! Durable Object); that is harmless for HubSpot, whose refresh tokens stay valid and which
//! accepts several live access tokens. A failed refresh is remembered for a while so that
//! calls do not hammer the token endpoint. Tokens are never logged.
//!
//! [`ApiConfig::oauth_refresh`]: hubspot_edge_core::api::ApiConfig::oauth_refresh

use std::cell::RefCell;
use std::time::Duration;

use hubspot_edge_core::api::{OAuthClient, TokenResponse};
use serde::{Deserialize, Serialize};
use worker::{Date, Delay, Env};

use crate::config::{AccessToken, HubSpotApi, HubSpotAuth};
use crate::log::Line;
use crate::store;

/// The KV key of the cached access token.
pub(crate) const KV_KEY: &str = "oauth:access";
/// How long a refresh rejected by HubSpot (4xx) is remembered: no new attempt before.
const FAILURE_MEMO_MS: u64 = 30_000;
/// How long a refresh that failed otherwise (5xx, network) is remembered.
const TRANSIENT_FAILURE_MEMO_MS: u64 = 5_000;
/// The longest a call waits for another call's refresh in this isolate.
const WAIT_FOR_REFRESH_MS: u64 = 15_000;

/// An access token and when it expires (also the KV value).
#[derive(Clone, Serialize, Deserialize)]
struct Cached {
    token: String,
    expires_at_ms: u64,
}

#[derive(Clone)]
struct Failure {
    until_ms: u64,
    message: String,
}

#[derive(Default)]
struct State {
    cached: Option<Cached>,
    refreshing: bool,
    failure: Option<Failure>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// Getting an access token failed; `message` is safe to show (no secrets).
#[derive(Debug, Clone)]
pub(crate) struct RefreshFailed {
    pub(crate) message: String,
}

/// The bearer token for the next call. `rejected`: the token HubSpot just answered 401 to;
/// a different (newer) token is used if one is cached, else a refresh is forced.
pub(crate) async fn access_token(
    config: &HubSpotApi,
    env: &Env,
    rejected: Option<&str>,
) -> Result<AccessToken, RefreshFailed> {
    let (client, refresh_token, margin_ms) = match &config.auth {
        HubSpotAuth::Static(token) => return Ok(token.clone()),
        HubSpotAuth::OAuth {
            client,
            refresh_token,
            margin_ms,
        } => (client, refresh_token, *margin_ms),
    };
    let usable = |c: &Cached, now: u64| {
        c.expires_at_ms.saturating_sub(margin_ms) > now && Some(c.token.as_str()) != rejected
    };
    let started = Date::now().as_millis();
    // Wait while another call in this isolate refreshes; then use its token.
    loop {
        let now = Date::now().as_millis();
        let (cached, refreshing, failure) = STATE.with(|s| {
            let s = s.borrow();
            (s.cached.clone(), s.refreshing, s.failure.clone())
        });
        if let Some(c) = cached.filter(|c| usable(c, now)) {
            return Ok(AccessToken::new(c.token));
        }
        if let Some(f) = failure.filter(|f| f.until_ms > now) {
            return Err(RefreshFailed { message: f.message });
        }
        if !refreshing {
            break;
        }
        if now.saturating_sub(started) > WAIT_FOR_REFRESH_MS {
            return Err(RefreshFailed {
                message: "timed out waiting for the OAuth token refresh".into(),
            });
        }
        Delay::from(Duration::from_millis(25)).await;
    }
    let flight = Flight::start();
    let result = obtain(config, env, client, refresh_token, &usable).await;
    drop(flight);
    STATE.with(|s| {
        let mut s = s.borrow_mut();
        match &result {
            Ok(c) => {
                s.cached = Some(c.clone());
                s.failure = None;
            }
            Err(failure) => s.failure = Some(failure.clone()),
        }
    });
    match result {
        Ok(c) => Ok(AccessToken::new(c.token)),
        Err(f) => Err(RefreshFailed { message: f.message }),
    }
}

/// Marks a refresh in flight; clears the mark when dropped, also when the request is cancelled
/// mid-refresh (so waiting calls never wait for a refresh that is gone).
struct Flight;

impl Flight {
    fn start() -> Self {
        STATE.with(|s| s.borrow_mut().refreshing = true);
        Self
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        STATE.with(|s| s.borrow_mut().refreshing = false);
    }
}

/// The token in KV when usable, else a refresh (written to KV).
async fn obtain(
    config: &HubSpotApi,
    env: &Env,
    client: &OAuthClient,
    refresh_token: &AccessToken,
    usable: &impl Fn(&Cached, u64) -> bool,
) -> Result<Cached, Failure> {
    let kv = env.kv(store::STATE).ok();
    if let Some(kv) = &kv {
        if let Ok(Some(c)) = kv.get(KV_KEY).json::<Cached>().await {
            if usable(&c, Date::now().as_millis()) {
                return Ok(c);
            }
        }
    }
    let fail = |message: String, memo_ms: u64| {
        Line::warn("hubspot_oauth_refresh")
            .field("outcome", "failed")
            .field("error", message.as_str())
            .emit();
        Err(Failure {
            until_ms: Date::now().as_millis().saturating_add(memo_ms),
            message,
        })
    };
    let request = match config.api.oauth_refresh(client, refresh_token.as_str()) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string(), FAILURE_MEMO_MS),
    };
    let started = Date::now().as_millis();
    let (status, body) = match super::executor::send(config, &request, None).await {
        Ok((status, _, body)) => (status, body),
        Err(outcome) => {
            return fail(
                format!(
                    "the token endpoint did not answer ({})",
                    super::executor::outcome_code(&outcome)
                ),
                TRANSIENT_FAILURE_MEMO_MS,
            )
        }
    };
    if status != 200 {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let text = |k: &str| v.get(k).and_then(|m| m.as_str()).map(str::to_owned);
        let message = match (
            text("status"),
            text("message").or(text("error_description")),
        ) {
            (Some(code), Some(m)) => format!("HubSpot answered {status} {code}: {m}"),
            (None, Some(m)) => format!("HubSpot answered {status}: {m}"),
            (Some(code), None) => format!("HubSpot answered {status} {code}"),
            (None, None) => format!("HubSpot answered {status}"),
        };
        let memo = if (400..500).contains(&status) {
            FAILURE_MEMO_MS
        } else {
            TRANSIENT_FAILURE_MEMO_MS
        };
        return fail(message, memo);
    }
    let Ok(token) = serde_json::from_slice::<TokenResponse>(&body) else {
        return fail(
            "unexpected token endpoint response body".into(),
            TRANSIENT_FAILURE_MEMO_MS,
        );
    };
    let cached = Cached {
        token: token.access_token,
        expires_at_ms: started.saturating_add(token.expires_in.saturating_mul(1000)),
    };
    Line::info("hubspot_oauth_refresh")
        .field("outcome", "ok")
        .field("expires_in", token.expires_in)
        .emit();
    if let Some(kv) = &kv {
        // KV's minimum expiration TTL is 60 s; the stored `expires_at_ms` is what counts.
        let ttl = token.expires_in.max(60);
        let stored = match kv.put(KV_KEY, &cached) {
            Ok(put) => put.expiration_ttl(ttl).execute().await.is_ok(),
            Err(_) => false,
        };
        if !stored {
            Line::warn("hubspot_oauth_cache_write_failed").emit();
        }
    }
    Ok(cached)
}
