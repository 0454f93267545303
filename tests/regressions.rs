//! One test per bug found and fixed, named for what went wrong.

mod common;
use common::*;
use std::time::Duration;

// Auto-ack credit returned late in a loop turn sat in the worker with nothing to wake it: a
// consumer stalled after exactly two prefetch windows.
both!(auto_ack_credit_late_in_a_turn_is_not_stranded, |w| {
    let b = Broker::with(w, |c| c.prefetch = 7);
    let mut p = b.client("1.2");
    let mut bytes = Vec::new();
    for i in 0..500 {
        bytes.extend(frame("SEND", &[("destination", "/queue/credit-stall")], i.to_string().as_bytes()));
    }
    p.send_raw(&bytes);
    p.disconnect();
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/credit-stall", "auto");
    for i in 0..500 {
        assert_eq!(s.expect("MESSAGE").text(), i.to_string());
    }
});

// A write error (the client reset the connection with receipts unread) dropped the connection
// at once, discarding SENDs the kernel had already received but the worker had not yet read.
both!(write_error_still_processes_received_input, |w| {
    let b = Broker::with(w, |c| c.max_pending_bytes = 1 << 21);
    let mut p = b.client("1.2");
    let mut bytes = Vec::new();
    let n = 20_000;
    for i in 0..n {
        bytes.extend(frame("SEND", &[("destination", "/queue/reset"), ("receipt", &i.to_string())], b"x"));
    }
    p.send_raw(&bytes);
    // Everything acknowledged by the broker's kernel first: a reset also discards the sender's
    // own unsent bytes, which no broker can prevent.
    wait_sent(&p.sock);
    drop(p); // unread receipts: the close is a reset
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/reset", "auto");
    for i in 0..n {
        assert!(s.recv_timeout(WAIT).is_some(), "only {i} of {n} messages arrived");
    }
    s.expect_nothing(Duration::from_millis(300));
});

// A client that pipelines frames with receipts and never reads them must not grow the broker's
// memory: past max_pending_bytes of its own unsent output, the broker stops reading it. Once it
// reads, everything it sent is processed and every receipt arrives, in order.
both!(client_that_never_reads_its_receipts_is_paused_not_buffered, |w| {
    let b = Broker::with(w, |c| {
        c.max_message_size = 1024;
        c.max_pending_bytes = 1024 + 65536;
    });
    let addr = b.addr;
    // ~18 MB of SENDs: more than loopback socket buffers hold, so if the broker kept reading
    // (and buffering receipts) the client's write would finish while nobody reads.
    let n = 400_000;
    let writer = std::thread::spawn(move || {
        let mut p = Client::raw(addr);
        p.connect("1.2");
        let mut bytes = Vec::new();
        for i in 0..n {
            bytes.extend(frame("SEND", &[("destination", "/topic/unread"), ("receipt", &i.to_string())], b"x"));
        }
        let s2 = p.sock.try_clone().unwrap();
        // Write on another thread: with the broker pausing, this blocks until we read.
        let w = std::thread::spawn(move || {
            let mut s2 = s2;
            std::io::Write::write_all(&mut s2, &bytes).unwrap();
        });
        // An unpaused broker reads all 18 MB in well under this; a paused one never does.
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(100));
            assert!(!w.is_finished(), "the broker kept reading (and buffering for) a client that does not read");
        }
        for i in 0..n {
            assert_eq!(p.expect("RECEIPT").h("receipt-id"), i.to_string());
        }
        w.join().unwrap();
    });
    writer.join().unwrap();
});

// The RECEIPT of a SUBSCRIBE went out after the subscription's first prefetch window of
// MESSAGEs (the owner dispatched before answering the barrier); a client that reads only after
// the receipt saw messages first. Found by an independent client suite; RabbitMQ sends it first.
both!(a_subscribe_receipt_comes_before_its_first_message, |s: Setup| {
    let b = Broker::start(s);
    let mut p = b.client("1.2");
    for i in 0..5 {
        p.with_receipt("SEND", &[("destination", "/queue/rfirst")], i.to_string().as_bytes(), &format!("p{i}"));
    }
    p.with_receipt("SEND", &[("destination", "/topic/rfirst"), ("x", "y")], b"t", "pt");
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "q"), ("destination", "/queue/rfirst"), ("receipt", "sq")], b"");
    let first = c.recv();
    assert_eq!((first.command.as_str(), first.header("receipt-id")), ("RECEIPT", Some("sq")), "{first:?}");
    for i in 0..5 {
        assert_eq!(c.expect("MESSAGE").text(), i.to_string());
    }
});

// Retained topic messages (min_delivery) replayed to a new subscriber came before its RECEIPT.
both!(a_subscribe_receipt_comes_before_replayed_topic_messages, |s: Setup| {
    let b = Broker::with(s, |c| {
        c.destinations.insert("/topic/kept".into(), romp::config::DestConfig { min_delivery: Some(1), ..Default::default() });
    });
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/topic/kept")], b"early", "p1");
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "t"), ("destination", "/topic/kept"), ("receipt", "st")], b"");
    let first = c.recv();
    assert_eq!((first.command.as_str(), first.header("receipt-id")), ("RECEIPT", Some("st")), "{first:?}");
    assert_eq!(c.expect("MESSAGE").text(), "early");
});

// STOMP 1.0: an UNSUBSCRIBE naming only the destination failed with `no subscription with id`
// when the SUBSCRIBE had carried an id (stompngo always sends one). It now removes the
// connection's subscriptions to that destination, as ActiveMQ does.
both!(v10_unsubscribe_by_destination_finds_subscriptions_made_with_an_id, |s: Setup| {
    let b = Broker::start(s);
    let mut c = b.client("1.0");
    c.subscribe_sync("sub-1", "/queue/u10", "auto");
    c.with_receipt("UNSUBSCRIBE", &[("destination", "/queue/u10")], b"", "gone");
    let mut p = b.client("1.0");
    p.with_receipt("SEND", &[("destination", "/queue/u10")], b"after", "p");
    c.expect_nothing(Duration::from_millis(200));
    // Naming a destination it is not subscribed to is still an error.
    c.send_frame("UNSUBSCRIBE", &[("destination", "/queue/never")], b"");
    c.expect_error("syntax");
});

// 1.0 and 1.1 ACKs found their message by scanning every pending message (490-820 us each with
// a million pending): they go through a message-id index now. Out-of-order acks, and one
// message id pending on two subscriptions of one connection, still settle exactly what they name.
both!(v10_v11_acks_by_message_id_settle_what_they_name, |s: Setup| {
    for v in ["1.0", "1.1"] {
        let b = Broker::start(s);
        let q = format!("/queue/acks-{}", v.replace('.', ""));
        let mut c = b.client(v);
        c.subscribe_sync("s", &q, "client");
        let mut p = b.client("1.2");
        for i in 0..300 {
            p.send(&q, &i.to_string());
        }
        let got: Vec<Got> = (0..300).map(|_| c.expect("MESSAGE")).collect();
        // Cumulative ack of the middle one settles the first half; then the last one the rest.
        for m in [&got[149], &got[299]] {
            let mut h = vec![("message-id", m.h("message-id"))];
            if v == "1.1" {
                h.push(("subscription", "s"));
            }
            c.send_frame("ACK", &h, b"");
        }
        c.with_receipt("UNSUBSCRIBE", &[("id", "s")], b"", "u");
        // Nothing was left unacknowledged: a new consumer finds the queue empty.
        let mut d = b.client("1.2");
        d.subscribe_sync("t", &q, "auto");
        d.expect_nothing(Duration::from_millis(200));
        // A topic message on two subscriptions of one connection: acking each by its
        // subscription (1.1) or twice by id (1.0) is accepted both times.
        let mut t = b.client(v);
        t.subscribe_sync("a", "/topic/twice", "client");
        t.subscribe_sync("b", "/topic/twice", "client");
        p.with_receipt("SEND", &[("destination", "/topic/twice")], b"x", "tw");
        let (m1, m2) = (t.expect("MESSAGE"), t.expect("MESSAGE"));
        for m in [&m1, &m2] {
            let mut h = vec![("message-id", m.h("message-id"))];
            if v == "1.1" {
                h.push(("subscription", m.h("subscription")));
            }
            t.send_frame("ACK", &h, b"");
        }
        t.with_receipt("DISCONNECT", &[], b"", "bye");
    }
});
