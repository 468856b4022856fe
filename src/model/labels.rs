//! Label sets and matchers with Prometheus' semantics: an empty value is an absent label,
//! label sets order like `labels.Compare`, regexes are fully anchored.

use std::fmt;

use regex::Regex;

/// The metric name label.
pub const METRIC_NAME: &str = "__name__";

/// A label set sorted by name, without empty values.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// Builds a label set from pairs in any order; empty values are dropped. A name given
    /// twice keeps its last value.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let mut v: Vec<(String, String)> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        // keep the last of equal names: reverse, dedup keeps the first, reverse back
        v.reverse();
        v.dedup_by(|a, b| a.0 == b.0);
        v.reverse();
        v.retain(|(_, val)| !val.is_empty());
        Labels(v)
    }

    /// The value of `name`, `""` when absent.
    pub fn get(&self, name: &str) -> &str {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) => &self.0[i].1,
            Err(_) => "",
        }
    }

    /// The pairs, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `name` to `value` (removes it when `value` is empty).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
    }

    /// A copy without the named labels.
    pub fn without(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| !names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        )
    }

    /// A copy with only the named labels.
    pub fn only(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| names.iter().any(|n| n == k))
                .cloned()
                .collect(),
        )
    }

    /// A copy without the metric name.
    pub fn without_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| k != METRIC_NAME)
                .cloned()
                .collect(),
        )
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
