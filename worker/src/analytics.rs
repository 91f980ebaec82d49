//! Workers Analytics Engine: each invocation's metrics as data points (core's
//! [`data_points`]: one per series, indexed by portal, at most 250), the production history
//! next to the metrics Durable Object's exact totals. Optional: only when the
//! `METRICS_ANALYTICS` dataset binding is configured (wrangler.toml, commented out by default:
//! its writes are billed beyond the included volume,
//! <https://developers.cloudflare.com/analytics/analytics-engine/pricing/>).
//!
//! `writeDataPoint` does not wait for anything: no subrequest, nothing on the response path.

use hubspot_edge_core::metrics::analytics::data_points;
use hubspot_edge_core::metrics::{Counter, Metrics};
use worker::{AnalyticsEngineDataPointBuilder, Env};

use crate::log::Line;

/// The dataset binding (wrangler.toml `[[analytics_engine_datasets]]`).
pub(crate) const BINDING: &str = "METRICS_ANALYTICS";

/// Writes `m`'s data points when the binding exists, and counts them into `m`
/// (`hubspot_edge_analytics_points`). Failures are logged, never raised.
pub(crate) fn write(env: &Env, m: &mut Metrics) {
    let Ok(dataset) = env.analytics_engine(BINDING) else {
        return;
    };
    let points = data_points(m);
    let mut written = 0u64;
    for p in &points {
        let point = AnalyticsEngineDataPointBuilder::new()
            .indexes([p.index.as_str()])
            .blobs(p.blobs.iter().map(String::as_str))
            .doubles(p.doubles.iter().copied())
            .build();
        if let Err(e) = dataset.write_data_point(&point) {
            Line::warn("analytics_write_failed")
                .field("error", e.to_string())
                .emit();
            break;
        }
        written += 1;
    }
    if written > 0 {
        m.add(Counter::AnalyticsPoints, &[], written);
    }
}
