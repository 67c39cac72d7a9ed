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
#[path = "address_tests.rs"]
mod tests;
