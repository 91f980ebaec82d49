//! Alert rules evaluated over a [`Timeline`]: when a rule fires and when it resolves, each once.
//!
//! Poll-style: the host calls [`Alerts::evaluate`] with the timeline and `now` (the Worker's
//! metrics Durable Object does, once a minute from its alarm) and sends the [`Notice`]s it
//! returns (a Standard Webhooks-signed POST of [`Notice::to_json`] to `ALERT_URL`, or
//! [`Notice::slack_json`] for a Slack incoming webhook), then stores [`Alerts`] again.
//!
//! **Hysteresis** (no flapping): a rule fires as soon as its value is above `above`; a firing
//! rule resolves only once its value has stayed at or below `clearBelow` (default 80 % of
//! `above`) for `clearMinutes` (default 5) minutes. A ratio over fewer than `minEvents` events
//! has no value: it cannot fire, and counts as clear (traffic that stops resolves an alert).

use super::{Counter, Gauge, Histogram, MetricsError, Timeline};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const MINUTE_MS: u64 = 60_000;

/// What a rule watches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Condition {
    /// Failed / all over the window: deliveries (failed attempts) or webhook requests
    /// (rejected).
    ErrorRate {
        /// Which.
        source: RateSource,
    },
    /// Letters written to the dead-letter store within the window.
    DeadLetters,
    /// Messages queued and not settled, all queues together (from the totals).
    QueueDepth,
    /// A quantile of the delivery latency (webhook receipt to destination 2xx) over the window,
    /// in milliseconds.
    DeliveryLag {
        /// The quantile, 0–1 (default 0.99).
        #[serde(default = "default_quantile")]
        quantile: f64,
    },
    /// Per mille of HubSpot's daily budget spent (the newest reading of the last day).
    DailyBudget,
}

pub(crate) fn default_quantile() -> f64 {
    0.99
}

/// The events an [`Condition::ErrorRate`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateSource {
    /// Delivery attempts ([`Counter::Deliveries`], `result` = `failure` of all).
    Deliveries,
    /// Webhook requests ([`Counter::WebhookRequests`], `outcome` = `rejected` of all).
    Webhooks,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Read through a flat struct (crate::wire): no buffering `ContentDeserializer`.
#[serde(rename_all = "camelCase", try_from = "crate::wire::RuleWire")]
pub struct Rule {
    /// Unique; names the alert in notices.
    pub name: String,
    /// What it watches.
    #[serde(flatten)]
    pub condition: Condition,
    /// Fires when the value is above this (a ratio 0–1 for error rates, a count, milliseconds,
    /// or per mille for the daily budget).
    pub above: f64,
    /// Resolves at or below this (default 0.8 × `above`).
    #[serde(default)]
    pub clear_below: Option<f64>,
    /// The window the value is computed over, in minutes (1–60, default 5).
    #[serde(default = "default_window")]
    pub window_minutes: u64,
    /// A ratio or quantile over fewer events has no value (default 20).
    #[serde(default = "default_min_events")]
    pub min_events: u64,
    /// How long the value must stay clear before the alert resolves, minutes (default 5).
    #[serde(default = "default_window")]
    pub clear_minutes: u64,
}

pub(crate) fn default_window() -> u64 {
    5
}
pub(crate) fn default_min_events() -> u64 {
    20
}

impl Rule {
    fn clear_level(&self) -> f64 {
        self.clear_below.unwrap_or(self.above * 0.8)
    }

    /// The rule's value at `now_ms`; `None` when there are too few events to judge.
    pub fn value(&self, timeline: &Timeline, now_ms: u64) -> Option<f64> {
        let window = timeline.last_minutes(now_ms, self.window_minutes);
        #[allow(clippy::cast_precision_loss)]
        match &self.condition {
            Condition::ErrorRate { source } => {
                let (failed, all) = match source {
                    RateSource::Deliveries => (
                        window.count(Counter::Deliveries, &[("result", "failure")]),
                        window.count(Counter::Deliveries, &[]),
                    ),
                    RateSource::Webhooks => (
                        window.count(Counter::WebhookRequests, &[("outcome", "rejected")]),
                        window.count(Counter::WebhookRequests, &[]),
                    ),
                };
                (all >= self.min_events.max(1)).then(|| failed as f64 / all as f64)
            }
            Condition::DeadLetters => Some(window.count(Counter::DeadLetters, &[]) as f64),
            Condition::QueueDepth => {
                let t = timeline.totals();
                let enq = t.count(Counter::QueueEnqueued, &[]);
                let settled = t.count(Counter::QueueSettled, &[]);
                Some(enq.saturating_sub(settled) as f64)
            }
            Condition::DeliveryLag { quantile } => {
                let d = window.distribution(Histogram::DeliveryLatency, &[]);
                if d.count() < self.min_events.max(1) {
                    None
                } else {
                    d.quantile(*quantile)
                }
            }
            Condition::DailyBudget => timeline
                .totals()
                .reading(Gauge::HubSpotDailyUsedPermille, &[])
                .filter(|r| r.at_ms + 24 * 60 * MINUTE_MS > now_ms)
                .map(|r| r.value as f64),
        }
    }
}

/// The rule set (`ALERTS`, JSON `{"rules": [...]}`; [`AlertConfig::default`] without it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// The rules, each evaluated on its own.
    pub rules: Vec<Rule>,
}

impl Default for AlertConfig {
    /// The project's defaults: delivery and webhook error rates above 5 % over 5 minutes with
    /// at least 20 events; any dead letter within 5 minutes; more than 10,000 messages queued
    /// and not settled; p99 delivery lag above 60 s; HubSpot's daily budget above 90 %.
    fn default() -> Self {
        let rule = |name: &str, condition: Condition, above: f64| Rule {
            name: name.to_owned(),
            condition,
            above,
            clear_below: None,
            window_minutes: 5,
            min_events: 20,
            clear_minutes: 5,
        };
        Self {
            rules: vec![
                rule(
                    "delivery_error_rate",
                    Condition::ErrorRate {
                        source: RateSource::Deliveries,
                    },
                    0.05,
                ),
                rule(
                    "webhook_error_rate",
                    Condition::ErrorRate {
                        source: RateSource::Webhooks,
                    },
                    0.05,
                ),
                Rule {
                    clear_below: Some(0.0),
                    ..rule("dead_letters", Condition::DeadLetters, 0.0)
                },
                rule("queue_depth", Condition::QueueDepth, 10_000.0),
                rule(
                    "delivery_lag",
                    Condition::DeliveryLag { quantile: 0.99 },
                    60_000.0,
                ),
                rule("hubspot_daily_budget", Condition::DailyBudget, 900.0),
            ],
        }
    }
}

impl AlertConfig {
    /// Parses and checks `ALERTS`: names unique and non-empty, thresholds finite and not
    /// negative, `clearBelow` ≤ `above`, windows 1–60 minutes, quantiles 0–1.
    ///
    /// # Errors
    /// [`MetricsError::AlertConfig`] naming the field.
    pub fn parse(json: &str) -> Result<Self, MetricsError> {
        let invalid = |field: String, reason: String| MetricsError::AlertConfig { field, reason };
        let raw: serde_json::Value =
            serde_json::from_str(json).map_err(|e| invalid("ALERTS".to_owned(), e.to_string()))?;
        // serde cannot deny unknown fields next to a flattened enum: a misspelt key is found
        // here instead of being ignored.
        const KEYS: [&str; 9] = [
            "name",
            "kind",
            "source",
            "quantile",
            "above",
            "clearBelow",
            "windowMinutes",
            "minEvents",
            "clearMinutes",
        ];
        if let Some(rules) = raw.get("rules").and_then(|r| r.as_array()) {
            for (i, rule) in rules.iter().enumerate() {
                if let Some(obj) = rule.as_object() {
                    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
                        return Err(invalid(format!("rules[{i}].{k}"), "unknown field".into()));
                    }
                }
            }
        }
        let config: Self =
            serde_json::from_value(raw).map_err(|e| invalid("ALERTS".to_owned(), e.to_string()))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), MetricsError> {
        let bad = |i: usize, field: &str, reason: &str| MetricsError::AlertConfig {
            field: format!("rules[{i}].{field}"),
            reason: reason.to_owned(),
        };
        let mut names = std::collections::BTreeSet::new();
        for (i, r) in self.rules.iter().enumerate() {
            if r.name.trim().is_empty() {
                return Err(bad(i, "name", "empty"));
            }
            if !names.insert(r.name.as_str()) {
                return Err(bad(i, "name", "used by another rule"));
            }
            if !r.above.is_finite() || r.above < 0.0 {
                return Err(bad(i, "above", "must be a number ≥ 0"));
            }
            if let Some(c) = r.clear_below {
                if !c.is_finite() || c < 0.0 || c > r.above {
                    return Err(bad(i, "clearBelow", "must be between 0 and `above`"));
                }
            }
            if let Condition::ErrorRate { .. } = r.condition {
                if r.above > 1.0 {
                    return Err(bad(i, "above", "an error rate is a ratio 0–1 (0.05 = 5 %)"));
                }
            }
            if let Condition::DeliveryLag { quantile } = r.condition {
                if !(0.0..=1.0).contains(&quantile) {
                    return Err(bad(i, "quantile", "must be between 0 and 1"));
                }
            }
            if !(1..=super::MINUTES_KEPT).contains(&r.window_minutes) {
                return Err(bad(i, "windowMinutes", "must be 1–60"));
            }
            if r.clear_minutes > super::MINUTES_KEPT {
                return Err(bad(i, "clearMinutes", "must be 0–60"));
            }
        }
        Ok(())
    }
}

/// A rule's state between evaluations.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuleState {
    /// Fired and not resolved.
    pub firing: bool,
    /// When it fired (Unix ms), while firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<u64>,
    /// Since when its value has been clear, while firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_since_ms: Option<u64>,
    /// The value at the last evaluation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

/// Every rule's state (persist it between evaluations).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Alerts {
    /// By rule name.
    #[serde(default)]
    pub rules: BTreeMap<String, RuleState>,
}

/// Whether a notice says the alert fired or resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertStatus {
    /// The value went above the threshold.
    Firing,
    /// The value stayed clear for `clearMinutes`.
    Resolved,
}

/// One alert to send.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notice {
    /// `hubspot-edge.alert.v1`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The rule's name.
    pub alert: String,
    /// Fired or resolved.
    pub status: AlertStatus,
    /// The value that decided it (`None`: too few events, counted as clear).
    pub value: Option<f64>,
    /// The rule's `above`.
    pub threshold: f64,
    /// The rule's window in minutes.
    pub window_minutes: u64,
    /// When it was decided (Unix ms).
    pub at_ms: u64,
    /// When the alert fired (Unix ms).
    pub since_ms: u64,
}

impl Notice {
    /// The JSON body for `ALERT_URL` (signed by the host as Standard Webhooks).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A body Slack's incoming webhooks accept (`{"text": …}`); no personal data (values are
    /// counts and ratios).
    pub fn slack_json(&self) -> String {
        let value = self
            .value
            .map_or_else(|| "n/a".to_owned(), |v| format!("{v:.4}"));
        let text = match self.status {
            AlertStatus::Firing => format!(
                ":rotating_light: hubspot-edge alert *{}* firing: {} > {} over {} min",
                self.alert, value, self.threshold, self.window_minutes
            ),
            AlertStatus::Resolved => format!(
                ":white_check_mark: hubspot-edge alert *{}* resolved: {} (threshold {})",
                self.alert, value, self.threshold
            ),
        };
        serde_json::json!({ "text": text }).to_string()
    }
}

/// A [`Notice`] as the POST to `ALERT_URL` ([`Notice::post`]): the host sends `body` with
/// `content-type: application/json` and, when signed, the Standard Webhooks headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertPost {
    /// The JSON body.
    pub body: String,
    /// The Standard Webhooks headers' values (`webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`); `None` for Slack.
    pub signed: Option<(String, String, String)>,
}

impl Notice {
    /// The POST for this notice: Slack's `{"text": …}` when `format` (`ALERT_FORMAT`) is
    /// `slack` (any case; Slack's incoming webhooks take no signature), else
    /// [`Self::to_json`] signed as Standard Webhooks with `secret` (`ALERT_SECRET`), its id
    /// `alert_{name}_{since}_{at}` and its timestamp the decision's second.
    ///
    /// # Errors
    /// `ALERT_SECRET` is unset or not a secret: the message names the key (and the secret
    /// parser's code), never the value.
    pub fn post(&self, format: Option<&str>, secret: Option<&str>) -> Result<AlertPost, String> {
        if format.is_some_and(|f| f.eq_ignore_ascii_case("slack")) {
            return Ok(AlertPost {
                body: self.slack_json(),
                signed: None,
            });
        }
        let secret = secret.ok_or_else(|| "ALERT_SECRET is not set".to_owned())?;
        let secret = crate::outbound::WebhookSecret::parse(secret)
            .map_err(|e| format!("ALERT_SECRET: {}", e.code()))?;
        let body = self.to_json();
        let id = format!("alert_{}_{}_{}", self.alert, self.since_ms, self.at_ms);
        let ts = self.at_ms / 1000;
        let signature = secret.sign(&id, ts, body.as_bytes());
        Ok(AlertPost {
            body,
            signed: Some((id, ts.to_string(), signature)),
        })
    }
}

impl Alerts {
    /// Evaluates every rule of `config` at `now_ms`; returns the notices to send (a rule fires
    /// once, resolves once; see the module's documentation). Rules no longer configured are
    /// forgotten without a notice.
    pub fn evaluate(
        &mut self,
        config: &AlertConfig,
        timeline: &Timeline,
        now_ms: u64,
    ) -> Vec<Notice> {
        self.rules
            .retain(|name, _| config.rules.iter().any(|r| &r.name == name));
        let mut out = Vec::new();
        for rule in &config.rules {
            let value = rule.value(timeline, now_ms);
            let state = self.rules.entry(rule.name.clone()).or_default();
            state.value = value;
            let notice = |status, since_ms| Notice {
                kind: "hubspot-edge.alert.v1",
                alert: rule.name.clone(),
                status,
                value,
                threshold: rule.above,
                window_minutes: rule.window_minutes,
                at_ms: now_ms,
                since_ms,
            };
            let above = value.is_some_and(|v| v > rule.above);
            let clear = value.is_none_or(|v| v <= rule.clear_level());
            if !state.firing {
                if above {
                    state.firing = true;
                    state.since_ms = Some(now_ms);
                    state.clear_since_ms = None;
                    out.push(notice(AlertStatus::Firing, now_ms));
                }
                continue;
            }
            if !clear {
                state.clear_since_ms = None;
                continue;
            }
            let clear_since = *state.clear_since_ms.get_or_insert(now_ms);
            if now_ms.saturating_sub(clear_since) >= rule.clear_minutes * MINUTE_MS {
                let since = state.since_ms.unwrap_or(now_ms);
                *state = RuleState {
                    value,
                    ..RuleState::default()
                };
                out.push(notice(AlertStatus::Resolved, since));
            }
        }
        out
    }

    /// Whether the evaluations go on (the host re-arms its timer): while the last hour of
    /// `timeline` holds anything, so that an alert can resolve after traffic stops, or while
    /// a rule fires; otherwise they sleep until metrics arrive again.
    pub fn keep_evaluating(&self, timeline: &Timeline, now_ms: u64) -> bool {
        let active = timeline
            .window(super::Span::HourByMinute, now_ms)
            .iter()
            .any(|(_, m)| !m.is_empty());
        active || self.firing().next().is_some()
    }

    /// The rules firing now, by name.
    pub fn firing(&self) -> impl Iterator<Item = (&str, &RuleState)> {
        self.rules
            .iter()
            .filter(|(_, s)| s.firing)
            .map(|(n, s)| (n.as_str(), s))
    }
}
