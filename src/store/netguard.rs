//! The location policy's network half: which remote addresses glance-api may connect to for
//! a location a client supplied, and the HTTP agent that enforces it.
//!
//! A client can register `http://`, `swift+http://` or `s3://` locations naming any host; the
//! server then connects there on its behalf (HEAD to size the image, GET to serve it, DELETE
//! when it is deleted). Without a policy that is a server-side request forgery: the cloud's
//! metadata service at 169.254.169.254, the registry on 127.0.0.1, private networks behind
//! the API node. So every connection for a client-supplied location goes through
//! [`guarded_agent`]:
//!
//! * Its resolver resolves the host with ureq's default resolver, then drops every address in
//!   a special range ([`forbidden_range`]: loopback, private, link-local, CGNAT, multicast,
//!   documentation, IPv4 forms embedded in IPv6, ...) unless `location_allowed_hosts` lists
//!   the host name or the address. ureq then connects to exactly the addresses left, so a
//!   host name that resolves differently on a second lookup (DNS rebinding) gains nothing.
//! * Redirects are not followed (a 3xx is a failure), proxies from the environment are not
//!   used (a proxy would resolve the name itself), and every wait is bounded.
//!
//! The endpoints the operator configured (`swift_store_auth_address`, `s3_store_host`) are
//! trusted and do not go through this module.

use std::fmt;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use log::warn;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::{Location, StoreOptions};
use crate::error::Error;

/// Connecting to a location's host (per address tried).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Resolving a location's host name.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Waiting for the response head after the request was sent.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);
/// Any single read or write: a stalled location holds a worker at most this long per read.
pub const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest response head accepted from a location (status line and headers).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Largest non-data body read from a location (auth replies, listings, error pages).
pub const MAX_SMALL_BODY: u64 = 1024 * 1024;

/// Why an address may not be reached, by range (`None`: a public address). IPv4 addresses
/// embedded in IPv6 (mapped, NAT64, 6to4) are judged by the IPv4 address they carry.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u128::MAX << (128 - bits)
    };
    u128::from(ip) & mask == u128::from(Ipv6Addr::from(net)) & mask
}

/// IPv4 special-purpose ranges (RFC 6890 and its updates) that are not reachable on the
/// public Internet, or reach this host or its neighbours.
const V4_RANGES: &[([u8; 4], u32, &str)] = &[
    ([0, 0, 0, 0], 8, "\"this network\" (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
    (
        [100, 64, 0, 0],
        10,
        "shared address space / CGNAT (100.64.0.0/10)",
    ),
    ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
    ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16)"),
    ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
    (
        [192, 0, 0, 0],
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast (192.88.99.0/24)"),
    ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
    ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
    ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
    ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
    ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
    // Includes the limited broadcast address 255.255.255.255.
    ([240, 0, 0, 0], 4, "reserved or broadcast (240.0.0.0/4)"),
];

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    V4_RANGES
        .iter()
        .find(|(net, bits, _)| in_v4(ip, *net, *bits))
        .map(|(_, _, why)| *why)
}

/// IPv6 ranges refused outright (the embedded-IPv4 ones are handled apart).
const V6_RANGES: &[([u16; 8], u32, &str)] = &[
    // ::/96 holds :: and ::1 and the deprecated IPv4-compatible addresses: nothing public.
    (
        [0, 0, 0, 0, 0, 0, 0, 0],
        96,
        "unspecified, loopback or IPv4-compatible (::/96)",
    ),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "local-use NAT64 (64:ff9b:1::/48)",
    ),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only (100::/64)"),
    // Teredo, ORCHID, benchmarking and other protocol assignments.
    (
        [0x2001, 0, 0, 0, 0, 0, 0, 0],
        23,
        "IETF protocol assignments (2001::/23)",
    ),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation (2001:db8::/32)",
    ),
    (
        [0x3fff, 0, 0, 0, 0, 0, 0, 0],
        20,
        "documentation (3fff::/20)",
    ),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (fc00::/7)"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local (fe80::/10)"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local (fec0::/10)"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast (ff00::/8)"),
];

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    // An IPv4-mapped address connects to the IPv4 address it carries.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4).map(|_| "IPv4-mapped form of a forbidden IPv4 address");
    }
    let bits = u128::from(ip);
    let low_v4 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    // NAT64 (RFC 6052 well-known prefix): a gateway forwards to the embedded IPv4 address.
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return forbidden_v4(low_v4).map(|_| "NAT64 form of a forbidden IPv4 address");
    }
    // 6to4: 2002:AABB:CCDD::/48 tunnels to AA.BB.CC.DD.
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let v4 = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return forbidden_v4(v4).map(|_| "6to4 form of a forbidden IPv4 address");
    }
    V6_RANGES
        .iter()
        .find(|(net, bits, _)| in_v6(ip, *net, *bits))
        .map(|(_, _, why)| *why)
}

/// An address, or a network in CIDR notation, from `location_allowed_hosts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    bits: u32,
}

impl Net {
    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => in_v4(ip, net.octets(), self.bits),
            (IpAddr::V6(net), IpAddr::V6(ip)) => in_v6(ip, net.segments(), self.bits),
            _ => false,
        }
    }
}

/// `::ffff:a.b.c.d` is `a.b.c.d`: an operator who allows 127.0.0.1 allows both forms.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Parses an address (IPv6 optionally in brackets).
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.parse().ok()
}

/// Lower-cases a host name and drops a trailing dot, so that `Example.COM.` matches
/// `example.com`.
fn normal_host(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// True for a syntactically valid DNS host name (labels of letters, digits, `_` and inner
/// `-`, joined by dots).
fn valid_host_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Which destinations a client-supplied location may reach: every public address, plus the
/// host names, addresses and networks of `location_allowed_hosts`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    names: Vec<String>,
    nets: Vec<Net>,
}

impl AddressPolicy {
    /// Builds the policy from the entries of `location_allowed_hosts`: host names
    /// (`swift.example.com`), addresses (`127.0.0.1`, `::1`, `[::1]`) and networks
    /// (`10.1.0.0/16`, `fd00::/8`). An invalid entry is an error naming it.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> std::result::Result<AddressPolicy, String> {
        let mut policy = AddressPolicy::default();
        for entry in entries {
            let e = entry.as_ref().trim();
            if e.is_empty() {
                continue;
            }
            if let Some((addr, bits)) = e.split_once('/') {
                let addr = parse_ip(addr)
                    .ok_or_else(|| format!("'{e}' is not a network in CIDR notation"))?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                let bits: u32 = bits
                    .parse()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("'{e}': the prefix length must be 0 to {max}"))?;
                policy.nets.push(Net {
                    addr: canonical(addr),
                    bits,
                });
            } else if let Some(addr) = parse_ip(e) {
                let addr = canonical(addr);
                let bits = if addr.is_ipv4() { 32 } else { 128 };
                policy.nets.push(Net { addr, bits });
            } else {
                let name = normal_host(e);
                if !valid_host_name(&name) {
                    return Err(format!(
                        "'{e}' is not a host name, an IP address or a network (CIDR)"
                    ));
                }
                policy.names.push(name);
            }
        }
        Ok(policy)
    }

    /// True when nothing is listed (every special address refused).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.nets.is_empty()
    }

    /// May `ip`, reached under the name `host`, be connected to? `None` if so, else why not.
    pub fn refusal(&self, host: &str, ip: IpAddr) -> Option<&'static str> {
        let why = forbidden_range(ip)?;
        let name = normal_host(host.trim_start_matches('[').trim_end_matches(']'));
        if self.names.contains(&name) || self.nets.iter().any(|n| n.contains(ip)) {
            return None;
        }
        Some(why)
    }

    /// The addresses of `addrs` that `host` may reach, or a [`Refusal`] when none is left.
    fn filter(
        &self,
        host: &str,
        addrs: impl IntoIterator<Item = SocketAddr>,
    ) -> std::result::Result<Vec<SocketAddr>, Refusal> {
        let mut kept = Vec::new();
        let mut first_refused = None;
        for a in addrs {
            match self.refusal(host, a.ip()) {
                None => kept.push(a),
                Some(why) => {
                    first_refused.get_or_insert((a.ip(), why));
                }
            }
        }
        if kept.is_empty() {
            let (ip, why) = first_refused.unwrap_or((IpAddr::V4(Ipv4Addr::UNSPECIFIED), "none"));
            return Err(Refusal {
                host: host.to_string(),
                ip,
                why,
            });
        }
        Ok(kept)
    }

    /// Resolves `host` (a name or an address literal) and checks its addresses, without
    /// connecting: the check made when a client registers a location. A name that does not
    /// resolve within [`RESOLVE_TIMEOUT`] is refused too.
    pub fn check_host(&self, host: &str, port: u16) -> crate::error::Result<()> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = if let Ok(ip) = bare.parse::<IpAddr>() {
            vec![SocketAddr::new(ip, port)]
        } else {
            resolve_with_timeout(bare, port).map_err(|e| {
                location_error(format!("cannot resolve the location host {bare}: {e}"))
            })?
        };
        self.filter(host, addrs)
            .map(|_| ())
            .map_err(|r| location_error(r.to_string()))
    }
}

/// Resolves on a helper thread so that a slow DNS server cannot hold the request longer than
/// [`RESOLVE_TIMEOUT`] (std's lookup cannot be cancelled; the thread ends on its own).
fn resolve_with_timeout(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let target = (host.to_string(), port);
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let result = target.to_socket_addrs().map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(result);
        })?;
    rx.recv_timeout(RESOLVE_TIMEOUT)
        .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "timed out")))
}

/// A destination the policy refused: every address of the host is in a forbidden range.
#[derive(Debug, Clone)]
pub struct Refusal {
    host: String,
    ip: IpAddr,
    why: &'static str,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "location host {} refused by the location policy: {} is {} and not listed in \
             location_allowed_hosts",
            self.host, self.ip, self.why
        )
    }
}

impl std::error::Error for Refusal {}

/// The 400 a client gets for a location that cannot be used; `detail` is for the log.
pub fn location_error(detail: impl Into<String>) -> Error {
    Error::BadLocation(detail.into())
}

/// Maps a transport failure of a guarded request: a policy refusal is a 400
/// ([`Error::BadLocation`]), a timeout a 504, anything else a 502. `what` names the request
/// (no credentials); the messages go to the log only.
pub fn transport_error(what: &str, e: &ureq::Error) -> Error {
    if is_refusal(e) {
        return location_error(format!("{what}: {e}"));
    }
    let timed_out = match e {
        ureq::Error::Timeout(_) => true,
        ureq::Error::Io(io) => io.kind() == io::ErrorKind::TimedOut,
        _ => false,
    };
    if timed_out {
        Error::GatewayTimeout(format!("{what}: {e}"))
    } else {
        Error::BadGateway(format!("{what}: {e}"))
    }
}

/// True when the error is the resolver's refusal.
fn is_refusal(e: &ureq::Error) -> bool {
    matches!(e, ureq::Error::Io(io) if io.get_ref().is_some_and(|inner| inner.is::<Refusal>()))
}

/// The ureq resolver of [`guarded_agent`]: resolves as ureq does, then keeps only the
/// addresses the policy allows. ureq connects to what this returns, nothing else.
struct GuardResolver {
    policy: Arc<AddressPolicy>,
    inner: DefaultResolver,
}

impl fmt::Debug for GuardResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardResolver")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Resolver for GuardResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> std::result::Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().unwrap_or("");
        let all = self.inner.resolve(uri, config, timeout)?;
        match self.policy.filter(host, all.iter().copied()) {
            Ok(kept) => {
                let mut out = self.empty();
                for a in kept {
                    out.push(a);
                }
                Ok(out)
            }
            Err(refusal) => {
                warn!("{refusal}");
                Err(ureq::Error::Io(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    refusal,
                )))
            }
        }
    }
}

/// An HTTP agent for client-supplied locations: the policy checked on every connection, no
/// redirects (a 3xx comes back as a response, which callers treat as a failure), no proxy
/// from the environment, bounded waits and response heads.
pub fn guarded_agent(policy: &Arc<AddressPolicy>) -> ureq::Agent {
    let config = ureq::Agent::config_builder()
        .tls_config(crate::tls::native())
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .timeout_resolve(Some(RESOLVE_TIMEOUT))
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .timeout_per_read(Some(IO_TIMEOUT))
        .timeout_per_write(Some(IO_TIMEOUT))
        .max_response_header_size(MAX_HEADER_BYTES)
        .user_agent(concat!("glance-rs/", env!("CARGO_PKG_VERSION")))
        .build();
    ureq::Agent::with_parts(
        config,
        DefaultConnector::new(),
        GuardResolver {
            policy: Arc::clone(policy),
            inner: DefaultResolver::default(),
        },
    )
}

/// The HTTP client of an operator-configured object store (Swift, S3): trusted, so no
/// address policy, but no redirects either, and the given waits.
pub(crate) fn operator_agent(connect: Duration, response: Duration, io: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .tls_config(crate::tls::native())
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(connect))
        .timeout_recv_response(Some(response))
        .timeout_per_read(Some(io))
        .timeout_per_write(Some(io))
        .user_agent(concat!("glance-rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// How long a non-data body (an error page, an auth reply, a listing) may take to arrive,
/// checked between reads: a remote that drips one byte per [`IO_TIMEOUT`] is cut off.
pub const SMALL_BODY_DEADLINE: Duration = Duration::from_secs(30);

/// Reads at most `limit` bytes of a non-data body within [`SMALL_BODY_DEADLINE`] (plus one
/// read). `Ok(None)` when the body is longer than `limit`; `Err` on a transport failure or
/// when the deadline passes.
pub fn read_small(
    resp: &mut ureq::http::Response<ureq::Body>,
    limit: u64,
) -> io::Result<Option<Vec<u8>>> {
    let deadline = Instant::now() + SMALL_BODY_DEADLINE;
    let mut reader = resp.body_mut().as_reader().take(limit.saturating_add(1));
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(&buf[..n]);
        if out.len() as u64 > limit {
            return Ok(None);
        }
        if Instant::now() > deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the body did not arrive in time",
            ));
        }
    }
}

/// Reads and drops what is left of a small body (at most 64 KiB, within the deadline), so
/// that the connection can be reused; a longer body is left and its connection closed.
pub fn drain(resp: &mut ureq::http::Response<ureq::Body>) {
    let _ = read_small(resp, 64 * 1024);
}

/// A short single-line excerpt of an error body for the log (never for the client): at
/// most 200 printable characters, prefixed with `: `; empty when there is none.
pub fn excerpt(resp: &mut ureq::http::Response<ureq::Body>) -> String {
    let bytes = match read_small(resp, 4096) {
        Ok(Some(b)) => b,
        Ok(None) => return ": <long body>".into(),
        Err(_) => return String::new(),
    };
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    if text.is_empty() {
        text
    } else {
        format!(": {text}")
    }
}

/// Maps the failure of sizing a client-supplied location (part of registering it) to a 400:
/// everything but "not found" says the location cannot be used.
pub fn when_sizing(e: Error) -> Error {
    match e {
        Error::NotFound(_) | Error::BadLocation(_) | Error::BadRequest(_) => e,
        other => Error::BadLocation(other.message()),
    }
}

/// Image data from a remote location, cut off with an error past `image_size_cap`: a
/// location that streams without end is not an image.
pub struct CappedReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> CappedReader<R> {
    /// Wraps `inner`, allowing at most `cap` bytes.
    pub fn new(inner: R, cap: u64) -> CappedReader<R> {
        CappedReader { inner, left: cap }
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.left = self.left.checked_sub(n as u64).ok_or_else(|| {
            io::Error::other("the image location sent more data than image_size_cap")
        })?;
        Ok(n)
    }
}

/// True when two endpoint URLs name the same endpoint (case and a trailing `/` aside).
pub(super) fn same_endpoint(a: &str, b: &str) -> bool {
    a.trim_end_matches('/')
        .eq_ignore_ascii_case(b.trim_end_matches('/'))
}

/// The location policy as [`super::Stores`] applies it to a location a client registers:
/// the operator's own Swift and S3 endpoints are trusted, every other destination must pass
/// the [`AddressPolicy`].
#[derive(Debug, Clone)]
pub(super) struct LocationPolicy {
    addresses: Arc<AddressPolicy>,
    swift_auth: Option<String>,
    s3_endpoint: Option<String>,
}

impl LocationPolicy {
    pub(super) fn new(opts: &StoreOptions) -> LocationPolicy {
        LocationPolicy {
            addresses: Arc::clone(&opts.location_allowed_hosts),
            swift_auth: super::swift::configured_auth_url(&opts.swift),
            s3_endpoint: super::s3::configured_endpoint(&opts.s3),
        }
    }

    /// Checks the host a location would make glance-api connect to (resolving it now);
    /// refusals are [`Error::BadLocation`] (400, detail in the log).
    pub(super) fn check(&self, loc: &Location) -> crate::error::Result<()> {
        let trusted = |configured: &Option<String>, url: &str| {
            configured.as_deref().is_some_and(|c| same_endpoint(c, url))
        };
        match loc {
            Location::File(_) => Ok(()),
            Location::Http(h) => self.check_url(&h.url()),
            Location::Swift(l) if trusted(&self.swift_auth, &l.auth_url()) => Ok(()),
            Location::Swift(l) => self.check_url(&l.auth_url()),
            Location::S3(l) if trusted(&self.s3_endpoint, &l.service_url()) => Ok(()),
            Location::S3(l) => self.check_url(&l.service_url()),
        }
        .inspect_err(|e| warn!("location {} refused: {e}", loc.redacted()))
    }

    fn check_url(&self, url: &str) -> crate::error::Result<()> {
        let uri: ureq::http::Uri = url
            .parse()
            .map_err(|e| location_error(format!("unusable location URL: {e}")))?;
        let host = uri.host().unwrap_or("");
        let default_port = if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        };
        self.addresses
            .check_host(host, uri.port_u16().unwrap_or(default_port))
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tls_tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::tls::tests::not_tls_server;

    #[test]
    fn operator_agent_speaks_https_without_panicking() {
        let s = Duration::from_secs(2);
        let r = super::operator_agent(s, s, s).get(&not_tls_server()).call();
        assert!(r.is_err(), "{r:?}");
    }

    #[test]
    fn guarded_agent_speaks_https_without_panicking() {
        let policy = Arc::new(super::AddressPolicy::parse(&["127.0.0.1"]).expect("policy"));
        let r = super::guarded_agent(&policy).get(&not_tls_server()).call();
        assert!(r.is_err(), "{r:?}");
    }
}
