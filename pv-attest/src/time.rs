//! The timestamps of `allowed_signers`' `valid-after` and `valid-before` options, as Unix
//! seconds.
//!
//! OpenSSH accepts `YYYYMMDD`, `YYYYMMDDHHMM` and `YYYYMMDDHHMMSS`, each with an optional
//! trailing `Z` for UTC, and reads a time without `Z` in the verifier's local time zone. pv
//! reads every time as UTC, `Z` or not: a verdict that depends on the time zone of the machine
//! that checks it would make the same evidence pass on one machine and fail on another.

use std::time::{SystemTime, UNIX_EPOCH};

/// Parses an OpenSSH absolute time (see the module docs) into Unix seconds, UTC.
pub(crate) fn parse_openssh_time(text: &str) -> Result<i64, String> {
    let digits = text.strip_suffix(['Z', 'z']).unwrap_or(text);
    let shape = "expected YYYYMMDD, YYYYMMDDHHMM or YYYYMMDDHHMMSS, optionally followed by Z";
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("time \"{text}\" is not all digits: {shape}"));
    }
    if !matches!(digits.len(), 8 | 12 | 14) {
        return Err(format!(
            "time \"{text}\" has {} digits: {shape}",
            digits.len()
        ));
    }
    let field = |from: usize, to: usize| -> i64 {
        digits.get(from..to).map_or(0, |s| {
            s.bytes()
                .fold(0i64, |acc, b| acc * 10 + i64::from(b - b'0'))
        })
    };
    let (year, month, day) = (field(0, 4), field(4, 6), field(6, 8));
    let (hour, minute, second) = (field(8, 10), field(10, 12), field(12, 14));
    if !(1..=12).contains(&month) {
        return Err(format!("time \"{text}\": month {month} is not 01 to 12"));
    }
    if day < 1 || day > days_in_month(year, month) {
        return Err(format!(
            "time \"{text}\": day {day} does not exist in {year:04}-{month:02}"
        ));
    }
    if hour > 23 || minute > 59 || second > 59 {
        return Err(format!(
            "time \"{text}\": {hour:02}:{minute:02}:{second:02} is not a time of day"
        ));
    }
    Ok(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Whole Unix seconds of `t` (rounded down, negative before 1970).
pub(crate) fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() > 0 {
                -whole - 1
            } else {
                -whole
            }
        }
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC`, for error messages.
pub(crate) fn format_utc(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3_600,
        secs % 3_600 / 60,
        secs % 60
    )
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn parses_the_three_openssh_shapes_as_utc() {
        assert_eq!(parse_openssh_time("19700101"), Ok(0));
        assert_eq!(parse_openssh_time("19700101Z"), Ok(0));
        // 2024-02-29 12:34:56 UTC, checked with `date -u -d '2024-02-29 12:34:56' +%s`.
        assert_eq!(parse_openssh_time("20240229123456Z"), Ok(1_709_210_096));
        assert_eq!(parse_openssh_time("202402291234"), Ok(1_709_210_040));
        assert_eq!(parse_openssh_time("20000301"), Ok(951_868_800));
    }

    #[test]
    fn rejects_malformed_times() {
        for bad in [
            "2024",
            "2024010",
            "20240101T",
            "2024-01-01",
            "20241301",
            "20230229",
            "20240100",
            "202401012400",
            "20240101235960",
            "",
        ] {
            assert!(parse_openssh_time(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn formats_and_rounds_down() {
        assert_eq!(format_utc(1_709_210_096), "2024-02-29 12:34:56 UTC");
        assert_eq!(format_utc(-1), "1969-12-31 23:59:59 UTC");
        let t = UNIX_EPOCH + Duration::from_millis(1_500);
        assert_eq!(unix_seconds(t), 1);
        let t = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(unix_seconds(t), -1);
    }

    #[test]
    fn civil_round_trips() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
