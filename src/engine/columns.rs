//! The metadata columns of a telemetry entry: the labels of its outermost `by (...)`
//! aggregation. Checked on the expression's syntax tree, so the same rule holds for every
//! source (the HTTP source sends expressions the in-process engine does not support).

use promql_parser::parser::{self, Expr, LabelModifier};

/// Finout's S3 telemetry format allows at most this many metadata columns.
pub const MAX_COLUMNS: usize = 10;

/// The labels of `expr`'s outermost aggregation's `by (...)`, sorted and without repeats: the
/// only labels its output series can carry, so they are the CSV's metadata columns.
/// Parentheses, and arithmetic or comparisons with a number (`/ 3600`), may wrap the
/// aggregation: they keep its labels. Why an expression does not qualify is the error.
pub fn by_labels(expr: &str) -> Result<Vec<String>, String> {
    let ast = parser::parse(expr).map_err(|e| format!("cannot parse: {e}"))?;
    let mut node = &ast;
    let agg = loop {
        match node {
            Expr::Paren(p) => node = &p.expr,
            Expr::Unary(u) => node = &u.expr,
            Expr::Binary(b) => match (number(&b.lhs), number(&b.rhs)) {
                (true, false) => node = &b.rhs,
                (false, true) => node = &b.lhs,
                _ => {
                    return Err(not_an_aggregation("a binary operation between two vectors"));
                }
            },
            Expr::Aggregate(a) => break a,
            Expr::Call(c) => return Err(not_an_aggregation(&format!("{}()", c.func.name))),
            Expr::VectorSelector(_) => return Err(not_an_aggregation("a selector")),
            _ => return Err(not_an_aggregation("this expression")),
        }
    };
    let op = agg.op.to_string();
    if matches!(
        op.as_str(),
        "topk" | "bottomk" | "count_values" | "limitk" | "limit_ratio"
    ) {
        return Err(format!(
            "{op}() keeps or adds labels beyond its by (...), so the CSV's columns are unknown ahead: use sum, min, max, avg, count, group, stddev, stdvar or quantile"
        ));
    }
    let mut labels = match &agg.modifier {
        None => Vec::new(),
        Some(LabelModifier::Include(l)) => l.labels.clone(),
        Some(LabelModifier::Exclude(_)) => {
            return Err(format!(
                "{op} without (...) keeps labels unknown ahead: name the CSV's metadata columns with {op} by (...)"
            ));
        }
    };
    labels.sort();
    labels.dedup();
    if labels.len() > MAX_COLUMNS {
        return Err(format!(
            "by (...) names {} labels; Finout's telemetry CSV takes at most {MAX_COLUMNS} metadata columns",
            labels.len()
        ));
    }
    for l in &labels {
        let word = l.chars().next().is_some_and(|c| !c.is_ascii_digit())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !word {
            return Err(format!(
                "label {l:?} cannot be a CSV column header (letters, digits and underscores only; Finout's headers must not include spaces)"
            ));
        }
        if l == "date" {
            return Err(
                "label `date` would repeat Finout's date column: rename it with label_replace inside the aggregation"
                    .into(),
            );
        }
    }
    Ok(labels)
}

fn not_an_aggregation(found: &str) -> String {
    format!(
        "the outermost operation must be an aggregation with by (...) naming the CSV's metadata columns (at most {MAX_COLUMNS}), e.g. sum by (namespace) (...); found {found}"
    )
}

fn number(e: &Expr) -> bool {
    match e {
        Expr::NumberLiteral(_) => true,
        Expr::Paren(p) => number(&p.expr),
        Expr::Unary(u) => number(&u.expr),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_the_outer_by_labels() {
        let ok = |e: &str| by_labels(e).unwrap_or_else(|err| panic!("{e}: {err}"));
        assert_eq!(
            ok("sum by (namespace) (increase(container_network_receive_bytes_total[1d]))"),
            vec!["namespace"]
        );
        assert_eq!(
            ok("sum by (namespace, cluster) (increase(x[1d])) / 3600"),
            vec!["cluster", "namespace"]
        );
        assert_eq!(
            ok("(2 * (count by (cluster) (max by (cluster, namespace, pod) (kube_pod_info))))"),
            vec!["cluster"]
        );
        assert_eq!(ok("sum(x)"), Vec::<String>::new());
        assert_eq!(ok("sum by (b, a, b) (x)"), vec!["a", "b"]);
        assert_eq!(ok("quantile by (a) (0.9, x)"), vec!["a"]);
    }

    #[test]
    fn anything_else_says_why() {
        let err = |e: &str| by_labels(e).unwrap_err();
        assert!(err("rate(x[5m])").contains("found rate()"));
        assert!(err("x").contains("found a selector"));
        assert!(err("sum by (a) (x) / sum by (a) (y)").contains("two vectors"));
        assert!(err("sum without (pod) (x)").contains("sum by (...)"));
        assert!(err("topk by (a) (3, x)").contains("topk()"));
        assert!(err("sum by (date) (x)").contains("date"));
        assert!(err("sum by (").starts_with("cannot parse"));
        let eleven = format!(
            "sum by ({}) (x)",
            (0..11)
                .map(|i| format!("l{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert!(err(&eleven).contains("at most 10"), "{}", err(&eleven));
        let ten = format!(
            "sum by ({}) (x)",
            (0..10)
                .map(|i| format!("l{i}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(by_labels(&ten).unwrap().len(), 10);
    }
}
