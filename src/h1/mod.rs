//! HTTP/1.1 on the wire (RFC 9112), for jessy-api's forwarding path: request
//! and response heads parsed in place with httparse (the parser under
//! hyper), how a message's body is framed, chunked bodies decoded and
//! encoded, and the read buffer a connection parses from.
//!
//! Why the gateway does not forward through hyper: per forwarded request,
//! hyper's server and client cost 44k instructions of user space against
//! nginx's 20k, spread over header maps, fresh buffers, a task and a channel
//! per exchange, and the gateway's budget is nginx's throughput (README,
//! "Performance"). Here a request is parsed where it was read and the core's
//! request head is written from those bytes, as nginx does.
//!
//! What is accepted is strict, because a gateway that frames a message
//! differently from the server behind it opens the door to request
//! smuggling: a `Transfer-Encoding` other than exactly `chunked`,
//! `Transfer-Encoding` together with `Content-Length`, differing or
//! malformed `Content-Length` values, obsolete line folding, and chunk lines
//! without CRLF are all refused; heads over [`MAX_HEAD_BYTES`] or
//! [`MAX_HEADERS`] are refused with 431.

pub mod buffer;
pub mod chunked;
pub mod date;
pub mod request;
pub mod response;

/// The longest request or response head accepted (hyper's default is larger;
/// nginx's is 4 × 8 KiB per header line).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The most header fields a head may carry.
pub const MAX_HEADERS: usize = 100;

/// HTTP/1.0 or HTTP/1.1 (httparse reads no other version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    fn from_minor(minor: u8) -> Version {
        if minor == 0 {
            Version::Http10
        } else {
            Version::Http11
        }
    }
}

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
}

/// Why a head was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Malformed or ambiguous: 400 (or 502 from the core).
    Invalid(&'static str),
    /// Longer than [`MAX_HEAD_BYTES`] or more than [`MAX_HEADERS`] fields: 431.
    TooLarge,
    /// A transfer coding this gateway does not implement: 501.
    UnsupportedCoding,
}

impl HeadError {
    fn from_httparse(err: httparse::Error) -> HeadError {
        match err {
            httparse::Error::TooManyHeaders => HeadError::TooLarge,
            httparse::Error::HeaderName => HeadError::Invalid("invalid header name"),
            httparse::Error::HeaderValue => HeadError::Invalid("invalid header value"),
            httparse::Error::NewLine => HeadError::Invalid("invalid line ending"),
            httparse::Error::Status => HeadError::Invalid("invalid status line"),
            httparse::Error::Token => HeadError::Invalid("invalid request line"),
            httparse::Error::Version => HeadError::Invalid("unsupported HTTP version"),
        }
    }

    /// The status a client gets for it.
    pub fn status(self) -> u16 {
        match self {
            HeadError::Invalid(_) => 400,
            HeadError::TooLarge => 431,
            HeadError::UnsupportedCoding => 501,
        }
    }

    /// The error code of the answer.
    pub fn code(self) -> &'static str {
        match self {
            HeadError::Invalid(_) => "bad_request",
            HeadError::TooLarge => "headers_too_large",
            HeadError::UnsupportedCoding => "unsupported_transfer_coding",
        }
    }

    /// A short description for the error body.
    pub fn reason(self) -> &'static str {
        match self {
            HeadError::Invalid(reason) => reason,
            HeadError::TooLarge => "the request head is too large",
            HeadError::UnsupportedCoding => "only Transfer-Encoding: chunked is supported",
        }
    }
}

/// The comma-separated elements of a list-valued field (`Connection`,
/// `Transfer-Encoding`), trimmed, empty ones skipped (RFC 9110 §5.6.1).
pub fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(|element| element.trim_ascii())
        .filter(|element| !element.is_empty())
}

/// Whether `name` is `expected` (field names are case-insensitive;
/// `expected` is given in lowercase).
pub fn name_is(name: &str, expected: &str) -> bool {
    name.len() == expected.len() && name.as_bytes().eq_ignore_ascii_case(expected.as_bytes())
}

/// What the `Content-Length` fields of a head say: `None` when there are
/// none, an error when a value is not a number or two values differ.
fn content_length(headers: &[httparse::Header<'_>]) -> Result<Option<u64>, HeadError> {
    let mut length = None;
    for header in headers.iter().filter(|h| name_is(h.name, "content-length")) {
        let value = header.value.trim_ascii();
        // Digits only: no sign, no list ("5, 5"), at most 19 so it fits a u64.
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return Err(HeadError::Invalid("invalid Content-Length"));
        }
        let parsed = value
            .iter()
            .fold(0u64, |n, digit| n * 10 + u64::from(digit - b'0'));
        if length.is_some_and(|previous| previous != parsed) {
            return Err(HeadError::Invalid("conflicting Content-Length values"));
        }
        length = Some(parsed);
    }
    Ok(length)
}

/// The transfer codings a head lists, as far as framing cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Codings {
    /// No `Transfer-Encoding`.
    None,
    /// Exactly `chunked`.
    Chunked,
    /// Other codings too; whether `chunked` is the last one.
    Other { chunked_last: bool },
}

/// What the `Transfer-Encoding` fields of a head say.
fn transfer_codings(headers: &[httparse::Header<'_>]) -> Result<Codings, HeadError> {
    let (mut count, mut chunked_count, mut chunked_last) = (0, 0, false);
    for header in headers
        .iter()
        .filter(|h| name_is(h.name, "transfer-encoding"))
    {
        for coding in list_elements(header.value) {
            chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            count += 1;
            chunked_count += usize::from(chunked_last);
        }
    }
    // Chunked twice is a framing error (RFC 9112 §6.1); an empty field too.
    if chunked_count > 1 {
        return Err(HeadError::Invalid("chunked applied twice"));
    }
    Ok(match count {
        0 if headers.iter().any(|h| name_is(h.name, "transfer-encoding")) => {
            return Err(HeadError::Invalid("empty Transfer-Encoding"));
        }
        0 => Codings::None,
        1 if chunked_last => Codings::Chunked,
        _ => Codings::Other { chunked_last },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_elements_are_trimmed_and_empty_ones_skipped() {
        let elements: Vec<&[u8]> = list_elements(b" keep-alive ,, X-Drop ,").collect();
        assert_eq!(elements, [&b"keep-alive"[..], b"X-Drop"]);
        assert_eq!(list_elements(b"").count(), 0);
    }

    #[test]
    fn names_compare_case_insensitively_and_by_length() {
        assert!(name_is("Content-Length", "content-length"));
        assert!(!name_is("Content-Lengths", "content-length"));
        assert!(!name_is("te", "tee"));
    }
}
