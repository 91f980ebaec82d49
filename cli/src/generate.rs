//! Webhook batches generated for a subscription type, in the shape HubSpot sends (the
//! project's docs/hubspot.md; HubSpot's reference:
//! <https://developers.hubspot.com/docs/api/webhooks>).

use serde_json::{json, Value};

/// What to generate.
#[derive(Debug)]
pub(crate) struct Options<'a> {
    pub(crate) count: u64,
    pub(crate) portal_id: u64,
    pub(crate) first_object_id: u64,
    pub(crate) property: &'a str,
    pub(crate) value: &'a str,
    pub(crate) now_ms: u64,
}

/// The object types and events HubSpot's classic webhooks subscribe to.
const OBJECTS: [&str; 6] = [
    "contact",
    "company",
    "deal",
    "ticket",
    "product",
    "line_item",
];
const EVENTS: [&str; 7] = [
    "creation",
    "deletion",
    "propertyChange",
    "merge",
    "restore",
    "associationChange",
    "privacyDeletion",
];

/// A JSON array of `count` events of `subscription` (`contact.creation`, …), ids from
/// `first_object_id`, `occurredAt` now; `Err` names the accepted types.
pub(crate) fn batch(subscription: &str, o: &Options<'_>) -> Result<Vec<u8>, String> {
    let (object, event) = subscription.split_once('.').unwrap_or((subscription, ""));
    if !OBJECTS.contains(&object) || !EVENTS.contains(&event) {
        return Err(format!(
            "unknown subscription type {subscription:?}: use OBJECT.EVENT with OBJECT one of {} \
             and EVENT one of {}",
            OBJECTS.join(", "),
            EVENTS.join(", ")
        ));
    }
    if event == "privacyDeletion" && object != "contact" {
        return Err("privacyDeletion exists for contacts only".into());
    }
    let events: Vec<Value> = (0..o.count)
        .map(|i| {
            let object_id = o.first_object_id + i;
            let mut e = json!({
                // Unique within the batch and across runs (HubSpot's are not guaranteed
                // unique either; the Worker dedupes on more than this).
                "eventId": o.now_ms.wrapping_mul(100).wrapping_add(i),
                "subscriptionId": 1_000 + EVENTS.iter().position(|x| *x == event).unwrap_or(0),
                "portalId": o.portal_id,
                "appId": 1_160_452,
                "occurredAt": o.now_ms,
                "subscriptionType": subscription,
                "attemptNumber": 0,
                "objectId": object_id,
                "changeSource": "CRM",
            });
            let extra = match event {
                "creation" => json!({"changeFlag": "CREATED"}),
                "deletion" | "privacyDeletion" => json!({"changeFlag": "DELETED"}),
                "propertyChange" => json!({"propertyName": o.property, "propertyValue": o.value}),
                "merge" => json!({
                    "primaryObjectId": object_id,
                    "mergedObjectIds": [object_id + 1_000_000],
                    "newObjectId": object_id,
                    "numberOfPropertiesMoved": 3,
                }),
                "associationChange" => json!({
                    "associationType": association_type(object),
                    "fromObjectId": object_id,
                    "toObjectId": object_id + 1_000_000,
                    "associationRemoved": false,
                    "isPrimaryAssociation": false,
                }),
                _ => json!({}),
            };
            if let (Some(e), Some(extra)) = (e.as_object_mut(), extra.as_object()) {
                e.extend(extra.clone());
            }
            e
        })
        .collect();
    serde_json::to_vec(&events).map_err(|e| e.to_string())
}

fn association_type(object: &str) -> &'static str {
    match object {
        "contact" => "CONTACT_TO_COMPANY",
        "company" => "COMPANY_TO_CONTACT",
        "deal" => "DEAL_TO_CONTACT",
        "ticket" => "TICKET_TO_CONTACT",
        _ => "LINE_ITEM_TO_DEAL",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> Options<'static> {
        Options {
            count: 3,
            portal_id: 33,
            first_object_id: 10,
            property: "email",
            value: "x",
            now_ms: 1_700_000_000_000,
        }
    }

    #[test]
    fn batches_parse_as_hubspot_events() {
        for s in [
            "contact.creation",
            "deal.propertyChange",
            "company.merge",
            "ticket.associationChange",
            "contact.privacyDeletion",
        ] {
            let body = batch(s, &options()).unwrap();
            let events = hubspot_edge_core::event::parse_batch(&body).unwrap();
            assert_eq!(events.len(), 3, "{s}");
        }
        let v: Value =
            serde_json::from_slice(&batch("deal.propertyChange", &options()).unwrap()).unwrap();
        assert_eq!(v[2]["objectId"], 12);
        assert_eq!(v[0]["propertyName"], "email");
    }

    #[test]
    fn unknown_types_name_the_accepted_ones() {
        let e = batch("contact.teleport", &options()).unwrap_err();
        assert!(e.contains("propertyChange") && e.contains("line_item"));
        assert!(batch("deal.privacyDeletion", &options()).is_err());
    }
}
