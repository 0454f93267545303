//! Starting and stopping a broker: the library entry point.
//!
//! [`Server::start`] binds every listener, starts the workers and the auth thread, and returns a
//! [`ServerHandle`]. Several servers can run in one process: nothing here is global.

use crate::auth::{spawn_auth_thread, AuthError, Authenticator};
use crate::broker::shard::Shard;
use crate::bus::{self, Outbox};
use crate::config::{Config, ConfigError};
use crate::conn::Ctx;
use crate::worker::{listener, Shared, Worker};
use mio::{Poll, Token, Waker};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("cannot listen on {addr} (key `bind_address`/`ports`): {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("cannot start a thread or poller: {0}")]
    Io(#[from] std::io::Error),
}

/// A running broker.
pub struct ServerHandle {
    addrs: Vec<SocketAddr>,
    shared: Arc<Shared>,
    peers: Vec<bus::Peer>,
    workers: Vec<JoinHandle<()>>,
    auth: Option<JoinHandle<()>>,
}

/// Builds and starts brokers.
pub struct Server;

impl Server {
    /// Validate `cfg`, bind, start the workers. Returns once every listener is bound, so clients
    /// may connect as soon as this returns.
    pub fn start(cfg: Config) -> Result<ServerHandle, StartError> {
        cfg.validate("configuration")?;
        let cfg = Arc::new(cfg);
        let n = cfg.worker_count();
        let authn = Arc::new(Authenticator::new(cfg.login.as_deref(), cfg.passcode.as_deref(), cfg.user_file.as_deref())?);
        let ip: IpAddr = cfg.bind_address.parse().map_err(|_| ConfigError::Invalid {
            file: "configuration".into(),
            key: "bind_address",
            message: "not an IP address".into(),
        })?;
        let (listeners, addrs) =
            listener::bind_all(ip, &cfg.ports, n).map_err(|source| StartError::Bind { addr: format!("{ip}:{:?}", cfg.ports), source })?;

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
        let (auth_tx, auth_thread) = spawn_auth_thread(peers.clone())?;
        let shared = Arc::new(Shared { stop: AtomicBool::new(false), connections: AtomicUsize::new(0) });
        let cores = if cfg.pin_workers { core_affinity::get_core_ids().unwrap_or_default() } else { Vec::new() };

        let mut workers = Vec::new();
        for (i, ((poll, ls), mailbox)) in polls.into_iter().zip(listeners).zip(mailboxes).enumerate() {
            let outbox = Outbox::new(i, peers.clone(), cfg.bus_capacity);
            let ctx = Ctx::new(i, cfg.clone(), outbox, authn.clone(), auth_tx.clone());
            let shard = Shard::new(&cfg, n);
            let worker = Worker::new(poll, ls, ctx, shard, mailbox, shared.clone())?;
            let core = if cores.is_empty() { None } else { Some(cores[i % cores.len()]) };
            let h = std::thread::Builder::new().name(format!("romp-w{i}")).spawn(move || {
                if let Some(c) = core {
                    if !core_affinity::set_for_current(c) {
                        log::warn!("worker {i}: could not pin to core {}; running unpinned", c.id);
                    }
                }
                worker.run();
            })?;
            workers.push(h);
        }
        drop(auth_tx);
        log::info!("romp {} listening on {:?} with {n} workers", env!("CARGO_PKG_VERSION"), addrs);
        Ok(ServerHandle { addrs, shared, peers, workers, auth: Some(auth_thread) })
    }
}

impl ServerHandle {
    /// The STOMP addresses actually bound (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
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

    /// Wait for every worker to finish.
    pub fn join(mut self) {
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        // Workers hold the auth queue's senders; with them gone the auth thread ends.
        self.peers.clear();
        if let Some(a) = self.auth.take() {
            let _ = a.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.shutdown();
            for h in self.workers.drain(..) {
                let _ = h.join();
            }
        }
    }
}
