//! Faults under the binary, not inside it: a log damaged on disk (the start refuses, naming the
//! file and offset; `--repair` skips the damage, reports it, and keeps everything else), and an
//! fdatasync that fails (an `LD_PRELOAD` shim built here makes the real libc call return EIO:
//! the broker logs it and exits non-zero without receipting what was not synced; the restart
//! recovers every receipted message).

use romp::client::blocking::Connection;
use romp::client::Options;
use romp::stomp::{AckMode, Command as Cmd, Version};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_romp");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("romp-faults-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn broker(dir: &Path, port: u16, extra: &[&str], env: &[(&str, &str)]) -> Child {
    let log = std::fs::File::create(dir.join(format!("broker-{port}.log"))).unwrap();
    Command::new(BIN)
        .args(["--port", &port.to_string(), "--web-port", "0", "--admin-port", "0", "--workers", "1"])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn log_of(dir: &Path, port: u16) -> String {
    std::fs::read_to_string(dir.join(format!("broker-{port}.log"))).unwrap_or_default()
}

fn connect(port: u16, child: &mut Child) -> Connection {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match Connection::connect(("127.0.0.1", port), Options::version(Version::V1_2)) {
            Ok(c) => return c,
            Err(e) => {
                assert!(child.try_wait().unwrap().is_none(), "the broker exited: {e}");
                assert!(Instant::now() < deadline, "the broker did not come up: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn stop(mut child: Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// Wait (bounded) for the broker to exit on its own.
fn exit_of(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the broker did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("message-{i:03}:").into_bytes();
    b.extend((0..300 + i * 11).map(|k| ((k * 7 + i) % 251) as u8));
    b
}

fn index_of(b: &[u8]) -> usize {
    std::str::from_utf8(&b[8..11]).ok().and_then(|s| s.parse().ok()).unwrap_or(usize::MAX)
}

/// Every message on `queue` (auto ack), checked against what was sent; their indexes in order.
fn drain(c: &mut Connection, queue: &str) -> Vec<usize> {
    c.subscribe("d", queue, AckMode::Auto).unwrap();
    let mut got = Vec::new();
    while let Some(f) = c.recv(Duration::from_secs(1)).unwrap() {
        assert_eq!(f.command, Cmd::Message, "{f:?}");
        let i = index_of(&f.body);
        assert_eq!(f.body, body(i), "message {i} is not as sent");
        got.push(i);
    }
    got
}

/// The segment files of the current generation.
fn segments(data: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for g in std::fs::read_dir(data).unwrap().flatten().filter(|e| e.path().join("READY").exists()) {
        for w in std::fs::read_dir(g.path()).unwrap().flatten().filter(|e| e.path().is_dir()) {
            out.extend(
                std::fs::read_dir(w.path()).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "seg")),
            );
        }
    }
    out
}

#[test]
fn a_damaged_log_refuses_to_start_naming_the_place_and_repair_keeps_everything_else() {
    let dir = temp("repair");
    let port = free_port();
    let mut child = broker(&dir, port, &[], &[]);
    let mut c = connect(port, &mut child);
    for i in 0..50 {
        c.send_with_receipt("/queue/repair", &body(i), &[("persistent", "true")]).unwrap();
    }
    drop(c);
    stop(child);
    // Flip one bit in the body of message 25, synced long ago.
    let segs = segments(&dir.join("data"));
    let needle = b"message-025:";
    let (seg, at) = segs
        .iter()
        .find_map(|p| {
            let bytes = std::fs::read(p).unwrap();
            bytes.windows(needle.len()).position(|w| w == needle).map(|at| (p.clone(), at))
        })
        .expect("message 25 in a segment");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[at + 40] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();

    let port = free_port();
    let mut child = broker(&dir, port, &[], &[]);
    let status = exit_of(&mut child);
    let log = log_of(&dir, port);
    assert!(!status.success(), "started over a damaged log: {log}");
    let name = seg.file_name().unwrap().to_string_lossy().to_string();
    assert!(log.contains("damaged") && log.contains(&name) && log.contains("offset") && log.contains("--repair"), "{log}");

    let port = free_port();
    let mut child = broker(&dir, port, &["--repair"], &[]);
    drop(connect(port, &mut child));
    let log = log_of(&dir, port);
    assert!(log.contains("repair:") && log.contains(&name) && log.contains("skipped bytes"), "{log}");
    stop(child);

    // The repaired log is a clean one: a plain start takes it, with all but message 25.
    let port = free_port();
    let mut child = broker(&dir, port, &[], &[]);
    let mut c = connect(port, &mut child);
    let want: Vec<usize> = (0..50).filter(|&i| i != 25).collect();
    assert_eq!(drain(&mut c, "/queue/repair"), want);
    drop(c);
    stop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A shim whose `fdatasync` fails with EIO after the first `ROMP_TEST_FDATASYNC_OK` calls.
const SHIM: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
static long calls;
int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    const char *ok = getenv("ROMP_TEST_FDATASYNC_OK");
    if (ok && __atomic_add_fetch(&calls, 1, __ATOMIC_SEQ_CST) > atol(ok)) {
        errno = EIO;
        return -1;
    }
    return real(fd);
}
"#;

#[test]
fn a_failed_fdatasync_stops_the_broker_without_receipting_and_the_restart_keeps_what_was_receipted() {
    let dir = temp("fsync");
    std::fs::write(dir.join("shim.c"), SHIM).unwrap();
    let so = dir.join("libfailsync.so");
    let cc = Command::new("cc").args(["-shared", "-fPIC", "-O1", "-o"]).arg(&so).arg(dir.join("shim.c")).arg("-ldl").status();
    assert!(cc.is_ok_and(|s| s.success()), "cc could not build the fdatasync shim (.ci/run installs gcc)");
    let port = free_port();
    let preload = so.display().to_string();
    // The first segment's creation takes one fdatasync; then one per group commit.
    let mut child = broker(&dir, port, &[], &[("LD_PRELOAD", preload.as_str()), ("ROMP_TEST_FDATASYNC_OK", "11")]);
    let mut c = connect(port, &mut child);
    let mut receipted = Vec::new();
    for i in 0..50 {
        match c.send_with_receipt("/queue/fsync", &body(i), &[("persistent", "true")]) {
            Ok(()) => receipted.push(i),
            Err(_) => break,
        }
    }
    drop(c);
    let status = exit_of(&mut child);
    let log = log_of(&dir, port);
    assert_eq!(status.code(), Some(70), "{log}");
    assert!(log.contains("Input/output error"), "{log}");
    assert!(!receipted.is_empty() && receipted.len() < 50, "receipted {} of 50: {log}", receipted.len());
    assert_eq!(receipted, (0..receipted.len()).collect::<Vec<_>>());

    let port = free_port();
    let mut child = broker(&dir, port, &[], &[]);
    let mut c = connect(port, &mut child);
    let got = drain(&mut c, "/queue/fsync");
    // Every receipted message, in order; the one whose sync failed may or may not be there
    // (its bytes were written; nobody was told it was safe).
    assert!(got.len() >= receipted.len() && got.len() <= receipted.len() + 1, "{got:?} for {receipted:?}");
    assert_eq!(got, (0..got.len()).collect::<Vec<_>>());
    drop(c);
    stop(child);
    std::fs::remove_dir_all(&dir).unwrap();
}
