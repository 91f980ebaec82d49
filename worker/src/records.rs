//! The record store: one Durable Object per portal and object type (`RECORD_STORE`, instance
//! `{portalId}:{objectType}`, SQLite storage) holding each object's last forwarded snapshot and
//! its version. Strongly consistent and one writer at a time, so it is the single point of truth
//! per object that KV (eventually consistent, one write per second per key) cannot be.
//!
//! The rules are core's ([`hubspot_edge_core::records`]): reads return `(version, snapshot)`,
//! writes are compare-and-set on the version read, deletes keep a tombstone (no snapshot, so no
//! personal data). This module is the object and its client.
//!
//! It also keeps the inbound sync's write fences (core's [`WriteFence`], table `fences`, each
//! held at most [`WriteFence::LEASE_MS`]): a read answers which of its ids a live fence covers,
//! in the same call as their snapshots, so enrichment sees either the fence or the commit that
//! lowers it, never neither.
//!
//! Cost: one round trip per object type per queue batch to read, one to commit; two more per
//! inbound chunk (raise, lower).

use std::collections::HashMap;

use hubspot_edge_core::id::PortalId;
use hubspot_edge_core::records::{
    Applied, Commit, CommitBatch, CommitOutcome, LiveIdsWalk, Stored, Write, WriteFence,
};
use serde::{Deserialize, Serialize};
use worker::{
    durable_object, Date, DurableObject, Env, Method, Request, RequestInit, Response, Result,
    SqlStorageValue, State,
};

/// The Durable Object binding (wrangler.toml).
pub(crate) const BINDING: &str = "RECORD_STORE";
/// Durable Object SQLite: at most 100 bound parameters per query
/// (<https://developers.cloudflare.com/durable-objects/platform/limits/>).
const MAX_IDS_PER_QUERY: usize = 100;

// Externally tagged (`{"variant": {…}}`), not `tag = …`: an internally tagged enum is
// deserialised through serde's buffering `ContentDeserializer`, the largest generic cost in the
// wasm (BENCHMARKS.md, "Worker size"). Worker↔object only (one deployment): no stored format.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Ask {
    Get {
        ids: Vec<String>,
    },
    Commit {
        commits: Vec<WireCommit>,
    },
    /// Live ids (a snapshot, not a tombstone) in `[from, to)`, ascending, at most `limit`.
    LiveIds {
        from: u64,
        to: u64,
        limit: u32,
    },
    /// Raise a write fence for [`WriteFence::LEASE_MS`] at most.
    Raise {
        token: String,
        ids: Vec<String>,
        creates: bool,
    },
    /// Lower it.
    Lower {
        token: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct WireCommit {
    id: String,
    expect: Option<u64>,
    /// `None`: delete.
    snapshot: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireStored {
    id: String,
    version: u64,
    snapshot: Option<String>,
    /// A live write fence covers it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    writing: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct WireOutcome {
    id: String,
    committed: bool,
    version: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Records(Vec<WireStored>),
    Outcomes(Vec<WireOutcome>),
    Ids(Vec<u64>),
    Done,
}

fn instance(portal: PortalId, object_type: &str) -> String {
    format!("{portal}:{object_type}")
}

async fn call(env: &Env, portal: PortalId, object_type: &str, ask: &Ask) -> Result<Answer> {
    let stub = env
        .durable_object(BINDING)?
        .id_from_name(&instance(portal, object_type))?
        .get_stub()?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_body(Some(serde_json::to_string(ask)?.into()));
    let request = Request::new_with_init("https://records/", &init)?;
    let mut response = stub.fetch_with_request(request).await?;
    if response.status_code() != 200 {
        return Err(worker::Error::RustError(format!(
            "the record store answered {}",
            response.status_code()
        )));
    }
    Ok(serde_json::from_str(&response.text().await?)?)
}

/// The stored state of `ids` (absent ones at version 0).
pub(crate) async fn get(
    env: &Env,
    portal: PortalId,
    object_type: &str,
    ids: Vec<String>,
) -> Result<HashMap<String, Stored>> {
    Ok(lookup(env, portal, object_type, ids).await?.0)
}

/// The stored state of `ids` (absent ones at version 0), and those of them a live write fence
/// covers, read at one instant.
pub(crate) async fn lookup(
    env: &Env,
    portal: PortalId,
    object_type: &str,
    ids: Vec<String>,
) -> Result<(HashMap<String, Stored>, Vec<String>)> {
    let mut out = HashMap::with_capacity(ids.len());
    let mut writing = Vec::new();
    let Answer::Records(records) = call(env, portal, object_type, &Ask::Get { ids }).await? else {
        return Err(worker::Error::RustError("unexpected answer".into()));
    };
    for r in records {
        if r.writing {
            writing.push(r.id.clone());
        }
        let stored = Stored {
            version: r.version,
            snapshot: r.snapshot,
        };
        out.insert(r.id, stored);
    }
    Ok((out, writing))
}

/// Raises the write fence `fence` under `token` (the inbound sync, before its batch upserts).
pub(crate) async fn raise(
    env: &Env,
    portal: PortalId,
    object_type: &str,
    token: &str,
    fence: WriteFence,
) -> Result<()> {
    let ask = Ask::Raise {
        token: token.to_owned(),
        ids: fence.ids().map(str::to_owned).collect(),
        creates: fence.creates(),
    };
    call(env, portal, object_type, &ask).await.map(|_| ())
}

/// Lowers the write fence `token` (the inbound sync, its writes committed).
pub(crate) async fn lower(
    env: &Env,
    portal: PortalId,
    object_type: &str,
    token: &str,
) -> Result<()> {
    let ask = Ask::Lower {
        token: token.to_owned(),
    };
    call(env, portal, object_type, &ask).await.map(|_| ())
}

/// The live ids (snapshot kept, not a tombstone) in `[from, to)`, ascending: the store's side
/// of the reconcile's merge-join (core's `missing_in_window`). At most `max` ids (the caller's
/// bound), page by page as core's [`LiveIdsWalk`] asks; ids that are not numbers are not
/// listed (HubSpot ids are).
pub(crate) async fn live_ids(
    env: &Env,
    portal: PortalId,
    object_type: &str,
    from: u64,
    to: u64,
    max: usize,
) -> Result<Vec<u64>> {
    let mut walk = LiveIdsWalk::new(from, to, max);
    while let Some((from, to, limit)) = walk.ask() {
        let ask = Ask::LiveIds { from, to, limit };
        let Answer::Ids(ids) = call(env, portal, object_type, &ask).await? else {
            return Err(worker::Error::RustError("unexpected answer".into()));
        };
        walk.answer(ids);
    }
    Ok(walk.finish())
}

/// Commits that fail on purpose: `POST /admin/faults/record-store`.
pub(crate) static COMMIT_FAILURES: crate::fault::Countdown = crate::fault::Countdown::new();

/// Commits `commits`; one outcome per commit, in order.
pub(crate) async fn commit(
    env: &Env,
    portal: PortalId,
    object_type: &str,
    commits: &[Commit],
) -> Result<Vec<(String, CommitOutcome)>> {
    if COMMIT_FAILURES.fires() {
        return Err(worker::Error::RustError(
            "injected record store failure".into(),
        ));
    }
    let wire = commits
        .iter()
        .map(|c| WireCommit {
            id: c.id.clone(),
            expect: c.expect,
            snapshot: match &c.write {
                Write::Put(s) => Some(s.clone()),
                Write::Delete => None,
            },
        })
        .collect();
    match call(env, portal, object_type, &Ask::Commit { commits: wire }).await? {
        Answer::Outcomes(outcomes) => Ok(outcomes
            .into_iter()
            .map(|o| {
                let outcome = if o.committed {
                    CommitOutcome::Committed { version: o.version }
                } else {
                    CommitOutcome::Conflict { current: o.version }
                };
                (o.id, outcome)
            })
            .collect()),
        Answer::Records(_) | Answer::Ids(_) | Answer::Done => {
            Err(worker::Error::RustError("unexpected answer".into()))
        }
    }
}

/// The Durable Object. See the [module docs](self).
#[durable_object]
pub struct RecordStore {
    state: State,
}

impl std::fmt::Debug for RecordStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordStore").finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Row {
    id: String,
    version: f64,
    snapshot: Option<String>,
}

impl RecordStore {
    fn read(&self, ids: &[String]) -> Result<Vec<WireStored>> {
        let sql = self.state.storage().sql();
        let mut found: HashMap<String, (u64, Option<String>)> = HashMap::new();
        for chunk in ids.chunks(MAX_IDS_PER_QUERY) {
            let marks = vec!["?"; chunk.len()].join(",");
            let rows: Vec<Row> = sql
                .exec(
                    &format!("SELECT id, version, snapshot FROM records WHERE id IN ({marks})"),
                    chunk
                        .iter()
                        .map(|id| SqlStorageValue::from(id.as_str()))
                        .collect::<Vec<_>>(),
                )?
                .to_array()?;
            for row in rows {
                // Versions are small counters; SQLite integers arrive as JS numbers.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                found.insert(row.id, (row.version as u64, row.snapshot));
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                let (version, snapshot) = found.remove(id).unwrap_or((0, None));
                WireStored {
                    id: id.clone(),
                    version,
                    snapshot,
                    writing: false,
                }
            })
            .collect())
    }

    /// Marks the records a live write fence covers (core's [`WriteFence::covers`]).
    fn mark_writing(&self, records: &mut [WireStored]) -> Result<()> {
        let fences = self.fences()?;
        if fences.is_empty() {
            return Ok(());
        }
        for r in records {
            let stored = Stored {
                version: r.version,
                snapshot: r.snapshot.take(),
            };
            r.writing = fences.iter().any(|f| f.covers(&r.id, &stored));
            r.snapshot = stored.snapshot;
        }
        Ok(())
    }

    /// The live write fences (usually none: the table is empty between inbound chunks).
    fn fences(&self) -> Result<Vec<WriteFence>> {
        #[derive(Deserialize)]
        struct FenceRow {
            ids: String,
            creates: f64,
        }
        let now = Date::now().as_millis();
        let rows: Vec<FenceRow> = self
            .state
            .storage()
            .sql()
            .exec(
                "SELECT ids, creates FROM fences WHERE until_ms > ?",
                vec![SqlStorageValue::try_from_i64(
                    i64::try_from(now).unwrap_or(i64::MAX),
                )?],
            )?
            .to_array()?;
        // HubSpot ids are digits: one text, a line per id.
        Ok(rows
            .iter()
            .map(|r| {
                let ids = r.ids.lines().filter(|l| !l.is_empty()).map(str::to_owned);
                WriteFence::new(ids, r.creates != 0.0)
            })
            .collect())
    }

    /// Raises a fence over `ids` (and creations when `creates`) under `token` until
    /// [`WriteFence::LEASE_MS`] from now, dropping the fences that lapsed.
    fn raise(&self, token: &str, ids: &[String], creates: bool) -> Result<()> {
        let sql = self.state.storage().sql();
        let now = i64::try_from(Date::now().as_millis()).unwrap_or(i64::MAX);
        let lease = i64::try_from(WriteFence::LEASE_MS).unwrap_or(i64::MAX);
        sql.exec(
            "DELETE FROM fences WHERE until_ms <= ?",
            vec![SqlStorageValue::try_from_i64(now)?],
        )?;
        sql.exec(
            "INSERT OR REPLACE INTO fences (token, until_ms, ids, creates) VALUES (?, ?, ?, ?)",
            vec![
                SqlStorageValue::from(token),
                SqlStorageValue::try_from_i64(now.saturating_add(lease))?,
                SqlStorageValue::from(ids.join("\n")),
                SqlStorageValue::try_from_i64(i64::from(creates))?,
            ],
        )?;
        Ok(())
    }

    fn lower(&self, token: &str) -> Result<()> {
        self.state.storage().sql().exec(
            "DELETE FROM fences WHERE token = ?",
            vec![SqlStorageValue::from(token)],
        )?;
        Ok(())
    }

    /// Live ids in `[from, to)`, ascending, at most `limit`: one query, three bound parameters
    /// (Durable Object SQLite allows 100), on the partial expression index `records_live_num`.
    fn live_ids(&self, from: u64, to: u64, limit: u32) -> Result<Vec<u64>> {
        #[derive(Deserialize)]
        struct IdRow {
            id: String,
        }
        // Bound parameters cross as JS numbers: exact up to 2^53 − 1. An upper bound beyond it
        // (the run's open range, up to 2^63 − 1) is left out: every id above `from` is listed.
        const SAFE: u64 = (1 << 53) - 1;
        let int = |v: u64| SqlStorageValue::try_from_i64(i64::try_from(v.min(SAFE)).unwrap_or(0));
        let sql = self.state.storage().sql();
        let rows: Vec<IdRow> = if to > SAFE {
            sql.exec(
                "SELECT id FROM records WHERE snapshot IS NOT NULL \
                 AND CAST(id AS INTEGER) >= ? ORDER BY CAST(id AS INTEGER) LIMIT ?",
                vec![int(from)?, int(u64::from(limit))?],
            )?
            .to_array()?
        } else {
            sql.exec(
                "SELECT id FROM records WHERE snapshot IS NOT NULL \
                 AND CAST(id AS INTEGER) >= ? AND CAST(id AS INTEGER) < ? \
                 ORDER BY CAST(id AS INTEGER) LIMIT ?",
                vec![int(from)?, int(to)?, int(u64::from(limit))?],
            )?
            .to_array()?
        };
        Ok(rows.into_iter().filter_map(|r| r.id.parse().ok()).collect())
    }

    /// Applies the commits in order (core's [`CommitBatch`]: the current states read once for
    /// the whole request, one query per 100 ids, not one per commit: a sync batch commits 100
    /// records, BENCHMARKS.md "Sync on wrangler dev"). No `await` between the reads and the
    /// writes, so nothing interleaves: each compare-and-set is atomic.
    fn commit(&self, commits: Vec<WireCommit>) -> Result<Vec<WireOutcome>> {
        let sql = self.state.storage().sql();
        let now = Date::now().as_millis();
        let batch = CommitBatch::new(
            commits
                .into_iter()
                .map(|c| Commit {
                    id: c.id,
                    expect: c.expect,
                    write: c.snapshot.map_or(Write::Delete, Write::Put),
                })
                .collect(),
        );
        let read = self
            .read(&batch.reads())?
            .into_iter()
            .map(|s| {
                let stored = Stored {
                    version: s.version,
                    snapshot: s.snapshot,
                };
                (s.id, stored)
            })
            .collect();
        let applied = batch.apply(read);
        let mut outcomes = Vec::with_capacity(applied.len());
        for Applied { id, write, outcome } in applied {
            if let Some(next) = write {
                let version = i64::try_from(next.version).unwrap_or(i64::MAX);
                let snapshot = next
                    .snapshot
                    .map_or(SqlStorageValue::Null, SqlStorageValue::from);
                sql.exec(
                    "INSERT INTO records (id, version, snapshot, updated_ms) VALUES (?, ?, ?, ?) \
                     ON CONFLICT(id) DO UPDATE SET version = excluded.version, \
                     snapshot = excluded.snapshot, updated_ms = excluded.updated_ms",
                    vec![
                        SqlStorageValue::from(id.as_str()),
                        SqlStorageValue::try_from_i64(version)?,
                        snapshot,
                        SqlStorageValue::try_from_i64(i64::try_from(now).unwrap_or(0))?,
                    ],
                )?;
            }
            outcomes.push(match outcome {
                CommitOutcome::Committed { version } => WireOutcome {
                    id,
                    committed: true,
                    version,
                },
                CommitOutcome::Conflict { current } => WireOutcome {
                    id,
                    committed: false,
                    version: current,
                },
            });
        }
        Ok(outcomes)
    }
}

impl DurableObject for RecordStore {
    fn new(state: State, _env: Env) -> Self {
        // Idempotent: runs on every start of the object.
        let created = state.storage().sql().exec(
            "CREATE TABLE IF NOT EXISTS records (id TEXT PRIMARY KEY, version INTEGER NOT NULL, \
             snapshot TEXT, updated_ms INTEGER NOT NULL)",
            None,
        );
        // The reconcile's range query (`live_ids`): live ids by numeric value, without a scan.
        let created = created.and_then(|_| {
            state.storage().sql().exec(
                "CREATE INDEX IF NOT EXISTS records_live_num ON records (CAST(id AS INTEGER)) \
                 WHERE snapshot IS NOT NULL",
                None,
            )
        });
        // The inbound sync's write fences (a few rows at most, each for a minute at most).
        let created = created.and_then(|_| {
            state.storage().sql().exec(
                "CREATE TABLE IF NOT EXISTS fences (token TEXT PRIMARY KEY, \
                 until_ms INTEGER NOT NULL, ids TEXT NOT NULL, creates INTEGER NOT NULL)",
                None,
            )
        });
        if let Err(e) = created {
            crate::log::Line::error("record_store_init_failed")
                .field("error", e.to_string())
                .emit();
        }
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let scope = crate::log::Scope::new(&crate::log::random_id(), None);
        crate::log::scoped(scope, async move {
            // Parsed by serde_json from the text: ids up to 2^63 − 1 (core's ID_END) are not exact
            // as JS numbers, which `Request::json` would go through.
            let Ok(ask) = serde_json::from_str::<Ask>(&req.text().await?) else {
                return Response::error("bad record store request", 400);
            };
            let answer = match ask {
                Ask::Get { ids } => {
                    let mut records = self.read(&ids)?;
                    self.mark_writing(&mut records)?;
                    Answer::Records(records)
                }
                Ask::Commit { commits } => Answer::Outcomes(self.commit(commits)?),
                Ask::LiveIds { from, to, limit } => Answer::Ids(self.live_ids(from, to, limit)?),
                Ask::Raise {
                    token,
                    ids,
                    creates,
                } => {
                    self.raise(&token, &ids, creates)?;
                    Answer::Done
                }
                Ask::Lower { token } => {
                    self.lower(&token)?;
                    Answer::Done
                }
            };
            Response::from_json(&answer)
        })
        .await
    }
}

/// `GET /admin/records/{portal}/{objectType}/{id}`: an object's stored version and whether a
/// snapshot is kept (never the snapshot itself: it holds personal data).
pub(crate) async fn admin_get(
    env: &Env,
    portal: &str,
    object_type: &str,
    id: &str,
) -> Result<Response> {
    let portal = match portal.parse::<PortalId>() {
        Ok(portal) => portal,
        Err(e) => return crate::respond::error(400, e.code(), &e.to_string()),
    };
    let found = get(env, portal, object_type, vec![id.to_owned()]).await?;
    let stored = found.get(id).cloned().unwrap_or_else(Stored::absent);
    crate::respond::json(
        200,
        &serde_json::json!({
            "portalId": portal,
            "objectType": object_type,
            "id": id,
            "version": stored.version,
            "snapshot": stored.snapshot.is_some(),
        }),
    )
}
