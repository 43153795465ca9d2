//! The client's address: the peer of the connection, or the address a
//! trusted reverse proxy says it forwarded for.
//!
//! `X-Forwarded-For` is whatever the client wrote plus what each proxy on
//! the way appended, so only the entries appended by proxies we trust are
//! believed. This module does not read headers; the server passes the
//! header's value (several headers joined with `,`, in order).

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use crate::error::IpBlockError;

/// The address the request came from.
///
/// When `peer` is not a trusted proxy, `forwarded_for` is ignored: anyone
/// can send the header. Otherwise its entries are walked from the right
/// (the one our proxy appended) and each is believed while the address
/// before it was a trusted proxy: the walk stops at the first entry that is
/// not a trusted proxy, which is the client. An entry that is not an
/// address stops the walk too, leaving the last address believed.
/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) count as IPv4.
pub fn client_address(
    peer: IpAddr,
    forwarded_for: Option<&str>,
    trusted_proxies: &[IpNet],
) -> IpAddr {
    let trusted = |ip: IpAddr| trusted_proxies.iter().any(|net| net.contains(&ip));

    let mut client = peer.to_canonical();
    let Some(header) = forwarded_for else {
        return client;
    };
    for entry in header.rsplit(',') {
        if !trusted(client) {
            break;
        }
        let Some(forwarded) = parse_forwarded_entry(entry) else {
            break;
        };
        client = forwarded;
    }
    client
}

/// One `X-Forwarded-For` entry: an address, optionally with a port
/// (`10.0.0.1:443`, `[2001:db8::1]:443`), as some proxies write it.
fn parse_forwarded_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    let ip = entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()?;
    Some(ip.to_canonical())
}

/// Parses an address block for allow lists and trusted proxies: a CIDR
/// (`10.0.0.0/8`, `2001:db8::/32`) or a single address (`10.1.2.3`, taken
/// as `/32` or `/128`). Host bits are cleared: `10.1.2.3/8` is
/// `10.0.0.0/8`.
///
/// # Errors
/// [`IpBlockError`] when it is neither.
pub fn parse_ip_block(value: &str) -> Result<IpNet, IpBlockError> {
    let trimmed = value.trim();
    let net = trimmed
        .parse::<IpNet>()
        .or_else(|_| trimmed.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| IpBlockError {
            value: value.to_owned(),
        })?;
    Ok(net.trunc())
}

/// Whether `client` falls in one of the stored `blocks`; an empty list
/// allows anywhere. A stored block that does not parse matches nothing, so
/// a damaged record refuses rather than allows.
pub(crate) fn allowed_from(blocks: &[String], client: IpAddr) -> bool {
    if blocks.is_empty() {
        return true;
    }
    let client = client.to_canonical();
    blocks.iter().any(|block| match parse_ip_block(block) {
        Ok(net) => net.contains(&client),
        Err(_) => {
            tracing::warn!(block = %block, "unparsable address block in key record ignored");
            false
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies() -> Vec<IpNet> {
        vec![
            parse_ip_block("10.0.0.0/8").unwrap(),
            parse_ip_block("fd00::/8").unwrap(),
        ]
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_the_header_says() {
        let peer = ip("203.0.113.7");

        assert_eq!(client_address(peer, Some("198.51.100.1"), &proxies()), peer);
        assert_eq!(client_address(peer, None, &proxies()), peer);
    }

    #[test]
    fn no_trusted_proxies_means_the_header_is_ignored() {
        let peer = ip("10.0.0.2");

        assert_eq!(client_address(peer, Some("198.51.100.1"), &[]), peer);
    }

    #[test]
    fn trusted_proxy_forwards_the_client() {
        let client = client_address(ip("10.0.0.2"), Some("198.51.100.1"), &proxies());

        assert_eq!(client, ip("198.51.100.1"));
    }

    #[test]
    fn spoofed_entries_left_of_the_client_are_not_believed() {
        // The client wrote "1.1.1.1, 10.9.9.9" itself; our proxy appended the
        // address it saw. The walk stops at that untrusted address, so
        // neither the forged public address nor the forged proxy counts.
        let header = "1.1.1.1, 10.9.9.9, 198.51.100.1";

        let client = client_address(ip("10.0.0.2"), Some(header), &proxies());

        assert_eq!(client, ip("198.51.100.1"));
    }

    #[test]
    fn chain_of_trusted_proxies_is_walked() {
        let header = "198.51.100.1, 10.0.0.5, 10.0.0.4";

        let client = client_address(ip("10.0.0.2"), Some(header), &proxies());

        assert_eq!(client, ip("198.51.100.1"));
    }

    #[test]
    fn malformed_entry_stops_the_walk_at_the_last_trusted_address() {
        let header = "198.51.100.1, unknown, 10.0.0.4";

        let client = client_address(ip("10.0.0.2"), Some(header), &proxies());

        assert_eq!(client, ip("10.0.0.4"));
        assert_eq!(
            client_address(ip("10.0.0.2"), Some(""), &proxies()),
            ip("10.0.0.2")
        );
    }

    #[test]
    fn entries_with_ports_and_ipv6_are_understood() {
        let header = "[2001:db8::1]:443, fd00::2";

        let client = client_address(ip("10.0.0.2"), Some(header), &proxies());

        assert_eq!(client, ip("2001:db8::1"));
        let client = client_address(ip("10.0.0.2"), Some("198.51.100.1:5000"), &proxies());
        assert_eq!(client, ip("198.51.100.1"));
    }

    #[test]
    fn ipv4_mapped_peer_counts_as_ipv4() {
        let client = client_address(ip("::ffff:10.0.0.2"), Some("198.51.100.1"), &proxies());

        assert_eq!(client, ip("198.51.100.1"));
        assert_eq!(
            client_address(ip("::ffff:203.0.113.7"), None, &[]),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn ip_blocks_parse_cidrs_and_addresses() {
        assert_eq!(
            parse_ip_block("10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            parse_ip_block("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_ip_block("2001:db8::1").unwrap().to_string(),
            "2001:db8::1/128"
        );
        assert!(parse_ip_block("10.0.0.0/33").is_err());
        assert!(parse_ip_block("example.com").is_err());
    }

    #[test]
    fn allow_lists_match_blocks_and_refuse_damaged_entries() {
        let blocks = vec!["192.0.2.0/24".to_owned(), "garbage".to_owned()];

        assert!(allowed_from(&blocks, ip("192.0.2.9")));
        assert!(allowed_from(&blocks, ip("::ffff:192.0.2.9")));
        assert!(!allowed_from(&blocks, ip("198.51.100.1")));
        assert!(!allowed_from(&["garbage".to_owned()], ip("198.51.100.1")));
        assert!(allowed_from(&[], ip("198.51.100.1")));
    }
}
