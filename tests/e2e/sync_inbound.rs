//! The inbound sync end to end (README "Sync", inbound): the user's system posts records signed
//! with `INBOUND_SECRET` to `POST /sync/contacts`; the Worker's `InboundSync` object writes the
//! changed ones to the mock HubSpot as batch upserts, and `GET /sync/receipts/{id}` says what
//! became of each. Each scenario has a Worker and mock of its own: the counts asserted are the
//! mock's (`GET /__mock/stats` `batchUpsert`), exactly.

use std::time::Duration;

use hubspot_edge_core::outbound::WebhookSecret;
use hubspot_edge_tests::{http, poll_until, unique_id, Fixture, FixtureOptions, HttpResponse};
use hubspot_mock::{MockConfig, WebhookConfig};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::{check, extra_wrangler_config, mock_of, mock_stats, Outcome};

/// The user's system's secret (a public test value).
const SECRET: &str = "whsec_aW5ib3VuZC10ZXN0LXNlY3JldC0wMDAx";
const MAP: &str = r#"{"objects":{
  "contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"firstname","field":"first_name"},
    {"hubspot":"lastname","field":"last_name"},
    {"hubspot":"legacy_code","field":"legacy_code"}]}
}}"#;
const DEADLINE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

/// A Worker of its own (`target/e2e/{config}`) with inbound on, its mock's webhooks sent to it
/// (so that HubSpot's notifications of our writes come back, as they would).
fn start(config: &str) -> Result<Fixture, Failed> {
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            burst: 100_000,
            webhook: Some(WebhookConfig {
                secret: hubspot_edge_tests::fixture::CLIENT_SECRET.into(),
                retry_delay: Duration::from_millis(300),
                // HubSpot batches webhooks; a full batch (100) goes out at once. Short on
                // purpose: our writes' notifications then race the Worker's commit, which the
                // record store's write fence must win (README, inbound "What happens").
                batch_window: Duration::from_millis(20),
                ..WebhookConfig::default()
            }),
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("INBOUND_SECRET", SECRET),
            ("INBOUND_TYPES", r#"{"contacts":{"coalesceWindowMs":300}}"#),
            ("SYNC_PORTAL_ID", "33"),
            ("FAULT_INJECTION", "true"),
        ]);
    options.wrangler.config = Some(extra_wrangler_config(config)?);
    let fx = Fixture::start(options)?;
    mock_of(&fx)?.set_webhook_target(&fx.url("/webhooks/hubspot"));
    Ok(fx)
}

/// Standard Webhooks headers for `body` with `webhook-id` `id`, signed with `secret`.
fn signed(secret: &str, id: &str, body: &[u8]) -> Result<Vec<(String, String)>, Failed> {
    let key = WebhookSecret::parse(secret).map_err(|e| e.to_string())?;
    let ts = hubspot_edge_tests::now_ms() / 1000;
    Ok(vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), ts.to_string()),
        ("webhook-signature".into(), key.sign(id, ts, body)),
        ("content-type".into(), "application/json".into()),
    ])
}

fn post_signed(fx: &Fixture, id: &str, body: &Value, secret: &str) -> Result<HttpResponse, Failed> {
    let bytes = body.to_string().into_bytes();
    let headers = signed(secret, id, &bytes)?;
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Ok(http::request(
        "POST",
        &fx.url("/sync/contacts"),
        &refs,
        Some(&bytes),
    )?)
}

/// Posts `records` signed with webhook-id `id`: the receipt id of the 202.
fn post(fx: &Fixture, id: &str, records: &[Value]) -> Result<String, Failed> {
    let r = post_signed(fx, id, &json!({ "records": records }), SECRET)?;
    check(r.status == 202, || {
        format!("POST /sync/contacts: {} {}", r.status, r.text())
    })?;
    let body = r.json()?;
    body["receiptId"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("no receiptId in {body}").into())
}

fn get_receipt(fx: &Fixture, receipt: &str) -> Result<HttpResponse, Failed> {
    let headers = signed(SECRET, &format!("get-{}", unique_id()), b"")?;
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Ok(http::request(
        "GET",
        &fx.url(&format!("/sync/receipts/{receipt}")),
        &refs,
        None,
    )?)
}

/// The receipt once no record is pending.
fn receipt_done(fx: &Fixture, receipt: &str) -> Result<Value, Failed> {
    let done = poll_until(
        &format!("receipt {receipt} complete"),
        DEADLINE,
        POLL,
        || {
            let r = get_receipt(fx, receipt).ok()?;
            let body = r.json().ok()?;
            let records = body["records"].as_array()?;
            records
                .iter()
                .all(|l| l["status"] != "pending")
                .then_some(body)
        },
    )?;
    Ok(done)
}

/// How many receipt lines have `status`.
fn count(receipt: &Value, status: &str) -> usize {
    receipt["records"]
        .as_array()
        .map_or(0, |r| r.iter().filter(|l| l["status"] == status).count())
}

/// `(calls, written)` of the mock's batch upsert counters.
fn upserts(fx: &Fixture) -> Result<(u64, u64), Failed> {
    let stats = mock_stats(mock_of(fx)?)?;
    let b = &stats["batchUpsert"];
    Ok((
        b["calls"].as_u64().ok_or("batchUpsert.calls")?,
        b["written"].as_u64().ok_or("batchUpsert.written")?,
    ))
}

fn contact(tag: u64, i: usize, first: &str) -> Value {
    json!({"externalId": format!("crm-{tag}-{i}"),
           "fields": {"email": format!("in-{tag}-{i}@example.com"), "first_name": first}})
}

/// 250 records of which 100 are unchanged (written by an earlier request) → exactly 150
/// written, in 2 batch upserts (100 + 50); the receipt says 150 written and 100 unchanged.
/// HubSpot's webhooks for those writes come back to the Worker and none reaches FORWARD_URL
/// (each is recognised: an echo, or unchanged against the snapshot the write committed), and a
/// later real change of one of them still arrives as a change.
pub(super) fn inbound_250_records_100_unchanged_writes_150_no_echo(_: &Fixture) -> Outcome {
    let fx = start("wrangler.inbound-a.toml")?;
    let result = (|| {
        let tag = unique_id();
        let first: Vec<Value> = (0..100).map(|i| contact(tag, i, "Ada")).collect();
        let r1 = post(&fx, &format!("msg-{tag}-1"), &first)?;
        let done = receipt_done(&fx, &r1)?;
        check(count(&done, "written") == 100, || {
            format!("first request: {done}")
        })?;
        let (calls0, written0) = upserts(&fx)?;
        check((calls0, written0) == (1, 100), || {
            format!("first request: {calls0} calls, {written0} written")
        })?;

        // The same 100, unchanged, and 150 more, whose two commits wait 2 s after HubSpot's
        // answers: HubSpot's notifications of those writes arrive first (the race the record
        // store's write fence closes).
        let r = fx.admin_post("/admin/faults/inbound-commit-delay", br#"{"failNext":2}"#)?;
        check(r.status == 200, || format!("fault: {}", r.status))?;
        let mut second = first.clone();
        second.extend((100..250).map(|i| contact(tag, i, "Bob")));
        let r2 = post(&fx, &format!("msg-{tag}-2"), &second)?;
        let done = receipt_done(&fx, &r2)?;
        check(
            count(&done, "written") == 150 && count(&done, "unchanged") == 100,
            || format!("second request: {done}"),
        )?;
        let (calls, written) = upserts(&fx)?;
        check((calls - calls0, written - written0) == (2, 150), || {
            format!(
                "second request: {} calls, {} written (expected 2 and 150)",
                calls - calls0,
                written - written0
            )
        })?;

        // Our writes come back as webhooks; none is forwarded.
        let ids: Vec<u64> = done["records"]
            .as_array()
            .ok_or("records")?
            .iter()
            .filter_map(|l| l["hubspotId"].as_str()?.parse().ok())
            .collect();
        check(ids.len() == 150, || format!("{} hubspot ids", ids.len()))?;
        poll_until("every echo consumed", DEADLINE, POLL, || {
            let skipped = super::enrichment::log_lines(&fx, "enrich_skipped");
            ids.iter()
                .all(|id| {
                    let id = id.to_string();
                    skipped.iter().any(|l| l["object_id"] == id.as_str())
                })
                .then_some(())
        })
        .map_err(|e| {
            let skipped = super::enrichment::log_lines(&fx, "enrich_skipped");
            let stats = mock_of(&fx).ok().and_then(|m| mock_stats(m).ok());
            let tail: Vec<String> = fx.worker.logs_since(0).into_iter().rev().take(15).collect();
            format!(
                "{e}: {} enrich_skipped lines (first: {:?}); mock webhooks: {}; deliveries: {}; last lines: {tail:#?}",
                skipped.len(),
                skipped.first(),
                stats.map_or(Value::Null, |s| s["webhooks"].clone()),
                fx.dest.deliveries().len()
            )
        })?;
        for id in &ids {
            let n = fx.dest.deliveries_for(*id).len();
            check(n == 0, || {
                format!("our write to {id} came back: {n} deliveries")
            })?;
        }
        // Notifications that arrived before the commit waited behind the write fence.
        eprintln!(
            "inbound echo: {} objects deferred behind the write fence, 0 forwarded",
            super::enrichment::log_lines(&fx, "enrich_deferred").len()
        );
        // A real change in HubSpot afterwards is still a change, diffed against what we wrote.
        let id = ids[0];
        let mock = mock_of(&fx)?;
        let r = http::request(
            "PATCH",
            &format!("{}/crm/v3/objects/contacts/{id}", mock.base_url()),
            &[
                ("authorization", &format!("Bearer {}", mock.token())),
                ("content-type", "application/json"),
            ],
            Some(br#"{"properties":{"firstname":"Cy"}}"#),
        )?;
        check(r.status == 200, || format!("patch: {}", r.status))?;
        let ds = fx.dest.wait_for_ok(&[id], DEADLINE)?;
        check(
            ds.len() == 1
                && ds[0].body["changes"]
                    == json!([{"field": "first_name", "old": "Bob", "new": "Cy"}]),
            || format!("the real change: {}", fx.dest.describe(&[id])),
        )
    })();
    fx.stop_worker();
    result
}

/// One record writing a property the portal does not have: HubSpot refuses the whole batch;
/// that record is dead-lettered with `PROPERTY_DOESNT_EXIST` (reason `inbound_rejected`) and
/// the 4 others are written by one more call. Once the property exists, the admin's re-drive
/// writes it.
pub(super) fn inbound_invalid_property_dead_lettered_rest_written(_: &Fixture) -> Outcome {
    let fx = start("wrangler.inbound-b.toml")?;
    let result = (|| {
        let mock = mock_of(&fx)?;
        let r = http::request(
            "POST",
            &format!("{}/__mock/faults", mock.base_url()),
            &[("content-type", "application/json")],
            Some(br#"{"undefinedProperties":{"contacts":["legacy_code"]}}"#),
        )?;
        check(r.status == 200, || format!("mock faults: {}", r.status))?;
        let tag = unique_id();
        let mut records: Vec<Value> = (0..5).map(|i| contact(tag, i, "Eve")).collect();
        records[2]["fields"]["legacy_code"] = json!("L-7");
        let receipt = post(&fx, &format!("msg-{tag}"), &records)?;
        let done = receipt_done(&fx, &receipt)?;
        check(count(&done, "written") == 4, || format!("receipt: {done}"))?;
        let line = &done["records"][2];
        check(
            line["status"] == "failed" && line["code"] == "PROPERTY_DOESNT_EXIST",
            || format!("the bad record: {line}"),
        )?;
        check(upserts(&fx)? == (2, 4), || {
            format!("upserts: {:?} (expected 2 calls, 4 written)", upserts(&fx))
        })?;
        let external = format!("crm-{tag}-2");
        let letter = poll_until("the dead letter", DEADLINE, POLL, || {
            let list = fx.admin_get("/admin/dead-letters?limit=100").ok()?;
            let items = list.json().ok()?["items"].as_array()?.clone();
            items.iter().find_map(|item| {
                let id = item["id"].as_str()?;
                let r = fx.admin_get(&format!("/admin/dead-letters/{id}")).ok()?;
                let letter = r.json().ok()?;
                (letter["payload"]["externalId"] == external.as_str()).then_some(letter)
            })
        })?;
        check(
            letter["reason"] == "inbound_rejected"
                && letter["payload"]["code"] == "PROPERTY_DOESNT_EXIST"
                && letter["payload"]["properties"] == json!(["legacy_code"]),
            || format!("dead letter: {letter}"),
        )?;

        // The property now exists: the admin re-drives the letter, the record is written and
        // its line in the original receipt says so.
        let r = http::request(
            "POST",
            &format!("{}/__mock/faults", mock.base_url()),
            &[("content-type", "application/json")],
            Some(br#"{"undefinedProperties":{"contacts":null}}"#),
        )?;
        check(r.status == 200, || format!("mock faults: {}", r.status))?;
        let id = letter["id"].as_str().ok_or("letter id")?;
        let r = fx.admin_post(&format!("/admin/dead-letters/{id}/redrive"), b"")?;
        check(r.status == 202, || {
            format!("redrive: {} {}", r.status, r.text())
        })?;
        let line = poll_until("the re-driven record written", DEADLINE, POLL, || {
            let body = get_receipt(&fx, &receipt).ok()?.json().ok()?;
            let line = body["records"][2].clone();
            (line["status"] == "written").then_some(line)
        })?;
        check(upserts(&fx)? == (3, 5), || {
            format!("after the re-drive: {:?} {line}", upserts(&fx))
        })?;
        let gone = fx.admin_get(&format!("/admin/dead-letters/{id}"))?;
        check(gone.status == 404, || {
            format!("the letter is still there: {}", gone.status)
        })
    })();
    fx.stop_worker();
    result
}

/// The same signed request twice: one receipt, written once. The same records under another
/// `webhook-id`: a new receipt, all unchanged, no call. Bad signature 401, a malformed record
/// 400 with its index, code and field, an unsigned receipt read 401, an unknown receipt 404.
pub(super) fn inbound_same_request_twice_writes_once_receipt_and_errors(_: &Fixture) -> Outcome {
    let fx = start("wrangler.inbound-c.toml")?;
    let result = (|| {
        let tag = unique_id();
        let records: Vec<Value> = (0..3).map(|i| contact(tag, i, "Fay")).collect();
        let id = format!("msg-{tag}");
        let a = post(&fx, &id, &records)?;
        let b = post(&fx, &id, &records)?;
        check(a == b, || format!("two receipts for one message: {a} {b}"))?;
        let done = receipt_done(&fx, &a)?;
        check(
            count(&done, "written") == 3
                && done["records"][1]["externalId"] == format!("crm-{tag}-1").as_str()
                && done["records"][1]["hubspotId"].is_string(),
            || format!("receipt: {done}"),
        )?;
        check(upserts(&fx)? == (1, 3), || {
            format!("upserts after the repeat: {:?}", upserts(&fx))
        })?;
        let c = post(&fx, &format!("msg-{tag}-again"), &records)?;
        check(c != a, || "a new message got the old receipt".into())?;
        let again = receipt_done(&fx, &c)?;
        check(count(&again, "unchanged") == 3, || {
            format!("receipt: {again}")
        })?;
        check(upserts(&fx)? == (1, 3), || {
            format!("upserts after the same content: {:?}", upserts(&fx))
        })?;

        // Errors, none of which stores anything.
        let body = json!({ "records": records });
        let r = post_signed(
            &fx,
            &format!("bad-{tag}"),
            &body,
            "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        )?;
        check(
            r.status == 401 && r.json()?["error"]["code"] == "inbound_signature_invalid",
            || format!("wrong secret: {} {}", r.status, r.text()),
        )?;
        let mut bad = records.clone();
        bad[1]["fields"]["nickname"] = json!("x");
        let r = post_signed(
            &fx,
            &format!("bad-{tag}-2"),
            &json!({ "records": bad }),
            SECRET,
        )?;
        let e = r.json()?;
        check(
            r.status == 400
                && e["error"]["code"] == "inbound_unknown_field"
                && e["error"]["index"] == 1
                && e["error"]["field"] == "nickname",
            || format!("malformed record: {} {e}", r.status),
        )?;
        let r = http::request("GET", &fx.url(&format!("/sync/receipts/{a}")), &[], None)?;
        check(r.status == 401, || {
            format!("unsigned receipt read: {}", r.status)
        })?;
        let r = get_receipt(&fx, "hsr1_0000")?;
        check(r.status == 404, || format!("unknown receipt: {}", r.status))?;
        check(upserts(&fx)? == (1, 3), || {
            format!("upserts after the errors: {:?}", upserts(&fx))
        })
    })();
    fx.stop_worker();
    result
}

/// HubSpot failing a batch upsert past the executor's retries (five 503s): nothing is decided,
/// the batch goes back to pending and the next alarm writes it. Every record ends written,
/// once.
pub(super) fn inbound_hubspot_503s_batch_retried_later_nothing_lost(_: &Fixture) -> Outcome {
    let fx = start("wrangler.inbound-d.toml")?;
    let result = (|| {
        let mock = mock_of(&fx)?;
        let faults = json!({"next": [{"status": 503}, {"status": 503}, {"status": 503},
                                     {"status": 503}, {"status": 503}]});
        let r = http::request(
            "POST",
            &format!("{}/__mock/faults", mock.base_url()),
            &[("content-type", "application/json")],
            Some(faults.to_string().as_bytes()),
        )?;
        check(r.status == 200, || format!("mock faults: {}", r.status))?;
        let tag = unique_id();
        let records: Vec<Value> = (0..4).map(|i| contact(tag, i, "Gus")).collect();
        let posted = std::time::Instant::now();
        let receipt = post(&fx, &format!("msg-{tag}"), &records)?;
        let done = receipt_done(&fx, &receipt)?;
        check(count(&done, "written") == 4, || format!("receipt: {done}"))?;
        // Tried again after the retry delay (10 s), not at once.
        let took = posted.elapsed();
        check(took >= Duration::from_secs(10), || {
            format!("written {took:?} after the request: retried without waiting")
        })?;
        // The five faulted attempts never reached the endpoint; the one that did wrote all 4.
        check(upserts(&fx)? == (1, 4), || {
            format!("upserts: {:?} (expected 1 call, 4 written)", upserts(&fx))
        })?;
        let retried = super::enrichment::log_lines(&fx, "inbound_batch_retry");
        check(retried.len() == 1 && retried[0]["updates"] == 4, || {
            format!("inbound_batch_retry lines: {retried:?}")
        })
    })();
    fx.stop_worker();
    result
}
