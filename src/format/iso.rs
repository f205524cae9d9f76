//! ISO 9660: the primary volume descriptor in sector 16 (byte 32768) gives the volume size
//! (blocks × block size), which must fit in the data; the virtual size is the data's size,
//! as qemu sees a disc (current Glance reports the volume size, which leaves out a hybrid
//! ISO's appended partitions). An ISO may carry an MBR or GPT in its first 32 KiB (a hybrid
//! ISO, bootable from a disk); that is expected and not checked as a partition table.
//!
//! Refused: a block size other than 512–4096 (a power of two), an empty volume, and a
//! volume larger than the data (a truncated image).

use super::bytes::{le16, le32};
use super::{Format, Parser, Refusal, Step};

const DESCRIPTOR_AT: usize = 16 * 2048;

/// Whether the head holds a primary volume descriptor (`\x01CD001\x01` at sector 16).
pub(crate) fn is_iso(head: &[u8]) -> bool {
    head.get(DESCRIPTOR_AT..DESCRIPTOR_AT + 7) == Some(b"\x01CD001\x01")
}

/// The volume size from the primary volume descriptor.
#[derive(Debug, Default)]
pub(crate) struct Iso {
    volume: u64,
}

impl Parser for Iso {
    fn format(&self) -> Format {
        Format::Iso
    }

    fn head(&mut self, head: &[u8], _at_eof: bool) -> Step {
        let pvd = &head[DESCRIPTOR_AT..];
        let missing = || Refusal::truncated("iso image is truncated inside its volume descriptor");
        let blocks = u64::from(le32(pvd, 80).ok_or_else(missing)?);
        let block_size = u64::from(le16(pvd, 128).ok_or_else(missing)?);
        if !(512..=4096).contains(&block_size) || !block_size.is_power_of_two() {
            return Err(Refusal::invalid(format!(
                "iso logical block size {block_size} is invalid"
            )));
        }
        if blocks == 0 {
            return Err(Refusal::invalid("iso volume has no blocks"));
        }
        self.volume = blocks * block_size;
        Ok(Vec::new())
    }

    fn end(&mut self, total: u64, _tail: &[u8]) -> Result<u64, Refusal> {
        if self.volume > total {
            return Err(Refusal::truncated(format!(
                "iso image is truncated: its volume has {} bytes but the data {total}",
                self.volume
            )));
        }
        // The hypervisor sees the whole file as the disc (qemu reads an ISO as raw): data
        // after the volume, such as a hybrid ISO's appended EFI partition, is part of it.
        Ok(total)
    }
}
