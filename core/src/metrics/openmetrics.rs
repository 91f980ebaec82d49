//! The OpenMetrics text exposition (what Prometheus, Grafana Agent and Datadog's OpenMetrics
//! check scrape): <https://github.com/OpenObservability/OpenMetrics/blob/main/specification/OpenMetrics.md>.
//!
//! Counters are `…_total` samples of a `counter` family; histograms are in seconds (`_bucket`
//! with cumulative counts and `le`, `_sum`, `_count`); gauges as they are. Derived here:
//! `hubspot_edge_queue_depth{queue}` = enqueued − settled, and
//! `hubspot_edge_metrics_dropped_series_total` (series beyond [`super::MAX_SERIES`]).

use super::{Counter, Labels, Metrics, Name, Value, BUCKETS_MS};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Renders `m` (normally [`super::Timeline::totals`]) as an OpenMetrics exposition, ending
/// with `# EOF`.
pub fn render(m: &Metrics) -> String {
    let mut out = String::new();
    let mut family: Option<Name> = None;
    for (name, labels, value) in m.iter() {
        if family != Some(name) {
            family = Some(name);
            header(&mut out, name);
        }
        let base = name.as_str();
        match value {
            Value::Count(n) => {
                let _ = writeln!(out, "{base}_total{} {n}", label_text(labels, None));
            }
            Value::Reading(r) => {
                let _ = writeln!(out, "{base}{} {}", label_text(labels, None), r.value);
            }
            Value::Distribution(d) => {
                let mut cumulative = 0u64;
                for (i, bound) in BUCKETS_MS.iter().enumerate() {
                    cumulative += d.counts.get(i).copied().unwrap_or(0);
                    let le = seconds(*bound);
                    let _ = writeln!(
                        out,
                        "{base}_bucket{} {cumulative}",
                        label_text(labels, Some(&le))
                    );
                }
                let count = d.count();
                let _ = writeln!(
                    out,
                    "{base}_bucket{} {count}",
                    label_text(labels, Some("+Inf"))
                );
                let _ = writeln!(
                    out,
                    "{base}_sum{} {}",
                    label_text(labels, None),
                    seconds(d.sum_ms)
                );
                let _ = writeln!(out, "{base}_count{} {count}", label_text(labels, None));
            }
        }
    }
    // Queue depth per queue: what was sent and not yet settled.
    let mut depth: BTreeMap<String, i128> = BTreeMap::new();
    for (name, labels, value) in m.iter() {
        let sign = match name {
            Name::Counter(Counter::QueueEnqueued) => 1,
            Name::Counter(Counter::QueueSettled) => -1,
            _ => continue,
        };
        if let Value::Count(n) = value {
            let queue = labels
                .iter()
                .find(|(k, _)| k == "queue")
                .map_or_else(String::new, |(_, v)| v.clone());
            *depth.entry(queue).or_default() += sign * i128::from(*n);
        }
    }
    if !depth.is_empty() {
        out.push_str("# TYPE hubspot_edge_queue_depth gauge\n");
        out.push_str(
            "# HELP hubspot_edge_queue_depth Messages sent to a queue and not yet settled.\n",
        );
        for (queue, d) in depth {
            let labels = vec![("queue".to_owned(), queue)];
            let _ = writeln!(
                out,
                "hubspot_edge_queue_depth{} {}",
                label_text(&labels, None),
                d.max(0)
            );
        }
    }
    out.push_str("# TYPE hubspot_edge_metrics_dropped_series counter\n");
    out.push_str(
        "# HELP hubspot_edge_metrics_dropped_series Observations of series beyond the cap, not kept.\n",
    );
    let _ = writeln!(
        out,
        "hubspot_edge_metrics_dropped_series_total {}",
        m.dropped()
    );
    out.push_str("# EOF\n");
    out
}

fn header(out: &mut String, name: Name) {
    let base = name.as_str();
    let kind = match name {
        Name::Counter(_) => "counter",
        Name::Histogram(_) => "histogram",
        Name::Gauge(_) => "gauge",
    };
    let _ = writeln!(out, "# TYPE {base} {kind}");
    if base.ends_with("_seconds") {
        let _ = writeln!(out, "# UNIT {base} seconds");
    }
    let _ = writeln!(out, "# HELP {base} {}", name.help());
}

/// Milliseconds as seconds in OpenMetrics' float form (`0.001`, `1.0`).
fn seconds(ms: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let s = ms as f64 / 1000.0;
    format!("{s:?}")
}

/// `{k="v",…}` with `le` last when given; empty when there are no labels. Values escaped as
/// the specification says (backslash, double quote, newline).
fn label_text(labels: &Labels, le: Option<&str>) -> String {
    if labels.is_empty() && le.is_none() {
        return String::new();
    }
    let mut out = String::from("{");
    let mut first = true;
    let pairs = labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(le.map(|v| ("le", v)));
    for (k, v) in pairs {
        // Label names are ours (static in the hosts' code); one that is not a valid name (from
        // a foreign serialisation) is left out rather than breaking the exposition.
        let valid = k
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()))
            && !k.is_empty();
        if !valid {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out.push('}');
    out
}
