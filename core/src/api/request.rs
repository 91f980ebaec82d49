//! Request builders: every HubSpot call this project makes, as an `http::Request<Vec<u8>>`.
//!
//! Bodies are JSON (`content-type: application/json`), except the OAuth token endpoint, which
//! takes a form (`application/x-www-form-urlencoded`, docs/hubspot.md §6). No request carries
//! `Authorization`: the executor adds it. Path segments and query values are percent-encoded.

use std::collections::BTreeMap;
use std::fmt;

use http::Method;
use serde_json::{json, Value};

use super::config::{encode, ApiConfig, Query};

/// HubSpot rejects CRM object batches of more than 100 inputs (docs/hubspot.md §4.1).
pub const MAX_BATCH_INPUTS: usize = 100;
/// Objects per batch read that asks for `propertiesWithHistory`.
///
/// HubSpot's CRM objects spec says `propertiesWithHistory` "will reduce the maximum number of
/// objects that can be read by a single request" without saying to what
/// (<https://github.com/HubSpot/HubSpot-public-api-spec-collection/blob/main/PublicApiSpecs/CRM/Objects/Rollouts/424/v3/objects.json>,
/// docs/hubspot.md §4.1, §8 item 10). 50 is the figure integrators report (a list page with history
/// returns at most 50): an assumption, not a documented limit. A history read HubSpot refuses
/// anyway (400) is read again without history by the enrichment consumer.
pub const MAX_HISTORY_BATCH_INPUTS: usize = 50;
/// Associations v4 batch read: at most 1,000 inputs per request (docs/hubspot.md §4.3).
pub const MAX_ASSOCIATION_READ_INPUTS: usize = 1_000;
/// Associations v4 batch create: at most 2,000 inputs per request (docs/hubspot.md §4.3).
pub const MAX_ASSOCIATION_CREATE_INPUTS: usize = 2_000;
/// Largest search page (docs/hubspot.md §4.4: "The maximum number of supported objects per page is
/// 200"). Larger limits are clamped to it.
pub const MAX_SEARCH_LIMIT: u32 = 200;
/// Largest list page (docs/hubspot.md §4.1: "max 100 per docs"). Larger limits are clamped to it.
pub const MAX_LIST_LIMIT: u32 = 100;

const JSON: &str = "application/json";
const FORM: &str = "application/x-www-form-urlencoded";

/// Options of a single-object read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Properties to return (`properties=a,b`); HubSpot's defaults when empty.
    pub properties: Vec<String>,
    /// Read archived objects instead of live ones (`archived=`; always sent).
    pub archived: bool,
    /// The unique property `id` refers to (`idProperty=email`); the record ID when `None`.
    pub id_property: Option<String>,
}

/// Options of a list page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListOptions {
    /// Page size; clamped to [`MAX_LIST_LIMIT`]. HubSpot's default (10) when `None`.
    pub limit: Option<u32>,
    /// Cursor from the previous page's `paging.next.after`.
    pub after: Option<String>,
    /// Properties to return; HubSpot's defaults when empty.
    pub properties: Vec<String>,
    /// List archived objects instead of live ones.
    pub archived: bool,
}

/// Options of a batch read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReadOptions {
    /// Properties to return.
    pub properties: Vec<String>,
    /// Properties to return with their past values (`propertiesWithHistory`); when not empty,
    /// requests hold at most [`MAX_HISTORY_BATCH_INPUTS`] ids.
    pub properties_with_history: Vec<String>,
    /// The unique property the ids refer to; the record ID when `None`.
    pub id_property: Option<String>,
    /// Read archived objects (`?archived=true`).
    pub archived: bool,
}

/// Who defined an association type (docs/hubspot.md §4.1, §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssociationCategory {
    /// `HUBSPOT_DEFINED`: the built-in types (e.g. 279 contact → company).
    HubSpotDefined,
    /// `USER_DEFINED`: labels created in the account.
    UserDefined,
    /// `INTEGRATOR_DEFINED`: labels created by an app.
    IntegratorDefined,
}

impl AssociationCategory {
    fn as_str(self) -> &'static str {
        match self {
            Self::HubSpotDefined => "HUBSPOT_DEFINED",
            Self::UserDefined => "USER_DEFINED",
            Self::IntegratorDefined => "INTEGRATOR_DEFINED",
        }
    }
}

/// An association created together with an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationSpec {
    /// The record to associate with.
    pub to_id: String,
    /// Category of the association type.
    pub category: AssociationCategory,
    /// Association type ID (docs/hubspot.md §4.3 table).
    pub type_id: u32,
}

/// One object to create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateInput {
    /// Property values (all strings, docs/hubspot.md §7).
    pub properties: BTreeMap<String, String>,
    /// Associations to create with it.
    pub associations: Vec<AssociationSpec>,
    /// Unique per input in a batch: HubSpot then answers 207 with per-input errors carrying
    /// it in `context.objectWriteTraceId` (docs/hubspot.md §4.1).
    pub object_write_trace_id: Option<String>,
}

/// One object to update (batch update) or upsert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateInput {
    /// Record ID, or the value of the batch's `idProperty`.
    pub id: String,
    /// Property values to set; `""` clears a value.
    pub properties: BTreeMap<String, String>,
    /// Optional trace ID echoed in per-input errors.
    pub object_write_trace_id: Option<String>,
}

/// One pair for a default (unlabelled) association.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociationPair {
    /// ID of the `from` record.
    pub from_id: String,
    /// ID of the `to` record.
    pub to_id: String,
}

/// A CRM search (docs/hubspot.md §4.4).
///
/// Not validated here: HubSpot's limits of 5 filter groups, 6 filters per group and 18 in total,
/// and 3,000 query characters are reported by HubSpot as a 400 `VALIDATION_ERROR`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchRequest {
    /// Groups are ORed; the filters inside a group are ANDed.
    pub filter_groups: Vec<Vec<SearchFilter>>,
    /// The one sort rule HubSpot allows.
    pub sort: Option<Sort>,
    /// Properties to return.
    pub properties: Vec<String>,
    /// Full-text query.
    pub query: Option<String>,
    /// Page size; clamped to [`MAX_SEARCH_LIMIT`] (clamped rather than refused: a smaller page
    /// is still a correct page, and paging continues with `after`).
    pub limit: Option<u32>,
    /// Cursor from the previous page (an integer as a string).
    pub after: Option<String>,
}

/// One search filter. Serialisable so that a search walk's state can be stored and resumed
/// ([`crate::search::SearchPlan`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SearchFilter {
    /// Property name (or `associations.contact`).
    pub property: String,
    /// Operator and operands.
    pub op: FilterOp,
}

/// A search operator with its operands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FilterOp {
    /// `EQ value`.
    Eq(String),
    /// `NEQ value`.
    Neq(String),
    /// `LT value`.
    Lt(String),
    /// `LTE value`.
    Lte(String),
    /// `GT value`.
    Gt(String),
    /// `GTE value`.
    Gte(String),
    /// `BETWEEN value AND highValue` (inclusive).
    Between {
        /// `value`.
        low: String,
        /// `highValue`.
        high: String,
    },
    /// `IN values` (string values must be lowercase, docs/hubspot.md §4.4).
    In(Vec<String>),
    /// `NOT_IN values`.
    NotIn(Vec<String>),
    /// `HAS_PROPERTY`.
    HasProperty,
    /// `NOT_HAS_PROPERTY`.
    NotHasProperty,
}

impl SearchFilter {
    fn to_json(&self) -> Value {
        let (op, value, high, values) = match &self.op {
            FilterOp::Eq(v) => ("EQ", Some(v), None, None),
            FilterOp::Neq(v) => ("NEQ", Some(v), None, None),
            FilterOp::Lt(v) => ("LT", Some(v), None, None),
            FilterOp::Lte(v) => ("LTE", Some(v), None, None),
            FilterOp::Gt(v) => ("GT", Some(v), None, None),
            FilterOp::Gte(v) => ("GTE", Some(v), None, None),
            FilterOp::Between { low, high } => ("BETWEEN", Some(low), Some(high), None),
            FilterOp::In(vs) => ("IN", None, None, Some(vs)),
            FilterOp::NotIn(vs) => ("NOT_IN", None, None, Some(vs)),
            FilterOp::HasProperty => ("HAS_PROPERTY", None, None, None),
            FilterOp::NotHasProperty => ("NOT_HAS_PROPERTY", None, None, None),
        };
        let mut f = json!({ "propertyName": self.property, "operator": op });
        if let Some(v) = value {
            f["value"] = json!(v);
        }
        if let Some(h) = high {
            f["highValue"] = json!(h);
        }
        if let Some(vs) = values {
            f["values"] = json!(vs);
        }
        f
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDirection {
    /// `ASCENDING`.
    Ascending,
    /// `DESCENDING`.
    Descending,
}

/// The sort rule of a search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    /// Property to sort by.
    pub property: String,
    /// Direction.
    pub direction: SortDirection,
}

/// An OAuth app's credentials. `Debug` redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct OAuthClient {
    /// The app's client ID.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: String,
}

impl fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthClient")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .finish()
    }
}

fn json_body(value: &Value) -> Option<(&'static str, Vec<u8>)> {
    // Serialising a `serde_json::Value` cannot fail: its map keys are strings.
    let bytes = serde_json::to_vec(value).expect("a serde_json::Value always serialises");
    Some((JSON, bytes))
}

fn properties_json(properties: &BTreeMap<String, String>) -> Value {
    json!(properties)
}

fn create_json(input: &CreateInput) -> Value {
    let mut v = json!({ "properties": properties_json(&input.properties) });
    if !input.associations.is_empty() {
        let assoc: Vec<Value> = input
            .associations
            .iter()
            .map(|a| {
                json!({
                    "to": { "id": a.to_id },
                    "types": [{
                        "associationCategory": a.category.as_str(),
                        "associationTypeId": a.type_id,
                    }],
                })
            })
            .collect();
        v["associations"] = Value::Array(assoc);
    }
    if let Some(t) = &input.object_write_trace_id {
        v["objectWriteTraceId"] = json!(t);
    }
    v
}

fn update_json(input: &UpdateInput, id_property: Option<&str>) -> Value {
    let mut v = json!({ "id": input.id, "properties": properties_json(&input.properties) });
    if let Some(p) = id_property {
        v["idProperty"] = json!(p);
    }
    if let Some(t) = &input.object_write_trace_id {
        v["objectWriteTraceId"] = json!(t);
    }
    v
}

impl ApiConfig {
    /// `GET …/{type}/{id}?properties=…&archived=…[&idProperty=…]`: one object.
    pub fn read_object(
        &self,
        object_type: &str,
        id: &str,
        options: &ReadOptions,
    ) -> http::Request<Vec<u8>> {
        let path = format!("{}/{}", self.objects_path(object_type), encode(id));
        let mut q = Query::default();
        q.push_list("properties", &options.properties);
        q.push("archived", if options.archived { "true" } else { "false" });
        if let Some(p) = &options.id_property {
            q.push("idProperty", p);
        }
        self.build(Method::GET, &path, &q, None)
    }

    /// `GET …/{type}?limit=…&after=…&properties=…&archived=…`: one page of objects.
    pub fn list_objects(&self, object_type: &str, options: &ListOptions) -> http::Request<Vec<u8>> {
        let mut q = Query::default();
        if let Some(limit) = options.limit {
            q.push("limit", &limit.min(MAX_LIST_LIMIT).to_string());
        }
        if let Some(after) = &options.after {
            q.push("after", after);
        }
        q.push_list("properties", &options.properties);
        q.push("archived", if options.archived { "true" } else { "false" });
        self.build(Method::GET, &self.objects_path(object_type), &q, None)
    }

    /// `POST …/{type}`: create one object.
    pub fn create_object(&self, object_type: &str, input: &CreateInput) -> http::Request<Vec<u8>> {
        let mut body = create_json(input);
        if let Some(map) = body.as_object_mut() {
            // Not meaningful outside a batch.
            map.remove("objectWriteTraceId");
        }
        self.build(
            Method::POST,
            &self.objects_path(object_type),
            &Query::default(),
            json_body(&body),
        )
    }

    /// `PATCH …/{type}/{id}[?idProperty=…]` with `{"properties":{…}}`.
    pub fn update_object(
        &self,
        object_type: &str,
        id: &str,
        id_property: Option<&str>,
        properties: &BTreeMap<String, String>,
    ) -> http::Request<Vec<u8>> {
        let path = format!("{}/{}", self.objects_path(object_type), encode(id));
        let mut q = Query::default();
        if let Some(p) = id_property {
            q.push("idProperty", p);
        }
        let body = json!({ "properties": properties_json(properties) });
        self.build(Method::PATCH, &path, &q, json_body(&body))
    }

    /// `DELETE …/{type}/{id}`: move one object to the recycling bin.
    pub fn archive_object(&self, object_type: &str, id: &str) -> http::Request<Vec<u8>> {
        let path = format!("{}/{}", self.objects_path(object_type), encode(id));
        self.build(Method::DELETE, &path, &Query::default(), None)
    }

    /// `POST …/{type}/batch/read`, one request per [`MAX_BATCH_INPUTS`] ids, or per
    /// [`MAX_HISTORY_BATCH_INPUTS`] ids when history is asked for (none for no ids).
    pub fn batch_read(
        &self,
        object_type: &str,
        ids: &[String],
        options: &BatchReadOptions,
    ) -> Vec<http::Request<Vec<u8>>> {
        let path = format!("{}/batch/read", self.objects_path(object_type));
        let mut q = Query::default();
        if options.archived {
            q.push("archived", "true");
        }
        let size = if options.properties_with_history.is_empty() {
            MAX_BATCH_INPUTS
        } else {
            MAX_HISTORY_BATCH_INPUTS
        };
        ids.chunks(size)
            .map(|chunk| {
                let inputs: Vec<Value> = chunk.iter().map(|id| json!({ "id": id })).collect();
                let mut body = json!({ "inputs": inputs, "properties": options.properties });
                if !options.properties_with_history.is_empty() {
                    body["propertiesWithHistory"] = json!(options.properties_with_history);
                }
                if let Some(p) = &options.id_property {
                    body["idProperty"] = json!(p);
                }
                self.build(Method::POST, &path, &q, json_body(&body))
            })
            .collect()
    }

    /// `POST …/{type}/batch/create`, chunked by [`MAX_BATCH_INPUTS`]. Give every input a unique
    /// `object_write_trace_id` to get per-input errors back (see
    /// [`BatchResponse::errors_by_input`](super::BatchResponse::errors_by_input)).
    pub fn batch_create(
        &self,
        object_type: &str,
        inputs: &[CreateInput],
    ) -> Vec<http::Request<Vec<u8>>> {
        let path = format!("{}/batch/create", self.objects_path(object_type));
        inputs
            .chunks(MAX_BATCH_INPUTS)
            .map(|chunk| {
                let inputs: Vec<Value> = chunk.iter().map(create_json).collect();
                let body = json!({ "inputs": inputs });
                self.build(Method::POST, &path, &Query::default(), json_body(&body))
            })
            .collect()
    }

    /// `POST …/{type}/batch/update`, chunked by [`MAX_BATCH_INPUTS`]; `id_property` is set on
    /// every input when given. Merged IDs are not accepted here (docs/hubspot.md §4.1).
    pub fn batch_update(
        &self,
        object_type: &str,
        id_property: Option<&str>,
        inputs: &[UpdateInput],
    ) -> Vec<http::Request<Vec<u8>>> {
        self.batch_updates(object_type, "update", id_property, inputs)
    }

    /// `POST …/{type}/batch/upsert` with `idProperty` on every input, chunked by
    /// [`MAX_BATCH_INPUTS`]. Partial upserts do not work with `email` (docs/hubspot.md §4.1).
    pub fn batch_upsert(
        &self,
        object_type: &str,
        id_property: &str,
        inputs: &[UpdateInput],
    ) -> Vec<http::Request<Vec<u8>>> {
        self.batch_updates(object_type, "upsert", Some(id_property), inputs)
    }

    fn batch_updates(
        &self,
        object_type: &str,
        verb: &str,
        id_property: Option<&str>,
        inputs: &[UpdateInput],
    ) -> Vec<http::Request<Vec<u8>>> {
        let path = format!("{}/batch/{verb}", self.objects_path(object_type));
        inputs
            .chunks(MAX_BATCH_INPUTS)
            .map(|chunk| {
                let inputs: Vec<Value> =
                    chunk.iter().map(|i| update_json(i, id_property)).collect();
                let body = json!({ "inputs": inputs });
                self.build(Method::POST, &path, &Query::default(), json_body(&body))
            })
            .collect()
    }

    /// `POST …/{type}/batch/archive`, chunked by [`MAX_BATCH_INPUTS`].
    pub fn batch_archive(&self, object_type: &str, ids: &[String]) -> Vec<http::Request<Vec<u8>>> {
        let path = format!("{}/batch/archive", self.objects_path(object_type));
        ids.chunks(MAX_BATCH_INPUTS)
            .map(|chunk| {
                let inputs: Vec<Value> = chunk.iter().map(|id| json!({ "id": id })).collect();
                let body = json!({ "inputs": inputs });
                self.build(Method::POST, &path, &Query::default(), json_body(&body))
            })
            .collect()
    }

    /// `POST …/{type}/search`. Search is rate limited separately (about 5 per second) and its
    /// responses carry no rate-limit headers (docs/hubspot.md §4.4).
    pub fn search(&self, object_type: &str, search: &SearchRequest) -> http::Request<Vec<u8>> {
        let groups: Vec<Value> = search
            .filter_groups
            .iter()
            .map(|g| json!({ "filters": g.iter().map(SearchFilter::to_json).collect::<Vec<_>>() }))
            .collect();
        let mut body = json!({ "filterGroups": groups });
        if let Some(s) = &search.sort {
            let dir = match s.direction {
                SortDirection::Ascending => "ASCENDING",
                SortDirection::Descending => "DESCENDING",
            };
            body["sorts"] = json!([{ "propertyName": s.property, "direction": dir }]);
        }
        if !search.properties.is_empty() {
            body["properties"] = json!(search.properties);
        }
        if let Some(query) = &search.query {
            body["query"] = json!(query);
        }
        if let Some(limit) = search.limit {
            body["limit"] = json!(limit.min(MAX_SEARCH_LIMIT));
        }
        if let Some(after) = &search.after {
            body["after"] = json!(after);
        }
        let path = format!("{}/search", self.objects_path(object_type));
        self.build(Method::POST, &path, &Query::default(), json_body(&body))
    }

    /// `POST /crm/v4/associations/{from}/{to}/batch/read` (or the date-versioned
    /// `/crm/associations/{version}/…`), chunked by [`MAX_ASSOCIATION_READ_INPUTS`].
    pub fn batch_read_associations(
        &self,
        from_type: &str,
        to_type: &str,
        from_ids: &[String],
    ) -> Vec<http::Request<Vec<u8>>> {
        let path = format!("{}/batch/read", self.associations_path(from_type, to_type));
        from_ids
            .chunks(MAX_ASSOCIATION_READ_INPUTS)
            .map(|chunk| {
                let inputs: Vec<Value> = chunk.iter().map(|id| json!({ "id": id })).collect();
                let body = json!({ "inputs": inputs });
                self.build(Method::POST, &path, &Query::default(), json_body(&body))
            })
            .collect()
    }

    /// `POST /crm/v4/associations/{from}/{to}/batch/read` with one request for at most
    /// [`MAX_ASSOCIATION_READ_INPUTS`] inputs, each an id and, to continue a record's
    /// associations past a page, the `after` of its previous result
    /// ([`AssociationResult::next_after`](super::AssociationResult::next_after); spec
    /// `PublicFetchAssociationsBatchRequest {id, after}`). The caller chunks.
    pub fn batch_read_associations_after(
        &self,
        from_type: &str,
        to_type: &str,
        inputs: &[(String, Option<String>)],
    ) -> http::Request<Vec<u8>> {
        let path = format!("{}/batch/read", self.associations_path(from_type, to_type));
        let inputs: Vec<Value> = inputs
            .iter()
            .take(MAX_ASSOCIATION_READ_INPUTS)
            .map(|(id, after)| match after {
                Some(a) => json!({ "id": id, "after": a }),
                None => json!({ "id": id }),
            })
            .collect();
        let body = json!({ "inputs": inputs });
        self.build(Method::POST, &path, &Query::default(), json_body(&body))
    }

    /// `POST /crm/v4/associations/{from}/{to}/batch/associate/default` (or the date-versioned
    /// form): default (unlabelled) associations, chunked by [`MAX_ASSOCIATION_CREATE_INPUTS`].
    pub fn batch_associate_default(
        &self,
        from_type: &str,
        to_type: &str,
        pairs: &[AssociationPair],
    ) -> Vec<http::Request<Vec<u8>>> {
        let path = format!(
            "{}/batch/associate/default",
            self.associations_path(from_type, to_type)
        );
        pairs
            .chunks(MAX_ASSOCIATION_CREATE_INPUTS)
            .map(|chunk| {
                let inputs: Vec<Value> = chunk
                    .iter()
                    .map(|p| json!({ "from": { "id": p.from_id }, "to": { "id": p.to_id } }))
                    .collect();
                let body = json!({ "inputs": inputs });
                self.build(Method::POST, &path, &Query::default(), json_body(&body))
            })
            .collect()
    }

    /// `POST /oauth/v1/token` with `grant_type=authorization_code` (docs/hubspot.md §6).
    pub fn oauth_exchange_code(
        &self,
        client: &OAuthClient,
        code: &str,
        redirect_uri: &str,
    ) -> http::Request<Vec<u8>> {
        let mut form = Query::default();
        form.push("grant_type", "authorization_code");
        form.push("client_id", &client.client_id);
        form.push("client_secret", &client.client_secret);
        form.push("redirect_uri", redirect_uri);
        form.push("code", code);
        self.oauth_token(form)
    }

    /// `POST /oauth/v1/token` with `grant_type=refresh_token` (docs/hubspot.md §6).
    pub fn oauth_refresh(
        &self,
        client: &OAuthClient,
        refresh_token: &str,
    ) -> http::Request<Vec<u8>> {
        let mut form = Query::default();
        form.push("grant_type", "refresh_token");
        form.push("client_id", &client.client_id);
        form.push("client_secret", &client.client_secret);
        form.push("refresh_token", refresh_token);
        self.oauth_token(form)
    }

    fn oauth_token(&self, form: Query) -> http::Request<Vec<u8>> {
        self.build(
            Method::POST,
            "/oauth/v1/token",
            &Query::default(),
            Some((FORM, form.0.into_bytes())),
        )
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::api::PathStyle;

    fn legacy() -> ApiConfig {
        ApiConfig::new(super::super::DEFAULT_BASE_URL, PathStyle::Legacy).unwrap()
    }

    fn dated() -> ApiConfig {
        ApiConfig::default()
    }

    /// (method, path, query, content-type, body as JSON or Null)
    fn parts(
        req: &http::Request<Vec<u8>>,
    ) -> (String, String, Option<String>, Option<String>, Value) {
        assert!(req.headers().get(http::header::AUTHORIZATION).is_none());
        let ct = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = if req.body().is_empty() {
            assert!(ct.is_none(), "content-type without a body");
            Value::Null
        } else {
            assert_eq!(ct.as_deref(), Some(JSON));
            serde_json::from_slice(req.body()).unwrap()
        };
        assert_eq!(req.uri().host(), Some("api.hubapi.com"));
        (
            req.method().to_string(),
            req.uri().path().to_owned(),
            req.uri().query().map(str::to_owned),
            ct,
            body,
        )
    }

    fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| i.to_string()).collect()
    }

    #[test]
    fn read_object() {
        let opts = ReadOptions {
            properties: vec!["email".into(), "first name".into()],
            archived: false,
            id_property: Some("email".into()),
        };
        let (m, p, q, _, b) = parts(&legacy().read_object("contacts", "a+b@x.com", &opts));
        assert_eq!(m, "GET");
        assert_eq!(p, "/crm/v3/objects/contacts/a%2Bb%40x.com");
        assert_eq!(
            q.as_deref(),
            Some("properties=email,first%20name&archived=false&idProperty=email")
        );
        assert_eq!(b, Value::Null);
        let (_, p, q, _, _) = parts(&dated().read_object("2-123", "512", &ReadOptions::default()));
        assert_eq!(p, "/crm/objects/2026-03/2-123/512");
        assert_eq!(q.as_deref(), Some("archived=false"));
    }

    #[test]
    fn list_objects_clamps_limit() {
        let opts = ListOptions {
            limit: Some(500),
            after: Some("513881705058".into()),
            properties: vec!["name".into()],
            archived: false,
        };
        let (m, p, q, _, _) = parts(&legacy().list_objects("companies", &opts));
        assert_eq!(m, "GET");
        assert_eq!(p, "/crm/v3/objects/companies");
        assert_eq!(
            q.as_deref(),
            Some("limit=100&after=513881705058&properties=name&archived=false")
        );
        let (_, p, _, _, _) = parts(&dated().list_objects("deals", &ListOptions::default()));
        assert_eq!(p, "/crm/objects/2026-03/deals");
    }

    #[test]
    fn create_update_archive() {
        let input = CreateInput {
            properties: props(&[("email", "a@b.com")]),
            associations: vec![AssociationSpec {
                to_id: "42".into(),
                category: AssociationCategory::HubSpotDefined,
                type_id: 279,
            }],
            object_write_trace_id: Some("t1".into()),
        };
        let (m, p, q, _, b) = parts(&legacy().create_object("contacts", &input));
        assert_eq!(
            (m.as_str(), p.as_str(), q),
            ("POST", "/crm/v3/objects/contacts", None)
        );
        assert_eq!(
            b,
            json!({"properties":{"email":"a@b.com"},"associations":[{"to":{"id":"42"},
                "types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":279}]}]})
        );
        let (_, p, _, _, _) = parts(&dated().create_object("contacts", &input));
        assert_eq!(p, "/crm/objects/2026-03/contacts");

        let req = legacy().update_object(
            "contacts",
            "a@b.com",
            Some("email"),
            &props(&[("firstname", "")]),
        );
        let (m, p, q, _, b) = parts(&req);
        assert_eq!(m, "PATCH");
        assert_eq!(p, "/crm/v3/objects/contacts/a%40b.com");
        assert_eq!(q.as_deref(), Some("idProperty=email"));
        assert_eq!(b, json!({"properties":{"firstname":""}}));
        let (_, p, q, _, _) = parts(&dated().update_object("tickets", "7", None, &props(&[])));
        assert_eq!((p.as_str(), q), ("/crm/objects/2026-03/tickets/7", None));

        let (m, p, q, _, b) = parts(&legacy().archive_object("deals", "9"));
        assert_eq!(
            (m.as_str(), p.as_str(), q, b),
            ("DELETE", "/crm/v3/objects/deals/9", None, Value::Null)
        );
        let (_, p, _, _, _) = parts(&dated().archive_object("deals", "9"));
        assert_eq!(p, "/crm/objects/2026-03/deals/9");
    }

    #[test]
    fn batch_chunking() {
        for (n, sizes) in [
            (0, vec![]),
            (1, vec![1]),
            (100, vec![100]),
            (101, vec![100, 1]),
            (250, vec![100, 100, 50]),
        ] {
            let reqs = legacy().batch_read("contacts", &ids(n), &BatchReadOptions::default());
            let got: Vec<usize> = reqs
                .iter()
                .map(|r| parts(r).4["inputs"].as_array().unwrap().len())
                .collect();
            assert_eq!(got, sizes, "batch read of {n}");
            let creates = vec![CreateInput::default(); n];
            let got: Vec<usize> = legacy()
                .batch_create("contacts", &creates)
                .iter()
                .map(|r| parts(r).4["inputs"].as_array().unwrap().len())
                .collect();
            assert_eq!(got, sizes, "batch create of {n}");
            let updates = vec![UpdateInput::default(); n];
            for reqs in [
                legacy().batch_update("contacts", None, &updates),
                legacy().batch_upsert("contacts", "email", &updates),
                legacy().batch_archive("contacts", &ids(n)),
            ] {
                let got: Vec<usize> = reqs
                    .iter()
                    .map(|r| parts(r).4["inputs"].as_array().unwrap().len())
                    .collect();
                assert_eq!(got, sizes, "batch of {n}");
            }
        }
        // Asking for history: at most 50 ids per request, `propertiesWithHistory` in each.
        let history = BatchReadOptions {
            properties: vec!["email".into()],
            properties_with_history: vec!["firstname".into()],
            ..BatchReadOptions::default()
        };
        for (n, sizes) in [(50, vec![50]), (51, vec![50, 1]), (120, vec![50, 50, 20])] {
            let reqs = legacy().batch_read("contacts", &ids(n), &history);
            let bodies: Vec<Value> = reqs.iter().map(|r| parts(r).4).collect();
            let got: Vec<usize> = bodies
                .iter()
                .map(|b| b["inputs"].as_array().unwrap().len())
                .collect();
            assert_eq!(got, sizes, "history read of {n}");
            assert!(bodies
                .iter()
                .all(|b| b["propertiesWithHistory"] == json!(["firstname"])
                    && b["properties"] == json!(["email"])));
        }
        // Order is preserved across chunks.
        let reqs = legacy().batch_archive("contacts", &ids(101));
        assert_eq!(parts(&reqs[1]).4, json!({"inputs":[{"id":"100"}]}));
    }

    #[test]
    fn batch_bodies_and_paths() {
        let opts = BatchReadOptions {
            properties: vec!["email".into()],
            id_property: Some("email".into()),
            archived: true,
            ..BatchReadOptions::default()
        };
        let reqs = legacy().batch_read("contacts", &["a@b.com".into()], &opts);
        let (m, p, q, _, b) = parts(&reqs[0]);
        assert_eq!(
            (m.as_str(), p.as_str()),
            ("POST", "/crm/v3/objects/contacts/batch/read")
        );
        assert_eq!(q.as_deref(), Some("archived=true"));
        assert_eq!(
            b,
            json!({"inputs":[{"id":"a@b.com"}],"properties":["email"],"idProperty":"email"})
        );

        let c = CreateInput {
            properties: props(&[("name", "Acme")]),
            associations: vec![],
            object_write_trace_id: Some("t-1".into()),
        };
        let (_, p, _, _, b) = parts(&dated().batch_create("companies", &[c])[0]);
        assert_eq!(p, "/crm/objects/2026-03/companies/batch/create");
        assert_eq!(
            b,
            json!({"inputs":[{"properties":{"name":"Acme"},"objectWriteTraceId":"t-1"}]})
        );

        let u = UpdateInput {
            id: "x@y.com".into(),
            properties: props(&[("firstname", "X")]),
            object_write_trace_id: None,
        };
        let (_, p, _, _, b) =
            parts(&legacy().batch_upsert("contacts", "email", std::slice::from_ref(&u))[0]);
        assert_eq!(p, "/crm/v3/objects/contacts/batch/upsert");
        assert_eq!(
            b,
            json!({"inputs":[{"id":"x@y.com","idProperty":"email","properties":{"firstname":"X"}}]})
        );
        let (_, p, _, _, b) = parts(&dated().batch_update("contacts", None, &[u])[0]);
        assert_eq!(p, "/crm/objects/2026-03/contacts/batch/update");
        assert_eq!(
            b,
            json!({"inputs":[{"id":"x@y.com","properties":{"firstname":"X"}}]})
        );
        let (_, p, _, _, _) = parts(&dated().batch_archive("contacts", &ids(1))[0]);
        assert_eq!(p, "/crm/objects/2026-03/contacts/batch/archive");
    }

    #[test]
    fn search_body() {
        let f = |property: &str, op| SearchFilter {
            property: property.into(),
            op,
        };
        let search = SearchRequest {
            filter_groups: vec![
                vec![
                    f("a", FilterOp::Eq("1".into())),
                    f("b", FilterOp::Neq("2".into())),
                    f("c", FilterOp::Lt("3".into())),
                    f("d", FilterOp::Lte("4".into())),
                    f("e", FilterOp::Gt("5".into())),
                    f("g", FilterOp::Gte("6".into())),
                ],
                vec![
                    f(
                        "h",
                        FilterOp::Between {
                            low: "1579514400000".into(),
                            high: "1642672800000".into(),
                        },
                    ),
                    f("i", FilterOp::In(vec!["x".into(), "y".into()])),
                    f("j", FilterOp::NotIn(vec!["z".into()])),
                    f("k", FilterOp::HasProperty),
                    f("l", FilterOp::NotHasProperty),
                ],
            ],
            sort: Some(Sort {
                property: "createdate".into(),
                direction: SortDirection::Descending,
            }),
            properties: vec!["email".into()],
            query: Some("acme".into()),
            limit: Some(1000),
            after: Some("200".into()),
        };
        let (m, p, q, _, b) = parts(&legacy().search("contacts", &search));
        assert_eq!(
            (m.as_str(), p.as_str(), q),
            ("POST", "/crm/v3/objects/contacts/search", None)
        );
        assert_eq!(
            b,
            json!({"filterGroups":[
                {"filters":[
                    {"propertyName":"a","operator":"EQ","value":"1"},
                    {"propertyName":"b","operator":"NEQ","value":"2"},
                    {"propertyName":"c","operator":"LT","value":"3"},
                    {"propertyName":"d","operator":"LTE","value":"4"},
                    {"propertyName":"e","operator":"GT","value":"5"},
                    {"propertyName":"g","operator":"GTE","value":"6"}]},
                {"filters":[
                    {"propertyName":"h","operator":"BETWEEN","value":"1579514400000","highValue":"1642672800000"},
                    {"propertyName":"i","operator":"IN","values":["x","y"]},
                    {"propertyName":"j","operator":"NOT_IN","values":["z"]},
                    {"propertyName":"k","operator":"HAS_PROPERTY"},
                    {"propertyName":"l","operator":"NOT_HAS_PROPERTY"}]}],
              "sorts":[{"propertyName":"createdate","direction":"DESCENDING"}],
              "properties":["email"],"query":"acme","limit":200,"after":"200"})
        );
        let (_, p, _, _, b) = parts(&dated().search("2-123", &SearchRequest::default()));
        assert_eq!(p, "/crm/objects/2026-03/2-123/search");
        assert_eq!(b, json!({"filterGroups":[]}));
    }

    #[test]
    fn associations() {
        let (m, p, _, _, b) =
            parts(&legacy().batch_read_associations("contacts", "companies", &ids(2))[0]);
        assert_eq!(
            (m.as_str(), p.as_str()),
            ("POST", "/crm/v4/associations/contacts/companies/batch/read")
        );
        assert_eq!(b, json!({"inputs":[{"id":"0"},{"id":"1"}]}));
        let reqs = dated().batch_read_associations("contacts", "deals", &ids(1001));
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            parts(&reqs[0]).1,
            "/crm/associations/2026-03/contacts/deals/batch/read"
        );

        let pair = AssociationPair {
            from_id: "1".into(),
            to_id: "2".into(),
        };
        let (m, p, _, _, b) = parts(
            &legacy().batch_associate_default("contacts", "companies", std::slice::from_ref(&pair))
                [0],
        );
        assert_eq!(
            (m.as_str(), p.as_str()),
            (
                "POST",
                "/crm/v4/associations/contacts/companies/batch/associate/default"
            )
        );
        assert_eq!(b, json!({"inputs":[{"from":{"id":"1"},"to":{"id":"2"}}]}));
        let reqs = dated().batch_associate_default("deals", "0-1", &vec![pair; 2001]);
        assert_eq!(reqs.len(), 2);
        assert_eq!(
            parts(&reqs[1]).1,
            "/crm/associations/2026-03/deals/0-1/batch/associate/default"
        );
        assert!(dated().batch_associate_default("a", "b", &[]).is_empty());
    }

    #[test]
    fn oauth_forms() {
        let client = OAuthClient {
            client_id: "cid".into(),
            client_secret: "s&cret".into(),
        };
        assert!(!format!("{client:?}").contains("s&cret"));
        for cfg in [legacy(), dated()] {
            let req = cfg.oauth_exchange_code(&client, "code 1", "https://app.example/cb?x=1");
            assert_eq!(req.method(), Method::POST);
            assert_eq!(
                req.uri().to_string(),
                "https://api.hubapi.com/oauth/v1/token"
            );
            assert_eq!(req.headers()[http::header::CONTENT_TYPE], FORM);
            assert_eq!(
                std::str::from_utf8(req.body()).unwrap(),
                "grant_type=authorization_code&client_id=cid&client_secret=s%26cret\
                 &redirect_uri=https%3A%2F%2Fapp.example%2Fcb%3Fx%3D1&code=code%201"
            );
            let req = cfg.oauth_refresh(&client, "r/t");
            assert_eq!(req.uri().path(), "/oauth/v1/token");
            assert_eq!(
                std::str::from_utf8(req.body()).unwrap(),
                "grant_type=refresh_token&client_id=cid&client_secret=s%26cret&refresh_token=r%2Ft"
            );
        }
    }

    #[test]
    fn base_url_trailing_slash_and_custom_host() {
        let cfg = ApiConfig::new(
            "http://127.0.0.1:8787/",
            PathStyle::DateVersioned("2026-09".into()),
        )
        .unwrap();
        let req = cfg.archive_object("contacts", "1");
        assert_eq!(
            req.uri().to_string(),
            "http://127.0.0.1:8787/crm/objects/2026-09/contacts/1"
        );
    }
}
