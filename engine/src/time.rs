//! Times as text, for every crate that writes or reads them: RFC 3339 in UTC as Go's `time.Time` writes
//! it (the old system's contract), the RFC 3339 profile the API accepts, and a file-name stamp. The
//! calendar and the arithmetic are jiff's; what is ours is only which of its formats each use takes.
//!
//! Times are [`Micros`] since the Unix epoch, as everywhere in Kassa. jiff's timestamps run from the year
//! -9999 to 9999-12-30T22:00Z; a time outside them (no clock makes one) is written as the nearest end,
//! and text for one is refused.

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::fmt::temporal::{DateTimeParser, DateTimePrinter};
use jiff::tz::Offset;

use crate::model::Micros;

/// What Go writes for its zero `time.Time` (the old gateway's "never").
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// The fraction with as many digits as it needs (none for a whole second): Go's `time.RFC3339Nano`.
const TRIMMED: DateTimePrinter = DateTimePrinter::new();
/// No fraction: Go's `time.RFC3339`.
const SECONDS: DateTimePrinter = DateTimePrinter::new().precision(Some(0));
/// Always six digits of fraction.
const MICROS: DateTimePrinter = DateTimePrinter::new().precision(Some(6));
const PARSER: DateTimeParser = DateTimeParser::new();

fn timestamp(micros: Micros) -> Timestamp {
    Timestamp::from_microsecond(micros).unwrap_or(if micros < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

/// RFC 3339 in UTC with the fraction trimmed of trailing zeros, as Go marshals a `time.Time` to JSON:
/// `2024-05-01T10:20:30.12Z`, `2024-05-01T10:20:30Z`.
pub fn rfc3339(micros: Micros) -> String {
    TRIMMED.timestamp_to_string(&timestamp(micros))
}

/// [`rfc3339`] appended to `out` (no allocation of its own: for answers written straight into a buffer).
pub fn push_rfc3339(out: &mut String, micros: Micros) {
    if (YEAR_1..JIFF_LAST_SECOND).contains(&micros) {
        push_common_era(out, micros);
        return;
    }
    // Writing to a `String` cannot fail.
    let _ = TRIMMED.print_timestamp(&timestamp(micros), out);
}

/// 0001-01-01T00:00:00Z, and 9999-12-30T22:00:00Z (jiff's last second, past which it writes its end).
const YEAR_1: Micros = -62_135_596_800_000_000;
const JIFF_LAST_SECOND: Micros = 253_402_207_200_000_000;
const MICROS_PER_DAY: Micros = 86_400_000_000;

/// What jiff's printer writes for a time from year 1 to its last second, without its general machinery: product
/// listings write two times per record, and this was a tenth of a category page's CPU. The calendar
/// is the proleptic Gregorian one (days to a civil date as in Howard Hinnant's `civil_from_days`);
/// a proptest holds it to jiff's output.
fn push_common_era(out: &mut String, micros: Micros) {
    let (days, of_day) = (micros.div_euclid(MICROS_PER_DAY), micros.rem_euclid(MICROS_PER_DAY));
    let (year, month, day) = civil_from_days(days);
    let seconds = of_day / 1_000_000;
    let mut text = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, value: i64, width: usize| {
        let mut v = value;
        for slot in text[at..at + width].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, year, 4);
    put(5, month, 2);
    put(8, day, 2);
    put(11, seconds / 3600, 2);
    put(14, seconds / 60 % 60, 2);
    put(17, seconds % 60, 2);
    out.push_str(std::str::from_utf8(&text).expect("digits and separators are ASCII"));
    let mut fraction = of_day % 1_000_000;
    if fraction != 0 {
        let mut digits = *b".000000";
        let mut width = 6;
        while fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        for slot in digits[1..=width].iter_mut().rev() {
            *slot = b'0' + (fraction % 10) as u8;
            fraction /= 10;
        }
        out.push_str(std::str::from_utf8(&digits[..=width]).expect("digits are ASCII"));
    }
    out.push('Z');
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
/// The UTC year and month (1–12) of a time.
pub fn year_month(micros: Micros) -> (i64, i64) {
    let (year, month, _) = civil_from_days(micros.div_euclid(MICROS_PER_DAY));
    (year, month)
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// RFC 3339 in UTC without a fraction (`time.RFC3339`: the old `/health` and gRPC timestamps).
pub fn rfc3339_seconds(micros: Micros) -> String {
    SECONDS.timestamp_to_string(&timestamp(micros))
}

/// RFC 3339 in UTC with exactly six digits of fraction: `2000-02-29T00:00:00.000000Z`.
pub fn rfc3339_micros(micros: Micros) -> String {
    MICROS.timestamp_to_string(&timestamp(micros))
}

/// `YYYY-MM-DDTHH-MM-SSZ` in UTC for seconds since the epoch: a time that is safe in a file name.
pub fn file_stamp(seconds: i64) -> String {
    let t = Timestamp::from_second(seconds).unwrap_or(if seconds < 0 { Timestamp::MIN } else { Timestamp::MAX });
    t.strftime("%Y-%m-%dT%H-%M-%SZ").to_string()
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time '{0}': expected RFC 3339 (2024-05-01T10:20:30Z) or a date (2024-05-01)")]
pub struct TimeError(pub String);

/// Parses the RFC 3339 profile the API accepts into micros: `2024-05-01T10:20:30Z`, with `t` or a space
/// for the `T`, an optional fraction of one to nine digits (digits past the microsecond are dropped),
/// and `Z`, `z` or `±hh:mm`; or a bare date `2024-05-01` (midnight UTC). A leap second (`:60`) counts
/// as `:59`, as jiff reads it. Anything else is an error (jiff alone would also take ISO 8601's other
/// spellings, such as `+0200`, `10:20Z` or `20240501T102030Z`; the API keeps to RFC 3339).
pub fn parse_time(text: &str) -> Result<Micros, TimeError> {
    parse(text).ok_or_else(|| TimeError(text.chars().take(64).collect()))
}

fn parse(text: &str) -> Option<Micros> {
    let timestamp = match shape(text.as_bytes())? {
        Shape::Date => Offset::UTC.to_timestamp(text.parse::<Date>().ok()?.to_datetime(Time::midnight())).ok()?,
        Shape::DateTime => PARSER.parse_timestamp(text).ok()?,
    };
    // Floor, not toward zero: before 1970 a fraction still counts forward from its whole second.
    Micros::try_from(timestamp.as_nanosecond().div_euclid(1_000)).ok()
}

enum Shape {
    Date,
    DateTime,
}

/// Which form of the accepted profile `b` has, if any (the lexical check; jiff checks the values).
fn shape(b: &[u8]) -> Option<Shape> {
    let digits = |from: usize, to: usize| b.get(from..to).is_some_and(|part| part.iter().all(u8::is_ascii_digit));
    if !(digits(0, 4) && b.get(4) == Some(&b'-') && digits(5, 7) && b.get(7) == Some(&b'-') && digits(8, 10)) {
        return None;
    }
    if b.len() == 10 {
        return Some(Shape::Date);
    }
    let time = matches!(b[10], b'T' | b't' | b' ') && digits(11, 13) && b.get(13) == Some(&b':') && digits(14, 16);
    if !(time && b.get(16) == Some(&b':') && digits(17, 19)) {
        return None;
    }
    let mut rest = &b[19..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let n = fraction.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        rest = &fraction[n..];
    }
    // RFC 3339's offset is `hh:mm` with an hour of at most 23 (jiff would take up to 25).
    let offset = |o: &[u8]| {
        o.len() == 6
            && matches!(o[0], b'+' | b'-')
            && o[1..3].iter().chain(&o[4..6]).all(u8::is_ascii_digit)
            && o[3] == b':'
            && o[1..3] <= b"23"[..]
            && o[4..6] <= b"59"[..]
    };
    (matches!(rest, b"Z" | b"z") || offset(rest)).then_some(Shape::DateTime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_formats() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_714_558_830_123_456), "2024-05-01T10:20:30.123456Z");
        assert_eq!(rfc3339(1_714_558_830_120_000), "2024-05-01T10:20:30.12Z");
        assert_eq!(rfc3339(1_714_558_830_000_001), "2024-05-01T10:20:30.000001Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339_seconds(1_714_558_830_123_456), "2024-05-01T10:20:30Z");
        assert_eq!(rfc3339_seconds(-1), "1969-12-31T23:59:59Z");
        assert_eq!(rfc3339_micros(1_700_000_000_123_456), "2023-11-14T22:13:20.123456Z");
        assert_eq!(rfc3339_micros(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        // Go's zero time is a real instant, and writes as Go writes it.
        assert_eq!(rfc3339_seconds(-62_135_596_800_000_000), GO_ZERO_TIME);
        // Outside jiff's years: the nearest end, never a panic.
        assert_eq!(rfc3339_seconds(i64::MAX), "9999-12-30T22:00:00Z");
        assert_eq!(rfc3339(i64::MIN), "-009999-01-02T01:59:59Z");
    }

    proptest::proptest! {
        #[test]
        fn the_common_era_writer_matches_jiff(micros in YEAR_1 - MICROS_PER_DAY..JIFF_LAST_SECOND + MICROS_PER_DAY, whole in proptest::bool::ANY) {
            // Whole seconds and whole milliseconds are common in data and take the trimming branches.
            let micros = if whole { micros - micros.rem_euclid(1_000_000) } else { micros };
            let mut fast = String::new();
            push_rfc3339(&mut fast, micros);
            let mut general = String::new();
            let _ = TRIMMED.print_timestamp(&timestamp(micros), &mut general);
            proptest::prop_assert_eq!(fast, general);
        }
    }

    #[test]
    fn the_common_era_ends() {
        for micros in [
            YEAR_1,
            YEAR_1 - 1,
            JIFF_LAST_SECOND - 1,
            JIFF_LAST_SECOND,
            JIFF_LAST_SECOND + 1_000_000,
            0,
            -1,
            951_782_400_000_000,
            1_714_558_830_120_000,
        ] {
            let mut fast = String::new();
            push_rfc3339(&mut fast, micros);
            assert_eq!(fast, rfc3339(micros), "{micros}");
        }
    }

    #[test]
    fn file_stamps() {
        assert_eq!(file_stamp(0), "1970-01-01T00-00-00Z");
        assert_eq!(file_stamp(951_782_400), "2000-02-29T00-00-00Z");
        assert_eq!(file_stamp(1_795_223_045), "2026-11-21T01-04-05Z");
    }

    #[test]
    fn the_accepted_profile() {
        for (text, micros) in [
            ("2024-05-01T10:20:30.123456Z", 1_714_558_830_123_456),
            ("2024-05-01T12:20:30+02:00", 1_714_558_830_000_000),
            ("2024-05-01T08:50:30-01:30", 1_714_558_830_000_000),
            ("2024-05-01t10:20:30z", 1_714_558_830_000_000),
            ("2024-05-01 10:20:30Z", 1_714_558_830_000_000),
            ("2024-05-01T10:20:30.5Z", 1_714_558_830_500_000),
            ("2024-05-01T10:20:30.123456789Z", 1_714_558_830_123_456),
            ("2024-05-01", 1_714_521_600_000_000),
            ("2024-02-29", 1_709_164_800_000_000),
            ("1969-12-31T23:59:59.9999999Z", -1),
            ("2016-12-31T23:59:60Z", 1_483_228_799_000_000),
        ] {
            assert_eq!(parse_time(text), Ok(micros), "{text}");
        }
    }

    #[test]
    fn everything_else_is_refused() {
        for bad in [
            "",
            "yesterday",
            "2024-13-01",
            "2024-02-30",
            "2023-02-29",
            "2024-5-01",
            "2024-05-01T25:00:00Z",
            "2024-05-01T10:60:00Z",
            "2024-05-01T10:20:61Z",
            "2024-05-01T10:20:30",
            "2024-05-01T10:20:30.Z",
            "2024-05-01T10:20:30.1234567890Z",
            "2024-05-01T10:20Z",
            "2024-05-01T10:20:30+0200",
            "2024-05-01T10:20:30+02",
            "2024-05-01T10:20:30+24:00",
            "2024-05-01T10:20:30+02:60",
            "2024-05-01T10:20:30,5Z",
            "2024-05-01T10:20:30Z[UTC]",
            "20240501T102030Z",
            "+002024-05-01T10:20:30Z",
            "2024-05-01Z",
            "2024-05-01T10:20:30Zjunk",
            "２０２４-05-01",
            "9999-12-31T23:00:00Z",
        ] {
            let refused = parse_time(bad);
            assert!(refused.is_err(), "{bad}: {refused:?}");
        }
        let long = "x".repeat(200);
        assert_eq!(parse_time(&long), Err(TimeError("x".repeat(64))), "the error quotes at most 64 characters");
    }

    #[test]
    fn what_is_written_reads_back() {
        for micros in [0, 1, -1, 951_782_400_000_000, 4_102_444_800_000_001, 1_714_558_830_123_456, 253_402_207_200_999_999] {
            assert_eq!(parse_time(&rfc3339(micros)), Ok(micros), "{micros}");
            assert_eq!(parse_time(&rfc3339_micros(micros)), Ok(micros), "{micros}");
        }
    }
}
