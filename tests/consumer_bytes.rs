//! Queue credit in bytes: a client-ack consumer that does not read is paused at its queue's
//! owner once its unsent output passes `max_pending_bytes`, whatever prefetch it asked for; the
//! queue then fills and holds its producer. Nothing is lost: when the consumer reads again, it
//! gets everything, in order.

mod common;
use common::*;
use romp::client::{blocking::Connection, frames, Options};
use romp::stomp::Version;
use std::io::Write;
use std::time::{Duration, Instant};

fn value(all: &str, prefix: &str) -> u64 {
    all.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).map_or(0, |v| v.parse().unwrap())
}

#[test]
fn a_consumer_that_does_not_read_stops_getting_deliveries_at_max_pending_bytes() {
    let b = Broker::with(2, |c| {
        c.max_queue_bytes = 64 << 20;
        c.max_pending_bytes = 4 << 20;
    });
    let mut c = b.client("1.2");
    let sub = [("id", "s"), ("destination", "/queue/big"), ("ack", "client-individual"), ("prefetch-count", "100000")];
    c.with_receipt("SUBSCRIBE", &sub, b"", "sub");
    let n = 100;
    let body = vec![b'b'; 1_000_000];
    let addr = b.addr;
    let producer = std::thread::spawn(move || {
        let p = Connection::connect(addr, Options::version(Version::V1_2)).unwrap();
        for i in 0..n {
            let mut f = Vec::new();
            let mut b = body.clone();
            b[..8].copy_from_slice(&(i as u64).to_be_bytes());
            frames::send(&mut f, Version::V1_2, "/queue/big", &b, &[]).unwrap();
            p.stream().write_all(&f).expect("the producer is held, never cut off");
        }
        p.disconnect().expect("not disconnected");
    });
    // Wait until the queue has filled and holds the producer.
    let deadline = Instant::now() + WAIT;
    let all = loop {
        let all = b.metrics();
        if value(&all, "romp_flow_blocks_total ") >= 1 {
            break all;
        }
        assert!(Instant::now() < deadline, "the queue never filled:\n{all}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let delivered = value(&all, "romp_destination_delivered_total{destination=\"/queue/big\"");
    // 4 MiB of output is 4 messages of 1 MB, plus what was on the bus when the pause arrived;
    // without the byte credit every message fitting in max_queue_bytes (64) was delivered.
    assert!(delivered <= 16, "{delivered} deliveries to a consumer with a full output");
    // Reading again, it gets all of them, in order.
    for i in 0..n {
        let m = c.expect("MESSAGE");
        assert_eq!(u64::from_be_bytes(m.body[..8].try_into().unwrap()), i as u64);
        c.send_frame("ACK", &[("id", m.h("ack"))], b"");
    }
    producer.join().unwrap();
}
