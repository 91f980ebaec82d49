//! One object type's flush in one alarm of the host's inbound Durable Object, as a poll-style
//! machine: [`InboundFlush`] takes the due updates (oldest first) a chunk at a time, plans each
//! chunk against what the store knows, sends its batches in waves within the alarm's budgets,
//! and says what goes back to pending, what leaves the in-flight table and what is
//! dead-lettered. The host performs each [`InboundFlushAsk`] (Durable Object SQL, the record
//! store, HubSpot through its gate, the dead-letter queue) and feeds the answers back.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::batch::{plan, BatchResult, Failed, InboundBatch, InboundPlan, Known};
use super::{InboundConfig, PendingUpdate};
use crate::mapping::{ObjectMap, Record};
use crate::records::{Stored, WriteFence};

/// Batch upserts in flight at once: an invocation keeps at most 6 connections (Cloudflare).
const MAX_IN_FLIGHT: usize = 6;

/// What the host does next for an [`InboundFlush`].
#[derive(Debug, Clone, PartialEq)]
pub enum InboundFlushAsk {
    /// Move `fresh` (taken from pending) in flight before any await (a flush that dies finds
    /// them there), then look up what the store knows of the chunk's `keys` (the id map, then
    /// the record store: [`Known::of`]) and feed it to [`InboundFlush::on_known`].
    Take {
        /// The updates newly taken from pending.
        fresh: Vec<PendingUpdate>,
        /// The keys of the whole chunk (those carried from the last chunk included).
        keys: Vec<String>,
    },
    /// Before the chunk's first batch upsert: raise this write fence in the record store
    /// ([`WriteFence`]: HubSpot's webhooks for these writes wait until they are committed),
    /// then ask again. Lowered at [`InboundFlushAsk::Settle`].
    Fence(WriteFence),
    /// Send these batch upserts at once (through the gate); commit each accepted batch's
    /// written records as soon as HubSpot answers it (map their ids, keep their echo guards),
    /// record the results in the receipts, and feed them to [`InboundFlush::on_sent`].
    Send(Vec<InboundBatch>),
    /// The chunk is over: dead-letter `failed` (reason `inbound_rejected`), then, with no await
    /// between the two, put `leftover` back in pending (under anything newer) and delete
    /// `done` from the in-flight table; then lower the write fence when `lower` (one was raised
    /// for the chunk).
    Settle {
        /// The records HubSpot refused.
        failed: Vec<Failed>,
        /// What was not sent now (over budget, or HubSpot asked to wait).
        leftover: Vec<PendingUpdate>,
        /// The chunk's keys no longer in flight.
        done: Vec<String>,
        /// Whether the chunk raised a [`InboundFlushAsk::Fence`] to lower now.
        lower: bool,
    },
    /// The flush is over: put `put_back` (planned, held for a batch that never came) back in
    /// pending and delete their keys from the in-flight table. `retry`: HubSpot (or the way
    /// to it) asked to wait; the type's pending writes wait for the retry alarm.
    Done {
        /// Back to pending.
        put_back: Vec<PendingUpdate>,
        /// Whether HubSpot asked to wait.
        retry: bool,
    },
}

/// What a flush did, for its log line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InboundFlushCounts {
    /// Updates taken from pending.
    pub updates: usize,
    /// Updates with nothing to write.
    pub unchanged: usize,
    /// Batch upserts sent.
    pub calls: usize,
    /// Records written.
    pub written: usize,
    /// Records HubSpot refused (dead-lettered).
    pub failed: usize,
    /// Updates put back for a retry.
    pub retried: usize,
}

#[derive(Debug, Default)]
struct Chunk {
    keys: Vec<String>,
    updates: Vec<PendingUpdate>,
    /// Whether more is due after this chunk (a partial last batch then waits for it).
    more: bool,
    planned: bool,
    batches: Vec<InboundBatch>,
    leftover: Vec<PendingUpdate>,
    held: Vec<PendingUpdate>,
    failed: Vec<Failed>,
    /// The fence to raise before the first send; `raised` once asked.
    fence: Option<WriteFence>,
    raised: bool,
}

/// One type's flush within an alarm's budgets: `budget` batch upserts, and `kv_left` KV
/// operations for echo guards (a wave of batches is admitted only if every record of it could
/// need one). Each chunk is as many updates as the budget could write; a last, partial batch
/// waits for the next chunk when more is due, so that batches stay full. Updates never taken
/// stay pending untouched.
#[derive(Debug)]
pub struct InboundFlush<'a> {
    map: &'a ObjectMap,
    config: &'a InboundConfig,
    queue: VecDeque<PendingUpdate>,
    /// Planned as changed, held for the next chunk's batches: already in flight.
    carry: Vec<PendingUpdate>,
    budget: usize,
    kv_left: usize,
    retry: bool,
    chunk: Option<Chunk>,
    counts: InboundFlushCounts,
}

impl Known {
    /// What the store knows of a record whose HubSpot id is `hubspot_id`: its stored state
    /// (`None`: never stored) and, from the snapshot's change times
    /// ([`crate::records::changed_at`]), when HubSpot changed each field.
    pub fn of(hubspot_id: &str, stored: Option<&Stored>) -> Self {
        Self {
            hubspot_id: Some(hubspot_id.to_owned()),
            stored: stored.cloned().unwrap_or_else(Stored::absent),
            hubspot_changed_at: stored
                .and_then(|s| s.snapshot.as_deref())
                .and_then(|s| Record::from_snapshot(s).ok())
                .map(|r| crate::records::changed_at(&r))
                .unwrap_or_default(),
        }
    }
}

impl<'a> InboundFlush<'a> {
    /// A whole batch HubSpot did not decide (429, 5xx, timeout), or a flush that failed, is
    /// tried again after this long at least (the gate's governor paces it further).
    pub const RETRY_DELAY_MS: u64 = 10_000;

    /// When the inbound settings cannot be read (an invalid configuration), the pending
    /// updates stay pending and the flush is tried again after this long: a minute, the time
    /// for an operator's fix to be deployed, without an alarm loop meanwhile.
    pub const SETTINGS_RETRY_MS: u64 = 60_000;

    /// When this type wants the next alarm (Unix ms), its flush over, with `pending` its
    /// updates still pending and `retry` what [`InboundFlushAsk::Done`] said: after
    /// [`Self::RETRY_DELAY_MS`] when HubSpot asked to wait; at once when the alarm's budget is
    /// spent and updates remain (a new invocation); else when the next pending one is due.
    pub fn next_alarm_ms(
        &self,
        retry: bool,
        pending: &super::Coalescer,
        now_ms: u64,
    ) -> Option<u64> {
        if retry {
            Some(now_ms + Self::RETRY_DELAY_MS)
        } else if self.budget == 0 && !pending.is_empty() {
            Some(now_ms)
        } else {
            pending.next_due_ms(self.config.coalesce_window_ms)
        }
    }

    /// A flush of `due` (oldest first, [`super::Coalescer::take_due`]) within `budget` batch
    /// upserts and `kv_left` KV operations (what the alarm has left of both).
    pub fn new(
        map: &'a ObjectMap,
        config: &'a InboundConfig,
        due: Vec<PendingUpdate>,
        budget: usize,
        kv_left: usize,
    ) -> Self {
        Self {
            map,
            config,
            queue: due.into(),
            carry: Vec::new(),
            budget,
            kv_left,
            retry: false,
            chunk: None,
            counts: InboundFlushCounts::default(),
        }
    }

    /// Batch upserts the alarm has left (for the next type's flush).
    pub fn budget(&self) -> usize {
        self.budget
    }

    /// KV operations the alarm has left.
    pub fn kv_left(&self) -> usize {
        self.kv_left
    }

    /// What the flush did so far.
    pub fn counts(&self) -> InboundFlushCounts {
        self.counts
    }

    /// What to do next.
    pub fn ask(&mut self) -> InboundFlushAsk {
        let batch_size = self.config.batch_size.max(1);
        if let Some(chunk) = self.chunk.as_mut() {
            if let Some(fence) = chunk.fence.take() {
                chunk.raised = true;
                return InboundFlushAsk::Fence(fence);
            }
            if !chunk.batches.is_empty() {
                // Each record of the wave might need an echo guard: admitted only within the
                // KV budget.
                let kv_room = self.kv_left / batch_size;
                if kv_room == 0 {
                    self.budget = 0;
                }
                let n = chunk
                    .batches
                    .len()
                    .min(MAX_IN_FLIGHT)
                    .min(self.budget)
                    .min(kv_room);
                if n > 0 {
                    self.budget -= n;
                    self.counts.calls += n;
                    return InboundFlushAsk::Send(chunk.batches.drain(..n).collect());
                }
                // Over this invocation's budget: back to pending, flushed by the next alarm.
                chunk.leftover.extend(
                    chunk
                        .batches
                        .drain(..)
                        .flat_map(|b| b.inputs.into_iter().map(|i| i.update)),
                );
            }
            if chunk.planned {
                let chunk = self.chunk.take().unwrap_or_default();
                self.counts.failed += chunk.failed.len();
                let held: BTreeSet<&str> = chunk.held.iter().map(|u| u.key.as_str()).collect();
                let done = chunk
                    .keys
                    .into_iter()
                    .filter(|k| !held.contains(k.as_str()))
                    .collect();
                self.carry = chunk.held;
                return InboundFlushAsk::Settle {
                    failed: chunk.failed,
                    leftover: chunk.leftover,
                    done,
                    lower: chunk.raised,
                };
            }
        }
        if self.budget > 0 && !self.retry && (!self.queue.is_empty() || !self.carry.is_empty()) {
            let want = self.budget * batch_size;
            let mut fresh = Vec::new();
            while self.carry.len() + fresh.len() < want {
                match self.queue.pop_front() {
                    Some(u) => fresh.push(u),
                    None => break,
                }
            }
            self.counts.updates += fresh.len();
            let mut updates = std::mem::take(&mut self.carry);
            updates.extend(fresh.iter().cloned());
            let keys: Vec<String> = updates.iter().map(|u| u.key.clone()).collect();
            self.chunk = Some(Chunk {
                keys: keys.clone(),
                updates,
                more: !self.queue.is_empty(),
                ..Chunk::default()
            });
            return InboundFlushAsk::Take { fresh, keys };
        }
        InboundFlushAsk::Done {
            put_back: std::mem::take(&mut self.carry),
            retry: self.retry,
        }
    }

    /// What the store knows of the chunk's keys (those it has an id for; [`Known::of`]): the
    /// chunk is planned ([`plan`]). Returns the plan's unchanged records, for the receipts
    /// (its batches are the flush's).
    pub fn on_known(&mut self, known: &BTreeMap<String, Known>) -> InboundPlan {
        let Some(chunk) = self.chunk.as_mut().filter(|c| !c.planned) else {
            return InboundPlan::default();
        };
        let updates = std::mem::take(&mut chunk.updates);
        let mut planned = plan(self.map, self.config, updates, known);
        self.counts.unchanged += planned.unchanged.len();
        let mut batches = std::mem::take(&mut planned.batches);
        if chunk.more
            && batches
                .last()
                .is_some_and(|b| b.inputs.len() < self.config.batch_size)
        {
            if let Some(last) = batches.pop() {
                chunk.held.extend(last.inputs.into_iter().map(|i| i.update));
            }
        }
        // The fence over what the batches write: the HubSpot ids known, and creations (an
        // `idProperty` value with no id yet).
        let mut ids = Vec::new();
        let mut creates = false;
        for input in batches.iter().flat_map(|b| &b.inputs) {
            match known
                .get(&input.update.key)
                .and_then(|k| k.hubspot_id.as_ref())
            {
                Some(id) => ids.push(id.clone()),
                None => creates = true,
            }
        }
        let fence = WriteFence::new(ids, creates);
        chunk.fence = (!fence.is_empty()).then_some(fence);
        chunk.batches = batches;
        chunk.planned = true;
        planned
    }

    /// HubSpot's results of a [`InboundFlushAsk::Send`] wave (the accepted records committed):
    /// refused records are dead-lettered at the chunk's end, a split batch's rest is sent again
    /// first, a batch HubSpot asked to wait for goes back to pending and stops the flush after
    /// this chunk.
    pub fn on_sent(&mut self, results: Vec<BatchResult>) {
        let Some(chunk) = self.chunk.as_mut() else {
            return;
        };
        for result in results {
            match result {
                BatchResult::Done { written, failed } => {
                    // One echo guard per record HubSpot stored with another value.
                    let guards = written.iter().filter(|w| !w.rewritten.is_empty()).count();
                    self.kv_left = self.kv_left.saturating_sub(guards);
                    self.counts.written += written.len();
                    chunk.failed.extend(failed);
                }
                BatchResult::Split { failed, again } => {
                    chunk.failed.extend(failed);
                    // Sent again at once (the front of the queue: they were due first).
                    for b in again.into_iter().rev() {
                        chunk.batches.insert(0, b);
                    }
                }
                BatchResult::Retry { updates, .. } => {
                    self.counts.retried += updates.len();
                    chunk.leftover.extend(updates);
                    self.retry = true;
                }
            }
        }
    }
}

impl BatchResult {
    /// The receipts whose lines this result decides (a retry decides nothing).
    pub fn receipts(&self) -> BTreeSet<String> {
        match self {
            Self::Done { written, failed } => written
                .iter()
                .flat_map(|w| w.sources.iter())
                .chain(failed.iter().flat_map(|f| f.update.sources.iter()))
                .map(|s| s.receipt.clone())
                .collect(),
            Self::Split { failed, .. } => failed
                .iter()
                .flat_map(|f| f.update.sources.iter())
                .map(|s| s.receipt.clone())
                .collect(),
            Self::Retry { .. } => BTreeSet::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use serde_json::{json, Value};

    use super::*;
    use crate::api::ApiConfig;
    use crate::mapping::Mapping;
    use crate::sync::inbound::{parse_request, Coalescer};

    const MAP: &str = r#"{"objects":{"contacts":{"fields":[
        {"hubspot":"email","type":"email"},
        {"hubspot":"firstname","field":"first_name"}]}}}"#;

    fn map() -> ObjectMap {
        Mapping::from_json(MAP)
            .expect("map")
            .object("contacts")
            .expect("contacts")
            .clone()
    }

    fn config() -> InboundConfig {
        InboundConfig {
            max_records: 10_000,
            ..InboundConfig::for_object_type("contacts", None).expect("contacts")
        }
    }

    fn fields(i: usize) -> Value {
        json!({"email": format!("p{i}@example.com"), "first_name": format!("N{i}")})
    }

    /// `n` updates, oldest first, as the coalescer hands them out.
    fn due(map: &ObjectMap, config: &InboundConfig, n: usize) -> Vec<PendingUpdate> {
        let records: Vec<Value> = (0..n)
            .map(|i| json!({"externalId": format!("e{i}"), "fields": fields(i)}))
            .collect();
        let body = serde_json::to_vec(&json!({ "records": records })).expect("json");
        let parsed = parse_request(map, config, &body).expect("parses");
        let mut c = Coalescer::new();
        c.add("r", parsed, 0);
        c.take_due(u64::MAX, 0, 1)
    }

    /// The store knows records `0..unchanged` with the values sent: nothing to write for them.
    fn known(unchanged: usize) -> BTreeMap<String, Known> {
        known_of(0..unchanged)
    }

    fn known_of(records: impl IntoIterator<Item = usize>) -> BTreeMap<String, Known> {
        records
            .into_iter()
            .map(|i| {
                let stored = Stored {
                    version: 1,
                    snapshot: Some(fields(i).to_string()),
                };
                (
                    format!("p{i}@example.com"),
                    Known::of(&i.to_string(), Some(&stored)),
                )
            })
            .collect()
    }

    /// The store knows `records` with another first name than the one sent (each an update),
    /// record `i` under HubSpot id `id(i)`.
    fn known_changed(
        records: impl IntoIterator<Item = usize>,
        id: impl Fn(usize) -> String,
    ) -> BTreeMap<String, Known> {
        records
            .into_iter()
            .map(|i| {
                let email = format!("p{i}@example.com");
                let stored = Stored {
                    version: 1,
                    snapshot: Some(json!({"email": email, "first_name": "Old"}).to_string()),
                };
                (email, Known::of(&id(i), Some(&stored)))
            })
            .collect()
    }

    /// HubSpot accepting every input (200), or answering 503.
    fn answer(
        map: &ObjectMap,
        config: &InboundConfig,
        batch: InboundBatch,
        ok: bool,
    ) -> BatchResult {
        let request = batch.request(&ApiConfig::default(), "contacts", &config.id_property);
        let sent: Value = serde_json::from_slice(request.body()).expect("json");
        let results: Vec<Value> = sent["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .enumerate()
            .map(|(n, input)| {
                let mut properties = input["properties"].clone();
                properties["email"] = input["id"].clone();
                json!({"id": (1_000 + n).to_string(), "new": true,
                       "objectWriteTraceId": input["objectWriteTraceId"],
                       "properties": properties})
            })
            .collect();
        let (status, body) = if ok {
            (200, json!({"status": "COMPLETE", "results": results}))
        } else {
            (503, json!({"status": "error", "message": "unavailable"}))
        };
        batch.complete(
            map,
            &config.id_property,
            status,
            &http::HeaderMap::new(),
            body.to_string().as_bytes(),
        )
    }

    /// Drives a flush to its end as the host does: the sizes of the batches sent, and the
    /// final ask.
    fn drive(
        flush: &mut InboundFlush<'_>,
        store: &BTreeMap<String, Known>,
        ok: bool,
    ) -> (Vec<usize>, Vec<InboundFlushAsk>) {
        let (map, config) = (map(), config());
        let mut sent = Vec::new();
        let mut settled = Vec::new();
        // Every batch is sent under a raised fence, lowered when its chunk settles.
        let mut raised = false;
        for _ in 0..1_000 {
            match flush.ask() {
                InboundFlushAsk::Fence(fence) => {
                    assert!(!raised && !fence.is_empty(), "one fence per chunk");
                    raised = true;
                }
                InboundFlushAsk::Take { keys, .. } => {
                    let known: BTreeMap<String, Known> = keys
                        .iter()
                        .filter_map(|k| store.get(k).map(|v| (k.clone(), v.clone())))
                        .collect();
                    flush.on_known(&known);
                }
                InboundFlushAsk::Send(wave) => {
                    assert!(wave.len() <= MAX_IN_FLIGHT);
                    assert!(raised, "sent without a fence");
                    let results = wave
                        .into_iter()
                        .map(|b| {
                            sent.push(b.inputs.len());
                            answer(&map, &config, b, ok)
                        })
                        .collect();
                    flush.on_sent(results);
                }
                ask @ InboundFlushAsk::Settle { lower, .. } => {
                    assert_eq!(lower, raised, "the chunk's fence is lowered");
                    raised = false;
                    settled.push(ask);
                }
                ask @ InboundFlushAsk::Done { .. } => {
                    settled.push(ask);
                    return (sent, settled);
                }
            }
        }
        panic!("the flush does not end");
    }

    #[test]
    fn everything_due_within_the_budget_goes_in_full_batches() {
        let (map, config) = (map(), config());
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 250), 50, 900);
        let (sent, settled) = drive(&mut flush, &known(0), true);
        assert_eq!(sent, [100, 100, 50]);
        assert_eq!(flush.budget(), 47);
        assert_eq!(
            flush.kv_left(),
            900,
            "no echo guards: HubSpot stored what was written"
        );
        let c = flush.counts();
        assert_eq!(
            (c.updates, c.calls, c.written, c.unchanged),
            (250, 3, 250, 0)
        );
        let [InboundFlushAsk::Settle {
            failed,
            leftover,
            done,
            ..
        }, InboundFlushAsk::Done { put_back, retry }] = &settled[..]
        else {
            panic!("{settled:?}");
        };
        assert!(failed.is_empty() && leftover.is_empty() && put_back.is_empty() && !retry);
        assert_eq!(done.len(), 250, "every key leaves the in-flight table");
    }

    #[test]
    fn the_fence_covers_the_updated_ids_and_creations_before_any_send() {
        let (map, config) = (map(), config());
        // Records 0..50 are known with other values (updates), the rest have no id (creations).
        let store = known_changed(0..50, |i| format!("90{i}"));
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 150), 10, 900);
        assert!(matches!(flush.ask(), InboundFlushAsk::Take { .. }));
        flush.on_known(&store);
        let InboundFlushAsk::Fence(fence) = flush.ask() else {
            panic!("no fence before the sends");
        };
        let absent = Stored::absent();
        let kept = Stored {
            version: 1,
            snapshot: Some("{}".into()),
        };
        assert!(fence.covers("900", &kept) && fence.covers("9049", &kept));
        assert!(
            fence.covers("123456", &absent),
            "a creation's id is not known yet"
        );
        assert!(
            !fence.covers("123456", &kept),
            "another stored record is not held"
        );
        assert!(matches!(flush.ask(), InboundFlushAsk::Send(_)));

        // Only updates: no creation is covered.
        let all = known_changed(0..3, |i| i.to_string());
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 3), 10, 900);
        flush.ask();
        flush.on_known(&all);
        let InboundFlushAsk::Fence(fence) = flush.ask() else {
            panic!("no fence");
        };
        assert!(fence.covers("2", &kept) && !fence.covers("3", &absent));

        // Nothing to write: no fence.
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 3), 10, 900);
        flush.ask();
        flush.on_known(&known(3));
        assert!(matches!(
            flush.ask(),
            InboundFlushAsk::Settle { lower: false, .. }
        ));
    }

    #[test]
    fn a_partial_batch_waits_for_the_next_chunk_when_more_is_due() {
        let (map, config) = (map(), config());
        // 200 taken for a budget of 2 calls; 50 of them unchanged: 150 to write, the last 50
        // held and written with the next 50 due.
        let due = due(&map, &config, 250);
        // The first 50 taken are known unchanged.
        let store = known_of(due.iter().take(50).map(|u| {
            u.key
                .trim_start_matches('p')
                .trim_end_matches("@example.com")
                .parse::<usize>()
                .expect("index")
        }));
        let mut flush = InboundFlush::new(&map, &config, due, 2, 900);
        let first = flush.ask();
        let InboundFlushAsk::Take { fresh, keys } = &first else {
            panic!("{first:?}");
        };
        assert_eq!((fresh.len(), keys.len()), (200, 200));
        let planned = flush.on_known(&store);
        assert_eq!(planned.unchanged.len(), 50);
        assert!(planned.batches.is_empty(), "the batches are the flush's");
        let (sent, settled) = drive(&mut flush, &store, true);
        assert_eq!(sent, [100, 100], "two full batches, not 100 + 50 + 50");
        let InboundFlushAsk::Settle { done, .. } = &settled[0] else {
            panic!("{settled:?}");
        };
        assert_eq!(done.len(), 150, "the 50 held stay in flight");
        assert_eq!(flush.counts().updates, 250);
        assert_eq!(flush.budget(), 0);
    }

    #[test]
    fn over_budget_nothing_more_is_taken() {
        let (map, config) = (map(), config());
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 250), 2, 900);
        let (sent, settled) = drive(&mut flush, &known(0), true);
        assert_eq!(sent, [100, 100]);
        assert_eq!(
            flush.counts().updates,
            200,
            "the last 50 stay pending, untouched"
        );
        assert!(
            matches!(settled.last(), Some(InboundFlushAsk::Done { put_back, retry: false }) if put_back.is_empty())
        );
    }

    #[test]
    fn a_batch_hubspot_asks_to_wait_for_goes_back_and_stops_the_flush() {
        let (map, config) = (map(), config());
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 250), 50, 900);
        let (sent, settled) = drive(&mut flush, &known(0), false);
        assert_eq!(sent, [100, 100, 50], "the chunk's wave was out already");
        let [InboundFlushAsk::Settle {
            leftover, failed, ..
        }, InboundFlushAsk::Done { retry, .. }] = &settled[..]
        else {
            panic!("{settled:?}");
        };
        assert_eq!(leftover.len(), 250, "back to pending");
        assert!(failed.is_empty(), "nothing dead-lettered");
        assert!(retry);
        assert_eq!(flush.counts().retried, 250);
    }

    #[test]
    fn waves_stay_within_the_kv_budget_for_echo_guards() {
        let (map, config) = (map(), config());
        // Room for one batch's echo guards: one batch per wave.
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 250), 50, 150);
        let first = flush.ask();
        assert!(matches!(first, InboundFlushAsk::Take { .. }));
        flush.on_known(&BTreeMap::new());
        assert!(matches!(flush.ask(), InboundFlushAsk::Fence(_)));
        let InboundFlushAsk::Send(wave) = flush.ask() else {
            panic!("sends");
        };
        assert_eq!(wave.len(), 1);
        // No room at all: everything back to pending, the budget spent.
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 250), 50, 50);
        let (sent, settled) = drive(&mut flush, &known(0), true);
        assert!(sent.is_empty());
        let InboundFlushAsk::Settle { leftover, .. } = &settled[0] else {
            panic!("{settled:?}");
        };
        assert_eq!(leftover.len(), 250);
        assert_eq!(flush.budget(), 0);
    }

    #[test]
    fn known_reads_the_snapshot_change_times() {
        let snapshot = json!({"email": "a@example.com",
                              crate::records::CHANGED_AT_KEY: {"first_name": 5}});
        let stored = Stored {
            version: 2,
            snapshot: Some(snapshot.to_string()),
        };
        let k = Known::of("77", Some(&stored));
        assert_eq!(k.hubspot_id.as_deref(), Some("77"));
        assert_eq!(k.stored, stored);
        assert_eq!(
            k.hubspot_changed_at,
            crate::records::changed_at(
                &Record::from_snapshot(&snapshot.to_string()).expect("record")
            )
        );
        let absent = Known::of("78", None);
        assert_eq!(absent.stored, Stored::absent());
        assert!(absent.hubspot_changed_at.is_empty());
    }

    #[test]
    fn the_next_alarm_retries_continues_or_waits_for_the_window() {
        const NOW: u64 = 1_000_000;
        let (map, config) = (map(), config());
        let mut rest = Coalescer::new();
        rest.put_back(due(&map, &config, 3));
        // Budget left: when the oldest pending update is due (first seen at 0).
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 50), 50, 900);
        drive(&mut flush, &known(0), true);
        assert_eq!(
            flush.next_alarm_ms(false, &rest, NOW),
            Some(config.coalesce_window_ms)
        );
        assert_eq!(flush.next_alarm_ms(false, &Coalescer::new(), NOW), None);
        assert_eq!(
            flush.next_alarm_ms(true, &rest, NOW),
            Some(NOW + InboundFlush::RETRY_DELAY_MS),
            "HubSpot asked to wait"
        );
        // The budget spent: the rest at once, in a new invocation; nothing left: no alarm.
        let mut flush = InboundFlush::new(&map, &config, due(&map, &config, 250), 2, 900);
        drive(&mut flush, &known(0), true);
        assert_eq!(flush.budget(), 0);
        assert_eq!(flush.next_alarm_ms(false, &rest, NOW), Some(NOW));
        assert_eq!(flush.next_alarm_ms(false, &Coalescer::new(), NOW), None);
        assert_eq!(
            flush.next_alarm_ms(true, &rest, NOW),
            Some(NOW + InboundFlush::RETRY_DELAY_MS)
        );
    }

    #[test]
    fn an_alarm_still_to_come_and_sooner_is_kept() {
        const NOW: u64 = 1_000_000;
        let at = NOW + 5_000;
        assert_eq!(Coalescer::alarm_offset(None, at, NOW), Some(5_000));
        let sooner = i64::try_from(NOW + 1_000).expect("fits");
        assert_eq!(Coalescer::alarm_offset(Some(sooner), at, NOW), None);
        let same = i64::try_from(at).expect("fits");
        assert_eq!(Coalescer::alarm_offset(Some(same), at, NOW), None);
        let later = i64::try_from(at + 1).expect("fits");
        assert_eq!(Coalescer::alarm_offset(Some(later), at, NOW), Some(5_000));
        let past = i64::try_from(NOW).expect("fits");
        assert_eq!(Coalescer::alarm_offset(Some(past), at, NOW), Some(5_000));
        assert_eq!(Coalescer::alarm_offset(Some(-1), at, NOW), Some(5_000));
        // Due already: at once.
        assert_eq!(Coalescer::alarm_offset(None, NOW - 10, NOW), Some(0));
    }
}
