//! Times as people read them: ISO 8601 in UTC for human output and arguments, Unix seconds in
//! JSON (the `time` crate's RFC 3339).

use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};

/// Unix seconds from ISO 8601 UTC: a full RFC 3339 time (`2026-12-07T15:00:00Z`, any offset)
/// or a date alone (`2026-12-07`, its midnight UTC). None when it is neither, or before 1970.
pub fn parse_iso8601(text: &str) -> Option<u64> {
    let at = match OffsetDateTime::parse(text, &Rfc3339) {
        Ok(at) => at,
        Err(_) => {
            let format = time::macros::format_description!("[year]-[month]-[day]");
            Date::parse(text, &format).ok()?.midnight().assume_utc()
        }
    };
    u64::try_from(at.unix_timestamp()).ok()
}

pub use remembrancer_core::times::iso8601;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_times_and_dates_round_trip_through_unix_seconds() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("2026-12-07T15:00:00Z"), Some(1_796_655_600));
        assert_eq!(parse_iso8601("2026-12-07T16:00:00+01:00"), Some(1_796_655_600));
        assert_eq!(parse_iso8601("2026-12-07"), Some(1_796_601_600));
        assert_eq!(iso8601(1_796_655_600), "2026-12-07T15:00:00Z");
        for bad in ["yesterday", "2026-13-01", "1969-12-31T23:59:59Z", ""] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
