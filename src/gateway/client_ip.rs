//! Who the client is, for rate limiting and `X-Forwarded-For`.
//!
//! The peer address of the TCP connection, unless that peer is a trusted
//! proxy (TRUSTED_PROXIES): then `X-Forwarded-For` is walked from the right,
//! skipping trusted hops, and the first untrusted address is the client
//! (the rightmost entries are the ones our own proxies wrote; anything to
//! their left could have been forged by the client).

use std::net::IpAddr;

use crate::config::IpNet;

/// The trusted proxy networks.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client address for a request from `peer` whose
    /// `X-Forwarded-For` fields are `forwarded_for`, in order.
    pub fn client_ip<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl IntoIterator<Item = &'a [u8]>,
    ) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let hops: Vec<IpAddr> = forwarded_for
            .into_iter()
            .flat_map(|v| v.split(|&b| b == b','))
            .filter_map(|hop| std::str::from_utf8(hop.trim_ascii()).ok()?.parse().ok())
            .collect();
        hops.iter()
            .rev()
            .find(|hop| !self.trusts(**hop))
            .copied()
            // Every hop trusted: the leftmost is the closest thing to a client.
            .or_else(|| hops.first().copied())
            .unwrap_or(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers<'a>(xff: &[&'a str]) -> Vec<&'a [u8]> {
        xff.iter().map(|v| v.as_bytes()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_choose_their_address() {
        let trusted = TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let spoofed = headers(&["1.2.3.4"]);
        assert_eq!(
            trusted.client_ip(ip("203.0.113.9"), spoofed.clone()),
            ip("203.0.113.9")
        );
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("10.1.1.1"), spoofed), ip("10.1.1.1"));
    }

    #[test]
    fn trusted_proxies_yield_the_rightmost_untrusted_hop() {
        let trusted = TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]);
        // client forged "6.6.6.6", real client 198.51.100.7, then our LB 10.0.0.2
        let h = headers(&["6.6.6.6, 198.51.100.7", "10.0.0.2"]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), h), ip("198.51.100.7"));
    }

    #[test]
    fn trusted_peer_without_usable_header_is_the_client() {
        let trusted = TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), []), ip("10.0.0.1"));
        let garbage = headers(&["not-an-ip, also bad"]);
        assert_eq!(trusted.client_ip(ip("10.0.0.1"), garbage), ip("10.0.0.1"));
        let all_trusted = headers(&["10.9.9.9, 10.0.0.2"]);
        assert_eq!(
            trusted.client_ip(ip("10.0.0.1"), all_trusted),
            ip("10.9.9.9")
        );
    }
}
