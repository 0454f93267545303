//! `--tls CA --handshakes`: full TLS handshakes per second, each followed by CONNECT and its
//! CONNECTED (so the broker did the work of a real login), then a close. Session resumption
//! is off, so every handshake is a full one (key exchange and certificate signature). Runs
//! `--threads` blocking client threads for the run's duration.

use crate::Opts;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// One handshake, CONNECT and CONNECTED.
fn one(
    addr: SocketAddr,
    cfg: &Arc<rustls::ClientConfig>,
    name: &rustls::pki_types::ServerName<'static>,
    connect: &[u8],
) -> Result<(), String> {
    let sock = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    sock.set_nodelay(true).map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(cfg.clone(), name.clone()).map_err(|e| e.to_string())?;
    let mut s = rustls::StreamOwned::new(conn, sock);
    s.write_all(connect).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.contains(&0) {
        let n = s.read(&mut chunk).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("closed before CONNECTED".into());
        }
        got.extend_from_slice(&chunk[..n]);
    }
    if !got.starts_with(b"CONNECTED") {
        return Err(format!("got {:?}", String::from_utf8_lossy(&got)));
    }
    s.conn.send_close_notify();
    let _ = s.flush();
    Ok(())
}

pub fn run(o: &Opts, addr: SocketAddr) -> Result<(), String> {
    let Some(base) = &o.tls else { return Err("--handshakes needs --tls CA.pem".into()) };
    let mut cfg = (**base).clone();
    cfg.resumption = rustls::client::Resumption::disabled();
    let cfg = Arc::new(cfg);
    let name = rustls::pki_types::ServerName::try_from(o.host.clone()).map_err(|e| format!("--host as a TLS name: {e}"))?;
    let connect = crate::conn::connect_frame(o)?;
    let (done, errors, stop) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let start = Instant::now();
    let threads: Vec<_> = (0..o.threads.max(1))
        .map(|_| {
            let (cfg, name, connect, done, errors, stop) =
                (cfg.clone(), name.clone(), connect.clone(), done.clone(), errors.clone(), stop.clone());
            let warmup = o.warmup;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let ok = one(addr, &cfg, &name, &connect);
                    if start.elapsed() >= warmup {
                        match ok {
                            Ok(()) => done.fetch_add(1, Ordering::Relaxed),
                            Err(_) => errors.fetch_add(1, Ordering::Relaxed),
                        };
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(o.warmup + o.duration);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let secs = (start.elapsed() - o.warmup).as_secs_f64().max(1e-9);
    let (n, e) = (done.load(Ordering::Relaxed), errors.load(Ordering::Relaxed));
    let rate = n as f64 / secs;
    if o.json {
        println!("{{\"scenario\":\"full TLS handshakes with CONNECT\",\"seconds\":{secs:.3},\"handshakes\":{n},\"errors\":{e},\"rate\":{rate:.0}}}");
    } else {
        println!("scenario     full TLS handshake + CONNECT/CONNECTED + close, {} threads", o.threads.max(1));
        println!("rate         {rate:>12.0} handshakes/s ({n} in {secs:.1} s, {e} failed)");
    }
    if e > 0 && n == 0 {
        return Err("every handshake failed".into());
    }
    Ok(())
}
