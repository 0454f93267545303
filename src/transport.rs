//! The transport seam: the byte stream under a connection. Every read, write, half-close and
//! poll registration of a client connection, and of an upstream link's connection to its edge,
//! goes through [`Transport`]; neither the worker nor the link touches a socket itself.
//!
//! Variants are byte streams: [`Transport::Tcp`] (a socket in the worker's `Poll`),
//! [`Transport::Tls`] (the same socket under rustls' sans-io connection: read = decrypt into
//! the caller's buffer, write = encrypt; the handshake runs inside reads and writes) and
//! [`Transport::Detached`] (no socket: the caller hands input in and takes output out, as
//! `romp::sim` does). Nothing above this file knows which one it has. *Framing* (plain STOMP,
//! HTTP, WebSocket) sits on top, in `conn::web`, because it combines with every stream:
//! WebSocket over TLS is the web framing over a TLS transport, not a fourth kind of stream.
//!
//! A leaf of the layering (it knows only mio), so connections and links can both use it.
//!
//! Runs on the worker that owns the connection. Invariants: `Detached` never blocks and never
//! loses bytes: reads report would-block, writes report would-block, so output stays in the
//! connection's own (bounded) output buffer for the caller to take. `Tls` holds at most one
//! write's worth ([`TLS_CHUNK`] of plaintext, encrypted) beyond what the socket took: a write
//! while that is still queued reports would-block, so output waits in the connection's own
//! bounded buffer; received plaintext is handed out before more is read from the socket
//! (rustls bounds it at 16 KiB).

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use std::io::{self, Read, Write};
use std::net::Shutdown;

/// The byte stream under one connection.
#[derive(Debug)]
pub enum Transport {
    /// A non-blocking TCP socket registered with the worker's `Poll`.
    Tcp(TcpStream),
    /// TLS over a non-blocking TCP socket (server side for clients, client side for links).
    Tls(Box<TlsStream>),
    /// No socket: input is handed in and output taken out by the caller (`romp::sim`).
    Detached,
}

/// Plaintext bytes one write hands to rustls at most.
pub const TLS_CHUNK: usize = 64 * 1024;

/// A TLS connection and its socket.
#[derive(Debug)]
pub struct TlsStream {
    sock: TcpStream,
    tls: rustls::Connection,
}

impl TlsStream {
    /// Write what rustls has queued for the socket; would-block if the socket is full.
    fn flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            match self.tls.write_tls(&mut self.sock) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n), // 0: the peer's close_notify
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The socket ended without close_notify: an end of stream all the same (the
                // session above decides whether it was in the middle of a frame).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.tls.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
            if let Err(e) = self.tls.process_new_packets() {
                // Tell the peer why (rustls queued an alert), then fail the stream.
                let _ = self.flush();
                return Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")));
            }
            // Handshake messages to send back go out now (or when the socket is writable).
            match self.flush() {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.flush()?;
        let n = self.tls.writer().write(&buf[..buf.len().min(TLS_CHUNK)])?;
        match self.flush() {
            Ok(()) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(n),
            Err(e) => Err(e),
        }
    }
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
            Transport::Tls(t) => t.read(buf),
            Transport::Detached => Err(would_block()),
        }
    }

    /// Write some of `buf`; how much was taken.
    #[inline]
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Transport::Tcp(s) => s.write(buf),
            Transport::Tls(t) => t.write(buf),
            Transport::Detached => Err(would_block()),
        }
    }

    /// Write out what the transport itself holds (TLS records not yet taken by the socket), as
    /// far as the socket takes it now; the rest goes on the next writable event (it stays
    /// counted in [`Transport::pending`]). Only a real failure is an error.
    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Tls(t) => match t.flush() {
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => Ok(()),
                r => r,
            },
            _ => Ok(()),
        }
    }

    /// Bytes the transport holds for the socket (an upper bound: TLS counts a whole chunk
    /// while anything is queued).
    pub fn pending(&self) -> usize {
        match self {
            Transport::Tls(t) if t.tls.wants_write() => TLS_CHUNK,
            _ => 0,
        }
    }

    /// Wrap an accepted socket in a server-side TLS connection.
    pub fn tls_server(sock: TcpStream, config: std::sync::Arc<rustls::ServerConfig>) -> io::Result<Transport> {
        let tls = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
        Ok(Transport::Tls(Box::new(TlsStream { sock, tls: tls.into() })))
    }

    /// A client-side TLS connection to `name` over a connected socket (the handshake starts
    /// with the first write or flush).
    pub fn tls_client(
        sock: TcpStream,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Transport> {
        let tls = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        Ok(Transport::Tls(Box::new(TlsStream { sock, tls: tls.into() })))
    }

    /// Start a non-blocking TCP connect and a client-side TLS handshake to `name` over it.
    pub fn connect_tls(
        addr: std::net::SocketAddr,
        config: std::sync::Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    ) -> io::Result<Transport> {
        match Transport::connect(addr)? {
            Transport::Tcp(sock) => Transport::tls_client(sock, config, name),
            other => Ok(other),
        }
    }

    /// Whether this is a TLS stream.
    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }

    /// The peer's certificate (the first of its chain, DER), once a TLS handshake has
    /// verified one.
    pub fn peer_certificate(&self) -> Option<&[u8]> {
        match self {
            Transport::Tls(t) if !t.tls.is_handshaking() => t.tls.peer_certificates()?.first().map(|c| c.as_ref()),
            _ => None,
        }
    }

    /// Shut the write side (the peer reads EOF once it has everything before it).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => s.shutdown(Shutdown::Write),
            Transport::Tls(t) => {
                t.tls.send_close_notify();
                let _ = t.flush();
                t.sock.shutdown(Shutdown::Write)
            }
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
            Transport::Tls(t) => match t.sock.take_error()? {
                Some(e) => Err(e),
                None => Ok(t.sock.peer_addr().is_ok()),
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
            Transport::Tls(t) => registry.register(&mut t.sock, token, Interest::READABLE | Interest::WRITABLE),
            Transport::Detached => Ok(()),
        }
    }

    /// Stop watching it (before it is dropped).
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Transport::Tcp(s) => registry.deregister(s),
            Transport::Tls(t) => registry.deregister(&mut t.sock),
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
