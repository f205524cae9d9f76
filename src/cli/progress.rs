//! A progress bar on stderr for uploads and downloads of a known size.
//!
//! Drawn only when stderr is a terminal (never into a log file or a pipe), redrawn in place
//! with `\r` at most ten times a second, and ended with a newline whether the transfer
//! finished or failed.

use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

const BAR_WIDTH: usize = 30;
const REDRAW: Duration = Duration::from_millis(100);

/// Progress of one transfer.
pub struct Progress {
    total: u64,
    done: u64,
    last_draw: Option<Instant>,
    drawn: bool,
    finished: bool,
}

impl Progress {
    /// A bar for `total` bytes, or `None` when there is nothing to draw on (stderr is not
    /// a terminal) or the size is unknown.
    pub fn for_stderr(total: Option<u64>) -> Option<Progress> {
        let total = total?;
        if !io::stderr().is_terminal() {
            return None;
        }
        Some(Progress {
            total,
            done: 0,
            last_draw: None,
            drawn: false,
            finished: false,
        })
    }

    /// Counts `n` more bytes; redraws when due.
    pub fn advance(&mut self, n: usize) {
        self.done = self.done.saturating_add(n as u64);
        let due = self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW);
        if due || self.done >= self.total {
            self.draw();
        }
    }

    /// Draws the final state and ends the line.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.draw();
        let _ = writeln!(io::stderr());
    }

    fn draw(&mut self) {
        self.last_draw = Some(Instant::now());
        self.drawn = true;
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r{}", render(self.done, self.total));
        let _ = err.flush();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.drawn && !self.finished {
            let _ = writeln!(io::stderr());
        }
    }
}

/// One frame: `[=========>          ]  45%   45.0 MiB / 100.0 MiB`.
pub fn render(done: u64, total: u64) -> String {
    let frac = if total == 0 {
        1.0
    } else {
        (done as f64 / total as f64).min(1.0)
    };
    let filled = (frac * BAR_WIDTH as f64) as usize;
    let bar: String = (0..BAR_WIDTH)
        .map(|i| match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        })
        .collect();
    format!(
        "[{bar}] {:>3}% {:>10} / {}",
        (frac * 100.0) as u32,
        human(done),
        human(total)
    )
}

/// Bytes in binary units with one decimal (`100.0 MiB`).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A reader that advances a progress bar (if any) as it is read, finishing it at the end.
pub struct ProgressReader<R> {
    inner: R,
    bar: Option<Progress>,
}

impl<R: Read> ProgressReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, bar: Option<Progress>) -> ProgressReader<R> {
        ProgressReader { inner, bar }
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(bar) = &mut self.bar {
            if n == 0 && !buf.is_empty() {
                bar.finish();
            } else {
                bar.advance(n);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames() {
        assert_eq!(
            render(0, 100),
            format!("[>{}]   0% {:>10} / 100 B", " ".repeat(29), "0 B")
        );
        let half = render(50 * 1024 * 1024, 100 * 1024 * 1024);
        assert!(half.starts_with(&format!("[{}>", "=".repeat(15))), "{half}");
        assert!(half.contains(" 50%   50.0 MiB / 100.0 MiB"), "{half}");
        let full = render(7, 7);
        assert!(full.starts_with(&format!("[{}]", "=".repeat(30))), "{full}");
        assert!(full.contains("100%"));
        assert!(render(0, 0).contains("100%"));
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn reader_without_bar_passes_bytes_through() {
        let mut r = ProgressReader::new(&b"abc"[..], None);
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        assert_eq!(s, "abc");
    }
}
