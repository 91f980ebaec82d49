//! Fault injection (§4.5 status codes, §5 429s, slow answers, dropped connections) and the
//! counters behind `GET /__mock/stats`.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use serde_json::{json, Value};

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this status (a HubSpot-shaped error body). For 429, `policy` picks the
    /// `policyName` (`TEN_SECONDLY_ROLLING` by default, `DAILY`, `SECONDLY`);
    /// `retry_after` adds a `Retry-After` header (seconds).
    Status {
        status: u16,
        policy: Option<String>,
        retry_after: Option<u64>,
    },
    /// Close the connection without answering.
    Drop,
}

/// Faults chosen at start ([`super::MockConfig::faults`]) or through `POST /__mock/faults`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultConfig {
    /// Answers for the next requests, in order.
    pub next: Vec<Fault>,
    /// Fraction (0..=1) of requests answered with `rate_status`, decided by a seeded PRNG.
    pub rate: f64,
    /// The status used for `rate`.
    pub rate_status: u16,
    /// The PRNG seed (same seed, same sequence of faulted requests).
    pub seed: u64,
    /// Added to every answer.
    pub latency: Duration,
}

#[derive(Debug)]
pub(super) struct Faults {
    /// Batch-read inputs answered with an error of this category in the 207's `errors[]`
    /// instead of their record (docs/hubspot.md §4.1: errors name their inputs in `context.ids`),
    /// until cleared.
    pub(super) read_errors: BTreeMap<String, String>,
    /// Ids whose property history is withheld (`propertiesWithHistory` answers `{}` for them).
    pub(super) no_history: std::collections::BTreeSet<String>,
    /// Objects per request that asks for history; more is a 400 (`historyLimit`, default
    /// [`super::api::MAX_HISTORY_OBJECTS`]).
    pub(super) history_limit: usize,
    /// Properties the portal does not have, per object type as in API paths (`contacts`):
    /// a batch create, update or upsert writing one is refused whole (400 `VALIDATION_ERROR`,
    /// `PROPERTY_DOESNT_EXIST`). The mock has no property schema otherwise.
    pub(super) undefined_properties: BTreeMap<String, std::collections::BTreeSet<String>>,
    next: VecDeque<Fault>,
    rate: f64,
    rate_status: u16,
    rng: u64,
    pub(super) latency: Duration,
}

fn seed_state(seed: u64) -> u64 {
    // xorshift must not start at 0.
    seed ^ 0x2545_F491_4F6C_DD1D
}

impl Faults {
    pub(super) fn new(c: &FaultConfig) -> Self {
        Self {
            read_errors: BTreeMap::new(),
            no_history: std::collections::BTreeSet::new(),
            history_limit: super::api::MAX_HISTORY_OBJECTS,
            undefined_properties: BTreeMap::new(),
            next: c.next.iter().cloned().collect(),
            rate: c.rate,
            rate_status: if c.rate_status == 0 {
                500
            } else {
                c.rate_status
            },
            rng: seed_state(c.seed),
            latency: c.latency,
        }
    }

    fn xorshift(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// The fault for the request being served, if any.
    pub(super) fn pick(&mut self) -> Option<Fault> {
        if let Some(f) = self.next.pop_front() {
            return Some(f);
        }
        if self.rate > 0.0 {
            // 53 random bits → [0, 1).
            #[allow(clippy::cast_precision_loss)]
            let r = (self.xorshift() >> 11) as f64 / (1u64 << 53) as f64;
            if r < self.rate {
                return Some(Fault::Status {
                    status: self.rate_status,
                    policy: None,
                    retry_after: None,
                });
            }
        }
        None
    }

    /// Applies a `POST /__mock/faults` body; fields present replace, `next` entries append.
    pub(super) fn apply(&mut self, v: &Value) -> Result<(), String> {
        if v.get("clear").and_then(Value::as_bool) == Some(true) {
            *self = Self::new(&FaultConfig::default());
        }
        if let Some(list) = v.get("next") {
            let list = list.as_array().ok_or("next: must be an array")?;
            for f in list {
                self.next.push_back(parse_fault(f)?);
            }
        }
        if v.get("drop").and_then(Value::as_bool) == Some(true) {
            let n = v.get("count").and_then(Value::as_u64).unwrap_or(1);
            for _ in 0..n {
                self.next.push_back(Fault::Drop);
            }
        }
        if let Some(rate) = v.get("rate") {
            let rate = rate.as_f64().ok_or("rate: must be a number")?;
            if !(0.0..=1.0).contains(&rate) {
                return Err("rate: must be within 0..=1".into());
            }
            self.rate = rate;
            self.rate_status = status_of(v.get("status"))?.unwrap_or(500);
        }
        if let Some(map) = v.get("readErrors") {
            let map = map
                .as_object()
                .ok_or("readErrors: must be an object of id → category")?;
            for (id, category) in map {
                match category {
                    Value::String(c) => {
                        self.read_errors.insert(id.clone(), c.clone());
                    }
                    Value::Null => {
                        self.read_errors.remove(id);
                    }
                    _ => return Err("readErrors: each category is a string (null removes)".into()),
                }
            }
        }
        if let Some(map) = v.get("noHistory") {
            let map = map
                .as_object()
                .ok_or("noHistory: must be an object of id → true (false or null removes)")?;
            for (id, on) in map {
                match on {
                    Value::Bool(true) => {
                        self.no_history.insert(id.clone());
                    }
                    Value::Bool(false) | Value::Null => {
                        self.no_history.remove(id);
                    }
                    _ => return Err("noHistory: each value is true, false or null".into()),
                }
            }
        }
        if let Some(map) = v.get("undefinedProperties") {
            let map = map
                .as_object()
                .ok_or("undefinedProperties: must be an object of type → [property names]")?;
            for (object_type, names) in map {
                match names {
                    Value::Null => {
                        self.undefined_properties.remove(object_type);
                    }
                    Value::Array(names) => {
                        let names: Option<std::collections::BTreeSet<String>> = names
                            .iter()
                            .map(|n| n.as_str().map(str::to_owned))
                            .collect();
                        let names = names.ok_or("undefinedProperties: names are strings")?;
                        self.undefined_properties.insert(object_type.clone(), names);
                    }
                    _ => return Err("undefinedProperties: a list of names (null removes)".into()),
                }
            }
        }
        if let Some(limit) = v.get("historyLimit") {
            self.history_limit = match limit {
                Value::Null => super::api::MAX_HISTORY_OBJECTS,
                n => n
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or("historyLimit: must be a non-negative integer (null resets)")?,
            };
        }
        if let Some(seed) = v.get("seed") {
            self.rng = seed_state(seed.as_u64().ok_or("seed: must be an integer")?);
        }
        if let Some(ms) = v.get("latencyMs") {
            self.latency = Duration::from_millis(ms.as_u64().ok_or("latencyMs: integer")?);
        }
        Ok(())
    }

    pub(super) fn to_json(&self) -> Value {
        json!({
            "pending": self.next.len(),
            "readErrors": self.read_errors,
            "noHistory": self.no_history,
            "historyLimit": self.history_limit,
            "undefinedProperties": self.undefined_properties,
            "rate": self.rate,
            "rateStatus": self.rate_status,
            "latencyMs": u64::try_from(self.latency.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

fn status_of(v: Option<&Value>) -> Result<Option<u16>, String> {
    match v {
        None => Ok(None),
        Some(s) => s
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (100..600).contains(n))
            .map(Some)
            .ok_or_else(|| "status: must be an HTTP status code".into()),
    }
}

fn parse_fault(v: &Value) -> Result<Fault, String> {
    if v.get("drop").and_then(Value::as_bool) == Some(true) {
        return Ok(Fault::Drop);
    }
    let status = status_of(v.get("status"))?.ok_or("next[]: needs status or drop")?;
    Ok(Fault::Status {
        status,
        policy: v.get("policy").and_then(Value::as_str).map(str::to_owned),
        retry_after: v.get("retryAfter").and_then(Value::as_u64),
    })
}

/// Parses the CLI's `--fault-next 503,423,429:DAILY,drop`.
///
/// # Errors
/// On an entry that is neither `drop` nor `STATUS[:POLICY]`.
pub fn parse_next_list(s: &str) -> Result<Vec<Fault>, String> {
    s.split(',')
        .filter(|p| !p.is_empty())
        .map(|p| {
            if p == "drop" {
                return Ok(Fault::Drop);
            }
            let (status, policy) = match p.split_once(':') {
                Some((s, pol)) => (s, Some(pol.to_owned())),
                None => (p, None),
            };
            let status = status
                .parse::<u16>()
                .map_err(|_| format!("bad entry {p} (STATUS, STATUS:POLICY or drop)"))?;
            Ok(Fault::Status {
                status,
                policy,
                retry_after: None,
            })
        })
        .collect()
}

/// Counters for `GET /__mock/stats`.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub(super) requests: u64,
    pub(super) by_path: BTreeMap<String, u64>,
    pub(super) rate_limited: BTreeMap<&'static str, u64>,
    pub(super) injected: u64,
    pub(super) dropped: u64,
    pub(super) webhook_attempts: u64,
    pub(super) webhook_delivered: u64,
    pub(super) webhook_failed: u64,
    pub(super) webhook_events: u64,
    /// Batch upsert calls that reached the endpoint (refused ones included).
    pub(super) upsert_calls: u64,
    /// Batch upsert inputs written (created or updated).
    pub(super) upserted: u64,
    /// Requests that carried a W3C `traceparent`, by its trace id (`invalid` when the value
    /// is not 55 characters): `METHOD path` of each.
    pub(super) traced: BTreeMap<String, Vec<String>>,
}

impl Stats {
    pub(super) fn count(&mut self, method: &str, path: &str) {
        self.requests += 1;
        *self.by_path.entry(format!("{method} {path}")).or_default() += 1;
    }

    /// Notes a request's `traceparent` (`00-{trace id}-{span id}-{flags}`).
    pub(super) fn traced(&mut self, method: &str, path: &str, traceparent: &str) {
        let trace_id = if traceparent.len() == 55 {
            traceparent[3..35].to_owned()
        } else {
            "invalid".to_owned()
        };
        self.traced
            .entry(trace_id)
            .or_default()
            .push(format!("{method} {path}"));
    }

    pub(super) fn to_json(&self, refreshes: u64, code_exchanges: u64) -> Value {
        let total_429: u64 = self.rate_limited.values().sum();
        json!({
            "requests": self.requests,
            "byPath": self.by_path,
            "rateLimited": total_429,
            "rateLimitedByPolicy": self.rate_limited,
            "faultsInjected": self.injected,
            "dropped": self.dropped,
            "tokenRefreshes": refreshes,
            "codeExchanges": code_exchanges,
            "batchUpsert": {"calls": self.upsert_calls, "written": self.upserted},
            "traced": self.traced,
            "webhooks": {
                "events": self.webhook_events,
                "attempts": self.webhook_attempts,
                "delivered": self.webhook_delivered,
                "failedAttempts": self.webhook_failed,
            },
        })
    }
}
