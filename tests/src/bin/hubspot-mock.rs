//! `hubspot-mock`: a loopback stand-in for HubSpot's CRM API (see `tests/src/mock/`).
//!
//! ```text
//! cargo run -p hubspot-edge-tests --bin hubspot-mock -- --port 0 --token T \
//!     [--seed-contacts N --seed-companies N --seed-deals N] \
//!     [--burst 100 --window-ms 10000 --daily 250000 --search-per-second 5]
//! ```
//!
//! Prints `listening on http://127.0.0.1:PORT` once ready, then serves until killed.

// The binary's contract is the one line it prints on stdout for the parent process to read.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use hubspot_edge_tests::mock::{MockConfig, MockHubSpot};

const USAGE: &str = "usage: hubspot-mock [--port P] [--token T] [--seed-contacts N] \
[--seed-companies N] [--seed-deals N] [--burst N] [--window-ms MS] [--daily N] \
[--search-per-second N]";

fn parse_args() -> Result<MockConfig, String> {
    let mut config = MockConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        const FLAGS: &[&str] = &[
            "--port",
            "--token",
            "--seed-contacts",
            "--seed-companies",
            "--seed-deals",
            "--burst",
            "--window-ms",
            "--daily",
            "--search-per-second",
        ];
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown argument {flag}\n{USAGE}"));
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<u64>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        let small = |v: &str| {
            num(v).and_then(|n| usize::try_from(n).map_err(|_| format!("{flag}: too large")))
        };
        match flag.as_str() {
            "--port" => {
                config.port =
                    u16::try_from(num(&value)?).map_err(|_| "--port: out of range".to_owned())?;
            }
            "--token" => config.token = value,
            "--seed-contacts" => config.seed_contacts = small(&value)?,
            "--seed-companies" => config.seed_companies = small(&value)?,
            "--seed-deals" => config.seed_deals = small(&value)?,
            "--burst" => {
                config.burst =
                    u32::try_from(num(&value)?).map_err(|_| "--burst: too large".to_owned())?;
            }
            "--window-ms" => config.window = Duration::from_millis(num(&value)?),
            "--daily" => config.daily = num(&value)?,
            "--search-per-second" => {
                config.search_per_second = u32::try_from(num(&value)?)
                    .map_err(|_| "--search-per-second: too large".to_owned())?;
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    Ok(config)
}

fn main() -> ExitCode {
    let config = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mock = match MockHubSpot::start(config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("hubspot-mock: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "listening on {}", mock.base_url())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    mock.serve_forever();
    ExitCode::SUCCESS
}
