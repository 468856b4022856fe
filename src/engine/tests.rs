//! The engine against Prometheus' results, function by function.

use super::*;
use crate::catalog::{Catalog, Entry};
use crate::model::{Labels, STALE_NAN_BITS, Sample, Series, Steps};

const MIN: i64 = 60_000;

fn l(pairs: &[(&str, &str)]) -> Labels {
    Labels::from_pairs(pairs.iter().copied())
}

fn eval(expr: &str, steps: Steps, input: &[(Labels, Vec<Sample>)]) -> Vec<Series> {
    let plan = Plan::compile(expr).unwrap();
    let mut e = plan.evaluator(steps, 5 * MIN);
    for (labels, s) in input {
        if plan.matches(labels) {
            e.push(labels, s).unwrap();
        }
    }
    e.finish().unwrap()
}

fn every(start: i64, step: i64, n: usize, f: impl Fn(usize) -> f64) -> Vec<Sample> {
    (0..n).map(|i| (start + step * i as i64, f(i))).collect()
}

#[test]
fn unsupported_constructs_are_named() {
    for (expr, what) in [
        ("topk(3, x)", "topk"),
        ("x / y", "two vectors"),
        ("rate(x[5m] offset 1h)", "offset"),
        ("histogram_quantile(0.9, x)", "histogram_quantile"),
        ("max_over_time(rate(x[5m])[1h:])", "subquer"),
        ("x > 1", ">"),
        ("-x", "unary"),
        ("x @ 100", "@"),
    ] {
        let err = Plan::compile(expr).unwrap_err().to_string();
        assert!(err.contains(what), "{expr}: {err}");
        assert!(err.contains("--source http"), "{expr}: {err}");
    }
    assert!(matches!(
        Plan::compile("sum(").unwrap_err(),
        CompileError::Parse(_)
    ));
}

#[test]
fn select_range_matches_prometheus() {
    let steps = Steps {
        start: 3_600_000,
        step: MIN,
        n: 60,
    };
    let p = Plan::compile("max(x)").unwrap();
    assert_eq!(p.select_range(&steps, 5 * MIN), (3_300_001, 7_140_000));
    let p = Plan::compile("rate(x[10m])").unwrap();
    assert_eq!(p.select_range(&steps, 5 * MIN), (3_000_001, 7_140_000));
    assert!(p.counter_func);
    assert!(!Plan::compile("max_over_time(x[10m])").unwrap().counter_func);
    assert!(Plan::compile("sum(rate(x[5m]))").unwrap().counter_func);
    // the hint is the function nearest the selector; a binary expression above it does
    // not matter, one between them does
    assert!(Plan::compile("rate(x[5m]) * 2").unwrap().counter_func);
    assert!(!Plan::compile("sum(x * 2)").unwrap().counter_func);
}

#[test]
fn lookback_and_staleness() {
    let steps = Steps {
        start: 10 * MIN,
        step: MIN,
        n: 10,
    };
    // samples every minute until 11:00, then a staleness marker at 13:30
    let mut s = every(0, MIN, 12, |i| i as f64);
    s.push((13 * MIN + 30_000, f64::from_bits(STALE_NAN_BITS)));
    let out = eval("x", steps, &[(l(&[("__name__", "x")]), s.clone())]);
    let v = &out[0].values;
    assert_eq!(v[0], Some(10.0));
    assert_eq!(v[1], Some(11.0));
    // 12:00 and 13:00: the sample of 11:00 is within 5 minutes
    assert_eq!(v[2], Some(11.0));
    assert_eq!(v[3], Some(11.0));
    // 14:00: the newest sample is the staleness marker
    assert_eq!(v[4], None);
    // without the marker the series lingers until 16:00 exclusive (lookback is open
    // at its start: a sample exactly 5 minutes old is out)
    s.pop();
    let out = eval("x", steps, &[(l(&[("__name__", "x")]), s)]);
    let v = &out[0].values;
    assert_eq!(v[5], Some(11.0)); // 15:00
    assert_eq!(v[6], None); // 16:00
    assert_eq!(out[0].labels.get("__name__"), "x");
}

#[test]
fn rate_extrapolates_like_prometheus() {
    let steps = Steps {
        start: 10 * MIN,
        step: MIN,
        n: 1,
    };
    // samples at 5:30 .. 10:00 every 30 s, a counter growing 1 per second
    let s = every(5 * MIN + 30_000, 30_000, 10, |i| 100.0 + 30.0 * i as f64);
    let out = eval(
        "rate(x[5m])",
        steps,
        &[(l(&[("__name__", "x")]), s.clone())],
    );
    // (t - 5m, t] holds 10 samples; extrapolated to the window start: exactly 1/s
    assert_eq!(out[0].values[0], Some(1.0));
    assert_eq!(out[0].labels.get("__name__"), "");
    let out = eval(
        "increase(x[5m])",
        steps,
        &[(l(&[("__name__", "x")]), s.clone())],
    );
    assert_eq!(out[0].values[0], Some(300.0));
    // a counter that started from zero inside the window is not extrapolated below zero
    let s0 = every(7 * MIN, 30_000, 7, |i| 30.0 * i as f64);
    let out = eval("increase(x[5m])", steps, &[(l(&[("__name__", "x")]), s0)]);
    let v = out[0].values[0].unwrap();
    // sampled 3 minutes = 180; start side extends to zero (0 s), end side 0 s
    assert_eq!(v, 180.0);
    // a reset: 100, 130, 160, 10, 40 -> increase 160 - 100 + 40 - 0 (after the reset)
    let r = vec![
        (8 * MIN, 100.0),
        (8 * MIN + 30_000, 130.0),
        (9 * MIN, 160.0),
        (9 * MIN + 30_000, 10.0),
        (10 * MIN, 40.0),
    ];
    let out = eval(
        "increase(x[5m])",
        steps,
        &[(l(&[("__name__", "x")]), r.clone())],
    );
    // raw increase 100 over 120 s of samples; start gap 180 s >= 1.1*30 -> extends 15 s
    let want = 100.0 * (120.0 + 15.0 + 0.0) / 120.0;
    assert_eq!(out[0].values[0], Some(want));
    let out = eval(
        "irate(x[5m])",
        steps,
        &[(l(&[("__name__", "x")]), r.clone())],
    );
    assert_eq!(out[0].values[0], Some(1.0));
    let out = eval("delta(x[5m])", steps, &[(l(&[("__name__", "x")]), r)]);
    assert_eq!(out[0].values[0], Some(-60.0 * 135.0 / 120.0));
}

#[test]
fn range_is_left_open() {
    let steps = Steps {
        start: 10 * MIN,
        step: MIN,
        n: 1,
    };
    // a sample exactly at t - 5m is outside (t - 5m, t] in Prometheus 3
    let s = vec![(5 * MIN, 1000.0), (7 * MIN, 5.0), (10 * MIN, 7.0)];
    let x = l(&[("__name__", "x")]);
    let out = eval("count_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
    assert_eq!(out[0].values[0], Some(2.0));
    let out = eval("max_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
    assert_eq!(out[0].values[0], Some(7.0));
    let out = eval("min_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
    assert_eq!(out[0].values[0], Some(5.0));
    let out = eval("sum_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
    assert_eq!(out[0].values[0], Some(12.0));
    let out = eval("avg_over_time(x[5m])", steps, &[(x.clone(), s.clone())]);
    assert_eq!(out[0].values[0], Some(6.0));
    let out = eval(
        "last_over_time(x[5m])",
        steps,
        &[(l(&[("__name__", "x")]), s)],
    );
    assert_eq!(out[0].values[0], Some(7.0));
    assert_eq!(
        out[0].labels.get("__name__"),
        "x",
        "last_over_time keeps the name"
    );
}

#[test]
fn aggregations_group_and_sort() {
    let steps = Steps {
        start: 0,
        step: MIN,
        n: 2,
    };
    let input = vec![
        (
            l(&[("__name__", "m"), ("pod", "b"), ("instance", "i1")]),
            vec![(0, 1.0), (MIN, 2.0)],
        ),
        (
            l(&[("__name__", "m"), ("pod", "a"), ("instance", "i1")]),
            vec![(0, 3.0)],
        ),
        (
            l(&[("__name__", "m"), ("pod", "a"), ("instance", "i2")]),
            vec![(0, 5.0), (MIN, f64::NAN)],
        ),
    ];
    let out = eval("max by (pod) (m)", steps, &input);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].labels, l(&[("pod", "a")]));
    assert_eq!(out[0].values[0], Some(5.0));
    // the sample at 0 of pod a/i1 is within the lookback at step 1: max(3, NaN) = 3
    assert_eq!(out[0].values[1], Some(3.0));
    let out = eval("max without (instance) (m)", steps, &input);
    assert_eq!(out[0].labels, l(&[("pod", "a")]));
    let out = eval("count(m)", steps, &input);
    assert_eq!(out[0].values, vec![Some(3.0), Some(3.0)]);
    let out = eval("sum(m) * 2", steps, &input);
    assert_eq!(out[0].values[0], Some(18.0));
    let out = eval("avg by (pod) (m)", steps, &input);
    assert_eq!(out[0].values[0], Some(4.0));
    let out = eval("sum(max by (pod) (m))", steps, &input);
    assert_eq!(out[0].values[0], Some(6.0));
    let out = eval("min by (pod) (m) / 1e9", steps, &input);
    assert_eq!(out[1].values[0], Some(1e-9));
}

#[test]
fn kahan_sum_matches_prometheus_not_naive() {
    let steps = Steps {
        start: 0,
        step: MIN,
        n: 1,
    };
    let input: Vec<_> = [1e16, 1.0, -1e16]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                l(&[("__name__", "x"), ("i", &i.to_string())]),
                vec![(0, *v)],
            )
        })
        .collect();
    let out = eval("sum(x)", steps, &input);
    assert_eq!(out[0].values[0], Some(1.0), "naive summation would give 0");
}

#[test]
fn label_replace_and_empty_result() {
    let steps = Steps {
        start: 0,
        step: MIN,
        n: 1,
    };
    let input = vec![(
        l(&[("__name__", "x"), ("pod", "web-7d9f-abc")]),
        vec![(0, 1.0)],
    )];
    let out = eval(
        r#"label_replace(x, "app", "$1", "pod", "(.*)-[^-]+-[^-]+")"#,
        steps,
        &input,
    );
    assert_eq!(out[0].labels.get("app"), "web");
    let out = eval(
        r#"label_replace(x, "app", "$1", "pod", "nomatch")"#,
        steps,
        &input,
    );
    assert_eq!(out[0].labels.get("app"), "");
    let out = eval("x", steps, &[]);
    assert!(out.is_empty());
}

#[test]
fn duplicate_labelsets_are_refused() {
    let steps = Steps {
        start: MIN,
        step: MIN,
        n: 1,
    };
    let plan = Plan::compile(r#"rate({__name__=~"a|b"}[5m])"#).unwrap();
    let mut e = plan.evaluator(steps, 5 * MIN);
    let s = vec![(0, 1.0), (MIN, 2.0)];
    e.push(&l(&[("__name__", "a"), ("x", "1")]), &s).unwrap();
    let err = e
        .push(&l(&[("__name__", "b"), ("x", "1")]), &s)
        .unwrap_err();
    assert!(err.to_string().contains("same labelset"));
}

#[test]
fn which_plans_keep_the_cluster_label() {
    let keeps = |e: &str| Plan::compile(e).unwrap().preserves_label("cluster");
    assert!(keeps("max by (cluster, node) (kube_node_info)"));
    assert!(keeps("max without (instance, job) (kube_pod_info)"));
    assert!(keeps("sum by (cluster) (rate(x_total[5m])) * 8"));
    assert!(keeps("kube_pod_info"));
    assert!(!keeps("max(kube_node_info)"));
    assert!(!keeps("sum without (cluster) (kube_node_info)"));
    assert!(!keeps(
        r#"label_replace(kube_node_info, "cluster", "x", "", "")"#
    ));
}

#[test]
fn defaults_compile_with_the_cluster_label() {
    let c = Catalog::default_for("k8s_cluster");
    assert_eq!(c.entries.len(), 19);
    assert!(c.entries[0].expr.starts_with("max by (k8s_cluster, node,"));
    let plans = compile(&c).unwrap();
    assert_eq!(plans.len(), 19);
    assert!(plans[5].counter_func, "cpu_usage is a rate");
}

#[test]
fn unsupported_function_names_the_entry_and_the_fix() {
    let c = Catalog {
        entries: vec![Entry {
            name: "p95".into(),
            expr: "histogram_quantile(0.95, x)".into(),
            step: None,
        }],
        telemetry: Vec::new(),
    };
    let err = compile(&c).unwrap_err().to_string();
    assert!(err.contains("p95"), "{err}");
    assert!(err.contains("histogram_quantile"), "{err}");
    assert!(err.contains("--source http"), "{err}");
    // the HTTP source does not need to compile it
    assert!(c.check(3600).is_ok());
}

/// `expr` at `t` (ms) over one series of raw samples, read with `semantics`.
fn instant(expr: &str, semantics: Semantics, t: i64, samples: &[Sample]) -> Option<f64> {
    let plan = Plan::compile(expr).unwrap().with_semantics(semantics);
    let mut e = plan.evaluator(
        Steps {
            start: t,
            step: MIN,
            n: 1,
        },
        5 * MIN,
    );
    e.push(&l(&[("__name__", "x")]), samples).unwrap();
    e.finish().unwrap().first().and_then(|s| s.values[0])
}

/// Prometheus' `load` notation: `start+stepxN`, `N+1` values every `interval`, from t = 0.
fn load(interval: i64, runs: &[(f64, f64, usize)]) -> Vec<Sample> {
    runs.iter()
        .flat_map(|&(start, inc, n)| (0..=n).map(move |i| start + inc * i as f64))
        .enumerate()
        .map(|(i, v)| (i as i64 * interval, v))
        .collect()
}

#[test]
fn counters_read_raw_give_prometheus_own_rates_and_increases() {
    // vectors from Prometheus' promql/promqltest/testdata/functions.test (Prometheus 3)
    let p3 = Semantics::Prometheus3;
    let near = |got: Option<f64>, want: f64| {
        let g = got.unwrap_or(f64::NAN);
        assert!(
            (g - want).abs() <= 1e-12 * want.abs().max(1.0),
            "{g} != {want}"
        );
    };
    let foo = load(5 * MIN, &[(0.0, 10.0, 10)]);
    let bar = load(5 * MIN, &[(0.0, 18.0, 5), (0.0, 18.0, 5)]);
    let dings = load(5 * MIN, &[(10.0, 10.0, 10)]);
    let bumms = load(5 * MIN, &[(1.0, 10.0, 10)]);
    for (s, at_50m, at_100m) in [
        (&foo, 100.0, 100.0),
        (&bar, 160.0, 162.0),
        (&dings, 100.0, 105.0),
        (&bumms, 100.0, 101.0),
    ] {
        near(instant("increase(x[50m])", p3, 50 * MIN, s), at_50m);
        near(instant("increase(x[100m])", p3, 50 * MIN, s), at_100m);
    }
    // a decrease is a reset to zero: 3 2 reads as 3 0 1 2
    let reset = [0.0, 1.0, 2.0, 3.0, 2.0, 3.0, 4.0]
        .iter()
        .enumerate()
        .map(|(i, &v)| (i as i64 * 5 * MIN, v))
        .collect::<Vec<_>>();
    near(instant("increase(x[30m])", p3, 30 * MIN, &reset), 7.0);
    let middle = load(5 * MIN, &[(0.0, 27.0, 4), (0.0, 27.0, 5)]);
    near(instant("rate(x[50m])", p3, 50 * MIN, &middle), 0.08);
    let end = load(5 * MIN, &[(0.0, 10.0, 9), (0.0, 10.0, 1)]);
    assert_eq!(instant("rate(x[5m])", p3, 50 * MIN, &end), None);
    near(instant("rate(x[6m])", p3, 50 * MIN, &end), 0.0);
    // the zero cutoff of the left extrapolation: a series starting inside the range
    for (start, want) in [(0.0, 0.5), (60.0, 0.55), (120.0, 0.6), (300.0, 0.6)] {
        let s = load(4 * MIN, &[(start, 240.0, 10)]);
        near(instant("rate(x[20m])", p3, 10 * MIN, &s), want);
        near(instant("rate(x[20m])", p3, 50 * MIN, &s), 0.6);
    }
}

#[test]
fn a_reset_before_the_range_clamps_prometheus_but_not_thanos() {
    // the worked example: a counter at 1000 resets; the range holds 3, 18, 33, 48 at 15 s,
    // 8 s after its start and 7 s before its end
    let t = 10 * MIN;
    let samples: Vec<Sample> = [(t - 67_000, 1000.0)]
        .into_iter()
        .chain((0..4).map(|i| (t - 52_000 + i * 15_000, 3.0 + 15.0 * i as f64)))
        .collect();
    let chunk = crate::chunk::xor_chunk(&samples).unwrap();
    let (mint, maxt) = (t - 5 * MIN, t);
    let raw = crate::dedup::prometheus_samples(std::slice::from_ref(&chunk), mint, maxt).unwrap();
    let thanos =
        crate::dedup::series_samples(std::slice::from_ref(&chunk), mint, maxt, true).unwrap();
    let prometheus = instant("increase(x[1m])", Semantics::Prometheus3, t, &raw).unwrap();
    let thanos = instant("increase(x[1m])", Semantics::Thanos, t, &thanos).unwrap();
    assert!((prometheus - 55.0).abs() < 1e-9, "{prometheus}");
    assert!((thanos - 60.0).abs() < 1e-9, "{thanos}");
}

#[test]
fn prometheus_2_closes_its_ranges_on_the_left_and_clamps_before_the_threshold() {
    let (p2, p3) = (Semantics::Prometheus2, Semantics::Prometheus3);
    // a sample exactly at t - range (or t - lookback) is selected by Prometheus 2 only
    let at_edge = [(0, 1.0), (30_000, 2.0), (60_000, 3.0)];
    let sum = |s| instant("sum_over_time(x[1m])", s, 60_000, &at_edge);
    assert_eq!((sum(p2), sum(p3)), (Some(6.0), Some(5.0)));
    let lone = [(0, 7.0)];
    assert_eq!(instant("x", p2, 5 * MIN, &lone), Some(7.0));
    assert_eq!(instant("x", p3, 5 * MIN, &lone), None);
    let p = |s| Plan::compile("rate(x[10m])").unwrap().with_semantics(s);
    let steps = Steps {
        start: 3_600_000,
        step: MIN,
        n: 60,
    };
    assert_eq!(p(p2).select_range(&steps, 5 * MIN).0, 3_000_000);
    assert_eq!(p(p3).select_range(&steps, 5 * MIN).0, 3_000_001);
    // a counter starting inside the range, its zero point between half an interval and the
    // 1.1-interval threshold before its first sample: 7, 17, 27 at 10 s, 20 s into the range
    let young = [(20_000, 7.0), (30_000, 17.0), (40_000, 27.0)];
    let inc = |s| instant("increase(x[40s])", s, 40_000, &young).unwrap();
    assert!((inc(p3) - 25.0).abs() < 1e-9, "{}", inc(p3));
    assert!((inc(p2) - 27.0).abs() < 1e-9, "{}", inc(p2));
}

#[test]
fn each_thanos_release_evaluates_with_the_prometheus_engine_it_was_built_with() {
    use Semantics::*;
    for (release, want) in [
        ("v0.31.0", ThanosLegacy),
        ("0.34.1", ThanosLegacy),
        ("v0.35.0", ThanosClosedRanges),
        ("v0.37.2", ThanosClosedRanges),
        ("v0.38.0-rc.0", Thanos),
        ("0.42.4", Thanos),
        ("v1.0.0", Thanos),
    ] {
        assert_eq!(Semantics::of_thanos(release), Ok(want), "{release}");
    }
    let old = Semantics::of_thanos("v0.30.2").unwrap_err();
    assert!(
        old.contains("v0.31.0") && old.contains("--source http"),
        "{old}"
    );
    assert!(Semantics::of_thanos("latest").is_err());
    // what each era changes: the range's left edge, rate's zero clamp, the merge's start
    let edge = [(0, 1.0), (30_000, 2.0), (60_000, 3.0)];
    let sum = |s| instant("sum_over_time(x[1m])", s, 60_000, &edge);
    assert_eq!(sum(Thanos), Some(5.0));
    assert_eq!(
        (sum(ThanosClosedRanges), sum(ThanosLegacy)),
        (Some(6.0), Some(6.0))
    );
    let young = [(20_000, 7.0), (30_000, 17.0), (40_000, 27.0)];
    let inc = |s| instant("increase(x[40s])", s, 40_000, &young).unwrap();
    assert!((inc(ThanosClosedRanges) - 25.0).abs() < 1e-9);
    assert!((inc(ThanosLegacy) - 27.0).abs() < 1e-9);
    assert!(ThanosLegacy.first_sample_switches() && !ThanosClosedRanges.first_sample_switches());
    assert!(
        [Thanos, ThanosClosedRanges, ThanosLegacy]
            .iter()
            .all(|s| s.thanos_reading())
    );
}
