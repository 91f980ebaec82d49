//! The sync's settings and the read-path arithmetic (docs/sync.md, "Read path").

use serde::{Deserialize, Serialize};

use crate::api::{MAX_BATCH_INPUTS, MAX_LIST_LIMIT, MAX_SEARCH_LIMIT};
use crate::id::PortalId;
use crate::mapping::ObjectMap;
use crate::ratelimit::GovernorConfig;
use crate::search::OBJECT_ID;

/// The property HubSpot sets on a merge's survivor: the ids merged into it, `;`-separated
/// (<https://developers.hubspot.com/docs/api-reference/latest/crm/objects/contacts/guide>).
pub const MERGED_IDS_PROPERTY: &str = "hs_merged_object_ids";

/// The default records per delivery (issue 10: "up to a configurable number of records, default
/// 100").
pub const DEFAULT_BATCH_RECORDS: usize = 100;
/// The default largest delivery body: 1 MiB. Cloudflare Workers accept request bodies of
/// 100 MB and more, so the destination is the limit; 1 MiB is a size most HTTP servers and
/// frameworks accept by default (larger bodies are refused by, e.g., a default nginx).
pub const DEFAULT_BATCH_MAX_BYTES: usize = 1024 * 1024;

/// The longest `properties=` list a list request sends, in characters. List requests carry the
/// properties in the URL, and a long list gets a 414 (docs/hubspot.md §4.1; Airbyte chunks at
/// 15,000 characters); search sends them in the body. Beyond this the sync reads by search only
/// ([`SyncConfig::for_map`]).
pub const MAX_LIST_PROPERTIES_CHARS: usize = 8_000;

/// The last-modified property of an object type: contacts use `lastmodifieddate`, the other
/// types `hs_lastmodifieddate` (<https://developers.hubspot.com/docs/api-reference/latest/crm/search-the-crm>). `object_type` in any spelling (`contacts`, `contact`, `0-1`).
pub fn modified_property(object_type: &str) -> &'static str {
    if crate::object_type::ObjectType::parse(object_type).type_id() == "0-1" {
        "lastmodifieddate"
    } else {
        "hs_lastmodifieddate"
    }
}

/// How one (portal, object type) is synced. Defaults in [`SyncConfig::new`]; every bound says
/// which limit it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncConfig {
    /// The HubSpot account.
    pub portal_id: PortalId,
    /// The object type as written in API paths (`contacts`, `2-123`).
    pub object_type: String,
    /// The last-modified property incremental runs walk ([`modified_property`]).
    pub modified_property: String,
    /// Share of a full run's id space read with list pages (burst budget) rather than search
    /// pages (search budget), in percent, 0–100. The default splits by the two budgets'
    /// throughput at Professional private-app limits ([`list_share_percent`]): both budgets are
    /// spent at once. 0 reads by search only (no reliance on list's `after` being an id).
    pub list_share_percent: u8,
    /// Id ranges a full run starts with: that many units can run on consumers at once.
    pub initial_units: u32,
    /// Pages one unit reads per invocation before it hands back a continuation: bounds the
    /// records held at once (5 × 200, a few MB of 128 MB) and the invocation's time.
    pub pages_per_unit: u32,
    /// A continuation whose remaining id range is at least twice this wide is split in two, so a
    /// dense range spreads over more consumers.
    pub min_split_span: u64,
    /// Records per delivery request.
    pub batch_records: usize,
    /// Largest delivery body, bytes; a batch that would be larger is split.
    pub batch_max_bytes: usize,
    /// Incremental runs read changes up to `run start − lag`: search is eventually consistent
    /// near now (docs/hubspot.md §4.4).
    pub lag_ms: u64,
    /// Incremental runs start `overlap` before the cursor: a change indexed late by search
    /// (up to `lag + overlap`) is still read. Re-read records are unchanged, not re-delivered.
    pub overlap_ms: u64,
    /// Most ids a reconcile keeps as missing candidates in one run; more are counted and found
    /// by the next reconcile. Bounds the run's state (about 13 bytes of JSON per id: 65 KB at
    /// the default 5,000), which its Durable Object stores.
    pub max_missing: usize,
    /// Object types (as in API paths, `companies`) whose associated record ids are read with
    /// each record (associations v4 batch read, [`super::AssocPlan`]) and delivered in its
    /// `associations`; empty: none read, none delivered (`SYNC_ASSOCIATIONS`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub associations: Vec<String>,
}

impl SyncConfig {
    /// The defaults for one object type of one portal.
    pub fn new(portal_id: PortalId, object_type: impl Into<String>) -> Self {
        let object_type = object_type.into();
        Self {
            portal_id,
            modified_property: modified_property(&object_type).to_owned(),
            object_type,
            list_share_percent: list_share_percent(190, 5),
            initial_units: 12,
            pages_per_unit: 5,
            min_split_span: 1_000,
            batch_records: DEFAULT_BATCH_RECORDS,
            batch_max_bytes: DEFAULT_BATCH_MAX_BYTES,
            lag_ms: 60_000,
            overlap_ms: 5 * 60_000,
            max_missing: 5_000,
            associations: Vec::new(),
        }
    }

    /// This configuration at the rates `governor` grants: the list share from
    /// [`list_share_for`] (a search-only configuration stays search only).
    pub fn for_governor(mut self, governor: &GovernorConfig) -> Self {
        if self.list_share_percent > 0 {
            self.list_share_percent = list_share_for(governor);
        }
        self
    }

    /// This configuration for reading `map`'s records: by search only
    /// (`list_share_percent = 0`) when the properties would make a list URL longer than
    /// [`MAX_LIST_PROPERTIES_CHARS`].
    pub fn for_map(mut self, map: &ObjectMap) -> Self {
        let chars: usize = self
            .read_properties(map)
            .iter()
            .map(|p| p.len() * 3 + 1)
            .sum();
        if chars > MAX_LIST_PROPERTIES_CHARS {
            self.list_share_percent = 0;
        }
        self
    }

    /// Whether a unit that has read `pages_read` pages in this invocation reads another:
    /// always up to [`pages_per_unit`](Self::pages_per_unit); past it, only while other units
    /// worked in the same invocation have not read theirs yet (`batch_busy`: the invocation
    /// lasts until they are done anyway, so the unit reads instead of idling), and never past
    /// [`MAX_PAGES_PER_UNIT_FACTOR`] × `pages_per_unit` (one page is held at a time, so this
    /// bounds the invocation's time, not its memory).
    ///
    /// Measured on wrangler dev (BENCHMARKS.md, "Sync on wrangler dev"): a batch of list and
    /// search units lasts as long as its search units, paced at 4 per second, while its list
    /// units finished their pages in a fraction of that.
    pub fn reads_more(&self, pages_read: u32, batch_busy: bool) -> bool {
        let quota = self.pages_per_unit.max(1);
        pages_read < quota
            || (batch_busy && pages_read < quota.saturating_mul(MAX_PAGES_PER_UNIT_FACTOR))
    }

    /// The properties every sync read asks for: the map's, then `hs_object_id`, the
    /// last-modified property and [`MERGED_IDS_PROPERTY`], each once. The mapped record ignores
    /// the extra ones, so the snapshot is the one enrichment stores.
    pub fn read_properties(&self, map: &ObjectMap) -> Vec<String> {
        let mut out: Vec<String> = map.properties().to_vec();
        for extra in [
            OBJECT_ID,
            self.modified_property.as_str(),
            MERGED_IDS_PROPERTY,
        ] {
            if !out.iter().any(|p| p == extra) {
                out.push(extra.to_owned());
            }
        }
        out
    }
}

/// How many times [`SyncConfig::pages_per_unit`] a unit may read in one invocation while the
/// other units of its batch are still busy ([`SyncConfig::reads_more`]): 4 × 5 pages, at most
/// 4,000 records in one invocation, one page of them held at a time.
pub const MAX_PAGES_PER_UNIT_FACTOR: u32 = 4;

/// Records one second of each budget reads at most: list `burst_per_10s / 10 × 100`, search
/// `search_per_s × 200` (docs/hubspot.md §4.1, §4.4, §5.1).
pub fn records_per_second(burst_per_10s: u32, search_per_s: u32) -> (f64, f64) {
    (
        f64::from(burst_per_10s) / 10.0 * f64::from(MAX_LIST_LIMIT),
        f64::from(search_per_s) * f64::from(MAX_SEARCH_LIMIT),
    )
}

/// The share of a backfill's records to read by list so that both budgets finish together:
/// `list / (list + search)` of [`records_per_second`], in percent. Professional private app
/// (190 per 10 s, search 5/s): 1,900 / 2,900 = 66 %.
pub fn list_share_percent(burst_per_10s: u32, search_per_s: u32) -> u8 {
    let (list, search) = records_per_second(burst_per_10s, search_per_s);
    if list + search <= 0.0 {
        return 0;
    }
    // A share of two non-negative rates is in 0..=100.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let share = (list * 100.0 / (list + search)).round() as u8;
    share.min(100)
}

/// The list share for the rates `governor` really grants ([`GovernorConfig::effective_limits`]:
/// its utilization applied, the search limit rounded down), with search taken at
/// [`SEARCH_PACE_PERCENT`] of its grant, so that both budgets finish together at the pace the
/// run really goes. Professional at 90 %: 1,710 records per second by list, 720 by search (4
/// searches per second at 90 %): 70 %. At the published limits' 66 %, search was the slower
/// budget: 176 calls at 4 per second = 44 s for 100,000 records, 1.25 × the bound before any
/// latency; at 68 % (the grant without the pace) runs still ended on search
/// (BENCHMARKS.md, "Sync on wrangler dev").
pub fn list_share_for(governor: &GovernorConfig) -> u8 {
    let (burst, search) = governor.effective_limits();
    let window = governor.burst_window_ms.max(1);
    let per_10s = u32::try_from(u64::from(burst) * 10_000 / window).unwrap_or(u32::MAX);
    let (list, search) = records_per_second(per_10s, search);
    let search = search * f64::from(SEARCH_PACE_PERCENT) / 100.0;
    if list + search <= 0.0 {
        return 0;
    }
    // A share of two non-negative rates is in 0..=100.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let share = (list * 100.0 / (list + search)).round() as u8;
    share.min(100)
}

/// The pace searches keep against the governor's grant, in percent: the gate spaces search
/// permits 250 ms apart, and units that read by search wait on each other and on their queue's
/// dispatch between batches. Measured on wrangler dev (BENCHMARKS.md, "Sync on wrangler dev"):
/// 166–169 searches in 42–45 s, 3.7–3.9 per second of the 4 granted.
pub const SEARCH_PACE_PERCENT: u32 = 90;

/// The least time HubSpot's limits allow to read `records` records with `list_share_percent`
/// of them by list, in milliseconds: each budget runs in parallel at its full rate, so the
/// bound is the slower of `list calls / list rate` and `search calls / search rate`. Delivery
/// and the store are not counted (they spend no HubSpot budget). Professional private app,
/// 100,000 records: 66 % by list is 660 calls at 19/s (34.7 s), 34 % by search 170 calls at
/// 5/s (34 s): 34.7 s; by search alone 500 calls, 100 s.
pub fn backfill_bound_ms(
    records: u64,
    list_share_percent: u8,
    burst_per_10s: u32,
    search_per_s: u32,
) -> u64 {
    let share = u64::from(list_share_percent.min(100));
    let by_list = records * share / 100;
    let by_search = records - by_list;
    let list_calls = by_list.div_ceil(u64::from(MAX_LIST_LIMIT));
    let search_calls = by_search.div_ceil(u64::from(MAX_SEARCH_LIMIT));
    let list_ms = if list_calls == 0 {
        0
    } else {
        (list_calls * 10_000).div_ceil(u64::from(burst_per_10s.max(1)))
    };
    let search_ms = if search_calls == 0 {
        0
    } else {
        (search_calls * 1_000).div_ceil(u64::from(search_per_s.max(1)))
    };
    list_ms.max(search_ms)
}

/// Delivery requests a backfill of `records` makes at `batch_records` per request.
pub fn delivery_requests(records: u64, batch_records: usize) -> u64 {
    let per = u64::try_from(batch_records.clamp(1, MAX_BATCH_INPUTS * 10)).unwrap_or(1);
    records.div_ceil(per)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn arithmetic_of_the_read_path() {
        // Professional private app: 190 per 10 s, search 5 per second.
        assert_eq!(records_per_second(190, 5), (1_900.0, 1_000.0));
        assert_eq!(list_share_percent(190, 5), 66);
        // OAuth public app: 110 per 10 s.
        assert_eq!(list_share_percent(110, 5), 52);
        assert_eq!(list_share_percent(0, 0), 0);
        // 100,000 records by search alone: 500 calls at 5/s.
        assert_eq!(backfill_bound_ms(100_000, 0, 190, 5), 100_000);
        // By list alone: 1,000 calls at 19/s.
        assert_eq!(backfill_bound_ms(100_000, 100, 190, 5), 52_632);
        // Both: 66,000 by list (660 calls, 34.7 s), 34,000 by search (170 calls, 34 s).
        assert_eq!(backfill_bound_ms(100_000, 66, 190, 5), 34_737);
        assert_eq!(delivery_requests(100_000, 100), 1_000);
        assert_eq!(delivery_requests(0, 100), 0);
    }

    #[test]
    fn long_property_lists_read_by_search_only() {
        let map = |n: usize| {
            let fields: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"hubspot":"custom_property_number_{i}"}}"#))
                .collect();
            let json = format!(
                r#"{{"objects":{{"contacts":{{"fields":[{}]}}}}}}"#,
                fields.join(",")
            );
            crate::mapping::Mapping::from_json(&json).expect("map")
        };
        let few = map(10);
        let many = map(400);
        let config = SyncConfig::new(PortalId::new(1), "contacts");
        assert_eq!(
            config
                .clone()
                .for_map(few.object("contacts").expect("map"))
                .list_share_percent,
            66
        );
        assert_eq!(
            config
                .for_map(many.object("contacts").expect("map"))
                .list_share_percent,
            0
        );
    }

    #[test]
    fn a_unit_reads_on_while_its_batch_is_busy_up_to_a_cap() {
        let config = SyncConfig::new(PortalId::new(1), "contacts");
        assert_eq!(config.pages_per_unit, 5);
        // (pages read, others busy, reads another)
        let cases = [
            (0, false, true),
            (4, false, true),
            (5, false, false),
            (5, true, true),
            (19, true, true),
            (20, true, false),
            (20, false, false),
        ];
        for (pages, busy, more) in cases {
            assert_eq!(config.reads_more(pages, busy), more, "{pages} {busy}");
        }
        let one = SyncConfig {
            pages_per_unit: 0,
            ..config
        };
        assert!(one.reads_more(0, false));
        assert!(!one.reads_more(1, false));
        assert!(one.reads_more(3, true));
        assert!(!one.reads_more(4, true));
    }

    #[test]
    fn list_share_at_the_rates_the_governor_grants() {
        use crate::ratelimit::Tier;
        // (tier, utilization, effective limits, share)
        let cases = [
            (Tier::Professional, 90, (171, 4), 70),
            (Tier::Professional, 100, (190, 5), 68),
            (Tier::Free, 90, (90, 4), 56),
            (Tier::ApiAddOn, 90, (225, 4), 76),
        ];
        for (tier, percent, limits, share) in cases {
            let g = GovernorConfig {
                utilization_percent: percent,
                ..GovernorConfig::for_tier(tier)
            };
            assert_eq!(g.effective_limits(), limits, "{tier:?} {percent}");
            assert_eq!(list_share_for(&g), share, "{tier:?} {percent}");
        }
        let pro = GovernorConfig::for_tier(Tier::Professional);
        assert_eq!(
            SyncConfig::new(PortalId::new(1), "contacts")
                .for_governor(&pro)
                .list_share_percent,
            70
        );
        let search_only = SyncConfig {
            list_share_percent: 0,
            ..SyncConfig::new(PortalId::new(1), "contacts")
        };
        assert_eq!(search_only.for_governor(&pro).list_share_percent, 0);
        // At 70 %, 100,000 records: 700 list calls (36.8 s at 19 per second), 150 search
        // calls (30 s at 5): at the granted 17.1 per second and search's pace of 3.6 per
        // second, 40.9 s and 41.7 s.
        assert_eq!(backfill_bound_ms(100_000, 70, 190, 5), 36_843);
        assert_eq!(backfill_bound_ms(100_000, 70, 171, 4), 40_936);
    }

    #[test]
    fn modified_property_by_type() {
        for t in ["contacts", "contact", "0-1"] {
            assert_eq!(modified_property(t), "lastmodifieddate");
        }
        for t in ["companies", "deals", "2-123"] {
            assert_eq!(modified_property(t), "hs_lastmodifieddate");
        }
        assert_eq!(
            SyncConfig::new(PortalId::new(1), "contacts").modified_property,
            "lastmodifieddate"
        );
    }
}
