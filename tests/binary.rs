//! The `romp` binary: config checking, signals, the passwd subcommand.

mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_romp");

fn tmp(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("romp-bin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn check_config_accepts_the_shipped_file() {
    let out =
        Command::new(BIN).args(["--check-config", "--config", concat!(env!("CARGO_MANIFEST_DIR"), "/conf/romp.toml")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn config_errors_name_the_key_and_the_file() {
    for (name, text, key) in [
        ("unknown.toml", "max_sub = 4\n", "max_sub"),
        ("type.toml", "workers = \"lots\"\n", "workers"),
        ("range.toml", "heart_beat_grace = 50.0\n", "heart_beat_grace"),
        ("addr.toml", "bind_address = \"localhost:1\"\n", "bind_address"),
    ] {
        let p = tmp(name, text);
        let out = Command::new(BIN).args(["--check-config", "--config"]).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(key) && err.contains(name), "{name}: {err}");
    }
    let out = Command::new(BIN).args(["--config", "/no/such/romp.toml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/romp.toml"));
}

fn stop_cleanly(signal: &str) {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["--port", &port.to_string(), "--web-port", "0", "--admin-port", "0", "--workers", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let t = Instant::now();
    let mut c = loop {
        if let Ok(s) = std::net::TcpStream::connect(addr) {
            drop(s);
            break Client::raw(addr);
        }
        assert!(t.elapsed() < WAIT, "broker did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    c.connect("1.2");
    c.subscribe_sync("0", "/topic/sig", "auto");
    let t = Instant::now();
    Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    // Connected clients are closed, and the process exits 0, within a few seconds.
    c.expect_closed();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "no exit within 5 s of {signal}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn sigterm_stops_cleanly() {
    stop_cleanly("-TERM");
}

#[test]
fn sigint_stops_cleanly() {
    stop_cleanly("-INT");
}

#[test]
fn passwd_prints_a_verifiable_line() {
    let mut child = Command::new(BIN).args(["passwd", "alice", "--admin"]).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cr:t\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(line.starts_with("alice:$pbkdf2-sha256$") && line.trim_end().ends_with(":true"), "{line}");
    let users = romp::auth::parse_passwd(&line, "stdout").unwrap();
    assert!(users["alice"].admin);
    assert!(romp::auth::verify(&users["alice"].credential, "s3cr:t"));
}
