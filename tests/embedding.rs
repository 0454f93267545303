//! The embedding API: handlers, the pre-publish hook, publish() from other threads, several
//! servers in one process, and handler panics.

mod common;
use common::*;
use romp::api::{Draft, Flow, HttpContext, Reply, SendContext, Verdict};
use romp::http::Response;
use romp::{Config, Server};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn cfg(workers: usize) -> Config {
    Config { ports: vec![0], web_port: 0, admin_port: 0, workers, pin_workers: false, data_dir: String::new(), ..Config::default() }
}

fn wrap(handle: romp::ServerHandle) -> Broker {
    let addr = handle.local_addrs()[0];
    let web = handle.web_addr().unwrap();
    let admin = handle.admin_addr();
    Broker { handle: Some(handle), addr, web, admin, ws: false, basic: None }
}

#[test]
fn ping_handler_replies_to_the_sender_only() {
    for workers in [1, 4] {
        let seen = Arc::new(AtomicUsize::new(0));
        let s2 = seen.clone();
        let b = wrap(
            Server::builder()
                .config(cfg(workers))
                .stomp_handler("/virt/ping", move |send: &SendContext<'_>, reply: &mut Reply<'_>| {
                    s2.fetch_add(1, Ordering::Relaxed);
                    reply.send(send.destination, &[("pong", "true")], send.body).unwrap();
                    Flow::Handled
                })
                .start()
                .unwrap(),
        );
        let mut other = b.client("1.2");
        other.subscribe_sync("o", "/virt/ping", "auto");
        let mut c = b.client("1.2");
        c.with_receipt("SEND", &[("destination", "/virt/ping")], b"hi", "r");
        let m = c.expect("MESSAGE");
        assert_eq!((m.h("pong"), m.text().as_str(), m.h("subscription")), ("true", "hi", "romp-reply"));
        other.expect_nothing(Duration::from_millis(200));
        assert_eq!(seen.load(Ordering::Relaxed), 1);
        // A sender subscribed to the reply destination gets its own subscription id.
        c.subscribe_sync("mine", "/virt/ping", "auto");
        c.send("/virt/ping", "again");
        assert_eq!(c.expect("MESSAGE").h("subscription"), "mine");
    }
}

#[test]
fn continue_falls_through_to_normal_routing() {
    let b = wrap(
        Server::builder().config(cfg(2)).stomp_handler("/topic/", |_: &SendContext<'_>, _: &mut Reply<'_>| Flow::Continue).start().unwrap(),
    );
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/topic/through", "auto");
    s.send("/topic/through", "x");
    assert_eq!(s.expect("MESSAGE").text(), "x");
}

#[test]
fn pre_publish_vetoes_and_rewrites() {
    let b = wrap(
        Server::builder()
            .config(cfg(2))
            .pre_publish(|d: &mut Draft, send: &SendContext<'_>| {
                if d.destination.starts_with("/queue/forbidden") {
                    return Verdict::Reject(format!("{} may not publish there", send.session));
                }
                d.headers.push(("x-stamped".into(), "yes".into()));
                if d.destination == "/queue/old" {
                    d.destination = "/queue/new".into();
                }
                Verdict::Accept
            })
            .start()
            .unwrap(),
    );
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/new", "auto");
    let mut p = b.client("1.2");
    p.send("/queue/old", "moved");
    let m = s.expect("MESSAGE");
    assert_eq!((m.h("destination"), m.h("x-stamped"), m.text().as_str()), ("/queue/new", "yes", "moved"));
    p.send_frame("SEND", &[("destination", "/queue/forbidden"), ("receipt", "f")], b"no");
    let e = p.expect_error("blocked");
    assert_eq!(e.h("receipt-id"), "f");
}

#[test]
fn http_handler_answers_gets() {
    let b = wrap(
        Server::builder()
            .config(cfg(1))
            .http_handler("/api/", |req: &HttpContext<'_>| {
                (req.path == "/api/hello").then(|| Response::text(200, &format!("hello {}", req.header("X-Name").unwrap_or("?"))))
            })
            .start()
            .unwrap(),
    );
    let mut s = std::net::TcpStream::connect(b.web).unwrap();
    s.write_all(b"GET /api/hello HTTP/1.1\r\nHost: x\r\nX-Name: romp\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("hello romp\n"), "{out}");
    let mut s = std::net::TcpStream::connect(b.web).unwrap();
    s.write_all(b"GET /api/other HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "None falls through to static files: {out}");
}

#[test]
fn publish_from_other_threads() {
    let b = wrap(Server::start(cfg(4)).unwrap());
    let mut s = b.client("1.2");
    s.subscribe_sync("0", "/queue/from-rust", "auto");
    let h = b.handle.as_ref().unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            scope.spawn(move || {
                for i in 0..250 {
                    let body = format!("{t}:{i}");
                    loop {
                        match h.publish("/queue/from-rust", &[("x-thread", &t.to_string())], body.as_bytes()) {
                            Ok(()) => break,
                            Err(romp::PublishError::Busy) => std::thread::yield_now(),
                            Err(e) => panic!("{e}"),
                        }
                    }
                }
            });
        }
    });
    let mut next = [0usize; 4];
    for _ in 0..1000 {
        let m = s.expect("MESSAGE");
        let (t, i) = m.text().split_once(':').map(|(a, b)| (a.parse::<usize>().unwrap(), b.parse::<usize>().unwrap())).unwrap();
        assert_eq!(i, next[t], "per-thread order");
        next[t] += 1;
        assert_eq!(m.h("x-thread"), t.to_string());
    }
    assert_eq!(h.publish("", &[], b""), Err(romp::PublishError::BadDestination));
}

#[test]
fn handler_panic_closes_only_that_connection() {
    let b = wrap(
        Server::builder()
            .config(cfg(1))
            .stomp_handler("/virt/boom", |_: &SendContext<'_>, _: &mut Reply<'_>| -> Flow { panic!("handler bug") })
            .http_handler("/boom", |_: &HttpContext<'_>| -> Option<Response> { panic!("http handler bug") })
            .start()
            .unwrap(),
    );
    let mut bystander = b.client("1.2");
    bystander.subscribe_sync("0", "/topic/alive", "auto");
    let mut c = b.client("1.2");
    c.send("/virt/boom", "x");
    c.expect_error("general");
    let mut s = std::net::TcpStream::connect(b.web).unwrap();
    s.write_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 500"), "{out}");
    // The same worker still serves everyone else.
    let mut p = b.client("1.2");
    p.send("/topic/alive", "yes");
    assert_eq!(bystander.expect("MESSAGE").text(), "yes");
}

#[test]
fn several_servers_in_one_process() {
    let a = wrap(Server::start(cfg(2)).unwrap());
    let b = wrap(Server::start(cfg(2)).unwrap());
    let mut sa = a.client("1.2");
    sa.subscribe_sync("0", "/topic/iso", "auto");
    let mut pb = b.client("1.2");
    pb.with_receipt("SEND", &[("destination", "/topic/iso")], b"b only", "r");
    sa.expect_nothing(Duration::from_millis(200));
    drop(b);
    let mut pa = a.client("1.2");
    pa.send("/topic/iso", "a");
    assert_eq!(sa.expect("MESSAGE").text(), "a");
}

#[test]
fn publish_and_wait_reports_the_destinations_verdict() {
    let mut c = cfg(4);
    c.max_messages = 2;
    c.overflow = romp::config::Overflow::Reject;
    let b = wrap(Server::start(c).unwrap());
    let h = b.handle.as_ref().unwrap();
    for i in 0..2 {
        assert_eq!(h.publish_and_wait("/queue/verdict", &[], i.to_string().as_bytes(), Duration::from_secs(5)), Ok(()));
    }
    match h.publish_and_wait("/queue/verdict", &[], b"third", Duration::from_secs(5)) {
        Err(romp::PublishError::Refused(why)) => assert!(why.contains("max_messages = 2"), "{why}"),
        other => panic!("a full queue took it: {other:?}"),
    }
    // The two it took are intact; the refused one is not there.
    let mut s = b.client("1.2");
    s.subscribe("0", "/queue/verdict", "auto");
    assert_eq!((s.expect("MESSAGE").text(), s.expect("MESSAGE").text()), ("0".to_string(), "1".to_string()));
    s.expect_nothing(Duration::from_millis(200));
}

/// A handle shared by threads that publish is joined by any of them, without `try_unwrap`; the
/// join says when a worker died (here an injected panic), and a second join gives the same
/// answer.
#[test]
fn a_shared_handle_is_joined_from_any_thread_and_reports_a_worker_failure() {
    fn shareable<T: Send + Sync>() {}
    shareable::<romp::ServerHandle>();
    let cfg = common::test_config(2);
    let h = std::sync::Arc::new(romp::Server::start(cfg).expect("start"));
    let publishers: Vec<_> = (0..2)
        .map(|i| {
            let h = h.clone();
            std::thread::spawn(move || {
                for n in 0..100 {
                    h.publish(&format!("/queue/shared{i}"), &[], format!("{n}").as_bytes()).expect("publish");
                }
            })
        })
        .collect();
    for p in publishers {
        p.join().unwrap();
    }
    h.inject_worker_panic(1);
    let joiner = {
        let h = h.clone();
        std::thread::spawn(move || h.join())
    };
    let first = joiner.join().unwrap();
    let err = first.expect_err("a dead worker is reported by join");
    assert!(err.to_string().contains("worker 1"), "{err}");
    assert_eq!(h.join(), Err(err), "joined again: the same answer");
}

/// The public API as a crate outside this package sees it (tests/api_crate): it builds against
/// the documented surface alone and runs.
#[test]
fn a_crate_outside_the_package_builds_and_runs_against_the_public_api() {
    let root = env!("CARGO_MANIFEST_DIR");
    let manifest = format!("{root}/tests/api_crate/Cargo.toml");
    // Its own target directory under ours, so the build neither races this package's nor
    // starts from nothing each time.
    let target = format!("{root}/target/api_crate");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(&cargo)
        .args(["run", "--quiet", "--offline", "--manifest-path", &manifest, "--target-dir", &target])
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert_eq!(stdout.trim(), "ok", "{stderr}");
}
