//! Prometheus' XOR chunk encoding (`chunkenc.XORChunk`), the float-sample chunk format the
//! StoreAPI streams.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream: the first timestamp as a
//! signed varint and the first value as 64 raw bits; the second timestamp as an unsigned
//! varint delta and its value XOR-encoded; then delta-of-delta timestamps and XOR values.
//! Decoding stops after the counted samples: some Prometheus versions wrote padding after.

use thiserror::Error;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, Copy, Error, PartialEq, Eq)]
pub enum ChunkError {
    #[error("chunk is truncated: {0} of {1} samples decoded")]
    Truncated(u16, u16),
    #[error("chunk is corrupt at sample {0}: {1}")]
    Corrupt(u16, &'static str),
}

use crate::model::Sample;
use crate::store::proto::{AggrChunk, chunk::Encoding};

/// Reads bits most significant first from a byte slice. Every read is one unaligned
/// big-endian load at the current bit position: no buffer to refill.
struct BitReader<'a> {
    data: &'a [u8],
    // position and length in bits
    pos: usize,
    len: usize,
}

impl<'a> BitReader<'a> {
    fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            len: data.len() * 8,
        }
    }

    /// The next 64 bits from the current position (zeros past the end); at least 57 of them
    /// are real when that many remain.
    #[inline(always)]
    fn peek(&self) -> u64 {
        let byte = self.pos >> 3;
        let word = match self.data.get(byte..byte + 8) {
            Some(b) => u64::from_be_bytes(b.try_into().unwrap()),
            None => {
                let mut b = [0u8; 8];
                let rest = &self.data[byte.min(self.data.len())..];
                b[..rest.len()].copy_from_slice(rest);
                u64::from_be_bytes(b)
            }
        };
        word << (self.pos & 7)
    }

    /// Bits left.
    #[inline(always)]
    fn remaining(&self) -> usize {
        self.len - self.pos
    }

    #[inline(always)]
    fn skip(&mut self, n: u32) {
        self.pos += n as usize;
    }

    /// Reads n bits, 1 <= n <= 57.
    #[inline(always)]
    fn bits(&mut self, n: u32) -> Option<u64> {
        debug_assert!((1..=57).contains(&n));
        if self.remaining() < n as usize {
            return None;
        }
        let v = self.peek() >> (64 - n);
        self.pos += n as usize;
        Some(v)
    }

    /// Reads n bits, 1 <= n <= 64.
    #[inline(always)]
    fn bits_wide(&mut self, n: u32) -> Option<u64> {
        if n <= 57 {
            self.bits(n)
        } else {
            let hi = self.bits(n - 32)?;
            let lo = self.bits(32)?;
            Some((hi << 32) | lo)
        }
    }

    fn uvarint(&mut self) -> Option<u64> {
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..10 {
            let b = self.bits(8)?;
            if b < 0x80 {
                if i == 9 && b > 1 {
                    return None; // overflows 64 bits
                }
                return Some(x | (b << shift));
            }
            x |= (b & 0x7f) << shift;
            shift += 7;
        }
        None
    }

    fn varint(&mut self) -> Option<i64> {
        let ux = self.uvarint()?;
        let x = (ux >> 1) as i64;
        Some(if ux & 1 != 0 { !x } else { x })
    }

    /// The delta-of-delta of the next timestamp, `None` when the chunk ends first.
    #[inline(always)]
    fn dod(&mut self) -> Option<i64> {
        // The prefix is 0, 10, 110, 1110 or 1111: count its leading ones at once; prefix and
        // payload (at most 4 + 20 bits) come from one load.
        let word = self.peek();
        let ones = (!word).leading_zeros().min(4);
        if ones == 0 {
            if self.remaining() < 1 {
                return None;
            }
            self.skip(1);
            return Some(0);
        }
        if ones == 4 {
            if self.remaining() < 4 {
                return None;
            }
            self.skip(4);
            return Some(self.bits_wide(64)? as i64);
        }
        let size = 11 + 3 * ones; // 14, 17 or 20 bits
        let used = ones + 1 + size;
        if self.remaining() < used as usize {
            return None;
        }
        self.skip(used);
        let mut bits = ((word << (ones + 1)) >> (64 - size)) as i64;
        // Two's complement in `size` bits. Prometheus tests `>` (not `>=`) here, so the
        // pattern 1 << (size-1) stands for the positive value; so do we.
        if bits > (1 << (size - 1)) {
            bits -= 1 << size;
        }
        Some(bits)
    }

    /// Applies the next XOR-encoded value to `v`.
    #[inline(always)]
    fn xor_value(
        &mut self,
        v: &mut u64,
        leading: &mut u32,
        trailing: &mut u32,
        n: u16,
        total: u16,
    ) -> Result<(), ChunkError> {
        let trunc = ChunkError::Truncated(n, total);
        // control bits: 0 same value, 10 reuse the window, 11 a new window (5 bits of leading
        // zeros, 6 of significant bits); the payload follows, from the same load when it fits
        let word = self.peek();
        let top = word >> 62;
        if top < 2 {
            if self.remaining() < 1 {
                return Err(trunc);
            }
            self.skip(1);
            return Ok(());
        }
        let (head, sig) = if top == 0b10 {
            (2, 64 - *leading - *trailing)
        } else {
            let header = ((word << 2) >> 53) as u32;
            let lead = header >> 6;
            // 0 significant bits would be no change: it encodes 64
            let sig = match header & 63 {
                0 => 64,
                s => s,
            };
            if lead + sig > 64 {
                return Err(ChunkError::Corrupt(
                    n,
                    "leading and significant bits exceed 64",
                ));
            }
            *leading = lead;
            *trailing = 64 - lead - sig;
            (13, sig)
        };
        if sig == 0 {
            return Err(ChunkError::Corrupt(n, "value reuses a window of 0 bits"));
        }
        if self.remaining() < (head + sig) as usize {
            return Err(trunc);
        }
        let bits = if head + sig <= 57 {
            self.skip(head + sig);
            (word << head) >> (64 - sig)
        } else {
            self.skip(head);
            self.bits_wide(sig).ok_or(trunc)?
        };
        *v ^= bits << *trailing;
        Ok(())
    }
}

/// Decodes an XOR chunk sample by sample without allocating.
pub struct XorIter<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u32,
    trailing: u32,
}

impl<'a> XorIter<'a> {
    /// Starts decoding `data`, the chunk bytes including the 2-byte sample count.
    pub fn new(data: &'a [u8]) -> Result<Self, ChunkError> {
        if data.len() < 2 {
            return Err(ChunkError::Truncated(0, 0));
        }
        let total = u16::from_be_bytes([data[0], data[1]]);
        Ok(XorIter {
            r: BitReader::new(&data[2..]),
            total,
            read: 0,
            t: 0,
            t_delta: 0,
            v: 0,
            leading: 0,
            trailing: 0,
        })
    }

    /// The number of samples the chunk header announces.
    pub fn len(&self) -> u16 {
        self.total
    }

    /// Whether the chunk holds no samples.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// The next sample, `Ok(None)` after the last one.
    #[inline]
    pub fn next_sample(&mut self) -> Result<Option<Sample>, ChunkError> {
        if self.read >= self.total {
            return Ok(None);
        }
        let truncated = ChunkError::Truncated(self.read, self.total);
        match self.read {
            0 => {
                self.t = self.r.varint().ok_or(truncated)?;
                self.v = self.r.bits_wide(64).ok_or(truncated)?;
            }
            n => {
                // the second timestamp is a plain delta, later ones a delta of deltas
                self.t_delta = if n == 1 {
                    self.r.uvarint().ok_or(truncated)? as i64
                } else {
                    let dod = self.r.dod().ok_or(truncated)?;
                    self.t_delta.wrapping_add(dod)
                };
                self.t = self.t.wrapping_add(self.t_delta);
                self.r.xor_value(
                    &mut self.v,
                    &mut self.leading,
                    &mut self.trailing,
                    self.read,
                    self.total,
                )?;
            }
        }
        self.read += 1;
        Ok(Some((self.t, f64::from_bits(self.v))))
    }
}

/// Decodes a whole chunk, appending to `out`: the fast path. Equivalent to draining an
/// [`XorIter`], with the decoder state in locals and the two header samples peeled off the
/// loop, which halves the instructions per sample.
pub fn decode_into(data: &[u8], out: &mut Vec<Sample>) -> Result<(), ChunkError> {
    if data.len() < 2 {
        return Err(ChunkError::Truncated(0, 0));
    }
    let total = u16::from_be_bytes([data[0], data[1]]);
    if total == 0 {
        return Ok(());
    }
    out.reserve(total as usize);
    let mut r = BitReader::new(&data[2..]);
    let trunc = |n: u16| ChunkError::Truncated(n, total);
    let mut t = r.varint().ok_or(trunc(0))?;
    let mut v = r.bits_wide(64).ok_or(trunc(0))?;
    out.push((t, f64::from_bits(v)));
    if total == 1 {
        return Ok(());
    }
    let mut delta = r.uvarint().ok_or(trunc(1))? as i64;
    t = t.wrapping_add(delta);
    let (mut leading, mut trailing) = (0u32, 0u32);
    r.xor_value(&mut v, &mut leading, &mut trailing, 1, total)?;
    out.push((t, f64::from_bits(v)));
    for n in 2..total {
        let dod = r.dod().ok_or(trunc(n))?;
        delta = delta.wrapping_add(dod);
        t = t.wrapping_add(delta);
        r.xor_value(&mut v, &mut leading, &mut trailing, n, total)?;
        out.push((t, f64::from_bits(v)));
    }
    Ok(())
}

/// Writes bits most significant first.
#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    // bits still free in the last byte
    free: u32,
}

impl BitWriter {
    fn bits(&mut self, v: u64, n: u32) {
        let mut n = n;
        while n > 0 {
            if self.free == 0 {
                self.bytes.push(0);
                self.free = 8;
            }
            let take = n.min(self.free);
            let chunk = ((v >> (n - take)) & ((1u64 << take) - 1)) as u8;
            let last = self.bytes.len() - 1;
            self.bytes[last] |= chunk << (self.free - take);
            self.free -= take;
            n -= take;
        }
    }

    fn uvarint(&mut self, mut x: u64) {
        while x >= 0x80 {
            self.bits((x as u8 | 0x80) as u64, 8);
            x >>= 7;
        }
        self.bits(x, 8);
    }

    fn varint(&mut self, x: i64) {
        let ux = ((x as u64) << 1) ^ ((x >> 63) as u64);
        self.uvarint(ux);
    }
}

/// Encodes samples the way Prometheus' XOR appender does: remote read re-encodes the chunks
/// it cuts to a range, and fixtures and fakes are built with it.
#[derive(Default)]
pub struct XorEncoder {
    w: BitWriter,
    n: u16,
    t: i64,
    t_delta: i64,
    v: u64,
    leading: u32,
    trailing: u32,
}

impl XorEncoder {
    /// A new, empty chunk.
    pub fn new() -> Self {
        XorEncoder {
            leading: 0xff,
            ..Default::default()
        }
    }

    /// Appends a sample; timestamps must not decrease and at most 65,535 samples fit.
    pub fn append(&mut self, t: i64, v: f64) {
        debug_assert!(
            self.n < u16::MAX,
            "an XOR chunk holds at most 65535 samples"
        );
        let vb = v.to_bits();
        match self.n {
            0 => {
                self.w.varint(t);
                self.w.bits(vb, 64);
            }
            1 => {
                let delta = t - self.t;
                self.w.uvarint(delta as u64);
                self.write_value(vb);
                self.t_delta = delta;
            }
            _ => {
                let delta = t - self.t;
                let dod = delta - self.t_delta;
                if dod == 0 {
                    self.w.bits(0, 1);
                } else if bit_range(dod, 14) {
                    self.w.bits(0b10, 2);
                    self.w.bits(dod as u64 & ((1 << 14) - 1), 14);
                } else if bit_range(dod, 17) {
                    self.w.bits(0b110, 3);
                    self.w.bits(dod as u64 & ((1 << 17) - 1), 17);
                } else if bit_range(dod, 20) {
                    self.w.bits(0b1110, 4);
                    self.w.bits(dod as u64 & ((1 << 20) - 1), 20);
                } else {
                    self.w.bits(0b1111, 4);
                    self.w.bits(dod as u64, 64);
                }
                self.write_value(vb);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = vb;
        self.n += 1;
    }

    fn write_value(&mut self, vb: u64) {
        let delta = vb ^ self.v;
        if delta == 0 {
            self.w.bits(0, 1);
            return;
        }
        self.w.bits(1, 1);
        let mut leading = delta.leading_zeros();
        let trailing = delta.trailing_zeros();
        if leading >= 32 {
            leading = 31; // 5 bits hold at most 31
        }
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            self.w.bits(0, 1);
            self.w
                .bits(delta >> self.trailing, 64 - self.leading - self.trailing);
            return;
        }
        self.leading = leading;
        self.trailing = trailing;
        self.w.bits(1, 1);
        self.w.bits(leading as u64, 5);
        let sig = 64 - leading - trailing;
        // 64 significant bits are written as 0; the reader maps 0 back to 64
        self.w.bits((sig & 63) as u64, 6);
        self.w.bits(delta >> trailing, sig);
    }

    /// The number of samples appended.
    pub fn len(&self) -> u16 {
        self.n
    }

    /// Whether no sample was appended.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The chunk bytes: the sample count, then the bit stream.
    pub fn finish(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.w.bytes.len() + 2);
        out.extend_from_slice(&self.n.to_be_bytes());
        out.extend_from_slice(&self.w.bytes);
        out
    }
}

// Mirrors Prometheus' bitRange: -(2^(n-1)-1) <= x <= 2^(n-1).
fn bit_range(x: i64, n: u32) -> bool {
    -((1 << (n - 1)) - 1) <= x && x <= 1 << (n - 1)
}

/// Encodes a whole slice of samples into one chunk.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut e = XorEncoder::new();
    for &(t, v) in samples {
        e.append(t, v);
    }
    e.finish()
}

/// `samples` (in time order) as one XOR chunk of a `Series`; `None` when there are none.
pub fn xor_chunk(samples: &[Sample]) -> Option<AggrChunk> {
    let (first, last) = (samples.first()?.0, samples.last()?.0);
    Some(crate::store::raw_chunk(
        first,
        last,
        Encoding::Xor as i32,
        encode(samples).into(),
    ))
}

/// An XOR chunk cut to a request's range, as Prometheus' TSDB cuts a request's edge chunks.
#[derive(Debug, PartialEq)]
pub enum Cut {
    /// Every sample is inside: the chunk as it is; its first and last sample times.
    Whole { first: i64, last: i64 },
    /// Some samples were outside: the others, re-encoded; their first and last times.
    Part {
        data: Vec<u8>,
        first: i64,
        last: i64,
    },
    /// No sample is inside.
    Empty,
}

/// Cuts the XOR chunk `data` to `[mint, maxt]`; `scratch` holds the decoded samples.
pub fn cut(
    data: &[u8],
    mint: i64,
    maxt: i64,
    scratch: &mut Vec<Sample>,
) -> Result<Cut, ChunkError> {
    scratch.clear();
    decode_into(data, scratch)?;
    let all = scratch.len();
    scratch.retain(|&(t, _)| t >= mint && t <= maxt);
    let (Some(&(first, _)), Some(&(last, _))) = (scratch.first(), scratch.last()) else {
        return Ok(Cut::Empty);
    };
    Ok(if scratch.len() == all {
        Cut::Whole { first, last }
    } else {
        Cut::Part {
            data: encode(scratch),
            first,
            last,
        }
    })
}

#[cfg(test)]
mod tests {
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

    proptest! {
        #[test]
        fn round_trip(start in any::<i32>(), steps in prop::collection::vec((0i64..10_000_000, any::<u64>(), 0u8..4), 0..300)) {
            let mut t = start as i64;
            let mut s = Vec::new();
            let mut last = 0.0f64;
            for (dt, bits, mode) in steps {
                t += dt;
                let v = match mode {
                    0 => f64::from_bits(bits),
                    1 => last,
                    2 => last + (bits % 1000) as f64,
                    _ => (bits % 100) as f64 * 0.1,
                };
                last = v;
                s.push((t, v));
            }
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
        assert_eq!(
            cut(&data, 2001, 5000, &mut scratch).unwrap(),
            Cut::Part {
                data: encode(&samples[3..6]),
                first: 3000,
                last: 5000
            }
        );
        assert_eq!(cut(&data, 9001, 20_000, &mut scratch).unwrap(), Cut::Empty);
        assert!(cut(&data[..3], 0, 9000, &mut scratch).is_err());
    }
}
