//! A publish run (`POST /admin/actions/publish`) as a poll-style plan: list the app's
//! definitions page by page, then create or patch what differs ([`plan_publish`]).

use serde_json::{json, Value};

use super::definition::{list_page, plan_publish, Definitions, DefinitionsApi, PublishStep};
use crate::api::RequestKind;

/// What a [`PublishRun`] needs next.
#[derive(Debug)]
pub enum PublishNext {
    /// Send this request (with the developer key, retried by core's API policy as `kind`), then
    /// [`PublishRun::answered`].
    Call(Box<http::Request<Vec<u8>>>, RequestKind),
    /// Done: `{"created", "patched", "unchanged", "actions": [{"key", "step", "id"}]}`.
    Done(Value),
    /// Stopped: HubSpot's answer could not be used (the code; `{key}: {code}` for a write).
    Failed(String),
}

/// One publish, poll-style: ask [`PublishRun::next_step`], perform the call it names, feed the
/// answer to [`PublishRun::answered`], until it is done or failed.
#[derive(Debug)]
pub struct PublishRun<'a> {
    endpoints: DefinitionsApi<'a>,
    definitions: &'a Definitions,
    base: &'a str,
    listed: Vec<Value>,
    after: Option<String>,
    pages: usize,
    listing: bool,
    steps: Vec<PublishStep>,
    next: usize,
    current: Option<usize>,
    report: Vec<Value>,
    counts: [u64; 3],
    failed: Option<String>,
}

impl<'a> PublishRun<'a> {
    /// Pages of the app's definitions listed at most (HubSpot apps hold far fewer actions).
    pub const MAX_PAGES: usize = 50;

    /// A publish of `definitions` with their `actionUrl`s under `public_base_url`.
    pub fn new(
        endpoints: DefinitionsApi<'a>,
        definitions: &'a Definitions,
        public_base_url: &'a str,
    ) -> Self {
        Self {
            endpoints,
            definitions,
            base: public_base_url,
            listed: Vec::new(),
            after: None,
            pages: 0,
            listing: true,
            steps: Vec::new(),
            next: 0,
            current: None,
            report: Vec::new(),
            counts: [0; 3],
            failed: None,
        }
    }

    /// What to do next.
    pub fn next_step(&mut self) -> PublishNext {
        if let Some(code) = &self.failed {
            return PublishNext::Failed(code.clone());
        }
        if self.listing {
            if self.pages < Self::MAX_PAGES {
                return PublishNext::Call(
                    Box::new(self.endpoints.list(self.after.as_deref())),
                    RequestKind::Read,
                );
            }
            self.plan();
        }
        while let Some(step) = self.steps.get(self.next) {
            let at = self.next;
            self.next += 1;
            match self.endpoints.step(step) {
                Some(request) => {
                    self.current = Some(at);
                    return PublishNext::Call(Box::new(request), RequestKind::Write);
                }
                None => {
                    if let PublishStep::Unchanged { key, id } = step {
                        self.counts[2] += 1;
                        self.report
                            .push(json!({"key": key, "step": "unchanged", "id": id}));
                    }
                }
            }
        }
        let [created, patched, unchanged] = self.counts;
        PublishNext::Done(json!({
            "created": created,
            "patched": patched,
            "unchanged": unchanged,
            "actions": self.report,
        }))
    }

    /// The answer to the last [`PublishNext::Call`]: HubSpot's JSON, or the error's code once
    /// the retries are spent.
    pub fn answered(&mut self, answer: Result<Value, String>) {
        if self.listing {
            self.pages += 1;
            let page = answer.and_then(|p| list_page(&p).ok_or_else(|| "list_malformed".into()));
            match page {
                Ok((results, next)) => {
                    self.listed.extend(results);
                    self.after = next;
                    if self.after.is_none() {
                        self.plan();
                    }
                }
                Err(code) => self.failed = Some(code),
            }
            return;
        }
        let Some(step) = self.current.take().and_then(|at| self.steps.get(at)) else {
            return;
        };
        let (key, what, id) = match step {
            PublishStep::Create { key, .. } => (key, "create", None),
            PublishStep::Patch { key, id, .. } => (key, "patch", Some(id.clone())),
            PublishStep::Unchanged { key, id } => (key, "unchanged", Some(id.clone())),
        };
        match answer {
            Ok(v) => {
                self.counts[usize::from(what != "create")] += 1;
                let id = v
                    .get("id")
                    .map(|i| i.to_string().trim_matches('"').to_owned())
                    .or(id);
                self.report
                    .push(json!({"key": key, "step": what, "id": id}));
            }
            Err(code) => self.failed = Some(format!("{key}: {code}")),
        }
    }

    fn plan(&mut self) {
        self.listing = false;
        self.steps = plan_publish(self.definitions, self.base, &self.listed);
    }
}
