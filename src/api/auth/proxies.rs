//! `[auth] trusted_proxies`: the reverse proxies whose `X-Forwarded-For` is believed, so the
//! per-address login limit counts the client, not the proxy every client comes through.

use super::AuthError;
use axum::http::HeaderMap;
use std::net::IpAddr;

/// One trusted address or CIDR block (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    net: IpAddr,
    prefix: u8,
}

impl Block {
    /// Parse `addr` or `addr/prefix`; `at` names the setting in the error.
    pub fn parse(s: &str, at: &str) -> Result<Block, AuthError> {
        let bad = |why: &str| AuthError::Config(format!("{at} = {s:?}: {why}"));
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| bad("not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad(&format!("the prefix must be 0–{max}")))?,
            None => max,
        };
        Ok(Block { net, prefix })
    }

    /// Whether `ip` is in the block (an IPv4-mapped IPv6 address counts as its IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Parse every `[auth] trusted_proxies` entry (errors name the entry).
pub fn parse_all(entries: &[String]) -> Result<Vec<Block>, AuthError> {
    entries
        .iter()
        .enumerate()
        .map(|(i, s)| Block::parse(s, &format!("[auth] trusted_proxies[{i}]")))
        .collect()
}

/// The client's address: the peer's, unless the peer is a trusted proxy; then the right-most
/// address of `X-Forwarded-For` that is not a trusted proxy (each proxy appends the address it
/// saw, so everything left of the first untrusted hop could have been written by the client).
/// An unreadable entry stops the walk at the last trusted hop.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Block]) -> Option<IpAddr> {
    let peer = peer?;
    let is_trusted = |ip: IpAddr| trusted.iter().any(|b| b.contains(ip));
    if !is_trusted(peer) {
        return Some(peer);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        match hop.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(ip) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("header"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn only_a_trusted_peer_is_believed_and_the_rightmost_untrusted_hop_is_the_client() {
        let t = parse_all(&["127.0.0.1".into(), "10.0.0.0/8".into()]).expect("parse");
        let h = headers(&["198.51.100.9, 203.0.113.5", "10.1.2.3"]);
        // From the proxy: the client the outer proxy saw (198.51.100.9 may be forged).
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &h, &t),
            Some(ip("203.0.113.5"))
        );
        // From anyone else the header is the client's own words.
        assert_eq!(
            client_ip(Some(ip("192.0.2.7")), &h, &t),
            Some(ip("192.0.2.7"))
        );
        // No header, or only proxies in it: the last trusted hop.
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &headers(&[]), &t),
            Some(ip("127.0.0.1"))
        );
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &headers(&["10.9.9.9"]), &t),
            Some(ip("10.9.9.9"))
        );
        // Garbage stops the walk.
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &headers(&["203.0.113.5, junk"]), &t),
            Some(ip("127.0.0.1"))
        );
        // Nothing trusted: the peer, whatever the header says.
        assert_eq!(
            client_ip(Some(ip("127.0.0.1")), &h, &[]),
            Some(ip("127.0.0.1"))
        );
        // IPv4-mapped IPv6 peers match IPv4 blocks.
        assert_eq!(
            client_ip(Some(ip("::ffff:127.0.0.1")), &headers(&["203.0.113.5"]), &t),
            Some(ip("203.0.113.5"))
        );
    }

    #[test]
    fn blocks_parse_and_match_and_bad_entries_are_named() {
        let b = Block::parse("192.168.0.0/16", "x").expect("v4");
        assert!(b.contains(ip("192.168.44.1")));
        assert!(!b.contains(ip("192.169.0.1")));
        let all = Block::parse("0.0.0.0/0", "x").expect("all");
        assert!(all.contains(ip("8.8.8.8")));
        let v6 = Block::parse("fd00::/8", "x").expect("v6");
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "proxy.local", "10.0.0.0/x", ""] {
            let e = parse_all(&["127.0.0.1".into(), bad.into()]).expect_err(bad);
            assert!(e.to_string().contains("trusted_proxies[1]"), "{e}");
        }
    }
}
