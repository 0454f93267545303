//! Durable topic subscriptions at the topic's owner: each is a queue of its own, fed by every
//! message published to the topic, kept while nobody is subscribed (bounded by the topic's
//! `max_messages` / `max_queue_bytes` and `overflow`, like a queue), consumed by at most one
//! subscription at a time, and deleted only by an UNSUBSCRIBE that names it.
//!
//! Runs on the owning worker, as part of [`Shard`]. Its persistent messages are logged under
//! [`durable_key`] (topic, identity, name), its definition as a subscription record; a
//! restart restores both. Invariants: a subscription's `consumer` is the one key its queue
//! has as consumer, if any; `last` is the most recent consumer's key (an auto-ack delivery
//! bounced after its subscription left finds its way back by it). Publishing to a topic with
//! durable subscriptions allocates nothing per subscription beyond the queue entry.

use super::*;
use crate::broker::{AckMode, ConnRef};
use crate::journal::payload::durable_key;

/// (identity, name): the client-id or login, and the subscription's name.
pub type DurableId = (Box<str>, Box<str>);

#[derive(Debug)]
pub struct DurableSub {
    pub(super) queue: Queue,
    /// Its messages' destination in the log ([`durable_key`]), made once.
    pub(super) key: Box<str>,
    /// The log record that defined it (0: not logged).
    pub(super) record: u64,
    pub(super) consumer: Option<SubKey>,
    pub(super) last: Option<SubKey>,
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn subscribe_durable(
        &mut self,
        dest: Arc<str>,
        key: SubKey,
        mode: AckMode,
        prefetch: u32,
        id: DurableId,
        barrier: bool,
        out: &mut impl Outlet,
    ) {
        let (policies, tally) = (self.policies.clone(), self.tally.clone());
        let t = self.topic_mut(&dest);
        let fresh = !t.durables.contains_key(&id);
        let full = fresh && t.durables.len() + t.subs.len() >= t.policy.max_subscribers;
        let idle = t.is_idle();
        // A durable subscription is a destination of its own: it counts against this shard's
        // share of max_destinations, or a client could create them without end.
        let share = self.policies.max_destinations.div_ceil(self.workers.max(1));
        let crowded = fresh && self.queues.len() + self.topics.len() + self.durable_subscriptions() >= share;
        if full || crowded {
            let detail =
                if full { format!("{dest} has as many subscribers as it may (max_connections)") } else { self.no_room_detail(&dest) };
            if idle {
                self.topics.remove(&dest);
            }
            out.answer(key.conn.worker as usize, FromOwner::SubscribeRefused { key, word: ErrorWord::DestFlup, detail });
            return;
        }
        let t = self.topic_mut(&dest);
        if let Some(d) = t.durables.get(&id) {
            if d.consumer.is_some_and(|c| c != key) {
                let detail = format!("the durable subscription {:?} of {:?} on {dest} is in use by another connection", id.1, id.0);
                out.answer(key.conn.worker as usize, FromOwner::SubscribeRefused { key, word: ErrorWord::SubsFlup, detail });
                return;
            }
        }
        let policy = t.policy.clone();
        let d = t.durables.entry(id.clone()).or_insert_with(|| DurableSub {
            queue: Queue::new(policy, policies.gen, tally),
            key: durable_key(&dest, &id.0, &id.1).into(),
            record: 0,
            consumer: None,
            last: None,
        });
        d.queue.subscribe(key, mode, prefetch, Default::default());
        d.consumer = Some(key);
        d.last = Some(key);
        if fresh {
            if let Some(j) = &mut self.journal {
                let record = j.subscription(true, &dest, &id.0, &id.1, 0, &[], Some(key.conn));
                if let Some(d) = self.topics.get_mut(&dest).and_then(|t| t.durables.get_mut(&id)) {
                    d.record = record;
                }
            }
            log::debug!("{dest}: durable subscription {:?} of {:?} created", id.1, id.0);
        }
        if barrier {
            // Before any kept message: the RECEIPT first (and, for a new one, once it is logged).
            match &mut self.journal {
                Some(j) => j.barrier(key.conn, out),
                None => out.answer(key.conn.worker as usize, FromOwner::BarrierDone { conn: key.conn, owner: out.me() as u16 }),
            }
        }
        self.dispatch_durables(&dest, out);
    }

    /// Apply `f` to the durable subscription of `topic` that `key` consumes (or last
    /// consumed), with the journal at hand, then dispatch. False if `key` has none there.
    pub(super) fn with_durable(
        &mut self,
        topic: &Arc<str>,
        key: SubKey,
        out: &mut impl Outlet,
        f: impl FnOnce(&mut DurableSub, &mut Option<Journal>),
    ) -> bool {
        let found =
            self.topics.get_mut(topic).and_then(|t| t.durables.values_mut().find(|d| d.consumer == Some(key) || d.last == Some(key)));
        let Some(d) = found else { return false };
        f(d, &mut self.journal);
        self.dispatch_durables(topic, out);
        true
    }

    /// Hand the ready messages of every durable subscription of `topic` to their consumers.
    pub(super) fn dispatch_durables(&mut self, topic: &Arc<str>, out: &mut impl Outlet) {
        let Some(t) = self.topics.get_mut(topic) else { return };
        let mut policy = None;
        for d in t.durables.values_mut() {
            d.queue.dispatch(&mut self.scratch, self.now_ms);
            let dead = self.dead.len();
            self.dead.extend(d.queue.take_dead());
            if self.dead.len() > dead {
                policy = Some(d.queue.policy.clone());
            }
            Self::log_drops(&mut self.journal, self.acting, &d.key, &mut d.queue);
        }
        Self::answer_dispatched(&mut self.scratch, out);
        if let Some(policy) = policy {
            self.dead_letter(topic, &policy, out);
        }
        let level = self.durable_level(topic);
        self.flow_at(topic, level, out);
    }

    /// (some durable subscription of `topic` is over its limits and holds producers, all are
    /// back under three quarters of them).
    pub(super) fn durable_level(&self, topic: &str) -> (bool, bool) {
        let Some(t) = self.topics.get(topic) else { return (false, true) };
        let over = t.durables.values().any(|d| d.queue.policy.overflow == Overflow::Block && d.queue.over_high_watermark());
        (over, t.durables.values().all(|d| d.queue.under_low_watermark()))
    }

    /// Whether every durable subscription of `topic` can take `msg` (under `overflow =
    /// "reject"`, one that cannot refuses the whole SEND); `drop-head` ones make room.
    pub(super) fn durables_take(&mut self, topic: &str, msg: &Message) -> Result<(), String> {
        let Some(t) = self.topics.get_mut(topic) else { return Ok(()) };
        for (id, d) in t.durables.iter_mut() {
            if d.queue.has_room(msg) {
                continue;
            }
            match d.queue.policy.overflow {
                Overflow::Block => {}
                Overflow::DropHead => {
                    while !d.queue.has_room(msg) && d.queue.drop_head() {
                        self.stats.overflow_dropped += 1;
                    }
                }
                Overflow::Reject => {
                    return Err(format!(
                        "the durable subscription {:?} of {:?} on {topic} is full ({} messages kept); the message was not accepted",
                        id.1,
                        id.0,
                        d.queue.depth()
                    ))
                }
            }
        }
        Ok(())
    }

    /// Give `msg` to every durable subscription of `topic` (after [`Shard::durables_take`]).
    pub(super) fn feed_durables(&mut self, topic: &Arc<str>, msg: &Arc<Message>, logged: bool, out: &mut impl Outlet) {
        let Some(t) = self.topics.get_mut(topic) else { return };
        for d in t.durables.values_mut() {
            let seq = self.next_seq;
            self.next_seq += 1;
            let log = match &mut self.journal {
                Some(j) if logged => j.message_as(msg, &d.key, self.acting),
                _ => 0,
            };
            d.queue.push(msg.clone(), seq, log);
        }
        self.dispatch_durables(topic, out);
    }

    /// Delete the durable subscription `id` of `topic` (of every topic, for `None`) and
    /// everything it kept (an UNSUBSCRIBE naming it).
    pub(super) fn forget_durables(&mut self, topic: Option<Arc<str>>, from: ConnRef, id: DurableId, out: &mut impl Outlet) {
        let topics: Vec<Arc<str>> = match topic {
            Some(t) => vec![t],
            None => self.topics.iter().filter(|(_, t)| t.durables.contains_key(&id)).map(|(n, _)| n.clone()).collect(),
        };
        for t in topics {
            self.forget_durable(&t, from, id.clone(), out);
        }
    }

    fn forget_durable(&mut self, topic: &Arc<str>, from: ConnRef, id: DurableId, out: &mut impl Outlet) {
        let Some(t) = self.topics.get_mut(topic) else { return };
        match t.durables.get(&id) {
            None => return,
            Some(d) if d.consumer.is_some_and(|c| c.conn != from) => {
                let detail = format!("the durable subscription {:?} of {:?} on {topic} is in use by another connection", id.1, id.0);
                out.answer(from.worker as usize, FromOwner::Rejected { conn: from, word: ErrorWord::SubsFlup, detail, receipt: None });
                return;
            }
            Some(_) => {}
        }
        let Some(mut d) = t.durables.remove(&id) else { return };
        let idle = t.is_idle();
        let gone = d.queue.logged_records();
        if let Some(j) = &mut self.journal {
            j.subscription(false, topic, &id.0, &id.1, d.record, &gone, Some(from));
        }
        drop(d.queue.take_dropped());
        log::debug!("{topic}: durable subscription {:?} of {:?} deleted ({} messages)", id.1, id.0, d.queue.depth());
        if idle {
            self.topics.remove(topic);
        }
        let level = self.durable_level(topic);
        self.flow_at(topic, level, out);
    }

    /// A durable subscription recovered from the log (defined by record `record`).
    pub fn restore_durable(&mut self, topic: &str, identity: &str, name: &str, record: u64) {
        let topic: Arc<str> = Arc::from(topic);
        let (policies, tally) = (self.policies.clone(), self.tally.clone());
        let t = self.topic_mut(&topic);
        let policy = t.policy.clone();
        let key = durable_key(&topic, identity, name).into();
        t.durables.insert(
            (identity.into(), name.into()),
            DurableSub { queue: Queue::new(policy, policies.gen, tally), key, record, consumer: None, last: None },
        );
    }

    /// Compaction: copy forward the records below `below` of every durable subscription.
    pub(super) fn relog_durables(&mut self, below: u64) {
        let Some(j) = &mut self.journal else { return };
        for (topic, t) in self.topics.iter_mut() {
            for (id, d) in t.durables.iter_mut() {
                if d.record != 0 && d.record < below {
                    d.record = j.relog_subscription(topic, &id.0, &id.1, d.record);
                }
                d.queue.relog(below, |e| j.relog(&e.msg, &d.key, e.log, e.order));
            }
        }
    }
}
