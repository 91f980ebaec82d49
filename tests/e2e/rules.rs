//! Rules (`RULES`, `DESTINATIONS`) end to end (README "Rules"): writes on the mock HubSpot become
//! webhooks from its emitter; the Worker enriches them, evaluates the rules, forwards to the
//! named destination `sales` (a loopback destination with its own secret), and writes to
//! HubSpot (the mock) behind the echo guard, whose own webhooks come back and must run nothing.

use std::time::Duration;

use hubspot_edge_tests::{poll_until, Destination, Fixture, FixtureOptions};
use hubspot_mock::{MockConfig, WebhookConfig};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::enrichment::{create, log_lines, patch};
use super::{check, extra_wrangler_config, mock_of, Outcome};

/// `sales`' Standard Webhooks secret (a public test value).
const SALES_SECRET: &str = "whsec_cnVsZXMtc2FsZXMtdGVzdC1zZWNyZXQtMDAwMQ==";
const MAP: &str = r#"{"objects":{
  "deals":{"fields":[
    {"hubspot":"dealname","field":"name"},
    {"hubspot":"dealstage","field":"stage"},
    {"hubspot":"amount","type":"number"},
    {"hubspot":"deal_note","field":"note"}]},
  "companies":{"fields":[
    {"hubspot":"name"},
    {"hubspot":"tier"},
    {"hubspot":"big_deal_amount","type":"number"}]}
}}"#;
/// The rule of issue 11, a control rule on the company's `tier` (so that our own write of it,
/// if it were not recognised, would show up at `sales`), and a guarded rule that writes the
/// deal it listens to (stopped by the echo guard at run time).
const RULES: &str = r#"{"rules":[
  {"name":"big_deal_won",
   "when":{"objectTypes":["deal"],"changes":[
     {"field":"stage","op":"changed_to","value":"closedwon"},
     {"field":"amount","op":"gt","value":10000}]},
   "then":[
     {"update":{"target":{"associated":"companies"},
                "properties":{"tier":"gold","big_deal_amount":{"copy":"amount"}}}},
     {"forward":{"destination":"sales"}}]},
  {"name":"company_tier",
   "when":{"objectTypes":["company"],"changes":[{"field":"tier","op":"changed"}]},
   "then":[{"forward":{"destination":"sales"}}]},
  {"name":"stamp_stage","guard":"echo",
   "when":{"objectTypes":["deal"],"changes":[{"field":"stage","op":"is_not_empty"}]},
   "then":[{"update":{"properties":{"deal_note":{"copy":"stage"}}}}]}
]}"#;
const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
/// After our own writes: how long nothing more may arrive (the mock's webhooks for them take
/// its batch window, 100 ms, then the queue's batch; the echo itself is awaited first).
const QUIET: Duration = Duration::from_secs(3);

/// A Worker and mock of their own, with webhooks from the mock to the Worker, and `sales`.
fn start(sales: &Destination) -> Result<Fixture, Failed> {
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            burst: 100_000,
            webhook: Some(WebhookConfig {
                secret: hubspot_edge_tests::fixture::CLIENT_SECRET.into(),
                retry_delay: Duration::from_millis(500),
                ..WebhookConfig::default()
            }),
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("RULES", RULES),
            ("DESTINATION_SALES_SECRET", SALES_SECRET),
            ("FORWARD_MAX_ATTEMPTS", "4"),
            ("FORWARD_RETRY_BASE_SECS", "1"),
            ("FORWARD_RETRY_MAX_SECS", "3"),
        ])
        .var(
            "DESTINATIONS",
            json!({"sales": {"url": sales.url()}}).to_string(),
        );
    options.wrangler.config = Some(extra_wrangler_config("wrangler.rules.toml")?);
    let fx = Fixture::start(options)?;
    mock_of(&fx)?.set_webhook_target(&fx.url("/webhooks/hubspot"));
    Ok(fx)
}

/// A record's properties on the mock.
fn properties(fx: &Fixture, object_type: &str, id: u64, names: &str) -> Result<Value, Failed> {
    let mock = mock_of(fx)?;
    let r = hubspot_edge_tests::http::request(
        "GET",
        &format!(
            "{}/crm/v3/objects/{object_type}/{id}?properties={names}",
            mock.base_url()
        ),
        &[("authorization", &format!("Bearer {}", mock.token()))],
        None,
    )?;
    check(r.status == 200, || {
        format!("read {object_type}/{id}: {}", r.status)
    })?;
    Ok(r.json()?["properties"].clone())
}

/// `rule_update_written` lines for effects of `rule`.
fn updates_by(fx: &Fixture, rule: &str) -> usize {
    let prefix = format!("rule={rule} ");
    log_lines(fx, "rule_update_written")
        .iter()
        .filter(|l| l["effect"].as_str().is_some_and(|e| e.starts_with(&prefix)))
        .count()
}

/// The `changes` of each `hubspot-edge.record.changed` delivery `default` accepted for `id`.
fn changed(fx: &Fixture, id: u64) -> Vec<Value> {
    fx.dest
        .delivered_ok_for(id)
        .into_iter()
        .filter(|d| d.body["type"] == "hubspot-edge.record.changed")
        .map(|d| d.body["changes"].clone())
        .collect()
}

/// Waits for the consumer's `enrich_skipped` `echo` line for `object_id`.
fn wait_echo(fx: &Fixture, object_id: u64) -> Outcome {
    let id = object_id.to_string();
    poll_until(
        &format!("echo of our write to {id}"),
        DEADLINE,
        POLL,
        || {
            log_lines(fx, "enrich_skipped")
                .iter()
                .any(|l| l["object_id"] == id.as_str() && l["reason"] == "echo")
                .then_some(())
        },
    )?;
    Ok(())
}

/// Issue 11 §4: "deal stage changed to closedwon and amount > 10000 → set a property on the
/// associated company and forward to destination `sales`" fires once per matching change and
/// never on our own write; a guarded rule that writes what it listens to is stopped by the echo
/// guard.
pub(super) fn rules_big_deal_fires_once_never_on_own_write(_: &Fixture) -> Outcome {
    let sales = Destination::start(SALES_SECRET)?;
    let fx = start(&sales)?;
    let result = big_deal_scenario(&fx, &sales);
    fx.stop_worker();
    result
}

fn big_deal_scenario(fx: &Fixture, sales: &Destination) -> Outcome {
    let company = create(fx, "companies", json!({"name": "Acme", "tier": "silver"}))?;
    let (status, body) = {
        let mock = mock_of(fx)?;
        let r = hubspot_edge_tests::http::request(
            "POST",
            &format!("{}/crm/v3/objects/deals", mock.base_url()),
            &[
                ("authorization", &format!("Bearer {}", mock.token())),
                ("content-type", "application/json"),
            ],
            Some(
                json!({
                    "properties": {"dealname": "Big", "dealstage": "qualifiedtobuy", "amount": "20000"},
                    "associations": [{"to": {"id": company.to_string()},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                   "associationTypeId": 341}]}]
                })
                .to_string()
                .as_bytes(),
            ),
        )?;
        (r.status, r.json()?)
    };
    check(status == 201, || format!("create deal: {status} {body}"))?;
    let deal: u64 = body["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or("no deal id")?;
    // The creations: forwarded to `default` (both objects); the company's to `sales` too
    // (company_tier: a created record's fields all changed from "no value"); no match for
    // big_deal_won (qualifiedtobuy); stamp_stage writes `deal_note` once.
    fx.dest.wait_for_ok(&[company, deal], DEADLINE)?;
    sales.wait_for_ok(&[company], DEADLINE)?;
    poll_until("stamp_stage's write", DEADLINE, POLL, || {
        (updates_by(fx, "stamp_stage") == 1).then_some(())
    })?;
    wait_echo(fx, deal)?;

    // The matching change, made by "someone else" (straight on the mock).
    patch(fx, "deals", deal, json!({"dealstage": "closedwon"}))?;
    let got = sales.wait_for_ok(&[deal], DEADLINE)?;
    poll_until("the company's tier written", DEADLINE, POLL, || {
        let p = properties(fx, "companies", company, "tier,big_deal_amount").ok()?;
        (p["tier"] == "gold" && p["big_deal_amount"] == "20000").then_some(())
    })?;
    check(
        got[0].body["type"] == "hubspot-edge.record.changed"
            && got[0].body["changes"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["field"] == "stage" && c["new"] == "closedwon")
            }),
        || format!("sales got: {}", got[0].body),
    )?;
    // HubSpot's webhooks for our writes (the company's tier, the deal's note) come back and
    // are recognised: wait for both echoes, then for quiet.
    wait_echo(fx, company)?;
    poll_until("stamp_stage's second write", DEADLINE, POLL, || {
        (updates_by(fx, "stamp_stage") == 2).then_some(())
    })?;
    std::thread::sleep(QUIET);
    let to_sales = sales.delivered_ok_for(deal);
    let company_at_sales = sales.delivered_ok_for(company);
    check(to_sales.len() == 1 && company_at_sales.len() == 1, || {
        format!(
            "sales: {} for the deal (want 1), {} for the company (want 1, its creation: not our \
             own write)\n{}",
            to_sales.len(),
            company_at_sales.len(),
            sales.describe(&[deal, company])
        )
    })?;
    // The same webhook-id as `default` got for that change.
    let default_ids: Vec<Option<String>> = fx
        .dest
        .delivered_ok_for(deal)
        .into_iter()
        .map(|d| d.webhook_id)
        .collect();
    check(default_ids.contains(&to_sales[0].webhook_id), || {
        format!(
            "sales' webhook-id {:?} not among default's {default_ids:?}",
            to_sales[0].webhook_id
        )
    })?;
    let (bigs, stamps) = (
        updates_by(fx, "big_deal_won"),
        updates_by(fx, "stamp_stage"),
    );
    check(bigs == 1 && stamps == 2, || {
        format!("updates: big_deal_won {bigs} (want 1), stamp_stage {stamps} (want 2: creation, closedwon)")
    })?;
    // `default` got one change of the deal, never our note write.
    let changes = changed(fx, deal);
    check(
        changes.len() == 1 && !changes.iter().any(|c| c.to_string().contains("\"note\"")),
        || format!("default: {changes:?} (want the stage change only)"),
    )?;

    // Control: someone else changes the company's tier: company_tier fires.
    patch(fx, "companies", company, json!({"tier": "platinum"}))?;
    poll_until(
        "company_tier on someone else's change",
        DEADLINE,
        POLL,
        || (sales.delivered_ok_for(company).len() == 2).then_some(()),
    )?;
    // A second change of the same deal that is not "to closedwon" does not fire big_deal_won.
    patch(fx, "deals", deal, json!({"amount": "30000"}))?;
    poll_until("the amount change at default", DEADLINE, POLL, || {
        (changed(fx, deal).len() == 2).then_some(())
    })?;
    std::thread::sleep(QUIET);
    check(sales.delivered_ok_for(deal).len() == 1, || {
        format!("big_deal_won fired again:\n{}", sales.describe(&[deal]))
    })
}

/// A rule whose update writes what it listens to, without a guard: `/healthz` names `RULES`
/// with `rules_loop` and the Worker forwards nothing (events are held as for any invalid
/// forwarding key).
pub(super) fn rules_loop_rejected_at_start(_: &Fixture) -> Outcome {
    let loop_rules = r#"{"rules":[{"name":"bump","when":{"objectTypes":["deal"],
        "changes":[{"field":"amount","op":"changed"}]},
        "then":[{"update":{"properties":{"amount":"1"}}}]}]}"#;
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig::default())
        .vars([("ENRICHMENT_MAP", MAP), ("RULES", loop_rules)]);
    options.wrangler.config = Some(extra_wrangler_config("wrangler.rules-loop.toml")?);
    let fx = Fixture::start(options)?;
    let result = (|| {
        let r = fx.get("/healthz")?;
        let body = r.json()?;
        check(
            r.status == 503
                && body["problems"]
                    == json!([{"key": "RULES", "code": "rules_loop", "part": "forwarding"}]),
            || format!("/healthz: {} {body}", r.status),
        )
    })();
    fx.stop_worker();
    result
}

/// A named destination gets the same guarantees as `default`: `sales` down for good, the
/// forward is retried (`FORWARD_MAX_ATTEMPTS=2`), then kept in the dead-letter store with the
/// rule and destination in its detail; re-driven once `sales` is back, it arrives once, with
/// the `webhook-id` `default` got for the same change.
pub(super) fn rules_named_destination_dead_letter_then_redrive(_: &Fixture) -> Outcome {
    let sales = Destination::start(SALES_SECRET)?;
    sales.set_default(hubspot_edge_tests::Behavior::Status(500));
    let rules = r#"{"rules":[{"name":"to_sales","when":{"objectTypes":["deal"]},
        "then":[{"forward":{"destination":"sales"}}]}]}"#;
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            burst: 100_000,
            webhook: Some(WebhookConfig {
                secret: hubspot_edge_tests::fixture::CLIENT_SECRET.into(),
                retry_delay: Duration::from_millis(500),
                ..WebhookConfig::default()
            }),
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("RULES", rules),
            ("DESTINATION_SALES_SECRET", SALES_SECRET),
            ("FORWARD_MAX_ATTEMPTS", "2"),
            ("FORWARD_RETRY_BASE_SECS", "1"),
            ("FORWARD_RETRY_MAX_SECS", "1"),
        ])
        .var(
            "DESTINATIONS",
            json!({"sales": {"url": sales.url()}}).to_string(),
        );
    options.wrangler.config = Some(extra_wrangler_config("wrangler.rules-dead.toml")?);
    let fx = Fixture::start(options)?;
    mock_of(&fx)?.set_webhook_target(&fx.url("/webhooks/hubspot"));
    let result = dead_letter_scenario(&fx, &sales);
    fx.stop_worker();
    result
}

fn dead_letter_scenario(fx: &Fixture, sales: &Destination) -> Outcome {
    let deal = create(fx, "deals", json!({"dealname": "Down", "amount": "5"}))?;
    let at_default = fx.dest.wait_for_ok(&[deal], DEADLINE)?;
    let needle = format!("\"objectId\":\"{deal}\"");
    let (letter_id, letter) =
        poll_until("the sales forward's dead letter", DEADLINE, POLL, || {
            let list = fx.admin_get("/admin/dead-letters?limit=1000").ok()?;
            for item in list.json().ok()?["items"].as_array()? {
                let id = item["id"].as_str()?;
                let r = fx.admin_get(&format!("/admin/dead-letters/{id}")).ok()?;
                let record = r.json().ok()?;
                let payload = &record["payload"];
                if payload["source"] == "rules"
                    && payload["body"]
                        .as_str()
                        .is_some_and(|b| b.contains(&needle))
                {
                    return Some((id.to_owned(), record));
                }
            }
            None
        })?;
    check(
        letter["attempts"] == 2
            && letter["detail"]
                .as_str()
                .is_some_and(|d| d.contains("rule=to_sales effect=send destination=sales")),
        || format!("dead letter: {letter}"),
    )?;
    check(sales.delivered_ok_for(deal).is_empty(), || {
        "accepted while down".into()
    })?;
    sales.set_default(hubspot_edge_tests::Behavior::Status(200));
    let r = fx.admin_post(&format!("/admin/dead-letters/{letter_id}/redrive"), b"")?;
    check(r.status == 202, || {
        format!("redrive: {} {}", r.status, r.text())
    })?;
    let got = sales.wait_for_ok(&[deal], DEADLINE)?;
    std::thread::sleep(QUIET);
    let got_now = sales.delivered_ok_for(deal);
    check(
        got_now.len() == 1 && got[0].webhook_id == at_default[0].webhook_id,
        || {
            format!(
                "sales after the re-drive: {} accepted (want 1), webhook-id {:?} vs default's {:?}",
                got_now.len(),
                got[0].webhook_id,
                at_default[0].webhook_id
            )
        },
    )
}
