//! Carrying out a rule's `update` effect ([`Queued::Update`](super::Queued::Update)), as a
//! poll-style step ([`RuleUpdate`]): the host asks what to do next, makes the HubSpot call,
//! feeds the answer back, and ends with the effect's [`JobRun`].
//!
//! The target is the object itself, or the first page of its associations to the target type
//! (at most [`MAX_BATCH_INPUTS`], one batch update). Writes are diff-only ([`to_write`]): the
//! properties are read first and only those that differ are written, behind the host's echo
//! guard, so HubSpot's webhooks for the write are recognised as ours and never run a rule
//! again.

use std::collections::BTreeMap;

use super::{to_write, Target};
use crate::api::{CallError, GiveUpReason, UpdateInput, MAX_BATCH_INPUTS};
use crate::delivery::Attempt;
use crate::queue::consume::JobRun;

/// One `update` effect in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleUpdate {
    what: String,
    properties: BTreeMap<String, String>,
    state: State,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Associations {
        from_type: String,
        from_id: String,
        to_type: String,
    },
    Read {
        object_type: String,
        ids: Vec<String>,
    },
    Write {
        object_type: String,
        targets: usize,
        inputs: Vec<UpdateInput>,
    },
    Finished(JobRun),
}

/// What a [`RuleUpdate`] needs next.
#[derive(Debug, PartialEq, Eq)]
pub enum UpdateNeed<'a> {
    /// Read the associations of `from_type` `from_id` to `to_type` (v4, one page), then
    /// [`RuleUpdate::associated`].
    Associations {
        /// The object the effect is about.
        from_type: &'a str,
        /// Its id.
        from_id: &'a str,
        /// The associated type to update.
        to_type: &'a str,
    },
    /// Batch-read these `properties` of these objects, then [`RuleUpdate::current`].
    Read {
        /// The targets' object type.
        object_type: &'a str,
        /// The targets' ids (at most [`MAX_BATCH_INPUTS`]).
        ids: &'a [String],
        /// The properties the effect writes.
        properties: Vec<String>,
    },
    /// Guard these writes against their echo, batch-update them, then [`RuleUpdate::written`].
    Write {
        /// The targets' object type.
        object_type: &'a str,
        /// The properties that differ, per object.
        inputs: &'a [UpdateInput],
    },
    /// Finished: the effect's run, for the consumer's [`crate::queue::consume::Consume`].
    Finished(&'a JobRun),
}

/// How a HubSpot call of an update failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateFailure {
    /// The API retry policy gave up for this reason.
    GaveUp(GiveUpReason),
    /// Sending would mean waiting this long for the rate limit.
    Throttled {
        /// The wait, in milliseconds.
        wait_ms: u64,
    },
    /// The request could not be built (the API configuration).
    Build,
    /// No OAuth access token: the refresh failed.
    OAuthRefresh,
    /// The rate gate could not be reached.
    Gate,
}

impl From<&CallError> for UpdateFailure {
    /// The failure of a call of the update (the message of a host failure is left out).
    fn from(e: &CallError) -> Self {
        match e {
            CallError::GaveUp { reason, .. } => Self::GaveUp(*reason),
            CallError::Throttled { wait_ms } => Self::Throttled { wait_ms: *wait_ms },
            CallError::Build(_) => Self::Build,
            CallError::OAuthRefresh(_) => Self::OAuthRefresh,
            CallError::Gate(_) => Self::Gate,
        }
    }
}

impl UpdateFailure {
    /// Stable code for logs: the give-up's code, `rate_limited`, `config_invalid`,
    /// `hubspot_oauth_refresh_failed`, `hubspot_gate_unavailable`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::GaveUp(reason) => reason.code(),
            Self::Throttled { .. } => "rate_limited",
            Self::Build => "config_invalid",
            Self::OAuthRefresh => "hubspot_oauth_refresh_failed",
            Self::Gate => "hubspot_gate_unavailable",
        }
    }
}

impl RuleUpdate {
    /// An update of `target` with `properties`; `what` names the effect in details
    /// ([`Queued::describe`](super::Queued::describe)).
    pub fn new(target: &Target, properties: BTreeMap<String, String>, what: String) -> Self {
        let state = match target {
            Target::Object {
                object_type,
                object_id,
            } => State::Read {
                object_type: object_type.clone(),
                ids: vec![object_id.clone()],
            },
            Target::Associated {
                from_type,
                from_id,
                to_type,
            } => State::Associations {
                from_type: from_type.clone(),
                from_id: from_id.clone(),
                to_type: to_type.clone(),
            },
        };
        Self {
            what,
            properties,
            state,
        }
    }

    /// What to do next.
    pub fn next(&self) -> UpdateNeed<'_> {
        match &self.state {
            State::Associations {
                from_type,
                from_id,
                to_type,
            } => UpdateNeed::Associations {
                from_type,
                from_id,
                to_type,
            },
            State::Read { object_type, ids } => UpdateNeed::Read {
                object_type,
                ids,
                properties: self.properties.keys().cloned().collect(),
            },
            State::Write {
                object_type,
                inputs,
                ..
            } => UpdateNeed::Write {
                object_type,
                inputs,
            },
            State::Finished(run) => UpdateNeed::Finished(run),
        }
    }

    /// The associated ids read (any order, duplicates allowed): the first
    /// [`MAX_BATCH_INPUTS`] in id order are the targets; none, and the effect is done.
    pub fn associated(&mut self, mut ids: Vec<String>) {
        let State::Associations { to_type, .. } = &self.state else {
            return;
        };
        ids.sort();
        ids.dedup();
        ids.truncate(MAX_BATCH_INPUTS);
        self.state = if ids.is_empty() {
            self.done(format!("{} targets=0", self.what))
        } else {
            State::Read {
                object_type: to_type.clone(),
                ids,
            }
        };
    }

    /// The targets' current values, by id, as the read returned them: a target the read did
    /// not return is gone, and is not written. Nothing differing, and the effect is done.
    pub fn current(&mut self, current: &BTreeMap<String, BTreeMap<String, Option<String>>>) {
        let State::Read { object_type, ids } = &self.state else {
            return;
        };
        let inputs: Vec<UpdateInput> = ids
            .iter()
            .filter_map(|id| Some((id, current.get(id)?)))
            .map(|(id, now)| UpdateInput {
                id: id.clone(),
                properties: to_write(&self.properties, now),
                object_write_trace_id: None,
            })
            .filter(|input| !input.properties.is_empty())
            .collect();
        self.state = if inputs.is_empty() {
            self.done(format!("{} targets={} written=0", self.what, ids.len()))
        } else {
            State::Write {
                object_type: object_type.clone(),
                targets: ids.len(),
                inputs,
            }
        };
    }

    /// The batch update succeeded: the effect is done.
    pub fn written(&mut self) {
        if let State::Write {
            targets, inputs, ..
        } = &self.state
        {
            let detail = format!("{} targets={targets} written={}", self.what, inputs.len());
            self.state = self.done(detail);
        }
    }

    /// The HubSpot call of `step` (`associations`, `read`, `update`) failed: refusals a retry
    /// cannot fix (400, 403, 404, 409, other 4xx, an unreadable answer) are dead-lettered
    /// now (`rule_update_{code}`); the rest is retried with the forwarding backoff, never
    /// sooner than a rate-limit wait.
    pub fn failed(&mut self, step: &str, failure: UpdateFailure) {
        let code = failure.code();
        let detail = format!("{} step={step} error={code}", self.what);
        let code = format!("rule_update_{code}");
        let run = match failure {
            UpdateFailure::GaveUp(
                GiveUpReason::Validation
                | GiveUpReason::Forbidden
                | GiveUpReason::NotFound
                | GiveUpReason::Conflict
                | GiveUpReason::Rejected
                | GiveUpReason::Decode,
            ) => JobRun::Refused {
                reason: code,
                detail,
            },
            UpdateFailure::Throttled { wait_ms } => JobRun::Failed {
                attempt: Attempt::StepFailed {
                    retry_after_secs: Some(wait_ms.div_ceil(1000)),
                },
                code,
                detail,
            },
            _ => JobRun::Failed {
                attempt: Attempt::StepFailed {
                    retry_after_secs: None,
                },
                code,
                detail,
            },
        };
        self.state = State::Finished(run);
    }

    /// The configuration the update needs is invalid (`key`, core's `kind` code): the
    /// effect's run, retried (the operator may fix it) and dead-lettered `config_invalid` once
    /// the attempts are spent.
    pub fn config_invalid(self, key: &str, kind: &str) -> JobRun {
        JobRun::Failed {
            attempt: Attempt::StepFailed {
                retry_after_secs: None,
            },
            code: "config_invalid".into(),
            detail: format!("{} {key}: {kind}", self.what),
        }
    }

    /// The effect's description, for logs.
    pub fn what(&self) -> &str {
        &self.what
    }

    fn done(&self, detail: String) -> State {
        State::Finished(JobRun::Done { detail })
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    trait Run {
        fn into_run(self) -> Option<JobRun>;
    }

    impl Run for RuleUpdate {
        fn into_run(self) -> Option<JobRun> {
            match self.next() {
                UpdateNeed::Finished(run) => Some(run.clone()),
                _ => None,
            }
        }
    }

    #[test]
    fn a_call_error_is_classified_with_the_same_code() {
        let errors = [
            CallError::GaveUp {
                reason: GiveUpReason::Forbidden,
                last: crate::api::Outcome::Timeout,
                attempts: 1,
            },
            CallError::Throttled { wait_ms: 7 },
            CallError::Build("b".into()),
            CallError::OAuthRefresh("o".into()),
            CallError::Gate("g".into()),
        ];
        for e in &errors {
            assert_eq!(UpdateFailure::from(e).code(), e.code(), "{e:?}");
        }
        assert_eq!(
            UpdateFailure::from(&errors[1]),
            UpdateFailure::Throttled { wait_ms: 7 }
        );
    }

    fn props() -> BTreeMap<String, String> {
        [
            ("tier".to_owned(), "gold".to_owned()),
            ("n".to_owned(), "1".to_owned()),
        ]
        .into()
    }

    fn associated() -> RuleUpdate {
        let target = Target::Associated {
            from_type: "deal".into(),
            from_id: "9".into(),
            to_type: "company".into(),
        };
        RuleUpdate::new(&target, props(), "update:r".into())
    }

    type Props<'a> = &'a [(&'a str, Option<&'a str>)];

    fn current(values: &[(&str, Props<'_>)]) -> BTreeMap<String, BTreeMap<String, Option<String>>> {
        values
            .iter()
            .map(|(id, props)| {
                let p = props
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                    .collect();
                ((*id).to_owned(), p)
            })
            .collect()
    }

    #[test]
    fn an_object_target_is_read_then_only_what_differs_is_written() {
        let target = Target::Object {
            object_type: "contact".into(),
            object_id: "5".into(),
        };
        let mut update = RuleUpdate::new(&target, props(), "update:r".into());
        match update.next() {
            UpdateNeed::Read {
                object_type,
                ids,
                properties,
            } => {
                assert_eq!((object_type, ids), ("contact", &["5".to_owned()][..]));
                assert_eq!(properties, ["n", "tier"]);
            }
            other => panic!("{other:?}"),
        }
        update.current(&current(&[("5", &[("tier", Some("gold")), ("n", None)])]));
        match update.next() {
            UpdateNeed::Write {
                object_type,
                inputs,
            } => {
                assert_eq!(object_type, "contact");
                assert_eq!(inputs.len(), 1);
                let written: Vec<_> = inputs[0].properties.keys().collect();
                assert_eq!(written, ["n"], "tier is already gold");
            }
            other => panic!("{other:?}"),
        }
        update.written();
        assert_eq!(
            update.into_run(),
            Some(JobRun::Done {
                detail: "update:r targets=1 written=1".into()
            })
        );
    }

    #[test]
    fn associations_are_deduped_sorted_and_capped() {
        let mut update = associated();
        assert_eq!(
            update.next(),
            UpdateNeed::Associations {
                from_type: "deal",
                from_id: "9",
                to_type: "company"
            }
        );
        let mut ids: Vec<String> = (0..150).map(|i| format!("{:03}", 149 - i)).collect();
        ids.push("000".into());
        update.associated(ids);
        match update.next() {
            UpdateNeed::Read {
                object_type, ids, ..
            } => {
                assert_eq!(object_type, "company");
                assert_eq!(ids.len(), MAX_BATCH_INPUTS);
                assert_eq!((ids[0].as_str(), ids[1].as_str()), ("000", "001"));
            }
            other => panic!("{other:?}"),
        }
        // Nothing differs (or the objects are gone): done, nothing written.
        update.current(&current(&[(
            "000",
            &[("tier", Some("gold")), ("n", Some("1"))],
        )]));
        assert_eq!(
            update.into_run(),
            Some(JobRun::Done {
                detail: format!("update:r targets={MAX_BATCH_INPUTS} written=0")
            })
        );

        let mut none = associated();
        none.associated(Vec::new());
        assert_eq!(
            none.into_run(),
            Some(JobRun::Done {
                detail: "update:r targets=0".into()
            })
        );
    }

    #[test]
    fn failures_are_refused_or_retried() {
        let run = |failure| {
            let mut update = associated();
            update.failed("read", failure);
            update.into_run().unwrap()
        };
        match run(UpdateFailure::GaveUp(GiveUpReason::NotFound)) {
            JobRun::Refused { reason, detail } => {
                assert_eq!(reason, "rule_update_not_found");
                assert_eq!(detail, "update:r step=read error=not_found");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            run(UpdateFailure::Throttled { wait_ms: 2_001 }),
            JobRun::Failed {
                attempt: Attempt::StepFailed {
                    retry_after_secs: Some(3)
                },
                code: "rule_update_rate_limited".into(),
                detail: "update:r step=read error=rate_limited".into(),
            }
        );
        for failure in [
            UpdateFailure::GaveUp(GiveUpReason::RetriesExhausted),
            UpdateFailure::Build,
            UpdateFailure::OAuthRefresh,
            UpdateFailure::Gate,
        ] {
            assert!(
                matches!(run(failure), JobRun::Failed { attempt: Attempt::StepFailed { retry_after_secs: None }, ref code, .. } if code == &format!("rule_update_{}", failure.code())),
                "{failure:?}"
            );
        }
        let update = associated();
        assert_eq!(update.clone().into_run(), None, "not finished");
        assert!(matches!(
            update.config_invalid("HUBSPOT_ACCESS_TOKEN", "config_missing"),
            JobRun::Failed { code, detail, .. }
                if code == "config_invalid" && detail == "update:r HUBSPOT_ACCESS_TOKEN: config_missing"
        ));
    }
}
