//! HTTP routing and HubSpot-shaped responses over the store (§4), with auth (§6) and rate
//! limits (§5).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use super::assoc::{self, AssocType};
use super::limits::Policy;
use super::oauth::{expired_message, TokenState};
use super::store::{Filter, Kind, Operator, Record, Search, WriteError};
use super::time::format_iso;
use super::webhooks;
use super::workflows;
use super::{lock, Data, Request, Response, Shared};

/// "Batch requests to CRM object endpoints are limited to 100 records per request." (§4.1)
const MAX_BATCH: usize = 100;
/// Objects per request when `propertiesWithHistory` is asked (batch read, list page). HubSpot:
/// history "will reduce the maximum number of objects that can be read by a single request"
/// without a number (§4.1, §8 item 10); 50 is the figure integrators report, and the one
/// hubspot-edge assumes (`hubspot_edge_core::api::MAX_HISTORY_BATCH_INPUTS`). `POST
/// /__mock/faults` `historyLimit` lowers it (a HubSpot stricter than assumed).
pub(super) const MAX_HISTORY_OBJECTS: usize = 50;
const LIST_DEFAULT_LIMIT: usize = 10;
const LIST_MAX_LIMIT: usize = 100;
/// §4.4 limits.
const SEARCH_DEFAULT_LIMIT: usize = 10;
const SEARCH_MAX_LIMIT: usize = 200;
const SEARCH_MAX_RESULTS: usize = 10_000;
const SEARCH_MAX_GROUPS: usize = 5;
const SEARCH_MAX_FILTERS_PER_GROUP: usize = 6;
const SEARCH_MAX_FILTERS: usize = 18;
const SEARCH_MAX_QUERY_CHARS: usize = 3_000;

/// The 401 text HubSpot sends when the bearer token is missing or unknown.
pub(super) const AUTH_MESSAGE: &str = "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview";

/// A uuid-shaped id (`a43683b0-5717-4ceb-80b4-104d02915d8c`), unique per mock.
fn correlation_id(data: &mut Data) -> String {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    data.next_correlation += 1;
    let a = mix(data.next_correlation ^ data.now_ms().rotate_left(20));
    let b = mix(a);
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

pub(super) fn json_response(status: u16, body: &Value) -> Response {
    Response {
        status,
        headers: Vec::new(),
        body: serde_json::to_vec(body).unwrap_or_default(),
    }
}

pub(super) fn error(data: &mut Data, status: u16, category: &str, message: &str) -> Response {
    error_with(data, status, category, message, None)
}

pub(super) fn error_with(
    data: &mut Data,
    status: u16,
    category: &str,
    message: &str,
    errors: Option<Value>,
) -> Response {
    let mut body = json!({
        "status": "error",
        "message": message,
        "correlationId": correlation_id(data),
        "category": category,
    });
    if let (Some(e), Some(o)) = (errors, body.as_object_mut()) {
        o.insert("errors".into(), e);
    }
    json_response(status, &body)
}

fn validation(data: &mut Data, message: &str) -> Response {
    error(data, 400, "VALIDATION_ERROR", message)
}

/// Splits `a=1&b=2` into decoded pairs.
pub(super) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

/// Decodes a query key or value (`application/x-www-form-urlencoded`: `+` is a space).
fn percent_decode(s: &str) -> String {
    decode(s, true)
}

/// Splits a request path into percent-decoded segments, as any HTTP server routes: the official
/// clients encode path parameters (`contacts/a%40b.com?idProperty=email`). A `+` stays a `+`
/// in a path, and an encoded `/` (`%2F`) stays inside its segment.
fn path_segments(path: &str) -> Vec<String> {
    path.trim_matches('/')
        .split('/')
        .map(|s| decode(s, false))
        .collect()
}

fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The query of one request.
struct Query(Vec<(String, String)>);

impl Query {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// `properties=a,b&properties=c` → `[a, b, c]`.
    fn properties(&self) -> Vec<String> {
        self.names("properties")
    }

    /// `propertiesWithHistory`, read like `properties`.
    fn properties_with_history(&self) -> Vec<String> {
        self.names("propertiesWithHistory")
    }

    fn names(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .flat_map(|(_, v)| v.split(','))
            .filter(|p| !p.is_empty())
            .map(str::to_owned)
            .collect()
    }

    fn archived(&self) -> bool {
        self.get("archived") == Some("true")
    }
}

/// Where a path points: object type segment and what follows it.
fn route<'a>(segs: &[&'a str]) -> Option<(&'a str, Vec<&'a str>)> {
    match segs {
        ["crm", "v3", "objects", t, rest @ ..] => Some((t, rest.to_vec())),
        // Date-versioned form (§0), e.g. `/crm/objects/2026-03/contacts`.
        ["crm", "objects", version, t, rest @ ..]
            if version.len() == 7 && version.as_bytes()[4] == b'-' =>
        {
            Some((t, rest.to_vec()))
        }
        _ => None,
    }
}

pub(super) fn handle(shared: &Shared, req: &Request) -> Response {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    let query = Query(parse_query(query));
    let mut data = lock(&shared.data);
    let data = &mut *data;
    let token = req
        .header("authorization")
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim);
    let token = match token {
        Some(t) if t == shared.token => t,
        Some(t) => match data.oauth.check(t, data.now_ms()) {
            // One limiter bucket for every OAuth token: the limit is per installing account
            // (§5.1), and refreshed tokens must not reset it.
            TokenState::Valid => "oauth",
            TokenState::Expired(secs) => {
                return error(data, 401, "EXPIRED_AUTHENTICATION", &expired_message(secs));
            }
            TokenState::Unknown => {
                return error(data, 401, "INVALID_AUTHENTICATION", AUTH_MESSAGE);
            }
        },
        None => return error(data, 401, "INVALID_AUTHENTICATION", AUTH_MESSAGE),
    };
    let decoded = path_segments(path);
    let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
    // Callback completions (docs/hubspot.md §3.4): the bearer token, and the normal burst budget
    // (no rate-limit exemption in the specification, docs/hubspot.md §3.4).
    let callbacks = match segs.as_slice() {
        ["automation", "v4", "actions", "callbacks", rest @ ..] => Some((rest, false)),
        // Date-versioned: `/automation/actions/callbacks/2026-03/{callbackId}/complete` (§3.4).
        ["automation", "actions", "callbacks", version, rest @ ..]
            if workflows::is_date_version(version) =>
        {
            Some((rest, true))
        }
        _ => None,
    };
    if let Some((rest, dated)) = callbacks {
        let now = data.now_ms();
        let outcome = data.limiter.check(token, false, now);
        let mut resp = match outcome.refused {
            Some(policy) => rate_limited(data, policy),
            None => workflows::callbacks(data, req, rest, dated, now),
        };
        resp.headers.extend(outcome.headers);
        return resp;
    }
    if let ["crm", "v4", "objects", from, from_id, "associations", rest @ ..] = segs.as_slice() {
        let now = data.now_ms();
        let outcome = data.limiter.check(token, false, now);
        let mut resp = match outcome.refused {
            Some(policy) => rate_limited(data, policy),
            None => {
                associations_v4(data, req, from, from_id, rest, &query, now).unwrap_or_else(|r| r)
            }
        };
        resp.headers.extend(outcome.headers);
        return resp;
    }
    // The v4 form and the date-versioned one (§4.3: `/crm/associations/2026-03/...`).
    let batch_read = match segs.as_slice() {
        ["crm", "v4", "associations", from, to, "batch", "read"] => Some((*from, *to)),
        ["crm", "associations", version, from, to, "batch", "read"]
            if version.len() == 7 && version.as_bytes()[4] == b'-' =>
        {
            Some((*from, *to))
        }
        _ => None,
    };
    if let Some((from, to)) = batch_read {
        let now = data.now_ms();
        let outcome = data.limiter.check(token, false, now);
        let mut resp = match outcome.refused {
            Some(policy) => rate_limited(data, policy),
            None if req.method == "POST" => {
                associations_batch_read(data, req, from, to, now).unwrap_or_else(|r| r)
            }
            None => error(data, 404, "OBJECT_NOT_FOUND", "resource not found"),
        };
        resp.headers.extend(outcome.headers);
        return resp;
    }
    let routed = route(&segs);
    let is_search = req.method == "POST"
        && routed
            .as_ref()
            .is_some_and(|(_, rest)| rest.as_slice() == ["search"]);
    let now = data.now_ms();
    let outcome = data.limiter.check(token, is_search, now);
    let mut resp = match outcome.refused {
        Some(policy) => rate_limited(data, policy),
        None => match routed {
            None => error(data, 404, "OBJECT_NOT_FOUND", "resource not found"),
            Some((type_seg, rest)) => match Kind::parse(type_seg) {
                None => validation(
                    data,
                    &format!("Unable to infer object type from: {type_seg}"),
                ),
                Some(kind) => dispatch(data, req, kind, &rest, &query, now),
            },
        },
    };
    resp.headers.extend(outcome.headers);
    resp
}

pub(super) fn rate_limited(data: &mut Data, policy: Policy) -> Response {
    *data.stats.rate_limited.entry(policy.name()).or_default() += 1;
    // §5.3.
    let body = json!({
        "status": "error",
        "message": policy.message(),
        "errorType": "RATE_LIMIT",
        "correlationId": correlation_id(data),
        "policyName": policy.name(),
        "requestId": correlation_id(data),
    });
    json_response(429, &body)
}

fn parse_body(data: &mut Data, req: &Request) -> Result<Value, Response> {
    serde_json::from_slice(&req.body)
        .map_err(|e| validation(data, &format!("Invalid input JSON: {e}")))
}

fn dispatch(
    data: &mut Data,
    req: &Request,
    kind: Kind,
    rest: &[&str],
    query: &Query,
    now: u64,
) -> Response {
    let result = match (req.method.as_str(), rest) {
        ("GET", []) => Ok(list(data, req, kind, query)),
        ("POST", []) => create(data, req, kind, now),
        ("POST", ["search"]) => search(data, req, kind),
        ("POST", ["merge"]) => merge(data, req, kind, now),
        ("POST", ["batch", op]) => batch(data, req, kind, op, query, now),
        ("GET", [id]) => Ok(read(data, kind, id, query)),
        ("PATCH", [id]) => update(data, req, kind, id, query, now),
        ("DELETE", [_]) => {
            if data.store.archive(kind, rest[0], now) {
                emit_deletion(data, kind, rest[0], now);
            }
            Ok(Response {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            })
        }
        _ => Ok(error(data, 404, "OBJECT_NOT_FOUND", "resource not found")),
    };
    result.unwrap_or_else(|r| r)
}

/// `POST …/{type}/merge` `{"primaryObjectId","objectIdToMerge"}` (docs/hubspot.md §4.1): the record
/// to merge is archived, values the primary lacks move to it, `hs_merged_object_ids` lists the
/// merged ids, and one `*.merge` event is emitted (§2.2: `primaryObjectId`, `mergedObjectIds`,
/// `newObjectId` = the primary, `numberOfPropertiesMoved`), without `propertyChange` events for
/// the moved values (docs/hubspot.md §2.2) and without a deletion for the merged record.
fn merge(data: &mut Data, req: &Request, kind: Kind, now: u64) -> Result<Response, Response> {
    let body = parse_body(data, req)?;
    let id_of = |key: &str| match body.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let (Some(primary), Some(other)) = (id_of("primaryObjectId"), id_of("objectIdToMerge")) else {
        return Err(validation(
            data,
            "primaryObjectId and objectIdToMerge are required",
        ));
    };
    if primary == other {
        return Err(validation(data, "Cannot merge an object with itself"));
    }
    let found = |data: &Data, id: &str| {
        data.store
            .find(kind, id, None, false)
            .map(|r| (r.id, r.props.clone()))
    };
    let (Some((primary_id, primary_props)), Some((other_id, other_props))) =
        (found(data, &primary), found(data, &other))
    else {
        return Err(error(data, 404, "OBJECT_NOT_FOUND", "resource not found"));
    };
    let mut moved = Map::new();
    for (name, value) in other_props.iter() {
        let system = kind.is_read_only(name)
            || name == "hs_merged_object_ids"
            || name == "hs_additional_emails";
        if !system && primary_props.get(name).is_none_or(String::is_empty) {
            moved.insert(name.to_owned(), json!(value));
        }
    }
    let moved_count = moved.len();
    let merged_ids: Vec<String> = primary_props
        .get("hs_merged_object_ids")
        .map(|v| {
            v.split(';')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default()
        .into_iter()
        .chain(std::iter::once(other_id.to_string()))
        // The merged record's own merged ids now name the primary too.
        .chain(
            other_props
                .get("hs_merged_object_ids")
                .map(|v| {
                    v.split(';')
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default(),
        )
        .collect();
    moved.insert("hs_merged_object_ids".into(), json!(merged_ids.join(";")));
    // First: the merged record's e-mail must name the primary before the primary is written.
    data.store.merge_away(kind, other_id, primary_id, now);
    let rendered = match data.store.update(kind, &primary, None, &moved, now) {
        Ok(rec) => rec.render(kind, &[]),
        Err(e) => return Err(write_error(data, kind, e)),
    };
    if data.webhooks_on {
        data.next_event_id += 1;
        let mut e = webhooks::event(data.next_event_id, kind, "merge", primary_id, now, None);
        if let Some(o) = e.as_object_mut() {
            o.insert("primaryObjectId".into(), json!(primary_id));
            o.insert("mergedObjectIds".into(), json!([other_id]));
            o.insert("newObjectId".into(), json!(primary_id));
            o.insert("numberOfPropertiesMoved".into(), json!(moved_count));
        }
        data.outbox.push(e);
    }
    Ok(json_response(200, &rendered))
}

/// Adds `propertiesWithHistory` for `names` to a rendered record (none asked: nothing); `{}`
/// when history is withheld for it (`POST /__mock/faults` `noHistory`).
fn add_history(data: &Data, rec: &Record, v: &mut Value, names: &[String]) {
    if names.is_empty() {
        return;
    }
    let withheld: &[String] = &[];
    let names = if data.faults.no_history.contains(&rec.id.to_string()) {
        withheld
    } else {
        names
    };
    rec.add_history(v, names);
}

/// The 400 for asking history of more objects than a request may hold.
fn too_many_with_history(data: &mut Data, n: usize) -> Response {
    let max = data.faults.history_limit;
    validation(
        data,
        &format!(
            "Requests with propertiesWithHistory are limited to {max} records per request (got {n})."
        ),
    )
}

/// Whether an `idProperty` (absent or `hs_object_id`) means the key is a record id.
fn by_record_id(id_property: Option<&str>) -> bool {
    matches!(id_property, None | Some("hs_object_id"))
}

fn read(data: &mut Data, kind: Kind, id: &str, query: &Query) -> Response {
    let props = query.properties();
    let history = query.properties_with_history();
    let id_property = query.get("idProperty");
    let found = data
        .store
        .find(kind, id, id_property, query.archived())
        .or_else(|| {
            by_record_id(id_property)
                .then(|| data.store.survivor_of(kind, id))
                .flatten()
        });
    match found {
        Some(rec) => {
            let mut v = rec.render(kind, &props);
            add_history(data, rec, &mut v, &history);
            add_associations(data, kind, rec.id, &mut v, query);
            json_response(200, &v)
        }
        None => error(data, 404, "OBJECT_NOT_FOUND", "resource not found"),
    }
}

fn list(data: &mut Data, req: &Request, kind: Kind, query: &Query) -> Response {
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(LIST_DEFAULT_LIMIT)
        .clamp(1, LIST_MAX_LIMIT);
    let after = query
        .get("after")
        .and_then(|a| a.parse::<u64>().ok())
        .unwrap_or(0);
    let props = query.properties();
    let history = query.properties_with_history();
    if !history.is_empty() && limit > data.faults.history_limit {
        return too_many_with_history(data, limit);
    }
    let (page, next) = data.store.list(kind, after, limit, query.archived());
    let results: Vec<Value> = page
        .iter()
        .map(|r| {
            let mut v = r.render(kind, &props);
            add_history(data, r, &mut v, &history);
            add_associations(data, kind, r.id, &mut v, query);
            v
        })
        .collect();
    let mut body = json!({ "results": results });
    if let (Some(next), Some(o)) = (next, body.as_object_mut()) {
        o.insert(
            "paging".into(),
            json!({"next": {"after": next.to_string(), "link": next_link(req, query, next)}}),
        );
    }
    json_response(200, &body)
}

/// The absolute URL of the next page: this request's URL with `after` replaced.
fn next_link(req: &Request, query: &Query, next: u64) -> String {
    let path = req.target.split('?').next().unwrap_or("");
    let host = req.header("host").unwrap_or("127.0.0.1");
    let mut params: Vec<String> = query
        .0
        .iter()
        .filter(|(k, _)| k != "after")
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    params.push(format!("after={next}"));
    format!("http://{host}{path}?{}", params.join("&"))
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~,".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A body's `properties` list of names (batch read, search); empty when absent.
fn property_names(v: &Value) -> Vec<String> {
    names_at(v, "properties")
}

/// A body's list of names under `key`; empty when absent.
fn names_at(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn props_of(v: &Value) -> Map<String, Value> {
    v.get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn invalid_message(errors: &[super::store::PropError]) -> String {
    let list: Vec<Value> = errors
        .iter()
        .map(|e| json!({"isValid": false, "message": e.message, "error": e.code, "name": e.name}))
        .collect();
    format!("Property values were not valid: {}", Value::Array(list))
}

/// The single-object answer to a failed write.
fn write_error(data: &mut Data, kind: Kind, e: WriteError) -> Response {
    match e {
        WriteError::Invalid(errors) => {
            let list = Value::Array(
                errors
                    .iter()
                    .map(super::store::PropError::to_json)
                    .collect(),
            );
            error_with(
                data,
                400,
                "VALIDATION_ERROR",
                &invalid_message(&errors),
                Some(list),
            )
        }
        WriteError::Duplicate(id) => error(
            data,
            409,
            "CONFLICT",
            &format!("{} already exists. Existing ID: {id}", label_word(kind)),
        ),
        WriteError::NotFound(_) => error(data, 404, "OBJECT_NOT_FOUND", "resource not found"),
    }
}

fn label_word(kind: Kind) -> &'static str {
    match kind {
        Kind::Contact => "Contact",
        _ => "Object",
    }
}

fn create(data: &mut Data, req: &Request, kind: Kind, now: u64) -> Result<Response, Response> {
    let body = parse_body(data, req)?;
    let props = props_of(&body);
    let names: Vec<String> = props.keys().cloned().collect();
    let links = create_associations(data, kind, &body).map_err(|m| validation(data, &m))?;
    match data.store.create(kind, &props, now) {
        Ok(rec) => {
            let v = rec.render(kind, &names);
            let id = rec.id;
            for (to, types) in links {
                data.assoc.add((kind, id), to, &types);
            }
            emit(data, kind, "creation", id, now, None);
            Ok(json_response(201, &v))
        }
        Err(e) => Err(write_error(data, kind, e)),
    }
}

fn update(
    data: &mut Data,
    req: &Request,
    kind: Kind,
    id: &str,
    query: &Query,
    now: u64,
) -> Result<Response, Response> {
    let body = parse_body(data, req)?;
    let props = props_of(&body);
    let names: Vec<String> = props.keys().cloned().collect();
    // A merged-away id reaches its survivor (docs/hubspot.md §4.1); batch update does not do this.
    let survivor = by_record_id(query.get("idProperty"))
        .then(|| data.store.survivor_of(kind, id).map(|r| r.id.to_string()))
        .flatten();
    let id = survivor.as_deref().unwrap_or(id);
    let before = snapshot(data, kind, id, query.get("idProperty"));
    match data
        .store
        .update(kind, id, query.get("idProperty"), &props, now)
    {
        Ok(rec) => {
            let v = rec.render(kind, &names);
            let after = rec.props.clone();
            emit_changes(data, kind, before, &after, &names, now);
            Ok(json_response(200, &v))
        }
        Err(e) => Err(write_error(data, kind, e)),
    }
}

/// One entry of a batch response's `errors[]`.
fn batch_error(data: &mut Data, kind: Kind, e: WriteError, trace: Option<&str>) -> Value {
    let mut v = match e {
        WriteError::Invalid(errors) => json!({
            "status": "error",
            "category": "VALIDATION_ERROR",
            "message": invalid_message(&errors),
            "errors": errors.iter().map(super::store::PropError::to_json).collect::<Vec<_>>(),
            "context": {},
        }),
        WriteError::Duplicate(id) => json!({
            "status": "error",
            "category": "CONFLICT",
            "message": format!("{} already exists. Existing ID: {id}", label_word(kind)),
            "context": {},
        }),
        WriteError::NotFound(id) => json!({
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Object not found.  objectId are usually numeric.",
            "context": {"id": [id]},
        }),
    };
    if let Some(o) = v.as_object_mut() {
        o.insert("correlationId".into(), Value::String(correlation_id(data)));
        if let (Some(t), Some(ctx)) = (trace, o.get_mut("context").and_then(Value::as_object_mut)) {
            ctx.insert("objectWriteTraceId".into(), json!([t]));
        }
    }
    v
}

/// A batch answer; `started` and `completed` are ms since the epoch (the mock's clock).
fn batch_response(
    ok_status: u16,
    (started, completed): (u64, u64),
    results: Vec<Value>,
    errors: Vec<Value>,
) -> Response {
    let mut body = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": format_iso(started),
        "completedAt": format_iso(completed),
    });
    let status = if errors.is_empty() { ok_status } else { 207 };
    if let (false, Some(o)) = (errors.is_empty(), body.as_object_mut()) {
        o.insert("numErrors".into(), json!(errors.len()));
        o.insert("errors".into(), Value::Array(errors));
    }
    json_response(status, &body)
}

fn batch(
    data: &mut Data,
    req: &Request,
    kind: Kind,
    op: &str,
    query: &Query,
    now: u64,
) -> Result<Response, Response> {
    let body = parse_body(data, req)?;
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return Err(validation(data, "inputs: must be an array"));
    };
    if inputs.len() > MAX_BATCH {
        return Err(validation(
            data,
            &format!(
                "Batch requests to CRM object endpoints are limited to {MAX_BATCH} records per request (got {}).",
                inputs.len()
            ),
        ));
    }
    if op == "upsert" {
        data.stats.upsert_calls += 1;
    }
    if matches!(op, "create" | "update" | "upsert") {
        if let Some(refused) = undefined_properties(data, kind, inputs) {
            return Err(refused);
        }
    }
    let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
    let resolved = if op == "update" || op == "upsert" {
        let resolved = resolve_inputs(&data.store, kind, inputs);
        if let Err(message) = check_write_inputs(kind, op, inputs, &resolved) {
            return Err(validation(data, &message));
        }
        resolved
    } else {
        Vec::new()
    };
    let mut results = Vec::new();
    let mut errors = Vec::new();
    match op {
        "read" => {
            let props = property_names(&body);
            let history = names_at(&body, "propertiesWithHistory");
            if !history.is_empty() && inputs.len() > data.faults.history_limit {
                return Err(too_many_with_history(data, inputs.len()));
            }
            let id_property = str_of(&body, "idProperty");
            let mut missing = Vec::new();
            let mut injected: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for input in inputs {
                let id = str_of(input, "id").unwrap_or_default();
                if let Some(category) = data.faults.read_errors.get(&id) {
                    injected.entry(category.clone()).or_default().push(id);
                    continue;
                }
                match data
                    .store
                    .find(kind, &id, id_property.as_deref(), query.archived())
                {
                    Some(rec) => {
                        let mut v = rec.render(kind, &props);
                        add_history(data, rec, &mut v, &history);
                        results.push(v);
                    }
                    None => missing.push(id),
                }
            }
            if !missing.is_empty() {
                errors.push(json!({
                    "status": "error",
                    "category": "OBJECT_NOT_FOUND",
                    "message": format!("Could not get some {} objects, they may be deleted or not exist. Check that ids are valid.", kind.label()),
                    "context": {"ids": missing},
                }));
            }
            for (category, ids) in injected {
                errors.push(json!({
                    "status": "error",
                    "category": category,
                    "message": "Injected error (POST /__mock/faults readErrors).",
                    "context": {"ids": ids},
                }));
            }
            Ok(batch_response(200, (now, data.now_ms()), results, errors))
        }
        "create" => {
            for input in inputs {
                let props = props_of(input);
                let names: Vec<String> = props.keys().cloned().collect();
                let trace = str_of(input, "objectWriteTraceId");
                let links = match create_associations(data, kind, input) {
                    Ok(l) => l,
                    Err(m) => {
                        let mut e = json!({
                            "status": "error",
                            "category": "VALIDATION_ERROR",
                            "message": m,
                            "context": {},
                            "correlationId": correlation_id(data),
                        });
                        if let Some(t) = &trace {
                            e["context"]["objectWriteTraceId"] = json!([t]);
                        }
                        errors.push(e);
                        continue;
                    }
                };
                match data.store.create(kind, &props, now) {
                    Ok(rec) => {
                        let mut v = rec.render(kind, &names);
                        let id = rec.id;
                        for (to, types) in links {
                            data.assoc.add((kind, id), to, &types);
                        }
                        emit(data, kind, "creation", id, now, None);
                        if let (Some(t), Some(o)) = (&trace, v.as_object_mut()) {
                            o.insert("objectWriteTraceId".into(), json!(t));
                        }
                        results.push(v);
                    }
                    Err(e) => errors.push(batch_error(data, kind, e, trace.as_deref())),
                }
            }
            Ok(batch_response(201, (now, data.now_ms()), results, errors))
        }
        "update" => {
            for (input, found) in inputs.iter().zip(resolved) {
                let props = props_of(input);
                let names: Vec<String> = props.keys().cloned().collect();
                let trace = str_of(input, "objectWriteTraceId");
                let Some(found) = found.map(|id| id.to_string()) else {
                    let id = str_of(input, "id").unwrap_or_default();
                    let e = WriteError::NotFound(id);
                    errors.push(batch_error(data, kind, e, trace.as_deref()));
                    continue;
                };
                let before = snapshot(data, kind, &found, None);
                match data.store.update(kind, &found, None, &props, now) {
                    Ok(rec) => {
                        let mut v = rec.render(kind, &names);
                        if let (Some(t), Some(o)) = (&trace, v.as_object_mut()) {
                            o.insert("objectWriteTraceId".into(), json!(t));
                        }
                        results.push(v);
                        let after = rec.props.clone();
                        emit_changes(data, kind, before, &after, &names, now);
                    }
                    Err(e) => errors.push(batch_error(data, kind, e, trace.as_deref())),
                }
            }
            Ok(batch_response(200, (now, data.now_ms()), results, errors))
        }
        "upsert" => {
            for (input, found) in inputs.iter().zip(resolved) {
                let mut props = props_of(input);
                let id = str_of(input, "id").unwrap_or_default();
                let id_property = str_of(input, "idProperty");
                let trace = str_of(input, "objectWriteTraceId");
                let found = found.map(|id| id.to_string());
                let before = found.as_deref().and_then(|f| snapshot(data, kind, f, None));
                let exists = found.is_some();
                let mut names: Vec<String> = props.keys().cloned().collect();
                if let Some(p) = id_property
                    .as_deref()
                    .filter(|p| !names.iter().any(|n| n == p))
                {
                    names.push(p.to_owned());
                }
                let outcome = if let Some(found) = &found {
                    data.store.update(kind, found, None, &props, now)
                } else {
                    if let Some(p) = id_property.as_deref().filter(|p| *p != "hs_object_id") {
                        props.insert(p.to_owned(), Value::String(id.clone()));
                    }
                    data.store.create(kind, &props, now)
                };
                match outcome {
                    Ok(rec) => {
                        data.stats.upserted += 1;
                        let mut v = rec.render(kind, &names);
                        let (rid, after) = (rec.id, rec.props.clone());
                        if let Some(o) = v.as_object_mut() {
                            o.insert("new".into(), json!(!exists));
                            if let Some(t) = &trace {
                                o.insert("objectWriteTraceId".into(), json!(t));
                            }
                        }
                        results.push(v);
                        if exists {
                            emit_changes(data, kind, before, &after, &names, now);
                        } else {
                            emit(data, kind, "creation", rid, now, None);
                        }
                    }
                    Err(e) => errors.push(batch_error(data, kind, e, trace.as_deref())),
                }
            }
            Ok(batch_response(200, (now, data.now_ms()), results, errors))
        }
        "archive" => {
            for input in inputs {
                let id = str_of(input, "id").unwrap_or_default();
                if data.store.archive(kind, &id, now) {
                    emit_deletion(data, kind, &id, now);
                }
            }
            Ok(Response {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            })
        }
        _ => Ok(error(data, 404, "OBJECT_NOT_FOUND", "resource not found")),
    }
}

/// A batch write naming a property the portal does not have (`POST /__mock/faults`
/// `undefinedProperties`) is refused whole, nothing written: 400 `VALIDATION_ERROR` with one
/// `errors[]` entry per such property, `code` `PROPERTY_DOESNT_EXIST` and the name in
/// `context.propertyName` (docs/hubspot.md §4.5 error format; multi-status answers are documented
/// for batch create only: https://developers.hubspot.com/docs/api-reference/error-handling).
fn undefined_properties(data: &mut Data, kind: Kind, inputs: &[Value]) -> Option<Response> {
    let undefined = data.faults.undefined_properties.get(&kind.plural())?;
    let mut named: Vec<String> = inputs
        .iter()
        .filter_map(|i| i.get("properties").and_then(Value::as_object))
        .flat_map(|p| p.keys())
        .filter(|k| undefined.contains(*k))
        .cloned()
        .collect();
    named.sort();
    named.dedup();
    if named.is_empty() {
        return None;
    }
    let errors: Vec<Value> = named
        .iter()
        .map(|n| {
            json!({
                "message": format!("Property \"{n}\" does not exist"),
                "code": "PROPERTY_DOESNT_EXIST",
                "context": {"propertyName": [n]},
            })
        })
        .collect();
    Some(error_with(
        data,
        400,
        "VALIDATION_ERROR",
        "Property values were not valid",
        Some(Value::Array(errors)),
    ))
}

/// The live record each batch update/upsert input names (by id, e-mail or another
/// `idProperty`), looked up once per request: a property other than the id and e-mail is
/// indexed in one pass over the table, not scanned per input (a 100k inbound upsert by a
/// custom unique property would otherwise take seconds per batch).
fn resolve_inputs(store: &super::store::Store, kind: Kind, inputs: &[Value]) -> Vec<Option<u64>> {
    let mut indexes: HashMap<String, HashMap<String, u64>> = HashMap::new();
    inputs
        .iter()
        .map(|input| {
            let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
            match input.get("idProperty").and_then(Value::as_str) {
                p @ (None | Some("hs_object_id" | "email")) => {
                    store.find(kind, id, p, false).map(|r| r.id)
                }
                Some(p) => indexes
                    .entry(p.to_owned())
                    .or_insert_with(|| store.index_of(kind, p))
                    .get(&id.to_ascii_lowercase())
                    .copied(),
            }
        })
        .collect()
}

/// The whole-batch 400s of a batch update or upsert, before anything is written (docs/hubspot.md
/// §4.1, from HubSpot's answers quoted in segmentio/action-destinations#3957 and #3969 and
/// HubSpot/hubspot-api-nodejs#548): `idProperty: hs_object_id` (it must be omitted), a batch
/// update by `email` (batch update needs record ids), and two inputs that resolve to one
/// record (the same id twice, an e-mail spelt twice, a record named by id and by e-mail).
fn check_write_inputs(
    kind: Kind,
    op: &str,
    inputs: &[Value],
    resolved: &[Option<u64>],
) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    let mut duplicates = Vec::new();
    for (input, found) in inputs.iter().zip(resolved) {
        let id = input.get("id").and_then(Value::as_str).unwrap_or_default();
        let id_property = input.get("idProperty").and_then(Value::as_str);
        if let Some(p) = id_property.filter(|p| {
            *p == "hs_object_id" || (op == "update" && kind == Kind::Contact && *p == "email")
        }) {
            return Err(format!(
                "Unable to perform update/upsert by non-unique {} property {p}",
                kind.object_type_id()
            ));
        }
        let key = match found {
            Some(rec) => format!("#{rec}"),
            None if op == "upsert" => format!(
                "{}={}",
                id_property.unwrap_or_default(),
                id.trim().to_lowercase()
            ),
            None => continue,
        };
        if !seen.insert(key) {
            duplicates.push(id.trim().to_owned());
        }
    }
    if duplicates.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "Duplicate IDs found in batch input: [{}]. IDs must be unique",
            duplicates.join(", ")
        ))
    }
}

fn parse_search(body: &Value) -> Result<(Search, Vec<String>), String> {
    let groups_json = match body.get("filterGroups") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err("filterGroups: must be an array".into()),
    };
    if groups_json.len() > SEARCH_MAX_GROUPS {
        return Err(format!(
            "Too many filter groups ({}). A search can contain a maximum of {SEARCH_MAX_GROUPS} filterGroups.",
            groups_json.len()
        ));
    }
    let mut groups = Vec::new();
    let mut total_filters = 0;
    for g in &groups_json {
        let filters = g
            .get("filters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if filters.len() > SEARCH_MAX_FILTERS_PER_GROUP {
            return Err(format!(
                "Too many filters in a filterGroup ({}). A filterGroup can contain a maximum of {SEARCH_MAX_FILTERS_PER_GROUP} filters.",
                filters.len()
            ));
        }
        total_filters += filters.len();
        let mut group = Vec::new();
        for f in &filters {
            let text = |k: &str| match f.get(k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                Some(Value::Bool(b)) => Some(b.to_string()),
                _ => None,
            };
            let property = text("propertyName").ok_or("filter: propertyName is required")?;
            let op = text("operator").unwrap_or_else(|| "EQ".into());
            let operator =
                Operator::parse(&op).ok_or_else(|| format!("Unknown filter operator: {op}"))?;
            let values = f
                .get("values")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            group.push(Filter {
                property,
                operator,
                value: text("value"),
                high: text("highValue"),
                values,
            });
        }
        groups.push(group);
    }
    if total_filters > SEARCH_MAX_FILTERS {
        return Err(format!(
            "Too many filters ({total_filters}). A search can contain a maximum of {SEARCH_MAX_FILTERS} filters in total."
        ));
    }
    let sorts = body
        .get("sorts")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if sorts.len() > 1 {
        return Err("Only one sorting rule can be applied to any search.".into());
    }
    let sort = sorts.first().map(|s| match s {
        Value::String(p) => (p.clone(), true),
        _ => (
            s.get("propertyName")
                .and_then(Value::as_str)
                .unwrap_or("hs_object_id")
                .to_owned(),
            s.get("direction").and_then(Value::as_str) != Some("DESCENDING"),
        ),
    });
    let query = body.get("query").and_then(Value::as_str).map(str::to_owned);
    if query
        .as_deref()
        .is_some_and(|q| q.chars().count() > SEARCH_MAX_QUERY_CHARS)
    {
        return Err(format!(
            "A query can contain a maximum of {SEARCH_MAX_QUERY_CHARS} characters."
        ));
    }
    let limit = match body.get("limit") {
        None | Some(Value::Null) => SEARCH_DEFAULT_LIMIT,
        Some(v) => v
            .as_u64()
            .and_then(|l| usize::try_from(l).ok())
            .ok_or("limit: must be a non-negative integer")?,
    };
    if limit > SEARCH_MAX_LIMIT {
        return Err(format!(
            "limit: The maximum number of supported objects per page is {SEARCH_MAX_LIMIT}."
        ));
    }
    let offset = match body.get("after") {
        None | Some(Value::Null) => 0,
        Some(Value::String(s)) if s.is_empty() => 0,
        Some(Value::String(s)) => s
            .parse::<usize>()
            .map_err(|_| "after: must be formatted as an integer")?,
        Some(v) => v
            .as_u64()
            .and_then(|a| usize::try_from(a).ok())
            .ok_or("after: must be formatted as an integer")?,
    };
    if offset.saturating_add(limit) > SEARCH_MAX_RESULTS {
        return Err(format!(
            "Search is limited to {SEARCH_MAX_RESULTS} total results for any given query. Attempting to page beyond {SEARCH_MAX_RESULTS} (after {offset} + limit {limit}) is not supported."
        ));
    }
    let props = property_names(body);
    Ok((
        Search {
            groups,
            sort,
            query,
            offset,
            limit,
        },
        props,
    ))
}

fn search(data: &mut Data, req: &Request, kind: Kind) -> Result<Response, Response> {
    let body = parse_body(data, req)?;
    let (s, props) = parse_search(&body).map_err(|m| validation(data, &m))?;
    let (total, page) = data.store.search(kind, &s);
    let results: Vec<Value> = page.iter().map(|r| r.render(kind, &props)).collect();
    let end = s.offset + results.len();
    let mut out = json!({ "total": total, "results": results });
    if let (true, Some(o)) = (end < total, out.as_object_mut()) {
        o.insert("paging".into(), json!({"next": {"after": end.to_string()}}));
    }
    Ok(json_response(200, &out))
}

/// Parses a create body's `associations` (`[{to: {id}, types: [{associationCategory,
/// associationTypeId}]}]`), checking that each target exists.
fn create_associations(data: &Data, kind: Kind, body: &Value) -> Result<assoc::Links, String> {
    let Some(list) = body.get("associations").and_then(Value::as_array) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for a in list {
        let to_id = a
            .get("to")
            .and_then(|t| t.get("id"))
            .and_then(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .or_else(|| v.as_u64().map(|n| n.to_string()))
            })
            .ok_or("associations: to.id is required")?;
        let types = parse_types(a.get("types").unwrap_or(&Value::Null))?;
        let Some(to_kind) = types.iter().find_map(|t| {
            (t.category == assoc::HUBSPOT_DEFINED)
                .then(|| assoc::target_of(kind, t.type_id).map(|(k, _)| k))
                .flatten()
        }) else {
            return Err(format!(
                "associations: cannot infer the target object type of {to_id} from its types"
            ));
        };
        let rec = data
            .store
            .find(to_kind, &to_id, None, false)
            .ok_or_else(|| {
                format!(
                    "associations: {} {to_id} does not exist",
                    to_kind.singular()
                )
            })?;
        out.push(((to_kind, rec.id), types));
    }
    Ok(out)
}

fn parse_types(v: &Value) -> Result<Vec<AssocType>, String> {
    let list = v
        .as_array()
        .filter(|a| !a.is_empty())
        .ok_or("association types: a non-empty array is required")?;
    list.iter()
        .map(|t| {
            let category = t
                .get("associationCategory")
                .and_then(Value::as_str)
                .unwrap_or(assoc::HUBSPOT_DEFINED)
                .to_owned();
            let type_id = t
                .get("associationTypeId")
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("association types: associationTypeId is required")?;
            Ok(AssocType { category, type_id })
        })
        .collect()
}

/// v3 `?associations=companies,deals` on read and list: `"associations": {"companies":
/// {"results": [{"id", "type"}]}}`, omitted when there are none.
fn add_associations(data: &Data, kind: Kind, id: u64, v: &mut Value, query: &Query) {
    let mut out = Map::new();
    for name in query
        .0
        .iter()
        .filter(|(k, _)| k == "associations")
        .flat_map(|(_, v)| v.split(','))
    {
        let Some(to) = Kind::parse(name) else {
            continue;
        };
        let mut results = Vec::new();
        for (to_id, types) in data.assoc.list((kind, id), to) {
            if data
                .store
                .find(to, &to_id.to_string(), None, false)
                .is_none()
            {
                continue;
            }
            for t in types {
                results.push(json!({"id": to_id.to_string(), "type": v3_type_name(kind, to, t)}));
            }
        }
        if !results.is_empty() {
            out.insert(to.plural(), json!({ "results": results }));
        }
    }
    if let (false, Some(o)) = (out.is_empty(), v.as_object_mut()) {
        o.insert("associations".into(), Value::Object(out));
    }
}

/// `contact_to_company` (primary or the only HubSpot type), `contact_to_company_unlabeled` (the
/// default where a primary type exists), the numeric id for labels.
fn v3_type_name(from: Kind, to: Kind, t: &AssocType) -> String {
    let base = format!("{}_to_{}", from.singular(), to.singular());
    if t.category != assoc::HUBSPOT_DEFINED {
        return t.type_id.to_string();
    }
    let has_primary = assoc::has_primary(from, to);
    if has_primary && assoc::default_type(from, to) == Some(t.type_id) {
        format!("{base}_unlabeled")
    } else {
        base
    }
}

fn association_types_json(types: &[AssocType]) -> Vec<Value> {
    types
        .iter()
        .map(|t| json!({"category": t.category, "typeId": t.type_id, "label": Value::Null}))
        .collect()
}

/// `/crm/v4/objects/{from}/{fromId}/associations/…` (§4.3).
fn associations_v4(
    data: &mut Data,
    req: &Request,
    from: &str,
    from_id: &str,
    rest: &[&str],
    query: &Query,
    now: u64,
) -> Result<Response, Response> {
    let Some(from_kind) = Kind::parse(from) else {
        return Err(validation(
            data,
            &format!("Unable to infer object type from: {from}"),
        ));
    };
    let to_seg = match rest {
        ["default", t, _] | [t, _] | [t] => *t,
        _ => return Err(error(data, 404, "OBJECT_NOT_FOUND", "resource not found")),
    };
    let Some(to_kind) = Kind::parse(to_seg) else {
        return Err(validation(
            data,
            &format!("Unable to infer object type from: {to_seg}"),
        ));
    };
    let Some(from_rec) = data.store.find(from_kind, from_id, None, false) else {
        return Err(error(data, 404, "OBJECT_NOT_FOUND", "resource not found"));
    };
    let from_end = (from_kind, from_rec.id);
    let to_end = |data: &mut Data, id: &str| match data.store.find(to_kind, id, None, false) {
        Some(r) => Ok((to_kind, r.id)),
        None => Err(error(data, 404, "OBJECT_NOT_FOUND", "resource not found")),
    };
    match (req.method.as_str(), rest) {
        ("PUT", ["default", _, to_id]) => {
            let to = to_end(data, to_id)?;
            let Some(d) = assoc::default_type(from_kind, to_kind) else {
                return Err(validation(
                    data,
                    &format!(
                        "No default association type from {} to {}",
                        from_kind.object_type_id(),
                        to_kind.object_type_id()
                    ),
                ));
            };
            data.assoc.add(from_end, to, &[assoc::hubspot(d)]);
            emit_association(data, from_end, to, false, now);
            let spec = |a: u64, b: u64, t: Option<u32>| {
                json!({"from": {"id": a.to_string()}, "to": {"id": b.to_string()},
                       "associationSpec": {"associationCategory": assoc::HUBSPOT_DEFINED, "associationTypeId": t}})
            };
            let mut results = vec![spec(from_end.1, to.1, Some(d))];
            if let Some(r) = assoc::default_type(to_kind, from_kind) {
                results.push(spec(to.1, from_end.1, Some(r)));
            }
            Ok(json_response(
                200,
                &json!({"status": "COMPLETE", "results": results,
                        "startedAt": format_iso(now), "completedAt": format_iso(data.now_ms())}),
            ))
        }
        ("PUT", [_, to_id]) => {
            let to = to_end(data, to_id)?;
            let body = parse_body(data, req)?;
            let types = parse_types(&body).map_err(|m| validation(data, &m))?;
            data.assoc.add(from_end, to, &types);
            emit_association(data, from_end, to, false, now);
            // 201, the spec's status for this PUT (the official clients, generated from it,
            // take only 201 as success; the default PUT above answers 200).
            Ok(json_response(
                201,
                &json!({"fromObjectTypeId": from_kind.object_type_id(), "fromObjectId": from_end.1,
                        "toObjectTypeId": to_kind.object_type_id(), "toObjectId": to.1, "labels": []}),
            ))
        }
        ("DELETE", [_, to_id]) => {
            if let Ok(id) = to_id.parse::<u64>() {
                if data.assoc.remove(from_end, (to_kind, id)) {
                    emit_association(data, from_end, (to_kind, id), true, now);
                }
            }
            Ok(Response {
                status: 204,
                headers: Vec::new(),
                body: Vec::new(),
            })
        }
        ("GET", [_]) => {
            let limit = query
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(500)
                .clamp(1, 500);
            let after = query
                .get("after")
                .and_then(|a| a.parse::<u64>().ok())
                .unwrap_or(0);
            let live: Vec<(u64, &[AssocType])> = data
                .assoc
                .list(from_end, to_kind)
                .into_iter()
                .filter(|(id, _)| *id >= after)
                .filter(|(id, _)| {
                    data.store
                        .find(to_kind, &id.to_string(), None, false)
                        .is_some()
                })
                .collect();
            let results: Vec<Value> = live
                .iter()
                .take(limit)
                .map(|(id, types)| json!({"toObjectId": id, "associationTypes": association_types_json(types)}))
                .collect();
            let mut body = json!({ "results": results });
            if let Some((next, _)) = live.get(limit) {
                body["paging"] = json!({"next": {"after": next.to_string()}});
            }
            Ok(json_response(200, &body))
        }
        _ => Err(error(data, 404, "OBJECT_NOT_FOUND", "resource not found")),
    }
}

/// Associated records per input in one batch read answer; more continue with the input's
/// `after` (the result's `paging.next.after`). HubSpot's page size here is not documented; 500
/// is the v4 list's largest `limit` (the mock's `GET …/associations/{toType}` uses it too).
pub(super) const ASSOCIATION_PAGE: usize = 500;

/// `POST /crm/v4/associations/{from}/{to}/batch/read` (§4.3): `{"inputs":[{"id","after"?}]}`,
/// at most 1,000 inputs (400 beyond). Each input with associated live records gives a result
/// `{from:{id}, to:[{toObjectId, associationTypes:[{category,typeId,label}]}]}`, by target id,
/// at most [`ASSOCIATION_PAGE`] with `paging.next.after` when more follow; an input without
/// any (or whose record does not exist) gives an error instead, and the answer is then 207.
fn associations_batch_read(
    data: &mut Data,
    req: &Request,
    from: &str,
    to: &str,
    now: u64,
) -> Result<Response, Response> {
    let (Some(from_kind), Some(to_kind)) = (Kind::parse(from), Kind::parse(to)) else {
        return Err(validation(
            data,
            &format!("Unable to infer object type from: {from} or {to}"),
        ));
    };
    let body = parse_body(data, req)?;
    let Some(inputs) = body.get("inputs").and_then(Value::as_array) else {
        return Err(validation(data, "inputs: an array is required"));
    };
    if inputs.len() > 1_000 {
        return Err(validation(
            data,
            "Batch read associations is limited to 1000 inputs per request.",
        ));
    }
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        let id = match &input["id"] {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(validation(data, "inputs[].id is required")),
        };
        let after = input["after"]
            .as_str()
            .and_then(|a| a.parse::<u64>().ok())
            .unwrap_or(0);
        let live = data
            .store
            .find(from_kind, &id, None, false)
            .map(|r| (from_kind, r.id));
        let targets: Vec<(u64, &[AssocType])> = live.map_or_else(Vec::new, |end| {
            data.assoc
                .list(end, to_kind)
                .into_iter()
                .filter(|(to_id, _)| *to_id >= after)
                .filter(|(to_id, _)| {
                    data.store
                        .find(to_kind, &to_id.to_string(), None, false)
                        .is_some()
                })
                .collect()
        });
        if targets.is_empty() {
            errors.push(json!({
                "status": "error",
                "category": "OBJECT_NOT_FOUND",
                "subCategory": "crm.associations.NO_ASSOCIATIONS_FOUND",
                "message": format!("No {} is associated with {} {id}.", to_kind.singular(), from_kind.singular()),
                "context": {"fromObjectId": [id]},
            }));
            continue;
        }
        let to: Vec<Value> = targets
            .iter()
            .take(ASSOCIATION_PAGE)
            .map(|(to_id, types)| json!({"toObjectId": to_id, "associationTypes": association_types_json(types)}))
            .collect();
        let mut result = json!({"from": {"id": id}, "to": to});
        if let Some((next, _)) = targets.get(ASSOCIATION_PAGE) {
            result["paging"] = json!({"next": {"after": next.to_string()}});
        }
        results.push(result);
    }
    let status = if errors.is_empty() { 200 } else { 207 };
    let mut out = json!({
        "status": "COMPLETE",
        "results": results,
        "startedAt": format_iso(now),
        "completedAt": format_iso(data.now_ms()),
    });
    if !errors.is_empty() {
        out["numErrors"] = json!(errors.len());
        out["errors"] = Value::Array(errors);
    }
    Ok(json_response(status, &out))
}

/// An injected fault's answer (§4.5 status codes; §5.3 body for 429).
pub(super) fn injected(
    shared: &Shared,
    status: u16,
    policy: Option<&str>,
    retry_after: Option<u64>,
) -> Response {
    let mut data = lock(&shared.data);
    let data = &mut *data;
    data.stats.injected += 1;
    let mut resp = if status == 429 {
        let policy = match policy {
            Some("DAILY") => Policy::Daily,
            Some("SECONDLY") => Policy::Secondly,
            _ => Policy::TenSecondlyRolling,
        };
        rate_limited(data, policy)
    } else {
        let (category, message) = match status {
            423 => (
                "LOCKED",
                "This record is locked by another request. Locks will last for 2 seconds.",
            ),
            477 => ("MIGRATION_IN_PROGRESS", "Migration in progress."),
            500 => (
                "INTERNAL_ERROR",
                "Internal error (injected by hubspot-mock).",
            ),
            _ => ("ERROR", "Injected by hubspot-mock."),
        };
        error(data, status, category, message)
    };
    let retry_after = retry_after.or((status == 477).then_some(60));
    if let Some(secs) = retry_after {
        resp.headers.push(("Retry-After", secs.to_string()));
    }
    resp
}

/// The live record's properties before a write, if it exists.
fn snapshot(
    data: &Data,
    kind: Kind,
    key: &str,
    id_property: Option<&str>,
) -> Option<(u64, super::store::Props)> {
    if !data.webhooks_on {
        return None;
    }
    data.store
        .find(kind, key, id_property, false)
        .map(|r| (r.id, r.props.clone()))
}

/// `POST /__mock/restore` `{"objectType","id"}`: restores an archived record as HubSpot's
/// recycling bin does (no objects-API endpoint exists, docs/hubspot.md §4.1) and emits `*.restore`
/// (§2.2). 200 with the record, 404 when no archived record has that id, 409 when a live
/// contact has its e-mail since, 400 on a bad body.
pub(super) fn restore(data: &mut Data, body: &[u8]) -> Response {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let kind = v["objectType"].as_str().and_then(Kind::parse);
    let id = match &v["id"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (Some(kind), Some(id)) = (kind, id) else {
        return validation(data, "expected {\"objectType\":\"contacts\",\"id\":\"…\"}");
    };
    match data.store.restore(kind, &id) {
        Ok(num) => {
            let now = data.now_ms();
            emit(data, kind, "restore", num, now, None);
            let rendered = data
                .store
                .find(kind, &id, None, false)
                .map_or(Value::Null, |r| r.render(kind, &[]));
            json_response(200, &rendered)
        }
        Err(WriteError::NotFound(_)) => error(data, 404, "OBJECT_NOT_FOUND", "resource not found"),
        Err(e) => write_error(data, kind, e),
    }
}

/// `POST /__mock/erase` `{"objectType","id"}`: the record (live or archived) and its
/// associations are gone, with no archived trace and no webhook: a deletion HubSpot's
/// notification never brought (a GDPR deletion, §2.2, whose `privacyDeletion` and `deletion`
/// events were lost). 200 `{"erased":true}`, 404 when there is no such record, 400 on a bad body.
pub(super) fn erase(data: &mut Data, body: &[u8]) -> Response {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let kind = v["objectType"].as_str().and_then(Kind::parse);
    let id = match &v["id"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let (Some(kind), Some(id)) = (kind, id) else {
        return validation(data, "expected {\"objectType\":\"contacts\",\"id\":\"…\"}");
    };
    if !data.store.erase(kind, &id) {
        return error(data, 404, "OBJECT_NOT_FOUND", "resource not found");
    }
    if let Ok(num) = id.parse::<u64>() {
        data.assoc.remove_all((kind, num));
    }
    json_response(200, &json!({"erased": true}))
}

fn emit(
    data: &mut Data,
    kind: Kind,
    what: &str,
    object_id: u64,
    now: u64,
    property: Option<(&str, &str)>,
) {
    if !data.webhooks_on {
        return;
    }
    data.next_event_id += 1;
    let e = webhooks::event(data.next_event_id, kind, what, object_id, now, property);
    data.outbox.push(e);
}

/// One `*.propertyChange` per written property whose value changed (§2.2); the maintained
/// modification dates are not subscribable (§2.3).
fn emit_changes(
    data: &mut Data,
    kind: Kind,
    before: Option<(u64, super::store::Props)>,
    after: &super::store::Props,
    names: &[String],
    now: u64,
) {
    let Some((id, before)) = before else { return };
    for name in names {
        if matches!(
            name.as_str(),
            "hs_lastmodifieddate" | "lastmodifieddate" | "hs_object_id" | "createdate"
        ) {
            continue;
        }
        let new = after.get(name).map_or("", String::as_str);
        if before.get(name).map_or("", String::as_str) != new {
            emit(data, kind, "propertyChange", id, now, Some((name, new)));
        }
    }
}

/// `*.associationChange` for both sides of an association added or removed (docs/hubspot.md §2.2:
/// "These events fire for both sides of the association"), with `associationType` as
/// `FROM_TO_TO`. Custom objects (generic `object.associationChange`) emit nothing.
fn emit_association(data: &mut Data, a: (Kind, u64), b: (Kind, u64), removed: bool, now: u64) {
    if !data.webhooks_on {
        return;
    }
    let (Some(a_name), Some(b_name)) = (association_name(a.0), association_name(b.0)) else {
        return;
    };
    for ((from, from_id), (to_name, to_id), from_name) in
        [(a, (b_name, b.1), a_name), (b, (a_name, a.1), b_name)]
    {
        data.next_event_id += 1;
        let mut e = webhooks::event(
            data.next_event_id,
            from,
            "associationChange",
            from_id,
            now,
            None,
        );
        if let Some(o) = e.as_object_mut() {
            o.insert(
                "associationType".into(),
                json!(format!("{from_name}_TO_{to_name}")),
            );
            o.insert("fromObjectId".into(), json!(from_id));
            o.insert("toObjectId".into(), json!(to_id));
            o.insert("associationRemoved".into(), json!(removed));
            o.insert("isPrimaryAssociation".into(), json!(false));
        }
        data.outbox.push(e);
    }
}

/// The object's name in `associationType` values (docs/hubspot.md §2.2).
fn association_name(kind: Kind) -> Option<&'static str> {
    match kind {
        Kind::Contact => Some("CONTACT"),
        Kind::Company => Some("COMPANY"),
        Kind::Deal => Some("DEAL"),
        Kind::Ticket => Some("TICKET"),
        Kind::Custom(_) => None,
    }
}

fn emit_deletion(data: &mut Data, kind: Kind, id: &str, now: u64) {
    if let Ok(id) = id.parse::<u64>() {
        emit(data, kind, "deletion", id, now, None);
    }
}
