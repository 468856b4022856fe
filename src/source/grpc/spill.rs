//! A multi-window request's answer, set aside window by window on disk: the stores are asked
//! once for a day (their cost is per request and per edge chunk, not per sample), while the
//! exporter evaluates one window at a time, so its memory stays that of one window's files
//! whatever the number of windows a request covers.
//!
//! Each window's series go to a file of their own, in the order they came (label order, as
//! the evaluator needs them), with only the chunks that window reads. The files are unlinked
//! as soon as they are created: nothing is left behind by a crash or a kill.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::model::Labels;
use crate::store::proto::{AggrChunk, Chunk};

/// Bytes of chunks a multi-window request sets aside at most (by the sizes earlier requests
/// measured): with CONCURRENCY requests at once, the scratch directory needs CONCURRENCY
/// times this. A day of the largest metric of one cluster of ~22,000 series fits.
pub const SPILL_BYTES: u64 = 64 << 20;

// per window of a request in flight: small, a request may cover a day of windows
const BUFFER: usize = 32 << 10;

/// Marks a chunk without raw data (a downsampled aggregate), refused when it is read.
const NO_RAW: i32 = -1;

static NEXT: AtomicU64 = AtomicU64::new(0);

/// The series of a request, written window by window.
pub struct Spill {
    windows: Vec<BufWriter<File>>,
    bytes: u64,
}

impl Spill {
    /// One unlinked scratch file per window in `dir`.
    pub fn create(dir: &Path, windows: usize) -> io::Result<Spill> {
        let windows = (0..windows)
            .map(|_| scratch_file(dir).map(|f| BufWriter::with_capacity(BUFFER, f)))
            .collect::<io::Result<_>>()?;
        Ok(Spill { windows, bytes: 0 })
    }

    /// Sets a series aside for `window`, with the chunks it reads there and `readers` (the
    /// caller's bits, read back as they are).
    pub fn push(
        &mut self,
        window: usize,
        labels: &Labels,
        readers: u64,
        chunks: &[AggrChunk],
    ) -> io::Result<()> {
        let w = &mut self.windows[window];
        // the label set as it is held, read back without parsing pairs or sorting them
        let (text, ends) = labels.text_and_ends();
        let mut bytes = 8 + write_bytes(w, text.as_bytes())? + 8 * ends.len();
        w.write_all(&(ends.len() as u32).to_le_bytes())?;
        for &(name_end, end) in ends {
            w.write_all(&name_end.to_le_bytes())?;
            w.write_all(&end.to_le_bytes())?;
        }
        w.write_all(&readers.to_le_bytes())?;
        w.write_all(&(chunks.len() as u32).to_le_bytes())?;
        bytes += 8;
        // the heads first, then the chunks' data end to end: read back as one buffer that
        // every chunk of the series shares
        for c in chunks {
            w.write_all(&c.min_time.to_le_bytes())?;
            w.write_all(&c.max_time.to_le_bytes())?;
            let kind = c.raw.as_ref().map_or(NO_RAW, |r| r.r#type);
            w.write_all(&kind.to_le_bytes())?;
            w.write_all(&(data(c).len() as u32).to_le_bytes())?;
            bytes += 24;
        }
        for c in chunks {
            w.write_all(data(c))?;
            bytes += data(c).len();
        }
        self.bytes += bytes as u64;
        Ok(())
    }

    /// Bytes set aside so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The windows' series, to be read back in the order they were written.
    pub fn into_windows(self) -> io::Result<Vec<WindowSeries>> {
        self.windows
            .into_iter()
            .map(|w| {
                let mut file = w.into_inner().map_err(io::IntoInnerError::into_error)?;
                file.seek(SeekFrom::Start(0))?;
                Ok(WindowSeries {
                    file: BufReader::with_capacity(BUFFER, file),
                    heads: Vec::new(),
                })
            })
            .collect()
    }
}

/// One window's series, read back.
pub struct WindowSeries {
    file: BufReader<File>,
    // a series' chunk heads (min time, max time, kind, length): kept between series
    heads: Vec<(i64, i64, i32, usize)>,
}

impl WindowSeries {
    /// The next series, its readers and its chunks; `None` at the end.
    pub fn next_series(&mut self) -> io::Result<Option<(Labels, u64, Vec<AggrChunk>)>> {
        let mut n = [0u8; 4];
        match self.file.read_exact(&mut n) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let file = &mut self.file;
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        // allocated at their exact sizes: the label set keeps them as they are
        let mut text = vec![0u8; u32::from_le_bytes(n) as usize];
        file.read_exact(&mut text)?;
        let text = String::from_utf8(text).map_err(|_| invalid("a label is not UTF-8"))?;
        let pairs = read_u32(file)? as usize;
        let mut ends = Vec::with_capacity(pairs);
        for _ in 0..pairs {
            ends.push((read_u32(file)?, read_u32(file)?));
        }
        let labels =
            Labels::from_text(text, ends).ok_or_else(|| invalid("a label set is corrupt"))?;
        let mut readers = [0u8; 8];
        file.read_exact(&mut readers)?;
        self.heads.clear();
        for _ in 0..read_u32(file)? {
            let mut head = [0u8; 24];
            file.read_exact(&mut head)?;
            let int =
                |r: std::ops::Range<usize>| -> [u8; 8] { head[r].try_into().unwrap_or_default() };
            let kind = i32::from_le_bytes(head[16..20].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(head[20..24].try_into().unwrap_or_default());
            self.heads.push((
                i64::from_le_bytes(int(0..8)),
                i64::from_le_bytes(int(8..16)),
                kind,
                len as usize,
            ));
        }
        let heads = &self.heads;
        // read into spare capacity, not into a buffer zeroed first
        let len: usize = heads.iter().map(|h| h.3).sum();
        let mut data = Vec::with_capacity(len);
        file.take(len as u64).read_to_end(&mut data)?;
        if data.len() < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let data = bytes::Bytes::from(data);
        let mut at = 0;
        let chunks = heads
            .iter()
            .map(|&(min_time, max_time, kind, len)| {
                at += len;
                AggrChunk {
                    min_time,
                    max_time,
                    raw: (kind != NO_RAW).then(|| Chunk {
                        r#type: kind,
                        data: data.slice(at - len..at),
                        hash: 0,
                    }),
                    ..Default::default()
                }
            })
            .collect();
        Ok(Some((labels, u64::from_le_bytes(readers), chunks)))
    }
}

fn scratch_file(dir: &Path) -> io::Result<File> {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path: PathBuf = dir.join(format!(
        ".storeapi-exporter-{}-{n}.spill",
        std::process::id()
    ));
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

fn data(c: &AggrChunk) -> &[u8] {
    c.raw.as_ref().map_or(&[][..], |r| &r.data[..])
}

fn write_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<usize> {
    w.write_all(&(b.len() as u32).to_le_bytes())?;
    w.write_all(b)?;
    Ok(4 + b.len())
}

fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    Ok(u32::from_le_bytes(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(min: i64, max: i64, data: &[u8]) -> AggrChunk {
        AggrChunk {
            min_time: min,
            max_time: max,
            raw: Some(Chunk {
                r#type: 1,
                data: data.to_vec().into(),
                hash: 7,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn windows_read_back_what_was_set_aside_in_order() {
        let dir = std::env::temp_dir();
        let mut spill = Spill::create(&dir, 3).unwrap();
        let a = Labels::from_pairs([("__name__", "up"), ("pod", "a")]);
        let b = Labels::from_pairs([("__name__", "up"), ("pod", "b")]);
        let no_raw = AggrChunk {
            min_time: 5,
            max_time: 6,
            ..Default::default()
        };
        spill
            .push(0, &a, 5, &[chunk(1, 2, b"xy"), chunk(3, 4, b"")])
            .unwrap();
        spill.push(0, &b, 0, std::slice::from_ref(&no_raw)).unwrap();
        spill.push(2, &b, u64::MAX, &[]).unwrap();
        assert!(spill.bytes() > 0);
        let mut windows = spill.into_windows().unwrap();
        let mut got = |w: usize| {
            let mut out = Vec::new();
            while let Some(s) = windows[w].next_series().unwrap() {
                out.push(s);
            }
            out
        };
        let mut want = chunk(1, 2, b"xy");
        want.raw.as_mut().unwrap().hash = 0;
        let mut empty = chunk(3, 4, b"");
        empty.raw.as_mut().unwrap().hash = 0;
        assert_eq!(
            got(0),
            vec![(a, 5, vec![want, empty]), (b.clone(), 0, vec![no_raw])]
        );
        assert_eq!(got(1), vec![]);
        assert_eq!(got(2), vec![(b, u64::MAX, vec![])]);
        // unlinked at once: nothing of ours is left in the directory
        let pid = format!(".storeapi-exporter-{}-", std::process::id());
        let left = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(&pid))
            })
            .count();
        assert_eq!(left, 0);
    }

    #[test]
    fn a_missing_directory_is_an_error_not_a_panic() {
        let err = Spill::create(Path::new("/nonexistent/storeapi-exporter"), 1)
            .err()
            .unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }
}
