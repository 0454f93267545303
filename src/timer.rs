//! Per-worker deadlines: a min-heap with lazy invalidation (sans-io).
//!
//! Owned by one worker. Activity never touches the heap: a connection records `last_read` and
//! `last_write`, and when an entry fires the worker re-checks the condition and re-arms it. An
//! entry for a closed connection (stale generation) is simply discarded.
//!
//! # Invariants
//! - At most one entry per (connection, kind) is armed at a time by construction of the callers,
//!   so the heap holds at most 4 x connections entries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TimerKind {
    /// CONNECT must have completed.
    Connect,
    /// Send a heart-beat EOL if nothing was written for an interval.
    HeartBeatSend,
    /// Close if nothing was read for interval x grace.
    HeartBeatRecv,
    /// A closing connection's linger time is over.
    Linger,
    /// The worker's own timer: gather and publish the stats message (worker 0).
    Stats,
    /// The worker's own timer for upstream link `gen`: reconnect, retry, liveness.
    Link,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub at: Instant,
    pub slot: u32,
    pub gen: u32,
    pub kind: TimerKind,
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
}

impl Timers {
    pub fn arm(&mut self, t: Timer) {
        self.heap.push(Reverse(t));
    }

    /// The earliest deadline, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0.at)
    }

    /// Pop one timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        if self.heap.peek().is_some_and(|r| r.0.at <= now) {
            self.heap.pop().map(|r| r.0)
        } else {
            None
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        for (ms, slot) in [(30, 3), (10, 1), (20, 2)] {
            t.arm(Timer { at: t0 + Duration::from_millis(ms), slot, gen: 0, kind: TimerKind::Connect });
        }
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert!(t.pop_due(t0).is_none());
        let due: Vec<u32> = std::iter::from_fn(|| t.pop_due(t0 + Duration::from_millis(25))).map(|x| x.slot).collect();
        assert_eq!(due, vec![1, 2]);
        assert_eq!(t.len(), 1);
    }
}
