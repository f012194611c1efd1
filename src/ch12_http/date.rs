//! HTTP dates (RFC 9110 §5.6.7, IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`,
//! written and read without a date crate (days from the civil calendar,
//! after Howard Hinnant's `days_from_civil`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since the epoch, whole (before 1970 counts as 0).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Format `t` as an IMF-fixdate.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use sockbook::ch12_http::date::{format, parse};
/// let t = UNIX_EPOCH + Duration::from_secs(784111777);
/// assert_eq!(format(t), "Sun, 06 Nov 1994 08:49:37 GMT");
/// assert_eq!(parse("Sun, 06 Nov 1994 08:49:37 GMT"), Some(t));
/// ```
pub fn format(t: SystemTime) -> String {
    let mut out = String::with_capacity(29);
    format_into(&mut out, t);
    out
}

/// [`format()`], appended to `out` (no allocation of its own). The digits
/// are pushed by hand: every file response carries a `Last-Modified`, and
/// `write!` with its padding rules is a measurable share of a small one.
pub fn format_into(out: &mut String, t: SystemTime) {
    let secs = unix_secs(t) as i64;
    let (days, rest) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let (y, m, d) = civil_from_days(days);
    let two = |out: &mut String, n: i64| {
        out.push(char::from(b'0' + (n / 10 % 10) as u8));
        out.push(char::from(b'0' + (n % 10) as u8));
    };
    out.push_str(DAYS[days.rem_euclid(7) as usize]);
    out.push_str(", ");
    two(out, d);
    out.push(' ');
    out.push_str(MONTHS[(m - 1) as usize]);
    out.push(' ');
    if (1000..10000).contains(&y) {
        two(out, y / 100);
        two(out, y % 100);
    } else {
        out.push_str(&y.to_string());
    }
    out.push(' ');
    two(out, rest / 3600);
    out.push(':');
    two(out, rest / 60 % 60);
    out.push(':');
    two(out, rest % 60);
    out.push_str(" GMT");
}

/// Parse an IMF-fixdate; `None` for anything else (RFC 9110 says an
/// invalid `If-Modified-Since` is ignored).
pub fn parse(text: &str) -> Option<SystemTime> {
    let (_, rest) = text.trim().split_once(", ")?;
    let mut parts = rest.split(' ');
    let d: i64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let m = MONTHS.iter().position(|&n| n == month)? as i64 + 1;
    let y: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>().ok());
    let (h, mi, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT" || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let secs = days_from_civil(y, m, d) * 86400 + h * 3600 + mi * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

thread_local! {
    static NOW: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

/// The current time as an IMF-fixdate, formatted at most once a second per
/// thread (as nginx caches its time strings): every response carries a
/// `Date`, and formatting it is a measurable share of a small response.
pub fn now() -> String {
    let mut out = String::with_capacity(29);
    now_into(&mut out);
    out
}

/// [`now`], appended to `out`.
pub fn now_into(out: &mut String) {
    let t = SystemTime::now();
    let secs = unix_secs(t);
    NOW.with(|cell| {
        let mut cached = cell.borrow_mut();
        if cached.0 != secs {
            *cached = (secs, format(t));
        }
        out.push_str(&cached.1);
    })
}
