//! romp: a thread-per-core STOMP 1.0/1.1/1.2 message broker, usable as a library.
//!
//! ```no_run
//! let mut cfg = romp::config::Config::default();
//! // Any free ports, memory only, threads not pinned (the host program has its own).
//! (cfg.ports, cfg.web_port, cfg.admin_port) = (vec![0], 0, 0);
//! cfg.data_dir = String::new();
//! cfg.pin_workers = false;
//! let server = romp::Server::start(cfg).expect("start");
//! println!("STOMP on {:?}", server.local_addrs());
//! server.shutdown();
//! server.join().expect("the broker stopped cleanly");
//! ```
//!
//! # Layers
//!
//! Each top-level module may import only modules in a lower layer (or its own); the test
//! `tests/layers.rs` reads the sources and fails on an import against this order. Bottom up:
//!
//! 1. [`stomp`], [`http`], [`timer`]: sans-io leaves (wire formats, timer wheel);
//!    [`transport`]: the byte streams under connections and links; [`memory`]: the
//!    process-wide memory accounting and alarm; [`selector`]: JMS message selectors.
//! 2. [`ws`]: WebSocket framing and the upgrade handshake (on [`http`]); [`client`]: the
//!    public sans-io STOMP client and its blocking adapter (on [`stomp`]); [`journal`]: the
//!    durable log; [`tls`]: certificates, keys and the rustls configurations; [`acl`]: the
//!    access rules.
//! 3. [`config`]: the configuration and its validation.
//! 4. [`admin`]: the admin plane's vocabulary and parser (no connection, no bus).
//! 5. [`broker`]: messages, destinations, the shard one worker owns, and its mail
//!    (`broker::mail`: what owners are asked and answer, through an `Outlet`). No sockets.
//! 6. [`auth`]: users, credential checks and the auth thread.
//! 7. [`api`]: the embedder's hooks (SEND interceptors, HTTP handlers).
//! 8. [`metrics`]: per-worker counters, snapshots and their rendering.
//! 9. [`bus`]: inter-worker channels; implements the broker's `Outlet`.
//! 10. [`link`]: upstream links (a destination fed from another broker).
//! 11. [`conn`]: connections: STOMP sessions, WebSocket/HTTP, delivery, admin glue.
//! 12. [`worker`]: the mio loops.
//! 13. [`server`], [`sim`]: start and stop; the deterministic simulation harness.
//!
//! See docs/architecture.md.

/// The declared layers, bottom up (read by `tests/layers.rs`; keep in step with the list above).
pub const LAYERS: &[&[&str]] = &[
    &["stomp", "http", "timer", "transport", "memory", "rng", "selector"],
    &["ws", "client", "journal", "tls", "acl"],
    &["config"],
    &["admin"],
    &["broker"],
    &["auth"],
    &["api"],
    &["metrics"],
    &["bus"],
    &["link"],
    &["conn"],
    &["worker"],
    &["server", "sim"],
];

pub mod acl;
#[doc(hidden)]
pub mod admin;
pub mod api;
#[doc(hidden)]
pub mod auth;
#[doc(hidden)]
pub mod broker;
#[doc(hidden)]
pub mod bus;
pub mod client;
pub mod config;
#[doc(hidden)]
pub mod conn;
pub mod http;
#[doc(hidden)]
pub mod journal;
#[doc(hidden)]
pub mod link;
pub mod memory;
#[doc(hidden)]
pub mod metrics;
#[doc(hidden)]
pub mod rng;
pub mod selector;
pub mod server;
#[doc(hidden)]
pub mod sim;
pub mod stomp;
#[doc(hidden)]
pub mod timer;
pub mod tls;
#[doc(hidden)]
pub mod transport;
#[doc(hidden)]
pub mod worker;
#[doc(hidden)]
pub mod ws;

// The public surface: `Server`/`ServerHandle`, `Config` and its types, the embedding hooks
// (`api`, `http::Response`), the STOMP client and wire types (`client`, `stomp`), selectors,
// access rules, TLS configuration and the memory gauge. The modules marked `doc(hidden)` are the
// broker's internals: public only for the repository's own tests, benches and fuzz targets, not
// covered by semver, and absent from `cargo doc`.
pub use config::Config;
pub use server::{PublishError, Server, ServerBuilder, ServerHandle, StartError};
