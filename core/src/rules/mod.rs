//! Event-driven rules: "when an event matching F (and these conditions on the mapped old and
//! new values) then do A", decided by a pure function.
//!
//! # Configuration (`RULES`, JSON)
//!
//! ```json
//! { "rules": [ {
//!     "name": "big_deal_won",
//!     "when": {
//!       "objectTypes": ["deal"],
//!       "changes": [
//!         { "field": "dealstage", "op": "changed_to", "value": "closedwon" },
//!         { "field": "amount", "op": "gt", "value": 10000 }
//!       ]
//!     },
//!     "then": [
//!       { "update": { "target": { "associated": "companies" },
//!                     "properties": { "last_big_deal": { "copy": "amount" }, "tier": "gold" } } },
//!       { "forward": { "destination": "sales" } },
//!       { "emit": { "name": "big_deal", "destination": "sales" } },
//!       { "complete_action": { "outputs": { "approved": true } } }
//!     ]
//! } ] }
//! ```
//!
//! `when` takes every key of the filter language ([`crate::filter`]: `types`, `objectTypes`,
//! `properties`, `portalIds`, `changeSources`; AND across keys, OR within one; a group of
//! events matches when one of its events does) plus `changes`: conditions, all of which must
//! hold, on the **mapped** record (destination field names of `ENRICHMENT_MAP`, values as the
//! map normalises them) before (`old`) and after (`new`) the events:
//!
//! | `op` | holds when | `value` |
//! | --- | --- | --- |
//! | `equals` | `new` equals `value` | any JSON value |
//! | `changed_to` | `new` equals `value` and `old` does not | any JSON value |
//! | `changed_from` | `old` equals `value` and `new` does not | any JSON value |
//! | `changed` | `old` and `new` differ | none |
//! | `gt`, `gte`, `lt`, `lte` | `new` is a number (or numeric text) compared so | a number |
//! | `before`, `after` | `new` is a date, datetime or Unix ms strictly before / after | `YYYY-MM-DD`, an ISO datetime with offset, `now`, or `now` ± `N` `m`/`h`/`d` (`now-30d`) |
//! | `is_empty`, `is_not_empty` | `new` is (not) absent, `null`, `""` or `[]` | none |
//!
//! Equality is by value: numbers numerically (`1` = `1.0` = `"1"`), arrays as sets, and absent,
//! `null`, `""` and `[]` are all "no value". A record with no `old` (a creation, or a first
//! change whose previous values HubSpot's history did not give) counts every field as having
//! had no value, so `changed_to` holds for a created record with that value.
//!
//! `then` lists actions, run in order for each matching rule:
//!
//! - `forward`: `{"destination": "sales"}` forwards the event (the body the default destination
//!   gets) to a named destination ([`Destinations`]); a destination gets an event once however
//!   many rules forward it there.
//! - `update`: `{"target": "self" | {"associated": "companies"}, "properties": {…}}` writes
//!   HubSpot properties on the object or on every object of a type associated with it. A value
//!   is a static string, number or boolean (written as text), or `{"copy": "<field>"}`: the
//!   mapped record's field now (a property whose field has no value is not written).
//! - `complete_action`: `{"outputs": {…}}` completes the workflow action executions blocked
//!   for this object ([`Effect::CompleteBlocked`]), with outputs given as for `update`.
//! - `emit`: `{"name": "big_deal", "destination": "sales"}` sends a custom event of type
//!   `custom.big_deal` ([`emit_body`]); `destination` defaults to `default`.
//!
//! # Loops
//!
//! An `update` makes HubSpot send webhooks for the properties written, and those could match
//! rules again. Two guards:
//!
//! 1. At configuration time, [`Rules::from_json`] builds the graph "rule A writes a property
//!    that rule B listens to on the same object type" and rejects any cycle (`rules_loop`, the
//!    message naming the rules). A rule listens to the properties its `properties` criterion
//!    names, narrowed to the fields its `changed`/`changed_to`/`changed_from` conditions read;
//!    a rule naming neither listens to every property of its object types. The analysis is
//!    conservative: it may reject a rule that would not loop. A rule that carries `"guard":
//!    "echo"` is exempt: its writes are left to the run-time guard.
//! 2. At run time, this integration's own writes are recognised by the echo guard
//!    ([`crate::diff::EchoGuard`]) or the record store's snapshot, and the caller passes
//!    [`Origin::OwnWrite`]: [`evaluate`] then returns no effect, whatever the rules.
//!
//! # Cost
//!
//! [`evaluate`] allocates only for the effects it returns; a rule's filter criteria are checked
//! before its conditions, and each condition is a few comparisons. See BENCHMARKS.md "Rules:
//! evaluation cost" for 50 rules, native and wasm32.

mod config;
mod destinations;
mod loops;
mod queued;
#[cfg(test)]
mod tests;
mod update;

use std::collections::BTreeMap;

use serde_json::Value;
use thiserror::Error;

use crate::event::Event;
use crate::filter;
use crate::mapping::Record;

pub use destinations::{
    default_secret_key, Destination, Destinations, DestinationsError, DEFAULT_DESTINATION,
    MAX_DESTINATIONS,
};
pub use queued::{plan, to_write, EffectMessage, Queued, EFFECT_SOURCE};
pub use update::{RuleUpdate, UpdateFailure, UpdateNeed};

/// At most this many rules: evaluation runs for every event of every queue batch, and each
/// rule's effects may cost HubSpot calls (bounded per invocation by the Worker's 1,000 KV
/// operations and 6 connections, so a few hundred rules is far more than a batch can act on).
pub const MAX_RULES: usize = 200;
/// At most this many actions per rule.
pub const MAX_ACTIONS_PER_RULE: usize = 10;
/// At most this many conditions per rule.
pub const MAX_CONDITIONS_PER_RULE: usize = 20;

/// The rules configuration is invalid. The message names the place (`rules[3].when.changes[0].op:
/// …`) and never a secret; values from the configuration may appear in it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {detail}")]
pub struct RulesError {
    kind: RulesErrorKind,
    path: String,
    detail: String,
}

/// What kind of problem a [`RulesError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RulesErrorKind {
    /// Not valid JSON, an unknown key, a missing or ill-typed value, a reference to a
    /// destination or field that does not exist.
    Invalid,
    /// Rules whose writes would trigger one another (or themselves) without a guard.
    Loop,
}

impl RulesError {
    pub(crate) fn invalid(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: RulesErrorKind::Invalid,
            path: path.into(),
            detail: detail.into(),
        }
    }

    /// Stable code: `rules_invalid` or `rules_loop`.
    pub fn code(&self) -> &'static str {
        match self.kind {
            RulesErrorKind::Invalid => "rules_invalid",
            RulesErrorKind::Loop => "rules_loop",
        }
    }

    /// The kind of problem.
    pub fn kind(&self) -> RulesErrorKind {
        self.kind
    }

    /// Where: `rules[3].when.changes[0].op`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// A compiled, validated rule set. The default has no rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// One rule.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    pub(crate) name: String,
    pub(crate) filter: Option<filter::Rule>,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) actions: Vec<Action>,
    /// `"guard": "echo"`: exempt from the configuration-time loop check.
    pub(crate) echo_guarded: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Condition {
    pub(crate) field: String,
    pub(crate) test: Test,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    Equals(Value),
    ChangedTo(Value),
    ChangedFrom(Value),
    Changed,
    Compare(Ordering, f64),
    Before(When),
    After(When),
    IsEmpty,
    IsNotEmpty,
}

impl Test {
    /// Whether the condition holds only when the field changed.
    pub(crate) fn is_transition(&self) -> bool {
        matches!(
            self,
            Self::ChangedTo(_) | Self::ChangedFrom(_) | Self::Changed
        )
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Ordering {
    Gt,
    Gte,
    Lt,
    Lte,
}

/// A date bound: an absolute instant or an offset from the evaluation's `now`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum When {
    At(i64),
    FromNow(i64),
}

#[derive(Debug, Clone)]
pub(crate) enum Action {
    Forward(String),
    Update {
        target: TargetType,
        properties: Vec<(String, Source)>,
    },
    CompleteBlocked(Vec<(String, Source)>),
    Emit {
        name: String,
        destination: String,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum TargetType {
    This,
    /// Object type in the events' vocabulary (`company`).
    Associated(String),
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Static(Value),
    Copy(String),
}

/// Where an event comes from, as far as the caller knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Anyone but this integration (or not known to be us).
    External,
    /// HubSpot's notification of a write this integration made: the echo guard matched, or the
    /// record equals the snapshot the write committed. Rules never run on it.
    OwnWrite,
}

/// What [`evaluate`] looks at: the events about one object (a queue batch's group, or one
/// event), the mapped record before and after them, and where they come from.
#[derive(Debug, Clone, Copy)]
pub struct EventContext<'a> {
    /// The events; the filter part of `when` matches when one of them does.
    pub events: &'a [&'a Event<'a>],
    /// The object type, in the events' vocabulary (`deal`, `2-123`).
    pub object_type: &'a str,
    /// The object's id.
    pub object_id: &'a str,
    /// The mapped record before the events: `None` when there was none (a creation) or it is
    /// not known; every field then reads as "no value".
    pub old: Option<&'a Record>,
    /// The mapped record now: `None` for an event that was not enriched (no map for its type,
    /// a deletion); conditions on fields then do not hold (`is_empty` does).
    pub new: Option<&'a Record>,
    /// Our own write or not.
    pub origin: Origin,
    /// Now, Unix milliseconds (relative dates in `before`/`after`).
    pub now_ms: u64,
}

/// What a matching rule asks the caller to do. Every effect names its rule (for logs and dead
/// letters).
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Forward the event to the named destination (once per destination and event).
    Forward {
        /// The rule.
        rule: String,
        /// The destination's name.
        destination: String,
    },
    /// Write HubSpot properties (diff-only, echo-guarded: the caller's job).
    Update {
        /// The rule.
        rule: String,
        /// The object(s) to write.
        target: Target,
        /// Property name → value as HubSpot takes it (text). Never empty.
        properties: BTreeMap<String, String>,
    },
    /// Complete the workflow action executions blocked for this object.
    CompleteBlocked {
        /// The rule.
        rule: String,
        /// The object type, events' vocabulary.
        object_type: String,
        /// The object's id.
        object_id: String,
        /// Output field → value.
        outputs: BTreeMap<String, Value>,
    },
    /// Send a custom event of type `event_type` ([`emit_body`]) to the named destination.
    Emit {
        /// The rule.
        rule: String,
        /// The destination's name.
        destination: String,
        /// `custom.<name>`.
        event_type: String,
    },
}

impl Effect {
    /// The rule that asked for it.
    pub fn rule(&self) -> &str {
        match self {
            Self::Forward { rule, .. }
            | Self::Update { rule, .. }
            | Self::CompleteBlocked { rule, .. }
            | Self::Emit { rule, .. } => rule,
        }
    }

    /// The destination it sends to, if it sends.
    pub fn destination(&self) -> Option<&str> {
        match self {
            Self::Forward { destination, .. } | Self::Emit { destination, .. } => Some(destination),
            _ => None,
        }
    }
}

/// Which objects an [`Effect::Update`] writes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    rename_all_fields = "camelCase",
    try_from = "crate::wire::TargetWire"
)]
pub enum Target {
    /// The object the events are about.
    Object {
        /// Events' vocabulary (`deal`).
        object_type: String,
        /// Its id.
        object_id: String,
    },
    /// Every object of `to_type` associated with the object (read through the v4 associations
    /// API by the caller).
    Associated {
        /// Events' vocabulary (`deal`).
        from_type: String,
        /// Its id.
        from_id: String,
        /// Events' vocabulary (`company`).
        to_type: String,
    },
}

impl Rules {
    /// Compiles and checks `RULES` (module docs). `mapping` is `ENRICHMENT_MAP`, when set: it
    /// checks that condition fields exist for the rule's object types and translates fields to
    /// HubSpot properties for the loop check. `destinations` are the names forwards and emits
    /// may use.
    ///
    /// # Errors
    /// [`RulesError`] naming the first problem's place: `rules_invalid`, or `rules_loop` for
    /// rules that would trigger each other without a guard.
    pub fn from_json(
        json: &str,
        mapping: Option<&crate::mapping::Mapping>,
        destinations: &Destinations,
    ) -> Result<Self, RulesError> {
        let rules = config::parse(json, mapping, destinations)?;
        loops::check(&rules, mapping)?;
        Ok(Self { rules })
    }

    /// The number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

/// The effects of every rule that matches `ctx`, in rule order then action order. Nothing for
/// [`Origin::OwnWrite`]. A destination gets at most one [`Effect::Forward`] per call.
#[must_use]
pub fn evaluate(rules: &Rules, ctx: &EventContext<'_>) -> Vec<Effect> {
    let mut effects = Vec::new();
    if ctx.origin == Origin::OwnWrite {
        return effects;
    }
    for rule in &rules.rules {
        if !rule_matches(rule, ctx) {
            continue;
        }
        for action in &rule.actions {
            if let Some(effect) = effect_of(rule, action, ctx) {
                let duplicate = matches!(&effect, Effect::Forward { destination, .. }
                    if effects.iter().any(|e| matches!(e, Effect::Forward { destination: d, .. } if d == destination)));
                if !duplicate {
                    effects.push(effect);
                }
            }
        }
    }
    effects
}

fn rule_matches(rule: &Rule, ctx: &EventContext<'_>) -> bool {
    if let Some(filter) = &rule.filter {
        if !ctx.events.iter().any(|e| filter.matches(e)) {
            return false;
        }
    }
    rule.conditions.iter().all(|c| condition_holds(c, ctx))
}

fn field<'r>(record: Option<&'r Record>, name: &str) -> &'r Value {
    record.and_then(|r| r.get(name)).unwrap_or(&Value::Null)
}

fn condition_holds(c: &Condition, ctx: &EventContext<'_>) -> bool {
    let new = field(ctx.new, &c.field);
    if ctx.new.is_none() && !matches!(c.test, Test::IsEmpty) {
        return false;
    }
    let old = || field(ctx.old, &c.field);
    match &c.test {
        Test::Equals(v) => same(new, v),
        Test::ChangedTo(v) => same(new, v) && !same(old(), v),
        Test::ChangedFrom(v) => same(old(), v) && !same(new, v),
        Test::Changed => !same(old(), new),
        Test::Compare(ord, bound) => number(new).is_some_and(|n| match ord {
            Ordering::Gt => n > *bound,
            Ordering::Gte => n >= *bound,
            Ordering::Lt => n < *bound,
            Ordering::Lte => n <= *bound,
        }),
        Test::Before(when) => instant(new).is_some_and(|t| t < bound_ms(*when, ctx.now_ms)),
        Test::After(when) => instant(new).is_some_and(|t| t > bound_ms(*when, ctx.now_ms)),
        Test::IsEmpty => is_empty(new),
        Test::IsNotEmpty => !is_empty(new),
    }
}

fn bound_ms(when: When, now_ms: u64) -> i64 {
    match when {
        When::At(ms) => ms,
        When::FromNow(offset) => i64::try_from(now_ms)
            .unwrap_or(i64::MAX)
            .saturating_add(offset),
    }
}

/// "No value": absent, `null`, `""`, `[]`.
fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// A number, or text that reads as one.
fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|n| n.is_finite()),
        _ => None,
    }
}

/// Unix milliseconds of a date (`YYYY-MM-DD`, midnight UTC), an ISO datetime with offset, or
/// Unix milliseconds (a number or digits).
pub(crate) fn instant(v: &Value) -> Option<i64> {
    use crate::mapping::calendar;
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if s.len() == 10 => calendar::parse_date(s).ok().map(calendar::days_to_ms),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse().ok()
        }
        Value::String(s) => calendar::parse_datetime(s).ok(),
        _ => None,
    }
}

/// Equality by value (module docs).
fn same(a: &Value, b: &Value) -> bool {
    if is_empty(a) || is_empty(b) {
        return is_empty(a) && is_empty(b);
    }
    match (a, b) {
        (Value::Array(x), Value::Array(y)) => {
            x.iter().all(|i| y.iter().any(|j| same(i, j)))
                && y.iter().all(|j| x.iter().any(|i| same(i, j)))
        }
        (Value::Number(_), _) | (_, Value::Number(_)) => {
            matches!((number(a), number(b)), (Some(x), Some(y)) if x == y)
        }
        _ => a == b,
    }
}

/// Text as HubSpot takes it for a property value (docs/hubspot.md §7): strings as they are, numbers
/// and booleans as JSON text, arrays `;`-joined; `None` for "no value".
fn property_text(v: &Value) -> Option<String> {
    if is_empty(v) {
        return None;
    }
    Some(match v {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .filter_map(property_text)
            .collect::<Vec<_>>()
            .join(";"),
        other => other.to_string(),
    })
}

fn resolve<'v>(source: &'v Source, ctx: &EventContext<'v>) -> Option<&'v Value> {
    match source {
        Source::Static(v) => Some(v),
        Source::Copy(f) => ctx.new.and_then(|r| r.get(f)).filter(|v| !is_empty(v)),
    }
}

fn effect_of(rule: &Rule, action: &Action, ctx: &EventContext<'_>) -> Option<Effect> {
    let name = || rule.name.clone();
    Some(match action {
        Action::Forward(destination) => Effect::Forward {
            rule: name(),
            destination: destination.clone(),
        },
        Action::Emit {
            name: n,
            destination,
        } => Effect::Emit {
            rule: name(),
            destination: destination.clone(),
            event_type: format!("custom.{n}"),
        },
        Action::Update { target, properties } => {
            let properties: BTreeMap<String, String> = properties
                .iter()
                .filter_map(|(p, s)| Some((p.clone(), property_text(resolve(s, ctx)?)?)))
                .collect();
            if properties.is_empty() {
                return None;
            }
            let target = match target {
                TargetType::This => Target::Object {
                    object_type: ctx.object_type.to_owned(),
                    object_id: ctx.object_id.to_owned(),
                },
                TargetType::Associated(to) => Target::Associated {
                    from_type: ctx.object_type.to_owned(),
                    from_id: ctx.object_id.to_owned(),
                    to_type: to.clone(),
                },
            };
            Effect::Update {
                rule: name(),
                target,
                properties,
            }
        }
        Action::CompleteBlocked(outputs) => Effect::CompleteBlocked {
            rule: name(),
            object_type: ctx.object_type.to_owned(),
            object_id: ctx.object_id.to_owned(),
            outputs: outputs
                .iter()
                .filter_map(|(k, s)| Some((k.clone(), resolve(s, ctx)?.clone())))
                .collect(),
        },
    })
}

/// The body of an [`Effect::Emit`]: `{"type": "custom.<name>", "id", "rule", "portalId",
/// "objectType", "objectId", "occurredAt", "record"}`, `record` the mapped record now (or
/// `null`). `id` is also the `webhook-id`: the same for a retry of the same events.
pub fn emit_body(effect_type: &str, rule: &str, id: &str, ctx: &EventContext<'_>) -> String {
    let latest = ctx
        .events
        .iter()
        .max_by_key(|e| (e.occurred_at_ms(), e.event_id()));
    serde_json::json!({
        "type": effect_type,
        "id": id,
        "rule": rule,
        "portalId": latest.map(|e| e.portal_id()),
        "objectType": ctx.object_type,
        "objectId": ctx.object_id,
        "occurredAt": latest.map(|e| crate::time::iso8601_ms(e.occurred_at_ms())),
        "record": ctx.new,
    })
    .to_string()
}
