//! Checklist sections A (frame grammar), B (escaping) and C (repeated headers), over TCP.

mod common;
use common::*;
use std::time::Duration;

both!(a1_split_into_single_bytes_and_pipelined, |w| {
    let b = Broker::start(w);
    let mut sub = b.client("1.2");
    sub.subscribe_sync("0", "/queue/a1", "auto");
    let mut c = b.raw();
    let mut bytes = frame("CONNECT", &[("accept-version", "1.2")], b"");
    bytes.extend(frame("SEND", &[("destination", "/queue/a1")], b"one"));
    for &x in &bytes {
        c.send_raw(&[x]);
    }
    c.expect("CONNECTED");
    // Several frames in one write.
    let mut many = Vec::new();
    for i in 0..3 {
        many.extend(frame("SEND", &[("destination", "/queue/a1")], format!("p{i}").as_bytes()));
    }
    c.send_raw(&many);
    let got: Vec<String> = (0..4).map(|_| sub.expect("MESSAGE").text()).collect();
    assert_eq!(got, ["one", "p0", "p1", "p2"]);
});

both!(a2_crlf_frames, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_raw(b"CONNECT\r\naccept-version:1.2\r\n\r\n\0");
    c.expect("CONNECTED");
    c.send_raw(b"SUBSCRIBE\r\nid:s\r\ndestination:/topic/a2\r\nreceipt:r\r\n\r\n\0");
    assert_eq!(c.expect("RECEIPT").h("receipt-id"), "r");
    c.send_raw(b"SEND\r\ndestination:/topic/a2\r\nk:v\r\n\r\nbody\0");
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("k"), "v");
    assert_eq!(m.h("destination"), "/topic/a2");
    assert_eq!(m.text(), "body");
});

both!(a3_stray_cr_is_stripped_in_1_0, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.0");
    c.send_raw(b"SUBSCRIBE\r\ndestination:/topic/a3\r\nreceipt:r\r\n\r\n\0");
    c.expect("RECEIPT");
    c.send_raw(b"SEND\ndestination:/topic/a3\nk:v\r\n\nx\0");
    assert_eq!(c.expect("MESSAGE").h("k"), "v");
});

both!(a4_eols_between_frames_are_ignored, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_raw(b"\n\r\n\nCONNECT\naccept-version:1.2\n\n\0\n\n\r\n");
    c.expect("CONNECTED");
    c.send_raw(b"\n\nSUBSCRIBE\nid:1\ndestination:/topic/a4\n\n\0\n\r\n\nSEND\ndestination:/topic/a4\n\nx\0\n\n");
    assert_eq!(c.expect("MESSAGE").text(), "x");
});

both!(a5_a6_commands_are_case_sensitive, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_raw(b"send\ndestination:/queue/a5\n\nx\0");
    let e = c.expect_error("syntax");
    assert!(e.text().contains("send"), "{}", e.text());
});

both!(a7_content_length_with_nuls, |w| {
    let b = Broker::start(w);
    let mut sub = b.client("1.2");
    sub.subscribe_sync("0", "/queue/a7", "auto");
    let mut c = b.client("1.2");
    c.send_frame("SEND", &[("destination", "/queue/a7"), ("content-length", "5")], b"a\0b\0c");
    let m = sub.expect("MESSAGE");
    assert_eq!(m.body, b"a\0b\0c");
    // A8: the MESSAGE says how long it is.
    assert_eq!(m.h("content-length"), "5");
});

both!(a7_byte_after_body_must_be_nul, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_raw(b"SEND\ndestination:/queue/a7b\ncontent-length:2\n\nabc\0");
    c.expect_error("body err");
});

both!(a9_content_type_and_length_pass_through, |w| {
    let b = Broker::start(w);
    let mut sub = b.client("1.2");
    sub.subscribe_sync("0", "/topic/a9", "auto");
    let mut c = b.client("1.2");
    c.send_frame("SEND", &[("destination", "/topic/a9"), ("content-type", "application/json;charset=utf-8")], b"{}");
    let m = sub.expect("MESSAGE");
    assert_eq!(m.h("content-type"), "application/json;charset=utf-8");
    assert_eq!(m.h("content-length"), "2");
});

both!(a10_first_colon_splits_connect_passcode, |w| {
    let b = Broker::with(w, |c| {
        c.login = Some("user".into());
        c.passcode = Some("pa:ss\\w".into());
    });
    let mut c = b.raw();
    c.send_raw(b"CONNECT\naccept-version:1.2\nlogin:user\npasscode:pa:ss\\w\n\n\0");
    c.expect("CONNECTED");
});

both!(a11_a12_values_are_kept_exactly, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.1");
    c.subscribe_sync("0", "/topic/a11", "auto");
    c.send_frame("SEND", &[("destination", "/topic/a11"), ("k", " v "), ("empty", "")], b"");
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("k"), " v ");
    assert_eq!(m.h("empty"), "");
});

both!(a13_utf8_round_trips, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.subscribe_sync("0", "/topic/ünï", "auto");
    c.send_frame("SEND", &[("destination", "/topic/ünï"), ("clé", "välue✓")], "bödy✓".as_bytes());
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("clé"), "välue✓");
    assert_eq!(m.h("destination"), "/topic/ünï");
    assert_eq!(m.text(), "bödy✓");
});

both!(a13_invalid_utf8_header_is_an_error, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_raw(b"SEND\ndestination:/queue/x\nk:\xff\n\n\0");
    c.expect_error("syntax");
});

both!(a14_body_on_subscribe_is_an_error, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_raw(b"SUBSCRIBE\nid:1\ndestination:/topic/a14\n\nunexpected\0");
    let e = c.expect_error("syntax");
    assert!(e.text().contains("SUBSCRIBE frames must not have a body"));
});

both!(b1_b5_decoding_in_1_2, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.subscribe_sync("0", "/topic/b1", "auto");
    c.send_raw(b"SEND\ndestination:/topic/b1\nk:a\\cb\\\\c\nnl:x\\ny\ncr:p\\rq\n\n\0");
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("k"), "a:b\\c");
    assert_eq!(m.h("nl"), "x\ny");
    assert_eq!(m.h("cr"), "p\rq");
});

both!(b2_cr_escape_is_fatal_in_1_1, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.1");
    c.send_raw(b"SEND\ndestination:/topic/b2\nk:\\r\n\n\0");
    c.expect_error("syntax");
});

both!(b3_no_escaping_in_1_0, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.0");
    c.send_raw(b"SUBSCRIBE\ndestination:/topic/b3\nreceipt:r\n\n\0");
    c.expect("RECEIPT");
    c.send_raw(b"SEND\ndestination:/topic/b3\nk:a\\cb\\t\n\n\0");
    // The raw bytes, as 1.0 sent them and without escaping on the way out.
    c.version = romp::stomp::Version::V1_0;
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("k"), "a\\cb\\t");
});

both!(b4_undefined_escape_is_fatal, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.send_raw(b"SEND\ndestination:/topic/b4\nk:\\t\nreceipt:r9\n\n\0");
    c.expect_error("syntax");
});

both!(b6_one_send_encoded_per_receiver_version, |w| {
    let b = Broker::start(w);
    let mut s10 = b.client("1.0");
    s10.send_raw(b"SUBSCRIBE\ndestination:/topic/b6\nid:a\nreceipt:r\n\n\0");
    s10.expect("RECEIPT");
    let mut s11 = b.client("1.1");
    s11.subscribe_sync("b", "/topic/b6", "auto");
    let mut s12 = b.client("1.2");
    s12.subscribe_sync("c", "/topic/b6", "auto");
    let mut p = b.client("1.2");
    p.send_raw(b"SEND\ndestination:/topic/b6\nk:a\\cb\\\\c\\nd\\re\n\n\0");
    let m10 = s10.expect("MESSAGE");
    let m11 = s11.expect("MESSAGE");
    let m12 = s12.expect("MESSAGE");
    // 1.1 and 1.2 receivers decode to the value sent. 1.0 cannot carry an EOL in a header value
    // (no escaping, B3), so a 1.0 receiver does not get that header at all rather than a
    // corrupted frame.
    assert_eq!(m12.h("k"), "a:b\\c\nd\re");
    assert_eq!(m11.h("k"), "a:b\\c\nd\re");
    assert_eq!(m10.header("k"), None);
    assert_eq!(m10.h("destination"), "/topic/b6");
    // A value 1.0 can carry reaches it unescaped.
    p.send_raw(b"SEND\ndestination:/topic/b6\nk:a\\cb\\\\c\n\n\0");
    assert_eq!(s10.expect("MESSAGE").h("k"), "a:b\\c");
    assert_eq!(s11.expect("MESSAGE").h("k"), "a:b\\c");
});

both!(b7_connect_is_never_unescaped, |w| {
    let b = Broker::with(w, |c| {
        c.login = Some("a\\cb".into());
        c.passcode = Some("p\\\\".into());
    });
    let mut c = b.raw();
    c.send_raw(b"CONNECT\naccept-version:1.2\nlogin:a\\cb\npasscode:p\\\\\n\n\0");
    c.expect("CONNECTED");
});

both!(c1_first_destination_wins, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.subscribe_sync("a", "/topic/c1a", "auto");
    c.subscribe_sync("b", "/topic/c1b", "auto");
    c.send_raw(b"SEND\ndestination:/topic/c1a\ndestination:/topic/c1b\n\nx\0");
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("subscription"), "a");
    c.expect_nothing(Duration::from_millis(200));
});

both!(c2_repeated_user_header_first_value_effective, |w| {
    let b = Broker::start(w);
    let mut c = b.client("1.2");
    c.subscribe_sync("a", "/topic/c2", "auto");
    c.send_raw(b"SEND\ndestination:/topic/c2\ndupkey:v0\ndupkey:v1\ndupkey:v2\n\n\0");
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("dupkey"), "v0");
    let all: Vec<&str> = m.headers.iter().filter(|(k, _)| k == "dupkey").map(|(_, v)| v.as_str()).collect();
    assert_eq!(all, ["v0", "v1", "v2"], "later copies are kept in order");
});
