//! Configuration, read from the Worker's environment (secrets and `[vars]`; `.dev.vars`
//! locally). Every key is documented in the README's configuration table and in
//! `.dev.vars.example`. Each part of the Worker asks only for what it needs, so a missing
//! forwarding secret does not stop webhooks from being accepted and queued.

use hubspot_edge_core::delivery::RetryPolicy;
use hubspot_edge_core::filter::Filter;
use hubspot_edge_core::mapping::Mapping;
use hubspot_edge_core::outbound::WebhookSecret;
use hubspot_edge_core::signature::{ClientSecret, LegacySignatures, Verifier};
use worker::Env;

/// A setting is missing or invalid; the message names the key.
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub(crate) key: &'static str,
    pub(crate) problem: String,
}

impl ConfigError {
    pub(crate) fn code(&self) -> &'static str {
        "config_invalid"
    }

    pub(crate) fn message(&self) -> String {
        format!("configuration key {} {}", self.key, self.problem)
    }
}

type Result<T> = std::result::Result<T, ConfigError>;

fn optional(env: &Env, key: &'static str) -> Option<String> {
    // Secrets and plain vars are both strings on `env`; `var` reads either.
    env.var(key)
        .ok()
        .map(|v| v.to_string())
        .filter(|v| !v.trim().is_empty())
}

fn required(env: &Env, key: &'static str) -> Result<String> {
    optional(env, key).ok_or(ConfigError {
        key,
        problem: "is missing (set it as a Worker secret, or in .dev.vars locally)".into(),
    })
}

fn number(env: &Env, key: &'static str, default: u64) -> Result<u64> {
    match optional(env, key) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|_| ConfigError {
            key,
            problem: "must be a non-negative integer".into(),
        }),
    }
}

fn boolean(env: &Env, key: &'static str, default: bool) -> Result<bool> {
    match optional(env, key).as_deref().map(str::trim) {
        None => Ok(default),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(_) => Err(ConfigError {
            key,
            problem: "must be true or false".into(),
        }),
    }
}

/// Everything the webhook ingress needs.
#[derive(Debug)]
pub(crate) struct Ingress {
    pub(crate) verifier: Verifier,
    pub(crate) public_base_url: Option<String>,
    pub(crate) max_body_bytes: u64,
    pub(crate) filter: Filter,
}

/// Default body limit: 100 events of a few hundred bytes are ~30 KB; a property value can be
/// up to 64 KB, so 4 MiB leaves room for pathological batches while bounding memory.
pub(crate) const DEFAULT_MAX_BODY_BYTES: u64 = 4 * 1024 * 1024;

impl Ingress {
    pub(crate) fn from_env(env: &Env) -> Result<Self> {
        let secret = required(env, "HUBSPOT_CLIENT_SECRET")?;
        let legacy = if boolean(env, "ALLOW_LEGACY_SIGNATURES", false)? {
            LegacySignatures::Accept
        } else {
            LegacySignatures::Reject
        };
        let max_age_secs = number(
            env,
            "SIGNATURE_MAX_AGE_SECS",
            Verifier::DEFAULT_MAX_AGE_MS / 1000,
        )?;
        let verifier = Verifier::new(ClientSecret::new(secret))
            .with_legacy(legacy)
            .with_max_age_ms(max_age_secs.saturating_mul(1000));
        let public_base_url =
            optional(env, "PUBLIC_BASE_URL").map(|u| u.trim().trim_end_matches('/').to_owned());
        if let Some(u) = &public_base_url {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                return Err(ConfigError {
                    key: "PUBLIC_BASE_URL",
                    problem: "must start with https://".into(),
                });
            }
        }
        let filter = match optional(env, "FILTER_RULES") {
            None => Filter::default(),
            Some(json) => Filter::from_json(&json).map_err(|e| ConfigError {
                key: "FILTER_RULES",
                problem: e.to_string(),
            })?,
        };
        Ok(Self {
            verifier,
            public_base_url,
            max_body_bytes: number(env, "MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)?,
            filter,
        })
    }
}

/// Everything the forwarding consumer needs.
#[derive(Debug)]
pub(crate) struct Forward {
    pub(crate) url: String,
    pub(crate) secret: WebhookSecret,
    pub(crate) timeout_ms: u64,
    pub(crate) retry: RetryPolicy,
    pub(crate) dedupe_ttl_secs: u64,
    /// `FORWARD_BATCH_BUDGET_SECS`, in ms: how long one queue batch may spend forwarding before
    /// the forwards not yet started go back to the queue.
    pub(crate) batch_budget_ms: u64,
    /// `ENRICHMENT_MAP`: object types to enrich (read, map, diff) before forwarding; `None`
    /// forwards every event thin.
    pub(crate) enrichment: Option<Mapping>,
}

impl Forward {
    pub(crate) fn from_env(env: &Env) -> Result<Self> {
        let url = required(env, "FORWARD_URL")?;
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError {
                key: "FORWARD_URL",
                problem: "must be an http(s) URL".into(),
            });
        }
        let secret =
            WebhookSecret::parse(&required(env, "FORWARD_SECRET")?).map_err(|e| ConfigError {
                key: "FORWARD_SECRET",
                problem: e.to_string(),
            })?;
        let defaults = RetryPolicy::default();
        let max_attempts = number(
            env,
            "FORWARD_MAX_ATTEMPTS",
            u64::from(defaults.max_attempts),
        )?;
        let retry = RetryPolicy {
            max_attempts: u32::try_from(max_attempts.clamp(1, 100)).unwrap_or(100),
            base_delay_secs: number(env, "FORWARD_RETRY_BASE_SECS", defaults.base_delay_secs)?,
            max_delay_secs: number(env, "FORWARD_RETRY_MAX_SECS", defaults.max_delay_secs)?,
        };
        // KV's smallest TTL is 60 s. Three days covers HubSpot's 24 h of retries with margin.
        let dedupe_ttl_secs = number(env, "DEDUPE_TTL_SECS", 3 * 24 * 3600)?.max(60);
        Ok(Self {
            url,
            secret,
            timeout_ms: number(env, "FORWARD_TIMEOUT_MS", 10_000)?.clamp(100, 120_000),
            retry,
            dedupe_ttl_secs,
            batch_budget_ms: number(env, "FORWARD_BATCH_BUDGET_SECS", 30)?.saturating_mul(1000),
            enrichment: enrichment(env)?,
        })
    }
}

/// `ENRICHMENT_MAP`, compiled: `None` when unset. The message of an invalid map names the entry
/// and carries core's code (`mapping_config_invalid`), never a value.
pub(crate) fn enrichment(env: &Env) -> Result<Option<Mapping>> {
    optional(env, "ENRICHMENT_MAP")
        .map(|json| {
            Mapping::from_json(&json).map_err(|e| ConfigError {
                key: "ENRICHMENT_MAP",
                problem: format!("is invalid ({}): {e}", e.code()),
            })
        })
        .transpose()
}

/// The admin token, compared in constant time.
pub(crate) fn admin_token(env: &Env) -> Result<String> {
    required(env, "ADMIN_TOKEN")
}

/// Everything the HubSpot API executor needs (`/admin/hubspot/*`).
#[derive(Debug)]
pub(crate) struct HubSpotApi {
    /// Base URL and path style of every request.
    pub(crate) api: hubspot_edge_core::api::ApiConfig,
    /// How calls authenticate: a private-app token or an OAuth refresh token.
    pub(crate) auth: HubSpotAuth,
    /// Per-attempt timeout (headers and body).
    pub(crate) timeout_ms: u64,
    /// The account's limits, for the rate governor (in the gate, shared by all isolates).
    pub(crate) governor: hubspot_edge_core::ratelimit::GovernorConfig,
}

/// How the executor authenticates to HubSpot.
#[derive(Debug, Clone)]
pub(crate) enum HubSpotAuth {
    /// `HUBSPOT_ACCESS_TOKEN`: a private-app (or otherwise static) token.
    Static(AccessToken),
    /// `HUBSPOT_CLIENT_ID` + `HUBSPOT_CLIENT_SECRET` + `HUBSPOT_REFRESH_TOKEN`: access tokens
    /// are obtained (and refreshed) with the refresh token.
    OAuth {
        /// The app's client id and secret (`Debug` redacts the secret).
        client: hubspot_edge_core::api::OAuthClient,
        /// The long-lived refresh token.
        refresh_token: AccessToken,
        /// Refresh this long before the access token expires (`HUBSPOT_TOKEN_REFRESH_MARGIN_SECS`).
        margin_ms: u64,
    },
}

/// A HubSpot access token; `Debug` prints `[redacted]`.
#[derive(Clone)]
pub(crate) struct AccessToken(String);

impl AccessToken {
    pub(crate) fn new(token: String) -> Self {
        Self(token)
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

impl HubSpotApi {
    pub(crate) fn from_env(env: &Env) -> Result<Self> {
        use hubspot_edge_core::api::{ApiConfig, PathStyle, DEFAULT_API_VERSION, DEFAULT_BASE_URL};
        use hubspot_edge_core::ratelimit::{GovernorConfig, Tier};

        let auth = match optional(env, "HUBSPOT_ACCESS_TOKEN") {
            Some(token) => HubSpotAuth::Static(AccessToken(token.trim().to_owned())),
            None => match (
                optional(env, "HUBSPOT_CLIENT_ID"),
                optional(env, "HUBSPOT_CLIENT_SECRET"),
                optional(env, "HUBSPOT_REFRESH_TOKEN"),
            ) {
                (Some(id), Some(secret), Some(refresh)) => HubSpotAuth::OAuth {
                    client: hubspot_edge_core::api::OAuthClient {
                        client_id: id.trim().to_owned(),
                        client_secret: secret.trim().to_owned(),
                    },
                    refresh_token: AccessToken(refresh.trim().to_owned()),
                    margin_ms: number(env, "HUBSPOT_TOKEN_REFRESH_MARGIN_SECS", 300)?
                        .min(1500)
                        .saturating_mul(1000),
                },
                _ => {
                    return Err(ConfigError {
                        key: "HUBSPOT_ACCESS_TOKEN",
                        problem: "is not set (nor HUBSPOT_CLIENT_ID, HUBSPOT_CLIENT_SECRET and \
                                  HUBSPOT_REFRESH_TOKEN for OAuth)"
                            .into(),
                    })
                }
            },
        };
        let base_url = optional(env, "HUBSPOT_API_BASE_URL")
            .map_or_else(|| DEFAULT_BASE_URL.to_owned(), |u| u.trim().to_owned());
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(ConfigError {
                key: "HUBSPOT_API_BASE_URL",
                problem: "must be an http(s) URL".into(),
            });
        }
        let path_style = match optional(env, "HUBSPOT_API_VERSION")
            .as_deref()
            .map(str::trim)
        {
            None => PathStyle::DateVersioned(DEFAULT_API_VERSION.to_owned()),
            Some("legacy" | "v3") => PathStyle::Legacy,
            Some(v) if is_date_version(v) => PathStyle::DateVersioned(v.to_owned()),
            Some(_) => {
                return Err(ConfigError {
                    key: "HUBSPOT_API_VERSION",
                    problem: "must be a date version like 2026-03, or legacy".into(),
                })
            }
        };
        let tier = match optional(env, "HUBSPOT_TIER").as_deref().map(str::trim) {
            None | Some("free") => Tier::Free,
            Some("starter") => Tier::Starter,
            Some("professional") => Tier::Professional,
            Some("enterprise") => Tier::Enterprise,
            Some("api-add-on") => Tier::ApiAddOn,
            Some(_) => {
                return Err(ConfigError {
                    key: "HUBSPOT_TIER",
                    problem: "must be free, starter, professional, enterprise or api-add-on".into(),
                })
            }
        };
        Ok(Self {
            api: ApiConfig {
                base_url: base_url.trim_end_matches('/').to_owned(),
                path_style,
            },
            auth,
            timeout_ms: number(env, "HUBSPOT_TIMEOUT_MS", 10_000)?.clamp(100, 60_000),
            governor: GovernorConfig::for_tier(tier),
        })
    }
}

/// `YYYY-MM`.
fn is_date_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
}

/// `DEAD_LETTER_RETENTION_DAYS`: how long a dead letter is kept (default 14, 1..=365).
pub(crate) fn dead_letter_retention(
    env: &Env,
) -> Result<hubspot_edge_core::dead_letter::Retention> {
    use hubspot_edge_core::dead_letter::Retention;
    const KEY: &str = "DEAD_LETTER_RETENTION_DAYS";
    let days = number(env, KEY, u64::from(Retention::DEFAULT_DAYS)).map_err(|_| ConfigError {
        key: KEY,
        problem: "must be a whole number of days from 1 to 365".into(),
    })?;
    Retention::from_days(days).map_err(|e| ConfigError {
        key: KEY,
        problem: e.to_string(),
    })
}

/// `FAULT_INJECTION`: test only, off by default. When `true`, `POST /admin/faults/…` (behind
/// the admin token) can make the Worker's own dependencies fail on purpose.
pub(crate) fn fault_injection(env: &Env) -> Result<bool> {
    boolean(env, "FAULT_INJECTION", false)
}
