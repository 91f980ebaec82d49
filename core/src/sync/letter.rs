//! The dead letter of a sync record: which record, never its values.

use serde::{Deserialize, Serialize};

use crate::id::{ObjectId, PortalId};

/// The payload of a sync dead letter: a record that could not be delivered (its values do not
/// map, or it is too large for a delivery), named by portal, object type and id only, so the
/// store holds no personal data.
///
/// Re-driving it asks the type's run to read the record again ([`super::Run::recheck`]): the
/// record was not committed, so once the cause is fixed (the map, the destination's limit) it
/// is delivered; if it still cannot be, it is dead-lettered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncLetter {
    /// Always `"sync"`: tells this payload from an event's.
    pub source: SyncSource,
    /// The object type as in API paths (`contacts`).
    pub object_type: String,
    /// The record's HubSpot id.
    pub object_id: String,
    /// The HubSpot account.
    pub portal_id: PortalId,
}

/// The `source` tag of a [`SyncLetter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncSource {
    /// The outbound sync.
    Sync,
}

impl SyncLetter {
    /// The letter of record `object_id` of `object_type` in `portal_id`.
    pub fn new(portal_id: PortalId, object_type: &str, object_id: &str) -> Self {
        Self {
            source: SyncSource::Sync,
            object_type: object_type.to_owned(),
            object_id: object_id.to_owned(),
            portal_id,
        }
    }

    /// Reads a dead letter's payload; `None` if it is not a sync letter (an event's, say).
    pub fn parse(payload: &serde_json::Value) -> Option<Self> {
        Self::deserialize(payload).ok()
    }

    /// The dead letter's detail: `sync: {objectType} record {id} was not delivered` (no values).
    pub fn detail(&self) -> String {
        format!(
            "sync: {} record {} was not delivered",
            self.object_type, self.object_id
        )
    }

    /// The dead letter's key: `sync:{objectType}:{id}`.
    pub fn key(&self) -> String {
        format!("sync:{}:{}", self.object_type, self.object_id)
    }

    /// The record id (HubSpot's ids are 64-bit numbers, printed in decimal); `None` if it is
    /// not one.
    pub fn id(&self) -> Option<ObjectId> {
        self.object_id.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_tells_sync_letters_from_events() {
        let letter = SyncLetter::new(PortalId::new(62515), "contacts", "901");
        let v = serde_json::to_value(&letter).unwrap();
        assert_eq!(
            v,
            json!({"source": "sync", "objectType": "contacts", "objectId": "901", "portalId": 62515})
        );
        assert_eq!(SyncLetter::parse(&v), Some(letter.clone()));
        assert_eq!(letter.id(), Some(ObjectId::new(901)));
        assert_eq!(
            letter.detail(),
            "sync: contacts record 901 was not delivered"
        );
        assert_eq!(letter.key(), "sync:contacts:901");
        // An event's payload is not a sync letter.
        let event = json!({"eventId": 1, "subscriptionType": "contact.propertyChange",
            "objectId": 901, "portalId": 62515, "occurredAt": 1});
        assert_eq!(SyncLetter::parse(&event), None);
        assert_eq!(
            SyncLetter::parse(&json!({"source": "inbound", "objectType": "contacts",
                "objectId": "1", "portalId": 1})),
            None
        );
        // Decimal digits only (ObjectId's form): `+7`, which u64's parser took, is no id.
        for bad in ["x", "+7", ""] {
            assert_eq!(
                SyncLetter::new(PortalId::new(1), "contacts", bad).id(),
                None
            );
        }
    }
}
