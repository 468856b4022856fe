//! The framing of a streamed remote read answer: each frame is `uvarint(len)`, the big-endian
//! CRC32-Castagnoli of the data, then `len` bytes of `ChunkedReadResponse`. There is no end
//! marker (a cut on a frame boundary looks complete), and a server that fails after it sent
//! frames appends its error as plain text to the 200 body: both are told apart here.

use bytes::{Buf, Bytes, BytesMut};

/// How much of what follows a broken frame is kept to show (an appended error message).
const TAIL_KEPT: usize = 4096;

/// Splits a byte stream into checked frames as it arrives.
pub struct Frames {
    buf: BytesMut,
    frames: Vec<Bytes>,
    max_frame: usize,
    /// Why the stream cannot be framed any further, with the frame's number; the bytes from
    /// that frame on stay in `buf` (up to `TAIL_KEPT` more), for `finish` to show.
    broken: Option<String>,
}

impl Frames {
    /// A reader accepting frames of at most `max_frame` bytes.
    pub fn new(max_frame: usize) -> Self {
        Frames {
            buf: BytesMut::new(),
            frames: Vec::new(),
            max_frame,
            broken: None,
        }
    }

    /// Adds received bytes; complete frames are checked and kept.
    pub fn extend(&mut self, data: &[u8]) {
        if self.broken.is_some() {
            let room = TAIL_KEPT.saturating_sub(self.buf.len());
            self.buf.extend_from_slice(&data[..data.len().min(room)]);
            return;
        }
        self.buf.extend_from_slice(data);
        self.split();
    }

    /// Frames received so far.
    pub fn count(&self) -> usize {
        self.frames.len()
    }

    fn split(&mut self) {
        loop {
            let Some((len, head)) = uvarint(&self.buf) else {
                if self.buf.len() >= 10 {
                    self.break_off("its length is no varint");
                }
                return;
            };
            let Ok(len) = usize::try_from(len) else {
                self.break_off("its length is out of range");
                return;
            };
            if len > self.max_frame {
                self.break_off(&format!(
                    "it announces {len} bytes, more than the {} accepted (GRPC_MAX_MESSAGE_BYTES)",
                    self.max_frame
                ));
                return;
            }
            if self.buf.len() < head + 4 + len {
                return;
            }
            let crc = u32::from_be_bytes(self.buf[head..head + 4].try_into().unwrap_or_default());
            let data = &self.buf[head + 4..head + 4 + len];
            let actual = crc32c(data);
            if actual != crc {
                self.break_off(&format!(
                    "its CRC32-Castagnoli is {actual:08x}, the frame says {crc:08x}"
                ));
                return;
            }
            let mut frame = self.buf.split_to(head + 4 + len);
            frame.advance(head + 4);
            self.frames.push(frame.freeze());
        }
    }

    fn break_off(&mut self, why: &str) {
        self.broken = Some(format!("frame {} is corrupt: {why}", self.frames.len() + 1));
        self.buf.truncate(TAIL_KEPT);
    }

    /// The frames, once the body ended; an error when it did not end on a frame boundary.
    pub fn finish(self) -> Result<Vec<Bytes>, String> {
        if self.broken.is_none() && self.buf.is_empty() {
            return Ok(self.frames);
        }
        let n = self.frames.len();
        if let Some(text) = error_text(&self.buf) {
            return Err(format!(
                "the server failed after {n} frames and appended its error to the answer: {text}"
            ));
        }
        Err(match self.broken {
            Some(why) => why,
            None => {
                let need = uvarint(&self.buf)
                    .map(|(len, head)| format!(" of {}", len as usize + head + 4))
                    .unwrap_or_default();
                format!(
                    "the answer ends inside frame {}: {} bytes{need} received (the stream was cut)",
                    n + 1,
                    self.buf.len()
                )
            }
        })
    }
}

/// The bytes as an error message, when they are one: UTF-8 text without control characters
/// but line breaks and tabs (what Prometheus' `http.Error` appends).
fn error_text(b: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(b).ok()?;
    let printable = s
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'));
    let text = s.trim();
    (printable && !text.is_empty()).then(|| text.to_string())
}

/// A protobuf varint: the value and its length, or `None` when incomplete or too long.
pub fn uvarint(b: &[u8]) -> Option<(u64, usize)> {
    let mut x = 0u64;
    for (i, &byte) in b.iter().enumerate().take(10) {
        x |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Some((x, i + 1));
        }
    }
    None
}

/// CRC32-Castagnoli, as Go's `crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))`.
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// One frame as a server writes it, for tests and fakes.
pub fn encode_frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 14);
    let mut len = data.len() as u64;
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(&crc32c(data).to_be_bytes());
    out.extend_from_slice(data);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(body: &[u8], piece: usize) -> Result<Vec<Bytes>, String> {
        let mut f = Frames::new(1 << 20);
        for p in body.chunks(piece.max(1)) {
            f.extend(p);
        }
        f.finish()
    }

    #[test]
    fn castagnoli_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn frames_split_however_the_body_arrives() {
        let big = vec![7u8; 300];
        let mut body = encode_frame(b"first");
        body.extend(encode_frame(&big));
        body.extend(encode_frame(b""));
        for piece in [1, 2, 3, 7, 1000] {
            let frames = read(&body, piece).unwrap();
            assert_eq!(frames.len(), 3, "pieces of {piece}");
            assert_eq!(&frames[0][..], b"first");
            assert_eq!(&frames[1][..], &big[..]);
            assert!(frames[2].is_empty());
        }
        assert!(read(b"", 1).unwrap().is_empty());
    }

    #[test]
    fn a_cut_stream_is_an_error() {
        let mut body = encode_frame(b"first");
        body.extend(&encode_frame(b"second frame")[..9]);
        let e = read(&body, 4).unwrap_err();
        assert!(e.contains("ends inside frame 2"), "{e}");
        assert!(e.contains("of 17"), "{e}");
    }

    #[test]
    fn a_crc_mismatch_is_an_error() {
        let mut body = encode_frame(b"first");
        let mut bad = encode_frame(&[0xff, 0x00, 0x81, 0x92]);
        let last = bad.len() - 1;
        bad[last] ^= 1;
        body.extend(bad);
        body.extend(encode_frame(b"third"));
        let e = read(&body, 5).unwrap_err();
        assert!(e.contains("frame 2 is corrupt"), "{e}");
        assert!(e.contains("CRC32-Castagnoli"), "{e}");
    }

    #[test]
    fn an_error_appended_to_the_body_is_shown() {
        let mut body = encode_frame(b"first");
        body.extend(b"expanding series: context deadline exceeded\n");
        let e = read(&body, 3).unwrap_err();
        assert!(
            e.contains("failed after 1 frames")
                && e.contains("expanding series: context deadline exceeded"),
            "{e}"
        );
    }

    #[test]
    fn an_oversized_frame_is_refused() {
        let body = encode_frame(&[1u8; 100]);
        let mut f = Frames::new(50);
        f.extend(&body);
        let e = f.finish().unwrap_err();
        assert!(e.contains("more than the 50 accepted"), "{e}");
    }
}
