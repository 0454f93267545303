//! Per-destination configuration: one test per key of `[destinations."NAME"]`, plus expiry,
//! dead letters, retained topics (`min_delivery`), filters and `create_destinations`.

mod common;
use common::*;
use romp::config::DestConfig;
use std::time::Duration;

fn dest(cfg: &mut romp::Config, name: &str, f: impl FnOnce(&mut DestConfig)) {
    let mut d = DestConfig::default();
    f(&mut d);
    cfg.destinations.insert(name.to_string(), d);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

both!(read_and_write_blocks, |s: Setup| {
    let b = Broker::with(s, |c| {
        dest(c, "/topic/ro", |d| d.write_block = Some(true));
        dest(c, "/topic/wo", |d| d.read_block = Some(true));
    });
    let mut c = b.client("1.2");
    c.subscribe_sync("a", "/topic/ro", "auto");
    c.with_receipt("SEND", &[("destination", "/topic/wo")], b"x", "r1");
    c.send("/topic/ro", "nope");
    let e = c.expect_error("blocked");
    assert!(e.text().contains("/topic/ro"), "{}", e.text());
    let mut c = b.client("1.2");
    c.subscribe("b", "/topic/wo", "auto");
    c.expect_error("blocked");
});

#[test]
fn web_blocks_apply_to_the_web_port_only() {
    let b = Broker::with(Setup { workers: 2, ws: true }, |c| {
        dest(c, "/topic/feed", |d| {
            d.web_write_block = Some(true);
            d.web_read_block = Some(false);
        });
        dest(c, "/topic/private", |d| d.web_read_block = Some(true));
    });
    let mut web = b.client("1.2");
    web.subscribe_sync("a", "/topic/feed", "auto");
    let mut tcp = Client::raw(b.addr);
    tcp.connect("1.2");
    tcp.subscribe_sync("p", "/topic/private", "auto");
    tcp.send("/topic/feed", "from tcp");
    assert_eq!(web.expect("MESSAGE").text(), "from tcp");
    web.send("/topic/feed", "from the browser");
    web.expect_error("blocked");
    let mut web = b.client("1.2");
    web.subscribe("p", "/topic/private", "auto");
    web.expect_error("blocked");
}

both!(max_connections_limits_subscribers, |s: Setup| {
    let b = Broker::with(s, |c| {
        dest(c, "/queue/one", |d| d.max_connections = Some(1));
        dest(c, "/topic/two", |d| d.max_connections = Some(2));
    });
    let mut first = b.client("1.2");
    first.subscribe_sync("a", "/queue/one", "auto");
    let mut second = b.client("1.2");
    second.subscribe("a", "/queue/one", "auto");
    let e = second.expect_error("dest flup");
    assert!(e.text().contains("max_connections"), "{}", e.text());
    let mut subs: Vec<Client> = (0..2)
        .map(|i| {
            let mut c = b.client("1.2");
            c.subscribe_sync(&format!("t{i}"), "/topic/two", "auto");
            c
        })
        .collect();
    let mut third = b.client("1.2");
    third.subscribe("t", "/topic/two", "auto");
    third.expect_error("dest flup");
    // The refused subscription left no trace: after one leaves, a newcomer fits.
    subs.pop().unwrap().disconnect();
    let mut late = b.client("1.2");
    for _ in 0..50 {
        late.send_frame("SUBSCRIBE", &[("id", "x"), ("destination", "/topic/two"), ("receipt", "s")], b"");
        let g = late.recv();
        if g.command == "RECEIPT" {
            break;
        }
        late = b.client("1.2");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.send("/topic/two", "hello");
    assert_eq!(subs[0].expect("MESSAGE").text(), "hello");
    assert_eq!(late.expect("MESSAGE").text(), "hello");
});

both!(max_messages_and_bytes_per_destination, |s: Setup| {
    let b = Broker::with(s, |c| {
        // `reject` (not the default `block`): this test is about the refusal.
        dest(c, "/queue/small", |d| {
            d.max_messages = Some(3);
            d.overflow = Some(romp::config::Overflow::Reject);
        });
        dest(c, "/queue/narrow", |d| {
            d.max_queue_bytes = Some(100);
            d.overflow = Some(romp::config::Overflow::Reject);
        });
    });
    let mut c = b.client("1.2");
    for i in 0..3 {
        c.with_receipt("SEND", &[("destination", "/queue/small")], b"m", &format!("r{i}"));
    }
    c.send("/queue/small", "one too many");
    let e = c.expect_error("q flup");
    assert!(e.text().contains("max_messages = 3"), "{}", e.text());
    let mut c = b.client("1.2");
    c.send_frame("SEND", &[("destination", "/queue/narrow")], &[b'x'; 200]);
    c.expect_error("q flup");
    // Other queues keep the server's limits.
    let mut c = b.client("1.2");
    for i in 0..10 {
        c.with_receipt("SEND", &[("destination", "/queue/other")], b"m", &format!("o{i}"));
    }
});

both!(max_message_size_per_destination, |s: Setup| {
    let b = Broker::with(s, |c| dest(c, "/queue/tiny", |d| d.max_message_size = Some(10)));
    let mut c = b.client("1.2");
    c.with_receipt("SEND", &[("destination", "/queue/tiny")], b"0123456789", "ok");
    c.with_receipt("SEND", &[("destination", "/queue/big")], &[b'y'; 1000], "ok2");
    c.send_frame("SEND", &[("destination", "/queue/tiny")], b"0123456789A");
    let e = c.expect_error("msg flup");
    assert!(e.text().contains("at most 10"), "{}", e.text());
});

both!(create_destinations_false_allows_configured_only, |s: Setup| {
    let b = Broker::with(s, |c| {
        c.create_destinations = false;
        dest(c, "/queue/known", |_| {});
        dest(c, "/topic/app.*", |_| {});
    });
    let mut c = b.client("1.2");
    c.subscribe_sync("a", "/queue/known", "auto");
    c.subscribe_sync("b", "/topic/app.prices", "auto");
    c.with_receipt("SEND", &[("destination", "/topic/app.x")], b"x", "r");
    c.send("/queue/unknown", "x");
    c.expect_error("destination unknown");
    let mut c = b.client("1.2");
    c.subscribe("z", "/topic/other", "auto");
    c.expect_error("destination unknown");
});

both!(auto_ack_overrides_the_subscription, |s: Setup| {
    let b = Broker::with(s, |c| dest(c, "/queue/fire", |d| d.auto_ack = Some(true)));
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "a"), ("destination", "/queue/fire"), ("ack", "client"), ("prefetch-count", "1")], b"");
    let mut p = b.client("1.2");
    for i in 0..5 {
        p.send("/queue/fire", &format!("m{i}"));
    }
    // With client ack and prefetch 1 only one would arrive; auto_ack lets all through.
    for i in 0..5 {
        let m = c.expect("MESSAGE");
        assert_eq!(m.text(), format!("m{i}"));
        assert!(m.header("ack").is_none(), "auto-ack messages carry no ack header: {m:?}");
    }
});

both!(slow_consumer_policy_per_destination, |s: Setup| {
    // A client-ack topic subscriber past its prefetch meets the destination's policy.
    let b = Broker::with(s, |c| dest(c, "/topic/lossy", |d| d.slow_consumer = Some(romp::config::SlowConsumerPolicy::Drop)));
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "l"), ("destination", "/topic/lossy"), ("ack", "client"), ("prefetch-count", "1")], b"");
    c.send_frame(
        "SUBSCRIBE",
        &[("id", "s"), ("destination", "/topic/strict"), ("ack", "client"), ("prefetch-count", "1"), ("receipt", "r")],
        b"",
    );
    c.expect("RECEIPT");
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/topic/lossy")], b"1", "a");
    p.with_receipt("SEND", &[("destination", "/topic/lossy")], b"2", "b");
    assert_eq!(c.expect("MESSAGE").text(), "1");
    c.expect_nothing(Duration::from_millis(200)); // "2" dropped, connection kept
    p.with_receipt("SEND", &[("destination", "/topic/strict")], b"1", "c");
    p.with_receipt("SEND", &[("destination", "/topic/strict")], b"2", "d");
    assert_eq!(c.expect("MESSAGE").text(), "1");
    c.expect_error("slow consumer");
});

both!(expires_header_and_destination_ttl, |s: Setup| {
    let b = Broker::with(s, |c| dest(c, "/queue/ttl", |d| d.expiry = Some(150)));
    let mut p = b.client("1.2");
    let past = (now_ms() - 1000).to_string();
    let future = (now_ms() + 60_000).to_string();
    p.with_receipt("SEND", &[("destination", "/queue/plain"), ("expires", &past)], b"stale", "r1");
    p.with_receipt("SEND", &[("destination", "/queue/plain"), ("expires", &future)], b"fresh", "r2");
    p.with_receipt("SEND", &[("destination", "/queue/ttl")], b"short-lived", "r3");
    std::thread::sleep(Duration::from_millis(400));
    let mut c = b.client("1.2");
    c.subscribe("a", "/queue/plain", "auto");
    c.subscribe("b", "/queue/ttl", "auto");
    let m = c.expect("MESSAGE");
    assert_eq!(m.text(), "fresh");
    assert_eq!(m.h("expires"), future);
    c.expect_nothing(Duration::from_millis(200));
    // Both expired queue messages went to their dead-letter queues.
    c.subscribe("d1", "/queue/DLQ.plain", "auto");
    let d = c.expect("MESSAGE");
    assert_eq!((d.text().as_str(), d.h("dlq-reason"), d.h("original-destination")), ("stale", "expired", "/queue/plain"));
    c.subscribe("d2", "/queue/DLQ.ttl", "auto");
    let d = c.expect("MESSAGE");
    assert_eq!(d.text(), "short-lived");
    assert!(d.h("expires").parse::<u64>().unwrap() <= now_ms(), "the destination's TTL is visible as an expires header");
    p.send_frame("SEND", &[("destination", "/queue/plain"), ("expires", "tomorrow")], b"");
    p.expect_error("syntax");
});

#[test]
fn expired_queue_messages_leave_without_a_consumer_or_a_scan() {
    // 5,000 messages expire while nobody consumes: the queue empties on its own (the expiry
    // heap), the stats count them, and they all reach the dead-letter queue in order.
    let b = Broker::with(2, |c| dest(c, "/queue/batch", |d| d.expiry = Some(200)));
    let mut p = b.client("1.2");
    for i in 0..5000 {
        p.send("/queue/batch", &i.to_string());
    }
    p.with_receipt("SEND", &[("destination", "/queue/keep")], b"k", "done");
    std::thread::sleep(Duration::from_millis(600));
    let mut c = b.client("1.2");
    c.subscribe("d", "/queue/DLQ.batch", "auto");
    for i in 0..5000 {
        let m = c.expect("MESSAGE");
        assert_eq!(m.text(), i.to_string());
    }
    c.subscribe("b", "/queue/batch", "auto");
    c.expect_nothing(Duration::from_millis(200));
}

both!(dead_letter_after_max_redeliveries, |s: Setup| {
    let b = Broker::with(s, |c| {
        dest(c, "/queue/jobs", |d| d.max_redeliveries = Some(2));
        dest(c, "/queue/custom", |d| {
            d.max_redeliveries = Some(1);
            d.dead_letter = Some("/queue/poison".into());
        });
    });
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/queue/jobs"), ("job", "7")], b"work", "r");
    let mut c = b.client("1.2");
    c.subscribe("w", "/queue/jobs", "client-individual");
    for n in 0..3 {
        let m = c.expect("MESSAGE");
        assert_eq!(m.header("redelivered").is_some(), n > 0);
        let ack = m.h("ack").to_string();
        c.send_frame("NACK", &[("id", &ack)], b"");
    }
    c.expect_nothing(Duration::from_millis(150));
    c.subscribe("dl", "/queue/DLQ.jobs", "auto");
    let d = c.expect("MESSAGE");
    assert_eq!(d.text(), "work");
    assert_eq!(d.h("job"), "7");
    assert_eq!(d.h("dlq-reason"), "max-redeliveries");
    assert_eq!(d.h("dlq-deliveries"), "3");
    assert_eq!(d.h("original-destination"), "/queue/jobs");
    // A configured dead-letter destination, and NACK requeue:false going there at once.
    p.with_receipt("SEND", &[("destination", "/queue/custom")], b"bad", "r2");
    c.subscribe("c", "/queue/custom", "client");
    let m = c.expect("MESSAGE");
    c.send_frame("NACK", &[("id", m.h("ack")), ("requeue", "false")], b"");
    c.subscribe("p", "/queue/poison", "auto");
    let d = c.expect("MESSAGE");
    assert_eq!((d.text().as_str(), d.h("dlq-reason")), ("bad", "rejected"));
});

both!(min_delivery_replays_to_late_subscribers, |s: Setup| {
    let b = Broker::with(s, |c| {
        dest(c, "/topic/news", |d| d.min_delivery = Some(2));
        dest(c, "/topic/capped", |d| {
            d.min_delivery = Some(1);
            d.max_messages = Some(2);
        });
    });
    let mut p = b.client("1.2");
    for i in 0..3 {
        p.with_receipt("SEND", &[("destination", "/topic/news")], format!("n{i}").as_bytes(), &format!("r{i}"));
    }
    p.with_receipt("SEND", &[("destination", "/topic/plain")], b"gone", "rp");
    let mut late: Vec<Client> = Vec::new();
    for who in 0..3 {
        let mut c = b.client("1.2");
        c.subscribe_sync("s", "/topic/news", "auto");
        c.subscribe_sync("p", "/topic/plain", "auto");
        if who < 2 {
            for i in 0..3 {
                assert_eq!(c.expect("MESSAGE").text(), format!("n{i}"), "subscriber {who}");
            }
        }
        c.expect_nothing(Duration::from_millis(100));
        late.push(c);
    }
    // Live messages still reach everyone once.
    p.send("/topic/news", "live");
    for c in late.iter_mut() {
        assert_eq!(c.expect("MESSAGE").text(), "live");
    }
    // Retention is bounded: past max_messages, SEND is refused, not silently dropped.
    p.with_receipt("SEND", &[("destination", "/topic/capped")], b"1", "c1");
    p.with_receipt("SEND", &[("destination", "/topic/capped")], b"2", "c2");
    p.send("/topic/capped", "3");
    p.expect_error("q flup");
});

both!(filter_routing_with_many_subscribers, |s: Setup| {
    let b = Broker::with(s, |c| {
        dest(c, "/topic/quotes", |d| {
            d.filter = Some(true);
            d.filter_header = Some("symbol".into());
        })
    });
    let mut subs: Vec<Client> = (0..40)
        .map(|i| {
            let mut c = b.client("1.2");
            let f = format!("symbol=S{}", i % 20);
            c.with_receipt("SUBSCRIBE", &[("id", "q"), ("destination", "/topic/quotes"), ("filter", &f)], b"", "s");
            c
        })
        .collect();
    let mut all = b.client("1.2");
    all.subscribe_sync("all", "/topic/quotes", "auto");
    let mut p = b.client("1.2");
    for k in 0..20 {
        p.send_frame("SEND", &[("destination", "/topic/quotes"), ("symbol", &format!("S{k}"))], format!("q{k}").as_bytes());
    }
    p.send_frame("SEND", &[("destination", "/topic/quotes")], b"no symbol");
    p.with_receipt("SEND", &[("destination", "/topic/quotes"), ("symbol", "S999")], b"nobody", "done");
    for (i, c) in subs.iter_mut().enumerate() {
        let m = c.expect("MESSAGE");
        assert_eq!(m.text(), format!("q{}", i % 20));
        assert_eq!(m.h("symbol"), format!("S{}", i % 20));
        c.expect_nothing(Duration::from_millis(if i == 0 { 150 } else { 5 }));
    }
    for k in 0..20 {
        assert_eq!(all.expect("MESSAGE").text(), format!("q{k}"));
    }
    assert_eq!(all.expect("MESSAGE").text(), "no symbol");
    assert_eq!(all.expect("MESSAGE").text(), "nobody");
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "x"), ("destination", "/topic/quotes"), ("filter", "sym=S1")], b"");
    let e = c.expect_error("syntax");
    assert!(e.text().contains("symbol"), "{}", e.text());
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "x"), ("destination", "/topic/unfiltered"), ("filter", "a=b")], b"");
    c.expect_error("syntax");
});

#[test]
fn stats_messages_have_the_xtomp_shape() {
    let b = Broker::with(2, |c| {
        c.stats = true;
        c.stats_interval = 200;
        dest(c, "/queue/hidden", |d| d.stats = Some(false));
    });
    let mut c = b.client("1.2");
    c.subscribe_sync("x", "/xtomp/stat", "auto");
    c.subscribe_sync("r", "/romp/stat", "auto");
    c.subscribe_sync("w", "/queue/work", "auto");
    let mut p = b.client("1.2");
    for _ in 0..3 {
        p.send("/queue/work", "job");
    }
    p.with_receipt("SEND", &[("destination", "/queue/hidden")], b"h", "r");
    let mut seen = std::collections::HashSet::new();
    let mut work = None;
    while seen.len() < 2 || work.is_none() {
        let m = c.expect("MESSAGE");
        if m.h("destination") == "/queue/work" {
            continue;
        }
        assert_eq!(m.h("content-type"), "application/json");
        seen.insert(m.h("subscription").to_string());
        let v: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        assert!(v["server"]["connections"].as_u64().unwrap() >= 2, "{v}");
        assert!(v["server"]["uptime_seconds"].is_u64(), "{v}");
        let dests = v["destinations"].as_array().unwrap();
        assert!(dests.iter().all(|d| d["name"] != "/queue/hidden" && d["name"] != "/xtomp/stat"), "{v}");
        if let Some(d) = dests.iter().find(|d| d["name"] == "/queue/work" && d["total"] == 3) {
            for k in ["kind", "subscribers", "size", "delivered", "total"] {
                assert!(!d[k].is_null(), "{k} missing in {d}");
            }
            work = Some(d.clone());
        }
    }
    assert_eq!(work.unwrap()["subscribers"], 1);
}

// Regression: now + a huge `expiry` overflowed (a panic in debug builds) instead of saturating.
both!(huge_expiry_saturates_instead_of_overflowing, |s: Setup| {
    let b = Broker::with(s, |c| dest(c, "/queue/forever", |d| d.expiry = Some(u64::MAX)));
    let mut c = b.client("1.2");
    c.with_receipt("SEND", &[("destination", "/queue/forever")], b"x", "r");
    c.subscribe("a", "/queue/forever", "auto");
    assert_eq!(c.expect("MESSAGE").h("expires"), u64::MAX.to_string());
});
