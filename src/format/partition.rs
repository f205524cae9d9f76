//! Raw data, and raw data with a partition table: an MBR (the boot signature at 510), or a
//! GPT behind a protective MBR. At the end, a fixed VHD's footer is recognised too.
//!
//! The MBR checks follow current Glance: every entry's boot flag is 0x00 or 0x80, at least
//! one partition is defined, and a protective MBR (type 0xEE) is the only entry, starts at
//! LBA 1 and is followed by a GPT header. A FAT, NTFS or exFAT boot sector (a bare file
//! system, not a partitioned disk) carries the same signature and is raw.

use super::bytes::le32;
use super::{Format, Parser, Refusal, Step, vhd};

const SIGNATURE_AT: usize = 510;
const ENTRIES_AT: usize = 446;
const GPT_PROTECTIVE: u8 = 0xEE;

/// The partition table format of a head, if it has one.
pub(crate) fn detect(head: &[u8]) -> Option<Format> {
    if head.len() < 512 || head[SIGNATURE_AT..512] != [0x55, 0xAA] || is_boot_sector(head) {
        return None;
    }
    let gpt = (0..4).any(|i| head[ENTRIES_AT + 16 * i + 4] == GPT_PROTECTIVE);
    Some(if gpt { Format::Gpt } else { Format::Mbr })
}

/// A file system's own boot sector rather than a partition table.
fn is_boot_sector(head: &[u8]) -> bool {
    let fat = head[0x10] == 2 && head[0x15] == 0xF8;
    let oem = &head[3..11];
    fat || oem == b"NTFS    " || oem == b"EXFAT   "
}

/// Raw data, partitioned or not; a fixed VHD if its footer is found at the end.
pub(crate) struct RawFamily {
    format: Format,
}

impl RawFamily {
    pub(crate) fn new(partitioned: Option<Format>) -> RawFamily {
        RawFamily {
            format: partitioned.unwrap_or(Format::Raw),
        }
    }
}

impl Parser for RawFamily {
    fn format(&self) -> Format {
        self.format
    }

    fn head(&mut self, head: &[u8], _at_eof: bool) -> Step {
        if self.format != Format::Raw {
            check_mbr(head)?;
        }
        Ok(Vec::new())
    }

    fn end(&mut self, total: u64, tail: &[u8]) -> Result<u64, Refusal> {
        if vhd::is_fixed_footer(tail) {
            self.format = Format::VhdFixed;
            return vhd::fixed_size(total, tail);
        }
        Ok(total)
    }
}

/// The MBR's four entries (and the GPT header behind a protective one).
fn check_mbr(head: &[u8]) -> Result<(), Refusal> {
    let mut defined = Vec::new();
    let mut protective = false;
    for i in 0..4 {
        let e = &head[ENTRIES_AT + 16 * i..ENTRIES_AT + 16 * (i + 1)];
        let (boot, kind) = (e[0], e[4]);
        if boot != 0x00 && boot != 0x80 {
            return Err(Refusal::invalid(format!(
                "MBR partition entry {i} has an invalid boot flag {boot:#04x}"
            )));
        }
        if kind != 0 {
            defined.push(i);
        }
        if kind == GPT_PROTECTIVE {
            protective = true;
            if e[1..4] != [0x00, 0x02, 0x00] || le32(e, 8) != Some(1) {
                return Err(Refusal::invalid(
                    "GPT protective MBR entry does not start at LBA 1",
                ));
            }
        }
    }
    if defined.is_empty() {
        return Err(Refusal::invalid("MBR defines no partitions"));
    }
    if protective && defined != [0] {
        return Err(Refusal::invalid(
            "GPT protective MBR defines other partitions besides the protective one",
        ));
    }
    if protective && !has_gpt_header(head) {
        return Err(Refusal::invalid(
            "GPT protective MBR is not followed by a GPT header",
        ));
    }
    Ok(())
}

/// `EFI PART` at LBA 1, for 512-byte or 4 KiB sectors. A head cut short (tiny data) is
/// checked as far as it goes.
fn has_gpt_header(head: &[u8]) -> bool {
    [512usize, 4096]
        .iter()
        .any(|&at| head.get(at..at + 8) == Some(b"EFI PART"))
}
