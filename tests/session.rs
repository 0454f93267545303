//! Checklist sections J (transactions), K (receipts), L (ERROR) and M (DISCONNECT).

mod common;
use common::*;
use std::time::{Duration, Instant};

const QUIET: Duration = Duration::from_millis(300);

both!(j1_transaction_header_rules, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_frame("BEGIN", &[], b"");
    c.expect_error("syntax");
    let mut c = b.client("1.2");
    c.with_receipt("BEGIN", &[("transaction", "t")], b"", "b");
    c.send_frame("BEGIN", &[("transaction", "t")], b"");
    c.expect_error("general");
    let mut c = b.client("1.2");
    c.send_frame("COMMIT", &[("transaction", "nope")], b"");
    c.expect_error("general");
    let mut c = b.client("1.2");
    c.send_frame("ABORT", &[("transaction", "nope")], b"");
    c.expect_error("general");
    let mut c = b.client("1.2");
    c.send_frame("SEND", &[("destination", "/queue/j1"), ("transaction", "nope")], b"");
    c.expect_error("general");
});

both!(j2_transactional_sends_wait_for_commit, |w| {
    let b = Broker::start(w);
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/j2", "auto");
    let mut p = b.client("1.2");
    p.send_frame("BEGIN", &[("transaction", "t")], b"");
    p.send_frame("SEND", &[("destination", "/queue/j2"), ("transaction", "t")], b"tx1");
    p.send_frame("SEND", &[("destination", "/queue/j2"), ("transaction", "t")], b"tx2");
    p.with_receipt("SEND", &[("destination", "/queue/j2")], b"plain", "p");
    assert_eq!(s.expect("MESSAGE").text(), "plain", "non-transactional SENDs go at once");
    s.expect_nothing(QUIET);
    p.with_receipt("COMMIT", &[("transaction", "t")], b"", "c");
    assert_eq!(s.expect("MESSAGE").text(), "tx1");
    assert_eq!(s.expect("MESSAGE").text(), "tx2");
    p.send_frame("BEGIN", &[("transaction", "u")], b"");
    p.send_frame("SEND", &[("destination", "/queue/j2"), ("transaction", "u")], b"gone");
    p.with_receipt("ABORT", &[("transaction", "u")], b"", "a");
    s.expect_nothing(QUIET);
});

both!(j3_open_transactions_abort_on_drop_and_disconnect, |w| {
    let b = Broker::start(w);
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/j3", "auto");
    let mut p = b.client("1.2");
    p.send_frame("BEGIN", &[("transaction", "t")], b"");
    p.with_receipt("SEND", &[("destination", "/queue/j3"), ("transaction", "t")], b"x", "r");
    drop(p);
    let mut p = b.client("1.2");
    p.send_frame("BEGIN", &[("transaction", "t")], b"");
    p.send_frame("SEND", &[("destination", "/queue/j3"), ("transaction", "t")], b"y");
    p.disconnect();
    s.expect_nothing(QUIET);
});

both!(j4_receipts_in_transactions, |w| {
    let b = Broker::start(w);
    let mut p = b.client("1.2");
    p.with_receipt("BEGIN", &[("transaction", "t")], b"", "1");
    p.with_receipt("SEND", &[("destination", "/queue/j4"), ("transaction", "t")], b"x", "2");
    p.with_receipt("COMMIT", &[("transaction", "t")], b"", "3");
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/j4", "auto");
    assert_eq!(s.expect("MESSAGE").text(), "x", "COMMIT's receipt meant the message was accepted");
});

both!(tx_limits, |w| {
    let b = Broker::with(w, |c| {
        c.max_transactions = 2;
        c.max_tx_frames = 3;
    });
    let mut c = b.client("1.2");
    c.send_frame("BEGIN", &[("transaction", "a")], b"");
    c.send_frame("BEGIN", &[("transaction", "b")], b"");
    c.send_frame("BEGIN", &[("transaction", "c")], b"");
    c.expect_error("tx flup");
    let mut c = b.client("1.2");
    c.send_frame("BEGIN", &[("transaction", "a")], b"");
    for _ in 0..4 {
        c.send_frame("SEND", &[("destination", "/queue/txl"), ("transaction", "a")], b"x");
    }
    c.expect_error("tx flup");
});

both!(k1_receipt_for_every_client_frame, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.with_receipt("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/k1"), ("ack", "client-individual")], b"", "sub");
    c.with_receipt("SEND", &[("destination", "/queue/k1")], b"x", "send");
    let m = c.expect("MESSAGE");
    c.with_receipt("NACK", &[("id", m.h("ack"))], b"", "nack");
    let m = c.expect("MESSAGE");
    c.with_receipt("ACK", &[("id", m.h("ack"))], b"", "ack");
    c.with_receipt("BEGIN", &[("transaction", "t")], b"", "begin");
    c.with_receipt("ABORT", &[("transaction", "t")], b"", "abort");
    c.with_receipt("BEGIN", &[("transaction", "t")], b"", "begin2");
    c.with_receipt("COMMIT", &[("transaction", "t")], b"", "commit");
    c.with_receipt("UNSUBSCRIBE", &[("id", "1")], b"", "unsub");
    c.disconnect();
});

both!(k2_receipts_in_order, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    // Frames to many destinations (so many owners with 4 workers), every one with a receipt.
    let mut bytes = Vec::new();
    for i in 0..100 {
        let r = i.to_string();
        let d = format!("/queue/k2-{}", i % 7);
        bytes.extend(frame("SEND", &[("destination", &d), ("receipt", &r)], b"x"));
        if i % 10 == 0 {
            bytes.extend(frame("BEGIN", &[("transaction", &format!("t{i}")), ("receipt", &format!("b{i}"))], b""));
        }
    }
    c.send_raw(&bytes);
    let mut got = Vec::new();
    for _ in 0..110 {
        got.push(c.expect("RECEIPT").h("receipt-id").to_string());
    }
    let mut want = Vec::new();
    for i in 0..100 {
        want.push(i.to_string());
        if i % 10 == 0 {
            want.push(format!("b{i}"));
        }
    }
    assert_eq!(got, want);
});

both!(k3_failed_frame_gets_error_with_receipt_id_and_no_receipt, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("destination", "/topic/k3"), ("receipt", "r1")], b"");
    let e = c.expect_error("syntax");
    assert_eq!(e.h("receipt-id"), "r1");
});

both!(l1_l2_error_then_close_and_later_frames_ignored, |w| {
    let b = Broker::start(w);
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/l1", "auto");
    let mut c = b.client("1.2");
    let mut bytes = frame("BOGUS", &[], b"");
    bytes.extend(frame("SEND", &[("destination", "/queue/l1")], b"after error"));
    c.send_raw(&bytes);
    let e = c.expect_error("syntax");
    assert_eq!(e.h("content-type"), "text/plain");
    assert_eq!(e.h("content-length"), e.body.len().to_string());
    s.expect_nothing(QUIET);
});

both!(l4_error_reaches_client_even_with_unread_input, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    // The error is followed by a lot of input the broker will never read: it must still linger
    // and half-close so the ERROR is readable.
    let mut bytes = frame("BOGUS", &[], b"");
    bytes.extend(std::iter::repeat_n(b'x', 200_000));
    let _ = c.try_send_raw(&bytes);
    let e = c.expect("ERROR");
    assert_eq!(e.h("message"), "syntax");
});

both!(m1_disconnect_receipt_then_close, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_frame("DISCONNECT", &[("receipt", "bye")], b"");
    assert_eq!(c.expect("RECEIPT").h("receipt-id"), "bye");
    c.expect_closed();
});

both!(m2_frames_after_disconnect_are_ignored, |w| {
    let b = Broker::start(w);
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/m2", "auto");
    let mut c = b.client("1.2");
    let mut bytes = frame("DISCONNECT", &[("receipt", "bye")], b"");
    bytes.extend(frame("SEND", &[("destination", "/queue/m2"), ("receipt", "late")], b"late"));
    c.send_raw(&bytes);
    assert_eq!(c.expect("RECEIPT").h("receipt-id"), "bye");
    c.expect_closed();
    s.expect_nothing(QUIET);
});

both!(m3_disconnect_requeues_unacked_and_aborts_tx, |w| {
    let b = Broker::start(w);
    let mut p = b.client("1.2");
    p.send("/queue/m3", "held");
    let mut c = b.client("1.2");
    c.subscribe("0", "/queue/m3", "client");
    c.expect("MESSAGE");
    c.send_frame("BEGIN", &[("transaction", "t")], b"");
    c.send_frame("SEND", &[("destination", "/queue/m3"), ("transaction", "t")], b"never");
    c.disconnect();
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/m3", "auto");
    let m = s.expect("MESSAGE");
    assert_eq!((m.text().as_str(), m.h("redelivered")), ("held", "true"));
    s.expect_nothing(QUIET);
});

both!(m4_burst_then_disconnect_is_fully_delivered, |w| {
    let b = Broker::start(w);
    let mut p = b.client("1.2");
    let n = 10_000;
    let mut bytes = Vec::new();
    for i in 0..n {
        bytes.extend(frame("SEND", &[("destination", "/queue/m4"), ("receipt", &i.to_string())], format!("{i}").as_bytes()));
    }
    bytes.extend(frame("DISCONNECT", &[("receipt", "bye")], b""));
    p.send_raw(&bytes);
    // Close right away, without reading the receipts, so the close is a reset. First wait until
    // the client's kernel has had every byte acknowledged: a reset also discards the sender's
    // own unsent bytes, which no broker can prevent.
    wait_sent(&p.sock);
    drop(p);
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/m4", "auto");
    let t = Instant::now();
    for i in 0..n {
        let m = s.expect("MESSAGE");
        assert_eq!(m.text(), i.to_string());
    }
    s.expect_nothing(QUIET);
    assert!(t.elapsed() < Duration::from_secs(30));
});
