//! OAuth (§6), fault injection and the webhook emitter (§1, §2), over real HTTP.

use std::io::{BufReader, Write as _};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use hubspot_edge_core::signature::{
    ClientSecret, LegacySignatures, SignatureVersion, SignedRequest, Verifier,
};
use serde_json::{json, Value};

use super::{
    Clock as _, FaultConfig, ManualClock, MockConfig, MockHubSpot, SystemClock, WebhookConfig,
    TEST_CODE,
};
use crate::http::{request, HttpResponse};

use super::tests::{start, start_with_clock, TOKEN};

fn form(mock: &MockHubSpot, body: &str) -> HttpResponse {
    request(
        "POST",
        &format!("{}/oauth/v1/token", mock.base_url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    )
    .unwrap()
}

fn get_contacts(mock: &MockHubSpot, token: &str) -> crate::Result<HttpResponse> {
    let auth = format!("Bearer {token}");
    request(
        "GET",
        &format!("{}/crm/v3/objects/contacts", mock.base_url()),
        &[("authorization", auth.as_str())],
        None,
    )
}

fn call(mock: &MockHubSpot, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
    super::tests_clock::call_as(mock, TOKEN, method, path, body)
}

fn admin(mock: &MockHubSpot, method: &str, what: &str, body: Option<&Value>) -> Value {
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    let r = request(
        method,
        &format!("{}/__mock/{what}", mock.base_url()),
        &[("content-type", "application/json")],
        bytes.as_deref(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()
}

#[test]
fn oauth_code_exchange_expiry_and_refresh() {
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let mock = start_with_clock(
        MockConfig {
            client_id: "cid".into(),
            client_secret: "csecret".into(),
            token_ttl: Duration::from_secs(1),
            ..MockConfig::default()
        },
        clock.clone(),
    );
    // Wrong secret.
    let r = form(
        &mock,
        &format!("grant_type=authorization_code&code={TEST_CODE}&client_id=cid&client_secret=x"),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json().unwrap()["status"], "BAD_CLIENT_SECRET");
    // Unknown code.
    let r = form(
        &mock,
        "grant_type=authorization_code&code=nope&client_id=cid&client_secret=csecret",
    );
    assert_eq!(r.status, 400);

    let r = form(
        &mock,
        &format!(
            "grant_type=authorization_code&code={TEST_CODE}&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&client_id=cid&client_secret=csecret"
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t = r.json().unwrap();
    assert_eq!(t["token_type"], "bearer");
    assert_eq!(t["expires_in"], 1);
    let access = t["access_token"].as_str().unwrap().to_owned();
    let refresh = t["refresh_token"].as_str().unwrap().to_owned();
    assert!(!refresh.is_empty());

    assert_eq!(get_contacts(&mock, &access).unwrap().status, 200);
    // The fixed private-app token still works.
    assert_eq!(get_contacts(&mock, TOKEN).unwrap().status, 200);

    clock.advance(Duration::from_millis(1_100));
    let r = get_contacts(&mock, &access).unwrap();
    assert_eq!(r.status, 401);
    let body = r.json().unwrap();
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    let msg = body["message"].as_str().unwrap();
    assert!(
        msg.starts_with("The OAuth token used to make this call expired ")
            && msg.ends_with(" second(s) ago."),
        "{msg}"
    );
    assert!(body["correlationId"].is_string());

    let r = form(
        &mock,
        &format!(
            "grant_type=refresh_token&refresh_token={refresh}&client_id=cid&client_secret=csecret"
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let t2 = r.json().unwrap();
    let access2 = t2["access_token"].as_str().unwrap();
    assert_ne!(access2, access);
    assert_eq!(t2["refresh_token"], refresh.as_str());
    assert_eq!(get_contacts(&mock, access2).unwrap().status, 200);

    let stats = admin(&mock, "GET", "stats", None);
    assert_eq!(stats["tokenRefreshes"], 1);
    assert_eq!(stats["codeExchanges"], 1);
}

#[test]
fn oauth_configured_refresh_token_and_bad_refresh_token() {
    let mock = start(MockConfig {
        refresh_token: "rt-1".into(),
        ..MockConfig::default()
    });
    let ok = form(
        &mock,
        "grant_type=refresh_token&refresh_token=rt-1&client_id=mock-client-id&client_secret=mock-client-secret",
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let r = form(
        &mock,
        "grant_type=refresh_token&refresh_token=wrong&client_id=mock-client-id&client_secret=mock-client-secret",
    );
    assert_eq!(r.status, 400);
    let body = r.json().unwrap();
    assert_eq!(body["status"], "BAD_REFRESH_TOKEN");
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "refresh token is invalid, expired or revoked"
    );
    // An unknown token is INVALID_AUTHENTICATION, not EXPIRED_AUTHENTICATION.
    let r = get_contacts(&mock, "CMock-unknown").unwrap();
    assert_eq!(r.status, 401);
    assert_eq!(r.json().unwrap()["category"], "INVALID_AUTHENTICATION");
    assert_eq!(admin(&mock, "GET", "stats", None)["tokenRefreshes"], 1);
}

#[test]
fn faults_next_statuses_in_order_then_normal() {
    let mock = start(MockConfig::default());
    admin(
        &mock,
        "POST",
        "faults",
        Some(
            &json!({"next": [{"status": 503}, {"status": 423}, {"status": 429, "policy": "DAILY"}, {"status": 477}]}),
        ),
    );
    let statuses: Vec<HttpResponse> = (0..5)
        .map(|_| get_contacts(&mock, TOKEN).unwrap())
        .collect();
    let codes: Vec<u16> = statuses.iter().map(|r| r.status).collect();
    assert_eq!(codes, [503, 423, 429, 477, 200]);
    let daily = statuses[2].json().unwrap();
    assert_eq!(daily["policyName"], "DAILY");
    assert_eq!(daily["errorType"], "RATE_LIMIT");
    assert_eq!(daily["message"], "You have reached your daily limit.");
    assert!(statuses[3].header("retry-after").is_some());
    assert_eq!(statuses[1].json().unwrap()["status"], "error");

    let stats = admin(&mock, "GET", "stats", None);
    assert_eq!(stats["requests"], 5);
    assert_eq!(stats["faultsInjected"], 4);
    assert_eq!(stats["rateLimitedByPolicy"]["DAILY"], 1);
    assert_eq!(stats["byPath"]["GET /crm/v3/objects/contacts"], 5);
    admin(&mock, "POST", "reset-stats", None);
    assert_eq!(admin(&mock, "GET", "stats", None)["requests"], 0);
}

#[test]
fn faults_policy_429_counted_from_limiter_too() {
    let mock = MockHubSpot::start(MockConfig {
        token: TOKEN.into(),
        burst: 2,
        ..MockConfig::default()
    })
    .unwrap();
    let codes: Vec<u16> = (0..3)
        .map(|_| get_contacts(&mock, TOKEN).unwrap().status)
        .collect();
    assert_eq!(codes, [200, 200, 429]);
    let stats = admin(&mock, "GET", "stats", None);
    assert_eq!(stats["rateLimitedByPolicy"]["TEN_SECONDLY_ROLLING"], 1);
    assert_eq!(stats["rateLimited"], 1);
}

fn rate_sequence(seed: u64) -> Vec<u16> {
    let mock = start(MockConfig {
        faults: FaultConfig {
            rate: 0.3,
            rate_status: 502,
            seed,
            ..FaultConfig::default()
        },
        ..MockConfig::default()
    });
    (0..60)
        .map(|_| get_contacts(&mock, TOKEN).unwrap().status)
        .collect()
}

#[test]
fn faults_rate_is_deterministic_per_seed() {
    let a = rate_sequence(7);
    assert_eq!(a, rate_sequence(7));
    let faulted = a.iter().filter(|s| **s == 502).count();
    assert!((6..=30).contains(&faulted), "{faulted} of 60");
    assert!(a.iter().all(|s| *s == 502 || *s == 200));
    assert_ne!(a, rate_sequence(8));

    // At runtime too, and `rate: 0` switches it off.
    let mock = start(MockConfig::default());
    admin(
        &mock,
        "POST",
        "faults",
        Some(&json!({"rate": 1.0, "status": 500, "seed": 1})),
    );
    assert_eq!(get_contacts(&mock, TOKEN).unwrap().status, 500);
    admin(&mock, "POST", "faults", Some(&json!({"rate": 0.0})));
    assert_eq!(get_contacts(&mock, TOKEN).unwrap().status, 200);
    let r = request(
        "POST",
        &format!("{}/__mock/faults", mock.base_url()),
        &[],
        Some(b"{\"rate\": 3}"),
    )
    .unwrap();
    assert_eq!(r.status, 400);
}

#[test]
fn faults_latency_and_drop() {
    let mock = start(MockConfig::default());
    admin(&mock, "POST", "faults", Some(&json!({"latencyMs": 200})));
    let t = Instant::now();
    assert_eq!(get_contacts(&mock, TOKEN).unwrap().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));
    admin(&mock, "POST", "faults", Some(&json!({"latencyMs": 0})));

    admin(
        &mock,
        "POST",
        "faults",
        Some(&json!({"drop": true, "count": 2})),
    );
    assert!(get_contacts(&mock, TOKEN).is_err());
    assert!(get_contacts(&mock, TOKEN).is_err());
    assert_eq!(get_contacts(&mock, TOKEN).unwrap().status, 200);
    assert_eq!(admin(&mock, "GET", "stats", None)["dropped"], 2);
}

/// One webhook POST as received.
#[derive(Debug, Clone)]
pub(super) struct Received {
    headers: http::HeaderMap,
    pub(super) body: Vec<u8>,
}

/// A minimal receiver: records every POST, answers `statuses` in order, then 200.
pub(super) fn receiver(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<Received>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hubspot/webhook", listener.local_addr().unwrap());
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = Arc::clone(&got);
    thread::spawn(move || {
        let mut script = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut writer = stream;
            if let Ok(Some(req)) = crate::server::read_request(&mut reader) {
                let mut headers = http::HeaderMap::new();
                for (k, v) in &req.headers {
                    headers.append(
                        http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                        http::HeaderValue::from_str(v).unwrap(),
                    );
                }
                got2.lock().unwrap().push(Received {
                    headers,
                    body: req.body,
                });
                let status = script.next().unwrap_or(200);
                let _ = write!(
                    writer,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        }
    });
    (url, got)
}

#[test]
fn webhooks_are_batched_signed_and_retried() {
    let (url, got) = receiver(vec![500]);
    let secret = "client-secret-uuid";
    let mock = start(MockConfig {
        webhook: Some(WebhookConfig {
            url: url.clone(),
            secret: secret.into(),
            app_id: 777,
            portal_id: 4242,
            retry_delay: Duration::from_millis(50),
            batch_window: Duration::from_millis(300),
            ..WebhookConfig::default()
        }),
        ..MockConfig::default()
    });
    let created = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts",
        Some(&json!({"properties": {"email": "a@example.com", "firstname": "Ann"}})),
    );
    assert_eq!(created.status, 201);
    let id: u64 = created.json().unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let patched = call(
        &mock,
        "PATCH",
        &format!("/crm/v3/objects/contacts/{id}"),
        Some(
            &json!({"properties": {"firstname": "Anna", "email": "a@example.com", "lastname": "Lee"}}),
        ),
    );
    assert_eq!(patched.status, 200);
    assert_eq!(
        call(
            &mock,
            "DELETE",
            &format!("/crm/v3/objects/contacts/{id}"),
            None
        )
        .status,
        204
    );

    // Wait for the failed first attempt and its successful retry.
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 2 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "{got:?}");

    let verifier = Verifier::new(ClientSecret::new(secret)).with_legacy(LegacySignatures::Accept);
    let mut attempts = Vec::new();
    for r in &got {
        let signed = SignedRequest {
            method: "POST",
            uri: &url,
            headers: &r.headers,
            body: &r.body,
        };
        assert_eq!(
            verifier.verify(&signed, SystemClock.now_ms()).unwrap(),
            SignatureVersion::V3
        );
        // v1 alone (as a legacy receiver would check it).
        let mut v1_only = r.headers.clone();
        v1_only.remove("x-hubspot-signature-v3");
        v1_only.remove("x-hubspot-request-timestamp");
        assert_eq!(r.headers["x-hubspot-signature-version"], "v1");
        let signed = SignedRequest {
            headers: &v1_only,
            ..signed
        };
        assert_eq!(
            verifier.verify(&signed, SystemClock.now_ms()).unwrap(),
            SignatureVersion::V1
        );
        let events: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
        attempts.push(events);
    }
    // Same events, attemptNumber 0 then 1.
    let strip = |events: &[Value]| -> Vec<Value> {
        events
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("attemptNumber");
                e
            })
            .collect()
    };
    assert_eq!(strip(&attempts[0]), strip(&attempts[1]));
    assert!(attempts[0].iter().all(|e| e["attemptNumber"] == 0));
    assert!(attempts[1].iter().all(|e| e["attemptNumber"] == 1));

    let events = &attempts[1];
    let kinds: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e["subscriptionType"].as_str().unwrap(),
                e["propertyName"].as_str(),
                e["propertyValue"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("contact.creation", None, None),
            ("contact.propertyChange", Some("firstname"), Some("Anna")),
            ("contact.propertyChange", Some("lastname"), Some("Lee")),
            ("contact.deletion", None, None),
        ]
    );
    for e in events {
        assert_eq!(e["objectId"], id);
        assert_eq!(e["portalId"], 4242);
        assert_eq!(e["appId"], 777);
        assert_eq!(e["changeSource"], "API");
        assert!(e["eventId"].is_u64());
        assert!(e["subscriptionId"].is_u64());
        assert!(e["occurredAt"].as_u64().unwrap() > 1_700_000_000_000);
    }
    let stats = admin(&mock, "GET", "stats", None);
    assert_eq!(stats["webhooks"]["attempts"], 2);
    assert_eq!(stats["webhooks"]["delivered"], 1);
    assert_eq!(stats["webhooks"]["events"], 4);
}

#[test]
fn webhooks_give_up_after_max_retries_and_batch_at_most_100() {
    let (url, got) = receiver(vec![503; 20]);
    let mock = start(MockConfig {
        webhook: Some(WebhookConfig {
            url,
            secret: "s".into(),
            retry_delay: Duration::from_millis(10),
            batch_window: Duration::from_millis(500),
            max_retries: 2,
            ..WebhookConfig::default()
        }),
        ..MockConfig::default()
    });
    let inputs: Vec<Value> = (0..100)
        .map(|i| json!({"properties": {"firstname": format!("n{i}")}}))
        .collect();
    let inputs2: Vec<Value> = (0..20)
        .map(|i| json!({"properties": {"firstname": format!("m{i}")}}))
        .collect();
    for chunk in [inputs, inputs2] {
        let r = call(
            &mock,
            "POST",
            "/crm/v3/objects/contacts/batch/create",
            Some(&json!({ "inputs": chunk })),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 6 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    thread::sleep(Duration::from_millis(200));
    let got = got.lock().unwrap().clone();
    // Two batches (100 + 20), each tried 1 + 2 times.
    let sizes: Vec<usize> = got
        .iter()
        .map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap().len())
        .collect();
    assert_eq!(sizes, [100, 100, 100, 20, 20, 20]);
}

#[test]
fn webhooks_for_batch_update_upsert_and_archive() {
    let (url, got) = receiver(vec![]);
    let mock = start(MockConfig {
        webhook: Some(WebhookConfig {
            url,
            secret: "s".into(),
            batch_window: Duration::from_millis(300),
            ..WebhookConfig::default()
        }),
        ..MockConfig::default()
    });
    let r = call(
        &mock,
        "POST",
        "/crm/v3/objects/deals/batch/upsert",
        Some(
            &json!({"inputs": [{"id": "d-1", "idProperty": "dealname", "properties": {"amount": "10"}}]}),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json().unwrap()["results"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = call(
        &mock,
        "POST",
        "/crm/v3/objects/deals/batch/update",
        Some(&json!({"inputs": [{"id": id, "properties": {"amount": "20", "dealname": "d-1"}}]})),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        &mock,
        "POST",
        "/crm/v3/objects/deals/batch/archive",
        Some(&json!({"inputs": [{"id": id}, {"id": "999999"}]})),
    );
    assert_eq!(r.status, 204);
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let events: Vec<Value> = serde_json::from_slice(&got[0].body).unwrap();
    let kinds: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e["subscriptionType"].as_str().unwrap(),
                e["propertyValue"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("deal.creation", None),
            ("deal.propertyChange", Some("20")),
            ("deal.deletion", None),
        ]
    );
}

#[test]
fn webhook_occurred_at_and_signature_timestamp_come_from_the_clock() {
    // 2026-01-01T00:00:00Z: far enough from the wall clock that a v3 signature made at wall
    // time would be outside the verifier's 5-minute window at this instant.
    const T: u64 = 1_767_225_600_000;
    let (url, got) = receiver(Vec::new());
    let secret = "clock-secret";
    let mock = start_with_clock(
        MockConfig {
            webhook: Some(WebhookConfig {
                url: url.clone(),
                secret: secret.into(),
                batch_window: Duration::from_millis(10),
                ..WebhookConfig::default()
            }),
            ..MockConfig::default()
        },
        Arc::new(ManualClock::new(T)),
    );
    let created = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts",
        Some(&json!({"properties": {"email": "c@example.com"}})),
    );
    assert_eq!(created.status, 201);
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().is_empty() && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    let got = got.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(
        r.headers["x-hubspot-request-timestamp"],
        T.to_string().as_str()
    );
    let events: Vec<Value> = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(events[0]["occurredAt"], T);
    let verifier = Verifier::new(ClientSecret::new(secret));
    let signed = SignedRequest {
        method: "POST",
        uri: &url,
        headers: &r.headers,
        body: &r.body,
    };
    assert_eq!(verifier.verify(&signed, T).unwrap(), SignatureVersion::V3);
}

#[test]
fn property_history_recorded_served_and_limited() {
    // 2026-01-01, after the seeded records' creation.
    let clock = Arc::new(ManualClock::new(1_767_225_600_000));
    let mock = start_with_clock(
        MockConfig {
            seed_contacts: 3,
            ..MockConfig::default()
        },
        clock.clone(),
    );
    let history = |v: &Value, p: &str| -> Vec<(String, String)> {
        v["propertiesWithHistory"][p]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| {
                        (
                            e["value"].as_str().unwrap().to_owned(),
                            e["timestamp"].as_str().unwrap().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // A seeded contact: one entry per property with a value, at its creation.
    let r = call(
        &mock,
        "GET",
        "/crm/v3/objects/contacts/1?properties=firstname&propertiesWithHistory=firstname,lastname,phone",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seeded = r.json().unwrap();
    let created = seeded["createdAt"].as_str().unwrap().to_owned();
    assert_eq!(
        history(&seeded, "firstname"),
        [("Alice".to_owned(), created.clone())]
    );
    assert_eq!(history(&seeded, "lastname").len(), 1);
    // A property it never had is left out (HubSpot ignores it).
    assert!(seeded["propertiesWithHistory"].get("phone").is_none());

    // Writes add entries (the value at creation first), newest first; an unchanged value adds
    // none; clearing is an entry with "".
    for name in ["Ann", "Ann", "Bea", ""] {
        let body = json!({"properties": {"firstname": name}});
        let r = call(&mock, "PATCH", "/crm/v3/objects/contacts/1", Some(&body));
        assert_eq!(r.status, 200, "{}", r.text());
        clock.advance(Duration::from_millis(2));
    }
    let body = json!({"inputs": [{"id": "1"}, {"id": "2"}], "properties": ["firstname"],
        "propertiesWithHistory": ["firstname"]});
    let r = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let read = r.json().unwrap();
    let first = &read["results"][0];
    let values: Vec<String> = history(first, "firstname")
        .into_iter()
        .map(|(v, _)| v)
        .collect();
    assert_eq!(values, ["", "Bea", "Ann", "Alice"]);
    let stamps: Vec<String> = history(first, "firstname")
        .into_iter()
        .map(|(_, t)| t)
        .collect();
    assert!(stamps.windows(2).all(|w| w[0] > w[1]), "{stamps:?}");
    assert_eq!(stamps[3], created);
    assert_eq!(history(&read["results"][1], "firstname").len(), 1);

    // The webhook of a write and its history entry share the instant (occurredAt = timestamp):
    // checked through updatedAt, which the write sets to the same `now`.
    let r = call(
        &mock,
        "PATCH",
        "/crm/v3/objects/contacts/2",
        Some(&json!({"properties": {"firstname": "Cy"}})),
    );
    let updated = r.json().unwrap()["updatedAt"].as_str().unwrap().to_owned();
    let r = call(
        &mock,
        "GET",
        "/crm/v3/objects/contacts/2?propertiesWithHistory=firstname",
        None,
    );
    assert_eq!(
        history(&r.json().unwrap(), "firstname")[0],
        ("Cy".to_owned(), updated)
    );

    // Withheld for an id: `{}`; served again once removed.
    admin(
        &mock,
        "POST",
        "faults",
        Some(&json!({"noHistory": {"2": true}})),
    );
    let r = call(
        &mock,
        "GET",
        "/crm/v3/objects/contacts/2?propertiesWithHistory=firstname",
        None,
    );
    assert_eq!(r.json().unwrap()["propertiesWithHistory"], json!({}));
    admin(
        &mock,
        "POST",
        "faults",
        Some(&json!({"noHistory": {"2": null}})),
    );
    let r = call(
        &mock,
        "GET",
        "/crm/v3/objects/contacts?limit=50&propertiesWithHistory=firstname",
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        history(&r.json().unwrap()["results"][1], "firstname").len(),
        2
    );

    // More than 50 objects with history: 400 VALIDATION_ERROR; without history 100 is fine.
    let inputs: Vec<Value> = (1..=51).map(|i| json!({"id": i.to_string()})).collect();
    let body = json!({"inputs": inputs, "propertiesWithHistory": ["firstname"]});
    let r = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(&body),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json().unwrap()["category"], "VALIDATION_ERROR");
    let body = json!({"inputs": inputs});
    let r = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(&body),
    );
    assert_eq!(r.status, 207, "{}", r.text());
    let r = call(
        &mock,
        "GET",
        "/crm/v3/objects/contacts?limit=51&propertiesWithHistory=firstname",
        None,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // A stricter HubSpot: `historyLimit` lowers the limit (0 refuses every history read).
    admin(&mock, "POST", "faults", Some(&json!({"historyLimit": 0})));
    let path = "/crm/v3/objects/contacts/1?propertiesWithHistory=firstname";
    let body = json!({"inputs": [{"id": "1"}], "propertiesWithHistory": ["firstname"]});
    let r = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(&body),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(call(&mock, "GET", path, None).status, 200);
    admin(
        &mock,
        "POST",
        "faults",
        Some(&json!({"historyLimit": null})),
    );
    let r = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(&body),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
