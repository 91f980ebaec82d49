//! Runs core-built HubSpot requests: a permit from the gate (the shared rate governor and OAuth
//! token, [`super::gate`]), one exchange ([`super::transport`]), interpretation and core's
//! call loop (`api::Call`), one log line per attempt.

use std::time::Duration;

use hubspot_edge_core::api::{
    interpret, ApiError, Call, CallFailure, CallStep, GiveUpReason, Outcome, RateLimitHeaders,
    RateLimitPolicy, RequestKind,
};
use hubspot_edge_core::metrics::{Counter, Histogram};
use hubspot_edge_core::ratelimit::{Budget, LimitPolicy, RateLimitObservation};
use serde::de::DeserializeOwned;
use worker::{Date, Delay, Env};

use super::gate;
use super::transport::{send, CallError};
use crate::config::{AccessToken, HubSpotApi, HubSpotAuth};
use crate::log::Line;

/// Sends `request` until the retry policy accepts or gives up, and interprets the body as `T`.
pub(crate) async fn execute<T: DeserializeOwned>(
    config: &HubSpotApi,
    env: &Env,
    kind: RequestKind,
    request: &http::Request<Vec<u8>>,
) -> Result<T, CallError> {
    let budget = if kind == RequestKind::Search {
        Budget::Search
    } else {
        Budget::General
    };
    let template = path_template(request.uri().path());
    let oauth = matches!(config.auth, HubSpotAuth::OAuth { .. });
    // The policy, refresh-once on 401 and the wait cap are core's `Call`.
    let mut call = Call::new(kind, oauth, Call::MAX_WAIT_MS);
    let mut next: Option<AccessToken> = None;
    loop {
        let attempt = call.attempt();
        let token = match next.take() {
            Some(t) => t,
            None => gate::permit(config, env, budget).await?,
        };
        let started = Date::now().as_millis();
        let sent = send(config, request, Some(&token)).await;
        let now = Date::now().as_millis();
        let (status, value, outcome, correlation_id) = match sent {
            Err(e) => (None, None, e, None),
            Ok((status, headers, body)) => {
                if budget == Budget::General {
                    gate::note(observation(&RateLimitHeaders::from_headers(&headers)), now);
                }
                match interpret::<T>(status, &headers, &body) {
                    Ok(v) => (Some(status), Some(v), Outcome::Success, None),
                    Err(e) => {
                        if let ApiError::RateLimited {
                            policy,
                            retry_after,
                            ..
                        } = &e
                        {
                            let policy = limit_policy(policy, kind);
                            let retry_ms = retry_after.map(|r| r.delay_ms(now));
                            gate::report_rate_limited(env, policy, retry_ms).await?;
                        }
                        let correlation = e.body().and_then(|b| b.correlation_id.clone());
                        (Some(status), None, Outcome::Failed(e), correlation)
                    }
                }
            }
        };
        count_call(budget, status, &outcome, now.saturating_sub(started));
        let mut step = call.answered(&outcome, now, js_sys::Math::random());
        log_call(
            request,
            &template,
            status,
            &outcome,
            attempt,
            now.saturating_sub(started),
            correlation_id,
            &step,
        );
        if step == CallStep::RefreshToken {
            // The gate's token cache decides between a newer token, one refresh per token,
            // and "refused" (core's `TokenCache`).
            next = gate::after_refusal(config, env, budget, &token).await?;
            step = call.token_refreshed(next.is_some());
        }
        match step {
            CallStep::Accepted => {
                // `Accepted` only follows `Outcome::Success`, which always carries a value.
                return value.ok_or(CallError::GaveUp {
                    reason: GiveUpReason::Decode,
                    last: outcome,
                    attempts: attempt,
                });
            }
            CallStep::Wait { ms } => {
                if ms > 0 {
                    Delay::from(Duration::from_millis(ms)).await;
                }
            }
            CallStep::RefreshToken => {
                // `token_refreshed` never asks again.
            }
            CallStep::Failed(CallFailure::Throttled { wait_ms }) => {
                return Err(CallError::Throttled { wait_ms });
            }
            CallStep::Failed(CallFailure::GaveUp {
                reason,
                attempts,
                report_refused,
            }) => {
                if report_refused {
                    // A 401 after the refresh: the gate records it (and logs it once).
                    if let Err(e) = gate::report_refused(env, &token).await {
                        Line::warn("hubspot_gate_report_failed")
                            .field("error", format!("{e:?}"))
                            .emit();
                    }
                }
                return Err(CallError::GaveUp {
                    reason,
                    last: outcome,
                    attempts,
                });
            }
        }
    }
}

fn observation(h: &RateLimitHeaders) -> RateLimitObservation {
    let small = |v: Option<u64>| v.map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    RateLimitObservation {
        max: small(h.max),
        remaining: small(h.remaining),
        interval_ms: h.interval_ms,
        daily: h.daily,
        daily_remaining: h.daily_remaining,
    }
}

fn limit_policy(policy: &RateLimitPolicy, kind: RequestKind) -> LimitPolicy {
    match policy {
        RateLimitPolicy::Daily => LimitPolicy::Daily,
        RateLimitPolicy::Secondly => LimitPolicy::Secondly,
        RateLimitPolicy::TenSecondlyRolling => LimitPolicy::TenSecondly,
        RateLimitPolicy::Unknown(_) if kind == RequestKind::Search => LimitPolicy::Secondly,
        RateLimitPolicy::Unknown(_) => LimitPolicy::TenSecondly,
    }
}

/// The path with record ids (all-digit segments) and anything percent-encoded replaced by
/// `{id}`: no ids or values in logs.
pub(crate) fn path_template(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                || s.contains('%')
                || s.contains('@')
            {
                "{id}"
            } else {
                s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One attempt in the metrics: calls by budget and status class, latency by budget, 429s by
/// HubSpot's policy name (a closed set, so labels stay bounded).
fn count_call(budget: Budget, status: Option<u16>, outcome: &Outcome, took_ms: u64) {
    let budget = match budget {
        Budget::Search => "search",
        Budget::General => "burst",
    };
    let class = match (status, outcome) {
        (Some(429), _) => "429",
        (Some(s), _) if s < 300 => "2xx",
        (Some(s), _) if s < 500 => "4xx",
        (Some(_), _) => "5xx",
        (None, Outcome::Timeout) => "timeout",
        (None, _) => "network",
    };
    crate::metrics::count(|m| {
        m.add(
            Counter::HubSpotCalls,
            &[("budget", budget), ("status", class)],
            1,
        );
        m.observe(Histogram::HubSpotLatency, &[("budget", budget)], took_ms);
        if let Outcome::Failed(ApiError::RateLimited { policy, .. }) = outcome {
            let policy = match policy {
                RateLimitPolicy::TenSecondlyRolling => "TEN_SECONDLY_ROLLING",
                RateLimitPolicy::Daily => "DAILY",
                RateLimitPolicy::Secondly => "SECONDLY",
                RateLimitPolicy::Unknown(_) => "other",
            };
            m.add(Counter::HubSpotRateLimited, &[("policy", policy)], 1);
        }
    });
}

#[allow(clippy::too_many_arguments)] // One log line's fields; a struct would only rename them.
fn log_call(
    request: &http::Request<Vec<u8>>,
    template: &str,
    status: Option<u16>,
    outcome: &Outcome,
    attempt: u32,
    duration_ms: u64,
    correlation_id: Option<String>,
    step: &CallStep,
) {
    let (line, decided) = match step {
        CallStep::Accepted => (Line::info("hubspot_call"), "accept".to_owned()),
        CallStep::Wait { ms } | CallStep::Failed(CallFailure::Throttled { wait_ms: ms }) => {
            (Line::warn("hubspot_call"), format!("retry_after_{ms}ms"))
        }
        CallStep::RefreshToken => (Line::warn("hubspot_call"), "refresh_token".to_owned()),
        CallStep::Failed(CallFailure::GaveUp { reason, .. }) => {
            (Line::warn("hubspot_call"), reason.code().to_owned())
        }
    };
    let mut line = line
        .field("method", request.method().as_str())
        .field("path", template)
        .field("attempt", attempt)
        .field("duration_ms", duration_ms)
        .field("outcome", outcome.code())
        .field("decision", decided);
    line = match status {
        Some(s) => line.field("status", s),
        None => line.field("status", serde_json::Value::Null),
    };
    if let Some(c) = correlation_id {
        line = line.field("correlationId", c);
    }
    line.emit();
}
