//! qcow2 (versions 2 and 3), after qemu's docs/interop/qcow2.txt.
//!
//! Refused: a backing file (any non-zero backing file offset), an external data file (the
//! incompatible feature bit or the header extension naming one), incompatible feature bits
//! qemu did not define, an image marked corrupt, and header values qemu itself would not
//! open (cluster size, header length, extension area, table offsets and sizes). Everything
//! checked lies in the first cluster, which is inside the head, except the table bounds,
//! which are checked against the data's size at the end.

use super::bytes::{be32, be64};
use super::{Format, Parser, Problem, Refusal, Step};

const V2_HEADER_LEN: u32 = 72;
const V3_MIN_HEADER_LEN: u32 = 104;
const MIN_CLUSTER_BITS: u32 = 9;
const MAX_CLUSTER_BITS: u32 = 21;
/// qemu's QCOW_MAX_L1_SIZE (32 MiB of 8-byte entries).
const MAX_L1_ENTRIES: u64 = 32 * 1024 * 1024 / 8;
/// qemu's QCOW_MAX_REFTABLE_SIZE (8 MiB).
const MAX_REFTABLE_BYTES: u64 = 8 * 1024 * 1024;
/// qemu's QCOW_MAX_SNAPSHOTS.
const MAX_SNAPSHOTS: u32 = 65536;

/// Incompatible feature bits: dirty, corrupt, external data file, compression type,
/// extended L2 entries.
const DIRTY: u64 = 1 << 0;
const CORRUPT: u64 = 1 << 1;
const DATA_FILE: u64 = 1 << 2;
const COMPRESSION_TYPE: u64 = 1 << 3;
const EXTENDED_L2: u64 = 1 << 4;
const KNOWN_INCOMPATIBLE: u64 = DIRTY | CORRUPT | DATA_FILE | COMPRESSION_TYPE | EXTENDED_L2;

/// Header extension types.
const EXT_END: u32 = 0;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// What the end check needs from the header.
#[derive(Debug, Default)]
pub(crate) struct Qcow2 {
    size: u64,
    cluster_size: u64,
    l1_offset: u64,
    l1_entries: u64,
    reftable_offset: u64,
    reftable_clusters: u64,
}

fn truncated(what: &str, have: usize) -> Refusal {
    Refusal::truncated(format!(
        "qcow2 image is truncated: the data ends ({have} bytes) inside its {what}"
    ))
}

impl Parser for Qcow2 {
    fn format(&self) -> Format {
        Format::Qcow2
    }

    fn head(&mut self, head: &[u8], at_eof: bool) -> Step {
        let field = |at| be32(head, at).ok_or_else(|| truncated("header", head.len()));
        let field64 = |at| be64(head, at).ok_or_else(|| truncated("header", head.len()));
        if head.len() < V2_HEADER_LEN as usize {
            return Err(truncated("header", head.len()));
        }
        let version = field(4)?;
        if version != 2 && version != 3 {
            return Err(Refusal::invalid(format!(
                "qcow2 version {version} is not supported (only 2 and 3)"
            )));
        }
        if field64(8)? != 0 {
            return Err(Refusal::new(
                Problem::BackingFile,
                "qcow2 image has a backing file: it would make the hypervisor read another file",
            ));
        }
        let cluster_bits = field(20)?;
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(Refusal::invalid(format!(
                "qcow2 cluster_bits {cluster_bits} is invalid (9 to 21)"
            )));
        }
        self.cluster_size = 1 << cluster_bits;
        self.size = field64(24)?;
        let crypt = field(32)?;
        if crypt > 2 {
            return Err(Refusal::invalid(format!(
                "qcow2 encryption method {crypt} is invalid"
            )));
        }
        self.l1_entries = u64::from(field(36)?);
        self.l1_offset = field64(40)?;
        self.reftable_offset = field64(48)?;
        self.reftable_clusters = u64::from(field(56)?);
        let snapshots = field(60)?;
        let snapshots_offset = field64(64)?;
        let (header_len, extended_l2) = if version == 3 {
            self.v3_features(head)?
        } else {
            (V2_HEADER_LEN, false)
        };
        self.check_tables(extended_l2, snapshots, snapshots_offset)?;
        self.check_extensions(head, header_len, at_eof)?;
        Ok(Vec::new())
    }

    fn end(&mut self, total: u64, _tail: &[u8]) -> Result<u64, Refusal> {
        let reftable_end = self
            .reftable_offset
            .saturating_add(self.reftable_clusters.saturating_mul(self.cluster_size));
        if reftable_end > total {
            return Err(Refusal::truncated(format!(
                "qcow2 image is truncated: its refcount table ends at {reftable_end} but the \
                 data has {total} bytes"
            )));
        }
        if self.l1_entries > 0 {
            let l1_end = self.l1_offset.saturating_add(self.l1_entries * 8);
            if l1_end > total {
                return Err(Refusal::truncated(format!(
                    "qcow2 image is truncated: its L1 table ends at {l1_end} but the data has \
                     {total} bytes"
                )));
            }
        }
        Ok(self.size)
    }
}

impl Qcow2 {
    /// The version 3 fields: feature bits and header length.
    fn v3_features(&self, head: &[u8]) -> Result<(u32, bool), Refusal> {
        if head.len() < V3_MIN_HEADER_LEN as usize {
            return Err(truncated("version 3 header", head.len()));
        }
        let field = |at| be32(head, at).ok_or_else(|| truncated("header", head.len()));
        let incompatible = be64(head, 72).ok_or_else(|| truncated("header", head.len()))?;
        if incompatible & DATA_FILE != 0 {
            return Err(Refusal::new(
                Problem::DataFile,
                "qcow2 image has an external data file: it would make the hypervisor read \
                 another file",
            ));
        }
        let unknown = incompatible & !KNOWN_INCOMPATIBLE;
        if unknown != 0 {
            return Err(Refusal::new(
                Problem::UnknownFeatures,
                format!("qcow2 image has unknown incompatible features (bits {unknown:#x})"),
            ));
        }
        if incompatible & CORRUPT != 0 {
            return Err(Refusal::invalid("qcow2 image is marked corrupt"));
        }
        let refcount_order = field(96)?;
        if refcount_order > 6 {
            return Err(Refusal::invalid(format!(
                "qcow2 refcount_order {refcount_order} is invalid (0 to 6)"
            )));
        }
        let header_len = field(100)?;
        if header_len < V3_MIN_HEADER_LEN
            || header_len % 8 != 0
            || u64::from(header_len) > self.cluster_size
        {
            return Err(Refusal::invalid(format!(
                "qcow2 header length {header_len} is invalid"
            )));
        }
        Ok((header_len, incompatible & EXTENDED_L2 != 0))
    }

    /// Table sizes and alignment, as qemu checks them when it opens an image.
    fn check_tables(
        &self,
        extended_l2: bool,
        snapshots: u32,
        snapshots_offset: u64,
    ) -> Result<(), Refusal> {
        let cs = self.cluster_size;
        if self.size > super::MAX_VIRTUAL_SIZE {
            return Err(Refusal::invalid(format!(
                "qcow2 virtual size {} is too large",
                self.size
            )));
        }
        let entry = if extended_l2 { 16 } else { 8 };
        let per_l1 = cs * (cs / entry); // bytes of disk one L1 entry maps
        let needed_l1 = self.size.div_ceil(per_l1);
        if self.l1_entries > MAX_L1_ENTRIES || self.l1_entries < needed_l1 {
            return Err(Refusal::invalid(format!(
                "qcow2 L1 table of {} entries does not fit a virtual size of {}",
                self.l1_entries, self.size
            )));
        }
        let unaligned = |off: u64| !off.is_multiple_of(cs);
        if self.l1_entries > 0 && (unaligned(self.l1_offset) || self.l1_offset == 0) {
            return Err(Refusal::invalid("qcow2 L1 table offset is invalid"));
        }
        if self.reftable_offset == 0
            || unaligned(self.reftable_offset)
            || self.reftable_clusters == 0
            || self.reftable_clusters * cs > MAX_REFTABLE_BYTES
        {
            return Err(Refusal::invalid("qcow2 refcount table is invalid"));
        }
        if snapshots > MAX_SNAPSHOTS || (snapshots > 0 && unaligned(snapshots_offset)) {
            return Err(Refusal::invalid("qcow2 snapshot table is invalid"));
        }
        Ok(())
    }

    /// Walks the header extensions, which end with a zero type inside the first cluster.
    fn check_extensions(&self, head: &[u8], header_len: u32, at_eof: bool) -> Result<(), Refusal> {
        // The area ends with the first cluster; what lies beyond the head is not read.
        let limit = usize::try_from(self.cluster_size).unwrap_or(usize::MAX);
        let mut at = header_len as usize;
        loop {
            if at + 8 > limit {
                return Err(Refusal::invalid(
                    "qcow2 header extensions run past the end of the first cluster",
                ));
            }
            let (Some(kind), Some(len)) = (be32(head, at), be32(head, at + 4)) else {
                return Err(if at_eof {
                    truncated("header extensions", head.len())
                } else {
                    Refusal::invalid("qcow2 header extensions are longer than 64 KiB")
                });
            };
            if kind == EXT_END {
                return Ok(());
            }
            if kind == EXT_DATA_FILE {
                return Err(Refusal::new(
                    Problem::DataFile,
                    "qcow2 image names an external data file: it would make the hypervisor \
                     read another file",
                ));
            }
            // Each extension moves at least 8 bytes on, so the walk ends.
            let padded = (len as usize).div_ceil(8) * 8;
            at = at
                .checked_add(8 + padded)
                .filter(|&next| next <= limit)
                .ok_or_else(|| {
                    Refusal::invalid(format!(
                        "qcow2 header extension {kind:#x} of {len} bytes runs past the end of \
                         the first cluster"
                    ))
                })?;
        }
    }
}
