//! Delivery without loss or doubles (issue 8 §1): redirects, events too large for a queue
//! message, a destination that answers one request at a time, enriched ids that survive
//! regrouping, and privacy deletions that drop the snapshot whatever the forward did.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use hubspot_edge_tests::destination::REDIRECT_PATH;
use hubspot_edge_tests::{poll_until, unique_id, Behavior, Fixture, FixtureOptions, HubSpotEvent};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::enrichment;
use super::{check, dead_letters_for, extra_wrangler_config, Outcome, DEADLINE};

const POLL: Duration = Duration::from_millis(100);

/// A 301, 302, 303, 307 or 308 from the destination is a dead letter with
/// `destination_redirected` and the `Location`; nothing follows the redirect (no bodiless GET
/// counted as delivered, no signed body re-sent elsewhere).
pub(super) fn redirecting_destination_dead_lettered_not_followed(fx: &Fixture) -> Outcome {
    let codes = [301u16, 302, 303, 307, 308];
    let ids: Vec<u64> = codes.iter().map(|_| unique_id()).collect();
    for (id, code) in ids.iter().zip(codes) {
        fx.dest.script(*id, vec![Behavior::Redirect(code)]);
    }
    let events: Vec<HubSpotEvent> = ids
        .iter()
        .map(|id| HubSpotEvent::creation("contact", *id))
        .collect();
    fx.send_events(&events)?.expect_status(200)?;
    for (id, code) in ids.iter().zip(codes) {
        let letters = poll_until(&format!("dead letter for {id}"), DEADLINE, POLL, || {
            dead_letters_for(fx, *id).ok().filter(|l| !l.is_empty())
        })?;
        let (_, letter) = &letters[0];
        check(letter["reason"] == "destination_redirected", || {
            format!("{code}: reason {}", letter["reason"])
        })?;
        check(
            letter["detail"].as_str().is_some_and(|d| {
                d.contains(&format!("status_{code}")) && d.contains(REDIRECT_PATH)
            }),
            || format!("{code}: detail {}", letter["detail"]),
        )?;
        let sent = fx.dest.deliveries_for(*id);
        check(sent.len() == 1, || {
            format!(
                "{code}: {} requests for {id}: {}",
                sent.len(),
                fx.dest.describe(&[*id])
            )
        })?;
    }
    let followed: Vec<_> = fx
        .dest
        .deliveries()
        .into_iter()
        .filter(|d| d.path.starts_with(REDIRECT_PATH))
        .collect();
    check(followed.is_empty(), || {
        format!("{} requests followed a redirect", followed.len())
    })
}

/// An event over a queue message's 128 KB (one long multi-byte text value) is queued by
/// reference and delivered whole, not dead-lettered.
pub(super) fn oversized_event_delivered_by_reference(fx: &Fixture) -> Outcome {
    let id = unique_id();
    // 70,000 two-byte characters: 140 KB of UTF-8 in one property value.
    let value: String = "é".repeat(70_000);
    let event = HubSpotEvent::property_change("contact", id, "notes", &value);
    let r = fx.send_events(&[event])?;
    r.expect_status(200)?;
    let body = r.json()?;
    check(body["queued"] == 1 && body["deadLettered"] == 0, || {
        format!("ingress answer: {body}")
    })?;
    let ok = fx.dest.wait_for_ok(&[id], DEADLINE)?;
    check(ok.len() == 1, || format!("{} deliveries", ok.len()))?;
    check(
        ok[0].body["hubspot"]["propertyValue"].as_str() == Some(value.as_str()),
        || "the delivered event is not the event sent".into(),
    )?;
    check(dead_letters_for(fx, id)?.is_empty(), || {
        "an oversized event was dead-lettered".into()
    })
}

/// A destination that answers one request at a time, each after a second (HTTP/1.0, one
/// connection at a time), and a batch of 100 events: every event arrives exactly once, no
/// forward times out, nothing is dead-lettered. The consumer keeps at most six forwards in flight
/// (the runtime's connection limit), each timed from when it is sent, and puts back on the queue
/// what its batch budget cannot start.
pub(super) fn serial_slow_destination_each_event_once(_: &Fixture) -> Outcome {
    let serial = SerialDestination::start(Duration::from_secs(1))?;
    let mut options = FixtureOptions::default().vars([
        ("FORWARD_URL", serial.url()),
        ("FORWARD_TIMEOUT_MS", "10000".to_owned()),
        ("FORWARD_MAX_ATTEMPTS", "4".to_owned()),
        ("FORWARD_RETRY_BASE_SECS", "1".to_owned()),
    ]);
    options.wrangler.config = Some(extra_wrangler_config("wrangler.serial.toml")?);
    let fx = Fixture::start(options)?;
    let base = unique_id();
    let events: Vec<HubSpotEvent> = (0..100)
        .map(|i| HubSpotEvent::creation("contact", base * 1000 + i))
        .collect();
    fx.send_events(&events)?.expect_status(200)?;
    poll_until(
        "100 distinct events at the serial destination",
        Duration::from_secs(300),
        Duration::from_millis(250),
        || (serial.distinct() >= 100).then_some(()),
    )?;
    let timeouts: Vec<Value> = fx
        .worker
        .json_logs()
        .into_iter()
        .filter(|l| l["message"] == "forward_retry" || l["message"] == "forward_dead_lettered")
        .collect();
    check(timeouts.is_empty(), || {
        format!(
            "{} retries or dead letters: {:?}",
            timeouts.len(),
            timeouts.first()
        )
    })?;
    let counts = serial.counts();
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    check(doubled.is_empty() && counts.len() == 100, || {
        format!("{} ids, received twice: {doubled:?}", counts.len())
    })?;
    let letters = fx.admin_get("/admin/dead-letters")?.json()?;
    check(
        letters["items"].as_array().is_some_and(Vec::is_empty),
        || format!("dead letters: {letters}"),
    )
}

/// The same change reached through another group of events keeps its `webhook-id`: the first
/// forward of a change fails (500) for half the objects; before its retry, a second event about
/// the same object (a mapped property re-announced unchanged) arrives and is grouped on its own
/// or with the retry. Each object's change reaches the destination once, under one id.
pub(super) fn enrich_regrouped_retry_keeps_its_id(_: &Fixture) -> Outcome {
    let fx = enrichment::fixture()?;
    let fx = fx.as_ref();
    let mut ids = Vec::new();
    for i in 0..4 {
        let email = format!("regroup-{}-{i}@example.com", unique_id());
        ids.push((
            enrichment::create(fx, "contacts", json!({ "email": email, "firstname": "A" }))?,
            email,
        ));
    }
    for (id, _) in &ids {
        enrichment::wait_deliveries(fx, *id, 1)?;
    }
    // Half the objects: the change's first forward fails.
    for (id, _) in &ids[..2] {
        fx.dest.script(*id, vec![Behavior::Status(500)]);
    }
    for (id, _) in &ids {
        enrichment::patch(fx, "contacts", *id, json!({ "firstname": "B" }))?;
    }
    for (id, email) in &ids[..2] {
        poll_until(&format!("failed forward for {id}"), DEADLINE, POLL, || {
            fx.dest
                .deliveries_for(*id)
                .iter()
                .any(|d| d.answered == Some(500))
                .then_some(())
        })?;
        // Another event about the object, not part of the failed group.
        let event = HubSpotEvent::property_change("contact", *id, "email", email)
            .portal_id(enrichment::PORTAL)
            .event_id(unique_id());
        fx.send_events(&[event])?.expect_status(200)?;
    }
    let mut changes = Vec::new();
    for (id, _) in &ids {
        changes.push(enrichment::wait_deliveries(fx, *id, 2)?.remove(1));
    }
    // An absence check: a second forward of a change, if the code made one, would follow the
    // retry within FORWARD_RETRY_MAX_SECS (3 s); give it that long once for all objects.
    std::thread::sleep(Duration::from_secs(4));
    for ((id, _), change) in ids.iter().zip(changes) {
        let after_create: Vec<_> = fx
            .dest
            .deliveries_for(*id)
            .into_iter()
            .filter(|d| d.body["type"] != "hubspot-edge.record.created")
            .collect();
        let distinct: std::collections::BTreeSet<_> = after_create
            .iter()
            .filter_map(|d| d.webhook_id.clone())
            .collect();
        let oks = fx.dest.delivered_ok_for(*id).len();
        check(distinct.len() == 1 && oks == 2, || {
            format!(
                "object {id}: change ids {distinct:?}, {oks} accepted (created + change expected); {}",
                fx.dest.describe(&[*id])
            )
        })?;
        check(change.body["changes"][0]["new"] == "B", || {
            format!("object {id}: {}", change.body)
        })?;
    }
    Ok(())
}

/// A privacy deletion drops the object's snapshot even when its forward ends as a dead letter:
/// no personal data is kept for a record HubSpot deleted for privacy.
pub(super) fn enrich_privacy_deletion_drops_snapshot_even_if_dead_lettered(_: &Fixture) -> Outcome {
    let fx = enrichment::fixture()?;
    let fx = fx.as_ref();
    let email = format!("privacy-{}@example.com", unique_id());
    let id = enrichment::create(fx, "contacts", json!({ "email": email }))?;
    enrichment::wait_deliveries(fx, id, 1)?;
    let record = |fx: &Fixture| -> Result<Value, Failed> {
        let r = fx.admin_get(&format!(
            "/admin/records/{}/contact/{id}",
            enrichment::PORTAL
        ))?;
        r.expect_status(200)?;
        Ok(r.json()?)
    };
    let before = record(fx)?;
    check(before["snapshot"] == true, || {
        format!("no snapshot after create: {before}")
    })?;
    fx.dest.script(id, vec![Behavior::Status(400)]);
    let event = HubSpotEvent::deletion("contact", id)
        .set("subscriptionType", "contact.privacyDeletion")
        .portal_id(enrichment::PORTAL)
        .event_id(unique_id());
    fx.send_events(&[event])?.expect_status(200)?;
    poll_until(&format!("dead letter for {id}"), DEADLINE, POLL, || {
        dead_letters_for(fx, id).ok().filter(|l| !l.is_empty())
    })?;
    let after = record(fx)?;
    check(after["snapshot"] == false, || {
        format!("snapshot kept after a dead-lettered privacy deletion: {after}")
    })
}

/// The record store cannot commit after a change was forwarded: the messages are not
/// acknowledged, the change goes out again under the same `webhook-id` (the stored version did
/// not move), and once committed the next change diffs against it (its `old` is the value the
/// first change set, not a stale one). Nothing is lost; the repeat is recognisable by id.
pub(super) fn enrich_record_commit_failure_redelivers_same_id(_: &Fixture) -> Outcome {
    let fx = enrichment::start_with(
        "wrangler.enrich-faults.toml",
        &[("FAULT_INJECTION", "true")],
    )?;
    let email = format!("commit-{}@example.com", unique_id());
    let id = enrichment::create(&fx, "contacts", json!({ "email": email, "firstname": "A" }))?;
    enrichment::wait_deliveries(&fx, id, 1)?;
    let r = fx.admin_post("/admin/faults/record-store", br#"{"failNext":1}"#)?;
    r.expect_status(200)?;
    enrichment::patch(&fx, "contacts", id, json!({ "firstname": "B" }))?;
    let ok = enrichment::wait_deliveries(&fx, id, 3)?;
    check(
        ok[1].webhook_id.is_some() && ok[1].webhook_id == ok[2].webhook_id,
        || {
            format!(
                "the repeated change has another id: {}",
                fx.dest.describe(&[id])
            )
        },
    )?;
    check(ok[2].body["changes"][0]["new"] == "B", || {
        format!("{}", ok[2].body)
    })?;
    let stored = fx
        .admin_get(&format!(
            "/admin/records/{}/contact/{id}",
            enrichment::PORTAL
        ))?
        .json()?;
    check(stored["version"] == 2, || {
        format!("record after create and change: {stored}")
    })?;
    enrichment::patch(&fx, "contacts", id, json!({ "firstname": "C" }))?;
    let ok = enrichment::wait_deliveries(&fx, id, 4)?;
    let change = &ok[3].body["changes"][0];
    check(change["old"] == "B" && change["new"] == "C", || {
        format!(
            "the next change diffed against a stale snapshot: {}",
            ok[3].body
        )
    })
}

/// HubSpot's 207 batch-read answer names one object with an error other than not-found (a
/// validation error): its change is not taken for "object gone" and acknowledged, it is
/// retried and then dead-lettered with `hubspot_read_validation_error`.
pub(super) fn enrich_read_error_other_than_not_found_retried_then_dead_lettered(
    _: &Fixture,
) -> Outcome {
    let fx = enrichment::fixture()?;
    let fx = fx.as_ref();
    let email = format!("readerr-{}@example.com", unique_id());
    let id = enrichment::create(fx, "contacts", json!({ "email": email, "firstname": "A" }))?;
    enrichment::wait_deliveries(fx, id, 1)?;
    let mock = fx.hubspot.as_ref().ok_or("no mock")?;
    let faults = |category: Value| -> Outcome {
        let body = json!({ "readErrors": { id.to_string(): category } }).to_string();
        let r = hubspot_edge_tests::http::post(
            &format!("{}/__mock/faults", mock.base_url()),
            body.as_bytes(),
            None,
        )?;
        check(r.status == 200, || {
            format!("mock faults: {} {}", r.status, r.text())
        })
    };
    faults(json!("VALIDATION_ERROR"))?;
    let outcome = (|| -> Outcome {
        enrichment::patch(fx, "contacts", id, json!({ "firstname": "B" }))?;
        let letters = poll_until(&format!("dead letter for {id}"), DEADLINE, POLL, || {
            dead_letters_for(fx, id).ok().filter(|l| !l.is_empty())
        })?;
        let (_, letter) = &letters[0];
        check(letter["reason"] == "hubspot_read_validation_error", || {
            format!("reason {}: {letter}", letter["reason"])
        })?;
        check(fx.dest.delivered_ok_for(id).len() == 1, || {
            format!("a change was forwarded: {}", fx.dest.describe(&[id]))
        })?;
        let skipped_missing = enrichment::log_lines(fx, "enrich_skipped")
            .iter()
            .any(|l| l["object_id"] == id.to_string().as_str() && l["reason"] == "missing");
        check(!skipped_missing, || "the object was taken for gone".into())
    })();
    faults(Value::Null)?;
    outcome
}

/// A destination that serves one connection at a time (HTTP/1.0, `Connection: close`),
/// answering 200 after `delay`: a stand-in for a plain single-threaded server.
struct SerialDestination {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    thread: Option<JoinHandle<()>>,
}

impl SerialDestination {
    fn start(delay: Duration) -> Result<Self, Failed> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (stop2, seen2) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    if let Some(id) = serve_one(stream, delay) {
                        *seen2
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .entry(id)
                            .or_default() += 1;
                    }
                }
            }
        });
        Ok(Self {
            addr,
            stop,
            seen,
            thread: Some(thread),
        })
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn counts(&self) -> HashMap<String, usize> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn distinct(&self) -> usize {
        self.counts().len()
    }
}

impl Drop for SerialDestination {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request, waits `delay`, answers 200 and closes. Returns its `webhook-id`.
fn serve_one(stream: TcpStream, delay: Duration) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut id = None;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "webhook-id" => id = Some(value.trim().to_owned()),
                "content-length" => length = value.trim().parse().unwrap_or(0),
                _ => {}
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    std::thread::sleep(delay);
    let mut stream = stream;
    stream
        .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    id
}
