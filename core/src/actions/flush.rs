//! One run of the batcher (the store's alarm): which batch completions to send now, and
//! whether to run again soon.

use super::completion::{due_batches, BatchFate, Pending};

/// One run of the batcher, poll-style: ask [`CompletionFlush::next_wave`] for the batches to
/// send at once, send them (one batch completion call each), feed each one's fate back with
/// [`CompletionFlush::settled`], until the wave is empty; then [`CompletionFlush::retry_at`]
/// says whether to run again before the batcher's own time.
///
/// The due batches ([`due_batches`], at most [`CompletionFlush::MAX_BATCHES`]) go in waves of
/// [`CompletionFlush::MAX_IN_FLIGHT`]; the groups a refused batch is split into go after them,
/// one call at a time, within the same call budget; what is left waits for the next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionFlush {
    due: Vec<Vec<String>>,
    resend: Vec<Vec<String>>,
    calls: usize,
    retry: bool,
    done: bool,
}

impl CompletionFlush {
    /// Batch completion calls per run: each costs a gate permit and one HubSpot call (about 2
    /// subrequests), so 20 stay far inside an invocation's subrequests; more waits for the
    /// next run, set at once.
    pub const MAX_BATCHES: usize = 20;
    /// Batch calls in flight at once: a Worker invocation keeps at most 6 connections
    /// (Cloudflare Workers limits).
    pub const MAX_IN_FLIGHT: usize = 6;
    /// A batch HubSpot did not decide (throttled, no token) is tried again after this long.
    pub const RETRY_DELAY_MS: u64 = 10_000;

    /// The run at `now_ms` over the queued completions `pending`, batched by `window_ms`.
    pub fn new(pending: &[Pending], now_ms: u64, window_ms: u64) -> Self {
        let due: Vec<Vec<String>> = due_batches(pending, now_ms, window_ms)
            .into_iter()
            .take(Self::MAX_BATCHES)
            .collect();
        Self {
            calls: due.len(),
            due,
            resend: Vec::new(),
            retry: false,
            done: false,
        }
    }

    /// The batches to send now, at once (each its callback ids); empty when the run is over.
    pub fn next_wave(&mut self) -> Vec<Vec<String>> {
        if self.done {
            return Vec::new();
        }
        if !self.due.is_empty() {
            let n = self.due.len().min(Self::MAX_IN_FLIGHT);
            return self.due.drain(..n).collect();
        }
        let Some(group) = self.resend.pop() else {
            self.done = true;
            return Vec::new();
        };
        if self.calls >= Self::MAX_BATCHES {
            // The rest stays queued for the next run, soon.
            self.retry = true;
            self.done = true;
            return Vec::new();
        }
        self.calls += 1;
        vec![group]
    }

    /// What became of one batch sent: its fate, or `None` when nothing was left to send in it
    /// (its completions were settled meanwhile).
    pub fn settled(&mut self, fate: Option<&BatchFate>) {
        match fate {
            Some(BatchFate::Retry { .. }) => self.retry = true,
            Some(BatchFate::Split { resend, .. }) => self.resend.extend(resend.iter().cloned()),
            Some(BatchFate::Completed | BatchFate::DeadLetter { .. }) | None => {}
        }
    }

    /// When to run again regardless of the batcher's time (`now_ms`: after the run): a batch
    /// is to be tried again, or the call budget ran out.
    pub fn retry_at(&self, now_ms: u64) -> Option<u64> {
        self.retry.then(|| now_ms + Self::RETRY_DELAY_MS)
    }
}
