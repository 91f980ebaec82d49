//! HubSpot REST API requests described as values (`http::Request`), and responses interpreted
//! into typed results and decisions (docs/hubspot.md §4–§6). No I/O: callers execute the requests.
//!
//! - [`ApiConfig`] builds every request: CRM objects (read, create, update, archive, batches of
//!   at most 100 inputs, search, list), associations v4 batches and the OAuth token endpoint.
//!   Requests carry no `Authorization` header: the executor adds it.
//! - [`interpret`] turns a status, the headers and the body into a typed value or an
//!   [`ApiError`] with a stable [`ApiError::code`]; [`RateLimitHeaders`] reads
//!   `X-HubSpot-RateLimit-*`.
//! - [`decide`] is the retry policy: a pure function of the outcome, the attempt number, `now`
//!   and a caller-supplied jitter.
//! - [`Call`] is one call from first attempt to end: the policy, refresh-once on 401, and the
//!   cap on waiting inside one call, as steps.
//! - [`TokenCache`] is the OAuth access token's cache (refresh before expiry and once per 401,
//!   one refresh at a time, failures remembered) and [`refresh_answer`] reads the token
//!   endpoint's answer.

mod call;
mod config;
mod error;
mod request;
mod response;
mod retry;
mod token;

pub use call::{Call, CallFailure, CallStep};
pub(crate) use config::{encode as encode_segment, Query};
pub use config::{ApiConfig, PathStyle, RequestError, DEFAULT_API_VERSION, DEFAULT_BASE_URL};
pub use error::{CallAnswer, CallError};
pub use request::{
    AssociationCategory, AssociationPair, AssociationSpec, BatchReadOptions, CreateInput, FilterOp,
    ListOptions, OAuthClient, ReadOptions, SearchFilter, SearchRequest, Sort, SortDirection,
    UpdateInput, MAX_ASSOCIATION_CREATE_INPUTS, MAX_ASSOCIATION_READ_INPUTS, MAX_BATCH_INPUTS,
    MAX_HISTORY_BATCH_INPUTS, MAX_LIST_LIMIT, MAX_SEARCH_LIMIT,
};
pub use response::{
    interpret, ApiError, AssociationResult, AssociationTarget, AssociationTypeRef, BatchResponse,
    ErrorBody, ErrorDetail, HistoryValue, ObjectRef, Page, RateLimitHeaders, RateLimitPolicy,
    RetryAfter, SimpleObject, TokenResponse,
};
pub use retry::{
    decide, CallDecision, GiveUpReason, OnRefused, Outcome, RequestKind, RetryPolicy, TokenOrigin,
    TokenState,
};
pub use token::{
    refresh_answer, RefreshFailure, TokenCache, TokenStep, REFRESH_REFUSED_MEMO_MS,
    REFRESH_TRANSIENT_MEMO_MS,
};
