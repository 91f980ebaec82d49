//! How the core's tagged formats are read, without serde's buffering deserialisers.
//!
//! An internally tagged enum (`#[serde(tag = "…")]`), an `untagged` one or a `flatten`ed field
//! is deserialised by serde through `ContentDeserializer`/`FlatMapDeserializer`: the value is
//! first buffered, then read again once the variant is known. Instantiated for every such type,
//! that machinery was the largest generic cost in the Worker's wasm (BENCHMARKS.md, "Worker
//! size"). Each type here is read instead as one flat struct — the tag as a field, every
//! variant's fields optional — and converted (`#[serde(try_from = …)]` on the type). The JSON
//! is unchanged: serialising still uses the derived `Serialize` (the tag first), and the tag
//! may stand anywhere in the object when read, as before; unknown fields are ignored, as before.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::actions::ExecutionRecord;
use crate::id::PortalId;
use crate::metrics::alert::{self, Condition, RateSource, Rule};
use crate::rules::{EffectMessage, Queued, Target};
use crate::search::SearchPlan;
use crate::sync::inbound::{Conflict, RecordOutcome, RecordStatus};
use crate::sync::{ArchivedUnit, ModifiedUnit, Path, RangeUnit, Unit, VerifyUnit};

/// A variant's field that must be present.
fn need<T>(value: Option<T>, tag: &str, field: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("missing field `{field}` of `{tag}`"))
}

fn unknown(tag: &str) -> String {
    format!("unknown variant `{tag}`")
}

/// [`ExecutionRecord`] as read.
#[derive(Deserialize)]
pub(crate) struct ExecutionRecordWire {
    state: String,
    action: String,
    since_ms: Option<u64>,
    retry_blocked: Option<bool>,
    body: Option<String>,
    expires_at_ms: Option<u64>,
    outputs: Option<Map<String, Value>>,
    success: Option<bool>,
    queued_ms: Option<u64>,
    code: Option<String>,
}

impl TryFrom<ExecutionRecordWire> for ExecutionRecord {
    type Error = String;

    fn try_from(w: ExecutionRecordWire) -> Result<Self, String> {
        let t = w.state.as_str();
        let action = w.action;
        Ok(match t {
            "running" => Self::Running {
                action,
                since_ms: need(w.since_ms, t, "since_ms")?,
                retry_blocked: need(w.retry_blocked, t, "retry_blocked")?,
            },
            "answered" => Self::Answered {
                action,
                body: need(w.body, t, "body")?,
            },
            "blocked" => Self::Blocked {
                action,
                body: need(w.body, t, "body")?,
                expires_at_ms: need(w.expires_at_ms, t, "expires_at_ms")?,
            },
            "completing" => Self::Completing {
                action,
                body: w.body,
                outputs: need(w.outputs, t, "outputs")?,
                success: need(w.success, t, "success")?,
                queued_ms: need(w.queued_ms, t, "queued_ms")?,
            },
            "completed" => Self::Completed {
                action,
                body: w.body,
            },
            "expired" => Self::Expired {
                action,
                body: need(w.body, t, "body")?,
            },
            "failed" => Self::Failed {
                action,
                body: w.body,
                code: need(w.code, t, "code")?,
            },
            _ => return Err(unknown(t)),
        })
    }
}

/// [`Rule`] as read (its [`Condition`] flattened into it).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RuleWire {
    name: String,
    kind: String,
    source: Option<RateSource>,
    quantile: Option<f64>,
    above: f64,
    #[serde(default)]
    clear_below: Option<f64>,
    #[serde(default = "alert::default_window")]
    window_minutes: u64,
    #[serde(default = "alert::default_min_events")]
    min_events: u64,
    #[serde(default = "alert::default_window")]
    clear_minutes: u64,
}

impl TryFrom<RuleWire> for Rule {
    type Error = String;

    fn try_from(w: RuleWire) -> Result<Self, String> {
        let t = w.kind.as_str();
        let condition = match t {
            "error_rate" => Condition::ErrorRate {
                source: need(w.source, t, "source")?,
            },
            "dead_letters" => Condition::DeadLetters,
            "queue_depth" => Condition::QueueDepth,
            "delivery_lag" => Condition::DeliveryLag {
                quantile: w.quantile.unwrap_or_else(alert::default_quantile),
            },
            "daily_budget" => Condition::DailyBudget,
            _ => return Err(unknown(t)),
        };
        Ok(Self {
            name: w.name,
            condition,
            above: w.above,
            clear_below: w.clear_below,
            window_minutes: w.window_minutes,
            min_events: w.min_events,
            clear_minutes: w.clear_minutes,
        })
    }
}

/// [`Target`] as read.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TargetWire {
    kind: String,
    object_type: Option<String>,
    object_id: Option<String>,
    from_type: Option<String>,
    from_id: Option<String>,
    to_type: Option<String>,
}

impl TryFrom<TargetWire> for Target {
    type Error = String;

    fn try_from(w: TargetWire) -> Result<Self, String> {
        let t = w.kind.as_str();
        Ok(match t {
            "object" => Self::Object {
                object_type: need(w.object_type, t, "objectType")?,
                object_id: need(w.object_id, t, "objectId")?,
            },
            "associated" => Self::Associated {
                from_type: need(w.from_type, t, "fromType")?,
                from_id: need(w.from_id, t, "fromId")?,
                to_type: need(w.to_type, t, "toType")?,
            },
            _ => return Err(unknown(t)),
        })
    }
}

/// [`EffectMessage`] as read (its [`Queued`] flattened into it).
#[derive(Deserialize)]
pub(crate) struct EffectMessageWire {
    source: String,
    effect: String,
    rule: String,
    destination: Option<String>,
    id: Option<String>,
    body: Option<String>,
    portal: Option<PortalId>,
    target: Option<Target>,
    properties: Option<BTreeMap<String, String>>,
    object_type: Option<String>,
    object_id: Option<String>,
    outputs: Option<BTreeMap<String, Value>>,
}

impl TryFrom<EffectMessageWire> for EffectMessage {
    type Error = String;

    fn try_from(w: EffectMessageWire) -> Result<Self, String> {
        let t = w.effect.as_str();
        let rule = w.rule;
        let effect = match t {
            "send" => Queued::Send {
                rule,
                destination: w
                    .destination
                    .unwrap_or_else(|| crate::rules::DEFAULT_DESTINATION.to_owned()),
                id: need(w.id, t, "id")?,
                body: need(w.body, t, "body")?,
            },
            "update" => Queued::Update {
                rule,
                portal: need(w.portal, t, "portal")?,
                target: need(w.target, t, "target")?,
                properties: need(w.properties, t, "properties")?,
            },
            "complete_blocked" => Queued::CompleteBlocked {
                rule,
                portal: need(w.portal, t, "portal")?,
                object_type: need(w.object_type, t, "object_type")?,
                object_id: need(w.object_id, t, "object_id")?,
                outputs: need(w.outputs, t, "outputs")?,
            },
            _ => return Err(unknown(t)),
        };
        Ok(Self {
            source: w.source,
            effect,
        })
    }
}

/// [`Unit`] as read (each variant's struct flattened into it).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UnitWire {
    kind: String,
    // range
    lo: Option<u64>,
    hi: Option<u64>,
    pos: Option<u64>,
    path: Option<Path>,
    list_after: Option<String>,
    done: Option<bool>,
    read: Option<u64>,
    open: Option<bool>,
    // modified
    plan: Option<SearchPlan>,
    // archived
    since_ms: Option<u64>,
    after: Option<String>,
    // verify
    ids: Option<Vec<u64>>,
}

impl TryFrom<UnitWire> for Unit {
    type Error = String;

    fn try_from(w: UnitWire) -> Result<Self, String> {
        let t = w.kind.as_str();
        Ok(match t {
            "range" => Self::Range(RangeUnit {
                lo: need(w.lo, t, "lo")?,
                hi: need(w.hi, t, "hi")?,
                pos: need(w.pos, t, "pos")?,
                path: need(w.path, t, "path")?,
                list_after: w.list_after,
                done: need(w.done, t, "done")?,
                read: w.read.unwrap_or_default(),
                open: w.open.unwrap_or_default(),
            }),
            "modified" => Self::Modified(ModifiedUnit {
                plan: need(w.plan, t, "plan")?,
            }),
            "archived" => Self::Archived(ArchivedUnit {
                since_ms: w.since_ms,
                after: w.after,
                done: need(w.done, t, "done")?,
            }),
            "verify" => Self::Verify(VerifyUnit {
                ids: need(w.ids, t, "ids")?,
            }),
            _ => return Err(unknown(t)),
        })
    }
}

/// [`RecordOutcome`] as read (its [`RecordStatus`] flattened into it).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RecordOutcomeWire {
    index: usize,
    external_id: String,
    status: String,
    hubspot_id: Option<String>,
    created: Option<bool>,
    rewritten: Option<Vec<String>>,
    code: Option<String>,
    #[serde(default)]
    conflicts: Vec<Conflict>,
}

impl TryFrom<RecordOutcomeWire> for RecordOutcome {
    type Error = String;

    fn try_from(w: RecordOutcomeWire) -> Result<Self, String> {
        let t = w.status.as_str();
        let status = match t {
            "pending" => RecordStatus::Pending,
            "written" => RecordStatus::Written {
                hubspot_id: need(w.hubspot_id, t, "hubspotId")?,
                created: need(w.created, t, "created")?,
                rewritten: w.rewritten.unwrap_or_default(),
            },
            "unchanged" => RecordStatus::Unchanged,
            "failed" => RecordStatus::Failed {
                code: need(w.code, t, "code")?,
            },
            _ => return Err(unknown(t)),
        };
        Ok(Self {
            index: w.index,
            external_id: w.external_id,
            status,
            conflicts: w.conflicts,
        })
    }
}

#[cfg(test)]
mod tests {
    //! Each stored or queued format as the derived (internally tagged / flattened) code wrote
    //! and read it: the literals below are that output, byte for byte. Each must parse to the
    //! value, and the value must serialise to the literal again.
    use super::*;
    use crate::metrics::{Counter, Gauge, Histogram, Name};
    use serde::Serialize;
    use serde_json::json;
    use std::fmt::Debug;

    /// `text` reads as `value` and `value` writes as `text`.
    fn same<T>(text: &str, value: &T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + Debug,
    {
        let read: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(&read, value, "{text}");
        assert_eq!(serde_json::to_string(value).unwrap(), text);
    }

    /// `text` (another field order, unknown fields) reads as `value`.
    fn reads<T>(text: &str, value: &T)
    where
        T: for<'de> Deserialize<'de> + PartialEq + Debug,
    {
        let read: T = serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(&read, value, "{text}");
    }

    fn refused<T: for<'de> Deserialize<'de> + Debug>(text: &str, why: &str) {
        let e = serde_json::from_str::<T>(text).expect_err(text).to_string();
        assert!(e.contains(why), "{text}: {e}");
    }

    #[test]
    fn execution_records() {
        let a = || "approve".to_owned();
        same(
            r#"{"state":"running","action":"approve","since_ms":5,"retry_blocked":false}"#,
            &ExecutionRecord::Running {
                action: a(),
                since_ms: 5,
                retry_blocked: false,
            },
        );
        same(
            r#"{"state":"answered","action":"approve","body":"{}"}"#,
            &ExecutionRecord::Answered {
                action: a(),
                body: "{}".into(),
            },
        );
        same(
            r#"{"state":"blocked","action":"approve","body":"b","expires_at_ms":9}"#,
            &ExecutionRecord::Blocked {
                action: a(),
                body: "b".into(),
                expires_at_ms: 9,
            },
        );
        let mut outputs = Map::new();
        outputs.insert("x".into(), json!(1));
        same(
            r#"{"state":"completing","action":"approve","body":null,"outputs":{"x":1},"success":true,"queued_ms":3}"#,
            &ExecutionRecord::Completing {
                action: a(),
                body: None,
                outputs: outputs.clone(),
                success: true,
                queued_ms: 3,
            },
        );
        same(
            r#"{"state":"completed","action":"approve","body":"b"}"#,
            &ExecutionRecord::Completed {
                action: a(),
                body: Some("b".into()),
            },
        );
        same(
            r#"{"state":"expired","action":"approve","body":"b"}"#,
            &ExecutionRecord::Expired {
                action: a(),
                body: "b".into(),
            },
        );
        same(
            r#"{"state":"failed","action":"approve","body":null,"code":"C"}"#,
            &ExecutionRecord::Failed {
                action: a(),
                body: None,
                code: "C".into(),
            },
        );
        // The tag last, an optional body absent, an unknown field: as the derived code read it.
        reads(
            r#"{"action":"approve","code":"C","extra":1,"state":"failed"}"#,
            &ExecutionRecord::Failed {
                action: a(),
                body: None,
                code: "C".into(),
            },
        );
        refused::<ExecutionRecord>(
            r#"{"state":"blocked","action":"a","body":"b"}"#,
            "expires_at_ms",
        );
        refused::<ExecutionRecord>(r#"{"state":"gone","action":"a"}"#, "unknown variant");
        refused::<ExecutionRecord>(r#"{"action":"a"}"#, "state");
    }

    #[test]
    fn alert_rules() {
        let rule = |condition, clear_below| Rule {
            name: "r".into(),
            condition,
            above: 0.5,
            clear_below,
            window_minutes: 5,
            min_events: 20,
            clear_minutes: 5,
        };
        same(
            r#"{"name":"r","kind":"error_rate","source":"deliveries","above":0.5,"clearBelow":null,"windowMinutes":5,"minEvents":20,"clearMinutes":5}"#,
            &rule(
                Condition::ErrorRate {
                    source: RateSource::Deliveries,
                },
                None,
            ),
        );
        same(
            r#"{"name":"r","kind":"delivery_lag","quantile":0.5,"above":0.5,"clearBelow":0.1,"windowMinutes":5,"minEvents":20,"clearMinutes":5}"#,
            &rule(Condition::DeliveryLag { quantile: 0.5 }, Some(0.1)),
        );
        same(
            r#"{"name":"r","kind":"dead_letters","above":0.5,"clearBelow":null,"windowMinutes":5,"minEvents":20,"clearMinutes":5}"#,
            &rule(Condition::DeadLetters, None),
        );
        // As an operator writes them: defaults filled in, the kind anywhere.
        reads(
            r#"{"above":0.5,"name":"r","kind":"delivery_lag"}"#,
            &rule(Condition::DeliveryLag { quantile: 0.99 }, None),
        );
        reads(
            r#"{"kind":"queue_depth","name":"r","above":0.5}"#,
            &rule(Condition::QueueDepth, None),
        );
        reads(
            r#"{"kind":"daily_budget","name":"r","above":0.5}"#,
            &rule(Condition::DailyBudget, None),
        );
        reads(
            r#"{"name":"r","kind":"error_rate","source":"webhooks","above":0.5,"windowMinutes":5}"#,
            &rule(
                Condition::ErrorRate {
                    source: RateSource::Webhooks,
                },
                None,
            ),
        );
        refused::<Rule>(r#"{"name":"r","kind":"error_rate","above":1}"#, "source");
        refused::<Rule>(r#"{"name":"r","kind":"nope","above":1}"#, "unknown variant");
        refused::<Rule>(r#"{"name":"r","kind":"dead_letters"}"#, "above");
    }

    #[test]
    fn effect_messages() {
        let object = Target::Object {
            object_type: "deal".into(),
            object_id: "1".into(),
        };
        same(
            r#"{"kind":"object","objectType":"deal","objectId":"1"}"#,
            &object,
        );
        same(
            r#"{"kind":"associated","fromType":"deal","fromId":"1","toType":"company"}"#,
            &Target::Associated {
                from_type: "deal".into(),
                from_id: "1".into(),
                to_type: "company".into(),
            },
        );
        refused::<Target>(r#"{"kind":"object","objectType":"deal"}"#, "objectId");

        let message = |effect| EffectMessage {
            source: "rules".into(),
            effect,
        };
        same(
            r#"{"source":"rules","effect":"send","rule":"r","destination":"crm","id":"i","body":"{}"}"#,
            &message(Queued::Send {
                rule: "r".into(),
                destination: "crm".into(),
                id: "i".into(),
                body: "{}".into(),
            }),
        );
        same(
            r#"{"source":"rules","effect":"update","rule":"r","portal":7,"target":{"kind":"object","objectType":"deal","objectId":"1"},"properties":{"a":"b"}}"#,
            &message(Queued::Update {
                rule: "r".into(),
                portal: PortalId::new(7),
                target: object,
                properties: BTreeMap::from([("a".into(), "b".into())]),
            }),
        );
        same(
            r#"{"source":"rules","effect":"complete_blocked","rule":"r","portal":7,"object_type":"deal","object_id":"1","outputs":{"o":1}}"#,
            &message(Queued::CompleteBlocked {
                rule: "r".into(),
                portal: PortalId::new(7),
                object_type: "deal".into(),
                object_id: "1".into(),
                outputs: BTreeMap::from([("o".into(), json!(1))]),
            }),
        );
        // A send without a destination goes to `default`.
        reads(
            r#"{"effect":"send","rule":"r","id":"i","body":"{}","source":"rules"}"#,
            &message(Queued::Send {
                rule: "r".into(),
                destination: "default".into(),
                id: "i".into(),
                body: "{}".into(),
            }),
        );
        refused::<EffectMessage>(
            r#"{"source":"rules","effect":"send","rule":"r","id":"i"}"#,
            "body",
        );
        refused::<EffectMessage>(
            r#"{"source":"rules","effect":"x","rule":"r"}"#,
            "unknown variant",
        );
    }

    #[test]
    fn sync_units() {
        let range = |list_after: Option<&str>, read, open| {
            Unit::Range(RangeUnit {
                lo: 1,
                hi: 10,
                pos: 5,
                path: Path::List,
                list_after: list_after.map(str::to_owned),
                done: false,
                read,
                open,
            })
        };
        same(
            r#"{"kind":"range","lo":1,"hi":10,"pos":5,"path":"list","done":false,"read":0}"#,
            &range(None, 0, false),
        );
        same(
            r#"{"kind":"range","lo":1,"hi":10,"pos":5,"path":"list","listAfter":"4","done":false,"read":4,"open":true}"#,
            &range(Some("4"), 4, true),
        );
        // Written before `read` existed.
        reads(
            r#"{"kind":"range","lo":1,"hi":10,"pos":5,"path":"list","done":false}"#,
            &range(None, 0, false),
        );
        same(
            r#"{"kind":"archived","sinceMs":null,"after":"a","done":true}"#,
            &Unit::Archived(ArchivedUnit {
                since_ms: None,
                after: Some("a".into()),
                done: true,
            }),
        );
        same(
            r#"{"kind":"verify","ids":[1,2]}"#,
            &Unit::Verify(VerifyUnit { ids: vec![1, 2] }),
        );
        let plan =
            SearchPlan::modified_since("lastmodifieddate", 1_000, vec![vec![]], 100).unwrap();
        let modified = Unit::Modified(ModifiedUnit { plan: plan.clone() });
        let text = serde_json::to_string(&modified).unwrap();
        let plan_text = serde_json::to_string(&plan).unwrap();
        assert_eq!(text, format!(r#"{{"kind":"modified","plan":{plan_text}}}"#));
        same(&text, &modified);
        refused::<Unit>(r#"{"kind":"verify"}"#, "ids");
        refused::<Unit>(r#"{"kind":"spiral"}"#, "unknown variant");
    }

    #[test]
    fn receipt_lines() {
        let line = |status, conflicts| RecordOutcome {
            index: 1,
            external_id: "e".into(),
            status,
            conflicts,
        };
        same(
            r#"{"index":1,"externalId":"e","status":"pending"}"#,
            &line(RecordStatus::Pending, vec![]),
        );
        same(
            r#"{"index":1,"externalId":"e","status":"unchanged"}"#,
            &line(RecordStatus::Unchanged, vec![]),
        );
        same(
            r#"{"index":1,"externalId":"e","status":"written","hubspotId":"9","created":true}"#,
            &line(
                RecordStatus::Written {
                    hubspot_id: "9".into(),
                    created: true,
                    rewritten: vec![],
                },
                vec![],
            ),
        );
        let conflict: Conflict = serde_json::from_value(json!({
            "field": "f", "winner": "hubspot", "hubspotValue": "h", "hubspotChangedAt": 2,
            "userValue": "u", "userChangedAt": 1
        }))
        .unwrap();
        let conflict_text = serde_json::to_string(&conflict).unwrap();
        same(
            &format!(
                r#"{{"index":1,"externalId":"e","status":"written","hubspotId":"9","created":false,"rewritten":["p"],"conflicts":[{conflict_text}]}}"#
            ),
            &line(
                RecordStatus::Written {
                    hubspot_id: "9".into(),
                    created: false,
                    rewritten: vec!["p".into()],
                },
                vec![conflict],
            ),
        );
        same(
            r#"{"index":1,"externalId":"e","status":"failed","code":"X"}"#,
            &line(RecordStatus::Failed { code: "X".into() }, vec![]),
        );
        refused::<RecordOutcome>(
            r#"{"index":1,"externalId":"e","status":"written","created":true}"#,
            "hubspotId",
        );
        refused::<RecordOutcome>(
            r#"{"index":1,"externalId":"e","status":"lost"}"#,
            "unknown variant",
        );
    }

    #[test]
    fn metric_names() {
        for (text, name) in [
            (r#""deliveries""#, Name::Counter(Counter::Deliveries)),
            (
                r#""delivery_latency""#,
                Name::Histogram(Histogram::DeliveryLatency),
            ),
            (
                r#""dead_letter_store_size""#,
                Name::Gauge(Gauge::DeadLetterStoreSize),
            ),
        ] {
            same(text, &name);
        }
        // Owned text (not borrowed from the input) reads too: a JSON escape, a `Value`.
        reads(r#""deliv\u0065ries""#, &Name::Counter(Counter::Deliveries));
        let name: Name = serde_json::from_value(json!("sync_cursor_lag")).unwrap();
        assert_eq!(name, Name::Gauge(Gauge::SyncCursorLag));
        refused::<Name>(r#""nothing""#, "unknown metric name");
        refused::<Name>("3", "invalid type");
    }
}
