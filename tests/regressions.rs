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
    std::thread::sleep(Duration::from_millis(300));
    drop(p); // unread receipts: the close is a reset
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/reset", "auto");
    let mut got = 0;
    while s.recv_timeout(Duration::from_millis(500)).is_some() {
        got += 1;
    }
    assert_eq!(got, n);
});
