//! Named destinations (`DESTINATIONS`): where rules forward and emit, each with its own URL and
//! Standard Webhooks secret. `FORWARD_URL` / `FORWARD_SECRET` are the destination `default`.
//!
//! ```json
//! { "sales": { "url": "https://sales.example.com/hubspot" },
//!   "ops":   { "url": "https://ops.example.com/hook", "secret": "OPS_HOOK_SECRET" } }
//! ```
//!
//! A destination's secret is read from the Worker secret `secret` names, by default
//! `DESTINATION_<NAME>_SECRET` (the name upper-cased, `-` as `_`: `DESTINATION_SALES_SECRET`),
//! and must be `whsec_<base64>` like `FORWARD_SECRET`. URLs must be https (http only to a
//! loopback host, for local tests), as `FORWARD_URL`.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::config::check_url;
use crate::outbound::WebhookSecret;

/// The destination `FORWARD_URL` and `FORWARD_SECRET` configure.
pub const DEFAULT_DESTINATION: &str = "default";
/// At most this many named destinations: each may get one forward per event, and a queue
/// batch's forwards share the invocation's 6 simultaneous connections.
pub const MAX_DESTINATIONS: usize = 20;

/// `DESTINATIONS` is invalid; the message names the entry (`DESTINATIONS.sales.url: …`), never
/// a secret.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{path}: {detail}")]
pub struct DestinationsError {
    path: String,
    detail: String,
    missing_secret: bool,
}

impl DestinationsError {
    fn new(path: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            detail: detail.into(),
            missing_secret: false,
        }
    }

    /// Stable code: `destinations_invalid`, or `destination_secret_missing` when a
    /// destination's secret is not set.
    pub fn code(&self) -> &'static str {
        if self.missing_secret {
            "destination_secret_missing"
        } else {
            "destinations_invalid"
        }
    }
}

/// One destination.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Where events are POSTed.
    pub url: String,
    /// Signs each delivery (Standard Webhooks).
    pub secret: WebhookSecret,
}

/// Every destination by name, `default` included when `FORWARD_URL` is set.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    by_name: BTreeMap<String, Destination>,
}

impl Destinations {
    /// Only the default destination.
    pub fn default_only(default: Destination) -> Self {
        Self {
            by_name: BTreeMap::from([(DEFAULT_DESTINATION.to_owned(), default)]),
        }
    }

    /// Reads `DESTINATIONS` (module docs) next to `default` (`FORWARD_URL`), with each secret
    /// from `secret(key)`.
    ///
    /// # Errors
    /// [`DestinationsError`] naming the entry: invalid JSON, an unknown key, a bad name or URL,
    /// the name `default`, a missing or invalid secret.
    pub fn from_json(
        json: &str,
        default: Option<Destination>,
        secret: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, DestinationsError> {
        let value: Value = serde_json::from_str(json)
            .map_err(|e| DestinationsError::new("DESTINATIONS", e.to_string()))?;
        let Value::Object(entries) = value else {
            return Err(DestinationsError::new(
                "DESTINATIONS",
                "must be an object: name -> {\"url\", \"secret\"?}",
            ));
        };
        if entries.len() > MAX_DESTINATIONS {
            return Err(DestinationsError::new(
                "DESTINATIONS",
                format!("at most {MAX_DESTINATIONS} destinations"),
            ));
        }
        let mut by_name = BTreeMap::new();
        if let Some(d) = default {
            by_name.insert(DEFAULT_DESTINATION.to_owned(), d);
        }
        for (name, entry) in entries {
            let path = format!("DESTINATIONS.{name}");
            if name == DEFAULT_DESTINATION {
                return Err(DestinationsError::new(
                    path,
                    "`default` is FORWARD_URL and FORWARD_SECRET",
                ));
            }
            super::config::check_name(&name, &path)
                .map_err(|e| DestinationsError::new(path.clone(), e.to_string()))?;
            let d = parse_entry(&name, &entry, &path, &secret)?;
            by_name.insert(name, d);
        }
        Ok(Self { by_name })
    }

    /// The destination called `name`.
    pub fn get(&self, name: &str) -> Option<&Destination> {
        self.by_name.get(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// `DESTINATION_<NAME>_SECRET`.
pub fn default_secret_key(name: &str) -> String {
    format!(
        "DESTINATION_{}_SECRET",
        name.to_ascii_uppercase().replace('-', "_")
    )
}

fn parse_entry(
    name: &str,
    entry: &Value,
    path: &str,
    secret: &impl Fn(&str) -> Option<String>,
) -> Result<Destination, DestinationsError> {
    let empty = Map::new();
    let map = entry.as_object().unwrap_or(&empty);
    if !entry.is_object() {
        return Err(DestinationsError::new(path, "must be an object"));
    }
    if let Some(k) = map
        .keys()
        .find(|k| !["url", "secret"].contains(&k.as_str()))
    {
        return Err(DestinationsError::new(
            format!("{path}.{k}"),
            "unknown key; expected url, secret",
        ));
    }
    let url = match map.get("url") {
        Some(Value::String(u)) => u.trim().to_owned(),
        _ => {
            return Err(DestinationsError::new(
                format!("{path}.url"),
                "missing or not a string",
            ))
        }
    };
    check_url("DESTINATIONS", &url)
        .map_err(|e| DestinationsError::new(format!("{path}.url"), e.code()))?;
    let key = match map.get("secret") {
        None => default_secret_key(name),
        Some(Value::String(k)) if !k.trim().is_empty() => k.trim().to_owned(),
        Some(_) => {
            return Err(DestinationsError::new(
                format!("{path}.secret"),
                "must name a Worker secret",
            ))
        }
    };
    let Some(text) = secret(&key).filter(|s| !s.trim().is_empty()) else {
        return Err(DestinationsError {
            path: format!("{path}.secret"),
            detail: format!("the Worker secret {key} is not set"),
            missing_secret: true,
        });
    };
    let secret = WebhookSecret::parse(&text)
        .map_err(|e| DestinationsError::new(format!("{path}.secret"), format!("{key}: {e}")))?;
    Ok(Destination { url, secret })
}
