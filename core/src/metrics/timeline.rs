//! Metrics over time: one bucket per minute for the last hour, one per hour for the last day,
//! and the totals since the first record (what the OpenMetrics exposition reports: counters
//! there must never go down).
//!
//! **What an update costs.** An update merges into its minute's bucket only, so a host persists
//! one small row per update ([`Changes::changed`]). Finished minutes are folded into their hour
//! and the totals once, by the first update of a later minute, and only then are the hour, the
//! totals and the fold mark ([`BucketKey::Meta`]) written again. Writing the totals on every
//! update cost 0.5 ms and 32 KB per update natively with 200 series (BENCHMARKS.md, "Metrics").
//! Reads merge the folded buckets with the minutes not folded yet.

use super::{Metrics, MetricsError};
use serde::{Deserialize, Serialize};
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

impl Span {
    /// The span a reader names: `hour` (by minute) or `day` (by hour); `None` otherwise.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "hour" => Some(Self::HourByMinute),
            "day" => Some(Self::DayByHour),
            _ => None,
        }
    }
}

/// A stored row: what a host persists one row per (the Worker's metrics Durable Object stores
/// each as one SQLite row). Read and write them with [`Timeline::row`] and
/// [`Timeline::load_row`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BucketKey {
    /// The minute starting at this Unix ms.
    Minute(u64),
    /// The hour starting at this Unix ms (folded minutes only).
    Hour(u64),
    /// Everything folded so far.
    Totals,
    /// The fold mark: every minute before it is in its hour and the totals.
    Meta,
}

impl BucketKey {
    /// A stable text form (`m:1700000000000`, `h:…`, `total`, `meta`), for storage keys.
    pub fn as_key(&self) -> String {
        match self {
            Self::Minute(t) => format!("m:{t}"),
            Self::Hour(t) => format!("h:{t}"),
            Self::Totals => "total".to_owned(),
            Self::Meta => "meta".to_owned(),
        }
    }

    /// Reads [`as_key`](Self::as_key)'s form.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "total" => return Some(Self::Totals),
            "meta" => return Some(Self::Meta),
            _ => {}
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

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Meta {
    folded_through: u64,
}

/// Minute and hour buckets and the totals (see the module's documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    minutes: BTreeMap<u64, Metrics>,
    /// Folded minutes only.
    hours: BTreeMap<u64, Metrics>,
    /// Folded minutes only.
    totals: Metrics,
    /// Every minute starting before this is folded into `hours` and `totals`.
    folded_through: u64,
}

impl Timeline {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds what was observed at `at_ms`, folds the minutes finished before `now_ms`'s minute,
    /// and drops the buckets that fell out of the window. Returns the rows to write again
    /// (changed) and to delete (dropped): normally only this minute's row.
    pub fn record(&mut self, at_ms: u64, m: &Metrics, now_ms: u64) -> Changes {
        let mut changes = Changes::default();
        let minute = at_ms - at_ms % MINUTE_MS;
        let kept = minute + MINUTES_KEPT * MINUTE_MS > now_ms;
        if kept {
            self.minutes.entry(minute).or_default().merge(m);
            changes.changed.push(BucketKey::Minute(minute));
        }
        if minute < self.folded_through || !kept {
            // A late observation for a minute already folded (or no longer kept): straight
            // into its hour (while kept) and the totals.
            let hour = at_ms - at_ms % HOUR_MS;
            if hour + HOURS_KEPT * HOUR_MS > now_ms {
                self.hours.entry(hour).or_default().merge(m);
                changes.changed.push(BucketKey::Hour(hour));
            }
            self.totals.merge(m);
            changes.changed.push(BucketKey::Totals);
        }
        let folded = self.fold(now_ms);
        for k in folded.changed {
            if !changes.changed.contains(&k) {
                changes.changed.push(k);
            }
        }
        changes.dropped = self.prune(now_ms);
        changes
    }

    /// Folds every minute that started before `now_ms`'s minute into its hour and the totals.
    fn fold(&mut self, now_ms: u64) -> Changes {
        let current = now_ms - now_ms % MINUTE_MS;
        let mut changes = Changes::default();
        if current <= self.folded_through {
            return changes;
        }
        let finished: Vec<u64> = self
            .minutes
            .range(self.folded_through..current)
            .map(|(k, _)| *k)
            .collect();
        for minute in finished {
            let hour = minute - minute % HOUR_MS;
            if let Some(m) = self.minutes.get(&minute) {
                if hour + HOURS_KEPT * HOUR_MS > now_ms {
                    self.hours.entry(hour).or_default().merge(m);
                    if !changes.changed.contains(&BucketKey::Hour(hour)) {
                        changes.changed.push(BucketKey::Hour(hour));
                    }
                }
                self.totals.merge(m);
            }
        }
        self.folded_through = current;
        changes.changed.push(BucketKey::Totals);
        changes.changed.push(BucketKey::Meta);
        changes
    }

    /// Drops the buckets older than the window ending at `now_ms` (folded already by
    /// [`record`](Self::record)); returns their rows.
    fn prune(&mut self, now_ms: u64) -> Vec<BucketKey> {
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

    /// A row's stored text, to persist it; `None` for a bucket that does not exist.
    pub fn row(&self, key: BucketKey) -> Option<String> {
        match key {
            BucketKey::Minute(t) => self.minutes.get(&t).map(Metrics::to_json),
            BucketKey::Hour(t) => self.hours.get(&t).map(Metrics::to_json),
            BucketKey::Totals => Some(self.totals.to_json()),
            BucketKey::Meta => serde_json::to_string(&Meta {
                folded_through: self.folded_through,
            })
            .ok(),
        }
    }

    /// Puts back a persisted row (replacing what is there).
    ///
    /// # Errors
    /// [`MetricsError::Invalid`] when `text` is not what [`row`](Self::row) wrote.
    pub fn load_row(&mut self, key: BucketKey, text: &str) -> Result<(), MetricsError> {
        match key {
            BucketKey::Minute(t) => {
                self.minutes.insert(t, Metrics::from_json(text)?);
            }
            BucketKey::Hour(t) => {
                self.hours.insert(t, Metrics::from_json(text)?);
            }
            BucketKey::Totals => self.totals = Metrics::from_json(text)?,
            BucketKey::Meta => {
                let meta: Meta =
                    serde_json::from_str(text).map_err(|e| MetricsError::Invalid(e.to_string()))?;
                self.folded_through = meta.folded_through;
            }
        }
        Ok(())
    }

    /// The minutes not folded yet (at most the current one and any late ones).
    fn unfolded(&self) -> impl Iterator<Item = (&u64, &Metrics)> {
        self.minutes.range(self.folded_through..)
    }

    /// Everything since the first record.
    pub fn totals(&self) -> Metrics {
        let mut out = self.totals.clone();
        for (_, m) in self.unfolded() {
            out.merge(m);
        }
        out
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
        match span {
            Span::HourByMinute => {
                let current = now_ms - now_ms % MINUTE_MS;
                (0..MINUTES_KEPT)
                    .rev()
                    .map(|i| {
                        let start = current.saturating_sub(i * MINUTE_MS);
                        (start, self.minutes.get(&start).cloned().unwrap_or_default())
                    })
                    .collect()
            }
            Span::DayByHour => {
                let current = now_ms - now_ms % HOUR_MS;
                (0..HOURS_KEPT)
                    .rev()
                    .map(|i| {
                        let start = current.saturating_sub(i * HOUR_MS);
                        let mut m = self.hours.get(&start).cloned().unwrap_or_default();
                        for (_, minute) in self
                            .unfolded()
                            .filter(|(k, _)| **k >= start && **k < start + HOUR_MS)
                        {
                            m.merge(minute);
                        }
                        (start, m)
                    })
                    .collect()
            }
        }
    }
}

/// The rows a [`Timeline::record`] changed and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// To write again ([`Timeline::row`]).
    pub changed: Vec<BucketKey>,
    /// To delete.
    pub dropped: Vec<BucketKey>,
}
