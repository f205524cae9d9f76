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

/// Parses `YYYY-MM-DD[T ]HH:MM:SS[.f*][Z|+00:00]` (UTC only) into a time.
pub fn parse(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let s = s
        .strip_suffix('Z')
        .or_else(|| s.strip_suffix("+00:00"))
        .unwrap_or(s);
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00:00"));
    let mut dp = date.splitn(3, '-');
    let y: i64 = dp.next()?.parse().ok()?;
    let m: u32 = dp.next()?.parse().ok()?;
    let d: u32 = dp.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.splitn(3, ':');
    let hh: u64 = tp.next()?.parse().ok()?;
    let mm: u64 = tp.next()?.parse().ok()?;
    let ss: u64 = tp.next().unwrap_or("0").parse().ok()?;
    if hh > 23 || mm > 59 || ss > 60 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let micros: u64 = format!("{:0<6}", &frac[..frac.len().min(6)]).parse().ok()?;
    let days = days_from_civil(y, m, d);
    if days < 0 {
        return None;
    }
    let secs = days as u64 * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros))
}

/// Normalises a client-supplied timestamp to the stored form, if it parses.
pub fn normalise(s: &str) -> Option<String> {
    parse(s).map(format_stored)
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
}
