//! Decimal numbers in one canonical spelling: `-12.5`, `0`, `1000` (docs/hubspot.md §7: "numeric
//! digits and at most one decimal"; commas are rejected).
//!
//! Canonical: an optional `-`, the integer digits without leading zeros (`0` when there are
//! none), then `.` and the fraction without trailing zeros when it is not zero. `-0` is `0`. So
//! `1`, `1.0`, `01`, `+1` and `1e0` are all `1`, and equal numbers compare equal as strings.

use serde_json::Number;

use super::MapErrorKind;

/// Longest canonical number accepted, in digits: far beyond any `f64` or HubSpot number, and
/// small enough that `1e999999` cannot allocate a megabyte.
const MAX_DIGITS: usize = 100;

/// A number in canonical decimal spelling (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decimal(String);

impl Decimal {
    /// Parses `[+-]digits[.digits][e[+-]digits]` (at least one digit before the exponent;
    /// surrounding ASCII whitespace allowed). Separators, `NaN`, infinities and hex are
    /// rejected.
    pub(super) fn parse(text: &str) -> Result<Self, MapErrorKind> {
        let s = text.trim_ascii().as_bytes();
        let (negative, s) = match s {
            [b'-', rest @ ..] => (true, rest),
            [b'+', rest @ ..] => (false, rest),
            _ => (false, s),
        };
        let (mantissa, exponent) = match s.iter().position(|&b| b == b'e' || b == b'E') {
            Some(i) => (&s[..i], Some(&s[i + 1..])),
            None => (s, None),
        };
        let (int, frac) = match mantissa.iter().position(|&b| b == b'.') {
            Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
            None => (mantissa, &[][..]),
        };
        let all_digits = |part: &[u8]| part.iter().all(u8::is_ascii_digit);
        if int.len() + frac.len() == 0 || !all_digits(int) || !all_digits(frac) {
            return Err(MapErrorKind::Malformed);
        }
        let exponent: i64 = match exponent {
            None => 0,
            Some(e) => {
                let digits = e.strip_prefix(b"-").or(e.strip_prefix(b"+")).unwrap_or(e);
                if digits.is_empty() || !all_digits(digits) {
                    return Err(MapErrorKind::Malformed);
                }
                if digits.len() > 6 {
                    return Err(MapErrorKind::OutOfRange);
                }
                std::str::from_utf8(e)
                    .ok()
                    .and_then(|e| e.parse().ok())
                    .ok_or(MapErrorKind::Malformed)?
            }
        };
        // All digits, and where the decimal point falls among them.
        let digits: Vec<u8> = int.iter().chain(frac).copied().collect();
        let point = i64::try_from(int.len()).map_err(|_| MapErrorKind::OutOfRange)? + exponent;
        let first = digits.iter().position(|&d| d != b'0');
        let Some(first) = first else {
            return Ok(Self("0".to_owned()));
        };
        let last = digits.iter().rposition(|&d| d != b'0').unwrap_or(first);
        let significant = &digits[first..=last];
        // Position of the point relative to the first significant digit.
        let point = point - i64::try_from(first).map_err(|_| MapErrorKind::OutOfRange)?;
        let sig_len = i64::try_from(significant.len()).map_err(|_| MapErrorKind::OutOfRange)?;
        let width = point.max(sig_len) - point.min(0);
        if width > i64::try_from(MAX_DIGITS).unwrap_or(i64::MAX) {
            return Err(MapErrorKind::OutOfRange);
        }
        let mut out = String::with_capacity(MAX_DIGITS + 3);
        if negative {
            out.push('-');
        }
        let digit = |i: i64| {
            usize::try_from(i)
                .ok()
                .and_then(|i| significant.get(i))
                .map_or('0', |&d| char::from(d))
        };
        if point <= 0 {
            out.push('0');
        } else {
            (0..point).for_each(|i| out.push(digit(i)));
        }
        if sig_len > point {
            out.push('.');
            (point.min(0)..0).for_each(|_| out.push('0'));
            (point.max(0)..sig_len).for_each(|i| out.push(digit(i)));
        }
        Ok(Self(out))
    }

    /// The canonical text, as HubSpot takes it.
    pub(super) fn as_str(&self) -> &str {
        &self.0
    }

    /// The same number as a JSON number: exactly, as an integer, when it fits `i64`/`u64`;
    /// otherwise as the `f64` whose shortest spelling is this number.
    ///
    /// # Errors
    /// [`MapErrorKind::OutOfRange`] when no `f64` spells it exactly (more than about 17
    /// significant digits): silently rounding would change the value.
    pub(super) fn to_json(&self) -> Result<Number, MapErrorKind> {
        if !self.0.contains('.') {
            if let Ok(n) = self.0.parse::<i64>() {
                return Ok(Number::from(n));
            }
            if let Ok(n) = self.0.parse::<u64>() {
                return Ok(Number::from(n));
            }
        }
        let float: f64 = self.0.parse().map_err(|_| MapErrorKind::OutOfRange)?;
        let number = Number::from_f64(float).ok_or(MapErrorKind::OutOfRange)?;
        match Self::parse(&number.to_string()) {
            Ok(back) if back == *self => Ok(number),
            _ => Err(MapErrorKind::OutOfRange),
        }
    }
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn canonical_spelling() {
        let cases = [
            ("17", "17"),
            ("1.0", "1"),
            ("01", "1"),
            ("+1", "1"),
            ("1e0", "1"),
            ("-0", "0"),
            ("-0.000", "0"),
            ("0", "0"),
            ("000", "0"),
            (".5", "0.5"),
            ("5.", "5"),
            ("-12.50", "-12.5"),
            ("1500.25", "1500.25"),
            ("0.001", "0.001"),
            ("1e3", "1000"),
            ("1.5E+3", "1500"),
            ("1.5e-3", "0.0015"),
            ("12345e-2", "123.45"),
            ("1e20", "100000000000000000000"),
            ("  42 ", "42"),
            ("0.30000000000000004", "0.30000000000000004"),
        ];
        for (text, canonical) in cases {
            assert_eq!(
                Decimal::parse(text).map(|d| d.0),
                Ok(canonical.to_owned()),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_what_hubspot_rejects() {
        for bad in [
            "",
            " ",
            "1,000",
            "1.000.000",
            "1 000",
            "NaN",
            "inf",
            "Infinity",
            "0x10",
            "1e",
            "e3",
            ".",
            "-",
            "1..2",
            "1e1.5",
            "١٢",
        ] {
            assert_eq!(Decimal::parse(bad), Err(MapErrorKind::Malformed), "{bad}");
        }
        for huge in ["1e101", "1e-101", "1e9999999"] {
            assert_eq!(
                Decimal::parse(huge),
                Err(MapErrorKind::OutOfRange),
                "{huge}"
            );
        }
    }

    #[test]
    fn json_numbers_are_exact_or_refused() {
        let json = |s: &str| Decimal::parse(s).unwrap().to_json().map(|n| n.to_string());
        assert_eq!(json("17"), Ok("17".to_owned()));
        assert_eq!(
            json("-9223372036854775808"),
            Ok("-9223372036854775808".to_owned())
        );
        assert_eq!(
            json("18446744073709551615"),
            Ok("18446744073709551615".to_owned())
        );
        assert_eq!(json("1500.25"), Ok("1500.25".to_owned()));
        assert_eq!(json("0.1"), Ok("0.1".to_owned()));
        assert_eq!(json("1e20"), Ok("1e+20".to_owned()));
        assert_eq!(json("12345678901234567.5"), Err(MapErrorKind::OutOfRange));
        assert_eq!(json("123456789012345678901"), Err(MapErrorKind::OutOfRange));
        for n in ["1e20", "0.1", "-3.25", "1e-7"] {
            let d = Decimal::parse(n).unwrap();
            let back = Decimal::parse(&d.to_json().unwrap().to_string()).unwrap();
            assert_eq!(back, d, "{n}");
        }
    }
}
