//! A whole outbound sync, in memory: a fake HubSpot (search with HubSpot's semantics and its
//! 10,000 cap, list live and archived with `after`, batch read, merges, archives, restores), a
//! fake record store with the real compare-and-set ([`crate::records::apply`]) and a fake
//! destination that dedupes on `webhook-id`, driven through runs, units and batches exactly as
//! the Worker drives them.

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use super::*;
use crate::api::{FilterOp, Page, SearchRequest, SimpleObject, SortDirection};
use crate::id::PortalId;
use crate::mapping::{Mapping, ObjectMap, Record};
use crate::records::{apply, Commit, CommitOutcome, Stored, Write};
use crate::time::iso8601_ms;

const MAP: &str = r#"{"objects":{"contacts":{"fields":[
    {"hubspot":"email","type":"email"},
    {"hubspot":"firstname","field":"first_name"},
    {"hubspot":"score","type":"number"}]}}}"#;
const DATE: &str = "lastmodifieddate";
const MAX_RESULTS: usize = 10_000;

#[derive(Debug, Clone)]
struct Rec {
    props: BTreeMap<String, String>,
    modified: u64,
    merged: Vec<u64>,
}

/// HubSpot, in memory (docs/hubspot.md §4).
#[derive(Default)]
struct FakeHubSpot {
    now: u64,
    live: BTreeMap<u64, Rec>,
    archived: BTreeMap<u64, (Rec, u64)>,
    /// List cursors are opaque tokens and a numeric `after` is refused (HubSpot's spec calls
    /// `after` an opaque token).
    opaque_list_cursors: bool,
    /// A numeric `after` returns the records after that id (exclusive), not from it.
    exclusive_list_after: bool,
    /// `after` is an offset into the list (the spec's opaque token read another way): numeric,
    /// accepted, and wrong as an id.
    offset_list_after: bool,
    searches: u64,
    lists: u64,
    batch_reads: u64,
    /// The companies each contact is associated with (associations v4; changing them does not
    /// move the contact's last-modified date).
    companies: BTreeMap<u64, BTreeSet<u64>>,
    /// Associated ids per input per batch-read answer (HubSpot's is 500; small here so that
    /// `paging` is exercised). 0: 500.
    assoc_page: usize,
    assoc_reads: u64,
}

fn props(email: &str, name: &str, score: u32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("email".to_owned(), email.to_owned()),
        ("firstname".to_owned(), name.to_owned()),
        ("score".to_owned(), score.to_string()),
    ])
}

impl FakeHubSpot {
    /// A second between two changes.
    fn tick(&mut self) -> u64 {
        self.now += 1_000;
        self.now
    }

    fn create(&mut self, id: u64, p: BTreeMap<String, String>) {
        let modified = self.tick();
        self.live.insert(
            id,
            Rec {
                props: p,
                modified,
                merged: Vec::new(),
            },
        );
    }

    fn update(&mut self, id: u64, key: &str, value: &str) {
        let at = self.tick();
        let r = self.live.get_mut(&id).expect("live");
        r.props.insert(key.to_owned(), value.to_owned());
        r.modified = at;
    }

    /// A bulk update: every record stamped with one last-modified date (docs/hubspot.md §4.4).
    fn bulk_update(&mut self, ids: &[u64], key: &str, value: &str) {
        let at = self.tick();
        for id in ids {
            let r = self.live.get_mut(id).expect("live");
            r.props.insert(key.to_owned(), value.to_owned());
            r.modified = at;
        }
    }

    fn archive(&mut self, id: u64) {
        let at = self.tick();
        let r = self.live.remove(&id).expect("live");
        self.archived.insert(id, (r, at));
    }

    fn restore(&mut self, id: u64) {
        let at = self.tick();
        let (mut r, _) = self.archived.remove(&id).expect("archived");
        r.modified = at;
        self.live.insert(id, r);
    }

    /// `loser` merged into `survivor`: the survivor keeps its values, fills its empty ones from
    /// the loser, lists the loser in `hs_merged_object_ids`; the loser is gone (not archived).
    fn merge(&mut self, survivor: u64, loser: u64) {
        let at = self.tick();
        let l = self.live.remove(&loser).expect("loser live");
        let s = self.live.get_mut(&survivor).expect("survivor live");
        for (k, v) in l.props {
            s.props.entry(k).or_insert(v);
        }
        s.merged.push(loser);
        s.merged.extend(l.merged);
        s.modified = at;
    }

    /// Gone without a trace (a privacy deletion, or the recycling bin emptied).
    fn erase(&mut self, id: u64) {
        self.live.remove(&id);
        self.archived.remove(&id);
        self.companies.remove(&id);
    }

    /// Associates contact `id` with `company` (the contact's date does not move).
    fn associate(&mut self, id: u64, company: u64) {
        self.companies.entry(id).or_default().insert(company);
    }

    /// `POST /crm/v4/associations/contacts/companies/batch/read` (docs/hubspot.md §4.3): live
    /// contacts with companies get a result (a page of them, `paging.next.after` when more
    /// follow, `after` read as the first id of the next page); the others an error (207).
    fn assoc_read(
        &mut self,
        read: &AssocRead,
    ) -> crate::api::BatchResponse<crate::api::AssociationResult> {
        self.now += 200;
        self.assoc_reads += 1;
        assert!(read.inputs.len() <= 1_000);
        assert_eq!(read.to_type, "companies");
        let page = if self.assoc_page == 0 {
            500
        } else {
            self.assoc_page
        };
        let mut results = Vec::new();
        let mut errors = Vec::new();
        for (id, after) in &read.inputs {
            let n: u64 = id.parse().expect("id");
            let from: u64 = after.as_deref().map_or(0, |a| a.parse().expect("after"));
            let all: Vec<u64> = match (self.live.contains_key(&n), self.companies.get(&n)) {
                (true, Some(c)) => c.range(from..).copied().collect(),
                _ => Vec::new(),
            };
            if all.is_empty() {
                errors.push(
                    serde_json::json!({"status": "error", "category": "OBJECT_NOT_FOUND",
                    "message": "no companies", "context": {"fromObjectId": [id]}}),
                );
                continue;
            }
            let to: Vec<serde_json::Value> = all
                .iter()
                .take(page)
                .map(|c| serde_json::json!({"toObjectId": c, "associationTypes": []}))
                .collect();
            let mut r = serde_json::json!({"from": {"id": id}, "to": to});
            if let Some(next) = all.get(page) {
                r["paging"] = serde_json::json!({"next": {"after": next.to_string()}});
            }
            results.push(r);
        }
        serde_json::from_value(serde_json::json!({
            "status": "COMPLETE", "results": results, "errors": errors
        }))
        .expect("answer")
    }

    /// What the destination must hold of the associations: every live contact's companies.
    fn associations(&self) -> BTreeMap<String, Associations> {
        self.live
            .keys()
            .map(|id| {
                let ids = self
                    .companies
                    .get(id)
                    .map(|c| c.iter().map(u64::to_string).collect())
                    .unwrap_or_default();
                (
                    id.to_string(),
                    Associations::from([("companies".to_owned(), ids)]),
                )
            })
            .collect()
    }

    fn object(id: u64, r: &Rec, want: &[String], archived_at: Option<u64>) -> SimpleObject {
        let mut properties = BTreeMap::new();
        for p in want {
            let value = match p.as_str() {
                "hs_object_id" => Some(id.to_string()),
                DATE => Some(iso8601_ms(r.modified)),
                MERGED_IDS_PROPERTY if !r.merged.is_empty() => Some(
                    r.merged
                        .iter()
                        .map(u64::to_string)
                        .collect::<Vec<_>>()
                        .join(";"),
                ),
                other => r.props.get(other).cloned(),
            };
            if let Some(v) = value {
                properties.insert(p.clone(), Some(v));
            }
        }
        SimpleObject {
            id: id.to_string(),
            properties,
            properties_with_history: BTreeMap::new(),
            created_at: None,
            updated_at: Some(iso8601_ms(r.modified)),
            archived: archived_at.is_some(),
            archived_at: archived_at.map(iso8601_ms),
            object_write_trace_id: None,
            new: None,
        }
    }

    fn matches(f: &crate::api::SearchFilter, id: u64, r: &Rec) -> bool {
        let x = match f.property.as_str() {
            "hs_object_id" => id,
            DATE => r.modified,
            other => panic!("unexpected filter on {other}"),
        };
        let v = |s: &String| s.parse::<u64>().expect("numeric filter");
        match &f.op {
            FilterOp::Eq(s) => x == v(s),
            FilterOp::Gt(s) => x > v(s),
            FilterOp::Gte(s) => x >= v(s),
            FilterOp::Lt(s) => x < v(s),
            FilterOp::Lte(s) => x <= v(s),
            other => panic!("unexpected operator {other:?}"),
        }
    }

    fn search(&mut self, q: &SearchRequest) -> Result<Page, String> {
        self.searches += 1;
        let limit = q.limit.unwrap_or(10) as usize;
        assert!((1..=200).contains(&limit), "limit {limit}");
        assert!(q.filter_groups.len() <= 5);
        assert!(q.filter_groups.iter().all(|g| g.len() <= 6));
        let offset: usize = q.after.as_deref().map_or(0, |a| a.parse().expect("int"));
        if offset + limit > MAX_RESULTS {
            return Err("400: cannot page beyond 10,000 results".into());
        }
        let mut hits: Vec<(u64, &Rec)> = self
            .live
            .iter()
            .filter(|(&id, r)| {
                q.filter_groups.is_empty()
                    || q.filter_groups
                        .iter()
                        .any(|g| g.iter().all(|f| Self::matches(f, id, r)))
            })
            .map(|(&id, r)| (id, r))
            .collect();
        let sort = q.sort.as_ref().expect("one sort");
        // Records sharing a date come out in an order unrelated to their ids.
        let scramble = |id: u64| id.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17);
        match sort.property.as_str() {
            "hs_object_id" => hits.sort_by_key(|&(id, _)| id),
            DATE => hits.sort_by_key(|&(id, r)| (r.modified, scramble(id))),
            other => panic!("sort by {other}"),
        }
        if sort.direction == SortDirection::Descending {
            hits.reverse();
        }
        let end = (offset + limit).min(hits.len());
        let results = hits
            .get(offset..end)
            .unwrap_or_default()
            .iter()
            .map(|&(id, r)| Self::object(id, r, &q.properties, None))
            .collect();
        Ok(Page {
            results,
            next_after: (hits.len() > end).then(|| end.to_string()),
            total: Some(hits.len() as u64),
        })
    }

    fn list(&mut self, o: &crate::api::ListOptions) -> Result<Page, String> {
        self.lists += 1;
        let limit = o.limit.unwrap_or(10).min(100) as usize;
        let from = match &o.after {
            None => 0,
            Some(a) if self.opaque_list_cursors => match a.strip_prefix('c') {
                Some(n) => n.parse().map_err(|_| "400: bad after")?,
                None => return Err("400: VALIDATION_ERROR after".into()),
            },
            // The contacts guide: `after` is the id of the next record (inclusive).
            Some(a) => {
                let n: u64 = a.parse().map_err(|_| "400: bad after")?;
                n + u64::from(self.exclusive_list_after)
            }
        };
        let cursor = |id: u64| {
            if self.opaque_list_cursors {
                format!("c{id}")
            } else if self.exclusive_list_after {
                (id - 1).to_string()
            } else {
                id.to_string()
            }
        };
        if self.offset_list_after && !o.archived {
            let offset: usize = o
                .after
                .as_deref()
                .map_or(Ok(0), str::parse)
                .map_err(|_| "400")?;
            let all: Vec<(u64, &Rec)> = self.live.iter().map(|(&id, r)| (id, r)).collect();
            let end = (offset + limit).min(all.len());
            return Ok(Page {
                results: all
                    .get(offset..end)
                    .unwrap_or_default()
                    .iter()
                    .map(|&(id, r)| Self::object(id, r, &o.properties, None))
                    .collect(),
                next_after: (all.len() > end).then(|| end.to_string()),
                total: None,
            });
        }
        let (results, next): (Vec<SimpleObject>, Option<u64>) = if o.archived {
            let mut it = self.archived.range(from..);
            let page: Vec<_> = it
                .by_ref()
                .take(limit)
                .map(|(&id, (r, at))| Self::object(id, r, &o.properties, Some(*at)))
                .collect();
            (page, it.next().map(|(&id, _)| id))
        } else {
            let mut it = self.live.range(from..);
            let page: Vec<_> = it
                .by_ref()
                .take(limit)
                .map(|(&id, r)| Self::object(id, r, &o.properties, None))
                .collect();
            (page, it.next().map(|(&id, _)| id))
        };
        Ok(Page {
            results,
            next_after: next.map(cursor),
            total: None,
        })
    }

    fn batch_read(&mut self, ids: &[String], properties: &[String]) -> Page {
        self.batch_reads += 1;
        assert!(ids.len() <= 100);
        let results = ids
            .iter()
            .filter_map(|id| {
                let n: u64 = id.parse().ok()?;
                self.live
                    .get(&n)
                    .map(|r| Self::object(n, r, properties, None))
            })
            .collect();
        Page {
            results,
            next_after: None,
            total: None,
        }
    }

    /// Every call takes 200 ms: a run lasts long enough for changes made during it to fall
    /// between its start and its end.
    fn perform(&mut self, read: &Read) -> Result<Page, String> {
        self.now += 200;
        match read {
            Read::Search(q) => self.search(q),
            Read::List(o) => self.list(o),
            Read::BatchRead { ids, properties } => Ok(self.batch_read(ids, properties)),
        }
    }

    /// Every live record, mapped: what the destination must hold.
    fn mapped(&self, map: &ObjectMap) -> BTreeMap<String, Record> {
        self.live
            .iter()
            .map(|(&id, r)| {
                let p = r
                    .props
                    .iter()
                    .map(|(k, v)| (k.clone(), Some(v.clone())))
                    .collect();
                (id.to_string(), map.to_destination(&p).expect("maps"))
            })
            .collect()
    }
}

/// The record store (a Durable Object in the Worker): the real compare-and-set.
#[derive(Default)]
struct FakeStore {
    objects: BTreeMap<u64, Stored>,
}

impl FakeStore {
    fn get(&self, ids: &[String]) -> HashMap<String, Stored> {
        ids.iter()
            .filter_map(|id| {
                let s = self.objects.get(&id.parse().ok()?)?;
                Some((id.clone(), s.clone()))
            })
            .collect()
    }

    fn commit(&mut self, commits: &[Commit]) -> Vec<(String, CommitOutcome)> {
        commits
            .iter()
            .map(|c| {
                let key: u64 = c.id.parse().expect("numeric");
                let current = self
                    .objects
                    .get(&key)
                    .cloned()
                    .unwrap_or_else(Stored::absent);
                let (next, outcome) = apply(&current, c);
                if let Some(next) = next {
                    self.objects.insert(key, next);
                }
                (c.id.clone(), outcome)
            })
            .collect()
    }

    fn live_ids(&self, from: u64, to: u64) -> Vec<u64> {
        self.objects
            .range(from..to)
            .filter(|(_, s)| s.snapshot.is_some())
            .map(|(&id, _)| id)
            .collect()
    }
}

/// `schema/sync-batch.v1.json`, compiled once.
#[cfg(not(target_arch = "wasm32"))]
fn schema() -> &'static jsonschema::Validator {
    static SCHEMA: std::sync::OnceLock<jsonschema::Validator> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        let text = include_str!("../../../schema/sync-batch.v1.json");
        let value: serde_json::Value = serde_json::from_str(text).expect("schema is JSON");
        jsonschema::validator_for(&value).expect("schema compiles")
    })
}

/// The user's system: applies batches, dedupes on `webhook-id`.
#[derive(Default)]
struct FakeDestination {
    records: BTreeMap<String, Record>,
    /// The associations delivered with the records.
    associations: BTreeMap<String, Associations>,
    seen: HashSet<String>,
    duplicates: u64,
    /// Records applied per id and op, since the last `clear_counts`.
    applied: BTreeMap<(String, Op), u64>,
    /// (op, id, mergedIds) of every record applied, in order.
    log: Vec<(Op, String, Vec<String>, Option<DeleteReason>)>,
    batches: u64,
    largest_body: usize,
}

impl FakeDestination {
    fn receive(&mut self, config: &SyncConfig, webhook_id: &str, body: &str) {
        self.batches += 1;
        self.largest_body = self.largest_body.max(body.len());
        assert!(
            body.len() <= config.batch_max_bytes,
            "body within the limit"
        );
        #[cfg(not(target_arch = "wasm32"))]
        {
            let value: serde_json::Value = serde_json::from_str(body).expect("json");
            if let Err(e) = schema().validate(&value) {
                panic!("body does not match schema/sync-batch.v1.json: {e}");
            }
        }
        let b: SyncBatchBody = serde_json::from_str(body).expect("body parses");
        assert_eq!(b.schema, SCHEMA_SYNC_BATCH_V1);
        assert_eq!(b.kind, TYPE_SYNC_BATCH);
        assert_eq!(b.id, webhook_id);
        assert_eq!(b.portal_id, config.portal_id);
        assert!(!b.records.is_empty() && b.records.len() <= config.batch_records);
        if !self.seen.insert(webhook_id.to_owned()) {
            self.duplicates += 1;
            return;
        }
        for r in b.records {
            *self.applied.entry((r.id.clone(), r.op)).or_default() += 1;
            self.log
                .push((r.op, r.id.clone(), r.merged_ids.clone(), r.reason));
            match r.associations {
                Some(a) if r.op != Op::Delete => {
                    self.associations.insert(r.id.clone(), a);
                }
                _ => {
                    self.associations.remove(&r.id);
                }
            }
            match r.op {
                Op::Upsert => {
                    self.records.insert(r.id, r.fields.expect("fields"));
                }
                Op::Merge => {
                    for m in &r.merged_ids {
                        self.records.remove(m);
                        self.associations.remove(m);
                    }
                    self.records.insert(r.id, r.fields.expect("fields"));
                }
                Op::Delete => {
                    self.records.remove(&r.id);
                }
            }
        }
    }

    fn clear_counts(&mut self) {
        self.applied.clear();
        self.log.clear();
    }

    fn count(&self, op: Op) -> u64 {
        self.applied
            .iter()
            .filter(|((_, o), _)| *o == op)
            .map(|(_, n)| n)
            .sum()
    }
}

/// What to do at a point of a run (changes made while it runs, interruptions).
type Hook = Box<dyn FnMut(&mut World, u64)>;

struct World {
    hs: FakeHubSpot,
    store: FakeStore,
    dest: FakeDestination,
    mapping: Mapping,
    config: SyncConfig,
    /// Crash the next unit after its first delivery, before the commit (simulated).
    crash_after_delivery: bool,
    crashes: u64,
    /// The batch id of the delivery made just before a crash.
    crashed_batch: Option<String>,
    /// Unit messages still to lose (every 3rd message handled is lost while this is not 0).
    lose_messages: u32,
    /// Messages the coordinator queued again after their lease ran out.
    requeued: u64,
    /// Ids re-driven from the dead-letter store, taken by the next run ([`Run::recheck`]).
    recheck: Vec<u64>,
    /// Time spent in the core's steps (`on_page`, `decide`, `batches`), native only.
    #[cfg(not(target_arch = "wasm32"))]
    core_time: std::time::Duration,
}

/// The coordinator's lease on a unit message.
const LEASE_MS: u64 = 15 * 60_000;

impl World {
    fn new(config: SyncConfig) -> Self {
        Self {
            hs: FakeHubSpot {
                now: 1_700_000_000_000,
                ..FakeHubSpot::default()
            },
            store: FakeStore::default(),
            dest: FakeDestination::default(),
            mapping: Mapping::from_json(MAP).expect("map"),
            config,
            crash_after_delivery: false,
            crashes: 0,
            crashed_batch: None,
            lose_messages: 0,
            requeued: 0,
            recheck: Vec::new(),
            #[cfg(not(target_arch = "wasm32"))]
            core_time: std::time::Duration::ZERO,
        }
    }

    fn map(&self) -> ObjectMap {
        self.mapping.object("contacts").expect("contacts").clone()
    }

    /// One consumer invocation on one unit message: up to `pages_per_unit` pages, driven
    /// through [`UnitWork`] as the Worker drives it. `None` when it crashed (the queue
    /// redelivers the same message).
    fn work(&mut self, msg: &UnitMessage, hook: &mut Hook) -> Option<UnitReport> {
        let config = self.config.clone();
        let map = self.map();
        let mut work = UnitWork::new(&config, &map, msg);
        let mut first_read = true;
        let mut hooked = false;
        loop {
            match work.ask(|_| false) {
                UnitAsk::Read(read) => {
                    // The queue a unit goes to (its budget) is the budget its reads draw on.
                    if first_read {
                        assert_eq!(msg.unit.budget(), read.budget(), "{msg:?}");
                        first_read = false;
                    }
                    hooked = false;
                    #[cfg(not(target_arch = "wasm32"))]
                    let started = std::time::Instant::now();
                    match self.hs.perform(&read) {
                        Ok(page) => work.on_page(&page),
                        Err(e) => {
                            assert!(e.starts_with("400"), "{e}");
                            work.on_read_failed(e, true);
                        }
                    }
                    #[cfg(not(target_arch = "wasm32"))]
                    {
                        self.core_time += started.elapsed();
                    }
                }
                UnitAsk::Associations(read) => {
                    let answer = self.hs.assoc_read(&read);
                    work.on_associations(&answer);
                }
                UnitAsk::Lookup(ids) => {
                    if !hooked {
                        // Changes made between HubSpot's answer and the decision: the page is
                        // already stale.
                        hook(self, self.hs.searches + self.hs.lists);
                        hooked = true;
                    }
                    let stored = self.store.get(&ids);
                    #[cfg(not(target_arch = "wasm32"))]
                    let started = std::time::Instant::now();
                    work.on_stored(&stored);
                    #[cfg(not(target_arch = "wasm32"))]
                    {
                        self.core_time += started.elapsed();
                    }
                }
                UnitAsk::DeadLetter(rejected) => {
                    assert!(!rejected.is_empty(), "only asked with letters");
                }
                UnitAsk::Deliver(batches) => {
                    let mut results = Vec::new();
                    for b in batches {
                        self.dest.receive(&self.config, &b.id, &b.body);
                        if self.crash_after_delivery {
                            self.crash_after_delivery = false;
                            self.crashes += 1;
                            self.crashed_batch = Some(b.id.clone());
                            return None;
                        }
                        let outcomes = self.store.commit(&b.commits);
                        results.push((b, Ok(outcomes)));
                    }
                    work.on_delivered(results);
                }
                UnitAsk::Window { from, to, max } => {
                    let stored = self.store.live_ids(from, to);
                    assert!(stored.len() <= max, "the window's ids within its bound");
                    work.on_window(stored);
                }
                UnitAsk::Done => break,
            }
        }
        let (report, _, error) = work.finish();
        assert_eq!(error, None, "the unit stopped early");
        let json = report.to_json().expect("fits");
        Some(serde_json::from_str(&json).expect("round trip"))
    }

    /// Runs a run to completion with its units interleaved as parallel consumers would.
    /// `interrupt_at`: after that many messages, the run and the queue are serialised and
    /// read back, as a restarted Worker would (the Durable Object's state, the queue's
    /// messages).
    fn run(
        &mut self,
        mode: Mode,
        cursor: Option<u64>,
        mut hook: Hook,
        interrupt_at: Option<usize>,
    ) -> Run {
        let now = self.hs.now + self.config.lag_ms + 1;
        self.hs.now = now;
        let mut run =
            Run::start(&self.config, format!("contacts:{now}"), mode, cursor, now).expect("start");
        if !self.recheck.is_empty() {
            let ids = std::mem::take(&mut self.recheck);
            // An incremental run takes them at once (its messages come from `outstanding`).
            assert!(
                run.recheck(&ids).is_some(),
                "an incremental run takes rechecks"
            );
        }
        let mut queue: VecDeque<UnitMessage> = VecDeque::new();
        if let Some([lo, hi]) = run.probe() {
            let a = self.hs.search(&lo).expect("probe");
            let b = self.hs.search(&hi).expect("probe");
            queue.extend(
                run.on_probe(&self.config, &a, &b, self.hs.now)
                    .expect("probe"),
            );
        } else {
            queue.extend(run.outstanding());
        }
        let mut handled = 0;
        loop {
            let Some(msg) = queue.pop_front() else {
                if run.is_done() {
                    break;
                }
                // Units are out but nothing is queued: messages were lost. The coordinator's
                // alarm queues them again once their lease ran out.
                self.hs.now += LEASE_MS + 1;
                let again = run.overdue(self.hs.now, LEASE_MS);
                assert!(!again.is_empty(), "a run with open units re-queues them");
                self.requeued += again.len() as u64;
                queue.extend(again);
                continue;
            };
            // Every message fits a queue message.
            let json = msg.to_json().expect("fits");
            let msg: UnitMessage = serde_json::from_str(&json).expect("round trip");
            handled += 1;
            if self.lose_messages > 0 && handled % 3 == 0 {
                // Lost: its retries ran out, or its consumer died and the queue gave up.
                self.lose_messages -= 1;
                continue;
            }
            match self.work(&msg, &mut hook) {
                Some(report) => queue.extend(run.on_report(&self.config, report, self.hs.now)),
                // The consumer died: the queue delivers the message again.
                None => queue.push_back(msg),
            }
            if interrupt_at == Some(handled) {
                let state = serde_json::to_string(&run).expect("run state");
                let messages: Vec<String> =
                    queue.iter().map(|m| m.to_json().expect("fits")).collect();
                drop(run);
                queue.clear();
                run = serde_json::from_str(&state).expect("run state reads");
                for m in messages {
                    queue.push_back(serde_json::from_str(&m).expect("message reads"));
                }
            }
            assert!(handled < 100_000, "the run does not end");
        }
        assert!(run.is_done(), "{:?}", run.report());
        run
    }

    fn assert_equal(&self) {
        let want = self.hs.mapped(&self.map());
        let extra: Vec<&String> = self
            .dest
            .records
            .keys()
            .filter(|k| !want.contains_key(*k))
            .collect();
        let lacking: Vec<&String> = want
            .keys()
            .filter(|k| !self.dest.records.contains_key(*k))
            .collect();
        assert!(
            extra.is_empty() && lacking.is_empty(),
            "destination has {extra:?} too many, lacks {lacking:?}"
        );
        assert_eq!(self.dest.records.len(), want.len());
        assert!(self.dest.records == want, "destination equals HubSpot");
        let stored: Vec<u64> = self.store.live_ids(0, u64::MAX);
        let live: Vec<u64> = self.hs.live.keys().copied().collect();
        assert_eq!(stored, live, "the store holds exactly the live records");
        if self.config.associations.is_empty() {
            assert!(
                self.dest.associations.is_empty(),
                "no associations delivered"
            );
        } else {
            assert!(
                self.dest.associations == self.hs.associations(),
                "the destination's associations equal HubSpot's"
            );
        }
    }
}

fn no_hook() -> Hook {
    Box::new(|_, _| {})
}

fn seed(w: &mut World, n: u64) -> Vec<u64> {
    let ids: Vec<u64> = (0..n).map(|i| 1_000 + i * 7 + (i % 5) * (i % 3)).collect();
    for (i, &id) in ids.iter().enumerate() {
        w.hs.create(
            id,
            props(&format!("P{i}@Example.com"), &format!("n{i}"), 10),
        );
    }
    ids
}

fn small_config() -> SyncConfig {
    SyncConfig {
        initial_units: 4,
        pages_per_unit: 2,
        min_split_span: 500,
        batch_records: 100,
        lag_ms: 2_000,
        overlap_ms: 3_000,
        ..SyncConfig::new(PortalId::new(62_515), "contacts")
    }
}

#[test]
fn a_whole_outbound_sync() {
    let mut w = World::new(small_config());
    let ids = seed(&mut w, 3_000);
    // 1,200 records share one last-modified date before the backfill (a bulk import).
    w.hs.bulk_update(&ids[600..1_800], "score", "11");

    // Backfill, with changes made while it runs: to records already read and not yet read,
    // a creation, and a bulk update stamping 1,000 records with one date.
    let changed: Vec<u64> = vec![ids[0], ids[1_500], ids[2_999]];
    let bulk: Vec<u64> = ids[100..1_100].to_vec();
    let touched = [ids[3], ids[2_990], ids[2_996], ids[2_997]];
    let hook: Hook = {
        let changed = changed.clone();
        let bulk = bulk.clone();
        let ids_hook = ids.clone();
        let mut done = false;
        Box::new(move |w: &mut World, calls: u64| {
            if !done && calls >= 12 {
                done = true;
                for &id in &changed {
                    w.hs.update(id, "firstname", "changed-during-run");
                }
                w.hs.create(99_999, props("new@example.com", "late", 1));
                w.hs.bulk_update(&bulk, "score", "42");
                // A deletion and a merge during the backfill, on both sides of its position.
                w.hs.archive(ids_hook[3]);
                w.hs.archive(ids_hook[2_990]);
                w.hs.merge(ids_hook[2_996], ids_hook[2_997]);
            }
        })
    };
    let run = w.run(Mode::Full, None, hook, None);
    let report = run.report();
    // Every record existing at the start was delivered exactly once (but those archived or
    // merged away during the run, perhaps before the backfill read them).
    for id in ids.iter().filter(|id| !touched.contains(id)) {
        assert_eq!(
            w.dest
                .applied
                .get(&(id.to_string(), Op::Upsert))
                .copied()
                .unwrap_or(0),
            1,
            "record {id} delivered once"
        );
    }
    assert_eq!(report.counts.rejected, 0);
    assert!(report.counts.fallbacks == 0);
    assert!(w.hs.lists > 0 && w.hs.searches > 0, "both budgets used");
    assert_eq!(w.dest.duplicates, 0);
    let cursor = run.next_cursor().expect("cursor");

    // The next incremental run delivers every change made during the backfill, the 1,000
    // records sharing one date included, and nothing else.
    w.dest.clear_counts();
    let run = w.run(Mode::Incremental, Some(cursor), no_hook(), None);
    w.assert_equal();
    let upserts = w.dest.count(Op::Upsert);
    // Some changes made during the backfill came after the backfill read their record: only
    // the incremental run delivers them.
    assert!(upserts > 0);
    // At most the changed records: those the backfill read after their change are unchanged.
    assert!(
        upserts <= (changed.len() + 1 + bulk.len()) as u64,
        "{upserts}"
    );
    assert_eq!(run.report().counts.rejected, 0);
    let mut cursor = run.next_cursor().expect("cursor");

    // Thousands of records with one date, after the cursor: all delivered, each once.
    w.dest.clear_counts();
    let hot: Vec<u64> = ids[200..2_700].to_vec();
    w.hs.bulk_update(&hot, "firstname", "bulk");
    let run = w.run(Mode::Incremental, Some(cursor), no_hook(), None);
    assert_eq!(w.dest.count(Op::Upsert), hot.len() as u64);
    for id in &hot {
        assert_eq!(w.dest.applied[&(id.to_string(), Op::Upsert)], 1);
    }
    w.assert_equal();
    cursor = run.next_cursor().expect("cursor");

    // A delete, a merge, a restore.
    w.dest.clear_counts();
    let (deleted, survivor, loser) = (ids[10], ids[20], ids[21]);
    w.hs.archive(deleted);
    w.hs.merge(survivor, loser);
    let restored = ids[30];
    w.hs.archive(restored);
    let run = w.run(Mode::Incremental, Some(cursor), no_hook(), None);
    w.assert_equal();
    assert_eq!(
        w.dest
            .log
            .iter()
            .filter(|e| e.0 == Op::Delete)
            .map(|e| e.1.clone())
            .collect::<Vec<_>>(),
        [deleted.to_string(), restored.to_string()]
    );
    let merges: Vec<_> = w.dest.log.iter().filter(|e| e.0 == Op::Merge).collect();
    assert_eq!(merges.len(), 1);
    assert_eq!(merges[0].1, survivor.to_string());
    assert_eq!(merges[0].2, [loser.to_string()]);
    cursor = run.next_cursor().expect("cursor");
    w.dest.clear_counts();
    w.hs.restore(restored);
    let run = w.run(Mode::Incremental, Some(cursor), no_hook(), None);
    assert_eq!(w.dest.log.len(), 1);
    assert_eq!(
        (w.dest.log[0].0, w.dest.log[0].1.clone()),
        (Op::Upsert, restored.to_string())
    );
    w.assert_equal();
    cursor = run.next_cursor().expect("cursor");

    // A change already delivered by webhook enrichment (it stored the snapshot after its
    // forward) is not delivered again by sync.
    w.dest.clear_counts();
    let enriched = ids[40];
    w.hs.update(enriched, "firstname", "via-webhook");
    let map = w.map();
    let p = w.hs.live[&enriched]
        .props
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let record = map.to_destination(&p).expect("maps");
    let version = w.store.objects[&enriched].version;
    w.dest.records.insert(enriched.to_string(), record.clone());
    w.store.commit(&[Commit {
        id: enriched.to_string(),
        expect: Some(version),
        write: Write::Put(record.to_snapshot()),
    }]);
    let other = ids[41];
    w.hs.update(other, "firstname", "not-via-webhook");
    let run = w.run(Mode::Incremental, Some(cursor), no_hook(), None);
    assert_eq!(w.dest.log.len(), 1, "{:?}", w.dest.log);
    assert_eq!(w.dest.log[0].1, other.to_string());
    assert!(run.report().counts.unchanged >= 1);
    w.assert_equal();

    // Deleted while no webhook arrived and gone from the recycling bin: only the reconcile
    // can find it. An incremental run does not; a full run does, and says so.
    let erased = ids[50];
    w.hs.erase(erased);
    w.dest.clear_counts();
    let run = w.run(Mode::Incremental, run.next_cursor(), no_hook(), None);
    assert!(w.dest.log.is_empty());
    let cursor = run.next_cursor();
    let run = w.run(Mode::Full, cursor, no_hook(), None);
    let report = run.report();
    assert_eq!(report.missing_found, 1);
    assert_eq!(report.missing_ids, [erased.to_string()]);
    assert_eq!(
        w.dest.log,
        [(
            Op::Delete,
            erased.to_string(),
            vec![],
            Some(DeleteReason::Missing)
        )]
    );
    assert_eq!(report.counts.unchanged, w.hs.live.len() as u64);
    w.assert_equal();
    assert_eq!(w.dest.duplicates, 0);
}

#[test]
fn associations_are_delivered_and_an_association_change_alone_is_found_by_a_full_run() {
    let config = SyncConfig {
        associations: vec!["companies".to_owned()],
        ..small_config()
    };
    let mut w = World::new(config);
    // Two companies per answer: a contact with three or more is read over several requests.
    w.hs.assoc_page = 2;
    let ids = seed(&mut w, 1_500);
    for (i, &id) in ids.iter().enumerate() {
        for k in 0..(i % 6) as u64 {
            w.hs.associate(id, 900_000 + (i as u64 + k * 7) % 50);
        }
    }
    let run = w.run(Mode::Full, None, no_hook(), None);
    w.assert_equal();
    assert_eq!(w.dest.count(Op::Upsert), 1_500);
    assert_eq!(w.dest.duplicates, 0);
    let pages = w.hs.searches + w.hs.lists;
    assert!(
        w.hs.assoc_reads > pages,
        "continuations were read: {} association reads for {pages} pages",
        w.hs.assoc_reads
    );
    // Association changes alone (no last-modified date moves): the incremental run does not
    // read those records; the next full run delivers exactly them, once, fields unchanged.
    w.dest.clear_counts();
    w.hs.associate(ids[0], 1);
    w.hs.companies.remove(&ids[5]);
    let run = w.run(Mode::Incremental, run.next_cursor(), no_hook(), None);
    assert_eq!(w.dest.count(Op::Upsert), 0);
    let run = w.run(Mode::Full, run.next_cursor(), no_hook(), None);
    let delivered: Vec<&String> = w.dest.applied.keys().map(|(id, _)| id).collect();
    assert_eq!(delivered, [&ids[0].to_string(), &ids[5].to_string()]);
    assert_eq!(w.dest.count(Op::Upsert), 2);
    w.assert_equal();
    assert_eq!(
        w.dest.associations[&ids[5].to_string()]["companies"],
        Vec::<String>::new()
    );
    // A field change and an association change: the incremental run delivers both; then
    // nothing is left to deliver.
    w.dest.clear_counts();
    w.hs.update(ids[7], "firstname", "Changed");
    w.hs.associate(ids[7], 2);
    let run = w.run(Mode::Incremental, run.next_cursor(), no_hook(), None);
    assert_eq!(w.dest.count(Op::Upsert), 1);
    w.assert_equal();
    w.dest.clear_counts();
    w.run(Mode::Full, run.next_cursor(), no_hook(), None);
    assert_eq!(w.dest.count(Op::Upsert), 0);
    w.assert_equal();
}

#[test]
fn an_interrupted_run_resumes_without_loss_or_repeats() {
    let mut w = World::new(small_config());
    let ids = seed(&mut w, 2_000);
    // The Worker restarts mid-backfill (state read back from storage), and a consumer dies
    // between a delivery and its commit.
    let hook: Hook = Box::new(|w: &mut World, calls: u64| {
        if calls == 9 {
            w.crash_after_delivery = true;
        }
    });
    let run = w.run(Mode::Full, None, hook, Some(5));
    assert_eq!(w.crashes, 1);
    w.assert_equal();
    // The batch delivered before the crash went out again under the same webhook-id (the
    // destination dropped it as a duplicate): nothing applied twice, nothing missing.
    assert_eq!(w.dest.duplicates, 1);
    assert!(w
        .dest
        .seen
        .contains(w.crashed_batch.as_ref().expect("crashed")));
    for id in &ids {
        assert_eq!(w.dest.applied[&(id.to_string(), Op::Upsert)], 1, "{id}");
    }
    assert_eq!(
        run.report().counts.read,
        run.report().counts.upserted + run.report().counts.unchanged
    );
}

#[test]
fn lost_unit_messages_are_queued_again_after_their_lease() {
    let mut w = World::new(small_config());
    let ids = seed(&mut w, 2_000);
    w.lose_messages = 3;
    w.run(Mode::Full, None, no_hook(), None);
    assert_eq!(w.lose_messages, 0);
    assert!(w.requeued >= 3, "{}", w.requeued);
    w.assert_equal();
    for id in &ids {
        assert_eq!(w.dest.applied[&(id.to_string(), Op::Upsert)], 1, "{id}");
    }
    // Nothing is overdue within its lease.
    let config = small_config();
    let mut run = Run::start(&config, "r", Mode::Incremental, Some(1), 1_000).expect("start");
    assert!(run.overdue(1_000 + LEASE_MS, LEASE_MS).is_empty());
    let again = run.overdue(1_001 + LEASE_MS, LEASE_MS);
    assert_eq!(again, run.outstanding());
    // Re-queued once per lease.
    assert!(run.overdue(1_002 + LEASE_MS, LEASE_MS).is_empty());
}

/// How the run must have read the list under a fake HubSpot's reading of `after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListAfter {
    /// The list pages were trusted: no range fell back to search.
    Trusted,
    /// Some list range was detected as unsafe and fell back to search.
    FallsBack,
}

/// A full sync of 1,500 records under `set`'s reading of list `after`: the destination ends
/// equal to HubSpot, every record delivered once, with the fallbacks `expect` says.
fn full_sync_under_a_list_after_reading(set: impl FnOnce(&mut FakeHubSpot), expect: ListAfter) {
    let mut w = World::new(small_config());
    set(&mut w.hs);
    let ids = seed(&mut w, 1_500);
    let run = w.run(Mode::Full, None, no_hook(), None);
    w.assert_equal();
    let fallbacks = run.report().counts.fallbacks;
    match expect {
        ListAfter::Trusted => assert_eq!(fallbacks, 0),
        ListAfter::FallsBack => assert!(fallbacks > 0),
    }
    for id in &ids {
        assert_eq!(w.dest.applied[&(id.to_string(), Op::Upsert)], 1);
    }
}

#[test]
fn list_cursors_that_are_not_ids_fall_back_to_search() {
    full_sync_under_a_list_after_reading(|hs| hs.opaque_list_cursors = true, ListAfter::FallsBack);
}

#[test]
fn batches_keep_their_ids_and_respect_the_limits() {
    let mut config = small_config();
    config.batch_records = 7;
    config.batch_max_bytes = 1_200;
    let mut w = World::new(config.clone());
    seed(&mut w, 40);
    let map = w.map();
    let properties = config.read_properties(&map);
    let page = w.hs.list(&crate::api::ListOptions {
        limit: Some(100),
        after: None,
        properties,
        archived: false,
    });
    let step = Step {
        live: page.expect("page").results,
        ..Step::default()
    };
    let decided = decide(&config, &map, &step, &HashMap::new());
    let (first, rejected) = batches(&config, decided.pending.clone());
    assert!(rejected.is_empty());
    assert!(first.len() >= 40 / 7);
    for b in &first {
        assert!(b.body.len() <= 1_200, "{}", b.body.len());
        assert!(b.ids.len() <= 7);
        let body: SyncBatchBody = serde_json::from_str(&b.body).expect("body");
        assert_eq!(body.id, b.id);
        assert!(b.id.starts_with("hsb1_") && b.id.len() == 45);
    }
    // The same records against the same stored versions: the same ids and bodies.
    let (again, _) = batches(
        &config,
        decide(&config, &map, &step, &HashMap::new()).pending,
    );
    assert_eq!(first, again);
    // Another stored version: another id.
    let stored: HashMap<String, Stored> = step
        .live
        .iter()
        .map(|o| {
            (
                o.id.clone(),
                Stored {
                    version: 3,
                    snapshot: None,
                },
            )
        })
        .collect();
    let (other, _) = batches(&config, decide(&config, &map, &step, &stored).pending);
    assert_ne!(first[0].id, other[0].id);
    // A record that cannot fit alone is rejected, not sent.
    let mut tiny = config.clone();
    tiny.batch_max_bytes = 150;
    let (none, rejected) = batches(&tiny, decided.pending);
    assert!(none.is_empty());
    assert_eq!(rejected.len(), 40);
    assert_eq!(rejected[0].code, "record_too_large");
}

#[test]
fn unmappable_records_are_rejected_with_their_code() {
    let config = small_config();
    let mut w = World::new(config.clone());
    w.hs.create(5, props("not-an-email", "x", 1));
    w.hs.create(6, props("ok@example.com", "y", 1));
    let map = w.map();
    let page =
        w.hs.list(&crate::api::ListOptions {
            limit: Some(100),
            after: None,
            properties: config.read_properties(&map),
            archived: false,
        })
        .expect("page");
    let step = Step {
        live: page.results,
        ..Step::default()
    };
    let decided = decide(&config, &map, &step, &HashMap::new());
    assert_eq!(decided.pending.len(), 1);
    assert_eq!(decided.rejected.len(), 1);
    assert_eq!(decided.rejected[0].id, "5");
    assert!(decided.rejected[0].code.starts_with("mapping_"));
}

/// A re-driven sync dead letter: the record was never committed, so once its cause is fixed
/// the next run that reads it again delivers it; one erased meanwhile is delivered as deleted.
#[test]
fn a_redriven_sync_letter_is_read_again_by_the_next_run() {
    let mut w = World::new(small_config());
    w.hs.create(5, props("not-an-email", "x", 1));
    w.hs.create(6, props("ok@example.com", "y", 1));
    w.hs.create(7, props("gone@example.com", "z", 1));
    let full = w.run(Mode::Full, None, no_hook(), None);
    assert_eq!(full.report().counts.rejected, 1);
    assert!(!w.dest.records.contains_key("5"));
    assert!(w.store.get(&["5".to_owned()]).is_empty(), "not committed");
    // The next run reads the creations again (the safety overlap): still rejected.
    w.hs.now += 60_000;
    let first = w.run(Mode::Incremental, full.next_cursor(), no_hook(), None);
    assert_eq!(first.report().counts.rejected, 1);

    // The cause is fixed (the map no longer types `email`); 7 is erased without a trace.
    w.mapping = Mapping::from_json(&MAP.replace(r#","type":"email""#, "")).expect("map");
    w.hs.erase(7);
    w.hs.now += 60_000;
    // Without a re-drive, an incremental run does not read them: nothing changed in HubSpot.
    let plain = w.run(Mode::Incremental, first.next_cursor(), no_hook(), None);
    assert_eq!(plain.report().counts.read, 0);
    assert!(!w.dest.records.contains_key("5"));
    assert!(w.dest.records.contains_key("7"));

    w.dest.clear_counts();
    w.recheck = vec![7, 5, 5];
    let run = w.run(Mode::Incremental, plain.next_cursor(), no_hook(), None);
    w.assert_equal();
    assert_eq!(w.dest.applied.get(&("5".into(), Op::Upsert)), Some(&1));
    assert_eq!(w.dest.applied.get(&("7".into(), Op::Delete)), Some(&1));
    assert_eq!(w.dest.count(Op::Upsert) + w.dest.count(Op::Delete), 2);
    assert_eq!(run.report().counts.rejected, 0);

    // A run still probing (a full run) or done cannot take them.
    let mut probing =
        Run::start(&w.config, "contacts:x", Mode::Full, None, w.hs.now).expect("start");
    assert!(probing.recheck(&[5]).is_none());
}

/// The schema refuses what the serde type never produces: its negative twins.
#[test]
#[cfg(not(target_arch = "wasm32"))]
fn the_schema_refuses_malformed_batches() {
    let id = format!("hsb1_{}", "0".repeat(40));
    let change = format!("hsc1_{}", "0".repeat(40));
    let body = |id: &str, record: serde_json::Value| {
        serde_json::json!({"schema": SCHEMA_SYNC_BATCH_V1, "id": id, "type": TYPE_SYNC_BATCH,
            "portalId": 1, "objectType": "contacts", "records": [record]})
    };
    let good = body(
        &id,
        serde_json::json!({"op": "upsert", "id": "1", "changeId": change, "fields": {}}),
    );
    assert!(schema().validate(&good).is_ok());
    for bad in [
        body(
            "x",
            serde_json::json!({"op": "upsert", "id": "1", "changeId": change, "fields": {}}),
        ),
        body(
            &id,
            serde_json::json!({"op": "nope", "id": "1", "changeId": change, "fields": {}}),
        ),
        body(
            &id,
            serde_json::json!({"op": "upsert", "id": "1", "changeId": change}),
        ),
        body(
            &id,
            serde_json::json!({"op": "delete", "id": "1", "changeId": change}),
        ),
        body(
            &id,
            serde_json::json!({"op": "merge", "id": "1", "changeId": change, "fields": {}}),
        ),
        body(
            &id,
            serde_json::json!({"op": "upsert", "id": "a1", "changeId": change, "fields": {}}),
        ),
    ] {
        assert!(schema().validate(&bad).is_err(), "{bad}");
    }
}

#[test]
fn list_after_read_as_exclusive_loses_nothing() {
    full_sync_under_a_list_after_reading(|hs| hs.exclusive_list_after = true, ListAfter::Trusted);
}

#[test]
fn a_tie_group_past_the_search_cap_and_an_interrupted_incremental_run() {
    let config = SyncConfig {
        pages_per_unit: 3,
        ..small_config()
    };
    let mut w = World::new(config);
    let ids = seed(&mut w, 12_500);
    let run = w.run(Mode::Full, None, no_hook(), None);
    let cursor = run.next_cursor();
    // 12,000 records stamped with one date: more than one search query can page through.
    w.dest.clear_counts();
    w.hs.bulk_update(&ids[250..12_250], "score", "7");
    w.hs.update(ids[0], "firstname", "after-the-bulk");
    // The Worker restarts twice during the walk (the walk's state is read back each time).
    let searches = w.hs.searches;
    let run = w.run(Mode::Incremental, cursor, no_hook(), Some(3));
    assert_eq!(w.dest.count(Op::Upsert), 12_001);
    assert!(w.dest.applied.values().all(|&n| n == 1));
    assert_eq!(w.dest.duplicates, 0);
    w.assert_equal();
    // Keyset windows: about one search per 200 records, far from paging past 10,000.
    assert!(w.hs.searches - searches < 12_001 / 200 + 10);
    assert_eq!(run.report().counts.upserted, 12_001);
}

#[test]
fn stale_and_foreign_reports_change_nothing() {
    let config = small_config();
    let mut run = Run::start(
        &config,
        "r1",
        Mode::Incremental,
        Some(10_000_000),
        20_000_000,
    )
    .expect("start");
    let out = run.outstanding();
    assert_eq!(out.len(), 1);
    let done = |m: &UnitMessage| {
        let mut unit = m.unit.clone();
        match &mut unit {
            Unit::Modified(_) => {
                let page = Page {
                    results: Vec::new(),
                    next_after: None,
                    total: None,
                };
                unit.on_page(&page).expect("page");
            }
            Unit::Archived(a) => a.done = true,
            other => panic!("{other:?}"),
        }
        assert!(unit.is_done());
        UnitReport {
            run_id: m.run_id.clone(),
            unit_id: m.unit_id,
            seq: m.seq,
            unit,
            counts: Counts {
                read: 1,
                ..Counts::default()
            },
            missing: Vec::new(),
            missing_overflow: 0,
            missing_deleted: Vec::new(),
        }
    };
    let before = run.clone();
    let mut stale = done(&out[0]);
    stale.seq += 1;
    assert!(run.on_report(&config, stale, 20_000_100).is_empty());
    let mut foreign = done(&out[0]);
    foreign.run_id = "r0".into();
    assert!(run.on_report(&config, foreign, 20_000_100).is_empty());
    assert_eq!(run, before);
    // The modified walk done: the archived walk follows it, since the same instant.
    let next = run.on_report(&config, done(&out[0]), 20_000_100);
    assert_eq!(run.phase(), Phase::Archived);
    assert_eq!(next.len(), 1);
    match &next[0].unit {
        Unit::Archived(a) => assert_eq!(a.since_ms, Some(10_000_000 - config.overlap_ms)),
        other => panic!("{other:?}"),
    }
    // A duplicate of a report already taken.
    assert!(run.on_report(&config, done(&out[0]), 20_000_100).is_empty());
    assert!(!run.is_done());
    assert_eq!(run.next_cursor(), None);
    assert!(run
        .on_report(&config, done(&next[0]), 20_000_100)
        .is_empty());
    assert!(run.is_done());
    assert_eq!(run.report().counts.read, 2);
    // `run start − lag`, never later.
    assert_eq!(run.next_cursor(), Some(20_000_000 - config.lag_ms));
}

#[test]
fn probe_splits_the_id_span_between_list_and_search() {
    let config = SyncConfig {
        initial_units: 6,
        list_share_percent: 50,
        ..small_config()
    };
    let mut run = Run::start(&config, "r", Mode::Full, None, 1_000_000).expect("start");
    assert_eq!(run.mode(), Mode::Full);
    let [asc, desc] = run.probe().expect("probe");
    assert_eq!(asc.limit, Some(1));
    assert_eq!(
        desc.sort.as_ref().map(|s| s.direction),
        Some(SortDirection::Descending)
    );
    let one = |id: u64| Page {
        results: vec![FakeHubSpot::object(
            id,
            &Rec {
                props: BTreeMap::new(),
                modified: 0,
                merged: Vec::new(),
            },
            &[],
            None,
        )],
        next_after: None,
        total: None,
    };
    let messages = run
        .on_probe(&config, &one(100), &one(699), 1_000_000)
        .expect("probe");
    assert!(run.probe().is_none());
    let ranges: Vec<(u64, u64, Path)> = messages
        .iter()
        .filter_map(|m| match &m.unit {
            Unit::Range(r) => Some((r.lo, r.hi, r.path)),
            _ => None,
        })
        .collect();
    assert_eq!(
        ranges,
        [
            (0, 100, Path::Search),
            (100, 200, Path::List),
            (200, 300, Path::Search),
            (300, 400, Path::List),
            (400, 500, Path::Search),
            (500, 600, Path::List),
            (600, 700, Path::Search),
            (700, ID_END, Path::Search),
        ]
    );
    // The open ends never split.
    let open: Vec<bool> = messages
        .iter()
        .filter_map(|m| match &m.unit {
            Unit::Range(r) => Some(r.open),
            _ => None,
        })
        .collect();
    assert_eq!(open, [true, false, false, false, false, false, false, true]);
    let mut tail = match &messages[7].unit {
        Unit::Range(r) => r.clone(),
        other => panic!("{other:?}"),
    };
    tail.pos = 1_000;
    tail.read = 200;
    assert!(tail.split(1_000, 5).is_none());
    // The default share (66 %) over 12 ranges: the list ranges hold 66 % of the ids.
    let config = SyncConfig {
        initial_units: 12,
        ..small_config()
    };
    let mut run = Run::start(&config, "d", Mode::Full, None, 1_000_000).expect("start");
    let messages = run
        .on_probe(&config, &one(1), &one(1_200_000), 1_000_000)
        .expect("probe");
    let (mut list_ids, mut all) = (0, 0);
    let mut next = 1;
    for m in &messages {
        if let Unit::Range(r) = &m.unit {
            if r.open {
                continue;
            }
            assert_eq!(r.lo, next, "contiguous");
            next = r.hi;
            all += r.hi - r.lo;
            if r.path == Path::List {
                list_ids += r.hi - r.lo;
            }
        }
    }
    assert_eq!(next, 1_200_001, "covers the span");
    assert_eq!(list_ids * 100 / all, 66);
    assert_eq!(messages.len(), 14);
    assert!(messages.iter().all(|m| matches!(m.unit, Unit::Range(_))));
    assert!(run.phase() == Phase::Units);
    // A wide continuation splits; a narrow one does not.
    let mut wide = RangeUnit::new(0, 10_000, Path::List);
    let upper = wide.split(1_000, 5).expect("split");
    assert_eq!(
        (wide.pos, wide.hi, upper.lo, upper.hi),
        (0, 5_000, 5_000, 10_000)
    );
    assert_eq!(upper.path, Path::List);
    let mut narrow = RangeUnit::new(0, 1_999, Path::Search);
    assert!(narrow.split(1_000, 5).is_none());
    // Half read, 600 records found: 600 more expected, fewer than two invocations of 5 list
    // pages (1,000): not split. 1,000 found: split.
    let mut sparse = RangeUnit {
        pos: 5_000,
        read: 600,
        ..RangeUnit::new(0, 10_000, Path::List)
    };
    assert!(sparse.split(1_000, 5).is_none());
    sparse.read = 1_000;
    assert!(sparse.split(1_000, 5).is_some());
    // No records: one open range over every id (the reconcile compares every stored id).
    let mut empty = Run::start(&config, "e", Mode::Full, None, 1_000_000).expect("start");
    let none = Page {
        results: Vec::new(),
        next_after: None,
        total: None,
    };
    let messages = empty
        .on_probe(&config, &none, &none, 1_000_000)
        .expect("probe");
    assert_eq!(messages.len(), 1);
}

/// A 100,000-record backfill in memory: HubSpot calls by budget, the rate-limit bound they
/// imply at Professional private-app limits, and the time the core takes. Run with
/// `cargo test -p hubspot-edge-core --release --lib -- --ignored --nocapture sync_100k`.
#[test]
#[ignore = "benchmark; run explicitly"]
#[cfg(not(target_arch = "wasm32"))]
fn sync_100k() {
    let config = SyncConfig::new(PortalId::new(62_515), "contacts");
    let mut w = World::new(config.clone());
    let ids = seed(&mut w, 100_000);
    let started = std::time::Instant::now();
    let run = w.run(Mode::Full, None, no_hook(), None);
    let elapsed = started.elapsed();
    w.assert_equal();
    assert_eq!(w.dest.count(Op::Upsert), ids.len() as u64);
    let (lists, searches) = (w.hs.lists, w.hs.searches);
    let bound_ms = (lists * 10_000)
        .div_ceil(190)
        .max((searches * 1_000).div_ceil(5));
    eprintln!(
        "sync_100k: {} list + {} search calls (incl. probes, open ranges, archived walk), {} batches, \
         largest body {} bytes; rate-limit bound {:.1} s (predicted {:.1} s); in-memory run \
         (core + fakes) {:?}, of which the core's steps (on_page, decide, batches) {:?}",
        lists,
        searches,
        w.dest.batches,
        w.dest.largest_body,
        bound_ms as f64 / 1000.0,
        backfill_bound_ms(100_000, config.list_share_percent, 190, 5) as f64 / 1000.0,
        elapsed,
        w.core_time
    );
    assert_eq!(run.report().counts.read, 100_000);
}

#[test]
fn list_after_read_as_an_offset_is_detected_and_loses_nothing() {
    full_sync_under_a_list_after_reading(|hs| hs.offset_list_after = true, ListAfter::FallsBack);
}

#[test]
fn the_largest_unit_report_fits_a_queue_message() {
    // The largest ids HubSpot can have, the most of them a report carries.
    let mut report = UnitReport {
        run_id: "contacts:1700000000000".into(),
        unit_id: u32::MAX,
        seq: u32::MAX,
        unit: Unit::Verify(VerifyUnit {
            ids: vec![u64::MAX; 1_000],
        }),
        counts: Counts::default(),
        missing: Vec::new(),
        missing_overflow: 0,
        missing_deleted: vec![u64::MAX.to_string(); 1_000],
    };
    report.add_missing(std::iter::repeat_n(u64::MAX, MAX_REPORTED_MISSING + 10));
    assert_eq!(report.missing.len(), MAX_REPORTED_MISSING);
    assert_eq!(report.missing_overflow, 10);
    let json = report.to_json().expect("fits");
    assert!(
        json.len() < crate::queue::MAX_MESSAGE_BYTES,
        "{}",
        json.len()
    );
}

/// Random histories: changes of every kind made before and during runs; after an incremental
/// run and a full run, the destination equals HubSpot, whatever happened.
#[cfg(not(target_arch = "wasm32"))]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Debug, Clone)]
    enum Change {
        Create,
        Update(usize),
        Bulk(usize, usize),
        Archive(usize),
        Restore(usize),
        Merge(usize, usize),
        Erase(usize),
    }

    fn change() -> impl Strategy<Value = Change> {
        prop_oneof![
            2 => Just(Change::Create),
            4 => any::<usize>().prop_map(Change::Update),
            1 => (any::<usize>(), 1usize..300).prop_map(|(a, n)| Change::Bulk(a, n)),
            1 => any::<usize>().prop_map(Change::Archive),
            1 => any::<usize>().prop_map(Change::Restore),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Change::Merge(a, b)),
            1 => any::<usize>().prop_map(Change::Erase),
        ]
    }

    fn apply(w: &mut World, c: &Change, next_id: &mut u64) {
        let live: Vec<u64> = w.hs.live.keys().copied().collect();
        let pick = |i: usize| live.get(i % live.len().max(1)).copied();
        match *c {
            Change::Create => {
                *next_id += 3;
                let id = *next_id;
                w.hs.create(id, props(&format!("c{id}@x.io"), "new", 1));
            }
            Change::Update(i) => {
                if let Some(id) = pick(i) {
                    let v = format!("v{}", w.hs.now % 1_000);
                    w.hs.update(id, "firstname", &v);
                }
            }
            Change::Bulk(i, n) => {
                let ids: Vec<u64> = live
                    .iter()
                    .copied()
                    .cycle()
                    .skip(i % live.len().max(1))
                    .take(n.min(live.len()))
                    .collect();
                if !ids.is_empty() {
                    let v = format!("{}", w.hs.now % 97);
                    w.hs.bulk_update(&ids, "score", &v);
                }
            }
            Change::Archive(i) => {
                if let Some(id) = pick(i) {
                    w.hs.archive(id);
                }
            }
            Change::Restore(i) => {
                let archived: Vec<u64> = w.hs.archived.keys().copied().collect();
                if let Some(&id) = archived.get(i % archived.len().max(1)) {
                    w.hs.restore(id);
                }
            }
            Change::Merge(a, b) => {
                if let (Some(s), Some(l)) = (pick(a), pick(b)) {
                    if s != l {
                        w.hs.merge(s, l);
                    }
                }
            }
            Change::Erase(i) => {
                if let Some(id) = pick(i) {
                    w.hs.erase(id);
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        #[test]
        fn destination_equals_hubspot_after_any_history(
            n in 1u64..600,
            before in proptest::collection::vec(change(), 0..20),
            during in proptest::collection::vec(change(), 0..20),
            between in proptest::collection::vec(change(), 0..20),
            at in 0u64..30,
        ) {
            let mut w = World::new(small_config());
            let mut next_id = 1_000 + n * 10;
            seed(&mut w, n);
            for c in &before {
                apply(&mut w, c, &mut next_id);
            }
            let during_hook = during.clone();
            let mut fired = false;
            let mut id_hook = next_id + 1_000_000;
            let hook: Hook = Box::new(move |w: &mut World, calls: u64| {
                if !fired && calls >= at {
                    fired = true;
                    for c in &during_hook {
                        apply(w, c, &mut id_hook);
                    }
                }
            });
            let run = w.run(Mode::Full, None, hook, None);
            let mut cursor = run.next_cursor();
            for c in &between {
                apply(&mut w, c, &mut next_id);
            }
            // Changes are all delivered by the incremental run, except erased records (no
            // webhook, not in the recycling bin): the full run's reconcile finds those.
            let run = w.run(Mode::Incremental, cursor, no_hook(), None);
            let erased = during.iter().chain(&between).any(|c| matches!(c, Change::Erase(_)));
            if !erased {
                w.assert_equal();
            }
            cursor = run.next_cursor();
            w.run(Mode::Full, cursor, no_hook(), None);
            w.assert_equal();
            prop_assert_eq!(w.dest.duplicates, 0);
        }
    }
}

/// The inbound path against the same fake HubSpot and the same store: the user's records in,
/// diffed against the one record store, written by batch upsert, committed. Returns the number
/// of HubSpot calls.
impl World {
    fn inbound(&mut self, records: &[serde_json::Value], now: u64) -> usize {
        self.inbound_with_conflicts(records, now).0
    }

    /// [`Self::inbound`], also returning the conflicts met (HubSpot's and the user's).
    fn inbound_with_conflicts(
        &mut self,
        records: &[serde_json::Value],
        now: u64,
    ) -> (usize, Vec<super::inbound::Conflict>) {
        use super::inbound::{parse_request, plan, BatchResult, Coalescer, InboundConfig, Known};
        let map = self.map();
        let cfg = InboundConfig::for_object_type("contacts", None).expect("contacts");
        let body = serde_json::to_vec(&serde_json::json!({ "records": records })).expect("json");
        let parsed = parse_request(&map, &cfg, &body).expect("valid request");
        let mut coalescer = Coalescer::new();
        coalescer.add("receipt", parsed, now);
        let due = coalescer.take_due(u64::MAX, cfg.coalesce_window_ms, cfg.batch_size);
        // The id map (idProperty value → HubSpot id) the Durable Object keeps; here from HubSpot.
        let known: BTreeMap<String, Known> = due
            .iter()
            .filter_map(|u| {
                let (&id, _) = self.hs.live.iter().find(|(_, r)| {
                    r.props.get("email").map(|e| e.to_lowercase()) == Some(u.key.clone())
                })?;
                let stored = self.store.get(&[id.to_string()]);
                let stored = stored.get(&id.to_string()).cloned().unwrap_or_default();
                // HubSpot's change times, as the sync and enrichment stamped them.
                let hubspot_changed_at = stored
                    .snapshot
                    .as_deref()
                    .and_then(|s| Record::from_snapshot(s).ok())
                    .map(|r| crate::records::changed_at(&r))
                    .unwrap_or_default();
                Some((
                    u.key.clone(),
                    Known {
                        hubspot_id: Some(id.to_string()),
                        stored,
                        hubspot_changed_at,
                    },
                ))
            })
            .collect();
        let planned = plan(&map, &cfg, due, &known);
        let mut conflicts: Vec<super::inbound::Conflict> = planned
            .unchanged
            .iter()
            .flat_map(|u| u.conflicts.iter().cloned())
            .collect();
        let mut calls = 0;
        for batch in planned.batches {
            let req = batch.request(
                &crate::api::ApiConfig::default(),
                "contacts",
                &cfg.id_property,
            );
            calls += 1;
            let (status, answer) = self.hs.upsert(req.body());
            let BatchResult::Done { written, failed } = batch.complete(
                &map,
                &cfg.id_property,
                status,
                &http::HeaderMap::new(),
                &answer,
            ) else {
                panic!("the fake does not fail whole batches");
            };
            assert!(failed.is_empty());
            for w in written {
                conflicts.extend(w.conflicts.iter().cloned());
                let current = self.store.get(std::slice::from_ref(&w.hubspot_id));
                let current = current.get(&w.hubspot_id).cloned().unwrap_or_default();
                let outcomes = self.store.commit(&[w.commit(&current)]);
                assert!(matches!(outcomes[0].1, CommitOutcome::Committed { .. }));
            }
        }
        (calls, conflicts)
    }
}

impl FakeHubSpot {
    /// `POST /crm/objects/contacts/batch/upsert` by email, existing records only.
    fn upsert(&mut self, body: &[u8]) -> (u16, Vec<u8>) {
        let sent: serde_json::Value = serde_json::from_slice(body).expect("json");
        let at = self.tick();
        let mut results = Vec::new();
        for input in sent["inputs"].as_array().expect("inputs") {
            assert_eq!(input["idProperty"], "email");
            let key = input["id"].as_str().expect("id");
            let (&id, rec) = self
                .live
                .iter_mut()
                .find(|(_, r)| {
                    r.props.get("email").map(|e| e.to_lowercase()).as_deref() == Some(key)
                })
                .expect("an existing contact");
            for (k, v) in input["properties"].as_object().expect("properties") {
                rec.props
                    .insert(k.clone(), v.as_str().expect("string").to_owned());
            }
            rec.modified = at;
            results.push(serde_json::json!({
                "id": id.to_string(), "objectWriteTraceId": input["objectWriteTraceId"],
                "new": false, "properties": rec.props,
            }));
        }
        let body = serde_json::json!({"status": "COMPLETE", "results": results});
        (200, body.to_string().into_bytes())
    }
}

/// Issue 10 §1: a whole sync, both directions, in memory. The user's writes go into HubSpot
/// through the one record store, so the next outbound run reads them back as unchanged (no
/// loop), while a real change made in HubSpot afterwards still goes out.
#[test]
fn both_directions_without_loops() {
    let mut w = World::new(small_config());
    let ids = seed(&mut w, 300);
    let full = w.run(Mode::Full, None, no_hook(), None);
    w.assert_equal();
    // Past the safety overlap of the first incremental run.
    w.hs.now += 60_000;
    let quiet = w.run(Mode::Incremental, full.next_cursor(), no_hook(), None);

    // The user's system sends 60 records: 40 with a new first name, 20 as they are.
    let records: Vec<serde_json::Value> = (0..60)
        .map(|i| {
            let name = if i < 40 {
                format!("FromUser{i}")
            } else {
                format!("n{i}")
            };
            serde_json::json!({"externalId": format!("ext-{i}"), "fields": {
                "email": format!("p{i}@example.com"), "first_name": name, "score": 10}})
        })
        .collect();
    let calls = w.inbound(&records, w.hs.now);
    assert_eq!(
        calls, 1,
        "40 changed records in one batch upsert; 20 unchanged cause none"
    );
    for (i, id) in ids.iter().enumerate().take(60) {
        let want = if i < 40 {
            format!("FromUser{i}")
        } else {
            format!("n{i}")
        };
        assert_eq!(w.hs.live[id].props["firstname"], want);
    }
    // The user's system holds what it sent.
    let now_in_hubspot = w.hs.mapped(&w.map());
    for (i, id) in ids.iter().enumerate().take(40) {
        let rec = w.dest.records.get_mut(&id.to_string()).expect("delivered");
        *rec = now_in_hubspot[&id.to_string()].clone();
        assert_eq!(rec.as_map()["first_name"], format!("FromUser{i}").as_str());
    }

    // The next outbound run reads the 40 written records (modified after its cursor) and
    // delivers none of them back.
    w.dest.clear_counts();
    let back = w.run(Mode::Incremental, quiet.next_cursor(), no_hook(), None);
    assert_eq!(back.report().counts.read, 40);
    assert_eq!(back.report().counts.unchanged, 40);
    assert_eq!(
        w.dest.count(Op::Upsert),
        0,
        "our writes came back as changes"
    );
    w.assert_equal();

    // A real change in HubSpot to one of them still goes out, once.
    w.hs.now += 60_000;
    w.hs.update(ids[3], "firstname", "ChangedInHubSpot");
    w.run(Mode::Incremental, back.next_cursor(), no_hook(), None);
    assert_eq!(w.dest.count(Op::Upsert), 1);
    assert_eq!(
        w.dest.applied.get(&(ids[3].to_string(), Op::Upsert)),
        Some(&1)
    );
    w.assert_equal();

    // Conflicts: HubSpot changed first_name of ids[3] (delivered above, its time stamped in
    // the store); the user's system sends a value it changed before that: HubSpot's newer
    // value wins (the default rule), nothing is written, and the conflict is reported with
    // both values. A user change made after HubSpot's is written, reported as the user's win.
    let hubspot_at = i64::try_from(w.hs.live[&ids[3]].modified).expect("ms");
    let record = |name: &str, at: i64| {
        serde_json::json!({"externalId": "ext-3", "updatedAt": at, "fields": {
            "email": "p3@example.com", "first_name": name, "score": 10}})
    };
    let (calls, conflicts) =
        w.inbound_with_conflicts(&[record("UserOlder", hubspot_at - 5_000)], w.hs.now);
    assert_eq!(calls, 0, "HubSpot's newer change wins: nothing to write");
    assert_eq!(conflicts.len(), 1);
    let c = &conflicts[0];
    assert_eq!(c.field, "first_name");
    assert_eq!(c.winner, super::inbound::Side::HubSpot);
    assert_eq!(c.hubspot_value, serde_json::json!("ChangedInHubSpot"));
    assert_eq!(c.user_value, serde_json::json!("UserOlder"));
    assert_eq!(c.hubspot_changed_at, hubspot_at);
    assert_eq!(w.hs.live[&ids[3]].props["firstname"], "ChangedInHubSpot");

    let (calls, conflicts) =
        w.inbound_with_conflicts(&[record("UserNewer", hubspot_at + 5_000)], w.hs.now);
    assert_eq!(calls, 1);
    assert_eq!(conflicts.len(), 1);
    assert_eq!(conflicts[0].winner, super::inbound::Side::User);
    assert_eq!(w.hs.live[&ids[3]].props["firstname"], "UserNewer");
    // Written: the two sides agree again, so the next user change is no conflict.
    let (calls, conflicts) =
        w.inbound_with_conflicts(&[record("UserAgain", hubspot_at - 9_000)], w.hs.now);
    assert_eq!((calls, conflicts.len()), (1, 0));
}
