//! What a sync service needs from the CRM objects API (issue 10 §5), over real HTTP with a
//! [`ManualClock`]: archived listing with `archivedAt`, merges (`hs_merged_object_ids`, reads by
//! a merged id), the batch upsert/update contract and HubSpot's errors, and the maintained
//! last-modified dates on every write.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::tests_clock::call_as;
use super::time::format_iso;
use super::{ManualClock, MockConfig, MockHubSpot};

/// 2026-01-01T00:00:00Z.
const T0: u64 = 1_767_225_600_000;
const TOKEN: &str = "pat-na1-sync";

fn start() -> (MockHubSpot, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let mock = MockHubSpot::start_with_clock(
        MockConfig {
            token: TOKEN.into(),
            ..MockConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    (mock, clock)
}

/// Calls and checks the status; answers the JSON body (`null` when empty).
fn json(mock: &MockHubSpot, method: &str, path: &str, body: Option<&Value>, status: u16) -> Value {
    let r = call_as(mock, TOKEN, method, path, body);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, status, "{method} {path}: {text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

fn create_contact(mock: &MockHubSpot, email: &str, props: &Value) -> String {
    let mut p = props.clone();
    p["email"] = json!(email);
    let v = json(
        mock,
        "POST",
        "/crm/v3/objects/contacts",
        Some(&json!({ "properties": p })),
        201,
    );
    v["id"].as_str().unwrap().to_owned()
}

fn ids(v: &Value) -> Vec<String> {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn archived_list_carries_archived_at_from_each_archive() {
    let (mock, clock) = start();
    let a = create_contact(&mock, "a@example.com", &json!({}));
    let b = create_contact(&mock, "b@example.com", &json!({}));
    let c = create_contact(&mock, "c@example.com", &json!({}));
    clock.advance(Duration::from_secs(60));
    json(
        &mock,
        "DELETE",
        &format!("/crm/v3/objects/contacts/{a}"),
        None,
        204,
    );
    clock.advance(Duration::from_secs(60));
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/archive",
        Some(&json!({"inputs": [{"id": b}]})),
        204,
    );
    let archived = json(
        &mock,
        "GET",
        "/crm/v3/objects/contacts?archived=true&limit=100",
        None,
        200,
    );
    assert_eq!(ids(&archived), [a.clone(), b.clone()]);
    let rows = archived["results"].as_array().unwrap();
    assert_eq!(rows[0]["archived"], true);
    assert_eq!(rows[0]["archivedAt"], format_iso(T0 + 60_000));
    assert_eq!(rows[1]["archivedAt"], format_iso(T0 + 120_000));
    // The live list has neither, and no `archivedAt` on the live one.
    let live = json(&mock, "GET", "/crm/v3/objects/contacts", None, 200);
    assert_eq!(ids(&live), [c]);
    assert!(live["results"][0].get("archivedAt").is_none());
    assert_eq!(live["results"][0]["archived"], false);
}

#[test]
fn batch_writes_stamp_every_record_with_one_instant_on_both_modified_dates() {
    let (mock, clock) = start();
    clock.advance(Duration::from_millis(1_234));
    let created = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/create",
        Some(&json!({"inputs": [
            {"properties": {"email": "x1@example.com"}},
            {"properties": {"email": "x2@example.com"}},
            {"properties": {"email": "x3@example.com"}},
        ]})),
        201,
    );
    let stamp = format_iso(T0 + 1_234);
    for r in created["results"].as_array().unwrap() {
        assert_eq!(r["properties"]["lastmodifieddate"], stamp);
        assert_eq!(r["properties"]["hs_lastmodifieddate"], stamp);
        assert_eq!(r["updatedAt"], stamp);
    }
    let all = ids(&created);
    clock.advance(Duration::from_secs(5));
    let stamp = format_iso(T0 + 6_234);
    let inputs: Vec<Value> = all
        .iter()
        .map(|id| json!({"id": id, "properties": {"firstname": "B"}}))
        .collect();
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        Some(&json!({ "inputs": inputs })),
        200,
    );
    clock.advance(Duration::from_secs(5));
    let upserted = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        Some(&json!({"inputs": [
            {"id": "x1@example.com", "idProperty": "email", "properties": {"lastname": "U"}},
            {"id": "x9@example.com", "idProperty": "email", "properties": {"lastname": "U"}},
        ]})),
        200,
    );
    let upsert_stamp = format_iso(T0 + 11_234);
    for r in upserted["results"].as_array().unwrap() {
        assert_eq!(r["properties"]["lastmodifieddate"], upsert_stamp);
        assert_eq!(r["properties"]["hs_lastmodifieddate"], upsert_stamp);
    }
    // Read back: x2 and x3 share the batch update's instant, x1 the upsert's.
    let read = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/read",
        Some(
            &json!({"inputs": all.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
                      "properties": ["lastmodifieddate", "hs_lastmodifieddate"]}),
        ),
        200,
    );
    for r in read["results"].as_array().unwrap() {
        let want = if r["id"] == all[0] {
            &upsert_stamp
        } else {
            &stamp
        };
        assert_eq!(&r["properties"]["lastmodifieddate"], want);
        assert_eq!(&r["properties"]["hs_lastmodifieddate"], want);
    }
    // A search on the shared instant finds exactly the records written by that batch.
    let found = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/search",
        Some(&json!({"filterGroups": [{"filters": [
            {"propertyName": "lastmodifieddate", "operator": "EQ", "value": (T0 + 6_234).to_string()}
        ]}]})),
        200,
    );
    assert_eq!(found["total"], 2);
}

#[test]
fn merge_lists_merged_ids_bumps_modified_dates_and_hides_the_merged_record() {
    let (mock, clock) = start();
    let primary = create_contact(&mock, "p@example.com", &json!({"firstname": "P"}));
    let b = create_contact(&mock, "b@example.com", &json!({"lastname": "FromB"}));
    let c = create_contact(&mock, "c@example.com", &json!({}));
    clock.advance(Duration::from_secs(30));
    let merged = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/merge",
        Some(&json!({"primaryObjectId": primary, "objectIdToMerge": b})),
        200,
    );
    assert_eq!(merged["id"], primary.as_str());
    let stamp = format_iso(T0 + 30_000);
    assert_eq!(merged["properties"]["lastmodifieddate"], stamp);
    assert_eq!(merged["updatedAt"], stamp);
    clock.advance(Duration::from_secs(30));
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/merge",
        Some(&json!({"primaryObjectId": primary, "objectIdToMerge": c})),
        200,
    );
    let read = json(
        &mock,
        "GET",
        &format!("/crm/v3/objects/contacts/{primary}?properties=hs_merged_object_ids,lastname"),
        None,
        200,
    );
    // HubSpot's format: the merged ids, `;`-separated, in merge order.
    assert_eq!(
        read["properties"]["hs_merged_object_ids"],
        format!("{b};{c}")
    );
    assert_eq!(read["properties"]["lastname"], "FromB");
    assert_eq!(
        read["properties"]["hs_lastmodifieddate"],
        format_iso(T0 + 60_000)
    );
    // The merged records are in neither the live nor the archived list: their ids now name
    // the survivor, they were not deleted.
    let live = json(&mock, "GET", "/crm/v3/objects/contacts", None, 200);
    assert_eq!(ids(&live), std::slice::from_ref(&primary));
    let archived = json(
        &mock,
        "GET",
        "/crm/v3/objects/contacts?archived=true",
        None,
        200,
    );
    assert_eq!(ids(&archived), Vec::<String>::new());
    // The merged record's email now belongs to the survivor: creating it again is a 409.
    let dup = call_as(
        &mock,
        TOKEN,
        "POST",
        "/crm/v3/objects/contacts",
        Some(&json!({"properties": {"email": "b@example.com"}})),
    );
    assert_eq!(dup.status, 409, "{}", String::from_utf8_lossy(&dup.body));
    assert!(String::from_utf8_lossy(&dup.body).contains(&format!("Existing ID: {primary}")));
    // … and an upsert by it updates the survivor (`hs_additional_emails` are identifiers).
    let up = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        Some(
            &json!({"inputs": [{"id": "B@example.com", "idProperty": "email",
                                 "properties": {"firstname": "ByOldEmail"}}]}),
        ),
        200,
    );
    assert_eq!(up["results"][0]["id"], primary.as_str());
    assert_eq!(up["results"][0]["new"], false);
    let survivor = json(
        &mock,
        "GET",
        &format!("/crm/v3/objects/contacts/{primary}?properties=hs_additional_emails,email"),
        None,
        200,
    );
    assert_eq!(
        survivor["properties"]["hs_additional_emails"],
        "b@example.com;c@example.com"
    );
    assert_eq!(survivor["properties"]["email"], "p@example.com");
}

#[test]
fn a_merged_id_reads_and_patches_the_survivor_but_batch_update_refuses_it() {
    let (mock, clock) = start();
    let primary = create_contact(&mock, "p@example.com", &json!({}));
    let b = create_contact(&mock, "b@example.com", &json!({}));
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/merge",
        Some(&json!({"primaryObjectId": primary, "objectIdToMerge": b})),
        200,
    );
    // GET by the merged id answers the survivor, under the survivor's id.
    let got = json(
        &mock,
        "GET",
        &format!("/crm/v3/objects/contacts/{b}"),
        None,
        200,
    );
    assert_eq!(got["id"], primary.as_str());
    // PATCH by the merged id writes the survivor (docs/hubspot.md §4.1: "the basic PATCH accepts
    // IDs stored in hs_merged_object_ids").
    clock.advance(Duration::from_secs(1));
    let patched = json(
        &mock,
        "PATCH",
        &format!("/crm/v3/objects/contacts/{b}"),
        Some(&json!({"properties": {"firstname": "ViaMerged"}})),
        200,
    );
    assert_eq!(patched["id"], primary.as_str());
    let survivor = json(
        &mock,
        "GET",
        &format!("/crm/v3/objects/contacts/{primary}?properties=firstname"),
        None,
        200,
    );
    assert_eq!(survivor["properties"]["firstname"], "ViaMerged");
    // … "but batch update does not": a per-input OBJECT_NOT_FOUND.
    let batch = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        Some(&json!({"inputs": [{"id": b, "properties": {"firstname": "No"}}]})),
        207,
    );
    assert_eq!(batch["numErrors"], 1);
    assert_eq!(batch["errors"][0]["category"], "OBJECT_NOT_FOUND");
    // Merging the survivor into a third record carries its merged ids along, and a read by
    // the first merged id follows both merges.
    let third = create_contact(&mock, "t@example.com", &json!({}));
    let m = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/merge",
        Some(&json!({"primaryObjectId": third, "objectIdToMerge": primary})),
        200,
    );
    assert_eq!(m["id"], third.as_str());
    let t = json(
        &mock,
        "GET",
        &format!("/crm/v3/objects/contacts/{b}?properties=hs_merged_object_ids"),
        None,
        200,
    );
    assert_eq!(t["id"], third.as_str());
    assert_eq!(
        t["properties"]["hs_merged_object_ids"],
        format!("{primary};{b}")
    );
    // A merged id cannot be merged again, nor archived.
    let again = call_as(
        &mock,
        TOKEN,
        "POST",
        "/crm/v3/objects/contacts/merge",
        Some(&json!({"primaryObjectId": third, "objectIdToMerge": b})),
    );
    assert_eq!(again.status, 404);
    json(
        &mock,
        "DELETE",
        &format!("/crm/v3/objects/contacts/{b}"),
        None,
        204,
    );
    let still = json(
        &mock,
        "GET",
        &format!("/crm/v3/objects/contacts/{third}"),
        None,
        200,
    );
    assert_eq!(still["archived"], false);
}

#[test]
fn upsert_results_echo_trace_ids_and_say_new() {
    let (mock, _clock) = start();
    create_contact(&mock, "old@example.com", &json!({}));
    let v = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        Some(&json!({"inputs": [
            {"id": "old@example.com", "idProperty": "email", "objectWriteTraceId": "t-old",
             "properties": {"firstname": "O"}},
            {"id": "new@example.com", "idProperty": "email", "objectWriteTraceId": "t-new",
             "properties": {"firstname": "N"}},
        ]})),
        200,
    );
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows[0]["objectWriteTraceId"], "t-old");
    assert_eq!(rows[0]["new"], false);
    assert_eq!(rows[1]["objectWriteTraceId"], "t-new");
    assert_eq!(rows[1]["new"], true);
    assert_eq!(rows[1]["properties"]["email"], "new@example.com");
}

#[test]
fn upsert_with_an_invalid_value_is_a_207_with_the_input_named() {
    let (mock, _clock) = start();
    let v = json(
        &mock,
        "POST",
        "/crm/v3/objects/deals/batch/upsert",
        Some(&json!({"inputs": [
            {"id": "D-1", "idProperty": "ext_id", "objectWriteTraceId": "ok",
             "properties": {"amount": "10"}},
            {"id": "D-2", "idProperty": "ext_id", "objectWriteTraceId": "bad",
             "properties": {"amount": "1,000"}},
        ]})),
        207,
    );
    assert_eq!(v["numErrors"], 1);
    assert_eq!(v["results"][0]["new"], true);
    let e = &v["errors"][0];
    assert_eq!(e["category"], "VALIDATION_ERROR");
    assert_eq!(e["errors"][0]["code"], "INVALID_INTEGER");
    assert_eq!(e["context"]["objectWriteTraceId"], json!(["bad"]));
}

#[test]
fn two_inputs_resolving_to_one_record_reject_the_whole_batch() {
    let (mock, _clock) = start();
    let id = create_contact(&mock, "same@example.com", &json!({}));
    // Upsert: the same e-mail spelt twice (case and spaces are normalised), nothing written.
    let v = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        Some(&json!({"inputs": [
            {"id": "dup@example.com", "idProperty": "email", "properties": {"firstname": "A"}},
            {"id": " DUP@example.com", "idProperty": "email", "properties": {"firstname": "B"}},
        ]})),
        400,
    );
    assert_eq!(v["category"], "VALIDATION_ERROR");
    assert!(
        v["message"].as_str().unwrap().contains("Duplicate IDs"),
        "{v}"
    );
    let none = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/search",
        Some(&json!({"filterGroups": [{"filters": [
            {"propertyName": "email", "operator": "EQ", "value": "dup@example.com"}]}]})),
        200,
    );
    assert_eq!(none["total"], 0);
    // An existing record named by its e-mail and by its id: one record, rejected too.
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        Some(&json!({"inputs": [
            {"id": "same@example.com", "idProperty": "email", "properties": {"firstname": "A"}},
            {"id": id, "properties": {"firstname": "B"}},
        ]})),
        400,
    );
    // Batch update with the same id twice.
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        Some(&json!({"inputs": [
            {"id": id, "properties": {"firstname": "A"}},
            {"id": id, "properties": {"firstname": "B"}},
        ]})),
        400,
    );
    let read = json(
        &mock,
        "GET",
        &format!("/crm/v3/objects/contacts/{id}?properties=firstname"),
        None,
        200,
    );
    assert_eq!(read["properties"]["firstname"], Value::Null);
}

#[test]
fn batch_update_refuses_non_unique_id_properties() {
    let (mock, _clock) = start();
    let id = create_contact(&mock, "u@example.com", &json!({}));
    // Batch update by e-mail: HubSpot needs record ids there.
    let v = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        Some(&json!({"inputs": [
            {"id": "u@example.com", "idProperty": "email", "properties": {"firstname": "A"}}]})),
        400,
    );
    assert_eq!(v["category"], "VALIDATION_ERROR");
    assert_eq!(
        v["message"],
        "Unable to perform update/upsert by non-unique 0-1 property email"
    );
    // `idProperty: hs_object_id` must be omitted, on update and upsert alike.
    let company = json(
        &mock,
        "POST",
        "/crm/v3/objects/companies",
        Some(&json!({"properties": {"name": "Acme"}})),
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for op in ["update", "upsert"] {
        let v = json(
            &mock,
            "POST",
            &format!("/crm/v3/objects/companies/batch/{op}"),
            Some(&json!({"inputs": [
                {"id": company, "idProperty": "hs_object_id", "properties": {"name": "B"}}]})),
            400,
        );
        assert_eq!(
            v["message"],
            "Unable to perform update/upsert by non-unique 0-2 property hs_object_id"
        );
    }
    // Without idProperty the id is the record id: accepted.
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        Some(&json!({"inputs": [{"id": id, "properties": {"firstname": "A"}}]})),
        200,
    );
}

#[test]
fn search_windows_on_hs_object_id_match_a_full_scan() {
    // The id-range shortcut of search must answer what filtering every record answers.
    let mock = MockHubSpot::start(MockConfig {
        token: TOKEN.into(),
        seed_contacts: 500,
        search_per_second: 1_000,
        ..MockConfig::default()
    })
    .unwrap();
    let search = |filters: Value| {
        json(
            &mock,
            "POST",
            "/crm/v3/objects/contacts/search",
            Some(
                &json!({"filterGroups": [{"filters": filters}], "limit": 200,
                         "sorts": [{"propertyName": "hs_object_id", "direction": "DESCENDING"}]}),
            ),
            200,
        )
    };
    let f = |op: &str, v: &str| json!({"propertyName": "hs_object_id", "operator": op, "value": v});
    let gt = search(json!([f("GT", "100")]));
    assert_eq!(gt["total"], 400);
    assert_eq!(gt["results"][0]["id"], "500");
    let window = search(json!([f("GTE", "100"), f("LT", "150")]));
    assert_eq!(window["total"], 50);
    let between = search(
        json!([{"propertyName": "hs_object_id", "operator": "BETWEEN", "value": "10", "highValue": "19"}]),
    );
    assert_eq!(between["total"], 10);
    assert_eq!(search(json!([f("EQ", "7")]))["total"], 1);
    // An empty window, and a reversed one, match nothing (and do not panic).
    assert_eq!(search(json!([f("GT", "500")]))["total"], 0);
    assert_eq!(search(json!([f("GT", "300"), f("LT", "200")]))["total"], 0);
    // With two groups (ORed) the bounds of one do not limit the other.
    let either = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/search",
        Some(
            &json!({"filterGroups": [{"filters": [f("LT", "3")]}, {"filters": [f("GT", "498")]}]}),
        ),
        200,
    );
    assert_eq!(either["total"], 4);
}

#[test]
fn restore_brings_an_archived_record_back_with_its_webhook() {
    let (url, got) = super::tests_ops::receiver(vec![]);
    let clock = Arc::new(ManualClock::new(T0));
    let mock = MockHubSpot::start_with_clock(
        MockConfig {
            token: TOKEN.into(),
            webhook: Some(super::WebhookConfig {
                url,
                secret: "s".into(),
                batch_window: Duration::from_millis(50),
                ..super::WebhookConfig::default()
            }),
            ..MockConfig::default()
        },
        clock.clone(),
    )
    .unwrap();
    let admin = |body: &Value| {
        crate::http::request(
            "POST",
            &format!("{}/__mock/restore", mock.base_url()),
            &[("content-type", "application/json")],
            Some(&serde_json::to_vec(body).unwrap()),
        )
        .unwrap()
    };
    let a = create_contact(&mock, "a@example.com", &json!({}));
    let b = create_contact(&mock, "b@example.com", &json!({}));
    let c = create_contact(&mock, "c@example.com", &json!({}));
    json(
        &mock,
        "DELETE",
        &format!("/crm/v3/objects/contacts/{a}"),
        None,
        204,
    );
    json(
        &mock,
        "DELETE",
        &format!("/crm/v3/objects/contacts/{b}"),
        None,
        204,
    );
    // While archived, its e-mail is free: a new contact takes b's.
    let b2 = create_contact(&mock, "b@example.com", &json!({}));
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/merge",
        Some(&json!({"primaryObjectId": b2, "objectIdToMerge": c})),
        200,
    );
    clock.advance(Duration::from_secs(10));
    let restored = admin(&json!({"objectType": "contacts", "id": a}));
    assert_eq!(restored.status, 200, "{}", restored.text());
    assert_eq!(restored.json().unwrap()["archived"], false);
    let live = json(&mock, "GET", "/crm/v3/objects/contacts", None, 200);
    assert_eq!(ids(&live), [a.clone(), b2.clone()]);
    let archived = json(
        &mock,
        "GET",
        "/crm/v3/objects/contacts?archived=true",
        None,
        200,
    );
    assert_eq!(ids(&archived), std::slice::from_ref(&b));
    // Its e-mail names it again.
    let by_email = json(
        &mock,
        "GET",
        "/crm/v3/objects/contacts/a@example.com?idProperty=email",
        None,
        200,
    );
    assert_eq!(by_email["id"], a.as_str());
    // b's e-mail belongs to b2 now: 409 naming it. A merged id, a live one, an unknown one:
    // 404. A bad body: 400.
    let conflict = admin(&json!({"objectType": "contacts", "id": b}));
    assert_eq!(conflict.status, 409, "{}", conflict.text());
    assert!(conflict.text().contains(&format!("Existing ID: {b2}")));
    for id in [c.as_str(), a.as_str(), "999999"] {
        assert_eq!(
            admin(&json!({"objectType": "contacts", "id": id})).status,
            404
        );
    }
    assert_eq!(admin(&json!({"id": a})).status, 400);
    // Webhooks: …, the merge, then one contact.restore for a (only), with the clock's time.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let events = loop {
        let events: Vec<Value> = got
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| serde_json::from_slice::<Vec<Value>>(&r.body).unwrap())
            .collect();
        let done = events
            .iter()
            .any(|e| e["subscriptionType"] == "contact.restore");
        if done || std::time::Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let restores: Vec<&Value> = events
        .iter()
        .filter(|e| e["subscriptionType"] == "contact.restore")
        .collect();
    assert_eq!(restores.len(), 1, "{events:?}");
    assert_eq!(restores[0]["objectId"], a.parse::<u64>().unwrap());
    assert_eq!(restores[0]["occurredAt"], T0 + 10_000);
    let merges: Vec<&Value> = events
        .iter()
        .filter(|e| e["subscriptionType"] == "contact.merge")
        .collect();
    assert_eq!(merges.len(), 1);
    assert_eq!(
        merges[0]["mergedObjectIds"],
        json!([c.parse::<u64>().unwrap()])
    );
    assert_eq!(merges[0]["primaryObjectId"], b2.parse::<u64>().unwrap());
}

#[test]
fn upsert_by_a_custom_property_updates_the_record_holding_it() {
    let (mock, _clock) = start();
    let up = |value: &str, name: &str, status: u16| {
        json(
            &mock,
            "POST",
            "/crm/v3/objects/contacts/batch/upsert",
            Some(&json!({"inputs": [{"id": value, "idProperty": "ext_id",
                                     "properties": {"firstname": name}}]})),
            status,
        )
    };
    let first = up("EXT-1", "A", 200);
    assert_eq!(first["results"][0]["new"], true);
    let id = first["results"][0]["id"].clone();
    // The same value (any ASCII case) names the same record.
    let second = up("ext-1", "B", 200);
    assert_eq!(second["results"][0]["new"], false);
    assert_eq!(second["results"][0]["id"], id);
    assert_eq!(second["results"][0]["properties"]["firstname"], "B");
    // Batch update by the custom property too; an unknown value is a per-input 404.
    let upd = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        Some(&json!({"inputs": [
            {"id": "EXT-1", "idProperty": "ext_id", "properties": {"lastname": "L"}},
            {"id": "EXT-404", "idProperty": "ext_id", "objectWriteTraceId": "t",
             "properties": {"lastname": "L"}}]})),
        207,
    );
    assert_eq!(upd["results"][0]["id"], id);
    assert_eq!(upd["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(upd["errors"][0]["context"]["id"], json!(["EXT-404"]));
    assert_eq!(
        upd["errors"][0]["context"]["objectWriteTraceId"],
        json!(["t"])
    );
}

#[test]
fn a_batch_upsert_writing_an_undefined_property_is_refused_whole() {
    let (mock, _clock) = start();
    json(
        &mock,
        "POST",
        "/__mock/faults",
        Some(&json!({"undefinedProperties": {"contacts": ["legacy_code"]}})),
        200,
    );
    let v = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        Some(&json!({"inputs": [
            {"id": "ok@example.com", "idProperty": "email", "properties": {"firstname": "A"}},
            {"id": "bad@example.com", "idProperty": "email",
             "properties": {"firstname": "B", "legacy_code": "X"}},
        ]})),
        400,
    );
    assert_eq!(v["category"], "VALIDATION_ERROR");
    assert_eq!(v["errors"][0]["code"], "PROPERTY_DOESNT_EXIST");
    assert_eq!(
        v["errors"][0]["context"]["propertyName"],
        json!(["legacy_code"])
    );
    // Nothing written: the input without it is refused too.
    let none = json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/search",
        Some(&json!({"filterGroups": [{"filters": [
            {"propertyName": "email", "operator": "EQ", "value": "ok@example.com"}]}]})),
        200,
    );
    assert_eq!(none["total"], 0);
    // Without it the same input is written, and the stats count calls and written inputs.
    json(
        &mock,
        "POST",
        "/crm/v3/objects/contacts/batch/upsert",
        Some(&json!({"inputs": [
            {"id": "ok@example.com", "idProperty": "email", "properties": {"firstname": "A"}},
        ]})),
        200,
    );
    let stats = json(&mock, "GET", "/__mock/stats", None, 200);
    assert_eq!(stats["batchUpsert"], json!({"calls": 2, "written": 1}));
}
