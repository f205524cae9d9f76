//! Image stores: where image data lives, and the URIs that point at it.
//!
//! This mirrors Glance's `glance/store/`: a [`Store`] trait (Glance's `base.Store`), one file
//! per backend, an enum of parsed locations ([`Location`], Glance's `StoreLocation` classes)
//! and a scheme table that picks the backend for a URI. [`Stores`] is the registry the API
//! server builds once from its configuration.
//!
//! | store | schemes | add | get | delete |
//! |---|---|---|---|---|
//! | `file` ([`FilesystemStore`]) | `file`, `filesystem` | yes | yes | yes |
//! | `http` ([`HttpStore`]) | `http`, `https` | no (400) | yes | no-op (remote data left alone) |
//! | `swift` ([`SwiftStore`]) | `swift`, `swift+http`, `swift+https` | yes | yes | yes |
//! | `s3` ([`S3Store`]) | `s3`, `s3+http`, `s3+https` | yes | yes | yes |
//!
//! Two rules run through the whole module:
//!
//! * **Credentials never leave the server.** A location may embed `user:key@` (Swift, S3,
//!   HTTP basic auth). [`Location::uri`] gives the full URI for the registry only;
//!   [`Location::redacted`] and [`redact_uri`] give the form for clients and logs, and every
//!   error message, `Debug` and `Display` output uses that form.
//! * **One door.** [`Stores`] is the only way to image data: [`Stores::add`] for uploads
//!   (it checks the id, the size cap and the declared size once, and hands the backend an
//!   [`ImageBody`] that counts, hashes and caps), [`Stores::get`], [`Stores::delete`] and
//!   [`Stores::size`] for stored locations, [`Stores::check_client_location`] for locations
//!   a client supplies. Backends are private behind it.
//! * **Memory stays flat.** Data is moved through a few fixed buffers ([`ImageBody`]), handed
//!   to the HTTP layer as a file or a reader ([`ImageData::into_body`]), or streamed part by
//!   part into an object store; nothing reads a whole image into memory. (The
//!   one bounded exception: an S3 upload of unknown size holds one multipart part.)
//!
//! Adding a backend means one file implementing [`Store`] plus one line in `BACKENDS` (and
//! its options in [`StoreOptions`]); location parsing is in `location.rs`, the copy pipeline
//! in `pipeline.rs`.

mod checksum;
mod filesystem;
mod http;
mod location;
pub(crate) mod netguard;
mod pipeline;
mod s3;
mod swift;
#[cfg(test)]
mod test_services;

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

pub use checksum::{HashAlgorithm, Md5Sum};
pub use location::Backend;
pub use location::{
    FileLocation, HttpLocation, Location, S3Location, SwiftLocation, check_record, redact_uri,
};
use location::{lookup_scheme, parse_stored};
pub(crate) use pipeline::BUFFER_ALIGN;
pub use pipeline::ImageBody;

use crate::cache::ImageCache;
use crate::error::{Error, Result};
use crate::format::{Inspection, Rules};
use crate::image::ImageId;

pub use filesystem::DIRECT_IO_MIN_BUFFER;
use filesystem::FilesystemStore;
use http::HttpStore;
use s3::S3Store;
pub use s3::{BucketUrlFormat, S3Options};
use swift::SwiftStore;
pub use swift::{MB, SwiftAuthVersion, SwiftOptions, endpoint_interface};

use netguard::{AddressPolicy, LocationPolicy};

/// Default size of the copy buffer. Glance streamed 64 KiB chunks; 1 MiB makes each write a
/// large sequential I/O, which direct I/O in the file store needs (bench/README.md), and
/// still keeps an upload to a few MiB of memory.
pub const DEFAULT_BUFFER_SIZE: usize = 1024 * 1024;

/// Builds a store from the options. Stores with incomplete configuration must still build
/// (and refuse `add` with a clear error); an `Err` here is fatal at start-up.
type Constructor = fn(&StoreOptions) -> Result<Box<dyn Store>>;

/// The backends built into this server by store name, in the order they are registered
/// (those listed in `known_stores`). A new backend is one line here.
const BACKENDS: &[(&str, Constructor)] = &[
    ("file", build_filesystem),
    ("http", build_http),
    ("swift", build_swift),
    ("s3", build_s3),
];

fn build_filesystem(opts: &StoreOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(FilesystemStore::new(opts)))
}

fn build_http(opts: &StoreOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(HttpStore::new(opts)))
}

fn build_swift(opts: &StoreOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(SwiftStore::new(opts)))
}

fn build_s3(opts: &StoreOptions) -> Result<Box<dyn Store>> {
    Ok(Box::new(S3Store::new(opts)))
}

// ---------------------------------------------------------------------------------------
// The store interface
// ---------------------------------------------------------------------------------------

/// What a successful [`Stores::add`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Full location URI (may hold credentials: store it in the registry, show it only
    /// through [`redact_uri`]).
    pub location: String,
    /// Bytes stored.
    pub size: u64,
    /// MD5 of the bytes, lower-case hex.
    pub checksum: String,
    /// The algorithm of `os_hash_value` (`hashing_algorithm`).
    pub os_hash_algo: HashAlgorithm,
    /// The multihash of the bytes with `os_hash_algo`, lower-case hex.
    pub os_hash_value: String,
    /// What the format inspection found (format, virtual size, a tolerated mismatch).
    pub inspection: Inspection,
}

/// Image data ready to be sent.
pub enum ImageData {
    /// A local file of this length: the HTTP layer sends it with `sendfile`.
    File(File, u64),
    /// A stream, with its length when known (remote `Content-Length`).
    Stream(Box<dyn Read + Send>, Option<u64>),
}

impl ImageData {
    /// The length when known.
    pub fn len(&self) -> Option<u64> {
        match self {
            ImageData::File(_, len) => Some(*len),
            ImageData::Stream(_, len) => *len,
        }
    }

    /// True when the data is known to be empty.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// `len` bytes from `start` of the data, for a ranged download: a file is positioned
    /// there; a stream has its first `start` bytes read and dropped (the stores do not ask
    /// their backends for ranges yet) and is cut after `len`. A stream that ends before
    /// `start` is [`Error::Store`].
    pub fn range(self, start: u64, len: u64) -> Result<ImageData> {
        match self {
            ImageData::File(mut f, _) => {
                use std::io::{Seek, SeekFrom};
                f.seek(SeekFrom::Start(start))
                    .map_err(|e| Error::io("seeking in image data", e))?;
                Ok(ImageData::File(f, len))
            }
            ImageData::Stream(mut r, _) => {
                let skipped = std::io::copy(&mut (&mut r).take(start), &mut std::io::sink())
                    .map_err(|e| Error::Store(format!("Error reading image data: {e}")))?;
                if skipped < start {
                    return Err(Error::Store(format!(
                        "Image data ended after {skipped} bytes, before the range at {start}"
                    )));
                }
                Ok(ImageData::Stream(Box::new(r.take(len)), Some(len)))
            }
        }
    }

    /// The response body for this data.
    pub fn into_body(self) -> crate::http::Body {
        match self {
            ImageData::File(f, len) => crate::http::Body::File(f, len),
            ImageData::Stream(r, len) => crate::http::Body::Reader(r, len),
        }
    }
}

impl fmt::Debug for ImageData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageData::File(_, len) => write!(f, "ImageData::File({len} bytes)"),
            ImageData::Stream(_, len) => write!(f, "ImageData::Stream({len:?} bytes)"),
        }
    }
}

/// One image store backend (Glance's `glance.store.base.Store`).
///
/// Errors: [`Error::NotFound`] for missing data, [`Error::Duplicate`] for data that already
/// exists, [`Error::BadRequest`] for bad locations and client-side upload failures (size
/// mismatch, client disconnect), [`Error::TooLarge`] above `image_size_cap`,
/// [`Error::Forbidden`] for permission errors and [`Error::Store`] for backend failures.
/// No message contains credentials.
pub trait Store: Send + Sync {
    /// The store name (`file`, `http`), as used by `x-image-meta-store`/`default_store`.
    fn name(&self) -> &'static str;

    /// The location schemes this store serves.
    fn schemes(&self) -> &'static [&'static str];

    /// Stores the data of image `id`, reading `body` to its end (only through its methods:
    /// it counts, hashes and caps), and returns the full location URI. The backend calls
    /// [`ImageBody::finish`] before it makes the data visible, so a short or long body
    /// leaves nothing behind; on any error nothing is left behind. Only [`Stores::add`]
    /// calls this.
    fn add(&self, id: &ImageId, body: &mut ImageBody<'_>) -> Result<String>;

    /// Removes what an upload of image `id` that was cut short by a crash may have left
    /// (temp files, segments). Called for images found `saving` at start-up, whose upload
    /// cannot still be running; the default has nothing to remove.
    fn discard_partial(&self, _id: &ImageId) -> Result<()> {
        Ok(())
    }

    /// Opens the data at `loc` for sending.
    fn get(&self, loc: &Location) -> Result<ImageData>;

    /// Deletes the data at `loc`. A read-only store leaves the data alone and answers `Ok`
    /// (see [`Store::writable`]).
    fn delete(&self, loc: &Location) -> Result<()>;

    /// The size of the data at `loc`.
    fn size(&self, loc: &Location) -> Result<u64>;

    /// False for read-only stores (http): `add` always fails and `delete` is a no-op.
    fn writable(&self) -> bool;
}

// ---------------------------------------------------------------------------------------
// The registry of stores
// ---------------------------------------------------------------------------------------

/// Store options from glance-api.conf.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Store for uploads without `x-image-meta-store` (default `file`).
    pub default_store: Backend,
    /// Directory of the filesystem store (default `/var/lib/glance/images/`); created at
    /// start-up if missing.
    pub filesystem_store_datadir: PathBuf,
    /// Copy buffer size in bytes (default 1 MiB; clamped to 4 KiB–16 MiB).
    pub buffer_size: usize,
    /// Let the file store write with `O_DIRECT` (`filesystem_store_direct_io`, default
    /// true); it does so only with buffers of [`DIRECT_IO_MIN_BUFFER`] or more.
    pub direct_io: bool,
    /// Largest image accepted, in bytes (`image_size_cap`, default 1 TiB).
    pub size_cap: u64,
    /// The algorithm of every upload's `os_hash_value` (`hashing_algorithm`, default
    /// SHA-512).
    pub hashing_algorithm: HashAlgorithm,
    /// The `swift_store_*` options.
    pub swift: SwiftOptions,
    /// The `s3_store_*` options.
    pub s3: S3Options,
    /// `known_stores`: the stores this server registers, by name; `None` means every store
    /// the options set up ([`StoreOptions::default_known_stores`]).
    pub known_stores: Option<Vec<String>>,
    /// `location_allowed_hosts`: the special addresses (loopback, private, ...) that
    /// client-supplied locations may reach nonetheless.
    pub location_allowed_hosts: Arc<AddressPolicy>,
}

impl StoreOptions {
    /// The stores set up by these options: `file` and `http` always, `swift` when
    /// `swift_store_auth_address` is set, `s3` when `s3_store_host` is set.
    pub fn default_known_stores(&self) -> Vec<String> {
        let mut known = vec!["file".to_string(), "http".to_string()];
        if self.swift.auth_address.is_some() {
            known.push("swift".into());
        }
        if self.s3.host.is_some() {
            known.push("s3".into());
        }
        known
    }
}

impl Default for StoreOptions {
    fn default() -> StoreOptions {
        StoreOptions {
            default_store: Backend::File,
            filesystem_store_datadir: PathBuf::from("/var/lib/glance/images/"),
            buffer_size: DEFAULT_BUFFER_SIZE,
            direct_io: true,
            size_cap: 1 << 40,
            hashing_algorithm: HashAlgorithm::default(),
            swift: SwiftOptions::default(),
            s3: S3Options::default(),
            known_stores: None,
            location_allowed_hosts: Arc::new(AddressPolicy::default()),
        }
    }
}

/// Every store of this server, chosen by name for uploads and by scheme for locations
/// (Glance's `glance/store/__init__.py`).
pub struct Stores {
    stores: Vec<Box<dyn Store>>,
    default_store: &'static str,
    size_cap: u64,
    hashing_algorithm: HashAlgorithm,
    policy: LocationPolicy,
    cache: Option<Arc<ImageCache>>,
}

impl fmt::Debug for Stores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stores")
            .field(
                "stores",
                &self.stores.iter().map(|s| s.name()).collect::<Vec<_>>(),
            )
            .field("default_store", &self.default_store)
            .field("size_cap", &self.size_cap)
            .field("hashing_algorithm", &self.hashing_algorithm)
            .finish()
    }
}

impl Stores {
    /// Builds the backends of `known_stores`. A listed store that cannot be fully configured
    /// stays registered and refuses uploads with a clear error (it logs a warning now).
    /// Fails when `known_stores` names an unknown store or `default_store` names no
    /// writable registered store.
    pub fn new(opts: &StoreOptions) -> Result<Stores> {
        let known = opts
            .known_stores
            .clone()
            .unwrap_or_else(|| opts.default_known_stores());
        let names = known
            .iter()
            .map(|k| {
                let lower = k.trim().to_ascii_lowercase();
                let name =
                    lookup_scheme(&lower).map_or(lower.as_str(), |(_, kind)| kind.store_name());
                BACKENDS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(n, _)| *n)
                    .ok_or_else(|| {
                        Error::Config(format!(
                            "known_stores: unknown store '{}' (stores: file, http, swift, s3)",
                            sanitize(k)
                        ))
                    })
            })
            .collect::<Result<Vec<&str>>>()?;
        let stores = BACKENDS
            .iter()
            .filter(|(name, _)| names.contains(name))
            .map(|(_, build)| build(opts))
            .collect::<Result<Vec<_>>>()?;
        let mut s = Stores {
            stores,
            default_store: "",
            size_cap: opts.size_cap,
            hashing_algorithm: opts.hashing_algorithm,
            policy: LocationPolicy::new(opts),
            cache: None,
        };
        let default = s
            .by_name(opts.default_store.store_name())
            .filter(|st| st.writable())
            .map(|st| st.name())
            .ok_or_else(|| {
                Error::Config(format!(
                    "default_store = {}: not a writable store on this server (available: {})",
                    opts.default_store.store_name(),
                    s.writable_names()
                ))
            })?;
        s.default_store = default;
        Ok(s)
    }

    /// Puts the image cache in front of downloads (glance-api with `image_cache_enabled`).
    pub fn set_cache(&mut self, cache: Arc<ImageCache>) {
        self.cache = Some(cache);
    }

    /// The image cache, when downloads have one: pass it to [`crate::cache::download`].
    pub fn cache(&self) -> Option<&Arc<ImageCache>> {
        self.cache.as_ref()
    }

    /// Checks an upload before anything is reserved: the store (`requested`, from
    /// `x-image-meta-store`, or `default_store`) must exist and be writable, and a declared
    /// size must be within `image_size_cap`. Returns the store's name for [`Stores::add`].
    pub fn check_upload(
        &self,
        requested: Option<&str>,
        expected: Option<u64>,
    ) -> Result<&'static str> {
        let store = self.for_upload(requested)?;
        self.check_size(expected)?;
        Ok(store.name())
    }

    fn check_size(&self, expected: Option<u64>) -> Result<()> {
        match expected {
            Some(n) if n > self.size_cap => Err(Error::TooLarge(format!(
                "Image of {n} bytes is larger than the {} bytes this server accepts \
                 (image_size_cap)",
                self.size_cap
            ))),
            _ => Ok(()),
        }
    }

    /// The one way image data gets into a store: checks the store, the size cap and the
    /// declared size once, wraps `data` in the one counting, hashing, capping reader
    /// ([`ImageBody`]) and hands it to the backend. On success the data is complete and
    /// verified (size as declared, MD5 and `os_hash_value` computed); on failure nothing is
    /// left behind.
    ///
    /// Every byte is shown to the format inspector ([`crate::format`]): data that fails the
    /// formats' safety rules or does not fit `rules` (the declared formats) stops the upload
    /// with [`Error::ImageRefused`] and leaves nothing stored.
    pub fn add(
        &self,
        requested: Option<&str>,
        id: &ImageId,
        data: &mut dyn Read,
        expected: Option<u64>,
        rules: Rules,
    ) -> Result<Stored> {
        let store = self.for_upload(requested)?;
        self.check_size(expected)?;
        let (cap, algorithm) = (self.size_cap, self.hashing_algorithm);
        add_verified(store, cap, algorithm, id, data, expected, rules)
    }

    /// Removes what an upload of `id` cut short by a crash left in any writable store.
    pub fn discard_partial(&self, id: &ImageId) -> Result<()> {
        self.stores
            .iter()
            .filter(|s| s.writable())
            .try_for_each(|s| s.discard_partial(id))
    }

    /// The store for an upload: `requested` (`x-image-meta-store`, a store or scheme name
    /// such as `file`) or `default_store`. Unknown or unconfigured → 400 `Requested store
    /// <x> not available on this Glance server`; a read-only store → 400.
    fn for_upload(&self, requested: Option<&str>) -> Result<&dyn Store> {
        let name = match requested.map(str::trim) {
            Some(n) if !n.is_empty() => n,
            _ => self.default_store,
        };
        let store = self.by_name(name).ok_or_else(|| {
            Error::BadRequest(format!(
                "Requested store {} not available on this Glance server",
                sanitize(name)
            ))
        })?;
        if !store.writable() {
            return Err(Error::BadRequest(format!(
                "The {} store is read-only: images cannot be uploaded to it",
                store.name()
            )));
        }
        Ok(store)
    }

    /// The store serving `loc`, by scheme. A known scheme whose backend is not built into
    /// this server → [`Error::Store`].
    fn for_location(&self, loc: &Location) -> Result<&dyn Store> {
        self.by_name(loc.store_name()).ok_or_else(|| {
            Error::Store(format!(
                "The {} store is not configured on this Glance server",
                loc.store_name()
            ))
        })
    }

    /// Validates a location a client wants to register (`x-image-meta-location`): it must
    /// parse, must not be `file://`/`filesystem://` (only uploads create file locations, so
    /// nothing can point into the data directory or elsewhere on this host), its store must
    /// be one of `known_stores`, and its host must pass the location policy (resolved now;
    /// see [`netguard`]). Every refusal is a 400.
    pub fn check_client_location(&self, uri: &str) -> Result<Location> {
        let loc = Location::parse(uri)?;
        if loc.kind() == Backend::File {
            return Err(Error::BadRequest(format!(
                "Invalid location: {}:// locations cannot be registered by clients; \
                 upload the image data instead",
                loc.scheme()
            )));
        }
        if self.by_name(loc.store_name()).is_none() {
            return Err(Error::BadRequest(format!(
                "Invalid location: the {} store is not available on this Glance server",
                loc.store_name()
            )));
        }
        self.policy.check(&loc)?;
        Ok(loc)
    }

    /// Opens the data at a stored location (as kept in the registry).
    pub fn get(&self, uri: &str) -> Result<ImageData> {
        let loc = parse_stored(uri)?;
        self.for_location(&loc)?.get(&loc)
    }

    /// Deletes the data at a stored location. For read-only stores (http) this leaves the
    /// remote data alone and answers `Ok`.
    pub fn delete(&self, uri: &str) -> Result<()> {
        let loc = parse_stored(uri)?;
        self.for_location(&loc)?.delete(&loc)
    }

    /// The size of the data at a stored location.
    pub fn size(&self, uri: &str) -> Result<u64> {
        let loc = parse_stored(uri)?;
        self.for_location(&loc)?.size(&loc)
    }

    /// The size of the data at a location a client registers (checked by
    /// [`Stores::check_client_location`]).
    pub fn remote_size(&self, loc: &Location) -> Result<u64> {
        self.for_location(loc)?.size(loc)
    }

    /// The configured `image_size_cap`, to refuse a too large `Content-Length` before reading.
    pub fn size_cap(&self) -> u64 {
        self.size_cap
    }

    /// The name of the default store.
    pub fn default_store(&self) -> &'static str {
        self.default_store
    }

    /// The names of the stores uploads may go to, in registration order.
    pub fn writable_stores(&self) -> Vec<&'static str> {
        self.stores
            .iter()
            .filter(|s| s.writable())
            .map(|s| s.name())
            .collect()
    }

    /// Finds a registered store by store name or by one of its schemes.
    fn by_name(&self, name: &str) -> Option<&dyn Store> {
        let lower = name.to_ascii_lowercase();
        let wanted = lookup_scheme(&lower)
            .map(|(_, k)| k.store_name())
            .unwrap_or(lower.as_str());
        self.stores
            .iter()
            .map(|s| s.as_ref())
            .find(|s| s.name() == wanted || s.schemes().contains(&wanted))
    }

    fn writable_names(&self) -> String {
        self.stores
            .iter()
            .filter(|s| s.writable())
            .map(|s| s.name())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Hands `data` to `store` through one [`ImageBody`] and verifies the result: the body of
/// [`Stores::add`], apart from the store's selection. `cap` is `image_size_cap`,
/// `algorithm` the `hashing_algorithm` of `os_hash_value`.
pub(crate) fn add_verified(
    store: &dyn Store,
    cap: u64,
    algorithm: HashAlgorithm,
    id: &ImageId,
    data: &mut dyn Read,
    expected: Option<u64>,
    rules: Rules,
) -> Result<Stored> {
    let mut body = ImageBody::with_rules(data, expected, cap, rules, algorithm);
    let location = match store.add(id, &mut body) {
        Ok(location) => location,
        Err(e) => {
            if body.refused() {
                // The client is still sending: let it finish, so that it reads the 400.
                body.discard_rest();
            }
            return Err(e);
        }
    };
    // The backend finished the body before committing; finishing again here makes sure no
    // backend can keep a short or long image. The inspection's verdict comes last: it needs
    // the end of the data.
    let verified = body.finish().and_then(|()| {
        let checksum = body.checksum()?;
        let os_hash_value = body.os_hash_value()?;
        Ok((checksum, os_hash_value, body.inspection()?))
    });
    match verified {
        Ok((checksum, os_hash_value, inspection)) => Ok(Stored {
            location,
            size: body.total(),
            checksum,
            os_hash_algo: body.os_hash_algo(),
            os_hash_value,
            inspection,
        }),
        Err(e) => {
            let removed = parse_stored(&location).and_then(|loc| store.delete(&loc));
            if let Err(de) = removed {
                log::error!("removing unverified data of image {id}: {de}");
            }
            Err(e)
        }
    }
}

/// A client-supplied name made safe to echo: printable ASCII, at most 64 characters.
fn sanitize(s: &str) -> String {
    s.chars()
        .take(64)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests;
