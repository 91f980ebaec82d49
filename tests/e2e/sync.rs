//! The outbound sync end to end (docs/sync.md): a Worker of its own with a mock HubSpot seeded
//! with contacts and companies, runs started through the admin API, deliveries checked at the
//! loopback destination against the mock's records and `schema/sync-batch.v1.json`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hubspot_edge_tests::{poll_until, Behavior, Fixture, FixtureOptions};
use hubspot_mock::{MockConfig, WebhookConfig};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::{check, extra_wrangler_config, mock_of, Outcome};

const CONTACTS: usize = 2_000;
const COMPANIES: usize = 300;
const PORTAL: u64 = 33;
const MAP: &str = r#"{"objects":{
  "contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"firstname","field":"first_name"},
    {"hubspot":"lastname","field":"last_name"},
    {"hubspot":"lead_score","field":"score","type":"number"}]},
  "companies":{"fields":[
    {"hubspot":"name"},
    {"hubspot":"domain"}]}
}}"#;
/// HubSpot property → destination field, per type (as MAP says).
const FIELDS: &[(&str, &[(&str, &str)])] = &[
    (
        "contacts",
        &[
            ("email", "email"),
            ("firstname", "first_name"),
            ("lastname", "last_name"),
            ("lead_score", "score"),
        ],
    ),
    ("companies", &[("name", "name"), ("domain", "domain")]),
];
const RUN_DEADLINE: Duration = Duration::from_secs(240);
const POLL: Duration = Duration::from_millis(250);

fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = hubspot_edge_tests::repo_root().join("schema/sync-batch.v1.json");
        let text = std::fs::read_to_string(&path).expect("schema file is readable");
        let value: Value = serde_json::from_str(&text).expect("schema is JSON");
        jsonschema::validator_for(&value).expect("schema compiles")
    })
}

fn start() -> Result<Fixture, Failed> {
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            seed_contacts: CONTACTS,
            seed_companies: COMPANIES,
            // The test reads the mock's records too.
            burst: 100_000,
            webhook: Some(WebhookConfig {
                secret: hubspot_edge_tests::fixture::CLIENT_SECRET.into(),
                retry_delay: Duration::from_millis(200),
                // A webhook to a dead target is lost (what the sync is for).
                max_retries: 0,
                ..WebhookConfig::default()
            }),
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("SYNC_OBJECT_TYPES", "contacts,companies"),
            ("SYNC_PORTAL_ID", "33"),
            // The mock's search is consistent at once: read changes up to the run's start.
            ("SYNC_LAG_SECS", "0"),
        ]);
    options.wrangler.config = Some(extra_wrangler_config("wrangler.sync.toml")?);
    // `GET /__scheduled` runs the cron trigger's handler (wrangler dev's test hook).
    options.wrangler.extra_args.push("--test-scheduled".into());
    let fx = Fixture::start(options)?;
    // Webhooks go nowhere until the test says (a closed port: refused at once).
    let dead = format!("http://127.0.0.1:{}/", hubspot_edge_tests::free_port()?);
    mock_of(&fx)?.set_webhook_target(&dead);
    Ok(fx)
}

/// A call to the mock's HubSpot API with its token.
pub(super) fn hubspot(
    fx: &Fixture,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Value, Failed> {
    let mock = mock_of(fx)?;
    let auth = format!("Bearer {}", mock.token());
    let bytes = body.map(Value::to_string);
    let r = hubspot_edge_tests::http::request(
        method,
        &format!("{}{path}", mock.base_url()),
        &[
            ("authorization", &auth),
            ("content-type", "application/json"),
        ],
        bytes.as_deref().map(str::as_bytes),
    )?;
    check((200..300).contains(&r.status), || {
        format!("{method} {path}: {}", r.status)
    })?;
    if r.body.is_empty() {
        return Ok(Value::Null);
    }
    Ok(r.json()?)
}

/// Every live record of `object_type` in the mock, walking its v3 list (`query` appended to
/// each page's request): the records as HubSpot answers them.
pub(super) fn mock_list(
    fx: &Fixture,
    object_type: &str,
    query: &str,
) -> Result<Vec<Value>, Failed> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/crm/v3/objects/{object_type}?limit=100&{query}");
        if let Some(a) = &after {
            path.push_str(&format!("&after={a}"));
        }
        let mut page = hubspot(fx, "GET", &path, None)?;
        if let Value::Array(results) = page["results"].take() {
            out.extend(results);
        } else {
            return Err("results".into());
        }
        match page["paging"]["next"]["after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => return Ok(out),
        }
    }
}

/// `properties=` for the HubSpot side of `fields` (property, destination field).
pub(super) fn properties_query(fields: &[(&str, &str)]) -> String {
    let props: Vec<&str> = fields.iter().map(|(p, _)| *p).collect();
    format!("properties={}", props.join(","))
}

/// A record's properties mapped to destination fields as `fields` says.
pub(super) fn mapped(record: &Value, fields: &[(&str, &str)]) -> Value {
    let mut mapped = serde_json::Map::new();
    for (p, f) in fields {
        mapped.insert((*f).to_owned(), record["properties"][*p].clone());
    }
    Value::Object(mapped)
}

/// Every live record of `object_type` in the mock, mapped as MAP maps it: id → fields.
fn mock_records(fx: &Fixture, object_type: &str) -> Result<BTreeMap<String, Value>, Failed> {
    let fields = FIELDS
        .iter()
        .find(|(t, _)| *t == object_type)
        .map(|(_, f)| *f)
        .ok_or("type")?;
    let mut out = BTreeMap::new();
    for r in mock_list(fx, object_type, &properties_query(fields))? {
        out.insert(r["id"].as_str().ok_or("id")?.to_owned(), mapped(&r, fields));
    }
    Ok(out)
}

/// The sync batches the destination accepted after arrival number `from`, each checked: signed,
/// valid against the schema, `webhook-id` = body id.
pub(super) fn sync_batches(fx: &Fixture, from: usize) -> Result<Vec<Value>, Failed> {
    let mut out = Vec::new();
    for d in fx.dest.deliveries() {
        if d.seq < from || d.body["type"] != "hubspot-edge.sync.batch" || !d.is_ok() {
            continue;
        }
        if let Err(e) = schema().validate(&d.body) {
            return Err(format!("sync batch violates the schema: {e}").into());
        }
        check(d.webhook_id.as_deref() == d.body["id"].as_str(), || {
            format!("webhook-id {:?} is not the body's id", d.webhook_id)
        })?;
        out.push(d.body);
    }
    Ok(out)
}

/// The records of `batches` for `object_type`, by id; fails if a record or a change id
/// arrives twice.
pub(super) fn records_of(
    batches: &[Value],
    object_type: &str,
) -> Result<BTreeMap<String, Value>, Failed> {
    let mut out = BTreeMap::new();
    let mut changes = HashSet::new();
    for b in batches.iter().filter(|b| b["objectType"] == object_type) {
        check(b["portalId"] == PORTAL, || {
            format!("portal {}", b["portalId"])
        })?;
        for r in b["records"].as_array().ok_or("records")? {
            let id = r["id"].as_str().ok_or("id")?.to_owned();
            let change = r["changeId"].as_str().ok_or("changeId")?.to_owned();
            check(changes.insert(change.clone()), || {
                format!("{object_type} change {change} delivered twice")
            })?;
            check(out.insert(id.clone(), r.clone()).is_none(), || {
                format!("{object_type} {id} delivered twice")
            })?;
        }
    }
    Ok(out)
}

pub(super) fn admin_json(fx: &Fixture, method: &str, path: &str) -> Result<(u16, Value), Failed> {
    let r = if method == "GET" {
        fx.admin_get(path)?
    } else {
        fx.admin_post(path, b"")?
    };
    let status = r.status;
    Ok((status, r.json()?))
}

/// Starts a run of `object_type` and returns its id.
pub(super) fn start_run(fx: &Fixture, object_type: &str, mode: &str) -> Result<String, Failed> {
    let (status, body) = admin_json(
        fx,
        "POST",
        &format!("/admin/sync/{object_type}/run?mode={mode}"),
    )?;
    check(status == 202 && body["started"] == true, || {
        format!("start {object_type} {mode}: {status} {body}")
    })?;
    Ok(body["runId"].as_str().ok_or("runId")?.to_owned())
}

/// Waits until the runs `run_ids` (type → id) are finished; returns each type's status.
pub(super) fn wait_done(
    fx: &Fixture,
    run_ids: &HashMap<&str, String>,
) -> Result<HashMap<String, Value>, Failed> {
    let done = poll_until("sync runs finished", RUN_DEADLINE, POLL, || {
        let (status, body) = admin_json(fx, "GET", "/admin/sync").ok()?;
        if status != 200 {
            return None;
        }
        let mut out = HashMap::new();
        for t in body["types"].as_array()? {
            let name = t["objectType"].as_str()?.to_owned();
            if let Some(id) = run_ids.get(name.as_str()) {
                if t["state"] != "idle" || t["last"]["runId"] != id.as_str() {
                    return None;
                }
            }
            out.insert(name, t.clone());
        }
        Some(out)
    });
    done.map_err(|e| {
        let now = admin_json(fx, "GET", "/admin/sync")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        format!("{e}\n/admin/sync: {now}").into()
    })
}

/// A full backfill of 2,000 contacts and 300 companies: the destination ends with exactly the
/// mock's records (mapped fields compared), each delivered once (by id and by changeId), every
/// batch signed, valid and with `webhook-id` = its id; a record that does not map is
/// dead-lettered with its code (no value). Then changes HubSpot's webhooks missed
/// and an incremental run against a destination that refuses the first attempt: only those are
/// delivered, once accepted, the retry under the same webhook-id, a record archived meanwhile
/// as `delete` (`archived`), a merge as `merge`; a change webhook enrichment
/// delivered is not delivered again.
pub(super) fn sync_backfill_then_incremental_delivers_each_change_once(_: &Fixture) -> Outcome {
    let fx = start()?;
    let result = backfill_then_incremental(&fx).map_err(|e| {
        let logs = fx.worker.logs_since(0);
        let tail: Vec<&String> = logs
            .iter()
            // Not the per-unit timing lines: they would crowd out the runs.
            .filter(|l| {
                (l.contains("error") || l.contains("sync_")) && !l.contains("sync_unit_worked")
            })
            .rev()
            .take(30)
            .collect();
        Failed::from(format!(
            "{}\nWorker log (errors and sync lines, newest first):\n{}",
            e.message().unwrap_or("failed"),
            tail.iter()
                .map(|l| l.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        ))
    });
    fx.stop_worker();
    result
}

fn backfill_then_incremental(fx: &Fixture) -> Outcome {
    // Sync configured: the admin API lists both types, idle, never run.
    let (status, body) = admin_json(fx, "GET", "/admin/sync")?;
    check(
        status == 200 && body["types"].as_array().map(Vec::len) == Some(2),
        || format!("GET /admin/sync: {status} {body}"),
    )?;

    // One contact whose score does not map (not a number): dead-lettered with its code, the
    // rest delivered.
    let secret = format!("lots-{}", hubspot_edge_tests::unique_id());
    let bad = hubspot(
        fx,
        "POST",
        "/crm/v3/objects/contacts",
        Some(&json!({"properties": {"email": "bad@example.com", "lead_score": secret}})),
    )?["id"]
        .as_str()
        .ok_or("id")?
        .to_owned();

    // The cron trigger starts the first runs: never synced, so full ones.
    let started = Instant::now();
    let r = fx.get("/__scheduled?cron=*/5+*+*+*+*")?;
    check(r.status == 200, || format!("/__scheduled: {}", r.status))?;
    let (_, body) = admin_json(fx, "GET", "/admin/sync")?;
    let mut runs = HashMap::new();
    for (i, t) in ["contacts", "companies"].into_iter().enumerate() {
        let ty = &body["types"][i];
        let run = if ty["current"].is_object() {
            &ty["current"]
        } else {
            &ty["last"]
        };
        check(ty["objectType"] == t && run["mode"] == "full", || {
            format!("after the cron: {body}")
        })?;
        runs.insert(t, run["runId"].as_str().ok_or("runId")?.to_owned());
    }
    // A second poke right away starts nothing (a run is going, or none is due for 5 minutes).
    let r = fx.get("/__scheduled?cron=*/5+*+*+*+*")?;
    check(r.status == 200, || format!("/__scheduled: {}", r.status))?;
    let (_, again) = admin_json(fx, "GET", "/admin/sync")?;
    check(
        again["types"][0]["lastStartedMs"] == body["types"][0]["lastStartedMs"],
        || format!("a second poke started a run: {again}"),
    )?;
    // One run per type at a time: a second start answers 409 (or, if the first run already
    // finished on a fast machine, starts a new one, which the wait below then awaits).
    let (status, body) = admin_json(fx, "POST", "/admin/sync/contacts/run?mode=full")?;
    // 202: the first run was already done (a fast machine): the second is a full run against
    // a filled store, which must deliver nothing (checked below).
    let second_full = status == 202;
    match status {
        409 => check(body["reason"] == "already_running", || body.to_string())?,
        202 => {
            runs.insert(
                "contacts",
                body["runId"].as_str().ok_or("runId")?.to_owned(),
            );
        }
        _ => return Err(format!("a second start: {status} {body}").into()),
    }
    let status_after = wait_done(fx, &runs)?;
    let elapsed = started.elapsed();

    // The cursor lag gauge per type (issue 12 §1): GET /admin/sync, just read, set it from each
    // type's cursor; it reaches the metrics store and is at most now − cursor.
    let (_, sync) = admin_json(fx, "GET", "/admin/sync")?;
    let portal = sync["portalId"].as_u64().ok_or("portalId")?;
    for t in ["contacts", "companies"] {
        let cursor = status_after[t]["cursorMs"]
            .as_u64()
            .ok_or_else(|| format!("{t}: no cursor after a full run"))?;
        let key =
            format!("hubspot_edge_sync_cursor_lag_seconds{{object_type={t},portal={portal}}}");
        let lag = poll_until("the cursor lag gauge", RUN_DEADLINE, POLL, || {
            super::metrics::scrape(fx).ok()?.get(&key).copied()
        })?;
        #[allow(clippy::cast_precision_loss)]
        let most = (hubspot_edge_tests::now_ms().saturating_sub(cursor) / 1000) as f64;
        check((0.0..=most).contains(&lag), || {
            format!("{key} = {lag}, now − cursor = {most} s")
        })?;
    }

    let batches = sync_batches(fx, 0)?;
    let mut calls = 0;
    for (t, n) in [("contacts", CONTACTS), ("companies", COMPANIES)] {
        let mut expected = mock_records(fx, t)?;
        if t == "contacts" {
            expected.remove(&bad);
        }
        check(expected.len() == n, || {
            format!("the mock has {} {t}", expected.len())
        })?;
        let got = records_of(&batches, t)?;
        let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
        let extra: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
        check(missing.is_empty() && extra.is_empty(), || {
            format!(
                "{t}: {} missing (first {:?}), {} extra (first {:?})",
                missing.len(),
                missing.first(),
                extra.len(),
                extra.first()
            )
        })?;
        for (id, fields) in &expected {
            let r = &got[id];
            let same = fields.as_object().is_some_and(|f| {
                f.iter()
                    .all(|(k, v)| r["fields"].get(k).unwrap_or(&Value::Null) == v)
            });
            check(r["op"] == "upsert" && same, || {
                format!("{t} {id}: delivered {r}, the mock has {fields}")
            })?;
        }
        let last = &status_after[t]["last"];
        let rejected = u64::from(t == "contacts");
        let (upserted, unchanged) = if t == "contacts" && second_full {
            (0, n)
        } else {
            (n, 0)
        };
        check(
            last["counts"]["upserted"] == upserted
                && last["counts"]["unchanged"] == unchanged
                && last["counts"]["read"].as_u64() == Some(n as u64 + rejected)
                && last["counts"]["rejected"] == rejected,
            || format!("{t} counts: {last}"),
        )?;
        calls += last["counts"]["hubspotCalls"].as_u64().unwrap_or(0);
    }
    let letter = poll_until(
        "the unmappable record's dead letter",
        RUN_DEADLINE,
        POLL,
        || {
            let list = fx.admin_get("/admin/dead-letters?limit=100").ok()?;
            let items = list.json().ok()?["items"].as_array().cloned()?;
            items.iter().find_map(|item| {
                let dl_id = item["id"].as_str()?;
                let record = fx
                    .admin_get(&format!("/admin/dead-letters/{dl_id}"))
                    .ok()?
                    .json()
                    .ok()?;
                (record["payload"]["objectId"] == bad.as_str()).then_some(record)
            })
        },
    )?;
    check(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("mapping_"))
            && !letter.to_string().contains(&secret)
            && letter["payload"]["source"] == "sync",
        || format!("dead letter: {letter}"),
    )?;
    check(
        !fx.worker.logs_since(0).iter().any(|l| l.contains(&secret)),
        || "the unmappable value appeared in a log line".into(),
    )?;
    eprintln!(
        "sync backfill: {CONTACTS} contacts + {COMPANIES} companies in {:.1} s, {calls} HubSpot \
         calls, {} batches",
        elapsed.as_secs_f64(),
        batches.len()
    );

    // Changes whose webhooks are lost (the target is dead): 5 and 6. Then webhooks reach the
    // Worker, and 7's change is delivered by enrichment.
    let ids: Vec<String> = mock_records(fx, "contacts")?
        .keys()
        .take(6)
        .cloned()
        .collect();
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    // f survives a merge of e into it.
    let (e, f) = (&ids[4], &ids[5]);
    // One batch update: both webhooks leave in one batch, to the dead target.
    let inputs: Vec<Value> = [a, b]
        .iter()
        .map(|id| json!({"id": id, "properties": {"firstname": format!("Missed{id}")}}))
        .collect();
    hubspot(
        fx,
        "POST",
        "/crm/v3/objects/contacts/batch/update",
        Some(&json!({ "inputs": inputs })),
    )?;
    // And one archived (its deletion webhook lost too).
    hubspot(fx, "DELETE", &format!("/crm/v3/objects/contacts/{d}"), None)?;
    hubspot(
        fx,
        "POST",
        "/crm/v3/objects/contacts/merge",
        Some(&json!({"primaryObjectId": f, "objectIdToMerge": e})),
    )?;
    poll_until(
        "the mock's webhooks to the dead target failed",
        RUN_DEADLINE,
        POLL,
        || {
            let w = hubspot(fx, "GET", "/__mock/stats", None).ok()?["webhooks"].clone();
            let (events, attempts, failed) = (
                w["events"].as_u64()?,
                w["attempts"].as_u64()?,
                w["failedAttempts"].as_u64()?,
            );
            (events >= 4 && attempts >= 1 && failed == attempts).then_some(())
        },
    )?;
    let mark = fx.dest.deliveries().len();
    mock_of(fx)?.set_webhook_target(&fx.url("/webhooks/hubspot"));
    hubspot(
        fx,
        "PATCH",
        &format!("/crm/v3/objects/contacts/{c}"),
        Some(&json!({"properties": {"firstname": "Hooked"}})),
    )?;
    let c_num: u64 = c.parse()?;
    poll_until(
        "enrichment delivers the hooked change",
        RUN_DEADLINE,
        POLL,
        || (!fx.dest.delivered_ok_for(c_num).is_empty()).then_some(()),
    )?;
    // The missed changes were not delivered by webhook.
    for id in [a, b, d, e, f] {
        let n: u64 = id.parse()?;
        check(fx.dest.delivered_ok_for(n).is_empty(), || {
            format!("{id} was delivered by webhook; the test expected its webhook lost")
        })?;
    }

    // The destination fails the first attempt (503): the unit is retried from the same state,
    // and the batch goes out again under the same webhook-id.
    let before = fx.dest.deliveries().len();
    fx.dest.set_default(Behavior::Status(503));
    let mut runs = HashMap::new();
    runs.insert("contacts", start_run(fx, "contacts", "incremental")?);
    let refused = poll_until("a refused sync batch", RUN_DEADLINE, POLL, || {
        fx.dest.deliveries().into_iter().find(|d| {
            d.seq >= before
                && d.body["type"] == "hubspot-edge.sync.batch"
                && d.answered == Some(503)
        })
    });
    fx.dest.set_default(Behavior::Status(200));
    let refused = refused?;
    let after = wait_done(fx, &runs)?;
    // The refused delivery stopped a unit (retried, then done): counted in the type's errors.
    check(
        after["contacts"]["errors"].as_u64() >= Some(1)
            && after["contacts"]["lastError"]
                .as_str()
                .is_some_and(|e| e.starts_with("delivery hsb1_")),
        || format!("unit failures counted: {}", after["contacts"]),
    )?;
    let retried = sync_batches(fx, before)?;
    check(
        // The modified walk's batch (refused once, then accepted) and the archived walk's.
        retried.len() == 2 && retried.iter().any(|b| b["id"] == refused.body["id"]),
        || {
            format!(
                "the retried batch kept its id: {:?}",
                retried.iter().map(|b| &b["id"]).collect::<Vec<_>>()
            )
        },
    )?;
    let got = records_of(&sync_batches(fx, before.max(mark))?, "contacts")?;
    let mut keys: Vec<&String> = got.keys().collect();
    keys.sort_by_key(|k| k.parse::<u64>().unwrap_or(0));
    check(keys == vec![a, b, d, f], || {
        format!("incremental run delivered {keys:?}, expected [{a}, {b}, {d}, {f}] only")
    })?;
    check(
        got[f]["op"] == "merge" && got[f]["mergedIds"] == json!([e]),
        || format!("the merge: {}", got[f]),
    )?;
    check(
        got[d]["op"] == "delete" && got[d]["reason"] == "archived",
        || format!("the archived record: {}", got[d]),
    )?;
    for id in [a, b] {
        check(
            got[id]["fields"]["first_name"] == format!("Missed{id}").as_str(),
            || format!("{id}: {}", got[id]),
        )?;
    }
    // Pause: no run starts (409 paused) until resumed; the state says so.
    let (status, _) = admin_json(fx, "POST", "/admin/sync/contacts/pause")?;
    check(status == 200, || format!("pause: {status}"))?;
    let (status, body) = admin_json(fx, "POST", "/admin/sync/contacts/run?mode=full")?;
    check(status == 409 && body["reason"] == "paused", || {
        format!("run while paused: {status} {body}")
    })?;
    let (_, body) = admin_json(fx, "GET", "/admin/sync")?;
    check(body["types"][0]["state"] == "paused", || body.to_string())?;
    let (status, _) = admin_json(fx, "POST", "/admin/sync/contacts/resume")?;
    check(status == 200, || format!("resume: {status}"))?;
    let (_, body) = admin_json(fx, "GET", "/admin/sync")?;
    check(body["types"][0]["state"] == "idle", || body.to_string())?;
    // A second full run (the reconcile, now against a filled store) delivers nothing: every
    // record is unchanged, none is missing.
    let before = fx.dest.deliveries().len();
    let mut runs = HashMap::new();
    runs.insert("contacts", start_run(fx, "contacts", "full")?);
    let again = wait_done(fx, &runs)?;
    let last = &again["contacts"]["last"];
    check(
        last["counts"]["upserted"] == 0
            && last["counts"]["deleted"] == 0
            && last["counts"]["unchanged"] == CONTACTS - 2
            && last["missingFound"] == 0,
        || format!("second full run: {last}"),
    )?;
    check(sync_batches(fx, before)?.is_empty(), || {
        "the second full run delivered something".into()
    })?;
    // Re-driving the unmappable record's dead letter reads the record again (an incremental
    // run is started for it): it still does not map, so it is dead-lettered again: a letter
    // is never dropped by a re-drive, and the record is not lost.
    let letters_for_bad = || -> Option<Vec<String>> {
        let list = fx.admin_get("/admin/dead-letters?limit=1000").ok()?;
        let items = list.json().ok()?["items"].as_array().cloned()?;
        let mut ids = Vec::new();
        for item in items {
            let dl_id = item["id"].as_str()?.to_owned();
            let record = fx
                .admin_get(&format!("/admin/dead-letters/{dl_id}"))
                .ok()?
                .json()
                .ok()?;
            if record["payload"]["objectId"] == bad.as_str() {
                ids.push(dl_id);
            }
        }
        Some(ids)
    };
    let held = letters_for_bad().ok_or("listing dead letters")?;
    let redriven = held
        .first()
        .ok_or("no letter for the unmappable record")?
        .clone();
    let r = fx.admin_post(&format!("/admin/dead-letters/{redriven}/redrive"), b"")?;
    check(r.status == 202, || {
        format!("re-drive of a sync letter: {} {}", r.status, r.text())
    })?;
    let previous = again["contacts"]["last"]["runId"].clone();
    let rerun = poll_until("the re-drive's run", RUN_DEADLINE, POLL, || {
        let (_, body) = admin_json(fx, "GET", "/admin/sync").ok()?;
        let t = body["types"]
            .as_array()?
            .iter()
            .find(|t| t["objectType"] == "contacts")?
            .clone();
        (t["state"] == "idle" && t["last"]["runId"] != previous).then_some(t)
    })?;
    check(
        rerun["last"]["mode"] == "incremental"
            && rerun["last"]["counts"]["rejected"].as_u64() >= Some(1)
            && rerun["last"]["counts"]["upserted"] == 0,
        || format!("the re-drive's run: {rerun}"),
    )?;
    poll_until("the record dead-lettered again", RUN_DEADLINE, POLL, || {
        let now = letters_for_bad()?;
        // Read by the verify unit (and by the modified walk too when it is still
        // inside the safety overlap): at least one new letter.
        (!now.contains(&redriven) && now.len() >= held.len()).then_some(())
    })?;
    // Unknown types and modes are clear errors.
    let (status, body) = admin_json(fx, "POST", "/admin/sync/deals/run")?;
    check(
        status == 404 && body["error"]["code"] == "sync_type_unknown",
        || format!("unknown type: {status} {body}"),
    )?;
    let (status, body) = admin_json(fx, "POST", "/admin/sync/contacts/run?mode=sometimes")?;
    check(
        status == 400 && body["error"]["code"] == "mode_invalid",
        || format!("bad mode: {status} {body}"),
    )?;

    let last = &after["contacts"]["last"];
    check(
        // The hooked change was read too, and found unchanged (enrichment stored it).
        last["mode"] == "incremental"
            && last["counts"]["upserted"] == 2
            && last["counts"]["deleted"] == 1
            && last["counts"]["merged"] == 1
            && last["counts"]["unchanged"].as_u64() >= Some(1),
        || format!("incremental counts: {last}"),
    )?;
    Ok(())
}

/// Lost unit messages (dropped by `FAULT_INJECTION` before any work, as a consumer that died or
/// a message whose retries ran out) are queued again by the coordinator's alarm once their
/// lease (`SYNC_LEASE_SECS`, 10 s here) ran out: the backfill still ends with every record,
/// each delivered once.
pub(super) fn sync_lost_units_requeued_after_their_lease(_: &Fixture) -> Outcome {
    const N: usize = 500;
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            seed_contacts: N,
            burst: 100_000,
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("SYNC_OBJECT_TYPES", "contacts"),
            ("SYNC_PORTAL_ID", "33"),
            ("SYNC_LEASE_SECS", "10"),
            ("FAULT_INJECTION", "true"),
        ]);
    options.wrangler.config = Some(extra_wrangler_config("wrangler.sync-lease.toml")?);
    let fx = Fixture::start(options)?;
    let result = (|| -> Outcome {
        let r = fx.admin_post("/admin/faults/sync-unit", br#"{"failNext": 3}"#)?;
        check(r.status == 200, || format!("fault: {}", r.status))?;
        let started = Instant::now();
        let mut runs = HashMap::new();
        runs.insert("contacts", start_run(&fx, "contacts", "full")?);
        wait_done(&fx, &runs)?;
        let got = records_of(&sync_batches(&fx, 0)?, "contacts")?;
        let expected = mock_records(&fx, "contacts")?;
        check(
            got.len() == N && expected.keys().all(|k| got.contains_key(k)),
            || format!("{} of {N} contacts delivered", got.len()),
        )?;
        let dropped = fx
            .worker
            .logs_since(0)
            .iter()
            .filter(|l| l.contains("sync_unit_dropped_by_fault"))
            .count();
        let requeued = fx
            .worker
            .logs_since(0)
            .iter()
            .any(|l| l.contains("sync_units_requeued"));
        check(dropped == 3 && requeued, || {
            format!("dropped {dropped}, requeued {requeued}")
        })?;
        eprintln!(
            "sync lease: {N} contacts with 3 lost units in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok(())
    })();
    fx.stop_worker();
    result
}
