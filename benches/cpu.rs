//! CPU per unit of input where a hostile or merely large client could make it grow: each bench
//! should cost the same per unit whatever the size (linear input, O(1) lookups). Run with
//! `make bench-micro`; compare sizes within one run, on the same machine.
//!
//! - a SEND whose bytes arrive one at a time (as 1-byte WebSocket messages do): cost per byte
//!   for a 16 KiB and a 256 KiB body (was quadratic: every byte re-parsed the whole frame);
//! - a queue message with 10,000 idle consumers (no credit) besides the one that takes it;
//! - a STOMP 1.0 ACK by `message-id` with 1,000,000 messages pending on the connection.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use romp::client::Decoded;
use romp::sim::{ConnId, Sim};
use romp::stomp::{Limits, Version};
use std::hint::black_box;

fn connect(sim: &mut Sim, i: usize, version: &str) {
    sim.feed(i, format!("CONNECT\naccept-version:{version}\nhost:/\n\n\0").as_bytes());
    sim.output(i).clear();
}

fn bench_byte_at_a_time(c: &mut Criterion) {
    let mut g = c.benchmark_group("send_one_byte_at_a_time");
    g.sample_size(10);
    for body in [16 << 10, 256 << 10] {
        let mut sim = Sim::new(romp::Config { max_message_size: 1 << 20, ..romp::Config::default() }, 1);
        sim.recount_memory = false;
        connect(&mut sim, 0, "1.2");
        // No content-length: the parser must find the NUL, the case that rescanned.
        let mut f = b"SEND\ndestination:/topic/nobody\n\n".to_vec();
        f.extend(std::iter::repeat_n(b'b', body));
        f.push(0);
        g.throughput(Throughput::Bytes(f.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(body), &f, |b, f| {
            b.iter(|| {
                for byte in f.chunks(1) {
                    sim.input(ConnId { worker: 0, slot: 0 }, black_box(byte));
                }
            })
        });
    }
    g.finish();
}

fn bench_idle_consumers(c: &mut Criterion) {
    let idle = 10_000;
    let mut sim = Sim::new(romp::Config::default(), idle + 2);
    sim.recount_memory = false;
    for i in 0..idle + 2 {
        connect(&mut sim, i, "1.2");
    }
    // Each idle consumer takes one message and never acknowledges it: no credit left.
    for i in 2..idle + 2 {
        sim.feed(i, b"SUBSCRIBE\nid:s\ndestination:/queue/idle\nack:client-individual\nprefetch-count:1\n\n\0");
        sim.feed(0, b"SEND\ndestination:/queue/idle\n\nx\0");
        sim.output(i).clear();
    }
    sim.feed(1, b"SUBSCRIBE\nid:s\ndestination:/queue/idle\nack:auto\n\n\0");
    sim.output(1).clear();
    let send = b"SEND\ndestination:/queue/idle\ncontent-length:100\n\n"
        .iter()
        .chain([b'x'; 100].iter())
        .chain(b"\0")
        .copied()
        .collect::<Vec<u8>>();
    let mut g = c.benchmark_group("queue_with_idle_consumers");
    g.throughput(Throughput::Elements(1));
    g.bench_function("10000_idle", |b| {
        b.iter(|| {
            sim.feed(0, black_box(&send));
            assert!(!sim.output(1).is_empty(), "the active consumer got it");
            sim.output(1).clear();
        })
    });
    g.finish();
}

/// The `message-id`s of the MESSAGE frames in `out`, oldest first.
fn message_ids(out: &[u8], ids: &mut std::collections::VecDeque<String>) {
    let limits = Limits { max_headers: 100, max_header_len: 4096, max_body: 1 << 20 };
    let mut pos = 0;
    while let Ok(Decoded::Frame(f, n)) = romp::client::read(&out[pos..], Version::V1_0, &limits) {
        if let Some(id) = f.header("message-id") {
            ids.push_back(id.to_string());
        }
        pos += n;
    }
}

fn bench_ack_with_a_million_pending(c: &mut Criterion) {
    let pending = 1_000_000;
    let cfg = romp::Config { max_prefetch: 1_000_000, max_pending_bytes: 1 << 30, max_messages: 2_000_000, ..romp::Config::default() };
    let mut sim = Sim::new(cfg, 2);
    sim.recount_memory = false;
    connect(&mut sim, 0, "1.2");
    connect(&mut sim, 1, "1.0");
    sim.feed(1, b"SUBSCRIBE\ndestination:/queue/acks\nack:client\nprefetch-count:1000000\n\n\0");
    let one = b"SEND\ndestination:/queue/acks\n\nx\0";
    let mut ids = std::collections::VecDeque::new();
    for _ in 0..pending / 10_000 {
        sim.feed(0, &one.repeat(10_000));
        let out = std::mem::take(sim.output(1));
        message_ids(&out, &mut ids);
    }
    assert_eq!(ids.len(), pending, "every message pending on the 1.0 connection");
    let mut g = c.benchmark_group("ack_1_0");
    g.throughput(Throughput::Elements(1));
    g.bench_function("1000000_pending", |b| {
        b.iter(|| {
            // ACK the oldest by message-id; a new message keeps a million pending.
            let id = ids.pop_front().expect("pending");
            sim.feed(1, format!("ACK\nmessage-id:{id}\n\n\0").as_bytes());
            sim.feed(0, one);
            let out = std::mem::take(sim.output(1));
            message_ids(&out, &mut ids);
        })
    });
    g.finish();
}

criterion_group!(benches, bench_byte_at_a_time, bench_idle_consumers, bench_ack_with_a_million_pending);
criterion_main!(benches);
