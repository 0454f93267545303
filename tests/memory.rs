//! The process-wide bound, `max_memory`: once the broker counts that many bytes (held messages,
//! connection buffers, transactions, subscription state), every publisher is paused (held, not
//! disconnected) while consumers keep draining; below 90% of it publishing resumes. Nothing is
//! lost or reordered on the way, and the alarm shows on `/metrics`, `/health` and to embedders.

mod common;
use common::*;
use romp::client::{blocking::Connection, frames, AckMode, Options};
use romp::stomp::Version;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const MIB: u64 = 1 << 20;
const T: Duration = Duration::from_secs(30);

fn small_memory(c: &mut romp::Config) {
    c.max_memory = 16 * MIB;
    // Queue limits far above max_memory: the process bound is what stops the producers here.
    c.max_messages = 1_000_000;
    c.max_queue_bytes = 1 << 30;
}

/// Pipeline `n` SENDs of `body` (prefixed with the sequence number) to `dest`, then DISCONNECT
/// with a receipt: returns only if the broker kept the producer all along.
fn producer(addr: SocketAddr, dest: String, n: u64, size: usize) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let c = Connection::connect(addr, Options::version(Version::V1_2)).expect("producer connects");
        let mut body = vec![b'm'; size];
        let mut f = Vec::new();
        for i in 0..n {
            body[..8].copy_from_slice(&i.to_be_bytes());
            f.clear();
            frames::send(&mut f, Version::V1_2, &dest, &body, &[]).unwrap();
            c.stream().write_all(&f).expect("a paused producer is held, never cut off");
        }
        c.disconnect().expect("the producer was not disconnected: DISCONNECT got its receipt");
    })
}

fn wait_for(b: &Broker, what: &str, f: impl Fn(&romp::memory::Gauge) -> bool) {
    let g = b.handle.as_ref().unwrap().memory();
    let deadline = Instant::now() + T;
    while !f(g) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}: {} of {} bytes counted", g.used(), g.limit());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The broker's log lines that say why connections closed (the log goes to a file for this
/// test binary; shown when an assertion about connections fails).
fn close_lines(log: &std::path::Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().filter(|l| l.contains("closed") || l.contains("ERROR")).collect::<Vec<_>>().join("\n")
}

#[test]
fn over_max_memory_every_publisher_is_paused_and_resumes_when_consumers_drain() {
    let log = std::env::temp_dir().join(format!("romp-memory-test-{}.log", std::process::id()));
    if let Ok(f) = std::fs::File::create(&log) {
        let _ = simplelog::WriteLogger::init(log::LevelFilter::Info, simplelog::Config::default(), f);
    }
    let b = Broker::with(2, small_memory);
    // Each producer alone sends more than max_memory (1,100 x 16 KiB = 17.6 MiB), so none can
    // finish before the alarm holds it: with 300 a producer alone on a worker sometimes did,
    // disconnected normally, and the count of held producers came out one short.
    let (producers, each, size) = (8usize, 1100u64, 16 * 1024);
    let ps: Vec<_> = (0..producers).map(|p| producer(b.addr, format!("/queue/mem-{p}"), each, size)).collect();
    wait_for(&b, "the alarm", |g| g.alarm());
    // Paused: the count stops growing (give the producers time to push more if they could).
    std::thread::sleep(Duration::from_millis(500));
    let g = b.handle.as_ref().unwrap().memory();
    let used = g.used();
    std::thread::sleep(Duration::from_millis(300));
    assert!(g.alarm(), "the alarm cleared with nobody consuming");
    assert!(g.used() <= used + MIB, "publishing went on under the alarm: {used} -> {}", g.used());
    eprintln!("observed: {} bytes counted under a {} byte max_memory", g.used(), g.limit());
    assert!(g.used() < g.limit() + 4 * MIB, "overshot max_memory: {} bytes", g.used());
    assert_eq!(b.connections(), producers, "every producer is still connected; the broker said:\n{}", close_lines(&log));
    let all = b.metrics();
    assert!(all.contains("romp_memory_alarm 1"), "{all}");
    assert!(metric_of(&all, "romp_memory_paused_publishers_total ") >= 1);
    assert_eq!(metric_of(&all, "romp_errors_sent_total "), 0, "a producer got an ERROR");
    // Consumers drain: everything arrives, once and in order, and the producers finish.
    let cs: Vec<_> = (0..producers)
        .map(|p| {
            let addr = b.addr;
            std::thread::spawn(move || {
                let mut c = Connection::connect(addr, Options::version(Version::V1_2)).unwrap();
                c.subscribe("s", &format!("/queue/mem-{p}"), AckMode::Auto).unwrap();
                for i in 0..each {
                    let m = c.recv(T).unwrap().unwrap_or_else(|| panic!("queue {p}: only {i} of {each} arrived"));
                    assert_eq!(u64::from_be_bytes(m.body[..8].try_into().unwrap()), i, "queue {p}");
                }
            })
        })
        .collect();
    for c in cs {
        c.join().expect("consumer");
    }
    for p in ps {
        p.join().expect("producer");
    }
    wait_for(&b, "the alarm to clear", |g| !g.alarm());
    assert!(g.alarms() >= 1);
    assert!(b.metric("romp_memory_alarm ") == 0);
    let _ = std::fs::remove_file(&log);
}

fn metric_of(all: &str, prefix: &str) -> u64 {
    all.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()).map_or(0, |v| v.parse().unwrap())
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(WAIT)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).unwrap();
    all
}

#[test]
fn the_alarm_shows_on_health_and_stops_embedded_publishers_too() {
    let b = Broker::with(2, small_memory);
    let h = b.handle.as_ref().unwrap();
    let mut p = b.client("1.2");
    let body = vec![b'x'; 1 << 20];
    let mut sent = 0;
    // With receipts, one at a time: the SEND that finds the alarm up gets no receipt.
    loop {
        p.send_frame("SEND", &[("destination", "/queue/fill"), ("receipt", &sent.to_string())], &body);
        match p.recv_timeout(Duration::from_millis(500)) {
            Some(r) => {
                assert_eq!(r.command, "RECEIPT");
                sent += 1;
            }
            None => break,
        }
        assert!(sent < 64, "64 MiB taken under a 16 MiB max_memory");
    }
    assert!(h.memory().alarm());
    assert!((15..=17).contains(&sent), "paused after {sent} MiB");
    let health = http_get(b.web, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "the alarm is flow control, not a failure: {health}");
    assert!(health.contains("\"memory_alarm\":true"), "{health}");
    assert_eq!(h.publish("/queue/other", &[], b"embedded"), Err(romp::PublishError::MemoryAlarm));
    assert_eq!(h.publish_and_wait("/queue/other", &[], b"embedded", Duration::from_millis(200)), Err(romp::PublishError::MemoryAlarm));
    // A consumer drains; the held SEND is accepted (its receipt comes), embedders publish again.
    let waiter = {
        let h2 = b.addr;
        std::thread::spawn(move || {
            let mut c = Connection::connect(h2, Options::version(Version::V1_2)).unwrap();
            c.subscribe("s", "/queue/fill", AckMode::Auto).unwrap();
            for _ in 0..=sent {
                c.recv(T).unwrap().expect("a message");
            }
        })
    };
    assert_eq!(p.expect("RECEIPT").h("receipt-id"), sent.to_string());
    waiter.join().unwrap();
    wait_for(&b, "the alarm to clear", |g| !g.alarm());
    assert_eq!(h.publish_and_wait("/queue/other", &[], b"embedded", T), Ok(()));
    assert!(http_get(b.web, "/health").contains("\"memory_alarm\":false"));
}
