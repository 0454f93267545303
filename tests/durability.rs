//! Durable queues through the embedded server: persistent messages survive a restart (with a
//! different worker count), come back redelivered and exactly as sent; non-persistent ones do
//! not; `persistence` overrides the header; a COMMIT's messages are logged together; the disk
//! limits refuse persistent SENDs only. (Crashes of the binary: tests/crash.rs.)

mod common;
use common::*;
use std::path::PathBuf;
use std::time::Duration;

fn data_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("romp-durable-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn durable(workers: usize, dir: &std::path::Path) -> Broker {
    let dir = dir.display().to_string();
    Broker::with(workers, |c| {
        c.data_dir = dir;
        c.segment_size = 64 * 1024;
    })
}

/// Drain `dest` with client acks until nothing comes for a while.
fn drain(b: &Broker, dest: &str) -> Vec<Got> {
    let mut c = b.client("1.2");
    c.subscribe_sync("d", dest, "client-individual");
    let mut got = Vec::new();
    while let Some(m) = c.recv_timeout(Duration::from_millis(500)) {
        assert_eq!(m.command, "MESSAGE", "{m:?}");
        c.send_frame("ACK", &[("id", m.h("ack"))], b"");
        got.push(m);
    }
    c.with_receipt("UNSUBSCRIBE", &[("id", "d")], b"", "u");
    got
}

#[test]
fn persistent_messages_survive_restarts_with_other_worker_counts() {
    let dir = data_dir("restart");
    {
        let b = durable(2, &dir);
        let mut p = b.client("1.2");
        for i in 0..40 {
            let body = format!("persistent {i} \0 binary");
            let r = format!("r{i}");
            let len = body.len().to_string();
            let h = [("destination", "/queue/orders"), ("persistent", "true"), ("content-length", len.as_str())];
            p.with_receipt("SEND", &h, body.as_bytes(), &r);
            p.with_receipt("SEND", &[("destination", "/queue/orders")], format!("memory {i}").as_bytes(), &format!("m{i}"));
        }
        // A consumer takes and acknowledges the first ten persistent ones (and the memory ones
        // between them), and holds two more unacknowledged when the broker stops.
        let mut c = b.client("1.2");
        c.subscribe_sync("s", "/queue/orders", "client-individual");
        let (mut acked, mut held) = (0, 0);
        while acked < 10 || held < 2 {
            let m = c.recv();
            let persistent = m.header("persistent") == Some("true");
            if persistent && acked == 10 {
                held += 1;
                continue;
            }
            c.with_receipt("ACK", &[("id", m.h("ack"))], b"", &format!("a{acked}-{held}-{}", m.h("ack")));
            if persistent {
                acked += 1;
            }
        }
    }
    for workers in [3, 1] {
        let b = durable(workers, &dir);
        let got = drain(&b, "/queue/orders");
        let bodies: Vec<String> = got.iter().map(|m| String::from_utf8_lossy(&m.body).to_string()).collect();
        let want: Vec<String> = (10..40).map(|i| format!("persistent {i} \0 binary")).collect();
        if workers == 3 {
            assert_eq!(bodies, want, "{workers} workers");
            for m in &got {
                assert_eq!((m.h("persistent"), m.h("redelivered")), ("true", "true"), "{m:?}");
            }
        } else {
            assert!(bodies.is_empty(), "acknowledged before the last restart, yet back: {bodies:?}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn persistence_policy_overrides_the_header() {
    let dir = data_dir("policy");
    let conf = |c: &mut romp::Config| {
        use romp::config::{DestConfig, Persistence};
        c.data_dir = dir.display().to_string();
        c.segment_size = 64 * 1024;
        c.destinations.insert("/queue/always".into(), DestConfig { persistence: Some(Persistence::Always), ..DestConfig::default() });
        c.destinations.insert("/queue/never".into(), DestConfig { persistence: Some(Persistence::Never), ..DestConfig::default() });
    };
    {
        let b = Broker::with(2, conf);
        let mut p = b.client("1.2");
        p.with_receipt("SEND", &[("destination", "/queue/always")], b"kept", "1");
        p.with_receipt("SEND", &[("destination", "/queue/never"), ("persistent", "true")], b"not kept", "2");
        let mut c = b.client("1.2");
        c.subscribe_sync("n", "/queue/never", "client-individual");
        let m = c.expect("MESSAGE");
        assert_eq!(m.header("persistent"), None, "never: the header is removed, {m:?}");
    }
    let b = Broker::with(2, conf);
    let got = drain(&b, "/queue/always");
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].body.as_slice(), got[0].h("persistent")), (&b"kept"[..], "true"));
    assert!(drain(&b, "/queue/never").is_empty());
    drop(b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_committed_transaction_survives_and_an_aborted_one_leaves_nothing() {
    let dir = data_dir("tx");
    {
        let b = durable(2, &dir);
        let mut p = b.client("1.2");
        p.send_frame("BEGIN", &[("transaction", "t1")], b"");
        p.send_frame("BEGIN", &[("transaction", "t2")], b"");
        for i in 0..5 {
            for (t, q) in [("t1", "/queue/tx-a"), ("t1", "/queue/tx-b"), ("t2", "/queue/tx-a")] {
                let body = format!("{t} {i}");
                p.send_frame("SEND", &[("destination", q), ("persistent", "true"), ("transaction", t)], body.as_bytes());
            }
        }
        p.with_receipt("COMMIT", &[("transaction", "t1")], b"", "c1");
        p.with_receipt("ABORT", &[("transaction", "t2")], b"", "a2");
    }
    let b = durable(1, &dir);
    for q in ["/queue/tx-a", "/queue/tx-b"] {
        let bodies: Vec<String> = drain(&b, q).iter().map(|m| m.text()).collect();
        assert_eq!(bodies, (0..5).map(|i| format!("t1 {i}")).collect::<Vec<_>>(), "{q}");
    }
    drop(b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn past_max_disk_bytes_persistent_sends_are_refused_and_others_go_on() {
    let dir = data_dir("full");
    let d = dir.display().to_string();
    let b = Broker::with(1, |c| {
        c.data_dir = d;
        c.segment_size = 64 * 1024;
        c.max_disk_bytes = 64 * 1024; // one segment
    });
    let mut p = b.client("1.2");
    // The first persistent SEND creates the segment; the report of its sync fills the limit.
    p.with_receipt("SEND", &[("destination", "/queue/full"), ("persistent", "true")], b"first", "1");
    std::thread::sleep(Duration::from_millis(100));
    p.with_receipt("SEND", &[("destination", "/queue/full")], b"memory only", "2");
    p.send_frame("SEND", &[("destination", "/queue/full"), ("persistent", "true"), ("receipt", "3")], b"refused");
    let e = p.expect_error("disk flup");
    assert!(e.text().contains("max_disk_bytes"), "{e:?}");
    // What was taken is still there.
    let got: Vec<String> = drain(&b, "/queue/full").iter().map(|m| m.text()).collect();
    assert_eq!(got, ["first", "memory only"]);
    drop(b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_second_broker_on_the_same_data_dir_refuses_to_start() {
    let dir = data_dir("lock");
    let b = durable(1, &dir);
    let cfg = romp::Config {
        ports: vec![0],
        web_port: 0,
        admin_port: 0,
        workers: 1,
        pin_workers: false,
        data_dir: dir.display().to_string(),
        ..romp::Config::default()
    };
    match romp::Server::start(cfg) {
        Err(e) => assert!(e.to_string().contains("another process holds the data directory's lock"), "{e}"),
        Ok(_) => panic!("two brokers on one data directory"),
    }
    drop(b);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What a restart recovered counts against max_disk_bytes and shows on /metrics at once, not
/// from the first group commit on (it once counted from zero until then). The group commits'
/// latency and size histograms are consistent with the totals.
#[test]
fn the_recovered_log_counts_against_the_disk_limit_from_the_start_and_metrics_show_it() {
    let dir = data_dir("footprint");
    {
        let b = durable(1, &dir);
        let mut p = b.client("1.2");
        let body = vec![b'x'; 2000];
        for i in 0..60 {
            p.with_receipt("SEND", &[("destination", "/queue/kept"), ("persistent", "true")], &body, &format!("r{i}"));
        }
        let m = b.metrics();
        let value = |name: &str| -> u64 {
            let line = m.lines().find(|l| l.starts_with(name) && !l.starts_with('#')).unwrap_or_else(|| panic!("{name} in {m}"));
            line.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
        };
        let syncs = value("romp_journal_syncs_total ");
        assert!(syncs >= 1, "{m}");
        assert_eq!(value("romp_journal_sync_seconds_count "), syncs, "{m}");
        assert_eq!(value("romp_journal_sync_seconds_bucket{le=\"+Inf\"} "), syncs, "{m}");
        assert_eq!(value("romp_journal_batch_records_count "), syncs, "{m}");
        assert_eq!(value("romp_journal_batch_records_sum "), value("romp_journal_records_total "), "{m}");
        let buckets: Vec<u64> = m
            .lines()
            .filter(|l| l.starts_with("romp_journal_sync_seconds_bucket"))
            .map(|l| l.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0))
            .collect();
        assert_eq!(buckets.len(), 13, "{m}");
        assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "cumulative buckets: {buckets:?}");
    }
    let d = dir.display().to_string();
    let b = Broker::with(1, |c| {
        c.data_dir = d;
        c.segment_size = 64 * 1024;
        c.max_disk_bytes = 64 * 1024;
    });
    let m = b.metrics();
    let bytes: u64 = m
        .lines()
        .find(|l| l.starts_with("romp_journal_disk_bytes "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("{m}"));
    assert!(bytes >= 120_000, "the 60 recovered messages' segments: {bytes} bytes\n{m}");
    let mut p = b.client("1.2");
    p.send_frame("SEND", &[("destination", "/queue/kept"), ("persistent", "true"), ("receipt", "x")], b"over the limit");
    p.expect_error("disk flup");
    assert_eq!(drain(&b, "/queue/kept").len(), 60);
    drop(b);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_persistent_scheduled_message_survives_a_restart_and_still_waits_for_its_time() {
    let dir = data_dir("scheduled");
    let at = romp::broker::wall_ms() + 2_500;
    {
        let b = durable(2, &dir);
        let mut p = b.client("1.2");
        let at = at.to_string();
        let h = [("destination", "/queue/later"), ("persistent", "true"), ("AMQ_SCHEDULED_TIME", at.as_str())];
        p.with_receipt("SEND", &h, b"kept", "r");
        let h = [("destination", "/queue/later"), ("AMQ_SCHEDULED_DELAY", "2000")];
        p.with_receipt("SEND", &h, b"memory only", "r2");
    }
    let b = durable(3, &dir);
    let mut c = b.client("1.2");
    c.subscribe_sync("s", "/queue/later", "client-individual");
    let m = c.recv_timeout(Duration::from_secs(10)).expect("the scheduled message came back");
    assert!(romp::broker::wall_ms() >= at, "delivered before its time");
    assert_eq!(m.text(), "kept");
    assert_eq!(m.h("persistent"), "true");
    assert!(m.header("romp-deliver-at").is_none(), "the log's own header is not delivered: {m:?}");
    c.send_frame("ACK", &[("id", m.h("ack"))], b"");
    c.expect_nothing(Duration::from_millis(300));
    drop(c);
    drop(b);
    // Acknowledged after it fired: gone for good.
    let b = durable(1, &dir);
    assert!(drain(&b, "/queue/later").is_empty());
}

#[test]
fn a_due_scheduled_message_that_its_full_queue_refuses_waits_until_there_is_room() {
    let b = Broker::with(1, |c| {
        c.destinations.insert(
            "/queue/tight".into(),
            romp::config::DestConfig { max_messages: Some(1), overflow: Some(romp::config::Overflow::Reject), ..Default::default() },
        );
    });
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/queue/tight")], b"first", "r1");
    p.with_receipt("SEND", &[("destination", "/queue/tight"), ("AMQ_SCHEDULED_DELAY", "50")], b"scheduled", "r2");
    std::thread::sleep(Duration::from_millis(400));
    let mut c = b.client("1.2");
    c.subscribe_sync("s", "/queue/tight", "auto");
    assert_eq!(c.expect("MESSAGE").text(), "first");
    assert_eq!(c.expect("MESSAGE").text(), "scheduled", "held while the queue was full, delivered once it had room");
}

#[test]
fn a_retry_after_a_restart_is_still_recognised_by_its_dedup_id() {
    let dir = data_dir("dedup");
    {
        let b = durable(2, &dir);
        let mut p = b.client("1.2");
        p.with_receipt("SEND", &[("destination", "/queue/pay"), ("persistent", "true"), ("dedup-id", "tx-77")], b"once", "r");
    }
    let b = durable(1, &dir);
    let mut p = b.client("1.2");
    p.with_receipt("SEND", &[("destination", "/queue/pay"), ("persistent", "true"), ("dedup-id", "tx-77")], b"twice", "r");
    let got = drain(&b, "/queue/pay");
    assert_eq!(got.iter().map(|m| m.text()).collect::<Vec<_>>(), ["once"]);
}
