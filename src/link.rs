//! Upstream links (`[downstreams."NAME"]`): this broker dials an edge broker, subscribes to
//! `NAME/up` there, and re-publishes every MESSAGE on its own destination NAME with an `orig-id`
//! header. Lets app servers behind a firewall serve messages that arrive at an edge broker.
//!
//! A link lives on the worker that owns NAME, so a message it receives is offered to the local
//! destination synchronously and the edge is ACKed (client-individual) only once the message is
//! accepted here. If NAME refuses it (full), the link stops reading and offers the same message
//! again every [`RETRY_MS`]; the edge keeps everything unacknowledged, so nothing is lost and the
//! edge's prefetch bounds what is in flight. When the connection fails or the edge goes quiet
//! (it is asked for heart-beats), the link reconnects with exponential backoff from
//! `reconnect_min` to `reconnect_max` ms; messages the edge had sent but we had not ACKed are
//! redelivered by the edge (at-least-once across a link failure).
//!
//! The link speaks STOMP 1.2 through `romp::client` (a sans-io [`Session`] per connection), with
//! this module moving its bytes on the worker's mio loop; with `tls = true` over TLS (the
//! transport's rustls client, the edge's certificate checked against `tls_ca` for `tls_name`).
//!
//! # Invariants
//! - At most one socket per link; `inbuf` holds at most one partial frame bounded by
//!   `max_message_size` + 64 KiB (past it the link is dropped and reconnected); `out` holds only
//!   the handshake and ACKs (bounded by the prefetch).

use crate::broker::shard::Shard;
use crate::broker::Message;
use crate::bus::Outbox;
use crate::client::frames::{self, AckRef};
use crate::client::{self, ClientError, Decoded, Incoming, Options, Session};
use crate::config::DownstreamConfig;
use crate::metrics::LinkInfo;
use crate::stomp::{AckMode, HeartBeat, Limits, Version};
use crate::transport::Transport;
use mio::{Registry, Token};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a refused message is offered again.
pub const RETRY_MS: u64 = 100;
/// Heart-beat interval asked of the edge; silence for three of them drops the link.
pub const EDGE_BEAT_MS: u64 = 5_000;

/// Where a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting to (re)connect.
    Backoff,
    /// TCP connect in progress.
    Connecting,
    /// CONNECT sent, waiting for CONNECTED.
    Handshake,
    /// Subscribed; messages flow.
    Up,
}

impl LinkState {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Backoff => "backoff",
            LinkState::Connecting => "connecting",
            LinkState::Handshake => "handshake",
            LinkState::Up => "up",
        }
    }
}

pub struct Link {
    pub name: Arc<str>,
    remote: String,
    addr: SocketAddr,
    cfg: DownstreamConfig,
    pub state: LinkState,
    /// TLS to the edge (`tls = true`): the client configuration and the name to check.
    tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    sock: Option<Transport>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    /// The STOMP session with the edge (new for every connection).
    session: Session,
    /// A message the local destination refused, and the edge's ack id for it.
    held: Option<(Arc<Message>, String)>,
    backoff_ms: u64,
    last_read: Instant,
    connects: u64,
    failures: u64,
    received: u64,
}

/// What the worker should do after a link step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing to schedule.
    Idle,
    /// Call [`Link::tick`] after this long.
    TickIn(Duration),
}

impl Link {
    pub fn new(name: &str, cfg: &DownstreamConfig) -> Option<Link> {
        let addr = cfg.address.parse().ok()?;
        let tls = match cfg.tls_client() {
            Ok(t) => t,
            Err(e) => {
                log::error!("link {name}: {e}");
                return None;
            }
        };
        Some(Link {
            tls,
            name: Arc::from(name),
            remote: cfg.remote.clone().unwrap_or_else(|| format!("{name}/up")),
            addr,
            cfg: cfg.clone(),
            state: LinkState::Backoff,
            sock: None,
            inbuf: Vec::new(),
            out: Vec::new(),
            session: Session::new(Options::default()),
            held: None,
            backoff_ms: cfg.reconnect_min,
            last_read: Instant::now(),
            connects: 0,
            failures: 0,
            received: 0,
        })
    }

    pub fn info(&self) -> LinkInfo {
        LinkInfo {
            name: self.name.to_string(),
            address: self.addr.to_string(),
            remote: self.remote.clone(),
            state: self.state.as_str(),
            connects: self.connects,
            failures: self.failures,
            received: self.received,
        }
    }

    /// Start a connection attempt (state `Backoff` only).
    pub fn connect(&mut self, registry: &Registry, token: Token, now: Instant) -> Next {
        if self.state != LinkState::Backoff {
            return Next::Idle;
        }
        let dialed = match &self.tls {
            None => Transport::connect(self.addr),
            Some((cfg, name)) => Transport::connect_tls(self.addr, cfg.clone(), name.clone()),
        };
        match dialed {
            Ok(mut s) => {
                if let Err(e) = s.register(registry, token) {
                    log::warn!("link {}: cannot register a socket: {e}", self.name);
                    return self.fail(registry, now, "register failed");
                }
                self.sock = Some(s);
                self.state = LinkState::Connecting;
                self.last_read = now;
                // Bound the connect and handshake.
                Next::TickIn(Duration::from_millis(3 * EDGE_BEAT_MS))
            }
            Err(e) => self.fail(registry, now, &e.to_string()),
        }
    }

    /// Drop the connection and schedule a reconnect with backoff.
    fn fail(&mut self, registry: &Registry, _now: Instant, why: &str) -> Next {
        if let Some(mut s) = self.sock.take() {
            let _ = s.deregister(registry);
        }
        if self.state == LinkState::Up || self.state == LinkState::Handshake {
            log::warn!("link {} to {}: down ({why}); reconnecting in {} ms", self.name, self.addr, self.backoff_ms);
        } else {
            log::debug!("link {} to {}: {why}; retrying in {} ms", self.name, self.addr, self.backoff_ms);
        }
        self.failures += 1;
        self.state = LinkState::Backoff;
        self.inbuf = Vec::new();
        self.out.clear();
        // A held message was never ACKed: the edge redelivers it.
        self.held = None;
        let wait = self.backoff_ms;
        self.backoff_ms = (self.backoff_ms * 2).min(self.cfg.reconnect_max);
        Next::TickIn(Duration::from_millis(wait))
    }

    /// A timer fired: reconnect, retry a held message, or check the edge is alive.
    pub fn tick(&mut self, registry: &Registry, token: Token, now: Instant, shard: &mut Shard, out: &mut Outbox) -> Next {
        match self.state {
            LinkState::Backoff => self.connect(registry, token, now),
            LinkState::Connecting | LinkState::Handshake => {
                if now.duration_since(self.last_read) >= Duration::from_millis(3 * EDGE_BEAT_MS) {
                    self.fail(registry, now, "no CONNECTED in time")
                } else {
                    Next::TickIn(Duration::from_millis(EDGE_BEAT_MS))
                }
            }
            LinkState::Up => {
                if now.duration_since(self.last_read) >= Duration::from_millis(3 * EDGE_BEAT_MS) {
                    return self.fail(registry, now, "the edge went silent");
                }
                if self.held.is_some() {
                    let next = self.on_ready(registry, now, true, false, shard, out);
                    if next != Next::Idle {
                        return next;
                    }
                }
                Next::TickIn(Duration::from_millis(EDGE_BEAT_MS))
            }
        }
    }

    /// CONNECT, and the SUBSCRIBE pipelined right behind it (the edge applies frames in order,
    /// so it subscribes once connected; this saves a round trip on every reconnect).
    fn handshake(&mut self) -> Result<(), ClientError> {
        let (login, passcode) = match (&self.cfg.login, &self.cfg.passcode) {
            (Some(l), Some(p)) => (Some(l.clone()), Some(p.clone())),
            _ => (None, None),
        };
        let options = Options {
            versions: vec![Version::V1_2],
            host: "/".into(),
            login,
            passcode,
            heart_beat: HeartBeat { send_ms: 0, recv_ms: EDGE_BEAT_MS as u32 },
            headers: Vec::new(),
        };
        self.session = Session::new(options);
        self.session.connect(&mut self.out)?;
        let prefetch = self.cfg.prefetch.to_string();
        let extra = [("prefetch-count", prefetch.as_str()), ("activemq.prefetchSize", prefetch.as_str())];
        frames::subscribe(&mut self.out, Version::V1_2, "romp-link", &self.remote, AckMode::ClientIndividual, &extra)
    }

    fn ack(&mut self, id: &str) -> Result<(), String> {
        let r = AckRef { ack: Some(id), subscription: None, message_id: None };
        self.session.ack(&mut self.out, r, &[]).map_err(|e| format!("cannot ACK the edge: {e}"))
    }

    /// Readiness on the link's socket.
    pub fn on_ready(
        &mut self,
        registry: &Registry,
        now: Instant,
        readable: bool,
        writable: bool,
        shard: &mut Shard,
        out: &mut Outbox,
    ) -> Next {
        if self.state == LinkState::Connecting && (writable || readable) {
            let Some(s) = &self.sock else { return Next::Idle };
            match s.connected() {
                Ok(true) => {
                    self.state = LinkState::Handshake;
                    self.connects += 1;
                    if let Err(e) = self.handshake() {
                        return self.fail(registry, now, &e.to_string());
                    }
                }
                Ok(false) => return Next::Idle, // not connected yet
                Err(e) => return self.fail(registry, now, &e.to_string()),
            }
        }
        if readable && self.state != LinkState::Connecting {
            if let Err(why) = self.read_and_process(now, shard, out) {
                return self.fail(registry, now, &why);
            }
        }
        if let Err(e) = self.flush() {
            return self.fail(registry, now, &e.to_string());
        }
        if self.held.is_some() {
            return Next::TickIn(Duration::from_millis(RETRY_MS));
        }
        Next::Idle
    }

    fn flush(&mut self) -> io::Result<()> {
        let Some(s) = self.sock.as_mut() else { return Ok(()) };
        while !self.out.is_empty() {
            match s.write(&self.out) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "write returned 0")),
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        // TLS records (the handshake, or what the socket did not take) go out too.
        s.flush()
    }

    fn read_and_process(&mut self, now: Instant, shard: &mut Shard, out: &mut Outbox) -> Result<(), String> {
        let max = shard.max_message_size_for(&self.name);
        let limits = Limits { max_headers: 1024, max_header_len: 64 * 1024, max_body: max };
        // A held message: offer it again before reading anything new.
        if let Some((msg, id)) = self.held.take() {
            if shard.offer(msg.clone(), out) {
                self.ack(&id)?;
            } else {
                self.held = Some((msg, id));
                return Ok(());
            }
        }
        let mut chunk = [0u8; 16 * 1024];
        for _ in 0..64 {
            let Some(s) = self.sock.as_mut() else { return Ok(()) };
            match s.read(&mut chunk) {
                Ok(0) => return Err("the edge closed the connection".into()),
                Ok(n) => {
                    self.last_read = now;
                    self.inbuf.extend_from_slice(&chunk[..n]);
                    if self.inbuf.len() > max + 64 * 1024 + 1024 * 1024 {
                        return Err("a frame from the edge exceeds max_message_size".into());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            }
            self.process(&limits, shard, out)?;
            if self.held.is_some() {
                return Ok(());
            }
        }
        self.process(&limits, shard, out)
    }

    /// A MESSAGE from the edge: offer it here as NAME (with `orig-id`), ACK it once accepted,
    /// hold it while NAME is full.
    fn on_message(&mut self, f: &Incoming<'_>, shard: &mut Shard, out: &mut Outbox) -> Result<(), String> {
        let Some(ack) = f.header("ack").map(str::to_string) else {
            return Err("a MESSAGE from the edge has no ack header".into());
        };
        let mut headers: Vec<(Box<str>, Box<str>)> = f
            .frame
            .headers
            .iter()
            .filter(|h| {
                !matches!(
                    h.name.as_ref(),
                    "destination" | "message-id" | "subscription" | "ack" | "content-length" | "redelivered" | "orig-id"
                )
            })
            .map(|h| (Box::from(h.name.as_ref()), Box::from(h.value.as_ref())))
            .collect();
        headers.push((Box::from("orig-id"), Box::from(f.header("message-id").unwrap_or(""))));
        let id = shard.next_link_id();
        let msg = Arc::new(Message::new(id, self.name.clone(), headers, f.body().into()));
        self.received += 1;
        if shard.offer(msg.clone(), out) {
            self.ack(&ack)?;
        } else {
            self.held = Some((msg, ack));
        }
        Ok(())
    }

    /// Handle every complete frame in `inbuf`.
    fn process(&mut self, limits: &Limits, shard: &mut Shard, out: &mut Outbox) -> Result<(), String> {
        let mut pos = 0;
        let buf = std::mem::take(&mut self.inbuf);
        let result = loop {
            if self.held.is_some() {
                break Ok(());
            }
            let (f, n) = match client::read(&buf[pos..], self.session.version(), limits) {
                Ok(Decoded::HeartBeats { bytes, .. }) => {
                    pos += bytes;
                    continue;
                }
                Ok(Decoded::Incomplete { .. }) => break Ok(()),
                Ok(Decoded::Frame(f, n)) => (f, n),
                Err(e) => break Err(format!("bad frame from the edge: {e}")),
            };
            pos += n;
            match self.session.on_frame(&f) {
                Ok(client::session::Event::Connected) => {
                    self.state = LinkState::Up;
                    self.backoff_ms = self.cfg.reconnect_min;
                    log::info!("link {} to {}: up, subscribed to {}", self.name, self.addr, self.remote);
                }
                Ok(client::session::Event::Message) => {
                    if let Err(e) = self.on_message(&f, shard, out) {
                        break Err(e);
                    }
                }
                Ok(_) => {}
                Err(ClientError::Server { message, .. }) => break Err(format!("ERROR from the edge: {message}")),
                Err(e) => break Err(format!("the edge broke the protocol: {e}")),
            }
        };
        self.inbuf = buf[pos..].to_vec();
        result
    }
}
