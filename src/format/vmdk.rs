//! VMDK: the hosted sparse extent (`KDMV`, monolithicSparse and streamOptimized) with its
//! embedded descriptor, and text descriptor files.
//!
//! A descriptor lists extents, each a file the hypervisor opens, and may name a parent
//! disk. Only the single-file create types are accepted: `monolithicSparse` and
//! `streamOptimized`, whose one `SPARSE` extent is the file itself (a plain name, no path);
//! a text descriptor always names other files and is refused, as is a parent
//! (`parentFileNameHint`). Descriptor lines must be comments, `ddb.` entries, `key=value`
//! pairs or extents, as in current Glance.

use super::bytes::{le32, le64};
use super::{Format, Parser, Problem, Refusal, Step, Want};

const SECTOR: u64 = 512;
/// Descriptor size qemu accepts (1 MiB).
const MAX_DESCRIPTOR: u64 = 1024 * 1024;
/// `gdOffset` meaning "the grain directory is described by the footer".
const GD_AT_END: u64 = u64::MAX;
/// qemu's limit on the grain size (sectors).
const MAX_GRAIN_SECTORS: u64 = 0x20_0000;
const REGION_DESCRIPTOR: u8 = 1;
const ACCEPTED_TYPES: [&str; 2] = ["monolithicSparse", "streamOptimized"];

/// Whether a head is VMDK: the sparse magic, the old `COWD` one, or a text descriptor as
/// qemu probes it (the first line that is not a comment or blank is `version=1|2|3`).
pub(crate) fn is_vmdk(head: &[u8]) -> bool {
    head.starts_with(b"KDMV") || head.starts_with(b"COWD") || is_text_descriptor(head)
}

fn is_text_descriptor(head: &[u8]) -> bool {
    let probe = &head[..head.len().min(2048)];
    for line in probe.split(|&b| b == b'\n') {
        let line = line.trim_ascii_start();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        return matches!(line, b"version=1" | b"version=2" | b"version=3");
    }
    false
}

/// The header values the end check needs.
#[derive(Debug, Default)]
pub(crate) struct Vmdk {
    version: u32,
    capacity: u64,
    descriptor: (u64, u64),
    gd_at_end: bool,
    gd_offset: u64,
}

impl Parser for Vmdk {
    fn format(&self) -> Format {
        Format::Vmdk
    }

    fn head(&mut self, head: &[u8], at_eof: bool) -> Step {
        if head.starts_with(b"COWD") {
            return Err(Refusal::invalid(
                "vmdk version 3 (COWD) sparse extents are not supported",
            ));
        }
        if !head.starts_with(b"KDMV") {
            if !at_eof && head.len() >= super::HEAD_LEN && !head.contains(&0) {
                return Err(Refusal::invalid(
                    "vmdk descriptor file is longer than 64 KiB",
                ));
            }
            check_descriptor(head, false)?;
            // A valid text descriptor always names other files (checked above); unreachable
            // in practice, kept as the safe answer.
            return Err(extent_refusal("the descriptor is a separate file"));
        }
        self.sparse_header(head)?;
        let (offset, len) = self.descriptor;
        Ok(vec![Want {
            id: REGION_DESCRIPTOR,
            offset,
            len: len as usize, // at most MAX_DESCRIPTOR
        }])
    }

    fn region(&mut self, id: u8, data: &[u8]) -> Step {
        if id == REGION_DESCRIPTOR {
            check_descriptor(data, true)?;
        }
        Ok(Vec::new())
    }

    fn end(&mut self, total: u64, tail: &[u8]) -> Result<u64, Refusal> {
        if self.gd_at_end {
            self.check_footer(tail)?;
        } else if self.gd_offset.saturating_mul(SECTOR) >= total {
            return Err(Refusal::truncated(format!(
                "vmdk image is truncated: its grain directory at sector {} lies beyond the \
                 {total} bytes of data",
                self.gd_offset
            )));
        }
        Ok(self.capacity * SECTOR)
    }
}

impl Vmdk {
    /// The hosted sparse extent header (512 bytes, little-endian).
    fn sparse_header(&mut self, head: &[u8]) -> Result<(), Refusal> {
        let h = parse_sparse(head)?;
        if !(1..=3).contains(&h.version) {
            return Err(Refusal::invalid(format!(
                "vmdk version {} is not supported",
                h.version
            )));
        }
        check_geometry(&h)?;
        if h.desc_sector != 1 || h.desc_sectors == 0 || h.desc_sectors * SECTOR > MAX_DESCRIPTOR {
            return Err(Refusal::invalid(format!(
                "vmdk embedded descriptor at sector {} ({} sectors) is invalid: it must follow \
                 the header",
                h.desc_sector, h.desc_sectors
            )));
        }
        self.version = h.version;
        self.capacity = h.capacity;
        self.descriptor = (h.desc_sector * SECTOR, h.desc_sectors * SECTOR);
        self.gd_at_end = h.gd_offset == GD_AT_END;
        self.gd_offset = h.gd_offset;
        Ok(())
    }

    /// streamOptimized images written in one pass put the grain directory's position in a
    /// footer: a footer marker, a copy of the header, an end-of-stream marker. qemu reads the
    /// capacity from that copy.
    fn check_footer(&mut self, tail: &[u8]) -> Result<(), Refusal> {
        if tail.len() < 3 * SECTOR as usize {
            return Err(Refusal::truncated(
                "vmdk image is truncated: it has no room for its footer",
            ));
        }
        let start = tail.len() - 3 * SECTOR as usize;
        let marker = &tail[start..start + 512];
        let footer = &tail[start + 512..start + 1024];
        let eos = &tail[start + 1024..];
        let is_marker = |m: &[u8], kind: u32| {
            le64(m, 0) == Some(0) && le32(m, 8) == Some(0) && le32(m, 12) == Some(kind)
        };
        let padded = |m: &[u8]| m[16..].iter().all(|&b| b == 0);
        if !is_marker(marker, 3) || !is_marker(eos, 0) || !padded(marker) || !padded(eos) {
            return Err(Refusal::invalid("vmdk stream footer markers are invalid"));
        }
        let f = parse_sparse(footer)?;
        if !footer.starts_with(b"KDMV") || f.version != self.version {
            return Err(Refusal::invalid(
                "vmdk footer does not match the header (signature or version)",
            ));
        }
        if (f.desc_sector * SECTOR, f.desc_sectors * SECTOR) != self.descriptor {
            return Err(Refusal::invalid(
                "vmdk footer names a different descriptor than the header",
            ));
        }
        if f.gd_offset == GD_AT_END {
            return Err(Refusal::invalid("vmdk footer points to another footer"));
        }
        check_geometry(&f)?;
        self.capacity = f.capacity;
        Ok(())
    }
}

/// The fields of a sparse extent header.
struct Sparse {
    version: u32,
    capacity: u64,
    grain: u64,
    desc_sector: u64,
    desc_sectors: u64,
    gtes_per_gt: u32,
    gd_offset: u64,
}

fn parse_sparse(h: &[u8]) -> Result<Sparse, Refusal> {
    let missing = || {
        Refusal::truncated(format!(
            "vmdk image is truncated: the data ends ({} bytes) inside its header",
            h.len()
        ))
    };
    if h.len() < SECTOR as usize {
        return Err(missing());
    }
    Ok(Sparse {
        version: le32(h, 4).ok_or_else(missing)?,
        capacity: le64(h, 12).ok_or_else(missing)?,
        grain: le64(h, 20).ok_or_else(missing)?,
        desc_sector: le64(h, 28).ok_or_else(missing)?,
        desc_sectors: le64(h, 36).ok_or_else(missing)?,
        gtes_per_gt: le32(h, 44).ok_or_else(missing)?,
        gd_offset: le64(h, 56).ok_or_else(missing)?,
    })
}

/// Capacity, grain size and grain table size, as qemu checks them.
fn check_geometry(h: &Sparse) -> Result<(), Refusal> {
    if h.capacity > super::MAX_VIRTUAL_SIZE / SECTOR {
        return Err(Refusal::invalid(format!(
            "vmdk capacity of {} sectors is too large",
            h.capacity
        )));
    }
    if h.grain == 0 || h.grain > MAX_GRAIN_SECTORS || !h.grain.is_power_of_two() {
        return Err(Refusal::invalid(format!(
            "vmdk grain size of {} sectors is invalid",
            h.grain
        )));
    }
    if h.gtes_per_gt == 0 {
        return Err(Refusal::invalid("vmdk grain table size is zero"));
    }
    let l1_entry_sectors = u64::from(h.gtes_per_gt) * h.grain;
    if h.capacity.div_ceil(l1_entry_sectors) > 512 * 1024 * 1024 / 4 {
        return Err(Refusal::invalid("vmdk grain directory is too large"));
    }
    Ok(())
}

fn extent_refusal(detail: &str) -> Refusal {
    Refusal::new(
        Problem::Extent,
        format!(
            "vmdk descriptor names an extent other than the image itself ({detail}): it would \
             make the hypervisor read another file"
        ),
    )
}

/// Checks a descriptor: `embedded` when it sits inside a sparse extent (its one extent is
/// that file), else it is a descriptor file, which always names other files.
fn check_descriptor(data: &[u8], embedded: bool) -> Result<(), Refusal> {
    // The embedded descriptor is NUL-padded.
    let text = data.split(|&b| b == 0).next().unwrap_or_default();
    let Ok(text) = std::str::from_utf8(text) else {
        return Err(Refusal::invalid("vmdk descriptor is not text"));
    };
    if !text.is_ascii() {
        return Err(Refusal::invalid("vmdk descriptor is not ASCII text"));
    }
    let mut create_type = None;
    let mut extents = Vec::new();
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with("ddb.") {
            continue;
        }
        if let Some((key, value)) = line.split_once('=')
            && !key.trim().contains(' ')
        {
            let key = key.trim();
            let value = value.trim().trim_matches('"');
            if key.eq_ignore_ascii_case("createType") {
                create_type = Some(value.to_string());
            } else if key.eq_ignore_ascii_case("parentFileNameHint") {
                return Err(Refusal::new(
                    Problem::BackingFile,
                    "vmdk descriptor names a parent disk (parentFileNameHint): it would make \
                     the hypervisor read another file",
                ));
            }
            continue;
        }
        let access = line.split_whitespace().next().unwrap_or_default();
        if ["RW", "RDONLY", "NOACCESS"]
            .iter()
            .any(|a| a.eq_ignore_ascii_case(access))
        {
            extents.push(line.to_string());
            continue;
        }
        return Err(Refusal::invalid(format!(
            "vmdk descriptor has an unrecognised line: {:?}",
            truncate(line, 80)
        )));
    }
    let create_type = create_type.unwrap_or_default();
    if !ACCEPTED_TYPES
        .iter()
        .any(|t| t.eq_ignore_ascii_case(&create_type))
    {
        return Err(Refusal::new(
            Problem::CreateType,
            format!(
                "vmdk create type {:?} is not accepted (only monolithicSparse and \
                 streamOptimized, whose data is in the image itself)",
                truncate(&create_type, 64)
            ),
        ));
    }
    if !embedded {
        return Err(extent_refusal(
            "a descriptor file's extents are separate files",
        ));
    }
    check_extents(&extents)
}

/// The one extent of a single-file VMDK: `RW <sectors> SPARSE "<plain name>"`.
fn check_extents(extents: &[String]) -> Result<(), Refusal> {
    let [extent] = extents else {
        return Err(extent_refusal(&format!(
            "{} extents where the single-file types have one",
            extents.len()
        )));
    };
    let mut words = extent.split_whitespace();
    let (_access, _sectors, kind) = (words.next(), words.next(), words.next());
    let name = extent.split('"').nth(1).unwrap_or_default();
    if !kind.is_some_and(|k| k.eq_ignore_ascii_case("SPARSE")) {
        return Err(extent_refusal(&format!(
            "extent type {}",
            truncate(kind.unwrap_or("missing"), 16)
        )));
    }
    if name.is_empty() || name.contains(['/', '\\']) || name.contains("..") {
        return Err(extent_refusal(&format!("file {:?}", truncate(name, 80))));
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
