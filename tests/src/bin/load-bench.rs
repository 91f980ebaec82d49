//! Load benchmark on real workerd: HubSpot-signed batches into `wrangler dev` at a fixed rate
//! for a fixed time, against a destination that fails a seeded share of requests, with
//! HubSpot-style retries of a share of batches; then a drain phase with a deadline in which
//! every event must arrive. Counted at the destination by object and `webhook-id`: events lost,
//! delivered more than once, dead-lettered (read back through the admin API).
//!
//! Each step sends `rate` events/s for `--secs` seconds, in batches of `--batch` events from up
//! to `--concurrency` connections at once (HubSpot's in-flight limit is 10, docs/hubspot.md §2.4,
//! <https://developers.hubspot.com/docs/api/webhooks>), while the destination answers:
//!
//! - a share with 500/502/503/504, a share with 429 and `Retry-After`, a share after a delay
//!   (then 200); drawn per `(seed, object, attempt)`, so a run is reproducible;
//! - every request with 503 for `--outage-secs` (30 s) in the middle of the step.
//!
//! A share of batches is sent again the way HubSpot retries (docs/hubspot.md §2.5: up to 10 times,
//! `attemptNumber` incremented, a fresh v3 signature and timestamp), 0–5 s after the first
//! send; a batch the Worker does not answer 2xx within HubSpot's 5 s is retried too.
//!
//! A step passes when every event was delivered (a verified 2xx at the destination) exactly
//! once, nothing was dead-lettered, the sender kept the rate, and all of it within the drain
//! deadline. The search runs increasing rates (`--rates`) and stops at the first failing step;
//! the latency is the one measured at half the highest passing rate (a step of its own if the
//! search did not run it). Everything is bounded: events per step (`--max-events`), the drain
//! deadline, and the whole run (`--budget-secs`; steps that would not fit are skipped).
//!
//! Run: `cargo run --release -p hubspot-edge-tests --bin load-bench [-- --help]` (the README's
//! tool set-up must have run once: `scripts/test.sh` or `scripts/run.sh`). It builds the Worker,
//! runs it from a private copy of the bundle, and prints `STEP …` lines, a Markdown table and one
//! `LOAD …` summary line.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use hubspot_edge_tests::bench::{p50_p99, SeededRng};
use hubspot_edge_tests::destination::Faults;
use hubspot_edge_tests::{
    http, now_ms, Behavior, Fixture, FixtureOptions, HubSpotEvent, HubSpotRequest,
};
use serde_json::Value;

/// HubSpot gives up on a webhook POST after 5 s (docs/hubspot.md §2.5).
const HUBSPOT_TIMEOUT: Duration = Duration::from_secs(5);
/// HubSpot re-sends a failed batch up to 10 times (docs/hubspot.md §2.5).
const HUBSPOT_MAX_RETRIES: u64 = 10;
/// How long after a failed POST the bench sends HubSpot's retry (HubSpot spreads them over
/// 24 h; compressed here so the step can finish).
const HUBSPOT_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Deliberate HubSpot retries come this long (at most) after the batch's first send.
const HUBSPOT_RETRY_SPREAD_SECS: f64 = 5.0;
const POLL: Duration = Duration::from_millis(250);
/// How many problem ids are described in full.
const DESCRIBE_LIMIT: usize = 12;

#[derive(Debug, Clone)]
struct Args {
    rates: Vec<f64>,
    search: bool,
    secs: u64,
    drain_secs: u64,
    quiet_secs: u64,
    batch: usize,
    concurrency: usize,
    seed: u64,
    server_error: u32,
    too_many: u32,
    retry_after: u64,
    slow: u32,
    slow_ms: u64,
    outage_secs: u64,
    outage_at: Option<u64>,
    hubspot_retry: u32,
    retry_base: u64,
    retry_max: u64,
    max_attempts: u32,
    timeout_ms: Option<u64>,
    budget_secs: u64,
    max_events: usize,
    build: bool,
}

impl Default for Args {
    fn default() -> Self {
        Self {
            rates: vec![10.0, 20.0, 40.0, 80.0],
            search: true,
            secs: 60,
            drain_secs: 60,
            quiet_secs: 0,
            batch: 10,
            concurrency: 10,
            seed: 1,
            server_error: 50,
            too_many: 50,
            retry_after: 2,
            slow: 50,
            slow_ms: 1500,
            outage_secs: 30,
            outage_at: None,
            hubspot_retry: 100,
            retry_base: 1,
            retry_max: 8,
            max_attempts: 20,
            timeout_ms: None,
            budget_secs: 600,
            max_events: 50_000,
            build: true,
        }
    }
}

const USAGE: &str = "load-bench: signed HubSpot batches into wrangler dev at a fixed rate, with a failing destination

  --rate N            one step at N events/s (no search)
  --search            search over --rates (the default)
  --rates A,B,…       the search's rates in events/s, increasing (default 10,20,40,80)
  --secs S            send phase of each step (default 60)
  --drain-secs S      deadline after the send phase for every event to arrive (default 60)
  --quiet-secs S      then no request at the destination and no Worker log line for S
                      seconds, to catch late duplicates (default FORWARD_RETRY_MAX_SECS + 4)
  --batch N           events per HubSpot POST (default 10; HubSpot sends up to 100)
  --concurrency N     HubSpot POSTs in flight at most (default 10, HubSpot's limit)
  --seed N            seed of every random draw (default 1)
  --5xx PERMILLE      destination answers 500/502/503/504 (default 50 = 5%)
  --429 PERMILLE      destination answers 429 with Retry-After (default 50)
  --retry-after S     that Retry-After (default 2)
  --slow PERMILLE     destination answers 200 after --slow-ms (default 50)
  --slow-ms MS        (default 1500)
  --outage-secs S     every request answered 503 for S seconds per step (default 30; 0: none)
  --outage-at S       from S seconds into the send phase (default: centred)
  --hubspot-retry PERMILLE
                      batches HubSpot sends again, attemptNumber+1 (default 100)
  --retry-base S      FORWARD_RETRY_BASE_SECS (default 1)
  --retry-max S       FORWARD_RETRY_MAX_SECS (default 8)
  --max-attempts N    FORWARD_MAX_ATTEMPTS (default 20)
  --timeout-ms MS     FORWARD_TIMEOUT_MS (default: the Worker's default)
  --budget-secs S     the whole run stops starting steps that would end after S (default 600)
  --max-events N      events per step at most (default 50000)
  --no-build          run worker/build as it is (default: scripts/build-worker.sh first)";

fn parse_args() -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        if flag == "--search" {
            a.search = true;
            continue;
        }
        if flag == "--no-build" {
            a.build = false;
            continue;
        }
        let value = it
            .next()
            .ok_or(format!("{flag} needs a value\n\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        let num = |v: &str| v.parse::<u64>().map_err(|e| bad(&e));
        let per_mille = |v: &str| {
            v.parse::<u32>()
                .map_err(|e| bad(&e))
                .and_then(|n| (n <= 1000).then_some(n).ok_or(bad(&"at most 1000")))
        };
        match flag.as_str() {
            "--rate" => {
                a.rates = vec![value.parse::<f64>().map_err(|e| bad(&e))?];
                a.search = false;
            }
            "--rates" => {
                a.rates = value
                    .split(',')
                    .map(|r| r.trim().parse::<f64>().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?;
                a.search = true;
            }
            "--secs" => a.secs = num(&value)?,
            "--drain-secs" => a.drain_secs = num(&value)?,
            "--quiet-secs" => a.quiet_secs = num(&value)?,
            "--batch" => a.batch = usize::try_from(num(&value)?).map_err(|e| bad(&e))?,
            "--concurrency" => {
                a.concurrency = usize::try_from(num(&value)?).map_err(|e| bad(&e))?;
            }
            "--seed" => a.seed = num(&value)?,
            "--5xx" => a.server_error = per_mille(&value)?,
            "--429" => a.too_many = per_mille(&value)?,
            "--retry-after" => a.retry_after = num(&value)?,
            "--slow" => a.slow = per_mille(&value)?,
            "--slow-ms" => a.slow_ms = num(&value)?,
            "--outage-secs" => a.outage_secs = num(&value)?,
            "--outage-at" => a.outage_at = Some(num(&value)?),
            "--hubspot-retry" => a.hubspot_retry = per_mille(&value)?,
            "--retry-base" => a.retry_base = num(&value)?,
            "--retry-max" => a.retry_max = num(&value)?,
            "--max-attempts" => {
                a.max_attempts = u32::try_from(num(&value)?).map_err(|e| bad(&e))?;
            }
            "--timeout-ms" => a.timeout_ms = Some(num(&value)?),
            "--budget-secs" => a.budget_secs = num(&value)?,
            "--max-events" => a.max_events = usize::try_from(num(&value)?).map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}\n\n{USAGE}")),
        }
    }
    if a.quiet_secs == 0 {
        a.quiet_secs = a.retry_max + 4;
    }
    if a.rates.is_empty() || a.rates.iter().any(|r| !(*r > 0.0 && *r <= 10_000.0)) {
        return Err("rates must be in (0, 10000] events/s".into());
    }
    if a.rates.windows(2).any(|w| w[0] >= w[1]) {
        return Err("--rates must increase".into());
    }
    if !(1..=100).contains(&a.batch) {
        return Err("--batch must be 1..=100 (HubSpot sends up to 100 events per POST)".into());
    }
    if !(1..=100).contains(&a.concurrency) {
        return Err("--concurrency must be 1..=100".into());
    }
    if a.server_error + a.too_many + a.slow > 1000 {
        return Err("--5xx + --429 + --slow must be at most 1000 per mille".into());
    }
    if a.secs == 0 || a.secs > 3600 || a.drain_secs > 3600 {
        return Err("--secs must be 1..=3600 and --drain-secs at most 3600".into());
    }
    if a.outage_secs > 0 && a.outage_at.unwrap_or(0) + a.outage_secs > a.secs {
        return Err("the outage must end within the send phase (--secs)".into());
    }
    Ok(a)
}

impl Args {
    fn outage_start(&self) -> u64 {
        self.outage_at
            .unwrap_or_else(|| self.secs.saturating_sub(self.outage_secs) / 2)
    }

    fn faults(&self) -> Faults {
        Faults {
            seed: self.seed,
            server_error_per_mille: self.server_error,
            too_many_requests_per_mille: self.too_many,
            retry_after_secs: self.retry_after,
            slow_per_mille: self.slow,
            slow: Duration::from_millis(self.slow_ms),
        }
    }

    /// The worst-case wall time of one step.
    fn step_secs(&self) -> u64 {
        self.secs + self.drain_secs + self.quiet_secs * 3 + 10
    }

    fn settings(&self) -> String {
        format!(
            "secs={} drain_secs={} batch={} concurrency={} seed={} 5xx={}‰ 429={}‰(Retry-After {}s) slow={}‰({}ms) outage={}s@{}s hubspot_retry={}‰ FORWARD_RETRY_BASE_SECS={} FORWARD_RETRY_MAX_SECS={} FORWARD_MAX_ATTEMPTS={} FORWARD_TIMEOUT_MS={}",
            self.secs,
            self.drain_secs,
            self.batch,
            self.concurrency,
            self.seed,
            self.server_error,
            self.too_many,
            self.retry_after,
            self.slow,
            self.slow_ms,
            self.outage_secs,
            self.outage_start(),
            self.hubspot_retry,
            self.retry_base,
            self.retry_max,
            self.max_attempts,
            self.timeout_ms
                .map_or_else(|| "default".to_owned(), |t| t.to_string()),
        )
    }
}

/// One HubSpot POST to make: batch `batch` with `attemptNumber` `attempt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Job {
    due: Instant,
    /// Tie-break: the order the jobs were planned in.
    seq: u64,
    batch: usize,
    attempt: u64,
    deliberate: bool,
}

/// What the sender saw for one batch.
#[derive(Debug, Default, Clone)]
struct BatchLog {
    first_sent_ms: Option<u64>,
    first_sent: Option<Instant>,
    accepted: bool,
    gave_up: bool,
    posts: u32,
    failed_posts: Vec<String>,
}

/// The sender's counters for a step.
#[derive(Debug, Default)]
struct Sent {
    batches: Vec<BatchLog>,
    deliberate_retries: usize,
    failure_retries: usize,
    ingress_ms: Vec<f64>,
}

/// Everything one step measured.
#[derive(Debug, Default, Clone)]
struct StepResult {
    rate: f64,
    events: usize,
    batches: usize,
    sent_rate: f64,
    max_lag_ms: u64,
    hubspot_retries: usize,
    ingress_retries: usize,
    ingress_gave_up: usize,
    ingress_p50_ms: f64,
    ingress_p99_ms: f64,
    requests: usize,
    answers: BTreeMap<String, usize>,
    delivered: usize,
    lost: usize,
    dead_letters: usize,
    dead_letters_other: usize,
    duplicates: usize,
    duplicate_deliveries: usize,
    duplicates_same_id: usize,
    unknown: usize,
    p50_ms: f64,
    p99_ms: f64,
    first_try: usize,
    first_try_p50_ms: f64,
    first_try_p99_ms: f64,
    outside_outage: usize,
    outside_outage_p50_ms: f64,
    outside_outage_p99_ms: f64,
    drained_after_s: Option<f64>,
    /// Whether the Worker went quiet before the end (else undelivered events may still be
    /// on their way: late, not provably lost).
    worker_idle: bool,
    worker: BTreeMap<String, u64>,
    pass: bool,
    elapsed_s: f64,
}

/// One request the destination received for an object of this step.
#[derive(Debug, Clone)]
struct Seen {
    seq: usize,
    at_ms: u64,
    at: Instant,
    webhook_id: String,
    behavior: Behavior,
    answered: Option<u16>,
    ok: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let run_started = Instant::now();
    let machine = machine();
    if args.build {
        eprintln!("building the Worker…");
        hubspot_edge_tests::wrangler::build_worker()?;
    }
    eprintln!("starting the destination and wrangler dev…");
    let mut options = FixtureOptions::default()
        .var("FORWARD_RETRY_BASE_SECS", args.retry_base.to_string())
        .var("FORWARD_RETRY_MAX_SECS", args.retry_max.to_string())
        .var("FORWARD_MAX_ATTEMPTS", args.max_attempts.to_string());
    if let Some(t) = args.timeout_ms {
        options = options.var("FORWARD_TIMEOUT_MS", t.to_string());
    }
    options.wrangler.config = Some(
        hubspot_edge_tests::wrangler::prebuilt_config_with_own_bundle("wrangler.load-bench.toml")?,
    );
    let fx = Fixture::start(options)?;

    // Warm-up (isolate start, queue consumer start), before any failure is switched on.
    let warm: Vec<HubSpotEvent> = (0..10)
        .map(|i| HubSpotEvent::creation("contact", 1_000 + i))
        .collect();
    fx.send_events(&warm)?.expect_status(200)?;
    fx.dest.wait_for_ok(
        &warm
            .iter()
            .filter_map(HubSpotEvent::get_object_id)
            .collect::<Vec<_>>(),
        Duration::from_secs(60),
    )?;
    fx.dest.set_faults(Some(args.faults()));
    println!("INFO machine: {machine}");
    println!("INFO settings: {}", args.settings());

    let mut results: Vec<StepResult> = Vec::new();
    let mut skipped = Vec::new();
    let mut step_index = 0u64;
    let fits =
        |started: Instant| started.elapsed().as_secs() + args.step_secs() <= args.budget_secs;
    for &rate in &args.rates {
        if !fits(run_started) {
            skipped.push(rate);
            continue;
        }
        step_index += 1;
        let r = run_step(&fx, &args, rate, step_index)?;
        let pass = r.pass;
        results.push(r);
        if !pass && args.search {
            break;
        }
    }
    // The latency at half the highest passing rate: measured already if the rates double.
    let best = results
        .iter()
        .filter(|r| r.pass)
        .map(|r| r.rate)
        .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
    let mut half_note = String::new();
    if let Some(best) = best.filter(|_| args.search) {
        let half = best / 2.0;
        if !results.iter().any(|r| (r.rate - half).abs() < 1e-9) {
            if fits(run_started) {
                step_index += 1;
                results.push(run_step(&fx, &args, half, step_index)?);
            } else {
                half_note = format!(" (no step at {half} events/s: over --budget-secs)");
            }
        }
    }

    // Report.
    println!();
    println!("| events/s | sent | events | HubSpot retries + on failure | delivered | lost | duplicates | dead letters | p50 / p99 ms | p50 / p99 ms, sent outside the outage | p50 / p99 ms, first try | drained after | result |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    let mut sorted = results.clone();
    sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    for r in &sorted {
        println!(
            "| {} | {:.1}/s | {} | {} + {} | {} | {} | {} | {} | {:.0} / {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {} | {} |",
            r.rate,
            r.sent_rate,
            r.events,
            r.hubspot_retries,
            r.ingress_retries,
            r.delivered,
            if r.lost > 0 && !r.worker_idle {
                format!("{} undelivered, Worker still busy", r.lost)
            } else {
                r.lost.to_string()
            },
            if r.duplicates == 0 {
                "0".to_owned()
            } else {
                format!("{} ({} extra)", r.duplicates, r.duplicate_deliveries)
            },
            r.dead_letters,
            r.p50_ms,
            r.p99_ms,
            r.outside_outage_p50_ms,
            r.outside_outage_p99_ms,
            r.first_try_p50_ms,
            r.first_try_p99_ms,
            r.drained_after_s
                .map_or_else(|| "not drained".to_owned(), |s| format!("{s:.1} s")),
            if r.pass { "pass" } else { "FAIL" }
        );
    }
    for rate in &skipped {
        println!("| {rate} | skipped: over --budget-secs | | | | | | | | | | | |");
    }
    println!();
    let total_dead: usize = results
        .iter()
        .map(|r| r.dead_letters + r.dead_letters_other)
        .sum();
    let at_half = best.and_then(|b| {
        results
            .iter()
            .find(|r| (r.rate - b / 2.0).abs() < 1e-9)
            .cloned()
    });
    let first_fail = sorted.iter().find(|r| !r.pass);
    let mut line = String::from("LOAD");
    match best {
        _ if !args.search => {}
        Some(b) => {
            let _ = write!(line, " max_sustained_events_per_s={b}");
        }
        None => line.push_str(" max_sustained_events_per_s=none"),
    }
    if let Some(f) = first_fail {
        let _ = write!(
            line,
            " first_failing={} (undelivered={} worker_idle={} duplicates={} dead_letters={} drained_in_time={})",
            f.rate,
            f.lost,
            f.worker_idle,
            f.duplicates,
            f.dead_letters,
            f.drained_after_s.is_some()
        );
    }
    match &at_half {
        Some(h) => {
            let _ = write!(
                line,
                " at_half_rate={} p50_ms={:.0} p99_ms={:.0} outside_outage_p50_ms={:.0} outside_outage_p99_ms={:.0} first_try_p50_ms={:.0} first_try_p99_ms={:.0}",
                h.rate, h.p50_ms, h.p99_ms, h.outside_outage_p50_ms, h.outside_outage_p99_ms, h.first_try_p50_ms, h.first_try_p99_ms
            );
        }
        None if !args.search => {
            if let Some(r) = results.first() {
                let _ = write!(
                    line,
                    " at_rate={} pass={} lost={} duplicates={} p50_ms={:.0} p99_ms={:.0} outside_outage_p50_ms={:.0} outside_outage_p99_ms={:.0} first_try_p50_ms={:.0} first_try_p99_ms={:.0}",
                    r.rate, r.pass, r.lost, r.duplicates, r.p50_ms, r.p99_ms, r.outside_outage_p50_ms, r.outside_outage_p99_ms, r.first_try_p50_ms, r.first_try_p99_ms
                );
            }
        }
        None => {
            let _ = write!(line, " at_half_rate=none{half_note}");
        }
    }
    let _ = write!(
        line,
        " dead_letters={total_dead} run_s={:.0} load_average_at_end={} {}",
        run_started.elapsed().as_secs_f64(),
        load_average(),
        args.settings()
    );
    println!("{line}");
    drop(fx);
    Ok(())
}

/// The Worker's dead letters: id → summary, all pages.
fn dead_letters(fx: &Fixture) -> Result<BTreeMap<String, Value>, Box<dyn std::error::Error>> {
    let mut out = BTreeMap::new();
    let mut cursor = String::new();
    // Bounded: 100 pages of 1,000.
    for _ in 0..100 {
        let page = fx
            .admin_get(&format!("/admin/dead-letters?limit=1000&cursor={cursor}"))?
            .expect_status(200)?
            .json()?;
        for item in page["items"].as_array().into_iter().flatten() {
            if let Some(id) = item["id"].as_str() {
                out.insert(id.to_owned(), item.clone());
            }
        }
        match page["cursor"].as_str() {
            Some(c) if !c.is_empty() => cursor = c.to_owned(),
            _ => break,
        }
    }
    Ok(out)
}

#[allow(clippy::too_many_lines)] // One linear script: plan, send, drain, count, describe.
fn run_step(
    fx: &Fixture,
    args: &Args,
    rate: f64,
    step_index: u64,
) -> Result<StepResult, Box<dyn std::error::Error>> {
    let step_started = Instant::now();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let events_total = ((rate * args.secs as f64).round() as usize).clamp(1, args.max_events);
    let n_batches = events_total.div_ceil(args.batch);
    let interval = Duration::from_secs_f64(args.batch as f64 / rate);
    let base_object = step_index * 100_000_000;
    eprintln!(
        "step {step_index}: {rate} events/s for {} s: {events_total} events in {n_batches} batches of ≤{}",
        args.secs, args.batch
    );
    let dead_before = dead_letters(fx)?;
    let dest_mark = fx.dest.request_count();
    let log_mark = fx.worker.log_mark();

    // Plan: the events of every batch, and which batches HubSpot sends again.
    let start = Instant::now() + Duration::from_millis(200);
    let start_ms = now_ms() + 200;
    let mut rng = SeededRng::new(args.seed ^ step_index.wrapping_mul(0xA076_1D64_78BD_642F));
    let kinds = ["contact", "deal", "company", "contact"];
    let mut batches: Vec<Vec<HubSpotEvent>> = Vec::with_capacity(n_batches);
    let mut heap = BinaryHeap::new();
    let mut job_seq = 0u64;
    for b in 0..n_batches {
        let due = start + interval * u32::try_from(b)?;
        let occurred = start_ms + u64::try_from((interval * u32::try_from(b)?).as_millis())?;
        let first = b * args.batch;
        let last = (first + args.batch).min(events_total);
        let events: Vec<HubSpotEvent> = (first..last)
            .map(|i| {
                let object = base_object + u64::try_from(i).unwrap_or(0);
                let kind = kinds[i % kinds.len()];
                let e = match i % 4 {
                    0 => HubSpotEvent::creation(kind, object),
                    1 => HubSpotEvent::property_change(kind, object, "dealstage", "contractsent"),
                    2 => HubSpotEvent::deletion(kind, object),
                    _ => HubSpotEvent::property_change(
                        kind,
                        object,
                        "lifecyclestage",
                        "marketingqualifiedlead",
                    ),
                };
                e.event_id(object).occurred_at(occurred)
            })
            .collect();
        batches.push(events);
        heap.push(Reverse(Job {
            due,
            seq: job_seq,
            batch: b,
            attempt: 0,
            deliberate: false,
        }));
        job_seq += 1;
        if rng.chance(args.hubspot_retry) {
            // One retry, or two (a quarter of them).
            let retries = if rng.chance(250) { 2 } else { 1 };
            for attempt in 1..=retries {
                let after = Duration::from_secs_f64(rng.unit() * HUBSPOT_RETRY_SPREAD_SECS);
                heap.push(Reverse(Job {
                    due: due + after,
                    seq: job_seq,
                    batch: b,
                    attempt,
                    deliberate: true,
                }));
                job_seq += 1;
            }
        }
    }
    if args.outage_secs > 0 {
        fx.dest.schedule_outage(
            start + Duration::from_secs(args.outage_start()),
            Duration::from_secs(args.outage_secs),
            Behavior::Status(503),
        );
    }

    // Send: a scheduler (this thread) hands due jobs to `concurrency` senders.
    let heap = Mutex::new(heap);
    let sent = Mutex::new(Sent {
        batches: vec![BatchLog::default(); n_batches],
        ..Sent::default()
    });
    let in_flight = AtomicUsize::new(0);
    let max_lag_ms = AtomicUsize::new(0);
    let base_url = fx.worker.base_url();
    let (tx, rx) = mpsc::channel::<Job>();
    let rx = Mutex::new(rx);
    thread::scope(|s| {
        for _ in 0..args.concurrency {
            s.spawn(|| loop {
                let job = match lock(&rx).recv() {
                    Ok(j) => j,
                    Err(_) => return,
                };
                let lag = Instant::now().saturating_duration_since(job.due);
                max_lag_ms.fetch_max(
                    usize::try_from(lag.as_millis()).unwrap_or(usize::MAX),
                    Ordering::Relaxed,
                );
                let events: Vec<HubSpotEvent> = batches[job.batch]
                    .iter()
                    .map(|e| e.clone().attempt_number(job.attempt))
                    .collect();
                let body = HubSpotEvent::batch(&events);
                // A fresh v3 signature and timestamp per attempt, as HubSpot sends them.
                let request = HubSpotRequest::new(&base_url, &fx.client_secret, body.clone());
                let headers = request.headers();
                let refs: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                {
                    let mut sent = lock(&sent);
                    let log = &mut sent.batches[job.batch];
                    if log.first_sent_ms.is_none() {
                        log.first_sent_ms = Some(now_ms());
                        log.first_sent = Some(Instant::now());
                    }
                    log.posts += 1;
                }
                let t = Instant::now();
                let result = http::request_with_timeout(
                    "POST",
                    &format!("{base_url}{}", hubspot_edge_tests::hubspot::WEBHOOK_PATH),
                    &refs,
                    Some(&body),
                    HUBSPOT_TIMEOUT,
                );
                let took = t.elapsed().as_secs_f64() * 1000.0;
                let failure = match &result {
                    Ok(r) if r.is_success() => None,
                    Ok(r) => Some(format!("status {}", r.status)),
                    Err(e) => Some(e.to_string()),
                };
                let mut sent = lock(&sent);
                sent.ingress_ms.push(took);
                if job.deliberate {
                    sent.deliberate_retries += 1;
                }
                let log = &mut sent.batches[job.batch];
                match failure {
                    None => log.accepted = true,
                    Some(why) => {
                        log.failed_posts
                            .push(format!("attempt {}: {why}", job.attempt));
                        if job.attempt < HUBSPOT_MAX_RETRIES {
                            sent.failure_retries += 1;
                            lock(&heap).push(Reverse(Job {
                                due: Instant::now() + HUBSPOT_RETRY_DELAY,
                                seq: u64::MAX,
                                batch: job.batch,
                                attempt: job.attempt + 1,
                                deliberate: false,
                            }));
                        } else if !log.accepted {
                            log.gave_up = true;
                        }
                    }
                }
                drop(sent);
                in_flight.fetch_sub(1, Ordering::SeqCst);
            });
        }
        loop {
            let now = Instant::now();
            let mut next_due = None;
            {
                let mut h = lock(&heap);
                while let Some(Reverse(job)) = h.peek().copied() {
                    if job.due > now {
                        next_due = Some(job.due);
                        break;
                    }
                    h.pop();
                    in_flight.fetch_add(1, Ordering::SeqCst);
                    if tx.send(job).is_err() {
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            }
            if next_due.is_none() && in_flight.load(Ordering::SeqCst) == 0 && lock(&heap).is_empty()
            {
                break;
            }
            let wait = next_due.map_or(Duration::from_millis(20), |d| {
                d.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(20))
            });
            thread::sleep(wait); // Pacing the sender, not synchronisation.
        }
        drop(tx);
    });
    let send_end = Instant::now();
    let sent = sent.into_inner().unwrap_or_else(PoisonError::into_inner);
    eprintln!(
        "step {step_index}: sent in {:.1} s; draining (deadline {} s)…",
        send_end.duration_since(step_started).as_secs_f64(),
        args.drain_secs
    );

    // Drain: every event delivered, or the deadline.
    let range = base_object..base_object + u64::try_from(events_total)?;
    let ok_count = || {
        fx.dest.with_deliveries(|ds| {
            ds.get(dest_mark..)
                .unwrap_or_default()
                .iter()
                .filter(|d| d.is_ok())
                .filter_map(|d| d.object_id.filter(|o| range.contains(o)))
                .collect::<HashSet<u64>>()
                .len()
        })
    };
    let deadline = send_end + Duration::from_secs(args.drain_secs);
    let mut drained_at = None;
    loop {
        if ok_count() >= events_total {
            drained_at = Some(Instant::now());
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        thread::sleep(POLL); // Poll interval of the drain deadline.
    }
    // Quiet: no request at the destination and no Worker log line for quiet_secs (late
    // retries and duplicates arrive here), at most three times that.
    let quiet = Duration::from_secs(args.quiet_secs);
    let quiet_deadline = Instant::now() + quiet * 3;
    let mut last = (
        fx.dest.request_count(),
        fx.worker.log_mark(),
        Instant::now(),
    );
    let mut worker_idle = false;
    while Instant::now() < quiet_deadline {
        thread::sleep(POLL); // Poll interval of the quiet window.
        let now = (fx.dest.request_count(), fx.worker.log_mark());
        if now != (last.0, last.1) {
            last = (now.0, now.1, Instant::now());
        } else if last.2.elapsed() >= quiet {
            worker_idle = true;
            break;
        }
    }
    fx.dest.clear_outage();

    // Count.
    let outage_window = (args.outage_secs > 0).then(|| {
        let s = start + Duration::from_secs(args.outage_start());
        (s, s + Duration::from_secs(args.outage_secs))
    });
    let mut by_object: HashMap<u64, Vec<Seen>> = HashMap::new();
    let mut unknown = 0;
    let mut requests = 0;
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    let faults = args.faults();
    fx.dest.with_deliveries(|ds| {
        for d in ds.get(dest_mark..).unwrap_or_default() {
            let Some(object) = d.object_id.filter(|o| range.contains(o)) else {
                unknown += 1;
                continue;
            };
            requests += 1;
            let in_outage =
                outage_window.is_some_and(|(s, e)| s <= d.received_at && d.received_at < e);
            let class = match (d.behavior, d.answered) {
                (_, _) if !d.verified => "unverified".to_owned(),
                (Behavior::Status(503), _) if in_outage => "outage_503".to_owned(),
                (Behavior::Status(s), Some(_)) if s >= 500 => "5xx".to_owned(),
                (Behavior::StatusWithRetryAfter(429, _), Some(_)) => "429".to_owned(),
                (Behavior::Delayed(dur, 200), Some(200)) if dur == faults.slow => {
                    "slow_200".to_owned()
                }
                (_, Some(s)) if (200..300).contains(&s) => "200".to_owned(),
                (b, None) => format!("unanswered_{b:?}"),
                (_, Some(s)) => format!("status_{s}"),
            };
            *answers.entry(class).or_default() += 1;
            by_object.entry(object).or_default().push(Seen {
                seq: d.seq,
                at_ms: d.received_at_ms,
                at: d.received_at,
                webhook_id: d.webhook_id.clone().unwrap_or_default(),
                behavior: d.behavior,
                answered: d.answered,
                ok: d.is_ok(),
            });
        }
    });

    // Dead letters of this step (by the object in their payload).
    let dead_after = dead_letters(fx)?;
    let mut dead_by_object: HashMap<u64, (String, Value)> = HashMap::new();
    let mut dead_other = Vec::new();
    for id in dead_after
        .keys()
        .filter(|id| !dead_before.contains_key(*id))
    {
        let full = fx.admin_get(&format!("/admin/dead-letters/{id}"))?.json()?;
        let object = full["payload"]["objectId"].as_u64().or_else(|| {
            full["payload"]["objectId"]
                .as_str()
                .and_then(|s| s.parse().ok())
        });
        match object.filter(|o| range.contains(o)) {
            Some(o) => {
                dead_by_object.insert(o, (id.clone(), full));
            }
            None => dead_other.push((id.clone(), full)),
        }
    }

    let mut latencies = Vec::new();
    let mut first_try = Vec::new();
    let mut outside_outage = Vec::new();
    let mut lost = Vec::new();
    let mut duplicated = Vec::new();
    let mut duplicate_deliveries = 0;
    let mut duplicates_same_id = 0;
    for i in 0..events_total {
        let object = base_object + u64::try_from(i)?;
        let batch = &sent.batches[i / args.batch];
        let seen = by_object
            .get(&object)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let oks: Vec<&Seen> = seen.iter().filter(|s| s.ok).collect();
        match (oks.first(), batch.first_sent_ms) {
            (Some(first_ok), Some(sent_ms)) => {
                #[allow(clippy::cast_precision_loss)]
                let ms = first_ok.at_ms.saturating_sub(sent_ms) as f64;
                latencies.push(ms);
                let sent_in_outage = outage_window
                    .is_some_and(|(s, e)| batch.first_sent.is_some_and(|t| s <= t && t < e));
                if !sent_in_outage {
                    outside_outage.push(ms);
                }
                if seen
                    .first()
                    .is_some_and(|s| s.ok && s.behavior == Behavior::Status(200))
                {
                    first_try.push(ms);
                }
            }
            (None, _) if !dead_by_object.contains_key(&object) => lost.push(object),
            _ => {}
        }
        if oks.len() > 1 {
            duplicate_deliveries += oks.len() - 1;
            let ids: HashSet<&str> = oks.iter().map(|s| s.webhook_id.as_str()).collect();
            if ids.len() == 1 {
                duplicates_same_id += 1;
            }
            duplicated.push(object);
        }
    }
    let delivered = by_object
        .values()
        .filter(|v| v.iter().any(|s| s.ok))
        .count();

    // The Worker's side, from its logs.
    let logs = fx.worker.logs_since(log_mark);
    let mut worker: BTreeMap<String, u64> = BTreeMap::new();
    // What the runtime itself reports (uncaught errors, exceeded limits, cancelled
    // invocations): the lines that are not the Worker's JSON.
    let runtime_problems: Vec<&String> = logs
        .iter()
        .filter(|l| hubspot_edge_tests::wrangler::json_object_in(l).is_none())
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            [
                "error", "exceed", "cancel", "hung", "uncaught", "panick", "limit",
            ]
            .iter()
            .any(|w| l.contains(w))
        })
        .collect();
    if !runtime_problems.is_empty() {
        worker.insert(
            "runtime_problem_lines".into(),
            runtime_problems.len() as u64,
        );
    }
    for line in fx.worker.json_logs_since(log_mark) {
        let msg = line["message"].as_str().unwrap_or("-");
        let level = line["level"].as_str().unwrap_or("-");
        if msg == "queue_batch" && line["queue"] == "hubspot-edge-events" {
            for f in [
                "messages",
                "delivered",
                "duplicates",
                "retried",
                "dead_lettered",
            ] {
                *worker.entry(format!("consumer_{f}")).or_default() +=
                    line[f].as_u64().unwrap_or(0);
            }
        } else if msg == "forward_retry" {
            let n = line["keys"].as_array().map_or(1, Vec::len) as u64;
            let outcome = line["outcome"].as_str().unwrap_or("-");
            *worker
                .entry(format!("forward_retry_{outcome}"))
                .or_default() += n;
        } else if level != "info" || msg == "dead_letter_stored" {
            *worker.entry(format!("{level}_{msg}")).or_default() += 1;
        }
    }

    let mut ingress_ms = sent.ingress_ms.clone();
    ingress_ms.sort_by(f64::total_cmp);
    let (ingress_p50_ms, ingress_p99_ms) = p50_p99(ingress_ms);
    let first_sends: Vec<Instant> = sent.batches.iter().filter_map(|b| b.first_sent).collect();
    let last_first_send = first_sends
        .iter()
        .max()
        .map_or(0.0, |t| t.saturating_duration_since(start).as_secs_f64());
    #[allow(clippy::cast_precision_loss)]
    let sent_rate = events_total as f64 / last_first_send.max(args.secs as f64);
    let ingress_gave_up = sent.batches.iter().filter(|b| b.gave_up).count();
    let (p50_ms, p99_ms) = p50_p99(latencies);
    let first_try_n = first_try.len();
    let (first_try_p50_ms, first_try_p99_ms) = p50_p99(first_try);
    let outside_outage_n = outside_outage.len();
    let (outside_outage_p50_ms, outside_outage_p99_ms) = p50_p99(outside_outage);
    let drained_after_s = drained_at.map(|t| t.saturating_duration_since(send_end).as_secs_f64());
    let kept_rate = sent_rate >= rate * 0.95;
    let pass = lost.is_empty()
        && duplicated.is_empty()
        && dead_by_object.is_empty()
        && drained_at.is_some()
        && ingress_gave_up == 0
        && kept_rate;
    let r = StepResult {
        rate,
        events: events_total,
        batches: n_batches,
        sent_rate,
        max_lag_ms: u64::try_from(max_lag_ms.load(Ordering::Relaxed)).unwrap_or(u64::MAX),
        hubspot_retries: sent.deliberate_retries,
        ingress_retries: sent.failure_retries,
        ingress_gave_up,
        ingress_p50_ms,
        ingress_p99_ms,
        requests,
        answers,
        delivered,
        lost: lost.len(),
        dead_letters: dead_by_object.len(),
        dead_letters_other: dead_other.len(),
        duplicates: duplicated.len(),
        duplicate_deliveries,
        duplicates_same_id,
        unknown,
        p50_ms,
        p99_ms,
        first_try: first_try_n,
        first_try_p50_ms,
        first_try_p99_ms,
        outside_outage: outside_outage_n,
        outside_outage_p50_ms,
        outside_outage_p99_ms,
        drained_after_s,
        worker_idle,
        worker,
        pass,
        elapsed_s: step_started.elapsed().as_secs_f64(),
    };
    println!(
        "STEP rate={} events={} batches={} sent_rate={:.1} max_send_lag_ms={} hubspot_retries={} ingress_retries={} ingress_gave_up={} ingress_p50_ms={:.0} ingress_p99_ms={:.0} requests={} answers={:?} delivered={} lost={} duplicates={} duplicate_deliveries={} duplicates_same_webhook_id={} dead_letters={} dead_letters_other={} unknown_requests={} p50_ms={:.0} p99_ms={:.0} first_try={} first_try_p50_ms={:.0} first_try_p99_ms={:.0} outside_outage={} outside_outage_p50_ms={:.0} outside_outage_p99_ms={:.0} drained_after_s={} worker_idle={} step_s={:.0} pass={}",
        r.rate,
        r.events,
        r.batches,
        r.sent_rate,
        r.max_lag_ms,
        r.hubspot_retries,
        r.ingress_retries,
        r.ingress_gave_up,
        r.ingress_p50_ms,
        r.ingress_p99_ms,
        r.requests,
        r.answers,
        r.delivered,
        r.lost,
        r.duplicates,
        r.duplicate_deliveries,
        r.duplicates_same_id,
        r.dead_letters,
        r.dead_letters_other,
        r.unknown,
        r.p50_ms,
        r.p99_ms,
        r.first_try,
        r.first_try_p50_ms,
        r.first_try_p99_ms,
        r.outside_outage,
        r.outside_outage_p50_ms,
        r.outside_outage_p99_ms,
        r.drained_after_s.map_or_else(|| "none".to_owned(), |s| format!("{s:.1}")),
        r.worker_idle,
        r.elapsed_s,
        r.pass
    );
    println!("STEP rate={} worker={:?}", r.rate, r.worker);
    for l in runtime_problems.iter().take(DESCRIBE_LIMIT) {
        let l: String = l.chars().take(400).collect();
        println!("PROBLEM rate={} runtime: {l}", r.rate);
    }
    // The Worker's whole log of the step, for a post-mortem.
    let log_path = hubspot_edge_tests::repo_root()
        .join("target/e2e")
        .join(format!("load-bench-step{step_index}-{rate}.log"));
    if std::fs::write(&log_path, logs.join("\n")).is_ok() {
        println!("INFO rate={} Worker log: {}", r.rate, log_path.display());
    }
    if !kept_rate {
        println!(
            "PROBLEM rate={} the sender fell behind: {:.1} events/s sent (max lag {} ms)",
            r.rate, r.sent_rate, r.max_lag_ms
        );
    }
    if ingress_gave_up > 0 {
        for (b, log) in sent
            .batches
            .iter()
            .enumerate()
            .filter(|(_, l)| l.gave_up)
            .take(DESCRIBE_LIMIT)
        {
            println!(
                "PROBLEM rate={} ingress gave up on batch {b}: {:?}",
                r.rate, log.failed_posts
            );
        }
    }

    // Describe every problem id: what the destination saw, what the Worker logged.
    let key_of = |object: u64| -> String {
        let i = usize::try_from(object - base_object).unwrap_or(0);
        batches[i / args.batch]
            .get(i % args.batch)
            .and_then(|e| e.dedupe_key().ok())
            .unwrap_or_default()
    };
    let describe = |what: &str, object: u64| {
        let key = key_of(object);
        let i = usize::try_from(object - base_object).unwrap_or(0);
        let batch = &sent.batches[i / args.batch];
        println!(
            "PROBLEM rate={} {what} object={object} webhook_id={key} batch={} posts={} failed_posts={:?}",
            r.rate,
            i / args.batch,
            batch.posts,
            batch.failed_posts
        );
        let sent_at = batch.first_sent;
        for s in by_object
            .get(&object)
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let at = sent_at.map_or(String::from("?"), |t| {
                format!("{:+.2}s", s.at.saturating_duration_since(t).as_secs_f64())
            });
            let in_outage = outage_window.is_some_and(|(a, e)| a <= s.at && s.at < e);
            println!(
                "  destination #{} at {at} webhook-id={} answer={:?} written={:?} accepted={}{}",
                s.seq,
                s.webhook_id,
                s.behavior,
                s.answered,
                s.ok,
                if in_outage { " (outage)" } else { "" }
            );
        }
        if let Some((id, letter)) = dead_by_object.get(&object) {
            println!(
                "  dead letter {id}: reason={} attempts={} detail={}",
                letter["reason"], letter["attempts"], letter["detail"]
            );
        }
        for l in logs
            .iter()
            .filter(|l| !key.is_empty() && l.contains(&key))
            .take(12)
        {
            let l: String = l.chars().take(400).collect();
            println!("  worker: {l}");
        }
    };
    for &o in duplicated.iter().take(DESCRIBE_LIMIT) {
        describe("duplicate", o);
    }
    for &o in lost.iter().take(DESCRIBE_LIMIT) {
        describe(
            if worker_idle {
                "lost"
            } else {
                "undelivered_worker_busy"
            },
            o,
        );
    }
    for &o in dead_by_object.keys().take(DESCRIBE_LIMIT) {
        describe("dead_letter", o);
    }
    for (id, letter) in dead_other.iter().take(DESCRIBE_LIMIT) {
        println!(
            "PROBLEM rate={} dead letter {id} outside this step: kind={} reason={} detail={}",
            r.rate, letter["kind"], letter["reason"], letter["detail"]
        );
    }
    if duplicated.len() + lost.len() + dead_by_object.len() > 3 * DESCRIBE_LIMIT {
        println!(
            "PROBLEM rate={} (first {DESCRIBE_LIMIT} of each kind described) duplicate objects: {:?}; lost objects: {:?}",
            r.rate,
            duplicated.iter().take(200).collect::<Vec<_>>(),
            lost.iter().take(200).collect::<Vec<_>>()
        );
    }
    Ok(r)
}

/// CPU model, cores and load average, for the report.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = thread::available_parallelism().map_or(0, std::num::NonZeroUsize::get);
    format!(
        "{cpu}, {cores} cores, load average at start {}",
        load_average()
    )
}

/// The 1, 5 and 15 minute load averages, comma-separated.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}
