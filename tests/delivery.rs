//! No loss, no duplicates, order kept: bulk delivery across workers, and slow consumers.

mod common;
use common::*;
use std::time::Duration;

/// `n` pipelined SENDs from one producer reach one consumer exactly once and in order.
fn queue_burst(w: Setup, n: usize) {
    let b = Broker::start(w);
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/burst", "auto");
    let addr = b.addr;
    let producer = std::thread::spawn(move || {
        let mut p = Client::raw(addr);
        p.connect("1.2");
        let mut batch = Vec::with_capacity(1 << 20);
        for i in 0..n {
            batch.extend(frame("SEND", &[("destination", "/queue/burst")], i.to_string().as_bytes()));
            if batch.len() > 512 * 1024 {
                p.send_raw(&batch);
                batch.clear();
            }
        }
        batch.extend(frame("DISCONNECT", &[("receipt", "done")], b""));
        p.send_raw(&batch);
        p.expect("RECEIPT");
    });
    for i in 0..n {
        let m = s.expect("MESSAGE");
        assert_eq!(m.text(), i.to_string(), "message {i} out of order or lost");
    }
    s.expect_nothing(Duration::from_millis(300));
    producer.join().unwrap();
}

both!(queue_100k_pipelined_exactly_once_in_order, |w| queue_burst(w, 100_000));

both!(topic_many_producers_order_per_producer, |w| {
    let b = Broker::start(w);
    let mut subs: Vec<Client> = (0..3).map(|_| b.client("1.2")).collect();
    for s in subs.iter_mut() {
        s.subscribe_sync("t", "/topic/order", "auto");
    }
    let n = 5_000;
    let producers: Vec<_> = (0..4)
        .map(|pid| {
            let addr = b.addr;
            std::thread::spawn(move || {
                let mut p = Client::raw(addr);
                p.connect("1.2");
                let mut bytes = Vec::new();
                for i in 0..n {
                    bytes.extend(frame("SEND", &[("destination", "/topic/order")], format!("{pid}:{i}").as_bytes()));
                }
                p.send_raw(&bytes);
                p.disconnect();
            })
        })
        .collect();
    for s in subs.iter_mut() {
        let mut next = [0usize; 4];
        for _ in 0..4 * n {
            let t = s.expect("MESSAGE").text();
            let (pid, i) = t.split_once(':').unwrap();
            let (pid, i): (usize, usize) = (pid.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[pid], "producer {pid} out of order");
            next[pid] += 1;
        }
    }
    for p in producers {
        p.join().unwrap();
    }
});

/// Publish `n` 16 KiB messages to `dest` while a fast subscriber reads them on its own thread.
/// The producer never runs more than 64 messages ahead of the fast subscriber, so that one is
/// fast by construction; returns once the fast one has every message (and `last`).
fn publish_paced(b: &Broker, dest: &'static str, n: usize) {
    let mut fast = b.client("1.2");
    fast.subscribe_sync("f", dest, "auto");
    let (tx, rx) = std::sync::mpsc::channel::<usize>();
    let reader = std::thread::spawn(move || {
        for i in 0..=n {
            fast.expect("MESSAGE");
            let _ = tx.send(i + 1);
        }
    });
    let mut p = b.client("1.2");
    let body = vec![b'z'; 16 * 1024];
    let mut seen = 0;
    for i in 0..n {
        while i >= seen + 64 {
            seen = rx.recv_timeout(WAIT).expect("fast subscriber stalled");
        }
        p.send_frame("SEND", &[("destination", dest)], &body);
    }
    p.send_frame("SEND", &[("destination", dest)], b"last");
    reader.join().unwrap();
    p.disconnect();
}

both!(slow_topic_subscriber_disconnected_fast_one_unaffected, |w| {
    let b = Broker::with(w, |c| {
        c.max_message_size = 64 * 1024;
        c.max_pending_bytes = 1 << 20;
    });
    let mut slow = b.client("1.2");
    slow.subscribe_sync("s", "/topic/slow", "auto");
    // 2000 x 16 KiB = 32 MiB: far past the slow one's socket buffers plus its 1 MiB bound.
    let n = 2_000;
    publish_paced(&b, "/topic/slow", n);
    // The slow one got what fitted, then ERROR "slow consumer" and a close.
    let mut got = 0;
    loop {
        let g = slow.recv();
        if g.command == "ERROR" {
            assert_eq!(g.h("message"), "slow consumer");
            break;
        }
        got += 1;
    }
    assert!(got < n, "the slow consumer should have been cut off");
    slow.expect_closed();
});

both!(slow_topic_subscriber_drop_policy_keeps_connection, |w| {
    let b = Broker::with(w, |c| {
        c.max_message_size = 64 * 1024;
        c.max_pending_bytes = 1 << 20;
        c.slow_consumer = romp::config::SlowConsumerPolicy::Drop;
    });
    let mut slow = b.client("1.2");
    slow.subscribe_sync("s", "/topic/drop", "auto");
    let n = 2_000;
    publish_paced(&b, "/topic/drop", n);
    // The slow one is still connected and gets a subset, then (once it reads) later messages.
    let mut got = 0;
    while let Some(m) = slow.recv_timeout(Duration::from_millis(500)) {
        assert_eq!(m.command, "MESSAGE");
        got += 1;
    }
    assert!(got < n, "some messages must have been dropped for the slow subscriber");
    let mut p = b.client("1.2");
    p.send("/topic/drop", "after");
    assert_eq!(slow.expect("MESSAGE").text(), "after");
    slow.disconnect();
});

both!(queue_consumer_is_bounded_by_credit_not_disconnected, |w| {
    let b = Broker::with(w, |c| c.prefetch = 10);
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/credit", "client-individual");
    let mut p = b.client("1.2");
    for i in 0..100 {
        p.send("/queue/credit", &i.to_string());
    }
    p.with_receipt("SEND", &[("destination", "/queue/credit")], b"100", "r");
    let mut ms: Vec<Got> = (0..10).map(|_| s.expect("MESSAGE")).collect();
    s.expect_nothing(Duration::from_millis(300));
    let mut seen = 0;
    while seen < 101 {
        let m = ms.remove(0);
        assert_eq!(m.text(), seen.to_string());
        seen += 1;
        s.send_frame("ACK", &[("id", m.h("ack"))], b"");
        if seen + ms.len() < 101 {
            ms.push(s.expect("MESSAGE"));
        }
    }
});
