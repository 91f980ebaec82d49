//! The per-portal ledger of executions (the host keeps one store per portal: a Durable Object
//! on Cloudflare): what each question to it does to the records, and what it answers. The host
//! loads the records named, asks the [`ExecutionLedger`], writes the record it returns and
//! sends the answer back; `now` is passed in.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::completion::{next_due_ms, Pending};
use super::execution::{admit, complete, expire, finish, ExecutionAdmit, ExecutionRecord};
use super::{Answer, Completion, ExecutionState};
use crate::id::PortalId;
use crate::queue::{DeadLetterMessage, OwnedEvent};

/// An [`Answer`] between the host and its store: `{"outputs", "state", "expiration"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerWire {
    /// The output fields.
    pub outputs: Map<String, Value>,
    /// `SUCCESS`, `FAIL_CONTINUE` or `BLOCK`.
    pub state: String,
    /// A `BLOCK`'s expiration (ISO-8601 duration), if it names one.
    pub expiration: Option<String>,
}

impl From<&Answer> for AnswerWire {
    fn from(answer: &Answer) -> Self {
        Self {
            outputs: answer.outputs.clone(),
            state: answer.state.as_str().to_owned(),
            expiration: match &answer.state {
                ExecutionState::Block { expiration } => expiration.clone(),
                _ => None,
            },
        }
    }
}

impl AnswerWire {
    /// The answer (a state other than `SUCCESS` and `FAIL_CONTINUE` is a `BLOCK`).
    pub fn into_answer(self) -> Answer {
        let state = match self.state.as_str() {
            "SUCCESS" => ExecutionState::Success,
            "FAIL_CONTINUE" => ExecutionState::FailContinue,
            _ => ExecutionState::Block {
                expiration: self.expiration,
            },
        };
        Answer {
            outputs: self.outputs,
            state,
        }
    }
}

/// A completion that failed for good, as a dead letter's payload (`source: action`): re-driven
/// with [`ExecutionLedger::redrive`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActionLetter {
    /// `action`.
    pub source: String,
    /// The portal whose store keeps the execution.
    pub portal_id: PortalId,
    /// The execution.
    pub callback_id: String,
    /// The action key.
    pub action: String,
    /// The completion's output fields.
    pub outputs: Map<String, Value>,
    /// `true` for `SUCCESS`, `false` for `FAIL_CONTINUE`.
    pub success: bool,
    /// Why it failed (an API error code).
    pub code: String,
}

impl ActionLetter {
    /// The letter of `completion` (of the execution `record`, in `portal_id`'s store) that
    /// failed for good with `code`.
    pub fn new(
        portal_id: PortalId,
        record: &ExecutionRecord,
        completion: &Completion,
        code: &str,
    ) -> Self {
        Self {
            source: "action".into(),
            portal_id,
            callback_id: completion.callback_id.clone(),
            action: record.action().to_owned(),
            outputs: completion.outputs.clone(),
            success: completion.state == ExecutionState::Success,
            code: code.to_owned(),
        }
    }

    /// The dead-letter message carrying it (reason `action_completion_failed`, key
    /// `action:{callbackId}`).
    ///
    /// # Errors
    /// When it cannot be serialised (it always can: plain JSON values).
    pub fn message(&self, now_ms: u64) -> serde_json::Result<DeadLetterMessage<OwnedEvent>> {
        Ok(DeadLetterMessage {
            v: 1,
            reason: "action_completion_failed".into(),
            detail: format!("action completion refused by HubSpot: {}", self.code),
            attempts: 1,
            key: Some(format!("action:{}", self.callback_id)),
            received_at: now_ms,
            request_id: format!("action-{now_ms}"),
            traceparent: None,
            event_ref: None,
            event: serde_json::value::to_raw_value(self)?,
        })
    }
}

/// What the host does after one question to the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerStep {
    /// The execution's record to write, if it changed.
    pub save: Option<ExecutionRecord>,
    /// The store's JSON answer.
    pub reply: Value,
    /// The alarm must be set again ([`ExecutionLedger::next_alarm`]): a record may now expire
    /// or wait for the batcher.
    pub schedule: bool,
}

/// The decisions of a portal's store of executions at `now_ms`: admit, finish, complete, list,
/// re-drive, and when to wake up. Pure: the host performs the reads and writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecutionLedger {
    now_ms: u64,
}

impl ExecutionLedger {
    /// Executions [`ExecutionLedger::waiting`] lists at most: one page for the dashboard.
    pub const MAX_WAITING: usize = 100;
    /// Finished records are kept this long for retries (HubSpot retries an execution for up
    /// to 3 days, docs/hubspot.md §3.3), then dropped.
    pub const RECORD_TTL_MS: u64 = 7 * 24 * 3_600_000;

    /// The ledger at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self { now_ms }
    }

    /// An execution request for `action` arrives (`existing`: its record, if any). `answer`,
    /// when known before anything runs (`map_and_write`, `approval`), is recorded at once.
    /// Replies `{"kind": "run"}` (run it, then [`ExecutionLedger::finish`]), `{"kind": "done",
    /// "body", "state"}`, `{"kind": "replay", "body"}` or `{"kind": "block", "body"}`.
    pub fn admit(
        &self,
        existing: Option<&ExecutionRecord>,
        action: &str,
        answer: Option<Answer>,
    ) -> LedgerStep {
        let now = self.now_ms;
        match (admit(existing, action, now), answer) {
            (ExecutionAdmit::Run(record), Some(answer)) => {
                let (record, body) = finish(&record, &answer, now);
                LedgerStep {
                    reply: json!({"kind": "done", "body": body, "state": record.state()}),
                    save: Some(record),
                    schedule: true,
                }
            }
            (ExecutionAdmit::Run(record), None) => LedgerStep {
                save: Some(record),
                reply: json!({"kind": "run"}),
                schedule: false,
            },
            (ExecutionAdmit::Replay(body), _) => LedgerStep {
                save: None,
                reply: json!({"kind": "replay", "body": body}),
                schedule: false,
            },
            (ExecutionAdmit::BlockRetry(record, answer), _) => {
                let body = answer
                    .to_body()
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .unwrap_or_default();
                LedgerStep {
                    save: Some(record),
                    reply: json!({"kind": "block", "body": body}),
                    schedule: false,
                }
            }
        }
    }

    /// What the execution route does with [`ExecutionLedger::admit`]'s reply: `Ok(None)` to run
    /// the action; `Ok(Some((outcome, body)))` to answer 200 with `body` at once, logged as
    /// `outcome` (`replayed` for a replay or a retry told `BLOCK`, else the finished
    /// execution's state).
    ///
    /// # Errors
    /// Not such a reply (`action_store_reply_invalid`).
    pub fn admitted(reply: &Value) -> Result<Option<(&str, &str)>, &'static str> {
        let field = |name: &str| reply[name].as_str().ok_or("action_store_reply_invalid");
        match field("kind")? {
            "run" => Ok(None),
            "done" => Ok(Some((field("state")?, field("body")?))),
            "replay" | "block" => Ok(Some(("replayed", field("body")?))),
            _ => Err("action_store_reply_invalid"),
        }
    }

    /// The action answered `answer` (`current`: the record now; `None` is taken as running):
    /// replies `{"body", "state"}`.
    pub fn finish(&self, current: Option<&ExecutionRecord>, answer: &Answer) -> LedgerStep {
        let running = ExecutionRecord::Running {
            action: String::new(),
            since_ms: self.now_ms,
            retry_blocked: false,
        };
        let (record, body) = finish(current.unwrap_or(&running), answer, self.now_ms);
        LedgerStep {
            reply: json!({"body": body, "state": record.state()}),
            save: Some(record),
            schedule: true,
        }
    }

    /// A completion arrives for `existing` (a block past its expiry is expired first: the
    /// alarm may not have run yet): replies `{"status": 202}` when it is queued for the
    /// batcher, else the refusal's `{"status", "code"}`.
    pub fn complete(
        &self,
        existing: Option<&ExecutionRecord>,
        completion: &Completion,
    ) -> LedgerStep {
        let expired = existing.and_then(|r| expire(r, self.now_ms));
        let current = expired.as_ref().or(existing);
        match complete(current, completion, self.now_ms) {
            Ok(record) => LedgerStep {
                save: Some(record),
                reply: json!({"status": 202}),
                schedule: true,
            },
            Err(e) => {
                let (status, code) = e.status_and_code();
                LedgerStep {
                    save: expired,
                    reply: json!({"status": status, "code": code}),
                    schedule: true,
                }
            }
        }
    }

    /// An execution's state, no values: `{"callbackId", "action", "state"}`, `null` when
    /// unknown.
    pub fn get(&self, callback_id: &str, record: Option<&ExecutionRecord>) -> Value {
        match record {
            Some(r) => json!({"callbackId": callback_id, "action": r.action(), "state": r.state()}),
            None => Value::Null,
        }
    }

    /// Of an object's executions `(callbackId, record)`, those still blocked:
    /// `[{"callbackId", "action"}]`.
    pub fn blocked(&self, records: impl IntoIterator<Item = (String, ExecutionRecord)>) -> Value {
        let mut blocked = Vec::new();
        for (callback_id, record) in records {
            if let ExecutionRecord::Blocked {
                action,
                expires_at_ms,
                ..
            } = record
            {
                if expires_at_ms > self.now_ms {
                    blocked.push(json!({"callbackId": callback_id, "action": action}));
                }
            }
        }
        Value::Array(blocked)
    }

    /// The executions waiting (blocked, or a completion queued), oldest change first, from at
    /// most [`ExecutionLedger::MAX_WAITING`] + 1 rows `(callbackId, record, expiresMs,
    /// updatedMs)` (`None`: a record that does not parse, left out): `{"executions": [...],
    /// "more"}`, no values.
    pub fn waiting(
        &self,
        rows: impl ExactSizeIterator<Item = (String, Option<ExecutionRecord>, Option<i64>, i64)>,
    ) -> Value {
        let more = rows.len() > Self::MAX_WAITING;
        let items: Vec<Value> = rows
            .take(Self::MAX_WAITING)
            .filter_map(|(callback_id, record, expires_ms, updated_ms)| {
                let record = record?;
                Some(json!({
                    "callbackId": callback_id,
                    "action": record.action(),
                    "state": record.state(),
                    "sinceMs": updated_ms,
                    "ageSecs": crate::metrics::lag_secs(
                        u64::try_from(updated_ms).unwrap_or(0),
                        self.now_ms,
                    ),
                    "expiresMs": expires_ms,
                }))
            })
            .collect();
        json!({"executions": items, "more": more})
    }

    /// A dead-lettered completion goes back to the batcher: the record to write (`None`: the
    /// execution completed meanwhile, nothing to do).
    pub fn redrive(
        &self,
        existing: Option<&ExecutionRecord>,
        letter: ActionLetter,
    ) -> Option<ExecutionRecord> {
        let body = match existing {
            Some(ExecutionRecord::Failed { body, .. }) => body.clone(),
            Some(ExecutionRecord::Completed { .. }) => return None,
            _ => None,
        };
        Some(ExecutionRecord::Completing {
            action: letter.action,
            body,
            outputs: letter.outputs,
            success: letter.success,
            queued_ms: self.now_ms,
        })
    }

    /// Finished records last changed before this are dropped.
    pub fn forget_before(&self) -> u64 {
        self.now_ms.saturating_sub(Self::RECORD_TTL_MS)
    }

    /// When the store must wake up next: the batcher's time for `pending` (`retry_at` when a
    /// batch is to be tried again and completions wait) or the earliest block's expiry.
    pub fn next_alarm(
        pending: &[Pending],
        window_ms: u64,
        retry_at: Option<u64>,
        earliest_expiry: Option<u64>,
    ) -> Option<u64> {
        let batch = match retry_at {
            Some(at) if !pending.is_empty() => Some(at),
            _ => next_due_ms(pending, window_ms),
        };
        [batch, earliest_expiry].into_iter().flatten().min()
    }

    /// Whether an alarm already set for `current` stands when one is wanted at `at_ms`: it
    /// does when it is sooner and still ahead.
    pub fn keeps_alarm(&self, current: Option<u64>, at_ms: u64) -> bool {
        current.is_some_and(|c| c <= at_ms && c > self.now_ms)
    }
}
