//! The work queue between the poller and the workers, with a reserve for metadata requests.
//!
//! A request reaches this queue only once its head has arrived whole, so a worker never
//! waits for a client to start talking. Requests are of two kinds: *bulk* ones move image
//! data (uploads, downloads) and may hold a worker for minutes; *light* ones (HEAD,
//! listings, metadata updates, members) take milliseconds. At most `workers -
//! metadata_workers` bulk requests run at once, so the remaining workers are always free
//! for light requests: a fleet of slow downloads cannot starve a HEAD.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// Counts open connections, in all and per peer address, for `max_connections` and
/// `max_connections_per_client`. A [`Slot`] is one counted connection.
#[derive(Debug, Default)]
pub(super) struct Tracker {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_peer: std::collections::HashMap<IpAddr, usize>,
}

/// Why a new connection was not counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OverLimit {
    Total,
    PerClient,
}

impl Tracker {
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts a connection from `ip` in, unless that would pass a limit.
    pub(super) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        max_total: usize,
        max_per_peer: usize,
    ) -> Result<Slot, OverLimit> {
        let mut c = self.lock();
        let mine = c.per_peer.get(&ip).copied().unwrap_or(0);
        if mine >= max_per_peer {
            return Err(OverLimit::PerClient);
        }
        if c.total >= max_total {
            return Err(OverLimit::Total);
        }
        c.total += 1;
        c.per_peer.insert(ip, mine + 1);
        Ok(Slot {
            tracker: Arc::clone(self),
            ip,
        })
    }

    /// Open connections in all.
    #[cfg(test)]
    pub(super) fn total(&self) -> usize {
        self.lock().total
    }
}

/// One counted connection; dropping it (with its socket) counts it out.
#[derive(Debug)]
pub(super) struct Slot {
    tracker: Arc<Tracker>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self.tracker.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_peer.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_peer.remove(&self.ip);
            }
        }
    }
}

/// A connection between requests, or with a request head waiting to be served.
#[derive(Debug)]
pub(super) struct Conn {
    pub stream: TcpStream,
    /// Bytes read off the socket and not yet consumed: the start of the next request.
    pub buf: Vec<u8>,
    pub peer: SocketAddr,
    /// Our address on this connection (the interface the client reached).
    pub local: Option<SocketAddr>,
    /// Its place in the connection count; `None` for a refused connection that lingers
    /// until closed (it was never counted in).
    pub slot: Option<Slot>,
}

/// A connection whose request head has arrived, waiting for a worker.
#[derive(Debug)]
pub(super) struct Job {
    pub conn: Conn,
    /// When the head had to be complete (the head deadline, for a head that spans more
    /// than what the poller buffered).
    pub head_deadline: Instant,
    /// The request moves image data.
    pub bulk: bool,
}

#[derive(Debug, Default)]
struct Queues {
    light: VecDeque<Job>,
    bulk: VecDeque<Job>,
    bulk_running: usize,
    closed: bool,
    /// Workers waiting in `take`: only then is a new job signalled (a condition variable's
    /// signal is a system call even when nobody waits).
    idle_workers: usize,
}

/// The queue workers take jobs from.
#[derive(Debug)]
pub(super) struct WorkQueue {
    queues: Mutex<Queues>,
    ready: Condvar,
    /// Most bulk jobs running at once.
    bulk_limit: usize,
    /// Light jobs queued, readable without the lock (see [`WorkQueue::light_waiting`]).
    light_queued: AtomicUsize,
}

/// A bulk job's place among the running ones, given back when dropped.
pub(super) struct BulkPermit<'q> {
    queue: Option<&'q WorkQueue>,
}

impl Drop for BulkPermit<'_> {
    fn drop(&mut self) {
        if let Some(queue) = self.queue {
            let mut q = queue.lock();
            q.bulk_running -= 1;
            // A bulk job may be waiting for exactly this place.
            let wake = q.idle_workers > 0 && !q.bulk.is_empty();
            drop(q);
            if wake {
                queue.ready.notify_all();
            }
        }
    }
}

impl WorkQueue {
    /// A queue for `workers` workers of which `reserved` never take bulk jobs.
    pub(super) fn new(workers: usize, reserved: usize) -> WorkQueue {
        WorkQueue {
            queues: Mutex::default(),
            ready: Condvar::new(),
            bulk_limit: workers.saturating_sub(reserved).max(1),
            light_queued: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a job. False (and the job is dropped, closing its connection) once closed.
    pub(super) fn push(&self, job: Job) -> bool {
        let mut q = self.lock();
        if q.closed {
            return false;
        }
        if job.bulk {
            q.bulk.push_back(job);
        } else {
            q.light.push_back(job);
            self.light_queued.store(q.light.len(), Ordering::Relaxed);
        }
        let wake = q.idle_workers > 0;
        drop(q);
        if wake {
            self.ready.notify_one();
        }
        true
    }

    /// The next job: light ones first, a bulk one when fewer than the limit run. `None`
    /// once the queue is closed and empty.
    pub(super) fn take(&self) -> Option<(Job, BulkPermit<'_>)> {
        let mut q = self.lock();
        loop {
            if let Some(job) = q.light.pop_front() {
                self.light_queued.store(q.light.len(), Ordering::Relaxed);
                return Some((job, BulkPermit { queue: None }));
            }
            if q.bulk_running < self.bulk_limit
                && let Some(job) = q.bulk.pop_front()
            {
                q.bulk_running += 1;
                let permit = BulkPermit { queue: Some(self) };
                return Some((job, permit));
            }
            if q.closed && q.bulk.is_empty() {
                return None;
            }
            q.idle_workers += 1;
            q = self.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            q.idle_workers -= 1;
        }
    }

    /// True when a light job waits for a worker (a hint, read without the lock: a job
    /// queued just after is served by the next free worker all the same).
    pub(super) fn light_waiting(&self) -> bool {
        self.light_queued.load(Ordering::Relaxed) > 0
    }

    /// No more jobs: workers finish what is queued, then `take` returns `None`.
    pub(super) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_all();
    }

    /// Light and bulk jobs waiting.
    #[cfg(test)]
    pub(super) fn queued(&self) -> (usize, usize) {
        let q = self.lock();
        (q.light.len(), q.bulk.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};
    use std::thread;
    use std::time::Duration;

    fn conn(tracker: &Arc<Tracker>) -> Conn {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let stream = TcpStream::connect(addr).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
            peer: addr,
            local: None,
            slot: Some(tracker.admit(addr.ip(), 100, 100).unwrap()),
        }
    }

    fn job(tracker: &Arc<Tracker>, bulk: bool) -> Job {
        Job {
            conn: conn(tracker),
            head_deadline: Instant::now(),
            bulk,
        }
    }

    #[test]
    fn limits_count_connections_in_and_out() {
        let t = Arc::new(Tracker::default());
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let s1 = t.admit(a, 3, 2).unwrap();
        let s2 = t.admit(a, 3, 2).unwrap();
        assert_eq!(t.admit(a, 3, 2).err(), Some(OverLimit::PerClient));
        let s3 = t.admit(b, 3, 2).unwrap();
        assert_eq!(t.admit(b, 3, 2).err(), Some(OverLimit::Total));
        assert_eq!(t.total(), 3);
        drop(s1);
        assert_eq!(t.total(), 2);
        let _s4 = t.admit(a, 3, 2).unwrap();
        drop((s2, s3));
        assert_eq!(t.total(), 1);
    }

    #[test]
    fn light_jobs_pass_bulk_ones_and_bulk_is_capped() {
        let t = Arc::new(Tracker::default());
        let q = WorkQueue::new(3, 1);
        for _ in 0..3 {
            assert!(q.push(job(&t, true)));
        }
        assert!(q.push(job(&t, false)));
        // The light job first, although it came last.
        let first = q.take().unwrap();
        assert!(!first.0.bulk);
        drop(first);
        let b1 = q.take().unwrap();
        let b2 = q.take().unwrap();
        assert!(b1.0.bulk && b2.0.bulk);
        assert_eq!(q.queued(), (0, 1));
        // Two bulk jobs run: the third waits until one ends, while a light job passes.
        assert!(q.push(job(&t, false)));
        let light = q.take().unwrap();
        assert!(!light.0.bulk);
        // Scoped: the permits borrow the queue.
        thread::scope(|s| {
            let waiter = s.spawn(|| q.take().map(|(job, _)| job.bulk));
            thread::sleep(Duration::from_millis(100));
            assert!(!waiter.is_finished(), "a third bulk job ran beside two");
            drop(b1);
            assert_eq!(waiter.join().unwrap(), Some(true));
        });
        drop((b2, light));
    }

    #[test]
    fn closing_drains_then_ends() {
        let t = Arc::new(Tracker::default());
        let q = WorkQueue::new(2, 1);
        assert!(q.push(job(&t, true)));
        q.close();
        assert!(!q.push(job(&t, false)));
        assert!(q.take().is_some());
        assert!(q.take().is_none());
        assert_eq!(t.total(), 0);
    }
}
