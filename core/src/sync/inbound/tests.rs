#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::*;
use crate::api::ApiConfig;
use crate::id::PortalId;
use crate::mapping::{Mapping, Record};
use crate::records::{apply, CommitOutcome, Stored};

const MAP: &str = r#"{"objects":{"contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"firstname","field":"first_name"},
    {"hubspot":"closedate","field":"close_date","type":"date"},
    {"hubspot":"score","type":"number"},
    {"hubspot":"phone"},
    {"hubspot":"createdate","field":"created_at","type":"datetime","direction":"from_hubspot"},
    {"hubspot":"external_ref","field":"ref","direction":"to_hubspot"},
    {"field":"source","constant":"hubspot"}
]}}}"#;

fn mapping() -> Mapping {
    Mapping::from_json(MAP).unwrap()
}

fn config() -> InboundConfig {
    InboundConfig::for_object_type("contacts", None).unwrap()
}

fn body(records: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "records": records })).unwrap()
}

fn rec(id: &str, fields: Value) -> Value {
    json!({ "externalId": id, "fields": fields })
}

fn pending(records: Vec<InboundRecord>) -> Vec<PendingUpdate> {
    let mut c = Coalescer::new();
    c.add("r", records, 1_000);
    c.take_due(u64::MAX, 0, 100)
}

fn known(snapshot: Value, stamps: &[(&str, i64)]) -> Known {
    Known {
        hubspot_id: Some("501".into()),
        stored: Stored {
            version: 3,
            snapshot: Some(snapshot.to_string()),
        },
        hubspot_changed_at: stamps.iter().map(|(f, t)| ((*f).to_owned(), *t)).collect(),
    }
}

#[test]
fn config_defaults_and_checks() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let c = config();
    assert_eq!(c.id_property, "email");
    assert_eq!(c.batch_size, 100);
    assert_eq!(c.check(map), Ok(()));
    assert!(InboundConfig::for_object_type("companies", None).is_none());
    let bad = [
        InboundConfig {
            batch_size: 0,
            ..config()
        },
        InboundConfig {
            batch_size: 101,
            ..config()
        },
        InboundConfig {
            max_records: 0,
            ..config()
        },
        InboundConfig {
            id_property: "domain".into(),
            ..config()
        },
        InboundConfig {
            id_property: "createdate".into(),
            ..config()
        },
    ];
    for c in bad {
        assert_eq!(
            c.check(map).unwrap_err().code(),
            "inbound_config_invalid",
            "{c:?}"
        );
    }
}

#[test]
fn directions_in_the_map() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    use crate::mapping::FieldDirection as D;
    assert_eq!(map.field_direction("email"), Some(D::Both));
    assert_eq!(map.field_direction("ref"), Some(D::ToHubSpot));
    assert_eq!(map.field_direction("created_at"), Some(D::FromHubSpot));
    assert_eq!(map.field_direction("source"), None);
    // `readOnly: true` is `from_hubspot`; with another direction it is an error.
    let ro = r#"{"objects":{"contacts":{"fields":[{"hubspot":"createdate","readOnly":true}]}}}"#;
    let ro = Mapping::from_json(ro).unwrap();
    assert_eq!(
        ro.object("contacts").unwrap().field_direction("createdate"),
        Some(D::FromHubSpot)
    );
    for bad in [
        r#"{"hubspot":"a","readOnly":true,"direction":"both"}"#,
        r#"{"hubspot":"a","direction":"sideways"}"#,
        r#"{"field":"a","constant":1,"direction":"both"}"#,
    ] {
        let json = format!(r#"{{"objects":{{"contacts":{{"fields":[{bad}]}}}}}}"#);
        assert_eq!(
            Mapping::from_json(&json).unwrap_err().code(),
            "mapping_config_invalid",
            "{bad}"
        );
    }
    // Enrichment (HubSpot → destination) maps every direction, as before directions existed.
    let props = BTreeMap::from([
        (
            "createdate".to_owned(),
            Some("2024-01-01T00:00:00Z".to_owned()),
        ),
        ("external_ref".to_owned(), Some("x".to_owned())),
    ]);
    let read = map.to_destination(&props).unwrap();
    assert!(read.get("created_at").is_some() && read.get("ref").is_some());
    // The way back never writes a from_hubspot field.
    let written = map.to_hubspot(&read).unwrap();
    assert!(!written.contains_key("createdate"));
    assert_eq!(written.get("external_ref").map(String::as_str), Some("x"));
}

#[test]
fn parses_and_renders_in_hubspot_formats() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let records = parse_request(
        map,
        &config(),
        &body(&[
            json!({"externalId": "u1", "updatedAt": "2026-11-27T10:00:00Z", "fields": {
                "email": " Ada@Example.COM ", "first_name": "Ada", "close_date": "2015-05-01",
                "score": "12.50", "created_at": "2020-01-01T00:00:00Z", "source": "x"}}),
            json!({"externalId": "u2", "updatedAt": 1_700_000_000_000_i64,
                   "fields": {"email": "b@x.io"}}),
        ]),
    )
    .unwrap();
    assert_eq!(records.len(), 2);
    let r = &records[0];
    assert_eq!((r.index, r.external_id.as_str()), (0, "u1"));
    assert_eq!(r.key, "ada@example.com");
    assert_eq!(r.updated_at_ms, Some(1_795_773_600_000));
    // from_hubspot and constant fields are dropped.
    assert!(r.fields.get("created_at").is_none() && r.fields.get("source").is_none());
    assert_eq!(records[1].updated_at_ms, Some(1_700_000_000_000));
    // What a write of the new record sends: HubSpot's formats (docs/hubspot.md §7).
    let plan = plan(map, &config(), pending(records), &BTreeMap::new());
    let props = &plan.batches[0].inputs[0].properties;
    assert_eq!(
        props,
        &BTreeMap::from([
            ("closedate".to_owned(), "1430438400000".to_owned()),
            ("email".to_owned(), "ada@example.com".to_owned()),
            ("firstname".to_owned(), "Ada".to_owned()),
            ("score".to_owned(), "12.5".to_owned()),
        ])
    );
}

#[test]
fn malformed_requests_name_the_record_and_a_stable_code() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let ok = rec("ok", json!({"email": "a@b.c"}));
    /// (body, code, record index, field)
    type Case = (Vec<u8>, &'static str, Option<usize>, Option<&'static str>);
    let cases: Vec<Case> = vec![
        (b"not json".to_vec(), "inbound_body_malformed", None, None),
        (b"[]".to_vec(), "inbound_body_malformed", None, None),
        (
            br#"{"records":{}}"#.to_vec(),
            "inbound_body_malformed",
            None,
            None,
        ),
        (
            br#"{"records":[],"x":1}"#.to_vec(),
            "inbound_body_malformed",
            None,
            None,
        ),
        (
            body(&[ok.clone(), json!(1)]),
            "inbound_record_malformed",
            Some(1),
            None,
        ),
        (
            body(&[json!({"fields": {}})]),
            "inbound_record_malformed",
            Some(0),
            None,
        ),
        (
            body(&[json!({"externalId": "", "fields": {}})]),
            "inbound_record_malformed",
            Some(0),
            None,
        ),
        (
            body(&[json!({"externalId": "a", "fields": []})]),
            "inbound_record_malformed",
            Some(0),
            None,
        ),
        (
            body(&[json!({"externalId": "a", "fields": {"email": "a@b.c"}, "extra": 1})]),
            "inbound_record_malformed",
            Some(0),
            None,
        ),
        (
            body(&[
                ok.clone(),
                ok.clone(),
                rec("x", json!({"email": "a@b.c", "frist_name": "A"})),
            ]),
            "inbound_unknown_field",
            Some(2),
            Some("frist_name"),
        ),
        (
            body(&[
                ok.clone(),
                rec(
                    "x",
                    json!({"email": "a@b.c", "close_date": "2015-05-01T10:00:00Z"}),
                ),
            ]),
            "inbound_invalid_value",
            Some(1),
            Some("close_date"),
        ),
        (
            body(&[rec("x", json!({"email": "a@b.c", "score": "1,000"}))]),
            "inbound_invalid_value",
            Some(0),
            Some("score"),
        ),
        (
            body(&[rec("x", json!({"first_name": "A"}))]),
            "inbound_missing_id",
            Some(0),
            Some("email"),
        ),
        (
            body(&[rec("x", json!({"email": null}))]),
            "inbound_missing_id",
            Some(0),
            Some("email"),
        ),
        (
            body(&[
                json!({"externalId": "a", "updatedAt": "yesterday", "fields": {"email": "a@b.c"}}),
            ]),
            "inbound_bad_timestamp",
            Some(0),
            None,
        ),
        (
            body(&[json!({"externalId": "a", "updatedAt": true, "fields": {"email": "a@b.c"}})]),
            "inbound_bad_timestamp",
            Some(0),
            None,
        ),
    ];
    for (body, code, index, field) in cases {
        let err = parse_request(map, &config(), &body).unwrap_err();
        let text = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(
            (err.code(), err.index(), err.field_name()),
            (code, index, field),
            "{text}"
        );
    }
    // The message never carries a value.
    let err = parse_request(
        map,
        &config(),
        &body(&[rec("x", json!({"email": "secret@x.io", "score": "secret"}))]),
    )
    .unwrap_err();
    assert_eq!(err.cause(), Some("mapping_malformed"));
    assert!(!err.to_string().contains("secret"), "{err}");
    let many: Vec<Value> = (0..3)
        .map(|i| rec(&i.to_string(), json!({"email": "a@b.c"})))
        .collect();
    let small = InboundConfig {
        max_records: 2,
        ..config()
    };
    assert_eq!(
        parse_request(map, &small, &body(&many)).unwrap_err().code(),
        "inbound_too_many_records"
    );
}

#[test]
fn only_changed_properties_are_written() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let stored = json!({"email": "a@b.c", "first_name": "Ada", "close_date": "2015-05-01",
                        "score": 1, "created_at": "2020-01-01T00:00:00.000Z"});
    let records = parse_request(
        map,
        &config(),
        &body(&[
            // Same values in other spellings: unchanged.
            rec(
                "same",
                json!({"email": "A@B.C", "close_date": 1_430_438_400_000_i64,
                               "score": "1.0", "first_name": "Ada"}),
            ),
            // from_hubspot field differs: still unchanged (never written).
            rec(
                "ro",
                json!({"email": "a@b.c", "created_at": "1999-01-01T00:00:00Z"}),
            ),
        ]),
    )
    .unwrap();
    let mut k = BTreeMap::new();
    k.insert("a@b.c".to_owned(), known(stored.clone(), &[]));
    let p = plan(map, &config(), pending(records), &k);
    assert!(p.batches.is_empty(), "{:?}", p.batches);
    assert_eq!(p.unchanged.len(), 1);
    assert_eq!(p.unchanged[0].sources.len(), 2);

    let records = parse_request(
        map,
        &config(),
        &body(&[rec(
            "chg",
            json!({"email": "a@b.c", "first_name": "Ada L.", "score": 1}),
        )]),
    )
    .unwrap();
    let p = plan(map, &config(), pending(records), &k);
    assert_eq!(p.batches.len(), 1);
    assert_eq!(
        p.batches[0].inputs[0].properties,
        BTreeMap::from([("firstname".to_owned(), "Ada L.".to_owned())])
    );
}

#[test]
fn conflicts_follow_the_rule_and_report_the_loser() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let stored = json!({"email": "a@b.c", "first_name": "HubSpot", "ref": "H"});
    // (rule, field, user time, hubspot time, expected winner)
    let cases = [
        (
            ConflictRule::NewerWins,
            "first_name",
            2_000,
            1_000,
            Side::User,
        ),
        (
            ConflictRule::NewerWins,
            "first_name",
            1_000,
            2_000,
            Side::HubSpot,
        ),
        (
            ConflictRule::NewerWins,
            "first_name",
            1_500,
            1_500,
            Side::HubSpot,
        ),
        (
            ConflictRule::HubSpotWins,
            "first_name",
            9_000,
            1_000,
            Side::HubSpot,
        ),
        (
            ConflictRule::UserWins,
            "first_name",
            1_000,
            9_000,
            Side::User,
        ),
        // A to_hubspot field is the user's whatever the rule and times.
        (ConflictRule::HubSpotWins, "ref", 1_000, 9_000, Side::User),
    ];
    for (rule, field, user_at, hubspot_at, winner) in cases {
        let cfg = InboundConfig {
            conflict_rule: rule,
            ..config()
        };
        let records = parse_request(
            map,
            &cfg,
            &body(&[json!({"externalId": "x", "updatedAt": user_at,
                           "fields": {"email": "a@b.c", field: "User"}})]),
        )
        .unwrap();
        let k = BTreeMap::from([(
            "a@b.c".to_owned(),
            known(stored.clone(), &[(field, hubspot_at)]),
        )]);
        let p = plan(map, &cfg, pending(records), &k);
        let conflicts = match winner {
            Side::User => {
                assert!(p.unchanged.is_empty());
                assert_eq!(p.batches[0].inputs[0].properties.len(), 1);
                p.batches[0].inputs[0].conflicts.clone()
            }
            Side::HubSpot => {
                assert!(p.batches.is_empty());
                p.unchanged[0].conflicts.clone()
            }
        };
        let expected = Conflict {
            field: field.to_owned(),
            winner,
            hubspot_value: stored[field].clone(),
            hubspot_changed_at: hubspot_at,
            user_value: json!("User"),
            user_changed_at: user_at,
        };
        assert_eq!(
            conflicts,
            vec![expected],
            "{rule:?} {field} {user_at} {hubspot_at}"
        );
    }
    // No HubSpot change since the last sync: no conflict, the user's change is written.
    let records = parse_request(
        map,
        &config(),
        &body(&[rec("x", json!({"email": "a@b.c", "first_name": "U"}))]),
    )
    .unwrap();
    let k = BTreeMap::from([("a@b.c".to_owned(), known(stored.clone(), &[("ref", 5)]))]);
    let p = plan(map, &config(), pending(records), &k);
    assert!(p.batches[0].inputs[0].conflicts.is_empty());
}

#[test]
fn coalescing_merges_updates_within_the_window() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let parse = |v: Vec<Value>| parse_request(map, &config(), &body(&v)).unwrap();
    let mut c = Coalescer::new();
    c.add(
        "r1",
        parse(vec![json!({"externalId": "x", "updatedAt": 100,
        "fields": {"email": "a@b.c", "first_name": "A", "score": 1}})]),
        10_000,
    );
    // Same record (another spelling of its key), later: merges; an older change does not win.
    c.add("r2", parse(vec![
        json!({"externalId": "x", "updatedAt": 200, "fields": {"email": "A@b.c", "first_name": "B"}}),
        json!({"externalId": "x", "updatedAt": 50, "fields": {"email": "a@b.c", "score": 0}}),
        rec("y", json!({"email": "y@b.c"})),
    ]), 11_000);
    assert_eq!(c.len(), 2);
    assert_eq!(c.next_due_ms(2_000), Some(12_000));
    assert!(c.take_due(11_999, 2_000, 100).is_empty());
    let due = c.take_due(12_000, 2_000, 100);
    assert_eq!(due.len(), 1);
    let x = &due[0];
    assert_eq!(x.key, "a@b.c");
    assert_eq!(x.fields.get("first_name"), Some(&json!("B")));
    assert_eq!(x.fields.get("score"), Some(&json!(1)));
    assert_eq!(x.sources.len(), 3);
    // One write for the three updates.
    let p = plan(map, &config(), due, &BTreeMap::new());
    assert_eq!(p.batches.len(), 1);
    assert_eq!(p.batches[0].inputs.len(), 1);
    // Put back under a newer pending update: the newer value wins, sources are kept.
    let y = c.take_due(13_000, 2_000, 100);
    c.add(
        "r3",
        parse(vec![json!({"externalId": "y", "updatedAt": i64::MAX - 1,
        "fields": {"email": "y@b.c", "first_name": "new"}})]),
        14_000,
    );
    c.put_back(y);
    let again = c.take_due(u64::MAX, 0, 100);
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].fields.get("first_name"), Some(&json!("new")));
    assert_eq!(again[0].sources.len(), 2);
    // Full batches do not wait for the window.
    let many: Vec<Value> = (0..250)
        .map(|i| rec("m", json!({"email": format!("{i}@b.c")})))
        .collect();
    c.add("r4", parse(many), 20_000);
    assert_eq!(c.take_due(20_000, 2_000, 100).len(), 200);
    assert_eq!(c.len(), 50);
    // The state survives the host's storage.
    let stored: Coalescer = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(stored, c);
}

fn three_input_batch(map: &crate::mapping::ObjectMap) -> InboundBatch {
    let records = parse_request(
        map,
        &config(),
        &body(&[
            rec("e0", json!({"email": "a0@x.io", "first_name": "A"})),
            rec("e1", json!({"email": "a1@x.io", "first_name": "B"})),
            rec("e2", json!({"email": "a2@x.io", "first_name": "C"})),
        ]),
    )
    .unwrap();
    plan(map, &config(), pending(records), &BTreeMap::new())
        .batches
        .remove(0)
}

#[test]
fn upsert_request_has_trace_ids_and_id_property() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let batch = three_input_batch(map);
    let req = batch.request(&ApiConfig::default(), "contacts", "email");
    assert_eq!(
        req.uri().path(),
        "/crm/objects/2026-03/contacts/batch/upsert"
    );
    let sent: Value = serde_json::from_slice(req.body()).unwrap();
    let traces: BTreeSet<&str> = sent["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            assert_eq!(i["idProperty"], "email");
            i["objectWriteTraceId"].as_str().unwrap()
        })
        .collect();
    assert_eq!(traces.len(), 3);
    assert_eq!(sent["inputs"][1]["id"], "a1@x.io");
}

#[test]
fn a_whole_batch_refused_for_one_inputs_property_fails_that_input_and_sends_the_rest_again() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let headers = http::HeaderMap::new();
    // HubSpot refuses a batch upsert whole when one input writes a property the portal does
    // not have: 400 VALIDATION_ERROR, the property named in errors[].context.propertyName.
    let mut batch = three_input_batch(map);
    batch.inputs[1]
        .properties
        .insert("legacy_code".into(), "X".into());
    let response = json!({"status": "error", "category": "VALIDATION_ERROR",
        "message": "Property values were not valid",
        "errors": [{"message": "Property \"legacy_code\" does not exist",
                    "code": "PROPERTY_DOESNT_EXIST",
                    "context": {"propertyName": ["legacy_code"]}}]});
    let BatchResult::Split { failed, again } =
        batch.complete(map, "email", 400, &headers, response.to_string().as_bytes())
    else {
        panic!("not split");
    };
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].key.as_str(), failed[0].code.as_str()),
        ("a1@x.io", "PROPERTY_DOESNT_EXIST")
    );
    assert_eq!(failed[0].properties, ["legacy_code"]);
    assert_eq!(again.len(), 1);
    let rest: Vec<&str> = again[0]
        .inputs
        .iter()
        .map(|i| i.update.key.as_str())
        .collect();
    assert_eq!(rest, ["a0@x.io", "a2@x.io"]);
    // The receipt records the failed input at once; the others stay pending.
    let source = &failed[0].update.sources[0];
    let mut receipt = Receipt::new(&source.receipt, "contacts", 0, &[]);
    receipt.records = (0..3)
        .map(|i| RecordOutcome {
            index: i,
            external_id: format!("e{i}"),
            status: RecordStatus::Pending,
            conflicts: Vec::new(),
        })
        .collect();
    receipt.record_batch(&BatchResult::Split {
        failed: failed.clone(),
        again: Vec::new(),
    });
    let statuses: Vec<&RecordStatus> = receipt.records.iter().map(|r| &r.status).collect();
    assert_eq!(
        statuses,
        [
            &RecordStatus::Pending,
            &RecordStatus::Failed {
                code: "PROPERTY_DOESNT_EXIST".into()
            },
            &RecordStatus::Pending
        ]
    );
    // The same refusal when every input carries the property: every input fails, no split.
    let mut all = three_input_batch(map);
    for input in &mut all.inputs {
        input.properties.insert("legacy_code".into(), "X".into());
    }
    let BatchResult::Done { written, failed } =
        all.complete(map, "email", 400, &headers, response.to_string().as_bytes())
    else {
        panic!("not done");
    };
    assert!(written.is_empty());
    assert!(failed.iter().all(|f| f.code == "PROPERTY_DOESNT_EXIST") && failed.len() == 3);
}

#[test]
fn partial_failures_map_to_their_records() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let headers = http::HeaderMap::new();
    let ok = |trace: &str, id: &str, email: &str| {
        json!({"id": id, "objectWriteTraceId": trace, "new": true,
               "properties": {"email": email, "firstname": "x"}})
    };
    // 207: input 1 refused by trace id; 0 matched by trace id, 2 by its email only.
    let response = json!({"status": "COMPLETE", "numErrors": 1,
        "results": [ok("in-0", "10", "a0@x.io"),
                    {"id": "12", "properties": {"email": "A2@x.io"}}],
        "errors": [{"status": "error", "category": "VALIDATION_ERROR", "code": "INVALID_OPTION",
                    "message": "'B' is not a valid option",
                    "context": {"objectWriteTraceId": ["in-1"], "propertyName": ["firstname"]}}]});
    let result = three_input_batch(map).complete(
        map,
        "email",
        207,
        &headers,
        response.to_string().as_bytes(),
    );
    let BatchResult::Done { written, failed } = result else {
        panic!("not done");
    };
    let ids: Vec<(&str, &str)> = written
        .iter()
        .map(|w| (w.key.as_str(), w.hubspot_id.as_str()))
        .collect();
    assert_eq!(ids, [("a0@x.io", "10"), ("a2@x.io", "12")]);
    assert_eq!(failed.len(), 1);
    assert_eq!(
        (failed[0].key.as_str(), failed[0].code.as_str()),
        ("a1@x.io", "INVALID_OPTION")
    );
    assert_eq!(failed[0].properties, ["firstname"]);
    assert_eq!(failed[0].update.sources[0].external_id, "e1");

    // Matched by trace id alone: results without the idProperty, two errors with their codes.
    let response = json!({"status": "COMPLETE",
        "results": [{"id": "11", "objectWriteTraceId": "in-1", "properties": {}}],
        "errors": [{"code": "INVALID_EMAIL", "context": {"objectWriteTraceId": ["in-2"]}},
                   {"code": "INVALID_OPTION", "context": {"objectWriteTraceId": ["in-0"]}}]});
    let BatchResult::Done { written, failed } = three_input_batch(map).complete(
        map,
        "email",
        207,
        &headers,
        response.to_string().as_bytes(),
    ) else {
        panic!("not done");
    };
    assert_eq!(written.len(), 1);
    assert_eq!(
        (written[0].key.as_str(), written[0].hubspot_id.as_str()),
        ("a1@x.io", "11")
    );
    let codes: Vec<(&str, &str)> = failed
        .iter()
        .map(|f| (f.key.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [("a0@x.io", "INVALID_OPTION"), ("a2@x.io", "INVALID_EMAIL")]
    );

    // An error naming its input by id; one naming nobody fails the inputs left over.
    let response = json!({"status": "COMPLETE", "results": [ok("in-0", "10", "a0@x.io")],
        "errors": [{"code": "PROPERTY_DOESNT_EXIST", "context": {"ids": ["A1@X.IO"]}},
                   {"category": "VALIDATION_ERROR", "message": "something"}]});
    let BatchResult::Done { written, failed } = three_input_batch(map).complete(
        map,
        "email",
        207,
        &headers,
        response.to_string().as_bytes(),
    ) else {
        panic!("not done");
    };
    assert_eq!(written.len(), 1);
    let codes: Vec<(&str, &str)> = failed
        .iter()
        .map(|f| (f.key.as_str(), f.code.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            ("a1@x.io", "PROPERTY_DOESNT_EXIST"),
            ("a2@x.io", "VALIDATION_ERROR")
        ]
    );

    // A whole-batch 400 naming no input (two inputs resolving to one record) is cut in two
    // halves to send again; a single input refused so fails with the code.
    let response =
        json!({"status": "error", "category": "VALIDATION_ERROR", "message": "duplicate"});
    let BatchResult::Split { failed, again } = three_input_batch(map).complete(
        map,
        "email",
        400,
        &headers,
        response.to_string().as_bytes(),
    ) else {
        panic!("not split");
    };
    assert!(failed.is_empty());
    let halves: Vec<Vec<&str>> = again
        .iter()
        .map(|b| b.inputs.iter().map(|i| i.update.key.as_str()).collect())
        .collect();
    assert_eq!(halves, [vec!["a0@x.io"], vec!["a1@x.io", "a2@x.io"]]);
    let single = again.into_iter().next().unwrap();
    let BatchResult::Done { written, failed } =
        single.complete(map, "email", 400, &headers, response.to_string().as_bytes())
    else {
        panic!("not done");
    };
    assert!(written.is_empty());
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].code, "VALIDATION_ERROR");

    // 429 and 5xx decide nothing: the updates come back for a retry.
    for status in [429, 500, 503, 423] {
        match three_input_batch(map).complete(map, "email", status, &headers, b"{}") {
            BatchResult::Retry { updates, .. } => assert_eq!(updates.len(), 3),
            other => panic!("{status}: {other:?}"),
        }
    }
}

#[test]
fn receipts_are_stable_and_serialisable() {
    let a = receipt_id(PortalId::new(7), "contacts", "msg_1");
    assert_eq!(a, receipt_id(PortalId::new(7), "contacts", "msg_1"));
    assert_ne!(a, receipt_id(PortalId::new(7), "contacts", "msg_2"));
    assert_ne!(a, receipt_id(PortalId::new(8), "contacts", "msg_1"));
    assert!(a.starts_with("hsr1_") && a.len() == 45);
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let records = parse_request(
        map,
        &config(),
        &body(&[rec("e0", json!({"email": "a@b.c"}))]),
    )
    .unwrap();
    let mut r = Receipt::new(&a, "contacts", 5, &records);
    assert!(!r.is_complete());
    let src = SourceRef {
        receipt: a.clone(),
        index: 0,
        external_id: "e0".into(),
    };
    let other = SourceRef {
        receipt: "hsr1_other".into(),
        ..src.clone()
    };
    r.record(&[other], &RecordStatus::Unchanged, &[]);
    assert!(!r.is_complete());
    r.record(
        &[src],
        &RecordStatus::Failed {
            code: "INVALID_OPTION".into(),
        },
        &[],
    );
    assert!(r.is_complete());
    let v = serde_json::to_value(&r).unwrap();
    assert_eq!(
        v,
        json!({"id": a, "objectType": "contacts", "receivedAt": 5, "records": [
            {"index": 0, "externalId": "e0", "status": "failed", "code": "INVALID_OPTION"}]})
    );
    assert_eq!(serde_json::from_value::<Receipt>(v).unwrap(), r);
}

/// A fake HubSpot portal: contacts by email, the batch upsert endpoint with HubSpot's 207, and
/// a count of calls.
struct FakeHubSpot {
    /// email → (id, properties, times written)
    contacts: BTreeMap<String, (String, BTreeMap<String, String>, u32)>,
    /// The portal's properties: writing any other is `PROPERTY_DOESNT_EXIST`.
    properties: BTreeSet<&'static str>,
    calls: usize,
    next_id: u64,
}

impl FakeHubSpot {
    fn new() -> Self {
        Self {
            contacts: BTreeMap::new(),
            properties: [
                "email",
                "firstname",
                "closedate",
                "score",
                "phone",
                "createdate",
            ]
            .into(),
            calls: 0,
            next_id: 100,
        }
    }

    fn upsert(&mut self, req: &http::Request<Vec<u8>>) -> (u16, Vec<u8>) {
        self.calls += 1;
        assert!(req.uri().path().ends_with("/contacts/batch/upsert"));
        let sent: Value = serde_json::from_slice(req.body()).unwrap();
        let inputs = sent["inputs"].as_array().unwrap();
        assert!(inputs.len() <= 100, "HubSpot's batch limit");
        let mut ids = BTreeSet::new();
        let (mut results, mut errors) = (Vec::new(), Vec::new());
        for input in inputs {
            assert_eq!(input["idProperty"], "email");
            let email = input["id"].as_str().unwrap().to_owned();
            assert!(
                ids.insert(email.clone()),
                "two inputs resolve to one record"
            );
            let trace = input["objectWriteTraceId"].as_str().unwrap();
            let props = input["properties"].as_object().unwrap();
            if let Some(bad) = props.keys().find(|p| !self.properties.contains(p.as_str())) {
                errors.push(json!({"status": "error", "category": "VALIDATION_ERROR",
                    "code": "PROPERTY_DOESNT_EXIST", "message": "Property does not exist",
                    "context": {"objectWriteTraceId": [trace], "propertyName": [bad]}}));
                continue;
            }
            let next = &mut self.next_id;
            let created = !self.contacts.contains_key(&email);
            let entry = self.contacts.entry(email.clone()).or_insert_with(|| {
                *next += 1;
                (
                    next.to_string(),
                    BTreeMap::from([("email".to_owned(), email.clone())]),
                    0,
                )
            });
            for (k, v) in props {
                let mut v = v.as_str().unwrap().to_owned();
                if k == "phone" {
                    // HubSpot rewrites phone numbers (docs/hubspot.md §4.1,
                    // bruin-data/ingestr#1203).
                    v = format!("+31 {}", v.trim_start_matches('0'));
                }
                entry.1.insert(k.clone(), v);
            }
            entry.2 += 1;
            results.push(
                json!({"id": entry.0, "objectWriteTraceId": trace, "new": created,
                                "properties": entry.1}),
            );
        }
        let status = if errors.is_empty() { 200 } else { 207 };
        let body = json!({"status": "COMPLETE", "results": results, "errors": errors,
                          "numErrors": errors.len()});
        (status, body.to_string().into_bytes())
    }

    /// The current values, as a webhook consumer reads them back.
    fn read(&self, email: &str) -> (String, BTreeMap<String, Option<String>>) {
        let (id, props, _) = &self.contacts[email];
        (
            id.clone(),
            props
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.clone())))
                .collect(),
        )
    }
}

/// The host's side: the record store, the id map, receipts, dead letters, echo guards.
#[derive(Default)]
struct Host {
    store: BTreeMap<String, Stored>,
    id_map: BTreeMap<String, String>,
    stamps: BTreeMap<String, BTreeMap<String, i64>>,
    receipts: BTreeMap<String, Receipt>,
    coalescer: Coalescer,
    dead_letters: Vec<Failed>,
    guards: BTreeMap<String, crate::diff::EchoGuard>,
}

impl Host {
    /// `POST /sync/contacts`: 400 on a malformed body, else 202 with the receipt id.
    fn accept(
        &mut self,
        map: &crate::mapping::ObjectMap,
        webhook_id: &str,
        body: &[u8],
        now: u64,
    ) -> Result<String, InboundError> {
        let id = receipt_id(PortalId::new(1), "contacts", webhook_id);
        if self.receipts.contains_key(&id) {
            return Ok(id);
        }
        let records = parse_request(map, &config(), body)?;
        self.receipts
            .insert(id.clone(), Receipt::new(&id, "contacts", now, &records));
        self.coalescer.add(&id, records, now);
        Ok(id)
    }

    /// The Durable Object's alarm: flush what is due, write, record outcomes.
    fn flush(&mut self, map: &crate::mapping::ObjectMap, hubspot: &mut FakeHubSpot, now: u64) {
        let cfg = config();
        let due = self
            .coalescer
            .take_due(now, cfg.coalesce_window_ms, cfg.batch_size);
        let known: BTreeMap<String, Known> = due
            .iter()
            .filter_map(|u| {
                let id = self.id_map.get(&u.key)?;
                Some((
                    u.key.clone(),
                    Known {
                        hubspot_id: Some(id.clone()),
                        stored: self.store.get(id).cloned().unwrap_or_default(),
                        hubspot_changed_at: self.stamps.get(id).cloned().unwrap_or_default(),
                    },
                ))
            })
            .collect();
        let plan = plan(map, &cfg, due, &known);
        for receipt in self.receipts.values_mut() {
            receipt.record_plan(&plan);
        }
        for batch in plan.batches {
            let req = batch.request(&ApiConfig::default(), "contacts", &cfg.id_property);
            let (status, body) = hubspot.upsert(&req);
            let result = batch.complete(
                map,
                &cfg.id_property,
                status,
                &http::HeaderMap::new(),
                &body,
            );
            for receipt in self.receipts.values_mut() {
                receipt.record_batch(&result);
            }
            let BatchResult::Done { written, failed } = result else {
                panic!("the fake does not fail whole batches");
            };
            for w in written {
                let current = self.store.get(&w.hubspot_id).cloned().unwrap_or_default();
                let (state, outcome) = apply(&current, &w.commit(&current));
                assert!(matches!(outcome, CommitOutcome::Committed { .. }));
                self.store.insert(w.hubspot_id.clone(), state.unwrap());
                self.id_map.insert(w.key.clone(), w.hubspot_id.clone());
                if let Some(stamps) = self.stamps.get_mut(&w.hubspot_id) {
                    for field in w.patch.as_map().keys() {
                        stamps.remove(field);
                    }
                }
                self.guards.insert(w.hubspot_id.clone(), w.echo);
            }
            self.dead_letters.extend(failed);
        }
    }
}

fn status_counts(receipt: &Receipt) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for line in &receipt.records {
        let name = match &line.status {
            RecordStatus::Pending => "pending".to_owned(),
            RecordStatus::Written { .. } => "written".to_owned(),
            RecordStatus::Unchanged => "unchanged".to_owned(),
            RecordStatus::Failed { code } => format!("failed:{code}"),
        };
        *counts.entry(name).or_insert(0) += 1;
    }
    counts
}

/// Issue 10 §3 end to end in memory: 250 records, 100 unchanged → writes for 150 in 2 calls;
/// one record with a property HubSpot does not have → dead-lettered with its code, the rest
/// written; the same request twice → written once; our write's echo → not forwarded; the next
/// real change → diffed correctly.
#[test]
fn inbound_path_against_a_fake_hubspot() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let mut hubspot = FakeHubSpot::new();
    let mut host = Host::default();
    let record = |i: usize, name: &str| {
        let mut fields = json!({"email": format!("c{i}@example.com"), "first_name": name,
                                "close_date": "2026-01-15", "score": i, "phone": "0612345678"});
        if i == 7 {
            // `external_ref` is mapped but the portal has no such property.
            fields["ref"] = json!("R7");
        }
        rec(&format!("ext-{i}"), fields)
    };
    // 100 records synced before: in HubSpot and in the store with these values.
    let seed: Vec<Value> = (0..100).map(|i| record(1000 + i, "Seed")).collect();
    host.accept(map, "seed", &body(&seed), 0).unwrap();
    host.flush(map, &mut hubspot, 10_000);
    assert_eq!(hubspot.calls, 1);
    hubspot.calls = 0;

    // The request: those 100 unchanged, 150 new ones (one of them with the bad property).
    let mut records: Vec<Value> = seed.clone();
    records.extend((0..150).map(|i| record(i, "New")));
    let request = body(&records);
    let receipt = host.accept(map, "msg-1", &request, 20_000).unwrap();
    host.flush(map, &mut hubspot, 20_000 + InboundConfig::DEFAULT_WINDOW_MS);
    assert_eq!(hubspot.calls, 2, "150 writes in batches of 100");
    let counts = status_counts(&host.receipts[&receipt]);
    assert_eq!(
        counts,
        BTreeMap::from([
            ("failed:PROPERTY_DOESNT_EXIST".to_owned(), 1),
            ("unchanged".to_owned(), 100),
            ("written".to_owned(), 149),
        ])
    );
    let line = &host.receipts[&receipt].records[107];
    assert_eq!(line.external_id, "ext-7");
    assert_eq!(
        line.status,
        RecordStatus::Failed {
            code: "PROPERTY_DOESNT_EXIST".into()
        }
    );
    assert_eq!(host.dead_letters.len(), 1);
    assert_eq!(host.dead_letters[0].update.sources[0].external_id, "ext-7");
    assert_eq!(host.dead_letters[0].properties, ["external_ref"]);
    assert!(!hubspot.contacts.contains_key("c7@example.com"));
    assert_eq!(hubspot.contacts.len(), 249);

    // The same request again (a sender's retry: same webhook-id): nothing is written.
    assert_eq!(
        host.accept(map, "msg-1", &request, 30_000).unwrap(),
        receipt
    );
    host.flush(map, &mut hubspot, 40_000);
    assert_eq!(hubspot.calls, 2);
    // The same content under a new id: only the dead-lettered record is tried again.
    let again = host.accept(map, "msg-2", &request, 50_000).unwrap();
    host.flush(map, &mut hubspot, 60_000);
    assert_eq!(hubspot.calls, 3);
    assert!(hubspot.contacts.values().all(|(_, _, writes)| *writes == 1));
    assert_eq!(status_counts(&host.receipts[&again])["unchanged"], 249);

    // Re-drive: the portal gets the missing property; the dead letter's update is put back.
    hubspot.properties.insert("external_ref");
    let letter = host.dead_letters.pop().unwrap();
    assert_eq!(letter.update.sources[0].receipt, again);
    host.coalescer.put_back(vec![letter.update]);
    host.flush(map, &mut hubspot, 70_000);
    assert_eq!(hubspot.calls, 4);
    assert_eq!(hubspot.contacts["c7@example.com"].1["external_ref"], "R7");
    assert!(matches!(
        host.receipts[&again].records[107].status,
        RecordStatus::Written { .. }
    ));

    // HubSpot's webhook for our write is our echo: not forwarded.
    let (id, current) = hubspot.read("c3@example.com");
    assert_eq!(current["phone"].as_deref(), Some("+31 612345678"));
    // The receipt says HubSpot stored another value than the one written.
    match &host.receipts[&receipt].records[103].status {
        RecordStatus::Written { rewritten, .. } => assert_eq!(rewritten, &["phone"]),
        other => panic!("{other:?}"),
    }
    let guard = &host.guards[&id];
    assert!(guard.is_echo(map, &id, "firstname", &current));
    assert!(guard.is_echo(map, &id, "phone", &current));
    // A real change made in HubSpot afterwards is not.
    hubspot
        .contacts
        .get_mut("c3@example.com")
        .unwrap()
        .1
        .insert("firstname".into(), "Edited".into());
    let (_, current) = hubspot.read("c3@example.com");
    assert!(!guard.is_echo(map, &id, "firstname", &current));

    // Enrichment forwards that change and records it in the store, with when HubSpot made it.
    let v = host.store[&id].clone();
    let mut snapshot = Record::from_snapshot(v.snapshot.as_deref().unwrap()).unwrap();
    snapshot.insert("first_name", json!("Edited"));
    let (state, _) = apply(
        &v,
        &crate::records::Commit {
            id: id.clone(),
            expect: Some(v.version),
            write: crate::records::Write::Put(snapshot.to_snapshot()),
        },
    );
    host.store.insert(id.clone(), state.unwrap());
    host.stamps
        .entry(id.clone())
        .or_default()
        .insert("first_name".into(), 75_000);

    // The user's older change to the same field loses (newer wins): no call, the loss reported.
    let changed = body(
        &[json!({"externalId": "ext-3", "updatedAt": 74_000, "fields":
        {"email": "c3@example.com", "first_name": "Stale", "close_date": 1_768_435_200_000_i64,
         "score": "3", "ref": null}})],
    );
    let r = host.accept(map, "msg-3", &changed, 76_000).unwrap();
    host.flush(map, &mut hubspot, 80_000);
    assert_eq!(hubspot.calls, 4);
    let line = &host.receipts[&r].records[0];
    assert_eq!(line.status, RecordStatus::Unchanged);
    assert_eq!(line.conflicts.len(), 1);
    assert_eq!(
        (
            line.conflicts[0].winner,
            &line.conflicts[0].user_value,
            &line.conflicts[0].hubspot_value
        ),
        (Side::HubSpot, &json!("Stale"), &json!("Edited"))
    );
    // A newer change wins: one property written, one call, the overwritten value reported.
    let changed = body(&[json!({"externalId": "ext-3", "updatedAt": 95_000,
        "fields": {"email": "c3@example.com", "first_name": "Newer"}})]);
    let r = host.accept(map, "msg-4", &changed, 96_000).unwrap();
    host.flush(map, &mut hubspot, 100_000);
    assert_eq!(hubspot.calls, 5);
    let (_, current) = hubspot.read("c3@example.com");
    assert_eq!(current["firstname"].as_deref(), Some("Newer"));
    assert_eq!(hubspot.contacts["c3@example.com"].2, 2);
    let line = &host.receipts[&r].records[0];
    assert!(matches!(line.status, RecordStatus::Written { .. }));
    assert_eq!(line.conflicts[0].winner, Side::User);
    assert_eq!(line.conflicts[0].hubspot_value, json!("Edited"));
    // The stamp of the written field is cleared: the next change is no conflict.
    assert!(host.stamps[&id].is_empty());
    // The stored snapshot holds the user's values in canonical form.
    let stored = Record::from_snapshot(host.store[&id].snapshot.as_deref().unwrap()).unwrap();
    assert_eq!(stored.get("first_name"), Some(&json!("Newer")));
    assert_eq!(stored.get("close_date"), Some(&json!("2026-01-15")));
}

/// Issue 10 §7's inbound case, counted in core: 10,000 records of which 30 % are unchanged
/// plan 70 batch upserts of at most 100 inputs, every key once.
#[test]
fn ten_thousand_records_thirty_percent_unchanged_make_70_calls() {
    let m = mapping();
    let map = m.object("contacts").unwrap();
    let cfg = config();
    let mut known = BTreeMap::new();
    let records: Vec<Value> = (0..10_000)
        .map(|i| {
            let email = format!("p{i}@example.com");
            let fields = json!({"email": email, "first_name": format!("N{i}"), "score": i});
            if i % 10 < 3 {
                known.insert(email, known_record(&fields));
            }
            rec(&format!("e{i}"), fields)
        })
        .collect();
    let parsed = parse_request(
        map,
        &InboundConfig {
            max_records: 10_000,
            ..cfg.clone()
        },
        &body(&records),
    )
    .unwrap();
    let mut c = Coalescer::new();
    c.add("r", parsed, 0);
    let due = c.take_due(
        cfg.coalesce_window_ms,
        cfg.coalesce_window_ms,
        cfg.batch_size,
    );
    assert!(c.is_empty());
    let p = plan(map, &cfg, due, &known);
    assert_eq!(p.unchanged.len(), 3_000);
    assert_eq!(p.batches.len(), 70);
    let mut keys = BTreeSet::new();
    for batch in &p.batches {
        assert!(batch.inputs.len() <= 100);
        let traces: BTreeSet<&str> = batch.inputs.iter().map(|i| i.trace_id.as_str()).collect();
        assert_eq!(traces.len(), batch.inputs.len());
        for input in &batch.inputs {
            assert!(keys.insert(input.update.key.clone()));
        }
    }
    assert_eq!(keys.len(), 7_000);
}

fn known_record(fields: &Value) -> Known {
    Known {
        hubspot_id: Some("1".into()),
        stored: Stored {
            version: 1,
            snapshot: Some(fields.to_string()),
        },
        hubspot_changed_at: BTreeMap::new(),
    }
}

#[test]
fn settings_from_json() {
    let m = mapping();
    let s = InboundSettings::from_json(
        r#"{"contacts": {"batchSize": 50, "conflictRule": "hubspot_wins", "coalesceWindowMs": 0}}"#,
        &m,
    )
    .unwrap();
    let c = s.get(&m, "0-1").unwrap();
    assert_eq!(c.id_property, "email");
    assert_eq!((c.batch_size, c.coalesce_window_ms), (50, 0));
    assert_eq!(c.conflict_rule, ConflictRule::HubSpotWins);
    assert_eq!(c.max_records, InboundConfig::DEFAULT_MAX_RECORDS);
    assert!(s.get(&m, "companies").is_none());
    assert!(InboundSettings::from_json("{}", &m)
        .unwrap()
        .get(&m, "contacts")
        .is_none());
    for bad in [
        "[]",
        r#"{"contacts": {"batchSize": 101}}"#,
        r#"{"contacts": {"batchsize": 10}}"#,
        r#"{"contacts": {"coalesceWindowMs": 60001}}"#,
        r#"{"contacts": {"maxRecords": 10001}}"#,
        r#"{"contacts": {"maxRecords": 0}}"#,
        r#"{"contacts": {"conflictRule": "coin_flip"}}"#,
        r#"{"contacts": {"idProperty": "hs_unknown"}}"#,
        r#"{"contacts": {}, "contact": {}}"#,
        r#"{"deals": {"idProperty": "email"}}"#,
    ] {
        let err = InboundSettings::from_json(bad, &m).unwrap_err();
        assert_eq!(err.code(), "inbound_config_invalid", "{bad}");
    }
}

#[test]
fn receipts_expire_after_seven_days() {
    let now = 30 * 24 * 3_600_000;
    assert_eq!(Receipt::TTL_MS, 604_800_000);
    assert_eq!(Receipt::expired_before(now), now - 604_800_000);
    assert_eq!(
        Receipt::expired_before(1_000),
        0,
        "nothing expires before the epoch"
    );
}
