//! One signed delivery to the user's system: a Standard Webhooks POST with the event's trace,
//! redirects not followed, raced against the timeout, answered as core's delivery
//! [`Attempt`]. The consumer, the rules' named destinations and the sync's batches all send
//! through here; what follows an attempt is core's `delivery` policy.

use futures_util::future::{select, Either};
use hubspot_edge_core::delivery::Attempt;
use hubspot_edge_core::metrics::Histogram;
use hubspot_edge_core::outbound::{
    HEADER_WEBHOOK_ID, HEADER_WEBHOOK_SIGNATURE, HEADER_WEBHOOK_TIMESTAMP,
};
use hubspot_edge_core::rules::Destination;
use worker::{
    AbortController, Date, Delay, Fetch, Headers, Method, Request, RequestInit, RequestRedirect,
    Result,
};

use crate::config::Forward;
use crate::log::Line;

/// One Standard Webhooks POST of `body` to `FORWARD_URL` (the destination `default`) with
/// `webhook-id` `id`: see [`send_signed_to`].
pub(crate) async fn send_signed(
    config: &Forward,
    id: &str,
    body: &str,
) -> (Attempt, Option<String>) {
    let default = Destination {
        url: config.url.clone(),
        secret: config.secret.clone(),
    };
    send_signed_to(&default, config.timeout_ms, id, body).await
}

/// One Standard Webhooks POST of `body` to `to` (signed with its own secret) with `webhook-id`
/// `id`, redirects not followed, given up after `timeout_ms`: the attempt, and the `Location`
/// of a 3xx answer.
pub(crate) async fn send_signed_to(
    to: &Destination,
    timeout_ms: u64,
    id: &str,
    body: &str,
) -> (Attempt, Option<String>) {
    let now_secs = Date::now().as_millis() / 1000;
    let signature = to.secret.sign(id, now_secs, body.as_bytes());
    let traceparent = crate::log::outgoing_traceparent();

    let build = || -> Result<Request> {
        let headers = Headers::new();
        headers.set("content-type", "application/json")?;
        headers.set(
            "user-agent",
            concat!("hubspot-edge/", env!("CARGO_PKG_VERSION")),
        )?;
        headers.set(HEADER_WEBHOOK_ID, id)?;
        headers.set(HEADER_WEBHOOK_TIMESTAMP, &now_secs.to_string())?;
        headers.set(HEADER_WEBHOOK_SIGNATURE, &signature)?;
        // The event's trace (W3C Trace Context), a new span per attempt.
        if let Some(traceparent) = &traceparent {
            headers.set(hubspot_edge_core::trace::HEADER, traceparent)?;
        }
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            // A 3xx is an answer, not an instruction: core dead-letters it.
            .with_redirect(RequestRedirect::Manual)
            .with_body(Some(body.to_owned().into()));
        Request::new_with_init(&to.url, &init)
    };
    let Ok(request) = build() else {
        // The URL was checked to be http(s) with the configuration; a URL the runtime
        // still refuses is a destination that cannot be reached.
        return (Attempt::NetworkError, None);
    };

    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(request);
    let send = Box::pin(fetch.send_with_signal(&signal));
    let timeout = Box::pin(Delay::from(std::time::Duration::from_millis(timeout_ms)));
    let sent_at = Date::now().as_millis();
    let raced = match select(send, timeout).await {
        Either::Left((result, _)) => Some(result),
        Either::Right(((), _)) => None,
    };
    // Every attempt's time to an answer (or to the timeout, or the network error): the
    // destination's share of the delivery latency.
    let took_ms = Date::now().as_millis().saturating_sub(sent_at);
    crate::metrics::count(|m| m.observe(Histogram::DestinationResponse, &[], took_ms));
    let answer = answer_of(raced, controller, now_secs);
    // One line per attempt, in the event's scope (its request id and trace id).
    Line::info("forward")
        .field("webhook_id", id)
        .field("outcome", describe(answer.0))
        .field("duration_ms", took_ms)
        .emit();
    answer
}

/// What a raced send came to (aborting it when it timed out).
fn answer_of(
    raced: Option<Result<worker::Response>>,
    controller: AbortController,
    now_secs: u64,
) -> (Attempt, Option<String>) {
    match raced {
        Some(Ok(response)) => {
            let header = |name: &str| response.headers().get(name).ok().flatten();
            Attempt::from_answer(
                response.status_code(),
                header("retry-after").as_deref(),
                header("location").as_deref(),
                now_secs,
            )
        }
        Some(Err(_)) => (Attempt::NetworkError, None),
        None => {
            controller.abort();
            (Attempt::TimedOut, None)
        }
    }
}

/// Core's code of the attempt (`status_503`, `timeout`…).
pub(crate) fn describe(attempt: Attempt) -> String {
    attempt.code()
}
