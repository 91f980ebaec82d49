//! Property tests: HubSpot → destination → HubSpot → destination is the identity on the
//! normalised record, whatever spelling HubSpot used.

use proptest::prelude::*;

use super::calendar;
use super::*;
use crate::diff::{diff, Diff, EchoGuard};

const CONFIG: &str = r#"{"objects":{"contacts":{"fields":[
    {"hubspot":"s"},
    {"hubspot":"n","type":"number"},
    {"hubspot":"b","type":"bool"},
    {"hubspot":"d","type":"date"},
    {"hubspot":"dt","type":"datetime"},
    {"hubspot":"e","field":"stage","type":"enumeration",
     "values":{"lead":"LEAD","customer":"CUSTOMER"},"unmappedValues":"keep"},
    {"hubspot":"m","type":"multiselect","values":{"a":"A","b":"B"},"unmappedValues":"keep"},
    {"hubspot":"em","type":"email"},
    {"hubspot":"o","type":"owner"},
    {"hubspot":"dn","type":"number","default":7},
    {"field":"k","constant":"x"}
]}}}"#;

const MIN_DAY: i64 = -719_162; // 0001-01-01
const MAX_DAY: i64 = 2_932_896; // 9999-12-31
const DAY_MS: i64 = 86_400_000;

/// A number with up to 13 significant digits (always exact as an `f64`), spelled with
/// optional trailing zeros, a `+` or an exponent.
fn number() -> impl Strategy<Value = String> {
    (
        -999_999_999_999i64..999_999_999_999,
        0u32..6,
        0usize..3,
        0u8..4,
    )
        .prop_map(|(mantissa, scale, zeros, style)| {
            let digits = mantissa.unsigned_abs().to_string();
            let sign = if mantissa < 0 { "-" } else { "" };
            let scale = usize::try_from(scale).unwrap_or(0);
            let padded = format!("{digits:0>width$}", width = scale + 1);
            let (int, frac) = padded.split_at(padded.len() - scale);
            let frac = format!("{frac}{}", "0".repeat(zeros));
            match style {
                0 if frac.is_empty() => format!("{sign}{int}"),
                0 | 1 => format!("{sign}{int}.{}", if frac.is_empty() { "0" } else { &frac }),
                2 => format!("{sign}{digits}e-{scale}"),
                _ => format!("{}{int}.{frac}0", if sign.is_empty() { "+" } else { sign }),
            }
        })
}

fn date() -> impl Strategy<Value = String> {
    (MIN_DAY..=MAX_DAY, 0u8..3).prop_map(|(days, style)| match style {
        0 => calendar::format_date(days),
        1 => (days * DAY_MS).to_string(),
        _ => calendar::format_datetime(days * DAY_MS),
    })
}

fn datetime() -> impl Strategy<Value = String> {
    (MIN_DAY * DAY_MS..=(MAX_DAY + 1) * DAY_MS - 1, any::<bool>()).prop_map(|(ms, iso)| {
        if iso {
            calendar::format_datetime(ms)
        } else {
            ms.to_string()
        }
    })
}

fn email() -> impl Strategy<Value = String> {
    (
        "[a-zA-Z0-9._]{1,8}",
        "[a-zA-Z]{1,8}\\.[a-zA-Z]{2,3}",
        " {0,2}",
        " {0,2}",
    )
        .prop_map(|(local, domain, before, after)| format!("{before}{local}@{domain}{after}"))
}

fn options() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("d e")],
        0..5,
    )
    .prop_map(|options| options.join(";"))
}

/// Absent, `null`, `""` or a valid value in one of HubSpot's spellings.
fn slot(valid: impl Strategy<Value = String>) -> impl Strategy<Value = Option<Option<String>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(None)),
        1 => Just(Some(Some(String::new()))),
        6 => valid.prop_map(|v| Some(Some(v))),
    ]
}

fn hubspot_record() -> impl Strategy<Value = BTreeMap<String, Option<String>>> {
    (
        (
            slot(".{0,12}"),
            slot(number()),
            slot(
                prop_oneof![Just("true"), Just("false"), Just("TRUE"), Just("False")]
                    .prop_map(str::to_owned),
            ),
            slot(date()),
            slot(datetime()),
        ),
        (
            slot(
                prop_oneof![
                    Just("lead"),
                    Just("customer"),
                    Just("opportunity"),
                    Just("x y")
                ]
                .prop_map(str::to_owned),
            ),
            slot(options()),
            slot(email()),
            slot("[0-9]{1,12}"),
            slot(number()),
        ),
    )
        .prop_map(|((s, n, b, d, dt), (e, m, em, o, dn))| {
            [
                ("s", s),
                ("n", n),
                ("b", b),
                ("d", d),
                ("dt", dt),
                ("e", e),
                ("m", m),
                ("em", em),
                ("o", o),
                ("dn", dn),
            ]
            .into_iter()
            .filter_map(|(name, slot)| slot.map(|value| (name.to_owned(), value)))
            .collect()
        })
}

fn contacts() -> ObjectMap {
    Mapping::from_json(CONFIG)
        .unwrap()
        .object("contacts")
        .unwrap()
        .clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn there_and_back_gives_the_normalised_record(hubspot in hubspot_record()) {
        let map = contacts();
        let record = map.to_destination(&hubspot).unwrap();
        let written = map.to_hubspot(&record).unwrap();
        let read_back: BTreeMap<String, Option<String>> =
            written.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect();
        let again = map.to_destination(&read_back).unwrap();
        prop_assert_eq!(&again, &record);
        prop_assert_eq!(diff(&map, &record, &again), Diff::Unchanged);
        // The HubSpot side is canonical too: writing it again changes nothing.
        prop_assert_eq!(map.to_hubspot(&again).unwrap(), written.clone());
        // Snapshots round-trip.
        prop_assert_eq!(Record::from_snapshot(&record.to_snapshot()).unwrap(), record.clone());

        // Our write, read back in HubSpot's original spelling, is recognised as our echo
        // (`dn` aside: its default is a value HubSpot does not have).
        let ours: BTreeMap<String, String> = written
            .into_iter()
            .filter(|(k, _)| hubspot.contains_key(k) && k != "dn")
            .collect();
        let guard = EchoGuard::new(&map, "42", &ours);
        prop_assert!(guard.matches(&map, "42", &hubspot));
    }

    #[test]
    fn mapping_is_deterministic_and_total_on_valid_input(hubspot in hubspot_record()) {
        let map = contacts();
        let a = map.to_destination(&hubspot).unwrap();
        let b = map.to_destination(&hubspot).unwrap();
        prop_assert_eq!(a.to_snapshot(), b.to_snapshot());
        // Every mapped property that HubSpot returned is in the record, plus defaults and
        // constants.
        for property in map.properties() {
            let field = &map.fields[map.by_property[property.as_str()]].name;
            prop_assert_eq!(
                a.get(field).is_some(),
                hubspot.contains_key(property) || property == "dn"
            );
        }
        prop_assert_eq!(a.get("k"), Some(&Value::String("x".to_owned())));
    }
}
