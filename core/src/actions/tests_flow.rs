//! Definitions, publish plan, execution decisions, idempotency records and the completion
//! batcher.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use super::*;
use crate::api::{ApiConfig, ApiError};
use crate::mapping::Mapping;
use crate::outbound::WebhookSecret;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const BASE: &str = "https://edge.example.com";

pub(super) fn secrets(name: &str) -> Option<String> {
    (name == "LOOKUP_SECRET").then(|| SECRET.to_owned())
}

pub(super) fn mapping() -> Mapping {
    Mapping::from_json(
        r#"{"objects":{"contacts":{"fields":[
            {"hubspot":"email","type":"email"},
            {"hubspot":"num_employees","field":"employees","type":"number"},
            {"hubspot":"lifecyclestage","field":"stage","type":"enumeration",
             "values":{"lead":"LEAD","customer":"CUSTOMER"}}]}}}"#,
    )
    .expect("mapping")
}

pub(super) fn config() -> Value {
    json!({"actions": [
        {"key": "score", "kind": "lookup",
         "labels": {"en": {"actionName": "Score", "inputFieldLabels": {"tier": "Tier"}}},
         "objectTypes": ["CONTACT"],
         "inputFields": [
            {"name": "tier", "type": "enumeration", "options": ["gold", "silver"], "required": true},
            {"name": "limit", "type": "number"},
            {"name": "vip", "type": "bool", "supportedValueTypes": ["STATIC_VALUE", "OBJECT_PROPERTY"]},
            {"name": "since", "type": "date"}],
         "outputFields": [{"name": "score", "type": "number"}, {"name": "why", "type": "string"},
                          {"name": "ok", "type": "bool"}],
         "objectRequestOptions": {"properties": ["email"]},
         "lookup": {"url": "https://scorer.example.com/score", "secret": "LOOKUP_SECRET",
                    "reasonOutput": "why"}},
        {"key": "approve", "kind": "approval", "labels": {"en": {"actionName": "Approve"}},
         "objectTypes": ["DEAL"], "approval": {"expiration": "P2D"}},
        {"key": "normalise", "kind": "map_and_write", "labels": {"en": {"actionName": "Normalise"}},
         "objectTypes": ["0-1"],
         "outputFields": [{"name": "stage_out", "type": "string"}, {"name": "size", "type": "number"}],
         "mapAndWrite": {"object": "contacts", "outputs": {"stage_out": "stage", "size": "employees"}}}
    ]})
}

pub(super) fn defs() -> Definitions {
    Definitions::parse(&config().to_string(), secrets, Some(&mapping())).expect("valid config")
}

#[test]
fn reads_the_three_kinds_with_defaults() {
    let d = defs();
    let score = d.get("score").expect("score");
    assert_eq!(score.kind.as_str(), "lookup");
    assert_eq!(score.input_fields[0].ty, ActionFieldType::Enumeration);
    assert!(score.input_fields[0].required && !score.input_fields[1].required);
    assert_eq!(
        score.input_fields[1].supported_value_types,
        ["STATIC_VALUE"]
    );
    let approve = d.get("approve").expect("approve");
    assert!(matches!(&approve.kind, Kind::Approval { expiration } if expiration == "P2D"));
    let n = d.get("normalise").expect("normalise");
    // The properties the map reads are requested by themselves.
    assert_eq!(n.object_properties, ["num_employees", "lifecyclestage"]);
    // Approval's default expiration is HubSpot's (one week).
    let mut c = config();
    c["actions"][1].as_object_mut().unwrap().remove("approval");
    let d = Definitions::parse(&c.to_string(), secrets, Some(&mapping())).unwrap();
    assert!(
        matches!(&d.get("approve").unwrap().kind, Kind::Approval { expiration } if expiration == "P1W")
    );
}

#[test]
fn bad_configs_name_the_field_and_a_stable_code() {
    // (pointer to change, new value or null to remove, expected path, expected code)
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "/actions/2/outputFields/0/type",
            json!("color"),
            "actions[2].outputFields[0].type",
            "actions_field_invalid",
        ),
        (
            "/actions/0/key",
            Value::Null,
            "actions[0].key",
            "actions_field_missing",
        ),
        (
            "/actions/1/key",
            json!("score"),
            "actions[1].key",
            "actions_duplicate",
        ),
        (
            "/actions/0/key",
            json!("a b"),
            "actions[0].key",
            "actions_field_invalid",
        ),
        (
            "/actions/0/kind",
            json!("webhook"),
            "actions[0].kind",
            "actions_field_invalid",
        ),
        (
            "/actions/1/labels/en",
            json!({}),
            "actions[1].labels.en.actionName",
            "actions_field_missing",
        ),
        (
            "/actions/1/labels/xx",
            json!({"actionName": "X"}),
            "actions[1].labels.xx",
            "actions_field_invalid",
        ),
        (
            "/actions/1/objectTypes",
            json!([]),
            "actions[1].objectTypes",
            "actions_field_invalid",
        ),
        (
            "/actions/0/inputFields/0/options",
            Value::Null,
            "actions[0].inputFields[0].options",
            "actions_field_missing",
        ),
        (
            "/actions/0/inputFields/1/options",
            json!(["a"]),
            "actions[0].inputFields[1].options",
            "actions_field_invalid",
        ),
        (
            "/actions/0/inputFields/2/supportedValueTypes/1",
            json!("DYNAMIC"),
            "actions[0].inputFields[2].supportedValueTypes[1]",
            "actions_field_invalid",
        ),
        (
            "/actions/0/inputFields/1/name",
            json!("tier"),
            "actions[0].inputFields[1].name",
            "actions_duplicate",
        ),
        (
            "/actions/0/outputFields/0/name",
            json!("hs_execution_state"),
            "actions[0].outputFields[0].name",
            "actions_field_invalid",
        ),
        (
            "/actions/0/lookup/secret",
            json!("OTHER_SECRET"),
            "actions[0].lookup.secret",
            "actions_secret_missing",
        ),
        (
            "/actions/0/lookup/url",
            json!("ftp://x"),
            "actions[0].lookup.url",
            "actions_field_invalid",
        ),
        (
            "/actions/0/lookup/reasonOutput",
            json!("score"),
            "actions[0].lookup.reasonOutput",
            "actions_field_invalid",
        ),
        (
            "/actions/0/approval",
            json!({}),
            "actions[0].approval",
            "actions_field_invalid",
        ),
        (
            "/actions/0/lookup/extra",
            json!(1),
            "actions[0].lookup.extra",
            "actions_field_invalid",
        ),
        (
            "/actions/1/approval/expiration",
            json!("1 week"),
            "actions[1].approval.expiration",
            "actions_field_invalid",
        ),
        (
            "/actions/2/mapAndWrite/object",
            json!("deals"),
            "actions[2].mapAndWrite.object",
            "actions_mapping_unknown",
        ),
        (
            "/actions/2/mapAndWrite/outputs/size",
            json!("nope"),
            "actions[2].mapAndWrite.outputs.size",
            "actions_mapping_unknown",
        ),
        (
            "/actions/2/mapAndWrite/outputs/other",
            json!("stage"),
            "actions[2].mapAndWrite.outputs.other",
            "actions_field_invalid",
        ),
        (
            "/actions/2/outputFields/1/type",
            json!("enumeration"),
            "actions[2].outputFields[1].type",
            "actions_field_invalid",
        ),
    ];
    for (pointer, value, path, code) in cases {
        let mut c = config();
        let (parent, last) = pointer.rsplit_once('/').unwrap();
        let target = c.pointer_mut(parent).unwrap();
        match (target, value) {
            (Value::Object(m), Value::Null) => {
                m.remove(last);
            }
            (Value::Object(m), v) => {
                m.insert(last.to_owned(), v);
            }
            (Value::Array(a), v) => a[last.parse::<usize>().unwrap()] = v,
            _ => panic!("bad case {pointer}"),
        }
        let e = Definitions::parse(&c.to_string(), secrets, Some(&mapping())).expect_err(pointer);
        assert_eq!((e.path.as_str(), e.code()), (path, code), "{pointer}: {e}");
    }
    let e = Definitions::parse("{", secrets, None).unwrap_err();
    assert_eq!(e.code(), "actions_json_invalid");
    // A lookup secret that is not whsec_: named, its value never in the message.
    let e = Definitions::parse(
        &config().to_string(),
        |_| Some("hunter2-secret".into()),
        None,
    )
    .unwrap_err();
    assert_eq!(e.path, "actions[0].lookup.secret");
    assert!(!e.to_string().contains("hunter2"));
    // map_and_write without ENRICHMENT_MAP.
    let e = Definitions::parse(&config().to_string(), secrets, None).unwrap_err();
    assert_eq!(e.code(), "actions_mapping_unknown");
}

#[test]
fn renders_hubspots_definition_json() {
    let d = defs();
    let v = d.get("score").unwrap().render("https://edge.example.com/");
    assert_eq!(v["actionUrl"], "https://edge.example.com/actions/score");
    assert_eq!(v["published"], true);
    assert_eq!(v["functions"], json!([]));
    assert_eq!(v["objectTypes"], json!(["CONTACT"]));
    assert_eq!(v["objectRequestOptions"], json!({"properties": ["email"]}));
    assert_eq!(
        v["inputFields"][0],
        json!({"typeDefinition": {"name": "tier", "type": "enumeration", "fieldType": "select",
               "options": [{"label": "gold", "value": "gold"}, {"label": "silver", "value": "silver"}]},
               "supportedValueTypes": ["STATIC_VALUE"], "isRequired": true})
    );
    assert_eq!(
        v["outputFields"][0],
        json!({"typeDefinition": {"name": "score", "type": "number", "fieldType": "number"}})
    );
    assert_eq!(v["labels"]["en"]["actionName"], "Score");
    for key in [
        "actionUrl",
        "functions",
        "inputFields",
        "labels",
        "objectTypes",
        "published",
    ] {
        assert!(
            v.get(key).is_some(),
            "required by PublicActionDefinitionEgg: {key}"
        );
    }
}

#[test]
fn publish_plan_creates_patches_or_leaves_alone() {
    let d = defs();
    let rendered = |k: &str| d.get(k).unwrap().render(BASE);
    // HubSpot's copy of `score` with ids and defaults added: unchanged.
    let mut score = rendered("score");
    score["id"] = json!("101");
    score["revisionId"] = json!("3");
    score["inputFields"][0]["typeDefinition"]["description"] = json!("");
    score["functions"] = json!([{"functionType": "PRE_ACTION_EXECUTION"}]);
    // `approve` with another label: patch.
    let mut approve = rendered("approve");
    approve["id"] = json!(102);
    approve["labels"]["en"]["actionName"] = json!("Old name");
    // Someone else's action, and an archived copy of `normalise`: neither is ours.
    let other = json!({"id": "7", "actionUrl": "https://other.example.com/x"});
    let mut archived = rendered("normalise");
    archived["id"] = json!("9");
    archived["archivedAt"] = json!(1_700_000_000_000_u64);
    let listed = vec![other, score, approve, archived];
    let plan = plan_publish(&d, BASE, &listed);
    assert_eq!(plan.len(), 3);
    assert_eq!(
        plan[0],
        PublishStep::Unchanged {
            key: "score".into(),
            id: "101".into()
        }
    );
    assert!(matches!(&plan[1], PublishStep::Patch { key, id, body }
        if key == "approve" && id == "102" && body["labels"]["en"]["actionName"] == "Approve"));
    assert!(matches!(&plan[2], PublishStep::Create { key, .. } if key == "normalise"));
    // A second publish against what the first wrote: nothing to write.
    let after: Vec<Value> = d
        .iter()
        .enumerate()
        .map(|(i, def)| {
            let mut v = def.render(BASE);
            v["id"] = json!(i.to_string());
            v
        })
        .collect();
    assert!(plan_publish(&d, BASE, &after)
        .iter()
        .all(|s| matches!(s, PublishStep::Unchanged { .. })));
    // Another base URL: every action is new.
    assert!(plan_publish(&d, "https://new.example.com", &after)
        .iter()
        .all(|s| matches!(s, PublishStep::Create { .. })));
    // A removed input is a change too.
    let mut fewer = after.clone();
    fewer[0]["inputFields"].as_array_mut().unwrap().pop();
    assert!(matches!(
        plan_publish(&d, BASE, &fewer)[0],
        PublishStep::Patch { .. }
    ));
}

#[test]
fn publish_requests_use_the_developer_key() {
    let api = ApiConfig::new(
        "http://127.0.0.1:9",
        ApiConfig::default().path_style().clone(),
    )
    .unwrap();
    let endpoints = DefinitionsApi {
        api: &api,
        app_id: 42,
        developer_key: "dev key",
    };
    let list = endpoints.list(Some("abc"));
    assert_eq!(
        list.uri().to_string(),
        "http://127.0.0.1:9/automation/v4/actions/42?after=abc&hapikey=dev%20key"
    );
    let patch = endpoints
        .step(&PublishStep::Patch {
            key: "k".into(),
            id: "5".into(),
            body: json!({"a": 1}),
        })
        .unwrap();
    assert_eq!(patch.method(), http::Method::PATCH);
    assert_eq!(patch.uri().path(), "/automation/v4/actions/42/5");
    assert_eq!(patch.body(), br#"{"a":1}"#);
    assert!(endpoints
        .step(&PublishStep::Unchanged {
            key: "k".into(),
            id: "5".into()
        })
        .is_none());
    let page = json!({"results": [{"id": "1"}], "paging": {"next": {"after": "2"}}});
    assert_eq!(
        list_page(&page),
        Some((vec![json!({"id": "1"})], Some("2".into())))
    );
    assert_eq!(list_page(&json!({"x": 1})), None);
}

fn request(object_type: &str, inputs: Value, properties: Value) -> ExecutionRequest {
    ExecutionRequest::parse(
        json!({
            "callbackId": "cb-1",
            "origin": {"portalId": 77, "actionDefinitionId": 1},
            "object": {"objectId": 5, "objectType": object_type, "properties": properties},
            "inputFields": inputs,
        })
        .to_string()
        .as_bytes(),
    )
    .unwrap()
}

#[test]
fn inputs_are_checked_and_normalised() {
    let d = defs();
    let score = d.get("score").unwrap();
    let ok = request(
        "CONTACT",
        json!({"tier": "gold", "limit": "42", "vip": "TRUE", "since": "2024-02-29", "extra": "x"}),
        json!({}),
    );
    let inputs = validate_inputs(score, &ok).unwrap();
    assert_eq!(
        Value::Object(inputs),
        json!({"tier": "gold", "limit": 42, "vip": true, "since": "2024-02-29"})
    );
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({}), "action_input_missing", "tier"),
        (json!({"tier": ""}), "action_input_missing", "tier"),
        (json!({"tier": "bronze"}), "action_field_type", "tier"),
        (
            json!({"tier": "gold", "limit": "1,000"}),
            "action_field_type",
            "limit",
        ),
        (
            json!({"tier": "gold", "vip": "yes"}),
            "action_field_type",
            "vip",
        ),
        (
            json!({"tier": "gold", "since": "2024-02-30"}),
            "action_field_type",
            "since",
        ),
    ];
    for (inputs, code, field) in cases {
        let e = validate_inputs(score, &request("CONTACT", inputs.clone(), json!({}))).unwrap_err();
        assert_eq!((e.code(), e.field()), (code, field), "{inputs}");
        let body: Value = serde_json::from_slice(&e.to_hubspot_body()).unwrap();
        assert_eq!(body["status"], "error");
        assert_eq!(body["category"], "VALIDATION_ERROR");
        assert_eq!(body["errors"][0]["code"], code);
        assert_eq!(body["errors"][0]["context"]["fieldName"], json!([field]));
    }
    // typedInputs ({"value","type"}) are read first.
    let mut typed = request("CONTACT", json!({"tier": "bronze"}), json!({}));
    typed.typed_inputs = Some(
        json!({"tier": {"value": "silver", "type": "STRING"}})
            .as_object()
            .unwrap()
            .clone(),
    );
    assert_eq!(validate_inputs(score, &typed).unwrap()["tier"], "silver");
}

#[test]
fn outputs_are_checked_against_the_definition() {
    let d = defs();
    let score = d.get("score").unwrap();
    let o = |v: Value| v.as_object().unwrap().clone();
    assert_eq!(
        Value::Object(
            validate_outputs(
                score,
                &o(json!({"score": "7.5", "ok": "false", "why": null}))
            )
            .unwrap()
        ),
        json!({"score": 7.5, "ok": false})
    );
    assert_eq!(
        validate_outputs(score, &o(json!({"nope": 1})))
            .unwrap_err()
            .code(),
        "action_output_unknown"
    );
    assert_eq!(
        validate_outputs(score, &o(json!({"score": "high"})))
            .unwrap_err()
            .code(),
        "action_field_type"
    );
}

fn ctx() -> ExecuteContext<'static> {
    ExecuteContext {
        public_base_url: BASE,
        budget_ms: DEFAULT_BUDGET_MS,
        now_secs: 1_700_000_000,
    }
}

#[test]
fn map_and_write_answers_from_the_objects_properties() {
    let d = defs();
    let n = d.get("normalise").unwrap();
    let r = request(
        "CONTACT",
        json!({}),
        json!({"lifecyclestage": "customer", "num_employees": "1200"}),
    );
    let ExecutionStep::Answer(a) = execute(n, &r, &ctx()).unwrap() else {
        panic!("map_and_write answers at once")
    };
    assert_eq!(a.state, ExecutionState::Success);
    assert_eq!(
        Value::Object(a.outputs),
        json!({"stage_out": "CUSTOMER", "size": 1200})
    );
    // A value the map cannot read: FAIL_CONTINUE, not a 2xx with wrong outputs.
    let bad = request("0-1", json!({}), json!({"num_employees": "1,200"}));
    let ExecutionStep::Answer(a) = execute(n, &bad, &ctx()).unwrap() else {
        panic!()
    };
    assert_eq!(a.state, ExecutionState::FailContinue);
    // Another object type than the definition's: a 400 body, nothing run.
    let e = execute(n, &request("DEAL", json!({}), json!({})), &ctx()).unwrap_err();
    assert_eq!(e.code(), "action_object_type");
}

#[test]
fn approval_blocks_with_its_expiration() {
    let d = defs();
    let ExecutionStep::Answer(a) = execute(
        d.get("approve").unwrap(),
        &request("DEAL", json!({}), json!({})),
        &ctx(),
    )
    .unwrap() else {
        panic!()
    };
    let body: Value = serde_json::from_slice(&a.to_body().unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"outputFields": {"hs_execution_state": "BLOCK", "hs_expiration_duration": "P2D"}})
    );
}

#[test]
fn lookup_is_a_signed_request_and_its_reply_an_answer() {
    let d = defs();
    let score = d.get("score").unwrap();
    let r = request(
        "CONTACT",
        json!({"tier": "gold"}),
        json!({"email": "a@b.example"}),
    );
    let ExecutionStep::Call(call) = execute(score, &r, &ctx()).unwrap() else {
        panic!("lookup calls")
    };
    assert_eq!(call.budget_ms, 3_000);
    let req = &call.request;
    assert_eq!(req.uri(), "https://scorer.example.com/score");
    let h = |n: &str| req.headers()[n].to_str().unwrap().to_owned();
    assert_eq!(h("webhook-id"), "cb-1");
    WebhookSecret::parse(SECRET)
        .unwrap()
        .verify(
            "cb-1",
            &h("webhook-timestamp"),
            &h("webhook-signature"),
            req.body(),
            1_700_000_000,
            300,
        )
        .expect("the user's system can verify it");
    let body: Value = serde_json::from_slice(req.body()).unwrap();
    assert_eq!(body["callbackId"], "cb-1");
    assert_eq!(body["portalId"], 77);
    assert_eq!(
        body["callbackUrl"],
        "https://edge.example.com/actions/callbacks/cb-1"
    );
    assert_eq!(body["inputs"], json!({"tier": "gold"}));
    assert_eq!(body["object"]["properties"]["email"], "a@b.example");

    let answered = |status: u16, body: &'static str| {
        lookup_answer(
            score,
            &LookupReply::Answered {
                status,
                body: body.as_bytes(),
            },
            "P1D",
        )
    };
    let state = |a: &Answer| a.state.as_str();
    let why = |a: &Answer| a.outputs.get("why").cloned();
    let ok = answered(200, r#"{"outputs":{"score":"9"}}"#);
    assert_eq!(
        (state(&ok), ok.outputs["score"].clone()),
        ("SUCCESS", json!(9))
    );
    let cases: Vec<(Answer, &str, Option<Value>)> = vec![
        (
            answered(200, r#"{"outputs":{"score":"high"}}"#),
            "FAIL_CONTINUE",
            Some(json!("lookup_outputs_invalid")),
        ),
        (
            answered(200, "<html>"),
            "FAIL_CONTINUE",
            Some(json!("lookup_reply_malformed")),
        ),
        (
            answered(200, r#"{"state":"FAIL_CONTINUE","reason":"no_match"}"#),
            "FAIL_CONTINUE",
            Some(json!("no_match")),
        ),
        (
            answered(500, ""),
            "FAIL_CONTINUE",
            Some(json!("lookup_status_500")),
        ),
        (answered(202, ""), "BLOCK", None),
        (
            lookup_answer(score, &LookupReply::Late, "P1D"),
            "BLOCK",
            None,
        ),
        (
            lookup_answer(score, &LookupReply::Failed, "P1D"),
            "FAIL_CONTINUE",
            Some(json!("lookup_unreachable")),
        ),
    ];
    for (a, s, w) in cases {
        assert_eq!((state(&a), why(&a)), (s, w));
    }
}

#[test]
fn callbacks_are_validated_like_outputs() {
    let d = defs();
    let approve = d.get("score").unwrap();
    let c = callback_completion(approve, "cb-9", br#"{"outputs":{"score":3,"ok":true}}"#).unwrap();
    assert_eq!(c.state, ExecutionState::Success);
    assert_eq!(Value::Object(c.outputs), json!({"score": 3, "ok": true}));
    let f = callback_completion(
        approve,
        "cb-9",
        br#"{"state":"FAIL_CONTINUE","reason":"denied"}"#,
    )
    .unwrap();
    assert_eq!(
        (f.state, f.outputs["why"].clone()),
        (ExecutionState::FailContinue, json!("denied"))
    );
    let cases: Vec<(&[u8], &str)> = vec![
        (br#"{"outputs":{"nope":1}}"#, "action_output_unknown"),
        (br#"{"outputs":{"score":"x"}}"#, "action_field_type"),
        (br#"{"state":"BLOCK"}"#, "callback_body_malformed"),
        (b"[]", "callback_body_malformed"),
    ];
    for (body, code) in cases {
        assert_eq!(
            callback_completion(approve, "cb", body).unwrap_err().code(),
            code
        );
    }
}

#[test]
fn rules_complete_with_the_outputs_each_action_declares() {
    let d = defs();
    let score = d.get("score").unwrap();
    // `stage` is not one of score's outputs: left out for it; `score` is typed as a number.
    let outputs = json!({"score": "7", "ok": true, "stage": "won"});
    let c = rule_completion(score, "cb-1", outputs.as_object().unwrap()).unwrap();
    assert_eq!(c.state, ExecutionState::Success);
    assert_eq!(c.callback_id, "cb-1");
    assert_eq!(Value::Object(c.outputs), json!({"score": 7, "ok": true}));
    // A value a declared output cannot take: refused with the field's code.
    let bad = json!({"score": "many"});
    assert_eq!(
        rule_completion(score, "cb-1", bad.as_object().unwrap())
            .unwrap_err()
            .code(),
        "action_field_type"
    );
}

#[test]
fn an_object_has_one_key_in_every_vocabulary() {
    for spelling in ["CONTACT", "contact", "contacts", "0-1", "Contacts"] {
        assert_eq!(object_key(spelling, "42"), "contact:42", "{spelling}");
    }
    assert_eq!(object_key("DEAL", "7"), object_key("deals", "7"));
    assert_eq!(object_key("0-3", "7"), "deal:7");
    assert_eq!(object_key("2-123", "9"), "2-123:9");
    assert_ne!(object_key("contact", "1"), object_key("company", "1"));
}

#[test]
fn iso_durations_in_milliseconds() {
    let cases = [
        ("P1W", Some(604_800_000)),
        ("PT30M", Some(1_800_000)),
        ("P1DT1H", Some(90_000_000)),
        ("P1WT1H", Some(608_400_000)),
        ("PT1S", Some(1_000)),
        ("P1M", Some(2_592_000_000)),
        ("1W", None),
        ("P", None),
    ];
    for (text, ms) in cases {
        assert_eq!(duration_ms(text), ms, "{text}");
    }
}

#[test]
fn the_idempotency_record_runs_once_and_replays() {
    let success = Answer {
        outputs: json!({"score": 1}).as_object().unwrap().clone(),
        state: ExecutionState::Success,
    };
    // New → running → answered; a retry replays the same body.
    let ExecutionAdmit::Run(running) = admit(None, "score", 10) else {
        panic!()
    };
    assert_eq!(running.state(), "running");
    let (answered, body) = finish(&running, &success, 20);
    assert_eq!(answered.state(), "answered");
    assert_eq!(
        admit(Some(&answered), "score", 30),
        ExecutionAdmit::Replay(body.clone())
    );
    assert!(body.contains("SUCCESS"));
    // A retry while running: BLOCK, not a second run; the first run's result then completes.
    let ExecutionAdmit::BlockRetry(marked, answer) = admit(Some(&running), "score", 15) else {
        panic!("a retry while running is blocked")
    };
    assert_eq!(answer.state.as_str(), "BLOCK");
    // A run that recorded nothing for STALE_RUN_MS died: a retry runs it again.
    assert_eq!(
        admit(Some(&running), "score", 10 + STALE_RUN_MS - 1).clone(),
        admit(Some(&running), "score", 15)
    );
    let ExecutionAdmit::Run(again) = admit(Some(&marked), "score", 10 + STALE_RUN_MS) else {
        panic!("a stale run is run again")
    };
    assert!(
        matches!(again, ExecutionRecord::Running { since_ms, retry_blocked: false, .. } if since_ms == 10 + STALE_RUN_MS)
    );
    let (completing, _) = finish(&marked, &success, 20);
    assert_eq!(completing.state(), "completing");
    let c = completing.completion("cb").unwrap();
    assert_eq!(
        (c.state, c.outputs["score"].clone()),
        (ExecutionState::Success, json!(1))
    );
    // Blocked: a retry gets the same BLOCK body; completion before expiry, not after.
    let block = Answer {
        outputs: serde_json::Map::new(),
        state: ExecutionState::Block {
            expiration: Some("PT1H".into()),
        },
    };
    let (blocked, block_body) = finish(&running, &block, 1_000);
    assert_eq!(blocked.expires_at_ms(), Some(1_000 + 3_600_000));
    assert_eq!(
        admit(Some(&blocked), "score", 2_000),
        ExecutionAdmit::Replay(block_body.clone())
    );
    let completion = Completion {
        callback_id: "cb".into(),
        outputs: serde_json::Map::new(),
        state: ExecutionState::FailContinue,
    };
    let completing = complete(Some(&blocked), &completion, 2_000).unwrap();
    assert_eq!(completing.state(), "completing");
    assert_eq!(
        admit(Some(&completing), "score", 2_001),
        ExecutionAdmit::Replay(block_body.clone())
    );
    assert_eq!(
        complete(Some(&completing), &completion, 2_001),
        Err(CompleteError::Completed)
    );
    assert_eq!(
        complete(Some(&blocked), &completion, 3_601_000),
        Err(CompleteError::Expired)
    );
    assert_eq!(complete(None, &completion, 0), Err(CompleteError::Unknown));
    assert_eq!(
        complete(Some(&running), &completion, 0),
        Err(CompleteError::Running)
    );
    assert_eq!(
        complete(Some(&answered), &completion, 0),
        Err(CompleteError::Completed)
    );
    // Expiry.
    assert_eq!(expire(&blocked, 3_600_999), None);
    let expired = expire(&blocked, 3_601_000).unwrap();
    assert_eq!(expired.state(), "expired");
    assert_eq!(
        complete(Some(&expired), &completion, 0),
        Err(CompleteError::Expired)
    );
    // Settled.
    assert_eq!(completing.settled(Ok(())).state(), "completed");
    let failed = completing.settled(Err("validation_error"));
    assert_eq!(failed.state(), "failed");
    assert_eq!(
        admit(Some(&failed), "score", 0),
        ExecutionAdmit::Replay(block_body)
    );
    // The record survives its serialisation (the host stores it).
    let text = serde_json::to_string(&failed).unwrap();
    assert_eq!(
        serde_json::from_str::<ExecutionRecord>(&text).unwrap(),
        failed
    );
}

pub(super) fn pending(n: usize, at: u64) -> Vec<Pending> {
    (0..n)
        .map(|i| Pending {
            callback_id: format!("cb-{i:04}"),
            queued_ms: at + i as u64,
        })
        .collect()
}

#[test]
fn completions_batch_by_100_within_the_window() {
    // (pending, now, expected batch sizes)
    let cases: Vec<(Vec<Pending>, u64, Vec<usize>)> = vec![
        (pending(0, 0), 5_000, vec![]),
        (pending(5, 0), 999, vec![]),
        (pending(5, 0), 1_000, vec![5]),
        (pending(100, 0), 1, vec![100]),
        (pending(250, 0), 10, vec![100, 100]),
        (pending(250, 0), 1_000, vec![100, 100, 50]),
    ];
    for (p, now, sizes) in cases {
        let batches = due_batches(&p, now, DEFAULT_COMPLETE_WINDOW_MS);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            sizes,
            "{} at {now}",
            p.len()
        );
    }
    // Oldest first.
    let mut p = pending(3, 100);
    p[2].queued_ms = 1;
    assert_eq!(due_batches(&p, 2_000, 1_000)[0][0], "cb-0002");
    assert_eq!(next_due_ms(&p, 1_000), Some(1_001));
    assert_eq!(next_due_ms(&pending(100, 7), 1_000), Some(7));
    assert_eq!(next_due_ms(&[], 1_000), None);
    // A burst still arriving: the partial batch lingers until a quarter window of quiet…
    let mut burst = pending(60, 0);
    burst[59].queued_ms = 990;
    assert!(due_batches(&burst, 1_000, 1_000).is_empty());
    assert_eq!(next_due_ms(&burst, 1_000), Some(1_240));
    assert_eq!(due_batches(&burst, 1_240, 1_000)[0].len(), 60);
    // … but never longer than MAX_LINGER_WINDOWS windows.
    burst[59].queued_ms = 3_990;
    assert_eq!(next_due_ms(&burst, 1_000), Some(4_000));
    assert_eq!(due_batches(&burst, 4_000, 1_000)[0].len(), 60);
    // Window 0: at once.
    assert_eq!(next_due_ms(&burst, 0), Some(0));
    // Each batch body holds at most 100 inputs.
    let completions: Vec<Completion> = pending(100, 0)
        .into_iter()
        .map(|p| Completion {
            callback_id: p.callback_id,
            outputs: serde_json::Map::new(),
            state: ExecutionState::Success,
        })
        .collect();
    let body: Value =
        serde_json::from_slice(&Completion::batch_body(&completions).unwrap()).unwrap();
    assert_eq!(
        body["inputs"].as_array().unwrap().len(),
        MAX_COMPLETION_BATCH
    );
}

#[test]
fn a_batch_calls_end_decides_its_fate() {
    use crate::api::{CallError, GiveUpReason};
    let batch = vec!["cb-1".to_owned()];
    let ok = BatchFate::of_call(&batch, Ok(()), 0, 0.5);
    assert_eq!((ok.code(), ok), ("completed", BatchFate::Completed));
    // The policy gave up on a 404: dead-lettered with the API error's code.
    let gave_up = CallError::GaveUp {
        reason: GiveUpReason::NotFound,
        last: Outcome::Failed(ApiError::NotFound {
            body: Box::default(),
        }),
        attempts: 1,
    };
    let fate = BatchFate::of_call(&batch, Err(&gave_up), 0, 0.5);
    assert_eq!(fate.code(), "dead_lettered");
    assert_eq!(
        fate,
        BatchFate::DeadLetter {
            code: "not_found".into()
        }
    );
    // HubSpot never answered for good: again after the flush's retry delay.
    for e in [
        CallError::Throttled { wait_ms: 60_000 },
        CallError::Gate("down".into()),
        CallError::OAuthRefresh("refused".into()),
        CallError::Build("url".into()),
    ] {
        let fate = BatchFate::of_call(&batch, Err(&e), 0, 0.5);
        assert_eq!(fate.code(), "retry");
        assert_eq!(
            fate,
            BatchFate::Retry {
                after_ms: CompletionFlush::RETRY_DELAY_MS
            },
            "{e:?}"
        );
    }
}

#[test]
fn batch_fate_follows_the_api_retry_policy() {
    let one = vec!["cb-1".to_owned()];
    let server = Outcome::Failed(ApiError::Server {
        status: 503,
        body: Box::default(),
    });
    let bad = Outcome::Failed(ApiError::Validation {
        body: Box::default(),
    });
    let not_found = Outcome::Failed(ApiError::NotFound {
        body: Box::default(),
    });
    assert_eq!(
        batch_fate(&one, 1, &Outcome::Success, 0, 0.0),
        BatchFate::Completed
    );
    assert!(
        matches!(batch_fate(&one, 1, &server, 0, 0.0), BatchFate::Retry { after_ms } if after_ms > 0)
    );
    assert!(matches!(
        batch_fate(&one, 1, &Outcome::Timeout, 0, 0.0),
        BatchFate::Retry { .. }
    ));
    assert_eq!(
        batch_fate(&one, 1, &bad, 0, 0.0),
        BatchFate::DeadLetter {
            code: bad_code(&bad)
        }
    );
    assert!(matches!(
        batch_fate(&one, 1, &not_found, 0, 0.0),
        BatchFate::DeadLetter { .. }
    ));
    // 5xx until the attempts are spent: dead letter.
    assert!(matches!(
        batch_fate(&one, 5, &server, 0, 0.0),
        BatchFate::DeadLetter { .. }
    ));
}

#[test]
fn a_refused_batch_fails_the_named_inputs_and_resends_the_rest() {
    let batch: Vec<String> = (0..10).map(|i| format!("cb-{i}")).collect();
    let refused = |body: serde_json::Value| {
        Outcome::Failed(ApiError::Validation {
            body: Box::new(serde_json::from_value(body).unwrap()),
        })
    };
    // HubSpot (the mock) names each input it cannot complete in `errors[].context.callbackId`.
    let named = refused(json!({"status": "error", "category": "VALIDATION_ERROR",
        "errors": [{"message": "expired", "context": {"callbackId": ["cb-3"]}},
                   {"message": "unknown", "context": {"callbackId": ["cb-7", "not-ours"]}}]}));
    let BatchFate::Split {
        failed,
        code,
        resend,
    } = batch_fate(&batch, 1, &named, 0, 0.0)
    else {
        panic!("not split");
    };
    assert_eq!(failed, ["cb-3", "cb-7"]);
    assert_eq!(code, bad_code(&named));
    assert_eq!(resend.len(), 1);
    assert_eq!(resend[0].len(), 8);
    assert!(!resend[0].contains(&"cb-3".to_owned()));
    // Nothing named: bisect.
    let silent = refused(json!({"status": "error", "category": "VALIDATION_ERROR"}));
    assert_eq!(
        batch_fate(&batch, 1, &silent, 0, 0.0),
        BatchFate::Split {
            failed: vec![],
            code: bad_code(&silent),
            resend: vec![batch[..5].to_vec(), batch[5..].to_vec()],
        }
    );
    // Every input named: nothing to resend. One input: a plain dead letter.
    let all = refused(json!({"errors": [{"context": {"callbackId": ["cb-0", "cb-1"]}}]}));
    assert!(matches!(
        batch_fate(&batch[..2], 1, &all, 0, 0.0),
        BatchFate::Split { ref failed, ref resend, .. } if failed.len() == 2 && resend.is_empty()
    ));
    assert!(matches!(
        batch_fate(&batch[..1], 1, &silent, 0, 0.0),
        BatchFate::DeadLetter { .. }
    ));
    // A 404 is not split: not about one input.
    let not_found = Outcome::Failed(ApiError::NotFound {
        body: Box::default(),
    });
    assert!(matches!(
        batch_fate(&batch, 1, &not_found, 0, 0.0),
        BatchFate::DeadLetter { .. }
    ));
}

fn bad_code(o: &Outcome) -> String {
    match o {
        Outcome::Failed(e) => e.code().to_owned(),
        _ => String::new(),
    }
}

use crate::api::Outcome;

#[test]
fn batch_request_posts_the_batch_body() {
    let api = ApiConfig::new(
        "https://api.example.com/",
        ApiConfig::default().path_style().clone(),
    )
    .unwrap();
    let c = Completion {
        callback_id: "cb-1".into(),
        outputs: json!({"score": 1}).as_object().unwrap().clone(),
        state: ExecutionState::Success,
    };
    let r = batch_request(&api, std::slice::from_ref(&c)).unwrap();
    assert_eq!(r.method(), http::Method::POST);
    assert_eq!(
        r.uri().to_string(),
        "https://api.example.com/automation/v4/actions/callbacks/complete"
    );
    let body: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(body["inputs"][0]["callbackId"], "cb-1");
    assert_eq!(
        body["inputs"][0]["outputFields"]["hs_execution_state"],
        "SUCCESS"
    );
    assert_eq!(body["inputs"][0]["typedOutputs"], json!({"score": 1}));
}
