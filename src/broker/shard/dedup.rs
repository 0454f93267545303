//! Producer de-duplication: a SEND whose `dedup-id` (or Artemis' `_AMQ_DUPL_ID`) was seen on
//! the same destination within the window is acknowledged but not enqueued again, so a
//! producer may retry after a lost RECEIPT without making duplicates (what Artemis' duplicate
//! detection and NATS JetStream's `Nats-Msg-Id` give).
//!
//! Owner worker only. The window is a count: the last `dedup_window` ids (the worker's share
//! of the server-wide key), oldest forgotten first; their bytes count in the shard's tally.
//! Ids of persistent messages are taken back from the log at a restart, so a retry across a
//! crash is caught too (while the original is still held).
//!
//! A duplicate's RECEIPT still means what the original's does: if the original's record is not
//! on disk yet, the duplicate's connection waits for it as if it had written it.

use super::*;

/// The longest id accepted (a longer one is ERROR `syntax` at the SEND).
pub const MAX_DEDUP_ID: usize = 256;

/// The headers that carry a producer's id.
pub fn dedup_id(msg: &Message) -> Option<&str> {
    if !msg.dedup {
        return None;
    }
    msg.header("dedup-id").or_else(|| msg.header("_AMQ_DUPL_ID")).filter(|v| !v.is_empty())
}

/// Ids seen lately: "destination\0id" -> the record of the message (0: memory only).
#[derive(Debug, Default)]
pub(super) struct Window {
    seen: FastMap<Box<str>, u64>,
    order: VecDeque<Box<str>>,
}

/// Bytes one entry is counted as, besides its key (map and queue slots).
const ENTRY_OVERHEAD: usize = 64;

/// The window's key for `msg`, if it carries an id: "destination\0id", made once per message.
pub(super) fn key_of(msg: &Message) -> Option<Box<str>> {
    dedup_id(msg).map(|id| key(&msg.destination, id))
}

fn key(dest: &str, id: &str) -> Box<str> {
    let mut k = String::with_capacity(dest.len() + 1 + id.len());
    k.push_str(dest);
    k.push('\0');
    k.push_str(id);
    k.into()
}

impl Shard {
    /// If `msg` repeats an id seen lately on its destination: counted, and its connection made
    /// to wait for the original's record; true (the caller acknowledges and drops it).
    pub(super) fn duplicate(&mut self, k: &str) -> bool {
        let Some(&log) = self.dedup.seen.get(k) else { return false };
        self.stats.deduplicated += 1;
        if let (Some(j), Some(c)) = (self.journal.as_mut(), self.acting) {
            j.depend(c, log);
        }
        true
    }

    /// Remember the id of a message its destination took (`log`: its record, 0 if none).
    pub(super) fn remember(&mut self, msg: &Message, log: u64) {
        if let Some(k) = key_of(msg) {
            self.remember_key(k, log);
        }
    }

    /// [`Shard::remember`] with the key made already.
    pub(super) fn remember_key(&mut self, k: Box<str>, log: u64) {
        if self.dedup.seen.contains_key(&k) {
            return;
        }
        let share = self.policies.dedup_window.div_ceil(self.workers.max(1));
        while self.dedup.order.len() >= share {
            let Some(old) = self.dedup.order.pop_front() else { break };
            self.tally.sub(old.len() + ENTRY_OVERHEAD);
            self.dedup.seen.remove(&old);
        }
        self.tally.add(k.len() + ENTRY_OVERHEAD);
        self.dedup.seen.insert(k.clone(), log);
        self.dedup.order.push_back(k);
    }

    /// Ids remembered now.
    pub fn dedup_len(&self) -> usize {
        self.dedup.order.len()
    }
}
