//! Rebuilding the durable state from recovered records: which persistent messages each
//! destination still holds. Sans-io; recovery feeds it the records in log order.
//!
//! A `Commit` record holds a transaction's SENDs and ACKs as sub-records (each a kind byte, a
//! u32 length and the payload, the same framing as `syncer::SyncJob`), applied together: a
//! transaction is in the log whole or not at all. Invariant: applying a prefix of the log gives
//! the state as of that record, so a crash that keeps any prefix recovers a state the broker
//! actually had.

use super::log::Recovered;
use super::payload::{DropRecord, MessageRecord, PayloadError, SubscriptionRecord};
use super::record::Kind;
use super::syncer::sub_records;
use std::collections::BTreeMap;
use thiserror::Error;

/// A persistent message as recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Its place: the sequence of the record that first held it (arrival order at its
    /// destination's owner; a compaction copy keeps the original's).
    pub seq: u64,
    pub expires: u64,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ReplayError {
    #[error("record {seq}: {why}")]
    Payload { seq: u64, why: PayloadError },
    #[error("record {seq}: a transaction holds a {kind:?} record")]
    Nested { seq: u64, kind: Kind },
}

/// The durable state so far: per destination, its messages by id (a drop names ids); their
/// `seq` gives the order they arrived in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replay {
    pub destinations: BTreeMap<String, BTreeMap<u64, StoredMessage>>,
    /// Durable subscriptions: (topic, identity, name) -> the record that defined it. Their
    /// messages are under [`super::payload::durable_key`] in `destinations`.
    pub subscriptions: BTreeMap<(String, String, String), u64>,
}

impl Replay {
    pub fn apply(&mut self, r: &Recovered) -> Result<(), ReplayError> {
        let seq = r.seq;
        match r.kind {
            Kind::Commit => {
                let subs = sub_records(&r.payload).map_err(|why| ReplayError::Payload { seq, why })?;
                // Check the whole transaction before applying any of it.
                for (kind, p) in &subs {
                    match kind {
                        Kind::Message => drop(MessageRecord::decode(p).map_err(|why| ReplayError::Payload { seq, why })?),
                        Kind::Drop => drop(DropRecord::decode(p).map_err(|why| ReplayError::Payload { seq, why })?),
                        k => return Err(ReplayError::Nested { seq, kind: *k }),
                    }
                }
                for (kind, p) in subs {
                    self.one(seq, kind, p)?;
                }
                Ok(())
            }
            kind => self.one(seq, kind, &r.payload),
        }
    }

    fn one(&mut self, seq: u64, kind: Kind, p: &[u8]) -> Result<(), ReplayError> {
        match kind {
            Kind::Message => {
                let m = MessageRecord::decode(p).map_err(|why| ReplayError::Payload { seq, why })?;
                let stored = StoredMessage {
                    seq: if m.order != 0 { m.order } else { seq },
                    expires: m.expires,
                    headers: m.headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                    body: m.body.to_vec(),
                };
                self.destinations.entry(m.dest.to_string()).or_default().insert(m.id, stored);
            }
            Kind::Drop => {
                let d = DropRecord::decode(p).map_err(|why| ReplayError::Payload { seq, why })?;
                if let Some(held) = self.destinations.get_mut(d.dest) {
                    for id in d.ids {
                        held.remove(&id);
                    }
                    if held.is_empty() {
                        self.destinations.remove(d.dest);
                    }
                }
            }
            Kind::Subscription => {
                let s = SubscriptionRecord::decode(p).map_err(|why| ReplayError::Payload { seq, why })?;
                let key = (s.dest.to_string(), s.identity.to_string(), s.name.to_string());
                if s.define {
                    self.subscriptions.insert(key, seq);
                } else {
                    self.subscriptions.remove(&key);
                    // Its messages go with it (their drops were not written one by one).
                    self.destinations.remove(&super::payload::durable_key(s.dest, s.identity, s.name));
                }
            }
            // No checkpoint records are written (each start rewrites the live state instead:
            // docs/architecture.md); commit records carry no state of their own.
            Kind::Checkpoint | Kind::Commit => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::disk::SimDisk;
    use crate::journal::log::Log;
    use crate::journal::syncer::SyncJob;

    fn message(dest: &str, id: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let body = format!("{dest}#{id}");
        MessageRecord { dest, id, expires: 0, order: 0, headers: vec![("persistent", "true")], body: body.as_bytes() }.encode(&mut out);
        out
    }

    fn dropped(dest: &str, ids: Vec<u64>) -> Vec<u8> {
        let mut out = Vec::new();
        DropRecord { dest, ids }.encode(&mut out);
        out
    }

    /// Random sends, acks and transactions (one record each) on three queues, committed in
    /// batches, with crashes: the recovered state is exactly the model's state after the
    /// records recovered, which are at least every committed one; a transaction is whole or
    /// absent.
    #[test]
    fn recovered_state_equals_the_model_after_any_crash() {
        for seed in 0..120u64 {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let (mut log, _) = Log::open(SimDisk::new(seed), 32 * 1024).unwrap();
            // The model: the state after each record written (index = records so far).
            let mut states = vec![Replay::default()];
            let (mut live, mut id, mut committed) = (Vec::<(String, u64)>::new(), 0u64, 0usize);
            for _batch in 0..1 + next() % 15 {
                for _ in 0..1 + next() % 10 {
                    let mut model = states.last().cloned().unwrap_or_default();
                    let dest = format!("/queue/q{}", next() % 3);
                    // The model is kept by hand, not through Replay, so that it can disagree.
                    let seq = states.len() as u64;
                    let add = |m: &mut Replay, d: &str, i: u64| {
                        let stored = StoredMessage {
                            seq,
                            expires: 0,
                            headers: vec![("persistent".into(), "true".into())],
                            body: format!("{d}#{i}").into_bytes(),
                        };
                        m.destinations.entry(d.to_string()).or_default().insert(i, stored);
                    };
                    let remove = |m: &mut Replay, d: &str, i: u64| {
                        if let Some(h) = m.destinations.get_mut(d) {
                            h.remove(&i);
                            if h.is_empty() {
                                m.destinations.remove(d);
                            }
                        }
                    };
                    let rec = match next() % 4 {
                        0 | 1 => {
                            id += 1;
                            live.push((dest.clone(), id));
                            add(&mut model, &dest, id);
                            (Kind::Message, message(&dest, id))
                        }
                        2 if !live.is_empty() => {
                            let (d, i) = live.swap_remove((next() % live.len() as u64) as usize);
                            remove(&mut model, &d, i);
                            (Kind::Drop, dropped(&d, vec![i]))
                        }
                        _ => {
                            // A transaction: two sends and, if there is one, an ack.
                            let mut job = SyncJob::default();
                            for _ in 0..2 {
                                id += 1;
                                live.push((dest.clone(), id));
                                add(&mut model, &dest, id);
                                job.push(Kind::Message, &message(&dest, id));
                            }
                            if live.len() > 2 {
                                let (d, i) = live.swap_remove(0);
                                remove(&mut model, &d, i);
                                job.push(Kind::Drop, &dropped(&d, vec![i]));
                            }
                            (Kind::Commit, job.records)
                        }
                    };
                    log.append(rec.0, &rec.1);
                    states.push(model);
                }
                if next() % 4 == 0 {
                    break; // the last batch written, never synced
                }
                log.commit().unwrap();
                committed = states.len() - 1;
            }
            let mut disk = log.into_disk();
            disk.crash();
            let (_, got) = Log::open(disk, 32 * 1024).unwrap();
            assert!(got.len() >= committed, "seed {seed}: {} of {committed} committed records", got.len());
            let mut replay = Replay::default();
            for r in &got {
                replay.apply(r).unwrap();
            }
            assert_eq!(replay, states[got.len()], "seed {seed}: recovered state is not the state after {} records", got.len());
        }
    }

    #[test]
    fn durable_subscriptions_are_defined_redefined_and_removed() {
        let mut r = Replay::default();
        let sub = |define, dest: &str| {
            let mut out = Vec::new();
            SubscriptionRecord { define, identity: "app1", name: "audit", dest }.encode(&mut out);
            Recovered { kind: Kind::Subscription, seq: 1, payload: out }
        };
        r.apply(&sub(true, "/topic/a")).unwrap();
        r.apply(&sub(true, "/topic/b")).unwrap(); // the same name on another topic is another one
        r.apply(&sub(true, "/topic/b")).unwrap();
        let mut m = Vec::new();
        let key = crate::journal::payload::durable_key("/topic/b", "app1", "audit");
        MessageRecord { dest: &key, id: 1, expires: 0, order: 0, headers: vec![], body: b"kept" }.encode(&mut m);
        r.apply(&Recovered { kind: Kind::Message, seq: 2, payload: m }).unwrap();
        assert_eq!(r.subscriptions.len(), 2);
        assert_eq!(r.destinations.len(), 1);
        r.apply(&sub(false, "/topic/b")).unwrap();
        assert_eq!(r.subscriptions.keys().map(|s| s.0.as_str()).collect::<Vec<_>>(), ["/topic/a"]);
        assert!(r.destinations.is_empty(), "a removed subscription's messages went with it");
    }

    #[test]
    fn a_bad_transaction_changes_nothing() {
        let mut good = SyncJob::default();
        good.push(Kind::Message, &message("/queue/a", 1));
        good.push(Kind::Checkpoint, b"");
        let mut r = Replay::default();
        let e = r.apply(&Recovered { kind: Kind::Commit, seq: 9, payload: good.records }).unwrap_err();
        assert_eq!(e, ReplayError::Nested { seq: 9, kind: Kind::Checkpoint });
        assert_eq!(r, Replay::default(), "the message before the bad part was not applied");
        let e = r.apply(&Recovered { kind: Kind::Message, seq: 10, payload: vec![1, 2, 3] }).unwrap_err();
        assert!(matches!(e, ReplayError::Payload { seq: 10, .. }));
    }
}
