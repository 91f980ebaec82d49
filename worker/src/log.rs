//! Structured JSON logs: one object per line on `console.log`, which Workers Logs and
//! `wrangler tail` collect as is.
//!
//! Only identifiers, counts, codes and durations are logged: never property values, emails,
//! names, tokens or secrets (the event bodies are not logged at all).

use serde_json::{Map, Value};
use worker::Date;

/// One log line under construction.
#[derive(Debug)]
pub(crate) struct Line {
    fields: Map<String, Value>,
}

impl Line {
    pub(crate) fn info(msg: &str) -> Self {
        Self::new("info", msg)
    }

    pub(crate) fn warn(msg: &str) -> Self {
        Self::new("warn", msg)
    }

    pub(crate) fn error(msg: &str) -> Self {
        Self::new("error", msg)
    }

    fn new(level: &str, msg: &str) -> Self {
        let mut fields = Map::new();
        fields.insert(
            "ts".into(),
            hubspot_edge_core::time::iso8601_ms(Date::now().as_millis()).into(),
        );
        fields.insert("level".into(), level.into());
        fields.insert("msg".into(), msg.into());
        Self { fields }
    }

    pub(crate) fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    pub(crate) fn emit(self) {
        worker::console_log!("{}", Value::Object(self.fields));
    }
}

/// A request id: Cloudflare's `cf-ray` when present, else 16 random hex digits.
pub(crate) fn request_id(cf_ray: Option<String>) -> String {
    cf_ray.filter(|r| !r.is_empty()).unwrap_or_else(random_id)
}

/// 16 hex digits from `Math.random`: unique enough for correlation, not a secret.
pub(crate) fn random_id() -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let half = || (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    format!("{:08x}{:08x}", half(), half())
}
