//! romp-bench's own correctness checks, run against brokers that lose and duplicate messages on
//! purpose (embedded handlers), and against a healthy broker. Functional, not timed.

use romp::api::{Flow, Reply, SendContext};
use romp::{Config, Server};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

const BENCH: &str = env!("CARGO_BIN_EXE_romp-bench");

fn cfg() -> Config {
    Config { ports: vec![0], web_port: 0, admin_port: 0, workers: 2, pin_workers: false, ..Config::default() }
}

/// Run romp-bench for a short while; returns (exit success, parsed JSON report).
fn bench(port: u16, args: &[&str]) -> (bool, serde_json::Value) {
    let out = Command::new(BENCH)
        .args(["--port", &port.to_string(), "--duration", "1", "--warmup", "0.2", "--threads", "2", "--window", "2000", "--json"])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_else(|| panic!("no report; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), serde_json::from_str(line).unwrap())
}

#[test]
fn clean_runs_report_everything_delivered() {
    let s = Server::start(cfg()).unwrap();
    let port = s.local_addrs()[0].port();
    for args in [
        vec!["--kind", "queue", "--producers", "2", "--consumers", "2"],
        vec!["--kind", "topic", "--producers", "1", "--consumers", "4"],
        vec!["--kind", "queue", "--producers", "3", "--consumers", "3", "--destinations", "3", "--ack", "client-individual"],
    ] {
        let (ok, r) = bench(port, &args);
        assert!(ok, "{args:?}: {r}");
        assert_eq!((r["lost"].as_u64(), r["duplicated"].as_u64(), r["reordered"].as_u64()), (Some(0), Some(0), Some(0)), "{r}");
        let copies = if args[1] == "topic" { 4 } else { 1 };
        assert_eq!(r["delivered"].as_u64().unwrap(), r["sent"].as_u64().unwrap() * copies, "{r}");
        assert!(r["sent"].as_u64().unwrap() > 0);
    }
}

#[test]
fn loss_is_detected() {
    let n = AtomicU64::new(0);
    let s = Server::builder()
        .config(cfg())
        .stomp_handler("/queue/lossy-", move |_: &SendContext<'_>, _: &mut Reply<'_>| {
            // Swallow every 10th message.
            if n.fetch_add(1, Ordering::Relaxed) % 10 == 9 {
                Flow::Handled
            } else {
                Flow::Continue
            }
        })
        .start()
        .unwrap();
    let (ok, r) = bench(s.local_addrs()[0].port(), &["--kind", "queue", "--queue-prefix", "/queue/lossy-"]);
    assert!(!ok, "a lossy run must fail: {r}");
    let (sent, lost) = (r["sent"].as_u64().unwrap(), r["lost"].as_u64().unwrap());
    assert!(lost > 0 && lost <= sent / 10 + 1, "{r}");
}

#[test]
fn duplicates_are_detected() {
    let n = AtomicU64::new(0);
    let s = Server::builder()
        .config(cfg())
        .stomp_handler("/queue/dup-", move |send: &SendContext<'_>, reply: &mut Reply<'_>| {
            // Publish every 7th message an extra time.
            if n.fetch_add(1, Ordering::Relaxed) % 7 == 0 {
                reply.publish(send.destination, &[], send.body);
            }
            Flow::Continue
        })
        .start()
        .unwrap();
    let (ok, r) = bench(s.local_addrs()[0].port(), &["--kind", "queue", "--queue-prefix", "/queue/dup-"]);
    assert!(!ok, "a duplicating run must fail: {r}");
    assert!(r["duplicated"].as_u64().unwrap() > 0, "{r}");
}

#[test]
fn latency_mode_measures_round_trips_and_the_echo_floor() {
    let s = Server::start(cfg()).unwrap();
    let out = Command::new(BENCH)
        .args(["--port", &s.local_addrs()[0].port().to_string(), "--latency", "2", "--duration", "1", "--warmup", "0.2", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert!(r["round_trips"].as_u64().unwrap() > 10, "{r}");
    assert!(r["echo_round_trips"].as_u64().unwrap() > 10, "{r}");
    let (p50, p99) = (r["p50_us"].as_f64().unwrap(), r["p99_us"].as_f64().unwrap());
    assert!(p50 > 0.0 && p99 >= p50, "{r}");
}
