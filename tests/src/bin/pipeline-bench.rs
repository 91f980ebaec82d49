//! Pipeline benchmark on real workerd: HubSpot-signed 100-event batches into `wrangler dev`,
//! measured at the ingress (response time) and end to end (POST sent → destination receipt),
//! with the runtime's floor (`GET /healthz` round trips) measured in the same run as the
//! baseline. Prints `BENCH name=<id> <metric>=<value>` lines.
//!
//! Run: `cargo run --release -p hubspot-edge-tests --bin pipeline-bench [-- BATCHES]`
//! (the README's tool set-up must have run once: `scripts/test.sh` or `scripts/run.sh`).
//!
//! `-- --metrics-ab [ROUNDS] [--drain] [--bundle DIR] [--candidate DIR]…`: what keeping metrics
//! costs the pipeline. Workers at once: one with `METRICS_ENABLED=false` (the baseline), one
//! with metrics on, both from `--bundle` (default `worker/build/`), and one more with metrics on
//! per `--candidate` (another build's `worker/build/`, copied aside, to compare two builds in
//! one run). After a warm-up of 10 batches each, each round sends one 100-event batch to each
//! Worker, every Worker first, second, … equally often, so all see the same machine load.
//! `--drain`: each request waits until its events are delivered, so that no consumer backlog
//! (of any Worker) runs beside the next ingress. Reports per Worker the ingress percentiles,
//! the Worker's own `duration_ms` and the rest (client time minus it: the runtime, the local
//! proxies, and whatever holds the response after the handler returned), end to end, and
//! against the baseline the ratios of the percentiles and the median of the rounds' ratios
//! (the least sensitive to load that changes during a run); then the metrics object's updates
//! per 1,000 events and per invocation, and `/proc/loadavg` before and after.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use hubspot_edge_tests::bench::{percentile, report_ms};
use hubspot_edge_tests::{now_ms, unique_id, Fixture, FixtureOptions, HubSpotEvent};

const EVENTS_PER_BATCH: usize = 100;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::args().nth(1).as_deref() == Some("--metrics-ab") {
        return metrics_ab(&AbOptions::from_args());
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

/// Options of `--metrics-ab`.
struct AbOptions {
    rounds: usize,
    /// Each request waits until its events are delivered, so that no consumer (of any of the
    /// Workers) runs beside the next ingress.
    drain: bool,
    /// The bundle (a `worker/build/` directory) of the baseline and metrics-on Workers.
    bundle: std::path::PathBuf,
    /// Other builds' bundles (`--candidate DIR`, repeatable), each run as one more Worker with
    /// metrics on, or off when written `off:DIR` (to compare the baseline with itself).
    candidates: Vec<(bool, std::path::PathBuf)>,
}

impl AbOptions {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .map(std::path::PathBuf::from)
        };
        Self {
            rounds: args.get(2).and_then(|a| a.parse().ok()).unwrap_or(60),
            drain: args.iter().any(|a| a == "--drain"),
            bundle: value("--bundle").unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../worker/build")
            }),
            candidates: args
                .windows(2)
                .filter(|w| w[0] == "--candidate")
                .map(|w| match w[1].strip_prefix("off:") {
                    Some(dir) => (false, std::path::PathBuf::from(dir)),
                    None => (true, std::path::PathBuf::from(&w[1])),
                })
                .collect(),
        }
    }
}

/// See the module's documentation (`--metrics-ab`).
#[allow(clippy::too_many_lines)]
fn metrics_ab(o: &AbOptions) -> Result<(), Box<dyn std::error::Error>> {
    use hubspot_edge_tests::wrangler::prebuilt_config_with_bundle_from;
    let mut names: Vec<String> = vec!["metrics_off".into(), "metrics_on".into()];
    let mut fixtures = Vec::new();
    eprintln!("starting the Workers…");
    let mut off_opts = FixtureOptions::default().var("METRICS_ENABLED", "false");
    off_opts.wrangler.config = Some(prebuilt_config_with_bundle_from(
        "bench-metrics-off.toml",
        &o.bundle,
    )?);
    fixtures.push(Fixture::start(off_opts)?);
    let mut on_opts = FixtureOptions::default();
    on_opts.wrangler.config = Some(prebuilt_config_with_bundle_from(
        "bench-metrics-on.toml",
        &o.bundle,
    )?);
    fixtures.push(Fixture::start(on_opts)?);
    for (i, (on, dir)) in o.candidates.iter().enumerate() {
        let mut opts = FixtureOptions::default();
        if !on {
            opts = opts.var("METRICS_ENABLED", "false");
        }
        opts.wrangler.config = Some(prebuilt_config_with_bundle_from(
            &format!("bench-metrics-candidate-{i}.toml"),
            dir,
        )?);
        fixtures.push(Fixture::start(opts)?);
        names.push(format!(
            "metrics_{}_candidate_{i}",
            if *on { "on" } else { "off" }
        ));
    }
    let n = fixtures.len();
    // Warm-up: isolate start, queue consumer start, the metrics object's first load; then ten
    // batches that are not measured (the JIT's tiers).
    for fx in &fixtures {
        let warm: Vec<u64> = (0..10).map(|_| unique_id()).collect();
        fx.hubspot_request(batch_of(&warm))
            .send()?
            .expect_status(200)?;
        fx.dest.wait_for_ok(&warm, Duration::from_secs(60))?;
        let mut ids = Vec::new();
        for _ in 0..10 {
            let batch: Vec<u64> = (0..EVENTS_PER_BATCH).map(|_| unique_id()).collect();
            fx.hubspot_request(batch_of(&batch))
                .send()?
                .expect_status(200)?;
            ids.extend(batch);
        }
        fx.dest.wait_for_ok(&ids, Duration::from_secs(120))?;
    }
    let marks: Vec<usize> = fixtures
        .iter()
        .map(|f| f.worker.json_logs().len())
        .collect();
    let load_before = loadavg();
    let started = Instant::now();
    let mut ingress: Vec<Vec<f64>> = vec![Vec::new(); n];
    let mut request_ids: Vec<Vec<String>> = vec![Vec::new(); n];
    let mut sent_at: Vec<HashMap<u64, u64>> = vec![HashMap::new(); n];
    for r in 0..o.rounds {
        // Every order in turn: each Worker goes first, second, … equally often.
        let order: Vec<usize> = (0..n).map(|i| (i + r) % n).collect();
        let order: Vec<usize> = if (r / n) % 2 == 0 {
            order
        } else {
            order.into_iter().rev().collect()
        };
        for v in order {
            let ids: Vec<u64> = (0..EVENTS_PER_BATCH).map(|_| unique_id()).collect();
            let request = fixtures[v].hubspot_request(batch_of(&ids));
            let sent = now_ms();
            let t = Instant::now();
            let response = request.send()?;
            ingress[v].push(t.elapsed().as_secs_f64() * 1000.0);
            response.expect_status(200)?;
            request_ids[v].push(response.header("x-request-id").unwrap_or("").to_owned());
            for id in &ids {
                sent_at[v].insert(*id, sent);
            }
            if o.drain {
                fixtures[v]
                    .dest
                    .wait_for_ok(&ids, Duration::from_secs(120))?;
            }
        }
        if r % 10 == 9 {
            eprintln!("round {}", r + 1);
        }
    }
    let mut e2e: Vec<Vec<f64>> = vec![Vec::new(); n];
    for (v, fx) in fixtures.iter().enumerate() {
        let ids: Vec<u64> = sent_at[v].keys().copied().collect();
        for d in fx.dest.wait_for_ok(&ids, Duration::from_secs(300))? {
            if let Some(sent) = d.object_id.and_then(|id| sent_at[v].get(&id)) {
                #[allow(clippy::cast_precision_loss)]
                e2e[v].push(d.received_at_ms.saturating_sub(*sent) as f64);
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let load_after = loadavg();
    println!(
        "INFO rounds={} drain={} variants={} seconds={seconds:.1} loadavg_before={load_before} loadavg_after={load_after}",
        o.rounds,
        o.drain,
        names.join(",")
    );
    let p = |v: &[f64], q: f64| {
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        percentile(&s, q)
    };
    for (v, fx) in fixtures.iter().enumerate() {
        let name = &names[v];
        // The Worker's own time for each request (its `webhook` log line's `duration_ms`,
        // taken before the response is handed to the runtime; workerd's clock advances only
        // at I/O, so it is the handler's I/O time), matched by request id.
        let own: HashMap<String, f64> = fx
            .worker
            .json_logs_since(marks[v])
            .iter()
            .filter(|l| l["message"] == "webhook")
            .filter_map(|l| {
                #[allow(clippy::cast_precision_loss)]
                Some((
                    l["request_id"].as_str()?.to_owned(),
                    l["duration_ms"].as_u64()? as f64,
                ))
            })
            .collect();
        let mut in_worker = Vec::new();
        let mut outside = Vec::new();
        for (client, id) in ingress[v].iter().zip(&request_ids[v]) {
            if let Some(w) = own.get(id) {
                in_worker.push(*w);
                // Client time minus the Worker's own: the runtime, the proxies, the network,
                // and whatever holds the response after the handler returned.
                outside.push(client - w);
            }
        }
        report_ms(&format!("ingress_100_events_{name}"), ingress[v].clone());
        report_ms(&format!("ingress_100_events_in_worker_{name}"), in_worker);
        report_ms(
            &format!("ingress_100_events_outside_worker_{name}"),
            outside,
        );
        report_ms(&format!("end_to_end_event_{name}"), e2e[v].clone());
        #[allow(clippy::cast_precision_loss)]
        let per_s = EVENTS_PER_BATCH as f64 * 1000.0 / p(&ingress[v], 0.5);
        println!("BENCH name=ingress_events_per_s_at_p50_{name} value={per_s:.0}");
    }
    for v in 1..n {
        // Each round's ratio: the requests of a round ran within a second of each other under
        // the same load, so the median of these ratios is the least sensitive to load that
        // changes during the run.
        let paired: Vec<f64> = ingress[v]
            .iter()
            .zip(&ingress[0])
            .map(|(x, off)| x / off)
            .collect();
        println!(
            "RATIO ingress_100_events {}/metrics_off p50={:.3} p99={:.3} median_of_round_ratios={:.3}",
            names[v],
            p(&ingress[v], 0.5) / p(&ingress[0], 0.5),
            p(&ingress[v], 0.99) / p(&ingress[0], 0.99),
            p(&paired, 0.5)
        );
        println!(
            "RATIO end_to_end_event {}/metrics_off p50={:.3} p99={:.3}",
            names[v],
            p(&e2e[v], 0.5) / p(&e2e[0], 0.5),
            p(&e2e[v], 0.99) / p(&e2e[0], 0.99)
        );
    }
    // Between candidates and the metrics-on Worker too (the same configuration, two builds).
    for v in 2..n {
        for w in 1..v {
            let paired: Vec<f64> = ingress[v]
                .iter()
                .zip(&ingress[w])
                .map(|(x, y)| x / y)
                .collect();
            println!(
                "RATIO ingress_100_events {}/{} p50={:.3} p99={:.3} median_of_round_ratios={:.3}",
                names[v],
                names[w],
                p(&ingress[v], 0.5) / p(&ingress[w], 0.5),
                p(&ingress[v], 0.99) / p(&ingress[w], 0.99),
                p(&paired, 0.5)
            );
        }
    }
    #[allow(clippy::cast_precision_loss)]
    {
        println!(
            "BENCH name=events_per_s_all_workers value={:.0} events={} seconds={seconds:.1}",
            (n * o.rounds * EVENTS_PER_BATCH) as f64 / seconds,
            n * o.rounds * EVENTS_PER_BATCH
        );
    }
    // The metrics object's updates against the invocations that counted something, over the
    // whole run (warm-up included: its log lines may be printed after any mark): the webhook
    // requests and the consumer's batches (updates are sent after each invocation's response,
    // so the count is polled until it has caught up, for at most 10 s).
    for (v, fx) in fixtures.iter().enumerate().skip(1) {
        if names[v].starts_with("metrics_off") {
            continue;
        }
        let logs = fx.worker.json_logs();
        let webhooks = logs.iter().filter(|l| l["message"] == "webhook").count() as u64;
        let batches = logs
            .iter()
            .filter(|l| l["message"] == "queue_batch")
            .count() as u64;
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut flushes = flush_count(fx)?;
        while flushes < webhooks + batches && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            flushes = flush_count(fx)?;
        }
        let events = ((o.rounds + 10) * EVENTS_PER_BATCH + 10) as u64;
        #[allow(clippy::cast_precision_loss)]
        {
            println!(
                "BENCH name=metrics_store_updates_{} updates={flushes} events={events} webhook_invocations={webhooks} consumer_invocations={batches} per_1000_events={:.1} per_invocation={:.2}",
                names[v],
                flushes as f64 * 1000.0 / events as f64,
                flushes as f64 / (webhooks + batches).max(1) as f64,
            );
        }
    }
    drop(fixtures);
    Ok(())
}

/// `/proc/loadavg`'s first three fields, joined by `/` (empty where there is none).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join("/")
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
