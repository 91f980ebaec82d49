#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::json;

use super::*;
use crate::id::PortalId;
use crate::mapping::Mapping;
use crate::outbound::WebhookSecret;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn destinations() -> Destinations {
    let d = || Destination {
        url: "https://example.com/hook".into(),
        secret: WebhookSecret::parse(SECRET).unwrap(),
    };
    let mut all = Destinations::default_only(d());
    all = Destinations::from_json(
        r#"{"sales":{"url":"https://sales.example.com/"}}"#,
        all.get("default").cloned(),
        |k| (k == "DESTINATION_SALES_SECRET").then(|| SECRET.to_owned()),
    )
    .unwrap();
    all
}

fn mapping() -> Mapping {
    Mapping::from_json(
        r#"{"objects":{
            "deals":{"fields":[
                {"hubspot":"dealstage","field":"stage"},
                {"hubspot":"amount","type":"number"},
                {"hubspot":"closedate","field":"close_date","type":"date"},
                {"hubspot":"tags","type":"multiselect"},
                {"hubspot":"deal_flag"}]},
            "companies":{"fields":[{"hubspot":"tier"},{"hubspot":"big_deal"}]}}}"#,
    )
    .unwrap()
}

fn rules(json: serde_json::Value) -> Result<Rules, RulesError> {
    Rules::from_json(&json.to_string(), Some(&mapping()), &destinations())
}

fn record(v: serde_json::Value) -> Record {
    Record::from_snapshot(&v.to_string()).unwrap()
}

const DEAL_STAGE: &str = r#"{"subscriptionType":"deal.propertyChange","portalId":7,"eventId":1,"occurredAt":1700000000000,"objectId":42,"propertyName":"dealstage","propertyValue":"closedwon","changeSource":"CRM_UI"}"#;
const DEAL_AMOUNT: &str = r#"{"subscriptionType":"deal.propertyChange","portalId":7,"eventId":2,"occurredAt":1700000000001,"objectId":42,"propertyName":"amount","changeSource":"CRM_UI"}"#;
const DEAL_CREATED: &str = r#"{"subscriptionType":"deal.creation","portalId":7,"eventId":3,"occurredAt":1700000000000,"objectId":42}"#;
const NOW: u64 = 1_700_000_000_000;

/// Evaluates `rules` on one deal event with `old` and `new` records.
fn run(
    rules: &Rules,
    event: &str,
    old: Option<serde_json::Value>,
    new: Option<serde_json::Value>,
    origin: Origin,
) -> Vec<Effect> {
    let event = Event::from_json(event).unwrap();
    let events = [&event];
    let (old, new) = (old.map(record), new.map(record));
    evaluate(
        rules,
        &EventContext {
            events: &events,
            object_type: "deal",
            object_id: "42",
            old: old.as_ref(),
            new: new.as_ref(),
            origin,
            now_ms: NOW,
        },
    )
}

fn big_deal() -> Rules {
    rules(json!({"rules":[{
        "name": "big_deal_won",
        "when": {"objectTypes": ["deal"], "changes": [
            {"field": "stage", "op": "changed_to", "value": "closedwon"},
            {"field": "amount", "op": "gt", "value": 10000}]},
        "then": [
            {"update": {"target": {"associated": "companies"},
                        "properties": {"big_deal": {"copy": "amount"}, "tier": "gold"}}},
            {"forward": {"destination": "sales"}}]
    }]}))
    .unwrap()
}

#[test]
fn the_big_deal_rule_fires_on_the_matching_change_only() {
    let rules = big_deal();
    let old = json!({"stage": "qualified", "amount": 20000});
    let won = json!({"stage": "closedwon", "amount": 20000});
    let effects = run(
        &rules,
        DEAL_STAGE,
        Some(old.clone()),
        Some(won.clone()),
        Origin::External,
    );
    assert_eq!(
        effects,
        vec![
            Effect::Update {
                rule: "big_deal_won".into(),
                target: Target::Associated {
                    from_type: "deal".into(),
                    from_id: "42".into(),
                    to_type: "company".into(),
                },
                properties: BTreeMap::from([
                    ("big_deal".into(), "20000".into()),
                    ("tier".into(), "gold".into()),
                ]),
            },
            Effect::Forward {
                rule: "big_deal_won".into(),
                destination: "sales".into(),
            },
        ]
    );
    // Our own write never runs a rule.
    assert!(run(
        &rules,
        DEAL_STAGE,
        Some(old),
        Some(won.clone()),
        Origin::OwnWrite
    )
    .is_empty());
    // Already closedwon before: not a change to it.
    assert!(run(
        &rules,
        DEAL_AMOUNT,
        Some(won.clone()),
        Some(won.clone()),
        Origin::External
    )
    .is_empty());
    // Small amount.
    let small = json!({"stage": "closedwon", "amount": 10000});
    assert!(run(
        &rules,
        DEAL_STAGE,
        Some(json!({"stage": "x"})),
        Some(small),
        Origin::External
    )
    .is_empty());
    // Another object type's event does not pass the filter.
    let contact = DEAL_STAGE.replace("deal.propertyChange", "contact.propertyChange");
    assert!(run(
        &rules,
        &contact,
        Some(json!({})),
        Some(won.clone()),
        Origin::External
    )
    .is_empty());
    // A creation has no old record: every field changed from "no value".
    assert_eq!(
        run(&rules, DEAL_CREATED, None, Some(won), Origin::External).len(),
        2
    );
}

/// One condition, on `new` (and `old`), for each op: (condition, old, new, holds).
#[test]
fn conditions_table() {
    let cases: Vec<(
        serde_json::Value,
        serde_json::Value,
        serde_json::Value,
        bool,
    )> = vec![
        (
            json!({"field":"stage","op":"equals","value":"won"}),
            json!({}),
            json!({"stage":"won"}),
            true,
        ),
        (
            json!({"field":"stage","op":"equals","value":"won"}),
            json!({}),
            json!({"stage":"lost"}),
            false,
        ),
        (
            json!({"field":"amount","op":"equals","value":100}),
            json!({}),
            json!({"amount":100.0}),
            true,
        ),
        (
            json!({"field":"amount","op":"equals","value":"100"}),
            json!({}),
            json!({"amount":100}),
            true,
        ),
        (
            json!({"field":"tags","op":"equals","value":["b","a"]}),
            json!({}),
            json!({"tags":["a","b"]}),
            true,
        ),
        (
            json!({"field":"tags","op":"equals","value":["a"]}),
            json!({}),
            json!({"tags":["a","b"]}),
            false,
        ),
        (
            json!({"field":"stage","op":"changed_to","value":"won"}),
            json!({"stage":"lost"}),
            json!({"stage":"won"}),
            true,
        ),
        (
            json!({"field":"stage","op":"changed_to","value":"won"}),
            json!({"stage":"won"}),
            json!({"stage":"won"}),
            false,
        ),
        (
            json!({"field":"stage","op":"changed_to","value":"won"}),
            json!({}),
            json!({"stage":"won"}),
            true,
        ),
        (
            json!({"field":"stage","op":"changed_from","value":"lost"}),
            json!({"stage":"lost"}),
            json!({"stage":"won"}),
            true,
        ),
        (
            json!({"field":"stage","op":"changed_from","value":"lost"}),
            json!({"stage":"lost"}),
            json!({"stage":"lost"}),
            false,
        ),
        (
            json!({"field":"stage","op":"changed"}),
            json!({"stage":"a"}),
            json!({"stage":"b"}),
            true,
        ),
        (
            json!({"field":"stage","op":"changed"}),
            json!({"stage":"a"}),
            json!({"stage":"a"}),
            false,
        ),
        // null, "" and absent are the same "no value".
        (
            json!({"field":"stage","op":"changed"}),
            json!({"stage":null}),
            json!({"stage":""}),
            false,
        ),
        (
            json!({"field":"stage","op":"changed"}),
            json!({}),
            json!({"stage":null}),
            false,
        ),
        (
            json!({"field":"amount","op":"changed"}),
            json!({"amount":1}),
            json!({"amount":1.0}),
            false,
        ),
        (
            json!({"field":"amount","op":"gt","value":10}),
            json!({}),
            json!({"amount":11}),
            true,
        ),
        (
            json!({"field":"amount","op":"gt","value":10}),
            json!({}),
            json!({"amount":10}),
            false,
        ),
        (
            json!({"field":"amount","op":"gte","value":10}),
            json!({}),
            json!({"amount":10}),
            true,
        ),
        (
            json!({"field":"amount","op":"lt","value":10}),
            json!({}),
            json!({"amount":"9.5"}),
            true,
        ),
        (
            json!({"field":"amount","op":"lte","value":10}),
            json!({}),
            json!({"amount":10.5}),
            false,
        ),
        (
            json!({"field":"amount","op":"lt","value":10}),
            json!({}),
            json!({"amount":null}),
            false,
        ),
        (
            json!({"field":"amount","op":"gt","value":10}),
            json!({}),
            json!({"amount":"abc"}),
            false,
        ),
        (
            json!({"field":"close_date","op":"before","value":"2024-01-01"}),
            json!({}),
            json!({"close_date":"2023-12-31"}),
            true,
        ),
        (
            json!({"field":"close_date","op":"before","value":"2024-01-01"}),
            json!({}),
            json!({"close_date":"2024-01-01"}),
            false,
        ),
        (
            json!({"field":"close_date","op":"after","value":"2023-12-31T23:00:00Z"}),
            json!({}),
            json!({"close_date":"2024-01-01"}),
            true,
        ),
        // NOW is 2023-11-14T22:13:20Z.
        (
            json!({"field":"close_date","op":"after","value":"now-30d"}),
            json!({}),
            json!({"close_date":"2023-11-01"}),
            true,
        ),
        (
            json!({"field":"close_date","op":"after","value":"now-1d"}),
            json!({}),
            json!({"close_date":"2023-11-01"}),
            false,
        ),
        (
            json!({"field":"close_date","op":"before","value":"now+2h"}),
            json!({}),
            json!({"close_date":1_700_000_000_000_u64}),
            true,
        ),
        (
            json!({"field":"close_date","op":"before","value":"now"}),
            json!({}),
            json!({"close_date":"garbage"}),
            false,
        ),
        (
            json!({"field":"stage","op":"is_empty"}),
            json!({}),
            json!({}),
            true,
        ),
        (
            json!({"field":"stage","op":"is_empty"}),
            json!({}),
            json!({"stage":""}),
            true,
        ),
        (
            json!({"field":"tags","op":"is_empty"}),
            json!({}),
            json!({"tags":[]}),
            true,
        ),
        (
            json!({"field":"stage","op":"is_empty"}),
            json!({}),
            json!({"stage":"x"}),
            false,
        ),
        (
            json!({"field":"stage","op":"is_not_empty"}),
            json!({}),
            json!({"stage":"x"}),
            true,
        ),
        (
            json!({"field":"stage","op":"is_not_empty"}),
            json!({}),
            json!({"stage":null}),
            false,
        ),
    ];
    for (condition, old, new, holds) in cases {
        let rules = rules(
            json!({"rules":[{"name":"r","when":{"changes":[condition.clone()]},
            "then":[{"forward":{"destination":"sales"}}]}]}),
        )
        .unwrap();
        let fired = !run(
            &rules,
            DEAL_STAGE,
            Some(old.clone()),
            Some(new.clone()),
            Origin::External,
        )
        .is_empty();
        assert_eq!(fired, holds, "{condition} old={old} new={new}");
    }
}

#[test]
fn filter_criteria_select_events_and_effects_are_deduplicated() {
    let rules = rules(json!({"rules":[
        {"name":"stage_only","when":{"types":["deal.propertyChange"],"properties":["dealstage"]},
         "then":[{"forward":{"destination":"sales"}},{"emit":{"name":"stage_moved"}}]},
        {"name":"any_deal","when":{"objectTypes":["0-3"]},"guard":"echo",
         "then":[{"forward":{"destination":"sales"}},
                 {"update":{"properties":{"deal_flag":{"copy":"stage"},"missing":{"copy":"nope"}}}},
                 {"complete_action":{"outputs":{"approved":true,"stage":{"copy":"stage"}}}}]}
    ]}))
    .unwrap();
    let new = json!({"stage": "won"});
    let on_stage = run(
        &rules,
        DEAL_STAGE,
        Some(json!({})),
        Some(new.clone()),
        Origin::External,
    );
    assert_eq!(
        on_stage,
        vec![
            Effect::Forward {
                rule: "stage_only".into(),
                destination: "sales".into()
            },
            Effect::Emit {
                rule: "stage_only".into(),
                destination: "default".into(),
                event_type: "custom.stage_moved".into()
            },
            // The second forward to `sales` is dropped; the copy of an absent field is too.
            Effect::Update {
                rule: "any_deal".into(),
                target: Target::Object {
                    object_type: "deal".into(),
                    object_id: "42".into()
                },
                properties: BTreeMap::from([("deal_flag".into(), "won".into())]),
            },
            Effect::CompleteBlocked {
                rule: "any_deal".into(),
                object_type: "deal".into(),
                object_id: "42".into(),
                outputs: BTreeMap::from([
                    ("approved".into(), json!(true)),
                    ("stage".into(), json!("won")),
                ]),
            },
        ]
    );
    // The amount event does not name `dealstage`: only the second rule fires.
    let on_amount = run(
        &rules,
        DEAL_AMOUNT,
        Some(json!({})),
        Some(new),
        Origin::External,
    );
    assert_eq!(
        on_amount.iter().map(Effect::rule).collect::<Vec<_>>(),
        ["any_deal"; 3]
    );
    // An update whose every value is absent is no effect.
    let empty = run(
        &rules,
        DEAL_AMOUNT,
        Some(json!({})),
        Some(json!({})),
        Origin::External,
    );
    assert!(
        !empty.iter().any(|e| matches!(e, Effect::Update { .. })),
        "{empty:?}"
    );
}

#[test]
fn emit_body_names_the_custom_type_and_the_record() {
    let event = Event::from_json(DEAL_STAGE).unwrap();
    let events = [&event];
    let new = record(json!({"stage": "won"}));
    let ctx = EventContext {
        events: &events,
        object_type: "deal",
        object_id: "42",
        old: None,
        new: Some(&new),
        origin: Origin::External,
        now_ms: NOW,
    };
    let body: serde_json::Value =
        serde_json::from_str(&emit_body("custom.big", "r", "id1", &ctx)).unwrap();
    assert_eq!(
        body,
        json!({"type":"custom.big","id":"id1","rule":"r","portalId":7,"objectType":"deal",
               "objectId":"42","occurredAt":"2023-11-14T22:13:20.000Z","record":{"stage":"won"}})
    );
}

#[test]
fn invalid_configurations_name_the_place() {
    let forward = json!([{"forward":{"destination":"sales"}}]);
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (json!({"rule": []}), "RULES.rule", "rules_invalid"),
        (json!({"rules": {}}), "rules", "rules_invalid"),
        (
            json!({"rules": [{"name":"a","when":{},"then":forward}, {"name":"b","when":{},"then":forward},
            {"name":"c","when":{},"then":forward},
            {"name":"d","when":{"changes":[{"field":"stage","op":"bigger","value":1}]},"then":forward}]}),
            "rules[3].when.changes[0].op",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{"changes":[{"field":"amount","op":"gt","value":"x"}]},"then":forward}]}),
            "rules[0].when.changes[0].value",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{"changes":[{"field":"amount","op":"changed","value":1}]},"then":forward}]}),
            "rules[0].when.changes[0].value",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{"changes":[{"field":"close_date","op":"before","value":"yesterday"}]},"then":forward}]}),
            "rules[0].when.changes[0].value",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{"changes":[{"field":"close_date","op":"before","value":"now-5y"}]},"then":forward}]}),
            "rules[0].when.changes[0].value",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{"objectTypes":["deal"],"changes":[{"field":"nope","op":"changed"}]},"then":forward}]}),
            "rules[0].when.changes[0].field",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{"objectTypes":["ticket"],"changes":[{"field":"stage","op":"changed"}]},"then":forward}]}),
            "rules[0].when.changes[0].field",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{"typez":["deal.*"]},"then":forward}]}),
            "rules[0].when.typez",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{"types":["de*l.x"]},"then":forward}]}),
            "rules[0].when",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":[{"forward":{"destination":"marketing"}}]}]}),
            "rules[0].then[0].forward.destination",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":[{"forward":{"destination":"default"}}]}]}),
            "rules[0].then[0].forward.destination",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":[{"emit":{"name":"Big Deal"}}]}]}),
            "rules[0].then[0].emit.name",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":[{"update":{"properties":{}}}]}]}),
            "rules[0].then[0].update.properties",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":[{"update":{"target":"parent","properties":{"x":"1"}}}]}]}),
            "rules[0].then[0].update.target",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":[{"update":{"properties":{"x":[1]}}}]}]}),
            "rules[0].then[0].update.properties.x",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":[{"forward":{"destination":"sales"},"emit":{"name":"x"}}]}]}),
            "rules[0].then[0]",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":[]}]}),
            "rules[0].then",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":forward,"guard":"trust me"}]}),
            "rules[0].guard",
            "rules_invalid",
        ),
        (
            json!({"rules": [{"name":"a","when":{},"then":forward},{"name":"a","when":{},"then":forward}]}),
            "rules[1].name",
            "rules_invalid",
        ),
    ];
    for (config, path, code) in cases {
        let e = rules(config.clone()).unwrap_err();
        assert_eq!((e.path(), e.code()), (path, code), "{config}: {e}");
        assert!(e.to_string().starts_with(path), "{e}");
    }
    let e = Rules::from_json("nope", None, &destinations()).unwrap_err();
    assert_eq!((e.path(), e.code()), ("RULES", "rules_invalid"));
}

#[test]
fn loops_are_rejected_at_configuration_time_unless_guarded() {
    // Writes the property it listens to, on the same object.
    let self_loop = json!({"rules":[{"name":"bump","when":{"objectTypes":["deal"],
        "changes":[{"field":"amount","op":"changed"}]},
        "then":[{"update":{"properties":{"amount":"1"}}}]}]});
    let e = rules(self_loop.clone()).unwrap_err();
    assert_eq!((e.code(), e.path()), ("rules_loop", "rules[0]"));
    assert!(
        e.to_string()
            .contains(r#"rules[0] "bump" -> rules[0] "bump""#),
        "{e}"
    );

    // Guarded: accepted (the echo guard stops it at run time).
    let mut guarded = self_loop.clone();
    guarded["rules"][0]["guard"] = json!("echo");
    assert!(rules(guarded).is_ok());

    // Two rules through the associated company and back: A (deal) writes company.tier, B
    // listens to company `tier` and writes the deal's `deal_flag`, which A listens to.
    let pair = json!({"rules":[
        {"name":"a","when":{"objectTypes":["deal"],"properties":["deal_flag"]},
         "then":[{"update":{"target":{"associated":"companies"},"properties":{"tier":"x"}}}]},
        {"name":"b","when":{"objectTypes":["company"],"changes":[{"field":"tier","op":"changed"}]},
         "then":[{"update":{"target":{"associated":"deals"},"properties":{"deal_flag":"y"}}}]}]});
    let e = rules(pair).unwrap_err();
    assert_eq!(e.code(), "rules_loop");
    assert!(
        e.to_string()
            .contains(r#"rules[0] "a" -> rules[1] "b" -> rules[0] "a""#),
        "{e}"
    );

    // A rule listening to every property of its type hears its own write.
    let broad = json!({"rules":[{"name":"any","when":{"objectTypes":["deal"]},
        "then":[{"update":{"properties":{"deal_flag":"1"}}}]}]});
    assert_eq!(rules(broad).unwrap_err().code(), "rules_loop");

    // Not loops: the big deal rule (writes the company, listens to deals), a write of a
    // property nobody listens to, a rule that only hears creations, a chain without a cycle.
    for ok in [
        json!({"rules":[{"name":"big","when":{"objectTypes":["deal"],"changes":[
            {"field":"stage","op":"changed_to","value":"closedwon"}]},
            "then":[{"update":{"target":{"associated":"companies"},"properties":{"tier":"gold"}}}]}]}),
        json!({"rules":[{"name":"flag","when":{"objectTypes":["deal"],"changes":[
            {"field":"stage","op":"changed"}]},"then":[{"update":{"properties":{"deal_flag":"1"}}}]}]}),
        json!({"rules":[{"name":"new","when":{"types":["deal.creation"]},
            "then":[{"update":{"properties":{"deal_flag":"1"}}}]}]}),
        json!({"rules":[
            {"name":"a","when":{"objectTypes":["deal"],"properties":["dealstage"]},
             "then":[{"update":{"properties":{"amount":"1"}}}]},
            {"name":"b","when":{"objectTypes":["deal"],"properties":["amount"]},
             "then":[{"update":{"properties":{"deal_flag":"1"}}}]}]}),
    ] {
        assert!(rules(ok.clone()).is_ok(), "{ok}");
    }
}

#[test]
fn destinations_parse_with_their_own_secrets() {
    let d = destinations();
    assert_eq!(d.names().collect::<Vec<_>>(), ["default", "sales"]);
    assert_eq!(d.get("sales").unwrap().url, "https://sales.example.com/");
    let secret = |k: &str| match k {
        "DESTINATION_SALES_TEAM_SECRET" | "OPS" => Some(SECRET.to_owned()),
        "BAD" => Some("plain".to_owned()),
        _ => None,
    };
    let ok = Destinations::from_json(
        r#"{"sales-team":{"url":"https://a.example/"},"ops":{"url":"http://127.0.0.1:9/","secret":"OPS"}}"#,
        None,
        secret,
    )
    .unwrap();
    assert_eq!(ok.names().collect::<Vec<_>>(), ["ops", "sales-team"]);
    for (json, code, path) in [
        (
            r#"{"x":{"url":"https://a.example/"}}"#,
            "destination_secret_missing",
            "DESTINATIONS.x.secret",
        ),
        (
            r#"{"x":{"url":"https://a.example/","secret":"BAD"}}"#,
            "destinations_invalid",
            "DESTINATIONS.x.secret",
        ),
        (
            r#"{"x":{"url":"http://a.example/","secret":"OPS"}}"#,
            "destinations_invalid",
            "DESTINATIONS.x.url",
        ),
        (
            r#"{"default":{"url":"https://a.example/","secret":"OPS"}}"#,
            "destinations_invalid",
            "DESTINATIONS.default",
        ),
        (
            r#"{"X Y":{"url":"https://a.example/","secret":"OPS"}}"#,
            "destinations_invalid",
            "DESTINATIONS.X Y",
        ),
        (
            r#"{"x":{"url":"https://a.example/","secret":"OPS","retries":3}}"#,
            "destinations_invalid",
            "DESTINATIONS.x.retries",
        ),
        (r#"[]"#, "destinations_invalid", "DESTINATIONS"),
    ] {
        let e = Destinations::from_json(json, None, secret).unwrap_err();
        assert_eq!(e.code(), code, "{json}");
        assert!(e.to_string().starts_with(path), "{json}: {e}");
        assert!(!e.to_string().contains(&SECRET[6..]), "{e}");
    }
}

/// 50 rules of the shapes the README shows (a quarter for another object type, filters,
/// transitions, numbers, dates), evaluated on four deal contexts; prints ns per event. Run
/// natively with `cargo test -p hubspot-edge-core --release --lib -- --ignored --nocapture
/// rules_cost`, and under wasm32 as BENCHMARKS.md "Rules: evaluation cost" says.
/// `println!` natively; the console under wasm32 (wasm32's stdout is discarded).
macro_rules! report {
    ($($t:tt)*) => {{
        #[cfg(target_arch = "wasm32")]
        wasm_bindgen_test::console_log!($($t)*);
        #[cfg(not(target_arch = "wasm32"))]
        println!($($t)*);
    }};
}

#[test]
#[ignore = "benchmark: run on purpose, prints ns per event"]
fn rules_cost() {
    let mut list = Vec::new();
    for i in 0..50 {
        let rule = match i % 5 {
            0 => json!({"name": format!("r{i}"), "when": {"objectTypes": ["deal"], "changes": [
                {"field": "stage", "op": "changed_to", "value": format!("stage{i}")},
                {"field": "amount", "op": "gt", "value": i * 100}]},
                "then": [{"update": {"target": {"associated": "companies"},
                    "properties": {"tier": "gold", "big_deal": {"copy": "amount"}}}},
                    {"forward": {"destination": "sales"}}]}),
            1 => json!({"name": format!("r{i}"), "when": {"types": ["company.propertyChange"],
                "changes": [{"field": "tier", "op": "changed"}]},
                "then": [{"emit": {"name": "tier"}}]}),
            2 => json!({"name": format!("r{i}"), "when": {"types": ["deal.propertyChange"],
                "properties": ["dealstage", "amount"], "changes": [
                {"field": "close_date", "op": "after", "value": "now-30d"},
                {"field": "tags", "op": "equals", "value": ["a", "b"]}]},
                "then": [{"forward": {"destination": "sales"}}]}),
            3 => json!({"name": format!("r{i}"), "when": {"objectTypes": ["deal"], "changes": [
                {"field": "stage", "op": "changed_from", "value": "closedwon"},
                {"field": "deal_flag", "op": "is_empty"}]},
                "then": [{"complete_action": {"outputs": {"ok": true}}}]}),
            _ => json!({"name": format!("r{i}"), "when": {"objectTypes": ["deal"], "changes": [
                {"field": "amount", "op": "lte", "value": 5000},
                {"field": "close_date", "op": "before", "value": "2030-01-01"}]},
                "then": [{"emit": {"name": "small_deal", "destination": "sales"}}]}),
        };
        list.push(rule);
    }
    let rules = rules(json!({ "rules": list })).unwrap();
    assert_eq!(rules.len(), 50);
    let event = Event::from_json(DEAL_STAGE).unwrap();
    let events = [&event];
    let old = record(
        json!({"stage": "qualified", "amount": 20000, "close_date": "2023-11-01",
        "tags": ["a"], "deal_flag": null}),
    );
    let news = [
        json!({"stage": "stage10", "amount": 20000, "close_date": "2023-11-01", "tags": ["b", "a"]}),
        json!({"stage": "closedwon", "amount": 4000, "close_date": "2023-11-10", "tags": []}),
        json!({"stage": "qualified", "amount": 20000, "close_date": "2023-11-01", "tags": ["a"]}),
        json!({"stage": "stage0", "amount": 1, "close_date": "2020-01-01", "tags": ["a", "b"]}),
    ]
    .map(record);
    let contexts: Vec<EventContext<'_>> = news
        .iter()
        .map(|new| EventContext {
            events: &events,
            object_type: "deal",
            object_id: "42",
            old: Some(&old),
            new: Some(new),
            origin: Origin::External,
            now_ms: NOW,
        })
        .collect();
    let rounds = 20_000;
    let mut effects = 0;
    let started = now_ms();
    for _ in 0..rounds {
        for ctx in &contexts {
            effects += std::hint::black_box(evaluate(&rules, std::hint::black_box(ctx))).len();
        }
    }
    let elapsed_ms = now_ms() - started;
    let per_event_ns = elapsed_ms * 1e6 / f64::from(rounds * 4);
    assert!(effects > 0);
    report!(
        "RULES_COST rules=50 events={} effects_per_event={:.1} ns_per_event={per_event_ns:.0}",
        rounds * 4,
        f64::from(u32::try_from(effects).unwrap_or(u32::MAX)) / f64::from(rounds * 4)
    );
}

#[cfg(not(target_arch = "wasm32"))]
fn now_ms() -> f64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
        * 1000.0
}

/// `performance.now()` where the runtime has it (Node, browsers), else `Date.now()`.
#[cfg(target_arch = "wasm32")]
fn now_ms() -> f64 {
    js_sys::Reflect::get(&js_sys::global(), &"performance".into())
        .ok()
        .and_then(|p| {
            let now = js_sys::Reflect::get(&p, &"now".into()).ok()?;
            js_sys::Function::from(now).call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

#[test]
fn effects_travel_as_queue_messages_and_back() {
    let rules = big_deal();
    let event = Event::from_json(DEAL_STAGE).unwrap();
    let events = [&event];
    let (old, new) = (
        record(json!({"stage": "qualified", "amount": 20000})),
        record(json!({"stage": "closedwon", "amount": 20000})),
    );
    let ctx = EventContext {
        events: &events,
        object_type: "deal",
        object_id: "42",
        old: Some(&old),
        new: Some(&new),
        origin: Origin::External,
        now_ms: NOW,
    };
    let planned = plan(
        evaluate(&rules, &ctx),
        PortalId::new(7),
        "chg1",
        "{\"body\":1}",
        &ctx,
    );
    let keys: Vec<&str> = planned.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["chg1.r0", "chg1.r1"]);
    for (_, q) in &planned {
        let text = EffectMessage::json(q);
        assert_eq!(EffectMessage::parse(&text).as_ref(), Some(q), "{text}");
    }
    assert_eq!(
        planned[1].1,
        Queued::Send {
            rule: "big_deal_won".into(),
            destination: "sales".into(),
            id: "chg1".into(),
            body: "{\"body\":1}".into()
        }
    );
    assert_eq!(
        planned[1].1.describe(),
        "rule=big_deal_won effect=send destination=sales"
    );
    // The wire form of an update, and a send without destination going to `default`.
    let update: serde_json::Value =
        serde_json::from_str(&EffectMessage::json(&planned[0].1)).unwrap();
    assert_eq!(
        update,
        json!({"source":"rules","effect":"update","rule":"big_deal_won","portal":7,
               "target":{"kind":"associated","fromType":"deal","fromId":"42","toType":"company"},
               "properties":{"big_deal":"20000","tier":"gold"}})
    );
    let bare = r#"{"source":"rules","effect":"send","rule":"r","id":"i","body":"{}"}"#;
    assert!(
        matches!(EffectMessage::parse(bare), Some(Queued::Send { destination, .. }) if destination == "default")
    );
    // HubSpot events are not effects.
    assert_eq!(EffectMessage::parse(DEAL_STAGE), None);
    assert_eq!(
        EffectMessage::parse(r#"{"source":"rulesx","effect":"send"}"#),
        None
    );
}

#[test]
fn updates_write_only_what_differs() {
    let wanted = BTreeMap::from([
        ("tier".to_owned(), "gold".to_owned()),
        ("big_deal".to_owned(), "20000".to_owned()),
        ("note".to_owned(), String::new()),
    ]);
    let current = BTreeMap::from([
        ("tier".to_owned(), Some("gold".to_owned())),
        ("big_deal".to_owned(), Some("100".to_owned())),
        ("note".to_owned(), None),
    ]);
    assert_eq!(
        to_write(&wanted, &current),
        BTreeMap::from([("big_deal".to_owned(), "20000".to_owned())])
    );
    assert_eq!(to_write(&wanted, &BTreeMap::new()).len(), 2);
}

#[test]
fn two_rules_emitting_the_same_type_are_two_events() {
    let rules = rules(json!({"rules":[
        {"name":"a","when":{},"then":[{"emit":{"name":"won"}}]},
        {"name":"b","when":{},"then":[{"emit":{"name":"won"}}]}]}))
    .unwrap();
    let event = Event::from_json(DEAL_STAGE).unwrap();
    let events = [&event];
    let ctx = EventContext {
        events: &events,
        object_type: "deal",
        object_id: "42",
        old: None,
        new: None,
        origin: Origin::External,
        now_ms: NOW,
    };
    let ids: Vec<String> = plan(evaluate(&rules, &ctx), PortalId::new(7), "chg", "{}", &ctx)
        .into_iter()
        .map(|(_, q)| match q {
            Queued::Send { id, .. } => id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids, ["chg.a.custom.won", "chg.b.custom.won"]);
}

#[test]
fn an_effect_run_names_the_rule_and_maps_its_outcome() {
    use crate::delivery::Attempt;
    use crate::queue::consume::JobRun;
    let send = Queued::Send {
        rule: "r".into(),
        destination: "sales".into(),
        id: "id".into(),
        body: "{}".into(),
    };
    assert_eq!(
        send.send_run(None),
        JobRun::Refused {
            reason: "destination_unknown".into(),
            detail: "rule=r effect=send destination=sales".into(),
        }
    );
    let answered = Attempt::Answered {
        status: 307,
        retry_after_secs: None,
    };
    assert_eq!(
        send.send_run(Some((answered, Some("https://elsewhere/")))),
        JobRun::Sent {
            attempt: answered,
            detail: "rule=r effect=send destination=sales status_307 location=https://elsewhere/"
                .into(),
        }
    );
    let complete = Queued::CompleteBlocked {
        rule: "c".into(),
        portal: PortalId::new(1),
        object_type: "contact".into(),
        object_id: "7".into(),
        outputs: BTreeMap::new(),
    };
    let what = "rule=c effect=complete_blocked object_id=7";
    assert_eq!(
        complete.completed_run(2, 1, &[]),
        JobRun::Done {
            detail: format!("{what} completed=2 skipped=1"),
        }
    );
    let refused = [
        ("cb1".to_owned(), "output_invalid"),
        ("cb2".to_owned(), "output_missing"),
    ];
    assert_eq!(
        complete.completed_run(1, 0, &refused),
        JobRun::Refused {
            reason: "complete_action_outputs_invalid".into(),
            detail: format!("{what} completed=1 refused=cb1:output_invalid,cb2:output_missing"),
        }
    );
    assert_eq!(
        complete.step_failed_run("action_store_unavailable", true),
        JobRun::Failed {
            attempt: Attempt::StepFailed {
                retry_after_secs: None
            },
            code: "action_store_unavailable".into(),
            detail: what.into(),
        }
    );
    assert_eq!(
        complete.step_failed_run("actions_off", false),
        JobRun::Refused {
            reason: "actions_off".into(),
            detail: what.into(),
        }
    );
}
