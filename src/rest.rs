//! The HTTP edge of the servers, between the crate's [`Error`] and our HTTP layer: errors
//! rendered as Glance's replies, JSON request bodies, error logging, and the detail line of
//! an error reply read by our clients. Keeping it here lets `http` know nothing of `Error`
//! and `error` nothing of HTTP messages.

use serde_json::Value;

use crate::error::{Error, LOCATION_BAD_ANSWER, LOCATION_TIMEOUT, LOCATION_UNUSABLE, Result};
use crate::http::{Request, Response, reason};

/// Largest JSON request body the registry accepts.
pub const MAX_JSON_BODY: u64 = 1024 * 1024;

/// Renders an error as a `text/plain` reply in WebOb's layout (status line, generic
/// sentence, detail), which Glance clients search for substrings.
pub fn error_response(e: Error) -> Response {
    let status = e.status();
    let body = format!(
        "{} {}\n\n{}\n\n {}\n",
        status,
        reason(status),
        generic_sentence(status),
        client_detail(&e)
    );
    with_error_headers(Response::text(status, body), &e)
}

/// Renders an error as the JSON document current Glance sends to clients that accept JSON
/// (images API v2): `{"message": …, "code": "403 Forbidden", "title": "Forbidden"}`, with
/// the same headers and the same hiding of internal details as [`error_response`].
pub fn json_error_response(e: Error) -> Response {
    let status = e.status();
    let body = serde_json::json!({
        "message": client_detail(&e),
        "code": format!("{status} {}", reason(status)),
        "title": reason(status),
    });
    with_error_headers(Response::json(status, &body), &e)
}

/// What a client is told of an error: its message, except internal details and what a
/// remote location said, which stay in the log.
fn client_detail(e: &Error) -> String {
    match e {
        Error::Db(_) | Error::Io(..) | Error::Internal(_) => {
            "The server has either erred or is incapable of performing the requested operation."
                .to_string()
        }
        Error::BadLocation(_) => LOCATION_UNUSABLE.to_string(),
        Error::BadGateway(_) => LOCATION_BAD_ANSWER.to_string(),
        Error::GatewayTimeout(_) => LOCATION_TIMEOUT.to_string(),
        _ => e.message(),
    }
}

/// `Allow` on a 405, `WWW-Authenticate` on a 401 that asks for a token.
fn with_error_headers(resp: Response, e: &Error) -> Response {
    match e {
        Error::MethodNotAllowed(allow) => resp.with_header("Allow", allow),
        Error::AuthRequired { uri, .. } => {
            resp.with_header("WWW-Authenticate", &www_authenticate(uri))
        }
        _ => resp,
    }
}

/// The `WWW-Authenticate` value keystonemiddleware sends: `Keystone uri="<uri>"` (quotes and
/// backslashes in the URI escaped).
pub fn www_authenticate(uri: &str) -> String {
    let escaped = uri.replace('\\', "\\\\").replace('"', "\\\"");
    format!("Keystone uri=\"{escaped}\"")
}

fn generic_sentence(status: u16) -> &'static str {
    match status {
        400 => {
            "The server could not comply with the request since it is either malformed or otherwise incorrect."
        }
        401 => {
            "This server could not verify that you are authorized to access the document you requested."
        }
        403 => "Access was denied to this resource.",
        404 => "The resource could not be found.",
        405 => "The method is not allowed for this resource.",
        409 => "There was a conflict when trying to complete your request.",
        413 => "The request is larger than the server is willing or able to process.",
        415 => "The request media type is not supported by this server.",
        502 => "The server received an invalid response from an upstream server.",
        504 => "The upstream server did not respond in time.",
        503 => "The server is currently unavailable. Please try again at a later time.",
        _ => "The server has either erred or is incapable of performing the requested operation.",
    }
}

/// Logs an error answer: 5xx at error level with context, 4xx at info.
pub fn log_error(e: &Error, req: &Request<'_>) {
    if e.status() >= 500 {
        log::error!("{} {}: {}", req.method, req.path, e.message());
    } else {
        log::info!(
            "{} {}: {} {}",
            req.method,
            req.path,
            e.status(),
            e.message()
        );
    }
}

/// Reads a JSON body of at most [`MAX_JSON_BODY`] bytes; `None` when there is no body.
pub fn read_json(req: &mut Request<'_>) -> Result<Option<Value>> {
    if !req.has_body() {
        return Ok(None);
    }
    if req.content_length().is_some_and(|n| n > MAX_JSON_BODY) {
        return Err(Error::TooLarge(format!(
            "Request body is larger than {MAX_JSON_BODY} bytes"
        )));
    }
    let bytes = req.read_body_limited(MAX_JSON_BODY).map_err(|e| {
        // Too large is FileTooLarge; InvalidData is malformed chunked framing, a 400.
        if e.kind() == std::io::ErrorKind::FileTooLarge {
            Error::TooLarge(format!("Request body is larger than {MAX_JSON_BODY} bytes"))
        } else {
            Error::bad_request(format!("Could not read the request body: {e}"))
        }
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    Ok(Some(serde_json::from_slice(&bytes)?))
}

/// The detail of a WebOb-style error page: its last non-empty line (or the whole text when
/// it is a single line); HTML tags are not interpreted, the server sends text/plain.
pub(crate) fn detail_line(body: &str) -> String {
    body.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
        .chars()
        .take(1000)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_required_carries_the_keystone_challenge() {
        let e = Error::AuthRequired {
            message: "Authentication required".into(),
            uri: "http://127.0.0.1:5000/v3".into(),
        };
        assert_eq!(e.status(), 401);
        let resp = error_response(e);
        assert_eq!(resp.status, 401);
        let h: Vec<_> = resp
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(h, ["Keystone uri=\"http://127.0.0.1:5000/v3\""]);
        assert_eq!(www_authenticate("a\"b"), "Keystone uri=\"a\\\"b\"");
    }
}
