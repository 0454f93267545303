//! The sans-io half of a worker: its context, shard, connections, stats round and links, and
//! how it applies what arrives over the bus. No `Poll`, no listeners, no socket I/O: the
//! [`super::Worker`] loop feeds it events and bytes, and `romp::sim` drives several of them in
//! one thread with a seeded scheduler.
//!
//! Runs on the worker's thread (or the simulation's). Invariant: every bus message for this
//! worker is applied here, so the thread loop and the simulation cannot disagree on what a
//! message does.

use crate::broker::shard::Shard;
use crate::conn::{deliver, Conn, Ctx};
use crate::metrics;
use slab::Slab;
use std::sync::Arc;
use std::time::Instant;

/// What one worker owns besides its poll loop.
pub struct Node {
    pub ctx: Ctx,
    pub shard: Shard,
    pub conns: Slab<Conn>,
    /// Worker 0 with `stats = true`: the periodic stats message being gathered.
    pub stats: metrics::Collector,
    /// Upstream links whose local destination this worker owns, and each one's next tick.
    pub links: Vec<(crate::link::Link, Option<Instant>)>,
}

impl Node {
    pub fn new(mut ctx: Ctx, mut shard: Shard, conns: Slab<Conn>) -> Node {
        let gauge = &ctx.env.shared.memory;
        shard.set_tally(gauge.held(ctx.worker), gauge.arrived(ctx.worker));
        ctx.outbox.sent = gauge.sent(ctx.worker);
        Node { ctx, shard, conns, stats: metrics::Collector::default(), links: Vec::new() }
    }

    /// The `max_memory` watch, once per turn: recount this worker's connections (at most every
    /// [`crate::memory::RECOUNT`], or now if `force`), let the gauge move the alarm, and follow
    /// it: raised, publishers are held as they send (see `session::hold_for_memory`) and
    /// upstream links stop offering; cleared, every publisher this worker held is let go.
    pub fn watch_memory(&mut self, force: bool) {
        let now = self.ctx.time.now;
        let gauge = &self.ctx.env.shared.memory;
        // A worker that paused publishers on its own count recounts soon (a tenth of the usual
        // interval; not every turn, which would walk every connection per turn while busy):
        // they go on if the server is still under the limit.
        let paused_here = !self.ctx.mem.held.is_empty() && !self.ctx.mem.alarm;
        let due = self.ctx.mem.next_recount.map(|t| if paused_here { t - crate::memory::RECOUNT * 9 / 10 } else { t });
        if force || due.is_none_or(|t| now >= t) {
            self.ctx.mem.next_recount = Some(now + crate::memory::RECOUNT);
            let conns: usize = self.conns.iter().map(|(_, c)| c.footprint()).sum::<usize>() + self.ctx.turn.pool.bytes();
            gauge.set_conns(self.ctx.worker, conns as u64);
            // What was read since the last recount is in the figure now (or held by a
            // destination, which counts it at once).
            self.ctx.mem.sent = 0;
            self.ctx.mem.stale = false;
            let (used, limit, workers) = (gauge.used(), gauge.limit(), self.ctx.outbox.workers().max(1) as u64);
            self.ctx.mem.budget = (limit.saturating_sub(used) / workers).max(crate::conn::ctx::MEMORY_QUANTUM);
        }
        match gauge.check() {
            Some(crate::memory::Alarm::Raised { used }) => log::warn!(
                "memory alarm: {} MiB counted, max_memory is {} MiB; publishers are paused until it is under {} MiB",
                used >> 20,
                gauge.limit() >> 20,
                (gauge.limit() / 100 * crate::memory::LOW_WATERMARK_PCT) >> 20
            ),
            Some(crate::memory::Alarm::Cleared { used }) => {
                log::warn!("memory alarm cleared: {} MiB counted; publishers resume", used >> 20)
            }
            None => {}
        }
        let alarm = gauge.alarm();
        if alarm != self.ctx.mem.alarm {
            self.ctx.mem.alarm = alarm;
            self.shard.memory_alarm = alarm;
            if alarm {
                // Connections sitting on a large partial frame with nothing more to read are
                // held too: the memory they keep is then subject to block_timeout like any
                // paused publisher's, instead of keeping the alarm up with no deadline.
                for (_, c) in self.conns.iter_mut() {
                    if c.phase == crate::conn::Phase::Open
                        && c.held.is_none()
                        && !c.is_closing()
                        && c.partial_bytes() >= crate::conn::session::PARTIAL_HOLD
                    {
                        crate::conn::session::hold_partial(c, &mut self.ctx);
                    }
                }
            }
        }
        // Publishers paused by the alarm, or by this worker's own count between two looks:
        // let them go once neither holds (they are held again at once if still over).
        if !self.ctx.mem.over() && !self.ctx.mem.held.is_empty() {
            for (slot, gen) in std::mem::take(&mut self.ctx.mem.held) {
                if let Some(c) = self.conns.get_mut(slot as usize).filter(|c| c.me.gen == gen) {
                    if c.held.as_ref().is_some_and(|h| h.cause == crate::conn::HoldCause::Memory) {
                        c.held = None;
                        crate::conn::want_read(c, &mut self.ctx);
                    }
                }
            }
        }
    }

    /// Run local work (own-shard requests, own deliveries, returned credits) until none is left.
    pub fn settle(&mut self) {
        loop {
            self.run_local();
            if self.ctx.turn.credits.is_empty() {
                return;
            }
            self.ctx.flush_credits();
        }
    }

    /// Local work that must not wait for the next poll event.
    pub fn has_local_work(&self) -> bool {
        !self.ctx.turn.dirty.is_empty()
            || !self.ctx.turn.credits.is_empty()
            || !self.ctx.outbox.local_data.is_empty()
            || !self.ctx.outbox.local_ctrl.is_empty()
    }

    /// A message for this worker: reconfiguration and its own stats are handled here, the rest
    /// concerns connections.
    pub fn ctrl(&mut self, m: crate::bus::ToWorker) {
        match m {
            crate::bus::ToWorker::Reconfigure(rc) => self.reconfigure(&rc),
            crate::bus::ToWorker::InjectPanic => panic!("injected fault in worker {}", self.ctx.worker),
            crate::bus::ToWorker::Durable(d) => self.shard.durable(d, &mut self.ctx.outbox),
            crate::bus::ToWorker::StatsPart { to: crate::broker::StatsAsker::Worker(_), part } => {
                let env = self.ctx.env.metrics_env();
                if let Some(body) = self.stats.add(*part, env) {
                    self.publish_stats(body);
                }
            }
            m => deliver::handle(m, &mut self.conns, &mut self.ctx),
        }
    }

    /// Swap in a new configuration, policy table and users. Settings that need a restart were
    /// already left unchanged by the sender.
    fn reconfigure(&mut self, rc: &crate::bus::Reconfig) {
        self.ctx.env.cfg = rc.cfg.clone();
        self.ctx.env.limits = rc.cfg.limits();
        self.ctx.env.auth = rc.auth.clone();
        self.ctx.env.policies = rc.policies.clone();
        self.ctx.env.tls = rc.tls.clone();
        self.shard.set_policies(rc.policies.clone());
        log::debug!("worker {}: configuration generation {} in force", self.ctx.worker, rc.policies.gen);
    }

    /// A request for this worker as an owner: destinations go to the shard; stats are answered
    /// here, where the connection count is known.
    pub fn owner_request(&mut self, m: crate::bus::ToOwner) {
        match m {
            crate::bus::ToOwner::Admin { from, op: crate::admin::AdminOp::Perms { target, change, acl } } => {
                let reply = crate::conn::admin::apply_perms(&target, &change, &acl, &mut self.ctx);
                let answer = crate::bus::FromOwner::AdminResult { conn: from, reply };
                self.ctx.outbox.to_worker(from.worker as usize, answer.into());
            }
            crate::bus::ToOwner::Stats { from } => {
                self.ctx.stats.snapshots += 1;
                let (destinations, truncated) = self.shard.snapshot(metrics::MAX_LISTED);
                let part = metrics::WorkerSnapshot {
                    worker: self.ctx.worker,
                    // Client sessions: an HTTP request (this very scrape, a health check) is
                    // not one.
                    connections: self
                        .conns
                        .iter()
                        .filter(|(_, c)| {
                            !matches!(c.web.as_deref(), Some(crate::conn::web::Web { mode: crate::conn::web::Mode::Http { .. }, .. }))
                        })
                        .count(),
                    stats: self.ctx.stats,
                    shard: self.shard.stats,
                    destinations,
                    truncated,
                    links: self.links.iter().map(|(l, _)| l.info()).collect(),
                    timers: self.ctx.time.timers.len(),
                    journal: self.shard.journal.as_ref().map(|j| j.stats),
                    durable_subscriptions: self.shard.durable_subscriptions(),
                    scheduled: self.shard.scheduled_len(),
                    wildcard_subscriptions: self.ctx.wild.len(),
                    backlog: self.ctx.outbox.backlog_len(),
                    by_transport: {
                        let mut v: Vec<(&'static str, usize)> = Vec::new();
                        for (_, c) in self.conns.iter() {
                            if matches!(c.web.as_deref(), Some(crate::conn::web::Web { mode: crate::conn::web::Mode::Http { .. }, .. })) {
                                continue;
                            }
                            let t = c.transport_label();
                            match v.iter_mut().find(|(k, _)| *k == t) {
                                Some((_, n)) => *n += 1,
                                None => v.push((t, 1)),
                            }
                        }
                        v
                    },
                    sessions: self
                        .conns
                        .iter()
                        .filter(|(_, c)| {
                            c.phase == crate::conn::Phase::Open
                                && !matches!(
                                    c.web.as_deref(),
                                    Some(crate::conn::web::Web { mode: crate::conn::web::Mode::Http { .. }, .. })
                                )
                        })
                        .take(metrics::MAX_LISTED_SESSIONS)
                        .map(|(_, c)| metrics::SessionInfo {
                            session: c.session_id(),
                            peer: c.who.peer.to_string(),
                            login: c.who.login.clone(),
                            transport: c.transport_label(),
                            version: c.version.as_str(),
                            subscriptions: c.session.subs.len(),
                            pending_bytes: c.pending_out(),
                        })
                        .collect(),
                };
                self.ctx.outbox.to_worker(from.worker(), crate::bus::ToWorker::StatsPart { to: from, part: Box::new(part) });
            }
            m => self.shard.handle(m, &mut self.ctx.outbox),
        }
    }

    /// Worker 0's stats timer: ask every worker for its numbers.
    pub fn start_stats(&mut self) {
        let workers = self.ctx.outbox.workers();
        self.stats.start(workers);
        let from = crate::broker::StatsAsker::Worker(self.ctx.worker as u16);
        for w in 0..workers {
            self.ctx.outbox.to_owner(w, crate::bus::ToOwner::Stats { from });
        }
    }

    /// Publish a stats body to the stat destinations (topics: whoever subscribes gets it).
    fn publish_stats(&mut self, body: String) {
        for dest in metrics::STAT_DESTINATIONS {
            let id = self.ctx.next_message_id();
            let headers = vec![("content-type".into(), "application/json".into())];
            let msg = crate::api::message(id, dest, headers, body.clone().into_bytes());
            let w = crate::broker::owner_of(dest, self.ctx.outbox.workers());
            let from = crate::broker::Publisher::Broker;
            self.ctx.outbox.to_owner(w, crate::bus::ToOwner::Publish { msg: Arc::new(msg), from, receipt: None, create: true });
        }
    }

    /// Process the local FIFOs until both are empty.
    pub fn run_local(&mut self) {
        loop {
            let mut did = false;
            while let Some(m) = self.ctx.outbox.local_data.pop_front() {
                self.owner_request(m);
                did = true;
            }
            while let Some(m) = self.ctx.outbox.local_ctrl.pop_front() {
                self.ctrl(m);
                did = true;
            }
            if !did {
                return;
            }
        }
    }

    /// Shutdown: every open connection starts closing (what it has been sent is still
    /// written; its subscriptions are released when it is flushed).
    pub fn begin_shutdown(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            if !conn.is_closing() {
                conn.begin_close(crate::conn::CloseReason::Shutdown);
                crate::conn::mark_dirty(conn, &mut self.ctx);
            }
        }
    }
}
