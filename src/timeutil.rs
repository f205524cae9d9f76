//! UTC timestamps in the forms Glance used, without a date crate.
//!
//! The registry stores `YYYY-MM-DDTHH:MM:SS.ffffff` (always six fraction digits, so that
//! text comparison in SQL is time order); the API shows the same string without a zero
//! fraction, as Python's `datetime.isoformat()` did. Notifications use a space instead of `T`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The current time as a stored timestamp (`2011-09-21T20:33:05.123456`).
pub fn now() -> String {
    format_stored(SystemTime::now())
}

/// Formats a time as a stored timestamp (six fraction digits, no zone).
pub fn format_stored(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs() as i64;
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:06}",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        d.subsec_micros()
    )
}

/// A stored timestamp as the API shows it: the fraction dropped when it is zero.
pub fn display(stored: &str) -> String {
    stored.strip_suffix(".000000").unwrap_or(stored).to_string()
}

/// A stored timestamp as notifications show it (`str(datetime)`: space-separated).
pub fn notification_form(stored: &str) -> String {
    display(stored).replacen('T', " ", 1)
}

/// The years a client may send: four digits, as ISO 8601 and the stored text form (whose
/// order is time order) assume; beyond them the arithmetic below would overflow.
const YEARS: std::ops::RangeInclusive<i64> = 1..=9999;

/// A timestamp taken apart, every field range-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    micros: u32,
}

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.f*][Z|+00:00]` (UTC only) into a time; `None` when it is
/// malformed or out of range (see [`try_normalise`] for why).
pub fn parse(s: &str) -> Option<SystemTime> {
    let p = parse_parts(s).ok()?;
    let days = days_from_civil(p.year, p.month, p.day);
    let secs = days
        .checked_mul(86_400)?
        .checked_add(i64::from(p.hour * 3600 + p.minute * 60 + p.second))?;
    let micros = Duration::from_micros(u64::from(p.micros));
    let whole = Duration::from_secs(secs.unsigned_abs());
    let t = if secs >= 0 {
        UNIX_EPOCH.checked_add(whole)?
    } else {
        UNIX_EPOCH.checked_sub(whole)?
    };
    t.checked_add(micros)
}

/// Normalises a client-supplied timestamp to the stored form, if it parses.
pub fn normalise(s: &str) -> Option<String> {
    try_normalise(s).ok()
}

/// Normalises a client-supplied timestamp to the stored form, or says what is wrong with
/// it (for a 400 that the caller prefixes with the parameter's name). Works on the fields
/// alone, so any year from 0001 to 9999 is exact, before 1970 included.
pub fn try_normalise(s: &str) -> Result<String, &'static str> {
    let p = parse_parts(s)?;
    Ok(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}",
        p.year, p.month, p.day, p.hour, p.minute, p.second, p.micros
    ))
}

/// Takes `YYYY-MM-DD[T ]HH:MM:SS[.f*][Z|+00:00]` apart and checks every field's range.
fn parse_parts(s: &str) -> Result<Parts, &'static str> {
    let s = s.trim();
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s);
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let mut dp = date.split('-');
    let (Some(y), Some(m), Some(d), None) = (dp.next(), dp.next(), dp.next(), dp.next()) else {
        return Err("expected YYYY-MM-DD");
    };
    if y.len() != 4 {
        return Err("the year must have four digits (0001 to 9999)");
    }
    let year = i64::from(digits(y, 4).ok_or("expected YYYY-MM-DD")?);
    let month = digits(m, 2).ok_or("expected YYYY-MM-DD")?;
    let day = digits(d, 2).ok_or("expected YYYY-MM-DD")?;
    if !YEARS.contains(&year) {
        return Err("the year must be between 0001 and 9999");
    }
    if !(1..=12).contains(&month) {
        return Err("the month must be between 01 and 12");
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err("no such day in that month");
    }
    let (hms, frac) = match time.split_once('.') {
        Some((hms, frac)) => (hms, Some(frac)),
        None => (time, None),
    };
    let mut tp = hms.split(':');
    let (Some(h), Some(mi), sec, None) = (tp.next(), tp.next(), tp.next(), tp.next()) else {
        return Err("expected HH:MM[:SS[.ffffff]] after the date");
    };
    let bad_time = "expected HH:MM[:SS[.ffffff]] after the date";
    let hour = digits(h, 2).ok_or(bad_time)?;
    let minute = digits(mi, 2).ok_or(bad_time)?;
    let second = sec.map_or(Some(0), |s| digits(s, 2)).ok_or(bad_time)?;
    if hour > 23 || minute > 59 || second > 59 {
        return Err("the time of day is out of range");
    }
    let micros = match frac {
        None => 0,
        // Digits past the sixth are dropped (truncated), as the stored form has six.
        Some(f) if !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()) => f
            .bytes()
            .chain(std::iter::repeat(b'0'))
            .take(6)
            .fold(0u32, |n, b| n * 10 + u32::from(b - b'0')),
        Some(_) => return Err("the fraction of a second must be digits"),
    };
    Ok(Parts {
        year,
        month,
        day,
        hour,
        minute,
        second,
        micros,
    })
}

/// 1 to `max` ASCII digits as a number (no sign, no spaces).
fn digits(s: &str, max: usize) -> Option<u32> {
    if s.is_empty() || s.len() > max || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Days in `month` of `year` (proleptic Gregorian).
fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days <-> civil date algorithms (public domain).
/// Days since 1970-01-01 to (year, month 1-12, day 1-31).
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let t = UNIX_EPOCH + Duration::from_micros(1_316_637_185_123_456);
        let s = format_stored(t);
        assert_eq!(s, "2011-09-21T20:33:05.123456");
        assert_eq!(parse(&s), Some(t));
        assert_eq!(display("2011-09-21T20:33:05.000000"), "2011-09-21T20:33:05");
        assert_eq!(notification_form(&s), "2011-09-21 20:33:05.123456");
    }

    #[test]
    fn parse_variants() {
        assert!(parse("2011-09-21T20:33:05Z").is_some());
        assert!(parse("2011-09-21 20:33:05.5").is_some());
        assert!(parse("2011-09-21").is_some());
        assert_eq!(
            normalise("2000-02-29T00:00:00+00:00").as_deref(),
            Some("2000-02-29T00:00:00.000000")
        );
        assert!(parse("2011-13-01T00:00:00").is_none());
        assert!(parse("yesterday").is_none());
        assert!(parse("2011-09-21T25:00:00").is_none());
    }

    #[test]
    fn out_of_range_dates_are_refused_not_a_panic() {
        for bad in [
            "300000000000-01-01",
            "9223372036854775807-01-01",
            "-0001-01-01",
            "+2011-01-01",
            "0000-01-01",
            "10000-01-01",
            "2011-00-01",
            "2011-1-001",
            "2011-02-29",
            "2011-04-31",
            "2011-01-32",
            "2011-01-01T24:00:00",
            "2011-01-01T23:60:00",
            "2011-01-01T23:59:60",
            "2011-01-01T-1:00:00",
            "2011-01-01T01:02:03.",
            "2011-01-01T01:02:03.1e3",
            "2011-01-01T01:02:03:04",
            "2011-01-01-01",
            "",
        ] {
            assert!(try_normalise(bad).is_err(), "{bad:?} accepted");
            assert_eq!(parse(bad), None, "{bad:?}");
        }
        assert_eq!(
            try_normalise("300000000000-01-01"),
            Err("the year must have four digits (0001 to 9999)")
        );
    }

    #[test]
    fn the_edges_of_the_range() {
        assert_eq!(
            normalise("0001-01-01").as_deref(),
            Some("0001-01-01T00:00:00.000000")
        );
        assert_eq!(
            normalise("9999-12-31T23:59:59.9999999").as_deref(),
            Some("9999-12-31T23:59:59.999999")
        );
        assert_eq!(
            normalise("2000-02-29 1:2").as_deref(),
            Some("2000-02-29T01:02:00.000000")
        );
        assert!(normalise("1900-02-29").is_none());
        assert_eq!(
            normalise("1969-12-31T23:59:59").as_deref(),
            Some("1969-12-31T23:59:59.000000")
        );
        // Every accepted time is a SystemTime on 64-bit Unix, before the epoch too.
        let first = parse("0001-01-01").map(|t| UNIX_EPOCH.duration_since(t).ok());
        assert_eq!(first, Some(Some(Duration::from_secs(62_135_596_800))));
        let last = parse("9999-12-31T23:59:59.999999");
        assert_eq!(
            last.map(format_stored).as_deref(),
            Some("9999-12-31T23:59:59.999999")
        );
        assert_eq!(
            parse("1970-01-01T00:00:00.5"),
            Some(UNIX_EPOCH + Duration::from_millis(500))
        );
    }

    /// Property-based tests (quick and long runs: see `crate::props`).
    mod props {
        use super::*;
        use crate::props::props;
        use proptest::prelude::*;

        /// Timestamps near the accepted form, so that the range checks are reached.
        fn near_time() -> impl Strategy<Value = String> {
            prop_oneof![
                "(?s).{0,30}",
                "[+-]?[0-9]{1,14}-[0-9]{1,3}-[0-9]{1,3}([T ][0-9]{1,3}:[0-9]{1,3}(:[0-9]{1,3}(\\.[0-9]{0,9})?)?)?(Z|\\+00:00)?",
            ]
        }

        props! {
            cases = 3000;

            /// Anything: a stored timestamp or a reason, never a panic; an accepted time is
            /// a SystemTime too, and normalising is idempotent.
            fn prop_time_any(s in near_time()) {
                match try_normalise(&s) {
                    Ok(n) => {
                        prop_assert_eq!(n.len(), "2011-09-21T20:33:05.123456".len());
                        prop_assert_eq!(normalise(&n), Some(n.clone()));
                        prop_assert!(parse(&s).is_some());
                        if n.as_str() >= "1970" {
                            prop_assert_eq!(parse(&s).map(format_stored), Some(n));
                        }
                    }
                    Err(why) => {
                        prop_assert!(!why.is_empty());
                        prop_assert_eq!(parse(&s), None);
                    }
                }
            }
        }
    }
}
