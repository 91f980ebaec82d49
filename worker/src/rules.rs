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
    AssociationResult, BatchReadOptions, BatchResponse, GiveUpReason, RequestKind, SimpleObject,
    UpdateInput, MAX_BATCH_INPUTS,
};
use hubspot_edge_core::delivery::Attempt;
use hubspot_edge_core::rules::{to_write, EffectMessage, Queued, Target};
use worker::kv::KvStore;
use worker::{Env, Queue};

use crate::config::{Forward, HubSpotApi};
use crate::echo::{drop_guard, guard_write};
use crate::enrich::api_object_type;
use crate::hubspot::{execute, CallError};
use crate::jobs::{Job, JobAction, Pending};
use crate::log::Line;
use crate::queue::{event_message_json, MAX_MESSAGE_BYTES};

/// How an effect ended.
pub(crate) enum Outcome {
    /// A destination answered (or did not): the forwarding retry policy decides.
    Sent(Attempt, String),
    /// A step failed in a way a later attempt may fix: retried, then dead-lettered with `code`.
    Retry {
        attempt: Attempt,
        code: String,
        detail: String,
    },
    /// Nothing a retry can fix: dead-lettered now.
    Fail { reason: String, detail: String },
    /// Done.
    Done(String),
}

/// Carries out one effect message.
pub(crate) async fn run(config: &Forward, env: &Env, effect: &Queued) -> Outcome {
    let what = effect.describe();
    match effect {
        Queued::Send {
            destination,
            id,
            body,
            ..
        } => {
            let Some(to) = config.destinations.get(destination) else {
                // DESTINATIONS changed since the effect was queued: kept as a dead letter,
                // re-drivable once the destination exists again.
                return Outcome::Fail {
                    reason: "destination_unknown".into(),
                    detail: what,
                };
            };
            let (attempt, location) =
                crate::forward::send_signed_to(to, config.timeout_ms, id, body).await;
            let mut detail = format!("{what} {}", crate::forward::describe(attempt));
            if let Some(l) = location {
                detail.push_str(&format!(" location={l}"));
            }
            Outcome::Sent(attempt, detail)
        }
        Queued::Update {
            target, properties, ..
        } => update(env, target, properties, &what).await,
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
            match crate::actions::complete_for_object(
                env,
                *portal,
                object_type,
                object_id,
                &outputs,
            )
            .await
            {
                Ok(done) if done.refused.is_empty() => Outcome::Done(format!(
                    "{what} completed={} skipped={}",
                    done.completed, done.skipped
                )),
                // Kept as a dead letter naming each execution and why (codes, not values);
                // a re-drive completes what is still blocked once ACTIONS or the rule is fixed.
                Ok(done) => Outcome::Fail {
                    reason: "complete_action_outputs_invalid".into(),
                    detail: format!(
                        "{what} completed={} refused={}",
                        done.completed,
                        done.refused
                            .iter()
                            .map(|(id, code)| format!("{id}:{code}"))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                },
                Err((code, true)) => Outcome::Retry {
                    attempt: Attempt::StepFailed {
                        retry_after_secs: None,
                    },
                    code: code.into(),
                    detail: what,
                },
                Err((code, false)) => Outcome::Fail {
                    reason: code.into(),
                    detail: what,
                },
            }
        }
    }
}

/// The objects an update writes: the object itself, or the first page of its associations to
/// the target type (at most [`MAX_BATCH_INPUTS`], one batch update).
async fn targets(
    api: &HubSpotApi,
    env: &Env,
    target: &Target,
) -> Result<(String, Vec<String>), CallError> {
    match target {
        Target::Object {
            object_type,
            object_id,
        } => Ok((object_type.clone(), vec![object_id.clone()])),
        Target::Associated {
            from_type,
            from_id,
            to_type,
        } => {
            let request = api.api.batch_read_associations_after(
                &api_object_type(from_type),
                &api_object_type(to_type),
                &[(from_id.clone(), None)],
            );
            let answer: BatchResponse<AssociationResult> =
                execute(api, env, RequestKind::Read, &request).await?;
            let mut ids: Vec<String> = answer
                .results
                .into_iter()
                .flat_map(|r| r.to)
                .map(|t| t.to_object_id)
                .collect();
            ids.sort();
            ids.dedup();
            ids.truncate(MAX_BATCH_INPUTS);
            Ok((to_type.clone(), ids))
        }
    }
}

async fn update(
    env: &Env,
    target: &Target,
    properties: &BTreeMap<String, String>,
    what: &str,
) -> Outcome {
    let api = match HubSpotApi::from_env(env) {
        Ok(api) => api,
        Err(e) => {
            return Outcome::Retry {
                attempt: Attempt::StepFailed {
                    retry_after_secs: None,
                },
                code: "config_invalid".into(),
                detail: format!("{what} {}: {}", e.key, e.kind),
            }
        }
    };
    let (object_type, ids) = match targets(&api, env, target).await {
        Ok(found) => found,
        Err(e) => return failed(&e, what, "associations"),
    };
    if ids.is_empty() {
        return Outcome::Done(format!("{what} targets=0"));
    }
    let api_type = api_object_type(&object_type);
    // Diff-only: read the properties to write, write what differs.
    let options = BatchReadOptions {
        properties: properties.keys().cloned().collect(),
        ..BatchReadOptions::default()
    };
    let read = api.api.batch_read(&api_type, &ids, &options);
    let mut current: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
    // At most one request: `ids` holds at most MAX_BATCH_INPUTS.
    for request in &read {
        match execute::<BatchResponse<SimpleObject>>(&api, env, RequestKind::Read, request).await {
            Ok(answer) => {
                for object in answer.results {
                    current.insert(object.id, object.properties);
                }
            }
            Err(e) => return failed(&e, what, "read"),
        }
    }
    let inputs: Vec<UpdateInput> = ids
        .iter()
        // An object the read did not return is gone: nothing to write.
        .filter_map(|id| Some((id, current.get(id)?)))
        .map(|(id, now)| UpdateInput {
            id: id.clone(),
            properties: to_write(properties, now),
            object_write_trace_id: None,
        })
        .filter(|input| !input.properties.is_empty())
        .collect();
    if inputs.is_empty() {
        return Outcome::Done(format!("{what} targets={} written=0", ids.len()));
    }
    // The echo guard first, so that HubSpot's webhooks for the write are recognised as ours.
    let mut guards = Vec::with_capacity(inputs.len());
    for input in &inputs {
        match guard_write(env, &object_type, &input.id, &input.properties).await {
            Ok(Some(key)) => guards.push(key),
            Ok(None) => {}
            Err(e) => {
                return Outcome::Retry {
                    attempt: Attempt::StepFailed {
                        retry_after_secs: None,
                    },
                    code: "config_invalid".into(),
                    detail: format!("{what} {}: {}", e.key, e.kind),
                }
            }
        }
    }
    let requests = api.api.batch_update(&api_type, None, &inputs);
    for request in &requests {
        if let Err(e) =
            execute::<BatchResponse<SimpleObject>>(&api, env, RequestKind::Write, request).await
        {
            for key in &guards {
                drop_guard(env, key).await;
            }
            return failed(&e, what, "update");
        }
    }
    Line::info("rule_update_written")
        .field("effect", what)
        .field("objects", inputs.len())
        .emit();
    Outcome::Done(format!(
        "{what} targets={} written={}",
        ids.len(),
        inputs.len()
    ))
}

/// A failed HubSpot call of an update: refusals a retry cannot fix (400, 403, 404, 409, other
/// 4xx, an unreadable answer) are dead-lettered now; the rest is retried with the forwarding
/// backoff.
fn failed(e: &CallError, what: &str, step: &str) -> Outcome {
    let code = match e {
        CallError::GaveUp { reason, .. } => reason.code().to_owned(),
        CallError::Throttled { .. } => "rate_limited".into(),
        CallError::Build(_) => "config_invalid".into(),
        CallError::OAuthRefresh(_) => "hubspot_oauth_refresh_failed".into(),
        CallError::Gate(_) => "hubspot_gate_unavailable".into(),
    };
    let detail = format!("{what} step={step} error={code}");
    Line::warn("rule_update_failed")
        .field("effect", what)
        .field("step", step)
        .field("error", code.as_str())
        .emit();
    match e {
        CallError::GaveUp {
            reason:
                GiveUpReason::Validation
                | GiveUpReason::Forbidden
                | GiveUpReason::NotFound
                | GiveUpReason::Conflict
                | GiveUpReason::Rejected
                | GiveUpReason::Decode,
            ..
        } => Outcome::Fail {
            reason: format!("rule_update_{code}"),
            detail,
        },
        CallError::Throttled { wait_ms } => Outcome::Retry {
            attempt: Attempt::StepFailed {
                retry_after_secs: Some(wait_ms.div_ceil(1000)),
            },
            code: format!("rule_update_{code}"),
            detail,
        },
        _ => Outcome::Retry {
            attempt: Attempt::StepFailed {
                retry_after_secs: None,
            },
            code: format!("rule_update_{code}"),
            detail,
        },
    }
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
