//! Traces and logs (issue 12 §3): a webhook's W3C `traceparent` followed through the queue to
//! the destination and to HubSpot, the same request id on the ingress and consumer lines, and
//! logs that never carry the values sent (the whole run is scanned after it too:
//! `hubspot_edge_tests::logscan`).

use std::time::Duration;

use hubspot_edge_core::trace::TraceParent;
use hubspot_edge_tests::logscan::{forbid_in_logs, problems_in};
use hubspot_edge_tests::{poll_until, unique_id, Fixture, HubSpotEvent};
use libtest_mimic::Failed;
use serde_json::{json, Value};

use super::enrichment::{self, PORTAL};
use super::{check, dead_letters_for, mock_of, mock_stats, Outcome, DEADLINE};

const POLL: Duration = Duration::from_millis(100);

/// An incoming `traceparent` of a trace of this test's own (`(header, trace id)`).
fn own_trace() -> (String, String) {
    let trace_id = format!("{:016x}{:016x}", unique_id(), 0x7ace_u64);
    (format!("00-{trace_id}-00f067aa0ba902b7-01"), trace_id)
}

/// A delivery's `traceparent`, parsed (and checked to be the 55-character version 00 form).
fn traceparent_of(d: &hubspot_edge_tests::Delivery) -> Result<TraceParent, Failed> {
    let value = d.header("traceparent").unwrap_or_default();
    let parsed = TraceParent::parse(value).filter(|t| t.to_string() == value);
    parsed.ok_or_else(|| format!("delivery #{}: no valid traceparent: {value:?}", d.seq).into())
}

/// The destination receives a valid `traceparent` whose trace id is the webhook request's,
/// with a span of its own; a request without one starts a trace its events share. The ingress
/// line and each forward line carry the same request id and trace id.
pub(super) fn trace_followed_from_webhook_to_destination(fx: &Fixture) -> Outcome {
    let (incoming, trace_id) = own_trace();
    let ids = [unique_id(), unique_id()];
    let events: Vec<HubSpotEvent> = ids
        .iter()
        .map(|id| HubSpotEvent::creation("deal", *id))
        .collect();
    let r = fx
        .hubspot_request(HubSpotEvent::batch(&events))
        .header("traceparent", &incoming)
        .send()?;
    r.expect_status(200)?;
    let request_id = r.json()?["requestId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    check(!request_id.is_empty(), || "no requestId".into())?;
    let delivered = fx.dest.wait_for_ok(&ids, DEADLINE)?;
    for d in &delivered {
        let t = traceparent_of(d)?;
        check(t.trace_id_hex() == trace_id, || {
            format!(
                "trace id {} is not the webhook's {trace_id}",
                t.trace_id_hex()
            )
        })?;
        check(t.is_sampled() && t.to_string() != incoming, || {
            format!("not a child span of {incoming}: {t}")
        })?;
    }

    // The ingress line and each event's forward line: one request id, one trace id.
    let keys: Vec<String> = events
        .iter()
        .map(HubSpotEvent::dedupe_key)
        .collect::<Result<_, _>>()?;
    let same =
        |l: &Value| l["request_id"] == request_id.as_str() && l["trace_id"] == trace_id.as_str();
    poll_until("the webhook and forward lines", DEADLINE, POLL, || {
        let lines = fx.worker.json_logs();
        let webhook = lines.iter().any(|l| l["message"] == "webhook" && same(l));
        let forwards = keys.iter().all(|k| {
            lines
                .iter()
                .any(|l| l["message"] == "forward" && l["webhook_id"] == k.as_str() && same(l))
        });
        (webhook && forwards).then_some(())
    })
    .map_err(|e| format!("{e}: request {request_id}, trace {trace_id}"))?;

    // No incoming traceparent: a new trace, shared by the request's events.
    let ids = [unique_id(), unique_id()];
    let events: Vec<HubSpotEvent> = ids
        .iter()
        .map(|id| HubSpotEvent::creation("deal", *id))
        .collect();
    fx.send_events(&events)?.expect_status(200)?;
    let delivered = fx.dest.wait_for_ok(&ids, DEADLINE)?;
    let traces = delivered
        .iter()
        .map(|d| traceparent_of(d).map(|t| t.trace_id_hex()))
        .collect::<Result<Vec<_>, _>>()?;
    check(
        traces.len() == 2 && traces[0] == traces[1] && traces[0] != trace_id,
        || format!("new trace ids: {traces:?}"),
    )
}

/// An enrichment read made for an event carries its trace to HubSpot (the mock notes the
/// `traceparent` of every request), and the `enrich_read` line its trace id.
pub(super) fn enrich_read_carries_the_event_trace_to_hubspot(_: &Fixture) -> Outcome {
    let fx = enrichment::fixture()?;
    // A type of its own in this fixture's scenarios, so that the read (one per type and batch,
    // carrying its first event's trace) is this event's.
    let id = enrichment::create(&fx, "companies", json!({"name": "Trace Co"}))?;
    enrichment::wait_deliveries(&fx, id, 1)?;
    let (incoming, trace_id) = own_trace();
    let event = HubSpotEvent::property_change("company", id, "name", "Trace Co").portal_id(PORTAL);
    fx.hubspot_request(HubSpotEvent::batch(&[event]))
        .header("traceparent", &incoming)
        .send()?
        .expect_status(200)?;
    let mock = mock_of(&fx)?;
    let paths = poll_until("the traced read", DEADLINE, POLL, || {
        let stats = mock_stats(mock).ok()?;
        stats["traced"][trace_id.as_str()].as_array().cloned()
    })
    .map_err(|e| format!("{e}: no request with trace {trace_id} reached the mock"))?;
    check(
        paths.iter().any(|p| {
            p.as_str()
                .is_some_and(|p| p.contains("/companies/batch/read"))
        }),
        || format!("traced requests: {paths:?}"),
    )?;
    poll_until("the enrich_read line", DEADLINE, POLL, || {
        enrichment::log_lines(&fx, "enrich_read")
            .iter()
            .any(|l| l["trace_id"] == trace_id.as_str())
            .then_some(())
    })?;
    Ok(())
}

/// A representative batch with known emails, names and property values goes through
/// enrichment, delivery and the dead letters; no log line carries any of them, and every line
/// has `timestamp`, `level`, `message` and `request_id`. (The values are also registered for
/// the scan of the whole run.)
pub(super) fn logs_never_carry_sent_values(_: &Fixture) -> Outcome {
    let fx = enrichment::fixture()?;
    let mark = fx.worker.log_mark();
    let u = unique_id();
    let email = format!("pd-{u}@example.org");
    let first = format!("Philippa{u}");
    let second = format!("Quentin{u}");
    let employees = format!("{}", 7_000_000 + u % 1_000_000);
    let unmappable = format!("not-a-number-{u}");
    let invalid_email = format!("lost-{u}@example.org");
    let values = [
        email.clone(),
        first.clone(),
        second.clone(),
        employees.clone(),
        unmappable.clone(),
        invalid_email.clone(),
    ];
    fx.forbid_in_logs(&values);

    // Enriched and delivered: a creation, then a change.
    let id = enrichment::create(
        &fx,
        "contacts",
        json!({"email": email, "firstname": first, "numberofemployees": employees}),
    )?;
    enrichment::wait_deliveries(&fx, id, 1)?;
    enrichment::patch(&fx, "contacts", id, json!({"firstname": second}))?;
    let ds = enrichment::wait_deliveries(&fx, id, 2)?;
    check(ds[1].body["changes"][0]["new"] == second.as_str(), || {
        format!("change: {}", ds[1].body)
    })?;
    // Dead-lettered while enriching: a value the map cannot read.
    let bad = enrichment::create(
        &fx,
        "contacts",
        json!({"firstname": first, "lead_score": unmappable}),
    )?;
    poll_until("the unmappable dead letter", DEADLINE, POLL, || {
        dead_letters_for(&fx, bad).ok().filter(|l| !l.is_empty())
    })?;
    // Dead-lettered at the ingress: an element that is not an event, holding an email.
    let broken = unique_id();
    let element = HubSpotEvent::property_change("contact", broken, "email", &invalid_email)
        .portal_id(PORTAL)
        .remove("eventId");
    fx.send_events(&[element])?.expect_status(200)?;
    poll_until("the invalid element's dead letter", DEADLINE, POLL, || {
        dead_letters_for(&fx, broken).ok().filter(|l| !l.is_empty())
    })?;

    let lines = fx.worker.logs_since(mark);
    let structured = lines
        .iter()
        .filter(|l| {
            hubspot_edge_tests::wrangler::json_object_in(l)
                .is_some_and(|v| v.get("level").is_some())
        })
        .count();
    check(structured >= 4, || {
        format!("only {structured} structured lines during the scenario")
    })?;
    let problems = problems_in(&lines, &values);
    check(problems.is_empty(), || {
        format!("{} log problems:\n{}", problems.len(), problems.join("\n"))
    })?;
    forbid_in_logs(&values);
    Ok(())
}
