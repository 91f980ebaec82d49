//! `hubspot-mock`: a loopback stand-in for HubSpot's CRM API (see `tests/mock/`).
//!
//! ```text
//! cargo run -p hubspot-mock -- --port 0 --token T \
//!     [--seed-contacts N --seed-companies N --seed-deals N] \
//!     [--burst 100 --window-ms 10000 --daily 250000 --search-per-second 5] \
//!     [--client-id ID --client-secret S --refresh-token R --auth-code C --token-ttl-secs 1800] \
//!     [--fault-next 503,423,429:DAILY,drop --fault-rate 0.1 --fault-status 500 --fault-seed N \
//!      --latency-ms MS] \
//!     [--webhook-url URL --webhook-secret S --app-id N --portal-id N --webhook-retry-ms MS \
//!      --webhook-batch-ms MS --webhook-max-retries N --webhook-timeout-ms MS]
//! ```
//!
//! Prints `listening on http://127.0.0.1:PORT` once ready, then serves until killed.

// The binary's contract is the one line it prints on stdout for the parent process to read.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use hubspot_mock::{parse_next_list, MockConfig, MockHubSpot, WebhookConfig};

const USAGE: &str = "usage: hubspot-mock [--port P] [--token T] [--seed-contacts N] \
[--seed-companies N] [--seed-deals N] [--burst N] [--window-ms MS] [--daily N] \
[--search-per-second N] [--client-id ID] [--client-secret S] [--refresh-token R] \
[--auth-code C] [--token-ttl-secs N] [--fault-next LIST] [--fault-rate R] [--fault-status S] \
[--fault-seed N] [--latency-ms MS] [--webhook-url URL] [--webhook-secret S] [--app-id N] \
[--portal-id N] [--webhook-retry-ms MS] [--webhook-batch-ms MS] [--webhook-max-retries N] \
[--webhook-timeout-ms MS]";

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
            "--client-id",
            "--client-secret",
            "--refresh-token",
            "--auth-code",
            "--token-ttl-secs",
            "--fault-next",
            "--fault-rate",
            "--fault-status",
            "--fault-seed",
            "--latency-ms",
            "--webhook-url",
            "--webhook-secret",
            "--app-id",
            "--portal-id",
            "--webhook-retry-ms",
            "--webhook-batch-ms",
            "--webhook-max-retries",
            "--webhook-timeout-ms",
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
            "--client-id" => config.client_id = value,
            "--client-secret" => config.client_secret = value,
            "--refresh-token" => config.refresh_token = value,
            "--auth-code" => config.auth_code = value,
            "--token-ttl-secs" => config.token_ttl = Duration::from_secs(num(&value)?),
            "--fault-next" => config.faults.next = parse_next_list(&value)?,
            "--fault-rate" => {
                config.faults.rate = value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("{flag}: not a number within 0..=1: {value}"))?;
            }
            "--fault-status" => {
                config.faults.rate_status =
                    u16::try_from(num(&value)?).map_err(|_| "--fault-status: out of range")?;
            }
            "--fault-seed" => config.faults.seed = num(&value)?,
            "--latency-ms" => config.faults.latency = Duration::from_millis(num(&value)?),
            "--webhook-url" => webhook(&mut config).url = value,
            "--webhook-secret" => webhook(&mut config).secret = value,
            "--app-id" => webhook(&mut config).app_id = num(&value)?,
            "--portal-id" => webhook(&mut config).portal_id = num(&value)?,
            "--webhook-retry-ms" => {
                webhook(&mut config).retry_delay = Duration::from_millis(num(&value)?);
            }
            "--webhook-batch-ms" => {
                webhook(&mut config).batch_window = Duration::from_millis(num(&value)?);
            }
            "--webhook-max-retries" => {
                webhook(&mut config).max_retries =
                    u32::try_from(num(&value)?).map_err(|_| "--webhook-max-retries: too large")?;
            }
            "--webhook-timeout-ms" => {
                webhook(&mut config).timeout = Duration::from_millis(num(&value)?);
            }
            _ => return Err(format!("unknown argument {flag}\n{USAGE}")),
        }
    }
    if config.faults.rate > 0.0 && config.faults.rate_status == 0 {
        config.faults.rate_status = 500;
    }
    if let Some(w) = &config.webhook {
        if w.url.is_empty() || w.secret.is_empty() {
            return Err(format!(
                "--webhook-url and --webhook-secret are both needed for webhooks\n{USAGE}"
            ));
        }
    }
    Ok(config)
}

fn webhook(config: &mut MockConfig) -> &mut WebhookConfig {
    config.webhook.get_or_insert_with(WebhookConfig::default)
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
