//! Durable topic subscriptions through the embedded server, in every spelling clients use
//! (ActiveMQ, Artemis twice, RabbitMQ), over TCP and WebSocket: what is published while the
//! subscriber is away is kept and delivered when it comes back, persistent messages survive a
//! restart, an UNSUBSCRIBE naming the subscription deletes it (and what it kept), a second
//! consumer of one subscription is refused, and a full one refuses publishers under `reject`.

mod common;
use common::*;
use romp::config::{DestConfig, Overflow};
use std::path::PathBuf;
use std::time::Duration;

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("romp-dsub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn broker(setup: Setup, dir: &std::path::Path) -> Broker {
    let dir = dir.display().to_string();
    Broker::with(setup, |c| {
        c.data_dir = dir;
        c.segment_size = 64 * 1024;
    })
}

/// How a client of one broker family names its durable subscription.
struct Spelling {
    family: &'static str,
    connect: Vec<(&'static str, &'static str)>,
    /// Extra SUBSCRIBE headers (the subscription `id` is "sub-1").
    subscribe: Vec<(&'static str, &'static str)>,
    /// Extra headers of the UNSUBSCRIBE that deletes it.
    delete: Vec<(&'static str, &'static str)>,
}

fn spellings() -> Vec<Spelling> {
    vec![
        Spelling {
            family: "activemq",
            connect: vec![("client-id", "app-amq")],
            subscribe: vec![("activemq.subscriptionName", "audit")],
            delete: vec![("activemq.subscriptionName", "audit")],
        },
        Spelling {
            family: "artemis",
            connect: vec![("client-id", "app-art")],
            subscribe: vec![("durable-subscription-name", "audit")],
            delete: vec![("durable-subscription-name", "audit")],
        },
        Spelling {
            family: "artemis-subscriber",
            connect: vec![("client-id", "app-art2")],
            subscribe: vec![("durable-subscriber-name", "audit")],
            delete: vec![("durable-subscriber-name", "audit")],
        },
        // RabbitMQ: the identity is the login here (no client-id), the name the SUBSCRIBE id.
        Spelling {
            family: "rabbitmq",
            connect: vec![("login", "rabbit-user"), ("passcode", "x")],
            subscribe: vec![("durable", "true"), ("auto-delete", "false")],
            delete: vec![("durable", "true")],
        },
    ]
}

fn attach(b: &Broker, s: &Spelling, topic: &str) -> Client {
    let mut c = b.raw();
    c.connect_with("1.2", &s.connect);
    let mut h = vec![("id", "sub-1"), ("destination", topic), ("ack", "client-individual")];
    h.extend(s.subscribe.iter().copied());
    c.with_receipt("SUBSCRIBE", &h, b"", "attached");
    c
}

/// Receive and acknowledge messages until none comes for a while; their bodies.
fn take_all(c: &mut Client) -> Vec<String> {
    let mut got = Vec::new();
    while let Some(m) = c.recv_timeout(Duration::from_millis(400)) {
        assert_eq!(m.command, "MESSAGE", "{m:?}");
        assert_eq!(m.h("subscription"), "sub-1");
        c.with_receipt("ACK", &[("id", m.h("ack"))], b"", &format!("ack-{}", m.h("ack")));
        got.push(m.text());
    }
    got
}

fn publish(b: &Broker, topic: &str, bodies: &[&str], persistent: bool) {
    let mut p = b.client("1.2");
    for (i, body) in bodies.iter().enumerate() {
        let mut h = vec![("destination", topic)];
        if persistent {
            h.push(("persistent", "true"));
        }
        p.with_receipt("SEND", &h, body.as_bytes(), &format!("p{i}"));
    }
}

fn each_spelling_keeps_what_was_published_while_away(setup: Setup) {
    for s in spellings() {
        let dir = data_dir(&format!("{}-{setup}", s.family));
        let topic = "/topic/ledger";
        {
            let b = broker(setup, &dir);
            // A plain subscriber beside it gets the topic as usual.
            let mut plain = b.client("1.2");
            plain.subscribe_sync("p", topic, "auto");
            attach(&b, &s, topic).disconnect();
            publish(&b, topic, &["kept-1", "kept-2"], true);
            publish(&b, topic, &["memory-1"], false);
            for want in ["kept-1", "kept-2", "memory-1"] {
                assert_eq!(plain.expect("MESSAGE").text(), want, "{}", s.family);
            }
            let mut c = attach(&b, &s, topic);
            assert_eq!(take_all(&mut c), ["kept-1", "kept-2", "memory-1"], "{} {setup}: kept while away", s.family);
            c.disconnect();
            publish(&b, topic, &["kept-3", "kept-4"], true);
            publish(&b, topic, &["memory-2"], false);
        }
        // Restarted: the subscription and its persistent messages are back (redelivered: a
        // consumer may have seen them), the memory-only one is not.
        let b = broker(setup, &dir);
        publish(&b, topic, &["after-restart"], true);
        let mut c = attach(&b, &s, topic);
        let m = c.expect("MESSAGE");
        assert_eq!((m.text().as_str(), m.h("redelivered"), m.h("persistent")), ("kept-3", "true", "true"), "{}", s.family);
        assert_eq!(m.h("destination"), topic);
        c.with_receipt("ACK", &[("id", m.h("ack"))], b"", "a");
        assert_eq!(take_all(&mut c), ["kept-4", "after-restart"], "{} {setup}: after the restart", s.family);
        // An UNSUBSCRIBE that names it deletes it: nothing is kept for it any more.
        let mut h = vec![("id", "sub-1")];
        h.extend(s.delete.iter().copied());
        c.with_receipt("UNSUBSCRIBE", &h, b"", "deleted");
        c.disconnect();
        publish(&b, topic, &["nobody-keeps-this"], true);
        let mut c = attach(&b, &s, topic);
        c.expect_nothing(Duration::from_millis(400));
        c.disconnect();
        drop(b);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn each_spelling_keeps_what_was_published_while_away_over_tcp() {
    each_spelling_keeps_what_was_published_while_away(Setup { workers: 2, ws: false });
}

#[test]
fn each_spelling_keeps_what_was_published_while_away_over_websocket() {
    each_spelling_keeps_what_was_published_while_away(Setup { workers: 2, ws: true });
}

#[test]
fn a_plain_unsubscribe_detaches_and_keeps_the_subscription() {
    let b = Broker::start(2);
    let s = &spellings()[0];
    let mut c = attach(&b, s, "/topic/t");
    c.with_receipt("UNSUBSCRIBE", &[("id", "sub-1")], b"", "detached");
    publish(&b, "/topic/t", &["while-detached"], false);
    c.disconnect();
    let mut c = attach(&b, s, "/topic/t");
    assert_eq!(take_all(&mut c), ["while-detached"]);
}

#[test]
fn a_durable_subscription_has_one_consumer_at_a_time() {
    let b = Broker::start(2);
    let s = &spellings()[1];
    let _first = attach(&b, s, "/topic/one");
    let mut second = b.raw();
    second.connect_with("1.2", &s.connect);
    second.send_frame("SUBSCRIBE", &[("id", "x"), ("destination", "/topic/one"), ("durable-subscription-name", "audit")], b"");
    let e = second.expect("ERROR");
    assert_eq!(e.h("message"), "subs flup");
    assert!(e.text().contains("in use by another connection"), "{e:?}");
}

#[test]
fn a_durable_subscription_needs_an_identity() {
    let b = Broker::start(1);
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "x"), ("destination", "/topic/t"), ("activemq.subscriptionName", "n")], b"");
    let e = c.expect("ERROR");
    assert!(e.text().contains("client-id"), "{e:?}");
}

#[test]
fn a_full_durable_subscription_refuses_publishers_under_reject() {
    let b = Broker::with(2, |c| {
        let d = DestConfig { max_messages: Some(3), overflow: Some(Overflow::Reject), ..DestConfig::default() };
        c.destinations.insert("/topic/bounded".to_string(), d);
    });
    let s = &spellings()[0];
    attach(&b, s, "/topic/bounded").disconnect();
    publish(&b, "/topic/bounded", &["1", "2", "3"], false);
    let mut p = b.client("1.2");
    p.send_frame("SEND", &[("destination", "/topic/bounded"), ("receipt", "r")], b"4");
    let e = p.expect("ERROR");
    assert_eq!(e.h("message"), "q flup", "{e:?}");
    assert!(e.text().contains("is full"), "{e:?}");
    let mut c = attach(&b, s, "/topic/bounded");
    assert_eq!(take_all(&mut c), ["1", "2", "3"]);
}

#[test]
fn metrics_show_the_log_and_the_durable_subscriptions() {
    let dir = data_dir("metrics");
    let b = broker(Setup { workers: 2, ws: false }, &dir);
    let s = &spellings()[0];
    attach(&b, s, "/topic/m1").disconnect();
    attach(&b, s, "/topic/m2").disconnect();
    publish(&b, "/topic/m1", &["a", "b", "c"], true);
    // Each worker answers from a snapshot up to 500 ms old: read one page until it is fresh.
    let value = |page: &str, name: &str| -> u64 {
        page.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' '))).map_or(0, |v| v.parse().unwrap())
    };
    let t = std::time::Instant::now();
    let page = loop {
        let page = b.metrics();
        if value(&page, "romp_journal_records_total") >= 5 && value(&page, "romp_messages_published_total") >= 3 {
            break page;
        }
        assert!(t.elapsed() < WAIT, "{page}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(value(&page, "romp_durable_subscriptions"), 2, "{page}");
    assert!(value(&page, "romp_journal_syncs_total") >= 1, "{page}");
    assert!(value(&page, "romp_journal_segments") >= 2, "one log per worker: {page}");
    assert!(value(&page, "romp_journal_disk_bytes") >= 2 * 64 * 1024, "{page}");
    assert_eq!(value(&page, "romp_journal_disk_refused_total"), 0, "{page}");
    assert_eq!(value(&page, "romp_journal_recovered_messages"), 0, "a fresh directory: {page}");
    drop(b);
    // Restarted: the three kept messages were recovered (the figure is the start's).
    let b = broker(Setup { workers: 2, ws: false }, &dir);
    let page = b.metrics();
    assert_eq!(value(&page, "romp_journal_recovered_messages"), 3, "{page}");
    assert!(page.contains("romp_journal_recovery_milliseconds "), "{page}");
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each durable subscription is a destination of its own: new names cannot be made without
/// end, past `max_destinations` a SUBSCRIBE that would create one more gets `dest flup`.
#[test]
fn durable_subscriptions_count_against_max_destinations() {
    let b = Broker::with(1, |c| c.max_destinations = 4);
    let mut c = b.raw();
    c.connect_with("1.2", &[("client-id", "many")]);
    for i in 0..3 {
        let (id, name) = (format!("s{i}"), format!("n{i}"));
        let h = [("id", id.as_str()), ("destination", "/topic/many"), ("activemq.subscriptionName", name.as_str())];
        c.with_receipt("SUBSCRIBE", &h, b"", &format!("r{i}"));
    }
    c.send_frame("SUBSCRIBE", &[("id", "s3"), ("destination", "/topic/many"), ("activemq.subscriptionName", "n3")], b"");
    let e = c.expect("ERROR");
    assert_eq!(e.h("message"), "dest flup", "{e:?}");
}
