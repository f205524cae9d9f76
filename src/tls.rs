//! TLS for every HTTP client agent of the crate (Keystone token validation, the Swift,
//! S3 and http stores, the remote registry): native-tls, that is the system's OpenSSL,
//! checking servers against the system's CA certificates. ureq's default provider, rustls,
//! is not built in (see ../shared/DECISIONS.md: one TLS stack), and an agent left on the
//! default panics on its first `https` URL, so every agent is built with [`native`].

use ureq::tls::{RootCerts, TlsConfig, TlsProvider};

/// native-tls with the system's CA certificates.
pub(crate) fn native() -> TlsConfig {
    TlsConfig::builder()
        .provider(TlsProvider::NativeTls)
        .root_certs(RootCerts::PlatformVerifier)
        .build()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A local "https" server that answers the TLS handshake with plain-text garbage:
    /// an agent must fail with an error, never panic.
    pub(crate) fn not_tls_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for conn in listener.incoming().take(8).flatten() {
                let mut conn = conn;
                let mut buf = [0u8; 512];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.1 400 Not TLS\r\n\r\n");
            }
        });
        format!("https://127.0.0.1:{port}/")
    }

    #[test]
    fn an_agent_with_native_tls_fails_cleanly_on_a_bad_handshake() {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .tls_config(super::native())
            .build()
            .into();
        let r = agent.get(&not_tls_server()).call();
        assert!(r.is_err(), "{r:?}");
    }
}
