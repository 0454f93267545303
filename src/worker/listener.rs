//! SO_REUSEPORT listeners: one per worker per port, all on the same port, so the kernel spreads
//! new connections across workers without a shared accept lock.
//!
//! Called on the starting thread before the workers run. For port 0 the first bind picks the
//! port and every other worker binds the port it got (design.md, section 7).
//!
//! SO_REUSEPORT would also let a *second romp process* (same user) bind a port the first one
//! serves, and the kernel would then split new connections between two brokers that do not
//! share destinations: a producer and its consumer could land in different processes and every
//! message would stay unseen. So a fixed port is first claimed with a plain, exclusive bind; if
//! anything listens there already, start fails with "address in use". The probe is released just
//! before the shared listeners bind (a start racing another in that microsecond window is the
//! one case not caught).

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

/// Fail with `AddrInUse` if anything already listens on `addr` (SO_REUSEPORT sockets of
/// another process included). SO_REUSEADDR keeps connections in TIME_WAIT from a previous run
/// from counting.
fn claim_exclusive(addr: SocketAddr) -> io::Result<()> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.bind(&addr.into())
}

/// Bind `workers` listeners on each of `ports`. Returns, per worker, its listeners, and the
/// addresses actually bound (one per port).
pub fn bind_all(ip: std::net::IpAddr, ports: &[u16], workers: usize) -> io::Result<(Vec<Vec<TcpListener>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<TcpListener>> = (0..workers).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    for &port in ports {
        if port != 0 {
            claim_exclusive(SocketAddr::new(ip, port))?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a second broker on a port another one serves must fail to start, not share
    /// the port through SO_REUSEPORT and take half of the new connections.
    #[test]
    fn a_port_already_served_is_refused() {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let (_first, addrs) = bind_all(ip, &[0], 2).unwrap();
        let port = addrs[0].port();
        let err = bind_all(ip, &[port], 2).expect_err("second bind on a served port");
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_port_freed_by_a_stopped_broker_can_be_bound_again() {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let (first, addrs) = bind_all(ip, &[0], 2).unwrap();
        let port = addrs[0].port();
        drop(first);
        let (_again, addrs) = bind_all(ip, &[port], 2).unwrap();
        assert_eq!(addrs[0].port(), port);
    }
}
