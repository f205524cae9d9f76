//! VHD (Virtual PC, qemu's `vpc`): the 512-byte big-endian footer, copied to the start of a
//! dynamic disk and followed there by the dynamic disk header (`cxsparse`) and the block
//! allocation table. A fixed disk is raw data with the footer at the end only (qemu probes
//! it as raw; told `vpc` it reads the footer).
//!
//! Refused: differencing disks (they read a parent disk), unknown disk types, block sizes
//! and table sizes qemu would not open, and a table or disk that lies beyond the data.

use super::bytes::{be16, be32, be64};
use super::{Format, Parser, Problem, Refusal, Step, Want};

const FOOTER_LEN: usize = 512;
const DYNAMIC_HEADER_LEN: usize = 1024;
const REGION_DYNAMIC: u8 = 1;
const TYPE_FIXED: u32 = 2;
const TYPE_DYNAMIC: u32 = 3;
const TYPE_DIFFERENCING: u32 = 4;
/// qemu's VHD_MAX_SECTORS (about 2 TiB).
const MAX_SECTORS: u64 = 0xff00_0000;

/// The footer fields that matter.
struct Footer {
    disk_type: u32,
    data_offset: u64,
    size: u64,
}

/// Parses a footer (at the start of a dynamic disk, or the end of a fixed one) and works
/// out the disk size as qemu does: the CHS geometry for images made by Virtual PC and
/// Virtual Server, the current size field for everything else.
fn footer(b: &[u8]) -> Result<Footer, Refusal> {
    let missing = || {
        Refusal::truncated(format!(
            "vhd image is truncated: the data ends ({} bytes) inside its footer",
            b.len()
        ))
    };
    if b.len() < FOOTER_LEN || !b.starts_with(b"conectix") {
        return Err(missing());
    }
    let disk_type = be32(b, 60).ok_or_else(missing)?;
    let current = be64(b, 48).ok_or_else(missing)?;
    let cylinders = u64::from(be16(b, 56).ok_or_else(missing)?);
    let (heads, sectors) = (u64::from(b[58]), u64::from(b[59]));
    let size = if matches!(&b[28..32], b"vpc " | b"vs  ") {
        cylinders * heads * sectors * 512
    } else {
        current
    };
    if size / 512 > MAX_SECTORS {
        return Err(Refusal::invalid(format!(
            "vhd disk size of {size} bytes is larger than the format allows"
        )));
    }
    Ok(Footer {
        disk_type,
        data_offset: be64(b, 16).ok_or_else(missing)?,
        size,
    })
}

fn check_type(disk_type: u32, allowed: u32) -> Result<(), Refusal> {
    match disk_type {
        TYPE_DIFFERENCING => Err(Refusal::new(
            Problem::BackingFile,
            "vhd image is a differencing disk: it would make the hypervisor read a parent disk",
        )),
        t if t == allowed => Ok(()),
        t => Err(Refusal::invalid(format!(
            "vhd disk type {t} is not supported here"
        ))),
    }
}

/// A dynamic VHD (footer copy at the start).
#[derive(Debug, Default)]
pub(crate) struct Vhd {
    size: u64,
    bat_end: u64,
}

impl Parser for Vhd {
    fn format(&self) -> Format {
        Format::Vhd
    }

    fn head(&mut self, head: &[u8], _at_eof: bool) -> Step {
        let f = footer(head)?;
        if f.disk_type == TYPE_FIXED {
            // A fixed disk with a copy of its footer in front: qemu reads it as dynamic and
            // fails; nobody writes these.
            return Err(Refusal::invalid(
                "vhd fixed disk has a footer copy at the start",
            ));
        }
        check_type(f.disk_type, TYPE_DYNAMIC)?;
        if f.data_offset < FOOTER_LEN as u64 || f.data_offset > super::MAX_REGION as u64 {
            return Err(Refusal::invalid(format!(
                "vhd dynamic header offset {} is invalid",
                f.data_offset
            )));
        }
        self.size = f.size;
        Ok(vec![Want {
            id: REGION_DYNAMIC,
            offset: f.data_offset,
            len: DYNAMIC_HEADER_LEN,
        }])
    }

    fn region(&mut self, _id: u8, d: &[u8]) -> Step {
        if !d.starts_with(b"cxsparse") {
            return Err(Refusal::invalid("vhd dynamic disk header is missing"));
        }
        let bad = || Refusal::invalid("vhd dynamic disk header is invalid");
        let table_offset = be64(d, 16).ok_or_else(bad)?;
        let entries = u64::from(be32(d, 28).ok_or_else(bad)?);
        let block_size = u64::from(be32(d, 32).ok_or_else(bad)?);
        if !block_size.is_power_of_two() || block_size < 512 {
            return Err(Refusal::invalid(format!(
                "vhd block size {block_size} is invalid"
            )));
        }
        if entries * block_size < self.size {
            return Err(Refusal::invalid(format!(
                "vhd block table of {entries} entries does not cover the disk size {}",
                self.size
            )));
        }
        if entries > MAX_SECTORS {
            return Err(Refusal::invalid("vhd block table is too large"));
        }
        self.bat_end = table_offset.saturating_add(entries * 4);
        Ok(Vec::new())
    }

    fn end(&mut self, total: u64, _tail: &[u8]) -> Result<u64, Refusal> {
        if self.bat_end > total {
            return Err(Refusal::truncated(format!(
                "vhd image is truncated: its block table ends at {} but the data has {total} \
                 bytes",
                self.bat_end
            )));
        }
        Ok(self.size)
    }
}

/// Whether the last 512 bytes of the data are a fixed VHD's footer.
pub(crate) fn is_fixed_footer(tail: &[u8]) -> bool {
    tail.len() >= FOOTER_LEN && tail[tail.len() - FOOTER_LEN..].starts_with(b"conectix")
}

/// Checks a fixed disk's footer (the last 512 bytes) and returns its disk size.
pub(crate) fn fixed_size(total: u64, tail: &[u8]) -> Result<u64, Refusal> {
    let f = footer(&tail[tail.len() - FOOTER_LEN..])?;
    check_type(f.disk_type, TYPE_FIXED)?;
    let data = total - FOOTER_LEN as u64;
    if f.size > data {
        return Err(Refusal::truncated(format!(
            "vhd image is truncated: its footer describes a disk of {} bytes but only {data} \
             bytes precede it",
            f.size
        )));
    }
    Ok(f.size)
}
