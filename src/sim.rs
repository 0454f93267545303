//! A broker driven without threads, sockets or a poll loop: for fuzzing, benches and tests.
//!
//! `Sim` holds one [`Node`] per simulated worker (the same type the worker threads run: context,
//! shard, connections) joined by the real bus channels, and drives them from the calling thread.
//! Input is handed to a connection as bytes and its output read from its buffer; connections
//! have a [`Transport::Detached`] stream, no socket.
//!
//! Two ways to run what follows an input:
//! - [`Sim::settle`]: everything to completion, workers in index order (deterministic; what the
//!   single-worker benches and the session fuzz target use);
//! - [`Sim::step`] / [`Sim::run`]: one bus delivery (or backlog move, or credit flush) at a time,
//!   the next one picked by a seeded generator, so a test sees the cross-worker interleavings a
//!   real machine produces, reproducibly (the seed names the schedule).
//!
//! Invariants: the simulation applies bus messages only through [`Node`], exactly as a worker
//! does; per sender and receiver, bus messages stay FIFO (they are real channels), which is the
//! only ordering the broker relies on.

use crate::api::Handlers;
use crate::auth::Authenticator;
use crate::broker::shard::Shard;
use crate::broker::ConnRef;
use crate::bus::{self, Mailbox, Outbox};
use crate::config::Config;
use crate::conn::web::Site;
use crate::conn::{deliver, session, Conn, Ctx, Transport};
use crate::worker::Node;
use std::sync::Arc;

/// A connection in the simulation: its worker and slab slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub worker: usize,
    pub slot: usize,
}

/// Capacity of each simulated bus channel: small, so backlogs and their flushes are exercised.
pub const SIM_BUS_CAPACITY: usize = 8;

/// What one scheduler step did (for tests that count or log the schedule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Worker `0` applied one message from its `ToWorker` inbox.
    Ctrl(usize),
    /// Worker `0` applied one request from its `ToOwner` inbox.
    Data(usize),
    /// Worker `0` moved its bus backlogs into channels.
    Backlog(usize),
    /// Worker `0` sent the credits its connections returned.
    Credits(usize),
    /// Worker `0` went back to input it had stopped reading while its bus backlog was full.
    Reads(usize),
    /// Worker `0` looked at the memory gauge (as an idle worker does within 10 ms while it
    /// holds publishers): the alarm moved since it last looked, or its held publishers may go.
    Memory(usize),
}

pub struct Sim {
    pub nodes: Vec<Node>,
    mailboxes: Vec<Mailbox>,
    /// Unparsed input per connection (a partial frame), as a worker keeps it: `[worker][slot]`.
    pending: Vec<Vec<Vec<u8>>>,
    /// Connections whose input processing stopped because their worker's bus backlog paused
    /// reads (the worker loop retries them next turn): `[worker]`.
    stalled: Vec<Vec<usize>>,
    /// The schedule.
    rng: crate::rng::Rng,
    /// One poll per worker: each owns its worker's waker (never polled).
    _polls: Vec<mio::Poll>,
    /// Recount every connection's bytes for `max_memory` after every turn (the default: the
    /// simulation has no clock to wait for). Benches with thousands of connections turn it off,
    /// as a worker recounts only every `memory::RECOUNT`.
    pub recount_memory: bool,
}

impl Sim {
    /// One worker with `cfg` and `n` connections in the Handshake phase (conn `i` is slot `i`).
    pub fn new(cfg: Config, n: usize) -> Sim {
        let mut sim = Sim::workers(cfg, 1, 0);
        for _ in 0..n {
            sim.add_conn();
        }
        sim
    }

    /// `workers` workers and no connections; `seed` picks the schedule of [`Sim::step`].
    pub fn workers(cfg: Config, workers: usize, seed: u64) -> Sim {
        let workers = workers.max(1);
        let cfg = Arc::new(Config { workers, ..cfg });
        let mut polls = Vec::new();
        let mut peers = Vec::new();
        let mut mailboxes = Vec::new();
        for _ in 0..workers {
            let poll = mio::Poll::new().expect("poll");
            let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(usize::MAX)).expect("waker"));
            let (peer, mailbox) = bus::channel(SIM_BUS_CAPACITY, waker);
            polls.push(poll);
            peers.push(peer);
            mailboxes.push(mailbox);
        }
        let policies = Arc::new(crate::broker::policy::Policies::new(&cfg, 1));
        let shared = Arc::new(crate::bus::Shared::new(workers, cfg.memory_limit()));
        let nodes = (0..workers)
            .map(|w| {
                let (auth_tx, _auth_rx) = crossbeam_channel::bounded(1);
                let ctx = Ctx::new(
                    w,
                    cfg.clone(),
                    Outbox::new(w, peers.clone(), SIM_BUS_CAPACITY),
                    Arc::new(Authenticator::default()),
                    auth_tx,
                    Arc::new(Handlers::default()),
                    Arc::new(Site::default()),
                    policies.clone(),
                    shared.clone(),
                );
                Node::new(ctx, Shard::new(policies.clone(), workers, w), slab::Slab::new())
            })
            .collect();
        let rng = crate::rng::Rng::new(seed);
        Sim {
            nodes,
            mailboxes,
            pending: vec![Vec::new(); workers],
            stalled: vec![Vec::new(); workers],
            rng,
            _polls: polls,
            recount_memory: true,
        }
    }

    /// Add a connection on worker 0; returns its slot.
    pub fn add_conn(&mut self) -> usize {
        self.connect_on(0).slot
    }

    /// Add a connection (Handshake phase) on `worker`.
    pub fn connect_on(&mut self, worker: usize) -> ConnId {
        let node = &mut self.nodes[worker];
        let e = node.conns.vacant_entry();
        let slot = e.key();
        let me = ConnRef { worker: worker as u16, slot: slot as u32, gen: slot as u32 + 1 };
        e.insert(Conn::new(Transport::Detached, me, "127.0.0.1:1".parse().expect("address"), node.ctx.time.now));
        let pending = &mut self.pending[worker];
        if pending.len() <= slot {
            pending.resize(slot + 1, Vec::new());
        }
        ConnId { worker, slot }
    }

    /// Add a connection on `worker` as if accepted on the web port (HTTP GET, WebSocket).
    pub fn connect_web_on(&mut self, worker: usize) -> ConnId {
        let id = self.connect_on(worker);
        let conn = &mut self.nodes[worker].conns[id.slot];
        conn.web = Some(Box::default());
        conn.who.listener = crate::conn::ListenerKind::Web;
        id
    }

    /// Connection `i` of worker 0.
    pub fn conn(&self, i: usize) -> &Conn {
        &self.nodes[0].conns[i]
    }

    /// Feed bytes to connection `i` of worker 0 as if read from its socket, then run everything
    /// that follows to completion ([`Sim::settle`]).
    pub fn feed(&mut self, i: usize, bytes: &[u8]) {
        self.input(ConnId { worker: 0, slot: i }, bytes);
        self.settle();
    }

    /// Hand bytes to a connection as if read from its socket; its worker runs its local work
    /// (own-shard requests, own deliveries), as a worker does after each read. Bus messages to
    /// other workers wait for [`Sim::step`] or [`Sim::settle`].
    pub fn input(&mut self, id: ConnId, bytes: &[u8]) {
        self.pending[id.worker][id.slot].extend_from_slice(bytes);
        self.process(id.worker, id.slot);
        self.after_turn(id.worker);
    }

    /// Run a connection's session over its kept input, as `read_conn` does; remember it when
    /// the worker's paused reads stopped it.
    fn process(&mut self, w: usize, slot: usize) {
        let node = &mut self.nodes[w];
        let buf = std::mem::take(&mut self.pending[w][slot]);
        let Some(conn) = node.conns.get_mut(slot) else { return };
        if buf.is_empty() || conn.is_closing() {
            return;
        }
        if conn.is_web() {
            // The web layer keeps its own undecoded input, as `read_conn` hands it over.
            crate::conn::web::ingest(conn, &buf, &mut node.ctx);
            node.run_local();
            return;
        }
        // As `read_conn`: a partial frame is parsed again only once it may have grown whole.
        let ready = if conn.need > 0 { buf.len() >= conn.need } else { conn.until.as_mut().is_none_or(|u| u.reached(&buf)) };
        if !ready {
            self.pending[w][slot] = buf;
            return;
        }
        let used = session::process_input(conn, &buf, &mut node.ctx);
        if !conn.is_closing() {
            self.pending[w][slot] = buf[used..].to_vec();
            if used < buf.len() && node.ctx.outbox.reads_paused() && !self.stalled[w].contains(&slot) {
                self.stalled[w].push(slot);
            }
        }
        node.run_local();
    }

    /// What a worker does at the end of a turn besides writing: closing connections release
    /// their subscriptions (which may send more), and the dirty list is done with.
    fn after_turn(&mut self, w: usize) {
        // As a worker does at the start of each turn (recounting every time: the simulation has
        // no clock to wait for).
        let force = self.recount_memory;
        self.nodes[w].watch_memory(force);
        loop {
            // Connections put back on the read list (a held producer let go, pipelined frames
            // after an authentication) process the input they kept, as `read_conn` does.
            let reads = std::mem::take(&mut self.nodes[w].ctx.turn.read_list);
            for slot in reads {
                if let Some(conn) = self.nodes[w].conns.get_mut(slot as usize) {
                    conn.sched.read = false;
                }
                self.process(w, slot as usize);
            }
            let node = &mut self.nodes[w];
            let dirty = std::mem::take(&mut node.ctx.turn.dirty);
            if dirty.is_empty() && node.ctx.turn.read_list.is_empty() {
                break;
            }
            for slot in dirty {
                if let Some(conn) = node.conns.get_mut(slot as usize) {
                    conn.sched.flush = false;
                    if conn.is_closing() && !conn.session_torn_down() {
                        session::teardown(conn, &mut node.ctx);
                        conn.mark_torn_down();
                    }
                }
            }
            node.run_local();
        }
    }

    /// The steps possible now, in a fixed order.
    fn enabled(&self, out: &mut Vec<Step>) {
        out.clear();
        for (w, node) in self.nodes.iter().enumerate() {
            let mb = &self.mailboxes[w];
            if !mb.ctrl.is_empty() {
                out.push(Step::Ctrl(w));
            }
            if !mb.data.is_empty() && !node.ctx.outbox.owner_paused() {
                out.push(Step::Data(w));
            }
            if node.ctx.outbox.has_backlog() {
                out.push(Step::Backlog(w));
            }
            if !node.ctx.turn.credits.is_empty() {
                out.push(Step::Credits(w));
            }
            if !self.stalled[w].is_empty() && !node.ctx.outbox.reads_paused() {
                out.push(Step::Reads(w));
            }
            let g = &node.ctx.env.shared.memory;
            if node.ctx.mem.alarm != g.alarm() || (!node.ctx.mem.held.is_empty() && !g.alarm() && g.used() < g.limit()) {
                out.push(Step::Memory(w));
            }
        }
    }

    fn next_random(&mut self) -> u64 {
        self.rng.next_u64()
    }

    fn apply(&mut self, step: Step) {
        match step {
            Step::Ctrl(w) => {
                if let Ok(m) = self.mailboxes[w].ctrl.try_recv() {
                    self.nodes[w].ctrl(m);
                }
                self.nodes[w].run_local();
            }
            Step::Data(w) => {
                if let Ok(m) = self.mailboxes[w].data.try_recv() {
                    self.nodes[w].owner_request(m);
                }
                self.nodes[w].run_local();
            }
            Step::Backlog(w) => self.nodes[w].ctx.outbox.flush(),
            Step::Credits(w) => {
                self.nodes[w].ctx.flush_credits();
                self.nodes[w].run_local();
            }
            Step::Reads(w) => {
                for slot in std::mem::take(&mut self.stalled[w]) {
                    self.process(w, slot);
                }
            }
            Step::Memory(_) => {} // after_turn looks
        }
        let w = match step {
            Step::Ctrl(w) | Step::Data(w) | Step::Backlog(w) | Step::Credits(w) | Step::Reads(w) | Step::Memory(w) => w,
        };
        self.after_turn(w);
    }

    /// Take one step picked by the seeded schedule; `None` once nothing is left to do.
    pub fn step(&mut self) -> Option<Step> {
        let mut steps = Vec::with_capacity(4 * self.nodes.len());
        self.enabled(&mut steps);
        if steps.is_empty() {
            return None;
        }
        let step = steps[(self.next_random() % steps.len() as u64) as usize];
        self.apply(step);
        Some(step)
    }

    /// Step until nothing is left; returns the number of steps (bounded by `max`, after which
    /// the broker is taken to be livelocked and this panics).
    pub fn run(&mut self, max: usize) -> usize {
        for n in 0..max {
            if self.step().is_none() {
                return n;
            }
        }
        panic!("the simulation did not settle within {max} steps");
    }

    /// Run everything to completion, workers in index order (no randomness).
    pub fn settle(&mut self) {
        let mut steps = Vec::new();
        loop {
            self.enabled(&mut steps);
            let Some(&step) = steps.first() else { break };
            self.apply(step);
        }
        for w in 0..self.nodes.len() {
            self.after_turn(w);
        }
    }

    /// Shut every worker down as the broker does (each closes its connections, which release
    /// what they hold); follow with [`Sim::run`] or [`Sim::settle`].
    pub fn shutdown(&mut self) {
        for w in 0..self.nodes.len() {
            self.nodes[w].begin_shutdown();
            self.after_turn(w);
        }
    }

    /// Connection `i` of worker 0: its output so far (what the worker would write).
    pub fn output(&mut self, i: usize) -> &mut Vec<u8> {
        &mut self.nodes[0].conns[i].out
    }

    /// "Write" a connection's output: take it, and give back the auto-ack credit it was holding
    /// while the output was full, as a flush does.
    pub fn take_output(&mut self, id: ConnId) -> Vec<u8> {
        let node = &mut self.nodes[id.worker];
        let Some(conn) = node.conns.get_mut(id.slot) else { return Vec::new() };
        let out = std::mem::take(&mut conn.out);
        deliver::release_owed_credit(conn, &mut node.ctx);
        out
    }

    /// The connection, if it is still there.
    pub fn get(&self, id: ConnId) -> Option<&Conn> {
        self.nodes[id.worker].conns.get(id.slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reaches_local_subscribers() {
        let mut s = Sim::new(Config::default(), 3);
        for i in 0..3 {
            s.feed(i, b"CONNECT\naccept-version:1.2\n\n\0");
            s.output(i).clear();
        }
        s.feed(1, b"SUBSCRIBE\nid:a\ndestination:/topic/t\n\n\0");
        s.feed(2, b"SUBSCRIBE\nid:b\ndestination:/topic/t\n\n\0");
        s.feed(0, b"SEND\ndestination:/topic/t\n\nhi\0");
        for (i, id) in [(1, "a"), (2, "b")] {
            let out = String::from_utf8(s.output(i).clone()).unwrap();
            assert!(out.starts_with(&format!("MESSAGE\nsubscription:{id}\n")) && out.ends_with("\nhi\0"), "{out}");
        }
        assert!(s.output(0).is_empty());
    }

    #[test]
    fn the_expiry_heap_stays_proportional_to_what_is_held() {
        // 20,000 messages with a day to live, consumed as they arrive: without compaction the
        // heap would keep an entry for each until the day is over.
        let mut s = Sim::new(Config::default(), 2);
        for i in 0..2 {
            s.feed(i, b"CONNECT\naccept-version:1.2\n\n\0");
        }
        s.feed(1, b"SUBSCRIBE\nid:a\ndestination:/queue/q\n\n\0");
        let expires = crate::broker::wall_ms() + 86_400_000;
        let frame = format!("SEND\ndestination:/queue/q\nexpires:{expires}\n\nx\0");
        for _ in 0..20_000 {
            s.feed(0, frame.as_bytes());
            s.output(1).clear();
        }
        let shard = &s.nodes[0].shard;
        assert_eq!(shard.queue_depth("/queue/q"), Some(0));
        assert!(shard.expiring_len() <= 2 * 1024 + 1, "{} heap entries for nothing held", shard.expiring_len());
    }
}
