//! The deterministic benchmark batch: 100 HubSpot webhook events, about 30 KB of JSON.
//!
//! The shapes follow HubSpot's deliveries (docs/hubspot.md §2.2–2.3): legacy `contact.*`,
//! `company.*` and `deal.*` subscriptions (property changes, creations, deletions, merges,
//! association changes) plus a few generic `object.propertyChange` events. Every value is fixed,
//! so every run, natively and in wasm, measures exactly the same bytes.

use std::fmt::Write as _;

/// Number of events in the batch.
pub const EVENTS: usize = 100;

const PORTAL_ID: u64 = 62_515;
const APP_ID: u64 = 1_160_452;
const FIRST_EVENT_ID: u64 = 3_816_279_340;
const FIRST_OCCURRED_AT: u64 = 1_764_219_981_000;

/// (propertyName, propertyValue) pairs for contacts.
const CONTACT_PROPERTIES: &[(&str, &str)] = &[
    ("email", "margaret.oconnell@northwind-logistics.example.com"),
    ("firstname", "Margaret"),
    ("lastname", "O'Connell-Brandström"),
    ("lifecyclestage", "marketingqualifiedlead"),
    ("hs_lead_status", "IN_PROGRESS"),
    ("phone", "+1 (617) 555-0143 ext. 2210"),
    (
        "jobtitle",
        "Director of Procurement & Vendor Relations, North America",
    ),
    ("company", "Northwind Logistics GmbH"),
    ("hs_analytics_source", "ORGANIC_SEARCH"),
    (
        "message",
        "Hi team, we are evaluating carriers for Q3 and would like a quote for 40 pallets/week \
         from Hamburg to Rotterdam, plus temperature-controlled options. Could someone call me \
         on Tuesday or Wednesday afternoon (CET)? Thanks, Margaret",
    ),
    ("hs_email_last_open_date", "1764219975123"),
    ("notes_last_contacted", "1764133575000"),
];

/// (propertyName, propertyValue) pairs for companies.
const COMPANY_PROPERTIES: &[(&str, &str)] = &[
    ("name", "Northwind Logistics GmbH"),
    ("domain", "northwind-logistics.example.com"),
    ("industry", "LOGISTICS_AND_SUPPLY_CHAIN"),
    ("annualrevenue", "48250000"),
    (
        "description",
        "Northwind Logistics is a mid-sized freight forwarder headquartered in Hamburg with \
         offices in Rotterdam, Antwerp and Gdańsk. Specialises in temperature-controlled \
         road freight, \"last mile\" distribution for e-commerce retailers and customs \
         brokerage for EU/UK trade lanes. 1,200 employees; ISO 9001 and GDP certified.",
    ),
    ("numberofemployees", "1200"),
    ("city", "Hamburg"),
    ("hs_lead_status", "OPEN_DEAL"),
];

/// (propertyName, propertyValue) pairs for deals.
const DEAL_PROPERTIES: &[(&str, &str)] = &[
    ("dealstage", "contractsent"),
    ("amount", "184500.00"),
    ("closedate", "1767139200000"),
    ("pipeline", "default"),
    (
        "dealname",
        "Northwind – Hamburg/Rotterdam reefer lane 2026 (40 pallets/week)",
    ),
    (
        "description",
        "Renewal plus expansion: adds the Antwerp cross-dock and weekend pickups. Pricing \
         approved by finance on 24 Nov; legal reviewing the liability cap (clause 14.2). \
         Champion: M. O'Connell. Risk: competitor offered 6% lower rate on the Gdańsk lane.",
    ),
    ("hs_priority", "high"),
    ("hubspot_owner_id", "47812075"),
];

/// Where a change came from: (changeSource, sourceId).
const SOURCES: &[(&str, Option<&str>)] = &[
    ("CRM_UI", Some("userId:47812075")),
    ("CRM_UI", Some("userId:51230981")),
    ("API", Some("1160452")),
    ("IMPORT", Some("userId:47812075")),
    ("WORKFLOWS", Some("workflowId:9931204")),
    ("CRM_UI", Some("userId:9000001")),
    ("FORM", None),
    ("INTEGRATION", Some("app:2210987")),
];

/// The batch as HubSpot would POST it: a JSON array of 100 events, about 30 KB.
pub fn build() -> Vec<u8> {
    let mut out = String::with_capacity(32 * 1024);
    out.push('[');
    for i in 0..EVENTS {
        if i > 0 {
            out.push(',');
        }
        event(&mut out, i);
    }
    out.push(']');
    out.into_bytes()
}

fn event(out: &mut String, i: usize) {
    let n = i as u64;
    let event_id = FIRST_EVENT_ID + n * 7;
    let occurred_at = FIRST_OCCURRED_AT + n * 137;
    let object_id = 51_200_000 + (n * 7919) % 100_000;
    let (change_source, source_id) = SOURCES[(i * 3) % SOURCES.len()];
    let attempt = u64::from(i.is_multiple_of(17));
    let common = |out: &mut String, sub_type: &str, subscription_id: u64| {
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            r#"{{"eventId":{event_id},"subscriptionId":{subscription_id},"portalId":{PORTAL_ID},"appId":{APP_ID},"occurredAt":{occurred_at},"subscriptionType":"{sub_type}","attemptNumber":{attempt},"objectId":{object_id}"#
        );
    };
    let source = |out: &mut String| {
        let _ = write!(out, r#","changeSource":"{change_source}""#);
        if let Some(s) = source_id {
            let _ = write!(out, r#","sourceId":"{s}""#);
        }
    };
    let property_change = |out: &mut String, object: &str, sub_id: u64, props: &[(&str, &str)]| {
        let (name, value) = props[(i / 3) % props.len()];
        common(out, &format!("{object}.propertyChange"), sub_id);
        let _ = write!(
            out,
            r#","propertyName":"{}","propertyValue":"{}""#,
            name,
            json_escape(value)
        );
        source(out);
        out.push('}');
    };
    let object = ["contact", "company", "deal"][(i / 10) % 3];
    match i % 10 {
        0..=2 => property_change(out, "contact", 2_571_234, CONTACT_PROPERTIES),
        3 => property_change(out, "company", 2_571_240, COMPANY_PROPERTIES),
        4 => property_change(out, "deal", 2_571_251, DEAL_PROPERTIES),
        5 => {
            common(out, &format!("{object}.creation"), 2_571_230);
            source(out);
            out.push_str(r#","changeFlag":"CREATED"}"#);
        }
        6 => {
            common(out, &format!("{object}.deletion"), 2_571_231);
            source(out);
            out.push_str(r#","changeFlag":"DELETED"}"#);
        }
        7 => {
            common(out, &format!("{object}.merge"), 2_571_232);
            let _ = write!(
                out,
                r#","primaryObjectId":{object_id},"mergedObjectIds":[{},{}],"newObjectId":{},"numberOfPropertiesMoved":{}"#,
                object_id + 11,
                object_id + 12,
                object_id + 13,
                3 + i % 40
            );
            source(out);
            out.push('}');
        }
        8 => {
            let (kind, from, to) = [
                ("CONTACT_TO_COMPANY", "contact", 1),
                ("DEAL_TO_CONTACT", "deal", 3),
                ("COMPANY_TO_DEAL", "company", 5),
            ][(i / 10) % 3];
            common(out, &format!("{from}.associationChange"), 2_571_233);
            let _ = write!(
                out,
                r#","associationType":"{kind}","fromObjectId":{object_id},"toObjectId":{},"associationRemoved":{},"isPrimaryAssociation":{},"associationCategory":"HUBSPOT_DEFINED","associationTypeId":{to}"#,
                object_id + 101,
                i % 20 == 8,
                i % 30 == 8,
            );
            source(out);
            out.push('}');
        }
        _ => {
            // Generic subscription (object.*), standard objects by objectTypeId.
            let (type_id, props) = [
                ("0-1", CONTACT_PROPERTIES),
                ("0-3", DEAL_PROPERTIES),
                ("0-2", COMPANY_PROPERTIES),
            ][(i / 10) % 3];
            let (name, value) = props[(i / 10) % props.len()];
            common(out, "object.propertyChange", 2_571_260);
            let _ = write!(
                out,
                r#","objectTypeId":"{type_id}","propertyName":"{name}","propertyValue":"{}","isSensitive":false"#,
                json_escape(value)
            );
            source(out);
            out.push('}');
        }
    }
}

fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_is_deterministic_valid_json_of_about_30_kb() {
        let body = build();
        assert_eq!(body, build());
        assert!((25_000..=36_000).contains(&body.len()), "{}", body.len());
        let elements = hubspot_edge_core::event::parse_batch(&body).unwrap();
        assert_eq!(elements.len(), EVENTS);
        assert!(elements.iter().all(|e| e.event.is_ok()));
    }
}
