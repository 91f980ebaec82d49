//! Associations delivered with each record (issue 10 §2, `SYNC_ASSOCIATIONS`): which reads to
//! make for a step's records, and their answers merged into the [`Step`].
//!
//! For every object type in [`SyncConfig::associations`], the step's live records are read with
//! the associations v4 batch read (`POST /crm/v4/associations/{from}/{to}/batch/read`, at most
//! 1,000 inputs per request: docs/hubspot.md §4.3, "Batch read associations: limited to 1,000
//! inputs per request body",
//! <https://developers.hubspot.com/docs/api-reference/latest/crm/associations/guide>). A step
//! holds at most 200 records (one search page), so that is one request per associated type and
//! page. A result that carries `paging.next.after` (a record with more associated records than
//! one answer holds) is read again with that `after` as its input's `after` (the spec's
//! `PublicFetchAssociationsBatchRequest {id, after}`), up to [`MAX_ASSOCIATION_ROUNDS`] further
//! requests per type and step; past that the record is delivered with the associations read so
//! far and [`AssocPlan::truncated`] counts it (a guard against a cursor that never ends, not a
//! limit real data reaches: 50 rounds of HubSpot's pages).
//!
//! An id HubSpot does not answer for (it answers 207 with `errors` for ids without
//! associations, or no longer there) has no associated records of that type: an empty list.
//!
//! **Budget.** Each read is one request on the rate gate's burst budget ([`AssocRead::budget`]):
//! HubSpot documents a separate association burst limit (Professional: 150 per 10 s,
//! docs/hubspot.md §4.3) without saying whether association calls also count against the app's
//! general one (190 per 10 s), so they are charged to the general budget, the conservative reading.
//! Per step there is one association read per type, after one list or search page: with one
//! associated type, at the gate's 90 % of 190 per 10 s, association reads are at most half the
//! burst budget's calls plus the search pages' (5/s), about 110 per 10 s, below 150.

use std::collections::{BTreeMap, BTreeSet};

use super::config::SyncConfig;
use super::unit::Step;
use super::SyncError;
use crate::api::{AssociationResult, BatchResponse, MAX_ASSOCIATION_READ_INPUTS};

/// A record's associated record ids: associated object type (as configured, `companies`) →
/// ids, ascending by number. Every configured type is present, empty when none.
pub type Associations = BTreeMap<String, Vec<String>>;

/// The most follow-up requests ([`AssociationResult::next_after`]) per associated type and step.
pub const MAX_ASSOCIATION_ROUNDS: u32 = 50;

/// One associations batch read: `to_type` associations of the inputs (record id and, for a
/// continuation, HubSpot's `after`). Build it with
/// [`crate::api::ApiConfig::batch_read_associations_after`]; answer with
/// [`AssocPlan::on_answer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssocRead {
    /// The associated object type.
    pub to_type: String,
    /// At most [`MAX_ASSOCIATION_READ_INPUTS`] `(id, after)`.
    pub inputs: Vec<(String, Option<String>)>,
}

impl AssocRead {
    /// The HubSpot budget the read draws on: the burst window, like every non-search call
    /// (see the module docs for why the association API's own limit is not tracked apart).
    pub fn budget(&self) -> crate::ratelimit::Budget {
        crate::ratelimit::Budget::General
    }
}

/// The association reads of one step, as a poll-style walk: [`next_read`](Self::next_read),
/// perform it, [`on_answer`](Self::on_answer), until none is left; then
/// [`finish`](Self::finish) puts the associations into the step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AssocPlan {
    /// Reads still to make, first first.
    queue: Vec<AssocRead>,
    /// What was read: record id → type → associated ids.
    found: BTreeMap<String, BTreeMap<String, BTreeSet<u64>>>,
    /// Follow-up requests made per type.
    rounds: BTreeMap<String, u32>,
    /// Records whose associations were cut at [`MAX_ASSOCIATION_ROUNDS`].
    truncated: BTreeSet<String>,
}

impl AssocPlan {
    /// The reads for `step`'s live records and every type of [`SyncConfig::associations`]
    /// (none when that is empty, or the step has no live record).
    pub fn new(config: &SyncConfig, step: &Step) -> Self {
        let mut ids: Vec<&str> = step.live.iter().map(|o| o.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut plan = Self::default();
        if ids.is_empty() {
            return plan;
        }
        for to_type in &config.associations {
            for chunk in ids.chunks(MAX_ASSOCIATION_READ_INPUTS) {
                plan.queue.push(AssocRead {
                    to_type: to_type.clone(),
                    inputs: chunk.iter().map(|id| ((*id).to_owned(), None)).collect(),
                });
            }
            for id in &ids {
                plan.found
                    .entry((*id).to_owned())
                    .or_default()
                    .entry(to_type.clone())
                    .or_default();
            }
        }
        plan
    }

    /// The read to make next; `None` when every association is read. Calling it again without
    /// [`on_answer`](Self::on_answer) gives the same read (send it again after a failure).
    pub fn next_read(&self) -> Option<&AssocRead> {
        self.queue.first()
    }

    /// Feeds back HubSpot's answer (200 or 207) to [`next_read`](Self::next_read). Results for
    /// ids not asked are ignored; a result with `paging.next.after` queues its continuation.
    ///
    /// # Errors
    /// [`SyncError::NonNumericId`] when an associated id is not a number (not an answer to the
    /// read): nothing of the answer is used, the same read is due again.
    pub fn on_answer(
        &mut self,
        answer: &BatchResponse<AssociationResult>,
    ) -> Result<(), SyncError> {
        let Some(read) = self.queue.first() else {
            return Ok(());
        };
        let asked: BTreeSet<&str> = read.inputs.iter().map(|(id, _)| id.as_str()).collect();
        let mut got: Vec<(&str, Vec<u64>, Option<&String>)> = Vec::new();
        for r in &answer.results {
            if !asked.contains(r.from.id.as_str()) {
                continue;
            }
            let mut ids = Vec::with_capacity(r.to.len());
            for t in &r.to {
                ids.push(
                    t.to_object_id
                        .parse::<u64>()
                        .map_err(|_| SyncError::NonNumericId {
                            id: t.to_object_id.clone(),
                        })?,
                );
            }
            got.push((r.from.id.as_str(), ids, r.next_after.as_ref()));
        }
        let to_type = read.to_type.clone();
        let mut more: Vec<(String, Option<String>)> = Vec::new();
        let rounds = self.rounds.get(&to_type).copied().unwrap_or(0);
        for (id, ids, next) in got {
            self.found
                .entry(id.to_owned())
                .or_default()
                .entry(to_type.clone())
                .or_default()
                .extend(ids);
            if let Some(after) = next {
                if rounds < MAX_ASSOCIATION_ROUNDS {
                    more.push((id.to_owned(), Some(after.clone())));
                } else {
                    self.truncated.insert(id.to_owned());
                }
            }
        }
        self.queue.remove(0);
        if !more.is_empty() {
            self.rounds.insert(to_type.clone(), rounds + 1);
            for chunk in more.chunks(MAX_ASSOCIATION_READ_INPUTS) {
                self.queue.push(AssocRead {
                    to_type: to_type.clone(),
                    inputs: chunk.to_vec(),
                });
            }
        }
        Ok(())
    }

    /// Records whose associations were cut at [`MAX_ASSOCIATION_ROUNDS`] (log them).
    pub fn truncated(&self) -> usize {
        self.truncated.len()
    }

    /// Puts what was read into `step.associations` (every configured type of every live record,
    /// empty when none), for [`super::decide`].
    pub fn finish(self, step: &mut Step) {
        step.associations = self
            .found
            .into_iter()
            .map(|(id, types)| {
                let types = types
                    .into_iter()
                    .map(|(t, ids)| (t, ids.into_iter().map(|n| n.to_string()).collect()))
                    .collect();
                (id, types)
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::api::SimpleObject;

    fn step(ids: &[u64]) -> Step {
        Step {
            live: ids
                .iter()
                .map(|id| {
                    serde_json::from_value::<SimpleObject>(
                        serde_json::json!({"id": id.to_string()}),
                    )
                    .expect("object")
                })
                .collect(),
            ..Step::default()
        }
    }

    fn config(types: &[&str]) -> SyncConfig {
        SyncConfig {
            associations: types.iter().map(|t| (*t).to_owned()).collect(),
            ..SyncConfig::new(crate::id::PortalId::new(1), "contacts")
        }
    }

    fn answer(json: &str) -> BatchResponse<AssociationResult> {
        serde_json::from_str(json).expect("answer")
    }

    #[test]
    fn no_types_or_no_records_no_reads() {
        let mut s = step(&[1, 2]);
        let plan = AssocPlan::new(&config(&[]), &s);
        assert_eq!(plan.next_read(), None);
        plan.finish(&mut s);
        assert!(s.associations.is_empty());
        assert_eq!(
            AssocPlan::new(&config(&["companies"]), &step(&[])).next_read(),
            None
        );
    }

    #[test]
    fn one_read_per_type_and_thousand_ids() {
        let ids: Vec<u64> = (1..=2_500).collect();
        let mut plan = AssocPlan::new(&config(&["companies", "deals"]), &step(&ids));
        let mut reads = Vec::new();
        while let Some(r) = plan.next_read().cloned() {
            reads.push((r.to_type.clone(), r.inputs.len()));
            plan.on_answer(&answer(r#"{"status":"COMPLETE","results":[]}"#))
                .expect("answer");
        }
        assert_eq!(
            reads,
            [
                ("companies".to_owned(), 1_000),
                ("companies".to_owned(), 1_000),
                ("companies".to_owned(), 500),
                ("deals".to_owned(), 1_000),
                ("deals".to_owned(), 1_000),
                ("deals".to_owned(), 500),
            ]
        );
    }

    #[test]
    fn answers_merge_into_the_step_with_paging_and_errors() {
        let mut s = step(&[10, 11, 12]);
        let mut plan = AssocPlan::new(&config(&["companies"]), &s);
        let first = plan.next_read().cloned().expect("read");
        assert_eq!(first.budget(), crate::ratelimit::Budget::General);
        assert_eq!(
            first.inputs,
            [
                ("10".to_owned(), None),
                ("11".to_owned(), None),
                ("12".to_owned(), None)
            ]
        );
        // 10 has two companies on this page and more to come; 11 none (an error, 207); an id
        // not asked is ignored; 12 has one, twice (two association types).
        plan.on_answer(&answer(
            r#"{"status":"COMPLETE","results":[
              {"from":{"id":"10"},"to":[{"toObjectId":900,"associationTypes":[]},{"toObjectId":80,"associationTypes":[]}],
               "paging":{"next":{"after":"abc"}}},
              {"from":{"id":"99"},"to":[{"toObjectId":1,"associationTypes":[]}]},
              {"from":{"id":"12"},"to":[{"toObjectId":7,"associationTypes":[{"category":"HUBSPOT_DEFINED","typeId":1,"label":"Primary"}]},{"toObjectId":7,"associationTypes":[]}]}],
              "numErrors":1,"errors":[{"status":"error","category":"OBJECT_NOT_FOUND","message":"No company is associated with contact 11","context":{"fromObjectId":["11"]}}]}"#,
        ))
        .expect("answer");
        let next = plan.next_read().cloned().expect("continuation");
        assert_eq!(next.inputs, [("10".to_owned(), Some("abc".to_owned()))]);
        plan.on_answer(&answer(
            r#"{"status":"COMPLETE","results":[{"from":{"id":"10"},"to":[{"toObjectId":"1000","associationTypes":[]}]}]}"#,
        ))
        .expect("answer");
        assert_eq!(plan.next_read(), None);
        assert_eq!(plan.truncated(), 0);
        plan.finish(&mut s);
        let of = |id: &str| s.associations[id]["companies"].clone();
        assert_eq!(of("10"), ["80", "900", "1000"]);
        assert_eq!(of("11"), Vec::<String>::new());
        assert_eq!(of("12"), ["7"]);
        assert!(!s.associations.contains_key("99"));
    }

    #[test]
    fn a_bad_answer_is_not_used_and_the_read_is_due_again() {
        let s = step(&[10]);
        let mut plan = AssocPlan::new(&config(&["companies"]), &s);
        let before = plan.clone();
        let err = plan
            .on_answer(&answer(
                r#"{"status":"COMPLETE","results":[{"from":{"id":"10"},"to":[{"toObjectId":"x1","associationTypes":[]}]}]}"#,
            ))
            .expect_err("non-numeric");
        assert_eq!(err.code(), "non_numeric_id");
        assert_eq!(plan, before);
    }

    #[test]
    fn a_cursor_that_never_ends_is_cut() {
        let mut s = step(&[10]);
        let mut plan = AssocPlan::new(&config(&["companies"]), &s);
        let mut reads = 0;
        while plan.next_read().is_some() {
            reads += 1;
            plan.on_answer(&answer(&format!(
                r#"{{"status":"COMPLETE","results":[{{"from":{{"id":"10"}},"to":[{{"toObjectId":{reads},"associationTypes":[]}}],"paging":{{"next":{{"after":"{reads}"}}}}}}]}}"#
            )))
            .expect("answer");
            assert!(reads <= 100, "the walk does not end");
        }
        assert_eq!(reads, MAX_ASSOCIATION_ROUNDS as usize + 1);
        assert_eq!(plan.truncated(), 1);
        plan.finish(&mut s);
        assert_eq!(s.associations["10"]["companies"].len(), reads);
    }
}
