//! `hubspot-edge`: the core on the command line, for people developing HubSpot integrations.
//!
//! Sign, send and verify HubSpot-signed webhooks, map and diff records through a field map,
//! and check a deployment's configuration, with the same code the Worker runs
//! (`hubspot-edge-core`). `hubspot-edge --help` and `hubspot-edge <command> --help` say how;
//! README "Command line" has examples.
//!
//! Exit codes (stable): 0 done (a valid signature, a clean configuration, a 2xx answer); 1 the
//! answer is no (an invalid signature, configuration problems, a value the map refuses); 2 bad
//! usage; 3 an input cannot be read (a file, JSON); 4 the request could not be sent; 5 the
//! destination answered with a status other than 2xx.
//!
//! Secrets are read from the environment or an env file (`--env-file .dev.vars`), never from
//! the command line, where shell history and `ps` would keep them; they are never printed.

// A command-line tool reports on stdout.
#![allow(clippy::print_stdout)]

mod capture;
mod generate;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use hubspot_edge_core::config::{Config, Lookup};
use hubspot_edge_core::diff::diff;
use hubspot_edge_core::mapping::{Mapping, ObjectMap, Record};
use hubspot_edge_core::signature::{
    sign_v1, sign_v2, sign_v3, ClientSecret, LegacySignatures, SignatureError, SignedRequest,
    Verifier,
};
use serde_json::{json, Value};

/// Sign, send and verify HubSpot webhooks; map and diff records; check a configuration.
#[derive(Debug, Parser)]
#[command(name = "hubspot-edge", version, about, long_about = None)]
#[command(
    after_help = "Exit codes: 0 done; 1 the answer is no (invalid signature, \
configuration problems, a value the map refuses); 2 bad usage; 3 an input cannot be read; \
4 the request could not be sent; 5 the destination answered non-2xx."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sign a webhook body as HubSpot does and print the signature headers.
    Sign(SignArgs),
    /// Sign a webhook batch and POST it to a URL (a local "trigger" for your endpoint).
    Send(SendArgs),
    /// Check a captured request's HubSpot signature and say exactly why it fails.
    Verify(VerifyArgs),
    /// Map a HubSpot record's properties to your record (or back) through a map file.
    Map(MapArgs),
    /// The changes between two of your records, typed by a map file.
    Diff(DiffArgs),
    /// Check a configuration (.dev.vars and the environment) as the Worker's /healthz does.
    CheckConfig(CheckConfigArgs),
}

/// Where the client secret comes from.
#[derive(Debug, Args)]
struct SecretArgs {
    /// The variable holding the app's client secret.
    #[arg(long, default_value = "HUBSPOT_CLIENT_SECRET", value_name = "NAME")]
    secret_env: String,
    /// Read variables from this file (KEY=VALUE lines, as .dev.vars) before the environment.
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

/// HubSpot's signature versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Version {
    /// `X-HubSpot-Signature-v3` (HMAC-SHA256 with a timestamp): webhooks today.
    V3,
    /// `X-HubSpot-Signature` v2 (SHA-256 of secret, method, URL, body): workflow actions.
    V2,
    /// `X-HubSpot-Signature` v1 (SHA-256 of secret and body): legacy webhooks.
    V1,
}

#[derive(Debug, Args)]
struct SignArgs {
    #[command(flatten)]
    secret: SecretArgs,
    /// The URL the request is sent to, exactly (v2, v3 sign it).
    #[arg(long)]
    url: String,
    /// The HTTP method.
    #[arg(long, default_value = "POST")]
    method: String,
    /// The signature version.
    #[arg(long, value_enum, default_value = "v3")]
    version: Version,
    /// The v3 timestamp in Unix milliseconds (default: now).
    #[arg(long)]
    timestamp: Option<u64>,
    /// Print the headers as a JSON object.
    #[arg(long)]
    json: bool,
    /// The body: a file, or `-` for standard input.
    body: PathBuf,
}

#[derive(Debug, Args)]
struct SendArgs {
    #[command(flatten)]
    secret: SecretArgs,
    /// Where to POST.
    #[arg(long)]
    url: String,
    /// The URL to sign, when it differs from --url (behind a tunnel or proxy: the public URL
    /// HubSpot would call).
    #[arg(long)]
    signed_url: Option<String>,
    /// The signature version.
    #[arg(long, value_enum, default_value = "v3")]
    version: Version,
    /// Generate a batch for this subscription type (`contact.creation`,
    /// `deal.propertyChange`, `company.deletion`, …) instead of reading a body.
    #[arg(long, value_name = "SUBSCRIPTION_TYPE", conflicts_with = "body")]
    generate: Option<String>,
    /// Events in a generated batch (HubSpot sends at most 100 per request).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    count: u64,
    /// The portal (HubSpot account) id of generated events.
    #[arg(long, default_value_t = 62_515)]
    portal_id: u64,
    /// The first object id of generated events (then +1 each).
    #[arg(long, default_value_t = 1_001)]
    object_id: u64,
    /// The property of generated `propertyChange` events.
    #[arg(long, default_value = "lifecyclestage")]
    property: String,
    /// The new value of generated `propertyChange` events.
    #[arg(long, default_value = "customer")]
    value: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// The body: a file holding a JSON array of events, or `-` for standard input.
    body: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    secret: SecretArgs,
    /// A captured request, as raw HTTP/1.1 (request line, headers, blank line, body).
    #[arg(long, conflicts_with_all = ["headers", "body"])]
    request: Option<PathBuf>,
    /// The captured headers: `Name: value` lines, or a JSON object.
    #[arg(long, requires = "body")]
    headers: Option<PathBuf>,
    /// The captured body, byte for byte.
    #[arg(long, requires = "headers")]
    body: Option<PathBuf>,
    /// The URL HubSpot called (scheme, host, path and query). Default: `https://` + the
    /// captured `Host` and path.
    #[arg(long)]
    url: Option<String>,
    /// The HTTP method (default: the captured one, else POST).
    #[arg(long)]
    method: Option<String>,
    /// Check the v3 timestamp against this instant (Unix ms) instead of now.
    #[arg(long, conflicts_with = "ignore_timestamp")]
    now: Option<u64>,
    /// Skip the v3 timestamp window (for an old capture; never for live traffic).
    #[arg(long)]
    ignore_timestamp: bool,
    /// Accept v1/v2-only requests (the Worker's ALLOW_LEGACY_SIGNATURES).
    #[arg(long)]
    allow_legacy: bool,
}

#[derive(Debug, Args)]
struct MapArgs {
    /// The field map (the Worker's ENRICHMENT_MAP JSON).
    #[arg(long, value_name = "PATH")]
    map: PathBuf,
    /// The object type in the map (`contacts`, `deals`, …).
    #[arg(long)]
    object: String,
    /// Map your record back to HubSpot property values instead.
    #[arg(long)]
    to_hubspot: bool,
    /// The record: a HubSpot object (`{"properties": {…}}`) or its properties, or your record
    /// with --to-hubspot; `-` for standard input.
    record: PathBuf,
}

#[derive(Debug, Args)]
struct DiffArgs {
    /// The field map (the Worker's ENRICHMENT_MAP JSON).
    #[arg(long, value_name = "PATH")]
    map: PathBuf,
    /// The object type in the map (`contacts`, `deals`, …).
    #[arg(long)]
    object: String,
    /// The records are HubSpot objects or properties: map them first.
    #[arg(long)]
    from_hubspot: bool,
    /// The record before.
    old: PathBuf,
    /// The record after.
    new: PathBuf,
}

#[derive(Debug, Args)]
struct CheckConfigArgs {
    /// The env file (KEY=VALUE lines). Default: `.dev.vars` when it exists.
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
    /// Ignore the process environment (check the file alone).
    #[arg(long)]
    no_env: bool,
    /// Print the problems as JSON (as /healthz does).
    #[arg(long)]
    json: bool,
}

/// A failure with its exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn input(message: impl Into<String>) -> Self {
        Self {
            code: 3,
            message: message.into(),
        }
    }

    fn no(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }
}

type Outcome = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sign(a) => sign(&a),
        Command::Send(a) => send(&a),
        Command::Verify(a) => verify(&a),
        Command::Map(a) => map(&a),
        Command::Diff(a) => diff_records(&a),
        Command::CheckConfig(a) => check_config(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("hubspot-edge: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    if path == Path::new("-") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut out)
            .map_err(|e| Failure::input(format!("standard input: {e}")))?;
        return Ok(out);
    }
    std::fs::read(path).map_err(|e| Failure::input(format!("{}: {e}", path.display())))
}

fn read_json(path: &Path) -> Result<Value, Failure> {
    serde_json::from_slice(&read(path)?)
        .map_err(|e| Failure::input(format!("{}: not JSON: {e}", path.display())))
}

/// `KEY=VALUE` lines (`#` comments, blank lines, optional quotes), as wrangler reads .dev.vars.
fn env_file(path: &Path) -> Result<BTreeMap<String, String>, Failure> {
    let text = String::from_utf8(read(path)?)
        .map_err(|_| Failure::input(format!("{}: not UTF-8", path.display())))?;
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .or_else(|| v.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
            .unwrap_or(v);
        vars.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(vars)
}

fn secret(args: &SecretArgs) -> Result<ClientSecret, Failure> {
    let from_file = match &args.env_file {
        Some(p) => env_file(p)?.remove(&args.secret_env),
        None => None,
    };
    let value = from_file
        .or_else(|| std::env::var(&args.secret_env).ok())
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| Failure {
            code: 2,
            message: format!(
                "no client secret: set {} in the environment or in --env-file",
                args.secret_env
            ),
        })?;
    Ok(ClientSecret::new(value.trim()))
}

/// The signature headers for `body` sent as `method uri`.
fn signature_headers(
    secret: &ClientSecret,
    version: Version,
    method: &str,
    uri: &str,
    body: &[u8],
    timestamp_ms: u64,
) -> Vec<(&'static str, String)> {
    match version {
        Version::V3 => {
            let ts = timestamp_ms.to_string();
            vec![
                (
                    "X-HubSpot-Signature-v3",
                    sign_v3(secret, method, uri, body, &ts),
                ),
                ("X-HubSpot-Request-Timestamp", ts),
            ]
        }
        Version::V2 => vec![
            ("X-HubSpot-Signature", sign_v2(secret, method, uri, body)),
            ("X-HubSpot-Signature-Version", "v2".to_owned()),
        ],
        Version::V1 => vec![
            ("X-HubSpot-Signature", sign_v1(secret, body)),
            ("X-HubSpot-Signature-Version", "v1".to_owned()),
        ],
    }
}

fn sign(a: &SignArgs) -> Outcome {
    let secret = secret(&a.secret)?;
    let body = read(&a.body)?;
    let headers = signature_headers(
        &secret,
        a.version,
        &a.method,
        &a.url,
        &body,
        a.timestamp.unwrap_or_else(now_ms),
    );
    if a.json {
        let map: serde_json::Map<String, Value> = headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        println!("{}", Value::Object(map));
    } else {
        for (k, v) in headers {
            println!("{k}: {v}");
        }
    }
    Ok(())
}

fn send(a: &SendArgs) -> Outcome {
    let secret = secret(&a.secret)?;
    let body = match (&a.generate, &a.body) {
        (Some(subscription), _) => generate::batch(
            subscription,
            &generate::Options {
                count: a.count,
                portal_id: a.portal_id,
                first_object_id: a.object_id,
                property: &a.property,
                value: &a.value,
                now_ms: now_ms(),
            },
        )
        .map_err(|e| Failure {
            code: 2,
            message: e,
        })?,
        (None, Some(path)) => {
            let body = read(path)?;
            serde_json::from_slice::<Value>(&body)
                .map_err(|e| Failure::input(format!("{}: not JSON: {e}", path.display())))?;
            body
        }
        (None, None) => {
            return Err(Failure {
                code: 2,
                message: "give a body file (or -) or --generate SUBSCRIPTION_TYPE".into(),
            })
        }
    };
    let signed_url = a.signed_url.as_deref().unwrap_or(&a.url);
    let headers = signature_headers(&secret, a.version, "POST", signed_url, &body, now_ms());
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(std::time::Duration::from_secs(a.timeout)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut request = agent
        .post(&a.url)
        .header("content-type", "application/json")
        .header("user-agent", "HubSpot Webhooks (hubspot-edge cli)");
    for (k, v) in &headers {
        request = request.header(*k, v);
    }
    let mut response = request.send(&body[..]).map_err(|e| Failure {
        code: 4,
        message: format!("POST {}: {e}", a.url),
    })?;
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| format!("(unreadable body: {e})"));
    println!("{status}");
    if !text.is_empty() {
        println!("{text}");
    }
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(Failure {
            code: 5,
            message: format!("the destination answered {status}"),
        })
    }
}

fn verify(a: &VerifyArgs) -> Outcome {
    let secret = secret(&a.secret)?;
    let captured = match (&a.request, &a.headers, &a.body) {
        (Some(path), _, _) => capture::parse_raw(&read(path)?)
            .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?,
        (None, Some(h), Some(b)) => capture::Captured {
            method: None,
            target: None,
            headers: capture::parse_headers(&read(h)?)
                .map_err(|e| Failure::input(format!("{}: {e}", h.display())))?,
            body: read(b)?,
        },
        _ => {
            return Err(Failure {
                code: 2,
                message: "give --request FILE, or --headers FILE and --body FILE".into(),
            })
        }
    };
    let method = a
        .method
        .clone()
        .or_else(|| captured.method.clone())
        .unwrap_or_else(|| "POST".to_owned());
    let url = match &a.url {
        Some(u) => u.clone(),
        None => captured.url().ok_or_else(|| Failure {
            code: 2,
            message: "the capture has no Host and path: give --url (the URL HubSpot called)".into(),
        })?,
    };
    let verifier = Verifier::new(secret.clone()).with_legacy(if a.allow_legacy {
        LegacySignatures::Accept
    } else {
        LegacySignatures::Reject
    });
    let check = |uri: &str| {
        let request = SignedRequest {
            method: &method,
            uri,
            headers: &captured.headers,
            body: &captured.body,
        };
        if a.ignore_timestamp {
            verifier.verify_ignoring_timestamp(&request)
        } else {
            verifier.verify(&request, a.now.unwrap_or_else(now_ms))
        }
    };
    match check(&url) {
        Ok(version) => {
            println!("valid: {} signature for {method} {url}", version.as_str());
            Ok(())
        }
        Err(e) => {
            let mut why = explain(&e, &captured.headers, a.now.unwrap_or_else(now_ms));
            if e == SignatureError::Mismatch {
                // The usual cause: the URL HubSpot signed is not the one given.
                if let Some(other) = capture::url_variants(&url)
                    .into_iter()
                    .find(|u| check(u).is_ok())
                {
                    why.push_str(&format!(
                        "\nIt verifies with the URL {other}: HubSpot signed that one (set \
                         PUBLIC_BASE_URL to its origin when the Worker sits behind a proxy)."
                    ));
                }
            }
            println!("invalid: {}", e.code());
            println!("{why}");
            Err(Failure::no(format!("invalid signature ({})", e.code())))
        }
    }
}

/// What a signature error means and what to check.
fn explain(e: &SignatureError, headers: &http::HeaderMap, now_ms: u64) -> String {
    let age = || {
        headers
            .get("x-hubspot-request-timestamp")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|ts| {
                if ts <= now_ms {
                    format!("{} s old", (now_ms - ts) / 1000)
                } else {
                    format!("{} s in the future", (ts - now_ms) / 1000)
                }
            })
            .unwrap_or_default()
    };
    match e {
        SignatureError::Mismatch => "The signature is well formed but does not match this \
            request. Check: the client secret (the app's, under Auth; not a private app token), \
            the exact URL HubSpot called (scheme, host, path and query), the method, and that \
            the body is byte for byte what was received (not re-serialised JSON)."
            .to_owned(),
        SignatureError::TimestampExpired => format!(
            "X-HubSpot-Request-Timestamp is {} and HubSpot's rule rejects requests older than \
             5 minutes (a replay, or a capture checked later: --ignore-timestamp or --now).",
            age()
        ),
        SignatureError::TimestampInFuture => format!(
            "X-HubSpot-Request-Timestamp is {}: check this machine's clock.",
            age()
        ),
        SignatureError::LegacyRejected => "Only a v1/v2 X-HubSpot-Signature was sent; \
            webhooks are verified with v3. Workflow actions sign with v2: --allow-legacy."
            .to_owned(),
        other => format!("{other}."),
    }
}

fn object_map<'m>(mapping: &'m Mapping, object: &str) -> Result<&'m ObjectMap, Failure> {
    mapping.object(object).ok_or_else(|| Failure {
        code: 2,
        message: format!("the map has no object type {object:?}"),
    })
}

fn load_map(path: &Path) -> Result<Mapping, Failure> {
    let text = String::from_utf8(read(path)?)
        .map_err(|_| Failure::input(format!("{}: not UTF-8", path.display())))?;
    Mapping::from_json(&text).map_err(|e| Failure {
        code: 1,
        message: format!("{}: {} ({e})", path.display(), e.code()),
    })
}

/// HubSpot properties from a HubSpot object (`{"properties": …}`) or a properties object.
fn hubspot_properties(v: &Value) -> Result<BTreeMap<String, Option<String>>, Failure> {
    let props = v.get("properties").unwrap_or(v);
    let Some(obj) = props.as_object() else {
        return Err(Failure::input("expected a JSON object of properties"));
    };
    obj.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::Null => None,
                Value::String(s) => Some(s.clone()),
                Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
                _ => {
                    return Err(Failure::input(format!(
                        "property {k:?}: HubSpot sends text or null"
                    )))
                }
            };
            Ok((k.clone(), text))
        })
        .collect()
}

fn record_of(v: Value) -> Result<Record, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::input(format!("not a record: {e}")))
}

fn mapped(m: &ObjectMap, v: &Value) -> Result<Record, Failure> {
    m.to_destination(&hubspot_properties(v)?)
        .map_err(|e| Failure::no(format!("{}: {e}", e.code())))
}

fn map(a: &MapArgs) -> Outcome {
    let mapping = load_map(&a.map)?;
    let m = object_map(&mapping, &a.object)?;
    let input = read_json(&a.record)?;
    let out = if a.to_hubspot {
        let properties = m
            .to_hubspot(&record_of(input)?)
            .map_err(|e| Failure::no(format!("{}: {e}", e.code())))?;
        json!({ "properties": properties })
    } else {
        serde_json::to_value(mapped(m, &input)?).unwrap_or(Value::Null)
    };
    println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
    Ok(())
}

fn diff_records(a: &DiffArgs) -> Outcome {
    let mapping = load_map(&a.map)?;
    let m = object_map(&mapping, &a.object)?;
    let (old, new) = (read_json(&a.old)?, read_json(&a.new)?);
    let (old, new) = if a.from_hubspot {
        (mapped(m, &old)?, mapped(m, &new)?)
    } else {
        (record_of(old)?, record_of(new)?)
    };
    let d = diff(m, &old, &new);
    println!(
        "{}",
        serde_json::to_string_pretty(&json!({
            "unchanged": d.is_unchanged(),
            "changes": d.patch().map(|p| p.changes()).unwrap_or_default(),
        }))
        .unwrap_or_default()
    );
    Ok(())
}

fn check_config(a: &CheckConfigArgs) -> Outcome {
    let file = match &a.env_file {
        Some(p) => env_file(p)?,
        None if Path::new(".dev.vars").exists() => env_file(Path::new(".dev.vars"))?,
        None => BTreeMap::new(),
    };
    let no_env = a.no_env;
    let lookup = Lookup::new(|key: &str| {
        file.get(key)
            .cloned()
            .or_else(|| (!no_env).then(|| std::env::var(key).ok()).flatten())
    });
    // The whole deployment, parsed and checked as the Worker does (every problem, by part).
    let problems = Config::from_lookup(&lookup).err().unwrap_or_default();
    if a.json {
        let list: Vec<Value> = problems
            .iter()
            .map(|p| json!({"key": p.key(), "code": p.code(), "part": p.part.name()}))
            .collect();
        let status = if problems.is_empty() {
            "ok"
        } else {
            "misconfigured"
        };
        println!("{}", json!({"status": status, "problems": list}));
    } else if problems.is_empty() {
        println!("ok: no configuration problems");
    } else {
        for p in &problems {
            println!("{:<13} {:<32} {}", p.part.name(), p.key(), p.code());
            println!("              {}", p.error);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::no(format!(
            "{} configuration problem(s)",
            problems.len()
        )))
    }
}
