//! Money: integer minor units with an ISO-4217 currency. Never a float.
//!
//! Decimal text (as the old system's JSON carried it, e.g. `29.99`) is parsed exactly; more fractional
//! digits than the currency allows are refused rather than rounded.

use std::fmt;

/// An ISO-4217 currency this engine accepts, with its number of minor-unit digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

/// Codes Kassa accepts. Kept short on purpose: an unknown code is a client error, not a guess.
const KNOWN: &[(&str, u8)] = &[
    ("USD", 2),
    ("EUR", 2),
    ("GBP", 2),
    ("CHF", 2),
    ("CAD", 2),
    ("AUD", 2),
    ("TRY", 2),
    ("SEK", 2),
    ("NOK", 2),
    ("DKK", 2),
    ("PLN", 2),
    ("CZK", 2),
    ("CNY", 2),
    ("INR", 2),
    ("BRL", 2),
    ("MXN", 2),
    ("JPY", 0),
    ("KRW", 0),
    ("KWD", 3),
    ("BHD", 3),
];

impl Currency {
    pub const USD: Currency = Currency { code: *b"USD", exponent: 2 };

    /// Looks a code up (case-insensitive). `None` for unknown codes.
    pub fn from_code(code: &str) -> Option<Currency> {
        let upper = code.trim().to_ascii_uppercase();
        KNOWN
            .iter()
            .find(|(c, _)| *c == upper)
            .map(|(c, e)| Currency { code: c.as_bytes().try_into().expect("3-letter code"), exponent: *e })
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).expect("ascii code")
    }

    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// 10^exponent: minor units per major unit.
    pub fn scale(&self) -> i64 {
        10_i64.pow(u32::from(self.exponent))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("invalid amount: '{0}' is not a decimal number")]
    Syntax(String),
    #[error("invalid amount: {0} has more than {1} fractional digits")]
    TooPrecise(String, u8),
    #[error("invalid amount: {0} is out of range")]
    Range(String),
}

/// The largest amount accepted anywhere: 10^13 major units keeps every sum of many lines far from i64 overflow.
pub const AMOUNT_MAJOR_MAX: i64 = 10_000_000_000_000;

/// Parses decimal text (`"29.99"`, `"150"`, `"-1.5"`, `"1e2"` is refused) into minor units of `currency`.
pub fn parse_minor(text: &str, currency: Currency) -> Result<i64, MoneyError> {
    let err = || MoneyError::Syntax(text.to_string());
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int_part, frac_part) = match digits.split_once('.') {
        Some((i, f)) => (i, f),
        None => (digits, ""),
    };
    if int_part.is_empty() || !int_part.bytes().all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    if digits.contains('.') && (frac_part.is_empty() || !frac_part.bytes().all(|b| b.is_ascii_digit())) {
        return Err(err());
    }
    // Trailing zeros carry no precision: "29.990" is 29.99.
    let frac_trimmed = frac_part.trim_end_matches('0');
    if frac_trimmed.len() > usize::from(currency.exponent) {
        return Err(MoneyError::TooPrecise(text.to_string(), currency.exponent));
    }
    let range = || MoneyError::Range(text.to_string());
    let int_value: i64 = int_part
        .trim_start_matches('0')
        .parse::<i64>()
        .or_else(|e| if int_part.trim_start_matches('0').is_empty() { Ok(0) } else { Err(e) })
        .map_err(|_| range())?;
    if int_value > AMOUNT_MAJOR_MAX {
        return Err(range());
    }
    let mut frac_value: i64 = 0;
    for i in 0..usize::from(currency.exponent) {
        let digit = frac_trimmed.as_bytes().get(i).map_or(0, |b| i64::from(b - b'0'));
        frac_value = frac_value * 10 + digit;
    }
    let minor = int_value * currency.scale() + frac_value;
    Ok(if negative { -minor } else { minor })
}

/// Formats minor units as the shortest exact decimal text (`2499.99`, `150`, `0.5`), as the old system's
/// JSON numbers looked.
pub fn format_minor(minor: i64, currency: Currency) -> String {
    let mut out = String::with_capacity(24);
    push_minor(&mut out, minor, currency);
    out
}

/// [`format_minor`] appended to `out`, without allocating.
pub fn push_minor(out: &mut String, minor: i64, currency: Currency) {
    let scale = currency.scale() as u64;
    if minor < 0 {
        out.push('-');
    }
    let abs = minor.unsigned_abs();
    out.push_str(itoa::Buffer::new().format(abs / scale));
    let mut frac = abs % scale;
    if frac == 0 {
        return;
    }
    // The fraction's digits, zero-padded to the currency's exponent, trailing zeros dropped.
    let mut digits = [b'0'; 20];
    let width = usize::from(currency.exponent).min(digits.len());
    for d in digits[..width].iter_mut().rev() {
        *d = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    let used = digits[..width].iter().rposition(|d| *d != b'0').map_or(0, |last| last + 1);
    out.push('.');
    out.extend(digits[..used].iter().map(|d| char::from(*d)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exact_decimals() {
        let usd = Currency::USD;
        assert_eq!(parse_minor("29.99", usd), Ok(2999));
        assert_eq!(parse_minor("150", usd), Ok(15000));
        assert_eq!(parse_minor("150.0", usd), Ok(15000));
        assert_eq!(parse_minor("0.5", usd), Ok(50));
        assert_eq!(parse_minor("-1.25", usd), Ok(-125));
        assert_eq!(parse_minor("007.10", usd), Ok(710));
        assert_eq!(parse_minor("0", usd), Ok(0));
    }

    #[test]
    fn refuses_bad_text() {
        let usd = Currency::USD;
        for bad in ["", ".5", "1.", "1e2", "abc", "1.2.3", "--1", "+1", " 1", "NaN", "inf"] {
            assert!(parse_minor(bad, usd).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(parse_minor("1.999", usd), Err(MoneyError::TooPrecise("1.999".into(), 2)));
        assert!(matches!(parse_minor("99999999999999999999", usd), Err(MoneyError::Range(_))));
        assert!(matches!(parse_minor("10000000000001", usd), Err(MoneyError::Range(_))));
        assert_eq!(parse_minor("5.5", Currency::from_code("JPY").unwrap()), Err(MoneyError::TooPrecise("5.5".into(), 0)));
    }

    #[test]
    fn formats_shortest() {
        let usd = Currency::USD;
        assert_eq!(format_minor(249999, usd), "2499.99");
        assert_eq!(format_minor(15000, usd), "150");
        assert_eq!(format_minor(50, usd), "0.5");
        assert_eq!(format_minor(-125, usd), "-1.25");
        assert_eq!(format_minor(5, usd), "0.05");
        let kwd = Currency::from_code("kwd").unwrap();
        assert_eq!(format_minor(1005, kwd), "1.005");
        assert_eq!(format_minor(-1500, kwd), "-1.5");
        let jpy = Currency::from_code("JPY").unwrap();
        assert_eq!(format_minor(-1500, jpy), "-1500");
        assert_eq!(format_minor(i64::MIN, usd), "-92233720368547758.08");
        assert_eq!(format_minor(i64::MAX, usd), "92233720368547758.07");
    }

    #[test]
    fn round_trips() {
        let usd = Currency::USD;
        for minor in [-100_000, -1, 0, 1, 9, 10, 99, 100, 12345, 999_999_999] {
            assert_eq!(parse_minor(&format_minor(minor, usd), usd), Ok(minor));
        }
    }
}
