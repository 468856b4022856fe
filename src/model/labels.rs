//! Label sets and matchers with Prometheus' semantics: an empty value is an absent label,
//! label sets order like `labels.Compare`, regexes are fully anchored.

use std::fmt;

use regex::Regex;

/// The metric name label.
pub const METRIC_NAME: &str = "__name__";

/// A label set sorted by name, without empty values.
///
/// Held as one text of the names and values end to end and one list of where each ends: two
/// allocations a set, where a `Vec` of `String` pairs took one per name and value. Every
/// series is built, cloned, set aside and read back per window this way, and on two cores the
/// allocator's lock was a fifth of the exporter's time (docs/benchmarks.md, "Exporter CPU").
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels {
    text: Box<str>,
    // per pair, where its name and its value end in `text` (each starts where the previous
    // part ended)
    ends: Box<[(u32, u32)]>,
}

impl Labels {
    /// Builds a label set from pairs in any order; empty values are dropped. A name given
    /// twice keeps its last value.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut v: Vec<(K, V)> = pairs.into_iter().collect();
        // what stores send: sorted, unique, no empty value
        if v.windows(2).all(|w| w[0].0.as_ref() < w[1].0.as_ref())
            && v.iter().all(|(_, val)| !val.as_ref().is_empty())
        {
            return Labels::from_sorted(&v);
        }
        // stable: of equal names, the last given stays last
        v.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        let mut kept: Vec<(&str, &str)> = Vec::with_capacity(v.len());
        for (k, val) in &v {
            match kept.last_mut() {
                Some(last) if last.0 == k.as_ref() => *last = (k.as_ref(), val.as_ref()),
                _ => kept.push((k.as_ref(), val.as_ref())),
            }
        }
        kept.retain(|(_, val)| !val.is_empty());
        Labels::from_sorted(&kept)
    }

    /// From pairs already sorted by name, unique, none with an empty value.
    fn from_sorted<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> Self {
        debug_assert!(pairs.windows(2).all(|w| w[0].0.as_ref() < w[1].0.as_ref()));
        debug_assert!(pairs.iter().all(|(_, v)| !v.as_ref().is_empty()));
        let len = pairs
            .iter()
            .map(|(k, v)| k.as_ref().len() + v.as_ref().len())
            .sum();
        let mut text = String::with_capacity(len);
        let ends = pairs
            .iter()
            .map(|(k, v)| {
                text.push_str(k.as_ref());
                let name_end = text.len() as u32;
                text.push_str(v.as_ref());
                (name_end, text.len() as u32)
            })
            .collect();
        Labels {
            text: text.into_boxed_str(),
            ends,
        }
    }

    fn pair(&self, i: usize) -> (&str, &str) {
        let start = match i {
            0 => 0,
            _ => self.ends[i - 1].1 as usize,
        };
        let (name_end, end) = self.ends[i];
        (
            &self.text[start..name_end as usize],
            &self.text[name_end as usize..end as usize],
        )
    }

    /// The pairs as bytes, sorted by name: `iter` without its checks of character boundaries,
    /// which the ends passed when the set was built (the renderer writes every label of every
    /// file, and the checks were 8 % of its time).
    pub fn iter_bytes(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        let text = self.text.as_bytes();
        let mut start = 0;
        self.ends.iter().map(move |&(name_end, end)| {
            let (name_end, end) = (name_end as usize, end as usize);
            let pair = (&text[start..name_end], &text[name_end..end]);
            start = end;
            pair
        })
    }

    /// The names and values end to end, and where each pair's name and value end in that
    /// text: the form `from_text` takes back (a series set aside on disk).
    pub fn text_and_ends(&self) -> (&str, &[(u32, u32)]) {
        (&self.text, &self.ends)
    }

    /// The label set whose `text_and_ends` these are; `None` when the ends do not cut the
    /// text into pairs (out of order, past its end, inside a character, an empty value).
    pub fn from_text(text: String, ends: Vec<(u32, u32)>) -> Option<Labels> {
        let mut start = 0;
        for &(name_end, end) in &ends {
            let (name_end, end) = (name_end as usize, end as usize);
            let fits = start <= name_end
                && name_end < end
                && end <= text.len()
                && text.is_char_boundary(name_end)
                && text.is_char_boundary(end);
            if !fits {
                return None;
            }
            start = end;
        }
        let labels = Labels {
            text: text.into_boxed_str(),
            ends: ends.into_boxed_slice(),
        };
        debug_assert!(
            labels
                .iter()
                .zip(labels.iter().skip(1))
                .all(|(a, b)| a.0 < b.0),
            "names sorted and unique"
        );
        Some(labels)
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        let (mut lo, mut hi) = (0, self.ends.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let (k, v) = self.pair(mid);
            match k.cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return v,
            }
        }
        ""
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        (0..self.ends.len()).map(|i| self.pair(i))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Sets `name` to `value` (removes it when `value` is empty).
    pub fn set(&mut self, name: &str, value: &str) {
        let mut pairs: Vec<(&str, &str)> = self.iter().filter(|(k, _)| *k != name).collect();
        if !value.is_empty() {
            let at = pairs.partition_point(|(k, _)| *k < name);
            pairs.insert(at, (name, value));
        }
        *self = Labels::from_sorted(&pairs);
    }

    /// A copy keeping the labels whose name passes `keep`.
    pub fn filtered(&self, keep: impl Fn(&str) -> bool) -> Labels {
        let pairs: Vec<(&str, &str)> = self.iter().filter(|(k, _)| keep(k)).collect();
        Labels::from_sorted(&pairs)
    }

    /// A copy without the named labels.
    pub fn without(&self, names: &[String]) -> Labels {
        self.filtered(|k| !names.iter().any(|n| n == k))
    }

    /// A copy with only the named labels.
    pub fn only(&self, names: &[String]) -> Labels {
        self.filtered(|k| names.iter().any(|n| n == k))
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        self.filtered(|k| k != METRIC_NAME)
    }
}

/// As a list of pairs: by the first differing pair, then by length (Prometheus'
/// `labels.Compare` on sets of non-empty values).
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.iter().cmp(other.iter())
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.get(METRIC_NAME);
        f.write_str(name)?;
        f.write_str("{")?;
        let mut first = true;
        for (k, v) in self.iter().filter(|(k, _)| *k != METRIC_NAME) {
            if !first {
                f.write_str(", ")?;
            }
            first = false;
            write!(f, "{k}={v:?}")?;
        }
        f.write_str("}")
    }
}

/// How a matcher compares a label value.
#[derive(Clone, Debug)]
pub enum MatchKind {
    /// `=`
    Eq,
    /// `!=`
    Neq,
    /// `=~`, fully anchored
    Re(Regex),
    /// `!~`, fully anchored
    Nre(Regex),
}

/// One label matcher of a selector.
#[derive(Clone, Debug)]
pub struct Matcher {
    /// The comparison.
    pub kind: MatchKind,
    /// The label name.
    pub name: String,
    /// The value or the regex source as written.
    pub value: String,
}

impl Matcher {
    /// `name = value`.
    pub fn eq(name: &str, value: &str) -> Self {
        Matcher {
            kind: MatchKind::Eq,
            name: name.to_string(),
            value: value.to_string(),
        }
    }

    /// A regex matcher; `negate` for `!~`. The regex is anchored as Prometheus does:
    /// `^(?s:value)$`.
    pub fn regex(name: &str, value: &str, negate: bool) -> Result<Self, regex::Error> {
        let re = anchored(value)?;
        Ok(Matcher {
            kind: if negate {
                MatchKind::Nre(re)
            } else {
                MatchKind::Re(re)
            },
            name: name.to_string(),
            value: value.to_string(),
        })
    }

    /// Whether a label value (`""` when absent) satisfies the matcher.
    pub fn matches_value(&self, v: &str) -> bool {
        match &self.kind {
            MatchKind::Eq => v == self.value,
            MatchKind::Neq => v != self.value,
            MatchKind::Re(re) => re.is_match(v),
            MatchKind::Nre(re) => !re.is_match(v),
        }
    }

    /// Whether a label set satisfies the matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name))
    }

    /// The operator as PromQL writes it.
    pub fn op(&self) -> &'static str {
        match self.kind {
            MatchKind::Eq => "=",
            MatchKind::Neq => "!=",
            MatchKind::Re(_) => "=~",
            MatchKind::Nre(_) => "!~",
        }
    }

    /// The same matcher, for comparing selectors.
    pub fn key(&self) -> (String, &'static str, String) {
        (self.name.clone(), self.op(), self.value.clone())
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op(), self.value)
    }
}

/// Compiles a regex anchored the way Prometheus anchors matchers and label_replace.
pub fn anchored(re: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?s:{re})$"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_set_is_rebuilt_from_its_text_and_ends_and_nothing_else() {
        let l = Labels::from_pairs([("__name__", "up"), ("pod", "ä-1"), ("a", "x")]);
        let (text, ends) = l.text_and_ends();
        assert_eq!(
            Labels::from_text(text.into(), ends.to_vec()),
            Some(l.clone())
        );
        assert_eq!(
            Labels::from_text(String::new(), Vec::new()),
            Some(Labels::default())
        );
        for bad in [
            vec![(2, 1)],         // a name ending after its value
            vec![(1, 1)],         // an empty value
            vec![(1, 99)],        // past the end
            vec![(1, 3), (2, 5)], // a pair starting before the previous one ends
        ] {
            assert_eq!(
                Labels::from_text("abcdef".into(), bad.clone()),
                None,
                "{bad:?}"
            );
        }
        // inside `ä` (two bytes, from 1)
        assert_eq!(Labels::from_text("aäb".into(), vec![(2, 4)]), None);
    }

    #[test]
    fn empty_value_is_absent() {
        let l = Labels::from_pairs([("a", "1"), ("b", ""), ("c", "3")]);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get("b"), "");
        assert!(Matcher::eq("b", "").matches(&l));
        assert!(Matcher::eq("zz", "").matches(&l));
        assert!(!Matcher::regex("b", ".+", false).unwrap().matches(&l));
    }

    #[test]
    fn regexes_are_anchored() {
        let l = Labels::from_pairs([("resource", "nvidia_com_gpu")]);
        assert!(
            Matcher::regex("resource", "nvidia_com_gpu|amd_com_gpu", false)
                .unwrap()
                .matches(&l)
        );
        assert!(
            !Matcher::regex("resource", "nvidia", false)
                .unwrap()
                .matches(&l)
        );
        assert!(
            Matcher::regex("resource", "nvidia", true)
                .unwrap()
                .matches(&l)
        );
    }

    #[test]
    fn order_is_prometheus_order() {
        // labels.Compare: pairwise by name then value, a prefix sorts first
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "1"), ("b", "0")]);
        let c = Labels::from_pairs([("a", "2")]);
        let d = Labels::from_pairs([("b", "0")]);
        let mut v = vec![d.clone(), c.clone(), b.clone(), a.clone()];
        v.sort();
        assert_eq!(v, vec![a, b, c, d]);
    }

    #[test]
    fn set_and_without() {
        let mut l = Labels::from_pairs([("__name__", "x"), ("job", "j"), ("pod", "p")]);
        l.set("node", "n");
        l.set("job", "");
        assert_eq!(l.to_string(), r#"x{node="n", pod="p"}"#);
        assert_eq!(l.without_name().get(METRIC_NAME), "");
        assert_eq!(l.only(&["pod".into()]).len(), 1);
        assert_eq!(l.without(&["pod".into()]).len(), 2);
    }
}
