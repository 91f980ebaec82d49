//! Pipeline benchmark on real workerd: HubSpot-signed 100-event batches into `wrangler dev`,
//! measured at the ingress (response time) and end to end (POST sent → destination receipt),
//! with the runtime's floor (`GET /healthz` round trips) measured in the same run as the
//! baseline. Prints `BENCH name=<id> <metric>=<value>` lines.
//!
//! Run: `cargo run --release -p hubspot-edge-tests --bin pipeline-bench [-- BATCHES]`
//! (the README's tool set-up must have run once: `scripts/test.sh` or `scripts/run.sh`).
//!
//! `-- --metrics-ab [ROUNDS]`: what keeping metrics costs the pipeline. Two Workers at once,
//! one with `METRICS_ENABLED=false` (the baseline), one with metrics on; each round sends one
//! 100-event batch to each, in alternating order, so both see the same machine load. Reports
//! ingress and end-to-end percentiles of each, their ratios, and the metrics object's updates
//! per 1,000 events and per invocation.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hubspot_edge_tests::bench::{percentile, report_ms};
use hubspot_edge_tests::{now_ms, unique_id, Fixture, FixtureOptions, HubSpotEvent};

const EVENTS_PER_BATCH: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("--metrics-ab") {
        let rounds = std::env::args()
            .nth(2)
            .and_then(|a| a.parse().ok())
            .unwrap_or(60);
        return metrics_ab(rounds);
    }
    let batches: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(30);
    eprintln!("starting the destination and wrangler dev…");
    let fx = Fixture::start(FixtureOptions::default())?;

    // Warm-up (isolate start, queue consumer start).
    let warm: Vec<u64> = (0..10).map(|_| unique_id()).collect();
    let events: Vec<HubSpotEvent> = warm
        .iter()
        .map(|id| HubSpotEvent::creation("contact", *id))
        .collect();
    fx.send_events(&events)?.expect_status(200)?;
    fx.dest.wait_for_ok(&warm, Duration::from_secs(60))?;

    // Baseline: the runtime's own round trip for a trivial request.
    let mut healthz = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        fx.get("/healthz")?.expect_status(200)?;
        healthz.push(t.elapsed().as_secs_f64() * 1000.0);
    }

    // Latency at low load: one 10-event batch at a time, each delivered before the next is sent.
    let mut unloaded = Vec::new();
    for _ in 0..20 {
        let batch_ids: Vec<u64> = (0..10).map(|_| unique_id()).collect();
        let events: Vec<HubSpotEvent> = batch_ids
            .iter()
            .map(|id| HubSpotEvent::property_change("contact", *id, "lifecyclestage", "customer"))
            .collect();
        let request = fx.hubspot_request(HubSpotEvent::batch(&events));
        let sent = now_ms();
        request.send()?.expect_status(200)?;
        for d in fx.dest.wait_for_ok(&batch_ids, Duration::from_secs(60))? {
            #[allow(clippy::cast_precision_loss)]
            unloaded.push(d.received_at_ms.saturating_sub(sent) as f64);
        }
    }

    // Throughput: 100-event batches back to back, faster than one local consumer drains them.
    let started = Instant::now();
    let mut ingress = Vec::new();
    let mut sent_at: HashMap<u64, u64> = HashMap::new();
    let mut ids = Vec::new();
    let mut body_bytes = 0;
    for b in 0..batches {
        let batch_ids: Vec<u64> = (0..EVENTS_PER_BATCH).map(|_| unique_id()).collect();
        let events: Vec<HubSpotEvent> = batch_ids
            .iter()
            .enumerate()
            .map(|(i, id)| match i % 4 {
                0 => HubSpotEvent::creation("contact", *id),
                1 => HubSpotEvent::property_change(
                    "contact",
                    *id,
                    "lifecyclestage",
                    "marketingqualifiedlead",
                ),
                2 => HubSpotEvent::property_change("deal", *id, "dealstage", "contractsent"),
                _ => HubSpotEvent::deletion("company", *id),
            })
            .collect();
        let body = HubSpotEvent::batch(&events);
        body_bytes = body.len();
        let request = fx.hubspot_request(body);
        let sent = now_ms();
        let t = Instant::now();
        request.send()?.expect_status(200)?;
        ingress.push(t.elapsed().as_secs_f64() * 1000.0);
        for id in &batch_ids {
            sent_at.insert(*id, sent);
        }
        ids.extend(batch_ids);
        // HubSpot sends up to 10 batches concurrently; a steady sequential stream is the
        // conservative single-connection case.
        if b % 10 == 9 {
            eprintln!("sent {} batches", b + 1);
        }
    }
    let delivered = fx.dest.wait_for_ok(&ids, Duration::from_secs(300))?;
    let drained = started.elapsed().as_secs_f64();
    let mut e2e = Vec::new();
    for d in delivered.iter().filter(|d| d.is_ok()) {
        if let Some(sent) = d.object_id.and_then(|id| sent_at.get(&id)) {
            // Millisecond clocks on one machine: precise enough for p50/p99 in ms.
            #[allow(clippy::cast_precision_loss)]
            e2e.push(d.received_at_ms.saturating_sub(*sent) as f64);
        }
    }

    // The consumer's own timings, from its structured logs.
    let mut consumer_batch = Vec::new();
    let mut ingress_server = Vec::new();
    for line in fx.worker.json_logs() {
        #[allow(clippy::cast_precision_loss)]
        if line["message"] == "webhook" && line["events"] == EVENTS_PER_BATCH {
            ingress_server.push(line["duration_ms"].as_u64().unwrap_or(0) as f64);
        }
        if line["message"] == "queue_batch" && line["messages"].as_u64().unwrap_or(0) >= 10 {
            #[allow(clippy::cast_precision_loss)]
            {
                consumer_batch.push(line["duration_ms"].as_u64().unwrap_or(0) as f64);
            }
        }
    }
    println!("INFO batches={batches} events_per_batch={EVENTS_PER_BATCH} body_bytes={body_bytes} delivered={}", e2e.len());
    #[allow(clippy::cast_precision_loss)]
    let rate = ids.len() as f64 / drained;
    println!(
        "BENCH name=throughput_events_per_s value={rate:.0} events={} seconds={drained:.1}",
        ids.len()
    );
    report_ms("end_to_end_event_unloaded", unloaded);
    report_ms("healthz_roundtrip", healthz.clone());
    report_ms("ingress_100_events", ingress.clone());
    report_ms("end_to_end_event_under_backlog", e2e);
    report_ms("ingress_100_events_in_worker", ingress_server);
    report_ms("consumer_batch_in_worker", consumer_batch);
    let mut h = healthz;
    let mut i = ingress;
    h.sort_by(f64::total_cmp);
    i.sort_by(f64::total_cmp);
    println!(
        "RATIO ingress_100_events/healthz_roundtrip p50={:.2}",
        percentile(&i, 0.5) / percentile(&h, 0.5)
    );
    drop(fx);
    Ok(())
}

fn batch_of(ids: &[u64]) -> Vec<u8> {
    let events: Vec<HubSpotEvent> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| match i % 4 {
            0 => HubSpotEvent::creation("contact", *id),
            1 => HubSpotEvent::property_change(
                "contact",
                *id,
                "lifecyclestage",
                "marketingqualifiedlead",
            ),
            2 => HubSpotEvent::property_change("deal", *id, "dealstage", "contractsent"),
            _ => HubSpotEvent::deletion("company", *id),
        })
        .collect();
    HubSpotEvent::batch(&events)
}

/// See the module's documentation (`--metrics-ab`).
fn metrics_ab(rounds: usize) -> Result<(), Box<dyn std::error::Error>> {
    use hubspot_edge_tests::wrangler::prebuilt_config_with_own_bundle;
    eprintln!("starting two Workers (metrics off, metrics on)…");
    let mut off_opts = FixtureOptions::default().var("METRICS_ENABLED", "false");
    off_opts.wrangler.config = Some(prebuilt_config_with_own_bundle("bench-metrics-off.toml")?);
    let mut on_opts = FixtureOptions::default();
    on_opts.wrangler.config = Some(prebuilt_config_with_own_bundle("bench-metrics-on.toml")?);
    let off = Fixture::start(off_opts)?;
    let on = Fixture::start(on_opts)?;
    let variants = [("metrics_off", &off), ("metrics_on", &on)];
    for (_, fx) in variants {
        let warm: Vec<u64> = (0..10).map(|_| unique_id()).collect();
        fx.hubspot_request(batch_of(&warm))
            .send()?
            .expect_status(200)?;
        fx.dest.wait_for_ok(&warm, Duration::from_secs(60))?;
    }
    let mark_on = on.worker.json_logs().len();
    let flushes_at_mark = flush_count(&on)?;
    let mut ingress: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut sent_at: [HashMap<u64, u64>; 2] = [HashMap::new(), HashMap::new()];
    for r in 0..rounds {
        let order = if r % 2 == 0 { [0, 1] } else { [1, 0] };
        for v in order {
            let ids: Vec<u64> = (0..EVENTS_PER_BATCH).map(|_| unique_id()).collect();
            let request = variants[v].1.hubspot_request(batch_of(&ids));
            let sent = now_ms();
            let t = Instant::now();
            request.send()?.expect_status(200)?;
            ingress[v].push(t.elapsed().as_secs_f64() * 1000.0);
            for id in ids {
                sent_at[v].insert(id, sent);
            }
        }
        if r % 10 == 9 {
            eprintln!("round {}", r + 1);
        }
    }
    let mut e2e: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for (v, (_, fx)) in variants.iter().enumerate() {
        let ids: Vec<u64> = sent_at[v].keys().copied().collect();
        for d in fx.dest.wait_for_ok(&ids, Duration::from_secs(300))? {
            if let Some(sent) = d.object_id.and_then(|id| sent_at[v].get(&id)) {
                #[allow(clippy::cast_precision_loss)]
                e2e[v].push(d.received_at_ms.saturating_sub(*sent) as f64);
            }
        }
    }
    for (v, (name, _)) in variants.iter().enumerate() {
        report_ms(&format!("ingress_100_events_{name}"), ingress[v].clone());
        report_ms(&format!("end_to_end_event_{name}"), e2e[v].clone());
    }
    let p = |v: &Vec<f64>, q: f64| {
        let mut s = v.clone();
        s.sort_by(f64::total_cmp);
        percentile(&s, q)
    };
    println!(
        "RATIO ingress_100_events metrics_on/metrics_off p50={:.3} p99={:.3}",
        p(&ingress[1], 0.5) / p(&ingress[0], 0.5),
        p(&ingress[1], 0.99) / p(&ingress[0], 0.99)
    );
    println!(
        "RATIO end_to_end_event metrics_on/metrics_off p50={:.3} p99={:.3}",
        p(&e2e[1], 0.5) / p(&e2e[0], 0.5),
        p(&e2e[1], 0.99) / p(&e2e[0], 0.99)
    );
    // The metrics object's updates against the invocations that counted something since the
    // mark: the webhook requests and the consumer's batches (updates are sent after each
    // invocation's response, so the count is polled until it has caught up, for at most 10 s).
    let logs = on.worker.json_logs();
    let since = &logs[mark_on.min(logs.len())..];
    let webhooks = since.iter().filter(|l| l["message"] == "webhook").count() as u64;
    let batches = since
        .iter()
        .filter(|l| l["message"] == "queue_batch")
        .count() as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut flushes = flush_count(&on)? - flushes_at_mark;
    while flushes < webhooks + batches && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        flushes = flush_count(&on)? - flushes_at_mark;
    }
    let events = (rounds * EVENTS_PER_BATCH) as u64;
    #[allow(clippy::cast_precision_loss)]
    {
        println!(
            "BENCH name=metrics_store_updates updates={flushes} webhook_invocations={webhooks} consumer_invocations={batches} per_1000_events={:.1} per_invocation={:.2}",
            flushes as f64 * 1000.0 / events as f64,
            flushes as f64 / (webhooks + batches).max(1) as f64,
        );
    }
    drop(on);
    drop(off);
    Ok(())
}

/// `hubspot_edge_metrics_flushes_total` of `fx`'s Worker, from its OpenMetrics exposition.
fn flush_count(fx: &Fixture) -> Result<u64, Box<dyn std::error::Error>> {
    let text = fx.admin_get("/admin/metrics")?.text();
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("hubspot_edge_metrics_flushes_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0))
}
