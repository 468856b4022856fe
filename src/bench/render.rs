//! The report for a person: a terminal table, bench.md and bench.svg.

use std::path::Path;

use super::{BenchError, Report, SourceReport, io};
use crate::time::rfc3339;

pub(super) fn write_report(dir: &Path, r: &Report) -> Result<(), BenchError> {
    let write = |name: &str, body: String| {
        let path = dir.join(name);
        std::fs::write(&path, body).map_err(io("writing", &path))
    };
    let json = serde_json::to_string_pretty(r)
        .map_err(|e| BenchError::Invalid(format!("cannot render bench.json: {e}")))?;
    write("bench.json", json + "\n")?;
    write("bench.md", render_markdown(r))?;
    write("bench.svg", render_svg(r))?;
    Ok(())
}

/// Bytes in decimal megabytes, as the targets are stated.
fn mb(b: u64) -> String {
    format!("{:.1} MB", b as f64 / 1e6)
}

pub(super) fn count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn span(seconds: i64) -> String {
    if seconds % 86_400 == 0 {
        format!("{} d", seconds / 86_400)
    } else if seconds % 3600 == 0 {
        format!("{} h", seconds / 3600)
    } else {
        format!("{seconds} s")
    }
}

type Row = (
    &'static str,
    fn(&SourceReport) -> String,
    Option<fn(&SourceReport) -> f64>,
);

fn rows() -> Vec<Row> {
    vec![
        (
            "wall time",
            |s| format!("{:.2} s", s.wall_seconds),
            Some(|s| s.wall_seconds),
        ),
        (
            "bytes received",
            |s| mb(s.bytes_received),
            Some(|s| s.bytes_received as f64),
        ),
        (
            "exporter peak RSS",
            |s| mb(s.exporter_peak_rss_bytes),
            Some(|s| s.exporter_peak_rss_bytes as f64),
        ),
        (
            "exporter CPU",
            |s| format!("{:.2} s", s.exporter_cpu_seconds),
            Some(|s| s.exporter_cpu_seconds),
        ),
        (
            "querier CPU",
            |s| format!("{:.2} s", s.querier_cpu_seconds),
            Some(|s| s.querier_cpu_seconds),
        ),
        (
            "querier peak RSS",
            |s| mb(s.querier_peak_rss_bytes),
            Some(|s| s.querier_peak_rss_bytes as f64),
        ),
        (
            "stack CPU",
            |s| {
                if s.stack_cpu_by_kind.is_empty() {
                    "not sampled".into()
                } else {
                    format!("{:.2} s", s.stack_cpu_seconds)
                }
            },
            Some(|s| s.stack_cpu_seconds),
        ),
        (
            // the user's bill: the exporter runs on the same clusters as the stack
            "stack + exporter CPU",
            |s| {
                if s.stack_cpu_by_kind.is_empty() {
                    "not sampled".into()
                } else {
                    format!("{:.2} s", s.stack_cpu_seconds + s.exporter_cpu_seconds)
                }
            },
            Some(|s| s.stack_cpu_seconds + s.exporter_cpu_seconds),
        ),
        (
            "exporter CPU per point",
            |s| format!("{:.0} ns", s.exporter_ns_per_point),
            Some(|s| s.exporter_ns_per_point),
        ),
        ("files", |s| count(s.files), None),
        ("series", |s| count(s.series), None),
        ("samples", |s| count(s.samples), None),
    ]
}

fn ratio_cell(r: &Report, f: Option<fn(&SourceReport) -> f64>) -> String {
    f.and_then(|f| r.ratio(f))
        .map_or_else(String::new, |x| format!("{x:.1}x"))
}

fn agreement_lines(r: &Report) -> Vec<String> {
    if r.agreement.is_empty() {
        return vec!["outputs not compared (the http source did not run)".into()];
    }
    r.agreement
        .iter()
        .map(|(name, a)| {
            format!(
                "{name} vs http: {} ({} files, {} byte-identical, {} points, max relative difference {:.1e})",
                if a.agree() { "agree" } else { "DIFFER" },
                a.files,
                a.identical_files,
                count(a.points),
                a.max_relative_difference
            )
        })
        .collect()
}

/// The terminal table.
pub fn render_table(r: &Report) -> String {
    let names: Vec<&str> = r.ordered().iter().map(|(n, _)| *n).collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut head = vec![String::new()];
    head.extend(names.iter().map(|n| n.to_string()));
    head.push("http/grpc".into());
    lines.push(head);
    for (label, cell, ratio) in rows() {
        let mut l = vec![label.to_string()];
        l.extend(r.ordered().into_iter().map(|(_, s)| cell(s)));
        l.push(ratio_cell(r, ratio));
        lines.push(l);
    }
    let cols = lines[0].len();
    let width: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "bench {} windows ({}), {} round(s), median run per source\n",
        r.windows,
        span(r.span_seconds),
        r.rounds
    );
    for l in &lines {
        let cells: Vec<String> = l
            .iter()
            .enumerate()
            .map(|(c, s)| {
                if c == 0 {
                    format!("{s:<w$}", w = width[c])
                } else {
                    format!("{s:>w$}", w = width[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for l in agreement_lines(r) {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// bench.md: the same table in Markdown.
pub fn render_markdown(r: &Report) -> String {
    let names: Vec<&str> = r.ordered().iter().map(|(n, _)| *n).collect();
    let (from, to) = (rfc3339(r.from), rfc3339(r.to));
    let mut out = format!(
        "# storeapi-exporter bench\n\n{} windows of {} s ({} span, {from} to {to}), step {} s, {} round(s) per source alternating; median run shown.\nStore `{}`, HTTP `{}`, storeapi-exporter {}.\n\n",
        r.windows,
        r.time_frame,
        span(r.span_seconds),
        r.step,
        r.rounds,
        r.store,
        r.prometheus_url,
        r.version
    );
    out.push_str(&format!("| | {} | http/grpc |\n", names.join(" | ")));
    out.push_str(&format!("|---|{}---:|\n", "---:|".repeat(names.len())));
    for (label, cell, ratio) in rows() {
        let cells: Vec<String> = r.ordered().into_iter().map(|(_, s)| cell(s)).collect();
        out.push_str(&format!(
            "| {label} | {} | {} |\n",
            cells.join(" | "),
            ratio_cell(r, ratio)
        ));
    }
    out.push_str(&format!("\nOutputs: {}.\n", agreement_lines(r).join("; ")));
    for (name, a) in &r.agreement {
        for d in &a.differences {
            out.push_str(&format!("- {name}: {d}\n"));
        }
    }
    if r.sources.values().any(|s| !s.stack_cpu_by_kind.is_empty()) {
        out.push_str(&stack_table(r));
    }
    out.push_str("\nRuns:\n\n| source | round | wall s | querier CPU s | exporter CPU s | exporter peak RSS | querier peak RSS |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (name, s) in &r.sources {
        for run in &s.runs {
            out.push_str(&format!(
                "| {name} | {} | {:.2} | {:.2} | {:.2} | {} | {} |\n",
                run.round,
                run.wall_seconds,
                run.querier_cpu_seconds,
                run.exporter_cpu_seconds,
                mb(run.exporter_peak_rss_bytes),
                mb(run.querier_peak_rss_bytes)
            ));
        }
    }
    out
}

/// CPU seconds per kind of stack process, per source: where the stack's work goes.
fn stack_table(r: &Report) -> String {
    let names: Vec<&str> = r.ordered().iter().map(|(n, _)| *n).collect();
    let kinds: std::collections::BTreeSet<&String> = r
        .sources
        .values()
        .flat_map(|s| s.stack_cpu_by_kind.keys())
        .collect();
    let mut out = format!(
        "\nStack CPU per kind of process (median run; every pid file of the stack):\n\n| process | {} | http/grpc |\n|---|{}---:|\n",
        names.join(" | "),
        "---:|".repeat(names.len())
    );
    for k in kinds {
        let get = |s: &SourceReport| s.stack_cpu_by_kind.get(k).copied().unwrap_or(0.0);
        let cells: Vec<String> = r
            .ordered()
            .into_iter()
            .map(|(_, s)| format!("{:.2} s", get(s)))
            .collect();
        let ratio = match (r.sources.get("grpc"), r.sources.get("http")) {
            (Some(g), Some(h)) if get(g) > 0.0 => format!("{:.1}x", get(h) / get(g)),
            _ => String::new(),
        };
        out.push_str(&format!("| {k} | {} | {ratio} |\n", cells.join(" | ")));
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// bench.svg: per figure, one bar per source, scaled to the larger of the two so figures of
/// different units share one chart; each bar carries its value.
pub fn render_svg(r: &Report) -> String {
    const COLORS: [&str; 3] = ["#2b6cb0", "#dd6b20", "#38a169"];
    let figures: Vec<Row> = rows().into_iter().filter(|r| r.2.is_some()).collect();
    let names: Vec<&str> = r.ordered().iter().map(|(n, _)| *n).collect();
    let (group_w, bar_w, chart_h, top, left) = (130.0, 34.0, 220.0, 70.0, 20.0);
    let width = left * 2.0 + group_w * figures.len() as f64;
    let notes = agreement_lines(r);
    let height = top + chart_h + 50.0 + 16.0 * notes.len() as f64;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    s.push_str(&format!(
        "<text x=\"{left}\" y=\"22\" font-size=\"15\" font-weight=\"bold\">storeapi-exporter bench: {} windows ({} span), lower is better</text>\n",
        r.windows,
        span(r.span_seconds)
    ));
    for (i, n) in names.iter().enumerate() {
        let x = left + i as f64 * 110.0;
        s.push_str(&format!(
            "<rect x=\"{x}\" y=\"34\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"44\">{n}</text>\n",
            COLORS[i % COLORS.len()],
            x + 16.0
        ));
    }
    let base_y = top + chart_h;
    s.push_str(&format!(
        "<line x1=\"{left}\" y1=\"{base_y}\" x2=\"{}\" y2=\"{base_y}\" stroke=\"#444\"/>\n",
        width - left
    ));
    for (g, (label, cell, value)) in figures.iter().enumerate() {
        let value = value.expect("figures have values");
        let max = r.sources.values().map(value).fold(0.0f64, f64::max);
        let gx = left + g as f64 * group_w;
        let n = names.len() as f64;
        let x0 = gx + (group_w - n * bar_w - (n - 1.0) * 4.0) / 2.0;
        for (i, (_, src)) in r.ordered().into_iter().enumerate() {
            let h = if max > 0.0 {
                (value(src) / max * chart_h).max(1.0)
            } else {
                1.0
            };
            let x = x0 + i as f64 * (bar_w + 4.0);
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w}\" height=\"{h:.1}\" fill=\"{}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"9\">{}</text>\n",
                base_y - h,
                COLORS[i % COLORS.len()],
                x + bar_w / 2.0,
                base_y - h - 3.0,
                xml_escape(&cell(src))
            ));
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\n",
            gx + group_w / 2.0,
            base_y + 16.0,
            xml_escape(label)
        ));
        let ratio = ratio_cell(r, Some(value));
        if !ratio.is_empty() {
            s.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#555\">http/grpc {ratio}</text>\n",
                gx + group_w / 2.0,
                base_y + 31.0
            ));
        }
    }
    for (i, note) in notes.iter().enumerate() {
        s.push_str(&format!(
            "<text x=\"{left}\" y=\"{:.0}\" fill=\"#555\">{}</text>\n",
            base_y + 54.0 + 16.0 * i as f64,
            xml_escape(note)
        ));
    }
    s.push_str("</svg>\n");
    s
}
