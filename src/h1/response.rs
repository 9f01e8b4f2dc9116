//! A response head from the core, parsed in place, and how its body is
//! framed.

use super::request::HeaderSlots;
use super::{
    Codings, Framing, HeadError, MAX_HEAD_BYTES, Version, content_length, list_elements,
    transfer_codings,
};

/// A complete response head; its fields borrow the read buffer.
#[derive(Debug)]
pub struct ResponseHead<'h, 'b> {
    pub status: u16,
    pub version: Version,
    pub headers: &'h [httparse::Header<'b>],
    /// Bytes the head took in the buffer (the body, if any, follows).
    pub len: usize,
}

/// Parses the head at the start of `buf`: `Ok(None)` when more bytes are
/// needed (and there is room for them).
pub fn parse<'h, 'b>(
    buf: &'b [u8],
    slots: &'h mut HeaderSlots<'b>,
) -> Result<Option<ResponseHead<'h, 'b>>, HeadError> {
    let mut res = httparse::Response::new(&mut []);
    let parsed =
        httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut res, buf, slots);
    match parsed {
        Ok(httparse::Status::Complete(len)) => Ok(Some(ResponseHead {
            status: res.code.unwrap_or_default(),
            version: Version::from_minor(res.version.unwrap_or(1)),
            headers: res.headers,
            len,
        })),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(err) => Err(HeadError::from_httparse(err)),
    }
}

impl ResponseHead<'_, '_> {
    /// An interim answer (`100 Continue`, `103 Early Hints`): a final one
    /// follows on the same connection.
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// How the body is framed (RFC 9112 §6.3); `head_request` when the
    /// request was a HEAD.
    pub fn framing(&self, head_request: bool) -> Result<Framing, HeadError> {
        if head_request || self.status == 204 || self.status == 304 {
            return Ok(Framing::Empty);
        }
        match transfer_codings(self.headers)? {
            Codings::Chunked => Ok(Framing::Chunked),
            // The gateway re-encodes what it relays as chunked; a coding it
            // would have to pass through untouched is refused (the core
            // never sends one).
            Codings::Other { .. } => Err(HeadError::UnsupportedCoding),
            Codings::None => Ok(match content_length(self.headers)? {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            }),
        }
    }

    /// Whether the core keeps the connection open after this response.
    pub fn keep_alive(&self) -> bool {
        let mut close = false;
        let mut keep_alive = false;
        for header in self
            .headers
            .iter()
            .filter(|h| super::name_is(h.name, "connection"))
        {
            for option in list_elements(header.value) {
                close |= option.eq_ignore_ascii_case(b"close");
                keep_alive |= option.eq_ignore_ascii_case(b"keep-alive");
            }
        }
        match self.version {
            Version::Http11 => !close,
            Version::Http10 => keep_alive && !close,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::request::header_slots;
    use super::*;

    fn with_head<T>(raw: &str, check: impl FnOnce(ResponseHead<'_, '_>) -> T) -> T {
        let mut slots = header_slots();
        check(parse(raw.as_bytes(), &mut slots).unwrap().unwrap())
    }

    #[test]
    fn bodies_are_framed_by_method_status_and_headers() {
        let framing =
            |raw: &str, method: &str| with_head(raw, |head| head.framing(method == "HEAD"));
        let sized = "HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(framing(sized, "GET"), Ok(Framing::Length(12)));
        assert_eq!(framing(sized, "HEAD"), Ok(Framing::Empty));
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\n\r\n", "GET"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                "GET"
            ),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "GET"
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\n\r\n", "GET"),
            Ok(Framing::UntilClose)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                "GET"
            ),
            Err(HeadError::UnsupportedCoding)
        );
        assert!(framing("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "GET").is_err());
    }

    #[test]
    fn interim_answers_and_keep_alive_are_recognised() {
        with_head("HTTP/1.1 100 Continue\r\n\r\n", |head| {
            assert!(head.is_informational())
        });
        with_head("HTTP/1.1 200 OK\r\n\r\n", |head| {
            assert!(!head.is_informational());
            assert!(head.keep_alive());
        });
        with_head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", |head| {
            assert!(!head.keep_alive())
        });
        with_head("HTTP/1.0 200 OK\r\n\r\n", |head| {
            assert!(!head.keep_alive())
        });
    }
}
