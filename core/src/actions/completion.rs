//! The completion batcher: blocked executions completed (by a late lookup reply or the user's
//! system) wait here briefly and go to HubSpot as batch completions
//! (`POST /automation/v4/actions/callbacks/complete`), the fewest calls for the app's rate
//! budget (completions spend it, docs/hubspot.md §3.4).
//!
//! Batch size: HubSpot documents no maximum for the batch completion; 100 inputs is HubSpot's
//! usual batch size ("Batch requests to CRM object endpoints are limited to 100 records per
//! request", <https://developers.hubspot.com/docs/api/crm/understanding-the-crm>, docs/hubspot.md
//! §4.1), so no batch holds more.

use crate::api::{decide, ApiError, CallDecision, CallError, Outcome, RequestKind};

/// At most this many completions per batch call (see the module docs).
pub const MAX_COMPLETION_BATCH: usize = 100;

/// The default `ACTIONS_COMPLETE_WINDOW_MS`: a completion waits this long for others (longer,
/// up to [`MAX_LINGER_WINDOWS`] windows, while more keep arriving).
pub const DEFAULT_COMPLETE_WINDOW_MS: u64 = 1_000;

/// A completion waiting for the batcher: its execution and since when it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The execution.
    pub callback_id: String,
    /// Queued since (Unix ms).
    pub queued_ms: u64,
}

/// While completions keep arriving, a partial batch waits for more up to this many windows
/// (then it goes, full or not): a burst fills whole batches of 100 instead of one partial batch
/// per window (issue 11 §5: ≥ 90 completions per call under a burst of 1,000).
pub const MAX_LINGER_WINDOWS: u64 = 4;

/// When a partial batch is due: once the oldest has waited `window_ms` and nothing arrived for
/// a quarter window (the burst is over), or once the oldest has waited
/// [`MAX_LINGER_WINDOWS`] windows. `None`: nothing waits.
fn partial_due_ms(pending: &[Pending], window_ms: u64) -> Option<u64> {
    let oldest = pending.iter().map(|p| p.queued_ms).min()?;
    let newest = pending.iter().map(|p| p.queued_ms).max()?;
    let quiet = newest.saturating_add(window_ms / 4);
    Some(
        oldest
            .saturating_add(window_ms)
            .max(quiet)
            .min(oldest.saturating_add(window_ms.saturating_mul(MAX_LINGER_WINDOWS))),
    )
}

/// The batches due at `now_ms`, each at most [`MAX_COMPLETION_BATCH`] callback ids, oldest
/// first: every full batch; and the rest too once it is due (the oldest has waited
/// `window_ms` and arrivals paused, or [`MAX_LINGER_WINDOWS`] windows passed).
pub fn due_batches(pending: &[Pending], now_ms: u64, window_ms: u64) -> Vec<Vec<String>> {
    let mut sorted: Vec<&Pending> = pending.iter().collect();
    sorted.sort_by(|a, b| {
        a.queued_ms
            .cmp(&b.queued_ms)
            .then(a.callback_id.cmp(&b.callback_id))
    });
    let oldest_due = partial_due_ms(pending, window_ms).is_some_and(|due| now_ms >= due);
    sorted
        .chunks(MAX_COMPLETION_BATCH)
        .filter(|c| oldest_due || c.len() == MAX_COMPLETION_BATCH)
        .map(|c| c.iter().map(|p| p.callback_id.clone()).collect())
        .collect()
}

/// When the batcher must look again (`None`: nothing waits): at once for a full batch, else
/// when the partial batch is due ([`due_batches`]).
pub fn next_due_ms(pending: &[Pending], window_ms: u64) -> Option<u64> {
    let oldest = pending.iter().map(|p| p.queued_ms).min()?;
    if pending.len() >= MAX_COMPLETION_BATCH {
        return Some(oldest);
    }
    partial_due_ms(pending, window_ms)
}

/// What becomes of a batch after one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchFate {
    /// HubSpot accepted it (204): the executions are completed.
    Completed,
    /// Send it again after this long (429, 5xx, timeout: core's API retry policy).
    Retry {
        /// Delay from now.
        after_ms: u64,
    },
    /// Failed for good (a 4xx, or the retries spent): dead-letter each completion with its
    /// callback id and this code.
    DeadLetter {
        /// The API error's code (`validation_error`, `not_found`, …) or the give-up reason.
        code: String,
    },
    /// HubSpot refused the whole batch (400) for what some inputs carry: dead-letter `failed`
    /// with `code`, and send each group of `resend` again now, as a batch of its own, so that
    /// one expired or unknown execution does not fail the 99 others with it.
    Split {
        /// The executions HubSpot named (`errors[].context.callbackId`), failed for good.
        failed: Vec<String>,
        /// The API error's code.
        code: String,
        /// The rest: one group when HubSpot named the bad inputs; the two halves of the batch
        /// when it named none (bisection: at most 2·log2(100) ≈ 14 calls find one bad input).
        resend: Vec<Vec<String>>,
    },
}

impl BatchFate {
    /// The fate of `batch` whose call ended with `result`: completed when HubSpot accepted it,
    /// [`batch_fate`] when the API retry policy gave up, and sent again after
    /// [`super::CompletionFlush::RETRY_DELAY_MS`] when the call never got HubSpot's final
    /// answer (throttled, the rate gate or the OAuth token unavailable). `jitter` in `[0, 1)`.
    pub fn of_call(
        batch: &[String],
        result: Result<(), &CallError>,
        now_ms: u64,
        jitter: f64,
    ) -> Self {
        match result {
            Ok(()) => Self::Completed,
            Err(CallError::GaveUp { last, attempts, .. }) => {
                batch_fate(batch, *attempts, last, now_ms, jitter)
            }
            Err(_) => Self::Retry {
                after_ms: super::CompletionFlush::RETRY_DELAY_MS,
            },
        }
    }

    /// The fate as a label for logs: `completed`, `retry`, `dead_lettered`, `split`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Retry { .. } => "retry",
            Self::DeadLetter { .. } => "dead_lettered",
            Self::Split { .. } => "split",
        }
    }
}

/// The fate of `batch` (its callback ids, as sent) whose `attempt`-th call (1-based) ended in
/// `outcome`, by core's API retry policy ([`crate::api::decide`], a write: retried on 429 and
/// 5xx, never on other 4xx). A 400 for a batch of several is split ([`BatchFate::Split`]):
/// HubSpot refuses a batch completion whole when one input cannot be completed (the mock's
/// reading, tests/mock/BEHAVIOURS.md). `jitter` in `[0, 1)`.
pub fn batch_fate(
    batch: &[String],
    attempt: u32,
    outcome: &Outcome,
    now_ms: u64,
    jitter: f64,
) -> BatchFate {
    let code = match decide(RequestKind::Write, attempt, outcome, now_ms, jitter) {
        CallDecision::Accept => return BatchFate::Completed,
        CallDecision::Retry { after_ms, .. } => return BatchFate::Retry { after_ms },
        // A private token cannot be refreshed here: the host refreshes OAuth itself; a 401
        // that reaches the batcher is final.
        CallDecision::RefreshToken | CallDecision::GiveUp { .. } => match outcome {
            Outcome::Failed(e) => e.code().to_owned(),
            Outcome::Timeout => "timeout".to_owned(),
            Outcome::Network => "network".to_owned(),
            Outcome::Success => "decode".to_owned(),
        },
    };
    let Outcome::Failed(ApiError::Validation { body }) = outcome else {
        return BatchFate::DeadLetter { code };
    };
    if batch.len() < 2 {
        return BatchFate::DeadLetter { code };
    }
    let named: Vec<&str> = body
        .errors
        .iter()
        .flat_map(|e| e.context_values("callbackId"))
        .collect();
    let (failed, rest): (Vec<String>, Vec<String>) = batch
        .iter()
        .cloned()
        .partition(|id| named.contains(&id.as_str()));
    let resend = if failed.is_empty() {
        let (a, b) = batch.split_at(batch.len() / 2);
        vec![a.to_vec(), b.to_vec()]
    } else if rest.is_empty() {
        Vec::new()
    } else {
        vec![rest]
    };
    BatchFate::Split {
        failed,
        code,
        resend,
    }
}

/// The batch completion request of `completions` (at most [`MAX_COMPLETION_BATCH`]):
/// `POST {base}/automation/v4/actions/callbacks/complete` with
/// [`super::Completion::batch_body`]. No `Authorization`: the executor adds it.
///
/// # Errors
/// [`super::ActionError`] from the body.
pub fn batch_request(
    api: &crate::api::ApiConfig,
    completions: &[super::Completion],
) -> Result<http::Request<Vec<u8>>, super::ActionError> {
    let body = super::Completion::batch_body(completions)?;
    Ok(api.build(
        http::Method::POST,
        super::Completion::BATCH_PATH,
        &Default::default(),
        Some(("application/json", body)),
    ))
}
