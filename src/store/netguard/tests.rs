use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().expect(s)
}

#[test]
fn special_ipv4_ranges_are_forbidden() {
    for a in [
        "0.0.0.0",
        "0.1.2.3",
        "10.0.0.1",
        "10.255.255.255",
        "100.64.0.1",
        "100.127.255.255",
        "127.0.0.1",
        "127.0.0.3",
        "127.255.255.254",
        "169.254.169.254",
        "172.16.0.1",
        "172.31.255.255",
        "192.0.0.8",
        "192.0.2.1",
        "192.88.99.1",
        "192.168.1.1",
        "198.18.0.1",
        "198.19.255.255",
        "198.51.100.7",
        "203.0.113.9",
        "224.0.0.1",
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
    ] {
        assert!(forbidden_range(ip(a)).is_some(), "{a} must be forbidden");
    }
}

#[test]
fn public_ipv4_addresses_are_allowed() {
    for a in [
        "1.1.1.1",
        "8.8.8.8",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.1",
        "192.169.0.1",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
    ] {
        assert_eq!(forbidden_range(ip(a)), None, "{a} must be allowed");
    }
}

#[test]
fn special_ipv6_ranges_are_forbidden() {
    for a in [
        "::",
        "::1",
        "::7f00:1",         // IPv4-compatible 127.0.0.1
        "::808:808",        // IPv4-compatible, deprecated even for public addresses
        "::ffff:127.0.0.1", // IPv4-mapped
        "::ffff:169.254.169.254",
        "::ffff:10.0.0.1",
        "::ffff:0.0.0.0",
        "64:ff9b::7f00:1",    // NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
        "64:ff9b:1::1",
        "100::1",
        "2001::1", // Teredo
        "2001:db8::1",
        "2002:7f00:1::1",  // 6to4 of 127.0.0.1
        "2002:a00:1::",    // 6to4 of 10.0.0.1
        "2002:c0a8:101::", // 6to4 of 192.168.1.1
        "3fff::1",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "febf::1",
        "fec0::1",
        "ff02::1",
    ] {
        assert!(forbidden_range(ip(a)).is_some(), "{a} must be forbidden");
    }
}

#[test]
fn public_ipv6_addresses_are_allowed() {
    for a in [
        "2a00:1450:4001::1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",
        "2002:808:808::1",
        "2001:200::1",
    ] {
        assert_eq!(forbidden_range(ip(a)), None, "{a} must be allowed");
    }
}

#[test]
fn the_allow_list_takes_names_addresses_and_networks() {
    let p = AddressPolicy::parse(&[
        "127.0.0.2",
        " Swift.Example.COM. ",
        "10.1.0.0/16",
        "[::1]",
        "fd00::/8",
        "",
    ])
    .expect("valid");
    assert_eq!(p.refusal("127.0.0.2", ip("127.0.0.2")), None);
    assert_eq!(p.refusal("x", ip("::ffff:127.0.0.2")), None, "mapped form");
    assert!(p.refusal("127.0.0.3", ip("127.0.0.3")).is_some());
    assert_eq!(p.refusal("swift.example.com", ip("10.9.9.9")), None);
    assert_eq!(p.refusal("SWIFT.example.com.", ip("127.0.0.1")), None);
    assert!(p.refusal("other.example.com", ip("10.9.9.9")).is_some());
    assert_eq!(p.refusal("h", ip("10.1.200.3")), None);
    assert!(p.refusal("h", ip("10.2.0.1")).is_some());
    assert_eq!(p.refusal("[::1]", ip("::1")), None);
    assert_eq!(p.refusal("h", ip("fd12::1")), None);
    assert!(p.refusal("h", ip("fc00::1")).is_some());
    // Public addresses need no listing.
    assert_eq!(p.refusal("h", ip("8.8.8.8")), None);
    assert!(!p.is_empty());
    assert!(AddressPolicy::parse::<&str>(&[]).expect("empty").is_empty());
}

#[test]
fn bad_allow_list_entries_are_errors() {
    for bad in [
        "10.0.0.0/33",
        "fd00::/129",
        "10.0.0.0/x",
        "nota/8",
        "http://host",
        "host:8080",
        "a..b",
        "-",
    ] {
        let e = AddressPolicy::parse(&[bad]).expect_err(bad);
        assert!(e.contains(bad.trim()), "{e}");
    }
    // A /0 is accepted (it allows everything of that family).
    let all = AddressPolicy::parse(&["0.0.0.0/0"]).expect("valid");
    assert_eq!(all.refusal("h", ip("127.0.0.1")), None);
    assert!(all.refusal("h", ip("::1")).is_some());
}

#[test]
fn check_host_refuses_without_connecting() {
    let p = AddressPolicy::default();
    for host in [
        "169.254.169.254",
        "[::1]",
        "10.0.0.1",
        "[::ffff:127.0.0.1]",
        "localhost",
    ] {
        let e = p.check_host(host, 80).expect_err(host);
        assert_eq!(e.status(), 400, "{host}");
        assert!(matches!(e, Error::BadLocation(_)), "{host}: {e:?}");
    }
    let allowed = AddressPolicy::parse(&["localhost"]).expect("valid");
    allowed.check_host("localhost", 80).expect("listed name");
}

#[test]
fn the_guarded_agent_refuses_before_connecting() {
    // A listener on 127.0.0.1 that must never see a connection.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let agent = guarded_agent(&Arc::new(AddressPolicy::default()));
    for url in [
        format!("http://127.0.0.1:{port}/x"),
        format!("http://localhost:{port}/x"),
        format!("http://[::ffff:127.0.0.1]:{port}/x"),
    ] {
        let e = agent.get(&url).call().expect_err(&url);
        let mapped = transport_error("GET", &e);
        assert!(matches!(mapped, Error::BadLocation(_)), "{url}: {mapped:?}");
    }
    assert!(listener.accept().is_err(), "the listener was contacted");
    // Allowed explicitly, the same server is reached.
    let allowed = guarded_agent(&Arc::new(
        AddressPolicy::parse(&["127.0.0.1"]).expect("valid"),
    ));
    let url = format!("http://127.0.0.1:{port}/x");
    let handle = std::thread::spawn(move || {
        listener.set_nonblocking(false).expect("blocking");
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 1024];
        let _ = std::io::Read::read(&mut s, &mut buf);
        std::io::Write::write_all(
            &mut s,
            b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/\r\nContent-Length: 0\r\n\r\n",
        )
        .expect("write");
    });
    let resp = allowed.get(&url).call().expect("reached");
    assert_eq!(resp.status().as_u16(), 302, "redirects are not followed");
    handle.join().expect("server thread");
}
