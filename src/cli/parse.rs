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

const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3600), ('m', 60), ('s', 1)];

/// Parses a duration: numbers with a unit s, m, h or d, largest first as Go writes them
/// (`5h30m`; plain numbers are seconds).
pub fn parse_duration(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let bad = || format!("{s:?} is not a duration (e.g. 300s, 5m, 1h, 5h30m, 3d)");
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    if s.is_empty() {
        return Err(bad());
    }
    let (mut total, mut rest, mut smallest) = (0u64, s, u64::MAX);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let (_, mult) = *UNITS.iter().find(|(u, _)| *u == unit).ok_or_else(bad)?;
        // each unit once, largest first: `30m5h` is more likely a typo than a duration
        if mult >= smallest {
            return Err(bad());
        }
        smallest = mult;
        total = n
            .checked_mul(mult)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(total)
}

/// A duration as `parse_duration` reads it back, in whole units largest first (`30s`,
/// `1m30s`, `5h30m`, `3d`; `0s`).
pub fn format_duration(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut rest = secs;
    let mut out = String::new();
    for (unit, mult) in UNITS {
        if rest >= mult {
            out.push_str(&format!("{}{unit}", rest / mult));
            rest %= mult;
        }
    }
    out
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
            (90, "1m30s"),
            (300, "5m"),
            (3600, "1h"),
            (5400, "1h30m"),
            (19_800, "5h30m"),
            (259_200, "3d"),
            (93_784, "1d2h3m4s"),
        ] {
            assert_eq!(format_duration(secs), text);
            assert_eq!(parse_duration(text), Ok(secs));
        }
    }

    #[test]
    fn durations_are_read_as_go_writes_them() {
        for (text, secs) in [
            ("90s", 90),
            ("90m", 5400),
            ("330m", 19_800),
            ("1h30m", 5400),
        ] {
            assert_eq!(parse_duration(text), Ok(secs), "{text}");
        }
        for text in ["", "h", "5x", "5h5h", "30m5h", "1.5h", "-5m", "5 h"] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.contains("is not a duration"), "{text}: {e}");
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
