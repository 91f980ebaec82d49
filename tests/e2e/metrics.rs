//! Metrics (issue 12 §1): what the Worker counts reaches `GET /admin/metrics`, and the text is
//! OpenMetrics as an independent parser reads it: the Prometheus project's Python client
//! (`prometheus_client.openmetrics.parser`, pinned in tests/mock/clients/python/requirements.txt
//! and installed from PyPI by the test command), not our own reading of the format.

use std::collections::HashMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::Duration;

use hubspot_edge_tests::{poll_until_ok, unique_id, Fixture, HubSpotEvent};
use serde_json::Value;

use super::{check, Outcome, DEADLINE};

/// Parses an exposition with `prometheus_client`'s OpenMetrics parser: each sample as
/// `name{k=v,…}` (labels sorted) → value. Fails when the parser rejects the text.
fn parse_openmetrics(text: &str) -> Result<HashMap<String, f64>, String> {
    let python = std::env::var("HUBSPOT_MOCK_PYTHON").map_err(|_| {
        "HUBSPOT_MOCK_PYTHON is not set: run through scripts/test.sh, which installs the \
         Python venv with prometheus_client"
            .to_owned()
    })?;
    const SCRIPT: &str = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = {}
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        out[f"{s.name}{{{labels}}}"] = s.value
print(json.dumps(out))
"#;
    let mut child = Command::new(python)
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("python: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "the OpenMetrics parser rejected the exposition: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn sample(samples: &HashMap<String, f64>, key: &str) -> f64 {
    samples.get(key).copied().unwrap_or(0.0)
}

pub(super) fn scrape(fx: &Fixture) -> Result<HashMap<String, f64>, String> {
    let r = fx.admin_get("/admin/metrics").map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("GET /admin/metrics: {} {}", r.status, r.text()));
    }
    let ct = r.header("content-type").unwrap_or_default();
    if !ct.starts_with("application/openmetrics-text") {
        return Err(format!("content-type {ct}"));
    }
    parse_openmetrics(&r.text())
}

/// A signed batch of 5 events, 2 requests without a signature and one HubSpot call through the
/// admin API are counted: the webhook requests by outcome and code, the events by stage, the
/// queue's enqueued messages, the edge's response time, the destination's response times to
/// the batch's deliveries and the HubSpot call by budget and status class, read back through a real OpenMetrics parser. Other scenarios run at
/// the same time against the same Worker, so counts are compared as increases of at least what
/// this scenario sent. The JSON window holds 60 minute buckets whose current one has the
/// events. Without the admin token: 401.
pub(super) fn metrics_count_a_batch_and_scrape_as_openmetrics(fx: &Fixture) -> Outcome {
    let unauth = fx.get("/admin/metrics")?;
    check(unauth.status == 401, || {
        format!("GET /admin/metrics without a token: {}", unauth.status)
    })?;
    let before = scrape(fx)?;
    let received = "hubspot_edge_events_total{stage=received}";
    let queued = "hubspot_edge_events_total{stage=queued}";
    let enqueued = "hubspot_edge_queue_enqueued_total{queue=events}";
    let rejected = "hubspot_edge_webhook_requests_total{code=signature_rejected,outcome=rejected}";
    let accepted = "hubspot_edge_webhook_requests_total{code=accepted,outcome=accepted}";
    let responses = "hubspot_edge_webhook_response_seconds_count{}";

    // One HubSpot call through the executor (the shared mock answers it).
    let hubspot_calls = "hubspot_edge_hubspot_calls_total{budget=burst,status=2xx}";
    // The destination's answers to the batch's deliveries (one POST per event at least).
    let destination = "hubspot_edge_destination_response_seconds_count{}";
    fx.admin_get("/admin/hubspot/objects/contacts/1")?
        .expect_status(200)?;
    let events: Vec<HubSpotEvent> = (0..5)
        .map(|_| HubSpotEvent::creation("contact", unique_id()))
        .collect();
    let r = fx.send_events(&events)?;
    r.expect_status(200)?;
    for _ in 0..2 {
        let r = hubspot_edge_tests::http::post(
            &fx.url("/webhooks/hubspot"),
            HubSpotEvent::batch(&events[..1]).as_slice(),
            None,
        )?;
        check(r.status == 401, || format!("unsigned: {}", r.status))?;
    }

    let after = poll_until_ok(
        "the metrics object to count this scenario's requests",
        DEADLINE,
        Duration::from_millis(300),
        || -> Result<Option<HashMap<String, f64>>, String> {
            let now = scrape(fx)?;
            let grew = |k: &str, n: f64| sample(&now, k) - sample(&before, k) >= n;
            Ok((grew(received, 5.0)
                && grew(queued, 5.0)
                && grew(enqueued, 5.0)
                && grew(accepted, 1.0)
                && grew(rejected, 2.0)
                && grew(responses, 3.0)
                && grew(hubspot_calls, 1.0)
                && grew(destination, 5.0))
            .then_some(now))
        },
    )?;
    // The histogram is cumulative and complete.
    let inf = "hubspot_edge_webhook_response_seconds_bucket{le=+Inf}";
    check(sample(&after, inf) == sample(&after, responses), || {
        format!(
            "+Inf bucket {} != count {}",
            sample(&after, inf),
            sample(&after, responses)
        )
    })?;

    let r = fx.admin_get("/admin/metrics.json?span=hour")?;
    r.expect_status(200)?;
    let body: Value = r.json()?;
    let buckets = body["buckets"].as_array().cloned().unwrap_or_default();
    check(buckets.len() == 60, || {
        format!("{} minute buckets", buckets.len())
    })?;
    let recent: u64 = buckets
        .iter()
        .rev()
        .take(2)
        .flat_map(|b| {
            b["metrics"]["series"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|s| {
            s["name"] == "events" && s["labels"] == serde_json::json!([["stage", "received"]])
        })
        .filter_map(|s| s["value"]["count"].as_u64())
        .sum();
    check(recent >= 5, || {
        format!("the last two minutes hold {recent} received events")
    })?;
    let bad = fx.admin_get("/admin/metrics.json?span=week")?;
    check(
        bad.status == 400 && bad.json()?["error"] == "metrics_span_invalid",
        || format!("span=week: {} {}", bad.status, bad.text()),
    )
}

/// An alert fires once and resolves once, each notice a Standard Webhooks-signed POST to
/// `ALERT_URL` (verified by a second loopback receiver with `ALERT_SECRET`). A Worker of its own
/// evaluates every second (`ALERT_EVALUATION_SECS=1`) one rule: webhook requests rejected above
/// 5 % within the current and the last minute, at least 3 requests, resolving at once when clear. 5 unsigned
/// requests (100 % rejected) fire it; 250 signed empty batches (5 / 255 = 2 % ≤ the 4 % clear
/// level) resolve it. While firing, further evaluations send nothing.
pub(super) fn metrics_alert_fires_once_and_resolves_once_signed(_: &Fixture) -> Outcome {
    let secret = hubspot_edge_tests::fixture::FORWARD_SECRET;
    let alerts = hubspot_edge_tests::Destination::start(secret)?;
    let rules = serde_json::json!({"rules": [{
        "name": "webhook_errors", "kind": "error_rate", "source": "webhooks", "above": 0.05,
        "windowMinutes": 2, "minEvents": 3, "clearMinutes": 0
    }]});
    let mut options = hubspot_edge_tests::FixtureOptions::default()
        .var("ALERT_URL", alerts.url())
        .var("ALERT_SECRET", secret)
        .var("ALERT_EVALUATION_SECS", "1")
        .var("ALERTS", rules.to_string());
    options.wrangler.config = Some(super::extra_wrangler_config("alerts.toml")?);
    let fx = Fixture::start(options)?;
    let notices = |status: &str| -> Vec<Value> {
        alerts
            .deliveries()
            .into_iter()
            .filter(|d| {
                d.is_ok() && d.body["alert"] == "webhook_errors" && d.body["status"] == status
            })
            .map(|d| d.body)
            .collect()
    };
    for _ in 0..5 {
        let r = hubspot_edge_tests::http::post(&fx.url("/webhooks/hubspot"), b"[]", None)?;
        check(r.status == 401, || format!("unsigned: {}", r.status))?;
    }
    let fired = poll_until_ok(
        "the alert to fire",
        DEADLINE,
        Duration::from_millis(200),
        || -> Result<Option<Value>, String> { Ok(notices("firing").into_iter().next()) },
    )?;
    check(
        fired["type"] == "hubspot-edge.alert.v1" && fired["value"].as_f64() == Some(1.0),
        || format!("firing notice: {fired}"),
    )?;
    for _ in 0..250 {
        fx.hubspot_request(b"[]".to_vec())
            .send()?
            .expect_status(200)?;
    }
    let resolved = poll_until_ok(
        "the alert to resolve",
        DEADLINE,
        Duration::from_millis(200),
        || -> Result<Option<Value>, String> { Ok(notices("resolved").into_iter().next()) },
    )?;
    check(resolved["sinceMs"] == fired["atMs"], || {
        format!(
            "resolved {resolved} does not name the firing at {}",
            fired["atMs"]
        )
    })?;
    let unverified = alerts.deliveries().iter().filter(|d| !d.verified).count();
    check(
        notices("firing").len() == 1 && notices("resolved").len() == 1 && unverified == 0,
        || {
            format!(
                "{} firing, {} resolved, {unverified} unverified notices",
                notices("firing").len(),
                notices("resolved").len()
            )
        },
    )
}

/// The HubSpot daily budget reaches the metrics store and its alert can fire (issue 12 §2):
/// a Worker and mock of their own, the mock's daily limit 20 (sent in
/// `X-HubSpot-RateLimit-Daily`). 10 HubSpot calls through the admin API spend half of it: the
/// gate's governor counts them, its permit answer carries the per mille, the calling isolate sets
/// `hubspot_edge_hubspot_daily_used_permille`, which reads 500 (= 1000 × the mock's requests /
/// 20) through the OpenMetrics parser, and a `daily_budget` rule above 400 ‰ sends one signed
/// firing notice with that value. Before this gauge was set, the series was absent and the
/// default "HubSpot daily budget above 90 %" alert could never fire.
pub(super) fn metrics_hubspot_daily_budget_gauge_fires_its_alert(_: &Fixture) -> Outcome {
    let secret = hubspot_edge_tests::fixture::FORWARD_SECRET;
    let alerts = hubspot_edge_tests::Destination::start(secret)?;
    let rules = serde_json::json!({"rules": [{
        "name": "hubspot_daily_budget", "kind": "daily_budget", "above": 400,
        "clearMinutes": 0
    }]});
    let mut options = hubspot_edge_tests::FixtureOptions::default()
        .hubspot_mock(hubspot_mock::MockConfig {
            seed_contacts: 1,
            daily: 20,
            ..hubspot_mock::MockConfig::default()
        })
        .var("ALERT_URL", alerts.url())
        .var("ALERT_SECRET", secret)
        .var("ALERT_EVALUATION_SECS", "1")
        .var("ALERTS", rules.to_string());
    options.wrangler.config = Some(super::extra_wrangler_config("alerts-daily.toml")?);
    let fx = Fixture::start(options)?;
    let mock = super::mock_of(&fx)?;
    let gauge = "hubspot_edge_hubspot_daily_used_permille{}";
    check(!scrape(&fx)?.contains_key(gauge), || {
        format!("{gauge} before any HubSpot call")
    })?;
    for _ in 0..10 {
        fx.admin_get("/admin/hubspot/objects/contacts/1")?
            .expect_status(200)?;
    }
    let requests = super::mock_stats(mock)?["requests"].as_u64().unwrap_or(0);
    check(requests == 10, || {
        format!("the mock counted {requests} requests")
    })?;
    #[allow(clippy::cast_precision_loss)]
    let want = (requests * 1000 / 20) as f64;
    let seen = poll_until_ok(
        "the daily budget gauge to reach the metrics store",
        DEADLINE,
        Duration::from_millis(200),
        || -> Result<Option<f64>, String> {
            Ok(scrape(&fx)?.get(gauge).copied().filter(|v| *v >= want))
        },
    )?;
    check(seen == want, || format!("{gauge} = {seen}, want {want}"))?;
    let fired = poll_until_ok(
        "the daily budget alert to fire",
        DEADLINE,
        Duration::from_millis(200),
        || -> Result<Option<Value>, String> {
            Ok(alerts.deliveries().into_iter().find_map(|d| {
                (d.verified
                    && d.body["alert"] == "hubspot_daily_budget"
                    && d.body["status"] == "firing")
                    .then_some(d.body)
            }))
        },
    )?;
    check(fired["value"].as_f64() == Some(want), || {
        format!("firing notice: {fired}")
    })
}
