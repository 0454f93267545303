//! Dispatch when consumers are not interchangeable: selectors, consumer priorities, an
//! exclusive consumer, or message groups. (Otherwise the queue's fast path hands the head to
//! the next consumer on the ring.)
//!
//! Owner worker only. Who may take messages: the oldest exclusive consumer alone if there is
//! one, else every consumer with credit. They are offered messages by priority tier, highest
//! first, round-robin within a tier; a lower tier gets only what the higher ones leave (no
//! credit, or nothing they accept). Each consumer takes the oldest message of the highest
//! priority level that it accepts (its selector; a grouped message only if its group's bucket
//! is free or its own), scanning from its per-level cursor, so a message it refused is not
//! offered to it again. A message nobody accepts waits while later ones go on.
//!
//! # Bounds
//! A call spends at most [`SELECTOR_BUDGET`] acceptance checks and sets `unfinished` when it
//! stops with work left (the owner resumes next turn). Building the offer order costs
//! O(consumers log consumers) per call, paid only in this mode.

use super::*;
use std::cmp::Reverse;

/// The bucket of a message's group (`JMSXGroupID`), if it has one.
fn group_bucket(msg: &Message) -> Option<usize> {
    let g = msg.header("JMSXGroupID").filter(|g| !g.is_empty())?;
    Some((super::super::custom_id_hash(g) % GROUP_BUCKETS as u64) as usize)
}

impl Queue {
    /// Whether dispatch must look at who may take what.
    pub(super) fn constrained(&self) -> bool {
        self.selective > 0 || self.exclusives > 0 || self.prioritized > 0 || self.groups.is_some()
    }

    /// A grouped message arrived: dispatch looks at groups from now on.
    pub(super) fn note_group(&mut self, msg: &Message) {
        if self.groups.is_none() && group_bucket(msg).is_some() {
            self.groups = Some(vec![None; GROUP_BUCKETS].into_boxed_slice());
        }
    }

    /// Only selectors set consumers apart (no priorities, exclusivity or groups): the ring's
    /// round-robin serves, each consumer taking what it accepts.
    pub(super) fn selectors_only(&self) -> bool {
        self.exclusives == 0 && self.prioritized == 0 && self.groups.is_none()
    }

    /// Dispatch with selectors only: the consumers on the ring in turn, each taking the next
    /// message it accepts (from its cursors); a consumer that finds none goes to the back, and a
    /// whole ring of those ends the call. O(1) per delivery when consumers accept what comes.
    pub(super) fn dispatch_selective(&mut self, out: &mut Vec<Dispatch>, now_ms: u64) {
        let mut budget = SELECTOR_BUDGET;
        let mut idle = 0;
        while !self.ready.is_empty() && idle < self.ring.len() {
            let Some(i) = self.ring_next() else { break };
            match self.next_for(i, now_ms, &mut budget) {
                Some((l, at)) => {
                    idle = 0;
                    match self.ready.remove_at(l, at) {
                        Some(entry) => self.deliver(i, entry, out),
                        None => self.ring.push_back(i as u32),
                    }
                }
                None => {
                    idle += 1;
                    self.ring.push_back(i as u32);
                    if budget == 0 {
                        self.unfinished = true;
                        return;
                    }
                }
            }
        }
    }

    /// Put every consumer that may take a message on the ring (the fast path resumes).
    pub(super) fn rebuild_ring(&mut self) {
        self.ring.clear();
        for i in 0..self.consumers.len() {
            self.consumers[i].queued = false;
            self.enqueue(i);
        }
    }

    /// A consumer left: its group buckets are free, and what others passed over because of
    /// them is offered again.
    pub(super) fn release_groups(&mut self, key: SubKey) {
        if let Some(b) = self.groups.as_deref_mut() {
            for slot in b.iter_mut().filter(|s| **s == Some(key)) {
                *slot = None;
                self.grouped -= 1;
            }
        }
        if self.grouped == 0 {
            self.groups = None;
        }
        for c in self.consumers.iter_mut() {
            c.cursor = [0; LEVELS];
        }
    }

    /// Consumers that may take messages now, in the order they are offered them.
    fn offer_order(&mut self) -> Vec<usize> {
        let exclusive = if self.exclusives > 0 {
            self.consumers.iter().enumerate().filter(|(_, c)| c.exclusive).min_by_key(|(_, c)| c.joined).map(|(i, _)| i)
        } else {
            None
        };
        let mut order: Vec<usize> = match exclusive {
            Some(i) => vec![i],
            None => (0..self.consumers.len()).collect(),
        };
        order.retain(|&i| self.consumers[i].credit > 0 && !self.consumers[i].paused);
        if !order.is_empty() {
            let r = self.rr % order.len();
            order.rotate_left(r);
        }
        // Stable: round-robin order kept within a tier.
        order.sort_by_key(|&i| Reverse(self.consumers[i].priority));
        order
    }

    pub(super) fn dispatch_constrained(&mut self, out: &mut Vec<Dispatch>, now_ms: u64) {
        let order = self.offer_order();
        let mut budget = SELECTOR_BUDGET;
        let mut t = 0;
        while t < order.len() && !self.ready.is_empty() {
            let tier = self.consumers[order[t]].priority;
            let end = t + order[t..].iter().take_while(|&&i| self.consumers[i].priority == tier).count();
            let mut active: VecDeque<usize> = order[t..end].iter().copied().collect();
            while let Some(i) = active.pop_front() {
                if self.ready.is_empty() {
                    return;
                }
                if self.consumers[i].credit == 0 || self.consumers[i].paused {
                    continue;
                }
                match self.next_for(i, now_ms, &mut budget) {
                    Some((l, at)) => {
                        let Some(entry) = self.ready.remove_at(l, at) else { break };
                        self.take_group(i, &entry);
                        self.deliver_to(i, entry, out);
                        self.rr = self.rr.wrapping_add(1);
                        active.push_back(i);
                    }
                    None if budget == 0 => {
                        self.unfinished = true;
                        return;
                    }
                    // Nothing it accepts: out of this call.
                    None => {}
                }
            }
            t = end;
        }
    }

    /// The (level, index) of the next ready message consumer `i` accepts, moving its cursors
    /// past what it refuses; expired messages met on the way go to the dead letters.
    fn next_for(&mut self, i: usize, now_ms: u64, budget: &mut usize) -> Option<(usize, usize)> {
        let levels: SmallLevels = self.ready.levels_desc().collect();
        let key = self.consumers[i].key;
        let mut expired = Vec::new();
        let mut found = None;
        'levels: for l in levels {
            let cursor = self.consumers[i].cursor[l];
            let q = self.ready.level(l);
            // Usually the consumer is at the head already (what it passed over was taken).
            let mut at = if q.front().is_some_and(|e| e.seq >= cursor) { 0 } else { q.partition_point(|e| e.seq < cursor) };
            while at < self.ready.level(l).len() {
                let e = &self.ready.level(l)[at];
                if e.msg.expired(now_ms) {
                    expired.extend(self.ready.remove_at(l, at));
                    continue;
                }
                if *budget == 0 {
                    self.consumers[i].cursor[l] = e.seq;
                    break 'levels;
                }
                *budget -= 1;
                let c = &self.consumers[i];
                let group_ok = match (group_bucket(&e.msg), self.groups.as_deref()) {
                    (Some(b), Some(owners)) => owners[b].is_none_or(|k| k == key),
                    _ => true,
                };
                if group_ok && c.selector.as_ref().is_none_or(|s| s.matches(&*e.msg)) {
                    self.consumers[i].cursor[l] = e.seq;
                    found = Some((l, at));
                    break 'levels;
                }
                at += 1;
            }
            if let Some(last) = self.ready.level(l).back() {
                let c = &mut self.consumers[i];
                c.cursor[l] = c.cursor[l].max(last.seq + 1);
            }
        }
        for e in expired {
            self.forget(&e);
            self.dead.push((e, DeadReason::Expired));
        }
        // An expiry removed before `found` shifts its index: find it again by sequence.
        let (l, at) = found?;
        let seq = self.consumers[i].cursor[l];
        let at = if self.ready.level(l).get(at).is_some_and(|e| e.seq == seq) {
            at
        } else {
            self.ready.level(l).binary_search_by_key(&seq, |e| e.seq).ok()?
        };
        Some((l, at))
    }

    /// `entry` goes to consumer `i`: its group's bucket becomes (or stays) `i`'s, until
    /// `JMSXGroupSeq:-1` closes the group or `i` leaves.
    fn take_group(&mut self, i: usize, entry: &Entry) {
        let Some(b) = group_bucket(&entry.msg) else { return };
        let key = self.consumers[i].key;
        let owners = self.groups.get_or_insert_with(|| vec![None; GROUP_BUCKETS].into_boxed_slice());
        let closes = entry.msg.header("JMSXGroupSeq").is_some_and(|s| s.trim() == "-1");
        match (owners[b], closes) {
            (None, false) => {
                owners[b] = Some(key);
                self.grouped += 1;
                self.consumers[i].groups += 1;
            }
            (Some(k), true) if k == key => {
                owners[b] = None;
                self.grouped -= 1;
                self.consumers[i].groups -= 1;
                // Others passed over this group's messages: offer them again.
                for c in self.consumers.iter_mut() {
                    c.cursor = [0; LEVELS];
                }
            }
            _ => {}
        }
        if self.grouped == 0 {
            self.groups = None;
        }
    }
}

type SmallLevels = smallvec::SmallVec<[usize; LEVELS]>;
