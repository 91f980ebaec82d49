//! Walking a CRM search result set of any size past HubSpot's 10,000-result cap
//! (HUBSPOT.md §4.4) by windowing on a sort key.
//!
//! HubSpot search returns at most 200 records per page, at most 10,000 per query (paging beyond
//! gives a 400), and accepts only one sort (HUBSPOT.md §4.4). [`SearchPlan`] is a sans-I/O state
//! machine: [`SearchPlan::next_request`] says which query to send, [`SearchPlan::on_page`] takes
//! the page back and returns the ids it yields, in order, each exactly once.
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
//! `lastmodifieddate` for contacts, HUBSPOT.md §4.4) with `hs_object_id` as the tie-break. One
//! sort cannot express "date, then id", and the order of records sharing a date is unspecified,
//! so (PEERS.md pain 5: bulk updates stamp thousands of records with one date):
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
//! Search is eventually consistent near "now" (PEERS.md pain 6): a caller syncing incrementally
//! should bound the walk with a `date LT now - lag` filter and re-walk from an earlier cursor.

use std::collections::HashSet;

/// HubSpot's largest page (HUBSPOT.md §4.4).
pub const MAX_PAGE_SIZE: u32 = 200;
/// Most results one query can page through (HUBSPOT.md §4.4).
pub const MAX_RESULTS_PER_QUERY: u32 = 10_000;
/// Most filter groups per request (HUBSPOT.md §4.4; the spec's "up to 6" is not trusted).
pub const MAX_FILTER_GROUPS: usize = 5;
/// Most filters in one group (HUBSPOT.md §4.4).
pub const MAX_FILTERS_PER_GROUP: usize = 6;
/// Most filters in one request (HUBSPOT.md §4.4).
pub const MAX_FILTERS: usize = 18;
/// The unique, immutable id property every object has.
pub const OBJECT_ID: &str = "hs_object_id";
/// Filters the plan adds to every group at most (date EQ and id GT).
const PLAN_FILTERS: usize = 2;

/// A comparison operator (a subset of HubSpot's, HUBSPOT.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `EQ`
    Eq,
    /// `NEQ`
    Neq,
    /// `LT`
    Lt,
    /// `LTE`
    Lte,
    /// `GT`
    Gt,
    /// `GTE`
    Gte,
}

impl Operator {
    /// The name HubSpot uses in `filters[].operator`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Eq => "EQ",
            Self::Neq => "NEQ",
            Self::Lt => "LT",
            Self::Lte => "LTE",
            Self::Gt => "GT",
            Self::Gte => "GTE",
        }
    }
}

/// One search filter: `property operator value`. Values are strings on the wire; dates are Unix
/// milliseconds (HUBSPOT.md §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    /// Property name, e.g. `hs_object_id`.
    pub property: String,
    /// Comparison.
    pub operator: Operator,
    /// Value, as sent.
    pub value: String,
}

impl Filter {
    /// Builds a filter.
    pub fn new(property: impl Into<String>, operator: Operator, value: impl ToString) -> Self {
        Self {
            property: property.into(),
            operator,
            value: value.to_string(),
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `ASCENDING`
    Ascending,
    /// `DESCENDING`
    Descending,
}

/// The one sort HubSpot allows per search (HUBSPOT.md §4.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sort {
    /// Property to sort by.
    pub property: String,
    /// Direction.
    pub direction: Direction,
}

/// One search request to send, as data. Filter groups are ORed; filters in a group are ANDed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchQuery {
    /// `filterGroups`.
    pub filter_groups: Vec<Vec<Filter>>,
    /// `sorts` (one entry).
    pub sorts: Vec<Sort>,
    /// `after`: paging cursor; the plan never pages by offset, so this is always `None`.
    pub after: Option<String>,
    /// `limit`: page size, 1–200.
    pub limit: u32,
}

/// One record of a search response page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchHit {
    /// `hs_object_id`.
    pub id: u64,
    /// The value of the plan's date property in Unix ms; required by
    /// [`SearchPlan::modified_since`] plans, ignored by [`SearchPlan::by_object_id`] plans.
    pub sort_value: Option<u64>,
}

/// One search response page, in the order HubSpot returned it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchPage {
    /// `results`.
    pub results: Vec<SearchHit>,
    /// `paging.next.after`: `Some` when HubSpot has more results for this query.
    pub next_after: Option<String>,
    /// `total`, when sent (informational).
    pub total: Option<u64>,
}

/// Why a plan could not be built or a page not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchPlanError {
    /// The caller's filters leave no room for the plan's own two filters per group within
    /// HubSpot's limits (5 groups, 6 filters per group, 18 in total).
    #[error("too many filters: at most {MAX_FILTER_GROUPS} groups of 4 filters and 18 in total, the plan adds 2 per group")]
    TooManyFilters,
    /// A page of a date-ordered walk held a record without the date (a bug in the caller's
    /// response parsing, or the property was not requested).
    #[error("search hit {id} has no value for the sort property")]
    MissingSortValue {
        /// The record's id.
        id: u64,
    },
}

impl SearchPlanError {
    /// Stable code: `too_many_filters` or `missing_sort_value`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooManyFilters => "too_many_filters",
            Self::MissingSortValue { .. } => "missing_sort_value",
        }
    }
}

/// Where the walk is.
#[derive(Debug, Clone, PartialEq, Eq)]
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

/// A walk over every record matching some filters. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct SearchPlan {
    groups: Vec<Vec<Filter>>,
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
    /// records), in ascending `hs_object_id` order. `page_size` is clamped to 1–200.
    ///
    /// # Errors
    ///
    /// [`SearchPlanError::TooManyFilters`] when a group has more than 4 filters, there are more
    /// than 5 groups, or more than 18 filters in total once the plan's own are added.
    pub fn by_object_id(
        filter_groups: Vec<Vec<Filter>>,
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
    /// is at or after `since_ms`, in ascending date order, ties in no particular order. Each
    /// [`SearchHit`] must carry the date as `sort_value`. `page_size` is clamped to 1–200.
    ///
    /// # Errors
    ///
    /// As [`by_object_id`](Self::by_object_id).
    pub fn modified_since(
        date_property: impl Into<String>,
        since_ms: u64,
        filter_groups: Vec<Vec<Filter>>,
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
        mut groups: Vec<Vec<Filter>>,
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
            page_size: page_size.clamp(1, MAX_PAGE_SIZE),
            phase,
            boundary: HashSet::new(),
            yielded: 0,
            requests: 0,
        })
    }

    /// The query to send next, or `None` when the walk is complete. Calling it again without
    /// [`on_page`](Self::on_page) returns the same query (send it again after a failure).
    pub fn next_request(&self) -> Option<SearchQuery> {
        let date = self.date_property.as_deref().unwrap_or(OBJECT_ID);
        let (bounds, sort) = match self.phase {
            Phase::Done => return None,
            Phase::Ids { after_id } => (
                after_id
                    .map(|id| Filter::new(OBJECT_ID, Operator::Gt, id))
                    .into_iter()
                    .collect::<Vec<_>>(),
                OBJECT_ID,
            ),
            Phase::Range { from, inclusive } => {
                let op = if inclusive {
                    Operator::Gte
                } else {
                    Operator::Gt
                };
                (vec![Filter::new(date, op, from)], date)
            }
            Phase::Ties { at, after_id } => {
                let mut f = vec![Filter::new(date, Operator::Eq, at)];
                f.extend(after_id.map(|id| Filter::new(OBJECT_ID, Operator::Gt, id)));
                (f, OBJECT_ID)
            }
        };
        // (A OR B) AND bounds = (A AND bounds) OR (B AND bounds).
        let filter_groups = self
            .groups
            .iter()
            .map(|g| g.iter().chain(&bounds).cloned().collect())
            .collect();
        Some(SearchQuery {
            filter_groups,
            sorts: vec![Sort {
                property: sort.to_owned(),
                direction: Direction::Ascending,
            }],
            after: None,
            limit: self.page_size,
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
    /// [`SearchPlanError::MissingSortValue`] when a date walk gets a hit without a date; the
    /// plan is unchanged and the same request is due again.
    pub fn on_page(&mut self, page: &SearchPage) -> Result<Vec<u64>, SearchPlanError> {
        let more = page.next_after.is_some() && !page.results.is_empty();
        let mut out = Vec::with_capacity(page.results.len());
        match self.phase {
            Phase::Done => return Ok(out),
            Phase::Ids { after_id } => {
                let next = walk_ids(page, after_id, |_| true, &mut out);
                self.phase = match next {
                    Some(id) if more => Phase::Ids { after_id: Some(id) },
                    _ => Phase::Done,
                };
            }
            Phase::Ties { at, after_id } => {
                let boundary = &self.boundary;
                let next = walk_ids(page, after_id, |id| !boundary.contains(&id), &mut out);
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
                if let Some(hit) = page.results.iter().find(|h| h.sort_value.is_none()) {
                    return Err(SearchPlanError::MissingSortValue { id: hit.id });
                }
                let in_range = |v: u64| v > from || (inclusive && v == from);
                let dated = || {
                    page.results
                        .iter()
                        .filter_map(|h| Some((h.id, h.sort_value?)))
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
}

/// Pushes the ids of an id-sorted page above `after_id` that pass `keep`; returns the largest id
/// above `after_id`, or `None` if the page made no progress.
fn walk_ids(
    page: &SearchPage,
    after_id: Option<u64>,
    keep: impl Fn(u64) -> bool,
    out: &mut Vec<u64>,
) -> Option<u64> {
    let above = |id: u64| after_id.is_none_or(|a| id > a);
    let mut max = None;
    for hit in &page.results {
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

    use super::*;

    fn hit(id: u64, date: u64) -> SearchHit {
        SearchHit {
            id,
            sort_value: Some(date),
        }
    }

    fn page(results: Vec<SearchHit>, more: bool) -> SearchPage {
        SearchPage {
            results,
            next_after: more.then(|| "x".to_owned()),
            total: None,
        }
    }

    fn bounds(q: &SearchQuery) -> Vec<(String, &'static str, String)> {
        q.filter_groups[0]
            .iter()
            .map(|f| (f.property.clone(), f.operator.as_str(), f.value.clone()))
            .collect()
    }

    fn f(p: &str, op: &'static str, v: &str) -> (String, &'static str, String) {
        (p.to_owned(), op, v.to_owned())
    }

    #[test]
    fn by_id_walk() {
        let mut plan = SearchPlan::by_object_id(vec![], 2).unwrap();
        let q = plan.next_request().unwrap();
        assert_eq!(q.limit, 2);
        assert_eq!(q.after, None);
        assert_eq!(q.sorts[0].property, "hs_object_id");
        assert_eq!(q.sorts[0].direction, Direction::Ascending);
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
            vec![Filter::new("lifecyclestage", Operator::Eq, "lead")],
            vec![Filter::new("hs_lead_status", Operator::Neq, "NEW")],
        ];
        let mut plan = SearchPlan::modified_since("hs_lastmodifieddate", 100, groups, 500).unwrap();
        let q = plan.next_request().unwrap();
        assert_eq!(q.limit, 200);
        assert_eq!(q.filter_groups.len(), 2);
        for g in &q.filter_groups {
            assert_eq!(g.len(), 2);
            assert_eq!(g[1], Filter::new("hs_lastmodifieddate", Operator::Gte, 100));
        }
        plan.on_page(&page(vec![hit(1, 100)], true)).unwrap();
        let q = plan.next_request().unwrap();
        assert_eq!(q.sorts[0].property, "hs_object_id");
        for g in &q.filter_groups {
            assert_eq!(g.len(), 2);
        }
    }

    #[test]
    fn too_many_filters() {
        let four = || vec![Filter::new("a", Operator::Eq, 1); 4];
        let cases = [
            (vec![], true),
            (vec![four()], true),
            (vec![vec![Filter::new("a", Operator::Eq, 1); 5]], false),
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
        let p = "hs_lastmodifieddate";
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
        assert_eq!(
            plan.next_request().unwrap().sorts[0].property,
            "hs_object_id"
        );
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
        let bad = page(
            vec![SearchHit {
                id: 9,
                sort_value: None,
            }],
            false,
        );
        let err = plan.on_page(&bad).unwrap_err();
        assert_eq!(err, SearchPlanError::MissingSortValue { id: 9 });
        assert_eq!(err.code(), "missing_sort_value");
        assert_eq!(plan.next_request(), before);
    }

    #[test]
    fn date_walk_empty() {
        let mut plan = SearchPlan::modified_since("d", 0, vec![], 10).unwrap();
        assert_eq!(plan.on_page(&SearchPage::default()).unwrap(), [0u64; 0]);
        assert!(plan.is_done());
    }

    /// An in-memory search engine with HubSpot's semantics (HUBSPOT.md §4.4) over records with
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

        fn matches(filter: &Filter, id: u64, d: u64) -> bool {
            let value: u64 = filter.value.parse().expect("numeric filter value");
            let x = match filter.property.as_str() {
                OBJECT_ID => id,
                "d" => d,
                other => panic!("unknown property {other}"),
            };
            match filter.operator {
                Operator::Eq => x == value,
                Operator::Neq => x != value,
                Operator::Lt => x < value,
                Operator::Lte => x <= value,
                Operator::Gt => x > value,
                Operator::Gte => x >= value,
            }
        }

        /// The lower bound a filter puts on `property`, for index seeks.
        fn lower(group: &[Filter], property: &str) -> u64 {
            group
                .iter()
                .filter(|f| f.property == property)
                .filter_map(|f| {
                    let v: u64 = f.value.parse().ok()?;
                    match f.operator {
                        Operator::Eq | Operator::Gte => Some(v),
                        Operator::Gt => Some(v.saturating_add(1)),
                        _ => None,
                    }
                })
                .max()
                .unwrap_or(0)
        }

        pub(super) fn search(&mut self, q: &SearchQuery) -> Result<SearchPage, String> {
            self.queries += 1;
            if q.limit == 0 || q.limit > MAX_PAGE_SIZE {
                return Err(format!("limit {} out of range", q.limit));
            }
            if q.sorts.len() != 1 || q.sorts[0].direction != Direction::Ascending {
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
            if offset + u64::from(q.limit) > u64::from(MAX_RESULTS_PER_QUERY) {
                return Err("400: cannot page beyond 10,000 results".into());
            }
            let want = usize::try_from(offset).unwrap() + q.limit as usize + 1;
            let group_match = |id, d| {
                q.filter_groups.is_empty()
                    || q.filter_groups
                        .iter()
                        .any(|g| g.iter().all(|f| Self::matches(f, id, d)))
            };
            let single = (q.filter_groups.len() == 1).then(|| &q.filter_groups[0]);
            // Candidates in sort order, starting at an index seek when there is one group.
            let hits: Vec<SearchHit> = match q.sorts[0].property.as_str() {
                "d" => {
                    let lo = single.map_or(0, |g| Self::lower(g, "d"));
                    let start = self.by_date.partition_point(|&(d, _, _)| d < lo);
                    self.by_date[start..]
                        .iter()
                        .filter(|&&(d, _, id)| group_match(id, d))
                        .take(want)
                        .map(|&(d, _, id)| hit(id, d))
                        .collect()
                }
                OBJECT_ID => {
                    let eq_date = single.and_then(|g| {
                        g.iter()
                            .find(|f| f.property == "d" && f.operator == Operator::Eq)
                            .map(|f| f.value.parse::<u64>().unwrap())
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
                                .map(|&(d, id)| hit(id, d))
                                .collect()
                        }
                        None => {
                            let start = self.by_id.partition_point(|&(id, _)| id < lo);
                            self.by_id[start..]
                                .iter()
                                .filter(|&&(id, d)| group_match(id, d))
                                .take(want)
                                .map(|&(id, d)| hit(id, d))
                                .collect()
                        }
                    }
                }
                other => return Err(format!("cannot sort by {other}")),
            };
            let offset = usize::try_from(offset).unwrap();
            let end = (offset + q.limit as usize).min(hits.len());
            let results = hits.get(offset..end).unwrap_or_default().to_vec();
            let next_after = (hits.len() > end).then(|| end.to_string());
            Ok(SearchPage {
                results,
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
        let pages: Vec<SearchPage> = records
            .chunks(200)
            .map(|c| SearchPage {
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
