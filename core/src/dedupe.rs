//! Dedupe keys for webhook events.
//!
//! HubSpot may deliver the same event more than once, and `eventId` alone "is not guaranteed to
//! be unique" (docs/hubspot.md §2.1). A retry carries the same event with `attemptNumber`
//! incremented and a fresh timestamp and signature. The key is therefore the composite
//! (`portalId`, `appId`, `subscriptionId`, `eventId`, `objectId`, `occurredAt`): every field
//! HubSpot keeps stable across retries, and never `attemptNumber`. Absent optional fields are
//! written as `-`, so that an absent field never collides with a present `0`.

use std::fmt;

use crate::event::Event;

/// A stable, URL- and KV-safe identity of one HubSpot event, the same across HubSpot's
/// retries: `hs1_{portal}_{app}_{subscription}_{event}_{object}_{occurredAt}`.
///
/// It is also the `webhook-id` of the forwarded event, so receivers can dedupe on it too.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupeKey(String);

impl DedupeKey {
    /// The key of `event`.
    pub fn of(event: &Event<'_>) -> Self {
        use fmt::Write as _;
        let mut s = String::with_capacity(64);
        let opt = |s: &mut String, v: Option<u64>| match v {
            Some(v) => write!(s, "_{v}"),
            None => s.write_str("_-"),
        };
        // Writing into a String cannot fail.
        let _ = write!(s, "hs1_{}", event.portal_id());
        let _ = opt(&mut s, event.app_id());
        let _ = opt(&mut s, event.subscription_id());
        let _ = write!(s, "_{}", event.event_id());
        let _ = opt(&mut s, event.object_id().map(u64::from));
        let _ = write!(s, "_{}", event.occurred_at_ms());
        Self(s)
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DedupeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;
    use crate::event::parse_batch;

    fn key(json: &str) -> String {
        let batch = parse_batch(json.as_bytes()).unwrap();
        let event = batch[0].event.as_ref().unwrap();
        DedupeKey::of(event).as_str().to_owned()
    }

    #[test]
    fn retries_share_a_key_and_distinct_events_do_not() {
        let first = r#"[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"appId":54321}]"#;
        let retry = first.replace(r#""attemptNumber":0"#, r#""attemptNumber":3"#);
        assert_eq!(key(first), "hs1_62515_54321_12345_1_123_1564113600000");
        assert_eq!(key(first), key(&retry));
        // Same eventId, different object or time: different events (eventId is not unique).
        assert_ne!(
            key(first),
            key(&first.replace(r#""objectId":123"#, r#""objectId":124"#))
        );
        assert_ne!(
            key(first),
            key(&first.replace("1564113600000", "1564113600001"))
        );
        assert_ne!(key(first), key(&first.replace("62515", "62516")));
    }

    #[test]
    fn absent_fields_do_not_collide_with_zero() {
        let absent = r#"[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"x.y"}]"#;
        let zero = r#"[{"eventId":1,"portalId":2,"occurredAt":3,"subscriptionType":"x.y","appId":0,"subscriptionId":0,"objectId":0}]"#;
        assert_eq!(key(absent), "hs1_2_-_-_1_-_3");
        assert_ne!(key(absent), key(zero));
    }
}
