//! The admin plane's HTTP pages on a broker with users: `/metrics` and the console JSON need an
//! admin login (HTTP Basic, a PBKDF2 one checked off the worker), or the `metrics_token`
//! bearer for `/metrics`; `console_public` opens them; health stays open; refused requests
//! cost the workers nothing (no snapshot is taken for them).

mod common;
use base64::Engine;
use common::*;
use sha2::Digest;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

fn get(addr: SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    let auth = auth.map(|a| format!("Authorization: {a}\r\n")).unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n").as_bytes()).unwrap();
    let mut all = String::new();
    let _ = s.read_to_string(&mut all);
    let status = all.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, all)
}

fn basic(user: &str, pass: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}")))
}

fn users(dir: &std::path::Path) -> std::path::PathBuf {
    let sha = |pass: &str| -> String {
        let mut h = sha2::Sha256::new();
        h.update(format!("{pass}\n").as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    };
    let pbkdf2 = romp::auth::passwd_line("ops", "slow-secret", true).unwrap();
    let p = dir.join("passwd");
    std::fs::write(&p, format!("root:{}:true\nann:{}\n{pbkdf2}\n", sha("r"), sha("a"))).unwrap();
    p
}

#[test]
fn the_stats_pages_need_an_admin_or_the_token_and_refusals_cost_nothing() {
    let dir = std::env::temp_dir().join(format!("romp-admin-plane-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = users(&dir);
    let b = Broker::with(2, |c| {
        c.user_file = Some(file.clone());
        c.metrics_token = Some("scrape-me".into());
    });
    let (admin, web) = (b.admin.unwrap(), b.web);
    let root = basic("root", "r");
    let snapshots = || {
        let (_, page) = get(admin, "/metrics", Some(&root));
        page.lines().find(|l| l.starts_with("romp_stats_snapshots_total ")).and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok()).unwrap()
    };
    let (code, page) = get(admin, "/metrics", None);
    assert_eq!(code, 401, "{page}");
    assert!(page.contains("WWW-Authenticate: Basic"), "{page}");
    assert_eq!(get(admin, "/metrics", Some(&basic("ann", "a"))).0, 403, "not an admin");
    assert_eq!(get(admin, "/metrics", Some(&basic("root", "wrong"))).0, 401);
    assert_eq!(get(admin, "/metrics", Some("Bearer scrape-me")).0, 200);
    assert_eq!(get(admin, "/metrics", Some("Bearer nope")).0, 401);
    assert_eq!(get(web, "/romp/info", Some("Bearer scrape-me")).0, 401, "the token opens /metrics only");
    assert_eq!(get(web, "/romp/info", None).0, 401);
    let (code, page) = get(web, "/romp/info", Some(&root));
    assert!(code == 200 && page.contains("\"connections\""), "{page}");
    // A PBKDF2 admin is checked on the auth thread; the page follows.
    assert_eq!(get(admin, "/metrics", Some(&basic("ops", "slow-secret"))).0, 200);
    assert_eq!(get(admin, "/metrics", Some(&basic("ops", "wrong"))).0, 401);
    // Health stays open (orchestrators probe it without credentials).
    assert_eq!(get(web, "/health", None).0, 200);
    // Refused requests take no snapshot anywhere.
    std::thread::sleep(std::time::Duration::from_millis(300)); // past the snapshot cache
    let before = snapshots();
    for _ in 0..50 {
        assert_eq!(get(web, "/romp/destinations", None).0, 401);
        assert_eq!(get(admin, "/metrics", Some(&basic("ann", "a"))).0, 403);
    }
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = snapshots();
    assert!(after - before <= 2 * 2, "refused requests made the workers snapshot: {before} -> {after}");
    drop(b);

    let b = Broker::with(1, |c| {
        c.user_file = Some(file.clone());
        c.console_public = true;
    });
    assert_eq!(get(b.admin.unwrap(), "/metrics", None).0, 200, "console_public");
    assert_eq!(get(b.web, "/romp/info", None).0, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A scrape is not a connection: `romp_connections` counts client sessions only.
#[test]
fn the_scrape_does_not_count_itself_as_a_connection() {
    let b = Broker::start(2);
    assert_eq!(b.metric("romp_connections "), 0);
    let _c = b.client("1.2");
    // A WebSocket session counts; the HTTP scrape beside it does not.
    let mut w = Client::websocket(b.web, "/stomp");
    w.connect("1.2");
    // Each worker answers pages from its own snapshot, at most 500 ms old: let every cache
    // that saw no session expire.
    std::thread::sleep(std::time::Duration::from_millis(600));
    assert_eq!(b.metric("romp_connections "), 2);
}

/// A queue's depth splits into ready and unacked, as RabbitMQ's metrics do.
#[test]
fn queue_depth_is_split_into_ready_and_unacked() {
    let b = Broker::start(2);
    let mut p = b.client("1.2");
    for i in 0..3 {
        p.with_receipt("SEND", &[("destination", "/queue/split")], b"m", &format!("r{i}"));
    }
    let mut c = b.client("1.2");
    c.send_frame(
        "SUBSCRIBE",
        &[("id", "1"), ("destination", "/queue/split"), ("ack", "client-individual"), ("prefetch-count", "1"), ("receipt", "s")],
        b"",
    );
    c.expect("RECEIPT");
    let m = c.recv();
    assert_eq!(m.command, "MESSAGE");
    // One page, from snapshots taken after the delivery (each worker keeps its own for 500 ms).
    std::thread::sleep(std::time::Duration::from_millis(600));
    let page = b.metrics();
    let label = "{destination=\"/queue/split\",kind=\"queue\"}";
    for (name, want) in [("depth", 3), ("ready", 2), ("unacked", 1)] {
        assert!(page.contains(&format!("romp_destination_{name}{label} {want}\n")), "{name} {want}: {page}");
    }
}

/// `web_metrics`: /metrics on the web port too, behind the same credentials; off, it is not there.
#[test]
fn metrics_can_be_served_on_the_web_port_behind_the_same_credentials() {
    let off = Broker::start(1);
    assert_eq!(get(off.web, "/metrics", None).0, 404);
    let b = Broker::with(1, |c| {
        c.web_metrics = true;
        c.metrics_token = Some("t0k".into());
    });
    assert_eq!(get(b.web, "/metrics", None).0, 401);
    let (code, page) = get(b.web, "/metrics", Some("Bearer t0k"));
    assert!(code == 200 && page.contains("romp_connections "), "{page}");
}

/// A destination named in [destinations] is on /metrics from the start, with zeros, so an
/// alert on it never meets a missing series; patterns are not listed.
#[test]
fn configured_destinations_are_always_listed() {
    let b = Broker::with(2, |c| {
        c.destinations.insert("/queue/orders".into(), romp::config::DestConfig::default());
        c.destinations.insert("/queue/batch*".into(), romp::config::DestConfig::default());
    });
    let m = b.metrics();
    assert!(m.contains("romp_destination_depth{destination=\"/queue/orders\",kind=\"queue\"} 0"), "{m}");
    assert!(!m.contains("/queue/batch*"), "{m}");
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/queue/orders")], b"x", "r");
    let m = b.metrics();
    assert_eq!(m.matches("romp_destination_depth{destination=\"/queue/orders\"").count(), 1, "listed once: {m}");
}

/// RabbitMQ-style per-queue totals after a scripted workload: acknowledged, NACKed,
/// redelivered, dead-lettered, expired; bytes held; the process figures; and the page passes
/// `promtool check metrics` where promtool is installed.
#[test]
fn per_queue_totals_and_process_figures_after_a_scripted_workload() {
    let b = Broker::start(2);
    let mut p = b.client("1.2");
    for i in 0..5 {
        p.with_receipt("SEND", &[("destination", "/queue/work")], b"0123456789", &format!("r{i}"));
    }
    let expired = (romp::broker::wall_ms() + 50).to_string();
    p.with_receipt("SEND", &[("destination", "/queue/work"), ("expires", &expired)], b"old", "rx");
    std::thread::sleep(std::time::Duration::from_millis(100));
    let mut c = b.client("1.2");
    let h = [("id", "1"), ("destination", "/queue/work"), ("ack", "client-individual"), ("prefetch-count", "1"), ("receipt", "s")];
    c.send_frame("SUBSCRIBE", &h, b"");
    c.expect("RECEIPT");
    // ack, nack (comes back redelivered: ack it), nack with requeue:false (dead-lettered).
    let m = c.expect("MESSAGE");
    c.send_frame("ACK", &[("id", m.h("ack"))], b"");
    let m = c.expect("MESSAGE");
    c.send_frame("NACK", &[("id", m.h("ack"))], b"");
    let m = c.expect("MESSAGE");
    assert_eq!(m.h("redelivered"), "true");
    c.send_frame("ACK", &[("id", m.h("ack"))], b"");
    let m = c.expect("MESSAGE");
    c.with_receipt("NACK", &[("id", m.h("ack")), ("requeue", "false")], b"", "n");
    let _held = c.expect("MESSAGE");
    std::thread::sleep(std::time::Duration::from_millis(600));
    let page = b.metrics();
    let q = "{destination=\"/queue/work\",kind=\"queue\"}";
    for (name, want) in [
        ("acked_total", 2),
        ("nacked_total", 2),
        ("redelivered_total", 1),
        ("dead_lettered_total", 1),
        ("expired_total", 1),
        ("unacked", 1),
        ("ready", 1),
    ] {
        assert!(page.contains(&format!("romp_destination_{name}{q} {want}\n")), "{name} {want}: {page}");
    }
    let bytes: u64 = page.lines().find_map(|l| l.strip_prefix(&format!("romp_destination_bytes{q} "))).unwrap().parse().unwrap();
    assert!((20..200).contains(&bytes), "two 10-byte messages held: {bytes}");
    for name in ["romp_process_resident_memory_bytes ", "romp_process_open_fds "] {
        let v: u64 = page.lines().find_map(|l| l.strip_prefix(name)).unwrap().parse().unwrap();
        assert!(v > 0, "{name}");
    }
    assert!(page.contains("romp_worker_busy_seconds_total{worker=\"1\"}"), "{page}");
    assert!(page.contains("romp_bus_backlog 0\n"));
    assert!(page.contains("romp_connections_by_transport{transport=\"tcp\"} 2\n"), "the producer and the consumer: {page}");
    if let Ok(out) = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            let body = page.split_once("\r\n\r\n").map_or(page.as_str(), |(_, b)| b).to_string();
            child.stdin.take().expect("stdin").write_all(body.as_bytes())?;
            child.wait_with_output()
        })
    {
        assert!(out.status.success(), "promtool: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    } else {
        eprintln!("promtool not installed: the exposition format was not checked by it");
    }
}

/// `metrics_destinations`: past the cap, destinations are summed under "(other)" and counted;
/// configured ones are always listed.
#[test]
fn very_many_destinations_keep_a_small_scrape() {
    let b = Broker::with(2, |c| {
        c.metrics_destinations = 3;
        c.destinations.insert("/queue/configured".into(), Default::default());
    });
    let mut p = b.client("1.2");
    for i in 0..10 {
        for _ in 0..=i {
            p.send_frame("SEND", &[("destination", &format!("/queue/many{i}"))], b"x");
        }
    }
    p.with_receipt("SEND", &[("destination", "/queue/many0")], b"x", "r");
    std::thread::sleep(std::time::Duration::from_millis(600));
    let page = b.metrics();
    let listed: Vec<&str> = page.lines().filter(|l| l.starts_with("romp_destination_depth{")).collect();
    assert_eq!(listed.len(), 4, "three series and the sum of the rest: {listed:?}");
    assert!(listed[0].contains("/queue/configured"), "configured first: {listed:?}");
    assert!(listed[1].contains("/queue/many9") && listed[2].contains("/queue/many8"), "then the deepest: {listed:?}");
    // 1 + 2 + ... + 8 messages in the eight others (many0 got one more).
    assert_eq!(listed[3], "romp_destination_depth{destination=\"(other)\",kind=\"queue\"} 37");
    assert!(page.contains("romp_destinations_unlisted 8\n"), "{page}");
}
