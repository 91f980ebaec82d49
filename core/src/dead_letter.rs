//! Dead letters: the decisions around the store that keeps every event we could not deliver.
//!
//! - [`after_store_failure`]: what the dead-letter consumer does when its write to the store
//!   fails (back off exponentially up to the longest delay Queues allow, then keep the letter
//!   queued at that delay for as long as the store fails). A dead letter is never dropped.
//! - [`Retention`]: how long a stored letter is kept (`DEAD_LETTER_RETENTION_DAYS`).
//! - [`plan_redrive`]: which letters one "re-drive all" call takes, which it skips and where the
//!   next call resumes ([`RedriveCursor`]), bounded so one call stays well inside a Worker
//!   invocation's limits.

use base64::Engine as _;

use crate::delivery::MAX_QUEUE_DELAY_SECS;

// ---------------------------------------------------------------------------------------------
// Store failures

/// First delay after a failed store write; it doubles per attempt.
pub const STORE_RETRY_BASE_SECS: u64 = 2;

/// What to do with a dead letter whose write to the store just failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreFailure {
    /// Queue it again after `delay_secs` (the backoff is still growing).
    Retry {
        /// Delay before the next store attempt.
        delay_secs: u64,
    },
    /// The last resort: the backoff has reached the longest delay Queues allow. Keep the letter
    /// queued at that delay, for as long as the store keeps failing, and raise an alarm (an
    /// error log line) on every attempt. It is never dropped.
    Hold {
        /// Delay before the next store attempt ([`MAX_QUEUE_DELAY_SECS`]).
        delay_secs: u64,
    },
}

impl StoreFailure {
    /// The delay before the next attempt, whichever the case.
    #[must_use]
    pub fn delay_secs(self) -> u64 {
        match self {
            Self::Retry { delay_secs } | Self::Hold { delay_secs } => delay_secs,
        }
    }

    /// Whether this is the last resort ([`StoreFailure::Hold`]).
    #[must_use]
    pub fn is_last_resort(self) -> bool {
        matches!(self, Self::Hold { .. })
    }
}

/// Decides what follows store attempt `attempt` (1-based) that failed: delay
/// `STORE_RETRY_BASE_SECS × 2^(attempt−1)`, capped at Queues' 12-hour maximum delay; from the
/// attempt whose delay reaches the cap on (the 16th: ~18 h of failures), [`StoreFailure::Hold`].
/// No jitter: the letters of one failing batch are few and spread by their own arrival.
#[must_use]
pub fn after_store_failure(attempt: u32) -> StoreFailure {
    let exponent = attempt.saturating_sub(1).min(32);
    let delay = STORE_RETRY_BASE_SECS.saturating_mul(1u64 << exponent);
    if delay >= MAX_QUEUE_DELAY_SECS {
        StoreFailure::Hold {
            delay_secs: MAX_QUEUE_DELAY_SECS,
        }
    } else {
        StoreFailure::Retry { delay_secs: delay }
    }
}

// ---------------------------------------------------------------------------------------------
// Retention

/// How long a dead letter is kept in the store before it expires (it may hold personal data).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    days: u16,
}

/// A retention outside [`Retention::MIN_DAYS`]`..=`[`Retention::MAX_DAYS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be a whole number of days from 1 to 365, got {0}")]
pub struct RetentionOutOfRange(pub u64);

impl RetentionOutOfRange {
    /// Stable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        "retention_out_of_range"
    }
}

impl Retention {
    /// The default: 14 days, the longest Cloudflare Queues keeps a message.
    pub const DEFAULT_DAYS: u16 = 14;
    /// The shortest retention accepted.
    pub const MIN_DAYS: u16 = 1;
    /// The longest retention accepted.
    pub const MAX_DAYS: u16 = 365;

    /// A retention of `days`.
    ///
    /// # Errors
    /// When `days` is not within `1..=365`.
    pub fn from_days(days: u64) -> Result<Self, RetentionOutOfRange> {
        match u16::try_from(days) {
            Ok(d) if (Self::MIN_DAYS..=Self::MAX_DAYS).contains(&d) => Ok(Self { days: d }),
            _ => Err(RetentionOutOfRange(days)),
        }
    }

    /// The retention in days.
    #[must_use]
    pub fn days(self) -> u16 {
        self.days
    }

    /// The retention in seconds: the KV expiration TTL of a stored letter.
    #[must_use]
    pub fn ttl_secs(self) -> u64 {
        u64::from(self.days) * 24 * 60 * 60
    }
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            days: Self::DEFAULT_DAYS,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Arrivals

/// A message of the dead-letter queue read as the letter the store keeps ([`Arrival::read`]);
/// the host adds the letter's id and creation time.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// What the letter holds.
    pub kind: LetterKind,
    /// Stable reason code.
    pub reason: String,
    /// Detail without property values.
    pub detail: String,
    /// Delivery attempts made.
    pub attempts: u32,
    /// The event's dedupe key, when it is one.
    pub key: Option<String>,
    /// The ingress request's id.
    pub request_id: String,
    /// When the ingress received it (Unix ms).
    pub received_at: u64,
    /// The event (or the message's text, for a message of unknown format).
    pub payload: serde_json::Value,
}

impl Arrival {
    /// Reads the queue message `text` received at `now_ms`; `loaded` is the event it carried by
    /// reference, when it did (the letter keeps the event itself, not a key that expires).
    ///
    /// - A [`crate::queue::DeadLetterMessage`]: its reason; `message_invalid` keeps the
    ///   message's text (a [`LetterKind::Message`]), any other reason the event.
    /// - An [`crate::queue::EventMessage`]: the queue itself gave up on it (the consumer
    ///   failed `max_retries` times): `queue_retries_exhausted`.
    /// - Anything else: `message_unknown`, its text kept.
    pub fn read(text: &str, now_ms: u64, loaded: Option<&str>) -> Self {
        use crate::queue::{DeadLetterMessage, EventMessage, OwnedEvent};
        let as_value = |raw: &serde_json::value::RawValue| {
            let text = loaded.unwrap_or(raw.get());
            serde_json::from_str(text).unwrap_or_else(|_| text.into())
        };
        if let Ok(m) = serde_json::from_str::<DeadLetterMessage<OwnedEvent>>(text) {
            let (kind, payload) = if m.reason == "message_invalid" {
                let payload = serde_json::from_str::<String>(m.event.get())
                    .map_or_else(|_| as_value(&m.event), Into::into);
                (LetterKind::Message, payload)
            } else {
                (LetterKind::Event, as_value(&m.event))
            };
            return Self {
                kind,
                reason: m.reason,
                detail: m.detail,
                attempts: m.attempts,
                key: m.key,
                request_id: m.request_id,
                received_at: m.received_at,
                payload,
            };
        }
        if let Ok(m) = serde_json::from_str::<EventMessage<OwnedEvent>>(text) {
            return Self {
                kind: LetterKind::Event,
                reason: "queue_retries_exhausted".into(),
                detail: "the queue's max_retries was reached".into(),
                attempts: m.attempt,
                key: Some(m.key),
                request_id: m.request_id,
                received_at: m.received_at,
                payload: as_value(&m.event),
            };
        }
        Self {
            kind: LetterKind::Message,
            reason: "message_unknown".into(),
            detail: "not a hubspot-edge queue message".into(),
            attempts: 0,
            key: None,
            request_id: String::new(),
            received_at: now_ms,
            payload: text.into(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Re-drive planning

/// What a stored letter holds, as its list entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LetterKind {
    /// One event.
    Event,
    /// A whole webhook body.
    Batch,
    /// A queue message in a format we do not know: never re-drivable.
    Message,
}

/// One entry of a listing of the store (no payload: what the list metadata carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed<'a> {
    /// The letter's id. Ids sort in creation order, and listings come sorted by id.
    pub id: &'a str,
    /// Its kind; `None` when the entry carries no metadata.
    pub kind: Option<LetterKind>,
    /// Its reason code; `None` when the entry carries no metadata.
    pub reason: Option<&'a str>,
    /// Its size in bytes, when known.
    pub bytes: Option<u64>,
}

/// Why a letter was not re-driven (it stays in the store).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// A queue message of unknown format: there is nothing to re-drive.
    NotRedrivable,
    /// The letter has no payload.
    PayloadMissing,
    /// The payload still does not parse (an event missing a field, a body that is not a batch).
    StillInvalid,
}

impl SkipReason {
    /// Stable code.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::NotRedrivable => "not_redrivable",
            Self::PayloadMissing => "payload_missing",
            Self::StillInvalid => "still_invalid",
        }
    }
}

/// Bounds on one re-drive call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RedriveLimits {
    /// Letters handled (taken or skipped) per call.
    pub max_letters: usize,
    /// Payload bytes taken per call (at least one letter is always taken).
    pub max_bytes: u64,
}

impl RedriveLimits {
    /// Largest `max_letters` a caller may ask for.
    ///
    /// Per call the Worker makes at most 1 KV list + `max_letters` KV gets + `max_letters` KV
    /// deletes (≤ 201 of the 1,000 KV operations an invocation may make), plus the queue
    /// sends of what it takes (≤ 100 messages and 256 KB per `sendBatch`, so a few calls for
    /// [`RedriveLimits::DEFAULT`]'s byte budget, one more per whole webhook body).
    pub const MAX_LETTERS: usize = 100;
    /// The default: 100 letters, 1 MiB of payload.
    pub const DEFAULT: Self = Self {
        max_letters: Self::MAX_LETTERS,
        max_bytes: 1024 * 1024,
    };
}

impl Default for RedriveLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Size assumed for a letter whose listing does not say (Queues' largest message).
pub const ASSUMED_LETTER_BYTES: u64 = 128 * 1024;

/// Where a "re-drive all" resumes: a page of the store's listing (`None`: the first page) and
/// the last letter of that page already handled.
///
/// The listing's own cursor can only resume at a page boundary, so the id is what makes a
/// resume in the middle of a page exact: ids sort in listing order, and everything up to `after`
/// was handled (re-driven and deleted, or skipped and left in place), whether or not an
/// eventually consistent listing still shows the deleted ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedriveCursor {
    /// The listing cursor of the page to list (`None`: from the start).
    pub page: Option<String>,
    /// Entries of that page up to and including this id were handled.
    pub after: Option<String>,
}

/// A cursor that did not come from [`RedriveCursor::encode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this API returned")]
pub struct CursorInvalid;

impl CursorInvalid {
    /// Stable code.
    #[must_use]
    pub fn code(&self) -> &'static str {
        "cursor_invalid"
    }
}

const CURSOR_VERSION: &str = "r1";

impl RedriveCursor {
    /// The opaque, URL-safe text form (base64url without padding).
    #[must_use]
    pub fn encode(&self) -> String {
        let text = format!(
            "{CURSOR_VERSION}\n{}\n{}",
            self.after.as_deref().unwrap_or(""),
            self.page.as_deref().unwrap_or("")
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// Parses what [`RedriveCursor::encode`] produced.
    ///
    /// # Errors
    /// When `text` is not such a cursor.
    pub fn parse(text: &str) -> Result<Self, CursorInvalid> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| CursorInvalid)?;
        let text = String::from_utf8(bytes).map_err(|_| CursorInvalid)?;
        let mut parts = text.splitn(3, '\n');
        let (Some(CURSOR_VERSION), Some(after), Some(page)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(CursorInvalid);
        };
        if !after.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(CursorInvalid);
        }
        let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        Ok(Self {
            page: some(page),
            after: some(after),
        })
    }
}

/// The query of `GET /admin/dead-letters`: `limit` (default 100, 1 to 1,000: one KV list),
/// `cursor` (the listing's), `reason` (only letters with this reason code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Keys listed.
    pub limit: u64,
    /// The listing cursor to continue from.
    pub cursor: Option<String>,
    /// Only letters with this reason.
    pub reason: Option<String>,
}

impl ListQuery {
    /// Reads the query's `pairs`: an unknown key is ignored, an empty value or a `limit` that
    /// is not a number is as if absent, a `limit` out of range is clamped.
    pub fn parse(pairs: &[(String, String)]) -> Self {
        let mut query = Self {
            limit: 100,
            cursor: None,
            reason: None,
        };
        for (k, v) in pairs {
            match k.as_str() {
                "limit" => query.limit = v.parse::<u64>().unwrap_or(100).clamp(1, 1000),
                "cursor" if !v.is_empty() => query.cursor = Some(v.clone()),
                "reason" if !v.is_empty() => query.reason = Some(v.clone()),
                _ => {}
            }
        }
        query
    }

    /// Whether a listed letter with this `reason` (`None`: the entry has no metadata) is shown.
    /// With `reason` asked, a page may show fewer (or none): the caller follows the cursor.
    pub fn keeps(&self, reason: Option<&str>) -> bool {
        self.reason
            .as_deref()
            .is_none_or(|wanted| reason == Some(wanted))
    }
}

/// The query of `POST /admin/dead-letters/redrive`: `cursor` (a [`RedriveCursor`]), `reason`,
/// `limit` (letters per call, 1 to [`RedriveLimits::MAX_LETTERS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveQuery {
    /// Where this call resumes.
    pub cursor: RedriveCursor,
    /// Only letters with this reason.
    pub reason: Option<String>,
    /// This call's bounds.
    pub limits: RedriveLimits,
}

impl RedriveQuery {
    /// Reads the query's `pairs` as [`ListQuery::parse`] does.
    ///
    /// # Errors
    /// When `cursor` is not one [`RedriveCursor::encode`] produced.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, CursorInvalid> {
        let mut query = Self {
            cursor: RedriveCursor::default(),
            reason: None,
            limits: RedriveLimits::DEFAULT,
        };
        for (k, v) in pairs {
            match k.as_str() {
                "cursor" if !v.is_empty() => query.cursor = RedriveCursor::parse(v)?,
                "reason" if !v.is_empty() => query.reason = Some(v.clone()),
                "limit" => {
                    query.limits.max_letters = v
                        .parse::<usize>()
                        .unwrap_or(RedriveLimits::MAX_LETTERS)
                        .clamp(1, RedriveLimits::MAX_LETTERS);
                }
                _ => {}
            }
        }
        Ok(query)
    }
}

/// Where a stored letter goes when it is re-driven, read from its kind and payload
/// ([`RedriveRoute::of`]); the host performs it and then deletes the letter.
#[derive(Debug, Clone, PartialEq)]
pub enum RedriveRoute {
    /// A record HubSpot refused on an inbound write (`"source": "inbound"`): back to its
    /// type's pending writes, the payload as it is.
    Inbound,
    /// A workflow action's completion HubSpot refused (`"source": "action"`): back to its
    /// portal's batcher, the payload as it is.
    Action,
    /// A record the outbound sync could not deliver: its type's coordinator reads it again.
    Sync(crate::sync::SyncLetter),
    /// A rule's effect ([`crate::rules::EFFECT_SOURCE`]): back on the events queue under its
    /// own key, carried out again.
    Effect {
        /// The letter's dedupe key.
        key: String,
        /// The effect's JSON, as queued.
        json: String,
    },
    /// One event: back on the events queue under its own dedupe key, as on its first trip (the
    /// `webhook-id` the destination sees), so re-driving it twice delivers it once.
    Event {
        /// The letter's key, or the event's own ([`crate::dedupe::DedupeKey::of`]).
        key: String,
        /// The event's JSON.
        json: String,
    },
    /// A whole webhook body, enqueued again as the ingress does.
    Batch(Vec<u8>),
}

impl RedriveRoute {
    /// The route of a letter of `kind` with its `payload` (JSON), its `payload_base64` (a
    /// body that was not UTF-8) and its dedupe `key`; or why it cannot be re-driven as it is.
    ///
    /// # Errors
    /// The [`SkipReason`]: a message of unknown format, no payload, or one that still does not
    /// parse (an event missing a field, a body that is not a batch, an effect without key).
    pub fn of(
        kind: LetterKind,
        payload: Option<&serde_json::Value>,
        payload_base64: Option<&str>,
        key: Option<&str>,
    ) -> Result<Self, SkipReason> {
        match kind {
            LetterKind::Message => Err(SkipReason::NotRedrivable),
            LetterKind::Batch => {
                let body = match (payload, payload_base64) {
                    (Some(serde_json::Value::String(s)), _) => s.clone().into_bytes(),
                    (_, Some(b64)) => base64::engine::general_purpose::STANDARD
                        .decode(b64)
                        .unwrap_or_default(),
                    _ => return Err(SkipReason::PayloadMissing),
                };
                if crate::event::parse_batch(&body).is_err() {
                    return Err(SkipReason::StillInvalid);
                }
                Ok(Self::Batch(body))
            }
            LetterKind::Event => {
                let payload = payload.ok_or(SkipReason::PayloadMissing)?;
                if payload["source"] == "inbound" {
                    return Ok(Self::Inbound);
                }
                if payload["source"] == "action" {
                    return Ok(Self::Action);
                }
                if let Some(letter) = crate::sync::SyncLetter::parse(payload) {
                    return Ok(Self::Sync(letter));
                }
                let json = serde_json::to_string(payload).map_err(|_| SkipReason::StillInvalid)?;
                if payload["source"] == crate::rules::EFFECT_SOURCE {
                    let (Some(key), Some(_)) = (key, crate::rules::EffectMessage::parse(&json))
                    else {
                        return Err(SkipReason::StillInvalid);
                    };
                    return Ok(Self::Effect {
                        key: key.to_owned(),
                        json,
                    });
                }
                let raw = serde_json::value::RawValue::from_string(json)
                    .map_err(|_| SkipReason::StillInvalid)?;
                let Ok(event) = crate::event::Event::parse(&raw) else {
                    return Err(SkipReason::StillInvalid);
                };
                let key = key.map_or_else(
                    || crate::dedupe::DedupeKey::of(&event).as_str().to_owned(),
                    str::to_owned,
                );
                Ok(Self::Event {
                    key,
                    json: raw.get().to_owned(),
                })
            }
        }
    }
}

/// What one re-drive call does with one page of the listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedrivePlan<'a> {
    /// Letters to read and re-drive, in order. Each is deleted once re-driven.
    pub take: Vec<&'a str>,
    /// Letters left in place, reported with why.
    pub skip: Vec<(&'a str, SkipReason)>,
    /// Where the next call resumes; `None` when the whole store has been gone through.
    pub next: Option<RedriveCursor>,
    /// Matching letters of this page left for later calls (more may follow on later pages
    /// when `next` is set).
    pub remaining: usize,
}

/// Plans one re-drive call over one listed `page`.
///
/// - `page_cursor` is the listing cursor `page` was listed with, `next_page` the cursor of the
///   page after it (`None`: this is the last page), `after` the id up to which this page was
///   already handled (from the [`RedriveCursor`]).
/// - `reason`, when given, restricts the call to letters with this reason code; the others
///   are neither taken nor reported. A letter listed without metadata matches no reason.
/// - Letters of kind [`LetterKind::Message`] are skipped without being read.
/// - At most `limits.max_letters` letters are handled, and taking stops once their bytes reach
///   `limits.max_bytes` (but one letter is always taken, so every call makes progress).
#[must_use]
pub fn plan_redrive<'a>(
    page: &[Listed<'a>],
    page_cursor: Option<&str>,
    next_page: Option<&str>,
    after: Option<&str>,
    reason: Option<&str>,
    limits: RedriveLimits,
) -> RedrivePlan<'a> {
    let max_letters = limits.max_letters.clamp(1, RedriveLimits::MAX_LETTERS);
    let mut plan = RedrivePlan {
        take: Vec::new(),
        skip: Vec::new(),
        next: None,
        remaining: 0,
    };
    let mut bytes = 0u64;
    let mut last_handled: Option<&'a str> = None;
    let mut stopped = false;
    for entry in page {
        if after.is_some_and(|a| entry.id <= a) {
            continue;
        }
        if reason.is_some_and(|r| entry.reason != Some(r)) {
            continue;
        }
        let handled = plan.take.len() + plan.skip.len();
        if stopped || handled >= max_letters || (!plan.take.is_empty() && bytes >= limits.max_bytes)
        {
            stopped = true;
            plan.remaining += 1;
            continue;
        }
        if entry.kind == Some(LetterKind::Message) {
            plan.skip.push((entry.id, SkipReason::NotRedrivable));
        } else {
            bytes = bytes.saturating_add(entry.bytes.unwrap_or(ASSUMED_LETTER_BYTES));
            plan.take.push(entry.id);
        }
        last_handled = Some(entry.id);
    }
    plan.next = if stopped {
        Some(RedriveCursor {
            page: page_cursor.map(str::to_owned),
            after: last_handled.or(after).map(str::to_owned),
        })
    } else {
        next_page.map(|p| RedriveCursor {
            page: Some(p.to_owned()),
            after: None,
        })
    };
    plan
}

/// Pages of a dead-letter listing read to count the store for the size gauge: 10 KV lists of
/// up to 1,000 keys, 1 % of the 1,000 KV operations an invocation may make; beyond
/// `SIZE_PAGES × 1,000` letters the gauge says that many (a lower bound).
pub const SIZE_PAGES: usize = 10;

/// The dead-letter store's size for the metrics gauge: the ids a listing showed (`listed`), with
/// the ids this invocation just wrote added and those it just removed taken out. Workers KV's
/// list may lag a write or delete by up to 60 s
/// (<https://developers.cloudflare.com/kv/concepts/how-kv-works/>), so an invocation corrects
/// it with what it knows; another isolate's writes of the last minute may still be missing.
pub fn store_size<'a>(
    listed: impl IntoIterator<Item = &'a str>,
    written: &[&str],
    removed: &[&str],
) -> u64 {
    let mut ids: std::collections::BTreeSet<&str> = listed.into_iter().collect();
    ids.extend(written.iter().copied());
    for id in removed {
        ids.remove(id);
    }
    ids.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_size_corrects_the_listing_with_own_writes_and_removals() {
        type Ids = &'static [&'static str];
        let cases: &[(Ids, Ids, Ids, u64)] = &[
            // (listed, written, removed, size)
            (&[], &[], &[], 0),
            (&["a", "b"], &[], &[], 2),
            // A letter just written that the list does not show yet.
            (&["a"], &["b"], &[], 2),
            // A letter just written that the list already shows: once.
            (&["a", "b"], &["b"], &[], 2),
            // A letter just removed that the list still shows.
            (&["a", "b"], &[], &["b"], 1),
            // Removed and absent: nothing below zero.
            (&["a"], &[], &["z"], 1),
            (&["a", "a"], &["b", "b"], &["a"], 1),
        ];
        for (listed, written, removed, want) in cases {
            assert_eq!(
                store_size(listed.iter().copied(), written, removed),
                *want,
                "{listed:?} {written:?} {removed:?}"
            );
        }
    }

    #[test]
    fn store_backoff_doubles_then_holds_at_the_queue_maximum() {
        let cases: &[(u32, StoreFailure)] = &[
            (0, StoreFailure::Retry { delay_secs: 2 }),
            (1, StoreFailure::Retry { delay_secs: 2 }),
            (2, StoreFailure::Retry { delay_secs: 4 }),
            (3, StoreFailure::Retry { delay_secs: 8 }),
            (10, StoreFailure::Retry { delay_secs: 1024 }),
            (15, StoreFailure::Retry { delay_secs: 32_768 }),
            (16, StoreFailure::Hold { delay_secs: 43_200 }),
            (17, StoreFailure::Hold { delay_secs: 43_200 }),
            (100, StoreFailure::Hold { delay_secs: 43_200 }),
            (u32::MAX, StoreFailure::Hold { delay_secs: 43_200 }),
        ];
        for &(attempt, expected) in cases {
            assert_eq!(after_store_failure(attempt), expected, "attempt {attempt}");
        }
        assert!(after_store_failure(16).is_last_resort());
        assert!(!after_store_failure(15).is_last_resort());
        assert_eq!(after_store_failure(40).delay_secs(), MAX_QUEUE_DELAY_SECS);
        // Never a zero delay (a hot loop against a failing store), never beyond Queues' cap.
        for attempt in 0..200 {
            let d = after_store_failure(attempt).delay_secs();
            assert!(
                (1..=MAX_QUEUE_DELAY_SECS).contains(&d),
                "attempt {attempt}: {d}"
            );
        }
    }

    #[test]
    fn retention_accepts_1_to_365_days() {
        assert_eq!(Retention::default().days(), 14);
        assert_eq!(Retention::default().ttl_secs(), 14 * 86_400);
        for (days, ok) in [
            (0, false),
            (1, true),
            (14, true),
            (365, true),
            (366, false),
            (65_550, false),
            (u64::MAX, false),
        ] {
            let r = Retention::from_days(days);
            assert_eq!(r.is_ok(), ok, "{days}: {r:?}");
            if let Ok(r) = r {
                assert_eq!(r.ttl_secs(), days * 86_400);
            } else {
                let e = r.unwrap_err();
                assert_eq!(e.code(), "retention_out_of_range");
                assert!(e.to_string().contains("1 to 365"), "{e}");
            }
        }
    }

    #[test]
    fn cursor_round_trips_and_rejects_foreign_text() {
        let cursors = [
            RedriveCursor::default(),
            RedriveCursor {
                page: Some("AAAB+/x=.y\nz".into()),
                after: Some("0001700000000000-00ff00ff00ff00ff".into()),
            },
            RedriveCursor {
                page: None,
                after: Some("0001700000000000-0123456789abcdef".into()),
            },
            RedriveCursor {
                page: Some("p".into()),
                after: None,
            },
        ];
        for c in cursors {
            let text = c.encode();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{text} is not URL-safe"
            );
            assert_eq!(RedriveCursor::parse(&text), Ok(c));
        }
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        for bad in [
            String::new(),
            "not base64!".into(),
            b64("r2\n\n"),
            b64("r1\nno-newline-after"),
            b64("r1\n../etc\npage"),
        ] {
            assert_eq!(RedriveCursor::parse(&bad), Err(CursorInvalid), "{bad}");
        }
        assert_eq!(CursorInvalid.code(), "cursor_invalid");
    }

    fn ev(id: &str) -> Listed<'_> {
        Listed {
            id,
            kind: Some(LetterKind::Event),
            reason: Some("destination_rejected"),
            bytes: Some(1_000),
        }
    }

    fn limits(max_letters: usize, max_bytes: u64) -> RedriveLimits {
        RedriveLimits {
            max_letters,
            max_bytes,
        }
    }

    #[test]
    fn plan_takes_a_whole_page_and_moves_to_the_next() {
        let page = [ev("01"), ev("02"), ev("03")];
        let plan = plan_redrive(&page, None, Some("P2"), None, None, RedriveLimits::DEFAULT);
        assert_eq!(plan.take, ["01", "02", "03"]);
        assert!(plan.skip.is_empty());
        assert_eq!(plan.remaining, 0);
        assert_eq!(
            plan.next,
            Some(RedriveCursor {
                page: Some("P2".into()),
                after: None
            })
        );
        // The last page: done.
        let plan = plan_redrive(&page, Some("P2"), None, None, None, RedriveLimits::DEFAULT);
        assert_eq!(plan.next, None);
    }

    #[test]
    fn plan_stops_at_the_letter_bound_and_resumes_after_the_last_handled() {
        let page = [ev("01"), ev("02"), ev("03"), ev("04"), ev("05")];
        let plan = plan_redrive(
            &page,
            Some("P1"),
            Some("P2"),
            None,
            None,
            limits(2, u64::MAX),
        );
        assert_eq!(plan.take, ["01", "02"]);
        assert_eq!(plan.remaining, 3);
        let next = plan.next.expect("more to do");
        assert_eq!(
            next,
            RedriveCursor {
                page: Some("P1".into()),
                after: Some("02".into())
            }
        );
        // The next call lists the same page again; an eventually consistent listing may still
        // show the two deleted letters: they are not taken twice.
        let plan = plan_redrive(
            &page,
            next.page.as_deref(),
            Some("P2"),
            next.after.as_deref(),
            None,
            limits(2, u64::MAX),
        );
        assert_eq!(plan.take, ["03", "04"]);
        // ... and a listing that no longer shows them resumes at the same place.
        let plan2 = plan_redrive(
            &page[2..],
            next.page.as_deref(),
            Some("P2"),
            next.after.as_deref(),
            None,
            limits(2, u64::MAX),
        );
        assert_eq!(plan, plan2);
        let next = plan.next.unwrap();
        let plan = plan_redrive(
            &page,
            Some("P1"),
            Some("P2"),
            next.after.as_deref(),
            None,
            limits(2, u64::MAX),
        );
        assert_eq!(plan.take, ["05"]);
        assert_eq!(plan.remaining, 0);
        assert_eq!(plan.next.unwrap().page.as_deref(), Some("P2"));
        // The letter bound is capped at MAX_LETTERS whatever the caller asks.
        let many: Vec<String> = (0..300).map(|i| format!("{i:04}")).collect();
        let page: Vec<Listed<'_>> = many.iter().map(|id| ev(id)).collect();
        let plan = plan_redrive(&page, None, None, None, None, limits(10_000, u64::MAX));
        assert_eq!(plan.take.len(), RedriveLimits::MAX_LETTERS);
        assert_eq!(plan.remaining, 200);
        let plan = plan_redrive(&page, None, None, None, None, limits(0, u64::MAX));
        assert_eq!(plan.take.len(), 1, "a zero bound still makes progress");
    }

    #[test]
    fn plan_skips_what_cannot_be_redriven_without_blocking_the_rest() {
        let page = [
            Listed {
                kind: Some(LetterKind::Message),
                reason: Some("message_unknown"),
                ..ev("01")
            },
            Listed {
                kind: Some(LetterKind::Message),
                reason: Some("message_invalid"),
                ..ev("02")
            },
            ev("03"),
        ];
        let plan = plan_redrive(&page, None, None, None, None, RedriveLimits::DEFAULT);
        assert_eq!(
            plan.skip,
            [
                ("01", SkipReason::NotRedrivable),
                ("02", SkipReason::NotRedrivable)
            ]
        );
        assert_eq!(plan.take, ["03"]);
        assert_eq!(plan.next, None);
        // Skipped letters count toward the bound, and the cursor passes them: a call that
        // handled only skipped letters still moves on.
        let plan = plan_redrive(&page, None, None, None, None, limits(2, u64::MAX));
        assert!(plan.take.is_empty());
        assert_eq!(plan.next.unwrap().after.as_deref(), Some("02"));
        assert_eq!(plan.remaining, 1);
    }

    #[test]
    fn plan_filters_by_reason() {
        let page = [
            ev("01"),
            Listed {
                kind: Some(LetterKind::Batch),
                reason: Some("batch_malformed"),
                ..ev("02")
            },
            Listed {
                kind: None,
                reason: None,
                bytes: None,
                ..ev("03")
            },
            ev("04"),
        ];
        let plan = plan_redrive(
            &page,
            None,
            None,
            None,
            Some("batch_malformed"),
            RedriveLimits::DEFAULT,
        );
        assert_eq!(plan.take, ["02"]);
        let plan = plan_redrive(
            &page,
            None,
            None,
            None,
            Some("destination_rejected"),
            limits(1, u64::MAX),
        );
        assert_eq!(plan.take, ["01"]);
        assert_eq!(plan.remaining, 1, "only 04 matches of the rest");
        let plan = plan_redrive(&page, None, None, None, None, RedriveLimits::DEFAULT);
        assert_eq!(plan.take, ["01", "02", "03", "04"], "no metadata: read it");
    }

    #[test]
    fn plan_stops_at_the_byte_budget_but_always_takes_one() {
        let big = |id| Listed {
            bytes: Some(600),
            ..ev(id)
        };
        let page = [big("01"), big("02"), big("03")];
        let plan = plan_redrive(&page, None, None, None, None, limits(100, 1_000));
        assert_eq!(plan.take, ["01", "02"], "stops once the budget is reached");
        assert_eq!(plan.remaining, 1);
        let plan = plan_redrive(&page, None, None, None, None, limits(100, 10));
        assert_eq!(
            plan.take,
            ["01"],
            "one letter larger than the budget still goes"
        );
        let unknown = [
            Listed {
                bytes: None,
                ..ev("01")
            },
            Listed {
                bytes: None,
                ..ev("02")
            },
        ];
        let plan = plan_redrive(
            &unknown,
            None,
            None,
            None,
            None,
            limits(100, ASSUMED_LETTER_BYTES),
        );
        assert_eq!(
            plan.take,
            ["01"],
            "an unknown size counts as the largest message"
        );
    }

    #[test]
    fn plan_of_a_page_already_handled_moves_on() {
        let page = [ev("01"), ev("02")];
        let plan = plan_redrive(
            &page,
            Some("P1"),
            Some("P2"),
            Some("02"),
            None,
            limits(1, 1),
        );
        assert!(plan.take.is_empty() && plan.skip.is_empty());
        assert_eq!(plan.next.unwrap().page.as_deref(), Some("P2"));
        let plan = plan_redrive(&page, Some("P1"), None, Some("02"), None, limits(1, 1));
        assert_eq!(plan.next, None);
    }

    fn pairs(q: &[(&str, &str)]) -> Vec<(String, String)> {
        q.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn list_query_defaults_clamps_and_filters() {
        let q = ListQuery::parse(&[]);
        assert_eq!((q.limit, q.cursor, q.reason), (100, None, None));
        for (limit, want) in [
            ("0", 1),
            ("5000", 1000),
            ("x", 100),
            ("", 100),
            ("250", 250),
        ] {
            assert_eq!(ListQuery::parse(&pairs(&[("limit", limit)])).limit, want);
        }
        let q = ListQuery::parse(&pairs(&[
            ("cursor", "c1"),
            ("reason", "delivery_failed"),
            ("other", "x"),
        ]));
        assert_eq!(q.cursor.as_deref(), Some("c1"));
        assert!(q.keeps(Some("delivery_failed")));
        assert!(!q.keeps(Some("event_invalid")) && !q.keeps(None));
        let q = ListQuery::parse(&pairs(&[("cursor", ""), ("reason", "")]));
        assert_eq!((q.cursor.clone(), q.reason.clone()), (None, None));
        assert!(q.keeps(None) && q.keeps(Some("any")));
    }

    #[test]
    fn redrive_query_reads_its_cursor_and_bounds_its_limit() {
        let q = RedriveQuery::parse(&[]).expect("empty query");
        assert_eq!(q.cursor, RedriveCursor::default());
        assert_eq!((q.reason, q.limits), (None, RedriveLimits::DEFAULT));
        for (limit, want) in [("0", 1), ("1000", 100), ("x", 100), ("7", 7)] {
            let q = RedriveQuery::parse(&pairs(&[("limit", limit)])).expect("query");
            assert_eq!(q.limits.max_letters, want);
            assert_eq!(q.limits.max_bytes, RedriveLimits::DEFAULT.max_bytes);
        }
        let cursor = RedriveCursor {
            page: Some("p".into()),
            after: Some("0a-1".into()),
        };
        let q = RedriveQuery::parse(&pairs(&[("cursor", &cursor.encode()), ("reason", "r")]))
            .expect("query");
        assert_eq!((q.cursor, q.reason.as_deref()), (cursor, Some("r")));
        assert_eq!(
            RedriveQuery::parse(&pairs(&[("cursor", "nope")])),
            Err(CursorInvalid)
        );
        // An empty cursor is the start.
        assert!(RedriveQuery::parse(&pairs(&[("cursor", "")])).is_ok());
    }

    #[test]
    fn a_letter_is_routed_by_its_kind_and_payload() {
        use serde_json::json;
        let route = |kind, payload: Option<serde_json::Value>, b64: Option<&str>, key| {
            RedriveRoute::of(kind, payload.as_ref(), b64, key)
        };
        assert_eq!(
            route(LetterKind::Message, Some(json!("x")), None, None),
            Err(SkipReason::NotRedrivable)
        );
        assert_eq!(
            route(LetterKind::Event, None, None, None),
            Err(SkipReason::PayloadMissing)
        );
        let inbound = json!({"source": "inbound", "objectType": "contacts"});
        assert_eq!(
            route(LetterKind::Event, Some(inbound), None, None),
            Ok(RedriveRoute::Inbound)
        );
        let action = json!({"source": "action", "callbackId": "c"});
        assert_eq!(
            route(LetterKind::Event, Some(action), None, None),
            Ok(RedriveRoute::Action)
        );
        let sync = crate::sync::SyncLetter::new(crate::id::PortalId::new(7), "contacts", "42");
        let payload = serde_json::to_value(&sync).expect("letter");
        assert_eq!(
            route(LetterKind::Event, Some(payload), None, None),
            Ok(RedriveRoute::Sync(sync))
        );
        // A rule's effect goes back under its key; without one, or malformed, it stays.
        let effect = json!({"source":"rules","effect":"send","rule":"r","destination":"crm","id":"i","body":"{}"});
        match route(LetterKind::Event, Some(effect.clone()), None, Some("k1")) {
            Ok(RedriveRoute::Effect { key, json }) => {
                assert_eq!(key, "k1");
                assert_eq!(
                    serde_json::from_str::<serde_json::Value>(&json).ok(),
                    Some(effect.clone())
                );
            }
            other => panic!("expected an effect, got {other:?}"),
        }
        assert_eq!(
            route(LetterKind::Event, Some(effect), None, None),
            Err(SkipReason::StillInvalid)
        );
        assert_eq!(
            route(
                LetterKind::Event,
                Some(json!({"source":"rules","effect":"nope"})),
                None,
                Some("k")
            ),
            Err(SkipReason::StillInvalid)
        );
        // An event keeps the letter's key, else takes its own.
        let event = json!({"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000u64,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"appId":54321});
        let Ok(RedriveRoute::Event { key, json }) =
            route(LetterKind::Event, Some(event.clone()), None, None)
        else {
            panic!("expected an event");
        };
        let raw = serde_json::value::RawValue::from_string(json.clone()).expect("json");
        let own = crate::dedupe::DedupeKey::of(&crate::event::Event::parse(&raw).expect("event"));
        assert_eq!(key, own.as_str());
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&json).ok(),
            Some(event.clone())
        );
        assert!(matches!(
            route(LetterKind::Event, Some(event), None, Some("kept")),
            Ok(RedriveRoute::Event { key, .. }) if key == "kept"
        ));
        assert_eq!(
            route(
                LetterKind::Event,
                Some(json!({"eventId": 1})),
                None,
                Some("k")
            ),
            Err(SkipReason::StillInvalid)
        );
        // A webhook body: as text, or as base64 when it was not UTF-8; it must be a batch.
        let body = r#"[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"x.y"}]"#;
        assert_eq!(
            route(LetterKind::Batch, Some(json!(body)), None, None),
            Ok(RedriveRoute::Batch(body.as_bytes().to_vec()))
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(body);
        assert_eq!(
            route(LetterKind::Batch, None, Some(&b64), None),
            Ok(RedriveRoute::Batch(body.as_bytes().to_vec()))
        );
        assert_eq!(
            route(LetterKind::Batch, Some(json!("{}")), None, None),
            Err(SkipReason::StillInvalid)
        );
        assert_eq!(
            route(LetterKind::Batch, Some(json!({"not": "text"})), None, None),
            Err(SkipReason::PayloadMissing)
        );
    }

    #[test]
    fn a_queue_message_is_read_as_its_letter() {
        use serde_json::json;
        let dead = r#"{"v":1,"reason":"destination_rejected","detail":"HTTP 400","attempts":3,"key":"k","receivedAt":5,"requestId":"r","event":{"eventId":1}}"#;
        let a = Arrival::read(dead, 99, None);
        assert_eq!(
            (a.kind, a.reason.as_str(), a.detail.as_str(), a.attempts),
            (LetterKind::Event, "destination_rejected", "HTTP 400", 3)
        );
        assert_eq!(
            (a.key.as_deref(), a.request_id.as_str(), a.received_at),
            (Some("k"), "r", 5)
        );
        assert_eq!(a.payload, json!({"eventId": 1}));
        // Carried by reference: the loaded event is kept, not the `null`.
        let by_ref = r#"{"v":1,"reason":"x","detail":"","attempts":1,"receivedAt":5,"requestId":"r","eventRef":"evt:k","event":null}"#;
        let a = Arrival::read(by_ref, 99, Some(r#"{"eventId":2}"#));
        assert_eq!((a.payload, a.key), (json!({"eventId": 2}), None));
        // An invalid message keeps its text.
        let invalid = r#"{"v":1,"reason":"message_invalid","detail":"d","attempts":0,"receivedAt":5,"requestId":"r","event":"not json"}"#;
        let a = Arrival::read(invalid, 99, None);
        assert_eq!(
            (a.kind, a.payload),
            (LetterKind::Message, json!("not json"))
        );
        // The queue gave up on an event message.
        let event = r#"{"v":1,"key":"k2","attempt":4,"receivedAt":6,"requestId":"r2","event":{"eventId":3}}"#;
        let a = Arrival::read(event, 99, None);
        assert_eq!(
            (
                a.kind,
                a.reason.as_str(),
                a.attempts,
                a.key.as_deref(),
                a.received_at
            ),
            (
                LetterKind::Event,
                "queue_retries_exhausted",
                4,
                Some("k2"),
                6
            )
        );
        assert_eq!(a.payload, json!({"eventId": 3}));
        // Anything else: kept as text, received now.
        let a = Arrival::read("garbage", 99, None);
        assert_eq!(
            (
                a.kind,
                a.reason.as_str(),
                a.attempts,
                a.received_at,
                a.payload
            ),
            (
                LetterKind::Message,
                "message_unknown",
                0,
                99,
                json!("garbage")
            )
        );
    }
}
