//! Where webhooks may go. A database that POSTs to any address a user names is an SSRF gadget:
//! it could reach the cloud metadata service, an admin port on localhost or a private network.
//! So by default every non-public address is refused, and an allowlist opens exceptions.
//!
//! The check runs on the addresses the client will actually connect to (see `http.rs`), so a
//! DNS answer cannot change between check and connect.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One allowlist entry: a host name (exact, or `*.suffix`) or an address range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowRule {
    Host(String),
    HostSuffix(String),
    Net { addr: IpAddr, prefix: u8 },
}

/// The destination policy. `Default` refuses every non-public address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    rules: Vec<AllowRule>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowlistError(pub String);

impl fmt::Display for AllowlistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid allowlist entry '{}': use a host name ('hooks.internal', '*.internal'), an address ('127.0.0.1', '::1') or a CIDR range ('10.0.0.0/8'), separated by commas",
            self.0.escape_debug()
        )
    }
}

impl std::error::Error for AllowlistError {}

/// Why a destination was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub host: String,
    pub addr: IpAddr,
    pub class: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "destination refused: {} resolves to {} ({} address); add it to pg_webhook.allowed_destinations to allow it",
            self.host, self.addr, self.class
        )
    }
}

impl std::error::Error for Refusal {}

impl AddressPolicy {
    /// Parses a comma-separated allowlist such as `127.0.0.1, 10.0.0.0/8, *.internal`.
    pub fn parse(list: &str) -> Result<AddressPolicy, AllowlistError> {
        let mut rules = Vec::new();
        for raw in list.split(',') {
            let entry = raw.trim();
            if entry.is_empty() {
                continue;
            }
            rules.push(parse_rule(entry).ok_or_else(|| AllowlistError(entry.to_string()))?);
        }
        Ok(AddressPolicy { rules })
    }

    /// True when the host name itself is allowlisted, whatever it resolves to. Never for an
    /// address written as the host: name entries are matched against names only (`*.0.0.2`
    /// matched `127.0.0.2` by its text).
    pub fn host_allowed(&self, host: &str) -> bool {
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if literal.parse::<IpAddr>().is_ok() {
            return false;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.rules.iter().any(|r| match r {
            AllowRule::Host(h) => *h == host,
            AllowRule::HostSuffix(s) => host.len() > s.len() && host.ends_with(s.as_str()),
            AllowRule::Net { .. } => false,
        })
    }

    /// Checks one address the client is about to connect to for `host`.
    pub fn check(&self, host: &str, addr: IpAddr) -> Result<(), Refusal> {
        let Some(class) = special_class(addr) else {
            return Ok(());
        };
        if self.host_allowed(host) || self.rules.iter().any(|r| net_contains(r, addr)) {
            return Ok(());
        }
        Err(Refusal {
            host: host.to_string(),
            addr,
            class,
        })
    }
}

fn parse_rule(entry: &str) -> Option<AllowRule> {
    if let Some((addr, prefix)) = entry.split_once('/') {
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        return (prefix <= max).then(|| net_rule(addr, prefix));
    }
    let unbracketed = entry.trim_start_matches('[').trim_end_matches(']');
    if let Ok(addr) = unbracketed.parse::<IpAddr>() {
        let prefix = if addr.is_ipv4() { 32 } else { 128 };
        return Some(net_rule(addr, prefix));
    }
    let lower = entry.to_ascii_lowercase();
    let (suffix, name) = match lower.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    // A host whose last label is a number is read as an IPv4 address by URL parsers
    // (WHATWG): an entry ending so would match no name, only, by its text, addresses.
    let last_is_number = name.rsplit('.').next().is_some_and(|label| {
        label.chars().all(|c| c.is_ascii_digit())
            || label
                .strip_prefix("0x")
                .is_some_and(|hex| hex.chars().all(|c| c.is_ascii_hexdigit()))
    });
    let valid = !name.is_empty()
        && name.len() <= 253
        && !last_is_number
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return None;
    }
    Some(if suffix {
        AllowRule::HostSuffix(format!(".{name}"))
    } else {
        AllowRule::Host(name.to_string())
    })
}

/// A range rule, an IPv4-mapped IPv6 range (`::ffff:127.0.0.2`, `::ffff:0:0/96`) as the IPv4
/// range it maps: addresses are judged as the IPv4 host they reach (`canonical`), so such an
/// entry, kept as IPv6, matched nothing.
fn net_rule(addr: IpAddr, prefix: u8) -> AllowRule {
    match addr {
        IpAddr::V6(v6) if prefix >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => AllowRule::Net {
                addr: IpAddr::V4(v4),
                prefix: prefix - 96,
            },
            None => AllowRule::Net { addr, prefix },
        },
        _ => AllowRule::Net { addr, prefix },
    }
}

fn net_contains(rule: &AllowRule, addr: IpAddr) -> bool {
    let AllowRule::Net { addr: net, prefix } = rule else {
        return false;
    };
    match (net, canonical(addr)) {
        (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *prefix),
        (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *prefix),
        _ => false,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = (prefix / 8) as usize;
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    rest == 0 || (a[full] ^ b[full]) >> (8 - rest) == 0
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) reaches the IPv4 host; judge it as that host.
fn canonical(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => addr,
        },
        v4 => v4,
    }
}

/// The class of a non-public address, or `None` for a public one.
pub fn special_class(addr: IpAddr) -> Option<&'static str> {
    match canonical(addr) {
        IpAddr::V4(a) => v4_class(a),
        IpAddr::V6(a) => v6_class(a),
    }
}

fn v4_class(a: Ipv4Addr) -> Option<&'static str> {
    let [o0, o1, o2, _] = a.octets();
    Some(match () {
        _ if a.is_unspecified() || o0 == 0 => "unspecified",
        _ if a.is_loopback() => "loopback",
        _ if a.is_private() => "private",
        _ if a.is_link_local() => "link-local",
        _ if o0 == 100 && (o1 & 0xc0) == 64 => "shared (carrier-grade NAT)",
        _ if o0 == 192 && o1 == 0 && o2 == 0 => "IETF protocol assignment",
        _ if o0 == 198 && (o1 & 0xfe) == 18 => "benchmarking",
        _ if a.is_multicast() => "multicast",
        _ if a.is_broadcast() || o0 >= 240 => "reserved",
        _ => return None,
    })
}

fn v6_class(a: Ipv6Addr) -> Option<&'static str> {
    let seg = a.segments();
    Some(match () {
        _ if a.is_unspecified() => "unspecified",
        _ if a.is_loopback() => "loopback",
        _ if (seg[0] & 0xfe00) == 0xfc00 => "unique local (private)",
        _ if (seg[0] & 0xffc0) == 0xfe80 => "link-local",
        _ if (seg[0] & 0xffc0) == 0xfec0 => "site-local",
        _ if a.is_multicast() => "multicast",
        // Benchmarking (2001:2::/48, RFC 5180), as 198.18.0.0/15 is for IPv4.
        _ if seg[0] == 0x2001 && seg[1] == 2 && seg[2] == 0 => "benchmarking",
        // NAT64 (64:ff9b::/96) and IPv4-compatible (::/96, deprecated but still routed by
        // some stacks) reach the embedded IPv4 host: judge them as that host.
        _ if (seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0])
            || seg[0..6] == [0, 0, 0, 0, 0, 0] =>
        {
            return v4_class(embedded_v4(seg[6], seg[7]));
        }
        // Local-use NAT64 (64:ff9b:1::/48, RFC 8215) translates into the operator's own
        // network: never public.
        _ if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2] == 1 => "local-use NAT64",
        // IPv4-translated (::ffff:0:0/96, RFC 2765 SIIT) reaches the embedded IPv4 host
        // through the translator: judge it as that host.
        _ if seg[0..6] == [0, 0, 0, 0, 0xffff, 0] => {
            return v4_class(embedded_v4(seg[6], seg[7]));
        }
        // 6to4 (2002::/16) carries an IPv4 address in bits 16-47: a private one reaches a
        // private host through the relay.
        _ if seg[0] == 0x2002 => return v4_class(embedded_v4(seg[1], seg[2])),
        // Teredo (2001:0::/32, RFC 4380) carries its server's IPv4 address in bits 32-63 and
        // its client's, inverted, in the last 32 bits; the relay sends to the client's (over
        // UDP), the client reaches its server's: either, if not public, is reached.
        _ if seg[0] == 0x2001 && seg[1] == 0 => {
            let client = embedded_v4(!seg[6], !seg[7]);
            let server = embedded_v4(seg[2], seg[3]);
            return v4_class(client).or_else(|| v4_class(server));
        }
        _ => return None,
    })
}

fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    Ipv4Addr::new((high >> 8) as u8, high as u8, (low >> 8) as u8, low as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn default_refuses_every_non_public_class() {
        let p = AddressPolicy::default();
        for a in [
            "127.0.0.1",
            "127.8.9.10",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            // IPv4-compatible ::a.b.c.d
            "::127.0.0.1",
            "::10.0.0.1",
            "::169.254.169.254",
            // local-use NAT64, whatever it embeds
            "64:ff9b:1::808:808",
            "64:ff9b:1:ffff::1",
            // IPv6 benchmarking, as 198.18.0.0/15
            "2001:2::1",
            // 6to4 embedding a private or loopback IPv4 address
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "2002:c0a8:101::1",
            "2002:a9fe:a9fe::1",
            // IPv4-translated ::ffff:0:a.b.c.d
            "::ffff:0:7f00:1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:a00:1",
            "::ffff:0:a9fe:a9fe",
            // Teredo: a private or loopback client (inverted last 32 bits) ...
            "2001:0:808:808::80ff:fefe",    // client 127.0.1.1
            "2001:0:808:808:0:0:f5ff:fffe", // client 10.0.0.1
            "2001:0:808:808::5601:5601",    // client 169.254.169.254
            // ... or server (bits 32-63)
            "2001:0:7f00:1::f7f7:f7f7", // server 127.0.0.1, client 8.8.8.8
            "2001:0:c0a8:101::f7f7:f7f7", // server 192.168.1.1
        ] {
            let err = p.check("h", ip(a)).unwrap_err();
            assert!(
                err.to_string().contains("pg_webhook.allowed_destinations"),
                "{a}"
            );
        }
    }

    #[test]
    fn public_addresses_pass() {
        let p = AddressPolicy::default();
        for a in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "::8.8.8.8",
            "2002:808:808::1",
            "::ffff:0:808:808",
            // Teredo with a public server and client (8.8.8.8 inverted is f7f7:f7f7)
            "2001:0:808:808::f7f7:f7f7",
            // 2001:1::/32 and 2001:db8::/32 are not Teredo
            "2001:1::7f00:1",
        ] {
            assert!(p.check("h", ip(a)).is_ok(), "{a}");
        }
    }

    #[test]
    fn allowlist_opens_addresses_ranges_and_hosts() {
        let p =
            AddressPolicy::parse(" 127.0.0.1, 10.0.0.0/8 ,[::1], hooks.internal, *.corp.example")
                .unwrap();
        assert!(p.check("x", ip("127.0.0.1")).is_ok());
        assert!(p.check("x", ip("::ffff:127.0.0.1")).is_ok());
        assert!(p.check("x", ip("127.0.0.2")).is_err());
        assert!(p.check("x", ip("10.200.3.4")).is_ok());
        assert!(p.check("x", ip("11.0.0.1")).is_ok()); // public anyway
        assert!(p.check("x", ip("::1")).is_ok());
        assert!(p.check("x", ip("192.168.0.1")).is_err());
        assert!(p.check("Hooks.Internal.", ip("192.168.0.1")).is_ok());
        assert!(p.check("a.corp.example", ip("192.168.0.1")).is_ok());
        assert!(p.check("corp.example", ip("192.168.0.1")).is_err());
        assert!(p.check("evilcorp.example", ip("192.168.0.1")).is_err());
    }

    #[test]
    fn name_entries_never_match_addresses() {
        // `*.0.0.2` matched the host 127.0.0.2 by its text; such an entry is refused now, and
        // a name entry is never matched against an address written as the host.
        assert_eq!(
            AddressPolicy::parse("*.0.0.2").unwrap_err().0,
            "*.0.0.2".to_string()
        );
        for bad in ["*.2", "hooks.7", "a.0x7f", "*.0X1"] {
            assert!(AddressPolicy::parse(bad).is_err(), "{bad}");
        }
        assert!(AddressPolicy::parse("*.v2, hooks.7a, 0x7f.example").is_ok());
        let p = AddressPolicy::parse("*.internal").unwrap();
        assert!(!p.host_allowed("127.0.0.2"));
        assert!(!p.host_allowed("[::1]"));
        assert!(p.check("127.0.0.2", ip("127.0.0.2")).is_err());
    }

    #[test]
    fn ipv4_mapped_entries_allow_the_ipv4_host() {
        let p = AddressPolicy::parse("::ffff:127.0.0.2, ::ffff:10.0.0.0/104").unwrap();
        assert!(p.check("x", ip("127.0.0.2")).is_ok());
        assert!(p.check("x", ip("::ffff:127.0.0.2")).is_ok());
        assert!(p.check("x", ip("127.0.0.3")).is_err());
        assert!(p.check("x", ip("10.1.2.3")).is_ok());
        assert!(p.check("x", ip("11.0.0.1")).is_ok()); // public anyway
        assert!(p.check("x", ip("192.168.0.1")).is_err());
        let all = AddressPolicy::parse("::ffff:0:0/96").unwrap();
        assert!(all.check("x", ip("192.168.0.1")).is_ok());
        assert!(all.check("x", ip("::1")).is_err());
    }

    #[test]
    fn odd_prefixes_match_bitwise() {
        let p = AddressPolicy::parse("172.16.0.0/12").unwrap();
        assert!(p.check("x", ip("172.31.1.1")).is_ok());
        assert!(p.check("x", ip("172.15.1.1")).is_ok()); // public
        let q = AddressPolicy::parse("169.254.0.0/17").unwrap();
        assert!(q.check("x", ip("169.254.127.1")).is_ok());
        assert!(q.check("x", ip("169.254.128.1")).is_err());
    }

    #[test]
    fn bad_allowlist_entries_are_named() {
        for bad in [
            "10.0.0.0/33",
            "::/129",
            "exa mple",
            "a..b",
            "http://x",
            "*.",
            "1.2.3.4/x",
        ] {
            let e = AddressPolicy::parse(&format!("127.0.0.1,{bad}")).unwrap_err();
            assert_eq!(e.0, bad.trim());
        }
        assert_eq!(
            AddressPolicy::parse(" , ").unwrap(),
            AddressPolicy::default()
        );
    }
}
