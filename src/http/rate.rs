//! A minimum transfer rate for request and response bodies (`client_body_min_rate`,
//! `send_min_rate`, averaged over `min_rate_window`).
//!
//! A socket timeout alone bounds a stall, not a trickle: a client that sends or reads one
//! byte just before each timeout would hold a worker for days. The guard counts the bytes
//! moved and the time spent *waiting on the peer* (inside a socket read, write or
//! sendfile), in tumbling windows: once a window's waiting time reaches `window`, its bytes
//! must be at least `rate` × that time, else the transfer is cut with a `TimedOut` error,
//! and a new window starts.
//!
//! Why waiting time rather than the wall clock: between two socket calls the worker does
//! our own work (writing an upload to a store, reading a download from Swift), and a slow
//! store must not get the client cut. While the client is the bottleneck, the socket calls
//! block and waiting time is wall time. A run of waits without a byte as long as the window
//! is below any rate, so it is cut at once whatever the window's earlier bytes.
//!
//! The guard takes measured durations, not a clock, so tests need no sleeping.

use std::fmt;
use std::io;
use std::time::Duration;

/// The minimum-rate check of one body transfer.
#[derive(Clone)]
pub(super) struct RateGuard {
    /// What moves, for the error message: "request body" or "response body".
    what: &'static str,
    /// Bytes per second; 0 means no minimum.
    rate: u64,
    window: Duration,
    /// Bytes moved in the current window.
    bytes: u64,
    /// Time spent waiting on the peer in the current window.
    spent: Duration,
    /// Time spent waiting on the peer since the last byte moved.
    stalled: Duration,
}

impl fmt::Debug for RateGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.is_on() {
            return f.write_str("RateGuard(off)");
        }
        write!(
            f,
            "RateGuard({} >= {} B/s over {:?}: {} B in {:?}, stalled {:?})",
            self.what, self.rate, self.window, self.bytes, self.spent, self.stalled
        )
    }
}

impl RateGuard {
    /// A guard that never cuts.
    pub(super) const fn off(what: &'static str) -> Self {
        RateGuard::new(what, 0, Duration::ZERO)
    }

    /// A guard requiring `rate` bytes/s over each `window` of waiting time; a zero rate or
    /// window turns it off.
    pub(super) const fn new(what: &'static str, rate: u64, window: Duration) -> Self {
        RateGuard {
            what,
            rate,
            window,
            bytes: 0,
            spent: Duration::ZERO,
            stalled: Duration::ZERO,
        }
    }

    /// True when the guard can cut a transfer.
    pub(super) fn is_on(&self) -> bool {
        self.rate > 0 && !self.window.is_zero()
    }

    /// Records one socket call that moved `bytes` after waiting `spent` (a call that timed
    /// out moved 0). An error of kind `TimedOut` means the transfer is below the rate and
    /// must be cut.
    pub(super) fn account(&mut self, bytes: u64, spent: Duration) -> io::Result<()> {
        if !self.is_on() {
            return Ok(());
        }
        self.bytes = self.bytes.saturating_add(bytes);
        self.spent = self.spent.saturating_add(spent);
        self.stalled = if bytes == 0 {
            self.stalled.saturating_add(spent)
        } else {
            Duration::ZERO
        };
        if self.stalled >= self.window {
            return Err(self.cut(0, self.stalled));
        }
        if self.spent >= self.window {
            if u128::from(self.bytes) < self.required(self.spent) {
                return Err(self.cut(self.bytes, self.spent));
            }
            self.bytes = 0;
            self.spent = Duration::ZERO;
        }
        Ok(())
    }

    /// The bytes `rate` asks for in `spent`.
    fn required(&self, spent: Duration) -> u128 {
        u128::from(self.rate).saturating_mul(spent.as_nanos()) / 1_000_000_000
    }

    fn cut(&self, bytes: u64, spent: Duration) -> io::Error {
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "{} slower than {} bytes/s over {} ({bytes} bytes in {})",
                self.what,
                self.rate,
                seconds(self.window),
                seconds(spent)
            ),
        )
    }
}

/// `30 s`, `0.2 s`: durations as an operator writes them in the configuration.
fn seconds(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{:.1} s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn cut_message(r: io::Result<()>) -> String {
        match r {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => e.to_string(),
            other => panic!("expected a cut, got {other:?}"),
        }
    }

    #[test]
    fn off_never_cuts() {
        for mut g in [
            RateGuard::off("request body"),
            RateGuard::new("request body", 0, Duration::from_secs(30)),
            RateGuard::new("request body", 1024, Duration::ZERO),
        ] {
            assert!(!g.is_on());
            for _ in 0..10 {
                assert!(g.account(0, Duration::from_secs(3600)).is_ok());
            }
        }
    }

    #[test]
    fn window_at_the_rate_passes_and_restarts() {
        let mut g = RateGuard::new("request body", 1024, Duration::from_secs(30));
        // Exactly rate × window over one window, in pieces: passes.
        for _ in 0..30 {
            assert!(g.account(1024, Duration::from_secs(1)).is_ok());
        }
        // A new window started: the old bytes do not carry a slow one.
        for _ in 0..29 {
            assert!(g.account(1000, Duration::from_secs(1)).is_ok());
        }
        let msg = cut_message(g.account(1000, Duration::from_secs(1)));
        assert_eq!(
            msg,
            "request body slower than 1024 bytes/s over 30 s (30000 bytes in 30 s)"
        );
    }

    #[test]
    fn the_check_waits_for_a_whole_window() {
        let mut g = RateGuard::new("response body", 1_000_000, ms(200));
        // Slow, but the window has not been waited through yet.
        for _ in 0..199 {
            assert!(g.account(1, ms(1)).is_ok());
        }
        let msg = cut_message(g.account(1, ms(1)));
        assert!(msg.starts_with("response body slower than 1000000 bytes/s over 0.2 s"));
    }

    #[test]
    fn time_not_spent_waiting_does_not_count() {
        // Fast socket calls separated by slow work of our own: only the calls' time counts,
        // so a thousand calls of 1 KiB in 1 ms each are 1 MiB/s, well above the rate.
        let mut g = RateGuard::new("request body", 100_000, Duration::from_secs(1));
        for _ in 0..10_000 {
            assert!(g.account(1024, ms(1)).is_ok());
        }
    }

    #[test]
    fn a_stall_as_long_as_the_window_cuts_at_once() {
        let mut g = RateGuard::new("request body", 1024, Duration::from_secs(30));
        // Plenty of bytes early in the window do not excuse a window-long stall.
        assert!(g.account(10_000_000, Duration::from_secs(1)).is_ok());
        assert!(g.account(0, Duration::from_secs(20)).is_ok());
        let msg = cut_message(g.account(0, Duration::from_secs(10)));
        assert!(msg.ends_with("(0 bytes in 30 s)"), "{msg}");
        // One timed-out call longer than the window is a cut by itself.
        let mut g = RateGuard::new("response body", 1024, Duration::from_secs(30));
        cut_message(g.account(0, Duration::from_secs(60)));
    }

    #[test]
    fn a_long_window_is_judged_on_its_whole_length() {
        // A call may end well past the window: the bytes must cover the whole time waited.
        let mut g = RateGuard::new("response body", 1000, Duration::from_secs(10));
        assert!(g.account(25_000, Duration::from_secs(25)).is_ok());
        let mut g = RateGuard::new("response body", 1000, Duration::from_secs(10));
        cut_message(g.account(24_999, Duration::from_secs(25)));
    }

    #[test]
    fn huge_values_saturate() {
        let mut g = RateGuard::new("request body", u64::MAX, Duration::MAX);
        assert!(g.account(u64::MAX, Duration::MAX).is_err());
        assert!(g.account(u64::MAX, Duration::MAX).is_err());
    }
}
