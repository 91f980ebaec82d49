//! The configuration's JSON form (see the module docs of [`crate::mapping`]), compiled into
//! [`ObjectMap`]s.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use super::value::{Canon, FieldType};
use super::{canonical_object_type, Field, FieldDirection, ObjectMap, Property, Source, ValueMap};

/// The field map configuration is not valid; the message names the entry
/// (`objects.contacts.fields[2] (stage): …`). The operator's fault: fix the setting.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("field map is invalid: {detail}")]
pub struct MapConfigError {
    detail: String,
}

impl MapConfigError {
    /// Stable code: `mapping_config_invalid`.
    pub fn code(&self) -> &'static str {
        "mapping_config_invalid"
    }
}

fn invalid(detail: String) -> MapConfigError {
    MapConfigError { detail }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Read as raw values first, so that an error can name the object it is in.
    objects: BTreeMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ObjectConfig {
    /// Read as raw values first, so that an error can name the entry it is in.
    fields: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FieldConfig {
    #[serde(default)]
    hubspot: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default, rename = "type")]
    ty: Option<FieldType>,
    #[serde(default)]
    values: Option<BTreeMap<String, String>>,
    #[serde(default)]
    unmapped_values: Option<Unmapped>,
    #[serde(default)]
    default: Option<Value>,
    #[serde(default)]
    constant: Option<Value>,
    #[serde(default)]
    read_only: bool,
    #[serde(default)]
    direction: Option<FieldDirection>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Unmapped {
    Reject,
    Keep,
}

pub(super) fn compile(json: &str) -> Result<BTreeMap<String, ObjectMap>, MapConfigError> {
    let config: Config = serde_json::from_str(json).map_err(|e| invalid(e.to_string()))?;
    let mut objects: BTreeMap<String, ObjectMap> = BTreeMap::new();
    for (name, raw) in config.objects {
        let at = format!("objects.{name}");
        if name.is_empty() {
            return Err(invalid(format!("{at}: empty object type")));
        }
        let object: ObjectConfig =
            serde_json::from_value(raw).map_err(|e| invalid(format!("{at}: {e}")))?;
        let canonical = canonical_object_type(&name).to_owned();
        if let Some(other) = objects.get(&canonical) {
            return Err(invalid(format!(
                "{at}: the same object type as `{}`",
                other.object_type
            )));
        }
        let map = compile_object(name, canonical.clone(), object.fields, &at)?;
        objects.insert(canonical, map);
    }
    Ok(objects)
}

fn compile_object(
    object_type: String,
    canonical_type: String,
    fields: Vec<Value>,
    at: &str,
) -> Result<ObjectMap, MapConfigError> {
    if fields.is_empty() {
        return Err(invalid(format!("{at}.fields: no fields")));
    }
    let mut map = ObjectMap {
        object_type,
        canonical_type,
        fields: Vec::with_capacity(fields.len()),
        properties: Vec::new(),
        by_field: BTreeMap::new(),
        by_property: BTreeMap::new(),
    };
    for (i, raw) in fields.into_iter().enumerate() {
        let label = raw
            .get("field")
            .or_else(|| raw.get("hubspot"))
            .and_then(Value::as_str)
            .map(|name| format!(" ({name})"))
            .unwrap_or_default();
        let at = format!("{at}.fields[{i}]{label}");
        let entry: FieldConfig =
            serde_json::from_value(raw).map_err(|e| invalid(format!("{at}: {e}")))?;
        let field = compile_field(entry).map_err(|e| invalid(format!("{at}: {e}")))?;
        if map.by_field.insert(field.name.clone(), i).is_some() {
            return Err(invalid(format!(
                "{at}: destination field `{}` appears twice",
                field.name
            )));
        }
        if let Source::Property(p) = &field.source {
            if map.by_property.insert(p.name.clone(), i).is_some() {
                return Err(invalid(format!(
                    "{at}: hubspot property `{}` is mapped twice",
                    p.name
                )));
            }
            map.properties.push(p.name.clone());
        }
        map.fields.push(field);
    }
    Ok(map)
}

fn compile_field(c: FieldConfig) -> Result<Field, String> {
    match (c.hubspot, c.constant) {
        (Some(_), Some(_)) => Err("`hubspot` and `constant` exclude each other".to_owned()),
        (None, None) => Err("needs `hubspot` or `constant`".to_owned()),
        (None, Some(value)) => {
            if c.ty.is_some()
                || c.values.is_some()
                || c.unmapped_values.is_some()
                || c.default.is_some()
                || c.read_only
                || c.direction.is_some()
            {
                return Err("a `constant` entry takes only `field`".to_owned());
            }
            let name = c.field.ok_or("a `constant` entry needs `field`")?;
            check_field_name(&name)?;
            Ok(Field {
                name,
                source: Source::Constant(value),
            })
        }
        (Some(property), None) => {
            // A comma or whitespace would break the `properties=a,b` query of a read.
            if property.is_empty() || property.contains(|c: char| c == ',' || c.is_whitespace()) {
                return Err("`hubspot` must be a property's internal name".to_owned());
            }
            let name = c.field.unwrap_or_else(|| property.clone());
            check_field_name(&name)?;
            let ty = c.ty.unwrap_or(FieldType::String);
            // `readOnly: true` is the older spelling of `direction: from_hubspot`.
            let direction = match (c.read_only, c.direction) {
                (false, d) => d.unwrap_or_default(),
                (true, None | Some(FieldDirection::FromHubSpot)) => FieldDirection::FromHubSpot,
                (true, Some(_)) => {
                    return Err(
                        "`readOnly: true` needs `direction` `from_hubspot` or none".to_owned()
                    )
                }
            };
            let values = match (c.values, c.unmapped_values) {
                (None, None) => None,
                (None, Some(_)) => return Err("`unmappedValues` needs `values`".to_owned()),
                (Some(values), unmapped) => Some(value_map(ty, values, unmapped)?),
            };
            let default = match c.default {
                None => None,
                Some(d) => Some(default_value(ty, &d, values.as_ref())?),
            };
            Ok(Field {
                name,
                source: Source::Property(Property {
                    name: property,
                    ty,
                    values,
                    default,
                    direction,
                }),
            })
        }
    }
}

fn check_field_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("`field` is empty".to_owned())
    } else {
        Ok(())
    }
}

fn value_map(
    ty: FieldType,
    values: BTreeMap<String, String>,
    unmapped: Option<Unmapped>,
) -> Result<ValueMap, String> {
    if !matches!(ty, FieldType::Enumeration | FieldType::MultiSelect) {
        return Err(format!(
            "`values` needs type `enumeration` or `multiselect`, not `{ty}`"
        ));
    }
    if values.is_empty() {
        return Err("`values` is empty".to_owned());
    }
    let mut to_hubspot = BTreeMap::new();
    for (option, value) in &values {
        for text in [option, value] {
            // Options must survive a `;` list and its trimming unchanged (docs/hubspot.md §7).
            let bad = text.is_empty()
                || (ty == FieldType::MultiSelect
                    && (text.contains(';') || text.trim_ascii() != text.as_str()));
            if bad {
                return Err(format!(
                    "`values` entry `{text}` is empty or not a valid option"
                ));
            }
        }
        if to_hubspot.insert(value.clone(), option.clone()).is_some() {
            return Err(format!(
                "`values` maps two options to `{value}`: it must be one to one"
            ));
        }
    }
    Ok(ValueMap {
        to_destination: values,
        to_hubspot,
        keep_unmapped: unmapped == Some(Unmapped::Keep),
    })
}

fn default_value(
    ty: FieldType,
    default: &Value,
    values: Option<&ValueMap>,
) -> Result<Canon, String> {
    let canon = match Canon::from_destination(ty, default) {
        Ok(Some(canon)) => canon,
        Ok(None) => return Err("`default` is empty".to_owned()),
        Err(kind) => return Err(format!("`default` is not a valid {ty}: {kind}")),
    };
    canon
        .to_destination()
        .map_err(|kind| format!("`default` is not a valid {ty}: {kind}"))?;
    if let Some(values) = values {
        values
            .apply(canon.clone(), true)
            .map_err(|_| "`default` is not one of the destination `values`".to_owned())?;
    }
    Ok(canon)
}
