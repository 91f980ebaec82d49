//! Sync runs that are disturbed (issue 10 §6): changes made in HubSpot while a full run is
//! going, and a Worker killed in the middle of a backfill and started again on the same state
//! directory. Each scenario starts a Worker and a mock HubSpot of its own.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hubspot_edge_tests::{
    poll_until, Behavior, Destination, Fixture, FixtureOptions, WranglerDev, WranglerOptions,
};
use hubspot_mock::{Clock, MockConfig, MockHubSpot};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::sync::{admin_json, hubspot, mapped, mock_list, properties_query};
use super::{check, extra_wrangler_config, Outcome};

const MAP: &str = r#"{"objects":{
  "contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"firstname","field":"first_name"},
    {"hubspot":"lastname","field":"last_name"}]}
}}"#;
/// HubSpot property → destination field (as MAP says).
const FIELDS: &[(&str, &str)] = &[
    ("email", "email"),
    ("firstname", "first_name"),
    ("lastname", "last_name"),
];
const RUN_DEADLINE: Duration = Duration::from_secs(180);
const POLL: Duration = Duration::from_millis(100);

/// The wall clock, or a fixed instant while frozen: HubSpot stamps a bulk update's records with
/// one last-modified date; the mock stamps each batch of up to 100 with its own unless frozen.
#[derive(Debug, Default)]
struct FreezableClock {
    frozen: Mutex<Option<u64>>,
}

impl FreezableClock {
    fn freeze(&self, at: Option<u64>) {
        *self
            .frozen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
    }
}

impl Clock for FreezableClock {
    fn now_ms(&self) -> u64 {
        self.frozen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .unwrap_or_else(hubspot_edge_tests::now_ms)
    }
}

/// A sync Worker (contacts only) against `mock`, forwarding to a fresh destination; state in
/// `persist` when given (a directory the caller owns, for a restart).
fn sync_worker(
    mock: MockHubSpot,
    config: &str,
    extra: &[(&str, &str)],
    persist: Option<std::path::PathBuf>,
) -> Result<Fixture, Failed> {
    let dest = Destination::start(hubspot_edge_tests::fixture::FORWARD_SECRET)?;
    let defaults = FixtureOptions::default();
    let mut wrangler = WranglerOptions {
        config: Some(extra_wrangler_config(config)?),
        persist_to: persist,
        ..WranglerOptions::default()
    }
    .vars([
        ("HUBSPOT_CLIENT_SECRET", defaults.client_secret.as_str()),
        ("FORWARD_URL", dest.url().as_str()),
        ("FORWARD_SECRET", defaults.forward_secret.as_str()),
        ("ADMIN_TOKEN", defaults.admin_token.as_str()),
        ("HUBSPOT_API_BASE_URL", mock.base_url().as_str()),
        ("HUBSPOT_ACCESS_TOKEN", mock.token()),
        ("ENRICHMENT_MAP", MAP),
        ("SYNC_OBJECT_TYPES", "contacts"),
        ("SYNC_PORTAL_ID", "33"),
        // The mock's search is consistent at once: read changes up to the run's start.
        ("SYNC_LAG_SECS", "0"),
    ]);
    wrangler = wrangler.vars(extra.iter().copied());
    let vars = wrangler.vars.clone();
    let worker = WranglerDev::start(wrangler)?;
    Ok(Fixture {
        worker,
        dest,
        hubspot: Some(mock),
        client_secret: defaults.client_secret,
        forward_secret: defaults.forward_secret,
        admin_token: defaults.admin_token,
        vars,
    })
}

/// Every live contact in the mock, mapped as MAP maps it: id → fields.
fn mock_records(fx: &Fixture) -> Result<BTreeMap<u64, Value>, Failed> {
    let mut out = BTreeMap::new();
    for r in mock_list(fx, "contacts", &properties_query(FIELDS))? {
        out.insert(r["id"].as_str().ok_or("id")?.parse()?, mapped(&r, FIELDS));
    }
    Ok(out)
}

/// One record as delivered: its batch (`webhook-id`), change id, op and fields, in arrival
/// order.
#[derive(Debug, Clone)]
struct Arrived {
    webhook_id: String,
    change_id: String,
    op: String,
    fields: Value,
}

/// Every record of the sync batches the destination accepted (2xx, verified signature,
/// `webhook-id` = the body's id), by id, in arrival order.
fn arrived(fx: &Fixture) -> Result<BTreeMap<u64, Vec<Arrived>>, Failed> {
    let mut out: BTreeMap<u64, Vec<Arrived>> = BTreeMap::new();
    fx.dest.with_deliveries(|ds| -> Outcome {
        for d in ds {
            if d.body["type"] != "hubspot-edge.sync.batch" || !d.is_ok() {
                continue;
            }
            check(d.verified, || {
                format!("unverified sync batch {:?}", d.webhook_id)
            })?;
            let wid = d.webhook_id.clone().unwrap_or_default();
            check(d.body["id"] == wid.as_str(), || {
                format!("webhook-id {wid} is not the body's id")
            })?;
            for r in d.body["records"].as_array().ok_or("records")? {
                out.entry(r["id"].as_str().ok_or("id")?.parse()?)
                    .or_default()
                    .push(Arrived {
                        webhook_id: wid.clone(),
                        change_id: r["changeId"].as_str().unwrap_or_default().to_owned(),
                        op: r["op"].as_str().unwrap_or_default().to_owned(),
                        fields: r["fields"].clone(),
                    });
            }
        }
        Ok(())
    })?;
    Ok(out)
}

/// Distinct sync batches accepted so far (by `webhook-id`) and the records in them.
fn accepted_batches(fx: &Fixture) -> (usize, usize) {
    fx.dest.with_deliveries(|ds| {
        let mut ids = HashSet::new();
        let mut records = 0;
        for d in ds {
            if d.body["type"] == "hubspot-edge.sync.batch" && d.is_ok() {
                if let Some(w) = &d.webhook_id {
                    if ids.insert(w.clone()) {
                        records += d.body["records"].as_array().map_or(0, Vec::len);
                    }
                }
            }
        }
        (ids.len(), records)
    })
}

fn start_run(fx: &Fixture, mode: &str) -> Result<String, Failed> {
    let (status, body) = admin_json(fx, "POST", &format!("/admin/sync/contacts/run?mode={mode}"))?;
    check(status == 202 && body["started"] == true, || {
        format!("start {mode}: {status} {body}")
    })?;
    Ok(body["runId"].as_str().ok_or("runId")?.to_owned())
}

/// The contacts type's entry of `GET /admin/sync`.
fn status(fx: &Fixture) -> Result<Value, Failed> {
    let (code, body) = admin_json(fx, "GET", "/admin/sync")?;
    check(code == 200, || format!("GET /admin/sync: {code} {body}"))?;
    Ok(body["types"][0].clone())
}

/// Waits until run `id` is the last finished one; its report.
fn wait_done(fx: &Fixture, id: &str, deadline: Duration) -> Result<Value, Failed> {
    poll_until(&format!("sync run {id} finished"), deadline, POLL, || {
        let t = status(fx).ok()?;
        (t["state"] == "idle" && t["last"]["runId"] == id).then(|| t["last"].clone())
    })
    .map_err(|e| {
        let now = status(fx).map(|s| s.to_string()).unwrap_or_default();
        let tail: Vec<String> = fx
            .worker
            .logs_since(0)
            .into_iter()
            .filter(|l| l.contains("error") || l.contains("sync_"))
            .rev()
            .take(15)
            .collect();
        format!(
            "{e}\n/admin/sync: {now}\nWorker log (newest first):\n{}",
            tail.join("\n")
        )
        .into()
    })
}

/// Fails unless the destination's latest delivery of each record equals the mock's record.
fn destination_equals_mock(
    fx: &Fixture,
    got: &BTreeMap<u64, Vec<Arrived>>,
) -> Result<usize, Failed> {
    let expected = mock_records(fx)?;
    let missing: Vec<&u64> = expected.keys().filter(|k| !got.contains_key(k)).collect();
    let extra: Vec<&u64> = got.keys().filter(|k| !expected.contains_key(k)).collect();
    check(missing.is_empty() && extra.is_empty(), || {
        format!(
            "{} missing (first {:?}), {} extra (first {:?})",
            missing.len(),
            missing.first(),
            extra.len(),
            extra.first()
        )
    })?;
    for (id, fields) in &expected {
        let last = got[id].last().ok_or("no delivery")?;
        let same = fields.as_object().is_some_and(|f| {
            f.iter()
                .all(|(k, v)| last.fields.get(k).unwrap_or(&Value::Null) == v)
        });
        check(last.op == "upsert" && same, || {
            format!(
                "contact {id}: last delivered {} {}, the mock has {fields}",
                last.op, last.fields
            )
        })?;
    }
    Ok(expected.len())
}

/// Changes made in HubSpot while a full run is going are all delivered by the next incremental
/// run, each once. The full run (10,000 contacts at the Worker's own pacing for a Free-tier
/// app, 90 per 10 s: several seconds) is running while the test: updates 300 contacts spread
/// over the whole id space in three batch updates under one frozen clock (300 records sharing
/// one last-modified date, more than a 200-record search page), then 20 more one by one, and
/// creates 5. The test checks the run was still going after the last change (else it proves
/// nothing and fails). After the full run and one incremental run: the destination's latest
/// record of every contact equals the mock's; no change id arrives twice; no contact arrives
/// twice with the same fields (a record re-delivered unchanged would be a double); every
/// changed contact's latest delivery carries its new name.
pub(super) fn sync_changes_during_a_full_run_delivered_by_the_next_incremental(
    _: &Fixture,
) -> Outcome {
    const N: usize = 10_000;
    let clock = Arc::new(FreezableClock::default());
    let mock = MockHubSpot::start_with_clock(
        MockConfig {
            seed_contacts: N,
            burst: 100_000,
            ..MockConfig::default()
        },
        Arc::clone(&clock) as Arc<dyn Clock>,
    )?;
    let fx = sync_worker(mock, "wrangler.sync-during.toml", &[], None)?;
    let result = changes_during_a_full_run(&fx, &clock, N);
    fx.stop_worker();
    result
}

fn changes_during_a_full_run(fx: &Fixture, clock: &FreezableClock, n: usize) -> Outcome {
    let started = Instant::now();
    let full = start_run(fx, "full")?;
    // Some of the run delivered first: then changes land both in ranges already read and in
    // ranges still to read.
    poll_until("the full run's first batches", RUN_DEADLINE, POLL, || {
        (accepted_batches(fx).0 >= 3).then_some(())
    })?;
    let n = u64::try_from(n)?;
    let mut changed: HashMap<u64, String> = HashMap::new();
    // 300 contacts with one last-modified date.
    let bulk: Vec<u64> = (0..300).map(|i| 1 + (i * 33) % n).collect();
    clock.freeze(Some(hubspot_edge_tests::now_ms()));
    let frozen = (|| -> Outcome {
        for chunk in bulk.chunks(100) {
            let inputs: Vec<Value> = chunk
                .iter()
                .map(|id| json!({"id": id.to_string(), "properties": {"firstname": format!("Bulk{id}")}}))
                .collect();
            hubspot(
                fx,
                "POST",
                "/crm/v3/objects/contacts/batch/update",
                Some(&json!({ "inputs": inputs })),
            )?;
        }
        Ok(())
    })();
    clock.freeze(None);
    frozen?;
    for id in &bulk {
        changed.insert(*id, format!("Bulk{id}"));
    }
    for i in 0..20u64 {
        let id = 17 + i * (n / 20);
        let name = format!("Single{id}");
        hubspot(
            fx,
            "PATCH",
            &format!("/crm/v3/objects/contacts/{id}"),
            Some(&json!({"properties": {"lastname": name}})),
        )?;
        changed.insert(id, name);
    }
    let mut created = Vec::new();
    for i in 0..5 {
        let r = hubspot(
            fx,
            "POST",
            "/crm/v3/objects/contacts",
            Some(
                &json!({"properties": {"email": format!("during{i}@example.com"), "firstname": "During"}}),
            ),
        )?;
        created.push(r["id"].as_str().ok_or("id")?.parse::<u64>()?);
    }
    let during = status(fx)?;
    check(
        during["state"] == "running" && during["current"]["runId"] == full.as_str(),
        || {
            format!(
                "the full run was over before the changes were made ({:.1} s): the scenario \
                 needs a longer run. {during}",
                started.elapsed().as_secs_f64()
            )
        },
    )?;
    let full_report = wait_done(fx, &full, RUN_DEADLINE)?;
    let incremental = start_run(fx, "incremental")?;
    let inc_report = wait_done(fx, &incremental, RUN_DEADLINE)?;

    let got = arrived(fx)?;
    let total = destination_equals_mock(fx, &got)?;
    check(total == usize::try_from(n)? + created.len(), || {
        format!("the mock has {total} contacts")
    })?;
    let mut change_ids = HashSet::new();
    for (id, records) in &got {
        let mut contents = HashSet::new();
        for r in records {
            check(change_ids.insert(r.change_id.clone()), || {
                format!("contact {id}: change {} delivered twice", r.change_id)
            })?;
            check(contents.insert(r.fields.to_string()), || {
                format!(
                    "contact {id} delivered twice with the same fields {}",
                    r.fields
                )
            })?;
        }
    }
    for (id, name) in &changed {
        let last = got[id].last().ok_or("no delivery")?;
        check(
            last.fields["first_name"] == name.as_str() || last.fields["last_name"] == name.as_str(),
            || {
                format!(
                    "contact {id}: last delivered {}, expected {name}",
                    last.fields
                )
            },
        )?;
    }
    for id in &created {
        check(got[id].len() == 1, || {
            format!("created contact {id} delivered {} times", got[id].len())
        })?;
    }
    // The incremental run read every change (the bulk's 300 sharing one date included) and
    // delivered those the full run had not already delivered with the new values.
    let inc_read = inc_report["counts"]["read"].as_u64().unwrap_or(0);
    let changes = changed.len() + created.len();
    let inc_upserted = inc_report["counts"]["upserted"].as_u64().unwrap_or(0);
    check(
        inc_read >= u64::try_from(changes)? && inc_upserted > 0,
        || format!("the incremental run read {inc_read} records: {inc_report}"),
    )?;
    let twice = got.values().filter(|r| r.len() == 2).count();
    eprintln!(
        "sync changes during a run: {n} contacts, {changes} contacts changed or created during \
         the full run ({} upserted), then the incremental run read {inc_read}, upserted \
         {inc_upserted}; {twice} contacts delivered twice (old then new values); {:.1} s",
        full_report["counts"]["upserted"],
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A backfill interrupted by killing the Worker (wrangler dev and workerd, SIGTERM then SIGKILL)
/// resumes when a Worker starts again on the same state directory (`--persist-to`): the same
/// run finishes (its lost queue messages are queued again by the coordinator's lease, 10 s
/// here), and the destination ends equal to the mock.
///
/// What is asserted about duplicates: the destination is slow (150 ms per answer), so the kill
/// catches batches it received but whose 2xx the Worker never saw: they were not committed and
/// are sent again after the restart, as the documented at-least-once case, with the SAME
/// `webhook-id` and the same records. So: every record of the mock is in exactly one distinct
/// `webhook-id` (batches deduplicated by id, a record is delivered once), two deliveries with
/// one `webhook-id` carry the same records, and each record's deliveries all share one change
/// id. Re-sends are counted and printed.
pub(super) fn sync_backfill_killed_mid_run_resumes_after_restart(_: &Fixture) -> Outcome {
    const N: usize = 4_000;
    let state = std::env::temp_dir().join(format!(
        "hubspot-edge-e2e-sync-restart-{}",
        hubspot_edge_tests::unique_id()
    ));
    std::fs::create_dir_all(&state)?;
    let result = (|| -> Outcome {
        let mock = MockHubSpot::start(MockConfig {
            seed_contacts: N,
            burst: 100_000,
            ..MockConfig::default()
        })?;
        let vars = [("SYNC_LEASE_SECS", "10")];
        let mut fx = sync_worker(
            mock,
            "wrangler.sync-restart.toml",
            &vars,
            Some(state.clone()),
        )?;
        let r = killed_and_restarted(&mut fx, N, &state);
        fx.stop_worker();
        r
    })();
    let _ = std::fs::remove_dir_all(&state);
    result
}

fn killed_and_restarted(fx: &mut Fixture, n: usize, state: &std::path::Path) -> Outcome {
    let started = Instant::now();
    fx.dest
        .set_default(Behavior::Delayed(Duration::from_millis(150), 200));
    let run = start_run(fx, "full")?;
    poll_until(
        "a few batches delivered",
        RUN_DEADLINE,
        Duration::from_millis(20),
        || (accepted_batches(fx).0 >= 4).then_some(()),
    )?;
    fx.stop_worker();
    let (batches_before, records_before) = accepted_batches(fx);
    check(records_before < n, || {
        format!("the backfill was over ({records_before} records) before the kill")
    })?;
    fx.dest.set_default(Behavior::Status(200));

    // The same Worker again, on the same state directory.
    let mut options = WranglerOptions {
        config: Some(extra_wrangler_config("wrangler.sync-restart.toml")?),
        persist_to: Some(state.to_path_buf()),
        ..WranglerOptions::default()
    };
    options.vars.clone_from(&fx.vars);
    fx.worker = WranglerDev::start(options)?;
    let during = status(fx)?;
    check(
        during["state"] == "running" && during["current"]["runId"] == run.as_str(),
        || format!("after the restart, the run is not the one killed: {during}"),
    )?;
    let report = wait_done(fx, &run, RUN_DEADLINE)?;

    let got = arrived(fx)?;
    destination_equals_mock(fx, &got)?;
    // Batches by webhook-id: one content each.
    let mut bodies: HashMap<String, String> = HashMap::new();
    let mut resent = 0;
    fx.dest.with_deliveries(|ds| -> Outcome {
        for d in ds {
            if d.body["type"] != "hubspot-edge.sync.batch" || !d.is_ok() {
                continue;
            }
            let wid = d.webhook_id.clone().unwrap_or_default();
            let records = d.body["records"].to_string();
            match bodies.get(&wid) {
                Some(before) => {
                    resent += 1;
                    check(*before == records, || {
                        format!("batch {wid} re-sent with other records")
                    })?;
                }
                None => {
                    bodies.insert(wid, records);
                }
            }
        }
        Ok(())
    })?;
    for (id, records) in &got {
        let batches: HashSet<&str> = records.iter().map(|r| r.webhook_id.as_str()).collect();
        let changes: HashSet<&str> = records.iter().map(|r| r.change_id.as_str()).collect();
        check(batches.len() == 1 && changes.len() == 1, || {
            format!(
                "contact {id} delivered in {} batches with {} change ids: not a re-send of \
                 one batch",
                batches.len(),
                changes.len()
            )
        })?;
    }
    eprintln!(
        "sync restart: {n} contacts, killed after {batches_before} batches ({records_before} \
         records), resumed: run {} upserted {}, {resent} batches re-sent with their webhook-id; \
         {:.1} s",
        report["runId"],
        report["counts"]["upserted"],
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
