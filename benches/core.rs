//! Throughput of the XOR decoder and of the engine on scrape-like data: 30 s scrapes with
//! millisecond jitter, counters growing at varying rates, gauges drifting, 120-sample chunks
//! as Prometheus cuts them, and an HA pair 3.2 s apart for the deduplicating path.
//!
//! `cargo bench --bench core` prints samples per second (Criterion's "elem/s").
//!
//! The `writing` group measures what every output point costs once evaluated: its value
//! formatted (`format_value` against std's `Display`, the code it replaced), the file's text
//! rendered again from its series (`render_points`, per point), rendered into the exporter's
//! gzip stream (`render_gzip`, against the text then zlib-rs at level 2), and the file
//! compressed at each gzip level, on real files when `GZIP_STUDY_DIR` names a directory of exported
//! `.json.gz` files (the bench's), else on a rendered synthetic file.

use std::hint::black_box;
use std::io::{Read, Write};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use storeapi_exporter::chunk::{XorIter, decode_into, encode, xor_chunk};
use storeapi_exporter::dedup::{Scratch, cut_to_each, series_samples_into};
use storeapi_exporter::engine::Plan;
use storeapi_exporter::model::Labels;
use storeapi_exporter::model::{Sample, Series, Steps};
use storeapi_exporter::query_range::gzip::Gzip;
use storeapi_exporter::query_range::{parse_matrix, parse_value, render_to};
use storeapi_exporter::store::proto::AggrChunk;

const START: i64 = 1_761_868_800_000;

/// A deterministic pseudo-random sequence (xorshift), so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// kube-state-metrics: requests, limits, info and label series hold one value
    Constant,
    /// cAdvisor counters: CPU seconds, network bytes, with noisy fractional increments
    Counter,
    /// cAdvisor gauges: working-set bytes, whole numbers that move every scrape
    Gauge,
}

fn scrapes(rng: &mut Rng, n: usize, offset: i64, kind: Kind) -> Vec<Sample> {
    let mut v = match kind {
        Kind::Constant => 0.25,
        _ => rng.unit() * 1e4,
    };
    (0..n as i64)
        .map(|i| {
            let t = START + offset + i * 30_000 + (rng.next() % 7) as i64 - 3;
            match kind {
                Kind::Constant => {}
                Kind::Counter => v += rng.unit() * 30.0,
                Kind::Gauge => v = (v + (rng.unit() - 0.5) * 1e6).abs().floor(),
            }
            (t, v)
        })
        .collect()
}

/// The catalog's input as the generated Kubernetes data has it: about half the series are
/// kube-state-metrics constants, the rest cAdvisor counters and gauges.
fn realistic(i: usize) -> Kind {
    match i % 4 {
        0 | 1 => Kind::Constant,
        2 => Kind::Counter,
        _ => Kind::Gauge,
    }
}

fn chunks_of(samples: &[Sample]) -> Vec<AggrChunk> {
    samples.chunks(120).filter_map(xor_chunk).collect()
}

fn decoder(c: &mut Criterion) {
    let mut rng = Rng(42);
    // 1,000 chunks of 120 samples
    let mixed: Vec<Vec<u8>> = (0..1000)
        .map(|i| encode(&scrapes(&mut rng, 120, 0, realistic(i))))
        .collect();
    // the worst case: every value a counter with a noisy mantissa (about 60 bits a sample)
    let harsh: Vec<Vec<u8>> = (0..1000)
        .map(|_| encode(&scrapes(&mut rng, 120, 0, Kind::Counter)))
        .collect();
    let samples = 120 * mixed.len() as u64;
    let mut g = c.benchmark_group("decoder");
    g.throughput(Throughput::Elements(samples));
    for (name, chunks) in [("realistic_mix", &mixed), ("noisy_counters", &harsh)] {
        g.bench_function(format!("decode_into_{name}"), |b| {
            let mut out = Vec::with_capacity(120);
            b.iter(|| {
                let mut sum = 0.0f64;
                for data in chunks {
                    out.clear();
                    decode_into(black_box(data), &mut out).unwrap();
                    sum += out[out.len() - 1].1;
                }
                black_box(sum)
            })
        });
    }
    let chunks = &mixed;
    g.bench_function("xor_iter_realistic_mix", |b| {
        b.iter(|| {
            let mut sum = 0.0f64;
            for data in chunks {
                let mut it = XorIter::new(black_box(data)).unwrap();
                while let Some((_, v)) = it.next_sample().unwrap() {
                    sum += v;
                }
            }
            black_box(sum)
        })
    });
    // a multi-window request's set-aside: 1,000 series of 240 samples, their chunks cut to
    // two hour-long windows whose edge falls inside the chunks, as it falls on a live stack
    let series: Vec<Vec<AggrChunk>> = (0..1000)
        .map(|i| chunks_of(&scrapes(&mut rng, 240, 0, realistic(i))))
        .collect();
    let edge = START + 45 * 30_000;
    let windows = [(START - 3_600_000, edge), (edge + 1, edge + 3_600_000)];
    g.throughput(Throughput::Elements(240 * series.len() as u64));
    // and as the bench's backfilled chunks meet them: a chunk starts on the hour, its first
    // sample the previous window's last
    let on_the_hour = [
        (START - 3_600_000 + 10, START + 10),
        (START + 11, START + 3_600_010),
    ];
    for (name, windows) in [("", &windows), ("_on_the_hour", &on_the_hour)] {
        g.bench_function(
            format!("cut_to_each_two_windows_realistic_mix{name}"),
            |b| {
                b.iter(|| {
                    let mut n = 0;
                    for chunks in &series {
                        n += cut_to_each(black_box(chunks), windows).unwrap()[1].len();
                    }
                    black_box(n)
                })
            },
        );
    }
    g.finish();
}

fn engine(c: &mut Criterion) {
    let mut rng = Rng(7);
    let steps = Steps {
        start: START + 3_600_000,
        step: 60_000,
        n: 60,
    };
    // 1,000 containers, 2 h of scrapes each: the window (1 h) plus the range before it
    let series: Vec<(Labels, Vec<Sample>)> = (0..1000)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "container_cpu_usage_seconds_total".to_string()),
                ("cluster", "c1".to_string()),
                ("container", format!("c{}", i % 3)),
                ("namespace", format!("ns{}", i % 20)),
                ("node", format!("node{}", i % 50)),
                ("pod", format!("pod-{i}")),
            ]);
            (labels, scrapes(&mut rng, 240, 0, Kind::Counter))
        })
        .collect();
    let plan = Plan::compile(
        r#"sum by (cluster, node, namespace, pod, container) (rate(container_cpu_usage_seconds_total{container!=""}[5m]))"#,
    )
    .unwrap();
    let (mint, maxt) = plan.select_range(&steps, 300_000);
    let in_window = |s: &[Sample]| s.iter().filter(|x| x.0 >= mint && x.0 <= maxt).count() as u64;
    let samples: u64 = series.iter().map(|(_, s)| in_window(s)).sum();
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(samples));
    g.bench_function("sum_by_rate_1000_series_1h", |b| {
        b.iter(|| {
            let mut e = plan.evaluator(steps, 300_000);
            for (l, s) in &series {
                let lo = s.partition_point(|x| x.0 < mint);
                let hi = s.partition_point(|x| x.0 <= maxt);
                e.push(l, &s[lo..hi]).unwrap();
            }
            black_box(e.finish().unwrap())
        })
    });

    // the whole gRPC-side path per series: decode chunks, split replicas, deduplicate
    // (counter mode), evaluate; into buffers kept from series to series, as the exporter
    // decodes them
    let ha: Vec<(Labels, Vec<AggrChunk>)> = series
        .iter()
        .map(|(l, s)| {
            let b: Vec<Sample> = s.iter().map(|&(t, v)| (t + 3200, v + 1.0)).collect();
            let mut chunks = chunks_of(s);
            chunks.extend(chunks_of(&b));
            chunks.sort_by_key(|c| (c.min_time, c.max_time));
            (l.clone(), chunks)
        })
        .collect();
    g.throughput(Throughput::Elements(2 * samples));
    g.bench_function("decode_dedup_sum_by_rate_ha_pair_1000_series_1h", |b| {
        b.iter(|| {
            let mut e = plan.evaluator(steps, 300_000);
            let (mut scratch, mut s) = (Scratch::default(), Vec::new());
            for (l, chunks) in &ha {
                let reading = plan.counter_func.into();
                series_samples_into(chunks, (mint, maxt), reading, None, &mut scratch, &mut s)
                    .unwrap();
                e.push(l, &s).unwrap();
            }
            black_box(e.finish().unwrap())
        })
    });
    g.finish();
}

/// The values the catalog writes: request sizes, byte counts, per-second rates.
fn output_values(n: usize) -> Vec<f64> {
    let mut rng = Rng(7);
    (0..n)
        .map(|i| match i % 4 {
            0 => [0.05, 0.1, 0.25, 0.5, 1.0, 2.0][(rng.next() % 6) as usize],
            1 => ((rng.next() % 1_000_000) * 4096) as f64,
            2 => rng.unit() * 2.0,
            _ => rng.unit() * 5e6 / 60.0,
        })
        .collect()
}

fn study_bodies() -> Vec<Vec<u8>> {
    let Ok(dir) = std::env::var("GZIP_STUDY_DIR") else {
        // a rendered file: 500 series of 60 points
        let mut body =
            String::from(r#"{"status":"success","data":{"resultType":"matrix","result":["#);
        let vals = output_values(60 * 500);
        for (i, chunk) in vals.chunks(60).enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!(
                r#"{{"metric":{{"cluster":"a","container":"c{i}","namespace":"team-a","node":"ip-10-0-{}-1.ec2.internal","pod":"api{i}-5d8f7c9b4-x2k{i}"}},"values":["#,
                i % 40
            ));
            for (k, v) in chunk.iter().enumerate() {
                if k > 0 {
                    body.push(',');
                }
                body.push_str(&format!("[{},\"", 1_761_868_800 + 60 * k));
                storeapi_exporter::query_range::format_value(*v, &mut body);
                body.push_str("\"]");
            }
            body.push_str("]}");
        }
        body.push_str("]}}");
        return vec![body.into_bytes()];
    };
    let mut out = Vec::new();
    let mut stack = vec![std::path::PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("GZIP_STUDY_DIR is readable") {
            let p = e.expect("a directory entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(".json.gz") {
                let mut body = Vec::new();
                flate2::read::GzDecoder::new(std::fs::File::open(&p).expect("a file"))
                    .read_to_end(&mut body)
                    .expect("a gzip file");
                out.push(body);
            }
        }
    }
    out
}

/// A file's series and steps, read back from its body: the steps run from its first
/// timestamp to its last, at the smallest interval between two.
fn series_of(body: &[u8]) -> (Vec<Series>, Steps) {
    let parsed = parse_matrix(body).expect("a query_range matrix");
    let stamps: std::collections::BTreeSet<i64> = parsed
        .iter()
        .flat_map(|s| s.values.iter().map(|(t, _)| (*t * 1000.0) as i64))
        .collect();
    let (first, last) = match (stamps.first(), stamps.last()) {
        (Some(&f), Some(&l)) => (f, l),
        _ => (0, 0),
    };
    let step = stamps
        .iter()
        .zip(stamps.iter().skip(1))
        .map(|(a, b)| b - a)
        .min()
        .unwrap_or(60_000);
    let n = ((last - first) / step + 1) as usize;
    let steps = Steps {
        start: first,
        step,
        n: if stamps.is_empty() { 0 } else { n },
    };
    let series = parsed
        .into_iter()
        .map(|s| {
            let mut values = vec![None; steps.n];
            for (t, v) in &s.values {
                values[(((*t * 1000.0) as i64 - first) / step) as usize] = parse_value(v);
            }
            Series {
                labels: Labels::from_pairs(s.metric),
                values,
            }
        })
        .collect();
    (series, steps)
}

fn gzip_at(body: &[u8], level: u32) -> Vec<u8> {
    let mut enc = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::new(level));
    enc.write_all(body).unwrap();
    enc.finish().unwrap()
}

fn writing(c: &mut Criterion) {
    let values = output_values(100_000);
    let mut g = c.benchmark_group("writing");
    g.throughput(Throughput::Elements(values.len() as u64));
    g.bench_function("format_value", |b| {
        let mut out = String::with_capacity(values.len() * 24);
        b.iter(|| {
            out.clear();
            for v in &values {
                storeapi_exporter::query_range::format_value(*v, &mut out);
            }
            black_box(out.len())
        })
    });
    g.bench_function("std_display", |b| {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(values.len() * 24);
        b.iter(|| {
            out.clear();
            for v in &values {
                let _ = write!(out, "{v}");
            }
            black_box(out.len())
        })
    });
    let bodies = study_bodies();
    // the files' series read back, to render again: the JSON text of each point without gzip
    let files: Vec<(Vec<Series>, Steps)> = bodies.iter().map(|b| series_of(b)).collect();
    let points: usize = files
        .iter()
        .flat_map(|(series, _)| series.iter())
        .map(|s| s.values.iter().flatten().count())
        .sum();
    g.throughput(Throughput::Elements(points as u64));
    for ((series, steps), body) in files.iter().zip(&bodies) {
        let mut again = Vec::new();
        render_to(series.iter(), steps, &mut again);
        assert!(again == *body, "a file rendered again is the file");
    }
    g.bench_function("render_points", |b| {
        let mut out = Vec::with_capacity(bodies.iter().map(Vec::len).max().unwrap_or(0));
        b.iter(|| {
            for (series, steps) in &files {
                out.clear();
                render_to(series.iter(), steps, &mut out);
                black_box(out.len());
            }
        })
    });
    // a file as the exporter writes it: rendered into the compressor that takes its repeats
    let render_gzip = |series: &[Series], steps: &Steps| {
        let mut gz = Gzip::new();
        render_to(series.iter(), steps, &mut gz);
        gz.finish()
    };
    let packed: usize = files
        .iter()
        .map(|(series, steps)| render_gzip(series, steps).len())
        .sum();
    let raw: usize = bodies.iter().map(Vec::len).sum();
    eprintln!(
        "render_gzip: {} files, {raw} bytes -> {packed} bytes ({:.2}%)",
        bodies.len(),
        packed as f64 * 100.0 / raw as f64
    );
    g.bench_function("render_gzip", |b| {
        b.iter(|| {
            for (series, steps) in &files {
                black_box(render_gzip(series, steps));
            }
        })
    });
    g.bench_function("render_then_zlib_level_2", |b| {
        let mut out = Vec::with_capacity(bodies.iter().map(Vec::len).max().unwrap_or(0));
        b.iter(|| {
            for (series, steps) in &files {
                out.clear();
                render_to(series.iter(), steps, &mut out);
                black_box(gzip_at(&out, 2));
            }
        })
    });
    g.throughput(Throughput::Bytes(raw as u64));
    g.sample_size(10);
    for level in [1, 2, 3, 4, 6, 9] {
        let packed: usize = bodies.iter().map(|b| gzip_at(b, level).len()).sum();
        eprintln!(
            "gzip level {level}: {} files, {raw} bytes -> {packed} bytes ({:.2}%)",
            bodies.len(),
            packed as f64 * 100.0 / raw as f64
        );
        g.bench_function(format!("gzip_level_{level}"), |b| {
            b.iter(|| {
                for body in &bodies {
                    black_box(gzip_at(body, level));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, decoder, engine, writing);
criterion_main!(benches);
