//! One HTTP exchange with HubSpot (a core-built request in, the status, headers and body out,
//! within the configured timeout) and the errors of a call. The bottom of the HubSpot modules:
//! the executor, the gate and the OAuth refresh all send through here, and it depends on none of
//! them.

use std::time::Duration;

use futures_util::future::{select, Either};
pub(crate) use hubspot_edge_core::api::CallError;
use hubspot_edge_core::api::Outcome;
use worker::{AbortController, Delay, Fetch, Headers, Method, Request, RequestInit};

use crate::config::{AccessToken, HubSpotApi};

/// One attempt: `Ok((status, headers, body))`, or `Err(Outcome::Timeout | Outcome::Network)`.
/// `token`: the bearer token, if any.
pub(crate) async fn send(
    config: &HubSpotApi,
    request: &http::Request<Vec<u8>>,
    token: Option<&AccessToken>,
) -> Result<(u16, http::HeaderMap, Vec<u8>), Outcome> {
    let Ok(js_request) = to_worker_request(request, token) else {
        return Err(Outcome::Network);
    };
    let controller = AbortController::default();
    let signal = controller.signal();
    let exchange = Box::pin(async {
        let mut response = Fetch::Request(js_request).send_with_signal(&signal).await?;
        let status = response.status_code();
        let mut headers = http::HeaderMap::new();
        for (name, value) in response.headers().entries() {
            if let (Ok(n), Ok(v)) = (
                http::header::HeaderName::from_bytes(name.as_bytes()),
                http::header::HeaderValue::from_str(&value),
            ) {
                headers.append(n, v);
            }
        }
        let body = response.bytes().await?;
        Ok::<_, worker::Error>((status, headers, body))
    });
    let timeout = Box::pin(Delay::from(Duration::from_millis(config.timeout_ms)));
    let raced = match select(exchange, timeout).await {
        Either::Left((Ok(answer), _)) => Ok(answer),
        Either::Left((Err(_), _)) => Err(Outcome::Network),
        Either::Right(((), _)) => {
            controller.abort();
            Err(Outcome::Timeout)
        }
    };
    raced
}

fn to_worker_request(
    request: &http::Request<Vec<u8>>,
    token: Option<&AccessToken>,
) -> worker::Result<Request> {
    let headers = Headers::new();
    for (name, value) in request.headers() {
        if let Ok(v) = value.to_str() {
            headers.set(name.as_str(), v)?;
        }
    }
    if let Some(token) = token {
        headers.set("authorization", &format!("Bearer {}", token.as_str()))?;
    }
    headers.set(
        "user-agent",
        concat!("hubspot-edge/", env!("CARGO_PKG_VERSION")),
    )?;
    // A call made for an event continues its trace (a new span per attempt).
    if let Some(traceparent) = crate::log::outgoing_traceparent() {
        headers.set(hubspot_edge_core::trace::HEADER, &traceparent)?;
    }
    let mut init = RequestInit::new();
    init.with_method(Method::from(request.method().as_str().to_owned()))
        .with_headers(headers);
    if !request.body().is_empty() {
        init.with_body(Some(
            js_sys::Uint8Array::from(request.body().as_slice()).into(),
        ));
    }
    Request::new_with_init(&request.uri().to_string(), &init)
}
