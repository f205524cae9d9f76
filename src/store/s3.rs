//! The Amazon S3 store (Glance's `glance/store/s3.py`), for AWS and S3-compatible servers
//! (Swift's `s3api`, Ceph RGW, MinIO).
//!
//! rust-s3 in its blocking mode (no async runtime) does the S3 side: SigV4 signing, bucket
//! creation, listings, multipart initiate/complete/abort, deletes. Its blocking backend
//! sends request bodies from memory and reads response bodies whole, so image *data* never
//! goes through it: every data transfer uses a URL presigned by rust-s3 and is streamed by
//! ureq (the client of the Swift and HTTP stores; system OpenSSL for `https`):
//!
//! * **Known size** (`Content-Length` or `x-image-meta-size`) below
//!   `s3_store_large_object_size`: one streamed `PUT` of exactly that length. S3's ETag
//!   must equal the MD5 computed on the way.
//! * **Known size** at or above it: a multipart upload whose parts are streamed straight
//!   from the request body with their exact lengths (`s3_store_large_object_chunk_size`, or
//!   larger when needed to stay within [`MAX_PARTS`] parts). Nothing is buffered.
//! * **Unknown size** (chunked without `x-image-meta-size`): S3 needs each part's length
//!   before it is sent (and servers such as Swift's s3api refuse `aws-chunked`), so the
//!   body is read one part (`s3_store_large_object_chunk_size`) at a time into a single
//!   reused buffer and sent from there: the one bounded buffer of this store, never the
//!   whole image. An image that fits into the first part is stored with one `PUT`; a larger
//!   one as a multipart upload of at most [`MAX_PARTS`] parts (else a clear error asks for a
//!   larger chunk size or a declared size).
//!
//! A failed upload aborts its multipart upload (S3 then drops the parts) or deletes what it
//! wrote; what cannot be cleaned up (server gone) is named in the error and the log.
//! Existing keys are never replaced (checked with a listing before writing: 409).
//!
//! **Locations** are `s3://` (plain HTTP, as in Glance) or `s3+https://`, from the scheme
//! of `s3_store_host` (no scheme means https), with the access key and secret embedded,
//! percent-encoded (access keys like Swift's `account:user` contain a colon). Reads and
//! deletes use the credentials in the location, as Glance did, so a changed
//! `s3_store_secret_key` does not reach images stored before the change.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Once;
use std::time::Duration;

use log::{debug, error, info, warn};
use s3::Bucket;
use s3::creds::Credentials;
use s3::error::S3Error;
use s3::region::Region;
use s3::serde_types::Part;

mod remote;

use super::pipeline::ImageBody;
use super::swift::MB;
use super::{ImageData, Location, S3Location, Store, StoreOptions};
use crate::error::{Error, Result};
use crate::http::{percent_decode, percent_encode};
use crate::image::ImageId;

/// Most parts a multipart upload gets. AWS allows 10000; Swift's s3api 1000 by default.
pub const MAX_PARTS: u64 = 1000;

/// Smallest part S3 accepts (except the last one).
const MIN_PART: u64 = 5 * MB;

/// Largest part, and largest single PUT, S3 accepts.
const MAX_PART: u64 = 5 * 1024 * MB;

/// Validity of the presigned URLs made for one request each (checked by S3 when the
/// request arrives, not when it ends).
const PRESIGN_SECS: u32 = 3600;

/// rust-s3's timeout for one whole control request (completing a multipart upload of a
/// large image can take the server a while).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(3600);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(600);
const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// How bucket URLs are formed (`s3_store_bucket_url_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BucketUrlFormat {
    /// Virtual-hosted where possible (a DNS-safe bucket name on a host name), else path.
    Auto,
    /// `https://host/bucket/key`: S3-compatible servers usually need this.
    Path,
    /// `https://bucket.host/key`.
    Virtual,
}

impl BucketUrlFormat {
    /// Parses `auto`, `path` or `virtual`.
    pub fn parse(s: &str) -> Option<BucketUrlFormat> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(BucketUrlFormat::Auto),
            "path" => Some(BucketUrlFormat::Path),
            "virtual" => Some(BucketUrlFormat::Virtual),
            _ => None,
        }
    }
}

/// The S3 options of glance-api.conf (and glance-scrubber.conf). `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Options {
    /// `s3_store_host`: `http://host:port`, `https://host` or a bare host (https). Unset:
    /// uploads are refused.
    pub host: Option<String>,
    /// `s3_store_access_key`.
    pub access_key: Option<String>,
    /// `s3_store_secret_key`. Never logged.
    pub secret_key: Option<String>,
    /// `s3_store_bucket`.
    pub bucket: Option<String>,
    /// `s3_store_create_bucket_on_put` (default False).
    pub create_bucket_on_put: bool,
    /// `s3_store_bucket_url_format` (default `auto`).
    pub bucket_url_format: BucketUrlFormat,
    /// `s3_store_region_name` (default `us-east-1`).
    pub region_name: String,
    /// `s3_store_large_object_size` in bytes (configured in MB; default 100 MB).
    pub large_object_size: u64,
    /// `s3_store_large_object_chunk_size` in bytes (configured in MB, at least 5; default
    /// 10 MB).
    pub large_object_chunk_size: u64,
}

impl Default for S3Options {
    fn default() -> S3Options {
        S3Options {
            host: None,
            access_key: None,
            secret_key: None,
            bucket: None,
            create_bucket_on_put: false,
            bucket_url_format: BucketUrlFormat::Auto,
            region_name: "us-east-1".into(),
            large_object_size: 100 * MB,
            large_object_chunk_size: 10 * MB,
        }
    }
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("host", &self.host)
            .field("access_key", &self.access_key)
            .field(
                "secret_key",
                &self.secret_key.as_ref().map(|_| "<redacted>"),
            )
            .field("bucket", &self.bucket)
            .field("create_bucket_on_put", &self.create_bucket_on_put)
            .field("bucket_url_format", &self.bucket_url_format)
            .field("region_name", &self.region_name)
            .field("large_object_size", &self.large_object_size)
            .field("large_object_chunk_size", &self.large_object_chunk_size)
            .finish()
    }
}

/// Where an object lives and who may touch it. `Debug` hides the secret.
#[derive(Clone)]
struct Target {
    /// `http://host[:port]` or `https://host[:port]`.
    endpoint: String,
    access: String,
    secret: String,
    bucket: String,
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Target({}/{} as {})",
            self.endpoint, self.bucket, self.access
        )
    }
}

/// Splits `s3_store_host` into (location scheme, endpoint URL, host for locations).
fn split_host(host: &str) -> std::result::Result<(&'static str, String, String), String> {
    let host = host.trim().trim_end_matches('/');
    let lower = host.to_ascii_lowercase();
    let (scheme, proto, rest) = if lower.starts_with("http://") {
        ("s3", "http", &host["http://".len()..])
    } else if lower.starts_with("https://") {
        ("s3+https", "https", &host["https://".len()..])
    } else if host.contains("://") {
        return Err(
            "s3_store_host must be http://host[:port], https://host[:port] or a host name".into(),
        );
    } else {
        ("s3+https", "https", host)
    };
    if rest.is_empty() || rest.contains(['/', '@', '?', '#']) || rest.contains(char::is_whitespace)
    {
        return Err(
            "s3_store_host must be http://host[:port], https://host[:port] or a host name \
             (no path, user or query)"
                .into(),
        );
    }
    Ok((scheme, format!("{proto}://{rest}"), rest.to_string()))
}

/// The endpoint URL of `s3_store_host` (the operator's, trusted by the location policy and
/// the only one rust-s3 talks to), if set and valid.
pub(super) fn configured_endpoint(o: &S3Options) -> Option<String> {
    o.host
        .as_deref()
        .and_then(|h| split_host(h).ok())
        .map(|(_, endpoint, _)| endpoint)
}

/// True for bucket names usable as a DNS label (virtual-hosted style, TLS wildcard safe).
fn dns_safe_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && !b.starts_with('-')
        && !b.ends_with('-')
}

/// Path style for `auto`: IP addresses, `localhost` and DNS-unsafe bucket names.
fn path_style(format: BucketUrlFormat, endpoint: &str, bucket: &str) -> bool {
    match format {
        BucketUrlFormat::Path => true,
        BucketUrlFormat::Virtual => false,
        BucketUrlFormat::Auto => {
            let host = endpoint.split_once("://").map_or(endpoint, |(_, h)| h);
            let name = if let Some(inner) = host.strip_prefix('[') {
                inner.split(']').next().unwrap_or(inner)
            } else {
                host.split(':').next().unwrap_or(host)
            };
            name.parse::<IpAddr>().is_ok()
                || name.eq_ignore_ascii_case("localhost")
                || !name.contains('.')
                || !dns_safe_bucket(bucket)
        }
    }
}

/// The `<Code>` and `<Message>` of an S3 XML error body.
fn s3_code(body: &str) -> (String, String) {
    let field = |tag: &str| {
        let open = format!("<{tag}>");
        let close = format!("</{tag}>");
        body.split_once(&open)
            .and_then(|(_, rest)| rest.split_once(&close))
            .map(|(v, _)| v.trim().chars().take(200).collect::<String>())
            .unwrap_or_default()
    };
    (field("Code"), field("Message"))
}

/// Maps an S3 error status and body to ours; `what` names the request.
fn s3_status_error(what: &str, status: u16, body: &str) -> Error {
    let (code, message) = s3_code(body);
    let detail = match (code.is_empty(), message.is_empty()) {
        (true, _) => String::new(),
        (false, true) => format!(" {code}"),
        (false, false) => format!(" {code}: {message}"),
    };
    match (status, code.as_str()) {
        (403, "SignatureDoesNotMatch" | "InvalidAccessKeyId" | "InvalidSecurity") | (401, _) => {
            Error::Store(format!(
                "S3 refused the credentials ({what}, {status}{detail}); check \
             s3_store_access_key and s3_store_secret_key"
            ))
        }
        (403, _) => Error::Forbidden(format!("S3 denied {what} ({status}{detail})")),
        (404, "NoSuchBucket") => Error::NotFound(format!("{what}: no such bucket (404)")),
        (404, _) => Error::NotFound(format!("{what}: not found in S3 (404{detail})")),
        (400, "EntityTooLarge") | (413, _) => Error::Store(format!(
            "S3 refused {what} as too large ({status}{detail}); lower \
             s3_store_large_object_size"
        )),
        (500..=599, _) => {
            Error::Unavailable(format!("S3 is unavailable ({what}, {status}{detail})"))
        }
        _ => Error::Store(format!("S3 answered {status} to {what}{detail}")),
    }
}

/// Maps a rust-s3 failure.
fn s3_error(what: &str, e: &S3Error) -> Error {
    match e {
        S3Error::HttpFailWithBody(status, body) => s3_status_error(what, *status, body),
        S3Error::Atto(inner) => {
            use attohttpc::ErrorKind as K;
            match inner.kind() {
                K::Io(_) | K::ConnectNotSupported | K::ConnectError { .. } => {
                    Error::Unavailable(format!("S3 is unreachable ({what}): {e}"))
                }
                _ => Error::Store(format!("S3 request failed ({what}): {e}")),
            }
        }
        S3Error::Io(_) => Error::Unavailable(format!("S3 is unreachable ({what}): {e}")),
        _ => Error::Store(format!("S3 request failed ({what}): {e}")),
    }
}

/// Maps a ureq transport failure (data transfers).
fn transport_error(what: &str, e: &ureq::Error) -> Error {
    match e {
        ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound
        | ureq::Error::Timeout(_)
        | ureq::Error::Io(_) => Error::Unavailable(format!("S3 is unreachable ({what}): {e}")),
        _ => Error::Store(format!("S3 request failed ({what}): {e}")),
    }
}

type Response = ureq::http::Response<ureq::Body>;

fn read_small(resp: &mut Response) -> String {
    let mut buf = Vec::new();
    let _ = resp
        .body_mut()
        .as_reader()
        .take(64 * 1024)
        .read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

fn duplicate(key: &str) -> Error {
    Error::Duplicate(format!("Image {key} already exists in the s3 store"))
}

/// Appends a note to an error's message, keeping its kind.
fn with_note(e: Error, note: &str) -> Error {
    if note.is_empty() {
        return e;
    }
    let msg = format!("{}{note}", e.message());
    match e {
        Error::NotFound(_) => Error::NotFound(msg),
        Error::Duplicate(_) => Error::Duplicate(msg),
        Error::Forbidden(_) => Error::Forbidden(msg),
        Error::BadRequest(_) => Error::BadRequest(msg),
        Error::TooLarge(_) => Error::TooLarge(msg),
        Error::Unavailable(_) => Error::Unavailable(msg),
        _ => Error::Store(msg),
    }
}

/// The S3 store (name `s3`, schemes `s3`, `s3+http`, `s3+https`).
pub struct S3Store {
    opts: S3Options,
    /// The configured bucket and credentials; `Err` holds why uploads are refused.
    target: std::result::Result<Target, String>,
    /// `s3://access:secret@host` or `s3+https://…`.
    location_prefix: String,
    agent: ureq::Agent,
    /// The endpoint of `s3_store_host`: the only one rust-s3 talks to.
    endpoint: Option<String>,
    /// Locations naming any other endpoint (client-supplied) go through this.
    remote: remote::RemoteS3,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store").field("opts", &self.opts).finish()
    }
}

static QUIET_RETRIES: Once = Once::new();

impl S3Store {
    /// Builds the store. Missing options leave it registered with uploads refused (and a
    /// warning when it is the default store); nothing is contacted at start-up.
    pub fn new(opts: &StoreOptions) -> S3Store {
        // rust-s3 retries every failed request after a sleep by default, a 404 included;
        // we decide ourselves what to retry.
        QUIET_RETRIES.call_once(|| s3::set_retries(0));
        let o = opts.s3.clone();
        let missing: Vec<&str> = [
            ("s3_store_host", o.host.is_none()),
            ("s3_store_access_key", o.access_key.is_none()),
            ("s3_store_secret_key", o.secret_key.is_none()),
            ("s3_store_bucket", o.bucket.is_none()),
        ]
        .iter()
        .filter(|(_, m)| *m)
        .map(|(n, _)| *n)
        .collect();
        let split = split_host(o.host.as_deref().unwrap_or("unset"));
        let (target, location_prefix) = match (&split, missing.is_empty()) {
            (Ok((scheme, endpoint, host)), true) => {
                let access = o.access_key.clone().unwrap_or_default();
                let secret = o.secret_key.clone().unwrap_or_default();
                let prefix = format!(
                    "{scheme}://{}:{}@{host}",
                    percent_encode(&access),
                    percent_encode(&secret)
                );
                let target = Target {
                    endpoint: endpoint.clone(),
                    access,
                    secret,
                    bucket: o.bucket.clone().unwrap_or_default(),
                };
                (Ok(target), prefix)
            }
            (Err(why), true) => (
                Err(format!("The s3 store is not configured: {why}")),
                String::new(),
            ),
            (_, false) => (
                Err(format!(
                    "The s3 store is not configured: set {} in the configuration file",
                    missing.join(", ")
                )),
                String::new(),
            ),
        };
        if let Err(why) = &target
            && opts.default_store == super::Backend::S3
        {
            warn!("{why}; uploads to the s3 store will fail");
        }
        let agent = super::netguard::operator_agent(CONNECT_TIMEOUT, RESPONSE_TIMEOUT, IO_TIMEOUT);
        let remote = remote::RemoteS3::new(
            super::netguard::guarded_agent(&opts.location_allowed_hosts),
            &o.region_name,
            opts.size_cap,
        );
        S3Store {
            endpoint: configured_endpoint(&o),
            opts: o,
            target,
            location_prefix,
            agent,
            remote,
        }
    }

    fn configured(&self) -> Result<&Target> {
        self.target
            .as_ref()
            .map_err(|why| Error::Store(why.clone()))
    }

    /// The rust-s3 handle of a bucket.
    fn bucket(&self, t: &Target) -> Result<Box<Bucket>> {
        let region = Region::Custom {
            region: self.opts.region_name.clone(),
            endpoint: t.endpoint.clone(),
        };
        let creds = Credentials::new(Some(&t.access), Some(&t.secret), None, None, None)
            .map_err(|e| Error::Store(format!("S3 credentials: {e}")))?;
        let mut b = Bucket::new(&t.bucket, region, creds)
            .map_err(|e| s3_error(&format!("bucket {}", t.bucket), &e))?;
        if path_style(self.opts.bucket_url_format, &t.endpoint, &t.bucket) {
            b.set_path_style();
        } else {
            b.set_subdomain_style();
        }
        b.set_request_timeout(Some(CONTROL_TIMEOUT));
        Ok(b)
    }

    /// The target of a location: its own endpoint, bucket and credentials (as Glance did).
    /// A location without credentials is refused: the configured ones are never lent to a
    /// location that does not carry them (a client could register one naming another
    /// image's key).
    fn target_for(&self, l: &S3Location) -> Result<Target> {
        let Some((access, secret)) = l.credentials() else {
            return Err(Error::BadLocation(format!(
                "The S3 location {} carries no credentials",
                l.service_url()
            )));
        };
        Ok(Target {
            endpoint: l.service_url(),
            access: percent_decode(access),
            secret: percent_decode(secret),
            bucket: l.bucket().to_string(),
        })
    }

    /// True when the target is on the configured endpoint (rust-s3's); any other was chosen
    /// by a client and goes through [`remote::RemoteS3`].
    fn trusted(&self, t: &Target) -> bool {
        self.endpoint
            .as_deref()
            .is_some_and(|e| super::netguard::same_endpoint(e, &t.endpoint))
    }

    /// The key's size if it exists (`Ok(None)` if not); `NotFound` when the bucket does not
    /// exist.
    fn find(&self, bucket: &Bucket, key: &str) -> Result<Option<u64>> {
        let what = format!("list {}/{key}", bucket.name());
        let (page, _) = bucket
            .list_page(key.to_string(), None, None, None, Some(1))
            .map_err(|e| s3_error(&what, &e))?;
        Ok(page.contents.iter().find(|o| o.key == key).map(|o| o.size))
    }

    /// Checks that the bucket exists (creating it when configured to) and the key does not.
    fn prepare(&self, t: &Target, bucket: &Bucket, key: &str) -> Result<()> {
        match self.find(bucket, key) {
            Ok(Some(_)) => Err(duplicate(key)),
            Ok(None) => Ok(()),
            Err(Error::NotFound(_)) if self.opts.create_bucket_on_put => self.create_bucket(bucket),
            Err(Error::NotFound(_)) => Err(Error::Store(format!(
                "The S3 bucket {} does not exist: create it, or set \
                 s3_store_create_bucket_on_put = True",
                t.bucket
            ))),
            Err(e) => Err(e),
        }
    }

    /// Creates the bucket: a presigned `PUT` on the bucket, with a LocationConstraint
    /// unless the region is us-east-1 (which takes none). (rust-s3's own call would send
    /// one for us-east-1 too when the endpoint is custom.)
    fn create_bucket(&self, bucket: &Bucket) -> Result<()> {
        let what = format!("create bucket {}", bucket.name());
        let url = bucket
            .presign_put("/", PRESIGN_SECS, None, None)
            .map_err(|e| s3_error(&what, &e))?;
        let region = &self.opts.region_name;
        let body = if region.is_empty() || region == "us-east-1" {
            String::new()
        } else {
            format!(
                "<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint>\
                 </CreateBucketConfiguration>"
            )
        };
        let mut resp = self
            .agent
            .put(&url)
            .send(body.as_bytes())
            .map_err(|e| transport_error(&what, &e))?;
        let status = resp.status().as_u16();
        let text = read_small(&mut resp);
        if !(200..300).contains(&status) {
            return Err(s3_status_error(&what, status, &text));
        }
        info!("created S3 bucket {}", bucket.name());
        Ok(())
    }

    /// Sends one data request to a presigned URL and checks for a 2xx; returns the ETag.
    fn send_data(
        &self,
        url: &str,
        what: &str,
        src: &mut ImageBody<'_>,
        body: DataBody<'_>,
    ) -> Result<String> {
        let req = self
            .agent
            .put(url)
            .header("Content-Type", "application/octet-stream");
        let result = match body {
            DataBody::Stream(len) => {
                let mut part = src.part(len, true);
                let r = req
                    .header("Content-Length", len.to_string())
                    .header("Expect", "100-continue")
                    .send(ureq::SendBody::from_reader(&mut part));
                r.map_err(|e| src.blame(|| transport_error(what, &e)))
            }
            DataBody::Bytes(bytes) => req
                .header("Expect", "100-continue")
                .send(bytes)
                .map_err(|e| transport_error(what, &e)),
        };
        let mut resp = result?;
        if let Some(e) = src.take_failure() {
            return Err(e);
        }
        let status = resp.status().as_u16();
        let text = read_small(&mut resp);
        if !(200..300).contains(&status) {
            return Err(s3_status_error(what, status, &text));
        }
        Ok(header(&resp, "etag")
            .unwrap_or_default()
            .trim_matches('"')
            .to_ascii_lowercase())
    }

    /// One PUT of the whole image (known size, or one buffer).
    fn put_single(
        &self,
        bucket: &Bucket,
        key: &str,
        src: &mut ImageBody<'_>,
        body: DataBody<'_>,
    ) -> Result<()> {
        let what = format!("PUT {}/{key}", bucket.name());
        let url = bucket
            .presign_put(format!("/{key}"), PRESIGN_SECS, None, None)
            .map_err(|e| s3_error(&what, &e))?;
        let etag = self.send_data(&url, &what, src, body)?;
        let verdict = src.finish().and_then(|()| {
            let sum = src.checksum()?;
            if etag == sum {
                Ok(())
            } else {
                Err(Error::Store(format!(
                    "S3 stored {}/{key} with ETag {etag}, but the MD5 of the data sent is {sum}",
                    bucket.name()
                )))
            }
        });
        if let Err(e) = verdict {
            if let Err(de) = bucket.delete_object(format!("/{key}")) {
                error!(
                    "could not remove {}/{key} after a failed upload: {}",
                    bucket.name(),
                    s3_error("delete", &de)
                );
            }
            return Err(e);
        }
        Ok(())
    }

    /// Uploads one part of a multipart upload; returns its ETag record.
    fn put_part(
        &self,
        bucket: &Bucket,
        key: &str,
        upload_id: &str,
        number: u32,
        src: &mut ImageBody<'_>,
        body: DataBody<'_>,
    ) -> Result<Part> {
        let what = format!("PUT {}/{key} part {number}", bucket.name());
        let queries = [
            ("partNumber".to_string(), number.to_string()),
            ("uploadId".to_string(), upload_id.to_string()),
        ]
        .into_iter()
        .collect();
        let mut url = bucket
            .presign_put(format!("/{key}"), PRESIGN_SECS, None, Some(queries))
            .map_err(|e| s3_error(&what, &e))?;
        // rust-s3 0.37's blocking presign_put signs the custom query parameters but leaves
        // them out of the URL it returns; S3 sorts the parameters, so appending them makes
        // the URL match its signature.
        if !url.contains("uploadId=") {
            url.push_str(&format!(
                "&partNumber={number}&uploadId={}",
                percent_encode(upload_id)
            ));
        }
        let etag = self.send_data(&url, &what, src, body)?;
        Ok(Part {
            part_number: number,
            etag: format!("\"{etag}\""),
        })
    }

    /// A multipart upload: parts from `next_part` until the body ends, then complete. On
    /// failure the upload is aborted.
    fn put_multipart(
        &self,
        bucket: &Bucket,
        key: &str,
        src: &mut ImageBody<'_>,
        mut buf: Option<(Vec<u8>, usize)>,
    ) -> Result<()> {
        let what = format!("multipart upload {}/{key}", bucket.name());
        let started = bucket
            .initiate_multipart_upload(&format!("/{key}"), "application/octet-stream")
            .map_err(|e| s3_error(&what, &e))?;
        let upload_id = started.upload_id;
        let result = (|| -> Result<Vec<Part>> {
            let mut parts = Vec::new();
            match &mut buf {
                // Unknown size: the first part is already in the buffer.
                Some((buf, first)) => {
                    let mut n = *first;
                    while n > 0 {
                        let number = next_number(parts.len())?;
                        let part = self.put_part(
                            bucket,
                            key,
                            &upload_id,
                            number,
                            src,
                            DataBody::Bytes(&buf[..n]),
                        )?;
                        parts.push(part);
                        n = src.fill(buf)?;
                    }
                }
                None => {
                    let total = src.expected().unwrap_or(0);
                    let part_size = part_size(self.opts.large_object_chunk_size, total)?;
                    while src.consumed() < total {
                        let len = part_size.min(total - src.consumed());
                        let number = next_number(parts.len())?;
                        let part = self.put_part(
                            bucket,
                            key,
                            &upload_id,
                            number,
                            src,
                            DataBody::Stream(len),
                        )?;
                        parts.push(part);
                    }
                }
            }
            src.finish()?;
            Ok(parts)
        })();
        let completed = result.and_then(|parts| {
            let count = parts.len();
            let done = bucket
                .complete_multipart_upload(&format!("/{key}"), &upload_id, parts)
                .map_err(|e| s3_error(&what, &e))?;
            // S3 may answer 200 and still report an error in the body.
            let text = done.as_str().unwrap_or("");
            if text.contains("<Error>") {
                return Err(s3_status_error(&what, 500, text));
            }
            debug!("completed {what}: {count} parts");
            Ok(())
        });
        if let Err(e) = completed {
            let note = match bucket.abort_upload(&format!("/{key}"), &upload_id) {
                Ok(()) => String::new(),
                Err(ae) => {
                    let ae = s3_error("abort", &ae);
                    error!("could not abort the failed {what} (upload id {upload_id}): {ae}");
                    format!(
                        "; its multipart upload could not be aborted (upload id {upload_id}): {}",
                        ae.message()
                    )
                }
            };
            return Err(with_note(e, &note));
        }
        Ok(())
    }

    fn s3_location<'l>(&self, loc: &'l Location) -> Result<&'l S3Location> {
        match loc {
            Location::S3(l) => Ok(l),
            other => Err(Error::BadRequest(format!(
                "The s3 store cannot serve {} locations",
                other.scheme()
            ))),
        }
    }

    fn not_found(loc: &Location) -> Error {
        Error::NotFound(format!(
            "Image data at {} not found in the s3 store",
            loc.redacted()
        ))
    }
}

/// What a data request sends: `len` bytes streamed from the source, or a buffer.
enum DataBody<'b> {
    Stream(u64),
    Bytes(&'b [u8]),
}

/// The part number after `done` parts, refusing to go past [`MAX_PARTS`].
fn next_number(done: usize) -> Result<u32> {
    let n = done as u64 + 1;
    if n > MAX_PARTS {
        return Err(Error::Store(format!(
            "Image needs more than {MAX_PARTS} S3 multipart parts of \
             s3_store_large_object_chunk_size; raise that option or declare the size \
             (Content-Length or x-image-meta-size)"
        )));
    }
    u32::try_from(n).map_err(|_| Error::Internal("part number overflow".into()))
}

/// The part size for a known total: the chunk size, or more so that the upload fits in
/// [`MAX_PARTS`] parts (whole MiB).
fn part_size(chunk: u64, total: u64) -> Result<u64> {
    let needed = total.div_ceil(MAX_PARTS).div_ceil(MB) * MB;
    let size = chunk.max(needed).max(MIN_PART);
    if size > MAX_PART {
        return Err(Error::Store(format!(
            "Image of {total} bytes is too large for S3 ({MAX_PARTS} parts of at most \
             {MAX_PART} bytes)"
        )));
    }
    Ok(size)
}

impl Store for S3Store {
    fn name(&self) -> &'static str {
        "s3"
    }

    fn schemes(&self) -> &'static [&'static str] {
        &["s3", "s3+http", "s3+https"]
    }

    fn add(&self, id: &ImageId, body: &mut ImageBody<'_>) -> Result<String> {
        let t = self.configured()?;
        let bucket = self.bucket(t)?;
        self.prepare(t, &bucket, id)?;
        let large = self.opts.large_object_size.min(MAX_PART);
        match body.expected() {
            Some(n) if n < large => {
                self.put_single(&bucket, id, body, DataBody::Stream(n))?;
            }
            Some(_) => self.put_multipart(&bucket, id, body, None)?,
            None => {
                // The one buffer of this store: a part of unknown length must be read
                // before it can be sent.
                let chunk = usize::try_from(self.opts.large_object_chunk_size)
                    .map_err(|_| Error::Internal("chunk size overflow".into()))?;
                let mut buf = vec![0u8; chunk];
                let n = body.fill(&mut buf)?;
                if n < chunk {
                    self.put_single(&bucket, id, body, DataBody::Bytes(&buf[..n]))?;
                } else {
                    self.put_multipart(&bucket, id, body, Some((buf, n)))?;
                }
            }
        }
        debug!(
            "stored image {id} in S3 bucket {}: {} bytes",
            t.bucket,
            body.total()
        );
        Ok(format!("{}/{}/{id}", self.location_prefix, t.bucket))
    }

    fn get(&self, loc: &Location) -> Result<ImageData> {
        let l = self.s3_location(loc)?;
        let t = self.target_for(l)?;
        if !self.trusted(&t) {
            return self.remote.get(&t, l.key());
        }
        let bucket = self.bucket(&t)?;
        let what = format!("GET {}/{}", t.bucket, l.key());
        let url = bucket
            .presign_get(format!("/{}", l.key()), PRESIGN_SECS, None)
            .map_err(|e| s3_error(&what, &e))?;
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| transport_error(&what, &e))?;
        let status = resp.status().as_u16();
        if status == 404 {
            let text = read_small(&mut resp);
            return Err(match s3_status_error(&what, status, &text) {
                Error::NotFound(_) if !text.contains("NoSuchBucket") => Self::not_found(loc),
                other => other,
            });
        }
        if !(200..300).contains(&status) {
            let text = read_small(&mut resp);
            return Err(s3_status_error(&what, status, &text));
        }
        let len = header(&resp, "content-length").and_then(|v| v.parse().ok());
        Ok(ImageData::Stream(
            Box::new(resp.into_body().into_reader()),
            len,
        ))
    }

    fn delete(&self, loc: &Location) -> Result<()> {
        let l = self.s3_location(loc)?;
        let t = self.target_for(l)?;
        if !self.trusted(&t) {
            return self.remote.delete(&t, l.key());
        }
        let bucket = self.bucket(&t)?;
        // S3 answers 204 to deleting a missing key: look first, to report "not found".
        if self.find(&bucket, l.key())?.is_none() {
            return Err(Self::not_found(loc));
        }
        let what = format!("DELETE {}/{}", t.bucket, l.key());
        bucket
            .delete_object(format!("/{}", l.key()))
            .map_err(|e| s3_error(&what, &e))?;
        debug!("deleted {} from the s3 store", loc.redacted());
        Ok(())
    }

    fn size(&self, loc: &Location) -> Result<u64> {
        let l = self.s3_location(loc)?;
        let t = self.target_for(l)?;
        if !self.trusted(&t) {
            // Sizing is part of registering a location: a failure is a 400.
            return self
                .remote
                .size(&t, l.key())
                .map_err(super::netguard::when_sizing);
        }
        let bucket = self.bucket(&t)?;
        self.find(&bucket, l.key())?
            .ok_or_else(|| Self::not_found(loc))
    }

    fn writable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
