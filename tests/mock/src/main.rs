//! `hubspot-mock`: a loopback stand-in for HubSpot's CRM API (see `tests/mock/README.md`).
//!
//! `hubspot-mock --help` lists every flag with its default, the fault list syntax, the
//! runtime endpoints and examples. Prints `listening on http://127.0.0.1:PORT` once ready,
//! then serves until killed.

// The binary's contract is the one line it prints on stdout for the parent process to read.
#![allow(clippy::print_stdout)]

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use hubspot_mock::{
    parse_next_list, Fault, MockConfig, MockHubSpot, WebhookConfig, WorkflowConfig,
};

const AFTER_HELP: &str = "\
Fault list (--fault-next), comma-separated, one entry per coming request, in order:
  STATUS          answer with this status and a HubSpot-shaped error body (503, 500, …);
                  423 is LOCKED, 477 MIGRATION_IN_PROGRESS with Retry-After: 60
  429             429 RATE_LIMIT with policyName TEN_SECONDLY_ROLLING
  429:POLICY      429 with this policyName: DAILY, SECONDLY, TEN_SECONDLY_ROLLING
  drop            close the connection without answering
  e.g. --fault-next 503,423,429:DAILY,drop faults the next four requests, then none.
  Faults apply before authentication and rate limits, also to /oauth/v1/token.

Runtime endpoints (no auth, not counted, never faulted):
  POST /__mock/faults          more faults: {\"next\":[{\"status\":503},{\"drop\":true}]},
                               {\"rate\":0.1,\"status\":500,\"seed\":42}, {\"latencyMs\":200},
                               {\"readErrors\":{\"123\":\"VALIDATION_ERROR\"}},
                               {\"noHistory\":{\"123\":true}}, {\"historyLimit\":0},
                               {\"clear\":true}
  GET  /__mock/faults          the fault state
  GET  /__mock/stats           request, 429, fault, token and webhook counters
  POST /__mock/reset-stats     zero the counters
  POST /__mock/webhook         {\"url\":\"http://…\"}: send webhooks there from now on
  POST /__mock/expire-tokens   every issued OAuth access token expires now
  POST /__mock/refuse-tokens   {\"refuse\":true|false}: refuse every OAuth access token
  POST /__mock/restore         {\"objectType\":\"contacts\",\"id\":\"1\"}: restore an archived
                               record (the recycling bin; emits *.restore)
  POST /__mock/workflows/enroll {\"definitionId\":\"10646377\",\"objectType\":\"CONTACT\",
                               \"objectId\":\"1\",\"inputFields\":{…},\"count\":1}: run a custom
                               action (POSTs a v2-signed request to its actionUrl)
  GET  /__mock/workflows/executions  each enrollment: callbackId, state, attempts, outputs
                               (?callbackId=, ?definitionId=, ?state=)
  POST /__mock/workflows/redeliver {\"callbackId\":\"…\"}: send an execution request again
  GET|POST /__mock/clock       {\"advanceMs\":N}: move the mock's clock on (BLOCK expiry)

Examples:
  # 1,000 contacts on a fixed port, token pat-local
  hubspot-mock --port 8090 --token pat-local --seed-contacts 1000

  # writes become signed webhooks (v1 and v3) to a local Worker
  hubspot-mock --port 8090 --token pat-local --seed-contacts 10 \\
    --webhook-url http://127.0.0.1:8787/webhooks/hubspot --webhook-secret local-app-secret

  # a flaky HubSpot: three scripted faults, then 10 % 500s (same seed, same requests)
  hubspot-mock --fault-next 503,429:DAILY,drop --fault-rate 0.1 --fault-seed 7

More: tests/mock/README.md (what it serves and what it does not reproduce).";

/// A loopback stand-in for HubSpot's CRM API: objects, batch, search, associations v4 and
/// OAuth, with HubSpot's rate limits, injectable faults and signed webhooks for API writes.
///
/// Prints `listening on http://127.0.0.1:PORT` on stdout once ready, then serves until killed.
#[derive(Debug, Parser)]
#[command(name = "hubspot-mock", version, after_help = AFTER_HELP)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one; read it from the printed line).
    #[arg(long, value_name = "PORT", default_value_t = MockConfig::default().port)]
    port: u16,
    /// The private-app token accepted as `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "TOKEN", default_value_t = MockConfig::default().token)]
    token: String,

    /// Seeded contacts (contact{i}@example.com, deterministic names).
    #[arg(long, value_name = "N", default_value_t = MockConfig::default().seed_contacts,
          help_heading = "Seeded data")]
    seed_contacts: usize,
    /// Seeded companies.
    #[arg(long, value_name = "N", default_value_t = MockConfig::default().seed_companies,
          help_heading = "Seeded data")]
    seed_companies: usize,
    /// Seeded deals.
    #[arg(long, value_name = "N", default_value_t = MockConfig::default().seed_deals,
          help_heading = "Seeded data")]
    seed_deals: usize,

    /// Requests allowed per token per rolling window.
    #[arg(long, value_name = "N", default_value_t = MockConfig::default().burst,
          help_heading = "Rate limits")]
    burst: u32,
    /// The rolling window, in ms.
    #[arg(long, value_name = "MS", default_value_t = ms(MockConfig::default().window),
          help_heading = "Rate limits")]
    window_ms: u64,
    /// Requests allowed per UTC day.
    #[arg(long, value_name = "N", default_value_t = MockConfig::default().daily,
          help_heading = "Rate limits")]
    daily: u64,
    /// Search requests allowed per second.
    #[arg(long, value_name = "N", default_value_t = MockConfig::default().search_per_second,
          help_heading = "Rate limits")]
    search_per_second: u32,

    /// OAuth app client_id for POST /oauth/v1/token.
    #[arg(long, value_name = "ID", default_value_t = MockConfig::default().client_id,
          help_heading = "OAuth")]
    client_id: String,
    /// OAuth app client_secret.
    #[arg(long, value_name = "S", default_value_t = MockConfig::default().client_secret,
          help_heading = "OAuth")]
    client_secret: String,
    /// A refresh token valid from the start (besides those issued for codes).
    #[arg(long, value_name = "R", default_value_t = MockConfig::default().refresh_token,
          help_heading = "OAuth")]
    refresh_token: String,
    /// An authorization code accepted besides `test-code` [default: none].
    #[arg(long, value_name = "C", default_value_t = MockConfig::default().auth_code,
          hide_default_value = true, help_heading = "OAuth")]
    auth_code: String,
    /// Lifetime of issued access tokens (expires_in), in seconds.
    #[arg(long, value_name = "SECS", default_value_t = MockConfig::default().token_ttl.as_secs(),
          help_heading = "OAuth")]
    token_ttl_secs: u64,

    /// Answers for the next requests, in order (syntax below) [default: none].
    #[arg(long, value_name = "LIST", value_parser = fault_list, help_heading = "Faults")]
    fault_next: Option<FaultList>,
    /// Fraction of requests (0..=1) answered with --fault-status, chosen by a seeded PRNG.
    #[arg(long, value_name = "R", default_value_t = 0.0, value_parser = fraction,
          help_heading = "Faults")]
    fault_rate: f64,
    /// The status --fault-rate answers with.
    #[arg(long, value_name = "STATUS", default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(100..600), help_heading = "Faults")]
    fault_status: u16,
    /// The PRNG seed for --fault-rate (same seed, same faulted requests).
    #[arg(long, value_name = "N", default_value_t = MockConfig::default().faults.seed,
          help_heading = "Faults")]
    fault_seed: u64,
    /// Added to every answer, in ms.
    #[arg(long, value_name = "MS", default_value_t = ms(MockConfig::default().faults.latency),
          help_heading = "Faults")]
    latency_ms: u64,

    /// Webhook target: API writes become HubSpot webhooks POSTed here, signed v1 and v3
    /// (needs --webhook-secret) [default: webhooks off].
    #[arg(
        long,
        value_name = "URL",
        requires = "webhook_secret",
        help_heading = "Webhooks"
    )]
    webhook_url: Option<String>,
    /// The app's client secret the webhooks are signed with (needs --webhook-url).
    #[arg(
        long,
        value_name = "S",
        requires = "webhook_url",
        help_heading = "Webhooks"
    )]
    webhook_secret: Option<String>,
    /// appId in events.
    #[arg(long, value_name = "N", default_value_t = WebhookConfig::default().app_id,
          requires = "webhook_url", help_heading = "Webhooks")]
    app_id: u64,
    /// portalId in events.
    #[arg(long, value_name = "N", default_value_t = WebhookConfig::default().portal_id,
          requires = "webhook_url", help_heading = "Webhooks")]
    portal_id: u64,
    /// Delay before each retry of a failed delivery, in ms.
    #[arg(long, value_name = "MS", default_value_t = ms(WebhookConfig::default().retry_delay),
          requires = "webhook_url", help_heading = "Webhooks")]
    webhook_retry_ms: u64,
    /// Events within this many ms of a batch's first go out together (≤ 100 per POST).
    #[arg(long, value_name = "MS", default_value_t = ms(WebhookConfig::default().batch_window),
          requires = "webhook_url", help_heading = "Webhooks")]
    webhook_batch_ms: u64,
    /// Retries after the first attempt.
    #[arg(long, value_name = "N", default_value_t = WebhookConfig::default().max_retries,
          requires = "webhook_url", help_heading = "Webhooks")]
    webhook_max_retries: u32,
    /// An answer slower than this (ms) is a failed attempt.
    #[arg(long, value_name = "MS", default_value_t = ms(WebhookConfig::default().timeout),
          requires = "webhook_url", help_heading = "Webhooks")]
    webhook_timeout_ms: u64,

    /// The developer API key the definitions API (/automation/v4/actions/{appId}) takes as
    /// ?hapikey=.
    #[arg(long, value_name = "KEY", default_value_t = WorkflowConfig::default().developer_api_key,
          help_heading = "Workflow actions")]
    developer_api_key: String,
    /// origin.portalId of execution requests (and the portal in callbackId).
    #[arg(long, value_name = "N", default_value_t = WorkflowConfig::default().portal_id,
          help_heading = "Workflow actions")]
    action_portal_id: u64,
    /// Also sign execution requests v3 (undocumented for actions; off by default).
    #[arg(long, help_heading = "Workflow actions")]
    action_sign_v3: bool,
    /// An actionUrl answer slower than this (ms) is a failed attempt, retried (undocumented;
    /// 20 s as hs-x.dev claims).
    #[arg(long, value_name = "MS", default_value_t = ms(WorkflowConfig::default().timeout),
          help_heading = "Workflow actions")]
    action_timeout_ms: u64,
    /// First retry delay after a 5xx or timeout (ms), doubled per attempt.
    #[arg(long, value_name = "MS", default_value_t = ms(WorkflowConfig::default().retry_base),
          help_heading = "Workflow actions")]
    action_retry_base_ms: u64,
    /// The longest retry delay (ms).
    #[arg(long, value_name = "MS", default_value_t = ms(WorkflowConfig::default().retry_cap),
          help_heading = "Workflow actions")]
    action_retry_cap_ms: u64,
    /// Attempts (first included) before an execution fails.
    #[arg(long, value_name = "N", default_value_t = WorkflowConfig::default().max_attempts,
          help_heading = "Workflow actions")]
    action_max_attempts: u32,
    /// Execution requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = WorkflowConfig::default().concurrency,
          help_heading = "Workflow actions")]
    action_concurrency: usize,
    /// Read a 429's Retry-After from the actionUrl as seconds (default: milliseconds, as
    /// HubSpot's 2026 error-handling page says).
    #[arg(long, help_heading = "Workflow actions")]
    retry_after_seconds: bool,
    /// Refuse completions without typedOutputs on the v4 paths too (the date-versioned ones
    /// always require it, as the 2026-03 specification does).
    #[arg(long, help_heading = "Workflow actions")]
    require_typed_outputs: bool,
}

/// A parsed `--fault-next` (a newtype: clap treats a bare `Vec` as a repeated flag).
#[derive(Debug, Clone)]
struct FaultList(Vec<Fault>);

fn fault_list(s: &str) -> Result<FaultList, String> {
    parse_next_list(s).map(FaultList)
}

fn fraction(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| format!("not a number within 0..=1: {s}"))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Args {
    fn into_config(self) -> MockConfig {
        let mut config = MockConfig {
            port: self.port,
            token: self.token,
            seed_contacts: self.seed_contacts,
            seed_companies: self.seed_companies,
            seed_deals: self.seed_deals,
            burst: self.burst,
            window: Duration::from_millis(self.window_ms),
            daily: self.daily,
            search_per_second: self.search_per_second,
            client_id: self.client_id,
            client_secret: self.client_secret,
            refresh_token: self.refresh_token,
            auth_code: self.auth_code,
            token_ttl: Duration::from_secs(self.token_ttl_secs),
            ..MockConfig::default()
        };
        config.workflows = WorkflowConfig {
            developer_api_key: self.developer_api_key,
            portal_id: self.action_portal_id,
            sign_v3: self.action_sign_v3,
            timeout: Duration::from_millis(self.action_timeout_ms),
            retry_base: Duration::from_millis(self.action_retry_base_ms),
            retry_cap: Duration::from_millis(self.action_retry_cap_ms),
            max_attempts: self.action_max_attempts,
            concurrency: self.action_concurrency,
            retry_after_in_seconds: self.retry_after_seconds,
            require_typed_outputs: self.require_typed_outputs,
            ..WorkflowConfig::default()
        };
        config.faults.next = self.fault_next.map(|l| l.0).unwrap_or_default();
        config.faults.rate = self.fault_rate;
        config.faults.rate_status = self.fault_status;
        config.faults.seed = self.fault_seed;
        config.faults.latency = Duration::from_millis(self.latency_ms);
        // clap's `requires` makes url and secret come together.
        if let (Some(url), Some(secret)) = (self.webhook_url, self.webhook_secret) {
            config.webhook = Some(WebhookConfig {
                url,
                secret,
                app_id: self.app_id,
                portal_id: self.portal_id,
                retry_delay: Duration::from_millis(self.webhook_retry_ms),
                batch_window: Duration::from_millis(self.webhook_batch_ms),
                max_retries: self.webhook_max_retries,
                timeout: Duration::from_millis(self.webhook_timeout_ms),
            });
        }
        config
    }
}

fn main() -> ExitCode {
    // `--help`/`--version` exit 0 on stdout; a bad flag exits 2 with clap's error on stderr.
    let config = Args::parse().into_config();
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn command_definition_is_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn flags_map_to_the_config() {
        let args = Args::try_parse_from([
            "hubspot-mock",
            "--port",
            "8090",
            "--window-ms",
            "2500",
            "--token-ttl-secs",
            "60",
            "--fault-next",
            "503,429:DAILY,drop",
            "--fault-rate",
            "0.25",
            "--webhook-url",
            "http://127.0.0.1:1/h",
            "--webhook-secret",
            "s",
            "--webhook-retry-ms",
            "5",
        ])
        .unwrap();
        let c = args.into_config();
        assert_eq!(c.port, 8090);
        assert_eq!(c.window, Duration::from_millis(2500));
        assert_eq!(c.token_ttl, Duration::from_secs(60));
        assert_eq!(c.faults.next.len(), 3);
        assert_eq!(c.faults.next[2], Fault::Drop);
        assert!((c.faults.rate - 0.25).abs() < f64::EPSILON);
        assert_eq!(c.faults.rate_status, 500);
        let w = c.webhook.unwrap();
        assert_eq!(w.url, "http://127.0.0.1:1/h");
        assert_eq!(w.retry_delay, Duration::from_millis(5));
        assert_eq!(w.max_retries, WebhookConfig::default().max_retries);
    }

    #[test]
    fn defaults_are_the_library_defaults_and_webhooks_are_off() {
        let c = Args::try_parse_from(["hubspot-mock"])
            .unwrap()
            .into_config();
        let d = MockConfig::default();
        assert_eq!(
            (c.port, c.token.as_str(), c.burst, c.window, c.daily),
            (d.port, d.token.as_str(), d.burst, d.window, d.daily)
        );
        assert_eq!(c.token_ttl, d.token_ttl);
        assert!(c.faults.next.is_empty());
        assert!(c.webhook.is_none());
    }

    #[test]
    fn half_a_webhook_setup_and_bad_values_are_refused() {
        for bad in [
            &["hubspot-mock", "--webhook-url", "http://x"][..],
            &["hubspot-mock", "--webhook-secret", "s"],
            &["hubspot-mock", "--app-id", "5"],
            &["hubspot-mock", "--fault-next", "503,oops"],
            &["hubspot-mock", "--fault-rate", "1.5"],
            &["hubspot-mock", "--fault-status", "99"],
            &["hubspot-mock", "--port", "70000"],
            &["hubspot-mock", "--no-such-flag"],
        ] {
            let e = Args::try_parse_from(bad).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad:?}: {e}");
        }
    }
}
