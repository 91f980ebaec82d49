//! Dates and instants for years 0001–9999, on top of the unsigned helpers in [`crate::time`].
//!
//! HubSpot dates can precede 1970 (birthdays, founding dates), so instants here are signed Unix
//! milliseconds and dates signed days since 1970-01-01. The Gregorian calendar repeats every 400
//! years (146,097 days); shifting by five such cycles (2,000 years) moves every supported date
//! past 1970, where `crate::time` applies, and shifting back is exact.

use super::MapErrorKind;

const DAY_MS: i64 = 86_400_000;
const SHIFT_YEARS: i64 = 2_000;
const SHIFT_DAYS: i64 = 5 * 146_097;

/// `0001-01-01T00:00:00.000Z`.
const MIN_MS: i64 = -62_135_596_800_000;
/// `9999-12-31T23:59:59.999Z`.
const MAX_MS: i64 = 253_402_300_799_999;

/// Days since 1970-01-01 of a calendar date, `None` when it does not exist (`2023-02-29`) or is
/// outside years 1–9999.
pub(super) fn days_from_date(year: i64, month: u64, day: u64) -> Option<i64> {
    if !(1..=9999).contains(&year) || !(1..=12).contains(&month) || day == 0 {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    if day > month_days {
        return None;
    }
    let shifted_year = u64::try_from(year + SHIFT_YEARS).ok()?;
    let shifted = crate::time::days_from_civil(shifted_year, month, day)?;
    Some(i64::try_from(shifted).ok()? - SHIFT_DAYS)
}

/// `YYYY-MM-DDTHH:MM:SS.sssZ` for an instant in range (see [`check_ms`]).
pub(super) fn format_datetime(ms: i64) -> String {
    let shifted = ms.clamp(MIN_MS, MAX_MS) + SHIFT_DAYS * DAY_MS;
    // In range, `shifted` is positive (year 2001 at the earliest), so the conversion holds.
    let text = crate::time::iso8601_ms(u64::try_from(shifted).unwrap_or(0));
    // `text` starts with the shifted year (2001–11999) then `-`.
    let dash = text.find('-').unwrap_or(0);
    let year: i64 = text[..dash].parse().unwrap_or(SHIFT_YEARS);
    format!("{:04}{}", year - SHIFT_YEARS, &text[dash..])
}

/// `YYYY-MM-DD` for days since 1970-01-01.
pub(super) fn format_date(days: i64) -> String {
    let mut text = format_datetime(days.saturating_mul(DAY_MS));
    text.truncate(10);
    text
}

/// The instant if it lies in years 1–9999.
pub(super) fn check_ms(ms: i64) -> Result<i64, MapErrorKind> {
    if (MIN_MS..=MAX_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(MapErrorKind::OutOfRange)
    }
}

/// Days since 1970-01-01 of an instant that must be midnight UTC.
pub(super) fn midnight_days(ms: i64) -> Result<i64, MapErrorKind> {
    let ms = check_ms(ms)?;
    if ms.rem_euclid(DAY_MS) == 0 {
        Ok(ms.div_euclid(DAY_MS))
    } else {
        Err(MapErrorKind::NotMidnight)
    }
}

/// Midnight UTC of a day, in milliseconds.
pub(crate) fn days_to_ms(days: i64) -> i64 {
    days.saturating_mul(DAY_MS)
}

/// Unix milliseconds written as an integer: optional `-`, then 1–16 digits.
pub(super) fn parse_epoch_ms(s: &str) -> Result<i64, MapErrorKind> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MapErrorKind::Malformed);
    }
    if digits.len() > 16 {
        return Err(MapErrorKind::OutOfRange);
    }
    let ms: i64 = s.parse().map_err(|_| MapErrorKind::Malformed)?;
    check_ms(ms)
}

/// Whether `s` looks like Unix milliseconds rather than ISO text.
pub(super) fn is_epoch_ms(s: &str) -> bool {
    let digits = s.strip_prefix('-').unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `YYYY-MM-DD` into days since 1970-01-01.
pub(crate) fn parse_date(s: &str) -> Result<i64, MapErrorKind> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return Err(MapErrorKind::Malformed);
    }
    let year = number(&b[0..4])?;
    let (month, day) = (number(&b[5..7])?, number(&b[8..10])?);
    let year = i64::try_from(year).map_err(|_| MapErrorKind::Malformed)?;
    days_from_date(year, month, day).ok_or(MapErrorKind::Malformed)
}

/// ISO-8601 date and time with a UTC offset, into Unix milliseconds.
///
/// Accepted: `YYYY-MM-DD`, then `T` (or `t` or a space), `HH:MM`, optional `:SS`, optional
/// fraction of 1–9 digits, then `Z`/`z` or an offset `±HH`, `±HHMM`, `±HH:MM`. A time without an
/// offset is ambiguous and rejected. Digits beyond the millisecond are dropped (HubSpot stores
/// milliseconds), which rounds toward the past.
pub(crate) fn parse_datetime(s: &str) -> Result<i64, MapErrorKind> {
    let b = s.as_bytes();
    if b.len() < 16 || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return Err(MapErrorKind::Malformed);
    }
    let days = parse_date(&s[..10])?;
    let (hour, minute) = (number(&b[11..13])?, number(&b[14..16])?);
    let mut rest = &b[16..];
    let mut second = 0;
    if let [b':', s1, s2, tail @ ..] = rest {
        second = number(&[*s1, *s2])?;
        rest = tail;
    }
    let mut millis = 0;
    if let [b'.', tail @ ..] = rest {
        let n = tail.iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return Err(MapErrorKind::Malformed);
        }
        millis = tail[..n]
            .iter()
            .chain(b"00")
            .take(3)
            .fold(0, |v, d| v * 10 + u64::from(d - b'0'));
        rest = &tail[n..];
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(MapErrorKind::Malformed);
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), zone @ ..] => {
            let (h, m) = match zone {
                [h1, h2] => (number(&[*h1, *h2])?, 0),
                [h1, h2, m1, m2] | [h1, h2, b':', m1, m2] => {
                    (number(&[*h1, *h2])?, number(&[*m1, *m2])?)
                }
                _ => return Err(MapErrorKind::Malformed),
            };
            if h > 23 || m > 59 {
                return Err(MapErrorKind::Malformed);
            }
            let minutes = i64::try_from(h * 60 + m).map_err(|_| MapErrorKind::Malformed)?;
            if *sign == b'-' {
                -minutes
            } else {
                minutes
            }
        }
        _ => return Err(MapErrorKind::Malformed),
    };
    let time_ms = ((hour * 60 + minute) * 60 + second) * 1000 + millis;
    let time_ms = i64::try_from(time_ms).map_err(|_| MapErrorKind::Malformed)?;
    check_ms(days * DAY_MS + time_ms - offset_minutes * 60_000)
}

/// A run of ASCII digits as a number (at most 4 digits are ever passed).
fn number(digits: &[u8]) -> Result<u64, MapErrorKind> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(MapErrorKind::Malformed);
    }
    Ok(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn formats_across_the_supported_range() {
        let cases = [
            (0, "1970-01-01T00:00:00.000Z"),
            (1_564_113_600_000, "2019-07-26T04:00:00.000Z"),
            (-1, "1969-12-31T23:59:59.999Z"),
            (-86_400_000, "1969-12-31T00:00:00.000Z"),
            (-2_208_988_800_000, "1900-01-01T00:00:00.000Z"),
            (-11_644_473_600_000, "1601-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (MIN_MS, "0001-01-01T00:00:00.000Z"),
            (MAX_MS, "9999-12-31T23:59:59.999Z"),
        ];
        for (ms, text) in cases {
            assert_eq!(format_datetime(ms), text, "{ms}");
            assert_eq!(parse_datetime(text), Ok(ms), "{text}");
        }
        assert_eq!(format_date(-1), "1969-12-31");
        assert_eq!(format_date(0), "1970-01-01");
        assert_eq!(format_date(19_782), "2024-02-29");
    }

    #[test]
    fn dates() {
        assert_eq!(parse_date("1970-01-01"), Ok(0));
        assert_eq!(parse_date("2015-05-01"), Ok(16_556));
        assert_eq!(parse_date("1965-03-01"), Ok(-1_767));
        assert_eq!(parse_date("2024-02-29"), Ok(19_782));
        assert_eq!(parse_date("0001-01-01"), Ok(MIN_MS / DAY_MS));
        assert_eq!(parse_date("9999-12-31"), Ok(2_932_896));
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2019-13-01",
            "2019-00-01",
            "2019-01-00",
            "2019-04-31",
            "0000-01-01",
            "2019-7-26",
            "2019/07/26",
            "20190726",
            "2019-07-26T00:00:00Z",
            "",
        ] {
            assert_eq!(parse_date(bad), Err(MapErrorKind::Malformed), "{bad}");
        }
    }

    #[test]
    fn datetimes() {
        let at = 1_564_113_600_000; // 2019-07-26T04:00:00.000Z
        for (text, ms) in [
            ("2019-07-26T04:00:00Z", at),
            ("2019-07-26T04:00Z", at),
            ("2019-07-26t04:00:00z", at),
            ("2019-07-26 04:00:00Z", at),
            ("2019-07-26T04:00:00.5Z", at + 500),
            ("2019-07-26T04:00:00.123456789Z", at + 123),
            ("2019-07-26T06:00:00+02:00", at),
            ("2019-07-26T06:00:00+0200", at),
            ("2019-07-26T06:00:00+02", at),
            ("2019-07-25T23:30:00-04:30", at),
            ("2020-02-29T03:30:17.000Z", 1_582_947_017_000),
        ] {
            assert_eq!(parse_datetime(text), Ok(ms), "{text}");
        }
        for bad in [
            "2019-07-26T04:00:00",
            "2019-07-26",
            "2019-07-26T24:00:00Z",
            "2019-07-26T04:60:00Z",
            "2019-07-26T04:00:60Z",
            "2019-07-26T04:00:00.Z",
            "2019-07-26T04:00:00.1234567890Z",
            "2019-07-26T04:00:00+24:00",
            "2019-07-26T04:00:00+2",
            "2019-07-26T04:00:00 Z",
            "2019-07-26X04:00:00Z",
            "1564113600000",
        ] {
            assert_eq!(parse_datetime(bad), Err(MapErrorKind::Malformed), "{bad}");
        }
        assert_eq!(
            parse_datetime("0001-01-01T00:00:00+01:00"),
            Err(MapErrorKind::OutOfRange)
        );
    }

    #[test]
    fn epoch_ms() {
        assert_eq!(parse_epoch_ms("1430438400000"), Ok(1_430_438_400_000));
        assert_eq!(parse_epoch_ms("-1"), Ok(-1));
        assert_eq!(parse_epoch_ms("0"), Ok(0));
        assert_eq!(
            parse_epoch_ms("99999999999999999"),
            Err(MapErrorKind::OutOfRange)
        );
        assert_eq!(
            parse_epoch_ms("9999999999999999"),
            Err(MapErrorKind::OutOfRange)
        );
        for bad in ["", "-", "+1", "1.5", "1e3", " 1"] {
            assert_eq!(parse_epoch_ms(bad), Err(MapErrorKind::Malformed), "{bad}");
        }
        assert_eq!(midnight_days(1_430_438_400_000), Ok(16_556));
        assert_eq!(midnight_days(-86_400_000), Ok(-1));
        assert_eq!(
            midnight_days(1_430_438_400_001),
            Err(MapErrorKind::NotMidnight)
        );
        assert_eq!(midnight_days(-1), Err(MapErrorKind::NotMidnight));
    }
}
