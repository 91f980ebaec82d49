#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use serde_json::{json, Value};

use super::*;

/// The example of the module docs.
pub(super) const CONFIG: &str = r#"{
  "objects": {
    "contacts": {
      "fields": [
        { "hubspot": "email", "type": "email" },
        { "hubspot": "firstname", "field": "first_name" },
        { "hubspot": "lifecyclestage", "field": "stage", "type": "enumeration",
          "values": { "lead": "LEAD", "customer": "CUSTOMER" }, "unmappedValues": "keep" },
        { "hubspot": "interests", "type": "multiselect",
          "values": { "chocolate": "choc", "strawberry": "straw" } },
        { "hubspot": "closedate", "field": "close_date", "type": "date" },
        { "hubspot": "createdate", "field": "created_at", "type": "datetime", "readOnly": true },
        { "hubspot": "num_employees", "field": "employees", "type": "number", "default": 0 },
        { "hubspot": "hs_email_optout", "field": "opted_out", "type": "bool" },
        { "hubspot": "hubspot_owner_id", "field": "owner", "type": "owner" },
        { "field": "source", "constant": "hubspot" }
      ]
    },
    "deals": { "fields": [{ "hubspot": "amount", "type": "number" }] }
  }
}"#;

fn contacts() -> ObjectMap {
    Mapping::from_json(CONFIG)
        .unwrap()
        .object("contacts")
        .unwrap()
        .clone()
}

pub(super) fn props(pairs: &[(&str, Option<&str>)]) -> BTreeMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
        .collect()
}

fn record(value: Value) -> Record {
    match value {
        Value::Object(map) => Record::from(map),
        _ => panic!("not an object"),
    }
}

#[test]
fn object_types_in_any_spelling() {
    let mapping = Mapping::from_json(CONFIG).unwrap();
    for name in ["contacts", "contact", "0-1"] {
        assert_eq!(
            mapping.object(name).unwrap().object_type(),
            "contacts",
            "{name}"
        );
    }
    for name in ["deals", "deal", "0-3"] {
        assert_eq!(
            mapping.object(name).unwrap().object_type(),
            "deals",
            "{name}"
        );
    }
    assert!(mapping.object("companies").is_none());
    assert!(Mapping::default().object("contacts").is_none());
}

#[test]
fn properties_to_read_and_mapped_names() {
    let map = contacts();
    assert_eq!(
        map.properties(),
        [
            "email",
            "firstname",
            "lifecyclestage",
            "interests",
            "closedate",
            "createdate",
            "num_employees",
            "hs_email_optout",
            "hubspot_owner_id"
        ]
    );
    assert!(map.is_mapped("lifecyclestage"));
    assert!(
        !map.is_mapped("stage"),
        "destination names are not properties"
    );
    assert!(!map.is_mapped("source"), "constants read nothing");
    assert!(!map.is_mapped("hs_lastmodifieddate"));
}

#[test]
fn maps_a_hubspot_record() {
    let map = contacts();
    let hubspot = props(&[
        ("email", Some(" Ada@Example.COM ")),
        ("firstname", Some("Ada")),
        ("lifecyclestage", Some("lead")),
        ("interests", Some("strawberry;chocolate")),
        ("closedate", Some("1430438400000")),
        ("createdate", Some("2024-09-11T18:21:50.012Z")),
        ("num_employees", Some("1500.0")),
        ("hs_email_optout", Some("false")),
        ("hubspot_owner_id", Some("12345")),
        ("hs_object_id", Some("501")),
    ]);
    let expected = json!({
        "email": "ada@example.com",
        "first_name": "Ada",
        "stage": "LEAD",
        "interests": ["choc", "straw"],
        "close_date": "2015-05-01",
        "created_at": "2024-09-11T18:21:50.012Z",
        "employees": 1500,
        "opted_out": false,
        "owner": "12345",
        "source": "hubspot"
    });
    assert_eq!(map.to_destination(&hubspot), Ok(record(expected)));
}

#[test]
fn empty_null_and_missing() {
    let map = contacts();
    let hubspot = props(&[
        ("email", Some("")),
        ("firstname", None),
        ("interests", Some("")),
        ("num_employees", None),
        ("hs_email_optout", Some("")),
    ]);
    // "" and null are null; missing is absent; a default fills both.
    let expected = json!({
        "email": null,
        "first_name": null,
        "interests": null,
        "employees": 0,
        "opted_out": null,
        "source": "hubspot"
    });
    assert_eq!(map.to_destination(&hubspot), Ok(record(expected)));
    let only_constant = json!({ "employees": 0, "source": "hubspot" });
    assert_eq!(
        map.to_destination(&BTreeMap::new()),
        Ok(record(only_constant))
    );
}

#[test]
fn maps_a_record_back_to_hubspot() {
    let map = contacts();
    let dest = record(json!({
        "email": "Ada@Example.com",
        "first_name": null,
        "stage": "CUSTOMER",
        "interests": ["straw", "choc"],
        "close_date": "2015-05-01",
        "created_at": "2024-09-11T18:21:50.012Z",
        "employees": "1,5e3",
        "opted_out": true,
        "owner": 12345,
        "source": "elsewhere",
        "unknown": "ignored"
    }));
    // `employees` is malformed: everything before it is fine.
    let err = map.to_hubspot(&dest).unwrap_err();
    assert_eq!(err.code(), "mapping_malformed");
    assert_eq!(err.field(), "employees");

    let mut dest = dest;
    dest.insert("employees", json!(1.5e3));
    let expected: BTreeMap<String, String> = [
        ("email", "ada@example.com"),
        ("firstname", ""),
        ("lifecyclestage", "customer"),
        ("interests", "chocolate;strawberry"),
        ("closedate", "1430438400000"),
        ("num_employees", "1500"),
        ("hs_email_optout", "true"),
        ("hubspot_owner_id", "12345"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // `createdate` is read-only, `source` a constant, `unknown` unmapped.
    assert_eq!(map.to_hubspot(&dest), Ok(expected));
    assert_eq!(map.to_hubspot(&Record::new()), Ok(BTreeMap::new()));
}

#[test]
fn value_maps_reject_or_keep_unknown_options() {
    let map = contacts();
    // `stage` keeps unknown options, unless they would read back as a mapped one.
    let read = |stage: &str| {
        map.to_destination(&props(&[("lifecyclestage", Some(stage))]))
            .map(|r| r.get("stage").cloned())
    };
    assert_eq!(read("opportunity"), Ok(Some(json!("opportunity"))));
    assert_eq!(read("LEAD").unwrap_err().code(), "mapping_unknown_option");
    let write = |stage: &str| {
        map.to_hubspot(&record(json!({ "stage": stage })))
            .map(|p| p["lifecyclestage"].clone())
    };
    assert_eq!(write("LEAD"), Ok("lead".to_owned()));
    assert_eq!(write("opportunity"), Ok("opportunity".to_owned()));
    assert_eq!(write("lead").unwrap_err().code(), "mapping_unknown_option");
    // `interests` rejects them.
    let err = map
        .to_destination(&props(&[("interests", Some("chocolate;vanilla"))]))
        .unwrap_err();
    assert_eq!(err.kind(), MapErrorKind::UnknownOption);
}

#[test]
fn errors_name_the_field_never_the_value() {
    let map = contacts();
    let cases = [
        (
            "closedate",
            "1430438400001",
            "mapping_not_midnight",
            "close_date",
        ),
        (
            "closedate",
            "2015-05-01T09:30:00Z",
            "mapping_not_midnight",
            "close_date",
        ),
        ("num_employees", "1,500", "mapping_malformed", "employees"),
        ("hs_email_optout", "yes", "mapping_malformed", "opted_out"),
        (
            "createdate",
            "2024-09-11 18:21:50",
            "mapping_malformed",
            "created_at",
        ),
        ("email", "not an email", "mapping_malformed", "email"),
        ("hubspot_owner_id", "ada", "mapping_malformed", "owner"),
    ];
    for (property, value, code, field) in cases {
        let err = map
            .to_destination(&props(&[(property, Some(value))]))
            .unwrap_err();
        assert_eq!(
            (err.code(), err.field(), err.property()),
            (code, field, property)
        );
        assert_eq!(err.direction(), Direction::FromHubSpot);
        assert_eq!(err.value_kind(), "string");
        let message = err.to_string();
        assert!(!message.contains(value), "{message}");
        assert!(
            message.contains("contacts") && message.contains(field),
            "{message}"
        );
    }
    let err = map
        .to_hubspot(&record(json!({ "close_date": { "secret": 1 } })))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot map contacts field `close_date` (hubspot `closedate`, date) to hubspot: \
         value has a json type the field type cannot take (object value)"
    );
    assert_eq!(err.code(), "mapping_wrong_type");
    assert_eq!(err.field_type(), FieldType::Date);
}

#[test]
fn long_text_is_refused_on_the_way_to_hubspot() {
    let map = contacts();
    let long = "x".repeat(70_000);
    let err = map
        .to_hubspot(&record(json!({ "first_name": long })))
        .unwrap_err();
    assert_eq!(err.code(), "mapping_too_long");
}

#[test]
fn defaults_are_typed_and_checked() {
    let config = r#"{"objects":{"deals":{"fields":[
        {"hubspot":"closedate","type":"date","default":"2020-01-01"},
        {"hubspot":"dealstage","field":"stage","type":"enumeration","values":{"won":"WON"},"default":"WON"},
        {"hubspot":"tags","type":"multiselect","default":["b","a"]},
        {"hubspot":"amount","type":"number","default":"2.50"}
    ]}}}"#;
    let map = Mapping::from_json(config).unwrap();
    let map = map.object("deal").unwrap();
    let expected = json!({"closedate":"2020-01-01","stage":"WON","tags":["a","b"],"amount":2.5});
    assert_eq!(map.to_destination(&BTreeMap::new()), Ok(record(expected)));
}

#[test]
fn bad_configs_name_the_entry() {
    let field = |entry: &str| format!(r#"{{"objects":{{"contacts":{{"fields":[{entry}]}}}}}}"#);
    let cases = [
        ("not json".to_owned(), "expected ident"),
        (r#"{"object":{}}"#.to_owned(), "unknown field `object`"),
        (r#"{"objects":{"contacts":{"field":[]}}}"#.to_owned(), "objects.contacts: unknown field `field`"),
        (r#"{"objects":{"contacts":{"fields":[]}}}"#.to_owned(), "objects.contacts.fields: no fields"),
        (
            r#"{"objects":{"contact":{"fields":[{"hubspot":"a"}]},"contacts":{"fields":[{"hubspot":"a"}]}}}"#.to_owned(),
            "objects.contacts: the same object type as `contact`",
        ),
        (field(r#"{"hubspot":"email","valeus":{}}"#), "fields[0] (email): unknown field `valeus`"),
        (field(r#"{"hubspot":"email","type":"text"}"#), "fields[0] (email): unknown variant `text`"),
        (field(r#"{"field":"x"}"#), "fields[0] (x): needs `hubspot` or `constant`"),
        (field(r#"{"hubspot":"a","constant":1}"#), "exclude each other"),
        (field(r#"{"constant":1}"#), "fields[0]: a `constant` entry needs `field`"),
        (field(r#"{"field":"x","constant":1,"type":"number"}"#), "takes only `field`"),
        (field(r#"{"hubspot":"first name"}"#), "internal name"),
        (field(r#"{"hubspot":"a,b"}"#), "internal name"),
        (field(r#"{"hubspot":"a","field":""}"#), "`field` is empty"),
        (field(r#"{"hubspot":"a"},{"hubspot":"b","field":"a"}"#), "fields[1] (a): destination field `a` appears twice"),
        (field(r#"{"hubspot":"a"},{"hubspot":"a","field":"b"}"#), "fields[1] (b): hubspot property `a` is mapped twice"),
        (field(r#"{"hubspot":"a","values":{"x":"y"}}"#), "needs type `enumeration` or `multiselect`, not `string`"),
        (field(r#"{"hubspot":"a","type":"enumeration","values":{}}"#), "`values` is empty"),
        (field(r#"{"hubspot":"a","type":"enumeration","values":{"x":"z","y":"z"}}"#), "one to one"),
        (field(r#"{"hubspot":"a","type":"multiselect","values":{"x;y":"z"}}"#), "not a valid option"),
        (field(r#"{"hubspot":"a","type":"multiselect","values":{"x":" z"}}"#), "not a valid option"),
        (field(r#"{"hubspot":"a","type":"enumeration","unmappedValues":"keep"}"#), "`unmappedValues` needs `values`"),
        (field(r#"{"hubspot":"a","type":"enumeration","values":{"x":"y"},"unmappedValues":"drop"}"#), "unknown variant `drop`"),
        (field(r#"{"hubspot":"a","type":"date","default":"2020-01-01T10:00:00Z"}"#), "`default` is not a valid date: date is not at midnight utc"),
        (field(r#"{"hubspot":"a","type":"number","default":""}"#), "`default` is empty"),
        (field(r#"{"hubspot":"a","type":"number","default":"123456789012345678.5"}"#), "not a valid number"),
        (field(r#"{"hubspot":"a","type":"enumeration","values":{"x":"y"},"default":"x"}"#), "not one of the destination `values`"),
    ];
    for (config, expected) in cases {
        let err = Mapping::from_json(&config).unwrap_err();
        assert_eq!(err.code(), "mapping_config_invalid");
        let message = err.to_string();
        assert!(message.contains(expected), "{config}\n{message}");
    }
}
