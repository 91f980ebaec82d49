//! Execution decisions, pure and poll-style (`now` passed in): inputs checked against the
//! definition, what each built-in does (a `map_and_write` answer, the `lookup` request as a
//! value and the answer made of its reply, an `approval` block), the user's system's callback,
//! and the idempotency record kept per `callbackId`.
//!
//! HubSpot counts any 2xx as success and does not read the body (docs/hubspot.md §3.2), so a
//! request we cannot serve is a 4xx with HubSpot's documented error body
//! (`{"status":"error","message",…,"category":"VALIDATION_ERROR"}`,
//! <https://developers.hubspot.com/docs/api/error-handling>), never a 2xx with wrong outputs.
//! HubSpot marks a 4xx (other than 429) as failed and does not retry it (docs/hubspot.md §3.3).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::definition::{ActionFieldType, Definition, Definitions, Kind};
use super::{Answer, Completion, ExecutionRequest, ExecutionState};
use crate::id::PortalId;
use crate::mapping::calendar::{parse_date, parse_datetime};

/// An input or output value that does not fit the definition. Stable codes by
/// [`FieldError::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// A required input is absent or empty.
    #[error("input {0:?} is required")]
    Missing(String),
    /// A value that is not of its field's type (or not one of an enumeration's options).
    #[error("{kind} {name:?} must be a {ty}")]
    WrongType {
        /// `input` or `output`.
        kind: &'static str,
        /// The field.
        name: String,
        /// Its type.
        ty: &'static str,
    },
    /// An output the definition does not declare.
    #[error("output {0:?} is not an output field of the action")]
    UnknownOutput(String),
}

impl FieldError {
    /// Stable code: `action_input_missing`, `action_field_type` or `action_output_unknown`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing(_) => "action_input_missing",
            Self::WrongType { .. } => "action_field_type",
            Self::UnknownOutput(_) => "action_output_unknown",
        }
    }

    /// The field named.
    pub fn field(&self) -> &str {
        match self {
            Self::Missing(n) | Self::UnknownOutput(n) | Self::WrongType { name: n, .. } => n,
        }
    }

    /// The 400 body HubSpot shows the workflow's user: HubSpot's documented error shape, the
    /// field in `errors[].context` (no value).
    pub fn to_hubspot_body(&self) -> Vec<u8> {
        hubspot_error_body(&self.to_string(), self.code(), Some(self.field()))
    }
}

/// HubSpot's documented error shape (docs/hubspot.md §4.5): `status`, `message`, `category`
/// `VALIDATION_ERROR`, and one `errors[]` entry with our `code` and the field.
pub fn hubspot_error_body(message: &str, code: &str, field: Option<&str>) -> Vec<u8> {
    let mut error = json!({"message": message, "code": code});
    if let Some(f) = field {
        error["context"] = json!({"fieldName": [f]});
    }
    serde_json::to_vec(&json!({
        "status": "error",
        "message": message,
        "category": "VALIDATION_ERROR",
        "errors": [error],
    }))
    .unwrap_or_default()
}

/// `value` as a `ty`, normalised (numbers and booleans sent as text become JSON numbers and
/// booleans); `None` when it is not one. `options` for an enumeration.
fn typed(value: &Value, ty: ActionFieldType, options: &[String]) -> Option<Value> {
    let text = match value {
        Value::String(s) => Some(s.trim()),
        _ => None,
    };
    match ty {
        ActionFieldType::String => match value {
            Value::String(_) => Some(value.clone()),
            Value::Number(n) => Some(Value::String(n.to_string())),
            Value::Bool(b) => Some(Value::String(b.to_string())),
            _ => None,
        },
        ActionFieldType::Number => match value {
            Value::Number(_) => Some(value.clone()),
            _ => text
                .filter(|t| !t.contains(','))
                .and_then(|t| t.parse::<f64>().ok())
                .filter(|f| f.is_finite())
                .and_then(|f| {
                    // Keep integers integral (`"42"` → 42, not 42.0).
                    text.and_then(|t| t.parse::<i64>().ok())
                        .map(Value::from)
                        .or_else(|| serde_json::Number::from_f64(f).map(Value::Number))
                }),
        },
        ActionFieldType::Bool => match value {
            Value::Bool(_) => Some(value.clone()),
            _ => match text.map(str::to_ascii_lowercase).as_deref() {
                Some("true") => Some(Value::Bool(true)),
                Some("false") => Some(Value::Bool(false)),
                _ => None,
            },
        },
        ActionFieldType::Date => match (value, text) {
            (Value::Number(n), _) if n.is_i64() => Some(value.clone()),
            (_, Some(t)) if parse_date(t).is_ok() || t.parse::<i64>().is_ok() => {
                Some(value.clone())
            }
            _ => None,
        },
        ActionFieldType::Datetime => match (value, text) {
            (Value::Number(n), _) if n.is_i64() => Some(value.clone()),
            (_, Some(t)) if parse_datetime(t).is_ok() || t.parse::<i64>().is_ok() => {
                Some(value.clone())
            }
            _ => None,
        },
        ActionFieldType::Enumeration => text
            .filter(|t| options.iter().any(|o| o == t))
            .map(|t| Value::String(t.to_owned())),
    }
}

/// HubSpot's `typedInputs` entries may be `{"value": …, "type": "STRING"}` (seen on real
/// requests, docs/hubspot.md §3.2): the value inside.
fn unwrap_typed(v: &Value) -> &Value {
    match v {
        Value::Object(m) if m.contains_key("value") => &m["value"],
        other => other,
    }
}

/// The request's inputs checked against the definition: every declared input, normalised to
/// its type; inputs the definition does not declare are dropped (HubSpot may send more).
///
/// # Errors
/// The first input (in definition order) that is missing or of the wrong type.
pub fn validate_inputs(
    definition: &Definition,
    request: &ExecutionRequest,
) -> Result<Map<String, Value>, FieldError> {
    let mut out = Map::new();
    for f in &definition.input_fields {
        let value = request.input(&f.name).map(unwrap_typed);
        let empty = match value {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if empty {
            if f.required {
                return Err(FieldError::Missing(f.name.clone()));
            }
            continue;
        }
        let value = value.unwrap_or(&Value::Null);
        let v = typed(value, f.ty, &f.options).ok_or_else(|| FieldError::WrongType {
            kind: "input",
            name: f.name.clone(),
            ty: f.ty.as_str(),
        })?;
        out.insert(f.name.clone(), v);
    }
    Ok(out)
}

/// Outputs (from the user's system or a mapping) checked against the definition's output
/// fields and normalised to their types. Absent outputs are allowed; `null` ones are dropped.
///
/// # Errors
/// An output the definition does not declare, or one of the wrong type.
pub fn validate_outputs(
    definition: &Definition,
    outputs: &Map<String, Value>,
) -> Result<Map<String, Value>, FieldError> {
    let mut out = Map::new();
    for (name, value) in outputs {
        let f = definition
            .output_fields
            .iter()
            .find(|f| &f.name == name)
            .ok_or_else(|| FieldError::UnknownOutput(name.clone()))?;
        if value.is_null() {
            continue;
        }
        let v = typed(value, f.ty, &[]).ok_or_else(|| FieldError::WrongType {
            kind: "output",
            name: name.clone(),
            ty: f.ty.as_str(),
        })?;
        out.insert(name.clone(), v);
    }
    Ok(out)
}

/// What to do with an admitted execution.
#[derive(Debug, Clone)]
pub enum ExecutionStep {
    /// Answer now (`map_and_write`, or an approval's block).
    Answer(Answer),
    /// Call the user's system (`lookup`) within the budget; then [`lookup_answer`].
    Call(Box<LookupCall>),
}

/// The lookup request to the user's system, as a value.
#[derive(Debug, Clone)]
pub struct LookupCall {
    /// `POST` to this URL, with `headers` and `body`.
    pub request: http::Request<Vec<u8>>,
    /// Answer `BLOCK` when no reply came within this many milliseconds.
    pub budget_ms: u64,
}

/// Why an execution could not be served: a 400 with HubSpot's error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError {
    /// An input does not fit the definition.
    #[error(transparent)]
    Input(#[from] FieldError),
    /// The request names an object type the action is not defined for.
    #[error("the action does not apply to object type {0:?}")]
    ObjectType(String),
}

impl ExecuteError {
    /// Stable code: [`FieldError::code`] or `action_object_type`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Input(e) => e.code(),
            Self::ObjectType(_) => "action_object_type",
        }
    }

    /// The 400 body HubSpot shows the workflow's user.
    pub fn to_hubspot_body(&self) -> Vec<u8> {
        match self {
            Self::Input(e) => e.to_hubspot_body(),
            Self::ObjectType(_) => hubspot_error_body(&self.to_string(), self.code(), None),
        }
    }
}

/// The settings an execution needs besides its definition.
#[derive(Debug, Clone)]
pub struct ExecuteContext<'a> {
    /// `PUBLIC_BASE_URL`: the callback URL given to the user's system is
    /// `{base}/actions/callbacks/{callbackId}`.
    pub public_base_url: &'a str,
    /// `ACTIONS_BUDGET_MS`: how long a lookup may take before the execution blocks (default
    /// 3,000: HubSpot documents no timeout for actions; 5 s is its webhook deadline).
    pub budget_ms: u64,
    /// Now, Unix seconds (the Standard Webhooks timestamp).
    pub now_secs: u64,
}

/// The default `ACTIONS_BUDGET_MS`.
pub const DEFAULT_BUDGET_MS: u64 = 3_000;

/// Decides what an admitted execution does: inputs checked, then by kind.
///
/// # Errors
/// [`ExecuteError`]: answer 400 with [`ExecuteError::to_hubspot_body`]; nothing runs.
pub fn execute(
    definition: &Definition,
    request: &ExecutionRequest,
    ctx: &ExecuteContext<'_>,
) -> Result<ExecutionStep, ExecuteError> {
    let t = &request.object.object_type;
    let applies = definition
        .object_types
        .iter()
        .any(|d| type_id(d) == type_id(t));
    if !applies {
        return Err(ExecuteError::ObjectType(t.clone()));
    }
    let inputs = validate_inputs(definition, request)?;
    Ok(match &definition.kind {
        Kind::Approval { expiration } => ExecutionStep::Answer(Answer {
            outputs: Map::new(),
            state: ExecutionState::Block {
                expiration: Some(expiration.clone()),
            },
        }),
        Kind::MapAndWrite { map, outputs } => ExecutionStep::Answer(map_and_write(
            definition,
            map,
            outputs,
            &request.object.properties,
        )),
        Kind::Lookup { url, secret, .. } => {
            let body = serde_json::to_vec(&json!({
                "type": "hubspot-edge.action.v1",
                "action": definition.key,
                "callbackId": request.callback_id,
                "callbackUrl": format!("{}/actions/callbacks/{}",
                    ctx.public_base_url.trim_end_matches('/'), request.callback_id),
                "portalId": request.origin.portal_id,
                "object": {
                    "objectId": request.object.object_id,
                    "objectType": request.object.object_type,
                    "properties": request.object.properties,
                },
                "inputs": inputs,
            }))
            .unwrap_or_default();
            // The callback id is the message id: a retry of the lookup (or of HubSpot's
            // execution) carries the same one, so the user's system can deduplicate.
            let signature = secret.sign(&request.callback_id, ctx.now_secs, &body);
            let request = http::Request::builder()
                .method(http::Method::POST)
                .uri(url.as_str())
                .header(http::header::CONTENT_TYPE, "application/json")
                .header("webhook-id", request.callback_id.as_str())
                .header("webhook-timestamp", ctx.now_secs.to_string())
                .header("webhook-signature", signature)
                .body(body);
            match request {
                Ok(request) => ExecutionStep::Call(Box::new(LookupCall {
                    request,
                    budget_ms: ctx.budget_ms,
                })),
                // The URL was checked at start; a header cannot be invalid (ids are checked
                // text). Fail the execution rather than the request.
                Err(_) => ExecutionStep::Answer(fail(definition, "lookup_url_invalid")),
            }
        }
    })
}

/// An object type's id for comparison: HubSpot's standard names and their `0-n` ids are the
/// same type (<https://developers.hubspot.com/docs/api/crm/understanding-the-crm>).
fn type_id(t: &str) -> String {
    match crate::object_type::ObjectType::parse(t) {
        crate::object_type::ObjectType::Custom(c) => c.to_ascii_uppercase(),
        standard => standard.type_id().to_owned(),
    }
}

fn map_and_write(
    definition: &Definition,
    map: &crate::mapping::ObjectMap,
    outputs: &BTreeMap<String, String>,
    properties: &BTreeMap<String, Option<String>>,
) -> Answer {
    let record = match map.to_destination(properties) {
        Ok(r) => r,
        // The object's value cannot be read as its type: the workflow continues without.
        Err(e) => return fail(definition, e.code()),
    };
    let mut out = Map::new();
    for (output, field) in outputs {
        if let Some(v) = record.get(field).filter(|v| !v.is_null()) {
            out.insert(output.clone(), v.clone());
        }
    }
    match validate_outputs(definition, &out) {
        Ok(outputs) => Answer {
            outputs,
            state: ExecutionState::Success,
        },
        Err(e) => fail(definition, e.code()),
    }
}

/// A `FAIL_CONTINUE` answer carrying `reason` in the lookup's `reasonOutput`, if any.
pub fn fail(definition: &Definition, reason: &str) -> Answer {
    let mut outputs = Map::new();
    if let Kind::Lookup {
        reason_output: Some(o),
        ..
    } = &definition.kind
    {
        outputs.insert(o.clone(), Value::String(reason.to_owned()));
    }
    Answer {
        outputs,
        state: ExecutionState::FailContinue,
    }
}

/// How the lookup call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum LookupReply<'a> {
    /// The user's system answered.
    Answered {
        /// HTTP status.
        status: u16,
        /// Body.
        body: &'a [u8],
    },
    /// Nothing within the budget (the call may still answer later).
    Late,
    /// The call failed (connection, or no answer at all within the hard limit).
    Failed,
}

/// The user's system's reply (to a lookup, or in a callback):
/// `{"outputs": {…}}` for `SUCCESS`, or `{"state": "FAIL_CONTINUE", "reason": "…"}`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Reply {
    /// Output values by output field name.
    #[serde(default)]
    pub outputs: Map<String, Value>,
    /// `SUCCESS` (default) or `FAIL_CONTINUE`.
    #[serde(default)]
    pub state: Option<String>,
    /// With `FAIL_CONTINUE`: a short reason (a code, not a value).
    #[serde(default)]
    pub reason: Option<String>,
}

impl Reply {
    /// A reply body: a JSON object of this shape.
    ///
    /// # Errors
    /// What is wrong with it.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        match serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())? {
            v @ Value::Object(_) => serde_json::from_value(v).map_err(|e| e.to_string()),
            _ => Err("a reply is a JSON object".into()),
        }
    }
}

/// The answer made of a lookup's reply:
/// - 2xx with a [`Reply`]: `SUCCESS` with its validated outputs, or `FAIL_CONTINUE` (outputs
///   that do not fit the definition: `FAIL_CONTINUE` with reason `lookup_outputs_invalid`);
/// - 202: `BLOCK` (the user's system completes it with the callback later);
/// - another status: `FAIL_CONTINUE` with reason `lookup_status_{status}`;
/// - late: `BLOCK` for `expiration` (the reply, when it comes, completes the execution);
/// - failed: `FAIL_CONTINUE`, reason `lookup_unreachable`.
pub fn lookup_answer(definition: &Definition, reply: &LookupReply<'_>, expiration: &str) -> Answer {
    match reply {
        LookupReply::Late => block(expiration),
        LookupReply::Failed => fail(definition, "lookup_unreachable"),
        LookupReply::Answered { status: 202, .. } => block(expiration),
        LookupReply::Answered { status, body } if (200..300).contains(status) => {
            match reply_answer(definition, body) {
                Ok(a) => a,
                Err(code) => fail(definition, code),
            }
        }
        LookupReply::Answered { status, .. } => {
            fail(definition, &format!("lookup_status_{status}"))
        }
    }
}

/// The reply of a lookup that outlived its budget (the execution was answered `BLOCK`) as the
/// completion of that execution; `None` when the reply blocks too (202: the user's system
/// completes it with the callback). A failed call completes it with `FAIL_CONTINUE`
/// (`lookup_unreachable`).
pub fn late_lookup_completion(
    definition: &Definition,
    callback_id: &str,
    reply: &LookupReply<'_>,
) -> Option<Completion> {
    let answer = lookup_answer(definition, reply, super::DEFAULT_EXPIRATION);
    match answer.state {
        ExecutionState::Block { .. } => None,
        state => Some(Completion {
            callback_id: callback_id.to_owned(),
            outputs: answer.outputs,
            state,
        }),
    }
}

fn block(expiration: &str) -> Answer {
    Answer {
        outputs: Map::new(),
        state: ExecutionState::Block {
            expiration: Some(expiration.to_owned()),
        },
    }
}

/// A [`Reply`] body as an answer (`SUCCESS` or `FAIL_CONTINUE`); `Err(code)` when it is not a
/// reply or its outputs do not fit.
fn reply_answer(definition: &Definition, body: &[u8]) -> Result<Answer, &'static str> {
    let reply = Reply::parse(body).map_err(|_| "lookup_reply_malformed")?;
    match reply.state.as_deref() {
        None | Some("SUCCESS") => {
            let outputs = validate_outputs(definition, &reply.outputs)
                .map_err(|_| "lookup_outputs_invalid")?;
            Ok(Answer {
                outputs,
                state: ExecutionState::Success,
            })
        }
        Some("FAIL_CONTINUE") => {
            let reason = reply
                .reason
                .as_deref()
                .filter(|r| r.len() <= 100)
                .unwrap_or("failed");
            Ok(fail(definition, reason))
        }
        Some(_) => Err("lookup_reply_malformed"),
    }
}

/// A rule's `complete_action` ([`crate::rules::Effect::CompleteBlocked`]) as the completion of
/// one blocked execution of `definition`: `SUCCESS` with the rule's outputs that the definition
/// declares (a rule completes every action blocked for its object, and each action takes the
/// outputs it declares; the others are left out for it), typed as the definition says.
///
/// # Errors
/// [`FieldError`] when an output the definition declares cannot take the rule's value.
pub fn rule_completion(
    definition: &Definition,
    callback_id: &str,
    outputs: &Map<String, Value>,
) -> Result<Completion, FieldError> {
    let declared: Map<String, Value> = outputs
        .iter()
        .filter(|(name, _)| definition.output_fields.iter().any(|f| &f.name == *name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(Completion {
        callback_id: callback_id.to_owned(),
        outputs: validate_outputs(definition, &declared)?,
        state: ExecutionState::Success,
    })
}

impl Definitions {
    /// A rule's `complete_action` for the executions blocked for one object (`(callbackId,
    /// action)`): the completions to queue ([`rule_completion`] per action), and the
    /// `(callbackId, code)` of those whose action is no longer configured (`action_unknown`)
    /// or cannot take the rule's outputs.
    pub fn rule_completions<'a>(
        &self,
        blocked: impl IntoIterator<Item = (&'a str, &'a str)>,
        outputs: &Map<String, Value>,
    ) -> (Vec<Completion>, Vec<(String, &'static str)>) {
        let mut completions = Vec::new();
        let mut refused = Vec::new();
        for (callback_id, action) in blocked {
            let Some(definition) = self.get(action) else {
                refused.push((callback_id.to_owned(), "action_unknown"));
                continue;
            };
            match rule_completion(definition, callback_id, outputs) {
                Ok(c) => completions.push(c),
                Err(e) => refused.push((callback_id.to_owned(), e.code())),
            }
        }
        (completions, refused)
    }
}

/// What a rule's `complete_action` did for one object's blocked executions
/// ([`Definitions::complete_blocked`], then [`ObjectCompletion::count`]): the effect's run
/// reports these numbers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ObjectCompletion {
    /// Executions queued for a batch completion.
    pub completed: usize,
    /// Executions that were no longer blocked when the completion arrived (completed,
    /// expired): nothing to do.
    pub skipped: usize,
    /// `(callbackId, code)` of executions whose action cannot take the rule's outputs.
    pub refused: Vec<(String, &'static str)>,
}

impl Definitions {
    /// A rule's `complete_action` for the executions the ledger lists as blocked for one object
    /// ([`super::ExecutionLedger::blocked`]: `[{"callbackId","action"}]`): the completions to
    /// hand to the ledger ([`Definitions::rule_completions`]), and the counts so far (the
    /// refused ones).
    pub fn complete_blocked(
        &self,
        blocked: &Value,
        outputs: &Map<String, Value>,
    ) -> (Vec<Completion>, ObjectCompletion) {
        let pairs = blocked
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| Some((b["callbackId"].as_str()?, b["action"].as_str()?)));
        let (completions, refused) = self.rule_completions(pairs, outputs);
        (
            completions,
            ObjectCompletion {
                refused,
                ..ObjectCompletion::default()
            },
        )
    }
}

impl ObjectCompletion {
    /// Counts the ledger's replies to the completions (`{callbackId: reply}`): a reply with
    /// `status` 202 was queued for a batch completion, any other found the execution no longer
    /// blocked.
    pub fn count(&mut self, answers: &Value) {
        for answer in answers.as_object().into_iter().flat_map(Map::values) {
            if answer["status"] == 202 {
                self.completed += 1;
            } else {
                self.skipped += 1;
            }
        }
    }
}

/// The portal of a callback (`POST /actions/callbacks/{callbackId}`): `portalId` in its JSON
/// body, else the one in HubSpot's callback id (`ap-{portalId}-…`, the documented example's
/// shape).
pub fn callback_portal(callback_id: &str, body: &[u8]) -> Option<PortalId> {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let in_body = value.get("portalId").and_then(Value::as_u64);
    in_body.map(PortalId::new).or_else(|| {
        callback_id
            .strip_prefix("ap-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|p| p.parse().ok())
    })
}

/// A callback from the user's system (`POST /actions/callbacks/{callbackId}`, body a
/// [`Reply`]) as the completion to send. Strict: a reply whose outputs do not fit is refused
/// (400), not turned into a failure, so the user's system can correct it.
///
/// # Errors
/// [`CallbackError`].
pub fn callback_completion(
    definition: &Definition,
    callback_id: &str,
    body: &[u8],
) -> Result<Completion, CallbackError> {
    let reply = Reply::parse(body).map_err(CallbackError::Malformed)?;
    let state = match reply.state.as_deref() {
        None | Some("SUCCESS") => ExecutionState::Success,
        Some("FAIL_CONTINUE") => ExecutionState::FailContinue,
        Some(_) => {
            return Err(CallbackError::Malformed(
                "state must be SUCCESS or FAIL_CONTINUE".into(),
            ))
        }
    };
    let outputs = match state {
        ExecutionState::Success => validate_outputs(definition, &reply.outputs)?,
        _ => fail(definition, reply.reason.as_deref().unwrap_or("failed")).outputs,
    };
    Ok(Completion {
        callback_id: callback_id.to_owned(),
        outputs,
        state,
    })
}

/// A callback the user's system sent that cannot complete anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallbackError {
    /// Not a reply body.
    #[error("callback body malformed: {0}")]
    Malformed(String),
    /// An output that does not fit the definition.
    #[error(transparent)]
    Output(#[from] FieldError),
}

impl CallbackError {
    /// Stable code: `callback_body_malformed` or [`FieldError::code`].
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "callback_body_malformed",
            Self::Output(e) => e.code(),
        }
    }
}

/// The milliseconds of an ISO-8601 duration (`P1WT1H`; a year counts 365 days and a month 30:
/// expiry here only decides when we stop accepting completions, HubSpot keeps its own clock).
/// `None` when it is not one ([`super::is_iso8601_duration`]).
pub fn duration_ms(text: &str) -> Option<u64> {
    if !super::is_iso8601_duration(text) {
        return None;
    }
    const DAY: u64 = 86_400_000;
    let mut total: u64 = 0;
    let mut in_time = false;
    let mut n: u64 = 0;
    for c in text.chars().skip(1) {
        if let Some(d) = c.to_digit(10) {
            n = n.checked_mul(10)?.checked_add(u64::from(d))?;
            continue;
        }
        let unit = match (c, in_time) {
            ('T', _) => {
                in_time = true;
                continue;
            }
            ('Y', false) => 365 * DAY,
            ('M', false) => 30 * DAY,
            ('W', false) => 7 * DAY,
            ('D', false) => DAY,
            ('H', true) => 3_600_000,
            ('M', true) => 60_000,
            ('S', true) => 1_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        n = 0;
    }
    Some(total)
}

/// The idempotency record of one execution (`callbackId`), kept by the host per portal.
///
/// ```text
/// running ─┬─> answered(answer)                    (SUCCESS / FAIL_CONTINUE given to HubSpot)
///          ├─> blocked(expires_at) ─┬─> completing ─┬─> completed
///          │                        │               └─> failed (dead-lettered)
///          │                        └─> expired
///          └─> completing            (a retry was told BLOCK while this one ran)
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Read through a flat struct (crate::wire): no buffering `ContentDeserializer`.
#[serde(
    tag = "state",
    rename_all = "snake_case",
    try_from = "crate::wire::ExecutionRecordWire"
)]
pub enum ExecutionRecord {
    /// The action runs. `retry_blocked`: a retry of the execution arrived meanwhile and was
    /// answered `BLOCK`, so the result goes to HubSpot as a completion.
    Running {
        /// The action key.
        action: String,
        /// Since when.
        since_ms: u64,
        /// A retry was answered `BLOCK`.
        retry_blocked: bool,
    },
    /// Answered `SUCCESS` or `FAIL_CONTINUE`: a retry gets the same body.
    Answered {
        /// The action key.
        action: String,
        /// The response body given.
        body: String,
    },
    /// Answered `BLOCK`: waiting for a completion until `expires_at_ms`.
    Blocked {
        /// The action key.
        action: String,
        /// The response body given (a retry gets it again).
        body: String,
        /// When HubSpot gives up waiting.
        expires_at_ms: u64,
    },
    /// A completion waits for the batcher.
    Completing {
        /// The action key.
        action: String,
        /// The `BLOCK` body given, if any (a retry gets it again).
        body: Option<String>,
        /// The completion's output fields.
        outputs: Map<String, Value>,
        /// `true` for `SUCCESS`, `false` for `FAIL_CONTINUE`.
        success: bool,
        /// Queued since (the batcher's window starts here).
        queued_ms: u64,
    },
    /// HubSpot accepted the completion.
    Completed {
        /// The action key.
        action: String,
        /// The `BLOCK` body given, if any.
        body: Option<String>,
    },
    /// Expired without a completion.
    Expired {
        /// The action key.
        action: String,
        /// The `BLOCK` body given.
        body: String,
    },
    /// The completion failed for good (dead-lettered).
    Failed {
        /// The action key.
        action: String,
        /// The `BLOCK` body given, if any.
        body: Option<String>,
        /// Why (an API error code).
        code: String,
    },
}

/// What to do with an execution request, given its record.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionAdmit {
    /// New: store the returned record (running), run the action.
    Run(ExecutionRecord),
    /// Seen before: answer this body again, run nothing.
    Replay(String),
    /// Running now (HubSpot retried while the first attempt runs): answer `BLOCK` (with the
    /// default expiration) rather than run it twice, store the returned record; the first
    /// attempt's result becomes a completion.
    BlockRetry(ExecutionRecord, Answer),
}

impl ExecutionRecord {
    /// The action key.
    pub fn action(&self) -> &str {
        match self {
            Self::Running { action, .. }
            | Self::Answered { action, .. }
            | Self::Blocked { action, .. }
            | Self::Completing { action, .. }
            | Self::Completed { action, .. }
            | Self::Expired { action, .. }
            | Self::Failed { action, .. } => action,
        }
    }

    /// `running`, `answered`, `blocked`, `completing`, `completed`, `expired` or `failed`.
    pub fn state(&self) -> &'static str {
        match self {
            Self::Running { .. } => "running",
            Self::Answered { .. } => "answered",
            Self::Blocked { .. } => "blocked",
            Self::Completing { .. } => "completing",
            Self::Completed { .. } => "completed",
            Self::Expired { .. } => "expired",
            Self::Failed { .. } => "failed",
        }
    }

    fn block_body(&self) -> Option<&String> {
        match self {
            Self::Blocked { body, .. } | Self::Expired { body, .. } => Some(body),
            Self::Completing { body, .. }
            | Self::Completed { body, .. }
            | Self::Failed { body, .. } => body.as_ref(),
            _ => None,
        }
    }

    /// When the host must look at this record again (a block's expiry, a queued completion
    /// is the batcher's).
    pub fn expires_at_ms(&self) -> Option<u64> {
        match self {
            Self::Blocked { expires_at_ms, .. } => Some(*expires_at_ms),
            _ => None,
        }
    }
}

fn block_default() -> Answer {
    block(super::DEFAULT_EXPIRATION)
}

fn body_of(answer: &Answer) -> String {
    answer
        .to_body()
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

/// A run that has recorded no answer after this long died with its invocation: the longest run
/// is a lookup within its budget (at most 25 s, the host's hard limit) plus two store round
/// trips, so 60 s is far past it. A retry then runs the action again (a lookup carries the same
/// `webhook-id`, the `callbackId`, so the user's system can tell).
pub const STALE_RUN_MS: u64 = 60_000;

/// Admits an execution request for `action`, given its record (`None`: never seen).
pub fn admit(existing: Option<&ExecutionRecord>, action: &str, now_ms: u64) -> ExecutionAdmit {
    let fresh = || {
        ExecutionAdmit::Run(ExecutionRecord::Running {
            action: action.to_owned(),
            since_ms: now_ms,
            retry_blocked: false,
        })
    };
    match existing {
        None => fresh(),
        Some(ExecutionRecord::Running { since_ms, .. })
            if now_ms.saturating_sub(*since_ms) >= STALE_RUN_MS =>
        {
            fresh()
        }
        Some(ExecutionRecord::Running {
            action, since_ms, ..
        }) => {
            let answer = block_default();
            ExecutionAdmit::BlockRetry(
                ExecutionRecord::Running {
                    action: action.clone(),
                    since_ms: *since_ms,
                    retry_blocked: true,
                },
                answer,
            )
        }
        Some(ExecutionRecord::Answered { body, .. }) => ExecutionAdmit::Replay(body.clone()),
        Some(other) => ExecutionAdmit::Replay(
            other
                .block_body()
                .cloned()
                .unwrap_or_else(|| body_of(&block_default())),
        ),
    }
}

/// The record after the action answered `answer` at `now_ms` (`current`: the record now, which
/// a retry may have changed), and the body to respond with.
pub fn finish(
    current: &ExecutionRecord,
    answer: &Answer,
    now_ms: u64,
) -> (ExecutionRecord, String) {
    let action = current.action().to_owned();
    let retry_blocked = matches!(
        current,
        ExecutionRecord::Running {
            retry_blocked: true,
            ..
        }
    );
    match (&answer.state, retry_blocked) {
        (ExecutionState::Block { expiration }, _) => {
            let body = body_of(answer);
            let e = expiration.as_deref().unwrap_or(super::DEFAULT_EXPIRATION);
            let expires_at_ms = now_ms.saturating_add(duration_ms(e).unwrap_or(7 * 86_400_000));
            (
                ExecutionRecord::Blocked {
                    action,
                    body: body.clone(),
                    expires_at_ms,
                },
                body,
            )
        }
        (state, true) => (
            ExecutionRecord::Completing {
                action,
                body: Some(body_of(&block_default())),
                outputs: answer.outputs.clone(),
                success: *state == ExecutionState::Success,
                queued_ms: now_ms,
            },
            body_of(answer),
        ),
        (_, false) => {
            let body = body_of(answer);
            (
                ExecutionRecord::Answered {
                    action,
                    body: body.clone(),
                },
                body,
            )
        }
    }
}

/// Why a completion was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CompleteError {
    /// No execution with this `callbackId` is known (404 `callback_unknown`).
    #[error("no execution with this callbackId")]
    Unknown,
    /// Already answered or completed (409 `callback_completed`).
    #[error("the execution is already complete")]
    Completed,
    /// The block expired (410 `callback_expired`).
    #[error("the execution expired")]
    Expired,
    /// Still running its first answer (409 `callback_running`): try again shortly.
    #[error("the execution is still running")]
    Running,
}

impl CompleteError {
    /// The HTTP status and stable code.
    pub fn status_and_code(self) -> (u16, &'static str) {
        match self {
            Self::Unknown => (404, "callback_unknown"),
            Self::Completed => (409, "callback_completed"),
            Self::Expired => (410, "callback_expired"),
            Self::Running => (409, "callback_running"),
        }
    }
}

/// The record after a completion (`SUCCESS` or `FAIL_CONTINUE` with `outputs`) arrives for it
/// at `now_ms`: a blocked execution starts completing.
///
/// # Errors
/// [`CompleteError`] when the execution is not waiting for one.
pub fn complete(
    existing: Option<&ExecutionRecord>,
    completion: &Completion,
    now_ms: u64,
) -> Result<ExecutionRecord, CompleteError> {
    match existing {
        None => Err(CompleteError::Unknown),
        Some(ExecutionRecord::Blocked {
            action,
            body,
            expires_at_ms,
        }) => {
            if now_ms >= *expires_at_ms {
                return Err(CompleteError::Expired);
            }
            Ok(ExecutionRecord::Completing {
                action: action.clone(),
                body: Some(body.clone()),
                outputs: completion.outputs.clone(),
                success: completion.state == ExecutionState::Success,
                queued_ms: now_ms,
            })
        }
        Some(ExecutionRecord::Expired { .. }) => Err(CompleteError::Expired),
        Some(ExecutionRecord::Running { .. }) => Err(CompleteError::Running),
        Some(_) => Err(CompleteError::Completed),
    }
}

/// The record of a blocked execution whose expiry passed (`None`: not expired, or not
/// blocked).
pub fn expire(record: &ExecutionRecord, now_ms: u64) -> Option<ExecutionRecord> {
    match record {
        ExecutionRecord::Blocked {
            action,
            body,
            expires_at_ms,
        } if now_ms >= *expires_at_ms => Some(ExecutionRecord::Expired {
            action: action.clone(),
            body: body.clone(),
        }),
        _ => None,
    }
}

impl ExecutionRecord {
    /// The completion a `Completing` record holds.
    pub fn completion(&self, callback_id: &str) -> Option<Completion> {
        match self {
            Self::Completing {
                outputs, success, ..
            } => Some(Completion {
                callback_id: callback_id.to_owned(),
                outputs: outputs.clone(),
                state: if *success {
                    ExecutionState::Success
                } else {
                    ExecutionState::FailContinue
                },
            }),
            _ => None,
        }
    }

    /// The record after its completion was accepted (`Ok`) or failed for good (`Err(code)`).
    pub fn settled(&self, result: Result<(), &str>) -> Self {
        let action = self.action().to_owned();
        let body = self.block_body().cloned();
        match result {
            Ok(()) => Self::Completed { action, body },
            Err(code) => Self::Failed {
                action,
                body,
                code: code.to_owned(),
            },
        }
    }
}
