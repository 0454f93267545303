//! Hot paths of the sans-io core: parsing a SEND, encoding a MESSAGE, header escaping.
//! Run with `make bench` (criterion); compare runs on the same machine only.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use romp::broker::Message;
use romp::conn::deliver::write_message;
use romp::stomp::escape::{encode_into, Escaping};
use romp::stomp::{parse, Limits, Parsed, Version};
use std::hint::black_box;
use std::sync::Arc;

fn send_frame(body: usize) -> Vec<u8> {
    let mut f = b"SEND\ndestination:/queue/bench\ncontent-type:text/plain\nx-seq:12345\n".to_vec();
    f.extend_from_slice(format!("content-length:{body}\n\n").as_bytes());
    f.extend(std::iter::repeat_n(b'x', body));
    f.push(0);
    f
}

fn bench_parse(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse_send");
    let limits = Limits { max_body: 1 << 20, ..Limits::default() };
    for body in [20usize, 100, 1024, 65536] {
        let f = send_frame(body);
        g.throughput(Throughput::Bytes(f.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(body), &f, |b, f| {
            b.iter(|| match parse(black_box(f), Version::V1_2, &limits) {
                Ok(Parsed::Frame(fr, n)) => black_box((fr.body.len(), n)),
                _ => unreachable!(),
            })
        });
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let msg = Arc::new(Message::new(
        42,
        "/topic/bench".into(),
        vec![("content-type".into(), "text/plain".into()), ("x-seq".into(), "12345".into())],
        vec![b'x'; 100].into(),
    ));
    let mut out = Vec::with_capacity(4096);
    c.bench_function("encode_message_100b", |b| {
        b.iter(|| {
            out.clear();
            write_message(&mut out, Version::V1_2, "sub-1", black_box(&msg), Some((1, 99)), false, true);
            black_box(out.len())
        })
    });
}

fn bench_escape(c: &mut Criterion) {
    let mut out = Vec::with_capacity(256);
    for (name, v) in [("plain", "just/a/plain/value/without/specials"), ("escaped", "a:b\\c\nd:e:f\\g")] {
        c.bench_function(&format!("escape_{name}"), |b| {
            b.iter(|| {
                out.clear();
                encode_into(&mut out, black_box(v), Escaping::V12);
                black_box(out.len())
            })
        });
    }
}

/// One SEND fanned out to 1,000 local subscribers of a topic (the whole path: parse, publish,
/// shard, delivery, encoding into 1,000 output buffers).
fn bench_fan_out(c: &mut Criterion) {
    let n = 1000;
    let mut sim = romp::sim::Sim::new(romp::Config { max_pending_bytes: 64 << 20, ..romp::Config::default() }, n + 1);
    sim.recount_memory = false;
    for i in 0..=n {
        sim.feed(i, b"CONNECT\naccept-version:1.2\n\n\0");
        if i > 0 {
            sim.feed(i, b"SUBSCRIBE\nid:s\ndestination:/topic/fan\n\n\0");
        }
        sim.output(i).clear();
    }
    let send = String::from_utf8(send_frame(100)).unwrap().replace("/queue/bench", "/topic/fan").into_bytes();
    let mut g = c.benchmark_group("fan_out");
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("1000_subscribers_100b", |b| {
        b.iter(|| {
            sim.feed(0, black_box(&send));
            for i in 1..=n {
                sim.output(i).clear();
            }
        })
    });
    g.finish();
}

/// The whole broker path of one queue message on one worker, sockets aside: parse the SEND,
/// build the message, enqueue, dispatch, encode the MESSAGE, return the credit.
fn bench_queue_path(c: &mut Criterion) {
    let mut sim = romp::sim::Sim::new(romp::Config::default(), 2);
    for i in 0..2 {
        sim.feed(i, b"CONNECT\naccept-version:1.2\n\n\0");
    }
    sim.feed(1, b"SUBSCRIBE\nid:q\ndestination:/queue/bench\n\n\0");
    sim.output(0).clear();
    sim.output(1).clear();
    let send = send_frame(100);
    let mut g = c.benchmark_group("queue_path");
    g.throughput(Throughput::Elements(1));
    g.bench_function("send_to_message_100b", |b| {
        b.iter(|| {
            sim.feed(0, black_box(&send));
            sim.output(1).clear();
        })
    });
    g.finish();
}

criterion_group!(benches, bench_parse, bench_encode, bench_escape, bench_fan_out, bench_queue_path);
criterion_main!(benches);
