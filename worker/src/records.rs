//! The record store: one Durable Object per portal and object type (`RECORD_STORE`, instance
//! `{portalId}:{objectType}`, SQLite storage) holding each object's last forwarded snapshot and
//! its version. Strongly consistent and one writer at a time, so it is the single point of truth
//! per object that KV (eventually consistent, one write per second per key) cannot be.
//!
//! The rules are core's ([`hubspot_edge_core::records`]): reads return `(version, snapshot)`,
//! writes are compare-and-set on the version read, deletes keep a tombstone (no snapshot, so no
//! personal data). This module is the object and its client.
//!
//! Cost: one round trip per object type per queue batch to read, one to commit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use hubspot_edge_core::records::{self, Commit, Outcome, Stored, Write};
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

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum Ask {
    Get { ids: Vec<String> },
    Commit { commits: Vec<WireCommit> },
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
}

fn instance(portal: u64, object_type: &str) -> String {
    format!("{portal}:{object_type}")
}

async fn call(env: &Env, portal: u64, object_type: &str, ask: &Ask) -> Result<Answer> {
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
    response.json::<Answer>().await
}

/// The stored state of `ids` (absent ones at version 0).
pub(crate) async fn get(
    env: &Env,
    portal: u64,
    object_type: &str,
    ids: Vec<String>,
) -> Result<HashMap<String, Stored>> {
    let mut out = HashMap::with_capacity(ids.len());
    match call(env, portal, object_type, &Ask::Get { ids }).await? {
        Answer::Records(records) => {
            for r in records {
                out.insert(
                    r.id,
                    Stored {
                        version: r.version,
                        snapshot: r.snapshot,
                    },
                );
            }
            Ok(out)
        }
        Answer::Outcomes(_) => Err(worker::Error::RustError("unexpected answer".into())),
    }
}

/// Commits still to fail on purpose (`FAULT_INJECTION` only; per isolate, as `wrangler dev` runs
/// one). See `POST /admin/faults/record-store`.
static FAIL_NEXT_COMMITS: AtomicU32 = AtomicU32::new(0);

/// Makes the next `n` record-store commits of this isolate fail (test only).
pub(crate) fn inject_commit_failures(n: u32) {
    FAIL_NEXT_COMMITS.store(n, Ordering::SeqCst);
}

/// Commits `commits`; one outcome per commit, in order.
pub(crate) async fn commit(
    env: &Env,
    portal: u64,
    object_type: &str,
    commits: &[Commit],
) -> Result<Vec<(String, Outcome)>> {
    if FAIL_NEXT_COMMITS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
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
                    Outcome::Committed { version: o.version }
                } else {
                    Outcome::Conflict { current: o.version }
                };
                (o.id, outcome)
            })
            .collect()),
        Answer::Records(_) => Err(worker::Error::RustError("unexpected answer".into())),
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
                }
            })
            .collect())
    }

    /// Applies the commits in order. No `await` between the read and the write of a commit,
    /// so nothing interleaves: the compare-and-set is atomic.
    fn commit(&self, commits: Vec<WireCommit>) -> Result<Vec<WireOutcome>> {
        let sql = self.state.storage().sql();
        let now = Date::now().as_millis();
        let mut outcomes = Vec::with_capacity(commits.len());
        for c in commits {
            let current =
                self.read(std::slice::from_ref(&c.id))?
                    .pop()
                    .map_or_else(Stored::absent, |s| Stored {
                        version: s.version,
                        snapshot: s.snapshot,
                    });
            let commit = Commit {
                id: c.id,
                expect: c.expect,
                write: c.snapshot.map_or(Write::Delete, Write::Put),
            };
            let (next, outcome) = records::apply(&current, &commit);
            if let Some(next) = next {
                let version = i64::try_from(next.version).unwrap_or(i64::MAX);
                let snapshot = next
                    .snapshot
                    .map_or(SqlStorageValue::Null, SqlStorageValue::from);
                sql.exec(
                    "INSERT INTO records (id, version, snapshot, updated_ms) VALUES (?, ?, ?, ?) \
                     ON CONFLICT(id) DO UPDATE SET version = excluded.version, \
                     snapshot = excluded.snapshot, updated_ms = excluded.updated_ms",
                    vec![
                        SqlStorageValue::from(commit.id.as_str()),
                        SqlStorageValue::try_from_i64(version)?,
                        snapshot,
                        SqlStorageValue::try_from_i64(i64::try_from(now).unwrap_or(0))?,
                    ],
                )?;
            }
            outcomes.push(match outcome {
                Outcome::Committed { version } => WireOutcome {
                    id: commit.id,
                    committed: true,
                    version,
                },
                Outcome::Conflict { current } => WireOutcome {
                    id: commit.id,
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
        if let Err(e) = created {
            crate::log::Line::error("record_store_init_failed")
                .field("error", e.to_string())
                .emit();
        }
        Self { state }
    }

    async fn fetch(&self, mut req: Request) -> Result<Response> {
        let Ok(ask) = req.json::<Ask>().await else {
            return Response::error("bad record store request", 400);
        };
        let answer = match ask {
            Ask::Get { ids } => Answer::Records(self.read(&ids)?),
            Ask::Commit { commits } => Answer::Outcomes(self.commit(commits)?),
        };
        Response::from_json(&answer)
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
    let Ok(portal) = portal.parse::<u64>() else {
        return crate::respond::error(400, "portal_invalid", "the portal id is a number");
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
