//! Accepting connections: the `max_connections` gate (with hysteresis), accept errors backed
//! off, registration of a new connection's transport. Runs on the worker's thread.

use super::*;

impl Worker {
    pub(super) fn accept(&mut self, li: usize) {
        if self.accept_paused || self.stopping_until.is_some() {
            return;
        }
        let max = self.node.ctx.env.cfg.max_connections;
        loop {
            if self.shared.connections.load(Ordering::Acquire) >= max {
                if !self.accept_paused {
                    log::warn!("worker {}: max_connections ({max}) reached; accepting paused", self.node.ctx.worker);
                }
                self.accept_paused = true;
                return;
            }
            let Some(l) = self.listeners.get(li) else {
                return;
            };
            let port = self.kinds.get(li).copied().unwrap_or(Port { kind: ListenerKind::Stomp, tls: false });
            match l.accept() {
                Ok((sock, peer)) => self.add_conn(sock, peer, port),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::ConnectionAborted => continue,
                Err(e) => {
                    // EMFILE/ENFILE and friends: back off instead of spinning on a full backlog.
                    log::warn!("worker {}: accept failed: {e}; retrying in 100 ms", self.node.ctx.worker);
                    self.accept_paused = true;
                    self.accept_retry_at = Some(self.node.ctx.time.now + Duration::from_millis(100));
                    return;
                }
            }
        }
    }

    pub(super) fn add_conn(&mut self, sock: mio::net::TcpStream, peer: std::net::SocketAddr, port: Port) {
        let _ = sock.set_nodelay(true);
        let kind = port.kind;
        let mut io = match (&self.node.ctx.env.tls, port.tls) {
            (_, false) => crate::conn::Transport::Tcp(sock),
            (Some(cfg), true) => match crate::conn::Transport::tls_server(sock, cfg.clone()) {
                Ok(t) => t,
                Err(e) => {
                    log::warn!("worker {}: cannot start TLS for {peer}: {e}", self.node.ctx.worker);
                    return;
                }
            },
            (None, true) => {
                log::error!("worker {}: a TLS port without a TLS configuration; closing {peer}", self.node.ctx.worker);
                return;
            }
        };
        self.next_gen = self.next_gen.wrapping_add(1);
        let gen = self.next_gen;
        let entry = self.node.conns.vacant_entry();
        let slot = entry.key() as u32;
        if let Err(e) = io.register(self.poll.registry(), conn_token(slot, gen)) {
            log::warn!("worker {}: cannot register a connection from {peer}: {e}", self.node.ctx.worker);
            return;
        }
        let me = ConnRef { worker: self.node.ctx.worker as u16, slot, gen };
        let mut conn = Conn::new(io, me, peer, self.node.ctx.time.now);
        conn.who.listener = kind;
        if kind == ListenerKind::Web {
            conn.web = Some(Box::default());
        }
        entry.insert(conn);
        self.shared.connections.fetch_add(1, Ordering::AcqRel);
        self.node.ctx.stats.accepted += 1;
        let at = self.node.ctx.time.now + Duration::from_millis(self.node.ctx.env.cfg.connect_timeout);
        self.node.ctx.time.timers.arm(Timer { at, slot, gen, kind: TimerKind::Connect });
        log::debug!("{}-{}-{} {peer}: accepted", self.node.ctx.worker, slot, gen);
    }

    pub(super) fn maybe_resume_accept(&mut self) {
        if !self.accept_paused || self.stopping_until.is_some() {
            return;
        }
        if self.accept_retry_at.is_some_and(|t| self.node.ctx.time.now < t) {
            return;
        }
        let max = self.node.ctx.env.cfg.max_connections;
        // Hysteresis: resume below 90% of the limit.
        if self.shared.connections.load(Ordering::Acquire) * 10 < max * 9 || self.accept_retry_at.is_some() {
            self.accept_paused = false;
            self.accept_retry_at = None;
            for i in 0..self.listeners.len() {
                self.accept(i);
            }
        }
    }
}
