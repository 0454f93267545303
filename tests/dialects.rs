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

#[test]
fn wildcard_subscriptions_see_every_matching_topic_whatever_worker_owns_it() {
    for setup in SETUPS {
        let b = Broker::start(setup);
        let mut all = b.client("1.2");
        all.subscribe_sync("all", "/topic/prices.>", "auto");
        let mut one_level = b.client("1.2");
        one_level.subscribe_sync("one", "/topic/prices.*", "auto");
        let mut ibm = b.client("1.1");
        sub(&mut ibm, "ibm", "/topic/prices.*.ibm", "price > 100");
        let mut exact = b.client("1.2");
        exact.subscribe_sync("x", "/topic/prices.nyse.ibm", "auto");
        let mut p = b.client("1.2");
        // Twenty topics: spread over every owner with four workers.
        let names: Vec<String> = (0..20).map(|i| format!("/topic/prices.x{i}")).collect();
        for n in &names {
            send(&mut p, n, &[], n);
        }
        send(&mut p, "/topic/prices.nyse.ibm", &[("price", "150")], "ibm 150");
        send(&mut p, "/topic/prices.nyse.ibm", &[("price", "50")], "ibm 50");
        send(&mut p, "/topic/prices", &[], "bare");
        send(&mut p, "/topic/pricesX.a", &[], "other");
        p.with_receipt("SEND", &[("destination", "/topic/other")], b"unrelated", "r");
        let mut got = bodies(&mut all, 23);
        got.sort();
        let mut want: Vec<String> = names.clone();
        want.extend(["ibm 150".into(), "ibm 50".into(), "bare".into()]);
        want.sort();
        assert_eq!(got, want, "{setup}: `>` matches every level, and the parent");
        let mut got = bodies(&mut one_level, 20);
        got.sort();
        let mut want = names.clone();
        want.sort();
        assert_eq!(got, want, "{setup}: `*` matches one level");
        assert_eq!(bodies(&mut ibm, 1), ["ibm 150"], "{setup}: a selector applies to wildcard deliveries");
        assert_eq!(bodies(&mut exact, 2), ["ibm 150", "ibm 50"], "{setup}");
        for c in [&mut all, &mut one_level, &mut ibm, &mut exact] {
            c.expect_nothing(Duration::from_millis(50));
        }
        // Unsubscribed, a wildcard subscription gets nothing more; the others go on.
        all.with_receipt("UNSUBSCRIBE", &[("id", "all")], b"", "u");
        p.with_receipt("SEND", &[("destination", "/topic/prices.x3")], b"after", "r2");
        assert_eq!(bodies(&mut one_level, 1), ["after"]);
        all.expect_nothing(Duration::from_millis(100));
    }
}

#[test]
fn rabbitmq_wildcards_and_literal_names_when_off() {
    let b = Broker::with(Setup { workers: 4, ws: false }, |c| c.wildcards = romp::config::Wildcards::Rabbitmq);
    let mut s = b.client("1.2");
    s.subscribe_sync("1", "/topic/news.#.sport", "auto");
    let mut p = b.client("1.2");
    for n in ["/topic/news.sport", "/topic/news.eu.sport", "/topic/news.eu.uk.sport", "/topic/news.eu", "/topic/news.sport.x"] {
        send(&mut p, n, &[], n);
    }
    p.with_receipt("SEND", &[("destination", "/topic/z")], b"", "r");
    // Different topics, perhaps different owners: no order between them.
    let mut got = bodies(&mut s, 3);
    got.sort();
    assert_eq!(got, ["/topic/news.eu.sport", "/topic/news.eu.uk.sport", "/topic/news.sport"]);
    s.expect_nothing(Duration::from_millis(100));
    // `>` is an ordinary word in RabbitMQ's syntax, and every wildcard one with wildcards off.
    let b = Broker::with(Setup { workers: 2, ws: false }, |c| c.wildcards = romp::config::Wildcards::Off);
    let mut s = b.client("1.2");
    s.subscribe_sync("1", "/topic/a.*", "auto");
    let mut p = b.client("1.2");
    send(&mut p, "/topic/a.b", &[], "not for it");
    p.with_receipt("SEND", &[("destination", "/topic/a.*")], b"literal", "r");
    assert_eq!(bodies(&mut s, 1), ["literal"]);
}

#[test]
fn wildcards_where_they_do_not_belong_are_refused() {
    let b = Broker::start(2);
    let mut c = b.client("1.2");
    c.send_frame("SEND", &[("destination", "/topic/a.*")], b"x");
    let e = c.expect_error("syntax");
    assert!(e.text().contains("a SEND names one topic (wildcards = \"activemq\")"), "{e:?}");
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/jobs.*")], b"");
    assert!(c.expect_error("unsupported").text().contains("wildcard subscriptions are for topics"));
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/a.>.b")], b"");
    assert!(c.expect_error("syntax").text().contains("last word"));
    let mut c = b.raw();
    c.connect_with("1.2", &[("client-id", "me")]);
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/a.>"), ("activemq.subscriptionName", "d")], b"");
    assert!(c.expect_error("unsupported").text().contains("durable subscription to a wildcard"));
}

#[test]
fn wildcard_subscriptions_are_bounded_server_wide_and_released_on_close() {
    let b = Broker::with(Setup { workers: 4, ws: false }, |c| c.max_wildcard_subs = 3);
    let mut a = b.client("1.2");
    a.subscribe_sync("1", "/topic/a.*", "auto");
    a.subscribe_sync("2", "/topic/b.*", "auto");
    let mut other = b.client("1.2");
    other.subscribe_sync("1", "/topic/c.>", "auto");
    // Exact names are not counted.
    other.subscribe_sync("2", "/topic/c.d", "auto");
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/d.*")], b"");
    assert!(c.expect_error("subs flup").text().contains("max_wildcard_subs = 3"));
    a.disconnect();
    // The closed connection's two come back to the pool (its worker applies the close soon
    // after the DISCONNECT): two more fit, a third does not.
    let deadline = std::time::Instant::now() + WAIT;
    let mut c = loop {
        let mut c = b.client("1.2");
        c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/d.*"), ("receipt", "s1")], b"");
        if c.recv().command == "RECEIPT" {
            break c;
        }
        assert!(std::time::Instant::now() < deadline, "the closed connection's wildcard subscriptions were not released");
        std::thread::sleep(Duration::from_millis(20));
    };
    c.subscribe_sync("2", "/topic/e.*", "auto");
    let mut d = b.client("1.2");
    d.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/f.*")], b"");
    d.expect_error("subs flup");
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/topic/e.1")], b"e", "r");
    assert_eq!(c.expect("MESSAGE").text(), "e");
}

#[test]
fn scheduled_messages_wait_for_their_time_on_queues_and_topics() {
    for setup in SETUPS {
        let b = Broker::start(setup);
        let mut q = b.client("1.2");
        q.subscribe_sync("q", "/queue/later", "auto");
        let mut t = b.client("1.2");
        t.subscribe_sync("t", "/topic/later", "auto");
        let mut p = b.client("1.2");
        let start = std::time::Instant::now();
        let at = (romp::broker::wall_ms() + 400).to_string();
        p.with_receipt("SEND", &[("destination", "/queue/later"), ("AMQ_SCHEDULED_DELAY", "600")], b"in 600 ms", "r1");
        p.with_receipt("SEND", &[("destination", "/queue/later"), ("AMQ_SCHEDULED_TIME", &at)], b"at +400 ms", "r2");
        p.with_receipt("SEND", &[("destination", "/topic/later"), ("_AMQ_SCHEDULED_DELAY", "300")], b"topic in 300 ms", "r3");
        p.with_receipt("SEND", &[("destination", "/queue/later")], b"now", "r4");
        assert_eq!(q.expect("MESSAGE").text(), "now", "{setup}");
        let m = t.expect("MESSAGE");
        assert_eq!(m.text(), "topic in 300 ms");
        assert!(start.elapsed() >= Duration::from_millis(300), "{setup}: delivered early");
        let m = q.expect("MESSAGE");
        assert_eq!(m.text(), "at +400 ms");
        assert!(start.elapsed() >= Duration::from_millis(390), "{setup}: delivered early");
        assert_eq!(m.h("AMQ_SCHEDULED_TIME"), at, "the scheduling headers stay, as ActiveMQ keeps them");
        assert_eq!(q.expect("MESSAGE").text(), "in 600 ms");
        assert!(start.elapsed() >= Duration::from_millis(600), "{setup}: delivered early: {:?}", start.elapsed());
    }
}

#[test]
fn a_repeated_schedule_delivers_each_time_under_a_new_id() {
    let b = Broker::start(Setup { workers: 2, ws: false });
    let mut q = b.client("1.2");
    q.subscribe_sync("q", "/queue/tick", "client-individual");
    let mut p = b.client("1.2");
    let start = std::time::Instant::now();
    let h =
        [("destination", "/queue/tick"), ("AMQ_SCHEDULED_DELAY", "100"), ("AMQ_SCHEDULED_PERIOD", "150"), ("AMQ_SCHEDULED_REPEAT", "3")];
    p.with_receipt("SEND", &h, b"tick", "r");
    let mut ids = Vec::new();
    for i in 0..4u64 {
        let m = q.expect("MESSAGE");
        assert_eq!(m.text(), "tick");
        assert!(start.elapsed() >= Duration::from_millis(100 + 150 * i), "firing {i} came early: {:?}", start.elapsed());
        ids.push(m.h("message-id").to_string());
        q.send_frame("ACK", &[("id", m.h("ack"))], b"");
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    q.expect_nothing(Duration::from_millis(400));
}

#[test]
fn bad_and_unbounded_schedules_are_refused() {
    let b = Broker::with(2, |c| c.max_scheduled = 4);
    for (h, v, word, why) in [
        ("AMQ_SCHEDULED_DELAY", "soon", "syntax", "not a number"),
        ("AMQ_SCHEDULED_REPEAT", "2", "syntax", "AMQ_SCHEDULED_PERIOD"),
        ("AMQ_SCHEDULED_DELAY", "99999999999999", "syntax", "366 days"),
        ("AMQ_SCHEDULED_CRON", "* * * * *", "unsupported", "cron"),
    ] {
        let mut c = b.client("1.2");
        c.send_frame("SEND", &[("destination", "/queue/s"), (h, v)], b"x");
        let e = c.expect_error(word);
        assert!(e.text().contains(why), "{h}: {e:?}");
    }
    // Two workers: each holds at most two of the four.
    let mut p = b.client("1.2");
    let mut refused = None;
    for i in 0..6 {
        let dest = format!("/queue/s{i}");
        p.send_frame("SEND", &[("destination", &dest), ("AMQ_SCHEDULED_DELAY", "60000"), ("receipt", "r")], b"x");
        let g = p.recv();
        if g.command == "ERROR" {
            refused = Some((i, g));
            break;
        }
    }
    let (i, e) = refused.expect("the bound refused a scheduled SEND");
    assert!(i >= 2, "refused after {i}");
    assert_eq!(e.h("message"), "q flup");
    assert!(e.text().contains("max_scheduled = 4"), "{e:?}");
    assert_eq!(b.metric("romp_scheduled_messages "), i as u64, "the held ones are counted");
}

#[test]
fn queue_priorities_consumer_priorities_exclusive_consumers_and_groups_over_the_wire() {
    for setup in SETUPS {
        let b = Broker::start(setup);
        // Message priority: a backlog is delivered highest first.
        let mut p = b.client("1.2");
        for (body, prio) in [("low", "1"), ("high", "9"), ("default", ""), ("mid", "6")] {
            let mut h = vec![("destination", "/queue/prio")];
            if !prio.is_empty() {
                h.push(("priority", prio));
            }
            p.send_frame("SEND", &h, body.as_bytes());
        }
        p.with_receipt("SEND", &[("destination", "/queue/other")], b"", "r");
        let mut c = b.client("1.2");
        c.subscribe_sync("1", "/queue/prio", "auto");
        assert_eq!(bodies(&mut c, 4), ["high", "mid", "default", "low"], "{setup}");
        // An exclusive consumer gets everything; when it leaves the next exclusive one does.
        let mut first = b.client("1.2");
        first.with_receipt("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/ex"), ("activemq.exclusive", "true")], b"", "s");
        let mut second = b.client("1.2");
        second.with_receipt("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/ex"), ("x-single-active-consumer", "true")], b"", "s");
        let mut plain = b.client("1.2");
        plain.subscribe_sync("1", "/queue/ex", "auto");
        for i in 0..6 {
            send(&mut p, "/queue/ex", &[], &i.to_string());
        }
        p.with_receipt("SEND", &[("destination", "/queue/other")], b"", "r");
        assert_eq!(bodies(&mut first, 6), ["0", "1", "2", "3", "4", "5"], "{setup}");
        first.disconnect();
        p.with_receipt("SEND", &[("destination", "/queue/ex")], b"6", "r");
        assert_eq!(bodies(&mut second, 1), ["6"], "{setup}");
        plain.expect_nothing(Duration::from_millis(100));
        // Groups: each group's messages all go to one of the competing consumers.
        let mut g1 = b.client("1.2");
        g1.subscribe_sync("1", "/queue/grp", "auto");
        let mut g2 = b.client("1.2");
        g2.subscribe_sync("1", "/queue/grp", "auto");
        for i in 0..20 {
            let g = ["red", "blue", "green"][i % 3];
            send(&mut p, "/queue/grp", &[("JMSXGroupID", g)], &format!("{g} {i}"));
        }
        p.with_receipt("SEND", &[("destination", "/queue/other")], b"", "r");
        let (mut a, mut bb) = (Vec::new(), Vec::new());
        while a.len() + bb.len() < 20 {
            if let Some(m) = g1.recv_timeout(Duration::from_millis(50)) {
                a.push(m.text());
            }
            if let Some(m) = g2.recv_timeout(Duration::from_millis(50)) {
                bb.push(m.text());
            }
        }
        for g in ["red", "blue", "green"] {
            let on_a = a.iter().any(|m| m.starts_with(g));
            let on_b = bb.iter().any(|m| m.starts_with(g));
            assert!(on_a != on_b, "{setup}: group {g} split: {a:?} / {bb:?}");
        }
        // Consumer priority: the higher consumer takes what it has room for first.
        let mut low = b.client("1.2");
        low.subscribe_sync("1", "/queue/cp", "client-individual");
        let mut high = b.client("1.2");
        let h =
            [("id", "1"), ("destination", "/queue/cp"), ("ack", "client-individual"), ("activemq.priority", "9"), ("prefetch-count", "3")];
        high.with_receipt("SUBSCRIBE", &h, b"", "s");
        for i in 0..5 {
            send(&mut p, "/queue/cp", &[], &i.to_string());
        }
        p.with_receipt("SEND", &[("destination", "/queue/other")], b"", "r");
        assert_eq!(bodies(&mut high, 3), ["0", "1", "2"], "{setup}");
        assert_eq!(bodies(&mut low, 2), ["3", "4"], "{setup}");
    }
}

#[test]
fn consumer_dialect_headers_on_topics_and_bad_priorities_are_refused() {
    let b = Broker::start(1);
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/t"), ("activemq.exclusive", "true")], b"");
    assert!(c.expect_error("unsupported").text().contains("apply to queues"));
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/q"), ("x-priority", "high")], b"");
    assert!(c.expect_error("syntax").text().contains("x-priority"));
    let mut c = b.client("1.2");
    c.send_frame("SEND", &[("destination", "/queue/q"), ("priority", "urgent")], b"");
    assert!(c.expect_error("syntax").text().contains("priority"));
    for (h, v) in [("x-queue-type", "stream"), ("activemq.noLocal", "true"), ("x-max-length", "10"), ("subscription-type", "ANYCAST")] {
        let mut c = b.client("1.2");
        c.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/t"), (h, v)], b"");
        assert!(c.expect_error("unsupported").text().contains(h), "{h}");
    }
    let mut c = b.client("1.2");
    c.send_frame("SEND", &[("destination", "/exchange/amq.topic/x")], b"");
    assert!(c.expect_error("unsupported").text().contains("/topic/NAME"));
    // Accepted: the quorum/classic queue types, and a matching routing type.
    let mut c = b.client("1.2");
    c.with_receipt("SUBSCRIBE", &[("id", "1"), ("destination", "/queue/q"), ("x-queue-type", "quorum")], b"", "a");
    c.with_receipt("SEND", &[("destination", "/queue/q"), ("destination-type", "ANYCAST")], b"ok", "b");
    assert_eq!(c.expect("MESSAGE").text(), "ok");
}

#[test]
fn a_browser_sees_the_queue_without_consuming_it_then_the_end() {
    for setup in SETUPS {
        let b = Broker::start(setup);
        let mut p = b.client("1.2");
        for i in 0..5 {
            send(&mut p, "/queue/shelf", &[("n", &i.to_string())], &format!("m{i}"));
        }
        p.with_receipt("SEND", &[("destination", "/queue/other")], b"", "r");
        // A consumer holds two unacknowledged.
        let mut holder = b.client("1.2");
        let h = [("id", "1"), ("destination", "/queue/shelf"), ("ack", "client-individual"), ("prefetch-count", "2")];
        holder.with_receipt("SUBSCRIBE", &h, b"", "s");
        assert_eq!(bodies(&mut holder, 2), ["m0", "m1"]);
        let mut br = b.client("1.2");
        br.with_receipt("SUBSCRIBE", &[("id", "b"), ("destination", "/queue/shelf"), ("browser", "true")], b"", "s");
        assert_eq!(bodies(&mut br, 5), ["m0", "m1", "m2", "m3", "m4"], "{setup}");
        let end = br.expect("MESSAGE");
        assert_eq!((end.h("browser"), end.h("subscription"), end.body.len()), ("end", "b", 0), "{setup}");
        br.expect_nothing(Duration::from_millis(100));
        // With a selector, and after a new message: a second browse sees what it accepts.
        p.with_receipt("SEND", &[("destination", "/queue/shelf"), ("n", "9")], b"m9", "r2");
        let h = [("id", "c"), ("destination", "/queue/shelf"), ("browser", "true"), ("selector", "n > 2")];
        br.with_receipt("SUBSCRIBE", &h, b"", "s2");
        assert_eq!(bodies(&mut br, 3), ["m3", "m4", "m9"], "{setup}");
        assert_eq!(br.expect("MESSAGE").h("browser"), "end");
        // Nothing was consumed: a consumer still gets the rest.
        let mut c = b.client("1.2");
        c.subscribe_sync("1", "/queue/shelf", "auto");
        assert_eq!(bodies(&mut c, 4), ["m2", "m3", "m4", "m9"], "{setup}");
        // An empty queue: just the end; a topic: refused.
        br.with_receipt("SUBSCRIBE", &[("id", "d"), ("destination", "/queue/empty"), ("browser", "true")], b"", "s3");
        assert_eq!(br.expect("MESSAGE").h("browser"), "end");
        br.send_frame("SUBSCRIBE", &[("id", "e"), ("destination", "/topic/t"), ("browser", "true")], b"");
        assert!(br.expect_error("unsupported").text().contains("browsing"));
    }
}

#[test]
fn request_reply_through_temporary_queues_private_to_their_connection() {
    for setup in SETUPS {
        let b = Broker::start(setup);
        // A service answers each request to its reply-to.
        let mut service = b.client("1.2");
        service.subscribe_sync("svc", "/queue/service", "auto");
        // RabbitMQ style: reply-to a temp queue the requester never subscribed to.
        let mut rq = b.client("1.2");
        rq.send_frame("SEND", &[("destination", "/queue/service"), ("reply-to", "/temp-queue/answers")], b"ping");
        let req = service.expect("MESSAGE");
        let reply_to = req.h("reply-to").to_string();
        assert!(reply_to.starts_with("/queue/temp-queue.") && reply_to.ends_with(".answers"), "{setup}: rewritten: {reply_to}");
        service.send_frame("SEND", &[("destination", &reply_to)], b"pong");
        let m = rq.expect("MESSAGE");
        assert_eq!((m.text().as_str(), m.h("subscription")), ("pong", "/temp-queue/answers"), "{setup}");
        // ActiveMQ style: subscribe to the temp queue first, then send with it as reply-to.
        let mut am = b.client("1.1");
        am.subscribe_sync("mine", "/temp-queue/r", "auto");
        am.send_frame("SEND", &[("destination", "/queue/service"), ("reply-to", "/temp-queue/r")], b"ping 2");
        let req = service.expect("MESSAGE");
        let other = req.h("reply-to").to_string();
        assert_ne!(other, reply_to, "{setup}: temp names differ per connection");
        service.send_frame("SEND", &[("destination", &other)], b"pong 2");
        assert_eq!(am.expect("MESSAGE").h("subscription"), "mine", "{setup}: no second, automatic subscription");
        // Someone else may send to it but not consume it.
        let mut thief = b.client("1.2");
        thief.send_frame("SUBSCRIBE", &[("id", "1"), ("destination", &reply_to)], b"");
        assert!(thief.expect_error("access denied").text().contains("another connection's"), "{setup}");
        // Temp topics too: the same name on two connections is two topics.
        let mut t1 = b.client("1.2");
        t1.subscribe_sync("t", "/temp-topic/news", "auto");
        let mut t2 = b.client("1.2");
        t2.subscribe_sync("t", "/temp-topic/news", "auto");
        t1.with_receipt("SEND", &[("destination", "/temp-topic/news")], b"for t1", "r");
        assert_eq!(t1.expect("MESSAGE").text(), "for t1");
        t2.expect_nothing(Duration::from_millis(100));
        // Closed, its temp queue is gone: a late reply is refused, not stored for nobody.
        rq.disconnect();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let mut late = b.client("1.2");
            late.send_frame("SEND", &[("destination", &reply_to), ("receipt", "x")], b"late");
            let g = late.recv();
            if g.command == "ERROR" {
                assert_eq!(g.h("message"), "destination unknown", "{setup}");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{setup}: the temp queue outlived its connection");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn a_retried_send_with_the_same_dedup_id_is_acknowledged_but_enqueued_once() {
    for setup in SETUPS {
        let b = Broker::with(setup, |c| c.dedup_window = 8);
        let mut p = b.client("1.2");
        p.with_receipt("SEND", &[("destination", "/queue/pay"), ("dedup-id", "order-1")], b"first", "r1");
        // The retry after a "lost" receipt, from another connection, and in Artemis' spelling.
        let mut retry = b.client("1.2");
        retry.with_receipt("SEND", &[("destination", "/queue/pay"), ("dedup-id", "order-1")], b"retry", "r2");
        retry.with_receipt("SEND", &[("destination", "/queue/pay"), ("_AMQ_DUPL_ID", "order-1")], b"artemis retry", "r3");
        // Another destination, or another id: not duplicates.
        p.with_receipt("SEND", &[("destination", "/queue/other"), ("dedup-id", "order-1")], b"elsewhere", "r4");
        p.with_receipt("SEND", &[("destination", "/queue/pay"), ("dedup-id", "order-2")], b"second", "r5");
        let mut c = b.client("1.2");
        c.subscribe_sync("1", "/queue/pay", "auto");
        assert_eq!(bodies(&mut c, 2), ["first", "second"], "{setup}");
        c.expect_nothing(Duration::from_millis(100));
        assert_eq!(b.metric("romp_messages_deduplicated_total "), 2, "{setup}");
    }
}

#[test]
fn the_dedup_window_is_bounded_and_forgets_the_oldest_ids_first() {
    let b = Broker::with(1, |c| c.dedup_window = 100);
    let mut p = b.client("1.2");
    for i in 0..150 {
        p.send_frame("SEND", &[("destination", "/queue/w"), ("dedup-id", &format!("id-{i}"))], b"x");
    }
    // id-0..49 were forgotten: sent again, they are new; id-100..149 are still known.
    for i in (0..10).chain(140..150) {
        p.send_frame("SEND", &[("destination", "/queue/w"), ("dedup-id", &format!("id-{i}"))], b"again");
    }
    p.with_receipt("SEND", &[("destination", "/queue/x")], b"", "r");
    let mut c = b.client("1.2");
    c.subscribe_sync("1", "/queue/w", "auto");
    let again = bodies(&mut c, 160).iter().filter(|b| *b == "again").count();
    assert_eq!(again, 10);
    c.expect_nothing(Duration::from_millis(100));
    let mut big = b.client("1.2");
    big.send_frame("SEND", &[("destination", "/queue/w"), ("dedup-id", &"x".repeat(300))], b"");
    assert!(big.expect_error("syntax").text().contains("at most 256 bytes"));
}
