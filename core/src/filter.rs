//! Declarative event filtering, decided before anything is queued.
//!
//! Configuration is JSON (the `FILTER_RULES` setting of the Worker):
//!
//! ```json
//! {
//!   "include": [{ "types": ["contact.*", "*.deletion"], "properties": ["email"] }],
//!   "exclude": [{ "changeSources": ["IMPORT"] }],
//!   "ignoreOwnChanges": { "appIds": [54321], "sourceIds": ["userId:1"] }
//! }
//! ```
//!
//! An event is kept when it is not one of our own changes, matches at least one `include` rule
//! (or `include` is empty), and matches no `exclude` rule. A rule matches when every criterion it
//! names matches (AND); a criterion matches when any of its values does (OR). Criteria:
//! `types` (subscription types, with `*` allowed as a whole segment: `contact.*`, `*.merge`,
//! `*`), `objectTypes` (`contact` or `0-1`; custom objects by `2-…` id), `properties`
//! (`propertyName`; events without one do not match), `portalIds`, `changeSources`.
//!
//! `ignoreOwnChanges` is the loop guard for two-way sync: drop events whose `sourceId` is one
//! of `sourceIds`, or names one of `appIds` (`sourceId` equal to the id, or ending in `:<id>`).
//! HubSpot does not document `sourceId` (docs/hubspot.md §2.2), so this is a first line of defence;
//! comparing against what we last wrote is the robust one.

use serde::Deserialize;
use thiserror::Error;

use crate::event::{canonical_object_type, Event};
use crate::id::PortalId;

/// The filter configuration is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("filter rules are invalid: {detail}")]
pub struct FilterConfigError {
    detail: String,
}

impl FilterConfigError {
    /// Stable code: `filter_config_invalid`.
    pub fn code(&self) -> &'static str {
        "filter_config_invalid"
    }
}

/// What the filter decided for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Keep,
    /// Acknowledge it and forward nothing.
    Drop(DropReason),
}

/// Why an event was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `include` rules exist and none matched.
    NotIncluded,
    /// The `exclude` rule at this index matched.
    Excluded(usize),
    /// `ignoreOwnChanges` matched: the event echoes a change this integration made.
    OwnChange,
}

impl DropReason {
    /// Stable code for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotIncluded => "not_included",
            Self::Excluded(_) => "excluded",
            Self::OwnChange => "own_change",
        }
    }
}

/// A compiled, immutable set of filter rules. The default keeps everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Vec<Rule>,
    exclude: Vec<Rule>,
    own_app_ids: Vec<String>,
    own_source_ids: Vec<String>,
}

impl Filter {
    /// Compiles rules from their JSON form (see the module docs). Unknown keys are errors, so
    /// that a typo cannot silently widen the filter.
    ///
    /// # Errors
    /// [`FilterConfigError`] for invalid JSON, unknown keys, or a pattern with `*` inside a
    /// segment.
    pub fn from_json(json: &str) -> Result<Self, FilterConfigError> {
        let config: Config = serde_json::from_str(json).map_err(|e| FilterConfigError {
            detail: e.to_string(),
        })?;
        let own = config.ignore_own_changes.unwrap_or_default();
        Ok(Self {
            include: config
                .include
                .into_iter()
                .map(Rule::compile)
                .collect::<Result<_, _>>()?,
            exclude: config
                .exclude
                .into_iter()
                .map(Rule::compile)
                .collect::<Result<_, _>>()?,
            own_app_ids: own.app_ids.iter().map(u64::to_string).collect(),
            own_source_ids: own.source_ids,
        })
    }

    /// Decides one event. Pure and allocation-free.
    pub fn decide(&self, event: &Event<'_>) -> Verdict {
        if self.is_own_change(event) {
            return Verdict::Drop(DropReason::OwnChange);
        }
        if !self.include.is_empty() && !self.include.iter().any(|r| r.matches(event)) {
            return Verdict::Drop(DropReason::NotIncluded);
        }
        if let Some(i) = self.exclude.iter().position(|r| r.matches(event)) {
            return Verdict::Drop(DropReason::Excluded(i));
        }
        Verdict::Keep
    }

    fn is_own_change(&self, event: &Event<'_>) -> bool {
        let Some(source) = event.source_id() else {
            return false;
        };
        self.own_source_ids.iter().any(|s| s == source)
            || self.own_app_ids.iter().any(|id| {
                source == id
                    || source
                        .strip_suffix(id.as_str())
                        .is_some_and(|head| head.ends_with(':'))
            })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Config {
    #[serde(default)]
    include: Vec<RuleConfig>,
    #[serde(default)]
    exclude: Vec<RuleConfig>,
    #[serde(default)]
    ignore_own_changes: Option<OwnChangesConfig>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OwnChangesConfig {
    #[serde(default)]
    app_ids: Vec<u64>,
    #[serde(default)]
    source_ids: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct RuleConfig {
    #[serde(default)]
    types: Vec<String>,
    #[serde(default)]
    object_types: Vec<String>,
    #[serde(default)]
    properties: Vec<String>,
    #[serde(default)]
    portal_ids: Vec<PortalId>,
    #[serde(default)]
    change_sources: Vec<String>,
}

/// One include/exclude rule, compiled; [`crate::rules`] reuses it for a rule's `when`.
#[derive(Debug, Clone)]
pub(crate) struct Rule {
    types: Vec<TypePattern>,
    object_types: Vec<String>,
    properties: Vec<String>,
    portal_ids: Vec<PortalId>,
    change_sources: Vec<String>,
}

impl Rule {
    pub(crate) fn compile(c: RuleConfig) -> Result<Self, FilterConfigError> {
        Ok(Self {
            types: c
                .types
                .iter()
                .map(|t| TypePattern::parse(t))
                .collect::<Result<_, _>>()?,
            object_types: c
                .object_types
                .iter()
                .map(|t| canonical_object_type(t).to_owned())
                .collect(),
            properties: c.properties,
            portal_ids: c.portal_ids,
            change_sources: c.change_sources,
        })
    }

    pub(crate) fn matches(&self, e: &Event<'_>) -> bool {
        fn any<T>(list: &[T], f: impl Fn(&T) -> bool) -> bool {
            list.is_empty() || list.iter().any(f)
        }
        any(&self.types, |p| p.matches(e.subscription_type()))
            && any(&self.object_types, |t| t == e.object_type())
            && any(&self.properties, |p| e.property_name() == Some(p.as_str()))
            && any(&self.portal_ids, |p| *p == e.portal_id())
            && any(&self.change_sources, |s| {
                e.change_source() == Some(s.as_str())
            })
    }
}

impl Rule {
    /// Whether the rule's `types` criterion admits `subscription_type` (no `types`: yes).
    pub(crate) fn matches_type(&self, subscription_type: &str) -> bool {
        self.types.is_empty() || self.types.iter().any(|p| p.matches(subscription_type))
    }

    /// The property names the rule names (empty: any).
    pub(crate) fn properties(&self) -> &[String] {
        &self.properties
    }

    /// The object types (events' vocabulary) the rule can match: `None` for any. From
    /// `objectTypes`, else from `types` patterns that name an object (`deal.*`,
    /// `deal.propertyChange`); a pattern such as `*.propertyChange` or a generic `object.…`
    /// type matches any.
    pub(crate) fn object_scope(&self) -> Option<Vec<String>> {
        if !self.object_types.is_empty() {
            return Some(self.object_types.clone());
        }
        if self.types.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for t in &self.types {
            let object = match t {
                TypePattern::Any | TypePattern::Action(_) => return None,
                TypePattern::Exact(s) => s.split_once('.').map_or(s.as_str(), |(o, _)| o),
                TypePattern::Object(prefix) => prefix.trim_end_matches('.'),
            };
            if object == "object" {
                return None;
            }
            out.push(object.to_owned());
        }
        Some(out)
    }
}

#[derive(Debug, Clone)]
enum TypePattern {
    Any,
    Exact(String),
    /// `contact.*`: holds `contact.`.
    Object(String),
    /// `*.deletion`: holds `.deletion`.
    Action(String),
}

impl TypePattern {
    fn parse(p: &str) -> Result<Self, FilterConfigError> {
        let pattern = match p.split_once('.') {
            _ if p == "*" || p == "*.*" => Self::Any,
            Some((obj, "*")) if !obj.contains('*') => Self::Object(format!("{obj}.")),
            Some(("*", action)) if !action.contains('*') => Self::Action(format!(".{action}")),
            _ if !p.contains('*') && !p.is_empty() => Self::Exact(p.to_owned()),
            _ => {
                return Err(FilterConfigError {
                    detail: format!("type pattern {p:?}: `*` may only stand for a whole segment"),
                })
            }
        };
        Ok(pattern)
    }

    fn matches(&self, t: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(s) => t == s,
            Self::Object(prefix) => t.starts_with(prefix.as_str()),
            Self::Action(suffix) => t.ends_with(suffix.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::event::parse_batch;

    const EVENTS: &str = r#"[
      {"subscriptionType":"contact.propertyChange","portalId":1,"eventId":1,"occurredAt":1,"objectId":1,"propertyName":"email","changeSource":"CRM_UI"},
      {"subscriptionType":"contact.propertyChange","portalId":1,"eventId":2,"occurredAt":1,"objectId":1,"propertyName":"phone","changeSource":"IMPORT"},
      {"subscriptionType":"contact.creation","portalId":2,"eventId":3,"occurredAt":1,"objectId":2,"changeSource":"API","sourceId":"app:54321"},
      {"subscriptionType":"deal.deletion","portalId":1,"eventId":4,"occurredAt":1,"objectId":3},
      {"subscriptionType":"object.propertyChange","objectTypeId":"0-1","portalId":1,"eventId":5,"occurredAt":1,"objectId":4,"propertyName":"email","sourceId":"userId:7"},
      {"subscriptionType":"company.merge","portalId":3,"eventId":6,"occurredAt":1,"objectId":5,"sourceId":"54321"}
    ]"#;

    /// The verdict letters for EVENTS in order: K keep, N not included, X excluded, O own.
    fn verdicts(rules: &str) -> String {
        let filter = Filter::from_json(rules).unwrap();
        parse_batch(EVENTS.as_bytes())
            .unwrap()
            .iter()
            .map(|el| match filter.decide(el.event.as_ref().unwrap()) {
                Verdict::Keep => 'K',
                Verdict::Drop(DropReason::NotIncluded) => 'N',
                Verdict::Drop(DropReason::Excluded(_)) => 'X',
                Verdict::Drop(DropReason::OwnChange) => 'O',
            })
            .collect()
    }

    #[test]
    fn table() {
        let cases = [
            ("{}", "KKKKKK"),
            (r#"{"include":[{"types":["contact.*"]}]}"#, "KKKNNN"),
            (
                r#"{"include":[{"types":["*.deletion","*.merge"]}]}"#,
                "NNNKNK",
            ),
            (r#"{"include":[{"types":["*"]}]}"#, "KKKKKK"),
            (r#"{"include":[{"types":["contact.creation"]}]}"#, "NNKNNN"),
            // Generic events match by object type, named or by id.
            (r#"{"include":[{"objectTypes":["contact"]}]}"#, "KKKNKN"),
            (r#"{"include":[{"objectTypes":["0-1"]}]}"#, "KKKNKN"),
            // AND across criteria, OR within one.
            (
                r#"{"include":[{"objectTypes":["contact"],"properties":["email"]}]}"#,
                "KNNNKN",
            ),
            (
                r#"{"include":[{"properties":["email","phone"]}]}"#,
                "KKNNKN",
            ),
            (r#"{"include":[{"portalIds":[1]}]}"#, "KKNKKN"),
            (r#"{"exclude":[{"changeSources":["IMPORT"]}]}"#, "KXKKKK"),
            (
                r#"{"include":[{"portalIds":[1]}],"exclude":[{"types":["deal.*"]}]}"#,
                "KKNXKN",
            ),
            // Loop guard: `app:54321` and bare `54321` are this app's own writes.
            (r#"{"ignoreOwnChanges":{"appIds":[54321]}}"#, "KKOKKO"),
            (
                r#"{"ignoreOwnChanges":{"sourceIds":["userId:7"]}}"#,
                "KKKKOK",
            ),
            (r#"{"ignoreOwnChanges":{"appIds":[4321]}}"#, "KKKKKK"),
        ];
        for (rules, expected) in cases {
            assert_eq!(verdicts(rules), expected, "{rules}");
        }
    }

    #[test]
    fn bad_configs_are_rejected_with_a_code() {
        for bad in [
            r#"{"includes":[]}"#,
            r#"{"include":[{"type":["x"]}]}"#,
            r#"{"include":[{"types":["con*.creation"]}]}"#,
            r#"{"include":[{"types":[""]}]}"#,
            "not json",
        ] {
            let err = Filter::from_json(bad).unwrap_err();
            assert_eq!(err.code(), "filter_config_invalid", "{bad}");
        }
    }
}
