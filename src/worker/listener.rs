//! SO_REUSEPORT listeners: one per worker per port, all on the same port, so the kernel spreads
//! new connections across workers without a shared accept lock.
//!
//! Called on the starting thread before the workers run. For port 0 the first bind picks the
//! port and every other worker binds the port it got (design.md, section 7).

use mio::net::TcpListener;
use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;

/// Accept backlog of each listener.
pub const BACKLOG: i32 = 1024;

/// Bind one non-blocking listener with SO_REUSEADDR and SO_REUSEPORT.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    Ok(TcpListener::from_std(sock.into()))
}

/// Bind `workers` listeners on each of `ports`. Returns, per worker, its listeners, and the
/// addresses actually bound (one per port).
pub fn bind_all(ip: std::net::IpAddr, ports: &[u16], workers: usize) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    for &port in ports {
        let first = bind(SocketAddr::new(ip, port))?;
        let actual = first.local_addr()?;
        per_worker[0].push(first);
        for l in per_worker.iter_mut().skip(1) {
            l.push(bind(actual)?);
        }
        addrs.push(actual);
    }
    Ok((per_worker, addrs))
}
