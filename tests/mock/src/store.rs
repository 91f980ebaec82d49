//! The in-memory CRM: object types, typed property values (§7), records, seeding and search
//! (§4.4). Pure data structures; the HTTP layer is in `api.rs`.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::time::{format_date, format_iso, format_time_of_day, is_midnight, parse_iso};

/// A CRM object type, parsed from a path segment (`contacts`, `0-1`, `2-123`…; §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Contact,
    Company,
    Deal,
    Ticket,
    /// A custom object by objectTypeId `2-N`.
    Custom(u64),
}

pub(super) const LIFECYCLE: &[&str] = &[
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
];

pub(super) const DEAL_STAGES: &[&str] = &[
    "appointmentscheduled",
    "qualifiedtobuy",
    "presentationscheduled",
    "decisionmakerboughtin",
    "contractsent",
    "closedwon",
    "closedlost",
];

impl Kind {
    pub(super) fn parse(s: &str) -> Option<Self> {
        match s {
            "contacts" | "contact" | "0-1" => Some(Self::Contact),
            "companies" | "company" | "0-2" => Some(Self::Company),
            "deals" | "deal" | "0-3" => Some(Self::Deal),
            "tickets" | "ticket" | "0-5" => Some(Self::Ticket),
            _ => s
                .strip_prefix("2-")
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse().ok())
                .map(Self::Custom),
        }
    }

    /// `0-1`, `2-123`….
    pub(super) fn object_type_id(self) -> String {
        match self {
            Self::Contact => "0-1".into(),
            Self::Company => "0-2".into(),
            Self::Deal => "0-3".into(),
            Self::Ticket => "0-5".into(),
            Self::Custom(n) => format!("2-{n}"),
        }
    }

    /// `contacts`… (the v3 `associations` response key).
    pub(super) fn plural(self) -> String {
        match self {
            Self::Contact => "contacts".into(),
            Self::Company => "companies".into(),
            Self::Deal => "deals".into(),
            Self::Ticket => "tickets".into(),
            Self::Custom(_) => self.object_type_id(),
        }
    }

    /// `contact`… (v3 association type names such as `contact_to_company`).
    pub(super) fn singular(self) -> String {
        match self {
            Self::Contact => "contact".into(),
            Self::Company => "company".into(),
            Self::Deal => "deal".into(),
            Self::Ticket => "ticket".into(),
            Self::Custom(_) => self.object_type_id(),
        }
    }

    /// Upper-case name used in HubSpot's batch error messages (`CONTACT`).
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Contact => "CONTACT",
            Self::Company => "COMPANY",
            Self::Deal => "DEAL",
            Self::Ticket => "TICKET",
            Self::Custom(_) => "OBJECT",
        }
    }

    fn created_prop(self) -> &'static str {
        match self {
            Self::Custom(_) => "hs_createdate",
            _ => "createdate",
        }
    }

    fn modified_props(self) -> &'static [&'static str] {
        match self {
            // §4.4: "Contacts use `lastmodifieddate`; most other objects use `hs_lastmodifieddate`."
            Self::Contact => &["lastmodifieddate", "hs_lastmodifieddate"],
            _ => &["hs_lastmodifieddate"],
        }
    }

    /// Properties returned when the request names none (§4.4 for contacts; the others follow
    /// HubSpot's observed defaults).
    fn default_props(self) -> &'static [&'static str] {
        match self {
            Self::Contact => &[
                "createdate",
                "email",
                "firstname",
                "hs_object_id",
                "lastmodifieddate",
                "lastname",
            ],
            Self::Company => &[
                "createdate",
                "domain",
                "hs_lastmodifieddate",
                "hs_object_id",
                "name",
            ],
            Self::Deal => &[
                "amount",
                "closedate",
                "createdate",
                "dealname",
                "dealstage",
                "hs_lastmodifieddate",
                "hs_object_id",
                "pipeline",
            ],
            Self::Ticket => &[
                "content",
                "createdate",
                "hs_lastmodifieddate",
                "hs_object_id",
                "hs_pipeline",
                "hs_pipeline_stage",
                "subject",
            ],
            Self::Custom(_) => &["hs_createdate", "hs_lastmodifieddate", "hs_object_id"],
        }
    }

    pub(super) fn is_read_only(self, name: &str) -> bool {
        name == "hs_object_id"
            || name == self.created_prop()
            || self.modified_props().contains(&name)
    }

    fn prop_type(self, name: &str) -> PropType {
        match (self, name) {
            (_, "createdate" | "hs_createdate" | "hs_lastmodifieddate" | "lastmodifieddate") => {
                PropType::DateTime
            }
            (_, "hs_object_id" | "amount" | "numberofemployees" | "annualrevenue") => {
                PropType::Number
            }
            (Self::Contact, "email") => PropType::Email,
            (Self::Contact, "lifecyclestage") => PropType::Enum(LIFECYCLE),
            (Self::Contact, "date_of_birth") => PropType::Date,
            (Self::Deal, "dealstage") => PropType::Enum(DEAL_STAGES),
            (Self::Deal, "closedate") => PropType::DateTime,
            _ => PropType::String,
        }
    }
}

/// The property types the mock models (§7). Properties not listed are strings.
#[derive(Debug, Clone, Copy)]
enum PropType {
    String,
    Number,
    Date,
    DateTime,
    Email,
    Enum(&'static [&'static str]),
}

/// One rejected property value: HubSpot's `errors[]` entry (§4.5).
#[derive(Debug, Clone)]
pub(super) struct PropError {
    pub(super) name: String,
    pub(super) code: &'static str,
    pub(super) message: String,
}

impl PropError {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "message": self.message,
            "code": self.code,
            "context": {"propertyName": [self.name]},
        })
    }
}

const MAX_STRING_CHARS: usize = 65_536;

fn is_number(v: &str) -> bool {
    let digits = v.strip_prefix('-').unwrap_or(v);
    let mut periods = 0;
    let mut any_digit = false;
    for b in digits.bytes() {
        match b {
            b'0'..=b'9' => any_digit = true,
            b'.' => periods += 1,
            _ => return false,
        }
    }
    any_digit && periods <= 1
}

fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.split_once('@') else {
        return false;
    };
    let Some((_, tld)) = domain.rsplit_once('.') else {
        return false;
    };
    !local.is_empty()
        && !local.contains('"')
        && !domain.contains('@')
        && !v.contains(char::is_whitespace)
        && domain.split('.').all(|l| !l.is_empty())
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Normalises one written value to what HubSpot stores, or says why it is invalid (§7).
/// `existing` is the current value (for the leading-`;` append of multi-value enums).
fn normalise(
    kind: Kind,
    name: &str,
    value: &str,
    existing: Option<&str>,
) -> Result<String, PropError> {
    let err = |code: &'static str, message: String| PropError {
        name: name.to_owned(),
        code,
        message,
    };
    if value.is_empty() {
        return Ok(String::new());
    }
    if value.chars().count() > MAX_STRING_CHARS {
        return Err(err(
            "INVALID_STRING",
            format!("{name} is longer than {MAX_STRING_CHARS} characters"),
        ));
    }
    match kind.prop_type(name) {
        PropType::String => Ok(value.to_owned()),
        PropType::Number if is_number(value) => Ok(value.to_owned()),
        PropType::Number => Err(err(
            "INVALID_INTEGER",
            format!("{value} was not a valid number."),
        )),
        PropType::Email => {
            let v = value.trim().to_ascii_lowercase();
            if is_email(&v) {
                Ok(v)
            } else {
                Err(err(
                    "INVALID_EMAIL",
                    format!("Email address {value} is invalid"),
                ))
            }
        }
        PropType::Date => {
            let ms = if value.bytes().all(|b| b.is_ascii_digit()) {
                value.parse::<u64>().ok()
            } else {
                parse_iso(value)
            };
            match ms {
                Some(ms) if is_midnight(ms) => Ok(format_date(ms)),
                Some(ms) => Err(err(
                    "INVALID_DATE",
                    format!(
                        "{value} is at {} UTC, not midnight!",
                        format_time_of_day(ms)
                    ),
                )),
                None => Err(err("INVALID_DATE", format!("{value} is not a valid date"))),
            }
        }
        PropType::DateTime => {
            let ms = if value.bytes().all(|b| b.is_ascii_digit()) {
                value.parse::<u64>().ok()
            } else {
                parse_iso(value)
            };
            ms.map(format_iso).ok_or_else(|| {
                err(
                    "INVALID_DATETIME",
                    format!("{value} is not a valid datetime"),
                )
            })
        }
        PropType::Enum(options) => {
            let (append, list) = match value.strip_prefix(';') {
                Some(rest) => (true, rest),
                None => (false, value),
            };
            for v in list.split(';') {
                if !options.contains(&v) {
                    return Err(err(
                        "INVALID_OPTION",
                        format!(
                            "{v} was not one of the allowed options: [{}]",
                            options.join(", ")
                        ),
                    ));
                }
            }
            match existing {
                Some(old) if append && !old.is_empty() => Ok(format!("{old};{list}")),
                _ => Ok(list.to_owned()),
            }
        }
    }
}

/// Property values of one record: a small vec map with shared (interned) names, so that
/// seeding 100,000s of records allocates only the values.
#[derive(Debug, Clone, Default)]
pub(super) struct Props(Vec<(Arc<str>, String)>);

impl Props {
    pub(super) fn get(&self, name: &str) -> Option<&String> {
        self.0.iter().find(|(k, _)| &**k == name).map(|(_, v)| v)
    }

    fn insert(&mut self, name: &Arc<str>, value: String) {
        match self.0.iter_mut().find(|(k, _)| **k == **name) {
            Some((_, v)) => *v = value,
            None => self.0.push((Arc::clone(name), value)),
        }
    }

    fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| &**k != name);
    }

    /// Every (name, value) pair.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, v.as_str()))
    }

    fn values(&self) -> impl Iterator<Item = &String> {
        self.0.iter().map(|(_, v)| v)
    }
}

/// The names of the properties the store maintains itself, allocated once per type.
#[derive(Debug)]
struct SystemKeys {
    object_id: Arc<str>,
    created: Arc<str>,
    modified: Vec<Arc<str>>,
    email: Arc<str>,
}

impl SystemKeys {
    fn new(kind: Kind) -> Self {
        Self {
            object_id: Arc::from("hs_object_id"),
            created: Arc::from(kind.created_prop()),
            modified: kind
                .modified_props()
                .iter()
                .map(|p| Arc::from(*p))
                .collect(),
            email: Arc::from("email"),
        }
    }
}

/// One stored object.
#[derive(Debug, Clone)]
pub(super) struct Record {
    pub(super) id: u64,
    pub(super) props: Props,
    pub(super) created_ms: u64,
    pub(super) updated_ms: u64,
    pub(super) archived_ms: Option<u64>,
    /// The record this one was merged into (`POST …/merge`): it is then archived but listed
    /// nowhere, and single reads and PATCHes by its id reach the survivor.
    pub(super) merged_into: Option<u64>,
    /// Property history (`propertiesWithHistory`, §4.1) of the properties written since the
    /// record was created, as `(name, value, ms)` in write order; the value a property had at
    /// creation is its first entry, at `created_ms`. A property never written since has one
    /// implied entry, its value at creation (see [`Record::history_of`]): seeded records keep
    /// no list until written.
    history: Vec<(Arc<str>, String, u64)>,
}

impl Record {
    pub(super) fn is_archived(&self) -> bool {
        self.archived_ms.is_some()
    }

    /// The numeric value of a property the store maintains from the record's own fields (the id,
    /// the created and the last-modified dates as epoch ms), without parsing its string: search
    /// filters and sorts on these run over every record (a 100k backfill windows on them).
    fn system_number(&self, name: &str) -> Option<f64> {
        let ms = match name {
            "hs_object_id" => self.id,
            "createdate" | "hs_createdate" => self.created_ms,
            "lastmodifieddate" | "hs_lastmodifieddate" => self.updated_ms,
            _ => return None,
        };
        // The stored string is the source of truth: only when the property is set.
        self.props.get(name)?;
        // Ids and epoch ms are far below 2^53: exact in f64.
        #[allow(clippy::cast_precision_loss)]
        Some(ms as f64)
    }

    pub(super) fn prop(&self, name: &str) -> Option<&str> {
        self.props
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// `SimplePublicObject` (§4.1). Requested properties without a value are `null` (the
    /// contacts guide's reading of §8.11).
    pub(super) fn render(&self, kind: Kind, requested: &[String]) -> Value {
        let mut props = Map::new();
        if requested.is_empty() {
            for p in kind.default_props() {
                props.insert((*p).to_owned(), self.value(p));
            }
        } else {
            for p in requested {
                props.insert(p.clone(), self.value(p));
            }
            for p in ["hs_object_id", kind.created_prop()]
                .into_iter()
                .chain(kind.modified_props().iter().copied())
            {
                props.insert(p.to_owned(), self.value(p));
            }
        }
        let mut obj = json!({
            "id": self.id.to_string(),
            "properties": props,
            "createdAt": format_iso(self.created_ms),
            "updatedAt": format_iso(self.updated_ms),
            "archived": self.is_archived(),
        });
        if let (Some(at), Some(o)) = (self.archived_ms, obj.as_object_mut()) {
            o.insert("archivedAt".into(), Value::String(format_iso(at)));
        }
        obj
    }

    fn value(&self, name: &str) -> Value {
        self.props
            .get(name)
            .map_or(Value::Null, |v| Value::String(v.clone()))
    }

    /// Remembers the write of `value` to `name` at `now_ms`, when it changes the value: the
    /// value at creation first, if this is the property's first write since.
    fn record_write(&mut self, name: &Arc<str>, value: &str, now_ms: u64) {
        let old = self.props.get(name).map_or("", String::as_str);
        if old == value {
            return;
        }
        if !old.is_empty() && !self.history.iter().any(|(n, _, _)| n == name) {
            let at_creation = (Arc::clone(name), old.to_owned(), self.created_ms);
            self.history.push(at_creation);
        }
        self.history
            .push((Arc::clone(name), value.to_owned(), now_ms));
    }

    /// The history of `name`, newest first (HubSpot documents no order: clients must sort), as
    /// `(value, ms)`; empty when the property never had a value.
    pub(super) fn history_of(&self, name: &str) -> Vec<(&str, u64)> {
        let mut entries: Vec<(&str, u64)> = self
            .history
            .iter()
            .filter(|(n, _, _)| &**n == name)
            .map(|(_, v, at)| (v.as_str(), *at))
            .collect();
        if entries.is_empty() {
            if let Some(v) = self.prop(name) {
                entries.push((v, self.created_ms));
            }
        }
        entries.reverse();
        entries
    }

    /// Adds `propertiesWithHistory` for `names` to a rendered record: each property with a
    /// history gets `[{value, timestamp, sourceType}]`, newest first; properties without one
    /// are left out (HubSpot ignores properties an object does not have). Maintained properties
    /// (`hs_lastmodifieddate`…) have none.
    pub(super) fn add_history(&self, rendered: &mut Value, names: &[String]) {
        let mut out = Map::new();
        for name in names {
            let entries: Vec<Value> = self
                .history_of(name)
                .into_iter()
                .map(|(value, at)| {
                    json!({"value": value, "timestamp": format_iso(at), "sourceType": "API"})
                })
                .collect();
            if !entries.is_empty() {
                out.insert(name.clone(), Value::Array(entries));
            }
        }
        if let Some(o) = rendered.as_object_mut() {
            o.insert("propertiesWithHistory".into(), Value::Object(out));
        }
    }
}

/// Why a write was refused.
#[derive(Debug, Clone)]
pub(super) enum WriteError {
    Invalid(Vec<PropError>),
    /// A contact with this email exists (409, §4.5).
    Duplicate(u64),
    NotFound(String),
}

#[derive(Debug, Default)]
struct Table {
    records: BTreeMap<u64, Record>,
    /// Lower-case email → id of the live contact (contacts only).
    emails: HashMap<String, u64>,
}

/// Every object of every type, with one id sequence.
#[derive(Debug)]
pub(super) struct Store {
    tables: HashMap<Kind, Table>,
    next_id: u64,
}

impl Default for Store {
    fn default() -> Self {
        Self {
            tables: HashMap::new(),
            next_id: 1,
        }
    }
}

/// A search request, already validated (§4.4).
#[derive(Debug, Clone, Default)]
pub(super) struct Search {
    pub(super) groups: Vec<Vec<Filter>>,
    pub(super) sort: Option<(String, bool)>,
    pub(super) query: Option<String>,
    pub(super) offset: usize,
    pub(super) limit: usize,
}

#[derive(Debug, Clone)]
pub(super) struct Filter {
    pub(super) property: String,
    pub(super) operator: Operator,
    pub(super) value: Option<String>,
    pub(super) high: Option<String>,
    pub(super) values: Vec<String>,
}

/// A filter with its given values parsed once (not once per record).
#[derive(Debug)]
struct Compiled<'a> {
    filter: &'a Filter,
    value: Given,
    high: Given,
    values: Vec<Given>,
}

#[derive(Debug)]
struct Given {
    raw: String,
    lower: String,
    num: Option<f64>,
}

impl Given {
    fn new(raw: &str) -> Self {
        Self {
            raw: raw.to_owned(),
            lower: raw.to_lowercase(),
            num: as_number(raw),
        }
    }

    /// Numeric when both sides are numbers, else case-insensitive string order ("Values in
    /// filters are case-insensitive", §4.4).
    fn compare(&self, stored: &str) -> Ordering {
        match (self.num.and_then(|_| as_number(stored)), self.num) {
            (Some(a), Some(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            _ => stored.to_lowercase().cmp(&self.lower),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Operator {
    Eq,
    Neq,
    Lt,
    Lte,
    Gt,
    Gte,
    Between,
    In,
    NotIn,
    HasProperty,
    NotHasProperty,
    ContainsToken,
    NotContainsToken,
}

impl Operator {
    pub(super) fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "EQ" => Self::Eq,
            "NEQ" => Self::Neq,
            "LT" => Self::Lt,
            "LTE" => Self::Lte,
            "GT" => Self::Gt,
            "GTE" => Self::Gte,
            "BETWEEN" => Self::Between,
            "IN" => Self::In,
            "NOT_IN" => Self::NotIn,
            "HAS_PROPERTY" => Self::HasProperty,
            "NOT_HAS_PROPERTY" => Self::NotHasProperty,
            "CONTAINS_TOKEN" => Self::ContainsToken,
            "NOT_CONTAINS_TOKEN" => Self::NotContainsToken,
            _ => return None,
        })
    }
}

/// A value as a number when it is one (or an ISO date/datetime, as epoch ms), so that
/// `"1579514400000"` filters compare with stored ISO datetimes (§7).
fn as_number(v: &str) -> Option<f64> {
    v.parse::<f64>().ok().or_else(|| {
        parse_iso(v).and_then(|ms| {
            // Epoch ms fit in f64 exactly up to 2^53.
            u32::try_from(ms / 1000)
                .ok()
                .map(|s| f64::from(s) * 1000.0 + f64::from(u32::try_from(ms % 1000).unwrap_or(0)))
        })
    })
}

/// A property value's sort position: numbers (and dates) numerically, then strings
/// case-insensitively; missing values last when ascending.
#[derive(Debug, PartialEq, PartialOrd)]
enum SortKey {
    Num(f64),
    Text(String),
    Missing,
}

impl SortKey {
    fn of(v: Option<&str>) -> Self {
        match v {
            None => Self::Missing,
            Some(v) => as_number(v).map_or_else(|| Self::Text(v.to_lowercase()), Self::Num),
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        self.partial_cmp(other).unwrap_or(Ordering::Equal)
    }
}

fn glob_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            text.starts_with(head)
                && (head.len()..=text.len())
                    .any(|i| text.is_char_boundary(i) && glob_match(tail, &text[i..]))
        }
    }
}

fn contains_token(stored: &str, token: &str) -> bool {
    let stored = stored.to_lowercase();
    let token = token.to_lowercase();
    glob_match(&token, &stored)
        || stored
            .split(|c: char| !c.is_alphanumeric())
            .any(|word| glob_match(&token, word))
}

impl<'a> Compiled<'a> {
    fn new(filter: &'a Filter) -> Self {
        Self {
            filter,
            value: Given::new(filter.value.as_deref().unwrap_or("")),
            high: Given::new(filter.high.as_deref().unwrap_or("")),
            values: filter.values.iter().map(|v| Given::new(v)).collect(),
        }
    }

    fn matches(&self, rec: &Record) -> bool {
        if let (Some(given), Some(stored)) =
            (self.value.num, rec.system_number(&self.filter.property))
        {
            let cmp = stored.partial_cmp(&given).unwrap_or(Ordering::Equal);
            match self.filter.operator {
                Operator::Eq => return cmp == Ordering::Equal,
                Operator::Neq => return cmp != Ordering::Equal,
                Operator::Lt => return cmp == Ordering::Less,
                Operator::Lte => return cmp != Ordering::Greater,
                Operator::Gt => return cmp == Ordering::Greater,
                Operator::Gte => return cmp != Ordering::Less,
                Operator::Between if self.high.num.is_some() => {
                    return cmp != Ordering::Less && self.high.num.is_some_and(|h| stored <= h);
                }
                _ => {}
            }
        }
        let stored = rec.prop(&self.filter.property);
        let cmp = |s: &str| self.value.compare(s);
        match (self.filter.operator, stored) {
            (Operator::HasProperty, s) => s.is_some(),
            (Operator::NotHasProperty, s) => s.is_none(),
            // Unset values match only the negative operators.
            (Operator::Neq | Operator::NotIn | Operator::NotContainsToken, None) => true,
            (_, None) => false,
            (Operator::Eq, Some(s)) => cmp(s) == Ordering::Equal,
            (Operator::Neq, Some(s)) => cmp(s) != Ordering::Equal,
            (Operator::Lt, Some(s)) => cmp(s) == Ordering::Less,
            (Operator::Lte, Some(s)) => cmp(s) != Ordering::Greater,
            (Operator::Gt, Some(s)) => cmp(s) == Ordering::Greater,
            (Operator::Gte, Some(s)) => cmp(s) != Ordering::Less,
            (Operator::Between, Some(s)) => {
                cmp(s) != Ordering::Less && self.high.compare(s) != Ordering::Greater
            }
            (Operator::In, Some(s)) => self.values.iter().any(|v| in_matches(s, v)),
            (Operator::NotIn, Some(s)) => !self.values.iter().any(|v| in_matches(s, v)),
            (Operator::ContainsToken, Some(s)) => contains_token(s, &self.value.raw),
            (Operator::NotContainsToken, Some(s)) => !contains_token(s, &self.value.raw),
        }
    }
}

/// `IN`/`NOT_IN`: "string values must be lowercase" (§4.4): the stored value is lowercased
/// and compared with the given one as sent, so an upper-case value never matches.
fn in_matches(stored: &str, given: &Given) -> bool {
    match (given.num.and_then(|_| as_number(stored)), given.num) {
        (Some(a), Some(b)) => a == b,
        _ => stored.to_lowercase() == given.raw,
    }
}

/// The ids a search can match at most, from `hs_object_id` comparisons in its only filter
/// group (ANDed there, so each one bounds every hit): windowing a backfill by id, the usual way
/// past the 10,000-result cap (§4.4), then scans only the window, not the whole table.
/// `None`: no id can match.
fn id_bounds(groups: &[Vec<Filter>]) -> Option<(u64, u64)> {
    let (mut low, mut high) = (0, u64::MAX);
    let [group] = groups else {
        return Some((low, high));
    };
    let num = |v: &Option<String>| v.as_deref().and_then(|v| v.parse::<u64>().ok());
    for f in group.iter().filter(|f| f.property == "hs_object_id") {
        let (value, high_value) = (num(&f.value), num(&f.high));
        match f.operator {
            Operator::Eq => {
                low = low.max(value.unwrap_or(0));
                high = high.min(value.unwrap_or(u64::MAX));
            }
            Operator::Gt => low = low.max(value.map_or(0, |v| v.saturating_add(1))),
            Operator::Gte => low = low.max(value.unwrap_or(0)),
            Operator::Lt => high = high.min(value.map_or(u64::MAX, |v| v.saturating_sub(1))),
            Operator::Lte => high = high.min(value.unwrap_or(u64::MAX)),
            Operator::Between => {
                low = low.max(value.unwrap_or(0));
                high = high.min(high_value.unwrap_or(u64::MAX));
            }
            _ => {}
        }
    }
    // An empty window is `None`: `range` panics on a reversed range.
    (low <= high).then_some((low, high))
}

impl Store {
    fn table(&mut self, kind: Kind) -> &mut Table {
        self.tables.entry(kind).or_default()
    }

    fn alloc_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// A live (or, with `archived`, an archived) record by id or by `id_property` value.
    pub(super) fn find(
        &self,
        kind: Kind,
        key: &str,
        id_property: Option<&str>,
        archived: bool,
    ) -> Option<&Record> {
        let table = self.tables.get(&kind)?;
        let rec = match id_property {
            None | Some("hs_object_id") => table.records.get(&key.parse::<u64>().ok()?),
            Some("email") if kind == Kind::Contact && !archived => {
                let id = table.emails.get(&key.trim().to_ascii_lowercase())?;
                table.records.get(id)
            }
            Some(p) => table.records.values().find(|r| {
                r.is_archived() == archived
                    && r.prop(p).is_some_and(|v| v.eq_ignore_ascii_case(key))
            }),
        }?;
        (rec.is_archived() == archived && rec.merged_into.is_none()).then_some(rec)
    }

    /// Live records by their ASCII-lower-cased value of `property` (the lowest id for a value
    /// several hold, as [`Store::find`] picks): one pass, for a batch's lookups.
    pub(super) fn index_of(&self, kind: Kind, property: &str) -> HashMap<String, u64> {
        let mut index = HashMap::new();
        let Some(table) = self.tables.get(&kind) else {
            return index;
        };
        for rec in table
            .records
            .values()
            .filter(|r| !r.is_archived() && r.merged_into.is_none())
        {
            if let Some(v) = rec.prop(property) {
                index.entry(v.to_ascii_lowercase()).or_insert(rec.id);
            }
        }
        index
    }

    /// The live record that the merged-away id `key` now names, following merges of merges:
    /// HubSpot answers a single read or PATCH by a merged id with the survivor (docs/hubspot.md
    /// §4.1: "the basic `PATCH` accepts IDs stored in `hs_merged_object_ids`").
    pub(super) fn survivor_of(&self, kind: Kind, key: &str) -> Option<&Record> {
        let table = self.tables.get(&kind)?;
        let mut rec = table.records.get(&key.parse::<u64>().ok()?)?;
        // Bounded by the number of records: a merge never points back at a merged record.
        for _ in 0..table.records.len() {
            match rec.merged_into {
                Some(next) => rec = table.records.get(&next)?,
                None => return (!rec.is_archived()).then_some(rec),
            }
        }
        None
    }

    /// Merges the live record `merged` into the live record `primary` (ids checked by the
    /// caller): `merged` is archived with [`Record::merged_into`] set, and its e-mail becomes
    /// one of the survivor's `hs_additional_emails`, which stay unique identifiers (§4.1).
    pub(super) fn merge_away(&mut self, kind: Kind, merged: u64, primary: u64, now_ms: u64) {
        let table = self.table(kind);
        let Some(rec) = table.records.get_mut(&merged) else {
            return;
        };
        rec.archived_ms = Some(now_ms);
        rec.merged_into = Some(primary);
        let mut emails: Vec<String> = Vec::new();
        if kind == Kind::Contact {
            for key in ["email", "hs_additional_emails"] {
                if let Some(v) = rec.props.get(key) {
                    emails.extend(v.split(';').filter(|e| !e.is_empty()).map(str::to_owned));
                }
            }
        }
        // A survivor without an e-mail takes the merged one as its own (a moved value).
        let survivor_has_email = table
            .records
            .get(&primary)
            .is_some_and(|r| r.props.get("email").is_some());
        if emails.is_empty() || !survivor_has_email {
            return;
        }
        for e in &emails {
            table.emails.insert(e.clone(), primary);
        }
        if let Some(survivor) = table.records.get_mut(&primary) {
            let name: Arc<str> = Arc::from("hs_additional_emails");
            let mut all: Vec<String> = survivor
                .props
                .get(&name)
                .map(|v| v.split(';').map(str::to_owned).collect())
                .unwrap_or_default();
            all.extend(emails);
            all.retain(|e| !e.is_empty());
            survivor.props.insert(&name, all.join(";"));
        }
    }

    fn validate(
        kind: Kind,
        props: &Map<String, Value>,
        existing: Option<&Record>,
    ) -> Result<Vec<(String, String)>, WriteError> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (name, v) in props {
            if kind.is_read_only(name) {
                continue;
            }
            let raw = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                // HubSpot coerces JSON numbers and booleans to their string form.
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                _ => {
                    errors.push(PropError {
                        name: name.clone(),
                        code: "INVALID_PROPERTY_VALUE",
                        message: format!("Property {name} must be a string"),
                    });
                    continue;
                }
            };
            let old = existing.and_then(|r| r.props.get(name)).map(String::as_str);
            match normalise(kind, name, &raw, old) {
                Ok(v) => out.push((name.clone(), v)),
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(WriteError::Invalid(errors))
        }
    }

    fn email_owner(&self, kind: Kind, values: &[(String, String)]) -> Option<u64> {
        if kind != Kind::Contact {
            return None;
        }
        let (_, email) = values.iter().find(|(k, v)| k == "email" && !v.is_empty())?;
        self.tables.get(&kind)?.emails.get(email).copied()
    }

    /// Creates a record from `properties` at `now_ms`.
    pub(super) fn create(
        &mut self,
        kind: Kind,
        props: &Map<String, Value>,
        now_ms: u64,
    ) -> Result<&Record, WriteError> {
        let values = Self::validate(kind, props, None)?;
        if let Some(existing) = self.email_owner(kind, &values) {
            return Err(WriteError::Duplicate(existing));
        }
        let id = self.alloc_id();
        let mut map = Props::default();
        for (k, v) in values.into_iter().filter(|(_, v)| !v.is_empty()) {
            map.insert(&Arc::from(k.as_str()), v);
        }
        let rec = new_record(&SystemKeys::new(kind), id, map, now_ms, now_ms);
        let table = self.table(kind);
        if let Some(email) = rec.props.get("email").filter(|_| kind == Kind::Contact) {
            table.emails.insert(email.clone(), id);
        }
        Ok(table.records.entry(id).or_insert(rec))
    }

    /// Updates the live record `key` (by id or `id_property`); `""` clears a value (§7).
    pub(super) fn update(
        &mut self,
        kind: Kind,
        key: &str,
        id_property: Option<&str>,
        props: &Map<String, Value>,
        now_ms: u64,
    ) -> Result<&Record, WriteError> {
        let Some(current) = self.find(kind, key, id_property, false) else {
            return Err(WriteError::NotFound(key.to_owned()));
        };
        let id = current.id;
        let values = Self::validate(kind, props, Some(current))?;
        if let Some(owner) = self.email_owner(kind, &values).filter(|o| *o != id) {
            return Err(WriteError::Duplicate(owner));
        }
        let table = self.table(kind);
        let Some(rec) = table.records.get_mut(&id) else {
            return Err(WriteError::NotFound(key.to_owned()));
        };
        let mut old_email = None;
        for (k, v) in values {
            if k == "email" {
                old_email = rec.props.get("email").cloned();
            }
            let name = Arc::from(k.as_str());
            rec.record_write(&name, &v, now_ms);
            if v.is_empty() {
                rec.props.remove(&k);
            } else {
                rec.props.insert(&name, v);
            }
        }
        rec.updated_ms = now_ms;
        for p in kind.modified_props() {
            rec.props.insert(&Arc::from(*p), format_iso(now_ms));
        }
        if kind == Kind::Contact {
            if let Some(old) = old_email {
                table.emails.remove(&old);
            }
            if let Some(e) = rec.props.get("email") {
                table.emails.insert(e.clone(), id);
            }
        }
        Ok(rec)
    }

    /// Soft-deletes; `false` when there is no live record with that id. Like HubSpot, archiving
    /// does not change `hs_lastmodifieddate` (docs/hubspot.md §4.1).
    pub(super) fn archive(&mut self, kind: Kind, id: &str, now_ms: u64) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        let table = self.table(kind);
        let Some(rec) = table.records.get_mut(&id).filter(|r| !r.is_archived()) else {
            return false;
        };
        rec.archived_ms = Some(now_ms);
        for key in ["email", "hs_additional_emails"] {
            for e in rec.props.get(key).map_or("", String::as_str).split(';') {
                if table.emails.get(e) == Some(&id) {
                    table.emails.remove(e);
                }
            }
        }
        true
    }

    /// Restores the archived record `id` (what HubSpot's recycling bin does, docs/hubspot.md §4.1;
    /// the objects API has no restore endpoint). Its dates stay as they were (HubSpot does not
    /// document whether a restore moves `hs_lastmodifieddate`). Errors: no archived record with
    /// that id (merged ones included) → `NotFound`; a live contact has its e-mail since →
    /// `Duplicate` naming it.
    pub(super) fn restore(&mut self, kind: Kind, id: &str) -> Result<u64, WriteError> {
        let not_found = || WriteError::NotFound(id.to_owned());
        let num = id.parse::<u64>().map_err(|_| not_found())?;
        let table = self.table(kind);
        let rec = table
            .records
            .get(&num)
            .filter(|r| r.is_archived() && r.merged_into.is_none())
            .ok_or_else(not_found)?;
        let emails: Vec<String> = if kind == Kind::Contact {
            ["email", "hs_additional_emails"]
                .iter()
                .filter_map(|k| rec.props.get(k))
                .flat_map(|v| v.split(';').filter(|e| !e.is_empty()).map(str::to_owned))
                .collect()
        } else {
            Vec::new()
        };
        if let Some(owner) = emails.iter().find_map(|e| table.emails.get(e)) {
            return Err(WriteError::Duplicate(*owner));
        }
        for e in emails {
            table.emails.insert(e, num);
        }
        if let Some(rec) = table.records.get_mut(&num) {
            rec.archived_ms = None;
        }
        Ok(num)
    }

    /// One page of live (or archived) records with id ≥ `after`, and the next cursor.
    pub(super) fn list(
        &self,
        kind: Kind,
        after: u64,
        limit: usize,
        archived: bool,
    ) -> (Vec<&Record>, Option<u64>) {
        let Some(table) = self.tables.get(&kind) else {
            return (Vec::new(), None);
        };
        let mut page = Vec::with_capacity(limit);
        let mut next = None;
        for rec in table
            .records
            .range(after..)
            .map(|(_, r)| r)
            .filter(|r| r.is_archived() == archived && r.merged_into.is_none())
        {
            if page.len() == limit {
                next = Some(rec.id);
                break;
            }
            page.push(rec);
        }
        (page, next)
    }

    /// All matches (for `total`) and the requested page of them.
    pub(super) fn search(&self, kind: Kind, s: &Search) -> (usize, Vec<&Record>) {
        let Some(table) = self.tables.get(&kind) else {
            return (0, Vec::new());
        };
        let query = s.query.as_deref().map(str::to_lowercase);
        let groups: Vec<Vec<Compiled<'_>>> = s
            .groups
            .iter()
            .map(|g| g.iter().map(Compiled::new).collect())
            .collect();
        let Some((low, high)) = id_bounds(&s.groups) else {
            return (0, Vec::new());
        };
        let matches = |r: &&Record| {
            !r.is_archived()
                && (groups.is_empty() || groups.iter().any(|g| g.iter().all(|f| f.matches(r))))
                && query.as_deref().is_none_or(|q| {
                    q.is_empty() || r.props.values().any(|v| v.to_lowercase().contains(q))
                })
        };
        let window = table.records.range(low..=high).map(|(_, r)| r);
        // In id order (no sort, or a sort on `hs_object_id`) the table's own order is the
        // answer: one pass counts `total` and keeps the page, nothing is collected or sorted.
        let id_order = match &s.sort {
            None => Some(true),
            Some((prop, ascending)) if prop == "hs_object_id" => Some(*ascending),
            Some(_) => None,
        };
        if let Some(ascending) = id_order {
            let in_order: Box<dyn Iterator<Item = &Record>> = if ascending {
                Box::new(window)
            } else {
                Box::new(window.rev())
            };
            let mut total = 0;
            let mut page = Vec::with_capacity(s.limit.min(200));
            for rec in in_order.filter(matches) {
                if total >= s.offset && page.len() < s.limit {
                    page.push(rec);
                }
                total += 1;
            }
            return (total, page);
        }
        let hits: Vec<&Record> = window.filter(matches).collect();
        if let Some((prop, ascending)) = &s.sort {
            // Keys computed once: parsing inside the comparator is far too slow for 100k hits.
            let mut keyed: Vec<(SortKey, &Record)> = hits
                .into_iter()
                .map(|r| {
                    let key = r
                        .system_number(prop)
                        .map_or_else(|| SortKey::of(r.prop(prop)), SortKey::Num);
                    (key, r)
                })
                .collect();
            let order = |(ka, a): &(SortKey, &Record), (kb, b): &(SortKey, &Record)| {
                let ord = ka.cmp(kb);
                let ord = if *ascending { ord } else { ord.reverse() };
                ord.then(a.id.cmp(&b.id))
            };
            let total = keyed.len();
            // Only the first `after + limit` (≤ 10,000) need sorting: select them in linear
            // time, then sort those, instead of sorting every hit of a 100k table per page.
            let wanted = s.offset.saturating_add(s.limit);
            if wanted < keyed.len() {
                keyed.select_nth_unstable_by(wanted, order);
                keyed.truncate(wanted);
            }
            keyed.sort_by(order);
            let page = keyed
                .into_iter()
                .map(|(_, r)| r)
                .skip(s.offset)
                .take(s.limit)
                .collect();
            return (total, page);
        }
        let total = hits.len();
        let page = hits.into_iter().skip(s.offset).take(s.limit).collect();
        (total, page)
    }

    /// Removes a record (live or archived) with no trace: what a GDPR deletion leaves (§2.2
    /// `contact.privacyDeletion`), without its notification. `false` when there is none.
    pub(super) fn erase(&mut self, kind: Kind, id: &str) -> bool {
        let Ok(id) = id.parse::<u64>() else {
            return false;
        };
        let table = self.table(kind);
        let Some(rec) = table.records.remove(&id) else {
            return false;
        };
        for key in ["email", "hs_additional_emails"] {
            for e in rec.props.get(key).map_or("", String::as_str).split(';') {
                if table.emails.get(e) == Some(&id) {
                    table.emails.remove(e);
                }
            }
        }
        true
    }

    /// Adds `n` deterministic records of each kind (`contact{i}@example.com`…), the kinds built
    /// in parallel so that 100,000s start in seconds even in a debug build. Returns each kind's
    /// first id (the ids of a kind are consecutive).
    pub(super) fn seed(&mut self, counts: &[(Kind, usize)]) -> Vec<u64> {
        let mut first = self.next_id;
        let jobs: Vec<(Kind, usize, u64)> = counts
            .iter()
            .map(|&(kind, n)| {
                let job = (kind, n, first);
                first += u64::try_from(n).unwrap_or(0);
                job
            })
            .collect();
        self.next_id = first;
        let firsts = jobs.iter().map(|&(_, _, first)| first).collect();
        let tables: Vec<(Kind, Table)> = std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|&(kind, n, first)| scope.spawn(move || (kind, seed_table(kind, n, first))))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for (kind, t) in tables {
            let table = self.table(kind);
            table.emails.extend(t.emails);
            table.records.extend(t.records);
        }
        firsts
    }
}

fn seed_table(kind: Kind, n: usize, first_id: u64) -> Table {
    const FIRST: &[&str] = &[
        "Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy",
        "Mallory", "Niaj", "Olivia", "Peggy", "Rupert", "Sybil", "Trent", "Victor", "Walter",
        "Zoe",
    ];
    const LAST: &[&str] = &[
        "Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Johnson", "Davies", "Robinson",
        "Wright", "Thompson", "Evans", "Walker", "White", "Roberts", "Green", "Hall", "Wood",
        "Jackson", "Clarke",
    ];
    let keys = SystemKeys::new(kind);
    let names: Vec<Arc<str>> = [
        "firstname",
        "lastname",
        "lifecyclestage",
        "name",
        "domain",
        "numberofemployees",
        "dealname",
        "amount",
        "dealstage",
        "pipeline",
        "subject",
    ]
    .into_iter()
    .map(Arc::from)
    .collect();
    let mut table = Table::default();
    for (id, i) in (first_id..).zip(0..n) {
        let (created, updated) = seed_times(i);
        let mut p = Props(Vec::with_capacity(9));
        match kind {
            Kind::Contact => {
                let email = format!("contact{i}@example.com");
                table.emails.insert(email.clone(), id);
                p.insert(&keys.email, email);
                p.insert(&names[0], FIRST[i % FIRST.len()].into());
                p.insert(&names[1], LAST[(i / FIRST.len()) % LAST.len()].into());
                p.insert(&names[2], LIFECYCLE[i % LIFECYCLE.len()].into());
            }
            Kind::Company => {
                p.insert(&names[3], format!("Company {i}"));
                p.insert(&names[4], format!("company{i}.example.com"));
                p.insert(&names[5], (i % 500 + 1).to_string());
            }
            Kind::Deal => {
                p.insert(&names[6], format!("Deal {i}"));
                p.insert(&names[7], (i * 137 % 100_000).to_string());
                p.insert(&names[8], DEAL_STAGES[i % DEAL_STAGES.len()].into());
                p.insert(&names[9], "default".into());
            }
            Kind::Ticket | Kind::Custom(_) => {
                p.insert(&names[10], format!("Object {i}"));
            }
        }
        table
            .records
            .insert(id, new_record(&keys, id, p, created, updated));
    }
    table
}

fn new_record(
    keys: &SystemKeys,
    id: u64,
    mut props: Props,
    created_ms: u64,
    updated_ms: u64,
) -> Record {
    props.insert(&keys.object_id, id.to_string());
    props.insert(&keys.created, format_iso(created_ms));
    let modified = format_iso(updated_ms);
    for p in &keys.modified {
        props.insert(p, modified.clone());
    }
    Record {
        id,
        props,
        created_ms,
        updated_ms,
        archived_ms: None,
        merged_into: None,
        history: Vec::new(),
    }
}

/// 2024-01-01T00:00:00Z.
pub(super) const SEED_BASE_MS: u64 = 1_704_067_200_000;
/// Seeded records come in blocks of this size; every third block was "bulk updated" and shares
/// one `hs_lastmodifieddate` (docs/hubspot.md §4.4).
pub(super) const SEED_BULK_BLOCK: usize = 1_000;

/// `(created, updated)` epoch ms of seeded record `i`.
pub(super) fn seed_times(i: usize) -> (u64, u64) {
    let i64_ = u64::try_from(i).unwrap_or(u64::MAX / 2);
    let created = SEED_BASE_MS + i64_ * 60_000;
    let block = i64_ / u64::try_from(SEED_BULK_BLOCK).unwrap_or(1);
    let updated = if block % 3 == 0 {
        // Bulk update: one timestamp for the whole block, after every creation in it.
        SEED_BASE_MS + 400 * 86_400_000 + block * 3_600_000
    } else {
        created + 86_400_000 + (i64_ % 7) * 1000
    };
    (created, updated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_property_values_per_section_7() {
        let ok = |n: &str, v: &str| normalise(Kind::Contact, n, v, None);
        assert_eq!(ok("date_of_birth", "1430438400000").unwrap(), "2015-05-01");
        assert_eq!(ok("date_of_birth", "2015-05-01").unwrap(), "2015-05-01");
        let e = ok("date_of_birth", "1430518735865").unwrap_err();
        assert_eq!(e.code, "INVALID_DATE");
        assert!(
            e.message.contains("22:18:55.865 UTC, not midnight!"),
            "{}",
            e.message
        );
        assert_eq!(ok("amount", "17.5").unwrap(), "17.5");
        assert_eq!(ok("amount", "1,000").unwrap_err().code, "INVALID_INTEGER");
        assert_eq!(ok("amount", "1.0.0").unwrap_err().code, "INVALID_INTEGER");
        assert_eq!(ok("email", " A@B.com ").unwrap(), "a@b.com");
        assert_eq!(ok("email", "nope").unwrap_err().code, "INVALID_EMAIL");
        assert_eq!(
            ok("lifecyclestage", "Lead").unwrap_err().code,
            "INVALID_OPTION"
        );
        assert_eq!(
            normalise(Kind::Contact, "lifecyclestage", ";customer", Some("lead")).unwrap(),
            "lead;customer"
        );
        assert_eq!(
            ok("createdate", "1582947017000").unwrap(),
            "2020-02-29T03:30:17.000Z"
        );
    }

    #[test]
    fn seed_has_bulk_groups_of_identical_timestamps() {
        let same = (0..SEED_BULK_BLOCK).map(seed_times).map(|t| t.1);
        assert!(same.clone().all(|u| u == seed_times(0).1));
        assert_ne!(
            seed_times(SEED_BULK_BLOCK).1,
            seed_times(SEED_BULK_BLOCK + 1).1
        );
        let mut store = Store::default();
        let start = std::time::Instant::now();
        store.seed(&[(Kind::Contact, 100_000)]);
        assert!(start.elapsed().as_secs() < 10);
        let rec = store.find(
            Kind::Contact,
            "contact99999@example.com",
            Some("email"),
            false,
        );
        assert_eq!(rec.unwrap().id, 100_000);
    }

    #[test]
    fn operators_compare_numbers_and_strings() {
        assert_eq!(Given::new("9").compare("10"), Ordering::Greater);
        assert_eq!(Given::new("A").compare("b"), Ordering::Greater);
        assert_eq!(
            Given::new("1582947017000").compare("2020-02-29T03:30:17.000Z"),
            Ordering::Equal
        );
        assert!(glob_match("ali*", "alice"));
        assert!(!glob_match("ali*x", "alice"));
        assert!(in_matches("Alice", &Given::new("alice")));
        assert!(!in_matches("alice", &Given::new("Alice")));
        assert!(contains_token("Hello big world", "wor*"));
        assert!(!contains_token("Hello big world", "orl"));
    }
}
