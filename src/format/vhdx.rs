//! VHDX (MS-VHDX): a 64 KiB file identifier, two headers, two region tables (at 192 KiB and
//! 256 KiB) pointing to the block allocation table and the metadata region, whose table
//! points to the metadata items: the virtual disk size and the file parameters.
//!
//! Refused: a differencing disk (the file parameters' HasParent flag, or a parent locator
//! item: it reads a parent disk), a region table or metadata table that is malformed or
//! names a required region or item this inspector does not know, regions that are not
//! where the format puts them (1 MiB aligned, after the header section), a virtual size
//! over the format's 64 TiB, and regions beyond the end of the data.

use super::bytes::{le16, le32, le64};
use super::{Format, Parser, Problem, Refusal, Step, Want};

const REGION_TABLE_AT: u64 = 192 * 1024;
const TABLE_LEN: usize = 64 * 1024;
const MIB: u64 = 1024 * 1024;
const MAX_ENTRIES: u32 = 2047;
const MAX_VIRTUAL: u64 = 64 * 1024 * 1024 * 1024 * 1024;

const GUID_BAT: &str = "2DC27766-F623-4200-9D64-115E9BFD4A08";
const GUID_METADATA: &str = "8B7CA206-4790-4B9A-B8FE-575F050F886E";
const ITEM_FILE_PARAMETERS: &str = "CAA16737-FA36-4D43-B3B6-33F0AA44E76B";
const ITEM_VIRTUAL_DISK_SIZE: &str = "2FA54224-CD1B-4876-B211-5DBED83BF4B8";
const ITEM_PARENT_LOCATOR: &str = "A8D35F2D-B30B-454D-ABF7-D3D84834AB0C";
/// Items a disk may carry besides the ones read here.
const ITEMS_KNOWN: [&str; 3] = [
    "8141BF1D-A96F-4709-BA47-F233A8FAAB5F", // logical sector size
    "CDA348C7-445D-4471-9CC9-E9885251C556", // physical sector size
    "BECA12AB-B2E6-4523-93EF-C309E000C746", // page 83 data
];

const ID_REGIONS: u8 = 1;
const ID_METADATA: u8 = 2;
const ID_SIZE: u8 = 3;
const ID_PARAMETERS: u8 = 4;

/// What has been learnt so far.
#[derive(Debug, Default)]
pub(crate) struct Vhdx {
    /// Offset of the metadata region.
    metadata_at: u64,
    /// End of the furthest region (checked against the data's size).
    regions_end: u64,
    size: Option<u64>,
    parameters_seen: bool,
}

/// A Microsoft GUID (mixed-endian) in its usual upper-case text form.
fn guid(b: &[u8]) -> String {
    let (a, rest) = b.split_at(4);
    let (b2, rest) = rest.split_at(2);
    let (c, d) = rest.split_at(2);
    let a = u32::from_le_bytes([a[0], a[1], a[2], a[3]]);
    let b2 = u16::from_le_bytes([b2[0], b2[1]]);
    let c = u16::from_le_bytes([c[0], c[1]]);
    let hex = |s: &[u8]| s.iter().map(|x| format!("{x:02X}")).collect::<String>();
    format!(
        "{a:08X}-{b2:04X}-{c:04X}-{}-{}",
        hex(&d[..2]),
        hex(&d[2..8])
    )
}

fn invalid(what: &str) -> Refusal {
    Refusal::invalid(format!("vhdx {what}"))
}

impl Parser for Vhdx {
    fn format(&self) -> Format {
        Format::Vhdx
    }

    fn head(&mut self, _head: &[u8], _at_eof: bool) -> Step {
        Ok(vec![Want {
            id: ID_REGIONS,
            offset: REGION_TABLE_AT,
            len: TABLE_LEN,
        }])
    }

    fn region(&mut self, id: u8, data: &[u8]) -> Step {
        match id {
            ID_REGIONS => self.regions(data),
            ID_METADATA => self.metadata(data),
            ID_SIZE => {
                let size = le64(data, 0).ok_or_else(|| invalid("virtual disk size is missing"))?;
                if size == 0 || size > MAX_VIRTUAL {
                    return Err(invalid(&format!("virtual disk size {size} is invalid")));
                }
                self.size = Some(size);
                Ok(Vec::new())
            }
            _ => {
                let flags = le32(data, 4).unwrap_or(0);
                if flags & 0b10 != 0 {
                    return Err(parent_refusal());
                }
                let block = le32(data, 0).unwrap_or(0);
                if !(1..=256).contains(&(block / (1024 * 1024))) || !block.is_power_of_two() {
                    return Err(invalid(&format!("block size {block} is invalid")));
                }
                self.parameters_seen = true;
                Ok(Vec::new())
            }
        }
    }

    fn end(&mut self, total: u64, _tail: &[u8]) -> Result<u64, Refusal> {
        if self.regions_end > total {
            return Err(Refusal::truncated(format!(
                "vhdx image is truncated: its regions end at {} but the data has {total} bytes",
                self.regions_end
            )));
        }
        match (self.size, self.parameters_seen) {
            (Some(size), true) => Ok(size),
            _ => Err(invalid(
                "metadata lacks the virtual disk size or file parameters",
            )),
        }
    }
}

fn parent_refusal() -> Refusal {
    Refusal::new(
        Problem::BackingFile,
        "vhdx image is a differencing disk: it would make the hypervisor read a parent disk",
    )
}

impl Vhdx {
    /// The region table: finds the metadata region, checks every region's placement.
    fn regions(&mut self, t: &[u8]) -> Step {
        if !t.starts_with(b"regi") {
            return Err(invalid("region table signature is missing"));
        }
        let count = le32(t, 8).unwrap_or(u32::MAX);
        if count > MAX_ENTRIES {
            return Err(invalid(&format!("region table has {count} entries")));
        }
        let (mut metadata, mut bat) = (None, false);
        for i in 0..count as usize {
            let e = &t[16 + 32 * i..16 + 32 * (i + 1)];
            let id = guid(&e[..16]);
            let offset = le64(e, 16).unwrap_or(0);
            let len = u64::from(le32(e, 24).unwrap_or(0));
            let required = le32(e, 28).unwrap_or(0) & 1 != 0;
            if offset < MIB || !offset.is_multiple_of(MIB) || !len.is_multiple_of(MIB) {
                return Err(invalid(&format!("region {id} is misplaced")));
            }
            self.regions_end = self.regions_end.max(offset.saturating_add(len));
            let twice = || invalid(&format!("region {id} appears twice"));
            match id.as_str() {
                GUID_METADATA if metadata.is_some() => return Err(twice()),
                GUID_METADATA => metadata = Some(offset),
                GUID_BAT if bat => return Err(twice()),
                GUID_BAT => bat = true,
                _ if required => return Err(invalid(&format!("required region {id} is unknown"))),
                _ => {}
            }
        }
        let Some(at) = metadata else {
            return Err(invalid("metadata region is missing"));
        };
        self.metadata_at = at;
        Ok(vec![Want {
            id: ID_METADATA,
            offset: at,
            len: TABLE_LEN,
        }])
    }

    /// The metadata table: finds the size and parameter items, refuses a parent locator.
    fn metadata(&mut self, t: &[u8]) -> Step {
        if !t.starts_with(b"metadata") {
            return Err(invalid("metadata table signature is missing"));
        }
        let count = u32::from(le16(t, 10).unwrap_or(u16::MAX));
        if count > MAX_ENTRIES {
            return Err(invalid(&format!("metadata table has {count} entries")));
        }
        let mut wants = Vec::new();
        for i in 0..count as usize {
            let e = &t[32 + 32 * i..32 + 32 * (i + 1)];
            let id = guid(&e[..16]);
            let offset = u64::from(le32(e, 16).unwrap_or(0));
            let len = le32(e, 20).unwrap_or(0);
            let required = le32(e, 24).unwrap_or(0) & 0b100 != 0;
            let want = |id| {
                if offset < TABLE_LEN as u64 || len < 8 {
                    return Err(invalid("metadata item is misplaced"));
                }
                Ok(Want {
                    id,
                    offset: self.metadata_at + offset,
                    len: 8,
                })
            };
            match id.as_str() {
                ITEM_PARENT_LOCATOR => return Err(parent_refusal()),
                ITEM_VIRTUAL_DISK_SIZE => wants.push(want(ID_SIZE)?),
                ITEM_FILE_PARAMETERS => wants.push(want(ID_PARAMETERS)?),
                known if ITEMS_KNOWN.contains(&known) => {}
                _ if required => return Err(invalid(&format!("required item {id} is unknown"))),
                _ => {}
            }
        }
        if wants.len() != 2 || wants[0].id == wants[1].id {
            return Err(invalid(
                "metadata must have one virtual disk size and one file parameters item",
            ));
        }
        Ok(wants)
    }
}
