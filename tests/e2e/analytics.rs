//! Workers Analytics Engine (issue 12 §1, README "Operating it"): with the `METRICS_ANALYTICS`
//! dataset binding configured (wrangler.toml leaves it commented out), each invocation writes
//! its metrics as data points to wrangler dev's local dataset, and counts how many it wrote
//! (`hubspot_edge_analytics_points_total`). Local Analytics Engine cannot be queried back; the
//! points' shape is core's, table-tested (`core/src/metrics/analytics.rs`).

use std::time::Duration;

use hubspot_edge_tests::{poll_until, unique_id, Fixture, FixtureOptions, HubSpotEvent};

use super::{check, Outcome, DEADLINE};

const DATASET: &str = r#"[[analytics_engine_datasets]]
binding = "METRICS_ANALYTICS"
dataset = "hubspot_edge_metrics_e2e"
"#;

/// The value of the first sample line of `name` in an OpenMetrics text (0 when absent).
fn first_sample(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// A signed batch through a Worker with the dataset bound: its counts reach the metrics object
/// and data points reach Analytics Engine (counted), and the events are delivered as ever.
pub(super) fn metrics_written_to_analytics_engine_when_bound(_: &Fixture) -> Outcome {
    let mut options = FixtureOptions::default();
    options.wrangler.config = Some(hubspot_edge_tests::wrangler::prebuilt_config_with(
        "wrangler.analytics.toml",
        DATASET,
    )?);
    let fx = Fixture::start(options)?;
    let result = (|| {
        let ids: Vec<u64> = (0..3).map(|_| unique_id()).collect();
        let events: Vec<HubSpotEvent> = ids
            .iter()
            .map(|id| HubSpotEvent::creation("contact", *id))
            .collect();
        fx.send_events(&events)?.expect_status(200)?;
        fx.dest.wait_for_ok(&ids, DEADLINE)?;
        let points = poll_until(
            "analytics points counted",
            DEADLINE,
            Duration::from_millis(300),
            || {
                let text = fx.admin_get("/admin/metrics").ok()?.text();
                let n = first_sample(&text, "hubspot_edge_analytics_points_total");
                (n > 0.0).then_some(n)
            },
        )?;
        // At least the ingress's series (requests, events, queue, response time) went out.
        check(points >= 4.0, || format!("{points} points written"))
    })();
    fx.stop_worker();
    result
}
