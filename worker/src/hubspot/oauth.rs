//! OAuth token refresh (docs/hubspot.md §6): one `POST /oauth/v1/token` with the refresh token
//! (`HUBSPOT_REFRESH_TOKEN`, core's [`ApiConfig::oauth_refresh`]), interpreted into a token and
//! its expiry or a failure that is safe to show and says how long to remember it. Caching and
//! single flight across isolates are the gate's ([`super::gate`]). Tokens are never logged.
//!
//! [`ApiConfig::oauth_refresh`]: hubspot_edge_core::api::ApiConfig::oauth_refresh

use hubspot_edge_core::api::{TokenOrigin, TokenResponse, TokenState};
use serde::{Deserialize, Serialize};
use worker::Date;

use crate::config::{HubSpotApi, HubSpotAuth};
use crate::log::Line;

/// How long a refresh rejected by HubSpot (4xx) is remembered: no new attempt before.
const FAILURE_MEMO_MS: u64 = 30_000;
/// How long a refresh that failed otherwise (5xx, network) is remembered.
const TRANSIENT_FAILURE_MEMO_MS: u64 = 5_000;

/// An access token and when it expires (also the gate's stored value, with what core's
/// [`TokenState`] knows about it).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct Cached {
    pub(crate) token: String,
    pub(crate) expires_at_ms: u64,
    /// Obtained because HubSpot refused the previous token.
    #[serde(default)]
    pub(crate) after_refusal: bool,
    /// Refused too: reported, not refreshed again before it expires.
    #[serde(default)]
    pub(crate) refused: bool,
}

impl Cached {
    pub(crate) fn state(&self) -> TokenState {
        let origin = if self.after_refusal {
            TokenOrigin::AfterRefusal
        } else {
            TokenOrigin::Scheduled
        };
        TokenState::new(self.token.clone(), self.expires_at_ms, origin).with_refused(self.refused)
    }

    pub(crate) fn of(state: &TokenState) -> Self {
        Self {
            token: state.token().to_owned(),
            expires_at_ms: state.expires_at_ms(),
            after_refusal: state.origin() == TokenOrigin::AfterRefusal,
            refused: state.is_refused(),
        }
    }
}

/// A failed refresh: `message` is safe to show; no new attempt before `until_ms`.
#[derive(Clone)]
pub(crate) struct Failure {
    pub(crate) until_ms: u64,
    pub(crate) message: String,
}

/// Obtains a new access token with the configured refresh token; `origin`: why.
pub(crate) async fn refresh(
    config: &HubSpotApi,
    origin: TokenOrigin,
) -> Result<TokenState, Failure> {
    let HubSpotAuth::OAuth {
        client,
        refresh_token,
        ..
    } = &config.auth
    else {
        return Err(Failure {
            until_ms: 0,
            message: "OAuth is not configured".into(),
        });
    };
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
    let state = TokenState::new(
        token.access_token,
        started.saturating_add(token.expires_in.saturating_mul(1000)),
        origin,
    );
    Line::info("hubspot_oauth_refresh")
        .field("outcome", "ok")
        .field(
            "reason",
            match origin {
                TokenOrigin::Scheduled => "expiry",
                TokenOrigin::AfterRefusal => "refused",
            },
        )
        .field("expires_in", token.expires_in)
        .emit();
    Ok(state)
}
