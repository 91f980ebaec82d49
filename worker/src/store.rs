//! The dead-letter store in Workers KV: every event or batch we could not handle, with its
//! reason, until an operator re-drives or deletes it, or it expires (`DEAD_LETTER_RETENTION_DAYS`,
//! 14 days by default: a letter may hold personal data).
//!
//! Keys (typed prefixes in one namespace, binding `STATE`):
//! - `dl:{id}`: a dead letter; `id` is `{created ms, 13 digits}-{random}` so lists come oldest
//!   first; the list metadata carries the summary (kind, reason, size), so listing, filtering
//!   by reason and planning a re-drive need no extra reads.
//! - `seen:{dedupe key}`: an event that was forwarded successfully (TTL `DEDUPE_TTL_SECS`).
//! - `evt:{dedupe key}`: an event too large for a queue message (Queues: 128 KB), carried by
//!   reference: the queue message holds this key (TTL [`EVENT_BODY_TTL_SECS`]).
//! - `echo:{objectType}:{id}`: core's `EchoGuard` for this integration's latest write to a
//!   record (TTL [`ECHO_TTL_SECS`]). No portal: the Worker's API credentials address one account.

use hubspot_edge_core::dead_letter::{LetterKind, Retention};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use worker::kv::KvStore;

/// Binding of the KV namespace.
pub(crate) const STATE: &str = "STATE";
const DEAD_LETTER_PREFIX: &str = "dl:";
const SEEN_PREFIX: &str = "seen:";
const ECHO_PREFIX: &str = "echo:";
/// How long an event carried by reference is kept: Queues' longest message retention (14 days)
/// and a day, so it outlives every message that can name it. Dead letters keep their own copy.
pub(crate) const EVENT_BODY_TTL_SECS: u64 = 15 * 24 * 60 * 60;
/// How long an echo guard is kept: long enough for HubSpot's notification of our write to
/// arrive and be consumed, short enough that a person setting the same values later is not
/// taken for our echo (KV's smallest TTL is 60 s).
pub(crate) const ECHO_TTL_SECS: u64 = 600;

/// What a dead letter holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// One event (`payload` is its JSON).
    Event,
    /// A whole webhook body that could not be parsed (`payload` is the body as a string,
    /// or `payloadBase64` when it is not UTF-8).
    Batch,
    /// A queue message in a format we do not know (`payload` is its text).
    Message,
}

impl From<Kind> for LetterKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Event => Self::Event,
            Kind::Batch => Self::Batch,
            Kind::Message => Self::Message,
        }
    }
}

/// A dead letter as stored and as the admin API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetter {
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) reason: String,
    pub(crate) detail: String,
    pub(crate) attempts: u32,
    pub(crate) created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<String>,
    pub(crate) request_id: String,
    pub(crate) received_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) payload_base64: Option<String>,
}

/// The summary kept in KV list metadata (must stay under 1 KB).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    pub(crate) kind: Kind,
    pub(crate) reason: String,
    pub(crate) attempts: u32,
    pub(crate) created_at: String,
    /// Size of the stored JSON (absent on letters stored before it was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) bytes: Option<u64>,
}

pub(crate) fn new_id(now_ms: u64) -> String {
    format!("{now_ms:013}-{}", crate::log::random_id())
}

/// Stores a letter (again: the same id overwrites) until `retention` has passed.
pub(crate) async fn put_dead_letter_for(
    kv: &KvStore,
    letter: &DeadLetter,
    retention: Retention,
) -> worker::Result<()> {
    let text = serde_json::to_string(letter)?;
    let summary = Summary {
        kind: letter.kind,
        reason: letter.reason.clone(),
        attempts: letter.attempts,
        created_at: letter.created_at.clone(),
        bytes: u64::try_from(text.len()).ok(),
    };
    kv.put(&format!("{DEAD_LETTER_PREFIX}{}", letter.id), text)?
        .metadata(summary)?
        .expiration_ttl(retention.ttl_secs())
        .execute()
        .await?;
    Ok(())
}

pub(crate) async fn get_dead_letter(kv: &KvStore, id: &str) -> worker::Result<Option<DeadLetter>> {
    Ok(kv.get(&format!("{DEAD_LETTER_PREFIX}{id}")).json().await?)
}

pub(crate) async fn delete_dead_letter(kv: &KvStore, id: &str) -> worker::Result<()> {
    Ok(kv.delete(&format!("{DEAD_LETTER_PREFIX}{id}")).await?)
}

/// One page of dead letters, oldest first (`limit` ≤ 1,000: KV's largest page, one operation).
pub(crate) async fn list_dead_letters(
    kv: &KvStore,
    limit: u64,
    cursor: Option<String>,
) -> worker::Result<(Vec<(String, Option<Summary>)>, Option<String>)> {
    let mut list = kv.list().prefix(DEAD_LETTER_PREFIX.into()).limit(limit);
    if let Some(c) = cursor {
        list = list.cursor(c);
    }
    let page = list.execute().await?;
    let items = page
        .keys
        .into_iter()
        .map(|k| {
            let id = k.name.trim_start_matches(DEAD_LETTER_PREFIX).to_owned();
            let summary = k.metadata.and_then(|m| serde_json::from_value(m).ok());
            (id, summary)
        })
        .collect();
    Ok((
        items,
        if page.list_complete {
            None
        } else {
            page.cursor
        },
    ))
}

pub(crate) async fn is_seen(kv: &KvStore, key: &str) -> worker::Result<bool> {
    Ok(kv
        .get(&format!("{SEEN_PREFIX}{key}"))
        .text()
        .await?
        .is_some())
}

pub(crate) async fn mark_seen(kv: &KvStore, key: &str, ttl_secs: u64) -> worker::Result<()> {
    kv.put(&format!("{SEEN_PREFIX}{key}"), "1")?
        .expiration_ttl(ttl_secs)
        .execute()
        .await?;
    Ok(())
}

/// The KV key of an echo guard.
pub(crate) fn echo_key(object_type: &str, id: &str) -> String {
    format!("{ECHO_PREFIX}{object_type}:{id}")
}

pub(crate) async fn get_text(kv: &KvStore, key: &str) -> worker::Result<Option<String>> {
    Ok(kv.get(key).text().await?)
}

/// Stores `value` under `key`, with an expiry when `ttl_secs` is given.
pub(crate) async fn put_text(
    kv: &KvStore,
    key: &str,
    value: String,
    ttl_secs: Option<u64>,
) -> worker::Result<()> {
    let mut put = kv.put(key, value)?;
    if let Some(ttl) = ttl_secs {
        put = put.expiration_ttl(ttl);
    }
    put.execute().await?;
    Ok(())
}

pub(crate) async fn delete(kv: &KvStore, key: &str) -> worker::Result<()> {
    Ok(kv.delete(key).await?)
}

/// Stores an event too large for a queue message under `key` (core's
/// `ingress::event_body_key`, the key its message carries).
pub(crate) async fn put_event_body(kv: &KvStore, key: &str, event: String) -> worker::Result<()> {
    put_text(kv, key, event, Some(EVENT_BODY_TTL_SECS)).await
}
