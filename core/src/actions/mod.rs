//! Custom workflow actions (HubSpot's Automation Actions v4): the execution request HubSpot
//! sends to an action's `actionUrl`, the answer, and the completion of a blocked execution, as
//! values. No I/O: the host verifies, parses, decides and sends.
//!
//! HubSpot's documentation: <https://developers.hubspot.com/docs/api/automation/custom-workflow-actions>
//! (execution request, response, `BLOCK`, callbacks) and
//! <https://developers.hubspot.com/docs/api-reference/automation-actions-v4-v4/guide>.
//!
//! - **Signature.** Execution requests are signed with the v2 `X-HubSpot-Signature` (method,
//!   URI and body; no timestamp), v3 when its headers are present: verify them with
//!   [`crate::signature::Verifier`] and [`crate::signature::LegacySignatures::Accept`] (a request
//!   carrying v3 headers is judged by v3 alone, with its 5-minute window), in constant time like
//!   webhooks.
//! - **Request.** [`ExecutionRequest::parse`] reads every documented field and tolerates
//!   unknown ones; `context.source` is open-ended ([`Source::Other`]), `typedInputs` and
//!   `fields` are kept when present.
//! - **Answer.** [`Answer`] renders `{"outputFields": {…, "hs_execution_state": …}}`.
//!   HubSpot counts any 2xx as success and does not check the body, so the state is always
//!   written explicitly.
//! - **Completion.** [`Completion`] renders the body of
//!   `POST /automation/v4/actions/callbacks/{callbackId}/complete` and the batch body of
//!   `POST /automation/v4/actions/callbacks/complete`, with `outputFields` and `typedOutputs`
//!   (the current specification requires the latter; HubSpot's Node client sends only the
//!   former: both are sent, `typedOutputs` holding the same values).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::id::PortalId;

mod callback;
mod completion;
mod definition;
mod execution;
mod flush;
mod ledger;
mod publish;
mod settings;

pub use callback::{CallbackAnswer, CallbackRoute, CallbackStep, LateCompletionRetry};
pub use completion::{
    batch_fate, batch_request, due_batches, next_due_ms, BatchFate, Pending,
    DEFAULT_COMPLETE_WINDOW_MS, MAX_COMPLETION_BATCH, MAX_LINGER_WINDOWS,
};
pub use execution::{
    admit, callback_completion, callback_portal, complete, duration_ms, execute, expire, fail,
    finish, hubspot_error_body, late_lookup_completion, lookup_answer, rule_completion,
    validate_inputs, validate_outputs, CallbackError, CompleteError, ExecuteContext, ExecuteError,
    ExecutionAdmit, ExecutionRecord, ExecutionStep, FieldError, LookupCall, LookupReply,
    ObjectCompletion, Reply, DEFAULT_BUDGET_MS, STALE_RUN_MS,
};

pub use flush::CompletionFlush;
pub use ledger::{ActionLetter, AnswerWire, ExecutionLedger, LedgerStep};
pub use publish::{PublishNext, PublishRun};
pub(crate) use settings::KeyLookup;
pub use settings::{ActionSettings, ExecutionRefusal, PreparedExecution};

pub use definition::{
    list_page, plan_publish, ActionFieldType, Definition, DefinitionError, Definitions,
    DefinitionsApi, InputField, Kind, OutputField, PublishStep, DEFAULT_EXPIRATION,
};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_flow;
#[cfg(test)]
mod tests_ledger;

/// Why an execution request or an answer was refused. Stable codes by [`ActionError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    /// The body is not a JSON object of the documented shape (a required field missing or of
    /// the wrong type).
    #[error("execution request malformed: {0}")]
    Malformed(String),
    /// `callbackId` is empty: the execution could not be completed or deduplicated.
    #[error("execution request has an empty callbackId")]
    MissingCallbackId,
    /// A `BLOCK` expiration that is not an ISO-8601 duration (`P1WT1H`).
    #[error("expiration {0:?} is not an ISO-8601 duration")]
    BadExpiration(String),
    /// A completion must end the execution: `SUCCESS` or `FAIL_CONTINUE`, not `BLOCK`.
    #[error("a completion cannot block again")]
    CompletionBlocks,
    /// An output field named like HubSpot's reserved `hs_execution_state` or
    /// `hs_expiration_duration`: set them through the state, not as outputs.
    #[error("output field {0:?} is reserved")]
    ReservedOutput(String),
}

impl ActionError {
    /// Stable code: `action_request_malformed`, `action_callback_id_missing`,
    /// `action_expiration_invalid`, `action_completion_blocks` or `action_output_reserved`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "action_request_malformed",
            Self::MissingCallbackId => "action_callback_id_missing",
            Self::BadExpiration(_) => "action_expiration_invalid",
            Self::CompletionBlocks => "action_completion_blocks",
            Self::ReservedOutput(_) => "action_output_reserved",
        }
    }
}

/// An execution request, as HubSpot posts it to `actionUrl`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionRequest {
    /// The execution's id: completing a blocked execution names it, and HubSpot's retries of
    /// one execution carry the same one (the idempotency key).
    pub callback_id: String,
    /// Which account and action definition.
    pub origin: ActionOrigin,
    /// What called the action.
    #[serde(default)]
    pub context: Context,
    /// The enrolled object.
    pub object: ActionObject,
    /// The action's inputs as strings (`inputFields`).
    #[serde(default)]
    pub input_fields: Map<String, Value>,
    /// The inputs with their types, when HubSpot sends them (`typedInputs`).
    #[serde(default)]
    pub typed_inputs: Option<Map<String, Value>>,
    /// `fields`, seen on real requests next to `inputFields` (undocumented), when present.
    #[serde(default)]
    pub fields: Option<Map<String, Value>>,
}

/// `origin`: the account and the action definition.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionOrigin {
    /// The HubSpot account (portal) that runs the workflow: executions arrive from every
    /// account that installed the app; complete each with that account's credentials.
    pub portal_id: PortalId,
    /// The action definition.
    pub action_definition_id: u64,
    /// Its version, when sent.
    #[serde(default)]
    pub action_definition_version: Option<u64>,
    /// `extensionDefinitionId`, when sent.
    #[serde(default)]
    pub extension_definition_id: Option<u64>,
    /// `extensionDefinitionVersionId`, when sent.
    #[serde(default)]
    pub extension_definition_version_id: Option<u64>,
}

/// `context`: what called the action.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// `WORKFLOWS` or another caller.
    #[serde(default)]
    pub source: Source,
    /// The workflow, for [`Source::Workflows`].
    #[serde(default)]
    pub workflow_id: Option<u64>,
    /// The action within the workflow, when sent.
    #[serde(default)]
    pub action_id: Option<u64>,
}

/// `context.source`: open-ended (the specification lists agents, copilot, standalone and test
/// contexts besides workflows).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Source {
    /// `WORKFLOWS`.
    Workflows,
    /// Any other value, kept as sent.
    Other(String),
    /// Not sent.
    #[default]
    Unknown,
}

impl<'de> Deserialize<'de> for Source {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        Ok(match s.as_deref() {
            Some("WORKFLOWS") => Self::Workflows,
            Some(other) => Self::Other(other.to_owned()),
            None => Self::Unknown,
        })
    }
}

/// `object`: the enrolled record, with the properties the definition's `objectRequestOptions`
/// asked for.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionObject {
    /// Its id (a number in the docs' example; a string is accepted too).
    #[serde(deserialize_with = "id_text")]
    pub object_id: String,
    /// Its type as HubSpot names it here (`CONTACT`, `DEAL`, `0-1`, `2-123`…).
    pub object_type: String,
    /// The requested properties (`null` for a property without a value).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, Option<String>>,
}

impl ActionObject {
    /// The key that names this object across vocabularies ([`object_key`]).
    pub fn key(&self) -> String {
        object_key(&self.object_type, &self.object_id)
    }
}

/// One name for an object however it is spelled: an execution request's `CONTACT` or `0-1`,
/// an event's `contact`, a mapping's `contacts` all give `contact:{id}` (custom object ids such
/// as `2-123` are kept as they are). Rules complete the executions blocked for an object
/// through this key ([`crate::rules::Effect::CompleteBlocked`]).
pub fn object_key(object_type: &str, object_id: &str) -> String {
    let lower = object_type.to_ascii_lowercase();
    let name = crate::mapping::canonical_object_type(crate::event::canonical_object_type(&lower));
    format!("{name}:{object_id}")
}

fn id_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) if n.is_u64() => Ok(n.to_string()),
        Value::String(s) if !s.is_empty() => Ok(s),
        other => Err(serde::de::Error::custom(format!(
            "objectId must be a number, not {other}"
        ))),
    }
}

impl ExecutionRequest {
    /// Parses a request body (after its signature was verified).
    ///
    /// # Errors
    /// [`ActionError::Malformed`] naming what is wrong, or [`ActionError::MissingCallbackId`].
    pub fn parse(body: &[u8]) -> Result<Self, ActionError> {
        let request: Self =
            serde_json::from_slice(body).map_err(|e| ActionError::Malformed(e.to_string()))?;
        if request.callback_id.trim().is_empty() {
            return Err(ActionError::MissingCallbackId);
        }
        Ok(request)
    }

    /// An input by name: from `typedInputs` when HubSpot sent them, else from `inputFields`.
    pub fn input(&self, name: &str) -> Option<&Value> {
        self.typed_inputs
            .as_ref()
            .and_then(|t| t.get(name))
            .or_else(|| self.input_fields.get(name))
    }
}

/// How an execution ends (or waits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ExecutionState {
    /// Done; the workflow moves on.
    Success,
    /// Failed; the workflow moves on (HubSpot has no "retry" state).
    FailContinue,
    /// The workflow waits for a completion, at most `expiration` (an ISO-8601 duration; HubSpot
    /// defaults to one week), then continues.
    Block {
        /// `hs_expiration_duration`, e.g. `P1WT1H`.
        expiration: Option<String>,
    },
}

impl ExecutionState {
    /// The `hs_execution_state` value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "SUCCESS",
            Self::FailContinue => "FAIL_CONTINUE",
            Self::Block { .. } => "BLOCK",
        }
    }
}

/// The answer to an execution request: its output fields and state.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// The action's output fields (values as the definition types them).
    pub outputs: Map<String, Value>,
    /// How the execution ends.
    pub state: ExecutionState,
}

const STATE: &str = "hs_execution_state";
const EXPIRATION: &str = "hs_expiration_duration";

impl Answer {
    /// The response body: `{"outputFields": {…outputs, "hs_execution_state": …}}`, with
    /// `hs_expiration_duration` for a block that sets one.
    ///
    /// # Errors
    /// [`ActionError::ReservedOutput`] for an output named like the state fields;
    /// [`ActionError::BadExpiration`] for an expiration that is not an ISO-8601 duration.
    pub fn to_body(&self) -> Result<Vec<u8>, ActionError> {
        let fields = output_fields(&self.outputs, &self.state)?;
        Ok(serde_json::to_vec(&serde_json::json!({ "outputFields": fields })).unwrap_or_default())
    }
}

fn output_fields(
    outputs: &Map<String, Value>,
    state: &ExecutionState,
) -> Result<Map<String, Value>, ActionError> {
    if let Some(reserved) = outputs.keys().find(|k| *k == STATE || *k == EXPIRATION) {
        return Err(ActionError::ReservedOutput(reserved.clone()));
    }
    let mut fields = outputs.clone();
    fields.insert(STATE.into(), Value::String(state.as_str().into()));
    if let ExecutionState::Block {
        expiration: Some(e),
    } = state
    {
        if !is_iso8601_duration(e) {
            return Err(ActionError::BadExpiration(e.clone()));
        }
        fields.insert(EXPIRATION.into(), Value::String(e.clone()));
    }
    Ok(fields)
}

/// The completion of a blocked execution.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The execution (`callbackId`).
    pub callback_id: String,
    /// Its output fields.
    pub outputs: Map<String, Value>,
    /// `SUCCESS` or `FAIL_CONTINUE`.
    pub state: ExecutionState,
}

impl Completion {
    /// The path of the single completion (`/automation/v4/actions/callbacks/{callbackId}/complete`),
    /// the callback id percent-encoded.
    pub fn path(&self) -> String {
        format!(
            "/automation/v4/actions/callbacks/{}/complete",
            crate::api::encode_segment(&self.callback_id)
        )
    }

    /// The body of the single completion: `{"outputFields": {…}, "typedOutputs": {…}}`.
    ///
    /// # Errors
    /// [`ActionError::CompletionBlocks`] for a `BLOCK` state; as [`Answer::to_body`].
    pub fn to_body(&self) -> Result<Vec<u8>, ActionError> {
        Ok(serde_json::to_vec(&self.json(false)?).unwrap_or_default())
    }

    fn json(&self, with_id: bool) -> Result<Value, ActionError> {
        if matches!(self.state, ExecutionState::Block { .. }) {
            return Err(ActionError::CompletionBlocks);
        }
        let fields = output_fields(&self.outputs, &self.state)?;
        let mut v = serde_json::json!({
            "outputFields": fields,
            "typedOutputs": self.outputs,
        });
        if with_id {
            v["callbackId"] = Value::String(self.callback_id.clone());
        }
        Ok(v)
    }

    /// The path of the batch completion.
    pub const BATCH_PATH: &'static str = "/automation/v4/actions/callbacks/complete";

    /// The body of a batch completion of `completions`:
    /// `{"inputs": [{"callbackId", "outputFields", "typedOutputs"}…]}`.
    ///
    /// # Errors
    /// The first completion's error, as [`Self::to_body`].
    pub fn batch_body(completions: &[Completion]) -> Result<Vec<u8>, ActionError> {
        let inputs = completions
            .iter()
            .map(|c| c.json(true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(serde_json::to_vec(&serde_json::json!({ "inputs": inputs })).unwrap_or_default())
    }
}

/// Whether `text` is an ISO-8601 duration HubSpot's example uses (`P1WT1H`, `PT30M`, `P3D`):
/// `P`, then date parts (`Y`, `M`, `W`, `D`), then optionally `T` and time parts (`H`, `M`,
/// `S`), each a whole number, at least one part, each unit once and in order.
pub fn is_iso8601_duration(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('P') else {
        return false;
    };
    let (date, time) = match rest.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return false,
        None => (rest, None),
    };
    let parts = |s: &str, units: &[char]| -> Option<usize> {
        let mut count = 0;
        let mut next_unit = 0;
        let mut digits = 0;
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits += 1;
                continue;
            }
            let pos = units[next_unit..].iter().position(|u| *u == c)?;
            if digits == 0 {
                return None;
            }
            next_unit += pos + 1;
            digits = 0;
            count += 1;
        }
        (digits == 0).then_some(count)
    };
    let Some(d) = parts(date, &['Y', 'M', 'W', 'D']) else {
        return false;
    };
    let t = match time {
        Some(t) => match parts(t, &['H', 'M', 'S']) {
            Some(n) if n > 0 => n,
            _ => return false,
        },
        None => 0,
    };
    d + t > 0
}
