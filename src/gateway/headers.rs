//! Header hygiene for forwarding (RFC 9110 §7.6.1): hop-by-hop headers
//! belong to one connection and are never forwarded, in either direction;
//! `X-Forwarded-*` tell the core who asked.

use std::net::IpAddr;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

/// Headers that describe a single connection, plus any the `Connection`
/// header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers (and those listed in `Connection`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none: one look at each name, instead of hashing
    // nine names to remove them one by one. Headers that `Connection` names
    // only count when it is there, and then it is hop-by-hop itself.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    headers.remove(header::PROXY_AUTHENTICATE);
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name) || name == header::PROXY_AUTHENTICATE
}

/// Sets `X-Forwarded-For`/`-Proto`/`-Host`. From an untrusted peer any
/// incoming values are replaced (they could be forged); from a trusted
/// proxy the chain is extended.
pub fn set_forwarded(headers: &mut HeaderMap, peer: IpAddr, peer_trusted: bool) {
    let xff = HeaderName::from_static("x-forwarded-for");
    let proto = HeaderName::from_static("x-forwarded-proto");
    let host = HeaderName::from_static("x-forwarded-host");
    let chain = if peer_trusted {
        let previous: Vec<&str> = headers
            .get_all(&xff)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if previous.is_empty() {
            peer.to_string()
        } else {
            format!("{}, {peer}", previous.join(", "))
        }
    } else {
        peer.to_string()
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(xff, value);
    }
    if !peer_trusted || !headers.contains_key(&proto) {
        headers.insert(proto, HeaderValue::from_static("http"));
    }
    if !peer_trusted || !headers.contains_key(&host) {
        match headers.get(header::HOST).cloned() {
            Some(original) => {
                headers.insert(host, original);
            }
            None => {
                headers.remove(host);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-authenticate", "Basic"),
            ("trailer", "x-checksum"),
            ("content-type", "application/json"),
            ("x-request-id", "abc"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-type", "traceparent", "x-request-id"]);
    }

    #[test]
    fn each_hop_by_hop_header_is_removed_on_its_own_and_others_are_kept() {
        for hop in [
            "connection",
            "keep-alive",
            "proxy-connection",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "proxy-authorization",
            "proxy-authenticate",
        ] {
            let mut h = map(&[(hop, "x"), ("content-type", "application/json")]);
            strip_hop_by_hop(&mut h);
            let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
            assert_eq!(left, ["content-type"], "{hop}");
        }
        let mut h = map(&[("accept", "*/*"), ("x-request-id", "abc")]);
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn forwarded_headers_from_untrusted_peers_are_replaced() {
        let mut h = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("host", "api.example.com"),
        ]);
        set_forwarded(&mut h, "203.0.113.5".parse().unwrap(), false);
        assert_eq!(h["x-forwarded-for"], "203.0.113.5");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
    }

    #[test]
    fn forwarded_headers_from_trusted_proxies_are_extended() {
        let mut h = map(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "jessy.example.com"),
        ]);
        set_forwarded(&mut h, "10.0.0.2".parse().unwrap(), true);
        assert_eq!(h["x-forwarded-for"], "198.51.100.7, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "jessy.example.com");
    }
}
