use super::*;
use proptest::prelude::*;

fn decode(data: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    let mut out = Vec::new();
    decode_into(data, &mut out)?;
    Ok(out)
}

fn same(a: &[Sample], b: &[Sample]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| x.0 == y.0 && x.1.to_bits() == y.1.to_bits())
}

#[test]
fn empty_and_single() {
    assert_eq!(decode(&encode(&[])).unwrap(), vec![]);
    assert_eq!(decode(&encode(&[(-5, 1.5)])).unwrap(), vec![(-5, 1.5)]);
}

#[test]
fn regular_scrapes_with_jitter_and_gaps() {
    let mut s = Vec::new();
    let mut t = 1_761_868_800_123i64;
    for i in 0..500 {
        t += 30_000 + (i % 7) - 3;
        if i == 200 {
            t += 720_000; // a scrape gap
        }
        s.push((t, 1000.0 + i as f64 * 0.25));
    }
    let c = encode(&s);
    assert!(same(&decode(&c).unwrap(), &s));
    // about 2 bits of timestamp and a few bits of value per sample
    assert!(c.len() < 500 * 4, "chunk is {} bytes", c.len());
}

#[test]
fn special_values_round_trip_bit_exact() {
    let stale = f64::from_bits(0x7ff0_0000_0000_0002);
    let s = vec![
        (0, f64::NAN),
        (1, stale),
        (2, f64::INFINITY),
        (3, f64::NEG_INFINITY),
        (4, -0.0),
        (5, 0.0),
        (6, f64::MIN_POSITIVE),
        (7, f64::MAX),
    ];
    assert!(same(&decode(&encode(&s)).unwrap(), &s));
}

#[test]
fn trailing_padding_is_ignored() {
    let s = vec![(1000, 1.0), (2000, 2.0), (3000, 2.5)];
    let mut c = encode(&s);
    c.push(0);
    assert!(same(&decode(&c).unwrap(), &s));
}

#[test]
fn truncation_is_reported_with_position() {
    let s: Vec<Sample> = (0..100).map(|i| (i * 15_000, (i * i) as f64)).collect();
    let c = encode(&s);
    let err = decode(&c[..c.len() / 2]).unwrap_err();
    assert!(matches!(err, ChunkError::Truncated(n, 100) if n > 10 && n < 100));
    assert_eq!(decode(&c[..1]).unwrap_err(), ChunkError::Truncated(0, 0));
}

#[test]
fn dod_bucket_boundaries() {
    // deltas whose delta-of-delta sits on each bucket edge, both signs
    let mut t = 0i64;
    let mut s = vec![(t, 0.0)];
    let mut delta = 1_000_000i64;
    for dod in [
        0i64,
        1,
        -1,
        8191,
        -8191,
        8192,
        -8192,
        65535,
        65536,
        -65536,
        524_288,
        -524_288,
        524_289,
        1 << 40,
        -(1 << 40),
    ] {
        delta += dod;
        t += delta;
        s.push((t, dod as f64));
    }
    assert!(same(&decode(&encode(&s)).unwrap(), &s));
}

/// Samples from `start` at the steps' time deltas, each value chosen by its mode from the
/// step's random bits and the value before.
fn samples(
    start: i32,
    steps: Vec<(i64, u64, u8)>,
    value: impl Fn(u8, u64, f64) -> f64,
) -> Vec<Sample> {
    let mut t = i64::from(start);
    let mut last = 0.0f64;
    steps
        .into_iter()
        .map(|(dt, bits, mode)| {
            t += dt;
            last = value(mode, bits, last);
            (t, last)
        })
        .collect()
}

proptest! {
    #[test]
    fn round_trip(start in any::<i32>(), steps in prop::collection::vec((0i64..10_000_000, any::<u64>(), 0u8..4), 0..300)) {
        let s = samples(start, steps, |mode, bits, last| match mode {
            0 => f64::from_bits(bits),
            1 => last,
            2 => last + (bits % 1000) as f64,
            _ => (bits % 100) as f64 * 0.1,
        });
        let c = encode(&s);
        let got = decode(&c).unwrap();
        prop_assert!(same(&got, &s));
        let mut it = XorIter::new(&c).unwrap();
        let mut stepwise = Vec::new();
        while let Some(x) = it.next_sample().unwrap() {
            stepwise.push(x);
        }
        prop_assert!(same(&stepwise, &s));
    }

    #[test]
    fn decoding_until_a_time_is_the_prefix_up_to_it(
        start in any::<i32>(),
        steps in prop::collection::vec((0i64..100_000, any::<u64>()), 0..300),
        at in 0usize..320,
        past in 0i64..2,
    ) {
        let s = samples(start, steps.into_iter().map(|(dt, bits)| (dt, bits, 0)).collect(), |_, bits, _| f64::from_bits(bits));
        // at a sample's time, just after it, before the first and after the last
        let maxt = match s.get(at) {
            Some(x) => x.0 + past,
            None if at % 2 == 0 => i64::MAX,
            None => i64::MIN,
        };
        let mut got = Vec::new();
        decode_until(&encode(&s), maxt, &mut got).unwrap();
        let want: Vec<Sample> = s.iter().copied().take_while(|x| x.0 <= maxt).collect();
        prop_assert!(same(&got, &want));
    }

    #[test]
    fn a_cut_holds_the_samples_inside(
        start in any::<i32>(),
        steps in prop::collection::vec((0i64..100_000, any::<u64>(), 0u8..5), 1..300),
        (from, len, before) in (0usize..300, 0usize..300, 0i64..200_000),
    ) {
        // runs of equal values, counters, and values that open new windows, as scrapes give
        let s = samples(start, steps, |mode, bits, last| match mode {
            0 => f64::from_bits(bits),
            1 | 2 => last,
            3 => last + (bits % 1000) as f64 * 0.001,
            _ => (bits % 100) as f64 * 0.1,
        });
        let data = encode(&s);
        let (from, to) = (from.min(s.len() - 1), (from + len).min(s.len() - 1));
        let (mint, maxt) = (s[from].0, s[to].0);
        let inside: Vec<Sample> = s.iter().copied().filter(|&(t, _)| t >= mint && t <= maxt).collect();
        let whole = cut(&data, mint, maxt, &mut Vec::new()).unwrap();
        // decoded from a time at or before the range's start on, the cut is the same
        let (mut kept, mut marks) = (Vec::new(), Vec::new());
        let skipped = decode_marked_from(&data, mint - before, &mut kept, &mut marks).unwrap();
        prop_assert_eq!(skipped + kept.len(), s.len());
        prop_assert_eq!(&cut_decoded(&data, (skipped, &kept), &marks, mint, maxt), &whole);
        match whole {
            Cut::Part { data: part, first, last } => {
                prop_assert_eq!((first, last), (mint, maxt));
                prop_assert!(same(&decode(&part).unwrap(), &inside));
                // a first sample written whole, the rest at most as long as in the original
                prop_assert!(part.len() <= data.len() + 20, "{} bytes of {}", part.len(), data.len());
                if inside[0] == s[0] {
                    prop_assert_eq!(part, encode(&inside));
                }
            }
            Cut::Whole { first, last } => {
                prop_assert_eq!(inside.len(), s.len());
                prop_assert_eq!((first, last), (s[0].0, s[s.len() - 1].0));
            }
            Cut::Empty => prop_assert!(false, "a sample is inside"),
        }
    }

    #[test]
    fn marks_are_where_the_samples_end(data in prop::collection::vec(any::<u8>(), 0..200)) {
        // a chunk cut after each sample decodes to the samples up to it
        let (mut samples, mut marks) = (Vec::new(), Vec::new());
        if decode_marked(&data, &mut samples, &mut marks).is_ok() {
            prop_assert_eq!(samples.len(), marks.len());
            for (i, m) in marks.iter().enumerate() {
                let mut prefix = ((i + 1) as u16).to_be_bytes().to_vec();
                prefix.extend_from_slice(&data[2..2 + (m.end as usize).div_ceil(8)]);
                prop_assert!(same(&decode(&prefix).unwrap(), &samples[..=i]));
            }
        }
    }

    #[test]
    fn garbage_never_panics_and_both_decoders_agree(data in prop::collection::vec(any::<u8>(), 0..200)) {
        let fast = decode(&data);
        let mut slow = Vec::new();
        let slow = XorIter::new(&data).and_then(|mut it| {
            while let Some(x) = it.next_sample()? {
                slow.push(x);
            }
            Ok(slow)
        });
        match (fast, slow) {
            (Ok(a), Ok(b)) => prop_assert!(same(&a, &b)),
            (Err(a), Err(b)) => prop_assert_eq!(a, b),
            (a, b) => prop_assert!(false, "decoders disagree: {:?} vs {:?}", a, b),
        }
    }
}

#[test]
fn a_chunk_is_cut_to_a_range() {
    let samples: Vec<Sample> = (0..10).map(|i| (i * 1000, i as f64 * 0.5)).collect();
    let data = encode(&samples);
    let mut scratch = Vec::new();
    assert_eq!(
        cut(&data, 0, 9000, &mut scratch).unwrap(),
        Cut::Whole {
            first: 0,
            last: 9000
        }
    );
    let Cut::Part {
        data: part,
        first,
        last,
    } = cut(&data, 2001, 5000, &mut scratch).unwrap()
    else {
        panic!("samples 3 to 5 are inside");
    };
    assert_eq!((first, last), (3000, 5000));
    assert!(same(&decode(&part).unwrap(), &samples[3..6]));
    assert_eq!(
        cut(&data, 0, 5000, &mut scratch).unwrap(),
        Cut::Part {
            data: encode(&samples[..6]),
            first: 0,
            last: 5000
        }
    );
    assert_eq!(cut(&data, 9001, 20_000, &mut scratch).unwrap(), Cut::Empty);
    assert!(cut(&data[..3], 0, 9000, &mut scratch).is_err());
}
