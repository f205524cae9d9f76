//! Keystone credentials for a login, found as python-openstackclient finds them: in the
//! `OS_*` environment (an openrc), and in the entry of `OS_CLOUD` in a `clouds.yaml`.
//!
//! Every setting goes by its clouds.yaml name (`auth_url`, `project_name`, `region_name` …)
//! and is looked up in three layers, the first that has it wins: command-line options, the
//! `OS_*` environment, then the cloud's clouds.yaml entry (with the same entry of
//! `secure.yaml` merged over it, where passwords are usually kept). Nothing is read from a
//! clouds.yaml unless a cloud is named: a stray `./clouds.yaml` changes nothing.
//!
//! An id wins over a name given for the same thing (`OS_PROJECT_ID` over
//! `OS_PROJECT_NAME`), as in keystoneauth. A user or project given by name lives in the
//! domain of its `*_DOMAIN_ID`/`*_DOMAIN_NAME`, else in the domain with id `default` (the
//! one named `Default`), python-openstackclient's default domain.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{Error, Result};
use crate::config::Secret;

mod clouds_yaml;

use self::clouds_yaml::cloud_layer;
pub use self::clouds_yaml::{clouds_yaml_paths, secure_yaml_paths};

/// Reads one environment variable; `None` when unset or empty.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The settings, and the `OS_*` variables that give them, first one first.
const ENV_VARS: &[(&str, &[&str])] = &[
    ("auth_url", &["OS_AUTH_URL"]),
    ("auth_type", &["OS_AUTH_TYPE"]),
    ("username", &["OS_USERNAME"]),
    ("user_id", &["OS_USER_ID"]),
    ("password", &["OS_PASSWORD"]),
    ("project_name", &["OS_PROJECT_NAME", "OS_TENANT_NAME"]),
    ("project_id", &["OS_PROJECT_ID", "OS_TENANT_ID"]),
    ("user_domain_name", &["OS_USER_DOMAIN_NAME"]),
    ("user_domain_id", &["OS_USER_DOMAIN_ID"]),
    ("project_domain_name", &["OS_PROJECT_DOMAIN_NAME"]),
    ("project_domain_id", &["OS_PROJECT_DOMAIN_ID"]),
    (
        "application_credential_id",
        &["OS_APPLICATION_CREDENTIAL_ID"],
    ),
    (
        "application_credential_name",
        &["OS_APPLICATION_CREDENTIAL_NAME"],
    ),
    (
        "application_credential_secret",
        &["OS_APPLICATION_CREDENTIAL_SECRET"],
    ),
    ("region_name", &["OS_REGION_NAME"]),
    ("interface", &["OS_INTERFACE", "OS_ENDPOINT_TYPE"]),
    ("cacert", &["OS_CACERT"]),
];

/// Settings whose presence asks for a login; the others (region, interface, domains, CA)
/// only refine one.
const LOGIN_KEYS: &[&str] = &[
    "auth_url",
    "username",
    "user_id",
    "password",
    "project_name",
    "project_id",
    "application_credential_id",
    "application_credential_name",
    "application_credential_secret",
];

/// The domain users and projects given by name live in when none is set.
pub const DEFAULT_DOMAIN_ID: &str = "default";

/// A user, a project or a domain: by id, or by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Named {
    /// By id.
    Id(String),
    /// By name; users and projects by name also name their domain.
    Name(String),
}

/// A user or a project given by id, or by name within a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ref {
    /// The id or the name.
    pub named: Named,
    /// The domain of a name (unused with an id).
    pub domain: Named,
}

/// How to prove who the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Keystone's `password` method.
    Password {
        /// The user.
        user: Ref,
        /// The password.
        password: Secret,
    },
    /// An application credential (pre-scoped to its project).
    ApplicationCredential {
        /// The credential, by id or by name.
        credential: Named,
        /// The owner, needed to find a credential by name.
        user: Option<Ref>,
        /// The secret.
        secret: Secret,
    },
}

/// Which of an endpoint's URLs to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Interface {
    /// `public` (also `publicURL`): the default.
    #[default]
    Public,
    /// `internal` (`internalURL`).
    Internal,
    /// `admin` (`adminURL`).
    Admin,
}

impl Interface {
    /// `public`, `internal` or `admin`, as in the catalog.
    pub fn as_str(self) -> &'static str {
        match self {
            Interface::Public => "public",
            Interface::Internal => "internal",
            Interface::Admin => "admin",
        }
    }

    /// Parses `public`, `publicURL` (any case) and the like.
    pub fn parse(s: &str) -> Option<Interface> {
        let s = s.to_ascii_lowercase();
        match s.strip_suffix("url").unwrap_or(&s) {
            "public" => Some(Interface::Public),
            "internal" => Some(Interface::Internal),
            "admin" => Some(Interface::Admin),
            _ => None,
        }
    }
}

/// Everything a login needs, resolved from the layers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Keystone's URL as given (`http://keystone:5000`, `…/v3`).
    pub auth_url: String,
    /// Password or application credential.
    pub method: Method,
    /// The project to scope the token to; `None` for application credentials, and for a
    /// user without one (Keystone then scopes to the user's default project, if any).
    pub project: Option<Ref>,
    /// The region of the image endpoint; `None`: the first one found.
    pub region: Option<String>,
    /// The interface of the image endpoint.
    pub interface: Interface,
    /// A CA bundle for `https` (`OS_CACERT`, `cacert`).
    pub cacert: Option<PathBuf>,
    /// clouds.yaml's `image_endpoint_override`: the image API to use instead of the
    /// catalog's.
    pub image_endpoint_override: Option<String>,
}

/// One value and where it came from, for messages (`OS_INTERFACE`, `interface of cloud
/// 'x' in ./clouds.yaml`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    value: String,
    origin: String,
}

/// The cloud in use: its name and the file it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cloud {
    name: String,
    file: PathBuf,
}

/// The layers, highest precedence first.
struct Layers {
    layers: Vec<BTreeMap<String, Setting>>,
    cloud: Option<Cloud>,
}

impl Layers {
    fn get(&self, key: &str) -> Option<&Setting> {
        self.layers.iter().find_map(|l| l.get(key))
    }

    fn value(&self, key: &str) -> Option<String> {
        self.get(key).map(|s| s.value.clone())
    }

    /// "OS_PASSWORD is not set" (naming the cloud's entry as well when there is one).
    fn missing(&self, key: &str) -> String {
        let var = env_var(key);
        match &self.cloud {
            None => format!("{var} is not set"),
            Some(c) => format!(
                "{var} is not set, nor {key} in cloud '{}' of {}",
                c.name,
                c.file.display()
            ),
        }
    }

    /// An id, else a name, of `what` (`user`, `project`, `user_domain` …).
    fn named(&self, what: &str) -> Option<Named> {
        self.value(&format!("{what}_id"))
            .map(Named::Id)
            .or_else(|| self.value(&format!("{what}_name")).map(Named::Name))
    }

    fn domain(&self, what: &str) -> Named {
        self.named(&format!("{what}_domain"))
            .unwrap_or_else(|| Named::Id(DEFAULT_DOMAIN_ID.into()))
    }

    /// The user (`username`/`user_id`), if given.
    fn user(&self) -> Option<Ref> {
        let named = self
            .value("user_id")
            .map(Named::Id)
            .or_else(|| self.value("username").map(Named::Name))?;
        Some(Ref {
            named,
            domain: self.domain("user"),
        })
    }
}

/// The first `OS_*` variable of a setting.
fn env_var(key: &str) -> &'static str {
    ENV_VARS
        .iter()
        .find(|(k, _)| *k == key)
        .and_then(|(_, vars)| vars.first().copied())
        .unwrap_or("OS_*")
}

impl Credentials {
    /// The credentials of the environment `env`, with command-line `options` over it
    /// (setting names as in clouds.yaml; `cloud` names the clouds.yaml entry, as
    /// `OS_CLOUD` does). `Ok(None)` when nothing asks for a login: no cloud is named and no
    /// `OS_*` variable of a login is set (`OS_AUTH_URL`, `OS_USERNAME`, `OS_PASSWORD`,
    /// `OS_PROJECT_*`, `OS_APPLICATION_CREDENTIAL_*` …), or `OS_AUTH_TYPE` is `none`.
    ///
    /// ```
    /// use glance_rs::client::credentials::{Credentials, Interface};
    ///
    /// let env = |k: &str| match k {
    ///     "OS_AUTH_URL" => Some("http://keystone:5000/v3".to_string()),
    ///     "OS_USERNAME" | "OS_PASSWORD" | "OS_PROJECT_NAME" => Some("demo".to_string()),
    ///     _ => None,
    /// };
    /// let Some(c) = Credentials::discover(&[], &env)? else { panic!("no login") };
    /// assert_eq!(c.auth_url, "http://keystone:5000/v3");
    /// assert_eq!(c.interface, Interface::Public);
    /// assert!(Credentials::discover(&[], &|_: &str| None)?.is_none());
    /// # Ok::<_, glance_rs::client::Error>(())
    /// ```
    pub fn discover(options: &[(&str, String)], env: Env<'_>) -> Result<Option<Credentials>> {
        let options: BTreeMap<String, Setting> = options
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                let origin = format!("--os-{}", k.replace('_', "-"));
                (
                    k.to_string(),
                    Setting {
                        value: v.clone(),
                        origin,
                    },
                )
            })
            .collect();
        let env_layer = env_layer(env);
        let cloud_name = options
            .get("cloud")
            .map(|s| s.value.clone())
            .or_else(|| env("OS_CLOUD"));
        let wants_login =
            |l: &BTreeMap<String, Setting>| LOGIN_KEYS.iter().any(|k| l.contains_key(*k));
        if cloud_name.is_none() && !wants_login(&options) && !wants_login(&env_layer) {
            return Ok(None);
        }
        let mut layers = Layers {
            layers: vec![options, env_layer],
            cloud: None,
        };
        if let Some(name) = cloud_name {
            let (cloud, layer) = cloud_layer(&name, env)?;
            layers.layers.push(layer);
            layers.cloud = Some(cloud);
        }
        Credentials::resolve(&layers)
    }

    fn resolve(l: &Layers) -> Result<Option<Credentials>> {
        let kind = auth_kind(l)?;
        let Some(kind) = kind else { return Ok(None) };
        let auth_url = l.value("auth_url").ok_or_else(|| {
            Error::Login(format!(
                "{}: set OS_AUTH_URL or use -A",
                l.missing("auth_url")
            ))
        })?;
        let (method, project) = match kind {
            Kind::Password => (password(l)?, project(l)),
            Kind::ApplicationCredential => (application_credential(l)?, None),
        };
        let interface = match l.get("interface") {
            None => Interface::default(),
            Some(s) => Interface::parse(&s.value).ok_or_else(|| {
                Error::Login(format!(
                    "{}: interface '{}' is not public, internal or admin",
                    s.origin, s.value
                ))
            })?,
        };
        Ok(Some(Credentials {
            auth_url,
            method,
            project,
            region: l.value("region_name"),
            interface,
            cacert: l.value("cacert").map(PathBuf::from),
            image_endpoint_override: l.value("image_endpoint_override"),
        }))
    }
}

/// The auth methods this client speaks.
enum Kind {
    Password,
    ApplicationCredential,
}

/// The method: `auth_type` when given (`None` for `none`/`noauth`: no login), else an
/// application credential when one is given, else a password.
fn auth_kind(l: &Layers) -> Result<Option<Kind>> {
    let Some(t) = l.get("auth_type") else {
        let app = ["application_credential_id", "application_credential_name"]
            .iter()
            .any(|k| l.get(k).is_some());
        return Ok(Some(if app {
            Kind::ApplicationCredential
        } else {
            Kind::Password
        }));
    };
    match t.value.to_ascii_lowercase().replace('-', "_").as_str() {
        "password" | "v3password" => Ok(Some(Kind::Password)),
        "v3applicationcredential" | "applicationcredential" | "application_credential" => {
            Ok(Some(Kind::ApplicationCredential))
        }
        "none" | "noauth" => Ok(None),
        other => Err(Error::Login(format!(
            "{}: auth type '{other}' is not supported: use password or \
             v3applicationcredential, or pass a token with -A",
            t.origin
        ))),
    }
}

fn password(l: &Layers) -> Result<Method> {
    let user = l
        .user()
        .ok_or_else(|| Error::Login(format!("{} (nor OS_USER_ID)", l.missing("username"))))?;
    let password = l
        .value("password")
        .ok_or_else(|| Error::Login(l.missing("password")))?;
    Ok(Method::Password {
        user,
        password: Secret::new(password),
    })
}

fn application_credential(l: &Layers) -> Result<Method> {
    let credential = l.named("application_credential").ok_or_else(|| {
        Error::Login(format!(
            "{} (nor OS_APPLICATION_CREDENTIAL_NAME)",
            l.missing("application_credential_id")
        ))
    })?;
    let user = l.user();
    if matches!(credential, Named::Name(_)) && user.is_none() {
        return Err(Error::Login(
            "an application credential given by name needs its user: set OS_USERNAME or \
             OS_USER_ID (or use OS_APPLICATION_CREDENTIAL_ID)"
                .into(),
        ));
    }
    let secret = l
        .value("application_credential_secret")
        .ok_or_else(|| Error::Login(l.missing("application_credential_secret")))?;
    Ok(Method::ApplicationCredential {
        credential,
        user,
        secret: Secret::new(secret),
    })
}

fn project(l: &Layers) -> Option<Ref> {
    Some(Ref {
        named: l.named("project")?,
        domain: l.domain("project"),
    })
}

/// The `OS_*` layer.
fn env_layer(env: Env<'_>) -> BTreeMap<String, Setting> {
    let mut layer = BTreeMap::new();
    for (key, vars) in ENV_VARS {
        let found = vars.iter().find_map(|v| env(v).map(|value| (v, value)));
        if let Some((var, value)) = found {
            let origin = var.to_string();
            layer.insert(key.to_string(), Setting { value, origin });
        }
    }
    layer
}

#[cfg(test)]
mod tests;
