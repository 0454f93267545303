//! A queue's ready messages by priority: one FIFO per JMS priority level (0-9, higher first),
//! each sorted by sequence number (arrival order at the owner).
//!
//! Owner worker only. Messages without a `priority` header have JMS' default 4, so a queue that
//! never sees another level uses one FIFO, and taking the next message costs a check of the top
//! level, as before priorities.
//!
//! # Invariants
//! - Every level is sorted by `seq`; `top` is at or above the highest non-empty level.
//! - `len` is the sum of the levels' lengths.

use super::queue::Entry;
use std::collections::VecDeque;

/// Priority levels (JMS: 0-9).
pub const LEVELS: usize = 10;
/// The level of a message without a `priority` header (JMS' default).
pub const DEFAULT_PRIORITY: u8 = 4;

#[derive(Debug, Default)]
pub struct Ready {
    levels: [VecDeque<Entry>; LEVELS],
    top: usize,
    len: usize,
}

fn level_of(e: &Entry) -> usize {
    (e.msg.priority as usize).min(LEVELS - 1)
}

impl Ready {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Lower `top` to the highest non-empty level.
    fn settle_top(&mut self) {
        while self.top > 0 && self.levels[self.top].is_empty() {
            self.top -= 1;
        }
    }

    /// Append a new message (its `seq` above every other's).
    pub fn push_back(&mut self, e: Entry) {
        let l = level_of(&e);
        self.top = self.top.max(l);
        self.levels[l].push_back(e);
        self.len += 1;
    }

    /// Put a message back in its place (a requeue).
    pub fn insert_sorted(&mut self, e: Entry) {
        let l = level_of(&e);
        self.top = self.top.max(l);
        let q = &mut self.levels[l];
        let pos = q.partition_point(|x| x.seq < e.seq);
        q.insert(pos, e);
        self.len += 1;
    }

    /// The next message to deliver: the oldest of the highest level.
    pub fn front(&self) -> Option<&Entry> {
        self.levels[..=self.top].iter().rev().find_map(|q| q.front())
    }

    pub fn pop_front(&mut self) -> Option<Entry> {
        self.settle_top();
        let e = self.levels[self.top].pop_front()?;
        self.len -= 1;
        Some(e)
    }

    /// The message an overflowing queue gives up: the oldest of the lowest level.
    pub fn pop_lowest(&mut self) -> Option<Entry> {
        let q = self.levels.iter_mut().find(|q| !q.is_empty())?;
        let e = q.pop_front()?;
        self.len -= 1;
        Some(e)
    }

    /// Remove the message with this sequence number, wherever it is.
    pub fn remove_seq(&mut self, seq: u64) -> Option<Entry> {
        for q in self.levels[..=self.top].iter_mut() {
            if let Ok(i) = q.binary_search_by_key(&seq, |e| e.seq) {
                let e = q.remove(i);
                self.len -= e.is_some() as usize;
                return e;
            }
        }
        None
    }

    pub fn contains_seq(&self, seq: u64) -> bool {
        self.levels[..=self.top].iter().any(|q| q.binary_search_by_key(&seq, |e| e.seq).is_ok())
    }

    /// Remove everything (a purge).
    pub fn take_all(&mut self) -> impl Iterator<Item = Entry> {
        self.len = 0;
        self.top = 0;
        std::mem::take(&mut self.levels).into_iter().flatten()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Entry> {
        self.levels.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.levels.iter_mut().flatten()
    }

    /// The non-empty levels, highest first (for dispatch that looks past the head).
    pub fn levels_desc(&self) -> impl Iterator<Item = usize> + '_ {
        (0..=self.top).rev().filter(|&l| !self.levels[l].is_empty())
    }

    pub fn level(&self, l: usize) -> &VecDeque<Entry> {
        &self.levels[l]
    }

    /// Remove the message at `i` of level `l`.
    pub fn remove_at(&mut self, l: usize, i: usize) -> Option<Entry> {
        let e = self.levels[l].remove(i);
        self.len -= e.is_some() as usize;
        e
    }
}
