//! The gzip stream of Finout's files, built for `query_range` bodies. A body repeats itself
//! in ways its renderer knows without looking: a point's `[<seconds>,"` is the one of the
//! same step in the series before, a value or a label pair was written a few points or
//! series ago. The renderer hands each piece of text with those repeats ([`Repeat`]), and the
//! stream codes them as deflate back-references without searching the text for matches,
//! which is most of what a general compressor spends (zlib-rs at level 2 hashed every byte
//! and compared candidates: docs/benchmarks.md, "The compressor that is told where the text
//! repeats"). The rest is coded as literals, and each block gets its own Huffman codes
//! (RFC 1951, dynamic blocks).
//!
//! Every repeat is checked against the text before it is coded, so a wrong one costs
//! compression, never a byte of the body.

use super::huffman::{at_least_two, canonical, code_lengths, run_lengths};

/// Deflate's window: no back-reference reaches further.
pub const WINDOW: usize = 32 << 10;

/// Text at `at` (an index into the piece handed to [`Gzip::take`]) repeats the `len` bytes
/// `back` bytes before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repeat {
    pub at: usize,
    pub len: usize,
    pub back: usize,
}

/// Symbols coded in one block: about what zlib's default memory level holds, so the codes
/// follow the text (one metric's labels, then its values) at a header of ~100 bytes a block.
const BLOCK_TOKENS: usize = 1 << 14;

const MIN_MATCH: usize = 3;
const MAX_MATCH: usize = 258;
const END_OF_BLOCK: usize = 256;

/// A gzip stream in memory: a fixed header (no name, mtime 0), so equal bodies give equal
/// bytes.
pub struct Gzip {
    out: Vec<u8>,
    bits: u64,
    nbits: u32,
    /// The block's symbols: a literal as its byte, a match as `len << 16 | back`.
    tokens: Vec<u32>,
    lit_freq: [u32; 286],
    dist_freq: [u32; 30],
    /// CRC-32 of the text (gzip's, ISO-HDLC), by the crate that checks remote read's frames.
    crc: crc_fast::Digest,
    size: u64,
}

impl Default for Gzip {
    fn default() -> Self {
        Self::new()
    }
}

impl Gzip {
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(4096);
        // magic, deflate, no flags, mtime 0, no extra flags, unknown OS: what flate2 wrote
        out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        Gzip {
            out,
            bits: 0,
            nbits: 0,
            tokens: Vec::with_capacity(BLOCK_TOKENS + MAX_MATCH),
            lit_freq: [0; 286],
            dist_freq: [0; 30],
            crc: crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32IsoHdlc),
            size: 0,
        }
    }

    /// Codes `text[from..]`, whose earlier text (at most [`WINDOW`] of it matters) is
    /// `text[..from]`. `repeats` lie in `text[from..]`, in order, apart.
    pub fn take(&mut self, text: &[u8], from: usize, repeats: &[Repeat]) {
        self.crc.update(&text[from..]);
        self.size += (text.len() - from) as u64;
        // a match being built: `len` bytes ending at `pos`, `back` bytes back
        let mut pending = Match { len: 0, back: 0 };
        let mut pos = from;
        // whether the match so far was run on as far as the text repeats at its distance:
        // a series that repeats the one before runs on over many points, each with its own
        // repeats, which are then passed over without comparing their bytes again
        let mut run = false;
        for r in repeats {
            debug_assert!(r.at + r.len <= text.len(), "a repeat lies in the piece");
            // the match so far may run on over the gap, over the repeat itself, and beyond
            if !run {
                pos = self.run_on(text, pos, &mut pending);
                run = true;
            }
            if pos >= r.at + r.len {
                continue;
            }
            let skip = pos.saturating_sub(r.at);
            let (at, len) = (r.at + skip, r.len - skip);
            self.literals(text, pos, at, &mut pending);
            // the repeat checked and run on in one pass
            match repeats_for(text, at, len, r.back) {
                Some(n) => {
                    if pending.back != r.back {
                        self.close(text, at, &mut pending);
                        pending.back = r.back;
                    }
                    pending.len += n;
                    pos = at + n;
                }
                None => {
                    self.literals(text, at, at + len, &mut pending);
                    pos = at + len;
                    run = false;
                }
            }
        }
        if !run {
            pos = self.run_on(text, pos, &mut pending);
        }
        self.literals(text, pos, text.len(), &mut pending);
        self.close(text, text.len(), &mut pending);
    }

    /// The compressed stream, ended.
    pub fn finish(mut self) -> Vec<u8> {
        self.block(true);
        self.align();
        let crc = self.crc.finalize() as u32;
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.out
            .extend_from_slice(&(self.size as u32).to_le_bytes());
        self.out
    }

    /// Extends `pending` from `pos` as far as the text repeats at its distance; returns where
    /// it stopped.
    fn run_on(&mut self, text: &[u8], pos: usize, pending: &mut Match) -> usize {
        if pending.len == 0 || pos >= text.len() {
            return pos;
        }
        let n = common_len(text, pos, text.len(), pending.back);
        pending.len += n;
        pos + n
    }

    fn literals(&mut self, text: &[u8], from: usize, to: usize, pending: &mut Match) {
        if from == to {
            return;
        }
        self.close(text, from, pending);
        for &b in &text[from..to] {
            self.lit_freq[usize::from(b)] += 1;
            self.tokens.push(u32::from(b) << 16);
        }
        if self.tokens.len() >= BLOCK_TOKENS {
            self.block(false);
        }
    }

    /// Codes the pending match, which ends at `end`, and starts none.
    fn close(&mut self, text: &[u8], end: usize, pending: &mut Match) {
        let (mut len, back) = (pending.len, pending.back);
        *pending = Match { len: 0, back: 0 };
        if len < MIN_MATCH {
            for &b in &text[end - len..end] {
                self.lit_freq[usize::from(b)] += 1;
                self.tokens.push(u32::from(b) << 16);
            }
            return;
        }
        while len > 0 {
            // never leave a tail too short to be a match
            let n = if len > MAX_MATCH && len - MAX_MATCH < MIN_MATCH {
                len - MIN_MATCH
            } else {
                len.min(MAX_MATCH)
            };
            self.lit_freq[257 + usize::from(LEN_CODE[n])] += 1;
            self.dist_freq[dist_code(back)] += 1;
            self.tokens.push((n as u32) << 16 | back as u32);
            len -= n;
        }
        if self.tokens.len() >= BLOCK_TOKENS {
            self.block(false);
        }
    }

    /// Codes the symbols gathered as one block with its own Huffman codes.
    fn block(&mut self, last: bool) {
        let mut lit_freq = std::mem::replace(&mut self.lit_freq, [0; 286]);
        let mut dist_freq = std::mem::take(&mut self.dist_freq);
        lit_freq[END_OF_BLOCK] += 1;
        // a code needs two symbols (a one-symbol code trips some inflaters)
        at_least_two(&mut lit_freq);
        at_least_two(&mut dist_freq);
        let lit_len = code_lengths(&lit_freq, 15);
        let dist_len = code_lengths(&dist_freq, 15);
        let lit_code = canonical(&lit_len);
        let dist_code_ = canonical(&dist_len);
        let hlit = 257.max(1 + lit_len.iter().rposition(|&l| l > 0).unwrap_or(0));
        let hdist = 1.max(1 + dist_len.iter().rposition(|&l| l > 0).unwrap_or(0));
        let lens: Vec<u8> = lit_len[..hlit]
            .iter()
            .chain(&dist_len[..hdist])
            .copied()
            .collect();
        let rle = run_lengths(&lens);
        let mut cl_freq = [0u32; 19];
        for &(sym, _, _) in &rle {
            cl_freq[usize::from(sym)] += 1;
        }
        at_least_two(&mut cl_freq);
        let cl_len = code_lengths(&cl_freq, 7);
        let cl_code = canonical(&cl_len);
        const ORDER: [usize; 19] = [
            16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
        ];
        let hclen = 4.max(1 + ORDER.iter().rposition(|&s| cl_len[s] > 0).unwrap_or(0));

        self.put(u64::from(last) | 2 << 1, 3);
        self.put(
            (hlit - 257) as u64 | ((hdist - 1) as u64) << 5 | ((hclen - 4) as u64) << 10,
            14,
        );
        for &s in &ORDER[..hclen] {
            self.put(u64::from(cl_len[s]), 3);
        }
        for &(sym, extra_bits, extra) in &rle {
            let s = usize::from(sym);
            self.put(
                u64::from(cl_code[s]) | u64::from(extra) << cl_len[s],
                u32::from(cl_len[s] + extra_bits),
            );
        }
        // each literal's and each match length's bits looked up whole, in a word kept local
        let lit: Vec<(u64, u32)> = (0..256)
            .map(|v| (u64::from(lit_code[v]), u32::from(lit_len[v])))
            .collect();
        let len: Vec<(u64, u32)> = (0..=MAX_MATCH)
            .map(|n| {
                let lc = usize::from(LEN_CODE[n]);
                let sym = 257 + lc;
                let extra = n.saturating_sub(usize::from(LEN_BASE[lc])) as u64;
                (
                    u64::from(lit_code[sym]) | extra << lit_len[sym],
                    u32::from(lit_len[sym] + LEN_EXTRA[lc]),
                )
            })
            .collect();
        self.out.reserve(self.tokens.len() * 6 + 64);
        let (mut bits, mut nbits) = (self.bits, self.nbits);
        let mut put = |b: u64, n: u32, out: &mut Vec<u8>| {
            // under 32 bits held, at most 28 added: the word never overflows
            bits |= b << nbits;
            nbits += n;
            if nbits >= 32 {
                out.extend_from_slice(&(bits as u32).to_le_bytes());
                bits >>= 32;
                nbits -= 32;
            }
        };
        for &t in &self.tokens {
            let (v, back) = ((t >> 16) as usize, (t & 0xffff) as usize);
            if back == 0 {
                let (b, n) = lit[v];
                put(b, n, &mut self.out);
                continue;
            }
            let (b, n) = len[v];
            put(b, n, &mut self.out);
            let dc = dist_code(back);
            let extra = (back - usize::from(DIST_BASE[dc])) as u64;
            put(
                u64::from(dist_code_[dc]) | extra << dist_len[dc],
                u32::from(dist_len[dc] + DIST_EXTRA[dc]),
                &mut self.out,
            );
        }
        (self.bits, self.nbits) = (bits, nbits);
        self.put(
            u64::from(lit_code[END_OF_BLOCK]),
            u32::from(lit_len[END_OF_BLOCK]),
        );
        self.tokens.clear();
    }

    /// Appends `n` bits (at most 32), the first in the lowest.
    fn put(&mut self, bits: u64, n: u32) {
        debug_assert!(n <= 32 && bits >> n == 0, "{n} bits");
        self.bits |= bits << self.nbits;
        self.nbits += n;
        if self.nbits >= 32 {
            self.out
                .extend_from_slice(&(self.bits as u32).to_le_bytes());
            self.bits >>= 32;
            self.nbits -= 32;
        }
    }

    fn align(&mut self) {
        while self.nbits > 0 {
            self.out.push(self.bits as u8);
            self.bits >>= 8;
            self.nbits = self.nbits.saturating_sub(8);
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Match {
    len: usize,
    back: usize,
}

/// When `text[at..at + len]` repeats the text `back` bytes before it, within the window: how
/// far from `at` the text goes on repeating it (at least `len`).
fn repeats_for(text: &[u8], at: usize, len: usize, back: usize) -> Option<usize> {
    if len < MIN_MATCH || !(1..=WINDOW).contains(&back) || back > at {
        return None;
    }
    let n = common_len(text, at, text.len(), back);
    (n >= len).then_some(n)
}

/// How many bytes from `pos` (up to `end`) repeat the text `back` bytes before them, read 8
/// at a time. Where `back` is under 8 the two reads overlap, which is how deflate copies.
#[inline]
fn common_len(text: &[u8], pos: usize, end: usize, back: usize) -> usize {
    debug_assert!((1..=pos).contains(&back) && end <= text.len());
    let word = |i: usize| u64::from_le_bytes(text[i..i + 8].try_into().expect("8 bytes"));
    let mut i = pos;
    while i + 8 <= end {
        let x = word(i) ^ word(i - back);
        if x != 0 {
            return i + (x.trailing_zeros() / 8) as usize - pos;
        }
        i += 8;
    }
    let rest = end - i;
    if rest == 0 {
        return i - pos;
    }
    // most repeats are a point's pieces, shorter than a word or a few bytes past one: their
    // last bytes in one load where the text goes on, the bytes past `end` masked off
    if i + 8 <= text.len() {
        let x = (word(i) ^ word(i - back)) & (u64::MAX >> (64 - 8 * rest));
        return match x {
            0 => end - pos,
            x => i + (x.trailing_zeros() / 8) as usize - pos,
        };
    }
    while i < end && text[i] == text[i - back] {
        i += 1;
    }
    i - pos
}

const LEN_BASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEN_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DIST_BASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DIST_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

/// The length code (0 for 257) of each match length; 258 has a code of its own.
const LEN_CODE: [u8; MAX_MATCH + 1] = {
    let mut t = [0u8; MAX_MATCH + 1];
    let mut c = 0;
    while c < 29 {
        let mut l = LEN_BASE[c] as usize;
        while l < LEN_BASE[c] as usize + (1 << LEN_EXTRA[c]) && l <= MAX_MATCH {
            t[l] = c as u8;
            l += 1;
        }
        c += 1;
    }
    t[MAX_MATCH] = 28;
    t
};

/// The distance code of each distance up to 256, then of each 128 beyond (`(back - 1) >> 7`).
const DIST_CODE: [u8; 512] = {
    let mut t = [0u8; 512];
    let mut c = 0;
    while c < 30 {
        let (base, n) = (DIST_BASE[c] as usize, 1usize << DIST_EXTRA[c]);
        let mut d = base;
        while d < base + n {
            if d <= 256 {
                t[d - 1] = c as u8;
            } else {
                t[256 + ((d - 1) >> 7)] = c as u8;
            }
            d += 1;
        }
        c += 1;
    }
    t
};

fn dist_code(back: usize) -> usize {
    debug_assert!((1..=WINDOW).contains(&back));
    usize::from(if back <= 256 {
        DIST_CODE[back - 1]
    } else {
        DIST_CODE[256 + ((back - 1) >> 7)]
    })
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn inflate(gz: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut out)
            .expect("a gzip stream");
        out
    }

    /// `text` handed in pieces of `piece` bytes, each with the window before it, and
    /// repeats found by a naive search (every position against a few distances).
    fn compress(text: &[u8], piece: usize, backs: &[usize]) -> Vec<u8> {
        let mut gz = Gzip::new();
        let mut start = 0;
        while start < text.len() || start == 0 {
            let end = (start + piece).min(text.len());
            let from = start.saturating_sub(WINDOW);
            let buf = &text[from..end];
            let mut repeats = Vec::new();
            let mut i = start - from;
            while i < buf.len() {
                let hit = backs.iter().find_map(|&b| {
                    let len = (i..buf.len())
                        .take_while(|&k| k >= b && buf[k] == buf[k - b])
                        .count();
                    (len >= 1).then_some(Repeat {
                        at: i,
                        len,
                        back: b,
                    })
                });
                match hit {
                    Some(r) => {
                        i += r.len;
                        repeats.push(r);
                    }
                    None => i += 1,
                }
            }
            gz.take(buf, start - from, &repeats);
            if end == text.len() {
                break;
            }
            start = end;
        }
        gz.finish()
    }

    #[test]
    fn streams_inflate_to_their_text() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for case in 0..200 {
            let n = [0, 1, 2, 3, 100, 5_000, 70_000, 300_000][case % 8];
            let alphabet = 1 + next() % 255;
            let mut text: Vec<u8> = (0..n).map(|_| (next() % alphabet) as u8).collect();
            // long repeats at far and overlapping distances
            for _ in 0..n / 500 {
                let (len, back) = ((next() % 600) as usize, 1 + (next() % 40_000) as usize);
                let at = (next() as usize) % n.max(1);
                for k in at..(at + len).min(n) {
                    if k >= back {
                        text[k] = text[k - back];
                    }
                }
            }
            let backs = [1, 3, 260, 4096, 32_768, 32_769, 40_000];
            let piece = [1, 7, 4096, 65_536][case % 4];
            let gz = compress(&text, piece, &backs[..case % 8]);
            assert_eq!(inflate(&gz), text, "case {case}: {n} bytes");
        }
    }

    #[test]
    fn common_lengths_are_counted_byte_by_byte() {
        // a period-5 text with a few bytes changed: every start, end and distance, the
        // text's last bytes included
        let mut text: Vec<u8> = (0..64u8).map(|i| b'a' + i % 5).collect();
        for i in [9, 23, 24, 40, 61] {
            text[i] = b'X';
        }
        for back in 1..=12 {
            for pos in back..text.len() {
                for end in pos..=text.len() {
                    let naive = (pos..end)
                        .take_while(|&i| text[i] == text[i - back])
                        .count();
                    let got = common_len(&text, pos, end, back);
                    assert_eq!(got, naive, "pos {pos}, end {end}, back {back}");
                }
            }
        }
    }

    #[test]
    fn wrong_repeats_cost_compression_not_bytes() {
        let text = b"abcdefabcdefXbcdefabcdef".repeat(100);
        let mut gz = Gzip::new();
        let repeats: Vec<Repeat> = (0..text.len())
            .step_by(7)
            .map(|at| Repeat {
                at,
                len: 5,
                back: 6,
            })
            .collect();
        gz.take(&text, 0, &repeats);
        assert_eq!(inflate(&gz.finish()), text);
    }
}
