//! The destinations one worker owns, and how it applies [`ToOwner`] requests to them.
//!
//! Runs only on the owning worker. Topics keep their subscriptions (key and filter value) and
//! send one [`FromOwner::TopicMessage`] per worker that has subscribers; the receiving worker
//! fans out to its local subscribers. Queues dispatch each message to one consumer.
//!
//! # Invariants
//! - A topic with no subscribers and nothing retained, and a queue with nothing held and nobody
//!   subscribed, are removed, so the table holds only live state.
//! - A message is never dropped without someone hearing of it: a SEND to a full queue (or a
//!   full topic retention buffer) is answered with [`FromOwner::Rejected`] (`q flup`); a topic
//!   message with no subscriber and `min_delivery = 0` is counted in `unrouted`; expired and
//!   dead-lettered messages are counted, and a dead letter that cannot be stored is logged.
//! - Every message with an expiry that a queue or topic holds has an entry in `expiring`; the
//!   heap is compacted when stale entries outnumber live ones, so it stays proportional to what
//!   is held.

use super::durable::Journal;
use super::mail::{FromOwner, Outlet, ToOwner};
use super::policy::{Policies, Policy};
use super::queue::{DeadReason, Dispatch, Entry, Queue};
use super::wildcard::Trie;
use super::FastMap;
use super::{owner_of, DestKind, Message, Publisher, SubKey};
use crate::admin::{AdminOp, AdminReply};
use crate::config::{Overflow, Persistence};
use crate::journal::replay::StoredMessage;
use crate::journal::syncer::Durable;
use crate::memory::Tally;
use crate::stomp::ErrorWord;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};

mod dedup;
mod durable_subs;
mod schedule;
pub use dedup::{dedup_id, MAX_DEDUP_ID};
pub use durable_subs::DurableId;
use durable_subs::DurableSub;
use std::sync::Arc;

/// A topic message kept for later subscribers (`min_delivery`).
#[derive(Debug)]
struct Retained {
    seq: u64,
    msg: Arc<Message>,
    /// Deliveries still owed.
    remaining: u32,
}

#[derive(Debug)]
struct Topic {
    policy: Arc<Policy>,
    policy_gen: u64,
    /// Every subscription and its filter value.
    subs: FastMap<SubKey, Option<Box<str>>>,
    /// Subscriptions per worker, indexed by worker.
    per_worker: Vec<u32>,
    unfiltered: u32,
    by_filter: FastMap<Box<str>, u32>,
    retained: VecDeque<Retained>,
    retained_bytes: usize,
    /// The shard's held bytes (every change to `retained_bytes` is mirrored there).
    tally: Tally,
    enqueued: u64,
    delivered: u64,
    /// Durable subscriptions, each a queue of its own (see `durable_subs`).
    durables: BTreeMap<DurableId, DurableSub>,
}

impl Topic {
    fn new(policy: Arc<Policy>, gen: u64, workers: usize, tally: Tally) -> Topic {
        tally.add(super::queue::DEST_FOOTPRINT);
        Topic {
            policy,
            policy_gen: gen,
            subs: FastMap::default(),
            per_worker: vec![0; workers],
            unfiltered: 0,
            by_filter: FastMap::default(),
            retained: VecDeque::new(),
            retained_bytes: 0,
            tally,
            enqueued: 0,
            delivered: 0,
            durables: BTreeMap::new(),
        }
    }

    /// Set the bytes of retained messages, keeping the shard's tally in step.
    fn set_retained_bytes(&mut self, n: usize) {
        self.tally.sub(self.retained_bytes);
        self.tally.add(n);
        self.retained_bytes = n;
    }

    /// The filter value `msg` routes on, if the topic filters.
    fn value_of<'m>(&self, msg: &'m Message) -> Option<&'m str> {
        self.policy.filter_header.as_deref().and_then(|h| msg.header(h))
    }

    /// How many subscriptions receive `msg`.
    fn matching(&self, msg: &Message) -> u32 {
        if self.policy.filter_header.is_none() {
            return self.subs.len() as u32;
        }
        self.unfiltered + self.value_of(msg).and_then(|v| self.by_filter.get(v)).copied().unwrap_or(0)
    }

    fn is_idle(&self) -> bool {
        self.subs.is_empty() && self.retained.is_empty() && self.durables.is_empty()
    }
}

impl Drop for Topic {
    fn drop(&mut self) {
        self.tally.sub(self.retained_bytes + super::queue::DEST_FOOTPRINT);
    }
}

/// One destination on the console page and in the stats messages.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DestInfo {
    pub name: String,
    pub kind: &'static str,
    pub subscribers: usize,
    /// Queue: messages held. Topic: messages retained for later subscribers (and held for its
    /// durable subscriptions).
    pub depth: usize,
    /// Of `depth`: waiting for a consumer, and delivered but not acknowledged yet.
    pub ready: usize,
    pub unacked: usize,
    pub enqueued: u64,
    pub delivered: u64,
    /// Bytes of the messages held; client ACKs and NACKs; deliveries of redelivered messages;
    /// messages dead-lettered (or discarded without a dead-letter destination) and expired.
    /// A topic's are its durable subscriptions'.
    pub bytes: u64,
    pub acked: u64,
    pub nacked: u64,
    pub redelivered: u64,
    pub dead_lettered: u64,
    pub expired: u64,
    /// Listed in the periodic stats messages (the destination's `stats` key).
    #[serde(skip)]
    pub stats: bool,
}

/// Counters for the stats pages.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ShardStats {
    pub published: u64,
    pub unrouted: u64,
    pub rejected: u64,
    pub expired: u64,
    pub dead_lettered: u64,
    pub dead_discarded: u64,
    /// Times a queue went over its limits and held its producers (`overflow = "block"`).
    pub flow_blocks: u64,
    /// Messages dropped from the head of a full `overflow = "drop-head"` queue.
    pub overflow_dropped: u64,
    /// Messages taken for scheduled delivery; firings published; firings their destination
    /// refused (offered again later).
    pub scheduled: u64,
    pub scheduled_fired: u64,
    pub scheduled_retries: u64,
    /// Messages a temporary queue still held when its connection closed.
    pub temp_discarded: u64,
    /// SENDs acknowledged but not enqueued: their `dedup-id` was seen lately.
    pub deduplicated: u64,
}

/// What an admin purge removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purged {
    pub messages: usize,
    pub found: bool,
}

impl Purged {
    /// The admin's answer to a purge (`action`: the name it was asked by).
    pub fn reply(&self, action: &str, dest: &str) -> AdminReply {
        let mut r = if self.found {
            AdminReply::ok(action, format!("{dest}: {} messages removed", self.messages))
        } else {
            AdminReply::ok(action, format!("{dest}: nothing held"))
        };
        r.headers.push(("purged".into(), self.messages.to_string()));
        r
    }
}

pub struct Shard {
    topics: FastMap<Arc<str>, Topic>,
    queues: FastMap<Arc<str>, Queue>,
    workers: usize,
    policies: Arc<Policies>,
    scratch: Vec<Dispatch>,
    dead: Vec<(Entry, DeadReason)>,
    next_seq: u64,
    /// (expires ms, seq, destination) of every held message with an expiry.
    expiring: BinaryHeap<Reverse<(u64, u64, Arc<str>)>>,
    /// Wall clock (ms since the epoch), set by the worker each turn.
    pub now_ms: u64,
    pub stats: ShardStats,
    /// This worker's index, and a counter for ids of messages that arrive over upstream links.
    me: usize,
    link_ids: u64,
    /// Queues over their limits whose producers every worker holds (announced with
    /// `FromOwner::Flow`), until they are back under three quarters of them.
    blocked: FastMap<Arc<str>, ()>,
    /// Bytes of the messages this shard holds, read by every worker for `max_memory`.
    tally: Tally,
    /// Bytes of the messages that arrived here as `ToOwner::Publish` (the other end of each
    /// outbox's `sent`).
    arrived: Tally,
    /// The `max_memory` alarm as this worker sees it: while up, [`Shard::offer`] refuses (an
    /// upstream link keeps its message and retries, as for a full queue).
    pub memory_alarm: bool,
    /// The durable log, when `data_dir` is set.
    pub journal: Option<Journal>,
    /// The connection the request being applied came from: records written for it hold its
    /// receipts until they are on disk.
    acting: Option<super::ConnRef>,
    /// The last compaction request acted on (records below it were copied).
    relogged_below: u64,
    /// Queues whose selective dispatch stopped at its budget: dispatched again next turn.
    unfinished: Vec<Arc<str>>,
    /// Every wildcard topic subscription in the server (each worker registers its own with
    /// every owner), for the topics this shard owns.
    wild: Trie<SubKey>,
    /// Scratch for the subscriptions a wildcard match found (no allocation once warm).
    wild_hits: Vec<SubKey>,
    /// Messages held for scheduled delivery, earliest first (see `schedule`).
    scheduled: BinaryHeap<schedule::Scheduled>,
    /// Temporary destinations deleted lately (their connections closed), so a late reply gets
    /// ERROR `destination unknown` instead of creating the queue again; the oldest of at most
    /// [`TEMP_TOMBSTONES`] are forgotten first.
    temp_gone: FastMap<Arc<str>, ()>,
    temp_gone_order: VecDeque<Arc<str>>,
    /// Producer ids seen lately (see `dedup`).
    dedup: dedup::Window,
}

/// Deleted temporary destinations an owner remembers.
pub const TEMP_TOMBSTONES: usize = 4096;

fn refresh(policies: &Policies, dest: &str, policy: &mut Arc<Policy>, gen: &mut u64) {
    if *gen != policies.gen {
        *policy = policies.resolve(dest).clone();
        *gen = policies.gen;
    }
}

impl Shard {
    pub fn new(policies: Arc<Policies>, workers: usize, me: usize) -> Shard {
        Shard {
            topics: FastMap::default(),
            queues: FastMap::default(),
            workers,
            policies,
            scratch: Vec::new(),
            dead: Vec::new(),
            next_seq: 0,
            expiring: BinaryHeap::new(),
            now_ms: super::wall_ms(),
            stats: ShardStats::default(),
            me,
            link_ids: 0,
            blocked: FastMap::default(),
            tally: Tally::default(),
            arrived: Tally::default(),
            memory_alarm: false,
            journal: None,
            acting: None,
            relogged_below: 0,
            unfinished: Vec::new(),
            wild: Trie::default(),
            wild_hits: Vec::new(),
            scheduled: BinaryHeap::new(),
            temp_gone: FastMap::default(),
            temp_gone_order: VecDeque::new(),
            dedup: Default::default(),
        }
    }

    /// Write persistent messages to `j` from now on.
    pub fn set_journal(&mut self, mut j: Journal) {
        j.set_tally(self.tally.clone());
        self.journal = Some(j);
    }

    /// Hold again the messages recovered for `dest` (ordered by their record): redelivered,
    /// each pointing at the record that now holds it.
    /// A durable subscription's messages (`dest` a durable key) go back to it, under its topic.
    pub fn restore(&mut self, dest: &str, messages: Vec<(u64, StoredMessage)>) {
        let sub = crate::journal::payload::split_durable_key(dest).map(|(t, i, n)| (Arc::<str>::from(t), (Box::from(i), Box::from(n))));
        let dest: Arc<str> = match &sub {
            Some((topic, _)) => topic.clone(),
            None if DestKind::of(dest) == DestKind::Queue => Arc::from(dest),
            None => return,
        };
        for (id, m) in messages {
            let mut headers: Vec<(Box<str>, Box<str>)> = Vec::with_capacity(m.headers.len());
            let mut custom = None;
            let mut deliver_at = 0;
            for (k, v) in m.headers {
                if k == "message-id" {
                    custom = Some(v.into_boxed_str());
                } else if k == super::durable::DELIVER_AT {
                    deliver_at = v.parse().unwrap_or(1);
                } else {
                    headers.push((k.into_boxed_str(), v.into_boxed_str()));
                }
            }
            let mut msg = Message::new(id, dest.clone(), headers, m.body.into_boxed_slice());
            msg.expires = m.expires;
            msg.custom_id = custom;
            // A producer retrying across the restart is still caught.
            self.remember(&msg, m.seq);
            if deliver_at != 0 && sub.is_none() {
                // Scheduled again, repeats and all (at least once: firings before the crash
                // may come again).
                msg.deliver_at = deliver_at;
                msg.period = msg.header("AMQ_SCHEDULED_PERIOD").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                msg.repeat = msg.header("AMQ_SCHEDULED_REPEAT").and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                self.hold(Arc::new(msg), m.seq, m.seq);
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            if let Some((topic, id)) = &sub {
                match self.topics.get_mut(topic).and_then(|t| t.durables.get_mut(id)) {
                    Some(d) => d.queue.restore(Arc::new(msg), seq, m.seq),
                    None => log::warn!("{topic}: a kept message of an unknown durable subscription {:?} was not restored", id.1),
                }
                continue;
            }
            if msg.expires != 0 {
                self.expiring.push(Reverse((msg.expires, seq, dest.clone())));
            }
            self.queue_mut(&dest).restore(Arc::new(msg), seq, m.seq);
        }
    }

    /// The sync thread's report: receipts that waited for the disk go out; if it asks, the
    /// messages in its oldest segment are written again so that segment can go.
    pub fn durable(&mut self, d: Durable, out: &mut impl Outlet) {
        let Some(j) = &mut self.journal else { return };
        j.durable(d, out);
        if d.relog_below > self.relogged_below {
            self.relogged_below = d.relog_below;
            let mut n = 0u64;
            for q in self.queues.values_mut() {
                q.relog(d.relog_below, |e| {
                    n += 1;
                    j.relog(&e.msg, &e.msg.destination, e.log, e.order)
                });
            }
            log::debug!("worker {}: {n} queue messages copied out of the log's oldest segment", self.me);
            self.relog_scheduled(d.relog_below);
            self.relog_durables(d.relog_below);
        }
    }

    /// Ids of the persistent messages `dest` holds (ready and in flight), sorted: what a
    /// recovery must bring back (tests compare it with the log).
    /// A durable subscription's are asked for by its [`crate::journal::payload::durable_key`].
    pub fn persistent_ids(&self, dest: &str) -> Vec<u64> {
        if let Some(d) = self.durable_by_key(dest) {
            return d.queue.persistent_ids();
        }
        self.queues.get(dest).map(|q| q.persistent_ids()).unwrap_or_default()
    }

    /// Durable topic subscriptions held.
    pub fn durable_subscriptions(&self) -> usize {
        self.topics.values().map(|t| t.durables.len()).sum()
    }

    /// Whether the durable subscription with this key exists (tests).
    pub fn has_durable(&self, key: &str) -> bool {
        self.durable_by_key(key).is_some()
    }

    fn durable_by_key(&self, key: &str) -> Option<&DurableSub> {
        let (t, i, n) = crate::journal::payload::split_durable_key(key)?;
        self.topics.get(t)?.durables.get(&(Box::from(i), Box::from(n)))
    }

    /// Records gathered and not yet handed to the sync thread (its queue was full).
    pub fn journal_waiting(&self) -> bool {
        self.journal.as_ref().is_some_and(|j| j.waiting())
    }

    /// End of a loop turn: hand this turn's records to the sync thread.
    pub fn flush_journal(&mut self) {
        if let Some(j) = &mut self.journal {
            j.flush();
        }
    }

    /// Log the messages that left `q` (one drop record), for the connection acting now.
    fn log_drops(journal: &mut Option<Journal>, acting: Option<super::ConnRef>, dest: &str, q: &mut Queue) {
        let gone: Vec<(u64, u64)> = q.take_dropped().collect();
        if let Some(j) = journal {
            j.drops(dest, &gone, acting);
        }
    }

    /// Apply the destination's `persistence` to a message, and say whether it goes to the log.
    fn persistence(&self, msg: Arc<Message>, policy: &Policy) -> (Arc<Message>, bool) {
        let marked = msg.header("persistent") == Some("true");
        let rebuild = |msg: &Message, keep: bool| {
            let mut headers: Vec<(Box<str>, Box<str>)> = msg.headers.iter().filter(|(k, _)| &**k != "persistent").cloned().collect();
            if keep {
                headers.push(("persistent".into(), "true".into()));
            }
            let mut m = Message::new(msg.id, msg.destination.clone(), headers, msg.body.clone());
            m.expires = msg.expires;
            m.custom_id = msg.custom_id.clone();
            Arc::new(m)
        };
        let msg = match policy.persistence {
            Persistence::Header => msg,
            Persistence::Always if marked => msg,
            Persistence::Always => rebuild(&msg, true),
            Persistence::Never if msg.header("persistent").is_some() => rebuild(&msg, false),
            Persistence::Never => msg,
        };
        let logged = self.journal.is_some() && msg.header("persistent") == Some("true");
        (msg, logged)
    }

    /// Count held bytes into `t` (the server's gauge slot for this worker). Call before the
    /// shard holds anything.
    pub fn set_tally(&mut self, held: Tally, arrived: Tally) {
        self.tally = held;
        self.arrived = arrived;
    }

    /// A broker-wide unique id for a message arriving over an upstream link (its own id space:
    /// worker index with the top bit of the worker field set).
    pub fn next_link_id(&mut self) -> u64 {
        self.link_ids += 1;
        super::message_id(0x8000 | self.me, self.link_ids)
    }

    /// The largest body `dest` accepts.
    pub fn max_message_size_for(&self, dest: &str) -> usize {
        self.policies.resolve(dest).max_message_size
    }

    /// Publish a message this worker produced itself (an upstream link) and say whether the
    /// destination took it. A refusal is not logged: the caller holds the message and retries.
    pub fn offer(&mut self, msg: Arc<Message>, out: &mut impl Outlet) -> bool {
        if self.memory_alarm {
            return false;
        }
        self.publish(msg, Publisher::Broker, None, out, true)
    }

    /// A new policy table (reload, admin `perms`); destinations pick it up on next use.
    pub fn set_policies(&mut self, p: Arc<Policies>) {
        self.policies = p;
        for (name, q) in self.queues.iter_mut() {
            refresh(&self.policies, name, &mut q.policy, &mut q.policy_gen);
        }
        for (name, t) in self.topics.iter_mut() {
            refresh(&self.policies, name, &mut t.policy, &mut t.policy_gen);
        }
    }

    /// Destinations currently held (for stats and tests).
    pub fn len(&self) -> usize {
        self.topics.len() + self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Up to `max` destinations, for the console.
    pub fn snapshot(&self, max: usize) -> (Vec<DestInfo>, bool) {
        let topics = self.topics.iter().map(|(n, t)| DestInfo {
            name: n.to_string(),
            kind: "topic",
            subscribers: t.subs.len() + t.durables.values().filter(|d| d.consumer.is_some()).count(),
            depth: t.retained.len() + t.durables.values().map(|d| d.queue.depth()).sum::<usize>(),
            ready: t.retained.len() + t.durables.values().map(|d| d.queue.ready()).sum::<usize>(),
            unacked: t.durables.values().map(|d| d.queue.depth() - d.queue.ready()).sum::<usize>(),
            enqueued: t.enqueued,
            delivered: t.delivered,
            bytes: (t.retained_bytes + t.durables.values().map(|d| d.queue.bytes()).sum::<usize>()) as u64,
            acked: t.durables.values().map(|d| d.queue.acked).sum(),
            nacked: t.durables.values().map(|d| d.queue.nacked).sum(),
            redelivered: t.durables.values().map(|d| d.queue.redelivered).sum(),
            dead_lettered: t.durables.values().map(|d| d.queue.dead_lettered).sum(),
            expired: t.durables.values().map(|d| d.queue.expired).sum(),
            stats: t.policy.stats,
        });
        let queues = self.queues.iter().map(|(n, q)| DestInfo {
            name: n.to_string(),
            kind: "queue",
            subscribers: q.consumers(),
            depth: q.depth(),
            ready: q.ready(),
            unacked: q.depth() - q.ready(),
            enqueued: q.enqueued,
            delivered: q.delivered,
            bytes: q.bytes() as u64,
            acked: q.acked,
            nacked: q.nacked,
            redelivered: q.redelivered,
            dead_lettered: q.dead_lettered,
            expired: q.expired,
            stats: q.policy.stats,
        });
        let all: Vec<DestInfo> = topics.chain(queues).take(max + 1).collect();
        let truncated = all.len() > max;
        (all.into_iter().take(max).collect(), truncated)
    }

    /// Depth of a queue this shard owns.
    pub fn queue_depth(&self, dest: &str) -> Option<usize> {
        self.queues.get(dest).map(|q| q.depth())
    }

    /// Entries in the expiry heap (live and stale), for tests of its bound.
    pub fn expiring_len(&self) -> usize {
        self.expiring.len()
    }

    /// The earliest expiry of anything held (ms since the epoch).
    pub fn next_expiry(&self) -> Option<u64> {
        let expiry = self.expiring.peek().map(|r| r.0 .0);
        match (expiry, self.next_scheduled()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// May `dest` be held here? Yes if it already is, or if this shard is under its share of
    /// `max_destinations`.
    /// Whether this owner holds `dest` now.
    fn holds(&self, dest: &str) -> bool {
        self.queues.contains_key(dest) || self.topics.contains_key(dest)
    }

    /// Whether publishing to `dest` would create it here: a queue not held, or a topic not held
    /// that keeps messages for later subscribers (a topic without them just drops the message).
    fn would_create(&self, dest: &str) -> bool {
        !self.holds(dest) && (DestKind::of(dest) == DestKind::Queue || self.policies.resolve(dest).min_delivery > 0)
    }

    fn room_for(&self, dest: &str) -> bool {
        let share = self.policies.max_destinations.div_ceil(self.workers.max(1));
        self.queues.contains_key(dest) || self.topics.contains_key(dest) || self.queues.len() + self.topics.len() < share
    }

    fn no_room_detail(&self, dest: &str) -> String {
        format!("{dest}: the broker holds as many destinations as it may (max_destinations = {})", self.policies.max_destinations)
    }

    fn queue_mut(&mut self, dest: &Arc<str>) -> &mut Queue {
        let (policies, queues, tally) = (&self.policies, &mut self.queues, &self.tally);
        let q = queues.entry(dest.clone()).or_insert_with(|| Queue::new(policies.resolve(dest).clone(), policies.gen, tally.clone()));
        refresh(policies, dest, &mut q.policy, &mut q.policy_gen);
        q
    }

    fn topic_mut(&mut self, dest: &Arc<str>) -> &mut Topic {
        let (policies, topics, workers, tally) = (&self.policies, &mut self.topics, self.workers, &self.tally);
        let t =
            topics.entry(dest.clone()).or_insert_with(|| Topic::new(policies.resolve(dest).clone(), policies.gen, workers, tally.clone()));
        refresh(policies, dest, &mut t.policy, &mut t.policy_gen);
        t
    }

    /// Apply one request.
    pub fn handle(&mut self, req: ToOwner, out: &mut impl Outlet) {
        self.acting = match &req {
            ToOwner::Publish { from: Publisher::Conn(c), .. } => Some(*c),
            ToOwner::Settle { key, .. }
            | ToOwner::Unsubscribe { key, .. }
            | ToOwner::Credit { key, .. }
            | ToOwner::Subscribe { key, .. }
            | ToOwner::WildSubscribe { key, .. }
            | ToOwner::Browse { key, .. }
            | ToOwner::WildUnsubscribe { key, .. }
            | ToOwner::Pace { key, .. } => Some(key.conn),
            ToOwner::Admin { from, .. } | ToOwner::Forget { from, .. } => Some(*from),
            _ => None,
        };
        match req {
            ToOwner::Publish { msg, from, receipt, create } => {
                self.arrived.add(msg.weight());
                let waiting = match &from {
                    Publisher::Waiting(tx) => Some(tx.clone()),
                    _ => None,
                };
                let dedup_key = dedup::key_of(&msg);
                if super::is_temp(&msg.destination) && self.temp_gone.contains_key(&msg.destination) {
                    let detail = format!("{} is a temporary destination whose connection has closed", msg.destination);
                    self.reject(from, receipt, ErrorWord::DestinationUnknown, detail, out, false);
                } else if !create && self.would_create(&msg.destination) {
                    let detail = format!("this login may not create {} (the [acl] create rule)", msg.destination);
                    self.reject(from, receipt, ErrorWord::AccessDenied, detail, out, false);
                } else if dedup_key.as_deref().is_some_and(|k| self.duplicate(k)) {
                    if let Some(tx) = waiting {
                        let _ = tx.try_send(Ok(()));
                    }
                } else {
                    let before = self.journal.as_ref().map_or(0, |j| j.last_record());
                    if self.publish(msg, from, receipt, out, false) {
                        if let Some(tx) = waiting {
                            let _ = tx.try_send(Ok(()));
                        }
                        if let Some(k) = dedup_key {
                            // Its record, if publishing wrote one.
                            let after = self.journal.as_ref().map_or(0, |j| j.last_record());
                            self.remember_key(k, if after > before { after } else { 0 });
                        }
                    }
                }
            }
            ToOwner::Subscribe { key, dest, create: false, .. } if !self.holds(&dest) => {
                let detail = format!("this login may not create {dest} (the [acl] create rule)");
                out.answer(key.conn.worker as usize, FromOwner::SubscribeRefused { key, word: ErrorWord::AccessDenied, detail });
            }
            ToOwner::Subscribe { key, dest, .. } if !self.room_for(&dest) => {
                let detail = self.no_room_detail(&dest);
                out.answer(key.conn.worker as usize, FromOwner::SubscribeRefused { key, word: ErrorWord::DestFlup, detail });
            }
            ToOwner::Subscribe { dest, key, mode, prefetch, barrier, durable: Some(id), .. } if DestKind::of(&dest) == DestKind::Topic => {
                self.subscribe_durable(dest, key, mode, prefetch, *id, barrier, out)
            }
            ToOwner::Subscribe { dest, key, mode, prefetch, filter, consumer, barrier, .. } => match DestKind::of(&dest) {
                DestKind::Topic => self.subscribe_topic(dest, key, filter, barrier, out),
                DestKind::Queue => {
                    let q = self.queue_mut(&dest);
                    if q.consumers() >= q.policy.max_subscribers {
                        let detail = format!("{dest} has {} subscribers, its limit (max_connections)", q.consumers());
                        if q.is_idle() {
                            self.queues.remove(&dest);
                        }
                        out.answer(key.conn.worker as usize, FromOwner::SubscribeRefused { key, word: ErrorWord::DestFlup, detail });
                        return;
                    }
                    q.subscribe(key, mode, prefetch, consumer);
                    if barrier {
                        let owner = out.me() as u16;
                        out.answer(key.conn.worker as usize, FromOwner::BarrierDone { conn: key.conn, owner });
                    }
                    self.dispatch(&dest, out);
                }
            },
            // A durable subscription's consumer detaches (the guard applies it); otherwise on.
            ToOwner::Unsubscribe { dest, key }
                if DestKind::of(&dest) == DestKind::Topic
                    && self.with_durable(&dest, key, out, |d, _| {
                        d.queue.unsubscribe(key);
                        if d.consumer == Some(key) {
                            d.consumer = None;
                        }
                    }) => {}
            ToOwner::Forget { dest, from, identity, name } => self.forget_durables(dest, from, (identity, name), out),
            ToOwner::WildSubscribe { pattern, key } => self.wild.insert(&pattern, key),
            ToOwner::DropTemp { dest } => self.drop_temp(dest),
            ToOwner::Browse { dest, key, barrier } => {
                let w = key.conn.worker as usize;
                if barrier {
                    let owner = out.me() as u16;
                    out.answer(w, FromOwner::BarrierDone { conn: key.conn, owner });
                }
                let (msgs, truncated) = match self.queues.get(&dest) {
                    Some(q) => q.browse(super::queue::BROWSE_MAX),
                    None => (Vec::new(), false),
                };
                out.answer(w, FromOwner::Browsed { key, msgs, truncated });
            }
            ToOwner::WildUnsubscribe { pattern, key } => {
                self.wild.remove(&pattern, |k| *k == key);
            }
            ToOwner::Unsubscribe { dest, key } => match DestKind::of(&dest) {
                DestKind::Topic => {
                    if let Some(t) = self.topics.get_mut(&dest) {
                        if let Some(filter) = t.subs.remove(&key) {
                            t.per_worker[key.conn.worker as usize] -= 1;
                            match filter {
                                Some(v) => {
                                    if let Some(n) = t.by_filter.get_mut(&v) {
                                        *n -= 1;
                                        if *n == 0 {
                                            t.by_filter.remove(&v);
                                        }
                                    }
                                }
                                None => t.unfiltered -= 1,
                            }
                        }
                        if t.is_idle() {
                            self.topics.remove(&dest);
                        }
                    }
                }
                DestKind::Queue => {
                    if let Some(q) = self.queues.get_mut(&dest) {
                        q.unsubscribe(key);
                    }
                    self.dispatch(&dest, out);
                }
            },
            ToOwner::Settle { dest, key, seqs, kind } if DestKind::of(&dest) == DestKind::Topic => {
                self.with_durable(&dest, key, out, |d, _| {
                    d.queue.settle(key, &seqs, kind);
                });
            }
            ToOwner::Credit { dest, key, n } if DestKind::of(&dest) == DestKind::Topic => {
                self.with_durable(&dest, key, out, |d, _| d.queue.credit(key, n));
            }
            ToOwner::Pace { dest, key, paused } if DestKind::of(&dest) == DestKind::Topic => {
                self.with_durable(&dest, key, out, |d, _| d.queue.pace(key, paused));
            }
            ToOwner::Bounce { dest, key, msg, seq, deliveries } if DestKind::of(&dest) == DestKind::Topic => {
                // It left the log when it was dispatched: back in its queue, back in the log.
                let back = self.with_durable(&dest, key, out, |d, journal| {
                    let log = match journal {
                        Some(j) if msg.header("persistent") == Some("true") => j.message_as(&msg, &d.key, None),
                        _ => 0,
                    };
                    d.queue.bounce(msg, seq, deliveries, log);
                });
                if !back {
                    log::warn!("{dest}: a message bounced for a durable subscription that is gone");
                }
            }
            ToOwner::Settle { dest, key, seqs, kind } => {
                if let Some(q) = self.queues.get_mut(&dest) {
                    q.settle(key, &seqs, kind);
                }
                self.dispatch(&dest, out);
            }
            ToOwner::Credit { dest, key, n } => {
                if let Some(q) = self.queues.get_mut(&dest) {
                    q.credit(key, n);
                }
                self.dispatch(&dest, out);
            }
            ToOwner::Pace { dest, key, paused } => {
                if let Some(q) = self.queues.get_mut(&dest) {
                    q.pace(key, paused);
                }
                self.dispatch(&dest, out);
            }
            ToOwner::Bounce { dest, msg, seq, deliveries, .. } => {
                // It left the log when it was dispatched: back in the queue, back in the log.
                let log = match &mut self.journal {
                    Some(j) if msg.header("persistent") == Some("true") => j.message(&msg, None),
                    _ => 0,
                };
                self.queue_mut(&dest).bounce(msg, seq, deliveries, log);
                self.dispatch(&dest, out);
            }
            ToOwner::Commit { from, ops } => {
                if let Some(j) = &mut self.journal {
                    j.begin();
                }
                for op in ops {
                    self.handle(op, out);
                }
                if let Some(j) = &mut self.journal {
                    j.end(from);
                }
            }
            ToOwner::Admin { from, op } => {
                let reply = match op {
                    AdminOp::Purge { dest, action } => {
                        let p = self.purge(&dest);
                        self.flow(&dest, out);
                        p.reply(action, &dest)
                    }
                    other => AdminReply::error(other.name(), "not an owner operation"),
                };
                out.answer(from.worker as usize, FromOwner::AdminResult { conn: from, reply });
            }
            ToOwner::Stats { .. } => {} // answered by the worker, which knows its connections
            ToOwner::Barrier { from } => match &mut self.journal {
                Some(j) => j.barrier(from, out),
                None => {
                    let owner = out.me() as u16;
                    out.answer(from.worker as usize, FromOwner::BarrierDone { conn: from, owner })
                }
            },
        }
    }

    /// Delete a temporary destination (its connection closed) and what it holds, counted as
    /// discarded.
    fn drop_temp(&mut self, dest: Arc<str>) {
        if let Some(q) = self.queues.remove(&dest) {
            self.stats.temp_discarded += q.depth() as u64;
        }
        self.topics.remove(&dest);
        if self.temp_gone.insert(dest.clone(), ()).is_none() {
            self.temp_gone_order.push_back(dest);
            if self.temp_gone_order.len() > TEMP_TOMBSTONES {
                if let Some(old) = self.temp_gone_order.pop_front() {
                    self.temp_gone.remove(&old);
                }
            }
        }
    }

    /// Remove every ready message of a queue, or every retained message of a topic.
    pub fn purge(&mut self, dest: &str) -> Purged {
        if let Some(q) = self.queues.get_mut(dest) {
            let messages = q.purge();
            Self::log_drops(&mut self.journal, self.acting, dest, q);
            if q.is_idle() {
                self.queues.remove(dest);
            }
            return Purged { messages, found: true };
        }
        if let Some(t) = self.topics.get_mut(dest) {
            let mut messages = t.retained.len();
            t.retained.clear();
            t.set_retained_bytes(0);
            for d in t.durables.values_mut() {
                messages += d.queue.purge();
                Self::log_drops(&mut self.journal, self.acting, &d.key, &mut d.queue);
            }
            if t.is_idle() {
                self.topics.remove(dest);
            }
            return Purged { messages, found: true };
        }
        Purged { messages: 0, found: false }
    }

    fn subscribe_topic(&mut self, dest: Arc<str>, key: SubKey, filter: Option<Box<str>>, barrier: bool, out: &mut impl Outlet) {
        let now = self.now_ms;
        let t = self.topic_mut(&dest);
        if t.subs.len() >= t.policy.max_subscribers {
            let detail = format!("{dest} has {} subscribers, its limit (max_connections)", t.subs.len());
            if t.is_idle() {
                self.topics.remove(&dest);
            }
            out.answer(key.conn.worker as usize, FromOwner::SubscribeRefused { key, word: ErrorWord::DestFlup, detail });
            return;
        }
        let again = t.subs.insert(key, filter.clone()).is_some();
        if barrier {
            // Before any replayed message: the RECEIPT comes first.
            let owner = out.me() as u16;
            out.answer(key.conn.worker as usize, FromOwner::BarrierDone { conn: key.conn, owner });
        }
        if again {
            return;
        }
        t.per_worker[key.conn.worker as usize] += 1;
        match &filter {
            Some(v) => *t.by_filter.entry(v.clone()).or_default() += 1,
            None => t.unfiltered += 1,
        }
        if t.retained.is_empty() {
            return;
        }
        // Replay what earlier subscribers have not yet taken often enough.
        let header = t.policy.filter_header.clone();
        let mut expired = 0;
        for r in t.retained.iter_mut() {
            if r.msg.expired(now) {
                r.remaining = 0;
                expired += 1;
                continue;
            }
            let matches = match (&filter, &header) {
                (Some(v), Some(h)) => r.msg.header(h) == Some(&**v),
                _ => true,
            };
            if matches {
                r.remaining -= 1;
                t.delivered += 1;
                out.answer(key.conn.worker as usize, FromOwner::Replay { key, msg: r.msg.clone() });
            }
        }
        let mut bytes = t.retained_bytes;
        t.retained.retain(|r| {
            if r.remaining == 0 {
                bytes -= r.msg.weight();
            }
            r.remaining > 0
        });
        t.set_retained_bytes(bytes);
        self.stats.expired += expired;
    }

    #[allow(clippy::too_many_arguments)]
    fn reject(&mut self, from: Publisher, receipt: Option<Box<str>>, word: ErrorWord, detail: String, out: &mut impl Outlet, quiet: bool) {
        if quiet {
            return;
        }
        self.stats.rejected += 1;
        match from {
            Publisher::Broker => log::warn!("a message was refused: {detail}"),
            Publisher::Waiting(tx) => {
                let _ = tx.try_send(Err(detail));
            }
            Publisher::Conn(conn) => out.answer(conn.worker as usize, FromOwner::Rejected { conn, word, detail, receipt }),
        }
    }

    /// Publish; returns whether the destination accepted the message. `quiet`: a refusal is
    /// only returned, not reported.
    fn publish(&mut self, msg: Arc<Message>, from: Publisher, receipt: Option<Box<str>>, out: &mut impl Outlet, quiet: bool) -> bool {
        if msg.deliver_at != 0 {
            return self.schedule(msg, from, receipt, out, quiet);
        }
        self.publish_logged(msg, from, receipt, out, quiet, 0)
    }

    /// [`Shard::publish`]; `prelogged`: the durable record that already holds this queue
    /// message (a scheduled one, logged when it was scheduled), 0 if none.
    fn publish_logged(
        &mut self,
        msg: Arc<Message>,
        from: Publisher,
        receipt: Option<Box<str>>,
        out: &mut impl Outlet,
        quiet: bool,
        prelogged: u64,
    ) -> bool {
        let dest = msg.destination.clone();
        if msg.expired(self.now_ms) {
            // Dead on arrival: a queue message goes where the queue's expired messages go.
            if DestKind::of(&dest) == DestKind::Queue {
                let policy = self.policies.resolve(&dest).clone();
                self.dead.push((Entry { seq: 0, msg, redelivered: false, deliveries: 0, log: 0, order: 0 }, DeadReason::Expired));
                self.dead_letter(&dest, &policy, out);
            } else {
                self.stats.expired += 1;
            }
            return true;
        }
        match DestKind::of(&dest) {
            DestKind::Topic => {
                self.stats.published += 1;
                // Wildcard subscribers of this topic's name: the workers they are on.
                let wild = self.wild_workers(&dest);
                // The policy is looked up only for a topic not held yet (it then lives in the topic).
                if !self.topics.contains_key(&dest) && self.policies.resolve(&dest).min_delivery == 0 {
                    if wild.is_empty() {
                        self.stats.unrouted += 1;
                    }
                    for w in wild.iter() {
                        out.answer(w, FromOwner::TopicMessage { dest: dest.clone(), msg: msg.clone() });
                    }
                    return true;
                }
                if !self.room_for(&dest) {
                    let detail = self.no_room_detail(&dest);
                    self.stats.published -= 1;
                    self.reject(from, receipt, ErrorWord::DestFlup, detail, out, quiet);
                    return false;
                }
                let t = self.topic_mut(&dest);
                let durable = !t.durables.is_empty();
                let (msg, logged) = if durable || t.policy.persistence != Persistence::Header {
                    let policy = t.policy.clone();
                    self.persistence(msg, &policy)
                } else {
                    (msg, false)
                };
                if durable {
                    // Every durable subscription must be able to keep it, and the log to take it.
                    let refused = match self.journal.as_mut().and_then(|j| if logged { j.disk_full() } else { None }) {
                        Some(detail) => Some((ErrorWord::DiskFlup, format!("{dest}: {detail}; the message was not accepted"))),
                        None => self.durables_take(&dest, &msg).err().map(|d| (ErrorWord::QFlup, d)),
                    };
                    if let Some((word, detail)) = refused {
                        self.stats.published -= 1;
                        self.reject(from, receipt, word, detail, out, quiet);
                        return false;
                    }
                }
                let seq = self.next_seq;
                let has_expiry = msg.expires != 0;
                let wild_subs = self.wild_hits.len() as u32;
                let t = self.topic_mut(&dest);
                t.enqueued += 1;
                let matching = t.matching(&msg) + wild_subs;
                let owed = t.policy.min_delivery.saturating_sub(matching);
                if owed > 0 {
                    let (max_m, max_b) = (t.policy.max_messages, t.policy.max_queue_bytes);
                    if t.retained.len() >= max_m || t.retained_bytes + msg.weight() > max_b {
                        let detail = format!(
                            "topic {dest} already keeps {} messages for later subscribers (min_delivery; limits: max_messages = {max_m}, max_queue_bytes = {max_b}); the message was not accepted",
                            t.retained.len()
                        );
                        if t.is_idle() {
                            self.topics.remove(&dest);
                        }
                        self.stats.published -= 1;
                        self.reject(from, receipt, ErrorWord::QFlup, detail, out, quiet);
                        return false;
                    }
                    t.set_retained_bytes(t.retained_bytes + msg.weight());
                    t.retained.push_back(Retained { seq, msg: msg.clone(), remaining: owed });
                }
                if matching > 0 {
                    t.delivered += matching as u64;
                    for (w, &n) in t.per_worker.iter().enumerate() {
                        if n > 0 || wild.contains(w) {
                            out.answer(w, FromOwner::TopicMessage { dest: dest.clone(), msg: msg.clone() });
                        }
                    }
                } else if owed == 0 && !durable {
                    let idle = t.is_idle();
                    self.stats.unrouted += 1;
                    if idle {
                        self.topics.remove(&dest);
                    }
                }
                if owed > 0 {
                    self.next_seq += 1;
                    if has_expiry {
                        self.expiring.push(Reverse((msg.expires, seq, dest.clone())));
                        if seq % 1024 == 0 {
                            self.compact_expiring();
                        }
                    }
                }
                if durable {
                    self.feed_durables(&dest, &msg, logged, out);
                }
            }
            DestKind::Queue => {
                if !self.room_for(&dest) {
                    let detail = self.no_room_detail(&dest);
                    self.reject(from, receipt, ErrorWord::DestFlup, detail, out, quiet);
                    return false;
                }
                let policy = self.queue_mut(&dest).policy.clone();
                let (msg, logged) = self.persistence(msg, &policy);
                if logged && prelogged == 0 {
                    if let Some(detail) = self.journal.as_mut().and_then(|j| j.disk_full()) {
                        if self.queues.get(&dest).is_some_and(|q| q.is_idle()) {
                            self.queues.remove(&dest);
                        }
                        self.reject(
                            from,
                            receipt,
                            ErrorWord::DiskFlup,
                            format!("{dest}: {detail}; the message was not accepted"),
                            out,
                            quiet,
                        );
                        return false;
                    }
                }
                let seq = self.next_seq;
                let q = self.queue_mut(&dest);
                let mut full = !q.has_room(&msg);
                let mut dropped = 0;
                if full && q.policy.overflow == Overflow::DropHead {
                    while !q.has_room(&msg) && q.drop_head() {
                        dropped += 1;
                    }
                    full = !q.has_room(&msg);
                }
                // `block`: accepted over the limit; `flow` (after dispatch) holds the producers.
                let refuse = full && q.policy.overflow != Overflow::Block;
                self.stats.overflow_dropped += dropped;
                let q = self.queue_mut(&dest);
                if refuse {
                    let detail = format!(
                        "queue {dest} is full ({} messages held; limits: max_messages = {}, max_queue_bytes = {}); the message was not accepted",
                        q.depth(),
                        q.policy.max_messages,
                        q.policy.max_queue_bytes
                    );
                    if q.is_idle() {
                        self.queues.remove(&dest);
                    }
                    self.reject(from, receipt, ErrorWord::QFlup, detail, out, quiet);
                    return false;
                }
                let expires = msg.expires;
                let log = match &mut self.journal {
                    _ if prelogged != 0 => prelogged,
                    Some(j) if logged => j.message(&msg, self.acting),
                    _ => 0,
                };
                let q = self.queue_mut(&dest);
                q.push(msg, seq, log);
                self.next_seq += 1;
                self.stats.published += 1;
                if expires != 0 {
                    self.expiring.push(Reverse((expires, seq, dest.clone())));
                    if seq % 1024 == 0 {
                        self.compact_expiring();
                    }
                }
                self.dispatch(&dest, out);
            }
        }
        true
    }

    /// The workers with a wildcard subscription matching topic `dest` (and, in `wild_hits`,
    /// the subscriptions, each once). Empty at the cost of one check while nobody holds one.
    fn wild_workers(&mut self, dest: &str) -> super::WorkerSet {
        let mut set = super::WorkerSet::default();
        self.wild_hits.clear();
        if self.wild.is_empty() {
            return set;
        }
        let hits = &mut self.wild_hits;
        self.wild.each_match(dest, |k| hits.push(*k));
        hits.sort_unstable();
        hits.dedup();
        for k in hits.iter() {
            set.insert(k.conn.worker as usize);
        }
        set
    }

    /// Rebuild the expiry heap without entries for messages no longer held, when those are the
    /// majority.
    fn compact_expiring(&mut self) {
        if self.expiring.len() <= 1024 {
            return;
        }
        let held: usize =
            self.queues.values().map(|q| q.depth()).sum::<usize>() + self.topics.values().map(|t| t.retained.len()).sum::<usize>();
        if self.expiring.len() <= 2 * held + 1024 {
            return;
        }
        let (queues, topics) = (&self.queues, &self.topics);
        let live = |(_, seq, d): &(u64, u64, Arc<str>)| match DestKind::of(d) {
            DestKind::Queue => queues.get(d).is_some_and(|q| q.holds(*seq)),
            DestKind::Topic => topics.get(d).is_some_and(|t| t.retained.binary_search_by_key(seq, |r| r.seq).is_ok()),
        };
        let kept: Vec<_> = std::mem::take(&mut self.expiring).into_iter().filter(|r| live(&r.0)).collect();
        self.expiring = kept.into();
    }

    /// Remove what expired by `now_ms` (queue messages go to their dead-letter destination).
    pub fn expire(&mut self, now_ms: u64, out: &mut impl Outlet) {
        self.now_ms = now_ms;
        if self.next_scheduled().is_some_and(|at| at <= now_ms) {
            self.fire_scheduled(now_ms, out);
        }
        while self.expiring.peek().is_some_and(|r| r.0 .0 <= now_ms) {
            let Some(Reverse((_, seq, dest))) = self.expiring.pop() else { break };
            match DestKind::of(&dest) {
                DestKind::Queue => {
                    if let Some(q) = self.queues.get_mut(&dest) {
                        q.expire(seq);
                    }
                    self.dispatch(&dest, out);
                }
                DestKind::Topic => {
                    if let Some(t) = self.topics.get_mut(&dest) {
                        if let Ok(i) = t.retained.binary_search_by_key(&seq, |r| r.seq) {
                            if let Some(r) = t.retained.remove(i) {
                                t.set_retained_bytes(t.retained_bytes - r.msg.weight());
                                self.stats.expired += 1;
                            }
                        }
                        if t.is_idle() {
                            self.topics.remove(&dest);
                        }
                    }
                }
            }
        }
    }

    fn dispatch(&mut self, dest: &Arc<str>, out: &mut impl Outlet) {
        let Some(q) = self.queues.get_mut(dest) else {
            return;
        };
        q.dispatch(&mut self.scratch, self.now_ms);
        if q.unfinished() && !self.unfinished.contains(dest) {
            self.unfinished.push(dest.clone());
        }
        self.dead.extend(q.take_dead());
        Self::log_drops(&mut self.journal, self.acting, dest, q);
        // Flow control state, read while the queue is at hand (no second lookup per message).
        let level = (q.policy.overflow == Overflow::Block && q.over_high_watermark(), q.under_low_watermark());
        // Needed only for dead letters: no shared refcount traffic on the common path.
        let policy = (!self.dead.is_empty()).then(|| q.policy.clone());
        let idle = q.is_idle();
        Self::answer_dispatched(&mut self.scratch, out);
        if idle {
            self.queues.remove(dest);
        }
        if let Some(policy) = policy {
            self.dead_letter(dest, &policy, out);
        }
        self.flow_at(dest, if idle { (false, true) } else { level }, out);
    }

    /// Queues with selective consumers that have messages left to offer (see
    /// [`Shard::resume_dispatch`]).
    pub fn has_unfinished(&self) -> bool {
        !self.unfinished.is_empty()
    }

    /// Go on with the dispatches that stopped at their selector budget (once per loop turn,
    /// so a long backlog of messages nobody accepts never stalls the loop).
    pub fn resume_dispatch(&mut self, out: &mut impl Outlet) {
        for dest in std::mem::take(&mut self.unfinished) {
            self.dispatch(&dest, out);
        }
    }

    /// Send each dispatched queue message to its consumer's worker.
    fn answer_dispatched(scratch: &mut Vec<Dispatch>, out: &mut impl Outlet) {
        for d in scratch.drain(..) {
            let m = FromOwner::QueueMessage {
                key: d.key,
                msg: d.entry.msg,
                seq: d.entry.seq,
                redelivered: d.entry.redelivered,
                retained: d.retained,
                deliveries: d.entry.deliveries,
            };
            out.answer(d.key.conn.worker as usize, m);
        }
    }

    /// Producer flow control for `overflow = "block"` queues: over a limit, tell every worker
    /// to hold the connections that send to `dest`; back under three quarters of both limits
    /// (or gone), let them go. Announced once per change, so the cost on the hot path is one
    /// lookup while nothing is blocked.
    fn flow(&mut self, dest: &Arc<str>, out: &mut impl Outlet) {
        let level = match self.queues.get(dest) {
            Some(q) => (q.policy.overflow == Overflow::Block && q.over_high_watermark(), q.under_low_watermark()),
            None => (false, true),
        };
        self.flow_at(dest, level, out);
    }

    /// [`Shard::flow`] with the queue's (over the high watermark, under the low one) known.
    fn flow_at(&mut self, dest: &Arc<str>, (over, under): (bool, bool), out: &mut impl Outlet) {
        if !over && self.blocked.is_empty() {
            return;
        }
        let change = if over {
            self.blocked.insert(dest.clone(), ()).is_none()
        } else {
            under && !self.blocked.is_empty() && self.blocked.remove(dest).is_some()
        };
        if !change {
            return;
        }
        if over {
            self.stats.flow_blocks += 1;
            log::debug!("{dest}: over its limits; its producers are held");
        }
        for w in 0..out.workers() {
            out.answer(w, FromOwner::Flow { dest: dest.clone(), blocked: over });
        }
    }

    /// Queues whose producers are held now.
    pub fn blocked_len(&self) -> usize {
        self.blocked.len()
    }

    /// Send the messages in `self.dead` to `dest`'s dead-letter destination (or discard them,
    /// counted and logged, when it has none).
    fn dead_letter(&mut self, dest: &str, policy: &Policy, out: &mut impl Outlet) {
        let target = policy.dead_letter_for(dest);
        for (e, reason) in std::mem::take(&mut self.dead) {
            if reason == DeadReason::Expired {
                self.stats.expired += 1;
            }
            let Some(dl) = &target else {
                self.stats.dead_discarded += 1;
                if self.stats.dead_discarded.is_power_of_two() {
                    log::warn!(
                        "{dest}: {} messages discarded without a dead-letter destination (last: {})",
                        self.stats.dead_discarded,
                        reason.as_str()
                    );
                }
                continue;
            };
            self.stats.dead_lettered += 1;
            let mut headers = e.msg.headers.clone();
            headers.push(("original-destination".into(), dest.into()));
            headers.push(("original-message-id".into(), e.msg.custom_id.clone().unwrap_or_else(|| e.msg.id.to_string().into())));
            headers.push(("dlq-reason".into(), reason.as_str().into()));
            headers.push(("dlq-deliveries".into(), e.deliveries.to_string().into()));
            let mut m = Message::new(e.msg.id, Arc::from(dl.as_str()), headers, e.msg.body.clone());
            m.custom_id = e.msg.custom_id.clone();
            let w = owner_of(dl, self.workers);
            out.to_owner(w, ToOwner::Publish { msg: Arc::new(m), from: Publisher::Broker, receipt: None, create: true });
        }
    }
}
