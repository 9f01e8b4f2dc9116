//! A request head, parsed in place, and what it says about the body and the
//! connection.

use std::mem::MaybeUninit;

use super::{
    Codings, Framing, HeadError, MAX_HEAD_BYTES, Version, content_length, list_elements,
    transfer_codings,
};

/// Room for the header fields of one head (httparse fills it in place).
pub type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; super::MAX_HEADERS];

/// Empty slots for [`parse`].
pub fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; super::MAX_HEADERS]
}

/// A complete request head; its fields borrow the read buffer.
#[derive(Debug)]
pub struct RequestHead<'h, 'b> {
    pub method: &'b str,
    /// The request target as sent: origin form (`/path?query`), absolute
    /// form (`http://host/path`), authority form or `*`.
    pub target: &'b str,
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
) -> Result<Option<RequestHead<'h, 'b>>, HeadError> {
    let mut req = httparse::Request::new(&mut []);
    match req.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(RequestHead {
            method: req.method.unwrap_or_default(),
            target: req.path.unwrap_or_default(),
            version: Version::from_minor(req.version.unwrap_or(1)),
            headers: req.headers,
            len,
        })),
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD_BYTES => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(err) => Err(HeadError::from_httparse(err)),
    }
}

impl RequestHead<'_, '_> {
    /// How the request body is framed (RFC 9112 §6.3), refusing anything
    /// two parsers could read differently.
    pub fn framing(&self) -> Result<Framing, HeadError> {
        let length = content_length(self.headers)?;
        let codings = transfer_codings(self.headers)?;
        if codings == Codings::None {
            return Ok(match length {
                None | Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
            });
        }
        if length.is_some() {
            return Err(HeadError::Invalid(
                "both Transfer-Encoding and Content-Length",
            ));
        }
        if self.version == Version::Http10 {
            return Err(HeadError::Invalid(
                "Transfer-Encoding in an HTTP/1.0 request",
            ));
        }
        match codings {
            Codings::Other {
                chunked_last: false,
            } => Err(HeadError::Invalid(
                "the last transfer coding is not chunked",
            )),
            Codings::Other { chunked_last: true } => Err(HeadError::UnsupportedCoding),
            Codings::None | Codings::Chunked => Ok(Framing::Chunked),
        }
    }

    /// RFC 9112 §3.2: an HTTP/1.1 request without `Host`, and any request
    /// with more than one, is refused (a proxy and the server behind it
    /// could each pick a different one).
    pub fn check_host(&self) -> Result<(), HeadError> {
        let hosts = self
            .headers
            .iter()
            .filter(|h| super::name_is(h.name, "host"))
            .count();
        match hosts {
            0 if self.version == Version::Http11 => Err(HeadError::Invalid("missing Host")),
            0 | 1 => Ok(()),
            _ => Err(HeadError::Invalid("more than one Host")),
        }
    }

    /// Whether the client wants the connection kept open after the answer:
    /// HTTP/1.1 unless `Connection: close`, HTTP/1.0 only with
    /// `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        let mut close = false;
        let mut keep_alive = false;
        for header in self.connection_headers() {
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

    /// Whether the client waits for `100 Continue` before sending its body.
    pub fn expects_continue(&self) -> bool {
        self.version == Version::Http11
            && self.headers.iter().any(|h| {
                super::name_is(h.name, "expect")
                    && h.value.trim_ascii().eq_ignore_ascii_case(b"100-continue")
            })
    }

    /// The path and query of the target: the target itself in origin form,
    /// what follows the authority in absolute form (RFC 9112 §3.2.2);
    /// `None` for the authority and asterisk forms, which the gateway does
    /// not serve.
    pub fn path_and_query(&self) -> Option<&str> {
        if self.target.starts_with('/') {
            return Some(self.target);
        }
        let rest = self
            .target
            .strip_prefix("http://")
            .or_else(|| self.target.strip_prefix("https://"))?;
        match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => Some(&rest[at..]),
            // `http://host?query` has an empty path, which means "/" (but
            // a borrowed "/?query" cannot be made from it: refuse).
            Some(_) => None,
            None => Some("/"),
        }
    }

    fn connection_headers(&self) -> impl Iterator<Item = &httparse::Header<'_>> {
        self.headers
            .iter()
            .filter(|h| super::name_is(h.name, "connection"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_head<T>(
        raw: &str,
        check: impl FnOnce(Result<Option<RequestHead<'_, '_>>, HeadError>) -> T,
    ) -> T {
        let mut slots = header_slots();
        check(parse(raw.as_bytes(), &mut slots))
    }

    fn framing(raw: &str) -> Result<Framing, HeadError> {
        with_head(raw, |head| head.unwrap().unwrap().framing())
    }

    #[test]
    fn a_complete_head_is_parsed_in_place_and_its_length_reported() {
        let raw = "GET /api/v1/status?x=1 HTTP/1.1\r\nHost: gw\r\nX-Request-Id: a\r\n\r\nBODY";
        with_head(raw, |head| {
            let head = head.unwrap().unwrap();
            assert_eq!(head.method, "GET");
            assert_eq!(head.target, "/api/v1/status?x=1");
            assert_eq!(head.version, Version::Http11);
            assert_eq!(head.headers.len(), 2);
            assert_eq!(head.headers[1].value, b"a");
            assert_eq!(&raw[head.len..], "BODY");
        });
    }

    #[test]
    fn a_partial_head_asks_for_more_until_it_is_too_large() {
        with_head("GET / HTTP/1.1\r\nHost: gw\r\n", |head| {
            assert!(head.unwrap().is_none())
        });
        let huge = format!("GET / HTTP/1.1\r\nX-Big: {}", "a".repeat(MAX_HEAD_BYTES));
        with_head(&huge, |head| {
            assert_eq!(head.unwrap_err(), HeadError::TooLarge)
        });
        let many: String = (0..=super::super::MAX_HEADERS)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect();
        let raw = format!("GET / HTTP/1.1\r\n{many}\r\n");
        with_head(&raw, |head| {
            assert_eq!(head.unwrap_err(), HeadError::TooLarge)
        });
    }

    #[test]
    fn malformed_heads_are_invalid() {
        for raw in [
            "GET / HTTP/2.0\r\n\r\n",
            "GET /\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nX-Fold: a\r\n b\r\n\r\n",
            "GET / HTTP/1.1\r\nX-Nul: a\0b\r\n\r\n",
        ] {
            with_head(raw, |head| {
                assert!(
                    matches!(head, Err(HeadError::Invalid(_))),
                    "{raw:?}: {head:?}"
                );
            });
        }
    }

    #[test]
    fn the_body_is_framed_by_length_or_chunked_and_ambiguity_is_refused() {
        assert_eq!(framing("GET / HTTP/1.1\r\n\r\n"), Ok(Framing::Empty));
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Ok(Framing::Empty)
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nContent-Length: 42\r\ncontent-length: 42\r\n\r\n"),
            Ok(Framing::Length(42))
        );
        assert_eq!(
            framing("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        for raw in [
            "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: \r\n\r\n",
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(
                matches!(framing(raw), Err(HeadError::Invalid(_))),
                "{raw:?}"
            );
        }
        for raw in [
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert_eq!(framing(raw), Err(HeadError::UnsupportedCoding), "{raw:?}");
        }
        assert!(matches!(
            framing("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Err(HeadError::Invalid(_))
        ));
    }

    #[test]
    fn http_1_1_needs_one_host_and_no_request_may_have_two() {
        let host = |raw: &str| with_head(raw, |head| head.unwrap().unwrap().check_host());
        assert_eq!(host("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Ok(()));
        assert_eq!(host("GET / HTTP/1.0\r\n\r\n"), Ok(()));
        for raw in [
            "GET / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n",
            "GET / HTTP/1.0\r\nHost: a\r\nHOST: b\r\n\r\n",
        ] {
            assert!(matches!(host(raw), Err(HeadError::Invalid(_))), "{raw:?}");
        }
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_options() {
        let keep = |raw: &str| with_head(raw, |head| head.unwrap().unwrap().keep_alive());
        assert!(keep("GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep(
            "GET / HTTP/1.1\r\nConnection: x-other, Close\r\n\r\n"
        ));
        assert!(!keep("GET / HTTP/1.0\r\n\r\n"));
        assert!(keep("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
    }

    #[test]
    fn expect_continue_counts_only_for_http_1_1() {
        let expects = |raw: &str| with_head(raw, |head| head.unwrap().unwrap().expects_continue());
        assert!(expects("POST / HTTP/1.1\r\nExpect: 100-Continue\r\n\r\n"));
        assert!(!expects("POST / HTTP/1.0\r\nExpect: 100-continue\r\n\r\n"));
        assert!(!expects("POST / HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn the_path_comes_from_origin_or_absolute_form_only() {
        let path = |raw: &str| {
            with_head(raw, |head| {
                head.unwrap().unwrap().path_and_query().map(str::to_owned)
            })
        };
        assert_eq!(path("GET /a?b HTTP/1.1\r\n\r\n").as_deref(), Some("/a?b"));
        assert_eq!(
            path("GET http://evil.example/api/v1/query?x HTTP/1.1\r\n\r\n").as_deref(),
            Some("/api/v1/query?x")
        );
        assert_eq!(
            path("GET http://evil.example HTTP/1.1\r\n\r\n").as_deref(),
            Some("/")
        );
        assert_eq!(path("OPTIONS * HTTP/1.1\r\n\r\n"), None);
        assert_eq!(path("CONNECT core:8080 HTTP/1.1\r\n\r\n"), None);
        assert_eq!(path("GET http://h?q HTTP/1.1\r\n\r\n"), None);
    }
}
