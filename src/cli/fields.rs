//! `FIELD=VALUE` arguments: image metadata for `add` and `update`, filters for `index` and
//! `details` (spec §12.1).
//!
//! Each argument is stripped of surrounding commas and split at its first `=` (so a value
//! may itself contain `=`, unlike Diablo); the key is lower-cased with `-` turned into `_`.
//! Known fields go into the image record, everything else becomes a custom property.

use crate::client::Filters;
use crate::image::{ImagePatch, Properties};

use super::{CliError, CliResult};

/// Fields `add` cannot set (removed with a warning). glance computes `virtual_size` and the
/// `os_hash_*` pair from the data.
const NOT_SETTABLE: [&str; 5] = [
    "status",
    "size",
    "virtual_size",
    "os_hash_algo",
    "os_hash_value",
];
/// Fields `update` cannot change (removed with a warning).
const NOT_MODIFIABLE: [&str; 13] = [
    "id",
    "size",
    "virtual_size",
    "os_hash_algo",
    "os_hash_value",
    "status",
    "created_at",
    "created_on",
    "updated_at",
    "updated_on",
    "deleted_at",
    "deleted_on",
    "deleted",
];
/// Filters sent as they are; any other key is a property filter.
const FILTERS: [&str; 9] = [
    "name",
    "status",
    "disk_format",
    "container_format",
    "min_ram",
    "min_disk",
    "size_min",
    "size_max",
    "is_public",
];
/// Filters whose values are integers.
const INTEGER_FILTERS: [&str; 4] = ["min_ram", "min_disk", "size_min", "size_max"];
/// Formats that need the same format on the other side.
const AMAZON: [&str; 3] = ["ami", "ari", "aki"];

/// Parses `FIELD=VALUE` arguments in order.
pub fn parse(args: &[String]) -> CliResult<Vec<(String, String)>> {
    args.iter()
        .map(|arg| {
            let trimmed = arg.trim_matches(',');
            match trimmed.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((
                    k.trim().to_ascii_lowercase().replace('-', "_"),
                    v.to_string(),
                )),
                _ => Err(CliError::Usage(format!(
                    "Arguments should be in the form of field=value. You specified {arg}."
                ))),
            }
        })
        .collect()
}

/// `is_public` and other booleans: `true`, `on`, `1` or `false`, `off`, `0` (any case).
pub fn parse_bool(field: &str, v: &str) -> CliResult<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        _ => Err(CliError::Usage(format!(
            "{field}={v}: use true, on or 1 for yes, and false, off or 0 for no"
        ))),
    }
}

fn parse_count(field: &str, v: &str) -> CliResult<u64> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| CliError::Usage(format!("{field}={v}: must be a non-negative integer")))
}

/// What `add` will send.
#[derive(Debug, Clone, PartialEq)]
pub struct AddPlan {
    /// Fields and properties.
    pub meta: ImagePatch,
    /// Warnings about removed fields.
    pub warnings: Vec<String>,
}

/// Builds the metadata of `add`: `name` is required; defaults `is_public=False`,
/// `disk_format=raw`, `container_format=ovf` (or the other side's Amazon format),
/// `min_disk=0`, `min_ram=0`.
pub fn add_meta(fields: Vec<(String, String)>) -> CliResult<AddPlan> {
    let mut meta = ImagePatch::default();
    let mut props = Properties::new();
    let mut warnings = Vec::new();
    for (k, v) in fields {
        if NOT_SETTABLE.contains(&k.as_str()) {
            warnings.push(format!("Found non-settable field {k}. Removing."));
            continue;
        }
        if !set_field(&mut meta, &k, &v)? {
            if k == "id" {
                meta.id = Some(v);
            } else {
                props.insert(k, Some(v));
            }
        }
    }
    if meta.name.as_ref().is_none_or(|n| n.is_none()) {
        return Err(CliError::Usage(
            "Please specify a name for the image using name=VALUE".into(),
        ));
    }
    let amazon =
        |f: &Option<Option<String>>| f.clone().flatten().filter(|f| AMAZON.contains(&f.as_str()));
    if meta.disk_format.is_none() {
        meta.disk_format = Some(Some(
            amazon(&meta.container_format).unwrap_or_else(|| "raw".into()),
        ));
    }
    if meta.container_format.is_none() {
        meta.container_format = Some(Some(
            amazon(&meta.disk_format).unwrap_or_else(|| "ovf".into()),
        ));
    }
    meta.is_public.get_or_insert(false);
    meta.min_disk.get_or_insert(0);
    meta.min_ram.get_or_insert(0);
    meta.properties = Some(props);
    Ok(AddPlan { meta, warnings })
}

/// Builds the metadata of `update`. With no (modifiable) field at all the properties are
/// left alone (`properties: None`); with any field they are replaced by those given, as
/// Glance did.
pub fn update_meta(fields: Vec<(String, String)>) -> CliResult<AddPlan> {
    let mut meta = ImagePatch::default();
    let mut props = Properties::new();
    let mut warnings = Vec::new();
    let mut any = false;
    for (k, v) in fields {
        if NOT_MODIFIABLE.contains(&k.as_str()) {
            warnings.push(format!("Found non-modifiable field {k}. Removing."));
            continue;
        }
        any = true;
        if !set_field(&mut meta, &k, &v)? {
            props.insert(k, Some(v));
        }
    }
    if any {
        meta.properties = Some(props);
    }
    Ok(AddPlan { meta, warnings })
}

/// Sets a known field; false when `k` is not one (a property, or `id`).
fn set_field(meta: &mut ImagePatch, k: &str, v: &str) -> CliResult<bool> {
    let text = || Some((!v.is_empty()).then(|| v.to_string()));
    match k {
        "name" => meta.name = text(),
        "disk_format" => meta.disk_format = text(),
        "container_format" => meta.container_format = text(),
        "location" => meta.location = text(),
        "owner" => meta.owner = text(),
        "checksum" => meta.checksum = text(),
        "is_public" => meta.is_public = Some(parse_bool(k, v)?),
        "min_ram" => meta.min_ram = Some(parse_count(k, v)?),
        "min_disk" => meta.min_disk = Some(parse_count(k, v)?),
        _ => return Ok(false),
    }
    Ok(true)
}

/// Builds listing filters: the known ones as they are, `property-K=V` (or `property_K=V`)
/// as a property filter, and any other `K=V` as the property filter `property-K=V`.
pub fn filters(fields: Vec<(String, String)>) -> CliResult<Filters> {
    let mut f = Filters::new();
    for (k, v) in fields {
        if FILTERS.contains(&k.as_str()) {
            if INTEGER_FILTERS.contains(&k.as_str()) {
                parse_count(&k, &v)?;
            }
            if k == "is_public"
                && !["true", "false", "none"].contains(&v.to_ascii_lowercase().as_str())
            {
                return Err(CliError::Usage(format!(
                    "is_public={v}: use true, false or none"
                )));
            }
            f = f.set(k, v);
        } else if let Some(key) = k.strip_prefix("property_").filter(|k| !k.is_empty()) {
            f = f.property(key, v);
        } else {
            f = f.property(&k, v);
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn field_value_pairs() {
        let f = parse(&args(&[
            "name=x",
            "Disk-Format=qcow2,",
            "location=http://h/?a=b",
        ]));
        assert_eq!(
            f.ok(),
            Some(vec![
                ("name".into(), "x".into()),
                ("disk_format".into(), "qcow2".into()),
                ("location".into(), "http://h/?a=b".into())
            ])
        );
        for bad in ["name", "=x", ""] {
            let e = parse(&args(&[bad])).err();
            assert!(
                matches!(&e, Some(CliError::Usage(m)) if m.starts_with("Arguments should be in the form of field=value")),
                "{bad}: {e:?}"
            );
        }
    }

    #[test]
    fn booleans() {
        for t in ["true", "TRUE", "on", "1"] {
            assert!(parse_bool("is_public", t).unwrap_or(false), "{t}");
        }
        for f in ["false", "Off", "0"] {
            assert!(!parse_bool("is_public", f).unwrap_or(true), "{f}");
        }
        assert!(parse_bool("is_public", "yes").is_err());
    }

    #[test]
    fn add_defaults_and_properties() {
        let plan = add_meta(
            parse(&args(&[
                "name=n",
                "distro=debian",
                "size=5",
                "is_public=on",
            ]))
            .unwrap_or_default(),
        );
        let plan = plan.ok();
        let meta = plan.as_ref().map(|p| p.meta.clone()).unwrap_or_default();
        assert_eq!(meta.disk_format, Some(Some("raw".into())));
        assert_eq!(meta.container_format, Some(Some("ovf".into())));
        assert_eq!(meta.is_public, Some(true));
        assert_eq!(meta.min_ram, Some(0));
        assert_eq!(meta.size, None);
        assert_eq!(
            meta.properties,
            Some([("distro".to_string(), Some("debian".to_string()))].into())
        );
        assert_eq!(
            plan.map(|p| p.warnings),
            Some(vec!["Found non-settable field size. Removing.".to_string()])
        );
        // virtual_size is removed too, not made a property.
        let plan = add_meta(vec![
            ("name".into(), "n".into()),
            ("virtual_size".into(), "1024".into()),
        ])
        .ok();
        assert_eq!(
            plan.as_ref().and_then(|p| p.meta.properties.clone()),
            Some(Properties::new())
        );
        assert_eq!(
            plan.map(|p| p.warnings),
            Some(vec![
                "Found non-settable field virtual_size. Removing.".to_string()
            ])
        );
        // An Amazon format on one side is the default of the other.
        let meta = add_meta(vec![
            ("name".into(), "k".into()),
            ("disk_format".into(), "aki".into()),
        ])
        .map(|p| p.meta)
        .unwrap_or_default();
        assert_eq!(meta.container_format, Some(Some("aki".into())));
        assert!(matches!(
            add_meta(vec![("distro".into(), "x".into())]),
            Err(CliError::Usage(_))
        ));
        assert!(matches!(
            add_meta(vec![
                ("name".into(), "x".into()),
                ("min_ram".into(), "lots".into())
            ]),
            Err(CliError::Usage(_))
        ));
    }

    #[test]
    fn update_replaces_properties_only_with_fields() {
        let p = update_meta(vec![]).map(|p| p.meta).unwrap_or_default();
        assert_eq!(p, ImagePatch::default());
        let plan = update_meta(vec![
            ("name".into(), "n".into()),
            ("status".into(), "active".into()),
        ])
        .ok();
        assert_eq!(
            plan.as_ref().and_then(|p| p.meta.properties.clone()),
            Some(Properties::new())
        );
        assert_eq!(plan.map(|p| p.warnings.len()), Some(1));
        // Only removed fields: nothing to change, properties kept.
        let p = update_meta(vec![("size".into(), "1".into())]).map(|p| p.meta);
        assert_eq!(p.ok(), Some(ImagePatch::default()));
        let plan = update_meta(vec![("virtual_size".into(), "1".into())]).ok();
        assert_eq!(
            plan.as_ref().map(|p| p.meta.clone()),
            Some(ImagePatch::default())
        );
        assert_eq!(
            plan.map(|p| p.warnings),
            Some(vec![
                "Found non-modifiable field virtual_size. Removing.".to_string()
            ])
        );
    }

    #[test]
    fn computed_hashes_are_not_settable() {
        for f in ["os_hash_algo", "os_hash_value"] {
            let fields = || vec![(f.to_string(), "x".to_string())];
            let mut named = fields();
            named.push(("name".to_string(), "n".to_string()));
            let add = add_meta(named).ok().map(|p| p.warnings);
            let want = format!("Found non-settable field {f}. Removing.");
            assert_eq!(add, Some(vec![want]), "{f}");
            let up = update_meta(fields()).ok().map(|p| p.warnings);
            let want = format!("Found non-modifiable field {f}. Removing.");
            assert_eq!(up, Some(vec![want]), "{f}");
        }
    }

    #[test]
    fn listing_filters() {
        let f = filters(vec![
            ("name".into(), "x".into()),
            ("size_min".into(), "3".into()),
            ("distro".into(), "debian".into()),
            ("property_arch".into(), "x86_64".into()),
        ])
        .unwrap_or_default();
        let keys: Vec<&str> = f.pairs().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["name", "size_min", "property-distro", "property-arch"]
        );
        assert!(filters(vec![("size_max".into(), "big".into())]).is_err());
        assert!(filters(vec![("is_public".into(), "maybe".into())]).is_err());
    }
}
