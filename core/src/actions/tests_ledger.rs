//! The settings, the per-portal ledger (the store's state machine) and the batcher's run.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Map, Value};

use crate::api::RequestKind;

use super::tests_flow::{config, defs, pending};
use super::*;
use crate::id::PortalId;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const MAP: &str = r#"{"objects":{"contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"num_employees","field":"employees","type":"number"},
    {"hubspot":"lifecyclestage","field":"stage","type":"enumeration",
     "values":{"lead":"LEAD","customer":"CUSTOMER"}}]}}}"#;

fn keys(extra: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut all: Vec<(String, String)> = vec![
        ("ACTIONS".into(), config().to_string()),
        ("ENRICHMENT_MAP".into(), MAP.into()),
        ("HUBSPOT_CLIENT_SECRET".into(), " client-secret ".into()),
        ("LOOKUP_SECRET".into(), SECRET.into()),
    ];
    for (k, v) in extra {
        all.retain(|(key, _)| key != k);
        all.push(((*k).into(), (*v).into()));
    }
    move |k: &str| all.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
}

#[test]
fn settings_read_the_actions_keys() {
    let s = ActionSettings::from_lookup(keys(&[
        ("PUBLIC_BASE_URL", "https://edge.example.com/"),
        ("ACTIONS_BUDGET_MS", "1500"),
        ("ACTIONS_CALLBACK_SECRET", SECRET),
    ]))
    .expect("valid")
    .expect("on");
    assert!(s.definitions.get("score").is_some());
    assert_eq!(s.budget_ms, 1500);
    assert!(s.callback_secret.is_some());
    assert_eq!(
        s.public_base_url.as_deref(),
        Some("https://edge.example.com")
    );
    // The URL HubSpot signed: the public base with the path, else the raw URL.
    assert_eq!(
        s.signed_url(
            "http://127.0.0.1:8787/actions/score?x=1",
            "/actions/score?x=1"
        ),
        "https://edge.example.com/actions/score?x=1"
    );
    let local = ActionSettings::from_lookup(keys(&[])).unwrap().unwrap();
    assert_eq!(local.budget_ms, crate::config::ACTIONS_BUDGET_MS.default);
    assert!(local.callback_secret.is_none());
    assert_eq!(
        local.signed_url("http://127.0.0.1:8787/actions/score", "/actions/score"),
        "http://127.0.0.1:8787/actions/score"
    );
    // `ACTIONS` unset or blank: actions are off, nothing else is read.
    for off in ["", "  "] {
        let lookup = keys(&[("ACTIONS", off), ("HUBSPOT_CLIENT_SECRET", "")]);
        assert!(ActionSettings::from_lookup(lookup).unwrap().is_none());
    }
    assert!(ActionSettings::from_lookup(|_: &str| None)
        .unwrap()
        .is_none());
}

#[test]
fn settings_errors_name_the_key_and_a_stable_code() {
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
    let cases: [Case<'_>; 7] = [
        (
            &[("HUBSPOT_CLIENT_SECRET", " ")],
            "HUBSPOT_CLIENT_SECRET",
            "config_missing",
        ),
        (&[("ACTIONS", "{")], "ACTIONS", "actions_json_invalid"),
        (
            &[("ENRICHMENT_MAP", "[]")],
            "ENRICHMENT_MAP",
            "mapping_config_invalid",
        ),
        (
            &[("ACTIONS_BUDGET_MS", "soon")],
            "ACTIONS_BUDGET_MS",
            "config_not_an_integer",
        ),
        (
            &[("ACTIONS_BUDGET_MS", "999999999")],
            "ACTIONS_BUDGET_MS",
            "config_out_of_range",
        ),
        (
            &[("ACTIONS_COMPLETE_WINDOW_MS", "-1")],
            "ACTIONS_COMPLETE_WINDOW_MS",
            "config_not_an_integer",
        ),
        (
            &[("ACTIONS_CALLBACK_SECRET", "plain")],
            "ACTIONS_CALLBACK_SECRET",
            "actions_callback_secret_invalid",
        ),
    ];
    for (extra, key, code) in cases {
        let e = ActionSettings::from_lookup(keys(extra)).unwrap_err();
        assert_eq!((e.key(), e.code()), (key, code), "{extra:?}");
        assert!(!e.to_string().contains("client-secret"));
    }
}

fn block(expiration: &str) -> Answer {
    Answer {
        outputs: Map::new(),
        state: ExecutionState::Block {
            expiration: Some(expiration.into()),
        },
    }
}

fn success(outputs: Value) -> Answer {
    Answer {
        outputs: outputs.as_object().cloned().unwrap_or_default(),
        state: ExecutionState::Success,
    }
}

fn body(answer: &Answer) -> String {
    String::from_utf8(answer.to_body().unwrap()).unwrap()
}

const T: u64 = 1_700_000_000_000;

#[test]
fn ledger_admits_once_records_known_answers_and_blocks_a_retry_while_running() {
    let ledger = ExecutionLedger::new(T);
    // New, answer not known yet: run it.
    let step = ledger.admit(None, "score", None);
    assert_eq!(step.reply, json!({"kind": "run"}));
    assert!(!step.schedule);
    let running = step.save.expect("recorded");
    assert_eq!((running.state(), running.action()), ("running", "score"));
    // A retry while it runs: BLOCK (the default expiration), and the record says so.
    let retry = ExecutionLedger::new(T + 1_000).admit(Some(&running), "score", None);
    assert_eq!(retry.reply["kind"], "block");
    assert_eq!(retry.reply["body"], body(&block(DEFAULT_EXPIRATION)));
    let retried = retry.save.expect("marked");
    assert!(matches!(
        retried,
        ExecutionRecord::Running {
            retry_blocked: true,
            ..
        }
    ));
    // The first attempt finishes: its body, and the result becomes a completion.
    let answer = success(json!({"score": 7}));
    let done = ExecutionLedger::new(T + 2_000).finish(Some(&retried), &answer);
    assert_eq!(
        done.reply,
        json!({"body": body(&answer), "state": "completing"})
    );
    assert!(done.schedule);
    assert!(matches!(
        done.save,
        Some(ExecutionRecord::Completing { queued_ms, success: true, .. }) if queued_ms == T + 2_000
    ));
    // Without a retry: answered, and replayed with the same body.
    let answered = ledger.finish(Some(&running), &answer).save.unwrap();
    assert_eq!(answered.state(), "answered");
    let replay = ledger.admit(Some(&answered), "score", None);
    assert_eq!(
        replay.reply,
        json!({"kind": "replay", "body": body(&answer)})
    );
    assert_eq!(replay.save, None);
    // A record lost meanwhile is taken as running.
    let lost = ledger.finish(None, &answer);
    assert_eq!(lost.reply["state"], "answered");
    // Known before anything runs (approval): recorded at once, the alarm set for its expiry.
    let approve = block("P2D");
    let step = ledger.admit(None, "approve", Some(approve.clone()));
    assert_eq!(
        step.reply,
        json!({"kind": "done", "body": body(&approve), "state": "blocked"})
    );
    assert!(step.schedule);
    assert_eq!(step.save.unwrap().expires_at_ms(), Some(T + 2 * 86_400_000));
}

fn completion(id: &str, success: bool) -> Completion {
    Completion {
        callback_id: id.into(),
        outputs: json!({"score": 1}).as_object().cloned().unwrap(),
        state: if success {
            ExecutionState::Success
        } else {
            ExecutionState::FailContinue
        },
    }
}

fn blocked_until(expires_at_ms: u64) -> ExecutionRecord {
    ExecutionRecord::Blocked {
        action: "approve".into(),
        body: "{}".into(),
        expires_at_ms,
    }
}

#[test]
fn ledger_completes_only_a_live_block_and_expires_a_late_one() {
    let ledger = ExecutionLedger::new(T);
    let live = blocked_until(T + 1);
    let step = ledger.complete(Some(&live), &completion("cb", false));
    assert_eq!(step.reply, json!({"status": 202}));
    assert!(matches!(
        step.save,
        Some(ExecutionRecord::Completing {
            success: false,
            queued_ms: T,
            ..
        })
    ));
    // Past its expiry (the alarm has not run yet): expired now, 410.
    let late = ledger.complete(Some(&blocked_until(T)), &completion("cb", true));
    assert_eq!(
        late.reply,
        json!({"status": 410, "code": "callback_expired"})
    );
    assert_eq!(late.save.unwrap().state(), "expired");
    // Unknown, running, completed: refused, nothing written.
    let running = ledger.admit(None, "score", None).save.unwrap();
    let completed = ExecutionRecord::Completed {
        action: "approve".into(),
        body: None,
    };
    for (record, status, code) in [
        (None, 404, "callback_unknown"),
        (Some(&running), 409, "callback_running"),
        (Some(&completed), 409, "callback_completed"),
    ] {
        let step = ledger.complete(record, &completion("cb", true));
        assert_eq!(step.reply, json!({"status": status, "code": code}));
        assert_eq!(step.save, None);
    }
}

#[test]
fn ledger_lists_without_values() {
    let ledger = ExecutionLedger::new(T);
    let live = blocked_until(T + 5);
    assert_eq!(
        ledger.get("cb", Some(&live)),
        json!({"callbackId": "cb", "action": "approve", "state": "blocked"})
    );
    assert_eq!(ledger.get("cb", None), Value::Null);
    // Blocked for an object: only the live blocks.
    let rows = vec![
        ("a".to_owned(), live.clone()),
        ("b".to_owned(), blocked_until(T)),
        (
            "c".to_owned(),
            ExecutionRecord::Completed {
                action: "approve".into(),
                body: None,
            },
        ),
    ];
    assert_eq!(
        ledger.blocked(rows),
        json!([{"callbackId": "a", "action": "approve"}])
    );
    // Waiting: at most 100 listed, `more` when there are others; a bad record left out.
    let rows: Vec<_> = (0..=ExecutionLedger::MAX_WAITING)
        .map(|i| {
            let record = (i != 1).then(|| live.clone());
            (format!("cb-{i}"), record, Some(5_i64), (T - 3_000) as i64)
        })
        .collect();
    let listed = ledger.waiting(rows.into_iter());
    assert_eq!(listed["more"], true);
    let items = listed["executions"].as_array().unwrap();
    assert_eq!(items.len(), ExecutionLedger::MAX_WAITING - 1);
    assert_eq!(
        items[0],
        json!({"callbackId": "cb-0", "action": "approve", "state": "blocked",
               "sinceMs": T - 3_000, "ageSecs": 3, "expiresMs": 5})
    );
    assert!(!items.iter().any(|i| i.to_string().contains("score")));
    let one = ledger.waiting(vec![("x".to_owned(), Some(live), None, T as i64)].into_iter());
    assert_eq!(one["more"], false);
    assert_eq!(one["executions"][0]["expiresMs"], Value::Null);
}

#[test]
fn ledger_redrives_a_failed_completion_unless_completed_since() {
    let ledger = ExecutionLedger::new(T);
    let failed = ExecutionRecord::Failed {
        action: "approve".into(),
        body: Some("{\"b\":1}".into()),
        code: "validation_error".into(),
    };
    let letter = ActionLetter::new(
        PortalId::new(9),
        &failed,
        &completion("cb", true),
        "validation_error",
    );
    let again = ledger.redrive(Some(&failed), letter.clone()).unwrap();
    assert_eq!(
        again,
        ExecutionRecord::Completing {
            action: "approve".into(),
            body: Some("{\"b\":1}".into()),
            outputs: letter.outputs.clone(),
            success: true,
            queued_ms: T,
        }
    );
    let completed = failed.settled(Ok(()));
    assert_eq!(ledger.redrive(Some(&completed), letter.clone()), None);
    // Dropped meanwhile (older than the records' TTL): queued again without a body.
    assert!(matches!(
        ledger.redrive(None, letter),
        Some(ExecutionRecord::Completing { body: None, .. })
    ));
    assert_eq!(ledger.forget_before(), T - ExecutionLedger::RECORD_TTL_MS);
    assert_eq!(ExecutionLedger::new(5).forget_before(), 0);
}

#[test]
fn letters_and_answers_keep_their_json() {
    let record = blocked_until(T);
    let letter = ActionLetter::new(
        PortalId::new(42),
        &record,
        &completion("cb-1", false),
        "not_found",
    );
    let v = serde_json::to_value(&letter).unwrap();
    assert_eq!(
        v,
        json!({"source": "action", "portalId": 42, "callbackId": "cb-1", "action": "approve",
               "outputs": {"score": 1}, "success": false, "code": "not_found"})
    );
    assert_eq!(serde_json::from_value::<ActionLetter>(v).unwrap(), letter);
    let m = serde_json::to_value(letter.message(T).unwrap()).unwrap();
    assert_eq!(m["reason"], "action_completion_failed");
    assert_eq!(
        m["detail"],
        "action completion refused by HubSpot: not_found"
    );
    assert_eq!(m["key"], "action:cb-1");
    assert_eq!(m["requestId"], format!("action-{T}"));
    assert_eq!(m["receivedAt"], T);
    assert_eq!(m["event"]["callbackId"], "cb-1");
    assert!(m.get("traceparent").is_none());
    // Answers: `{"outputs", "state", "expiration"}` and back.
    for answer in [
        block("P1D"),
        success(json!({"a": 1})),
        Answer {
            outputs: Map::new(),
            state: ExecutionState::FailContinue,
        },
    ] {
        let wire = AnswerWire::from(&answer);
        let v = serde_json::to_value(&wire).unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["expiration", "outputs", "state"]
        );
        let back: AnswerWire = serde_json::from_value(v).unwrap();
        assert_eq!(back.into_answer(), answer);
    }
    let v = json!({"outputs": {}, "state": "BLOCK"});
    let wire: AnswerWire = serde_json::from_value(v).unwrap();
    assert_eq!(
        wire.into_answer().state,
        ExecutionState::Block { expiration: None }
    );
}

#[test]
fn the_alarm_wakes_for_the_batcher_or_the_first_expiry() {
    let window = 1_000;
    let few = pending(3, T);
    let due = next_due_ms(&few, window);
    assert!(due.is_some());
    assert_eq!(ExecutionLedger::next_alarm(&few, window, None, None), due);
    // An expiry sooner wins; a retry replaces the batcher's time when completions wait.
    assert_eq!(
        ExecutionLedger::next_alarm(&few, window, None, Some(T - 1)),
        Some(T - 1)
    );
    assert_eq!(
        ExecutionLedger::next_alarm(&few, window, Some(T + 10_000), None),
        Some(T + 10_000)
    );
    assert_eq!(
        ExecutionLedger::next_alarm(&[], window, Some(T + 10_000), Some(T + 99)),
        Some(T + 99)
    );
    assert_eq!(
        ExecutionLedger::next_alarm(&[], window, Some(T), None),
        None
    );
    // An alarm set sooner and still ahead stands; one passed or later is replaced.
    let ledger = ExecutionLedger::new(T);
    assert!(ledger.keeps_alarm(Some(T + 5), T + 10));
    assert!(!ledger.keeps_alarm(Some(T + 20), T + 10));
    assert!(!ledger.keeps_alarm(Some(T), T + 10));
    assert!(!ledger.keeps_alarm(None, T + 10));
}

fn sizes(wave: &[Vec<String>]) -> Vec<usize> {
    wave.iter().map(Vec::len).collect()
}

#[test]
fn the_batcher_sends_waves_then_resends_within_its_call_budget() {
    let window = 1_000;
    // 2,500 due: 20 batches of 100 (the call budget), in waves of 6, 6, 6, 2.
    let mut flush = CompletionFlush::new(&pending(2_500, T), T + 10_000, window);
    let mut waves = Vec::new();
    loop {
        let wave = flush.next_wave();
        if wave.is_empty() {
            break;
        }
        for _ in &wave {
            flush.settled(Some(&BatchFate::Completed));
        }
        waves.push(sizes(&wave));
    }
    assert_eq!(waves.iter().map(Vec::len).collect::<Vec<_>>(), [6, 6, 6, 2]);
    assert!(waves.iter().flatten().all(|n| *n == 100));
    // The rest wait for the batcher's own time: no early retry.
    assert_eq!(flush.retry_at(T), None);
    assert!(flush.next_wave().is_empty());

    // A split batch: its groups go after the wave, one call at a time.
    let mut flush = CompletionFlush::new(&pending(150, T), T + 10_000, window);
    let wave = flush.next_wave();
    assert_eq!(sizes(&wave), [100, 50]);
    let split = BatchFate::Split {
        failed: vec![wave[0][0].clone()],
        code: "validation_error".into(),
        resend: vec![wave[0][1..50].to_vec(), wave[0][50..].to_vec()],
    };
    flush.settled(Some(&split));
    flush.settled(None);
    assert_eq!(sizes(&flush.next_wave()), [50]);
    flush.settled(Some(&BatchFate::Retry { after_ms: 1 }));
    assert_eq!(sizes(&flush.next_wave()), [49]);
    flush.settled(Some(&BatchFate::DeadLetter { code: "x".into() }));
    assert!(flush.next_wave().is_empty());
    // A batch not decided: run again in 10 s.
    assert_eq!(flush.retry_at(T), Some(T + CompletionFlush::RETRY_DELAY_MS));

    // Splits past the call budget wait for the next run, soon.
    let mut flush = CompletionFlush::new(&pending(2_000, T), T + 10_000, window);
    let mut calls = 0;
    loop {
        let wave = flush.next_wave();
        if wave.is_empty() {
            break;
        }
        for batch in &wave {
            calls += 1;
            let (a, b) = batch.split_at(batch.len() / 2);
            flush.settled(Some(&BatchFate::Split {
                failed: vec![],
                code: "validation_error".into(),
                resend: vec![a.to_vec(), b.to_vec()],
            }));
        }
    }
    assert_eq!(calls, CompletionFlush::MAX_BATCHES);
    assert_eq!(flush.retry_at(T), Some(T + CompletionFlush::RETRY_DELAY_MS));

    // Nothing due: nothing to send.
    let mut idle = CompletionFlush::new(&pending(3, T), T, window);
    assert!(idle.next_wave().is_empty());
    assert_eq!(idle.retry_at(T), None);
}

#[test]
fn a_rule_completes_each_blocked_execution_its_action_can_take() {
    let d = defs();
    let outputs = json!({"score": "7", "stage": "won"});
    let (done, refused) = d.rule_completions(
        [("cb-1", "score"), ("cb-2", "gone"), ("cb-3", "approve")],
        outputs.as_object().unwrap(),
    );
    let ids: Vec<&str> = done.iter().map(|c| c.callback_id.as_str()).collect();
    assert_eq!(ids, ["cb-1", "cb-3"]);
    assert_eq!(Value::Object(done[0].outputs.clone()), json!({"score": 7}));
    assert_eq!(refused, [("cb-2".to_owned(), "action_unknown")]);
    let bad = json!({"score": "many"});
    let (done, refused) = d.rule_completions([("cb-1", "score")], bad.as_object().unwrap());
    assert!(done.is_empty());
    assert_eq!(refused, [("cb-1".to_owned(), "action_field_type")]);
}

#[test]
fn a_rule_completion_counts_what_became_of_the_objects_blocked_executions() {
    let d = defs();
    let outputs = json!({"score": "7"});
    let blocked = json!([
        {"callbackId": "cb-1", "action": "score"},
        {"callbackId": "cb-2", "action": "gone"},
        {"callbackId": "cb-3"},
        {"callbackId": "cb-4", "action": "score"},
    ]);
    let (completions, mut done) = d.complete_blocked(&blocked, outputs.as_object().unwrap());
    let ids: Vec<&str> = completions.iter().map(|c| c.callback_id.as_str()).collect();
    // A row without an action is left out; an unknown action is refused.
    assert_eq!(ids, ["cb-1", "cb-4"]);
    assert_eq!(done.refused, [("cb-2".to_owned(), "action_unknown")]);
    assert_eq!((done.completed, done.skipped), (0, 0));
    // The ledger's replies: queued (202), or no longer blocked (anything else).
    done.count(&json!({"cb-1": {"status": 202}, "cb-4": {"status": 409, "state": "success"}}));
    assert_eq!((done.completed, done.skipped), (1, 1));
    done.count(&json!({"cb-5": {"status": 202}}));
    assert_eq!((done.completed, done.skipped), (2, 1));
    // Nothing blocked (or not a list): nothing to do.
    let (none, done) = d.complete_blocked(&Value::Null, outputs.as_object().unwrap());
    assert!(none.is_empty());
    assert_eq!(done, ObjectCompletion::default());
}

#[test]
fn a_callbacks_portal_is_in_its_body_or_its_id() {
    assert_eq!(
        callback_portal("x", br#"{"portalId": 7}"#),
        Some(PortalId::new(7))
    );
    assert_eq!(
        callback_portal("ap-123-456-7", b"{}"),
        Some(PortalId::new(123))
    );
    assert_eq!(
        callback_portal("ap-123-456-7", br#"{"portalId": 9}"#),
        Some(PortalId::new(9))
    );
    assert_eq!(
        callback_portal("ap-123-456-7", b"not json"),
        Some(PortalId::new(123))
    );
    assert_eq!(callback_portal("ap-x-1", b"{}"), None);
    // Decimal digits only (PortalId's form): a sign, which u64's parser took, names no portal.
    assert_eq!(callback_portal("ap-+123-456-7", b"{}"), None);
    assert_eq!(callback_portal("cb-1", br#"{"portalId": "7"}"#), None);
}

#[test]
fn a_publish_lists_every_page_then_writes_what_differs() {
    let d = defs();
    let base = "https://edge.example.com";
    let api = crate::api::ApiConfig::new(
        "http://127.0.0.1:9",
        crate::api::ApiConfig::default().path_style().clone(),
    )
    .unwrap();
    let endpoints = || DefinitionsApi {
        api: &api,
        app_id: 42,
        developer_key: "dev",
    };
    let mut score = d.get("score").unwrap().render(base);
    score["id"] = json!("101");
    let mut approve = d.get("approve").unwrap().render(base);
    approve["id"] = json!(102);
    approve["labels"]["en"]["actionName"] = json!("Old name");
    let mut run = PublishRun::new(endpoints(), &d, base);
    // Two pages, the second after the first's cursor.
    let PublishNext::Call(first, RequestKind::Read) = run.next_step() else {
        panic!("lists first");
    };
    assert!(!first.uri().to_string().contains("after="));
    run.answered(Ok(
        json!({"results": [score], "paging": {"next": {"after": "p2"}}}),
    ));
    let PublishNext::Call(second, RequestKind::Read) = run.next_step() else {
        panic!("second page");
    };
    assert!(second.uri().to_string().contains("after=p2"));
    run.answered(Ok(json!({"results": [approve]})));
    // Then the writes, in configuration order: patch approve, create normalise.
    let PublishNext::Call(patch, RequestKind::Write) = run.next_step() else {
        panic!("patch");
    };
    assert_eq!(patch.method(), http::Method::PATCH);
    run.answered(Ok(json!({"id": 102})));
    let PublishNext::Call(create, RequestKind::Write) = run.next_step() else {
        panic!("create");
    };
    assert_eq!(create.method(), http::Method::POST);
    run.answered(Ok(json!({"id": "103"})));
    let PublishNext::Done(report) = run.next_step() else {
        panic!("done");
    };
    assert_eq!(
        report,
        json!({"created": 1, "patched": 1, "unchanged": 1, "actions": [
            {"key": "score", "step": "unchanged", "id": "101"},
            {"key": "approve", "step": "patch", "id": "102"},
            {"key": "normalise", "step": "create", "id": "103"}]})
    );

    // A listing that fails or is not a page stops the run, nothing written.
    let mut run = PublishRun::new(endpoints(), &d, base);
    let _ = run.next_step();
    run.answered(Ok(json!({"nope": 1})));
    assert!(matches!(run.next_step(), PublishNext::Failed(c) if c == "list_malformed"));
    let mut run = PublishRun::new(endpoints(), &d, base);
    let _ = run.next_step();
    run.answered(Err("rate_limited".into()));
    assert!(matches!(run.next_step(), PublishNext::Failed(c) if c == "rate_limited"));
    // A write refused: named by its action.
    let mut run = PublishRun::new(endpoints(), &d, base);
    let _ = run.next_step();
    run.answered(Ok(json!({"results": []})));
    assert!(matches!(
        run.next_step(),
        PublishNext::Call(_, RequestKind::Write)
    ));
    run.answered(Err("validation_error".into()));
    assert!(matches!(run.next_step(), PublishNext::Failed(c) if c == "score: validation_error"));
    // At most 50 pages are listed.
    let mut run = PublishRun::new(endpoints(), &d, base);
    let mut pages = 0;
    while let PublishNext::Call(_, RequestKind::Read) = run.next_step() {
        pages += 1;
        run.answered(Ok(
            json!({"results": [], "paging": {"next": {"after": pages.to_string()}}}),
        ));
    }
    assert_eq!(pages, PublishRun::MAX_PAGES);
}

#[test]
fn an_execution_request_is_checked_in_order_before_anything_runs() {
    use crate::signature::{sign_v2, ClientSecret, SignedRequest};
    let s = ActionSettings::from_lookup(keys(&[("HUBSPOT_CLIENT_SECRET", "action-secret")]))
        .unwrap()
        .unwrap();
    let uri = "http://127.0.0.1:8787/actions/approve";
    let body = |object_type: &str| {
        json!({"callbackId": "cb-1", "origin": {"portalId": 77, "actionDefinitionId": 1},
               "object": {"objectId": 5, "objectType": object_type}})
        .to_string()
        .into_bytes()
    };
    let prepare = |key: &str, body: &[u8], secret: &str| {
        let mut headers = http::HeaderMap::new();
        let sig = sign_v2(&ClientSecret::new(secret), "POST", uri, body);
        headers.insert("x-hubspot-signature", sig.parse().unwrap());
        headers.insert("x-hubspot-signature-version", "v2".parse().unwrap());
        let signed = SignedRequest {
            method: "POST",
            uri,
            headers: &headers,
            body,
        };
        match s.prepare(key, &signed, "http://127.0.0.1:8787", T) {
            Ok(p) => Ok((
                p.definition.key.clone(),
                p.known_answer(),
                p.request.callback_id,
            )),
            Err(e) => Err((e.status(), e.code(), e.hubspot_body())),
        }
    };
    // An approval: its block is known before anything runs.
    let (key, answer, callback_id) = prepare("approve", &body("DEAL"), "action-secret").unwrap();
    assert_eq!((key.as_str(), callback_id.as_str()), ("approve", "cb-1"));
    let answer = answer.expect("known").into_answer();
    assert_eq!(
        answer.state,
        ExecutionState::Block {
            expiration: Some("P2D".into())
        }
    );
    // A lookup: nothing known yet.
    let lookup = json!({"callbackId": "cb-2", "origin": {"portalId": 77, "actionDefinitionId": 1},
        "object": {"objectId": 5, "objectType": "CONTACT"}, "inputFields": {"tier": "gold"}})
    .to_string();
    let (_, answer, _) = prepare("score", lookup.as_bytes(), "action-secret").unwrap();
    assert!(answer.is_none());
    // The signature first: a forged request learns nothing about the action or its body.
    let (status, _, body401) = prepare("nope", b"{", "other-secret").unwrap_err();
    assert_eq!((status, body401), (401, None));
    // Then the action, the body, the object type, each with HubSpot's error body.
    let (status, code, b) = prepare("nope", &body("DEAL"), "action-secret").unwrap_err();
    assert_eq!((status, code), (404, "action_unknown"));
    let b: Value = serde_json::from_slice(&b.unwrap()).unwrap();
    assert_eq!(b["status"], "error");
    let (status, code, _) = prepare("approve", b"{}", "action-secret").unwrap_err();
    assert_eq!((status, code), (400, "action_request_malformed"));
    let (status, code, b) = prepare("approve", &body("CONTACT"), "action-secret").unwrap_err();
    assert_eq!((status, code), (400, "action_object_type"));
    assert!(b.is_some());
}

#[test]
fn a_late_lookup_reply_completes_its_blocked_execution() {
    let d = defs();
    let score = d.get("score").unwrap();
    let ok = LookupReply::Answered {
        status: 200,
        body: br#"{"outputs": {"score": 3}}"#,
    };
    let c = late_lookup_completion(score, "cb-1", &ok).expect("completes");
    assert_eq!(
        (c.callback_id.as_str(), &c.state),
        ("cb-1", &ExecutionState::Success)
    );
    assert_eq!(Value::Object(c.outputs), json!({"score": 3}));
    // No reply at all within the hard limit: FAIL_CONTINUE, unreachable.
    let c = late_lookup_completion(score, "cb-1", &LookupReply::Failed).unwrap();
    assert_eq!(c.state, ExecutionState::FailContinue);
    assert_eq!(c.outputs["why"], "lookup_unreachable");
    // A 202: the user's system completes it with the callback, nothing to send now.
    let later = LookupReply::Answered {
        status: 202,
        body: b"",
    };
    assert_eq!(late_lookup_completion(score, "cb-1", &later), None);
}

#[test]
fn settings_and_the_health_check_agree_key_by_key() {
    // One check, two callers: the routes' first error is the health check's first one.
    type Case<'a> = &'a [(&'a str, &'a str)];
    let cases: [Case<'_>; 6] = [
        &[("HUBSPOT_CLIENT_SECRET", " ")],
        &[("ACTIONS", "{")],
        &[("ACTIONS_BUDGET_MS", "soon")],
        &[("ACTIONS_CALLBACK_SECRET", "plain")],
        &[
            ("ACTIONS_BUDGET_MS", "0"),
            ("ACTIONS_CALLBACK_SECRET", "plain"),
        ],
        &[("ACTIONS_COMPLETE_WINDOW_MS", "x"), ("ACTIONS", "[]")],
    ];
    for extra in cases {
        let first = ActionSettings::from_lookup(keys(extra)).unwrap_err();
        let all = crate::config::actions(&crate::config::Lookup::new(keys(extra)));
        assert_eq!(all.first(), Some(&first), "{extra:?}");
    }
    // A bad map is the enrichment part's problem in the health check, but the routes refuse.
    let extra: Case<'_> = &[("ENRICHMENT_MAP", "[]")];
    assert_eq!(
        ActionSettings::from_lookup(keys(extra)).unwrap_err().key(),
        "ENRICHMENT_MAP"
    );
    assert!(
        crate::config::actions(&crate::config::Lookup::new(keys(extra)))
            .iter()
            .all(|e| e.key() != "ENRICHMENT_MAP")
    );
    // Valid: no problem for either.
    assert!(ActionSettings::from_lookup(keys(&[])).unwrap().is_some());
    assert!(crate::config::actions(&crate::config::Lookup::new(keys(&[]))).is_empty());
    // Off: the routes read nothing else; the health check still reports the other keys.
    let off: Case<'_> = &[("ACTIONS", ""), ("ACTIONS_BUDGET_MS", "soon")];
    assert!(ActionSettings::from_lookup(keys(off)).unwrap().is_none());
    assert_eq!(
        crate::config::actions(&crate::config::Lookup::new(keys(off)))[0].key(),
        "ACTIONS_BUDGET_MS"
    );
}

fn callback_settings() -> ActionSettings {
    ActionSettings::from_lookup(keys(&[("ACTIONS_CALLBACK_SECRET", SECRET)]))
        .unwrap()
        .unwrap()
}

fn signed(body: &[u8], ts: u64) -> [String; 3] {
    let secret = crate::outbound::WebhookSecret::parse(SECRET).unwrap();
    [
        "msg-1".into(),
        ts.to_string(),
        secret.sign("msg-1", ts, body),
    ]
}

fn refused_code(step: CallbackStep) -> (u16, String) {
    match step {
        CallbackStep::Answer(CallbackAnswer::Refused { status, code, .. }) => (status, code),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn callback_route_checks_in_order_then_completes() {
    let now = 1_700_000_000;
    let s = callback_settings();
    let body = br#"{"portalId": 7, "outputs": {"score": 3}}"#;
    let h = signed(body, now);
    let headers = [h[0].as_str(), h[1].as_str(), h[2].as_str()];
    let route = CallbackRoute::new(&s, "cb-1", Some(body));
    assert_eq!(
        route.start(headers, now),
        CallbackStep::Load {
            portal: PortalId::new(7)
        }
    );
    // Off without the secret, before anything else (even a body too large).
    let off = ActionSettings::from_lookup(keys(&[])).unwrap().unwrap();
    assert_eq!(
        refused_code(CallbackRoute::new(&off, "cb-1", None).start(headers, now)),
        (404, "callbacks_off".into())
    );
    assert_eq!(
        refused_code(CallbackRoute::new(&s, "cb-1", None).start(headers, now)),
        (413, "callback_body_too_large".into())
    );
    // Stale (more than 5 minutes), forged, or another body: 401.
    for (at, body) in [(now + 301, &body[..]), (now, br#"{"portalId": 8}"#)] {
        assert_eq!(
            refused_code(CallbackRoute::new(&s, "cb-1", Some(body)).start(headers, at)),
            (401, "callback_signature_invalid".into())
        );
    }
    assert_eq!(
        CallbackRoute::new(&s, "cb-1", Some(body)).start(headers, now - 300),
        CallbackStep::Load {
            portal: PortalId::new(7)
        }
    );
    // No portal in the body nor the id: 400.
    let anon = br#"{"outputs": {}}"#;
    let h2 = signed(anon, now);
    assert_eq!(
        refused_code(
            CallbackRoute::new(&s, "cb-1", Some(anon))
                .start([h2[0].as_str(), h2[1].as_str(), h2[2].as_str()], now)
        ),
        (400, "callback_portal_unknown".into())
    );
    // The record: store down, unknown execution, action no longer configured, bad outputs.
    type RecordCase<'a> = (Result<Option<&'a str>, ()>, u16, &'a str);
    let record_cases: [RecordCase<'_>; 3] = [
        (Err(()), 503, "action_store_unavailable"),
        (Ok(None), 404, "callback_unknown"),
        (Ok(Some("gone")), 409, "action_unknown"),
    ];
    for (action, status, code) in record_cases {
        assert_eq!(
            refused_code(route.on_record(PortalId::new(7), action)),
            (status, code.into())
        );
    }
    let bad = br#"{"portalId": 7, "outputs": {"nope": 1}}"#;
    assert_eq!(
        refused_code(
            CallbackRoute::new(&s, "cb-1", Some(bad))
                .on_record(PortalId::new(7), Ok(Some("score")))
        ),
        (400, "action_output_unknown".into())
    );
    let CallbackStep::Complete { portal, completion } =
        route.on_record(PortalId::new(7), Ok(Some("score")))
    else {
        panic!("a completion")
    };
    assert_eq!(
        (portal, completion.callback_id.as_str()),
        (PortalId::new(7), "cb-1")
    );
    assert_eq!(Value::Object(completion.outputs), json!({"score": 3}));
    // The store's answer: 202 queued, its refusal as is, 503 when unreachable.
    assert_eq!(route.on_completed(Ok((202, ""))), CallbackAnswer::Accepted);
    for (status, code) in [
        (409, "callback_completed"),
        (409, "callback_running"),
        (410, "callback_expired"),
    ] {
        let CallbackAnswer::Refused {
            status: s2,
            code: c2,
            ..
        } = route.on_completed(Ok((status, code)))
        else {
            panic!("refused")
        };
        assert_eq!((s2, c2.as_str()), (status, code));
    }
    assert!(matches!(
        route.on_completed(Err(())),
        CallbackAnswer::Refused { status: 503, .. }
    ));
}

#[test]
fn late_completion_retries_only_while_running_ten_sends_at_most() {
    let mut r = LateCompletionRetry::default();
    for _ in 1..LateCompletionRetry::TRIES {
        assert_eq!(r.again_after(409, "callback_running"), Some(200));
    }
    // The tenth send still running: final.
    assert_eq!(r.again_after(409, "callback_running"), None);
    // Any other answer is final at once.
    for (status, code) in [
        (202, ""),
        (409, "callback_completed"),
        (410, "callback_expired"),
    ] {
        assert_eq!(
            LateCompletionRetry::default().again_after(status, code),
            None
        );
    }
}

#[test]
fn an_admission_reply_says_run_or_answer_now() {
    let ledger = ExecutionLedger::new(T);
    let run = ledger.admit(None, "score", None);
    assert_eq!(ExecutionLedger::admitted(&run.reply), Ok(None));
    let running = run.save.unwrap();
    // A retry while it runs and a replay are logged `replayed`, with the body to answer.
    let retry = ledger.admit(Some(&running), "score", None).reply;
    assert_eq!(
        ExecutionLedger::admitted(&retry),
        Ok(Some((
            "replayed",
            body(&block(DEFAULT_EXPIRATION)).as_str()
        )))
    );
    let answer = success(json!({"score": 7}));
    let answered = ledger.finish(Some(&running), &answer).save.unwrap();
    let replay = ledger.admit(Some(&answered), "score", None).reply;
    assert_eq!(
        ExecutionLedger::admitted(&replay),
        Ok(Some(("replayed", body(&answer).as_str())))
    );
    // A known answer recorded at admission: logged with its state.
    let done = ledger.admit(None, "approve", Some(block("P2D"))).reply;
    let (outcome, _) = ExecutionLedger::admitted(&done).unwrap().unwrap();
    assert_eq!(outcome, done["state"].as_str().unwrap());
    // Not a reply: an error, never a run.
    for bad in [
        json!({}),
        json!({"kind": "done", "body": "{}"}),
        json!({"kind": "x"}),
    ] {
        assert!(ExecutionLedger::admitted(&bad).is_err(), "{bad}");
    }
}
