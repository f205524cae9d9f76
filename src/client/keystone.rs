//! Logging in to Keystone (identity API v3) to call the images API: a token, and the image
//! endpoint from the token's service catalog.
//!
//! [`login`] sends `POST {auth_url}/v3/auth/tokens` with the password or the application
//! credential of [`Credentials`], scoped to their project (application credentials are
//! scoped already). The token comes back in `X-Subject-Token`, the catalog in the body; a
//! [`Session`] keeps both, so one login serves a whole command.
//!
//! ```no_run
//! use glance_rs::client::credentials::Credentials;
//! use glance_rs::client::{Client, Filters, Sort, keystone};
//!
//! let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
//! let Some(creds) = Credentials::discover(&[], &env)? else {
//!     return Ok(()); // no OS_* credentials, no OS_CLOUD: nothing to log in with
//! };
//! let session = keystone::login(&creds)?;
//! let glance = Client::from_url(&session.image_url()?, Some(session.token()))?;
//! println!("{} images", glance.get_images(&Filters::new(), &Sort::default(), None, None)?.len());
//! # Ok::<_, glance_rs::client::Error>(())
//! ```

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use super::credentials::{Credentials, Interface, Method, Named, Ref};
use super::error::{Error, Result};
use super::tls::CaBundle;
use crate::config::Secret;

/// Largest token reply read (a catalog of a big cloud is a few hundred KiB).
const MAX_REPLY: u64 = 16 * 1024 * 1024;

/// The service type of Glance in catalogs.
pub const IMAGE_SERVICE: &str = "image";

/// One endpoint of the service catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The service type (`image`, `identity` …).
    pub service_type: String,
    /// `public`, `internal` or `admin`.
    pub interface: String,
    /// The region (`region_id`, else `region`), if any.
    pub region: Option<String>,
    /// The URL, as registered.
    pub url: String,
}

/// A token and its catalog.
#[derive(Clone)]
pub struct Session {
    token: Secret,
    catalog: Vec<Endpoint>,
    interface: Interface,
    region: Option<String>,
    scoped: bool,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("token", &self.token)
            .field("catalog", &self.catalog)
            .field("interface", &self.interface)
            .field("region", &self.region)
            .finish()
    }
}

impl Session {
    /// The token, to send as `X-Auth-Token`.
    pub fn token(&self) -> &str {
        self.token.expose()
    }

    /// The service catalog of the token.
    pub fn catalog(&self) -> &[Endpoint] {
        &self.catalog
    }

    /// The root of the image API: the catalog's image endpoint for the interface and region
    /// of the credentials, without a trailing version (`http://glance:9292/v2` gives
    /// `http://glance:9292`), with its port written out (80 or 443 when the catalog has
    /// none), ready for [`Client::from_url`](super::Client::from_url), which adds `/v1`.
    pub fn image_url(&self) -> Result<String> {
        if self.catalog.is_empty() && !self.scoped {
            return Err(Error::Login(
                "the token has no service catalog: it is not scoped to a project; set \
                 OS_PROJECT_NAME or OS_PROJECT_ID (or OS_IMAGE_URL)"
                    .into(),
            ));
        }
        let e = select_endpoint(
            &self.catalog,
            IMAGE_SERVICE,
            self.interface,
            self.region.as_deref(),
        )?;
        Ok(explicit_port(&api_root(&e.url)))
    }
}

/// Logs in with `creds`: one `POST /v3/auth/tokens`.
pub fn login(creds: &Credentials) -> Result<Session> {
    let url = tokens_url(&creds.auth_url)?;
    let ca = match &creds.cacert {
        Some(path) => CaBundle::from_pem_file(path)?,
        None => CaBundle::system(),
    };
    let request = ureq::http::Request::builder()
        .method("POST")
        .uri(&url)
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(auth_body(creds).to_string().into_bytes())
        .map_err(|e| Error::Login(format!("OS_AUTH_URL '{}': {e}", creds.auth_url)))?;
    let reply = agent(&ca)
        .run(request)
        .map_err(|e| Error::from_ureq(&authority(&url), e))?;
    let (token, body) = issued(reply, &url)?;
    Ok(Session {
        token: Secret::new(token),
        catalog: parse_catalog(&body),
        interface: creds.interface,
        region: creds.region.clone(),
        scoped: body["token"].get("project").is_some(),
    })
}

/// An agent for Keystone: no redirects (a POST is not replayed), bounded waits.
fn agent(ca: &CaBundle) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_global(Some(Duration::from_secs(120)))
        .tls_config(ca.tls_config())
        .user_agent(format!("glance-rs/{}", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The token (`X-Subject-Token`) and the JSON body of a token reply, or why there are none.
fn issued(mut reply: ureq::http::Response<ureq::Body>, url: &str) -> Result<(String, Value)> {
    let status = reply.status().as_u16();
    let token = reply
        .headers()
        .get("x-subject-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|t| !t.is_empty());
    let text = reply
        .body_mut()
        .with_config()
        .limit(MAX_REPLY)
        .lossy_utf8(true)
        .read_to_string()
        .map_err(|e| Error::Transport(format!("reading Keystone's reply: {e}")))?;
    if !(200..300).contains(&status) {
        return Err(refusal(status, url, &text));
    }
    let token = token.ok_or_else(|| {
        Error::InvalidResponse(format!("Keystone at {url} issued no X-Subject-Token"))
    })?;
    let body = serde_json::from_str(&text)
        .map_err(|e| Error::InvalidResponse(format!("Keystone's token reply: {e}")))?;
    Ok((token, body))
}

/// The error of a refused login: Keystone's own message (`error.message` of its JSON).
fn refusal(status: u16, url: &str, text: &str) -> Error {
    let message = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| crate::rest::detail_line(text));
    match status {
        401 => Error::Login(format!("Keystone refused the credentials (401): {message}")),
        404 => Error::Login(format!(
            "Keystone at {url} answered 404 (is OS_AUTH_URL right?): {message}"
        )),
        _ => Error::Login(format!("Keystone at {url} answered {status}: {message}")),
    }
}

/// `host:port` of a URL, for connection errors.
fn authority(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?']).next().unwrap_or(rest).to_string()
}

/// The token URL of a Keystone URL: `/v3` is added to an unversioned URL (as keystoneauth
/// finds it from a bare endpoint) and replaces a `/v2.0` one (v2 is gone from Keystone).
///
/// ```
/// use glance_rs::client::keystone::tokens_url;
///
/// assert_eq!(tokens_url("http://ks:5000")?, "http://ks:5000/v3/auth/tokens");
/// assert_eq!(tokens_url("https://ks/identity/v3/")?, "https://ks/identity/v3/auth/tokens");
/// assert_eq!(tokens_url("http://ks:5000/v2.0")?, "http://ks:5000/v3/auth/tokens");
/// assert!(tokens_url("ks:5000").is_err());
/// # Ok::<_, glance_rs::client::Error>(())
/// ```
pub fn tokens_url(auth_url: &str) -> Result<String> {
    let lower = auth_url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(Error::Login(format!(
            "OS_AUTH_URL '{auth_url}' is not an http(s) URL"
        )));
    }
    let (root, path) = split_url(auth_url);
    let path = path.trim_end_matches('/');
    let (head, last) = path.rsplit_once('/').unwrap_or(("", ""));
    let base = match version_of(last) {
        Some(v) if v == "3" || v.starts_with("3.") => format!("{root}{path}"),
        Some(_) => format!("{root}{head}/v3"),
        None => format!("{root}{path}/v3"),
    };
    Ok(format!("{base}/auth/tokens"))
}

/// `Some("2.0")` for a path segment `v2.0`; `None` when it is no version.
fn version_of(segment: &str) -> Option<&str> {
    let v = segment.strip_prefix(['v', 'V'])?;
    let ok = v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars().all(|c| c.is_ascii_digit() || c == '.');
    ok.then_some(v)
}

/// The API root of a catalog URL: without a trailing version segment or slash.
///
/// ```
/// use glance_rs::client::keystone::api_root;
///
/// assert_eq!(api_root("http://g:9292/v2/"), "http://g:9292");
/// assert_eq!(api_root("https://cloud/image/v1"), "https://cloud/image");
/// assert_eq!(api_root("https://cloud/image"), "https://cloud/image");
/// ```
pub fn api_root(url: &str) -> String {
    let (root, path) = split_url(url);
    let path = path.trim_end_matches('/');
    match path.rsplit_once('/') {
        Some((head, last)) if version_of(last).is_some() => format!("{root}{head}"),
        _ => format!("{root}{path}"),
    }
}

/// `("http://host:port", "/path?query")`: the path starts at the first `/` after `://`.
fn split_url(url: &str) -> (&str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    url.split_at(end)
}

/// The URL with its port written out: 80 for `http`, 443 for `https` when it has none
/// ([`Client::from_url`](super::Client::from_url) would take 9292 for `http`).
///
/// ```
/// use glance_rs::client::keystone::explicit_port;
///
/// assert_eq!(explicit_port("http://cloud/image"), "http://cloud:80/image");
/// assert_eq!(explicit_port("https://[::1]"), "https://[::1]:443");
/// assert_eq!(explicit_port("http://g:9292"), "http://g:9292");
/// ```
pub fn explicit_port(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let port = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return url.to_string(),
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (host, path) = rest.split_at(end);
    let has_port = host.rsplit_once(':').is_some_and(|(_, p)| !p.contains(']'));
    if has_port {
        url.to_string()
    } else {
        format!("{scheme}://{host}:{port}{path}")
    }
}

/// The JSON of the token request.
pub fn auth_body(creds: &Credentials) -> Value {
    let identity = match &creds.method {
        Method::Password { user, password } => {
            let mut u = ref_json(user);
            u["password"] = json!(password.expose());
            json!({"methods": ["password"], "password": {"user": u}})
        }
        Method::ApplicationCredential {
            credential,
            user,
            secret,
        } => {
            let mut c = match credential {
                Named::Id(id) => json!({"id": id}),
                Named::Name(name) => json!({"name": name}),
            };
            if let (Named::Name(_), Some(u)) = (credential, user) {
                c["user"] = ref_json(u);
            }
            c["secret"] = json!(secret.expose());
            json!({"methods": ["application_credential"], "application_credential": c})
        }
    };
    let mut auth = json!({"identity": identity});
    if let Some(p) = &creds.project {
        auth["scope"] = json!({"project": ref_json(p)});
    }
    json!({"auth": auth})
}

/// `{"id": …}`, or `{"name": …, "domain": {"id"|"name": …}}`.
fn ref_json(r: &Ref) -> Value {
    match &r.named {
        Named::Id(id) => json!({"id": id}),
        Named::Name(name) => {
            let domain = match &r.domain {
                Named::Id(id) => json!({"id": id}),
                Named::Name(name) => json!({"name": name}),
            };
            json!({"name": name, "domain": domain})
        }
    }
}

/// The endpoints of `token.catalog` (entries without a type or URL are skipped).
pub fn parse_catalog(body: &Value) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for service in body["token"]["catalog"].as_array().into_iter().flatten() {
        let Some(service_type) = service["type"].as_str() else {
            continue;
        };
        for e in service["endpoints"].as_array().into_iter().flatten() {
            let (Some(interface), Some(url)) = (e["interface"].as_str(), e["url"].as_str()) else {
                continue;
            };
            let region = e["region_id"]
                .as_str()
                .or_else(|| e["region"].as_str())
                .map(str::to_string);
            out.push(Endpoint {
                service_type: service_type.to_string(),
                interface: interface.to_string(),
                region,
                url: url.to_string(),
            });
        }
    }
    out
}

/// The first endpoint of `service_type` with `interface`, in `region` when one is given.
/// The error names what was asked for and lists what the catalog has.
pub fn select_endpoint<'a>(
    catalog: &'a [Endpoint],
    service_type: &str,
    interface: Interface,
    region: Option<&str>,
) -> Result<&'a Endpoint> {
    let of_type: Vec<&Endpoint> = catalog
        .iter()
        .filter(|e| e.service_type == service_type)
        .collect();
    let found = of_type.iter().find(|e| {
        e.interface == interface.as_str() && region.is_none_or(|r| e.region.as_deref() == Some(r))
    });
    if let Some(e) = found {
        return Ok(e);
    }
    let wanted = match region {
        Some(r) => format!("interface {} in region {r}", interface.as_str()),
        None => format!("interface {}", interface.as_str()),
    };
    if of_type.is_empty() {
        return Err(Error::Login(format!(
            "the service catalog has no {service_type} service (wanted {wanted}): set \
             OS_IMAGE_URL or use -H and -p"
        )));
    }
    let have: Vec<String> = of_type
        .iter()
        .map(|e| {
            format!(
                "{} in {}",
                e.interface,
                e.region.as_deref().unwrap_or("no region")
            )
        })
        .collect();
    Err(Error::Login(format!(
        "the service catalog has no {service_type} endpoint with {wanted} (it has: {}): set \
         OS_REGION_NAME or OS_INTERFACE, or OS_IMAGE_URL",
        have.join(", ")
    )))
}

#[cfg(test)]
mod tests;
