//! `GET /admin/hubspot/diagnostics/overhead?type=contacts&id=1&n=20`: what the executor adds to
//! a HubSpot call, measured where it runs.
//!
//! Alternates `n` bare `fetch`es of one record read (the same request, the same token, no gate,
//! no interpretation) with `n` reads through the executor (gate permit, fetch, interpretation,
//! retry policy), timing each inside the Worker, and answers the mean and median of both and
//! their difference. The gap is mostly the gate's Durable Object round trip, which depends on
//! where the object lives relative to this location; run it from the locations you care about.
//!
//! The bare reads bypass the governor, so `n` is capped at 20 (40 requests with the executor's):
//! well under HubSpot's smallest burst limit (docs/hubspot.md §5.1, 100 per 10 s).

use hubspot_edge_core::api::{ReadOptions, RequestKind, SimpleObject};
use hubspot_edge_core::ratelimit::Budget;
use serde_json::{json, Value};
use worker::{Date, Env, Request, Response, Result};

use super::{error_response, executor, gate, transport};
use crate::config::HubSpotApi;
use crate::respond;

/// The most bare/executor pairs per call.
const MAX_PAIRS: usize = 20;

pub(super) async fn overhead(req: &Request, config: &HubSpotApi, env: &Env) -> Result<Response> {
    let mut object_type = "contacts".to_owned();
    let mut id = "1".to_owned();
    let mut n = 10usize;
    for (k, v) in req.url()?.query_pairs() {
        match k.as_ref() {
            "type" => object_type = v.into_owned(),
            "id" => id = v.into_owned(),
            "n" => n = v.parse().unwrap_or(n),
            _ => {}
        }
    }
    let n = n.clamp(1, MAX_PAIRS);
    let request = config
        .api
        .read_object(&object_type, &id, &ReadOptions::default());
    // One permit for the token the bare fetches use (OAuth: the gate's current token).
    let token = match gate::permit(config, env, Budget::General).await {
        Ok(t) => t,
        Err(e) => return error_response(&e),
    };
    let mut bare = Vec::with_capacity(n);
    let mut governed = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Date::now().as_millis();
        match transport::send(config, &request, Some(&token)).await {
            Ok((200, _, _)) => {}
            Ok((status, _, _)) => {
                return respond::error(
                    502,
                    "diagnostics_failed",
                    &format!("the bare read answered {status}; use an id that exists"),
                )
            }
            Err(outcome) => return respond::error(502, "diagnostics_failed", outcome.code()),
        }
        bare.push(Date::now().as_millis().saturating_sub(started));

        let started = Date::now().as_millis();
        if let Err(e) =
            executor::execute::<SimpleObject>(config, env, RequestKind::Read, &request).await
        {
            return error_response(&e);
        }
        governed.push(Date::now().as_millis().saturating_sub(started));
    }
    let bare = summary(&mut bare);
    let governed = summary(&mut governed);
    let added =
        governed["mean_ms"].as_f64().unwrap_or(0.0) - bare["mean_ms"].as_f64().unwrap_or(0.0);
    respond::json(
        200,
        &json!({
            "pairs": n,
            "bare_fetch": bare,
            "executor": governed,
            "added_mean_ms": added,
        }),
    )
}

fn summary(samples: &mut [u64]) -> Value {
    samples.sort_unstable();
    let len = samples.len().max(1);
    let mean = samples.iter().sum::<u64>() as f64 / len as f64;
    json!({
        "mean_ms": mean,
        "p50_ms": samples.get(samples.len() / 2).copied().unwrap_or(0),
        "max_ms": samples.last().copied().unwrap_or(0),
    })
}
