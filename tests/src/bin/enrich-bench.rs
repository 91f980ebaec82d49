//! Enrichment benchmark on real workerd against the mock HubSpot (`ENRICHMENT_MAP` for
//! contacts and companies; deals stay thin):
//!
//! 1. **HubSpot calls per 1,000 events** in a realistic mix, delivered the way HubSpot delivers
//!    them (batches of up to 100 events per POST, docs/hubspot.md §2.4): per batch, 50 mapped and
//!    15 unmapped contact property changes over 40 contacts, 15 mapped company changes over 10
//!    companies, 10 deal changes (no map: forwarded thin, never read), 5 contact and 5 company
//!    creations. Then a contacts-only mix (80 mapped changes over 60 contacts, 10 unmapped, 10
//!    deal changes per batch). Counted twice: the consumer's `hubspot_reads` log fields and the
//!    mock's batch-read requests.
//! 2. **Latency from the webhook to the destination's receipt**, one 10-event batch at a time:
//!    mapped contact changes (a batch read, map, diff, then the forward) against deal changes
//!    (no enrichment: the pipeline's own path) in the same run, as the baseline.
//!
//! Prints `BENCH name=<id> <metric>=<value>` lines.
//!
//! Run: `cargo run --release -p hubspot-edge-tests --bin enrich-bench` (the README's tool set-up
//! must have run once: `scripts/test.sh` or `scripts/run.sh`).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use hubspot_edge_tests::bench::report_ms;
use hubspot_edge_tests::{now_ms, Fixture, FixtureOptions, HubSpotEvent};
use hubspot_mock::MockConfig;
use serde_json::{json, Value};

const MAP: &str = r#"{"objects":{
  "contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"firstname","field":"first_name"},
    {"hubspot":"lastname","field":"last_name"},
    {"hubspot":"lifecyclestage","field":"stage","type":"enumeration","values":{"lead":"LEAD","customer":"CUSTOMER"},"unmappedValues":"keep"}]},
  "companies":{"fields":[
    {"hubspot":"name"},
    {"hubspot":"domain"},
    {"hubspot":"numberofemployees","field":"employees","type":"number"}]}
}}"#;

const CONTACTS: u64 = 800;
const COMPANIES: u64 = 200;
const DEALS: u64 = 100;
const BATCHES: u64 = 10;

/// Sums `field` over the consumer's `queue_batch` lines for the events queue since `mark`.
fn consumer_sum(fx: &Fixture, mark: usize, field: &str) -> u64 {
    fx.worker
        .logs_since(mark)
        .iter()
        .filter(|l| l.contains("\"queue_batch\"") && l.contains("hubspot-edge-events"))
        .filter_map(|l| serde_json::from_str::<Value>(l.get(l.find('{')?..)?).ok())
        .filter_map(|v| v[field].as_u64())
        .sum()
}

fn mock_batch_reads(mock_url: &str) -> Result<u64, Box<dyn std::error::Error>> {
    let stats: Value =
        hubspot_edge_tests::http::get(&format!("{mock_url}/__mock/stats"), None)?.json()?;
    Ok(stats["byPath"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| k.contains("/batch/read"))
                .filter_map(|(_, v)| v.as_u64())
                .sum()
        })
        .unwrap_or(0))
}

/// Sends [`BATCHES`] HubSpot POSTs of `batch(b)`, waits until the consumer has handled every
/// event, and reports the batch reads HubSpot (the mock) received per 1,000 events.
fn calls_per_1000(
    fx: &Fixture,
    mock_url: &str,
    mix: &str,
    batch: impl Fn(u64) -> Vec<HubSpotEvent>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mark = fx.worker.log_mark();
    let reads_before = mock_batch_reads(mock_url)?;
    let mut n = 0u64;
    for b in 0..BATCHES {
        let events = batch(b);
        n += events.len() as u64;
        fx.hubspot_request(HubSpotEvent::batch(&events))
            .send()?
            .expect_status(200)?;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while consumer_sum(fx, mark, "messages") < n {
        if Instant::now() > deadline {
            return Err(format!(
                "the consumer handled {} of {n} events in 120 s",
                consumer_sum(fx, mark, "messages")
            )
            .into());
        }
        std::thread::sleep(Duration::from_millis(200)); // Poll interval.
    }
    let logged_reads = consumer_sum(fx, mark, "hubspot_reads");
    let mock_reads = mock_batch_reads(mock_url)? - reads_before;
    let batches = fx
        .worker
        .logs_since(mark)
        .iter()
        .filter(|l| l.contains("\"queue_batch\"") && l.contains("hubspot-edge-events"))
        .count();
    #[allow(clippy::cast_precision_loss)]
    let per_1000 = mock_reads as f64 * 1000.0 / n as f64;
    println!(
        "BENCH name=enrich_calls mix={mix} events={n} http_posts={BATCHES} consumer_batches={batches} hubspot_batch_reads={mock_reads} logged_reads={logged_reads} calls_per_1000_events={per_1000:.1} target_per_1000=10"
    );
    Ok(())
}

#[allow(clippy::too_many_lines)] // One linear script: set up, measure, report.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    eprintln!("building the Worker…");
    hubspot_edge_tests::wrangler::build_worker()?;
    eprintln!("starting the mock HubSpot and wrangler dev…");
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            seed_contacts: usize::try_from(CONTACTS)?,
            seed_companies: usize::try_from(COMPANIES)?,
            seed_deals: usize::try_from(DEALS)?,
            // Calls are counted here, not paced: the burst limit is the api-bench's subject.
            burst: 100_000,
            ..MockConfig::default()
        })
        .var("ENRICHMENT_MAP", MAP);
    options.wrangler.config = Some(
        hubspot_edge_tests::wrangler::prebuilt_config_with_own_bundle(
            "wrangler.enrich-bench.toml",
        )?,
    );
    let fx = Fixture::start(options)?;
    let mock = fx.hubspot.as_ref().ok_or("no mock")?;
    let mock_url = mock.base_url().to_owned();
    let token = format!("Bearer {}", mock.token());
    // Seeded ids run contacts, then companies, then deals.
    let (contact0, company0, deal0) = (1, 1 + CONTACTS, 1 + CONTACTS + COMPANIES);
    for (kind, id) in [
        ("contacts", contact0),
        ("companies", company0),
        ("deals", deal0),
    ] {
        let r = hubspot_edge_tests::http::get(
            &format!("{mock_url}/crm/v3/objects/{kind}/{id}"),
            Some(mock.token()),
        )?;
        if r.status != 200 {
            return Err(format!("seeded {kind} {id} not found: {}", r.status).into());
        }
    }

    // 1. Calls per 1,000 events, for the mixed batches and for contacts-only batches.
    let mixed = |b: u64| -> Vec<HubSpotEvent> {
        let mut events = Vec::with_capacity(100);
        for i in 0..50 {
            let id = contact0 + (b * 40 + i % 40) % 400;
            let prop = ["email", "firstname", "lastname", "lifecyclestage"][(i % 4) as usize];
            events.push(HubSpotEvent::property_change("contact", id, prop, "x"));
        }
        for i in 0..15 {
            let id = contact0 + (b * 40 + i) % 400;
            events.push(HubSpotEvent::property_change(
                "contact",
                id,
                "hs_analytics_num_visits",
                "3",
            ));
        }
        for i in 0..15 {
            let id = company0 + (b * 10 + i % 10) % COMPANIES;
            events.push(HubSpotEvent::property_change("company", id, "name", "x"));
        }
        for i in 0..10 {
            let id = deal0 + (b * 10 + i) % DEALS;
            events.push(HubSpotEvent::property_change("deal", id, "amount", "1"));
        }
        for i in 0..5 {
            events.push(HubSpotEvent::creation(
                "contact",
                contact0 + 400 + b * 5 + i,
            ));
            events.push(HubSpotEvent::creation(
                "company",
                company0 + (b * 5 + i + 150) % COMPANIES,
            ));
        }
        events
    };
    calls_per_1000(&fx, &mock_url, "mixed", mixed)?;
    let contacts_only = |b: u64| -> Vec<HubSpotEvent> {
        let mut events = Vec::with_capacity(100);
        for i in 0..80 {
            let id = contact0 + (b * 60 + i % 60) % 400;
            let prop = ["email", "firstname", "lastname", "lifecyclestage"][(i % 4) as usize];
            events.push(HubSpotEvent::property_change("contact", id, prop, "y"));
        }
        for i in 0..10 {
            let id = contact0 + (b * 60 + i) % 400;
            events.push(HubSpotEvent::property_change(
                "contact",
                id,
                "hs_analytics_num_visits",
                "4",
            ));
        }
        for i in 0..10 {
            let id = deal0 + (b * 10 + i) % DEALS;
            events.push(HubSpotEvent::property_change("deal", id, "amount", "2"));
        }
        events
    };
    calls_per_1000(&fx, &mock_url, "contacts_only", contacts_only)?;

    // 2. Latency: 20 rounds of 10 mapped contact changes (values really changed in the mock,
    // so each is forwarded) and, interleaved, 20 rounds of 10 thin deal changes.
    let mut enriched = Vec::new();
    let mut thin = Vec::new();
    for round in 0..20u64 {
        let ids: Vec<u64> = (0..10).map(|i| contact0 + 500 + round * 10 + i).collect();
        for &id in &ids {
            let r = hubspot_edge_tests::http::request(
                "PATCH",
                &format!("{mock_url}/crm/v3/objects/contacts/{id}"),
                &[
                    ("authorization", &token),
                    ("content-type", "application/json"),
                ],
                Some(
                    json!({"properties": {"firstname": format!("Round{round}")}})
                        .to_string()
                        .as_bytes(),
                ),
            )?;
            if r.status != 200 {
                return Err(format!("PATCH contact {id}: {}", r.status).into());
            }
        }
        let events: Vec<HubSpotEvent> = ids
            .iter()
            .map(|&id| HubSpotEvent::property_change("contact", id, "firstname", "changed"))
            .collect();
        let sent = now_ms();
        fx.hubspot_request(HubSpotEvent::batch(&events))
            .send()?
            .expect_status(200)?;
        for d in fx.dest.wait_for_ok(&ids, Duration::from_secs(60))? {
            #[allow(clippy::cast_precision_loss)]
            enriched.push(d.received_at_ms.saturating_sub(sent) as f64);
        }

        let deal_ids: Vec<u64> = (0..10).map(|i| 9_000_000 + round * 10 + i).collect();
        let events: Vec<HubSpotEvent> = deal_ids
            .iter()
            .map(|&id| HubSpotEvent::property_change("deal", id, "amount", "5"))
            .collect();
        let sent = now_ms();
        fx.hubspot_request(HubSpotEvent::batch(&events))
            .send()?
            .expect_status(200)?;
        for d in fx.dest.wait_for_ok(&deal_ids, Duration::from_secs(60))? {
            #[allow(clippy::cast_precision_loss)]
            thin.push(d.received_at_ms.saturating_sub(sent) as f64);
        }
    }
    let e = report_ms("enriched_webhook_to_destination", enriched);
    let t = report_ms("thin_webhook_to_destination", thin);
    println!("RATIO enriched/thin_p50={:.2}", e / t);
    Ok(())
}
