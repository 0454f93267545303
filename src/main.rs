//! The `romp` binary: arguments, config, logging, start, signals, join.

use romp::config::{log_level, Config};

// Messages are allocated on one worker and freed on another; mimalloc handles such remote frees
// without the arena locking glibc's malloc does (13% of a worker's time in _int_malloc when
// profiled under queue 1->1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

#[path = "cli/ctl.rs"]
mod ctl;

/// `log_format = "json"`: one object per line on stderr, `{"ts":..., "level":..., "msg":...}`,
/// the time as in text lines (RFC 3339, UTC, milliseconds). One `write` per line, so lines
/// from different threads never interleave.
struct JsonLog;

impl log::Log for JsonLog {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let ts = time::OffsetDateTime::now_utc()
            .format(time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
            .unwrap_or_default();
        let line = serde_json::json!({ "ts": ts, "level": r.level().as_str(), "msg": r.args().to_string() });
        let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
    }

    fn flush(&self) {}
}

const USAGE: &str = "usage:
  romp [--config PATH] [--bind ADDR] [--port N]... [--tls-port N]... [--web-port N] [--admin-port N] [--workers N] [--data-dir PATH] [--repair] [-v|-vv]
  romp --check-config [--config PATH]
  romp --version | --help
  romp passwd NAME [--admin]      (reads the passcode from stdin; prints a passwd line)
  romp health [IP:PORT]           (GET /health on a web port, default 127.0.0.1:8080; exit 0 if 200)
  romp ctl [--admin HOST:PORT] [--user U --password P | --token T] [--json]
           stats | destinations | connections | purge DEST | kick SESSION   (the admin port)

Without --config, the built-in defaults run (STOMP on 127.0.0.1:61613, durable log in
./romp-data). --data-dir \"\" runs without a durable log. --repair: a start that finds damaged
records in the log skips them (each is logged, and lost) instead of refusing to start.";

/// What `parse_args` returns for `--help` and `--version` (answered, not errors).
const HELP: &str = "\0help";
const VERSION: &str = "\0version";

struct Args {
    config: Option<PathBuf>,
    check: bool,
    bind: Option<String>,
    ports: Vec<u16>,
    tls_ports: Vec<u16>,
    web_port: Option<u16>,
    admin_port: Option<u16>,
    workers: Option<usize>,
    data_dir: Option<String>,
    repair: bool,
    verbose: u8,
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        config: None,
        check: false,
        bind: None,
        ports: Vec::new(),
        tls_ports: Vec::new(),
        web_port: None,
        admin_port: None,
        workers: None,
        data_dir: None,
        repair: false,
        verbose: 0,
    };
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--config" | "-c" => a.config = Some(PathBuf::from(value("--config")?)),
            "--check-config" => a.check = true,
            "--bind" => a.bind = Some(value("--bind")?),
            "--port" => {
                let v = value("--port")?;
                a.ports.push(v.parse().map_err(|_| format!("--port {v:?} is not a port number"))?);
            }
            "--tls-port" => {
                let v = value("--tls-port")?;
                a.tls_ports.push(v.parse().map_err(|_| format!("--tls-port {v:?} is not a port number"))?);
            }
            "--web-port" => {
                let v = value("--web-port")?;
                a.web_port = Some(v.parse().map_err(|_| format!("--web-port {v:?} is not a port number"))?);
            }
            "--admin-port" => {
                let v = value("--admin-port")?;
                a.admin_port = Some(v.parse().map_err(|_| format!("--admin-port {v:?} is not a port number"))?);
            }
            "--workers" => {
                let v = value("--workers")?;
                a.workers = Some(v.parse().map_err(|_| format!("--workers {v:?} is not a number"))?);
            }
            "--data-dir" => a.data_dir = Some(value("--data-dir")?),
            "--repair" => a.repair = true,
            "-v" => a.verbose += 1,
            "-vv" => a.verbose += 2,
            "-h" | "--help" => return Err(HELP.into()),
            "-V" | "--version" => return Err(VERSION.into()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(a)
}

fn passwd(mut it: impl Iterator<Item = String>) -> ExitCode {
    let Some(name) = it.next() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    let admin = it.any(|a| a == "--admin");
    if name.contains(':') || name.contains('#') || name.is_empty() {
        eprintln!("romp passwd: a user name may not be empty or contain ':' or '#'");
        return ExitCode::from(2);
    }
    let mut pass = String::new();
    if std::io::stdin().read_line(&mut pass).is_err() {
        eprintln!("romp passwd: cannot read the passcode from stdin");
        return ExitCode::from(2);
    }
    let pass = pass.strip_suffix('\n').unwrap_or(&pass);
    let pass = pass.strip_suffix('\r').unwrap_or(pass);
    match romp::auth::passwd_line(&name, pass, admin) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("romp passwd: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `romp health [IP:PORT]`: GET /health on a broker's web port (default 127.0.0.1:8080); exit 0
/// if it answers 200, 1 otherwise. For container HEALTHCHECKs, where no curl exists.
fn health(addr: &str) -> ExitCode {
    use std::io::Read;
    let check = || -> Result<bool, String> {
        let a: std::net::SocketAddr = addr.parse().map_err(|_| format!("{addr:?} is not ip:port"))?;
        let t = std::time::Duration::from_secs(3);
        let mut s = std::net::TcpStream::connect_timeout(&a, t).map_err(|e| format!("{addr}: {e}"))?;
        s.set_read_timeout(Some(t)).map_err(|e| e.to_string())?;
        s.write_all(format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
            .map_err(|e| format!("{addr}: {e}"))?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).map_err(|e| format!("{addr}: {e}"))?;
        Ok(head.starts_with(b"HTTP/1.1 200"))
    };
    match check() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("romp health: {addr} is not healthy");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("romp health: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Raise the soft descriptor limit to the hard one: every connection is a descriptor, and the
/// default soft limit (often 1024) is far below `max_connections`.
fn raise_nofile(cfg: &Config) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) => {
            if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_err() {
                log::warn!("could not raise the open-files limit from {soft} to {hard}");
            }
            let now = getrlimit(Resource::RLIMIT_NOFILE).map(|l| l.0).unwrap_or(soft);
            let want = cfg.max_connections as u64 * 2 + 64;
            if now < want {
                log::warn!(
                    "open-files limit {now} is below what max_connections = {} needs (~{want}); raise it (ulimit -n)",
                    cfg.max_connections
                );
            }
        }
        Err(e) => log::warn!("cannot read the open-files limit: {e}"),
    }
}

/// Command-line settings win over the file, at start and on every reload.
fn apply_overrides(cfg: &mut Config, args: &Args) {
    if let Some(b) = &args.bind {
        cfg.bind_address = b.clone();
    }
    if !args.ports.is_empty() {
        cfg.ports = args.ports.clone();
    }
    if !args.tls_ports.is_empty() {
        cfg.tls_ports = args.tls_ports.clone();
    }
    if let Some(p) = args.web_port {
        cfg.web_port = p;
    }
    if let Some(p) = args.admin_port {
        cfg.admin_port = p;
    }
    if let Some(d) = &args.data_dir {
        cfg.data_dir = d.clone();
    }
    if let Some(w) = args.workers {
        cfg.workers = w;
    }
    cfg.repair = args.repair;
    match args.verbose {
        0 => {}
        1 => cfg.log_level = "debug".into(),
        _ => cfg.log_level = "trace".into(),
    }
}

/// SIGHUP: read the config file again and apply what can change at run time.
fn reload(server: &romp::ServerHandle, args: &Args) {
    let Some(path) = args.config.as_deref() else {
        log::warn!("SIGHUP: no --config file to reload (running on built-in defaults)");
        return;
    };
    let mut cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            log::error!("SIGHUP: {e}; keeping the running configuration");
            return;
        }
    };
    apply_overrides(&mut cfg, args);
    match server.reload(cfg) {
        Ok(plan) => {
            if plan.applied.is_empty() {
                log::info!("SIGHUP: {}: no run-time changes", path.display());
            } else {
                log::info!("SIGHUP: {}: applied {}", path.display(), plan.applied.join(", "));
            }
            if !plan.need_restart.is_empty() {
                log::warn!("SIGHUP: changed but needing a restart (old values kept): {}", plan.need_restart.join(", "));
            }
        }
        Err(e) => log::error!("SIGHUP: {e}; keeping the running configuration"),
    }
}

/// Fault injection for the supervision tests of the real binary: `ROMP_INJECT_FAULT=worker`
/// makes worker 0 panic in its loop 200 ms after start; `auth` makes the auth thread panic on
/// the next login that needs a slow hash check. Anything else is a warning. Not for production
/// use (it stops the broker on purpose), hence only an environment variable, not a config key.
fn inject_fault(server: &romp::ServerHandle) {
    let Ok(what) = std::env::var("ROMP_INJECT_FAULT") else { return };
    match what.as_str() {
        "worker" => {
            log::warn!("ROMP_INJECT_FAULT=worker: worker 0 will panic in 200 ms");
            std::thread::sleep(std::time::Duration::from_millis(200));
            server.inject_worker_panic(0);
        }
        "auth" => {
            log::warn!("ROMP_INJECT_FAULT=auth: the auth thread will panic on its next check");
            server.inject_auth_panic();
        }
        other => log::warn!("ROMP_INJECT_FAULT={other:?} is not a fault this binary knows (worker, auth); ignored"),
    }
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1).peekable();
    if argv.peek().map(String::as_str) == Some("health") {
        argv.next();
        return health(argv.next().as_deref().unwrap_or("127.0.0.1:8080"));
    }
    if argv.peek().map(String::as_str) == Some("ctl") {
        argv.next();
        return ctl::run(argv);
    }
    if argv.peek().map(String::as_str) == Some("passwd") {
        argv.next();
        return passwd(argv);
    }
    let args = match parse_args(argv) {
        Ok(a) => a,
        // Asked for: the answer goes to stdout and is a success.
        // (A closed stdout, as in `romp --help | head -1`, is no failure.)
        Err(e) if e == HELP => {
            let _ = writeln!(std::io::stdout(), "{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) if e == VERSION => {
            let _ = writeln!(std::io::stdout(), "romp {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            if !e.is_empty() {
                eprintln!("romp: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let mut cfg = match &args.config {
        Some(p) => match Config::load(p) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("romp: {e}");
                return ExitCode::from(2);
            }
        },
        // The standalone broker has the machine: its workers are pinned (an embedder's
        // Config::default() leaves them unpinned).
        None => Config { pin_workers: true, ..Config::default() },
    };
    apply_overrides(&mut cfg, &args);
    let source = args.config.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "command line".into());
    if let Err(e) = cfg.validate(&source) {
        eprintln!("romp: {e}");
        return ExitCode::from(2);
    }
    if args.check {
        println!("{source}: configuration OK");
        return ExitCode::SUCCESS;
    }
    let level = log_level(&cfg.log_level).unwrap_or(log::LevelFilter::Info);
    // Timestamps with the date, milliseconds and the zone (UTC), as log shippers want them.
    let log_cfg = simplelog::ConfigBuilder::new()
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .set_time_format_custom(simplelog::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"))
        .build();
    match cfg.log_format {
        romp::config::LogFormat::Json => {
            if log::set_boxed_logger(Box::new(JsonLog)).is_ok() {
                log::set_max_level(level);
            }
        }
        // Text, and any format a later library version adds that this binary does not know.
        _ => {
            let _ = simplelog::TermLogger::init(level, log_cfg, simplelog::TerminalMode::Stderr, simplelog::ColorChoice::Never);
        }
    }

    raise_nofile(&cfg);

    // Block the signals in every thread (workers inherit the mask) and wait for them here.
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    for s in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(s);
    }
    if let Err(e) = set.thread_block() {
        eprintln!("romp: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let server = match romp::Server::start(cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("romp: {e}");
            return ExitCode::FAILURE;
        }
    };
    inject_fault(&server);
    // Wait for a signal, looking at the stop flag (an admin's /virt/admin/shutdown) between.
    let tick = libc::timespec { tv_sec: 0, tv_nsec: 200_000_000 };
    loop {
        if server.stop_requested() {
            match server.failure() {
                Some(reason) => log::error!("stopping: {reason}"),
                None => log::info!("shutdown requested by an admin"),
            }
            break;
        }
        // SAFETY: the set is a valid sigset_t owned by `set`; no siginfo is asked for.
        let sig = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &tick) };
        if sig < 0 {
            let e = std::io::Error::last_os_error();
            if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EINTR)) {
                continue;
            }
            log::error!("sigtimedwait failed: {e}; shutting down");
            break;
        }
        if sig == libc::SIGHUP {
            reload(&server, &args);
            continue;
        }
        log::info!("{}: shutting down", Signal::try_from(sig).map(|s| s.to_string()).unwrap_or_else(|_| sig.to_string()));
        break;
    }
    server.shutdown();
    match server.join() {
        Ok(()) => {
            log::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Non-zero (EX_SOFTWARE), so systemd or a container runtime restarts the broker.
            log::error!("{e}");
            ExitCode::from(70)
        }
    }
}
