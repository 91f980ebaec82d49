//! `receiver`: an endpoint for trying hubspot-edge on one machine. Point the Worker's
//! `FORWARD_URL` at it; it verifies each request's Standard Webhooks signature with the
//! Worker's `FORWARD_SECRET` and prints each event readably (type, object, changes). A request
//! whose signature does not verify is answered 401 and printed as `REJECTED`, with the reason.
//!
//! It is the end-to-end tests' loopback [`Destination`], as a binary.
//!
//! ```text
//! cargo run --release -p hubspot-edge-tests --bin receiver -- --dev-vars .dev.vars
//! # prints: receiving on http://127.0.0.1:8091/hook
//! ```

// The binary's output is its purpose.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use hubspot_edge_tests::{Behavior, Delivery, Destination};
use serde_json::Value;

/// Receives hubspot-edge's forwarded events, verifies their Standard Webhooks signature and
/// prints them.
#[derive(Debug, Parser)]
#[command(
    name = "receiver",
    about = "Receives hubspot-edge's forwarded events on 127.0.0.1, verifies each request's \
Standard Webhooks signature and prints each event (type, object, changes).",
    after_help = "The secret is the Worker's FORWARD_SECRET: from --secret, else from the \
FORWARD_SECRET line of the file given with --dev-vars, else from the FORWARD_SECRET environment \
variable. Set the Worker's FORWARD_URL to the URL this prints (http://127.0.0.1:PORT/hook).

Output, one block per request:
  accepted  hubspot-edge.record.changed  contact 1  id=hsc1_…
    first_name: \"Grace\" -> \"Ada\"
  REJECTED  401  webhook-id=msg_…: no webhook signature matched (is the secret …?)

Examples:
  receiver --dev-vars .dev.vars
  receiver --port 9000 --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
  receiver --dev-vars .dev.vars --status 503    # answer 503 to watch the Worker retry"
)]
struct Args {
    /// Port to listen on, on 127.0.0.1.
    #[arg(long, default_value_t = 8091)]
    port: u16,
    /// The Standard Webhooks secret (`whsec_…`): the Worker's FORWARD_SECRET.
    #[arg(long)]
    secret: Option<String>,
    /// Read FORWARD_SECRET from this file (the Worker's `.dev.vars`).
    #[arg(long, value_name = "FILE")]
    dev_vars: Option<PathBuf>,
    /// Answer every verified request with this status (e.g. 503 or 429 to watch retries).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=599))]
    status: u16,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let secret = match secret(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("receiver: {e}");
            return ExitCode::from(2);
        }
    };
    let observer: hubspot_edge_tests::destination::Observer =
        Arc::new(|d: &Delivery| println!("{}", render(d)));
    let destination = match Destination::start_on(args.port, &secret, Some(observer)) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("receiver: {e}");
            return ExitCode::FAILURE;
        }
    };
    destination.set_default(Behavior::Status(args.status));
    println!("receiving on {}", destination.url());
    // Serves on its own threads until the process is stopped (Ctrl-C).
    loop {
        std::thread::park();
    }
}

/// The secret from `--secret`, the `--dev-vars` file or the environment.
fn secret(args: &Args) -> Result<String, String> {
    if let Some(s) = &args.secret {
        return Ok(s.clone());
    }
    if let Some(path) = &args.dev_vars {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        return dev_var(&text, "FORWARD_SECRET")
            .ok_or_else(|| format!("no FORWARD_SECRET in {}", path.display()));
    }
    std::env::var("FORWARD_SECRET").map_err(|_| {
        "no secret: pass --secret whsec_…, --dev-vars .dev.vars or set FORWARD_SECRET".to_owned()
    })
}

/// The value of `key` in a `.dev.vars` (dotenv) text: `KEY=value`, optionally quoted.
fn dev_var(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once('=')?;
        if k.trim() != key {
            return None;
        }
        let v = v.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(v);
        Some(unquoted.to_owned())
    })
}

/// One request, as printed: a head line, then one indented line per change or field.
fn render(d: &Delivery) -> String {
    let webhook_id = d.webhook_id.as_deref().unwrap_or("-");
    if !d.verified {
        let why = d.verify_error.as_deref().unwrap_or("not verified");
        return format!(
            "REJECTED  401  webhook-id={webhook_id}: {why} (is the secret the Worker's FORWARD_SECRET?)"
        );
    }
    let body = &d.body;
    let text = |v: Option<&Value>| match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => "-".to_owned(),
        Some(other) => other.to_string(),
    };
    let status = match d.answered {
        Some(s) if (200..300).contains(&s) => "accepted".to_owned(),
        Some(s) => format!("answered {s}"),
        None => "unanswered".to_owned(),
    };
    let mut out = format!(
        "{status}  {}  {} {}  id={webhook_id}",
        text(body.get("type")),
        text(body.get("objectType")),
        text(body.get("objectId")),
    );
    let mut line = |s: String| {
        out.push_str("\n    ");
        out.push_str(&s);
    };
    if let Some(changes) = body.get("changes").and_then(Value::as_array) {
        for c in changes {
            let old = c
                .get("old")
                .map_or_else(|| "(unknown)".to_owned(), Value::to_string);
            let new = c
                .get("new")
                .map_or_else(|| "null".to_owned(), Value::to_string);
            line(format!("{}: {old} -> {new}", text(c.get("field"))));
        }
    }
    if let Some(Value::Object(record)) = body.get("record") {
        for (field, value) in record {
            line(format!("{field} = {value}"));
        }
    }
    if let Some(ids) = body.get("mergedIds").and_then(Value::as_array) {
        let ids: Vec<String> = ids.iter().map(|v| text(Some(v))).collect();
        line(format!("merged: {}", ids.join(", ")));
    }
    if body.get("privacy").and_then(Value::as_bool) == Some(true) {
        line("privacy deletion".to_owned());
    }
    if let Some(a) = body.get("association") {
        let removed = a.get("removed").and_then(Value::as_bool) == Some(true);
        line(format!(
            "association {} {} -> {}{}",
            text(a.get("type")),
            text(a.get("fromId")),
            text(a.get("toId")),
            if removed { " (removed)" } else { "" }
        ));
    }
    // A thin event: HubSpot's own property change, as sent (an enriched event's `hubspot` is
    // only its latest source event; its changes are printed above).
    let thin = !text(body.get("type")).starts_with("hubspot-edge.");
    let hubspot = body.get("hubspot").filter(|_| thin);
    if let Some(name) = hubspot.and_then(|h| h.get("propertyName")) {
        let value = hubspot
            .and_then(|h| h.get("propertyValue"))
            .map_or_else(|| "null".to_owned(), Value::to_string);
        line(format!("{} = {value}", text(Some(name))));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;

    use super::*;

    fn delivery(body: Value, verified: bool) -> Delivery {
        Delivery {
            seq: 0,
            method: "POST".into(),
            path: "/hook".into(),
            headers: Vec::new(),
            webhook_id: Some("hsc1_abc".into()),
            webhook_timestamp: None,
            raw_body: Vec::new(),
            body,
            object_id: Some(1),
            verified,
            verify_error: (!verified).then(|| "signature does not match".to_owned()),
            behavior: Behavior::Status(if verified { 200 } else { 401 }),
            answered: Some(if verified { 200 } else { 401 }),
            received_at: Instant::now(),
            received_at_ms: 0,
        }
    }

    #[test]
    fn a_change_prints_field_old_and_new() {
        let d = delivery(
            json!({"type":"hubspot-edge.record.changed","objectType":"contact","objectId":"1",
                   "changes":[{"field":"first_name","old":"Grace","new":"Ada"},
                              {"field":"birthday","new":"1815-12-10"}],
                   "hubspot":{"propertyName":"firstname","propertyValue":"Ada"}}),
            true,
        );
        assert_eq!(
            render(&d),
            "accepted  hubspot-edge.record.changed  contact 1  id=hsc1_abc\n    \
             first_name: \"Grace\" -> \"Ada\"\n    birthday: (unknown) -> \"1815-12-10\""
        );
    }

    #[test]
    fn a_thin_event_prints_hubspots_property() {
        let d = delivery(
            json!({"type":"contact.propertyChange","objectType":"contact","objectId":"7",
                   "hubspot":{"propertyName":"firstname","propertyValue":"Ada"}}),
            true,
        );
        assert!(
            render(&d).ends_with("\n    firstname = \"Ada\""),
            "{}",
            render(&d)
        );
    }

    #[test]
    fn a_bad_signature_is_rejected_visibly() {
        let d = delivery(json!({}), false);
        let out = render(&d);
        assert!(out.starts_with("REJECTED  401  webhook-id=hsc1_abc: signature does not match"));
    }

    #[test]
    fn dev_vars_values_unquoted() {
        let text = "A=1\nFORWARD_SECRET=\"whsec_x\"\n";
        assert_eq!(dev_var(text, "FORWARD_SECRET").as_deref(), Some("whsec_x"));
        assert_eq!(
            dev_var("FORWARD_SECRET=whsec_y", "FORWARD_SECRET").as_deref(),
            Some("whsec_y")
        );
        assert_eq!(dev_var("FORWARD_URL=x", "FORWARD_SECRET"), None);
    }
}
