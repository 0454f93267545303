//! Producer flow control (`overflow = "block"`, the default): a full queue holds the
//! connections that send to it instead of refusing them, and lets them go when it drains; the
//! other overflow policies (`drop-head`, and `block_timeout`) do what conf/romp.toml says.

mod common;
use common::*;
use romp::client::{blocking::Connection, frames, AckMode, Options};
use romp::config::{DestConfig, Overflow};
use romp::stomp::Version;
use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// A producer that pipelines `n` SENDs of `<pid>:<i>` to `dest` as fast as the socket takes
/// them (no receipts), then DISCONNECTs with a receipt: it returns only if the broker kept it.
fn pipelined_producer(addr: SocketAddr, pid: usize, dest: &str, n: usize) -> std::thread::JoinHandle<()> {
    let dest = dest.to_string();
    std::thread::spawn(move || {
        let c = Connection::connect(addr, Options::version(Version::V1_2)).expect("producer connects");
        let mut chunk = Vec::new();
        for i in 0..n {
            frames::send(&mut chunk, Version::V1_2, &dest, format!("{pid}:{i}").as_bytes(), &[]).unwrap();
            if chunk.len() > 64 * 1024 || i + 1 == n {
                let mut s = c.stream();
                s.write_all(&chunk).expect("the broker never stops taking a producer's bytes for good");
                chunk.clear();
            }
        }
        c.disconnect().expect("the producer was not disconnected: DISCONNECT got its receipt");
    })
}

/// Consume `n` messages from `dest` and check each producer's come in order, once each.
fn consume_in_order(addr: SocketAddr, dest: &str, producers: usize, n: usize) {
    let mut c = Connection::connect(addr, Options::version(Version::V1_2)).unwrap();
    c.subscribe("s", dest, AckMode::Auto).unwrap();
    let mut next = vec![0usize; producers];
    for got in 0..n {
        let m = c.recv(T).unwrap().unwrap_or_else(|| panic!("only {got} of {n} messages arrived"));
        let body = String::from_utf8(m.body.clone()).unwrap();
        let (pid, i) = body.split_once(':').unwrap();
        let (pid, i): (usize, usize) = (pid.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[pid], "producer {pid}: out of order or duplicated");
        next[pid] += 1;
    }
    assert!(c.recv(Duration::from_millis(200)).unwrap().is_none(), "more than was sent");
}

#[test]
fn a_burst_into_a_full_queue_holds_the_producer_and_loses_nothing() {
    let b = Broker::with(2, |c| c.max_messages = 1000);
    let n = 500_000;
    let p = pipelined_producer(b.addr, 0, "/queue/burst", n);
    // The consumer starts late: the queue fills, the producer must be held, not cut off.
    std::thread::sleep(Duration::from_millis(300));
    consume_in_order(b.addr, "/queue/burst", 1, n);
    p.join().expect("producer");
    assert!(b.metric("romp_flow_blocks_total ") >= 1, "the queue never held its producer");
    assert_eq!(b.metric("romp_messages_rejected_total "), 0);
}

#[test]
fn ten_producers_into_one_queue_are_all_kept() {
    let b = Broker::with(2, |c| c.max_messages = 500);
    let (producers, each) = (10, 20_000);
    let ps: Vec<_> = (0..producers).map(|pid| pipelined_producer(b.addr, pid, "/queue/fan-in", each)).collect();
    std::thread::sleep(Duration::from_millis(200));
    consume_in_order(b.addr, "/queue/fan-in", producers, producers * each);
    for p in ps {
        p.join().expect("producer");
    }
    assert!(b.metric("romp_flow_blocks_total ") >= 1);
}

#[test]
fn a_held_producer_does_not_hold_its_neighbours() {
    let b = Broker::with(1, |c| c.max_messages = 2);
    let mut held = b.client("1.2");
    for i in 0..2 {
        held.with_receipt("SEND", &[("destination", "/queue/full")], b"x", &format!("f{i}"));
    }
    // The queue is at its limit: this SEND is held (no receipt, no ERROR) ...
    held.send_frame("SEND", &[("destination", "/queue/full"), ("receipt", "f2")], b"x");
    held.expect_nothing(Duration::from_millis(300));
    // ... while another client on the same worker goes on.
    let mut other = b.client("1.2");
    other.with_receipt("SEND", &[("destination", "/queue/elsewhere")], b"y", "o1");
    // Draining the queue lets the held producer go: its SEND is accepted and receipted.
    let mut c = b.client("1.2");
    c.subscribe_sync("s", "/queue/full", "auto");
    for _ in 0..3 {
        c.expect("MESSAGE");
    }
    assert_eq!(held.expect("RECEIPT").h("receipt-id"), "f2");
}

#[test]
fn block_timeout_refuses_a_producer_held_too_long() {
    let b = Broker::with(2, |c| {
        c.max_messages = 1;
        c.block_timeout = 300;
    });
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/queue/bt")], b"1", "a");
    p.send_frame("SEND", &[("destination", "/queue/bt"), ("receipt", "b")], b"2");
    let e = p.expect_error("q flup");
    assert_eq!(e.h("receipt-id"), "b");
    assert!(e.text().contains("block_timeout"), "{}", e.text());
}

#[test]
fn drop_head_dead_letters_the_oldest() {
    let b = Broker::with(2, |c| {
        c.destinations
            .insert("/queue/dh".into(), DestConfig { max_messages: Some(3), overflow: Some(Overflow::DropHead), ..DestConfig::default() });
    });
    let mut p = b.client("1.2");
    for i in 0..5 {
        p.with_receipt("SEND", &[("destination", "/queue/dh")], i.to_string().as_bytes(), &format!("r{i}"));
    }
    let mut dlq = b.client("1.2");
    dlq.subscribe_sync("d", "/queue/DLQ.dh", "auto");
    for want in ["0", "1"] {
        let m = dlq.expect("MESSAGE");
        assert_eq!((m.text().as_str(), m.h("dlq-reason")), (want, "overflow"));
    }
    let mut c = b.client("1.2");
    c.subscribe_sync("s", "/queue/dh", "auto");
    for want in ["2", "3", "4"] {
        assert_eq!(c.expect("MESSAGE").text(), want);
    }
    assert_eq!(b.metric("romp_messages_overflow_dropped_total "), 2);
}
