//! Property tests: whatever the requests, arrival times and stored states, a plan never puts
//! two inputs for one record in a batch, never exceeds the batch size, never writes a
//! `from_hubspot` property, accounts for every pending record once, and writes nothing for a
//! record whose stored state already holds the values.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::mapping::Mapping;
use crate::records::Stored;

const MAP: &str = r#"{"objects":{"contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"firstname","field":"first_name"},
    {"hubspot":"score","type":"number"},
    {"hubspot":"createdate","field":"created_at","type":"datetime","direction":"from_hubspot"}
]}}}"#;

/// One request record: key number, key spelling, first name, score, updatedAt.
fn record() -> impl Strategy<Value = (u8, bool, u8, u8, Option<i64>)> {
    (
        0u8..40,
        any::<bool>(),
        0u8..3,
        0u8..3,
        proptest::option::of(0i64..5),
    )
}

fn email(n: u8, upper: bool) -> String {
    let e = format!("u{n}@example.com");
    if upper {
        format!(" {} ", e.to_uppercase())
    } else {
        e
    }
}

proptest! {
    #[test]
    fn plans_are_well_formed(
        requests in proptest::collection::vec(proptest::collection::vec(record(), 0..30), 1..5),
        stored in proptest::collection::btree_map(0u8..40, (0u8..3, 0u8..3), 0..40),
        batch_size in 1usize..=100,
        window in 0u64..3,
        flush_at in proptest::collection::vec(0u64..6, 1..4),
    ) {
        let m = Mapping::from_json(MAP).unwrap();
        let map = m.object("contacts").unwrap();
        let cfg = InboundConfig {
            batch_size,
            coalesce_window_ms: window,
            ..InboundConfig::for_object_type("contacts", None).unwrap()
        };
        let known: BTreeMap<String, Known> = stored
            .iter()
            .map(|(&n, &(name, score))| {
                let snapshot = json!({"email": email(n, false), "first_name": format!("n{name}"),
                                      "score": score});
                (email(n, false), Known {
                    hubspot_id: Some(n.to_string()),
                    stored: Stored { version: 1, snapshot: Some(snapshot.to_string()) },
                    hubspot_changed_at: BTreeMap::new(),
                })
            })
            .collect();
        let mut coalescer = Coalescer::new();
        let mut accepted = BTreeSet::new();
        let mut planned = BTreeSet::new();
        let mut flushes = flush_at.clone();
        flushes.sort_unstable();
        for (i, request) in requests.iter().enumerate() {
            let records: Vec<Value> = request
                .iter()
                .map(|&(n, upper, name, score, at)| {
                    let mut r = json!({"externalId": format!("x{n}"), "fields": {
                        "email": email(n, upper), "first_name": format!("n{name}"),
                        "score": score, "created_at": "2020-01-01T00:00:00Z"}});
                    if let Some(at) = at {
                        r["updatedAt"] = json!(at);
                    }
                    r
                })
                .collect();
            let body = serde_json::to_vec(&json!({"records": records})).unwrap();
            let parsed = parse_request(map, &cfg, &body).unwrap();
            accepted.extend(parsed.iter().map(|r| r.key.clone()));
            coalescer.add("r", parsed, i as u64);
            let now = flushes.get(i).copied().unwrap_or(i as u64);
            let due = coalescer.take_due(now, window, batch_size);
            // Whatever stays pending is not due, and fewer than a batch.
            prop_assert!(coalescer.len() < batch_size);
            prop_assert!(coalescer.next_due_ms(window).is_none_or(|t| t > now));
            let count = due.len();
            let plan = plan(map, &cfg, due, &known);
            let mut seen = plan.unchanged.len();
            for batch in &plan.batches {
                prop_assert!(!batch.inputs.is_empty() && batch.inputs.len() <= batch_size);
                let keys: BTreeSet<&str> = batch.inputs.iter().map(|i| i.update.key.as_str()).collect();
                prop_assert_eq!(keys.len(), batch.inputs.len());
                for input in &batch.inputs {
                    prop_assert!(!input.properties.contains_key("createdate"));
                    prop_assert!(!input.properties.is_empty());
                    if known.contains_key(&input.update.key) {
                        // Only the differing properties, never the unchanged id.
                        prop_assert!(!input.properties.contains_key("email"));
                    }
                }
                seen += batch.inputs.len();
            }
            prop_assert_eq!(seen, count);
            for u in plan.unchanged.iter().map(|u| &u.key).chain(
                plan.batches.iter().flat_map(|b| b.inputs.iter().map(|i| &i.update.key)),
            ) {
                prop_assert!(planned.insert((i, u.clone())));
            }
        }
        // Everything accepted is planned once it is due.
        let rest = coalescer.take_due(u64::MAX, window, batch_size);
        let mut all: BTreeSet<String> = planned.into_iter().map(|(_, k)| k).collect();
        all.extend(rest.into_iter().map(|u| u.key));
        prop_assert_eq!(all, accepted);
    }
}
