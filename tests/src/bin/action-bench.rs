//! Workflow actions benchmark on real workerd against the mock HubSpot (issue 11 §5):
//!
//! 1. **Action latency**: signed v2 execution requests to a `map_and_write` action
//!    (`POST /actions/normalise`: verify, parse, validate, map, record in the `ActionExecutions`
//!    Durable Object, answer), one at a time, interleaved with `GET /healthz` (the Worker's
//!    cheapest route: the same client, connection set-up and workerd hop) as the baseline in
//!    the same run. Client-side request → response times, p50/p99 of each and their ratio.
//! 2. **Completions per HubSpot call**: the mock's workflow engine enrolls 1,000 contacts in
//!    an approval (each execution answered `BLOCK`), then the user's system completes all 1,000
//!    with signed callbacks from 8 threads, as fast as the Worker takes them; with the default
//!    `ACTIONS_COMPLETE_WINDOW_MS` (1 s) the Worker sends batch completions. Completions per
//!    batch call as the mock counted them (target ≥ 90), the callbacks' wall time, and the
//!    time until HubSpot (the mock) holds all 1,000 completed.
//!
//! Prints `BENCH name=<id> <metric>=<value>` lines.
//!
//! Run: `cargo run --release -p hubspot-edge-tests --bin action-bench [-- ROUNDS]` (default 500
//! latency rounds; the README's tool set-up must have run once: `scripts/test.sh` or
//! `scripts/run.sh`).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use hubspot_edge_core::outbound::WebhookSecret;
use hubspot_edge_tests::bench::{p50_p99, report_ms};
use hubspot_edge_tests::fixture::CLIENT_SECRET;
use hubspot_edge_tests::{
    http, poll_until, Fixture, FixtureOptions, HubSpotRequest, SignatureScheme,
};
use hubspot_mock::MockConfig;
use serde_json::{json, Value};

/// The user's system's callback secret (a public test value).
const CALLBACK_SECRET: &str = "whsec_Y2FsbGJhY2stdGVzdC1zZWNyZXQtMDE=";
const MAP: &str = r#"{"objects":{"contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"num_employees","field":"employees","type":"number"},
    {"hubspot":"lifecyclestage","field":"stage","type":"enumeration",
     "values":{"lead":"LEAD","customer":"CUSTOMER"},"unmappedValues":"keep"}]}}}"#;
/// The mock's portal.
const PORTAL: u64 = 33;
const BURST: usize = 1_000;
const SENDERS: usize = 8;

fn actions() -> String {
    json!({"actions": [
        {"key": "approve", "kind": "approval",
         "labels": {"en": {"actionName": "Wait for approval"}},
         "objectTypes": ["CONTACT"],
         "outputFields": [{"name": "approved_by", "type": "string"}],
         "approval": {"expiration": "P2D"}},
        {"key": "normalise", "kind": "map_and_write",
         "labels": {"en": {"actionName": "Normalise"}},
         "objectTypes": ["CONTACT"],
         "outputFields": [{"name": "stage", "type": "string"}, {"name": "size", "type": "number"}],
         "mapAndWrite": {"object": "contacts", "outputs": {"stage": "stage", "size": "employees"}}}
    ]})
    .to_string()
}

fn execution(callback_id: &str, object_id: u64) -> Vec<u8> {
    json!({
        "callbackId": callback_id,
        "origin": {"portalId": PORTAL, "actionDefinitionId": 1, "actionDefinitionVersion": 1},
        "context": {"source": "WORKFLOWS", "workflowId": 7},
        "object": {"objectId": object_id, "objectType": "CONTACT",
                   "properties": {"lifecyclestage": "customer", "num_employees": "1200"}},
        "inputFields": {},
    })
    .to_string()
    .into_bytes()
}

fn callback(fx: &Fixture, key: &WebhookSecret, callback_id: &str) -> Result<u16, String> {
    let body = json!({"outputs": {"approved_by": "bench"}})
        .to_string()
        .into_bytes();
    let ts = hubspot_edge_tests::now_ms() / 1000;
    let msg_id = format!("msg-{callback_id}");
    let signature = key.sign(&msg_id, ts, &body);
    let ts = ts.to_string();
    let r = http::request(
        "POST",
        &fx.url(&format!("/actions/callbacks/{callback_id}")),
        &[
            ("webhook-id", msg_id.as_str()),
            ("webhook-timestamp", ts.as_str()),
            ("webhook-signature", signature.as_str()),
            ("content-type", "application/json"),
        ],
        Some(&body),
    )
    .map_err(|e| e.to_string())?;
    Ok(r.status)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500)
        .max(50);
    eprintln!("building the Worker…");
    hubspot_edge_tests::wrangler::build_worker()?;
    eprintln!("starting the mock HubSpot and wrangler dev…");
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            burst: 100_000,
            seed_contacts: 3,
            client_secret: CLIENT_SECRET.into(),
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("ACTIONS_CALLBACK_SECRET", CALLBACK_SECRET),
            ("HUBSPOT_APP_ID", "1160452"),
            ("HUBSPOT_DEVELOPER_API_KEY", "mock-developer-api-key"),
        ])
        .var("ACTIONS", actions());
    // No `[build]` and a private bundle: a rebuild during the run may not restart the Worker.
    options.wrangler.config = Some(
        hubspot_edge_tests::wrangler::prebuilt_config_with_own_bundle(
            "wrangler.action-bench.toml",
        )?,
    );
    let fx = Fixture::start(options)?;
    let mock = fx.hubspot.as_ref().ok_or("no mock")?;

    // 1. Latency, interleaved with the baseline.
    let stamp = hubspot_edge_tests::unique_id();
    let mut action_ms = Vec::with_capacity(rounds);
    let mut base_ms = Vec::with_capacity(rounds);
    for i in 0..rounds + 20 {
        let t = Instant::now();
        let r = fx.get("/healthz")?;
        let base = t.elapsed();
        if r.status != 200 {
            return Err(format!("/healthz: {} {}", r.status, r.text()).into());
        }
        let id = stamp + i as u64;
        let request = HubSpotRequest::to_url(
            &fx.url("/actions/normalise"),
            CLIENT_SECRET,
            execution(&format!("ap-{PORTAL}-{id}-1-0"), id),
        )
        .scheme(SignatureScheme::V2);
        let t = Instant::now();
        let r = request.send()?;
        let took = t.elapsed();
        if r.status != 200 || !r.text().contains("SUCCESS") {
            return Err(format!("action: {} {}", r.status, r.text()).into());
        }
        // The first 20 warm the isolate and the Durable Object up.
        if i >= 20 {
            base_ms.push(base.as_secs_f64() * 1e3);
            action_ms.push(took.as_secs_f64() * 1e3);
        }
    }
    let (b50, b99) = p50_p99(base_ms.clone());
    let (a50, a99) = p50_p99(action_ms.clone());
    report_ms("healthz_baseline", base_ms);
    report_ms("action_map_and_write", action_ms);
    println!(
        "BENCH name=action_vs_baseline p50_ratio={:.2} p99_ratio={:.2} added_p50_ms={:.1} added_p99_ms={:.1}",
        a50 / b50,
        a99 / b99,
        a50 - b50,
        a99 - b99
    );

    // 2. A burst of 1,000 blocked executions, completed by the user's system.
    let r = fx.admin_request(
        "POST",
        "/admin/actions/publish",
        Some(b"{}"),
        Duration::from_secs(60),
    )?;
    let published: Value = r.json()?;
    let definition = published["actions"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["key"] == "approve"))
        .and_then(|s| s["id"].as_str())
        .ok_or_else(|| format!("publish: {published}"))?
        .to_owned();
    let t = Instant::now();
    let callback_ids = mock.enroll(
        &json!({"definitionId": definition, "objectType": "CONTACT", "objectId": "1",
                "count": BURST}),
    )?;
    let query = format!("definitionId={definition}");
    poll_until(
        "all executions blocked",
        Duration::from_secs(300),
        Duration::from_millis(200),
        || {
            (mock.workflow_executions(&query)["counts"]["blocked"].as_u64() == Some(BURST as u64))
                .then_some(())
        },
    )?;
    let blocked_s = t.elapsed().as_secs_f64();
    let before = mock.workflow_executions("")["counts"].clone();
    let stats = |m: &hubspot_mock::MockHubSpot| -> Result<Value, String> {
        http::get(&format!("{}/__mock/stats", m.base_url()), None)
            .map_err(|e| e.to_string())?
            .json()
            .map_err(|e| e.to_string())
    };
    let calls_before = stats(mock)?["workflows"]["completions"]["batchCalls"]
        .as_u64()
        .unwrap_or(0);
    let key = WebhookSecret::parse(CALLBACK_SECRET)?;
    let t = Instant::now();
    let refused: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = callback_ids
            .chunks(BURST.div_ceil(SENDERS))
            .map(|chunk| {
                let (fx, key) = (&fx, &key);
                s.spawn(move || {
                    chunk
                        .iter()
                        .filter_map(|cb| match callback(fx, key, cb) {
                            Ok(202) => None,
                            Ok(status) => Some(format!("{cb}: {status}")),
                            Err(e) => Some(format!("{cb}: {e}")),
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|_| vec!["panicked".into()]))
            .collect()
    });
    let callbacks_s = t.elapsed().as_secs_f64();
    if !refused.is_empty() {
        return Err(format!("{} callbacks refused, first {}", refused.len(), refused[0]).into());
    }
    poll_until(
        "all completed at HubSpot",
        Duration::from_secs(300),
        Duration::from_millis(100),
        || {
            (mock.workflow_executions(&query)["counts"]["completed"].as_u64() == Some(BURST as u64))
                .then_some(())
        },
    )?;
    let completed_s = t.elapsed().as_secs_f64();
    let completions = stats(mock)?["workflows"]["completions"].clone();
    let calls = completions["batchCalls"].as_u64().unwrap_or(0) - calls_before;
    #[allow(clippy::cast_precision_loss)]
    let per_call = BURST as f64 / calls.max(1) as f64;
    println!(
        "BENCH name=action_completion_burst executions={BURST} senders={SENDERS} enrolled_to_blocked_s={blocked_s:.1} callbacks_s={callbacks_s:.1} all_completed_s={completed_s:.1} batch_calls={calls} single_calls={} completions_per_call={per_call:.1} counts_before={before}",
        completions["singleCalls"],
    );
    Ok(())
}
