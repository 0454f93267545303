//! A blocking STOMP connection over one `std::net::TcpStream`: the sans-io [`Session`] plus a
//! read buffer, for tests, examples and small tools. Every wait has a deadline.
//!
//! Frames that arrive while a call waits for something else (MESSAGEs while waiting for a
//! RECEIPT) are kept, in order, for the next [`Connection::recv`]. Heart-beats owed to the server
//! are written while waiting in [`Connection::recv`]; a server that stays silent past twice its
//! promised interval is reported as [`ClientError::Timeout`].
//!
//! Bounds: the kept frames are limited only by what the caller subscribed to; the read buffer
//! holds at most one frame beyond [`Connection::limits`] (a larger one is a parse error).

use super::read::{read, Decoded, OwnedFrame};
use super::session::{Event, Options, Session, State};
use super::ClientError;
use crate::stomp::{AckMode, Command, Limits, Version};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read as _, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long [`Connection::connect`] and receipt waits take at most.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// A connected client.
pub struct Connection {
    sock: TcpStream,
    session: Session,
    buf: Vec<u8>,
    pos: usize,
    scratch: Box<[u8]>,
    out: Vec<u8>,
    kept: VecDeque<OwnedFrame>,
    /// Frame limits for what the server sends.
    pub limits: Limits,
    /// Deadline of connect, receipt and disconnect waits.
    pub wait: Duration,
    last_write: Instant,
    last_read: Instant,
}

impl Connection {
    /// Connect, send CONNECT and wait for CONNECTED (an ERROR instead is [`ClientError::Server`]).
    pub fn connect(addr: impl ToSocketAddrs, options: Options) -> Result<Connection, ClientError> {
        let sock = TcpStream::connect(addr)?;
        Connection::over(sock, options)
    }

    /// Speak STOMP over an already connected stream.
    pub fn over(sock: TcpStream, options: Options) -> Result<Connection, ClientError> {
        sock.set_nodelay(true)?;
        let now = Instant::now();
        let mut c = Connection {
            sock,
            session: Session::new(options),
            buf: Vec::new(),
            pos: 0,
            scratch: vec![0; 64 * 1024].into_boxed_slice(),
            out: Vec::new(),
            kept: VecDeque::new(),
            limits: Limits { max_headers: 10_000, max_header_len: 1 << 20, max_body: 64 << 20 },
            wait: DEFAULT_WAIT,
            last_write: now,
            last_read: now,
        };
        c.session.connect(&mut c.out)?;
        c.flush()?;
        let deadline = Instant::now() + c.wait;
        loop {
            let f = c.next_wire(deadline, "CONNECTED")?;
            if f.command == Command::Connected {
                return Ok(c);
            }
            c.kept.push_back(f);
        }
    }

    pub fn session(&self) -> &Session {
        &self.session
    }
    pub fn version(&self) -> Version {
        self.session.version()
    }
    /// The stream, e.g. to set socket options or to shut it down in a test.
    pub fn stream(&self) -> &TcpStream {
        &self.sock
    }

    fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            self.sock.write_all(&self.out)?;
            self.out.clear();
            self.last_write = Instant::now();
        }
        Ok(())
    }

    pub fn send(&mut self, dest: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<(), ClientError> {
        self.session.send(&mut self.out, dest, body, headers)?;
        self.flush()
    }

    /// Write one frame (by `write`, given the headers with a fresh `receipt` added) and wait
    /// for its RECEIPT. A frame that cannot be encoded takes its receipt back with it.
    fn with_receipt(
        &mut self,
        headers: &[(&str, &str)],
        write: impl FnOnce(&mut Session, &mut Vec<u8>, &[(&str, &str)]) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let r = self.session.receipt();
        let mut h = headers.to_vec();
        h.push(("receipt", &r));
        if let Err(e) = write(&mut self.session, &mut self.out, &h) {
            self.session.cancel_receipt(&r);
            return Err(e);
        }
        self.flush()?;
        self.await_receipt(&r)
    }

    /// SEND with a receipt, and wait for it: the broker has taken the message.
    pub fn send_with_receipt(&mut self, dest: &str, body: &[u8], headers: &[(&str, &str)]) -> Result<(), ClientError> {
        self.with_receipt(headers, |s, out, h| s.send(out, dest, body, h))
    }

    /// SUBSCRIBE and wait for the receipt: the subscription is in place when this returns.
    pub fn subscribe(&mut self, id: &str, dest: &str, ack: AckMode) -> Result<(), ClientError> {
        self.subscribe_with(id, dest, ack, &[])
    }

    pub fn subscribe_with(&mut self, id: &str, dest: &str, ack: AckMode, headers: &[(&str, &str)]) -> Result<(), ClientError> {
        self.with_receipt(headers, |s, out, h| s.subscribe(out, id, dest, ack, h))
    }

    pub fn unsubscribe(&mut self, id: &str) -> Result<(), ClientError> {
        self.with_receipt(&[], |s, out, h| s.unsubscribe(out, id, h))
    }

    pub fn ack(&mut self, m: &OwnedFrame) -> Result<(), ClientError> {
        self.session.ack(&mut self.out, m.ack_ref(), &[])?;
        self.flush()
    }

    /// A fresh receipt id to put on a frame of one's own (to keep several receipts in flight);
    /// its RECEIPT then comes through [`Connection::recv`].
    pub fn receipt(&mut self) -> String {
        self.session.receipt()
    }

    /// ACK with extra headers (a `receipt`, whose RECEIPT then comes through [`Connection::recv`]).
    pub fn ack_with(&mut self, m: &OwnedFrame, headers: &[(&str, &str)]) -> Result<(), ClientError> {
        self.session.ack(&mut self.out, m.ack_ref(), headers)?;
        self.flush()
    }

    pub fn nack(&mut self, m: &OwnedFrame) -> Result<(), ClientError> {
        self.session.nack(&mut self.out, m.ack_ref(), &[])?;
        self.flush()
    }

    pub fn begin(&mut self, tx: &str) -> Result<(), ClientError> {
        self.session.begin(&mut self.out, tx, &[])?;
        self.flush()
    }

    /// COMMIT and wait for its receipt: the transaction's frames have been applied.
    pub fn commit(&mut self, tx: &str) -> Result<(), ClientError> {
        self.with_receipt(&[], |s, out, h| s.commit(out, tx, h))
    }

    pub fn abort(&mut self, tx: &str) -> Result<(), ClientError> {
        self.session.abort(&mut self.out, tx, &[])?;
        self.flush()
    }

    /// DISCONNECT, wait for its receipt, then for the server to close.
    pub fn disconnect(mut self) -> Result<(), ClientError> {
        let r = self.session.disconnect(&mut self.out)?;
        self.flush()?;
        self.await_receipt(&r)?;
        let _ = self.sock.shutdown(std::net::Shutdown::Write);
        Ok(())
    }

    fn await_receipt(&mut self, id: &str) -> Result<(), ClientError> {
        let deadline = Instant::now() + self.wait;
        loop {
            let f = self.next_wire(deadline, "RECEIPT")?;
            if f.command == Command::Receipt && f.header("receipt-id") == Some(id) {
                return Ok(());
            }
            self.kept.push_back(f);
        }
    }

    /// The next MESSAGE (or other frame) within `timeout`; `None` if nothing came.
    pub fn recv(&mut self, timeout: Duration) -> Result<Option<OwnedFrame>, ClientError> {
        if let Some(f) = self.kept.pop_front() {
            return Ok(Some(f));
        }
        match self.next_wire(Instant::now() + timeout, "MESSAGE") {
            Ok(f) => Ok(Some(f)),
            Err(ClientError::Timeout("MESSAGE")) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Read from the socket until a frame is complete or `deadline`.
    fn next_wire(&mut self, deadline: Instant, what: &'static str) -> Result<OwnedFrame, ClientError> {
        loop {
            if let Some(f) = self.parse_one()? {
                return Ok(f);
            }
            if self.session.state() == State::Closed {
                return Err(ClientError::Closed);
            }
            let now = Instant::now();
            let hb = self.session.connected().clone();
            if hb.send_every_ms > 0 && now.duration_since(self.last_write) >= Duration::from_millis(hb.send_every_ms as u64) {
                self.session.heart_beat(&mut self.out);
                self.flush()?;
            }
            if hb.expect_every_ms > 0 && now.duration_since(self.last_read) > Duration::from_millis(2 * hb.expect_every_ms as u64) {
                return Err(ClientError::Timeout("a heart-beat from the server"));
            }
            let left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return Err(ClientError::Timeout(what));
            }
            let mut cap = left;
            if hb.send_every_ms > 0 {
                cap = cap.min(Duration::from_millis(hb.send_every_ms as u64));
            }
            self.sock.set_read_timeout(Some(cap.max(Duration::from_millis(1))))?;
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            // Into a scratch buffer kept across calls: growing `buf` by 64 KiB of zeroes per
            // read would cost a fill (and often a reallocation) for every few bytes received.
            match self.sock.read(&mut self.scratch) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&self.scratch[..n]);
                    self.last_read = Instant::now();
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Err(ClientError::Closed),
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One frame from the buffer, through the session (so an ERROR becomes an error).
    fn parse_one(&mut self) -> Result<Option<OwnedFrame>, ClientError> {
        loop {
            match read(&self.buf[self.pos..], self.session.version(), &self.limits)? {
                Decoded::HeartBeats { bytes, .. } => self.pos += bytes,
                Decoded::Incomplete { .. } => return Ok(None),
                Decoded::Frame(f, used) => {
                    self.pos += used;
                    let owned = f.to_owned_frame();
                    return match self.session.on_frame(&f)? {
                        Event::Connected | Event::Message | Event::Receipt | Event::Disconnected => Ok(Some(owned)),
                    };
                }
            }
        }
    }
}
