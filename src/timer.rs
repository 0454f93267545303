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
    /// A producer held by flow control reached its queue's `block_timeout`.
    Held,
}

/// A timer of the worker itself (not of a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WorkerTimer {
    /// Gather and publish the stats message (worker 0).
    Stats,
    /// Upstream link number `0`: reconnect, retry, liveness.
    Link(u32),
}

/// A connection's timer: its slot and the slot's generation (a timer of a closed connection
/// whose slot was reused is recognised by the generation and dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Timer {
    pub at: Instant,
    pub slot: u32,
    pub gen: u32,
    pub kind: TimerKind,
}

/// What fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fired {
    Conn(Timer),
    Worker { at: Instant, what: WorkerTimer },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Due {
    Conn { slot: u32, gen: u32, kind: TimerKind },
    Worker(WorkerTimer),
}

#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, Due)>>,
}

impl Timers {
    /// Arm a connection's timer.
    pub fn arm(&mut self, t: Timer) {
        self.heap.push(Reverse((t.at, Due::Conn { slot: t.slot, gen: t.gen, kind: t.kind })));
    }

    /// Arm one of the worker's own timers.
    pub fn arm_worker(&mut self, at: Instant, what: WorkerTimer) {
        self.heap.push(Reverse((at, Due::Worker(what))));
    }

    /// The earliest deadline, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|r| r.0 .0)
    }

    /// Pop one timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Fired> {
        if self.heap.peek().is_none_or(|r| r.0 .0 > now) {
            return None;
        }
        self.heap.pop().map(|Reverse((at, due))| match due {
            Due::Conn { slot, gen, kind } => Fired::Conn(Timer { at, slot, gen, kind }),
            Due::Worker(what) => Fired::Worker { at, what },
        })
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Drop the entries of connections that are gone (`live(slot, gen)` is false). Entries are
    /// otherwise dropped only when they fire, which for a long heart-beat interval can be hours
    /// after the connection closed; the worker calls this when the heap has grown well past
    /// what its live connections can arm, so the cost is amortized over the closes.
    pub fn compact(&mut self, live: impl Fn(u32, u32) -> bool) {
        let heap = std::mem::take(&mut self.heap);
        self.heap = heap
            .into_iter()
            .filter(|Reverse((_, due))| match *due {
                Due::Conn { slot, gen, .. } => live(slot, gen),
                Due::Worker(_) => true,
            })
            .collect();
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
        t.arm_worker(t0 + Duration::from_millis(15), WorkerTimer::Link(7));
        let due: Vec<String> = std::iter::from_fn(|| t.pop_due(t0 + Duration::from_millis(25)))
            .map(|x| match x {
                Fired::Conn(c) => format!("conn {}", c.slot),
                Fired::Worker { what, .. } => format!("{what:?}"),
            })
            .collect();
        assert_eq!(due, ["conn 1", "Link(7)", "conn 2"]);
        assert_eq!(t.len(), 1);
        t.arm(Timer { at: t0, slot: 4, gen: 9, kind: TimerKind::HeartBeatSend });
        t.arm_worker(t0, WorkerTimer::Stats);
        t.compact(|slot, _| slot == 4);
        assert_eq!(t.len(), 2, "the gone connection's entry left; the live one and the worker's stay");
    }
}
