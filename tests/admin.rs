//! The admin port (STOMP actions and HTTP), token auth, and run-time reconfiguration.

mod common;
use common::*;
use std::io::{Read, Write};
use std::time::Duration;

const ADMIN: (&str, &str) = ("root", "r00t");

fn admin_broker(workers: usize, f: impl FnOnce(&mut romp::Config)) -> Broker {
    Broker::with(workers, |c| {
        c.login = Some(ADMIN.0.into());
        c.passcode = Some(ADMIN.1.into());
        f(c)
    })
}

fn connect_as(addr: std::net::SocketAddr, login: &str, passcode: &str) -> (Client, Got) {
    let mut c = Client::raw(addr);
    c.send_frame("CONNECT", &[("accept-version", "1.2"), ("host", "/"), ("login", login), ("passcode", passcode)], b"");
    let g = c.recv();
    (c, g)
}

fn admin(b: &Broker) -> Client {
    let (c, g) = connect_as(b.admin.expect("admin port"), ADMIN.0, ADMIN.1);
    assert_eq!(g.command, "CONNECTED", "{g:?}");
    c
}

/// Send an admin action and return its result MESSAGE (the RECEIPT is checked too).
fn action(a: &mut Client, name: &str, headers: &[(&str, &str)]) -> Got {
    let dest = format!("/virt/admin/{name}");
    let mut h = vec![("destination", dest.as_str())];
    h.extend_from_slice(headers);
    a.with_receipt("SEND", &h, b"", &format!("r-{name}"));
    let m = a.expect("MESSAGE");
    assert_eq!(m.h("destination"), dest);
    assert_eq!(m.h("subscription"), "admin");
    m
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    // The admin brokers here have users: the stats pages want the admin login.
    use base64::Engine;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1));
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let (head, body) = all.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[test]
fn admin_port_refuses_non_admins() {
    // An open broker has no admin users at all: nobody gets in.
    let b = Broker::start(2);
    let (mut c, g) = connect_as(b.admin.unwrap(), "guest", "guest");
    assert_eq!((g.command.as_str(), g.h("message")), ("ERROR", "auth err"));
    c.expect_closed();
    // A passwd user without ":true" is refused; the config login is an admin.
    let dir = std::env::temp_dir().join(format!("romp-admin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("passwd");
    // echo pw | sha256sum
    std::fs::write(&pw, "bob:3f0ba3cd87ca54b484ebe82e0c123deddddb37c2641d391c91487df6af1832e2\n").unwrap();
    let b = admin_broker(2, |c| c.user_file = Some(pw.clone()));
    let (_, g) = connect_as(b.admin.unwrap(), "bob", "pw");
    assert_eq!(g.command, "ERROR");
    admin(&b).disconnect();
    // Admin actions are refused on the client port, even to the admin user.
    let (mut c, g) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    assert_eq!(g.command, "CONNECTED");
    c.send("/virt/admin/shutdown", "");
    c.expect_error("blocked");
    assert!(!b.handle.as_ref().unwrap().stop_requested());
}

#[test]
fn purge_empties_a_queue_and_a_retained_topic() {
    let b = admin_broker(4, |c| {
        c.destinations.insert("/topic/kept".into(), romp::config::DestConfig { min_delivery: Some(1), ..Default::default() });
    });
    let (mut p, _) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    for i in 0..5 {
        p.send("/queue/p", &format!("m{i}"));
        p.send("/topic/kept", &format!("t{i}"));
    }
    p.with_receipt("SEND", &[("destination", "/queue/p")], b"last", "r");
    let mut a = admin(&b);
    let m = action(&mut a, "purge", &[("target", "/queue/p")]);
    assert_eq!((m.h("result"), m.h("purged")), ("ok", "6"));
    let m = action(&mut a, "clean", &[("target", "/topic/kept")]);
    assert_eq!(m.h("purged"), "5");
    let m = action(&mut a, "purge", &[]);
    assert_eq!(m.h("result"), "error");
    let (mut c, _) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    c.subscribe("q", "/queue/p", "auto");
    c.subscribe("t", "/topic/kept", "auto");
    c.expect_nothing(Duration::from_millis(200));
}

#[test]
fn perms_change_blocks_and_limits_at_run_time() {
    let b = admin_broker(4, |c| c.overflow = romp::config::Overflow::Reject); // checks the `q flup` refusal
    let mut a = admin(&b);
    let m = action(&mut a, "perms", &[("target", "/queue/locked"), ("write_block", "true")]);
    assert_eq!(m.h("result"), "ok", "{}", m.text());
    let (mut c, _) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    c.send("/queue/locked", "x");
    c.expect_error("blocked");
    let m = action(&mut a, "perms", &[("target", "/queue/locked"), ("write_block", "false"), ("max_messages", "1")]);
    assert_eq!(m.h("result"), "ok");
    let (mut c, _) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    c.with_receipt("SEND", &[("destination", "/queue/locked")], b"1", "a");
    c.send("/queue/locked", "2");
    c.expect_error("q flup");
    // Bad changes are refused with a reason and change nothing.
    let m = action(&mut a, "perms", &[("target", "/queue/locked"), ("write_block", "maybe")]);
    assert_eq!(m.h("result"), "error");
    let m = action(&mut a, "perms", &[("target", "/queue/x"), ("max_message_size", "99999999")]);
    assert_eq!(m.h("result"), "error");
    assert!(m.text().contains("max_message_size"), "{}", m.text());
}

#[test]
fn kick_closes_a_session() {
    let b = admin_broker(4, |_| {});
    let (mut victim, g) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    let session = g.h("session").to_string();
    let mut a = admin(&b);
    let m = action(&mut a, "kick", &[("session", &session)]);
    assert_eq!(m.h("result"), "ok", "{}", m.text());
    victim.expect_error("general");
    victim.expect_closed();
    let m = action(&mut a, "kick", &[("session", &session)]);
    assert_eq!(m.h("result"), "error");
    let m = action(&mut a, "kick", &[("session", "nonsense")]);
    assert_eq!(m.h("result"), "error");
    let m = action(&mut a, "dance", &[]);
    assert_eq!(m.h("result"), "error");
}

#[test]
fn trusted_publishers_may_set_message_id() {
    let b = admin_broker(2, |_| {});
    let mut a = admin(&b);
    let (mut c, _) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    c.subscribe_sync("s", "/queue/ids", "client");
    a.with_receipt("SEND", &[("destination", "/queue/ids"), ("message-id", "order-42")], b"x", "r");
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("message-id"), "order-42");
    c.with_receipt("ACK", &[("id", m.h("ack"))], b"", "acked");
    // On the client port a message-id header is the broker's business.
    c.with_receipt("SEND", &[("destination", "/queue/ids"), ("message-id", "forged")], b"y", "r2");
    let m = c.expect("MESSAGE");
    assert_ne!(m.h("message-id"), "forged");
    // 1.1 clients ACK by message-id: a trusted id works there too.
    let mut old = Client::raw(b.addr);
    old.send_frame("CONNECT", &[("accept-version", "1.1"), ("host", "/"), ("login", ADMIN.0), ("passcode", ADMIN.1)], b"");
    old.expect("CONNECTED");
    old.subscribe_sync("o", "/queue/ids11", "client");
    a.with_receipt("SEND", &[("destination", "/queue/ids11"), ("message-id", "abc")], b"z", "r3");
    let m = old.expect("MESSAGE");
    assert_eq!(m.h("message-id"), "abc");
    old.with_receipt("ACK", &[("message-id", "abc"), ("subscription", "o")], b"", "ok");
}

#[test]
fn metrics_and_console_pages_on_the_admin_port() {
    let b = admin_broker(2, |c| c.enable_console = false);
    let (mut c, _) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    c.subscribe_sync("s", "/queue/m", "auto");
    c.with_receipt("SEND", &[("destination", "/queue/m")], b"x", "r");
    c.expect("MESSAGE");
    let (head, body) = http_get(b.admin.unwrap(), "/metrics");
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("text/plain; version=0.0.4"), "{head}");
    assert!(body.contains("# TYPE romp_connections gauge\nromp_connections "), "{body}");
    assert!(body.contains("romp_messages_in_total 1\n"), "{body}");
    assert!(body.contains("romp_destination_delivered_total{destination=\"/queue/m\",kind=\"queue\"} 1\n"), "{body}");
    let (head, body) = http_get(b.admin.unwrap(), "/romp/info");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["messages_in"], 1);
    // The web port serves neither with the console off, and never /metrics.
    let (head, _) = http_get(b.web, "/romp/info");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    let (head, _) = http_get(b.web, "/metrics");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

#[test]
fn admin_shutdown_stops_the_server_gracefully() {
    let mut b = admin_broker(2, |_| {});
    let (mut c, _) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    c.subscribe_sync("s", "/queue/q", "auto");
    let mut a = admin(&b);
    let m = action(&mut a, "shutdown", &[]);
    assert_eq!(m.h("result"), "ok");
    let h = b.handle.take().unwrap();
    assert!(h.stop_requested());
    h.join().expect("the broker stopped cleanly");
    c.expect_closed();
    assert!(std::net::TcpStream::connect(b.addr).is_err(), "no longer accepting");
}

#[test]
fn token_auth_accepts_fresh_tokens_once() {
    let b = Broker::with(2, |c| {
        c.secret = Some("shh".into());
        c.secret_timeout = 2_000;
    });
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let login = format!("alice {now} 8f3a");
    let pass = romp::auth::token_passcode(&login, "shh");
    let (_, g) = connect_as(b.addr, &login, &pass);
    assert_eq!(g.command, "CONNECTED", "{g:?}");
    let (mut c, g) = connect_as(b.addr, &login, &pass);
    assert_eq!((g.command.as_str(), g.h("message")), ("ERROR", "auth err"), "a replayed token is refused");
    c.expect_closed();
    let stale = format!("alice {} 1", now - 10);
    let (_, g) = connect_as(b.addr, &stale, &romp::auth::token_passcode(&stale, "shh"));
    assert_eq!(g.command, "ERROR", "an expired token is refused");
    let other = format!("alice {now} 2");
    let (_, g) = connect_as(b.addr, &other, &romp::auth::token_passcode(&other, "not the secret"));
    assert_eq!(g.command, "ERROR");
    let (_, g) = connect_as(b.addr, "guest", "guest");
    assert_eq!(g.command, "ERROR", "a secret closes the broker to anonymous clients");
}

#[test]
fn reload_applies_destinations_users_and_limits() {
    let b = Broker::start(4);
    let h = b.handle.as_ref().unwrap();
    let mut c = b.client("1.2");
    c.with_receipt("SEND", &[("destination", "/queue/r")], b"x", "a");
    let mut cfg = romp::Config {
        ports: vec![1],
        web_port: 0,
        admin_port: 0,
        workers: 4,
        pin_workers: false,
        data_dir: String::new(),
        ..Default::default()
    };
    cfg.destinations.insert("/queue/r".into(), romp::config::DestConfig { write_block: Some(true), ..Default::default() });
    cfg.max_subs = 1;
    let plan = h.reload(cfg.clone()).unwrap();
    assert_eq!(plan.need_restart, vec!["ports".to_string()]);
    assert!(plan.applied.contains(&"destinations".to_string()) && plan.applied.contains(&"max_subs".to_string()), "{plan:?}");
    // The connection's cached policy for /queue/r is replaced too.
    c.send("/queue/r", "y");
    c.expect_error("blocked");
    let mut c = b.client("1.2");
    c.subscribe_sync("a", "/topic/a", "auto");
    c.subscribe("b", "/topic/b", "auto");
    c.expect_error("subs flup");
    // Users: a login appears.
    cfg.login = Some("u".into());
    cfg.passcode = Some("p".into());
    h.reload(cfg).unwrap();
    let (_, g) = connect_as(b.addr, "guest", "guest");
    assert_eq!(g.command, "ERROR");
    let (_, g) = connect_as(b.addr, "u", "p");
    assert_eq!(g.command, "CONNECTED");
}

#[test]
fn enable_admin_false_opens_no_admin_port() {
    let b = Broker::with(1, |c| c.enable_admin = false);
    assert!(b.admin.is_none());
    let b = admin_broker(1, |c| c.admin_bind_address = "127.0.0.1".into());
    assert_eq!(b.admin.unwrap().ip().to_string(), "127.0.0.1");
}

#[test]
fn create_destinations_false_still_allows_dead_letter_queues() {
    let b = Broker::with(2, |c| {
        c.create_destinations = false;
        c.destinations.insert("/queue/jobs".into(), romp::config::DestConfig { max_redeliveries: Some(0), ..Default::default() });
    });
    let mut c = b.client("1.2");
    c.subscribe_sync("j", "/queue/jobs", "client");
    c.with_receipt("SEND", &[("destination", "/queue/jobs")], b"x", "r");
    let m = c.expect("MESSAGE");
    c.send_frame("NACK", &[("id", m.h("ack")), ("requeue", "false")], b"");
    c.subscribe("d", "/queue/DLQ.jobs", "auto");
    assert_eq!(c.expect("MESSAGE").h("dlq-reason"), "rejected");
}

#[test]
fn close_reasons_and_error_words_are_counted_per_kind() {
    let b = admin_broker(2, |_| {});
    let mut bad = Client::raw(b.addr);
    bad.send_raw(b"NONSENSE\n\n\0");
    bad.expect_error("syntax");
    let (c, g) = connect_as(b.addr, ADMIN.0, ADMIN.1);
    assert_eq!(g.command, "CONNECTED", "{g:?}");
    c.disconnect();
    // Closes are counted when the worker finishes them, just after the client sees them.
    let deadline = std::time::Instant::now() + WAIT;
    let want = [
        "romp_errors_by_word_total{message=\"syntax\"} 1\n",
        "romp_connections_closed_total{reason=\"error_sent\"} 1\n",
        "romp_connections_closed_total{reason=\"disconnect\"} 1\n",
        "romp_errors_by_word_total{message=\"auth err\"} 0\n",
    ];
    loop {
        let (_, body) = http_get(b.admin.unwrap(), "/metrics");
        if want.iter().all(|w| body.contains(w)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{body}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // The JSON page too (a worker answers from a snapshot up to STATS_FRESH old, so look again
    // until it is fresh enough).
    loop {
        let (_, body) = http_get(b.admin.unwrap(), "/romp/info");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["closed_by_reason"]["error_sent"] == 1 && v["errors_by_word"]["syntax"] == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn console_requests_are_answered_from_a_recent_snapshot() {
    let b = admin_broker(2, |_| {});
    let snapshots =
        |body: &str| -> u64 { body.lines().find_map(|l| l.strip_prefix("romp_stats_snapshots_total ")).unwrap().parse().unwrap() };
    let (_, first) = http_get(b.admin.unwrap(), "/metrics");
    let start = snapshots(&first);
    // 100 requests as fast as they go (a few hundred ms): every worker gathers from every
    // worker at most once per STATS_FRESH (500 ms), instead of once per request.
    let mut last = String::new();
    for _ in 0..100 {
        let (head, body) = http_get(b.admin.unwrap(), "/metrics");
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        last = body;
    }
    let taken = snapshots(&last) - start;
    assert!(taken <= 16, "{taken} snapshots for 100 requests (200 without the cache)");
}
