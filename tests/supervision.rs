//! A broker thread that dies outside a connection's processing stops the whole server with a
//! reason, instead of leaving a half-dead broker whose destinations swallow traffic:
//! `ServerHandle::failure` and `join` report it (and `main` exits 70 on it).

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_worker_panic_stops_the_server_with_its_reason() {
    let mut b = Broker::start(2);
    let mut c = b.client("1.2");
    c.subscribe_sync("s", "/queue/sup", "auto");
    let h = b.handle.take().unwrap();
    assert_eq!(h.failure(), None);
    h.inject_worker_panic(1);
    let deadline = Instant::now() + WAIT;
    while h.failure().is_none() {
        assert!(Instant::now() < deadline, "the failure was not noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(h.stop_requested(), "the other workers are told to stop");
    let e = h.join().expect_err("join reports the failure");
    assert!(e.to_string().contains("worker 1 died: injected fault in worker 1"), "{e}");
    // Every client is let go (closed, not left hanging on a worker that is gone).
    c.expect_closed();
    assert!(std::net::TcpStream::connect(b.addr).is_err(), "no longer accepting");
}
