//! The enrichment step of the forwarding consumer (`ENRICHMENT_MAP`): the events of a queue
//! batch become at most one forward per object, with the object read from HubSpot, mapped and
//! diffed against the snapshot last forwarded (or, for a first change, against the values
//! before it from HubSpot's property history). Every decision is core's plan
//! ([`hubspot_edge_core::enrich::Enrichment`]); this module drives it: record-store drops and
//! reads, echo-guard reads from KV, batch reads through the HubSpot executor, and it hands
//! [`Job`]s back to the consumer, which forwards them and writes the snapshots after a
//! successful forward.
//!
//! Logs carry ids, counts and codes only: never a property value.

use futures_util::future::{join, join_all};
use hubspot_edge_core::api::{BatchReadOptions, BatchResponse, GiveUpReason, RequestKind};
use hubspot_edge_core::delivery::Attempt;
use hubspot_edge_core::enrich::{
    EnrichCounts, EnrichIo, EnrichJob, EnrichNote, Enrichment, HubSpotRead,
};
use hubspot_edge_core::mapping::Mapping;
use hubspot_edge_core::object_type::ObjectType;
use hubspot_edge_core::rules::Rules;
use worker::kv::KvStore;
use worker::Env;

use crate::config::HubSpotApi;
use crate::hubspot::{execute, CallError};
use crate::jobs::{Job, Pending, StoreWrite};
use crate::log::{Line, Scope};
use crate::store;

/// What enrichment did in one batch, for the batch's log line (core's [`EnrichCounts`]).
#[derive(Debug, Default)]
pub(crate) struct Counts(EnrichCounts);

impl std::ops::Deref for Counts {
    type Target = EnrichCounts;
    fn deref(&self) -> &EnrichCounts {
        &self.0
    }
}

impl Counts {
    pub(crate) fn fields(&self, line: Line) -> Line {
        let c = &self.0;
        line.field("enriched_objects", c.objects)
            .field("enriched_associations", c.associations)
            .field("hubspot_reads", c.reads)
            .field("hubspot_history_reads", c.history_reads)
            .field("hubspot_history_fallbacks", c.history_fallbacks)
            .field("enrich_missing", c.missing)
            .field("enrich_unchanged", c.unchanged)
            .field("enrich_echo", c.echo)
            .field("enrich_unmapped", c.unmapped)
            .field("enrich_failed", c.failed)
            .field("enrich_deferred", c.deferred)
    }
}

/// The jobs for `items` (events not yet delivered): thin jobs for types without a map, one job
/// per object or association change otherwise.
pub(crate) async fn jobs(
    mapping: &Mapping,
    rules: &Rules,
    env: &Env,
    kv: &KvStore,
    items: Vec<Pending>,
    batch_id: &str,
    counts: &mut Counts,
) -> Vec<Job> {
    let now_ms = worker::Date::now().as_millis();
    let mut plan = Enrichment::new(mapping, rules, items.iter().map(|(_, m)| m), now_ms);
    let mut api = None;
    loop {
        match plan.next_io() {
            EnrichIo::Done => break,
            EnrichIo::Drop(drops) => {
                // A privacy deletion drops the snapshot now, whether or not the forward
                // succeeds (it may end as a dead letter): personal data is not kept for it.
                for (i, (key, commit)) in drops.iter().enumerate() {
                    let one = std::slice::from_ref(commit);
                    let dropped =
                        crate::records::commit(env, key.portal, &key.object_type, one).await;
                    if let Err(e) = &dropped {
                        Line::warn("record_store_failed")
                            .field("request_id", batch_id)
                            .field("error", e.to_string())
                            .emit();
                    }
                    plan.on_dropped(i, dropped.is_ok());
                }
            }
            EnrichIo::Lookup { stored, echo } => {
                match HubSpotApi::from_env(env) {
                    Ok(a) => api = Some(a),
                    Err(e) => {
                        Line::error("config_invalid")
                            .field("key", e.key)
                            .field("error", e.message())
                            .emit();
                        // Retried with the forwarding backoff, then dead-lettered as
                        // `config_invalid` naming the key (`KEY: code`, as core's
                        // `config::summary`).
                        let detail = format!("{}: {}", e.key, e.kind);
                        let attempt = Attempt::StepFailed {
                            retry_after_secs: None,
                        };
                        plan.fail_reads(attempt, "config_invalid", &detail);
                        continue;
                    }
                }
                let (found, guards) = join(
                    join_all(stored.iter().map(|(portal, object_type, ids)| {
                        crate::records::lookup(env, *portal, object_type, ids.clone())
                    })),
                    // A short-lived mark, not state that must be exact: unreadable is none.
                    join_all(echo.iter().map(|k| async move {
                        let key = store::echo_key(&k.object_type, &k.id);
                        store::get_text(kv, &key).await.ok().flatten()
                    })),
                )
                .await;
                for (i, (answer, (_, object_type, _))) in found.into_iter().zip(&stored).enumerate()
                {
                    if let Err(e) = &answer {
                        Line::warn("record_store_failed")
                            .field("object_type", object_type.as_str())
                            .field("error", e.to_string())
                            .emit();
                    }
                    let (stored, writing) =
                        answer.map_or((None, Vec::new()), |(s, w)| (Some(s), w));
                    plan.on_stored(i, stored);
                    plan.on_writing(i, writing);
                }
                for (i, text) in guards.iter().enumerate() {
                    plan.on_echo_guard(i, text.as_deref());
                }
            }
            EnrichIo::Read(reads) => {
                let Some(api) = &api else { break };
                // Each read carries the trace of (the first of) the events it serves.
                let scopes: Vec<Scope> = reads
                    .iter()
                    .map(|r| match r.traced_by.and_then(|i| items.get(i)) {
                        Some((_, e)) => Scope::of_event(&e.request_id, e.traceparent.as_deref()),
                        None => Scope::new(batch_id, None),
                    })
                    .collect();
                let answers = join_all(reads.iter().zip(&scopes).map(|(read, scope)| {
                    crate::log::scoped(scope.clone(), read_chunk(api, env, read))
                }))
                .await;
                for (i, ((read, answer), scope)) in
                    reads.iter().zip(answers).zip(scopes).enumerate()
                {
                    let mut line = Line::info("enrich_read").field("request_id", batch_id);
                    if let Some(trace_id) = scope.trace_id() {
                        line = line.field("trace_id", trace_id);
                    }
                    let line = line
                        .field("object_type", read.object_type.as_str())
                        .field("ids", read.chunk.ids.len())
                        .field("history", read.chunk.history.len());
                    match answer {
                        Ok(response) => {
                            line.field("found", response.results.len())
                                .field("errors", response.errors.len())
                                .emit();
                            plan.on_read(i, response);
                        }
                        Err(e) => {
                            let (attempt, code, refused) = failure(&e);
                            line.field("error", code.as_str()).emit();
                            plan.on_read_failed(i, attempt, &code, refused);
                        }
                    }
                }
            }
        }
    }
    let outcome = plan.finish();
    for note in &outcome.notes {
        log_note(note, batch_id);
    }
    counts.0 += &outcome.counts;
    let mut items: Vec<Option<Pending>> = items.into_iter().map(Some).collect();
    outcome
        .jobs
        .into_iter()
        .map(|job| job_of(job, &mut items))
        .collect()
}

/// The consumer's job for a planned one: its messages, and its commits to its object's store.
fn job_of(job: EnrichJob, items: &mut [Option<Pending>]) -> Job {
    let (portal, object_type) = job
        .object
        .map_or((0.into(), String::new()), |k| (k.portal, k.object_type));
    let store = |commit| StoreWrite {
        portal,
        object_type: object_type.clone(),
        commit,
    };
    Job {
        members: job
            .members
            .iter()
            .filter_map(|&i| items[i].take())
            .collect(),
        action: job.action,
        after: job.after.into_iter().map(store).collect(),
        effects: job.effects,
    }
}

/// One line per note (ids and a code only).
fn log_note(note: &EnrichNote, batch_id: &str) {
    let (line, object, reason) = match note {
        EnrichNote::Skipped { object, reason } => (Line::info("enrich_skipped"), object, *reason),
        EnrichNote::Deferred { object } => (Line::info("enrich_deferred"), object, ""),
        EnrichNote::RuleMatched { object, rule } => (
            Line::info("rule_matched").field("rule", rule.as_str()),
            object,
            "",
        ),
        // Unreadable: diffed as if never seen; the commit replaces it.
        EnrichNote::SnapshotUnreadable { object, code } => (Line::warn(code), object, ""),
        EnrichNote::MapFailed { object, code } => (Line::warn("enrich_map_failed"), object, *code),
    };
    let line = line
        .field("request_id", batch_id)
        .field("object_type", object.object_type.as_str())
        .field("object_id", object.id.as_str());
    match reason {
        "" => line.emit(),
        reason => line.field("reason", reason).emit(),
    }
}

/// One planned batch read (one request: the plan keeps each within one request's limit).
async fn read_chunk(
    api: &HubSpotApi,
    env: &Env,
    read: &HubSpotRead,
) -> Result<BatchResponse, CallError> {
    let options = BatchReadOptions {
        properties: read.properties.clone(),
        properties_with_history: read.chunk.history.clone(),
        ..BatchReadOptions::default()
    };
    let request = api
        .api
        .batch_read(
            &api_object_type(&read.object_type),
            &read.chunk.ids,
            &options,
        )
        .into_iter()
        .next()
        .ok_or_else(|| CallError::Build("empty read".into()))?;
    execute::<BatchResponse>(api, env, RequestKind::Read, &request).await
}

/// A failed read as a forwarding attempt (for the retry policy), a stable code, and the reason
/// HubSpot refused it, if it did.
fn failure(e: &CallError) -> (Attempt, String, Option<GiveUpReason>) {
    (e.attempt(), e.code().to_owned(), e.give_up())
}

/// The API path segment of an object type in any spelling (`contact` → `contacts`; custom
/// object ids as they are): core's one table, [`ObjectType`].
pub(crate) fn api_object_type(object_type: &str) -> String {
    ObjectType::parse(object_type).api_segment().to_owned()
}

/// The object type in the events' vocabulary (`contacts`, `0-1` → `contact`), the inverse of
/// [`api_object_type`].
pub(crate) fn event_object_type(object_type: &str) -> &str {
    hubspot_edge_core::object_type::event_name(object_type)
}
