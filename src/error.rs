//! The crate's one error type.
//!
//! Variants are named by meaning, not by source, so that the HTTP edge can map each to a
//! status code (`status()`) and a short text body (`into_response()`), the way Glance turned
//! its `exception.*` classes into `webob.exc.HTTP*` replies. Messages name the field or the
//! object concerned and never contain credentials or full store URIs.

use std::fmt;
use std::io;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while serving a request or running a tool.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The named object does not exist or is not visible to the caller (404).
    NotFound(String),
    /// The object already exists (409), e.g. a duplicate image id.
    Duplicate(String),
    /// The request conflicts with the object's state (409), e.g. upload to an unqueued image.
    Conflict(String),
    /// The caller may not do this (403).
    Forbidden(String),
    /// The caller is not authenticated (401).
    Unauthorized(String),
    /// The caller must authenticate with Keystone first (401 with
    /// `WWW-Authenticate: Keystone uri="<uri>"`): no token, or an invalid or expired one.
    AuthRequired {
        /// What was wrong, for the client (never the token).
        message: String,
        /// The public Identity endpoint clients should get a token from.
        uri: String,
    },
    /// Something the client sent is invalid (400). The message names the field.
    BadRequest(String),
    /// Uploaded image data was refused by the format inspection (400): unsafe (a backing
    /// file, an extent naming another file...), malformed, or not its declared disk_format.
    ImageRefused(String),
    /// The body is larger than allowed (413).
    TooLarge(String),
    /// 415: the body's media type is not one the route takes.
    UnsupportedMediaType(String),
    /// The method is not allowed on this resource (405).
    MethodNotAllowed(String),
    /// A service this one depends on cannot be reached (503).
    Unavailable(String),
    /// An image store failed (500); the message never contains the location's credentials.
    Store(String),
    /// A location a client supplied cannot be used (400 with a fixed text: refused by the
    /// location policy, unreachable or unusable when registered). The message is the
    /// detail for the log only: it could turn the reply into a port scanner.
    BadLocation(String),
    /// A client-supplied location answered badly (502 with a fixed text; detail in the log).
    BadGateway(String),
    /// A client-supplied location did not answer in time (504 with a fixed text; detail in
    /// the log).
    GatewayTimeout(String),
    /// The registry database failed (500).
    Db(String),
    /// Configuration is missing or invalid (fatal at start-up).
    Config(String),
    /// An I/O error, with what was being done.
    Io(String, io::Error),
    /// Anything else that is the server's fault (500).
    Internal(String),
}

impl Error {
    /// Shorthand for a 400 with a message.
    pub fn bad_request(msg: impl Into<String>) -> Error {
        Error::BadRequest(msg.into())
    }

    /// Shorthand for a 404 with a message.
    pub fn not_found(msg: impl Into<String>) -> Error {
        Error::NotFound(msg.into())
    }

    /// Wraps an I/O error with what was being done when it happened.
    pub fn io(context: impl Into<String>, err: io::Error) -> Error {
        Error::Io(context.into(), err)
    }

    /// The HTTP status code this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Error::NotFound(_) => 404,
            Error::Duplicate(_) | Error::Conflict(_) => 409,
            Error::Forbidden(_) => 403,
            Error::Unauthorized(_) | Error::AuthRequired { .. } => 401,
            Error::BadRequest(_) | Error::BadLocation(_) | Error::ImageRefused(_) => 400,
            Error::TooLarge(_) => 413,
            Error::UnsupportedMediaType(_) => 415,
            Error::MethodNotAllowed(_) => 405,
            Error::Unavailable(_) => 503,
            Error::BadGateway(_) => 502,
            Error::GatewayTimeout(_) => 504,
            Error::Store(_)
            | Error::Db(_)
            | Error::Config(_)
            | Error::Io(..)
            | Error::Internal(_) => 500,
        }
    }

    /// The message without the category prefix, as sent to clients.
    pub fn message(&self) -> String {
        match self {
            Error::NotFound(m)
            | Error::Duplicate(m)
            | Error::Conflict(m)
            | Error::Forbidden(m)
            | Error::Unauthorized(m)
            | Error::BadRequest(m)
            | Error::ImageRefused(m)
            | Error::TooLarge(m)
            | Error::UnsupportedMediaType(m)
            | Error::MethodNotAllowed(m)
            | Error::Unavailable(m)
            | Error::Store(m)
            | Error::BadLocation(m)
            | Error::BadGateway(m)
            | Error::GatewayTimeout(m)
            | Error::Db(m)
            | Error::Config(m)
            | Error::Internal(m) => m.clone(),
            Error::AuthRequired { message, .. } => message.clone(),
            Error::Io(ctx, e) => format!("{ctx}: {e}"),
        }
    }
}

/// The client's text for [`Error::BadLocation`].
pub const LOCATION_UNUSABLE: &str = "The image location could not be used";
/// The client's text for [`Error::BadGateway`].
pub const LOCATION_BAD_ANSWER: &str =
    "The image location answered with an error or an invalid reply";
/// The client's text for [`Error::GatewayTimeout`].
pub const LOCATION_TIMEOUT: &str = "The image location did not answer in time";

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(_, e) => Some(e),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Error {
        Error::Db(e.to_string())
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Error {
        Error::BadRequest(format!("Malformed JSON in request body: {e}"))
    }
}
