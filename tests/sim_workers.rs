//! Cross-worker paths under the multi-worker simulation (`romp::sim`): several workers in one
//! thread joined by the real bus channels, every bus delivery scheduled by a seeded generator.
//! Each property is checked over many seeds, i.e. many interleavings; a failure names its seed,
//! which replays the same schedule.

use romp::broker::owner_of;
use romp::client::{Decoded, OwnedFrame};
use romp::sim::{ConnId, Sim};
use romp::stomp::{Command, Limits, Version};
use romp::Config;
use std::collections::HashMap;

const SEEDS: u64 = 150;
const MAX_STEPS: usize = 200_000;

/// A destination named `<prefix><n>` that worker `owner` owns.
fn owned_by(prefix: &str, owner: usize, workers: usize) -> String {
    (0..).map(|n| format!("{prefix}{n}")).find(|d| owner_of(d, workers) == owner).expect("some name hashes there")
}

/// Everything a connection has been sent so far, as frames (heart-beats skipped).
fn frames(sim: &mut Sim, id: ConnId) -> Vec<OwnedFrame> {
    let out = sim.take_output(id);
    let version = sim.get(id).map_or(Version::V1_2, |c| c.version);
    let limits = Limits { max_headers: 1000, max_header_len: 1 << 16, max_body: 1 << 24 };
    let (mut pos, mut got) = (0, Vec::new());
    loop {
        match romp::client::read(&out[pos..], version, &limits).expect("well-formed output") {
            Decoded::HeartBeats { bytes, .. } => pos += bytes,
            Decoded::Frame(f, used) => {
                got.push(f.to_owned_frame());
                pos += used;
            }
            Decoded::Incomplete { .. } => {
                assert_eq!(pos, out.len(), "a partial frame in the output");
                return got;
            }
        }
    }
}

fn connect(sim: &mut Sim, worker: usize) -> ConnId {
    let id = sim.connect_on(worker);
    sim.input(id, b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
    let f = frames(sim, id);
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0].command, Command::Connected);
    id
}

fn body(f: &OwnedFrame) -> String {
    String::from_utf8_lossy(&f.body).into_owned()
}

/// K2 across owners: a RECEIPT is written only once every owner the connection sent to before
/// it has applied those frames, whatever order the bus deliveries run in.
#[test]
fn a_receipt_covers_sends_to_every_owner() {
    let workers = 3;
    for seed in 0..SEEDS {
        let mut sim = Sim::workers(Config::default(), workers, seed);
        let (qa, qb) = (owned_by("/queue/ra-", 1, workers), owned_by("/queue/rb-", 2, workers));
        let p = connect(&mut sim, 0);
        let mut wire = Vec::new();
        for (dest, n) in [(&qa, 3), (&qb, 2), (&qa, 1)] {
            for _ in 0..n {
                wire.extend_from_slice(format!("SEND\ndestination:{dest}\n\nx\0").as_bytes());
            }
        }
        wire.extend_from_slice(format!("SEND\ndestination:{qb}\nreceipt:r1\n\nlast\0").as_bytes());
        sim.input(p, &wire);
        let mut receipted = false;
        for _ in 0..MAX_STEPS {
            let got = frames(&mut sim, p);
            if let Some(r) = got.iter().find(|f| f.command == Command::Receipt) {
                assert_eq!(r.header("receipt-id"), Some("r1"));
                let (a, b) = (sim.nodes[1].shard.queue_depth(&qa), sim.nodes[2].shard.queue_depth(&qb));
                assert_eq!((a, b), (Some(4), Some(3)), "seed {seed}: RECEIPT before its SENDs were applied");
                receipted = true;
            }
            assert!(got.iter().all(|f| f.command == Command::Receipt), "seed {seed}: {got:?}");
            if sim.step().is_none() {
                break;
            }
        }
        assert!(receipted || frames(&mut sim, p).iter().any(|f| f.command == Command::Receipt), "seed {seed}: no RECEIPT");
    }
}

/// NACK and an abrupt disconnect requeue queue messages at their owner on another worker; every
/// message is acknowledged exactly once in the end, none is lost.
#[test]
fn nack_and_disconnect_requeue_across_workers() {
    let workers = 3;
    for seed in 0..SEEDS {
        let mut sim = Sim::workers(Config::default(), workers, seed);
        let q = owned_by("/queue/nq-", 2, workers);
        let c1 = connect(&mut sim, 0);
        sim.input(c1, format!("SUBSCRIBE\nid:s\ndestination:{q}\nack:client-individual\nreceipt:sub\n\n\0").as_bytes());
        sim.run(MAX_STEPS);
        assert_eq!(frames(&mut sim, c1).len(), 1, "seed {seed}: the SUBSCRIBE receipt");
        let p = connect(&mut sim, 1);
        for i in 0..5 {
            sim.input(p, format!("SEND\ndestination:{q}\n\nm{i}\0").as_bytes());
        }
        sim.run(MAX_STEPS);
        let got = frames(&mut sim, c1);
        assert_eq!(got.iter().map(body).collect::<Vec<_>>(), ["m0", "m1", "m2", "m3", "m4"], "seed {seed}");
        // NACK m0 (it comes back, redelivered), ACK m1, then vanish holding the rest.
        sim.input(c1, format!("NACK\nid:{}\n\n\0", got[0].header("ack").unwrap()).as_bytes());
        sim.input(c1, format!("ACK\nid:{}\n\n\0", got[1].header("ack").unwrap()).as_bytes());
        sim.run(MAX_STEPS);
        let again = frames(&mut sim, c1);
        assert_eq!(
            again.iter().map(|f| (body(f), f.header("redelivered").map(str::to_string))).collect::<Vec<_>>(),
            [("m0".to_string(), Some("true".to_string()))],
            "seed {seed}"
        );
        sim.input(c1, b"DISCONNECT\n\n\0");
        let c2 = connect(&mut sim, 1);
        sim.input(c2, format!("SUBSCRIBE\nid:t\ndestination:{q}\nack:client-individual\n\n\0").as_bytes());
        sim.run(MAX_STEPS);
        let rest = frames(&mut sim, c2);
        let mut bodies: Vec<String> = rest.iter().map(body).collect();
        bodies.sort();
        assert_eq!(bodies, ["m0", "m2", "m3", "m4"], "seed {seed}: everything but the ACKed m1, once each");
        assert!(rest.iter().all(|f| f.header("redelivered") == Some("true")), "seed {seed}: {rest:?}");
    }
}

/// An auto-ack queue consumer with a small prefetch keeps getting messages from an owner on
/// another worker only if its credits travel back; all arrive, in the producer's order.
#[test]
fn credit_returns_keep_an_auto_ack_queue_flowing() {
    let workers = 3;
    for seed in 0..SEEDS / 3 {
        let mut sim = Sim::workers(Config { prefetch: 2, ..Config::default() }, workers, seed);
        let q = owned_by("/queue/cq-", 1, workers);
        let c = connect(&mut sim, 0);
        sim.input(c, format!("SUBSCRIBE\nid:s\ndestination:{q}\nreceipt:sub\n\n\0").as_bytes());
        sim.run(MAX_STEPS);
        frames(&mut sim, c);
        let p = connect(&mut sim, 2);
        let mut got = Vec::new();
        for i in 0..60 {
            sim.input(p, format!("SEND\ndestination:{q}\n\n{i}\0").as_bytes());
            // The consumer reads now and then, so deliveries meet full and empty outputs.
            if i % 7 == 0 {
                sim.run(MAX_STEPS);
                got.extend(frames(&mut sim, c).iter().map(body));
            }
        }
        sim.run(MAX_STEPS);
        got.extend(frames(&mut sim, c).iter().map(body));
        assert_eq!(got, (0..60).map(|i| i.to_string()).collect::<Vec<_>>(), "seed {seed}");
        assert_eq!(sim.nodes[1].shard.queue_depth(&q).unwrap_or(0), 0, "seed {seed}");
    }
}

/// A topic message reaches every subscriber on every worker, in publish order per subscriber,
/// and the publisher's receipt comes after the owner fanned it out.
#[test]
fn topic_fan_out_across_workers() {
    let workers = 3;
    for seed in 0..SEEDS / 3 {
        let mut sim = Sim::workers(Config::default(), workers, seed);
        let t = owned_by("/topic/ft-", 2, workers);
        let mut subs = Vec::new();
        for w in 0..workers {
            for k in 0..2 {
                let s = connect(&mut sim, w);
                sim.input(s, format!("SUBSCRIBE\nid:{k}\ndestination:{t}\nreceipt:sub\n\n\0").as_bytes());
                subs.push(s);
            }
        }
        sim.run(MAX_STEPS);
        for s in &subs {
            assert_eq!(frames(&mut sim, *s).len(), 1, "seed {seed}: subscribe receipt");
        }
        let p = connect(&mut sim, 0);
        for i in 0..10 {
            let receipt = if i == 9 { "receipt:done\n" } else { "" };
            sim.input(p, format!("SEND\ndestination:{t}\n{receipt}\n{i}\0").as_bytes());
        }
        sim.run(MAX_STEPS);
        assert_eq!(frames(&mut sim, p).iter().map(|f| f.command).collect::<Vec<_>>(), [Command::Receipt], "seed {seed}");
        for s in &subs {
            let got: Vec<String> = frames(&mut sim, *s).iter().map(body).collect();
            assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>(), "seed {seed}, subscriber {s:?}");
        }
    }
}

/// Shutdown closes every connection on every worker; queue messages held unacknowledged by
/// consumers go back to their queues at their owners, and nothing is left on the bus.
#[test]
fn shutdown_closes_everyone_and_returns_what_they_held() {
    let workers = 3;
    for seed in 0..SEEDS / 3 {
        let mut sim = Sim::workers(Config::default(), workers, seed);
        let queues: Vec<String> = (0..workers).map(|w| owned_by("/queue/sd-", w, workers)).collect();
        let mut consumers = Vec::new();
        for (w, q) in queues.iter().enumerate() {
            let c = connect(&mut sim, (w + 1) % workers);
            sim.input(c, format!("SUBSCRIBE\nid:s\ndestination:{q}\nack:client\n\n\0").as_bytes());
            consumers.push(c);
        }
        sim.run(MAX_STEPS);
        let p = connect(&mut sim, 0);
        let mut sent: HashMap<&str, usize> = HashMap::new();
        for i in 0..12 {
            let q = &queues[i % workers];
            sim.input(p, format!("SEND\ndestination:{q}\n\n{i}\0").as_bytes());
            *sent.entry(q.as_str()).or_default() += 1;
        }
        sim.run(MAX_STEPS);
        for c in &consumers {
            assert_eq!(frames(&mut sim, *c).len(), 4, "seed {seed}: each consumer holds its queue's messages");
        }
        sim.shutdown();
        sim.run(MAX_STEPS);
        for id in consumers.iter().chain([&p]) {
            let c = sim.get(*id).expect("still in its slab until the worker finalizes it");
            assert!(c.is_closing() && c.session_torn_down(), "seed {seed}: {id:?} was not closed and released");
        }
        for (w, q) in queues.iter().enumerate() {
            assert_eq!(sim.nodes[w].shard.queue_depth(q), Some(sent[q.as_str()]), "seed {seed}: {q} got its messages back");
        }
        assert!(sim.step().is_none(), "seed {seed}: bus traffic left after shutdown");
    }
}

/// Producer flow control across workers: a producer on one worker sending to a full queue
/// owned by another is held (not refused), whatever the interleaving, and every message
/// arrives once, in order, when a consumer on a third worker drains the queue.
#[test]
fn a_full_queue_on_another_worker_holds_its_producer_until_drained() {
    let workers = 3;
    for seed in 0..SEEDS / 3 {
        let mut sim = Sim::workers(Config { max_messages: 4, ..Config::default() }, workers, seed);
        let q = owned_by("/queue/fc-", 1, workers);
        let p = connect(&mut sim, 0);
        let mut wire = Vec::new();
        for i in 0..30 {
            wire.extend_from_slice(format!("SEND\ndestination:{q}\n\n{i}\0").as_bytes());
        }
        wire.extend_from_slice(format!("SEND\ndestination:{q}\nreceipt:last\n\nend\0").as_bytes());
        // Fed in pieces, with bus steps between, as reads arrive.
        for piece in wire.chunks(97) {
            sim.input(p, piece);
            for _ in 0..3 {
                sim.step();
            }
        }
        sim.run(MAX_STEPS);
        let held = sim.get(p).unwrap();
        assert!(held.held.is_some() && !held.is_closing(), "seed {seed}: the producer was not held");
        assert!(frames(&mut sim, p).is_empty(), "seed {seed}: no ERROR, no RECEIPT yet");
        let c = connect(&mut sim, 2);
        sim.input(c, format!("SUBSCRIBE\nid:s\ndestination:{q}\n\n\0").as_bytes());
        let mut got = Vec::new();
        for _ in 0..100 {
            sim.run(MAX_STEPS);
            got.extend(frames(&mut sim, c).iter().map(body));
            if got.len() == 31 {
                break;
            }
        }
        let want: Vec<String> = (0..30).map(|i| i.to_string()).chain(["end".to_string()]).collect();
        let pc = sim.get(p).unwrap();
        let state = format!(
            "held {:?} phase {:?} sched {:?} depth {:?} blocked {}",
            pc.held,
            pc.phase,
            pc.sched,
            sim.nodes[1].shard.queue_depth(&q),
            sim.nodes[1].shard.blocked_len()
        );
        assert_eq!(got, want, "seed {seed}: {state}");
        let r = frames(&mut sim, p);
        assert_eq!(r.iter().map(|f| f.command).collect::<Vec<_>>(), [Command::Receipt], "seed {seed}");
        assert!(sim.get(p).unwrap().held.is_none());
    }
}

/// `max_memory` across workers: a producer on worker 0 filling a queue owned by worker 1 is
/// paused once the count reaches the limit (the SENDs it has in flight are held, not refused),
/// and a consumer on worker 1 draining the queue lets it go; every message arrives once, in
/// order, and every SEND gets its receipt, whatever the schedule.
#[test]
fn the_memory_alarm_pauses_a_producer_on_another_worker_until_the_owner_drains() {
    let workers = 2;
    let (n, size) = (24usize, 1 << 20);
    for seed in 0..30 {
        let cfg = Config {
            max_memory: 16 << 20,
            max_message_size: 2 << 20,
            max_messages: 1_000_000,
            max_queue_bytes: 1 << 30,
            ..Config::default()
        };
        let mut sim = Sim::workers(cfg, workers, seed);
        let q = owned_by("/queue/mem-", 1, workers);
        let p = connect(&mut sim, 0);
        let mut wire = Vec::new();
        for i in 0..n {
            let mut body = vec![b'm'; size];
            body[..4].copy_from_slice(format!("{i:04}").as_bytes());
            wire.extend_from_slice(format!("SEND\ndestination:{q}\nreceipt:r{i}\ncontent-length:{size}\n\n").as_bytes());
            wire.extend_from_slice(&body);
            wire.push(0);
        }
        sim.input(p, &wire);
        sim.run(MAX_STEPS);
        let receipted = frames(&mut sim, p);
        let g = &sim.nodes[0].ctx.env.shared.memory;
        assert!(g.alarm(), "seed {seed}: {} bytes counted, no alarm", g.used());
        assert!((14..=17).contains(&receipted.len()), "seed {seed}: {} SENDs taken under a 16 MiB limit", receipted.len());
        assert!(receipted.iter().all(|f| f.command == Command::Receipt), "seed {seed}: {receipted:?}");
        let c = connect(&mut sim, 1);
        sim.input(c, format!("SUBSCRIBE\nid:s\ndestination:{q}\nack:auto\n\n\0").as_bytes());
        let mut got = Vec::new();
        for _ in 0..50 {
            sim.run(MAX_STEPS);
            got.extend(frames(&mut sim, c).into_iter().filter(|f| f.command == Command::Message));
            if got.len() == n {
                break;
            }
        }
        let bodies: Vec<String> = got.iter().map(|f| body(f)[..4].to_string()).collect();
        let want: Vec<String> = (0..n).map(|i| format!("{i:04}")).collect();
        assert_eq!(bodies, want, "seed {seed}: lost, duplicated or reordered");
        let rest = frames(&mut sim, p);
        assert_eq!(receipted.len() + rest.len(), n, "seed {seed}: every SEND got its receipt");
        sim.settle(); // a turn on each worker: the consumer's written output is recounted
        let g = &sim.nodes[0].ctx.env.shared.memory;
        assert!(
            !g.alarm(),
            "seed {seed}: still raised with the queue drained: {} {:?} {:?} {}",
            g.used(),
            g.of_worker(0),
            g.of_worker(1),
            g.in_flight()
        );
        assert!(g.alarms() >= 1);
    }
}

/// A wildcard subscription's RECEIPT comes once every owner has registered it, so a message
/// sent after it to a matching topic of any owner reaches it, in per-topic order, whatever the
/// schedule; after the UNSUBSCRIBE's receipt, nothing more does.
#[test]
fn a_wildcard_subscription_is_in_place_at_every_owner_when_its_receipt_comes() {
    let workers = 3;
    for seed in 0..SEEDS / 3 {
        let mut sim = Sim::workers(Config::default(), workers, seed);
        let topics: Vec<String> = (0..workers).map(|o| owned_by("/topic/w.", o, workers)).collect();
        let s = connect(&mut sim, 1);
        sim.input(s, b"SUBSCRIBE\nid:w\ndestination:/topic/w.*\nselector:n <> 'skip'\nreceipt:sub\n\n\0");
        sim.run(MAX_STEPS);
        assert_eq!(frames(&mut sim, s).iter().map(|f| f.command).collect::<Vec<_>>(), [Command::Receipt], "seed {seed}");
        let p = connect(&mut sim, 0);
        for i in 0..6 {
            for t in &topics {
                let n = if i == 3 { "skip" } else { "keep" };
                sim.input(p, format!("SEND\ndestination:{t}\nn:{n}\n\n{t} {i}\0").as_bytes());
            }
        }
        sim.input(p, b"SEND\ndestination:/topic/x.y\nreceipt:sent\n\nnot matching\0");
        sim.run(MAX_STEPS);
        let got: Vec<String> = frames(&mut sim, s).iter().map(body).collect();
        for t in &topics {
            let mine: Vec<&String> = got.iter().filter(|b| b.starts_with(&format!("{t} "))).collect();
            let want: Vec<String> = [0, 1, 2, 4, 5].iter().map(|i| format!("{t} {i}")).collect();
            assert_eq!(mine, want.iter().collect::<Vec<_>>(), "seed {seed}: {t}");
        }
        assert_eq!(got.len(), 5 * workers, "seed {seed}: {got:?}");
        sim.input(s, b"UNSUBSCRIBE\nid:w\nreceipt:unsub\n\n\0");
        sim.run(MAX_STEPS);
        assert_eq!(frames(&mut sim, s).iter().map(|f| f.command).collect::<Vec<_>>(), [Command::Receipt], "seed {seed}");
        for t in &topics {
            sim.input(p, format!("SEND\ndestination:{t}\n\nlate\0").as_bytes());
        }
        sim.run(MAX_STEPS);
        assert!(frames(&mut sim, s).is_empty(), "seed {seed}: delivered after the UNSUBSCRIBE's receipt");
    }
}
