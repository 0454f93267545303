//! Client connections: transport state, the STOMP session, and the worker context they use.
//!
//! Everything here runs on the worker that accepted the connection and owns it in its `Slab`.
//! A connection moves through [`Phase`]s by explicit transitions; when it must close, the reason is
//! a [`CloseReason`] (for the log line and the counters), never a bool.
//!
//! # Invariants
//! - `inbuf` holds only the unparsed tail of the input (a partial frame); an idle connection
//!   owns no input buffer. `out` holds bytes not yet written; it is returned to the worker's pool
//!   when empty.
//! - Once a connection is `Closing`, no more input is parsed and nothing but what is already in
//!   `out` is written.

pub mod admin;
pub mod ctx;
pub mod deliver;
pub mod session;
pub mod web;

pub use crate::transport::Transport;
pub use ctx::Ctx;

use crate::broker::ConnRef;
pub use crate::metrics::CloseKind;
use crate::stomp::version::Negotiated;
use crate::stomp::ErrorWord;
use crate::stomp::Version;
use session::Session;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenerKind {
    /// STOMP over TCP.
    Stomp,
    /// HTTP GET and STOMP over WebSocket.
    Web,
    /// The admin port: STOMP for admin users, and HTTP GET (`/metrics`, console JSON).
    Admin,
}

/// One listening port: what it speaks, and whether under TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port {
    pub kind: ListenerKind,
    pub tls: bool,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted; waiting for CONNECT (or STOMP).
    Handshake,
    /// CONNECT received; a slow credential check is running on the auth thread.
    Authenticating,
    /// CONNECTED sent; frames flow.
    Open,
    /// DISCONNECT received: later frames are ignored; closes once its receipt is written.
    Disconnecting,
    /// Flushing the last bytes, then half-close and linger until EOF or the linger deadline.
    Closing,
    /// Closing, and the session's subscriptions and transactions have been released (the
    /// first flush after the close began, or just before the connection is removed).
    Released,
}

/// The read side of the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadSide {
    Open,
    /// The peer sent FIN: what is buffered is still processed.
    Eof,
}

/// The write side of the byte stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteSide {
    Open,
    /// Writing failed (peer reset): output is discarded while remaining input is processed.
    Dead,
    /// Shut down after the last frame of a closing connection; lingering for the peer's EOF.
    Shut,
}

/// The worker's scheduling marks for a connection: which of its per-turn lists it is on, and
/// whether reading is parked until its own output drains. Not connection state: they only
/// keep a connection from being listed twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sched {
    /// On the worker's dirty list (has bytes to flush).
    pub flush: bool,
    /// On the worker's read list (input or socket data left to process).
    pub read: bool,
    /// Not read because the connection's own output is over `max_pending_bytes`; the flush
    /// that brings it under half puts it back on the read list.
    pub parked: bool,
    /// The peer closed its side (or reset): what it sent before is bounded by the socket's
    /// receive buffer, so flow control no longer holds it; its last frames are processed
    /// (M4) and the close is noticed, instead of a held connection, and whatever it holds,
    /// lingering until the hold ends.
    pub peer_closed: bool,
}

/// Why a connection closed. Logged once per close and counted per [`CloseKind`]
/// (`romp_connections_closed_total{reason=...}` in `/metrics`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// DISCONNECT (with its receipt flushed).
    Disconnect,
    /// An HTTP exchange finished without keep-alive.
    HttpDone,
    /// The client closed its side without DISCONNECT.
    PeerClosed,
    /// A socket error (e.g. reset by peer).
    Io(String),
    /// The client broke the protocol or a limit; it got ERROR with this word.
    Protocol(ErrorWord),
    /// The WebSocket peer broke the framing rules or closed with an error code.
    WebSocket,
    /// Processing the connection panicked (a bug); it was closed so no one else is affected.
    Internal,
    /// Bad credentials (ERROR `auth err`).
    AuthFailed,
    /// No CONNECT within `connect_timeout`.
    ConnectTimeout,
    /// The client promised heart-beats and went silent.
    HeartBeatTimeout,
    /// A topic subscriber exceeded `max_pending_bytes` under the `disconnect` policy.
    SlowConsumer,
    /// The broker is shutting down.
    Shutdown,
    /// An admin closed it (`/virt/admin/kick`).
    Kicked,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Disconnect => f.write_str("client DISCONNECT"),
            CloseReason::HttpDone => f.write_str("HTTP response sent"),
            CloseReason::PeerClosed => f.write_str("peer closed the connection"),
            CloseReason::Io(e) => write!(f, "socket error: {e}"),
            CloseReason::Protocol(w) => write!(f, "ERROR sent ({w})"),
            CloseReason::AuthFailed => f.write_str("authentication failed"),
            CloseReason::ConnectTimeout => f.write_str("no CONNECT before connect_timeout"),
            CloseReason::HeartBeatTimeout => f.write_str("heart-beat timeout"),
            CloseReason::SlowConsumer => f.write_str("slow consumer"),
            CloseReason::Shutdown => f.write_str("server shutdown"),
            CloseReason::Kicked => f.write_str("closed by an admin"),
            CloseReason::WebSocket => f.write_str("WebSocket protocol error"),
            CloseReason::Internal => f.write_str("internal error"),
        }
    }
}

impl CloseReason {
    /// The counter this close goes to.
    pub fn kind(&self) -> CloseKind {
        match self {
            CloseReason::Disconnect => CloseKind::Disconnect,
            CloseReason::HttpDone => CloseKind::HttpDone,
            CloseReason::PeerClosed => CloseKind::PeerClosed,
            CloseReason::Io(_) => CloseKind::Io,
            CloseReason::Protocol(_) => CloseKind::Error,
            CloseReason::WebSocket => CloseKind::WebSocket,
            CloseReason::Internal => CloseKind::Internal,
            CloseReason::AuthFailed => CloseKind::AuthFailed,
            CloseReason::ConnectTimeout => CloseKind::ConnectTimeout,
            CloseReason::HeartBeatTimeout => CloseKind::HeartBeatTimeout,
            CloseReason::SlowConsumer => CloseKind::SlowConsumer,
            CloseReason::Shutdown => CloseKind::Shutdown,
            CloseReason::Kicked => CloseKind::Kicked,
        }
    }
}

/// One client connection.
pub struct Conn {
    /// The byte stream; every read and write of this connection goes through it.
    pub io: Transport,
    pub me: ConnRef,
    /// Who is on the other end, and where they came in.
    pub who: Who,
    pub phase: Phase,
    pub close_reason: Option<CloseReason>,
    /// Unparsed input tail.
    pub inbuf: Vec<u8>,
    /// Total length `inbuf` must reach before parsing is worth trying again (a known body size).
    pub need: usize,
    /// Without a known size: what the partial frame waits for (see [`crate::stomp::Until`]).
    pub until: Option<crate::stomp::Until>,
    /// Bytes waiting to be written.
    pub out: Vec<u8>,
    pub version: Version,
    /// The client sent `accept-version`.
    pub negotiated: bool,
    pub session: Session,
    /// Heart-beats and the activity they are checked against.
    pub beat: Liveness,
    pub read: ReadSide,
    pub write: WriteSide,
    pub sched: Sched,
    /// Held by producer flow control: its next frame is a SEND to this queue, which is over
    /// its limits; not read until the owner lets it go (or `block_timeout` runs out).
    pub held: Option<Held>,
    /// Web-port state (HTTP, then WebSocket); `None` for STOMP over TCP.
    pub web: Option<Box<web::Web>>,
}

/// What a held producer waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldCause {
    /// `dest` is a queue over its limits (`overflow = "block"`).
    Queue,
    /// The process is over `max_memory`.
    Memory,
}

/// Why and since when a producer is held by flow control.
#[derive(Debug, Clone)]
pub struct Held {
    pub cause: HoldCause,
    /// The destination its next SEND goes to (the queue over its limits, for `Queue`); empty
    /// for a connection held in the middle of a frame under the memory alarm.
    pub dest: std::sync::Arc<str>,
    pub since: Instant,
    /// That SEND's `receipt`, for the ERROR if `block_timeout` runs out.
    pub receipt: Option<Box<str>>,
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone)]
pub struct Who {
    pub peer: SocketAddr,
    /// The kind of port the connection came in on.
    pub listener: ListenerKind,
    /// The login it authenticated as.
    pub login: Option<String>,
    /// An admin user (may use the admin actions on the admin port).
    pub admin: bool,
    /// The CONNECT's `client-id`: with a subscription name, the identity of a durable topic
    /// subscription (the login stands in when it is absent).
    pub client_id: Option<Box<str>>,
}

/// A connection's heart-beat agreement and the activity it is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Liveness {
    pub hb: Negotiated,
    pub last_read: Instant,
    pub last_write: Instant,
}

impl Conn {
    pub fn new(io: Transport, me: ConnRef, peer: SocketAddr, now: Instant) -> Conn {
        Conn {
            io,
            me,
            who: Who { peer, listener: ListenerKind::Stomp, login: None, admin: false, client_id: None },
            phase: Phase::Handshake,
            close_reason: None,
            inbuf: Vec::new(),
            need: 0,
            until: None,
            out: Vec::new(),
            version: Version::V1_2,
            negotiated: false,
            session: Session::default(),
            beat: Liveness { hb: Negotiated::default(), last_read: now, last_write: now },
            read: ReadSide::Open,
            write: WriteSide::Open,
            sched: Sched::default(),
            held: None,

            web: None,
        }
    }

    /// Whether the buffered input may parse further than last time: it reached its known size,
    /// or holds the byte its partial frame waits for. Looks at each input byte once over the
    /// frame's life, so a frame arriving a byte at a time costs linear time, not quadratic.
    pub fn input_ready(&mut self) -> bool {
        if self.inbuf.is_empty() {
            return false;
        }
        if self.need > 0 {
            return self.inbuf.len() >= self.need;
        }
        match &mut self.until {
            Some(u) => u.reached(&self.inbuf),
            None => true,
        }
    }

    /// Bytes of input buffered and not yet parsed into a frame (STOMP bytes, plus a web
    /// connection's undecoded wire bytes).
    pub fn partial_bytes(&self) -> usize {
        self.inbuf.len() + self.web.as_ref().map_or(0, |w| w.raw.len())
    }

    /// Bytes this connection makes the broker keep, for `max_memory`: itself, its buffers (by
    /// capacity), its web state and its session.
    pub fn footprint(&self) -> usize {
        let web = self.web.as_ref().map_or(0, |w| {
            std::mem::size_of::<web::Web>()
                + w.raw.capacity()
                + match &w.mode {
                    web::Mode::Ws { wire, .. } => wire.capacity(),
                    web::Mode::Http { .. } => 0,
                }
        });
        std::mem::size_of::<Conn>() + self.inbuf.capacity() + self.out.capacity() + web + self.session.footprint()
    }

    /// The session id sent in CONNECTED and used in logs.
    pub fn session_id(&self) -> String {
        format!("{}-{}-{}", self.me.worker, self.me.slot, self.me.gen)
    }

    /// Start closing with `reason` (the first reason wins). What is in `out` is still flushed.
    pub fn begin_close(&mut self, reason: CloseReason) {
        if self.close_reason.is_none() {
            self.close_reason = Some(reason);
        }
        if !self.is_closing() {
            self.phase = Phase::Closing;
        }
        self.inbuf = Vec::new();
        self.need = 0;
    }

    /// Bytes waiting to be written: STOMP output plus encoded WebSocket frames.
    pub fn pending_out(&self) -> usize {
        self.out.len() + self.web.as_ref().map_or(0, |w| w.wire_len()) + self.io.pending()
    }

    /// How the connection came in, for its log lines: tcp, tls, web, web tls, admin, admin tls
    /// (admin HTTP requests are "admin web").
    pub fn transport_label(&self) -> &'static str {
        match (self.who.listener == ListenerKind::Admin, self.is_web(), self.io.is_tls()) {
            (false, false, false) => "tcp",
            (false, false, true) => "tls",
            (false, true, false) => "web",
            (false, true, true) => "web tls",
            (true, false, false) => "admin",
            (true, false, true) => "admin tls",
            (true, true, false) => "admin web",
            (true, true, true) => "admin web tls",
        }
    }

    /// Came in over the web port.
    pub fn is_web(&self) -> bool {
        self.web.is_some()
    }

    /// The session's subscriptions and transactions have been released.
    pub fn session_torn_down(&self) -> bool {
        self.phase == Phase::Released
    }

    /// After `session::teardown`: the connection is done with everything but its bytes.
    pub fn mark_torn_down(&mut self) {
        self.phase = Phase::Released;
    }

    /// The broker itself is not reading this connection (held by flow control, or parked
    /// until its own output drains): its silence says nothing about the client.
    pub fn reads_withheld(&self) -> bool {
        self.held.is_some() || self.sched.parked
    }

    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing | Phase::Released)
    }
}

/// Put a connection on the worker's flush list for this turn.
pub fn mark_dirty(conn: &mut Conn, ctx: &mut Ctx) {
    if !conn.sched.flush {
        conn.sched.flush = true;
        ctx.turn.dirty.push(conn.me.slot);
    }
}

/// Put a connection on the worker's read list (input or socket data to process this turn).
pub fn want_read(conn: &mut Conn, ctx: &mut Ctx) {
    if !conn.sched.read {
        conn.sched.read = true;
        ctx.turn.read_list.push(conn.me.slot);
    }
}
