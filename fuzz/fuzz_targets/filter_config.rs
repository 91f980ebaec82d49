//! Filter configuration (`FILTER_RULES`): any text compiles to a `Filter` or a typed
//! `FilterConfigError`; a compiled filter decides every event of a batch without a panic, and
//! the decision is deterministic.
//!
//! Input: the configuration, a NUL byte, then a webhook batch (NUL cannot occur in JSON text, so
//! the seed files stay readable).
#![no_main]

use hubspot_edge_core::event::parse_batch;
use hubspot_edge_core::filter::{DropReason, Filter, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (config, batch) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let Ok(config) = std::str::from_utf8(config) else {
        return;
    };
    let filter = match Filter::from_json(config) {
        Ok(f) => f,
        Err(e) => {
            assert_eq!(e.code(), "filter_config_invalid");
            return;
        }
    };
    let Ok(elements) = parse_batch(batch) else {
        return;
    };
    for event in elements.iter().filter_map(|e| e.event.as_ref().ok()) {
        let verdict = filter.decide(event);
        assert_eq!(verdict, filter.decide(event));
        if let Verdict::Drop(reason) = verdict {
            assert!(matches!(
                reason,
                DropReason::NotIncluded | DropReason::Excluded(_) | DropReason::OwnChange
            ));
        }
    }
});
