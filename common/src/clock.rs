//! Wall-clock time as the store and the wire see it: Unix nanoseconds, rendered as RFC 3339 UTC.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Nanoseconds since the Unix epoch, UTC. i64 covers the years 1677–2262.
pub type Nanos = i64;

pub const NANOS_PER_SEC: i64 = 1_000_000_000;

pub fn now() -> Nanos {
    let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

pub fn secs(t: Nanos) -> i64 {
    t.div_euclid(NANOS_PER_SEC)
}

pub fn from_duration(d: std::time::Duration) -> Nanos {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

/// RFC 3339 in UTC with `Z`, fractional seconds only when non-zero (protojson style).
pub fn format_rfc3339(t: Nanos) -> String {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(t)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    dt.format(&Rfc3339).unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

pub fn parse_rfc3339(s: &str) -> Option<Nanos> {
    let dt = OffsetDateTime::parse(s, &Rfc3339).ok()?;
    i64::try_from(dt.unix_timestamp_nanos()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_767_225_600 * NANOS_PER_SEC), "2026-01-01T00:00:00Z");
        assert_eq!(format_rfc3339(1_767_225_600 * NANOS_PER_SEC + 500_000_000), "2026-01-01T00:00:00.5Z");
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00.5Z"), Some(1_767_225_600 * NANOS_PER_SEC + 500_000_000));
        assert_eq!(secs(-1), -1);
    }
}
