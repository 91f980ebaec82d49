//! Associations between records (§4.3, v4 API): HubSpot-defined type ids, paired both ways.

use std::collections::{BTreeMap, HashMap};

use super::store::Kind;

/// `(from, to, associationTypeId, is_primary)` for HUBSPOT_DEFINED types (§4.3 table).
const TYPES: &[(Kind, Kind, u32, bool)] = &[
    (Kind::Contact, Kind::Company, 279, false),
    (Kind::Contact, Kind::Company, 1, true),
    (Kind::Contact, Kind::Deal, 4, false),
    (Kind::Contact, Kind::Ticket, 15, false),
    (Kind::Contact, Kind::Contact, 449, false),
    (Kind::Company, Kind::Contact, 280, false),
    (Kind::Company, Kind::Contact, 2, true),
    (Kind::Company, Kind::Deal, 342, false),
    (Kind::Company, Kind::Ticket, 340, false),
    (Kind::Company, Kind::Company, 450, false),
    (Kind::Deal, Kind::Contact, 3, false),
    (Kind::Deal, Kind::Company, 341, false),
    (Kind::Deal, Kind::Company, 5, true),
    (Kind::Deal, Kind::Ticket, 27, false),
    (Kind::Ticket, Kind::Contact, 16, false),
    (Kind::Ticket, Kind::Company, 339, false),
    (Kind::Ticket, Kind::Company, 26, true),
    (Kind::Ticket, Kind::Deal, 28, false),
];

pub(super) const HUBSPOT_DEFINED: &str = "HUBSPOT_DEFINED";

/// The unlabelled default type from `from` to `to`, if HubSpot defines one.
pub(super) fn default_type(from: Kind, to: Kind) -> Option<u32> {
    TYPES
        .iter()
        .find(|(f, t, _, primary)| *f == from && *t == to && !primary)
        .map(|(_, _, id, _)| *id)
}

/// Whether HubSpot defines a primary type from `from` to `to` (contact → primary company…).
pub(super) fn has_primary(from: Kind, to: Kind) -> bool {
    TYPES
        .iter()
        .any(|(f, t, _, primary)| *f == from && *t == to && *primary)
}

/// The target type of a HUBSPOT_DEFINED type id used from `from`, and whether it is primary.
pub(super) fn target_of(from: Kind, type_id: u32) -> Option<(Kind, bool)> {
    TYPES
        .iter()
        .find(|(f, _, id, _)| *f == from && *id == type_id)
        .map(|(_, t, _, p)| (*t, *p))
}

/// One association type on a pair (`{associationCategory, associationTypeId}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AssocType {
    pub(super) category: String,
    pub(super) type_id: u32,
}

/// One record: its type and id.
pub(super) type End = (Kind, u64);

/// Associations to create with a record: the target and the types.
pub(super) type Links = Vec<(End, Vec<AssocType>)>;

/// All associations, stored from both ends.
#[derive(Debug, Default)]
pub(super) struct Associations {
    edges: HashMap<End, BTreeMap<(u64, u64), Vec<AssocType>>>,
}

fn kind_key(k: Kind) -> u64 {
    match k {
        Kind::Contact => 1,
        Kind::Company => 2,
        Kind::Deal => 3,
        Kind::Ticket => 5,
        Kind::Custom(n) => 1_000_000 + n,
    }
}

/// The kind [`kind_key`] numbers.
fn kind_of(key: u64) -> Kind {
    match key {
        1 => Kind::Contact,
        2 => Kind::Company,
        3 => Kind::Deal,
        5 => Kind::Ticket,
        n => Kind::Custom(n - 1_000_000),
    }
}

impl Associations {
    fn add_one(&mut self, from: End, to: End, t: AssocType) {
        let list = self
            .edges
            .entry(from)
            .or_default()
            .entry((kind_key(to.0), to.1))
            .or_default();
        if !list.contains(&t) {
            list.push(t);
        }
    }

    /// Associates `from` → `to` with `types`, and `to` → `from` with the reverse default.
    /// A primary type also adds the unlabelled default (§2.2 "will cause the corresponding
    /// non-primary association to also be created").
    pub(super) fn add(&mut self, from: End, to: End, types: &[AssocType]) {
        for t in types {
            self.add_one(from, to, t.clone());
            let primary = t.category == HUBSPOT_DEFINED
                && target_of(from.0, t.type_id).is_some_and(|(_, p)| p);
            if primary {
                if let Some(d) = default_type(from.0, to.0) {
                    self.add_one(from, to, hubspot(d));
                }
            }
        }
        if let Some(rev) = default_type(to.0, from.0) {
            self.add_one(to, from, hubspot(rev));
        }
    }

    /// Removes every association between the two records, both ways.
    /// Removes the association both ways; `true` if there was one.
    pub(super) fn remove(&mut self, a: End, b: End) -> bool {
        let forward = self
            .edges
            .get_mut(&a)
            .is_some_and(|m| m.remove(&(kind_key(b.0), b.1)).is_some());
        let backward = self
            .edges
            .get_mut(&b)
            .is_some_and(|m| m.remove(&(kind_key(a.0), a.1)).is_some());
        forward || backward
    }

    /// Contact `first_contact + i` → company `first_company + i mod companies`, primary
    /// (types 1 and 279; 280 back), for `i < contacts`: the seeding of `seed_associations`.
    pub(super) fn seed_contact_companies(
        &mut self,
        first_contact: u64,
        contacts: usize,
        first_company: u64,
        companies: usize,
    ) {
        let companies = companies.max(1) as u64;
        for i in 0..contacts as u64 {
            let company = first_company + i % companies;
            self.add(
                (Kind::Contact, first_contact + i),
                (Kind::Company, company),
                &[hubspot(1)],
            );
        }
    }

    /// Removes every association of `end`, both ways (its record is erased).
    pub(super) fn remove_all(&mut self, end: End) {
        let Some(links) = self.edges.remove(&end) else {
            return;
        };
        let own = (kind_key(end.0), end.1);
        for &(kind, id) in links.keys() {
            if let Some(m) = self.edges.get_mut(&(kind_of(kind), id)) {
                m.remove(&own);
            }
        }
    }

    /// `(to id, types)` from `from` to records of kind `to`, by id.
    pub(super) fn list(&self, from: End, to: Kind) -> Vec<(u64, &[AssocType])> {
        let key = kind_key(to);
        self.edges.get(&from).map_or_else(Vec::new, |m| {
            m.range((key, 0)..=(key, u64::MAX))
                .map(|((_, id), types)| (*id, types.as_slice()))
                .collect()
        })
    }
}

pub(super) fn hubspot(type_id: u32) -> AssocType {
    AssocType {
        category: HUBSPOT_DEFINED.into(),
        type_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_stored_both_ways_with_reverse_defaults() {
        let mut a = Associations::default();
        a.add((Kind::Contact, 1), (Kind::Company, 9), &[hubspot(1)]);
        let from_contact = a.list((Kind::Contact, 1), Kind::Company);
        assert_eq!(from_contact.len(), 1);
        assert_eq!(from_contact[0].1, &[hubspot(1), hubspot(279)]);
        assert_eq!(
            a.list((Kind::Company, 9), Kind::Contact)[0].1,
            &[hubspot(280)]
        );
        assert!(a.list((Kind::Company, 9), Kind::Deal).is_empty());
        a.remove((Kind::Company, 9), (Kind::Contact, 1));
        assert!(a.list((Kind::Contact, 1), Kind::Company).is_empty());
        assert_eq!(target_of(Kind::Deal, 341), Some((Kind::Company, false)));
        assert_eq!(default_type(Kind::Ticket, Kind::Deal), Some(28));
    }
}
