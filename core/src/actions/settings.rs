//! The actions' configuration, read from the host's keys.

use crate::config::{ConfigError, ACTIONS_BUDGET_MS, ACTIONS_COMPLETE_WINDOW_MS};
use crate::mapping::Mapping;
use crate::outbound::WebhookSecret;
use crate::signature::{ClientSecret, LegacySignatures, Verifier};

use super::Definitions;

/// Everything the action routes need (`ACTIONS` and the keys around it), read per request.
#[derive(Debug)]
pub struct ActionSettings {
    /// `ACTIONS`, checked against `ENRICHMENT_MAP`.
    pub definitions: Definitions,
    /// Verifies execution requests with `HUBSPOT_CLIENT_SECRET` (v2 accepted: HubSpot
    /// documents it for actions; v3 when its headers are present).
    pub verifier: Verifier,
    /// `PUBLIC_BASE_URL`, without a trailing slash.
    pub public_base_url: Option<String>,
    /// `ACTIONS_BUDGET_MS`: how long a lookup may take before the answer is `BLOCK`.
    pub budget_ms: u64,
    /// `ACTIONS_CALLBACK_SECRET`: callbacks are off without it.
    pub callback_secret: Option<WebhookSecret>,
}

impl ActionSettings {
    /// Reads the actions keys through `var` (the raw value of a key; `None` or blank: unset).
    /// `Ok(None)` when `ACTIONS` is unset: actions are off. `ACTIONS_COMPLETE_WINDOW_MS` is
    /// checked too (the per-portal object reads it itself), so that a bad window is loud on
    /// every request.
    ///
    /// # Errors
    /// The first missing or invalid key ([`ConfigError::key`], [`ConfigError::code`]; never a
    /// secret).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let var = |key: &str| var(key).filter(|v| !v.trim().is_empty());
        let Some(json) = var("ACTIONS") else {
            return Ok(None);
        };
        let mapping = match var("ENRICHMENT_MAP") {
            Some(m) => Some(Mapping::from_json(&m).map_err(|e| ConfigError::Invalid {
                key: "ENRICHMENT_MAP",
                code: e.code(),
                detail: e.to_string(),
            })?),
            None => None,
        };
        let definitions =
            Definitions::parse(&json, var, mapping.as_ref()).map_err(|e| ConfigError::Invalid {
                key: "ACTIONS",
                code: e.code(),
                detail: e.to_string(),
            })?;
        let secret = var("HUBSPOT_CLIENT_SECRET").ok_or(ConfigError::Missing {
            key: "HUBSPOT_CLIENT_SECRET",
        })?;
        let verifier =
            Verifier::new(ClientSecret::new(secret.trim())).with_legacy(LegacySignatures::Accept);
        let budget_ms = ACTIONS_BUDGET_MS.parse(var(ACTIONS_BUDGET_MS.key).as_deref())?;
        ACTIONS_COMPLETE_WINDOW_MS.parse(var(ACTIONS_COMPLETE_WINDOW_MS.key).as_deref())?;
        let callback_secret = match var("ACTIONS_CALLBACK_SECRET") {
            Some(s) => Some(WebhookSecret::parse(&s).map_err(|e| ConfigError::Invalid {
                key: "ACTIONS_CALLBACK_SECRET",
                code: "config_invalid",
                detail: e.to_string(),
            })?),
            None => None,
        };
        Ok(Some(Self {
            definitions,
            verifier,
            public_base_url: var("PUBLIC_BASE_URL").map(|u| u.trim_end_matches('/').to_owned()),
            budget_ms,
            callback_secret,
        }))
    }

    /// The URL HubSpot signed for a request whose raw URL is `raw_url` and whose path and
    /// query are `path_and_query`: the configured public base URL with them, else the raw URL.
    pub fn signed_url(&self, raw_url: &str, path_and_query: &str) -> String {
        match &self.public_base_url {
            Some(base) => format!("{base}{path_and_query}"),
            None => raw_url.to_owned(),
        }
    }
}
