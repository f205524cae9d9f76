//! Before a command that talks to the server: a Keystone login when no token was given, and
//! the address of the image API (issue 18).
//!
//! Without `-A`/`OS_AUTH_TOKEN`, credentials come from the `OS_*` environment or from
//! `OS_CLOUD`/`--os-cloud` and clouds.yaml ([`Credentials::discover`]); with none of those,
//! nothing happens and the command runs as it always did. One login gives the token for the
//! whole command. The server is `-H`/`-p` (or `GLANCE_HOST`/`GLANCE_PORT`) when given, else
//! `--os-image-url`/`OS_IMAGE_URL`, else clouds.yaml's `image_endpoint_override`, else the
//! image endpoint of the token's catalog, else the default `0.0.0.0:9292`.

use std::path::PathBuf;

use crate::client::credentials::{Credentials, Env};
use crate::client::keystone::{self, Session};
use crate::client::{self, CaBundle, Client};

use super::{COMMANDS, CliError, CliResult, Settings};

/// Whether `command` talks to the server: not `help`, not an unknown command (its error
/// comes first), and not a dry run, which contacts no server (except `clear`, which lists
/// what it would delete).
fn needs_server(command: &str, dry_run: bool) -> bool {
    let known = command == "image-download" || COMMANDS.iter().any(|c| c.name == command);
    known && command != "help" && (!dry_run || command == "clear")
}

/// Logs in when asked for and settles the server of `s` for `command`.
pub(super) fn connect(s: &mut Settings, command: &str, env: Env<'_>) -> CliResult {
    if !needs_server(command, s.dry_run) {
        return Ok(());
    }
    let creds = match s.auth_token {
        Some(_) => None,
        None => discover(s, env)?,
    };
    let session = creds.as_ref().map(log_in).transpose()?;
    if let Some(session) = &session {
        s.auth_token = Some(session.token().to_string());
    }
    if s.host_given {
        return Ok(());
    }
    if let Some(api) = image_api(s, creds, session.as_ref(), env)? {
        s.host = api.host().to_string();
        s.port = api.port();
        s.api = Some(api);
    }
    Ok(())
}

/// The client of the image API named by URL: `--os-image-url`/`OS_IMAGE_URL`, else
/// `image_endpoint_override`, else the catalog; `None` without any of them.
fn image_api(
    s: &Settings,
    creds: Option<Credentials>,
    session: Option<&Session>,
    env: Env<'_>,
) -> CliResult<Option<Client>> {
    let override_url = s.image_url.clone().or_else(|| {
        creds
            .as_ref()
            .and_then(|c| c.image_endpoint_override.clone())
    });
    let url = match (override_url, session) {
        (Some(url), _) => keystone::explicit_port(&url),
        (None, Some(session)) => session.image_url().map_err(login_error)?,
        (None, None) => return Ok(None),
    };
    let cacert = creds
        .and_then(|c| c.cacert)
        .or_else(|| env("OS_CACERT").map(PathBuf::from));
    let ca = match cacert {
        Some(path) => CaBundle::from_pem_file(&path).map_err(login_error)?,
        None => CaBundle::system(),
    };
    let api =
        Client::from_url(&url, None).map_err(|e| CliError::Usage(format!("image API URL: {e}")))?;
    Ok(Some(api.with_ca_bundle(ca)))
}

/// The credentials of `--os-cloud` and the environment, if any.
fn discover(s: &Settings, env: Env<'_>) -> CliResult<Option<Credentials>> {
    let options: Vec<(&str, String)> = s.os_cloud.iter().map(|c| ("cloud", c.clone())).collect();
    Credentials::discover(&options, env).map_err(login_error)
}

fn log_in(creds: &Credentials) -> CliResult<Session> {
    keystone::login(creds).map_err(login_error)
}

/// Login errors: the library's message as it is (it names what to set); a Keystone that
/// cannot be reached is named with its address.
fn login_error(e: client::Error) -> CliError {
    let debug = Some(format!("{e:?}"));
    match e {
        client::Error::Login(m) => CliError::Failed(m, None),
        client::Error::Connect { addr, reason } => CliError::Failed(
            format!("Failed to connect to Keystone at {addr} (OS_AUTH_URL): {reason}"),
            debug,
        ),
        other => CliError::Failed(format!("Keystone login failed: {other}"), debug),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_commands_that_reach_the_server_log_in() {
        assert!(needs_server("index", false));
        assert!(needs_server("image-download", false));
        assert!(needs_server("clear", true));
        assert!(!needs_server("add", true));
        assert!(!needs_server("help", false));
        assert!(!needs_server("bogus", false));
    }
}
