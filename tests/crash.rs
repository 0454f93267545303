//! `kill -9` against the binary: producers send persistent messages with a receipt each (a
//! window of them in flight), a consumer acknowledges with receipts, and the broker is killed
//! at a random moment, restarted on the same data directory with another worker count, again
//! and again. Then everything is drained. What a RECEIPT promised must hold: every receipted
//! SEND is there (unless its ACK was receipted), exactly as sent, in each producer's order; no
//! message whose ACK was receipted comes back.

use romp::client::blocking::Connection;
use romp::client::Options;
use romp::stomp::{AckMode, Version};
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_romp");
const PRODUCERS: u64 = 3;
const WINDOW: usize = 16;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn spawn(dir: &std::path::Path, workers: usize, port: u16, log: &std::path::Path) -> Child {
    Command::new(BIN)
        .args(["--port", &port.to_string(), "--web-port", "0", "--admin-port", "0", "--workers", &workers.to_string()])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn connect(port: u16) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Connection::connect(("127.0.0.1", port), Options::version(Version::V1_2)) {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the broker did not come up: {e}"),
        }
    }
}

/// The body of producer `p`'s message `seq`: its identity, then bytes that depend on both, of
/// a length that varies (up to several KiB, so records span pages).
fn body(p: u64, seq: u64) -> Vec<u8> {
    let mut b = format!("p{p}-{seq}:").into_bytes();
    let n = (seq * 7919 + p * 104_729) % 6000;
    b.extend((0..n).map(|i| ((i * 31 + seq + p) % 251) as u8));
    b
}

fn queue_of(p: u64) -> &'static str {
    if p % 2 == 0 {
        "/queue/crash-a"
    } else {
        "/queue/crash-b"
    }
}

fn parse(b: &[u8]) -> (u64, u64) {
    let head = b.split(|&c| c == b':').next().unwrap();
    let s = std::str::from_utf8(head).unwrap();
    let (p, seq) = s.trim_start_matches('p').split_once('-').unwrap();
    (p.parse().unwrap(), seq.parse().unwrap())
}

#[derive(Default)]
struct Ledger {
    /// The next sequence of each producer.
    next: BTreeMap<u64, u64>,
    receipted: BTreeSet<(u64, u64)>,
    acked: BTreeSet<(u64, u64)>,
}

fn produce(port: u16, p: u64, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let Ok(mut c) = Connection::connect(("127.0.0.1", port), Options::version(Version::V1_2)) else { return };
    let mut inflight: BTreeMap<String, u64> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        while inflight.len() < WINDOW {
            let seq = {
                let mut l = ledger.lock().unwrap();
                let n = l.next.entry(p).or_insert(0);
                *n += 1;
                *n
            };
            let r = c.receipt();
            if c.send(queue_of(p), &body(p, seq), &[("persistent", "true"), ("receipt", &r)]).is_err() {
                return;
            }
            inflight.insert(r, seq);
        }
        match c.recv(Duration::from_secs(5)) {
            Ok(Some(f)) if f.header("receipt-id").is_some() => {
                let seq = inflight.remove(f.header("receipt-id").unwrap()).expect("a receipt this producer asked for");
                ledger.lock().unwrap().receipted.insert((p, seq));
            }
            Ok(Some(f)) => panic!("producer {p}: {f:?}"),
            Ok(None) | Err(_) => return,
        }
    }
}

fn consume(port: u16, ledger: Arc<Mutex<Ledger>>, stop: Arc<AtomicBool>) {
    let Ok(mut c) = Connection::connect(("127.0.0.1", port), Options::version(Version::V1_2)) else { return };
    for (i, q) in ["/queue/crash-a", "/queue/crash-b"].iter().enumerate() {
        if c.subscribe_with(&i.to_string(), q, AckMode::ClientIndividual, &[("activemq.prefetchSize", "4")]).is_err() {
            return;
        }
    }
    let mut n = 0u64;
    let mut asked: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    while !stop.load(Ordering::Relaxed) {
        match c.recv(Duration::from_secs(5)) {
            Ok(Some(f)) if f.command == romp::stomp::Command::Message => {
                n += 1;
                // Acknowledge 49 of 50, with a receipt; leave the rest unacknowledged.
                if n % 50 == 0 {
                    continue;
                }
                let r = c.receipt();
                asked.insert(r.clone(), parse(&f.body));
                if c.ack_with(&f, &[("receipt", r.as_str())]).is_err() {
                    return;
                }
            }
            Ok(Some(f)) if f.header("receipt-id").is_some_and(|r| asked.contains_key(r)) => {
                let id = asked.remove(f.header("receipt-id").unwrap()).unwrap();
                ledger.lock().unwrap().acked.insert(id);
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return,
        }
    }
}

#[test]
fn kill_9_loses_no_receipted_message_across_restarts_with_other_worker_counts() {
    let dir = std::env::temp_dir().join(format!("romp-crash-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let log = std::env::temp_dir().join(format!("romp-crash-{}.log", std::process::id()));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    for (round, workers) in [2usize, 1, 3, 2].into_iter().enumerate() {
        let port = free_port();
        let mut child = spawn(&dir, workers, port, &log);
        drop(connect(port));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for p in 0..PRODUCERS {
            let (l, s) = (ledger.clone(), stop.clone());
            threads.push(std::thread::spawn(move || produce(port, p, l, s)));
        }
        let (l, s) = (ledger.clone(), stop.clone());
        threads.push(std::thread::spawn(move || consume(port, l, s)));
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(300 + rng % 700));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        let l = ledger.lock().unwrap();
        eprintln!("round {round} ({workers} workers): {} receipted, {} acked so far", l.receipted.len(), l.acked.len());
    }
    // Drain what survived.
    let port = free_port();
    let mut child = spawn(&dir, 2, port, &log);
    let mut c = connect(port);
    c.subscribe("a", "/queue/crash-a", AckMode::Auto).unwrap();
    c.subscribe("b", "/queue/crash-b", AckMode::Auto).unwrap();
    let mut got: Vec<(u64, u64)> = Vec::new();
    while let Some(f) = c.recv(Duration::from_secs(2)).unwrap() {
        assert_eq!(f.command, romp::stomp::Command::Message, "{f:?}");
        let id = parse(&f.body);
        assert_eq!(f.body, body(id.0, id.1), "message {id:?} is not as sent");
        assert_eq!(f.header("persistent"), Some("true"));
        got.push(id);
    }
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    child.wait().unwrap();
    let l = ledger.lock().unwrap();
    assert!(l.receipted.len() > 200 && !l.acked.is_empty(), "too little traffic to prove anything: {} receipted", l.receipted.len());
    let present: BTreeSet<(u64, u64)> = got.iter().copied().collect();
    let missing: Vec<_> = l.receipted.difference(&l.acked).filter(|id| !present.contains(id)).take(10).collect();
    assert!(missing.is_empty(), "receipted and never acknowledged, yet lost: {missing:?}");
    let back: Vec<_> = l.acked.intersection(&present).take(10).collect();
    assert!(back.is_empty(), "acknowledged with a receipt, yet back: {back:?}");
    assert_eq!(present.len(), got.len(), "a message twice in one drain");
    for p in 0..PRODUCERS {
        let seqs: Vec<u64> = got.iter().filter(|id| id.0 == p).map(|id| id.1).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "producer {p} out of order: {seqs:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    let _ = std::fs::remove_file(&log);
}
