//! HubSpot client benchmark on real workerd against the mock HubSpot:
//!
//! 1. **Executor overhead**: the Worker's `/admin/hubspot/diagnostics/overhead` alternates bare
//!    `fetch`es of one record with executor reads of the same record (gate permit, fetch,
//!    interpretation, retry policy) and times both inside the Worker: the baseline and the
//!    measured path in the same run.
//! 2. **Governor efficiency**: ten clients read as fast as the Worker lets them for
//!    `SECONDS` (default 45) against the mock's 100-per-10-s rolling limit; reads completed
//!    per 10 s in steady state (after the first window's burst) versus the limit, and the 429s
//!    HubSpot (the mock) answered.
//!
//! Prints `BENCH name=<id> <metric>=<value>` lines.
//!
//! Run: `cargo run --release -p hubspot-edge-tests --bin api-bench [-- SECONDS]` (the README's
//! tool set-up must have run once: `scripts/test.sh` or `scripts/run.sh`).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hubspot_edge_tests::{Fixture, FixtureOptions};
use hubspot_mock::MockConfig;
use serde_json::Value;

const CLIENTS: usize = 10;
const LIMIT_PER_10S: u32 = 100;

fn get(fx: &Fixture, path: &str) -> Result<(u16, Value), String> {
    let r = fx
        .admin_request("GET", path, None, Duration::from_secs(40))
        .map_err(|e| e.to_string())?;
    Ok((r.status, r.json().unwrap_or(Value::Null)))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(45)
        .max(25);
    eprintln!("building the Worker…");
    hubspot_edge_tests::wrangler::build_worker()?;
    eprintln!("starting the mock HubSpot and wrangler dev…");
    let mut options = FixtureOptions::default().hubspot_mock(MockConfig {
        seed_contacts: 50,
        burst: LIMIT_PER_10S,
        ..MockConfig::default()
    });
    // No `[build]` and a private bundle: neither an edit to the sources nor a rebuild during
    // the run may restart the Worker.
    options.wrangler.config = Some(
        hubspot_edge_tests::wrangler::prebuilt_config_with_own_bundle("wrangler.api-bench.toml")?,
    );
    let fx = Fixture::start(options)?;
    let mock_url = fx
        .hubspot
        .as_ref()
        .map(|m| m.base_url().to_owned())
        .ok_or("no mock")?;

    // 1. Executor overhead: three rounds of 20 pairs, 12 s apart so that the bare reads (which
    // bypass the governor) never push the mock over its limit.
    for round in 0..3 {
        if round > 0 {
            std::thread::sleep(Duration::from_secs(12)); // Rate-limit spacing, not a sync wait.
        }
        let (status, json) = get(&fx, "/admin/hubspot/diagnostics/overhead?n=20")?;
        if status != 200 {
            return Err(format!("diagnostics: {status} {json}").into());
        }
        let bare = json["bare_fetch"]["mean_ms"].as_f64().unwrap_or(f64::NAN);
        let exec = json["executor"]["mean_ms"].as_f64().unwrap_or(f64::NAN);
        println!(
            "BENCH name=executor_overhead round={round} pairs={} bare_mean_ms={bare:.2} bare_p50_ms={} executor_mean_ms={exec:.2} executor_p50_ms={} added_mean_ms={:.2} ratio={:.2}",
            json["pairs"],
            json["bare_fetch"]["p50_ms"],
            json["executor"]["p50_ms"],
            exec - bare,
            exec / bare,
        );
    }
    std::thread::sleep(Duration::from_secs(11)); // Let the last round's window age out.
    let reset =
        hubspot_edge_tests::http::post(&format!("{mock_url}/__mock/reset-stats"), b"", None)?;
    if reset.status != 200 {
        return Err(format!("reset-stats: {}", reset.status).into());
    }

    // 2. Governor efficiency: completion times of reads, as fast as permitted.
    let stop = AtomicBool::new(false);
    let done: Mutex<Vec<f64>> = Mutex::new(Vec::new());
    let failed: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            let (fx, stop, done, failed) = (&fx, &stop, &done, &failed);
            s.spawn(move || {
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let id = i % 50 + 1;
                    i += CLIENTS;
                    match get(fx, &format!("/admin/hubspot/objects/contacts/{id}")) {
                        Ok((200, _)) => {
                            if let Ok(mut d) = done.lock() {
                                d.push(started.elapsed().as_secs_f64());
                            }
                        }
                        Ok((status, json)) => {
                            if let Ok(mut f) = failed.lock() {
                                f.push(format!("{status} {}", json["error"]["code"]));
                            }
                        }
                        Err(e) => {
                            if let Ok(mut f) = failed.lock() {
                                f.push(e);
                            }
                        }
                    }
                }
            });
        }
        std::thread::sleep(Duration::from_secs(seconds)); // The measurement period itself.
        stop.store(true, Ordering::Relaxed);
    });
    let done = done.into_inner().unwrap_or_default();
    let failed = failed.into_inner().unwrap_or_default();
    let stats: Value =
        hubspot_edge_tests::http::get(&format!("{mock_url}/__mock/stats"), None)?.json()?;
    // Steady state: whole 10-s windows after the first (which holds the initial burst).
    #[allow(clippy::cast_precision_loss)]
    let windows: Vec<usize> = (1..seconds / 10)
        .map(|w| {
            let (from, to) = ((w * 10) as f64, ((w + 1) * 10) as f64);
            done.iter().filter(|&&t| t >= from && t < to).count()
        })
        .collect();
    #[allow(clippy::cast_precision_loss)]
    let mean = windows.iter().sum::<usize>() as f64 / windows.len().max(1) as f64;
    println!(
        "BENCH name=governor_efficiency limit_per_10s={LIMIT_PER_10S} steady_windows={windows:?} mean_per_10s={mean:.1} efficiency={:.3} reads_ok={} reads_failed={} hubspot_429s={} hubspot_requests={}",
        mean / f64::from(LIMIT_PER_10S),
        done.len(),
        failed.len(),
        stats["rateLimited"],
        stats["requests"],
    );
    if let Some(f) = failed.first() {
        eprintln!("first failure: {f}");
    }
    Ok(())
}
