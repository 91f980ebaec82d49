//! Benchmark of the enrichment step for one batch read of 100 contacts: per record, decode
//! HubSpot's JSON properties (the baseline: the Worker must do it whatever it decides), map
//! them to the destination record, read the last snapshot, diff, and write the new snapshot
//! when something changed (as `worker/src/enrich.rs` does, minus KV and the forward).
//!
//! A third of the records differ from their snapshot in one field, the rest are unchanged,
//! and the values use every field type of the map (docs/hubspot.md §7 formats).

use std::collections::BTreeMap;

use hubspot_edge_core::diff::{diff, Diff};
use hubspot_edge_core::mapping::{Mapping, Record};

/// Records per batch read (HubSpot's batch limit, docs/hubspot.md §4.1).
pub const RECORDS: usize = 100;

/// A realistic contact map: twelve fields of every type.
pub const MAP: &str = r#"{"objects": {"contacts": {"fields": [
  {"hubspot": "email", "type": "email"},
  {"hubspot": "firstname", "field": "first_name"},
  {"hubspot": "lastname", "field": "last_name"},
  {"hubspot": "phone"},
  {"hubspot": "lifecyclestage", "field": "stage", "type": "enumeration",
   "values": {"lead": "LEAD", "customer": "CUSTOMER", "opportunity": "OPPORTUNITY"}, "unmappedValues": "keep"},
  {"hubspot": "interests", "type": "multiselect"},
  {"hubspot": "closedate", "field": "close_date", "type": "date"},
  {"hubspot": "lastmodifieddate", "field": "modified_at", "type": "datetime", "readOnly": true},
  {"hubspot": "num_employees", "field": "employees", "type": "number"},
  {"hubspot": "hs_email_optout", "field": "opted_out", "type": "bool"},
  {"hubspot": "hubspot_owner_id", "field": "owner", "type": "owner"},
  {"field": "source", "constant": "hubspot"}
]}}}"#;

/// HubSpot's `properties` object of one contact, as a batch read returns it.
fn hubspot_json(i: usize, changed: bool) -> String {
    let stage = if changed { "customer" } else { "lead" };
    format!(
        r#"{{"email":" Person{i}@Example.com ","firstname":"First{i}","lastname":"Last{i}","phone":"+1 555 01{:02}","lifecyclestage":"{stage}","interests":"b;a;c","closedate":"2026-0{}-15","lastmodifieddate":"2026-11-2{}T10:{:02}:00.{:03}Z","num_employees":"{}","hs_email_optout":"false","hubspot_owner_id":"{}","hs_object_id":"{}"}}"#,
        i % 100,
        1 + i % 9,
        i % 10,
        i % 60,
        i % 1000,
        10 + i * 7,
        100_000 + i % 17,
        i + 1
    )
}

/// The prepared batch: HubSpot JSON per record and the stored snapshot of each.
#[derive(Debug)]
pub struct Enrich {
    mapping: Mapping,
    records: Vec<(String, String)>,
}

/// What one pass produced (checked before timing, and kept observable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnrichSummary {
    /// Records whose mapped form differs from the snapshot.
    pub changed: usize,
    /// Changed fields over all records.
    pub fields: usize,
    /// Bytes of the snapshots written.
    pub snapshot_bytes: usize,
}

impl Enrich {
    /// Builds the map and the batch; the snapshots are the mapped records before the change.
    ///
    /// # Panics
    /// If the map or a fixture record does not map (a bug in this benchmark).
    pub fn new() -> Self {
        let mapping = Mapping::from_json(MAP).expect("the benchmark map compiles");
        let map = mapping.object("contacts").expect("contacts are mapped");
        let records = (0..RECORDS)
            .map(|i| {
                let before: BTreeMap<String, Option<String>> =
                    serde_json::from_str(&hubspot_json(i, false)).expect("fixture JSON");
                let snapshot = map
                    .to_destination(&before)
                    .expect("fixture maps")
                    .to_snapshot();
                (hubspot_json(i, i % 3 == 0), snapshot)
            })
            .collect();
        Self { mapping, records }
    }

    /// The baseline: decode every record's properties, nothing else.
    pub fn decode_only(&self) -> usize {
        self.records
            .iter()
            .map(|(json, _)| {
                serde_json::from_str::<BTreeMap<String, Option<String>>>(json)
                    .map_or(0, |p| p.len())
            })
            .sum()
    }

    /// Decode, map, read the snapshot, diff, write the new snapshot if changed.
    pub fn full(&self) -> EnrichSummary {
        let Some(map) = self.mapping.object("contacts") else {
            return EnrichSummary {
                changed: 0,
                fields: 0,
                snapshot_bytes: 0,
            };
        };
        let mut summary = EnrichSummary {
            changed: 0,
            fields: 0,
            snapshot_bytes: 0,
        };
        for (json, snapshot) in &self.records {
            let Ok(properties) = serde_json::from_str::<BTreeMap<String, Option<String>>>(json)
            else {
                continue;
            };
            let Ok(current) = map.to_destination(&properties) else {
                continue;
            };
            let old = Record::from_snapshot(snapshot).unwrap_or_default();
            if let Diff::Changed(patch) = diff(map, &old, &current) {
                summary.changed += 1;
                summary.fields += patch.changes().len();
                summary.snapshot_bytes += current.to_snapshot().len();
            }
        }
        summary
    }
}

impl Default for Enrich {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_third_change_one_field() {
        let e = Enrich::new();
        let s = e.full();
        assert_eq!(s.changed, 34);
        assert_eq!(s.fields, 34);
        assert!(s.snapshot_bytes > 0);
        assert_eq!(e.decode_only(), RECORDS * 12);
    }
}
