//! Metrics over time: one bucket per minute for the last hour, one per hour for the last day,
//! and the totals since the first record (what the OpenMetrics exposition reports: counters
//! there must never go down).

use super::Metrics;
use std::collections::BTreeMap;

/// Minute buckets kept (the last hour, by minute).
pub const MINUTES_KEPT: u64 = 60;
/// Hour buckets kept (the last day, by hour).
pub const HOURS_KEPT: u64 = 24;

const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;

/// A window of buckets to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The last [`MINUTES_KEPT`] minutes, by minute.
    HourByMinute,
    /// The last [`HOURS_KEPT`] hours, by hour.
    DayByHour,
}

/// Where a bucket is kept: what a host persists one row per (the Worker's metrics Durable
/// Object stores each as one SQLite row, so that recording touches three rows, not the day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BucketKey {
    /// The minute starting at this Unix ms.
    Minute(u64),
    /// The hour starting at this Unix ms.
    Hour(u64),
    /// Everything since the first record.
    Totals,
}

impl BucketKey {
    /// A stable text form (`m:1700000000000`, `h:…`, `total`), for storage keys.
    pub fn as_key(&self) -> String {
        match self {
            Self::Minute(t) => format!("m:{t}"),
            Self::Hour(t) => format!("h:{t}"),
            Self::Totals => "total".to_owned(),
        }
    }

    /// Reads [`as_key`](Self::as_key)'s form.
    pub fn parse(text: &str) -> Option<Self> {
        if text == "total" {
            return Some(Self::Totals);
        }
        let (kind, at) = text.split_once(':')?;
        let at: u64 = at.parse().ok()?;
        match kind {
            "m" => Some(Self::Minute(at)),
            "h" => Some(Self::Hour(at)),
            _ => None,
        }
    }
}

/// Minute and hour buckets and the totals (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    minutes: BTreeMap<u64, Metrics>,
    hours: BTreeMap<u64, Metrics>,
    totals: Metrics,
}

impl Timeline {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds what was observed at `at_ms` to its minute, its hour and the totals, and drops the
    /// buckets that fell out of the window ending at `now_ms`. Returns the buckets to persist
    /// (changed) and to delete (dropped). An observation older than the hours kept reaches the
    /// totals only.
    pub fn record(&mut self, at_ms: u64, m: &Metrics, now_ms: u64) -> Changes {
        let mut changes = Changes::default();
        let minute = at_ms - at_ms % MINUTE_MS;
        let hour = at_ms - at_ms % HOUR_MS;
        if minute + MINUTES_KEPT * MINUTE_MS > now_ms {
            self.minutes.entry(minute).or_default().merge(m);
            changes.changed.push(BucketKey::Minute(minute));
        }
        if hour + HOURS_KEPT * HOUR_MS > now_ms {
            self.hours.entry(hour).or_default().merge(m);
            changes.changed.push(BucketKey::Hour(hour));
        }
        self.totals.merge(m);
        changes.changed.push(BucketKey::Totals);
        changes.dropped = self.prune(now_ms);
        changes
    }

    /// Drops the buckets older than the window ending at `now_ms`; returns them.
    pub fn prune(&mut self, now_ms: u64) -> Vec<BucketKey> {
        let old_minutes: Vec<u64> = self
            .minutes
            .keys()
            .take_while(|k| *k + MINUTES_KEPT * MINUTE_MS <= now_ms)
            .copied()
            .collect();
        let old_hours: Vec<u64> = self
            .hours
            .keys()
            .take_while(|k| *k + HOURS_KEPT * HOUR_MS <= now_ms)
            .copied()
            .collect();
        let mut dropped = Vec::with_capacity(old_minutes.len() + old_hours.len());
        for k in old_minutes {
            self.minutes.remove(&k);
            dropped.push(BucketKey::Minute(k));
        }
        for k in old_hours {
            self.hours.remove(&k);
            dropped.push(BucketKey::Hour(k));
        }
        dropped
    }

    /// A bucket, to persist it.
    pub fn get(&self, key: BucketKey) -> Option<&Metrics> {
        match key {
            BucketKey::Minute(t) => self.minutes.get(&t),
            BucketKey::Hour(t) => self.hours.get(&t),
            BucketKey::Totals => Some(&self.totals),
        }
    }

    /// Puts back a persisted bucket (replacing what is there).
    pub fn load(&mut self, key: BucketKey, m: Metrics) {
        match key {
            BucketKey::Minute(t) => {
                self.minutes.insert(t, m);
            }
            BucketKey::Hour(t) => {
                self.hours.insert(t, m);
            }
            BucketKey::Totals => self.totals = m,
        }
    }

    /// Everything since the first record.
    pub fn totals(&self) -> &Metrics {
        &self.totals
    }

    /// The last `minutes` whole or partial minutes up to `now_ms` merged (the current minute
    /// included): what alert rules read.
    pub fn last_minutes(&self, now_ms: u64, minutes: u64) -> Metrics {
        let current = now_ms - now_ms % MINUTE_MS;
        let from = current.saturating_sub(minutes.saturating_sub(1) * MINUTE_MS);
        let mut out = Metrics::new();
        for m in self.minutes.range(from..=current).map(|(_, m)| m) {
            out.merge(m);
        }
        out
    }

    /// The buckets of `span` ending with the one holding `now_ms`, oldest first, each with its
    /// start (Unix ms); a bucket nothing was recorded in is empty.
    pub fn window(&self, span: Span, now_ms: u64) -> Vec<(u64, Metrics)> {
        let (map, width, n) = match span {
            Span::HourByMinute => (&self.minutes, MINUTE_MS, MINUTES_KEPT),
            Span::DayByHour => (&self.hours, HOUR_MS, HOURS_KEPT),
        };
        let current = now_ms - now_ms % width;
        (0..n)
            .rev()
            .map(|i| {
                let start = current.saturating_sub(i * width);
                (start, map.get(&start).cloned().unwrap_or_default())
            })
            .collect()
    }
}

/// The buckets a [`Timeline::record`] changed and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// To write again.
    pub changed: Vec<BucketKey>,
    /// To delete.
    pub dropped: Vec<BucketKey>,
}
