//! Output formats of spec §12.1: the index table, the show block, the details listing,
//! member lists and the ` %30s => %s` metadata dumps. Null values print as `None`, as
//! Diablo's Python `str()` did.

use std::io::{self, Write};

use serde_json::Value;

use crate::client::{ImageSummary, Member, SharedImage};
use crate::image::{Image, ImagePatch};

/// Column widths of the index table. The ID column is 36 wide (Diablo: 16) so that a UUID
/// fits.
const WIDTHS: [usize; 5] = [36, 30, 20, 20, 14];

fn clip(s: &str, width: usize) -> String {
    s.chars().take(width).collect()
}

fn left(s: &str, width: usize) -> String {
    format!("{:<width$}", clip(s, width))
}

fn right(s: &str, width: usize) -> String {
    format!("{:>width$}", clip(s, width))
}

fn none(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("None")
}

/// The two header lines of the index table.
pub fn index_header(out: &mut dyn Write) -> io::Result<()> {
    let titles = ["ID", "Name", "Disk Format", "Container Format", "Size"];
    let head: Vec<String> = titles.iter().zip(WIDTHS).map(|(t, w)| left(t, w)).collect();
    writeln!(out, "{}", head.join(" "))?;
    let rule: Vec<String> = WIDTHS.iter().map(|w| "-".repeat(*w)).collect();
    writeln!(out, "{}", rule.join(" "))
}

/// One row of the index table.
pub fn index_row(out: &mut dyn Write, i: &ImageSummary) -> io::Result<()> {
    writeln!(
        out,
        "{} {} {} {} {}",
        left(&i.id, WIDTHS[0]),
        left(none(&i.name), WIDTHS[1]),
        left(none(&i.disk_format), WIDTHS[2]),
        left(none(&i.container_format), WIDTHS[3]),
        right(&i.size.to_string(), WIDTHS[4]),
    )
}

/// The show block of one image. `host` is the `-H` host (the URI line has no port and no
/// `/v1`, as in Diablo).
pub fn show_block(out: &mut dyn Write, host: &str, i: &Image) -> io::Result<()> {
    writeln!(out, "URI: http://{host}/images/{}", i.id)?;
    writeln!(out, "Id: {}", i.id)?;
    writeln!(out, "Public: {}", if i.is_public() { "Yes" } else { "No" })?;
    writeln!(out, "Name: {}", none(&i.name))?;
    writeln!(out, "Status: {}", i.status)?;
    writeln!(out, "Size: {}", i.size)?;
    if let Some(n) = i.virtual_size {
        writeln!(out, "Virtual size: {n}")?;
    }
    writeln!(out, "Disk format: {}", none(&i.disk_format))?;
    writeln!(out, "Container format: {}", none(&i.container_format))?;
    writeln!(out, "Minimum Ram Required (MB): {}", i.min_ram)?;
    writeln!(out, "Minimum Disk Required (GB): {}", i.min_disk)?;
    if let Some(owner) = i.owner.as_deref().filter(|o| !o.is_empty()) {
        writeln!(out, "Owner: {owner}")?;
    }
    for (k, v) in &i.properties {
        writeln!(out, "Property '{k}': {}", none(v))?;
    }
    Ok(())
}

/// The rule line of `details`.
pub fn details_rule(out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "{}", "=".repeat(80))
}

/// Member lists: one member per line, ` *` after those who may share, and a legend when
/// any may.
pub fn members(out: &mut dyn Write, members: &[Member]) -> io::Result<()> {
    let rows: Vec<(&str, bool)> = members
        .iter()
        .map(|m| (m.member_id.as_str(), m.can_share))
        .collect();
    share_list(out, &rows)
}

/// The images shared with a member, in the format of [`members`].
pub fn shared_images(out: &mut dyn Write, shared: &[SharedImage]) -> io::Result<()> {
    let rows: Vec<(&str, bool)> = shared
        .iter()
        .map(|s| (s.image_id.as_str(), s.can_share))
        .collect();
    share_list(out, &rows)
}

fn share_list(out: &mut dyn Write, rows: &[(&str, bool)]) -> io::Result<()> {
    for (name, can_share) in rows {
        if *can_share {
            writeln!(out, "{name} *")?;
        } else {
            writeln!(out, "{name}")?;
        }
    }
    if rows.iter().any(|(_, c)| *c) {
        writeln!(out)?;
        writeln!(out, "(*: Can share image)")?;
    }
    Ok(())
}

/// ` %30s => %s` lines, sorted by key.
pub fn dump(out: &mut dyn Write, pairs: &[(String, String)]) -> io::Result<()> {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for (k, v) in sorted {
        writeln!(out, " {k:>30} => {v}")?;
    }
    Ok(())
}

/// A Python-style rendering of a string or null.
fn py_opt(v: &Option<String>) -> String {
    match v {
        Some(s) => s.clone(),
        None => "None".into(),
    }
}

fn py_bool(b: bool) -> String {
    if b { "True" } else { "False" }.into()
}

/// A Python-style dict of properties: `{'distro': 'Ubuntu'}`.
fn py_dict<'a>(pairs: impl Iterator<Item = (&'a String, String)>) -> String {
    let items: Vec<String> = pairs.map(|(k, v)| format!("'{k}': {v}")).collect();
    format!("{{{}}}", items.join(", "))
}

/// The metadata an `add` or `update` would send, as dump pairs.
pub fn patch_pairs(p: &ImagePatch) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, s: String| v.push((k.to_string(), s));
    if let Some(id) = &p.id {
        put("id", id.clone());
    }
    if let Some(x) = &p.name {
        put("name", py_opt(x));
    }
    if let Some(x) = &p.disk_format {
        put("disk_format", py_opt(x));
    }
    if let Some(x) = &p.container_format {
        put("container_format", py_opt(x));
    }
    if let Some(x) = p.is_public {
        put("is_public", py_bool(x));
    }
    if let Some(x) = &p.location {
        put("location", py_opt(x));
    }
    if let Some(x) = &p.checksum {
        put("checksum", py_opt(x));
    }
    if let Some(x) = &p.owner {
        put("owner", py_opt(x));
    }
    if let Some(x) = p.min_ram {
        put("min_ram", x.to_string());
    }
    if let Some(x) = p.min_disk {
        put("min_disk", x.to_string());
    }
    if let Some(props) = &p.properties {
        let d = py_dict(props.iter().map(|(k, v)| match v {
            Some(s) => (k, format!("'{s}'")),
            None => (k, "None".to_string()),
        }));
        put("properties", d);
    }
    v
}

/// Fields that Diablo did not have, left out of the `add -v` dump while unknown.
const SHOWN_ONCE_KNOWN: [&str; 3] = ["virtual_size", "os_hash_algo", "os_hash_value"];

/// A full image record as dump pairs (the `-v` output of `add`). An unknown
/// `virtual_size`, `os_hash_algo` or `os_hash_value` is left out, so that the dump stays
/// Diablo's.
pub fn image_pairs(i: &Image) -> Vec<(String, String)> {
    let json = i.to_json(true);
    let Value::Object(map) = json else {
        return Vec::new();
    };
    map.iter()
        .filter(|(k, v)| !(SHOWN_ONCE_KNOWN.contains(&k.as_str()) && v.is_null()))
        .map(|(k, v)| {
            let s = match v {
                Value::Object(props) => py_dict(props.iter().map(|(pk, pv)| {
                    let s = match pv {
                        Value::String(s) => format!("'{s}'"),
                        _ => "None".to_string(),
                    };
                    (pk, s)
                })),
                other => py_value(other),
            };
            (k.clone(), s)
        })
        .collect()
}

fn py_value(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(b) => py_bool(*b),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(f: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> String {
        let mut buf = Vec::new();
        let _ = f(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    #[test]
    fn index_table() {
        let row = ImageSummary {
            id: "0a7f1e2c-3b4d-4e5f-8a9b-0c1d2e3f4a5b".into(),
            name: Some("CliImage".into()),
            disk_format: Some("qcow2".into()),
            container_format: None,
            checksum: None,
            size: 3,
        };
        let t = text(|o| {
            index_header(o)?;
            index_row(o, &row)
        });
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "{:<36} {:<30} {:<20} {:<20} {:<14}",
                "ID", "Name", "Disk Format", "Container Format", "Size"
            )
        );
        assert!(lines[1].starts_with(&format!("{} {}", "-".repeat(36), "-".repeat(30))));
        assert_eq!(
            lines[2],
            format!(
                "{} {:<30} {:<20} {:<20} {:>14}",
                row.id, "CliImage", "qcow2", "None", 3
            )
        );
        let long = ImageSummary {
            name: Some("n".repeat(40)),
            ..row
        };
        let t = text(|o| index_row(o, &long));
        assert!(t.contains(&format!("{} ", "n".repeat(30))) && !t.contains(&"n".repeat(31)));
    }

    #[test]
    fn show_block_format() {
        let mut i = Image::new("368".into());
        i.name = Some("CliImage".into());
        i.visibility = crate::image::Visibility::Public;
        i.size = 3;
        i.disk_format = Some("qcow2".into());
        i.container_format = Some("bare".into());
        i.owner = Some("tenant1".into());
        i.properties.insert("distro".into(), Some("Ubuntu".into()));
        let t = text(|o| show_block(o, "127.0.0.1", &i));
        assert_eq!(
            t,
            "URI: http://127.0.0.1/images/368\nId: 368\nPublic: Yes\nName: CliImage\n\
             Status: active\nSize: 3\nDisk format: qcow2\nContainer format: bare\n\
             Minimum Ram Required (MB): 0\nMinimum Disk Required (GB): 0\nOwner: tenant1\n\
             Property 'distro': Ubuntu\n"
        );
    }

    #[test]
    fn show_block_virtual_size_only_when_known() {
        let mut i = Image::new("368".into());
        i.size = 3;
        let unknown = text(|o| show_block(o, "h", &i));
        assert!(!unknown.contains("Virtual size"), "{unknown}");
        i.virtual_size = Some(1073741824);
        let known = text(|o| show_block(o, "h", &i));
        assert!(
            known.contains("\nSize: 3\nVirtual size: 1073741824\nDisk format: None\n"),
            "{known}"
        );
    }

    #[test]
    fn add_dump_shows_virtual_size_only_when_known() {
        let mut i = Image::new("368".into());
        let has = |i: &Image| image_pairs(i).iter().any(|(k, _)| k == "virtual_size");
        assert!(!has(&i));
        i.virtual_size = Some(5);
        assert!(image_pairs(&i).contains(&("virtual_size".into(), "5".into())));
    }

    #[test]
    fn add_dump_shows_the_multihash_only_when_known() {
        let mut i = Image::new("368".into());
        let keys =
            |i: &Image| -> Vec<String> { image_pairs(i).into_iter().map(|(k, _)| k).collect() };
        assert!(!keys(&i).iter().any(|k| k.starts_with("os_hash")));
        i.os_hash_algo = Some("sha512".into());
        i.os_hash_value = Some("cf83".into());
        let pairs = image_pairs(&i);
        assert!(
            pairs.contains(&("os_hash_algo".into(), "sha512".into())),
            "{pairs:?}"
        );
        assert!(
            pairs.contains(&("os_hash_value".into(), "cf83".into())),
            "{pairs:?}"
        );
    }

    #[test]
    fn member_lists() {
        let m = [
            Member {
                member_id: "a".into(),
                can_share: false,
                ..Member::default()
            },
            Member {
                member_id: "b".into(),
                can_share: true,
                ..Member::default()
            },
        ];
        assert_eq!(text(|o| members(o, &m)), "a\nb *\n\n(*: Can share image)\n");
        assert_eq!(text(|o| members(o, &m[..1])), "a\n");
    }

    #[test]
    fn dumps() {
        let p = ImagePatch {
            name: Some(Some("n".into())),
            is_public: Some(false),
            properties: Some([("distro".to_string(), Some("x".to_string()))].into()),
            ..ImagePatch::default()
        };
        let t = text(|o| dump(o, &patch_pairs(&p)));
        assert_eq!(
            t,
            format!(
                " {:>30} => False\n {:>30} => n\n {:>30} => {{'distro': 'x'}}\n",
                "is_public", "name", "properties"
            )
        );
    }
}
