//! Action definitions as typed configuration (the `ACTIONS` setting), rendered to HubSpot's
//! definition JSON (`PublicActionDefinitionEgg`,
//! <https://developers.hubspot.com/docs/api/automation/custom-workflow-actions>), and the
//! publish plan that creates or patches them for the app.
//!
//! ```json
//! {"actions": [{
//!   "key": "score-lead", "kind": "lookup",
//!   "labels": {"en": {"actionName": "Score lead", "actionDescription": "Asks our scorer",
//!                     "inputFieldLabels": {"tier": "Tier"}, "outputFieldLabels": {"score": "Score"}}},
//!   "objectTypes": ["CONTACT"],
//!   "inputFields": [{"name": "tier", "type": "enumeration", "options": ["gold", "silver"],
//!                    "supportedValueTypes": ["STATIC_VALUE"], "required": true}],
//!   "outputFields": [{"name": "score", "type": "number"}, {"name": "reason", "type": "string"}],
//!   "objectRequestOptions": {"properties": ["email"]},
//!   "lookup": {"url": "https://scorer.example.com/score", "secret": "LOOKUP_SECRET",
//!              "reasonOutput": "reason"}
//! }]}
//! ```
//!
//! Kinds and their settings object (named like the kind):
//! - `lookup`: `{"url", "secret", "reasonOutput"?}`: the user's system is called at `url`, signed
//!   as Standard Webhooks with the Worker secret named `secret` (`whsec_…`); `reasonOutput`, a
//!   `string` output field, receives the reason of a `FAIL_CONTINUE`.
//! - `approval`: `{"expiration"?}`: the execution blocks (ISO-8601 duration, default `P1W`,
//!   HubSpot's own default) until the user's system completes it.
//! - `map_and_write` (settings key `mapAndWrite`): `{"object", "outputs": {output: field}}`: each
//!   output is the `ENRICHMENT_MAP` field of `object`, computed from the enrolled object's
//!   properties (the properties it reads are requested in `objectRequestOptions` by themselves).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::api::ApiConfig;
use crate::mapping::{Mapping, ObjectMap};
use crate::outbound::WebhookSecret;

/// A bad `ACTIONS` value: the field it names (`actions[2].outputFields[0].type`), what is wrong,
/// and a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct DefinitionError {
    /// The JSON path of the bad field.
    pub path: String,
    /// What is wrong (never a secret's value).
    pub problem: String,
    code: &'static str,
}

impl DefinitionError {
    fn new(path: impl Into<String>, code: &'static str, problem: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            problem: problem.into(),
            code,
        }
    }

    /// Stable code: `actions_json_invalid`, `actions_field_missing`, `actions_field_invalid`,
    /// `actions_duplicate`, `actions_secret_missing` or `actions_mapping_unknown`.
    pub fn code(&self) -> &'static str {
        self.code
    }
}

/// The type of an input or output field (HubSpot's `typeDefinition.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionFieldType {
    /// `string` (a text field).
    String,
    /// `number`.
    Number,
    /// `bool` (a checkbox).
    Bool,
    /// `date`: `YYYY-MM-DD` or midnight-UTC milliseconds.
    Date,
    /// `datetime`: ISO-8601 or Unix milliseconds.
    Datetime,
    /// `enumeration`: one of the field's options.
    Enumeration,
}

impl ActionFieldType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "number" => Self::Number,
            "bool" => Self::Bool,
            "date" => Self::Date,
            "datetime" => Self::Datetime,
            "enumeration" => Self::Enumeration,
            _ => return None,
        })
    }

    /// The name in the configuration and in HubSpot's `typeDefinition.type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Bool => "bool",
            Self::Date => "date",
            Self::Datetime => "datetime",
            Self::Enumeration => "enumeration",
        }
    }

    /// HubSpot's `typeDefinition.fieldType` (the widget) for the type.
    fn widget(self) -> &'static str {
        match self {
            Self::String => "text",
            Self::Number => "number",
            Self::Bool => "booleancheckbox",
            Self::Date | Self::Datetime => "date",
            Self::Enumeration => "select",
        }
    }
}

/// One input field of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputField {
    /// Its name (the key in `inputFields` of an execution request).
    pub name: String,
    /// Its type.
    pub ty: ActionFieldType,
    /// The allowed values of an `enumeration`.
    pub options: Vec<String>,
    /// `STATIC_VALUE` and/or `OBJECT_PROPERTY` (default `STATIC_VALUE`).
    pub supported_value_types: Vec<String>,
    /// Whether the workflow must set it.
    pub required: bool,
}

/// One output field of an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputField {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: ActionFieldType,
}

/// What an action does.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Ask the user's system (`url`, Standard Webhooks-signed with `secret`).
    Lookup {
        /// Where.
        url: String,
        /// The Worker secret's name (for messages).
        secret_name: String,
        /// The secret itself (redacted `Debug`).
        secret: WebhookSecret,
        /// A `string` output that receives the reason of a `FAIL_CONTINUE`.
        reason_output: Option<String>,
    },
    /// Block until the user's system completes the execution, at most `expiration`.
    Approval {
        /// ISO-8601 duration (`P1W` by default).
        expiration: String,
    },
    /// Outputs computed from the object's properties through the field map.
    MapAndWrite {
        /// The map of the configured object type.
        map: Box<ObjectMap>,
        /// Output name → destination field of `map`.
        outputs: BTreeMap<String, String>,
    },
}

impl Kind {
    /// `lookup`, `approval` or `map_and_write`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Lookup { .. } => "lookup",
            Self::Approval { .. } => "approval",
            Self::MapAndWrite { .. } => "map_and_write",
        }
    }
}

/// One configured action.
#[derive(Debug, Clone)]
pub struct Definition {
    /// The `{actionKey}` of `POST /actions/{actionKey}`.
    pub key: String,
    /// What it does.
    pub kind: Kind,
    /// HubSpot's `labels` by language (`en` required), as configured.
    pub labels: Map<String, Value>,
    /// HubSpot object types it applies to (`CONTACT`, `DEAL`, `0-1`…).
    pub object_types: Vec<String>,
    /// Its inputs.
    pub input_fields: Vec<InputField>,
    /// Its outputs.
    pub output_fields: Vec<OutputField>,
    /// `objectRequestOptions.properties`: the object's properties sent with each execution
    /// (those a `map_and_write` reads added).
    pub object_properties: Vec<String>,
}

/// Every configured action, by key.
#[derive(Debug, Clone, Default)]
pub struct Definitions {
    actions: Vec<Definition>,
}

/// Languages HubSpot accepts for labels (English required).
const LANGUAGES: [&str; 7] = ["en", "fr", "de", "ja", "es", "pt-br", "nl"];
const VALUE_TYPES: [&str; 2] = ["STATIC_VALUE", "OBJECT_PROPERTY"];
const RESERVED_OUTPUTS: [&str; 2] = ["hs_execution_state", "hs_expiration_duration"];
/// HubSpot's default expiration of a blocked execution (docs/hubspot.md §3.3: "a default expiration
/// of 1 week is used").
pub const DEFAULT_EXPIRATION: &str = "P1W";

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 100
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

struct Walker<'a> {
    path: String,
    value: &'a Value,
}

impl<'a> Walker<'a> {
    fn at(&self, key: &str) -> Walker<'a> {
        Walker {
            path: format!("{}.{key}", self.path),
            value: self.value.get(key).unwrap_or(&Value::Null),
        }
    }

    fn idx(&self, i: usize, value: &'a Value) -> Walker<'a> {
        Walker {
            path: format!("{}[{i}]", self.path),
            value,
        }
    }

    fn err(&self, code: &'static str, problem: impl Into<String>) -> DefinitionError {
        DefinitionError::new(self.path.clone(), code, problem)
    }

    fn missing(&self) -> bool {
        self.value.is_null()
    }

    fn string(&self) -> Result<&'a str, DefinitionError> {
        match self.value {
            Value::String(s) if !s.trim().is_empty() => Ok(s),
            Value::Null => Err(self.err("actions_field_missing", "required")),
            _ => Err(self.err("actions_field_invalid", "must be a non-empty string")),
        }
    }

    fn name(&self) -> Result<&'a str, DefinitionError> {
        let s = self.string()?;
        if is_name(s) {
            Ok(s)
        } else {
            Err(self.err(
                "actions_field_invalid",
                "must be 1 to 100 letters, digits, '_' or '-'",
            ))
        }
    }

    fn array(&self, required: bool) -> Result<Vec<Walker<'a>>, DefinitionError> {
        match self.value {
            Value::Array(a) => Ok(a.iter().enumerate().map(|(i, v)| self.idx(i, v)).collect()),
            Value::Null if !required => Ok(Vec::new()),
            Value::Null => Err(self.err("actions_field_missing", "required")),
            _ => Err(self.err("actions_field_invalid", "must be an array")),
        }
    }

    fn object(&self, required: bool) -> Result<Option<&'a Map<String, Value>>, DefinitionError> {
        match self.value {
            Value::Object(m) => Ok(Some(m)),
            Value::Null if !required => Ok(None),
            Value::Null => Err(self.err("actions_field_missing", "required")),
            _ => Err(self.err("actions_field_invalid", "must be an object")),
        }
    }

    fn known_keys(&self, keys: &[&str]) -> Result<(), DefinitionError> {
        if let Some(m) = self.object(false)? {
            if let Some(k) = m.keys().find(|k| !keys.contains(&k.as_str())) {
                return Err(self
                    .at(k)
                    .err("actions_field_invalid", "unknown key (a typo?)"));
            }
        }
        Ok(())
    }
}

impl Definitions {
    /// Reads `ACTIONS` (see the module docs). `secret` looks up a Worker secret by name (the
    /// lookup secrets); `mapping` is `ENRICHMENT_MAP`, needed by `map_and_write` actions.
    ///
    /// # Errors
    /// The first problem, naming its field: [`DefinitionError`].
    pub fn parse(
        json: &str,
        secret: impl Fn(&str) -> Option<String>,
        mapping: Option<&Mapping>,
    ) -> Result<Self, DefinitionError> {
        let root: Value = serde_json::from_str(json)
            .map_err(|e| DefinitionError::new("ACTIONS", "actions_json_invalid", e.to_string()))?;
        let top = Walker {
            path: "ACTIONS".into(),
            value: &root,
        };
        top.object(true)?;
        top.known_keys(&["actions"])?;
        let list = Walker {
            path: "actions".into(),
            value: root.get("actions").unwrap_or(&Value::Null),
        };
        let mut actions: Vec<Definition> = Vec::new();
        for a in list.array(true)? {
            let d = parse_one(&a, &secret, mapping)?;
            if actions.iter().any(|x| x.key == d.key) {
                return Err(a
                    .at("key")
                    .err("actions_duplicate", "another action has this key"));
            }
            actions.push(d);
        }
        Ok(Self { actions })
    }

    /// The action with this key.
    pub fn get(&self, key: &str) -> Option<&Definition> {
        self.actions.iter().find(|d| d.key == key)
    }

    /// Every action, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &Definition> {
        self.actions.iter()
    }
}

fn parse_one(
    a: &Walker<'_>,
    secret: &impl Fn(&str) -> Option<String>,
    mapping: Option<&Mapping>,
) -> Result<Definition, DefinitionError> {
    a.object(true)?;
    a.known_keys(&[
        "key",
        "kind",
        "labels",
        "objectTypes",
        "inputFields",
        "outputFields",
        "objectRequestOptions",
        "lookup",
        "approval",
        "mapAndWrite",
    ])?;
    let key = a.at("key").name()?.to_owned();
    // Labels: English required, only HubSpot's languages.
    let labels_w = a.at("labels");
    let labels = labels_w.object(true)?.cloned().unwrap_or_default();
    for lang in labels.keys() {
        if !LANGUAGES.contains(&lang.as_str()) {
            return Err(labels_w.at(lang).err(
                "actions_field_invalid",
                "HubSpot's label languages are en, fr, de, ja, es, pt-br and nl",
            ));
        }
        labels_w.at(lang).object(true)?;
    }
    labels_w.at("en").at("actionName").string()?;
    let mut object_types = Vec::new();
    let types_w = a.at("objectTypes");
    for t in types_w.array(true)? {
        object_types.push(t.string()?.to_owned());
    }
    if object_types.is_empty() {
        return Err(types_w.err("actions_field_invalid", "at least one object type"));
    }
    let mut input_fields: Vec<InputField> = Vec::new();
    for f in a.at("inputFields").array(false)? {
        f.object(true)?;
        f.known_keys(&["name", "type", "options", "supportedValueTypes", "required"])?;
        let name = f.at("name").name()?.to_owned();
        if input_fields.iter().any(|x| x.name == name) {
            return Err(f
                .at("name")
                .err("actions_duplicate", "another input has this name"));
        }
        let ty = field_type(&f.at("type"))?;
        let mut options = Vec::new();
        let options_w = f.at("options");
        for o in options_w.array(false)? {
            options.push(o.string()?.to_owned());
        }
        match (ty, options.is_empty()) {
            (ActionFieldType::Enumeration, true) => {
                return Err(options_w.err("actions_field_missing", "an enumeration needs options"))
            }
            (ActionFieldType::Enumeration, false) | (_, true) => {}
            (_, false) => {
                return Err(
                    options_w.err("actions_field_invalid", "only an enumeration has options")
                )
            }
        }
        let mut supported_value_types = Vec::new();
        for v in f.at("supportedValueTypes").array(false)? {
            let s = v.string()?;
            if !VALUE_TYPES.contains(&s) {
                return Err(v.err(
                    "actions_field_invalid",
                    "must be STATIC_VALUE or OBJECT_PROPERTY",
                ));
            }
            supported_value_types.push(s.to_owned());
        }
        if supported_value_types.is_empty() {
            supported_value_types.push("STATIC_VALUE".into());
        }
        let required = match f.at("required").value {
            Value::Null => false,
            Value::Bool(b) => *b,
            _ => {
                return Err(f
                    .at("required")
                    .err("actions_field_invalid", "must be a boolean"))
            }
        };
        input_fields.push(InputField {
            name,
            ty,
            options,
            supported_value_types,
            required,
        });
    }
    let mut output_fields: Vec<OutputField> = Vec::new();
    for f in a.at("outputFields").array(false)? {
        f.object(true)?;
        f.known_keys(&["name", "type"])?;
        let name = f.at("name").name()?.to_owned();
        if RESERVED_OUTPUTS.contains(&name.as_str()) {
            return Err(f.at("name").err(
                "actions_field_invalid",
                "reserved by HubSpot (the execution state)",
            ));
        }
        if output_fields.iter().any(|x| x.name == name) {
            return Err(f
                .at("name")
                .err("actions_duplicate", "another output has this name"));
        }
        let ty = field_type(&f.at("type"))?;
        if ty == ActionFieldType::Enumeration {
            return Err(f.at("type").err(
                "actions_field_invalid",
                "an output cannot be an enumeration here (no options): use string",
            ));
        }
        output_fields.push(OutputField { name, ty });
    }
    let ro = a.at("objectRequestOptions");
    ro.object(false)?;
    ro.known_keys(&["properties"])?;
    let mut object_properties = Vec::new();
    for p in ro.at("properties").array(false)? {
        object_properties.push(p.string()?.to_owned());
    }
    let kind_w = a.at("kind");
    let kind_name = kind_w.string()?;
    let settings_key = match kind_name {
        "lookup" => "lookup",
        "approval" => "approval",
        "map_and_write" => "mapAndWrite",
        _ => {
            return Err(kind_w.err(
                "actions_field_invalid",
                "must be lookup, approval or map_and_write",
            ))
        }
    };
    for other in ["lookup", "approval", "mapAndWrite"] {
        if other != settings_key && !a.at(other).missing() {
            return Err(a.at(other).err(
                "actions_field_invalid",
                format!("not a setting of kind {kind_name}"),
            ));
        }
    }
    let s = a.at(settings_key);
    let output = |w: &Walker<'_>| -> Result<&OutputField, DefinitionError> {
        let name = w.string()?;
        output_fields
            .iter()
            .find(|o| o.name == name)
            .ok_or_else(|| w.err("actions_field_invalid", "not one of outputFields"))
    };
    let kind = match settings_key {
        "lookup" => {
            s.object(true)?;
            s.known_keys(&["url", "secret", "reasonOutput"])?;
            let url = s.at("url").string()?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(s
                    .at("url")
                    .err("actions_field_invalid", "must be an http(s) URL"));
            }
            let secret_name = s.at("secret").string()?;
            let secret = secret(secret_name).ok_or_else(|| {
                s.at("secret").err(
                    "actions_secret_missing",
                    format!("Worker secret {secret_name} is not set"),
                )
            })?;
            let secret = WebhookSecret::parse(&secret).map_err(|e| {
                s.at("secret").err(
                    "actions_field_invalid",
                    format!("Worker secret {secret_name}: {e}"),
                )
            })?;
            let reason_output = match s.at("reasonOutput").missing() {
                true => None,
                false => {
                    let o = output(&s.at("reasonOutput"))?;
                    if o.ty != ActionFieldType::String {
                        return Err(s
                            .at("reasonOutput")
                            .err("actions_field_invalid", "must be a string output"));
                    }
                    Some(o.name.clone())
                }
            };
            Kind::Lookup {
                url: url.to_owned(),
                secret_name: secret_name.to_owned(),
                secret,
                reason_output,
            }
        }
        "approval" => {
            s.object(false)?;
            s.known_keys(&["expiration"])?;
            let expiration = match s.at("expiration").missing() {
                true => DEFAULT_EXPIRATION.to_owned(),
                false => {
                    let e = s.at("expiration").string()?;
                    if !super::is_iso8601_duration(e) {
                        return Err(s.at("expiration").err(
                            "actions_field_invalid",
                            "must be an ISO-8601 duration such as P1W or PT12H",
                        ));
                    }
                    e.to_owned()
                }
            };
            Kind::Approval { expiration }
        }
        _ => {
            s.object(true)?;
            s.known_keys(&["object", "outputs"])?;
            let object = s.at("object").string()?;
            let map = mapping.and_then(|m| m.object(object)).ok_or_else(|| {
                s.at("object").err(
                    "actions_mapping_unknown",
                    "ENRICHMENT_MAP does not map this object type",
                )
            })?;
            let outs_w = s.at("outputs");
            let outs = outs_w.object(true)?.cloned().unwrap_or_default();
            if outs.is_empty() {
                return Err(outs_w.err("actions_field_invalid", "at least one output"));
            }
            let mut outputs = BTreeMap::new();
            for out in outs.keys() {
                output(&Walker {
                    path: format!("{}.{out}", outs_w.path),
                    value: &Value::String(out.clone()),
                })?;
                let fw = outs_w.at(out);
                let field = fw.string()?;
                let Some(property) = map.property_of_field(field) else {
                    return Err(fw.err(
                        "actions_mapping_unknown",
                        "not a property field of the object's ENRICHMENT_MAP",
                    ));
                };
                if !object_properties.iter().any(|p| p == property) {
                    object_properties.push(property.to_owned());
                }
                outputs.insert(out.clone(), field.to_owned());
            }
            Kind::MapAndWrite {
                map: Box::new(map.clone()),
                outputs,
            }
        }
    };
    Ok(Definition {
        key,
        kind,
        labels,
        object_types,
        input_fields,
        output_fields,
        object_properties,
    })
}

fn field_type(w: &Walker<'_>) -> Result<ActionFieldType, DefinitionError> {
    ActionFieldType::parse(w.string()?).ok_or_else(|| {
        w.err(
            "actions_field_invalid",
            "must be string, number, bool, date, datetime or enumeration",
        )
    })
}

impl Definition {
    /// The `actionUrl` HubSpot calls: `{public_base_url}/actions/{key}`.
    pub fn action_url(&self, public_base_url: &str) -> String {
        format!(
            "{}/actions/{}",
            public_base_url.trim_end_matches('/'),
            self.key
        )
    }

    /// HubSpot's definition JSON (`PublicActionDefinitionEgg`): `actionUrl`, `functions` (none),
    /// `inputFields`, `outputFields`, `labels`, `objectTypes`, `objectRequestOptions`,
    /// `published: true` (actions are created unpublished otherwise, docs/hubspot.md §3.1).
    pub fn render(&self, public_base_url: &str) -> Value {
        let inputs: Vec<Value> = self
            .input_fields
            .iter()
            .map(|f| {
                let mut td =
                    json!({"name": f.name, "type": f.ty.as_str(), "fieldType": f.ty.widget()});
                if !f.options.is_empty() {
                    td["options"] = f
                        .options
                        .iter()
                        .map(|o| json!({"label": o, "value": o}))
                        .collect();
                }
                json!({"typeDefinition": td, "supportedValueTypes": f.supported_value_types,
                       "isRequired": f.required})
            })
            .collect();
        let outputs: Vec<Value> = self
            .output_fields
            .iter()
            .map(|f| {
                json!({"typeDefinition":
                    {"name": f.name, "type": f.ty.as_str(), "fieldType": f.ty.widget()}})
            })
            .collect();
        json!({
            "actionUrl": self.action_url(public_base_url),
            "functions": [],
            "inputFields": inputs,
            "outputFields": outputs,
            "labels": self.labels,
            "objectTypes": self.object_types,
            "objectRequestOptions": {"properties": self.object_properties},
            "published": true,
        })
    }
}

/// The fields of a rendered definition that a publish owns and compares (`functions` is not
/// compared: HubSpot makes it read-only on project-managed actions, docs/hubspot.md §3.1).
const OWNED: [&str; 7] = [
    "actionUrl",
    "inputFields",
    "outputFields",
    "labels",
    "objectTypes",
    "objectRequestOptions",
    "published",
];

/// One step of a publish.
#[derive(Debug, Clone, PartialEq)]
pub enum PublishStep {
    /// No definition of the app has this action's `actionUrl`: create it (the body).
    Create {
        /// The action key.
        key: String,
        /// The rendered definition.
        body: Value,
    },
    /// HubSpot's definition `id` differs in a field we own: patch it with the body.
    Patch {
        /// The action key.
        key: String,
        /// HubSpot's definition id.
        id: String,
        /// The rendered definition.
        body: Value,
    },
    /// Already as configured: no write.
    Unchanged {
        /// The action key.
        key: String,
        /// HubSpot's definition id.
        id: String,
    },
}

/// Whether `theirs` holds everything `ours` says (objects: every key of ours present and
/// contained; arrays: same length, element by element): HubSpot may add defaults and ids.
fn contains(theirs: &Value, ours: &Value) -> bool {
    match (theirs, ours) {
        (Value::Object(t), Value::Object(o)) => o
            .iter()
            .all(|(k, v)| t.get(k).is_some_and(|tv| contains(tv, v)) || (v.is_null())),
        (Value::Array(t), Value::Array(o)) => {
            t.len() == o.len() && t.iter().zip(o).all(|(a, b)| contains(a, b))
        }
        (t, o) => t == o,
    }
}

/// The publish plan: for each configured action, create, patch or nothing, given `listed`, the
/// definitions HubSpot lists for the app (`GET /automation/v4/actions/{appId}`, every page's
/// `results`). Ours are recognised by `actionUrl`; a definition whose `archivedAt` is set does
/// not count. Definitions of the app that are not ours are left alone.
pub fn plan_publish(
    definitions: &Definitions,
    public_base_url: &str,
    listed: &[Value],
) -> Vec<PublishStep> {
    let live: Vec<&Value> = listed
        .iter()
        .filter(|d| d.get("archivedAt").is_none_or(Value::is_null))
        .collect();
    let mut used: BTreeSet<String> = BTreeSet::new();
    definitions
        .iter()
        .map(|d| {
            let body = d.render(public_base_url);
            let found = live.iter().find(|l| {
                l.get("actionUrl") == body.get("actionUrl")
                    && !used.contains(&id_of(l).unwrap_or_default())
            });
            match found.and_then(|l| id_of(l).map(|id| (l, id))) {
                None => PublishStep::Create {
                    key: d.key.clone(),
                    body,
                },
                Some((l, id)) => {
                    used.insert(id.clone());
                    let same = OWNED
                        .iter()
                        .all(|k| contains(l.get(*k).unwrap_or(&Value::Null), &body[*k]));
                    if same {
                        PublishStep::Unchanged {
                            key: d.key.clone(),
                            id,
                        }
                    } else {
                        PublishStep::Patch {
                            key: d.key.clone(),
                            id,
                            body,
                        }
                    }
                }
            }
        })
        .collect()
}

fn id_of(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One page of `GET /automation/v4/actions/{appId}`: its `results` and the `paging.next.after`
/// cursor, if any. `None` when the body is not that shape.
pub fn list_page(body: &Value) -> Option<(Vec<Value>, Option<String>)> {
    let results = body.get("results")?.as_array()?.clone();
    let after = body.pointer("/paging/next/after").and_then(|a| match a {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    Some((results, after))
}

/// The definitions endpoints, authenticated with the developer API key (`hapikey` query
/// parameter: app-level endpoints take the developer key, as the webhooks settings API does,
/// docs/hubspot.md §2.4; the account API keys HubSpot sunset in 2022 are another thing, §6).
#[derive(Debug, Clone)]
pub struct DefinitionsApi<'a> {
    /// Base URL and path style (the v4 path is used: the date-versioned one is newer than
    /// what most accounts are on).
    pub api: &'a ApiConfig,
    /// `HUBSPOT_APP_ID`.
    pub app_id: u64,
    /// `HUBSPOT_DEVELOPER_API_KEY`.
    pub developer_key: &'a str,
}

impl DefinitionsApi<'_> {
    fn request(
        &self,
        method: http::Method,
        id: Option<&str>,
        after: Option<&str>,
        body: Option<&Value>,
    ) -> http::Request<Vec<u8>> {
        let mut path = format!("/automation/v4/actions/{}", self.app_id);
        if let Some(id) = id {
            path.push('/');
            path.push_str(&crate::api::encode_segment(id));
        }
        let mut query = crate::api::Query::default();
        if let Some(a) = after {
            query.push("after", a);
        }
        query.push("hapikey", self.developer_key);
        let body = body.map(|b| {
            (
                "application/json",
                serde_json::to_vec(b).unwrap_or_default(),
            )
        });
        self.api.build(method, &path, &query, body)
    }

    /// `GET /automation/v4/actions/{appId}[?after=…]`.
    pub fn list(&self, after: Option<&str>) -> http::Request<Vec<u8>> {
        self.request(http::Method::GET, None, after, None)
    }

    /// The request that carries out a create (`POST`) or patch (`PATCH …/{definitionId}`) step;
    /// `None` for an unchanged one.
    pub fn step(&self, step: &PublishStep) -> Option<http::Request<Vec<u8>>> {
        match step {
            PublishStep::Create { body, .. } => {
                Some(self.request(http::Method::POST, None, None, Some(body)))
            }
            PublishStep::Patch { id, body, .. } => {
                Some(self.request(http::Method::PATCH, Some(id), None, Some(body)))
            }
            PublishStep::Unchanged { .. } => None,
        }
    }
}
