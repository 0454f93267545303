//! Process-wide memory accounting and the memory alarm (`max_memory`).
//!
//! What is counted is the broker's own accounting, not the RSS: message bytes held by
//! destinations (queues, and topics' retained messages), and per connection its buffers,
//! transactions and subscription state. Each worker owns two figures in a [`Gauge`]:
//! - its shard's **held** bytes, a [`Tally`] the shard updates as messages come and go (exact
//!   and immediate, so a burst of SENDs trips the alarm within one turn);
//! - its **connections'** bytes, recounted by the worker at most every [`RECOUNT`] (buffers
//!   are each bounded by `max_pending_bytes` / `max_message_size`, so the recount may lag);
//! - the bytes of messages it **sent** to owners and the bytes of those that **arrived** at its
//!   shard (both only ever grow): their difference over all workers is what is on the bus,
//!   read but not yet held by a destination.
//!
//! The alarm is raised when the sum reaches the limit and cleared when it falls under
//! [`LOW_WATERMARK_PCT`] percent of it (hysteresis, so publishers are not toggled per
//! message). Any worker may notice a crossing; a compare-and-swap makes exactly one of them
//! log it. While the alarm is up, every worker stops taking SENDs (their connections are held,
//! not disconnected) and consumers keep draining.
//!
//! Threads: every figure has exactly one writer (its worker); anyone may read. A single
//! writer lets [`Tally`] update with a plain load and store instead of a locked instruction.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often a worker recounts its connections' bytes.
pub const RECOUNT: Duration = Duration::from_millis(50);
/// The alarm clears once usage is back under this share of the limit.
pub const LOW_WATERMARK_PCT: u64 = 90;
/// The default limit's share of the machine's (or the container's) memory, in percent, as
/// RabbitMQ's `vm_memory_high_watermark` of 0.4.
pub const DEFAULT_SHARE_PCT: u64 = 40;
/// Used when the machine's memory cannot be read (4 GiB: 40% of a 10 GiB host).
pub const FALLBACK_LIMIT: u64 = 4 << 30;

/// Bytes one owner holds, with one writer and any number of readers. Cloned handles share it.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<AtomicUsize>);

impl Tally {
    /// Count `n` more bytes. Only the owning thread calls this (see the module doc).
    #[inline]
    pub fn add(&self, n: usize) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
    }

    /// Count `n` bytes less. Only the owning thread calls this.
    #[inline]
    pub fn sub(&self, n: usize) {
        self.0.store(self.0.load(Ordering::Relaxed).wrapping_sub(n), Ordering::Relaxed);
    }

    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One worker's figures, on a cache line of their own.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot {
    conns: AtomicU64,
}

/// A change of the alarm seen by [`Gauge::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alarm {
    Raised { used: u64 },
    Cleared { used: u64 },
}

/// The server's memory figures and alarm.
#[derive(Debug)]
pub struct Gauge {
    limit: u64,
    held: Vec<Tally>,
    sent: Vec<Tally>,
    arrived: Vec<Tally>,
    /// Bytes published by embedders ([`Gauge::outside`]; any thread, so a locked add).
    outside: AtomicU64,
    slots: Box<[Slot]>,
    alarm: AtomicBool,
    raised: AtomicU64,
}

impl Default for Gauge {
    /// No workers, no limit (for tools and tests that need a `Shared` without a server).
    fn default() -> Gauge {
        Gauge::new(0, u64::MAX)
    }
}

impl Gauge {
    pub fn new(workers: usize, limit: u64) -> Gauge {
        Gauge {
            limit,
            held: (0..workers).map(|_| Tally::default()).collect(),
            sent: (0..workers).map(|_| Tally::default()).collect(),
            arrived: (0..workers).map(|_| Tally::default()).collect(),
            outside: AtomicU64::new(0),
            slots: (0..workers).map(|_| Slot::default()).collect(),
            alarm: AtomicBool::new(false),
            raised: AtomicU64::new(0),
        }
    }

    /// Worker `w`'s shard tally (handed to its shard at start).
    pub fn held(&self, w: usize) -> Tally {
        self.held.get(w).cloned().unwrap_or_default()
    }

    /// Worker `w`'s count of message bytes it sent to owners (handed to its outbox).
    pub fn sent(&self, w: usize) -> Tally {
        self.sent.get(w).cloned().unwrap_or_default()
    }

    /// Worker `w`'s count of message bytes that arrived at its shard over the bus.
    pub fn arrived(&self, w: usize) -> Tally {
        self.arrived.get(w).cloned().unwrap_or_default()
    }

    /// An embedder is handing `n` bytes of message to an owner (`sending`), or could not after
    /// all (`!sending`: the count is taken back).
    pub fn outside(&self, n: usize, sending: bool) {
        if sending {
            self.outside.fetch_add(n as u64, Ordering::Relaxed);
        } else {
            self.outside.fetch_sub(n as u64, Ordering::Relaxed);
        }
    }

    /// Message bytes on the bus: sent and not yet arrived. Arrivals are read first, so a
    /// message moving meanwhile is counted, never missed.
    pub fn in_flight(&self) -> u64 {
        let arrived: u64 = self.arrived.iter().map(|t| t.get() as u64).sum();
        let sent: u64 = self.sent.iter().map(|t| t.get() as u64).sum::<u64>() + self.outside.load(Ordering::Relaxed);
        sent.saturating_sub(arrived)
    }

    /// Worker `w` recounted its connections.
    pub fn set_conns(&self, w: usize, bytes: u64) {
        if let Some(s) = self.slots.get(w) {
            s.conns.store(bytes, Ordering::Relaxed);
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes counted across the server now.
    pub fn used(&self) -> u64 {
        let held: u64 = self.held.iter().map(|t| t.get() as u64).sum();
        self.in_flight() + held + self.slots.iter().map(|s| s.conns.load(Ordering::Relaxed)).sum::<u64>()
    }

    /// Bytes counted for worker `w`: (held by its shard, its connections).
    pub fn of_worker(&self, w: usize) -> (u64, u64) {
        let held = self.held.get(w).map_or(0, |t| t.get() as u64);
        (held, self.slots.get(w).map_or(0, |s| s.conns.load(Ordering::Relaxed)))
    }

    pub fn alarm(&self) -> bool {
        self.alarm.load(Ordering::Relaxed)
    }

    /// Times the alarm was raised since start.
    pub fn alarms(&self) -> u64 {
        self.raised.load(Ordering::Relaxed)
    }

    /// Compare usage with the limit and move the alarm; returns the change if this caller made
    /// it (exactly one caller sees each change).
    pub fn check(&self) -> Option<Alarm> {
        let used = self.used();
        let on = self.alarm.load(Ordering::Relaxed);
        if !on && used >= self.limit {
            if self.alarm.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                self.raised.fetch_add(1, Ordering::Relaxed);
                return Some(Alarm::Raised { used });
            }
        } else if on
            && used < self.limit / 100 * LOW_WATERMARK_PCT
            && self.alarm.compare_exchange(true, false, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            return Some(Alarm::Cleared { used });
        }
        None
    }
}

/// The memory this process may use: the machine's RAM, or the container's limit if lower
/// (cgroup v2 `memory.max`, or v1 `memory.limit_in_bytes`). `None` if neither can be read.
pub fn available() -> Option<u64> {
    let ram = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| mem_total(&s));
    let cgroup = ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .find_map(|s| s.trim().parse::<u64>().ok());
    match (ram, cgroup) {
        (Some(r), Some(c)) => Some(r.min(c)),
        (r, c) => r.or(c),
    }
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// The default `max_memory`: [`DEFAULT_SHARE_PCT`] of [`available`], or [`FALLBACK_LIMIT`].
pub fn default_limit() -> u64 {
    available().map_or(FALLBACK_LIMIT, |m| m / 100 * DEFAULT_SHARE_PCT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_total_is_read_in_bytes() {
        let s = "MemTotal:       24576000 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total(s), Some(24_576_000 * 1024));
        assert_eq!(mem_total("nothing here"), None);
        assert_eq!(mem_total("MemTotal: lots kB"), None);
    }

    #[test]
    fn the_alarm_has_hysteresis_and_one_caller_sees_each_change() {
        let g = Gauge::new(2, 1000);
        let t = g.held(0);
        t.add(600);
        g.set_conns(1, 300);
        assert_eq!(g.check(), None);
        t.add(100);
        assert_eq!(g.check(), Some(Alarm::Raised { used: 1000 }));
        assert_eq!(g.check(), None, "seen once");
        assert!(g.alarm());
        t.sub(50); // 950: over the low watermark (900), still raised
        assert_eq!(g.check(), None);
        assert!(g.alarm());
        t.sub(51);
        assert_eq!(g.check(), Some(Alarm::Cleared { used: 899 }));
        assert!(!g.alarm());
        assert_eq!(g.alarms(), 1);
        assert_eq!(g.of_worker(0), (599, 0));
        assert_eq!(g.of_worker(1), (0, 300));
    }

    #[test]
    fn bytes_on_the_bus_count_until_they_arrive() {
        let g = Gauge::new(2, 1000);
        g.sent(0).add(300);
        g.outside(70, true);
        g.outside(20, false);
        assert_eq!((g.in_flight(), g.used()), (350, 350));
        g.arrived(1).add(300);
        assert_eq!(g.in_flight(), 50);
        g.arrived(0).add(100); // an arrival read before its send: never below zero
        assert_eq!(g.in_flight(), 0);
    }

    #[test]
    fn the_default_limit_is_a_share_of_what_the_machine_has() {
        let l = default_limit();
        if let Some(m) = available() {
            assert!(l < m && l > 0);
        } else {
            assert_eq!(l, FALLBACK_LIMIT);
        }
    }
}
