//! Time in one place: unix seconds in the pipeline, milliseconds on the wire, UTC calendar
//! dates in object keys (through `jiff`, never hand-written calendar arithmetic).

use jiff::civil::Date;
use jiff::tz::TimeZone;

/// `t` (unix seconds) as RFC 3339 in UTC, for logs and the state file; the number itself when
/// it is outside the calendar's range.
pub fn rfc3339(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

/// The UTC calendar date of `t` (unix seconds).
pub fn utc_date(t: i64) -> Date {
    match jiff::Timestamp::from_second(t) {
        Ok(ts) => ts.to_zoned(TimeZone::UTC).date(),
        // out of the calendar's range (years ±9999): clamp, keys stay well-formed
        Err(_) if t < 0 => Date::MIN,
        Err(_) => Date::MAX,
    }
}

/// The first second (unix seconds) of a UTC calendar date.
pub fn day_start(d: Date) -> i64 {
    d.to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp().as_second())
        .unwrap_or(if d.year() < 0 { i64::MIN } else { i64::MAX })
}

/// The window starts in `[from, to)`: multiples of `time_frame`.
pub fn window_starts(from: i64, to: i64, time_frame: i64) -> Vec<i64> {
    let first = from.div_euclid(time_frame) * time_frame;
    let first = if first < from {
        first + time_frame
    } else {
        first
    };
    (0..)
        .map(|k| first + k * time_frame)
        .take_while(|&w| w < to)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_start_on_multiples_of_the_time_frame() {
        assert_eq!(window_starts(0, 7200, 3600), vec![0, 3600]);
        assert_eq!(window_starts(1, 7201, 3600), vec![3600, 7200]);
        assert_eq!(window_starts(3600, 3600, 3600), Vec::<i64>::new());
        assert_eq!(window_starts(-1, 1, 3600), vec![0]);
    }

    #[test]
    fn calendar_dates_in_utc() {
        // 2025-10-05T00:00Z and the second before it
        assert_eq!(utc_date(1_759_622_400), jiff::civil::date(2025, 10, 5));
        assert_eq!(utc_date(1_759_622_399), jiff::civil::date(2025, 10, 4));
        assert_eq!(day_start(jiff::civil::date(2025, 10, 5)), 1_759_622_400);
        assert_eq!(utc_date(-1), jiff::civil::date(1969, 12, 31));
        assert_eq!(rfc3339(1_759_622_400), "2025-10-05T00:00:00Z");
    }
}
