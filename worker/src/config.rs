//! Configuration, read from the Worker's environment (secrets and `[vars]`; `.dev.vars`
//! locally): a thin adapter over core's [`hubspot_edge_core::config`], which parses and checks
//! every key (ranges, https, structured values). Every key is documented in the README's
//! configuration table and in `.dev.vars.example`. The whole deployment is core's
//! [`core_config::Config::from_lookup`] (what `/healthz` and the CLI's `check-config` report);
//! each request of the Worker reads only the part it needs, so a missing forwarding secret
//! does not stop webhooks from being accepted and queued, and a webhook does not parse
//! `RULES`, `ACTIONS` or `ALERTS`.

use hubspot_edge_core::config::{self as core_config, Lookup};
use hubspot_edge_core::mapping::Mapping;
use worker::Env;

pub(crate) use hubspot_edge_core::config::{AccessToken, HubSpotAuth};

/// A setting is missing or invalid; the message names the key (and the accepted range). The
/// message is for the log and for authenticated operators; anyone else sees only
/// [`Self::code`].
#[derive(Debug)]
pub(crate) struct ConfigError {
    pub(crate) key: &'static str,
    pub(crate) problem: String,
    /// Core's specific code (`config_out_of_range`, `config_plain_http`, …).
    pub(crate) kind: &'static str,
    /// What a caller who is not an operator may see (core's
    /// [`core_config::ConfigError::public_message`]).
    pub(crate) public: &'static str,
}

impl ConfigError {
    /// The stable public code: `config_invalid`.
    pub(crate) fn code(&self) -> &'static str {
        "config_invalid"
    }

    /// The detail: names the key and what is accepted. Never a secret value.
    pub(crate) fn message(&self) -> String {
        self.problem.clone()
    }
}

impl From<core_config::ConfigError> for ConfigError {
    fn from(e: core_config::ConfigError) -> Self {
        Self {
            key: e.key(),
            problem: e.to_string(),
            kind: e.code(),
            public: e.public_message(),
        }
    }
}

type Result<T> = std::result::Result<T, ConfigError>;

/// The environment as a key lookup. Secrets and plain vars are both strings on `env`; `var`
/// reads either.
pub(crate) fn lookup(env: &Env) -> Lookup<impl Fn(&str) -> Option<String> + '_> {
    Lookup::new(move |key: &str| env.var(key).ok().map(|v| v.to_string()))
}

/// Core's parsed part, read from `env`, dereferencing to it (`config.url`, `config.retry`).
macro_rules! part {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub(crate) struct $name(core_config::$name);

        impl $name {
            pub(crate) fn from_env(env: &Env) -> Result<Self> {
                Ok(Self(core_config::$name::from_lookup(&lookup(env))?))
            }
        }

        impl std::ops::Deref for $name {
            type Target = core_config::$name;

            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }
    };
}

/// Everything the webhook ingress needs (core's [`core_config::Ingress`]).
pub(crate) fn ingress(env: &Env) -> Result<core_config::Ingress> {
    Ok(core_config::Ingress::from_lookup(&lookup(env))?)
}

/// Everything the forwarding consumer needs (core's [`core_config::ForwardConfig`], dereferencing to
/// it).
#[derive(Debug)]
pub(crate) struct Forward(core_config::ForwardConfig);

impl Forward {
    /// The forwarding consumer's configuration (`ENRICHMENT_MAP` included), or every problem
    /// that stops it.
    pub(crate) fn from_env(env: &Env) -> std::result::Result<Self, Vec<core_config::ConfigError>> {
        core_config::ForwardConfig::read(&lookup(env)).map(Self)
    }
}

impl std::ops::Deref for Forward {
    type Target = core_config::ForwardConfig;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}
part!(
    /// Everything the HubSpot API executor needs (`/admin/hubspot/*`).
    HubSpotApi
);

/// `ENRICHMENT_MAP`, compiled: `None` when unset. The message of an invalid map names the entry
/// and carries core's code (`mapping_config_invalid`), never a value.
pub(crate) fn enrichment(env: &Env) -> Result<Option<Mapping>> {
    Ok(core_config::enrichment(&lookup(env))?)
}

/// The admin token, compared in constant time.
pub(crate) fn admin_token(env: &Env) -> Result<String> {
    Ok(core_config::admin_token(&lookup(env))?)
}

/// `DEAD_LETTER_RETENTION_DAYS`: how long a dead letter is kept (default 14, 1..=365).
pub(crate) fn dead_letter_retention(
    env: &Env,
) -> Result<hubspot_edge_core::dead_letter::Retention> {
    Ok(core_config::dead_letter_retention(&lookup(env))?)
}

/// `FAULT_INJECTION`: test only, off by default. When `true`, `POST /admin/faults/…` (behind
/// the admin token) can make the Worker's own dependencies fail on purpose.
pub(crate) fn fault_injection(env: &Env) -> Result<bool> {
    Ok(core_config::fault_injection(&lookup(env))?)
}

/// Every configuration problem of the deployment (core's [`core_config::check`], the errors of
/// [`core_config::Config::from_lookup`]): what `/healthz` reports.
pub(crate) fn problems(env: &Env) -> Vec<core_config::Problem> {
    core_config::check(&lookup(env))
}

/// The forwarding retry policy on its own (`FORWARD_MAX_ATTEMPTS`, `FORWARD_RETRY_*`): the
/// operator's when those keys are valid, else the default. Used while the rest of the
/// forwarding configuration is broken.
pub(crate) fn retry_policy(env: &Env) -> hubspot_edge_core::delivery::DeliveryRetryPolicy {
    core_config::retry_policy(&lookup(env)).unwrap_or_default()
}

/// Logs one `config_invalid` error line per problem: the key, core's code and the message
/// (the accepted range; never a value other than a parsed number).
pub(crate) fn log_problems(errors: &[core_config::ConfigError], request_id: &str) {
    for e in errors {
        crate::log::Line::error("config_invalid")
            .field("request_id", request_id)
            .field("key", e.key())
            .field("code", e.code())
            .field("error", e.to_string())
            .emit();
    }
}
