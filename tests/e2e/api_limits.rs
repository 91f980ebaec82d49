//! HubSpot API scenarios that need a Worker and a mock of their own: the shared rate governor
//! under a 1,000-read burst, and the 401 → one refresh path of OAuth.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use hubspot_edge_tests::Fixture;
use hubspot_mock::MockConfig;

use super::{check, mock_of, mock_stats, oauth_worker, own_worker, requests_where, Outcome};

/// Reads in the burst scenario.
const BURST_READS: usize = 1_000;
/// Client connections sending them at once.
const BURST_CLIENTS: usize = 10;

/// `GET path` with the admin token and a time limit above the executor's longest wait for a
/// permit (15 s), so that a paced request is not mistaken for a hung one.
fn admin_get_paced(fx: &Fixture, path: &str) -> Result<(u16, String), String> {
    fx.admin_request("GET", path, None, Duration::from_secs(40))
        .map(|r| (r.status, r.text()))
        .map_err(|e| e.to_string())
}

/// 1,000 reads, ten at a time, against the mock's 100-per-10-s rolling limit (docs/hubspot.md
/// §5.1): the gate paces them so that every read succeeds and the mock never answers 429, i.e. no
/// request is sent into a window the governor knows is exhausted. Own Worker and mock: the
/// burst spends the budget for ~2 minutes, which would starve the shared fixture's scenarios.
pub(super) fn hubspot_burst_of_1000_reads_paced_without_429(_: &Fixture) -> Outcome {
    let fx = own_worker(
        "wrangler.burst.toml",
        MockConfig {
            seed_contacts: 50,
            ..MockConfig::default()
        },
    )?;
    let mock = mock_of(&fx)?;
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..BURST_CLIENTS {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= BURST_READS {
                    break;
                }
                let id = i % 50 + 1;
                let path = format!("/admin/hubspot/objects/contacts/{id}?properties=email");
                let failed = match admin_get_paced(&fx, &path) {
                    Ok((200, _)) => None,
                    Ok((status, body)) => Some(format!("read {i}: {status} {body}")),
                    Err(e) => Some(format!("read {i}: {e}")),
                };
                if let Some(f) = failed {
                    if let Ok(mut list) = failures.lock() {
                        list.push(f);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_default();
    check(failures.is_empty(), || {
        format!(
            "{} of {BURST_READS} reads failed; first: {:?}",
            failures.len(),
            failures.iter().take(3).collect::<Vec<_>>()
        )
    })?;
    let stats = mock_stats(mock)?;
    let reads = requests_where(&stats, |k| {
        k.starts_with("GET ") && k.contains("/contacts/")
    });
    check(
        stats["rateLimited"] == 0 && reads == BURST_READS as u64,
        || format!("HubSpot saw {reads} reads (want {BURST_READS}) and these limits: {stats}"),
    )
}

/// OAuth: after the mock expires every issued access token (HubSpot's 401
/// `EXPIRED_AUTHENTICATION`), eight concurrent reads all succeed and the Worker refreshes the
/// token exactly once: the gate makes the refresh single-flight across requests.
pub(super) fn hubspot_oauth_401_refreshed_once(_: &Fixture) -> Outcome {
    let fx = oauth_worker("wrangler.oauth401.toml", None, Duration::from_secs(1800))?;
    let mock = mock_of(&fx)?;
    let (status, body) = admin_get_paced(&fx, "/admin/hubspot/objects/contacts/1")?;
    check(status == 200, || format!("first read: {status} {body}"))?;
    check(mock_stats(mock)?["tokenRefreshes"] == 1, || {
        "the first read did not obtain exactly one token".into()
    })?;
    let r = hubspot_edge_tests::http::post(
        &format!("{}/__mock/expire-tokens", mock.base_url()),
        b"",
        None,
    )?;
    check(r.status == 200 && r.json()?["expired"] == 1, || {
        format!("expire-tokens: {} {}", r.status, r.text())
    })?;
    let results: Vec<Result<(u16, String), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (1..=8)
            .map(|id| {
                let fx = &fx;
                s.spawn(move || {
                    admin_get_paced(
                        fx,
                        &format!("/admin/hubspot/objects/contacts/{}", id % 5 + 1),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("reader panicked".into())))
            .collect()
    });
    for r in &results {
        check(matches!(r, Ok((200, _))), || {
            format!("read after expiry: {r:?}")
        })?;
    }
    let stats = mock_stats(mock)?;
    let unauthorized = fx
        .worker
        .logs_since(0)
        .iter()
        .filter(|l| l.contains("\"hubspot_call\"") && l.contains("\"status\":401"))
        .count();
    check(stats["tokenRefreshes"] == 2 && unauthorized >= 1, || {
        format!("want one refresh after the expiry (2 in all) and a logged 401 ({unauthorized}): {stats}")
    })
}
