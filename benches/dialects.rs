//! Broker CPU per message with and without the dialect features, through the whole path (SEND
//! parsed, owner dispatch, MESSAGE encoded) in the single-threaded simulation, so the ratio is
//! the features' own cost without the load tool and the machine's noise. Run with
//! `cargo bench --bench dialects`; compare the pairs of one run.
//!
//! - a queue with 10 auto-ack consumers, each without or with the selector `type = 'x'`
//!   (every message matches: the cost of evaluating it);
//! - one subscriber of one topic by its exact name, against one wildcard subscriber
//!   (`/topic/bench.*`) while messages go to 1,000 topics in turn;
//! - a queue whose messages carry mixed priorities, against the same without.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use romp::sim::Sim;
use std::hint::black_box;

fn connect(sim: &mut Sim, i: usize) {
    sim.feed(i, b"CONNECT\naccept-version:1.2\nhost:/\n\n\0");
    sim.output(i).clear();
}

fn send(dest: &str, headers: &str) -> Vec<u8> {
    let mut f = format!("SEND\ndestination:{dest}\n{headers}content-length:100\n\n").into_bytes();
    f.extend([b'x'; 100]);
    f.push(0);
    f
}

fn bench_selector(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_10_consumers");
    g.throughput(Throughput::Elements(1));
    for (name, selector) in [("plain", ""), ("selector", "selector:type = 'x'\n")] {
        let mut sim = Sim::new(romp::Config::default(), 11);
        sim.recount_memory = false;
        for i in 0..11 {
            connect(&mut sim, i);
        }
        for i in 1..11 {
            sim.feed(i, format!("SUBSCRIBE\nid:s\ndestination:/queue/q\nack:auto\n{selector}\n\0").as_bytes());
            sim.output(i).clear();
        }
        let f = send("/queue/q", "type:x\n");
        g.bench_function(name, |b| {
            b.iter(|| {
                sim.feed(0, black_box(&f));
                for i in 1..11 {
                    sim.output(i).clear();
                }
            })
        });
    }
    g.finish();
}

fn bench_wildcard(c: &mut Criterion) {
    let mut g = c.benchmark_group("topic_1_subscriber");
    g.throughput(Throughput::Elements(1));
    for (name, sub, topics) in [("exact", "/topic/bench.0", 1), ("wildcard_over_1000_topics", "/topic/bench.*", 1000)] {
        let mut sim = Sim::new(romp::Config::default(), 2);
        sim.recount_memory = false;
        connect(&mut sim, 0);
        connect(&mut sim, 1);
        sim.feed(1, format!("SUBSCRIBE\nid:s\ndestination:{sub}\n\n\0").as_bytes());
        sim.output(1).clear();
        let frames: Vec<Vec<u8>> = (0..topics).map(|t| send(&format!("/topic/bench.{t}"), "")).collect();
        let mut n = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                sim.feed(0, black_box(&frames[n % frames.len()]));
                n += 1;
                assert!(!sim.output(1).is_empty());
                sim.output(1).clear();
            })
        });
    }
    g.finish();
}

fn bench_priorities(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_1_consumer");
    g.throughput(Throughput::Elements(1));
    for (name, mixed) in [("one_priority", false), ("mixed_priorities", true)] {
        let mut sim = Sim::new(romp::Config::default(), 2);
        sim.recount_memory = false;
        connect(&mut sim, 0);
        connect(&mut sim, 1);
        sim.feed(1, b"SUBSCRIBE\nid:s\ndestination:/queue/p\nack:auto\n\n\0");
        sim.output(1).clear();
        let frames: Vec<Vec<u8>> =
            (0..10).map(|p| send("/queue/p", &if mixed { format!("priority:{p}\n") } else { String::new() })).collect();
        let mut n = 0;
        g.bench_function(name, |b| {
            b.iter(|| {
                sim.feed(0, black_box(&frames[n % frames.len()]));
                n += 1;
                sim.output(1).clear();
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_selector, bench_wildcard, bench_priorities);
criterion_main!(benches);
