//! One queue: competing consumers with credit, redelivery in order (owner worker only).
//!
//! # Invariants
//! - `ready` is sorted by `seq`; a requeued message goes back to its place, so redeliveries keep
//!   the original order.
//! - `count` and `bytes` cover ready messages plus messages in flight to client-ack consumers;
//!   an auto-ack delivery leaves the queue when dispatched.
//! - A consumer never has more than its prefetch in flight (`credit` counts what is left).

use super::{AckMode, Message, SubKey};
use crate::bus::Seqs;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub msg: Arc<Message>,
    pub redelivered: bool,
}

#[derive(Debug)]
struct Consumer {
    key: SubKey,
    credit: u32,
    retains: bool,
    inflight: BTreeMap<u64, Entry>,
}

/// A delivery the owner must send to a consumer's worker.
#[derive(Debug)]
pub struct Dispatch {
    pub key: SubKey,
    pub entry: Entry,
    pub retained: bool,
}

#[derive(Debug, Default)]
pub struct Queue {
    ready: VecDeque<Entry>,
    consumers: Vec<Consumer>,
    rr: usize,
    count: usize,
    bytes: usize,
    /// Messages ever enqueued (stats).
    pub enqueued: u64,
    /// Deliveries made (stats).
    pub delivered: u64,
}

impl Queue {
    /// Messages held (ready + in flight to client-ack consumers).
    pub fn depth(&self) -> usize {
        self.count
    }

    pub fn consumers(&self) -> usize {
        self.consumers.len()
    }

    /// Nothing held and nobody subscribed: the owner may forget this queue.
    pub fn is_idle(&self) -> bool {
        self.count == 0 && self.consumers.is_empty()
    }

    /// Would `msg` fit under the bounds?
    pub fn has_room(&self, msg: &Message, max_messages: usize, max_bytes: usize) -> bool {
        self.count < max_messages && self.bytes + msg.weight() <= max_bytes
    }

    /// Append a message. `seq` comes from the owning shard's counter, so sequence numbers keep
    /// growing even when a queue is forgotten and created again (a late bounce still sorts first).
    pub fn push(&mut self, msg: Arc<Message>, seq: u64) {
        self.count += 1;
        self.bytes += msg.weight();
        self.enqueued += 1;
        self.ready.push_back(Entry { seq, msg, redelivered: false });
    }

    /// Put a message back in its place (NACK, consumer gone, bounced auto delivery).
    fn requeue(&mut self, mut e: Entry) {
        e.redelivered = true;
        let pos = self.ready.partition_point(|x| x.seq < e.seq);
        self.ready.insert(pos, e);
    }

    pub fn subscribe(&mut self, key: SubKey, mode: AckMode, prefetch: u32) {
        if self.consumers.iter().any(|c| c.key == key) {
            return;
        }
        self.consumers.push(Consumer { key, credit: prefetch, retains: mode != AckMode::Auto, inflight: BTreeMap::new() });
    }

    /// Remove a consumer; what it had in flight goes back to the queue.
    pub fn unsubscribe(&mut self, key: SubKey) {
        if let Some(i) = self.consumers.iter().position(|c| c.key == key) {
            let c = self.consumers.remove(i);
            for (_, e) in c.inflight {
                self.requeue(e);
            }
            if self.rr > i {
                self.rr -= 1;
            }
        }
    }

    /// ACK or NACK messages a consumer holds. Returns how many it held.
    pub fn settle(&mut self, key: SubKey, seqs: &Seqs, requeue: bool) -> usize {
        let Some(c) = self.consumers.iter_mut().find(|c| c.key == key) else {
            return 0;
        };
        let mut back = Vec::new();
        let mut n = 0;
        for s in seqs {
            if let Some(e) = c.inflight.remove(s) {
                c.credit += 1;
                n += 1;
                if requeue {
                    back.push(e);
                } else {
                    self.count -= 1;
                    self.bytes -= e.msg.weight();
                }
            }
        }
        for e in back {
            self.requeue(e);
        }
        n
    }

    /// Auto-ack credit coming back from a consumer's worker.
    pub fn credit(&mut self, key: SubKey, n: u32) {
        if let Some(c) = self.consumers.iter_mut().find(|c| c.key == key) {
            c.credit = c.credit.saturating_add(n);
        }
    }

    /// An auto-ack delivery that found nobody: count it back in and requeue it.
    pub fn bounce(&mut self, msg: Arc<Message>, seq: u64) {
        self.count += 1;
        self.bytes += msg.weight();
        self.requeue(Entry { seq, msg, redelivered: true });
    }

    /// Hand ready messages to consumers with credit, round-robin.
    pub fn dispatch(&mut self, out: &mut Vec<Dispatch>) {
        let n = self.consumers.len();
        while !self.ready.is_empty() && n > 0 {
            let mut picked = None;
            for k in 0..n {
                let i = (self.rr + k) % n;
                if self.consumers[i].credit > 0 {
                    picked = Some(i);
                    break;
                }
            }
            let Some(i) = picked else { break };
            self.rr = (i + 1) % n;
            let Some(entry) = self.ready.pop_front() else {
                break;
            };
            let c = &mut self.consumers[i];
            c.credit -= 1;
            self.delivered += 1;
            if c.retains {
                c.inflight.insert(entry.seq, entry.clone());
            } else {
                self.count -= 1;
                self.bytes -= entry.msg.weight();
            }
            out.push(Dispatch { key: c.key, entry, retained: c.retains });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::ConnRef;

    fn msg(i: u64) -> Arc<Message> {
        Arc::new(Message::new(i, "/queue/q".into(), vec![], vec![b'x'; 10].into()))
    }
    fn key(slot: u32) -> SubKey {
        SubKey { conn: ConnRef { worker: 0, slot, gen: 0 }, serial: 0 }
    }

    #[test]
    fn round_robin_with_credit() {
        let mut q = Queue::default();
        q.subscribe(key(1), AckMode::Auto, 2);
        q.subscribe(key(2), AckMode::Auto, 1);
        for i in 0..5 {
            q.push(msg(i), i);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out);
        let who: Vec<u32> = out.iter().map(|d| d.key.conn.slot).collect();
        assert_eq!(who, vec![1, 2, 1]);
        assert_eq!(q.depth(), 2);
        q.credit(key(2), 1);
        out.clear();
        q.dispatch(&mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn nack_and_unsubscribe_requeue_in_order() {
        let mut q = Queue::default();
        q.subscribe(key(1), AckMode::Client, 10);
        for i in 0..3 {
            q.push(msg(i), i);
        }
        let mut out = Vec::new();
        q.dispatch(&mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(q.depth(), 3);
        let seqs: Seqs = [out[1].entry.seq].into_iter().collect();
        assert_eq!(q.settle(key(1), &seqs, false), 1);
        assert_eq!(q.depth(), 2);
        q.unsubscribe(key(1));
        q.subscribe(key(2), AckMode::Auto, 10);
        out.clear();
        q.dispatch(&mut out);
        let ids: Vec<u64> = out.iter().map(|d| d.entry.msg.id).collect();
        assert_eq!(ids, vec![0, 2]);
        assert!(out.iter().all(|d| d.entry.redelivered));
        assert_eq!(q.depth(), 0);
        assert!(!q.is_idle(), "a consumer is still subscribed");
    }

    #[test]
    fn bounds() {
        let mut q = Queue::default();
        let m = msg(0);
        assert!(q.has_room(&m, 1, 1000));
        q.push(m.clone(), 0);
        assert!(!q.has_room(&m, 1, 1000));
        assert!(!q.has_room(&m, 10, m.weight()));
    }
}
