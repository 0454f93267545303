//! A broker thread that dies outside a connection's processing stops the whole server with a
//! reason, instead of leaving a half-dead broker whose destinations swallow traffic:
//! `ServerHandle::failure` and `join` report it (and `main` exits 70 on it).

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn a_worker_panic_stops_the_server_with_its_reason() {
    let mut b = Broker::start(2);
    let mut c = b.client("1.2");
    c.subscribe_sync("s", "/queue/sup", "auto");
    let h = b.handle.take().unwrap();
    assert_eq!(h.failure(), None);
    h.inject_worker_panic(1);
    let deadline = Instant::now() + WAIT;
    while h.failure().is_none() {
        assert!(Instant::now() < deadline, "the failure was not noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(h.stop_requested(), "the other workers are told to stop");
    let e = h.join().expect_err("join reports the failure");
    assert!(e.to_string().contains("worker 1 died: injected fault in worker 1"), "{e}");
    // Every client is let go (closed, not left hanging on a worker that is gone).
    c.expect_closed();
    assert!(std::net::TcpStream::connect(b.addr).is_err(), "no longer accepting");
}

/// A users file with one slow-hash (pbkdf2) user, whose check runs on the auth thread.
fn slow_user_file(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("romp-sup-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("passwd");
    std::fs::write(&path, format!("{}\n", romp::auth::passwd_line("slow", "pw", false).unwrap())).unwrap();
    path
}

#[test]
fn an_auth_thread_panic_stops_the_server_with_its_reason() {
    let path = slow_user_file("auth");
    let mut b = Broker::with(2, |c| c.user_file = Some(path.clone()));
    let login = [("accept-version", "1.2"), ("login", "slow"), ("passcode", "pw")];
    let mut ok = b.raw();
    ok.send_frame("CONNECT", &login, b"");
    ok.expect("CONNECTED");
    let h = b.handle.take().unwrap();
    h.inject_auth_panic();
    // The next slow check panics: its client is not left waiting forever, nor are the others.
    let mut next = b.raw();
    next.send_frame("CONNECT", &login, b"");
    let deadline = Instant::now() + WAIT;
    while h.failure().is_none() {
        assert!(Instant::now() < deadline, "the auth thread's death was not noticed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let e = h.join().expect_err("join reports the failure");
    assert!(e.to_string().contains("the auth thread died: injected fault in the auth thread"), "{e}");
    next.expect_closed();
    ok.expect_closed();
}

const BIN: &str = env!("CARGO_BIN_EXE_romp");

/// The binary with `ROMP_INJECT_FAULT=fault`: exits 70 (EX_SOFTWARE, so a supervisor restarts
/// it) with the reason in its log.
fn binary_exits_70_on(fault: &str, users: Option<&std::path::Path>) -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut cmd = std::process::Command::new(BIN);
    cmd.args(["--port", &port.to_string(), "--web-port", "0", "--admin-port", "0", "--workers", "2", "--data-dir", ""]);
    let dir = std::env::temp_dir().join(format!("romp-sup-{}-bin-{fault}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if let Some(u) = users {
        let conf = dir.join("romp.toml");
        std::fs::write(&conf, format!("user_file = {:?}\npin_workers = false\n", u.display().to_string())).unwrap();
        cmd.arg("--config").arg(&conf);
    }
    let log = dir.join("stderr.log");
    let mut child = cmd
        .env("ROMP_INJECT_FAULT", fault)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    if users.is_some() {
        let t = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(t.elapsed() < WAIT, "broker did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut c = Client::raw(addr);
        c.send_frame("CONNECT", &[("accept-version", "1.2"), ("login", "slow"), ("passcode", "pw")], b"");
    }
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t.elapsed() > WAIT {
            let _ = child.kill();
            panic!("the broker did not exit after its {fault} fault");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(status.code(), Some(70), "{fault}: {status:?}\n{text}");
    text
}

#[test]
fn the_binary_exits_70_when_a_worker_dies() {
    let log = binary_exits_70_on("worker", None);
    assert!(log.contains("worker 0 died: injected fault in worker 0"), "{log}");
}

#[test]
fn the_binary_exits_70_when_the_auth_thread_dies() {
    let users = slow_user_file("bin");
    let log = binary_exits_70_on("auth", Some(&users));
    assert!(log.contains("the auth thread died: injected fault in the auth thread"), "{log}");
}

/// From the moment a broker thread dies, every `/health` the server still answers says so: 503
/// with the reason (the listeners close right after, so a probe then finds no server at all).
#[test]
fn health_answers_503_with_the_reason_once_a_thread_has_died() {
    let mut sim = romp::sim::Sim::workers(romp::Config::default(), 1, 0);
    let c = sim.connect_web_on(0);
    sim.input(c, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let ok = String::from_utf8(sim.take_output(c)).unwrap();
    assert!(ok.starts_with("HTTP/1.1 200") && ok.contains("\"status\":\"ok\"") && ok.contains("\"memory_alarm\":false"), "{ok}");
    sim.nodes[0].ctx.env.shared.failure.set("worker 1 died: injected".into()).unwrap();
    sim.input(c, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let failed = String::from_utf8(sim.take_output(c)).unwrap();
    assert!(failed.starts_with("HTTP/1.1 503"), "{failed}");
    assert!(failed.contains("\"status\":\"failed\"") && failed.contains("worker 1 died: injected"), "{failed}");
}
