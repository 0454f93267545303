//! `--latency`: request/reply round trips through the broker, one request in flight per
//! requester, against a raw TCP echo of the same payload measured in the same run (the floor
//! this machine's loopback allows). Blocking sockets on dedicated threads: the lowest-latency
//! way to wait for exactly one reply.
//!
//! Each requester SENDs to `<queue-prefix>req` with `reply-to:<queue-prefix>reply-<i>`; one
//! responder subscribed to the request queue SENDs each body back to its reply-to.

use crate::Opts;
use hdrhistogram::Histogram;
use romp::client::{frames, Decoded};
use romp::stomp::{AckMode, Command, Limits, Version};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

struct Stomp {
    s: TcpStream,
    buf: Vec<u8>,
    version: Version,
}

impl Stomp {
    fn connect(addr: SocketAddr, o: &Opts) -> std::io::Result<Stomp> {
        let s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut c = Stomp { s, buf: Vec::new(), version: o.version };
        c.s.write_all(&crate::conn::connect_frame(o).map_err(std::io::Error::other)?)?;
        c.next(Command::Connected)?;
        Ok(c)
    }

    /// Read until a frame of `want` arrives; returns (reply-to header, body).
    fn next(&mut self, want: Command) -> std::io::Result<(Option<String>, Vec<u8>)> {
        let limits = Limits { max_headers: 1000, max_header_len: 1 << 16, max_body: 64 << 20 };
        loop {
            let found = match romp::client::read(&self.buf, self.version, &limits) {
                Ok(Decoded::HeartBeats { bytes, .. }) => Some((None, None, Vec::new(), bytes)),
                Ok(Decoded::Frame(f, used)) => Some((Some(f.command()), f.header("reply-to").map(str::to_string), f.body().to_vec(), used)),
                Ok(Decoded::Incomplete { .. }) => None,
                Err(e) => return Err(std::io::Error::other(format!("bad frame from broker: {e}"))),
            };
            if let Some((cmd, reply_to, body, used)) = found {
                self.buf.drain(..used);
                let Some(cmd) = cmd else { continue }; // heart-beats
                if cmd == Command::Error {
                    return Err(std::io::Error::other(format!("ERROR from broker: {}", String::from_utf8_lossy(&body))));
                }
                if cmd == want {
                    return Ok((reply_to, body));
                }
                continue;
            }
            let mut tmp = [0u8; 65536];
            let n = self.s.read(&mut tmp)?;
            if n == 0 {
                return Err(std::io::Error::other("broker closed the connection"));
            }
            self.buf.extend_from_slice(&tmp[..n]);
        }
    }

    fn send(&mut self, dest: &str, reply_to: Option<&str>, body: &[u8]) -> std::io::Result<()> {
        let mut f = Vec::with_capacity(body.len() + 128);
        let reply: &[(&str, &str)] = match reply_to {
            Some(r) => &[("reply-to", r)],
            None => &[],
        };
        frames::send(&mut f, self.version, dest, body, reply).map_err(std::io::Error::other)?;
        self.s.write_all(&f)
    }

    /// SUBSCRIBE (auto ack) and wait for its receipt.
    fn subscribe(&mut self, dest: &str) -> std::io::Result<()> {
        let mut f = Vec::new();
        frames::subscribe(&mut f, self.version, "0", dest, AckMode::Auto, &[("receipt", "r")]).map_err(std::io::Error::other)?;
        self.s.write_all(&f)?;
        self.next(Command::Receipt).map(|_| ())
    }
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds")
}

/// Round trips through the broker for `duration` per requester.
fn broker_rtt(addr: SocketAddr, o: &Opts, requesters: usize) -> Result<Histogram<u64>, String> {
    let req = format!("{}req", o.queue_prefix);
    let mut responder = Stomp::connect(addr, o).map_err(|e| e.to_string())?;
    responder.subscribe(&req).map_err(|e| e.to_string())?;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let st = stop.clone();
    let resp = std::thread::spawn(move || -> Result<(), String> {
        responder.s.set_read_timeout(Some(Duration::from_millis(200))).map_err(|e| e.to_string())?;
        while !st.load(std::sync::atomic::Ordering::Acquire) {
            match responder.next(Command::Message) {
                Ok((Some(to), body)) => responder.send(&to, None, &body).map_err(|e| e.to_string())?,
                Ok((None, _)) => return Err("request without reply-to".into()),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    });
    let threads: Vec<_> = (0..requesters)
        .map(|i| {
            let o = o.clone();
            let req = req.clone();
            std::thread::spawn(move || -> Result<Histogram<u64>, String> {
                let reply = format!("{}reply-{i}", o.queue_prefix);
                let mut c = Stomp::connect(addr, &o).map_err(|e| e.to_string())?;
                c.subscribe(&reply).map_err(|e| e.to_string())?;
                let mut h = hist();
                let body = vec![b'l'; o.size];
                let end = Instant::now() + o.warmup + o.duration;
                let measure_from = Instant::now() + o.warmup;
                while Instant::now() < end {
                    let t = Instant::now();
                    c.send(&req, Some(&reply), &body).map_err(|e| e.to_string())?;
                    let (_, got) = c.next(Command::Message).map_err(|e| e.to_string())?;
                    if got != body {
                        return Err("reply body differs from the request".into());
                    }
                    if t >= measure_from {
                        h.record(t.elapsed().as_nanos() as u64).map_err(|e| e.to_string())?;
                    }
                }
                Ok(h)
            })
        })
        .collect();
    let mut total = hist();
    for t in threads {
        total.add(t.join().map_err(|_| "requester panicked".to_string())??).map_err(|e| e.to_string())?;
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    resp.join().map_err(|_| "responder panicked".to_string())??;
    Ok(total)
}

/// The same payload size echoed over plain loopback TCP, one in flight.
fn echo_rtt(o: &Opts) -> Result<Histogram<u64>, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = l.local_addr().map_err(|e| e.to_string())?;
    let size = o.size + 40; // about a SEND's framing
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let _ = s.set_nodelay(true);
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    });
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let msg = vec![b'e'; size];
    let mut back = vec![0u8; size];
    let mut h = hist();
    let end = Instant::now() + o.warmup + o.duration;
    let measure_from = Instant::now() + o.warmup;
    while Instant::now() < end {
        let t = Instant::now();
        s.write_all(&msg).map_err(|e| e.to_string())?;
        s.read_exact(&mut back).map_err(|e| e.to_string())?;
        if t >= measure_from {
            h.record(t.elapsed().as_nanos() as u64).map_err(|e| e.to_string())?;
        }
    }
    Ok(h)
}

pub fn run(o: &Opts, addr: SocketAddr, requesters: usize) -> Result<(), String> {
    let echo = echo_rtt(o)?;
    let broker = broker_rtt(addr, o, requesters)?;
    let us = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let ratio = us(&broker, 0.99) / us(&echo, 0.99).max(0.001);
    if o.json {
        println!(
            "{{\"scenario\":\"request/reply, {requesters} in flight, {} B\",\"round_trips\":{},\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"echo_round_trips\":{},\"echo_p50_us\":{:.1},\"echo_p99_us\":{:.1},\"echo_p999_us\":{:.1},\"p99_vs_echo\":{:.2}}}",
            o.size,
            broker.len(),
            us(&broker, 0.5),
            us(&broker, 0.99),
            us(&broker, 0.999),
            echo.len(),
            us(&echo, 0.5),
            us(&echo, 0.99),
            us(&echo, 0.999),
            ratio
        );
    } else {
        println!("scenario     request/reply through the broker, {requesters} requester(s), 1 in flight each, {} B", o.size);
        println!("             {:>10} {:>10} {:>10} {:>10}", "round trips", "p50 us", "p99 us", "p99.9 us");
        for (name, h) in [("broker", &broker), ("TCP echo", &echo)] {
            println!("{name:<12} {:>10} {:>10.1} {:>10.1} {:>10.1}", h.len(), us(h, 0.5), us(h, 0.99), us(h, 0.999));
        }
        println!("p99 ratio    {ratio:.2}x the raw TCP echo floor measured in this run");
    }
    Ok(())
}
