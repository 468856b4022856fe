//! Value parsers for flags: times, durations, days.

/// Parses unix seconds or an RFC 3339 timestamp.
pub fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(n) = s.parse::<i64>() {
        return Ok(n);
    }
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .map_err(|e| format!("{s:?} is neither unix seconds nor RFC 3339 ({e})"))
}

/// Parses a duration: a number with a unit s, m, h or d (plain numbers are seconds).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 's')) => (&s[..i], 1),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 'h')) => (&s[..i], 3600),
        Some((i, 'd')) => (&s[..i], 86_400),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .map(|n| n * mult)
        .map_err(|_| format!("{s:?} is not a duration (e.g. 300s, 5m, 1h, 3d)"))
}

/// A duration as `parse_duration` reads it back: the largest unit that divides it (`30s`,
/// `5m`, `1h`, `3d`; `0s`).
pub fn format_duration(secs: u64) -> String {
    match [(86_400, 'd'), (3600, 'h'), (60, 'm')]
        .into_iter()
        .find(|(unit, _)| secs > 0 && secs.is_multiple_of(*unit))
    {
        Some((unit, suffix)) => format!("{}{suffix}", secs / unit),
        None => format!("{secs}s"),
    }
}

/// Parses BACKFILL_DAYS: a plain number is days (Finout's form), else a duration.
pub fn parse_days(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(days) => Ok(days * 86_400),
        Err(_) => parse_duration(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_they_are_written() {
        for (secs, text) in [
            (0, "0s"),
            (30, "30s"),
            (90, "90s"),
            (300, "5m"),
            (3600, "1h"),
            (5400, "90m"),
            (259_200, "3d"),
        ] {
            assert_eq!(format_duration(secs), text);
            assert_eq!(parse_duration(text), Ok(secs));
        }
    }

    #[test]
    fn times_and_durations() {
        assert_eq!(parse_time("1761868800").unwrap(), 1_761_868_800);
        assert_eq!(parse_time("2025-10-31T00:00:00Z").unwrap(), 1_761_868_800);
        assert!(parse_time("yesterday").unwrap_err().contains("RFC 3339"));
        assert_eq!(parse_duration("5m").unwrap(), 300);
        assert_eq!(parse_duration("300").unwrap(), 300);
        assert_eq!(parse_days("3").unwrap(), 3 * 86_400);
        assert_eq!(parse_days("3d").unwrap(), 3 * 86_400);
        assert_eq!(parse_days("72h").unwrap(), 3 * 86_400);
        assert!(parse_days("3 weeks").is_err());
    }
}
