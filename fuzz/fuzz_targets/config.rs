//! The deployment configuration (`config`): any set of environment values gives each part
//! (`Ingress`, `Forward`, enrichment, dead-letter retention, fault injection, admin token) or a
//! typed `ConfigError` whose public code is `config_invalid` and which names its key; a number
//! key accepts only values inside its documented range; `check_url` accepts only `https://`, or
//! `http://` to loopback; `check` reports each problem key once, in agreement with the parts.
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
    check(config::ForwardConfig::from_lookup(&lookup));
    check(config::enrichment(&lookup));
    check(config::dead_letter_retention(&lookup));
    check(config::fault_injection(&lookup));
    check(config::admin_token(&lookup));
    // The whole-deployment check: a part fails exactly when `check` reports a key of it, each
    // key at most once, and no problem's key or code carries a value.
    let problems = config::check(&lookup);
    let mut keys: Vec<&str> = problems.iter().map(|p| p.key()).collect();
    keys.sort_unstable();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key reported twice: {problems:?}");
    assert_eq!(
        config::Ingress::from_lookup(&lookup).is_ok(),
        !problems.iter().any(|p| p.part == config::Part::Ingress)
    );
    for p in &problems {
        assert!(p.key().bytes().all(|b| b.is_ascii_uppercase() || b == b'_'));
        assert!(p.code().bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
    }
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
