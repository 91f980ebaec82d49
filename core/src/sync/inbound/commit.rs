//! After HubSpot accepted a batch: recording its written records in the record store
//! ([`InboundCommit`], compare-and-set rounds), and the dead letters of the records it refused
//! ([`Failed::letter`], re-driven by [`PendingUpdate::from_letter`]).

use std::collections::{BTreeSet, HashMap};

use serde_json::{json, Value};

use super::batch::{Failed, Written};
use super::PendingUpdate;
use crate::records::{Commit, CommitOutcome, Stored};

/// Compare-and-set conflicts re-read and re-applied before giving up for now.
const MAX_COMMIT_ROUNDS: usize = 5;

/// What the host does next for an [`InboundCommit`].
#[derive(Debug, Clone, PartialEq)]
pub enum InboundCommitAsk {
    /// Apply these commits to the record store: [`InboundCommit::on_committed`].
    Commit(Vec<Commit>),
    /// Read these records again (their commits were refused): [`InboundCommit::on_read`].
    Read(Vec<String>),
    /// Over. `unsettled`: written records whose commit was still refused after the last round
    /// (written to HubSpot, not recorded: the next identical request writes again, a
    /// duplicate write, never a loss).
    Done {
        /// Records not recorded.
        unsettled: usize,
    },
}

/// Records a batch's written records in the record store with compare-and-set (the stored
/// snapshot patched with the fields written, [`Written::commit`]): a refused commit is read
/// again and re-applied, up to 5 rounds.
#[derive(Debug)]
pub struct InboundCommit<'a> {
    written: &'a [Written],
    /// Their stored states, by HubSpot id.
    current: HashMap<String, Stored>,
    /// Indexes into `written` still to commit.
    todo: Vec<usize>,
    rounds: usize,
    read: bool,
}

impl<'a> InboundCommit<'a> {
    /// Commits of `written`, against `stored` (by HubSpot id; what the plan was made from;
    /// absent: never stored).
    pub fn new(written: &'a [Written], stored: &HashMap<String, Stored>) -> Self {
        Self {
            written,
            current: written
                .iter()
                .map(|w| {
                    let s = stored.get(&w.hubspot_id).cloned();
                    (w.hubspot_id.clone(), s.unwrap_or_else(Stored::absent))
                })
                .collect(),
            todo: (0..written.len()).collect(),
            rounds: 0,
            read: true,
        }
    }

    /// What to do next.
    pub fn ask(&mut self) -> InboundCommitAsk {
        if self.todo.is_empty() || (self.rounds >= MAX_COMMIT_ROUNDS && self.read) {
            return InboundCommitAsk::Done {
                unsettled: self.todo.len(),
            };
        }
        if !self.read {
            let ids = self
                .todo
                .iter()
                .map(|&i| self.written[i].hubspot_id.clone())
                .collect::<BTreeSet<_>>();
            return InboundCommitAsk::Read(ids.into_iter().collect());
        }
        let absent = Stored::absent();
        InboundCommitAsk::Commit(
            self.todo
                .iter()
                .map(|&i| {
                    let w = &self.written[i];
                    w.commit(self.current.get(&w.hubspot_id).unwrap_or(&absent))
                })
                .collect(),
        )
    }

    /// The record store's outcomes of [`InboundCommitAsk::Commit`].
    pub fn on_committed(&mut self, outcomes: &[(String, CommitOutcome)]) {
        self.rounds += 1;
        let conflicted: BTreeSet<&str> = outcomes
            .iter()
            .filter(|(_, o)| matches!(o, CommitOutcome::Conflict { .. }))
            .map(|(id, _)| id.as_str())
            .collect();
        let written = self.written;
        self.todo
            .retain(|&i| conflicted.contains(written[i].hubspot_id.as_str()));
        self.read = self.todo.is_empty();
    }

    /// The records [`InboundCommitAsk::Read`] asked for, as stored now.
    pub fn on_read(&mut self, current: HashMap<String, Stored>) {
        self.current = current;
        self.read = true;
    }
}

impl Failed {
    /// The dead letter of a record HubSpot refused (reason `inbound_rejected`): its payload
    /// (`source: inbound`, the type, portal, HubSpot's code, the properties it named, the
    /// first request line it answers and the update, to re-drive), its detail (HubSpot's code
    /// and the property names, never values) and its key (`inbound:{receipt}:{index}`).
    pub fn letter(
        &self,
        portal_id: crate::id::PortalId,
        object_type: &str,
    ) -> (Value, String, Option<String>) {
        let first = self.update.sources.first();
        let payload = json!({
            "source": "inbound",
            "objectType": object_type,
            "portalId": portal_id,
            "code": self.code,
            "properties": self.properties,
            "receiptId": first.map(|s| s.receipt.as_str()),
            "externalId": first.map(|s| s.external_id.as_str()),
            "update": self.update,
        });
        let detail = format!(
            "inbound: HubSpot refused a {object_type} record: {} ({})",
            self.code,
            self.properties.join(",")
        );
        let key = first.map(|s| format!("inbound:{}:{}", s.receipt, s.index));
        (payload, detail, key)
    }
}

impl PendingUpdate {
    /// The portal, object type and update of an inbound dead letter's payload
    /// ([`Failed::letter`]), to put back in pending.
    ///
    /// # Errors
    /// What the payload lacks (`portalId`, `objectType`, or an update that does not read).
    pub fn from_letter(payload: &Value) -> Result<(crate::id::PortalId, String, Self), String> {
        let portal = payload["portalId"]
            .as_u64()
            .map(crate::id::PortalId::new)
            .ok_or("inbound letter without portalId")?;
        let object_type = payload["objectType"]
            .as_str()
            .ok_or("inbound letter without objectType")?
            .to_owned();
        let update = serde_json::from_value(payload["update"].clone())
            .map_err(|e| format!("inbound letter's update: {e}"))?;
        Ok((portal, object_type, update))
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::mapping::Record;
    use crate::sync::inbound::SourceRef;

    fn written(id: &str) -> Written {
        let mut patch = Record::default();
        patch.insert("first_name".to_owned(), json!("Ann"));
        Written {
            key: format!("{id}@example.com"),
            hubspot_id: id.to_owned(),
            created: false,
            patch,
            echo: serde_json::from_value(json!({"properties": [], "fingerprint": ""}))
                .expect("guard"),
            rewritten: Vec::new(),
            sources: Vec::new(),
            conflicts: Vec::new(),
        }
    }

    fn outcomes(commits: &[Commit], conflict: &[&str]) -> Vec<(String, CommitOutcome)> {
        commits
            .iter()
            .map(|c| {
                let o = if conflict.contains(&c.id.as_str()) {
                    CommitOutcome::Conflict { current: 9 }
                } else {
                    CommitOutcome::Committed { version: 1 }
                };
                (c.id.clone(), o)
            })
            .collect()
    }

    #[test]
    fn refused_commits_are_read_again_and_reapplied_to_the_newer_state() {
        let w = [written("1"), written("2")];
        let stored = HashMap::from([(
            "1".to_owned(),
            Stored {
                version: 4,
                snapshot: Some(r#"{"email":"1@example.com"}"#.into()),
            },
        )]);
        let mut commit = InboundCommit::new(&w, &stored);
        let InboundCommitAsk::Commit(first) = commit.ask() else {
            panic!("commits first");
        };
        assert_eq!(
            first
                .iter()
                .map(|c| (c.id.as_str(), c.expect))
                .collect::<Vec<_>>(),
            [("1", Some(4)), ("2", Some(Stored::absent().version))],
            "against the state the plan was made from"
        );
        commit.on_committed(&outcomes(&first, &["2"]));
        assert_eq!(commit.ask(), InboundCommitAsk::Read(vec!["2".to_owned()]));
        commit.on_read(HashMap::from([(
            "2".to_owned(),
            Stored {
                version: 7,
                snapshot: Some(r#"{"email":"2@example.com","last_name":"B"}"#.into()),
            },
        )]));
        let InboundCommitAsk::Commit(again) = commit.ask() else {
            panic!("commits again");
        };
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].id.as_str(), again[0].expect), ("2", Some(7)));
        let crate::records::Write::Put(snapshot) = &again[0].write else {
            panic!("a put");
        };
        assert!(
            snapshot.contains("last_name") && snapshot.contains("Ann"),
            "patched onto the newer state"
        );
        commit.on_committed(&outcomes(&again, &[]));
        assert_eq!(commit.ask(), InboundCommitAsk::Done { unsettled: 0 });
    }

    #[test]
    fn commits_refused_five_times_are_given_up() {
        let w = [written("1")];
        let mut commit = InboundCommit::new(&w, &HashMap::new());
        let mut commits = 0;
        loop {
            match commit.ask() {
                InboundCommitAsk::Commit(c) => {
                    commits += 1;
                    commit.on_committed(&outcomes(&c, &["1"]));
                }
                InboundCommitAsk::Read(ids) => {
                    assert_eq!(ids, ["1"]);
                    commit.on_read(HashMap::new());
                }
                InboundCommitAsk::Done { unsettled } => {
                    assert_eq!(unsettled, 1);
                    break;
                }
            }
        }
        assert_eq!(commits, MAX_COMMIT_ROUNDS);
        assert_eq!(
            InboundCommit::new(&[], &HashMap::new()).ask(),
            InboundCommitAsk::Done { unsettled: 0 }
        );
    }

    #[test]
    fn a_refused_record_letter_names_its_request_line_and_reads_back() {
        let mut fields = Record::default();
        fields.insert("first_name".to_owned(), json!("Ann"));
        let update = PendingUpdate {
            key: "a@example.com".into(),
            fields,
            sources: vec![SourceRef {
                receipt: "rcp_1".into(),
                index: 3,
                external_id: "e3".into(),
            }],
            changed_at: std::collections::BTreeMap::new(),
            first_at_ms: 5,
        };
        let failed = Failed {
            key: update.key.clone(),
            code: "INVALID_OPTION".into(),
            properties: vec!["lifecyclestage".into()],
            update: update.clone(),
        };
        let (payload, detail, key) = failed.letter(crate::id::PortalId::new(62_515), "contacts");
        assert_eq!(payload["source"], "inbound");
        assert_eq!(payload["receiptId"], "rcp_1");
        assert_eq!(payload["externalId"], "e3");
        assert_eq!(key.as_deref(), Some("inbound:rcp_1:3"));
        assert_eq!(
            detail,
            "inbound: HubSpot refused a contacts record: INVALID_OPTION (lifecyclestage)"
        );
        assert!(!detail.contains("Ann"), "no values in the detail");
        let (portal, object_type, back) = PendingUpdate::from_letter(&payload).expect("reads");
        assert_eq!(
            (portal, object_type.as_str()),
            (crate::id::PortalId::new(62_515), "contacts")
        );
        assert_eq!(back, update);
        assert!(PendingUpdate::from_letter(&json!({"objectType": "contacts"})).is_err());
    }
}
