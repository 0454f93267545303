//! A single-worker broker driven without a poll loop: for fuzzing, benches and tests.
//!
//! `Sim` owns what a worker owns (context, shard, connections) and runs the same session,
//! shard and delivery code, but input is handed in as byte slices and output is read from each
//! connection's buffer. Connections have a [`Transport::Detached`] stream: no socket at all.

use crate::api::Handlers;
use crate::auth::Authenticator;
use crate::broker::shard::Shard;
use crate::broker::ConnRef;
use crate::bus::{self, Outbox};
use crate::config::Config;
use crate::conn::web::Site;
use crate::conn::{deliver, session, Conn, Ctx, Transport};
use std::sync::{Arc, OnceLock};

/// The one `Poll` and `Waker` the simulated bus needs (a waker is made by a poll); never
/// polled. Made once per process.
struct Fixed {
    _poll: mio::Poll,
    waker: Arc<mio::Waker>,
}

fn fixed() -> &'static Fixed {
    static F: OnceLock<Fixed> = OnceLock::new();
    F.get_or_init(|| {
        let poll = mio::Poll::new().expect("poll");
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(usize::MAX)).expect("waker"));
        Fixed { _poll: poll, waker }
    })
}

pub struct Sim {
    pub ctx: Ctx,
    pub shard: Shard,
    pub conns: slab::Slab<Conn>,
    /// Unparsed input per connection (a partial frame), as a worker keeps it.
    pending: Vec<Vec<u8>>,
}

impl Sim {
    /// A broker with `cfg` and `n` connections in the Handshake phase.
    pub fn new(cfg: Config, n: usize) -> Sim {
        let fx = fixed();
        let (peer, _mailbox) = bus::channel(64, fx.waker.clone());
        let cfg = Arc::new(cfg);
        let (auth_tx, _auth_rx) = crossbeam_channel::bounded(1);
        let policies = Arc::new(crate::broker::policy::Policies::new(&cfg, 1));
        let shared = Arc::new(crate::bus::Shared { stop: Default::default(), connections: Default::default() });
        let ctx = Ctx::new(
            0,
            cfg.clone(),
            Outbox::new(0, vec![peer], 64),
            Arc::new(Authenticator::default()),
            auth_tx,
            Arc::new(Handlers::default()),
            Arc::new(Site::default()),
            policies.clone(),
            shared,
        );
        let shard = Shard::new(policies, 1, 0);
        let mut sim = Sim { ctx, shard, conns: slab::Slab::new(), pending: Vec::new() };
        for _ in 0..n {
            sim.add_conn();
        }
        sim
    }

    /// Add a connection; returns its index.
    pub fn add_conn(&mut self) -> usize {
        let e = self.conns.vacant_entry();
        let slot = e.key();
        let me = ConnRef { worker: 0, slot: slot as u32, gen: slot as u32 + 1 };
        e.insert(Conn::new(Transport::Detached, me, "127.0.0.1:1".parse().expect("address"), self.ctx.now));
        self.pending.push(Vec::new());
        slot
    }

    /// Feed bytes to connection `i` as if read from its socket, then run everything that follows
    /// (shard, deliveries, credits) to completion.
    pub fn feed(&mut self, i: usize, bytes: &[u8]) {
        let mut buf = std::mem::take(&mut self.pending[i]);
        buf.extend_from_slice(bytes);
        if let Some(conn) = self.conns.get_mut(i) {
            if !conn.is_closing() {
                let used = session::process_input(conn, &buf, &mut self.ctx);
                if !conn.is_closing() {
                    buf.drain(..used);
                    self.pending[i] = buf;
                }
            }
            if conn.is_closing() && !conn.session_torn_down() {
                session::teardown(conn, &mut self.ctx);
                conn.mark_torn_down();
            }
        }
        self.settle();
    }

    /// Run local work until none is left.
    pub fn settle(&mut self) {
        loop {
            let mut did = false;
            while let Some(m) = self.ctx.outbox.local_data.pop_front() {
                self.shard.handle(m, &mut self.ctx.outbox);
                did = true;
            }
            while let Some(m) = self.ctx.outbox.local_ctrl.pop_front() {
                deliver::handle(m, &mut self.conns, &mut self.ctx);
                did = true;
            }
            if !self.ctx.credits.is_empty() {
                self.ctx.flush_credits();
                did = true;
            }
            if !did {
                break;
            }
        }
        self.ctx.dirty.clear();
        self.ctx.read_list.clear();
    }

    /// Connection `i`'s output so far (what the worker would write).
    pub fn output(&mut self, i: usize) -> &mut Vec<u8> {
        &mut self.conns[i].out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_reaches_local_subscribers() {
        let mut s = Sim::new(Config::default(), 3);
        for i in 0..3 {
            s.feed(i, b"CONNECT\naccept-version:1.2\n\n\0");
            s.output(i).clear();
        }
        s.feed(1, b"SUBSCRIBE\nid:a\ndestination:/topic/t\n\n\0");
        s.feed(2, b"SUBSCRIBE\nid:b\ndestination:/topic/t\n\n\0");
        s.feed(0, b"SEND\ndestination:/topic/t\n\nhi\0");
        for (i, id) in [(1, "a"), (2, "b")] {
            let out = String::from_utf8(s.output(i).clone()).unwrap();
            assert!(out.starts_with(&format!("MESSAGE\nsubscription:{id}\n")) && out.ends_with("\nhi\0"), "{out}");
        }
        assert!(s.output(0).is_empty());
    }

    #[test]
    fn the_expiry_heap_stays_proportional_to_what_is_held() {
        // 20,000 messages with a day to live, consumed as they arrive: without compaction the
        // heap would keep an entry for each until the day is over.
        let mut s = Sim::new(Config::default(), 2);
        for i in 0..2 {
            s.feed(i, b"CONNECT\naccept-version:1.2\n\n\0");
        }
        s.feed(1, b"SUBSCRIBE\nid:a\ndestination:/queue/q\n\n\0");
        let expires = crate::broker::wall_ms() + 86_400_000;
        let frame = format!("SEND\ndestination:/queue/q\nexpires:{expires}\n\nx\0");
        for _ in 0..20_000 {
            s.feed(0, frame.as_bytes());
            s.output(1).clear();
        }
        assert_eq!(s.shard.queue_depth("/queue/q"), Some(0));
        assert!(s.shard.expiring_len() <= 2 * 1024 + 1, "{} heap entries for nothing held", s.shard.expiring_len());
    }
}
