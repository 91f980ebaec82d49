//! Metrics as values: counters, gauges and latency histograms that fold observations and merge
//! with one another, a timeline of them by minute and hour, their rendering in the
//! OpenMetrics text format, and alert rules evaluated over the timeline ([`alert`]).
//!
//! No I/O: the host counts what one invocation did into a [`Metrics`] (cheap: a few map
//! updates per event), sends it once per invocation to wherever metrics are kept exactly (the
//! Worker's metrics Durable Object), which [`Timeline::record`]s it; readers render
//! [`Timeline::totals`] ([`openmetrics::render`]) or a window of buckets.
//!
//! - **Names are stable** ([`Counter`], [`Histogram`], [`Gauge`]: the names, kinds, help texts and
//!   label keys are the contract with dashboards and alerts; README, "Operating it").
//! - **Bounded**: a [`Metrics`] holds at most [`MAX_SERIES`] series (distinct name + labels);
//!   observations of further series are counted in [`Metrics::dropped`], never stored, so a
//!   label with unbounded values cannot exhaust the 128 MB an isolate has.
//! - **Histograms** have fixed buckets ([`BUCKETS_MS`]), so two merge exactly; quantiles are
//!   estimated by linear interpolation inside a bucket (error at most the bucket's width).

pub mod alert;
pub mod analytics;
pub mod openmetrics;
mod timeline;

#[cfg(test)]
mod tests;

pub use timeline::{BucketKey, Changes, Span, Timeline, HOURS_KEPT, MINUTES_KEPT};

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most series one [`Metrics`] holds. Every label value we emit comes from a closed set
/// (codes, reasons, queues, budgets, object types, action keys) times the portals served; 1,000
/// series of at most ~300 bytes each keep a bucket under 0.3 MB, and the timeline's 84 buckets
/// ([`MINUTES_KEPT`] + [`HOURS_KEPT`]) under 26 MB of the 128 MB an isolate may use
/// (Cloudflare Workers' memory limit).
pub const MAX_SERIES: usize = 1_000;

/// Upper bounds of the histogram buckets, in milliseconds; a last, unbounded bucket follows.
/// From 1 ms (a loopback destination) to 6 hours: a delivery's latency includes its retries'
/// backoff (minutes to hours while a destination is down), and an alert on the p99 lag must be
/// able to see beyond its threshold.
pub const BUCKETS_MS: [u64; 20] = [
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000,
    300_000, 900_000, 3_600_000, 21_600_000,
];

/// Monotonic counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    /// Webhook requests at `POST /webhooks/hubspot`; labels `outcome` (`accepted`,
    /// `rejected`), `code` (the error code of a rejection).
    WebhookRequests,
    /// Webhook events by `stage`: `received`, `filtered`, `duplicate`, `echo_suppressed`,
    /// `queued`; label `portal`.
    Events,
    /// Delivery attempts to a destination by `result` (`success`, `failure`) and, for failures,
    /// `class` (`timeout`, `network`, `http_5xx`, `http_429`, `http_4xx`, `redirect`, …);
    /// label `destination`.
    Deliveries,
    /// Deliveries put back for a later attempt; label `destination`.
    DeliveryRetries,
    /// Letters written to the dead-letter store; label `reason`.
    DeadLetters,
    /// Letters leaving the dead-letter store; label `how` (`redriven`, `deleted`).
    DeadLettersRemoved,
    /// Messages sent to a queue; label `queue`.
    QueueEnqueued,
    /// Messages acknowledged (or dead-lettered) by a queue's consumer; label `queue`.
    QueueSettled,
    /// HubSpot API calls by `budget` (`burst`, `search`) and `status` class.
    HubSpotCalls,
    /// HubSpot 429 answers by `policy` (`TEN_SECONDLY_ROLLING`, `SECONDLY`, `DAILY`, …).
    HubSpotRateLimited,
    /// Sync records by `object_type` and `outcome`: `read`, `upserted` (delivered as created or
    /// changed), `unchanged`, `deleted`, `merged`, `rejected`.
    SyncRecords,
    /// Workflow action executions by `action` (a configured key) and `outcome`: `success`,
    /// `fail_continue`, `block` (the action ran), `answered`, `blocked` (answered in the same
    /// round trip as the admission), `replayed` (a retry of one already admitted), `refused`
    /// (400: the request does not fit the definition).
    ActionExecutions,
    /// Blocked executions settled, by `outcome`: `completed` (HubSpot accepted the
    /// completion), `expired` (no completion before the block's expiry), `failed` (HubSpot
    /// refused it for good: dead-lettered).
    ActionCompletions,
    /// Updates the metrics store received (one per invocation that counted anything): what
    /// keeping metrics costs.
    MetricsFlushes,
    /// Data points written to Workers Analytics Engine (when its binding is configured;
    /// [`analytics`]).
    AnalyticsPoints,
}

/// Latency distributions, observed in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Histogram {
    /// From the webhook's receipt to the destination's 2xx (all destinations).
    DeliveryLatency,
    /// The destination's response time per attempt, answered, timed out or failed (all
    /// destinations: events, rule effects, sync batches).
    DestinationResponse,
    /// HubSpot API response time; label `budget`.
    HubSpotLatency,
    /// Webhook request handling time at the edge (receipt to response).
    WebhookResponse,
    /// From a blocked execution's completion arriving (a callback, a late lookup) to HubSpot
    /// accepting it: the batcher's window and its retries.
    ActionCompletionLatency,
}

/// Values that go up and down, set by whoever knows them; the latest (by time) wins a merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gauge {
    /// Letters in the dead-letter store (no labels), set after the store changed (a letter
    /// stored, re-driven or deleted) from a listing corrected by that change
    /// ([`crate::dead_letter::store_size`]).
    DeadLetterStoreSize,
    /// Seconds between the sync cursor of `object_type` and when it was read ([`lag_secs`]);
    /// labels `object_type`, `portal`.
    SyncCursorLag,
    /// Blocked workflow executions waiting for completion; label `portal`.
    ActionsBlocked,
    /// Per mille of HubSpot's daily call budget spent today
    /// ([`crate::ratelimit::Governor::daily_used_permille`]; no labels: one account).
    HubSpotDailyUsedPermille,
}

/// What a series counts. Serialises as the variant's own name (`"deliveries"`); read by hand,
/// not as `#[serde(untagged)]` (which buffers through serde's `ContentDeserializer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(untagged)]
pub enum Name {
    /// A counter.
    Counter(Counter),
    /// A histogram.
    Histogram(Histogram),
    /// A gauge.
    Gauge(Gauge),
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::value::StrDeserializer;
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        let of = || StrDeserializer::<D::Error>::new(&text);
        Counter::deserialize(of())
            .map(Self::Counter)
            .or_else(|_| Histogram::deserialize(of()).map(Self::Histogram))
            .or_else(|_| Gauge::deserialize(of()).map(Self::Gauge))
            .map_err(|_| serde::de::Error::custom(format!("unknown metric name `{text}`")))
    }
}

impl Name {
    /// The name in the OpenMetrics exposition, without suffixes (`_total`, `_bucket`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter(c) => match c {
                Counter::WebhookRequests => "hubspot_edge_webhook_requests",
                Counter::Events => "hubspot_edge_events",
                Counter::Deliveries => "hubspot_edge_deliveries",
                Counter::DeliveryRetries => "hubspot_edge_delivery_retries",
                Counter::DeadLetters => "hubspot_edge_dead_letters",
                Counter::DeadLettersRemoved => "hubspot_edge_dead_letters_removed",
                Counter::QueueEnqueued => "hubspot_edge_queue_enqueued",
                Counter::QueueSettled => "hubspot_edge_queue_settled",
                Counter::HubSpotCalls => "hubspot_edge_hubspot_calls",
                Counter::HubSpotRateLimited => "hubspot_edge_hubspot_rate_limited",
                Counter::SyncRecords => "hubspot_edge_sync_records",
                Counter::ActionExecutions => "hubspot_edge_action_executions",
                Counter::ActionCompletions => "hubspot_edge_action_completions",
                Counter::MetricsFlushes => "hubspot_edge_metrics_flushes",
                Counter::AnalyticsPoints => "hubspot_edge_analytics_points",
            },
            Self::Histogram(h) => match h {
                Histogram::DeliveryLatency => "hubspot_edge_delivery_latency_seconds",
                Histogram::DestinationResponse => "hubspot_edge_destination_response_seconds",
                Histogram::HubSpotLatency => "hubspot_edge_hubspot_latency_seconds",
                Histogram::WebhookResponse => "hubspot_edge_webhook_response_seconds",
                Histogram::ActionCompletionLatency => {
                    "hubspot_edge_action_completion_latency_seconds"
                }
            },
            Self::Gauge(g) => match g {
                Gauge::DeadLetterStoreSize => "hubspot_edge_dead_letter_store_size",
                Gauge::SyncCursorLag => "hubspot_edge_sync_cursor_lag_seconds",
                Gauge::ActionsBlocked => "hubspot_edge_actions_blocked",
                Gauge::HubSpotDailyUsedPermille => "hubspot_edge_hubspot_daily_used_permille",
            },
        }
    }

    /// One line of help for the exposition's `# HELP`.
    pub fn help(self) -> &'static str {
        match self {
            Self::Counter(c) => match c {
                Counter::WebhookRequests => "Webhook requests by outcome and error code.",
                Counter::Events => "Webhook events by pipeline stage.",
                Counter::Deliveries => "Delivery attempts by result and failure class.",
                Counter::DeliveryRetries => "Deliveries put back for a later attempt.",
                Counter::DeadLetters => "Letters written to the dead-letter store, by reason.",
                Counter::DeadLettersRemoved => "Letters re-driven or deleted.",
                Counter::QueueEnqueued => "Messages sent to a queue.",
                Counter::QueueSettled => "Messages a queue's consumer settled.",
                Counter::HubSpotCalls => "HubSpot API calls by budget and status class.",
                Counter::HubSpotRateLimited => "HubSpot 429 answers by policy.",
                Counter::SyncRecords => "Sync records by object type and outcome.",
                Counter::ActionExecutions => "Workflow action executions by outcome.",
                Counter::ActionCompletions => "Blocked executions completed, by outcome.",
                Counter::MetricsFlushes => "Updates the metrics store received.",
                Counter::AnalyticsPoints => "Data points written to Workers Analytics Engine.",
            },
            Self::Histogram(h) => match h {
                Histogram::DeliveryLatency => "Webhook receipt to destination 2xx.",
                Histogram::DestinationResponse => "Destination response time per attempt.",
                Histogram::HubSpotLatency => "HubSpot API response time.",
                Histogram::WebhookResponse => "Webhook request handling time at the edge.",
                Histogram::ActionCompletionLatency => "Completion received to HubSpot accepted.",
            },
            Self::Gauge(g) => match g {
                Gauge::DeadLetterStoreSize => "Letters in the dead-letter store.",
                Gauge::SyncCursorLag => "Seconds the sync cursor is behind now.",
                Gauge::ActionsBlocked => "Blocked workflow executions waiting.",
                Gauge::HubSpotDailyUsedPermille => "Per mille of the daily HubSpot budget spent.",
            },
        }
    }
}

/// A lag in whole seconds for a gauge such as [`Gauge::SyncCursorLag`]:
/// `now_ms − since_ms` rounded down, `0` when `since_ms` is in the future (clocks of two
/// machines), saturating at `i64::MAX`.
pub fn lag_secs(since_ms: u64, now_ms: u64) -> i64 {
    i64::try_from(now_ms.saturating_sub(since_ms) / 1_000).unwrap_or(i64::MAX)
}

/// A code as a label value: lowercase letters, digits and `_`, at most 40 bytes (the stable
/// codes this project writes); anything else `other`, so that a label stays a small, closed
/// set.
pub fn code_label(code: &str) -> &str {
    let ok = !code.is_empty()
        && code.len() <= 40
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit());
    if ok {
        code
    } else {
        "other"
    }
}

/// A series' labels: `(key, value)` pairs sorted by key, keys unique.
pub type Labels = Vec<(String, String)>;

/// A bucketed latency distribution (milliseconds), mergeable exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    /// Observations per bucket: `counts[i]` ≤ [`BUCKETS_MS`]`[i]`, the last one above them all.
    /// Empty when nothing was observed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counts: Vec<u64>,
    /// The sum of the observations, in milliseconds.
    pub sum_ms: u64,
}

impl Distribution {
    /// Adds one observation of `ms` milliseconds.
    pub fn observe(&mut self, ms: u64) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS_MS.len() + 1];
        }
        let i = BUCKETS_MS
            .iter()
            .position(|&b| ms <= b)
            .unwrap_or(BUCKETS_MS.len());
        self.counts[i] += 1;
        self.sum_ms = self.sum_ms.saturating_add(ms);
    }

    /// Adds `other`'s observations.
    pub fn merge(&mut self, other: &Self) {
        if other.counts.is_empty() {
            return;
        }
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS_MS.len() + 1];
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a = a.saturating_add(*b);
        }
        self.sum_ms = self.sum_ms.saturating_add(other.sum_ms);
    }

    /// How many observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0.0–1.0) in milliseconds, interpolated linearly inside its bucket;
    /// `None` without observations. Above the last bound, the last bound is answered (a lower
    /// bound of the truth).
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        #[allow(clippy::cast_precision_loss)]
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let mut below = 0u64;
        for (i, &n) in self.counts.iter().enumerate() {
            #[allow(clippy::cast_precision_loss)]
            if n > 0 && (below + n) as f64 >= rank {
                let lo = if i == 0 { 0 } else { BUCKETS_MS[i - 1] };
                let Some(&hi) = BUCKETS_MS.get(i) else {
                    #[allow(clippy::cast_precision_loss)]
                    return Some(BUCKETS_MS[BUCKETS_MS.len() - 1] as f64);
                };
                #[allow(clippy::cast_precision_loss)]
                let within = ((rank - below as f64) / n as f64).clamp(0.0, 1.0);
                #[allow(clippy::cast_precision_loss)]
                return Some(lo as f64 + within * (hi - lo) as f64);
            }
            below += n;
        }
        #[allow(clippy::cast_precision_loss)]
        Some(BUCKETS_MS[BUCKETS_MS.len() - 1] as f64)
    }
}

/// A gauge's value and when it was set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// The value.
    pub value: i64,
    /// When it was set (Unix ms).
    pub at_ms: u64,
}

/// One series' value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    /// A count.
    Count(u64),
    /// A distribution.
    Distribution(Distribution),
    /// A gauge reading.
    Reading(Reading),
}

/// One series in the serialised form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Entry {
    name: Name,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    labels: Labels,
    value: Value,
}

/// What some span of work observed: counters, distributions and gauge readings by series.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    series: BTreeMap<(Name, Labels), Value>,
    dropped: u64,
}

/// The serialised form: a list of series, so that it reads as JSON with any map key.
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(default)]
    series: Vec<Entry>,
    #[serde(default, skip_serializing_if = "is_zero")]
    dropped: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Serialize for Metrics {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Wire {
            series: self
                .series
                .iter()
                .map(|((name, labels), value)| Entry {
                    name: *name,
                    labels: labels.clone(),
                    value: value.clone(),
                })
                .collect(),
            dropped: self.dropped,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Metrics {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let wire = Wire::deserialize(d)?;
        let mut m = Self {
            dropped: wire.dropped,
            ..Self::default()
        };
        for e in wire.series {
            let mut labels = e.labels;
            labels.sort();
            labels.dedup_by(|a, b| a.0 == b.0);
            m.merge_value(e.name, labels, &e.value);
        }
        Ok(m)
    }
}

fn labels_of(labels: &[(&str, &str)]) -> Labels {
    let mut out: Labels = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    out
}

impl Metrics {
    /// Nothing observed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to a counter.
    pub fn add(&mut self, counter: Counter, labels: &[(&str, &str)], n: u64) {
        self.merge_value(Name::Counter(counter), labels_of(labels), &Value::Count(n));
    }

    /// Observes one latency of `ms` milliseconds.
    pub fn observe(&mut self, histogram: Histogram, labels: &[(&str, &str)], ms: u64) {
        let mut d = Distribution::default();
        d.observe(ms);
        self.merge_value(
            Name::Histogram(histogram),
            labels_of(labels),
            &Value::Distribution(d),
        );
    }

    /// Sets a gauge to `value` as of `at_ms`; an older reading does not replace a newer one.
    pub fn set(&mut self, gauge: Gauge, labels: &[(&str, &str)], value: i64, at_ms: u64) {
        self.merge_value(
            Name::Gauge(gauge),
            labels_of(labels),
            &Value::Reading(Reading { value, at_ms }),
        );
    }

    /// Adds everything `other` observed.
    pub fn merge(&mut self, other: &Self) {
        for ((name, labels), value) in &other.series {
            self.merge_value(*name, labels.clone(), value);
        }
        self.dropped = self.dropped.saturating_add(other.dropped);
    }

    fn merge_value(&mut self, name: Name, labels: Labels, value: &Value) {
        let full = self.series.len() >= MAX_SERIES;
        let key = (name, labels);
        match self.series.get_mut(&key) {
            Some(existing) => match (existing, value) {
                (Value::Count(a), Value::Count(b)) => *a = a.saturating_add(*b),
                (Value::Distribution(a), Value::Distribution(b)) => a.merge(b),
                (Value::Reading(a), Value::Reading(b)) => {
                    if b.at_ms >= a.at_ms {
                        *a = *b;
                    }
                }
                // A series' kind follows from its name, so kinds always match; a foreign
                // serialisation that mixes them is counted as dropped rather than trusted.
                _ => self.dropped = self.dropped.saturating_add(1),
            },
            None if full => self.dropped = self.dropped.saturating_add(1),
            None => {
                let kind_ok = matches!(
                    (&key.0, value),
                    (Name::Counter(_), Value::Count(_))
                        | (Name::Histogram(_), Value::Distribution(_))
                        | (Name::Gauge(_), Value::Reading(_))
                );
                if kind_ok {
                    self.series.insert(key, value.clone());
                } else {
                    self.dropped = self.dropped.saturating_add(1);
                }
            }
        }
    }

    /// Whether nothing was observed.
    pub fn is_empty(&self) -> bool {
        self.series.is_empty() && self.dropped == 0
    }

    /// Observations of series beyond [`MAX_SERIES`] (or of a kind that does not match their
    /// name), not stored.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// How many series.
    pub fn len(&self) -> usize {
        self.series.len()
    }

    /// A counter's total over the series whose labels include all of `matching`.
    pub fn count(&self, counter: Counter, matching: &[(&str, &str)]) -> u64 {
        self.matching(Name::Counter(counter), matching)
            .filter_map(|v| match v {
                Value::Count(n) => Some(*n),
                _ => None,
            })
            .fold(0, u64::saturating_add)
    }

    /// A histogram's distribution over the series whose labels include all of `matching`.
    pub fn distribution(&self, histogram: Histogram, matching: &[(&str, &str)]) -> Distribution {
        let mut out = Distribution::default();
        for v in self.matching(Name::Histogram(histogram), matching) {
            if let Value::Distribution(d) = v {
                out.merge(d);
            }
        }
        out
    }

    /// A gauge's newest reading over the series whose labels include all of `matching`.
    pub fn reading(&self, gauge: Gauge, matching: &[(&str, &str)]) -> Option<Reading> {
        self.matching(Name::Gauge(gauge), matching)
            .filter_map(|v| match v {
                Value::Reading(r) => Some(*r),
                _ => None,
            })
            .max_by_key(|r| r.at_ms)
    }

    /// Every series: name, labels, value.
    pub fn iter(&self) -> impl Iterator<Item = (Name, &Labels, &Value)> {
        self.series.iter().map(|((n, l), v)| (*n, l, v))
    }

    fn matching<'a>(
        &'a self,
        name: Name,
        matching: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.series
            .iter()
            .filter(move |((n, labels), _)| {
                *n == name
                    && matching
                        .iter()
                        .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| v)
    }

    /// The JSON form (a list of series), what a host sends to where metrics are kept.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{\"series\":[]}".to_owned())
    }

    /// Reads [`to_json`](Self::to_json)'s form.
    ///
    /// # Errors
    /// [`MetricsError::Invalid`] when `text` is not that form.
    pub fn from_json(text: &str) -> Result<Self, MetricsError> {
        serde_json::from_str(text).map_err(|e| MetricsError::Invalid(e.to_string()))
    }
}

/// Errors of this module, with stable codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsError {
    /// A serialised [`Metrics`] or [`Timeline`] that does not parse.
    #[error("metrics_invalid: {0}")]
    Invalid(String),
    /// An alert configuration that does not parse or holds an invalid value; names the field.
    #[error("alerts_invalid: {field}: {reason}")]
    AlertConfig {
        /// The field, e.g. `rules[1].threshold`.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

impl MetricsError {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "metrics_invalid",
            Self::AlertConfig { .. } => "alerts_invalid",
        }
    }
}
