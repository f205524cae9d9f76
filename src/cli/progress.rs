//! The progress of an upload or a download, on stderr, with `--progress`.
//!
//! As python-glanceclient's `--progress`: off by default, and drawn only when the stream it
//! is drawn on is a terminal (glanceclient's `progressbar.py` checks `isatty()` and prints
//! nothing otherwise), so `glance ... --progress 2>log` leaves no `\r` frames in a log. Unlike
//! glanceclient, which draws on stdout, the frames go to stderr: stdout may carry the image
//! (`glance download ID --progress | sha256sum`) and must stay byte-exact.
//!
//! A frame is redrawn in place (`\r`) at most ten times a second:
//!
//! ```text
//! [=======>        ]  45%   45.0 MiB / 100.0 MiB   12.3 MiB/s  ETA 0:04
//! ```
//!
//! Sizes and rates are in binary units (KiB, MiB, GiB: powers of 1024). The last frame, at
//! 100% or where the transfer stopped, ends with a newline and says how long it took
//! (`in 0:08`) or that it `stopped`. Of data of unknown size (a pipe on stdin) only the bytes
//! and the rate are shown.

use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

/// Width of the bar between the brackets.
const BAR_WIDTH: u64 = 16;
/// Least time between two frames.
const REDRAW: Duration = Duration::from_millis(100);
/// Before this much time has passed the rate (and so the ETA) is not shown: the first
/// reads come from buffers and would promise absurd speeds.
const RATE_AFTER: Duration = Duration::from_millis(500);
/// Longest ETA shown (99 hours); beyond, or at no speed, `--:--`.
const MAX_ETA_SECS: u64 = 99 * 3600;

/// Where a transfer stands, as one frame shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Under way: the frame shows the ETA.
    Running,
    /// All data went through: the frame shows the time taken.
    Done,
    /// Ended early (an error): the frame says so.
    Stopped,
}

/// What one frame shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// Bytes transferred.
    pub done: u64,
    /// Bytes in all, when known.
    pub total: Option<u64>,
    /// Time since the transfer started.
    pub elapsed: Duration,
    /// Running, done or stopped.
    pub state: State,
}

/// The text of a frame (without the `\r`).
///
/// ```text
/// [=======>        ]  45%   45.0 MiB / 100.0 MiB   12.3 MiB/s  ETA 0:04
/// [================] 100%  100.0 MiB / 100.0 MiB   12.3 MiB/s  in 0:08
///    45.0 MiB   12.3 MiB/s                       (unknown size)
/// ```
pub fn render(f: &Frame) -> String {
    let rate = rate(f);
    let tail = match f.state {
        State::Running => match (f.total, rate) {
            (Some(total), Some(r)) => format!("  ETA {}", eta(total.saturating_sub(f.done), r)),
            (Some(_), None) => "  ETA --:--".to_string(),
            (None, _) => String::new(),
        },
        State::Done => format!("  in {}", clock(f.elapsed.as_secs())),
        State::Stopped => "  stopped".to_string(),
    };
    let rate = rate.map_or_else(|| "--.- MiB/s".to_string(), human_rate);
    match f.total {
        Some(total) => format!(
            "{} {:>3}% {:>10} / {} {:>12}{tail}",
            bar(f.done, total),
            percent(f.done, total),
            human(f.done),
            human(total),
            rate
        ),
        None => format!("{:>10} {:>12}{tail}", human(f.done), rate),
    }
}

/// `[=======>        ]`: full at 100% (and for 0 bytes of 0).
fn bar(done: u64, total: u64) -> String {
    let filled = if total == 0 || done >= total {
        BAR_WIDTH
    } else {
        (u128::from(done) * u128::from(BAR_WIDTH) / u128::from(total)) as u64
    };
    let mut s = String::from("[");
    for i in 0..BAR_WIDTH {
        s.push(match i.cmp(&filled) {
            std::cmp::Ordering::Less => '=',
            std::cmp::Ordering::Equal => '>',
            std::cmp::Ordering::Greater => ' ',
        });
    }
    s.push(']');
    s
}

/// Whole percent, rounded down (100 only when all is done; 0 bytes of 0 is 100).
pub fn percent(done: u64, total: u64) -> u64 {
    if total == 0 || done >= total {
        100
    } else {
        (u128::from(done) * 100 / u128::from(total)) as u64
    }
}

/// Bytes per second, once it means something: after [`RATE_AFTER`] while running, at the
/// end as soon as any time has passed.
fn rate(f: &Frame) -> Option<f64> {
    let secs = f.elapsed.as_secs_f64();
    let soon = f.state == State::Running && f.elapsed < RATE_AFTER;
    (secs > 0.0 && !soon).then(|| f.done as f64 / secs)
}

/// The time left at `rate` bytes/s, as [`clock`], or `--:--` when there is no telling.
fn eta(remaining: u64, rate: f64) -> String {
    if rate <= 0.0 {
        return "--:--".to_string();
    }
    let secs = (remaining as f64 / rate).ceil();
    if secs > MAX_ETA_SECS as f64 {
        return "--:--".to_string();
    }
    clock(secs as u64)
}

/// `m:ss`, or `h:mm:ss` from an hour on.
pub fn clock(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// Bytes in binary units with one decimal (`100.0 MiB`), below 1 KiB exact (`512 B`).
pub fn human(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
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

/// A rate in binary units per second (`12.3 MiB/s`).
pub fn human_rate(bytes_per_sec: f64) -> String {
    format!("{}/s", human(bytes_per_sec as u64))
}

/// The progress of one transfer, drawn on stderr.
pub struct Progress {
    /// Where frames are drawn: stderr (a buffer in tests).
    out: Box<dyn Write>,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_draw: Option<Instant>,
    /// The longest frame drawn: shorter ones are padded to cover it.
    width: usize,
    finished: bool,
}

impl Progress {
    /// The progress of a transfer of `total` bytes (`None`: unknown) when `wanted`
    /// (`--progress`) and stderr is a terminal; else `None`, and nothing is drawn.
    pub fn for_stderr(wanted: bool, total: Option<u64>) -> Option<Progress> {
        (wanted && io::stderr().is_terminal()).then(|| Progress::new(Box::new(io::stderr()), total))
    }

    fn new(out: Box<dyn Write>, total: Option<u64>) -> Progress {
        Progress {
            out,
            total,
            done: 0,
            started: Instant::now(),
            last_draw: None,
            width: 0,
            finished: false,
        }
    }

    /// Counts `n` more bytes; redraws when due, and ends when all the data went through.
    pub fn advance(&mut self, n: usize) {
        if self.finished {
            return;
        }
        self.done = self.done.saturating_add(n as u64);
        if self.total.is_some_and(|t| self.done >= t) {
            self.finish(State::Done);
        } else if self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.draw(State::Running);
        }
    }

    /// Draws the last frame and ends the line (once).
    pub fn finish(&mut self, state: State) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.draw(state);
        let _ = writeln!(self.out);
    }

    fn frame(&self, state: State) -> Frame {
        Frame {
            done: self.done,
            total: self.total,
            elapsed: self.started.elapsed(),
            state,
        }
    }

    fn draw(&mut self, state: State) {
        self.last_draw = Some(Instant::now());
        let line = render(&self.frame(state));
        let pad = self.width.saturating_sub(line.len());
        self.width = self.width.max(line.len());
        // Frames are best effort: a closed stderr must not fail the transfer.
        let _ = write!(self.out, "\r{line}{:pad$}", "");
        let _ = self.out.flush();
    }
}

impl Drop for Progress {
    /// A transfer dropped before its end (an error) shows where it stopped, on a line of
    /// its own, before the error message.
    fn drop(&mut self) {
        if self.last_draw.is_some() {
            self.finish(State::Stopped);
        }
    }
}

/// A reader that advances a progress display (if any) as it is read, ending it at the end
/// of the data.
pub struct ProgressReader<R> {
    inner: R,
    progress: Option<Progress>,
}

impl<R: Read> ProgressReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R, progress: Option<Progress>) -> ProgressReader<R> {
        ProgressReader { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(p) = &mut self.progress {
            if n == 0 && !buf.is_empty() {
                p.finish(State::Done);
            } else {
                p.advance(n);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn frame(done: u64, total: Option<u64>, millis: u64, state: State) -> String {
        render(&Frame {
            done,
            total,
            elapsed: Duration::from_millis(millis),
            state,
        })
    }

    #[test]
    fn bytes_in_binary_units() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1024), "1.0 KiB");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(100 * MIB), "100.0 MiB");
        assert_eq!(human(3 * 1024 * MIB), "3.0 GiB");
        assert_eq!(human(u64::MAX), "16.0 EiB");
        assert_eq!(human_rate(12.3 * MIB as f64), "12.3 MiB/s");
        assert_eq!(human_rate(512.9), "512 B/s");
    }

    #[test]
    fn percent_rounds_down_and_caps() {
        assert_eq!(percent(0, 100), 0);
        assert_eq!(percent(45, 100), 45);
        assert_eq!(percent(999, 1000), 99);
        assert_eq!(percent(1000, 1000), 100);
        assert_eq!(percent(2000, 1000), 100);
        assert_eq!(percent(0, 0), 100);
        assert_eq!(percent(u64::MAX - 1, u64::MAX), 99);
    }

    #[test]
    fn clock_and_eta() {
        assert_eq!(clock(0), "0:00");
        assert_eq!(clock(4), "0:04");
        assert_eq!(clock(754), "12:34");
        assert_eq!(clock(3600 + 2 * 60 + 3), "1:02:03");
        assert_eq!(eta(10 * MIB, 2.0 * MIB as f64), "0:05");
        assert_eq!(eta(1, 2.0), "0:01", "a part of a second counts as one");
        assert_eq!(eta(0, 2.0), "0:00");
        assert_eq!(eta(MIB, 0.0), "--:--");
        assert_eq!(eta(u64::MAX, 1.0), "--:--");
    }

    #[test]
    fn frames_of_a_known_size() {
        // At the start: no rate yet, so no ETA.
        assert_eq!(
            frame(0, Some(100 * MIB), 0, State::Running),
            "[>               ]   0%        0 B / 100.0 MiB   --.- MiB/s  ETA --:--"
        );
        // 45 MiB in 4 s: 11.2 MiB/s, 55 MiB to go: 5 s.
        assert_eq!(
            frame(45 * MIB, Some(100 * MIB), 4000, State::Running),
            "[=======>        ]  45%   45.0 MiB / 100.0 MiB   11.2 MiB/s  ETA 0:05"
        );
        assert_eq!(
            frame(100 * MIB, Some(100 * MIB), 8000, State::Done),
            "[================] 100%  100.0 MiB / 100.0 MiB   12.5 MiB/s  in 0:08"
        );
        assert_eq!(
            frame(12 * MIB, Some(100 * MIB), 1000, State::Stopped),
            "[=>              ]  12%   12.0 MiB / 100.0 MiB   12.0 MiB/s  stopped"
        );
        // Slow: hours.
        assert_eq!(
            frame(MIB, Some(4 * 1024 * MIB), 1000, State::Running),
            "[>               ]   0%    1.0 MiB / 4.0 GiB    1.0 MiB/s  ETA 1:08:15"
        );
    }

    #[test]
    fn frames_of_zero_bytes() {
        assert_eq!(
            frame(0, Some(0), 0, State::Done),
            "[================] 100%        0 B / 0 B   --.- MiB/s  in 0:00"
        );
        assert_eq!(
            frame(0, Some(0), 3, State::Done),
            "[================] 100%        0 B / 0 B        0 B/s  in 0:00"
        );
    }

    #[test]
    fn frames_of_an_unknown_size() {
        assert_eq!(
            frame(64 * 1024, None, 10, State::Running),
            "  64.0 KiB   --.- MiB/s"
        );
        assert_eq!(
            frame(45 * MIB, None, 4000, State::Running),
            "  45.0 MiB   11.2 MiB/s"
        );
        assert_eq!(
            frame(45 * MIB, None, 4000, State::Done),
            "  45.0 MiB   11.2 MiB/s  in 0:04"
        );
        assert!(!frame(45 * MIB, None, 4000, State::Running).contains('%'));
    }

    /// A buffer the test keeps a handle on while a [`Progress`] writes into it.
    #[derive(Clone, Default)]
    struct Sink(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.borrow()).into_owned()
        }
    }

    #[test]
    fn progress_draws_in_place_and_ends_the_line_once() {
        let sink = Sink::default();
        let mut p = Progress::new(Box::new(sink.clone()), Some(10));
        p.advance(4);
        assert_eq!((p.done, p.finished), (4, false));
        assert!(
            sink.text().starts_with("\r[======>         ]  40%"),
            "{}",
            sink.text()
        );
        p.advance(6);
        assert!(p.finished, "all data went through");
        p.advance(5);
        assert_eq!(p.done, 10, "nothing counted after the end");
        drop(p);
        let text = sink.text();
        assert_eq!(text.matches('\r').count(), 2, "{text:?}");
        assert!(text.contains("\r[================] 100%"), "{text:?}");
        // The last frame, shorter, is padded over the first.
        assert!(text.ends_with("  in 0:00  \n"), "{text:?}");
        assert_eq!(text.matches('\n').count(), 1, "{text:?}");
    }

    #[test]
    fn a_transfer_dropped_early_shows_where_it_stopped() {
        let sink = Sink::default();
        let mut p = Progress::new(Box::new(sink.clone()), Some(100));
        p.advance(12);
        drop(p);
        let text = sink.text();
        assert!(text.contains("\r[=>              ]  12%"), "{text:?}");
        assert!(
            text.trim_end().ends_with("  stopped") && text.ends_with('\n'),
            "{text:?}"
        );
        // Nothing drawn yet (the transfer never started): nothing to end.
        let sink = Sink::default();
        drop(Progress::new(Box::new(sink.clone()), Some(100)));
        assert_eq!(sink.text(), "");
    }

    #[test]
    fn reader_passes_bytes_through() {
        let mut r = ProgressReader::new(&b"abc"[..], None);
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        assert_eq!(s, "abc");
        // Of an unknown size: ended by the end of the data.
        let sink = Sink::default();
        let p = Progress::new(Box::new(sink.clone()), None);
        let mut r = ProgressReader::new(&b"abcdef"[..], Some(p));
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        assert_eq!(s, "abcdef");
        assert!(
            r.progress
                .as_ref()
                .is_some_and(|p| p.finished && p.done == 6)
        );
        let text = sink.text();
        assert!(text.starts_with("\r       6 B   --.- MiB/s"), "{text:?}");
        assert!(
            text.ends_with("  in 0:00\n") && !text.contains('%'),
            "{text:?}"
        );
    }
}
