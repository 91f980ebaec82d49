//! The enrichment step of the forwarding consumer (`ENRICHMENT_MAP`): the events of a queue
//! batch become at most one forward per object, with the object read from HubSpot, mapped and
//! diffed against the snapshot last forwarded (or, for a first change, against the values
//! before it from HubSpot's property history). Every decision is core's
//! ([`hubspot_edge_core::enrich`]); this module does the I/O: batch reads through the HubSpot
//! executor, snapshot and echo-guard reads from KV, and it hands [`Job`]s back to the consumer,
//! which forwards them and writes the snapshots after a successful forward.
//!
//! Logs carry ids, counts and codes only: never a property value.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::{join, join_all};
use futures_util::stream::{self, StreamExt};
use hubspot_edge_core::api::{BatchReadOptions, BatchResponse, RequestKind, SimpleObject};
use hubspot_edge_core::delivery::Attempt;
use hubspot_edge_core::diff::EchoGuard;
use hubspot_edge_core::enrich::{
    self, Association, Current, EnrichDecision, Forward, Need, Plan, ReadChunk, ReadOutcome,
    SnapshotWrite, MAX_CONCURRENT_READS,
};
use hubspot_edge_core::event::Event;
use hubspot_edge_core::mapping::{Mapping, Record};
use hubspot_edge_core::object_type::ObjectType;
use hubspot_edge_core::outbound::{self, RecordEvent, RecordEventKind};
use hubspot_edge_core::records::{change_id, Commit, Stored, Write};
use hubspot_edge_core::rules::{self, Rules};
use worker::kv::KvStore;
use worker::Env;

use crate::config::HubSpotApi;
use crate::hubspot::{execute, CallError};
use crate::jobs::{Job, JobAction, Pending, StoreWrite};
use crate::log::{Line, Scope};
use crate::store;

/// What enrichment did in one batch, for the batch's log line.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Objects (groups of events) enriched.
    pub(crate) objects: usize,
    /// Association changes forwarded.
    pub(crate) associations: usize,
    /// Batch-read requests sent (history reads and fallbacks included).
    reads: usize,
    /// Of those, the ones asking for property history (first changes).
    history_reads: usize,
    /// History reads HubSpot refused (400), read again without history.
    history_fallbacks: usize,
    /// Objects not returned by the read.
    missing: usize,
    unchanged: usize,
    pub(crate) echo: usize,
    unmapped: usize,
    failed: usize,
}

impl Counts {
    pub(crate) fn fields(&self, line: Line) -> Line {
        line.field("enriched_objects", self.objects)
            .field("enriched_associations", self.associations)
            .field("hubspot_reads", self.reads)
            .field("hubspot_history_reads", self.history_reads)
            .field("hubspot_history_fallbacks", self.history_fallbacks)
            .field("enrich_missing", self.missing)
            .field("enrich_unchanged", self.unchanged)
            .field("enrich_echo", self.echo)
            .field("enrich_unmapped", self.unmapped)
            .field("enrich_failed", self.failed)
    }
}

/// The object a group of events is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct ObjectKey {
    portal: u64,
    /// In the vocabulary of webhook events (`contact`, `2-123`).
    object_type: String,
    id: String,
}

/// A group waiting for its read.
struct Reading {
    key: ObjectKey,
    members: Vec<Pending>,
    need: Need,
}

/// The record store's writes for `key`'s object (and, for a merge, the merged-away ids).
fn store_writes(key: &ObjectKey, commits: Vec<Commit>) -> Vec<StoreWrite> {
    commits
        .into_iter()
        .map(|commit| StoreWrite {
            portal: key.portal,
            object_type: key.object_type.clone(),
            commit,
        })
        .collect()
}

fn delete(id: &str) -> Commit {
    Commit {
        id: id.to_owned(),
        expect: None,
        write: Write::Delete,
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
    let mut jobs = Vec::with_capacity(items.len());
    let mut groups: BTreeMap<ObjectKey, Vec<Pending>> = BTreeMap::new();
    for item in items {
        let routed = Event::parse(&item.1.event).ok().map(|event| {
            let object_type = event.object_type().to_owned();
            match enrich::route(mapping, &event) {
                enrich::Route::Thin => None,
                enrich::Route::Association => Some(Err(association_job_parts(&event, &item))),
                enrich::Route::Object(id) => Some(Ok(ObjectKey {
                    portal: event.portal_id().get(),
                    object_type,
                    id,
                })),
            }
        });
        match routed.flatten() {
            // Unparseable events go thin too: the thin path dead-letters them with their code.
            None => jobs.push(thin(item)),
            Some(Err((id, body))) => {
                counts.associations += 1;
                jobs.push(Job {
                    members: vec![item],
                    action: JobAction::Send { id, body },
                    after: Vec::new(),
                    effects: Vec::new(),
                });
            }
            Some(Ok(key)) => groups.entry(key).or_default().push(item),
        }
    }

    let mut reading = Vec::new();
    for (key, members) in groups {
        counts.objects += 1;
        let Some(map) = mapping.object(&key.object_type) else {
            jobs.extend(members.into_iter().map(thin));
            continue;
        };
        let plan = {
            let events = parse_all(&members);
            let refs: Vec<&Event<'_>> = events.iter().collect();
            enrich::plan(map, &key.id, &refs)
        };
        match plan {
            Plan::Ignore => {
                counts.unmapped += 1;
                skipped(batch_id, &key, "unmapped");
                jobs.push(Job {
                    members,
                    action: JobAction::Nothing,
                    after: Vec::new(),
                    effects: Vec::new(),
                });
            }
            Plan::Delete { privacy: true } => {
                // A privacy deletion drops the snapshot now, whether or not the forward succeeds
                // (it may end as a dead letter): personal data is not kept for it.
                let dropped = crate::records::commit(
                    env,
                    key.portal,
                    &key.object_type,
                    std::slice::from_ref(&delete(&key.id)),
                )
                .await;
                let action = match dropped {
                    Ok(_) => send_grouped(&members, &key.id, &Forward::Deleted { privacy: true }),
                    Err(e) => {
                        counts.failed += 1;
                        Line::warn("record_store_failed")
                            .field("request_id", batch_id)
                            .field("error", e.to_string())
                            .emit();
                        JobAction::Retry {
                            attempt: Attempt::StepFailed {
                                retry_after_secs: None,
                            },
                            code: "record_store_unavailable".into(),
                            detail: "record_store_unavailable".into(),
                        }
                    }
                };
                jobs.push(Job {
                    members,
                    action,
                    after: Vec::new(),
                    effects: Vec::new(),
                });
            }
            Plan::Delete { privacy: false } => {
                let action = send_grouped(&members, &key.id, &Forward::Deleted { privacy: false });
                let after = store_writes(&key, vec![delete(&key.id)]);
                jobs.push(Job {
                    members,
                    action,
                    after,
                    effects: Vec::new(),
                });
            }
            Plan::Read(need) => reading.push(Reading { key, members, need }),
        }
    }
    if reading.is_empty() {
        return jobs;
    }

    let api = match HubSpotApi::from_env(env) {
        Ok(api) => api,
        Err(e) => {
            Line::error("config_invalid")
                .field("key", e.key)
                .field("error", e.message())
                .emit();
            counts.failed += reading.len();
            jobs.extend(reading.into_iter().map(|r| Job {
                members: r.members,
                // Retried with the forwarding backoff, then dead-lettered as `config_invalid`
                // naming the key (`KEY: code`, as core's `config::summary`).
                action: JobAction::Retry {
                    attempt: Attempt::StepFailed {
                        retry_after_secs: None,
                    },
                    code: "config_invalid".into(),
                    detail: format!("{}: {}", e.key, e.kind),
                },
                after: Vec::new(),
                effects: Vec::new(),
            }));
            return jobs;
        }
    };
    // The snapshots first: whether an object has one decides whether its read asks for history.
    let (stored, echoes) = join(
        stored_snapshots(env, &reading),
        join_all(reading.iter().map(|r| echo_guard(kv, r))),
    )
    .await;
    let snapshots: Vec<Option<Record>> = reading
        .iter()
        .map(|r| {
            let key = &r.key;
            let text = stored
                .get(&(key.portal, key.object_type.clone(), key.id.clone()))?
                .snapshot
                .as_deref()?;
            match Record::from_snapshot(text) {
                Ok(record) => Some(record),
                Err(e) => {
                    // Unreadable: diff as if never seen (logged); the commit replaces it.
                    Line::warn(e.code())
                        .field("object_type", key.object_type.as_str())
                        .field("object_id", key.id.as_str())
                        .emit();
                    None
                }
            }
        })
        .collect();
    // Objects whose stored state could not be read are retried below: not read.
    let to_read: Vec<(&str, &str, Vec<String>)> = reading
        .iter()
        .zip(&snapshots)
        .filter(|(r, _)| {
            stored.contains_key(&(r.key.portal, r.key.object_type.clone(), r.key.id.clone()))
        })
        .map(|(r, snapshot)| {
            (
                r.key.object_type.as_str(),
                r.key.id.as_str(),
                r.need.history(snapshot.is_some()),
            )
        })
        .collect();
    // Each read carries the trace of (the first of) the events it serves.
    let traces: HashMap<(String, String), Scope> = reading
        .iter()
        .filter_map(|r| {
            let (_, e) = r.members.first()?;
            let scope = Scope::of_event(&e.request_id, e.traceparent.as_deref());
            Some(((r.key.object_type.clone(), r.key.id.clone()), scope))
        })
        .collect();
    let reads = read_all(mapping, &api, env, &to_read, &traces, batch_id, counts).await;

    for ((r, echo), snapshot) in reading.into_iter().zip(echoes).zip(snapshots) {
        let Reading { key, members, need } = r;
        let Some(map) = mapping.object(&key.object_type) else {
            continue;
        };
        // Without the stored version no change can be named or committed: retry the group.
        let Some(stored) = stored.get(&(key.portal, key.object_type.clone(), key.id.clone()))
        else {
            counts.failed += 1;
            jobs.push(Job {
                members,
                action: JobAction::Retry {
                    attempt: Attempt::StepFailed {
                        retry_after_secs: None,
                    },
                    code: "record_store_unavailable".into(),
                    detail: "record_store_unavailable".into(),
                },
                after: Vec::new(),
                effects: Vec::new(),
            });
            continue;
        };
        let no_history = BTreeMap::new();
        let (current, history) = match reads.get(&(key.object_type.clone(), key.id.clone())) {
            Some(ReadResult::Found(object)) => (
                Current::Found(&object.properties),
                &object.properties_with_history,
            ),
            Some(ReadResult::Failed {
                attempt,
                code,
                detail,
            }) => {
                counts.failed += 1;
                jobs.push(Job {
                    members,
                    action: JobAction::Retry {
                        attempt: *attempt,
                        code: code.clone(),
                        detail: detail.clone(),
                    },
                    after: Vec::new(),
                    effects: Vec::new(),
                });
                continue;
            }
            Some(ReadResult::Missing) => (Current::Missing, &no_history),
            None => {
                counts.failed += 1;
                jobs.push(Job {
                    members,
                    action: JobAction::Retry {
                        attempt: Attempt::StepFailed {
                            retry_after_secs: None,
                        },
                        code: "hubspot_read_incomplete".into(),
                        detail: "hubspot_read_incomplete".into(),
                    },
                    after: Vec::new(),
                    effects: Vec::new(),
                });
                continue;
            }
        };
        // The mapped record now, for the rules (none: not mapped twice).
        let new_record = match current {
            Current::Found(properties) if !rules.is_empty() => map.to_destination(properties).ok(),
            _ => None,
        };
        let decision = match enrich::decide(
            map,
            &key.id,
            &need,
            snapshot.as_ref(),
            current,
            history,
            echo.as_ref(),
        ) {
            Ok(d) => d,
            Err(e) => {
                counts.failed += 1;
                Line::warn("enrich_map_failed")
                    .field("request_id", batch_id)
                    .field("object_type", key.object_type.as_str())
                    .field("object_id", key.id.as_str())
                    .field("reason", e.code())
                    .emit();
                jobs.push(Job {
                    members,
                    action: JobAction::Fail {
                        reason: e.code().to_owned(),
                        detail: e.to_string(),
                    },
                    after: Vec::new(),
                    effects: Vec::new(),
                });
                continue;
            }
        };
        let seen = RuleInput {
            rules,
            old: snapshot.as_ref(),
            new: new_record.as_ref(),
        };
        jobs.push(job_of(
            decision,
            members,
            &key,
            stored.version,
            batch_id,
            counts,
            &seen,
        ));
    }
    jobs
}

fn thin(item: Pending) -> Job {
    Job {
        members: vec![item],
        action: JobAction::Thin,
        after: Vec::new(),
        effects: Vec::new(),
    }
}

fn parse_all(members: &[Pending]) -> Vec<Event<'_>> {
    // Each was parsed when it was routed.
    members
        .iter()
        .filter_map(|(_, m)| Event::parse(&m.event).ok())
        .collect()
}

/// The `webhook-id` and body of an association change.
fn association_job_parts(event: &Event<'_>, item: &Pending) -> (String, String) {
    let association = Association::of(event);
    let object_id = event
        .object_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let sources = [item.1.key.as_str()];
    let id = outbound::group_id(&sources);
    let body = outbound::record_event_body(&RecordEvent {
        id: &id,
        source_ids: &sources,
        latest: event,
        received_at_ms: item.1.received_at,
        object_id: &object_id,
        what: RecordEventKind::Association(&association),
    });
    (id, body)
}

/// The forward of a deletion: `webhook-id` from all the members' keys (the deletion events
/// are what it is), the latest event (by `occurredAt`) as `hubspot`.
fn send_grouped(members: &[Pending], object_id: &str, forward: &Forward) -> JobAction {
    let keys: Vec<&str> = members.iter().map(|(_, m)| m.key.as_str()).collect();
    send(members, object_id, forward, outbound::group_id(&keys))
}

/// The forward of `forward` for a group, under `id`, with the latest event (by `occurredAt`)
/// as `hubspot`.
fn send(members: &[Pending], object_id: &str, forward: &Forward, id: String) -> JobAction {
    let events = parse_all(members);
    let mut refs: Vec<&Event<'_>> = events.iter().collect();
    enrich::sort_events(&mut refs);
    let Some(latest) = refs.last() else {
        return JobAction::Nothing;
    };
    let keys: Vec<&str> = members.iter().map(|(_, m)| m.key.as_str()).collect();
    let received_at_ms = members
        .iter()
        .map(|(_, m)| m.received_at)
        .max()
        .unwrap_or(0);
    let body = outbound::record_event_body(&RecordEvent {
        id: &id,
        source_ids: &keys,
        latest,
        received_at_ms,
        object_id,
        what: RecordEventKind::Record(forward),
    });
    JobAction::Send { id, body }
}

/// The job of a decided group. `base_version` is the stored version the decision was made
/// against: the commit expects it, and it names the change
/// ([`hubspot_edge_core::records::change_id`]), so a retry is the same `webhook-id`.
fn job_of(
    decision: EnrichDecision,
    members: Vec<Pending>,
    key: &ObjectKey,
    base_version: u64,
    batch_id: &str,
    counts: &mut Counts,
    seen: &RuleInput<'_>,
) -> Job {
    let put = |snapshot: String| Commit {
        id: key.id.clone(),
        expect: Some(base_version),
        write: Write::Put(snapshot),
    };
    let commits = match decision.snapshot {
        SnapshotWrite::Keep => Vec::new(),
        SnapshotWrite::Put(snapshot) => vec![put(snapshot)],
        SnapshotWrite::Delete => vec![Commit {
            expect: Some(base_version),
            ..delete(&key.id)
        }],
        SnapshotWrite::Merge {
            snapshot,
            merged_ids,
        } => std::iter::once(put(snapshot))
            .chain(merged_ids.iter().map(|id| delete(id)))
            .collect(),
    };
    let after = store_writes(key, commits);
    let mut effects = Vec::new();
    let action = match (&decision.forward, decision.skip) {
        (Some(forward), _) => {
            let id = change_id(
                key.portal,
                &key.object_type,
                &key.id,
                base_version,
                forward.event_type(),
                &forward.content(),
            );
            let action = send(&members, &key.id, forward, id);
            if let JobAction::Send { id, body } = &action {
                effects = rule_effects(seen, forward, &members, key, id, body, batch_id);
            }
            action
        }
        (None, skip) => {
            let reason = skip.map_or("none", |s| s.code());
            match skip {
                Some(enrich::Skip::Missing) => counts.missing += 1,
                Some(enrich::Skip::Echo) => counts.echo += 1,
                Some(enrich::Skip::Unchanged) | None => counts.unchanged += 1,
            }
            skipped(batch_id, key, reason);
            JobAction::Nothing
        }
    };
    Job {
        members,
        action,
        after,
        effects,
    }
}

/// What the rules see of a decided object besides its events: the records before and now.
struct RuleInput<'a> {
    rules: &'a Rules,
    /// The snapshot the change was diffed against (`None`: none, or a first change).
    old: Option<&'a Record>,
    /// The mapped record now.
    new: Option<&'a Record>,
}

/// The rules' effects for a forwarded change (core's [`rules::evaluate`] and [`rules::plan`]),
/// with `id` the change's `webhook-id` and `body` what `default` gets. A first change without
/// a snapshot takes its `old` values from the forwarded changes (HubSpot's history); a
/// creation or restore has none. Only changes this integration did not make get here: the
/// echo guard and the snapshot of our own writes skip them before.
fn rule_effects(
    seen: &RuleInput<'_>,
    forward: &Forward,
    members: &[Pending],
    key: &ObjectKey,
    id: &str,
    body: &str,
    batch_id: &str,
) -> Vec<(String, rules::Queued)> {
    if seen.rules.is_empty() {
        return Vec::new();
    }
    let from_history;
    let old = match (seen.old, forward, seen.new) {
        (Some(old), ..) => Some(old),
        (None, Forward::Changed(changes), Some(new)) => {
            let mut old = new.clone();
            for change in changes {
                match &change.old {
                    Some(value) => old.insert(change.field.clone(), value.clone()),
                    // Unknown: counts as "no value" (README "Rules").
                    None => old.remove(&change.field),
                };
            }
            from_history = old;
            Some(&from_history)
        }
        _ => None,
    };
    let events = parse_all(members);
    let refs: Vec<&Event<'_>> = events.iter().collect();
    let ctx = rules::EventContext {
        events: &refs,
        object_type: &key.object_type,
        object_id: &key.id,
        old,
        new: seen.new,
        origin: rules::Origin::External,
        now_ms: worker::Date::now().as_millis(),
    };
    let effects = rules::evaluate(seen.rules, &ctx);
    for effect in &effects {
        Line::info("rule_matched")
            .field("request_id", batch_id)
            .field("rule", effect.rule())
            .field("object_type", key.object_type.as_str())
            .field("object_id", key.id.as_str())
            .emit();
    }
    rules::plan(effects, key.portal, id, body, &ctx)
}

/// One line per object for which nothing is forwarded (ids and a code only).
fn skipped(batch_id: &str, key: &ObjectKey, reason: &str) {
    Line::info("enrich_skipped")
        .field("request_id", batch_id)
        .field("object_type", key.object_type.as_str())
        .field("object_id", key.id.as_str())
        .field("reason", reason)
        .emit();
}

/// The stored state of every object read, by (portal, object type, id): one record store call
/// per portal and object type. An object type whose store cannot be reached is absent (its
/// groups are retried).
async fn stored_snapshots(
    env: &Env,
    reading: &[Reading],
) -> HashMap<(u64, String, String), Stored> {
    let mut by_store: BTreeMap<(u64, &str), Vec<String>> = BTreeMap::new();
    for r in reading {
        by_store
            .entry((r.key.portal, r.key.object_type.as_str()))
            .or_default()
            .push(r.key.id.clone());
    }
    let answers = join_all(
        by_store
            .into_iter()
            .map(|((portal, object_type), ids)| async move {
                (
                    portal,
                    object_type,
                    crate::records::get(env, portal, object_type, ids).await,
                )
            }),
    )
    .await;
    let mut out = HashMap::new();
    for (portal, object_type, answer) in answers {
        match answer {
            Ok(found) => {
                for (id, stored) in found {
                    out.insert((portal, object_type.to_owned(), id), stored);
                }
            }
            Err(e) => Line::warn("record_store_failed")
                .field("object_type", object_type)
                .field("error", e.to_string())
                .emit(),
        }
    }
    out
}

/// The echo guard of a changed object, if any (KV: a short-lived mark, not state that must be
/// exact). One that cannot be read counts as none.
async fn echo_guard(kv: &KvStore, r: &Reading) -> Option<EchoGuard> {
    if !matches!(r.need, Need::Change { .. }) {
        return None;
    }
    let key = store::echo_key(&r.key.object_type, &r.key.id);
    let text = store::get_text(kv, &key).await.ok().flatten()?;
    serde_json::from_str(&text).ok()
}

enum ReadResult {
    Found(SimpleObject),
    Missing,
    Failed {
        attempt: Attempt,
        /// The dead-letter reason once retries are exhausted.
        code: String,
        detail: String,
    },
}

/// Reads every object of `objects` (`(object type, id, history)`, history from core's
/// [`Need::history`]) as core's [`enrich::read_plan`] groups them: up to 100 per request, up to
/// 50 when asking for history, the mapped properties only. At most [`MAX_CONCURRENT_READS`] in
/// flight (the invocation's connection limit; the executor's gate paces them). A history read
/// HubSpot refuses is read again without history when core says so ([`ReadChunk::fallback`]):
/// those objects' first changes go out with `old` unknown.
async fn read_all(
    mapping: &Mapping,
    api: &HubSpotApi,
    env: &Env,
    objects: &[(&str, &str, Vec<String>)],
    traces: &HashMap<(String, String), Scope>,
    batch_id: &str,
    counts: &mut Counts,
) -> HashMap<(String, String), ReadResult> {
    let mut by_type: BTreeMap<&str, Vec<(&str, Vec<String>)>> = BTreeMap::new();
    for (object_type, id, history) in objects {
        by_type
            .entry(object_type)
            .or_default()
            .push((id, history.clone()));
    }
    let mut results = HashMap::new();
    let mut calls: Vec<(&str, ReadChunk)> = Vec::new();
    for (object_type, list) in by_type {
        if mapping.object(object_type).is_some() {
            calls.extend(
                enrich::read_plan(list)
                    .into_iter()
                    .map(|chunk| (object_type, chunk)),
            );
        }
    }
    // Two waves at most: the planned reads, then the fallbacks of refused history reads.
    while !calls.is_empty() {
        counts.reads += calls.len();
        counts.history_reads += calls.iter().filter(|(_, c)| !c.history.is_empty()).count();
        let scopes: Vec<Scope> = calls
            .iter()
            .map(|(object_type, chunk)| {
                chunk
                    .ids
                    .iter()
                    .find_map(|id| traces.get(&((*object_type).to_owned(), id.clone())))
                    .cloned()
                    .unwrap_or_else(|| Scope::new(batch_id, None))
            })
            .collect();
        let answers: Vec<_> = stream::iter(calls.iter().zip(&scopes).map(
            |((object_type, chunk), scope)| {
                crate::log::scoped(
                    scope.clone(),
                    read_chunk(mapping, api, env, object_type, chunk),
                )
            },
        ))
        .buffered(MAX_CONCURRENT_READS)
        .collect()
        .await;
        let mut fallbacks = Vec::new();
        for (((object_type, chunk), answer), scope) in calls.into_iter().zip(answers).zip(scopes) {
            let mut line = Line::info("enrich_read").field("request_id", batch_id);
            if let Some(trace_id) = scope.trace_id() {
                // The trace the read carried (its first event's).
                line = line.field("trace_id", trace_id);
            }
            let line = line
                .field("object_type", object_type)
                .field("ids", chunk.ids.len())
                .field("history", chunk.history.len());
            match answer {
                Ok(response) => {
                    line.field("found", response.results.len())
                        .field("errors", response.errors.len())
                        .emit();
                    // A 207's errors say which ids are gone (not found) and which failed for
                    // another reason: only the former are skipped; the others are retried (core
                    // decides).
                    for (id, outcome) in enrich::classify_read(&chunk.ids, response) {
                        let result = match outcome {
                            ReadOutcome::Found(object) => ReadResult::Found(object),
                            ReadOutcome::Missing => ReadResult::Missing,
                            ReadOutcome::Failed { code } => ReadResult::Failed {
                                attempt: Attempt::StepFailed {
                                    retry_after_secs: None,
                                },
                                detail: code.clone(),
                                code,
                            },
                        };
                        results.insert((object_type.to_owned(), id), result);
                    }
                }
                Err(e) => {
                    let (attempt, code) = failure(&e);
                    line.field("error", code.as_str()).emit();
                    let fallback = match &e {
                        CallError::GaveUp { reason, .. } => chunk.fallback(*reason),
                        _ => None,
                    };
                    if let Some(plain) = fallback {
                        counts.history_fallbacks += 1;
                        fallbacks.push((object_type, plain));
                        continue;
                    }
                    for id in chunk.ids {
                        results.insert(
                            (object_type.to_owned(), id),
                            ReadResult::Failed {
                                attempt,
                                detail: format!("hubspot_read_failed: {code}"),
                                code: code.clone(),
                            },
                        );
                    }
                }
            }
        }
        calls = fallbacks;
    }
    results
}

/// One planned batch read.
async fn read_chunk(
    mapping: &Mapping,
    api: &HubSpotApi,
    env: &Env,
    object_type: &str,
    chunk: &ReadChunk,
) -> Result<BatchResponse, CallError> {
    let properties = mapping
        .object(object_type)
        .map(|map| map.properties().to_vec())
        .unwrap_or_default();
    let options = BatchReadOptions {
        properties,
        properties_with_history: chunk.history.clone(),
        ..BatchReadOptions::default()
    };
    // The plan keeps each chunk within one request's limit: one request.
    let request = api
        .api
        .batch_read(&api_object_type(object_type), &chunk.ids, &options)
        .into_iter()
        .next()
        .ok_or_else(|| CallError::Build("empty read".into()))?;
    execute::<BatchResponse>(api, env, RequestKind::Read, &request).await
}

/// A failed read as a forwarding attempt (for the retry policy) and a stable code.
fn failure(e: &CallError) -> (Attempt, String) {
    match e {
        CallError::Throttled { wait_ms } => (
            Attempt::StepFailed {
                retry_after_secs: Some(wait_ms.div_ceil(1000)),
            },
            "rate_limited".into(),
        ),
        CallError::GaveUp { reason, .. } => (
            Attempt::StepFailed {
                retry_after_secs: None,
            },
            reason.code().to_owned(),
        ),
        CallError::Build(_) => (
            Attempt::StepFailed {
                retry_after_secs: None,
            },
            "config_invalid".into(),
        ),
        CallError::OAuthRefresh(_) => (
            Attempt::StepFailed {
                retry_after_secs: None,
            },
            "hubspot_oauth_refresh_failed".into(),
        ),
        CallError::Gate(_) => (
            Attempt::StepFailed {
                retry_after_secs: None,
            },
            "hubspot_gate_unavailable".into(),
        ),
    }
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
