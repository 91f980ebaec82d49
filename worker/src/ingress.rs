//! `POST /webhooks/hubspot`: read the raw body once, verify, parse, filter, enqueue, answer.
//!
//! The ingress waits on nothing but queue sends (and, for the rare unparseable body, one KV
//! write), so HubSpot's 5-second deadline (docs/hubspot.md §2.5) is never at risk. Dedupe happens
//! in the consumer: see the README, "Guarantees".

use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue};
use hubspot_edge_core::event::{parse_batch, Element};
use hubspot_edge_core::filter::Filter;
use hubspot_edge_core::ingress::{triage, Received, Triage, TriageCounts};
use hubspot_edge_core::signature::{
    SignatureError, SignedRequest, HEADER_REQUEST_TIMESTAMP, HEADER_SIGNATURE, HEADER_SIGNATURE_V3,
    HEADER_SIGNATURE_VERSION,
};
use hubspot_edge_core::time::iso8601_ms;
use serde_json::json;
use worker::{Date, Env, Request, Response, Result};

use crate::config::ConfigError;
use crate::log::Line;
use crate::metrics;
use crate::queue;
use crate::respond;
use crate::store::{self, DeadLetter, Kind};
use hubspot_edge_core::config::Ingress;
use hubspot_edge_core::metrics::{Counter, Histogram};

pub(crate) async fn handle(mut req: Request, env: &Env, request_id: &str) -> Result<Response> {
    let started = Date::now().as_millis();
    let log = |outcome: &str, status: u16| {
        let took = Date::now().as_millis().saturating_sub(started);
        metrics::count(|m| {
            let result = if status < 300 { "accepted" } else { "rejected" };
            m.add(
                Counter::WebhookRequests,
                &[("outcome", result), ("code", outcome)],
                1,
            );
            m.observe(Histogram::WebhookResponse, &[], took);
        });
        Line::info("webhook")
            .field("request_id", request_id)
            .field("outcome", outcome)
            .field("status", status)
            .field(
                "duration_ms",
                Date::now().as_millis().saturating_sub(started),
            )
    };
    let config = match crate::config::ingress(env) {
        Ok(c) => c,
        // Nothing can be verified, so nothing is accepted: 503, and HubSpot re-sends the batch
        // (up to 10 times over 24 hours, docs/hubspot.md §2.5,
        // <https://developers.hubspot.com/docs/api/webhooks>) until the configuration is fixed.
        Err(e) => {
            log("config_invalid", 503).emit();
            return config_error(&e, request_id).map(|r| r.with_status(503));
        }
    };

    // 413 before reading when the sender declares the size; otherwise (a chunked body) the
    // body is read chunk by chunk and reading stops at the limit, so an unauthenticated sender
    // cannot make the isolate buffer more than MAX_BODY_BYTES (its memory is 128 MB).
    let declared = req
        .headers()
        .get("content-length")?
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > config.max_body_bytes) {
        log("body_too_large", 413).emit();
        return respond::error(413, "body_too_large", "request body exceeds MAX_BODY_BYTES");
    }
    let Some(body) = read_body(&mut req, declared, config.max_body_bytes).await? else {
        log("body_too_large", 413).emit();
        return respond::error(413, "body_too_large", "request body exceeds MAX_BODY_BYTES");
    };

    // The URL HubSpot signed (core: the public base URL, or the raw URL).
    let signed_url = config.signed_url(&req.inner().url());
    let headers = signature_headers(&req)?;
    let now_ms = Date::now().as_millis();
    let signed = SignedRequest {
        method: "POST",
        uri: &signed_url,
        headers: &headers,
        body: &body,
    };
    let version = match verify(&config, &signed, now_ms).await {
        Ok(v) => v,
        Err(e) => {
            log("signature_rejected", 401)
                .field("code", e.code())
                .emit();
            return respond::error(401, e.public_code(), "request signature rejected");
        }
    };

    let received_at = now_ms;
    let elements = match parse_batch(&body) {
        Ok(elements) => elements,
        Err(e) => {
            // Genuine but unparseable: HubSpot would retry it ten times for nothing, so we keep
            // it whole and acknowledge it.
            let letter = DeadLetter {
                id: store::new_id(now_ms),
                kind: Kind::Batch,
                reason: e.code().into(),
                detail: e.to_string(),
                attempts: 0,
                created_at: iso8601_ms(now_ms),
                key: None,
                request_id: request_id.into(),
                received_at,
                payload: std::str::from_utf8(&body).ok().map(|s| s.into()),
                payload_base64: std::str::from_utf8(&body).is_err().then(|| {
                    use base64::Engine as _;
                    base64::engine::general_purpose::STANDARD.encode(&body)
                }),
            };
            let kv = env.kv(store::STATE)?;
            // An invalid retention is the operator's to fix; until then the default applies
            // here rather than losing the body.
            let retention = crate::config::dead_letter_retention(env).unwrap_or_default();
            if let Err(err) = store::put_dead_letter_for(&kv, &letter, retention).await {
                log("store_unavailable", 503)
                    .field("error", err.to_string())
                    .emit();
                return respond::error(503, "store_unavailable", "try again later");
            }
            metrics::count(|m| {
                m.add(
                    Counter::DeadLetters,
                    &[("reason", metrics::code_label(e.code()))],
                    1,
                );
            });
            log("dead_lettered", 200)
                .field("code", e.code())
                .field("dead_letter_id", letter.id.as_str())
                .emit();
            return respond::json(
                200,
                &json!({ "requestId": request_id, "events": 0, "queued": 0, "filtered": 0,
                         "duplicates": 0, "deadLettered": 1, "deadLetterId": letter.id }),
            );
        }
    };

    let counts = match enqueue(env, &elements, &config.filter, received_at, request_id).await {
        Ok(counts) => counts,
        Err(e) => {
            // Nothing is lost: HubSpot retries on 5xx, and whatever did get queued is deduped.
            log("queue_unavailable", 503)
                .field("error", e.to_string())
                .emit();
            return respond::error(503, "queue_unavailable", "try again later");
        }
    };

    metrics::count(|m| counts.count_into(m));
    log("accepted", 200)
        .field("signature_version", version.as_str())
        .field("body_bytes", body.len())
        .field("events", counts.events)
        .field("queued", counts.queued)
        .field("filtered", counts.filtered)
        .field("duplicates", counts.duplicates)
        .field("dead_lettered", counts.dead_lettered)
        .field("by_reference", counts.by_reference)
        .emit();
    respond::json(200, &counts.response(request_id))
}

/// The request body; `None` as soon as a body without `Content-Length` exceeds `limit` bytes
/// (it is read as a stream, and the rest is never read). `declared`: the `Content-Length`,
/// already checked against `limit`.
async fn read_body(
    req: &mut Request,
    declared: Option<u64>,
    limit: u64,
) -> Result<Option<Vec<u8>>> {
    if req.inner().body().is_none() {
        return Ok(Some(Vec::new()));
    }
    if declared.is_some() {
        // Framed by a Content-Length already checked against the limit: the runtime reads no
        // more than that, so the hot path keeps its single read.
        return Ok(Some(req.bytes().await?));
    }
    let mut body = Vec::new();
    let mut stream = req.stream()?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if (body.len() as u64).saturating_add(chunk.len() as u64) > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Hands a parsed batch to the queues as core's [`triage`] sorts it: kept events to `EVENTS`
/// (large ones by reference, their body in KV first), elements that are not events to
/// `DEAD_LETTERS` (or, too large for a message, straight to the store). Used by the ingress and
/// by the admin re-drive.
pub(crate) async fn enqueue(
    env: &Env,
    elements: &[Element<'_>],
    filter: &Filter,
    received_at: u64,
    request_id: &str,
) -> Result<TriageCounts> {
    // The request's trace travels with each event to the consumer.
    let traceparent = crate::log::current_traceparent();
    let received = Received {
        at_ms: received_at,
        request_id,
        traceparent: traceparent.as_deref(),
    };
    let Triage {
        mut queue,
        by_reference,
        dead_letters,
        oversized_dead_letters,
        counts,
    } = triage(elements, filter, received);
    // Rare, so the KV writes are awaited here; if one fails the request fails and HubSpot
    // retries.
    for r in by_reference {
        let kv = env.kv(store::STATE)?;
        store::put_event_body(&kv, &r.store_key, r.event).await?;
        queue.push(r.message);
    }
    if !queue.is_empty() {
        queue::send_all(&env.queue(queue::EVENTS)?, queue).await?;
    }
    if !dead_letters.is_empty() {
        queue::send_all(&env.queue(queue::DEAD_LETTERS)?, dead_letters).await?;
    }
    // The retention is read only for the rare oversized letter, off the common path.
    let retention = if oversized_dead_letters.is_empty() {
        Default::default()
    } else {
        crate::config::dead_letter_retention(env).unwrap_or_default()
    };
    for message in oversized_dead_letters {
        let letter = DeadLetter {
            id: store::new_id(received_at),
            kind: Kind::Message,
            reason: "event_too_large".into(),
            detail: "event exceeds the queue message limit".into(),
            attempts: 0,
            created_at: iso8601_ms(received_at),
            key: None,
            request_id: request_id.into(),
            received_at,
            payload: Some(message.into()),
            payload_base64: None,
        };
        store::put_dead_letter_for(&env.kv(store::STATE)?, &letter, retention).await?;
    }
    Ok(counts)
}

async fn verify(
    config: &Ingress,
    signed: &SignedRequest<'_>,
    now_ms: u64,
) -> std::result::Result<hubspot_edge_core::signature::SignatureVersion, SignatureError> {
    let challenge = config.verifier.challenge(signed, now_ms)?;
    match crate::crypto::digest(
        challenge.algorithm(),
        challenge.hmac_key(),
        challenge.message(),
    )
    .await
    {
        Ok(digest) => challenge.check(&digest),
        // WebCrypto is always present on Workers; should it fail, the software path is exact.
        Err(_) => challenge.check_in_software(),
    }
}

pub(crate) fn signature_headers(req: &Request) -> Result<HeaderMap> {
    let mut map = HeaderMap::with_capacity(4);
    for name in [
        HEADER_SIGNATURE_V3,
        HEADER_REQUEST_TIMESTAMP,
        HEADER_SIGNATURE,
        HEADER_SIGNATURE_VERSION,
    ] {
        if let Some(value) = req.headers().get(name)? {
            if let Ok(value) = HeaderValue::from_str(&value) {
                map.insert(HeaderName::from_static(name), value);
            }
        }
    }
    Ok(map)
}

pub(crate) use hubspot_edge_core::ingress::path_and_query;

/// A configuration error answered to a caller who is not authenticated (the webhook endpoint,
/// an admin request before its token is checked): the stable code only; the detail (key,
/// accepted range) goes to the log; the message is core's (an unset `ADMIN_TOKEN` tells an
/// admin caller that the admin API is disabled).
pub(crate) fn config_error(e: &ConfigError, request_id: &str) -> Result<Response> {
    log_config_error(e, request_id);
    respond::error(500, e.code(), e.public)
}

/// A configuration error answered to an authenticated operator (a valid admin token): the
/// detail too.
pub(crate) fn config_error_for_operator(e: &ConfigError, request_id: &str) -> Result<Response> {
    log_config_error(e, request_id);
    respond::error(500, e.code(), &e.message())
}

fn log_config_error(e: &ConfigError, request_id: &str) {
    Line::error("config_invalid")
        .field("request_id", request_id)
        .field("key", e.key)
        .field("code", e.kind)
        .field("error", e.message())
        .emit();
}
