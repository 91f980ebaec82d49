//! Structured JSON logs: one object per line on `console.log`, which Workers Logs and
//! `wrangler tail` collect as is.
//!
//! Every line has `timestamp`, `level`, `message` and `request_id` (README "Log fields"); a line
//! about one event also has its `trace_id`. Only identifiers, counts, codes and durations are
//! logged: never property values, emails, names, tokens or secrets (the event bodies are not
//! logged at all).
//!
//! The request id and trace of the work in progress are kept in a [`Scope`] that an entry point
//! (a request, a queue batch, an alarm) or a step (one event's forward) puts around its future
//! with [`scoped`]: it is current only while that future is polled, so the concurrent
//! invocations of one isolate never see each other's ids. A line that does not name its own
//! `request_id` (or `trace_id`) takes the current scope's; HubSpot and destination requests
//! sent in a scope with a trace carry a child `traceparent` ([`outgoing_traceparent`]).

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use hubspot_edge_core::trace::{TraceParent, FLAG_SAMPLED};
use serde_json::{Map, Value};
use worker::Date;

/// One log line under construction.
#[derive(Debug)]
pub(crate) struct Line {
    fields: Map<String, Value>,
}

impl Line {
    pub(crate) fn info(message: &str) -> Self {
        Self::new("info", message)
    }

    pub(crate) fn warn(message: &str) -> Self {
        Self::new("warn", message)
    }

    pub(crate) fn error(message: &str) -> Self {
        Self::new("error", message)
    }

    fn new(level: &str, message: &str) -> Self {
        let mut fields = Map::new();
        fields.insert(
            "timestamp".into(),
            hubspot_edge_core::time::iso8601_ms(Date::now().as_millis()).into(),
        );
        fields.insert("level".into(), level.into());
        fields.insert("message".into(), message.into());
        Self { fields }
    }

    pub(crate) fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.into(), value.into());
        self
    }

    /// `request_id` and `trace_id` of one event (its queue message's), over the scope's.
    pub(crate) fn event(self, request_id: &str, traceparent: Option<&str>) -> Self {
        let line = self.field("request_id", request_id);
        match traceparent.and_then(TraceParent::parse) {
            Some(t) => line.field("trace_id", t.trace_id_hex()),
            None => line,
        }
    }

    pub(crate) fn emit(mut self) {
        if !self.fields.contains_key("request_id") || !self.fields.contains_key("trace_id") {
            CURRENT.with(|c| {
                let current = c.borrow();
                let request_id = current
                    .as_ref()
                    .map_or_else(|| Rc::from("unscoped"), |s| Rc::clone(&s.request_id));
                self.fields
                    .entry("request_id")
                    .or_insert_with(|| Value::from(&*request_id));
                if let Some(trace) = current.as_ref().and_then(|s| s.trace) {
                    self.fields
                        .entry("trace_id")
                        .or_insert_with(|| trace.trace_id_hex().into());
                }
            });
        }
        worker::console_log!("{}", Value::Object(self.fields));
    }
}

/// The request id and trace of the work in progress.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    request_id: Rc<str>,
    trace: Option<TraceParent>,
}

impl Scope {
    pub(crate) fn new(request_id: &str, trace: Option<TraceParent>) -> Self {
        Self {
            request_id: Rc::from(request_id),
            trace,
        }
    }

    /// The trace id (32 hex digits), when the scope has a trace.
    pub(crate) fn trace_id(&self) -> Option<String> {
        self.trace.map(|t| t.trace_id_hex())
    }

    /// A scope for one event: its queue message's request id and `traceparent`.
    pub(crate) fn of_event(request_id: &str, traceparent: Option<&str>) -> Self {
        Self::new(request_id, traceparent.and_then(TraceParent::parse))
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// `future`, with `scope` current whenever it is polled (and the previous one restored after).
pub(crate) fn scoped<'a, F: Future + 'a>(scope: Scope, future: F) -> Scoped<'a, F::Output> {
    Scoped {
        scope,
        inner: Box::pin(future),
    }
}

/// `future` in the scope current now: for work handed to `wait_until`.
pub(crate) fn in_current<'a, F: Future + 'a>(future: F) -> Scoped<'a, F::Output> {
    let scope = CURRENT
        .with(|c| c.borrow().clone())
        .unwrap_or_else(|| Scope::new(&random_id(), None));
    scoped(scope, future)
}

/// The current scope's request id (a fresh id outside any scope).
pub(crate) fn current_request_id() -> String {
    CURRENT
        .with(|c| c.borrow().as_ref().map(|s| s.request_id.to_string()))
        .unwrap_or_else(random_id)
}

/// A future run in a [`Scope`] ([`scoped`]). The wrapped future is boxed as a trait object: one
/// `poll` per output type instead of one per wrapped future with that future's body inlined
/// into it (56 K of the wasm as `Scoped<F>`, BENCHMARKS.md "Worker size").
pub(crate) struct Scoped<'a, T> {
    scope: Scope,
    inner: Pin<Box<dyn Future<Output = T> + 'a>>,
}

impl<T> Future for Scoped<'_, T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let this = self.get_mut();
        let previous = CURRENT.with(|c| c.replace(Some(this.scope.clone())));
        let answer = this.inner.as_mut().poll(cx);
        CURRENT.with(|c| *c.borrow_mut() = previous);
        answer
    }
}

/// The current scope's trace as a `traceparent` value (what a queued event carries).
pub(crate) fn current_traceparent() -> Option<String> {
    CURRENT.with(|c| {
        c.borrow()
            .as_ref()
            .and_then(|s| s.trace)
            .map(|t| t.to_string())
    })
}

/// The `traceparent` to send on a request made now: a child span of the current scope's trace,
/// `None` outside a traced scope.
pub(crate) fn outgoing_traceparent() -> Option<String> {
    let trace = CURRENT.with(|c| c.borrow().as_ref().and_then(|s| s.trace))?;
    trace.child(span_id()).map(|t| t.to_string())
}

/// The trace of an incoming request: continued from a valid `traceparent` header (with a new
/// span id for this hop), else a new one.
pub(crate) fn trace_of(header: Option<&str>) -> TraceParent {
    header
        .and_then(TraceParent::parse)
        .and_then(|t| t.child(span_id()))
        .unwrap_or_else(new_trace)
}

/// A new sampled trace from random ids.
pub(crate) fn new_trace() -> TraceParent {
    loop {
        let mut trace_id = [0u8; 16];
        trace_id[..8].copy_from_slice(&span_id());
        trace_id[8..].copy_from_slice(&span_id());
        if let Some(t) = TraceParent::start(trace_id, span_id(), FLAG_SAMPLED) {
            return t;
        }
    }
}

/// 8 random bytes, never all zero (`Math.random`: unique enough for correlation, not a secret).
fn span_id() -> [u8; 8] {
    loop {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&random_u32().to_be_bytes());
        out[4..].copy_from_slice(&random_u32().to_be_bytes());
        if out != [0; 8] {
            return out;
        }
    }
}

fn random_u32() -> u32 {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let value = (js_sys::Math::random() * f64::from(u32::MAX)) as u32;
    value
}

/// A request id: Cloudflare's `cf-ray` when present, else 16 random hex digits.
pub(crate) fn request_id(cf_ray: Option<String>) -> String {
    cf_ray.filter(|r| !r.is_empty()).unwrap_or_else(random_id)
}

/// 16 hex digits from `Math.random`: unique enough for correlation, not a secret.
pub(crate) fn random_id() -> String {
    format!("{:08x}{:08x}", random_u32(), random_u32())
}
