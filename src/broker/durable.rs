//! The worker side of the durable log: what the shard writes, and the answers that wait for it.
//!
//! Runs on the owning worker, inside its shard. Records are gathered into one
//! [`SyncJob`] per loop turn and handed to the worker's sync thread at the end of the turn
//! ([`Journal::flush`]); the thread reports back how far the log is on disk
//! ([`Journal::durable`]). Sequence numbers are known when a record is gathered (the sync
//! thread numbers them in arrival order from the same start), so a queue entry knows its record
//! at once and a drop names it.
//!
//! A RECEIPT waits for the disk through the owner barrier the session already sends: while a
//! record written on behalf of a connection is not yet durable, that connection's
//! `BarrierDone` is held here and released, in order, when the sync thread reports past it.
//! Connections that wrote nothing persistent are answered at once.
//!
//! A transaction's records (`ToOwner::Commit`) are gathered apart and written as one `Commit`
//! record: it is on disk whole or not at all. Every record of it has the commit's sequence.
//!
//! Bounds: bytes handed to the sync thread and not yet durable are counted in the shard's
//! memory tally, so `max_memory` pauses publishers while the disk is behind (backpressure,
//! never loss); the channel holds `SYNC_QUEUE` jobs, and a turn whose job does not fit keeps
//! gathering into it until there is room.

use super::mail::{FromOwner, Outlet};
use super::{ConnRef, FastMap, Message};
use crate::journal::payload::{DropRecord, MessageRecord, SubscriptionRecord};
use crate::journal::record::Kind;
use crate::journal::syncer::{Durable, SyncJob};
use crate::memory::Tally;
use crossbeam_channel::{Sender, TrySendError};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The record header that holds a scheduled message's time (never a header of a MESSAGE:
/// recovery takes it back into `Message::deliver_at`).
pub const DELIVER_AT: &str = "romp-deliver-at";

/// What every worker's log uses on disk, shared so that each owner can apply the limits to
/// the whole broker (written by the sync reports, read on persistent SENDs).
#[derive(Debug, Default)]
pub struct DiskGauge {
    pub bytes: Vec<AtomicU64>,
    pub free: AtomicU64,
}

impl DiskGauge {
    pub fn new(workers: usize) -> DiskGauge {
        DiskGauge { bytes: (0..workers).map(|_| AtomicU64::new(0)).collect(), free: AtomicU64::new(u64::MAX) }
    }

    pub fn total(&self) -> u64 {
        self.bytes.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }
}

/// The disk limits (`max_disk_bytes`, 0 = none; `min_free_disk`).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiskLimits {
    pub max_bytes: u64,
    pub min_free: u64,
}

/// Upper bounds (microseconds) of the group-commit latency histogram's buckets (one write and
/// its fdatasync); one bucket more counts the slower ones.
pub const SYNC_BUCKETS_US: [u64; 12] = [50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 50_000, 100_000, 500_000, 1_000_000];
/// Upper bounds of the records-per-group-commit histogram's buckets; one more for larger ones.
pub const BATCH_BUCKETS: [u64; 8] = [1, 2, 5, 10, 100, 1_000, 10_000, 100_000];

/// The bucket of `v` among `bounds` (upper bounds, ascending): the first bound not below it,
/// or `bounds.len()` above them all.
pub fn bucket(bounds: &[u64], v: u64) -> usize {
    bounds.partition_point(|&b| b < v)
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct JournalStats {
    pub records: u64,
    pub syncs: u64,
    pub disk_bytes: u64,
    pub segments: u64,
    pub last_sync_us: u64,
    pub max_sync_us: u64,
    pub disk_refused: u64,
    /// Group commits by latency (`SYNC_BUCKETS_US`, not cumulative) and their total.
    pub sync_buckets: [u64; SYNC_BUCKETS_US.len() + 1],
    pub sync_us_sum: u64,
    /// Group commits by records (`BATCH_BUCKETS`, not cumulative).
    pub batch_buckets: [u64; BATCH_BUCKETS.len() + 1],
}

pub struct Journal {
    tx: Sender<SyncJob>,
    job: SyncJob,
    /// The sequence the next record gets, and how far the log is durable.
    next: u64,
    durable: u64,
    /// The last record written on behalf of each connection not yet known durable.
    by_conn: FastMap<ConnRef, u64>,
    /// Barrier answers held until the log is durable up to their record: (record, worker, answer).
    held: VecDeque<(u64, usize, FromOwner)>,
    /// Bytes handed over and not yet durable, per job: (last record, bytes).
    unsynced: VecDeque<(u64, usize)>,
    tally: Tally,
    /// A transaction being gathered: its records, its messages, its reserved sequence.
    tx_job: Option<SyncJob>,
    buf: Vec<u8>,
    me: usize,
    gauge: Arc<DiskGauge>,
    limits: DiskLimits,
    pub stats: JournalStats,
}

impl Journal {
    /// `next`: the sequence the log's next record gets (from recovery).
    /// The journal of worker `me`, whose log (already recovered) holds `footprint` (bytes and
    /// segments) and numbers its next record `next`.
    pub fn new(tx: Sender<SyncJob>, next: u64, me: usize, gauge: Arc<DiskGauge>, limits: DiskLimits, footprint: (u64, usize)) -> Journal {
        // What the log holds counts against max_disk_bytes from the start, not from the first
        // group commit.
        if let Some(b) = gauge.bytes.get(me) {
            b.store(footprint.0, Ordering::Relaxed);
        }
        let stats = JournalStats { disk_bytes: footprint.0, segments: footprint.1 as u64, ..JournalStats::default() };
        Journal {
            tx,
            job: SyncJob::default(),
            next,
            durable: next - 1,
            by_conn: FastMap::default(),
            held: VecDeque::new(),
            unsynced: VecDeque::new(),
            tally: Tally::default(),
            tx_job: None,
            buf: Vec::new(),
            me,
            gauge,
            limits,
            stats,
        }
    }

    /// Count unsynced bytes into `t` (the shard's held bytes).
    pub fn set_tally(&mut self, t: Tally) {
        self.tally = t;
    }

    /// Why a persistent SEND cannot be taken now, if the disk limits say so.
    pub fn disk_full(&mut self) -> Option<String> {
        let (used, free) = (self.gauge.total(), self.gauge.free.load(Ordering::Relaxed));
        let why = if self.limits.max_bytes > 0 && used >= self.limits.max_bytes {
            format!("the durable log holds {used} bytes, its limit (max_disk_bytes = {})", self.limits.max_bytes)
        } else if free < self.limits.min_free {
            format!("{free} bytes free on the durable log's disk, under min_free_disk = {}", self.limits.min_free)
        } else {
            return None;
        };
        self.stats.disk_refused += 1;
        Some(why)
    }

    fn push(&mut self, kind: Kind, live: u64, conn: Option<ConnRef>) -> u64 {
        let job = self.tx_job.as_mut().unwrap_or(&mut self.job);
        job.push(kind, &self.buf);
        job.live += live;
        if self.tx_job.is_some() {
            // Every record of a transaction is the commit record's.
            return self.next;
        }
        let seq = self.next;
        self.next += 1;
        if let Some(c) = conn {
            self.by_conn.insert(c, seq);
        }
        seq
    }

    /// Log a persistent message; returns its record.
    pub fn message(&mut self, msg: &Message, conn: Option<ConnRef>) -> u64 {
        self.copy(msg, &msg.destination, 0, conn)
    }

    /// Log a persistent message under `dest` (a durable subscription's key); returns its record.
    pub fn message_as(&mut self, msg: &Message, dest: &str, conn: Option<ConnRef>) -> u64 {
        self.copy(msg, dest, 0, conn)
    }

    /// Log that a durable subscription was defined (returns its record) or removed (`old`:
    /// the record that defined it, now dead, as are `gone`, the records of what it kept).
    #[allow(clippy::too_many_arguments)]
    pub fn subscription(
        &mut self,
        define: bool,
        topic: &str,
        identity: &str,
        name: &str,
        old: u64,
        gone: &[u64],
        conn: Option<ConnRef>,
    ) -> u64 {
        self.buf.clear();
        SubscriptionRecord { define, identity, name, dest: topic }.encode(&mut self.buf);
        let seq = self.push(Kind::Subscription, u64::from(define), conn);
        let job = self.tx_job.as_mut().unwrap_or(&mut self.job);
        job.kills.extend(gone.iter().copied().chain((old != 0).then_some(old)));
        seq
    }

    /// Compaction: copy a durable subscription's defining record forward (see [`Journal::relog`]).
    pub fn relog_subscription(&mut self, topic: &str, identity: &str, name: &str, old: u64) -> u64 {
        self.subscription(true, topic, identity, name, old, &[], None)
    }

    /// Compaction: write again a message whose record `old` is in a segment to be retired,
    /// keeping its place (`order`); returns the new record.
    pub fn relog(&mut self, msg: &Message, dest: &str, old: u64, order: u64) -> u64 {
        let seq = self.copy(msg, dest, order, None);
        self.job.kills.push(old);
        seq
    }

    fn copy(&mut self, msg: &Message, dest: &str, order: u64, conn: Option<ConnRef>) -> u64 {
        self.buf.clear();
        let mut headers: Vec<(&str, &str)> = msg.headers.iter().map(|(k, v)| (&**k, &**v)).collect();
        if let Some(c) = &msg.custom_id {
            headers.push(("message-id", c));
        }
        // A scheduled message keeps its time (and is scheduled again after a restart).
        let at = (msg.deliver_at != 0).then(|| msg.deliver_at.to_string());
        if let Some(at) = &at {
            headers.push((DELIVER_AT, at));
        }
        MessageRecord { dest, id: msg.id, expires: msg.expires, order, headers, body: &msg.body }.encode(&mut self.buf);
        self.push(Kind::Message, 1, conn)
    }

    /// Log that these messages (id, record) left `dest`.
    pub fn drops(&mut self, dest: &str, gone: &[(u64, u64)], conn: Option<ConnRef>) {
        if gone.is_empty() {
            return;
        }
        self.buf.clear();
        DropRecord { dest, ids: gone.iter().map(|g| g.0).collect() }.encode(&mut self.buf);
        self.push(Kind::Drop, 0, conn);
        let job = self.tx_job.as_mut().unwrap_or(&mut self.job);
        job.kills.extend(gone.iter().map(|g| g.1));
    }

    /// Start gathering a transaction (its records become one `Commit` record).
    pub fn begin(&mut self) {
        self.tx_job = Some(SyncJob::default());
    }

    /// End it: one `Commit` record holding what it gathered, written for `conn`.
    pub fn end(&mut self, conn: ConnRef) {
        let Some(t) = self.tx_job.take() else { return };
        if t.count == 0 {
            return;
        }
        self.buf.clear();
        self.buf.extend_from_slice(&t.records);
        self.job.kills.extend(t.kills);
        self.push(Kind::Commit, t.live, Some(conn));
    }

    /// The record a transaction being gathered will have (entries made inside it point there).
    pub fn in_tx(&self) -> bool {
        self.tx_job.is_some()
    }

    /// Answer `conn`'s barrier now, or hold it until what it wrote is on disk.
    /// `conn`'s next barrier also waits for record `seq` (a duplicate it sent of a message
    /// logged for someone else).
    pub fn depend(&mut self, conn: ConnRef, seq: u64) {
        if seq > self.durable {
            let e = self.by_conn.entry(conn).or_insert(seq);
            *e = (*e).max(seq);
        }
    }

    /// The last record numbered (0 before any).
    pub fn last_record(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    pub fn barrier(&mut self, conn: ConnRef, out: &mut impl Outlet) {
        let answer = FromOwner::BarrierDone { conn, owner: self.me as u16 };
        match self.by_conn.get(&conn) {
            Some(&seq) if seq > self.durable => self.held.push_back((seq, conn.worker as usize, answer)),
            _ => out.answer(conn.worker as usize, answer),
        }
    }

    /// End of a loop turn: hand what was gathered to the sync thread (if it has room; if not,
    /// the next turn's records join this job).
    pub fn flush(&mut self) {
        if self.job.is_empty() {
            return;
        }
        let job = std::mem::take(&mut self.job);
        let bytes = job.records.len();
        match self.tx.try_send(job) {
            Ok(()) => {
                self.tally.add(bytes);
                self.unsynced.push_back((self.next - 1, bytes));
            }
            Err(TrySendError::Full(j)) | Err(TrySendError::Disconnected(j)) => self.job = j,
        }
    }

    /// Records gathered and not handed over yet.
    pub fn waiting(&self) -> bool {
        !self.job.is_empty()
    }

    /// The sync thread's report: release what waited for it.
    pub fn durable(&mut self, d: Durable, out: &mut impl Outlet) {
        self.durable = self.durable.max(d.upto);
        self.stats.records += d.records;
        self.stats.syncs += 1;
        self.stats.disk_bytes = d.disk_bytes;
        self.stats.segments = d.segments as u64;
        self.stats.last_sync_us = d.sync_us;
        self.stats.max_sync_us = self.stats.max_sync_us.max(d.sync_us);
        self.stats.sync_buckets[bucket(&SYNC_BUCKETS_US, d.sync_us)] += 1;
        self.stats.sync_us_sum += d.sync_us;
        self.stats.batch_buckets[bucket(&BATCH_BUCKETS, d.records)] += 1;
        if let Some(b) = self.gauge.bytes.get(self.me) {
            b.store(d.disk_bytes, Ordering::Relaxed);
        }
        self.gauge.free.store(d.free, Ordering::Relaxed);
        while self.unsynced.front().is_some_and(|(last, _)| *last <= self.durable) {
            if let Some((_, bytes)) = self.unsynced.pop_front() {
                self.tally.sub(bytes);
            }
        }
        while self.held.front().is_some_and(|(seq, _, _)| *seq <= self.durable) {
            if let Some((_, w, answer)) = self.held.pop_front() {
                out.answer(w, answer);
            }
        }
        let durable = self.durable;
        if self.by_conn.len() > 256 {
            self.by_conn.retain(|_, s| *s > durable);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::AdminOp;
    use crate::broker::mail::{Seqs, ToOwner};
    use crate::broker::policy::Policies;
    use crate::broker::queue::SettleKind;
    use crate::broker::shard::Shard;
    use crate::broker::{AckMode, Publisher, SubKey};
    use crate::config::Config;
    use crate::journal::disk::SimDisk;
    use crate::journal::log::Log;
    use crate::journal::replay::Replay;
    use crate::journal::syncer::sub_records;
    use crossbeam_channel::Receiver;

    /// Collects what the shard sends.
    #[derive(Default)]
    struct Out {
        answers: Vec<FromOwner>,
        requests: Vec<ToOwner>,
    }

    impl Outlet for Out {
        fn me(&self) -> usize {
            0
        }
        fn workers(&self) -> usize {
            1
        }
        fn to_owner(&mut self, _: usize, m: ToOwner) {
            self.requests.push(m)
        }
        fn answer(&mut self, _: usize, m: FromOwner) {
            self.answers.push(m)
        }
    }

    fn durable_name(rng: &mut crate::rng::Rng) -> &'static str {
        ["n0", "n1"][(rng.next_u64() % 2) as usize]
    }

    /// A one-worker shard with a journal, the sync thread's end of its channel, and a log on a
    /// simulated disk (`seed`, `segment` bytes per segment).
    fn journaled(cfg: &Config, seed: u64, segment: u64) -> (Shard, Receiver<SyncJob>, Log<SimDisk>) {
        let mut shard = Shard::new(Arc::new(Policies::new(cfg, 1)), 1, 0);
        let (tx, rx) = crossbeam_channel::bounded(1024);
        shard.set_journal(Journal::new(tx, 1, 0, Arc::new(DiskGauge::new(1)), DiskLimits::default(), (0, 0)));
        let (log, _) = Log::open(SimDisk::new(seed), segment).unwrap();
        (shard, rx, log)
    }

    fn conn(slot: u32) -> ConnRef {
        ConnRef { worker: 0, slot, gen: 1 }
    }

    /// The sync thread, played inline: every job handed over is appended and committed.
    fn sync(rx: &Receiver<SyncJob>, log: &mut Log<SimDisk>) -> Option<Durable> {
        let mut any = false;
        let (mut live, mut kills) = (0, Vec::new());
        for job in rx.try_iter() {
            for (k, p) in sub_records(&job.records).unwrap() {
                log.append(k, p);
            }
            live += job.live;
            kills.extend(job.kills);
            any = true;
        }
        if !any {
            return None;
        }
        let upto = log.commit().unwrap().unwrap_or(log.next_seq() - 1);
        log.account(live, &kills);
        log.collect().unwrap();
        let (disk_bytes, segments) = log.footprint();
        Some(Durable { upto, disk_bytes, segments, relog_below: log.relog_below().unwrap_or(0), ..Durable::default() })
    }

    /// Random sends (persistent or not, alone or in transactions), client and auto
    /// subscriptions, acks, nacks, rejects (to the dead-letter queue), bounces, unsubscribes,
    /// purges and redelivery limits against a shard with a journal on a simulated disk; then a
    /// crash. What the log recovers is exactly the persistent messages the shard held at the
    /// last sync, queue by queue: every path by which a message leaves logs its drop, and
    /// every path by which one arrives logs it.
    #[test]
    fn the_log_always_recovers_what_the_shard_holds() {
        for seed in 0..60u64 {
            let mut rng = crate::rng::Rng::new(seed);
            let mut cfg = Config { max_redeliveries: 2, ..Config::default() };
            cfg.data_dir = String::new();
            let (mut shard, rx, mut log) = journaled(&cfg, seed, 16 * 1024);
            let mut out = Out::default();
            // A topic too: its durable subscriptions (two names) are queues of their own.
            let queues = ["/queue/p0", "/queue/p1", "/topic/t"];
            // Deliveries the test's consumers hold: (key, dest, seq).
            let mut held: Vec<(SubKey, Arc<str>, u64)> = Vec::new();
            let mut subs: Vec<(SubKey, Arc<str>)> = Vec::new();
            let mut id = 0u64;
            for _turn in 0..150 {
                for _ in 0..1 + (rng.next_u64() % (5)) {
                    let dest: Arc<str> = Arc::from(queues[(rng.next_u64() % (3)) as usize]);
                    let mut message = |rng: &mut crate::rng::Rng, dest: &Arc<str>| {
                        id += 1;
                        let mut headers: Vec<(Box<str>, Box<str>)> = vec![("n".into(), id.to_string().into())];
                        if (rng.next_u64() % (3)) > 0 {
                            headers.push(("persistent".into(), "true".into()));
                        }
                        let m = Message::new(id, dest.clone(), headers, format!("body {id}").into_bytes().into());
                        ToOwner::Publish { msg: Arc::new(m), from: Publisher::Conn(conn(1)), receipt: None, create: true }
                    };
                    let req = match rng.next_u64() % 12 {
                        0..=3 => message(&mut rng, &dest),
                        4 => ToOwner::Commit {
                            from: conn(1),
                            ops: (0..1 + (rng.next_u64() % (3))).map(|_| message(&mut rng, &dest)).collect(),
                        },
                        5 if subs.len() < 3 => {
                            let key = SubKey { conn: conn(2 + subs.len() as u32), serial: 1 };
                            let mode = if (rng.next_u64() % (3)) == 0 { AckMode::Auto } else { AckMode::ClientIndividual };
                            subs.push((key, dest.clone()));
                            let durable = (&*dest == "/topic/t").then(|| Box::new(("app".into(), durable_name(&mut rng).into())));
                            ToOwner::Subscribe {
                                dest,
                                key,
                                mode,
                                prefetch: 2,
                                filter: None,
                                consumer: Default::default(),
                                barrier: false,
                                durable,
                                create: true,
                            }
                        }
                        6 if !subs.is_empty() => {
                            let (key, dest) = subs.swap_remove((rng.next_u64() % (subs.len()) as u64) as usize);
                            held.retain(|h| h.0 != key);
                            ToOwner::Unsubscribe { dest, key }
                        }
                        7 if &*dest == "/topic/t" && (rng.next_u64() % 3) == 0 => {
                            // Delete a durable subscription (its consumer, if any, detaches first).
                            let name = durable_name(&mut rng);
                            ToOwner::Forget { dest: None, from: conn(9), identity: "app".into(), name: name.into() }
                        }
                        7 => ToOwner::Admin { from: conn(9), op: AdminOp::Purge { dest, action: "purge" } },
                        _ if !held.is_empty() => {
                            let (key, dest, seq) = held.swap_remove((rng.next_u64() % (held.len()) as u64) as usize);
                            let kind = match rng.next_u64() % 6 {
                                0 => SettleKind::Requeue,
                                1 => SettleKind::Reject,
                                _ => SettleKind::Ack,
                            };
                            let mut seqs = Seqs::new();
                            seqs.push(seq);
                            let settle = ToOwner::Settle { dest, key, seqs, kind };
                            if (rng.next_u64() % (4)) == 0 {
                                ToOwner::Commit { from: key.conn, ops: vec![settle] }
                            } else {
                                settle
                            }
                        }
                        _ => continue,
                    };
                    shard.handle(req, &mut out);
                    // Deliveries reach the test's consumers; dead letters their queue.
                    while !out.answers.is_empty() || !out.requests.is_empty() {
                        for a in std::mem::take(&mut out.answers) {
                            if let FromOwner::QueueMessage { key, msg, seq, retained, deliveries, .. } = a {
                                if !subs.iter().any(|s| s.0 == key) {
                                    continue; // for a subscription the test already removed
                                }
                                if retained {
                                    held.push((key, msg.destination.clone(), seq));
                                } else if (rng.next_u64() % (4)) == 0 {
                                    // An auto delivery whose subscription went away meanwhile.
                                    let dest = msg.destination.clone();
                                    shard.handle(ToOwner::Bounce { dest, key, msg, seq, deliveries }, &mut out);
                                }
                            }
                        }
                        for r in std::mem::take(&mut out.requests) {
                            shard.handle(r, &mut out);
                        }
                    }
                }
                shard.flush_journal();
                if (rng.next_u64() % (3)) > 0 {
                    if let Some(d) = sync(&rx, &mut log) {
                        shard.durable(d, &mut out);
                    }
                }
            }
            shard.flush_journal();
            sync(&rx, &mut log);
            let mut disk = log.into_disk();
            disk.crash();
            let (_, records) = Log::open(disk, 16 * 1024).unwrap();
            let mut replay = Replay::default();
            for r in &records {
                replay.apply(r).unwrap();
            }
            let durables = ["n0", "n1"].map(|n| crate::journal::payload::durable_key("/topic/t", "app", n));
            let dlqs = ["/queue/DLQ.p0", "/queue/DLQ.p1", "/queue/DLQ.t"].map(String::from);
            for q in queues[..2].iter().map(|q| q.to_string()).chain(dlqs).chain(durables.clone()) {
                let logged: Vec<u64> = replay.destinations.get(&q).map(|m| m.keys().copied().collect()).unwrap_or_default();
                assert_eq!(logged, shard.persistent_ids(&q), "seed {seed}: {q:?}");
            }
            let subs: Vec<String> = replay.subscriptions.keys().map(|k| crate::journal::payload::durable_key(&k.0, &k.1, &k.2)).collect();
            let live: Vec<String> = durables.iter().filter(|k| shard.has_durable(k)).cloned().collect();
            assert_eq!(subs, live, "seed {seed}: durable subscriptions");
        }
    }

    /// Two messages nobody acknowledges, among a steady stream that is consumed: compaction
    /// copies them forward so the log stays a few segments long, and a crash recovers them in
    /// their place (first), with the messages not yet acknowledged.
    #[test]
    fn unacknowledged_messages_do_not_pin_the_log() {
        pinned_messages_are_copied_forward(false);
    }

    /// The same for a durable topic subscription, whose messages are logged under its key.
    #[test]
    fn unacknowledged_messages_of_a_durable_subscription_do_not_pin_the_log() {
        pinned_messages_are_copied_forward(true);
    }

    fn pinned_messages_are_copied_forward(durable: bool) {
        let cfg = Config { data_dir: String::new(), ..Config::default() };
        let (mut shard, rx, mut log) = journaled(&cfg, 3, 8 * 1024);
        let mut out = Out::default();
        let key = SubKey { conn: conn(2), serial: 1 };
        let dest: Arc<str> = Arc::from(if durable { "/topic/pin" } else { "/queue/pin" });
        let logged_as = if durable { crate::journal::payload::durable_key(&dest, "app", "pin") } else { dest.to_string() };
        let publish = |shard: &mut Shard, out: &mut Out, id: u64| {
            let headers: Vec<(Box<str>, Box<str>)> = vec![("persistent".into(), "true".into())];
            let m = Message::new(id, dest.clone(), headers, vec![b'x'; 300].into());
            shard.handle(ToOwner::Publish { msg: Arc::new(m), from: Publisher::Conn(conn(1)), receipt: None, create: true }, out);
        };
        let sub = durable.then(|| Box::new((Box::from("app"), Box::from("pin"))));
        if durable {
            // Defined first (a topic keeps nothing for nobody), then detached.
            let (d, mode) = (dest.clone(), AckMode::ClientIndividual);
            shard.handle(
                ToOwner::Subscribe {
                    dest: d,
                    key,
                    mode,
                    prefetch: 40,
                    filter: None,
                    consumer: Default::default(),
                    barrier: false,
                    durable: sub.clone(),
                    create: true,
                },
                &mut out,
            );
            shard.handle(ToOwner::Unsubscribe { dest: dest.clone(), key }, &mut out);
        }
        publish(&mut shard, &mut out, 1);
        publish(&mut shard, &mut out, 2);
        shard.handle(
            ToOwner::Subscribe {
                dest: dest.clone(),
                key,
                mode: AckMode::ClientIndividual,
                prefetch: 40,
                filter: None,
                consumer: Default::default(),
                barrier: false,
                durable: sub,
                create: true,
            },
            &mut out,
        );
        out.answers.clear(); // messages 1 and 2: held, never acknowledged
        let mut most = 0;
        // Acknowledged some 30 messages late, so that drops land in later segments than their
        // messages and every segment depends on the one before.
        let mut window = std::collections::VecDeque::new();
        for id in 3..2000u64 {
            publish(&mut shard, &mut out, id);
            for a in std::mem::take(&mut out.answers) {
                if let FromOwner::QueueMessage { seq, .. } = a {
                    window.push_back(seq);
                }
            }
            while window.len() > 30 {
                let mut seqs = Seqs::new();
                seqs.extend(window.pop_front());
                shard.handle(ToOwner::Settle { dest: dest.clone(), key, seqs, kind: SettleKind::Ack }, &mut out);
            }
            shard.flush_journal();
            if let Some(d) = sync(&rx, &mut log) {
                most = most.max(d.segments);
                shard.durable(d, &mut out);
            }
        }
        // 2,000 records of 300 bytes and their drops are some 90 segments of 8 KiB.
        assert!(log.footprint().1 <= 6 && most <= 8, "{} segments at the end, {most} at most", log.footprint().1);
        let mut disk = log.into_disk();
        disk.crash();
        let (_, records) = Log::open(disk, 8 * 1024).unwrap();
        let mut replay = Replay::default();
        for r in &records {
            replay.apply(r).unwrap();
        }
        let held = replay.destinations.get(&logged_as).unwrap();
        let mut order: Vec<(u64, u64)> = held.iter().map(|(id, m)| (m.seq, *id)).collect();
        order.sort();
        // The two pinned ones first, where they arrived, then the window not yet acknowledged.
        let ids: Vec<u64> = order.iter().map(|o| o.1).collect();
        assert_eq!(ids, shard.persistent_ids(&logged_as));
        assert_eq!(&ids[..3], &[1, 2, 1970]);
        // Copied many times over, they keep the places of the log's first two records.
        // (After the subscription's own record, for a durable subscription.)
        let first = if durable { 2 } else { 1 };
        assert_eq!((held[&1].seq, held[&2].seq), (first, first + 1));
        assert_eq!(replay.subscriptions.len(), usize::from(durable));
    }

    /// A RECEIPT waits for the disk: the barrier of a connection that wrote a persistent
    /// record is answered only when the sync thread reports past it; others at once.
    #[test]
    fn a_barrier_waits_for_the_records_its_connection_wrote() {
        let cfg = Config { data_dir: String::new(), ..Config::default() };
        let (mut shard, rx, mut log) = journaled(&cfg, 1, 16 * 1024);
        let mut out = Out::default();
        let headers: Vec<(Box<str>, Box<str>)> = vec![("persistent".into(), "true".into())];
        let m = Message::new(1, Arc::from("/queue/r"), headers, Box::from(&b"x"[..]));
        shard.handle(ToOwner::Publish { msg: Arc::new(m), from: Publisher::Conn(conn(1)), receipt: None, create: true }, &mut out);
        let m = Message::new(2, Arc::from("/queue/r"), Vec::new(), Box::from(&b"y"[..]));
        shard.handle(ToOwner::Publish { msg: Arc::new(m), from: Publisher::Conn(conn(2)), receipt: None, create: true }, &mut out);
        shard.handle(ToOwner::Barrier { from: conn(1) }, &mut out);
        shard.handle(ToOwner::Barrier { from: conn(2) }, &mut out);
        let done = |out: &Out| -> Vec<u32> {
            out.answers.iter().filter_map(|a| if let FromOwner::BarrierDone { conn, .. } = a { Some(conn.slot) } else { None }).collect()
        };
        assert_eq!(done(&out), vec![2], "only the memory-only connection is answered before the sync");
        shard.flush_journal();
        let d = sync(&rx, &mut log).unwrap();
        assert_eq!(done(&out), vec![2]);
        shard.durable(d, &mut out);
        assert_eq!(done(&out), vec![2, 1]);
    }

    /// A duplicate's RECEIPT means what the original's does: a connection that sent only a
    /// duplicate (by `dedup-id`) of a persistent message not yet on disk waits for its record.
    #[test]
    fn a_duplicate_waits_for_the_original_record() {
        let cfg = Config { data_dir: String::new(), ..Config::default() };
        let (mut shard, rx, mut log) = journaled(&cfg, 1, 16 * 1024);
        let mut out = Out::default();
        let headers = || -> Vec<(Box<str>, Box<str>)> { vec![("persistent".into(), "true".into()), ("dedup-id".into(), "a".into())] };
        for (id, c) in [(1, 1), (2, 2)] {
            let m = Message::new(id, Arc::from("/queue/r"), headers(), Box::from(&b"x"[..]));
            shard.handle(ToOwner::Publish { msg: Arc::new(m), from: Publisher::Conn(conn(c)), receipt: None, create: true }, &mut out);
        }
        assert_eq!(shard.queue_depth("/queue/r"), Some(1), "enqueued once");
        shard.handle(ToOwner::Barrier { from: conn(2) }, &mut out);
        let done = |out: &Out| out.answers.iter().any(|a| matches!(a, FromOwner::BarrierDone { conn, .. } if conn.slot == 2));
        assert!(!done(&out), "answered before the original was on disk");
        shard.flush_journal();
        let d = sync(&rx, &mut log).unwrap();
        shard.durable(d, &mut out);
        assert!(done(&out));
        // Once it is on disk, a later duplicate's barrier is answered at once.
        let m = Message::new(3, Arc::from("/queue/r"), headers(), Box::from(&b"x"[..]));
        shard.handle(ToOwner::Publish { msg: Arc::new(m), from: Publisher::Conn(conn(3)), receipt: None, create: true }, &mut out);
        shard.handle(ToOwner::Barrier { from: conn(3) }, &mut out);
        assert!(out.answers.iter().any(|a| matches!(a, FromOwner::BarrierDone { conn, .. } if conn.slot == 3)));
        assert_eq!(shard.queue_depth("/queue/r"), Some(1));
    }
}
