//! The worker context a connection's handlers use: config, bus outbox, local topic index,
//! timers, buffer pool and counters. One per worker; never shared.

use crate::auth::{AuthJob, Authenticator};
use crate::broker::FastMap;
use crate::broker::{message_id, SubKey};
use crate::bus::{Outbox, ToOwner};
use crate::config::Config;
use crate::metrics::WorkerStats;
use crate::selector::Selector;
use crate::stomp::Limits;
use crate::timer::Timers;
use crossbeam_channel::Sender;
use std::sync::Arc;
use std::time::Instant;

/// A local subscriber of a topic: the connection's slot and generation, and its subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSub {
    pub slot: u32,
    pub gen: u32,
    pub serial: u32,
}

/// This worker's subscribers of one topic, indexed for filters: a message goes to every
/// unfiltered subscriber plus those whose filter value equals the message's `filter_header`
/// value (one hash lookup, never a scan of subscribers).
#[derive(Debug, Default)]
pub struct TopicSubs {
    /// The header filtered subscriptions route on (from the destination's policy at subscribe).
    pub filter_header: Option<Box<str>>,
    pub all: Vec<LocalSub>,
    pub by_value: FastMap<Box<str>, Vec<LocalSub>>,
    /// Subscribers with a selector (and perhaps a filter value too), each tested per message.
    pub selective: Vec<(LocalSub, Option<Box<str>>, Arc<Selector>)>,
}

impl TopicSubs {
    pub fn is_empty(&self) -> bool {
        self.all.is_empty() && self.by_value.is_empty() && self.selective.is_empty()
    }

    pub fn add(&mut self, ls: LocalSub, filter: Option<&str>, selector: Option<Arc<Selector>>) {
        if let Some(sel) = selector {
            self.selective.push((ls, filter.map(Box::from), sel));
            return;
        }
        match filter {
            Some(v) => self.by_value.entry(Box::from(v)).or_default().push(ls),
            None => self.all.push(ls),
        }
    }

    pub fn remove(&mut self, ls: LocalSub, filter: Option<&str>, selective: bool) {
        if selective {
            self.selective.retain(|(l, _, _)| *l != ls);
            return;
        }
        match filter {
            Some(v) => {
                if let Some(list) = self.by_value.get_mut(v) {
                    list.retain(|l| *l != ls);
                    if list.is_empty() {
                        self.by_value.remove(v);
                    }
                }
            }
            None => self.all.retain(|l| *l != ls),
        }
    }

    /// The subscribers `msg` goes to, appended to `out`.
    pub fn matching(&self, msg: &crate::broker::Message, out: &mut Vec<LocalSub>) {
        out.extend_from_slice(&self.all);
        if let Some(h) = &self.filter_header {
            if let Some(list) = msg.header(h).and_then(|v| self.by_value.get(v)) {
                out.extend_from_slice(list);
            }
        }
        for (ls, filter, sel) in &self.selective {
            let value_ok = match (filter, &self.filter_header) {
                (Some(v), Some(h)) => msg.header(h) == Some(&**v),
                _ => true,
            };
            if value_ok && sel.matches(msg) {
                out.push(*ls);
            }
        }
    }
}

/// Buffers returned by idle connections, reused by busy ones.
///
/// Bounded by bytes, not count: at most [`POOL_BYTES`] (4 MiB) per worker, no single buffer over
/// [`POOL_BUF_MAX`]. A busy consumer's output buffer (hundreds of KiB per turn) comes back here
/// after every full flush and is taken again next turn, so it is not regrown from a few KiB by
/// repeated reallocation and copying each turn.
#[derive(Debug, Default)]
pub struct BufPool {
    free: Vec<Vec<u8>>,
    bytes: usize,
}

/// Largest buffer kept for reuse.
pub const POOL_BUF_MAX: usize = 1 << 20;
/// Capacity kept in one worker's pool at most.
pub const POOL_BYTES: usize = 4 << 20;

impl BufPool {
    pub fn take(&mut self) -> Vec<u8> {
        match self.free.pop() {
            Some(b) => {
                self.bytes -= b.capacity();
                b
            }
            None => Vec::new(),
        }
    }

    pub fn give(&mut self, mut b: Vec<u8>) {
        let cap = b.capacity();
        if cap == 0 || cap > POOL_BUF_MAX || self.bytes + cap > POOL_BYTES {
            return;
        }
        b.clear();
        self.bytes += cap;
        self.free.push(b);
    }

    /// Capacity held for reuse.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

/// What a worker was handed at start and gets anew on reconfiguration: configuration,
/// policies, users, embedder hooks, the server-wide shared atomics. Read-mostly.
pub struct WorkerEnv {
    pub cfg: Arc<Config>,
    pub limits: Limits,
    /// The destination policies in force (swapped on reload and admin `perms`).
    pub policies: Arc<crate::broker::policy::Policies>,
    pub auth: Arc<Authenticator>,
    pub auth_tx: Sender<AuthJob>,
    /// Embedded handlers and hooks.
    pub handlers: Arc<crate::api::Handlers>,
    /// Static files for the web port.
    pub site: Arc<super::web::Site>,
    /// Server name for CONNECTED: `romp/<version>`.
    pub server_header: String,
    /// The stop flag and connection count shared by every worker of this server.
    pub shared: Arc<crate::bus::Shared>,
    pub started: Instant,
    /// The TLS server configuration for connections accepted on TLS ports (swapped on reload:
    /// new connections get the new certificates, existing ones keep theirs).
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl WorkerEnv {
    /// What the stats pages need besides the workers' snapshots.
    pub fn metrics_env(&self) -> crate::metrics::Env<'_> {
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        crate::metrics::Env {
            server: &self.server_header,
            uptime_secs: self.started.elapsed().as_secs(),
            memory: &self.shared.memory,
            recovery: (!self.cfg.data_dir.is_empty()).then(|| (load(&self.shared.recovered), load(&self.shared.recovery_ms))),
            configured: &self.policies.entries,
            max_series: self.cfg.metrics_destinations,
        }
    }
}

/// Why a slow credential check was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthBusy {
    /// This peer address already has its share of checks pending on this worker.
    PeerPending,
    /// The auth threads' queue is full (or they are gone).
    QueueFull,
}

/// The worker's clocks and deadlines.
pub struct Clock {
    /// Monotonic time, taken once per loop turn.
    pub now: Instant,
    /// Wall clock, ms since the epoch, taken once per loop turn (for expiry).
    pub wall_ms: u64,
    pub timers: Timers,
}

/// Per-turn work lists and reusable scratch (nothing here outlives a turn except the pool).
#[derive(Default)]
pub struct Turn {
    /// Connections with bytes to flush this turn.
    pub dirty: Vec<u32>,
    /// Connections with input to read or process.
    pub read_list: Vec<u32>,
    /// Scratch list for topic fan-out (reused, so delivery does not allocate).
    pub fanout: Vec<LocalSub>,
    /// Auto-ack queue credits to return at the end of the turn, merged per subscription.
    pub credits: Vec<(Arc<str>, SubKey, u32)>,
    pub pool: BufPool,
}

/// One worker's side of the `max_memory` alarm (see `crate::memory`).
#[derive(Debug)]
pub struct MemoryWatch {
    /// The alarm as this worker last saw it (read from the gauge once per turn).
    pub alarm: bool,
    /// Connections of this worker held because the alarm was up when they sent (or were in
    /// the middle of) a SEND; all let go when it clears.
    pub held: Vec<(u32, u32)>,
    /// When this worker next recounts its connections' bytes.
    pub next_recount: Option<Instant>,
    /// The bytes of SENDs and partial frames this worker read since its last recount, and how
    /// many it may read before the next one: between recounts a worker pauses publishers on
    /// its own once `sent` reaches `budget`, its share (1/workers) of what is left under the
    /// limit, but at least [`MEMORY_QUANTUM`] (so the count always reaches the limit, and all
    /// workers reading at once pass it by at most one quantum each). Bytes that reached a
    /// destination meanwhile are counted twice until the recount: the safe side.
    pub sent: u64,
    pub budget: u64,
    /// A connection closed since the last recount: the worker recounts within
    /// `memory::RECOUNT` even if nothing else wakes it (an idle worker's stale figure would
    /// otherwise hold the alarm up for every worker).
    pub stale: bool,
}

/// The least a worker may read between two recounts of its connections (see `MemoryWatch`).
pub const MEMORY_QUANTUM: u64 = 1 << 20;

impl Default for MemoryWatch {
    fn default() -> MemoryWatch {
        MemoryWatch { alarm: false, held: Vec::new(), next_recount: None, sent: 0, budget: u64::MAX, stale: false }
    }
}

impl MemoryWatch {
    /// Whether a SEND must be held now.
    #[inline]
    pub fn over(&self) -> bool {
        self.alarm || self.sent >= self.budget
    }
}

/// What the session, delivery and web code of one worker share, by concern.
pub struct Ctx {
    pub worker: usize,
    pub env: WorkerEnv,
    pub time: Clock,
    pub turn: Turn,
    /// The bus to other workers (and the local FIFOs to this one).
    pub outbox: Outbox,
    /// Local subscribers per topic name (this worker's connections only).
    pub topics: FastMap<Arc<str>, TopicSubs>,
    /// This worker's wildcard topic subscriptions (and their selectors), by pattern.
    pub wild: crate::broker::wildcard::Trie<(LocalSub, Option<Arc<Selector>>)>,
    pub stats: WorkerStats,
    /// Producer flow control: queues over their limits (announced by their owners), each with
    /// the connections of this worker held because their next frame is a SEND to it.
    pub held: FastMap<Arc<str>, Vec<(u32, u32)>>,
    /// This worker's view of the `max_memory` alarm and the publishers it paused for it.
    pub mem: MemoryWatch,
    /// The last console snapshot this worker gathered, and when (see `web::STATS_FRESH`).
    pub stats_cache: Option<(Instant, Vec<crate::metrics::WorkerSnapshot>)>,
    /// A COMMIT being applied: the owner requests its operations make, gathered to go to each
    /// owner as one `ToOwner::Commit`.
    pub capture: Option<Vec<(usize, crate::bus::ToOwner)>>,
    next_msg: u64,
    /// Slow credential checks pending per peer address (see [`Ctx::auth_slot`]).
    auth_pending: FastMap<std::net::IpAddr, u32>,
}

impl Ctx {
    #[allow(clippy::too_many_arguments)] // one per shared service a worker is handed at start
    pub fn new(
        worker: usize,
        cfg: Arc<Config>,
        outbox: Outbox,
        auth: Arc<Authenticator>,
        auth_tx: Sender<AuthJob>,
        handlers: Arc<crate::api::Handlers>,
        site: Arc<super::web::Site>,
        policies: Arc<crate::broker::policy::Policies>,
        shared: Arc<crate::bus::Shared>,
    ) -> Ctx {
        let shared_floor = shared.id_floor.load(std::sync::atomic::Ordering::Relaxed);
        let env = WorkerEnv {
            limits: cfg.limits(),
            server_header: format!("{}/{}", cfg.name, env!("CARGO_PKG_VERSION")),
            cfg,
            policies,
            auth,
            auth_tx,
            handlers,
            site,
            shared,
            started: Instant::now(),
            tls: None,
        };
        Ctx {
            worker,
            env,
            time: Clock { now: Instant::now(), wall_ms: crate::broker::wall_ms(), timers: Timers::default() },
            turn: Turn::default(),
            outbox,
            topics: FastMap::default(),
            wild: Default::default(),
            stats: WorkerStats::default(),
            held: FastMap::default(),
            mem: MemoryWatch::default(),
            stats_cache: None,
            capture: None,
            // Above every id the durable log holds (recovered messages keep theirs).
            next_msg: shared_floor,
            auth_pending: FastMap::default(),
        }
    }

    /// Send a request to an owner, or gather it into the COMMIT being applied.
    pub fn to_owner(&mut self, w: usize, req: crate::bus::ToOwner) {
        match &mut self.capture {
            Some(c) => c.push((w, req)),
            None => self.outbox.to_owner(w, req),
        }
    }

    /// Hand a slow credential check to the auth threads, within the bound of checks pending
    /// per peer address on this worker ([`crate::auth::MAX_PENDING_PER_PEER`]) and the auth
    /// queue's; the answer comes back as `ToWorker::AuthDone`, which releases the slot.
    pub fn submit_auth(&mut self, job: AuthJob) -> Result<(), AuthBusy> {
        let ip = job.peer;
        let n = self.auth_pending.entry(ip).or_insert(0);
        if *n >= crate::auth::MAX_PENDING_PER_PEER {
            return Err(AuthBusy::PeerPending);
        }
        *n += 1;
        if !crate::auth::submit(&self.env.auth_tx, job) {
            self.auth_released(ip);
            return Err(AuthBusy::QueueFull);
        }
        Ok(())
    }

    /// A check from `ip` is over (answered, or never queued).
    pub fn auth_released(&mut self, ip: std::net::IpAddr) {
        if let Some(n) = self.auth_pending.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.auth_pending.remove(&ip);
            }
        }
    }

    /// A fresh broker-wide unique message id.
    pub fn next_message_id(&mut self) -> u64 {
        self.next_msg += 1;
        message_id(self.worker, self.next_msg)
    }

    /// Stop the whole server gracefully (admin `shutdown`): every worker stops accepting,
    /// flushes and closes its connections.
    pub fn request_stop(&mut self) {
        self.env.shared.stop.store(true, std::sync::atomic::Ordering::Release);
        self.outbox.wake_all_now();
    }

    /// Queue one credit for an auto-ack queue subscription.
    pub fn add_credit(&mut self, dest: &Arc<str>, key: SubKey, n: u32) {
        if let Some(last) = self.turn.credits.last_mut() {
            if last.1 == key {
                last.2 += n;
                return;
            }
        }
        self.turn.credits.push((dest.clone(), key, n));
    }

    /// Send the credits collected this turn to their owners.
    pub fn flush_credits(&mut self) {
        let workers = self.outbox.workers();
        for (dest, key, n) in std::mem::take(&mut self.turn.credits) {
            let w = crate::broker::owner_of(&dest, workers);
            self.outbox.to_owner(w, ToOwner::Credit { dest, key, n });
        }
    }
}

#[cfg(test)]
mod pool_tests {
    use super::*;

    #[test]
    fn the_pool_is_bounded_by_bytes_and_reuses_large_buffers() {
        let mut p = BufPool::default();
        p.give(Vec::with_capacity(512 * 1024));
        let b = p.take();
        assert!(b.capacity() >= 512 * 1024, "a large output buffer is reused, not regrown");
        assert_eq!(p.bytes(), 0);
        p.give(Vec::with_capacity(POOL_BUF_MAX + 1));
        assert_eq!(p.bytes(), 0, "an oversized buffer is freed");
        for _ in 0..100 {
            p.give(Vec::with_capacity(POOL_BUF_MAX));
        }
        assert!(p.bytes() <= POOL_BYTES);
        assert_eq!(p.bytes(), POOL_BYTES / POOL_BUF_MAX * POOL_BUF_MAX);
    }
}
