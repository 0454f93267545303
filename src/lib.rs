//! romp: a thread-per-core STOMP 1.0/1.1/1.2 message broker, usable as a library.
//!
//! ```no_run
//! let mut cfg = romp::config::Config::default();
//! cfg.ports = vec![0]; // any free port
//! let server = romp::Server::start(cfg).expect("start");
//! println!("STOMP on {:?}", server.local_addrs());
//! server.shutdown();
//! server.join();
//! ```
//!
//! Layers, bottom up: [`stomp`] (sans-io wire format), [`broker`] (destinations; no sockets),
//! [`bus`] (inter-worker channels), [`conn`] (sessions), [`worker`] (the mio loops), [`server`]
//! (start and stop). See docs/architecture.md.

pub mod auth;
pub mod broker;
pub mod bus;
pub mod config;
pub mod conn;
pub mod server;
pub mod stomp;
pub mod timer;
pub mod worker;

pub use config::Config;
pub use server::{PublishError, Server, ServerBuilder, ServerHandle, StartError};
pub mod admin;
pub mod api;
pub mod http;
pub mod link;
pub mod sim;
pub mod ws;
