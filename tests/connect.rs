//! Checklist sections D (connecting, negotiation) and E (heart-beating), and authentication.

mod common;
use common::*;
use std::time::{Duration, Instant};

both!(d1_stomp_is_connect, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("STOMP", &[("accept-version", "1.2"), ("host", "127.0.0.1")], b"");
    assert_eq!(c.expect("CONNECTED").h("version"), "1.2");
});

both!(d2_no_accept_version_is_1_0, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("heart-beat", "0,100")], b"");
    let g = c.expect("CONNECTED");
    assert!(g.header("version").is_none_or(|v| v == "1.0"), "{g:?}");
    assert_eq!(g.header("heart-beat"), None, "E5: no heart-beating in 1.0");
    c.version = romp::stomp::Version::V1_0;
    // E5: no beats come.
    c.expect_nothing(Duration::from_millis(400));
    assert_eq!(c.eols, 0);
    // 1.0 rules: NACK does not exist.
    c.send_frame("NACK", &[("message-id", "1")], b"");
    c.expect_error("syntax");
});

both!(d3_highest_common_version, |w| {
    let b = Broker::start(w);
    for (offer, want) in [("1.0,1.1,2.0", "1.1"), ("1.2", "1.2"), ("1.1,1.0", "1.1"), ("1.2,1.1", "1.2"), ("1.0", "1.0")] {
        let mut c = b.raw();
        c.send_frame("CONNECT", &[("accept-version", offer)], b"");
        let g = c.expect("CONNECTED");
        assert_eq!(g.h("version"), want, "offer {offer}");
    }
});

both!(d4_no_common_version, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "2.0,3.0")], b"");
    let e = c.expect_error("version");
    assert_eq!(e.h("version"), "1.0,1.1,1.2");
    assert!(!e.body.is_empty());
});

both!(d5_connected_headers, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.1,1.2"), ("heart-beat", "0,0")], b"");
    let g = c.expect("CONNECTED");
    assert_eq!(g.h("version"), "1.2");
    assert_eq!(g.h("heart-beat"), "0,0");
    assert!(!g.h("session").is_empty());
    assert!(g.h("server").starts_with("romp/"));
    assert!(g.body.is_empty());
});

both!(d6_missing_or_unknown_host_is_accepted, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.2")], b"");
    c.expect("CONNECTED");
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.2"), ("host", "no-such-vhost")], b"");
    c.expect("CONNECTED");
});

both!(d7_bad_credentials, |w| {
    let b = Broker::with(w, |c| {
        c.login = Some("u".into());
        c.passcode = Some("p".into());
    });
    for creds in [vec![("login", "u"), ("passcode", "x")], vec![("login", "x"), ("passcode", "p")], vec![]] {
        let mut c = b.raw();
        let mut h = vec![("accept-version", "1.2")];
        h.extend(creds);
        c.send_frame("CONNECT", &h, b"");
        c.expect_error("auth err");
    }
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.2"), ("login", "u"), ("passcode", "p")], b"");
    c.expect("CONNECTED");
});

both!(d8_frames_before_connect_and_second_connect, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("SEND", &[("destination", "/queue/d8")], b"x");
    c.expect_error("syntax");
    let mut c = b.client("1.2");
    c.send_frame("CONNECT", &[("accept-version", "1.2")], b"");
    c.expect_error("syntax");
    // The rejected SEND never reached the queue.
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/d8", "auto");
    s.expect_nothing(Duration::from_millis(200));
});

both!(d9_receipt_on_connect_is_ignored, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.2"), ("receipt", "r")], b"");
    c.expect("CONNECTED");
    c.expect_nothing(Duration::from_millis(200));
});

both!(d10_connect_timeout, |w| {
    let b = Broker::with(w, |c| c.connect_timeout = 300);
    let mut c = b.raw();
    let t = Instant::now();
    c.send_raw(b"CONN");
    c.expect_error("general");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
});

both!(e1_malformed_heart_beat, |w| {
    let b = Broker::start(w);
    for bad in ["1", "a,b", "-1,0", "1,2,3", ""] {
        let mut c = b.raw();
        c.send_frame("CONNECT", &[("accept-version", "1.2"), ("heart-beat", bad)], b"");
        c.expect_error("ecg err");
    }
});

both!(e2_negotiation_honours_client_and_clamps, |w| {
    let b = Broker::start(w);
    for (offer, want) in
        [("1000,2000", "2000,1000"), ("1,1", "500,500"), ("0,0", "0,0"), ("10000,10000", "10000,10000"), ("0,700", "700,0")]
    {
        let mut c = b.raw();
        c.send_frame("CONNECT", &[("accept-version", "1.2"), ("heart-beat", offer)], b"");
        assert_eq!(c.expect("CONNECTED").h("heart-beat"), want, "offer {offer}");
    }
});

both!(e3_server_sends_heart_beats, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.2"), ("heart-beat", "0,500")], b"");
    assert_eq!(c.expect("CONNECTED").h("heart-beat"), "500,0");
    c.expect_nothing(Duration::from_millis(1700));
    assert!((2..=4).contains(&c.eols), "{} beats in 1.7 s at 500 ms", c.eols);
});

both!(e3_abusive_interval_is_raised_to_the_floor, |w| {
    let b = Broker::start(w);
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.2"), ("heart-beat", "0,1")], b"");
    assert_eq!(c.expect("CONNECTED").h("heart-beat"), "500,0");
    c.expect_nothing(Duration::from_millis(1200));
    assert!(c.eols <= 3, "{} beats in 1.2 s: the 500 ms floor was not applied", c.eols);
});

both!(e4_silent_client_closed_after_grace_not_before, |w| {
    let b = Broker::with(w, |c| c.heart_beat_min = 100);
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.2"), ("heart-beat", "300,0")], b"");
    assert_eq!(c.expect("CONNECTED").h("heart-beat"), "0,300");
    // Beats keep it alive well past the interval.
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(200));
        c.send_raw(b"\n");
    }
    // Silence: still open at 1.3x the interval (grace is 2x) ...
    let t = Instant::now();
    c.expect_nothing(Duration::from_millis(400));
    // ... and closed with ERROR soon after 2x.
    c.expect_error("ecg err");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
});

fn sha_line(name: &str, pass: &str, admin: bool) -> String {
    use sha2::{Digest, Sha256};
    let mut d = Sha256::new();
    d.update(pass.as_bytes());
    d.update(b"\n");
    let hex: String = d.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{name}:{hex}{}", if admin { ":true" } else { "" })
}

both!(auth_passwd_file_both_formats, |w| {
    let dir = std::env::temp_dir().join(format!("romp-auth-{}-{w}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("passwd");
    let slow = romp::auth::passwd_line("slow", "pw:2", false).unwrap();
    std::fs::write(&path, format!("# test users\n{}\n{slow}\n", sha_line("old", "pw1", true))).unwrap();
    let b = Broker::with(w, |c| c.user_file = Some(path.clone()));
    for (login, pass, ok) in
        [("old", "pw1", true), ("old", "pw2", false), ("slow", "pw:2", true), ("slow", "pw", false), ("nobody", "pw1", false)]
    {
        let mut c = b.raw();
        // Pipeline a SUBSCRIBE behind CONNECT: it must wait for the (off-thread) check.
        let mut bytes = frame("CONNECT", &[("accept-version", "1.2"), ("login", login), ("passcode", pass)], b"");
        bytes.extend(frame("SUBSCRIBE", &[("id", "1"), ("destination", "/topic/auth"), ("receipt", "r")], b""));
        c.send_raw(&bytes);
        if ok {
            c.expect("CONNECTED");
            c.expect("RECEIPT");
        } else {
            c.expect_error("auth err");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
});
