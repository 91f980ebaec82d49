//! `RULES` JSON → [`Rule`]s, with every error naming its place (`rules[3].when.changes[0].op`).

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use super::{
    Action, Condition, Destinations, Ordering, Rule, RulesError, Source, TargetType, Test, When,
    MAX_ACTIONS_PER_RULE, MAX_CONDITIONS_PER_RULE, MAX_RULES,
};
use crate::filter;
use crate::mapping::Mapping;

/// The filter language's keys, allowed in `when` next to `changes`.
const FILTER_KEYS: [&str; 5] = [
    "types",
    "objectTypes",
    "properties",
    "portalIds",
    "changeSources",
];

pub(super) fn parse(
    json: &str,
    mapping: Option<&Mapping>,
    destinations: &Destinations,
) -> Result<Vec<Rule>, RulesError> {
    let root: Value =
        serde_json::from_str(json).map_err(|e| RulesError::invalid("RULES", strip(&e)))?;
    let root = object(&root, "RULES")?;
    only(root, "RULES", &["rules"])?;
    let list = match root.get("rules") {
        Some(Value::Array(list)) => list,
        Some(_) => return Err(RulesError::invalid("rules", "must be an array")),
        None => return Err(RulesError::invalid("rules", "missing")),
    };
    if list.len() > MAX_RULES {
        return Err(RulesError::invalid(
            "rules",
            format!("at most {MAX_RULES} rules"),
        ));
    }
    let mut names = BTreeSet::new();
    let mut rules = Vec::with_capacity(list.len());
    for (i, value) in list.iter().enumerate() {
        let path = format!("rules[{i}]");
        let rule = parse_rule(value, &path, mapping, destinations)?;
        if !names.insert(rule.name.clone()) {
            return Err(RulesError::invalid(
                format!("{path}.name"),
                format!("{:?} is used by an earlier rule", rule.name),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn strip(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.find(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

fn object<'v>(v: &'v Value, path: &str) -> Result<&'v Map<String, Value>, RulesError> {
    v.as_object()
        .ok_or_else(|| RulesError::invalid(path, "must be an object"))
}

/// Unknown keys are errors: a typo must not silently widen a rule.
fn only(map: &Map<String, Value>, path: &str, allowed: &[&str]) -> Result<(), RulesError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(RulesError::invalid(
            format!("{path}.{k}"),
            format!("unknown key; expected one of {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

fn text<'v>(map: &'v Map<String, Value>, key: &str, path: &str) -> Result<&'v str, RulesError> {
    match map.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(RulesError::invalid(
            format!("{path}.{key}"),
            "must be a non-empty string",
        )),
        None => Err(RulesError::invalid(format!("{path}.{key}"), "missing")),
    }
}

/// A name used in logs, dead letters and event types: `[a-z0-9_-]`, 1 to 64 characters.
pub(super) fn check_name(name: &str, path: &str) -> Result<(), RulesError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RulesError::invalid(
            path,
            "must be 1 to 64 characters of a-z, 0-9, `_` and `-`",
        ))
    }
}

fn parse_rule(
    value: &Value,
    path: &str,
    mapping: Option<&Mapping>,
    destinations: &Destinations,
) -> Result<Rule, RulesError> {
    let map = object(value, path)?;
    only(map, path, &["name", "when", "then", "guard"])?;
    let name = text(map, "name", path)?;
    check_name(name, &format!("{path}.name"))?;
    let echo_guarded = match map.get("guard") {
        None => false,
        Some(Value::String(s)) if s == "echo" => true,
        Some(_) => {
            return Err(RulesError::invalid(
                format!("{path}.guard"),
                "the only guard is \"echo\"",
            ))
        }
    };
    let when_path = format!("{path}.when");
    let when = object(
        map.get("when")
            .ok_or_else(|| RulesError::invalid(&when_path, "missing"))?,
        &when_path,
    )?;
    let mut allowed: Vec<&str> = FILTER_KEYS.to_vec();
    allowed.push("changes");
    only(when, &when_path, &allowed)?;
    let criteria: Map<String, Value> = when
        .iter()
        .filter(|(k, _)| k.as_str() != "changes")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let filter = if criteria.is_empty() {
        None
    } else {
        let config: filter::RuleConfig = serde_json::from_value(Value::Object(criteria))
            .map_err(|e| RulesError::invalid(&when_path, strip(&e)))?;
        Some(
            filter::Rule::compile(config)
                .map_err(|e| RulesError::invalid(&when_path, e.to_string()))?,
        )
    };
    let conditions = match when.get("changes") {
        None => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_CONDITIONS_PER_RULE => list
            .iter()
            .enumerate()
            .map(|(j, c)| parse_condition(c, &format!("{when_path}.changes[{j}]")))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(RulesError::invalid(
                format!("{when_path}.changes"),
                format!("must be an array of at most {MAX_CONDITIONS_PER_RULE} conditions"),
            ))
        }
    };
    if let (Some(mapping), Some(scope)) = (mapping, filter.as_ref().and_then(|f| f.object_scope()))
    {
        for (j, c) in conditions.iter().enumerate() {
            for t in &scope {
                let Some(object) = mapping.object(t) else {
                    return Err(RulesError::invalid(
                        format!("{when_path}.changes[{j}].field"),
                        format!("ENRICHMENT_MAP has no map for {t:?}: its events carry no mapped values"),
                    ));
                };
                if !object.field_names().any(|f| f == c.field) {
                    return Err(RulesError::invalid(
                        format!("{when_path}.changes[{j}].field"),
                        format!("{:?} is not a field of the {t:?} map", c.field),
                    ));
                }
            }
        }
    }
    let then_path = format!("{path}.then");
    let actions = match map.get("then") {
        Some(Value::Array(list)) if !list.is_empty() && list.len() <= MAX_ACTIONS_PER_RULE => list
            .iter()
            .enumerate()
            .map(|(j, a)| parse_action(a, &format!("{then_path}[{j}]"), destinations))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(RulesError::invalid(
                then_path,
                format!("must be an array of 1 to {MAX_ACTIONS_PER_RULE} actions"),
            ))
        }
        None => return Err(RulesError::invalid(then_path, "missing")),
    };
    Ok(Rule {
        name: name.to_owned(),
        filter,
        conditions,
        actions,
        echo_guarded,
    })
}

fn parse_condition(value: &Value, path: &str) -> Result<Condition, RulesError> {
    let map = object(value, path)?;
    only(map, path, &["field", "op", "value"])?;
    let field = text(map, "field", path)?.to_owned();
    let op = text(map, "op", path)?;
    let value_path = format!("{path}.value");
    let given = map.get("value");
    let need = || {
        given
            .cloned()
            .ok_or_else(|| RulesError::invalid(&value_path, format!("`{op}` needs a value")))
    };
    let none = || match given {
        Some(_) => Err(RulesError::invalid(
            &value_path,
            format!("`{op}` takes no value"),
        )),
        None => Ok(()),
    };
    let bound = |ord| {
        let v = need()?;
        match v.as_f64().filter(|n| n.is_finite()) {
            Some(n) => Ok(Test::Compare(ord, n)),
            None => Err(RulesError::invalid(&value_path, "must be a number")),
        }
    };
    let test = match op {
        "equals" => Test::Equals(need()?),
        "changed_to" => Test::ChangedTo(need()?),
        "changed_from" => Test::ChangedFrom(need()?),
        "changed" => none().map(|()| Test::Changed)?,
        "gt" => bound(Ordering::Gt)?,
        "gte" => bound(Ordering::Gte)?,
        "lt" => bound(Ordering::Lt)?,
        "lte" => bound(Ordering::Lte)?,
        "before" => Test::Before(date_bound(&need()?, &value_path)?),
        "after" => Test::After(date_bound(&need()?, &value_path)?),
        "is_empty" => none().map(|()| Test::IsEmpty)?,
        "is_not_empty" => none().map(|()| Test::IsNotEmpty)?,
        other => {
            return Err(RulesError::invalid(
                format!("{path}.op"),
                format!(
                    "unknown op {other:?}; expected one of equals, changed_to, changed_from, \
                     changed, gt, gte, lt, lte, before, after, is_empty, is_not_empty"
                ),
            ))
        }
    };
    Ok(Condition { field, test })
}

/// `YYYY-MM-DD`, an ISO datetime with offset, `now`, or `now±N{m,h,d}`.
fn date_bound(v: &Value, path: &str) -> Result<When, RulesError> {
    let bad = || {
        RulesError::invalid(
            path,
            "must be YYYY-MM-DD, an ISO-8601 datetime with an offset, `now` or `now-30d` \
             (m, h, d)",
        )
    };
    let Value::String(s) = v else {
        return Err(bad());
    };
    if let Some(rest) = s.strip_prefix("now") {
        if rest.is_empty() {
            return Ok(When::FromNow(0));
        }
        let (sign, rest) = match rest.as_bytes().first() {
            Some(b'+') => (1, &rest[1..]),
            Some(b'-') => (-1, &rest[1..]),
            _ => return Err(bad()),
        };
        let unit = match rest.as_bytes().last() {
            Some(b'm') => 60_000,
            Some(b'h') => 3_600_000,
            Some(b'd') => 86_400_000,
            _ => return Err(bad()),
        };
        let n: i64 = rest[..rest.len() - 1].parse().map_err(|_| bad())?;
        // Bounded so that the offset cannot overflow: 100,000 days is about 273 years.
        if !(0..=100_000 * 86_400_000 / unit).contains(&n) {
            return Err(bad());
        }
        return Ok(When::FromNow(sign * n * unit));
    }
    // Only dates and datetimes here: a bare number is not a date a reader can check.
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    super::instant(v).map(When::At).ok_or_else(bad)
}

fn parse_action(
    value: &Value,
    path: &str,
    destinations: &Destinations,
) -> Result<Action, RulesError> {
    let map = object(value, path)?;
    let kinds = ["forward", "update", "complete_action", "emit"];
    only(map, path, &kinds)?;
    if map.len() != 1 {
        return Err(RulesError::invalid(
            path,
            "must have exactly one of forward, update, complete_action, emit",
        ));
    }
    let (kind, body) = map.iter().next().expect("one entry, checked above");
    let path = format!("{path}.{kind}");
    let body = object(body, &path)?;
    let destination = |key_required: bool| -> Result<String, RulesError> {
        let name = match body.get("destination") {
            None if !key_required => super::DEFAULT_DESTINATION,
            _ => text(body, "destination", &path)?,
        };
        if destinations.get(name).is_none() {
            return Err(RulesError::invalid(
                format!("{path}.destination"),
                format!("no destination {name:?} in DESTINATIONS (or FORWARD_URL for `default`)"),
            ));
        }
        Ok(name.to_owned())
    };
    Ok(match kind.as_str() {
        "forward" => {
            only(body, &path, &["destination"])?;
            let to = destination(true)?;
            if to == super::DEFAULT_DESTINATION {
                return Err(RulesError::invalid(
                    format!("{path}.destination"),
                    "`default` already receives every change; forward to a named destination",
                ));
            }
            Action::Forward(to)
        }
        "emit" => {
            only(body, &path, &["name", "destination"])?;
            let name = text(body, "name", &path)?;
            check_name(name, &format!("{path}.name"))?;
            Action::Emit {
                name: name.to_owned(),
                destination: destination(false)?,
            }
        }
        "update" => {
            only(body, &path, &["target", "properties"])?;
            let target = match body.get("target") {
                None => TargetType::This,
                Some(Value::String(s)) if s == "self" => TargetType::This,
                Some(Value::Object(t)) if t.len() == 1 && t.contains_key("associated") => {
                    let to = text(t, "associated", &format!("{path}.target"))?;
                    TargetType::Associated(event_object_type(to).to_owned())
                }
                Some(_) => {
                    return Err(RulesError::invalid(
                        format!("{path}.target"),
                        "must be \"self\" or {\"associated\": \"<object type>\"}",
                    ))
                }
            };
            let properties = sources(body, "properties", &path)?;
            if properties.is_empty() {
                return Err(RulesError::invalid(
                    format!("{path}.properties"),
                    "must name at least one property",
                ));
            }
            Action::Update { target, properties }
        }
        "complete_action" => {
            only(body, &path, &["outputs"])?;
            Action::CompleteBlocked(sources(body, "outputs", &path)?)
        }
        _ => unreachable!("only() admitted the four kinds"),
    })
}

/// `{"name": "static" | 12 | true | {"copy": "field"}}`.
fn sources(
    body: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Vec<(String, Source)>, RulesError> {
    let path = format!("{path}.{key}");
    let Some(value) = body.get(key) else {
        return Err(RulesError::invalid(path, "missing"));
    };
    let map = object(value, &path)?;
    map.iter()
        .map(|(name, v)| {
            let at = format!("{path}.{name}");
            let source = match v {
                Value::String(_) | Value::Number(_) | Value::Bool(_) => Source::Static(v.clone()),
                Value::Object(o) if o.len() == 1 && o.contains_key("copy") => {
                    Source::Copy(text(o, "copy", &at)?.to_owned())
                }
                _ => {
                    return Err(RulesError::invalid(
                        at,
                        "must be a string, number, boolean or {\"copy\": \"<field>\"}",
                    ))
                }
            };
            Ok((name.clone(), source))
        })
        .collect()
}

/// An object type as written in API paths, events or ids (`companies`, `company`, `0-2`) in
/// the events' vocabulary (`company`): the mapping's own reading of object types.
pub(super) fn event_object_type(name: &str) -> &str {
    crate::mapping::canonical_object_type(name)
}
