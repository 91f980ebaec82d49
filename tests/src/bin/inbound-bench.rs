//! Inbound sync benchmark on real workerd against the mock HubSpot (issue 10 §7): `--records`
//! records posted to `POST /sync/contacts` in requests of `--per-request`, of which
//! `--unchanged-pct` % are already known (written by a warm-up pass first, so they diff as
//! unchanged); measures the HubSpot calls (batch upserts counted at the mock), the records
//! written, 429s, and the wall time from the first request to the last receipt without a
//! pending record, against the rate-limit bound of those calls.
//!
//! The mock enforces a Professional private app's limit (`--burst` per 10 s, default 190) and
//! the Worker's governor is told the same tier (`HUBSPOT_TIER=professional`).
//!
//! Prints a `BENCH name=inbound_sync …` line.
//!
//! Run: `cargo run --release -p hubspot-edge-tests --bin inbound-bench -- --help` (the README's
//! tool set-up must have run once: `scripts/test.sh` or `scripts/run.sh`).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use clap::Parser;
use hubspot_edge_core::outbound::WebhookSecret;
use hubspot_edge_tests::{http, Fixture, FixtureOptions};
use hubspot_mock::MockConfig;
use serde_json::{json, Value};

/// A public test secret.
const SECRET: &str = "whsec_aW5ib3VuZC1iZW5jaC1zZWNyZXQtMDAwMQ==";
const MAP: &str = r#"{"objects":{"contacts":{"fields":[
  {"hubspot":"email","type":"email"},
  {"hubspot":"firstname","field":"first_name"},
  {"hubspot":"lastname","field":"last_name"}]}}}"#;

/// Inbound sync benchmark: records through `POST /sync/contacts` to the mock HubSpot.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Records in the measured pass.
    #[arg(long, default_value_t = 10_000)]
    records: usize,
    /// Per cent of them already known and unchanged (written by a warm-up pass first).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(0..=100))]
    unchanged_pct: u64,
    /// Records per request (at most INBOUND_TYPES maxRecords, 1,000 here).
    #[arg(long, default_value_t = 1_000)]
    per_request: usize,
    /// The mock's limit per 10 s (Professional private app: 190).
    #[arg(long, default_value_t = 190)]
    burst: u32,
    /// The coalescing window (coalesceWindowMs).
    #[arg(long, default_value_t = 2_000)]
    window_ms: u64,
}

fn post(fx: &Fixture, id: &str, records: &[Value]) -> Result<String, String> {
    let body = json!({ "records": records }).to_string();
    let key = WebhookSecret::parse(SECRET).map_err(|e| e.to_string())?;
    let ts = hubspot_edge_tests::now_ms() / 1000;
    let signature = key.sign(id, ts, body.as_bytes());
    let ts = ts.to_string();
    let r = http::request(
        "POST",
        &fx.url("/sync/contacts"),
        &[
            ("webhook-id", id),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &signature),
            ("content-type", "application/json"),
        ],
        Some(body.as_bytes()),
    )
    .map_err(|e| e.to_string())?;
    if r.status != 202 {
        return Err(format!("POST /sync/contacts: {} {}", r.status, r.text()));
    }
    let v: Value = r.json().map_err(|e| e.to_string())?;
    v["receiptId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no receiptId: {v}"))
}

/// `(pending, written, unchanged, failed)` over a receipt's lines.
fn receipt_counts(fx: &Fixture, receipt: &str) -> Result<[usize; 4], String> {
    let key = WebhookSecret::parse(SECRET).map_err(|e| e.to_string())?;
    let id = format!("get-{}", hubspot_edge_tests::unique_id());
    let ts = hubspot_edge_tests::now_ms() / 1000;
    let signature = key.sign(&id, ts, b"");
    let ts = ts.to_string();
    let r = http::request(
        "GET",
        &fx.url(&format!("/sync/receipts/{receipt}")),
        &[
            ("webhook-id", &id),
            ("webhook-timestamp", &ts),
            ("webhook-signature", &signature),
        ],
        None,
    )
    .map_err(|e| e.to_string())?;
    let v: Value = r.json().map_err(|e| e.to_string())?;
    let mut out = [0; 4];
    for line in v["records"].as_array().ok_or(format!("receipt: {v}"))? {
        let i = match line["status"].as_str() {
            Some("pending") => 0,
            Some("written") => 1,
            Some("unchanged") => 2,
            _ => 3,
        };
        out[i] += 1;
    }
    Ok(out)
}

/// Posts `records` in requests of `per_request` and waits until no line of any receipt is
/// pending: the summed counts and the wall time.
fn pass(
    fx: &Fixture,
    tag: &str,
    records: &[Value],
    per_request: usize,
) -> Result<([usize; 4], Duration), String> {
    let started = Instant::now();
    let mut receipts = Vec::new();
    for (n, chunk) in records.chunks(per_request).enumerate() {
        receipts.push(post(fx, &format!("{tag}-{n}"), chunk)?);
    }
    // One receipt at a time, in order (they complete oldest first), every 250 ms: a receipt
    // read takes the same Durable Object the writes run in, so the poll must stay light.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut sum = [0; 4];
    let mut finished = Duration::ZERO;
    for r in &receipts {
        loop {
            let c = receipt_counts(fx, r)?;
            if c[0] == 0 {
                finished = started.elapsed();
                for i in 0..4 {
                    sum[i] += c[i];
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("still pending after 600 s: {r} {c:?}"));
            }
            std::thread::sleep(Duration::from_millis(250)); // Poll interval.
        }
    }
    Ok((sum, finished))
}

fn stats(mock: &str) -> Result<Value, Box<dyn std::error::Error>> {
    Ok(http::get(&format!("{mock}/__mock/stats"), None)?.json()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    eprintln!("building the Worker…");
    hubspot_edge_tests::wrangler::build_worker()?;
    eprintln!("starting the mock HubSpot and wrangler dev…");
    let types = format!(
        r#"{{"contacts":{{"coalesceWindowMs":{}}}}}"#,
        args.window_ms
    );
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            burst: args.burst,
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("INBOUND_SECRET", SECRET),
            ("INBOUND_TYPES", types.as_str()),
            ("SYNC_PORTAL_ID", "33"),
            ("HUBSPOT_TIER", "professional"),
        ]);
    options.wrangler.config = Some(
        hubspot_edge_tests::wrangler::prebuilt_config_with_own_bundle(
            "wrangler.inbound-bench.toml",
        )?,
    );
    let fx = Fixture::start(options)?;
    let mock = fx
        .hubspot
        .as_ref()
        .map(|m| m.base_url().to_owned())
        .ok_or("no mock")?;

    let run = hubspot_edge_tests::unique_id();
    let record = |i: usize, first: &str| {
        json!({"externalId": format!("b-{run}-{i}"),
               "fields": {"email": format!("bench-{run}-{i}@example.com"),
                          "first_name": first, "last_name": format!("N{i}")}})
    };
    #[allow(clippy::cast_possible_truncation)]
    let known = args.records * args.unchanged_pct as usize / 100;
    // Warm-up: the records that will be unchanged, written once.
    if known > 0 {
        let warm: Vec<Value> = (0..known).map(|i| record(i, "Ada")).collect();
        let (counts, took) = pass(&fx, &format!("warm-{run}"), &warm, args.per_request)?;
        eprintln!("warm-up: {known} records {counts:?} in {took:?}");
        // Rate-limit spacing, not a sync wait: the warm-up's calls leave the mock's window.
        std::thread::sleep(Duration::from_secs(11));
    }
    let reset = http::post(&format!("{mock}/__mock/reset-stats"), b"", None)?;
    if reset.status != 200 {
        return Err(format!("reset-stats: {}", reset.status).into());
    }
    let all: Vec<Value> = (0..args.records)
        .map(|i| record(i, if i < known { "Ada" } else { "Bob" }))
        .collect();
    let ([_, written, unchanged, failed], took) =
        pass(&fx, &format!("run-{run}"), &all, args.per_request)?;
    let s = stats(&mock)?;
    let calls = s["batchUpsert"]["calls"].as_u64().unwrap_or(0);
    // The least time the limit allows for `calls`: the first `burst` go at once, each further
    // `burst` one 10-s window later.
    let bound_s = (calls.div_ceil(u64::from(args.burst))).saturating_sub(1) * 10;
    println!(
        "BENCH name=inbound_sync records={} unchanged_pct={} per_request={} window_ms={} written={written} unchanged={unchanged} failed={failed} hubspot_upsert_calls={calls} upserted={} hubspot_requests={} hubspot_429s={} wall_s={:.2} rate_limit_bound_s={bound_s} limit_per_10s={}",
        args.records,
        args.unchanged_pct,
        args.per_request,
        args.window_ms,
        s["batchUpsert"]["written"],
        s["requests"],
        s["rateLimited"],
        took.as_secs_f64(),
        args.burst,
    );
    // The Worker's log, for where the time went (flushes, HubSpot calls).
    let log = hubspot_edge_tests::repo_root().join("target/inbound-bench.log");
    std::fs::write(&log, fx.worker.logs_since(0).join("\n"))?;
    eprintln!("the Worker's log: {}", log.display());
    fx.stop_worker();
    Ok(())
}
