use super::*;

fn scrape(start: i64, every: i64, n: usize, f: impl Fn(i64) -> f64) -> Vec<Sample> {
    (0..n as i64)
        .map(|i| {
            let t = start + i * every;
            (t, f(t))
        })
        .collect()
}

fn chunk(s: &[Sample]) -> AggrChunk {
    crate::chunk::xor_chunk(s).unwrap()
}

#[test]
fn offset_replicas_do_not_interleave() {
    // a scrapes at :00, b 3.2 s later; the merge keeps to a
    let a = scrape(0, 30_000, 100, |t| t as f64);
    let b = scrape(3200, 30_000, 100, |t| t as f64 + 0.5);
    let got = merge(vec![a.clone(), b], false);
    assert_eq!(got, a);
}

#[test]
fn replica_gap_is_filled_from_the_other_replica() {
    // a misses [30 min, 45 min); the merge switches to b across the gap and back never
    let mut a = scrape(0, 30_000, 120, |_| 1.0);
    a.retain(|s| !(1_800_000..2_700_000).contains(&s.0));
    let b = scrape(3200, 30_000, 120, |_| 2.0);
    let got = merge(vec![a, b], false);
    let from_b = got.iter().filter(|s| s.1 == 2.0).count();
    assert!(from_b >= 29, "b fills the gap: {from_b}");
    // after the switch, b is kept until it ends: a is only considered across a gap
    assert!(got.iter().skip_while(|s| s.1 == 1.0).all(|s| s.1 == 2.0));
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    // the switch costs samples: b's first sample after the gap must be later than the
    // penalty (2 x the last interval after the last taken a sample)
    let last_a = got.iter().take_while(|s| s.1 == 1.0).last().unwrap().0;
    let first_b = got.iter().find(|s| s.1 == 2.0).unwrap().0;
    assert!(first_b > last_a + 60_000);
}

#[test]
fn counter_switch_is_adjusted_upwards() {
    // b's counter runs 100 lower than a's; a stops half way. Taken as is, the switch
    // would look like a reset; the adjustment lifts b by the difference.
    let a = scrape(0, 30_000, 50, |t| 1000.0 + t as f64 / 1000.0);
    let b = scrape(3200, 30_000, 100, |t| 900.0 + t as f64 / 1000.0);
    let got = merge(vec![a, b], true);
    assert!(
        got.windows(2).all(|w| w[1].1 >= w[0].1),
        "no false reset: {got:?}"
    );
    let plain = merge(
        vec![
            scrape(0, 30_000, 50, |t| 1000.0 + t as f64 / 1000.0),
            scrape(3200, 30_000, 100, |t| 900.0 + t as f64 / 1000.0),
        ],
        false,
    );
    assert!(plain.windows(2).any(|w| w[1].1 < w[0].1));
}

#[test]
fn overlapping_chunks_split_into_pseudo_replicas() {
    let a1 = scrape(0, 30_000, 120, |_| 1.0);
    let a2 = scrape(3_600_000, 30_000, 120, |_| 1.0);
    let b1 = scrape(3200, 30_000, 120, |_| 2.0);
    let b2 = scrape(3_603_200, 30_000, 120, |_| 2.0);
    let mut chunks = vec![chunk(&a1), chunk(&b1), chunk(&a2), chunk(&b2)];
    chunks.sort_by_key(|c| (c.min_time, c.max_time));
    let groups = split_overlapping(&chunks);
    assert_eq!(groups, vec![vec![0, 2], vec![1, 3]]);
    let got = series_samples(&chunks, 0, 8_000_000, false).unwrap();
    assert_eq!(got.len(), 240);
    assert!(got.iter().all(|s| s.1 == 1.0));
    // bounds are inclusive and apply before deduplication
    let got = series_samples(&chunks, 30_000, 90_000, false).unwrap();
    assert_eq!(
        got.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![30_000, 60_000, 90_000]
    );
}

#[test]
fn counter_functions_see_a_reset_free_total() {
    // 10, 20, 5 (a reset), NaN (a staleness marker), 15: Thanos' counter iterator makes it
    // 10, 20, 25, 35, starting from the first sample even before the bounds
    let s = vec![
        (0, 10.0),
        (1000, 20.0),
        (2000, 5.0),
        (3000, f64::from_bits(0x7ff0_0000_0000_0002)),
        (4000, 15.0),
    ];
    let c = [chunk(&s)];
    let got = series_samples(&c, 1000, 10_000, true).unwrap();
    assert_eq!(got, vec![(1000, 20.0), (2000, 25.0), (4000, 35.0)]);
    let raw = series_samples(&c, 1000, 10_000, false).unwrap();
    assert_eq!(raw.len(), 4);
    assert!(raw[2].1.is_nan());
}

#[test]
fn merge_keeps_staleness_markers_bit_exact() {
    // both replicas end with a marker; the merged series must end with the very same
    // bits, or the engine cannot tell the marker from a NaN value
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let mut a = scrape(0, 1000, 10, |_| 1.0);
    a.push((10_000, stale));
    let mut b = scrape(500, 1000, 10, |_| 1.0);
    b.push((10_500, stale));
    let got = merge(vec![a, b], false);
    assert_eq!(got.len(), 11);
    assert_eq!(got[10].0, 10_000);
    assert_eq!(got[10].1.to_bits(), 0x7ff0_0000_0000_0002);
}

#[test]
fn three_replicas() {
    let a = scrape(0, 30_000, 10, |_| 1.0);
    let b = scrape(1000, 30_000, 100, |_| 2.0);
    let c = scrape(2000, 30_000, 100, |_| 3.0);
    let got = merge(vec![a, b, c], false);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(got[0].1, 1.0);
    assert!(got.len() > 90);
}

#[test]
fn unknown_encoding_is_named() {
    let mut c = chunk(&scrape(0, 1000, 3, |_| 1.0));
    c.raw.as_mut().unwrap().r#type = Encoding::Histogram as i32;
    let err = series_samples(&[c], 0, 10_000, false).unwrap_err();
    assert!(err.to_string().contains("HISTOGRAM"), "{err}");
}

#[test]
fn a_counters_running_total_depends_on_where_the_request_starts() {
    // why the gRPC source asks a counter's windows one request each: Thanos adds the
    // values before each reset to a running total from the first sample a request
    // returns. The same samples of the second hour, served in a chunk that starts an hour
    // earlier (one request over two windows, a reset in between) or trimmed to the window
    // (a sidecar trims its chunks to the request), give increases that differ in the last
    // bits, and so would the files
    let samples = scrape(0, 15_000, 480, |t| {
        let t = if t >= 1_800_000 { t - 1_800_000 } else { t };
        (t as f64 / 15_000.0) * 0.173 + 0.01
    });
    let (mint, maxt) = (3_600_000 - 300_000 + 1, 7_200_000 - 15_000);
    let increases =
        |s: &[Sample]| -> Vec<u64> { s.windows(2).map(|w| (w[1].1 - w[0].1).to_bits()).collect() };
    let long = series_samples(&[chunk(&samples)], mint, maxt, true).unwrap();
    let trimmed: Vec<Sample> = samples.iter().copied().filter(|s| s.0 >= mint).collect();
    let short = series_samples(&[chunk(&trimmed)], mint, maxt, true).unwrap();
    assert_eq!(long.len(), short.len());
    assert!(long.iter().zip(&short).all(|(a, b)| a.0 == b.0));
    let (long, short) = (increases(&long), increases(&short));
    let differ = long.iter().zip(&short).filter(|(a, b)| a != b).count();
    assert!(differ > 0, "the increases are bit-identical");
    // gauges pass through: the same samples either way
    let long = series_samples(&[chunk(&samples)], mint, maxt, false).unwrap();
    let short = series_samples(&[chunk(&trimmed)], mint, maxt, false).unwrap();
    assert_eq!(long, short);
}

/// What a trimming store sends for `[mint, maxt]` alone: each replica's chunks of 120
/// samples, those across an edge re-encoded with their samples inside.
fn sidecar_answer(replicas: &[&[Sample]], mint: i64, maxt: i64) -> Vec<AggrChunk> {
    let mut out: Vec<AggrChunk> = replicas
        .iter()
        .flat_map(|r| r.chunks(120))
        .filter_map(|c| {
            let inside: Vec<Sample> = c
                .iter()
                .copied()
                .filter(|s| s.0 >= mint && s.0 <= maxt)
                .collect();
            (!inside.is_empty()).then(|| chunk(&inside))
        })
        .collect();
    out.sort_by_key(|c| (c.min_time, c.max_time));
    out
}

fn bits(s: &[Sample]) -> Vec<(i64, u64)> {
    s.iter().map(|x| (x.0, x.1.to_bits())).collect()
}

#[test]
fn a_window_cut_from_a_longer_request_is_the_windows_own_request() {
    // an HA pair of counters (a reset in the middle) scraped 2.2 s apart, 2 h in chunks of
    // 30 min, asked as one request over both hours; the second hour's window cut from it
    // must give bit for bit the samples of a request for that window alone, counter-
    // adjusted or not, even though Thanos' pseudo-replicas and running totals depend on
    // where a request starts
    let counter = |t: i64| {
        let t = if t >= 5_400_000 { t - 5_400_000 } else { t };
        (t as f64 / 15_000.0) * 0.173 + 0.01
    };
    let a = scrape(1_000, 15_000, 480, counter);
    let b = scrape(3_200, 15_000, 480, |t| counter(t) + 0.003);
    let (long_min, long_max) = (1, 7_200_000);
    let long = sidecar_answer(&[&a, &b], long_min, long_max);
    assert!(trimmed_to(&long, long_min, long_max));
    assert_eq!(split_overlapping(&long).len(), 2, "the replicas overlap");
    for (mint, maxt) in [
        (3_600_000 - 300_000 + 1, 7_200_000 - 15_000),
        (1_800_000 - 300_000 + 1, 3_600_000 - 15_000),
        (3_000_001, 3_000_001 + 60_000),
    ] {
        let alone = sidecar_answer(&[&a, &b], mint, maxt);
        let cut = cut_to(&long, mint, maxt).unwrap();
        assert_eq!(
            cut.iter()
                .map(|c| (c.min_time, c.max_time))
                .collect::<Vec<_>>(),
            alone
                .iter()
                .map(|c| (c.min_time, c.max_time))
                .collect::<Vec<_>>()
        );
        for is_counter in [false, true] {
            let want = series_samples(&alone, mint, maxt, is_counter).unwrap();
            let got = series_samples(&cut, mint, maxt, is_counter).unwrap();
            assert!(!want.is_empty());
            assert_eq!(
                bits(&got),
                bits(&want),
                "{mint}..{maxt} counter {is_counter}"
            );
        }
    }
    // a store gateway's whole chunks reach past a request's range: not a trimmed answer
    let whole: Vec<AggrChunk> = a.chunks(120).map(chunk).collect();
    assert!(!trimmed_to(&whole, 3_300_001, 7_200_000));
}

#[test]
fn cutting_for_every_window_at_once_cuts_as_each_window_alone() {
    // what a multi-window request sets aside: each edge chunk decoded once for all windows,
    // and each window's chunks as `chunk::cut` gives them range by range
    let a = scrape(1_000, 15_000, 480, |t| t as f64);
    let b = scrape(3_200, 15_000, 480, |t| t as f64 + 0.5);
    let long = sidecar_answer(&[&a, &b], 1, 7_200_000);
    let ranges = [
        (1, 1_800_000),
        (1_500_001, 3_600_000),
        (3_300_001, 5_400_000),
        (5_100_001, 7_200_000),
        (7_200_001, 9_000_000),
    ];
    let each = cut_to_each(&long, &ranges).unwrap();
    assert_eq!(each.len(), ranges.len());
    for (own, &(mint, maxt)) in each.iter().zip(&ranges) {
        let mut want = Vec::new();
        for c in &long {
            let raw = c.raw.as_ref().unwrap();
            let cut = crate::chunk::cut(&raw.data, mint, maxt, &mut Vec::new()).unwrap();
            want.extend(cut.into_chunk(raw));
        }
        want.sort_by_key(|c| (c.min_time, c.max_time));
        assert_eq!(own, &want, "{mint}..{maxt}");
    }
    assert!(each[4].is_empty(), "no chunk reaches the last range");
}

#[test]
fn before_v0_35_the_first_sample_is_a_switch_that_lifts_the_other_replica() {
    // a starts 100 above b and stops after two samples. Thanos v0.31 to v0.34 began the merge
    // as if it had last taken b: taking a's first sample was a switch, which lifted b by the
    // difference to a's first value (100 - 1 = 99) at once; the later switch back to b then
    // found b high enough. Current releases lift b only at that switch, by 101 - 4 = 97.
    let a = vec![(0, 100.0), (10_000, 101.0)];
    let b = scrape(5_000, 10_000, 6, |t| 1.0 + ((t - 5_000) / 10_000) as f64);
    let legacy = Reading {
        counter: true,
        first_sample_switches: true,
    };
    let now = merge(vec![a.clone(), b.clone()], true);
    let then = merge(vec![a, b], legacy);
    assert_eq!(now[..2], then[..2], "a's samples are a's: {now:?} {then:?}");
    let lifted = |got: &[Sample]| got[2].1 - (1.0 + ((got[2].0 - 5_000) / 10_000) as f64);
    assert_eq!(
        (lifted(&now), lifted(&then)),
        (97.0, 99.0),
        "{now:?} {then:?}"
    );
}

#[test]
fn before_v0_35_a_first_replica_with_no_sample_in_range_lifts_nothing() {
    // a's only sample in range was a staleness marker, which the counter reading drops
    let legacy = Reading {
        counter: true,
        first_sample_switches: true,
    };
    let b = scrape(5_000, 10_000, 6, |t| 1.0 + (t / 10_000) as f64);
    assert_eq!(merge(vec![Vec::new(), b.clone()], legacy), b);
}

#[test]
fn a_series_scraped_to_a_request_s_end_shows_the_trim_one_stopped_before_does_not() {
    // 15 s samples from 1 s to ~2 h, in 120-sample chunks
    let samples: Vec<Sample> = (0..480).map(|i| (1_000 + i * 15_000, i as f64)).collect();
    let chunks: Vec<AggrChunk> = samples
        .chunks(120)
        .filter_map(crate::chunk::xor_chunk)
        .collect();
    let last = samples.last().unwrap().0;
    // within an interval and a half of the end, not further
    assert!(trimmed_at_the_end(&chunks, last));
    assert!(trimmed_at_the_end(&chunks, last + 22_500));
    assert!(!trimmed_at_the_end(&chunks, last + 22_501));
    // a lone sample tells no interval
    let lone = [crate::chunk::xor_chunk(&samples[..1]).unwrap()];
    assert!(!trimmed_at_the_end(&lone, samples[0].0));
    assert!(!trimmed_at_the_end(&[], 0));
    // the second chunk spans 3_300_001 (a window's start), none spans 1_786_000..1_800_000
    assert!(crosses_a_range(&chunks, &[(3_300_001, 7_200_000)]));
    assert!(!crosses_a_range(&chunks, &[(1_786_001, 1_800_999)]));
}

/// The merge as it was before the two-replica shortcut: every pseudo-replica decoded.
fn merged_in_full(chunks: &[AggrChunk], range: (i64, i64), reading: Reading) -> Vec<Sample> {
    let lanes = split_overlapping(chunks);
    let mut replicas = Vec::new();
    for lane in &lanes {
        let mut s = Vec::new();
        replica_samples(
            chunks,
            lane,
            range,
            reading.counter,
            &mut Vec::new(),
            &mut s,
        )
        .unwrap();
        replicas.push(s);
    }
    if replicas.len() == 1 {
        return replicas.pop().unwrap();
    }
    let mut out = Vec::new();
    merge_into(&replicas, reading, &mut out);
    out
}

/// `n` scrapes of a counter that grows by each value's step, resets where its kind is 0 and
/// has a staleness marker where it is 1, with the `(from, len)` gaps of scrapes dropped.
fn counter_scrape(
    offset: i64,
    every: i64,
    n: usize,
    gaps: &[(usize, usize)],
    values: &[(u8, u32)],
) -> Vec<Sample> {
    let mut v = 0.0;
    let mut s = scrape(offset, every, n, |_| 0.0);
    for (x, &(kind, step)) in s.iter_mut().zip(values) {
        v = if kind == 0 { 0.0 } else { v + f64::from(step) };
        x.1 = if kind == 1 {
            f64::from_bits(0x7ff0000000000002)
        } else {
            v
        };
    }
    for &(from, len) in gaps {
        let end = (from + len).min(s.len());
        s.drain(from.min(end)..end);
    }
    s
}

/// An HA pair's answer: each replica's samples in chunks of `per_chunk`.
fn pair(a: &[Sample], b: &[Sample], per_chunk: usize) -> Vec<AggrChunk> {
    let mut out: Vec<AggrChunk> = [a, b]
        .iter()
        .flat_map(|r| r.chunks(per_chunk.max(1)))
        .map(chunk)
        .collect();
    out.sort_by_key(|c| (c.min_time, c.max_time));
    out
}

#[test]
fn an_ha_pair_is_merged_as_in_full_across_gaps_starts_and_ends() {
    let gauge = |t: i64| (t / 1000 % 97) as f64;
    let a = scrape(0, 30_000, 240, gauge);
    let b = scrape(3200, 30_000, 240, |t| gauge(t) + 0.5);
    let mut a_gap = a.clone();
    a_gap.retain(|s| !(1_800_000..2_700_000).contains(&s.0));
    let mut b_gap = b.clone();
    b_gap.retain(|s| !(600_000..900_000).contains(&s.0));
    let b_first = scrape(-4000, 30_000, 240, |t| gauge(t) + 0.5);
    let a_ends_early = scrape(0, 30_000, 100, gauge);
    // b scrapes at a's instants: a, first in the merge, wins the ties
    let b_with_a = scrape(0, 30_000, 240, |t| gauge(t) + 0.5);
    let range = (-10_000, 7_200_000);
    for (what, a, b, one_replica) in [
        ("no gap: a alone", &a, &b, true),
        ("a gap in a: b fills it", &a_gap, &b, false),
        ("a gap in b: a alone", &a, &b_gap, true),
        ("b starts first: b alone", &a, &b_first, true),
        ("a gap in a, b first: b alone", &a_gap, &b_first, true),
        ("a ends first: b goes on", &a_ends_early, &b, false),
        ("b at a's instants: a alone", &a, &b_with_a, true),
    ] {
        let chunks = pair(a, b, 120);
        for counter in [false, true] {
            let got = series_samples(&chunks, range.0, range.1, counter).unwrap();
            assert_eq!(
                bits(&got),
                bits(&merged_in_full(&chunks, range, counter.into())),
                "{what}, counter {counter}"
            );
            let one = |r: &[Sample]| {
                r.iter().all(|s| gauge(s.0) == s.1) || r.iter().all(|s| gauge(s.0) + 0.5 == s.1)
            };
            if !counter {
                assert_eq!(one(&got), one_replica, "{what}");
            }
        }
    }
}

#[test]
fn the_first_replica_alone_is_what_the_whole_merge_gives() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    // an HA pair: one scrape interval, offset replicas, gaps (a restart, a lost scrape),
    // counters that reset, staleness markers, chunks of any size, any range
    let replica = |every: i64| {
        (
            0..every,
            100usize..300,
            proptest::collection::vec((0usize..300, 1usize..12), 0..3),
            proptest::collection::vec((0u8..16, 0u32..50), 300),
        )
    };
    let pair = proptest::sample::select(vec![15_000i64, 30_000, 60_000])
        .prop_flat_map(move |every| (Just(every), replica(every), replica(every)));
    let case = (
        pair,
        20usize..150,
        (-60_000i64..3_600_000, 0i64..9_000_000),
        any::<bool>(),
    );
    let mut runner = TestRunner::new(Config::with_cases(2000));
    let (alone, merged) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&case, |((every, a, b), per_chunk, (mint, len), counter)| {
            let lanes: Vec<Vec<Sample>> = [a, b]
                .into_iter()
                .map(|(offset, n, gaps, values)| counter_scrape(offset, every, n, &gaps, &values))
                .collect();
            let chunks = self::pair(&lanes[0], &lanes[1], per_chunk);
            let range = (mint, mint + len);
            let reading = Reading::from(counter);
            let full = merged_in_full(&chunks, range, reading);
            let got = series_samples(&chunks, range.0, range.1, reading).unwrap();
            prop_assert_eq!(bits(&got), bits(&full));
            let split = split_overlapping(&chunks);
            prop_assert_eq!(overlapping(&chunks), split.len() > 1);
            if split.len() == 2 {
                let mut first = Vec::new();
                replica_samples(
                    &chunks,
                    &split[0],
                    range,
                    counter,
                    &mut Vec::new(),
                    &mut first,
                )
                .unwrap();
                let second = penalty::Second::new(&chunks, &split[1], range);
                if penalty::first_alone(&first, second) {
                    prop_assert_eq!(bits(&first), bits(&full));
                    alone.set(alone.get() + 1);
                } else {
                    merged.set(merged.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    // both ways are taken, or this test would not tell
    let (alone, merged) = (alone.get(), merged.get());
    assert!(
        alone > 150 && merged > 150,
        "{alone} alone, {merged} merged"
    );
}

proptest::proptest! {
    #[test]
    fn two_replicas_merge_as_in_full(
        replicas in proptest::collection::vec(
            (
                -40_000i64..40_000,
                proptest::sample::select(vec![15_000i64, 30_000, 60_000]),
                0usize..300,
                proptest::collection::vec((0usize..300, 0usize..60), 0..3),
                proptest::collection::vec((0u8..8, 0u32..50), 300),
            ),
            2,
        ),
        per_chunk in 20usize..150,
        (mint, len) in (-60_000i64..3_600_000, 0i64..9_000_000),
        counter in proptest::bool::ANY,
    ) {
        let lanes: Vec<Vec<Sample>> = replicas
            .iter()
            .map(|(offset, every, n, gaps, values)| counter_scrape(*offset, *every, *n, gaps, values))
            .collect();
        let chunks = pair(&lanes[0], &lanes[1], per_chunk);
        let range = (mint, mint + len);
        // the reading before v0.35 is merged in full, as before
        let reading = Reading { counter, first_sample_switches: false };
        let got = series_samples(&chunks, range.0, range.1, reading).unwrap();
        proptest::prop_assert_eq!(bits(&got), bits(&merged_in_full(&chunks, range, reading)));
    }
}

#[test]
fn the_first_replica_is_alone_to_the_millisecond() {
    // a at 0, 30 s, 60 s; after a's first sample, b is looked at again from 5 s on, after
    // the second from 60 s + 1 ms
    let first = scrape(0, 30_000, 3, |_| 1.0);
    let second = |s: &[Sample]| [chunk(s)];
    let alone =
        |b: &[AggrChunk]| penalty::first_alone(&first, penalty::Second::new(b, &[0], (0, 200_000)));
    // at a's instants: a wins the ties
    assert!(alone(&second(&[(30_000, 2.0), (60_000, 2.0)])));
    // a millisecond earlier: b's sample is taken
    assert!(!alone(&second(&[(29_999, 2.0), (59_999, 2.0)])));
    // within the penalty after a's first sample: not looked at
    assert!(alone(&second(&[(4_000, 2.0)])));
    // the same inside a chunk that b's reading has to decode: a tie is a's, an earlier
    // sample b's, also the one after a sample a millisecond before the penalty's end
    assert!(alone(&second(&[
        (2_000, 2.0),
        (30_000, 2.0),
        (60_000, 2.0)
    ])));
    assert!(!alone(&second(&[
        (2_000, 2.0),
        (29_999, 2.0),
        (60_000, 2.0)
    ])));
    assert!(!alone(&second(&[
        (2_000, 2.0),
        (5_000, 2.0),
        (20_000, 2.0)
    ])));
    // past a's end, from the penalty on: taken; before it: not
    assert!(!alone(&second(&[(60_000 + 60_001, 2.0)])));
    assert!(alone(&second(&[(60_000, 2.0), (60_000 + 60_000, 2.0)])));
}
