//! Test harness: a broker on an ephemeral port and a small STOMP client DSL.
//!
//! Every helper has a deadline, so a broken broker fails a test instead of hanging it. Server
//! frames are read with `romp::client::read` and well-formed client frames are encoded with
//! `romp::client::frames`, the public client's sans-io core; [`frame`] and [`Client::send_raw`]
//! stay for the frames a test writes by hand on purpose (malformed, unescaped, odd).
#![allow(dead_code)]

use romp::client::frames;
use romp::stomp::{AckMode, HeartBeat, Limits, Version};
use romp::{Config, Server, ServerHandle};
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

/// How a test runs: workers, and whether its clients speak STOMP over WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub workers: usize,
    pub ws: bool,
}

impl From<usize> for Setup {
    fn from(workers: usize) -> Setup {
        Setup { workers, ws: false }
    }
}

impl std::fmt::Display for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", if self.ws { "ws" } else { "w" }, self.workers)
    }
}

pub struct Broker {
    pub handle: Option<ServerHandle>,
    pub addr: SocketAddr,
    pub web: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub ws: bool,
    /// `Authorization` for the stats pages: Basic with the config's shared login, if it has one.
    pub basic: Option<String>,
}

/// The configuration every test broker starts from: ephemeral ports, memory only, unpinned.
/// (Tests that reload give `ServerHandle::reload` a configuration built from it too.)
pub fn test_config(workers: usize) -> Config {
    Config { ports: vec![0], web_port: 0, admin_port: 0, workers, pin_workers: false, data_dir: String::new(), ..Config::default() }
}

impl Broker {
    pub fn start(setup: impl Into<Setup>) -> Broker {
        Broker::with(setup, |_| {})
    }

    pub fn with(setup: impl Into<Setup>, f: impl FnOnce(&mut Config)) -> Broker {
        let setup = setup.into();
        let mut cfg = test_config(setup.workers);
        f(&mut cfg);
        let basic = match (&cfg.login, &cfg.passcode) {
            (Some(l), Some(p)) => {
                use base64::Engine;
                Some(format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{l}:{p}"))))
            }
            _ => None,
        };
        let handle = Server::start(cfg).expect("broker starts");
        let addr = handle.local_addrs()[0];
        let web = handle.web_addr().unwrap_or(addr);
        let admin = handle.admin_addr();
        Broker { handle: Some(handle), addr, web, admin, ws: setup.ws, basic }
    }

    /// A raw connection (TCP, or WebSocket after the upgrade), no CONNECT sent.
    pub fn raw(&self) -> Client {
        if self.ws {
            Client::websocket(self.web, "/stomp")
        } else {
            Client::raw(self.addr)
        }
    }

    /// A connected client speaking `version` ("1.0", "1.1" or "1.2").
    pub fn client(&self, version: &str) -> Client {
        let mut c = self.raw();
        c.connect(version);
        c
    }

    /// The admin port's `/metrics` page (Prometheus text).
    pub fn metrics(&self) -> String {
        let mut s = TcpStream::connect(self.admin.expect("admin port")).expect("admin port");
        s.set_read_timeout(Some(WAIT)).unwrap();
        let auth = self.basic.as_ref().map(|b| format!("Authorization: {b}\r\n")).unwrap_or_default();
        s.write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes()).unwrap();
        let mut all = String::new();
        s.read_to_string(&mut all).unwrap();
        all
    }

    /// The value of the first `/metrics` line that starts with `prefix` (a name, or a name and
    /// the start of its labels); 0 if there is none.
    pub fn metric(&self, prefix: &str) -> u64 {
        let all = self.metrics();
        all.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).map_or(0, |v| v.parse().unwrap())
    }

    pub fn connections(&self) -> usize {
        self.handle.as_ref().map_or(0, |h| h.connections())
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            // Every test also checks that no broker thread died under it.
            if let Err(e) = h.join() {
                assert!(std::thread::panicking(), "{e}");
            }
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
    /// Parse position in `buf`.
    pub pos: usize,
    pub version: Version,
    /// Heart-beat EOLs seen between frames.
    pub eols: usize,
    /// Frames that arrived while [`Client::with_receipt`] waited; `recv` returns them first.
    pub stash: std::collections::VecDeque<Got>,
    /// Speaking WebSocket: server bytes not yet unframed, and the close code once received.
    pub ws: Option<WsState>,
}

#[derive(Debug, Default)]
pub struct WsState {
    pub raw: Vec<u8>,
    pub closed: Option<u16>,
    pub messages: usize,
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
        Client { sock, buf: Vec::new(), pos: 0, version: Version::V1_2, eols: 0, stash: Default::default(), ws: None }
    }

    /// Open a WebSocket to `path` on the web port, offering the STOMP subprotocols.
    pub fn websocket(addr: SocketAddr, path: &str) -> Client {
        let mut c = Client::raw(addr);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v12.stomp, v11.stomp, v10.stomp\r\n\r\n"
        );
        c.sock.write_all(req.as_bytes()).unwrap();
        let head = read_http_head(&mut c.sock, &mut c.buf);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        assert!(head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        let leftover = std::mem::take(&mut c.buf);
        c.pos = 0;
        c.ws = Some(WsState { raw: leftover, ..WsState::default() });
        c
    }

    /// Move complete server WebSocket frames from `ws.raw` into the STOMP byte stream.
    fn unframe(&mut self) {
        let Some(ws) = self.ws.as_mut() else { return };
        loop {
            let r = &ws.raw;
            if r.len() < 2 {
                return;
            }
            assert_eq!(r[1] & 0x80, 0, "server frames must not be masked");
            let (len, hdr) = match r[1] & 0x7f {
                126 if r.len() >= 4 => (u16::from_be_bytes([r[2], r[3]]) as usize, 4),
                127 if r.len() >= 10 => (u64::from_be_bytes(r[2..10].try_into().unwrap()) as usize, 10),
                126 | 127 => return,
                n => (n as usize, 2),
            };
            if r.len() < hdr + len {
                return;
            }
            let op = r[0] & 0x0f;
            assert!(r[0] & 0x80 != 0, "server messages are not fragmented");
            let payload = r[hdr..hdr + len].to_vec();
            ws.raw.drain(..hdr + len);
            match op {
                1 | 2 => {
                    ws.messages += 1;
                    self.buf.extend_from_slice(&payload);
                }
                8 => ws.closed = Some(if payload.len() >= 2 { u16::from_be_bytes([payload[0], payload[1]]) } else { 1005 }),
                9 | 10 => {}
                x => panic!("unexpected server opcode {x}"),
            }
        }
    }

    pub fn connect(&mut self, version: &str) -> Got {
        self.connect_with(version, &[])
    }

    /// CONNECT with extra headers (e.g. `client-id`).
    pub fn connect_with(&mut self, version: &str, extra: &[(&str, &str)]) -> Got {
        let v = Version::from_token(version).unwrap_or(Version::V1_2);
        let c = frames::Connect {
            versions: &[v],
            host: if v == Version::V1_0 { "" } else { "/" },
            login: None,
            passcode: None,
            heart_beat: HeartBeat::default(),
            stomp_command: false,
        };
        let mut f = Vec::new();
        frames::connect(&mut f, &c, extra).expect("CONNECT encodes");
        self.send_raw(&f);
        let g = self.expect("CONNECTED");
        self.version = v;
        g
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).expect("write");
    }

    /// Write STOMP bytes (as one binary WebSocket message when speaking WebSocket).
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.ws.is_some() {
            let mut f = Vec::with_capacity(bytes.len() + 14);
            romp::ws::frame::encode_client(&mut f, romp::ws::Opcode::Binary, true, bytes, [1, 2, 3, 4]);
            self.sock.write_all(&f)
        } else {
            self.sock.write_all(bytes)
        }
    }

    pub fn send_frame(&mut self, cmd: &str, headers: &[(&str, &str)], body: &[u8]) {
        let f = frame(cmd, headers, body);
        self.send_raw(&f);
    }

    pub fn send(&mut self, dest: &str, body: &str) {
        let mut f = Vec::new();
        frames::send(&mut f, self.version, dest, body.as_bytes(), &[]).expect("SEND encodes");
        self.send_raw(&f);
    }

    /// SUBSCRIBE through the client encoder; an ack mode it will not write (unknown, or
    /// client-individual on 1.0: tests of the broker's refusal) goes out as written.
    pub fn subscribe(&mut self, id: &str, dest: &str, ack: &str) {
        let mut f = Vec::new();
        let encoded = AckMode::from_name(ack).is_some_and(|mode| frames::subscribe(&mut f, self.version, id, dest, mode, &[]).is_ok());
        if !encoded {
            f = frame("SUBSCRIBE", &[("id", id), ("destination", dest), ("ack", ack)], b"");
        }
        self.send_raw(&f);
    }

    /// Send a frame with `receipt:r` and wait for that RECEIPT. Other frames that arrive first
    /// (MESSAGEs) are kept for later `recv` calls.
    pub fn with_receipt(&mut self, cmd: &str, headers: &[(&str, &str)], body: &[u8], r: &str) {
        let mut h = headers.to_vec();
        h.push(("receipt", r));
        self.send_frame(cmd, &h, body);
        self.await_receipt(r);
    }

    /// Wait for RECEIPT `r`, keeping MESSAGEs that come first for later `recv` calls.
    fn await_receipt(&mut self, r: &str) {
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
        // Parse at an offset and compact only now and then: a WebSocket message can carry
        // megabytes of frames, and draining per frame would be quadratic.
        if self.pos > 0 && (self.pos >= self.buf.len() || self.pos > 1 << 16) {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let limits = Limits { max_headers: 10_000, max_header_len: 1 << 20, max_body: 64 << 20 };
        loop {
            match romp::client::read(&self.buf[self.pos..], self.version, &limits).expect("broker sent a malformed frame") {
                romp::client::Decoded::HeartBeats { bytes, beats } => {
                    self.eols += beats;
                    self.pos += bytes;
                }
                romp::client::Decoded::Incomplete { .. } => return None,
                romp::client::Decoded::Frame(f, used) => {
                    let g = Got {
                        command: f.command().as_str().to_string(),
                        headers: f.frame.headers.iter().map(|h| (h.name.to_string(), h.value.to_string())).collect(),
                        body: f.body().to_vec(),
                    };
                    self.pos += used;
                    return Some(g);
                }
            }
        }
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
            if left.is_zero() || self.ws.as_ref().is_some_and(|w| w.closed.is_some()) {
                return None;
            }
            self.sock.set_read_timeout(Some(left.max(Duration::from_millis(1)))).unwrap();
            let mut tmp = [0u8; 65536];
            match self.sock.read(&mut tmp) {
                Ok(0) => panic!("connection closed while waiting for a frame; buffered: {:?}", String::from_utf8_lossy(&self.buf)),
                Ok(n) => self.take_bytes(&tmp[..n]),
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
            if self.ws.as_ref().is_some_and(|w| w.closed.is_some()) {
                // The WebSocket close frame came; the TCP close must follow.
                let mut tmp = [0u8; 4096];
                self.sock.set_read_timeout(Some(left)).unwrap();
                match self.sock.read(&mut tmp) {
                    Ok(0) => return,
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                    Ok(_) => panic!("data after the WebSocket close frame"),
                    Err(e) => panic!("no TCP close after the WebSocket close: {e}"),
                }
            }
            let mut tmp = [0u8; 4096];
            match self.sock.read(&mut tmp) {
                Ok(0) => {
                    assert!(self.ws.as_ref().is_none_or(|w| w.closed.is_some()), "WebSocket closed without a close frame");
                    return;
                }
                Ok(n) => self.take_bytes(&tmp[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read error: {e}"),
            }
        }
    }

    fn take_bytes(&mut self, bytes: &[u8]) {
        match self.ws.as_mut() {
            Some(ws) => {
                ws.raw.extend_from_slice(bytes);
                self.unframe();
            }
            None => self.buf.extend_from_slice(bytes),
        }
    }

    pub fn disconnect(mut self) {
        let mut f = Vec::new();
        frames::disconnect(&mut f, self.version, Some("bye")).expect("DISCONNECT encodes");
        self.send_raw(&f);
        self.await_receipt("bye");
        self.expect_closed();
    }
}

/// Read an HTTP response head (through the blank line); bytes after it stay in `rest`.
pub fn read_http_head(sock: &mut TcpStream, rest: &mut Vec<u8>) -> String {
    sock.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            rest.extend_from_slice(&buf[i + 4..]);
            return String::from_utf8_lossy(&buf[..i + 4]).into_owned();
        }
        let n = sock.read(&mut tmp).expect("read HTTP head");
        assert!(n > 0, "closed before the HTTP head ended: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Generate one `#[test]` per (name, workers, websocket) variant of a test body.
#[macro_export]
macro_rules! variants {
    ($name:ident, $f:expr, $(($v:ident, $w:expr, $ws:expr)),+) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $v() {
                    ($f)(Setup { workers: $w, ws: $ws })
                }
            )+
        }
    };
}

/// Run a test body with one worker and with four (more workers than cores, so clients and
/// destinations land on different workers) over TCP, and with four over WebSocket.
#[macro_export]
macro_rules! both {
    ($name:ident, $f:expr) => {
        $crate::variants!($name, $f, (w1, 1, false), (w4, 4, false), (ws4, 4, true));
    };
}

/// Like [`both!`], over TCP only (the test is about TCP itself).
#[macro_export]
macro_rules! tcp_only {
    ($name:ident, $f:expr) => {
        $crate::variants!($name, $f, (w1, 1, false), (w4, 4, false));
    };
}

/// Wait until the kernel has sent, and had acknowledged, everything written to `s` (SIOCOUTQ).
pub fn wait_sent(s: &std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let t = Instant::now();
    loop {
        let mut n: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int to the pointer we pass; the fd is open.
        let r = unsafe { libc::ioctl(s.as_raw_fd(), libc::TIOCOUTQ, &mut n) };
        if r != 0 || n == 0 || t.elapsed() > WAIT {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
