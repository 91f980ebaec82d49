//! The deployment's configuration, parsed once from a key lookup (the Worker's environment,
//! a test table, anything that maps a key to a string).
//!
//! Parse, don't clamp: a value out of its accepted range is an error naming the key and the
//! range ([`ConfigError`]), never silently replaced by the nearest bound. Every numeric key's
//! range is a documented constant ([`NumberKey`], listed in [`NUMBER_KEYS`]). URLs must be
//! `https://`; plain `http://` is accepted only for loopback hosts (`127.0.0.0/8`,
//! `localhost`, `[::1]`), for local development and tests.
//!
//! The configuration is read in parts ([`Ingress`], [`ForwardConfig`], [`HubSpotApi`],
//! [`admin_token`]) so that one part's problem does not stop another: a missing forwarding
//! secret still lets webhooks be accepted and queued. [`check`] reads every part and reports
//! every problem of the deployment by key, code and [`Part`] (the Worker's `/healthz`).
//!
//! Error details name keys and ranges but never echo a value that could be a secret (only
//! numbers that parsed are quoted). Their [`ConfigError::public_code`] (`config_invalid`) is
//! what unauthenticated callers may see; the message is for logs and authenticated operators.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::api::{ApiConfig, OAuthClient, PathStyle, DEFAULT_API_VERSION, DEFAULT_BASE_URL};
use crate::dead_letter::Retention;
use crate::delivery::{DeliveryRetryPolicy, MAX_QUEUE_DELAY_SECS};
use crate::filter::Filter;
use crate::id::PortalId;
use crate::mapping::Mapping;
use crate::outbound::WebhookSecret;
use crate::ratelimit::{GovernorConfig, Tier};
use crate::rules::{Destination, Destinations, Rules};
use crate::signature::{ClientSecret, LegacySignatures, Verifier};

/// A numeric key, its default and its accepted range (both bounds included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberKey {
    /// The environment key.
    pub key: &'static str,
    /// Used when the key is unset or blank.
    pub default: u64,
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
}

/// `SIGNATURE_MAX_AGE_SECS`: oldest accepted v3 timestamp. HubSpot: "Reject the request if the
/// timestamp is older than 5 minutes" (docs/hubspot.md §1.4 step 1,
/// <https://developers.hubspot.com/docs/apps/legacy-apps/authentication/validating-requests>),
/// the default; up to an hour tolerates a skewed clock,
/// beyond that a captured request could be replayed for too long.
pub const SIGNATURE_MAX_AGE_SECS: NumberKey = NumberKey {
    key: "SIGNATURE_MAX_AGE_SECS",
    default: Verifier::DEFAULT_MAX_AGE_MS / 1000,
    min: 1,
    max: 3600,
};

/// `MAX_BODY_BYTES`: largest accepted webhook body. A HubSpot batch is at most 100 events of a
/// few hundred bytes, a property value up to 64 KB; 4 MiB by default. At most 16 MiB: the body
/// is held once, parsed in place and copied into queue messages inside an isolate's 128 MB.
pub const MAX_BODY_BYTES: NumberKey = NumberKey {
    key: "MAX_BODY_BYTES",
    default: 4 * 1024 * 1024,
    min: 1024,
    max: 16 * 1024 * 1024,
};

/// `FORWARD_TIMEOUT_MS`: per-attempt timeout of a forward (100 ms to 2 minutes).
pub const FORWARD_TIMEOUT_MS: NumberKey = NumberKey {
    key: "FORWARD_TIMEOUT_MS",
    default: 10_000,
    min: 100,
    max: 120_000,
};

/// `FORWARD_MAX_ATTEMPTS`: attempts per event before it is dead-lettered. At most 100, the
/// largest `max_retries` Cloudflare Queues accept.
pub const FORWARD_MAX_ATTEMPTS: NumberKey = NumberKey {
    key: "FORWARD_MAX_ATTEMPTS",
    default: 8,
    min: 1,
    max: 100,
};

/// `FORWARD_RETRY_BASE_SECS`: first retry delay; at most Queues' 12-hour delay cap.
pub const FORWARD_RETRY_BASE_SECS: NumberKey = NumberKey {
    key: "FORWARD_RETRY_BASE_SECS",
    default: 10,
    min: 1,
    max: MAX_QUEUE_DELAY_SECS,
};

/// `FORWARD_RETRY_MAX_SECS`: largest retry delay, `Retry-After` included; at most Queues'
/// 12-hour delay cap, and not below `FORWARD_RETRY_BASE_SECS`.
pub const FORWARD_RETRY_MAX_SECS: NumberKey = NumberKey {
    key: "FORWARD_RETRY_MAX_SECS",
    default: 30 * 60,
    min: 1,
    max: MAX_QUEUE_DELAY_SECS,
};

/// `FORWARD_BATCH_BUDGET_SECS`: how long one queue batch may spend starting forwards before
/// the rest goes back to the queue. At most 10 minutes: a queue consumer invocation may run 15
/// minutes of wall time, and the last forwards started need their timeout after the budget.
pub const FORWARD_BATCH_BUDGET_SECS: NumberKey = NumberKey {
    key: "FORWARD_BATCH_BUDGET_SECS",
    default: 30,
    min: 1,
    max: 600,
};

/// `DEAD_LETTER_RETENTION_DAYS`: how long a dead letter is kept ([`Retention`]'s bounds; 14
/// days by default, Queues' longest retention).
pub const DEAD_LETTER_RETENTION_DAYS: NumberKey = NumberKey {
    key: "DEAD_LETTER_RETENTION_DAYS",
    default: Retention::DEFAULT_DAYS as u64,
    min: Retention::MIN_DAYS as u64,
    max: Retention::MAX_DAYS as u64,
};

/// `DEDUPE_TTL_SECS`: how long a delivered event's key is remembered. At least 60 s (KV's
/// smallest TTL); 3 days by default (HubSpot retries for up to 24 h); at most 30 days.
pub const DEDUPE_TTL_SECS: NumberKey = NumberKey {
    key: "DEDUPE_TTL_SECS",
    default: 3 * 24 * 3600,
    min: 60,
    max: 30 * 24 * 3600,
};

/// `HUBSPOT_TIMEOUT_MS`: per-attempt timeout of a HubSpot API call (100 ms to 1 minute).
pub const HUBSPOT_TIMEOUT_MS: NumberKey = NumberKey {
    key: "HUBSPOT_TIMEOUT_MS",
    default: 10_000,
    min: 100,
    max: 60_000,
};

/// `HUBSPOT_TOKEN_REFRESH_MARGIN_SECS`: refresh an OAuth access token this long before it
/// expires. Access tokens live 30 minutes (docs/hubspot.md §6,
/// <https://developers.hubspot.com/docs/api-reference/legacy/authentication/manage-oauth-tokens>),
/// so at most 25 minutes.
pub const HUBSPOT_TOKEN_REFRESH_MARGIN_SECS: NumberKey = NumberKey {
    key: "HUBSPOT_TOKEN_REFRESH_MARGIN_SECS",
    default: 300,
    min: 0,
    max: 1500,
};

/// `SYNC_INCREMENTAL_MINUTES`: minutes between the outbound sync's incremental runs (docs/sync.md,
/// "Incremental runs"): 5 by default, 1 (the cron trigger's period) to 1,440 (a day).
pub const SYNC_INCREMENTAL_MINUTES: NumberKey = NumberKey {
    key: "SYNC_INCREMENTAL_MINUTES",
    default: 5,
    min: 1,
    max: 1440,
};

/// `SYNC_FULL_HOURS`: hours between full runs (the reconcile, which finds records deleted while
/// no webhook arrived): 24 by default, 1 to 720 (30 days; HubSpot's recycling bin keeps 90).
pub const SYNC_FULL_HOURS: NumberKey = NumberKey {
    key: "SYNC_FULL_HOURS",
    default: 24,
    min: 1,
    max: 720,
};

/// `SYNC_LAG_SECS`: incremental runs read changes up to `run start − lag` (search is eventually
/// consistent near now, docs/sync.md "Incremental runs"): 60 by default, 0 (a test against a
/// consistent mock) to 3,600.
pub const SYNC_LAG_SECS: NumberKey = NumberKey {
    key: "SYNC_LAG_SECS",
    default: 60,
    min: 0,
    max: 3600,
};

/// `SYNC_LEASE_SECS`: a work unit not reported within this long is queued again by its run's
/// coordinator (its consumer died, or its message was lost): 900 by default and at most, Queues'
/// 15 minutes of wall time per consumer invocation, so only dead units are re-queued; at least
/// 10 (tests).
pub const SYNC_LEASE_SECS: NumberKey = NumberKey {
    key: "SYNC_LEASE_SECS",
    default: 900,
    min: 10,
    max: 900,
};

/// `ALERT_EVALUATION_SECS`: how often the metrics object evaluates the alert rules while
/// metrics arrive; one minute by default (the rules' windows are whole minutes), at least 1 s
/// (tests), at most an hour.
pub const ALERT_EVALUATION_SECS: NumberKey = NumberKey {
    key: "ALERT_EVALUATION_SECS",
    default: 60,
    min: 1,
    max: 3_600,
};

/// `ACTIONS_BUDGET_MS`: how long a workflow action may take before it answers `BLOCK` and
/// completes later. Default 3 s: HubSpot does not document its timeout for actions, and 5 s is
/// its webhook deadline (docs/actions.md); below 100 ms every lookup would block; above 25 s a
/// late lookup would outlive `waitUntil`'s 30 s (Cloudflare Workers limits).
pub const ACTIONS_BUDGET_MS: NumberKey = NumberKey {
    key: "ACTIONS_BUDGET_MS",
    default: crate::actions::DEFAULT_BUDGET_MS,
    min: 100,
    max: 25_000,
};

/// `ACTIONS_COMPLETE_WINDOW_MS`: how long a completion waits for others to share its batch
/// completion call (0: sent at once).
pub const ACTIONS_COMPLETE_WINDOW_MS: NumberKey = NumberKey {
    key: "ACTIONS_COMPLETE_WINDOW_MS",
    default: crate::actions::DEFAULT_COMPLETE_WINDOW_MS,
    min: 0,
    max: 60_000,
};

/// Every numeric key.
pub const NUMBER_KEYS: [NumberKey; 18] = [
    ACTIONS_BUDGET_MS,
    ACTIONS_COMPLETE_WINDOW_MS,
    ALERT_EVALUATION_SECS,
    SYNC_INCREMENTAL_MINUTES,
    SYNC_FULL_HOURS,
    SYNC_LAG_SECS,
    SYNC_LEASE_SECS,
    SIGNATURE_MAX_AGE_SECS,
    MAX_BODY_BYTES,
    FORWARD_TIMEOUT_MS,
    FORWARD_MAX_ATTEMPTS,
    FORWARD_RETRY_BASE_SECS,
    FORWARD_RETRY_MAX_SECS,
    FORWARD_BATCH_BUDGET_SECS,
    DEAD_LETTER_RETENTION_DAYS,
    DEDUPE_TTL_SECS,
    HUBSPOT_TIMEOUT_MS,
    HUBSPOT_TOKEN_REFRESH_MARGIN_SECS,
];

/// A configuration key is missing or invalid. The operator's fault; every variant names the
/// key, and the message never contains the value unless it is a number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required key is unset or blank.
    #[error(
        "configuration key {key} is missing (set it as a Worker secret, or in .dev.vars locally)"
    )]
    Missing {
        /// The key.
        key: &'static str,
    },
    /// A numeric key is not a non-negative integer.
    #[error("configuration key {} must be an integer from {} to {}", .0.key, .0.min, .0.max)]
    NotAnInteger(NumberKey),
    /// A numeric key is outside its accepted range.
    #[error("configuration key {} must be from {} to {} (got {value})", .key.key, .key.min, .key.max)]
    OutOfRange {
        /// The key and its range.
        key: NumberKey,
        /// The value given.
        value: u64,
    },
    /// `FORWARD_RETRY_MAX_SECS` is below `FORWARD_RETRY_BASE_SECS` (or a similar pair).
    #[error("configuration key {key} must not be below {other}")]
    Below {
        /// The key that is too small.
        key: &'static str,
        /// The key it must not be below.
        other: &'static str,
    },
    /// A boolean key is not `true`/`false` (or `1`/`0`, `yes`/`no`).
    #[error("configuration key {key} must be true or false")]
    NotABoolean {
        /// The key.
        key: &'static str,
    },
    /// A URL key is not an absolute `https://` URL with a host.
    #[error("configuration key {key} must be an absolute https:// URL")]
    NotAUrl {
        /// The key.
        key: &'static str,
    },
    /// A URL key is `http://` to a host that is not loopback.
    #[error(
        "configuration key {key} must use https:// (plain http:// only for 127.0.0.0/8, \
         localhost or [::1])"
    )]
    PlainHttp {
        /// The key.
        key: &'static str,
    },
    /// A key takes one of a few words and has another.
    #[error("configuration key {key} must be {accepted}")]
    NotAccepted {
        /// The key.
        key: &'static str,
        /// The accepted values, in words.
        accepted: &'static str,
    },
    /// A structured key (filter rules, enrichment map, signing secret) does not parse.
    #[error("configuration key {key} is invalid ({code}): {detail}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The parser's stable code.
        code: &'static str,
        /// The parser's message (names entries, never values).
        detail: String,
    },
}

impl ConfigError {
    /// Stable code of this kind of problem: `config_missing`, `config_not_an_integer`,
    /// `config_out_of_range`, `config_below`, `config_not_a_boolean`, `config_not_a_url`,
    /// `config_plain_http`, `config_not_accepted`, or the structured parser's own code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "config_missing",
            Self::NotAnInteger(_) => "config_not_an_integer",
            Self::OutOfRange { .. } => "config_out_of_range",
            Self::Below { .. } => "config_below",
            Self::NotABoolean { .. } => "config_not_a_boolean",
            Self::NotAUrl { .. } => "config_not_a_url",
            Self::PlainHttp { .. } => "config_plain_http",
            Self::NotAccepted { .. } => "config_not_accepted",
            Self::Invalid { code, .. } => code,
        }
    }

    /// What a caller who is not an operator may see: always `config_invalid`.
    pub fn public_code(&self) -> &'static str {
        "config_invalid"
    }

    /// The message a caller who is not an operator may see (the webhook endpoint, an admin
    /// request before its token is checked): never a key's value or range, and no key except
    /// for an unset `ADMIN_TOKEN`, which tells an admin caller that the admin API is disabled.
    pub fn public_message(&self) -> &'static str {
        match self {
            Self::Missing { key: "ADMIN_TOKEN" } => {
                "the admin API is disabled: ADMIN_TOKEN is not set"
            }
            _ => "the Worker's configuration is invalid; its log names the key",
        }
    }

    /// The key at fault.
    pub fn key(&self) -> &'static str {
        match self {
            Self::NotAnInteger(k) | Self::OutOfRange { key: k, .. } => k.key,
            Self::Missing { key }
            | Self::Below { key, .. }
            | Self::NotABoolean { key }
            | Self::NotAUrl { key }
            | Self::PlainHttp { key }
            | Self::NotAccepted { key, .. }
            | Self::Invalid { key, .. } => key,
        }
    }
}

/// A key lookup: the raw value of a key, `None` when unset. Blank values count as unset.
#[derive(Clone, Copy)]
pub struct Lookup<F>(F);

impl<F> fmt::Debug for Lookup<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Lookup")
    }
}

impl<F: Fn(&str) -> Option<String>> Lookup<F> {
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        Self(f)
    }

    /// The trimmed value of `key`; `None` when unset or blank.
    pub fn optional(&self, key: &str) -> Option<String> {
        (self.0)(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// The trimmed value of `key`.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when unset or blank.
    pub fn required(&self, key: &'static str) -> Result<String, ConfigError> {
        self.optional(key).ok_or(ConfigError::Missing { key })
    }

    /// `key`'s number, its default when unset.
    ///
    /// # Errors
    /// [`ConfigError::NotAnInteger`], [`ConfigError::OutOfRange`].
    pub fn number(&self, key: NumberKey) -> Result<u64, ConfigError> {
        key.parse(self.optional(key.key).as_deref())
    }

    /// `key` as a boolean (`true`/`1`/`yes`, `false`/`0`/`no`), `default` when unset.
    ///
    /// # Errors
    /// [`ConfigError::NotABoolean`].
    pub fn boolean(&self, key: &'static str, default: bool) -> Result<bool, ConfigError> {
        match self.optional(key).as_deref() {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(_) => Err(ConfigError::NotABoolean { key }),
        }
    }

    /// `key` as a URL (see [`check_url`]), without a trailing slash; `None` when unset.
    ///
    /// # Errors
    /// [`ConfigError::NotAUrl`], [`ConfigError::PlainHttp`].
    pub fn url(&self, key: &'static str) -> Result<Option<String>, ConfigError> {
        self.optional(key)
            .map(|u| check_url(key, &u).map(|()| u.trim_end_matches('/').to_owned()))
            .transpose()
    }
}

impl NumberKey {
    /// Parses a raw value (`None`: unset, the default).
    ///
    /// # Errors
    /// [`ConfigError::NotAnInteger`] when `raw` is not a non-negative integer,
    /// [`ConfigError::OutOfRange`] when it is outside `min..=max`.
    pub fn parse(self, raw: Option<&str>) -> Result<u64, ConfigError> {
        let Some(raw) = raw.map(str::trim) else {
            return Ok(self.default);
        };
        let value: u64 = raw.parse().map_err(|_| ConfigError::NotAnInteger(self))?;
        if (self.min..=self.max).contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::OutOfRange { key: self, value })
        }
    }
}

/// Checks that `url` is an absolute `https://` URL with a host, or `http://` to a loopback
/// host (`127.0.0.0/8`, `localhost`, `[::1]`).
///
/// # Errors
/// [`ConfigError::NotAUrl`], [`ConfigError::PlainHttp`] (naming `key`).
pub fn check_url(key: &'static str, url: &str) -> Result<(), ConfigError> {
    let uri: http::Uri = url.parse().map_err(|_| ConfigError::NotAUrl { key })?;
    let host = uri.host().filter(|h| !h.is_empty());
    match (uri.scheme_str(), host) {
        (Some("https"), Some(_)) => Ok(()),
        (Some("http"), Some(host)) if is_loopback(host) => Ok(()),
        (Some("http"), Some(_)) => Err(ConfigError::PlainHttp { key }),
        _ => Err(ConfigError::NotAUrl { key }),
    }
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|a| a.is_loopback());
    }
    host.parse::<Ipv4Addr>().is_ok_and(|a| a.is_loopback())
}

/// Everything the webhook ingress needs.
#[derive(Debug)]
pub struct Ingress {
    /// Verifies HubSpot's signatures (`HUBSPOT_CLIENT_SECRET`, `ALLOW_LEGACY_SIGNATURES`,
    /// `SIGNATURE_MAX_AGE_SECS`).
    pub verifier: Verifier,
    /// `PUBLIC_BASE_URL`, without a trailing slash.
    pub public_base_url: Option<String>,
    /// `MAX_BODY_BYTES`.
    pub max_body_bytes: u64,
    /// `FILTER_RULES`, compiled.
    pub filter: Filter,
}

impl Ingress {
    /// The URL HubSpot signed for a request whose raw URL is `raw_url`: the public base URL
    /// with the request's path and query when configured (custom domains, proxies), else the
    /// raw URL as the runtime received it.
    pub fn signed_url(&self, raw_url: &str) -> String {
        match &self.public_base_url {
            Some(base) => format!("{base}{}", crate::ingress::path_and_query(raw_url)),
            None => raw_url.to_owned(),
        }
    }
    /// Reads the ingress keys.
    ///
    /// # Errors
    /// The first missing or invalid key (see [`Ingress::read`] for all of them).
    pub fn from_lookup<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Self, ConfigError> {
        Self::read(lookup).map_err(first)
    }

    /// Reads the ingress keys, reporting every problem.
    ///
    /// # Errors
    /// Every missing or invalid key, in key order (never empty).
    pub fn read<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let secret = errors.take(lookup.required("HUBSPOT_CLIENT_SECRET"));
        let legacy = errors.take(lookup.boolean("ALLOW_LEGACY_SIGNATURES", false));
        let max_age_secs = errors.take(lookup.number(SIGNATURE_MAX_AGE_SECS));
        let public_base_url = errors.take(lookup.url("PUBLIC_BASE_URL"));
        let max_body_bytes = errors.take(lookup.number(MAX_BODY_BYTES));
        let filter = errors.take(match lookup.optional("FILTER_RULES") {
            None => Ok(Filter::default()),
            Some(json) => Filter::from_json(&json).map_err(|e| ConfigError::Invalid {
                key: "FILTER_RULES",
                code: e.code(),
                detail: e.to_string(),
            }),
        });
        match (
            secret,
            legacy,
            max_age_secs,
            public_base_url,
            max_body_bytes,
            filter,
        ) {
            (
                Some(secret),
                Some(legacy),
                Some(max_age_secs),
                Some(public_base_url),
                Some(max_body_bytes),
                Some(filter),
            ) => {
                let legacy = if legacy {
                    LegacySignatures::Accept
                } else {
                    LegacySignatures::Reject
                };
                Ok(Self {
                    verifier: Verifier::new(ClientSecret::new(secret))
                        .with_legacy(legacy)
                        .with_max_age_ms(max_age_secs * 1000),
                    public_base_url,
                    max_body_bytes,
                    filter,
                })
            }
            _ => Err(errors.into_vec()),
        }
    }
}

/// Everything the forwarding consumer needs.
#[derive(Debug)]
pub struct ForwardConfig {
    /// `FORWARD_URL`.
    pub url: String,
    /// `FORWARD_SECRET`.
    pub secret: WebhookSecret,
    /// `FORWARD_TIMEOUT_MS`.
    pub timeout_ms: u64,
    /// `FORWARD_MAX_ATTEMPTS`, `FORWARD_RETRY_BASE_SECS`, `FORWARD_RETRY_MAX_SECS`.
    pub retry: DeliveryRetryPolicy,
    /// `DEDUPE_TTL_SECS`.
    pub dedupe_ttl_secs: u64,
    /// `FORWARD_BATCH_BUDGET_SECS`, in ms: how long one queue batch may spend forwarding before
    /// the forwards not yet started go back to the queue.
    pub batch_budget_ms: u64,
    /// `ENRICHMENT_MAP`: object types to enrich before forwarding; `None` forwards every event
    /// thin.
    pub enrichment: Option<Mapping>,
    /// `DESTINATIONS` and their secrets, with `default` (`FORWARD_URL`, `FORWARD_SECRET`).
    pub destinations: Destinations,
    /// `RULES` (none when unset), checked against `ENRICHMENT_MAP` and `DESTINATIONS`.
    pub rules: Rules,
}

impl ForwardConfig {
    /// Reads the forwarding keys.
    ///
    /// # Errors
    /// The first missing or invalid key (see [`ForwardConfig::read`] for all of them).
    pub fn from_lookup<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Self, ConfigError> {
        Self::read(lookup).map_err(first)
    }

    /// Reads the forwarding keys (`ENRICHMENT_MAP` included), reporting every problem.
    ///
    /// # Errors
    /// Every missing or invalid key, in key order (never empty).
    pub fn read<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let url = errors.take(
            lookup
                .url("FORWARD_URL")
                .and_then(|u| u.ok_or(ConfigError::Missing { key: "FORWARD_URL" })),
        );
        let secret = errors.take(lookup.required("FORWARD_SECRET").and_then(|s| {
            WebhookSecret::parse(&s).map_err(|e| ConfigError::Invalid {
                key: "FORWARD_SECRET",
                code: "forward_secret_invalid",
                detail: e.to_string(),
            })
        }));
        let retry = match read_retry_policy(lookup) {
            Ok(policy) => Some(policy),
            Err(more) => {
                errors.0.extend(more);
                None
            }
        };
        let timeout_ms = errors.take(lookup.number(FORWARD_TIMEOUT_MS));
        let dedupe_ttl_secs = errors.take(lookup.number(DEDUPE_TTL_SECS));
        let batch_budget_secs = errors.take(lookup.number(FORWARD_BATCH_BUDGET_SECS));
        let enrichment = errors.take(enrichment(lookup));
        let destinations = match (&url, &secret) {
            (Some(url), Some(secret)) => errors.take(destinations(
                lookup,
                Destination {
                    url: url.clone(),
                    secret: secret.clone(),
                },
            )),
            _ => None,
        };
        let rules = match (&enrichment, &destinations) {
            (Some(mapping), Some(destinations)) => {
                errors.take(rules(lookup, mapping.as_ref(), destinations))
            }
            _ => None,
        };
        match (
            (url, secret, retry, timeout_ms),
            (dedupe_ttl_secs, batch_budget_secs, enrichment),
            (destinations, rules),
        ) {
            (
                (Some(url), Some(secret), Some(retry), Some(timeout_ms)),
                (Some(dedupe_ttl_secs), Some(batch_budget_secs), Some(enrichment)),
                (Some(destinations), Some(rules)),
            ) => Ok(Self {
                url,
                secret,
                timeout_ms,
                retry,
                dedupe_ttl_secs,
                batch_budget_ms: batch_budget_secs * 1000,
                enrichment,
                destinations,
                rules,
            }),
            _ => Err(errors.into_vec()),
        }
    }
}

/// `FORWARD_MAX_ATTEMPTS`, `FORWARD_RETRY_BASE_SECS`, `FORWARD_RETRY_MAX_SECS`: the forwarding
/// retry policy, on its own so that a consumer whose other forwarding keys are broken still
/// retries with the operator's policy (see [`DeliveryRetryPolicy::settle_config_invalid`]).
///
/// # Errors
/// The first invalid key; [`ConfigError::Below`] when the maximum is below the base.
pub fn retry_policy<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
) -> Result<DeliveryRetryPolicy, ConfigError> {
    read_retry_policy(lookup).map_err(first)
}

fn read_retry_policy<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
) -> Result<DeliveryRetryPolicy, Vec<ConfigError>> {
    let mut errors = Errors::default();
    let max_attempts = errors.take(lookup.number(FORWARD_MAX_ATTEMPTS));
    let base_delay_secs = errors.take(lookup.number(FORWARD_RETRY_BASE_SECS));
    let max_delay_secs = errors.take(lookup.number(FORWARD_RETRY_MAX_SECS));
    let (Some(max_attempts), Some(base_delay_secs), Some(max_delay_secs)) =
        (max_attempts, base_delay_secs, max_delay_secs)
    else {
        return Err(errors.into_vec());
    };
    if max_delay_secs < base_delay_secs {
        return Err(vec![ConfigError::Below {
            key: FORWARD_RETRY_MAX_SECS.key,
            other: FORWARD_RETRY_BASE_SECS.key,
        }]);
    }
    Ok(DeliveryRetryPolicy {
        // In range: at most FORWARD_MAX_ATTEMPTS.max (100).
        max_attempts: u32::try_from(max_attempts).unwrap_or(u32::MAX),
        base_delay_secs,
        max_delay_secs,
    })
}

/// `ENRICHMENT_MAP`, compiled: `None` when unset.
///
/// # Errors
/// [`ConfigError::Invalid`] with the mapping's code (`mapping_config_invalid`), naming the
/// entry, never a value.
pub fn enrichment<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
) -> Result<Option<Mapping>, ConfigError> {
    lookup
        .optional("ENRICHMENT_MAP")
        .map(|json| {
            Mapping::from_json(&json).map_err(|e| ConfigError::Invalid {
                key: "ENRICHMENT_MAP",
                code: e.code(),
                detail: e.to_string(),
            })
        })
        .transpose()
}

/// `DESTINATIONS` (optional; [`crate::rules::Destinations`]) next to `default`, each secret from
/// its Worker secret.
///
/// # Errors
/// [`ConfigError::Invalid`] for `DESTINATIONS`, with code `destinations_invalid` or
/// `destination_secret_missing` and the entry named.
pub fn destinations<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
    default: Destination,
) -> Result<Destinations, ConfigError> {
    match lookup.optional("DESTINATIONS") {
        None => Ok(Destinations::default_only(default)),
        Some(json) => Destinations::from_json(&json, Some(default), |key| lookup.optional(key))
            .map_err(|e| ConfigError::Invalid {
                key: "DESTINATIONS",
                code: e.code(),
                detail: e.to_string(),
            }),
    }
}

/// `RULES` (optional; [`crate::rules`]): compiled against `ENRICHMENT_MAP` and the destinations.
///
/// # Errors
/// [`ConfigError::Invalid`] for `RULES`, code `rules_invalid` or `rules_loop`, the message naming
/// the place (`rules[3].when.changes[0].op: …`).
pub fn rules<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
    mapping: Option<&Mapping>,
    destinations: &Destinations,
) -> Result<Rules, ConfigError> {
    match lookup.optional("RULES") {
        None => Ok(Rules::default()),
        Some(json) => {
            Rules::from_json(&json, mapping, destinations).map_err(|e| ConfigError::Invalid {
                key: "RULES",
                code: e.code(),
                detail: e.to_string(),
            })
        }
    }
}

/// `DEAD_LETTER_RETENTION_DAYS`.
///
/// # Errors
/// [`ConfigError::NotAnInteger`], [`ConfigError::OutOfRange`].
pub fn dead_letter_retention<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
) -> Result<Retention, ConfigError> {
    let days = lookup.number(DEAD_LETTER_RETENTION_DAYS)?;
    // In range (the key's bounds are Retention's), so this cannot fail; map it anyway.
    Retention::from_days(days).map_err(|_| ConfigError::OutOfRange {
        key: DEAD_LETTER_RETENTION_DAYS,
        value: days,
    })
}

/// `FAULT_INJECTION`: tests only, `false` by default.
///
/// # Errors
/// [`ConfigError::NotABoolean`].
pub fn fault_injection<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
) -> Result<bool, ConfigError> {
    lookup.boolean("FAULT_INJECTION", false)
}

/// `ADMIN_TOKEN`, the admin API's bearer token.
///
/// # Errors
/// [`ConfigError::Missing`].
pub fn admin_token<F: Fn(&str) -> Option<String>>(
    lookup: &Lookup<F>,
) -> Result<String, ConfigError> {
    lookup.required("ADMIN_TOKEN")
}

/// The outbound sync's settings (docs/sync.md): which object types sync, for which portal, and
/// how often. `None` from [`Sync::read`] when `SYNC_OBJECT_TYPES` is unset: sync is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sync {
    /// `SYNC_PORTAL_ID`: the HubSpot account the token reads (the record store is per portal).
    pub portal_id: PortalId,
    /// `SYNC_OBJECT_TYPES`: object types as written in API paths (`contacts,companies`), each
    /// mapped by `ENRICHMENT_MAP`, each once.
    pub object_types: Vec<String>,
    /// `SYNC_INCREMENTAL_MINUTES`, in ms.
    pub incremental_ms: u64,
    /// `SYNC_FULL_HOURS`, in ms.
    pub full_ms: u64,
    /// `SYNC_LAG_SECS`, in ms (core's [`crate::sync::SyncConfig::lag_ms`]).
    pub lag_ms: u64,
    /// `SYNC_LEASE_SECS`, in ms ([`crate::sync::Run::overdue`]'s lease).
    pub lease_ms: u64,
    /// `SYNC_ASSOCIATIONS`: `(from, to)` object type pairs (`contacts:companies`): the `to`
    /// ids associated with each `from` record are read and delivered with it
    /// ([`crate::sync::SyncConfig::associations`]). Each pair once, `from` a synced type.
    pub associations: Vec<(String, String)>,
}

/// `SYNC_PORTAL_ID`, shared by the outbound and the inbound sync: decimal digits
/// ([`PortalId`]'s form).
fn sync_portal<F: Fn(&str) -> Option<String>>(lookup: &Lookup<F>) -> Result<PortalId, ConfigError> {
    let Some(v) = lookup.optional("SYNC_PORTAL_ID") else {
        return Err(ConfigError::Missing {
            key: "SYNC_PORTAL_ID",
        });
    };
    v.parse().map_err(|_| ConfigError::Invalid {
        key: "SYNC_PORTAL_ID",
        code: "config_not_an_integer",
        detail: "the HubSpot portal (account) id is a number".into(),
    })
}

/// The run a coordinator should start now, if any ([`Sync::due`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing: a run is going, or none is due yet.
    Nothing,
    /// An incremental run.
    Incremental,
    /// A full run (first run, or the reconcile is due).
    Full,
}

impl Sync {
    /// Reads the sync keys: `None` when `SYNC_OBJECT_TYPES` is unset.
    ///
    /// # Errors
    /// Every problem: `SYNC_PORTAL_ID` missing or not a number, an object type that is not a
    /// name or id of letters, digits, `_` and `-`, or that `ENRICHMENT_MAP` does not map
    /// (`sync_type_not_mapped`), intervals out of range.
    pub fn read<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Option<Self>, Vec<ConfigError>> {
        let Some(types) = lookup.optional("SYNC_OBJECT_TYPES") else {
            return Ok(None);
        };
        let mut errors = Errors::default();
        let mut object_types: Vec<String> = Vec::new();
        let mapping = enrichment(lookup).ok().flatten();
        for t in types.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let valid = t.len() <= 64
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !valid {
                errors.0.push(ConfigError::Invalid {
                    key: "SYNC_OBJECT_TYPES",
                    code: "sync_type_invalid",
                    detail: "object types are names or ids of letters, digits, _ and -".into(),
                });
                continue;
            }
            if mapping.as_ref().and_then(|m| m.object(t)).is_none() {
                errors.0.push(ConfigError::Invalid {
                    key: "SYNC_OBJECT_TYPES",
                    code: "sync_type_not_mapped",
                    detail: format!("ENRICHMENT_MAP has no map for the object type {t}"),
                });
                continue;
            }
            if !object_types.iter().any(|o| o == t) {
                object_types.push(t.to_owned());
            }
        }
        let mut associations: Vec<(String, String)> = Vec::new();
        let pairs = lookup.optional("SYNC_ASSOCIATIONS").unwrap_or_default();
        for pair in pairs.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let name = |t: &str| {
                !t.is_empty()
                    && t.len() <= 64
                    && t.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            };
            let parsed = pair
                .split_once(':')
                .map(|(a, b)| (a.trim(), b.trim()))
                .filter(|(a, b)| name(a) && name(b));
            let Some((from, to)) = parsed else {
                errors.0.push(ConfigError::Invalid {
                    key: "SYNC_ASSOCIATIONS",
                    code: "sync_association_invalid",
                    detail: "pairs are from:to object types (contacts:companies), comma-separated"
                        .into(),
                });
                continue;
            };
            if !object_types.iter().any(|t| t == from) {
                errors.0.push(ConfigError::Invalid {
                    key: "SYNC_ASSOCIATIONS",
                    code: "sync_association_not_synced",
                    detail: format!("{from} is not in SYNC_OBJECT_TYPES"),
                });
                continue;
            }
            if !associations.iter().any(|(a, b)| a == from && b == to) {
                associations.push((from.to_owned(), to.to_owned()));
            }
        }
        let portal_id = errors.take(sync_portal(lookup));
        let incremental = errors.take(lookup.number(SYNC_INCREMENTAL_MINUTES));
        let full = errors.take(lookup.number(SYNC_FULL_HOURS));
        let lag = errors.take(lookup.number(SYNC_LAG_SECS));
        let lease = errors.take(lookup.number(SYNC_LEASE_SECS));
        match (portal_id, incremental, full, lag, lease) {
            (Some(portal_id), Some(inc), Some(full), Some(lag), Some(lease))
                if errors.0.is_empty() =>
            {
                Ok(Some(Self {
                    portal_id,
                    object_types,
                    incremental_ms: inc * 60_000,
                    full_ms: full * 3_600_000,
                    lag_ms: lag * 1000,
                    lease_ms: lease * 1000,
                    associations,
                }))
            }
            _ => Err(errors.0),
        }
    }

    /// The object types whose associations `object_type`'s records carry
    /// ([`Self::associations`]), in configured order.
    pub fn associations_of(&self, object_type: &str) -> Vec<String> {
        self.associations
            .iter()
            .filter(|(from, _)| from == object_type)
            .map(|(_, to)| to.clone())
            .collect()
    }

    /// What to start at `now_ms` for one object type whose last incremental (or full) run
    /// started at `last_ms` and last full run at `last_full_ms` (`None`: never), unless one is
    /// `running` or the type is `paused`. A full run is due first (a full run resets both
    /// clocks: it reads everything an incremental run would).
    pub fn due(
        &self,
        now_ms: u64,
        last_ms: Option<u64>,
        last_full_ms: Option<u64>,
        running: bool,
        paused: bool,
    ) -> Due {
        if running || paused {
            return Due::Nothing;
        }
        match (last_full_ms, last_ms) {
            (None, _) => Due::Full,
            (Some(full), _) if now_ms.saturating_sub(full) >= self.full_ms => Due::Full,
            (_, Some(last)) if now_ms.saturating_sub(last) < self.incremental_ms => Due::Nothing,
            _ => Due::Incremental,
        }
    }
}

/// A HubSpot access or refresh token; `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    /// Wraps a token.
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token, for the `Authorization` header.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([redacted])")
    }
}

/// How API calls authenticate to HubSpot.
#[derive(Debug, Clone)]
pub enum HubSpotAuth {
    /// `HUBSPOT_ACCESS_TOKEN`: a private-app (or otherwise static) token.
    Static(AccessToken),
    /// `HUBSPOT_CLIENT_ID` + `HUBSPOT_CLIENT_SECRET` + `HUBSPOT_REFRESH_TOKEN`: access tokens
    /// are obtained (and refreshed) with the refresh token.
    OAuth {
        /// The app's client id and secret (`Debug` redacts the secret).
        client: OAuthClient,
        /// The long-lived refresh token.
        refresh_token: AccessToken,
        /// Refresh this long before the access token expires
        /// (`HUBSPOT_TOKEN_REFRESH_MARGIN_SECS`).
        margin_ms: u64,
    },
}

/// Everything the HubSpot API client needs.
#[derive(Debug)]
pub struct HubSpotApi {
    /// `HUBSPOT_API_BASE_URL`, `HUBSPOT_API_VERSION`.
    pub api: ApiConfig,
    /// How calls authenticate.
    pub auth: HubSpotAuth,
    /// `HUBSPOT_TIMEOUT_MS`: per-attempt timeout (headers and body).
    pub timeout_ms: u64,
    /// `HUBSPOT_TIER`: the account's published limits, the rate governor's starting point.
    pub governor: GovernorConfig,
}

impl HubSpotApi {
    /// Reads the HubSpot API keys.
    ///
    /// # Errors
    /// The first missing or invalid key (see [`HubSpotApi::read`] for all of them).
    pub fn from_lookup<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Self, ConfigError> {
        Self::read(lookup).map_err(first)
    }

    /// Reads the HubSpot API keys, reporting every problem. Credentials: `HUBSPOT_ACCESS_TOKEN`,
    /// else OAuth (`HUBSPOT_CLIENT_ID`, `HUBSPOT_CLIENT_SECRET`, `HUBSPOT_REFRESH_TOKEN`). With
    /// none of them, the problem is `HUBSPOT_ACCESS_TOKEN` missing; with OAuth begun (a client id
    /// or a refresh token set), each missing OAuth key is named.
    ///
    /// # Errors
    /// Every missing or invalid key (never empty).
    pub fn read<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Self, Vec<ConfigError>> {
        let mut errors = Errors::default();
        let margin_secs = errors.take(lookup.number(HUBSPOT_TOKEN_REFRESH_MARGIN_SECS));
        let auth = match lookup.optional("HUBSPOT_ACCESS_TOKEN") {
            Some(token) => Some(HubSpotAuth::Static(AccessToken(token))),
            None => {
                let client_id = lookup.optional("HUBSPOT_CLIENT_ID");
                let refresh = lookup.optional("HUBSPOT_REFRESH_TOKEN");
                let oauth_begun = client_id.is_some() || refresh.is_some();
                let client_id = errors.take(client_id.ok_or(ConfigError::Missing {
                    key: if oauth_begun {
                        "HUBSPOT_CLIENT_ID"
                    } else {
                        "HUBSPOT_ACCESS_TOKEN"
                    },
                }));
                let (client_secret, refresh) = if oauth_begun {
                    (
                        errors.take(lookup.required("HUBSPOT_CLIENT_SECRET")),
                        errors.take(lookup.required("HUBSPOT_REFRESH_TOKEN")),
                    )
                } else {
                    (None, None)
                };
                match (client_id, client_secret, refresh, margin_secs) {
                    (Some(client_id), Some(client_secret), Some(refresh), Some(margin_secs)) => {
                        Some(HubSpotAuth::OAuth {
                            client: OAuthClient {
                                client_id,
                                client_secret,
                            },
                            refresh_token: AccessToken(refresh),
                            margin_ms: margin_secs * 1000,
                        })
                    }
                    _ => None,
                }
            }
        };
        let base_url = errors.take(lookup.url("HUBSPOT_API_BASE_URL"));
        let path_style = errors.take(match lookup.optional("HUBSPOT_API_VERSION").as_deref() {
            None => Ok(PathStyle::DateVersioned(DEFAULT_API_VERSION.to_owned())),
            Some("legacy" | "v3") => Ok(PathStyle::Legacy),
            Some(v) if is_date_version(v) => Ok(PathStyle::DateVersioned(v.to_owned())),
            Some(_) => Err(ConfigError::NotAccepted {
                key: "HUBSPOT_API_VERSION",
                accepted: "a date version like 2026-03, or legacy",
            }),
        });
        let tier = errors.take(match lookup.optional("HUBSPOT_TIER").as_deref() {
            None | Some("free") => Ok(Tier::Free),
            Some("starter") => Ok(Tier::Starter),
            Some("professional") => Ok(Tier::Professional),
            Some("enterprise") => Ok(Tier::Enterprise),
            Some("api-add-on") => Ok(Tier::ApiAddOn),
            Some(_) => Err(ConfigError::NotAccepted {
                key: "HUBSPOT_TIER",
                accepted: "free, starter, professional, enterprise or api-add-on",
            }),
        });
        let timeout_ms = errors.take(lookup.number(HUBSPOT_TIMEOUT_MS));
        let api = match (base_url, path_style) {
            (Some(base_url), Some(path_style)) => errors.take(
                ApiConfig::new(base_url.as_deref().unwrap_or(DEFAULT_BASE_URL), path_style)
                    .map_err(|e| ConfigError::Invalid {
                        key: "HUBSPOT_API_BASE_URL",
                        code: e.code(),
                        detail: e.to_string(),
                    }),
            ),
            _ => None,
        };
        match (auth, api, tier, timeout_ms) {
            (Some(auth), Some(api), Some(tier), Some(timeout_ms)) if errors.0.is_empty() => {
                Ok(Self {
                    api,
                    auth,
                    timeout_ms,
                    governor: GovernorConfig::for_tier(tier),
                })
            }
            _ => Err(errors.into_vec()),
        }
    }
}

/// The inbound sync (`POST /sync/{objectType}`, README "Sync"): the user's system writes records
/// into HubSpot. `None` from [`Inbound::read`] when `INBOUND_SECRET` is unset: inbound is off
/// (the Worker answers 404 `inbound_off`).
#[derive(Debug, Clone)]
pub struct Inbound {
    /// `INBOUND_SECRET`: the Standard Webhooks secret the user's system signs with (`whsec_…`,
    /// its own, not `FORWARD_SECRET`).
    pub secret: WebhookSecret,
    /// `INBOUND_TYPES`: per object type, core's [`crate::sync::inbound::InboundSettings`]
    /// (`idProperty`, `batchSize`, `coalesceWindowMs`, `conflictRule`, `maxRecords`), checked
    /// against `ENRICHMENT_MAP`.
    pub settings: crate::sync::inbound::InboundSettings,
    /// `SYNC_PORTAL_ID`: the HubSpot account written (the record store is per portal).
    pub portal_id: PortalId,
    /// `ENRICHMENT_MAP`: the field map, used in its reverse direction.
    pub mapping: Mapping,
}

impl Inbound {
    /// Reads the inbound keys: `None` when `INBOUND_SECRET` is unset.
    ///
    /// # Errors
    /// Every problem: `INBOUND_SECRET` not a `whsec_` secret (`inbound_secret_invalid`),
    /// `INBOUND_TYPES` missing or invalid (`inbound_config_invalid`), `ENRICHMENT_MAP` or
    /// `SYNC_PORTAL_ID` missing.
    pub fn read<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Option<Self>, Vec<ConfigError>> {
        let Some(secret) = lookup.optional("INBOUND_SECRET") else {
            return Ok(None);
        };
        let mut errors = Errors::default();
        let secret = errors.take(
            WebhookSecret::parse(&secret).map_err(|e| ConfigError::Invalid {
                key: "INBOUND_SECRET",
                code: "inbound_secret_invalid",
                detail: e.to_string(),
            }),
        );
        let mapping = match enrichment(lookup) {
            Ok(Some(m)) => Some(m),
            Ok(None) => errors.take(Err(ConfigError::Missing {
                key: "ENRICHMENT_MAP",
            })),
            Err(e) => errors.take(Err(e)),
        };
        let settings = match (lookup.optional("INBOUND_TYPES"), &mapping) {
            (None, _) => errors.take(Err(ConfigError::Missing {
                key: "INBOUND_TYPES",
            })),
            (Some(json), Some(mapping)) => errors.take(
                crate::sync::inbound::InboundSettings::from_json(&json, mapping).map_err(|e| {
                    ConfigError::Invalid {
                        key: "INBOUND_TYPES",
                        code: e.code(),
                        detail: e.to_string(),
                    }
                }),
            ),
            (Some(_), None) => None,
        };
        let portal_id = errors.take(sync_portal(lookup));
        match (secret, settings, portal_id, mapping) {
            (Some(secret), Some(settings), Some(portal_id), Some(mapping))
                if errors.0.is_empty() =>
            {
                Ok(Some(Self {
                    secret,
                    settings,
                    portal_id,
                    mapping,
                }))
            }
            _ => Err(errors.0),
        }
    }
}

/// The part of the deployment a configuration problem breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    /// The webhook endpoint: it cannot verify HubSpot's signatures, so it answers 503 and
    /// HubSpot retries (`HUBSPOT_CLIENT_SECRET`, `ALLOW_LEGACY_SIGNATURES`,
    /// `SIGNATURE_MAX_AGE_SECS`, `PUBLIC_BASE_URL`, `MAX_BODY_BYTES`, `FILTER_RULES`).
    Ingress,
    /// The forwarding consumer: events stay queued, then are dead-lettered with
    /// `config_invalid` (`FORWARD_*`, `DEDUPE_TTL_SECS`).
    Forwarding,
    /// Enrichment before forwarding (`ENRICHMENT_MAP`, and the HubSpot credentials it needs):
    /// like [`Part::Forwarding`].
    Enrichment,
    /// The HubSpot API client (`HUBSPOT_*` other than the client secret): `/admin/hubspot` and
    /// enrichment's reads.
    HubSpotApi,
    /// The dead-letter store (`DEAD_LETTER_RETENTION_DAYS`): letters stay queued until it is
    /// fixed.
    DeadLetters,
    /// The admin API (`ADMIN_TOKEN`, `FAULT_INJECTION`): without it dead letters can be
    /// neither listed nor re-driven.
    Admin,
    /// The outbound sync (`SYNC_*`): no run starts until it is fixed.
    Sync,
    /// The inbound sync (`INBOUND_SECRET`, `INBOUND_TYPES`): `POST /sync/{objectType}` answers
    /// 503 `config_invalid` until it is fixed.
    Inbound,
    /// Custom workflow actions (`ACTIONS`, `ACTIONS_BUDGET_MS`, `ACTIONS_COMPLETE_WINDOW_MS`,
    /// `ACTIONS_CALLBACK_SECRET`, and the lookup secrets `ACTIONS` names): `POST /actions/…`
    /// answers 503 `config_invalid` (HubSpot retries) until it is fixed.
    Actions,
    /// Metrics and alerts (`METRICS_ENABLED`, `ALERTS`, `ALERT_URL`, `ALERT_SECRET`,
    /// `ALERT_FORMAT`, `ALERT_EVALUATION_SECS`): metrics are still kept,
    /// no alert is evaluated (invalid rules) or sent (invalid destination) until it is fixed.
    Alerts,
}

impl Part {
    /// Stable name: `ingress`, `forwarding`, `enrichment`, `hubspot_api`, `dead_letters`,
    /// `admin`, `sync`, `inbound`, `actions`, `alerts`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Forwarding => "forwarding",
            Self::Enrichment => "enrichment",
            Self::HubSpotApi => "hubspot_api",
            Self::DeadLetters => "dead_letters",
            Self::Admin => "admin",
            Self::Sync => "sync",
            Self::Inbound => "inbound",
            Self::Actions => "actions",
            Self::Alerts => "alerts",
        }
    }
}

/// One configuration problem: the part it breaks and the error, which names the key. What may
/// be shown to anyone is [`Problem::key`], [`Problem::code`] and the part's name; the error's
/// message (ranges, parsed numbers) is for logs and operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The part of the deployment it breaks.
    pub part: Part,
    /// The problem itself.
    pub error: ConfigError,
}

impl Problem {
    /// The key at fault.
    pub fn key(&self) -> &'static str {
        self.error.key()
    }

    /// The specific code (`config_missing`, `config_out_of_range`, …).
    pub fn code(&self) -> &'static str {
        self.error.code()
    }
}

/// Checks the whole deployment's configuration: every problem, once per key, grouped by the
/// part it breaks (in [`Part`]'s order). Empty when the deployment is fully configured.
///
/// Missing optional keys are not problems. The HubSpot credentials are optional unless
/// `ENRICHMENT_MAP` is set (enrichment reads HubSpot): then a missing token is a problem of
/// [`Part::Enrichment`]. Keys that are set are always checked, whether or not a part uses them
/// yet.
pub fn check<F: Fn(&str) -> Option<String>>(lookup: &Lookup<F>) -> Vec<Problem> {
    Config::from_lookup(lookup).err().unwrap_or_default()
}

/// The whole deployment's configuration, every part parsed from one key lookup, so that every
/// runtime (the Worker, the CLI's `check-config`, an embedder) shares its validation and its
/// errors. A host that needs one part per request may read just that part (its own `read` or
/// `from_lookup`): the same code, without parsing `RULES`, `ACTIONS` or `ALERTS` each time.
#[derive(Debug)]
pub struct Config {
    /// The webhook ingress.
    pub ingress: Ingress,
    /// The forwarding consumer (`ENRICHMENT_MAP`, `DESTINATIONS` and `RULES` included).
    pub forward: ForwardConfig,
    /// The HubSpot API client; `None` when no credentials are set and nothing needs them.
    pub hubspot: Option<HubSpotApi>,
    /// `DEAD_LETTER_RETENTION_DAYS`.
    pub dead_letter_retention: Retention,
    /// `FAULT_INJECTION` (`ADMIN_TOKEN` is set: its absence is a problem).
    pub fault_injection: bool,
    /// The outbound sync; `None` when off.
    pub sync: Option<Sync>,
    /// The inbound sync; `None` when off.
    pub inbound: Option<Inbound>,
}

impl Config {
    /// Reads and checks every part.
    ///
    /// Missing optional keys are not problems. The HubSpot credentials are optional unless
    /// `ENRICHMENT_MAP` is set (enrichment reads HubSpot): then a missing token is a problem of
    /// [`Part::Enrichment`]. Keys that are set are always checked, whether or not a part uses
    /// them yet (`ACTIONS`, `ALERTS`…, whose parsed forms belong to their hosts).
    ///
    /// # Errors
    /// Every problem, once per key, grouped by the part it breaks (in [`Part`]'s order).
    pub fn from_lookup<F: Fn(&str) -> Option<String>>(
        lookup: &Lookup<F>,
    ) -> Result<Self, Vec<Problem>> {
        let mut problems: Vec<Problem> = Vec::new();
        let mut add = |part: Part, errors: Vec<ConfigError>| {
            for error in errors {
                if !problems.iter().any(|p| p.key() == error.key()) {
                    problems.push(Problem { part, error });
                }
            }
        };
        let ingress = Ingress::read(lookup)
            .map_err(|e| add(Part::Ingress, e))
            .ok();
        let forward = ForwardConfig::read(lookup)
            .map_err(|errors| {
                let (enrichment, forwarding): (Vec<_>, Vec<_>) = errors
                    .into_iter()
                    .partition(|e| e.key() == "ENRICHMENT_MAP");
                add(Part::Forwarding, forwarding);
                add(Part::Enrichment, enrichment);
            })
            .ok();
        let enriching = lookup.optional("ENRICHMENT_MAP").is_some();
        let hubspot = match HubSpotApi::read(lookup) {
            Ok(api) => Some(Some(api)),
            Err(errors) => {
                let (no_credentials, api): (Vec<_>, Vec<_>) = errors.into_iter().partition(|e| {
                    *e == ConfigError::Missing {
                        key: "HUBSPOT_ACCESS_TOKEN",
                    }
                });
                // Without credentials and without enrichment, the API client is simply off.
                let off = api.is_empty() && !enriching;
                if enriching {
                    add(Part::Enrichment, no_credentials);
                }
                add(Part::HubSpotApi, api);
                off.then_some(None)
            }
        };
        let retention = dead_letter_retention(lookup)
            .map_err(|e| add(Part::DeadLetters, vec![e]))
            .ok();
        let sync = Sync::read(lookup).map_err(|e| add(Part::Sync, e)).ok();
        let inbound = Inbound::read(lookup)
            .map_err(|e| add(Part::Inbound, e))
            .ok();
        add(Part::Actions, actions(lookup));
        add(Part::Alerts, alerts(lookup));
        let admin = admin_token(lookup).err();
        let fault_injection = fault_injection(lookup);
        let faults = fault_injection.as_ref().err().cloned();
        add(Part::Admin, [admin, faults].into_iter().flatten().collect());
        match (
            (ingress, forward, hubspot, retention),
            (fault_injection, sync, inbound),
        ) {
            (
                (Some(ingress), Some(forward), Some(hubspot), Some(dead_letter_retention)),
                (Ok(fault_injection), Some(sync), Some(inbound)),
            ) if problems.is_empty() => Ok(Self {
                ingress,
                forward,
                hubspot,
                dead_letter_retention,
                fault_injection,
                sync,
                inbound,
            }),
            _ => {
                problems.sort_by_key(|p| p.part);
                Err(problems)
            }
        }
    }
}

/// The workflow action keys' problems: the two numbers in range, `ACTIONS_CALLBACK_SECRET` a
/// Standard Webhooks secret, and, when `ACTIONS` is set, the definitions valid
/// ([`crate::actions::Definitions::parse`]: the error names the field; a `map_and_write` action
/// reads `ENRICHMENT_MAP`, whose own problems belong to [`Part::Enrichment`]) and
/// `HUBSPOT_CLIENT_SECRET` present (it verifies HubSpot's v2 signatures of executions).
pub fn actions<F: Fn(&str) -> Option<String>>(lookup: &Lookup<F>) -> Vec<ConfigError> {
    // The checks the action routes make ([`crate::actions::ActionSettings::from_lookup`]).
    let raw = |key: &str| (lookup.0)(key);
    crate::actions::ActionSettings::read(&Lookup::new(&raw as crate::actions::KeyLookup<'_>))
        .err()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.key() != "ENRICHMENT_MAP")
        .collect()
}

/// The alert keys' problems: `ALERTS` must parse as rules ([`crate::metrics::alert::AlertConfig`]),
/// `ALERT_URL` must be an https URL, `ALERT_FORMAT` `standard` (default) or `slack`, and with a
/// URL in the standard format `ALERT_SECRET` must be a Standard Webhooks secret (`whsec_…`).
pub fn alerts<F: Fn(&str) -> Option<String>>(lookup: &Lookup<F>) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if let Err(e) = lookup.number(ALERT_EVALUATION_SECS) {
        errors.push(e);
    }
    if let Err(e) = lookup.boolean("METRICS_ENABLED", true) {
        errors.push(e);
    }
    if let Some(rules) = lookup.optional("ALERTS") {
        if let Err(e) = crate::metrics::alert::AlertConfig::parse(&rules) {
            errors.push(ConfigError::Invalid {
                key: "ALERTS",
                code: e.code(),
                detail: e.to_string(),
            });
        }
    }
    let slack = match lookup.optional("ALERT_FORMAT").as_deref() {
        None | Some("standard") => false,
        Some("slack") => true,
        Some(_) => {
            errors.push(ConfigError::NotAccepted {
                key: "ALERT_FORMAT",
                accepted: "standard or slack",
            });
            false
        }
    };
    match lookup.url("ALERT_URL") {
        Err(e) => errors.push(e),
        Ok(Some(_)) if !slack => match lookup.required("ALERT_SECRET") {
            Err(e) => errors.push(e),
            Ok(s) => {
                if let Err(e) = WebhookSecret::parse(&s) {
                    errors.push(ConfigError::Invalid {
                        key: "ALERT_SECRET",
                        code: "alert_secret_invalid",
                        detail: e.to_string(),
                    });
                }
            }
        },
        Ok(_) => {}
    }
    errors
}

/// `KEY: code` of each error, joined with `; `: what a dead letter's detail and a log line say
/// about the configuration that stopped it. Keys and codes only, never values.
pub fn summary(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(|e| format!("{}: {}", e.key(), e.code()))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects the errors of several keys read one after another.
#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn take<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.0.push(e);
                None
            }
        }
    }

    /// The errors; a caller that found one value missing always has at least one.
    fn into_vec(self) -> Vec<ConfigError> {
        self.0
    }
}

/// The first of the errors of a part (the one-error API of `from_lookup`).
fn first(errors: Vec<ConfigError>) -> ConfigError {
    errors.into_iter().next().unwrap_or(ConfigError::Missing {
        // Unreachable: a part that fails has at least one error.
        key: "configuration",
    })
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

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// The public example secret of the Standard Webhooks test suites (not a secret).
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn table(pairs: &[(&str, &str)]) -> Lookup<impl Fn(&str) -> Option<String>> {
        let owned: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Lookup::new(move |k: &str| {
            owned
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
        })
    }

    fn forward(extra: &[(&'static str, &'static str)]) -> Result<ForwardConfig, ConfigError> {
        let mut pairs = vec![
            ("FORWARD_URL", "https://example.com/hook"),
            ("FORWARD_SECRET", SECRET),
        ];
        // Later entries win: `table` finds the first, so put the extras first.
        let mut all = extra.to_vec();
        all.append(&mut pairs);
        ForwardConfig::from_lookup(&table(&all))
    }

    #[test]
    fn alert_keys_checked_by_key_and_code() {
        let codes = |pairs: &[(&str, &str)]| -> Vec<(&'static str, &'static str)> {
            alerts(&table(pairs))
                .iter()
                .map(|e| (e.key(), e.code()))
                .collect()
        };
        assert!(codes(&[]).is_empty(), "all optional");
        assert!(codes(&[
            ("ALERT_URL", "https://a.example/x"),
            ("ALERT_SECRET", SECRET)
        ])
        .is_empty());
        assert!(codes(&[
            ("ALERT_URL", "https://hooks.slack.com/x"),
            ("ALERT_FORMAT", "slack")
        ])
        .is_empty());
        assert_eq!(
            codes(&[("ALERT_URL", "https://a.example/x")]),
            [("ALERT_SECRET", "config_missing")]
        );
        assert_eq!(
            codes(&[
                ("ALERT_URL", "https://a.example/x"),
                ("ALERT_SECRET", "nope")
            ]),
            [("ALERT_SECRET", "alert_secret_invalid")]
        );
        assert_eq!(
            codes(&[
                ("ALERT_URL", "http://a.example/x"),
                ("ALERT_FORMAT", "slack")
            ]),
            [("ALERT_URL", "config_plain_http")]
        );
        assert_eq!(
            codes(&[("METRICS_ENABLED", "maybe")]),
            [("METRICS_ENABLED", "config_not_a_boolean")]
        );
        assert_eq!(
            codes(&[("ALERT_FORMAT", "teams")]),
            [("ALERT_FORMAT", "config_not_accepted")]
        );
        assert_eq!(
            codes(&[(
                "ALERTS",
                r#"{"rules":[{"name":"x","kind":"dead_letters","above":-1}]}"#
            )]),
            [("ALERTS", "alerts_invalid")]
        );
        let problems = check(&table(&[("ALERT_FORMAT", "teams")]));
        assert!(problems
            .iter()
            .any(|p| p.part == Part::Alerts && p.key() == "ALERT_FORMAT"));
    }

    #[test]
    fn numbers_at_and_beyond_their_bounds() {
        for key in NUMBER_KEYS {
            assert_eq!(key.parse(None), Ok(key.default), "{}", key.key);
            assert!(
                (key.min..=key.max).contains(&key.default),
                "{} default out of range",
                key.key
            );
            assert_eq!(key.parse(Some(&key.min.to_string())), Ok(key.min));
            assert_eq!(key.parse(Some(&format!(" {} ", key.max))), Ok(key.max));
            assert_eq!(
                key.parse(Some(&(key.max + 1).to_string())),
                Err(ConfigError::OutOfRange {
                    key,
                    value: key.max + 1
                })
            );
            if key.min > 0 {
                assert_eq!(
                    key.parse(Some(&(key.min - 1).to_string())),
                    Err(ConfigError::OutOfRange {
                        key,
                        value: key.min - 1
                    })
                );
            }
            for bad in ["-1", "1.5", "ten", "1e3", "99999999999999999999999"] {
                assert_eq!(
                    key.parse(Some(bad)),
                    Err(ConfigError::NotAnInteger(key)),
                    "{} {bad}",
                    key.key
                );
            }
        }
    }

    #[test]
    fn out_of_range_names_key_and_range() {
        let e = SIGNATURE_MAX_AGE_SECS.parse(Some("999999")).unwrap_err();
        assert_eq!(e.code(), "config_out_of_range");
        assert_eq!(e.public_code(), "config_invalid");
        assert_eq!(e.key(), "SIGNATURE_MAX_AGE_SECS");
        assert_eq!(
            e.to_string(),
            "configuration key SIGNATURE_MAX_AGE_SECS must be from 1 to 3600 (got 999999)"
        );
        let e = MAX_BODY_BYTES.parse(Some("lots")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configuration key MAX_BODY_BYTES must be an integer from 1024 to 16777216"
        );
    }

    #[test]
    fn urls_https_or_loopback_http() {
        let cases: &[(&str, Result<(), &str>)] = &[
            ("https://example.com/hook", Ok(())),
            ("https://example.com:8443", Ok(())),
            ("http://127.0.0.1:8787/hook", Ok(())),
            ("http://127.1.2.3/x", Ok(())),
            ("http://localhost:9000/", Ok(())),
            ("http://LOCALHOST/", Ok(())),
            ("http://[::1]:9000/x", Ok(())),
            ("http://example.com/hook", Err("config_plain_http")),
            ("http://128.0.0.1/", Err("config_plain_http")),
            ("http://10.0.0.1/", Err("config_plain_http")),
            ("http://[::2]/", Err("config_plain_http")),
            ("http://localhost.example.com/", Err("config_plain_http")),
            ("http://127.0.0.1.example.com/", Err("config_plain_http")),
            ("ftp://example.com/", Err("config_not_a_url")),
            ("example.com/hook", Err("config_not_a_url")),
            ("/hook", Err("config_not_a_url")),
            ("https://", Err("config_not_a_url")),
            ("not a url", Err("config_not_a_url")),
        ];
        for (url, expected) in cases {
            let got = check_url("FORWARD_URL", url).map_err(|e| e.code());
            assert_eq!(got, *expected, "{url}");
        }
    }

    #[test]
    fn forward_table() {
        let ok = forward(&[]).unwrap();
        assert_eq!(ok.url, "https://example.com/hook");
        assert_eq!(ok.timeout_ms, 10_000);
        assert_eq!(ok.retry, DeliveryRetryPolicy::default());
        assert_eq!(ok.dedupe_ttl_secs, 259_200);
        assert_eq!(ok.batch_budget_ms, 30_000);
        let days = |v: &str| {
            dead_letter_retention(&table(&[("DEAD_LETTER_RETENTION_DAYS", v)]))
                .map_err(|e| e.code())
        };
        assert_eq!(days("14"), Ok(Retention::from_days(14).unwrap()));
        assert_eq!(days("365"), Ok(Retention::from_days(365).unwrap()));
        assert_eq!(days("0"), Err("config_out_of_range"));
        assert_eq!(days("366"), Err("config_out_of_range"));
        assert_eq!(days("two weeks"), Err("config_not_an_integer"));
        assert_eq!(fault_injection(&table(&[])), Ok(false));
        assert_eq!(
            fault_injection(&table(&[("FAULT_INJECTION", "on")])).map_err(|e| e.code()),
            Err("config_not_a_boolean")
        );
        // (extra keys, key at fault, code)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: &[Case] = &[
            (
                &[("FORWARD_URL", "http://example.com")],
                "FORWARD_URL",
                "config_plain_http",
            ),
            (&[("FORWARD_URL", " ")], "FORWARD_URL", "config_missing"),
            (
                &[("FORWARD_SECRET", "nope")],
                "FORWARD_SECRET",
                "forward_secret_invalid",
            ),
            (
                &[("FORWARD_TIMEOUT_MS", "99")],
                "FORWARD_TIMEOUT_MS",
                "config_out_of_range",
            ),
            (
                &[("FORWARD_TIMEOUT_MS", "120001")],
                "FORWARD_TIMEOUT_MS",
                "config_out_of_range",
            ),
            (
                &[("FORWARD_MAX_ATTEMPTS", "0")],
                "FORWARD_MAX_ATTEMPTS",
                "config_out_of_range",
            ),
            (
                &[("FORWARD_MAX_ATTEMPTS", "101")],
                "FORWARD_MAX_ATTEMPTS",
                "config_out_of_range",
            ),
            (
                &[("FORWARD_RETRY_BASE_SECS", "0")],
                "FORWARD_RETRY_BASE_SECS",
                "config_out_of_range",
            ),
            (
                &[("FORWARD_RETRY_MAX_SECS", "43201")],
                "FORWARD_RETRY_MAX_SECS",
                "config_out_of_range",
            ),
            (
                &[
                    ("FORWARD_RETRY_BASE_SECS", "60"),
                    ("FORWARD_RETRY_MAX_SECS", "30"),
                ],
                "FORWARD_RETRY_MAX_SECS",
                "config_below",
            ),
            (
                &[("DEDUPE_TTL_SECS", "59")],
                "DEDUPE_TTL_SECS",
                "config_out_of_range",
            ),
            (
                &[("DEDUPE_TTL_SECS", "x")],
                "DEDUPE_TTL_SECS",
                "config_not_an_integer",
            ),
            (
                &[("ENRICHMENT_MAP", "{")],
                "ENRICHMENT_MAP",
                "mapping_config_invalid",
            ),
        ];
        for (extra, key, code) in cases {
            let e = forward(extra).unwrap_err();
            assert_eq!((e.key(), e.code()), (*key, *code), "{extra:?}: {e}");
            assert!(e.to_string().contains(key), "{e}");
        }
        let bounds = forward(&[
            ("FORWARD_TIMEOUT_MS", "100"),
            ("FORWARD_MAX_ATTEMPTS", "100"),
            ("FORWARD_RETRY_BASE_SECS", "43200"),
            ("FORWARD_RETRY_MAX_SECS", "43200"),
            ("DEDUPE_TTL_SECS", "60"),
            ("FORWARD_URL", "http://127.0.0.1:9/hook/"),
        ])
        .unwrap();
        assert_eq!(bounds.url, "http://127.0.0.1:9/hook");
        assert_eq!(bounds.timeout_ms, 100);
        assert_eq!(bounds.retry.max_attempts, 100);
        assert_eq!(bounds.retry.base_delay_secs, 43_200);
        assert_eq!(bounds.dedupe_ttl_secs, 60);
    }

    #[test]
    fn ingress_table() {
        let base = [("HUBSPOT_CLIENT_SECRET", "s")];
        let ok = Ingress::from_lookup(&table(&base)).unwrap();
        assert_eq!(ok.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(ok.public_base_url, None);
        let with = |extra: (&'static str, &'static str)| {
            Ingress::from_lookup(&table(&[extra, base[0]])).map_err(|e| (e.key(), e.code()))
        };
        let cases = [
            (("SIGNATURE_MAX_AGE_SECS", "999999"), "config_out_of_range"),
            (("SIGNATURE_MAX_AGE_SECS", "0"), "config_out_of_range"),
            (("MAX_BODY_BYTES", "1023"), "config_out_of_range"),
            (("MAX_BODY_BYTES", "16777217"), "config_out_of_range"),
            (("ALLOW_LEGACY_SIGNATURES", "maybe"), "config_not_a_boolean"),
            (
                ("PUBLIC_BASE_URL", "http://hooks.example.com"),
                "config_plain_http",
            ),
            (("PUBLIC_BASE_URL", "hooks.example.com"), "config_not_a_url"),
            (("FILTER_RULES", "{"), "filter_config_invalid"),
        ];
        for ((key, value), code) in cases {
            assert_eq!(
                with((key, value)).unwrap_err(),
                (key, code),
                "{key}={value}"
            );
        }
        let ok = Ingress::from_lookup(&table(&[
            ("PUBLIC_BASE_URL", "https://hooks.example.com/"),
            ("MAX_BODY_BYTES", "1024"),
            base[0],
        ]))
        .unwrap();
        assert_eq!(
            ok.public_base_url.as_deref(),
            Some("https://hooks.example.com")
        );
        assert_eq!(ok.max_body_bytes, 1024);
        assert_eq!(
            Ingress::from_lookup(&table(&[])).unwrap_err(),
            ConfigError::Missing {
                key: "HUBSPOT_CLIENT_SECRET"
            }
        );
    }

    #[test]
    fn rules_and_destinations_are_checked_with_the_forwarding_keys() {
        const MAP: &str = r#"{"objects":{"deals":{"fields":[{"hubspot":"amount"}]}}}"#;
        const DESTINATIONS: &str = r#"{"sales":{"url":"https://sales.example.com/"}}"#;
        const RULES: &str = r#"{"rules":[{"name":"to_sales","when":{"objectTypes":["deal"]},
            "then":[{"forward":{"destination":"sales"}}]}]}"#;
        const LOOP: &str = r#"{"rules":[{"name":"bump","when":{"objectTypes":["deal"]},
            "then":[{"update":{"properties":{"amount":"1"}}}]}]}"#;
        let ok = forward(&[
            ("ENRICHMENT_MAP", MAP),
            ("DESTINATIONS", DESTINATIONS),
            ("DESTINATION_SALES_SECRET", SECRET),
            ("RULES", RULES),
        ])
        .unwrap();
        assert_eq!(ok.rules.len(), 1);
        assert_eq!(
            ok.destinations.names().collect::<Vec<_>>(),
            ["default", "sales"]
        );
        // Unset: only `default`, no rules.
        let plain = forward(&[]).unwrap();
        assert!(plain.rules.is_empty());
        assert_eq!(plain.destinations.names().collect::<Vec<_>>(), ["default"]);
        for (extra, code) in [
            (
                &[("ENRICHMENT_MAP", MAP), ("RULES", LOOP)][..],
                ("RULES", "rules_loop"),
            ),
            (&[("RULES", RULES)][..], ("RULES", "rules_invalid")),
            (
                &[("DESTINATIONS", DESTINATIONS)][..],
                ("DESTINATIONS", "destination_secret_missing"),
            ),
        ] {
            let e = forward(extra).unwrap_err();
            assert_eq!((e.key(), e.code()), code, "{e}");
        }
        // /healthz names them under forwarding.
        let problems = check(&table(&[
            ("HUBSPOT_CLIENT_SECRET", "s"),
            ("FORWARD_URL", "https://example.com/hook"),
            ("FORWARD_SECRET", SECRET),
            ("ADMIN_TOKEN", "t"),
            ("HUBSPOT_ACCESS_TOKEN", "pat"),
            ("ENRICHMENT_MAP", MAP),
            ("RULES", LOOP),
        ]));
        let got: Vec<_> = problems
            .iter()
            .map(|p| (p.part.name(), p.key(), p.code()))
            .collect();
        assert_eq!(got, [("forwarding", "RULES", "rules_loop")]);
    }

    #[test]
    fn check_reports_every_problem_by_key_and_part() {
        const REQUIRED: [(&str, &str); 4] = [
            ("HUBSPOT_CLIENT_SECRET", "s"),
            ("FORWARD_URL", "https://example.com/hook"),
            ("FORWARD_SECRET", SECRET),
            ("ADMIN_TOKEN", "t"),
        ];
        const MAP: &str = r#"{"objects":{"contacts":{"fields":[{"hubspot":"email"}]}}}"#;
        // The required keys, with `extra` first (it wins) and `drop`ped keys left out.
        let check_with = |extra: &[(&'static str, &'static str)], drop: &[&str]| {
            let mut all = extra.to_vec();
            all.extend(REQUIRED.iter().filter(|(k, _)| !drop.contains(k)));
            check(&table(&all))
                .iter()
                .map(|p| (p.part.name(), p.key(), p.code()))
                .collect::<Vec<_>>()
        };
        type Case<'a> = (
            &'a [(&'static str, &'static str)],
            &'a [&'a str],
            &'a [(&'a str, &'a str, &'a str)],
        );
        let cases: &[Case] = &[
            // Fully configured, optional keys unset: nothing to report.
            (&[], &[], &[]),
            (
                &[("HUBSPOT_ACCESS_TOKEN", "pat"), ("ENRICHMENT_MAP", MAP)],
                &[],
                &[],
            ),
            (
                &[],
                &["FORWARD_URL"],
                &[("forwarding", "FORWARD_URL", "config_missing")],
            ),
            (
                &[],
                &[
                    "HUBSPOT_CLIENT_SECRET",
                    "FORWARD_URL",
                    "FORWARD_SECRET",
                    "ADMIN_TOKEN",
                ],
                &[
                    ("ingress", "HUBSPOT_CLIENT_SECRET", "config_missing"),
                    ("forwarding", "FORWARD_URL", "config_missing"),
                    ("forwarding", "FORWARD_SECRET", "config_missing"),
                    ("admin", "ADMIN_TOKEN", "config_missing"),
                ],
            ),
            // Every problem of one part, not only the first.
            (
                &[
                    ("FORWARD_URL", "http://example.com/hook"),
                    ("FORWARD_TIMEOUT_MS", "99"),
                    ("DEDUPE_TTL_SECS", "x"),
                    ("FORWARD_RETRY_BASE_SECS", "0"),
                ],
                &[],
                &[
                    ("forwarding", "FORWARD_URL", "config_plain_http"),
                    (
                        "forwarding",
                        "FORWARD_RETRY_BASE_SECS",
                        "config_out_of_range",
                    ),
                    ("forwarding", "FORWARD_TIMEOUT_MS", "config_out_of_range"),
                    ("forwarding", "DEDUPE_TTL_SECS", "config_not_an_integer"),
                ],
            ),
            (
                &[
                    ("FORWARD_RETRY_BASE_SECS", "60"),
                    ("FORWARD_RETRY_MAX_SECS", "30"),
                ],
                &[],
                &[("forwarding", "FORWARD_RETRY_MAX_SECS", "config_below")],
            ),
            (
                &[
                    ("SIGNATURE_MAX_AGE_SECS", "0"),
                    ("FILTER_RULES", "{"),
                    ("PUBLIC_BASE_URL", "nope"),
                ],
                &[],
                &[
                    ("ingress", "SIGNATURE_MAX_AGE_SECS", "config_out_of_range"),
                    ("ingress", "PUBLIC_BASE_URL", "config_not_a_url"),
                    ("ingress", "FILTER_RULES", "filter_config_invalid"),
                ],
            ),
            // The map is enrichment's problem, not forwarding's.
            (
                &[("HUBSPOT_ACCESS_TOKEN", "pat"), ("ENRICHMENT_MAP", "{")],
                &[],
                &[("enrichment", "ENRICHMENT_MAP", "mapping_config_invalid")],
            ),
            // Enrichment needs HubSpot credentials; without a map they are optional.
            (
                &[("ENRICHMENT_MAP", MAP)],
                &[],
                &[("enrichment", "HUBSPOT_ACCESS_TOKEN", "config_missing")],
            ),
            (
                &[("ENRICHMENT_MAP", "{")],
                &[],
                &[
                    ("enrichment", "ENRICHMENT_MAP", "mapping_config_invalid"),
                    ("enrichment", "HUBSPOT_ACCESS_TOKEN", "config_missing"),
                ],
            ),
            // Workflow actions: the definitions, the numbers and the callback secret.
            (
                &[
                    ("ACTIONS", r#"{"actions":[{"key":"a","kind":"teleport"}]}"#),
                    ("ACTIONS_BUDGET_MS", "50"),
                    ("ACTIONS_CALLBACK_SECRET", "nope"),
                ],
                &[],
                &[
                    ("actions", "ACTIONS_BUDGET_MS", "config_out_of_range"),
                    (
                        "actions",
                        "ACTIONS_CALLBACK_SECRET",
                        "actions_callback_secret_invalid",
                    ),
                    ("actions", "ACTIONS", "actions_field_missing"),
                ],
            ),
            // Set HubSpot keys are checked even when nothing uses them yet.
            (
                &[("HUBSPOT_TIER", "gold"), ("HUBSPOT_TIMEOUT_MS", "5")],
                &[],
                &[
                    ("hubspot_api", "HUBSPOT_TIER", "config_not_accepted"),
                    ("hubspot_api", "HUBSPOT_TIMEOUT_MS", "config_out_of_range"),
                ],
            ),
            // OAuth begun: the missing OAuth key by name.
            (
                &[("HUBSPOT_CLIENT_ID", "id")],
                &[],
                &[("hubspot_api", "HUBSPOT_REFRESH_TOKEN", "config_missing")],
            ),
            (
                &[
                    ("HUBSPOT_REFRESH_TOKEN", "r"),
                    ("HUBSPOT_TOKEN_REFRESH_MARGIN_SECS", "1501"),
                ],
                &[],
                &[
                    (
                        "hubspot_api",
                        "HUBSPOT_TOKEN_REFRESH_MARGIN_SECS",
                        "config_out_of_range",
                    ),
                    ("hubspot_api", "HUBSPOT_CLIENT_ID", "config_missing"),
                ],
            ),
            // One key, once: the client secret is the ingress's and OAuth's.
            (
                &[("HUBSPOT_CLIENT_ID", "id"), ("HUBSPOT_REFRESH_TOKEN", "r")],
                &["HUBSPOT_CLIENT_SECRET"],
                &[("ingress", "HUBSPOT_CLIENT_SECRET", "config_missing")],
            ),
            (
                &[
                    ("DEAD_LETTER_RETENTION_DAYS", "0"),
                    ("FAULT_INJECTION", "on"),
                ],
                &["ADMIN_TOKEN"],
                &[
                    (
                        "dead_letters",
                        "DEAD_LETTER_RETENTION_DAYS",
                        "config_out_of_range",
                    ),
                    ("admin", "ADMIN_TOKEN", "config_missing"),
                    ("admin", "FAULT_INJECTION", "config_not_a_boolean"),
                ],
            ),
        ];
        for (extra, drop, expected) in cases {
            assert_eq!(
                check_with(extra, drop),
                *expected,
                "{extra:?} without {drop:?}"
            );
        }
        // The summary names keys and codes, never a value.
        let e = ForwardConfig::read(&table(&[
            ("FORWARD_SECRET", "whsec_not-base64-secret-value"),
            ("FORWARD_TIMEOUT_MS", "123456789"),
        ]))
        .unwrap_err();
        let text = summary(&e);
        assert_eq!(
            text,
            "FORWARD_URL: config_missing; FORWARD_SECRET: forward_secret_invalid; \
             FORWARD_TIMEOUT_MS: config_out_of_range"
        );
        assert!(!text.contains("not-base64") && !text.contains("123456789"));
    }

    #[test]
    fn retry_policy_on_its_own() {
        assert_eq!(
            retry_policy(&table(&[])),
            Ok(DeliveryRetryPolicy::default())
        );
        assert_eq!(
            retry_policy(&table(&[
                ("FORWARD_MAX_ATTEMPTS", "2"),
                ("FORWARD_RETRY_BASE_SECS", "1"),
                ("FORWARD_URL", "not checked here"),
            ])),
            Ok(DeliveryRetryPolicy {
                max_attempts: 2,
                base_delay_secs: 1,
                ..DeliveryRetryPolicy::default()
            })
        );
        assert_eq!(
            retry_policy(&table(&[("FORWARD_MAX_ATTEMPTS", "0")])).map_err(|e| e.key()),
            Err("FORWARD_MAX_ATTEMPTS")
        );
    }

    #[test]
    fn hubspot_table() {
        let token = [("HUBSPOT_ACCESS_TOKEN", "pat-x")];
        let ok = HubSpotApi::from_lookup(&table(&token)).unwrap();
        assert_eq!(ok.api, ApiConfig::default());
        assert_eq!(ok.timeout_ms, 10_000);
        assert!(matches!(ok.auth, HubSpotAuth::Static(ref t) if t.as_str() == "pat-x"));
        assert_eq!(format!("{:?}", ok.auth), "Static(AccessToken([redacted]))");
        let oauth = [
            ("HUBSPOT_CLIENT_ID", "id"),
            ("HUBSPOT_CLIENT_SECRET", "secret"),
            ("HUBSPOT_REFRESH_TOKEN", "refresh"),
        ];
        let with = |extra: (&'static str, &'static str)| {
            let mut all = vec![extra];
            all.extend_from_slice(&oauth);
            HubSpotApi::from_lookup(&table(&all)).map_err(|e| (e.key(), e.code()))
        };
        let ok = with(("HUBSPOT_TOKEN_REFRESH_MARGIN_SECS", "1500")).unwrap();
        assert!(matches!(
            ok.auth,
            HubSpotAuth::OAuth {
                margin_ms: 1_500_000,
                ..
            }
        ));
        let cases = [
            (
                ("HUBSPOT_TOKEN_REFRESH_MARGIN_SECS", "1501"),
                "config_out_of_range",
            ),
            (("HUBSPOT_TIMEOUT_MS", "60001"), "config_out_of_range"),
            (("HUBSPOT_TIMEOUT_MS", "99"), "config_out_of_range"),
            (
                ("HUBSPOT_API_BASE_URL", "http://api.hubapi.com"),
                "config_plain_http",
            ),
            (("HUBSPOT_API_VERSION", "2026-3"), "config_not_accepted"),
            (("HUBSPOT_TIER", "gold"), "config_not_accepted"),
        ];
        for ((key, value), code) in cases {
            assert_eq!(
                with((key, value)).unwrap_err(),
                (key, code),
                "{key}={value}"
            );
        }
        let local = with(("HUBSPOT_API_BASE_URL", "http://127.0.0.1:8090/")).unwrap();
        assert_eq!(local.api.base_url(), "http://127.0.0.1:8090");
        assert_eq!(
            HubSpotApi::from_lookup(&table(&oauth[..2]))
                .unwrap_err()
                .code(),
            "config_missing"
        );
    }

    #[test]
    fn sync_settings_and_when_runs_are_due() {
        let map = r#"{"objects":{"contacts":{"fields":[{"hubspot":"email"}]}}}"#;
        let read = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            Sync::read(&Lookup::new(move |k: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            }))
        };
        assert_eq!(read(&[]), Ok(None), "unset: sync is off");
        let on = read(&[
            ("SYNC_OBJECT_TYPES", " contacts, contacts ,"),
            ("SYNC_PORTAL_ID", "33"),
            ("ENRICHMENT_MAP", map),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(on.object_types, vec!["contacts".to_owned()]);
        assert_eq!(
            (on.portal_id, on.incremental_ms, on.full_ms),
            (PortalId::new(33), 300_000, 86_400_000)
        );
        let codes = |r: Result<Option<Sync>, Vec<ConfigError>>| -> Vec<&'static str> {
            r.err()
                .unwrap_or_default()
                .iter()
                .map(ConfigError::code)
                .collect()
        };
        assert_eq!(
            codes(read(&[
                ("SYNC_OBJECT_TYPES", "contacts,companies,a/b"),
                ("ENRICHMENT_MAP", map),
                ("SYNC_INCREMENTAL_MINUTES", "0"),
            ])),
            vec![
                "sync_type_not_mapped",
                "sync_type_invalid",
                "config_missing",
                "config_out_of_range"
            ]
        );
        // Associations: pairs of a synced type and any type, each once; bad ones named.
        let two = r#"{"objects":{"contacts":{"fields":[{"hubspot":"email"}]},
                                "deals":{"fields":[{"hubspot":"dealname"}]}}}"#;
        let with = read(&[
            ("SYNC_OBJECT_TYPES", "contacts,deals"),
            ("SYNC_PORTAL_ID", "33"),
            ("ENRICHMENT_MAP", two),
            (
                "SYNC_ASSOCIATIONS",
                " contacts:companies, deals:contacts,contacts : companies,contacts:deals",
            ),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(with.associations_of("contacts"), ["companies", "deals"]);
        assert_eq!(with.associations_of("deals"), ["contacts"]);
        assert!(with.associations_of("companies").is_empty());
        assert!(on.associations.is_empty());
        assert_eq!(
            codes(read(&[
                ("SYNC_OBJECT_TYPES", "contacts"),
                ("SYNC_PORTAL_ID", "33"),
                ("ENRICHMENT_MAP", map),
                (
                    "SYNC_ASSOCIATIONS",
                    "contacts,companies:contacts,contacts:a/b"
                ),
            ])),
            vec![
                "sync_association_invalid",
                "sync_association_not_synced",
                "sync_association_invalid"
            ]
        );
        // SYNC_PORTAL_ID is decimal digits ([`PortalId`]'s form; surrounding blanks trimmed):
        // `+33`, which `u64`'s parser took, is refused like any other non-number.
        for (value, codes_of) in [
            (" 33 ", vec![]),
            ("+33", vec!["config_not_an_integer"]),
            ("3 3", vec!["config_not_an_integer"]),
        ] {
            assert_eq!(
                codes(read(&[
                    ("SYNC_OBJECT_TYPES", "contacts"),
                    ("SYNC_PORTAL_ID", value),
                    ("ENRICHMENT_MAP", map),
                ])),
                codes_of,
                "{value:?}"
            );
        }
        // check() reports them under the sync part.
        let problems = check(&Lookup::new(|k: &str| {
            (k == "SYNC_OBJECT_TYPES").then(|| "contacts".to_owned())
        }));
        assert!(problems
            .iter()
            .any(|p| p.part == Part::Sync && p.key() == "SYNC_PORTAL_ID"));
        // Never synced: full. Then incremental every 5 minutes, full every day.
        let h = 3_600_000;
        assert_eq!(on.due(0, None, None, false, false), Due::Full);
        assert_eq!(
            on.due(h, Some(h - 60_000), Some(0), false, false),
            Due::Nothing
        );
        assert_eq!(
            on.due(h, Some(h - 300_000), Some(0), false, false),
            Due::Incremental
        );
        assert_eq!(
            on.due(25 * h, Some(25 * h - 1), Some(h), false, false),
            Due::Full
        );
        assert_eq!(on.due(25 * h, None, None, true, false), Due::Nothing);
        assert_eq!(on.due(25 * h, None, None, false, true), Due::Nothing);
    }

    #[test]
    fn inbound_settings_off_on_and_every_problem() {
        let map = r#"{"objects":{"contacts":{"fields":[{"hubspot":"email"},{"hubspot":"firstname","field":"first_name"}]}}}"#;
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let codes = |pairs: &[(&str, &str)]| -> Vec<(&'static str, &'static str)> {
            let t = table(pairs);
            match Inbound::read(&t) {
                Ok(_) => Vec::new(),
                Err(errors) => errors.iter().map(|e| (e.key(), e.code())).collect(),
            }
        };
        assert!(
            Inbound::read(&table(&[("ENRICHMENT_MAP", map)]))
                .unwrap()
                .is_none(),
            "no INBOUND_SECRET: inbound is off"
        );
        let on = Inbound::read(&table(&[
            ("INBOUND_SECRET", secret),
            ("INBOUND_TYPES", r#"{"contacts":{"coalesceWindowMs":500}}"#),
            ("ENRICHMENT_MAP", map),
            ("SYNC_PORTAL_ID", "33"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(on.portal_id, PortalId::new(33));
        let config = on.settings.get(&on.mapping, "contacts").unwrap();
        assert_eq!(
            (config.id_property.as_str(), config.coalesce_window_ms),
            ("email", 500)
        );
        assert_eq!(
            codes(&[("INBOUND_SECRET", "nope")]),
            [
                ("INBOUND_SECRET", "inbound_secret_invalid"),
                ("ENRICHMENT_MAP", "config_missing"),
                ("INBOUND_TYPES", "config_missing"),
                ("SYNC_PORTAL_ID", "config_missing"),
            ]
        );
        assert_eq!(
            codes(&[
                ("INBOUND_SECRET", secret),
                ("ENRICHMENT_MAP", map),
                ("SYNC_PORTAL_ID", "33"),
                ("INBOUND_TYPES", r#"{"contacts":{"idProperty":"nope"}}"#),
            ]),
            [("INBOUND_TYPES", "inbound_config_invalid")]
        );
        // check() reports them under the inbound part.
        let problems = check(&table(&[("INBOUND_SECRET", secret)]));
        assert!(problems
            .iter()
            .any(|p| p.part == Part::Inbound && p.key() == "INBOUND_TYPES"));
        assert_eq!(Part::Alerts.name(), "alerts");
        assert_eq!(Part::Inbound.name(), "inbound");
        assert_eq!(Part::Actions.name(), "actions");
    }

    /// One lookup gives every part, parsed as the parts' own readers parse them.
    #[test]
    fn config_from_lookup_holds_every_part() {
        let mut keys = vec![
            ("HUBSPOT_CLIENT_SECRET", "s"),
            ("FORWARD_URL", "https://example.com/hook"),
            ("FORWARD_SECRET", SECRET),
            ("ADMIN_TOKEN", "t"),
            ("FORWARD_MAX_ATTEMPTS", "4"),
            ("DEAD_LETTER_RETENTION_DAYS", "3"),
        ];
        let config = Config::from_lookup(&table(&keys)).unwrap();
        assert_eq!(config.forward.retry.max_attempts, 4);
        assert_eq!(config.forward.url, "https://example.com/hook");
        assert_eq!(
            config.dead_letter_retention,
            Retention::from_days(3).unwrap()
        );
        assert!(
            config.hubspot.is_none(),
            "no credentials, nothing needs them"
        );
        assert!(config.sync.is_none() && config.inbound.is_none());
        assert!(!config.fault_injection);

        keys.push(("HUBSPOT_ACCESS_TOKEN", "pat"));
        keys.push(("FAULT_INJECTION", "true"));
        let config = Config::from_lookup(&table(&keys)).unwrap();
        assert!(config.hubspot.is_some());
        assert!(config.fault_injection);

        // Problems are check's, in part order, and no config.
        keys.retain(|(k, _)| *k != "ADMIN_TOKEN");
        keys.push(("FORWARD_TIMEOUT_MS", "1"));
        let problems = Config::from_lookup(&table(&keys)).unwrap_err();
        let got: Vec<_> = problems.iter().map(|p| (p.part.name(), p.key())).collect();
        assert_eq!(
            got,
            [
                ("forwarding", "FORWARD_TIMEOUT_MS"),
                ("admin", "ADMIN_TOKEN")
            ]
        );
        assert_eq!(problems, check(&table(&keys)));
    }

    #[test]
    fn the_public_message_names_only_an_unset_admin_token() {
        let unset = admin_token(&table(&[])).unwrap_err();
        assert_eq!(
            unset.public_message(),
            "the admin API is disabled: ADMIN_TOKEN is not set"
        );
        assert_eq!(unset.public_code(), "config_invalid");
        let generic = "the Worker's configuration is invalid; its log names the key";
        // Another missing key, and an invalid one, say nothing about the key or the range.
        let missing = Ingress::from_lookup(&table(&[])).unwrap_err();
        assert!(matches!(missing, ConfigError::Missing { .. }));
        assert_eq!(missing.public_message(), generic);
        let invalid = forward(&[("FORWARD_MAX_ATTEMPTS", "0")]).unwrap_err();
        assert_eq!(invalid.code(), "config_out_of_range");
        assert_eq!(invalid.public_message(), generic);
    }

    #[test]
    fn the_signed_url_is_the_public_base_with_the_path_or_the_raw_url() {
        let base = [("HUBSPOT_CLIENT_SECRET", "s")];
        let raw = "http://127.0.0.1:8787/webhooks/hubspot?a=1";
        let plain = Ingress::from_lookup(&table(&base)).unwrap();
        assert_eq!(plain.signed_url(raw), raw);
        let public = Ingress::from_lookup(&table(&[
            ("HUBSPOT_CLIENT_SECRET", "s"),
            ("PUBLIC_BASE_URL", "https://edge.example/"),
        ]))
        .unwrap();
        assert_eq!(
            public.signed_url(raw),
            "https://edge.example/webhooks/hubspot?a=1"
        );
    }
}
