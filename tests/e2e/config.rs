//! Misconfiguration is loud and loses nothing (issue 9, point 5): `/healthz` answers 503 with
//! every problem by key, code and part (never a value); the run command's reporter prints them;
//! webhooks whose forwarding (or enrichment) configuration is broken are still verified and
//! queued, retried with the forwarding backoff and then kept in the dead-letter store as
//! `config_invalid` naming the key, ready to re-drive. Each scenario runs a Worker of its own.

use std::process::Command;
use std::time::Duration;

use hubspot_edge_tests::{
    free_port, poll_until, repo_root, unique_id, Fixture, FixtureOptions, HubSpotEvent,
    ProcessGroup,
};
use hubspot_mock::MockConfig;
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::{check, extra_wrangler_config, Outcome, DEADLINE};

/// Fast attempts, so the dead letter comes within the deadline: 2 attempts, 1 s apart.
const FAST_RETRIES: [(&str, &str); 3] = [
    ("FORWARD_MAX_ATTEMPTS", "2"),
    ("FORWARD_RETRY_BASE_SECS", "1"),
    ("FORWARD_RETRY_MAX_SECS", "1"),
];

/// A Worker of its own with `FORWARD_URL` unset: `/healthz` is 503 and names `FORWARD_URL`
/// (part `forwarding`, `config_missing`) and nothing else, with no value of any variable in the
/// body; the reporter of `scripts/run.sh` prints it; a webhook is still verified and queued
/// (200); the event is attempted twice (`FORWARD_MAX_ATTEMPTS=2`) and then kept in the
/// dead-letter store with reason `config_invalid`, `FORWARD_URL: config_missing` in its detail,
/// found with `?reason=config_invalid`, re-drivable. On main's Worker `/healthz` said
/// `{"status":"ok"}` (the start itself failed: readiness waited for 200) and the messages were
/// retried by the queue until its `max_retries` sent them on as `queue_retries_exhausted`.
pub(super) fn config_forward_url_missing_loud_then_dead_lettered(_: &Fixture) -> Outcome {
    let mut options = FixtureOptions::default()
        .vars(FAST_RETRIES)
        .unset("FORWARD_URL");
    options.wrangler.config = Some(extra_wrangler_config("wrangler.config-missing.toml")?);
    let fx = Fixture::start(options)?;

    let problems = misconfigured(&fx)?;
    check(
        problems
            == json!([{ "key": "FORWARD_URL", "code": "config_missing", "part": "forwarding" }]),
        || format!("/healthz problems: {problems}"),
    )?;
    let out = report(&fx.worker.base_url())?;
    check(
        out.status == Some(1)
            && out.stdout.contains("1 problem")
            && out.stdout.lines().any(|l| {
                l.contains("forwarding")
                    && l.contains("FORWARD_URL")
                    && l.contains("config_missing")
            }),
        || format!("reporter: {out:?}"),
    )?;
    no_values_in(&fx, &out.stdout, "the reporter's output")?;

    let mark = fx.worker.log_mark();
    let id = unique_id();
    let r = fx.send_events(&[HubSpotEvent::creation("contact", id)])?;
    check(r.status == 200 && r.json()?["queued"] == 1, || {
        format!("webhook with FORWARD_URL unset: {} {}", r.status, r.text())
    })?;
    let record = config_dead_letter(&fx, id)?;
    check(
        record["attempts"] == 2
            && record["kind"] == "event"
            && record["detail"] == "FORWARD_URL: config_missing",
        || format!("dead letter: {record}"),
    )?;
    let line = fx.worker.wait_for_json_log_since(
        mark,
        |l| l["message"] == "config_invalid" && l["key"] == "FORWARD_URL",
        DEADLINE,
    )?;
    check(line["code"] == "config_missing", || {
        format!("log line: {line}")
    })?;
    // Re-drivable: it goes back on the queue (and, the configuration still broken, is held
    // again rather than lost).
    let dl_id = record["id"].as_str().unwrap_or_default();
    let r = fx.admin_post(&format!("/admin/dead-letters/{dl_id}/redrive"), b"")?;
    check(r.status == 202, || {
        format!("re-drive: {} {}", r.status, r.text())
    })?;
    check(fx.dest.deliveries_for(id).is_empty(), || {
        "delivered without a FORWARD_URL".into()
    })
}

/// A Worker of its own with an `ENRICHMENT_MAP` that does not parse (an unknown type):
/// `/healthz` is 503 and names `ENRICHMENT_MAP` (part `enrichment`,
/// `mapping_config_invalid`) without the map; a webhook is queued (200), and the event ends in
/// the dead-letter store as `config_invalid` with `ENRICHMENT_MAP: mapping_config_invalid`.
pub(super) fn config_enrichment_map_invalid_loud_then_dead_lettered(_: &Fixture) -> Outcome {
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            seed_contacts: 2,
            ..MockConfig::default()
        })
        .vars(FAST_RETRIES)
        .var(
            "ENRICHMENT_MAP",
            r#"{"objects":{"contacts":{"fields":[{"hubspot":"email","type":"colour"}]}}}"#,
        );
    options.wrangler.config = Some(extra_wrangler_config("wrangler.config-map.toml")?);
    let fx = Fixture::start(options)?;

    let problems = misconfigured(&fx)?;
    check(
        problems
            == json!([{ "key": "ENRICHMENT_MAP", "code": "mapping_config_invalid", "part": "enrichment" }]),
        || format!("/healthz problems: {problems}"),
    )?;
    let id = unique_id();
    let r = fx.send_events(&[HubSpotEvent::property_change(
        "contact",
        id,
        "email",
        "x@example.com",
    )])?;
    check(r.status == 200 && r.json()?["queued"] == 1, || {
        format!("webhook with an invalid map: {} {}", r.status, r.text())
    })?;
    let record = config_dead_letter(&fx, id)?;
    check(
        record["attempts"] == 2 && record["detail"] == "ENRICHMENT_MAP: mapping_config_invalid",
        || format!("dead letter: {record}"),
    )?;
    check(fx.dest.deliveries_for(id).is_empty(), || {
        "forwarded with an invalid map".into()
    })
}

/// A Worker of its own with `DEAD_LETTER_RETENTION_DAYS=0` (range 1 to 365): `/healthz` names
/// it (part `dead_letters`); an event the destination refuses is dead-lettered, and the
/// dead-letter consumer, which cannot write with the configured expiry, holds the letter like a
/// failed store write: queued again as a new message after 2 s, 4 s, … (one
/// `dead_letter_store_failed` error line per attempt, naming the key), nothing written. On main
/// the batch was handed back to the queue every 60 s until its `max_retries` (100) dropped it;
/// within this test's deadline there was no second attempt.
pub(super) fn config_dead_letter_retention_invalid_holds_letters(_: &Fixture) -> Outcome {
    let mut options = FixtureOptions::default().var("DEAD_LETTER_RETENTION_DAYS", "0");
    options.wrangler.config = Some(extra_wrangler_config("wrangler.config-retention.toml")?);
    let fx = Fixture::start(options)?;
    let problems = misconfigured(&fx)?;
    check(
        problems
            == json!([{ "key": "DEAD_LETTER_RETENTION_DAYS", "code": "config_out_of_range", "part": "dead_letters" }]),
        || format!("/healthz problems: {problems}"),
    )?;
    let id = unique_id();
    fx.dest
        .script(id, vec![hubspot_edge_tests::Behavior::Status(400)]);
    let mark = fx.worker.log_mark();
    fx.send_events(&[HubSpotEvent::creation("contact", id)])?
        .expect_status(200)?;
    let second = fx.worker.wait_for_json_log_since(
        mark,
        |l| l["message"] == "dead_letter_store_failed" && l["store_attempt"] == 2,
        DEADLINE,
    )?;
    check(
        second["reason"] == "destination_rejected"
            && second["delay_secs"] == 4
            && second["error"]
                .as_str()
                .is_some_and(|e| e.contains("DEAD_LETTER_RETENTION_DAYS")),
        || format!("second store attempt: {second}"),
    )?;
    let r = fx.admin_get("/admin/dead-letters?limit=100")?;
    let json = r.json()?;
    check(
        r.status == 200 && json["items"].as_array().is_some_and(Vec::is_empty),
        || format!("a letter was written with an invalid retention: {json}"),
    )
}

/// The run command's reporter against the shared, fully configured Worker: "configuration ok",
/// exit 0.
pub(super) fn config_report_ok_for_a_configured_worker(fx: &Fixture) -> Outcome {
    let out = report(&fx.worker.base_url())?;
    check(
        out.status == Some(0) && out.stdout.trim() == "==> configuration ok",
        || format!("reporter: {out:?}"),
    )
}

/// The run command itself: `scripts/run.sh` with a secrets file lacking `FORWARD_URL` (through
/// wrangler's `--env-file`, so the repository's `.dev.vars` is not touched) prints the
/// configuration report once the Worker answers: the problem by part, key and code, and no
/// secret's value. A SIGTERM to it (wrangler, after its `exec`) then leaves no process of its
/// group behind (no orphaned workerd, no reporter still polling). On main `run.sh` printed
/// nothing about the configuration.
pub(super) fn config_run_command_prints_problems_and_stops_clean(_: &Fixture) -> Outcome {
    const SECRETS: [(&str, &str); 3] = [
        ("HUBSPOT_CLIENT_SECRET", "run-sh-client-secret-4f2a"),
        ("FORWARD_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("ADMIN_TOKEN", "run-sh-admin-token-9c1e"),
    ];
    let dir = TempDir::new()?;
    let vars = dir.0.join("vars");
    let text: String = SECRETS.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(&vars, text).map_err(|e| format!("writing {}: {e}", vars.display()))?;
    let root = repo_root();
    let port = free_port()?;
    let mut cmd = Command::new("bash");
    cmd.current_dir(&root)
        .arg(root.join("scripts/run.sh"))
        .arg("--config")
        .arg(extra_wrangler_config("wrangler.run-sh.toml")?)
        .arg("--env-file")
        .arg(&vars)
        .args(["--inspector-port", &free_port()?.to_string()])
        .arg("--show-interactive-dev-session=false")
        .env("PORT", port.to_string())
        .env("PERSIST_TO", dir.0.join("state"))
        .env("CONFIG_REPORT_TIMEOUT_SECS", "120")
        .env("CI", "true")
        .env("NO_COLOR", "1")
        .env("WRANGLER_SEND_METRICS", "false");
    let run = ProcessGroup::spawn(cmd, "run.sh")?;
    let report = poll_until(
        "run.sh's configuration report",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let lines = run.lines();
            let start = lines
                .iter()
                .position(|l| l.starts_with("==> configuration"))?;
            let end = lines[start..]
                .iter()
                .position(|l| l.contains("log lines give"))?;
            Some(lines[start..=start + end].to_vec())
        },
    )?;
    check(
        report[0].contains("1 problem")
            && report.iter().any(|l| {
                l.contains("forwarding")
                    && l.contains("FORWARD_URL")
                    && l.contains("config_missing")
            }),
        || format!("report: {report:#?}"),
    )?;
    for line in run.lines() {
        for (key, value) in SECRETS {
            check(!line.contains(value), || {
                format!("run.sh printed {key}'s value: {line}")
            })?;
        }
    }
    // SIGTERM to wrangler alone (what a supervisor sends): it must take its group down.
    std::process::Command::new("kill")
        .args(["-TERM", &run.pgid().to_string()])
        .status()
        .map_err(|e| format!("kill: {e}"))?;
    poll_until(
        "run.sh's process group to be gone after SIGTERM",
        Duration::from_secs(20),
        Duration::from_millis(100),
        || (!run.group_alive()).then_some(()),
    )?;
    Ok(())
}

/// A temporary directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> Result<Self, Failed> {
        let dir = std::env::temp_dir().join(format!("hubspot-edge-run-sh-{}", unique_id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `GET /healthz`, which must be 503 `misconfigured` with no variable's value in it: its
/// `problems`.
fn misconfigured(fx: &Fixture) -> Result<Value, Failed> {
    let r = fx.get("/healthz")?;
    let text = r.text();
    let json = r.json()?;
    check(r.status == 503 && json["status"] == "misconfigured", || {
        format!("/healthz: {} {text}", r.status)
    })?;
    no_values_in(fx, &text, "/healthz")?;
    Ok(json["problems"].clone())
}

/// No value of the Worker's variables (those long enough to be told apart from a code) in
/// `text`.
fn no_values_in(fx: &Fixture, text: &str, what: &str) -> Outcome {
    for (key, value) in &fx.vars {
        if value.len() >= 4 {
            check(!text.contains(value.as_str()), || {
                format!("{what} carries the value of {key}: {text}")
            })?;
        }
    }
    Ok(())
}

/// The `config_invalid` dead letter of object `id`, listed with `?reason=config_invalid`.
fn config_dead_letter(fx: &Fixture, id: u64) -> Result<Value, Failed> {
    let found = poll_until(
        "the config_invalid dead letter",
        DEADLINE,
        Duration::from_millis(500),
        || {
            let list = fx
                .admin_get("/admin/dead-letters?limit=100&reason=config_invalid")
                .ok()?;
            let items = list.json().ok()?["items"].as_array().cloned()?;
            items.iter().find_map(|item| {
                let dl_id = item["id"].as_str()?;
                let r = fx.admin_get(&format!("/admin/dead-letters/{dl_id}")).ok()?;
                let record = r.json().ok()?;
                (record["payload"]["objectId"] == id).then_some(record)
            })
        },
    )?;
    check(found["reason"] == "config_invalid", || {
        format!("dead letter: {found}")
    })?;
    Ok(found)
}

/// What `scripts/config-report.mjs` (the run command's reporter) printed and its exit status.
#[derive(Debug)]
struct Report {
    status: Option<i32>,
    stdout: String,
}

fn report(base_url: &str) -> Result<Report, Failed> {
    let root = repo_root();
    let out = Command::new(root.join("node_modules/.bin/node"))
        .arg(root.join("scripts/config-report.mjs"))
        .args([base_url, "30"])
        .output()
        .map_err(|e| format!("running scripts/config-report.mjs: {e}"))?;
    Ok(Report {
        status: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
    })
}
