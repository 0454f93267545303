//! romp-bench's own correctness checks, run against brokers that lose and duplicate messages on
//! purpose (embedded handlers), and against a healthy broker. Functional, not timed.

use romp::api::{Flow, Reply, SendContext};
use romp::{Config, Server};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

const BENCH: &str = env!("CARGO_BIN_EXE_romp-bench");

fn cfg() -> Config {
    Config { ports: vec![0], web_port: 0, admin_port: 0, workers: 2, pin_workers: false, data_dir: String::new(), ..Config::default() }
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

/// Each protocol version with each ack mode: the ACKs take that version's shape (1.2 `id`, 1.1
/// `subscription` + `message-id`, 1.0 `message-id`); a wrong shape is an ERROR from romp, which
/// fails the run.
#[test]
fn every_stomp_version_and_ack_mode_runs_clean() {
    let s = Server::start(cfg()).unwrap();
    let port = s.local_addrs()[0].port();
    for version in ["1.0", "1.1", "1.2"] {
        for ack in ["auto", "client", "client-individual"] {
            if (version, ack) == ("1.0", "client-individual") {
                continue; // not in 1.0: refused by the tool, checked below
            }
            let (ok, r) = bench(port, &["--stomp-version", version, "--ack", ack, "--kind", "queue"]);
            assert!(ok, "{version} {ack}: {r}");
            assert_eq!((r["lost"].as_u64(), r["duplicated"].as_u64(), r["errors"].as_u64()), (Some(0), Some(0), Some(0)), "{r}");
            assert!(r["delivered"].as_u64().unwrap() > 0, "{version} {ack}: {r}");
        }
    }
    let out = Command::new(BENCH).args(["--stomp-version", "2.0"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stomp-version"));
    let out = Command::new(BENCH).args(["--stomp-version", "1.0", "--ack", "client-individual"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not in STOMP 1.0"));
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
    // The unwindowed burst opens every queue run; its losses are reported apart.
    let (bsent, blost) = (r["burst_sent"].as_u64().unwrap(), r["burst_lost"].as_u64().unwrap());
    assert!(bsent > 0 && blost > 0 && blost <= lost, "{r}");
}

/// A queue run starts with a pipelined burst of 50,000 messages per producer that no window
/// paces: against romp (a full queue holds its producer) nothing of it is lost.
#[test]
fn queue_runs_start_with_an_unwindowed_burst_and_lose_nothing_in_it() {
    let mut c = cfg();
    c.max_messages = 1000;
    let s = Server::start(c).unwrap();
    // Long enough for the whole burst on a loaded machine (a run ends when its time is up,
    // burst or not).
    let (ok, r) = bench(s.local_addrs()[0].port(), &["--kind", "queue", "--producers", "2", "--consumers", "1", "--duration", "4"]);
    assert!(ok, "{r}");
    // The measured window is the run's time, give or take a loop turn of the tool on a loaded
    // machine (4.004 s was seen), not stretched by the burst.
    let secs = r["seconds"].as_f64().unwrap_or(0.0);
    assert!((4.0..4.25).contains(&secs), "{r}");
    assert_eq!((r["burst_sent"].as_u64(), r["burst_lost"].as_u64(), r["lost"].as_u64()), (Some(100_000), Some(0), Some(0)), "{r}");
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

#[test]
fn open_loop_reports_lateness_from_intended_send_times() {
    let s = Server::start(cfg()).unwrap();
    let (ok, r) = bench(s.local_addrs()[0].port(), &["--kind", "queue", "--rate", "5000"]);
    assert!(ok, "{r}");
    let sent = r["sent"].as_u64().unwrap();
    // 1.2 s at 5,000/s, give or take the start-up.
    assert!((5_000..=6_500).contains(&sent), "the rate is held: {r}");
    let l = &r["latency_us"];
    assert!(l["p50"].as_f64().unwrap() > 0.0 && l["p99"].as_f64().unwrap() >= l["p50"].as_f64().unwrap(), "{r}");
    assert!(l["max"].as_f64().unwrap() >= l["p999"].as_f64().unwrap(), "{r}");
}

#[test]
fn a_stalled_broker_shows_in_open_loop_lateness() {
    // Every 500th message sleeps on the worker for 50 ms: lateness measured from the intended
    // send time must show it (a closed loop would simply send less meanwhile).
    let n = AtomicU64::new(0);
    let s = Server::builder()
        .config(Config { workers: 1, ..cfg() })
        .stomp_handler("/queue/stall-", move |_: &SendContext<'_>, _: &mut Reply<'_>| {
            if n.fetch_add(1, Ordering::Relaxed) % 500 == 499 {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Flow::Continue
        })
        .start()
        .unwrap();
    let (_, r) = bench(s.local_addrs()[0].port(), &["--kind", "queue", "--rate", "5000", "--queue-prefix", "/queue/stall-"]);
    assert!(r["latency_us"]["max"].as_f64().unwrap() > 40_000.0, "{r}");
    assert!(r["latency_us"]["p99"].as_f64().unwrap() > 1_000.0, "stalls delay the messages queued behind them: {r}");
}

#[test]
fn slow_subscribers_are_reported_apart_from_the_fast_ones() {
    let s = Server::start(Config { max_pending_bytes: (1 << 20) + 65536, max_message_size: 1 << 20, ..cfg() }).unwrap();
    // Three seconds: enough traffic (even from a debug build) to pass what the kernel's socket
    // buffers hold for the slow reader, so the broker's own bound is what it meets.
    let args = ["--kind", "topic", "--consumers", "2", "--slow", "1", "--slow-rate", "100", "--duration", "3"];
    let (ok, r) = bench(s.local_addrs()[0].port(), &args);
    assert!(ok, "the fast subscribers got everything: {r}");
    assert_eq!(r["lost"], 0, "{r}");
    assert_eq!(r["slow"]["subscribers"], 1, "{r}");
    assert_eq!(r["slow"]["cut_off"], 1, "romp's default policy disconnects the slow subscriber: {r}");
}

#[test]
fn the_null_broker_forwards_for_calibration() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = Command::new(BENCH).args(["--null-broker", "--port", &port.to_string()]).spawn().unwrap();
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(t.elapsed() < std::time::Duration::from_secs(10));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for args in [vec!["--kind", "queue"], vec!["--kind", "topic", "--consumers", "3"]] {
        let (ok, r) = bench(port, &args);
        assert!(ok && r["sent"].as_u64().unwrap() > 0, "{args:?}: {r}");
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn websocket_runs_are_checked_like_tcp_runs() {
    let s = Server::start(cfg()).unwrap();
    let web = s.web_addr().unwrap().port();
    for args in [vec!["--kind", "queue", "--ws", "/stomp"], vec!["--kind", "topic", "--consumers", "3", "--ws", "/stomp"]] {
        let (ok, r) = bench(web, &args);
        assert!(ok, "{args:?}: {r}");
        assert!(r["sent"].as_u64().unwrap() > 0 && r["lost"] == 0, "{r}");
    }
    // A port that is not WebSocket fails clearly instead of hanging.
    let out = Command::new(BENCH)
        .args(["--port", &s.local_addrs()[0].port().to_string(), "--ws", "/stomp", "--duration", "1", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `--persistent` with a receipt window against a durable broker: every SEND carries
/// `persistent:true`, goes through the log, and the producers wait for RECEIPTs, whose round
/// trips are reported; nothing is lost. The fdatasync floor mode measures the disk itself.
#[test]
fn persistent_runs_with_receipt_windows_are_clean_and_report_their_receipts() {
    let dir = std::env::temp_dir().join(format!("romp-bench-tool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut c = cfg();
    c.data_dir = dir.display().to_string();
    let s = Server::start(c).unwrap();
    let port = s.local_addrs()[0].port();
    let (ok, r) = bench(port, &["--kind", "queue", "--persistent", "--producers", "2", "--receipt-window", "8", "--receipt-every", "4"]);
    assert!(ok, "{r}");
    assert!(r["scenario"].as_str().unwrap().contains("persistent"), "{r}");
    let receipts = r["receipts"]["count"].as_u64().unwrap();
    // Both producers' SENDs are covered by receipts, one per four SENDs (those of the warm-up
    // are not counted, nor the last few in flight).
    assert!(receipts > 0 && receipts <= r["sent"].as_u64().unwrap() / 4, "{r}");
    assert_eq!((r["lost"].as_u64(), r["burst_sent"].as_u64()), (Some(0), Some(0)), "{r}");
    drop(s);
    let out = Command::new(BENCH)
        .args(["--fsync-floor", dir.to_str().unwrap(), "--duration", "0.3", "--warmup", "0", "--json"])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout).lines().last().unwrap_or_default().to_string();
    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"));
    assert!(v["syncs"].as_u64().unwrap() > 0 && v["p50_us"].as_f64().unwrap() > 0.0, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_receipt_every_beyond_the_window_is_refused() {
    let out = Command::new(BENCH).args(["--port", "1", "--receipt-window", "2", "--receipt-every", "3"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--receipt-every"), "{}", String::from_utf8_lossy(&out.stderr));
}
