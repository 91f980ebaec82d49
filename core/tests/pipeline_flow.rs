//! The whole pipeline in memory, from the core alone, with fakes for what a host does: a
//! HubSpot-signed batch is verified and triaged (ingress), its messages go through a queue,
//! the consumer dedupes, enriches (a fake HubSpot batch read with history) and delivers to a
//! destination that fails once, following the core's retry decisions. Every decision is the
//! core's; the fakes only move bytes. What the Worker does on workerd, any runtime can do.
//!
//! The first test walks the lower-level steps one by one; the second drives the same batch
//! through the consumer's and enrichment's plans (`queue::consume::Consume`,
//! `enrich::Enrichment`) exactly as `worker/src/consumer.rs` and `worker/src/enrich.rs` do.

// Under wasm32 `#[test]` is wasm-bindgen-test's, which clippy's test allowances do not see.
#![cfg_attr(target_arch = "wasm32", allow(clippy::unwrap_used))]

use std::collections::{HashSet, VecDeque};

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::HashMap;

use hubspot_edge_core::api::BatchResponse;
use hubspot_edge_core::dedupe::DedupeKey;
use hubspot_edge_core::delivery::{
    Attempt, DeliveryDecision, DeliveryRetryPolicy, Recorded, Settle,
};
use hubspot_edge_core::enrich::{
    self, Current, EnrichIo, Enrichment, Forward, Plan, ReadOutcome, Route,
};
use hubspot_edge_core::event::{parse_batch, Event};
use hubspot_edge_core::filter::Filter;
use hubspot_edge_core::ingress::{triage, Received, Triage};
use hubspot_edge_core::mapping::Mapping;
use hubspot_edge_core::outbound;
use hubspot_edge_core::queue::consume::{Consume, Disposal, JobAction, JobRun};
use hubspot_edge_core::queue::{DeadLetterMessage, EventMessage, OwnedEvent};
use hubspot_edge_core::records::{apply, Stored};
use hubspot_edge_core::rules::Rules;
use hubspot_edge_core::signature::{sign_v3, ClientSecret, SignedRequest, Verifier};
use serde_json::{json, Value};

const SECRET: &str = "flow-client-secret";
const URL: &str = "https://hooks.example.com/webhooks/hubspot";
const T0: u64 = 1_700_000_000_000;
const MAP: &str = r#"{"objects":{"contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"firstname","field":"first_name"}
]}}}"#;

fn batch() -> String {
    let change = json!({"eventId": 1, "subscriptionId": 9, "portalId": 33, "appId": 7,
        "occurredAt": T0, "subscriptionType": "contact.propertyChange", "attemptNumber": 0,
        "objectId": 101, "propertyName": "firstname", "propertyValue": "Ann",
        "changeSource": "CRM"});
    let deal = json!({"eventId": 2, "subscriptionId": 8, "portalId": 33, "appId": 7,
        "occurredAt": T0 + 1, "subscriptionType": "deal.creation", "attemptNumber": 0,
        "objectId": 202});
    // The same change again (HubSpot's retry inside one batch) and an element that is not an
    // event.
    let mut retry = change.clone();
    retry["attemptNumber"] = json!(1);
    json!([change, deal, retry, {"nope": true}]).to_string()
}

/// The fake HubSpot: a batch read of contacts with `firstname`'s history.
fn hubspot_read(ids: &[String]) -> BatchResponse {
    assert_eq!(ids, ["101"], "one read, of the changed contact only");
    serde_json::from_value(json!({"status": "COMPLETE", "results": [{
        "id": "101",
        "properties": {"email": "ann@example.com", "firstname": "Ann"},
        "propertiesWithHistory": {"firstname": [
            {"value": "Ann", "timestamp": T0.to_string()},
            {"value": "Anne", "timestamp": (T0 - 60_000).to_string()}
        ]}
    }]}))
    .expect("a batch-read answer")
}

#[test]
fn a_signed_batch_flows_through_triage_queue_enrichment_and_delivery() {
    // --- Ingress: verify, parse, triage.
    let t = triaged("req-flow");
    assert_eq!(
        (t.counts.queued, t.counts.duplicates, t.counts.dead_lettered),
        (2, 1, 1)
    );
    let dead: DeadLetterMessage<OwnedEvent> = serde_json::from_str(&t.dead_letters[0]).unwrap();
    assert_eq!(dead.reason, "event_missing_field");

    // --- The queue: at-least-once, so the deal's message is delivered twice.
    let mut queue: VecDeque<String> = t.queue.iter().cloned().collect();
    queue.push_back(t.queue[1].clone());

    // --- The consumer: dedupe, enrich, deliver with retries, to a destination failing once.
    let mapping = Mapping::from_json(MAP).unwrap();
    let policy = DeliveryRetryPolicy::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut destination: Vec<Value> = Vec::new();
    let mut destination_calls = 0u32;
    while let Some(text) = queue.pop_front() {
        let message: EventMessage<OwnedEvent> = serde_json::from_str(&text).unwrap();
        if seen.contains(&message.key) {
            continue; // delivered before: a redelivery is acknowledged, not sent again
        }
        let event = Event::parse(&message.event).unwrap();
        let key = DedupeKey::of(&event);
        assert_eq!(key.as_str(), message.key);
        let content = match enrich::route(&mapping, &event) {
            Route::Thin => outbound::event_body(&event, &key, message.received_at),
            Route::Object(id) => {
                let map = mapping.object(event.object_type()).unwrap();
                let Plan::Read(need) = enrich::plan(map, &id, &[&event]) else {
                    panic!("a mapped change needs a read");
                };
                let chunks = enrich::read_plan([(id.as_str(), need.history(false))]);
                assert_eq!(chunks.len(), 1);
                assert_eq!(chunks[0].history, ["firstname"]);
                let outcomes = enrich::classify_read(&chunks[0].ids, hubspot_read(&chunks[0].ids));
                let ReadOutcome::Found(object) = &outcomes[0].1 else {
                    panic!("the contact is found");
                };
                let decision = enrich::decide(
                    map,
                    &id,
                    &need,
                    None,
                    Current::Found(&object.properties),
                    &object.properties_with_history,
                    None,
                )
                .unwrap();
                let forward = decision.forward.expect("a change is forwarded");
                assert!(matches!(forward, Forward::Changed(_)));
                forward.content()
            }
            Route::Association => unreachable!("no association events here"),
        };
        // Delivery, attempt by attempt, as the core decides.
        let mut attempt = message.attempt;
        loop {
            destination_calls += 1;
            let answer = if destination_calls == 1 { 503 } else { 200 };
            let outcome = Attempt::Answered {
                status: answer,
                retry_after_secs: None,
            };
            match policy.decide(attempt, outcome, 0.5) {
                DeliveryDecision::Deliver => {
                    destination.push(serde_json::from_str(&content).unwrap());
                    seen.insert(message.key.clone());
                    break;
                }
                DeliveryDecision::Retry { delay_secs } => {
                    assert!(delay_secs >= 1);
                    attempt += 1;
                }
                DeliveryDecision::DeadLetter(g) => panic!("dead-lettered: {}", g.code()),
            }
        }
    }

    // Each event once, the change enriched with its true old value, nothing lost.
    assert_eq!(destination.len(), 2, "{destination:?}");
    assert_eq!(
        destination_calls, 3,
        "one failed attempt, then one per event"
    );
    let changed = destination
        .iter()
        .find(|d| d.to_string().contains("first_name"))
        .expect("the contact's change");
    let text = changed.to_string();
    assert!(
        text.contains(r#""old":"Anne""#) && text.contains(r#""new":"Ann""#),
        "{text}"
    );
    assert!(
        destination
            .iter()
            .any(|d| d.to_string().contains("deal.creation")),
        "the deal, thin: {destination:?}"
    );
    assert_eq!(seen.len(), 2);
}

/// The batch of [`batch`], signed, verified and triaged as request `request_id`.
fn triaged(request_id: &str) -> Triage {
    let body = batch();
    let ts = (T0 + 500).to_string();
    let signature = sign_v3(
        &ClientSecret::new(SECRET),
        "POST",
        URL,
        body.as_bytes(),
        &ts,
    );
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "x-hubspot-signature-v3",
        signature.parse().expect("a header value"),
    );
    headers.insert(
        "x-hubspot-request-timestamp",
        ts.parse().expect("a header value"),
    );
    let request = SignedRequest {
        method: "POST",
        uri: URL,
        headers: &headers,
        body: body.as_bytes(),
    };
    Verifier::new(ClientSecret::new(SECRET))
        .verify(&request, T0 + 1_000)
        .expect("the batch verifies");
    let elements = parse_batch(body.as_bytes()).expect("a batch");
    let received = Received {
        at_ms: T0 + 1_000,
        request_id,
        traceparent: None,
    };
    triage(&elements, &Filter::default(), received)
}

#[test]
fn a_batch_flows_through_the_consumer_and_enrichment_plans() {
    let messages = triaged("req-plans").queue;
    assert_eq!(messages.len(), 2);
    // At-least-once: the deal's message arrives twice in the first queue batch.
    let mut queue: Vec<String> = vec![
        messages[0].clone(),
        messages[1].clone(),
        messages[1].clone(),
    ];

    let mapping = Mapping::from_json(MAP).unwrap();
    let rules = Rules::default();
    let mut delivered: HashSet<String> = HashSet::new(); // the host's dedupe marks
    let mut store: HashMap<String, Stored> = HashMap::new(); // the record store, by object id
    let mut destination: Vec<Value> = Vec::new();
    let mut destination_calls = 0u32;
    let mut failed_once = false;
    let mut reads = 0u32;
    let mut now = T0 + 2_000;
    let mut batches = 0;
    while !queue.is_empty() {
        batches += 1;
        assert!(batches <= 5, "the batch settles within a few rounds");
        let bodies = std::mem::take(&mut queue);
        let mut plan = Consume::new(
            bodies.iter().map(String::as_str),
            DeliveryRetryPolicy::default(),
            now,
        );
        let checks: Vec<(usize, String)> = plan
            .to_check()
            .into_iter()
            .map(|(i, k)| (i, k.to_owned()))
            .collect();
        for (i, key) in checks {
            plan.seen(i, delivered.contains(&key));
        }
        assert!(
            plan.to_load().is_empty(),
            "no body travels by reference here"
        );
        for (_, disposal) in plan.take_disposals() {
            assert!(matches!(disposal, Disposal::Duplicate(_)), "{disposal:?}");
        }
        let ready = plan.take_ready();
        let envelopes: Vec<&EventMessage<OwnedEvent>> = ready.iter().map(|(_, e)| e).collect();

        // Enrichment: the plan asks, the fakes answer.
        let mut enrichment = Enrichment::new(&mapping, &rules, envelopes.iter().copied(), now);
        loop {
            match enrichment.next_io() {
                EnrichIo::Done => break,
                EnrichIo::Drop(drops) => assert!(drops.is_empty(), "no privacy deletion here"),
                EnrichIo::Lookup { stored, echo: _ } => {
                    for (i, (_, _, ids)) in stored.iter().enumerate() {
                        // The store answers every id asked (an unknown one as absent).
                        let found = ids
                            .iter()
                            .map(|id| {
                                let state = store.get(id).cloned().unwrap_or_else(Stored::absent);
                                (id.clone(), state)
                            })
                            .collect();
                        enrichment.on_stored(i, Some(found));
                    }
                    // No echo guard answered: none is set.
                }
                EnrichIo::Read(wave) => {
                    for (i, read) in wave.iter().enumerate() {
                        reads += 1;
                        assert_eq!(read.chunk.history, ["firstname"]);
                        enrichment.on_read(i, hubspot_read(&read.chunk.ids));
                    }
                }
            }
        }
        let outcome = enrichment.finish();

        // Each job: forward, then settle as decided.
        for job in outcome.jobs {
            let members: Vec<&EventMessage<OwnedEvent>> =
                job.members.iter().map(|&i| envelopes[i]).collect();
            let body = match &job.action {
                JobAction::Thin => {
                    let event = Event::parse(&members[0].event).unwrap();
                    Some(outbound::event_body(
                        &event,
                        &DedupeKey::of(&event),
                        members[0].received_at,
                    ))
                }
                JobAction::Send { body, .. } => Some(body.clone()),
                other => panic!("unexpected job {other:?}"),
            };
            let run = match body {
                Some(body) => {
                    destination_calls += 1;
                    // The destination fails the contact's change once.
                    let failing = body.contains("first_name") && !failed_once;
                    failed_once |= failing;
                    let status = if failing { 503 } else { 200 };
                    if status == 200 {
                        destination.push(serde_json::from_str(&body).unwrap());
                    }
                    JobRun::Sent {
                        attempt: Attempt::Answered {
                            status,
                            retry_after_secs: None,
                        },
                        detail: format!("status_{status}"),
                    }
                }
                None => JobRun::Done {
                    detail: "nothing".into(),
                },
            };
            let verdict = plan.verdict(&members, run, 0.5);
            // The record store's writes, compare-and-set, only once the forward succeeded.
            if verdict.delivered() {
                for commit in &job.after {
                    let current = store
                        .get(&commit.id)
                        .cloned()
                        .unwrap_or_else(Stored::absent);
                    let (next, _) = apply(&current, commit);
                    match next {
                        Some(next) => store.insert(commit.id.clone(), next),
                        None => store.remove(&commit.id),
                    };
                }
            }
            let settled = plan.settle(&members, verdict, Recorded::Ok, job.effects.len());
            for member in members {
                match settled.settle {
                    Settle::Ack => {
                        delivered.insert(member.key.clone());
                    }
                    Settle::Retry { delay_secs } | Settle::Requeue { delay_secs } => {
                        assert!(delay_secs >= 1);
                        // A message is not `Clone`: the queue holds bytes anyway.
                        let text = serde_json::to_string(member).unwrap();
                        let owned: EventMessage<OwnedEvent> = serde_json::from_str(&text).unwrap();
                        queue.push(serde_json::to_string(&settled.next(owned)).unwrap());
                    }
                    Settle::DeadLetter(g) => panic!("dead-lettered: {}", g.code()),
                }
            }
        }
        now += 60_000;
    }

    // Each event once, the change enriched with its true old value, its snapshot stored.
    assert_eq!(destination.len(), 2, "{destination:?}");
    assert_eq!(
        destination_calls, 3,
        "one failed attempt, then one per event"
    );
    assert_eq!(
        reads, 2,
        "the retried change is read again: its snapshot is stored only once delivered"
    );
    let text = destination
        .iter()
        .map(Value::to_string)
        .find(|d| d.contains("first_name"))
        .expect("the contact's change");
    assert!(
        text.contains(r#""old":"Anne""#) && text.contains(r#""new":"Ann""#),
        "{text}"
    );
    assert!(destination
        .iter()
        .any(|d| d.to_string().contains("deal.creation")));
    assert!(
        store.contains_key("101"),
        "the change's snapshot is stored after the forward"
    );
    assert_eq!(delivered.len(), 2);
}
