//! Shared by the examples: a config (ports from ROMP_PORT / ROMP_WEB_PORT when set, so tests can
//! run them on free ports) and waiting for Ctrl-C or SIGTERM.

pub fn config() -> romp::Config {
    let mut cfg = romp::Config::default();
    if let Some(p) = std::env::var("ROMP_PORT").ok().and_then(|v| v.parse().ok()) {
        cfg.ports = vec![p];
    }
    if let Some(p) = std::env::var("ROMP_WEB_PORT").ok().and_then(|v| v.parse().ok()) {
        cfg.web_port = p;
    }
    // Memory only: the examples keep no durable log (set ROMP_DATA_DIR to give them one).
    cfg.data_dir = std::env::var("ROMP_DATA_DIR").unwrap_or_default();
    // The examples show embedded handlers; they leave the admin port to the standalone broker.
    cfg.enable_admin = false;
    cfg
}

pub fn wait_for_signal() {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    let _ = set.thread_block();
    let _ = set.wait();
}
