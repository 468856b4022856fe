//! Finout's object keys, both ways: built for the files the exporter writes, and read back by
//! retention, which must recognise exactly the keys of this form and nothing else.
//!
//! `<prefix>/<cluster>/end=<YYYYMMDD>/day=<D>/metric=<metric>/<T>_<metric>.json.gz`: `end` is
//! the first day of the month after T's (the billing period's end, as in AWS CUR), `day` is
//! T's day of the month without padding, T the window start in unix seconds (UTC).

use jiff::ToSpan;
use jiff::civil::Date;

use crate::time::utc_date;

/// The folder of one cluster, `<prefix>/<cluster>/`: its files, and the state of the exporter
/// whose CLUSTER_NAME it is. Slashes around the prefix are not doubled; an empty prefix puts
/// the folder at the top.
pub fn cluster_folder(prefix: &str, cluster: &str) -> String {
    match prefix.trim_matches('/') {
        "" => format!("{cluster}/"),
        p => format!("{p}/{cluster}/"),
    }
}

/// The key of a window's file. `t` is the window start, unix seconds (UTC).
pub fn object_key(prefix: &str, cluster: &str, metric: &str, t: i64) -> String {
    let date = utc_date(t);
    // the billing period ends on the first day of the next month, as in AWS CUR
    let end = date
        .first_of_month()
        .checked_add(1.month())
        .unwrap_or(Date::MAX);
    format!(
        "{}end={:04}{:02}01/day={}/metric={metric}/{t}_{metric}.json.gz",
        cluster_folder(prefix, cluster),
        end.year(),
        end.month(),
        date.day()
    )
}

/// `end=YYYYMMDD` → the first day of the billing month it closes.
pub fn billing_month(segment: &str) -> Option<Date> {
    let digits = segment.strip_prefix("end=")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) || &digits[6..] != "01" {
        return None;
    }
    let end = Date::new(digits[..4].parse().ok()?, digits[4..6].parse().ok()?, 1).ok()?;
    end.checked_sub(1.month()).ok()
}

/// `day=D` below a billing month's `end=` → that date.
pub fn partition_day(month: Date, segment: &str) -> Option<Date> {
    let d: i8 = segment.strip_prefix("day=")?.parse().ok()?;
    Date::new(month.year(), month.month(), d).ok()
}

/// `<T>_<metric>.json.gz` under `metric=<metric>/` → T.
pub fn window_of_key(key: &str) -> Option<i64> {
    let mut parts = key.rsplit('/');
    let file = parts.next()?;
    let metric = parts.next()?.strip_prefix("metric=")?;
    let t = file
        .strip_suffix(".json.gz")?
        .strip_suffix(metric)?
        .strip_suffix('_')?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// The last segment of a listed prefix (`a/b/day=5/` → `day=5`).
pub fn last_segment(prefix: &str) -> &str {
    let p = prefix.strip_suffix('/').unwrap_or(prefix);
    &p[p.rfind('/').map_or(0, |i| i + 1)..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_across_day_and_month_boundaries() {
        // 2025-10-05T00:00Z
        assert_eq!(
            object_key("k8s/prometheus", "c1", "cpu_requests", 1_759_622_400),
            "k8s/prometheus/c1/end=20251101/day=5/metric=cpu_requests/1759622400_cpu_requests.json.gz"
        );
        // 2025-10-31T23:00Z and the next hour, 2025-11-01T00:00Z
        assert_eq!(
            object_key("p", "a", "m", 1_761_951_600),
            "p/a/end=20251101/day=31/metric=m/1761951600_m.json.gz"
        );
        assert_eq!(
            object_key("p/", "a", "m", 1_761_955_200),
            "p/a/end=20251201/day=1/metric=m/1761955200_m.json.gz"
        );
        // December rolls into January of the next year; leap day
        assert_eq!(
            object_key("p", "a", "m", 1_767_222_000),
            "p/a/end=20260101/day=31/metric=m/1767222000_m.json.gz"
        );
        // 2024-02-29T12:00Z
        assert_eq!(
            object_key("p", "a", "m", 1_709_208_000),
            "p/a/end=20240301/day=29/metric=m/1709208000_m.json.gz"
        );
    }

    #[test]
    fn cluster_folders() {
        assert_eq!(cluster_folder("k8s/prometheus/", "a"), "k8s/prometheus/a/");
        assert_eq!(cluster_folder("/p", "a"), "p/a/");
        assert_eq!(cluster_folder("", "a"), "a/");
    }

    #[test]
    fn partitions_and_keys() {
        // end=20251101 closes October 2025
        assert_eq!(
            billing_month("end=20251101"),
            Some(jiff::civil::date(2025, 10, 1))
        );
        assert_eq!(
            billing_month("end=20260101"),
            Some(jiff::civil::date(2025, 12, 1))
        );
        assert_eq!(billing_month("end=2025110"), None);
        assert_eq!(billing_month("end=20251102"), None);
        assert_eq!(billing_month("other"), None);
        assert_eq!(
            partition_day(jiff::civil::date(2025, 10, 1), "day=31"),
            Some(jiff::civil::date(2025, 10, 31))
        );
        assert_eq!(
            partition_day(jiff::civil::date(2025, 11, 1), "day=31"),
            None
        );
        assert_eq!(
            window_of_key("p/a/end=20251101/day=5/metric=cpu_usage/1759622400_cpu_usage.json.gz"),
            Some(1_759_622_400)
        );
        assert_eq!(
            window_of_key("p/a/end=20251101/day=5/metric=cpu_usage/notes.txt"),
            None
        );
        assert_eq!(
            window_of_key("p/a/end=20251101/day=5/metric=cpu_usage/1_other.json.gz"),
            None
        );
    }
}
