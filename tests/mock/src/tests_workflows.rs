//! The workflow engine for custom workflow actions (docs/hubspot.md §3), over real HTTP:
//! definitions, enrollments calling a tiny `actionUrl` server inside the test, the answers
//! honoured, retries, the completion endpoints and their errors. The v2 signature the mock sends is
//! checked with core's `Verifier` (an independent path from the signing: challenge + check).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubspot_edge_core::actions::ExecutionRequest;
use hubspot_edge_core::signature::{
    ClientSecret, LegacySignatures, SignatureVersion, SignedRequest, Verifier,
};
use serde_json::{json, Value};

use super::tests::{start, start_with_clock, TOKEN};
use super::workflows::{judge, parse_duration_ms, Answer, Verdict};
use super::{Clock as _, ManualClock, MockConfig, MockHubSpot, WorkflowConfig};
use crate::http::{request, HttpResponse};
use crate::server::{Request, Response, Server};

const KEY: &str = "dev-key-test";
const SECRET: &str = "wf-client-secret";
const APP: u64 = 1_160_452;
/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;

fn config(wf: WorkflowConfig) -> MockConfig {
    MockConfig {
        seed_contacts: 5,
        client_secret: SECRET.into(),
        workflows: WorkflowConfig {
            developer_api_key: KEY.into(),
            retry_base: Duration::from_millis(20),
            retry_cap: Duration::from_millis(100),
            ..wf
        },
        ..MockConfig::default()
    }
}

fn call(mock: &MockHubSpot, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    let auth = format!("Bearer {TOKEN}");
    request(
        method,
        &format!("{}{path}", mock.base_url()),
        &[
            ("content-type", "application/json"),
            ("authorization", auth.as_str()),
        ],
        bytes.as_deref(),
    )
    .unwrap()
}

fn defs(mock: &MockHubSpot, method: &str, rest: &str, body: Option<&Value>) -> HttpResponse {
    let sep = if rest.contains('?') { '&' } else { '?' };
    call(
        mock,
        method,
        &format!("/automation/v4/actions/{APP}{rest}{sep}hapikey={KEY}"),
        body,
    )
}

fn egg(action_url: &str) -> Value {
    json!({
        "actionUrl": action_url,
        "published": true,
        "objectTypes": ["CONTACT"],
        "objectRequestOptions": {"properties": ["email", "firstname"]},
        "inputFields": [
            {"typeDefinition": {"name": "staticInput", "type": "string", "fieldType": "text"},
             "supportedValueTypes": ["STATIC_VALUE"], "isRequired": true},
            {"typeDefinition": {"name": "optionalInput", "type": "string", "fieldType": "text"},
             "supportedValueTypes": ["STATIC_VALUE"], "isRequired": false}
        ],
        "outputFields": [{"typeDefinition": {"name": "greeting", "type": "string"}}],
        "labels": {"en": {"actionName": "Greet", "inputFieldLabels": {"staticInput": "Input"}}},
        "functions": []
    })
}

fn create(mock: &MockHubSpot, action_url: &str) -> String {
    let r = defs(mock, "POST", "", Some(&egg(action_url)));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json().unwrap()["id"].as_str().unwrap().to_owned()
}

fn enroll(mock: &MockHubSpot, body: &Value) -> Vec<String> {
    let r = call(mock, "POST", "/__mock/workflows/enroll", Some(body));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()["callbackIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_owned())
        .collect()
}

fn executions(mock: &MockHubSpot, query: &str) -> Value {
    let r = call(
        mock,
        "GET",
        &format!("/__mock/workflows/executions?{query}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()
}

fn execution(mock: &MockHubSpot, callback_id: &str) -> Value {
    executions(mock, &format!("callbackId={callback_id}"))["executions"][0].clone()
}

/// Polls the executions until `done` holds (deadline `secs`), returning the last answer.
fn wait_for(mock: &MockHubSpot, secs: u64, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let v = executions(mock, "");
        if done(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out; executions: {}",
            serde_json::to_string(&v["counts"]).unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn count(v: &Value, state: &str) -> u64 {
    v["counts"][state].as_u64().unwrap_or(0)
}

fn stats(mock: &MockHubSpot) -> Value {
    call(mock, "GET", "/__mock/stats", None).json().unwrap()["workflows"].clone()
}

/// What the test's `actionUrl` answers: `(status, headers, body, delay before answering)`.
type Reply = (u16, Vec<(&'static str, String)>, String, Duration);

/// A tiny `actionUrl` server: records every request, answers `answer(request, attempt)` where
/// `attempt` counts the requests seen for the request's `callbackId` (1 for the first).
struct ActionServer {
    server: Server,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl ActionServer {
    fn start(answer: impl Fn(&Value, u32) -> Reply + Send + Sync + 'static) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let attempts = Mutex::new(HashMap::<String, u32>::new());
        let log = Arc::clone(&seen);
        let server = Server::start("action-url", 0, true, move |req, responder| {
            let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
            let id = body["callbackId"].as_str().unwrap_or("").to_owned();
            let n = {
                let mut a = attempts.lock().unwrap();
                let n = a.entry(id).or_default();
                *n += 1;
                *n
            };
            log.lock().unwrap().push(req.clone());
            let (status, headers, text, delay) = answer(&body, n);
            if !delay.is_zero() && !responder.pause(delay) {
                return;
            }
            let mut headers = headers;
            headers.push(("content-type", "application/json".into()));
            let _ = responder.send(&Response {
                status,
                headers,
                body: text.into_bytes(),
            });
        })
        .unwrap();
        Self { server, seen }
    }

    fn url(&self) -> String {
        format!("http://{}/actions/greet?mode=test", self.server.addr())
    }

    fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

fn ok(body: Value) -> Reply {
    (200, Vec::new(), body.to_string(), Duration::ZERO)
}

fn header_map(req: &Request) -> ::http::HeaderMap {
    let mut headers = ::http::HeaderMap::new();
    for (k, v) in &req.headers {
        headers.append(
            ::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            ::http::HeaderValue::from_str(v).unwrap(),
        );
    }
    headers
}

#[test]
fn definitions_need_the_developer_key_validate_page_and_count_writes() {
    let mock = start(config(WorkflowConfig::default()));
    // No key, a wrong key: 401 in HubSpot's error shape.
    let r = call(&mock, "GET", &format!("/automation/v4/actions/{APP}"), None);
    assert_eq!(r.status, 401);
    assert_eq!(r.json().unwrap()["category"], "INVALID_AUTHENTICATION");
    let r = call(
        &mock,
        "GET",
        &format!("/automation/v4/actions/{APP}?hapikey=nope"),
        None,
    );
    assert_eq!(r.status, 401);
    // Required fields of PublicActionDefinitionEgg, named.
    let mut body = egg("http://127.0.0.1:9/x");
    body.as_object_mut().unwrap().remove("actionUrl");
    body.as_object_mut().unwrap().remove("published");
    let r = defs(&mock, "POST", "", Some(&body));
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json().unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["category"], "VALIDATION_ERROR");
    assert!(v["correlationId"].as_str().is_some());
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("PublicActionDefinitionEgg") && msg.contains("actionUrl, published"));
    assert_eq!(v["errors"][0]["in"], "actionUrl");
    let mut body = egg("http://127.0.0.1:9/x");
    body["published"] = json!("yes");
    let r = defs(&mock, "POST", "", Some(&body));
    assert_eq!(r.status, 400);
    assert_eq!(r.json().unwrap()["errors"][0]["in"], "published");
    let mut body = egg("http://127.0.0.1:9/x");
    body["labels"] = json!({"fr": {"actionName": "Saluer"}});
    assert_eq!(defs(&mock, "POST", "", Some(&body)).status, 400);
    // Created: ids and revisions as HubSpot gives them (strings).
    let mut body = egg("http://127.0.0.1:9/x");
    body["functions"] = json!([{"functionType": "PRE_ACTION_EXECUTION", "functionSource": "x"}]);
    let r = defs(&mock, "POST", "", Some(&body));
    assert_eq!(r.status, 201);
    let first = r.json().unwrap();
    assert_eq!(first["id"], "10646377");
    assert_eq!(first["revisionId"], "1");
    assert_eq!(
        first["functions"],
        json!([{"functionType": "PRE_ACTION_EXECUTION", "id": "0"}])
    );
    assert_eq!(first["labels"]["en"]["actionName"], "Greet");
    let second = create(&mock, "http://127.0.0.1:9/y");
    let third = create(&mock, "http://127.0.0.1:9/z");
    // Paged list: results + paging.next.after.
    let page = defs(&mock, "GET", "?limit=2", None).json().unwrap();
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    let after = page["paging"]["next"]["after"].as_str().unwrap().to_owned();
    let page = defs(&mock, "GET", &format!("?limit=2&after={after}"), None)
        .json()
        .unwrap();
    assert_eq!(page["results"][0]["id"], json!(third));
    assert!(page.get("paging").is_none());
    // Another app's definitions are not this app's.
    let r = call(
        &mock,
        "GET",
        &format!("/automation/v4/actions/999/{second}?hapikey={KEY}"),
        None,
    );
    assert_eq!(r.status, 404);
    // PATCH: a new revision; reads are not writes.
    let before = stats(&mock)["definitions"]["writes"].as_u64().unwrap();
    assert_eq!(before, 3);
    let r = defs(
        &mock,
        "PATCH",
        &format!("/{second}"),
        Some(&json!({"actionUrl": "http://127.0.0.1:9/y2"})),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json().unwrap()["revisionId"], "2");
    assert_eq!(r.json().unwrap()["actionUrl"], "http://127.0.0.1:9/y2");
    assert_eq!(r.json().unwrap()["published"], true);
    let r = defs(&mock, "GET", &format!("/{second}"), None);
    assert_eq!(r.json().unwrap()["revisionId"], "2");
    let s = stats(&mock)["definitions"].clone();
    assert_eq!(s["writes"], 4);
    assert_eq!(s["updates"], 1);
    assert_eq!(s["reads"], 3);
    // DELETE archives: gone from reads and the list, there with archived=true.
    assert_eq!(
        defs(&mock, "DELETE", &format!("/{third}"), None).status,
        204
    );
    assert_eq!(defs(&mock, "GET", &format!("/{third}"), None).status, 404);
    let r = defs(&mock, "GET", &format!("/{third}?archived=true"), None);
    assert_eq!(r.status, 200);
    assert!(r.json().unwrap()["archivedAt"].as_u64().is_some());
    let page = defs(&mock, "GET", "", None).json().unwrap();
    assert_eq!(page["results"].as_array().unwrap().len(), 2);
    assert_eq!(stats(&mock)["definitions"]["deletes"], 1);
    // The date-versioned form (§3.1) is the same API.
    let r = call(
        &mock,
        "GET",
        &format!("/automation/actions/2026-03/{APP}/{second}?hapikey={KEY}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().unwrap()["revisionId"], "2");
    let r = call(
        &mock,
        "GET",
        &format!("/automation/actions/latest/{APP}/{second}?hapikey={KEY}"),
        None,
    );
    assert_eq!(r.status, 404, "not a definitions path: {}", r.text());
}

#[test]
fn enrollment_posts_the_documented_request_signed_v2_and_success_completes() {
    let action = ActionServer::start(|_, _| {
        ok(json!({"outputFields": {"greeting": "hello", "hs_execution_state": "SUCCESS"}}))
    });
    let mock = start(config(WorkflowConfig::default()));
    let def = create(&mock, &action.url());
    let ids = enroll(
        &mock,
        &json!({"definitionId": def, "objectType": "CONTACT", "objectId": "1",
                "inputFields": {"staticInput": "My Static Input"}, "workflowId": 555}),
    );
    assert_eq!(ids.len(), 1);
    assert!(
        ids[0].starts_with("ap-33-") && ids[0].ends_with("-7-0"),
        "{}",
        ids[0]
    );
    let v = wait_for(&mock, 10, |v| count(v, "completed") == 1);
    let e = &v["executions"][0];
    assert_eq!(e["executionState"], "SUCCESS");
    assert_eq!(e["outputs"], json!({"greeting": "hello"}));
    assert_eq!(e["attempts"], 1);
    assert_eq!(e["finishedBy"], "response");
    assert_eq!(e["history"][0]["status"], 200);
    assert_eq!(
        e["history"][0]["body"]["outputFields"]["hs_execution_state"],
        "SUCCESS"
    );

    let seen = action.requests();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("x-hubspot-signature-version"), Some("v2"));
    assert_eq!(req.header("x-hubspot-signature-v3"), None);
    assert_eq!(req.header("x-hubspot-request-timestamp"), None);
    let headers = header_map(req);
    let uri = format!("http://{}{}", action.server.addr(), req.target);
    assert_eq!(uri, action.url());
    let signed = SignedRequest {
        method: "POST",
        uri: &uri,
        headers: &headers,
        body: &req.body,
    };
    let verifier = Verifier::new(ClientSecret::new(SECRET)).with_legacy(LegacySignatures::Accept);
    assert_eq!(verifier.verify(&signed, 0).unwrap(), SignatureVersion::V2);
    // Another secret, another URI or another body does not verify.
    let wrong = Verifier::new(ClientSecret::new("other")).with_legacy(LegacySignatures::Accept);
    assert!(wrong.verify(&signed, 0).is_err());
    let other_uri = uri.replace("mode=test", "mode=prod");
    assert!(verifier
        .verify(
            &SignedRequest {
                uri: &other_uri,
                ..signed
            },
            0
        )
        .is_err());

    // The documented body (docs/hubspot.md §3.2), read by core's parser.
    let parsed = ExecutionRequest::parse(&req.body).unwrap();
    assert_eq!(parsed.callback_id, ids[0]);
    assert_eq!(parsed.origin.portal_id.get(), 33);
    assert_eq!(
        parsed.origin.action_definition_id,
        def.parse::<u64>().unwrap()
    );
    assert_eq!(parsed.origin.action_definition_version, Some(1));
    assert_eq!(parsed.context.workflow_id, Some(555));
    assert_eq!(parsed.object.object_id, "1");
    assert_eq!(parsed.object.object_type, "CONTACT");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["context"]["source"], "WORKFLOWS");
    assert_eq!(body["context"]["actionId"], 7);
    assert!(body["context"]["actionExecutionIndexIdentifier"]["enrollmentId"].is_u64());
    assert_eq!(
        body["context"]["actionExecutionIndexIdentifier"]["actionExecutionIndex"],
        0
    );
    // Only the properties of objectRequestOptions.
    let props = body["object"]["properties"].as_object().unwrap();
    let mut names: Vec<&str> = props.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["email", "firstname"]);
    // Seeded contact id 1 is `contact0@example.com`.
    assert_eq!(props["email"], "contact0@example.com");
    assert_eq!(
        body["inputFields"],
        json!({"staticInput": "My Static Input"})
    );
    assert_eq!(body["fields"], body["inputFields"]);
    assert_eq!(
        body["typedInputs"],
        json!({"staticInput": {"value": "My Static Input", "type": "STRING"}})
    );
    let s = stats(&mock);
    assert_eq!(s["enrollments"], 1);
    assert_eq!(s["attempts"], 1);

    // HubSpot's retry of the same execution (an answer it lost): the same bytes, signature and
    // callbackId again; the answer is reported, the state stays.
    let r = call(
        &mock,
        "POST",
        "/__mock/workflows/redeliver",
        Some(&json!({"callbackId": ids[0]})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json().unwrap();
    assert_eq!(v["status"], 200);
    assert_eq!(v["body"]["outputFields"]["greeting"], "hello");
    let seen = action.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].body, seen[0].body);
    assert_eq!(
        seen[1].header("x-hubspot-signature"),
        seen[0].header("x-hubspot-signature")
    );
    let e = execution(&mock, &ids[0]);
    assert_eq!(e["state"], "completed");
    assert_eq!(e["attempts"], 2);
    assert_eq!(e["history"][1]["outcome"], "redelivery (state unchanged)");
    let r = call(
        &mock,
        "POST",
        "/__mock/workflows/redeliver",
        Some(&json!({"callbackId": "ap-0-0-0-0"})),
    );
    assert_eq!(r.status, 404);
}

#[test]
fn enrollment_is_refused_when_a_workflow_could_not_use_the_action() {
    let mock = start(config(WorkflowConfig::default()));
    let def = create(&mock, "http://127.0.0.1:9/x");
    let refused = |body: Value, status: u16, text: &str| {
        let r = call(&mock, "POST", "/__mock/workflows/enroll", Some(&body));
        assert_eq!(r.status, status, "{}", r.text());
        assert!(r.text().contains(text), "{}", r.text());
    };
    let base = json!({"definitionId": def, "objectType": "contacts", "objectId": 1,
                      "inputFields": {"staticInput": "x"}});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    refused(
        with("inputFields", json!({})),
        400,
        "staticInput is missing",
    );
    refused(
        with("inputFields", json!({"staticInput": "x", "nope": 1})),
        400,
        "nope is not declared",
    );
    refused(
        with("objectType", json!("DEAL")),
        400,
        "does not accept DEAL",
    );
    refused(with("objectId", json!(999_999)), 404, "no CONTACT 999999");
    refused(with("definitionId", json!("1")), 404, "no definition");
    let r = defs(
        &mock,
        "PATCH",
        &format!("/{def}"),
        Some(&json!({"published": false})),
    );
    assert_eq!(r.status, 200);
    refused(base.clone(), 400, "not published");
    assert_eq!(stats(&mock)["enrollments"], 0);
}

#[test]
fn block_waits_for_completions_and_expires_on_the_mock_clock() {
    let action = ActionServer::start(|body, _| {
        if body["inputFields"]["optionalInput"] == "default" {
            ok(json!({"outputFields": {"hs_execution_state": "BLOCK"}}))
        } else {
            ok(json!({"outputFields": {"hs_execution_state": "BLOCK",
                                       "hs_expiration_duration": "PT1H"}}))
        }
    });
    let clock = Arc::new(ManualClock::new(T0));
    let mock = start_with_clock(config(WorkflowConfig::default()), clock.clone());
    let def = create(&mock, &action.url());
    let ids = enroll(
        &mock,
        &json!({"definitionId": def, "objectType": "0-1", "objectIds": [1, 2], "count": 2,
                "inputFields": {"staticInput": "x"}}),
    );
    assert_eq!(ids.len(), 4);
    let default = enroll(
        &mock,
        &json!({"definitionId": def, "objectType": "CONTACT", "objectId": 3,
                "inputFields": {"staticInput": "x", "optionalInput": "default"}}),
    );
    wait_for(&mock, 10, |v| count(v, "blocked") == 5);
    assert_eq!(execution(&mock, &ids[0])["expiresAt"], T0 + 3_600_000);
    // No hs_expiration_duration: one week.
    assert_eq!(
        execution(&mock, &default[0])["expiresAt"],
        T0 + 7 * 24 * 3_600_000
    );

    // Single completion: 204, then the documented error shape for a second one.
    let path = |id: &str| format!("/automation/v4/actions/callbacks/{id}/complete");
    let done = json!({"outputFields": {"hs_execution_state": "SUCCESS", "greeting": "hi"},
                      "typedOutputs": {"greeting": "hi"}});
    let r = call(&mock, "POST", &path(&ids[0]), Some(&done));
    assert_eq!(r.status, 204, "{}", r.text());
    let e = execution(&mock, &ids[0]);
    assert_eq!(e["state"], "completed");
    assert_eq!(e["executionState"], "SUCCESS");
    assert_eq!(e["outputs"], json!({"greeting": "hi"}));
    assert_eq!(e["typedOutputs"], json!({"greeting": "hi"}));
    assert_eq!(e["finishedBy"], "callback");
    let r = call(&mock, "POST", &path(&ids[0]), Some(&done));
    assert_eq!(r.status, 409);
    let v = r.json().unwrap();
    assert_eq!(v["status"], "error");
    assert_eq!(v["category"], "CONFLICT");
    assert!(v["message"].as_str().unwrap().contains("already completed"));
    assert!(v["correlationId"].as_str().is_some());
    let r = call(&mock, "POST", &path("ap-33-1-7-0"), Some(&done));
    assert_eq!(r.status, 404);
    assert_eq!(r.json().unwrap()["category"], "OBJECT_NOT_FOUND");
    // A completion cannot block again, must name a state, must carry typedOutputs (on the
    // date-versioned path: tests below for the v4 one).
    let dated = |id: &str| format!("/automation/actions/callbacks/2026-03/{id}/complete");
    let r = call(
        &mock,
        "POST",
        &dated(&ids[1]),
        Some(&json!({"outputFields": {"hs_execution_state": "SUCCESS"}})),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("typedOutputs"), "{}", r.text());
    for (body, named) in [
        (
            json!({"outputFields": {"hs_execution_state": "BLOCK"}, "typedOutputs": {}}),
            "hs_execution_state",
        ),
        (
            json!({"outputFields": {}, "typedOutputs": {}}),
            "hs_execution_state",
        ),
        (
            json!({"outputFields": "SUCCESS", "typedOutputs": {}}),
            "outputFields",
        ),
    ] {
        let r = call(&mock, "POST", &path(&ids[1]), Some(&body));
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.json().unwrap()["category"], "VALIDATION_ERROR");
        assert!(r.text().contains(named), "{}", r.text());
    }
    assert_eq!(execution(&mock, &ids[1])["state"], "blocked");

    // Batch completion: all or nothing; FAIL_CONTINUE is a completion too.
    let batch = |inputs: Value| {
        call(
            &mock,
            "POST",
            "/automation/v4/actions/callbacks/complete",
            Some(&json!({ "inputs": inputs })),
        )
    };
    let input = |id: &str, state: &str| {
        json!({"callbackId": id, "outputFields": {"hs_execution_state": state},
               "typedOutputs": {}})
    };
    let r = batch(json!([
        input(&ids[1], "SUCCESS"),
        input("ap-33-1-7-0", "SUCCESS")
    ]));
    assert_eq!(r.status, 400);
    let v = r.json().unwrap();
    assert_eq!(v["errors"].as_array().unwrap().len(), 1);
    assert_eq!(v["errors"][0]["context"]["callbackId"][0], "ap-33-1-7-0");
    assert_eq!(execution(&mock, &ids[1])["state"], "blocked");
    let r = batch(json!([input(&ids[1], "SUCCESS")]));
    assert_eq!(r.status, 204, "{}", r.text());
    // The date-versioned batch path (§3.4) is the same endpoint.
    let r = call(
        &mock,
        "POST",
        "/automation/actions/callbacks/2026-03/complete",
        Some(&json!({"inputs": [input(&ids[2], "FAIL_CONTINUE")]})),
    );
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(execution(&mock, &ids[2])["executionState"], "FAIL_CONTINUE");
    assert_eq!(execution(&mock, &ids[2])["finishedBy"], "batchCallback");

    // One millisecond short of the hour: still blocked; then expired, and refused.
    clock.advance(Duration::from_millis(3_599_999));
    assert_eq!(execution(&mock, &ids[3])["state"], "blocked");
    clock.advance(Duration::from_millis(1));
    let e = execution(&mock, &ids[3]);
    assert_eq!(e["state"], "expired");
    assert_eq!(e["finishedBy"], "expiry");
    let r = call(&mock, "POST", &path(&ids[3]), Some(&done));
    assert_eq!(r.status, 409);
    assert!(r.text().contains("expired"));
    // The week-long block is still waiting; the HTTP clock endpoint moves time on too.
    assert_eq!(execution(&mock, &default[0])["state"], "blocked");
    let r = call(
        &mock,
        "POST",
        "/__mock/clock",
        Some(&json!({"advanceMs": 7 * 24 * 3_600_000u64})),
    );
    assert_eq!(
        r.json().unwrap()["nowMs"],
        clock.now_ms() + 7 * 24 * 3_600_000
    );
    assert_eq!(execution(&mock, &default[0])["state"], "expired");

    let s = stats(&mock)["completions"].clone();
    assert_eq!(s["singleCalls"], 8);
    assert_eq!(s["batchCalls"], 3);
    assert_eq!(s["calls"], 11);
    assert_eq!(s["inputs"], 12);
    assert_eq!(s["applied"], 3);
}

#[test]
fn a_forged_enrollment_is_signed_with_another_secret_and_a_401_fails_it() {
    let action = ActionServer::start(|body, _| {
        // A receiver that checks the signature would answer this; the test checks it below.
        if body["inputFields"]["staticInput"] == "forged" {
            (
                401,
                Vec::new(),
                json!({"message": "bad signature"}).to_string(),
                Duration::ZERO,
            )
        } else {
            ok(json!({"outputFields": {"hs_execution_state": "SUCCESS"}}))
        }
    });
    let mock = start(config(WorkflowConfig::default()));
    let def = create(&mock, &action.url());
    let forged = enroll(
        &mock,
        &json!({"definitionId": def, "objectType": "CONTACT", "objectId": 1,
                "inputFields": {"staticInput": "forged"}, "signingSecret": "not-the-app-secret"}),
    );
    let genuine = enroll(
        &mock,
        &json!({"definitionId": def, "objectType": "CONTACT", "objectId": 1,
                "inputFields": {"staticInput": "genuine"}}),
    );
    wait_for(&mock, 10, |v| {
        count(v, "completed") + count(v, "failed") == 2
    });
    let e = execution(&mock, &forged[0]);
    assert_eq!(e["state"], "failed");
    assert_eq!(e["attempts"], 1);
    assert_eq!(e["reason"], "status 401");
    assert_eq!(execution(&mock, &genuine[0])["state"], "completed");
    let verifier = Verifier::new(ClientSecret::new(SECRET)).with_legacy(LegacySignatures::Accept);
    let uri = action.url();
    for req in action.requests() {
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        let headers = header_map(&req);
        let signed = SignedRequest {
            method: "POST",
            uri: &uri,
            headers: &headers,
            body: &req.body,
        };
        let verified = verifier.verify(&signed, 0);
        if body["callbackId"] == json!(forged[0]) {
            assert!(verified.is_err(), "the forged request verified");
            let other = Verifier::new(ClientSecret::new("not-the-app-secret"))
                .with_legacy(LegacySignatures::Accept);
            assert!(other.verify(&signed, 0).is_ok());
        } else {
            assert!(verified.is_ok());
        }
    }
    // A redelivery of the forged execution is forged too (through the library this time).
    assert_eq!(mock.redeliver(&forged[0]).unwrap()["status"], 401);
    assert_eq!(mock.redeliver(&genuine[0]).unwrap()["status"], 200);
    assert!(mock.redeliver("ap-0-0-0-0").is_err());
}

#[test]
fn typed_outputs_are_required_where_the_specification_requires_them() {
    let action =
        ActionServer::start(|_, _| ok(json!({"outputFields": {"hs_execution_state": "BLOCK"}})));
    let bare = json!({"outputFields": {"hs_execution_state": "SUCCESS", "score": "7"}});
    for strict in [false, true] {
        let mock = start(config(WorkflowConfig {
            require_typed_outputs: strict,
            ..WorkflowConfig::default()
        }));
        let def = create(&mock, &action.url());
        let ids = enroll(
            &mock,
            &json!({"definitionId": def, "objectType": "CONTACT", "objectId": 1, "count": 2,
                    "inputFields": {"staticInput": "x"}}),
        );
        wait_for(&mock, 10, |v| count(v, "blocked") == 2);
        // The 2026-03 specification requires typedOutputs: always refused there.
        let r = call(
            &mock,
            "POST",
            &format!("/automation/actions/callbacks/2026-03/{}/complete", ids[0]),
            Some(&bare),
        );
        assert_eq!(r.status, 400, "strict {strict}: {}", r.text());
        // The v4 specification requires only outputFields (what the official clients send).
        let r = call(
            &mock,
            "POST",
            &format!("/automation/v4/actions/callbacks/{}/complete", ids[0]),
            Some(&bare),
        );
        let inputs =
            json!({"inputs": [{"callbackId": ids[1], "outputFields": bare["outputFields"]}]});
        let batch = call(
            &mock,
            "POST",
            "/automation/v4/actions/callbacks/complete",
            Some(&inputs),
        );
        if strict {
            assert_eq!(r.status, 400, "{}", r.text());
            assert!(r.text().contains("typedOutputs"));
            assert_eq!(batch.status, 400, "{}", batch.text());
            assert_eq!(count(&executions(&mock, ""), "blocked"), 2);
        } else {
            assert_eq!(r.status, 204, "{}", r.text());
            assert_eq!(batch.status, 204, "{}", batch.text());
            let e = execution(&mock, &ids[0]);
            assert_eq!(e["outputs"], json!({"score": "7"}));
            assert_eq!(e["typedOutputs"], Value::Null);
        }
    }
}

#[test]
fn retries_429_5xx_and_timeouts_with_backoff_and_fails_on_4xx() {
    let action = ActionServer::start(|body, attempt| {
        let mode = body["inputFields"]["staticInput"].as_str().unwrap_or("");
        match (mode, attempt) {
            ("flaky", 1) => (503, Vec::new(), String::new(), Duration::ZERO),
            ("flaky", 2) => (
                429,
                vec![("retry-after", "150".into())],
                String::new(),
                Duration::ZERO,
            ),
            // A 200 whose body is not an answer at all: HubSpot counts it a success.
            ("flaky", _) => (200, Vec::new(), "<html>ok</html>".into(), Duration::ZERO),
            ("slow", 1) => (200, Vec::new(), "{}".into(), Duration::from_millis(2_500)),
            ("slow", _) => ok(
                json!({"outputFields": {"hs_execution_state": "FAIL_CONTINUE",
                                                      "why": "no match"}}),
            ),
            ("bad", _) => (
                400,
                Vec::new(),
                json!({"message": "bad input"}).to_string(),
                Duration::ZERO,
            ),
            _ => (500, Vec::new(), String::new(), Duration::ZERO),
        }
    });
    let mock = start(config(WorkflowConfig {
        // Long enough that a loaded machine does not time out the quick answers.
        timeout: Duration::from_millis(1_000),
        max_attempts: 3,
        ..WorkflowConfig::default()
    }));
    let def = create(&mock, &action.url());
    let one = |mode: &str| {
        enroll(
            &mock,
            &json!({"definitionId": def, "objectType": "CONTACT", "objectId": 1,
                    "inputFields": {"staticInput": mode}}),
        )
        .remove(0)
    };
    let flaky = one("flaky");
    let slow = one("slow");
    let bad = one("bad");
    let down = one("down");
    wait_for(&mock, 20, |v| {
        count(v, "completed") + count(v, "failed") == 4
    });

    let e = execution(&mock, &flaky);
    assert_eq!(e["state"], "completed");
    assert_eq!(e["executionState"], "SUCCESS");
    assert_eq!(e["outputs"], json!({}));
    assert_eq!(e["attempts"], 3);
    let statuses: Vec<Value> = e["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].clone())
        .collect();
    assert_eq!(statuses, [json!(503), json!(429), json!(200)]);
    assert_eq!(e["history"][2]["body"], "<html>ok</html>");
    // Exponential backoff from the base (20 ms) after the 5xx; Retry-After (ms) after the 429.
    assert_eq!(e["history"][0]["retryInMs"], 20);
    assert_eq!(e["history"][1]["retryInMs"], 150);

    let e = execution(&mock, &slow);
    assert_eq!(e["history"][0]["error"], "timeout");
    assert_eq!(e["history"][0]["outcome"], "retry");
    assert_eq!(e["executionState"], "FAIL_CONTINUE");
    assert_eq!(e["outputs"], json!({"why": "no match"}));

    let e = execution(&mock, &bad);
    assert_eq!(e["state"], "failed");
    assert_eq!(e["attempts"], 1);
    assert_eq!(e["reason"], "status 400");

    let e = execution(&mock, &down);
    assert_eq!(e["state"], "failed");
    assert_eq!(e["attempts"], 3);
    assert_eq!(e["finishedBy"], "retriesExhausted");
    assert_eq!(e["history"][1]["retryInMs"], 40);
}

#[test]
fn completions_spend_the_burst_budget_and_batches_hold_at_most_100() {
    let action =
        ActionServer::start(|_, _| ok(json!({"outputFields": {"hs_execution_state": "BLOCK"}})));
    let mock = MockHubSpot::start(MockConfig {
        token: TOKEN.into(),
        burst: 3,
        ..config(WorkflowConfig::default())
    })
    .unwrap();
    let def = create(&mock, &action.url());
    let ids = enroll(
        &mock,
        &json!({"definitionId": def, "objectType": "CONTACT", "objectId": 1, "count": 3,
                "inputFields": {"staticInput": "x"}}),
    );
    wait_for(&mock, 10, |v| count(v, "blocked") == 3);
    let inputs: Vec<Value> = (0..101)
        .map(|i| {
            json!({"callbackId": format!("ap-33-{i}-7-0"),
                        "outputFields": {"hs_execution_state": "SUCCESS"}, "typedOutputs": {}})
        })
        .collect();
    let r = call(
        &mock,
        "POST",
        "/automation/v4/actions/callbacks/complete",
        Some(&json!({ "inputs": inputs })),
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("at most 100"), "{}", r.text());
    assert!(r.header("x-hubspot-ratelimit-remaining").is_some());
    let done = json!({"outputFields": {"hs_execution_state": "SUCCESS"}, "typedOutputs": {}});
    for id in &ids[..2] {
        let r = call(
            &mock,
            "POST",
            &format!("/automation/v4/actions/callbacks/{id}/complete"),
            Some(&done),
        );
        assert_eq!(r.status, 204);
    }
    // The fourth call in the window: the normal 429, nothing completed.
    let r = call(
        &mock,
        "POST",
        &format!("/automation/v4/actions/callbacks/{}/complete", ids[2]),
        Some(&done),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.json().unwrap()["policyName"], "TEN_SECONDLY_ROLLING");
    assert_eq!(execution(&mock, &ids[2])["state"], "blocked");
    // Completions need the bearer token like any API call.
    let r = request(
        "POST",
        &format!(
            "{}/automation/v4/actions/callbacks/{}/complete",
            mock.base_url(),
            ids[2]
        ),
        &[("content-type", "application/json")],
        Some(done.to_string().as_bytes()),
    )
    .unwrap();
    assert_eq!(r.status, 401);
}

#[test]
fn a_burst_of_1000_enrollments_blocks_and_completes_in_10_batch_calls() {
    let action = ActionServer::start(|_, _| {
        ok(
            json!({"outputFields": {"hs_execution_state": "BLOCK", "hs_expiration_duration": "P1D"}}),
        )
    });
    let mock = start(config(WorkflowConfig::default()));
    let def = create(&mock, &action.url());
    let started = Instant::now();
    let ids = enroll(
        &mock,
        &json!({"definitionId": def, "objectType": "CONTACT", "objectIds": [1, 2, 3, 4, 5],
                "count": 200, "inputFields": {"staticInput": "x"}}),
    );
    assert_eq!(ids.len(), 1_000);
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), 1_000);
    wait_for(&mock, 60, |v| count(v, "blocked") == 1_000);
    let blocked_in = started.elapsed();
    for chunk in ids[..900].chunks(100) {
        let inputs: Vec<Value> = chunk
            .iter()
            .map(|id| {
                json!({"callbackId": id, "outputFields": {"hs_execution_state": "SUCCESS"},
                            "typedOutputs": {}})
            })
            .collect();
        let r = call(
            &mock,
            "POST",
            "/automation/v4/actions/callbacks/complete",
            Some(&json!({ "inputs": inputs })),
        );
        assert_eq!(r.status, 204, "{}", r.text());
    }
    let v = executions(&mock, "state=completed");
    assert_eq!(v["executions"].as_array().unwrap().len(), 900);
    assert_eq!(count(&v, "blocked"), 100);
    // The rest expire a day later (the clock endpoint on the system clock).
    let r = call(
        &mock,
        "POST",
        "/__mock/clock",
        Some(&json!({"advanceMs": 86_400_000u64})),
    );
    assert_eq!(r.status, 200);
    let v = executions(&mock, "");
    assert_eq!(count(&v, "expired"), 100);
    assert_eq!(count(&v, "completed"), 900);
    let s = stats(&mock);
    assert_eq!(s["attempts"], 1_000);
    assert_eq!(s["completions"]["batchCalls"], 9);
    assert_eq!(s["completions"]["inputs"], 900);
    assert_eq!(action.requests().len(), 1_000);
    eprintln!("1,000 enrollments blocked in {blocked_in:?}");
}

#[test]
fn v3_headers_are_sent_only_when_configured() {
    let action = ActionServer::start(|_, _| ok(json!({})));
    let clock = Arc::new(ManualClock::new(T0));
    let mock = start_with_clock(
        config(WorkflowConfig {
            sign_v3: true,
            ..WorkflowConfig::default()
        }),
        clock,
    );
    let def = create(&mock, &action.url());
    // Through the library this time (what an e2e test holding the mock calls).
    let ids = mock
        .enroll(
            &json!({"definitionId": def, "objectType": "CONTACT", "objectId": 2,
                        "inputFields": {"staticInput": "x"}}),
        )
        .unwrap();
    wait_for(&mock, 10, |v| count(v, "completed") == 1);
    let v = mock.workflow_executions(&format!("callbackId={}", ids[0]));
    assert_eq!(v["executions"][0]["state"], "completed");
    assert_eq!(v["nowMs"], T0);
    mock.advance_clock(Duration::from_secs(1));
    assert_eq!(mock.workflow_executions("")["nowMs"], T0 + 1_000);
    assert_eq!(mock.developer_api_key(), KEY);
    let refused = mock
        .enroll(&json!({"definitionId": def, "objectType": "DEAL", "objectId": 2}))
        .unwrap_err();
    assert!(
        refused.message().contains("does not accept DEAL"),
        "{refused}"
    );
    let req = &action.requests()[0];
    assert_eq!(
        req.header("x-hubspot-request-timestamp"),
        Some("1767225600000")
    );
    let headers = header_map(req);
    let uri = action.url();
    let signed = SignedRequest {
        method: "POST",
        uri: &uri,
        headers: &headers,
        body: &req.body,
    };
    // Judged by v3 alone (the default verifier refuses v1/v2), within its window.
    let verifier = Verifier::new(ClientSecret::new(SECRET));
    assert_eq!(verifier.verify(&signed, T0).unwrap(), SignatureVersion::V3);
    assert_eq!(req.header("x-hubspot-signature-version"), Some("v2"));
}

#[test]
fn answers_are_judged_as_the_guide_says() {
    let config = WorkflowConfig {
        retry_base: Duration::from_millis(200),
        retry_cap: Duration::from_secs(1),
        ..WorkflowConfig::default()
    };
    let http = |status: u16, retry_after: Option<&str>, body: &'static str| Answer::Http {
        status,
        retry_after: retry_after.map(str::to_owned),
        body: body.as_bytes(),
    };
    let complete = |state: &str, outputs: Value| Verdict::Complete {
        state: state.into(),
        outputs: outputs.as_object().unwrap().clone(),
    };
    let ms = Duration::from_millis;
    let cases: Vec<(Answer<'_>, u32, Verdict)> = vec![
        (
            http(
                200,
                None,
                r#"{"outputFields":{"a":"1","hs_execution_state":"SUCCESS"}}"#,
            ),
            1,
            complete("SUCCESS", json!({"a": "1"})),
        ),
        (
            http(
                200,
                None,
                r#"{"outputFields":{"hs_execution_state":"FAIL_CONTINUE"}}"#,
            ),
            1,
            complete("FAIL_CONTINUE", json!({})),
        ),
        // A 4xx carrying a state: the state decides.
        (
            http(
                400,
                None,
                r#"{"outputFields":{"hs_execution_state":"FAIL_CONTINUE"}}"#,
            ),
            1,
            complete("FAIL_CONTINUE", json!({})),
        ),
        (http(204, None, ""), 1, complete("SUCCESS", json!({}))),
        (
            http(200, None, "not json"),
            1,
            complete("SUCCESS", json!({})),
        ),
        (
            http(
                200,
                None,
                r#"{"outputFields":{"hs_execution_state":"BLOCK"}}"#,
            ),
            1,
            Verdict::Block {
                expires_in_ms: 604_800_000,
            },
        ),
        (
            http(
                200,
                None,
                r#"{"outputFields":{"hs_execution_state":"BLOCK","hs_expiration_duration":"P1WT1H"}}"#,
            ),
            1,
            Verdict::Block {
                expires_in_ms: 608_400_000,
            },
        ),
        (
            http(
                200,
                None,
                r#"{"outputFields":{"hs_execution_state":"BLOCK","hs_expiration_duration":"1 week"}}"#,
            ),
            1,
            Verdict::Fail("hs_expiration_duration \"1 week\" is not an ISO-8601 duration".into()),
        ),
        (
            http(
                200,
                None,
                r#"{"outputFields":{"hs_execution_state":"ASYNC"}}"#,
            ),
            1,
            Verdict::Fail("ASYNC is not modelled by the mock".into()),
        ),
        (http(404, None, ""), 1, Verdict::Fail("status 404".into())),
        (http(429, Some("1500"), ""), 1, Verdict::Retry(ms(1_500))),
        (http(429, None, ""), 2, Verdict::Retry(ms(400))),
        // 5xx retried whatever the body says.
        (
            http(
                503,
                None,
                r#"{"outputFields":{"hs_execution_state":"SUCCESS"}}"#,
            ),
            1,
            Verdict::Retry(ms(200)),
        ),
        (http(500, None, ""), 3, Verdict::Retry(ms(800))),
        (http(500, None, ""), 9, Verdict::Retry(ms(1_000))),
        (Answer::Timeout, 2, Verdict::Retry(ms(400))),
        (Answer::Unreachable, 1, Verdict::Retry(ms(200))),
    ];
    for (answer, attempts, expected) in cases {
        assert_eq!(judge(&answer, &config, attempts), expected, "{answer:?}");
    }
    let seconds = WorkflowConfig {
        retry_after_in_seconds: true,
        ..config
    };
    assert_eq!(
        judge(&http(429, Some("2"), ""), &seconds, 1),
        Verdict::Retry(Duration::from_secs(2))
    );
}

#[test]
fn iso_durations() {
    for (text, ms) in [
        ("P1W", Some(604_800_000)),
        ("P1WT1H", Some(608_400_000)),
        ("PT30S", Some(30_000)),
        ("PT0.5S", Some(500)),
        ("P2DT3M", Some(172_980_000)),
        ("P1M", Some(2_592_000_000)),
        ("P", None),
        ("PT", None),
        ("P1H", None),
        ("PT1D", None),
        ("P1D1W", None),
        ("1W", None),
        ("P1", None),
        ("", None),
    ] {
        assert_eq!(parse_duration_ms(text), ms, "{text}");
    }
}
