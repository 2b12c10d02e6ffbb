//! Times as people read them in reports: ISO 8601 in UTC (RFC 3339, the `time` crate's).

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// `seconds` since the Unix epoch as ISO 8601 UTC (`2026-12-07T15:00:00Z`); a time past what
/// the calendar holds is shown as Unix seconds, said so.
pub fn iso8601(seconds: u64) -> String {
    i64::try_from(seconds)
        .ok()
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|at| at.format(&Rfc3339).ok())
        .unwrap_or_else(|| format!("{seconds} (Unix seconds)"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn unix_seconds_read_as_utc() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso8601(1_796_655_600), "2026-12-07T15:00:00Z");
        assert_eq!(super::iso8601(u64::MAX), "18446744073709551615 (Unix seconds)");
    }
}
