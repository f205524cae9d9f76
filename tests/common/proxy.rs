//! A TCP proxy the test controls, put between glance-api and a store to break the store
//! "mid-way": it forwards bytes both ways and, once a given number of bytes went through
//! (either way: uploads and downloads), cuts every open connection (and, if asked, refuses
//! new ones: the store is gone). Other tests sharing the same store are not disturbed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;

struct State {
    upstream: String,
    /// Bytes forwarded (both ways) since the last arming.
    forwarded: AtomicU64,
    /// Cut when `forwarded` reaches this (`u64::MAX`: never).
    cut_at: AtomicU64,
    /// After the cut, refuse new connections too.
    refuse_after_cut: AtomicBool,
    /// Close new connections at once.
    refuse: AtomicBool,
    cuts: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
}

impl State {
    fn cut(&self) {
        if self.refuse_after_cut.load(Ordering::SeqCst) {
            self.refuse.store(true, Ordering::SeqCst);
        }
        self.cut_at.store(u64::MAX, Ordering::SeqCst);
        let conns = std::mem::take(&mut *self.conns.lock().unwrap_or_else(PoisonError::into_inner));
        for c in conns {
            let _ = c.shutdown(Shutdown::Both);
        }
        self.cuts.fetch_add(1, Ordering::SeqCst);
    }
}

/// The proxy; it runs until the test process ends.
pub struct CutProxy {
    /// Where glance-api should connect.
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl CutProxy {
    /// Starts a proxy to `upstream` (`host:port`) on an ephemeral loopback port.
    pub fn start(upstream: &str) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("local_addr: {e}"));
        let state = Arc::new(State {
            upstream: upstream.to_string(),
            forwarded: AtomicU64::new(0),
            cut_at: AtomicU64::new(u64::MAX),
            refuse_after_cut: AtomicBool::new(false),
            refuse: AtomicBool::new(false),
            cuts: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let st = Arc::clone(&state);
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if st.refuse.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&st.upstream) else {
                    continue;
                };
                let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                {
                    let mut conns = st.conns.lock().unwrap_or_else(PoisonError::into_inner);
                    if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
                        conns.push(a);
                        conns.push(b);
                    }
                }
                let up = Arc::clone(&st);
                let down = Arc::clone(&st);
                thread::spawn(move || pump(client, server, &up));
                thread::spawn(move || pump(s2, c2, &down));
            }
        });
        CutProxy { addr, state }
    }

    /// Cuts every connection once `bytes` more bytes went through; with
    /// `then_refuse`, new connections are refused from then on (the store is gone).
    pub fn cut_after(&self, bytes: u64, then_refuse: bool) {
        self.state.forwarded.store(0, Ordering::SeqCst);
        self.state
            .refuse_after_cut
            .store(then_refuse, Ordering::SeqCst);
        self.state.cut_at.store(bytes, Ordering::SeqCst);
    }

    /// Lets connections through again (new ones; cut ones stay cut).
    pub fn restore(&self) {
        self.state.cut_at.store(u64::MAX, Ordering::SeqCst);
        self.state.refuse.store(false, Ordering::SeqCst);
        self.state.refuse_after_cut.store(false, Ordering::SeqCst);
    }

    /// How many times the proxy cut its connections.
    pub fn cuts(&self) -> u64 {
        self.state.cuts.load(Ordering::SeqCst)
    }
}

/// Copies `from` to `to` until either side closes, counting the bytes (and cutting all
/// connections when armed and the count is reached).
fn pump(mut from: TcpStream, mut to: TcpStream, st: &State) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let total = st.forwarded.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if total >= st.cut_at.load(Ordering::SeqCst) {
            st.cut();
            break;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
