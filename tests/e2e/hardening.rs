//! Hardening scenarios (issue 8, §1 points 9–11): a chunked body stops being read at
//! `MAX_BODY_BYTES`; an OAuth token HubSpot keeps refusing is refreshed once, not per call;
//! configuration out of range fails with the key and range in the log and only the stable
//! code in the answer.

use std::time::Duration;

use hubspot_edge_tests::{unique_id, Fixture, FixtureOptions, HubSpotEvent, HubSpotRequest};
use hubspot_mock::MockConfig;
use serde_json::Value;

use super::{check, extra_wrangler_config, mock_of, mock_stats, oauth_worker, Outcome, DEADLINE};

/// A chunked body (no `Content-Length`) larger than the shared Worker's `MAX_BODY_BYTES`
/// (1 MiB) gets 413 `body_too_large` while the body is still open: the Worker stopped reading
/// at the limit instead of buffering the whole body first (before the fix it waited for the
/// end of the body, and this request never got an answer). A small chunked batch, correctly
/// signed, is still accepted.
pub(super) fn ingress_chunked_body_over_limit_413_before_its_end(fx: &Fixture) -> Outcome {
    let limit: usize = fx
        .var("MAX_BODY_BYTES")
        .and_then(|v| v.parse().ok())
        .ok_or("the shared Worker has no MAX_BODY_BYTES")?;
    // Past the limit by one chunk, and the terminating chunk is never sent.
    let chunk = vec![b' '; 64 * 1024];
    let chunks: Vec<Vec<u8>> = (0..=limit / chunk.len()).map(|_| chunk.clone()).collect();
    let signed = HubSpotRequest::new(&fx.worker.base_url(), &fx.client_secret, Vec::new());
    let headers = signed.headers();
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let url = fx.url("/webhooks/hubspot");
    let r = hubspot_edge_tests::http::chunked_request(
        "POST",
        &url,
        &refs,
        chunks,
        false,
        Duration::from_secs(20),
    )
    .map_err(|e| format!("no answer while the oversized body was still open: {e}"))?;
    check(
        r.status == 413 && r.json()?["error"]["code"] == "body_too_large",
        || format!("oversized chunked body: {} {}", r.status, r.text()),
    )?;

    // A small batch, chunked in three pieces, signed over the whole body.
    let id = unique_id();
    let body = HubSpotEvent::batch(&[HubSpotEvent::creation("contact", id)]);
    let signed = fx.hubspot_request(body.clone());
    let headers = signed.headers();
    let refs: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("content-length"))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let third = body.len() / 3;
    let chunks = vec![
        body[..third].to_vec(),
        body[third..2 * third].to_vec(),
        body[2 * third..].to_vec(),
    ];
    let r = hubspot_edge_tests::http::chunked_request(
        "POST",
        &url,
        &refs,
        chunks,
        true,
        Duration::from_secs(20),
    )?;
    check(r.status == 200 && r.json()?["queued"] == 1, || {
        format!("small chunked batch: {} {}", r.status, r.text())
    })?;
    hubspot_edge_tests::poll_until(
        "the small chunked batch delivered",
        DEADLINE,
        Duration::from_millis(100),
        || (!fx.dest.deliveries_for(id).is_empty()).then_some(()),
    )?;
    Ok(())
}

/// OAuth against a HubSpot that refuses every access token, fresh ones included (the mock's
/// `/__mock/refuse-tokens`): after a working first read, five reads make exactly one refresh at
/// the mock (not one per read), each answers 502 `hubspot_unauthorized`, and the log has one
/// error line for it (`hubspot_token_refused`), not five refreshes.
pub(super) fn hubspot_oauth_refused_token_refreshed_once_not_per_call(_: &Fixture) -> Outcome {
    const READS: usize = 5;
    let fx = oauth_worker(
        "wrangler.oauth-refused.toml",
        None,
        Duration::from_secs(1800),
    )?;
    let mock = mock_of(&fx)?;
    let r = fx.admin_get("/admin/hubspot/objects/contacts/1")?;
    check(r.status == 200, || {
        format!("first read: {} {}", r.status, r.text())
    })?;
    let before = mock_stats(mock)?["tokenRefreshes"].as_u64().unwrap_or(0);
    check(before == 1, || {
        format!("first read made {before} refreshes")
    })?;
    let r = hubspot_edge_tests::http::post_json(
        &format!("{}/__mock/refuse-tokens", mock.base_url()),
        &serde_json::json!({ "refuse": true }),
        None,
    )?;
    check(r.status == 200, || {
        format!("refuse-tokens: {} {}", r.status, r.text())
    })?;
    let mark = fx.worker.log_mark();
    for n in 1..=READS {
        let r = fx.admin_get(&format!("/admin/hubspot/objects/contacts/{}", n % 5 + 1))?;
        let json = r.json()?;
        check(
            r.status == 502 && json["error"]["code"] == "hubspot_unauthorized",
            || format!("read {n} with refused tokens: {} {json}", r.status),
        )?;
    }
    let stats = mock_stats(mock)?;
    let refreshes = stats["tokenRefreshes"].as_u64().unwrap_or(0) - before;
    check(refreshes == 1, || {
        format!("{READS} refused reads made {refreshes} refreshes (want 1): {stats}")
    })?;
    fx.worker.wait_for_json_log_since(
        mark,
        |l| l["message"] == "hubspot_token_refused",
        DEADLINE,
    )?;
    let lines = fx.worker.json_logs_since(mark);
    let errors: Vec<&Value> = lines.iter().filter(|l| l["level"] == "error").collect();
    let refresh_lines = lines
        .iter()
        .filter(|l| l["message"] == "hubspot_oauth_refresh")
        .count();
    check(errors.len() == 1 && refresh_lines == 1, || {
        format!(
            "want one error line and one refresh line, got {} and {refresh_lines}: {errors:?}",
            errors.len()
        )
    })
}

/// A Worker of its own with `FORWARD_URL=http://example.com` (plain http to a host that is not
/// loopback), `SIGNATURE_MAX_AGE_SECS=999999` (range 1 to 3600) and `HUBSPOT_TIMEOUT_MS=5`
/// (range 100 to 60000): a webhook answers 503 `config_invalid` with no key, range or value in
/// the body (HubSpot retries it); `/healthz` answers 503 naming all three keys with their codes
/// and parts, no value or range; the log names the key and the range; an admin caller with the
/// valid token sees the detail of the HubSpot key. Before the fix the values were clamped and
/// the webhook was accepted.
pub(super) fn config_out_of_range_fails_detail_only_in_log(_: &Fixture) -> Outcome {
    let mut options = FixtureOptions::default()
        .hubspot_mock(MockConfig {
            seed_contacts: 2,
            ..MockConfig::default()
        })
        .var("FORWARD_URL", "http://example.com/hook")
        .var("SIGNATURE_MAX_AGE_SECS", "999999")
        .var("HUBSPOT_TIMEOUT_MS", "5");
    options.wrangler.config = Some(extra_wrangler_config("wrangler.config-invalid.toml")?);
    let fx = Fixture::start(options)?;
    let mark = fx.worker.log_mark();
    let id = unique_id();
    let r = fx.send_events(&[HubSpotEvent::creation("contact", id)])?;
    let text = r.text();
    check(
        r.status == 503 && r.json()?["error"]["code"] == "config_invalid",
        || format!("webhook with invalid config: {} {text}", r.status),
    )?;
    for leak in [
        "SIGNATURE_MAX_AGE_SECS",
        "3600",
        "999999",
        "FORWARD_URL",
        "example.com",
    ] {
        check(!text.contains(leak), || {
            format!("the webhook answer carries {leak:?}: {text}")
        })?;
    }
    // /healthz names every problem by key and code, never the values or ranges.
    let r = fx.get("/healthz")?;
    let health = r.text();
    check(
        r.status == 503
            && r.json()?["problems"]
                == serde_json::json!([
                    { "key": "SIGNATURE_MAX_AGE_SECS", "code": "config_out_of_range", "part": "ingress" },
                    { "key": "FORWARD_URL", "code": "config_plain_http", "part": "forwarding" },
                    { "key": "HUBSPOT_TIMEOUT_MS", "code": "config_out_of_range", "part": "hubspot_api" },
                ]),
        || format!("/healthz: {} {health}", r.status),
    )?;
    for leak in ["3600", "999999", "example.com", "60000"] {
        check(!health.contains(leak), || {
            format!("/healthz carries {leak:?}: {health}")
        })?;
    }
    let line = fx.worker.wait_for_json_log_since(
        mark,
        |l| l["message"] == "config_invalid" && l["key"] == "SIGNATURE_MAX_AGE_SECS",
        DEADLINE,
    )?;
    check(
        line["code"] == "config_out_of_range"
            && line["error"]
                .as_str()
                .is_some_and(|e| e.contains("from 1 to 3600")),
        || format!("log line: {line}"),
    )?;

    let r = fx.admin_get("/admin/hubspot/objects/contacts/1")?;
    let json = r.json()?;
    check(
        r.status == 500
            && json["error"]["code"] == "config_invalid"
            && json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("HUBSPOT_TIMEOUT_MS") && m.contains("100 to 60000")),
        || {
            format!(
                "admin read with invalid HUBSPOT_TIMEOUT_MS: {} {json}",
                r.status
            )
        },
    )?;
    let r = fx.get("/admin/hubspot/objects/contacts/1")?;
    check(
        r.status == 401 && !r.text().contains("HUBSPOT_TIMEOUT_MS"),
        || format!("admin read without token: {} {}", r.status, r.text()),
    )?;
    check(fx.dest.deliveries_for(id).is_empty(), || {
        "delivered with an invalid configuration".into()
    })
}
