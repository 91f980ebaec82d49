//! Calendar arithmetic without a clock: the caller always passes the instant in.

/// Formats Unix milliseconds as ISO-8601 UTC with milliseconds: `2019-07-26T04:00:00.000Z`.
pub fn iso8601_ms(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let ms = unix_ms % 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Parses ISO-8601 UTC as HubSpot writes dates into Unix milliseconds: `2019-07-26T04:00:00.000Z`
/// (any number of fraction digits, or none; only `Z`), or a date alone (`2019-07-26`, midnight).
/// `None` for anything else, including invalid dates and instants before 1970.
pub(crate) fn parse_iso8601_ms(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let digits = |part: &[u8]| {
        (!part.is_empty() && part.iter().all(u8::is_ascii_digit))
            .then(|| part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
    };
    let field = |from: usize, to: usize| b.get(from..to).and_then(digits);
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (field(0, 4)?, field(5, 7)?, field(8, 10)?);
    if !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let days = days_from_civil(y, m, d)?;
    if civil_from_days(days) != (y, m, d) {
        return None; // e.g. 2023-02-29
    }
    let date_ms = days.checked_mul(86_400_000)?;
    if b.len() == 10 {
        return Some(date_ms);
    }
    if b.len() < 20 || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, min, sec) = (field(11, 13)?, field(14, 16)?, field(17, 19)?);
    if h > 23 || min > 59 || sec > 59 {
        return None;
    }
    let (ms, zone) = match &b[19..] {
        [b'.', frac @ ..] => {
            let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            // The first three fraction digits: `.5` is 500 ms, `.1234` is 123 ms.
            let ms = frac[..n]
                .iter()
                .chain(b"00")
                .take(3)
                .fold(0, |v, d| v * 10 + u64::from(d - b'0'));
            (ms, &frac[n..])
        }
        rest => (0, rest),
    };
    if zone != b"Z" {
        return None;
    }
    Some(date_ms + ((h * 60 + min) * 60 + sec) * 1000 + ms)
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (non-negative only).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (inverse of `civil_from_days`).
pub(crate) fn days_from_civil(y: u64, m: u64, d: u64) -> Option<u64> {
    let y = if m <= 2 { y.checked_sub(1)? } else { y };
    let era = y / 400;
    let yoe = y % 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(iso8601_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601_ms(1_564_113_600_000), "2019-07-26T04:00:00.000Z");
        assert_eq!(iso8601_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601_ms(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
        assert_eq!(iso8601_ms(4_102_444_800_000), "2100-01-01T00:00:00.000Z");
    }

    #[test]
    fn parses_iso8601() {
        for ms in [
            0,
            1_564_113_600_000,
            951_782_400_000,
            1_709_251_199_999,
            4_102_444_800_000,
        ] {
            assert_eq!(parse_iso8601_ms(&iso8601_ms(ms)), Some(ms), "{ms}");
        }
        assert_eq!(
            parse_iso8601_ms("2019-07-26T04:00:00Z"),
            Some(1_564_113_600_000)
        );
        assert_eq!(
            parse_iso8601_ms("2019-07-26T04:00:00.5Z"),
            Some(1_564_113_600_500)
        );
        assert_eq!(
            parse_iso8601_ms("2019-07-26T04:00:00.123456789012345678901234Z"),
            Some(1_564_113_600_123)
        );
        assert_eq!(parse_iso8601_ms("2019-07-26"), Some(1_564_099_200_000));
        for bad in [
            "",
            "2019-07-26T04:00:00",
            "2019-07-26T04:00:00+00:00",
            "2019-07-26T04:00:00.Z",
            "2019-07-26T24:00:00Z",
            "2019-07-26 04:00:00Z",
            "2023-02-29",
            "2019-13-01",
            "2019-00-01",
            "2019-01-00",
            "1969-12-31T23:59:59Z",
            "+019-07-26",
            "2019-07-2x",
            "1564113600000",
        ] {
            assert_eq!(parse_iso8601_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_round_trip() {
        for days in [0, 1, 59, 365, 10_957, 19_782, 47_482, 100_000] {
            let secs = days * 86_400 * 1000;
            let s = iso8601_ms(secs);
            let (y, m, d) = (
                s[0..4].parse().unwrap(),
                s[5..7].parse().unwrap(),
                s[8..10].parse().unwrap(),
            );
            assert_eq!(days_from_civil(y, m, d), Some(days), "{s}");
        }
    }
}
