//! End-to-end tests: the Worker on real workerd (`wrangler dev`), HubSpot-signed webhooks in,
//! Standard Webhooks deliveries out to a loopback destination.
//!
//! Run: `cargo test -p hubspot-edge-tests --test e2e` (add `-- --nocapture` and
//! `E2E_VERBOSE=1` to see wrangler's output and every delivery; `-- <filter>` runs a subset;
//! `-- --list` lists without starting anything). `E2E_SKIP=1` skips the whole suite.
//!
//! The fixtures (destination, then the Worker) start once and are shared by all scenarios,
//! which run in parallel: each scenario uses its own object ids
//! ([`hubspot_edge_tests::unique_id`]) and looks only at its own deliveries and log lines.
//!
//! To add a scenario: write `fn name(fx: &Fixture) -> Outcome` and list it in [`scenarios`].

// The harness reports through libtest-mimic and eprintln!; nothing prints to stdout directly.

mod actions;
mod analytics;
mod api_limits;
mod config;
mod dashboard;
mod dead_letters;
mod delivery;
mod enrichment;
mod hardening;
mod metrics;
mod rules;
mod sync;
mod sync_assoc;
mod sync_inbound;
mod sync_runs;
mod traces;
mod walkthrough;

use std::panic::{self, AssertUnwindSafe};
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use actions::{
    actions_250_approvals_completed_in_at_most_3_batch_calls,
    actions_approval_expires_then_callback_410, actions_blocked_listed_and_counted_in_metrics,
    actions_forged_or_stale_401_runs_nothing,
    actions_map_and_write_answers_outputs_publish_idempotent,
    actions_refused_batch_split_dead_letters_only_the_named,
    actions_refused_completion_dead_lettered_then_redriven,
    actions_rule_completes_the_objects_blocked_execution,
    actions_same_callback_twice_runs_once_same_answer, actions_slow_lookup_blocks_then_completes,
};
use analytics::metrics_written_to_analytics_engine_when_bound;
use api_limits::{hubspot_burst_of_1000_reads_paced_without_429, hubspot_oauth_401_refreshed_once};
use config::{
    config_dead_letter_retention_invalid_holds_letters,
    config_enrichment_map_invalid_loud_then_dead_lettered,
    config_forward_url_missing_loud_then_dead_lettered, config_report_ok_for_a_configured_worker,
    config_run_command_prints_problems_and_stops_clean,
};
use dashboard::dashboard_in_a_browser_login_counts_redrive_accessible;
use dead_letters::{
    dead_letter_store_failing_then_recovering_loses_nothing,
    redrive_all_1200_mixed_letters_resumable_exactly_once,
};
use delivery::{
    enrich_privacy_deletion_drops_snapshot_even_if_dead_lettered,
    enrich_read_error_other_than_not_found_retried_then_dead_lettered,
    enrich_record_commit_failure_redelivers_same_id, enrich_regrouped_retry_keeps_its_id,
    oversized_event_delivered_by_reference, redirecting_destination_dead_lettered_not_followed,
    serial_slow_destination_each_event_once,
};
use enrichment::{
    enrich_association_change_forwarded_both_sides, enrich_burst_one_read_per_batch_state_matches,
    enrich_date_never_leaves_as_timestamp, enrich_echo_of_own_write_not_forwarded,
    enrich_first_change_carries_true_old_value, enrich_first_change_without_history_has_no_old,
    enrich_mapped_change_arrives_with_old_and_new, enrich_merge_and_delete_arrive_with_right_ids,
    enrich_object_gone_in_between_is_skipped_not_retried,
    enrich_refused_history_read_falls_back_to_old_unknown, enrich_same_value_forwards_nothing,
    enrich_unmappable_record_dead_lettered_with_code, enrich_unmapped_change_forwards_nothing,
};
use hardening::{
    config_out_of_range_fails_detail_only_in_log,
    hubspot_oauth_refused_token_refreshed_once_not_per_call,
    ingress_chunked_body_over_limit_413_before_its_end,
};
use hubspot_edge_tests::{
    unique_id, Behavior, Fixture, FixtureOptions, HubSpotEvent, HubSpotRequest, SignatureScheme,
};
use hubspot_mock::MockConfig;
use libtest_mimic::{Arguments, Failed, Trial};
use metrics::{
    metrics_alert_fires_once_and_resolves_once_signed,
    metrics_count_a_batch_and_scrape_as_openmetrics,
    metrics_hubspot_daily_budget_gauge_fires_its_alert,
};
use rules::{
    rules_big_deal_fires_once_never_on_own_write, rules_loop_rejected_at_start,
    rules_named_destination_dead_letter_then_redrive,
};
use serde_json::Value;
use sync::{
    sync_backfill_then_incremental_delivers_each_change_once,
    sync_lost_units_requeued_after_their_lease,
};
use sync_assoc::sync_assoc_backfill_then_restore_and_erase_found;
use sync_inbound::{
    inbound_250_records_100_unchanged_writes_150_no_echo,
    inbound_hubspot_503s_batch_retried_later_nothing_lost,
    inbound_invalid_property_dead_lettered_rest_written,
    inbound_same_request_twice_writes_once_receipt_and_errors,
};
use sync_runs::{
    sync_backfill_killed_mid_run_resumes_after_restart,
    sync_changes_during_a_full_run_delivered_by_the_next_incremental,
};
use traces::{
    enrich_read_carries_the_event_trace_to_hubspot, logs_never_carry_sent_values,
    trace_followed_from_webhook_to_destination,
};
use walkthrough::walkthrough_from_the_readme;

/// What a scenario returns: `Err` (or a panic) fails it. Any `Display` error converts with `?`.
type Outcome = Result<(), Failed>;
type Scenario = fn(&Fixture) -> Outcome;

/// `scenarios![a, b]` → `[("a", a), ("b", b)]`.
macro_rules! scenarios {
    ($($f:ident),* $(,)?) => {
        vec![$((stringify!($f), $f as Scenario)),*]
    };
}

/// Every scenario, by name.
fn scenarios() -> Vec<(&'static str, Scenario)> {
    scenarios![
        healthz_answers_ok,
        dashboard_in_a_browser_login_counts_redrive_accessible,
        metrics_count_a_batch_and_scrape_as_openmetrics,
        metrics_alert_fires_once_and_resolves_once_signed,
        metrics_hubspot_daily_budget_gauge_fires_its_alert,
        rules_big_deal_fires_once_never_on_own_write,
        rules_loop_rejected_at_start,
        rules_named_destination_dead_letter_then_redrive,
        sync_backfill_then_incremental_delivers_each_change_once,
        sync_lost_units_requeued_after_their_lease,
        sync_assoc_backfill_then_restore_and_erase_found,
        sync_changes_during_a_full_run_delivered_by_the_next_incremental,
        sync_backfill_killed_mid_run_resumes_after_restart,
        inbound_250_records_100_unchanged_writes_150_no_echo,
        inbound_invalid_property_dead_lettered_rest_written,
        inbound_same_request_twice_writes_once_receipt_and_errors,
        inbound_hubspot_503s_batch_retried_later_nothing_lost,
        mixed_batch_delivered_once_and_valid,
        retried_batch_not_delivered_twice,
        bad_signatures_rejected_nothing_delivered,
        filtered_events_acknowledged_not_delivered,
        destination_500_then_200_delivered_once,
        slow_and_throttling_destination_retried,
        destination_down_dead_letter_then_redrive,
        admin_requires_token,
        malformed_body_acknowledged_and_dead_lettered,
        invalid_element_dead_lettered_rest_delivered,
        oversized_body_413_and_wrong_routes,
        second_worker_legacy_signatures_and_missing_config,
        hubspot_objects_created_and_read_through_mock,
        hubspot_search_returns_mock_data,
        hubspot_invalid_token_is_a_clear_error,
        hubspot_injected_503_and_423_retried,
        hubspot_oauth_tokens_refreshed_on_expiry,
        hubspot_oauth_bad_refresh_token_not_retried_hot,
        hubspot_daily_limit_not_retried,
        hubspot_search_all_walks_past_the_cap,
        hubspot_burst_of_1000_reads_paced_without_429,
        hubspot_oauth_401_refreshed_once,
        enrich_mapped_change_arrives_with_old_and_new,
        enrich_same_value_forwards_nothing,
        enrich_unmapped_change_forwards_nothing,
        enrich_date_never_leaves_as_timestamp,
        enrich_merge_and_delete_arrive_with_right_ids,
        enrich_echo_of_own_write_not_forwarded,
        enrich_burst_one_read_per_batch_state_matches,
        enrich_object_gone_in_between_is_skipped_not_retried,
        enrich_unmappable_record_dead_lettered_with_code,
        enrich_association_change_forwarded_both_sides,
        enrich_first_change_carries_true_old_value,
        enrich_first_change_without_history_has_no_old,
        enrich_refused_history_read_falls_back_to_old_unknown,
        redirecting_destination_dead_lettered_not_followed,
        oversized_event_delivered_by_reference,
        serial_slow_destination_each_event_once,
        enrich_regrouped_retry_keeps_its_id,
        enrich_privacy_deletion_drops_snapshot_even_if_dead_lettered,
        enrich_record_commit_failure_redelivers_same_id,
        enrich_read_error_other_than_not_found_retried_then_dead_lettered,
        dead_letter_store_failing_then_recovering_loses_nothing,
        redrive_all_1200_mixed_letters_resumable_exactly_once,
        ingress_chunked_body_over_limit_413_before_its_end,
        hubspot_oauth_refused_token_refreshed_once_not_per_call,
        config_out_of_range_fails_detail_only_in_log,
        config_forward_url_missing_loud_then_dead_lettered,
        config_enrichment_map_invalid_loud_then_dead_lettered,
        config_report_ok_for_a_configured_worker,
        config_run_command_prints_problems_and_stops_clean,
        config_dead_letter_retention_invalid_holds_letters,
        walkthrough_from_the_readme,
        actions_map_and_write_answers_outputs_publish_idempotent,
        actions_forged_or_stale_401_runs_nothing,
        actions_same_callback_twice_runs_once_same_answer,
        actions_slow_lookup_blocks_then_completes,
        actions_250_approvals_completed_in_at_most_3_batch_calls,
        actions_refused_completion_dead_lettered_then_redriven,
        actions_approval_expires_then_callback_410,
        actions_rule_completes_the_objects_blocked_execution,
        actions_refused_batch_split_dead_letters_only_the_named,
        metrics_written_to_analytics_engine_when_bound,
        actions_blocked_listed_and_counted_in_metrics,
        trace_followed_from_webhook_to_destination,
        enrich_read_carries_the_event_trace_to_hubspot,
        logs_never_carry_sent_values,
    ]
}

/// The Worker configuration every scenario runs against. Keep retries fast: scenarios wait
/// for them in real time. A mock HubSpot API (20 seeded contacts) answers its HubSpot calls.
fn fixture_options() -> FixtureOptions {
    FixtureOptions::default()
        .hubspot_mock(MockConfig {
            seed_contacts: 20,
            ..MockConfig::default()
        })
        .vars([
        ("MAX_BODY_BYTES", "1048576"),
        ("FORWARD_MAX_ATTEMPTS", "4"),
        ("FORWARD_RETRY_BASE_SECS", "1"),
        ("FORWARD_RETRY_MAX_SECS", "3"),
        ("FORWARD_TIMEOUT_MS", "1500"),
        (
            "FILTER_RULES",
            r#"{"exclude":[{"changeSources":["IMPORT"]}],"ignoreOwnChanges":{"sourceIds":["app:999"]}}"#,
        ),
    ])
}

// ---------------------------------------------------------------------------------------------
// Scenarios

fn healthz_answers_ok(fx: &Fixture) -> Outcome {
    let r = fx.get("/healthz")?;
    r.expect_status(200)?;
    let body = r.json()?;
    if body["status"] != "ok" {
        return Err(format!("unexpected /healthz body: {body}").into());
    }
    Ok(())
}

/// How long any one asynchronous effect (a delivery, a dead letter) may take.
const DEADLINE: Duration = Duration::from_secs(60);

fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: OnceLock<jsonschema::Validator> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = hubspot_edge_tests::repo_root().join("schema/outbound-event.v1.json");
        let text = std::fs::read_to_string(&path).expect("schema file is readable");
        let value: Value = serde_json::from_str(&text).expect("schema is JSON");
        jsonschema::validator_for(&value).expect("schema compiles")
    })
}

fn check(cond: bool, what: impl FnOnce() -> String) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(what().into())
    }
}

/// Every kept event arrives exactly once, signed, schema-valid, carrying HubSpot's event as sent.
fn mixed_batch_delivered_once_and_valid(fx: &Fixture) -> Outcome {
    let ids: Vec<u64> = (0..7).map(|_| unique_id()).collect();
    let events = vec![
        HubSpotEvent::property_change("contact", ids[0], "lifecyclestage", "customer"),
        HubSpotEvent::creation("company", ids[1]),
        HubSpotEvent::deletion("deal", ids[2]),
        HubSpotEvent::merge("contact", ids[3], &[ids[3] + 1_000_000], ids[3]),
        HubSpotEvent::association_change("contact", ids[4], 9, "CONTACT_TO_COMPANY", false)
            .object_id(ids[4]),
        HubSpotEvent::generic("propertyChange", "0-3", ids[5]).set("propertyName", "amount"),
        // A subscription type this version does not know is forwarded, not dropped.
        HubSpotEvent::creation("invoice", ids[6]).set("subscriptionType", "invoice.teleported"),
    ];
    let r = fx.send_events(&events)?;
    r.expect_status(200)?;
    let body = r.json()?;
    check(body["queued"] == 7 && body["filtered"] == 0, || {
        format!("ingress counts: {body}")
    })?;

    fx.dest.wait_for_ok(&ids, DEADLINE)?;
    let counts = fx.dest.count_ok_by_webhook_id();
    for (event, id) in events.iter().zip(&ids) {
        let key = event.dedupe_key()?;
        let ok = fx.dest.delivered_ok_for(*id);
        check(ok.len() == 1 && counts.get(&key) == Some(&1), || {
            format!("object {id}: {} deliveries", ok.len())
        })?;
        let d = &ok[0];
        check(d.verified, || {
            format!("object {id}: signature not verified: {:?}", d.verify_error)
        })?;
        check(d.webhook_id.as_deref() == Some(key.as_str()), || {
            format!("webhook-id {:?} != {key}", d.webhook_id)
        })?;
        if let Err(e) = schema().validate(&d.body) {
            return Err(
                format!("object {id}: payload violates the schema: {e}\n{}", d.body).into(),
            );
        }
        check(d.body["id"] == key.as_str(), || {
            format!("id {} != {key}", d.body["id"])
        })?;
        check(d.body["hubspot"] == event.to_value(), || {
            format!("hubspot field differs: {}", d.body["hubspot"])
        })?;
        check(
            d.body["type"] == event.get("subscriptionType").cloned().unwrap_or_default(),
            || "type".into(),
        )?;
    }
    check(
        fx.dest.delivered_ok_for(ids[5])[0].body["objectType"] == "deal",
        || "generic 0-3 is a deal".into(),
    )
}

/// HubSpot retrying a delivered batch (new timestamp, signature, attemptNumber) forwards nothing.
fn retried_batch_not_delivered_twice(fx: &Fixture) -> Outcome {
    let ids: Vec<u64> = (0..3).map(|_| unique_id()).collect();
    let events: Vec<HubSpotEvent> = ids
        .iter()
        .map(|id| HubSpotEvent::property_change("contact", *id, "email", "x@example.com"))
        .collect();
    fx.send_events(&events)?.expect_status(200)?;
    fx.dest.wait_for_ok(&ids, DEADLINE)?;

    let mark = fx.worker.log_mark();
    for attempt in 1..=3u64 {
        let retried: Vec<HubSpotEvent> = events
            .iter()
            .map(|e| e.clone().attempt_number(attempt))
            .collect();
        let r = fx
            .hubspot_request(HubSpotEvent::batch(&retried))
            .timestamp_ms(hubspot_edge_tests::now_ms() + attempt)
            .send()?;
        r.expect_status(200)?;
    }
    // The consumer reports each skipped copy; wait until all nine have been seen.
    let keys: Vec<String> = events
        .iter()
        .map(HubSpotEvent::dedupe_key)
        .collect::<Result<_, _>>()?;
    hubspot_edge_tests::poll_until(
        "9 duplicate_skipped lines",
        DEADLINE,
        Duration::from_millis(200),
        || {
            let n = fx
                .worker
                .json_logs_since(mark)
                .iter()
                .filter(|l| {
                    l["message"] == "duplicate_skipped"
                        && keys.iter().any(|k| l["key"] == k.as_str())
                })
                .count();
            (n >= 9).then_some(())
        },
    )?;
    for id in &ids {
        let n = fx.dest.deliveries_for(*id).len();
        check(n == 1, || format!("object {id} delivered {n} times"))?;
    }
    Ok(())
}

/// Every kind of bad signature is a 401 with a JSON error code, and nothing is queued.
fn bad_signatures_rejected_nothing_delivered(fx: &Fixture) -> Outcome {
    let id = unique_id();
    let body = HubSpotEvent::batch(&[HubSpotEvent::creation("contact", id)]);
    let now = hubspot_edge_tests::now_ms();
    let cases: Vec<(&str, HubSpotRequest, &str)> = vec![
        (
            "tampered body",
            fx.hubspot_request(body.clone()).sign_body(b"[]".to_vec()),
            "signature_invalid",
        ),
        (
            "wrong secret",
            fx.hubspot_request(body.clone())
                .secret("zzzzzzzz-0000-0000-0000-000000000000"),
            "signature_invalid",
        ),
        (
            "stale timestamp",
            fx.hubspot_request(body.clone())
                .timestamp_ms(now - 10 * 60 * 1000),
            "timestamp_out_of_window",
        ),
        (
            "future timestamp",
            fx.hubspot_request(body.clone())
                .timestamp_ms(now + 10 * 60 * 1000),
            "timestamp_out_of_window",
        ),
        (
            "missing headers",
            fx.hubspot_request(body.clone())
                .scheme(SignatureScheme::Unsigned),
            "signature_missing",
        ),
        (
            "v1 only, v1 disallowed",
            fx.hubspot_request(body.clone()).scheme(SignatureScheme::V1),
            "signature_invalid",
        ),
        (
            "signed for another URL",
            fx.hubspot_request(body.clone())
                .sign_url("https://example.com/webhooks/hubspot"),
            "signature_invalid",
        ),
    ];
    for (what, request, code) in cases {
        let r = request.send()?;
        check(r.status == 401, || format!("{what}: status {}", r.status))?;
        let json = r.json()?;
        check(json["error"]["code"] == code, || {
            format!("{what}: body {json}")
        })?;
    }
    // A good request after them is delivered; none of the rejected ones ever is.
    let sentinel = unique_id();
    fx.send_events(&[HubSpotEvent::creation("contact", sentinel)])?
        .expect_status(200)?;
    fx.dest.wait_for_ok(&[sentinel], DEADLINE)?;
    check(fx.dest.deliveries_for(id).is_empty(), || {
        format!("rejected object {id} was delivered")
    })
}

/// Filtered events are acknowledged (200, counted) and never forwarded.
fn filtered_events_acknowledged_not_delivered(fx: &Fixture) -> Outcome {
    let kept: Vec<u64> = (0..2).map(|_| unique_id()).collect();
    let dropped: Vec<u64> = (0..2).map(|_| unique_id()).collect();
    let events = vec![
        HubSpotEvent::creation("contact", kept[0]),
        HubSpotEvent::creation("contact", dropped[0]).change_source("IMPORT"),
        HubSpotEvent::property_change("deal", kept[1], "amount", "10"),
        HubSpotEvent::property_change("deal", dropped[1], "amount", "10")
            .set("sourceId", "app:999"),
    ];
    let r = fx.send_events(&events)?;
    r.expect_status(200)?;
    let body = r.json()?;
    check(body["queued"] == 2 && body["filtered"] == 2, || {
        format!("ingress counts: {body}")
    })?;
    fx.dest.wait_for_ok(&kept, DEADLINE)?;
    for id in dropped {
        check(fx.dest.deliveries_for(id).is_empty(), || {
            format!("filtered object {id} was delivered")
        })?;
    }
    Ok(())
}

/// A destination failing once then succeeding receives the event exactly once successfully.
fn destination_500_then_200_delivered_once(fx: &Fixture) -> Outcome {
    let id = unique_id();
    fx.dest
        .script(id, vec![Behavior::Status(500), Behavior::Status(200)]);
    fx.send_events(&[HubSpotEvent::creation("ticket", id)])?
        .expect_status(200)?;
    fx.dest.wait_for_ok(&[id], DEADLINE)?;
    let all = fx.dest.deliveries_for(id);
    let ok = fx.dest.delivered_ok_for(id);
    check(all.len() == 2 && ok.len() == 1, || {
        format!("{} attempts, {} ok", all.len(), ok.len())
    })?;
    check(all[0].webhook_id == all[1].webhook_id, || {
        "webhook-id changed between attempts".into()
    })
}

/// A destination that times out, then throttles with `Retry-After`, then accepts: three
/// attempts, the second at least `Retry-After` after the first throttle, one delivery.
fn slow_and_throttling_destination_retried(fx: &Fixture) -> Outcome {
    let id = unique_id();
    fx.dest.script(
        id,
        vec![
            Behavior::Hang(Duration::from_secs(4)),
            Behavior::StatusWithRetryAfter(429, 3),
            Behavior::Status(200),
        ],
    );
    fx.send_events(&[HubSpotEvent::creation("deal", id)])?
        .expect_status(200)?;
    fx.dest.wait_for_ok(&[id], DEADLINE)?;
    let all = fx.dest.deliveries_for(id);
    check(
        all.len() == 3 && fx.dest.delivered_ok_for(id).len() == 1,
        || format!("{} attempts", all.len()),
    )?;
    let waited = all[2].received_at.duration_since(all[1].received_at);
    check(waited >= Duration::from_secs(3), || {
        format!("Retry-After 3 s not honoured: retried after {waited:?}")
    })
}

/// Dead letters of a given object, as (id, full record).
fn dead_letters_for(fx: &Fixture, object_id: u64) -> Result<Vec<(String, Value)>, Failed> {
    let list = fx.admin_get("/admin/dead-letters?limit=1000")?;
    list.expect_status(200)?;
    let mut found = Vec::new();
    for item in list.json()?["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let id = item["id"].as_str().unwrap_or_default().to_owned();
        let r = fx.admin_get(&format!("/admin/dead-letters/{id}"))?;
        if r.status != 200 {
            continue;
        }
        let record = r.json()?;
        if record["payload"]["objectId"] == object_id {
            found.push((id, record));
        }
    }
    Ok(found)
}

/// A destination that is down for good: the event ends in the dead-letter store, and is
/// delivered once re-driven after the destination is back.
fn destination_down_dead_letter_then_redrive(fx: &Fixture) -> Outcome {
    let id = unique_id();
    // FORWARD_MAX_ATTEMPTS is 4: four dropped connections exhaust it.
    fx.dest.script(id, vec![Behavior::Drop; 4]);
    fx.send_events(&[HubSpotEvent::property_change("company", id, "name", "Acme")])?
        .expect_status(200)?;
    let (dl_id, record) = hubspot_edge_tests::poll_until(
        "the dead letter",
        DEADLINE,
        Duration::from_millis(500),
        || {
            dead_letters_for(fx, id)
                .ok()
                .and_then(|v| v.into_iter().next())
        },
    )?;
    check(
        record["reason"] == "retries_exhausted" && record["attempts"] == 4,
        || format!("record: {record}"),
    )?;
    check(record["kind"] == "event", || {
        format!("kind: {}", record["kind"])
    })?;
    check(fx.dest.delivered_ok_for(id).is_empty(), || {
        "delivered despite the outage".into()
    })?;
    let attempts = fx.dest.deliveries_for(id).len();
    check(attempts == 4, || {
        format!("{attempts} attempts reached the destination")
    })?;

    // The destination is back (its script is used up, so it answers 200); re-drive.
    let r = fx.admin_post(&format!("/admin/dead-letters/{dl_id}/redrive"), b"")?;
    check(r.status == 202, || {
        format!("redrive status {}: {}", r.status, r.text())
    })?;
    fx.dest.wait_for_ok(&[id], DEADLINE)?;
    check(fx.dest.delivered_ok_for(id).len() == 1, || {
        "not delivered exactly once".into()
    })?;
    let gone = fx.admin_get(&format!("/admin/dead-letters/{dl_id}"))?;
    check(gone.status == 404, || {
        format!("dead letter still stored: {}", gone.status)
    })
}

/// The admin API refuses requests without the right bearer token.
fn admin_requires_token(fx: &Fixture) -> Outcome {
    let url = fx.url("/admin/dead-letters");
    let cases = [
        hubspot_edge_tests::http::get(&url, None)?,
        hubspot_edge_tests::http::get(&url, Some("wrong-token"))?,
        hubspot_edge_tests::http::post(&fx.url("/admin/dead-letters/redrive"), b"", None)?,
        hubspot_edge_tests::http::post(
            &fx.url("/admin/dead-letters/x/redrive"),
            b"",
            Some("wrong-token"),
        )?,
    ];
    for r in cases {
        check(r.status == 401, || format!("status {}", r.status))?;
        check(r.json()?["error"]["code"] == "unauthorized", || r.text())?;
    }
    fx.admin_get("/admin/dead-letters")?.expect_status(200)?;
    Ok(())
}

/// A correctly signed body that is not a batch is acknowledged and kept whole.
fn malformed_body_acknowledged_and_dead_lettered(fx: &Fixture) -> Outcome {
    let body = br#"{"this is":"not an array of events"}"#.to_vec();
    let r = fx.hubspot_request(body.clone()).send()?;
    r.expect_status(200)?;
    let json = r.json()?;
    let dl_id = json["deadLetterId"]
        .as_str()
        .ok_or("no deadLetterId in the response")?
        .to_owned();
    let record = fx.admin_get(&format!("/admin/dead-letters/{dl_id}"))?;
    record.expect_status(200)?;
    let record = record.json()?;
    check(
        record["kind"] == "batch" && record["reason"] == "batch_malformed",
        || format!("{record}"),
    )?;
    check(
        record["payload"] == String::from_utf8_lossy(&body).as_ref(),
        || "payload not kept whole".into(),
    )?;
    // Re-driving it cannot succeed while it is still not a batch.
    let r = fx.admin_post(&format!("/admin/dead-letters/{dl_id}/redrive"), b"")?;
    check(r.status == 409, || {
        format!("redrive of a malformed batch: {}", r.status)
    })
}

/// An element that is not an event is dead-lettered with its reason; the rest is delivered.
fn invalid_element_dead_lettered_rest_delivered(fx: &Fixture) -> Outcome {
    let good = unique_id();
    let bad = unique_id();
    let events = [
        HubSpotEvent::creation("contact", good),
        HubSpotEvent::creation("contact", bad).remove("portalId"),
    ];
    let r = fx.send_events(&events)?;
    r.expect_status(200)?;
    let json = r.json()?;
    check(json["queued"] == 1 && json["deadLettered"] == 1, || {
        format!("{json}")
    })?;
    fx.dest.wait_for_ok(&[good], DEADLINE)?;
    let (_, record) = hubspot_edge_tests::poll_until(
        "the invalid element's dead letter",
        DEADLINE,
        Duration::from_millis(500),
        || {
            dead_letters_for(fx, bad)
                .ok()
                .and_then(|v| v.into_iter().next())
        },
    )?;
    check(record["reason"] == "event_missing_field", || {
        format!("{record}")
    })
}

/// 413 above MAX_BODY_BYTES; 405 and 404 with JSON codes.
fn oversized_body_413_and_wrong_routes(fx: &Fixture) -> Outcome {
    let big = vec![b' '; 1_048_577];
    let r = fx.hubspot_request(big).send()?;
    check(
        r.status == 413 && r.json()?["error"]["code"] == "body_too_large",
        || format!("{} {}", r.status, r.text()),
    )?;
    let r = fx.get("/webhooks/hubspot")?;
    check(
        r.status == 405 && r.json()?["error"]["code"] == "method_not_allowed",
        || format!("{}", r.status),
    )?;
    let r = fx.get("/nope")?;
    check(
        r.status == 404 && r.json()?["error"]["code"] == "not_found",
        || format!("{}", r.status),
    )
}

/// A second Worker, configured differently: v1/v2 signatures allowed, and `FORWARD_SECRET` and
/// `ADMIN_TOKEN` missing. v1 and v2 requests are accepted and queued; the consumer and the admin
/// API report the missing keys by name; nothing is delivered (and nothing dropped: the
/// consumer keeps the messages queued).
fn second_worker_legacy_signatures_and_missing_config(_: &Fixture) -> Outcome {
    let config = extra_wrangler_config("wrangler.second.toml")?;
    let mut options = FixtureOptions::default()
        .var("ALLOW_LEGACY_SIGNATURES", "true")
        .var("FORWARD_SECRET", "")
        .var("ADMIN_TOKEN", "");
    options.wrangler.config = Some(config);
    let fx = Fixture::start(options)?;
    let id = unique_id();
    let body = HubSpotEvent::batch(&[HubSpotEvent::creation("contact", id)]);
    for scheme in [SignatureScheme::V1, SignatureScheme::V2] {
        let r = fx.hubspot_request(body.clone()).scheme(scheme).send()?;
        check(r.status == 200 && r.json()?["queued"] == 1, || {
            format!("{scheme:?}: {} {}", r.status, r.text())
        })?;
    }
    let line = fx.worker.wait_for_json_log(
        |l| l["message"] == "config_invalid" && l["key"] == "FORWARD_SECRET",
        DEADLINE,
    )?;
    check(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("FORWARD_SECRET")),
        || format!("{line}"),
    )?;
    let r = fx.admin_get("/admin/dead-letters")?;
    let json = r.json()?;
    check(
        r.status == 500
            && json["error"]["code"] == "config_invalid"
            && json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("ADMIN_TOKEN")),
        || format!("admin without ADMIN_TOKEN: {} {json}", r.status),
    )?;
    check(fx.dest.deliveries_for(id).is_empty(), || {
        "delivered without a forwarding secret".into()
    })
}

/// wrangler.toml without its `[build]` step (the first Worker already built it; a second build
/// would rewrite the bundle under the running one), written under `target/e2e/{name}`.
fn extra_wrangler_config(name: &str) -> Result<std::path::PathBuf, Failed> {
    Ok(hubspot_edge_tests::wrangler::prebuilt_config(name)?)
}

/// A Worker of its own (config `target/e2e/{config_name}`) calling a mock HubSpot of its own.
fn own_worker(config_name: &str, mock: MockConfig) -> Result<Fixture, Failed> {
    let mut options = FixtureOptions::default().hubspot_mock(mock);
    options.wrangler.config = Some(extra_wrangler_config(config_name)?);
    Ok(Fixture::start(options)?)
}

/// The fixture's mock HubSpot.
fn mock_of(fx: &Fixture) -> Result<&hubspot_mock::MockHubSpot, Failed> {
    fx.hubspot.as_ref().ok_or_else(|| "no mock".into())
}

// ---------------------------------------------------------------------------------------------
// HubSpot API calls (the executor, through `/admin/hubspot/…` and the mock HubSpot)

fn admin_post_json(fx: &Fixture, path: &str, body: &Value) -> Result<(u16, Value), Failed> {
    let r = fx.admin_post(path, body.to_string().as_bytes())?;
    let json = r.json()?;
    Ok((r.status, json))
}

/// A contact created through the Worker is read back singly and in a batch; an unknown id is a
/// 404 with HubSpot's code; each HubSpot call is logged with its path template, no ids.
fn hubspot_objects_created_and_read_through_mock(fx: &Fixture) -> Outcome {
    let uid = unique_id();
    let email = format!("e2e-{uid}@example.com");
    let (status, created) = admin_post_json(
        fx,
        "/admin/hubspot/objects/contacts",
        &serde_json::json!({ "properties": { "email": email, "firstname": "Ada" } }),
    )?;
    check(status == 201 && created["id"].is_string(), || {
        format!("create: {status} {created}")
    })?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();

    let r = fx.admin_get(&format!(
        "/admin/hubspot/objects/contacts/{id}?properties=email,firstname"
    ))?;
    let read = r.json()?;
    check(
        r.status == 200
            && read["id"] == id.as_str()
            && read["properties"]["email"] == email.as_str()
            && read["properties"]["firstname"] == "Ada",
        || format!("read: {} {read}", r.status),
    )?;

    let (status, batch) = admin_post_json(
        fx,
        "/admin/hubspot/objects/contacts/batch-read",
        &serde_json::json!({ "ids": [id, "1"], "properties": ["email"] }),
    )?;
    let ids: Vec<&str> = batch["results"]
        .as_array()
        .map(|a| a.iter().filter_map(|o| o["id"].as_str()).collect())
        .unwrap_or_default();
    check(
        status == 200 && ids.contains(&id.as_str()) && ids.contains(&"1"),
        || format!("batch read: {status} {batch}"),
    )?;

    let missing = uid % 1_000_000_000 + 5_000_000_000;
    let r = fx.admin_get(&format!("/admin/hubspot/objects/contacts/{missing}"))?;
    let json = r.json()?;
    check(
        r.status == 404 && json["error"]["code"] == "not_found",
        || format!("unknown id: {} {json}", r.status),
    )?;

    let line = fx.worker.wait_for_json_log(
        |l| l["message"] == "hubspot_call" && l["status"] == 404,
        DEADLINE,
    )?;
    check(
        line["path"] == "/crm/objects/2026-03/contacts/{id}"
            && line["method"] == "GET"
            && line["attempt"].is_u64()
            && line["duration_ms"].is_u64()
            && !line.to_string().contains(&missing.to_string()),
        || format!("call log line: {line}"),
    )
}

/// A search through the Worker finds the contact it just created, and pages seeded data.
fn hubspot_search_returns_mock_data(fx: &Fixture) -> Outcome {
    let email = format!("e2e-search-{}@example.com", unique_id());
    let (status, created) = admin_post_json(
        fx,
        "/admin/hubspot/objects/contacts",
        &serde_json::json!({ "properties": { "email": email } }),
    )?;
    check(status == 201, || format!("create: {status} {created}"))?;
    let (status, found) = admin_post_json(
        fx,
        "/admin/hubspot/objects/contacts/search",
        &serde_json::json!({
            "filterGroups": [{ "filters": [
                { "propertyName": "email", "operator": "EQ", "value": email }
            ]}],
            "properties": ["email"],
            "limit": 10
        }),
    )?;
    check(
        status == 200
            && found["total"] == 1
            && found["results"][0]["id"] == created["id"]
            && found["results"][0]["properties"]["email"] == email.as_str(),
        || format!("search: {status} {found}"),
    )?;
    let (status, seeded) = admin_post_json(
        fx,
        "/admin/hubspot/objects/contacts/search",
        &serde_json::json!({
            "filterGroups": [{ "filters": [
                { "propertyName": "email", "operator": "HAS_PROPERTY" }
            ]}],
            "limit": 5
        }),
    )?;
    check(
        status == 200
            && seeded["total"].as_u64().is_some_and(|t| t >= 20)
            && seeded["results"].as_array().is_some_and(|r| r.len() == 5)
            && seeded["paging"]["next"]["after"].is_string(),
        || format!("seeded search: {status} {seeded}"),
    )
}

/// A Worker whose HubSpot token is wrong answers 502 `hubspot_unauthorized` (not the admin
/// API's own 401), after one attempt, and never logs the token.
fn hubspot_invalid_token_is_a_clear_error(_: &Fixture) -> Outcome {
    let config = extra_wrangler_config("wrangler.badtoken.toml")?;
    let bad_token = "pat-na1-not-the-right-token";
    // Its own mock, so that faults injected into the shared one cannot reach this Worker.
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig::default())
        .var("HUBSPOT_ACCESS_TOKEN", bad_token);
    options.wrangler.config = Some(config);
    let other = Fixture::start(options)?;
    let r = other.admin_get("/admin/hubspot/objects/contacts/1")?;
    let json = r.json()?;
    check(
        r.status == 502
            && json["error"]["code"] == "hubspot_unauthorized"
            && json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("HUBSPOT_ACCESS_TOKEN")),
        || format!("bad token: {} {json}", r.status),
    )?;
    other.worker.wait_for_json_log(
        |l| l["message"] == "hubspot_call" && l["status"] == 401,
        DEADLINE,
    )?;
    let leaked = other
        .worker
        .logs_since(0)
        .iter()
        .filter(|l| l.contains("\"message\""))
        .any(|l| l.contains(bad_token));
    check(!leaked, || "the access token appeared in a log line".into())
}

/// HubSpot answering 503, then 423 (injected into the mock): the executor retries (backoff,
/// then the 2 s lock wait) and the read succeeds. Faults are global to the mock, so a parallel
/// HubSpot scenario may draw one instead; it is retried there the same way.
fn hubspot_injected_503_and_423_retried(fx: &Fixture) -> Outcome {
    let Some(mock) = &fx.hubspot else {
        return Err("the shared fixture has no mock HubSpot".into());
    };
    let mark = fx.worker.log_mark();
    let r = hubspot_edge_tests::http::post_json(
        &format!("{}/__mock/faults", mock.base_url()),
        &serde_json::json!({ "next": [{ "status": 503 }, { "status": 423 }] }),
        None,
    )?;
    check(r.is_success(), || {
        format!("fault injection: {} {}", r.status, r.text())
    })?;
    let r = fx.admin_get("/admin/hubspot/objects/contacts/2?properties=email")?;
    let json = r.json()?;
    check(r.status == 200 && json["id"] == "2", || {
        format!("read after faults: {} {json}", r.status)
    })?;
    for status in [503, 423] {
        let line = fx.worker.wait_for_json_log_since(
            mark,
            |l| l["message"] == "hubspot_call" && l["status"] == status,
            DEADLINE,
        )?;
        check(
            line["decision"]
                .as_str()
                .is_some_and(|d| d.starts_with("retry_after_")),
            || format!("{status} not retried: {line}"),
        )?;
    }
    Ok(())
}

/// The mock's `/__mock/stats`.
fn mock_stats(mock: &hubspot_mock::MockHubSpot) -> Result<Value, Failed> {
    let r = hubspot_edge_tests::http::get(&format!("{}/__mock/stats", mock.base_url()), None)?;
    check(r.status == 200, || format!("mock stats: {}", r.status))?;
    Ok(r.json()?)
}

/// Requests the mock counted (`byPath` of its stats) on the paths `"METHOD /path"` that `keep`.
fn requests_where(stats: &Value, keep: impl Fn(&str) -> bool) -> u64 {
    stats["byPath"].as_object().map_or(0, |m| {
        m.iter()
            .filter(|(k, _)| keep(k))
            .filter_map(|(_, v)| v.as_u64())
            .sum()
    })
}

/// A Worker with OAuth credentials (no `HUBSPOT_ACCESS_TOKEN`) against its own mock, whose
/// access tokens live `token_ttl`; refresh margin 0.
fn oauth_worker(
    config_name: &str,
    refresh_token: Option<&str>,
    token_ttl: Duration,
) -> Result<Fixture, Failed> {
    let config = extra_wrangler_config(config_name)?;
    let mock = MockConfig {
        seed_contacts: 5,
        token_ttl,
        ..MockConfig::default()
    };
    let refresh = refresh_token.map_or_else(|| mock.refresh_token.clone(), str::to_owned);
    let mut options = FixtureOptions {
        client_secret: mock.client_secret.clone(),
        ..FixtureOptions::default()
    }
    .var("HUBSPOT_CLIENT_ID", mock.client_id.clone())
    .var("HUBSPOT_REFRESH_TOKEN", refresh)
    .var("HUBSPOT_TOKEN_REFRESH_MARGIN_SECS", "0")
    .unset("HUBSPOT_ACCESS_TOKEN")
    .hubspot_mock(mock);
    options.wrangler.config = Some(config);
    Ok(Fixture::start(options)?)
}

/// No secret (refresh token, client secret) in any of the Worker's log lines.
fn no_secrets_logged(fx: &Fixture, secrets: &[&str]) -> Outcome {
    let leaked = fx
        .worker
        .logs_since(0)
        .iter()
        .filter(|l| l.contains("\"message\""))
        .any(|l| secrets.iter().any(|s| l.contains(s)));
    check(!leaked, || "a secret appeared in a log line".into())
}

/// OAuth: the first read obtains an access token (one refresh); with a 2 s token lifetime and
/// margin 0, reads keep succeeding while the Worker refreshes the expired token.
fn hubspot_oauth_tokens_refreshed_on_expiry(_: &Fixture) -> Outcome {
    let fx = oauth_worker("wrangler.oauth.toml", None, Duration::from_secs(2))?;
    let mock = mock_of(&fx)?;
    let read = |fx: &Fixture| -> Outcome {
        let r = fx.admin_get("/admin/hubspot/objects/contacts/1?properties=email")?;
        let json = r.json()?;
        check(r.status == 200 && json["id"] == "1", || {
            format!("OAuth read: {} {json}", r.status)
        })
    };
    read(&fx)?;
    let stats = mock_stats(mock)?;
    check(stats["tokenRefreshes"] == 1, || {
        format!("after the first read: {stats}")
    })?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        read(&fx)?;
        let stats = mock_stats(mock)?;
        if stats["tokenRefreshes"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        check(Instant::now() < deadline, || {
            format!("the expired token was never refreshed: {stats}")
        })?;
        // Poll pacing (stays under the mock's burst limit), not a wait for the expiry.
        std::thread::sleep(Duration::from_millis(100));
    }
    fx.worker.wait_for_json_log(
        |l| l["message"] == "hubspot_oauth_refresh" && l["outcome"] == "ok",
        DEADLINE,
    )?;
    let mock_config = MockConfig::default();
    no_secrets_logged(
        &fx,
        &[&mock_config.refresh_token, &mock_config.client_secret],
    )
}

/// OAuth with a refresh token HubSpot rejects: a clear 502, and the failure is remembered, so
/// three reads make one refresh attempt.
fn hubspot_oauth_bad_refresh_token_not_retried_hot(_: &Fixture) -> Outcome {
    let bad = "bad-refresh-token-4c1d";
    let fx = oauth_worker(
        "wrangler.oauth-bad.toml",
        Some(bad),
        Duration::from_secs(1800),
    )?;
    let mock = mock_of(&fx)?;
    for _ in 0..3 {
        let r = fx.admin_get("/admin/hubspot/objects/contacts/1")?;
        let json = r.json()?;
        check(
            r.status == 502
                && json["error"]["code"] == "hubspot_oauth_refresh_failed"
                && json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("BAD_REFRESH_TOKEN") && !m.contains(bad)),
            || format!("bad refresh token: {} {json}", r.status),
        )?;
    }
    let stats = mock_stats(mock)?;
    check(
        stats["byPath"]["POST /oauth/v1/token"] == 1
            && stats["tokenRefreshes"] == 0
            && stats["requests"] == 1,
        || format!("refresh attempts: {stats}"),
    )?;
    no_secrets_logged(&fx, &[bad, &MockConfig::default().client_secret])
}

/// A 429 with policy DAILY is not retried: 503 `daily_limit` after one HubSpot request, and
/// the next read does not reach HubSpot either. Its own Worker and mock: the governor then
/// holds this isolate until the daily reset, which would starve the shared fixture's
/// scenarios, and a fault in the shared mock could be drawn by a parallel scenario.
fn hubspot_daily_limit_not_retried(_: &Fixture) -> Outcome {
    let fx = own_worker(
        "wrangler.daily.toml",
        MockConfig {
            seed_contacts: 5,
            ..MockConfig::default()
        },
    )?;
    let mock = mock_of(&fx)?;
    let r = hubspot_edge_tests::http::post_json(
        &format!("{}/__mock/faults", mock.base_url()),
        &serde_json::json!({ "next": [{ "status": 429, "policy": "DAILY" }] }),
        None,
    )?;
    check(r.is_success(), || {
        format!("fault injection: {} {}", r.status, r.text())
    })?;
    let r = fx.admin_get("/admin/hubspot/objects/contacts/3")?;
    let json = r.json()?;
    check(
        r.status == 503 && json["error"]["code"] == "daily_limit",
        || format!("daily limit: {} {json}", r.status),
    )?;
    let stats = mock_stats(mock)?;
    let for_path = requests_where(&stats, |k| {
        k.starts_with("GET ") && k.ends_with("/contacts/3")
    });
    check(for_path == 1 && stats["requests"] == 1, || {
        format!("requests after the daily 429: {stats}")
    })?;
    // The governor now holds calls until the reset: no further request reaches HubSpot.
    let r = fx.admin_get("/admin/hubspot/objects/contacts/3")?;
    check(r.status == 503, || format!("second read: {}", r.status))?;
    let stats = mock_stats(mock)?;
    check(stats["requests"] == 1, || {
        format!("a request reached HubSpot after the daily limit: {stats}")
    })
}

/// Contacts seeded for the search walk: two and a half times HubSpot's 10,000-result cap per
/// query (125 pages of 200 at the governed 4 searches/s: ~31 s of walking).
const SEARCH_ALL_CONTACTS: usize = 25_000;

/// `search-all` walks every seeded contact by id (core's `SearchPlan`, one-page keyset windows)
/// through the executor: each id exactly once, past the 10,000 cap, paced to the 5/s search limit.
fn hubspot_search_all_walks_past_the_cap(_: &Fixture) -> Outcome {
    let fx = own_worker(
        "wrangler.searchall.toml",
        MockConfig {
            seed_contacts: SEARCH_ALL_CONTACTS,
            ..MockConfig::default()
        },
    )?;
    let r = fx.admin_request(
        "POST",
        "/admin/hubspot/objects/contacts/search-all",
        Some(b"{}"),
        Duration::from_secs(120),
    )?;
    let json = r.json()?;
    check(r.status == 200, || {
        format!("search-all: {} {json}", r.status)
    })?;
    let ids: Vec<u64> = json["ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    check(
        json["count"] == SEARCH_ALL_CONTACTS
            && ids.len() == SEARCH_ALL_CONTACTS
            && unique.len() == SEARCH_ALL_CONTACTS
            && ids.windows(2).all(|w| w[0] < w[1]),
        || {
            format!(
                "search-all: count {} ids {} unique {} pages {}",
                json["count"],
                ids.len(),
                unique.len(),
                json["pages"]
            )
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Harness

fn main() -> ExitCode {
    let args = Arguments::from_args();
    if std::env::var("E2E_SKIP").is_ok_and(|v| v == "1") {
        eprintln!("E2E_SKIP=1: skipping the end-to-end tests");
        return ExitCode::SUCCESS;
    }
    // Each child process group is outside the terminal's, so Ctrl-C would orphan wrangler.
    if let Err(e) = ctrlc::set_handler(|| {
        hubspot_edge_tests::kill_all();
        std::process::exit(130);
    }) {
        eprintln!(
            "warning: no Ctrl-C handler ({e}); an interrupted run may leave wrangler running"
        );
    }

    let all = scenarios();
    let would_run = !args.list
        && all.iter().any(|(name, _)| {
            let probe = Trial::test(*name, || Ok(()));
            !args.is_filtered_out(&probe) && !args.ignored
        });

    let fixture = if would_run {
        let started = Instant::now();
        eprintln!(
            "e2e: starting the destination and wrangler dev (the first run builds the Worker)…"
        );
        match Fixture::start(fixture_options()) {
            Ok(fx) => {
                eprintln!(
                    "e2e: Worker ready at {} after {:.1?}; destination at {}",
                    fx.worker.base_url(),
                    started.elapsed(),
                    fx.dest.url()
                );
                Some(Arc::new(fx))
            }
            Err(e) => {
                // Fixture::start has already stopped whatever it started.
                eprintln!("e2e: fixture startup failed:\n{e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };

    let trials = all
        .into_iter()
        .map(|(name, scenario)| {
            let fx = fixture.clone();
            Trial::test(name, move || match &fx {
                Some(fx) => run_scenario(scenario, fx),
                None => Err("fixture not started".into()),
            })
        })
        .collect();
    let conclusion = libtest_mimic::run(&args, trials);

    enrichment::shutdown();
    // Stop the Worker even if a scenario leaked a clone of the Arc, then drop everything.
    if let Some(fx) = fixture {
        fx.stop_worker();
        drop(fx);
    }
    // Every line of every Worker the run started: no value a scenario sent, and the fields
    // every line has (README "Log fields").
    let problems = hubspot_edge_tests::logscan::violations();
    if !problems.is_empty() {
        eprintln!(
            "e2e: {} log line problem(s) in {} captured lines:",
            problems.len(),
            hubspot_edge_tests::logscan::lines_captured()
        );
        for p in problems.iter().take(40) {
            eprintln!("  {p}");
        }
        return ExitCode::FAILURE;
    }
    if would_run {
        eprintln!(
            "e2e: log scan clean ({} lines captured)",
            hubspot_edge_tests::logscan::lines_captured()
        );
    }
    conclusion.exit_code()
}

/// Runs one scenario; on failure or panic, appends the Worker's output during the scenario.
fn run_scenario(scenario: Scenario, fx: &Fixture) -> Outcome {
    let mark = fx.worker.log_mark();
    let result = panic::catch_unwind(AssertUnwindSafe(|| scenario(fx)));
    let failure = match result {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(failed)) => failed
            .message()
            .map_or_else(|| "failed".to_owned(), str::to_owned),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            format!("panicked: {msg}")
        }
    };
    let lines = fx.worker.logs_since(mark);
    let start = lines.len().saturating_sub(60);
    Err(format!(
        "{failure}\n--- wrangler output during this scenario (last {} of {} lines; parallel scenarios interleave) ---\n{}",
        lines.len() - start,
        lines.len(),
        lines[start..].join("\n")
    )
    .into())
}
