//! Firing due timers: the worker's own (stats round, link ticks) and its connections'
//! (connect timeout, heart-beats both ways, linger). Runs on the worker's thread.

use super::*;

impl Worker {
    pub(super) fn fire_timers(&mut self) {
        let now = self.node.ctx.time.now;
        while let Some(fired) = self.node.ctx.time.timers.pop_due(now) {
            let t = match fired {
                Fired::Worker { what: WorkerTimer::Stats, .. } => {
                    self.node.start_stats();
                    let at = now + Duration::from_millis(self.node.ctx.env.cfg.stats_interval);
                    self.node.ctx.time.timers.arm_worker(at, WorkerTimer::Stats);
                    continue;
                }
                Fired::Worker { what: WorkerTimer::Link(i), at } => {
                    self.link_tick(i as usize, at);
                    continue;
                }
                Fired::Conn(t) => t,
            };
            let Some(conn) = self.node.conns.get_mut(t.slot as usize) else {
                continue;
            };
            if conn.me.gen != t.gen {
                continue;
            }
            match t.kind {
                TimerKind::Connect if conn.is_web() && !conn.web.as_ref().is_some_and(|w| w.is_ws() && t.at > conn.beat.last_read) => {
                    if matches!(conn.phase, Phase::Handshake | Phase::Authenticating) {
                        crate::conn::web::timed_out(conn, &mut self.node.ctx);
                    }
                }
                TimerKind::Connect => {
                    if matches!(conn.phase, Phase::Handshake | Phase::Authenticating) {
                        let ms = self.node.ctx.env.cfg.connect_timeout;
                        session::fail(
                            conn,
                            &mut self.node.ctx,
                            session::Fatal::new(ErrorWord::General, format!("no CONNECT within connect_timeout ({ms} ms)")),
                        );
                        conn.close_reason = Some(CloseReason::ConnectTimeout);
                    }
                }
                TimerKind::HeartBeatSend => {
                    if matches!(conn.phase, Phase::Open | Phase::Disconnecting) {
                        let every = Duration::from_millis(conn.beat.hb.server_send_ms as u64);
                        let next = if now.duration_since(conn.beat.last_write) >= every {
                            // Nothing written for a whole interval: send an EOL, unless output is
                            // already waiting (then the socket is full and a beat would not help).
                            if conn.out.is_empty() {
                                if conn.out.capacity() == 0 {
                                    conn.out = self.node.ctx.turn.pool.take();
                                }
                                conn.out.push(b'\n');
                                crate::conn::mark_dirty(conn, &mut self.node.ctx);
                            }
                            now + every
                        } else {
                            conn.beat.last_write + every
                        };
                        self.node.ctx.time.timers.arm(Timer { at: next, ..t });
                    }
                }
                TimerKind::HeartBeatRecv => {
                    if matches!(conn.phase, Phase::Open | Phase::Disconnecting) {
                        let grace = session::recv_grace(conn, &self.node.ctx);
                        if conn.reads_withheld() {
                            // The broker is not reading it (flow control, or its own output
                            // is full), so its silence says nothing. Look again later.
                            self.node.ctx.time.timers.arm(Timer { at: now + grace, ..t });
                        } else if now.duration_since(conn.beat.last_read) >= grace {
                            let ms = grace.as_millis();
                            session::fail(
                                conn,
                                &mut self.node.ctx,
                                session::Fatal::new(
                                    ErrorWord::EcgErr,
                                    format!("nothing received for {ms} ms although heart-beats were promised"),
                                ),
                            );
                            conn.close_reason = Some(CloseReason::HeartBeatTimeout);
                        } else {
                            self.node.ctx.time.timers.arm(Timer { at: conn.beat.last_read + grace, ..t });
                        }
                    }
                }
                TimerKind::Held => {
                    if let Some(h) = conn.held.clone() {
                        let ms = session::block_timeout(&self.node.ctx, &h.dest);
                        if ms > 0 && now.duration_since(h.since) >= Duration::from_millis(ms) {
                            let detail = match h.cause {
                                crate::conn::HoldCause::Queue => {
                                    format!("{} stayed over its limits for {ms} ms (block_timeout); the SEND was not accepted", h.dest)
                                }
                                crate::conn::HoldCause::Memory => {
                                    format!("the broker stayed over max_memory for {ms} ms (block_timeout); the SEND was not accepted")
                                }
                            };
                            let fatal =
                                session::Fatal { receipt: h.receipt.map(String::from), ..session::Fatal::new(ErrorWord::QFlup, detail) };
                            session::fail(conn, &mut self.node.ctx, fatal);
                        }
                    }
                }
                TimerKind::Linger => {
                    if conn.is_closing() {
                        let r = conn.close_reason.clone().unwrap_or(CloseReason::PeerClosed);
                        self.finalize(t.slot, r);
                    }
                }
            }
        }
    }
}
