//! MD5 of image data, with the system OpenSSL's assembly implementation: the crate's one
//! MD5 (uploads, the CLI's download check).
//!
//! Glance's checksum is an MD5 of every byte of every image, so it bounds upload speed:
//! RustCrypto's portable `md-5` hashes about 520 MB/s on the reference machine, OpenSSL's
//! about 860 MB/s (`openssl speed -evp md5`), and the upload's MD5 thread was the slowest
//! stage of the pipeline (bench/README.md). OpenSSL is already linked for TLS
//! (native-tls) and gets the distribution's security updates.

use openssl::hash::{Hasher, MessageDigest};

use crate::error::{Error, Result};

/// An incremental MD5. OpenSSL reports failures only for allocation or engine problems;
/// the first one is kept and returned by [`Md5Sum::hex`].
pub struct Md5Sum {
    hasher: Result<Hasher, String>,
}

impl Md5Sum {
    /// A fresh MD5.
    pub fn new() -> Md5Sum {
        Md5Sum {
            hasher: Hasher::new(MessageDigest::md5()).map_err(|e| e.to_string()),
        }
    }

    /// Hashes more bytes.
    pub fn update(&mut self, data: &[u8]) {
        if let Ok(h) = &mut self.hasher
            && let Err(e) = h.update(data)
        {
            self.hasher = Err(e.to_string());
        }
    }

    /// The lower-case hex digest of everything hashed so far (the hasher stays usable).
    pub fn hex(&mut self) -> Result<String> {
        let h = self
            .hasher
            .as_mut()
            .map_err(|e| Error::Internal(format!("MD5: {e}")))?;
        let digest = h
            .clone()
            .finish()
            .map_err(|e| Error::Internal(format!("MD5: {e}")))?;
        Ok(to_hex(&digest))
    }
}

impl Default for Md5Sum {
    fn default() -> Self {
        Md5Sum::new()
    }
}

/// Lower-case hex of `bytes`.
fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0x0f)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut m = Md5Sum::new();
        assert_eq!(
            m.hex().ok().as_deref(),
            Some("d41d8cd98f00b204e9800998ecf8427e")
        );
        m.update(b"The quick brown fox ");
        m.update(b"jumps over the lazy dog");
        assert_eq!(
            m.hex().ok().as_deref(),
            Some("9e107d9d372bb6826bd81d3542a419d6")
        );
        // hex() does not end the hash.
        m.update(b".");
        assert_eq!(
            m.hex().ok().as_deref(),
            Some("e4d909c290d0fb1ca068ffaddf22cbd0")
        );
    }
}
