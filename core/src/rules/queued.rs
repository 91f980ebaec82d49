//! Effects as queue messages: every effect of [`super::evaluate`] travels on the `EVENTS`
//! queue as its own message, so a forward to a named destination, a HubSpot update or a
//! completion gets the forwarding pipeline's guarantees (dedupe by key, retries with backoff,
//! a dead letter naming the rule and destination, re-drive).
//!
//! The message is an ordinary event envelope ([`crate::queue::EventMessage`]) whose `event` is
//! an [`EffectMessage`]: `{"source": "rules", "effect": "send" | "update" | "complete_blocked",
//! "rule", …}`. An envelope whose `event` is anything else is a HubSpot event, as before: the
//! format is backward compatible, and a `send` without `destination` goes to `default`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{emit_body, Effect, EventContext, Target, DEFAULT_DESTINATION};
use crate::delivery::Attempt;
use crate::id::PortalId;
use crate::queue::consume::JobRun;

/// The `source` of an [`EffectMessage`].
pub const EFFECT_SOURCE: &str = "rules";

/// One effect on its way, as the `event` of a queue envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Read through a flat struct (crate::wire): no buffering `ContentDeserializer`.
#[serde(try_from = "crate::wire::EffectMessageWire")]
pub struct EffectMessage {
    /// Always [`EFFECT_SOURCE`].
    pub source: String,
    /// The effect.
    #[serde(flatten)]
    pub effect: Queued,
}

/// An effect ready to be carried out by the consumer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum Queued {
    /// POST `body` to `destination` with `webhook-id` `id`, Standard Webhooks-signed with that
    /// destination's secret.
    Send {
        /// The rule.
        rule: String,
        /// The destination's name (absent: `default`).
        #[serde(default = "default_destination")]
        destination: String,
        /// The `webhook-id`: the change's id for a forward, so that the destination sees the
        /// same id as `default` does for the same change.
        id: String,
        /// The JSON body.
        body: String,
    },
    /// Write `properties` to `target` in `portal`.
    Update {
        /// The rule.
        rule: String,
        /// The HubSpot account.
        portal: PortalId,
        /// The object(s).
        target: Target,
        /// Property → value.
        properties: BTreeMap<String, String>,
    },
    /// Complete the executions blocked for the object.
    CompleteBlocked {
        /// The rule.
        rule: String,
        /// The HubSpot account.
        portal: PortalId,
        /// Events' vocabulary.
        object_type: String,
        /// The object's id.
        object_id: String,
        /// Output field → value.
        outputs: BTreeMap<String, Value>,
    },
}

fn default_destination() -> String {
    DEFAULT_DESTINATION.to_owned()
}

impl Queued {
    /// The rule that asked for it.
    pub fn rule(&self) -> &str {
        match self {
            Self::Send { rule, .. }
            | Self::Update { rule, .. }
            | Self::CompleteBlocked { rule, .. } => rule,
        }
    }

    /// A short description for logs and dead letters: `rule=… effect=send destination=…`
    /// (names and ids only, never a value).
    pub fn describe(&self) -> String {
        match self {
            Self::Send {
                rule, destination, ..
            } => format!("rule={rule} effect=send destination={destination}"),
            Self::Update { rule, target, .. } => {
                let (t, id) = match target {
                    Target::Object {
                        object_type,
                        object_id,
                    } => (object_type.as_str(), object_id.as_str()),
                    Target::Associated {
                        to_type, from_id, ..
                    } => (to_type.as_str(), from_id.as_str()),
                };
                format!("rule={rule} effect=update object_type={t} of={id}")
            }
            Self::CompleteBlocked {
                rule, object_id, ..
            } => format!("rule={rule} effect=complete_blocked object_id={object_id}"),
        }
    }
}

impl Queued {
    /// What a `send` came to: `None` when its destination is no longer configured (kept as a
    /// dead letter `destination_unknown`, re-drivable once it exists again), else the attempt
    /// and the `Location` of a 3xx answer.
    pub fn send_run(&self, sent: Option<(Attempt, Option<&str>)>) -> JobRun {
        let what = self.describe();
        match sent {
            None => JobRun::Refused {
                reason: "destination_unknown".into(),
                detail: what,
            },
            Some((attempt, location)) => JobRun::sent(attempt, Some(&what), location),
        }
    }

    /// What a `complete_blocked` came to, once the blocked executions were looked up: done
    /// with the counts when no execution refused the rule's outputs, else a dead letter
    /// `complete_action_outputs_invalid` naming each refused `callbackId` and its code (codes,
    /// never values), which a re-drive completes once `ACTIONS` or the rule is fixed.
    pub fn completed_run(
        &self,
        completed: usize,
        skipped: usize,
        refused: &[(String, &str)],
    ) -> JobRun {
        let what = self.describe();
        if refused.is_empty() {
            return JobRun::Done {
                detail: format!("{what} completed={completed} skipped={skipped}"),
            };
        }
        let mut detail = format!("{what} completed={completed} refused=");
        for (i, (id, code)) in refused.iter().enumerate() {
            if i > 0 {
                detail.push(',');
            }
            detail.push_str(id);
            detail.push(':');
            detail.push_str(code);
        }
        JobRun::Refused {
            reason: "complete_action_outputs_invalid".into(),
            detail,
        }
    }

    /// A step of this effect could not be carried out (`code`): retried like a failed forward
    /// when `retryable`, else dead-lettered now.
    pub fn step_failed_run(&self, code: &str, retryable: bool) -> JobRun {
        let detail = self.describe();
        if retryable {
            JobRun::Failed {
                attempt: Attempt::StepFailed {
                    retry_after_secs: None,
                },
                code: code.into(),
                detail,
            }
        } else {
            JobRun::Refused {
                reason: code.into(),
                detail,
            }
        }
    }
}

impl EffectMessage {
    /// The effect a queue envelope's `event` carries, or `None` when it is a HubSpot event.
    pub fn parse(event_json: &str) -> Option<Queued> {
        // A cheap test first: HubSpot events never carry `"source":"rules"`… but they could
        // carry a `source` key some day, so the whole shape is checked.
        if !event_json.contains(EFFECT_SOURCE) {
            return None;
        }
        serde_json::from_str::<Self>(event_json)
            .ok()
            .filter(|m| m.source == EFFECT_SOURCE)
            .map(|m| m.effect)
    }

    /// The JSON of the envelope's `event` for `effect`.
    pub fn json(effect: &Queued) -> String {
        // Strings, numbers and maps of them always serialise.
        #[allow(clippy::expect_used)]
        serde_json::to_string(&Self {
            source: EFFECT_SOURCE.to_owned(),
            effect: effect.clone(),
        })
        .expect("effect serialises")
    }
}

/// The queue messages of `effects` for one change: `(key, effect)`, the key the dedupe key of
/// the message (unique per change, rule and effect, the same when the same change is processed
/// again). `change_id` is the change's `webhook-id`, `forward_body` what `default` got for it.
pub fn plan(
    effects: Vec<Effect>,
    portal: PortalId,
    change_id: &str,
    forward_body: &str,
    ctx: &EventContext<'_>,
) -> Vec<(String, Queued)> {
    effects
        .into_iter()
        .enumerate()
        .map(|(i, effect)| {
            let key = format!("{change_id}.r{i}");
            let queued = match effect {
                Effect::Forward { rule, destination } => Queued::Send {
                    rule,
                    destination,
                    id: change_id.to_owned(),
                    body: forward_body.to_owned(),
                },
                Effect::Emit {
                    rule,
                    destination,
                    event_type,
                } => {
                    // Per rule: two rules emitting the same type are two events.
                    let id = format!("{change_id}.{rule}.{event_type}");
                    let body = emit_body(&event_type, &rule, &id, ctx);
                    Queued::Send {
                        rule,
                        destination,
                        id,
                        body,
                    }
                }
                Effect::Update {
                    rule,
                    target,
                    properties,
                } => Queued::Update {
                    rule,
                    portal,
                    target,
                    properties,
                },
                Effect::CompleteBlocked {
                    rule,
                    object_type,
                    object_id,
                    outputs,
                } => Queued::CompleteBlocked {
                    rule,
                    portal,
                    object_type,
                    object_id,
                    outputs,
                },
            };
            (key, queued)
        })
        .collect()
}

/// The properties of an update that would change the object: those whose current value
/// (`current`, as HubSpot's read returned it; absent or `null` is `""`) differs from the value
/// to write. Diff-only writes leave an object alone when nothing differs, so HubSpot sends no
/// webhook for it and no rule hears it again.
pub fn to_write(
    wanted: &BTreeMap<String, String>,
    current: &BTreeMap<String, Option<String>>,
) -> BTreeMap<String, String> {
    wanted
        .iter()
        .filter(|(name, value)| {
            let now = current.get(*name).and_then(Option::as_deref).unwrap_or("");
            now != value.as_str()
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}
