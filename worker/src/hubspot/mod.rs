//! HubSpot API calls from the Worker: the executor (governor, fetch, retries) and the admin
//! routes under `/admin/hubspot/` that exercise it.
//!
//! - `GET  /admin/hubspot/objects/{type}/{id}?properties=a,b`: read one record.
//! - `POST /admin/hubspot/objects/{type}`: create one (`{"properties":{…}}`).
//! - `PATCH /admin/hubspot/objects/{type}/{id}`: update one (`{"properties":{…}}`); with an
//!   `ENRICHMENT_MAP` for the type, the write's echo guard is stored first ([`update`]).
//! - `POST /admin/hubspot/objects/{type}/batch-read`: `{"ids":[…],"properties":[…]}`.
//! - `POST /admin/hubspot/objects/{type}/search`: a subset of HubSpot's search body.
//! - `POST /admin/hubspot/objects/{type}/search-all`: every record's id, walked with core's
//!   [`SearchPlan::by_object_id`] past the 10,000-result cap.
//! - `GET  /admin/hubspot/diagnostics/overhead?type=contacts&id=1&n=10`: the executor's added
//!   cost per call versus a bare `fetch`, measured in place ([`diagnostics`]).

mod diagnostics;
mod executor;
mod gate;
mod oauth;
mod transport;

use std::collections::BTreeMap;

use hubspot_edge_core::api::{
    BatchReadOptions, BatchResponse, CreateInput, ErrorDetail, FilterOp, Page, ReadOptions,
    RequestKind, SearchFilter, SearchRequest, SimpleObject, Sort, SortDirection,
};
use serde::Deserialize;
use serde_json::{json, Value};
use worker::{Env, Method, Request, Response, Result};

use crate::config::HubSpotApi;
use crate::ingress::config_error_for_operator as config_error;
use crate::respond;

pub(crate) use executor::execute;
pub(crate) use transport::{send, CallError};

/// Routes `/admin/hubspot/…`; `segments` start after `hubspot`. The admin token is checked.
pub(crate) async fn handle(
    req: &mut Request,
    env: &Env,
    segments: &[&str],
    request_id: &str,
) -> Result<Response> {
    let config = match HubSpotApi::from_env(env) {
        Ok(c) => c,
        Err(e) => return config_error(&e, request_id),
    };
    match (req.method(), segments) {
        (Method::Get, ["objects", object_type, id]) => {
            let mut options = ReadOptions::default();
            for (k, v) in req.url()?.query_pairs() {
                if k == "properties" {
                    options.properties.extend(list(&v));
                }
            }
            let built = config.api.read_object(object_type, id, &options);
            let result = run::<SimpleObject>(&config, env, RequestKind::Read, built).await;
            answer(result, 200, |o| object_json(&o))
        }
        (Method::Post, ["objects", object_type]) => {
            let Some(body) = body::<CreateBody>(req).await else {
                return bad_body(r#"expected {"properties":{"name":"value"}}"#);
            };
            let input = CreateInput {
                properties: body.properties,
                ..CreateInput::default()
            };
            let built = config.api.create_object(object_type, &input);
            let result = run::<SimpleObject>(&config, env, RequestKind::Create, built).await;
            answer(result, 201, |o| object_json(&o))
        }
        (Method::Post, ["objects", object_type, "batch-read"]) => {
            let Some(body) = body::<BatchReadBody>(req).await else {
                return bad_body(r#"expected {"ids":["1"],"properties":["email"]}"#);
            };
            if body.ids.is_empty() || body.ids.len() > hubspot_edge_core::api::MAX_BATCH_INPUTS {
                return bad_body("ids must hold 1 to 100 record ids");
            }
            let options = BatchReadOptions {
                properties: body.properties,
                ..BatchReadOptions::default()
            };
            let built = config
                .api
                .batch_read(object_type, &body.ids, &options)
                .remove(0);
            let result = run::<BatchResponse>(&config, env, RequestKind::Read, built).await;
            answer(result, 200, |b| {
                json!({
                    "status": b.status,
                    "results": b.results.iter().map(object_json).collect::<Vec<_>>(),
                    "errors": b.errors.iter().map(ErrorDetail::to_json).collect::<Vec<_>>(),
                })
            })
        }
        (Method::Post, ["objects", object_type, "search"]) => {
            let Some(body) = body::<SearchBody>(req).await else {
                return bad_body("expected a HubSpot search body (filterGroups, sorts, …)");
            };
            let search = match body.into_request() {
                Ok(s) => s,
                Err(msg) => return bad_body(&msg),
            };
            let built = config.api.search(object_type, &search);
            let result = run::<Page>(&config, env, RequestKind::Search, built).await;
            answer(result, 200, |p| {
                json!({
                    "total": p.total,
                    "results": p.results.iter().map(object_json).collect::<Vec<_>>(),
                    "paging": p.next_after.map(|a| json!({ "next": { "after": a } })),
                })
            })
        }
        (Method::Post, ["objects", object_type, "search-all"]) => {
            search_all(&config, env, object_type).await
        }
        (Method::Get, ["diagnostics", "overhead"]) => {
            diagnostics::overhead(req, &config, env).await
        }
        (Method::Patch, ["objects", object_type, id]) => {
            update(req, &config, env, object_type, id, request_id).await
        }
        (_, ["objects", ..]) => respond::error(405, "method_not_allowed", "method not allowed"),
        _ => respond::error(404, "not_found", "no such admin endpoint"),
    }
}

/// Updates one record. Before the write, when `ENRICHMENT_MAP` maps the type, an echo guard of
/// the written mapped properties goes to KV, so that the consumer does not forward HubSpot's
/// notifications of this write back to the destination (the notification can arrive before
/// this call returns, hence before, not after); it is dropped again if the write fails.
async fn update(
    req: &mut Request,
    config: &HubSpotApi,
    env: &Env,
    object_type: &str,
    id: &str,
    request_id: &str,
) -> Result<Response> {
    let Some(body) = body::<CreateBody>(req).await else {
        return bad_body(r#"expected {"properties":{"name":"value"}}"#);
    };
    let guard = match crate::echo::guard_write(env, object_type, id, &body.properties).await {
        Ok(g) => g,
        Err(e) => return config_error(&e, request_id),
    };
    let built = config
        .api
        .update_object(object_type, id, None, &body.properties);
    let result = run::<SimpleObject>(config, env, RequestKind::Write, built).await;
    if let (Err(_), Some(key)) = (&result, &guard) {
        crate::echo::drop_guard(env, key).await;
    }
    answer(result, 200, |o| object_json(&o))
}

/// Up to this many ids are returned as a list; beyond, only a count and checksums.
const SEARCH_ALL_MAX_IDS: u64 = 50_000;

/// Walks every record of `object_type` by id: `{"count","pages","ids"}` (or, past
/// [`SEARCH_ALL_MAX_IDS`], `{"count","pages","idSum","idXor"}`).
async fn search_all(config: &HubSpotApi, env: &Env, object_type: &str) -> Result<Response> {
    use hubspot_edge_core::api::MAX_SEARCH_LIMIT;
    use hubspot_edge_core::search::SearchPlan;

    let mut plan = match SearchPlan::by_object_id(Vec::new(), MAX_SEARCH_LIMIT) {
        Ok(p) => p,
        Err(e) => return bad_body(&e.to_string()),
    };
    let mut ids: Vec<u64> = Vec::new();
    let (mut count, mut sum, mut xor) = (0u64, 0u64, 0u64);
    while let Some(search) = plan.next_request() {
        let built = config.api.search(object_type, &search);
        let page = match run::<Page>(config, env, RequestKind::Search, built).await {
            Ok(p) => p,
            Err(e) => return error_response(&e),
        };
        let yielded = match plan.on_page(&page) {
            Ok(y) => y,
            Err(e) => return respond::error(502, "decode", &e.to_string()),
        };
        for id in yielded {
            count += 1;
            sum = sum.wrapping_add(id);
            xor ^= id;
            if count <= SEARCH_ALL_MAX_IDS {
                ids.push(id);
            }
        }
    }
    let mut body = json!({ "count": count, "pages": plan.pages() });
    if count <= SEARCH_ALL_MAX_IDS {
        body["ids"] = json!(ids);
    } else {
        body["idSum"] = json!(sum);
        body["idXor"] = json!(xor);
    }
    respond::json(200, &body)
}

async fn run<T: serde::de::DeserializeOwned>(
    config: &HubSpotApi,
    env: &Env,
    kind: RequestKind,
    request: http::Request<Vec<u8>>,
) -> std::result::Result<T, CallError> {
    execute(config, env, kind, &request).await
}

fn answer<T>(
    result: std::result::Result<T, CallError>,
    status: u16,
    to_json: impl FnOnce(T) -> Value,
) -> Result<Response> {
    match result {
        Ok(v) => respond::json(status, &to_json(v)),
        Err(e) => error_response(&e),
    }
}

/// The one place where a failed HubSpot call becomes an HTTP answer (core's
/// [`CallError::answer`]).
fn error_response(error: &CallError) -> Result<Response> {
    let answer = error.answer(gate::BINDING);
    let mut r = respond::json(answer.status, &answer.body)?;
    if let Some(secs) = answer.retry_after_secs {
        r.headers_mut().set("retry-after", &secs.to_string())?;
    }
    Ok(r)
}

fn object_json(o: &SimpleObject) -> Value {
    json!({
        "id": o.id,
        "properties": o.properties,
        "createdAt": o.created_at,
        "updatedAt": o.updated_at,
        "archived": o.archived,
    })
}

fn list(v: &str) -> impl Iterator<Item = String> + '_ {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

async fn body<T: serde::de::DeserializeOwned>(req: &mut Request) -> Option<T> {
    let bytes = req.bytes().await.ok()?;
    serde_json::from_slice(&bytes).ok()
}

fn bad_body(message: &str) -> Result<Response> {
    respond::error(400, "invalid_body", message)
}

#[derive(Deserialize)]
struct CreateBody {
    properties: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct BatchReadBody {
    ids: Vec<String>,
    #[serde(default)]
    properties: Vec<String>,
}

/// HubSpot's search body, the parts the core's [`SearchRequest`] models.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchBody {
    #[serde(default)]
    filter_groups: Vec<FilterGroupBody>,
    #[serde(default)]
    sorts: Vec<SortBody>,
    #[serde(default)]
    properties: Vec<String>,
    query: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

#[derive(Deserialize)]
struct FilterGroupBody {
    #[serde(default)]
    filters: Vec<FilterBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterBody {
    property_name: String,
    operator: String,
    value: Option<Value>,
    high_value: Option<Value>,
    #[serde(default)]
    values: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SortBody {
    property_name: String,
    #[serde(default)]
    direction: Option<String>,
}

/// A JSON string or number as HubSpot's string form.
fn scalar(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl SearchBody {
    fn into_request(self) -> std::result::Result<SearchRequest, String> {
        let mut groups = Vec::with_capacity(self.filter_groups.len());
        for g in self.filter_groups {
            let mut filters = Vec::with_capacity(g.filters.len());
            for f in g.filters {
                let value = || {
                    scalar(f.value.as_ref())
                        .ok_or_else(|| format!("filter on {} needs a value", f.property_name))
                };
                let values = || f.values.iter().filter_map(|v| scalar(Some(v))).collect();
                let op = match f.operator.as_str() {
                    "EQ" => FilterOp::Eq(value()?),
                    "NEQ" => FilterOp::Neq(value()?),
                    "LT" => FilterOp::Lt(value()?),
                    "LTE" => FilterOp::Lte(value()?),
                    "GT" => FilterOp::Gt(value()?),
                    "GTE" => FilterOp::Gte(value()?),
                    "BETWEEN" => FilterOp::Between {
                        low: value()?,
                        high: scalar(f.high_value.as_ref())
                            .ok_or_else(|| "BETWEEN needs a highValue".to_owned())?,
                    },
                    "IN" => FilterOp::In(values()),
                    "NOT_IN" => FilterOp::NotIn(values()),
                    "HAS_PROPERTY" => FilterOp::HasProperty,
                    "NOT_HAS_PROPERTY" => FilterOp::NotHasProperty,
                    other => return Err(format!("unsupported operator {other}")),
                };
                filters.push(SearchFilter {
                    property: f.property_name,
                    op,
                });
            }
            groups.push(filters);
        }
        let sort = self.sorts.into_iter().next().map(|s| Sort {
            property: s.property_name,
            direction: if s.direction.as_deref() == Some("DESCENDING") {
                SortDirection::Descending
            } else {
                SortDirection::Ascending
            },
        });
        Ok(SearchRequest {
            filter_groups: groups,
            sort,
            properties: self.properties,
            query: self.query,
            limit: self.limit,
            after: self.after,
        })
    }
}
