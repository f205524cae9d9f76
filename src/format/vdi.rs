//! VirtualBox VDI: a little-endian header of 400 bytes after a 64-byte text banner, then
//! the block map and the blocks.
//!
//! Refused: differencing images (a parent or link UUID: they read another image), image
//! types other than dynamic and fixed, versions other than 1.1, sector and block sizes qemu
//! does not open, a disk larger than its blocks, a block map that overlaps the data, and
//! allocated blocks beyond the end of the data.

use super::bytes::{le32, le64};
use super::{Format, Parser, Problem, Refusal, Step};

const SIGNATURE: u32 = 0xbeda_107f;
const VERSION_1_1: u32 = 0x0001_0001;
const HEADER_END: usize = 0x1c8;
const TYPE_DYNAMIC: u32 = 1;
const TYPE_FIXED: u32 = 2;
const TYPE_DIFF: u32 = 4;
const BLOCK_SIZE: u64 = 1024 * 1024;
/// qemu's VDI_BLOCKS_IN_IMAGE_MAX.
const MAX_BLOCKS: u64 = 0x3fff_ffff;

/// Whether the head has VDI's signature at 0x40.
pub(crate) fn is_vdi(head: &[u8]) -> bool {
    le32(head, 0x40) == Some(SIGNATURE)
}

/// The values the end check needs.
#[derive(Debug, Default)]
pub(crate) struct Vdi {
    size: u64,
    data_end: u64,
}

impl Parser for Vdi {
    fn format(&self) -> Format {
        Format::Vdi
    }

    fn head(&mut self, h: &[u8], _at_eof: bool) -> Step {
        if h.len() < HEADER_END {
            return Err(Refusal::truncated(format!(
                "vdi image is truncated: the data ends ({} bytes) inside its header",
                h.len()
            )));
        }
        let u32_at = |at| u64::from(le32(h, at).unwrap_or(0));
        let version = le32(h, 0x44).unwrap_or(0);
        if version != VERSION_1_1 {
            return Err(Refusal::invalid(format!(
                "vdi version {version:#x} is not supported (only 1.1)"
            )));
        }
        let kind = le32(h, 0x4c).unwrap_or(0);
        let zero = |at: usize| h[at..at + 16].iter().all(|&b| b == 0);
        if kind == TYPE_DIFF || !zero(0x1a8) || !zero(0x1b8) {
            return Err(Refusal::new(
                Problem::BackingFile,
                "vdi image is a differencing image: it would make the hypervisor read a parent \
                 image",
            ));
        }
        if kind != TYPE_DYNAMIC && kind != TYPE_FIXED {
            return Err(Refusal::invalid(format!(
                "vdi image type {kind} is not supported"
            )));
        }
        let (bmap, data) = (u32_at(0x154), u32_at(0x158));
        let sector_size = u32_at(0x168);
        let size = le64(h, 0x170).unwrap_or(0);
        let (block_size, block_extra) = (u32_at(0x178), u32_at(0x17c));
        let (blocks, allocated) = (u32_at(0x180), u32_at(0x184));
        if sector_size != 512 || block_size != BLOCK_SIZE || block_extra != 0 {
            return Err(Refusal::invalid(
                "vdi sector or block size is not supported (512 bytes, 1 MiB blocks)",
            ));
        }
        if blocks > MAX_BLOCKS || allocated > blocks || size > blocks * BLOCK_SIZE {
            return Err(Refusal::invalid(format!(
                "vdi disk size {size} does not fit its {blocks} blocks"
            )));
        }
        if bmap < 512 || bmap % 512 != 0 || bmap + blocks * 4 > data || data % 512 != 0 {
            return Err(Refusal::invalid("vdi block map or data offset is invalid"));
        }
        self.size = size;
        self.data_end = data + allocated * BLOCK_SIZE;
        Ok(Vec::new())
    }

    fn end(&mut self, total: u64, _tail: &[u8]) -> Result<u64, Refusal> {
        if self.data_end > total {
            return Err(Refusal::truncated(format!(
                "vdi image is truncated: its allocated blocks end at {} but the data has \
                 {total} bytes",
                self.data_end
            )));
        }
        Ok(self.size)
    }
}
