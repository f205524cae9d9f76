//! Client-supplied S3 endpoints: a small SigV4 client over the location policy's agent.
//!
//! rust-s3 talks only to the operator's `s3_store_host`: its blocking backend reads whole
//! responses without a limit, follows redirects and waits up to an hour, which is fine for a
//! trusted endpoint and not for one a client chose. A location naming another endpoint is
//! served here instead, with three requests (`GET` streamed, `HEAD`, `DELETE`), path-style
//! addressing and AWS Signature Version 4 (HMAC-SHA256 from OpenSSL) over
//! [`netguard::guarded_agent`]: forbidden addresses refused after resolution, no redirects,
//! bounded waits and bodies. Failures are 400/502/504 with fixed texts for the client; what
//! the endpoint said goes to the log.

use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::Signer;

use super::{Target, s3_code};
use crate::error::{Error, Result};
use crate::store::ImageData;
use crate::store::netguard::{self, CappedReader};

/// SHA-256 of the empty body, the payload hash of every request made here.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

type Response = ureq::http::Response<ureq::Body>;

/// The client for endpoints other than `s3_store_host`.
pub(super) struct RemoteS3 {
    agent: ureq::Agent,
    region: String,
    size_cap: u64,
}

impl RemoteS3 {
    /// A client signing for `region` (`s3_store_region_name`) over the guarded `agent`.
    pub(super) fn new(agent: ureq::Agent, region: &str, size_cap: u64) -> RemoteS3 {
        let region = if region.is_empty() {
            "us-east-1"
        } else {
            region
        };
        RemoteS3 {
            agent,
            region: region.to_string(),
            size_cap,
        }
    }

    /// Streams the object (at most `image_size_cap` bytes).
    pub(super) fn get(&self, t: &Target, key: &str) -> Result<ImageData> {
        let what = format!("GET {}/{}/{key}", t.endpoint, t.bucket);
        let resp = self.send("GET", t, key, &what)?;
        let len = content_length(&resp);
        if let Some(n) = len
            && n > self.size_cap
        {
            return Err(Error::BadGateway(format!(
                "{what}: Content-Length {n} exceeds image_size_cap"
            )));
        }
        let reader = CappedReader::new(resp.into_body().into_reader(), self.size_cap);
        Ok(ImageData::Stream(Box::new(reader), len))
    }

    /// The object's size (`Content-Length` of a `HEAD`).
    pub(super) fn size(&self, t: &Target, key: &str) -> Result<u64> {
        let what = format!("HEAD {}/{}/{key}", t.endpoint, t.bucket);
        let resp = self.send("HEAD", t, key, &what)?;
        content_length(&resp)
            .ok_or_else(|| Error::BadGateway(format!("{what}: no Content-Length in the reply")))
    }

    /// Deletes the object (404 when it is not there: S3 answers 204 either way, so it is
    /// looked at first).
    pub(super) fn delete(&self, t: &Target, key: &str) -> Result<()> {
        self.size(t, key)?;
        let what = format!("DELETE {}/{}/{key}", t.endpoint, t.bucket);
        let mut resp = self.send("DELETE", t, key, &what)?;
        netguard::drain(&mut resp);
        Ok(())
    }

    /// Sends one signed request without a body; a 2xx comes back, 404 is
    /// [`Error::NotFound`], anything else (3xx included) a 502 whose detail (the S3 error
    /// code and message, bounded) is for the log only.
    fn send(&self, method: &str, t: &Target, key: &str, what: &str) -> Result<Response> {
        let endpoint: ureq::http::Uri = t
            .endpoint
            .parse()
            .map_err(|e| netguard::location_error(format!("{what}: bad endpoint: {e}")))?;
        let (Some(scheme), Some(authority)) = (endpoint.scheme_str(), endpoint.authority()) else {
            return Err(netguard::location_error(format!("{what}: bad endpoint")));
        };
        let base_path = endpoint.path().trim_end_matches('/');
        let path = format!(
            "{base_path}/{}/{}",
            uri_encode(&t.bucket, false),
            uri_encode(key, true)
        );
        let host = authority.as_str();
        let amz_date = amz_date(std::time::SystemTime::now());
        let authorization = authorization(
            &SigningInput {
                method,
                path: &path,
                host,
                amz_date: &amz_date,
                region: &self.region,
            },
            &t.access,
            &t.secret,
        )
        .map_err(|e| Error::Internal(format!("signing an S3 request: {e}")))?;
        let req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{scheme}://{host}{path}"))
            .header("Host", host)
            .header("x-amz-date", &amz_date)
            .header("x-amz-content-sha256", EMPTY_SHA256)
            .header("Authorization", authorization)
            .body(())
            .map_err(|e| netguard::location_error(format!("{what}: {e}")))?;
        let mut resp = self
            .agent
            .run(req)
            .map_err(|e| netguard::transport_error(what, &e))?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(resp),
            404 => {
                netguard::drain(&mut resp);
                Err(Error::NotFound(format!(
                    "Image data {}/{key} not found in the s3 store",
                    t.bucket
                )))
            }
            _ => {
                let detail = match netguard::read_small(&mut resp, 4096) {
                    Ok(Some(body)) => {
                        let (code, message) = s3_code(&String::from_utf8_lossy(&body));
                        format!(" {code} {message}")
                    }
                    Ok(None) => " <long body>".to_string(),
                    Err(e) => format!(" <unreadable body: {e}>"),
                };
                Err(Error::BadGateway(format!(
                    "{what}: answered {status}{detail}"
                )))
            }
        }
    }
}

fn content_length(resp: &Response) -> Option<u64> {
    resp.headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// S3's URI encoding: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX` (upper-case hex), and
/// `/` too unless `keep_slash` (object keys keep theirs).
fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` (UTC), the form of `x-amz-date`.
fn amz_date(t: std::time::SystemTime) -> String {
    // format_stored: `YYYY-MM-DDTHH:MM:SS.ffffff`.
    let stored = crate::timeutil::format_stored(t);
    let mut out: String = stored
        .chars()
        .take(19)
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    out.push('Z');
    out
}

/// What a request's signature covers (besides its fixed headers and empty payload).
struct SigningInput<'a> {
    method: &'a str,
    /// The encoded path, as sent.
    path: &'a str,
    /// The `Host` header, as sent.
    host: &'a str,
    amz_date: &'a str,
    region: &'a str,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac(key: &[u8], data: &[u8]) -> std::result::Result<Vec<u8>, openssl::error::ErrorStack> {
    let pkey = PKey::hmac(key)?;
    let mut signer = Signer::new(MessageDigest::sha256(), &pkey)?;
    signer.update(data)?;
    signer.sign_to_vec()
}

/// The SigV4 signature of a request with the given canonical headers (lower-case names,
/// sorted) and payload hash.
fn signature(
    input: &SigningInput<'_>,
    headers: &[(&str, &str)],
    payload_hash: &str,
    secret: &str,
) -> std::result::Result<String, openssl::error::ErrorStack> {
    let canonical_headers: String = headers
        .iter()
        .map(|(n, v)| format!("{n}:{}\n", v.trim()))
        .collect();
    let signed_headers = signed_headers(headers);
    let canonical_request = format!(
        "{}\n{}\n\n{canonical_headers}\n{signed_headers}\n{payload_hash}",
        input.method, input.path
    );
    let date = &input.amz_date[..input.amz_date.len().min(8)];
    let scope = format!("{date}/{}/s3/aws4_request", input.region);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        input.amz_date,
        hex(&openssl::sha::sha256(canonical_request.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes())?;
    for part in [input.region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes())?;
    }
    Ok(hex(&hmac(&key, string_to_sign.as_bytes())?))
}

fn signed_headers(headers: &[(&str, &str)]) -> String {
    headers
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(";")
}

/// The `Authorization` header of a body-less request signed with `host`,
/// `x-amz-content-sha256` and `x-amz-date`.
fn authorization(
    input: &SigningInput<'_>,
    access: &str,
    secret: &str,
) -> std::result::Result<String, openssl::error::ErrorStack> {
    let headers = [
        ("host", input.host),
        ("x-amz-content-sha256", EMPTY_SHA256),
        ("x-amz-date", input.amz_date),
    ];
    let sig = signature(input, &headers, EMPTY_SHA256, secret)?;
    let date = &input.amz_date[..input.amz_date.len().min(8)];
    Ok(format!(
        "AWS4-HMAC-SHA256 Credential={access}/{date}/{}/s3/aws4_request, SignedHeaders={}, \
         Signature={sig}",
        input.region,
        signed_headers(&headers)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GET Object example of AWS's "Signature Calculations for the Authorization
    /// Header" page (a known answer).
    #[test]
    fn signature_matches_the_aws_example() {
        let input = SigningInput {
            method: "GET",
            path: "/test.txt",
            host: "examplebucket.s3.amazonaws.com",
            amz_date: "20130524T000000Z",
            region: "us-east-1",
        };
        let headers = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ];
        let sig = signature(
            &input,
            &headers,
            EMPTY_SHA256,
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .expect("sign");
        assert_eq!(
            sig,
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn encoding_and_dates() {
        assert_eq!(uri_encode("a b/c~d%", true), "a%20b/c~d%25");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_369_353_600);
        assert_eq!(amz_date(t), "20130524T000000Z");
    }
}
