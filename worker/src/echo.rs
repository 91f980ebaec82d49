//! Echo guards for this integration's own writes to HubSpot: stored in KV before a write, so
//! that the consumer recognises HubSpot's notifications of it (core's [`EchoGuard`]) and does not
//! forward them back. Used by the admin API's updates, the rules' updates and the inbound sync.

use std::collections::BTreeMap;

use hubspot_edge_core::diff::EchoGuard;
use worker::Env;

use crate::log::Line;
use crate::store;

/// Before this integration writes `properties` to a record: stores the echo guard of the mapped
/// ones, when `ENRICHMENT_MAP` maps the type, so that the consumer recognises HubSpot's
/// notifications of the write. Returns the guard's key (to drop it if the write fails).
///
/// # Errors
/// An invalid `ENRICHMENT_MAP`; a failed KV write is logged and returns `Ok(None)`.
pub(crate) async fn guard_write(
    env: &Env,
    object_type: &str,
    id: &str,
    properties: &BTreeMap<String, String>,
) -> Result<Option<String>, crate::config::ConfigError> {
    let Some(mapping) = crate::config::enrichment(env)? else {
        return Ok(None);
    };
    let Some(map) = mapping.object(object_type) else {
        return Ok(None);
    };
    let written: BTreeMap<String, String> = properties
        .iter()
        .filter(|(name, _)| map.is_mapped(name))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if written.is_empty() {
        return Ok(None);
    }
    let guard = EchoGuard::new(map, id, &written);
    let key = store::echo_key(hubspot_edge_core::object_type::event_name(object_type), id);
    let stored = match (env.kv(store::STATE), serde_json::to_string(&guard)) {
        (Ok(kv), Ok(text)) => store::put_text(&kv, &key, text, Some(store::ECHO_TTL_SECS))
            .await
            .map_err(|e| e.to_string()),
        (Err(e), _) => Err(e.to_string()),
        (_, Err(e)) => Err(e.to_string()),
    };
    match stored {
        Ok(()) => Ok(Some(key)),
        Err(e) => {
            Line::warn("echo_guard_write_failed")
                .field("error", e)
                .emit();
            Ok(None)
        }
    }
}

/// Drops an echo guard stored by [`guard_write`] for a write that failed.
pub(crate) async fn drop_guard(env: &Env, key: &str) {
    if let Ok(kv) = env.kv(store::STATE) {
        if let Err(e) = store::delete(&kv, key).await {
            Line::warn("echo_guard_delete_failed")
                .field("error", e.to_string())
                .emit();
        }
    }
}
