//! OAuth token refresh (docs/hubspot.md §6): one `POST /oauth/v1/token` with the refresh token
//! (`HUBSPOT_REFRESH_TOKEN`, core's [`ApiConfig::oauth_refresh`]), read by core's
//! `refresh_answer` into a token and its expiry or a failure that is safe to show and says how
//! long to remember it. Caching and single flight are core's `TokenCache`, held by the gate
//! ([`super::gate`]). Tokens are never logged.
//!
//! [`ApiConfig::oauth_refresh`]: hubspot_edge_core::api::ApiConfig::oauth_refresh

use hubspot_edge_core::api::{refresh_answer, RefreshFailure, TokenOrigin, TokenState};
use serde::{Deserialize, Serialize};
use worker::Date;

use crate::config::{HubSpotApi, HubSpotAuth};
use crate::log::Line;

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

/// Obtains a new access token with the configured refresh token; `origin`: why. The answer is
/// read by core's [`refresh_answer`].
pub(crate) async fn refresh(
    config: &HubSpotApi,
    origin: TokenOrigin,
) -> Result<TokenState, RefreshFailure> {
    let result = attempt(config, origin).await;
    match &result {
        Ok(state) => Line::info("hubspot_oauth_refresh")
            .field("outcome", "ok")
            .field(
                "reason",
                match origin {
                    TokenOrigin::Scheduled => "expiry",
                    TokenOrigin::AfterRefusal => "refused",
                },
            )
            .field(
                "expires_in",
                state
                    .expires_at_ms()
                    .saturating_sub(Date::now().as_millis())
                    / 1000,
            )
            .emit(),
        Err(failure) => Line::warn("hubspot_oauth_refresh")
            .field("outcome", "failed")
            .field("error", failure.message.as_str())
            .emit(),
    }
    result
}

async fn attempt(config: &HubSpotApi, origin: TokenOrigin) -> Result<TokenState, RefreshFailure> {
    let HubSpotAuth::OAuth {
        client,
        refresh_token,
        ..
    } = &config.auth
    else {
        return Err(RefreshFailure {
            until_ms: 0,
            message: "OAuth is not configured".into(),
        });
    };
    let request = config.api.oauth_refresh(client, refresh_token.as_str());
    let sent_at = Date::now().as_millis();
    match super::transport::send(config, &request, None).await {
        Ok((status, _, body)) => {
            refresh_answer(status, &body, sent_at, origin, Date::now().as_millis())
        }
        Err(outcome) => Err(RefreshFailure::unanswered(
            outcome.code(),
            Date::now().as_millis(),
        )),
    }
}
