//! Sharding across pods: shard `i` of `N` owns the clusters whose name hashes to `i`, so each
//! cluster folder is written by exactly one pod, whatever set of clusters each pod happens to
//! discover (ownership depends on the name alone, not on a list every pod must agree on).

use std::fmt;

/// Shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// FNV-1a, 64 bit: stable across versions and platforms, unlike std's hasher.
fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Shard {
    /// Parses `i/N` with `0 <= i < N`.
    pub fn parse(s: &str) -> Result<Shard, String> {
        let (i, n) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a shard: write i/N, e.g. 0/3"))?;
        let index: u32 = i
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: the shard index {i:?} is not a number"))?;
        let count: u32 = n
            .trim()
            .parse()
            .map_err(|_| format!("{s:?}: the shard count {n:?} is not a number"))?;
        if count == 0 || index >= count {
            return Err(format!(
                "{s:?}: the shard index must be below the shard count (0/{count} to {}/{count})",
                count.saturating_sub(1)
            ));
        }
        Ok(Shard { index, count })
    }

    /// The shard of an Indexed Job's pod: `JOB_COMPLETION_INDEX` (set by Kubernetes) of
    /// `JOB_COMPLETIONS` (set by the manifest to the Job's `completions`).
    pub fn from_job_env(
        index: Option<&str>,
        completions: Option<&str>,
    ) -> Option<Result<Shard, String>> {
        match (index, completions) {
            (Some(i), Some(n)) => Some(Shard::parse(&format!("{i}/{n}"))),
            (Some(i), None) => Some(Err(format!(
                "JOB_COMPLETION_INDEX={i} is set but JOB_COMPLETIONS is not: set JOB_COMPLETIONS to the Job's completions, or SHARD=i/N"
            ))),
            _ => None,
        }
    }

    /// Whether this shard writes the folder of `cluster`.
    pub fn owns(&self, cluster: &str) -> bool {
        self.count <= 1 || fnv1a(cluster) % u64::from(self.count) == u64::from(self.index)
    }

    /// `(index, count)` for state keys.
    pub fn pair(&self) -> (u32, u32) {
        (self.index, self.count)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// The anchored regex value (Prometheus matchers are anchored) matching exactly `values`;
/// an empty alternative also matches series without the label.
pub fn alternatives(values: &[&str], include_empty: bool) -> String {
    let mut alts: Vec<String> = values.iter().map(|v| regex::escape(v)).collect();
    if include_empty {
        alts.push(String::new());
    }
    alts.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_env() {
        assert_eq!(Shard::parse("1/3"), Ok(Shard { index: 1, count: 3 }));
        assert!(Shard::parse("3/3").unwrap_err().contains("below"));
        assert!(Shard::parse("0/0").is_err());
        assert!(Shard::parse("two").unwrap_err().contains("i/N"));
        assert_eq!(
            Shard::from_job_env(Some("2"), Some("4")),
            Some(Ok(Shard { index: 2, count: 4 }))
        );
        assert!(
            Shard::from_job_env(Some("2"), None)
                .unwrap()
                .unwrap_err()
                .contains("JOB_COMPLETIONS")
        );
        assert_eq!(Shard::from_job_env(None, Some("4")), None);
    }

    #[test]
    fn every_cluster_has_exactly_one_owner() {
        for n in 1..=7 {
            for c in ["a", "b", "home", "prod-eu-1", "staging", ""] {
                let owners = (0..n)
                    .filter(|&i| Shard { index: i, count: n }.owns(c))
                    .count();
                assert_eq!(owners, 1, "{c} with {n} shards");
            }
        }
        // the hash is fixed: a change would move clusters between shards of running jobs
        assert_eq!(fnv1a(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a("a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn regex_alternatives() {
        assert_eq!(alternatives(&["a", "b.c"], false), r"a|b\.c");
        assert_eq!(alternatives(&["a"], true), "a|");
        assert_eq!(alternatives(&[], true), "");
    }
}
