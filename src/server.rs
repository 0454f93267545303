//! Starting and stopping a broker: the library entry point.
//!
//! [`Server::start`] binds every listener, starts the workers and the auth thread, and returns a
//! [`ServerHandle`]. Several servers can run in one process: nothing here is global.

use crate::auth::{spawn_auth_thread, AuthError, Authenticator};
use crate::broker::shard::Shard;
use crate::bus::{self, Outbox, Shared};
use crate::config::{Config, ConfigError};
use crate::conn::Ctx;
use crate::worker::{listener, Worker};
use mio::{Poll, Token, Waker};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cannot listen on {addr} (key `{key}`): {source}")]
    Bind { addr: String, key: &'static str, source: std::io::Error },
    #[error("cannot start a thread or poller: {0}")]
    Io(#[from] std::io::Error),
    /// The data directory could not be opened or recovered (the error names the file and,
    /// for damage, the offset).
    #[error("data_dir: {0}")]
    Store(#[from] crate::journal::store::StoreError),
}

/// Why [`ServerHandle::publish`] could not hand a message over.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("the owner worker's channel is full; try again")]
    Busy,
    #[error("the server has stopped")]
    Stopped,
    #[error("destination names must be non-empty and free of control characters")]
    BadDestination,
    /// The destination refused the message (e.g. a full queue with `overflow = "reject"`).
    #[error("refused: {0}")]
    Refused(String),
    /// No verdict within the time given (the message may still be accepted).
    #[error("no answer from the destination's owner in time")]
    Timeout,
    /// The broker is over `max_memory` and publishers are paused; try again (or use
    /// [`ServerHandle::publish_and_wait`], which waits for the alarm to clear).
    #[error("the broker is over max_memory; publishing is paused")]
    MemoryAlarm,
}

/// A broker thread died and the server stopped because of it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the server stopped because {0}")]
pub struct ServerFailure(pub String);

/// A running broker.
pub struct ServerHandle {
    addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    web_addr: Option<SocketAddr>,
    web_tls_addr: Option<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    next_id: std::sync::atomic::AtomicU64,
    reloads: std::sync::atomic::AtomicU64,
    shared: Arc<Shared>,
    /// The configuration in force (for reloads; only the handle's owner touches it).
    cfg: std::sync::Mutex<Arc<Config>>,
    peers: Vec<bus::Peer>,
    /// The broker's threads, taken by the first [`ServerHandle::join`] (others wait for it).
    threads: std::sync::Mutex<Option<Threads>>,
    _lock: Option<std::fs::File>,
}

/// The threads a server runs: workers, the auth thread, and the durable log's sync threads
/// (they finish writing when the workers are gone).
struct Threads {
    workers: Vec<JoinHandle<()>>,
    auth: Option<JoinHandle<()>>,
    syncers: Vec<JoinHandle<Option<crate::journal::log::Log<crate::journal::fs::FsDisk>>>>,
}

/// Builds and starts brokers.
pub struct Server;

/// Configure a broker and its embedded handlers, then [`ServerBuilder::start`] it.
///
/// ```
/// use romp::api::{Flow, Reply, SendContext};
/// let mut cfg = romp::Config::default();
/// cfg.ports = vec![0];
/// cfg.web_port = 0;
/// cfg.admin_port = 0;
/// cfg.data_dir = String::new(); // memory only: no durable log
/// let server = romp::Server::builder()
///     .config(cfg)
///     .stomp_handler("/virt/ping", |send: &SendContext<'_>, reply: &mut Reply<'_>| {
///         let _ = reply.send("/virt/ping", &[("pong", "1")], send.body);
///         Flow::Handled
///     })
///     .http_handler("/hello", |_req: &romp::api::HttpContext<'_>| Some(romp::http::Response::text(200, "hello")))
///     .start()
///     .expect("start");
/// assert_eq!(server.local_addrs().len(), 1);
/// server.shutdown();
/// server.join().expect("the broker stopped cleanly");
/// ```
#[derive(Default)]
pub struct ServerBuilder {
    cfg: Config,
    handlers: crate::api::Handlers,
}

impl ServerBuilder {
    /// Use this configuration (default: [`Config::default`]).
    pub fn config(mut self, cfg: Config) -> Self {
        self.cfg = cfg;
        self
    }

    /// Load the configuration from a TOML file.
    pub fn config_file(mut self, path: &std::path::Path) -> Result<Self, ConfigError> {
        self.cfg = Config::load(path)?;
        Ok(self)
    }

    /// Handle SENDs whose destination starts with `prefix` (e.g. `/virt/ping`) on the worker that
    /// received them. Handlers run in registration order until one returns [`crate::api::Flow::Handled`].
    pub fn stomp_handler(mut self, prefix: &str, h: impl crate::api::StompHandler + 'static) -> Self {
        self.handlers.stomp.push((prefix.to_string(), Arc::new(h)));
        self
    }

    /// Answer GETs whose path starts with `prefix`, before static files.
    pub fn http_handler(mut self, prefix: &str, h: impl crate::api::HttpHandler + 'static) -> Self {
        self.handlers.http.push((prefix.to_string(), Arc::new(h)));
        self
    }

    /// See (and veto or rewrite) every client SEND before it reaches its destination.
    pub fn pre_publish(mut self, h: impl crate::api::PrePublish + 'static) -> Self {
        self.handlers.pre_publish = Some(Arc::new(h));
        self
    }

    pub fn start(self) -> Result<ServerHandle, StartError> {
        Server::start_with(self.cfg, self.handlers)
    }
}

impl Server {
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// Validate `cfg`, bind, start the workers. Returns once every listener is bound, so clients
    /// may connect as soon as this returns.
    pub fn start(cfg: Config) -> Result<ServerHandle, StartError> {
        Server::start_with(cfg, crate::api::Handlers::default())
    }

    fn start_with(cfg: Config, handlers: crate::api::Handlers) -> Result<ServerHandle, StartError> {
        cfg.validate("configuration")?;
        let handlers = Arc::new(handlers);
        let site = Arc::new(match &cfg.web_root {
            Some(dir) => crate::conn::web::Site::load(dir).map_err(|e| ConfigError::Invalid {
                file: "configuration".into(),
                key: "web_root",
                message: format!("{}: {e}", dir.display()),
            })?,
            None => crate::conn::web::Site::builtin(),
        });
        let cfg = Arc::new(cfg);
        let n = cfg.worker_count();
        let authn = Arc::new(
            Authenticator::new(cfg.login.as_deref(), cfg.passcode.as_deref(), cfg.user_file.as_deref())?
                .with_secret(cfg.secret.as_deref(), cfg.secret_timeout),
        );
        let ip: IpAddr = cfg.bind_address.parse().map_err(|_| ConfigError::Invalid {
            file: "configuration".into(),
            key: "bind_address",
            message: "not an IP address".into(),
        })?;
        let (mut listeners, addrs) = listener::bind_all(ip, &cfg.ports, n).map_err(|source| StartError::Bind {
            addr: cfg.ports.iter().map(|p| format!("{ip}:{p}")).collect::<Vec<_>>().join(", "),
            key: "ports",
            source,
        })?;
        use crate::conn::{ListenerKind, Port};
        let tls = cfg.tls_server("configuration")?;
        let mut kinds = vec![Port { kind: ListenerKind::Stomp, tls: false }; cfg.ports.len()];
        let mut bound = |ip: IpAddr, port: u16, key: &'static str, kind, listeners: &mut Vec<Vec<mio::net::TcpListener>>| {
            let (more, addr) =
                listener::bind_all(ip, &[port], n).map_err(|source| StartError::Bind { addr: format!("{ip}:{port}"), key, source })?;
            for (mine, w) in listeners.iter_mut().zip(more) {
                mine.extend(w);
            }
            kinds.push(kind);
            Ok::<SocketAddr, StartError>(addr[0])
        };
        let mut tls_addrs = Vec::new();
        for &p in &cfg.tls_ports {
            tls_addrs.push(bound(ip, p, "tls_ports", Port { kind: ListenerKind::Stomp, tls: true }, &mut listeners)?);
        }
        let web_addr = if cfg.enable_web {
            Some(bound(ip, cfg.web_port, "web_port", Port { kind: ListenerKind::Web, tls: false }, &mut listeners)?)
        } else {
            None
        };
        let web_tls_addr = match cfg.web_tls_port {
            Some(p) if cfg.enable_web => Some(bound(ip, p, "web_tls_port", Port { kind: ListenerKind::Web, tls: true }, &mut listeners)?),
            _ => None,
        };
        let admin_addr = if cfg.enable_admin {
            let aip: IpAddr = cfg.admin_bind_address.parse().map_err(|_| ConfigError::Invalid {
                file: "configuration".into(),
                key: "admin_bind_address",
                message: "not an IP address".into(),
            })?;
            Some(bound(aip, cfg.admin_port, "admin_port", Port { kind: ListenerKind::Admin, tls: cfg.admin_tls }, &mut listeners)?)
        } else {
            None
        };

        let mut polls = Vec::new();
        let mut peers = Vec::new();
        let mut mailboxes = Vec::new();
        for _ in 0..n {
            let poll = Poll::new()?;
            let waker = Arc::new(Waker::new(poll.registry(), Token(usize::MAX))?);
            let (peer, mailbox) = bus::channel(cfg.bus_capacity, waker);
            polls.push(poll);
            peers.push(peer);
            mailboxes.push(mailbox);
        }
        let memory_limit = cfg.memory_limit();
        if cfg.max_memory == 0 {
            let of = crate::memory::available().map_or("a fallback; the machine's memory could not be read".to_string(), |m| {
                format!("{}% of {} MiB", crate::memory::DEFAULT_SHARE_PCT, m >> 20)
            });
            log::info!("max_memory = {memory_limit} bytes ({} MiB, {of})", memory_limit >> 20);
        } else {
            log::info!("max_memory = {memory_limit} bytes ({} MiB)", memory_limit >> 20);
        }
        let shared = Arc::new(Shared::new(n, memory_limit));
        let store = if cfg.data_dir.is_empty() {
            log::warn!("data_dir = \"\": no durable log; every message is in memory only and a restart loses them");
            None
        } else {
            let dir = std::path::PathBuf::from(&cfg.data_dir);
            let opened = crate::journal::store::open(&dir, n, cfg.segment_size, cfg.repair, |d| {
                crate::broker::owner_of(crate::journal::payload::split_durable_key(d).map_or(d, |k| k.0), n)
            })?;
            let held: usize = opened.state.iter().flat_map(|s| s.destinations.values()).map(|m| m.len()).sum();
            log::info!(
                "durable log in {}: {held} messages recovered from {} records in {} ms (sync = {})",
                dir.display(),
                opened.records,
                opened.took.as_millis(),
                cfg.sync
            );
            for r in &opened.repairs {
                log::warn!("repair: {r}");
            }
            if cfg.repair {
                log::warn!("repair: {} damaged places skipped; the log now holds what was left", opened.repairs.len());
            }
            shared.id_floor.store(opened.max_counter, Ordering::Relaxed);
            shared.recovered.store(held as u64, Ordering::Relaxed);
            shared.recovery_ms.store(opened.took.as_millis() as u64, Ordering::Relaxed);
            Some((dir, opened))
        };
        let auth_peers = peers.clone();
        let (auth_tx, auth_thread) = spawn_auth_thread(
            move |conn, peer_ip, outcome| {
                let peer = &auth_peers[conn.worker as usize];
                // Blocking here is fine: the auth thread serves nobody else, and workers always
                // drain their ToWorker inbox.
                if peer.ctrl.send(bus::ToWorker::AuthDone { conn, peer: peer_ip, outcome }).is_err() {
                    return false;
                }
                peer.wake();
                true
            },
            {
                let (shared, peers) = (shared.clone(), peers.clone());
                move |reason| shared.fail(reason, &peers)
            },
            shared.auth_fault.clone(),
        )?;
        let policies = Arc::new(crate::broker::policy::Policies::new(&cfg, 1));
        let cores = if cfg.pin_workers { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };

        let mut workers = Vec::new();
        let (mut syncers, mut lock) = (Vec::new(), None);
        let mut journals: Vec<Option<(crate::broker::durable::Journal, crate::journal::replay::Replay)>> = (0..n).map(|_| None).collect();
        if let Some((dir, opened)) = store {
            let gauge = Arc::new(crate::broker::durable::DiskGauge::new(n));
            let limits = crate::broker::durable::DiskLimits { max_bytes: cfg.max_disk_bytes, min_free: cfg.min_free_disk };
            // The sync threads spin for their next job only if the workers leave a core free.
            let spare_core = std::thread::available_parallelism().map_or(1, |c| c.get()) > n;
            for (i, (log, state)) in opened.logs.into_iter().zip(opened.state).enumerate() {
                let (next, footprint) = (log.next_seq(), log.footprint());
                let peer = peers[i].clone();
                let (fail_shared, fail_peers) = (shared.clone(), peers.clone());
                let free_dir = dir.clone();
                let (tx, h) = crate::journal::syncer::spawn(
                    log,
                    cfg.sync_mode(),
                    spare_core,
                    move || crate::journal::syncer::free_bytes(&free_dir),
                    move |d| {
                        // Blocking is fine: this thread serves only this worker, which always
                        // drains its inbox.
                        if peer.ctrl.send(bus::ToWorker::Durable(d)).is_ok() {
                            peer.wake();
                        }
                    },
                    move |reason| fail_shared.fail(reason, &fail_peers),
                )?;
                syncers.push(h);
                journals[i] = Some((crate::broker::durable::Journal::new(tx, next, i, gauge.clone(), limits, footprint), state));
            }
            lock = Some(opened.lock);
        }
        for (i, ((poll, ls), mailbox)) in polls.into_iter().zip(listeners).zip(mailboxes).enumerate() {
            let outbox = Outbox::new(i, peers.clone(), cfg.bus_capacity);
            let ctx = Ctx::new(
                i,
                cfg.clone(),
                outbox,
                authn.clone(),
                auth_tx.clone(),
                handlers.clone(),
                site.clone(),
                policies.clone(),
                shared.clone(),
            );
            let shard = Shard::new(policies.clone(), n, i);
            let mut ctx = ctx;
            ctx.env.tls = tls.clone();
            let mut worker = Worker::new(poll, ls, kinds.clone(), ctx, shard, mailbox, shared.clone())?;
            if let Some((journal, state)) = journals[i].take() {
                worker.attach_journal(journal, state);
            }
            let core = if cores.is_empty() { None } else { Some(cores[i % cores.len()]) };
            let (sup_shared, sup_peers) = (shared.clone(), peers.clone());
            let h = std::thread::Builder::new().name(format!("romp-w{i}")).spawn(move || {
                if let Some(c) = core {
                    if !core_affinity::set_for_current(c) {
                        log::warn!("worker {i}: could not pin to core {}; running unpinned", c.id);
                    }
                }
                // A panic inside a connection's processing is caught closer to it and costs that
                // connection; one that reaches here (the loop itself, the bus, the shard) leaves
                // destinations without an owner, so the whole server stops.
                if let Err(p) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
                    sup_shared.fail(format!("worker {i} died: {}", bus::panic_text(&*p)), &sup_peers);
                }
            })?;
            workers.push(h);
        }
        drop(auth_tx);
        let plain = |a: &[SocketAddr]| a.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(", ");
        match web_addr {
            Some(w) => log::info!(
                "romp {} listening on {} (STOMP) and {w} (HTTP/WebSocket) with {n} workers",
                env!("CARGO_PKG_VERSION"),
                plain(&addrs)
            ),
            None => log::info!("romp {} listening on {} with {n} workers", env!("CARGO_PKG_VERSION"), plain(&addrs)),
        }
        if !tls_addrs.is_empty() {
            log::info!("STOMP over TLS on {}", plain(&tls_addrs));
        }
        if let Some(a) = web_tls_addr {
            log::info!("HTTPS/WSS on {a}");
        }
        if let Some(a) = admin_addr {
            log::info!("admin port on {a}{}", if cfg.admin_tls { " (TLS)" } else { "" });
        }
        Ok(ServerHandle {
            addrs,
            tls_addrs,
            web_addr,
            web_tls_addr,
            admin_addr,
            next_id: std::sync::atomic::AtomicU64::new(shared.id_floor.load(Ordering::Relaxed)),
            reloads: Default::default(),
            shared,
            cfg: std::sync::Mutex::new(cfg.clone()),
            peers,
            threads: std::sync::Mutex::new(Some(Threads { workers, auth: Some(auth_thread), syncers })),
            _lock: lock,
        })
    }
}

impl ServerHandle {
    /// The STOMP addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The web port's address (HTTP and WebSocket), if enabled.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// The STOMP-over-TLS listeners' addresses (`tls_ports`), in order.
    pub fn tls_addrs(&self) -> &[SocketAddr] {
        &self.tls_addrs
    }

    /// The web port's TLS twin (HTTPS and WSS), if configured.
    pub fn web_tls_addr(&self) -> Option<SocketAddr> {
        self.web_tls_addr
    }

    /// The admin port's address, if enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The memory gauge: what the broker counts against `max_memory`, the limit and the alarm.
    pub fn memory(&self) -> &crate::memory::Gauge {
        &self.shared.memory
    }

    /// A stop was requested (by [`ServerHandle::shutdown`] or an admin's `/virt/admin/shutdown`).
    pub fn stop_requested(&self) -> bool {
        self.shared.stop.load(Ordering::Acquire)
    }

    /// Publish a message from any thread, as if a client had sent it. Non-blocking: if the
    /// owning worker's channel is full the message is handed back as [`PublishError::Busy`],
    /// never dropped. `Ok` means handed to the destination's owner; a refusal there (a full
    /// queue with `overflow = "reject"`) is logged. While the broker is over `max_memory` the
    /// message is not taken: [`PublishError::MemoryAlarm`]. To learn the verdict, use
    /// [`ServerHandle::publish_and_wait`].
    pub fn publish(&self, destination: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<(), PublishError> {
        self.hand_over(destination, headers, body, crate::broker::Publisher::Broker)
    }

    /// Publish and wait up to `timeout` for the destination's verdict: `Ok` once it took the
    /// message, [`PublishError::Refused`] with the reason if it refused it (a full queue with
    /// `overflow = "reject"`, a full retained topic), [`PublishError::Timeout`] if no answer
    /// came in time (an `overflow = "block"` queue accepts, so this is an overloaded owner).
    /// While the broker is over `max_memory` it waits (within the same `timeout`) for the
    /// alarm to clear, then hands the message over; [`PublishError::MemoryAlarm`] if it did not.
    /// Blocks the calling thread: not for use inside a handler.
    pub fn publish_and_wait(
        &self,
        destination: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: std::time::Duration,
    ) -> Result<(), PublishError> {
        let deadline = std::time::Instant::now() + timeout;
        while self.shared.memory.alarm() {
            if std::time::Instant::now() >= deadline {
                return Err(PublishError::MemoryAlarm);
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.hand_over(destination, headers, body, crate::broker::Publisher::Waiting(tx))?;
        match rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(PublishError::Refused(reason)),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => Err(PublishError::Timeout),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(PublishError::Stopped),
        }
    }

    fn hand_over(
        &self,
        destination: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        from: crate::broker::Publisher,
    ) -> Result<(), PublishError> {
        if destination.is_empty() || destination.chars().any(char::is_control) {
            return Err(PublishError::BadDestination);
        }
        let n = self.peers.len();
        if n == 0 || self.shared.stop.load(Ordering::Acquire) {
            return Err(PublishError::Stopped);
        }
        if self.shared.memory.alarm() {
            return Err(PublishError::MemoryAlarm);
        }
        let id = crate::broker::message_id(crate::broker::OUTSIDE_ID_SPACE, self.next_id.fetch_add(1, Ordering::Relaxed) + 1);
        let headers = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let msg = Arc::new(crate::api::message(id, destination, headers, body.to_vec()));
        let owner = crate::broker::owner_of(destination, n);
        // Counted on the bus before it is sent (its arrival may be counted first otherwise).
        let weight = msg.weight();
        self.shared.memory.outside(weight, true);
        match self.peers[owner].data.try_send(bus::ToOwner::Publish { msg, from, receipt: None, create: true }) {
            Ok(()) => {
                self.peers[owner].wake();
                Ok(())
            }
            Err(e) => {
                self.shared.memory.outside(weight, false);
                match e {
                    crossbeam_channel::TrySendError::Full(_) => Err(PublishError::Busy),
                    crossbeam_channel::TrySendError::Disconnected(_) => Err(PublishError::Stopped),
                }
            }
        }
    }

    /// Apply a new configuration at run time (SIGHUP): limits, blocks, users, destinations and
    /// every other key not in [`crate::config::RESTART_KEYS`]; those keep their values and are
    /// reported. Admin `perms` changes are replaced by the file's destinations. Returns what
    /// changed; on an error (bad passwd file) nothing changes.
    pub fn reload(&self, new: Config) -> Result<crate::config::ReloadPlan, StartError> {
        new.validate("reload")?;
        let mut current = self.cfg.lock().unwrap_or_else(|e| e.into_inner());
        let plan = crate::config::plan_reload(&current, &new);
        let cfg = Arc::new(plan.config.clone());
        let auth = Arc::new(
            Authenticator::new(cfg.login.as_deref(), cfg.passcode.as_deref(), cfg.user_file.as_deref())?
                .with_secret(cfg.secret.as_deref(), cfg.secret_timeout),
        );
        // Reload generations live in the high bits; admin `perms` changes count in the low ones.
        let gen = (self.reloads.fetch_add(1, Ordering::AcqRel) + 2) << 32;
        let policies = Arc::new(crate::broker::policy::Policies::new(&cfg, gen));
        // New certificates for new connections; connections already open keep theirs.
        let tls = cfg.tls_server("reload")?;
        let rc = Arc::new(bus::Reconfig { cfg: cfg.clone(), policies, auth, tls });
        for p in &self.peers {
            let mut msg = bus::ToWorker::Reconfigure(rc.clone());
            loop {
                match p.ctrl.try_send(msg) {
                    Ok(()) => break,
                    Err(crossbeam_channel::TrySendError::Full(m)) => {
                        msg = m;
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    Err(crossbeam_channel::TrySendError::Disconnected(_)) => return Ok(plan),
                }
            }
            p.wake();
        }
        if let Some(level) = crate::config::log_level(&cfg.log_level) {
            log::set_max_level(level);
        }
        *current = cfg;
        Ok(plan)
    }

    /// Open client connections right now.
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::Acquire)
    }

    /// Ask every worker to stop: stop accepting, flush and close every connection. Returns at
    /// once; [`ServerHandle::join`] waits.
    pub fn shutdown(&self) {
        self.shared.stop.store(true, Ordering::Release);
        for p in &self.peers {
            // Bypass the notified flag: a stop must always wake.
            let _ = p.waker.wake();
        }
    }

    /// Wait for every broker thread to finish (after [`ServerHandle::shutdown`], or a failure).
    /// `Err` if a broker thread died (the server stopped because of it): the embedder or `main`
    /// should exit non-zero so a supervisor restarts it. Takes `&self`, so a handle shared
    /// (`Arc<ServerHandle>`) by threads that publish can be joined by any of them; a second
    /// caller waits for the first and gets the same answer.
    pub fn join(&self) -> Result<(), ServerFailure> {
        let mut guard = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut t) = guard.take() {
            for h in t.workers.drain(..) {
                let _ = h.join();
            }
            // Workers hold the auth queue's senders; with them gone the auth thread ends.
            if let Some(a) = t.auth.take() {
                let _ = a.join();
            }
            // The workers' journals are gone with them: each sync thread writes what it still
            // had and ends.
            for s in t.syncers.drain(..) {
                let _ = s.join();
            }
        }
        match self.shared.failure.get() {
            Some(reason) => Err(ServerFailure(reason.clone())),
            None => Ok(()),
        }
    }

    /// Why the server stopped on its own, if a broker thread died.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.get().cloned()
    }

    /// Fault injection for tests of supervision: make worker `w` panic in its loop (outside any
    /// connection), as a bug there would.
    #[doc(hidden)]
    pub fn inject_worker_panic(&self, w: usize) {
        if let Some(p) = self.peers.get(w) {
            let _ = p.ctrl.try_send(bus::ToWorker::InjectPanic);
            let _ = p.waker.wake();
        }
    }

    /// Fault injection for tests of supervision: the auth thread panics on its next job (the
    /// next login that needs a slow hash check), as a bug in a check would.
    #[doc(hidden)]
    pub fn inject_auth_panic(&self) {
        self.shared.auth_fault.store(true, Ordering::Relaxed);
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        let running = self.threads.get_mut().map(|t| t.is_some()).unwrap_or(true);
        if running {
            self.shutdown();
            let _ = self.join();
        }
    }
}
