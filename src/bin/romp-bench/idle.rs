//! `--idle N`: open N CONNECTed sessions with one subscription each and report the broker's RSS
//! per session (read from /proc with `--broker-pid`). Connections are spread over loopback
//! source addresses 127.0.0.1..127.0.0.32, so no address's ephemeral ports run short and a
//! free port is quick to find.

use crate::Opts;
use romp::client::{frames, Decoded};
use romp::stomp::{AckMode, Command, Limits};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok())
}

fn raise_nofile() {
    // SAFETY: getrlimit/setrlimit on this process only.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
    }
}

/// One session: connect from `src`, CONNECT, SUBSCRIBE with a receipt, wait for the receipt.
fn open(src: std::net::IpAddr, dst: SocketAddr, i: usize, o: &Opts) -> std::io::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    // Closed with a reset at the end (linger 0): thousands of sockets left in TIME_WAIT on the
    // tool's side made the next runs' connects search long for a free port (9,000 sessions
    // once took 52 s to open, nearly all of it in the kernel).
    sock.set_linger(Some(Duration::ZERO))?;
    sock.bind(&SocketAddr::new(src, 0).into())?;
    sock.connect(&dst.into())?;
    let mut s: TcpStream = sock.into();
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let dest = o.destination(i);
    // CONNECT and SUBSCRIBE pipelined: the broker applies them in order.
    let mut f = crate::conn::connect_frame(o).map_err(std::io::Error::other)?;
    frames::subscribe(&mut f, o.version, "0", &dest, AckMode::Auto, &[("receipt", "r")]).map_err(std::io::Error::other)?;
    s.write_all(&f)?;
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let limits = Limits::default();
    loop {
        let mut pos = 0;
        loop {
            match romp::client::read(&got[pos..], o.version, &limits).map_err(std::io::Error::other)? {
                Decoded::HeartBeats { bytes, .. } => pos += bytes,
                Decoded::Frame(f, _) if f.command() == Command::Receipt => return Ok(s),
                Decoded::Frame(f, _) if f.command() == Command::Error => {
                    return Err(std::io::Error::other(format!("ERROR {}", f.header("message").unwrap_or(""))))
                }
                Decoded::Frame(_, used) => pos += used,
                Decoded::Incomplete { .. } => break,
            }
        }
        got.drain(..pos);
        let n = s.read(&mut buf)?;
        if n == 0 || got.len() > 4096 {
            return Err(std::io::Error::other("no RECEIPT for SUBSCRIBE"));
        }
        got.extend_from_slice(&buf[..n]);
    }
}

pub fn run(o: &Opts, dst: SocketAddr, n: usize, pid: Option<u32>) -> Result<(), String> {
    raise_nofile();
    let before = pid.and_then(rss_kib);
    let t = Instant::now();
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        // Round-robin over 32 loopback source addresses: binding port 0 searches the address's
        // ephemeral range for a free port, a search that grows with the ports already taken
        // there (18,000 sessions on one address took ~28 s, nearly all of it in the kernel).
        let src = std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % 32) as u8));
        match open(src, dst, i, o) {
            Ok(s) => held.push(s),
            Err(e) => return Err(format!("session {i}: {e}")),
        }
        if !o.json && i % 10_000 == 9_999 {
            eprint!("\r{} sessions", i + 1);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let after = pid.and_then(rss_kib);
    let per = match (before, after) {
        (Some(b), Some(a)) => Some((a.saturating_sub(b)) as f64 * 1024.0 / n as f64),
        _ => None,
    };
    if o.json {
        println!(
            "{{\"scenario\":\"idle sessions\",\"sessions\":{n},\"seconds_to_open\":{:.2},\"rss_before_kib\":{},\"rss_after_kib\":{},\"bytes_per_session\":{}}}",
            t.elapsed().as_secs_f64(),
            before.map_or("null".into(), |v| v.to_string()),
            after.map_or("null".into(), |v| v.to_string()),
            per.map_or("null".into(), |v| format!("{v:.0}"))
        );
    } else {
        eprintln!();
        println!("idle sessions  {n} (one subscription each), opened in {:.1} s", t.elapsed().as_secs_f64());
        match per {
            Some(p) => println!("broker RSS     {} KiB -> {} KiB: {:.0} bytes per session", before.unwrap_or(0), after.unwrap_or(0), p),
            None => println!("broker RSS     unknown (pass --broker-pid)"),
        }
    }
    drop(held);
    Ok(())
}
