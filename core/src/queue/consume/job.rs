//! A consumer's job as core sees it: what it does ([`JobAction`]), when it needs the host's
//! I/O at all ([`JobAction::start`]), and how the record-store writes of a batch's delivered
//! jobs are grouped into store calls and what became of each job's ([`BatchCommits`]).

use std::collections::BTreeMap;

use super::{JobRun, JobVerdict};
use crate::delivery::{Admit, Attempt, BatchBudget, Recorded};
use crate::id::PortalId;
use crate::records::{Commit, CommitOutcome};
use crate::rules::Queued;

/// What a job does: one forward (or none) for the messages it settles.
#[derive(Debug, Clone, PartialEq)]
pub enum JobAction {
    /// Forward the one member's event as the thin event.
    Thin,
    /// Forward this body with this `webhook-id`.
    Send {
        /// The `webhook-id`.
        id: String,
        /// The body.
        body: String,
    },
    /// Nothing to forward: acknowledge (an unmapped change, an unchanged record, our echo).
    Nothing,
    /// A write of ours to the object is in flight: back on the queue as the same attempt.
    Defer,
    /// The events cannot be forwarded: dead-letter them with this stable reason.
    Fail {
        /// Stable reason code.
        reason: String,
        /// Detail without property values.
        detail: String,
    },
    /// A step before the forward failed (the HubSpot read, the record store): retry like a
    /// failed forward, and dead-letter with `code` once the attempts are spent.
    Retry {
        /// The attempt, for the retry policy.
        attempt: Attempt,
        /// Stable code.
        code: String,
        /// Detail without property values.
        detail: String,
    },
    /// Carry out a rule's effect.
    Effect(Queued),
}

impl JobAction {
    /// The job's run when the host has nothing to perform, else `None` (a forward or a rule's
    /// effect to carry out). A job that would send (a forward, an effect's HubSpot calls) once
    /// the batch's `budget` is spent at `now_ms` is [`JobRun::Deferred`]: back on the queue
    /// unsent, like a [`JobAction::Defer`]. Nothing to forward is done, a known failure refused
    /// or failed as it says.
    pub fn start(&self, budget: &BatchBudget, now_ms: u64) -> Option<JobRun> {
        match self {
            Self::Thin | Self::Send { .. } | Self::Effect(_) => {
                (budget.admit(now_ms) == Admit::Defer).then_some(JobRun::Deferred)
            }
            Self::Nothing => Some(JobRun::Done {
                detail: "nothing_to_forward".into(),
            }),
            Self::Defer => Some(JobRun::Deferred),
            Self::Fail { reason, detail } => Some(JobRun::Refused {
                reason: reason.clone(),
                detail: detail.clone(),
            }),
            Self::Retry {
                attempt,
                code,
                detail,
            } => Some(JobRun::Failed {
                attempt: *attempt,
                code: code.clone(),
                detail: detail.clone(),
            }),
        }
    }
}

/// A record-store write that follows a job's successful forward.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreWrite {
    /// The HubSpot portal of the object.
    pub portal: PortalId,
    /// Its object type.
    pub object_type: String,
    /// The compare-and-set write.
    pub commit: Commit,
}

/// The record-store writes of a batch's delivered jobs: one store call per portal and object
/// type ([`BatchCommits::calls`]), in a stable order, and what became of each job's writes once
/// the calls are answered ([`BatchCommits::recorded`]).
#[derive(Debug)]
pub struct BatchCommits {
    calls: Vec<StoreCall>,
    recorded: Vec<Recorded>,
}

/// The jobs and commits of one store call, while they are grouped.
type Group = (Vec<usize>, Vec<Commit>);

/// One store call: the commits of the delivered jobs about one portal and object type.
#[derive(Debug)]
struct StoreCall {
    portal: PortalId,
    object_type: String,
    /// The job of each commit.
    jobs: Vec<usize>,
    commits: Vec<Commit>,
}

impl BatchCommits {
    /// The writes of the batch's jobs, each with its verdict: only delivered jobs write.
    pub fn new<'a>(jobs: impl IntoIterator<Item = (&'a JobVerdict, &'a [StoreWrite])>) -> Self {
        let mut by_store: BTreeMap<(PortalId, &str), Group> = BTreeMap::new();
        let mut count = 0;
        for (index, (verdict, writes)) in jobs.into_iter().enumerate() {
            count = index + 1;
            if !verdict.delivered() {
                continue;
            }
            for write in writes {
                let (jobs, commits) = by_store
                    .entry((write.portal, write.object_type.as_str()))
                    .or_default();
                jobs.push(index);
                commits.push(write.commit.clone());
            }
        }
        let calls = by_store
            .into_iter()
            .map(|((portal, object_type), (jobs, commits))| StoreCall {
                portal,
                object_type: object_type.to_owned(),
                jobs,
                commits,
            });
        Self {
            calls: calls.collect(),
            recorded: vec![Recorded::Ok; count],
        }
    }

    /// The store calls to make: `(call, portal, object type, commits)`; answer each with
    /// [`BatchCommits::answered`] or [`BatchCommits::failed`].
    pub fn calls(&self) -> impl Iterator<Item = (usize, PortalId, &str, &[Commit])> + '_ {
        self.calls.iter().enumerate().map(|(index, call)| {
            (
                index,
                call.portal,
                call.object_type.as_str(),
                call.commits.as_slice(),
            )
        })
    }

    /// Feeds call `call`'s answer (the calls in any order): an outcome per commit, in order.
    /// A job with a refused commit is [`Recorded::Conflict`] (another consumer wrote the object
    /// first), unless another of its calls failed ([`BatchCommits::failed`]).
    pub fn answered(&mut self, call: usize, outcomes: impl IntoIterator<Item = CommitOutcome>) {
        let Some(StoreCall { jobs, .. }) = self.calls.get(call) else {
            return;
        };
        for (&job, outcome) in jobs.iter().zip(outcomes) {
            let recorded = &mut self.recorded[job];
            if matches!(outcome, CommitOutcome::Conflict { .. }) && *recorded != Recorded::Failed {
                *recorded = Recorded::Conflict;
            }
        }
    }

    /// Call `call` failed: every job with a write in it is [`Recorded::Failed`], whatever its
    /// other calls said (a job's writes are about one object, so one call, in practice).
    pub fn failed(&mut self, call: usize) {
        if let Some(StoreCall { jobs, .. }) = self.calls.get(call) {
            for &job in jobs {
                self.recorded[job] = Recorded::Failed;
            }
        }
    }

    /// Per job, in order, what became of its writes ([`Recorded::Ok`] when it had none).
    pub fn recorded(self) -> Vec<Recorded> {
        self.recorded
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::delivery::DeliveryDecision;

    fn verdict(delivered: bool) -> JobVerdict {
        JobVerdict {
            decision: delivered.then_some(DeliveryDecision::Deliver),
            reason: None,
            detail: String::new(),
            attempt: 1,
            jitter: 0.5,
        }
    }

    fn write(portal: u64, object_type: &str, id: &str) -> StoreWrite {
        StoreWrite {
            portal: PortalId::new(portal),
            object_type: object_type.into(),
            commit: Commit {
                id: id.into(),
                expect: Some(1),
                write: crate::records::Write::Delete,
            },
        }
    }

    #[test]
    fn only_sending_jobs_wait_on_the_batch_budget() {
        let budget = BatchBudget::new(1_000, 100);
        let sending = [
            JobAction::Thin,
            JobAction::Send {
                id: "k".into(),
                body: "{}".into(),
            },
        ];
        for action in &sending {
            assert_eq!(action.start(&budget, 1_050), None, "{action:?}");
            assert_eq!(
                action.start(&budget, 1_100),
                Some(JobRun::Deferred),
                "{action:?}"
            );
        }
        // Decided without I/O, budget or not.
        for now in [1_050, 5_000] {
            assert_eq!(
                JobAction::Nothing.start(&budget, now),
                Some(JobRun::Done {
                    detail: "nothing_to_forward".into()
                })
            );
            let fail = JobAction::Fail {
                reason: "r".into(),
                detail: "d".into(),
            };
            assert_eq!(
                fail.start(&budget, now),
                Some(JobRun::Refused {
                    reason: "r".into(),
                    detail: "d".into()
                })
            );
            let retry = JobAction::Retry {
                attempt: Attempt::TimedOut,
                code: "c".into(),
                detail: "d".into(),
            };
            assert_eq!(JobAction::Defer.start(&budget, now), Some(JobRun::Deferred));
            assert_eq!(
                retry.start(&budget, now),
                Some(JobRun::Failed {
                    attempt: Attempt::TimedOut,
                    code: "c".into(),
                    detail: "d".into()
                })
            );
        }
    }

    #[test]
    fn writes_are_grouped_per_portal_and_type_and_only_for_delivered_jobs() {
        let jobs = [
            (verdict(true), vec![write(2, "contacts", "a")]),
            (verdict(false), vec![write(1, "contacts", "b")]),
            (
                verdict(true),
                vec![write(1, "contacts", "c"), write(1, "companies", "d")],
            ),
            (verdict(true), vec![]),
            (verdict(true), vec![write(2, "contacts", "e")]),
        ];
        let plan = BatchCommits::new(jobs.iter().map(|(v, w)| (v, w.as_slice())));
        let calls: Vec<(usize, u64, String, Vec<String>)> = plan
            .calls()
            .map(|(call, portal, object_type, commits)| {
                let ids = commits.iter().map(|c| c.id.clone()).collect();
                (call, portal.get(), object_type.to_owned(), ids)
            })
            .collect();
        assert_eq!(
            calls,
            [
                (0, 1, "companies".to_owned(), vec!["d".to_owned()]),
                (1, 1, "contacts".to_owned(), vec!["c".to_owned()]),
                (
                    2,
                    2,
                    "contacts".to_owned(),
                    vec!["a".to_owned(), "e".to_owned()]
                ),
            ]
        );
        assert_eq!(plan.recorded(), vec![Recorded::Ok; 5]);
    }

    #[test]
    fn a_refused_commit_is_a_conflict_and_a_failed_call_fails_its_jobs() {
        let jobs = [
            (verdict(true), vec![write(1, "contacts", "a")]),
            (verdict(true), vec![write(1, "contacts", "b")]),
            (verdict(true), vec![write(1, "deals", "c")]),
            (verdict(false), vec![write(1, "deals", "d")]),
            // Writes in two stores: call 0 (contacts) and call 1 (deals).
            (
                verdict(true),
                vec![write(1, "contacts", "e"), write(1, "deals", "f")],
            ),
        ];
        let mut plan = BatchCommits::new(jobs.iter().map(|(v, w)| (v, w.as_slice())));
        let committed = CommitOutcome::Committed { version: 2 };
        let conflict = CommitOutcome::Conflict { current: 3 };
        plan.failed(1);
        plan.answered(0, [committed, conflict, conflict]);
        // An unknown call changes nothing.
        plan.failed(7);
        plan.answered(9, [conflict]);
        assert_eq!(
            plan.recorded(),
            [
                Recorded::Ok,
                Recorded::Conflict,
                Recorded::Failed,
                Recorded::Ok,
                // Failed in one call: not made a conflict by another's answer.
                Recorded::Failed,
            ]
        );
    }
}
