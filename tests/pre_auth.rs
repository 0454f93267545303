//! Before CONNECT succeeds a socket may make the broker hold at most `PRE_AUTH_BUDGET` (4 KiB)
//! of its input: a CONNECT that announces a body, or is larger than that, is refused at once
//! instead of being buffered until `connect_timeout`.

mod common;
use common::*;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).unwrap().parse().unwrap()
}

fn slow_connect_broker() -> Broker {
    // A long connect_timeout: an ERROR within the test's deadline is the pre-auth check.
    Broker::with(2, |c| c.connect_timeout = 120_000)
}

#[test]
fn a_connect_announcing_a_body_is_refused_at_once() {
    let b = slow_connect_broker();
    let mut c = Client::raw(b.addr);
    c.send_raw(b"CONNECT\naccept-version:1.2\nhost:/\ncontent-length:1048576\n\n");
    let e = c.expect_error("syntax");
    assert!(e.text().contains("must not have a body"), "{}", e.text());
}

#[test]
fn a_connect_larger_than_the_pre_auth_budget_is_refused() {
    let b = slow_connect_broker();
    let mut c = Client::raw(b.addr);
    let mut head = b"CONNECT\naccept-version:1.2\n".to_vec();
    for i in 0..4 {
        head.extend_from_slice(format!("x-{i}:{}\n", "v".repeat(1500)).as_bytes());
    }
    c.send_raw(&head); // never finished: the broker must not wait for the rest
    let e = c.expect_error("syntax");
    assert!(e.text().contains("4096 bytes at most"), "{}", e.text());
}

#[test]
fn a_thousand_sockets_announcing_big_connects_cost_next_to_nothing() {
    let b = slow_connect_broker();
    let before = rss_kib();
    let mut held = Vec::new();
    for _ in 0..1000 {
        let mut c = Client::raw(b.addr);
        let mut f = b"CONNECT\naccept-version:1.2\nhost:/\ncontent-length:1048576\n\n".to_vec();
        f.extend_from_slice(&[b'x'; 1000]);
        c.send_raw(&f);
        held.push(c);
    }
    for c in held.iter_mut() {
        c.expect_error("syntax");
    }
    let grown = rss_kib().saturating_sub(before);
    // Was about 1 GiB (a zero-filled 1 MiB buffer per socket until connect_timeout).
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB for 1,000 unauthenticated sockets");
}
