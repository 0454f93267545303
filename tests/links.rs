//! Upstream links between two romp instances: delivery, flow control, and an edge restart.

mod common;
use common::*;
use romp::config::DownstreamConfig;
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn edge(port: u16) -> Broker {
    Broker::with(2, |c| {
        c.ports = vec![port];
        c.login = Some("edge".into());
        c.passcode = Some("pw".into());
    })
}

fn linked(edge_port: u16, name: &str, f: impl FnOnce(&mut romp::Config)) -> Broker {
    Broker::with(2, |c| {
        c.downstreams.insert(
            name.into(),
            DownstreamConfig {
                address: format!("127.0.0.1:{edge_port}"),
                login: Some("edge".into()),
                passcode: Some("pw".into()),
                remote: None,
                reconnect_min: 50,
                reconnect_max: 400,
                prefetch: 100,
                tls: false,
                tls_ca: None,
                tls_name: None,
            },
        );
        f(c)
    })
}

fn edge_client(b: &Broker) -> Client {
    let mut c = b.raw();
    c.send_frame("CONNECT", &[("accept-version", "1.2"), ("host", "/"), ("login", "edge"), ("passcode", "pw")], b"");
    c.expect("CONNECTED");
    c
}

fn link_info(b: &Broker) -> serde_json::Value {
    let mut s = std::net::TcpStream::connect(b.web).unwrap();
    use std::io::{Read, Write};
    write!(s, "GET /romp/info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    let body = all.split_once("\r\n\r\n").unwrap().1;
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["links"][0].clone()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn upstream_link_delivers_and_survives_an_edge_restart() {
    let port = free_port();
    let mut e = edge(port);
    let local = linked(port, "/queue/work", |_| {});
    wait_for("the link to come up", || link_info(&local)["state"] == "up");
    let mut consumer = local.client("1.2");
    consumer.subscribe_sync("w", "/queue/work", "auto");
    let mut p = edge_client(&e);
    for i in 0..200 {
        p.send_frame("SEND", &[("destination", "/queue/work/up"), ("n", &i.to_string())], format!("job {i}").as_bytes());
    }
    let mut orig = std::collections::HashSet::new();
    for i in 0..200 {
        let m = consumer.expect("MESSAGE");
        assert_eq!((m.h("destination"), m.h("n"), m.text()), ("/queue/work", i.to_string().as_str(), format!("job {i}")));
        assert!(orig.insert(m.h("orig-id").to_string()), "orig-id names the edge's message: {m:?}");
    }
    // The console answers from a snapshot up to STATS_FRESH (500 ms) old, taken by whichever
    // worker serves the request: look until one shows the whole count.
    wait_for("the link's count", || {
        let info = link_info(&local);
        (info["received"].as_u64(), info["connects"].as_u64()) == (Some(200), Some(1))
    });
    // Restart the edge on the same port: the link notices, backs off, reconnects.
    let h = e.handle.take().unwrap();
    h.shutdown();
    h.join().expect("the broker stopped cleanly");
    wait_for("the link to notice", || link_info(&local)["state"] != "up");
    e = edge(port);
    wait_for("the link to come back", || {
        let info = link_info(&local);
        info["state"] == "up" && info["connects"].as_u64().unwrap_or(0) >= 2
    });
    let mut p = edge_client(&e);
    for i in 200..250 {
        p.send_frame("SEND", &[("destination", "/queue/work/up"), ("n", &i.to_string())], b"again");
    }
    for i in 200..250 {
        assert_eq!(consumer.expect("MESSAGE").h("n"), i.to_string());
    }
}

#[test]
fn a_full_local_queue_holds_the_link_without_losing_messages() {
    let port = free_port();
    let e = edge(port);
    let local = linked(port, "/queue/slow", |c| {
        c.destinations.insert("/queue/slow".into(), romp::config::DestConfig { max_messages: Some(10), ..Default::default() });
    });
    wait_for("the link to come up", || link_info(&local)["state"] == "up");
    let mut p = edge_client(&e);
    for i in 0..60 {
        p.send_frame("SEND", &[("destination", "/queue/slow/up"), ("n", &i.to_string())], b"x");
    }
    p.with_receipt("SEND", &[("destination", "/queue/other")], b"", "sent");
    std::thread::sleep(Duration::from_millis(300));
    // The local queue is at its bound; the rest waits at the edge, unacknowledged.
    let mut c = local.client("1.2");
    c.subscribe("s", "/queue/slow", "auto");
    for i in 0..60 {
        assert_eq!(c.expect("MESSAGE").h("n"), i.to_string());
    }
    c.expect_nothing(Duration::from_millis(200));
}

#[test]
fn a_link_to_a_topic_reaches_every_local_subscriber() {
    let port = free_port();
    let e = edge(port);
    let local = linked(port, "/topic/prices", |_| {});
    wait_for("the link to come up", || link_info(&local)["state"] == "up");
    let mut subs: Vec<Client> = (0..3)
        .map(|i| {
            let mut c = local.client("1.2");
            c.subscribe_sync(&format!("s{i}"), "/topic/prices", "auto");
            c
        })
        .collect();
    let mut p = edge_client(&e);
    p.send("/topic/prices/up", "42");
    for c in subs.iter_mut() {
        assert_eq!(c.expect("MESSAGE").text(), "42");
    }
}
