use super::*;
use crate::catalog::Catalog;
use crate::chunk::decode_into;
use crate::dedup::{series_samples, split_overlapping};
use crate::model::STALE_NAN_BITS;
use crate::query_range::format_value;
use crate::source::window_steps;
use crate::store::proto::{Chunk, chunk::Encoding};

fn base64(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|&c| c != b'=') {
        acc = (acc << 6) | val(c) as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

#[test]
fn recorded_ha_staleness_markers_end_series_like_thanos_query() {
    // Chunks Thanos Query v0.42.4 sent (gRPC Series, replica label dropped) for one pod
    // of a live HA pair that ended: each replica's chunk ends with a staleness marker.
    // Evaluated the way the gRPC source does (decode, dedup, engine), the result must be
    // what the same Querier's PromQL returned: points up to the marker, then nothing.
    let fx: serde_json::Value =
        serde_json::from_str(include_str!("../../../../tests/data/stale_ha_chunks.json")).unwrap();
    let catalog = Catalog::default_for("cluster");
    let lookback = fx["lookback_ms"].as_i64().unwrap();
    let (frame, step) = (
        fx["time_frame_seconds"].as_i64().unwrap(),
        fx["step_seconds"].as_i64().unwrap(),
    );
    let mut windows = 0;
    for s in fx["series"].as_array().unwrap() {
        let name = s["entry"].as_str().unwrap();
        let entry = catalog.entries.iter().find(|e| e.name == name).unwrap();
        let plan = Plan::compile(&entry.expr).unwrap();
        let labels = Labels::from_pairs(
            s["labels"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string())),
        );
        assert!(plan.matches(&labels), "{name}: {labels}");
        let chunks: Vec<AggrChunk> = s["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| AggrChunk {
                min_time: c["min_time"].as_i64().unwrap(),
                max_time: c["max_time"].as_i64().unwrap(),
                raw: Some(Chunk {
                    r#type: Encoding::Xor as i32,
                    data: base64(c["data"].as_str().unwrap()).into(),
                    hash: 0,
                }),
                ..Default::default()
            })
            .collect();
        // the replicas overlap: this goes through the penalty merge
        assert_eq!(split_overlapping(&chunks).len(), 2, "{name}");
        for c in &chunks {
            let mut raw = Vec::new();
            let data = &c.raw.as_ref().unwrap().data;
            decode_into(data, &mut raw).unwrap();
            assert_eq!(raw.last().unwrap().1.to_bits(), STALE_NAN_BITS, "{name}");
            // the encoder that re-encodes edge chunks writes Prometheus' appender's bytes
            assert_eq!(crate::chunk::encode(&raw), data.to_vec(), "{name}");
        }
        for w in s["windows"].as_array().unwrap() {
            let steps = window_steps(w["start"].as_i64().unwrap(), frame, step);
            let (mint, maxt) = plan.select_range(&steps, lookback);
            assert_eq!(
                (mint, maxt),
                (w["mint"].as_i64().unwrap(), w["maxt"].as_i64().unwrap()),
                "{name}: the range the chunks were recorded for"
            );
            let samples = series_samples(&chunks, mint, maxt, plan.counter_func).unwrap();
            let mut eval = plan.evaluator(steps, lookback);
            eval.push(&labels, &samples).unwrap();
            let out = eval.finish().unwrap();
            let got: Vec<Vec<(i64, String)>> = out
                .iter()
                .map(|series| {
                    series
                        .values
                        .iter()
                        .enumerate()
                        .filter_map(|(i, v)| {
                            let mut text = String::new();
                            format_value((*v)?, &mut text);
                            Some((steps.start / 1000 + i as i64 * step, text))
                        })
                        .collect()
                })
                .collect();
            let thanos: Vec<(i64, String)> = w["thanos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p[0].as_i64().unwrap(), p[1].as_str().unwrap().to_string()))
                .collect();
            let at = format!("{name} window {}", w["start"]);
            assert!(
                got.iter().flatten().all(|(_, v)| v != "NaN"),
                "{at}: a staleness marker exported as a value: {got:?}"
            );
            if thanos.is_empty() {
                assert!(got.is_empty(), "{at}: Thanos returns no series: {got:?}");
            } else {
                assert_eq!(got.len(), 1, "{at}: one series");
                assert_eq!(got[0].len(), thanos.len(), "{at}: Thanos' point count");
                assert_eq!(got[0], thanos, "{at}: Thanos' points");
            }
            windows += 1;
        }
    }
    assert_eq!(windows, 8, "4 entries x 2 windows recorded");
}

#[test]
fn a_series_is_set_aside_with_what_each_window_reads() {
    // one replica of a gauge and of a counter, 2 h in ~30 min chunks, asked as one request
    // over two 1 h windows: the gauge keeps its chunks as sent (the window's samples do not
    // depend on the cut), the counter gets each window's own cut (its running total does),
    // and both give the samples of a request for that window alone
    let catalog = Catalog::default_for("cluster");
    let plans: Vec<Plan> = catalog
        .entries
        .iter()
        .map(|e| Plan::compile(&e.expr).unwrap())
        .collect();
    let entry = |name: &str| catalog.entries.iter().position(|e| e.name == name).unwrap();
    let (gauge, counter) = (entry("memory_usage"), entry("cpu_usage"));
    let labels = |name: &str| {
        Labels::from_pairs([
            ("__name__", name),
            ("cluster", "a"),
            ("container", "app"),
            ("namespace", "ns"),
            ("pod", "p"),
        ])
    };
    let samples: Vec<crate::model::Sample> = (0..480)
        .map(|i| (1_000 + i * 15_000, 10.0 + (i % 100) as f64))
        .collect();
    // the third chunk starts at 3,451 s: the second window's first step is in it
    let chunks: Vec<AggrChunk> = [0..115, 115..230, 230..345, 345..480]
        .into_iter()
        .filter_map(|r| crate::chunk::xor_chunk(&samples[r]))
        .collect();
    let ranges = [(1, 3_600_000), (3_300_001, 7_200_000)];
    // both entries' steps, a minute apart from 5 min after the range's start
    let first_steps = [vec![300_000; 2], vec![3_600_000; 2]];
    let windows = Windows {
        ranges: &ranges,
        first_steps: &first_steps,
    };
    let request = (1, 7_200_000);
    for (name, i, is_counter) in [
        ("container_memory_working_set_bytes", gauge, false),
        ("container_cpu_usage_seconds_total", counter, true),
    ] {
        let l = labels(name);
        assert!(plans[i].matches(&l) && plans[i].counter_func == is_counter);
        let set = set_aside(&plans, &[gauge, counter], &windows, request, &l, &chunks)
            .unwrap()
            .unwrap();
        // its first sample is 1 s after the request's start: trimmed there
        assert_eq!(set.edges, Edges::Trimmed, "{name}");
        // read by its own entry alone, the first or the second
        assert_eq!(set.readers, Readers(1 << u8::from(is_counter)), "{name}");
        assert_eq!(set.windows.len(), 2, "{name}: both windows");
        for (k, own) in set.windows {
            let (mint, maxt) = ranges[k];
            let alone = crate::dedup::cut_to(&chunks, mint, maxt).unwrap();
            let want = series_samples(&alone, mint, maxt, is_counter).unwrap();
            let got = series_samples(&own, mint, maxt, is_counter).unwrap();
            assert!(!want.is_empty());
            let bits = |s: &[crate::model::Sample]| -> Vec<(i64, u64)> {
                s.iter().map(|x| (x.0, x.1.to_bits())).collect()
            };
            if is_counter {
                assert_eq!(own, alone, "{name} window {k}: the window's own cut");
                assert_eq!(bits(&got), bits(&want), "{name} window {k}");
                continue;
            }
            assert!(own.iter().all(|c| chunks.contains(c)), "{name}: as sent");
            // the gauge's second window starts with the chunk holding its first step: the
            // one before reaches into its range for the lookback alone
            let skipped = if k == 1 { &chunks[2..] } else { &chunks[..3] };
            assert_eq!(own, *skipped, "{name} window {k}");
            // every step sees the newest sample it sees in the whole range
            for t in (first_steps[k][0]..=maxt).step_by(60_000) {
                let newest = |s: &[crate::model::Sample]| {
                    s.iter().rfind(|x| x.0 <= t).map(|x| (x.0, x.1.to_bits()))
                };
                assert_eq!(newest(&got), newest(&want), "{name} window {k} at {t}");
            }
        }
    }
    // read by an entry whose steps start elsewhere (another step), the gauge keeps its chunks
    let apart = [vec![300_000; 2], vec![3_600_000, 3_630_000]];
    let apart = Windows {
        ranges: &ranges,
        first_steps: &apart,
    };
    let l = labels("container_memory_working_set_bytes");
    let mut both = plans.clone();
    both[counter] = plans[gauge].clone();
    let set = set_aside(&both, &[gauge, counter], &apart, request, &l, &chunks)
        .unwrap()
        .unwrap();
    assert_eq!(set.readers, Readers(0b11));
    assert_eq!(set.windows[1].1, chunks[1..], "steps apart: as sent");
    // an HA pair's replicas overlap: one replica's lookback chunk is no longer unread
    let mut pair = chunks.clone();
    pair.extend(chunks.iter().cloned());
    pair.sort_by_key(|c| (c.min_time, c.max_time));
    let set = set_aside(
        &plans,
        &[gauge],
        &Windows {
            ranges: &ranges,
            first_steps: &[vec![300_000], vec![3_600_000]],
        },
        request,
        &l,
        &pair,
    )
    .unwrap()
    .unwrap();
    assert_eq!(
        set.windows[1].1.len(),
        6,
        "a pair: cut, both replicas' three chunks"
    );
    // the same series inside a longer request, an hour from both edges: what a store
    // sends for it does not show whether it trims, and the counter's cut changed its
    // chunks (one spans the second window's start)
    let wide = (-3_600_000, 10_800_000);
    for (name, want) in [
        ("container_memory_working_set_bytes", Edges::Silent),
        ("container_cpu_usage_seconds_total", Edges::Unknown),
    ] {
        let set = set_aside(
            &plans,
            &[gauge, counter],
            &windows,
            wide,
            &labels(name),
            &chunks,
        )
        .unwrap()
        .unwrap();
        assert_eq!(set.edges, want, "{name}");
    }
    // a series no entry reads is not set aside; a counter's whole chunks (a store
    // gateway's) reaching past the request give the request up
    let other = labels("kube_pod_info");
    let none = SetAside {
        windows: vec![],
        edges: Edges::Trimmed,
        readers: Readers(0),
    };
    assert_eq!(
        set_aside(
            &plans,
            &[gauge, counter],
            &windows,
            request,
            &other,
            &chunks
        )
        .unwrap(),
        Some(none)
    );
    let cpu = labels("container_cpu_usage_seconds_total");
    let narrow = (1_000_000, 7_200_000);
    assert!(
        set_aside(&plans, &[counter], &windows, narrow, &cpu, &chunks)
            .unwrap()
            .is_none()
    );
}

#[test]
fn replicas_sent_apart_are_joined_and_order_is_checked() {
    let series = |pairs: &[(&str, &str)], t: i64| proto::Series {
        labels: pairs
            .iter()
            .map(|&(n, v)| crate::store::label(n, v))
            .collect(),
        chunks: vec![AggrChunk {
            min_time: t,
            max_time: t + 10,
            ..Default::default()
        }],
    };
    let replicas = ["replica".to_string()];
    let mut m = SeriesMerger::new(&replicas);
    assert!(
        m.push(series(&[("pod", "a"), ("replica", "1")], 50))
            .unwrap()
            .is_none()
    );
    // the same series from the other replica: joined, chunks sorted by time
    assert!(
        m.push(series(&[("pod", "a"), ("replica", "0")], 20))
            .unwrap()
            .is_none()
    );
    let (labels, chunks) = m.push(series(&[("pod", "b")], 0)).unwrap().unwrap();
    assert_eq!(labels, Labels::from_pairs([("pod", "a")]));
    assert_eq!(
        chunks.iter().map(|c| c.min_time).collect::<Vec<_>>(),
        vec![20, 50]
    );
    // out of label order: the endpoint did not drop the replica labels
    let err = m.push(series(&[("pod", "a")], 0)).unwrap_err();
    assert!(matches!(err, SourceError::Order(_)), "{err}");
    assert_eq!(m.finish().unwrap().0, Labels::from_pairs([("pod", "b")]));
}

#[test]
fn readers_are_bits_for_64_entries_and_matched_past_them() {
    let plans = [
        Plan::compile("up").unwrap(),
        Plan::compile(r#"up{job="x"}"#).unwrap(),
    ];
    let labels = Labels::from_pairs([("__name__", "up"), ("job", "y")]);
    // 70 entries alternating between the two plans: the first reads, the second does not
    let entries: Vec<usize> = (0..70).map(|k| k % 2).collect();
    let readers = Readers::of(&plans, &entries, &labels);
    assert_eq!(readers, Readers(0x5555_5555_5555_5555));
    for (k, &i) in entries.iter().enumerate() {
        assert_eq!(readers.reads(k, &plans[i], &labels), i == 0, "entry {k}");
    }
}
