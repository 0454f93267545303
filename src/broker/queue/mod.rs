//! One queue: competing consumers with credit, redelivery in order (owner worker only).
//!
//! Messages that must leave without delivery (expired, redelivered more than the destination's
//! `max_redeliveries`, or NACKed with `requeue:false`) are moved to `dead`; the owning shard
//! takes them with [`Queue::take_dead`] and sends them to the dead-letter destination.
//!
//! # Invariants
//! - `ready` is sorted by `seq`; a requeued message goes back to its place, so redeliveries keep
//!   the original order.
//! - `count` and `bytes` cover ready messages plus messages in flight to client-ack consumers;
//!   an auto-ack delivery leaves the queue when dispatched.
//! - A consumer never has more than its prefetch in flight (`credit` counts what is left).

use super::mail::Seqs;
use super::policy::Policy;
use super::ready::{Ready, LEVELS};
use super::{AckMode, FastMap, Message, SubKey};
use crate::memory::Tally;
use crate::selector::Selector;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

mod constrained;

#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub msg: Arc<Message>,
    pub redelivered: bool,
    /// Times delivered so far.
    pub deliveries: u32,
    /// The durable log record that holds it (0: in memory only).
    pub log: u64,
    /// Its place in the log's order: the record that first held it (compaction copies keep it).
    pub order: u64,
}

/// Why a message left a queue without being consumed (the `dlq-reason` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadReason {
    Expired,
    MaxRedeliveries,
    Rejected,
    /// Dropped from the head of a full `overflow = "drop-head"` queue.
    Overflow,
}

impl DeadReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadReason::Expired => "expired",
            DeadReason::MaxRedeliveries => "max-redeliveries",
            DeadReason::Rejected => "rejected",
            DeadReason::Overflow => "overflow",
        }
    }
}

/// What an ACK/NACK does to the messages it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SettleKind {
    /// Consumed: the queue forgets it.
    Ack,
    /// NACK: back to its place, redelivered (or dead-lettered past `max_redeliveries`).
    Requeue,
    /// NACK with `requeue:false`: straight to the dead-letter destination.
    Reject,
}

#[derive(Debug)]
struct Consumer {
    key: SubKey,
    credit: u32,
    retains: bool,
    /// Its connection's output is full: no deliveries until resumed (credit in bytes).
    paused: bool,
    /// On the ring of consumers that may take a message.
    queued: bool,
    inflight: BTreeMap<u64, Entry>,
    /// Takes only the messages this accepts (the SUBSCRIBE's `selector`).
    selector: Option<Arc<Selector>>,
    /// Consumer priority (`activemq.priority`, `x-priority`): higher ones are offered messages
    /// first; lower ones get what they leave.
    priority: i32,
    /// `activemq.exclusive` / `x-single-active-consumer`: while it is the oldest exclusive
    /// consumer, it alone gets the queue's messages.
    exclusive: bool,
    /// When it subscribed (the queue's counter): the oldest exclusive consumer is the active one.
    joined: u64,
    /// Message-group buckets assigned to it.
    groups: u32,
    /// Per priority level: every ready message below this sequence was offered to this
    /// consumer and refused (its selector, or another consumer's group). Moved back when a
    /// message goes back below it, or when groups are released.
    cursor: [u64; LEVELS],
}

/// How a consumer takes part in dispatch (its SUBSCRIBE's dialect headers).
#[derive(Debug, Clone, Default)]
pub struct ConsumerOpts {
    pub selector: Option<Arc<Selector>>,
    pub priority: i32,
    pub exclusive: bool,
}

/// Message-group buckets per queue: a group (`JMSXGroupID`) hashes to one, and a bucket
/// belongs to one consumer while it lives, so memory is bounded whatever the number of groups
/// (two groups in one bucket share a consumer, which still keeps each group on one consumer).
pub const GROUP_BUCKETS: usize = 1024;

/// A delivery the owner must send to a consumer's worker.
#[derive(Debug)]
pub struct Dispatch {
    pub key: SubKey,
    pub entry: Entry,
    pub retained: bool,
}

#[derive(Debug)]
pub struct Queue {
    /// This destination's policy and the table generation it came from.
    pub policy: Arc<Policy>,
    pub policy_gen: u64,
    ready: Ready,
    consumers: Vec<Consumer>,
    /// Where each consumer is in `consumers`: ACKs, credits and pauses find theirs in O(1)
    /// among thousands.
    index: FastMap<SubKey, u32>,
    /// Indices of the consumers that may take a message (credit, not paused), in
    /// round-robin order; each at most once (`Consumer::queued`).
    ring: VecDeque<u32>,
    count: usize,
    bytes: usize,
    /// The owning shard's held bytes (every change to `bytes` is mirrored there).
    tally: Tally,
    /// Messages ever enqueued (stats).
    pub enqueued: u64,
    /// Deliveries made (stats).
    pub delivered: u64,
    /// Client acknowledgements and NACKs settled; deliveries of redelivered messages; messages
    /// that left for the dead letters (or were discarded) other than by expiry; and by expiry.
    pub acked: u64,
    pub nacked: u64,
    pub redelivered: u64,
    pub dead_lettered: u64,
    pub expired: u64,
    /// Messages that left without being consumed, for the shard to dead-letter.
    dead: Vec<(Entry, DeadReason)>,
    /// Logged messages that left (consumed, expired, dead-lettered, purged) since the shard
    /// last took them: (message id, log record), for its drop record.
    dropped: Vec<(u64, u64)>,
    /// Consumers with a selector, exclusive ones, ones with a priority other than 0, and
    /// whether message groups are in use: while all are none, dispatch takes the head for the
    /// next consumer on the ring (the fast path); otherwise see `constrained`.
    selective: usize,
    exclusives: usize,
    prioritized: usize,
    /// Which consumer each message-group bucket belongs to (allocated on the first grouped
    /// message), and how many are assigned.
    groups: Option<Box<[Option<SubKey>]>>,
    grouped: usize,
    /// Consumers ever subscribed (their `joined`), and a rotation for round-robin among
    /// equals in constrained dispatch.
    joins: u64,
    rr: usize,
    /// The last dispatch was constrained (the ring is rebuilt when the fast path resumes).
    was_constrained: bool,
    /// The last dispatch spent its [`SELECTOR_BUDGET`] with messages left to offer: the owner
    /// dispatches again next turn, without waiting for another event.
    unfinished: bool,
}

/// Selector evaluations one dispatch may spend looking past ready messages that no consumer
/// on the ring accepts (ActiveMQ's counterpart is a queue's page size, 200 messages). A later
/// dispatch goes on from where this one stopped; what it costs per call is bounded whatever
/// the backlog.
pub const SELECTOR_BUDGET: usize = 16_384;

/// The most messages one browse returns (the end marker says when there were more).
pub const BROWSE_MAX: usize = 10_000;

/// What a destination costs besides its messages (its entry, name, policy handle and
/// indexes), counted against `max_memory` for as long as it exists. About what 200,000 empty
/// queues were measured to cost each (1,647 bytes, from the RSS).
pub const DEST_FOOTPRINT: usize = 1536;

impl Queue {
    pub fn new(policy: Arc<Policy>, policy_gen: u64, tally: Tally) -> Queue {
        tally.add(DEST_FOOTPRINT);
        Queue {
            policy,
            policy_gen,
            ready: Ready::default(),
            consumers: Vec::new(),
            index: FastMap::default(),
            ring: VecDeque::new(),
            count: 0,
            bytes: 0,
            tally,
            enqueued: 0,
            delivered: 0,
            acked: 0,
            nacked: 0,
            redelivered: 0,
            dead_lettered: 0,
            expired: 0,
            dead: Vec::new(),
            dropped: Vec::new(),
            selective: 0,
            exclusives: 0,
            prioritized: 0,
            groups: None,
            grouped: 0,
            joins: 0,
            rr: 0,
            was_constrained: false,
            unfinished: false,
        }
    }

    /// Logged messages that left since the last call: (message id, log record).
    pub fn take_dropped(&mut self) -> std::vec::Drain<'_, (u64, u64)> {
        self.dropped.drain(..)
    }

    /// Compaction: every held entry whose record is below `below` is written again by
    /// `relog(entry) -> new record`.
    pub fn relog(&mut self, below: u64, mut relog: impl FnMut(&Entry) -> u64) {
        let inflight = self.consumers.iter_mut().flat_map(|c| c.inflight.values_mut());
        for e in self.ready.iter_mut().chain(inflight) {
            if e.log != 0 && e.log < below {
                e.log = relog(e);
            }
        }
    }

    /// The log records of every held entry that has one (a deleted durable subscription's).
    pub fn logged_records(&self) -> Vec<u64> {
        let inflight = self.consumers.iter().flat_map(|c| c.inflight.values());
        self.ready.iter().chain(inflight).filter(|e| e.log != 0).map(|e| e.log).collect()
    }

    /// Ids of the held messages marked `persistent:true`, sorted.
    pub fn persistent_ids(&self) -> Vec<u64> {
        let inflight = self.consumers.iter().flat_map(|c| c.inflight.values());
        let mut v: Vec<u64> =
            self.ready.iter().chain(inflight).filter(|e| e.msg.header("persistent") == Some("true")).map(|e| e.msg.id).collect();
        v.sort_unstable();
        v
    }

    /// What a browser sees: the messages held (ready and in flight), oldest first, at most
    /// `max`; and whether there were more.
    pub fn browse(&self, max: usize) -> (Vec<Arc<Message>>, bool) {
        let inflight = self.consumers.iter().flat_map(|c| c.inflight.values());
        let mut all: Vec<(u64, &Arc<Message>)> = self.ready.iter().chain(inflight).map(|e| (e.seq, &e.msg)).collect();
        all.sort_unstable_by_key(|(seq, _)| *seq);
        let truncated = all.len() > max;
        (all.into_iter().take(max).map(|(_, m)| m.clone()).collect(), truncated)
    }

    /// Messages that left without being consumed since the last call.
    pub fn take_dead(&mut self) -> std::vec::Drain<'_, (Entry, DeadReason)> {
        for (_, reason) in &self.dead {
            match reason {
                DeadReason::Expired => self.expired += 1,
                _ => self.dead_lettered += 1,
            }
        }
        self.dead.drain(..)
    }

    /// Bytes of the messages held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Is a message with this sequence number still held (ready or in flight)?
    pub fn holds(&self, seq: u64) -> bool {
        self.ready.contains_seq(seq) || self.consumers.iter().any(|c| c.inflight.contains_key(&seq))
    }

    /// Remove a ready message whose time is up. Returns whether it was still waiting.
    pub fn expire(&mut self, seq: u64) -> bool {
        let Some(e) = self.ready.remove_seq(seq) else {
            return false;
        };
        self.forget(&e);
        self.dead.push((e, DeadReason::Expired));
        true
    }

    /// Drop every ready message (admin purge). In-flight messages stay with their consumers.
    pub fn purge(&mut self) -> usize {
        let all: Vec<Entry> = self.ready.take_all().collect();
        for e in &all {
            self.forget(e);
        }
        all.len()
    }

    fn grow(&mut self, n: usize) {
        self.bytes += n;
        self.tally.add(n);
    }

    fn shrink(&mut self, n: usize) {
        self.bytes -= n;
        self.tally.sub(n);
    }

    fn forget(&mut self, e: &Entry) {
        self.count -= 1;
        self.shrink(e.msg.weight());
        self.gone(e);
    }

    /// `e` left the queue for good: its log record, if any, is dead.
    fn gone(&mut self, e: &Entry) {
        if e.log != 0 {
            self.dropped.push((e.msg.id, e.log));
        }
    }
    /// Messages held (ready + in flight to client-ack consumers).
    pub fn depth(&self) -> usize {
        self.count
    }

    /// Messages waiting for a consumer (not delivered, or back after a NACK or a disconnect).
    pub fn ready(&self) -> usize {
        self.ready.len().min(self.count)
    }

    pub fn consumers(&self) -> usize {
        self.consumers.len()
    }

    /// Nothing held and nobody subscribed: the owner may forget this queue.
    pub fn is_idle(&self) -> bool {
        self.count == 0 && self.consumers.is_empty()
    }

    /// At or over a limit: an `overflow = "block"` queue holds its producers.
    pub fn over_high_watermark(&self) -> bool {
        self.count >= self.policy.max_messages || self.bytes >= self.policy.max_queue_bytes
    }

    /// Back under three quarters of both limits: held producers may go on.
    pub fn under_low_watermark(&self) -> bool {
        self.count <= self.policy.max_messages / 4 * 3 && self.bytes <= self.policy.max_queue_bytes / 4 * 3
    }

    /// Dead-letter the oldest ready message (of the lowest priority) to make room
    /// (`overflow = "drop-head"`); false if nothing is ready (everything held is in flight).
    pub fn drop_head(&mut self) -> bool {
        let Some(e) = self.ready.pop_lowest() else { return false };
        self.forget(&e);
        self.dead.push((e, DeadReason::Overflow));
        true
    }

    /// Would `msg` fit under the bounds?
    pub fn has_room(&self, msg: &Message) -> bool {
        self.count < self.policy.max_messages && self.bytes + msg.weight() <= self.policy.max_queue_bytes
    }

    /// Append a message. `seq` comes from the owning shard's counter, so sequence numbers keep
    /// growing even when a queue is forgotten and created again (a late bounce still sorts first).
    pub fn push(&mut self, msg: Arc<Message>, seq: u64, log: u64) {
        self.note_group(&msg);
        self.count += 1;
        self.grow(msg.weight());
        self.enqueued += 1;
        self.ready.push_back(Entry { seq, msg, redelivered: false, deliveries: 0, log, order: log });
    }

    /// A message recovered from the log: held again, marked redelivered (a consumer may have
    /// seen it before the crash).
    pub fn restore(&mut self, msg: Arc<Message>, seq: u64, log: u64) {
        self.note_group(&msg);
        self.count += 1;
        self.grow(msg.weight());
        self.enqueued += 1;
        self.ready.push_back(Entry { seq, msg, redelivered: true, deliveries: 0, log, order: log });
    }

    /// Put a message back in its place (NACK, consumer gone, bounced auto delivery), or to the
    /// dead letters once it has been redelivered `max_redeliveries` times. The message is
    /// counted as held on entry.
    fn requeue(&mut self, mut e: Entry) {
        let max = self.policy.max_redeliveries;
        if max > 0 && e.deliveries > max {
            self.forget(&e);
            self.dead.push((e, DeadReason::MaxRedeliveries));
            return;
        }
        e.redelivered = true;
        if self.constrained() {
            let l = (e.msg.priority as usize).min(LEVELS - 1);
            for c in self.consumers.iter_mut() {
                c.cursor[l] = c.cursor[l].min(e.seq);
            }
        }
        self.ready.insert_sorted(e);
    }

    /// Put consumer `i` on the ring if it may take a message and is not on it yet.
    fn enqueue(&mut self, i: usize) {
        let c = &mut self.consumers[i];
        if c.credit > 0 && !c.paused && !c.queued {
            c.queued = true;
            self.ring.push_back(i as u32);
        }
    }

    fn find(&self, key: SubKey) -> Option<usize> {
        self.index.get(&key).map(|&i| i as usize)
    }

    pub fn subscribe(&mut self, key: SubKey, mode: AckMode, prefetch: u32, opts: ConsumerOpts) {
        if self.index.contains_key(&key) {
            return;
        }
        let ConsumerOpts { selector, priority, exclusive } = opts;
        self.selective += selector.is_some() as usize;
        self.exclusives += exclusive as usize;
        self.prioritized += (priority != 0) as usize;
        self.joins += 1;
        self.index.insert(key, self.consumers.len() as u32);
        self.consumers.push(Consumer {
            key,
            credit: prefetch,
            retains: mode != AckMode::Auto,
            paused: false,
            queued: false,
            inflight: BTreeMap::new(),
            selector,
            priority,
            exclusive,
            joined: self.joins,
            groups: 0,
            cursor: [0; LEVELS],
        });
        self.enqueue(self.consumers.len() - 1);
    }

    /// Remove a consumer; what it had in flight goes back to the queue. The last consumer takes
    /// its place (the ring, not the vector, holds the round-robin order).
    pub fn unsubscribe(&mut self, key: SubKey) {
        let Some(i) = self.index.remove(&key) else { return };
        let c = self.consumers.swap_remove(i as usize);
        self.selective -= c.selector.is_some() as usize;
        self.exclusives -= c.exclusive as usize;
        self.prioritized -= (c.priority != 0) as usize;
        if c.groups > 0 {
            self.release_groups(key);
        }
        for (_, e) in c.inflight {
            self.requeue(e);
        }
        let moved = self.consumers.len() as u32;
        self.ring.retain(|&j| j != i);
        if i < moved {
            self.index.insert(self.consumers[i as usize].key, i);
            for j in self.ring.iter_mut().filter(|j| **j == moved) {
                *j = i;
            }
        }
    }

    /// ACK or NACK messages a consumer holds. Returns how many it held.
    pub fn settle(&mut self, key: SubKey, seqs: &Seqs, kind: SettleKind) -> usize {
        let Some(i) = self.find(key) else {
            return 0;
        };
        let c = &mut self.consumers[i];
        let mut back = Vec::new();
        let (mut n, mut gone) = (0, 0);
        for s in seqs {
            if let Some(e) = c.inflight.remove(s) {
                c.credit += 1;
                n += 1;
                match kind {
                    SettleKind::Ack => self.acked += 1,
                    SettleKind::Requeue | SettleKind::Reject => self.nacked += 1,
                }
                match kind {
                    SettleKind::Requeue => back.push(e),
                    SettleKind::Ack => {
                        self.count -= 1;
                        gone += e.msg.weight();
                        if e.log != 0 {
                            self.dropped.push((e.msg.id, e.log));
                        }
                    }
                    SettleKind::Reject => {
                        self.count -= 1;
                        gone += e.msg.weight();
                        if e.log != 0 {
                            self.dropped.push((e.msg.id, e.log));
                        }
                        self.dead.push((e, DeadReason::Rejected));
                    }
                }
            }
        }
        self.shrink(gone);
        for e in back {
            self.requeue(e);
        }
        self.enqueue(i);
        n
    }

    /// Auto-ack credit coming back from a consumer's worker.
    pub fn credit(&mut self, key: SubKey, n: u32) {
        if let Some(i) = self.find(key) {
            self.consumers[i].credit = self.consumers[i].credit.saturating_add(n);
            self.enqueue(i);
        }
    }

    /// Pause or resume deliveries to one consumer (its connection's output is full / drained).
    pub fn pace(&mut self, key: SubKey, paused: bool) {
        if let Some(i) = self.find(key) {
            self.consumers[i].paused = paused;
            self.enqueue(i);
        }
    }

    /// An auto-ack delivery that found nobody: count it back in and requeue it.
    /// `log`: the record the owner wrote again for it (an auto-ack delivery left the log when
    /// it was dispatched), or 0.
    pub fn bounce(&mut self, msg: Arc<Message>, seq: u64, deliveries: u32, log: u64) {
        self.note_group(&msg);
        self.count += 1;
        self.grow(msg.weight());
        // Its place in the log is the new record's: after a restart it follows messages that
        // arrived while it was out (an auto-ack delivery promises no order after a crash).
        self.requeue(Entry { seq, msg, redelivered: true, deliveries, log, order: log });
    }

    /// Hand ready messages to consumers with credit, round-robin. Expired messages met on the
    /// way are moved to the dead letters instead (`now_ms`: wall clock).
    pub fn dispatch(&mut self, out: &mut Vec<Dispatch>, now_ms: u64) {
        self.unfinished = false;
        if self.constrained() {
            if self.selectors_only() {
                // The ring serves here as on the fast path (rebuilt if the full constrained
                // dispatch ran last and left it stale).
                if std::mem::take(&mut self.was_constrained) {
                    self.rebuild_ring();
                }
                return self.dispatch_selective(out, now_ms);
            }
            self.was_constrained = true;
            return self.dispatch_constrained(out, now_ms);
        }
        if std::mem::take(&mut self.was_constrained) {
            self.rebuild_ring();
        }
        while !self.ready.is_empty() {
            if self.ready.front().is_some_and(|e| e.msg.expired(now_ms)) {
                if let Some(e) = self.ready.pop_front() {
                    self.forget(&e);
                    self.dead.push((e, DeadReason::Expired));
                }
                continue;
            }
            // Round-robin over the consumers that may take a message: O(1) however many
            // consumers have no credit (a scan of all of them per message was 28-33 us with
            // 10,000 idle consumers).
            let Some(i) = self.ring_next() else { break };
            let Some(entry) = self.ready.pop_front() else {
                self.ring.push_front(i as u32);
                break;
            };
            self.deliver(i, entry, out);
        }
    }

    /// The next consumer on the ring that may take a message, taken off it; consumers met on the
    /// way without credit (or paused) leave the ring until they may again.
    fn ring_next(&mut self) -> Option<usize> {
        while let Some(i) = self.ring.pop_front() {
            let c = &mut self.consumers[i as usize];
            if c.credit > 0 && !c.paused {
                return Some(i as usize);
            }
            c.queued = false;
        }
        None
    }

    /// Give `entry` to consumer `i` (taken off the ring; back at its end while it has credit).
    fn deliver(&mut self, i: usize, entry: Entry, out: &mut Vec<Dispatch>) {
        let c = &mut self.consumers[i];
        if c.credit > 1 && !c.paused {
            self.ring.push_back(i as u32);
        } else {
            c.queued = false;
        }
        self.deliver_to(i, entry, out);
    }

    /// Give `entry` to consumer `i` (its credit, in-flight set, the counters).
    fn deliver_to(&mut self, i: usize, mut entry: Entry, out: &mut Vec<Dispatch>) {
        entry.deliveries = entry.deliveries.saturating_add(1);
        let c = &mut self.consumers[i];
        c.credit -= 1;
        self.delivered += 1;
        self.redelivered += entry.redelivered as u64;
        let (key, retains) = (c.key, c.retains);
        if retains {
            c.inflight.insert(entry.seq, entry.clone());
        } else {
            // Auto-ack: delivered at most once, so it leaves the log as it leaves here.
            self.count -= 1;
            self.shrink(entry.msg.weight());
            self.gone(&entry);
            entry.log = 0;
        }
        out.push(Dispatch { key, entry, retained: retains });
    }

    /// Whether the last dispatch stopped at its budget with work left (see `unfinished`).
    pub fn unfinished(&self) -> bool {
        self.unfinished
    }
}

impl Drop for Queue {
    /// A queue forgotten while holding messages (admin delete, shutdown) gives their bytes back.
    fn drop(&mut self) {
        self.tally.sub(self.bytes + DEST_FOOTPRINT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::ConnRef;

    fn msg(i: u64) -> Arc<Message> {
        Arc::new(Message::new(i, "/queue/q".into(), vec![], vec![b'x'; 10].into()))
    }
    fn queue(max_redeliveries: u32) -> Queue {
        let mut p = Policy::defaults(&crate::config::Config::default());
        p.max_messages = 1;
        p.max_queue_bytes = 1000;
        p.max_redeliveries = max_redeliveries;
        Queue::new(Arc::new(p), 0, Tally::default())
    }
    fn key(slot: u32) -> SubKey {
        SubKey { conn: ConnRef { worker: 0, slot, gen: 0 }, serial: 0 }
    }

    #[test]
    fn dispatch_skips_consumers_without_credit_without_scanning_them() {
        let mut q = queue(0);
        // 10,000 consumers with no credit (client ack, prefetch 0 is never asked; exhaust 1).
        for slot in 0..10_000 {
            q.subscribe(key(slot), AckMode::Client, 1, ConsumerOpts::default());
        }
        for i in 0..10_000u64 {
            q.push(msg(i), i, 0);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        assert_eq!(out.len(), 10_000, "one each");
        assert!(q.ring.is_empty(), "nobody has credit left: the ring is empty, not scanned");
        // One auto-ack consumer with credit joins: the next messages go to it alone, round
        // after round, without visiting the others.
        q.subscribe(key(20_000), AckMode::Auto, 3, ConsumerOpts::default());
        for i in 10_000..10_006u64 {
            q.push(msg(i), i, 0);
        }
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(out.iter().map(|d| d.key.conn.slot).collect::<Vec<_>>(), [20_000; 3]);
        q.credit(key(20_000), 3);
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(out.len(), 3);
        assert_eq!(q.ring.len(), 0);
    }

    #[test]
    fn consumers_with_credit_take_turns() {
        let mut q = queue(0);
        for slot in 0..3 {
            q.subscribe(key(slot), AckMode::Auto, 10, ConsumerOpts::default());
        }
        for i in 0..9u64 {
            q.push(msg(i), i, 0);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        assert_eq!(out.iter().map(|d| d.key.conn.slot).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2, 0, 1, 2]);
        // A consumer leaving keeps the others' turns right (indices shift).
        q.unsubscribe(key(0));
        for i in 9..13u64 {
            q.push(msg(i), i, 0);
        }
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(out.iter().map(|d| d.key.conn.slot).collect::<Vec<_>>(), [1, 2, 1, 2]);
    }

    #[test]
    fn the_consumer_moved_into_a_leavers_place_is_still_found() {
        let mut q = queue(0);
        for slot in 0..3 {
            q.subscribe(key(slot), AckMode::ClientIndividual, 1, ConsumerOpts::default());
        }
        for i in 0..3u64 {
            q.push(msg(i), i, 0);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        // Consumer 0 leaves: consumer 2 takes its index; its ACK, credit and pause still land.
        q.unsubscribe(key(0));
        assert_eq!(q.settle(key(2), &Seqs::from_slice(&[2u64]), SettleKind::Ack), 1);
        assert_eq!(q.settle(key(0), &Seqs::from_slice(&[0u64]), SettleKind::Ack), 0, "gone");
        q.pace(key(2), true);
        out.clear();
        q.dispatch(&mut out, 0);
        assert!(out.is_empty(), "message 0 (requeued) waits: 1 has no credit, 2 is paused");
        q.pace(key(2), false);
        q.dispatch(&mut out, 0);
        assert_eq!(out.iter().map(|d| (d.key.conn.slot, d.entry.seq)).collect::<Vec<_>>(), [(2, 0)]);
        assert_eq!(q.consumers(), 2);
    }

    #[test]
    fn round_robin_with_credit() {
        let mut q = queue(0);
        q.subscribe(key(1), AckMode::Auto, 2, ConsumerOpts::default());
        q.subscribe(key(2), AckMode::Auto, 1, ConsumerOpts::default());
        for i in 0..5 {
            q.push(msg(i), i, 0);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        let who: Vec<u32> = out.iter().map(|d| d.key.conn.slot).collect();
        assert_eq!(who, vec![1, 2, 1]);
        assert_eq!(q.depth(), 2);
        q.credit(key(2), 1);
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn nack_and_unsubscribe_requeue_in_order() {
        let mut q = queue(0);
        q.subscribe(key(1), AckMode::Client, 10, ConsumerOpts::default());
        for i in 0..3 {
            q.push(msg(i), i, 0);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        assert_eq!(out.len(), 3);
        assert_eq!(q.depth(), 3);
        let seqs: Seqs = [out[1].entry.seq].into_iter().collect();
        assert_eq!(q.settle(key(1), &seqs, SettleKind::Ack), 1);
        assert_eq!(q.depth(), 2);
        q.unsubscribe(key(1));
        q.subscribe(key(2), AckMode::Auto, 10, ConsumerOpts::default());
        out.clear();
        q.dispatch(&mut out, 0);
        let ids: Vec<u64> = out.iter().map(|d| d.entry.msg.id).collect();
        assert_eq!(ids, vec![0, 2]);
        assert!(out.iter().all(|d| d.entry.redelivered));
        assert_eq!(q.depth(), 0);
        assert!(!q.is_idle(), "a consumer is still subscribed");
    }

    #[test]
    fn selective_consumers_take_what_they_accept_within_a_budget_per_dispatch() {
        let sel = |t: &str| Some(Arc::new(Selector::parse(t).unwrap()));
        let with = |i: u64, n: &str| Arc::new(Message::new(i, "/queue/q".into(), vec![("n".into(), n.into())], vec![].into()));
        let mut q = queue(0);
        let mut p = (*q.policy).clone();
        p.max_messages = 1_000_000;
        p.max_queue_bytes = 1 << 30;
        q.policy = Arc::new(p);
        q.subscribe(key(1), AckMode::ClientIndividual, 10, ConsumerOpts { selector: sel("n = 'one'"), ..Default::default() });
        q.subscribe(key(2), AckMode::ClientIndividual, 10, ConsumerOpts { selector: sel("n = 'two'"), ..Default::default() });
        let far = 2 * SELECTOR_BUDGET as u64;
        for i in 0..far {
            q.push(with(i, "other"), i, 0);
        }
        q.push(with(far, "two"), far, 0);
        q.push(with(far + 1, "one"), far + 1, 0);
        let mut out = Vec::new();
        let mut calls = 0;
        loop {
            q.dispatch(&mut out, 0);
            calls += 1;
            if !q.unfinished() {
                break;
            }
            assert!(calls < 10, "each call makes progress");
        }
        // Each message of the backlog costs two evaluations (one per consumer on the ring).
        assert!((4..=6).contains(&calls), "{calls}: about four budgets over the backlog, then the matches");
        let mut got: Vec<_> = out.iter().map(|d| (d.key.conn.slot, d.entry.seq)).collect();
        got.sort_unstable();
        assert_eq!(got, [(1, far + 1), (2, far)]);
        // Passed over once, the backlog is not scanned again until a consumer joins the ring.
        q.push(with(far + 2, "one"), far + 2, 0);
        out.clear();
        q.dispatch(&mut out, 0);
        assert!(!q.unfinished());
        assert_eq!(out.iter().map(|d| d.entry.seq).collect::<Vec<_>>(), [far + 2]);
        // A consumer without a selector takes the oldest waiting messages.
        q.subscribe(key(3), AckMode::Auto, 2, ConsumerOpts::default());
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(out.iter().map(|d| (d.key.conn.slot, d.entry.seq)).collect::<Vec<_>>(), [(3, 0), (3, 1)]);
    }

    fn with_headers(i: u64, h: &[(&str, &str)]) -> Arc<Message> {
        let headers = h.iter().map(|(k, v)| (Box::from(*k), Box::from(*v))).collect();
        Arc::new(Message::new(i, "/queue/q".into(), headers, vec![].into()))
    }

    fn roomy() -> Queue {
        let mut q = queue(0);
        let mut p = (*q.policy).clone();
        p.max_messages = 1000;
        p.max_queue_bytes = 1 << 20;
        q.policy = Arc::new(p);
        q
    }

    fn ids(out: &[Dispatch]) -> Vec<(u32, u64)> {
        out.iter().map(|d| (d.key.conn.slot, d.entry.msg.id)).collect()
    }

    #[test]
    fn higher_priorities_go_first_and_a_requeued_message_keeps_its_level() {
        let mut q = roomy();
        for (i, p) in [(0, "1"), (1, "9"), (2, "4"), (3, "9"), (4, "")].iter() {
            q.push(with_headers(*i, &[("priority", p)]), *i, 0);
        }
        q.subscribe(key(1), AckMode::ClientIndividual, 2, ConsumerOpts::default());
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        assert_eq!(ids(&out), [(1, 1), (1, 3)]);
        let back: Seqs = [out[0].entry.seq].into_iter().collect();
        q.settle(key(1), &back, SettleKind::Requeue);
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(ids(&out), [(1, 1)], "the NACKed 9 before the 4s");
        q.subscribe(key(2), AckMode::Auto, 10, ConsumerOpts::default());
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(ids(&out), [(2, 2), (2, 4), (2, 0)], "then 4s in order (no header is 4), then 1");
    }

    #[test]
    fn higher_priority_consumers_are_offered_messages_first() {
        let mut q = roomy();
        q.subscribe(key(1), AckMode::ClientIndividual, 10, ConsumerOpts::default());
        q.subscribe(key(2), AckMode::ClientIndividual, 2, ConsumerOpts { priority: 5, ..Default::default() });
        for i in 0..5 {
            q.push(with_headers(i, &[]), i, 0);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        assert_eq!(ids(&out), [(2, 0), (2, 1), (1, 2), (1, 3), (1, 4)], "the high one to its prefetch, the rest below");
        // Its credit back, the high one is first again.
        let seqs: Seqs = [0].into_iter().collect();
        q.settle(key(2), &seqs, SettleKind::Ack);
        q.push(with_headers(5, &[]), 5, 0);
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(ids(&out), [(2, 5)]);
    }

    #[test]
    fn the_oldest_exclusive_consumer_gets_everything_and_the_next_takes_over() {
        let mut q = roomy();
        q.subscribe(key(1), AckMode::Auto, 100, ConsumerOpts::default());
        q.subscribe(key(2), AckMode::Auto, 100, ConsumerOpts { exclusive: true, ..Default::default() });
        q.subscribe(key(3), AckMode::Auto, 100, ConsumerOpts { exclusive: true, ..Default::default() });
        for i in 0..4 {
            q.push(with_headers(i, &[]), i, 0);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        assert!(ids(&out).iter().all(|(slot, _)| *slot == 2), "{:?}", ids(&out));
        q.unsubscribe(key(2));
        q.push(with_headers(4, &[]), 4, 0);
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(ids(&out), [(3, 4)]);
        q.unsubscribe(key(3));
        q.push(with_headers(5, &[]), 5, 0);
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(ids(&out), [(1, 5)], "no exclusive consumer left: the others share again");
    }

    #[test]
    fn a_message_group_sticks_to_one_consumer_until_closed_or_it_leaves() {
        let mut q = roomy();
        q.subscribe(key(1), AckMode::Auto, 100, ConsumerOpts::default());
        q.subscribe(key(2), AckMode::Auto, 100, ConsumerOpts::default());
        let groups = ["a", "b", "a", "a", "b", "c", "a"];
        for (i, g) in groups.iter().enumerate() {
            q.push(with_headers(i as u64, &[("JMSXGroupID", g)]), i as u64, 0);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out, 0);
        assert_eq!(out.len(), groups.len());
        let owner = |g: &str, out: &[Dispatch]| -> Vec<u32> {
            let mut v: Vec<u32> = out.iter().filter(|d| d.entry.msg.header("JMSXGroupID") == Some(g)).map(|d| d.key.conn.slot).collect();
            v.dedup();
            v
        };
        let a = owner("a", &out);
        assert_eq!(a.len(), 1, "group a on one consumer: {:?}", ids(&out));
        assert_eq!(owner("b", &out).len(), 1);
        // Its consumer leaves: the group moves to the other one.
        let gone = key(a[0]);
        q.unsubscribe(gone);
        q.push(with_headers(10, &[("JMSXGroupID", "a")]), 10, 0);
        out.clear();
        q.dispatch(&mut out, 0);
        let other = if a[0] == 1 { 2 } else { 1 };
        assert_eq!(ids(&out), [(other, 10)]);
        // JMSXGroupSeq -1 closes it; the buckets are freed and the fast path resumes when
        // no group is held.
        q.push(with_headers(11, &[("JMSXGroupID", "a"), ("JMSXGroupSeq", "-1")]), 11, 0);
        out.clear();
        q.dispatch(&mut out, 0);
        assert_eq!(ids(&out), [(other, 11)]);
    }

    #[test]
    fn bounds() {
        let mut q = queue(0);
        let m = msg(0);
        assert!(q.has_room(&m));
        q.push(m.clone(), 0, 0);
        assert!(!q.has_room(&m));
        let mut p = (*q.policy).clone();
        p.max_messages = 10;
        p.max_queue_bytes = 2 * m.weight() - 1;
        q.policy = Arc::new(p);
        assert!(!q.has_room(&m));
    }

    #[test]
    fn dead_letters_after_max_redeliveries_and_on_expiry() {
        let mut q = queue(1);
        q.subscribe(key(1), AckMode::Client, 10, ConsumerOpts::default());
        q.push(msg(0), 0, 0);
        let mut expiring = Message::new(1, "/queue/q".into(), vec![], vec![].into());
        expiring.expires = 50;
        q.push(Arc::new(expiring), 1, 0);
        let mut out = Vec::new();
        q.dispatch(&mut out, 100);
        assert_eq!(out.len(), 1, "the expired message is not delivered");
        assert_eq!(q.take_dead().map(|(e, r)| (e.seq, r)).collect::<Vec<_>>(), vec![(1, DeadReason::Expired)]);
        for round in 0..2 {
            let seqs: Seqs = [0].into_iter().collect();
            assert_eq!(q.settle(key(1), &seqs, SettleKind::Requeue), 1);
            out.clear();
            q.dispatch(&mut out, 100);
            assert_eq!(out.len(), 1 - round, "delivered twice, then dead-lettered");
        }
        assert_eq!(q.take_dead().map(|(e, r)| (e.deliveries, r)).collect::<Vec<_>>(), vec![(2, DeadReason::MaxRedeliveries)]);
        assert_eq!(q.depth(), 0);
    }
}
