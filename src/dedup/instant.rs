//! What a series read by instant selectors alone need not decode: the chunks before the one
//! that holds the first step.

use crate::chunk::XorIter;
use crate::store::proto::AggrChunk;

/// Where a pseudo-replica's chunks (`idx`) are read from when every selector reading them is
/// an instant one whose first step is `at`: the last chunk whose first sample, read from its
/// data, is at or before `at`. The newest sample at or before any step from `at` on lies in
/// it or after it, and no such step looks further back, so the chunks before it change no
/// value (at 30 s scrapes a window otherwise decodes an hour's chunk for its lookback alone).
/// Nothing is skipped (0) when no chunk qualifies.
pub(super) fn instant_start(chunks: &[AggrChunk], idx: &[usize], at: i64) -> usize {
    match idx.iter().rposition(|&i| chunks[i].min_time <= at) {
        Some(k) if starts_by(&chunks[idx[k]], at) => k,
        _ => 0,
    }
}

/// Whether a chunk's first sample, read from its data, is at or before `at`: its bounds are
/// taken for what they say only where its data agrees.
fn starts_by(chunk: &AggrChunk, at: i64) -> bool {
    let first = chunk
        .raw
        .as_ref()
        .and_then(|r| XorIter::new(&r.data).ok()?.next_sample().ok()?);
    first.is_some_and(|(t, _)| t <= at)
}

/// `instant_start` over a series' chunks as a store sent them, when they are one replica (no
/// chunk starts before the one before it ends, so the merge has one pseudo-replica): where a
/// window whose instant selectors all start at `at` reads them from. 0 when they are not.
pub fn instant_skip(chunks: &[AggrChunk], at: i64) -> usize {
    if super::overlapping(chunks) {
        return 0;
    }
    match chunks.iter().rposition(|c| c.min_time <= at) {
        Some(k) if starts_by(&chunks[k], at) => k,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::{Reading, Scratch, prometheus_samples_into, series_samples_into};
    use crate::model::Sample;

    /// The newest sample at or before `t`, as an instant selector at step `t` takes it.
    fn newest(samples: &[Sample], t: i64) -> Option<(i64, u64)> {
        let k = samples.partition_point(|s| s.0 <= t);
        k.checked_sub(1)
            .map(|k| (samples[k].0, samples[k].1.to_bits()))
    }

    #[test]
    fn steps_from_the_first_see_the_samples_of_a_whole_read() {
        // 30 s scrapes in 120-sample chunks with a gap, a stale marker and a chunk of one
        let mut samples: Vec<Sample> = (0..600)
            .filter(|i| !(250..262).contains(i))
            .map(|i| (1_000 + i * 30_000, (i % 17) as f64))
            .collect();
        samples[300].1 = f64::from_bits(crate::model::STALE_NAN_BITS);
        let mut chunks: Vec<AggrChunk> = samples
            .chunks(120)
            .filter_map(crate::chunk::xor_chunk)
            .collect();
        chunks.extend(crate::chunk::xor_chunk(&[(18_000_000, 1.0)]));
        let (mut whole, mut part, mut scratch) = (Vec::new(), Vec::new(), Scratch::default());
        let reading = Reading::from(false);
        let end = 18_100_000;
        for at in (-60_000..end).step_by(7_001) {
            let range = (at - 300_000 + 1, end);
            series_samples_into(&chunks, range, reading, None, &mut scratch, &mut whole).unwrap();
            series_samples_into(&chunks, range, reading, Some(at), &mut scratch, &mut part)
                .unwrap();
            assert!(part.len() <= whole.len());
            for t in (at..end).step_by(10_000) {
                assert_eq!(newest(&part, t), newest(&whole, t), "from {at}, step {t}");
            }
            prometheus_samples_into(&chunks, range, Some(at), &mut scratch, &mut part).unwrap();
            for t in (at..end).step_by(10_000) {
                assert_eq!(newest(&part, t), newest(&whole, t), "from {at}, step {t}");
            }
        }
        // from the middle of the third chunk, the first two are not read
        let at = samples[300].0;
        series_samples_into(
            &chunks,
            (0, end),
            reading,
            Some(at),
            &mut scratch,
            &mut part,
        )
        .unwrap();
        assert_eq!(part[0].0, chunks[2].min_time);
    }

    #[test]
    fn a_chunk_whose_bounds_say_more_than_its_data_is_not_skipped_to() {
        let early: Vec<Sample> = (0..10).map(|i| (i * 1_000, i as f64)).collect();
        let late: Vec<Sample> = (0..10).map(|i| (20_000 + i * 1_000, i as f64)).collect();
        let mut chunks: Vec<AggrChunk> = [&early, &late]
            .iter()
            .filter_map(|s| crate::chunk::xor_chunk(s))
            .collect();
        assert_eq!(instant_start(&chunks, &[0, 1], 25_000), 1);
        assert_eq!(instant_start(&chunks, &[0, 1], 19_999), 0);
        // the second chunk claims to start at 15 s: its data says 20 s, so at 18 s the first
        // chunk's last sample is the newest and nothing is skipped
        chunks[1].min_time = 15_000;
        assert_eq!(instant_start(&chunks, &[0, 1], 18_000), 0);
        // counters are read from their first sample whatever the selector
        let (mut part, mut scratch) = (Vec::new(), Scratch::default());
        series_samples_into(
            &chunks,
            (0, 40_000),
            Reading::from(true),
            Some(25_000),
            &mut scratch,
            &mut part,
        )
        .unwrap();
        assert_eq!(part[0].0, 0);
    }
}
