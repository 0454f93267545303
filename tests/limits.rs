//! Checklist section N (limits and robustness) and the connection limit.

mod common;
use common::*;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

fn sub_and_producer(b: &Broker, dest: &str) -> (Client, Client) {
    let mut s = b.client("1.2");
    s.subscribe_sync("0", dest, "auto");
    (s, b.client("1.2"))
}

both!(n1_header_count_at_the_limit, |w| {
    let b = Broker::with(w, |c| c.max_headers = 10);
    let (mut s, mut p) = sub_and_producer(&b, "/topic/n1");
    let heads = |n: usize| -> Vec<(String, String)> { (0..n).map(|i| (format!("h{i}"), "v".to_string())).collect() };
    for n in [8usize, 9] {
        // destination + n user headers: 9 and 10 lines, both within the limit.
        let h = heads(n);
        let mut hs: Vec<(&str, &str)> = vec![("destination", "/topic/n1")];
        hs.extend(h.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        p.send_frame("SEND", &hs, b"");
        s.expect("MESSAGE");
    }
    let h = heads(10);
    let mut hs: Vec<(&str, &str)> = vec![("destination", "/topic/n1")];
    hs.extend(h.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    p.send_frame("SEND", &hs, b"");
    let e = p.expect_error("hdr flup");
    assert!(e.text().contains("max_headers = 10"), "{}", e.text());
    s.expect_nothing(QUIET);
});

both!(n1_header_length_at_the_limit, |w| {
    let b = Broker::with(w, |c| c.max_header_len = 100);
    let (mut s, mut p) = sub_and_producer(&b, "/topic/n1l");
    for len in [99usize, 100] {
        let v = "x".repeat(len - 2);
        p.send_frame("SEND", &[("destination", "/topic/n1l"), ("k", &v)], b"");
        assert_eq!(s.expect("MESSAGE").h("k").len(), len - 2);
    }
    let v = "x".repeat(99);
    p.send_frame("SEND", &[("destination", "/topic/n1l"), ("k", &v)], b"");
    p.expect_error("hdr flup");
});

both!(n1_body_size_at_the_limit, |w| {
    let b = Broker::with(w, |c| c.max_message_size = 1000);
    let (mut s, mut p) = sub_and_producer(&b, "/topic/n1b");
    for n in [999usize, 1000] {
        p.send_frame("SEND", &[("destination", "/topic/n1b")], &vec![b'x'; n]);
        assert_eq!(s.expect("MESSAGE").body.len(), n);
    }
    let len = "1001";
    p.send_frame("SEND", &[("destination", "/topic/n1b"), ("content-length", len)], &[b'x'; 1001]);
    p.expect_error("msg flup");
    // Without content-length, the body is cut off as soon as it passes the limit.
    let mut p = b.client("1.2");
    let mut bytes = b"SEND\ndestination:/topic/n1b\n\n".to_vec();
    bytes.extend(vec![b'y'; 5000]);
    p.send_raw(&bytes);
    p.expect_error("msg flup");
    s.expect_nothing(QUIET);
});

both!(n1_endless_header_line_is_cut_off, |w| {
    let b = Broker::with(w, |c| c.max_header_len = 1024);
    let mut p = b.client("1.2");
    p.send_raw(b"SEND\ndestination:/queue/x\nk:");
    // Stream far more than the limit; the broker answers long before the end.
    for _ in 0..64 {
        if p.try_send_raw(&[b'v'; 1024]).is_err() {
            break;
        }
    }
    let e = p.expect("ERROR");
    assert_eq!(e.h("message"), "hdr flup");
});

both!(n2_garbage_and_truncated_frames_leave_others_alone, |w| {
    let b = Broker::start(w);
    let (mut s, mut p) = sub_and_producer(&b, "/queue/n2");
    let mut g = b.raw();
    g.send_raw(&[0xde, 0xad, 0xbe, 0xef, b'\n', 0, 0xff]);
    g.expect_error("syntax");
    let mut t = b.client("1.2");
    t.send_raw(b"SEND\ndestination:/queue/n2\ncontent-length:100\n\nonly part");
    drop(t);
    let mut l = b.client("1.2");
    l.send_raw(b"SEND\ndestination:/queue/n2\ncontent-length:12abc\n\n\0");
    l.expect_error("len not +int");
    let mut h = b.raw();
    h.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    h.expect_error("syntax");
    p.send("/queue/n2", "still fine");
    assert_eq!(s.expect("MESSAGE").text(), "still fine");
    s.expect_nothing(QUIET);
});

both!(n2_rapid_connect_disconnect, |w| {
    let b = Broker::start(w);
    for i in 0..300 {
        let c = b.client("1.2");
        if i % 2 == 0 {
            c.disconnect();
        } else {
            drop(c);
        }
    }
    let mut c = b.client("1.2");
    c.subscribe_sync("0", "/topic/n2r", "auto");
    c.disconnect();
    // Every one of those connections is gone.
    let t = std::time::Instant::now();
    while b.connections() > 0 && t.elapsed() < WAIT {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(b.connections(), 0);
});

both!(n3_one_mebibyte_body, |w| {
    let b = Broker::start(w);
    let (mut s, mut p) = sub_and_producer(&b, "/queue/n3");
    let body: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    p.send_frame("SEND", &[("destination", "/queue/n3"), ("content-length", "1048576")], &body);
    let m = s.expect("MESSAGE");
    assert_eq!(m.body, body);
});

tcp_only!(max_connections_pauses_and_resumes_accept, |w| {
    let b = Broker::with(w, |c| c.max_connections = 5);
    let mut held: Vec<Client> = (0..5).map(|_| b.client("1.2")).collect();
    let mut late = b.raw();
    late.send_frame("CONNECT", &[("accept-version", "1.2")], b"");
    late.expect_nothing(Duration::from_millis(400));
    // Resume only below 90% of the limit: 4 is not below 4.5 ... but 3 ... we close two.
    held.pop();
    held.pop();
    late.expect("CONNECTED");
    drop(held);
});

// 200,000 distinct queue names from one client created 200,000 queues (1.6 KB each): the
// number of destinations held at once is bounded server-wide.
both!(max_destinations_bounds_what_clients_can_create, |s: Setup| {
    let b = Broker::with(s, |c| c.max_destinations = 40);
    let mut p = b.client("1.2");
    // Each worker takes its share (40 / workers); the first refusal comes within 40 names.
    let mut refused = None;
    for i in 0..41 {
        p.send_frame("SEND", &[("destination", &format!("/queue/many-{i}")), ("receipt", &format!("r{i}"))], b"x");
        let g = p.recv();
        if g.command == "ERROR" {
            refused = Some((i, g));
            break;
        }
        assert_eq!(g.command, "RECEIPT", "{g:?}");
    }
    let (i, e) = refused.expect("41 queues held with max_destinations = 40");
    assert_eq!(e.h("message"), "dest flup", "{e:?}");
    assert!(e.text().contains("max_destinations = 40"), "{}", e.text());
    assert!(i >= 40 / s.workers.max(1) / 2, "refused after only {i}");
    p.expect_closed();
    // Existing destinations keep working for everyone.
    let mut q = b.client("1.2");
    q.with_receipt("SEND", &[("destination", "/queue/many-0")], b"y", "again");
    q.subscribe_sync("s", "/queue/many-0", "auto");
    assert_eq!(q.expect("MESSAGE").text(), "x");
});

// 20 connections x 1,024 subscriptions with 4,000-byte ids and names held 13 MiB each:
// destination names and subscription ids are length-limited.
both!(destination_names_and_subscription_ids_are_length_limited, |s: Setup| {
    let b = Broker::start(s);
    let long = format!("/queue/{}", "n".repeat(1100));
    let mut c = b.client("1.2");
    c.send(&long, "x");
    let e = c.expect_error("syntax");
    assert!(e.text().contains("at most 1024 bytes"), "{}", e.text());
    let mut c = b.client("1.2");
    c.subscribe(&"i".repeat(300), "/queue/short", "auto");
    let e = c.expect_error("syntax");
    assert!(e.text().contains("at most 256 bytes"), "{}", e.text());
    // At the limits, both are fine.
    let mut c = b.client("1.2");
    let at = format!("/queue/{}", "n".repeat(1024 - "/queue/".len()));
    c.subscribe_sync(&"i".repeat(256), &at, "auto");
    c.with_receipt("SEND", &[("destination", &at)], b"ok", "r");
    assert_eq!(c.expect("MESSAGE").text(), "ok");
});

// Connection churn with long heart-beats left each closed connection's timers in the heap
// until they fired, up to heart_beat_max later: they now leave once they outnumber what the
// live connections can arm.
#[test]
fn timers_of_closed_connections_leave_the_heap() {
    let b = Broker::with(1, |c| c.heart_beat_max = 3_600_000);
    for _ in 0..3000 {
        let mut c = Client::raw(b.addr);
        c.send_frame("CONNECT", &[("accept-version", "1.2"), ("host", "/"), ("heart-beat", "3600000,3600000")], b"");
        c.expect("CONNECTED");
        c.disconnect();
    }
    let timers = b.metric("romp_timers ");
    // Three per closed connection (connect, both heart-beats) would be 9,000.
    assert!(timers <= 1024 + 4 * 2 + 8, "{timers} timers for no live connection");
}

// 200 topic subscribers cut off as slow consumers still held their backlogs 16 s later: their
// ERROR waited behind megabytes they never read, with no deadline. Now a cut-off subscriber
// whose ERROR has not gone out within `linger` is dropped, backlog and all.
#[test]
fn a_cut_off_slow_consumer_is_dropped_within_linger() {
    let b = Broker::with(1, |c| {
        c.linger = 300;
        c.max_pending_bytes = (1 << 20) + 65_536;
    });
    let mut slow = Client::raw(b.addr);
    slow.connect("1.2");
    slow.subscribe_sync("s", "/topic/flood", "auto");
    // It never reads again.
    let mut p = b.client("1.2");
    let body = vec![b'f'; 60_000];
    let deadline = std::time::Instant::now() + WAIT;
    // Publish until the subscriber is cut off and dropped (the connection count falls to the
    // publisher alone).
    let mut i = 0;
    while b.connections() > 1 {
        assert!(std::time::Instant::now() < deadline, "the slow subscriber was never let go");
        if i < 2000 {
            p.with_receipt("SEND", &[("destination", "/topic/flood")], &body, &format!("f{i}"));
            i += 1;
        } else {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
