//! Custom workflow actions end to end (README "Workflow actions"): HubSpot's execution requests
//! to `POST /actions/{key}`, signed v2 by the test itself or sent by the mock's workflow
//! engine (`tests/mock`, definitions published by `POST /admin/actions/publish`), a lookup
//! server of the test's own (it counts calls per `webhook-id`, i.e. per `callbackId`), and the
//! user's system's callbacks. Each scenario has a Worker and mock of its own.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use hubspot_edge_core::outbound::WebhookSecret;
use hubspot_edge_tests::fixture::CLIENT_SECRET;
use hubspot_edge_tests::{
    http, poll_until, unique_id, Fixture, FixtureOptions, HttpResponse, HubSpotRequest,
    SignatureScheme,
};
use hubspot_mock::MockConfig;
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::{check, extra_wrangler_config, mock_of, mock_stats, Outcome};

/// The user's system's secrets (public test values).
const LOOKUP_SECRET: &str = "whsec_bG9va3VwLXRlc3Qtc2VjcmV0LTAwMDE=";
const CALLBACK_SECRET: &str = "whsec_Y2FsbGJhY2stdGVzdC1zZWNyZXQtMDE=";
const MAP: &str = r#"{"objects":{"contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"num_employees","field":"employees","type":"number"},
    {"hubspot":"lifecyclestage","field":"stage","type":"enumeration",
     "values":{"lead":"LEAD","customer":"CUSTOMER"},"unmappedValues":"keep"}]}}}"#;
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(200);
/// The mock's portal (`WorkflowConfig::portal_id`).
const PORTAL: u64 = 33;

fn actions(lookup_url: &str) -> String {
    json!({"actions": [
        {"key": "score", "kind": "lookup",
         "labels": {"en": {"actionName": "Score the contact"}},
         "objectTypes": ["CONTACT"],
         "inputFields": [{"name": "tier", "type": "enumeration", "options": ["gold", "silver"]}],
         "outputFields": [{"name": "score", "type": "number"}, {"name": "why", "type": "string"}],
         "objectRequestOptions": {"properties": ["email"]},
         "lookup": {"url": lookup_url, "secret": "LOOKUP_SECRET", "reasonOutput": "why"}},
        {"key": "approve", "kind": "approval",
         "labels": {"en": {"actionName": "Wait for approval"}},
         "objectTypes": ["CONTACT"],
         "outputFields": [{"name": "approved_by", "type": "string"}],
         "approval": {"expiration": "P2D"}},
        {"key": "approve-fast", "kind": "approval",
         "labels": {"en": {"actionName": "Wait briefly for approval"}},
         "objectTypes": ["CONTACT"],
         "approval": {"expiration": "PT2S"}},
        {"key": "normalise", "kind": "map_and_write",
         "labels": {"en": {"actionName": "Normalise"}},
         "objectTypes": ["CONTACT"],
         "outputFields": [{"name": "stage", "type": "string"}, {"name": "size", "type": "number"}],
         "mapAndWrite": {"object": "contacts", "outputs": {"stage": "stage", "size": "employees"}}}
    ]})
    .to_string()
}

/// A Worker of its own with the three actions, its lookup pointed at `lookup`.
fn start(config: &str, lookup: &LookupServer, extra: &[(&str, &str)]) -> Result<Fixture, Failed> {
    start_with(config, lookup, extra, None)
}

/// [`start`], with the mock's webhooks to the Worker when `webhook` is given.
fn start_with(
    config: &str,
    lookup: &LookupServer,
    extra: &[(&str, &str)],
    webhook: Option<hubspot_mock::WebhookConfig>,
) -> Result<Fixture, Failed> {
    let webhooks = webhook.is_some();
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            burst: 100_000,
            seed_contacts: 3,
            client_secret: CLIENT_SECRET.into(),
            webhook,
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("LOOKUP_SECRET", LOOKUP_SECRET),
            ("ACTIONS_CALLBACK_SECRET", CALLBACK_SECRET),
            ("HUBSPOT_APP_ID", "1160452"),
            ("HUBSPOT_DEVELOPER_API_KEY", "mock-developer-api-key"),
        ])
        .var("ACTIONS", actions(&lookup.url()));
    for (k, v) in extra {
        options = options.var(*k, *v);
    }
    options.wrangler.config = Some(extra_wrangler_config(config)?);
    let fx = Fixture::start(options)?;
    if webhooks {
        mock_of(&fx)?.set_webhook_target(&fx.url("/webhooks/hubspot"));
    }
    Ok(fx)
}

/// Enrolls contact `object` in the workflow of `definition` (an approval: it blocks) and waits
/// until the mock's workflow engine has it blocked; its callback id.
fn enroll_blocked(
    mock: &hubspot_mock::MockHubSpot,
    definition: &str,
    object: &str,
) -> Result<String, Failed> {
    let cb = mock
        .enroll(&json!({"definitionId": definition, "objectType": "CONTACT", "objectId": object}))
        .map_err(|e| e.to_string())?
        .first()
        .cloned()
        .ok_or("no callbackId")?;
    let query = format!("callbackId={cb}");
    poll_until("the execution blocked", DEADLINE, POLL, || {
        (mock.workflow_executions(&query)["executions"][0]["state"] == "blocked").then_some(())
    })?;
    Ok(cb)
}

// ---------------------------------------------------------------------------------------------
// The user's system's lookup endpoint.

/// Answers `{"outputs":{"score":…}}` after `delay`; counts requests per `webhook-id`.
struct LookupServer {
    port: u16,
    calls: Arc<Mutex<HashMap<String, u32>>>,
    delay: Arc<Mutex<Duration>>,
    stop: Arc<AtomicBool>,
}

impl LookupServer {
    fn start() -> Result<Self, Failed> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = listener.local_addr().map_err(|e| e.to_string())?.port();
        let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let delay = Arc::new(Mutex::new(Duration::ZERO));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, d, s) = (calls.clone(), delay.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (c, d) = (c.clone(), d.clone());
                thread::spawn(move || {
                    let _ = serve(stream, &c, &d);
                });
            }
        });
        Ok(Self {
            port,
            calls,
            delay,
            stop,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/score", self.port)
    }

    fn calls(&self, id: &str) -> u32 {
        self.calls
            .lock()
            .map(|m| m.get(id).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn set_delay(&self, d: Duration) {
        if let Ok(mut delay) = self.delay.lock() {
            *delay = d;
        }
    }
}

impl Drop for LookupServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn serve(
    stream: TcpStream,
    calls: &Mutex<HashMap<String, u32>>,
    delay: &Mutex<Duration>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut length = 0usize;
    let mut id = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("webhook-id:") {
            id = line["webhook-id:".len()..].trim().to_owned();
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let wait = *delay
        .lock()
        .map_err(|_| std::io::Error::other("poisoned"))?;
    *calls
        .lock()
        .map_err(|_| std::io::Error::other("poisoned"))?
        .entry(id)
        .or_default() += 1;
    thread::sleep(wait);
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let score = if request["inputs"]["tier"] == "gold" {
        90
    } else {
        40
    };
    let reply = json!({"outputs": {"score": score}}).to_string();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    stream.flush()
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// An execution request body as HubSpot documents it (docs/hubspot.md §3.2).
fn execution(callback_id: &str, object_id: u64, inputs: Value, properties: Value) -> Vec<u8> {
    json!({
        "callbackId": callback_id,
        "origin": {"portalId": PORTAL, "actionDefinitionId": 1, "actionDefinitionVersion": 1},
        "context": {"source": "WORKFLOWS", "workflowId": 7},
        "object": {"objectId": object_id, "objectType": "CONTACT", "properties": properties},
        "inputFields": inputs,
    })
    .to_string()
    .into_bytes()
}

/// A v2-signed POST to `/actions/{key}`, as HubSpot signs action requests.
fn action_request(fx: &Fixture, key: &str, body: Vec<u8>) -> HubSpotRequest {
    HubSpotRequest::to_url(&fx.url(&format!("/actions/{key}")), CLIENT_SECRET, body)
        .scheme(SignatureScheme::V2)
}

fn output_fields(r: &HttpResponse) -> Result<Value, Failed> {
    check(r.status == 200, || {
        format!("status {}: {}", r.status, r.text())
    })?;
    Ok(r.json()?["outputFields"].clone())
}

fn execution_state(fx: &Fixture, callback_id: &str) -> Result<Option<String>, Failed> {
    let r = fx.admin_get(&format!("/admin/actions/executions/{PORTAL}/{callback_id}"))?;
    match r.status {
        404 => Ok(None),
        200 => Ok(r.json()?["state"].as_str().map(str::to_owned)),
        s => Err(format!("execution state: {s} {}", r.text()).into()),
    }
}

/// Publishes the definitions; `(created, patched, unchanged, ids by key)`.
fn publish(fx: &Fixture) -> Result<(u64, u64, u64, HashMap<String, String>), Failed> {
    let r = fx.admin_request(
        "POST",
        "/admin/actions/publish",
        Some(b"{}"),
        Duration::from_secs(60),
    )?;
    check(r.status == 200, || {
        format!("publish: {} {}", r.status, r.text())
    })?;
    let v = r.json()?;
    let ids = v["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s["key"].as_str()?.to_owned(), s["id"].as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default();
    let n = |k: &str| v[k].as_u64().unwrap_or(u64::MAX);
    Ok((n("created"), n("patched"), n("unchanged"), ids))
}

fn executions(fx: &Fixture, query: &str) -> Result<Value, Failed> {
    Ok(mock_of(fx)?.workflow_executions(query))
}

/// Standard Webhooks headers for `body`, signed with `secret`.
fn callback(
    fx: &Fixture,
    callback_id: &str,
    body: &Value,
    secret: &str,
) -> Result<HttpResponse, Failed> {
    let bytes = body.to_string().into_bytes();
    let key = WebhookSecret::parse(secret).map_err(|e| e.to_string())?;
    let ts = hubspot_edge_tests::now_ms() / 1000;
    let msg_id = format!("msg-{callback_id}");
    let signature = key.sign(&msg_id, ts, &bytes);
    let ts = ts.to_string();
    let headers = [
        ("webhook-id", msg_id.as_str()),
        ("webhook-timestamp", ts.as_str()),
        ("webhook-signature", signature.as_str()),
        ("content-type", "application/json"),
    ];
    Ok(http::request(
        "POST",
        &fx.url(&format!("/actions/callbacks/{callback_id}")),
        &headers,
        Some(&bytes),
    )?)
}

// ---------------------------------------------------------------------------------------------
// Scenarios.

/// A map-and-write action answers at once with the mapped outputs and `SUCCESS`; a bad input is
/// HubSpot's 400 body, never a 2xx. Publishing twice writes the definitions once.
pub(crate) fn actions_map_and_write_answers_outputs_publish_idempotent(_: &Fixture) -> Outcome {
    let lookup = LookupServer::start()?;
    let fx = start("wrangler.actions-map.toml", &lookup, &[])?;
    let id = unique_id();
    let r = action_request(
        &fx,
        "normalise",
        execution(
            &format!("ap-{PORTAL}-{id}-1-0"),
            id,
            json!({}),
            json!({"lifecyclestage": "customer", "num_employees": "1200", "email": "x@example.com"}),
        ),
    )
    .send()?;
    let out = output_fields(&r)?;
    check(
        out == json!({"stage": "CUSTOMER", "size": 1200, "hs_execution_state": "SUCCESS"}),
        || format!("map_and_write outputs: {out}"),
    )?;
    // 200 more executions, one at a time: each answered SUCCESS; request → response time
    // reported (issue 11 §5 targets p99 < 100 ms locally; asserted loosely here, 2 cores shared).
    let mut times = Vec::with_capacity(200);
    for i in 0..200u64 {
        let started = std::time::Instant::now();
        let r = action_request(
            &fx,
            "normalise",
            execution(
                &format!("ap-{PORTAL}-{id}-{}-0", i + 10),
                id + i,
                json!({}),
                json!({"lifecyclestage": "lead", "num_employees": i.to_string()}),
            ),
        )
        .send()?;
        times.push(started.elapsed());
        let out = output_fields(&r)?;
        check(out["size"] == i && out["stage"] == "LEAD", || {
            format!("execution {i}: {out}")
        })?;
    }
    times.sort();
    let (p50, p99) = (times[times.len() / 2], times[times.len() * 99 / 100]);
    eprintln!(
        "actions: map_and_write request -> response p50 {p50:?}, p99 {p99:?} (200 sequential)"
    );
    check(p99 < Duration::from_secs(1), || format!("p99 {p99:?}"))?;
    // A lookup with an input outside its options: 400, HubSpot's error shape, nothing called.
    let bad = format!("ap-{PORTAL}-{id}-2-0");
    let r = action_request(
        &fx,
        "score",
        execution(&bad, id, json!({"tier": "bronze"}), json!({})),
    )
    .send()?;
    let body = r.json().unwrap_or(Value::Null);
    check(
        r.status == 400
            && body["category"] == "VALIDATION_ERROR"
            && body["errors"][0]["code"] == "action_field_type",
        || format!("bad input: {} {body}", r.status),
    )?;
    check(lookup.calls(&bad) == 0, || {
        "a refused execution called the lookup".into()
    })?;
    // Publish: four created, then nothing written.
    let (created, patched, unchanged, _) = publish(&fx)?;
    check((created, patched, unchanged) == (4, 0, 0), || {
        format!("first publish: {created} created, {patched} patched, {unchanged} unchanged")
    })?;
    let writes = |s: &Value| {
        s["workflows"]["definitions"]["writes"]
            .as_u64()
            .unwrap_or(u64::MAX)
    };
    let before = writes(&mock_stats(mock_of(&fx)?)?);
    let (created, patched, unchanged, _) = publish(&fx)?;
    let after = writes(&mock_stats(mock_of(&fx)?)?);
    check(
        (created, patched, unchanged) == (0, 0, 4) && after == before,
        || {
            format!("second publish: {created}/{patched}/{unchanged}, HubSpot writes {before} -> {after}")
        },
    )
}

/// Forged, tampered, stale and unsigned execution requests are 401 and run nothing (the lookup
/// is never called and no record exists); the genuine one then runs once.
pub(crate) fn actions_forged_or_stale_401_runs_nothing(_: &Fixture) -> Outcome {
    let lookup = LookupServer::start()?;
    let fx = start("wrangler.actions-forged.toml", &lookup, &[])?;
    let id = unique_id();
    let cb = format!("ap-{PORTAL}-{id}-1-0");
    let body = execution(
        &cb,
        id,
        json!({"tier": "gold"}),
        json!({"email": "a@example.com"}),
    );
    let stale = hubspot_edge_tests::now_ms() - 10 * 60 * 1000;
    let cases: Vec<(&str, HubSpotRequest)> = vec![
        (
            "wrong secret",
            action_request(&fx, "score", body.clone()).secret("not-the-secret"),
        ),
        (
            "tampered body",
            action_request(&fx, "score", body.clone()).sign_body(b"{}".to_vec()),
        ),
        (
            "stale v3",
            action_request(&fx, "score", body.clone())
                .scheme(SignatureScheme::V3)
                .timestamp_ms(stale),
        ),
        (
            "unsigned",
            action_request(&fx, "score", body.clone()).scheme(SignatureScheme::Unsigned),
        ),
        (
            "signed for another action",
            action_request(&fx, "score", body.clone()).sign_url(&fx.url("/actions/approve")),
        ),
    ];
    for (what, request) in cases {
        let r = request.send()?;
        check(r.status == 401, || {
            format!("{what}: {} {}", r.status, r.text())
        })?;
    }
    check(lookup.calls(&cb) == 0, || {
        "a refused request called the lookup".into()
    })?;
    check(execution_state(&fx, &cb)?.is_none(), || {
        "a refused request left an execution record".into()
    })?;
    let out = output_fields(&action_request(&fx, "score", body).send()?)?;
    check(
        out["score"] == 90 && out["hs_execution_state"] == "SUCCESS",
        || format!("genuine request: {out}"),
    )?;
    check(lookup.calls(&cb) == 1, || {
        format!("lookup calls: {}", lookup.calls(&cb))
    })
}

/// HubSpot retrying an execution (same `callbackId`) runs the lookup once and gets the same
/// answer; a retry that arrives while the first attempt still runs is answered `BLOCK`, and the
/// first attempt's result reaches HubSpot as a completion.
pub(crate) fn actions_same_callback_twice_runs_once_same_answer(_: &Fixture) -> Outcome {
    let lookup = LookupServer::start()?;
    let fx = start("wrangler.actions-retry.toml", &lookup, &[])?;
    let id = unique_id();
    let cb = format!("ap-{PORTAL}-{id}-1-0");
    let body = execution(&cb, id, json!({"tier": "silver"}), json!({}));
    let first = action_request(&fx, "score", body.clone()).send()?;
    let second = action_request(&fx, "score", body).send()?;
    check(first.status == 200 && first.body == second.body, || {
        format!(
            "answers differ: {} {} / {}",
            first.status,
            first.text(),
            second.text()
        )
    })?;
    check(output_fields(&first)?["score"] == 40, || {
        format!("answer: {}", first.text())
    })?;
    check(lookup.calls(&cb) == 1, || {
        format!("lookup ran {} times", lookup.calls(&cb))
    })?;
    Ok(())
}

/// A lookup slower than the budget: HubSpot's workflow (the mock's engine, definitions
/// published by the Worker) gets `BLOCK`, then the lookup's late reply completes the execution
/// with its outputs through the batch completion endpoint.
pub(crate) fn actions_slow_lookup_blocks_then_completes(_: &Fixture) -> Outcome {
    let lookup = LookupServer::start()?;
    lookup.set_delay(Duration::from_millis(2_500));
    let fx = start(
        "wrangler.actions-slow.toml",
        &lookup,
        &[("ACTIONS_BUDGET_MS", "500")],
    )?;
    let (_, _, _, ids) = publish(&fx)?;
    let definition = ids.get("score").ok_or("no id for score")?;
    let callback_ids = mock_of(&fx)?
        .enroll(
            &json!({"definitionId": definition, "objectType": "CONTACT", "objectId": "1",
                        "inputFields": {"tier": "gold"}}),
        )
        .map_err(|e| e.to_string())?;
    let cb = callback_ids.first().ok_or("no callbackId")?.clone();
    let query = format!("callbackId={cb}");
    let first = poll_until("the execution blocked", DEADLINE, POLL, || {
        let v = mock_of(&fx).ok()?.workflow_executions(&query);
        let e = v["executions"][0].clone();
        (e["state"] == "blocked" || e["state"] == "completed").then_some(e)
    })?;
    check(first["history"][0]["status"] == 200, || {
        format!("first answer: {first}")
    })?;
    let done = poll_until("the execution completed", DEADLINE, POLL, || {
        let v = mock_of(&fx).ok()?.workflow_executions(&query);
        let e = v["executions"][0].clone();
        (e["state"] == "completed").then_some(e)
    })
    .map_err(|e| format!("{e}: {}", executions(&fx, &query).unwrap_or_default()))?;
    check(
        done["executionState"] == "SUCCESS"
            && done["outputs"]["score"] == 90
            && done["finishedBy"] == "batchCallback",
        || format!("completed execution: {done}"),
    )?;
    check(lookup.calls(&cb) == 1, || {
        format!("lookup calls: {}", lookup.calls(&cb))
    })
}

/// 250 executions of an approval block; the user's system completes each with a signed
/// callback; they reach HubSpot in at most 3 batch completion calls, each with its outputs.
/// Callbacks for a completed or unknown execution are 409 / 404; a forged one is 401.
pub(crate) fn actions_250_approvals_completed_in_at_most_3_batch_calls(_: &Fixture) -> Outcome {
    const N: usize = 250;
    let lookup = LookupServer::start()?;
    let fx = start(
        "wrangler.actions-approvals.toml",
        &lookup,
        // The window must outlast the callbacks' arrival: 250 signed POSTs took over 5 s when
        // the whole suite ran on the shared 2-core machine (4 calls with a 5 s window).
        &[("ACTIONS_COMPLETE_WINDOW_MS", "15000")],
    )?;
    let (_, _, _, ids) = publish(&fx)?;
    let definition = ids.get("approve").ok_or("no id for approve")?;
    let callback_ids = mock_of(&fx)?
        .enroll(
            &json!({"definitionId": definition, "objectType": "CONTACT", "objectId": "1",
                        "count": N}),
        )
        .map_err(|e| e.to_string())?;
    check(callback_ids.len() == N, || {
        format!("{} enrolled", callback_ids.len())
    })?;
    let blocked = poll_until("all blocked", Duration::from_secs(120), POLL, || {
        let v = mock_of(&fx)
            .ok()?
            .workflow_executions(&format!("definitionId={definition}"));
        (v["counts"]["blocked"].as_u64() == Some(N as u64)).then_some(())
    });
    check(blocked.is_ok(), || {
        format!(
            "not all blocked: {}",
            executions(&fx, &format!("definitionId={definition}"))
                .map(|v| v["counts"].clone())
                .unwrap_or_default()
        )
    })?;
    // A forged callback: 401, nothing completed.
    let r = callback(
        &fx,
        &callback_ids[0],
        &json!({"outputs": {}}),
        "whsec_Zm9yZ2VkLXNlY3JldC1mb3JnZWQtMDE=",
    )?;
    check(r.status == 401, || format!("forged callback: {}", r.status))?;
    // The user's system completes them all, 8 at a time.
    let chunks: Vec<Vec<String>> = callback_ids
        .chunks(N.div_ceil(8))
        .map(<[String]>::to_vec)
        .collect();
    let failures: Vec<String> = thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                let fx = &fx;
                s.spawn(move || {
                    let mut failed = Vec::new();
                    for cb in chunk {
                        let body = json!({"outputs": {"approved_by": format!("user-{cb}")}});
                        match callback(fx, cb, &body, CALLBACK_SECRET) {
                            Ok(r) if r.status == 202 => {}
                            Ok(r) => failed.push(format!("{cb}: {} {}", r.status, r.text())),
                            Err(e) => failed.push(format!("{cb}: {e:?}")),
                        }
                    }
                    failed
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|_| vec!["a sender panicked".into()])
            })
            .collect()
    });
    check(failures.is_empty(), || {
        format!("callbacks refused: {failures:?}")
    })?;
    let done = poll_until("all completed", Duration::from_secs(90), POLL, || {
        let v = mock_of(&fx)
            .ok()?
            .workflow_executions(&format!("definitionId={definition}"));
        (v["counts"]["completed"].as_u64() == Some(N as u64)).then_some(v)
    })
    .map_err(|e| {
        format!(
            "{e}: {}",
            executions(&fx, &format!("definitionId={definition}"))
                .map(|v| v["counts"].clone())
                .unwrap_or_default()
        )
    })?;
    let stats = mock_stats(mock_of(&fx)?)?;
    let completions = &stats["workflows"]["completions"];
    check(
        completions["batchCalls"].as_u64().is_some_and(|n| n <= 3)
            && completions["singleCalls"] == 0
            && completions["inputs"] == N as u64,
        || format!("completion calls: {completions}"),
    )?;
    let wrong: Vec<&Value> = done["executions"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| {
                    e["outputs"]["approved_by"]
                        != format!("user-{}", e["callbackId"].as_str().unwrap_or(""))
                        || e["executionState"] != "SUCCESS"
                })
                .collect()
        })
        .unwrap_or_default();
    check(wrong.is_empty(), || {
        format!("wrong outputs: {:?}", wrong.first())
    })?;
    // Again for a completed one: 409; an unknown one: 404.
    let r = callback(
        &fx,
        &callback_ids[0],
        &json!({"outputs": {}}),
        CALLBACK_SECRET,
    )?;
    check(r.status == 409, || {
        format!("completed again: {} {}", r.status, r.text())
    })?;
    let r = callback(
        &fx,
        &format!("ap-{PORTAL}-999999-1-0"),
        &json!({"outputs": {}}),
        CALLBACK_SECRET,
    )?;
    check(r.status == 404, || {
        format!("unknown: {} {}", r.status, r.text())
    })
}

/// A batch completion HubSpot refuses (400) is dead-lettered with its `callbackId` and outputs;
/// re-driving the letter completes the execution with those outputs.
pub(crate) fn actions_refused_completion_dead_lettered_then_redriven(_: &Fixture) -> Outcome {
    let lookup = LookupServer::start()?;
    let fx = start(
        "wrangler.actions-redrive.toml",
        &lookup,
        &[("ACTIONS_COMPLETE_WINDOW_MS", "0")],
    )?;
    let (_, _, _, ids) = publish(&fx)?;
    let definition = ids.get("approve").ok_or("no id for approve")?;
    let mock = mock_of(&fx)?;
    let cb = enroll_blocked(mock, definition, "2")?;
    let query = format!("callbackId={cb}");
    // HubSpot refuses the next request: the batch completion.
    let r = http::request(
        "POST",
        &format!("{}/__mock/faults", mock.base_url()),
        &[("content-type", "application/json")],
        Some(br#"{"next":[{"status":400}]}"#),
    )?;
    check(r.status == 200, || format!("mock faults: {}", r.status))?;
    let r = callback(
        &fx,
        &cb,
        &json!({"outputs": {"approved_by": "ops"}}),
        CALLBACK_SECRET,
    )?;
    check(r.status == 202, || {
        format!("callback: {} {}", r.status, r.text())
    })?;
    let letter = poll_until("a dead letter for the completion", DEADLINE, POLL, || {
        let r = fx
            .admin_get("/admin/dead-letters?reason=action_completion_failed")
            .ok()?;
        let v = r.json().ok()?;
        v["items"].as_array()?.first().cloned()
    })?;
    let id = letter["id"].as_str().ok_or("letter without id")?.to_owned();
    let full = fx.admin_get(&format!("/admin/dead-letters/{id}"))?.json()?;
    check(
        full["payload"]["callbackId"] == cb.as_str()
            && full["payload"]["outputs"]["approved_by"] == "ops"
            && full["key"] == format!("action:{cb}").as_str(),
        || format!("dead letter: {full}"),
    )?;
    check(
        execution_state(&fx, &cb)?.as_deref() == Some("failed"),
        || "the record does not say failed".into(),
    )?;
    check(
        mock.workflow_executions(&query)["executions"][0]["state"] == "blocked",
        || "the refused completion completed the execution".into(),
    )?;
    let r = fx.admin_post(&format!("/admin/dead-letters/{id}/redrive"), b"")?;
    check(r.status == 202, || {
        format!("redrive: {} {}", r.status, r.text())
    })?;
    let done = poll_until("the execution completed", DEADLINE, POLL, || {
        let e = mock.workflow_executions(&query)["executions"][0].clone();
        (e["state"] == "completed").then_some(e)
    })?;
    check(
        done["outputs"]["approved_by"] == "ops" && done["executionState"] == "SUCCESS",
        || format!("completed execution: {done}"),
    )?;
    check(
        execution_state(&fx, &cb)?.as_deref() == Some("completed"),
        || "the record does not say completed".into(),
    )
}

/// An approval answers `BLOCK` with its expiration; once it has passed, the execution is
/// `expired` and the user's system's callback is 410 `callback_expired`; a retry of the
/// execution still gets the same `BLOCK` body.
pub(crate) fn actions_approval_expires_then_callback_410(_: &Fixture) -> Outcome {
    let lookup = LookupServer::start()?;
    let fx = start("wrangler.actions-expiry.toml", &lookup, &[])?;
    let id = unique_id();
    let cb = format!("ap-{PORTAL}-{id}-1-0");
    let body = execution(&cb, id, json!({}), json!({}));
    let first = action_request(&fx, "approve-fast", body.clone()).send()?;
    let out = output_fields(&first)?;
    check(
        out == json!({"hs_execution_state": "BLOCK", "hs_expiration_duration": "PT2S"}),
        || format!("approval answer: {out}"),
    )?;
    check(
        execution_state(&fx, &cb)?.as_deref() == Some("blocked"),
        || "not blocked".into(),
    )?;
    poll_until(
        "the approval expired",
        Duration::from_secs(30),
        POLL,
        || (execution_state(&fx, &cb).ok()?.as_deref() == Some("expired")).then_some(()),
    )?;
    let r = callback(&fx, &cb, &json!({"outputs": {}}), CALLBACK_SECRET)?;
    let code = r.json().unwrap_or(Value::Null)["error"]["code"].clone();
    check(r.status == 410 && code == "callback_expired", || {
        format!("late callback: {} {}", r.status, r.text())
    })?;
    let again = action_request(&fx, "approve-fast", body).send()?;
    check(again.body == first.body, || {
        format!("retry after expiry: {}", again.text())
    })
}

/// A rule's `complete_action` (README "Rules"): "a contact's stage changed to CUSTOMER →
/// complete the workflow executions blocked for it". Two contacts wait in the approval; someone
/// changes one's stage in HubSpot; the mock's webhook runs the rule, which completes that
/// contact's execution (with the rule's output) through a batch completion, and only that one.
pub(crate) fn actions_rule_completes_the_objects_blocked_execution(_: &Fixture) -> Outcome {
    let rules = r#"{"rules":[{"name":"approve_customers",
        "when":{"objectTypes":["contact"],
                "changes":[{"field":"stage","op":"changed_to","value":"CUSTOMER"}]},
        "then":[{"complete_action":{"outputs":{"approved_by":"rule","not_an_output":1}}}]}]}"#;
    let lookup = LookupServer::start()?;
    let fx = start_with(
        "wrangler.actions-rules.toml",
        &lookup,
        &[("RULES", rules), ("ACTIONS_COMPLETE_WINDOW_MS", "0")],
        Some(hubspot_mock::WebhookConfig {
            secret: CLIENT_SECRET.into(),
            retry_delay: Duration::from_millis(500),
            ..hubspot_mock::WebhookConfig::default()
        }),
    )?;
    let (_, _, _, ids) = publish(&fx)?;
    let definition = ids.get("approve").ok_or("no id for approve")?;
    let stamp = unique_id();
    let mut contacts = Vec::new();
    for who in ["won", "control"] {
        contacts.push(super::enrichment::create(
            &fx,
            "contacts",
            json!({"email": format!("{who}-{stamp}@example.com"), "lifecyclestage": "lead"}),
        )?);
    }
    // Their creations reach `default` (and match no rule: `lead`).
    fx.dest.wait_for_ok(&contacts, DEADLINE)?;
    let mock = mock_of(&fx)?;
    let mut callbacks = Vec::new();
    for id in &contacts {
        callbacks.push(enroll_blocked(mock, definition, &id.to_string())?);
    }
    super::enrichment::patch(
        &fx,
        "contacts",
        contacts[0],
        json!({"lifecyclestage": "customer"}),
    )?;
    let query = format!("callbackId={}", callbacks[0]);
    let done = poll_until("the rule completed the execution", DEADLINE, POLL, || {
        let v = mock.workflow_executions(&query);
        (v["executions"][0]["state"] == "completed").then_some(v)
    })
    .map_err(|e| format!("{e}: {}", mock.workflow_executions(&query)))?;
    let e = &done["executions"][0];
    check(
        e["outputs"] == json!({"approved_by": "rule"})
            && e["executionState"] == "SUCCESS"
            && e["finishedBy"] == "batchCallback",
        || format!("completed execution: {e}"),
    )?;
    // The control contact's execution is still blocked, and its state at the Worker says so.
    let control = mock.workflow_executions(&format!("callbackId={}", callbacks[1]));
    check(control["executions"][0]["state"] == "blocked", || {
        format!("control: {control}")
    })?;
    check(
        execution_state(&fx, &callbacks[1])?.as_deref() == Some("blocked"),
        || "control not blocked at the Worker".to_owned(),
    )?;
    fx.stop_worker();
    Ok(())
}

/// One execution HubSpot will not complete (it expired there: the mock's clock is moved on
/// past its 2 days, not the Worker's) shares a batch completion with two good ones. HubSpot
/// refuses the batch whole, naming it; the Worker dead-letters that one alone and completes
/// the two others with a second batch call.
pub(crate) fn actions_refused_batch_split_dead_letters_only_the_named(_: &Fixture) -> Outcome {
    let lookup = LookupServer::start()?;
    let fx = start(
        "wrangler.actions-split.toml",
        &lookup,
        // Long enough for the three callbacks to share one batch.
        &[("ACTIONS_COMPLETE_WINDOW_MS", "4000")],
    )?;
    let (_, _, _, ids) = publish(&fx)?;
    let definition = ids.get("approve").ok_or("no id for approve")?;
    let mock = mock_of(&fx)?;
    let enroll = |object: &str| enroll_blocked(mock, definition, object);
    let stale = enroll("1")?;
    mock.advance_clock(Duration::from_secs(24 * 3600));
    let good = [enroll("2")?, enroll("3")?];
    // 2.5 days after the first block at HubSpot: it expired there, not the two others.
    mock.advance_clock(Duration::from_secs(36 * 3600));
    for cb in [&stale, &good[0], &good[1]] {
        let r = callback(
            &fx,
            cb,
            &json!({"outputs": {"approved_by": "ops"}}),
            CALLBACK_SECRET,
        )?;
        check(r.status == 202, || {
            format!("callback {cb}: {} {}", r.status, r.text())
        })?;
    }
    for cb in &good {
        let query = format!("callbackId={cb}");
        poll_until("the good execution completed", DEADLINE, POLL, || {
            let e = mock.workflow_executions(&query)["executions"][0].clone();
            (e["state"] == "completed" && e["outputs"]["approved_by"] == "ops").then_some(())
        })
        .map_err(|e| format!("{e}: {}", mock.workflow_executions(&query)))?;
    }
    let letters = poll_until("the dead letter", DEADLINE, POLL, || {
        let v = fx
            .admin_get("/admin/dead-letters?reason=action_completion_failed")
            .ok()?
            .json()
            .ok()?;
        let items = v["items"].as_array()?.clone();
        (!items.is_empty()).then_some(items)
    })?;
    check(letters.len() == 1, || {
        format!("{} letters (want 1): {letters:?}", letters.len())
    })?;
    let id = letters[0]["id"].as_str().ok_or("letter without id")?;
    let full = fx.admin_get(&format!("/admin/dead-letters/{id}"))?.json()?;
    check(full["payload"]["callbackId"] == stale.as_str(), || {
        format!("dead letter: {full}")
    })?;
    check(
        execution_state(&fx, &stale)?.as_deref() == Some("failed"),
        || "the refused execution is not failed".into(),
    )?;
    let stats = mock_stats(mock)?;
    let completions = &stats["workflows"]["completions"];
    check(completions["batchCalls"] == 2, || {
        format!("completion calls (want 2: the refused batch, then the rest): {completions}")
    })
}

/// Issue 12 §1/§4: workflow actions in the metrics and the admin list. Two executions of an
/// approval (enrolled in the mock's workflow engine) block; `GET /admin/actions/executions/{portal}`
/// lists both (callback id, action, state `blocked`, expiry; no values), the metrics count them
/// (`hubspot_edge_action_executions_total{action=approve,outcome=blocked}` 2,
/// `hubspot_edge_actions_blocked{portal}` 2). One is completed by a signed callback: once HubSpot
/// took it, `hubspot_edge_action_completions_total{outcome=completed}` is 1, the completion
/// latency histogram has one observation, the gauge reads 1 and the list holds only the other.
pub(crate) fn actions_blocked_listed_and_counted_in_metrics(_: &Fixture) -> Outcome {
    let lookup = LookupServer::start()?;
    let fx = start(
        "wrangler.actions-metrics.toml",
        &lookup,
        &[("ACTIONS_COMPLETE_WINDOW_MS", "500")],
    )?;
    let (_, _, _, ids) = publish(&fx)?;
    let definition = ids.get("approve").ok_or("no id for approve")?;
    let callback_ids = mock_of(&fx)?
        .enroll(
            &json!({"definitionId": definition, "objectType": "CONTACT", "objectId": "1",
                        "count": 2}),
        )
        .map_err(|e| e.to_string())?;
    check(callback_ids.len() == 2, || {
        format!("{} enrolled", callback_ids.len())
    })?;
    poll_until("both blocked", DEADLINE, POLL, || {
        let v = mock_of(&fx)
            .ok()?
            .workflow_executions(&format!("definitionId={definition}"));
        (v["counts"]["blocked"].as_u64() == Some(2)).then_some(())
    })?;
    let listed = |fx: &Fixture| -> Result<Vec<Value>, Failed> {
        let r = fx.admin_get(&format!("/admin/actions/executions/{PORTAL}"))?;
        check(r.status == 200, || {
            format!("list: {} {}", r.status, r.text())
        })?;
        let v = r.json()?;
        check(v["portalId"] == PORTAL && v["more"] == false, || {
            format!("list: {v}")
        })?;
        Ok(v["executions"].as_array().cloned().unwrap_or_default())
    };
    let items = listed(&fx)?;
    let mut seen: Vec<&str> = items
        .iter()
        .filter_map(|x| x["callbackId"].as_str())
        .collect();
    seen.sort_unstable();
    let mut want: Vec<&str> = callback_ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    check(seen == want, || format!("listed {items:?}, want {want:?}"))?;
    for x in &items {
        let keys: Vec<&String> = x
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        check(
            x["action"] == "approve"
                && x["state"] == "blocked"
                && x["expiresMs"].as_u64().is_some()
                && x["ageSecs"].as_u64().is_some()
                && keys.len() == 6,
            || format!("listed execution: {x}"),
        )?;
    }
    let blocked = format!("hubspot_edge_actions_blocked{{portal={PORTAL}}}");
    let executed = "hubspot_edge_action_executions_total{action=approve,outcome=blocked}";
    poll_until("the metrics to count the blocks", DEADLINE, POLL, || {
        let m = super::metrics::scrape(&fx).ok()?;
        (m.get(blocked.as_str()) == Some(&2.0) && m.get(executed) == Some(&2.0)).then_some(())
    })
    .map_err(|e| {
        let mut seen: Vec<String> = super::metrics::scrape(&fx)
            .map(|m| {
                m.into_iter()
                    .filter(|(k, _)| k.contains("action"))
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect()
            })
            .unwrap_or_default();
        seen.sort();
        format!("{e}; action series: {seen:?}")
    })?;

    let r = callback(
        &fx,
        &callback_ids[0],
        &json!({"outputs": {"approved_by": "metrics"}}),
        CALLBACK_SECRET,
    )?;
    check(r.status == 202, || {
        format!("callback: {} {}", r.status, r.text())
    })?;
    poll_until("HubSpot to take the completion", DEADLINE, POLL, || {
        let v = mock_of(&fx)
            .ok()?
            .workflow_executions(&format!("callbackId={}", callback_ids[0]));
        (v["executions"][0]["state"] == "completed").then_some(())
    })?;
    let completed = "hubspot_edge_action_completions_total{outcome=completed}";
    let latency = "hubspot_edge_action_completion_latency_seconds_count{}";
    let m = poll_until(
        "the metrics to count the completion",
        DEADLINE,
        POLL,
        || {
            let m = super::metrics::scrape(&fx).ok()?;
            (m.get(completed) == Some(&1.0) && m.get(blocked.as_str()) == Some(&1.0)).then_some(m)
        },
    )?;
    check(m.get(latency) == Some(&1.0), || {
        format!("{latency} = {:?}", m.get(latency))
    })?;
    let items = listed(&fx)?;
    check(
        items.len() == 1 && items[0]["callbackId"] == callback_ids[1].as_str(),
        || format!("after the completion: {items:?}"),
    )
}
