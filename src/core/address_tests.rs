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
        "2001:0:7f00:1::f7f7:f7f7",   // server 127.0.0.1, client 8.8.8.8
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
    let p = AddressPolicy::parse(" 127.0.0.1, 10.0.0.0/8 ,[::1], hooks.internal, *.corp.example")
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
