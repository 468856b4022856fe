//! The chunks of a longer request cut to what a request for one of its windows gets: how a
//! multi-window request gives each window the same input as its own request would.

use super::{SeriesDataError, check_xor};
use crate::store::proto::AggrChunk;

/// Whether a store trimmed these chunks to a request over `[mint, maxt]`: none of them holds
/// a sample outside it. Prometheus' TSDB behind sidecars and remote read re-encodes a
/// request's edge chunks with only the samples inside its range; a store gateway, a receiver
/// and a ruler (Thanos' TSDB store asks its TSDB not to trim) send whole chunks, which reach
/// past the range wherever a chunk spans one of its edges.
pub fn trimmed_to(chunks: &[AggrChunk], mint: i64, maxt: i64) -> bool {
    chunks
        .iter()
        .all(|c| c.min_time >= mint && c.max_time <= maxt)
}

/// Whether chunks inside a request's range (see `trimmed_to`) show the store trimmed them:
/// the series' last sample lies within an interval and a half before `maxt` (its interval
/// estimated from its chunks' spans and sample counts), as a series scraped on past the
/// request's end does from a trimming store; a store sending whole chunks sends it past
/// `maxt`. A series that stopped earlier is sent alike by both: `false`, as for a series of
/// single-sample chunks. (The start is no evidence: a series born right after it, as a
/// CronJob's pod on the hour, looks trimmed there.)
pub fn trimmed_at_the_end(chunks: &[AggrChunk], maxt: i64) -> bool {
    let interval = chunks
        .iter()
        .filter_map(|c| {
            let n = i64::from(
                crate::chunk::XorIter::new(&c.raw.as_ref()?.data)
                    .ok()?
                    .len(),
            );
            (n > 1).then(|| (c.max_time - c.min_time) / (n - 1))
        })
        .min();
    let (Some(interval), Some(last)) = (interval, chunks.iter().map(|c| c.max_time).max()) else {
        return false;
    };
    maxt - last <= interval + interval / 2
}

/// Whether a chunk spans an edge of one of `ranges`: cutting the chunks to each range
/// changes them.
pub fn crosses_a_range(chunks: &[AggrChunk], ranges: &[(i64, i64)]) -> bool {
    chunks.iter().any(|c| {
        ranges.iter().any(|&(mint, maxt)| {
            (c.min_time < mint && c.max_time >= mint) || (c.min_time <= maxt && c.max_time > maxt)
        })
    })
}

/// The chunks a trimming store (see `trimmed_to`) sends for a request over `[mint, maxt]`,
/// from the chunks it sent for a longer request: those inside the range as they are, the
/// ones across an edge re-encoded with their samples inside it, in the order the Querier's
/// proxy sorts them. A window's samples, deduplicated and counter-adjusted from these, are
/// then bit for bit what a request for that window alone gives (Thanos splits overlapping
/// replicas by chunk bounds, and a counter's running total starts at the first sample a
/// request returns: both depend on the cut).
pub fn cut_to(
    chunks: &[AggrChunk],
    mint: i64,
    maxt: i64,
) -> Result<Vec<AggrChunk>, SeriesDataError> {
    let mut each = cut_to_each(chunks, &[(mint, maxt)])?;
    Ok(each.pop().unwrap_or_default())
}

/// `cut_to` for each of `ranges` at once: a chunk across several of them is decoded once.
pub fn cut_to_each(
    chunks: &[AggrChunk],
    ranges: &[(i64, i64)],
) -> Result<Vec<Vec<AggrChunk>>, SeriesDataError> {
    let mut out = vec![Vec::new(); ranges.len()];
    let (mut scratch, mut marks) = (Vec::new(), Vec::new());
    let crosses = |c: &AggrChunk, &(mint, maxt): &(i64, i64)| {
        c.max_time >= mint && c.min_time <= maxt && (c.min_time < mint || c.max_time > maxt)
    };
    for c in chunks {
        let mut decoded = None;
        for (own, range) in out.iter_mut().zip(ranges) {
            let &(mint, maxt) = range;
            if c.max_time < mint || c.min_time > maxt {
                continue;
            }
            if !crosses(c, range) {
                own.push(c.clone());
                continue;
            }
            let raw = c.raw.as_ref().ok_or(SeriesDataError::NoRaw)?;
            check_xor(raw.r#type)?;
            let skipped = match decoded {
                Some(skipped) => skipped,
                None => {
                    scratch.clear();
                    marks.clear();
                    // the samples the cuts need: from the earliest range start inside the
                    // chunk, or all of them when a range starts before it (that cut keeps
                    // the chunk's first bits); asked once a range crosses the chunk
                    let from = ranges
                        .iter()
                        .filter(|r| crosses(c, r))
                        .map(|&(mint, _)| if mint > c.min_time { mint } else { i64::MIN })
                        .min()
                        .unwrap_or(i64::MIN);
                    let skipped = crate::chunk::decode_marked_from(
                        &raw.data,
                        from,
                        &mut scratch,
                        &mut marks,
                    )?;
                    *decoded.insert(skipped)
                }
            };
            let cut = crate::chunk::cut_decoded(&raw.data, (skipped, &scratch), &marks, mint, maxt);
            own.extend(cut.into_chunk(raw));
        }
    }
    for own in &mut out {
        own.sort_by_key(|c| (c.min_time, c.max_time));
    }
    Ok(out)
}
