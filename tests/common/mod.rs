//! Test harness: a broker on an ephemeral port and a small STOMP client DSL.
//!
//! Every helper has a deadline, so a broken broker fails a test instead of hanging it.
#![allow(dead_code)]

use romp::stomp::{parse, skip_eols, Limits, Parsed, Version};
use romp::{Config, Server, ServerHandle};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct Broker {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
}

impl Broker {
    pub fn start(workers: usize) -> Broker {
        Broker::with(workers, |_| {})
    }

    pub fn with(workers: usize, f: impl FnOnce(&mut Config)) -> Broker {
        let mut cfg = Config { ports: vec![0], workers, pin_workers: false, ..Config::default() };
        f(&mut cfg);
        let handle = Server::start(cfg).expect("broker starts");
        let addr = handle.local_addrs()[0];
        Broker { handle: Some(handle), addr }
    }

    /// A raw TCP connection, no CONNECT sent.
    pub fn raw(&self) -> Client {
        Client::raw(self.addr)
    }

    /// A connected client speaking `version` ("1.0", "1.1" or "1.2").
    pub fn client(&self, version: &str) -> Client {
        let mut c = self.raw();
        c.connect(version);
        c
    }

    pub fn connections(&self) -> usize {
        self.handle.as_ref().map_or(0, |h| h.connections())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            h.join();
        }
    }
}

/// A received frame, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Got {
    pub command: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Got {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn h(&self, name: &str) -> &str {
        self.header(name).unwrap_or_else(|| panic!("{} has no {name} header: {self:?}", self.command))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Client {
    pub sock: TcpStream,
    pub buf: Vec<u8>,
    pub version: Version,
    /// Heart-beat EOLs seen between frames.
    pub eols: usize,
    /// Frames that arrived while [`Client::with_receipt`] waited; `recv` returns them first.
    pub stash: std::collections::VecDeque<Got>,
}

/// Build a frame from parts (headers are written as given: escape them yourself).
pub fn frame(cmd: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(cmd.as_bytes());
    v.push(b'\n');
    for (k, val) in headers {
        v.extend_from_slice(k.as_bytes());
        v.push(b':');
        v.extend_from_slice(val.as_bytes());
        v.push(b'\n');
    }
    v.push(b'\n');
    v.extend_from_slice(body);
    v.push(0);
    v
}

impl Client {
    pub fn raw(addr: SocketAddr) -> Client {
        let sock = TcpStream::connect(addr).expect("connect");
        sock.set_nodelay(true).unwrap();
        Client { sock, buf: Vec::new(), version: Version::V1_2, eols: 0, stash: Default::default() }
    }

    pub fn connect(&mut self, version: &str) -> Got {
        let f = if version == "1.0" {
            frame("CONNECT", &[], b"")
        } else {
            frame("CONNECT", &[("accept-version", version), ("host", "/")], b"")
        };
        self.send_raw(&f);
        let g = self.expect("CONNECTED");
        self.version = match version {
            "1.0" => Version::V1_0,
            "1.1" => Version::V1_1,
            _ => Version::V1_2,
        };
        g
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("write");
    }

    pub fn send_frame(&mut self, cmd: &str, headers: &[(&str, &str)], body: &[u8]) {
        let f = frame(cmd, headers, body);
        self.send_raw(&f);
    }

    pub fn send(&mut self, dest: &str, body: &str) {
        self.send_frame("SEND", &[("destination", dest)], body.as_bytes());
    }

    pub fn subscribe(&mut self, id: &str, dest: &str, ack: &str) {
        self.send_frame("SUBSCRIBE", &[("id", id), ("destination", dest), ("ack", ack)], b"");
    }

    /// Send a frame with `receipt:r` and wait for that RECEIPT. Other frames that arrive first
    /// (MESSAGEs) are kept for later `recv` calls.
    pub fn with_receipt(&mut self, cmd: &str, headers: &[(&str, &str)], body: &[u8], r: &str) {
        let mut h = headers.to_vec();
        h.push(("receipt", r));
        self.send_frame(cmd, &h, body);
        loop {
            let g = self.recv_wire(WAIT).expect("timed out waiting for a RECEIPT");
            match g.command.as_str() {
                "RECEIPT" => {
                    assert_eq!(g.h("receipt-id"), r);
                    return;
                }
                "MESSAGE" => self.stash.push_back(g),
                _ => panic!("expected RECEIPT {r}, got {g:?}"),
            }
        }
    }

    /// Subscribe and wait until the subscription is in place.
    pub fn subscribe_sync(&mut self, id: &str, dest: &str, ack: &str) {
        let r = format!("sub-{id}");
        self.with_receipt("SUBSCRIBE", &[("id", id), ("destination", dest), ("ack", ack)], b"", &r);
    }

    fn try_parse(&mut self) -> Option<Got> {
        let n = skip_eols(&self.buf);
        if n > 0 {
            self.eols += self.buf[..n].iter().filter(|&&b| b == b'\n').count();
            self.buf.drain(..n);
        }
        if self.buf.is_empty() {
            return None;
        }
        let limits = Limits { max_headers: 10_000, max_header_len: 1 << 20, max_body: 64 << 20 };
        let got = match parse(&self.buf, self.version, &limits).expect("broker sent a malformed frame") {
            Parsed::Frame(f, used) => Some((
                Got {
                    command: f.command.as_str().to_string(),
                    headers: f.headers.iter().map(|h| (h.name.to_string(), h.value.to_string())).collect(),
                    body: f.body.to_vec(),
                },
                used,
            )),
            Parsed::Incomplete { .. } => None,
        };
        let (g, used) = got?;
        self.buf.drain(..used);
        Some(g)
    }

    /// Read until a frame arrives or `timeout`; `None` on timeout. Panics on EOF.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Got> {
        if let Some(g) = self.stash.pop_front() {
            return Some(g);
        }
        self.recv_wire(timeout)
    }

    /// Like `recv_timeout`, but only from the socket, never from the stash.
    fn recv_wire(&mut self, timeout: Duration) -> Option<Got> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(g) = self.try_parse() {
                return Some(g);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut tmp = [0u8; 65536];
            match self.sock.read(&mut tmp) {
                Ok(0) => panic!("connection closed while waiting for a frame; buffered: {:?}", String::from_utf8_lossy(&self.buf)),
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read error: {e}"),
            }
        }
    }

    pub fn recv(&mut self) -> Got {
        self.recv_timeout(WAIT).expect("timed out waiting for a frame")
    }

    /// The next frame must be `cmd`.
    pub fn expect(&mut self, cmd: &str) -> Got {
        let g = self.recv();
        assert_eq!(g.command, cmd, "expected {cmd}, got {g:?}");
        g
    }

    /// ERROR with this `message`, then the connection closes (L1).
    pub fn expect_error(&mut self, word: &str) -> Got {
        let g = self.expect("ERROR");
        assert_eq!(g.h("message"), word, "{g:?}");
        self.expect_closed();
        g
    }

    /// No frame arrives within `d`.
    pub fn expect_nothing(&mut self, d: Duration) {
        if let Some(g) = self.recv_timeout(d) {
            panic!("expected nothing, got {g:?}");
        }
    }

    /// The broker closes the connection (EOF or reset) within the deadline, sending no frame.
    pub fn expect_closed(&mut self) {
        assert!(self.stash.is_empty(), "expected close, have {:?}", self.stash);
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(g) = self.try_parse() {
                panic!("expected close, got {g:?}");
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "connection not closed in time");
            self.sock.set_read_timeout(Some(left)).unwrap();
            let mut tmp = [0u8; 4096];
            match self.sock.read(&mut tmp) {
                Ok(0) => return,
                Ok(n) => self.buf.extend_from_slice(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read error: {e}"),
            }
        }
    }

    pub fn disconnect(mut self) {
        self.with_receipt("DISCONNECT", &[], b"", "bye");
        self.expect_closed();
    }
}

/// Run a test body once with one worker and once with four (more workers than cores, so
/// clients and destinations land on different workers).
#[macro_export]
macro_rules! both {
    ($name:ident, $f:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[test]
            fn w1() {
                ($f)(1usize)
            }
            #[test]
            fn w4() {
                ($f)(4usize)
            }
        }
    };
}
