//! A connection's read buffer: heads are parsed where they were read, and a
//! body streams through in buffer-sized pieces.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read from a connection; `bytes[start..end]` are not consumed yet.
///
/// The memory is taken at the first read, not when the buffer is made: a
/// connection that never sends anything costs no buffer (nginx takes its
/// header buffer the same way).
#[derive(Debug)]
pub struct ReadBuf {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    /// The size taken at the first read, and kept between messages.
    capacity: usize,
}

impl ReadBuf {
    /// A buffer of `capacity` bytes once it is first read into (it grows
    /// only for a head that does not fit, up to [`super::MAX_HEAD_BYTES`]).
    pub fn with_capacity(capacity: usize) -> ReadBuf {
        ReadBuf {
            bytes: Vec::new(),
            start: 0,
            end: 0,
            capacity: capacity.max(1),
        }
    }

    /// Whether its memory has been taken yet.
    pub fn is_allocated(&self) -> bool {
        !self.bytes.is_empty()
    }

    /// Gives back what a large head grew it by, once nothing is buffered.
    pub fn shrink(&mut self) {
        if self.is_empty() && self.bytes.len() > self.capacity {
            self.bytes.truncate(self.capacity);
            self.bytes.shrink_to_fit();
        }
    }

    /// The bytes not consumed yet.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// Marks the first `n` unconsumed bytes as used.
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            (self.start, self.end) = (0, 0);
        }
    }

    /// Reads once from `io`, after the unconsumed bytes; `Ok(0)` means the
    /// peer closed its side. Unconsumed bytes move to the front when the
    /// end is reached, and a buffer full of them grows (up to
    /// [`super::MAX_HEAD_BYTES`], which a head parser refuses beyond).
    pub async fn read_from<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> std::io::Result<usize> {
        if self.bytes.is_empty() {
            self.bytes = vec![0; self.capacity];
        }
        if self.end == self.bytes.len() {
            self.make_room();
        }
        if self.end == self.bytes.len() {
            // Only a caller that ignored a head limit gets here.
            return Err(std::io::Error::other("the read buffer is full"));
        }
        let n = io.read(&mut self.bytes[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    fn make_room(&mut self) {
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        } else {
            let grown =
                (self.bytes.len() * 2).clamp(1024, super::MAX_HEAD_BYTES.max(self.bytes.len()));
            self.bytes.resize(grown, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_is_taken_at_the_first_read_and_a_grown_buffer_shrinks_back() {
        let mut buf = ReadBuf::with_capacity(4);
        assert!(!buf.is_allocated());
        let mut input: &[u8] = b"abcdefgh";
        buf.read_from(&mut input).await.unwrap();
        buf.read_from(&mut input).await.unwrap();
        assert_eq!(buf.data(), b"abcdefgh", "grown for what did not fit");
        let grown = buf.bytes.len();
        assert!(grown > 4);
        buf.shrink();
        assert_eq!(
            buf.bytes.len(),
            grown,
            "nothing is dropped while it is buffered"
        );
        buf.consume(8);
        buf.shrink();
        assert_eq!(buf.bytes.len(), 4);
    }

    #[tokio::test]
    async fn reads_append_consumed_bytes_make_room_and_full_buffers_grow() {
        let mut buf = ReadBuf::with_capacity(4);
        let mut input: &[u8] = b"abcdefghij";
        assert_eq!(buf.read_from(&mut input).await.unwrap(), 4);
        assert_eq!(buf.data(), b"abcd");
        buf.consume(3);
        // The end is reached: "d" moves to the front, three more fit.
        assert_eq!(buf.read_from(&mut input).await.unwrap(), 3);
        assert_eq!(buf.data(), b"defg");
        // Full of unconsumed bytes: it grows.
        assert_eq!(buf.read_from(&mut input).await.unwrap(), 3);
        assert_eq!(buf.data(), b"defghij");
        buf.consume(100);
        assert!(buf.is_empty());
        assert_eq!(buf.read_from(&mut input).await.unwrap(), 0, "end of input");
    }
}
