//! The `hubspot-edge` binary as a user runs it: each command, its output and exit code.

// A test fails by panicking, with the error in the message.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{SystemTime, UNIX_EPOCH};

use hubspot_edge_core::signature::{ClientSecret, SignedRequest, Verifier};

const SECRET: &str = "cli-test-client-secret";

/// A directory of its own, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!(
            "hubspot-edge-cli-{name}-{}-{}",
            std::process::id(),
            now_ms()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }

    fn file(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn now_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hubspot-edge"))
        .args(args)
        .env("HUBSPOT_CLIENT_SECRET", SECRET)
        .env_remove("FORWARD_URL")
        .output()
        .unwrap()
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A raw capture of `body` POSTed to `path` on `host` with the headers `sign --json` printed.
fn capture(host: &str, path: &str, headers_json: &str, body: &[u8]) -> Vec<u8> {
    let headers: serde_json::Value = serde_json::from_str(headers_json).unwrap();
    let mut raw = format!("POST {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (k, v) in headers.as_object().unwrap() {
        raw.push_str(&format!("{k}: {}\r\n", v.as_str().unwrap()));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = raw.into_bytes();
    out.extend_from_slice(body);
    out
}

#[test]
fn sign_then_verify_and_say_why_it_fails() {
    let dir = Dir::new("verify");
    let body = br#"[{"eventId":1,"subscriptionType":"contact.creation","objectId":5}]"#;
    let body_file = dir.file("body.json", body);
    let url = "https://hooks.example.com/webhooks/hubspot";
    let signed = run(&["sign", "--url", url, "--json", arg(&body_file)]);
    assert_eq!(code(&signed), 0, "{signed:?}");
    let headers = stdout(&signed);
    let good = dir.file(
        "good.http",
        capture("hooks.example.com", "/webhooks/hubspot", &headers, body),
    );

    // The URL from the capture's Host: valid.
    let ok = run(&["verify", "--request", arg(&good)]);
    assert_eq!(code(&ok), 0, "{ok:?}");
    assert!(stdout(&ok).starts_with("valid: v3"), "{}", stdout(&ok));

    // A body changed by one byte: mismatch, exit 1, and what to check.
    let mut tampered_body = body.to_vec();
    tampered_body[2] = b'E';
    let tampered = dir.file(
        "tampered.http",
        capture(
            "hooks.example.com",
            "/webhooks/hubspot",
            &headers,
            &tampered_body,
        ),
    );
    let bad = run(&["verify", "--request", arg(&tampered)]);
    assert_eq!(code(&bad), 1);
    assert!(stdout(&bad).contains("invalid: signature_mismatch"));
    assert!(stdout(&bad).contains("byte for byte"));

    // Checked against the wrong scheme (a TLS-terminating proxy): the tool finds the URL that
    // verifies.
    let proxied = run(&[
        "verify",
        "--request",
        arg(&good),
        "--url",
        "http://hooks.example.com/webhooks/hubspot",
    ]);
    assert_eq!(code(&proxied), 1);
    assert!(
        stdout(&proxied).contains(&format!("It verifies with the URL {url}")),
        "{}",
        stdout(&proxied)
    );

    // An old capture: expired, unless the window is skipped.
    let old = run(&[
        "sign",
        "--url",
        url,
        "--json",
        "--timestamp",
        &(now_ms() - 3_600_000).to_string(),
        arg(&body_file),
    ]);
    let stale = dir.file(
        "stale.http",
        capture(
            "hooks.example.com",
            "/webhooks/hubspot",
            &stdout(&old),
            body,
        ),
    );
    let expired = run(&["verify", "--request", arg(&stale)]);
    assert_eq!(code(&expired), 1);
    assert!(stdout(&expired).contains("invalid: timestamp_expired"));
    assert!(
        stdout(&expired).contains("3600 s old"),
        "{}",
        stdout(&expired)
    );
    let ignored = run(&["verify", "--request", arg(&stale), "--ignore-timestamp"]);
    assert_eq!(code(&ignored), 0);

    // v2 (workflow actions): refused unless legacy signatures are allowed.
    let v2 = run(&[
        "sign",
        "--url",
        url,
        "--json",
        "--version",
        "v2",
        arg(&body_file),
    ]);
    let v2_file = dir.file(
        "v2.http",
        capture("hooks.example.com", "/webhooks/hubspot", &stdout(&v2), body),
    );
    let refused = run(&["verify", "--request", arg(&v2_file)]);
    assert!(stdout(&refused).contains("legacy_signature_rejected"));
    let allowed = run(&["verify", "--request", arg(&v2_file), "--allow-legacy"]);
    assert!(stdout(&allowed).starts_with("valid: v2"), "{allowed:?}");

    // Headers and body as separate files.
    let h = dir.file("headers.json", &headers);
    let sep = run(&[
        "verify",
        "--headers",
        arg(&h),
        "--body",
        arg(&body_file),
        "--url",
        url,
    ]);
    assert_eq!(code(&sep), 0, "{sep:?}");
}

/// What the loopback destination received: request line, headers (lowercase names), body.
type Received = (String, Vec<(String, String)>, Vec<u8>);

/// Serves one request on a loopback port: answers `status`, hands back the raw request.
fn one_request(status: u16) -> (String, std::thread::JoinHandle<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        let mut headers = Vec::new();
        let mut length = 0;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            let (k, v) = h.trim_end().split_once(':').unwrap();
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
            headers.push((k.to_ascii_lowercase(), v.trim().to_owned()));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let mut stream = stream;
        write!(
            stream,
            "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
        )
        .unwrap();
        (line, headers, body)
    });
    (url, handle)
}

#[test]
fn send_a_generated_batch_signed_as_hubspot_does() {
    let (url, server) = one_request(200);
    let out = run(&[
        "send",
        "--url",
        &url,
        "--generate",
        "deal.propertyChange",
        "--count",
        "3",
        "--property",
        "dealstage",
        "--value",
        "closedwon",
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert!(stdout(&out).starts_with("200"));
    let (line, headers, body) = server.join().unwrap();
    assert!(line.starts_with("POST /hook "));
    let events: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(events.as_array().unwrap().len(), 3);
    assert_eq!(events[0]["propertyValue"], "closedwon");
    // The core's verifier (the Worker's) accepts it for the URL it was sent to.
    let mut map = http::HeaderMap::new();
    for (k, v) in &headers {
        map.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            http::HeaderValue::from_str(v).unwrap(),
        );
    }
    let request = SignedRequest {
        method: "POST",
        uri: &url,
        headers: &map,
        body: &body,
    };
    Verifier::new(ClientSecret::new(SECRET))
        .verify(&request, now_ms())
        .unwrap();

    // A destination answering 500: exit 5, its status printed.
    let (url, server) = one_request(500);
    let dir = Dir::new("send");
    let file = dir.file("batch.json", br#"[{"eventId":1}]"#);
    let failed = run(&["send", "--url", &url, arg(&file)]);
    assert_eq!(code(&failed), 5);
    assert!(stdout(&failed).starts_with("500"));
    server.join().unwrap();

    // Nobody listening: exit 4.
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/hook", closed.local_addr().unwrap());
    drop(closed);
    assert_eq!(code(&run(&["send", "--url", &dead, arg(&file)])), 4);
    // Not JSON: exit 3; an unknown subscription type: exit 2 naming the accepted ones.
    let junk = dir.file("junk", b"nope");
    assert_eq!(code(&run(&["send", "--url", &dead, arg(&junk)])), 3);
    let unknown = run(&["send", "--url", &dead, "--generate", "contact.teleport"]);
    assert_eq!(code(&unknown), 2);
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("propertyChange"));
}

#[test]
fn map_and_diff_through_a_map_file() {
    let dir = Dir::new("map");
    let map = dir.file(
        "map.json",
        r#"{"objects":{"contacts":{"fields":[
            {"hubspot":"email","type":"email"},
            {"hubspot":"num_employees","field":"employees","type":"number"}]}}}"#,
    );
    let record = dir.file(
        "contact.json",
        r#"{"id":"1","properties":{"email":" Ann@Example.COM ","num_employees":"12"}}"#,
    );
    let out = run(&[
        "map",
        "--map",
        arg(&map),
        "--object",
        "contacts",
        arg(&record),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let mapped: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        mapped,
        serde_json::json!({"email": "ann@example.com", "employees": 12})
    );
    // Back to HubSpot.
    let mine = dir.file("mine.json", r#"{"email":"b@example.com","employees":7}"#);
    let back = run(&[
        "map",
        "--map",
        arg(&map),
        "--object",
        "contacts",
        "--to-hubspot",
        arg(&mine),
    ]);
    let back: serde_json::Value = serde_json::from_str(&stdout(&back)).unwrap();
    assert_eq!(back["properties"]["num_employees"], "7");
    // A value the type refuses: exit 1 with the mapping's code.
    let bad = dir.file("bad.json", r#"{"properties":{"num_employees":"many"}}"#);
    let refused = run(&["map", "--map", arg(&map), "--object", "contacts", arg(&bad)]);
    assert_eq!(code(&refused), 1);
    // Diff: typed (12 and 12.0 are equal), changes listed.
    let old = dir.file("old.json", r#"{"email":"a@example.com","employees":12}"#);
    let new = dir.file("new.json", r#"{"email":"b@example.com","employees":12.0}"#);
    let d = run(&[
        "diff",
        "--map",
        arg(&map),
        "--object",
        "contacts",
        arg(&old),
        arg(&new),
    ]);
    let d: serde_json::Value = serde_json::from_str(&stdout(&d)).unwrap();
    assert_eq!(d["unchanged"], false);
    assert_eq!(d["changes"].as_array().unwrap().len(), 1);
    assert_eq!(d["changes"][0]["field"], "email");
    // An object type the map lacks: exit 2.
    assert_eq!(
        code(&run(&[
            "map",
            "--map",
            arg(&map),
            "--object",
            "deals",
            arg(&record)
        ])),
        2
    );
}

#[test]
fn check_config_reports_problems_by_part() {
    let dir = Dir::new("config");
    let broken = dir.file(
        "broken.vars",
        "HUBSPOT_CLIENT_SECRET=s\nFORWARD_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n\
         ADMIN_TOKEN=t\nFORWARD_TIMEOUT_MS=5\n",
    );
    let out = run(&[
        "check-config",
        "--env-file",
        arg(&broken),
        "--no-env",
        "--json",
    ]);
    assert_eq!(code(&out), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(v["status"], "misconfigured");
    let problems = v["problems"].as_array().unwrap();
    assert!(problems
        .iter()
        .any(|p| p["key"] == "FORWARD_URL" && p["code"] == "config_missing"));
    assert!(problems
        .iter()
        .any(|p| p["key"] == "FORWARD_TIMEOUT_MS" && p["code"] == "config_out_of_range"));
    let fine = dir.file(
        "fine.vars",
        "HUBSPOT_CLIENT_SECRET=s\nFORWARD_URL=https://example.com/hook\n\
         FORWARD_SECRET=\"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\"\nADMIN_TOKEN=t\n",
    );
    let ok = run(&["check-config", "--env-file", arg(&fine), "--no-env"]);
    assert_eq!(code(&ok), 0, "{ok:?}");
    assert!(stdout(&ok).starts_with("ok"));
}

#[test]
fn every_command_has_help_and_a_missing_secret_is_a_usage_error() {
    for cmd in ["sign", "send", "verify", "map", "diff", "check-config"] {
        let out = run(&[cmd, "--help"]);
        assert_eq!(code(&out), 0, "{cmd}");
        assert!(stdout(&out).contains("Usage: hubspot-edge"), "{cmd}");
    }
    let top = run(&["--help"]);
    assert!(stdout(&top).contains("Exit codes"));
    let out = Command::new(env!("CARGO_BIN_EXE_hubspot-edge"))
        .args(["sign", "--url", "https://x.example/h", "-"])
        .env_remove("HUBSPOT_CLIENT_SECRET")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("HUBSPOT_CLIENT_SECRET"));
}
