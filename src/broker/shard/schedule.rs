//! Scheduled delivery on the owner: messages held until their time (`AMQ_SCHEDULED_DELAY`,
//! `AMQ_SCHEDULED_TIME`, repeated with `AMQ_SCHEDULED_PERIOD` / `AMQ_SCHEDULED_REPEAT`), then
//! published to their destination as if just sent.
//!
//! Runs on the owning worker; the worker calls [`Shard::expire`] when the earliest deadline
//! (expiry or schedule) is due. A persistent scheduled queue message is logged when it is
//! scheduled (its RECEIPT waits for the disk), with its time, and after a restart it is
//! scheduled again (its repeats start over: at least once).
//!
//! # Invariants
//! - At most this worker's share of `max_scheduled` messages are held; past it a scheduled SEND
//!   gets ERROR `q flup`. Their bytes count in the shard's tally (`max_memory`).
//! - A due message that its destination refuses (full, `overflow = "reject"`) stays scheduled
//!   and is offered again [`RETRY_MS`] later: a schedule never loses a message.

use super::*;

/// How long a due message its destination refused waits before it is offered again.
pub const RETRY_MS: u64 = 100;

/// One held message and when it is due.
#[derive(Debug)]
pub(super) struct Scheduled {
    pub due: u64,
    pub seq: u64,
    pub msg: Arc<Message>,
    /// Firings left after the next one.
    pub left: u32,
    /// Its durable log record (0: memory only), and the record it was first written to.
    pub log: u64,
    pub order: u64,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.due, self.seq) == (o.due, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    /// Reversed, so the `BinaryHeap` pops the earliest first.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.due, o.seq).cmp(&(self.due, self.seq))
    }
}

impl Shard {
    /// Hold `msg` (its `deliver_at` set) until it is due. Returns whether it was taken.
    pub(super) fn schedule(
        &mut self,
        msg: Arc<Message>,
        from: Publisher,
        receipt: Option<Box<str>>,
        out: &mut impl Outlet,
        quiet: bool,
    ) -> bool {
        let dest = msg.destination.clone();
        let share = self.policies.max_scheduled.div_ceil(self.workers.max(1));
        if self.scheduled.len() >= share {
            let detail = format!(
                "{dest}: the broker holds as many scheduled messages as it may (max_scheduled = {}); the message was not accepted",
                self.policies.max_scheduled
            );
            self.reject(from, receipt, ErrorWord::QFlup, detail, out, quiet);
            return false;
        }
        let (msg, logged) = match DestKind::of(&dest) {
            DestKind::Queue => {
                let policy = self.policies.resolve(&dest).clone();
                self.persistence(msg, &policy)
            }
            DestKind::Topic => (msg, false),
        };
        let mut log = 0;
        if logged {
            let Some(j) = self.journal.as_mut() else { return false };
            if let Some(detail) = j.disk_full() {
                let detail = format!("{dest}: {detail}; the message was not accepted");
                self.reject(from, receipt, ErrorWord::DiskFlup, detail, out, quiet);
                return false;
            }
            log = j.message(&msg, self.acting);
        }
        self.hold(msg, log, log);
        if let Publisher::Waiting(tx) = from {
            let _ = tx.try_send(Ok(()));
        }
        true
    }

    /// Put a scheduled message on the heap (counted and tallied).
    pub(super) fn hold(&mut self, msg: Arc<Message>, log: u64, order: u64) {
        self.tally.add(msg.weight());
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stats.scheduled += 1;
        let left = msg.repeat;
        // One ms late rather than early: the clock is read in whole ms, so a message due at
        // the ms its SEND was read in could otherwise fire up to 1 ms before its delay.
        let due = msg.deliver_at.saturating_add(1);
        self.scheduled.push(Scheduled { due, seq, msg, left, log, order });
    }

    /// The earliest time a scheduled message is due.
    pub(super) fn next_scheduled(&self) -> Option<u64> {
        self.scheduled.peek().map(|s| s.due)
    }

    /// Scheduled messages held now.
    pub fn scheduled_len(&self) -> usize {
        self.scheduled.len()
    }

    /// Publish every scheduled message due by `now_ms`.
    pub(super) fn fire_scheduled(&mut self, now_ms: u64, out: &mut impl Outlet) {
        // Re-armed entries (retries, repeats) go back after the loop, so one call fires each
        // due message once.
        let mut again = Vec::new();
        while self.scheduled.peek().is_some_and(|s| s.due <= now_ms) {
            let Some(mut s) = self.scheduled.pop() else { break };
            self.tally.sub(s.msg.weight());
            if s.left == 0 {
                // The last firing publishes the held message itself (it keeps its log record).
                let mut m = Arc::try_unwrap(s.msg).unwrap_or_else(|shared| copy_of(&shared, shared.id));
                m.deliver_at = 0;
                m.repeat = 0;
                let fired = Arc::new(m);
                if self.publish_logged(fired.clone(), Publisher::Broker, None, out, true, s.log) {
                    self.stats.scheduled_fired += 1;
                    continue;
                }
                self.refused_firing(&fired.destination);
                s.msg = fired;
                s.due = now_ms + RETRY_MS;
            } else {
                // The others publish a copy under a new id.
                let mut m = copy_of(&s.msg, self.next_link_id());
                m.deliver_at = 0;
                m.repeat = 0;
                if self.publish_logged(Arc::new(m), Publisher::Broker, None, out, true, 0) {
                    self.stats.scheduled_fired += 1;
                    s.left -= 1;
                    s.due = s.due.saturating_add(s.msg.period.max(1)).max(now_ms);
                } else {
                    self.refused_firing(&s.msg.destination);
                    s.due = now_ms + RETRY_MS;
                }
            }
            self.tally.add(s.msg.weight());
            again.push(s);
        }
        self.scheduled.extend(again);
    }

    /// A due message its destination refused: counted, logged now and then; it waits.
    fn refused_firing(&mut self, dest: &str) {
        self.stats.scheduled_retries += 1;
        if self.stats.scheduled_retries.is_power_of_two() {
            log::warn!("{dest}: a scheduled message is due but refused; it is offered again every {RETRY_MS} ms");
        }
    }

    /// Compaction: scheduled messages in records below `below` are written again.
    pub(super) fn relog_scheduled(&mut self, below: u64) {
        let Some(j) = self.journal.as_mut() else { return };
        let mut held = std::mem::take(&mut self.scheduled).into_vec();
        for s in held.iter_mut().filter(|s| s.log != 0 && s.log < below) {
            s.log = j.relog(&s.msg, &s.msg.destination, s.log, s.order);
        }
        self.scheduled = held.into();
    }
}

/// A new message with `msg`'s content and schedule under another id.
fn copy_of(msg: &Message, id: u64) -> Message {
    let mut m = Message::new(id, msg.destination.clone(), msg.headers.clone(), msg.body.clone());
    m.expires = msg.expires;
    m.custom_id = msg.custom_id.clone();
    m.deliver_at = msg.deliver_at;
    m.period = msg.period;
    m.repeat = msg.repeat;
    m
}
