//! The broker layer: messages, destinations and the shard of them one worker owns.
//!
//! Never touches a socket or mio. A destination belongs to exactly one worker,
//! `owner = fnv1a(name) % workers`; everything about it (subscriber counts per worker, queue
//! contents, messages in flight, counters) lives in that worker's [`shard::Shard`].
//!
//! Naming rule: a destination whose name starts with `/queue/` is a queue (competing consumers);
//! every other name is a topic (every subscriber gets a copy).

pub mod durable;
pub mod mail;
pub mod policy;
pub mod queue;
pub mod ready;
pub mod shard;
pub mod wildcard;

use std::sync::{Arc, OnceLock};

/// The hash map of the hot paths: foldhash (several times cheaper than SipHash on short keys,
/// still seeded randomly per map, so clients cannot precompute colliding destination names).
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Identifies a connection anywhere in the broker: its worker, its slab slot and the slot's
/// generation (so a message for a closed connection never reaches a new one in the same slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnRef {
    pub worker: u16,
    pub slot: u32,
    pub gen: u32,
}

/// Who published a message, i.e. where a refusal goes.
#[derive(Debug, Clone)]
pub enum Publisher {
    /// A client connection: a refusal is answered to it (ERROR `q flup`).
    Conn(ConnRef),
    /// The broker itself (dead letters, the stats message, `ServerHandle::publish`): a refusal
    /// is logged.
    Broker,
    /// An embedder waiting for the verdict (`ServerHandle::publish_and_wait`): `Ok` once the
    /// destination took the message, the refusal's reason otherwise. The channel has room for
    /// the one answer, so the owner never blocks on it.
    Waiting(crossbeam_channel::Sender<Result<(), String>>),
}

/// Who asked for a stats snapshot, i.e. where the answer goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatsAsker {
    /// A web or admin connection rendering a page.
    Conn(ConnRef),
    /// A worker's own periodic stats round (worker 0).
    Worker(u16),
}

impl StatsAsker {
    /// The worker the answer goes to.
    pub fn worker(self) -> usize {
        match self {
            StatsAsker::Conn(c) => c.worker as usize,
            StatsAsker::Worker(w) => w as usize,
        }
    }
}

/// The message id space of messages the broker publishes from outside any worker
/// (`ServerHandle::publish`): above every worker index, so ids never collide with theirs.
pub const OUTSIDE_ID_SPACE: usize = u16::MAX as usize;

/// Identifies one subscription: its connection and the connection's serial for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubKey {
    pub conn: ConnRef,
    pub serial: u32,
}

/// Acknowledgement modes are wire vocabulary; the broker uses the stomp core's.
pub use crate::stomp::AckMode;

/// The real names of temporary destinations (`conn::session::temp`): `/temp-queue/x` of a
/// connection is `/queue/temp-queue.TOKEN.x`, `/temp-topic/x` is `/topic/temp-topic.TOKEN.x`.
pub const TEMP_QUEUE_PREFIX: &str = "/queue/temp-queue.";
pub const TEMP_TOPIC_PREFIX: &str = "/topic/temp-topic.";

/// Whether `dest` is some connection's temporary destination.
pub fn is_temp(dest: &str) -> bool {
    dest.starts_with(TEMP_QUEUE_PREFIX) || dest.starts_with(TEMP_TOPIC_PREFIX)
}

/// Topic or queue, by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestKind {
    Topic,
    Queue,
}

impl DestKind {
    pub fn of(dest: &str) -> DestKind {
        if dest.starts_with("/queue/") {
            DestKind::Queue
        } else {
            DestKind::Topic
        }
    }
}

/// A published message. Immutable once built and shared by `Arc` across every delivery, so
/// fan-out copies per-subscriber headers, never bodies.
#[derive(Debug)]
pub struct Message {
    /// Unique broker-wide: the publishing worker in the top 16 bits, its counter below.
    pub id: u64,
    pub destination: Arc<str>,
    /// User headers in the order sent (first occurrence first), decoded. Excludes the headers
    /// the broker sets itself (see `conn::session`).
    pub headers: Vec<(Box<str>, Box<str>)>,
    pub body: Box<[u8]>,
    /// Expiry time in ms since the Unix epoch (the `expires` header, or the destination's
    /// `expiry`); 0 = never.
    pub expires: u64,
    /// A `message-id` set by a trusted (admin-port) publisher, sent instead of `id`.
    pub custom_id: Option<Box<str>>,
    /// Scheduled delivery (`AMQ_SCHEDULED_DELAY` / `AMQ_SCHEDULED_TIME`): the owner holds it
    /// until this time (ms since the Unix epoch; 0 = not scheduled) and then publishes it,
    /// and again every `period` ms `repeat` more times.
    pub deliver_at: u64,
    pub period: u64,
    pub repeat: u32,
    /// JMS priority, 0-9 (the `priority` header; 4 without one): a queue delivers higher
    /// levels first.
    pub priority: u8,
    /// It carries a producer id (`dedup-id` / `_AMQ_DUPL_ID`): its owner de-duplicates it.
    pub dedup: bool,
    /// The MESSAGE header lines every subscriber of one protocol version shares (message-id,
    /// destination, user headers, content-length, blank line), encoded on first use. Index:
    /// 1.0, 1.1, 1.2. Workers may race to fill it; `OnceLock` keeps one.
    shared_head: [OnceLock<Box<[u8]>>; 3],
}

impl Message {
    pub fn new(id: u64, destination: Arc<str>, headers: Vec<(Box<str>, Box<str>)>, body: Box<[u8]>) -> Message {
        // Read from the headers here, so every path that builds a message (SEND, links,
        // recovery, dead letters) gets it alike. 0-9 as in JMS; larger ones (RabbitMQ allows up
        // to 255) count as 9, as RabbitMQ counts those over a queue's maximum.
        let (mut priority, mut dedup) = (None, false);
        for (k, v) in &headers {
            match &**k {
                "priority" if priority.is_none() => priority = Some(v.trim().parse::<u8>().ok()),
                "dedup-id" | "_AMQ_DUPL_ID" => dedup = true,
                _ => {}
            }
        }
        let priority = priority.flatten().map_or(ready::DEFAULT_PRIORITY, |p| p.min(ready::LEVELS as u8 - 1));
        Message {
            id,
            destination,
            headers,
            body,
            expires: 0,
            custom_id: None,
            deliver_at: 0,
            period: 0,
            repeat: 0,
            priority,
            dedup,
            shared_head: Default::default(),
        }
    }

    /// Expired at `now_ms` (ms since the Unix epoch)?
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires != 0 && self.expires <= now_ms
    }

    /// The value of a user header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| &**k == name).map(|(_, v)| &**v)
    }

    /// The number 1.0/1.1 clients ACK by: the id, or a hash of a trusted publisher's id.
    pub fn ack_id(&self) -> u64 {
        match &self.custom_id {
            Some(c) => custom_id_hash(c),
            None => self.id,
        }
    }

    /// The shared part of a MESSAGE's headers for receivers of `version`, encoded once.
    pub fn shared_head(&self, version: crate::stomp::Version, encode: impl FnOnce(&mut Vec<u8>)) -> &[u8] {
        let i = match version {
            crate::stomp::Version::V1_0 => 0,
            crate::stomp::Version::V1_1 => 1,
            crate::stomp::Version::V1_2 => 2,
        };
        self.shared_head[i].get_or_init(|| {
            let mut v = Vec::with_capacity(64 + self.destination.len());
            encode(&mut v);
            v.into_boxed_slice()
        })
    }

    /// The shared header block for `version`, if some receiver already encoded it.
    pub fn cached_head(&self, version: crate::stomp::Version) -> Option<&[u8]> {
        let i = match version {
            crate::stomp::Version::V1_0 => 0,
            crate::stomp::Version::V1_1 => 1,
            crate::stomp::Version::V1_2 => 2,
        };
        self.shared_head[i].get().map(|b| &**b)
    }

    /// Bytes this message holds, for queue byte bounds.
    pub fn weight(&self) -> usize {
        self.body.len() + self.headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum::<usize>() + self.destination.len()
    }
}

/// What a selector reads: the message's own headers, plus `destination` and the
/// `message-id` of a trusted publisher (a broker-numbered id is not text, so a selector on
/// it sees NULL).
impl crate::selector::Headers for Message {
    fn header(&self, name: &str) -> Option<&str> {
        match name {
            "destination" => Some(&self.destination),
            "message-id" => self.custom_id.as_deref(),
            _ => Message::header(self, name),
        }
    }
}

/// A set of worker indexes (up to [`crate::config::MAX_WORKERS`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSet([u64; 4]);

impl WorkerSet {
    pub fn insert(&mut self, w: usize) {
        self.0[w / 64] |= 1 << (w % 64);
    }
    pub fn remove(&mut self, w: usize) -> bool {
        let had = self.contains(w);
        self.0[w / 64] &= !(1 << (w % 64));
        had
    }
    pub fn contains(&self, w: usize) -> bool {
        self.0[w / 64] & (1 << (w % 64)) != 0
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&x| x == 0)
    }
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        // Word by word, skipping empty words (a topic message consults it per publish).
        self.0.iter().enumerate().flat_map(|(i, &word)| (0..64).filter(move |b| word & (1 << b) != 0).map(move |b| i * 64 + b))
    }
}

/// Wall-clock ms since the Unix epoch (expiry is absolute, as the `expires` header is).
pub fn wall_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How a trusted publisher's `message-id` is matched by 1.0/1.1 ACKs (high bit set, so it
/// never equals a broker id).
pub fn custom_id_hash(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h | (1 << 63)
}

/// Broker-wide unique message ids without coordination: worker index in the top 16 bits.
pub fn message_id(worker: usize, counter: u64) -> u64 {
    ((worker as u64) << 48) | (counter & ((1 << 48) - 1))
}

/// The worker that owns `dest`.
pub fn owner_of(dest: &str, workers: usize) -> usize {
    // FNV-1a: tiny, good enough spread for names, and stable across runs.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in dest.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % workers.max(1) as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_by_name() {
        assert_eq!(DestKind::of("/queue/a"), DestKind::Queue);
        assert_eq!(DestKind::of("/topic/a"), DestKind::Topic);
        assert_eq!(DestKind::of("/queuex"), DestKind::Topic);
        assert_eq!(DestKind::of("plain"), DestKind::Topic);
    }

    #[test]
    fn owners_spread_and_are_stable() {
        let mut seen = [0usize; 4];
        for i in 0..400 {
            let d = format!("/queue/q{i}");
            let o = owner_of(&d, 4);
            assert_eq!(o, owner_of(&d, 4));
            seen[o] += 1;
        }
        assert!(seen.iter().all(|&n| n > 50), "{seen:?}");
        assert_eq!(owner_of("/x", 1), 0);
    }

    #[test]
    fn ids_carry_the_worker() {
        assert_ne!(message_id(0, 1), message_id(1, 1));
        assert_eq!(message_id(3, 7) >> 48, 3);
    }
}
