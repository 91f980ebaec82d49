//! Native benchmark: `cargo run --profile bench-native -p hubspot-edge-bench`.
//!
//! Prints `BENCH name=<id> ns_per_batch=<n>` for `native_full`, `native_verify_only` and
//! `native_parse_filter_keys`. Each figure is the median of 21 rounds of ~25 ms after ~300 ms
//! of warm-up; an `INFO` line after each gives the fastest and slowest round (on a busy machine
//! the fastest round is the least disturbed one). `--quick` shortens everything tenfold.

// This binary's output is its purpose.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hubspot_edge_bench::{Fixture, Pipeline, Summary};

const ROUNDS: usize = 21;

fn main() -> ExitCode {
    let quick = std::env::args().any(|a| a == "--quick");
    match run(quick) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(quick: bool) -> Result<(), hubspot_edge_bench::BenchError> {
    let scale = if quick { 10 } else { 1 };
    let fixture = Fixture::new();
    let pipeline = Pipeline::new()?;
    let (body, sig, ts) = (&fixture.body, &fixture.signature, &fixture.timestamp);

    // Fail loudly, before timing anything, if the path does not do what it should.
    let summary = pipeline.full(body, sig, ts)?;
    println!(
        "INFO native body_bytes={} events={} kept={} filtered={} duplicates={} invalid={}",
        body.len(),
        summary.events,
        summary.kept,
        summary.filtered,
        summary.duplicates,
        summary.invalid
    );

    let full = measure(scale, || {
        pipeline.full(black_box(body), sig, ts).map(digest)
    });
    report("native_full", &full?);
    let verify = measure(scale, || {
        pipeline.verify(black_box(body), sig, ts).map(|()| 1)
    });
    report("native_verify_only", &verify?);
    let rest = measure(scale, || {
        pipeline.parse_filter_keys(black_box(body)).map(digest)
    });
    report("native_parse_filter_keys", &rest?);

    // Enrichment of one 100-record batch read: the JSON decode alone (baseline) and the whole
    // step (decode, map, snapshot, diff).
    let enrich = hubspot_edge_bench::enrich::Enrich::new();
    let s = enrich.full();
    println!(
        "INFO native enrich records={} changed={} fields={} snapshot_bytes={}",
        hubspot_edge_bench::enrich::RECORDS,
        s.changed,
        s.fields,
        s.snapshot_bytes
    );
    let decode = measure(scale, || {
        Ok::<_, hubspot_edge_bench::BenchError>(
            u32::try_from(black_box(&enrich).decode_only()).unwrap_or(0),
        )
    });
    report("native_enrich_decode", &decode?);
    let full = measure(scale, || {
        Ok::<_, hubspot_edge_bench::BenchError>(
            u32::try_from(black_box(&enrich).full().fields).unwrap_or(0),
        )
    });
    report("native_enrich_full", &full?);
    Ok(())
}

fn digest(s: Summary) -> u32 {
    s.kept ^ s.message_bytes
}

/// Nanoseconds per call of each round, sorted.
fn report(name: &str, samples: &[f64]) {
    let median = samples[samples.len() / 2];
    println!("BENCH name={name} ns_per_batch={median:.0}");
    println!(
        "INFO name={name} min_ns={:.0} max_ns={:.0} rounds={}",
        samples[0],
        samples[samples.len() - 1],
        samples.len()
    );
}

/// Nanoseconds per call in each of [`ROUNDS`] rounds, sorted.
fn measure<E>(scale: u32, mut f: impl FnMut() -> Result<u32, E>) -> Result<Vec<f64>, E> {
    let warmup = Duration::from_millis(300) / scale;
    let round = Duration::from_millis(25) / scale;

    // Warm up and calibrate the iterations per round.
    let start = Instant::now();
    let mut calls: u32 = 0;
    while start.elapsed() < warmup || calls < 10 {
        black_box(f()?);
        calls += 1;
    }
    let per_call = start.elapsed().as_secs_f64() / f64::from(calls);
    let iterations = ((round.as_secs_f64() / per_call) as u32).max(1);

    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..iterations {
            black_box(f()?);
        }
        samples.push(start.elapsed().as_secs_f64() * 1e9 / f64::from(iterations));
    }
    samples.sort_by(f64::total_cmp);
    Ok(samples)
}
