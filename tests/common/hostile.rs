//! Small hostile HTTP servers on loopback for the location-policy tests: each records every
//! request it receives (so a test can assert that a forbidden address got nothing) and
//! answers what the test's handler says, including bodies without end.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Recorded {
    /// A header value (lower-case name).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server sends back.
pub enum Answer {
    /// These bytes, then the connection is closed.
    Raw(Vec<u8>),
    /// This head (status line and headers, without the blank line), then a chunked body of
    /// `x` without end, until the client goes away.
    Endless(String),
}

impl Answer {
    /// A complete reply with a body and `Connection: close`.
    pub fn reply(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        Answer::Raw(bytes)
    }
}

type Handler = dyn Fn(&Recorded) -> Answer + Send + Sync;

/// A recording server on `ip` (any 127.0.0.0/8 address works on Linux).
pub struct FakeServer {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl FakeServer {
    /// Starts the server; `handler` answers every request.
    pub fn start(
        ip: &str,
        handler: impl Fn(&Recorded) -> Answer + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("bind {ip}: {e}"));
        let addr = listener.local_addr().expect("addr");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let handler: Arc<Handler> = Arc::new(handler);
        let recorded = Arc::clone(&requests);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let handler = Arc::clone(&handler);
                let recorded = Arc::clone(&recorded);
                thread::spawn(move || {
                    let _ = serve(stream, &*handler, &recorded);
                });
            }
        });
        FakeServer { addr, requests }
    }

    /// `host:port`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().expect("lock").clone()
    }
}

fn serve(
    stream: TcpStream,
    handler: &Handler,
    recorded: &Mutex<Vec<Recorded>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    for _ in 0..200 {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let req = Recorded {
        method,
        path,
        headers,
    };
    recorded.lock().expect("lock").push(req.clone());
    let mut out = stream;
    match handler(&req) {
        Answer::Raw(bytes) => out.write_all(&bytes)?,
        Answer::Endless(head) => {
            out.write_all(
                format!("{head}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )?;
            if req.method == "HEAD" {
                return Ok(());
            }
            let chunk = vec![b'x'; 64 * 1024];
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            loop {
                out.write_all(&framed)?;
            }
        }
    }
    out.flush()
}
