//! Property-based tests of location parsing and redaction, through the public paths
//! `crate::store::{Location, redact_uri}` only.

use crate::props::{assert_client_error, edits, mutate, nasty_bytes, props};
use crate::store::{Location, redact_uri};
use proptest::prelude::*;

/// Host names, ports and path segments are lower case: secrets (below) always hold an
/// upper-case `ZQ`, so a redacted form containing the secret can only have leaked it.
fn host() -> impl Strategy<Value = String> {
    let name = prop_oneof![
        "[a-z0-9]{1,10}(\\.[a-z0-9-]{1,8}){0,2}",
        Just("[::1]".to_string()),
        Just("127.0.0.1".to_string()),
    ];
    (name, proptest::option::of(any::<u16>())).prop_map(|(h, port)| match port {
        Some(p) => format!("{h}:{p}"),
        None => h,
    })
}

fn segment() -> impl Strategy<Value = String> {
    "[a-z0-9._~-]{1,10}"
}

fn user() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{1,10}"
}

/// A secret over `alphabet`, marked with `ZQ`.
fn secret(alphabet: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(
        proptest::sample::select(alphabet.as_bytes().to_vec()),
        0..12,
    )
    .prop_map(|tail| format!("ZQ{}", String::from_utf8_lossy(&tail)))
}

/// Secret characters each scheme can carry as written (Glance's rules: an HTTP password
/// ends at `/`, `?`, `#`; a Swift key cannot hold `:`; none may hold `@`).
const HTTP_SECRET: &str = "abcxyzABC0123456789-._~!$&'()*+,;=%:";
const SWIFT_SECRET: &str = "abcxyzABC0123456789-._~!$&'()*+,;=%/?";
const S3_SECRET: &str = "abcxyzABC0123456789-._~!$&'()*+,;=%/?:";

/// A well-formed location URI and the secret it embeds (if any).
fn location() -> impl Strategy<Value = (String, Option<String>)> {
    let path = || proptest::collection::vec(segment(), 0..4).prop_map(|s| s.join("/"));
    let file = (prop_oneof![Just("file"), Just("filesystem")], path())
        .prop_map(|(scheme, p)| (format!("{scheme}:///{p}"), None));
    let http = (
        prop_oneof![Just("http"), Just("HTTPS"), Just("https")],
        proptest::option::of((user(), secret(HTTP_SECRET))),
        host(),
        path(),
        proptest::option::of("[a-z_]{1,8}=[a-z0-9]{0,8}(&[a-z_]{1,8}=[a-z0-9]{0,8}){0,2}"),
    )
        .prop_map(|(scheme, creds, host, p, query)| {
            let userinfo = creds
                .as_ref()
                .map_or(String::new(), |(u, s)| format!("{u}:{s}@"));
            let query = query.map_or(String::new(), |q| format!("?{q}"));
            (
                format!("{scheme}://{userinfo}{host}/{p}{query}"),
                creds.map(|(_, s)| s),
            )
        });
    let swift = (
        prop_oneof![Just("swift"), Just("swift+http"), Just("swift+https")],
        proptest::option::of(user()),
        user(),
        secret(SWIFT_SECRET),
        host(),
        proptest::collection::vec(segment(), 0..3),
        segment(),
        segment(),
    )
        .prop_map(
            |(scheme, account, user, key, host, auth_path, container, object)| {
                let account = account.map_or(String::new(), |a| format!("{a}:"));
                let auth_path: String = auth_path.iter().map(|s| format!("/{s}")).collect();
                (
                    format!(
                        "{scheme}://{account}{user}:{key}@{host}{auth_path}/{container}/{object}"
                    ),
                    Some(key),
                )
            },
        );
    let s3 = (
        prop_oneof![Just("s3"), Just("s3+http"), Just("s3+https")],
        proptest::option::of((
            user(),
            // Glance refuses any s3 URI with two '://', so a secret cannot hold one.
            secret(S3_SECRET).prop_filter("no :// in an s3 secret", |s| !s.contains("://")),
        )),
        host(),
        proptest::collection::vec(segment(), 0..2),
        segment(),
        segment(),
    )
        .prop_map(|(scheme, creds, host, service_path, bucket, key)| {
            let userinfo = creds
                .as_ref()
                .map_or(String::new(), |(u, s)| format!("{u}:{s}@"));
            let service_path: String = service_path.iter().map(|s| format!("/{s}")).collect();
            (
                format!("{scheme}://{userinfo}{host}{service_path}/{bucket}/{key}"),
                creds.map(|(_, s)| s),
            )
        });
    prop_oneof![file, http, swift, s3]
}

/// The redacted form of anything: no control characters, bounded, and (when the input
/// parses) the location's own redacted form.
fn check_redaction(uri: &str) -> Result<(), TestCaseError> {
    let red = redact_uri(uri);
    prop_assert!(!red.chars().any(char::is_control), "{:?}", red);
    match Location::parse(uri) {
        Ok(loc) => prop_assert_eq!(red, loc.redacted()),
        Err(e) => {
            assert_client_error(&e)?;
            prop_assert!(red.chars().count() <= 512 + 40, "{}", red.len());
        }
    }
    Ok(())
}

props! {
    cases = 2000;

    /// Random text: a location or a 4xx, and a safe redacted form.
    fn prop_location_any(raw in nasty_bytes(120)) {
        check_redaction(&String::from_utf8_lossy(&raw))?;
    }

    /// Random text after a known scheme reaches each backend's parser.
    fn prop_location_any_after_scheme(
        scheme in proptest::sample::select(vec![
            "file", "http", "https", "swift", "swift+https", "s3", "s3+https",
        ]),
        raw in nasty_bytes(100),
    ) {
        check_redaction(&format!("{scheme}://{}", String::from_utf8_lossy(&raw)))?;
    }

    /// Well-formed locations parse, round-trip through `uri()`, and their redacted forms
    /// (of the location and of the string) never hold the secret.
    fn prop_location_round_trip((uri, secret) in location()) {
        let loc = match Location::parse(&uri) {
            Ok(l) => l,
            Err(e) => return Err(TestCaseError::fail(format!("{uri}: {}", e.message()))),
        };
        prop_assert_eq!(Location::parse(&loc.uri()).ok(), Some(loc.clone()));
        if let Some(secret) = secret {
            prop_assert!(loc.uri().contains(&secret));
            for shown in [loc.redacted(), redact_uri(&uri), format!("{loc}"), format!("{loc:?}")] {
                prop_assert!(!shown.contains(&secret), "{} shows {}", shown, secret);
            }
        }
    }

    /// Garbage after the user-info (a bad host, port or path) makes the location
    /// unparseable, but its redacted form still never holds the secret.
    fn prop_location_mangled_tail((uri, secret) in location(), e in edits()) {
        let Some(secret) = secret else { return Ok(()) };
        let at = uri.rfind('@').map_or(0, |i| i + 1);
        let (head, tail) = uri.split_at(at);
        let tail = String::from_utf8_lossy(&mutate(tail.as_bytes().to_vec(), &e)).into_owned();
        let mangled = format!("{head}{tail}");
        check_redaction(&mangled)?;
        let red = redact_uri(&mangled);
        prop_assert!(!red.contains(&secret), "{} shows {}", red, secret);
    }
}
