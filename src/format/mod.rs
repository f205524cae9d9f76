//! Image format inspection: what an upload really is, how large a disk it describes, and
//! whether a hypervisor could be made to read files of the host through it.
//!
//! Hypervisors open what Glance stores. A qcow2 image that names a backing file or an
//! external data file, a VMDK descriptor whose extent is a host path, a differencing VHD,
//! VHDX or VDI: each makes the compute host read another file into the guest's disk (OSSA
//! 2015-014, CVE-2022-47951, CVE-2024-32498). Every upload therefore streams through an
//! [`Inspector`], on the one copy path of the stores (`store::ImageBody`): no second read of
//! the data and no temporary copy.
//!
//! The inspector keeps only what it needs: the first [`HEAD_LEN`] bytes, the last
//! [`TAIL_LEN`] bytes, and the few header regions a format points to further on (VHDX
//! region and metadata tables, a long VMDK descriptor), each at most [`MAX_REGION`] bytes.
//! Work is done at fixed byte offsets (the end of the head, the end of a region, the end of
//! the data), never at the boundaries of the buffers it is fed, so the verdict does not
//! depend on how the data was split.
//!
//! The verdict has two parts: the format's own safety rules (always enforced), and whether
//! the detected format fits the declared `disk_format` ([`Rules`]).

use std::fmt;

mod iso;
mod partition;
mod qcow2;
mod vdi;
mod vhd;
mod vhdx;
mod vmdk;

/// Bytes kept from the start of the data; every format is recognised from them.
pub const HEAD_LEN: usize = 64 * 1024;
/// Bytes kept from the end of the data (VHD and VMDK stream footers).
pub const TAIL_LEN: usize = 1536;
/// Largest header region a format may ask for further on.
pub const MAX_REGION: usize = 1024 * 1024;
/// Largest virtual disk accepted (qcow2's own limit, 2^61 bytes is 2 EiB).
pub const MAX_VIRTUAL_SIZE: u64 = 1 << 61;

/// An image format the inspector recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Anything not recognised as one of the others.
    Raw,
    /// Raw data with a GUID partition table.
    Gpt,
    /// Raw data with an MBR partition table.
    Mbr,
    /// LUKS-encrypted raw data (as Cinder uploads encrypted volumes).
    Luks,
    /// An ISO 9660 file system (a CD/DVD image).
    Iso,
    /// QEMU copy-on-write v2 or v3.
    Qcow2,
    /// QEMU enhanced disk (recognised only to be refused).
    Qed,
    /// VMware sparse or stream-optimized VMDK, or a text descriptor.
    Vmdk,
    /// Virtual PC / Hyper-V VHD, dynamic (header at the start).
    Vhd,
    /// Fixed VHD: raw data followed by a 512-byte footer.
    VhdFixed,
    /// Hyper-V VHDX.
    Vhdx,
    /// VirtualBox VDI.
    Vdi,
}

impl Format {
    /// The name as `disk_format` and `qemu-img` spell it (a fixed VHD is `vhd`).
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Gpt => "gpt",
            Format::Mbr => "mbr",
            Format::Luks => "luks",
            Format::Iso => "iso",
            Format::Qcow2 => "qcow2",
            Format::Qed => "qed",
            Format::Vmdk => "vmdk",
            Format::Vhd | Format::VhdFixed => "vhd",
            Format::Vhdx => "vhdx",
            Format::Vdi => "vdi",
        }
    }

    /// Whether a hypervisor told the data is raw reads it as plain bytes: partitioned raw,
    /// ISOs, encrypted raw and fixed VHDs (raw data plus a footer) are all raw underneath.
    pub fn is_raw_family(self) -> bool {
        matches!(
            self,
            Format::Raw | Format::Gpt | Format::Mbr | Format::Luks | Format::Iso | Format::VhdFixed
        )
    }

    /// Whether data of this format may be declared as `disk_format`.
    pub fn fits(self, disk_format: &str) -> bool {
        match disk_format {
            // ploop has no inspector: its data reads as raw, and anything recognisable
            // (a qcow2 with a backing file, say) does not fit.
            "raw" | "ami" | "ari" | "aki" | "ploop" => self.is_raw_family(),
            "iso" => self == Format::Iso,
            "vhd" => matches!(self, Format::Vhd | Format::VhdFixed),
            other => self.name() == other,
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::VhdFixed => "vhd (fixed)",
            other => other.name(),
        })
    }
}

/// Why an image is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// It reads another image or file: a backing file, a parent disk.
    BackingFile,
    /// qcow2 with an external data file.
    DataFile,
    /// qcow2 incompatible feature bits this inspector does not know.
    UnknownFeatures,
    /// A VMDK create type other than monolithicSparse and streamOptimized.
    CreateType,
    /// A VMDK descriptor naming an extent other than the file itself.
    Extent,
    /// The detected format differs from the declared `disk_format`.
    Mismatch,
    /// The data ends before what its headers describe.
    Truncated,
    /// Header values out of range or inconsistent, or a format that is never accepted.
    Invalid,
}

impl Problem {
    /// A short name of the problem, leading the message clients see.
    pub fn label(self) -> &'static str {
        match self {
            Problem::BackingFile => "backing file",
            Problem::DataFile => "external data file",
            Problem::UnknownFeatures => "unknown incompatible features",
            Problem::CreateType => "vmdk create type",
            Problem::Extent => "vmdk extent",
            Problem::Mismatch => "format mismatch",
            Problem::Truncated => "truncated",
            Problem::Invalid => "invalid header",
        }
    }
}

/// A refusal: the problem and a message for the client and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The kind of problem.
    pub problem: Problem,
    /// What was found, in words (never more than a few hundred characters).
    pub message: String,
}

impl Refusal {
    pub(crate) fn new(problem: Problem, message: impl Into<String>) -> Refusal {
        let mut message: String = message.into();
        if message.len() > 300 {
            let mut cut = 300;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        Refusal { problem, message }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Refusal {
        Refusal::new(Problem::Invalid, message)
    }

    pub(crate) fn truncated(message: impl Into<String>) -> Refusal {
        Refusal::new(Problem::Truncated, message)
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.problem.label(), self.message)
    }
}

/// What glance-api does when the format it detects in an upload's data differs from the
/// image's declared `disk_format` (`image_format_mismatch`). The safety rules (no qcow2
/// backing or data files, no vmdk extents naming other files, ...) are enforced in both
/// modes: an image that fails them is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnMismatch {
    /// Refuse the image (the default).
    #[default]
    Reject,
    /// Accept it and log a warning.
    Warn,
}

impl OnMismatch {
    /// The mode of an option value (`warn`, else `reject`; the config checks the choice).
    pub fn from_name(name: &str) -> OnMismatch {
        if name.eq_ignore_ascii_case("warn") {
            OnMismatch::Warn
        } else {
            OnMismatch::Reject
        }
    }

    /// The option value.
    pub fn as_str(self) -> &'static str {
        match self {
            OnMismatch::Reject => "reject",
            OnMismatch::Warn => "warn",
        }
    }
}

/// What the data is checked against besides the formats' own safety rules.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    /// The declared `disk_format`, if any.
    pub disk_format: Option<String>,
    /// The declared `container_format`, if any: only bare images (or none, or the Amazon
    /// formats) are held to their `disk_format`; the data of an `ovf` container is a
    /// package, not a disk.
    pub container_format: Option<String>,
    /// `image_format_mismatch`.
    pub on_mismatch: OnMismatch,
}

impl Rules {
    /// The declared format the data must fit, if the container says it is a disk.
    fn declared(&self) -> Option<&str> {
        let disk = self.disk_format.as_deref().filter(|d| !d.is_empty())?;
        match self.container_format.as_deref() {
            None | Some("" | "bare" | "ami" | "ari" | "aki") => Some(disk),
            Some(_) => None,
        }
    }

    /// Whether data detected as `format` from its head may still turn out to fit: raw data
    /// declared `vhd` is a fixed VHD if its last 512 bytes are a VHD footer.
    fn may_become_fixed_vhd(&self, format: Format) -> bool {
        self.declared() == Some("vhd") && matches!(format, Format::Raw | Format::Gpt | Format::Mbr)
    }

    /// Checks a detected format against the declared one: `Ok(None)` when it fits (or
    /// nothing is declared), `Ok(Some(warning))` when it does not but mismatches are only
    /// warned about.
    fn check(&self, format: Format) -> Result<Option<String>, Refusal> {
        let Some(declared) = self.declared() else {
            return Ok(None);
        };
        if format.fits(declared) {
            return Ok(None);
        }
        let message = format!(
            "the image data is {format} but its disk_format is {declared}: the detected format \
             does not match the declared one"
        );
        match self.on_mismatch {
            OnMismatch::Reject => Err(Refusal::new(Problem::Mismatch, message)),
            OnMismatch::Warn => Ok(Some(message)),
        }
    }
}

/// The result of an inspection that passed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inspection {
    /// The detected format.
    pub format: Format,
    /// The size of the disk the image describes, in bytes, as the hypervisor will see it
    /// given the declared `disk_format` (for raw-declared data: the byte count).
    pub virtual_size: u64,
    /// The data's size in bytes.
    pub size: u64,
    /// A mismatch accepted under `image_format_mismatch = warn`, for the log.
    pub warning: Option<String>,
}

/// A byte range of the data a format wants to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    /// Which region this is, for the format's own bookkeeping.
    pub id: u8,
    /// Offset in the data.
    pub offset: u64,
    /// Length (at most [`MAX_REGION`]).
    pub len: usize,
}

/// What a format parser does next.
pub(crate) type Step = Result<Vec<Want>, Refusal>;

/// The part of inspection specific to one format: it is shown the head, then each region
/// it asked for, then the end of the data.
pub(crate) trait Parser: Send {
    /// The format this parser checks.
    fn format(&self) -> Format;
    /// Sees the first bytes (all of them when the data is shorter than [`HEAD_LEN`]).
    fn head(&mut self, head: &[u8], at_eof: bool) -> Step;
    /// Sees a region asked for by [`Want`].
    fn region(&mut self, _id: u8, _data: &[u8]) -> Step {
        Ok(Vec::new())
    }
    /// Sees the end: the total size and the last (up to) [`TAIL_LEN`] bytes. Returns the
    /// virtual size.
    fn end(&mut self, total: u64, tail: &[u8]) -> Result<u64, Refusal>;
}

/// A region being captured.
struct Capture {
    want: Want,
    data: Vec<u8>,
}

impl Capture {
    fn end(&self) -> u64 {
        self.want.offset + self.want.len as u64
    }
}

/// A streaming inspector: feed it the data in order, in buffers of any size, then ask for
/// the verdict.
pub struct Inspector {
    rules: Rules,
    /// Bytes seen so far.
    pos: u64,
    head: Vec<u8>,
    /// The last bytes seen, at most `TAIL_LEN` (kept as a sliding window).
    tail: Vec<u8>,
    parser: Option<Box<dyn Parser>>,
    captures: Vec<Capture>,
    /// The first refusal: once set, the verdict is final and the data is ignored.
    refusal: Option<Refusal>,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector")
            .field("pos", &self.pos)
            .field("format", &self.parser.as_ref().map(|p| p.format()))
            .field("refusal", &self.refusal)
            .finish()
    }
}

impl Inspector {
    /// A new inspector checking against `rules`.
    pub fn new(rules: Rules) -> Inspector {
        Inspector {
            rules,
            pos: 0,
            head: Vec::new(),
            tail: Vec::with_capacity(2 * TAIL_LEN),
            parser: None,
            captures: Vec::new(),
            refusal: None,
        }
    }

    /// The refusal found so far, if any: an upload can stop at once, the verdict will not
    /// change.
    pub fn refusal(&self) -> Option<&Refusal> {
        self.refusal.as_ref()
    }

    /// The format detected so far (known once the head is seen).
    pub fn format(&self) -> Option<Format> {
        self.parser.as_ref().map(|p| p.format())
    }

    /// Bytes fed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Shows the next bytes of the data to the inspector.
    pub fn feed(&mut self, mut data: &[u8]) {
        self.keep_tail(data);
        while !data.is_empty() && self.refusal.is_none() {
            let take = self.until_next_event(data.len());
            let (now, rest) = data.split_at(take);
            self.capture(now);
            self.pos += take as u64;
            data = rest;
            self.handle_events();
        }
        // After a refusal (or when nothing is wanted any more) only the position counts.
        self.pos += data.len() as u64;
    }

    /// Bytes that may be taken before the next offset where something must happen.
    fn until_next_event(&self, available: usize) -> usize {
        let mut next = u64::MAX;
        if self.parser.is_none() {
            next = HEAD_LEN as u64;
        }
        for c in &self.captures {
            next = next.min(c.end());
        }
        let room = next.saturating_sub(self.pos);
        usize::try_from(room).unwrap_or(usize::MAX).min(available)
    }

    /// Copies the bytes at `self.pos..` into the head and every region they belong to.
    fn capture(&mut self, bytes: &[u8]) {
        if self.parser.is_none() {
            self.head.extend_from_slice(bytes);
        }
        let start = self.pos;
        let end = start + bytes.len() as u64;
        for c in &mut self.captures {
            let from = c.want.offset.max(start);
            let to = c.end().min(end);
            if from < to {
                // In range of `bytes` by construction; both fit in usize.
                let a = (from - start) as usize;
                let b = (to - start) as usize;
                c.data.extend_from_slice(&bytes[a..b]);
            }
        }
    }

    fn keep_tail(&mut self, data: &[u8]) {
        if data.len() >= TAIL_LEN {
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - TAIL_LEN..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TAIL_LEN {
                let excess = self.tail.len() - TAIL_LEN;
                self.tail.drain(..excess);
            }
        }
    }

    /// Runs what is due at the current position: detection at the end of the head, the
    /// parser on each region that is complete.
    fn handle_events(&mut self) {
        if self.parser.is_none() && self.pos >= HEAD_LEN as u64 {
            self.detect(false);
        }
        while self.refusal.is_none() {
            let Some(i) = self.captures.iter().position(|c| c.end() <= self.pos) else {
                break;
            };
            let done = self.captures.swap_remove(i);
            let step = match self.parser.as_mut() {
                Some(p) => p.region(done.want.id, &done.data),
                None => Ok(Vec::new()),
            };
            self.apply(step);
        }
    }

    /// Recognises the format from the head and hands the head to its parser.
    fn detect(&mut self, at_eof: bool) {
        let head = std::mem::take(&mut self.head);
        let detected = detect(&head);
        let step = match detected {
            Ok(mut parser) => {
                let step = parser.head(&head, at_eof);
                self.parser = Some(parser);
                step
            }
            Err(refusal) => Err(refusal),
        };
        // Regions that start inside the head are filled from it.
        self.head = head;
        self.apply(step);
        self.head = Vec::new();
        // The declared format is checked as soon as the format is known, so that an upload
        // of the wrong format stops early (after the format's own refusals, if any).
        if self.refusal.is_none()
            && let Some(format) = self.format()
            && !self.rules.may_become_fixed_vhd(format)
            && let Err(r) = self.rules.check(format)
        {
            self.refuse(r);
        }
    }

    /// Applies a parser's step: a refusal, or new regions to capture.
    fn apply(&mut self, step: Step) {
        let wants = match step {
            Ok(wants) => wants,
            Err(refusal) => {
                self.refuse(refusal);
                return;
            }
        };
        for want in wants {
            if let Err(refusal) = self.want(want) {
                self.refuse(refusal);
                return;
            }
        }
    }

    fn refuse(&mut self, refusal: Refusal) {
        if self.refusal.is_none() {
            self.refusal = Some(refusal);
        }
        self.captures.clear();
        self.head = Vec::new();
    }

    /// Starts capturing a region: the part already seen must be in the head (formats only
    /// point forward beyond it), the rest is captured as the data streams by.
    fn want(&mut self, want: Want) -> Result<(), Refusal> {
        let name = self.parser.as_ref().map_or("image", |p| p.format().name());
        if want.len > MAX_REGION {
            return Err(Refusal::invalid(format!(
                "{name} header region of {} bytes is larger than the {MAX_REGION} accepted",
                want.len
            )));
        }
        if want.offset.checked_add(want.len as u64).is_none() {
            return Err(Refusal::invalid(format!(
                "{name} header points past the largest possible offset"
            )));
        }
        let mut data = Vec::with_capacity(want.len);
        if want.offset < self.pos {
            // Only while the head is at hand (when the format is detected) can a region
            // start behind the current position.
            let seen = self.head.len() as u64;
            if want.offset >= seen {
                return Err(Refusal::invalid(format!(
                    "{name} header points back to offset {} from offset {}",
                    want.offset, self.pos
                )));
            }
            let from = want.offset as usize; // < head length
            let to = (want.offset + want.len as u64).min(seen) as usize;
            data.extend_from_slice(&self.head[from..to]);
        }
        let capture = Capture { want, data };
        if capture.data.len() == want.len {
            let step = match self.parser.as_mut() {
                Some(p) => p.region(want.id, &capture.data),
                None => Ok(Vec::new()),
            };
            return match step {
                Ok(more) => more.into_iter().try_for_each(|w| self.want(w)),
                Err(r) => Err(r),
            };
        }
        self.captures.push(capture);
        Ok(())
    }

    /// The verdict once all the data has been fed.
    pub fn finish(mut self) -> Result<Inspection, Refusal> {
        if self.parser.is_none() && self.refusal.is_none() {
            self.detect(true);
        }
        if let Some(r) = self.refusal.take() {
            return Err(r);
        }
        let total = self.pos;
        let Some(mut parser) = self.parser.take() else {
            return Err(Refusal::invalid("no format was detected"));
        };
        if let Some(c) = self.captures.first() {
            return Err(Refusal::truncated(format!(
                "{} image is truncated: a header region at offset {} ends after the {total} \
                 bytes of data",
                parser.format().name(),
                c.want.offset
            )));
        }
        let virtual_size = parser.end(total, &self.tail)?;
        // Known only now for a fixed VHD (its footer is at the end).
        let format = parser.format();
        if virtual_size > MAX_VIRTUAL_SIZE {
            return Err(Refusal::invalid(format!(
                "{} virtual size of {virtual_size} bytes is larger than {MAX_VIRTUAL_SIZE}",
                format.name()
            )));
        }
        let warning = self.rules.check(format)?;
        let raw_declared = self
            .rules
            .declared()
            .is_some_and(|d| matches!(d, "raw" | "ami" | "ari" | "aki"));
        Ok(Inspection {
            format,
            // Data declared raw is read as raw whatever it contains.
            virtual_size: if raw_declared || warning.is_some() {
                total
            } else {
                virtual_size
            },
            size: total,
            warning,
        })
    }
}

/// Inspects a whole reader (used by `glance-manage inspect`); reads it to the end.
pub fn inspect_reader(
    reader: &mut dyn std::io::Read,
    rules: Rules,
) -> std::io::Result<Result<Inspection, Refusal>> {
    let mut inspector = Inspector::new(rules);
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        inspector.feed(&buf[..n]);
    }
    Ok(inspector.finish())
}

/// The signatures found in a head.
#[derive(Debug, Default)]
struct Signatures {
    /// The format named by the first bytes (or VDI's signature at 0x40), if any.
    primary: Option<Format>,
    iso: bool,
    partitioned: Option<Format>,
}

fn signatures(head: &[u8]) -> Signatures {
    let primary = if head.starts_with(b"QFI\xfb") {
        Some(Format::Qcow2)
    } else if head.starts_with(b"QED\0") {
        Some(Format::Qed)
    } else if vmdk::is_vmdk(head) {
        Some(Format::Vmdk)
    } else if head.starts_with(b"conectix") {
        Some(Format::Vhd)
    } else if head.starts_with(b"vhdxfile") {
        Some(Format::Vhdx)
    } else if head.starts_with(b"LUKS\xba\xbe") {
        Some(Format::Luks)
    } else if vdi::is_vdi(head) {
        Some(Format::Vdi)
    } else {
        None
    };
    Signatures {
        primary,
        iso: iso::is_iso(head),
        partitioned: partition::detect(head),
    }
}

/// Picks the parser for a head. Data that carries the headers of two formats is refused:
/// one format hidden inside another is how a probe is fooled (an ISO with a GPT or MBR in
/// front, a hybrid ISO, is the one legitimate mix).
fn detect(head: &[u8]) -> Result<Box<dyn Parser>, Refusal> {
    let sig = signatures(head);
    if let Some(primary) = sig.primary {
        let other = if sig.iso {
            Some(Format::Iso)
        } else if primary != Format::Luks {
            sig.partitioned
        } else {
            None
        };
        if let Some(other) = other {
            return Err(Refusal::invalid(format!(
                "the image data carries both {} and {} headers",
                primary.name(),
                other.name()
            )));
        }
    }
    let parser: Box<dyn Parser> = match sig.primary {
        Some(Format::Qcow2) => Box::new(qcow2::Qcow2::default()),
        Some(Format::Qed) => {
            return Err(Refusal::invalid("qed images are not accepted"));
        }
        Some(Format::Vmdk) => Box::new(vmdk::Vmdk::default()),
        Some(Format::Vhd) => Box::new(vhd::Vhd::default()),
        Some(Format::Vhdx) => Box::new(vhdx::Vhdx::default()),
        Some(Format::Vdi) => Box::new(vdi::Vdi::default()),
        Some(_) => Box::new(Plain(Format::Luks)),
        None if sig.iso => Box::new(iso::Iso::default()),
        None => Box::new(partition::RawFamily::new(sig.partitioned)),
    };
    Ok(parser)
}

/// A format with nothing to check: the virtual size is the byte count.
struct Plain(Format);

impl Parser for Plain {
    fn format(&self) -> Format {
        self.0
    }
    fn head(&mut self, _head: &[u8], _at_eof: bool) -> Step {
        Ok(Vec::new())
    }
    fn end(&mut self, total: u64, _tail: &[u8]) -> Result<u64, Refusal> {
        Ok(total)
    }
}

/// Reads fixed-width integers out of a header, `None` past its end.
pub(crate) mod bytes {
    fn array<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
        b.get(at..at.checked_add(N)?)?.try_into().ok()
    }
    /// Big-endian u16 at `at`.
    pub fn be16(b: &[u8], at: usize) -> Option<u16> {
        array(b, at).map(u16::from_be_bytes)
    }
    /// Big-endian u32 at `at`.
    pub fn be32(b: &[u8], at: usize) -> Option<u32> {
        array(b, at).map(u32::from_be_bytes)
    }
    /// Big-endian u64 at `at`.
    pub fn be64(b: &[u8], at: usize) -> Option<u64> {
        array(b, at).map(u64::from_be_bytes)
    }
    /// Little-endian u16 at `at`.
    pub fn le16(b: &[u8], at: usize) -> Option<u16> {
        array(b, at).map(u16::from_le_bytes)
    }
    /// Little-endian u32 at `at`.
    pub fn le32(b: &[u8], at: usize) -> Option<u32> {
        array(b, at).map(u32::from_le_bytes)
    }
    /// Little-endian u64 at `at`.
    pub fn le64(b: &[u8], at: usize) -> Option<u64> {
        array(b, at).map(u64::from_le_bytes)
    }
}

#[cfg(test)]
mod tests;
