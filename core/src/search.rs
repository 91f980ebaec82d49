//! Walking a CRM search result set of any size past HubSpot's 10,000-result cap
//! (docs/hubspot.md §4.4) by windowing on a sort key.
//!
//! HubSpot search returns at most 200 records per page, at most 10,000 per query (paging beyond
//! gives a 400), and accepts only one sort (docs/hubspot.md §4.4). [`SearchPlan`] is a sans-I/O
//! state machine that speaks the [`api`](crate::api) types: [`SearchPlan::next_request`] gives the
//! [`SearchRequest`] to send (build it with [`ApiConfig::search`](crate::api::ApiConfig::search)),
//! [`SearchPlan::on_page`] takes the [`Page`] it answered (as [`interpret`](crate::api::interpret)
//! returns it) and returns the ids it yields, in order, each exactly once.
//!
//! ```
//! use hubspot_edge_core::api::{ApiConfig, Page, MAX_SEARCH_LIMIT};
//! use hubspot_edge_core::search::SearchPlan;
//!
//! let api = ApiConfig::default();
//! let mut plan = SearchPlan::by_object_id(vec![], MAX_SEARCH_LIMIT).unwrap();
//! while let Some(search) = plan.next_request() {
//!     let request = api.search("contacts", &search);
//!     // … send `request`, then `interpret` the answer …
//!     let page = Page { results: vec![], next_after: None, total: Some(0) };
//!     for id in plan.on_page(&page).unwrap() {
//!         // … each id exactly once …
//!     }
//! }
//! ```
//!
//! # Keyset windows, one page each
//!
//! Every query carries its own lower bound on the sort key and no `after` offset: each window is
//! one page long. This is the limiting case of "start a new query with `hs_object_id GT last`
//! when the window nears 10,000": the cap can never be reached, and a record archived or
//! modified while the walk runs cannot shift an offset and make the walk skip a neighbour (with
//! offset paging over `hs_lastmodifieddate`, any record modified behind the cursor moves to the
//! end and shifts every later record one place down). It costs no extra requests when walking by
//! id.
//!
//! # By object id ([`SearchPlan::by_object_id`])
//!
//! Sort `hs_object_id` ascending (unique, immutable); the next query adds
//! `hs_object_id GT <largest id seen>`. Done when a page says there is no next page.
//!
//! # By last-modified date ([`SearchPlan::modified_since`])
//!
//! For incremental sync, ordered by a date property (`hs_lastmodifieddate`, or
//! `lastmodifieddate` for contacts, docs/hubspot.md §4.4) with `hs_object_id` as the tie-break. One
//! sort cannot express "date, then id", and the order of records sharing a date is unspecified,
//! so (docs/hubspot.md §4.4: bulk updates stamp thousands of records with one date):
//!
//! 1. Query `date GTE T` sorted by date. Yield the page. Let `L` be the largest date on it.
//! 2. If the page also held smaller dates, the next query is `date GTE L` again: the group of
//!    records dated `L` is read again from its start and the ones already yielded (remembered
//!    by id; only the group at `L`) are dropped. As long as that group fits on a page, reading
//!    it whole makes its unspecified internal order harmless.
//! 3. If a page holds only records dated `L` (the group at `L` may be larger than a page, or
//!    larger than 10,000), walk that group on its own: `date EQ L AND hs_object_id GT <last>`
//!    sorted by id, dropping ids already yielded; then resume with `date GT L`.
//!
//! Each step makes progress, so the walk ends; each record is yielded exactly once when the data
//! does not change during the walk. A record modified during the walk gets a later date and is
//! yielded again when the walk reaches it, which is what an incremental sync wants.
//! Re-reading the boundary group costs about one record per page when dates are mostly distinct.
//!
//! Dates are read from each record's properties as HubSpot returns them: ISO 8601 UTC
//! (`2024-05-01T12:00:00.123Z`, or a date alone) or Unix milliseconds; filters send Unix
//! milliseconds (docs/hubspot.md §4.4).
//!
//! Search is eventually consistent near "now" (docs/hubspot.md §4.4): a caller syncing
//! incrementally should bound the walk with a `date LT now - lag` filter and re-walk from an
//! earlier cursor.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::api::{
    FilterOp, Page, SearchFilter, SearchRequest, Sort, SortDirection, MAX_SEARCH_LIMIT,
};

/// Most results one query can page through (docs/hubspot.md §4.4).
pub const MAX_RESULTS_PER_QUERY: u32 = 10_000;
/// Most filter groups per request (docs/hubspot.md §4.4; the spec's "up to 6" is not trusted).
pub const MAX_FILTER_GROUPS: usize = 5;
/// Most filters in one group (docs/hubspot.md §4.4).
pub const MAX_FILTERS_PER_GROUP: usize = 6;
/// Most filters in one request (docs/hubspot.md §4.4).
pub const MAX_FILTERS: usize = 18;
/// The unique, immutable id property every object has.
pub const OBJECT_ID: &str = "hs_object_id";
/// Filters the plan adds to every group at most (date EQ and id GT).
const PLAN_FILTERS: usize = 2;

/// Why a plan could not be built or a page not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SearchPlanError {
    /// The caller's filters leave no room for the plan's own two filters per group within
    /// HubSpot's limits (5 groups, 6 filters per group, 18 in total).
    #[error("too many filters: at most {MAX_FILTER_GROUPS} groups of 4 filters and 18 in total, the plan adds 2 per group")]
    TooManyFilters,
    /// A page of a date-ordered walk held a record whose date property is absent, `null` or
    /// not a date (the property was not requested, or is not a date).
    #[error("search hit {id} has no value for the sort property")]
    MissingSortValue {
        /// The record's id.
        id: u64,
    },
    /// A page held a record whose id is not a number (not an answer to a CRM search).
    #[error("a search result had a non-numeric id")]
    NonNumericId {
        /// The id as sent.
        id: String,
    },
}

impl SearchPlanError {
    /// Stable code: `too_many_filters`, `missing_sort_value` or `non_numeric_id`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooManyFilters => "too_many_filters",
            Self::MissingSortValue { .. } => "missing_sort_value",
            Self::NonNumericId { .. } => "non_numeric_id",
        }
    }
}

/// Where the walk is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    /// `hs_object_id GT after_id`, sorted by id.
    Ids { after_id: Option<u64> },
    /// `date GTE from` (or `GT` when not inclusive), sorted by date.
    Range { from: u64, inclusive: bool },
    /// `date EQ at AND hs_object_id GT after_id`, sorted by id.
    Ties { at: u64, after_id: Option<u64> },
    /// Finished.
    Done,
}

/// One record of a page, as the plan reads it.
#[derive(Debug, Clone, Copy)]
struct Hit {
    id: u64,
    /// The date, on date walks; `None` when absent or not a date.
    date: Option<u64>,
}

/// A walk over every record matching some filters. See the [module docs](self).
///
/// Serialisable: a walk interrupted between pages resumes from its stored state (the sync's
/// incremental run, [`crate::sync`]); the state holds at most one page of ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchPlan {
    groups: Vec<Vec<SearchFilter>>,
    date_property: Option<String>,
    page_size: u32,
    phase: Phase,
    /// Ids already yielded whose date equals the current lower bound (date walks only).
    boundary: HashSet<u64>,
    yielded: u64,
    requests: u64,
}

impl SearchPlan {
    /// Every record matching `filter_groups` (ORed groups of ANDed filters; empty for all
    /// records), in ascending `hs_object_id` order. `page_size` is clamped to 1–200
    /// ([`MAX_SEARCH_LIMIT`]).
    ///
    /// # Errors
    ///
    /// [`SearchPlanError::TooManyFilters`] when a group has more than 4 filters, there are more
    /// than 5 groups, or more than 18 filters in total once the plan's own are added.
    pub fn by_object_id(
        filter_groups: Vec<Vec<SearchFilter>>,
        page_size: u32,
    ) -> Result<Self, SearchPlanError> {
        Self::new(
            filter_groups,
            None,
            page_size,
            Phase::Ids { after_id: None },
        )
    }

    /// Every record matching `filter_groups` whose `date_property` (e.g. `hs_lastmodifieddate`)
    /// is at or after `since_ms`, in ascending date order, ties in no particular order. The
    /// requests ask for `date_property`, and every record on a page must carry it (see the
    /// [module docs](self) for the formats read). `page_size` is clamped to 1–200.
    ///
    /// # Errors
    ///
    /// As [`by_object_id`](Self::by_object_id).
    pub fn modified_since(
        date_property: impl Into<String>,
        since_ms: u64,
        filter_groups: Vec<Vec<SearchFilter>>,
        page_size: u32,
    ) -> Result<Self, SearchPlanError> {
        Self::new(
            filter_groups,
            Some(date_property.into()),
            page_size,
            Phase::Range {
                from: since_ms,
                inclusive: true,
            },
        )
    }

    fn new(
        mut groups: Vec<Vec<SearchFilter>>,
        date_property: Option<String>,
        page_size: u32,
        phase: Phase,
    ) -> Result<Self, SearchPlanError> {
        if groups.is_empty() {
            groups.push(Vec::new());
        }
        let total: usize = groups.iter().map(|g| g.len() + PLAN_FILTERS).sum();
        if groups.len() > MAX_FILTER_GROUPS
            || total > MAX_FILTERS
            || groups
                .iter()
                .any(|g| g.len() + PLAN_FILTERS > MAX_FILTERS_PER_GROUP)
        {
            return Err(SearchPlanError::TooManyFilters);
        }
        Ok(Self {
            groups,
            date_property,
            page_size: page_size.clamp(1, MAX_SEARCH_LIMIT),
            phase,
            boundary: HashSet::new(),
            yielded: 0,
            requests: 0,
        })
    }

    /// The search to send next, or `None` when the walk is complete. Calling it again without
    /// [`on_page`](Self::on_page) returns the same search (send it again after a failure).
    ///
    /// It has the filter groups, one ascending sort, `limit` and, in `properties`, what the plan
    /// reads (`hs_object_id`, and the date property on date walks); never `after` or `query`.
    /// Add properties before sending to get more of each record.
    pub fn next_request(&self) -> Option<SearchRequest> {
        let date = self.date_property.as_deref().unwrap_or(OBJECT_ID);
        let (bounds, sort) = match self.phase {
            Phase::Done => return None,
            Phase::Ids { after_id } => (
                after_id
                    .map(|id| filter(OBJECT_ID, FilterOp::Gt(id.to_string())))
                    .into_iter()
                    .collect::<Vec<_>>(),
                OBJECT_ID,
            ),
            Phase::Range { from, inclusive } => {
                let from = from.to_string();
                let op = if inclusive {
                    FilterOp::Gte(from)
                } else {
                    FilterOp::Gt(from)
                };
                (vec![filter(date, op)], date)
            }
            Phase::Ties { at, after_id } => {
                let mut f = vec![filter(date, FilterOp::Eq(at.to_string()))];
                f.extend(after_id.map(|id| filter(OBJECT_ID, FilterOp::Gt(id.to_string()))));
                (f, OBJECT_ID)
            }
        };
        // (A OR B) AND bounds = (A AND bounds) OR (B AND bounds).
        let filter_groups = self
            .groups
            .iter()
            .map(|g| g.iter().chain(&bounds).cloned().collect())
            .collect();
        let mut properties = vec![OBJECT_ID.to_owned()];
        properties.extend(self.date_property.clone());
        Some(SearchRequest {
            filter_groups,
            sort: Some(Sort {
                property: sort.to_owned(),
                direction: SortDirection::Ascending,
            }),
            properties,
            query: None,
            limit: Some(self.page_size),
            after: None,
        })
    }

    /// Feeds back the page answering [`next_request`](Self::next_request); returns the ids it
    /// yields, in order, none of them yielded before. After the walk is done it yields nothing.
    ///
    /// Records outside the query's bounds (an engine not honouring the filters) are dropped; a
    /// page that makes no progress ends the phase, so a misbehaving engine cannot loop the plan.
    ///
    /// # Errors
    ///
    /// [`SearchPlanError::NonNumericId`] when a record's id is not a number, and
    /// [`SearchPlanError::MissingSortValue`] when a date walk gets a record without a date; the
    /// plan is unchanged and the same request is due again.
    pub fn on_page(&mut self, page: &Page) -> Result<Vec<u64>, SearchPlanError> {
        if self.phase == Phase::Done {
            return Ok(Vec::new());
        }
        let hits = self.hits(page)?;
        let more = page.next_after.is_some() && !hits.is_empty();
        let mut out = Vec::with_capacity(hits.len());
        match self.phase {
            Phase::Done => return Ok(out),
            Phase::Ids { after_id } => {
                let next = walk_ids(&hits, after_id, |_| true, &mut out);
                self.phase = match next {
                    Some(id) if more => Phase::Ids { after_id: Some(id) },
                    _ => Phase::Done,
                };
            }
            Phase::Ties { at, after_id } => {
                let boundary = &self.boundary;
                let next = walk_ids(&hits, after_id, |id| !boundary.contains(&id), &mut out);
                self.phase = match next {
                    Some(id) if more => Phase::Ties {
                        at,
                        after_id: Some(id),
                    },
                    _ => {
                        self.boundary.clear();
                        Phase::Range {
                            from: at,
                            inclusive: false,
                        }
                    }
                };
            }
            Phase::Range { from, inclusive } => {
                if let Some(hit) = hits.iter().find(|h| h.date.is_none()) {
                    return Err(SearchPlanError::MissingSortValue { id: hit.id });
                }
                let in_range = |v: u64| v > from || (inclusive && v == from);
                let dated = || {
                    hits.iter()
                        .filter_map(|h| Some((h.id, h.date?)))
                        .filter(|&(_, v)| in_range(v))
                };
                let Some(max) = dated().map(|(_, v)| v).max() else {
                    self.phase = Phase::Done;
                    return Ok(out);
                };
                for (id, v) in dated() {
                    let seen = v == from && !self.boundary.insert(id);
                    if !seen {
                        out.push(id);
                    }
                }
                self.phase = if !more {
                    Phase::Done
                } else if max == from {
                    // The whole page is the group at `from`: walk it by id (step 3).
                    Phase::Ties {
                        at: from,
                        after_id: None,
                    }
                } else {
                    // Re-read the group at `max` from its start (step 2).
                    self.boundary.clear();
                    self.boundary
                        .extend(dated().filter(|&(_, v)| v == max).map(|(id, _)| id));
                    Phase::Range {
                        from: max,
                        inclusive: true,
                    }
                };
                if self.phase == Phase::Done {
                    self.boundary.clear();
                }
            }
        }
        self.requests += 1;
        self.yielded += out.len() as u64;
        Ok(out)
    }

    /// Whether the walk is complete.
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Ids yielded so far.
    pub fn yielded(&self) -> u64 {
        self.yielded
    }

    /// Pages fed back so far.
    pub fn pages(&self) -> u64 {
        self.requests
    }

    /// The page's records as ids and (on date walks) dates.
    fn hits(&self, page: &Page) -> Result<Vec<Hit>, SearchPlanError> {
        page.results
            .iter()
            .map(|o| {
                let id =
                    o.id.parse()
                        .map_err(|_| SearchPlanError::NonNumericId { id: o.id.clone() })?;
                let date = self
                    .date_property
                    .as_ref()
                    .and_then(|p| o.properties.get(p)?.as_deref())
                    .and_then(date_ms);
                Ok(Hit { id, date })
            })
            .collect()
    }
}

fn filter(property: &str, op: FilterOp) -> SearchFilter {
    SearchFilter {
        property: property.to_owned(),
        op,
    }
}

/// A date property's value in Unix ms: Unix milliseconds, or ISO 8601 UTC as HubSpot returns
/// datetime (and date) properties.
fn date_ms(value: &str) -> Option<u64> {
    use crate::mapping::calendar;
    value.parse().ok().or_else(|| {
        let ms = calendar::parse_datetime(value)
            .or_else(|_| calendar::parse_date(value).map(calendar::days_to_ms))
            .ok()?;
        u64::try_from(ms).ok()
    })
}

/// Pushes the ids of an id-sorted page above `after_id` that pass `keep`; returns the largest id
/// above `after_id`, or `None` if the page made no progress.
fn walk_ids(
    hits: &[Hit],
    after_id: Option<u64>,
    keep: impl Fn(u64) -> bool,
    out: &mut Vec<u64>,
) -> Option<u64> {
    let above = |id: u64| after_id.is_none_or(|a| id > a);
    let mut max = None;
    for hit in hits {
        if above(hit.id) {
            if keep(hit.id) {
                out.push(hit.id);
            }
            max = max.max(Some(hit.id));
        }
    }
    max
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use std::collections::BTreeMap;

    use super::*;
    use crate::api::SimpleObject;

    /// A record as HubSpot returns it, with its date in property `d` (Unix ms as a string).
    fn hit(id: u64, date: u64) -> SimpleObject {
        record(id, "d", Some(date.to_string()))
    }

    fn record(id: impl ToString, property: &str, value: Option<String>) -> SimpleObject {
        SimpleObject {
            id: id.to_string(),
            properties: BTreeMap::from([(property.to_owned(), value)]),
            properties_with_history: BTreeMap::new(),
            created_at: None,
            updated_at: None,
            archived: false,
            archived_at: None,
            object_write_trace_id: None,
            new: None,
        }
    }

    fn page(results: Vec<SimpleObject>, more: bool) -> Page {
        Page {
            results,
            next_after: more.then(|| "x".to_owned()),
            total: None,
        }
    }

    /// A filter's operator name and value (the ones the planner and the fake engine use).
    fn op(f: &SearchFilter) -> (&'static str, &str) {
        match &f.op {
            FilterOp::Eq(v) => ("EQ", v),
            FilterOp::Neq(v) => ("NEQ", v),
            FilterOp::Lt(v) => ("LT", v),
            FilterOp::Lte(v) => ("LTE", v),
            FilterOp::Gt(v) => ("GT", v),
            FilterOp::Gte(v) => ("GTE", v),
            other => panic!("operator {other:?} not used here"),
        }
    }

    fn bounds(q: &SearchRequest) -> Vec<(String, &'static str, String)> {
        q.filter_groups[0]
            .iter()
            .map(|f| {
                let (name, value) = op(f);
                (f.property.clone(), name, value.to_owned())
            })
            .collect()
    }

    fn sort_property(q: &SearchRequest) -> &str {
        &q.sort.as_ref().expect("one sort").property
    }

    fn f(p: &str, op: &'static str, v: &str) -> (String, &'static str, String) {
        (p.to_owned(), op, v.to_owned())
    }

    #[test]
    fn by_id_walk() {
        let mut plan = SearchPlan::by_object_id(vec![], 2).unwrap();
        let q = plan.next_request().unwrap();
        assert_eq!(q.limit, Some(2));
        assert_eq!((&q.after, &q.query), (&None, &None));
        assert_eq!(q.properties, ["hs_object_id"]);
        assert_eq!(sort_property(&q), "hs_object_id");
        assert_eq!(q.sort.as_ref().unwrap().direction, SortDirection::Ascending);
        assert!(bounds(&q).is_empty());
        // Idempotent until a page is fed back.
        assert_eq!(plan.next_request(), Some(q));

        let ids = plan
            .on_page(&page(vec![hit(3, 0), hit(7, 0)], true))
            .unwrap();
        assert_eq!(ids, [3, 7]);
        let q = plan.next_request().unwrap();
        assert_eq!(bounds(&q), [f("hs_object_id", "GT", "7")]);

        let ids = plan.on_page(&page(vec![hit(9, 0)], false)).unwrap();
        assert_eq!(ids, [9]);
        assert!(plan.is_done());
        assert_eq!(plan.next_request(), None);
        assert_eq!(
            plan.on_page(&page(vec![hit(10, 0)], true)).unwrap(),
            [0u64; 0]
        );
        assert_eq!((plan.yielded(), plan.pages()), (3, 2));
    }

    #[test]
    fn by_id_no_progress_ends() {
        let mut plan = SearchPlan::by_object_id(vec![], 2).unwrap();
        plan.on_page(&page(vec![hit(5, 0), hit(6, 0)], true))
            .unwrap();
        // An engine ignoring the GT filter returns the same page: nothing new, walk ends.
        let ids = plan
            .on_page(&page(vec![hit(5, 0), hit(6, 0)], true))
            .unwrap();
        assert!(ids.is_empty());
        assert!(plan.is_done());
    }

    #[test]
    fn user_filters_are_anded_into_every_group() {
        let groups = vec![
            vec![filter("lifecyclestage", FilterOp::Eq("lead".into()))],
            vec![filter("hs_lead_status", FilterOp::Neq("NEW".into()))],
        ];
        let p = "hs_lastmodifieddate";
        let mut plan = SearchPlan::modified_since(p, 100, groups, 500).unwrap();
        let q = plan.next_request().unwrap();
        assert_eq!(q.limit, Some(200));
        assert_eq!(q.properties, ["hs_object_id", p]);
        assert_eq!(q.filter_groups.len(), 2);
        for g in &q.filter_groups {
            assert_eq!(g.len(), 2);
            assert_eq!(g[1], filter(p, FilterOp::Gte("100".into())));
        }
        plan.on_page(&page(vec![record(1, p, Some("100".into()))], true))
            .unwrap();
        let q = plan.next_request().unwrap();
        assert_eq!(sort_property(&q), "hs_object_id");
        for g in &q.filter_groups {
            assert_eq!(g.len(), 2);
        }
    }

    #[test]
    fn too_many_filters() {
        let eq = || filter("a", FilterOp::Eq("1".into()));
        let four = || vec![eq(); 4];
        let cases = [
            (vec![], true),
            (vec![four()], true),
            (vec![vec![eq(); 5]], false),
            (vec![four(), four(), four()], true),
            // 4 groups of 4 + 2 = 24 filters > 18.
            (vec![four(), four(), four(), four()], false),
            (vec![vec![]; 5], true),
            (vec![vec![]; 6], false),
        ];
        for (i, (groups, ok)) in cases.into_iter().enumerate() {
            let r = SearchPlan::by_object_id(groups, 100);
            assert_eq!(r.is_ok(), ok, "case {i}");
            if let Err(e) = r {
                assert_eq!(e.code(), "too_many_filters");
            }
        }
    }

    #[test]
    fn date_walk_rereads_boundary_group() {
        let p = "d";
        let mut plan = SearchPlan::modified_since(p, 0, vec![], 3).unwrap();
        assert_eq!(bounds(&plan.next_request().unwrap()), [f(p, "GTE", "0")]);
        let ids = plan.on_page(&page(vec![hit(1, 10), hit(2, 20), hit(3, 20)], true));
        assert_eq!(ids.unwrap(), [1, 2, 3]);
        // Re-read the group at 20 from its start.
        assert_eq!(bounds(&plan.next_request().unwrap()), [f(p, "GTE", "20")]);
        let ids = plan.on_page(&page(vec![hit(3, 20), hit(4, 20), hit(2, 20)], true));
        // Only 4 is new, and the page is all one date: walk the group by id.
        assert_eq!(ids.unwrap(), [4]);
        assert_eq!(bounds(&plan.next_request().unwrap()), [f(p, "EQ", "20")],);
        assert_eq!(sort_property(&plan.next_request().unwrap()), "hs_object_id");
        let ids = plan.on_page(&page(vec![hit(2, 20), hit(3, 20), hit(4, 20)], true));
        assert_eq!(ids.unwrap(), [0u64; 0]);
        assert_eq!(
            bounds(&plan.next_request().unwrap()),
            [f(p, "EQ", "20"), f("hs_object_id", "GT", "4")],
        );
        let ids = plan.on_page(&page(vec![hit(5, 20)], false));
        assert_eq!(ids.unwrap(), [5]);
        // Group done: resume strictly after it.
        assert_eq!(bounds(&plan.next_request().unwrap()), [f(p, "GT", "20")]);
        let ids = plan.on_page(&page(vec![hit(0, 30)], false));
        assert_eq!(ids.unwrap(), [0]);
        assert!(plan.is_done());
    }

    #[test]
    fn date_walk_missing_value_is_an_error_and_retryable() {
        let mut plan = SearchPlan::modified_since("d", 0, vec![], 10).unwrap();
        let before = plan.next_request();
        // Absent, null, or not a date.
        for bad in [
            record(9, "other", Some("1".into())),
            record(9, "d", None),
            record(9, "d", Some("yesterday".into())),
        ] {
            let err = plan
                .on_page(&page(vec![hit(1, 5), bad], false))
                .unwrap_err();
            assert_eq!(err, SearchPlanError::MissingSortValue { id: 9 });
            assert_eq!(err.code(), "missing_sort_value");
            assert_eq!(plan.next_request(), before);
        }
    }

    #[test]
    fn non_numeric_id_is_an_error_and_retryable() {
        for mut plan in [
            SearchPlan::by_object_id(vec![], 10).unwrap(),
            SearchPlan::modified_since("d", 0, vec![], 10).unwrap(),
        ] {
            let before = plan.next_request();
            let bad = page(vec![hit(1, 5), record("x1", "d", Some("5".into()))], true);
            let err = plan.on_page(&bad).unwrap_err();
            assert_eq!(err, SearchPlanError::NonNumericId { id: "x1".into() });
            assert_eq!(err.code(), "non_numeric_id");
            assert_eq!(err.to_string(), "a search result had a non-numeric id");
            assert_eq!(plan.next_request(), before);
            assert_eq!(plan.pages(), 0);
        }
    }

    #[test]
    fn date_walk_reads_hubspot_dates() {
        // HubSpot returns datetime properties as ISO 8601; filters carry Unix ms.
        let p = "hs_lastmodifieddate";
        let mut plan = SearchPlan::modified_since(p, 0, vec![], 2).unwrap();
        let iso = |id, s: &str| record(id, p, Some(s.to_owned()));
        let ids = plan.on_page(&page(
            vec![
                iso(1, "2024-05-01T12:00:00Z"),
                iso(2, "2024-05-01T12:00:00.123Z"),
            ],
            true,
        ));
        assert_eq!(ids.unwrap(), [1, 2]);
        assert_eq!(
            bounds(&plan.next_request().unwrap()),
            [f(p, "GTE", "1714564800123")]
        );
    }

    #[test]
    fn date_walk_empty() {
        let mut plan = SearchPlan::modified_since("d", 0, vec![], 10).unwrap();
        assert_eq!(plan.on_page(&page(vec![], false)).unwrap(), [0u64; 0]);
        assert!(plan.is_done());
    }

    /// An in-memory search engine with HubSpot's semantics (docs/hubspot.md §4.4) over records with
    /// an id and one date property `d`: filter groups ORed, filters ANDed, one ascending sort,
    /// `after` as an offset, pages of at most 200, no paging past 10,000. Records sharing a date
    /// come out in an order unrelated to their ids.
    pub(super) struct FakeEngine {
        /// (d, scramble, id), sorted.
        by_date: Vec<(u64, u64, u64)>,
        /// (d, id), sorted: an index for `d EQ x` sorted by id.
        by_date_id: Vec<(u64, u64)>,
        /// (id, d), sorted.
        by_id: Vec<(u64, u64)>,
        pub(super) queries: u64,
    }

    impl FakeEngine {
        pub(super) fn new(records: &[(u64, u64)]) -> Self {
            let scramble = |id: u64| id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
            let mut by_date: Vec<_> = records
                .iter()
                .map(|&(id, d)| (d, scramble(id), id))
                .collect();
            by_date.sort_unstable();
            let mut by_date_id: Vec<_> = records.iter().map(|&(id, d)| (d, id)).collect();
            by_date_id.sort_unstable();
            let mut by_id: Vec<_> = records.to_vec();
            by_id.sort_unstable();
            Self {
                by_date,
                by_date_id,
                by_id,
                queries: 0,
            }
        }

        fn matches(filter: &SearchFilter, id: u64, d: u64) -> bool {
            let (name, value) = op(filter);
            let value: u64 = value.parse().expect("numeric filter value");
            let x = match filter.property.as_str() {
                OBJECT_ID => id,
                "d" => d,
                other => panic!("unknown property {other}"),
            };
            match name {
                "EQ" => x == value,
                "NEQ" => x != value,
                "LT" => x < value,
                "LTE" => x <= value,
                "GT" => x > value,
                _ => x >= value,
            }
        }

        /// The lower bound a filter puts on `property`, for index seeks.
        fn lower(group: &[SearchFilter], property: &str) -> u64 {
            group
                .iter()
                .filter(|f| f.property == property)
                .filter_map(|f| {
                    let (name, value) = op(f);
                    let v: u64 = value.parse().ok()?;
                    match name {
                        "EQ" | "GTE" => Some(v),
                        "GT" => Some(v.saturating_add(1)),
                        _ => None,
                    }
                })
                .max()
                .unwrap_or(0)
        }

        pub(super) fn search(&mut self, q: &SearchRequest) -> Result<Page, String> {
            self.queries += 1;
            let limit = q.limit.unwrap_or(10);
            if limit == 0 || limit > MAX_SEARCH_LIMIT {
                return Err(format!("limit {limit} out of range"));
            }
            let Some(sort) = q.sort.as_ref() else {
                return Err("exactly one ascending sort supported".into());
            };
            if sort.direction != SortDirection::Ascending {
                return Err("exactly one ascending sort supported".into());
            }
            if q.filter_groups.len() > MAX_FILTER_GROUPS
                || q.filter_groups
                    .iter()
                    .any(|g| g.len() > MAX_FILTERS_PER_GROUP)
                || q.filter_groups.iter().map(Vec::len).sum::<usize>() > MAX_FILTERS
            {
                return Err("too many filters".into());
            }
            let offset: u64 = match &q.after {
                None => 0,
                Some(a) => a.parse().map_err(|_| "after must be an integer")?,
            };
            if offset + u64::from(limit) > u64::from(MAX_RESULTS_PER_QUERY) {
                return Err("400: cannot page beyond 10,000 results".into());
            }
            let want = usize::try_from(offset).unwrap() + limit as usize + 1;
            let group_match = |id, d| {
                q.filter_groups.is_empty()
                    || q.filter_groups
                        .iter()
                        .any(|g| g.iter().all(|f| Self::matches(f, id, d)))
            };
            let single = (q.filter_groups.len() == 1).then(|| &q.filter_groups[0]);
            // Candidates in sort order, starting at an index seek when there is one group.
            let hits: Vec<(u64, u64)> = match sort.property.as_str() {
                "d" => {
                    let lo = single.map_or(0, |g| Self::lower(g, "d"));
                    let start = self.by_date.partition_point(|&(d, _, _)| d < lo);
                    self.by_date[start..]
                        .iter()
                        .filter(|&&(d, _, id)| group_match(id, d))
                        .take(want)
                        .map(|&(d, _, id)| (id, d))
                        .collect()
                }
                OBJECT_ID => {
                    let eq_date = single.and_then(|g| {
                        g.iter()
                            .find(|f| f.property == "d" && op(f).0 == "EQ")
                            .map(|f| op(f).1.parse::<u64>().unwrap())
                    });
                    let lo = single.map_or(0, |g| Self::lower(g, OBJECT_ID));
                    match eq_date {
                        Some(d0) => {
                            let start = self.by_date_id.partition_point(|&k| k < (d0, lo));
                            self.by_date_id[start..]
                                .iter()
                                .take_while(|&&(d, _)| d == d0)
                                .filter(|&&(d, id)| group_match(id, d))
                                .take(want)
                                .map(|&(d, id)| (id, d))
                                .collect()
                        }
                        None => {
                            let start = self.by_id.partition_point(|&(id, _)| id < lo);
                            self.by_id[start..]
                                .iter()
                                .filter(|&&(id, d)| group_match(id, d))
                                .take(want)
                                .map(|&(id, d)| (id, d))
                                .collect()
                        }
                    }
                }
                other => return Err(format!("cannot sort by {other}")),
            };
            let offset = usize::try_from(offset).unwrap();
            let end = (offset + limit as usize).min(hits.len());
            let results = hits.get(offset..end).unwrap_or_default();
            let next_after = (hits.len() > end).then(|| end.to_string());
            // Properties only when requested; datetimes as ISO 8601, as HubSpot returns them.
            let with_d = q.properties.iter().any(|p| p == "d");
            Ok(Page {
                results: results
                    .iter()
                    .map(|&(id, d)| {
                        if with_d {
                            record(id, "d", Some(crate::time::iso8601_ms(d)))
                        } else {
                            record(id, OBJECT_ID, Some(id.to_string()))
                        }
                    })
                    .collect(),
                next_after,
                total: None,
            })
        }
    }

    /// Runs `plan` to completion against `engine`; returns the yielded ids.
    pub(super) fn drive(plan: &mut SearchPlan, engine: &mut FakeEngine) -> Vec<u64> {
        let mut out = Vec::new();
        while let Some(q) = plan.next_request() {
            let page = engine
                .search(&q)
                .expect("engine accepts every planned query");
            out.extend(plan.on_page(&page).expect("page accepted"));
            assert!(engine.queries < 1_000_000, "the plan does not terminate");
        }
        out
    }

    #[test]
    fn fake_engine_caps_at_ten_thousand() {
        let records: Vec<_> = (1..=10_500).map(|id| (id, 7)).collect();
        let mut engine = FakeEngine::new(&records);
        let mut q = SearchPlan::by_object_id(vec![], 200)
            .unwrap()
            .next_request()
            .unwrap();
        q.after = Some("9800".into());
        assert!(engine.search(&q).is_ok());
        q.after = Some("9801".into());
        assert!(engine.search(&q).is_err());
    }

    #[test]
    fn walks_past_the_cap_with_one_huge_tie_group() {
        // 25,000 records, 21,000 of them stamped with one date by a bulk update.
        let records: Vec<_> = (1..=25_000u64)
            .map(|id| (id * 3, if id % 6 == 0 { id } else { 1_000_000 }))
            .collect();
        let mut engine = FakeEngine::new(&records);
        let mut plan = SearchPlan::modified_since("d", 0, vec![], 200).unwrap();
        let mut got = drive(&mut plan, &mut engine);
        got.sort_unstable();
        let mut want: Vec<_> = records.iter().map(|&(id, _)| id).collect();
        want.sort_unstable();
        assert_eq!(got, want);

        let mut plan = SearchPlan::by_object_id(vec![], 200).unwrap();
        let got = drive(&mut plan, &mut engine);
        assert_eq!(got, want, "id walk yields in id order");
    }

    /// Planner time for a 100,000-record walk. Run with
    /// `cargo test -p hubspot-edge-core --release -- --ignored --nocapture planner_100k`.
    #[test]
    #[ignore = "benchmark; run explicitly"]
    #[cfg(not(target_arch = "wasm32"))]
    fn planner_100k() {
        let records: Vec<_> = (1..=100_000u64).map(|id| (id, id / 50)).collect();
        let pages: Vec<Page> = records
            .chunks(200)
            .map(|c| Page {
                results: c.iter().map(|&(id, d)| hit(id, d)).collect(),
                next_after: Some(String::new()),
                total: None,
            })
            .collect();
        let start = std::time::Instant::now();
        let mut plan = SearchPlan::by_object_id(vec![], 200).unwrap();
        let mut n = 0;
        for p in &pages {
            let _ = plan.next_request();
            n += plan.on_page(p).unwrap().len();
        }
        let elapsed = start.elapsed();
        assert_eq!(n, 100_000);
        eprintln!("planner_100k (id walk, planner only): {elapsed:?}");
        let mut engine = FakeEngine::new(&records);
        let start = std::time::Instant::now();
        let mut plan = SearchPlan::modified_since("d", 0, vec![], 200).unwrap();
        let got = drive(&mut plan, &mut engine);
        assert_eq!(got.len(), 100_000);
        eprintln!(
            "planner_100k (date walk incl. fake engine): {:?}, {} queries",
            start.elapsed(),
            engine.queries
        );
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod proptests {
    use proptest::prelude::*;

    use super::tests::{drive, FakeEngine};
    use super::*;

    /// Deterministic data set: `n` unique ids, dates drawn from `distinct` values, with `hot`
    /// per mille of the records on a single date.
    fn data(n: usize, distinct: u64, hot: u64, seed: u64) -> Vec<(u64, u64)> {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let mut id = 0;
        (0..n)
            .map(|_| {
                id += 1 + next() % 5;
                let d = if next() % 1000 < hot {
                    500
                } else {
                    next() % distinct
                };
                (id, d)
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn every_record_exactly_once(
            n in 0usize..30_000,
            distinct in 1u64..2_000,
            hot in prop_oneof![Just(0u64), 0u64..1000],
            seed in any::<u64>(),
            page_size in 1u32..=200,
            since in 0u64..1_000,
        ) {
            // Tiny pages over huge data would take minutes in debug builds; keep each case quick.
            let n = n.min(page_size as usize * 1_500);
            let records = data(n, distinct, hot, seed);
            let mut engine = FakeEngine::new(&records);

            let mut plan = SearchPlan::by_object_id(vec![], page_size).unwrap();
            let got = drive(&mut plan, &mut engine);
            let all: Vec<u64> = records.iter().map(|&(id, _)| id).collect();
            prop_assert_eq!(&got, &all);

            let mut plan = SearchPlan::modified_since("d", since, vec![], page_size).unwrap();
            let got = drive(&mut plan, &mut engine);
            // Yielded in non-decreasing date order, each id once.
            let date: std::collections::HashMap<u64, u64> = records.iter().copied().collect();
            prop_assert!(got.windows(2).all(|w| date[&w[0]] <= date[&w[1]]));
            let mut got = got;
            got.sort_unstable();
            let want: Vec<u64> = records.iter().filter(|&&(_, d)| d >= since).map(|&(id, _)| id).collect();
            prop_assert_eq!(got, want);
        }
    }
}
