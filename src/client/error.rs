//! The client's error type: what went wrong, by meaning, instead of raw HTTP statuses.
//!
//! The server's error replies are WebOb-style text pages whose last non-empty line is the
//! detail message (`Invalid disk format 'floppy' for image. …`); each status variant keeps
//! that line, so a caller can show it as it is.

use std::fmt;
use std::io;

/// Result alias of the client.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a [`Client`](super::Client) call can fail with.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// 404: the image (or route) does not exist or is not visible to the caller.
    NotFound(String),
    /// 409: an image with this id exists, a duplicate upload, or an upload into an image
    /// that is not `queued` any more.
    Duplicate(String),
    /// 400: the server refused what was sent; the message is the server's.
    BadRequest(String),
    /// 403: the caller may not do this (read-only access, upload refused by the store).
    Forbidden(String),
    /// 401: the server wants (other) credentials, or member changes without a tenant.
    Unauthorized(String),
    /// Any other error status (413, 500, 503 …) with the server's message.
    Status(u16, String),
    /// The server could not be reached: refused, unknown host, connect timeout.
    Connect {
        /// `host:port` that was tried.
        addr: String,
        /// What the transport said.
        reason: String,
    },
    /// The connection broke or timed out after it was established (mid-upload, mid-reply).
    Transport(String),
    /// Reading the local image data (or writing a download) failed.
    Io(io::Error),
    /// The server answered something this client cannot parse.
    InvalidResponse(String),
    /// The request cannot be built: a bad URL, a header value with control characters,
    /// a property name that is not a valid header token.
    InvalidInput(String),
    /// Logging in to Keystone failed: the settings (`OS_*`, clouds.yaml) are incomplete or
    /// invalid, Keystone refused the credentials, or its catalog has no image endpoint. The
    /// message says which and what to set; it never holds a password, secret or token.
    Login(String),
}

impl Error {
    /// The HTTP status behind this error, if it came from a reply.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::NotFound(_) => Some(404),
            Error::Duplicate(_) => Some(409),
            Error::BadRequest(_) => Some(400),
            Error::Forbidden(_) => Some(403),
            Error::Unauthorized(_) => Some(401),
            Error::Status(s, _) => Some(*s),
            _ => None,
        }
    }

    /// Whether this is a 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound(_))
    }

    /// Whether the server could not be reached at all.
    pub fn is_connect(&self) -> bool {
        matches!(self, Error::Connect { .. })
    }

    /// Builds the error of a non-2xx reply from its status and body text.
    pub fn from_reply(status: u16, body: &str) -> Error {
        let detail = crate::rest::detail_line(body);
        match status {
            400 => Error::BadRequest(detail),
            401 => Error::Unauthorized(detail),
            403 => Error::Forbidden(detail),
            404 => Error::NotFound(detail),
            409 => Error::Duplicate(detail),
            other => Error::Status(other, detail),
        }
    }

    /// Classifies a transport error of ureq; `addr` is the `host:port` being called.
    pub(crate) fn from_ureq(addr: &str, e: ureq::Error) -> Error {
        use ureq::Timeout;
        let connect = |reason: String| Error::Connect {
            addr: addr.to_string(),
            reason,
        };
        match e {
            ureq::Error::HostNotFound => connect("host not found".into()),
            ureq::Error::ConnectionFailed => connect("connection failed".into()),
            ureq::Error::Timeout(t @ (Timeout::Resolve | Timeout::Connect)) => {
                connect(format!("timeout: {t}"))
            }
            ureq::Error::Io(io)
                if matches!(
                    io.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::AddrNotAvailable
                        | io::ErrorKind::HostUnreachable
                        | io::ErrorKind::NetworkUnreachable
                ) =>
            {
                connect(io.to_string())
            }
            ureq::Error::BadUri(u) => Error::InvalidInput(format!("bad URL: {u}")),
            ureq::Error::Http(h) => Error::InvalidInput(format!("bad request: {h}")),
            other => Error::Transport(other.to_string()),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let with_status = |f: &mut fmt::Formatter<'_>, status: u16, m: &str| {
            if m.is_empty() {
                write!(f, "http status {status}")
            } else {
                f.write_str(m)
            }
        };
        match self {
            Error::NotFound(m) => with_status(f, 404, m),
            Error::Duplicate(m) => with_status(f, 409, m),
            Error::BadRequest(m) => with_status(f, 400, m),
            Error::Forbidden(m) => with_status(f, 403, m),
            Error::Unauthorized(m) => with_status(f, 401, m),
            Error::Status(s, m) if m.is_empty() => write!(f, "http status {s}"),
            Error::Status(s, m) => write!(f, "http status {s}: {m}"),
            Error::Connect { addr, reason } => write!(f, "cannot connect to {addr}: {reason}"),
            Error::Transport(m) => write!(f, "connection error: {m}"),
            Error::Io(e) => write!(f, "io: {e}"),
            Error::InvalidResponse(m) => write!(f, "invalid response: {m}"),
            Error::InvalidInput(m) | Error::Login(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_statuses_map_to_variants() {
        let page = "400 Bad Request\n\nThe server could not comply.\n\n Invalid disk format 'x' for image.\n";
        let e = Error::from_reply(400, page);
        assert!(matches!(&e, Error::BadRequest(m) if m == "Invalid disk format 'x' for image."));
        assert_eq!(e.to_string(), "Invalid disk format 'x' for image.");
        assert!(Error::from_reply(404, "").is_not_found());
        assert_eq!(Error::from_reply(404, "").to_string(), "http status 404");
        assert!(matches!(Error::from_reply(409, "dup"), Error::Duplicate(_)));
        assert!(matches!(
            Error::from_reply(401, "x"),
            Error::Unauthorized(_)
        ));
        assert!(matches!(Error::from_reply(403, "x"), Error::Forbidden(_)));
        let e = Error::from_reply(503, "down");
        assert_eq!(e.status(), Some(503));
        assert_eq!(e.to_string(), "http status 503: down");
    }

    #[test]
    fn refused_connection_is_connect() {
        let e = Error::from_ureq(
            "127.0.0.1:1",
            ureq::Error::Io(io::Error::from(io::ErrorKind::ConnectionRefused)),
        );
        assert!(e.is_connect());
        assert!(e.to_string().starts_with("cannot connect to 127.0.0.1:1"));
        let e = Error::from_ureq("h:1", ureq::Error::HostNotFound);
        assert!(e.is_connect());
        let e = Error::from_ureq(
            "h:1",
            ureq::Error::Io(io::Error::from(io::ErrorKind::BrokenPipe)),
        );
        assert!(matches!(e, Error::Transport(_)));
    }
}
