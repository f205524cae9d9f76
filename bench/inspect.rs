//! The cost of format inspection on an upload's copy path (`cargo bench --bench inspect`).
//!
//! Every upload's bytes go through `format::Inspector::feed` on the copying thread, once per
//! read from the client's socket. This feeds 1 GiB through an inspector in reads of the
//! sizes a socket gives (16 KiB, 64 KiB) and of a copy buffer (1 MiB), for raw data and for
//! a qcow2 image, and prints the inspector's throughput in MB/s. `bench/run.sh` divides the
//! upload rate it measures by this figure: the share of an upload's time spent inspecting.
//!
//! Output: one line per case, `inspect <format> <read size> <MB/s>`, then
//! `inspect_min_mb_per_s <MB/s>` (the slowest case), for the script to parse.

use std::hint::black_box;
use std::time::Instant;

use glance_rs::format::{Inspector, OnMismatch, Rules};

const TOTAL: usize = 1 << 30;

fn rules(disk: &str) -> Rules {
    Rules {
        disk_format: Some(disk.into()),
        container_format: Some("bare".into()),
        on_mismatch: OnMismatch::Reject,
    }
}

/// A qcow2 header as qemu-img writes it (64 KiB clusters, a 1 TiB disk), then data.
fn qcow2_head() -> Vec<u8> {
    let mut b = vec![0u8; 4 * 65536];
    b[..4].copy_from_slice(b"QFI\xfb");
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    b[20..24].copy_from_slice(&16u32.to_be_bytes());
    b[24..32].copy_from_slice(&(1u64 << 40).to_be_bytes());
    b[36..40].copy_from_slice(&2048u32.to_be_bytes()); // 512 MiB per L1 entry
    b[40..48].copy_from_slice(&(3u64 * 65536).to_be_bytes());
    b[48..56].copy_from_slice(&65536u64.to_be_bytes());
    b[56..60].copy_from_slice(&1u32.to_be_bytes());
    b[96..100].copy_from_slice(&4u32.to_be_bytes());
    b[100..104].copy_from_slice(&112u32.to_be_bytes());
    b
}

/// Feeds `head` then filler up to 1 GiB in reads of `read` bytes; returns MB/s.
fn run(disk: &str, head: &[u8], read: usize) -> f64 {
    let filler: Vec<u8> = (0..read).map(|i| (i * 31 % 251) as u8).collect();
    let mut inspector = Inspector::new(rules(disk));
    let start = Instant::now();
    inspector.feed(head);
    let mut fed = head.len();
    while fed < TOTAL {
        let n = read.min(TOTAL - fed);
        inspector.feed(black_box(&filler[..n]));
        fed += n;
    }
    let verdict = black_box(inspector.finish());
    let secs = start.elapsed().as_secs_f64();
    if let Err(r) = verdict {
        eprintln!("inspect {disk}: refused: {r}");
        std::process::exit(2);
    }
    TOTAL as f64 / secs / 1e6
}

fn main() {
    let qcow2 = qcow2_head();
    let mut slowest = f64::MAX;
    for (name, disk, head) in [("raw", "raw", &[][..]), ("qcow2", "qcow2", &qcow2[..])] {
        for read in [16 * 1024, 64 * 1024, 1024 * 1024] {
            let mbps = run(disk, head, read);
            slowest = slowest.min(mbps);
            println!("inspect {name} {read} {mbps:.0}");
        }
    }
    println!("inspect_min_mb_per_s {slowest:.0}");
}
