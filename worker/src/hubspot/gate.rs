//! The HubSpot gate: one Durable Object per deployment (`HUBSPOT_GATE`, instance `default`)
//! holding the state that every isolate of the Worker must share.
//!
//! - **The rate governor** (core's [`Governor`]). HubSpot's limits are per account (and app),
//!   not per isolate (docs/hubspot.md §5.1); a governor per isolate lets N isolates send N times
//!   the limit, the 429 storm other clients report. Every attempt asks the gate
//!   for a permit first; the gate answers "send" or "wait this long", and the isolate waits (the
//!   gate never sleeps).
//! - **The OAuth access token** (docs/hubspot.md §6). Cached in the object's memory and storage,
//!   refreshed `margin_ms` before it expires and after a 401, by one call at a time across all
//!   isolates (the others wait for that refresh), and a failed refresh is remembered for a
//!   while so that nothing retries it in a hot loop. Whether a 401 calls for a refresh is
//!   core's [`TokenState::on_refused`]: once per token; a token obtained after a 401 that is
//!   refused too is an authorization error, logged once (`hubspot_token_refused`), and every
//!   call with it answers `hubspot_unauthorized` without refreshing again before it expires.
//!   Tokens are never logged.
//!
//! Cost: one Durable Object round trip per HubSpot attempt (BENCHMARKS.md, "executor
//! overhead"). HubSpot's `X-HubSpot-RateLimit-*` headers ride along with the isolate's next
//! permit request, stamped with when they arrived; the governor judges them against its window
//! as it was then and ignores them when they are too old (`OBSERVATION_GRACE_MS`). Its own count
//! already covers what it granted, so they only matter when something else spends the same
//! budget. A 429 is reported at once.
//!
//! The Durable Object is single-threaded, but it interleaves requests while it awaits a fetch;
//! core's [`TokenCache`] (a refresh in flight makes the others wait), not the runtime, makes
//! the refresh single-flight.

use std::cell::RefCell;
use std::time::Duration;

use hubspot_edge_core::api::{Call, TokenCache, TokenStep};
use hubspot_edge_core::metrics::Gauge;
use hubspot_edge_core::ratelimit::{Acquire, Budget, Governor, LimitPolicy, RateLimitObservation};
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, Date, Delay, DurableObject, Env, Method, Request, RequestInit, Response,
    Result, State,
};

use super::oauth::{self, Cached};
use super::transport::CallError;
use crate::config::{AccessToken, HubSpotApi, HubSpotAuth};

/// The Durable Object binding (wrangler.toml).
pub(crate) const BINDING: &str = "HUBSPOT_GATE";
/// The one instance every isolate talks to.
const INSTANCE: &str = "default";
/// Storage key of the cached OAuth access token.
const TOKEN_KEY: &str = "oauth";

/// A request to the gate.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Ask {
    /// Draw on the search budget instead of the general one.
    #[serde(default)]
    search: bool,
    /// Also return the OAuth access token.
    #[serde(default)]
    token: bool,
    /// The token HubSpot just answered 401 to: return a newer one, refreshing if needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rejected: Option<String>,
    /// Rate-limit headers of an earlier response from this isolate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    observed: Option<Observed>,
    /// A 429 just received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limited: Option<Limited>,
    /// Only record `observed`/`limited`/`rejected` (a second 401, after a refresh); no permit,
    /// no refresh.
    #[serde(default)]
    report_only: bool,
}

/// [`RateLimitObservation`] on the wire, with when the response arrived.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Observed {
    at_ms: u64,
    max: Option<u32>,
    remaining: Option<u32>,
    interval_ms: Option<u64>,
    daily: Option<u64>,
    daily_remaining: Option<u64>,
}

impl Observed {
    fn new(o: RateLimitObservation, at_ms: u64) -> Self {
        Self {
            at_ms,
            max: o.max,
            remaining: o.remaining,
            interval_ms: o.interval_ms,
            daily: o.daily,
            daily_remaining: o.daily_remaining,
        }
    }
}

impl From<Observed> for RateLimitObservation {
    fn from(o: Observed) -> Self {
        Self {
            max: o.max,
            remaining: o.remaining,
            interval_ms: o.interval_ms,
            daily: o.daily,
            daily_remaining: o.daily_remaining,
        }
    }
}

/// A 429 on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Limited {
    policy: Policy,
    retry_after_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Policy {
    TenSecondly,
    Secondly,
    Daily,
}

/// The gate's answer.
// Externally tagged (`{"variant": {…}}`), not `tag = …`: an internally tagged enum is
// deserialised through serde's buffering `ContentDeserializer`, the largest generic cost in the
// wasm (BENCHMARKS.md, "Worker size"). Worker↔object only (one deployment): no stored format.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    /// Send now (counted); `token` when asked for. `daily_permille`: core's
    /// [`Governor::daily_used_permille`] after this permit, for the metrics gauge (the asking
    /// isolate sets it: no extra call).
    Permit {
        token: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        daily_permille: Option<u64>,
    },
    /// Ask again in `wait_ms`; nothing was counted.
    Wait {
        wait_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        daily_permille: Option<u64>,
    },
    /// The report was recorded.
    Noted,
    /// No access token: the refresh failed (`error` is safe to show).
    Failed { error: String },
    /// The rejected token was obtained after a 401 and is refused too: no refresh.
    Refused,
}

thread_local! {
    /// The latest rate-limit headers this isolate saw, not yet passed to the gate.
    static PENDING: RefCell<Option<Observed>> = const { RefCell::new(None) };
}

/// Remembers `observed` (a response received at `at_ms`) for this isolate's next permit
/// request. The governor ignores it if that comes more than `OBSERVATION_GRACE_MS` later.
pub(crate) fn note(observed: RateLimitObservation, at_ms: u64) {
    PENDING.with(|p| *p.borrow_mut() = Some(Observed::new(observed, at_ms)));
}

/// Waits for a permit on `budget` and returns the bearer token to send with it.
pub(crate) async fn permit(
    config: &HubSpotApi,
    env: &Env,
    budget: Budget,
) -> std::result::Result<AccessToken, CallError> {
    permit_or_refused(config, env, budget, None)
        .await?
        .ok_or_else(|| CallError::Gate("the gate refused a token it was not asked about".into()))
}

/// HubSpot answered 401 to `rejected` (OAuth): waits for a permit with a newer token
/// (refreshed if core's [`TokenState::on_refused`] says so), or `None` when the token is known
/// to be refused (an authorization error: give up, do not refresh).
pub(crate) async fn after_refusal(
    config: &HubSpotApi,
    env: &Env,
    budget: Budget,
    rejected: &AccessToken,
) -> std::result::Result<Option<AccessToken>, CallError> {
    permit_or_refused(config, env, budget, Some(rejected)).await
}

/// HubSpot answered 401 to `rejected` again, after the refresh of [`after_refusal`], and the
/// call gives up: the gate records it (and logs it, the first time). No permit, no refresh.
pub(crate) async fn report_refused(
    env: &Env,
    rejected: &AccessToken,
) -> std::result::Result<(), CallError> {
    let ask = Ask {
        rejected: Some(rejected.as_str().to_owned()),
        report_only: true,
        ..Ask::default()
    };
    call(env, &ask).await.map(|_| ())
}

async fn permit_or_refused(
    config: &HubSpotApi,
    env: &Env,
    budget: Budget,
    rejected: Option<&AccessToken>,
) -> std::result::Result<Option<AccessToken>, CallError> {
    let oauth = matches!(config.auth, HubSpotAuth::OAuth { .. });
    let started = Date::now().as_millis();
    loop {
        let ask = Ask {
            search: budget == Budget::Search,
            token: oauth,
            rejected: rejected.map(|t| t.as_str().to_owned()),
            observed: PENDING.with(|p| p.borrow_mut().take()),
            ..Ask::default()
        };
        let answer = call(env, &ask).await?;
        if let Answer::Permit {
            daily_permille: Some(permille),
            ..
        }
        | Answer::Wait {
            daily_permille: Some(permille),
            ..
        } = answer
        {
            daily_gauge(permille);
        }
        match answer {
            Answer::Permit { token, .. } => {
                return match (token, &config.auth) {
                    (Some(t), _) => Ok(Some(AccessToken::new(t))),
                    (None, HubSpotAuth::Static(t)) => Ok(Some(t.clone())),
                    (None, HubSpotAuth::OAuth { .. }) => Err(CallError::Gate(
                        "the gate granted a permit without a token".into(),
                    )),
                };
            }
            Answer::Wait { wait_ms, .. } => {
                let waited = Date::now().as_millis().saturating_sub(started);
                if waited.saturating_add(wait_ms) > Call::MAX_WAIT_MS {
                    return Err(CallError::Throttled { wait_ms });
                }
                Delay::from(Duration::from_millis(wait_ms.max(1))).await;
            }
            Answer::Failed { error } => return Err(CallError::OAuthRefresh(error)),
            Answer::Refused => return Ok(None),
            Answer::Noted => {
                return Err(CallError::Gate("unexpected gate answer".into()));
            }
        }
    }
}

/// The gauge of the daily budget spent, as the gate counted it (one series: the gate serves
/// the one account this Worker's credentials address).
fn daily_gauge(permille: u64) {
    let value = i64::try_from(permille).unwrap_or(i64::MAX);
    let at_ms = Date::now().as_millis();
    crate::metrics::count(|m| m.set(Gauge::HubSpotDailyUsedPermille, &[], value, at_ms));
}

/// Tells the gate about a 429 at once, so that no isolate sends into the exhausted window.
pub(crate) async fn report_rate_limited(
    env: &Env,
    policy: LimitPolicy,
    retry_after_ms: Option<u64>,
) -> std::result::Result<(), CallError> {
    let policy = match policy {
        LimitPolicy::TenSecondly => Policy::TenSecondly,
        LimitPolicy::Secondly => Policy::Secondly,
        LimitPolicy::Daily => Policy::Daily,
    };
    let ask = Ask {
        limited: Some(Limited {
            policy,
            retry_after_ms,
        }),
        report_only: true,
        ..Ask::default()
    };
    call(env, &ask).await.map(|_| ())
}

async fn call(env: &Env, ask: &Ask) -> std::result::Result<Answer, CallError> {
    let unavailable = |e: worker::Error| CallError::Gate(e.to_string());
    let stub = env
        .durable_object(BINDING)
        .and_then(|ns| ns.id_from_name(INSTANCE)?.get_stub())
        .map_err(unavailable)?;
    let body = serde_json::to_string(ask).map_err(|e| CallError::Gate(e.to_string()))?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post).with_body(Some(body.into()));
    let request = Request::new_with_init("https://gate/permit", &init).map_err(unavailable)?;
    let mut response = stub
        .fetch_with_request(request)
        .await
        .map_err(unavailable)?;
    if response.status_code() != 200 {
        return Err(CallError::Gate(format!(
            "the gate answered {}",
            response.status_code()
        )));
    }
    response.json::<Answer>().await.map_err(unavailable)
}

/// The Durable Object. See the [module docs](self).
#[durable_object]
pub struct HubSpotGate {
    state: State,
    env: Env,
    /// Read from `env` on the first valid request (vars change only with a deploy, which
    /// restarts the object).
    config: std::cell::OnceCell<HubSpotApi>,
    inner: RefCell<Inner>,
}

impl std::fmt::Debug for HubSpotGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubSpotGate").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    governor: Option<Governor>,
    /// The OAuth access token, the refresh in flight, the last failure (core's).
    tokens: TokenCache,
    /// The stored token has been read (once per object lifetime).
    loaded: bool,
}

impl DurableObject for HubSpotGate {
    fn new(state: State, env: Env) -> Self {
        Self {
            state,
            env,
            config: std::cell::OnceCell::new(),
            inner: RefCell::new(Inner::default()),
        }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            let Ok(ask) = req.json::<Ask>().await else {
                return Response::error("bad gate request", 400);
            };
            let config = match self.config.get() {
                Some(c) => c,
                None => match HubSpotApi::from_env(&self.env) {
                    Ok(c) => self.config.get_or_init(|| c),
                    Err(e) => return Response::from_json(&Answer::Failed { error: e.message() }),
                },
            };
            let now = Date::now().as_millis();
            self.with_governor(config, |g| {
                if let Some(o) = ask.observed {
                    // The isolate's clock and ours may differ a little: never in the future.
                    g.observe(&o.into(), o.at_ms.min(now));
                }
                if let Some(l) = ask.limited {
                    let policy = match l.policy {
                        Policy::TenSecondly => LimitPolicy::TenSecondly,
                        Policy::Secondly => LimitPolicy::Secondly,
                        Policy::Daily => LimitPolicy::Daily,
                    };
                    g.on_rate_limited(policy, l.retry_after_ms, now);
                }
            });
            if ask.report_only {
                if let Some(rejected) = ask.rejected.as_deref() {
                    self.refused_again(rejected).await;
                }
                return Response::from_json(&Answer::Noted);
            }
            let token = if ask.token {
                match self.token(config, ask.rejected.as_deref()).await {
                    Ok(t) => Some(t),
                    Err(TokenError::Refused) => return Response::from_json(&Answer::Refused),
                    Err(TokenError::Failed(error)) => {
                        return Response::from_json(&Answer::Failed { error })
                    }
                }
            } else {
                None
            };
            let budget = if ask.search {
                Budget::Search
            } else {
                Budget::General
            };
            let now = Date::now().as_millis();
            let (acquired, daily_permille) = self.with_governor(config, |g| {
                (g.acquire(budget, now), g.daily_used_permille(now))
            });
            let answer = match acquired {
                Acquire::Permit => Answer::Permit {
                    token,
                    daily_permille,
                },
                Acquire::Wait { until_ms } => Answer::Wait {
                    wait_ms: until_ms.saturating_sub(now).max(1),
                    daily_permille,
                },
            };
            Response::from_json(&answer)
        })
        .await
    }
}

impl HubSpotGate {
    fn with_governor<R>(&self, config: &HubSpotApi, f: impl FnOnce(&mut Governor) -> R) -> R {
        let mut inner = self.inner.borrow_mut();
        let governor = inner
            .governor
            .get_or_insert_with(|| Governor::new(config.governor));
        f(governor)
    }

    /// A usable access token, refreshed by one call at a time. `rejected`: the token HubSpot
    /// just answered 401 to. What to do is core's [`TokenCache::next`]; this only waits,
    /// refreshes and stores.
    async fn token(
        &self,
        config: &HubSpotApi,
        rejected: Option<&str>,
    ) -> std::result::Result<String, TokenError> {
        let HubSpotAuth::OAuth { margin_ms, .. } = &config.auth else {
            return Err(TokenError::Failed("OAuth is not configured".into()));
        };
        self.load().await;
        let started = Date::now().as_millis();
        let origin = loop {
            let now = Date::now().as_millis();
            // No await while borrowed.
            let step = self
                .inner
                .borrow_mut()
                .tokens
                .next(rejected, *margin_ms, now);
            match step {
                TokenStep::Use(token) => return Ok(token),
                TokenStep::Refresh(origin) => break origin,
                TokenStep::Failed(message) => return Err(TokenError::Failed(message)),
                TokenStep::Refused { first } => {
                    if first {
                        let stored = self.inner.borrow().tokens.token().map(Cached::of);
                        self.report_refused(stored).await;
                    }
                    return Err(TokenError::Refused);
                }
                TokenStep::Wait => {}
            }
            let Some(wait_ms) = TokenCache::refresh_wait(started, now) else {
                return Err(TokenError::Failed(
                    "timed out waiting for the OAuth token refresh".into(),
                ));
            };
            Delay::from(Duration::from_millis(wait_ms)).await;
        };
        let flight = Flight(&self.inner);
        let result = oauth::refresh(config, origin).await;
        if let Ok(state) = &result {
            self.store(&Cached::of(state)).await;
        }
        let answer = match &result {
            Ok(state) => Ok(state.token().to_owned()),
            Err(failure) => Err(TokenError::Failed(failure.message.clone())),
        };
        self.inner.borrow_mut().tokens.refreshed(result);
        drop(flight);
        answer
    }

    /// A call gave up after a second 401 with `rejected`: record it in the token state (no
    /// refresh), and log it the first time.
    async fn refused_again(&self, rejected: &str) {
        self.load().await;
        let now = Date::now().as_millis();
        let (first, stored) = {
            let mut inner = self.inner.borrow_mut();
            let first = inner.tokens.refused_again(rejected, now);
            (first, inner.tokens.token().map(Cached::of))
        };
        if first {
            self.report_refused(stored).await;
        }
    }

    /// Logs, once per token, that a token obtained after a 401 was refused too, and stores the
    /// mark so that a restarted gate does not refresh it again either.
    async fn report_refused(&self, stored: Option<Cached>) {
        crate::log::Line::error("hubspot_token_refused")
            .field("code", "hubspot_unauthorized")
            .field(
                "error",
                "HubSpot refused the OAuth access token obtained after a 401; not refreshing \
                 again before it expires (check the app's install and scopes)",
            )
            .emit();
        if let Some(c) = stored {
            self.store(&c).await;
        }
    }

    /// Reads the stored token once per object lifetime.
    async fn load(&self) {
        if self.inner.borrow().loaded {
            return;
        }
        // Storage reads hold the object's input gate: nothing interleaves here.
        let stored = self.state.storage().get::<Cached>(TOKEN_KEY).await;
        let mut inner = self.inner.borrow_mut();
        if !inner.loaded {
            inner.loaded = true;
            inner
                .tokens
                .restore(stored.ok().flatten().map(|c| c.state()));
        }
    }

    async fn store(&self, cached: &Cached) {
        if self.state.storage().put(TOKEN_KEY, cached).await.is_err() {
            crate::log::Line::warn("hubspot_oauth_cache_write_failed").emit();
        }
    }
}

/// Why the gate has no token to give.
enum TokenError {
    /// The refresh failed (message safe to show).
    Failed(String),
    /// The token is known to be refused (see [`OnRefused::Unauthorized`]).
    Refused,
}

/// Clears the refresh in flight when dropped, also when the request is cancelled mid-refresh
/// (core's [`TokenCache::abandoned`]: waiting calls never wait for a refresh that is gone).
struct Flight<'a>(&'a RefCell<Inner>);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        self.0.borrow_mut().tokens.abandoned();
    }
}
