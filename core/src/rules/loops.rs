//! The configuration-time loop check (module docs, "Loops"): rule A → rule B when A writes a
//! property that B listens to on the same object type; a cycle among rules without
//! `"guard": "echo"` is rejected.

use std::collections::BTreeSet;

use super::{Action, Rule, RulesError, RulesErrorKind, TargetType};
use crate::mapping::Mapping;

/// A set that may be "everything".
#[derive(Debug, Clone)]
enum Set {
    All,
    Of(BTreeSet<String>),
}

impl Set {
    fn meets(&self, other: &Set) -> bool {
        match (self, other) {
            (Set::All, _) | (_, Set::All) => true,
            (Set::Of(a), Set::Of(b)) => a.intersection(b).next().is_some(),
        }
    }
}

/// What a rule listens to: object types and, on them, properties.
struct Listens {
    types: Set,
    properties: Set,
}

/// What one `update` writes.
struct Writes {
    types: Set,
    properties: Set,
}

fn scope(rule: &Rule) -> Set {
    match rule.filter.as_ref().and_then(|f| f.object_scope()) {
        Some(types) => Set::Of(types.into_iter().collect()),
        None => Set::All,
    }
}

/// The HubSpot properties a destination field reads, in every map that has the field (the
/// field's own name too: without a map, field and property are the same name).
fn properties_of_field(field: &str, mapping: Option<&Mapping>, types: &Set) -> Vec<String> {
    let mut out = vec![field.to_owned()];
    if let Some(mapping) = mapping {
        let candidates: Vec<&str> = match types {
            Set::Of(t) => t.iter().map(String::as_str).collect(),
            Set::All => mapping.object_types().collect(),
        };
        for t in candidates {
            if let Some(p) = mapping.object(t).and_then(|m| m.property_of_field(field)) {
                out.push(p.to_owned());
            }
        }
    }
    out
}

fn listens(rule: &Rule, mapping: Option<&Mapping>) -> Listens {
    let types = scope(rule);
    let named: Vec<String> = rule
        .filter
        .as_ref()
        .map(|f| f.properties().to_vec())
        .unwrap_or_default();
    let transitions: BTreeSet<String> = rule
        .conditions
        .iter()
        .filter(|c| c.test.is_transition())
        .flat_map(|c| properties_of_field(&c.field, mapping, &types))
        .collect();
    let properties = match (named.is_empty(), transitions.is_empty()) {
        (true, true) => Set::All,
        (false, true) => Set::Of(named.into_iter().collect()),
        (true, false) => Set::Of(transitions),
        (false, false) => Set::Of(
            named
                .into_iter()
                .filter(|p| transitions.contains(p))
                .collect(),
        ),
    };
    Listens { types, properties }
}

/// Whether a write's notification (`<type>.propertyChange` or `object.propertyChange`) can
/// pass the rule's filter at all (a rule on `deal.creation` never hears a property write).
fn hears_property_changes(rule: &Rule, types: &Set) -> bool {
    let Some(filter) = &rule.filter else {
        return true;
    };
    match types {
        Set::All => true,
        Set::Of(types) => types.iter().any(|t| {
            filter.matches_type(&format!("{t}.propertyChange"))
                || filter.matches_type("object.propertyChange")
        }),
    }
}

fn writes(rule: &Rule) -> Vec<Writes> {
    rule.actions
        .iter()
        .filter_map(|a| match a {
            Action::Update { target, properties } => Some(Writes {
                types: match target {
                    TargetType::This => scope(rule),
                    TargetType::Associated(t) => Set::Of(BTreeSet::from([t.clone()])),
                },
                properties: Set::Of(properties.iter().map(|(p, _)| p.clone()).collect()),
            }),
            _ => None,
        })
        .collect()
}

pub(super) fn check(rules: &[Rule], mapping: Option<&Mapping>) -> Result<(), RulesError> {
    let listening: Vec<Listens> = rules.iter().map(|r| listens(r, mapping)).collect();
    // edges[a] = the rules a's writes may trigger.
    let edges: Vec<Vec<usize>> = rules
        .iter()
        .map(|a| {
            if a.echo_guarded {
                return Vec::new();
            }
            let written = writes(a);
            (0..rules.len())
                .filter(|&b| {
                    let l = &listening[b];
                    written.iter().any(|w| {
                        w.types.meets(&l.types)
                            && w.properties.meets(&l.properties)
                            && hears_property_changes(&rules[b], &w.types)
                    })
                })
                .collect()
        })
        .collect();
    if let Some(cycle) = find_cycle(&edges) {
        let names: Vec<String> = cycle
            .iter()
            .chain(cycle.first())
            .map(|&i| format!("rules[{i}] {:?}", rules[i].name))
            .collect();
        return Err(RulesError {
            kind: RulesErrorKind::Loop,
            path: format!("rules[{}]", cycle[0]),
            detail: format!(
                "its updates write properties that trigger it again: {}; \
                 write other properties, narrow `when`, or add \"guard\": \"echo\"",
                names.join(" -> ")
            ),
        });
    }
    Ok(())
}

/// A cycle of the graph, as the nodes on it in order, if there is one (iterative DFS, so that
/// 200 rules cannot exhaust a small wasm stack).
fn find_cycle(edges: &[Vec<usize>]) -> Option<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    let mut mark = vec![Mark::New; edges.len()];
    for start in 0..edges.len() {
        if mark[start] != Mark::New {
            continue;
        }
        // (node, next edge index)
        let mut stack = vec![(start, 0usize)];
        mark[start] = Mark::Open;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&to) = edges[node].get(*next) {
                *next += 1;
                match mark[to] {
                    Mark::Open => {
                        let from = stack.iter().position(|(n, _)| *n == to).unwrap_or(0);
                        return Some(stack[from..].iter().map(|(n, _)| *n).collect());
                    }
                    Mark::New => {
                        mark[to] = Mark::Open;
                        stack.push((to, 0));
                    }
                    Mark::Done => {}
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    None
}
