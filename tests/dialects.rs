//! The dialects of other brokers through the embedded server, over TCP and WebSocket with one
//! and four workers (so selector and wildcard paths cross workers): JMS selectors on topics
//! and queues, and extension headers that romp refuses rather than ignores.

mod common;
use common::*;
use std::time::Duration;

const SETUPS: [Setup; 3] = [Setup { workers: 1, ws: false }, Setup { workers: 4, ws: false }, Setup { workers: 4, ws: true }];

fn sub(c: &mut Client, id: &str, dest: &str, selector: &str) {
    let r = format!("sub-{id}");
    c.with_receipt("SUBSCRIBE", &[("id", id), ("destination", dest), ("selector", selector)], b"", &r);
}

fn send(c: &mut Client, dest: &str, headers: &[(&str, &str)], body: &str) {
    let mut h = vec![("destination", dest)];
    h.extend_from_slice(headers);
    c.send_frame("SEND", &h, body.as_bytes());
}

fn bodies(c: &mut Client, n: usize) -> Vec<String> {
    (0..n).map(|_| c.expect("MESSAGE").text()).collect()
}

#[test]
fn topic_subscribers_get_only_what_their_selector_accepts() {
    for setup in SETUPS {
        let b = Broker::start(setup);
        let mut cars = b.client("1.2");
        sub(&mut cars, "1", "/topic/vehicles", "type = 'car' AND price < 100");
        let mut cheap = b.client("1.2");
        sub(&mut cheap, "1", "/topic/vehicles", "price BETWEEN 0 AND 10 OR color IN ('red')");
        let mut all = b.client("1.1");
        all.subscribe_sync("1", "/topic/vehicles", "auto");
        let mut p = b.client("1.2");
        send(&mut p, "/topic/vehicles", &[("type", "car"), ("price", "50")], "car 50");
        send(&mut p, "/topic/vehicles", &[("type", "car"), ("price", "500"), ("color", "red")], "red car 500");
        send(&mut p, "/topic/vehicles", &[("type", "bike"), ("price", "5")], "bike 5");
        send(&mut p, "/topic/vehicles", &[("type", "bike")], "bike, no price");
        p.with_receipt("SEND", &[("destination", "/topic/vehicles"), ("type", "car"), ("price", "7")], b"car 7", "r");
        assert_eq!(bodies(&mut all, 5), ["car 50", "red car 500", "bike 5", "bike, no price", "car 7"], "{setup}");
        assert_eq!(bodies(&mut cars, 2), ["car 50", "car 7"], "{setup}");
        assert_eq!(bodies(&mut cheap, 3), ["red car 500", "bike 5", "car 7"], "{setup}");
        cars.expect_nothing(Duration::from_millis(100));
        cheap.expect_nothing(Duration::from_millis(50));
    }
}

#[test]
fn queue_consumers_compete_for_what_their_selectors_accept_and_the_rest_waits() {
    for setup in SETUPS {
        let b = Broker::start(setup);
        let q = "/queue/work";
        let mut a = b.client("1.2");
        sub(&mut a, "a", q, "kind = 'a'");
        let mut bb = b.client("1.2");
        sub(&mut bb, "b", q, "kind = 'b' OR urgent = TRUE");
        let mut p = b.client("1.2");
        for i in 0..20 {
            let kind = ["a", "b", "c"][i % 3];
            send(&mut p, q, &[("kind", kind)], &format!("{kind}{i}"));
        }
        send(&mut p, q, &[("kind", "c"), ("urgent", "true")], "urgent c");
        p.with_receipt("SEND", &[("destination", q), ("kind", "a")], b"last a", "r");
        let mut got_a = bodies(&mut a, 8);
        assert!(got_a.iter().all(|s| s.starts_with('a') || s == "last a"), "{setup}: {got_a:?}");
        assert_eq!(got_a.pop().as_deref(), Some("last a"));
        let got_b = bodies(&mut bb, 8);
        assert!(got_b.iter().take(7).all(|s| s.starts_with('b')), "{setup}: {got_b:?}");
        assert_eq!(got_b[7], "urgent c", "{setup}");
        a.expect_nothing(Duration::from_millis(100));
        bb.expect_nothing(Duration::from_millis(50));
        // The c messages nobody accepted wait in order for a consumer that takes them.
        let mut any = b.client("1.2");
        any.subscribe("1", q, "client-individual");
        let cs = bodies(&mut any, 6);
        assert_eq!(cs, ["c2", "c5", "c8", "c11", "c14", "c17"], "{setup}");
    }
}

#[test]
fn a_selective_consumer_finds_its_message_behind_many_it_does_not_take() {
    let b = Broker::start(2);
    let q = "/queue/deep";
    let mut p = b.client("1.2");
    // More than one dispatch's selector budget: the owner goes on by itself in later turns.
    let n = 2 * romp::broker::queue::SELECTOR_BUDGET + 1000;
    for i in 0..n {
        send(&mut p, q, &[("n", &i.to_string())], "x");
    }
    p.with_receipt("SEND", &[("destination", q), ("n", "wanted")], b"found", "r");
    let mut c = b.client("1.2");
    sub(&mut c, "1", q, "n = 'wanted'");
    assert_eq!(c.expect("MESSAGE").text(), "found");
    // One in flight, acked one by one: after each ACK the consumer is offered the backlog
    // again and keeps finding the later matches.
    let mut d = b.client("1.2");
    let h = [("id", "2"), ("destination", q), ("selector", "n LIKE '%99'"), ("ack", "client-individual"), ("prefetch-count", "1")];
    d.with_receipt("SUBSCRIBE", &h, b"", "s2");
    let mut got = Vec::new();
    for _ in 0..n / 100 {
        let m = d.expect("MESSAGE");
        got.push(m.h("n").to_string());
        d.send_frame("ACK", &[("id", m.h("ack"))], b"");
    }
    let want: Vec<String> = (0..n).filter(|i| i % 100 == 99).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
}

#[test]
fn a_bad_selector_is_an_error_naming_the_position() {
    for setup in SETUPS {
        let b = Broker::start(setup);
        let mut c = b.client("1.2");
        c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/t"), ("selector", "type = 'car' AND")], b"");
        let e = c.expect_error("syntax");
        assert!(e.text().contains("position 16"), "{setup}: {e:?}");
        let mut c = b.client("1.2");
        c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/q"), ("selector", "price >> 3")], b"");
        let e = c.expect_error("syntax");
        assert!(e.text().contains("position 7"), "{setup}: {e:?}");
    }
}

#[test]
fn selectors_turned_off_are_refused_not_ignored() {
    let b = Broker::with(1, |c| c.selectors = false);
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/t"), ("selector", "a = 1")], b"");
    let e = c.expect_error("unsupported");
    assert!(e.text().contains("selectors = false"), "{e:?}");
}
