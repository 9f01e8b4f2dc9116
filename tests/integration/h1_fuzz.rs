//! A bounded, seeded fuzz of the gateway's HTTP/1.1 decoders, run with the
//! other tests on the stable toolchain: request heads, response heads and
//! chunked bodies, mutated from valid messages and from the shapes
//! smuggling tries. It asserts what forwarding relies on: never a panic;
//! what is accepted re-serialises to one message that reads back the same
//! (same framing, one `Host`, no framing field left ambiguous); what is
//! refused is refused with 400, 431 or 501 for the reason that applies.
//! The cases are fixed (a seed and a count: 20,000 per decoder, under a
//! second in a debug build), so a failure replays; the failing case is
//! printed with its seed.

use jessy::gateway::headers::{self, Peer, Upstream};
use jessy::h1::chunked::{self, Decoder, Step};
use jessy::h1::request::{self, header_slots};
use jessy::h1::{Framing, HeadError, MAX_HEAD_BYTES, MAX_HEADERS, response};
use jessy::http::request_id::RequestId;

/// splitmix64: a tiny, well-mixed PRNG, enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const SEED: u64 = 0x006a_6573_7379_3135; // "jessy15"
const CASES: usize = 20_000;

/// Bytes and fragments that matter to HTTP/1.1 framing.
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b":",
    b",",
    b";",
    b"\0",
    b"\x7f",
    b"\xff",
    b"0",
    b"1",
    b"-1",
    b"+1",
    b"ffffffffffffffff",
    b"chunked",
    b"Chunked",
    b"gzip",
    b"identity",
    b"content-length",
    b"Content-Length: 5",
    b"Content-Length: 0",
    b"Content-Length: 5, 5",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, gzip",
    b"Transfer-Encoding:",
    b"Host: h",
    b"host: other",
    b"Connection: close",
    b"Connection: keep-alive, x-drop",
    b"X-Drop: 1",
    b"Expect: 100-continue",
    b"HTTP/1.0",
    b"HTTP/1.1",
    b"HTTP/2.0",
    b"/../",
    b"%2e%2e",
    b"?",
    b"#",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if at < input.len() => input[at] = rng.next() as u8,
            1 if at < input.len() => drop(input.remove(at)),
            2 => {
                let token = rng.pick(TOKENS);
                input.splice(at..at, token.iter().copied());
            }
            3 => {
                // A whole header line, before the end of the head.
                let line = [*rng.pick(TOKENS), b"\r\n"].concat();
                let end = input
                    .windows(2)
                    .position(|w| w == b"\r\n")
                    .map_or(0, |p| p + 2);
                input.splice(end..end, line);
            }
            4 if at < input.len() => {
                let end = (at + rng.below(16)).min(input.len());
                let copy = input[at..end].to_vec();
                input.splice(at..at, copy);
            }
            _ => input.truncate(at.max(1)),
        }
    }
}

const REQUESTS: &[&[u8]] = &[
    b"GET /api/v1/query?q=1 HTTP/1.1\r\nHost: gw\r\n\r\n",
    b"POST /api/v1/query HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /api/v1/query HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"GET http://gw/api/v1/status HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n\r\n",
    b"GET /api/v1/health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"PUT /api/v1/x HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: 0\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
];

/// The status a refused head gets, and that the reason fits the input.
fn check_refusal(input: &[u8], err: HeadError) {
    let status = err.status();
    match err {
        HeadError::TooLarge => {
            let lines = input.windows(2).filter(|w| w == b"\r\n").count();
            assert!(
                input.len() >= MAX_HEAD_BYTES || lines > MAX_HEADERS,
                "431 for a small head"
            );
            assert_eq!(status, 431);
        }
        HeadError::UnsupportedCoding => {
            let lower = input.to_ascii_lowercase();
            assert!(
                lower.windows(17).any(|w| w == b"transfer-encoding"),
                "501 without a Transfer-Encoding"
            );
            assert_eq!(status, 501);
        }
        HeadError::Invalid(_) => assert_eq!(status, 400),
    }
}

/// Every value of the fields called `name` (case-insensitive).
fn values<'a>(fields: &'a [httparse::Header<'a>], name: &str) -> Vec<&'a [u8]> {
    fields
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

/// An accepted request: the framing agrees with an independent reading of
/// the raw fields, and the head written for the core reads back as one
/// message with the same framing and exactly one Host.
fn check_forwarded(head: &request::RequestHead<'_, '_>, framing: Framing) {
    let lengths = values(head.headers, "content-length");
    let codings = values(head.headers, "transfer-encoding");
    match framing {
        Framing::Length(n) => {
            assert!(codings.is_empty());
            assert!(
                lengths
                    .iter()
                    .all(|v| std::str::from_utf8(v.trim_ascii()).ok() == Some(&n.to_string()))
            );
        }
        Framing::Chunked => {
            assert!(lengths.is_empty());
            let elements: Vec<&[u8]> = codings
                .iter()
                .flat_map(|v| v.split(|&b| b == b','))
                .map(<[u8]>::trim_ascii)
                .filter(|e| !e.is_empty())
                .collect();
            assert!(elements.len() == 1 && elements[0].eq_ignore_ascii_case(b"chunked"));
        }
        Framing::Empty => {
            assert!(codings.is_empty());
            assert!(
                lengths
                    .iter()
                    .all(|v| v.trim_ascii().iter().all(|&b| b == b'0'))
            );
        }
        Framing::UntilClose => panic!("a request is never framed until close"),
    }
    let Some(path) = head.path_and_query() else {
        return;
    };
    let mut out = Vec::new();
    let peer = Peer {
        ip: [127, 0, 0, 1].into(),
        text: "127.0.0.1".into(),
        trusted: false,
    };
    let request_id = RequestId::keep_or_generate(None);
    let upstream = Upstream {
        path,
        authority: "core:8080",
        request_id: &request_id,
        framing,
        injected: &[],
    };
    headers::write_request_head(&mut out, head, &peer, &upstream);
    let mut slots = header_slots();
    let again = request::parse(&out, &mut slots)
        .expect("the core's head parses")
        .expect("and is complete");
    assert_eq!(again.len, out.len(), "one message, nothing after it");
    assert_eq!(again.method, head.method);
    assert_eq!(again.framing(), Ok(framing), "the same framing");
    assert_eq!(values(again.headers, "host"), [&b"core:8080"[..]]);
    for hop in ["connection", "te", "upgrade", "expect", "keep-alive"] {
        assert!(values(again.headers, hop).is_empty(), "{hop} not relayed");
    }
}

#[test]
fn request_heads() {
    let mut rng = Rng(SEED);
    let (mut accepted, mut refused) = (0, 0);
    for case in 0..CASES {
        let mut input = rng.pick(REQUESTS).to_vec();
        mutate(&mut rng, &mut input);
        // Some(true): forwarded, Some(false): refused, None: incomplete.
        let run = std::panic::catch_unwind(|| {
            let mut slots = header_slots();
            match request::parse(&input, &mut slots) {
                Ok(None) => None,
                Err(err) => {
                    check_refusal(&input, err);
                    Some(false)
                }
                Ok(Some(head)) => {
                    match head.framing().and_then(|f| head.check_host().map(|()| f)) {
                        Err(err) => {
                            check_refusal(&input[..head.len], err);
                            Some(false)
                        }
                        Ok(framing) => {
                            check_forwarded(&head, framing);
                            Some(true)
                        }
                    }
                }
            }
        });
        match run {
            Ok(Some(true)) => accepted += 1,
            Ok(Some(false)) => refused += 1,
            Ok(None) => {}
            Err(_) => panic!(
                "request case {case} (seed {SEED:#x}): {:?}",
                String::from_utf8_lossy(&input)
            ),
        }
    }
    // The mutations reach both sides of every decision.
    assert!(
        accepted > CASES / 10 && refused > CASES / 10,
        "{accepted} accepted, {refused} refused"
    );
}

const RESPONSES: &[&[u8]] = &[
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\n\r\n",
    b"HTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
];

/// An accepted response head, written for the client as the gateway does
/// (its fields, then its own framing), reads back with that framing.
fn check_relayed(head: &response::ResponseHead<'_, '_>, framing: Framing) {
    let mut out = Vec::new();
    jessy::gateway::answer::write_status_line(&mut out, head.status);
    headers::write_response_fields(&mut out, head, false, &[]);
    let sent = match framing {
        Framing::Chunked | Framing::UntilClose => Framing::Chunked,
        Framing::Empty if head.status == 204 || head.status == 304 => Framing::Empty,
        Framing::Empty => Framing::Length(0),
        Framing::Length(n) => Framing::Length(n),
    };
    headers::write_framing(&mut out, sent);
    out.extend_from_slice(b"\r\n");
    let mut slots = header_slots();
    let again = response::parse(&out, &mut slots)
        .expect("the client's head parses")
        .expect("and is complete");
    assert_eq!(again.len, out.len());
    assert_eq!(again.status, head.status);
    let expected = match sent {
        Framing::Length(0) => Framing::Empty,
        other => other,
    };
    assert_eq!(again.framing(false), Ok(expected));
    assert!(values(again.headers, "connection").is_empty());
    // What the core's Connection listed stays on its hop.
    for listed in values(head.headers, "connection")
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter_map(|name| std::str::from_utf8(name).ok())
        .filter(|name| !name.is_empty())
    {
        let framing_field = ["content-length", "transfer-encoding"]
            .iter()
            .any(|f| listed.eq_ignore_ascii_case(f));
        if !framing_field {
            assert!(values(again.headers, listed).is_empty(), "{listed} relayed");
        }
    }
}

#[test]
fn response_heads() {
    let mut rng = Rng(SEED ^ 1);
    for case in 0..CASES {
        let mut input = rng.pick(RESPONSES).to_vec();
        mutate(&mut rng, &mut input);
        let run = std::panic::catch_unwind(|| {
            let mut slots = header_slots();
            match response::parse(&input, &mut slots) {
                Ok(None) => {}
                // From the core, every refusal is a 502: only no panic matters.
                Err(_) => {}
                Ok(Some(head)) if head.is_informational() => {}
                Ok(Some(head)) => {
                    if let Ok(framing) = head.framing(false) {
                        check_relayed(&head, framing);
                    }
                }
            }
        });
        assert!(
            run.is_ok(),
            "response case {case} (seed {SEED:#x}): {:?}",
            String::from_utf8_lossy(&input)
        );
    }
}

/// Decodes `body` fed in pieces whose sizes `rng` picks: the content, and
/// the bytes left after the body; an error, or `None` if it needs more.
fn decode(body: &[u8], rng: &mut Rng) -> Option<Result<(Vec<u8>, usize), chunked::ChunkError>> {
    let mut decoder = Decoder::default();
    let mut buffered: Vec<u8> = Vec::new();
    let (mut fed, mut data) = (0, Vec::new());
    loop {
        let step = match decoder.step(&buffered) {
            Ok(step) => step,
            Err(err) => return Some(Err(err)),
        };
        match step {
            Step::Framing(n) => {
                assert!(n > 0 && n <= buffered.len(), "framing within the input");
                buffered.drain(..n);
            }
            Step::Data(bytes) => {
                assert!(!bytes.is_empty());
                data.extend_from_slice(bytes);
                let n = bytes.len();
                buffered.drain(..n);
            }
            Step::Done(n) => {
                buffered.drain(..n);
                return Some(Ok((data, buffered.len() + body.len() - fed)));
            }
            Step::NeedMore if fed == body.len() => return None,
            Step::NeedMore => {
                let end = (fed + 1 + rng.below(64)).min(body.len());
                buffered.extend_from_slice(&body[fed..end]);
                fed = end;
            }
        }
    }
}

fn encode(rng: &mut Rng, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + rng.below(40)).min(rest.len());
        if rng.below(4) == 0 {
            out.extend_from_slice(format!("{n:X};ext=\"v\"\r\n").as_bytes());
        } else {
            chunked::write_chunk_header(&mut out, n);
        }
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(chunked::CHUNK_END);
        rest = &rest[n..];
    }
    out.extend_from_slice(if rng.below(3) == 0 {
        b"0\r\nX-Trailer: 1\r\n\r\n"
    } else {
        chunked::LAST_CHUNK
    });
    out
}

#[test]
fn chunked_bodies() {
    let mut rng = Rng(SEED ^ 2);
    for case in 0..CASES {
        let data: Vec<u8> = (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        let mut body = encode(&mut rng, &data);
        let mutated = rng.below(2) == 0;
        if mutated {
            mutate(&mut rng, &mut body);
        }
        body.extend_from_slice(b"NEXT");
        let run = std::panic::catch_unwind(|| {
            let mut pieces = Rng(SEED ^ case as u64);
            let first = decode(&body, &mut pieces);
            // Read boundaries never change the outcome.
            let second = decode(&body, &mut Rng(!SEED ^ case as u64));
            assert_eq!(first, second, "the same whatever the reads");
            if !mutated {
                let (decoded, left) = first.clone().expect("complete").expect("valid");
                assert_eq!(decoded, data);
                assert_eq!(left, 4, "the next message is untouched");
            }
            if let Some(Ok((decoded, _))) = first {
                // What is accepted re-encodes to a body that decodes the same.
                let again = encode(&mut pieces, &decoded);
                let (round, left) = decode(&again, &mut pieces).unwrap().unwrap();
                assert_eq!((round, left), (decoded, 0));
            }
        });
        assert!(
            run.is_ok(),
            "chunked case {case} (seed {SEED:#x}): {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}
