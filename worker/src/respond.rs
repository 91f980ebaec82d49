//! JSON responses, and the one place where error codes become HTTP statuses.

use serde_json::{json, Value};
use worker::{Response, Result};

pub(crate) fn json(status: u16, body: &Value) -> Result<Response> {
    Ok(Response::from_json(body)?.with_status(status))
}

/// `{"error":{"code":…,"message":…}}` with the given status.
pub(crate) fn error(status: u16, code: &str, message: &str) -> Result<Response> {
    json(
        status,
        &json!({ "error": { "code": code, "message": message } }),
    )
}
