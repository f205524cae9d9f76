use std::path::Path;

use super::*;

fn env_of(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| {
        vars.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    }
}

fn discover(options: &[(&str, &str)], vars: &[(&str, &str)]) -> Result<Option<Credentials>> {
    let options: Vec<(&str, String)> = options.iter().map(|(k, v)| (*k, v.to_string())).collect();
    Credentials::discover(&options, &env_of(vars))
}

fn login_error(options: &[(&str, &str)], vars: &[(&str, &str)]) -> String {
    match discover(options, vars) {
        Err(Error::Login(m)) => m,
        other => panic!("expected a login error, got {other:?}"),
    }
}

fn creds(options: &[(&str, &str)], vars: &[(&str, &str)]) -> Credentials {
    match discover(options, vars) {
        Ok(Some(c)) => c,
        other => panic!("expected credentials, got {other:?}"),
    }
}

const OPENRC: &[(&str, &str)] = &[
    ("OS_AUTH_URL", "http://ks:5000/v3"),
    ("OS_USERNAME", "demo"),
    ("OS_PASSWORD", "secret"),
    ("OS_PROJECT_NAME", "demo"),
    ("OS_USER_DOMAIN_NAME", "Users"),
    ("OS_PROJECT_DOMAIN_ID", "p-dom"),
];

fn name(s: &str) -> Named {
    Named::Name(s.into())
}

fn id(s: &str) -> Named {
    Named::Id(s.into())
}

fn with(
    base: &[(&'static str, &'static str)],
    extra: &[(&'static str, &'static str)],
) -> Vec<(&'static str, &'static str)> {
    let mut v: Vec<(&str, &str)> = base
        .iter()
        .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
        .copied()
        .collect();
    v.extend_from_slice(extra);
    v
}

#[test]
fn no_login_without_login_variables() {
    assert_eq!(discover(&[], &[]).ok(), Some(None));
    // Refinements alone ask for nothing.
    let only = [
        ("OS_REGION_NAME", "r1"),
        ("OS_INTERFACE", "internal"),
        ("OS_USER_DOMAIN_NAME", "d"),
        ("OS_CACERT", "/ca.pem"),
        ("OS_IMAGE_URL", "http://g:9292"),
    ];
    assert_eq!(discover(&[], &only).ok(), Some(None));
    // Empty values are unset.
    assert_eq!(discover(&[], &[("OS_AUTH_URL", "")]).ok(), Some(None));
    // auth_type none: no login even with credentials.
    let none = with(OPENRC, &[("OS_AUTH_TYPE", "none")]);
    assert_eq!(discover(&[], &none).ok(), Some(None));
}

#[test]
fn openrc_gives_a_password_login_scoped_to_the_project() {
    let c = creds(&[], OPENRC);
    assert_eq!(c.auth_url, "http://ks:5000/v3");
    assert_eq!(
        c.method,
        Method::Password {
            user: Ref {
                named: name("demo"),
                domain: name("Users")
            },
            password: Secret::new("secret"),
        }
    );
    assert_eq!(
        c.project,
        Some(Ref {
            named: name("demo"),
            domain: id("p-dom")
        })
    );
    assert_eq!(
        (c.interface, &c.region, &c.cacert),
        (Interface::Public, &None, &None)
    );
    // The secret never shows in Debug output.
    assert!(!format!("{c:?}").contains("secret"), "{c:?}");
}

#[test]
fn domains_default_to_the_default_domain_and_ids_win_over_names() {
    let vars = [
        ("OS_AUTH_URL", "http://ks:5000"),
        ("OS_USERNAME", "demo"),
        ("OS_USER_ID", "u-1"),
        ("OS_PASSWORD", "pw"),
        ("OS_TENANT_NAME", "old"),
    ];
    let c = creds(&[], &vars);
    let Method::Password { user, .. } = &c.method else {
        panic!("{c:?}")
    };
    assert_eq!(user.named, id("u-1"));
    assert_eq!(
        c.project,
        Some(Ref {
            named: name("old"),
            domain: id(DEFAULT_DOMAIN_ID)
        })
    );
    // OS_PROJECT_NAME wins over the old OS_TENANT_NAME; an id over both.
    let c = creds(&[], &with(&vars, &[("OS_PROJECT_NAME", "new")]));
    assert_eq!(c.project.map(|p| p.named), Some(name("new")));
    let c = creds(&[], &with(&vars, &[("OS_TENANT_ID", "t-9")]));
    assert_eq!(c.project.map(|p| p.named), Some(id("t-9")));
    let c = creds(
        &[],
        &with(
            &vars,
            &[("OS_USER_DOMAIN_ID", "x"), ("OS_USER_DOMAIN_NAME", "X")],
        ),
    );
    let Method::Password { user, .. } = &c.method else {
        panic!("{c:?}")
    };
    assert_eq!(user.domain, id("x"));
    // No project at all: an unscoped request (Keystone picks the default project).
    let bare = [
        ("OS_AUTH_URL", "http://ks:5000"),
        ("OS_USERNAME", "demo"),
        ("OS_PASSWORD", "pw"),
    ];
    assert_eq!(creds(&[], &bare).project, None);
}

#[test]
fn missing_settings_are_named() {
    let no_url = with(OPENRC, &[("OS_AUTH_URL", "")]);
    assert_eq!(
        login_error(&[], &no_url),
        "OS_AUTH_URL is not set: set OS_AUTH_URL or use -A"
    );
    assert_eq!(
        login_error(&[], &with(OPENRC, &[("OS_PASSWORD", "")])),
        "OS_PASSWORD is not set"
    );
    assert_eq!(
        login_error(&[], &with(OPENRC, &[("OS_USERNAME", "")])),
        "OS_USERNAME is not set (nor OS_USER_ID)"
    );
    // Only a password: the URL is what is missing first.
    assert_eq!(
        login_error(&[], &[("OS_PASSWORD", "pw")]),
        "OS_AUTH_URL is not set: set OS_AUTH_URL or use -A"
    );
}

#[test]
fn interfaces_and_regions() {
    for (given, want) in [
        ("public", Interface::Public),
        ("publicURL", Interface::Public),
        ("internalURL", Interface::Internal),
        ("Admin", Interface::Admin),
    ] {
        let c = creds(&[], &with(OPENRC, &[("OS_INTERFACE", given)]));
        assert_eq!(c.interface, want, "{given}");
    }
    // glanceclient's old name.
    let c = creds(&[], &with(OPENRC, &[("OS_ENDPOINT_TYPE", "internalURL")]));
    assert_eq!(c.interface, Interface::Internal);
    assert_eq!(
        login_error(&[], &with(OPENRC, &[("OS_INTERFACE", "private")])),
        "OS_INTERFACE: interface 'private' is not public, internal or admin"
    );
    let c = creds(
        &[],
        &with(
            OPENRC,
            &[("OS_REGION_NAME", "RegionTwo"), ("OS_CACERT", "/ca.pem")],
        ),
    );
    assert_eq!(c.region.as_deref(), Some("RegionTwo"));
    assert_eq!(c.cacert.as_deref(), Some(Path::new("/ca.pem")));
}

#[test]
fn application_credentials() {
    let by_id = [
        ("OS_AUTH_URL", "http://ks:5000/v3"),
        ("OS_APPLICATION_CREDENTIAL_ID", "ac-1"),
        ("OS_APPLICATION_CREDENTIAL_SECRET", "s3cr3t"),
        // Ignored: application credentials carry their own scope.
        ("OS_PROJECT_NAME", "demo"),
    ];
    // Inferred without OS_AUTH_TYPE.
    let c = creds(&[], &by_id);
    assert_eq!(
        c.method,
        Method::ApplicationCredential {
            credential: id("ac-1"),
            user: None,
            secret: Secret::new("s3cr3t")
        }
    );
    assert_eq!(c.project, None);
    let c = creds(
        &[],
        &with(&by_id, &[("OS_AUTH_TYPE", "v3applicationcredential")]),
    );
    assert!(matches!(c.method, Method::ApplicationCredential { .. }));
    // By name: needs the user.
    let by_name = [
        ("OS_AUTH_URL", "http://ks:5000/v3"),
        ("OS_AUTH_TYPE", "v3applicationcredential"),
        ("OS_APPLICATION_CREDENTIAL_NAME", "ci"),
        ("OS_APPLICATION_CREDENTIAL_SECRET", "s"),
    ];
    assert!(login_error(&[], &by_name).contains("needs its user"));
    let c = creds(&[], &with(&by_name, &[("OS_USERNAME", "demo")]));
    let Method::ApplicationCredential {
        credential, user, ..
    } = &c.method
    else {
        panic!("{c:?}")
    };
    assert_eq!(credential, &name("ci"));
    assert_eq!(user.as_ref().map(|u| &u.named), Some(&name("demo")));
    assert_eq!(
        login_error(
            &[],
            &with(&by_id, &[("OS_APPLICATION_CREDENTIAL_SECRET", "")])
        ),
        "OS_APPLICATION_CREDENTIAL_SECRET is not set"
    );
    // An explicit password type wins over application credential variables.
    let mixed = with(
        OPENRC,
        &[
            ("OS_AUTH_TYPE", "password"),
            ("OS_APPLICATION_CREDENTIAL_ID", "x"),
        ],
    );
    assert!(matches!(creds(&[], &mixed).method, Method::Password { .. }));
    assert_eq!(
        login_error(&[], &with(OPENRC, &[("OS_AUTH_TYPE", "v3token")])),
        "OS_AUTH_TYPE: auth type 'v3token' is not supported: use password or \
         v3applicationcredential, or pass a token with -A"
    );
}

// ---------------------------------------------------------------------------------------------
// clouds.yaml

const CLOUDS: &str = "
clouds:
  devstack:
    auth:
      auth_url: http://ks.example:5000
      username: demo
      password: from-clouds
      project_name: demo
      user_domain_name: Default
      project-domain-name: Default
    region_name: RegionOne
    interface: internal
    cacert: /etc/ssl/ks.pem
  legacy:
    auth_type: password
    auth:
      auth_url: http://old:5000/v2.0
      username: admin
      tenant_name: admin
      project_id: 1234
    regions:
      - name: RegionTwo
      - RegionThree
  appcred:
    auth_type: v3applicationcredential
    auth:
      auth_url: http://ks.example:5000/v3
      application_credential_id: ac-7
    image_endpoint_override: http://glance.example:9292
";

const SECURE: &str = "
clouds:
  legacy:
    auth:
      password: from-secure
  appcred:
    auth:
      application_credential_secret: app-secret
";

fn cloud_dir(clouds: &str, secure: Option<&str>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let write = |name: &str, text: &str| {
        std::fs::write(dir.path().join(name), text).unwrap_or_else(|e| panic!("{name}: {e}"));
    };
    write("clouds.yaml", clouds);
    if let Some(s) = secure {
        write("secure.yaml", s);
    }
    dir
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_cloud_of_clouds_yaml() {
    let dir = cloud_dir(CLOUDS, Some(SECURE));
    let file = path_str(&dir.path().join("clouds.yaml"));
    let vars = [
        ("OS_CLOUD", "devstack"),
        ("OS_CLIENT_CONFIG_FILE", file.as_str()),
    ];
    let c = creds(&[], &vars);
    assert_eq!(c.auth_url, "http://ks.example:5000");
    assert_eq!(
        c.method,
        Method::Password {
            user: Ref {
                named: name("demo"),
                domain: name("Default")
            },
            password: Secret::new("from-clouds")
        }
    );
    assert_eq!(
        c.project,
        Some(Ref {
            named: name("demo"),
            domain: name("Default")
        })
    );
    assert_eq!(c.region.as_deref(), Some("RegionOne"));
    assert_eq!(c.interface, Interface::Internal);
    assert_eq!(c.cacert.as_deref(), Some(Path::new("/etc/ssl/ks.pem")));
}

#[test]
fn secure_yaml_old_names_numbers_and_region_lists() {
    let dir = cloud_dir(CLOUDS, Some(SECURE));
    let file = path_str(&dir.path().join("clouds.yaml"));
    let vars = [
        ("OS_CLOUD", "legacy"),
        ("OS_CLIENT_CONFIG_FILE", file.as_str()),
    ];
    let c = creds(&[], &vars);
    let Method::Password { password, .. } = &c.method else {
        panic!("{c:?}")
    };
    assert_eq!(password.expose(), "from-secure");
    assert_eq!(c.project.map(|p| p.named), Some(id("1234")));
    assert_eq!(c.region.as_deref(), Some("RegionTwo"));
    let vars = [
        ("OS_CLOUD", "appcred"),
        ("OS_CLIENT_CONFIG_FILE", file.as_str()),
    ];
    let c = creds(&[], &vars);
    assert_eq!(
        c.method,
        Method::ApplicationCredential {
            credential: id("ac-7"),
            user: None,
            secret: Secret::new("app-secret")
        }
    );
    assert_eq!(
        c.image_endpoint_override.as_deref(),
        Some("http://glance.example:9292")
    );
}

#[test]
fn options_beat_the_environment_which_beats_clouds_yaml() {
    let dir = cloud_dir(CLOUDS, None);
    let file = path_str(&dir.path().join("clouds.yaml"));
    let vars = [
        ("OS_CLOUD", "legacy"),
        ("OS_CLIENT_CONFIG_FILE", file.as_str()),
        ("OS_PASSWORD", "from-env"),
        ("OS_REGION_NAME", "EnvRegion"),
        ("OS_INTERFACE", "admin"),
    ];
    // --os-cloud picks the cloud over OS_CLOUD.
    let c = creds(&[("cloud", "devstack")], &vars);
    assert_eq!(c.auth_url, "http://ks.example:5000");
    let Method::Password { password, .. } = &c.method else {
        panic!("{c:?}")
    };
    assert_eq!(password.expose(), "from-env");
    assert_eq!(c.region.as_deref(), Some("EnvRegion"));
    assert_eq!(c.interface, Interface::Admin);
    // An option beats the environment.
    let c = creds(
        &[("cloud", "devstack"), ("region_name", "OptRegion")],
        &vars,
    );
    assert_eq!(c.region.as_deref(), Some("OptRegion"));
    // Without secure.yaml the legacy cloud lacks its password: both places are named.
    let vars = [
        ("OS_CLOUD", "legacy"),
        ("OS_CLIENT_CONFIG_FILE", file.as_str()),
    ];
    assert_eq!(
        login_error(&[], &vars),
        format!("OS_PASSWORD is not set, nor password in cloud 'legacy' of {file}")
    );
    // A bad value names where it came from.
    let vars = [
        ("OS_CLOUD", "devstack"),
        ("OS_CLIENT_CONFIG_FILE", file.as_str()),
        ("OS_INTERFACE", ""),
    ];
    let bad = CLOUDS.replace("interface: internal", "interface: inside");
    let dir2 = cloud_dir(&bad, None);
    let file2 = path_str(&dir2.path().join("clouds.yaml"));
    let vars2 = [
        ("OS_CLOUD", "devstack"),
        ("OS_CLIENT_CONFIG_FILE", file2.as_str()),
    ];
    assert_eq!(
        login_error(&[], &vars2),
        format!(
            "interface of cloud 'devstack' in {file2}: interface 'inside' is not public, internal or admin"
        )
    );
    assert!(discover(&[], &vars).is_ok());
}

#[test]
fn a_missing_cloud_or_file_names_what_was_searched() {
    let dir = cloud_dir(CLOUDS, None);
    let file = path_str(&dir.path().join("clouds.yaml"));
    let vars = [
        ("OS_CLOUD", "nope"),
        ("OS_CLIENT_CONFIG_FILE", file.as_str()),
    ];
    assert_eq!(
        login_error(&[], &vars),
        format!(
            "cloud 'nope' (OS_CLOUD) is not in {file} (clouds there: devstack, legacy, appcred)"
        )
    );
    let empty = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let xdg = path_str(empty.path());
    let missing = format!("{xdg}/none.yaml");
    let vars = [
        ("OS_CLOUD", "devstack"),
        ("OS_CLIENT_CONFIG_FILE", missing.as_str()),
        ("XDG_CONFIG_HOME", xdg.as_str()),
    ];
    let m = login_error(&[], &vars);
    assert!(
        m.starts_with("cloud 'devstack' (OS_CLOUD): no clouds.yaml found (searched "),
        "{m}"
    );
    for p in [
        missing.as_str(),
        "./clouds.yaml",
        &format!("{xdg}/openstack/clouds.yaml"),
        "/etc/openstack/clouds.yaml",
    ] {
        assert!(m.contains(p), "{p} not in {m}");
    }
    let broken = cloud_dir("clouds: [unclosed", None);
    let file = path_str(&broken.path().join("clouds.yaml"));
    let vars = [("OS_CLOUD", "x"), ("OS_CLIENT_CONFIG_FILE", file.as_str())];
    assert!(login_error(&[], &vars).starts_with(&format!("{file}: not valid YAML")));
}

#[test]
fn the_search_path_follows_openstacksdk() {
    let env = env_of(&[("HOME", "/home/u")]);
    let paths: Vec<String> = clouds_yaml_paths(&env)
        .iter()
        .map(|p| path_str(p))
        .collect();
    assert_eq!(
        paths,
        [
            "./clouds.yaml",
            "./clouds.yml",
            "/home/u/.config/openstack/clouds.yaml",
            "/home/u/.config/openstack/clouds.yml",
            "/etc/openstack/clouds.yaml",
            "/etc/openstack/clouds.yml",
        ]
    );
    let env = env_of(&[
        ("HOME", "/home/u"),
        ("XDG_CONFIG_HOME", "/xdg"),
        ("OS_CLIENT_CONFIG_FILE", "/c.yaml"),
    ]);
    let paths = clouds_yaml_paths(&env);
    assert_eq!(paths[0], Path::new("/c.yaml"));
    assert_eq!(paths[3], Path::new("/xdg/openstack/clouds.yaml"));
    // secure.yaml: the override, beside the clouds.yaml in use, then the search path.
    let env = env_of(&[("OS_CLIENT_SECURE_FILE", "/s.yaml")]);
    let paths = secure_yaml_paths(&env, Path::new("/tmp/x/clouds.yaml"));
    assert_eq!(paths[0], Path::new("/s.yaml"));
    assert_eq!(paths[1], Path::new("/tmp/x/secure.yaml"));
    assert_eq!(paths[2], Path::new("./secure.yaml"));
}

#[test]
fn clouds_yaml_found_under_xdg_config_home() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let os = dir.path().join("openstack");
    std::fs::create_dir(&os).unwrap_or_else(|e| panic!("mkdir: {e}"));
    std::fs::write(os.join("clouds.yaml"), CLOUDS).unwrap_or_else(|e| panic!("write: {e}"));
    std::fs::write(os.join("secure.yaml"), SECURE).unwrap_or_else(|e| panic!("write: {e}"));
    let xdg = path_str(dir.path());
    let c = creds(&[("cloud", "legacy")], &[("XDG_CONFIG_HOME", xdg.as_str())]);
    let Method::Password { password, .. } = &c.method else {
        panic!("{c:?}")
    };
    assert_eq!(password.expose(), "from-secure");
}
