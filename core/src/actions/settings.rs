//! The actions' configuration, read from the host's keys.

use crate::config::{ConfigError, Lookup, ACTIONS_BUDGET_MS, ACTIONS_COMPLETE_WINDOW_MS};
use crate::id::PortalId;
use crate::mapping::Mapping;
use crate::outbound::WebhookSecret;
use crate::signature::{ClientSecret, LegacySignatures, SignatureError, SignedRequest, Verifier};

use super::execution::{execute, hubspot_error_body, ExecuteContext, ExecuteError, ExecutionStep};
use super::ledger::AnswerWire;
use super::{ActionError, Definition, Definitions, ExecutionRequest};

/// A key lookup, type-erased: one copy of [`ActionSettings::read`] serves every caller.
pub(crate) type KeyLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// An execution request checked ([`ActionSettings::prepare`]), ready to be admitted by its
/// `callbackId`.
#[derive(Debug)]
pub struct PreparedExecution<'a> {
    /// The action.
    pub definition: &'a Definition,
    /// The request.
    pub request: ExecutionRequest,
    /// What it does: an answer known now, or the lookup to call.
    pub step: ExecutionStep,
}

impl PreparedExecution<'_> {
    /// The answer when it is known before anything runs (`map_and_write`, `approval`): the
    /// store records it when it admits the execution, in one round trip.
    pub fn known_answer(&self) -> Option<AnswerWire> {
        match &self.step {
            ExecutionStep::Answer(a) => Some(AnswerWire::from(a)),
            ExecutionStep::Call(_) => None,
        }
    }
}

/// Why an execution request is answered at once, nothing run.
#[derive(Debug)]
#[non_exhaustive]
pub enum ExecutionRefusal {
    /// The signature does not verify: 401 with [`SignatureError::public_code`] only.
    Signature(SignatureError),
    /// No configured action has this key: 404.
    UnknownAction,
    /// Not an execution request: 400.
    Malformed(ActionError),
    /// The object type or inputs do not fit the action: 400 (an execution refused, of this
    /// portal).
    Refused {
        /// The portal the request came from.
        portal_id: PortalId,
        /// Why.
        error: ExecuteError,
    },
}

impl ExecutionRefusal {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            Self::Signature(_) => 401,
            Self::UnknownAction => 404,
            Self::Malformed(_) | Self::Refused { .. } => 400,
        }
    }

    /// The stable code (for logs; a signature's own, finer than its public code).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Signature(e) => e.code(),
            Self::UnknownAction => "action_unknown",
            Self::Malformed(e) => e.code(),
            Self::Refused { error, .. } => error.code(),
        }
    }

    /// HubSpot's error body (HubSpot shows it in the workflow's history; any 2xx would count
    /// as success); `None` for a signature refusal, answered with the host's own error body.
    pub fn hubspot_body(&self) -> Option<Vec<u8>> {
        match self {
            Self::Signature(_) => None,
            Self::UnknownAction => {
                Some(hubspot_error_body("no such action", "action_unknown", None))
            }
            Self::Malformed(e) => Some(hubspot_error_body(&e.to_string(), e.code(), None)),
            Self::Refused { error, .. } => Some(error.to_hubspot_body()),
        }
    }
}

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
    /// `Ok(None)` when `ACTIONS` is unset: actions are off, nothing else is read.
    /// `ACTIONS_COMPLETE_WINDOW_MS` is checked too (the per-portal object reads it itself), so
    /// that a bad window is loud on every request. The same checks as
    /// [`crate::config::actions`] (`/healthz`), with the same codes.
    ///
    /// # Errors
    /// The first missing or invalid key ([`ConfigError::key`], [`ConfigError::code`]; never a
    /// secret).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        // `dyn`: one copy of the checks for this and the health check.
        let lookup = Lookup::new(&var as KeyLookup<'_>);
        if lookup.optional("ACTIONS").is_none() {
            return Ok(None);
        }
        Self::read(&lookup).map_err(|mut errors| errors.remove(0))
    }

    /// Every actions key checked, every problem kept (in this order: the two numbers,
    /// `ACTIONS_CALLBACK_SECRET`, then with `ACTIONS` set `HUBSPOT_CLIENT_SECRET`,
    /// `ENRICHMENT_MAP` and `ACTIONS`); `Ok(None)` when `ACTIONS` is unset and nothing else is
    /// wrong.
    pub(crate) fn read(lookup: &Lookup<KeyLookup<'_>>) -> Result<Option<Self>, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut number = |key| {
            lookup
                .number(key)
                .map_err(|e| errors.push(e))
                .unwrap_or_default()
        };
        let budget_ms = number(ACTIONS_BUDGET_MS);
        number(ACTIONS_COMPLETE_WINDOW_MS);
        // `actions_callback_secret_invalid`, like the other secrets' codes
        // (`forward_secret_invalid`, `inbound_secret_invalid`, `alert_secret_invalid`):
        // `config_invalid` is every key's public code and would not say which check failed.
        let callback_secret = lookup.optional("ACTIONS_CALLBACK_SECRET").and_then(|s| {
            WebhookSecret::parse(&s)
                .map_err(|e| {
                    errors.push(ConfigError::Invalid {
                        key: "ACTIONS_CALLBACK_SECRET",
                        code: "actions_callback_secret_invalid",
                        detail: e.to_string(),
                    });
                })
                .ok()
        });
        let Some(json) = lookup.optional("ACTIONS") else {
            return if errors.is_empty() {
                Ok(None)
            } else {
                Err(errors)
            };
        };
        let verifier = lookup
            .required("HUBSPOT_CLIENT_SECRET")
            .map_err(|e| errors.push(e))
            .ok()
            .map(|secret| {
                Verifier::new(ClientSecret::new(&secret)).with_legacy(LegacySignatures::Accept)
            });
        let mapping = lookup.optional("ENRICHMENT_MAP").and_then(|m| {
            Mapping::from_json(&m)
                .map_err(|e| {
                    errors.push(ConfigError::Invalid {
                        key: "ENRICHMENT_MAP",
                        code: e.code(),
                        detail: e.to_string(),
                    });
                })
                .ok()
        });
        let definitions = Definitions::parse(&json, |name| lookup.optional(name), mapping.as_ref())
            .map_err(|e| {
                errors.push(ConfigError::Invalid {
                    key: "ACTIONS",
                    code: e.code(),
                    detail: e.to_string(),
                });
            })
            .ok();
        match (definitions, verifier) {
            (Some(definitions), Some(verifier)) if errors.is_empty() => Ok(Some(Self {
                definitions,
                verifier,
                public_base_url: lookup
                    .optional("PUBLIC_BASE_URL")
                    .map(|u| u.trim_end_matches('/').to_owned()),
                budget_ms,
                callback_secret,
            })),
            _ => Err(errors),
        }
    }

    /// The URL HubSpot signed for a request whose raw URL is `raw_url` and whose path and
    /// query are `path_and_query`: the configured public base URL with them, else the raw URL.
    pub fn signed_url(&self, raw_url: &str, path_and_query: &str) -> String {
        match &self.public_base_url {
            Some(base) => format!("{base}{path_and_query}"),
            None => raw_url.to_owned(),
        }
    }

    /// Checks an execution request for action `key`, in order: its signature (at `now_ms`),
    /// the action, the body, then the object type and inputs ([`execute`], with the public
    /// base URL, or `origin` when it is unset).
    ///
    /// # Errors
    /// [`ExecutionRefusal`]: answer at once, nothing runs.
    pub fn prepare(
        &self,
        key: &str,
        signed: &SignedRequest<'_>,
        origin: &str,
        now_ms: u64,
    ) -> Result<PreparedExecution<'_>, ExecutionRefusal> {
        self.verifier
            .verify(signed, now_ms)
            .map_err(ExecutionRefusal::Signature)?;
        let definition = self
            .definitions
            .get(key)
            .ok_or(ExecutionRefusal::UnknownAction)?;
        let request = ExecutionRequest::parse(signed.body).map_err(ExecutionRefusal::Malformed)?;
        let ctx = ExecuteContext {
            public_base_url: self.public_base_url.as_deref().unwrap_or(origin),
            budget_ms: self.budget_ms,
            now_secs: now_ms / 1000,
        };
        match execute(definition, &request, &ctx) {
            Ok(step) => Ok(PreparedExecution {
                definition,
                request,
                step,
            }),
            Err(error) => Err(ExecutionRefusal::Refused {
                portal_id: request.origin.portal_id,
                error,
            }),
        }
    }
}
