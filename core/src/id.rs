//! Typed identifiers: a HubSpot account and a CRM record are both plain numbers on the wire
//! (docs/hubspot.md §2.1: `portalId`, `objectId`), and the CRM APIs spell record ids as decimal
//! strings (docs/hubspot.md §4). Giving each its own type stops one being passed as the other,
//! and gives one place that parses and prints them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A HubSpot account ("portal", "hub") id: `portalId` in webhook events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PortalId(u64);

/// A CRM record's id: `objectId` in webhook events, `id` / `hs_object_id` in the CRM APIs
/// (where it is a decimal string: [`fmt::Display`] prints that form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ObjectId(u64);

/// A text is not a decimal id.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a decimal id: {kind}")]
pub struct IdError {
    kind: &'static str,
}

impl IdError {
    /// Stable code: `id_invalid`.
    pub fn code(&self) -> &'static str {
        "id_invalid"
    }
}

macro_rules! id_type {
    ($name:ident, $kind:literal) => {
        impl $name {
            /// The id with this number.
            pub const fn new(id: u64) -> Self {
                Self(id)
            }

            /// The number.
            pub const fn get(self) -> u64 {
                self.0
            }
        }

        impl From<u64> for $name {
            fn from(id: u64) -> Self {
                Self(id)
            }
        }

        impl From<$name> for u64 {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl FromStr for $name {
            type Err = IdError;

            /// Decimal digits only (no sign, no spaces), as HubSpot prints ids.
            fn from_str(s: &str) -> Result<Self, IdError> {
                if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(IdError { kind: $kind });
                }
                s.parse().map(Self).map_err(|_| IdError { kind: $kind })
            }
        }
    };
}

id_type!(PortalId, "portal id");
id_type!(ObjectId, "object id");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_the_decimal_form() {
        assert_eq!("62515".parse::<PortalId>(), Ok(PortalId::new(62515)));
        assert_eq!(ObjectId::new(123).to_string(), "123");
        for bad in ["", "+1", "-1", " 1", "1 ", "0x10", "18446744073709551616"] {
            let e = bad.parse::<ObjectId>().unwrap_err();
            assert_eq!(e.code(), "id_invalid", "{bad:?}");
        }
    }

    #[test]
    fn serialises_as_the_bare_number() {
        assert_eq!(serde_json::to_string(&PortalId::new(7)).unwrap(), "7");
        assert_eq!(
            serde_json::from_str::<ObjectId>("42").unwrap(),
            ObjectId::new(42)
        );
    }
}
