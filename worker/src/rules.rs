//! Rules in the forwarding consumer (README "Rules"): the I/O around core's
//! [`hubspot_edge_core::rules`].
//!
//! - Enrichment evaluates the rules on each object it forwards (created, restored, changed,
//!   merged) with the mapped record before and after; the effects become queue messages
//!   (core's [`EffectMessage`]) sent once the change itself was delivered, so a change that is
//!   retried does not act twice, and each effect gets the forwarding pipeline's guarantees:
//!   its own dedupe key, retries with the `FORWARD_*` backoff, a dead letter naming the rule
//!   and destination (re-drivable), nothing lost.
//! - This module carries out one effect message: a `send` is a Standard Webhooks POST to the
//!   named destination (its own URL and secret); an `update` resolves its target (the v4
//!   associations read for an associated type), reads the properties to write and writes only
//!   those that differ (core's [`to_write`]), behind enrichment's echo guard, so HubSpot's
//!   webhooks for the write are recognised as ours and never run a rule again.
//!
//! Logs carry rule names, ids and codes: never a property value.

use std::collections::BTreeMap;

use hubspot_edge_core::api::{
    AssociationResult, BatchReadOptions, BatchResponse, RequestKind, SimpleObject,
};
use hubspot_edge_core::queue::consume::JobRun;
use hubspot_edge_core::rules::{EffectMessage, Queued, RuleUpdate, UpdateFailure, UpdateNeed};
use worker::kv::KvStore;
use worker::{Env, Queue};

use crate::config::{Forward, HubSpotApi};
use crate::echo::{drop_guard, guard_write};
use crate::enrich::api_object_type;
use crate::hubspot::{execute, CallError};
use crate::jobs::{Job, JobAction, Pending};
use crate::log::Line;
use crate::queue::{event_message_json, MAX_MESSAGE_BYTES};

/// Carries out one effect message (core maps each outcome to the job's run).
pub(crate) async fn run(config: &Forward, env: &Env, effect: &Queued) -> JobRun {
    match effect {
        Queued::Send {
            destination,
            id,
            body,
            ..
        } => match config.destinations.get(destination) {
            Some(to) => {
                let (attempt, location) =
                    crate::forward::send_signed_to(to, config.timeout_ms, id, body).await;
                effect.send_run(Some((attempt, location.as_deref())))
            }
            None => effect.send_run(None),
        },
        Queued::Update {
            target, properties, ..
        } => {
            let plan = RuleUpdate::new(target, properties.clone(), effect.describe());
            update(env, plan).await
        }
        Queued::CompleteBlocked {
            portal,
            object_type,
            object_id,
            outputs,
            ..
        } => {
            let outputs: serde_json::Map<String, serde_json::Value> = outputs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let done =
                crate::actions::complete_for_object(env, *portal, object_type, object_id, &outputs)
                    .await;
            match done {
                Ok(done) => effect.completed_run(done.completed, done.skipped, &done.refused),
                Err((code, retryable)) => effect.step_failed_run(code, retryable),
            }
        }
    }
}

/// Drives core's [`RuleUpdate`]: the associations read, the properties read, the echo guard
/// and the batch update.
async fn update(env: &Env, mut plan: RuleUpdate) -> JobRun {
    let api = match HubSpotApi::from_env(env) {
        Ok(api) => api,
        Err(e) => return plan.config_invalid(e.key, e.kind),
    };
    let api = &api;
    let mut guards = Vec::new();
    loop {
        match plan.next() {
            UpdateNeed::Associations {
                from_type,
                from_id,
                to_type,
            } => {
                let request = api.api.batch_read_associations_after(
                    &api_object_type(from_type),
                    &api_object_type(to_type),
                    &[(from_id.to_owned(), None)],
                );
                match execute::<BatchResponse<AssociationResult>>(
                    api,
                    env,
                    RequestKind::Read,
                    &request,
                )
                .await
                {
                    Ok(answer) => plan.associated(
                        answer
                            .results
                            .into_iter()
                            .flat_map(|r| r.to)
                            .map(|t| t.to_object_id)
                            .collect(),
                    ),
                    Err(e) => failed(&mut plan, &e, "associations"),
                }
            }
            UpdateNeed::Read {
                object_type,
                ids,
                properties,
            } => {
                let options = BatchReadOptions {
                    properties,
                    ..BatchReadOptions::default()
                };
                let read = api
                    .api
                    .batch_read(&api_object_type(object_type), ids, &options);
                let mut current: BTreeMap<String, BTreeMap<String, Option<String>>> =
                    BTreeMap::new();
                let mut error = None;
                // At most one request: the targets are at most MAX_BATCH_INPUTS.
                for request in &read {
                    match execute::<BatchResponse<SimpleObject>>(
                        api,
                        env,
                        RequestKind::Read,
                        request,
                    )
                    .await
                    {
                        Ok(answer) => {
                            for object in answer.results {
                                current.insert(object.id, object.properties);
                            }
                        }
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
                match error {
                    Some(e) => failed(&mut plan, &e, "read"),
                    None => plan.current(&current),
                }
            }
            UpdateNeed::Write {
                object_type,
                inputs,
            } => {
                // The echo guard first, so that HubSpot's webhooks for the write are
                // recognised as ours.
                let mut invalid = None;
                for input in inputs {
                    match guard_write(env, object_type, &input.id, &input.properties).await {
                        Ok(Some(key)) => guards.push(key),
                        Ok(None) => {}
                        Err(e) => {
                            invalid = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = invalid {
                    return plan.config_invalid(e.key, e.kind);
                }
                let requests = api
                    .api
                    .batch_update(&api_object_type(object_type), None, inputs);
                let objects = inputs.len();
                let mut error = None;
                for request in &requests {
                    if let Err(e) = execute::<BatchResponse<SimpleObject>>(
                        api,
                        env,
                        RequestKind::Write,
                        request,
                    )
                    .await
                    {
                        error = Some(e);
                        break;
                    }
                }
                match error {
                    Some(e) => {
                        for key in &guards {
                            drop_guard(env, key).await;
                        }
                        failed(&mut plan, &e, "update");
                    }
                    None => {
                        Line::info("rule_update_written")
                            .field("effect", plan.what())
                            .field("objects", objects)
                            .emit();
                        plan.written();
                    }
                }
            }
            UpdateNeed::Finished(run) => return run.clone(),
        }
    }
}

/// A failed HubSpot call of an update, logged and classified by core.
fn failed(plan: &mut RuleUpdate, e: &CallError, step: &str) {
    let failure = UpdateFailure::from(e);
    Line::warn("rule_update_failed")
        .field("effect", plan.what())
        .field("step", step)
        .field("error", failure.code())
        .emit();
    plan.failed(step, failure);
}

/// Separates the effect messages of a batch (jobs of their own) from its events.
pub(crate) fn split_effects(items: Vec<Pending>) -> (Vec<Job>, Vec<Pending>) {
    let mut jobs = Vec::new();
    let mut events = Vec::with_capacity(items.len());
    for item in items {
        match EffectMessage::parse(item.1.event.get()) {
            Some(effect) => jobs.push(Job::of(item, JobAction::Effect(effect))),
            None => events.push(item),
        }
    }
    (jobs, events)
}

/// Puts a delivered change's effects on the `EVENTS` queue, each as its own envelope (an
/// effect too large for a queue message, say a forward of a very large record, is carried by
/// reference as the ingress does with large events).
///
/// # Errors
/// A KV write or a queue send failed: the caller retries the change.
pub(crate) async fn queue_effects(
    kv: &KvStore,
    queue: &Queue,
    effects: Vec<(String, Queued)>,
) -> worker::Result<()> {
    if effects.is_empty() {
        return Ok(());
    }
    let now = worker::Date::now().as_millis();
    let mut messages = Vec::with_capacity(effects.len());
    for (key, effect) in effects {
        let event = EffectMessage::json(&effect);
        let mut text = event_message_json(&key, 1, now, "rules", None, &event, None);
        if text.len() > MAX_MESSAGE_BYTES {
            let event_ref = hubspot_edge_core::ingress::event_body_key(&key);
            crate::store::put_event_body(kv, &event_ref, event).await?;
            text = event_message_json(&key, 1, now, "rules", None, "null", Some(&event_ref));
        }
        messages.push(text);
    }
    crate::queue::send_all(queue, messages).await
}
