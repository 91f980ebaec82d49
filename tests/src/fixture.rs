//! The standard end-to-end setup: a [`Destination`] and a Worker (`wrangler dev`) that forwards
//! to it, with test secrets.
//!
//! ```no_run
//! use std::time::Duration;
//! use hubspot_edge_tests::{Fixture, FixtureOptions, HubSpotEvent};
//! # fn demo() -> hubspot_edge_tests::Result<()> {
//! let fx = Fixture::start(
//!     FixtureOptions::default()
//!         .var("FORWARD_MAX_ATTEMPTS", "3")
//!         .var("FORWARD_RETRY_BASE_SECS", "1"),
//! )?;
//! let id = hubspot_edge_tests::unique_id();
//! fx.send_events(&[HubSpotEvent::creation("contact", id)])?.expect_status(200)?;
//! fx.dest.wait_for_ok(&[id], Duration::from_secs(30))?;
//! # Ok(()) }
//! ```

use serde_json::Value;

use crate::http::{self, HttpResponse};
use crate::hubspot::{HubSpotEvent, HubSpotRequest};
use crate::{Destination, Result, WranglerDev, WranglerOptions};
use hubspot_mock::{MockConfig, MockHubSpot};

/// `HUBSPOT_CLIENT_SECRET` of the test Worker (HubSpot shows client secrets as UUIDs).
pub const CLIENT_SECRET: &str = "3f1b6c2e-8d4a-4e7b-9c5f-0a1b2c3d4e5f";
/// `FORWARD_SECRET` of the test Worker (the Standard Webhooks example key).
pub const FORWARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
/// `ADMIN_TOKEN` of the test Worker.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-6b1d0c5a9f3e";

/// How to configure the Worker under test.
#[derive(Debug, Clone)]
pub struct FixtureOptions {
    /// `HUBSPOT_CLIENT_SECRET`.
    pub client_secret: String,
    /// `FORWARD_SECRET` (`whsec_…`); the destination verifies with it.
    pub forward_secret: String,
    /// `ADMIN_TOKEN`.
    pub admin_token: String,
    /// Further Worker variables (`MAX_BODY_BYTES`, `FORWARD_MAX_ATTEMPTS`,
    /// `FORWARD_RETRY_BASE_SECS`, `FORWARD_RETRY_MAX_SECS`, `FILTER_RULES`, …); they are
    /// applied last, so they may also override the secrets above or `FORWARD_URL`.
    pub vars: Vec<(String, String)>,
    /// Everything else about `wrangler dev` (its `vars` are replaced by the ones above).
    pub wrangler: WranglerOptions,
    /// Start a mock HubSpot API with this configuration, and point the Worker at it
    /// (`HUBSPOT_API_BASE_URL`, `HUBSPOT_ACCESS_TOKEN` = the mock's token; `vars` may override).
    pub hubspot_mock: Option<MockConfig>,
    /// Worker variables not to set at all (e.g. `HUBSPOT_ACCESS_TOKEN` for an OAuth Worker),
    /// even when set above.
    pub unset: Vec<String>,
}

impl Default for FixtureOptions {
    fn default() -> Self {
        Self {
            client_secret: CLIENT_SECRET.into(),
            forward_secret: FORWARD_SECRET.into(),
            admin_token: ADMIN_TOKEN.into(),
            vars: Vec::new(),
            wrangler: WranglerOptions::default(),
            hubspot_mock: None,
            unset: Vec::new(),
        }
    }
}

impl FixtureOptions {
    /// Adds (or replaces) a Worker variable.
    #[must_use]
    pub fn var(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.vars.retain(|(k, _)| *k != key);
        self.vars.push((key, value.into()));
        self
    }

    /// Adds (or replaces) several Worker variables.
    #[must_use]
    pub fn vars<K: Into<String>, V: Into<String>>(
        self,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        vars.into_iter().fold(self, |o, (k, v)| o.var(k, v))
    }

    /// Leaves the Worker variable `key` unset (even one the fixture sets by default).
    #[must_use]
    pub fn unset(mut self, key: impl Into<String>) -> Self {
        self.unset.push(key.into());
        self
    }

    /// Starts a mock HubSpot API with `config` for the Worker to call.
    #[must_use]
    pub fn hubspot_mock(mut self, config: MockConfig) -> Self {
        self.hubspot_mock = Some(config);
        self
    }

    /// Sets `FILTER_RULES` to this JSON.
    #[must_use]
    pub fn filter_rules(self, rules: &Value) -> Self {
        self.var("FILTER_RULES", rules.to_string())
    }
}

/// A running Worker forwarding to a [`Destination`]. Dropping it stops the Worker first, then
/// the destination.
#[derive(Debug)]
pub struct Fixture {
    /// The Worker (declared first: dropped first, so it stops forwarding before the
    /// destination goes away).
    pub worker: WranglerDev,
    /// The user's endpoint.
    pub dest: Destination,
    /// The mock HubSpot API the Worker calls, when [`FixtureOptions::hubspot_mock`] was set.
    pub hubspot: Option<MockHubSpot>,
    /// `HUBSPOT_CLIENT_SECRET` the Worker runs with.
    pub client_secret: String,
    /// `FORWARD_SECRET` the Worker runs with.
    pub forward_secret: String,
    /// `ADMIN_TOKEN` the Worker runs with.
    pub admin_token: String,
    /// Every variable the Worker was started with.
    pub vars: Vec<(String, String)>,
}

impl Fixture {
    /// Starts the destination, then the Worker with `FORWARD_URL` pointing at it.
    ///
    /// # Errors
    /// When either fails to start (the destination is stopped again).
    pub fn start(opts: FixtureOptions) -> Result<Self> {
        let hubspot = opts.hubspot_mock.map(MockHubSpot::start).transpose()?;
        let dest = Destination::start(&opts.forward_secret)?;
        let mut wrangler_opts = WranglerOptions {
            vars: Vec::new(),
            ..opts.wrangler
        }
        .var("HUBSPOT_CLIENT_SECRET", &opts.client_secret)
        .var("FORWARD_URL", dest.url())
        .var("FORWARD_SECRET", &opts.forward_secret)
        .var("ADMIN_TOKEN", &opts.admin_token);
        if let Some(mock) = &hubspot {
            wrangler_opts = wrangler_opts
                .var("HUBSPOT_API_BASE_URL", mock.base_url())
                .var("HUBSPOT_ACCESS_TOKEN", mock.token());
        }
        let mut wrangler_opts = wrangler_opts.vars(opts.vars);
        wrangler_opts.vars.retain(|(k, _)| !opts.unset.contains(k));
        let vars = wrangler_opts.vars.clone();
        let worker = WranglerDev::start(wrangler_opts)?;
        Ok(Self {
            worker,
            dest,
            hubspot,
            client_secret: opts.client_secret,
            forward_secret: opts.forward_secret,
            admin_token: opts.admin_token,
            vars,
        })
    }

    /// Registers values this scenario sent (emails, names, property values) that no log line
    /// of any Worker may contain: checked after the run ([`crate::logscan::violations`]).
    pub fn forbid_in_logs<S: AsRef<str>>(&self, values: &[S]) {
        crate::logscan::forbid_in_logs(values);
    }

    /// Stops the Worker now (idempotent; `Drop` does it too). Works through a shared
    /// reference, so a harness holding the fixture in an `Arc` can always stop it.
    pub fn stop_worker(&self) {
        self.worker.stop();
    }

    /// The value of a Worker variable as started.
    pub fn var(&self, key: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `{worker base url}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.worker.base_url())
    }

    /// A v3-signed HubSpot POST of `body` to `/webhooks/hubspot`; tweak it, then `.send()`.
    pub fn hubspot_request(&self, body: impl Into<Vec<u8>>) -> HubSpotRequest {
        HubSpotRequest::new(&self.worker.base_url(), &self.client_secret, body)
    }

    /// Sends `events` as one correctly signed HubSpot batch.
    ///
    /// # Errors
    /// Transport failures only.
    pub fn send_events(&self, events: &[HubSpotEvent]) -> Result<HttpResponse> {
        self.hubspot_request(HubSpotEvent::batch(events)).send()
    }

    /// `GET {path}` without credentials.
    ///
    /// # Errors
    /// Transport failures only.
    pub fn get(&self, path: &str) -> Result<HttpResponse> {
        http::get(&self.url(path), None)
    }

    /// `GET {path}` with the admin bearer token.
    ///
    /// # Errors
    /// Transport failures only.
    pub fn admin_get(&self, path: &str) -> Result<HttpResponse> {
        http::get(&self.url(path), Some(&self.admin_token))
    }

    /// `POST {path}` (JSON body) with the admin bearer token.
    ///
    /// # Errors
    /// Transport failures only.
    pub fn admin_post(&self, path: &str, body: &[u8]) -> Result<HttpResponse> {
        http::post(&self.url(path), body, Some(&self.admin_token))
    }

    /// `method {path}` (JSON body when given) with the admin bearer token and a time limit of
    /// its own: for calls that may legitimately wait (the executor paces a call for up to 15 s;
    /// a search walk takes minutes).
    ///
    /// # Errors
    /// Transport failures, including the time limit.
    pub fn admin_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&[u8]>,
        timeout: std::time::Duration,
    ) -> Result<HttpResponse> {
        let auth = format!("Bearer {}", self.admin_token);
        let mut headers = vec![("authorization", auth.as_str())];
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        http::request_with_timeout(method, &self.url(path), &headers, body, timeout)
    }
}
