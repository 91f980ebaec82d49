//! The inbound settings of every object type, from one JSON document (a Worker setting).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{ConflictRule, InboundConfig, InboundConfigError};
use crate::mapping::Mapping;

/// The inbound configuration of every object type that accepts writes. Read once with
/// [`Self::from_json`]:
///
/// ```json
/// {"contacts": {"idProperty": "email", "batchSize": 100, "coalesceWindowMs": 2000,
///               "conflictRule": "newer_wins", "maxRecords": 1000},
///  "companies": {"idProperty": "company_ref"}}
/// ```
///
/// Every key is optional but `idProperty` for types other than contacts (email by default);
/// unknown keys are errors. `conflictRule` is `newer_wins` (default: the newer change by
/// timestamp, HubSpot on a tie), `hubspot_wins` or `user_wins`. `batchSize` is 1–100 (HubSpot's
/// batch limit), `coalesceWindowMs` at most 60,000, `maxRecords` 1–10,000 (a request is parsed
/// whole inside a Worker's 128 MB).
#[derive(Debug, Clone, Default)]
pub struct InboundSettings {
    /// By canonical object type (`contact`).
    types: BTreeMap<String, InboundConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    id_property: Option<String>,
    #[serde(default)]
    batch_size: Option<usize>,
    #[serde(default)]
    coalesce_window_ms: Option<u64>,
    #[serde(default)]
    conflict_rule: Option<ConflictRule>,
    #[serde(default)]
    max_records: Option<usize>,
}

/// The largest coalescing window: a write is never held longer than a minute.
pub const MAX_WINDOW_MS: u64 = 60_000;
/// The most records one request may carry.
pub const MAX_RECORDS: usize = 10_000;

impl InboundSettings {
    /// Reads the settings and checks each type against its field map ([`InboundConfig::check`]).
    ///
    /// # Errors
    /// [`InboundConfigError`] naming the type: invalid JSON, an unknown key, a type the field
    /// map does not configure, a missing `idProperty`, or a value out of range.
    pub fn from_json(json: &str, mapping: &Mapping) -> Result<Self, InboundConfigError> {
        let invalid = |detail: String| InboundConfigError { detail };
        let raw: BTreeMap<String, serde_json::Value> =
            serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
        let mut types = BTreeMap::new();
        for (name, value) in raw {
            let entry: Entry =
                serde_json::from_value(value).map_err(|e| invalid(format!("{name}: {e}")))?;
            let map = mapping
                .object(&name)
                .ok_or_else(|| invalid(format!("{name}: not a type of the field map")))?;
            let mut config = InboundConfig::for_object_type(&name, entry.id_property.as_deref())
                .ok_or_else(|| invalid(format!("{name}: needs `idProperty`")))?;
            if let Some(n) = entry.batch_size {
                config.batch_size = n;
            }
            if let Some(ms) = entry.coalesce_window_ms {
                if ms > MAX_WINDOW_MS {
                    return Err(invalid(format!(
                        "{name}: coalesceWindowMs is at most {MAX_WINDOW_MS}"
                    )));
                }
                config.coalesce_window_ms = ms;
            }
            if let Some(rule) = entry.conflict_rule {
                config.conflict_rule = rule;
            }
            if let Some(n) = entry.max_records {
                if n > MAX_RECORDS {
                    return Err(invalid(format!(
                        "{name}: maxRecords is at most {MAX_RECORDS}"
                    )));
                }
                config.max_records = n;
            }
            config
                .check(map)
                .map_err(|e| invalid(format!("{name}: {}", e.detail)))?;
            if types
                .insert(map.canonical_type().to_owned(), config)
                .is_some()
            {
                return Err(invalid(format!("{name}: the same object type twice")));
            }
        }
        Ok(Self { types })
    }

    /// The configuration of an object type in any spelling (`contacts`, `contact`, `0-1`);
    /// `None` when it accepts no writes (the Worker answers 404).
    pub fn get(&self, mapping: &Mapping, object_type: &str) -> Option<&InboundConfig> {
        self.types
            .get(mapping.object(object_type)?.canonical_type())
    }
}
