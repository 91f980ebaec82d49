//! The injectable clock, over real HTTP: time-based behaviour moves when a [`ManualClock`]
//! is advanced, with no sleeping and no dependence on how fast the test runs.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::time::format_iso;
use super::{ManualClock, MockConfig, MockHubSpot};
use crate::http::{request, HttpResponse};

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const TOKEN: &str = "pat-na1-clock";

fn start(config: MockConfig) -> (MockHubSpot, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let mock = MockHubSpot::start_with_clock(
        MockConfig {
            token: TOKEN.into(),
            ..config
        },
        clock.clone(),
    )
    .unwrap();
    (mock, clock)
}

fn call(mock: &MockHubSpot, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
    call_as(mock, TOKEN, method, path, body)
}

pub(super) fn call_as(
    mock: &MockHubSpot,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> HttpResponse {
    let auth = format!("Bearer {token}");
    let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
    request(
        method,
        &format!("{}{path}", mock.base_url()),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/json"),
        ],
        bytes.as_deref(),
    )
    .unwrap()
}

#[test]
fn burst_window_refills_only_when_the_clock_has_moved_a_full_window() {
    let (mock, clock) = start(MockConfig {
        burst: 3,
        window: Duration::from_secs(10),
        ..MockConfig::default()
    });
    for _ in 0..3 {
        assert_eq!(
            call(&mock, "GET", "/crm/v3/objects/contacts", None).status,
            200
        );
    }
    let r = call(&mock, "GET", "/crm/v3/objects/contacts", None);
    assert_eq!(r.status, 429);
    assert_eq!(r.json().unwrap()["policyName"], "TEN_SECONDLY_ROLLING");
    // One millisecond short of the window: still refused, however long the test took.
    clock.advance(Duration::from_millis(9_999));
    assert_eq!(
        call(&mock, "GET", "/crm/v3/objects/contacts", None).status,
        429
    );
    clock.advance(Duration::from_millis(1));
    let r = call(&mock, "GET", "/crm/v3/objects/contacts", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hubspot-ratelimit-remaining"), Some("2"));
}

#[test]
fn search_secondly_limit_refills_after_one_clock_second() {
    let (mock, clock) = start(MockConfig {
        search_per_second: 2,
        ..MockConfig::default()
    });
    let search = || {
        call(
            &mock,
            "POST",
            "/crm/v3/objects/contacts/search",
            Some(&json!({})),
        )
    };
    assert_eq!(search().status, 200);
    assert_eq!(search().status, 200);
    let r = search();
    assert_eq!(r.status, 429);
    assert_eq!(r.json().unwrap()["policyName"], "SECONDLY");
    clock.advance(Duration::from_secs(1));
    assert_eq!(search().status, 200);
}

#[test]
fn daily_budget_resets_at_utc_midnight_of_the_clock() {
    let (mock, clock) = start(MockConfig {
        daily: 2,
        ..MockConfig::default()
    });
    clock.set(T0 + 86_400_000 - 2_000); // 23:59:58
    assert_eq!(
        call(&mock, "GET", "/crm/v3/objects/contacts", None).status,
        200
    );
    let r = call(&mock, "GET", "/crm/v3/objects/contacts", None);
    assert_eq!(r.header("x-hubspot-ratelimit-daily-remaining"), Some("0"));
    let r = call(&mock, "GET", "/crm/v3/objects/contacts", None);
    assert_eq!(r.status, 429);
    assert_eq!(r.json().unwrap()["policyName"], "DAILY");
    clock.advance(Duration::from_secs(2)); // 00:00:00 the next day
    let r = call(&mock, "GET", "/crm/v3/objects/contacts", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-hubspot-ratelimit-daily-remaining"), Some("1"));
}

#[test]
fn oauth_access_token_expires_after_its_ttl_on_the_clock() {
    let (mock, clock) = start(MockConfig {
        client_id: "cid".into(),
        client_secret: "cs".into(),
        refresh_token: "r".into(),
        token_ttl: Duration::from_secs(1_800),
        ..MockConfig::default()
    });
    let r = request(
        "POST",
        &format!("{}/oauth/v1/token", mock.base_url()),
        &[("content-type", "application/x-www-form-urlencoded")],
        Some(b"grant_type=refresh_token&refresh_token=r&client_id=cid&client_secret=cs"),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json().unwrap();
    assert_eq!(body["expires_in"], 1_800);
    let access = body["access_token"].as_str().unwrap().to_owned();
    let contacts = |t: &str| call_as(&mock, t, "GET", "/crm/v3/objects/contacts", None);

    clock.advance(Duration::from_millis(1_799_999));
    assert_eq!(contacts(&access).status, 200);
    clock.advance(Duration::from_millis(1));
    let r = contacts(&access);
    assert_eq!(r.status, 401);
    let body = r.json().unwrap();
    assert_eq!(body["category"], "EXPIRED_AUTHENTICATION");
    assert_eq!(
        body["message"],
        "The OAuth token used to make this call expired 0 second(s) ago."
    );
    clock.advance(Duration::from_secs(42));
    assert_eq!(
        contacts(&access).json().unwrap()["message"],
        "The OAuth token used to make this call expired 42 second(s) ago."
    );
    // The private-app token never expires.
    assert_eq!(contacts(TOKEN).status, 200);
}

#[test]
fn record_timestamps_are_the_clock_time_of_each_write() {
    let (mock, clock) = start(MockConfig::default());
    let created = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts",
        Some(&json!({"properties": {"email": "t@example.com", "firstname": "Tim"}})),
    );
    assert_eq!(created.status, 201);
    let created = created.json().unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["createdAt"], "2026-01-01T00:00:00.000Z");
    assert_eq!(created["updatedAt"], "2026-01-01T00:00:00.000Z");
    assert_eq!(
        created["properties"]["createdate"],
        "2026-01-01T00:00:00.000Z"
    );

    clock.advance(Duration::from_millis(90_500));
    let patched = call(
        &mock,
        "PATCH",
        &format!("/crm/v3/objects/contacts/{id}"),
        Some(&json!({"properties": {"firstname": "Tom"}})),
    )
    .json()
    .unwrap();
    assert_eq!(patched["createdAt"], "2026-01-01T00:00:00.000Z");
    assert_eq!(patched["updatedAt"], "2026-01-01T00:01:30.500Z");
    assert_eq!(
        patched["properties"]["hs_lastmodifieddate"],
        "2026-01-01T00:01:30.500Z"
    );

    clock.advance(Duration::from_secs(3_600));
    let batch = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(&json!({"inputs": [{"id": id}]})),
    )
    .json()
    .unwrap();
    assert_eq!(batch["startedAt"], format_iso(T0 + 3_690_500));
    assert_eq!(batch["completedAt"], format_iso(T0 + 3_690_500));

    clock.advance(Duration::from_secs(60));
    let path = format!("/crm/v3/objects/contacts/{id}");
    assert_eq!(call(&mock, "DELETE", &path, None).status, 204);
    let archived = call(&mock, "GET", &format!("{path}?archived=true"), None)
        .json()
        .unwrap();
    assert_eq!(archived["archivedAt"], "2026-01-01T01:02:30.500Z");
    // Archiving does not bump updatedAt (HubSpot's soft delete, BEHAVIOURS.md).
    assert_eq!(archived["updatedAt"], "2026-01-01T00:01:30.500Z");
}

#[test]
fn property_history_timestamps_are_the_clock_time_of_each_write() {
    let (mock, clock) = start(MockConfig::default());
    let created = call(
        &mock,
        "POST",
        "/crm/v3/objects/contacts",
        Some(&json!({"properties": {"firstname": "Tim"}})),
    )
    .json()
    .unwrap();
    let path = format!(
        "/crm/v3/objects/contacts/{}",
        created["id"].as_str().unwrap()
    );
    clock.advance(Duration::from_secs(60));
    let patch = json!({"properties": {"firstname": "Tom"}});
    assert_eq!(call(&mock, "PATCH", &path, Some(&patch)).status, 200);
    clock.advance(Duration::from_secs(3_600));
    let read = call(
        &mock,
        "GET",
        &format!("{path}?propertiesWithHistory=firstname"),
        None,
    )
    .json()
    .unwrap();
    let entries: Vec<(&str, &str)> = read["propertiesWithHistory"]["firstname"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["value"].as_str().unwrap(),
                e["timestamp"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("Tom", "2026-01-01T00:01:00.000Z"),
            ("Tim", "2026-01-01T00:00:00.000Z")
        ]
    );
}
