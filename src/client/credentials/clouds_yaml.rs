//! clouds.yaml and secure.yaml: where they are looked for (openstacksdk's search path),
//! and the settings of one cloud's entry, as a layer of [`super::Credentials::discover`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use yaml_rust2::{Yaml, YamlLoader};

use super::{Cloud, Env, Setting};
use crate::client::error::{Error, Result};

/// Keys of a clouds.yaml entry read outside its `auth:` map.
const CLOUD_KEYS: &[&str] = &[
    "auth_type",
    "region_name",
    "interface",
    "cacert",
    "image_endpoint_override",
];

/// Where clouds.yaml is looked for, in order (openstacksdk's search path): the file named by
/// `OS_CLIENT_CONFIG_FILE`, then `./clouds.yaml`, `$XDG_CONFIG_HOME/openstack/clouds.yaml`
/// (`~/.config/openstack/…` without it), `/etc/openstack/clouds.yaml`; `.yml` is accepted
/// for each.
pub fn clouds_yaml_paths(env: Env<'_>) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = env("OS_CLIENT_CONFIG_FILE")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    paths.extend(search_path(env, "clouds"));
    paths
}

/// Where secure.yaml is looked for: `OS_CLIENT_SECURE_FILE`, then beside the clouds.yaml in
/// use, then the search path of clouds.yaml.
pub fn secure_yaml_paths(env: Env<'_>, clouds: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = env("OS_CLIENT_SECURE_FILE")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    if let Some(dir) = clouds.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        paths.push(dir.join("secure.yaml"));
    }
    for p in search_path(env, "secure") {
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths
}

fn search_path(env: Env<'_>, stem: &str) -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from(".")];
    match (env("XDG_CONFIG_HOME"), env("HOME")) {
        (Some(xdg), _) => dirs.push(PathBuf::from(xdg).join("openstack")),
        (None, Some(home)) => dirs.push(PathBuf::from(home).join(".config/openstack")),
        (None, None) => {}
    }
    dirs.push(PathBuf::from("/etc/openstack"));
    let mut paths = Vec::new();
    for d in dirs {
        for ext in ["yaml", "yml"] {
            paths.push(d.join(format!("{stem}.{ext}")));
        }
    }
    paths
}

/// The first of `paths` that exists, parsed; `Ok(None)` when none does.
fn first_yaml(paths: &[PathBuf]) -> Result<Option<(PathBuf, Yaml)>> {
    for p in paths {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Login(format!("cannot read {}: {e}", p.display()))),
        };
        let doc = YamlLoader::load_from_str(&text)
            .map_err(|e| Error::Login(format!("{}: not valid YAML: {e}", p.display())))?
            .into_iter()
            .next()
            .unwrap_or(Yaml::Null);
        return Ok(Some((p.clone(), doc)));
    }
    Ok(None)
}

/// The layer of cloud `name`: its entry in the first clouds.yaml found, with its entry in
/// secure.yaml (if any) over it.
pub(super) fn cloud_layer(name: &str, env: Env<'_>) -> Result<(Cloud, BTreeMap<String, Setting>)> {
    let paths = clouds_yaml_paths(env);
    let Some((file, doc)) = first_yaml(&paths)? else {
        let searched: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        return Err(Error::Login(format!(
            "cloud '{name}' (OS_CLOUD): no clouds.yaml found (searched {})",
            searched.join(", ")
        )));
    };
    let entry = &doc["clouds"][name];
    if entry.as_hash().is_none() {
        let known: Vec<&str> = doc["clouds"]
            .as_hash()
            .map(|h| h.keys().filter_map(Yaml::as_str).collect())
            .unwrap_or_default();
        return Err(Error::Login(format!(
            "cloud '{name}' (OS_CLOUD) is not in {} (clouds there: {})",
            file.display(),
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        )));
    }
    let cloud = Cloud {
        name: name.to_string(),
        file: file.clone(),
    };
    let mut layer = entry_settings(entry, &format!("cloud '{name}' in {}", file.display()));
    if let Some((secure, sdoc)) = first_yaml(&secure_yaml_paths(env, &file))? {
        let over = entry_settings(
            &sdoc["clouds"][name],
            &format!("cloud '{name}' in {}", secure.display()),
        );
        layer.extend(over);
    }
    Ok((cloud, layer))
}

/// The settings of one clouds.yaml entry: its `auth:` keys and the top-level ones read.
/// Keys may use `-` for `_`; `tenant_*` are old names of `project_*`.
fn entry_settings(entry: &Yaml, origin: &str) -> BTreeMap<String, Setting> {
    let mut layer = BTreeMap::new();
    let mut put = |key: String, value: &Yaml| {
        if let Some(value) = scalar(value) {
            let origin = format!("{key} of {origin}");
            layer.insert(key, Setting { value, origin });
        }
    };
    for (k, v) in entry.as_hash().into_iter().flatten() {
        let Some(key) = k.as_str().map(|k| k.replace('-', "_")) else {
            continue;
        };
        if CLOUD_KEYS.contains(&key.as_str()) {
            put(key, v);
        } else if key == "regions" {
            let first = &v[0];
            let region = if first.as_hash().is_some() {
                &first["name"]
            } else {
                first
            };
            if entry["region_name"].is_badvalue() {
                put("region_name".into(), region);
            }
        }
    }
    for (k, v) in entry["auth"].as_hash().into_iter().flatten() {
        let Some(key) = k.as_str().map(|k| k.replace('-', "_")) else {
            continue;
        };
        let key = match key.strip_prefix("tenant_") {
            Some(rest) => format!("project_{rest}"),
            None => key,
        };
        put(key, v);
    }
    layer
}

/// A scalar as text (`project_id: 1234` is a number to YAML); `None` for maps, lists, null
/// and empty strings.
fn scalar(v: &Yaml) -> Option<String> {
    let s = match v {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        _ => return None,
    };
    (!s.is_empty()).then_some(s)
}
