//! One load thread: a mio loop over its share of producer and consumer connections.
//!
//! Frames are encoded with `romp::client::frames` and read with `romp::client::read`, the
//! public client's sans-io core; this loop only moves bytes and counts.

use crate::report::Tally;
use crate::{Opts, Shared};
use mio::net::TcpStream;
use mio::{Events, Poll, Token};
use romp::broker::AckMode;
use romp::client::{frames, Decoded, Incoming};
use romp::stomp::{Command, HeartBeat, Limits, Version};
use romp::transport::Transport;
use std::collections::VecDeque;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Bytes at the start of every body: producer id (u32), sequence (u64), checksum (u32), LE.
pub const HEADER_LEN: usize = 16;
/// Messages a producer appends per loop turn at most.
const BATCH: u64 = 512;
/// Bytes a producer keeps queued for writing at most.
const WBUF_MAX: usize = 256 * 1024;

fn fnv32(parts: &[&[u8]]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for p in parts {
        for &b in *p {
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
        }
    }
    h
}

/// Fill `body` (at least HEADER_LEN long) for message `seq` of producer `pid`.
pub fn stamp(body: &mut [u8], pid: u32, seq: u64) {
    body[..4].copy_from_slice(&pid.to_le_bytes());
    body[4..12].copy_from_slice(&seq.to_le_bytes());
    let sum = fnv32(&[&body[..12], &body[HEADER_LEN..]]);
    body[12..16].copy_from_slice(&sum.to_le_bytes());
}

/// Check a body; returns (producer, sequence) if intact.
pub fn check(body: &[u8]) -> Option<(u32, u64)> {
    if body.len() < HEADER_LEN {
        return None;
    }
    let pid = u32::from_le_bytes(body[..4].try_into().ok()?);
    let seq = u64::from_le_bytes(body[4..12].try_into().ok()?);
    let sum = u32::from_le_bytes(body[12..16].try_into().ok()?);
    (fnv32(&[&body[..12], &body[HEADER_LEN..]]) == sum).then_some((pid, seq))
}

enum Role {
    /// `head`: the SEND command and headers, built once (destination and length never change);
    /// `rhead` the same asking for a RECEIPT (`--receipt-window`). `receipted`: SENDs covered
    /// by the RECEIPTs received; `asked`: when each outstanding receipted SEND was written.
    /// `spread`: with `--spread`, one head per destination, used in turn.
    Producer {
        pid: u32,
        seq: u64,
        copies: u64,
        head: Vec<u8>,
        rhead: Vec<u8>,
        receipted: u64,
        asked: VecDeque<Instant>,
        spread: Vec<Vec<u8>>,
    },
    /// `slow`: reads at most `--slow-rate` messages/s; not counted in loss accounting.
    Consumer { cid: usize, slow: bool },
}

struct Conn {
    /// Plain TCP, or TLS with `--tls`.
    sock: Transport,
    role: Role,
    connected: bool,
    ready: bool,
    /// A slow consumer the broker cut off (ERROR or close): no longer read.
    dead: bool,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Slow consumers: bytes they may still read (refilled by time).
    budget: f64,
    /// STOMP over WebSocket (`--ws`).
    ws: Option<crate::ws::WsConn>,
}

impl Conn {
    /// Bytes waiting to be written.
    fn pending(&self) -> usize {
        self.wbuf.len() + self.ws.as_ref().map_or(0, |w| w.wire.len())
    }
}

/// CONNECT for `--stomp-version`: 1.0 has no version negotiation (and no heart-beats), so a 1.0
/// client sends neither header and the broker assumes 1.0.
pub fn connect_frame(o: &Opts) -> Result<Vec<u8>, String> {
    let (login, passcode) = match (&o.login, &o.passcode) {
        (Some(l), Some(p)) => (Some(l.as_str()), Some(p.as_str())),
        _ => (None, None),
    };
    let c =
        frames::Connect { versions: &[o.version], host: &o.vhost, login, passcode, heart_beat: HeartBeat::default(), stomp_command: false };
    let mut f = Vec::new();
    frames::connect(&mut f, &c, &[]).map_err(|e| format!("CONNECT: {e}"))?;
    Ok(f)
}

fn flush(c: &mut Conn) -> std::io::Result<()> {
    let Conn { sock, wbuf, ws, .. } = c;
    let buf = match ws.as_mut() {
        Some(w) => {
            w.frame(wbuf);
            &mut w.wire
        }
        None => wbuf,
    };
    while !buf.is_empty() {
        match sock.write(buf) {
            Ok(n) => {
                buf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // TLS records the socket has not taken yet.
    sock.flush()
}

/// Per-thread state the read path needs.
struct Reader<'a> {
    o: &'a Opts,
    shared: &'a Shared,
    tally: &'a mut Tally,
    limits: Limits,
    scratch: Vec<u8>,
    acks: Vec<u8>,
    /// Open loop: each producer's rate, and the start of measurement.
    rate: Option<f64>,
    measure_from: Option<Instant>,
}

impl Reader<'_> {
    /// Read what `c` may read now (everything, or a slow consumer's budget) and handle it.
    fn service(&mut self, c: &mut Conn) -> Result<(), String> {
        let slow = matches!(c.role, Role::Consumer { slow: true, .. });
        loop {
            let cap = if slow { (c.budget as usize).min(self.scratch.len()) } else { self.scratch.len() };
            if cap == 0 {
                break;
            }
            match c.sock.read(&mut self.scratch[..cap]) {
                Ok(n) if n > 0 && c.ws.is_some() => {
                    if let Some(w) = c.ws.as_mut() {
                        w.raw.extend_from_slice(&self.scratch[..n]);
                        w.unframe(&mut c.rbuf)?;
                    }
                    if slow {
                        c.budget -= n as f64;
                    }
                }
                Ok(0) => {
                    if slow {
                        c.dead = true;
                        self.tally.slow_cut_off += 1;
                        return Ok(());
                    }
                    if !self.shared.done.load(Ordering::Acquire) {
                        // An ERROR read before the close says why: parsing reports it.
                        self.parse(c)?;
                        return Err("the broker closed a connection".into());
                    }
                    break;
                }
                Ok(n) => {
                    c.rbuf.extend_from_slice(&self.scratch[..n]);
                    if slow {
                        c.budget -= n as f64;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if slow => {
                    let _ = e;
                    c.dead = true;
                    self.tally.slow_cut_off += 1;
                    return Ok(());
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        self.parse(c)
    }

    fn parse(&mut self, c: &mut Conn) -> Result<(), String> {
        let o = self.o;
        let mut pos = 0;
        // Client ack mode: the ACK for the last MESSAGE of this read, which covers the others.
        let mut last_ack: Vec<u8> = Vec::new();
        let mut delivered = 0u64;
        let mut cut = false;
        loop {
            let (cmd, used) = match romp::client::read(&c.rbuf[pos..], o.version, &self.limits) {
                Ok(Decoded::HeartBeats { bytes, .. }) => {
                    pos += bytes;
                    continue;
                }
                Ok(Decoded::Frame(f, used)) => {
                    if f.command() == Command::Message {
                        if let Role::Consumer { cid, slow } = c.role {
                            if slow {
                                self.tally.slow_delivered += 1;
                            } else {
                                match check(f.body()) {
                                    Some((pid, seq)) => {
                                        self.tally.record(cid, pid, seq);
                                        self.latency(seq);
                                    }
                                    None => self.tally.corrupt += 1,
                                }
                                delivered += 1;
                            }
                            match o.ack {
                                AckMode::ClientIndividual => ack_frame(&mut self.acks, o.version, &f)?,
                                AckMode::Client => {
                                    last_ack.clear();
                                    ack_frame(&mut last_ack, o.version, &f)?;
                                }
                                AckMode::Auto => {}
                            }
                        }
                    } else if f.command() == Command::Error {
                        if matches!(c.role, Role::Consumer { slow: true, .. }) {
                            cut = true;
                            break;
                        }
                        return Err(format!(
                            "ERROR from broker: {} {}",
                            f.header("message").unwrap_or(""),
                            String::from_utf8_lossy(f.body())
                        ));
                    }
                    (f.command(), used)
                }
                Ok(Decoded::Incomplete { .. }) => break,
                Err(e) => return Err(format!("broker sent a malformed frame: {e}")),
            };
            pos += used;
            match cmd {
                Command::Connected => {
                    c.connected = true;
                    match &c.role {
                        Role::Consumer { cid, .. } => {
                            let dest = o.subscribe_to.clone().unwrap_or_else(|| o.destination(*cid));
                            let id = cid.to_string();
                            let mut h: Vec<(&str, &str)> = o.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                            h.push(("receipt", "ready"));
                            frames::subscribe(&mut c.wbuf, o.version, &id, &dest, o.ack, &h).map_err(|e| format!("SUBSCRIBE: {e}"))?;
                        }
                        Role::Producer { .. } => c.ready = true,
                    }
                }
                Command::Receipt => match &mut c.role {
                    Role::Producer { receipted, asked, .. } => {
                        // In order: this one covers the `receipt_every` SENDs up to its own.
                        *receipted += o.receipt_every;
                        if let Some(at) = asked.pop_front() {
                            if self.measure_from.is_some_and(|m| at >= m) {
                                let _ = self.tally.receipts.record((at.elapsed().as_nanos() as u64).max(1));
                            }
                        }
                    }
                    Role::Consumer { .. } => {
                        c.ready = true;
                        self.shared.ready_consumers.fetch_add(1, Ordering::AcqRel);
                    }
                },
                _ => {}
            }
        }
        if cut {
            // The broker cut this slow consumer off; what it said is all there is.
            c.dead = true;
            c.rbuf.clear();
            self.tally.slow_cut_off += 1;
            return Ok(());
        }
        c.rbuf.drain(..pos);
        self.acks.extend_from_slice(&last_ack);
        c.wbuf.append(&mut self.acks);
        if delivered > 0 {
            self.shared.delivered.fetch_add(delivered, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Open loop: record how late message `seq` arrived against its intended send time.
    fn latency(&mut self, seq: u64) {
        let (Some(rate), Some(start)) = (self.rate, self.shared.started.get()) else { return };
        let intended = *start + Duration::from_secs_f64(seq as f64 / rate);
        if self.measure_from.is_some_and(|m| intended < m) {
            return;
        }
        let late = Instant::now().saturating_duration_since(intended).as_nanos() as u64;
        if let Some(h) = self.tally.latency.as_mut() {
            let _ = h.record(late.max(1));
        }
    }
}

/// Append the ACK of MESSAGE `f` in the shape `version` uses (the client encoder knows them:
/// 1.2 names the `ack` header's value; 1.1 the subscription and the message-id; 1.0 the
/// message-id alone).
fn ack_frame(out: &mut Vec<u8>, version: Version, f: &Incoming<'_>) -> Result<(), String> {
    frames::ack(out, version, f.ack_ref(), false, &[]).map_err(|e| format!("ACK: {e}"))
}

pub fn run_thread(t: usize, addr: SocketAddr, o: &Opts, shared: &Shared) -> Result<Tally, String> {
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut conns: Vec<Conn> = Vec::new();
    let mut tally = Tally::new(o.producers);
    if o.rate.is_some() {
        tally.latency = Some(crate::report::latency_histogram());
    }
    let open = |role: Role| -> Result<Conn, String> {
        let s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        s.set_nodelay(true).map_err(|e| e.to_string())?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let sock = TcpStream::from_std(s);
        let sock = match &o.tls {
            None => Transport::Tcp(sock),
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(o.host.clone()).map_err(|e| format!("--host as a TLS name: {e}"))?;
                Transport::tls_client(sock, cfg.clone(), name).map_err(|e| e.to_string())?
            }
        };
        Ok(Conn {
            sock,
            role,
            connected: false,
            ready: false,
            dead: false,
            rbuf: Vec::new(),
            wbuf: connect_frame(o)?,
            budget: 64.0 * 1024.0,
            ws: o.ws.as_ref().map(|path| crate::ws::WsConn::new(&addr.to_string(), path)),
        })
    };
    for cid in (0..o.consumers).filter(|c| c % o.threads == t) {
        conns.push(open(Role::Consumer { cid, slow: false })?);
    }
    // Connections are dealt to threads in one sequence (consumers, producers, then slow
    // consumers), so a 1 -> 1 run puts its producer and its consumer on different threads
    // instead of both on thread 0 with the other thread idle, and adding slow consumers leaves
    // the others where a run without them has them (the slow-consumer comparison needs that).
    for cid in (o.consumers..o.consumers + o.slow).filter(|c| (c + o.producers) % o.threads == t) {
        conns.push(open(Role::Consumer { cid, slow: true })?);
    }
    let first_producer = o.consumers;
    for pid in (0..o.producers).filter(|p| (first_producer + p) % o.threads == t) {
        let copies = o.copies_of(pid % o.destinations);
        let mut head = Vec::new();
        let mut extra: Vec<(&str, &str)> = o.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if o.persistent {
            extra.push(("persistent", "true"));
        }
        let level = (pid % 10).to_string();
        if o.priorities {
            extra.push(("priority", &level));
        }
        frames::send_head(&mut head, o.version, &o.destination(pid), o.size, &extra).map_err(|e| format!("SEND: {e}"))?;
        let mut rhead = Vec::new();
        extra.push(("receipt", "r"));
        frames::send_head(&mut rhead, o.version, &o.destination(pid), o.size, &extra).map_err(|e| format!("SEND: {e}"))?;
        let asked = VecDeque::new();
        let mut spread = Vec::new();
        if o.spread {
            extra.pop();
            for d in 0..o.destinations {
                let mut h = Vec::new();
                frames::send_head(&mut h, o.version, &o.destination(d), o.size, &extra).map_err(|e| format!("SEND: {e}"))?;
                spread.push(h);
            }
        }
        conns.push(open(Role::Producer { pid: pid as u32, seq: 0, copies, head, rhead, receipted: 0, asked, spread })?);
    }
    for (i, c) in conns.iter_mut().enumerate() {
        c.sock.register(poll.registry(), Token(i)).map_err(|e| e.to_string())?;
        flush(c).map_err(|e| e.to_string())?;
    }
    let mut r = Reader {
        o,
        shared,
        tally: &mut tally,
        limits: Limits { max_headers: 1000, max_header_len: 1 << 16, max_body: 64 << 20 },
        scratch: vec![0u8; 256 * 1024],
        acks: Vec::new(),
        rate: o.rate_per_producer(),
        measure_from: None,
    };
    // A slow consumer's read allowance: its message rate times a generous frame size.
    let slow_bytes_per_sec = o.slow_rate as f64 * (o.size + 200) as f64;
    let mut last_refill = Instant::now();
    let mut events = Events::with_capacity(1024);
    let mut body = vec![0u8; o.size];
    let mut stop_acknowledged = false;
    let rate = o.rate_per_producer();
    // Whether a producer here could publish more right now (window open, socket not full).
    // mio is edge-triggered: a producer whose last write fitted gets no new event, so the
    // loop must not sleep on the poller then, or it would publish one batch per timeout.
    let mut can_send = false;
    // Open loop: when the next message of a producer here is due. The poller's timeout has
    // 1 ms granularity, far coarser than the gaps between messages at a fixed rate, so the loop
    // polls without blocking and sleeps the (short) rest itself.
    let mut next_due: Option<Instant> = None;
    while !shared.done.load(Ordering::Acquire) {
        let wait = next_due.map(|d| d.saturating_duration_since(Instant::now()));
        let timeout = match wait {
            _ if can_send => Duration::ZERO,
            Some(w) if w < Duration::from_millis(1) => Duration::ZERO,
            _ => Duration::from_millis(1),
        };
        poll.poll(&mut events, Some(timeout)).map_err(|e| e.to_string())?;
        if let Some(w) = wait.filter(|w| events.is_empty() && !can_send && *w < Duration::from_millis(1)) {
            std::thread::sleep(w);
        }
        can_send = false;
        next_due = None;
        if r.measure_from.is_none() {
            r.measure_from = shared.started.get().map(|s| *s + o.warmup);
        }
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if (!ev.is_readable() && !ev.is_read_closed()) || c.dead || matches!(c.role, Role::Consumer { slow: true, .. }) {
                continue;
            }
            r.service(c)?;
        }
        if o.slow > 0 {
            let dt = last_refill.elapsed().as_secs_f64();
            last_refill = Instant::now();
            for c in conns.iter_mut().filter(|c| matches!(c.role, Role::Consumer { slow: true, .. }) && !c.dead) {
                // Before the run starts a slow consumer reads freely (it must see its RECEIPT).
                c.budget = if c.ready { (c.budget + dt * slow_bytes_per_sec).min(slow_bytes_per_sec) } else { 64.0 * 1024.0 };
                r.service(c)?;
            }
        }
        // Producers: publish while the window allows, or at the open-loop rate.
        let go = shared.go.load(Ordering::Acquire) && !shared.stop_sending.load(Ordering::Acquire);
        for c in conns.iter_mut() {
            let room = c.pending() < WBUF_MAX;
            let mut window_open = false;
            if let Role::Producer { pid, seq, copies, head, rhead, receipted, asked, spread } = &mut c.role {
                if go && c.ready && room {
                    let n = match (rate, shared.started.get()) {
                        _ if o.receipt_window > 0 => {
                            // Closed loop on receipts; the poll timeout (1 ms) is not the pace:
                            // a RECEIPT is a read event on this very connection.
                            (o.receipt_window - (*seq - *receipted).min(o.receipt_window)).min(BATCH)
                        }
                        (Some(rate), Some(start)) => {
                            // Message k is intended for start + k / rate and due from then on.
                            let due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
                            let n = due.saturating_sub(*seq).min(8 * BATCH);
                            let next = *start + Duration::from_secs_f64((*seq + n) as f64 / rate);
                            next_due = Some(next_due.map_or(next, |d: Instant| d.min(next)));
                            n
                        }
                        _ if *seq < o.burst => {
                            // The burst: as fast as the socket takes it, no window.
                            window_open = true;
                            (o.burst - *seq).min(BATCH)
                        }
                        _ => {
                            let outstanding = shared.sent.load(Ordering::Acquire) * *copies
                                - shared.delivered.load(Ordering::Acquire).min(shared.sent.load(Ordering::Acquire) * *copies);
                            let room = (o.window * *copies).saturating_sub(outstanding) / *copies;
                            window_open = room > BATCH;
                            if !window_open {
                                // Deliveries, counted on another thread, bring no poll event
                                // here: look again in 50 us rather than after a whole poll
                                // timeout (a 4,000-message topic window is a few ms of traffic).
                                let soon = Instant::now() + Duration::from_micros(50);
                                next_due = Some(next_due.map_or(soon, |d: Instant| d.min(soon)));
                            }
                            room.min(BATCH)
                        }
                    };
                    for _ in 0..n {
                        stamp(&mut body, *pid, *seq);
                        *seq += 1;
                        if o.receipt_window > 0 && *seq % o.receipt_every == 0 {
                            asked.push_back(Instant::now());
                            c.wbuf.extend_from_slice(rhead);
                        } else if !spread.is_empty() {
                            c.wbuf.extend_from_slice(&spread[*seq as usize % spread.len()]);
                        } else {
                            c.wbuf.extend_from_slice(head);
                        }
                        c.wbuf.extend_from_slice(&body);
                        c.wbuf.push(0);
                    }
                    if n > 0 {
                        r.tally.sent[*pid as usize] = *seq;
                        shared.sent.fetch_add(n, Ordering::AcqRel);
                        shared.expected.fetch_add(n * *copies, Ordering::AcqRel);
                    }
                }
            }
            if !c.dead {
                flush(c).map_err(|e| format!("write: {e}"))?;
                can_send |= window_open && c.pending() == 0;
            }
        }
        // Tell the main thread once nothing more will be published from here.
        if !stop_acknowledged && shared.stop_sending.load(Ordering::Acquire) {
            let drained = conns.iter().all(|c| !matches!(c.role, Role::Producer { .. }) || c.pending() == 0);
            if drained {
                stop_acknowledged = true;
                shared.stopped_threads.fetch_add(1, Ordering::AcqRel);
            }
        }
    }
    // A slow subscriber reads its backlog only slowly, so an ERROR or close from the broker may
    // still be queued behind it: read what is there now, without the budget, to find out.
    for c in conns.iter_mut().filter(|c| matches!(c.role, Role::Consumer { slow: true, .. }) && !c.dead) {
        c.budget = f64::MAX;
        r.service(c)?;
    }
    drop(r);
    for c in conns.iter_mut() {
        if let Role::Producer { pid, seq, .. } = c.role {
            tally.sent[pid as usize] = seq;
        }
    }
    Ok(tally)
}
