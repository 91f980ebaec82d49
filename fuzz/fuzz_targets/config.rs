//! The deployment configuration (`config`): any set of environment values gives each part
//! (`Ingress`, `Forward`, enrichment, dead-letter retention, fault injection, admin token) or a
//! typed `ConfigError` whose public code is `config_invalid` and which names its key; a number
//! key accepts only values inside its documented range; `check_url` accepts only `https://`, or
//! `http://` to loopback.
//!
//! Input: `KEY=VALUE` lines (a value may contain anything but a newline).
#![no_main]

use std::collections::BTreeMap;

use hubspot_edge_core::config::{self, ConfigError, Lookup, NUMBER_KEYS};
use libfuzzer_sys::fuzz_target;

fn check<T>(r: Result<T, ConfigError>) {
    if let Err(e) = r {
        assert_eq!(e.public_code(), "config_invalid");
        assert!(!e.code().is_empty());
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();
    let lookup = Lookup::new(|k: &str| env.get(k).map(|v| (*v).to_owned()));
    check(config::Ingress::from_lookup(&lookup));
    check(config::Forward::from_lookup(&lookup));
    check(config::enrichment(&lookup));
    check(config::dead_letter_retention(&lookup));
    check(config::fault_injection(&lookup));
    check(config::admin_token(&lookup));
    for key in NUMBER_KEYS {
        let raw = env.get(key.key).copied();
        match key.parse(raw) {
            Ok(n) => {
                assert!((key.min..=key.max).contains(&n) || raw.is_none());
                assert_eq!(key.parse(Some(&n.to_string())), Ok(n));
            }
            Err(e) => assert_eq!(e.key(), key.key),
        }
    }
    for (_, value) in &env {
        if config::check_url("FORWARD_URL", value).is_ok() {
            // Schemes are case-insensitive (RFC 3986 §3.1).
            let v = value.trim().to_ascii_lowercase();
            assert!(
                v.starts_with("https://") || v.starts_with("http://"),
                "an accepted URL is http(s): {value:?}"
            );
        }
    }
});
