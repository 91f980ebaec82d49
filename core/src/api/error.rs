//! How a HubSpot call that ended without a result is told: the error a host's executor returns
//! ([`CallError`]), its stable code for logs and dead letters, its one-line description, and the
//! answer the admin API gives for it ([`CallError::answer`]).

use serde_json::{json, Value};

use super::{ApiError, ErrorDetail, GiveUpReason, Outcome};

/// A call failed for good (the host's executor: the [`super::Call`] steps, the rate gate, the
/// OAuth token).
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The retry policy gave up after `attempts`; `last` is how the last attempt ended.
    GaveUp {
        /// Why.
        reason: GiveUpReason,
        /// How the last attempt ended.
        last: Outcome,
        /// Attempts made, the last included.
        attempts: u32,
    },
    /// Sending (or retrying) would mean waiting longer than the call may wait
    /// ([`super::CallFailure::Throttled`]).
    Throttled {
        /// The wait asked for, in milliseconds.
        wait_ms: u64,
    },
    /// The request could not be built (bad `HUBSPOT_API_BASE_URL`).
    Build(String),
    /// No OAuth access token: the refresh failed (message safe to show).
    OAuthRefresh(String),
    /// The rate gate (a Durable Object) could not be reached or answered nonsense.
    Gate(String),
}

/// The admin API's answer to a failed call ([`CallError::answer`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CallAnswer {
    /// HTTP status.
    pub status: u16,
    /// `{"error":{"code","message",…}}`.
    pub body: Value,
    /// The `Retry-After` header's seconds, when the wait is known.
    pub retry_after_secs: Option<u64>,
}

impl CallError {
    /// Stable code for logs and dead letters: the give-up's [`GiveUpReason::code`],
    /// `rate_limited`, `config_invalid`, `hubspot_oauth_refresh_failed`,
    /// `hubspot_gate_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::GaveUp { reason, .. } => reason.code(),
            Self::Throttled { .. } => "rate_limited",
            Self::Build(_) => "config_invalid",
            Self::OAuthRefresh(_) => "hubspot_oauth_refresh_failed",
            Self::Gate(_) => "hubspot_gate_unavailable",
        }
    }

    /// The call as a failed step before a forward ([`crate::delivery::Attempt::StepFailed`]):
    /// retried no sooner than the gate's throttle asked (whole seconds, rounded up).
    pub fn attempt(&self) -> crate::delivery::Attempt {
        let retry_after_secs = match self {
            Self::Throttled { wait_ms } => Some(wait_ms.div_ceil(1000)),
            _ => None,
        };
        crate::delivery::Attempt::StepFailed { retry_after_secs }
    }

    /// Why HubSpot refused, when the client gave up on its answer.
    pub fn give_up(&self) -> Option<GiveUpReason> {
        match self {
            Self::GaveUp { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// One line for a log or a run's error list (no record data: HubSpot's message is not
    /// included).
    pub fn describe(&self) -> String {
        match self {
            Self::GaveUp {
                reason, attempts, ..
            } => format!("hubspot gave up after {attempts} attempts: {reason:?}"),
            Self::Throttled { wait_ms } => format!("rate limited for {wait_ms} ms"),
            Self::Build(m) | Self::OAuthRefresh(m) | Self::Gate(m) => m.clone(),
        }
    }

    /// Whether HubSpot refused the request as invalid (400 `VALIDATION_ERROR`), e.g. a list
    /// `after` it does not take: sending it again cannot help.
    pub fn is_validation(&self) -> bool {
        matches!(
            self,
            Self::GaveUp {
                last: Outcome::Failed(ApiError::Validation { .. }),
                ..
            }
        )
    }

    /// The admin API's answer. HubSpot's credential and server problems are 502 (the admin
    /// caller did nothing wrong); what the caller can fix keeps HubSpot's status (400, 404,
    /// 409, [`GiveUpReason::answer`]); limits are 503 with `Retry-After` when known. A
    /// validation error carries HubSpot's message and `errors[]` (what the caller sent wrong);
    /// every give-up carries the attempts, the last outcome's code and HubSpot's
    /// `correlationId`. `gate` names the rate gate's binding in its message.
    pub fn answer(&self, gate: &str) -> CallAnswer {
        let (status, code, message, extra) = match self {
            Self::Throttled { wait_ms } => {
                return CallAnswer {
                    status: 503,
                    body: error_body(
                        "rate_limited",
                        "the HubSpot rate limit is reached; retry later",
                        Value::Null,
                    ),
                    retry_after_secs: Some(wait_ms.div_ceil(1000)),
                }
            }
            Self::Build(msg) => (500, "config_invalid", msg.clone(), Value::Null),
            Self::Gate(msg) => (
                503,
                "hubspot_gate_unavailable",
                format!("the HubSpot gate (Durable Object {gate}) failed: {msg}"),
                Value::Null,
            ),
            Self::OAuthRefresh(msg) => (
                502,
                "hubspot_oauth_refresh_failed",
                format!("could not obtain a HubSpot OAuth access token: {msg}"),
                Value::Null,
            ),
            Self::GaveUp {
                reason,
                last,
                attempts,
            } => {
                let failed = match last {
                    Outcome::Failed(e) => Some(e),
                    _ => None,
                };
                let body = failed.and_then(ApiError::body);
                let (status, code, message) = reason.answer(last);
                let message = match (reason, body.and_then(|b| b.message.clone())) {
                    (GiveUpReason::Validation, Some(m)) => m,
                    _ => message.to_owned(),
                };
                let mut extra = json!({ "attempts": attempts, "hubspot": last.code() });
                if let Some(c) = body.and_then(|b| b.correlation_id.clone()) {
                    extra["correlationId"] = json!(c);
                }
                match failed {
                    Some(ApiError::Conflict {
                        existing_id: Some(id),
                        ..
                    }) => extra["existingId"] = json!(id),
                    Some(ApiError::Validation { body }) => {
                        extra["errors"] = body.errors.iter().map(ErrorDetail::to_json).collect();
                    }
                    _ => {}
                }
                (status, code, message, extra)
            }
        };
        CallAnswer {
            status,
            body: error_body(code, &message, extra),
            retry_after_secs: None,
        }
    }
}

/// `{"error":{"code","message",…extra}}`.
fn error_body(code: &str, message: &str, extra: Value) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let (Value::Object(e), Value::Object(x)) = (&mut error, extra) {
        e.extend(x);
    }
    json!({ "error": error })
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::api::ErrorBody;

    fn gave_up(reason: GiveUpReason, last: Outcome) -> CallError {
        CallError::GaveUp {
            reason,
            last,
            attempts: 3,
        }
    }

    fn validation(message: Option<&str>) -> Outcome {
        Outcome::Failed(ApiError::Validation {
            body: Box::new(ErrorBody {
                message: message.map(str::to_owned),
                correlation_id: Some("c-1".into()),
                errors: vec![ErrorDetail {
                    code: Some("INVALID_INTEGER".into()),
                    message: Some("not a number".into()),
                    ..ErrorDetail::default()
                }],
                ..ErrorBody::default()
            }),
        })
    }

    #[test]
    fn codes_name_the_give_up_or_the_host_failure() {
        let cases = [
            (
                gave_up(GiveUpReason::NotFound, Outcome::Timeout),
                "not_found",
            ),
            (CallError::Throttled { wait_ms: 1 }, "rate_limited"),
            (CallError::Build("x".into()), "config_invalid"),
            (
                CallError::OAuthRefresh("x".into()),
                "hubspot_oauth_refresh_failed",
            ),
            (CallError::Gate("x".into()), "hubspot_gate_unavailable"),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn as_a_failed_step_a_throttle_sets_the_earliest_retry_and_a_give_up_its_reason() {
        use crate::delivery::Attempt;
        let throttled = CallError::Throttled { wait_ms: 2_001 };
        assert_eq!(
            throttled.attempt(),
            Attempt::StepFailed {
                retry_after_secs: Some(3)
            }
        );
        assert_eq!(throttled.give_up(), None);
        let refused = gave_up(GiveUpReason::NotFound, Outcome::Timeout);
        assert_eq!(
            refused.attempt(),
            Attempt::StepFailed {
                retry_after_secs: None
            }
        );
        assert_eq!(refused.give_up(), Some(GiveUpReason::NotFound));
        assert_eq!(CallError::Gate("down".into()).give_up(), None);
    }

    #[test]
    fn descriptions_carry_no_hubspot_message() {
        let e = gave_up(GiveUpReason::Validation, validation(Some("bad value")));
        assert_eq!(e.describe(), "hubspot gave up after 3 attempts: Validation");
        assert_eq!(
            CallError::Throttled { wait_ms: 2_500 }.describe(),
            "rate limited for 2500 ms"
        );
        assert_eq!(CallError::Gate("down".into()).describe(), "down");
    }

    #[test]
    fn only_a_validation_refusal_is_one() {
        assert!(gave_up(GiveUpReason::Validation, validation(None)).is_validation());
        assert!(!gave_up(GiveUpReason::RetriesExhausted, Outcome::Timeout).is_validation());
        assert!(!CallError::Throttled { wait_ms: 1 }.is_validation());
    }

    #[test]
    fn a_throttled_call_is_a_503_with_retry_after_rounded_up() {
        let a = CallError::Throttled { wait_ms: 1_001 }.answer("GATE");
        assert_eq!(a.status, 503);
        assert_eq!(a.retry_after_secs, Some(2));
        assert_eq!(a.body["error"]["code"], "rate_limited");
    }

    #[test]
    fn host_failures_are_answered_without_hubspot_details() {
        let a = CallError::Gate("boom".into()).answer("HUBSPOT_GATE");
        assert_eq!(a.status, 503);
        assert_eq!(
            a.body,
            json!({ "error": {
                "code": "hubspot_gate_unavailable",
                "message": "the HubSpot gate (Durable Object HUBSPOT_GATE) failed: boom",
            }})
        );
        assert_eq!(a.retry_after_secs, None);
        assert_eq!(CallError::Build("bad url".into()).answer("G").status, 500);
        let o = CallError::OAuthRefresh("refused".into()).answer("G");
        assert_eq!(
            (o.status, o.body["error"]["code"].as_str()),
            (502, Some("hubspot_oauth_refresh_failed"))
        );
    }

    #[test]
    fn a_validation_give_up_carries_hubspots_message_and_errors() {
        let a = gave_up(GiveUpReason::Validation, validation(Some("bad value"))).answer("G");
        assert_eq!(a.status, 400);
        let e = &a.body["error"];
        assert_eq!(e["code"], "validation");
        assert_eq!(e["message"], "bad value");
        assert_eq!(e["attempts"], 3);
        assert_eq!(e["hubspot"], "validation");
        assert_eq!(e["correlationId"], "c-1");
        assert_eq!(e["errors"][0]["code"], "INVALID_INTEGER");
        // Without a message, the default.
        let a = gave_up(GiveUpReason::Validation, validation(None)).answer("G");
        assert_eq!(a.body["error"]["message"], "HubSpot rejected the request");
    }

    #[test]
    fn a_conflict_names_the_existing_record() {
        let last = Outcome::Failed(ApiError::Conflict {
            existing_id: Some("42".into()),
            body: Box::default(),
        });
        let a = gave_up(GiveUpReason::Conflict, last).answer("G");
        assert_eq!(a.status, 409);
        assert_eq!(a.body["error"]["existingId"], "42");
        assert!(a.body["error"].get("correlationId").is_none());
    }

    #[test]
    fn outcomes_have_short_codes() {
        assert_eq!(Outcome::Success.code(), "ok");
        assert_eq!(Outcome::Timeout.code(), "timeout");
        assert_eq!(Outcome::Network.code(), "network_error");
        assert_eq!(validation(None).code(), "validation");
    }

    #[test]
    fn a_timeout_give_up_is_a_504() {
        let a = gave_up(GiveUpReason::RetriesExhausted, Outcome::Timeout).answer("G");
        assert_eq!(a.status, 504);
        assert_eq!(a.body["error"]["hubspot"], "timeout");
        assert_eq!(a.body["error"]["attempts"], 3);
    }
}
