//! `--null-broker`: a minimal STOMP forwarder inside the tool, to measure the tool's own
//! ceiling on this machine. One thread, one mio loop: CONNECT gets CONNECTED, SUBSCRIBE is
//! recorded (RECEIPT if asked), SEND becomes MESSAGE for one subscriber round-robin
//! (`/queue/...`) or for every subscriber (anything else); ACKs are ignored, nothing is stored,
//! nothing is checked. It is not a broker: a SEND with no subscriber is dropped.
//!
//! Bounds: a connection whose unsent output passes 64 MiB is closed.

use crate::Opts;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use romp::stomp::{parse, skip_eols, Command, Limits, Parsed, Version};
use slab::Slab;
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};

const LISTENER: Token = Token(usize::MAX);
const OUT_MAX: usize = 64 << 20;

struct NConn {
    sock: TcpStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    dead: bool,
}

#[derive(Default)]
struct Subs {
    list: Vec<(usize, String)>,
    next: usize,
}

pub fn run(o: &Opts) -> Result<(), String> {
    let addr: std::net::SocketAddr = format!("{}:{}", o.host, o.port).parse().map_err(|e| format!("--host/--port: {e}"))?;
    let mut listener = TcpListener::bind(addr).map_err(|e| format!("bind {addr}: {e}"))?;
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).map_err(|e| e.to_string())?;
    eprintln!("romp-bench: null broker on {}", listener.local_addr().map_err(|e| e.to_string())?);
    let mut conns: Slab<NConn> = Slab::new();
    let mut subs: HashMap<String, Subs> = HashMap::new();
    let limits = Limits { max_headers: 1000, max_header_len: 1 << 16, max_body: 64 << 20 };
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 256 * 1024];
    let mut dirty: Vec<usize> = Vec::new();
    let mut next_id: u64 = 0;
    loop {
        poll.poll(&mut events, None).map_err(|e| e.to_string())?;
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut sock, _)) = listener.accept() {
                    let _ = sock.set_nodelay(true);
                    let e = conns.vacant_entry();
                    let key = e.key();
                    if poll.registry().register(&mut sock, Token(key), Interest::READABLE | Interest::WRITABLE).is_ok() {
                        e.insert(NConn { sock, rbuf: Vec::new(), wbuf: Vec::new(), dead: false });
                    }
                }
                continue;
            }
            let key = ev.token().0;
            if ev.is_writable() {
                dirty.push(key);
            }
            let Some(c) = conns.get_mut(key) else { continue };
            loop {
                match c.sock.read(&mut scratch) {
                    Ok(0) => {
                        c.dead = true;
                        break;
                    }
                    Ok(n) => c.rbuf.extend_from_slice(&scratch[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        c.dead = true;
                        break;
                    }
                }
            }
            let rbuf = std::mem::take(&mut c.rbuf);
            let mut pos = 0;
            loop {
                pos += skip_eols(&rbuf[pos..]);
                if pos >= rbuf.len() {
                    break;
                }
                let (f, used) = match parse(&rbuf[pos..], Version::V1_2, &limits) {
                    Ok(Parsed::Frame(f, used)) => (f, used),
                    Ok(Parsed::Incomplete { .. }) => break,
                    Err(_) => {
                        conns[key].dead = true;
                        break;
                    }
                };
                pos += used;
                match f.command {
                    Command::Connect | Command::Stomp => {
                        conns[key].wbuf.extend_from_slice(b"CONNECTED\nversion:1.2\nheart-beat:0,0\n\n\0");
                        dirty.push(key);
                    }
                    Command::Subscribe => {
                        let dest = f.header("destination").unwrap_or("").to_string();
                        let id = f.header("id").unwrap_or("0").to_string();
                        subs.entry(dest).or_default().list.push((key, id));
                        if let Some(r) = f.header("receipt") {
                            conns[key].wbuf.extend_from_slice(format!("RECEIPT\nreceipt-id:{r}\n\n\0").as_bytes());
                            dirty.push(key);
                        }
                    }
                    Command::Send => {
                        let dest = f.header("destination").unwrap_or("");
                        let Some(s) = subs.get_mut(dest) else { continue };
                        let targets = if dest.starts_with("/queue/") {
                            s.next = (s.next + 1) % s.list.len();
                            s.next..s.next + 1
                        } else {
                            0..s.list.len()
                        };
                        for i in targets {
                            let (k, id) = &s.list[i];
                            next_id += 1;
                            let Some(t) = conns.get_mut(*k) else { continue };
                            let w = &mut t.wbuf;
                            w.extend_from_slice(b"MESSAGE\nsubscription:");
                            w.extend_from_slice(id.as_bytes());
                            w.extend_from_slice(
                                format!("\nmessage-id:{next_id}\ndestination:{dest}\ncontent-length:{}\n\n", f.body.len()).as_bytes(),
                            );
                            w.extend_from_slice(f.body);
                            w.push(0);
                            if w.len() > OUT_MAX {
                                t.dead = true;
                            }
                            dirty.push(*k);
                        }
                    }
                    Command::Disconnect => conns[key].dead = true,
                    _ => {}
                }
            }
            if let Some(c) = conns.get_mut(key) {
                c.rbuf = rbuf[pos..].to_vec();
            }
        }
        dirty.sort_unstable();
        dirty.dedup();
        for key in dirty.drain(..) {
            let Some(c) = conns.get_mut(key) else { continue };
            while !c.wbuf.is_empty() && !c.dead {
                match c.sock.write(&c.wbuf) {
                    Ok(n) => {
                        c.wbuf.drain(..n);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => c.dead = true,
                }
            }
        }
        let gone: Vec<usize> = conns.iter().filter(|(_, c)| c.dead).map(|(k, _)| k).collect();
        for k in gone {
            let mut c = conns.remove(k);
            let _ = poll.registry().deregister(&mut c.sock);
            // Its slot will be reused: its subscriptions must not outlive it.
            for s in subs.values_mut() {
                s.list.retain(|(key, _)| *key != k);
            }
            subs.retain(|_, s| !s.list.is_empty());
        }
    }
}
