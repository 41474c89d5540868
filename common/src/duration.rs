//! Durations as Ory writes them in configuration (`"5m"`, `"100ms"`, `"1h30m"`, `"1.5h"`) and as
//! protobuf JSON writes them on the wire (`"3600s"`, `"0.000001s"`).
//!
//! The parser follows Go's `time.ParseDuration` (the grammar, the units, the int64-nanosecond
//! range) and adds the day-based units Ory's tooling accepts: `d` (24h), `w` (7d), `mo` (30d)
//! and `y` (365d). It deliberately rejects negative durations: no configuration key or request
//! field in talos has a use for them. Parsing protobuf durations from request bodies is not done
//! here; that belongs with the JSON models.

use std::time::Duration;

/// Nanoseconds per unit. A unit is the whole run of characters after a number, so `m`, `ms` and
/// `mo` never shadow each other.
const UNITS: &[(&str, u128)] = &[
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // micro sign, as Go accepts
    ("\u{3bc}s", 1_000), // Greek small letter mu, as Go accepts
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
    ("w", 7 * 86_400 * 1_000_000_000),
    ("mo", 30 * 86_400 * 1_000_000_000),
    ("y", 365 * 86_400 * 1_000_000_000),
];

/// The largest duration accepted: Go's `time.Duration` is an int64 of nanoseconds, and a value
/// that Go cannot represent would not survive a round trip through an Ory deployment.
const MAX_NANOS: u128 = i64::MAX as u128;

/// Fraction digits beyond this many are ignored, as Go does once its scale would overflow; a
/// nanosecond is 1e-9 of a second and the largest unit is under 1e17 ns, so 20 digits lose
/// nothing that can be represented.
const MAX_FRACTION_DIGITS: u32 = 20;

/// Why a duration string was rejected. Each message names the input, which is never secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}")]
    Invalid(String),
    #[error("negative duration {0:?} is not allowed")]
    Negative(String),
    #[error("missing unit in duration {0:?}")]
    MissingUnit(String),
    #[error("unknown unit {unit:?} in duration {input:?} (valid units: ns, us, ms, s, m, h, d, w, mo, y)")]
    UnknownUnit { unit: String, input: String },
    #[error("duration {0:?} is out of range")]
    OutOfRange(String),
}

/// Parses a Go/Ory duration: one or more `<number><unit>` terms, each number a decimal with an
/// optional fraction. `"0"` alone is accepted without a unit, as in Go.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(s.to_owned());
    let rest = match s.as_bytes().first() {
        Some(b'-') => return Err(DurationError::Negative(s.to_owned())),
        Some(b'+') => &s[1..],
        Some(_) => s,
        None => return Err(invalid()),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }

    let mut total: u128 = 0;
    let mut rest = rest;
    while !rest.is_empty() {
        // The number: digits, optionally a '.' and more digits; at least one digit overall.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(invalid());
        }

        // The unit: everything up to the next digit or '.'.
        let unit_len = after_number.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(DurationError::MissingUnit(s.to_owned()));
        }
        let Some(&(_, per_unit)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit { unit: unit.to_owned(), input: s.to_owned() });
        };

        let out_of_range = || DurationError::OutOfRange(s.to_owned());
        let whole: u128 = if int_digits.is_empty() {
            0
        } else {
            // More than 39 digits overflow u128; anything past 20 is out of range anyway.
            if int_digits.trim_start_matches('0').len() > 20 {
                return Err(out_of_range());
            }
            int_digits.parse().map_err(|_| out_of_range())?
        };
        let mut term = whole.checked_mul(per_unit).ok_or_else(out_of_range)?;
        let mut fraction: u128 = 0;
        let mut scale: u128 = 1;
        for digit in frac_digits.bytes().take(MAX_FRACTION_DIGITS as usize) {
            fraction = fraction * 10 + u128::from(digit - b'0');
            scale *= 10;
        }
        // fraction < 1e20 and per_unit < 4e16, so the product stays far below u128::MAX.
        term += fraction * per_unit / scale;
        total = total.checked_add(term).ok_or_else(out_of_range)?;
        if total > MAX_NANOS {
            return Err(out_of_range());
        }
        rest = after_unit;
    }
    let nanos = u64::try_from(total).map_err(|_| DurationError::OutOfRange(s.to_owned()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats a duration as protobuf's JSON mapping does: seconds with up to nine fraction digits,
/// trailing zeros trimmed, and an `s` suffix (`"3600s"`, `"1.5s"`, `"0.000001s"`).
pub fn format_proto_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let nanos = d.subsec_nanos();
    if nanos == 0 {
        return format!("{secs}s");
    }
    let fraction = format!("{nanos:09}");
    format!("{secs}.{}s", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const NS: u64 = 1;
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    const M: u64 = 60 * S;
    const H: u64 = 60 * M;
    const D: u64 = 24 * H;

    /// `Ok(nanos)` or the expected error message.
    fn check(input: &str, expected: Result<u64, &str>) {
        let got = parse_duration(input)
            .map(|d| u64::try_from(d.as_nanos()).expect("parsed durations fit in u64"))
            .map_err(|e| e.to_string());
        assert_eq!(got, expected.map_err(str::to_owned), "input {input:?}");
    }

    #[test]
    fn parses_go_durations() {
        check("0", Ok(0));
        check("+0", Ok(0));
        check("0s", Ok(0));
        check("5m", Ok(5 * M));
        check("100ms", Ok(100 * MS));
        check("1h30m", Ok(H + 30 * M));
        check("3600s", Ok(3600 * S));
        check("1.5h", Ok(H + 30 * M));
        check(".5s", Ok(S / 2));
        check("1.s", Ok(S));
        check("+5s", Ok(5 * S));
        check("10ns", Ok(10 * NS));
        check("7us", Ok(7 * US));
        check("7\u{b5}s", Ok(7 * US));
        check("7\u{3bc}s", Ok(7 * US));
        check("1h1m1s1ms1us1ns", Ok(H + M + S + MS + US + NS));
        check("8760h", Ok(8760 * H));
        check("0.000000001s", Ok(1));
        check("0.0000000019s", Ok(1)); // truncated below a nanosecond, as Go does
        check("1.000000000000000000000000001s", Ok(S)); // digits past the scale are ignored
        check("2562047h47m16.854775807s", Ok(i64::MAX as u64));
    }

    #[test]
    fn parses_extended_units() {
        check("1d", Ok(D));
        check("2w", Ok(14 * D));
        check("1mo", Ok(30 * D));
        check("1y", Ok(365 * D));
        check("1y2mo3w4d5h", Ok(365 * D + 60 * D + 21 * D + 4 * D + 5 * H));
        check("1.5d", Ok(36 * H));
    }

    #[test]
    #[rustfmt::skip] // one case per line
    fn rejects_malformed_durations() {
        check("", Err("invalid duration \"\""));
        check("5", Err("missing unit in duration \"5\""));
        check("1h5", Err("missing unit in duration \"1h5\""));
        check("1.5", Err("missing unit in duration \"1.5\""));
        check("-5m", Err("negative duration \"-5m\" is not allowed"));
        check("-0", Err("negative duration \"-0\" is not allowed"));
        check("+", Err("invalid duration \"+\""));
        check("s", Err("invalid duration \"s\""));
        check(".s", Err("invalid duration \".s\""));
        check(
            "1h-5m",
            Err("unknown unit \"h-\" in duration \"1h-5m\" (valid units: ns, us, ms, s, m, h, d, w, mo, y)"),
        );
        check("5x", Err("unknown unit \"x\" in duration \"5x\" (valid units: ns, us, ms, s, m, h, d, w, mo, y)"));
        check("5 m", Err("unknown unit \" m\" in duration \"5 m\" (valid units: ns, us, ms, s, m, h, d, w, mo, y)"));
        check("5M", Err("unknown unit \"M\" in duration \"5M\" (valid units: ns, us, ms, s, m, h, d, w, mo, y)"));
        check("5sec", Err("unknown unit \"sec\" in duration \"5sec\" (valid units: ns, us, ms, s, m, h, d, w, mo, y)"));
        check("2562047h47m16.854775808s", Err("duration \"2562047h47m16.854775808s\" is out of range"));
        check("300000y", Err("duration \"300000y\" is out of range"));
        check(
            "99999999999999999999999999999999999999999h",
            Err("duration \"99999999999999999999999999999999999999999h\" is out of range"),
        );
    }

    fn check_format(nanos: u64, expected: &str) {
        assert_eq!(format_proto_duration(Duration::from_nanos(nanos)), expected, "{nanos}ns");
    }

    #[test]
    fn formats_protobuf_json_durations() {
        check_format(0, "0s");
        check_format(3600 * S, "3600s");
        check_format(S + S / 2, "1.5s");
        check_format(US, "0.000001s");
        check_format(1, "0.000000001s");
        check_format(MS * 10, "0.01s");
        check_format(8760 * H, "31536000s");
        check_format(S + 123_456_789, "1.123456789s");
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,24}") {
            let _ = parse_duration(&s);
        }

        #[test]
        fn nanoseconds_round_trip(nanos in 0u64..=i64::MAX as u64) {
            prop_assert_eq!(parse_duration(&format!("{nanos}ns")), Ok(Duration::from_nanos(nanos)));
        }

        #[test]
        fn proto_form_round_trips(nanos in 0u64..=i64::MAX as u64) {
            let d = Duration::from_nanos(nanos);
            prop_assert_eq!(parse_duration(&format_proto_duration(d)), Ok(d));
        }
    }
}
