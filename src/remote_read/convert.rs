//! Remote read series made into the StoreAPI's `Series`, as a Thanos sidecar makes them:
//! replica labels dropped, chunks cut to the requested range, encodings renumbered.

use super::RemoteReadError;
use super::proto as rr;
use crate::chunk;
use crate::model::{Labels, Matcher, Sample};
use crate::store::proto::{AggrChunk, Label, Series, chunk::Encoding};
use crate::store::{label, raw_chunk};

/// Samples per chunk when samples are made into chunks: Prometheus' own target.
const SAMPLES_PER_CHUNK: usize = 120;

/// An edge chunk read against the range.
enum Edge {
    /// Every sample inside.
    Whole(AggrChunk),
    /// Some samples were outside: the others, re-encoded.
    Part(AggrChunk),
    /// None inside.
    Empty,
    /// Not an XOR chunk, or not decodable.
    Unread,
}

/// What every series of one request goes through.
pub struct Shaping<'a> {
    /// Every matcher of the request, checked again here: the server applied only those that
    /// cannot miss a series (external labels are not in its index).
    pub matchers: &'a [Matcher],
    pub replica_labels: &'a [String],
    /// The requested range, inclusive, milliseconds.
    pub mint: i64,
    pub maxt: i64,
}

impl Shaping<'_> {
    /// The series' labels without the replica labels, sorted by name; `None` when a matcher
    /// refuses it.
    fn labels(&self, labels: Vec<rr::Label>) -> Option<Vec<Label>> {
        let all = Labels::from_pairs(labels.into_iter().map(|l| (l.name, l.value)));
        if !self.matchers.iter().all(|m| m.matches(&all)) {
            return None;
        }
        Some(
            all.iter()
                .filter(|(n, _)| !self.replica_labels.iter().any(|r| r == n))
                .map(|(n, v)| label(n, v))
                .collect(),
        )
    }

    /// A streamed series; `None` when it has nothing in the range or a matcher refuses it.
    pub fn chunked(&self, s: rr::ChunkedSeries) -> Result<Option<Series>, RemoteReadError> {
        let Some(labels) = self.labels(s.labels) else {
            return Ok(None);
        };
        let mut chunks = Vec::with_capacity(s.chunks.len());
        for c in s.chunks {
            if c.max_time_ms < self.mint || c.min_time_ms > self.maxt {
                continue;
            }
            let encoding = match rr::chunk::Encoding::try_from(c.r#type) {
                Ok(rr::chunk::Encoding::Xor) => Encoding::Xor,
                // passed on: the decoder refuses them for the series the catalog selects, as
                // it does on the StoreAPI path
                Ok(rr::chunk::Encoding::Histogram) => Encoding::Histogram,
                Ok(rr::chunk::Encoding::FloatHistogram) => Encoding::FloatHistogram,
                other => {
                    return Err(RemoteReadError::Encoding {
                        series: display(&labels),
                        encoding: other.map_or_else(
                            |_| format!("#{}", c.r#type),
                            |e| e.as_str_name().to_string(),
                        ),
                    });
                }
            };
            chunks.push(raw_chunk(
                c.min_time_ms,
                c.max_time_ms,
                encoding as i32,
                c.data,
            ));
        }
        // Mimir sends whole chunks whose stated times may lie inside the range while their
        // samples reach outside it (measured): the chunks at both ends are read and cut to
        // the range as Prometheus cuts them, so a counter's running total starts where the
        // sidecar's would, going inwards while a chunk reached outside.
        let mut front = 0;
        while front < chunks.len() {
            match self.cut(&chunks[front]) {
                Edge::Whole(c) => {
                    chunks[front] = c;
                    break;
                }
                Edge::Part(c) => {
                    chunks[front] = c;
                    front += 1;
                }
                Edge::Empty => {
                    chunks.remove(front);
                }
                Edge::Unread => break,
            }
        }
        // the chunk the front stopped at was read already
        let floor = (front + 1).min(chunks.len());
        let mut back = chunks.len();
        while back > floor {
            match self.cut(&chunks[back - 1]) {
                Edge::Whole(c) => {
                    chunks[back - 1] = c;
                    break;
                }
                Edge::Part(c) => {
                    chunks[back - 1] = c;
                    back -= 1;
                }
                Edge::Empty => {
                    chunks.remove(back - 1);
                    back -= 1;
                }
                Edge::Unread => break,
            }
        }
        Ok((!chunks.is_empty()).then_some(Series { labels, chunks }))
    }

    /// An XOR chunk's samples within the range. Other encodings, and chunks that do not
    /// decode, stay as they came (the decoder reports them with the series).
    fn cut(&self, c: &AggrChunk) -> Edge {
        let Some(raw) = c.raw.as_ref().filter(|r| r.r#type == Encoding::Xor as i32) else {
            return Edge::Unread;
        };
        match chunk::cut(&raw.data, self.mint, self.maxt, &mut Vec::new()) {
            // the chunk as it came, its times from its samples
            Ok(chunk::Cut::Whole { first, last }) => Edge::Whole(raw_chunk(
                first,
                last,
                Encoding::Xor as i32,
                raw.data.clone(),
            )),
            Ok(chunk::Cut::Part { data, first, last }) => {
                Edge::Part(raw_chunk(first, last, Encoding::Xor as i32, data.into()))
            }
            Ok(chunk::Cut::Empty) => Edge::Empty,
            Err(_) => Edge::Unread,
        }
    }

    /// A series of a SAMPLES answer, its samples in the range made into XOR chunks.
    pub fn sampled(&self, s: rr::TimeSeries) -> Result<Option<Series>, RemoteReadError> {
        let Some(labels) = self.labels(s.labels) else {
            return Ok(None);
        };
        if !s.histograms.is_empty() {
            return Err(RemoteReadError::Encoding {
                series: display(&labels),
                encoding: "HISTOGRAM".to_string(),
            });
        }
        let samples: Vec<Sample> = s
            .samples
            .iter()
            .map(|x| (x.timestamp, x.value))
            .filter(|&(t, _)| t >= self.mint && t <= self.maxt)
            .collect();
        debug_assert!(samples.windows(2).all(|w| w[0].0 < w[1].0));
        let chunks: Vec<AggrChunk> = samples
            .chunks(SAMPLES_PER_CHUNK)
            .filter_map(chunk::xor_chunk)
            .collect();
        Ok((!chunks.is_empty()).then_some(Series { labels, chunks }))
    }
}

fn display(labels: &[Label]) -> String {
    Labels::from_pairs(labels.iter().map(Label::lossy)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::encode as encode_samples;

    fn shaping<'a>(matchers: &'a [Matcher], replicas: &'a [String]) -> Shaping<'a> {
        Shaping {
            matchers,
            replica_labels: replicas,
            mint: 100,
            maxt: 200,
        }
    }

    fn label(n: &str, v: &str) -> rr::Label {
        rr::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn chunk(samples: &[Sample], kind: rr::chunk::Encoding) -> rr::Chunk {
        rr::Chunk {
            min_time_ms: samples[0].0,
            max_time_ms: samples[samples.len() - 1].0,
            r#type: kind as i32,
            data: encode_samples(samples).into(),
        }
    }

    fn samples_of(c: &AggrChunk) -> Vec<Sample> {
        let mut out = Vec::new();
        chunk::decode_into(&c.raw.as_ref().unwrap().data, &mut out).unwrap();
        out
    }

    #[test]
    fn chunks_are_cut_to_the_range_and_renumbered() {
        let replicas = ["replica".to_string()];
        let s = shaping(&[], &replicas);
        let series = rr::ChunkedSeries {
            labels: vec![
                label("__name__", "up"),
                label("replica", "r0"),
                label("cluster", "a"),
            ],
            chunks: vec![
                chunk(&[(10, 1.0), (50, 2.0)], rr::chunk::Encoding::Xor),
                chunk(
                    &[(90, 3.0), (110, 4.0), (150, 5.0)],
                    rr::chunk::Encoding::Xor,
                ),
                chunk(&[(160, 6.0), (190, 7.0)], rr::chunk::Encoding::Xor),
                chunk(&[(195, 8.0), (210, 9.0)], rr::chunk::Encoding::Xor),
            ],
        };
        let out = s.chunked(series).unwrap().unwrap();
        let names: Vec<&str> = out.labels.iter().map(|l| l.text().unwrap().0).collect();
        assert_eq!(names, ["__name__", "cluster"], "sorted, replica dropped");
        assert_eq!(
            out.chunks.len(),
            3,
            "the chunk before the range is left out"
        );
        assert!(
            out.chunks
                .iter()
                .all(|c| c.raw.as_ref().unwrap().r#type == Encoding::Xor as i32)
        );
        assert_eq!(samples_of(&out.chunks[0]), [(110, 4.0), (150, 5.0)]);
        assert_eq!((out.chunks[0].min_time, out.chunks[0].max_time), (110, 150));
        assert_eq!(samples_of(&out.chunks[1]), [(160, 6.0), (190, 7.0)]);
        assert_eq!(samples_of(&out.chunks[2]), [(195, 8.0)]);
    }

    #[test]
    fn chunks_whose_stated_times_hide_samples_outside_are_cut() {
        // as Mimir answers: the stated times inside the range, the samples not
        let s = shaping(&[], &[]);
        let mut first = chunk(
            &[(60, 1.0), (90, 2.0), (120, 3.0)],
            rr::chunk::Encoding::Xor,
        );
        first.min_time_ms = 100;
        let middle = chunk(&[(150, 4.0)], rr::chunk::Encoding::Xor);
        let mut last = chunk(&[(180, 5.0), (240, 6.0)], rr::chunk::Encoding::Xor);
        last.max_time_ms = 200;
        let series = rr::ChunkedSeries {
            labels: vec![label("__name__", "up")],
            chunks: vec![first, middle, last],
        };
        let out = s.chunked(series).unwrap().unwrap();
        let spans: Vec<(i64, i64)> = out
            .chunks
            .iter()
            .map(|c| (c.min_time, c.max_time))
            .collect();
        assert_eq!(spans, [(120, 120), (150, 150), (180, 180)]);
        let all: Vec<Sample> = out.chunks.iter().flat_map(samples_of).collect();
        assert_eq!(all, [(120, 3.0), (150, 4.0), (180, 5.0)]);
    }

    #[test]
    fn unknown_encodings_name_the_series() {
        let s = shaping(&[], &[]);
        let series = rr::ChunkedSeries {
            labels: vec![label("__name__", "up"), label("pod", "p")],
            chunks: vec![chunk(&[(120, 1.0)], rr::chunk::Encoding::Xor2)],
        };
        let e = s.chunked(series).unwrap_err();
        assert!(
            matches!(&e, RemoteReadError::Encoding { series, encoding }
                if series.contains("pod=\"p\"") && encoding == "XOR2"),
            "{e}"
        );
        let mut odd = chunk(&[(120, 1.0)], rr::chunk::Encoding::Xor);
        odd.r#type = 9;
        let series = rr::ChunkedSeries {
            labels: vec![label("__name__", "up")],
            chunks: vec![odd],
        };
        let e = s.chunked(series).unwrap_err();
        assert!(e.to_string().contains("encoding #9"), "{e}");
    }

    #[test]
    fn matchers_are_checked_again_on_every_label() {
        // Prometheus matches against its index, which lacks the external labels: a regex on
        // one would select nothing there, so it is applied here.
        let m = [Matcher::regex("cluster", "a|b", false).unwrap()];
        let s = shaping(&m, &[]);
        let of = |cluster: &str| rr::ChunkedSeries {
            labels: vec![label("__name__", "up"), label("cluster", cluster)],
            chunks: vec![chunk(&[(120, 1.0)], rr::chunk::Encoding::Xor)],
        };
        assert!(s.chunked(of("b")).unwrap().is_some());
        assert!(s.chunked(of("c")).unwrap().is_none());
    }

    #[test]
    fn samples_become_chunks() {
        let s = shaping(&[], &[]);
        let ts = rr::TimeSeries {
            labels: vec![label("__name__", "up")],
            samples: (0..300)
                .map(|i| rr::Sample {
                    timestamp: i,
                    value: i as f64,
                })
                .collect(),
            histograms: Vec::new(),
        };
        let out = s.sampled(ts).unwrap().unwrap();
        let all: Vec<Sample> = out.chunks.iter().flat_map(samples_of).collect();
        assert_eq!(all, (100..=200).map(|i| (i, i as f64)).collect::<Vec<_>>());
        assert_eq!(out.chunks.len(), 1);
        let hist = rr::TimeSeries {
            labels: vec![label("__name__", "h")],
            samples: Vec::new(),
            histograms: vec![Vec::new()],
        };
        assert!(matches!(
            s.sampled(hist),
            Err(RemoteReadError::Encoding { encoding, .. }) if encoding == "HISTOGRAM"
        ));
    }
}
