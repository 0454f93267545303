//! The worker: one thread, one mio `Poll`, one `Slab` of connections, one shard of destinations.
//!
//! Each turn of the loop: poll; accept; drain the `ToWorker` inbox (deliveries); read and parse
//! client input; drain the `ToOwner` inbox (requests for destinations owned here); fire timers;
//! move bus backlogs and wake peers; write every dirty connection once; finish closes.
//!
//! # Invariants
//! - Nothing in a worker is shared or locked; other threads reach it only through its
//!   [`crate::bus::Mailbox`] and waker. The only shared state is the atomic connection count
//!   (for the accept gate) and the stop flag.
//! - A token carries the slot's generation in its high 32 bits, so an event for a connection that
//!   closed and whose slot was reused in the same poll batch is ignored.
//! - Per turn, each connection reads at most [`READS_PER_TURN`] buffers and each inbox at most
//!   [`INBOX_BUDGET`] messages; whatever is left is picked up next turn without sleeping.

pub mod listener;
pub mod node;

pub use node::Node;

use crate::broker::shard::Shard;
use crate::broker::ConnRef;
use crate::bus::Mailbox;
use crate::bus::Shared;
use crate::conn::{deliver, session, CloseReason, Conn, Ctx, ListenerKind, Phase, ReadSide, WriteSide};
use crate::stomp::ErrorWord;
use crate::timer::{Fired, Timer, TimerKind, WorkerTimer};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes read from a socket per `read` call (the worker's scratch buffer).
pub const READ_CHUNK: usize = 64 * 1024;
/// Reads per connection per loop turn before others get a go.
pub const READS_PER_TURN: usize = 4;
/// Messages taken from each inbox per loop turn.
pub const INBOX_BUDGET: usize = 4096;

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 1024;
/// Tokens of upstream links: `LINK_BASE + index`.
const LINK_BASE: usize = usize::MAX - 4096;

/// The first bytes on the admin port are an HTTP request rather than a STOMP frame.
fn looks_like_http(b: &[u8]) -> bool {
    b.starts_with(b"GET ") || b.starts_with(b"HEAD ")
}

fn conn_token(slot: u32, gen: u32) -> Token {
    Token(((gen as usize) << 32) | slot as usize)
}

pub struct Worker {
    poll: Poll,
    listeners: Vec<TcpListener>,
    kinds: Vec<ListenerKind>,
    node: Node,
    mailbox: Mailbox,
    shared: Arc<Shared>,
    scratch: Vec<u8>,
    next_gen: u32,
    accept_paused: bool,
    accept_retry_at: Option<Instant>,
    stopping_until: Option<Instant>,
}

impl Worker {
    pub fn new(
        poll: Poll,
        listeners: Vec<TcpListener>,
        kinds: Vec<ListenerKind>,
        ctx: Ctx,
        shard: Shard,
        mailbox: Mailbox,
        shared: Arc<Shared>,
    ) -> io::Result<Worker> {
        let mut listeners = listeners;
        for (i, l) in listeners.iter_mut().enumerate() {
            poll.registry().register(l, Token(LISTENER_BASE + i), Interest::READABLE)?;
        }
        let cap = ctx.env.cfg.max_connections.min(1 << 16);
        Ok(Worker {
            poll,
            listeners,
            kinds,
            // Room for max_connections up front (capped; SO_REUSEPORT may hand one worker most
            // of them), so the slab never reallocates and copies its array while it fills: the
            // old array stayed resident in the allocator on an idle worker (~400 bytes per
            // session at 18,000 sessions). Untouched capacity costs address space, not RSS.
            node: Node::new(ctx, shard, Slab::with_capacity(cap)),
            mailbox,
            shared,
            scratch: vec![0; READ_CHUNK],
            next_gen: 0,
            accept_paused: false,
            accept_retry_at: None,
            stopping_until: None,
        })
    }

    /// Take on the upstream links whose destination this worker owns.
    fn start_links(&mut self) {
        let n = self.node.ctx.outbox.workers();
        for (name, cfg) in self.node.ctx.env.cfg.downstreams.clone() {
            if crate::broker::owner_of(&name, n) != self.node.ctx.worker {
                continue;
            }
            match crate::link::Link::new(&name, &cfg) {
                Some(l) => self.node.links.push((l, None)),
                None => log::error!("link {name}: bad address {:?}", cfg.address),
            }
        }
        for i in 0..self.node.links.len() {
            let now = Instant::now();
            let next = self.node.links[i].0.connect(self.poll.registry(), Token(LINK_BASE + i), now);
            self.schedule_link(i, next, now);
        }
    }

    /// Arm a link's tick unless an earlier one is armed.
    fn schedule_link(&mut self, i: usize, next: crate::link::Next, now: Instant) {
        let crate::link::Next::TickIn(d) = next else { return };
        let at = now + d;
        let slot = &mut self.node.links[i].1;
        if slot.is_some_and(|t| t <= at && t > now) {
            return;
        }
        *slot = Some(at);
        self.node.ctx.time.timers.arm_worker(at, WorkerTimer::Link(i as u32));
    }

    fn link_event(&mut self, i: usize, readable: bool, writable: bool) {
        let now = self.node.ctx.time.now;
        let Some((link, _)) = self.node.links.get_mut(i) else { return };
        let next = link.on_ready(self.poll.registry(), now, readable, writable, &mut self.node.shard, &mut self.node.ctx.outbox);
        self.schedule_link(i, next, now);
    }

    fn link_tick(&mut self, i: usize, at: Instant) {
        let now = self.node.ctx.time.now;
        let Some((link, armed)) = self.node.links.get_mut(i) else { return };
        if *armed != Some(at) {
            return; // superseded by an earlier tick
        }
        *armed = None;
        let next = link.tick(self.poll.registry(), Token(LINK_BASE + i), now, &mut self.node.shard, &mut self.node.ctx.outbox);
        self.schedule_link(i, next, now);
    }

    /// Arm the worker's own timers (stats) once before the loop.
    fn start_timers(&mut self) {
        if self.node.ctx.worker == 0 && self.node.ctx.env.cfg.stats {
            let at = Instant::now() + Duration::from_millis(self.node.ctx.env.cfg.stats_interval);
            self.node.ctx.time.timers.arm_worker(at, WorkerTimer::Stats);
        }
    }

    /// Run until shutdown completes.
    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        self.start_timers();
        self.start_links();
        let spin = Duration::from_micros(self.node.ctx.env.cfg.idle_spin_us);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.wait(&mut events, timeout, spin) {
                log::error!("worker {}: poll failed: {e}", self.node.ctx.worker);
                return;
            }
            // Awake: senders need not ring the waker until this worker is about to sleep again.
            self.mailbox.notified.store(true, Ordering::SeqCst);
            self.node.ctx.time.now = Instant::now();
            self.node.ctx.time.wall_ms = crate::broker::wall_ms();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(t) if t >= LINK_BASE => {
                        self.link_event(t - LINK_BASE, ev.is_readable() || ev.is_read_closed() || ev.is_error(), ev.is_writable())
                    }
                    Token(t) => {
                        let (slot, gen) = ((t & 0xffff_ffff) as u32, (t >> 32) as u32);
                        let Some(conn) = self.node.conns.get_mut(slot as usize) else {
                            continue;
                        };
                        if conn.me.gen != gen {
                            continue;
                        }
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            crate::conn::want_read(conn, &mut self.node.ctx);
                        }
                        if ev.is_writable() && !conn.sched.flush && conn.pending_out() > 0 {
                            conn.sched.flush = true;
                            self.node.ctx.turn.dirty.push(slot);
                        }
                    }
                }
            }
            self.turn();
            if self.check_stop() {
                return;
            }
        }
    }

    /// Anything in the inboxes this worker would take now.
    fn inbox_ready(&self) -> bool {
        !self.mailbox.ctrl.is_empty() || (!self.mailbox.data.is_empty() && !self.node.ctx.outbox.owner_paused())
    }

    /// Wait for events. With nothing to do, first spin up to `spin` looking at the inboxes and
    /// sockets (a hand-off from another worker then costs no sleep and wake-up), then announce
    /// sleep (`notified = false`), look at the inboxes once more so no wake-up is missed, and
    /// block in the poller.
    fn wait(&mut self, events: &mut Events, timeout: Option<Duration>, spin: Duration) -> io::Result<()> {
        let poll = |p: &mut Poll, ev: &mut Events, t: Option<Duration>| match p.poll(ev, t) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                ev.clear();
                Ok(())
            }
            r => r,
        };
        if timeout == Some(Duration::ZERO) {
            return poll(&mut self.poll, events, timeout);
        }
        if !spin.is_zero() {
            let until = Instant::now() + spin.min(timeout.unwrap_or(spin));
            let mut n = 0u32;
            while Instant::now() < until {
                if self.inbox_ready() {
                    return poll(&mut self.poll, events, Some(Duration::ZERO));
                }
                n += 1;
                if n % 16 == 0 {
                    poll(&mut self.poll, events, Some(Duration::ZERO))?;
                    if !events.is_empty() {
                        return Ok(());
                    }
                }
                std::hint::spin_loop();
            }
        }
        self.mailbox.notified.store(false, Ordering::SeqCst);
        std::sync::atomic::fence(Ordering::SeqCst);
        let timeout = if self.inbox_ready() { Some(Duration::ZERO) } else { timeout };
        poll(&mut self.poll, events, timeout)
    }

    fn poll_timeout(&self) -> Option<Duration> {
        let busy = !self.node.ctx.turn.read_list.is_empty() && !self.node.ctx.outbox.reads_paused();
        if busy
            || self.node.has_local_work()
            || !self.mailbox.ctrl.is_empty()
            || (!self.mailbox.data.is_empty() && !self.node.ctx.outbox.owner_paused())
        {
            return Some(Duration::ZERO);
        }
        let mut t = self.node.ctx.time.timers.next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
        let mut cap = |d: Duration| t = Some(t.map_or(d, |x| x.min(d)));
        if self.node.ctx.outbox.has_backlog() {
            cap(Duration::from_millis(1));
        }
        if self.accept_paused {
            cap(Duration::from_millis(50));
        }
        if self.stopping_until.is_some() {
            cap(Duration::from_millis(20));
        }
        if let Some(at) = self.node.shard.next_expiry() {
            cap(Duration::from_millis(at.saturating_sub(crate::broker::wall_ms())));
        }
        t
    }

    fn turn(&mut self) {
        self.drain_ctrl();
        self.service_reads();
        self.drain_data();
        self.fire_timers();
        if self.node.shard.next_expiry().is_some_and(|at| at <= self.node.ctx.time.wall_ms) {
            self.node.shard.expire(self.node.ctx.time.wall_ms, &mut self.node.ctx.outbox);
        }
        self.node.settle();
        self.flush_all();
        // Closing connections released subscriptions and flushes released credit: apply those,
        // then write whatever that produced.
        self.node.settle();
        self.flush_all();
        self.node.ctx.outbox.flush();
        self.maybe_resume_accept();
    }

    fn drain_ctrl(&mut self) {
        for _ in 0..INBOX_BUDGET {
            match self.mailbox.ctrl.try_recv() {
                Ok(m) => self.node.ctrl(m),
                Err(_) => break,
            }
        }
        self.node.run_local();
    }

    fn drain_data(&mut self) {
        for _ in 0..INBOX_BUDGET {
            if self.node.ctx.outbox.owner_paused() {
                break;
            }
            match self.mailbox.data.try_recv() {
                Ok(m) => self.node.owner_request(m),
                Err(_) => break,
            }
            // Deliveries to our own connections go out in the same turn.
            while let Some(m) = self.node.ctx.outbox.local_ctrl.pop_front() {
                self.node.ctrl(m);
            }
        }
        self.node.run_local();
    }

    fn service_reads(&mut self) {
        if self.node.ctx.outbox.reads_paused() {
            return;
        }
        let list = std::mem::take(&mut self.node.ctx.turn.read_list);
        let mut again = Vec::new();
        for slot in list {
            // A bug must cost one connection, not the worker and everyone on it: a panic while
            // processing this connection's input closes it and is logged (embedded handlers are
            // also guarded individually, closer to the call).
            let more = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.read_conn(slot))) {
                Ok(more) => more,
                Err(_) => {
                    self.drop_after_panic(slot);
                    false
                }
            };
            self.node.run_local();
            if let Some(c) = self.node.conns.get_mut(slot as usize) {
                if more {
                    again.push(slot);
                } else {
                    c.sched.read = false;
                }
            }
        }
        again.append(&mut self.node.ctx.turn.read_list);
        self.node.ctx.turn.read_list = again;
    }

    /// Read and process input for one connection. Returns true if it must be visited again
    /// without waiting for a new readiness event (read budget used up, or reads paused).
    fn read_conn(&mut self, slot: u32) -> bool {
        let mut reads = 0;
        // Whether `inbuf` may hold input not yet offered to the parser.
        let mut fresh = true;
        loop {
            let Some(conn) = self.node.conns.get_mut(slot as usize) else {
                return false;
            };
            if conn.is_closing() {
                return self.discard_input(slot);
            }
            if self.node.ctx.outbox.reads_paused() {
                return true;
            }
            if conn.phase == Phase::Authenticating {
                return false;
            }
            // A client that does not read what it asked for (receipts, errors) is not read either:
            // its own output stays bounded. `flush_conn` puts it back on the read list.
            if conn.pending_out() >= self.node.ctx.env.cfg.max_pending_bytes {
                conn.sched.parked = true;
                return false;
            }
            // 1. Parse what is buffered, if it can make progress.
            if fresh && conn.is_web() {
                fresh = false;
                if crate::conn::web::has_buffered(conn) {
                    crate::conn::web::pump(conn, &mut self.node.ctx);
                    self.node.run_local();
                }
                continue;
            }
            if fresh && !conn.inbuf.is_empty() && (conn.need == 0 || conn.inbuf.len() >= conn.need) {
                fresh = false;
                let mut buf = std::mem::take(&mut conn.inbuf);
                let used = session::process_input(conn, &buf, &mut self.node.ctx);
                if conn.is_closing() {
                    self.node.ctx.turn.pool.give(buf);
                } else {
                    buf.drain(..used);
                    if buf.is_empty() {
                        self.node.ctx.turn.pool.give(buf);
                    } else {
                        conn.inbuf = buf;
                    }
                }
                self.node.run_local();
                continue;
            }
            if conn.read == ReadSide::Eof {
                let reason = if conn.inbuf.is_empty() {
                    CloseReason::PeerClosed
                } else {
                    CloseReason::Io("connection closed in the middle of a frame".into())
                };
                self.finalize(slot, reason);
                return false;
            }
            if reads >= READS_PER_TURN {
                return true;
            }
            reads += 1;
            // 2. Read more: straight into the partial frame's buffer, or into scratch.
            if conn.is_web() {
                match conn.io.read(&mut self.scratch) {
                    Ok(0) => conn.read = ReadSide::Eof,
                    Ok(n) => {
                        conn.beat.last_read = self.node.ctx.time.now;
                        crate::conn::web::ingest(conn, &self.scratch[..n], &mut self.node.ctx);
                        self.node.run_local();
                    }
                    Err(e) => {
                        if let Some(more) = self.read_error(slot, e) {
                            return more;
                        }
                    }
                }
                continue;
            }
            if !conn.inbuf.is_empty() {
                let want = conn.need.saturating_sub(conn.inbuf.len()).clamp(READ_CHUNK, 16 * READ_CHUNK);
                let len = conn.inbuf.len();
                conn.inbuf.resize(len + want, 0);
                let r = conn.io.read(&mut conn.inbuf[len..]);
                conn.inbuf.truncate(len + *r.as_ref().unwrap_or(&0));
                match r {
                    Ok(0) => conn.read = ReadSide::Eof,
                    Ok(_) => {
                        conn.beat.last_read = self.node.ctx.time.now;
                        fresh = true;
                    }
                    Err(e) => {
                        if let Some(more) = self.read_error(slot, e) {
                            return more;
                        }
                    }
                }
                continue;
            }
            match conn.io.read(&mut self.scratch) {
                Ok(0) => conn.read = ReadSide::Eof,
                Ok(n) => {
                    conn.beat.last_read = self.node.ctx.time.now;
                    if conn.who.listener == ListenerKind::Admin && conn.phase == Phase::Handshake && looks_like_http(&self.scratch[..n]) {
                        // The admin port also answers HTTP GET (metrics, console JSON).
                        conn.web = Some(Box::default());
                        crate::conn::web::ingest(conn, &self.scratch[..n], &mut self.node.ctx);
                        self.node.run_local();
                        continue;
                    }
                    let used = session::process_input(conn, &self.scratch[..n], &mut self.node.ctx);
                    if !conn.is_closing() && used < n {
                        let mut b = self.node.ctx.turn.pool.take();
                        b.extend_from_slice(&self.scratch[used..n]);
                        conn.inbuf = b;
                    }
                    self.node.run_local();
                }
                Err(e) => {
                    if let Some(more) = self.read_error(slot, e) {
                        return more;
                    }
                }
            }
        }
    }

    /// Handle a read error. `Some(more)` ends the read loop; `None` retries.
    fn read_error(&mut self, slot: u32, e: io::Error) -> Option<bool> {
        match e.kind() {
            io::ErrorKind::WouldBlock => Some(false),
            io::ErrorKind::Interrupted => None,
            _ => {
                self.finalize(slot, CloseReason::Io(e.to_string()));
                Some(false)
            }
        }
    }

    /// A closing connection: read and drop input until EOF (then finish the close) or would-block.
    fn discard_input(&mut self, slot: u32) -> bool {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.node.conns.get_mut(slot as usize) else {
                return false;
            };
            match conn.io.read(&mut self.scratch) {
                Ok(0) => {
                    conn.read = ReadSide::Eof;
                    if conn.out.is_empty() || conn.write == WriteSide::Shut {
                        let r = conn.close_reason.clone().unwrap_or(CloseReason::PeerClosed);
                        self.finalize(slot, r);
                    }
                    return false;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    let r = conn.close_reason.clone().unwrap_or(CloseReason::PeerClosed);
                    self.finalize(slot, r);
                    return false;
                }
            }
        }
        true
    }

    /// Write every dirty connection once; start or finish closes.
    fn flush_all(&mut self) {
        let dirty = std::mem::take(&mut self.node.ctx.turn.dirty);
        for slot in dirty {
            self.flush_conn(slot);
        }
    }

    fn flush_conn(&mut self, slot: u32) {
        let Some(conn) = self.node.conns.get_mut(slot as usize) else {
            return;
        };
        conn.sched.flush = false;
        if conn.is_closing() && !conn.session_torn_down() {
            session::teardown(conn, &mut self.node.ctx);
            conn.mark_torn_down();
        }
        crate::conn::web::frame_output(conn, self.node.ctx.env.cfg.websocket_text);
        let crate::conn::Conn { io, out, web, write, .. } = conn;
        let buf = match web.as_deref_mut() {
            Some(crate::conn::web::Web { mode: crate::conn::web::Mode::Ws { wire, .. }, .. }) => wire,
            _ => out,
        };
        if *write == WriteSide::Dead {
            buf.clear();
        }
        let mut failed = None;
        while !buf.is_empty() {
            match io.write(buf) {
                Ok(n) => {
                    buf.drain(..n);
                    conn.beat.last_write = self.node.ctx.time.now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            if conn.is_closing() {
                let reason = conn.close_reason.clone().unwrap_or(CloseReason::Io(e.to_string()));
                self.finalize(slot, reason);
                return;
            }
            // The peer is gone for writing, but input it sent before may still be queued (the
            // kernel keeps it readable after a reset): stop writing, and keep reading and
            // processing until the read side ends (M4).
            log::debug!("{} {}: write failed ({e}); draining its input", conn.session_id(), conn.who.peer);
            conn.write = WriteSide::Dead;
            conn.out.clear();
            crate::conn::want_read(conn, &mut self.node.ctx);
        }
        if conn.out.is_empty() && conn.out.capacity() > 0 {
            self.node.ctx.turn.pool.give(std::mem::take(&mut conn.out));
        }
        deliver::release_owed_credit(conn, &mut self.node.ctx);
        if conn.sched.parked && conn.pending_out() < self.node.ctx.env.cfg.max_pending_bytes / 2 {
            conn.sched.parked = false;
            crate::conn::want_read(conn, &mut self.node.ctx);
        }
        if conn.is_closing() && conn.pending_out() == 0 {
            if conn.read == ReadSide::Eof {
                let r = conn.close_reason.clone().unwrap_or(CloseReason::PeerClosed);
                self.finalize(slot, r);
                return;
            }
            if conn.write != WriteSide::Shut {
                // L4: half-close so the client reads everything, then linger for its EOF.
                let _ = conn.io.shutdown_write();
                conn.write = WriteSide::Shut;
                let at = self.node.ctx.time.now + Duration::from_millis(self.node.ctx.env.cfg.linger);
                self.node.ctx.time.timers.arm(Timer { at, slot, gen: conn.me.gen, kind: TimerKind::Linger });
                crate::conn::want_read(conn, &mut self.node.ctx);
            }
        }
    }

    /// Remove a connection whose processing panicked, releasing what it can.
    fn drop_after_panic(&mut self, slot: u32) {
        let Some(conn) = self.node.conns.get(slot as usize) else { return };
        log::error!("{} {}: internal error while processing this connection; closing it", conn.session_id(), conn.who.peer);
        let released = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(conn) = self.node.conns.get_mut(slot as usize) {
                if !conn.session_torn_down() {
                    session::teardown(conn, &mut self.node.ctx);
                    conn.mark_torn_down();
                }
            }
        }));
        if released.is_err() {
            log::error!("releasing the connection's subscriptions failed too");
        }
        self.finalize(slot, CloseReason::Internal);
    }

    /// Remove a connection now: release its session, deregister, drop the socket, log once.
    fn finalize(&mut self, slot: u32, reason: CloseReason) {
        if !self.node.conns.contains(slot as usize) {
            return;
        }
        let mut conn = self.node.conns.remove(slot as usize);
        if !conn.session_torn_down() {
            session::teardown(&mut conn, &mut self.node.ctx);
        }
        let _ = conn.io.deregister(self.poll.registry());
        let reason = conn.close_reason.clone().unwrap_or(reason);
        log::info!("{} {}: closed: {}", conn.session_id(), conn.who.peer, reason);
        self.node.ctx.turn.pool.give(std::mem::take(&mut conn.out));
        self.node.ctx.turn.pool.give(std::mem::take(&mut conn.inbuf));
        self.node.ctx.stats.closed += 1;
        self.node.ctx.stats.closed_by[reason.kind().index()] += 1;
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }

    fn accept(&mut self, li: usize) {
        if self.accept_paused || self.stopping_until.is_some() {
            return;
        }
        let max = self.node.ctx.env.cfg.max_connections;
        loop {
            if self.shared.connections.load(Ordering::Acquire) >= max {
                if !self.accept_paused {
                    log::warn!("worker {}: max_connections ({max}) reached; accepting paused", self.node.ctx.worker);
                }
                self.accept_paused = true;
                return;
            }
            let Some(l) = self.listeners.get(li) else {
                return;
            };
            let kind = self.kinds.get(li).copied().unwrap_or(ListenerKind::Stomp);
            match l.accept() {
                Ok((sock, peer)) => self.add_conn(sock, peer, kind),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning on a full backlog.
                    log::warn!("worker {}: accept failed: {e}; retrying in 100 ms", self.node.ctx.worker);
                    self.accept_paused = true;
                    self.accept_retry_at = Some(self.node.ctx.time.now + Duration::from_millis(100));
                    return;
                }
            }
        }
    }

    fn add_conn(&mut self, sock: mio::net::TcpStream, peer: std::net::SocketAddr, kind: ListenerKind) {
        let _ = sock.set_nodelay(true);
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let entry = self.node.conns.vacant_entry();
        let slot = entry.key() as u32;
        let mut io = crate::conn::Transport::Tcp(sock);
        if let Err(e) = io.register(self.poll.registry(), conn_token(slot, gen)) {
            log::warn!("worker {}: cannot register a connection from {peer}: {e}", self.node.ctx.worker);
            return;
        }
        let me = ConnRef { worker: self.node.ctx.worker as u16, slot, gen };
        let mut conn = Conn::new(io, me, peer, self.node.ctx.time.now);
        conn.who.listener = kind;
        if kind == ListenerKind::Web {
            conn.web = Some(Box::default());
        }
        entry.insert(conn);
        self.shared.connections.fetch_add(1, Ordering::AcqRel);
        self.node.ctx.stats.accepted += 1;
        let at = self.node.ctx.time.now + Duration::from_millis(self.node.ctx.env.cfg.connect_timeout);
        self.node.ctx.time.timers.arm(Timer { at, slot, gen, kind: TimerKind::Connect });
        log::debug!("{}-{}-{} {peer}: accepted", self.node.ctx.worker, slot, gen);
    }

    fn maybe_resume_accept(&mut self) {
        if !self.accept_paused || self.stopping_until.is_some() {
            return;
        }
        if self.accept_retry_at.is_some_and(|t| self.node.ctx.time.now < t) {
            return;
        }
        let max = self.node.ctx.env.cfg.max_connections;
        // Hysteresis: resume below 90% of the limit.
        if self.shared.connections.load(Ordering::Acquire) * 10 < max * 9 || self.accept_retry_at.is_some() {
            self.accept_paused = false;
            self.accept_retry_at = None;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.node.ctx.time.now;
        while let Some(fired) = self.node.ctx.time.timers.pop_due(now) {
            let t = match fired {
                Fired::Worker { what: WorkerTimer::Stats, .. } => {
                    self.node.start_stats();
                    let at = now + Duration::from_millis(self.node.ctx.env.cfg.stats_interval);
                    self.node.ctx.time.timers.arm_worker(at, WorkerTimer::Stats);
                    continue;
                }
                Fired::Worker { what: WorkerTimer::Link(i), at } => {
                    self.link_tick(i as usize, at);
                    continue;
                }
                Fired::Conn(t) => t,
            };
            let Some(conn) = self.node.conns.get_mut(t.slot as usize) else {
                continue;
            };
            if conn.me.gen != t.gen {
                continue;
            }
            match t.kind {
                TimerKind::Connect if conn.is_web() && !conn.web.as_ref().is_some_and(|w| w.is_ws() && t.at > conn.beat.last_read) => {
                    if matches!(conn.phase, Phase::Handshake | Phase::Authenticating) {
                        crate::conn::web::timed_out(conn, &mut self.node.ctx);
                    }
                }
                TimerKind::Connect => {
                    if matches!(conn.phase, Phase::Handshake | Phase::Authenticating) {
                        let ms = self.node.ctx.env.cfg.connect_timeout;
                        session::fail(
                            conn,
                            &mut self.node.ctx,
                            session::Fatal::new(ErrorWord::General, format!("no CONNECT within connect_timeout ({ms} ms)")),
                        );
                        conn.close_reason = Some(CloseReason::ConnectTimeout);
                    }
                }
                TimerKind::HeartBeatSend => {
                    if matches!(conn.phase, Phase::Open | Phase::Disconnecting) {
                        let every = Duration::from_millis(conn.beat.hb.server_send_ms as u64);
                        let next = if now.duration_since(conn.beat.last_write) >= every {
                            // Nothing written for a whole interval: send an EOL, unless output is
                            // already waiting (then the socket is full and a beat would not help).
                            if conn.out.is_empty() {
                                if conn.out.capacity() == 0 {
                                    conn.out = self.node.ctx.turn.pool.take();
                                }
                                conn.out.push(b'\n');
                                crate::conn::mark_dirty(conn, &mut self.node.ctx);
                            }
                            now + every
                        } else {
                            conn.beat.last_write + every
                        };
                        self.node.ctx.time.timers.arm(Timer { at: next, ..t });
                    }
                }
                TimerKind::HeartBeatRecv => {
                    if matches!(conn.phase, Phase::Open | Phase::Disconnecting) {
                        let grace = session::recv_grace(conn, &self.node.ctx);
                        if now.duration_since(conn.beat.last_read) >= grace {
                            let ms = grace.as_millis();
                            session::fail(
                                conn,
                                &mut self.node.ctx,
                                session::Fatal::new(
                                    ErrorWord::EcgErr,
                                    format!("nothing received for {ms} ms although heart-beats were promised"),
                                ),
                            );
                            conn.close_reason = Some(CloseReason::HeartBeatTimeout);
                        } else {
                            self.node.ctx.time.timers.arm(Timer { at: conn.beat.last_read + grace, ..t });
                        }
                    }
                }
                TimerKind::Linger => {
                    if conn.is_closing() {
                        let r = conn.close_reason.clone().unwrap_or(CloseReason::PeerClosed);
                        self.finalize(t.slot, r);
                    }
                }
            }
        }
    }

    /// Shutdown: stop accepting, close every connection (flushing it), and return true once
    /// all are gone or `shutdown_timeout` passed.
    fn check_stop(&mut self) -> bool {
        if !self.shared.stop.load(Ordering::Acquire) {
            return false;
        }
        if self.stopping_until.is_none() {
            self.stopping_until = Some(self.node.ctx.time.now + Duration::from_millis(self.node.ctx.env.cfg.shutdown_timeout));
            for mut l in self.listeners.drain(..) {
                let _ = self.poll.registry().deregister(&mut l);
            }
            self.node.begin_shutdown();
            self.flush_all();
        }
        if self.node.conns.is_empty() || self.stopping_until.is_some_and(|t| self.node.ctx.time.now >= t) {
            let slots: Vec<usize> = self.node.conns.iter().map(|(s, _)| s).collect();
            for s in slots {
                self.finalize(s as u32, CloseReason::Shutdown);
            }
            self.node.ctx.outbox.flush();
            log::debug!("worker {} stopped", self.node.ctx.worker);
            return true;
        }
        false
    }
}
