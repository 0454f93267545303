//! The destinations one worker owns, and how it applies [`ToOwner`] requests to them.
//!
//! Runs only on the owning worker. Topics keep a subscriber count per worker and send one
//! [`ToWorker::TopicMessage`] per worker that has subscribers; the receiving worker fans out to
//! its local subscribers. Queues dispatch each message to one consumer.
//!
//! # Invariants
//! - A topic with no subscribers and a queue with nothing held and nobody subscribed are removed,
//!   so the table holds only live state.
//! - A message is never dropped without the publisher hearing of it: a SEND to a full queue is
//!   answered with [`ToWorker::Rejected`] (`q flup`). A topic message with no subscriber at all is
//!   not delivered to anyone (topic semantics) and is counted in `unrouted`.

use super::queue::{Dispatch, Queue};
use super::{DestKind, Message};
use crate::bus::{Outbox, ToOwner, ToWorker};
use crate::config::Config;
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Debug, Default)]
struct Topic {
    /// Subscriptions per worker, indexed by worker.
    per_worker: Vec<u32>,
    total: u32,
    delivered: u64,
}

/// One destination on the console page.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DestInfo {
    pub name: String,
    pub kind: &'static str,
    pub subscribers: usize,
    pub depth: usize,
    pub enqueued: u64,
    pub delivered: u64,
}

/// Counters for the stats pages.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct ShardStats {
    pub published: u64,
    pub unrouted: u64,
    pub rejected: u64,
}

pub struct Shard {
    topics: HashMap<Arc<str>, Topic>,
    queues: HashMap<Arc<str>, Queue>,
    workers: usize,
    max_messages: usize,
    max_queue_bytes: usize,
    scratch: Vec<Dispatch>,
    next_seq: u64,
    pub stats: ShardStats,
}

impl Shard {
    pub fn new(cfg: &Config, workers: usize) -> Shard {
        Shard {
            topics: HashMap::new(),
            queues: HashMap::new(),
            workers,
            max_messages: cfg.max_messages,
            max_queue_bytes: cfg.max_queue_bytes,
            scratch: Vec::new(),
            next_seq: 0,
            stats: ShardStats::default(),
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
            subscribers: t.total as usize,
            depth: 0,
            enqueued: 0,
            delivered: t.delivered,
        });
        let queues = self.queues.iter().map(|(n, q)| DestInfo {
            name: n.to_string(),
            kind: "queue",
            subscribers: q.consumers(),
            depth: q.depth(),
            enqueued: q.enqueued,
            delivered: q.delivered,
        });
        let all: Vec<DestInfo> = topics.chain(queues).take(max + 1).collect();
        let truncated = all.len() > max;
        (all.into_iter().take(max).collect(), truncated)
    }

    /// Depth of a queue this shard owns.
    pub fn queue_depth(&self, dest: &str) -> Option<usize> {
        self.queues.get(dest).map(|q| q.depth())
    }

    /// Apply one request.
    pub fn handle(&mut self, req: ToOwner, out: &mut Outbox) {
        match req {
            ToOwner::Publish { msg, from, receipt } => self.publish(msg, from, receipt, out),
            ToOwner::Subscribe { dest, key, mode, prefetch } => match DestKind::of(&dest) {
                DestKind::Topic => {
                    let t = self.topics.entry(dest).or_default();
                    if t.per_worker.is_empty() {
                        t.per_worker = vec![0; self.workers];
                    }
                    t.per_worker[key.conn.worker as usize] += 1;
                    t.total += 1;
                }
                DestKind::Queue => {
                    let q = self.queues.entry(dest.clone()).or_default();
                    q.subscribe(key, mode, prefetch);
                    self.dispatch(&dest, out);
                }
            },
            ToOwner::Unsubscribe { dest, key } => match DestKind::of(&dest) {
                DestKind::Topic => {
                    if let Some(t) = self.topics.get_mut(&dest) {
                        let w = key.conn.worker as usize;
                        if t.per_worker.get(w).copied().unwrap_or(0) > 0 {
                            t.per_worker[w] -= 1;
                            t.total -= 1;
                        }
                        if t.total == 0 {
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
            ToOwner::Settle { dest, key, seqs, requeue } => {
                if let Some(q) = self.queues.get_mut(&dest) {
                    q.settle(key, &seqs, requeue);
                }
                self.dispatch(&dest, out);
            }
            ToOwner::Credit { dest, key, n } => {
                if let Some(q) = self.queues.get_mut(&dest) {
                    q.credit(key, n);
                }
                self.dispatch(&dest, out);
            }
            ToOwner::Bounce { dest, msg, seq } => {
                self.queues.entry(dest.clone()).or_default().bounce(msg, seq);
                self.dispatch(&dest, out);
            }
            ToOwner::Stats { .. } => {} // answered by the worker, which knows its connections
            ToOwner::Barrier { from } => {
                let owner = out.me() as u16;
                out.to_worker(from.worker as usize, ToWorker::BarrierDone { conn: from, owner })
            }
        }
    }

    fn publish(&mut self, msg: Arc<Message>, from: crate::broker::ConnRef, receipt: Option<Box<str>>, out: &mut Outbox) {
        let dest = msg.destination.clone();
        match DestKind::of(&dest) {
            DestKind::Topic => {
                self.stats.published += 1;
                let Some(t) = self.topics.get_mut(&dest) else {
                    self.stats.unrouted += 1;
                    return;
                };
                t.delivered += t.total as u64;
                for (w, &n) in t.per_worker.iter().enumerate() {
                    if n > 0 {
                        out.to_worker(w, ToWorker::TopicMessage { dest: dest.clone(), msg: msg.clone() });
                    }
                }
            }
            DestKind::Queue => {
                let q = self.queues.entry(dest.clone()).or_default();
                if !q.has_room(&msg, self.max_messages, self.max_queue_bytes) {
                    self.stats.rejected += 1;
                    let detail = format!(
                        "queue {dest} is full ({} messages held; limits: max_messages = {}, max_queue_bytes = {}); the message was not accepted",
                        q.depth(),
                        self.max_messages,
                        self.max_queue_bytes
                    );
                    if q.is_idle() {
                        self.queues.remove(&dest);
                    }
                    if from.worker == crate::broker::EXTERNAL {
                        log::warn!("ServerHandle::publish to {dest} refused: {detail}");
                    } else {
                        out.to_worker(from.worker as usize, ToWorker::Rejected { conn: from, word: "q flup", detail, receipt });
                    }
                    return;
                }
                self.stats.published += 1;
                q.push(msg, self.next_seq);
                self.next_seq += 1;
                self.dispatch(&dest, out);
            }
        }
    }

    fn dispatch(&mut self, dest: &Arc<str>, out: &mut Outbox) {
        let Some(q) = self.queues.get_mut(dest) else {
            return;
        };
        q.dispatch(&mut self.scratch);
        let idle = q.is_idle();
        for d in self.scratch.drain(..) {
            out.to_worker(
                d.key.conn.worker as usize,
                ToWorker::QueueMessage {
                    key: d.key,
                    msg: d.entry.msg,
                    seq: d.entry.seq,
                    redelivered: d.entry.redelivered,
                    retained: d.retained,
                },
            );
        }
        if idle {
            self.queues.remove(dest);
        }
    }
}
