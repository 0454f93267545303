//! The examples, run as processes on free ports: used by a real client, then stopped by PID.

mod common;
use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Example {
    child: Child,
    stomp: std::net::SocketAddr,
    web: std::net::SocketAddr,
}

impl Example {
    fn start(name: &str) -> Example {
        let exe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples").join(name);
        let status = Command::new(env!("CARGO")).args(["build", "-q", "--example", name]).status().unwrap();
        assert!(status.success());
        let (p, w) = (free_port(), free_port());
        let mut child = Command::new(exe)
            .env("ROMP_PORT", p.to_string())
            .env("ROMP_WEB_PORT", w.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The example prints its addresses once it is listening.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert!(line.contains(&p.to_string()), "{line}");
        Example { child, stomp: format!("127.0.0.1:{p}").parse().unwrap(), web: format!("127.0.0.1:{w}").parse().unwrap() }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let status = self.child.wait().unwrap();
        assert!(status.success() || std::thread::panicking(), "example exited with {status:?}");
    }
}

#[test]
fn ping_example() {
    let ex = Example::start("ping");
    let mut c = Client::raw(ex.stomp);
    c.connect("1.2");
    c.send("/virt/ping", "hi");
    let m = c.expect("MESSAGE");
    assert_eq!((m.h("pong"), m.h("count"), m.text().as_str()), ("true", "1", "hi"));
}

#[test]
fn hello_http_example() {
    let ex = Example::start("hello_http");
    let mut s = std::net::TcpStream::connect(ex.web).unwrap();
    s.write_all(b"GET /hello?name=tester HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("hello, tester\n"), "{out}");
}

#[test]
fn echo_example() {
    let ex = Example::start("echo");
    let mut c = Client::raw(ex.stomp);
    c.connect("1.2");
    c.subscribe_sync("r", "/queue/replies", "auto");
    c.send_frame("SEND", &[("destination", "/virt/echo"), ("reply-to", "/queue/replies")], b"ping");
    let m = c.expect("MESSAGE");
    assert_eq!((m.h("destination"), m.text().as_str()), ("/queue/replies", "ping"));
    // The pre-publish hook stamps ordinary SENDs.
    c.subscribe_sync("t", "/topic/stamped", "auto");
    c.send("/topic/stamped", "x");
    assert!(c.expect("MESSAGE").h("x-broker-seen-ms").parse::<u128>().unwrap() > 0);
}

#[test]
fn client_example_runs_its_tour_against_an_embedded_broker() {
    let status = Command::new(env!("CARGO")).args(["build", "-q", "--example", "client"]).status().unwrap();
    assert!(status.success());
    let exe = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debug/examples/client");
    let out = Command::new(exe).stderr(Stdio::inherit()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("redelivered: Some(\"true\")") && text.ends_with("disconnected cleanly\n"), "{text}");
}
