//! Mapping configuration (`FIELD_MAP`) and the mapping of records, on any text.
//!
//! Input: the configuration, NUL, HubSpot `properties` (a JSON object of strings or nulls), NUL,
//! a destination record (a JSON object). Properties, beyond "no panic":
//! - a configuration compiles or gives `mapping_config_invalid`;
//! - a record read from HubSpot (`to_destination`) survives its snapshot text unchanged;
//! - writing it back (`to_hubspot`) succeeds, and reading what was written gives a record that
//!   writes back the same values (after one normalisation, the round trip is a fixed point);
//! - any destination record maps to HubSpot values or a typed `MapError`, never a panic.
#![no_main]

use std::collections::BTreeMap;

use hubspot_edge_core::mapping::{Mapping, Record};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Value};

fn as_properties(h: &BTreeMap<String, String>) -> BTreeMap<String, Option<String>> {
    h.iter()
        .map(|(k, v)| (k.clone(), Some(v.clone())))
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let Ok(config) = std::str::from_utf8(parts.next().unwrap_or_default()) else {
        return;
    };
    let properties: BTreeMap<String, Option<String>> = parts
        .next()
        .and_then(|p| serde_json::from_slice(p).ok())
        .unwrap_or_default();
    let destination: Option<Map<String, Value>> =
        parts.next().and_then(|p| serde_json::from_slice(p).ok());

    // Snapshots read back from the store are outside text too.
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(r) = Record::from_snapshot(s) {
            assert_eq!(Record::from_snapshot(&r.to_snapshot()), Ok(r));
        }
    }

    let mapping = match Mapping::from_json(config) {
        Ok(m) => m,
        Err(e) => {
            assert_eq!(e.code(), "mapping_config_invalid");
            return;
        }
    };
    let Ok(value) = serde_json::from_str::<Value>(config) else {
        return;
    };
    let Some(objects) = value.get("objects").and_then(Value::as_object) else {
        return;
    };
    for name in objects.keys() {
        let map = mapping
            .object(name)
            .expect("a configured object type is found by its name");
        if let Ok(record) = map.to_destination(&properties) {
            assert_eq!(
                Record::from_snapshot(&record.to_snapshot()).as_ref(),
                Ok(&record)
            );
            let written = map
                .to_hubspot(&record)
                .expect("a record read from HubSpot can be written back");
            let reread = map
                .to_destination(&as_properties(&written))
                .expect("what we wrote to HubSpot can be read back");
            assert_eq!(
                map.to_hubspot(&reread).as_ref(),
                Ok(&written),
                "the round trip is a fixed point"
            );
        }
        if let Some(d) = &destination {
            if let Err(e) = map.to_hubspot(&Record::from(d.clone())) {
                assert!(!e.code().is_empty());
            }
        }
    }
});
