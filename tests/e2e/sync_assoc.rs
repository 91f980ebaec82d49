//! The outbound sync with associations (issue 10 §2 "Associations", §6): a backfill of 5,000
//! contacts and 500 companies, each contact associated with one company
//! (`SYNC_ASSOCIATIONS=contacts:companies,companies:contacts`), compared field by field and
//! association by association with the mock; then a restore, a record erased without a trace
//! or webhook, and an association change alone, all found by the next full run.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use hubspot_edge_tests::{Fixture, FixtureOptions};
use hubspot_mock::{MockConfig, WebhookConfig};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::sync::{
    admin_json, hubspot, mapped, mock_list, properties_query, records_of, start_run, sync_batches,
    wait_done,
};
use super::{check, extra_wrangler_config, mock_of, Outcome};

const CONTACTS: usize = 5_000;
const COMPANIES: usize = 500;
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
/// A synced type, its properties → fields, and its associated type.
type SyncedType = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
);

/// Per synced type: HubSpot property → destination field (as MAP says), and the associated
/// type delivered with it.
const TYPES: &[SyncedType] = &[
    (
        "contacts",
        &[
            ("email", "email"),
            ("firstname", "first_name"),
            ("lastname", "last_name"),
            ("lead_score", "score"),
        ],
        "companies",
    ),
    (
        "companies",
        &[("name", "name"), ("domain", "domain")],
        "contacts",
    ),
];

fn start() -> Result<Fixture, Failed> {
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            seed_contacts: CONTACTS,
            seed_companies: COMPANIES,
            seed_associations: true,
            // The test reads the mock's records too.
            burst: 100_000,
            webhook: Some(WebhookConfig {
                secret: hubspot_edge_tests::fixture::CLIENT_SECRET.into(),
                retry_delay: Duration::from_millis(200),
                // Every webhook is lost: the changes below reach the Worker only by the sync.
                max_retries: 0,
                ..WebhookConfig::default()
            }),
            ..MockConfig::default()
        })
        .vars([
            ("ENRICHMENT_MAP", MAP),
            ("SYNC_OBJECT_TYPES", "contacts,companies"),
            ("SYNC_ASSOCIATIONS", "contacts:companies,companies:contacts"),
            ("SYNC_PORTAL_ID", "33"),
            ("SYNC_LAG_SECS", "0"),
        ]);
    options.wrangler.config = Some(extra_wrangler_config("wrangler.sync-assoc.toml")?);
    let fx = Fixture::start(options)?;
    let dead = format!("http://127.0.0.1:{}/", hubspot_edge_tests::free_port()?);
    mock_of(&fx)?.set_webhook_target(&dead);
    Ok(fx)
}

/// Every live record of `object_type` in the mock, as the destination should hold it: id →
/// `{"fields": mapped fields, "associations": {toType: [ids ascending]}}`. Read with the v3
/// list and its `associations=` parameter: not the v4 batch read the Worker uses.
fn mock_state(fx: &Fixture, object_type: &str) -> Result<BTreeMap<String, Value>, Failed> {
    let (_, fields, to) = TYPES
        .iter()
        .find(|(t, _, _)| *t == object_type)
        .ok_or("type")?;
    let query = format!("associations={to}&{}", properties_query(fields));
    let mut out = BTreeMap::new();
    for r in mock_list(fx, object_type, &query)? {
        let mapped = mapped(&r, fields);
        let mut ids: Vec<u64> = r["associations"][*to]["results"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["id"].as_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        ids.sort_unstable();
        ids.dedup();
        let ids: Vec<String> = ids.iter().map(u64::to_string).collect();
        out.insert(
            r["id"].as_str().ok_or("id")?.to_owned(),
            json!({"fields": mapped, "associations": {*to: ids}}),
        );
    }
    Ok(out)
}

/// Checks that `got` (delivered records by id) holds exactly `expected`'s records, as upserts
/// with the same fields and associations.
fn same_records(
    object_type: &str,
    expected: &BTreeMap<String, Value>,
    got: &BTreeMap<String, Value>,
) -> Outcome {
    let missing: Vec<&String> = expected.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<&String> = got.keys().filter(|k| !expected.contains_key(*k)).collect();
    check(missing.is_empty() && extra.is_empty(), || {
        format!(
            "{object_type}: {} missing (first {:?}), {} extra (first {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        )
    })?;
    for (id, want) in expected {
        let r = &got[id];
        let fields_same = want["fields"].as_object().is_some_and(|f| {
            f.iter()
                .all(|(k, v)| r["fields"].get(k).unwrap_or(&Value::Null) == v)
        }) && r["fields"].as_object().map(serde_json::Map::len)
            == want["fields"].as_object().map(serde_json::Map::len);
        check(
            r["op"] == "upsert" && fields_same && r["associations"] == want["associations"],
            || format!("{object_type} {id}: delivered {r}, the mock has {want}"),
        )?;
    }
    Ok(())
}

fn mock_admin(fx: &Fixture, what: &str, body: &Value) -> Result<Value, Failed> {
    hubspot(fx, "POST", &format!("/__mock/{what}"), Some(body))
}

/// Backfill of 5,000 contacts and 500 companies with their associations (contact → company,
/// and back): the destination ends with exactly the mock's records, all mapped fields and the
/// associations equal, each record delivered once, every batch valid against
/// `schema/sync-batch.v1.json`. Then, with every webhook lost: a contact archived (an
/// incremental run delivers `delete`) and restored, a contact erased without a trace, and a
/// contact associated with a second company; the next full runs deliver exactly the restored
/// contact (`upsert`), the erased one (`delete`, `missing`, named in the run report), the
/// re-associated contact and the two companies whose contacts changed (association changes
/// alone), nothing else.
pub(super) fn sync_assoc_backfill_then_restore_and_erase_found(_: &Fixture) -> Outcome {
    let fx = start()?;
    let result = run(&fx).map_err(|e| {
        let logs = fx.worker.logs_since(0);
        let tail: Vec<&str> = logs
            .iter()
            // Not the per-unit timing lines: they would crowd out the runs.
            .filter(|l| {
                (l.contains("error") || l.contains("sync_")) && !l.contains("sync_unit_worked")
            })
            .rev()
            .take(30)
            .map(String::as_str)
            .collect();
        Failed::from(format!(
            "{}\nWorker log (errors and sync lines, newest first):\n{}",
            e.message().unwrap_or("failed"),
            tail.join("\n")
        ))
    });
    fx.stop_worker();
    result
}

fn run(fx: &Fixture) -> Outcome {
    let started = Instant::now();
    let mut runs = HashMap::new();
    for t in ["contacts", "companies"] {
        runs.insert(t, start_run(fx, t, "full")?);
    }
    let status = wait_done(fx, &runs)?;
    let elapsed = started.elapsed();
    let batches = sync_batches(fx, 0)?;
    let mut calls = 0;
    for (t, n) in [("contacts", CONTACTS), ("companies", COMPANIES)] {
        let expected = mock_state(fx, t)?;
        check(expected.len() == n, || {
            format!("the mock has {} {t}", expected.len())
        })?;
        same_records(t, &expected, &records_of(&batches, t)?)?;
        let last = &status[t]["last"];
        check(
            last["counts"]["upserted"] == n && last["counts"]["read"] == n,
            || format!("{t} counts: {last}"),
        )?;
        calls += last["counts"]["hubspotCalls"].as_u64().unwrap_or(0);
    }
    // Every contact has its company, every company its ten contacts.
    let contacts = records_of(&batches, "contacts")?;
    check(
        contacts
            .values()
            .all(|r| r["associations"]["companies"].as_array().map(Vec::len) == Some(1)),
        || "a contact without its one company".into(),
    )?;
    eprintln!(
        "sync with associations: {CONTACTS} contacts + {COMPANIES} companies in {:.1} s, {calls} \
         HubSpot calls, {} batches",
        elapsed.as_secs_f64(),
        batches.len()
    );

    // x archived: the incremental run delivers its deletion (its webhook is lost).
    let ids: Vec<&String> = contacts.keys().collect();
    let (x, y, z) = (ids[10].clone(), ids[20].clone(), ids[30].clone());
    let company_of = |id: &str| -> Result<String, Failed> {
        Ok(contacts[id]["associations"]["companies"][0]
            .as_str()
            .ok_or("company")?
            .to_owned())
    };
    let y_company = company_of(&y)?;
    let z_company = company_of(&z)?;
    hubspot(fx, "DELETE", &format!("/crm/v3/objects/contacts/{x}"), None)?;
    let before = fx.dest.deliveries().len();
    let mut runs = HashMap::new();
    runs.insert("contacts", start_run(fx, "contacts", "incremental")?);
    wait_done(fx, &runs)?;
    let got = records_of(&sync_batches(fx, before)?, "contacts")?;
    check(
        got.len() == 1 && got[&x]["op"] == "delete" && got[&x]["reason"] == "archived",
        || format!("the archive: {got:?}"),
    )?;

    // x restored; y erased (no archived trace, no webhook); z associated with a second
    // company (w), which changes nothing of z's fields.
    let r = mock_admin(fx, "restore", &json!({"objectType": "contacts", "id": x}))?;
    check(r["id"] == x.as_str(), || format!("restore: {r}"))?;
    let r = mock_admin(fx, "erase", &json!({"objectType": "contacts", "id": y}))?;
    check(r["erased"] == true, || format!("erase: {r}"))?;
    let w = records_of(&batches, "companies")?
        .keys()
        .find(|c| **c != z_company && **c != y_company)
        .cloned()
        .ok_or("another company")?;
    hubspot(
        fx,
        "PUT",
        &format!("/crm/v4/objects/contacts/{z}/associations/default/companies/{w}"),
        None,
    )?;
    let before = fx.dest.deliveries().len();
    let started = Instant::now();
    let mut runs = HashMap::new();
    for t in ["contacts", "companies"] {
        runs.insert(t, start_run(fx, t, "full")?);
    }
    let status = wait_done(fx, &runs)?;
    let reconcile = started.elapsed();
    let after = sync_batches(fx, before)?;
    let got = records_of(&after, "contacts")?;
    let mut keys: Vec<&String> = got.keys().collect();
    keys.sort_by_key(|k| k.parse::<u64>().unwrap_or(0));
    check(keys == vec![&x, &y, &z], || {
        format!("the full run delivered contacts {keys:?}, expected [{x}, {y}, {z}]")
    })?;
    let now = mock_state(fx, "contacts")?;
    check(
        got[&x]["op"] == "upsert"
            && got[&x]["fields"] == now[&x]["fields"]
            && got[&x]["associations"] == now[&x]["associations"],
        || format!("the restored contact: {} (mock: {})", got[&x], now[&x]),
    )?;
    check(
        got[&y]["op"] == "delete" && got[&y]["reason"] == "missing",
        || format!("the erased contact: {}", got[&y]),
    )?;
    let mut both = vec![z_company.clone(), w.clone()];
    both.sort_by_key(|k| k.parse::<u64>().unwrap_or(0));
    check(
        got[&z]["op"] == "upsert"
            && got[&z]["fields"] == contacts[&z]["fields"]
            && got[&z]["associations"]["companies"] == json!(both),
        || format!("the re-associated contact: {}", got[&z]),
    )?;
    let last = &status["contacts"]["last"];
    check(
        last["missingFound"] == 1
            && last["missingIds"] == json!([y])
            && last["counts"]["deleted"] == 1
            && last["counts"]["upserted"] == 2,
        || format!("the reconcile's report: {last}"),
    )?;
    // Companies: y's company lost a contact, w gained one; nothing else changed.
    let companies = records_of(&after, "companies")?;
    let mut keys: Vec<&String> = companies.keys().collect();
    keys.sort_by_key(|k| k.parse::<u64>().unwrap_or(0));
    let mut want = vec![&y_company, &w];
    want.sort_by_key(|k| k.parse::<u64>().unwrap_or(0));
    check(keys == want, || {
        format!("the full run delivered companies {keys:?}, expected {want:?}")
    })?;
    let mock_companies = mock_state(fx, "companies")?;
    for c in [&y_company, &w] {
        check(
            companies[c]["associations"] == mock_companies[c]["associations"],
            || {
                format!(
                    "company {c}: {} (mock: {})",
                    companies[c], mock_companies[c]
                )
            },
        )?;
    }
    check(
        !companies[&y_company]["associations"]["contacts"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i == y.as_str()))
            && companies[&w]["associations"]["contacts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|i| i == z.as_str())),
        || "the companies' contacts".into(),
    )?;
    // /admin/sync says what the reconcile found.
    let (_, body) = admin_json(fx, "GET", "/admin/sync")?;
    check(body["types"][0]["last"]["missingIds"] == json!([y]), || {
        format!("/admin/sync: {body}")
    })?;
    eprintln!(
        "sync reconcile with associations: {:.1} s for both types",
        reconcile.as_secs_f64()
    );
    Ok(())
}
