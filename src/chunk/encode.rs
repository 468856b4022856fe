//! Encoding, as Prometheus' XOR appender writes: remote read re-encodes the edge chunks it
//! cuts to a range, and fixtures and fakes are built with it.

use crate::model::Sample;

/// Writes bits most significant first, 64 at a time: `acc` holds the next `used` bits in its
/// top bits. The first two bytes are left for the sample count.
struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    used: u32,
}

impl Default for BitWriter {
    fn default() -> Self {
        BitWriter {
            bytes: vec![0, 0],
            acc: 0,
            used: 0,
        }
    }
}

impl BitWriter {
    /// Writes the low `n` bits of `v`, 0 <= n <= 64.
    #[inline]
    fn bits(&mut self, v: u64, n: u32) {
        if n == 0 {
            return;
        }
        let v = if n == 64 { v } else { v & ((1u64 << n) - 1) };
        let free = 64 - self.used;
        if n < free {
            self.acc |= v << (free - n);
            self.used += n;
            return;
        }
        // fills the accumulator: `free` >= 1 bits of `v` complete it
        let rest = n - free;
        self.acc |= v >> rest;
        self.bytes.extend_from_slice(&self.acc.to_be_bytes());
        self.acc = if rest == 0 { 0 } else { v << (64 - rest) };
        self.used = rest;
    }

    /// The bytes, the sample count first, the last byte padded with zeros.
    fn finish(mut self, n: u16) -> Vec<u8> {
        let tail = self.used.div_ceil(8) as usize;
        self.bytes
            .extend_from_slice(&self.acc.to_be_bytes()[..tail]);
        self.bytes[..2].copy_from_slice(&n.to_be_bytes());
        self.bytes
    }

    /// Appends bits `from..to` of `src` (most significant first), 32 at a time.
    fn copy(&mut self, src: &[u8], from: usize, to: usize) {
        debug_assert!(from <= to && to <= src.len() * 8);
        // the bytes grow once, not by doubling from the few the first samples took
        self.bytes.reserve((to - from).div_ceil(8) + 8);
        let mut pos = from;
        while pos < to {
            let n = (to - pos).min(32) as u32;
            let byte = pos >> 3;
            let mut word = [0u8; 8];
            let have = src.len().saturating_sub(byte).min(8);
            word[..have].copy_from_slice(&src[byte..byte + have]);
            let v = (u64::from_be_bytes(word) << (pos & 7)) >> (64 - n);
            self.bits(v, n);
            pos += n as usize;
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
        self.append_with(t, v, None);
    }

    /// Appends a sample whose value differs from the last one, writing the change in
    /// `window` (leading and trailing zero bits, which must hold it) as a new window,
    /// whatever window the encoder holds.
    pub fn append_in(&mut self, t: i64, v: f64, window: (u32, u32)) {
        debug_assert!(self.n >= 1 && v.to_bits() != self.v, "a change to write");
        self.append_with(t, v, Some(window));
    }

    fn append_with(&mut self, t: i64, v: f64, window: Option<(u32, u32)>) {
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
                self.write_value(vb, window);
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
                self.write_value(vb, window);
                self.t_delta = delta;
            }
        }
        self.t = t;
        self.v = vb;
        self.n += 1;
    }

    fn write_value(&mut self, vb: u64, window: Option<(u32, u32)>) {
        let delta = vb ^ self.v;
        if delta == 0 {
            self.w.bits(0, 1);
            return;
        }
        self.w.bits(1, 1);
        // 5 bits hold at most 31 leading zeros
        let fits = |(leading, trailing): (u32, u32)| {
            delta.leading_zeros().min(31) >= leading && delta.trailing_zeros() >= trailing
        };
        let (leading, trailing) = match window {
            Some(w) => {
                debug_assert!(fits(w), "the window holds the change");
                w
            }
            None => {
                if self.leading != 0xff && fits((self.leading, self.trailing)) {
                    self.w.bits(0, 1);
                    self.w
                        .bits(delta >> self.trailing, 64 - self.leading - self.trailing);
                    return;
                }
                (delta.leading_zeros().min(31), delta.trailing_zeros())
            }
        };
        self.leading = leading;
        self.trailing = trailing;
        self.w.bits(1, 1);
        self.w.bits(leading as u64, 5);
        let sig = 64 - leading - trailing;
        // 64 significant bits are written as 0; the reader maps 0 back to 64
        self.w.bits((sig & 63) as u64, 6);
        self.w.bits(delta >> trailing, sig);
    }

    /// The chunk bytes after `n` more samples whose bits are `from..to` of `stream`, another
    /// chunk's bit stream (without its count), which its encoder wrote from the state a
    /// decoder of this one is in: the same last timestamp, delta and value, and the same
    /// window unless no value changes in those samples.
    pub fn finish_with(mut self, stream: &[u8], (from, to): (usize, usize), n: u16) -> Vec<u8> {
        debug_assert!(
            self.n >= 2,
            "a copied sample needs the delta of the two before it"
        );
        self.w.copy(stream, from, to);
        self.w.finish(self.n + n)
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
        self.w.finish(self.n)
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
