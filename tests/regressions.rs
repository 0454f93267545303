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
