//! A blocking client of the Glance images API v1, on ureq: what the `glance` command-line
//! tool uses, and what a Rust program can use to list, register, upload, download and share
//! images.
//!
//! The smallest useful call lists the public images of a server on localhost:
//!
//! ```no_run
//! use glance_rs::client::{Client, Filters, Sort};
//!
//! let glance = Client::new("127.0.0.1", 9292);
//! for image in glance.get_images(&Filters::new(), &Sort::default(), None, None)? {
//!     println!("{} {}", image.id, image.name.as_deref().unwrap_or(""));
//! }
//! # Ok::<_, glance_rs::client::Error>(())
//! ```
//!
//! Uploading streams the data: nothing is read into memory, and a file's size is sent as
//! `Content-Length` (other readers go out chunked):
//!
//! ```no_run
//! use glance_rs::client::{Client, ImageBody};
//! use glance_rs::image::ImagePatch;
//!
//! let glance = Client::from_url("http://glance.example.com:9292", Some("my-token"))?;
//! let meta = ImagePatch {
//!     name: Some(Some("cirros".into())),
//!     disk_format: Some(Some("qcow2".into())),
//!     container_format: Some(Some("bare".into())),
//!     is_public: Some(true),
//!     ..ImagePatch::default()
//! };
//! let file = std::fs::File::open("cirros.img")?;
//! let image = glance.add_image(&meta, Some(ImageBody::from_file(file)?))?;
//! println!("Added new image with ID: {}", image.id);
//! # Ok::<_, glance_rs::client::Error>(())
//! ```
//!
//! Errors come back by meaning ([`Error::NotFound`], [`Error::Duplicate`],
//! [`Error::BadRequest`] with the server's message, [`Error::Connect`] …), never as raw
//! statuses. Image metadata uses the crate's own model: [`Image`] for records and
//! [`ImagePatch`] for the fields to set.
//!
//! Without a token at hand, [`keystone::login`] gets one, and the image endpoint, from
//! Keystone with the credentials of an openrc or a clouds.yaml
//! ([`credentials::Credentials::discover`]).

mod cache;
pub mod credentials;
pub(crate) mod error;
pub mod headers;
pub mod keystone;
mod tls;

use std::fs::File;
use std::io::{self, Read, Seek};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use ureq::Agent;
use ureq::http::Request;

pub use self::cache::CachedImage;
pub use self::error::{Error, Result};
pub use self::tls::CaBundle;
use crate::http::percent_encode;
pub use crate::image::{Image, ImagePatch};
pub use crate::registry::{Member, MemberSpec, SharedImage};

/// The default port of `glance-api`.
pub const DEFAULT_PORT: u16 = 9292;

/// Largest JSON reply read into memory (a page of 1000 detailed images fits easily).
const MAX_JSON_REPLY: u64 = 64 * 1024 * 1024;
/// Largest error page read.
const MAX_ERROR_REPLY: u64 = 1024 * 1024;

/// A client of one `glance-api` server.
///
/// Cheap to clone (the connection pool is shared). Every call is blocking.
#[derive(Clone)]
pub struct Client {
    agent: Agent,
    /// `http://host:port/v1` (no trailing slash).
    base: String,
    /// `host:port`, for error messages.
    addr: String,
    host: String,
    port: u16,
    auth_token: Option<String>,
    identity: Option<Identity>,
    timeout: Option<Duration>,
    ca: CaBundle,
}

impl std::fmt::Debug for Client {
    /// The server and whether a token is set; never the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("auth_token", &self.auth_token.as_ref().map(|_| "***"))
            .field("identity", &self.identity)
            .field("ca", &self.ca)
            .finish()
    }
}

/// Identity headers for a server running `auth_strategy = noauth` behind a trusted network
/// (the Diablo default pipeline): they tell the server who the caller is.
///
/// Sent as `X-Identity-Status: Confirmed`, `X-Tenant`, `X-User` and `X-Roles`/`X-Role`, with
/// the client's token, or the placeholder token `noauth` when it has none (the server only
/// reads identity headers next to a token). A server that validates tokens with Keystone
/// ignores them. Needed for member changes, which require a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// Tenant (project) id: the owner of images the caller creates.
    pub tenant: Option<String>,
    /// User id.
    pub user: Option<String>,
    /// Role names (a role equal to the server's `admin_role` makes the caller admin).
    pub roles: Vec<String>,
}

/// One entry of [`Client::get_images`]: the six "brief" fields of an index listing.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ImageSummary {
    /// Image id.
    pub id: String,
    /// Name, if any.
    pub name: Option<String>,
    /// Disk format, if set.
    pub disk_format: Option<String>,
    /// Container format, if set.
    pub container_format: Option<String>,
    /// MD5 of the data, once uploaded.
    pub checksum: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
}

/// Listing filters (spec §5.1), sent as query parameters.
///
/// ```
/// use glance_rs::client::Filters;
///
/// let f = Filters::new().status("active").disk_format("qcow2").property("distro", "debian");
/// assert_eq!(f.pairs()[2], ("property-distro".to_string(), "debian".to_string()));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    pairs: Vec<(String, String)>,
}

impl Filters {
    /// No filter: the server's default listing (public images, plus the caller's own and
    /// those shared with the caller).
    pub fn new() -> Filters {
        Filters::default()
    }

    /// Any query parameter the server knows (`name`, `status`, `is_public`, `property-K` …).
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Filters {
        self.pairs.push((key.into(), value.into()));
        self
    }

    /// Exact name.
    pub fn name(self, v: impl Into<String>) -> Filters {
        self.set("name", v)
    }

    /// Exact status (`active`, `queued` …; killed images are never listed).
    pub fn status(self, v: impl Into<String>) -> Filters {
        self.set("status", v)
    }

    /// Exact disk format.
    pub fn disk_format(self, v: impl Into<String>) -> Filters {
        self.set("disk_format", v)
    }

    /// Exact container format.
    pub fn container_format(self, v: impl Into<String>) -> Filters {
        self.set("container_format", v)
    }

    /// Size at least `n` bytes.
    pub fn size_min(self, n: u64) -> Filters {
        self.set("size_min", n.to_string())
    }

    /// Size at most `n` bytes.
    pub fn size_max(self, n: u64) -> Filters {
        self.set("size_max", n.to_string())
    }

    /// Admins only: `true`, `false` (every private image) or `none` (everything).
    pub fn is_public(self, v: impl Into<String>) -> Filters {
        self.set("is_public", v)
    }

    /// Images with the custom property `key` equal to `value`.
    pub fn property(self, key: &str, value: impl Into<String>) -> Filters {
        self.set(format!("property-{key}"), value)
    }

    /// The query parameters, in the order they were added.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// Sort order of a listing; the server's default is `created_at` descending.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sort {
    /// Column: `name status container_format disk_format size id created_at updated_at`.
    pub key: Option<String>,
    /// Direction.
    pub dir: Option<SortDir>,
}

impl Sort {
    /// Sort by `key` in direction `dir`.
    pub fn by(key: impl Into<String>, dir: SortDir) -> Sort {
        Sort {
            key: Some(key.into()),
            dir: Some(dir),
        }
    }
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    /// Ascending.
    Asc,
    /// Descending (the server's default).
    Desc,
}

impl SortDir {
    /// `asc` or `desc`.
    pub fn as_str(self) -> &'static str {
        match self {
            SortDir::Asc => "asc",
            SortDir::Desc => "desc",
        }
    }
}

impl std::str::FromStr for SortDir {
    type Err = Error;
    fn from_str(s: &str) -> Result<SortDir> {
        match s {
            "asc" => Ok(SortDir::Asc),
            "desc" => Ok(SortDir::Desc),
            other => Err(Error::InvalidInput(format!(
                "sort direction '{other}': use asc or desc"
            ))),
        }
    }
}

/// Image data to upload: a reader and, when known, its length.
///
/// With a length the body is sent with `Content-Length` (and `x-image-meta-size`), else with
/// `Transfer-Encoding: chunked`. Either way it is streamed, never read into memory.
pub struct ImageBody<'a> {
    reader: Box<dyn Read + 'a>,
    size: Option<u64>,
}

impl<'a> ImageBody<'a> {
    /// Data from `reader`, of `size` bytes when known.
    pub fn new(reader: impl Read + 'a, size: Option<u64>) -> ImageBody<'a> {
        ImageBody {
            reader: Box::new(reader),
            size,
        }
    }

    /// Data of a known length (exactly `size` bytes must follow).
    pub fn sized(reader: impl Read + 'a, size: u64) -> ImageBody<'a> {
        ImageBody::new(reader, Some(size))
    }

    /// Data of unknown length, sent chunked.
    pub fn chunked(reader: impl Read + 'a) -> ImageBody<'a> {
        ImageBody::new(reader, None)
    }

    /// Data in memory.
    pub fn from_bytes(bytes: &'a [u8]) -> ImageBody<'a> {
        ImageBody::sized(bytes, bytes.len() as u64)
    }

    /// The rest of a file, from its current position. A regular file's remaining length is
    /// sent as the size; a pipe or other special file goes out chunked.
    pub fn from_file(mut file: File) -> io::Result<ImageBody<'static>> {
        let meta = file.metadata()?;
        let size = if meta.is_file() {
            let pos = file.stream_position()?;
            Some(meta.len().saturating_sub(pos))
        } else {
            None
        };
        Ok(ImageBody::new(file, size))
    }

    /// Wraps the reader (to count bytes for a progress bar, say), keeping the size.
    pub fn map_reader<F, R>(self, f: F) -> ImageBody<'a>
    where
        F: FnOnce(Box<dyn Read + 'a>) -> R,
        R: Read + 'a,
    {
        ImageBody {
            size: self.size,
            reader: Box::new(f(self.reader)),
        }
    }

    /// The length, when known.
    pub fn size(&self) -> Option<u64> {
        self.size
    }
}

/// The bytes of a downloaded image, streamed from the server as they are read.
pub struct ImageReader {
    inner: ureq::BodyReader<'static>,
}

impl Read for ImageReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

/// A reply whose status was already checked.
type Reply = ureq::http::Response<ureq::Body>;

impl Client {
    /// A client of `http://host:port/v1`, without credentials.
    ///
    /// ```
    /// let c = glance_rs::client::Client::new("::1", 9292);
    /// assert_eq!(c.base_url(), "http://[::1]:9292/v1");
    /// ```
    pub fn new(host: &str, port: u16) -> Client {
        let host_part = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]") // an IPv6 literal
        } else {
            host.to_string()
        };
        let addr = format!("{host_part}:{port}");
        Client::with_base(format!("http://{addr}/v1"), addr, host.to_string(), port)
    }

    /// A client of the API at `url` (`http://host[:port][/path]`, `https` too), with an
    /// optional token sent as `X-Auth-Token`. Without a port, 9292 is used for `http` and
    /// 443 for `https`; without a version segment at the end of the path, `/v1` is added.
    ///
    /// ```
    /// use glance_rs::client::Client;
    ///
    /// let c = Client::from_url("http://glance.example.com", None)?;
    /// assert_eq!(c.base_url(), "http://glance.example.com:9292/v1");
    /// let c = Client::from_url("https://cloud.example.com/image/v1/", Some("t0ken"))?;
    /// assert_eq!(c.base_url(), "https://cloud.example.com:443/image/v1");
    /// assert!(Client::from_url("ftp://x", None).is_err());
    /// # Ok::<_, glance_rs::client::Error>(())
    /// ```
    pub fn from_url(url: &str, auth_token: Option<&str>) -> Result<Client> {
        let bad = || Error::InvalidInput(format!("'{url}' is not an http(s) URL"));
        let (scheme, rest) = url.split_once("://").ok_or_else(bad)?;
        let default_port = match scheme.to_ascii_lowercase().as_str() {
            "http" => DEFAULT_PORT,
            "https" => 443,
            _ => return Err(bad()),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad());
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().map_err(|_| bad())?),
            _ => (authority, default_port),
        };
        if host.is_empty() {
            return Err(bad());
        }
        let path = path.trim_end_matches('/');
        let versioned = path
            .rsplit('/')
            .next()
            .and_then(|seg| seg.strip_prefix('v'))
            .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()));
        let path = if versioned {
            path.to_string()
        } else {
            format!("{path}/v1")
        };
        let addr = format!("{host}:{port}");
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let client = Client::with_base(
            format!("{}://{addr}{path}", scheme.to_ascii_lowercase()),
            addr,
            bare_host.to_string(),
            port,
        );
        Ok(match auth_token {
            Some(t) => client.with_auth_token(t),
            None => client,
        })
    }

    fn with_base(base: String, addr: String, host: String, port: u16) -> Client {
        let ca = CaBundle::system();
        Client {
            agent: agent(None, &ca),
            base,
            addr,
            host,
            port,
            auth_token: None,
            identity: None,
            timeout: None,
            ca,
        }
    }

    /// Sends `token` as `X-Auth-Token` with every request.
    pub fn with_auth_token(mut self, token: &str) -> Client {
        self.auth_token = Some(token.to_string());
        self
    }

    /// Sends identity headers with every request (see [`Identity`]).
    pub fn with_identity(mut self, identity: Identity) -> Client {
        self.identity = Some(identity);
        self
    }

    /// Gives up on a call that takes longer than `timeout` in total (uploads and downloads
    /// included). The default is no overall limit, and 30 s to connect.
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Client {
        self.timeout = timeout;
        self.agent = agent(timeout, &self.ca);
        self
    }

    /// Checks an `https` server against the certificates of `ca` (see
    /// [`CaBundle::from_pem_file`]). The default is the system's CA certificates.
    pub fn with_ca_bundle(mut self, ca: CaBundle) -> Client {
        self.agent = agent(self.timeout, &ca);
        self.ca = ca;
        self
    }

    /// The API's base URL, `http://host:port/v1`.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The server's host as given (without brackets or port).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// `host:port` of the server.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Lists images: one page of brief records (`GET /images`), newest first unless `sort`
    /// says otherwise. `limit` is the page size (server default 25, at most 1000); `marker`
    /// is the id of the last image of the previous page.
    ///
    /// ```no_run
    /// use glance_rs::client::{Client, Filters, Sort, SortDir};
    ///
    /// let glance = Client::new("127.0.0.1", 9292);
    /// let filters = Filters::new().status("active").size_min(1);
    /// let page = glance.get_images(&filters, &Sort::by("name", SortDir::Asc), Some(10), None)?;
    /// if let Some(last) = page.last() {
    ///     let next = glance.get_images(&filters, &Sort::by("name", SortDir::Asc), Some(10), Some(&last.id))?;
    ///     println!("{} more", next.len());
    /// }
    /// # Ok::<_, glance_rs::client::Error>(())
    /// ```
    pub fn get_images(
        &self,
        filters: &Filters,
        sort: &Sort,
        limit: Option<u64>,
        marker: Option<&str>,
    ) -> Result<Vec<ImageSummary>> {
        let v = self.list("/images", filters, sort, limit, marker)?;
        serde_json::from_value(v).map_err(|e| Error::InvalidResponse(format!("image listing: {e}")))
    }

    /// Like [`get_images`](Self::get_images) with full records (`GET /images/detail`;
    /// the server leaves `location` out).
    pub fn get_images_detailed(
        &self,
        filters: &Filters,
        sort: &Sort,
        limit: Option<u64>,
        marker: Option<&str>,
    ) -> Result<Vec<Image>> {
        let v = self.list("/images/detail", filters, sort, limit, marker)?;
        let items = v
            .as_array()
            .ok_or_else(|| Error::InvalidResponse("image listing is not a list".into()))?;
        items.iter().map(image_from_json).collect()
    }

    fn list(
        &self,
        path: &str,
        filters: &Filters,
        sort: &Sort,
        limit: Option<u64>,
        marker: Option<&str>,
    ) -> Result<Value> {
        let mut q: Vec<(String, String)> = filters.pairs().to_vec();
        if let Some(k) = &sort.key {
            q.push(("sort_key".into(), k.clone()));
        }
        if let Some(d) = sort.dir {
            q.push(("sort_dir".into(), d.as_str().into()));
        }
        if let Some(n) = limit {
            q.push(("limit".into(), n.to_string()));
        }
        if let Some(m) = marker {
            q.push(("marker".into(), m.to_string()));
        }
        let query: Vec<String> = q
            .iter()
            .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
            .collect();
        let url = if query.is_empty() {
            self.url(path)
        } else {
            format!("{}?{}", self.url(path), query.join("&"))
        };
        let reply = self.send(self.request("GET", &url), None)?;
        let mut v = read_json(reply)?;
        Ok(v.get_mut("images").map(Value::take).unwrap_or(Value::Null))
    }

    /// The metadata of one image (`HEAD /images/<id>`), whatever its status.
    ///
    /// ```no_run
    /// # let glance = glance_rs::client::Client::new("127.0.0.1", 9292);
    /// match glance.get_image_meta("3c2b5d5e-…") {
    ///     Ok(image) => println!("{} is {}", image.id, image.status),
    ///     Err(e) if e.is_not_found() => println!("no such image"),
    ///     Err(e) => return Err(e),
    /// }
    /// # Ok::<_, glance_rs::client::Error>(())
    /// ```
    pub fn get_image_meta(&self, id: &str) -> Result<Image> {
        let reply = self.send(self.request("HEAD", &self.image_url(id)), None)?;
        image_of_reply(&reply)
    }

    /// The metadata and the data of an active image (`GET /images/<id>`). The reader streams
    /// the bytes from the server as it is read; `Image::size` says how many to expect and
    /// `Image::checksum` their MD5.
    ///
    /// ```no_run
    /// # let glance = glance_rs::client::Client::new("127.0.0.1", 9292);
    /// let (image, mut data) = glance.get_image("3c2b5d5e-…")?;
    /// let mut out = std::fs::File::create("copy.img")?;
    /// let n = std::io::copy(&mut data, &mut out)?;
    /// assert_eq!(n, image.size);
    /// # Ok::<_, glance_rs::client::Error>(())
    /// ```
    pub fn get_image(&self, id: &str) -> Result<(Image, ImageReader)> {
        let reply = self.send(self.request("GET", &self.image_url(id)), None)?;
        let image = image_of_reply(&reply)?;
        let reader = ImageReader {
            inner: reply.into_body().into_reader(),
        };
        Ok((image, reader))
    }

    /// Creates an image (`POST /images`): with `data` it is uploaded and becomes `active`;
    /// with `meta.location` it is registered at that location (`active`, no upload);
    /// otherwise it is reserved (`queued`) for a later [`update_image`](Self::update_image)
    /// with data. The server ignores `meta.status`. Returns the new record.
    ///
    /// ```no_run
    /// use glance_rs::client::{Client, ImageBody};
    /// use glance_rs::image::ImagePatch;
    ///
    /// let glance = Client::new("127.0.0.1", 9292);
    /// let meta = ImagePatch { name: Some(Some("tiny".into())), ..ImagePatch::default() };
    /// let image = glance.add_image(&meta, Some(ImageBody::from_bytes(b"0123456789")))?;
    /// assert_eq!(image.size, 10);
    /// // From a pipe or any reader of unknown length: sent chunked.
    /// let image = glance.add_image(&meta, Some(ImageBody::chunked(std::io::stdin())))?;
    /// # Ok::<_, glance_rs::client::Error>(())
    /// ```
    pub fn add_image(&self, meta: &ImagePatch, data: Option<ImageBody<'_>>) -> Result<Image> {
        self.write_image("POST", &self.url("/images"), meta, data)
    }

    /// Changes an image (`PUT /images/<id>`) and, with `data`, uploads into it (only a
    /// `queued` image accepts data: else [`Error::Duplicate`], 409).
    ///
    /// Properties: with `meta.properties` set to `Some(set)`, the image's properties are
    /// replaced by exactly that set (an empty set removes them all), as every Glance v1 PUT
    /// did; with `None` they are left as they are (the client sends
    /// `x-glance-registry-purge-props: false`).
    ///
    /// ```no_run
    /// use glance_rs::image::ImagePatch;
    /// # let glance = glance_rs::client::Client::new("127.0.0.1", 9292);
    /// let public = ImagePatch { is_public: Some(true), ..ImagePatch::default() };
    /// let image = glance.update_image("3c2b5d5e-…", &public, None)?;
    /// assert!(image.is_public());
    /// # Ok::<_, glance_rs::client::Error>(())
    /// ```
    pub fn update_image(
        &self,
        id: &str,
        meta: &ImagePatch,
        data: Option<ImageBody<'_>>,
    ) -> Result<Image> {
        self.write_image("PUT", &self.image_url(id), meta, data)
    }

    fn write_image(
        &self,
        method: &str,
        url: &str,
        meta: &ImagePatch,
        data: Option<ImageBody<'_>>,
    ) -> Result<Image> {
        let mut req = self.request(method, url);
        for (k, v) in headers::patch_to_headers(meta)? {
            req = req.header(k, v);
        }
        if method == "PUT" && meta.properties.is_none() {
            req = req.header("x-glance-registry-purge-props", "false");
        }
        let reply = match data {
            None => self.send(req, None)?,
            Some(mut body) => {
                req = req
                    .header("Content-Type", "application/octet-stream")
                    // Lets the server refuse (409, 400 …) before the data is sent.
                    .header("Expect", "100-continue");
                if let Some(n) = body.size {
                    req = req.header("Content-Length", n.to_string());
                    if meta.size.is_none() {
                        req = req.header("x-image-meta-size", n.to_string());
                    }
                }
                let reader: &mut dyn Read = &mut *body.reader;
                self.send(req, Some(ureq::SendBody::from_reader(reader)))?
            }
        };
        let mut v = read_json(reply)?;
        image_from_json(
            v.get_mut("image")
                .map(Value::take)
                .as_ref()
                .unwrap_or(&Value::Null),
        )
    }

    /// Deletes an image and its data (`DELETE /images/<id>`).
    pub fn delete_image(&self, id: &str) -> Result<()> {
        self.send(self.request("DELETE", &self.image_url(id)), None)
            .map(drop)
    }

    /// Who an image is shared with (`GET /images/<id>/members`).
    pub fn get_image_members(&self, id: &str) -> Result<Vec<Member>> {
        let url = format!("{}/members", self.image_url(id));
        let mut v = read_json(self.send(self.request("GET", &url), None)?)?;
        serde_json::from_value(v.get_mut("members").map(Value::take).unwrap_or_default())
            .map_err(|e| Error::InvalidResponse(format!("member list: {e}")))
    }

    /// The images shared with `member` (`GET /shared-images/<member>`).
    pub fn get_member_images(&self, member: &str) -> Result<Vec<SharedImage>> {
        let url = self.url(&format!("/shared-images/{}", percent_encode(member)));
        let mut v = read_json(self.send(self.request("GET", &url), None)?)?;
        serde_json::from_value(
            v.get_mut("shared_images")
                .map(Value::take)
                .unwrap_or_default(),
        )
        .map_err(|e| Error::InvalidResponse(format!("shared image list: {e}")))
    }

    /// Shares an image with `member` (`PUT /images/<id>/members/<member>`). With
    /// `can_share` the member's right to share further is set; with `None` a new member
    /// gets `false` and an existing one keeps its flag. Needs a tenant (see [`Identity`]).
    ///
    /// ```no_run
    /// use glance_rs::client::{Client, Identity};
    ///
    /// let owner = Identity { tenant: Some("tenant-a".into()), ..Identity::default() };
    /// let glance = Client::new("127.0.0.1", 9292).with_identity(owner);
    /// glance.add_member("3c2b5d5e-…", "tenant-b", Some(false))?;
    /// # Ok::<_, glance_rs::client::Error>(())
    /// ```
    pub fn add_member(&self, id: &str, member: &str, can_share: Option<bool>) -> Result<()> {
        let url = self.member_url(id, member);
        let body = can_share.map(|c| json!({ "member": { "can_share": c } }));
        self.send_json("PUT", &url, body.as_ref()).map(drop)
    }

    /// Stops sharing an image with `member` (`DELETE /images/<id>/members/<member>`).
    pub fn delete_member(&self, id: &str, member: &str) -> Result<()> {
        self.send(self.request("DELETE", &self.member_url(id, member)), None)
            .map(drop)
    }

    /// Replaces the whole member list of an image (`PUT /images/<id>/members`): members not
    /// listed are removed; a listed member's `can_share` of `None` keeps an existing flag
    /// (new members get `false`).
    pub fn replace_members(&self, id: &str, members: &[MemberSpec]) -> Result<()> {
        let url = format!("{}/members", self.image_url(id));
        let body = MemberSpec::memberships_body(members);
        self.send_json("PUT", &url, Some(&body)).map(drop)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn image_url(&self, id: &str) -> String {
        self.url(&format!("/images/{}", percent_encode(id)))
    }

    fn member_url(&self, id: &str, member: &str) -> String {
        format!("{}/members/{}", self.image_url(id), percent_encode(member))
    }

    /// A request with the credential headers.
    fn request(&self, method: &str, url: &str) -> ureq::http::request::Builder {
        let mut b = Request::builder().method(method).uri(url);
        let token = match (&self.auth_token, &self.identity) {
            (Some(t), _) => Some(t.as_str()),
            (None, Some(_)) => Some("noauth"),
            (None, None) => None,
        };
        if let Some(t) = token {
            b = b.header("X-Auth-Token", t);
        }
        if let Some(id) = &self.identity {
            b = b.header("X-Identity-Status", "Confirmed");
            if let Some(t) = &id.tenant {
                b = b.header("X-Tenant", t);
            }
            if let Some(u) = &id.user {
                b = b.header("X-User", u);
            }
            if !id.roles.is_empty() {
                let roles = id.roles.join(",");
                b = b.header("X-Roles", &roles).header("X-Role", roles);
            }
        }
        b
    }

    fn send_json(&self, method: &str, url: &str, body: Option<&Value>) -> Result<Reply> {
        let mut req = self.request(method, url);
        let bytes = match body {
            Some(v) => {
                req = req.header("Content-Type", "application/json");
                v.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let req = req
            .body(bytes)
            .map_err(|e| Error::InvalidInput(format!("bad request: {e}")))?;
        self.check(self.agent.run(req))
    }

    /// Sends a request (with an optional streamed body) and turns error statuses into
    /// errors.
    fn send(
        &self,
        req: ureq::http::request::Builder,
        body: Option<ureq::SendBody<'_>>,
    ) -> Result<Reply> {
        let result = match body {
            Some(b) => {
                let req = req
                    .body(b)
                    .map_err(|e| Error::InvalidInput(format!("bad request: {e}")))?;
                self.agent.run(req)
            }
            // No body: `Content-Length: 0` (ureq would send an empty chunked body for
            // POST and PUT, which the server takes for an upload).
            None if req
                .method_ref()
                .is_some_and(|m| matches!(m.as_str(), "POST" | "PUT" | "DELETE")) =>
            {
                let req = req
                    .body(Vec::new())
                    .map_err(|e| Error::InvalidInput(format!("bad request: {e}")))?;
                self.agent.run(req)
            }
            None => {
                let req = req
                    .body(())
                    .map_err(|e| Error::InvalidInput(format!("bad request: {e}")))?;
                self.agent.run(req)
            }
        };
        self.check(result)
    }

    fn check(&self, result: std::result::Result<Reply, ureq::Error>) -> Result<Reply> {
        let mut reply = result.map_err(|e| Error::from_ureq(&self.addr, e))?;
        let status = reply.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(reply);
        }
        let text = reply
            .body_mut()
            .with_config()
            .limit(MAX_ERROR_REPLY)
            .lossy_utf8(true)
            .read_to_string()
            .unwrap_or_default();
        Err(Error::from_reply(status, &text))
    }
}

fn agent(timeout: Option<Duration>, ca: &CaBundle) -> Agent {
    Agent::config_builder()
        .tls_config(ca.tls_config())
        .http_status_as_error(false)
        // A streamed upload cannot be replayed, and the API never redirects.
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(timeout)
        .user_agent(format!("glance-rs/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn read_json(mut reply: Reply) -> Result<Value> {
    let text = reply
        .body_mut()
        .with_config()
        .limit(MAX_JSON_REPLY)
        .read_to_string()
        .map_err(|e| Error::Transport(format!("reading the reply: {e}")))?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text).map_err(|e| Error::InvalidResponse(format!("not JSON: {e}")))
}

fn image_from_json(v: &Value) -> Result<Image> {
    Image::from_json(v).map_err(|e| Error::InvalidResponse(e.message()))
}

fn image_of_reply(reply: &Reply) -> Result<Image> {
    let pairs: Vec<(&str, String)> = reply
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    headers::image_from_headers(pairs.iter().map(|(k, v)| (*k, v.as_str())))
}
