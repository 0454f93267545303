//! Checklist sections F (SEND), G (SUBSCRIBE/UNSUBSCRIBE), H (MESSAGE), I (ACK/NACK), and the
//! topic / queue semantics.

mod common;
use common::*;
use std::collections::HashSet;
use std::time::Duration;

const QUIET: Duration = Duration::from_millis(300);

both!(f1_send_requires_destination, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_frame("SEND", &[("receipt", "r1")], b"x");
    let e = c.expect_error("syntax");
    assert_eq!(e.h("receipt-id"), "r1", "K3/L3: the ERROR names the failed frame's receipt");
});

both!(f2_user_headers_pass_through, |w| {
    let b = Broker::start(w);
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/topic/f2", "auto");
    let mut p = b.client("1.2");
    p.send_frame("SEND", &[("destination", "/topic/f2"), ("x-app", "1"), ("priority", "9"), ("reply-to", "/queue/r")], b"");
    let m = s.expect("MESSAGE");
    assert_eq!((m.h("x-app"), m.h("priority"), m.h("reply-to")), ("1", "9", "/queue/r"));
});

both!(f3_full_queue_rejects_with_q_flup, |w| {
    let b = Broker::with(w, |c| {
        c.max_messages = 2;
        c.overflow = romp::config::Overflow::Reject; // the default, `block`, holds the producer
    });
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/queue/f3")], b"1", "a");
    p.with_receipt("SEND", &[("destination", "/queue/f3")], b"2", "b");
    p.send_frame("SEND", &[("destination", "/queue/f3"), ("receipt", "c")], b"3");
    let e = p.expect_error("q flup");
    assert_eq!(e.h("receipt-id"), "c");
    assert!(e.text().contains("max_messages"));
    // The two accepted messages are intact.
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/f3", "auto");
    assert_eq!(s.expect("MESSAGE").text(), "1");
    assert_eq!(s.expect("MESSAGE").text(), "2");
    s.expect_nothing(QUIET);
});

both!(g1_subscribe_requires_destination_and_id, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_frame("SUBSCRIBE", &[("id", "1")], b"");
    c.expect_error("syntax");
    let mut c = b.client("1.1");
    c.send_frame("SUBSCRIBE", &[("destination", "/topic/g1")], b"");
    c.expect_error("syntax");
});

both!(g1_1_0_subscription_without_id, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.0");
    c.send_frame("SUBSCRIBE", &[("destination", "/topic/g1"), ("receipt", "r")], b"");
    c.expect("RECEIPT");
    c.send("/topic/g1", "x");
    assert_eq!(c.expect("MESSAGE").text(), "x");
    c.send_frame("UNSUBSCRIBE", &[("destination", "/topic/g1"), ("receipt", "u")], b"");
    c.expect("RECEIPT");
    c.send("/topic/g1", "y");
    c.expect_nothing(QUIET);
});

both!(g2_duplicate_subscription_id, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.subscribe_sync("same", "/topic/g2a", "auto");
    c.subscribe("same", "/topic/g2b", "auto");
    let e = c.expect_error("syntax");
    assert!(e.text().contains("duplicated"), "{}", e.text());
});

both!(g3_bad_ack_mode, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.subscribe("1", "/topic/g3", "clientx");
    c.expect_error("syntax");
    // xtomp compared by prefix: "c" must not mean "client".
    let mut c = b.client("1.2");
    c.subscribe("1", "/topic/g3", "c");
    c.expect_error("syntax");
    // client-individual is not in 1.0; 1.1 has it.
    let mut c = b.client("1.0");
    c.subscribe("1", "/queue/g3", "client-individual");
    c.expect_error("syntax");
    let mut c = b.client("1.1");
    c.subscribe_sync("1", "/queue/g3", "client-individual");
});

both!(g4_h1_h2_message_headers, |w| {
    let b = Broker::start(w);
    let mut s = b.client("1.2");
    s.subscribe_sync("sub-7", "/topic/h1", "auto");
    let mut producers: Vec<Client> = (0..4).map(|_| b.client("1.2")).collect();
    for (i, p) in producers.iter_mut().enumerate() {
        for j in 0..25 {
            p.send("/topic/h1", &format!("{i}-{j}"));
        }
    }
    let mut ids = HashSet::new();
    for _ in 0..100 {
        let m = s.expect("MESSAGE");
        assert_eq!(m.h("subscription"), "sub-7");
        assert_eq!(m.h("destination"), "/topic/h1");
        assert!(ids.insert(m.h("message-id").to_string()), "duplicate message-id");
    }
});

both!(g5_unsubscribe_stops_delivery, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.subscribe_sync("1", "/topic/g5", "auto");
    c.with_receipt("UNSUBSCRIBE", &[("id", "1")], b"", "u");
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/topic/g5")], b"x", "s");
    c.expect_nothing(QUIET);
    c.send_frame("UNSUBSCRIBE", &[("id", "nope")], b"");
    c.expect_error("syntax");
});

both!(g6_max_subs, |w| {
    let b = Broker::with(w, |c| c.max_subs = 3);
    let mut c = b.client("1.2");
    for i in 0..3 {
        c.subscribe_sync(&i.to_string(), &format!("/topic/g6-{i}"), "auto");
    }
    c.subscribe("3", "/topic/g6-3", "auto");
    c.expect_error("subs flup");
});

both!(h3_ack_header_only_for_client_modes, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.subscribe_sync("a", "/topic/h3", "auto");
    c.subscribe_sync("c", "/topic/h3", "client");
    c.subscribe_sync("i", "/topic/h3", "client-individual");
    c.send("/topic/h3", "x");
    let mut seen = 0;
    for _ in 0..3 {
        let m = c.expect("MESSAGE");
        match m.h("subscription") {
            "a" => assert_eq!(m.header("ack"), None),
            _ => assert!(!m.h("ack").is_empty()),
        }
        seen += 1;
    }
    assert_eq!(seen, 3);
});

both!(topic_every_subscriber_gets_a_copy_including_the_sender, |w| {
    let b = Broker::start(w);
    let mut subs: Vec<Client> = (0..5).map(|_| b.client("1.2")).collect();
    for s in subs.iter_mut() {
        s.subscribe_sync("t", "/topic/fan", "auto");
    }
    subs[0].send("/topic/fan", "hello");
    for s in subs.iter_mut() {
        assert_eq!(s.expect("MESSAGE").text(), "hello");
    }
});

both!(queue_competing_consumers_round_robin, |w| {
    let b = Broker::start(w);
    let mut a = b.client("1.2");
    let mut c = b.client("1.2");
    a.subscribe_sync("q", "/queue/rr", "auto");
    c.subscribe_sync("q", "/queue/rr", "auto");
    let mut p = b.client("1.2");
    for i in 0..10 {
        p.send("/queue/rr", &i.to_string());
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(a.expect("MESSAGE").text());
        got.push(c.expect("MESSAGE").text());
    }
    a.expect_nothing(QUIET);
    c.expect_nothing(Duration::ZERO);
    got.sort_by_key(|s| s.parse::<u32>().unwrap());
    assert_eq!(got, (0..10).map(|i| i.to_string()).collect::<Vec<_>>());
});

both!(queue_keeps_messages_without_consumers, |w| {
    let b = Broker::start(w);
    let mut p = b.client("1.2");
    for i in 0..5 {
        p.send("/queue/keep", &i.to_string());
    }
    p.disconnect();
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/keep", "auto");
    for i in 0..5 {
        assert_eq!(s.expect("MESSAGE").text(), i.to_string());
    }
});

both!(queue_prefetch_bounds_unacked, |w| {
    let b = Broker::start(w);
    let mut p = b.client("1.2");
    for i in 0..5 {
        p.send("/queue/pf", &i.to_string());
    }
    let mut s = b.client("1.2");
    s.send_frame("SUBSCRIBE", &[("id", "0"), ("destination", "/queue/pf"), ("ack", "client-individual"), ("prefetch-count", "2")], b"");
    let m0 = s.expect("MESSAGE");
    let _m1 = s.expect("MESSAGE");
    s.expect_nothing(QUIET);
    s.send_frame("ACK", &[("id", m0.h("ack"))], b"");
    assert_eq!(s.expect("MESSAGE").text(), "2");
    s.expect_nothing(QUIET);
});

fn three_to_client(b: &Broker, dest: &str, mode: &str) -> (Client, Vec<Got>) {
    let mut p = b.client("1.2");
    for i in 1..=3 {
        p.send(dest, &format!("m{i}"));
    }
    let mut s = b.client("1.2");
    s.subscribe("0", dest, mode);
    let ms = (0..3).map(|_| s.expect("MESSAGE")).collect();
    (s, ms)
}

fn drain(b: &Broker, dest: &str) -> Vec<Got> {
    let mut s = b.client("1.2");
    s.subscribe("0", dest, "auto");
    let mut v = Vec::new();
    while let Some(m) = s.recv_timeout(QUIET) {
        v.push(m);
    }
    v
}

both!(i1_1_2_ack_needs_id_not_message_id, |w| {
    let b = Broker::start(w);
    let (mut s, ms) = three_to_client(&b, "/queue/i1", "client");
    s.send_frame("ACK", &[("message-id", ms[0].h("message-id"))], b"");
    s.expect_error("syntax");
});

both!(i2_1_1_ack_by_message_id_and_subscription, |w| {
    let b = Broker::start(w);
    let mut p = b.client("1.1");
    p.send("/queue/i2", "a");
    let mut s = b.client("1.1");
    s.subscribe("sub", "/queue/i2", "client-individual");
    let m = s.expect("MESSAGE");
    assert_eq!(m.header("ack"), None, "the ack header is 1.2's");
    s.with_receipt("ACK", &[("message-id", m.h("message-id")), ("subscription", "sub")], b"", "r");
    s.disconnect();
    assert!(drain(&b, "/queue/i2").is_empty());
});

both!(i3_1_0_ack_by_message_id, |w| {
    let b = Broker::start(w);
    let mut p = b.client("1.0");
    p.send("/queue/i3", "a");
    let mut s = b.client("1.0");
    s.send_frame("SUBSCRIBE", &[("destination", "/queue/i3"), ("ack", "client")], b"");
    let m = s.expect("MESSAGE");
    s.with_receipt("ACK", &[("message-id", m.h("message-id"))], b"", "r");
    s.disconnect();
    assert!(drain(&b, "/queue/i3").is_empty());
});

both!(i4_client_ack_is_cumulative, |w| {
    let b = Broker::start(w);
    let (mut s, ms) = three_to_client(&b, "/queue/i4", "client");
    s.with_receipt("ACK", &[("id", ms[1].h("ack"))], b"", "r");
    s.disconnect();
    let left: Vec<String> = drain(&b, "/queue/i4").iter().map(Got::text).collect();
    assert_eq!(left, ["m3"]);
});

both!(i5_client_individual_acks_one, |w| {
    let b = Broker::start(w);
    let (mut s, ms) = three_to_client(&b, "/queue/i5", "client-individual");
    s.with_receipt("ACK", &[("id", ms[1].h("ack"))], b"", "r");
    s.disconnect();
    let left = drain(&b, "/queue/i5");
    let texts: Vec<String> = left.iter().map(Got::text).collect();
    assert_eq!(texts, ["m1", "m3"]);
    assert!(left.iter().all(|m| m.h("redelivered") == "true"));
});

both!(i6_unacked_go_to_another_consumer_when_a_connection_drops, |w| {
    let b = Broker::start(w);
    let mut other = b.client("1.2");
    let (s, _ms) = three_to_client(&b, "/queue/i6", "client");
    other.subscribe_sync("o", "/queue/i6", "client");
    drop(s); // abrupt close, no DISCONNECT
    let texts: Vec<String> = (0..3).map(|_| other.expect("MESSAGE").text()).collect();
    assert_eq!(texts, ["m1", "m2", "m3"]);
});

both!(i7_nack_requeues_in_place, |w| {
    let b = Broker::start(w);
    let (mut s, ms) = three_to_client(&b, "/queue/i7", "client-individual");
    s.send_frame("NACK", &[("id", ms[0].h("ack")), ("receipt", "n")], b"");
    // The message is back at the head of the queue; this subscriber had credit, so it comes back
    // (before or after the RECEIPT: the redelivery is dispatched as soon as the NACK is applied).
    let mut got = vec![s.recv(), s.recv()];
    got.sort_by_key(|g| g.command.clone());
    assert_eq!(got[1].command, "RECEIPT");
    let again = got.remove(0);
    assert_eq!(again.command, "MESSAGE");
    assert_eq!(again.text(), "m1");
    assert_eq!(again.h("redelivered"), "true");
});

both!(i8_ack_in_transaction_takes_effect_on_commit, |w| {
    let b = Broker::start(w);
    let (mut s, ms) = three_to_client(&b, "/queue/i8", "client-individual");
    s.send_frame("BEGIN", &[("transaction", "t1")], b"");
    s.send_frame("ACK", &[("id", ms[0].h("ack")), ("transaction", "t1")], b"");
    s.send_frame("ABORT", &[("transaction", "t1")], b"");
    s.send_frame("BEGIN", &[("transaction", "t2")], b"");
    s.send_frame("ACK", &[("id", ms[1].h("ack")), ("transaction", "t2")], b"");
    s.with_receipt("COMMIT", &[("transaction", "t2")], b"", "c");
    s.disconnect();
    let texts: Vec<String> = drain(&b, "/queue/i8").iter().map(Got::text).collect();
    assert_eq!(texts, ["m1", "m3"], "the aborted ACK left m1 unacknowledged; the committed one took m2");
});

both!(i9_ack_of_unknown_or_auto_is_an_error, |w| {
    let b = Broker::start(w);
    let (mut s, ms) = three_to_client(&b, "/queue/i9", "client-individual");
    s.with_receipt("ACK", &[("id", ms[0].h("ack"))], b"", "1");
    s.send_frame("ACK", &[("id", ms[0].h("ack"))], b"");
    s.expect_error("general");
    let mut a = b.client("1.2");
    a.subscribe_sync("x", "/topic/i9", "auto");
    a.send_frame("ACK", &[("id", "1.1")], b"");
    a.expect_error("general");
});

both!(topic_client_ack_on_topic_is_not_redelivered, |w| {
    let b = Broker::start(w);
    let mut s = b.client("1.2");
    s.subscribe_sync("t", "/topic/tack", "client");
    s.send("/topic/tack", "x");
    let m = s.expect("MESSAGE");
    s.with_receipt("ACK", &[("id", m.h("ack"))], b"", "a");
    s.send("/topic/tack", "y");
    s.expect("MESSAGE");
    s.disconnect();
    let mut s2 = b.client("1.2");
    s2.subscribe_sync("t", "/topic/tack", "client");
    s2.expect_nothing(QUIET);
});
