//! Writing and closing: each dirty connection is written once per turn through its transport;
//! closing connections are released, half-closed, lingered and finally removed. Runs on the
//! worker's thread.
//!
//! Invariant: a connection leaves the slab only through `finalize`, which releases its session
//! (if not yet), deregisters it and counts its close reason once.

use super::*;

impl Worker {
    /// Write every dirty connection once; start or finish closes.
    pub(super) fn flush_all(&mut self) {
        let dirty = std::mem::take(&mut self.node.ctx.turn.dirty);
        for slot in dirty {
            self.flush_conn(slot);
        }
    }

    pub(super) fn flush_conn(&mut self, slot: u32) {
        let Some(conn) = self.node.conns.get_mut(slot as usize) else {
            return;
        };
        conn.sched.flush = false;
        if conn.is_closing() && !conn.session_torn_down() {
            session::teardown(conn, &mut self.node.ctx);
            conn.mark_torn_down();
        }
        crate::conn::web::frame_output(conn, self.node.ctx.env.cfg.websocket_text);
        let crate::conn::Conn { io, out, web, write, .. } = conn;
        let buf = match web.as_deref_mut() {
            Some(crate::conn::web::Web { mode: crate::conn::web::Mode::Ws { wire, .. }, .. }) => wire,
            _ => out,
        };
        if *write == WriteSide::Dead {
            buf.clear();
        }
        // What the transport itself holds (TLS records) goes first.
        let mut failed = io.flush().err();
        while failed.is_none() && !buf.is_empty() {
            match io.write(buf) {
                Ok(n) => {
                    buf.drain(..n);
                    conn.beat.last_write = self.node.ctx.time.now;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if let Some(e) = failed {
            if conn.is_closing() {
                let reason = conn.close_reason.clone().unwrap_or(CloseReason::Io(e.to_string()));
                self.finalize(slot, reason);
                return;
            }
            // The peer is gone for writing, but input it sent before may still be queued (the
            // kernel keeps it readable after a reset): stop writing, and keep reading and
            // processing until the read side ends (M4).
            log::debug!("{} {}: write failed ({e}); draining its input", conn.session_id(), conn.who.peer);
            conn.write = WriteSide::Dead;
            conn.out.clear();
            crate::conn::want_read(conn, &mut self.node.ctx);
        }
        if conn.out.is_empty() && conn.out.capacity() > 0 {
            self.node.ctx.turn.pool.give(std::mem::take(&mut conn.out));
        }
        deliver::release_owed_credit(conn, &mut self.node.ctx);
        if conn.sched.parked && conn.pending_out() < self.node.ctx.env.cfg.max_pending_bytes / 2 {
            conn.sched.parked = false;
            crate::conn::want_read(conn, &mut self.node.ctx);
        }
        if conn.is_closing() && conn.pending_out() == 0 {
            if conn.read == ReadSide::Eof {
                let r = conn.close_reason.clone().unwrap_or(CloseReason::PeerClosed);
                self.finalize(slot, r);
                return;
            }
            if conn.write != WriteSide::Shut {
                // L4: half-close so the client reads everything, then linger for its EOF.
                let _ = conn.io.shutdown_write();
                conn.write = WriteSide::Shut;
                let at = self.node.ctx.time.now + Duration::from_millis(self.node.ctx.env.cfg.linger);
                self.node.ctx.time.timers.arm(Timer { at, slot, gen: conn.me.gen, kind: TimerKind::Linger });
                crate::conn::want_read(conn, &mut self.node.ctx);
            }
        }
    }

    /// Remove a connection whose processing panicked, releasing what it can.
    pub(super) fn drop_after_panic(&mut self, slot: u32) {
        let Some(conn) = self.node.conns.get(slot as usize) else { return };
        log::error!("{} {}: internal error while processing this connection; closing it", conn.session_id(), conn.who.peer);
        let released = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Some(conn) = self.node.conns.get_mut(slot as usize) {
                if !conn.session_torn_down() {
                    session::teardown(conn, &mut self.node.ctx);
                    conn.mark_torn_down();
                }
            }
        }));
        if released.is_err() {
            log::error!("releasing the connection's subscriptions failed too");
        }
        self.finalize(slot, CloseReason::Internal);
    }

    /// Remove a connection now: release its session, deregister, drop the socket, log once.
    pub(super) fn finalize(&mut self, slot: u32, reason: CloseReason) {
        if !self.node.conns.contains(slot as usize) {
            return;
        }
        let mut conn = self.node.conns.remove(slot as usize);
        // What it held leaves the memory count at the next recount, due soon even if idle.
        self.node.ctx.mem.stale = true;
        if !conn.session_torn_down() {
            session::teardown(&mut conn, &mut self.node.ctx);
        }
        let _ = conn.io.deregister(self.poll.registry());
        let reason = conn.close_reason.clone().unwrap_or(reason);
        // A finished HTTP request (a health check, a scrape) is routine: DEBUG, not a line per probe.
        let level = if matches!(reason, CloseReason::HttpDone) { log::Level::Debug } else { log::Level::Info };
        if log::log_enabled!(level) {
            let login = conn.who.login.as_deref().map_or(String::new(), |l| format!(", login {l:?}"));
            log::log!(level, "{} {}: closed: {} [{}{login}]", conn.session_id(), conn.who.peer, reason, conn.transport_label());
        }
        self.node.ctx.turn.pool.give(std::mem::take(&mut conn.out));
        self.node.ctx.turn.pool.give(std::mem::take(&mut conn.inbuf));
        self.node.ctx.stats.closed += 1;
        self.node.ctx.stats.closed_by[reason.kind().index()] += 1;
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}
