//! The operator dashboard (issue 12 §4) in a real browser: tests/browser/dashboard.mjs drives
//! Debian's headless Chromium (puppeteer-core) through the page served at `GET /admin/` by
//! this Worker on wrangler dev, and this scenario judges what it saw. Chromium
//! (`scripts/tools.sh`'s `ensure_chromium`) and the npm packages must be there: nothing is
//! skipped.

use std::process::Command;
use std::time::Duration;

use hubspot_edge_tests::{poll_until_ok, repo_root, unique_id, Behavior, Fixture, HubSpotEvent};
use serde_json::Value;

use super::{check, dead_letters_for, Outcome, DEADLINE};

/// Events received in the last hour, as `GET /admin/metrics.json` counts them.
fn received_last_hour(fx: &Fixture) -> Result<u64, String> {
    let r = fx
        .admin_get("/admin/metrics.json?span=hour")
        .map_err(|e| e.to_string())?;
    if r.status != 200 {
        return Err(format!("metrics.json: {} {}", r.status, r.text()));
    }
    let answer = r.json().map_err(|e| e.to_string())?;
    let mut n = 0;
    for bucket in answer["buckets"].as_array().into_iter().flatten() {
        for s in bucket["metrics"]["series"].as_array().into_iter().flatten() {
            let received = s["labels"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|l| l[0] == "stage" && l[1] == "received");
            if s["name"] == "events" && received {
                n += s["value"]["count"].as_u64().unwrap_or(0);
            }
        }
    }
    Ok(n)
}

/// Log in (after a refused token), see a known batch's count, the dead-letter store's size among
/// the gauges, the workflow-executions panel answer for a portal typed in, view and re-drive a
/// dead letter and see it delivered, no console errors, no axe-core WCAG 2.1 A/AA violations. The page's
/// count is bracketed by metrics.json read just before and just after the browser ran (other
/// scenarios send events to the same Worker meanwhile), and before it must already hold this
/// scenario's batch.
pub(super) fn dashboard_in_a_browser_login_counts_redrive_accessible(fx: &Fixture) -> Outcome {
    // The page and its files need no token; the data does.
    for path in ["/admin/", "/admin/app.js", "/admin/app.css"] {
        let r = fx.get(path)?;
        check(r.status == 200, || format!("GET {path}: {}", r.status))?;
    }
    let page = fx.get("/admin/")?;
    check(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        || format!("GET /admin/ content-type {:?}", page.header("content-type")),
    )?;
    check(fx.get("/admin/metrics.json")?.status == 401, || {
        "metrics.json without the token".into()
    })?;

    // A known batch, counted.
    let before = received_last_hour(fx)?;
    let ids: Vec<u64> = (0..7).map(|_| unique_id()).collect();
    let batch: Vec<HubSpotEvent> = ids
        .iter()
        .map(|&id| HubSpotEvent::property_change("contact", id, "firstname", "Dashboard"))
        .collect();
    fx.send_events(&batch)?.expect_status(200)?;
    fx.dest.wait_for_ok(&ids, DEADLINE)?;

    // A dead letter: four dropped connections exhaust FORWARD_MAX_ATTEMPTS (4).
    let lost = unique_id();
    fx.dest.script(lost, vec![Behavior::Drop; 4]);
    fx.send_events(&[HubSpotEvent::property_change(
        "company",
        lost,
        "name",
        "Dashboard Payload Value",
    )])?
    .expect_status(200)?;
    let (letter, _) = hubspot_edge_tests::poll_until(
        "the dead letter",
        DEADLINE,
        Duration::from_millis(500),
        || {
            dead_letters_for(fx, lost)
                .ok()
                .and_then(|v| v.into_iter().next())
        },
    )?;
    let low = poll_until_ok(
        "metrics.json to count the batch",
        DEADLINE,
        Duration::from_millis(300),
        || {
            let n = received_last_hour(fx)?;
            if n >= before + 8 {
                Ok(Some(n))
            } else {
                Err(format!("{n} received, want ≥ {}", before + 8))
            }
        },
    )?;

    // The dead-letter store's gauge has reached the metrics store (set after the letter was
    // written), so the page's first load shows it.
    poll_until_ok(
        "the dead-letter store size gauge",
        DEADLINE,
        Duration::from_millis(300),
        || -> Result<Option<f64>, String> {
            Ok(super::metrics::scrape(fx)?
                .get("hubspot_edge_dead_letter_store_size{}")
                .copied()
                .filter(|n| *n >= 1.0))
        },
    )?;

    let root = repo_root();
    let out = Command::new(root.join("node_modules/.bin/node"))
        .arg(root.join("tests/browser/dashboard.mjs"))
        .env("DASHBOARD_BASE", fx.url(""))
        .env("ADMIN_TOKEN", &fx.admin_token)
        .env("DEAD_LETTER_ID", &letter)
        .current_dir(&root)
        .output()
        .map_err(|e| format!("node: {e}"))?;
    let high = received_last_hour(fx)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    check(out.status.success(), || {
        format!(
            "the browser test failed ({}): {}\n{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .map_err(|e| format!("browser output: {e}: {stdout}"))?;
    let why = || format!("the browser saw: {seen:#}");

    check(seen["landedOn"] == "/admin/", why)?;
    check(
        seen["loginVisibleAfter401"] == true
            && seen["loginError"]
                .as_str()
                .is_some_and(|e| e.contains("401")),
        why,
    )?;
    let on_page = seen["eventsReceived"].as_u64().unwrap_or(0);
    check((low..=high).contains(&on_page), || {
        format!("events received on the page {on_page}, metrics.json said {low}..={high} (≥ {} with this batch)", before + 8)
    })?;
    check(seen["charts"] == 4, why)?;
    // The gauges: the dead-letter store holds at least this scenario's letter.
    let store_size = seen["gauges"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|g| g[0] == "hubspot_edge_dead_letter_store_size")
        .and_then(|g| g[1].as_str()?.parse::<u64>().ok());
    check(store_size.is_some_and(|n| n >= 1), why)?;
    // The executions panel: a prompt without a portal, the portal's list once typed (this
    // Worker runs no actions: none waiting).
    check(
        seen["waitingPrompt"]
            .as_str()
            .is_some_and(|s| s.starts_with("Enter a portal id"))
            && seen["waitingStatus"] == "0 execution(s) waiting in portal 33.",
        why,
    )?;
    let detail = seen["detail"].as_str().unwrap_or_default();
    check(
        detail.contains("retries_exhausted") && detail.contains(&letter),
        why,
    )?;
    check(!detail.contains("Dashboard Payload Value"), || {
        format!("the dead letter's payload value is on the page: {detail}")
    })?;
    check(
        seen["redriveStatus"]
            .as_str()
            .is_some_and(|s| s.contains(&letter)),
        why,
    )?;
    check(
        seen["consoleErrors"].as_array().is_some_and(Vec::is_empty),
        why,
    )?;
    check(seen["loadError"] == "", why)?;
    for axe in ["axeLogin", "axeDashboard"] {
        check(seen[axe].as_array().is_some_and(Vec::is_empty), || {
            format!("axe-core WCAG 2.1 A/AA violations ({axe}): {:#}", seen[axe])
        })?;
    }

    // Re-driven in the browser: delivered once, gone from the store.
    fx.dest.wait_for_ok(&[lost], DEADLINE)?;
    check(fx.dest.delivered_ok_for(lost).len() == 1, || {
        "the re-driven event was not delivered exactly once".into()
    })?;
    let gone = fx.admin_get(&format!("/admin/dead-letters/{letter}"))?;
    check(gone.status == 404, || {
        format!("dead letter still stored: {}", gone.status)
    })
}
