//! UTC calendar arithmetic for property values (no time-zone database: HubSpot stores UTC, §7).

const MS_PER_DAY: u64 = 86_400_000;

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// `2024-09-11T18:21:50.012Z` for epoch milliseconds. Hand-rolled (no `format!`): seeding
/// calls it for every record.
pub(super) fn format_iso(ms: u64) -> String {
    fn push(out: &mut String, v: u64, width: u32) {
        for i in (0..width).rev() {
            let digit = (v / 10u64.pow(i)) % 10;
            out.push(char::from(b'0' + u8::try_from(digit).unwrap_or(0)));
        }
    }
    let days = i64::try_from(ms / MS_PER_DAY).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    let rem = ms % MS_PER_DAY;
    let mut out = String::with_capacity(24);
    push(&mut out, u64::try_from(y).unwrap_or(0), 4);
    out.push('-');
    push(&mut out, u64::from(m), 2);
    out.push('-');
    push(&mut out, u64::from(d), 2);
    out.push('T');
    push(&mut out, rem / 3_600_000, 2);
    out.push(':');
    push(&mut out, rem / 60_000 % 60, 2);
    out.push(':');
    push(&mut out, rem / 1000 % 60, 2);
    out.push('.');
    push(&mut out, rem % 1000, 3);
    out.push('Z');
    out
}

/// `2015-05-01` for epoch milliseconds (the date part, UTC).
pub(super) fn format_date(ms: u64) -> String {
    let days = i64::try_from(ms / MS_PER_DAY).unwrap_or(0);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `HH:MM:SS.mmm` of the time of day (for the "not midnight" message).
pub(super) fn format_time_of_day(ms: u64) -> String {
    let rem = ms % MS_PER_DAY;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

fn num<T: std::str::FromStr>(s: &str) -> Option<T> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SS[.fff]Z` into epoch ms.
pub(super) fn parse_iso(s: &str) -> Option<u64> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    if date.len() != 10 {
        return None;
    }
    let mut parts = date.split('-');
    let y: i64 = num(parts.next()?)?;
    let m: u32 = num(parts.next()?)?;
    let d: u32 = num(parts.next()?)?;
    if parts.next().is_some() || !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    let days = u64::try_from(days_from_civil(y, m, d)).ok()?;
    let mut ms = days * MS_PER_DAY;
    if let Some(t) = time {
        let t = t.strip_suffix('Z').or_else(|| t.strip_suffix("+00:00"))?;
        let (hms, frac) = match t.split_once('.') {
            Some((a, b)) => (a, Some(b)),
            None => (t, None),
        };
        let mut p = hms.split(':');
        let h: u64 = num(p.next()?)?;
        let mi: u64 = num(p.next()?)?;
        let sec: u64 = match p.next() {
            Some(x) => num(x)?,
            None => 0,
        };
        if p.next().is_some() || h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        ms += h * 3_600_000 + mi * 60_000 + sec * 1000;
        if let Some(f) = frac {
            let digits: String = f.chars().take(3).collect();
            let v: u64 = num(&digits)?;
            if !f.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            ms += v * 10u64.pow(3 - u32::try_from(digits.len()).unwrap_or(3));
        }
    }
    Some(ms)
}

/// Whether `ms` is exactly midnight UTC.
pub(super) fn is_midnight(ms: u64) -> bool {
    ms.is_multiple_of(MS_PER_DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_known_values() {
        assert_eq!(format_iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_iso(1_430_438_400_000), "2015-05-01T00:00:00.000Z");
        assert_eq!(format_date(1_430_438_400_000), "2015-05-01");
        assert_eq!(parse_iso("2015-05-01"), Some(1_430_438_400_000));
        assert_eq!(
            parse_iso("2020-02-29T03:30:17.000Z"),
            Some(1_582_947_017_000)
        );
        assert_eq!(format_iso(1_582_947_017_012), "2020-02-29T03:30:17.012Z");
        assert_eq!(parse_iso("2020-02-29T03:30:17.5Z"), Some(1_582_947_017_500));
        assert_eq!(parse_iso("2021-02-29"), None);
        assert_eq!(parse_iso("hello"), None);
        assert!(is_midnight(1_430_438_400_000));
        assert_eq!(
            format_time_of_day(1_430_438_400_000 + 80_335_865),
            "22:18:55.865"
        );
    }
}
