//! The dead-letter store end to end: a store that fails for a while loses nothing (backoff in
//! the logs), and "re-drive all" over 1,200 letters of mixed kinds is resumable, bounded,
//! delivers every re-drivable letter once and leaves the rest in place. Each scenario runs a
//! Worker of its own, so the store holds only its letters.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use hubspot_edge_tests::{
    poll_until, poll_until_ok, unique_id, Behavior, Fixture, FixtureOptions, HubSpotEvent,
};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::{check, extra_wrangler_config, Outcome};

const POLL: Duration = Duration::from_millis(250);
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A Worker of its own (config `target/e2e/{config}`), with `vars`.
fn own_worker(config: &str, vars: &[(&str, &str)]) -> Result<Fixture, Failed> {
    let mut options = FixtureOptions::default().vars(vars.iter().copied());
    options.wrangler.config = Some(extra_wrangler_config(config)?);
    Ok(Fixture::start(options)?)
}

fn admin(
    fx: &Fixture,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<(u16, Value), Failed> {
    let body = body.map(Value::to_string);
    let r = fx.admin_request(
        method,
        path,
        body.as_deref().map(str::as_bytes),
        ADMIN_TIMEOUT,
    )?;
    let json = if r.body.is_empty() {
        Value::Null
    } else {
        r.json()?
    };
    Ok((r.status, json))
}

/// `base` (which has a query already) with `&reason=` and `&cursor=` when given.
fn with_query(base: &str, reason: Option<&str>, cursor: Option<&str>) -> String {
    let mut path = base.to_owned();
    if let Some(r) = reason {
        path.push_str(&format!("&reason={r}"));
    }
    if let Some(c) = cursor {
        path.push_str(&format!("&cursor={}", urlencode(c)));
    }
    path
}

/// Every stored letter's list entry (following the cursor), optionally for one reason.
fn list_all(fx: &Fixture, reason: Option<&str>) -> Result<Vec<Value>, Failed> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = with_query("/admin/dead-letters?limit=1000", reason, cursor.as_deref());
        let (status, page) = admin(fx, "GET", &path, None)?;
        check(status == 200, || format!("list: {status} {page}"))?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(items),
        }
    }
}

/// Percent-encodes everything but unreserved characters (KV cursors may hold `+`, `/`, `=`).
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn failed_text(f: Failed) -> String {
    f.message().unwrap_or("failed").to_owned()
}

/// The object id of a stored letter's payload (an event's `objectId`).
fn letter_object(fx: &Fixture, id: &str) -> Result<Option<u64>, Failed> {
    let (status, letter) = admin(fx, "GET", &format!("/admin/dead-letters/{id}"), None)?;
    check(status == 200, || format!("get {id}: {status} {letter}"))?;
    Ok(letter["payload"]["objectId"].as_u64())
}

/// The Worker's JSON log lines with this `message`.
fn log_lines(fx: &Fixture, msg: &str) -> Vec<Value> {
    fx.worker
        .json_logs()
        .into_iter()
        .filter(|l| l["message"] == msg)
        .collect()
}

/// Point 2: the store fails for a while, then recovers. With N store writes failing on
/// purpose, every dead letter still ends up listed (once, under one id), the failures are
/// logged with a doubling delay, and each retry came no sooner than its delay.
pub(crate) fn dead_letter_store_failing_then_recovering_loses_nothing(main: &Fixture) -> Outcome {
    // The fault endpoint does not exist unless FAULT_INJECTION=true (the shared Worker).
    let (status, _) = admin(
        main,
        "POST",
        "/admin/faults/dead-letter-store",
        Some(&json!({ "failNext": 1 })),
    )?;
    check(status == 404, || {
        format!("fault endpoint without FAULT_INJECTION: {status}")
    })?;

    let fx = own_worker(
        "wrangler.deadletters-faults.toml",
        &[("FAULT_INJECTION", "true")],
    )?;
    const FAILURES: u64 = 6;
    let (status, body) = admin(
        &fx,
        "POST",
        "/admin/faults/dead-letter-store",
        Some(&json!({ "failNext": FAILURES })),
    )?;
    check(status == 200, || format!("inject: {status} {body}"))?;

    // Three events the destination refuses (400): three dead letters.
    let ids: Vec<u64> = (0..3).map(|_| unique_id()).collect();
    for &id in &ids {
        fx.dest.script(id, vec![Behavior::Status(400)]);
    }
    let events: Vec<HubSpotEvent> = ids
        .iter()
        .map(|&id| HubSpotEvent::property_change("contact", id, "firstname", "x"))
        .collect();
    fx.send_events(&events)?.expect_status(200)?;

    let letters = poll_until_ok(
        "all three dead letters listed",
        Duration::from_secs(180),
        Duration::from_secs(1),
        || -> Result<Option<Vec<Value>>, String> {
            let items = list_all(&fx, Some("destination_rejected")).map_err(failed_text)?;
            Ok((items.len() >= ids.len()).then_some(items))
        },
    )?;
    check(letters.len() == ids.len(), || {
        format!(
            "{} letters for {} events: {letters:?}",
            letters.len(),
            ids.len()
        )
    })?;
    let mut objects = BTreeSet::new();
    for item in &letters {
        let id = item["id"].as_str().unwrap_or_default();
        objects.extend(letter_object(&fx, id)?);
    }
    check(objects == ids.iter().copied().collect(), || {
        format!("letters hold objects {objects:?}, expected {ids:?}")
    })?;

    // The failures, as logged: all N injected ones, and each letter's delays double.
    let failed = log_lines(&fx, "dead_letter_store_failed");
    check(
        failed.len() as u64 == FAILURES && failed.iter().all(|l| l["injected"] == true),
        || {
            format!(
                "{} store failures logged, expected {FAILURES}: {failed:?}",
                failed.len()
            )
        },
    )?;
    let stored = log_lines(&fx, "dead_letter_stored");
    let ts = |l: &Value| chrono_ms(l["timestamp"].as_str().unwrap_or_default());
    let mut by_letter: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for l in failed.iter().chain(stored.iter()) {
        by_letter
            .entry(l["dead_letter_id"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(l);
    }
    for (letter, mut lines) in by_letter {
        lines.sort_by_key(|l| l["store_attempt"].as_u64());
        let attempts: Vec<u64> = lines
            .iter()
            .filter_map(|l| l["store_attempt"].as_u64())
            .collect();
        check(
            attempts == (1..=attempts.len() as u64).collect::<Vec<_>>()
                && lines
                    .last()
                    .is_some_and(|l| l["message"] == "dead_letter_stored"),
            || format!("letter {letter}: attempts {attempts:?}, lines {lines:?}"),
        )?;
        for pair in lines.windows(2) {
            let (fail, next) = (pair[0], pair[1]);
            let n = fail["store_attempt"].as_u64().unwrap_or(0);
            let delay = fail["delay_secs"].as_u64().unwrap_or(0);
            check(delay == 2u64 << (n - 1).min(20), || {
                format!(
                    "letter {letter}: attempt {n} backed off {delay} s, expected {}",
                    2u64 << (n - 1)
                )
            })?;
            let waited = ts(next).saturating_sub(ts(fail));
            // The queue's delay is in whole seconds; allow for rounding of the log stamps.
            check(waited + 500 >= delay * 1000, || {
                format!(
                    "letter {letter}: attempt {} came {waited} ms after a {delay} s backoff",
                    n + 1
                )
            })?;
        }
    }
    eprintln!(
        "dead letters: {} store failures, backoffs {:?} s",
        failed.len(),
        failed
            .iter()
            .map(|l| (
                l["store_attempt"].as_u64().unwrap_or(0),
                l["delay_secs"].as_u64().unwrap_or(0)
            ))
            .collect::<Vec<_>>()
    );
    // The stored letters appear once each in the store (the same id on every attempt).
    let distinct: BTreeSet<&str> = stored
        .iter()
        .filter_map(|l| l["dead_letter_id"].as_str())
        .collect();
    check(distinct.len() == ids.len(), || {
        format!("stored lines for {} letters: {stored:?}", distinct.len())
    })
}

/// Milliseconds of an ISO 8601 `…THH:MM:SS.mmmZ` stamp within its day (enough to compare two
/// stamps a few seconds apart on the same day; the test runs for minutes).
fn chrono_ms(ts: &str) -> u64 {
    let time = ts
        .split('T')
        .nth(1)
        .unwrap_or_default()
        .trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let m: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let s: f64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0.0);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s_ms = (s * 1000.0).round() as u64;
    (h * 3600 + m * 60) * 1000 + s_ms
}

/// Point 3: 1,200 letters of mixed kinds (1,000 events a destination refused with 400, 100
/// genuine but malformed webhook bodies, 100 elements that are not events). "Re-drive all",
/// followed cursor by cursor, makes bounded calls, delivers every re-drivable letter exactly
/// once (by `webhook-id`), reports the 200 others as skipped and leaves them in place; the store
/// ends with only those. Also: the reason filter, a bad cursor, and deleting one letter.
pub(crate) fn redrive_all_1200_mixed_letters_resumable_exactly_once(_: &Fixture) -> Outcome {
    let fx = own_worker("wrangler.deadletters-redrive.toml", &[])?;

    // 1,000 events the destination refuses once (400: dead-lettered at once), then accepts.
    let ids: Vec<u64> = (0..1000).map(|_| unique_id()).collect();
    for &id in &ids {
        fx.dest.script(id, vec![Behavior::Status(400)]);
    }
    for chunk in ids.chunks(100) {
        let events: Vec<HubSpotEvent> = chunk
            .iter()
            .map(|&id| HubSpotEvent::property_change("contact", id, "lifecyclestage", "lead"))
            .collect();
        let r = fx.send_events(&events)?;
        check(r.status == 200 && r.json()?["queued"] == 100, || r.text())?;
    }
    // 100 genuine but malformed bodies: stored whole by the ingress, never re-drivable.
    let mut unredrivable = BTreeSet::new();
    for i in 0..100 {
        let r = fx
            .hubspot_request(format!(r#"{{"not":"a batch","n":{i}}}"#).into_bytes())
            .send()?;
        let json = r.json()?;
        let id = json["deadLetterId"]
            .as_str()
            .ok_or_else(|| format!("{json}"))?;
        unredrivable.insert(id.to_owned());
    }
    // 100 elements that are not events (no portalId).
    let invalid: Vec<HubSpotEvent> = (0..100)
        .map(|_| HubSpotEvent::creation("contact", unique_id()).remove("portalId"))
        .collect();
    let r = fx.send_events(&invalid)?;
    check(r.json()?["deadLettered"] == 100, || r.text())?;

    let all = poll_until_ok(
        "1,200 dead letters stored",
        Duration::from_secs(240),
        Duration::from_secs(1),
        || -> Result<Option<Vec<Value>>, String> {
            let items = list_all(&fx, None).map_err(failed_text)?;
            Ok((items.len() >= 1200).then_some(items))
        },
    )?;
    check(all.len() == 1200, || {
        format!("{} letters stored", all.len())
    })?;
    for item in &all {
        if item["reason"] == "event_missing_field" {
            unredrivable.insert(item["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    check(unredrivable.len() == 200, || {
        format!("{} unredrivable letters", unredrivable.len())
    })?;
    let malformed = list_all(&fx, Some("batch_malformed"))?;
    check(
        malformed.len() == 100 && malformed.iter().all(|i| i["kind"] == "batch"),
        || format!("reason filter on the list: {} items", malformed.len()),
    )?;

    let (status, body) = admin(
        &fx,
        "POST",
        "/admin/dead-letters/redrive?cursor=bm9wZQ",
        None,
    )?;
    check(
        status == 400 && body["error"]["code"] == "cursor_invalid",
        || format!("bad cursor: {status} {body}"),
    )?;

    // The reason filter on re-drive: only the malformed bodies, all skipped, none re-driven.
    let filtered = redrive_until_done(&fx, Some("batch_malformed"))?;
    check(
        filtered.redriven == 0 && filtered.skipped.len() == 100,
        || format!("redrive ?reason=batch_malformed: {filtered:?}"),
    )?;

    // Re-drive all, cursor by cursor.
    let started = Instant::now();
    let run = redrive_until_done(&fx, None)?;
    eprintln!(
        "re-drive all: {} letters re-driven, {} skipped in {} calls (≤ {} per call) in {:.1?}",
        run.redriven,
        run.skipped.len(),
        run.calls,
        run.max_handled_per_call,
        started.elapsed()
    );
    check(run.redriven == 1000, || {
        format!("redriven {}", run.redriven)
    })?;
    check(run.calls >= 12, || {
        format!("only {} calls for 1,200 letters", run.calls)
    })?;
    check(run.max_handled_per_call <= 100, || {
        format!("{} letters handled in one call", run.max_handled_per_call)
    })?;
    let skipped: BTreeSet<String> = run.skipped.keys().cloned().collect();
    check(
        skipped == unredrivable && run.skipped.values().all(|c| c == "still_invalid"),
        || {
            format!(
                "skipped {} ({:?}…), expected the 200 unredrivable",
                skipped.len(),
                run.skipped.iter().next()
            )
        },
    )?;

    // Every re-driven event arrives, once per webhook-id.
    fx.dest.wait_for_ok(&ids, Duration::from_secs(180))?;
    // Wait until the pipeline is quiet (no delivery for 3 s), then count.
    let mut last = (fx.dest.deliveries().len(), Instant::now());
    poll_until(
        "no more deliveries for 3 s",
        Duration::from_secs(60),
        POLL,
        || {
            let n = fx.dest.deliveries().len();
            if n != last.0 {
                last = (n, Instant::now());
            }
            (last.1.elapsed() >= Duration::from_secs(3)).then_some(())
        },
    )?;
    let counts = fx.dest.count_ok_by_webhook_id();
    let mut per_object: HashMap<u64, usize> = HashMap::new();
    for d in fx.dest.deliveries().iter().filter(|d| d.is_ok()) {
        *per_object.entry(d.object_id.unwrap_or(0)).or_default() += 1;
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    check(twice.is_empty(), || {
        format!("delivered more than once: {twice:?}")
    })?;
    check(ids.iter().all(|id| per_object.get(id) == Some(&1)), || {
        "an object was not delivered exactly once".into()
    })?;

    // The store ends with only the unredrivable letters.
    let left: BTreeSet<String> = list_all(&fx, None)?
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    check(left == unredrivable, || {
        format!("{} letters left, expected the 200 unredrivable", left.len())
    })?;

    // DELETE one: gone, and a second DELETE is a 404.
    let victim = unredrivable.iter().next().cloned().unwrap_or_default();
    let (status, body) = admin(
        &fx,
        "DELETE",
        &format!("/admin/dead-letters/{victim}"),
        None,
    )?;
    check(status == 200 && body["deleted"] == victim.as_str(), || {
        format!("delete: {status} {body}")
    })?;
    let (status, _) = admin(&fx, "GET", &format!("/admin/dead-letters/{victim}"), None)?;
    check(status == 404, || {
        format!("deleted letter still readable: {status}")
    })?;
    let (status, body) = admin(
        &fx,
        "DELETE",
        &format!("/admin/dead-letters/{victim}"),
        None,
    )?;
    check(
        status == 404 && body["error"]["code"] == "dead_letter_not_found",
        || format!("second delete: {status} {body}"),
    )?;
    let left = list_all(&fx, None)?.len();
    check(left == 199, || format!("{left} letters after one delete"))
}

#[derive(Debug, Default)]
struct RedriveRun {
    calls: usize,
    redriven: u64,
    /// Letter id → skip code; each reported once.
    skipped: BTreeMap<String, String>,
    max_handled_per_call: u64,
}

/// Calls "re-drive all" from the start and then with each returned cursor until it is null.
fn redrive_until_done(fx: &Fixture, reason: Option<&str>) -> Result<RedriveRun, Failed> {
    let mut run = RedriveRun::default();
    let mut cursor: Option<String> = None;
    loop {
        let path = with_query("/admin/dead-letters/redrive?x=1", reason, cursor.as_deref());
        let (status, body) = admin(fx, "POST", &path, None)?;
        check(status == 202, || format!("redrive-all: {status} {body}"))?;
        run.calls += 1;
        check(run.calls <= 100, || "re-drive all does not end".into())?;
        let redriven = body["redriven"].as_u64().unwrap_or(0);
        let skipped = body["skipped"].as_array().cloned().unwrap_or_default();
        run.redriven += redriven;
        run.max_handled_per_call = run
            .max_handled_per_call
            .max(redriven + skipped.len() as u64);
        for s in skipped {
            let id = s["id"].as_str().unwrap_or_default().to_owned();
            let code = s["code"].as_str().unwrap_or_default().to_owned();
            check(run.skipped.insert(id.clone(), code).is_none(), || {
                format!("letter {id} reported as skipped twice")
            })?;
        }
        match body["cursor"].as_str() {
            Some(c) => {
                check(body["remaining"].as_u64().is_some(), || {
                    format!("no remaining count: {body}")
                })?;
                cursor = Some(c.to_owned());
            }
            None => return Ok(run),
        }
    }
}
