//! The inter-worker bus: bounded crossbeam channels plus one `mio::Waker` per worker.
//!
//! Two channels per worker, by direction of the relationship:
//! - [`ToOwner`] ("data"): from a connection's worker to the worker that owns a destination
//!   (publish, subscribe, acks, credit, receipt barriers). FIFO per sender, so one connection's
//!   operations on one destination are applied in the order it sent them.
//! - [`ToWorker`] ("ctrl"): from an owner back to the worker of a connection ([`FromOwner`]:
//!   deliveries, barrier answers, rejections) and from helper threads (auth results).
//!
//! The message vocabulary between owners and connections is the broker's (`broker::mail`); the
//! bus adds the control messages and implements the broker's [`Outlet`] with channels.
//!
//! Messages to the worker itself skip the channels and go to two local FIFOs, processed in the
//! same loop turn.
//!
//! # Backpressure and bounds
//! A full channel never drops a message: it goes to a per-target backlog that is retried every
//! loop turn. The worker stops *reading client sockets* while its `ToOwner` backlog is over
//! `bus_capacity` messages, and stops *draining its own `ToOwner` inbox* (the only thing that
//! produces deliveries) while its `ToWorker` backlog is over `bus_capacity`. `ToWorker` inboxes
//! are always drained, so no cycle of workers can wait on each other: every backlog is bounded by
//! `bus_capacity` plus the output of one processing step.
//!
//! # Wake-ups
//! A sender rings the receiver's waker only when the receiver's `notified` flag goes from false to
//! true. The receiver keeps the flag true while it is awake and clears it only just before it
//! sleeps, looking at its inboxes once more after clearing it; so a busy worker is never rung.
//! Wake-ups are collected during a turn and rung once at its end ([`Outbox::flush`]).

pub use crate::broker::mail::{FromOwner, Outlet, Seqs, ToOwner};

use crate::auth::AuthOutcome;
use crate::broker::policy::Policies;
use crate::broker::ConnRef;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use mio::Waker;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// A message for the worker that holds a connection.
#[derive(Debug)]
pub enum ToWorker {
    /// A destination owner's answer (deliveries, barrier answers, rejections).
    Owner(FromOwner),
    /// Close a connection on an admin's request.
    Kick { target: ConnRef, by: ConnRef },
    /// New configuration, policy table or users (SIGHUP reload, admin `perms`).
    Reconfigure(Arc<Reconfig>),
    /// A slow credential check finished.
    AuthDone { conn: ConnRef, peer: std::net::IpAddr, outcome: AuthOutcome },
    /// Fault injection (tests of supervision): panic in the worker loop.
    InjectPanic,
    /// One worker's numbers for a console page.
    StatsPart { to: crate::broker::StatsAsker, part: Box<crate::metrics::WorkerSnapshot> },
    /// The worker's sync thread: its log is on disk up to a record.
    Durable(crate::journal::syncer::Durable),
}

impl From<FromOwner> for ToWorker {
    fn from(m: FromOwner) -> ToWorker {
        ToWorker::Owner(m)
    }
}

/// State shared by all workers: the stop flag and the connection count for the accept gate,
/// and the first broker thread failure. Atomics and a set-once cell only; the one thing
/// workers share besides channels.
#[derive(Debug, Default)]
pub struct Shared {
    pub stop: AtomicBool,
    pub connections: AtomicUsize,
    /// Set once, by the first broker thread (worker or auth) that died: the server is then
    /// stopping, `/health` reports it and `ServerHandle::join` returns it.
    pub failure: std::sync::OnceLock<String>,
    /// Process-wide memory accounting and the `max_memory` alarm.
    pub memory: crate::memory::Gauge,
    /// Fault injection (supervision tests): the auth thread panics on its next job.
    pub auth_fault: Arc<AtomicBool>,
    /// The largest message-id counter the durable log held at start: ids are made above it.
    pub id_floor: std::sync::atomic::AtomicU64,
    /// What the start recovered from the durable log: messages, and milliseconds it took
    /// (read, rewrite, switch of generation), for `/metrics`.
    pub recovered: std::sync::atomic::AtomicU64,
    pub recovery_ms: std::sync::atomic::AtomicU64,
    /// Wildcard subscriptions held, server-wide (bounded by `max_wildcard_subs`).
    pub wildcard_subs: AtomicUsize,
}

impl Shared {
    /// The shared state of a server of `workers` workers that may hold `memory_limit` bytes.
    pub fn new(workers: usize, memory_limit: u64) -> Shared {
        Shared { memory: crate::memory::Gauge::new(workers, memory_limit), ..Shared::default() }
    }

    /// A broker thread died: remember why (the first reason wins), stop every worker and wake
    /// them. A half-dead broker would swallow traffic for the destinations the dead thread
    /// owned, so the whole server stops and the process exits non-zero (a supervisor restarts
    /// it).
    pub fn fail(&self, reason: String, peers: &[Peer]) {
        log::error!("{reason}; stopping the server");
        let _ = self.failure.set(reason);
        self.stop.store(true, Ordering::SeqCst);
        for p in peers {
            let _ = p.waker.wake();
        }
    }
}

/// The text of a caught panic.
pub fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned()).unwrap_or_else(|| "a panic".into())
}

/// What a worker swaps in on [`ToWorker::Reconfigure`].
#[derive(Debug)]
pub struct Reconfig {
    pub cfg: Arc<crate::config::Config>,
    pub policies: Arc<Policies>,
    pub auth: Arc<crate::auth::Authenticator>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// The receiving half of one worker's bus.
pub struct Mailbox {
    pub data: Receiver<ToOwner>,
    pub ctrl: Receiver<ToWorker>,
    pub notified: Arc<AtomicBool>,
}

/// The sending half to one worker; cheap to clone, shared by every other worker.
#[derive(Clone)]
pub struct Peer {
    pub data: Sender<ToOwner>,
    pub ctrl: Sender<ToWorker>,
    pub waker: Arc<Waker>,
    pub notified: Arc<AtomicBool>,
}

impl Peer {
    /// Ring the waker unless a wake-up is already pending.
    pub fn wake(&self) {
        // SeqCst pairs with the receiver's store-fence-check before it sleeps (`Worker::wait`):
        // either it sees this message, or this swap sees its `false` and rings.
        if !self.notified.swap(true, Ordering::SeqCst) {
            if let Err(e) = self.waker.wake() {
                log::error!("waking a worker failed: {e}");
            }
        }
    }
}

/// Create the channels for one worker. The waker is created by the worker's `Poll`.
pub fn channel(capacity: usize, waker: Arc<Waker>) -> (Peer, Mailbox) {
    let (dtx, drx) = crossbeam_channel::bounded(capacity);
    let (ctx, crx) = crossbeam_channel::bounded(capacity);
    let notified = Arc::new(AtomicBool::new(false));
    (Peer { data: dtx, ctrl: ctx, waker, notified: notified.clone() }, Mailbox { data: drx, ctrl: crx, notified })
}

/// One worker's sending side: channels to every worker, backlogs, local FIFOs.
pub struct Outbox {
    me: usize,
    peers: Vec<Peer>,
    data_backlog: Vec<VecDeque<ToOwner>>,
    ctrl_backlog: Vec<VecDeque<ToWorker>>,
    data_backlogged: usize,
    ctrl_backlogged: usize,
    to_wake: Vec<bool>,
    high_water: usize,
    /// Requests to destinations this worker owns.
    pub local_data: VecDeque<ToOwner>,
    /// Messages for this worker's own connections.
    pub local_ctrl: VecDeque<ToWorker>,
    /// Bytes of the messages published through this outbox (for `max_memory`: on the bus
    /// until the owner's shard counts them arrived).
    pub sent: crate::memory::Tally,
}

impl Outbox {
    pub fn new(me: usize, peers: Vec<Peer>, high_water: usize) -> Outbox {
        let n = peers.len();
        Outbox {
            me,
            peers,
            data_backlog: (0..n).map(|_| VecDeque::new()).collect(),
            ctrl_backlog: (0..n).map(|_| VecDeque::new()).collect(),
            data_backlogged: 0,
            ctrl_backlogged: 0,
            to_wake: vec![false; n],
            high_water,
            local_data: VecDeque::new(),
            local_ctrl: VecDeque::new(),
            sent: crate::memory::Tally::default(),
        }
    }

    pub fn me(&self) -> usize {
        self.me
    }

    pub fn workers(&self) -> usize {
        self.peers.len()
    }

    /// Send a request to the owner worker `w`.
    pub fn to_owner(&mut self, w: usize, msg: ToOwner) {
        match &msg {
            ToOwner::Publish { msg, .. } => self.sent.add(msg.weight()),
            ToOwner::Commit { ops, .. } => {
                for op in ops {
                    if let ToOwner::Publish { msg, .. } = op {
                        self.sent.add(msg.weight());
                    }
                }
            }
            _ => {}
        }
        if w == self.me {
            self.local_data.push_back(msg);
            return;
        }
        if !self.data_backlog[w].is_empty() {
            self.data_backlog[w].push_back(msg);
            self.data_backlogged += 1;
            return;
        }
        match self.peers[w].data.try_send(msg) {
            Ok(()) => self.to_wake[w] = true,
            Err(TrySendError::Full(m)) => {
                self.data_backlog[w].push_back(m);
                self.data_backlogged += 1;
                self.to_wake[w] = true;
            }
            Err(TrySendError::Disconnected(_)) => {
                log::debug!("worker {w} is gone; request dropped at shutdown")
            }
        }
    }

    /// Send a message to the worker `w` that holds a connection.
    pub fn to_worker(&mut self, w: usize, msg: ToWorker) {
        if w == self.me {
            self.local_ctrl.push_back(msg);
            return;
        }
        if !self.ctrl_backlog[w].is_empty() {
            self.ctrl_backlog[w].push_back(msg);
            self.ctrl_backlogged += 1;
            return;
        }
        match self.peers[w].ctrl.try_send(msg) {
            Ok(()) => self.to_wake[w] = true,
            Err(TrySendError::Full(m)) => {
                self.ctrl_backlog[w].push_back(m);
                self.ctrl_backlogged += 1;
                self.to_wake[w] = true;
            }
            Err(TrySendError::Disconnected(_)) => {
                log::debug!("worker {w} is gone; message dropped at shutdown")
            }
        }
    }

    /// Ring every worker's waker now, bypassing the notified flag (a stop must always wake).
    pub fn wake_all_now(&self) {
        for p in &self.peers {
            let _ = p.waker.wake();
        }
    }

    /// Client sockets must not be read while this is true.
    pub fn reads_paused(&self) -> bool {
        self.data_backlogged > self.high_water
    }

    /// The own `ToOwner` inbox must not be drained while this is true.
    pub fn owner_paused(&self) -> bool {
        self.ctrl_backlogged > self.high_water
    }

    /// Anything still waiting for room in a channel.
    /// Bus messages waiting in this worker's backlogs (the channels were full).
    pub fn backlog_len(&self) -> usize {
        self.data_backlogged + self.ctrl_backlogged
    }

    pub fn has_backlog(&self) -> bool {
        self.data_backlogged + self.ctrl_backlogged > 0
    }

    /// Move backlogs into channels while there is room, then ring every waker owed.
    pub fn flush(&mut self) {
        if self.has_backlog() {
            for w in 0..self.peers.len() {
                let peer = &self.peers[w];
                let moved = drain_into(&mut self.data_backlog[w], &peer.data, &mut self.data_backlogged)
                    | drain_into(&mut self.ctrl_backlog[w], &peer.ctrl, &mut self.ctrl_backlogged);
                self.to_wake[w] |= moved;
            }
        }
        for w in 0..self.peers.len() {
            if std::mem::take(&mut self.to_wake[w]) {
                self.peers[w].wake();
            }
        }
    }
}

impl Outlet for Outbox {
    fn me(&self) -> usize {
        self.me
    }
    fn workers(&self) -> usize {
        self.peers.len()
    }
    fn to_owner(&mut self, w: usize, msg: ToOwner) {
        Outbox::to_owner(self, w, msg)
    }
    fn answer(&mut self, w: usize, msg: FromOwner) {
        Outbox::to_worker(self, w, ToWorker::Owner(msg))
    }
}

/// Move messages from `backlog` into `tx` until it is full; keeps `count` in step. Returns
/// whether anything moved (the receiver needs a wake-up).
fn drain_into<T>(backlog: &mut VecDeque<T>, tx: &Sender<T>, count: &mut usize) -> bool {
    let mut moved = false;
    while let Some(m) = backlog.pop_front() {
        match tx.try_send(m) {
            Ok(()) => {
                *count -= 1;
                moved = true;
            }
            Err(TrySendError::Full(m)) => {
                backlog.push_front(m);
                break;
            }
            // The receiver is gone (shutdown): nothing will ever read it.
            Err(TrySendError::Disconnected(_)) => *count -= 1,
        }
    }
    moved
}
