//! End-to-end tests: the Worker on real workerd (`wrangler dev`), HubSpot-signed webhooks in,
//! Standard Webhooks deliveries out to a loopback destination.
//!
//! Run: `cargo test -p hubspot-edge-tests --test e2e` (add `-- --nocapture` and
//! `E2E_VERBOSE=1` to see wrangler's output and every delivery; `-- <filter>` runs a subset;
//! `-- --list` lists without starting anything). `E2E_SKIP=1` skips the whole suite.
//!
//! The fixtures (destination, then the Worker) start once and are shared by all scenarios,
//! which run in parallel: each scenario uses its own object ids
//! ([`hubspot_edge_tests::unique_id`]) and looks only at its own deliveries and log lines.
//!
//! To add a scenario: write `fn name(fx: &Fixture) -> Outcome` and list it in [`scenarios`].

// The harness reports through libtest-mimic and eprintln!; nothing prints to stdout directly.

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use hubspot_edge_tests::{Fixture, FixtureOptions};
use libtest_mimic::{Arguments, Failed, Trial};

/// What a scenario returns: `Err` (or a panic) fails it. Any `Display` error converts with `?`.
type Outcome = Result<(), Failed>;
type Scenario = fn(&Fixture) -> Outcome;

/// `scenarios![a, b]` → `[("a", a), ("b", b)]`.
macro_rules! scenarios {
    ($($f:ident),* $(,)?) => {
        vec![$((stringify!($f), $f as Scenario)),*]
    };
}

/// Every scenario, by name.
fn scenarios() -> Vec<(&'static str, Scenario)> {
    scenarios![healthz_answers_ok]
}

/// The Worker configuration every scenario runs against. Keep retries fast: scenarios wait
/// for them in real time.
fn fixture_options() -> FixtureOptions {
    FixtureOptions::default().vars([
        ("MAX_BODY_BYTES", "1048576"),
        ("FORWARD_MAX_ATTEMPTS", "4"),
        ("FORWARD_RETRY_BASE_SECS", "1"),
        ("FORWARD_RETRY_MAX_SECS", "2"),
    ])
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn healthz_answers_ok(fx: &Fixture) -> Outcome {
    let r = fx.get("/healthz")?;
    r.expect_status(200)?;
    let body = r.json()?;
    if body["status"] != "ok" {
        return Err(format!("unexpected /healthz body: {body}").into());
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Harness

fn main() -> ExitCode {
    let args = Arguments::from_args();
    if std::env::var("E2E_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("E2E_SKIP=1: skipping the end-to-end tests");
        return ExitCode::SUCCESS;
    }
    // Each child process group is outside the terminal's, so Ctrl-C would orphan wrangler.
    if let Err(e) = ctrlc::set_handler(|| {
        hubspot_edge_tests::kill_all();
        std::process::exit(130);
    }) {
        eprintln!(
            "warning: no Ctrl-C handler ({e}); an interrupted run may leave wrangler running"
        );
    }

    let all = scenarios();
    let would_run = !args.list
        && all.iter().any(|(name, _)| {
            let probe = Trial::test(*name, || Ok(()));
            !args.is_filtered_out(&probe) && !args.ignored
        });

    let fixture = if would_run {
        let started = Instant::now();
        eprintln!(
            "e2e: starting the destination and wrangler dev (the first run builds the Worker)…"
        );
        match Fixture::start(fixture_options()) {
            Ok(fx) => {
                eprintln!(
                    "e2e: Worker ready at {} after {:.1?}; destination at {}",
                    fx.worker.base_url(),
                    started.elapsed(),
                    fx.dest.url()
                );
                Some(Arc::new(fx))
            }
            Err(e) => {
                // Fixture::start has already stopped whatever it started.
                eprintln!("e2e: fixture startup failed:\n{e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    let trials = all
        .into_iter()
        .map(|(name, scenario)| {
            let fx = fixture.clone();
            Trial::test(name, move || match &fx {
                Some(fx) => run_scenario(scenario, fx),
                None => Err("fixture not started".into()),
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);

    // Stop the Worker even if a scenario leaked a clone of the Arc, then drop everything.
    if let Some(fx) = fixture {
        fx.stop_worker();
        drop(fx);
    }
    conclusion.exit_code()
}

/// Runs one scenario; on failure or panic, appends the Worker's output during the scenario.
fn run_scenario(scenario: Scenario, fx: &Fixture) -> Outcome {
    let mark = fx.worker.log_mark();
    let result = panic::catch_unwind(AssertUnwindSafe(|| scenario(fx)));
    let failure = match result {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(failed)) => failed
            .message()
            .map_or_else(|| "failed".to_owned(), str::to_owned),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            format!("panicked: {msg}")
        }
    };
    let lines = fx.worker.logs_since(mark);
    let start = lines.len().saturating_sub(60);
    Err(format!(
        "{failure}\n--- wrangler output during this scenario (last {} of {} lines; parallel scenarios interleave) ---\n{}",
        lines.len() - start,
        lines.len(),
        lines[start..].join("\n")
    )
    .into())
}
