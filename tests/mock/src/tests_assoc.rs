//! The associations a sync reads with its records (issue 10 §2, §5): the v4 batch read
//! (`POST /crm/v4/associations/{from}/{to}/batch/read`, §4.3) with its 207 errors, paging and
//! limits, seeding with associations, and `/__mock/erase`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::tests_clock::call_as;
use super::{ManualClock, MockConfig, MockHubSpot};

const T0: u64 = 1_767_225_600_000;
const TOKEN: &str = "pat-na1-assoc";

fn start(config: MockConfig) -> MockHubSpot {
    let clock = Arc::new(ManualClock::new(T0));
    MockHubSpot::start_with_clock(
        MockConfig {
            token: TOKEN.into(),
            ..config
        },
        clock,
    )
    .unwrap()
}

fn call(mock: &MockHubSpot, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let r = call_as(mock, TOKEN, method, path, body);
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

fn read(mock: &MockHubSpot, from: &str, to: &str, inputs: Value) -> (u16, Value) {
    call(
        mock,
        "POST",
        &format!("/crm/v4/associations/{from}/{to}/batch/read"),
        Some(&json!({ "inputs": inputs })),
    )
}

/// `from.id` → the `toObjectId`s of one answer.
fn targets(v: &Value) -> Vec<(String, Vec<u64>)> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["from"]["id"].as_str().unwrap().to_owned(),
                r["to"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t["toObjectId"].as_u64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

#[test]
fn seeded_contacts_have_their_company_both_ways_and_unknown_ids_are_207_errors() {
    let started = std::time::Instant::now();
    let mock = start(MockConfig {
        seed_contacts: 5_000,
        seed_companies: 500,
        seed_associations: true,
        ..MockConfig::default()
    });
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "seeding took {:?}",
        started.elapsed()
    );
    // Contacts are ids 1..=5000, companies 5001..=5500: contact i → company 5001 + (i-1) % 500.
    let (status, v) = read(
        &mock,
        "contacts",
        "companies",
        json!([{"id": "1"}, {"id": "501"}, {"id": "999999"}]),
    );
    assert_eq!(status, 207, "{v}");
    assert_eq!(
        targets(&v),
        [("1".to_owned(), vec![5001]), ("501".to_owned(), vec![5001])]
    );
    let types = &v["results"][0]["to"][0]["associationTypes"];
    let ids: Vec<u64> = types
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["typeId"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, [1, 279], "primary and unlabelled: {types}");
    assert_eq!(types[0]["category"], "HUBSPOT_DEFINED");
    assert_eq!(v["numErrors"], 1);
    assert_eq!(v["errors"][0]["context"]["fromObjectId"], json!(["999999"]));
    // Back: each company has its 10 contacts (280); all found: 200.
    let (status, v) = read(&mock, "companies", "contacts", json!([{"id": 5001}]));
    assert_eq!(status, 200, "{v}");
    let back = targets(&v);
    assert_eq!(
        back[0].1,
        (0..10).map(|k| 1 + k * 500).collect::<Vec<u64>>()
    );
    assert_eq!(
        v["results"][0]["to"][0]["associationTypes"][0]["typeId"],
        280
    );
    assert!(v.get("errors").is_none());
}

#[test]
fn more_than_a_page_continues_with_after_and_limits_hold() {
    let mock = start(MockConfig {
        seed_contacts: 1_203,
        seed_companies: 1,
        seed_associations: true,
        ..MockConfig::default()
    });
    let company = "1204";
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let input = match &after {
            Some(a) => json!([{"id": company, "after": a}]),
            None => json!([{"id": company}]),
        };
        let (status, v) = read(&mock, "companies", "contacts", input);
        assert_eq!(status, 200, "{v}");
        pages += 1;
        got.extend(targets(&v)[0].1.clone());
        match v["results"][0]["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(got, (1..=1_203).collect::<Vec<u64>>());
    // 1,001 inputs: 400.
    let many: Vec<Value> = (1..=1_001).map(|i| json!({"id": i.to_string()})).collect();
    let (status, v) = read(&mock, "contacts", "companies", Value::Array(many));
    assert_eq!((status, &v["category"]), (400, &json!("VALIDATION_ERROR")));
    let (status, _) = read(&mock, "contacts", "nothings", json!([{"id": "1"}]));
    assert_eq!(status, 400);
    // The date-versioned path (§4.3) answers the same.
    let (status, v) = call(
        &mock,
        "POST",
        "/crm/associations/2026-03/contacts/companies/batch/read",
        Some(&json!({"inputs": [{"id": "1"}]})),
    );
    assert_eq!(
        (status, targets(&v)),
        (200, vec![("1".to_owned(), vec![1_204])])
    );
}

#[test]
fn erase_leaves_no_trace_and_no_association() {
    let mock = start(MockConfig {
        seed_contacts: 3,
        seed_companies: 1,
        seed_associations: true,
        ..MockConfig::default()
    });
    let (status, v) = call(
        &mock,
        "POST",
        "/__mock/erase",
        Some(&json!({"objectType": "contacts", "id": "2"})),
    );
    assert_eq!((status, &v["erased"]), (200, &json!(true)));
    for archived in ["false", "true"] {
        let (status, _) = call(
            &mock,
            "GET",
            &format!("/crm/v3/objects/contacts/2?archived={archived}"),
            None,
        );
        assert_eq!(status, 404, "archived={archived}");
    }
    let (_, v) = read(&mock, "companies", "contacts", json!([{"id": "4"}]));
    assert_eq!(targets(&v)[0].1, [1, 3]);
    let (status, _) = call(
        &mock,
        "POST",
        "/__mock/erase",
        Some(&json!({"objectType": "contacts", "id": "2"})),
    );
    assert_eq!(status, 404);
    let (status, _) = call(&mock, "POST", "/__mock/erase", Some(&json!({"id": "1"})));
    assert_eq!(status, 400);
}
