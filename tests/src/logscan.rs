//! The personal-data scan of the Worker's logs (README "Log fields"): every line of every
//! Worker the harness starts is kept; scenarios register the values they sent that must never
//! be logged ([`forbid_in_logs`], [`crate::Fixture::forbid_in_logs`]); after the run
//! [`violations`] names every line that holds one of them, and every structured line that
//! lacks one of the fields every line has (`timestamp`, `level`, `message`, `request_id`).

use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use crate::process::{lock, Lines};
use crate::wrangler::json_object_in;

/// The fields every structured log line has.
pub const REQUIRED_FIELDS: [&str; 4] = ["timestamp", "level", "message", "request_id"];

/// The output of every Worker started so far (kept after it stops).
static WORKERS: Mutex<Vec<Lines>> = Mutex::new(Vec::new());
/// Values sent by scenarios that no log line may contain.
static FORBIDDEN: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn guard<T>(m: &'static Mutex<T>) -> MutexGuard<'static, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps a Worker's output for the scan (called by [`crate::WranglerDev::start`]).
pub(crate) fn register(lines: Lines) {
    guard(&WORKERS).push(lines);
}

/// Registers values (emails, names, property values a scenario sent) that no log line of any
/// Worker may contain. Values shorter than 4 characters are ignored: they would match ids and
/// counts by chance.
pub fn forbid_in_logs<S: AsRef<str>>(values: &[S]) {
    let mut forbidden = guard(&FORBIDDEN);
    for v in values {
        let v = v.as_ref();
        if v.chars().count() >= 4 && !forbidden.iter().any(|f| f == v) {
            forbidden.push(v.to_owned());
        }
    }
}

/// How many lines have been captured from every Worker so far.
#[must_use]
pub fn lines_captured() -> usize {
    guard(&WORKERS).iter().map(|l| lock(l).len()).sum()
}

/// Every problem in `lines`: a line holding a value of `forbidden`, or a structured line (a
/// JSON object with `level`) missing one of [`REQUIRED_FIELDS`] or with an empty one.
#[must_use]
pub fn problems_in(lines: &[String], forbidden: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for line in lines {
        if let Some(v) = forbidden.iter().find(|v| line.contains(v.as_str())) {
            out.push(format!("holds the sent value {v:?}: {line}"));
        }
        let Some(object) = json_object_in(line) else {
            continue;
        };
        if object.get("level").is_none() {
            continue;
        }
        for field in REQUIRED_FIELDS {
            let present = match object.get(field) {
                Some(Value::String(s)) => !s.is_empty(),
                _ => false,
            };
            if !present {
                out.push(format!("lacks `{field}`: {line}"));
            }
        }
    }
    out
}

/// [`problems_in`] over every line of every Worker started so far, against every value
/// registered with [`forbid_in_logs`].
#[must_use]
pub fn violations() -> Vec<String> {
    let forbidden = guard(&FORBIDDEN).clone();
    let workers = guard(&WORKERS).clone();
    workers
        .iter()
        .flat_map(|lines| problems_in(&lock(lines), &forbidden))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sent_values_and_missing_fields() {
        let ok = r#"{"timestamp":"t","level":"info","message":"m","request_id":"r"}"#;
        let leaky =
            r#"{"timestamp":"t","level":"info","message":"m","request_id":"r","e":"ann@x.io"}"#;
        let bare = r#"{"level":"warn","msg":"m"}"#;
        let lines: Vec<String> = [ok, leaky, bare, "[wrangler] ready on", r#"{"other":1}"#]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let found = problems_in(&lines, &["ann@x.io".to_owned()]);
        assert_eq!(found.len(), 4, "{found:#?}");
        assert!(found[0].contains("ann@x.io"));
        assert!(found.iter().any(|p| p.starts_with("lacks `timestamp`")));
        assert!(found.iter().any(|p| p.starts_with("lacks `message`")));
        assert!(found.iter().any(|p| p.starts_with("lacks `request_id`")));
        assert!(problems_in(&lines[..1], &["ann@x.io".to_owned()]).is_empty());
    }
}
