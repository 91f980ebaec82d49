#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

use super::*;
use crate::signature::{sign_v2, ClientSecret, LegacySignatures, SignedRequest, Verifier};

/// The documentation's example, verbatim (docs/hubspot.md §3.2 quotes it).
const DOC_EXAMPLE: &str = r#"{
  "callbackId": "ap-102670506-56776413549-7-0",
  "origin": { "portalId": 102670506, "actionDefinitionId": 10646377, "actionDefinitionVersion": 1 },
  "context": { "source": "WORKFLOWS", "workflowId": 192814114 },
  "object": { "objectId": 904, "properties": { "email": "ajenkenbb@gnu.org" }, "objectType": "CONTACT" },
  "inputFields": { "staticInput": "My Static Input", "objectInput": "995", "optionsInput": "1" }
}"#;

#[test]
fn parses_the_documented_request() {
    let r = ExecutionRequest::parse(DOC_EXAMPLE.as_bytes()).expect("parses");
    assert_eq!(r.callback_id, "ap-102670506-56776413549-7-0");
    assert_eq!(r.origin.portal_id, crate::id::PortalId::new(102_670_506));
    assert_eq!(r.origin.action_definition_id, 10_646_377);
    assert_eq!(r.origin.action_definition_version, Some(1));
    assert_eq!(r.context.source, Source::Workflows);
    assert_eq!(r.context.workflow_id, Some(192_814_114));
    assert_eq!(r.object.object_id, "904");
    assert_eq!(r.object.object_type, "CONTACT");
    assert_eq!(
        r.object.properties["email"].as_deref(),
        Some("ajenkenbb@gnu.org")
    );
    assert_eq!(r.input("objectInput"), Some(&json!("995")));
    assert!(r.typed_inputs.is_none() && r.fields.is_none());
}

#[test]
fn tolerates_unknown_fields_and_future_sources_and_prefers_typed_inputs() {
    let body = json!({
        "callbackId": "cb-1",
        "origin": {"portalId": 7, "actionDefinitionId": 9, "extensionDefinitionId": 3,
                   "extensionDefinitionVersionId": 4, "somethingNew": true},
        "context": {"source": "AGENT", "actionExecutionIndexIdentifier":
                    {"actionExecutionIndex": 0, "enrollmentId": 5}},
        "object": {"objectId": "12", "objectType": "2-123", "properties": {"x": null}},
        "inputFields": {"amount": "10"},
        "typedInputs": {"amount": 10},
        "fields": {"amount": "10"},
        "newTopLevel": [1, 2]
    });
    let r = ExecutionRequest::parse(body.to_string().as_bytes()).expect("parses");
    assert_eq!(r.context.source, Source::Other("AGENT".into()));
    assert_eq!(r.origin.extension_definition_version_id, Some(4));
    assert_eq!(r.object.object_id, "12");
    assert_eq!(r.object.properties["x"], None);
    assert_eq!(r.input("amount"), Some(&json!(10)), "typedInputs first");
    assert!(r.fields.is_some());
    // No context at all: unknown source.
    let bare = json!({"callbackId": "cb", "origin": {"portalId": 1, "actionDefinitionId": 2},
                      "object": {"objectId": 1, "objectType": "DEAL"}});
    let r = ExecutionRequest::parse(bare.to_string().as_bytes()).expect("parses");
    assert_eq!(r.context.source, Source::Unknown);
}

#[test]
fn malformed_requests_have_stable_codes() {
    let cases: &[(&str, &str)] = &[
        ("not json", "action_request_malformed"),
        ("[]", "action_request_malformed"),
        (
            r#"{"origin":{"portalId":1,"actionDefinitionId":2},"object":{"objectId":1,"objectType":"DEAL"}}"#,
            "action_request_malformed",
        ),
        (
            r#"{"callbackId":"cb","origin":{"actionDefinitionId":2},"object":{"objectId":1,"objectType":"DEAL"}}"#,
            "action_request_malformed",
        ),
        (
            r#"{"callbackId":"cb","origin":{"portalId":1,"actionDefinitionId":2},"object":{"objectId":-1,"objectType":"DEAL"}}"#,
            "action_request_malformed",
        ),
        (
            r#"{"callbackId":"  ","origin":{"portalId":1,"actionDefinitionId":2},"object":{"objectId":1,"objectType":"DEAL"}}"#,
            "action_callback_id_missing",
        ),
    ];
    for (body, code) in cases {
        let e = ExecutionRequest::parse(body.as_bytes()).expect_err(body);
        assert_eq!(e.code(), *code, "{body}");
    }
}

#[test]
fn answers_always_carry_the_state() {
    let outputs: Map<String, Value> = [("score".to_owned(), json!(42))].into_iter().collect();
    let body = |state| {
        let a = Answer {
            outputs: outputs.clone(),
            state,
        };
        serde_json::from_slice::<Value>(&a.to_body().expect("renders")).expect("json")
    };
    assert_eq!(
        body(ExecutionState::Success),
        json!({"outputFields": {"score": 42, "hs_execution_state": "SUCCESS"}})
    );
    assert_eq!(
        body(ExecutionState::FailContinue)["outputFields"]["hs_execution_state"],
        "FAIL_CONTINUE"
    );
    assert_eq!(
        body(ExecutionState::Block {
            expiration: Some("P1WT1H".into())
        }),
        json!({"outputFields": {"score": 42, "hs_execution_state": "BLOCK",
                                 "hs_expiration_duration": "P1WT1H"}})
    );
    assert!(
        body(ExecutionState::Block { expiration: None })["outputFields"]
            .get("hs_expiration_duration")
            .is_none()
    );
    let bad = Answer {
        outputs: Map::new(),
        state: ExecutionState::Block {
            expiration: Some("1 week".into()),
        },
    };
    assert_eq!(
        bad.to_body().unwrap_err().code(),
        "action_expiration_invalid"
    );
    let reserved = Answer {
        outputs: [("hs_execution_state".to_owned(), json!("SUCCESS"))]
            .into_iter()
            .collect(),
        state: ExecutionState::FailContinue,
    };
    assert_eq!(
        reserved.to_body().unwrap_err().code(),
        "action_output_reserved"
    );
}

#[test]
fn completions_single_and_batch() {
    let c = |id: &str, state| Completion {
        callback_id: id.into(),
        outputs: [("approved".to_owned(), json!(true))].into_iter().collect(),
        state,
    };
    let one = c("ap-1/2 x", ExecutionState::Success);
    assert_eq!(
        one.path(),
        "/automation/v4/actions/callbacks/ap-1%2F2%20x/complete"
    );
    let v: Value = serde_json::from_slice(&one.to_body().expect("renders")).expect("json");
    assert_eq!(
        v,
        json!({"outputFields": {"approved": true, "hs_execution_state": "SUCCESS"},
               "typedOutputs": {"approved": true}})
    );
    let batch = Completion::batch_body(&[one.clone(), c("ap-2", ExecutionState::FailContinue)])
        .expect("renders");
    let v: Value = serde_json::from_slice(&batch).expect("json");
    assert_eq!(v["inputs"].as_array().map(Vec::len), Some(2));
    assert_eq!(v["inputs"][0]["callbackId"], "ap-1/2 x");
    assert_eq!(
        v["inputs"][1]["outputFields"]["hs_execution_state"],
        "FAIL_CONTINUE"
    );
    assert_eq!(
        Completion::BATCH_PATH,
        "/automation/v4/actions/callbacks/complete"
    );
    let blocks = c("ap-3", ExecutionState::Block { expiration: None });
    assert_eq!(
        blocks.to_body().unwrap_err().code(),
        "action_completion_blocks"
    );
    assert_eq!(
        Completion::batch_body(&[one, blocks]).unwrap_err().code(),
        "action_completion_blocks"
    );
}

#[test]
fn iso8601_durations() {
    for ok in ["P1W", "P1WT1H", "PT30M", "P3D", "P1Y2M3W4DT5H6M7S", "PT1S"] {
        assert!(is_iso8601_duration(ok), "{ok}");
    }
    for bad in [
        "", "P", "PT", "1W", "P1H", "PT1D", "P1D1W", "PW", "P1WT", "P1.5D", "p1w",
    ] {
        assert!(!is_iso8601_duration(bad), "{bad}");
    }
}

/// An execution request signed with v2 (method, URI, body) verifies with legacy signatures
/// accepted, and a tampered body does not.
#[test]
fn v2_signed_requests_verify() {
    let secret = ClientSecret::new("action-test-secret");
    let uri = "https://edge.example.com/actions/lookup";
    let signature = sign_v2(&secret, "POST", uri, DOC_EXAMPLE.as_bytes());
    let verifier = Verifier::new(secret).with_legacy(LegacySignatures::Accept);
    let mut headers = http::HeaderMap::new();
    headers.insert("x-hubspot-signature", signature.parse().expect("header"));
    headers.insert("x-hubspot-signature-version", "v2".parse().expect("header"));
    let request = |body: &'static [u8]| SignedRequest {
        method: "POST",
        uri,
        headers: &headers,
        body,
    };
    assert_eq!(
        verifier.verify(&request(DOC_EXAMPLE.as_bytes()), 0),
        Ok(crate::signature::SignatureVersion::V2)
    );
    assert!(verifier.verify(&request(b"{}"), 0).is_err());
    // Legacy signatures refused (the webhook default): an action request would not pass.
    let strict = Verifier::new(ClientSecret::new("action-test-secret"));
    assert!(strict.verify(&request(DOC_EXAMPLE.as_bytes()), 0).is_err());
}
