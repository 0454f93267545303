//! The transport seam: the byte stream under a connection. Every read, write, half-close and
//! poll registration of a client connection, and of an upstream link's connection to its edge,
//! goes through [`Transport`]; neither the worker nor the link touches a socket itself.
//!
//! Variants are byte streams: [`Transport::Tcp`] (a socket in the worker's `Poll`) and
//! [`Transport::Detached`] (no socket: the caller hands input in and takes output out, as
//! `romp::sim` does). TLS comes in as a third variant wrapping the socket with rustls' sans-io
//! connection (read = decrypt into the caller's buffer, write = encrypt), so nothing above this
//! file changes. *Framing* (plain STOMP, HTTP, WebSocket) sits on top, in `conn::web`, because
//! it combines with every stream: WebSocket over TLS is the web framing over a TLS transport,
//! not a fourth kind of stream.
//!
//! A leaf of the layering (it knows only mio), so connections and links can both use it.
//!
//! Runs on the worker that owns the connection. Invariant: `Detached` never blocks and never
//! loses bytes: reads report would-block, writes report would-block, so output stays in the
//! connection's own (bounded) output buffer for the caller to take.

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::Shutdown;

/// The byte stream under one connection.
#[derive(Debug)]
pub enum Transport {
    /// A non-blocking TCP socket registered with the worker's `Poll`.
    Tcp(TcpStream),
    /// No socket: input is handed in and output taken out by the caller (`romp::sim`).
    Detached,
}

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

impl Transport {
    /// Read what is available into `buf`: `Ok(0)` is end of stream.
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.read(buf),
            Transport::Detached => Err(would_block()),
        }
    }

    /// Write some of `buf`; how much was taken.
    #[inline]
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Detached => Err(would_block()),
        }
    }

    /// Shut the write side (the peer reads EOF once it has everything before it).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
            Transport::Detached => Ok(()),
        }
    }

    /// Whether a connect started with [`Transport::connect`] has completed: `Ok(false)` while in
    /// progress, the error if it failed.
    pub fn connected(&self) -> io::Result<bool> {
        match self {
            Transport::Tcp(s) => match s.take_error()? {
                Some(e) => Err(e),
                None => Ok(s.peer_addr().is_ok()),
            },
            Transport::Detached => Ok(true),
        }
    }

    /// Start a non-blocking TCP connect (completion is signalled by writability; then check
    /// [`Transport::connected`]).
    pub fn connect(addr: std::net::SocketAddr) -> io::Result<Transport> {
        let s = TcpStream::connect(addr)?;
        let _ = s.set_nodelay(true);
        Ok(Transport::Tcp(s))
    }

    /// Watch the stream for readiness under `token`.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => registry.register(s, token, Interest::READABLE | Interest::WRITABLE),
            Transport::Detached => Ok(()),
        }
    }

    /// Stop watching it (before it is dropped).
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => registry.deregister(s),
            Transport::Detached => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detached_stream_never_blocks_and_takes_nothing() {
        let mut t = Transport::Detached;
        assert_eq!(t.read(&mut [0u8; 8]).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert_eq!(t.write(b"abc").unwrap_err().kind(), io::ErrorKind::WouldBlock);
        assert!(t.shutdown_write().is_ok());
    }

    #[test]
    fn tcp_reads_writes_and_half_closes() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (server, _) = l.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        let mut t = Transport::Tcp(TcpStream::from_std(server));
        assert_eq!(t.write(b"hello").unwrap(), 5);
        t.shutdown_write().unwrap();
        let mut got = String::new();
        client.read_to_string(&mut got).unwrap();
        assert_eq!(got, "hello");
        client.write_all(b"x").unwrap();
        client.shutdown(Shutdown::Write).unwrap();
        let mut buf = [0u8; 4];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut read = Vec::new();
        loop {
            match t.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => read.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(read, b"x");
    }
}
