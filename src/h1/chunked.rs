//! The chunked transfer coding (RFC 9112 §7.1): an incremental decoder that
//! reads from whatever part of a body has arrived, and the encoder the
//! gateway writes relayed bodies with.
//!
//! Decoding is strict: a chunk size is 1–15 hex digits, every line ends in
//! CRLF, an extension holds no control characters, and the trailer section
//! is bounded (and dropped: nothing the gateway forwards needs it).

/// Longest chunk-size line, extensions included.
const MAX_SIZE_LINE: usize = 4096;
/// Largest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;

/// Why a chunked body was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "invalid chunked body: {}", self.0)
    }
}

impl std::error::Error for ChunkError {}

/// What the next bytes of a chunked body are.
#[derive(Debug, PartialEq, Eq)]
pub enum Step<'a> {
    /// Framing: consume this many bytes and step again.
    Framing(usize),
    /// Content: these bytes, at the start of the input; consume them.
    Data(&'a [u8]),
    /// The input ends inside a framing line: read more.
    NeedMore,
    /// The body is complete once this many more bytes are consumed.
    Done(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At a chunk-size line.
    Size,
    /// Inside a chunk's data.
    Data(u64),
    /// After a chunk's data, at its CRLF.
    DataEnd,
    /// After the last chunk, at a trailer line or the final CRLF.
    Trailers(usize),
    Done,
}

/// Decodes one chunked body, step by step.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder { state: State::Size }
    }
}

impl Decoder {
    /// The next step for `input`, the body bytes not consumed yet.
    pub fn step<'a>(&mut self, input: &'a [u8]) -> Result<Step<'a>, ChunkError> {
        match self.state {
            State::Size => {
                let Some(line) = line(input, MAX_SIZE_LINE)? else {
                    return Ok(Step::NeedMore);
                };
                let size = chunk_size(&input[..line - 2])?;
                self.state = if size == 0 {
                    State::Trailers(0)
                } else {
                    State::Data(size)
                };
                Ok(Step::Framing(line))
            }
            State::Data(remaining) => {
                if input.is_empty() {
                    return Ok(Step::NeedMore);
                }
                let take = input
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    State::DataEnd
                } else {
                    State::Data(left)
                };
                Ok(Step::Data(&input[..take]))
            }
            State::DataEnd => match input {
                [b'\r', b'\n', ..] => {
                    self.state = State::Size;
                    Ok(Step::Framing(2))
                }
                [] | [b'\r'] => Ok(Step::NeedMore),
                _ => Err(ChunkError("chunk data not followed by CRLF")),
            },
            State::Trailers(seen) => {
                let Some(line) = line(input, MAX_TRAILERS - seen)? else {
                    return Ok(Step::NeedMore);
                };
                if line == 2 {
                    self.state = State::Done;
                    return Ok(Step::Done(2));
                }
                self.state = State::Trailers(seen + line);
                Ok(Step::Framing(line))
            }
            State::Done => Ok(Step::Done(0)),
        }
    }

    /// Whether the last chunk and the trailers have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

/// The length of the CRLF-terminated line at the start of `input` (CRLF
/// included), `None` if it is not complete yet. A bare CR or LF, or a line
/// longer than `max`, is an error.
fn line(input: &[u8], max: usize) -> Result<Option<usize>, ChunkError> {
    match input.iter().position(|&b| b == b'\r' || b == b'\n') {
        Some(at) if at + 2 > max => Err(ChunkError("line too long")),
        Some(at) if input[at] == b'\n' => Err(ChunkError("bare LF")),
        Some(at) => match input.get(at + 1) {
            Some(b'\n') => Ok(Some(at + 2)),
            Some(_) => Err(ChunkError("bare CR")),
            None => Ok(None),
        },
        None if input.len() >= max => Err(ChunkError("line too long")),
        None => Ok(None),
    }
}

/// The size in a chunk-size line (without its CRLF): hex digits, then
/// optionally extensions (`;name=value`), which are ignored.
fn chunk_size(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(ChunkError("invalid chunk size"));
    }
    let rest = &line[digits..];
    let extensions = rest.trim_ascii_start();
    if !(rest.is_empty() || extensions.starts_with(b";")) {
        return Err(ChunkError("invalid chunk size"));
    }
    if extensions
        .iter()
        .any(|&b| b.is_ascii_control() && b != b'\t')
    {
        return Err(ChunkError("control character in a chunk extension"));
    }
    let size = line[..digits].iter().fold(0u64, |n, &b| {
        let digit = (b as char).to_digit(16).unwrap_or(0);
        (n << 4) | u64::from(digit)
    });
    Ok(size)
}

/// Appends the chunk header for `len` bytes of data (`{len:x}\r\n`); the
/// data and [`CHUNK_END`] follow. `len` is not zero: that is [`LAST_CHUNK`].
pub fn write_chunk_header(out: &mut Vec<u8>, len: usize) {
    use std::io::Write as _;
    let _ = write!(out, "{len:x}\r\n");
}

/// What follows a chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

/// The end of a chunked body (no trailers).
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `body` fed in pieces of `piece` bytes, as reads would bring it.
    fn decode_in_pieces(body: &[u8], piece: usize) -> Result<(Vec<u8>, usize), ChunkError> {
        let mut decoder = Decoder::default();
        let mut buffered: Vec<u8> = Vec::new();
        let mut fed = 0;
        let mut data = Vec::new();
        loop {
            match decoder.step(&buffered)? {
                Step::Framing(n) => drop(buffered.drain(..n)),
                Step::Data(bytes) => {
                    data.extend_from_slice(bytes);
                    let n = bytes.len();
                    buffered.drain(..n);
                }
                Step::Done(n) => {
                    buffered.drain(..n);
                    assert!(decoder.is_done());
                    // What is left belongs to the next message.
                    return Ok((data, buffered.len() + body.len() - fed));
                }
                Step::NeedMore => {
                    if fed == body.len() {
                        return Err(ChunkError("test input ended"));
                    }
                    let end = (fed + piece).min(body.len());
                    buffered.extend_from_slice(&body[fed..end]);
                    fed = end;
                }
            }
        }
    }

    #[test]
    fn a_body_decodes_the_same_whatever_the_read_boundaries() {
        let body = b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: 1\r\n\r\nNEXT";
        for piece in 1..=body.len() {
            let (data, left) = decode_in_pieces(body, piece).unwrap();
            assert_eq!(data, b"Wikipedia in\r\n\r\nchunks.", "piece {piece}");
            assert_eq!(left, 4, "the next message is not consumed (piece {piece})");
        }
    }

    #[test]
    fn malformed_framing_is_refused() {
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"1234567890abcdef0\r\n",
            b"4\nWiki\r\n0\r\n\r\n",
            b"4\r\nWikiX\r\n0\r\n\r\n",
            b"4\r\nWiki\r\n0\r\n\n",
            b"4 x\r\nWiki\r\n0\r\n\r\n",
            b"4;a\x01b\r\nWiki\r\n0\r\n\r\n",
            b"4;a\rb\r\nWiki\r\n0\r\n\r\n",
            b"-4\r\nWiki\r\n0\r\n\r\n",
        ] {
            assert!(
                decode_in_pieces(body, body.len()).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        let long_extension = format!("1;{}\r\na\r\n0\r\n\r\n", "e".repeat(MAX_SIZE_LINE));
        assert!(decode_in_pieces(long_extension.as_bytes(), 64).is_err());
        let long_trailers = format!("0\r\n{}\r\n\r\n", "X-T: 1\r\n".repeat(MAX_TRAILERS / 8));
        assert!(decode_in_pieces(long_trailers.as_bytes(), 64).is_err());
    }

    #[test]
    fn encoded_chunks_decode_back() {
        let mut out = Vec::new();
        for part in [&b"hello "[..], &[b'w'; 300][..]] {
            write_chunk_header(&mut out, part.len());
            out.extend_from_slice(part);
            out.extend_from_slice(CHUNK_END);
        }
        out.extend_from_slice(LAST_CHUNK);
        assert!(out.starts_with(b"6\r\nhello \r\n12c\r\n"));
        let (data, left) = decode_in_pieces(&out, 7).unwrap();
        assert_eq!(data.len(), 306);
        assert_eq!(left, 0);
    }
}
