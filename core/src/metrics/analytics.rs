//! One invocation's [`Metrics`] as Workers Analytics Engine data points: the production
//! history, kept by Cloudflare for 3 months and queried with SQL, next to the exact totals the
//! metrics Durable Object keeps (README, "Operating it").
//!
//! Limits (<https://developers.cloudflare.com/analytics/analytics-engine/limits/>): at most
//! 250 data points per invocation ([`MAX_DATA_POINTS`]), 20 blobs and 20 doubles each, one
//! index of at most 96 bytes. The index is the sampling key, so it is the portal: per-portal
//! queries stay accurate under sampling.
//!
//! One point per series, written once per invocation (when the host flushes its metrics):
//!
//! | field | counter | histogram | gauge |
//! | --- | --- | --- | --- |
//! | `index1` | the `portal` label, else `all` | same | same |
//! | `blob1` | metric name ([`Name::as_str`]) | same | same |
//! | `blob2` | `counter` | `histogram` | `gauge` |
//! | `blob3` | the labels, `key=value` joined with `,`, keys sorted | same | same |
//! | `double1` | the increment | observations | the value |
//! | `double2` | | sum of milliseconds | |
//! | `double3`… | | observations at or under 10 ms, 100 ms, 1 s, 5 s, 30 s, 5 min ([`HISTOGRAM_BOUNDS_MS`]) | |
//!
//! So `SUM(_sample_interval * double1)` counts, and `SUM(double4) / SUM(double1)` is the
//! fraction of deliveries under 100 ms, for any window and portal.

use super::{Metrics, Name, Value, BUCKETS_MS};

/// At most this many data points per invocation (Cloudflare's limit for `writeDataPoint`).
pub const MAX_DATA_POINTS: usize = 250;

/// The bounds a histogram's point counts observations under (`double3`…), each one of
/// [`BUCKETS_MS`].
pub const HISTOGRAM_BOUNDS_MS: [u64; 6] = [10, 100, 1_000, 5_000, 30_000, 300_000];

/// The name of the point that counts series left out beyond [`MAX_DATA_POINTS`].
pub const DROPPED_NAME: &str = "hubspot_edge_analytics_dropped";

/// One Analytics Engine data point.
#[derive(Debug, Clone, PartialEq)]
pub struct DataPoint {
    /// `index1`: the portal, or `all`.
    pub index: String,
    /// `blob1`…: name, kind, labels.
    pub blobs: Vec<String>,
    /// `double1`…: see the module docs.
    pub doubles: Vec<f64>,
}

/// The data points for `m`, at most [`MAX_DATA_POINTS`]: counters first, then histograms, then
/// gauges; when there are more series, the last point is [`DROPPED_NAME`] with how many were
/// left out (they are still in the Durable Object's exact totals).
pub fn data_points(m: &Metrics) -> Vec<DataPoint> {
    let mut series: Vec<_> = m.iter().collect();
    // Counters, histograms, gauges: the most queried first.
    series.sort_by_key(|(name, _, _)| match name {
        Name::Counter(_) => 0,
        Name::Histogram(_) => 1,
        Name::Gauge(_) => 2,
    });
    let room = if series.len() > MAX_DATA_POINTS {
        MAX_DATA_POINTS - 1
    } else {
        MAX_DATA_POINTS
    };
    let mut points: Vec<DataPoint> = series
        .iter()
        .take(room)
        .map(|(name, labels, value)| {
            let index = labels
                .iter()
                .find(|(k, _)| k == "portal")
                .map_or_else(|| "all".to_owned(), |(_, v)| v.clone());
            let joined = labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(",");
            #[allow(clippy::cast_precision_loss)]
            let (kind, doubles) = match value {
                Value::Count(n) => ("counter", vec![*n as f64]),
                Value::Distribution(d) => {
                    let mut doubles = vec![d.count() as f64, d.sum_ms as f64];
                    doubles.extend(HISTOGRAM_BOUNDS_MS.iter().map(|bound| {
                        let upto = BUCKETS_MS.iter().take_while(|b| *b <= bound).count();
                        d.counts.iter().take(upto).sum::<u64>() as f64
                    }));
                    ("histogram", doubles)
                }
                Value::Reading(r) => ("gauge", vec![r.value as f64]),
            };
            DataPoint {
                index: truncate(index, 96),
                blobs: vec![name.as_str().to_owned(), kind.to_owned(), joined],
                doubles,
            }
        })
        .collect();
    if series.len() > room {
        #[allow(clippy::cast_precision_loss)]
        points.push(DataPoint {
            index: "all".to_owned(),
            blobs: vec![DROPPED_NAME.to_owned(), "counter".to_owned(), String::new()],
            doubles: vec![(series.len() - room) as f64],
        });
    }
    points
}

/// At most `max` bytes, cut at a character boundary (Analytics Engine's index limit).
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::metrics::{Counter, Gauge, Histogram};

    #[test]
    fn one_point_per_series_indexed_by_portal() {
        let mut m = Metrics::new();
        m.add(
            Counter::Deliveries,
            &[("result", "success"), ("portal", "33")],
            3,
        );
        m.add(Counter::WebhookRequests, &[("outcome", "accepted")], 2);
        for ms in [4, 40, 400, 4_000, 40_000] {
            m.observe(Histogram::DeliveryLatency, &[("portal", "33")], ms);
        }
        m.set(Gauge::DeadLetterStoreSize, &[], 7, 1_000);
        let points = data_points(&m);
        assert_eq!(points.len(), 4);
        let find = |name: &str| points.iter().find(|p| p.blobs[0] == name).unwrap();
        let d = find("hubspot_edge_deliveries");
        assert_eq!(d.index, "33");
        assert_eq!(d.blobs[1..], ["counter", "portal=33,result=success"]);
        assert_eq!(d.doubles, [3.0]);
        assert_eq!(find("hubspot_edge_webhook_requests").index, "all");
        let h = find("hubspot_edge_delivery_latency_seconds");
        // count, sum, then ≤10 ms, ≤100 ms, ≤1 s, ≤5 s, ≤30 s, ≤5 min.
        assert_eq!(h.doubles, [5.0, 44_444.0, 1.0, 2.0, 3.0, 4.0, 4.0, 5.0]);
        let g = find("hubspot_edge_dead_letter_store_size");
        assert_eq!((g.blobs[1].as_str(), g.doubles[0]), ("gauge", 7.0));
        // Counters come first.
        assert_eq!(points[0].blobs[1], "counter");
        assert!(points
            .iter()
            .all(|p| p.blobs.len() <= 20 && p.doubles.len() <= 20));
    }

    #[test]
    fn at_most_250_points_and_the_rest_counted() {
        let mut m = Metrics::new();
        for i in 0..400 {
            m.add(Counter::Events, &[("portal", &i.to_string())], 1);
        }
        let points = data_points(&m);
        assert_eq!(points.len(), MAX_DATA_POINTS);
        let last = points.last().unwrap();
        assert_eq!(
            (last.blobs[0].as_str(), last.doubles[0]),
            (DROPPED_NAME, 151.0)
        );
        assert!(data_points(&Metrics::new()).is_empty());
    }

    #[test]
    fn the_index_fits_96_bytes() {
        let long = "é".repeat(60);
        let mut m = Metrics::new();
        m.add(Counter::Events, &[("portal", &long)], 1);
        let p = &data_points(&m)[0];
        assert!(p.index.len() <= 96 && long.starts_with(&p.index));
    }
}
