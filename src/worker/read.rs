//! Reading client input: the per-turn read list, reading through each connection's transport
//! (plain, web, or the admin port's HTTP), handing bytes to the session, and draining the
//! input of closing connections. Runs on the worker's thread.
//!
//! Invariant: a connection is read at most [`READS_PER_TURN`] times per turn, and not at all
//! while the bus backlog pauses reads or its own output is over `max_pending_bytes`.

use super::*;

impl Worker {
    pub(super) fn service_reads(&mut self) {
        if self.node.ctx.outbox.reads_paused() {
            return;
        }
        let list = std::mem::take(&mut self.node.ctx.turn.read_list);
        let mut again = Vec::new();
        for slot in list {
            // A bug must cost one connection, not the worker and everyone on it: a panic while
            // processing this connection's input closes it and is logged (embedded handlers are
            // also guarded individually, closer to the call).
            let more = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.read_conn(slot))) {
                Ok(more) => more,
                Err(_) => {
                    self.drop_after_panic(slot);
                    false
                }
            };
            self.node.run_local();
            if let Some(c) = self.node.conns.get_mut(slot as usize) {
                if more {
                    again.push(slot);
                } else {
                    c.sched.read = false;
                }
            }
        }
        again.append(&mut self.node.ctx.turn.read_list);
        self.node.ctx.turn.read_list = again;
    }

    /// Read and process input for one connection. Returns true if it must be visited again
    /// without waiting for a new readiness event (read budget used up, or reads paused).
    pub(super) fn read_conn(&mut self, slot: u32) -> bool {
        let mut reads = 0;
        // Whether `inbuf` may hold input not yet offered to the parser.
        let mut fresh = true;
        loop {
            let Some(conn) = self.node.conns.get_mut(slot as usize) else {
                return false;
            };
            if conn.is_closing() {
                return self.discard_input(slot);
            }
            if self.node.ctx.outbox.reads_paused() {
                return true;
            }
            if conn.phase == Phase::Authenticating || conn.held.is_some() {
                return false;
            }
            // A client that does not read what it asked for (receipts, errors) is not read either:
            // its own output stays bounded. `flush_conn` puts it back on the read list.
            if conn.pending_out() >= self.node.ctx.env.cfg.max_pending_bytes {
                conn.sched.parked = true;
                return false;
            }
            // 1. Parse what is buffered, if it can make progress.
            if fresh && conn.is_web() {
                fresh = false;
                if crate::conn::web::has_buffered(conn) {
                    crate::conn::web::pump(conn, &mut self.node.ctx);
                    self.node.run_local();
                }
                continue;
            }
            if fresh && conn.input_ready() {
                fresh = false;
                let mut buf = std::mem::take(&mut conn.inbuf);
                let used = session::process_input(conn, &buf, &mut self.node.ctx);
                if conn.is_closing() {
                    self.node.ctx.turn.pool.give(buf);
                } else {
                    buf.drain(..used);
                    if buf.is_empty() {
                        self.node.ctx.turn.pool.give(buf);
                    } else {
                        conn.inbuf = buf;
                    }
                }
                self.node.run_local();
                continue;
            }
            if conn.read == ReadSide::Eof {
                let reason = if conn.inbuf.is_empty() {
                    CloseReason::PeerClosed
                } else {
                    CloseReason::Io("connection closed in the middle of a frame".into())
                };
                self.finalize(slot, reason);
                return false;
            }
            if reads >= READS_PER_TURN {
                return true;
            }
            // Over max_memory, a frame already this large is not read further until the alarm
            // clears: a thousand half-sent bodies must not grow while publishers are paused.
            if self.node.ctx.mem.over()
                && conn.phase == Phase::Open
                && !conn.sched.peer_closed
                && conn.partial_bytes() >= session::PARTIAL_HOLD
            {
                session::hold_partial(conn, &mut self.node.ctx);
                return false;
            }
            reads += 1;
            // 2. Read more: straight into the partial frame's buffer, or into scratch.
            if conn.is_web() {
                match conn.io.read(&mut self.scratch) {
                    Ok(0) => conn.read = ReadSide::Eof,
                    Ok(n) => {
                        conn.beat.last_read = self.node.ctx.time.now;
                        // Counted against max_memory at once, as plain connections' partial input
                        // is (its SENDs are counted again when parsed: the safe side, until the
                        // next recount).
                        self.node.ctx.mem.sent += n as u64;
                        crate::conn::web::ingest(conn, &self.scratch[..n], &mut self.node.ctx);
                        self.node.run_local();
                    }
                    Err(e) => {
                        if let Some(more) = self.read_error(slot, e) {
                            return more;
                        }
                    }
                }
                continue;
            }
            // Before CONNECT succeeds, a socket gets at most the pre-auth budget per read (and
            // the session refuses a CONNECT larger than it), so nobody unauthenticated makes
            // the broker buffer more.
            // Over max_memory, reads are small too: a connection is let grow by at most
            // PARTIAL_HOLD plus one such read before it is held.
            let cap = if conn.phase == Phase::Handshake {
                session::PRE_AUTH_BUDGET
            } else if self.node.ctx.mem.over() {
                session::PARTIAL_HOLD
            } else {
                self.scratch.len()
            };
            if !conn.inbuf.is_empty() {
                let want = conn.need.saturating_sub(conn.inbuf.len()).clamp(READ_CHUNK, 16 * READ_CHUNK).min(cap);
                let len = conn.inbuf.len();
                conn.inbuf.resize(len + want, 0);
                let r = conn.io.read(&mut conn.inbuf[len..]);
                conn.inbuf.truncate(len + *r.as_ref().unwrap_or(&0));
                match r {
                    Ok(0) => conn.read = ReadSide::Eof,
                    Ok(n) => {
                        conn.beat.last_read = self.node.ctx.time.now;
                        // Partial input counts against max_memory at once, not only at the
                        // next recount (a thousand large frames arrive faster than that).
                        self.node.ctx.mem.sent += n as u64;
                        fresh = true;
                    }
                    Err(e) => {
                        if let Some(more) = self.read_error(slot, e) {
                            return more;
                        }
                    }
                }
                continue;
            }
            match conn.io.read(&mut self.scratch[..cap]) {
                Ok(0) => conn.read = ReadSide::Eof,
                Ok(n) => {
                    conn.beat.last_read = self.node.ctx.time.now;
                    if conn.who.listener == ListenerKind::Admin && conn.phase == Phase::Handshake && looks_like_http(&self.scratch[..n]) {
                        // The admin port also answers HTTP GET (metrics, console JSON).
                        conn.web = Some(Box::default());
                        crate::conn::web::ingest(conn, &self.scratch[..n], &mut self.node.ctx);
                        self.node.run_local();
                        continue;
                    }
                    let used = session::process_input(conn, &self.scratch[..n], &mut self.node.ctx);
                    if !conn.is_closing() && used < n {
                        self.node.ctx.mem.sent += (n - used) as u64;
                        let mut b = self.node.ctx.turn.pool.take();
                        b.extend_from_slice(&self.scratch[used..n]);
                        conn.inbuf = b;
                    }
                    self.node.run_local();
                }
                Err(e) => {
                    if let Some(more) = self.read_error(slot, e) {
                        return more;
                    }
                }
            }
        }
    }

    /// Handle a read error. `Some(more)` ends the read loop; `None` retries.
    pub(super) fn read_error(&mut self, slot: u32, e: io::Error) -> Option<bool> {
        match e.kind() {
            io::ErrorKind::WouldBlock => Some(false),
            io::ErrorKind::Interrupted => None,
            _ => {
                self.finalize(slot, CloseReason::Io(e.to_string()));
                Some(false)
            }
        }
    }

    /// A closing connection: read and drop input until EOF (then finish the close) or would-block.
    pub(super) fn discard_input(&mut self, slot: u32) -> bool {
        for _ in 0..READS_PER_TURN {
            let Some(conn) = self.node.conns.get_mut(slot as usize) else {
                return false;
            };
            match conn.io.read(&mut self.scratch) {
                Ok(0) => {
                    conn.read = ReadSide::Eof;
                    if conn.out.is_empty() || conn.write == WriteSide::Shut {
                        let r = conn.close_reason.clone().unwrap_or(CloseReason::PeerClosed);
                        self.finalize(slot, r);
                    }
                    return false;
                }
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                Err(_) => {
                    let r = conn.close_reason.clone().unwrap_or(CloseReason::PeerClosed);
                    self.finalize(slot, r);
                    return false;
                }
            }
        }
        true
    }
}
