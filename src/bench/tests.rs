//! The benchmark's parsing, agreement and rendering, without a stack.

use super::*;
use crate::bench::agreement::compare_bodies;
use crate::bench::child::ExportSummary;
use crate::bench::querier::metric_value;
use crate::bench::render::count;
use crate::bench::render::{render_markdown, render_svg};
use crate::bench::report::median;
use crate::bench::stack::{ProcessFigures, figures, kind, parse_cpu_ticks, read_pid_dir};

const METRICS: &str =
    "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 12.34
process_cpu_seconds_total_other 99
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 1.23456789e+08
go_gc_duration_seconds{quantile=\"0\"} 1e-05
";

#[test]
fn reads_unlabelled_samples_from_the_exposition_format() {
    assert_eq!(
        metric_value(METRICS, "process_cpu_seconds_total"),
        Some(12.34)
    );
    assert_eq!(
        metric_value(METRICS, "process_resident_memory_bytes"),
        Some(123_456_789.0)
    );
    assert_eq!(metric_value(METRICS, "go_gc_duration_seconds"), None);
    assert_eq!(metric_value(METRICS, "process_open_fds"), None);
    assert_eq!(metric_value("up{} 1\n", "up"), Some(1.0));
}

#[test]
fn finds_the_export_summary_among_log_lines() {
    let log = r#"{"timestamp":"t","level":"INFO","message":"starting"}
not json
{"timestamp":"t","level":"INFO","windows":2,"series":10,"samples":200,"calls":4,"bytes_in":5000,"bytes_out":300,"files_written":4,"files_deleted":0,"duration_s":1.5,"peak_rss_bytes":40960,"message":"export finished","target":"x"}
"#;
    let s = find_summary(log).unwrap();
    assert_eq!(
        s,
        ExportSummary {
            bytes_in: 5000,
            series: 10,
            samples: 200,
            files_written: 4,
            duration_s: 1.5,
            peak_rss_bytes: 40960,
            calls: 4,
        }
    );
    assert!(find_summary("{\"message\":\"starting\"}").is_none());
    let err = r#"{"level":"ERROR","error":"window 1 failed: HTTP 400","message":"failed"}"#;
    assert_eq!(last_error(err), "window 1 failed: HTTP 400");
}

#[test]
fn forwards_global_options_but_not_the_bench_flags() {
    let argv: Vec<String> = [
        "--store",
        "http://q:10901",
        "bench",
        "--from",
        "1",
        "--to=2",
        "--out",
        "dir",
        "--source",
        "http",
        "--step",
        "30",
        "--grpc-gzip",
        "--log-level=debug",
        "--rounds",
        "1",
        "--cluster-name",
        "bench",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        forwarded_args(&argv),
        [
            "--store",
            "http://q:10901",
            "--step",
            "30",
            "--cluster-name",
            "bench"
        ]
    );
}

fn body(values: &[(f64, &str)]) -> Vec<u8> {
    let values: Vec<serde_json::Value> = values
        .iter()
        .map(|(t, v)| serde_json::json!([t, v]))
        .collect();
    serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"pod": "p"}, "values": values}
    ]}})
    .to_string()
    .into_bytes()
}

#[test]
fn agreement_within_one_in_a_billion() {
    let mut a = Agreement::default();
    let x = body(&[(1.0, "0.25"), (2.0, "NaN")]);
    compare_bodies("f", &x, &x, &mut a);
    assert!(a.agree());
    assert_eq!((a.files, a.identical_files, a.points), (1, 1, 2));

    let y = body(&[(1.0, "0.2500000000001"), (2.0, "NaN")]);
    compare_bodies("g", &x, &y, &mut a);
    assert!(a.agree(), "{:?}", a.differences);
    assert_eq!(a.identical_files, 1);
    assert!(a.max_relative_difference > 0.0 && a.max_relative_difference < 1e-9);

    let z = body(&[(1.0, "0.26"), (2.0, "NaN")]);
    compare_bodies("h", &x, &z, &mut a);
    assert!(!a.agree());
    assert!(a.differences[0].starts_with("h: "), "{:?}", a.differences);

    let mut b = Agreement::default();
    compare_bodies("i", &x, &body(&[(1.0, "0.25")]), &mut b);
    assert!(b.differences[0].contains("2 points against 1"));
    let mut c = Agreement::default();
    compare_bodies("j", &x, b"{\"status\":\"error\"}", &mut c);
    assert!(!c.agree());
}

#[test]
fn compares_directories_by_key() {
    let root = std::env::temp_dir().join(format!("bench-cmp-{}", std::process::id()));
    let (a, b) = (root.join("a"), root.join("b"));
    let write = |dir: &Path, name: &str, body: &[u8]| {
        std::fs::create_dir_all(dir.join("x")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, body).unwrap();
        std::fs::write(dir.join("x").join(name), gz.finish().unwrap()).unwrap();
    };
    let x = body(&[(1.0, "1")]);
    write(&a, "1.json.gz", &x);
    write(&b, "1.json.gz", &x);
    let agreement = compare_dirs(&a, &b).unwrap();
    assert!(agreement.agree());
    assert_eq!(agreement.identical_files, 1);
    write(&b, "2.json.gz", &x);
    let agreement = compare_dirs(&a, &b).unwrap();
    assert!(agreement.differences[0].contains("x/2.json.gz: only in"));
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn medians_per_figure() {
    let run = |w: f64, cpu: f64| Run {
        wall_seconds: w,
        querier_cpu_seconds: cpu,
        files: 4,
        ..Default::default()
    };
    let s = SourceReport::from_runs(vec![run(3.0, 1.0), run(1.0, 9.0), run(2.0, 5.0)]);
    assert_eq!(
        (s.wall_seconds, s.querier_cpu_seconds, s.files),
        (2.0, 5.0, 4)
    );
    assert_eq!(median(vec![1.0, 2.0, 3.0, 10.0]), 2.5);
}

fn report() -> Report {
    let src = |w: f64, cpu: f64, rss: u64| {
        SourceReport::from_runs(vec![Run {
            wall_seconds: w,
            bytes_received: 2_000_000,
            exporter_peak_rss_bytes: rss,
            exporter_cpu_seconds: 1.0,
            querier_cpu_seconds: cpu,
            querier_peak_rss_bytes: 300_000_000,
            files: 912,
            series: 21_000,
            samples: 12_345_678,
            stack_cpu_seconds: cpu * 2.0,
            stack: BTreeMap::from([
                (
                    "query".to_string(),
                    ProcessFigures {
                        cpu_seconds: cpu,
                        peak_rss_bytes: 1,
                    },
                ),
                (
                    "sidecar-a-0".to_string(),
                    ProcessFigures {
                        cpu_seconds: cpu / 2.0,
                        peak_rss_bytes: 1,
                    },
                ),
                (
                    "sidecar-b".to_string(),
                    ProcessFigures {
                        cpu_seconds: cpu / 2.0,
                        peak_rss_bytes: 1,
                    },
                ),
            ]),
            ..Default::default()
        }])
    };
    Report {
        from: 1_761_868_800,
        to: 1_761_868_800 + 86_400,
        span_seconds: 86_400,
        windows: 24,
        time_frame: 3600,
        step: 60,
        rounds: 1,
        store: "http://127.0.0.1:10901".into(),
        prometheus_url: "http://127.0.0.1:10902".into(),
        version: "0.1.0",
        sources: BTreeMap::from([
            ("grpc", src(2.0, 1.5, 50_000_000)),
            ("http", src(8.0, 30.0, 80_000_000)),
        ]),
        agreement: BTreeMap::from([(
            "grpc",
            Agreement {
                files: 912,
                identical_files: 912,
                points: 1_000_000,
                ..Default::default()
            },
        )]),
        outputs_agree: true,
        output_points: 1_000_000,
    }
}

#[test]
fn renders_table_markdown_and_chart() {
    let r = report();
    assert_eq!(r.ratio(|s| s.querier_cpu_seconds), Some(20.0));
    let t = render_table(&r);
    assert!(t.contains("24 windows (1 d)"), "{t}");
    let wall = t.lines().find(|l| l.starts_with("wall time")).unwrap();
    assert!(wall.contains("2.00 s") && wall.contains("8.00 s") && wall.ends_with("4.0x"));
    assert!(t.contains("samples") && t.contains("12,345,678"));
    assert!(t.contains("grpc vs http: agree (912 files, 912 byte-identical"));

    let md = render_markdown(&r);
    assert!(
        md.contains("| querier CPU | 1.50 s | 30.00 s | 20.0x |"),
        "{md}"
    );
    assert!(md.contains("| exporter peak RSS | 50.0 MB | 80.0 MB | 1.6x |"));
    assert!(md.contains("2025-10-31T00:00:00Z to 2025-11-01T00:00:00Z"));

    let svg = render_svg(&r);
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    assert_eq!(svg.matches("<rect x=").count(), 2 + 9 * 2, "legend + bars");
    assert!(
        md.contains("| stack CPU | 3.00 s | 60.00 s | 20.0x |"),
        "{md}"
    );
    // the user's bill: the exporter's own CPU beside the stack's
    assert!(
        md.contains("| stack + exporter CPU | 4.00 s | 61.00 s |"),
        "{md}"
    );
    assert!(
        md.contains("| sidecar | 1.50 s | 30.00 s | 20.0x |"),
        "{md}"
    );
    assert!(svg.contains("http/grpc 20.0x"));

    let json = serde_json::to_value(&r).unwrap();
    for k in [
        "wall_seconds",
        "bytes_received",
        "exporter_peak_rss_bytes",
        "querier_cpu_seconds",
        "querier_peak_rss_bytes",
        "files",
        "series",
        "samples",
    ] {
        assert!(json["sources"]["grpc"][k].is_number(), "{k}");
        assert!(json["sources"]["http"][k].is_number(), "{k}");
    }
    assert_eq!(json["outputs_agree"], true);
}

#[test]
fn thousands_separators() {
    assert_eq!(count(0), "0");
    assert_eq!(count(999), "999");
    assert_eq!(count(1000), "1,000");
    assert_eq!(count(12_345_678), "12,345,678");
}

#[test]
fn stack_processes_from_pid_files_and_proc() {
    // a command name with spaces and parentheses, as /proc/PID/stat may show
    let stat =
        "4242 (thanos (x) y) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 12 0 9999 0 0";
    assert_eq!(parse_cpu_ticks(stat), Some(325));
    assert_eq!(parse_cpu_ticks("garbage"), None);
    assert_eq!(kind("prometheus-a-0"), "prometheus");
    assert_eq!(kind("query"), "query");

    let me = std::process::id();
    let root = std::env::temp_dir().join(format!("bench-stack-test-{me}"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("query.pid"), format!("{me} 123\n")).unwrap();
    // a process that is gone, and a file that is no pid file, are skipped
    std::fs::write(root.join("sidecar-b.pid"), "4194304999 1\n").unwrap();
    std::fs::write(root.join("notes.txt"), "1").unwrap();
    let procs = read_pid_dir(&root).unwrap();
    assert_eq!(procs.len(), 1);
    assert_eq!((procs[0].name.as_str(), procs[0].pid), ("query", me));
    let f = figures(&procs, &[Some(100)], &[Some(350)], &[7]);
    assert_eq!(
        f["query"],
        ProcessFigures {
            cpu_seconds: 2.5,
            peak_rss_bytes: 7
        }
    );
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn every_variant_is_named_as_it_is_asked_and_runs_a_source_the_export_knows() {
    use crate::cli::args::{SourceKind, Variant};
    use clap::ValueEnum;
    for &v in Variant::value_variants() {
        assert_eq!(Variant::from_str(v.name(), false), Ok(v), "{v:?}");
        let flags = v.export_flags();
        assert_eq!(flags[0], "--source", "{v:?}");
        assert!(
            SourceKind::from_str(flags[1], false).is_ok(),
            "{v:?}: {flags:?}"
        );
    }
}

#[test]
fn the_steady_report_names_the_in_process_source_it_measured() {
    use crate::bench::steady::{SteadyReport, SteadySource, render};
    use crate::cli::args::Variant;
    let day = |cpu: f64| SteadySource {
        runs: 48,
        exporting_runs: 24,
        windows: 24,
        stack_cpu_seconds_per_window: cpu,
        total_cpu_seconds_per_window: cpu * 2.0,
        ..Default::default()
    };
    let report = |source| SteadyReport {
        from: 0,
        to: 86_400,
        time_frame: 3600,
        starts_behind_seconds: 0,
        source,
        grpc: day(0.5),
        http: day(1.5),
        stack_ratio: 3.0,
        total_ratio: 2.5,
        agreement: Default::default(),
    };
    let rr = render(&report(Variant::RemoteRead));
    assert!(
        rr.contains("| | remote-read | HTTP | HTTP / remote-read |"),
        "{rr}"
    );
    assert!(rr.contains("3.00x"), "{rr}");
    assert!(
        rr.contains("| stack + exporter CPU per window | 1.000 s | 3.000 s | **2.50x** |"),
        "{rr}"
    );
    let json = serde_json::to_value(report(Variant::RemoteRead)).unwrap();
    assert_eq!(
        json["source"], "remote-read",
        "steady.json names it as --sources does"
    );
    let g = render(&report(Variant::Grpc));
    assert!(g.contains("| | gRPC | HTTP | HTTP / gRPC |"), "{g}");
}
