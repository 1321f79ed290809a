//! RFC 3339 timestamps in UTC, without a calendar dependency.
//!
//! Records carry `YYYY-MM-DDTHH:MM:SS.ffffffZ`; the parser also accepts any RFC 3339 offset and
//! fraction length so that records written by other tools compare correctly. Days are converted
//! with the proleptic Gregorian algorithm of Howard Hinnant's `days_from_civil`.

use std::time::{SystemTime, UNIX_EPOCH};

/// Formats a time as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microseconds, UTC).
pub fn format_rfc3339_utc(t: SystemTime) -> String {
    let (secs, micros) = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
        // Before 1970: only a broken clock gets here; keep the output well-formed.
        Err(e) => {
            let d = e.duration();
            let mut s = -(d.as_secs() as i64);
            let mut us = d.subsec_micros();
            if us > 0 {
                s -= 1;
                us = 1_000_000 - us;
            }
            (s, us)
        }
    };
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A compact form for file names: `YYYYMMDDTHHMMSS.ffffffZ` (no colons).
pub fn compact_utc(t: SystemTime) -> String {
    format_rfc3339_utc(t).replace(['-', ':'], "")
}

/// Parses an RFC 3339 date-time into nanoseconds since the Unix epoch.
pub fn parse_rfc3339(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        t.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || se > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos: i128 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        let frac = &s[start..i];
        // Keep nanosecond precision; further digits cannot change the order of real records.
        let digits: String = frac.chars().take(9).collect();
        let scale = 10i128.pow(9 - digits.len() as u32);
        nanos = digits.parse::<i128>().ok()? * scale;
    }
    let offset_secs: i64 = match b.get(i) {
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => 0,
        Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            if oh > 23 || om > 59 {
                return None;
            }
            let o = oh * 3600 + om * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + se - offset_secs;
    Some(secs as i128 * 1_000_000_000 + nanos)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn known_instants() {
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_micros(123_456);
        assert_eq!(format_rfc3339_utc(t), "2023-11-14T22:13:20.123456Z");
        assert_eq!(compact_utc(t), "20231114T221320.123456Z");
        assert_eq!(
            format_rfc3339_utc(UNIX_EPOCH),
            "1970-01-01T00:00:00.000000Z"
        );
        // 2000-02-29 is a leap day (divisible by 400).
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00Z"),
            Some(951_782_400 * 1_000_000_000)
        );
    }

    #[test]
    fn round_trip_over_a_range_of_days() {
        // Every 7919 seconds over ~60 years: exercises month ends and leap years.
        let mut s: u64 = 0;
        while s < 1_900_000_000 {
            let t = UNIX_EPOCH + Duration::from_secs(s) + Duration::from_micros(7);
            let text = format_rfc3339_utc(t);
            assert_eq!(
                parse_rfc3339(&text),
                Some(s as i128 * 1_000_000_000 + 7_000),
                "{text}"
            );
            s += 7919 * 97;
        }
    }

    #[test]
    fn offsets_and_fractions() {
        let z = parse_rfc3339("2026-11-22T18:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-11-22T19:30:00+01:30"), Some(z));
        assert_eq!(parse_rfc3339("2026-11-22T17:00:00-01:00"), Some(z));
        assert_eq!(
            parse_rfc3339("2026-11-22T18:00:00.5Z"),
            Some(z + 500_000_000)
        );
        assert_eq!(
            parse_rfc3339("2026-11-22T18:00:00.123456789123Z"),
            Some(z + 123_456_789)
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2026-11-22",
            "2026-11-22T18:00:00",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T18:00:00.Z",
            "2026-11-22T18:00:00+0100",
            "2026-11-22T18:00:00Zjunk",
            "20x6-11-22T18:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }
}
