//! From pending updates to batch upserts, and from HubSpot's answer to per-record outcomes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ConflictRule, InboundConfig, PendingUpdate, SourceRef};
use crate::api::{interpret, ApiConfig, ApiError, BatchResponse, ErrorDetail, UpdateInput};
use crate::diff::EchoGuard;
use crate::mapping::{FieldDirection, ObjectMap, Record};
use crate::records::{Commit, Stored, Write};

/// What the store knows of one record, looked up by the update's key through the host's id map
/// (normalised `idProperty` value → HubSpot id). A record the store has never seen is
/// `Known::default()` (or simply absent from the map given to [`plan`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Known {
    /// The HubSpot id, when known.
    pub hubspot_id: Option<String>,
    /// The record's stored state ([`crate::records`]: the snapshot enrichment and sync share).
    pub stored: Stored,
    /// Per destination field, when HubSpot changed it (Unix ms) since the last inbound write of
    /// that field: what the host records when it commits a change read from HubSpot (webhook
    /// enrichment, outbound sync), and clears for the fields of a [`Written`]. A field without
    /// an entry is taken as unchanged in HubSpot since the last sync.
    pub hubspot_changed_at: BTreeMap<String, i64>,
}

/// Which side's value won a conflict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// HubSpot's value was kept: the user's value was not written.
    #[serde(rename = "hubspot")]
    HubSpot,
    /// The user's value was written over HubSpot's.
    User,
}

/// Both sides changed one field since the last sync. Reported in the receipt, so the losing
/// value is not silently dropped. The values are the user's data: store them with the receipt,
/// never log them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conflict {
    /// The destination field.
    pub field: String,
    /// Who won.
    pub winner: Side,
    /// HubSpot's value (destination form).
    pub hubspot_value: Value,
    /// When HubSpot changed it (Unix ms).
    pub hubspot_changed_at: i64,
    /// The user's value.
    pub user_value: Value,
    /// When the user's system changed it (Unix ms).
    pub user_changed_at: i64,
}

/// A record that needs no write: nothing changed, or every change lost a conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct Unchanged {
    /// The normalised `idProperty` value.
    pub key: String,
    /// The request records it answers.
    pub sources: Vec<SourceRef>,
    /// Conflicts HubSpot won.
    pub conflicts: Vec<Conflict>,
}

/// One upsert input of a [`InboundBatch`].
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedInput {
    /// Its `objectWriteTraceId`, unique in the batch.
    pub trace_id: String,
    /// The properties to write, in HubSpot's formats: only the changed ones.
    pub properties: BTreeMap<String, String>,
    /// The conflicts met (the user won those written; HubSpot those left out).
    pub conflicts: Vec<Conflict>,
    /// The update it comes from (put back on [`BatchResult::Retry`]).
    pub update: PendingUpdate,
}

/// At most [`InboundConfig::batch_size`] upserts by `idProperty`, one HubSpot call.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundBatch {
    /// The inputs, one per record, keys unique.
    pub inputs: Vec<PlannedInput>,
}

/// What [`plan`] decided.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InboundPlan {
    /// The writes, in batches.
    pub batches: Vec<InboundBatch>,
    /// The records that need no write.
    pub unchanged: Vec<Unchanged>,
}

/// Diffs each update against what the store knows (`known`, by key) and cuts the writes into
/// batches (see the module docs of [`super`]).
///
/// Per field given: equal to the stored value (compared by field type, so `1.0` equals `1` and
/// a date in milliseconds equals the same date as text) → not written. Different, and HubSpot
/// changed the field since the last sync ([`Known::hubspot_changed_at`]) → a conflict: a
/// `to_hubspot` field is the user's, so the user wins; a `both` field follows
/// `config.conflict_rule` (by default the newer change wins, HubSpot on a tie). Lost fields are
/// not written; every conflict is reported.
pub fn plan(
    map: &ObjectMap,
    config: &InboundConfig,
    updates: Vec<PendingUpdate>,
    known: &BTreeMap<String, Known>,
) -> InboundPlan {
    let absent = Known::default();
    let mut writes = Vec::new();
    let mut unchanged = Vec::new();
    for update in updates {
        let known = known.get(&update.key).unwrap_or(&absent);
        let current = known
            .stored
            .snapshot
            .as_deref()
            .and_then(|s| Record::from_snapshot(s).ok())
            .unwrap_or_default();
        let mut patch = Record::new();
        let mut conflicts = Vec::new();
        for (field, value) in update.fields.as_map() {
            let Some(direction) = map.field_direction(field) else {
                continue;
            };
            if direction == FieldDirection::FromHubSpot
                || map.same_value(field, current.get(field), Some(value))
            {
                continue;
            }
            if let Some(&hubspot_at) = known.hubspot_changed_at.get(field) {
                let user_at = update.changed_at.get(field).copied().unwrap_or(i64::MIN);
                let winner = match (direction, config.conflict_rule) {
                    (FieldDirection::ToHubSpot, _) | (_, ConflictRule::UserWins) => Side::User,
                    (_, ConflictRule::HubSpotWins) => Side::HubSpot,
                    (_, ConflictRule::NewerWins) if user_at > hubspot_at => Side::User,
                    (_, ConflictRule::NewerWins) => Side::HubSpot,
                };
                conflicts.push(Conflict {
                    field: field.clone(),
                    winner,
                    hubspot_value: current.get(field).cloned().unwrap_or(Value::Null),
                    hubspot_changed_at: hubspot_at,
                    user_value: value.clone(),
                    user_changed_at: user_at,
                });
                if winner == Side::HubSpot {
                    continue;
                }
            }
            patch.insert(field.clone(), value.clone());
        }
        // Validated when the request was parsed; a map changed since then may refuse a value:
        // such a field is left out rather than failing the whole record.
        let properties = map.to_hubspot(&patch).unwrap_or_else(|_| {
            let mut ok = BTreeMap::new();
            for (field, value) in patch.as_map() {
                let mut one = Record::new();
                one.insert(field.clone(), value.clone());
                if let Ok(p) = map.to_hubspot(&one) {
                    ok.extend(p);
                }
            }
            ok
        });
        if properties.is_empty() {
            unchanged.push(Unchanged {
                key: update.key,
                sources: update.sources,
                conflicts,
            });
        } else {
            writes.push((properties, conflicts, update));
        }
    }
    let size = config.batch_size.clamp(1, crate::api::MAX_BATCH_INPUTS);
    let mut batches: Vec<InboundBatch> = Vec::new();
    for (n, (properties, conflicts, update)) in writes.into_iter().enumerate() {
        if n % size == 0 {
            batches.push(InboundBatch {
                inputs: Vec::with_capacity(size),
            });
        }
        if let Some(batch) = batches.last_mut() {
            batch.inputs.push(PlannedInput {
                trace_id: format!("in-{}", n % size),
                properties,
                conflicts,
                update,
            });
        }
    }
    InboundPlan { batches, unchanged }
}

/// One record HubSpot accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The normalised `idProperty` value (map it to [`Self::hubspot_id`] in the id map).
    pub key: String,
    /// The record's HubSpot id, from the response.
    pub hubspot_id: String,
    /// Whether the upsert created the record (`new`).
    pub created: bool,
    /// The destination fields written, in canonical form: what [`Self::commit`] puts in the
    /// snapshot; clear their [`Known::hubspot_changed_at`] entries.
    pub patch: Record,
    /// The echo guard of this write (keep it with a short expiry, as enrichment's): HubSpot's
    /// webhook for it is recognised and not forwarded back. Made from the values HubSpot
    /// returned where it returned them, since HubSpot may store another spelling than the one
    /// written (phone numbers).
    pub echo: EchoGuard,
    /// The written properties HubSpot returned with another value than the one written, after
    /// normalisation by field type: HubSpot rewrote it (a phone number's format) or did not take
    /// it (`lifecyclestage` only moves forward:
    /// <https://developers.hubspot.com/docs/api/crm/contacts>). The snapshot keeps the user's
    /// value, so sending it again is no change; the receipt reports these names.
    pub rewritten: Vec<String>,
    /// The request records it answers.
    pub sources: Vec<SourceRef>,
    /// Conflicts met.
    pub conflicts: Vec<Conflict>,
}

impl Written {
    /// The commit that records this write in the store: the snapshot stored at
    /// [`Self::hubspot_id`] now (`current`), patched with the written fields, expecting its
    /// version. On [`crate::records::CommitOutcome::Conflict`] read the record again and call this
    /// again: the patch is re-applied to the newer snapshot, nothing is lost.
    pub fn commit(&self, current: &Stored) -> Commit {
        let mut record = current
            .snapshot
            .as_deref()
            .and_then(|s| Record::from_snapshot(s).ok())
            .unwrap_or_default();
        for (field, value) in self.patch.as_map() {
            record.insert(field.clone(), value.clone());
        }
        // Written: the two sides agree on these fields again.
        crate::records::clear_changed_at(
            &mut record,
            self.patch.as_map().keys().map(String::as_str),
        );
        Commit {
            id: self.hubspot_id.clone(),
            expect: Some(current.version),
            write: Write::Put(record.to_snapshot()),
        }
    }
}

/// One record HubSpot refused: a dead letter (serialisable; it holds the user's values, so it
/// is kept like any dead letter, never logged). Re-drive it by putting [`Self::update`] back
/// ([`super::Coalescer::put_back`]) once the cause is fixed, or by the user sending the record
/// again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    /// The normalised `idProperty` value.
    pub key: String,
    /// HubSpot's code (`INVALID_OPTION`, `PROPERTY_DOESNT_EXIST`…), else its category
    /// (`VALIDATION_ERROR`), else `inbound_no_result` when HubSpot said nothing of the input.
    pub code: String,
    /// The properties HubSpot named (`context.propertyName`); never values.
    pub properties: Vec<String>,
    /// The update that failed, with the request records it answers (`update.sources`).
    pub update: PendingUpdate,
}

/// What became of a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchResult {
    /// HubSpot decided every input (200, 207, or a 4xx that will not pass by retrying).
    Done {
        /// The accepted inputs.
        written: Vec<Written>,
        /// The refused inputs.
        failed: Vec<Failed>,
    },
    /// Nothing was decided and the same batch may pass later (429, 5xx, 423, 477, 401, or an
    /// unreadable 2xx: an upsert is safe to repeat). Put `updates` back
    /// ([`super::Coalescer::put_back`]); the gate's retry policy says when
    /// ([`crate::api::decide`]).
    Retry {
        /// What HubSpot answered.
        error: ApiError,
        /// The batch's updates.
        updates: Vec<PendingUpdate>,
    },
    /// HubSpot refused the whole batch (a 400 or 409 that writes nothing) for what some inputs
    /// carry: those it could name fail, and the rest is to be sent again, now, as the batches
    /// of `again` (nothing of them was written). HubSpot documents per-input answers (207) only
    /// for batch *create* with `objectWriteTraceId`
    /// (<https://developers.hubspot.com/docs/api-reference/error-handling>); a batch upsert with
    /// a property the portal does not have is refused whole (`VALIDATION_ERROR`, an
    /// `errors[]` entry `PROPERTY_DOESNT_EXIST` naming it in `context.propertyName`), so one
    /// bad record must not stop the 99 others.
    ///
    /// - The error names properties, trace ids or ids: the inputs carrying them fail with its
    ///   code; the others go again as one batch.
    /// - It names nothing an input carries: the batch is cut in two halves, each sent again;
    ///   a single input is then failed with the code. At most ⌈log2 100⌉ + 1 = 8 rounds, so
    ///   one bad input costs at most ~2 × 7 extra calls.
    Split {
        /// The inputs the error names.
        failed: Vec<Failed>,
        /// The rest, to send again (each batch keeps its inputs' trace ids).
        again: Vec<InboundBatch>,
    },
}

impl InboundBatch {
    /// The `POST …/{objectType}/batch/upsert` request: every input with `idProperty`, `id` =
    /// its key, its changed properties and its `objectWriteTraceId`.
    pub fn request(
        &self,
        api: &ApiConfig,
        object_type: &str,
        id_property: &str,
    ) -> http::Request<Vec<u8>> {
        let inputs: Vec<UpdateInput> = self
            .inputs
            .iter()
            .map(|i| UpdateInput {
                id: i.update.key.clone(),
                properties: i.properties.clone(),
                object_write_trace_id: Some(i.trace_id.clone()),
            })
            .collect();
        // A batch is at most MAX_BATCH_INPUTS inputs (plan), so this is one request.
        api.batch_upsert(object_type, id_property, &inputs)
            .swap_remove(0)
    }

    /// Interprets HubSpot's answer to [`Self::request`] (see [`BatchResult`]).
    ///
    /// Results are matched to inputs by `objectWriteTraceId`, else by the `idProperty` value
    /// they carry; errors by `context.objectWriteTraceId`, else `context.ids`/`id` (the
    /// `idProperty` values). An input neither result nor error names fails with the code of an
    /// error that names no input (HubSpot does not always say which input failed), else
    /// `inbound_no_result`.
    pub fn complete(
        self,
        map: &ObjectMap,
        id_property: &str,
        status: u16,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> BatchResult {
        self.settle(
            map,
            id_property,
            interpret::<BatchResponse>(status, headers, body),
        )
    }

    /// [`Self::complete`] for an answer already interpreted (a host whose executor ran core's
    /// retry policy and hands back the response or the last [`ApiError`]).
    pub fn settle(
        self,
        map: &ObjectMap,
        id_property: &str,
        answer: Result<BatchResponse, ApiError>,
    ) -> BatchResult {
        let (results, errors) = match answer {
            Ok(response) => (response.results, response.errors),
            Err(error) => match &error {
                ApiError::Validation { body } | ApiError::Conflict { body, .. } => {
                    match self.split(map, id_property, body) {
                        Ok(split) => return split,
                        Err(this) => return this.refuse_all(&error, body),
                    }
                }
                ApiError::Forbidden { body }
                | ApiError::NotFound { body }
                | ApiError::Other { body, .. } => {
                    let (results, errors) = whole_refusal(&error, body);
                    (results, errors)
                }
                _ => {
                    return BatchResult::Retry {
                        error,
                        updates: self.inputs.into_iter().map(|i| i.update).collect(),
                    }
                }
            },
        };
        let key_of = |value: &str| map.normalise_hubspot(id_property, Some(value));
        let index_of = |trace: Option<&str>, ids: &[&str]| -> Option<usize> {
            trace
                .and_then(|t| self.inputs.iter().position(|i| i.trace_id == t))
                .or_else(|| {
                    ids.iter().find_map(|id| {
                        let key = key_of(id);
                        self.inputs.iter().position(|i| i.update.key == key)
                    })
                })
        };
        let mut outcome: Vec<Option<Decided>> = vec![None; self.inputs.len()];
        for result in &results {
            let ids: Vec<&str> = result
                .properties
                .get(id_property)
                .and_then(Option::as_deref)
                .into_iter()
                .collect();
            let Some(i) = index_of(result.object_write_trace_id.as_deref(), &ids) else {
                continue;
            };
            let input = &self.inputs[i];
            let mut echoed = input.properties.clone();
            let mut rewritten = Vec::new();
            for (name, value) in echoed.iter_mut() {
                if let Some(returned) = result.properties.get(name) {
                    let returned = returned.as_deref().unwrap_or("");
                    if map.normalise_hubspot(name, Some(returned))
                        != map.normalise_hubspot(name, Some(value))
                    {
                        rewritten.push(name.clone());
                    }
                    returned.clone_into(value);
                }
            }
            outcome[i] = Some(Decided::Written(Written {
                key: input.update.key.clone(),
                hubspot_id: result.id.clone(),
                created: result.new.unwrap_or(false),
                patch: canonical_patch(map, &input.properties),
                echo: EchoGuard::new(map, &result.id, &echoed),
                rewritten,
                sources: input.update.sources.clone(),
                conflicts: input.conflicts.clone(),
            }));
        }
        let mut unnamed: Option<&ErrorDetail> = None;
        for error in &errors {
            let traces = error.context_values("objectWriteTraceId");
            let mut ids = error.context_values("ids");
            ids.extend(error.context_values("id"));
            let mut named = Vec::new();
            for trace in &traces {
                named.extend(index_of(Some(trace), &[]));
            }
            if named.is_empty() {
                for id in &ids {
                    named.extend(index_of(None, &[id]));
                }
            }
            if named.is_empty() {
                unnamed = unnamed.or(Some(error));
            }
            for i in named {
                if outcome[i].is_none() {
                    outcome[i] = Some(Decided::Failed(failed(&self.inputs[i], Some(error))));
                }
            }
        }
        let mut written = Vec::new();
        let mut refused = Vec::new();
        for (i, o) in outcome.into_iter().enumerate() {
            match o.unwrap_or_else(|| Decided::Failed(failed(&self.inputs[i], unnamed))) {
                Decided::Written(w) => written.push(w),
                Decided::Failed(f) => refused.push(f),
            }
        }
        BatchResult::Done {
            written,
            failed: refused,
        }
    }
}

impl InboundBatch {
    /// A whole-batch refusal (see [`BatchResult::Split`]): `Err(self)` when it cannot be split
    /// (one input, or every input named).
    fn split(
        self,
        map: &ObjectMap,
        id_property: &str,
        body: &crate::api::ErrorBody,
    ) -> Result<BatchResult, Self> {
        if self.inputs.len() < 2 {
            return Err(self);
        }
        let details: Vec<&ErrorDetail> = body.errors.iter().collect();
        let names = |field: &str| -> Vec<String> {
            let mut out: Vec<String> = details
                .iter()
                .flat_map(|d| d.context_values(field))
                .chain(body_context(body, field))
                .map(str::to_owned)
                .collect();
            out.sort();
            out.dedup();
            out
        };
        let properties = names("propertyName");
        let traces = names("objectWriteTraceId");
        let ids: Vec<String> = names("ids")
            .into_iter()
            .chain(names("id"))
            .map(|id| map.normalise_hubspot(id_property, Some(&id)))
            .collect();
        // The detail that names an input, for its code.
        let detail_of = |input: &PlannedInput| -> Option<&ErrorDetail> {
            details.iter().copied().find(|d| {
                d.context_values("propertyName")
                    .iter()
                    .any(|p| input.properties.contains_key(*p))
                    || d.context_values("objectWriteTraceId")
                        .contains(&input.trace_id.as_str())
            })
        };
        let named = |input: &PlannedInput| {
            properties.iter().any(|p| input.properties.contains_key(p))
                || traces.contains(&input.trace_id)
                || ids.contains(&input.update.key)
        };
        let (bad, good): (Vec<PlannedInput>, Vec<PlannedInput>) =
            self.inputs.into_iter().partition(|i| named(i));
        if good.is_empty() {
            return Err(Self { inputs: bad });
        }
        if !bad.is_empty() {
            let whole = ErrorDetail {
                code: body.errors.iter().find_map(|e| e.code.clone()),
                category: body.category.clone(),
                context: body.context.clone(),
                ..ErrorDetail::default()
            };
            let failed = bad
                .iter()
                .map(|i| failed(i, Some(detail_of(i).unwrap_or(&whole))))
                .collect();
            return Ok(BatchResult::Split {
                failed,
                again: vec![Self { inputs: good }],
            });
        }
        // Nothing named: halve, each half keeping its trace ids (unique within it).
        let mut first = good;
        let second = first.split_off(first.len() / 2);
        Ok(BatchResult::Split {
            failed: Vec::new(),
            again: vec![Self { inputs: first }, Self { inputs: second }],
        })
    }

    /// Every input fails with the refusal's code.
    fn refuse_all(self, error: &ApiError, body: &crate::api::ErrorBody) -> BatchResult {
        let (_, errors) = whole_refusal(error, body);
        let unnamed = errors.last();
        BatchResult::Done {
            written: Vec::new(),
            failed: self
                .inputs
                .iter()
                .map(|i| {
                    let own = errors.iter().find(|e| {
                        e.context_values("propertyName")
                            .iter()
                            .any(|p| i.properties.contains_key(*p))
                    });
                    failed(i, own.or(unnamed))
                })
                .collect(),
        }
    }
}

/// The string values of the error body's own `context[field]`.
fn body_context<'a>(body: &'a crate::api::ErrorBody, field: &str) -> Vec<&'a str> {
    match body.context.get(field) {
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(s)) => vec![s.as_str()],
        _ => Vec::new(),
    }
}

/// A refusal of the whole call: its `errors[]`, then one entry with its category that names no
/// input (inputs nothing names fail with it).
fn whole_refusal(
    error: &ApiError,
    body: &crate::api::ErrorBody,
) -> (Vec<crate::api::SimpleObject>, Vec<ErrorDetail>) {
    let mut errors = body.errors.clone();
    errors.push(ErrorDetail {
        category: Some(
            body.category
                .clone()
                .unwrap_or_else(|| error.code().to_owned()),
        ),
        ..ErrorDetail::default()
    });
    (Vec::new(), errors)
}

/// What became of one input.
#[derive(Clone)]
enum Decided {
    Written(Written),
    Failed(Failed),
}

fn failed(input: &PlannedInput, error: Option<&ErrorDetail>) -> Failed {
    let code = error
        .and_then(|e| e.code.clone().or_else(|| e.category.clone()))
        .unwrap_or_else(|| "inbound_no_result".to_owned());
    let properties = error
        .map(|e| {
            e.context_values("propertyName")
                .into_iter()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Failed {
        key: input.update.key.clone(),
        code,
        properties,
        update: input.update.clone(),
    }
}

/// The destination form of the written properties (what enrichment would store for them),
/// only for the properties written: defaults and constants are not invented.
fn canonical_patch(map: &ObjectMap, properties: &BTreeMap<String, String>) -> Record {
    let as_read: BTreeMap<String, Option<String>> = properties
        .iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect();
    let full = map.to_destination(&as_read).unwrap_or_default();
    let mut patch = Record::new();
    for property in properties.keys() {
        if let Some(field) = map.field_of_property(property) {
            if let Some(value) = full.get(field) {
                patch.insert(field, value.clone());
            }
        }
    }
    patch
}
