//! HubSpot's official clients against the mock: the Node client (`@hubspot/api-client`, pinned
//! in the root `package.json`) and the Python client (`hubspot-api-client`, pinned in
//! `clients/python/requirements.txt`) each run their script in `clients/` against a fresh mock:
//! a create, a batch create and a batch read (207), a search with a filter, a read by e-mail
//! (`idProperty`, the e-mail percent-encoded in the path), a labelled association (201), a
//! custom workflow action (definitions with the developer API key as `hapikey`, a blocked
//! execution completed through the client, single and batch), and 429s (injected and from the
//! burst limiter) with their headers and `policyName`. Our Rust client and this
//! mock share one reading of HubSpot's docs; the official clients are an independent one.
//!
//! The interpreters come from the environment, set by `scripts/test.sh` (`ensure_npm` and
//! `ensure_python_clients` in `scripts/tools.sh`): `HUBSPOT_MOCK_NODE` (Node ≥ 22, the npm
//! package `node`) and `HUBSPOT_MOCK_PYTHON` (the venv's python). Without them the tests fail
//! and say how to get them; `HUBSPOT_MOCK_SKIP_OFFICIAL_CLIENTS=1` skips them on purpose.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use hubspot_mock::{http, MockConfig, MockHubSpot};
use serde_json::{json, Value};

const SKIP_ENV: &str = "HUBSPOT_MOCK_SKIP_OFFICIAL_CLIENTS";
/// A script makes about 40 requests in a second or two; this only bounds a hang.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// A small burst window, so that the scripts' walk to the limiter's 429 is short (they read the
/// window from the `X-HubSpot-RateLimit-*` headers).
const BURST: u32 = 25;

/// The checks each script must report, all passing (a script that skipped one fails here).
const CHECKS_NODE: &[&str] = &[
    "create",
    "batch_create",
    "batch_read_207",
    "search_filter",
    "read_by_id_property",
    "association_labelled",
    "action_definitions",
    "callback_complete",
    "injected_429_surfaced",
    "search_429_retried_by_client",
    "rate_limit_headers_on_success",
    "limiter_429_with_headers",
];
const CHECKS_PYTHON: &[&str] = &[
    "create",
    "batch_create",
    "batch_read_207",
    "search_filter",
    "read_by_id_property",
    "association_labelled",
    "action_definitions",
    "callback_complete",
    "injected_429_surfaced",
    "429_retried_by_readme_retry",
    "rate_limit_headers_on_success",
    "limiter_429_with_headers",
];

struct OfficialClient {
    /// The package name the script reports.
    package: &'static str,
    /// The pinned version (from the pin file).
    pinned: String,
    /// Env var naming the interpreter.
    interpreter_env: &'static str,
    /// The script, relative to this crate.
    script: &'static str,
    /// The prefix of the script's e-mails and the end of its `lastname`.
    tag: &'static str,
    checks: &'static [&'static str],
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn node_client() -> OfficialClient {
    let package: Value = serde_json::from_str(&read(&crate_dir().join("../../package.json")))
        .expect("package.json is JSON");
    let pinned = package["devDependencies"]["@hubspot/api-client"]
        .as_str()
        .expect("@hubspot/api-client is a devDependency of the root package.json")
        .to_owned();
    OfficialClient {
        package: "@hubspot/api-client",
        pinned,
        interpreter_env: "HUBSPOT_MOCK_NODE",
        script: "clients/node/official-client.mjs",
        tag: "node",
        checks: CHECKS_NODE,
    }
}

fn python_client() -> OfficialClient {
    let requirements = read(&crate_dir().join("clients/python/requirements.txt"));
    let pinned = requirements
        .lines()
        .find_map(|l| l.strip_prefix("hubspot-api-client=="))
        .expect("requirements.txt pins hubspot-api-client==X")
        .trim()
        .to_owned();
    OfficialClient {
        package: "hubspot-api-client",
        pinned,
        interpreter_env: "HUBSPOT_MOCK_PYTHON",
        script: "clients/python/official_client.py",
        tag: "python",
        checks: CHECKS_PYTHON,
    }
}

/// The interpreter, `None` when skipping on purpose; panics with the way out otherwise.
fn interpreter(env: &str) -> Option<PathBuf> {
    if std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
        eprintln!("{SKIP_ENV}=1: skipping HubSpot's official clients");
        return None;
    }
    let Some(path) = std::env::var_os(env).filter(|p| !p.is_empty()) else {
        panic!(
            "{env} is not set. The official-client tests need Node (>= 22) with \
             @hubspot/api-client and a Python venv with hubspot-api-client: run them through \
             scripts/test.sh, or `bash -c 'source scripts/tools.sh && ensure_npm && \
             ensure_python_clients && cargo test -p hubspot-mock --test official_clients'`; \
             set {SKIP_ENV}=1 to skip them on purpose."
        );
    };
    let path = PathBuf::from(path);
    assert!(
        path.is_file(),
        "{env}={} does not exist (set by ensure_python_clients in scripts/tools.sh)",
        path.display()
    );
    Some(path)
}

struct Run {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `program script` with the mock's URL and token, within [`SCRIPT_TIMEOUT`].
fn run_script(program: &Path, script: &Path, mock: &MockHubSpot) -> Run {
    let mut child = Command::new(program)
        .arg(script)
        .env("HUBSPOT_MOCK_URL", mock.base_url())
        .env("HUBSPOT_MOCK_TOKEN", mock.token())
        .env("HUBSPOT_MOCK_DEVELOPER_KEY", mock.developer_api_key())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} {}: {e}", program.display(), script.display()));
    let drain = |mut pipe: Box<dyn std::io::Read + Send>| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = pipe.read_to_string(&mut s);
            s
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + SCRIPT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the script") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50)); // Polling the child's exit, with a deadline.
    };
    let (stdout, stderr) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    assert!(
        status.is_some(),
        "{} did not finish within {SCRIPT_TIMEOUT:?}; stderr:\n{stderr}",
        script.display()
    );
    Run {
        success: status.is_some_and(|s| s.success()),
        stdout,
        stderr,
    }
}

/// An access token from the mock's OAuth endpoint: its rate-limit bucket is separate from the
/// private-app token's, which the script has spent.
fn oauth_token(mock: &MockHubSpot) -> String {
    let form = "grant_type=refresh_token&refresh_token=mock-refresh-token\
                &client_id=mock-client-id&client_secret=mock-client-secret";
    let res = http::request(
        "POST",
        &format!("{}/oauth/v1/token", mock.base_url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    )
    .expect("token request");
    assert_eq!(res.status, 200, "token: {}", res.text());
    res.json().expect("token json")["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

fn against_the_mock(client: &OfficialClient) {
    let Some(program) = interpreter(client.interpreter_env) else {
        return;
    };
    let mock = MockHubSpot::start(MockConfig {
        burst: BURST,
        ..MockConfig::default()
    })
    .expect("start the mock");
    let run = run_script(&program, &crate_dir().join(client.script), &mock);
    let summary: Value = run
        .stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| {
            panic!(
                "{}: no JSON summary on stdout.\nstdout:\n{}\nstderr:\n{}",
                client.script, run.stdout, run.stderr
            )
        });
    let failed: Vec<&Value> = summary["checks"]
        .as_array()
        .map(|c| c.iter().filter(|c| c["ok"] != json!(true)).collect())
        .unwrap_or_default();
    assert!(
        run.success && summary["ok"] == json!(true) && failed.is_empty(),
        "{} {} disagrees with the mock: {}\nstderr:\n{}",
        client.package,
        client.pinned,
        serde_json::to_string_pretty(&failed).unwrap_or_default(),
        run.stderr
    );
    assert_eq!(summary["client"], json!(client.package));
    assert_eq!(
        summary["version"],
        json!(client.pinned),
        "the installed client is not the pinned one"
    );
    let names: Vec<&str> = summary["checks"]
        .as_array()
        .map(|c| c.iter().filter_map(|c| c["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, client.checks, "the script's checks");

    // The mock's view: the client used the documented paths, and what it created is there.
    let stats = http::get(&format!("{}/__mock/stats", mock.base_url()), None)
        .and_then(|r| r.json())
        .expect("stats");
    for (path, n) in [
        ("POST /crm/v3/objects/contacts", 1),
        ("POST /crm/v3/objects/contacts/batch/create", 1),
        ("POST /crm/v3/objects/contacts/batch/read", 1),
    ] {
        assert_eq!(stats["byPath"][path], json!(n), "{path} in {stats}");
    }
    assert!(
        stats["byPath"]["POST /crm/v3/objects/contacts/search"].as_u64() >= Some(2),
        "searches in {stats}"
    );
    assert!(
        stats["rateLimitedByPolicy"]["TEN_SECONDLY_ROLLING"].as_u64() >= Some(2),
        "an injected and a limiter 429 in {stats}"
    );

    let created = &summary["created"];
    let ids: Vec<String> = std::iter::once(&created["single"])
        .chain(created["batch"].as_array().into_iter().flatten())
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 3, "created ids in {summary}");
    let token = oauth_token(&mock);
    let read = http::post_json(
        &format!("{}/crm/v3/objects/contacts/batch/read", mock.base_url()),
        &json!({
            "inputs": ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            "properties": ["email", "lastname"],
            "propertiesWithHistory": [],
        }),
        Some(&token),
    )
    .expect("batch read");
    assert_eq!(read.status, 200, "batch read: {}", read.text());
    let read = read.json().expect("batch read json");
    let mut seen: Vec<(String, String, String)> = read["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or_default().to_owned(),
                r["properties"]["email"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                r["properties"]["lastname"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    seen.sort_by_key(|(id, ..)| id.parse::<u64>().unwrap_or(u64::MAX));
    let tag = client.tag;
    let lastname = format!("Official{tag}");
    let expected: Vec<(String, String, String)> = ids
        .iter()
        .zip(["create", "batch1", "batch2"])
        .map(|(id, what)| {
            (
                id.clone(),
                format!("{tag}.{what}@example.com"),
                lastname.clone(),
            )
        })
        .collect();
    assert_eq!(
        seen, expected,
        "the created contacts, as the mock stores them"
    );

    let company = created["company"].as_str().expect("created company id");
    let assoc = http::get(
        &format!(
            "{}/crm/v4/objects/contacts/{}/associations/companies",
            mock.base_url(),
            ids[0]
        ),
        Some(&token),
    )
    .and_then(|r| r.json())
    .expect("associations");
    let to: Vec<String> = assoc["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["toObjectId"].to_string().trim_matches('"').to_owned())
        .collect();
    assert_eq!(to, [company], "the contact's companies: {assoc}");
}

#[test]
fn node_client_against_the_mock() {
    against_the_mock(&node_client());
}

#[test]
fn python_client_against_the_mock() {
    against_the_mock(&python_client());
}
