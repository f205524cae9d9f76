//! TLS for the client's `https` calls (the images API and Keystone): native-tls, that is the
//! system's OpenSSL, as everywhere in this crate (ureq's default provider, rustls, is not
//! built in). Servers are checked against the system's CA certificates, or only against those
//! of a CA bundle (`OS_CACERT`, `cacert` in clouds.yaml), as python-requests does with
//! `verify=<bundle>`.

use std::fmt;
use std::path::Path;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

use super::error::{Error, Result};

/// The CA certificates `https` servers are checked against.
#[derive(Clone, Default)]
pub struct CaBundle {
    /// `None`: the system's certificates.
    certs: Option<Vec<Certificate<'static>>>,
}

impl CaBundle {
    /// The system's CA certificates (OpenSSL's default locations). The default.
    pub fn system() -> CaBundle {
        CaBundle::default()
    }

    /// Only the certificates of a PEM file (one or more `BEGIN CERTIFICATE` blocks).
    pub fn from_pem_file(path: &Path) -> Result<CaBundle> {
        let shown = path.display();
        let pem = std::fs::read(path)
            .map_err(|e| Error::Login(format!("cannot read the CA bundle {shown}: {e}")))?;
        CaBundle::from_pem(&pem).map_err(|why| Error::Login(format!("CA bundle {shown}: {why}")))
    }

    /// Only the certificates of PEM text; the error says why there are none.
    fn from_pem(pem: &[u8]) -> std::result::Result<CaBundle, String> {
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(c)) => certs.push(c),
                Ok(_) => {}
                Err(e) => return Err(format!("not valid PEM: {e}")),
            }
        }
        if certs.is_empty() {
            return Err("no PEM certificate in it".into());
        }
        Ok(CaBundle { certs: Some(certs) })
    }

    /// How many certificates a bundle file held (`None` for the system's).
    pub fn certificates(&self) -> Option<usize> {
        self.certs.as_ref().map(Vec::len)
    }

    /// The ureq TLS settings: native-tls with these roots.
    pub(crate) fn tls_config(&self) -> TlsConfig {
        let roots = match &self.certs {
            None => RootCerts::PlatformVerifier,
            Some(c) => RootCerts::new_with_certs(c),
        };
        TlsConfig::builder()
            .provider(TlsProvider::NativeTls)
            .root_certs(roots)
            .build()
    }
}

impl fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.certificates() {
            None => f.write_str("CaBundle(system)"),
            Some(n) => write!(f, "CaBundle({n} certificates)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundles_need_certificates() {
        assert_eq!(CaBundle::system().certificates(), None);
        let e = CaBundle::from_pem(b"hello").err();
        assert_eq!(e.as_deref(), Some("no PEM certificate in it"));
        let e = CaBundle::from_pem_file(Path::new("/nonexistent/ca.pem"));
        assert!(
            matches!(&e, Err(Error::Login(m)) if m.starts_with("cannot read the CA bundle /nonexistent/ca.pem")),
            "{e:?}"
        );
    }
}
