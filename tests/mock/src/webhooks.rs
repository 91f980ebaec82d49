//! Webhook emitter (docs/hubspot.md §2): API writes become HubSpot-shaped event batches, POSTed by
//! a background thread, signed v1 + v3 (§1), and retried like HubSpot (§2.5).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use hubspot_edge_core::signature::{sign_v1, sign_v3, ClientSecret};
use serde_json::{json, Value};

use super::store::Kind;
use super::{lock, Shared};

/// "Each request can contain up to 100 events." (§2.4)
const MAX_BATCH: usize = 100;

/// Where and how the mock delivers webhooks.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// The app's target URL (v3 is signed over exactly this string).
    pub url: String,
    /// The app's client secret (signing key).
    pub secret: String,
    /// `appId` in events.
    pub app_id: u64,
    /// `portalId` in events.
    pub portal_id: u64,
    /// Delay before each retry (HubSpot spreads 10 retries over 24 h; tests want ms).
    pub retry_delay: Duration,
    /// Events emitted within this window of the first go out in one batch.
    pub batch_window: Duration,
    /// Retries after the first attempt (§2.5: 10).
    pub max_retries: u32,
    /// An answer slower than this is a failed attempt (§2.5: 5 s).
    pub timeout: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            secret: String::new(),
            app_id: 1_160_452,
            portal_id: 33,
            retry_delay: Duration::from_secs(10),
            batch_window: Duration::from_millis(100),
            max_retries: 10,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The `contact` in `contact.creation`; custom objects use the generic `object.*` (§2.3).
fn prefix(kind: Kind) -> &'static str {
    match kind {
        Kind::Contact => "contact",
        Kind::Company => "company",
        Kind::Deal => "deal",
        Kind::Ticket => "ticket",
        Kind::Custom(_) => "object",
    }
}

/// A stable subscription id per subscription type.
fn subscription_id(kind: Kind, event: &str) -> u64 {
    let base = match kind {
        Kind::Contact => 100,
        Kind::Company => 200,
        Kind::Deal => 300,
        Kind::Ticket => 400,
        Kind::Custom(_) => 500,
    };
    base + match event {
        "creation" => 1,
        "deletion" => 2,
        "propertyChange" => 3,
        "merge" => 4,
        "restore" => 5,
        _ => 9,
    }
}

/// One change, before batching (`appId`/`portalId` are filled in by the emitter).
#[allow(clippy::too_many_arguments)]
pub(super) fn event(
    event_id: u64,
    kind: Kind,
    what: &str,
    object_id: u64,
    occurred_at: u64,
    property: Option<(&str, &str)>,
) -> Value {
    let mut v = json!({
        "eventId": event_id,
        "subscriptionId": subscription_id(kind, what),
        "occurredAt": occurred_at,
        "subscriptionType": format!("{}.{what}", prefix(kind)),
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "API",
    });
    if let Some(o) = v.as_object_mut() {
        match what {
            // `changeFlag` values seen in real deliveries (§2.2, undocumented enum).
            "creation" => {
                o.insert("changeFlag".into(), json!("CREATED"));
            }
            "deletion" => {
                o.insert("changeFlag".into(), json!("DELETED"));
            }
            _ => {}
        }
        if let Some((name, value)) = property {
            o.insert("propertyName".into(), json!(name));
            o.insert("propertyValue".into(), json!(value));
        }
        if let Kind::Custom(_) = kind {
            o.insert("objectTypeId".into(), json!(kind.object_type_id()));
        }
    }
    v
}

/// The emitter thread: batches, signs, posts, retries. Ends when the sender is dropped or
/// `stop` is set.
pub(super) fn run(
    config: &WebhookConfig,
    rx: &Receiver<Value>,
    shared: &Arc<Shared>,
    stop: &AtomicBool,
) {
    let secret = ClientSecret::new(config.secret.as_bytes());
    loop {
        let Ok(first) = rx.recv() else { return };
        let mut batch = vec![first];
        let deadline = Instant::now() + config.batch_window;
        while batch.len() < MAX_BATCH {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(e) => batch.push(e),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        for e in &mut batch {
            if let Some(o) = e.as_object_mut() {
                o.insert("appId".into(), json!(config.app_id));
                o.insert("portalId".into(), json!(config.portal_id));
            }
        }
        deliver(config, &secret, &mut batch, shared, stop);
        if stop.load(Ordering::Relaxed) {
            return;
        }
    }
}

fn deliver(
    config: &WebhookConfig,
    secret: &ClientSecret,
    batch: &mut [Value],
    shared: &Shared,
    stop: &AtomicBool,
) {
    lock(&shared.data).stats.webhook_events += batch.len() as u64;
    for attempt in 0..=config.max_retries {
        // Read per attempt: the target may be set (or moved) after the mock started.
        let url = lock(&shared.data)
            .webhook_url
            .clone()
            .unwrap_or_else(|| config.url.clone());
        if stop.load(Ordering::Relaxed) {
            return;
        }
        for e in batch.iter_mut() {
            e["attemptNumber"] = json!(attempt);
        }
        let body = serde_json::to_vec(&*batch).unwrap_or_default();
        let timestamp = lock(&shared.data).now_ms().to_string();
        let v1 = sign_v1(secret, &body);
        let v3 = sign_v3(secret, "POST", &url, &body, &timestamp);
        let result = crate::http::request_with_timeout(
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("x-hubspot-signature", v1.as_str()),
                ("x-hubspot-signature-version", "v1"),
                ("x-hubspot-signature-v3", v3.as_str()),
                ("x-hubspot-request-timestamp", timestamp.as_str()),
            ],
            Some(&body),
            config.timeout,
        );
        let ok = result
            .as_ref()
            .is_ok_and(crate::http::HttpResponse::is_success);
        {
            let mut data = lock(&shared.data);
            data.stats.webhook_attempts += 1;
            if ok {
                data.stats.webhook_delivered += 1;
            } else {
                data.stats.webhook_failed += 1;
            }
        }
        if ok {
            return;
        }
        // Sleep in slices so that dropping the mock does not wait out a long retry delay.
        let until = Instant::now() + config.retry_delay;
        while Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            thread::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(10)),
            );
        }
    }
}
