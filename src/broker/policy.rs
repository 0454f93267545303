//! Destination policies: the server defaults merged with `[destinations."NAME"]` entries.
//!
//! Built from the config on the main thread (and again on SIGHUP or an admin `perms` change)
//! into an immutable [`Policies`] table; every worker holds its own `Arc` of the current table
//! and swaps it when a new one arrives over the bus, so lookups never lock. Callers cache the
//! resolved `Arc<Policy>` next to the destination and re-resolve when [`Policies::gen`] moves.
//!
//! # Lookup
//! An exact entry wins; otherwise the longest matching prefix pattern (`"/topic/prices.*"`);
//! otherwise the defaults. A name with no entry is "unconfigured": refused when
//! `create_destinations = false`.

use super::FastMap;
use crate::config::{Config, DestConfig, Overflow, Persistence, SlowConsumerPolicy};
use std::sync::Arc;

/// Everything the broker needs to know about one destination, all values resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// A config entry matched (exact or pattern).
    pub configured: bool,
    /// Subscribers at once [dest flup]; `usize::MAX` = no limit.
    pub max_subscribers: usize,
    pub max_messages: usize,
    pub max_queue_bytes: usize,
    pub max_message_size: usize,
    /// Default time to live (ms), 0 = none.
    pub expiry: u64,
    pub min_delivery: u32,
    /// Header whose value routes topic messages to filtered subscribers.
    pub filter_header: Option<Box<str>>,
    pub read_block: bool,
    pub write_block: bool,
    pub web_read_block: bool,
    pub web_write_block: bool,
    pub auto_ack: bool,
    pub slow_consumer: SlowConsumerPolicy,
    pub overflow: Overflow,
    /// ms; 0 = no limit.
    pub block_timeout: u64,
    pub stats: bool,
    pub max_redeliveries: u32,
    /// `None`: the default DLQ name; `Some("")`: discard.
    pub dead_letter: Option<Box<str>>,
    pub persistence: Persistence,
}

/// The prefix of dead-letter queues: they never dead-letter themselves.
pub const DLQ_PREFIX: &str = "/queue/DLQ.";

impl Policy {
    /// The server defaults.
    pub fn defaults(cfg: &Config) -> Policy {
        Policy {
            configured: false,
            max_subscribers: usize::MAX,
            max_messages: cfg.max_messages,
            max_queue_bytes: cfg.max_queue_bytes,
            max_message_size: cfg.max_message_size,
            expiry: 0,
            min_delivery: 0,
            filter_header: None,
            read_block: false,
            write_block: false,
            web_read_block: false,
            web_write_block: false,
            auto_ack: false,
            slow_consumer: cfg.slow_consumer,
            overflow: cfg.overflow,
            block_timeout: cfg.block_timeout,
            stats: true,
            max_redeliveries: cfg.max_redeliveries,
            dead_letter: None,
            persistence: Persistence::Header,
        }
    }

    /// The defaults with an entry's keys applied on top.
    pub fn with(mut self, d: &DestConfig) -> Policy {
        self.configured = true;
        self.apply(d);
        self
    }

    /// Apply the keys `d` sets.
    pub fn apply(&mut self, d: &DestConfig) {
        if let Some(v) = d.max_connections {
            self.max_subscribers = v;
        }
        if let Some(v) = d.max_messages {
            self.max_messages = v;
        }
        if let Some(v) = d.max_queue_bytes {
            self.max_queue_bytes = v;
        }
        if let Some(v) = d.max_message_size {
            self.max_message_size = v;
        }
        if let Some(v) = d.expiry {
            self.expiry = v;
        }
        if let Some(v) = d.min_delivery {
            self.min_delivery = v;
        }
        if let Some(h) = &d.filter_header {
            self.filter_header = Some(h.as_str().into());
        }
        if d.filter == Some(false) {
            self.filter_header = None;
        }
        let flags = [
            (d.read_block, &mut self.read_block),
            (d.write_block, &mut self.write_block),
            (d.web_read_block, &mut self.web_read_block),
            (d.web_write_block, &mut self.web_write_block),
            (d.auto_ack, &mut self.auto_ack),
            (d.stats, &mut self.stats),
        ];
        for (v, slot) in flags {
            if let Some(v) = v {
                *slot = v;
            }
        }
        if let Some(v) = d.slow_consumer {
            self.slow_consumer = v;
        }
        if let Some(v) = d.overflow {
            self.overflow = v;
        }
        if let Some(v) = d.block_timeout {
            self.block_timeout = v;
        }
        if let Some(v) = d.persistence {
            self.persistence = v;
        }
        if let Some(v) = d.max_redeliveries {
            self.max_redeliveries = v;
        }
        if let Some(v) = &d.dead_letter {
            self.dead_letter = Some(v.as_str().into());
        }
    }

    /// Where a dead letter from `dest` goes, or `None` to discard it.
    pub fn dead_letter_for(&self, dest: &str) -> Option<String> {
        if dest.starts_with(DLQ_PREFIX) {
            return None;
        }
        match self.dead_letter.as_deref() {
            Some("") => None,
            Some(d) => Some(d.to_string()),
            None => Some(format!("{DLQ_PREFIX}{}", dest.strip_prefix("/queue/").unwrap_or(dest.trim_start_matches('/')))),
        }
    }

    /// The SEND/SUBSCRIBE is forbidden for this kind of connection.
    pub fn blocks(&self, write: bool, web: bool) -> bool {
        if write {
            self.write_block || (web && self.web_write_block)
        } else {
            self.read_block || (web && self.web_read_block)
        }
    }
}

/// The policy table one worker uses.
#[derive(Debug)]
pub struct Policies {
    /// Changes whenever the table is rebuilt, so cached lookups know to look again.
    pub gen: u64,
    pub create_destinations: bool,
    /// Destinations held at once, server-wide (each worker's shard takes its share).
    pub max_destinations: usize,
    /// Scheduled messages held at once, server-wide (each owner holds its share).
    pub max_scheduled: usize,
    /// Producer ids remembered for de-duplication, server-wide (each owner its share).
    pub dedup_window: usize,
    exact: FastMap<String, Arc<Policy>>,
    /// Longest prefix first.
    prefixes: Vec<(String, Arc<Policy>)>,
    default: Arc<Policy>,
    /// The entries as configured (plus admin changes), to rebuild from.
    pub entries: std::collections::BTreeMap<String, DestConfig>,
    /// The access rules (rebuilt with the table, so a reload takes new ones at once).
    pub acl: Arc<crate::acl::Acl>,
}

impl Policies {
    pub fn new(cfg: &Config, gen: u64) -> Policies {
        Policies::build(cfg, cfg.destinations.clone(), gen)
    }

    /// Build from `entries` (the config's, possibly changed at run time).
    pub fn build(cfg: &Config, entries: std::collections::BTreeMap<String, DestConfig>, gen: u64) -> Policies {
        let base = Policy::defaults(cfg);
        let mut exact = FastMap::default();
        let mut prefixes = Vec::new();
        for (name, d) in &entries {
            match name.strip_suffix('*') {
                Some(prefix) => prefixes.push((prefix.to_string(), Arc::new(base.clone().with(d)))),
                None => {
                    // An exact entry also inherits what a matching pattern sets.
                    let mut p = base.clone();
                    let mut pats: Vec<(&String, &DestConfig)> =
                        entries.iter().filter(|(k, _)| k.ends_with('*') && name.starts_with(k.trim_end_matches('*'))).collect();
                    pats.sort_by_key(|(k, _)| k.len());
                    for (_, pd) in pats {
                        p.apply(pd);
                    }
                    exact.insert(name.clone(), Arc::new(p.with(d)));
                }
            }
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Policies {
            gen,
            create_destinations: cfg.create_destinations,
            max_destinations: cfg.max_destinations,
            max_scheduled: cfg.max_scheduled,
            dedup_window: cfg.dedup_window,
            exact,
            prefixes,
            default: Arc::new(base),
            entries,
            acl: Arc::new(crate::acl::Acl::new(cfg.acl_default, &cfg.groups, &cfg.acl)),
        }
    }

    /// The policy for `dest`.
    pub fn resolve(&self, dest: &str) -> &Arc<Policy> {
        if let Some(p) = self.exact.get(dest) {
            return p;
        }
        if !self.prefixes.is_empty() {
            if let Some((_, p)) = self.prefixes.iter().find(|(pre, _)| dest.starts_with(pre.as_str())) {
                return p;
            }
        }
        &self.default
    }

    /// `dest` may be used: it is configured, or destinations may be created freely. Dead-letter
    /// queues and `/virt/` handler paths are always allowed.
    pub fn allows(&self, dest: &str, p: &Policy) -> bool {
        self.create_destinations || p.configured || dest.starts_with(DLQ_PREFIX) || dest.starts_with("/virt/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(toml: &str) -> Config {
        Config::from_toml(toml, "t.toml").unwrap()
    }

    #[test]
    fn exact_beats_longest_prefix_beats_default() {
        let c = cfg(r#"
            max_messages = 7
            [destinations."/topic/a.*"]
            max_messages = 1
            read_block = true
            [destinations."/topic/a.b.*"]
            max_messages = 2
            [destinations."/topic/a.b.c"]
            max_messages = 3
        "#);
        let p = Policies::new(&c, 1);
        assert_eq!(p.resolve("/topic/x").max_messages, 7);
        assert!(!p.resolve("/topic/x").configured);
        assert_eq!(p.resolve("/topic/a.x").max_messages, 1);
        assert_eq!(p.resolve("/topic/a.b.x").max_messages, 2);
        let exact = p.resolve("/topic/a.b.c");
        assert_eq!(exact.max_messages, 3);
        assert!(exact.read_block, "exact entries inherit pattern keys");
    }

    #[test]
    fn dead_letter_names() {
        let c = cfg("");
        let p = Policy::defaults(&c);
        assert_eq!(p.dead_letter_for("/queue/orders").as_deref(), Some("/queue/DLQ.orders"));
        assert_eq!(p.dead_letter_for("/queue/DLQ.orders"), None);
        let mut q = p.clone();
        q.dead_letter = Some("".into());
        assert_eq!(q.dead_letter_for("/queue/orders"), None);
    }

    #[test]
    fn bad_entries_name_the_destination() {
        let e = Config::from_toml("[destinations.\"/queue/a\"]\nfilter_header = \"x\"\n", "t.toml").unwrap_err().to_string();
        assert!(e.contains("/queue/a") && e.contains("filter"), "{e}");
        let e = Config::from_toml("[destinations.\"/q/*x\"]\n", "t.toml").unwrap_err().to_string();
        assert!(e.contains("destinations"), "{e}");
        let e = Config::from_toml("[destinations.\"/q\"]\nmax_mesages = 1\n", "t.toml").unwrap_err().to_string();
        assert!(e.contains("max_mesages"), "{e}");
    }
}
