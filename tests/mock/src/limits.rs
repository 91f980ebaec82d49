//! Rate limits (§5): a rolling burst window per token, a daily counter, and the search API's
//! own per-second limit. Pure: callers pass `now`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// Which limit a request hit (§5.3 `policyName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Policy {
    TenSecondlyRolling,
    Daily,
    /// The search API's per-second limit.
    Secondly,
}

impl Policy {
    pub(super) fn name(self) -> &'static str {
        match self {
            Self::TenSecondlyRolling => "TEN_SECONDLY_ROLLING",
            Self::Daily => "DAILY",
            Self::Secondly => "SECONDLY",
        }
    }

    /// §5.3 gives the daily text; the search text is what the Node SDK matches (§5.4).
    pub(super) fn message(self) -> &'static str {
        match self {
            Self::TenSecondlyRolling => "You have reached your ten_secondly_rolling limit.",
            Self::Daily => "You have reached your daily limit.",
            Self::Secondly => "You have reached your secondly limit.",
        }
    }
}

/// The configured limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub(super) burst: u32,
    pub(super) window: Duration,
    pub(super) daily: u64,
    pub(super) search_per_second: u32,
}

/// The outcome for one request: the `X-HubSpot-RateLimit-*` headers to send (none for search)
/// and the policy that refused it, if any.
#[derive(Debug, Clone, Default)]
pub(super) struct Outcome {
    pub(super) headers: Vec<(&'static str, String)>,
    pub(super) refused: Option<Policy>,
}

#[derive(Debug, Default)]
struct TokenState {
    /// When the requests in the rolling window were counted (ms since the epoch).
    window: VecDeque<u64>,
    search: VecDeque<u64>,
}

/// Per-token limiter state.
#[derive(Debug)]
pub(super) struct Limiter {
    limits: Limits,
    tokens: HashMap<String, TokenState>,
    daily_used: u64,
    /// UTC day number of `daily_used` (the reset is at midnight; the mock uses UTC, §5.1).
    day: u64,
}

const MS_PER_DAY: u64 = 86_400_000;

fn prune(q: &mut VecDeque<u64>, now_ms: u64, window: Duration) {
    let window = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
    // Saturating: a clock set backwards keeps the entries (refusing longer, never more).
    while q
        .front()
        .is_some_and(|t| now_ms.saturating_sub(*t) >= window)
    {
        q.pop_front();
    }
}

impl Limiter {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            tokens: HashMap::new(),
            daily_used: 0,
            day: 0,
        }
    }

    /// Counts one request by `token` at `now_ms` (ms since the epoch; refused requests are
    /// not counted).
    pub(super) fn check(&mut self, token: &str, search: bool, now_ms: u64) -> Outcome {
        let day = now_ms / MS_PER_DAY;
        if day != self.day {
            self.day = day;
            self.daily_used = 0;
        }
        let limits = self.limits;
        let state = self.tokens.entry(token.to_owned()).or_default();
        if search {
            // Search: its own limit, no rate-limit headers (§4.4, §5.2).
            prune(&mut state.search, now_ms, Duration::from_secs(1));
            let refused = if self.daily_used >= limits.daily {
                Some(Policy::Daily)
            } else if state.search.len()
                >= usize::try_from(limits.search_per_second).unwrap_or(usize::MAX)
            {
                Some(Policy::Secondly)
            } else {
                state.search.push_back(now_ms);
                self.daily_used += 1;
                None
            };
            return Outcome {
                headers: Vec::new(),
                refused,
            };
        }
        prune(&mut state.window, now_ms, limits.window);
        let burst = usize::try_from(limits.burst).unwrap_or(usize::MAX);
        let refused = if self.daily_used >= limits.daily {
            Some(Policy::Daily)
        } else if state.window.len() >= burst {
            Some(Policy::TenSecondlyRolling)
        } else {
            state.window.push_back(now_ms);
            self.daily_used += 1;
            None
        };
        let remaining = burst.saturating_sub(state.window.len());
        let headers = vec![
            ("X-HubSpot-RateLimit-Daily", limits.daily.to_string()),
            (
                "X-HubSpot-RateLimit-Daily-Remaining",
                limits.daily.saturating_sub(self.daily_used).to_string(),
            ),
            (
                "X-HubSpot-RateLimit-Interval-Milliseconds",
                limits.window.as_millis().to_string(),
            ),
            ("X-HubSpot-RateLimit-Max", limits.burst.to_string()),
            ("X-HubSpot-RateLimit-Remaining", remaining.to_string()),
        ];
        Outcome { headers, refused }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(burst: u32, daily: u64) -> Limiter {
        Limiter::new(Limits {
            burst,
            window: Duration::from_secs(10),
            daily,
            search_per_second: 5,
        })
    }

    fn header<'a>(o: &'a Outcome, name: &str) -> &'a str {
        o.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    }

    #[test]
    fn rolling_window_refuses_then_recovers() {
        let mut l = limiter(3, 1000);
        let t0: u64 = 1_700_000_000_000;
        for left in ["2", "1", "0"] {
            let o = l.check("t", false, t0);
            assert_eq!(o.refused, None);
            assert_eq!(header(&o, "X-HubSpot-RateLimit-Remaining"), left);
        }
        let o = l.check("t", false, t0 + 9_000);
        assert_eq!(o.refused, Some(Policy::TenSecondlyRolling));
        assert_eq!(header(&o, "X-HubSpot-RateLimit-Max"), "3");
        assert_eq!(
            header(&o, "X-HubSpot-RateLimit-Interval-Milliseconds"),
            "10000"
        );
        // Another token has its own window.
        assert_eq!(l.check("u", false, t0).refused, None);
        let o = l.check("t", false, t0 + 10_000);
        assert_eq!(o.refused, None);
        assert_eq!(header(&o, "X-HubSpot-RateLimit-Daily-Remaining"), "995");
    }

    #[test]
    fn daily_and_search_limits() {
        let mut l = limiter(100, 7);
        let t0: u64 = 1_700_000_000_000;
        for _ in 0..5 {
            let o = l.check("t", true, t0);
            assert_eq!(o.refused, None);
            assert!(o.headers.is_empty());
        }
        assert_eq!(l.check("t", true, t0).refused, Some(Policy::Secondly));
        assert_eq!(l.check("t", true, t0 + 1_000).refused, None);
        assert_eq!(l.check("t", false, t0).refused, None);
        assert_eq!(l.check("t", false, t0).refused, Some(Policy::Daily));
        // The daily counter resets with the day.
        assert_eq!(l.check("t", false, t0 + MS_PER_DAY).refused, None);
    }
}
