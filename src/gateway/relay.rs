//! Moving a message body from one connection to the other, both ways:
//! decoded by the framing it arrived with, written out with the framing the
//! receiver gets, and never held whole (it passes through in read-sized
//! pieces).
//!
//! Bytes to send gather in one output buffer, which may already hold the
//! head: a small message (head and body that arrived in one read) goes out
//! in one write. The buffer is flushed when it grows large and before
//! waiting for more input, so a slow body still streams.

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::h1::Framing;
use crate::h1::buffer::ReadBuf;
use crate::h1::chunked::{self, ChunkError, Decoder, Step};

/// Flush the output buffer once it holds this much.
const FLUSH_AT: usize = 16 * 1024;

/// How the receiver gets the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encode {
    /// As the bytes are (the receiver knows the length, or the connection
    /// closes after the body).
    Raw,
    /// Re-encoded as chunks.
    Chunked,
}

/// Why a body could not be relayed.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("reading the body failed: {0}")]
    Read(#[source] std::io::Error),
    #[error("the sender closed the connection before the body was complete")]
    Truncated,
    #[error("writing the body failed: {0}")]
    Write(#[source] std::io::Error),
    #[error(transparent)]
    Framing(#[from] ChunkError),
    #[error("the body is over the limit")]
    TooLarge,
}

/// One side of a relay: a connection and what has been read from it.
pub struct Source<'a, R> {
    pub io: &'a mut R,
    pub buf: &'a mut ReadBuf,
    pub framing: Framing,
}

/// Relays the body of `from` to `to`, after whatever `out` holds already;
/// everything is written when it returns `Ok`. Content over `limit` bytes
/// stops the relay with [`RelayError::TooLarge`]. Returns the content
/// length.
pub async fn body<R, W>(
    from: Source<'_, R>,
    to: &mut W,
    out: &mut Vec<u8>,
    encode: Encode,
    limit: u64,
) -> Result<u64, RelayError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Source { io, buf, framing } = from;
    let mut relayed = 0u64;
    match framing {
        Framing::Empty => {}
        Framing::Length(length) => {
            while relayed < length {
                if buf.is_empty() {
                    flush(to, out).await?;
                    fill(io, buf).await?;
                }
                let take = buf
                    .data()
                    .len()
                    .min(usize::try_from(length - relayed).unwrap_or(usize::MAX));
                relayed = add_within(relayed, take, limit)?;
                put(out, &buf.data()[..take], encode);
                buf.consume(take);
                if out.len() >= FLUSH_AT {
                    flush(to, out).await?;
                }
            }
        }
        Framing::Chunked => {
            let mut decoder = Decoder::default();
            loop {
                match decoder.step(buf.data())? {
                    Step::Framing(n) => buf.consume(n),
                    Step::Data(data) => {
                        let take = data.len();
                        relayed = add_within(relayed, take, limit)?;
                        put(out, data, encode);
                        buf.consume(take);
                        if out.len() >= FLUSH_AT {
                            flush(to, out).await?;
                        }
                    }
                    Step::Done(n) => {
                        buf.consume(n);
                        break;
                    }
                    Step::NeedMore => {
                        flush(to, out).await?;
                        fill(io, buf).await?;
                    }
                }
            }
        }
        Framing::UntilClose => loop {
            let take = buf.data().len();
            relayed = add_within(relayed, take, limit)?;
            put(out, buf.data(), encode);
            buf.consume(take);
            flush(to, out).await?;
            match buf.read_from(io).await {
                Ok(0) => break,
                Ok(_) => {}
                Err(err) => return Err(RelayError::Read(err)),
            }
        },
    }
    if encode == Encode::Chunked {
        out.extend_from_slice(chunked::LAST_CHUNK);
    }
    flush(to, out).await?;
    Ok(relayed)
}

/// Appends content, as a chunk when re-encoding (an empty piece is not a
/// chunk: that would end the body).
fn put(out: &mut Vec<u8>, data: &[u8], encode: Encode) {
    match encode {
        Encode::Raw => out.extend_from_slice(data),
        Encode::Chunked if data.is_empty() => {}
        Encode::Chunked => {
            chunked::write_chunk_header(out, data.len());
            out.extend_from_slice(data);
            out.extend_from_slice(chunked::CHUNK_END);
        }
    }
}

fn add_within(relayed: u64, more: usize, limit: u64) -> Result<u64, RelayError> {
    let total = relayed + more as u64;
    if total > limit {
        return Err(RelayError::TooLarge);
    }
    Ok(total)
}

/// Reads more of the body; the sender closing first is an error.
async fn fill<R: AsyncRead + Unpin>(io: &mut R, buf: &mut ReadBuf) -> Result<(), RelayError> {
    match buf.read_from(io).await {
        Ok(0) => Err(RelayError::Truncated),
        Ok(_) => Ok(()),
        Err(err) => Err(RelayError::Read(err)),
    }
}

/// Writes and empties `out`.
pub async fn flush<W: AsyncWrite + Unpin>(to: &mut W, out: &mut Vec<u8>) -> Result<(), RelayError> {
    if !out.is_empty() {
        to.write_all(out).await.map_err(RelayError::Write)?;
        out.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Relays `input` (read in pieces of `piece` bytes) framed by `framing`.
    async fn relay(
        input: &[u8],
        piece: usize,
        framing: Framing,
        encode: Encode,
        limit: u64,
    ) -> Result<(Vec<u8>, u64, usize), RelayError> {
        let mut reader = Pieces::new(input, piece);
        let mut buf = ReadBuf::with_capacity(64);
        let mut written = Vec::new();
        let mut out = b"HEAD|".to_vec();
        let n = body(
            Source {
                io: &mut reader,
                buf: &mut buf,
                framing,
            },
            &mut written,
            &mut out,
            encode,
            limit,
        )
        .await?;
        assert!(out.is_empty(), "everything was written");
        Ok((written, n, buf.data().len()))
    }

    /// A reader that hands out its input at most `piece` bytes per read.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl Pieces {
        fn new(input: &[u8], piece: usize) -> Pieces {
            Pieces(input.chunks(piece).map(<[u8]>::to_vec).collect())
        }
    }

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            if let Some(mut piece) = self.0.pop_front() {
                let n = piece.len().min(buf.remaining());
                buf.put_slice(&piece[..n]);
                if n < piece.len() {
                    self.0.push_front(piece.split_off(n));
                }
            }
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_sized_body_is_relayed_exactly_and_what_follows_stays() {
        for piece in [1, 3, 100] {
            let (written, n, left) = relay(
                b"0123456789NEXT",
                piece,
                Framing::Length(10),
                Encode::Raw,
                1000,
            )
            .await
            .unwrap();
            assert_eq!(written, b"HEAD|0123456789", "piece {piece}");
            assert_eq!(n, 10);
            // Bytes of the next message stay buffered (when they arrived).
            assert!(left <= 4);
        }
    }

    #[tokio::test]
    async fn a_chunked_body_is_decoded_and_can_be_re_encoded() {
        let input = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n";
        for piece in [1, 2, 7, 64] {
            let (raw, n, _) = relay(input, piece, Framing::Chunked, Encode::Raw, 1000)
                .await
                .unwrap();
            assert_eq!(raw, b"HEAD|abcde");
            assert_eq!(n, 5);
            let (chunked, _, _) = relay(input, piece, Framing::Chunked, Encode::Chunked, 1000)
                .await
                .unwrap();
            let (decoded, ..) = relay(&chunked[5..], 3, Framing::Chunked, Encode::Raw, 1000)
                .await
                .unwrap();
            assert_eq!(
                decoded, b"HEAD|abcde",
                "re-encoded chunks decode back (piece {piece})"
            );
        }
    }

    #[tokio::test]
    async fn a_body_until_close_is_relayed_to_the_end() {
        let (written, n, _) = relay(b"all of it", 4, Framing::UntilClose, Encode::Chunked, 1000)
            .await
            .unwrap();
        assert_eq!(n, 9);
        assert!(written.ends_with(b"0\r\n\r\n"));
    }

    #[tokio::test]
    async fn truncation_overflow_and_bad_framing_are_errors() {
        let short = relay(b"01234", 2, Framing::Length(10), Encode::Raw, 1000).await;
        assert!(matches!(short, Err(RelayError::Truncated)), "{short:?}");
        let over = relay(b"0123456789", 4, Framing::Length(10), Encode::Raw, 9).await;
        assert!(matches!(over, Err(RelayError::TooLarge)), "{over:?}");
        let chunked_over = relay(
            b"5\r\nabcde\r\n5\r\nfghij\r\n0\r\n\r\n",
            4,
            Framing::Chunked,
            Encode::Raw,
            7,
        )
        .await;
        assert!(
            matches!(chunked_over, Err(RelayError::TooLarge)),
            "{chunked_over:?}"
        );
        let bad = relay(b"zz\r\n", 4, Framing::Chunked, Encode::Raw, 1000).await;
        assert!(matches!(bad, Err(RelayError::Framing(_))), "{bad:?}");
        let cut = relay(b"5\r\nab", 4, Framing::Chunked, Encode::Raw, 1000).await;
        assert!(matches!(cut, Err(RelayError::Truncated)), "{cut:?}");
    }
}
