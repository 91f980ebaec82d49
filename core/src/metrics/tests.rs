#![allow(clippy::float_cmp)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::alert::{AlertConfig, AlertStatus, Alerts};
use super::*;

const T0: u64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
const MIN: u64 = 60_000;

#[test]
fn distributions_merge_exactly_and_estimate_quantiles_within_a_bucket() {
    let mut all = Distribution::default();
    let (mut a, mut b) = (Distribution::default(), Distribution::default());
    for ms in 1..=1_000u64 {
        all.observe(ms);
        if ms % 2 == 0 {
            a.observe(ms)
        } else {
            b.observe(ms)
        }
    }
    a.merge(&b);
    assert_eq!(a, all);
    assert_eq!(all.count(), 1_000);
    assert_eq!(all.sum_ms, 500_500);
    // True p50 = 500, p99 = 990: estimates fall inside their buckets (200–500, 500–1000).
    let p50 = all.quantile(0.5).expect("p50");
    assert!((200.0..=500.0).contains(&p50), "{p50}");
    let p99 = all.quantile(0.99).expect("p99");
    assert!((500.0..=1_000.0).contains(&p99), "{p99}");
    assert!(p50 < p99);
    assert_eq!(Distribution::default().quantile(0.5), None);
    let mut slow = Distribution::default();
    slow.observe(100_000_000);
    assert_eq!(
        slow.quantile(0.5),
        Some(21_600_000.0),
        "above the last bound: the bound"
    );
}

#[test]
fn metrics_fold_merge_and_match_labels() {
    let mut m = Metrics::new();
    m.add(Counter::Events, &[("stage", "queued"), ("portal", "1")], 3);
    m.add(Counter::Events, &[("portal", "1"), ("stage", "queued")], 2); // label order is irrelevant
    m.add(
        Counter::Events,
        &[("stage", "filtered"), ("portal", "1")],
        1,
    );
    m.add(Counter::Events, &[("stage", "queued"), ("portal", "2")], 4);
    assert_eq!(m.count(Counter::Events, &[("stage", "queued")]), 9);
    assert_eq!(m.count(Counter::Events, &[("portal", "1")]), 6);
    assert_eq!(m.count(Counter::Events, &[]), 10);
    assert_eq!(m.count(Counter::Deliveries, &[]), 0);
    assert_eq!(m.len(), 3);

    let mut other = Metrics::new();
    other.add(Counter::Events, &[("stage", "queued"), ("portal", "1")], 10);
    other.observe(Histogram::DeliveryLatency, &[], 40);
    other.set(Gauge::ActionsBlocked, &[], 7, 2_000);
    m.set(Gauge::ActionsBlocked, &[], 9, 1_000);
    m.merge(&other);
    assert_eq!(m.count(Counter::Events, &[("stage", "queued")]), 19);
    assert_eq!(m.distribution(Histogram::DeliveryLatency, &[]).count(), 1);
    assert_eq!(
        m.reading(Gauge::ActionsBlocked, &[]).map(|r| r.value),
        Some(7),
        "newer wins"
    );
    let mut older = Metrics::new();
    older.set(Gauge::ActionsBlocked, &[], 1, 500);
    m.merge(&older);
    assert_eq!(
        m.reading(Gauge::ActionsBlocked, &[]).map(|r| r.value),
        Some(7),
        "older loses"
    );

    // The JSON form round-trips.
    let back = Metrics::from_json(&m.to_json()).expect("json");
    assert_eq!(back, m);
    let err = Metrics::from_json("{\"series\": 3}").expect_err("invalid");
    assert_eq!(err.code(), "metrics_invalid");
}

#[test]
fn series_beyond_the_cap_are_counted_as_dropped_not_stored() {
    let mut m = Metrics::new();
    for i in 0..(MAX_SERIES + 50) {
        m.add(Counter::DeadLetters, &[("reason", &format!("r{i}"))], 1);
    }
    assert_eq!(m.len(), MAX_SERIES);
    assert_eq!(m.dropped(), 50);
    // An existing series still counts.
    m.add(Counter::DeadLetters, &[("reason", "r0")], 1);
    assert_eq!(m.count(Counter::DeadLetters, &[("reason", "r0")]), 2);
    // A foreign serialisation mixing kinds is not trusted.
    let mixed = r#"{"series":[{"name":"events","value":{"distribution":{"sum_ms":1}}}]}"#;
    let m = Metrics::from_json(mixed).expect("parses");
    assert_eq!((m.len(), m.dropped()), (0, 1));
}

#[test]
fn the_timeline_keeps_an_hour_by_minute_a_day_by_hour_and_totals() {
    let mut t = Timeline::new();
    let mut one = Metrics::new();
    one.add(Counter::Deliveries, &[("result", "success")], 1);
    // Two observations per minute for three hours.
    let mut now = T0;
    let mut dropped = Vec::new();
    for _ in 0..180 {
        let first = t.record(now, &one, now);
        dropped.extend(first.dropped);
        // A second update in the same minute writes only that minute's row.
        let second = t.record(now + 1_000, &one, now + 1_000);
        assert_eq!(second.changed, vec![BucketKey::Minute(now)]);
        assert!(second.dropped.is_empty());
        now += MIN;
    }
    let now = now - MIN + 1_000;
    assert_eq!(t.totals().count(Counter::Deliveries, &[]), 360);
    let hour = t.window(Span::HourByMinute, now);
    assert_eq!(hour.len(), 60);
    assert!(hour
        .iter()
        .all(|(_, m)| m.count(Counter::Deliveries, &[]) == 2));
    assert_eq!(hour.last().map(|(s, _)| *s), Some(now - 1_000));
    let day = t.window(Span::DayByHour, now);
    assert_eq!(day.len(), 24);
    let per_hour: Vec<u64> = day
        .iter()
        .map(|(_, m)| m.count(Counter::Deliveries, &[]))
        .collect();
    assert_eq!(
        &per_hour[21..],
        &[120, 120, 120],
        "the current minute is in its hour too"
    );
    assert_eq!(per_hour[..21].iter().sum::<u64>(), 0);
    // 120 minute buckets fell out of the hour and were reported for deletion.
    assert_eq!(
        dropped
            .iter()
            .filter(|k| matches!(k, BucketKey::Minute(_)))
            .count(),
        120
    );
    assert_eq!(t.last_minutes(now, 5).count(Counter::Deliveries, &[]), 10);
    // A late observation older than the day reaches the totals only.
    let ch = t.record(T0 - 25 * 3_600_000, &one, now);
    assert_eq!(ch.changed, vec![BucketKey::Totals]);
    assert_eq!(t.totals().count(Counter::Deliveries, &[]), 361);
    // A late observation for a folded minute still kept: its minute, its hour and the totals,
    // counted once.
    let ch = t.record(now - 10 * MIN, &one, now);
    assert!(ch.changed.contains(&BucketKey::Totals), "{ch:?}");
    assert_eq!(t.totals().count(Counter::Deliveries, &[]), 362);
    let day: u64 = t
        .window(Span::DayByHour, now)
        .iter()
        .map(|(_, m)| m.count(Counter::Deliveries, &[]))
        .sum();
    assert_eq!(
        day, 361,
        "the day holds all but the observation older than a day"
    );
    // Every row persists and loads back: the copy reads the same.
    let mut copy = Timeline::new();
    let mut keys: Vec<BucketKey> = vec![BucketKey::Totals, BucketKey::Meta];
    keys.extend(
        t.window(Span::HourByMinute, now)
            .iter()
            .map(|(s, _)| BucketKey::Minute(*s)),
    );
    keys.extend(
        t.window(Span::DayByHour, now)
            .iter()
            .map(|(s, _)| BucketKey::Hour(*s)),
    );
    for k in keys {
        assert_eq!(BucketKey::parse(&k.as_key()), Some(k));
        if let Some(text) = t.row(k) {
            copy.load_row(k, &text).expect("row");
        }
    }
    assert_eq!(copy.totals(), t.totals());
    assert_eq!(
        copy.window(Span::DayByHour, now),
        t.window(Span::DayByHour, now)
    );
    assert_eq!(
        copy.window(Span::HourByMinute, now),
        t.window(Span::HourByMinute, now)
    );
    assert_eq!(BucketKey::parse("x:1"), None);
    assert!(copy.load_row(BucketKey::Meta, "{").is_err());
}

#[test]
fn the_exposition_is_openmetrics_text() {
    let mut m = Metrics::new();
    m.add(Counter::Events, &[("stage", "queued")], 5);
    m.add(
        Counter::WebhookRequests,
        &[("outcome", "rejected"), ("code", "bad \"sig\"\n\\")],
        1,
    );
    m.observe(Histogram::DeliveryLatency, &[("destination", "default")], 3);
    m.observe(
        Histogram::DeliveryLatency,
        &[("destination", "default")],
        700,
    );
    m.observe(
        Histogram::DeliveryLatency,
        &[("destination", "default")],
        90_000,
    );
    m.set(Gauge::ActionsBlocked, &[], 4, 1);
    m.add(Counter::QueueEnqueued, &[("queue", "events")], 10);
    m.add(Counter::QueueSettled, &[("queue", "events")], 7);
    let text = openmetrics::render(&m);
    for line in [
        "# TYPE hubspot_edge_events counter",
        "hubspot_edge_events_total{stage=\"queued\"} 5",
        "hubspot_edge_webhook_requests_total{code=\"bad \\\"sig\\\"\\n\\\\\",outcome=\"rejected\"} 1",
        "# TYPE hubspot_edge_delivery_latency_seconds histogram",
        "# UNIT hubspot_edge_delivery_latency_seconds seconds",
        "hubspot_edge_delivery_latency_seconds_bucket{destination=\"default\",le=\"0.002\"} 0",
        "hubspot_edge_delivery_latency_seconds_bucket{destination=\"default\",le=\"0.005\"} 1",
        "hubspot_edge_delivery_latency_seconds_bucket{destination=\"default\",le=\"1.0\"} 2",
        "hubspot_edge_delivery_latency_seconds_bucket{destination=\"default\",le=\"60.0\"} 2",
        "hubspot_edge_delivery_latency_seconds_bucket{destination=\"default\",le=\"120.0\"} 3",
        "hubspot_edge_delivery_latency_seconds_bucket{destination=\"default\",le=\"+Inf\"} 3",
        "hubspot_edge_delivery_latency_seconds_sum{destination=\"default\"} 90.703",
        "hubspot_edge_delivery_latency_seconds_count{destination=\"default\"} 3",
        "# TYPE hubspot_edge_actions_blocked gauge",
        "hubspot_edge_actions_blocked 4",
        "hubspot_edge_queue_depth{queue=\"events\"} 3",
        "hubspot_edge_metrics_dropped_series_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
    // Each family's TYPE comes once, before its samples.
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let mut unique = types.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(types.len(), unique.len(), "{text}");
}

/// A timeline of `minutes` minutes from `T0`, each minute with `ok` successful and `failed`
/// failed deliveries given by `per_minute(i)`.
fn deliveries(t: &mut Timeline, start_minute: u64, per_minute: &[(u64, u64)]) -> u64 {
    let mut now = T0;
    for (i, (ok, failed)) in per_minute.iter().enumerate() {
        now = T0 + (start_minute + i as u64) * MIN;
        let mut m = Metrics::new();
        m.add(Counter::Deliveries, &[("result", "success")], *ok);
        m.add(
            Counter::Deliveries,
            &[("result", "failure"), ("class", "http_5xx")],
            *failed,
        );
        t.record(now, &m, now);
    }
    now
}

fn only(name: &str) -> AlertConfig {
    let mut c = AlertConfig::default();
    c.rules.retain(|r| r.name == name);
    assert_eq!(c.rules.len(), 1);
    c
}

#[test]
fn the_error_rate_alert_fires_once_and_resolves_once_with_hysteresis() {
    let config = only("delivery_error_rate");
    let mut alerts = Alerts::default();
    let mut t = Timeline::new();
    // Each row: (ok, failed) in that minute, and what the evaluation at its end must send.
    let table: [((u64, u64), Option<AlertStatus>); 16] = [
        ((96, 4), None),                         // 4 %: below 5 %
        ((95, 5), None),                         // 4.5 % over the window
        ((90, 10), Some(AlertStatus::Firing)),   // window 19/300 = 6.3 %
        ((90, 10), None),                        // still firing: no second notice
        ((100, 0), None),                        // 29/500 = 5.8 %
        ((100, 0), None),                        // 25/500 = 5 %: not above, but not clear (≤ 4 %)
        ((100, 0), None),                        // 20/500 = 4 %: clear since now
        ((100, 0), None),                        // 1 min clear
        ((100, 0), None),                        // 2 min
        ((100, 0), None),                        // 3 min
        ((100, 0), None),                        // 4 min
        ((100, 0), Some(AlertStatus::Resolved)), // 5 min clear: resolved
        ((100, 0), None),
        ((5, 5), None), // 50 % but only 10 events in the minute, 410 in the window: 5/410 = 1.2 %
        ((0, 30), Some(AlertStatus::Firing)), // 35/340 = 10.3 %
        ((0, 0), None),
    ];
    for (i, (minute, expect)) in table.iter().enumerate() {
        let now = deliveries(&mut t, i as u64, &[*minute]);
        let sent = alerts.evaluate(&config, &t, now + MIN - 1);
        let got: Vec<AlertStatus> = sent.iter().map(|n| n.status).collect();
        assert_eq!(
            got,
            expect.iter().copied().collect::<Vec<_>>(),
            "minute {i}: {sent:?}"
        );
        for n in &sent {
            assert_eq!(n.alert, "delivery_error_rate");
            let body: serde_json::Value = serde_json::from_str(&n.to_json()).expect("json");
            assert_eq!(body["type"], "hubspot-edge.alert.v1");
            let slack: serde_json::Value = serde_json::from_str(&n.slack_json()).expect("json");
            assert!(slack["text"]
                .as_str()
                .is_some_and(|t| t.contains("delivery_error_rate")));
        }
    }
    assert_eq!(alerts.firing().count(), 1);
}

#[test]
fn too_few_events_never_fire_and_count_as_clear() {
    let config = only("delivery_error_rate");
    let mut alerts = Alerts::default();
    let mut t = Timeline::new();
    // 19 events, all failed, within 5 minutes: below minEvents.
    let now = deliveries(&mut t, 0, &[(0, 10), (0, 9)]);
    assert!(alerts.evaluate(&config, &t, now).is_empty());
    // 20 failed: fires.
    let now = deliveries(&mut t, 2, &[(0, 1)]);
    assert_eq!(alerts.evaluate(&config, &t, now).len(), 1);
    // Traffic stops: no value, clear; resolved after 5 minutes of it.
    let mut resolved = Vec::new();
    for m in 1..=12 {
        resolved.extend(alerts.evaluate(&config, &t, now + m * MIN));
    }
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].status, AlertStatus::Resolved);
    assert_eq!(resolved[0].value, None);
}

#[test]
fn dead_letters_queue_depth_lag_and_budget_rules() {
    let config = AlertConfig::default();
    let mut alerts = Alerts::default();
    let mut t = Timeline::new();
    let now = T0 + 10 * MIN;
    let mut m = Metrics::new();
    m.add(Counter::DeadLetters, &[("reason", "destination_4xx")], 1);
    m.add(Counter::QueueEnqueued, &[("queue", "events")], 10_500);
    m.add(Counter::QueueSettled, &[("queue", "events")], 100);
    for _ in 0..30 {
        m.observe(Histogram::DeliveryLatency, &[], 70_000);
    }
    m.set(Gauge::HubSpotDailyUsedPermille, &[], 950, now);
    t.record(now, &m, now);
    let mut fired: Vec<String> = alerts
        .evaluate(&config, &t, now)
        .into_iter()
        .map(|n| n.alert)
        .collect();
    fired.sort();
    assert_eq!(
        fired,
        [
            "dead_letters",
            "delivery_lag",
            "hubspot_daily_budget",
            "queue_depth"
        ]
    );
    // The queue drains, budget readings go stale after a day, letters age out of the window:
    // each resolves once after its clear time.
    let mut drained = Metrics::new();
    drained.add(Counter::QueueSettled, &[("queue", "events")], 10_400);
    t.record(now + MIN, &drained, now + MIN);
    let mut resolved = Vec::new();
    for minute in 1..=(24 * 60 + 10) {
        let at = now + minute * MIN;
        resolved.extend(alerts.evaluate(&config, &t, at).into_iter().map(|n| {
            assert_eq!(n.status, AlertStatus::Resolved, "{n:?}");
            n.alert
        }));
    }
    resolved.sort();
    assert_eq!(
        resolved,
        [
            "dead_letters",
            "delivery_lag",
            "hubspot_daily_budget",
            "queue_depth"
        ]
    );
}

#[test]
fn alert_configuration_errors_name_the_field() {
    let ok = r#"{"rules":[{"name":"e","kind":"error_rate","source":"webhooks","above":0.1}]}"#;
    let c = AlertConfig::parse(ok).expect("ok");
    assert_eq!(c.rules[0].window_minutes, 5);
    assert_eq!(c.rules[0].min_events, 20);
    for (json, field) in [
        (
            r#"{"rules":[{"name":"e","kind":"error_rate","source":"webhooks","above":5}]}"#,
            "rules[0].above",
        ),
        (
            r#"{"rules":[{"name":"e","kind":"dead_letters","above":0,"windowMinute":3}]}"#,
            "rules[0].windowMinute",
        ),
        (
            r#"{"rules":[{"name":"e","kind":"queue_depth","above":10,"clearBelow":11}]}"#,
            "rules[0].clearBelow",
        ),
        (
            r#"{"rules":[{"name":"e","kind":"queue_depth","above":10,"windowMinutes":0}]}"#,
            "rules[0].windowMinutes",
        ),
        (
            r#"{"rules":[{"name":"a","kind":"dead_letters","above":0},{"name":"a","kind":"dead_letters","above":0}]}"#,
            "rules[1].name",
        ),
        (
            r#"{"rules":[{"name":"l","kind":"delivery_lag","quantile":1.5,"above":10}]}"#,
            "rules[0].quantile",
        ),
        (
            r#"{"rules":[{"name":"x","kind":"nope","above":1}]}"#,
            "ALERTS",
        ),
    ] {
        let err = AlertConfig::parse(json).expect_err(json);
        assert_eq!(err.code(), "alerts_invalid");
        match err {
            MetricsError::AlertConfig { field: f, .. } => assert_eq!(f, field, "{json}"),
            MetricsError::Invalid(_) => panic!("{json}"),
        }
    }
}

/// What the metrics object does per update (record into the timeline, serialise the three
/// changed buckets), with a realistic update (30 counter series, 4 histograms) into a totals
/// bucket of ~200 series. Prints the time per update; asserts only that it ran.
/// `cargo test -p hubspot-edge-core --release --lib metrics::tests::cost_of_one_update -- --ignored --nocapture`
#[test]
#[ignore = "a measurement, run by hand (BENCHMARKS.md, Metrics)"]
#[cfg(not(target_arch = "wasm32"))]
fn cost_of_one_update() {
    let mut t = Timeline::new();
    let update = |i: u64| {
        let mut m = Metrics::new();
        for s in 0..30u64 {
            m.add(
                Counter::Events,
                &[("stage", &format!("s{}", (s + i) % 200))],
                3,
            );
        }
        for h in 0..4u64 {
            m.observe(
                Histogram::DeliveryLatency,
                &[("destination", &format!("d{h}"))],
                40 + i,
            );
        }
        m
    };
    let n = 2_000u64;
    let started = std::time::Instant::now();
    let mut bytes = 0;
    for i in 0..n {
        let m = Metrics::from_json(&update(i).to_json()).expect("json");
        let now = T0 + i * 1_000;
        let changes = t.record(now, &m, now);
        for k in changes.changed {
            bytes += t.row(k).map_or(0, |r| r.len());
        }
    }
    let per = started.elapsed() / u32::try_from(n).expect("n");
    println!(
        "metrics update: {per:?} per update, {} bytes written per update, {} series in totals",
        bytes / usize::try_from(n).expect("n"),
        t.totals().len()
    );
    assert!(bytes > 0);
}

#[test]
fn lag_secs_table() {
    let cases = [
        // (since, now, lag)
        (0, 0, 0),
        (1_000, 2_999, 1),
        (5_000, 1_000, 0),
        (0, u64::MAX, i64::try_from(u64::MAX / 1_000).unwrap()),
        (1_700_000_000_000, 1_700_000_090_500, 90),
    ];
    for (since, now, want) in cases {
        assert_eq!(lag_secs(since, now), want, "{since} {now}");
    }
}

#[test]
fn a_code_label_is_a_short_lowercase_code_or_other() {
    assert_eq!(code_label("destination_4xx"), "destination_4xx");
    assert_eq!(code_label("Destination"), "other");
    assert_eq!(code_label("a-b"), "other");
    assert_eq!(code_label(""), "other");
    assert_eq!(code_label(&"a".repeat(40)), "a".repeat(40));
    assert_eq!(code_label(&"a".repeat(41)), "other");
}

#[test]
fn a_span_is_read_by_name() {
    assert_eq!(Span::parse("hour"), Some(Span::HourByMinute));
    assert_eq!(Span::parse("day"), Some(Span::DayByHour));
    assert_eq!(Span::parse("week"), None);
    assert_eq!(Span::parse("Hour"), None);
}

#[test]
fn an_alert_post_is_signed_or_in_slack_format() {
    use crate::outbound::WebhookSecret;
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let config = only("delivery_error_rate");
    let mut alerts = Alerts::default();
    let mut t = Timeline::new();
    let now = deliveries(&mut t, 0, &[(0, 30)]);
    let notices = alerts.evaluate(&config, &t, now);
    let n = &notices[0];
    let slack = n.post(Some("SLACK"), None).expect("no secret needed");
    assert_eq!(slack.body, n.slack_json());
    assert!(slack.signed.is_none());
    assert_eq!(n.post(None, None).unwrap_err(), "ALERT_SECRET is not set");
    let bad = n.post(Some("json"), Some("not-a-secret")).unwrap_err();
    assert!(bad.starts_with("ALERT_SECRET: "), "{bad}");
    assert!(!bad.contains("not-a-secret"));
    let signed = n.post(None, Some(SECRET)).expect("signed");
    assert_eq!(signed.body, n.to_json());
    let (id, timestamp, signature) = signed.signed.clone().expect("signed");
    assert_eq!(
        id,
        format!("alert_delivery_error_rate_{}_{}", n.since_ms, n.at_ms)
    );
    assert_eq!(timestamp, (n.at_ms / 1000).to_string());
    WebhookSecret::parse(SECRET)
        .unwrap()
        .verify(
            &id,
            &timestamp,
            &signature,
            signed.body.as_bytes(),
            n.at_ms / 1000,
            5,
        )
        .expect("the signature verifies");
}

#[test]
fn evaluations_go_on_while_the_hour_has_traffic_or_a_rule_fires() {
    let config = only("delivery_error_rate");
    let mut alerts = Alerts::default();
    let mut t = Timeline::new();
    assert!(!alerts.keep_evaluating(&t, T0), "nothing recorded: sleep");
    let now = deliveries(&mut t, 0, &[(0, 30)]);
    assert_eq!(alerts.evaluate(&config, &t, now).len(), 1);
    assert!(alerts.keep_evaluating(&t, now));
    // Two hours later the hour is empty, but the rule still fires until it resolves.
    let later = now + 120 * MIN;
    assert!(alerts.firing().next().is_some());
    assert!(alerts.keep_evaluating(&t, later));
    let quiet = Alerts::default();
    assert!(!quiet.keep_evaluating(&t, later));
}
