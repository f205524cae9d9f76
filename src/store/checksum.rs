//! The digests of image data, with the system OpenSSL's assembly implementations: the MD5
//! `checksum` of every upload (and of the CLI's download check) and the `os_hash_value` of
//! every upload, with the [`HashAlgorithm`] of `hashing_algorithm`.
//!
//! Glance's checksum is an MD5 of every byte of every image, so it bounds upload speed:
//! RustCrypto's portable `md-5` hashes about 520 MB/s on the reference machine, OpenSSL's
//! about 860 MB/s (`openssl speed -evp md5`), and the upload's MD5 thread was the slowest
//! stage of the pipeline (bench/README.md). The multihash (SHA-512 by default) runs at a
//! similar rate on its own thread. OpenSSL is already linked for TLS (native-tls) and gets
//! the distribution's security updates.

use openssl::hash::{Hasher, MessageDigest};

use crate::error::{Error, Result};

/// The algorithms of `hashing_algorithm`, Glance's "multihash" of image data
/// (`os_hash_algo`). Current Glance accepts any name Python's `hashlib` knows; we support
/// the SHA-2 family members that are worth choosing (SHA-224 and SHA-512/t add nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512, Glance's default.
    #[default]
    Sha512,
}

impl HashAlgorithm {
    /// Every algorithm, by the name `hashing_algorithm` and `os_hash_algo` use.
    pub const NAMES: &'static [&'static str] = &["sha256", "sha384", "sha512"];

    /// The algorithm of a name in [`HashAlgorithm::NAMES`], in any case.
    pub fn from_name(name: &str) -> Option<HashAlgorithm> {
        match name.to_ascii_lowercase().as_str() {
            "sha256" => Some(HashAlgorithm::Sha256),
            "sha384" => Some(HashAlgorithm::Sha384),
            "sha512" => Some(HashAlgorithm::Sha512),
            _ => None,
        }
    }

    /// The name, as `os_hash_algo` shows it (`sha512`).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha384 => "sha384",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    fn digest(self) -> MessageDigest {
        match self {
            HashAlgorithm::Sha256 => MessageDigest::sha256(),
            HashAlgorithm::Sha384 => MessageDigest::sha384(),
            HashAlgorithm::Sha512 => MessageDigest::sha512(),
        }
    }
}

/// An incremental OpenSSL digest. OpenSSL reports failures only for allocation or engine
/// problems; the first one is kept and returned by [`Running::hex`].
struct Running {
    hasher: std::result::Result<Hasher, String>,
}

impl Running {
    fn new(md: MessageDigest) -> Running {
        Running {
            hasher: Hasher::new(md).map_err(|e| e.to_string()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        if let Ok(h) = &mut self.hasher
            && let Err(e) = h.update(data)
        {
            self.hasher = Err(e.to_string());
        }
    }

    /// The lower-case hex digest so far (the hasher stays usable); `what` names it in errors.
    fn hex(&mut self, what: &str) -> Result<String> {
        let h = self
            .hasher
            .as_mut()
            .map_err(|e| Error::Internal(format!("{what}: {e}")))?;
        let digest = h
            .clone()
            .finish()
            .map_err(|e| Error::Internal(format!("{what}: {e}")))?;
        Ok(to_hex(&digest))
    }
}

/// An incremental MD5 (an upload's `checksum`).
pub struct Md5Sum(Running);

impl Md5Sum {
    /// A fresh MD5.
    pub fn new() -> Md5Sum {
        Md5Sum(Running::new(MessageDigest::md5()))
    }

    /// Hashes more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The lower-case hex digest of everything hashed so far (the hasher stays usable).
    pub fn hex(&mut self) -> Result<String> {
        self.0.hex("MD5")
    }
}

impl Default for Md5Sum {
    fn default() -> Self {
        Md5Sum::new()
    }
}

/// An incremental multihash (an upload's `os_hash_value`) with one [`HashAlgorithm`].
pub struct OsHash {
    algorithm: HashAlgorithm,
    running: Running,
}

impl OsHash {
    /// A fresh hash with `algorithm`.
    pub fn new(algorithm: HashAlgorithm) -> OsHash {
        OsHash {
            algorithm,
            running: Running::new(algorithm.digest()),
        }
    }

    /// The algorithm.
    pub fn algorithm(&self) -> HashAlgorithm {
        self.algorithm
    }

    /// Hashes more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.running.update(data);
    }

    /// The lower-case hex digest of everything hashed so far (the hasher stays usable).
    pub fn hex(&mut self) -> Result<String> {
        self.running.hex(self.algorithm.name())
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

    /// The FIPS 180-2 examples ("" and "abc") for every algorithm, in two updates.
    #[test]
    fn known_os_hashes() {
        let cases = [
            (
                HashAlgorithm::Sha256,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ),
            (
                HashAlgorithm::Sha384,
                "38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da\
                 274edebfe76f65fbd51ad2f14898b95b",
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
                 8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                HashAlgorithm::Sha512,
                "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce\
                 47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
        ];
        for (algorithm, empty, abc) in cases {
            let mut h = OsHash::new(algorithm);
            assert_eq!(h.algorithm(), algorithm);
            assert_eq!(h.hex().ok().as_deref(), Some(empty), "{algorithm:?}");
            h.update(b"a");
            h.update(b"bc");
            assert_eq!(h.hex().ok().as_deref(), Some(abc), "{algorithm:?}");
        }
    }

    #[test]
    fn algorithm_names() {
        for name in HashAlgorithm::NAMES {
            let algorithm = HashAlgorithm::from_name(name);
            assert_eq!(algorithm.map(HashAlgorithm::name), Some(*name));
        }
        assert_eq!(
            HashAlgorithm::from_name("SHA384"),
            Some(HashAlgorithm::Sha384)
        );
        assert_eq!(HashAlgorithm::default(), HashAlgorithm::Sha512);
        for bad in ["md5", "sha1", "sha3_512", "blake2b", "", "sha512 "] {
            assert_eq!(HashAlgorithm::from_name(bad), None, "{bad}");
        }
    }
}
