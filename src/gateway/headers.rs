//! Header hygiene for forwarding (RFC 9110 §7.6.1), on the raw heads:
//! hop-by-hop fields belong to one connection and are never relayed, in
//! either direction, nor are the fields a `Connection` header names;
//! `X-Forwarded-*` tell the core who asked; the gateway sets `Host`,
//! `X-Request-Id` and the framing fields itself.
//!
//! Both heads are written in one pass over the fields as they were parsed,
//! straight into the bytes that go out: no header map is built.

use std::net::IpAddr;

use crate::h1::request::RequestHead;
use crate::h1::response::ResponseHead;
use crate::h1::{Framing, list_elements, name_is};
use crate::http::request_id::RequestId;

/// What forwarding does with a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// Belongs to this connection only: dropped.
    HopByHop,
    /// Names the gateway: replaced by the core's authority.
    Host,
    /// `Content-Length`: written again from the framing the gateway relays.
    ContentLength,
    /// `Expect`: answered by the gateway itself.
    Expect,
    RequestId,
    ForwardedFor,
    ForwardedProto,
    ForwardedHost,
    /// Relayed unchanged.
    Other,
}

/// Classifies a field name: by length first, so most names cost one
/// comparison at most.
fn classify(name: &str) -> Field {
    let is = |expected| name_is(name, expected);
    match name.len() {
        2 if is("te") => Field::HopByHop,
        4 if is("host") => Field::Host,
        6 if is("expect") => Field::Expect,
        7 if is("trailer") || is("upgrade") => Field::HopByHop,
        10 if is("connection") || is("keep-alive") => Field::HopByHop,
        12 if is("x-request-id") => Field::RequestId,
        14 if is("content-length") => Field::ContentLength,
        15 if is("x-forwarded-for") => Field::ForwardedFor,
        16 if is("x-forwarded-host") => Field::ForwardedHost,
        16 if is("proxy-connection") => Field::HopByHop,
        17 if is("x-forwarded-proto") => Field::ForwardedProto,
        17 if is("transfer-encoding") => Field::HopByHop,
        18 if is("proxy-authenticate") => Field::HopByHop,
        19 if is("proxy-authorization") => Field::HopByHop,
        _ => Field::Other,
    }
}

/// The names a head's `Connection` fields list (besides the `close` and
/// `keep-alive` options), which are hop-by-hop too. Empty, and allocation
/// free, for the usual head.
fn connection_listed<'b>(headers: &[httparse::Header<'b>]) -> Vec<&'b [u8]> {
    let mut listed = Vec::new();
    for header in headers.iter().filter(|h| name_is(h.name, "connection")) {
        listed.extend(list_elements(header.value).filter(|option| {
            !option.eq_ignore_ascii_case(b"close") && !option.eq_ignore_ascii_case(b"keep-alive")
        }));
    }
    listed
}

fn is_listed(listed: &[&[u8]], name: &str) -> bool {
    listed
        .iter()
        .any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
}

fn push_field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The client's address, as `X-Forwarded-For` writes it (formatted once
/// per connection).
#[derive(Debug, Clone)]
pub struct Peer {
    pub ip: IpAddr,
    pub text: Box<str>,
    /// Whether the peer is a trusted proxy, whose `X-Forwarded-*` count.
    pub trusted: bool,
}

/// What the core's request head says beyond the client's fields.
pub struct Upstream<'a> {
    /// The core's path and query for this request.
    pub path: &'a str,
    /// The core's `host:port`.
    pub authority: &'a str,
    pub request_id: &'a RequestId,
    pub framing: Framing,
    /// Fields to set instead of the client's (trace context injected when
    /// traces are exported; empty otherwise).
    pub injected: &'a [(String, String)],
}

/// Writes the core's request head for `client` into `out`.
///
/// From an untrusted peer, incoming `X-Forwarded-*` values are replaced
/// (they could be forged); from a trusted proxy the chain is extended and
/// its `-Proto`/`-Host` kept.
pub fn write_request_head(
    out: &mut Vec<u8>,
    client: &RequestHead<'_, '_>,
    peer: &Peer,
    upstream: &Upstream<'_>,
) {
    out.extend_from_slice(client.method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(upstream.path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    push_field(out, b"host", upstream.authority.as_bytes());

    let listed = connection_listed(client.headers);
    let mut host = None;
    let mut forwarded_for: Vec<&[u8]> = Vec::new();
    let (mut kept_proto, mut kept_host) = (false, false);
    for header in client.headers {
        match classify(header.name) {
            Field::Other
                if !is_listed(&listed, header.name)
                    && !upstream
                        .injected
                        .iter()
                        .any(|(name, _)| name_is(header.name, name)) =>
            {
                push_field(out, header.name.as_bytes(), header.value);
            }
            Field::Host => host = Some(header.value),
            Field::ForwardedFor if peer.trusted => forwarded_for.push(header.value),
            Field::ForwardedProto if peer.trusted => {
                kept_proto = true;
                push_field(out, b"x-forwarded-proto", header.value);
            }
            Field::ForwardedHost if peer.trusted => {
                kept_host = true;
                push_field(out, b"x-forwarded-host", header.value);
            }
            _ => {}
        }
    }

    out.extend_from_slice(b"x-forwarded-for: ");
    for previous in forwarded_for {
        out.extend_from_slice(previous);
        out.extend_from_slice(b", ");
    }
    out.extend_from_slice(peer.text.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !kept_proto {
        push_field(out, b"x-forwarded-proto", b"http");
    }
    if let Some(host) = host.filter(|_| !kept_host) {
        push_field(out, b"x-forwarded-host", host);
    }
    push_field(out, b"x-request-id", upstream.request_id.0.as_bytes());
    for (name, value) in upstream.injected {
        push_field(out, name.as_bytes(), value.as_bytes());
    }
    write_framing(out, upstream.framing);
    out.extend_from_slice(b"\r\n");
}

/// Writes the framing field for a body the gateway sends with `framing`.
pub fn write_framing(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Empty | Framing::UntilClose => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
    }
}

/// Writes the core's response fields that the client gets: all but the
/// hop-by-hop ones, `Content-Length` unless `keep_length` (otherwise the
/// caller writes the framing it relays with), `X-Request-Id` (the caller
/// writes the request's), and any name in `replaced` (fields the caller
/// sets itself).
pub fn write_response_fields(
    out: &mut Vec<u8>,
    core: &ResponseHead<'_, '_>,
    keep_length: bool,
    replaced: &[&str],
) {
    let listed = connection_listed(core.headers);
    for header in core.headers {
        let relayed = match classify(header.name) {
            Field::HopByHop | Field::RequestId => false,
            Field::ContentLength => keep_length,
            _ => true,
        } && !is_listed(&listed, header.name)
            && !replaced.iter().any(|name| name_is(header.name, name));
        if relayed {
            push_field(out, header.name.as_bytes(), header.value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h1::request::{self, header_slots};
    use crate::h1::response;

    fn peer(ip: &str, trusted: bool) -> Peer {
        Peer {
            ip: ip.parse().unwrap(),
            text: ip.into(),
            trusted,
        }
    }

    /// The core's head for `raw` from `peer`, as (request line, fields).
    fn upstream_head(
        raw: &str,
        peer: &Peer,
        injected: &[(String, String)],
    ) -> (String, Vec<(String, String)>) {
        let mut slots = header_slots();
        let head = request::parse(raw.as_bytes(), &mut slots).unwrap().unwrap();
        let id = RequestId::keep_or_generate(Some(b"rid-1"));
        let mut out = Vec::new();
        let framing = head.framing().unwrap();
        write_request_head(
            &mut out,
            &head,
            peer,
            &Upstream {
                path: "/mapped?q",
                authority: "core:8080",
                request_id: &id,
                framing,
                injected,
            },
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("\r\n\r\n"), "{text:?}");
        let mut lines = text.trim_end().split("\r\n");
        let request_line = lines.next().unwrap().to_owned();
        let fields = lines
            .map(|l| {
                let (n, v) = l.split_once(": ").unwrap();
                (n.to_owned(), v.to_owned())
            })
            .collect();
        (request_line, fields)
    }

    fn names(fields: &[(String, String)]) -> Vec<&str> {
        let mut names: Vec<&str> = fields.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        names
    }

    fn value<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_are_not_forwarded() {
        let raw = "POST /api/v1/x HTTP/1.1\r\nHost: gw.example\r\nConnection: keep-alive, X-Secret-Hop\r\n\
            Keep-Alive: timeout=5\r\nX-Secret-Hop: 1\r\nTE: trailers\r\nUpgrade: websocket\r\n\
            Proxy-Connection: x\r\nProxy-Authorization: Basic abc\r\nProxy-Authenticate: Basic\r\n\
            Trailer: x-checksum\r\nExpect: 100-continue\r\nContent-Length: 3\r\nContent-Type: application/json\r\n\
            X-Request-Id: client-id\r\ntraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n";
        let (line, fields) = upstream_head(raw, &peer("203.0.113.5", false), &[]);
        assert_eq!(line, "POST /mapped?q HTTP/1.1");
        assert_eq!(
            names(&fields),
            [
                "Content-Type",
                "content-length",
                "host",
                "traceparent",
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-request-id",
            ]
        );
        assert_eq!(value(&fields, "host"), Some("core:8080"));
        assert_eq!(value(&fields, "content-length"), Some("3"));
        assert_eq!(value(&fields, "x-request-id"), Some("rid-1"));
    }

    #[test]
    fn each_hop_by_hop_field_is_dropped_on_its_own() {
        for hop in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
        ] {
            let raw = format!("GET / HTTP/1.1\r\n{hop}: x\r\nAccept: */*\r\n\r\n");
            let (_, fields) = upstream_head(&raw, &peer("10.0.0.9", false), &[]);
            assert!(value(&fields, hop).is_none(), "{hop}");
            assert_eq!(value(&fields, "accept"), Some("*/*"), "{hop}");
        }
    }

    #[test]
    fn forwarded_fields_from_untrusted_peers_are_replaced() {
        let raw = "GET / HTTP/1.1\r\nHost: api.example.com\r\nX-Forwarded-For: 6.6.6.6\r\n\
            X-Forwarded-Proto: https\r\nX-Forwarded-Host: evil.example\r\n\r\n";
        let (_, fields) = upstream_head(raw, &peer("203.0.113.5", false), &[]);
        assert_eq!(value(&fields, "x-forwarded-for"), Some("203.0.113.5"));
        assert_eq!(value(&fields, "x-forwarded-proto"), Some("http"));
        assert_eq!(value(&fields, "x-forwarded-host"), Some("api.example.com"));
        assert_eq!(
            fields
                .iter()
                .filter(|(n, _)| n.starts_with("x-forwarded"))
                .count(),
            3
        );
    }

    #[test]
    fn forwarded_fields_from_trusted_proxies_are_extended() {
        let raw = "GET / HTTP/1.1\r\nHost: internal\r\nX-Forwarded-For: 198.51.100.7\r\n\
            x-forwarded-for: 10.0.0.3\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: jessy.example.com\r\n\r\n";
        let (_, fields) = upstream_head(raw, &peer("10.0.0.2", true), &[]);
        assert_eq!(
            value(&fields, "x-forwarded-for"),
            Some("198.51.100.7, 10.0.0.3, 10.0.0.2")
        );
        assert_eq!(value(&fields, "x-forwarded-proto"), Some("https"));
        assert_eq!(
            value(&fields, "x-forwarded-host"),
            Some("jessy.example.com")
        );
        // Without a Host or forwarded fields, none is invented.
        let (_, fields) = upstream_head("GET / HTTP/1.0\r\n\r\n", &peer("10.0.0.2", true), &[]);
        assert!(value(&fields, "x-forwarded-host").is_none());
        assert_eq!(value(&fields, "x-forwarded-for"), Some("10.0.0.2"));
    }

    #[test]
    fn injected_trace_context_replaces_the_clients() {
        let raw = "GET / HTTP/1.1\r\ntraceparent: 00-aaaa-bbbb-01\r\n\r\n";
        let injected = [("traceparent".to_owned(), "00-cccc-dddd-01".to_owned())];
        let (_, fields) = upstream_head(raw, &peer("10.0.0.2", false), &injected);
        let values: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| n == "traceparent")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(values, ["00-cccc-dddd-01"]);
    }

    #[test]
    fn chunked_bodies_are_announced_as_such() {
        let raw = "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let (_, fields) = upstream_head(raw, &peer("10.0.0.2", false), &[]);
        assert_eq!(value(&fields, "transfer-encoding"), Some("chunked"));
        assert!(value(&fields, "content-length").is_none());
    }

    #[test]
    fn response_fields_lose_hop_by_hop_framing_and_replaced_ones() {
        let raw = "HTTP/1.1 200 OK\r\nConnection: x-internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\n\
            Content-Length: 2\r\nTransfer-Encoding: chunked\r\nX-Request-Id: core-id\r\nVary: accept\r\n\
            Access-Control-Allow-Origin: *\r\nContent-Type: text/plain\r\n\r\n";
        let mut slots = header_slots();
        let head = response::parse(raw.as_bytes(), &mut slots)
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        write_response_fields(&mut out, &head, false, &["access-control-allow-origin"]);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Vary: accept\r\nContent-Type: text/plain\r\n"
        );
        let mut out = Vec::new();
        write_response_fields(&mut out, &head, true, &[]);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("Content-Length: 2\r\n"),
            "kept for HEAD and 304: {text}"
        );
    }
}
