#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::queue::event_message_json;

const NOW: u64 = 1_000_000;

fn policy() -> DeliveryRetryPolicy {
    DeliveryRetryPolicy {
        max_attempts: 3,
        base_delay_secs: 10,
        max_delay_secs: 100,
    }
}

fn body(key: &str, attempt: u32) -> String {
    event_message_json(key, attempt, NOW - 50, "req", None, r#"{"x":1}"#, None)
}

fn by_ref(key: &str) -> String {
    event_message_json(
        key,
        1,
        NOW - 50,
        "req",
        None,
        "null",
        Some(&format!("evt:{key}")),
    )
}

/// A plan whose messages are all ready (none seen), with the envelopes taken.
fn ready(bodies: &[String]) -> (Consume, Vec<(usize, EventMessage<OwnedEvent>)>) {
    let mut plan = Consume::new(bodies.iter().map(String::as_str), policy(), NOW);
    for (i, _) in plan
        .to_check()
        .into_iter()
        .map(|(i, k)| (i, k.to_owned()))
        .collect::<Vec<_>>()
    {
        plan.seen(i, false);
    }
    let taken = plan.take_ready();
    (plan, taken)
}

fn sent(status: u16) -> JobRun {
    JobRun::Sent {
        attempt: Attempt::Answered {
            status,
            retry_after_secs: None,
        },
        detail: format!("status_{status}"),
    }
}

#[test]
fn invalid_and_in_batch_duplicates_are_settled_at_once() {
    let bodies = [
        body("a", 1),
        "not json".to_owned(),
        body("a", 2),
        body("b", 1),
    ];
    let mut plan = Consume::new(bodies.iter().map(String::as_str), policy(), NOW);
    assert_eq!(plan.to_check(), vec![(0, "a"), (3, "b")]);
    let disposals = plan.take_disposals();
    assert_eq!(disposals.len(), 2);
    match &disposals[0] {
        (1, Disposal::Invalid(letter)) => {
            assert_eq!(letter.reason, "message_invalid");
            assert_eq!(letter.attempts, 0);
            assert_eq!(letter.key, None);
            assert_eq!(letter.received_at, NOW);
            assert_eq!(letter.event.get(), r#""not json""#);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&disposals[1], (2, Disposal::Duplicate(e)) if e.key == "a"));
    let stats = plan.stats();
    assert_eq!(
        (stats.messages, stats.duplicates, stats.dead_lettered),
        (4, 1, 1)
    );
}

#[test]
fn seen_keys_are_duplicates_and_a_failed_lookup_is_not_seen() {
    let bodies = [body("a", 1), body("b", 1)];
    let mut plan = Consume::new(bodies.iter().map(String::as_str), policy(), NOW);
    plan.seen(0, true);
    plan.seen(1, false);
    plan.seen(7, true); // out of range: ignored
    assert!(matches!(&plan.take_disposals()[..], [(0, Disposal::Duplicate(e))] if e.key == "a"));
    let taken = plan.take_ready();
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].0, taken[0].1.key.as_str()), (1, "b"));
    assert!(plan.take_ready().is_empty(), "handed over once");
    assert_eq!(plan.stats().duplicates, 1);
}

#[test]
fn bodies_by_reference_are_loaded_or_redelivered_with_the_base_delay() {
    let bodies = [by_ref("a"), by_ref("b"), by_ref("c"), body("d", 1)];
    let mut plan = Consume::new(bodies.iter().map(String::as_str), policy(), NOW);
    for i in 0..4 {
        plan.seen(i, false);
    }
    assert_eq!(
        plan.to_load(),
        vec![(0, "evt:a"), (1, "evt:b"), (2, "evt:c")]
    );
    plan.loaded(0, Some(r#"{"big":true}"#.into()));
    plan.loaded(1, None);
    plan.loaded(2, Some("not json".into()));
    let disposals = plan.take_disposals();
    assert_eq!(disposals.len(), 2);
    for (i, d) in &disposals {
        assert!(
            matches!(d, Disposal::Unavailable { delay_secs: 10, .. }),
            "{i}: {d:?}"
        );
    }
    let taken = plan.take_ready();
    let keys: Vec<_> = taken.iter().map(|(i, e)| (*i, e.key.as_str())).collect();
    assert_eq!(keys, vec![(0, "a"), (3, "d")]);
    assert_eq!(taken[0].1.event.get(), r#"{"big":true}"#);
    // Re-queued, it goes by reference again.
    assert!(taken[0]
        .1
        .to_queue_json()
        .unwrap()
        .contains(r#""event":null"#));
    assert_eq!(plan.stats().retried, 2);
}

#[test]
fn delivered_jobs_are_acked_with_latency_and_effects() {
    let (mut plan, taken) = ready(&[body("a", 1), body("b", 2)]);
    let members: Vec<_> = taken.iter().map(|(_, e)| e).collect();
    let verdict = plan.verdict(&members, sent(204), 0.5);
    assert!(verdict.delivered());
    let settled = plan.settle(&members, verdict, Recorded::Ok, 3);
    assert_eq!(settled.settle, Settle::Ack);
    assert_eq!(settled.attempt, 2, "the highest of the members'");
    assert!(!settled.conflict);
    let stats = plan.stats();
    assert_eq!((stats.delivered, stats.rule_effects), (2, 3));
    assert_eq!(
        stats
            .metrics
            .count(Counter::Deliveries, &[("result", "success")]),
        1
    );
    let latency = stats.metrics.distribution(Histogram::DeliveryLatency, &[]);
    assert_eq!(latency.count(), 2);
}

#[test]
fn failures_retry_as_the_next_attempt_then_dead_letter() {
    let (mut plan, taken) = ready(&[body("a", 1)]);
    let members: Vec<_> = taken.iter().map(|(_, e)| e).collect();
    let verdict = plan.verdict(&members, sent(503), 0.0);
    assert!(!verdict.delivered());
    let settled = plan.settle(&members, verdict, Recorded::Ok, 0);
    assert_eq!(settled.settle, Settle::Retry { delay_secs: 5 });
    let next = settled.next(taken.into_iter().next().unwrap().1);
    assert_eq!(next.attempt, 2);
    let m = &plan.stats().metrics;
    assert_eq!(m.count(Counter::Deliveries, &[("class", "http_5xx")]), 1);
    assert_eq!(m.count(Counter::DeliveryRetries, &[]), 1);

    // The last attempt: retries exhausted.
    let (mut plan, taken) = ready(&[body("a", 3)]);
    let members: Vec<_> = taken.iter().map(|(_, e)| e).collect();
    let verdict = plan.verdict(
        &members,
        JobRun::Sent {
            attempt: Attempt::TimedOut,
            detail: "timeout".into(),
        },
        0.0,
    );
    let settled = plan.settle(&members, verdict, Recorded::Ok, 0);
    assert_eq!(settled.settle, Settle::DeadLetter(GiveUp::RetriesExhausted));
    assert_eq!(settled.reason, "retries_exhausted");
    let letter = settled.letter(taken.into_iter().next().unwrap().1);
    assert_eq!((letter.attempts, letter.key.as_deref()), (3, Some("a")));
    assert_eq!(letter.detail, "timeout");
    assert_eq!(letter.event.get(), r#"{"x":1}"#);
    assert_eq!(
        plan.stats()
            .metrics
            .count(Counter::Deliveries, &[("class", "timeout")]),
        1
    );
}

#[test]
fn a_refusal_dead_letters_now_and_a_step_failure_keeps_its_code() {
    let (mut plan, taken) = ready(&[body("a", 1)]);
    let members: Vec<_> = taken.iter().map(|(_, e)| e).collect();
    let v = plan.verdict(&members, sent(400), 0.0);
    let s = plan.settle(&members, v, Recorded::Ok, 0);
    assert_eq!(
        (s.settle, s.reason.as_str()),
        (
            Settle::DeadLetter(GiveUp::Rejected(400)),
            "destination_rejected"
        )
    );

    let refused = JobRun::Refused {
        reason: "destination_unknown".into(),
        detail: "send:x".into(),
    };
    let v = plan.verdict(&members, refused, 0.0);
    let s = plan.settle(&members, v, Recorded::Ok, 0);
    assert_eq!(s.settle, Settle::DeadLetter(GiveUp::Unforwardable));
    assert_eq!(
        (s.reason.as_str(), s.detail.as_str()),
        ("destination_unknown", "send:x")
    );

    let failed = |attempt| JobRun::Failed {
        attempt: Attempt::StepFailed {
            retry_after_secs: Some(40),
        },
        code: "hubspot_read_failed".into(),
        detail: format!("try {attempt}"),
    };
    let v = plan.verdict(&members, failed(1), 0.0);
    assert!(!v.delivered(), "a failed step is never a delivery");
    let s = plan.settle(&members, v, Recorded::Ok, 0);
    assert_eq!(
        s.settle,
        Settle::Retry { delay_secs: 40 },
        "never sooner than asked"
    );
    let (mut last, taken) = ready(&[body("a", 3)]);
    let members: Vec<_> = taken.iter().map(|(_, e)| e).collect();
    let v = last.verdict(&members, failed(3), 0.0);
    let s = last.settle(&members, v, Recorded::Ok, 0);
    assert_eq!(
        (s.settle, s.reason.as_str()),
        (
            Settle::DeadLetter(GiveUp::RetriesExhausted),
            "hubspot_read_failed"
        )
    );
    assert_eq!(plan.stats().dead_lettered, 2);
}

#[test]
fn deferred_conflicting_and_unrecorded_jobs() {
    let (mut plan, taken) = ready(&[body("a", 2)]);
    let members: Vec<_> = taken.iter().map(|(_, e)| e).collect();
    let v = plan.verdict(&members, JobRun::Deferred, 0.0);
    assert!(!v.delivered());
    let s = plan.settle(&members, v, Recorded::Ok, 0);
    assert_eq!(
        s.settle,
        Settle::Requeue {
            delay_secs: DEFERRED_DELAY_SECS
        }
    );
    assert_eq!(s.detail, "deferred");
    assert_eq!(
        s.next(
            taken[0]
                .1
                .to_queue_json()
                .map(|t| serde_json::from_str(&t).unwrap())
                .unwrap()
        )
        .attempt,
        2,
        "the same attempt"
    );

    let v = plan.verdict(
        &members,
        JobRun::Done {
            detail: "nothing_to_forward".into(),
        },
        0.0,
    );
    assert!(v.delivered());
    let s = plan.settle(&members, v, Recorded::Conflict, 0);
    assert_eq!(
        s.settle,
        Settle::Requeue {
            delay_secs: DEFERRED_DELAY_SECS
        }
    );
    assert!(s.conflict);

    let v = plan.verdict(&members, sent(200), 0.0);
    let s = plan.settle(&members, v, Recorded::Failed, 0);
    assert_eq!(s.settle, Settle::Retry { delay_secs: 10 });
    assert_eq!(
        (s.reason.as_str(), s.detail.as_str()),
        ("", "record_store_unavailable")
    );
    assert_eq!(
        plan.stats()
            .metrics
            .count(Counter::Deliveries, &[("class", "record_store")]),
        1
    );
    assert_eq!((plan.stats().deferred, plan.stats().retried), (2, 1));
}

#[test]
fn held_for_config_retries_then_dead_letters_config_invalid() {
    let bodies = [body("a", 1), by_ref("b"), "{}".to_owned(), body("c", 3)];
    let mut plan = Consume::new(bodies.iter().map(String::as_str), policy(), NOW);
    plan.hold("FORWARD_URL: config_missing", || 0.0);
    let disposals = plan.take_disposals();
    assert_eq!(disposals.len(), 4);
    assert!(matches!(&disposals[0], (2, Disposal::Invalid(_))));
    match &disposals[1] {
        (
            0,
            Disposal::Retry {
                next,
                delay_secs: 5,
            },
        ) => assert_eq!(next.attempt, 2),
        other => panic!("{other:?}"),
    }
    match &disposals[2] {
        (1, Disposal::Retry { next, .. }) => {
            assert_eq!(next.event_ref.as_deref(), Some("evt:b"));
        }
        other => panic!("{other:?}"),
    }
    match &disposals[3] {
        (3, Disposal::DeadLetter(letter)) => {
            assert_eq!(letter.reason, "config_invalid");
            assert_eq!(letter.detail, "FORWARD_URL: config_missing");
            assert_eq!(letter.attempts, 3);
        }
        other => panic!("{other:?}"),
    }
    let s = plan.stats();
    assert_eq!((s.messages, s.retried, s.dead_lettered), (4, 2, 2));
    assert!(plan.take_ready().is_empty());
}

#[test]
fn a_dead_letter_by_reference_stays_a_reference() {
    let (mut plan, mut taken) = {
        let bodies = [by_ref("a")];
        let mut plan = Consume::new(bodies.iter().map(String::as_str), policy(), NOW);
        plan.seen(0, false);
        plan.loaded(0, Some(r#"{"big":1}"#.into()));
        let taken = plan.take_ready();
        (plan, taken)
    };
    let members: Vec<_> = taken.iter().map(|(_, e)| e).collect();
    let v = plan.verdict(&members, sent(410), 0.0);
    let s = plan.settle(&members, v, Recorded::Ok, 0);
    let letter = s.letter(taken.remove(0).1);
    assert_eq!(letter.event_ref.as_deref(), Some("evt:a"));
    assert_eq!(letter.event.get(), "null");
}

#[test]
fn failure_classes_and_counts() {
    assert_eq!(failure_class("status_429"), "http_429");
    assert_eq!(failure_class("status_302"), "redirect");
    assert_eq!(failure_class("status_404"), "http_4xx");
    assert_eq!(failure_class("status_502"), "http_5xx");
    assert_eq!(failure_class("status_99"), "http_other");
    assert_eq!(failure_class("network_error"), "network");
    assert_eq!(failure_class("send:x status_500"), "other");

    let stats = ConsumeStats {
        messages: 5,
        retried: 1,
        deferred: 2,
        duplicates: 1,
        ..ConsumeStats::default()
    };
    let mut m = Metrics::new();
    stats.count_into(&mut m, 4);
    assert_eq!(m.count(Counter::QueueSettled, &[("queue", "events")]), 5);
    assert_eq!(m.count(Counter::QueueEnqueued, &[("queue", "events")]), 3);
    assert_eq!(m.count(Counter::Events, &[("stage", "duplicate")]), 1);
    assert_eq!(m.count(Counter::Events, &[("stage", "echo_suppressed")]), 4);
}

#[test]
fn a_sent_forward_names_the_attempt_then_the_location() {
    let answered = |status| Attempt::Answered {
        status,
        retry_after_secs: None,
    };
    let detail = |run: JobRun| match run {
        JobRun::Sent { detail, .. } => detail,
        other => panic!("not sent: {other:?}"),
    };
    assert_eq!(
        detail(JobRun::sent(answered(503), None, None)),
        "status_503"
    );
    assert_eq!(
        detail(JobRun::sent(answered(302), None, Some("https://x/y"))),
        "status_302 location=https://x/y"
    );
    assert_eq!(
        detail(JobRun::sent(
            Attempt::TimedOut,
            Some("rule=r effect=send"),
            None
        )),
        "rule=r effect=send timeout"
    );
    assert_eq!(
        detail(JobRun::sent(Attempt::NetworkError, None, None)),
        "network_error"
    );
    // The detail's code is what the metrics' failure class reads.
    assert_eq!(
        failure_class(&detail(JobRun::sent(answered(429), None, None))),
        "http_429"
    );
    assert_eq!(
        JobRun::sent(answered(200), None, None),
        JobRun::Sent {
            attempt: answered(200),
            detail: "status_200".into()
        }
    );
}
