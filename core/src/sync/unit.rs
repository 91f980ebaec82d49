//! Work units: the reads one consumer invocation makes, as a serialisable state machine.
//!
//! A unit says which HubSpot read comes next ([`Unit::next_read`]), takes the page that answered
//! it ([`Unit::on_page`]) and returns the records to decide ([`Step`]). Its state is small (an
//! id range and a position, or a [`SearchPlan`] holding at most one page of ids): it travels in a
//! queue message (128 KB) and is stored by the run's Durable Object.
//!
//! Advance a unit only once the step's deliveries are settled: clone it, feed the page to the
//! clone, deliver and commit, then keep the clone. A unit interrupted in between is re-run from
//! its previous state: the same page is read again, what was committed is now unchanged, and
//! what was delivered but not committed goes out again under the same `webhook-id`.

use serde::{Deserialize, Serialize};

use super::config::MERGED_IDS_PROPERTY;
use super::SyncError;
use crate::api::{FilterOp, ListOptions, Page, SearchFilter, SearchRequest, SimpleObject};
use crate::api::{MAX_BATCH_INPUTS, MAX_LIST_LIMIT, MAX_SEARCH_LIMIT};
use crate::search::{SearchPlan, OBJECT_ID};

/// Which budget a range unit reads with (docs/sync.md, "Read path").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// `POST …/search`, `hs_object_id` in the range, sorted by id, 200 per page: the search
    /// budget (5/s, docs/hubspot.md §4.4). Documented behaviour only.
    Search,
    /// `GET …/{type}?after=…`, 100 per page: the burst budget (docs/hubspot.md §4.1, §5.1). The
    /// first page of a range starts at `after = lo − 1`: the contacts guide says `after` is "the
    /// Record ID of the next contact", the spec calls it an opaque token (unconfirmed). Every
    /// page is checked (ids ascending, none below the range); a page that is not, or a refused
    /// `after`, switches the unit to [`Path::Search`] for the rest of its range.
    List,
}

/// One unit of a run: its state between invocations (see [`Unit::next_read`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// Read through a flat struct (crate::wire): no buffering `ContentDeserializer`.
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    try_from = "crate::wire::UnitWire"
)]
pub enum Unit {
    /// Every live record with an id in `[lo, hi)` (full runs).
    Range(RangeUnit),
    /// Every record modified since the cursor, up to the run's horizon (incremental runs).
    Modified(ModifiedUnit),
    /// The archived records (the recycling bin), archived at or after `since` when set.
    Archived(ArchivedUnit),
    /// Re-read the reconcile's missing candidates: those HubSpot no longer returns are deleted.
    Verify(VerifyUnit),
}

/// A full run's id range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeUnit {
    /// First id of the range.
    pub lo: u64,
    /// First id after the range.
    pub hi: u64,
    /// Every id below this has been read.
    pub pos: u64,
    /// The budget it reads with.
    pub path: Path,
    /// List path: HubSpot's `paging.next.after` of the last page; `None` before the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_after: Option<String>,
    /// The range is read.
    pub done: bool,
    /// Records read so far: with `pos − lo`, the range's density, to judge what is left.
    #[serde(default)]
    pub read: u64,
    /// Outside the id span the run found (below the smallest id, above the largest): never
    /// split, since its density says nothing about its width.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open: bool,
}

/// An incremental run's walk by last-modified date with id tie-break ([`SearchPlan`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifiedUnit {
    /// The walk.
    pub plan: SearchPlan,
}

/// A walk over the archived records (list with `archived=true`, docs/hubspot.md §4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedUnit {
    /// Only records archived at or after this (Unix ms); all when `None`.
    pub since_ms: Option<u64>,
    /// The next page's `after`; `None` before the first page.
    pub after: Option<String>,
    /// Read.
    pub done: bool,
}

/// The reconcile's missing candidates still to re-read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyUnit {
    /// Ids, ascending.
    pub ids: Vec<u64>,
}

/// The read a unit asks for. Build it with [`crate::api::ApiConfig`]: `search`, `list_objects`
/// or `batch_read` (with [`BatchReadOptions::properties`](crate::api::BatchReadOptions) =
/// `properties`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A search page (search budget).
    Search(SearchRequest),
    /// A list page (burst budget).
    List(ListOptions),
    /// A batch read of these ids (at most 100; burst budget). Feed the answer's results back as
    /// a [`Page`] without `next_after`. HubSpot answers 207 when some ids are not found
    /// (docs/hubspot.md §4.1): that is an answer, its `results` are the ids still there.
    BatchRead {
        /// The ids.
        ids: Vec<String>,
        /// The properties to read.
        properties: Vec<String>,
    },
}

impl Read {
    /// The HubSpot budget the read draws on ([`crate::ratelimit::Governor::acquire`]): search
    /// for a search, the burst window for a list page or a batch read (docs/hubspot.md §5.1).
    pub fn budget(&self) -> crate::ratelimit::Budget {
        match self {
            Self::Search(_) => crate::ratelimit::Budget::Search,
            Self::List(_) | Self::BatchRead { .. } => crate::ratelimit::Budget::General,
        }
    }
}

/// An id interval `[from, to)` a range unit has read completely: the reconcile compares the ids
/// read in it with the store's ([`super::missing_in_window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdWindow {
    /// First id.
    pub from: u64,
    /// First id after.
    pub to: u64,
}

/// What one page gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Step {
    /// Live records to decide, each once, ascending by id on range walks.
    pub live: Vec<SimpleObject>,
    /// Archived records (`archivedAt` set): deletions to decide.
    pub archived: Vec<SimpleObject>,
    /// Verify: ids HubSpot no longer returns.
    pub gone: Vec<String>,
    /// Range walks (full runs only): the interval this page covered completely, and the ids
    /// read in it, ascending: give it to the reconcile's merge-join
    /// ([`super::missing_in_window`]) with the store's live ids in the interval.
    pub window: Option<(IdWindow, Vec<u64>)>,
    /// The list path was given up for search on this page.
    pub fell_back: bool,
    /// The live records' associations, by record id, once read ([`super::AssocPlan::finish`];
    /// empty when none are configured).
    pub associations: std::collections::BTreeMap<String, super::Associations>,
}

impl Step {
    /// The same step restricted to the records and ids in `ids` (to decide again after a
    /// commit conflict). No window.
    pub fn only(&self, ids: &[String]) -> Self {
        let keep = |o: &SimpleObject| ids.contains(&o.id);
        Self {
            live: self.live.iter().filter(|o| keep(o)).cloned().collect(),
            archived: self.archived.iter().filter(|o| keep(o)).cloned().collect(),
            gone: self
                .gone
                .iter()
                .filter(|id| ids.contains(id))
                .cloned()
                .collect(),
            window: None,
            fell_back: false,
            associations: self
                .associations
                .iter()
                .filter(|(id, _)| ids.contains(id))
                .map(|(id, a)| (id.clone(), a.clone()))
                .collect(),
        }
    }
}

fn filter(property: &str, op: FilterOp) -> SearchFilter {
    SearchFilter {
        property: property.to_owned(),
        op,
    }
}

fn parse_id(o: &SimpleObject) -> Result<u64, SyncError> {
    o.id.parse()
        .map_err(|_| SyncError::NonNumericId { id: o.id.clone() })
}

impl RangeUnit {
    /// A range read with `path`, nothing read yet.
    pub fn new(lo: u64, hi: u64, path: Path) -> Self {
        Self {
            lo,
            hi,
            pos: lo,
            path,
            list_after: None,
            done: lo >= hi,
            read: 0,
            open: false,
        }
    }

    /// Records per page on this range's path.
    fn page_size(&self) -> u64 {
        u64::from(match self.path {
            Path::Search => MAX_SEARCH_LIMIT,
            Path::List => MAX_LIST_LIMIT,
        })
    }

    /// The one-page id walk of the rest of the range (`hs_object_id` in `[pos, hi)`).
    fn search_plan(&self) -> Result<SearchPlan, SyncError> {
        let group = vec![
            filter(OBJECT_ID, FilterOp::Gte(self.pos.to_string())),
            filter(OBJECT_ID, FilterOp::Lt(self.hi.to_string())),
        ];
        Ok(SearchPlan::by_object_id(vec![group], MAX_SEARCH_LIMIT)?)
    }

    /// Splits off the upper half of the rest of the range when it is at least `2 × min_span`
    /// ids wide and, at the density read so far, still holds at least two invocations' worth of
    /// records (`2 × pages × page size`): `self` keeps `[pos, mid)`, the new unit (same path)
    /// takes `[mid, hi)`. Every split costs one partly filled page, so a range that one more
    /// invocation finishes is not split.
    pub fn split(&mut self, min_span: u64, pages: u32) -> Option<RangeUnit> {
        let span = self.hi.saturating_sub(self.pos);
        if self.done || self.open || span < min_span.max(1).saturating_mul(2) {
            return None;
        }
        let covered = self.pos.saturating_sub(self.lo);
        if covered > 0 {
            // Records left at the density read so far, in u128: ids go up to u64::MAX.
            let left = u128::from(self.read) * u128::from(span) / u128::from(covered);
            let worth = u128::from(self.page_size()) * u128::from(pages.max(1)) * 2;
            if left < worth {
                return None;
            }
        }
        let mid = self.pos + span / 2;
        let upper = RangeUnit::new(mid, self.hi, self.path);
        self.hi = mid;
        Some(upper)
    }

    fn fall_back(&mut self) {
        self.path = Path::Search;
        self.list_after = None;
    }

    fn on_page(&mut self, page: &Page) -> Result<Step, SyncError> {
        let from = self.pos;
        let mut ids = Vec::with_capacity(page.results.len());
        let mut live = Vec::with_capacity(page.results.len());
        match self.path {
            Path::Search => {
                let mut plan = self.search_plan()?;
                let yielded = plan.on_page(page)?;
                let mut wanted = yielded.into_iter().filter(|&id| id >= from && id < self.hi);
                let mut next = wanted.next();
                for o in &page.results {
                    if next == Some(parse_id(o)?) {
                        ids.extend(next);
                        live.push(o.clone());
                        next = wanted.next();
                    }
                }
                match ids.last() {
                    Some(&last) if !plan.is_done() => self.pos = last + 1,
                    _ => self.done = true,
                }
            }
            Path::List => {
                // The first page of a range that does not start the list came from our own
                // `after = pos − 1`; later ones from HubSpot's `paging.next.after`.
                let synthetic = self.list_after.is_none() && self.pos > 0;
                let mut page_ids = Vec::with_capacity(page.results.len());
                for o in &page.results {
                    page_ids.push(parse_id(o)?);
                }
                // An inclusive reading of `pos − 1` returns that record first: not ours.
                let skip = usize::from(synthetic && page_ids.first() == Some(&(self.pos - 1)));
                if !list_page_is_ids(
                    &page_ids[skip..],
                    from,
                    page.next_after.as_deref(),
                    synthetic,
                ) {
                    // `after` is not an id here: nothing of this page is used, and the rest of
                    // the range, from the same position, is read by search.
                    self.fall_back();
                    return Ok(Step {
                        fell_back: true,
                        ..Step::default()
                    });
                }
                let mut beyond = false;
                for (o, &id) in page.results.iter().zip(&page_ids).skip(skip) {
                    if id >= self.hi {
                        beyond = true;
                        break;
                    }
                    ids.push(id);
                    live.push(o.clone());
                }
                match (&page.next_after, ids.last()) {
                    (Some(next), Some(&last)) if !beyond => {
                        self.pos = last + 1;
                        self.list_after = Some(next.clone());
                    }
                    (Some(next), None) if !beyond => {
                        // Only the `pos − 1` record: continue after it.
                        self.list_after = Some(next.clone());
                    }
                    _ => self.done = true,
                }
            }
        }
        self.read += ids.len() as u64;
        let to = if self.done { self.hi } else { self.pos };
        Ok(Step {
            live,
            window: Some((IdWindow { from, to }, ids)),
            ..Step::default()
        })
    }
}

impl Unit {
    /// Whether the unit has nothing left to read.
    pub fn is_done(&self) -> bool {
        match self {
            Self::Range(r) => r.done,
            Self::Modified(m) => m.plan.is_done(),
            Self::Archived(a) => a.done,
            Self::Verify(v) => v.ids.is_empty(),
        }
    }

    /// The budget the unit's reads draw on ([`Read::budget`] of its next read): search for a
    /// range read by search and for the modified walk, the burst window for the others. The
    /// Worker queues the two kinds apart (docs/sync.md, "Work units"), so that units paced by
    /// the search budget (5 per second) never hold back units paced by the burst window.
    /// A list range that switches to search mid-way (a refused `after`) reads by search from
    /// then on, and its next message goes to the search queue.
    pub fn budget(&self) -> crate::ratelimit::Budget {
        match self {
            Self::Range(RangeUnit {
                path: Path::Search, ..
            })
            | Self::Modified(_) => crate::ratelimit::Budget::Search,
            Self::Range(_) | Self::Archived(_) | Self::Verify(_) => {
                crate::ratelimit::Budget::General
            }
        }
    }

    /// The read to make next, `None` when done. `properties` are what every read of records
    /// asks for ([`super::SyncConfig::read_properties`]). Calling it again without
    /// [`on_page`](Self::on_page) gives the same read (send it again after a failure).
    ///
    /// # Errors
    /// [`SyncError::Search`] only if a range's search cannot be planned (it always can).
    pub fn next_read(&self, properties: &[String]) -> Result<Option<Read>, SyncError> {
        if self.is_done() {
            return Ok(None);
        }
        Ok(Some(match self {
            Self::Range(r) => match r.path {
                Path::Search => {
                    let mut q = r
                        .search_plan()?
                        .next_request()
                        .ok_or(SyncError::Internal("range walk without a request"))?;
                    q.properties = merge(&q.properties, properties);
                    Read::Search(q)
                }
                Path::List => Read::List(ListOptions {
                    limit: Some(MAX_LIST_LIMIT),
                    after: r
                        .list_after
                        .clone()
                        .or_else(|| (r.pos > 0).then(|| (r.pos - 1).to_string())),
                    properties: properties.to_vec(),
                    archived: false,
                }),
            },
            Self::Modified(m) => {
                let mut q = m
                    .plan
                    .next_request()
                    .ok_or(SyncError::Internal("walk without a request"))?;
                q.properties = merge(&q.properties, properties);
                Read::Search(q)
            }
            // The id, `archivedAt`, and the ids merged into it (gone with it): no mapped values.
            Self::Archived(a) => Read::List(ListOptions {
                limit: Some(MAX_LIST_LIMIT),
                after: a.after.clone(),
                properties: vec![OBJECT_ID.to_owned(), MERGED_IDS_PROPERTY.to_owned()],
                archived: true,
            }),
            Self::Verify(v) => Read::BatchRead {
                ids: v
                    .ids
                    .iter()
                    .take(MAX_BATCH_INPUTS)
                    .map(u64::to_string)
                    .collect(),
                properties: properties.to_vec(),
            },
        }))
    }

    /// Feeds back the page answering [`next_read`](Self::next_read): the records to decide.
    ///
    /// # Errors
    /// [`SyncError::NonNumericId`] or [`SyncError::Search`] when the page is not an answer to
    /// the read; the unit is unchanged and the same read is due again.
    pub fn on_page(&mut self, page: &Page) -> Result<Step, SyncError> {
        let mut next = self.clone();
        let step = match &mut next {
            Self::Range(r) => r.on_page(page)?,
            Self::Modified(m) => {
                let ids = m.plan.on_page(page)?;
                let mut live = Vec::with_capacity(ids.len());
                for o in &page.results {
                    if ids.contains(&parse_id(o)?) {
                        live.push(o.clone());
                    }
                }
                Step {
                    live,
                    ..Step::default()
                }
            }
            Self::Archived(a) => {
                let since = a.since_ms;
                let archived = page
                    .results
                    .iter()
                    .filter(|o| match (since, o.archived_at.as_deref()) {
                        (None, _) => true,
                        // Unreadable or absent `archivedAt`: keep it (a store lookup decides).
                        (Some(since), Some(at)) => date_ms(at).is_none_or(|ms| ms >= since),
                        (Some(_), None) => true,
                    })
                    .cloned()
                    .collect();
                a.after.clone_from(&page.next_after);
                a.done = page.next_after.is_none() || page.results.is_empty();
                Step {
                    archived,
                    ..Step::default()
                }
            }
            Self::Verify(v) => {
                let asked: Vec<u64> = v.ids.iter().take(MAX_BATCH_INPUTS).copied().collect();
                v.ids.drain(..asked.len());
                let mut live = Vec::new();
                let mut returned = Vec::new();
                for o in &page.results {
                    returned.push(parse_id(o)?);
                    live.push(o.clone());
                }
                let gone = asked
                    .into_iter()
                    .filter(|id| !returned.contains(id))
                    .map(|id| id.to_string())
                    .collect();
                Step {
                    live,
                    gone,
                    ..Step::default()
                }
            }
        };
        *self = next;
        Ok(step)
    }

    /// The read was refused by HubSpot as invalid (a 400 `VALIDATION_ERROR`). A list range that
    /// started from a synthetic `after` switches to search and returns `true`: read again.
    /// `false` otherwise: the failure is the read's (dead-letter the unit with the error's
    /// code).
    pub fn on_refused(&mut self) -> bool {
        match self {
            Self::Range(r) if r.path == Path::List => {
                r.fall_back();
                true
            }
            _ => false,
        }
    }
}

/// Whether a list page reads as HubSpot's contacts guide describes `after` ("the Record ID of
/// the next contact"): ids strictly ascending from `from`, and a next cursor that is an id at
/// or past the page's last (an offset or an opaque token is not). A page answering our own
/// `after` must carry a cursor to be trusted: without one, a skip past the range's records (an
/// offset read as an id) would look like the end of the list.
fn list_page_is_ids(ids: &[u64], from: u64, next: Option<&str>, synthetic: bool) -> bool {
    let ordered = ids.windows(2).all(|w| w[0] < w[1]) && ids.first().is_none_or(|&f| f >= from);
    let cursor = match (next, ids.last()) {
        (Some(n), Some(&last)) => n.parse::<u64>().is_ok_and(|n| n >= last),
        (Some(_), None) => false,
        (None, _) => !synthetic,
    };
    ordered && cursor
}

/// `a`, then the items of `b` not in `a`.
fn merge(a: &[String], b: &[String]) -> Vec<String> {
    let mut out = a.to_vec();
    for p in b {
        if !out.contains(p) {
            out.push(p.clone());
        }
    }
    out
}

/// Unix ms of an ISO 8601 datetime or of digits.
pub(crate) fn date_ms(text: &str) -> Option<u64> {
    text.parse().ok().or_else(|| {
        crate::mapping::calendar::parse_datetime(text)
            .ok()
            .and_then(|ms| u64::try_from(ms).ok())
    })
}
