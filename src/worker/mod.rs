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

mod accept;
mod links;
pub mod listener;
pub mod node;
mod read;
mod timers;
mod write;

pub use node::Node;

use crate::broker::shard::Shard;
use crate::broker::ConnRef;
use crate::bus::Mailbox;
use crate::bus::Shared;
use crate::conn::{deliver, session, CloseReason, Conn, Ctx, ListenerKind, Phase, Port, ReadSide, WriteSide};
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
    kinds: Vec<Port>,
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
        kinds: Vec<Port>,
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

    /// Give the shard its durable log and the messages recovered for it (before the loop).
    pub fn attach_journal(&mut self, journal: crate::broker::durable::Journal, state: crate::journal::replay::Replay) {
        self.node.shard.set_journal(journal);
        for ((topic, identity, name), record) in &state.subscriptions {
            self.node.shard.restore_durable(topic, identity, name, *record);
        }
        for (dest, held) in state.destinations {
            let mut msgs: Vec<_> = held.into_iter().collect();
            msgs.sort_by_key(|(id, m)| (m.seq, *id));
            self.node.shard.restore(&dest, msgs);
        }
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
                        if ev.is_read_closed() || ev.is_error() {
                            conn.sched.peer_closed = true;
                            crate::conn::session::unhold(conn, &mut self.node.ctx);
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
            // Busy time: from waking to going back to the poller (its rate is utilisation).
            let busy = self.node.ctx.time.now.elapsed();
            self.node.ctx.stats.busy_us += busy.as_micros() as u64;
            self.node.ctx.stats.turns += 1;
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
            || self.node.shard.has_unfinished()
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
        // Records the sync thread had no room for go at the next turn.
        if self.node.shard.journal_waiting() {
            cap(Duration::from_millis(1));
        }
        // Another worker may clear the memory alarm (its consumers drained): look again soon,
        // so publishers held here resume within milliseconds even if this worker is idle.
        if self.node.ctx.mem.alarm || !self.node.ctx.mem.held.is_empty() || self.node.ctx.env.shared.memory.alarm() {
            cap(Duration::from_millis(10));
        }
        if self.node.ctx.mem.stale {
            let due = self.node.ctx.mem.next_recount.map_or(Duration::ZERO, |t| t.saturating_duration_since(Instant::now()));
            cap(due);
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
        self.node.watch_memory(false);
        self.drain_ctrl();
        self.service_reads();
        self.drain_data();
        self.fire_timers();
        // Entries of closed connections leave the heap once they outnumber what the live ones
        // can arm (at most 4 each), not only when they fire.
        if self.node.ctx.time.timers.len() > 4 * self.node.conns.len() + 1024 {
            let conns = &self.node.conns;
            self.node.ctx.time.timers.compact(|slot, gen| conns.get(slot as usize).is_some_and(|c| c.me.gen == gen));
        }
        if self.node.shard.next_expiry().is_some_and(|at| at <= self.node.ctx.time.wall_ms) {
            self.node.shard.expire(self.node.ctx.time.wall_ms, &mut self.node.ctx.outbox);
        }
        if self.node.shard.has_unfinished() {
            self.node.shard.resume_dispatch(&mut self.node.ctx.outbox);
        }
        self.node.settle();
        self.flush_all();
        // Closing connections released subscriptions and flushes released credit: apply those,
        // then write whatever that produced.
        self.node.settle();
        self.flush_all();
        self.node.shard.flush_journal();
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
