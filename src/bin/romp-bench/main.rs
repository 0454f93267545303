//! romp-bench: a STOMP load generator that works against any broker.
//!
//! Built like the broker: a few threads, each a mio loop over many connections; producers
//! pipeline SENDs into one buffer per connection and write once per turn; consumers parse with
//! romp's sans-io parser. Every message body carries its producer id, sequence number and a
//! checksum, so each run reports sent, delivered, lost, duplicated and reordered messages.
//!
//! Producers are paced by a window: at most `--window` messages may be published and not yet
//! delivered (per copy), so a queue never overflows and the figure is the sustainable rate.
//!
//! Connections are dealt to threads in one sequence (consumers, producers, slow consumers), so a
//! 1 -> 1 run has its producer and its consumer on different threads. mio is edge-triggered: a
//! thread whose producers can still publish polls without blocking, since a write that fitted
//! brings no new event (sleeping on the poller then capped a producer at one batch per timeout).

mod conn;
mod fsync;
mod handshake;

// Messages are allocated on one worker and freed on another; mimalloc handles such remote frees
// without the arena locking glibc's malloc does (13% of a worker's time in _int_malloc when
// profiled under queue 1->1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
mod idle;
mod latency;
mod nullbroker;
mod report;
mod ws;

use report::{Report, Tally};
use romp::broker::AckMode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Queue,
    Topic,
}

#[derive(Debug, Clone)]
pub struct Opts {
    pub host: String,
    pub port: u16,
    pub login: Option<String>,
    pub passcode: Option<String>,
    pub vhost: String,
    pub kind: Kind,
    pub producers: usize,
    pub consumers: usize,
    pub destinations: usize,
    pub queue_prefix: String,
    pub topic_prefix: String,
    pub size: usize,
    pub duration: Duration,
    pub warmup: Duration,
    pub window: u64,
    /// `--burst N`: each producer's first N messages go out pipelined, with no window (queue
    /// default: 50,000 or 64 MiB of bodies, whichever is less; topic default 0).
    pub burst: u64,
    burst_set: bool,
    pub ack: AckMode,
    pub threads: usize,
    pub json: bool,
    /// `--idle N`: measure N idle sessions instead of a load.
    pub idle: Option<usize>,
    pub broker_pid: Option<u32>,
    /// `--latency N`: request/reply round trips with N requesters instead of a load.
    pub latency: Option<usize>,
    /// `--rate R`: open loop, R messages/s in total at fixed intervals (no window); latency is
    /// measured from each message's intended send time.
    pub rate: Option<f64>,
    /// `--slow N`: extra topic subscribers that read at most `slow_rate` messages/s.
    pub slow: usize,
    pub slow_rate: u64,
    /// `--null-broker`: serve as a minimal forwarder on `--port` instead of generating load.
    pub null_broker: bool,
    /// `--ws PATH`: speak STOMP over WebSocket on this path (the port is the web port).
    pub ws: Option<String>,
    /// `--tls CA`: speak TLS, trusting the CA certificates in this PEM file.
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// `--handshakes`: measure full TLS handshakes per second instead of a load.
    pub handshakes: bool,
    /// `--stomp-version`: the protocol version asked for (CONNECT, ACK shape, escaping).
    pub version: romp::stomp::Version,
    /// `--persistent`: every SEND carries `persistent:true` (through the broker's log).
    pub persistent: bool,
    /// `--receipt-window N`: each producer has at most N SENDs not yet covered by a RECEIPT
    /// (0: no receipts); `--receipt-every K`: every K-th SEND asks for one (receipts arrive in
    /// order, so one covers the K before it).
    pub receipt_window: u64,
    pub receipt_every: u64,
    /// `--header K:V` (repeatable): added to every SEND and SUBSCRIBE (e.g. a peer's
    /// `x-queue-type:quorum`).
    pub headers: Vec<(String, String)>,
    /// `--fsync-floor DIR`: measure fdatasync per 100-byte append in DIR instead of a load.
    pub fsync_floor: Option<String>,
    /// `--subscribe-to DEST`: every consumer subscribes to DEST (a wildcard, say) instead of
    /// its own destination; on a topic each then expects every message.
    pub subscribe_to: Option<String>,
    /// `--spread`: each producer sends to every destination in turn (with `--subscribe-to`).
    pub spread: bool,
    /// `--priorities`: producer N sends with `priority:` N mod 10.
    pub priorities: bool,
}

const USAGE: &str = "usage: romp-bench [options]
  --host H (127.0.0.1)  --port P (61613)  --login L  --passcode P  --vhost V (/)
  --kind queue|topic (queue)   --producers N (1)  --consumers N (1)  --destinations N (1)
    (--consumers 0 with --kind queue and --receipt-window fills the queues: nothing consumed)
  --queue-prefix S (/queue/bench-)  --topic-prefix S (/topic/bench-)
  --size BYTES (100, at least 16)  --duration SECS (5)  --warmup SECS (1)
  --window N (queue 20000, topic 4000, at most 16 MiB of bodies: published but undelivered
    messages per subscriber; keep it
    well below what the broker lets one subscriber fall behind, or the broker may rightly
    treat a bench consumer as slow)
  --burst N (queue 50000, at most 64 MiB of bodies; topic 0) each producer's first N messages
    pipelined with no window; messages lost in it are reported apart and fail the run
  --ack auto|client|client-individual (auto)  --threads N (2)  --json
  --persistent                  every SEND carries persistent:true (a durable broker logs it)
  --receipt-window N [--receipt-every K (1)]  at most N SENDs per producer not yet covered by
                                a RECEIPT, one asked every K SENDs (no burst then); reports the
                                receipt round trip p50/p99
  --header NAME:VALUE           added to every SEND and SUBSCRIBE (repeatable; e.g. a selector
                                and the header it tests: --header 'type:x'
                                --header \"selector:type = 'x'\")
  --subscribe-to DEST           every consumer subscribes to DEST instead of its destination
                                (a wildcard over the --destinations topics: each consumer then
                                expects every message)
  --spread                      with --subscribe-to: each producer sends to every destination
                                in turn
  --priorities                  producer N sends with priority N mod 10 (mixed priorities)
  --fsync-floor DIR             measure fdatasync after each 100-byte append to a file in DIR
                                (the disk's floor for one receipt in flight), not a load
  --stomp-version 1.0|1.1|1.2 (1.2)  what CONNECT asks for; ACKs take that version's shape
  --latency N                   request/reply round trips (N requesters, 1 in flight each)
                                with p50/p99/p99.9, beside a raw TCP echo of the same size
  --idle N [--broker-pid PID]   open N idle sessions (one subscription each) and report the
                                broker's RSS per session instead of running a load
  --rate R                      open loop: R messages/s in total at fixed intervals instead of
                                the window; reports latency from each message's intended send
                                time (so a stalled broker cannot hide its stalls)
  --slow N [--slow-rate R]      add N topic subscribers that read at most R msg/s (1000); the
                                report gives the normal consumers' rate and what became of the
                                slow ones (their messages are not counted as lost)
  --broker-pid PID              also report the broker's peak RSS during the run
  --ws PATH                     STOMP over WebSocket on PATH (e.g. /stomp; --port is then the web
                                port); load modes only
  --tls CA.pem                  TLS (1.3 preferred) to --port, trusting the CAs in CA.pem (the
                                server name checked is --host); with --ws, WSS; load modes only
  --handshakes                  with --tls: full handshakes per second (no resumption), each with
                                CONNECT and CONNECTED, on --threads client threads
  --null-broker                 serve on --port as a minimal forwarder (no acks, receipts only
                                for SUBSCRIBE, no limits): the tool's own ceiling

Producers and consumers are spread over the destinations round-robin (partitioned when
producers = consumers = destinations). Topic consumers each get every message of their
destination; queue consumers compete.";

impl Default for Opts {
    /// The documented defaults (see USAGE).
    fn default() -> Opts {
        Opts {
            host: "127.0.0.1".into(),
            port: 61613,
            login: None,
            passcode: None,
            vhost: "/".into(),
            kind: Kind::Queue,
            producers: 1,
            consumers: 1,
            destinations: 1,
            queue_prefix: "/queue/bench-".into(),
            topic_prefix: "/topic/bench-".into(),
            size: 100,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            window: 0,
            burst: 0,
            burst_set: false,
            ack: AckMode::Auto,
            threads: 2,
            json: false,
            persistent: false,
            receipt_window: 0,
            receipt_every: 1,
            headers: Vec::new(),
            fsync_floor: None,
            subscribe_to: None,
            spread: false,
            priorities: false,
            idle: None,
            broker_pid: None,
            latency: None,
            rate: None,
            slow: 0,
            slow_rate: 1000,
            null_broker: false,
            ws: None,
            tls: None,
            handshakes: false,
            version: romp::stomp::Version::V1_2,
        }
    }
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut v = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|_| format!("{s:?} is not a number"));
        match a.as_str() {
            "--host" => o.host = v()?,
            "--port" => o.port = num(v()?)? as u16,
            "--login" => o.login = Some(v()?),
            "--passcode" => o.passcode = Some(v()?),
            "--vhost" => o.vhost = v()?,
            "--kind" => {
                o.kind = match v()?.as_str() {
                    "queue" => Kind::Queue,
                    "topic" => Kind::Topic,
                    k => return Err(format!("--kind {k:?}: queue or topic")),
                }
            }
            "--producers" => o.producers = num(v()?)? as usize,
            "--consumers" => o.consumers = num(v()?)? as usize,
            "--destinations" => o.destinations = num(v()?)?.max(1) as usize,
            "--queue-prefix" => o.queue_prefix = v()?,
            "--topic-prefix" => o.topic_prefix = v()?,
            "--subscribe-to" => o.subscribe_to = Some(v()?),
            "--spread" => o.spread = true,
            "--priorities" => o.priorities = true,
            "--size" => o.size = (num(v()?)? as usize).max(conn::HEADER_LEN),
            "--duration" => o.duration = Duration::from_secs_f64(v()?.parse().map_err(|_| "bad --duration")?),
            "--warmup" => o.warmup = Duration::from_secs_f64(v()?.parse().map_err(|_| "bad --warmup")?),
            "--window" => o.window = num(v()?)?.max(1),
            "--burst" => {
                o.burst = num(v()?)?;
                o.burst_set = true;
            }
            "--ack" => {
                let m = v()?;
                o.ack = AckMode::from_name(&m).ok_or_else(|| format!("--ack {m:?}: auto, client or client-individual"))?;
            }
            "--threads" => o.threads = num(v()?)?.max(1) as usize,
            "--json" => o.json = true,
            "--persistent" => o.persistent = true,
            "--receipt-window" => o.receipt_window = num(v()?)?,
            "--receipt-every" => o.receipt_every = num(v()?)?.max(1),
            "--header" => {
                let h = v()?;
                let (k, val) = h.split_once(':').ok_or("--header needs NAME:VALUE")?;
                o.headers.push((k.to_string(), val.to_string()));
            }
            "--fsync-floor" => o.fsync_floor = Some(v()?.to_string()),
            "--idle" => o.idle = Some(num(v()?)? as usize),
            "--broker-pid" => o.broker_pid = Some(num(v()?)? as u32),
            "--latency" => o.latency = Some(num(v()?)?.max(1) as usize),
            "--rate" => o.rate = Some(num(v()?)?.max(1) as f64),
            "--slow" => o.slow = num(v()?)? as usize,
            "--slow-rate" => o.slow_rate = num(v()?)?.max(1),
            "--null-broker" => o.null_broker = true,
            "--ws" => o.ws = Some(v()?),
            "--handshakes" => o.handshakes = true,
            "--tls" => {
                let ca = v()?;
                o.tls = Some(romp::tls::client_config("--tls", Some(&ca)).map_err(|e| e.to_string())?);
            }
            "--stomp-version" => {
                let t = v()?;
                o.version = romp::stomp::Version::from_token(&t).ok_or_else(|| format!("--stomp-version {t:?}: 1.0, 1.1 or 1.2"))?;
            }
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown option {a}")),
        }
    }
    if o.version == romp::stomp::Version::V1_0 && o.ack == AckMode::ClientIndividual {
        return Err("--ack client-individual is not in STOMP 1.0 (it has auto and client)".into());
    }
    if o.window == 0 {
        // Queues are bounded by consumer credit, so a deep window only keeps the pipe full. A
        // topic subscriber's backlog is bounded by the broker's slow-consumer limit: stay far
        // below it, or the broker will rightly cut a bench consumer off.
        o.window = if o.kind == Kind::Queue { 20_000 } else { 4_000 };
        // Large bodies: keep what is in flight per subscriber near 16 MiB at most, well inside
        // any broker's per-connection and per-queue byte bounds.
        o.window = o.window.min(((16 << 20) / o.size as u64).max(64));
    }
    if o.receipt_window > 0 && o.receipt_every > o.receipt_window {
        return Err("--receipt-every must not exceed --receipt-window (the window would never reopen)".into());
    }
    if !o.burst_set && o.kind == Kind::Queue && o.receipt_window == 0 {
        // A queue must slow a pipelining producer, never shed it: every run starts with a burst
        // that no window paces, and a message lost in it fails the run like any other.
        o.burst = ((64 << 20) / o.size as u64).clamp(64, 50_000);
    }
    if o.ws.is_some() && (o.latency.is_some() || o.idle.is_some() || o.null_broker) {
        return Err("--ws works with the load modes (not --latency, --idle or --null-broker)".into());
    }
    if o.spread && (o.subscribe_to.is_none() || o.kind != Kind::Topic) {
        return Err("--spread needs --kind topic and --subscribe-to (every consumer then expects every message)".into());
    }
    if o.slow > 0 && o.kind != Kind::Topic {
        return Err("--slow needs --kind topic (queue consumers compete; a slow one just takes less)".into());
    }
    if o.producers == 0 {
        return Err("need at least one producer".into());
    }
    if o.consumers == 0 && (o.kind != Kind::Queue || o.receipt_window == 0) {
        // Filling queues: receipts, not deliveries, pace the producers and prove acceptance.
        return Err("--consumers 0 (filling queues) needs --kind queue and --receipt-window".into());
    }
    Ok(o)
}

impl Opts {
    #[cfg(test)]
    pub fn for_tests() -> Opts {
        Opts {
            port: 0,
            producers: 2,
            consumers: 2,
            queue_prefix: "/queue/t-".into(),
            topic_prefix: "/topic/t-".into(),
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            window: 10,
            threads: 1,
            json: true,
            ..Opts::default()
        }
    }

    /// Messages per second each producer sends in open-loop mode.
    pub fn rate_per_producer(&self) -> Option<f64> {
        self.rate.map(|r| r / self.producers as f64)
    }

    pub fn destination(&self, i: usize) -> String {
        let prefix = if self.kind == Kind::Queue { &self.queue_prefix } else { &self.topic_prefix };
        format!("{prefix}{}", i % self.destinations)
    }

    /// Copies of each message that should be delivered.
    pub fn copies_of(&self, dest: usize) -> u64 {
        match self.kind {
            Kind::Queue => u64::from(self.consumers > 0),
            Kind::Topic if self.subscribe_to.is_some() => self.consumers as u64,
            Kind::Topic => (0..self.consumers).filter(|c| c % self.destinations == dest % self.destinations).count() as u64,
        }
    }
}

/// State shared by the load threads: phase flags and progress counters (atomics only).
pub struct Shared {
    pub ready_consumers: AtomicUsize,
    pub go: AtomicBool,
    pub stop_sending: AtomicBool,
    /// Load threads that have seen `stop_sending` and written everything their producers queued.
    pub stopped_threads: AtomicUsize,
    pub done: AtomicBool,
    pub sent: AtomicU64,
    /// Deliveries the messages sent so far should produce (sent x copies, per producer).
    pub expected: AtomicU64,
    pub delivered: AtomicU64,
    pub errors: AtomicU64,
    /// When producers started (open-loop mode computes intended send times from it).
    pub started: std::sync::OnceLock<Instant>,
}

fn main() {
    let opts = match parse_opts() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("romp-bench: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    let opts = Arc::new(opts);
    let shared = Arc::new(Shared {
        ready_consumers: AtomicUsize::new(0),
        go: AtomicBool::new(false),
        stop_sending: AtomicBool::new(false),
        stopped_threads: AtomicUsize::new(0),
        done: AtomicBool::new(false),
        sent: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        started: std::sync::OnceLock::new(),
    });
    let addr = match std::net::ToSocketAddrs::to_socket_addrs(&(opts.host.as_str(), opts.port)).ok().and_then(|mut a| a.next()) {
        Some(a) => a,
        None => {
            eprintln!("romp-bench: cannot resolve {}:{}", opts.host, opts.port);
            std::process::exit(2);
        }
    };

    if opts.handshakes {
        if let Err(e) = handshake::run(&opts, addr) {
            eprintln!("romp-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(dir) = &opts.fsync_floor {
        if let Err(e) = fsync::run(&opts, dir) {
            eprintln!("romp-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    if opts.null_broker {
        if let Err(e) = nullbroker::run(&opts) {
            eprintln!("romp-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(n) = opts.latency {
        if let Err(e) = latency::run(&opts, addr, n) {
            eprintln!("romp-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    if let Some(n) = opts.idle {
        if let Err(e) = idle::run(&opts, addr, n, opts.broker_pid) {
            eprintln!("romp-bench: {e}");
            std::process::exit(1);
        }
        return;
    }
    let threads: Vec<_> = (0..opts.threads)
        .map(|t| {
            let (opts, shared) = (opts.clone(), shared.clone());
            std::thread::spawn(move || {
                let r = conn::run_thread(t, addr, &opts, &shared);
                if let Err(e) = &r {
                    // Let the main thread stop waiting for consumers that will never be ready.
                    eprintln!("romp-bench: {e}");
                    shared.errors.fetch_add(1, Ordering::AcqRel);
                }
                r
            })
        })
        .collect();

    // Wait for every consumer to be subscribed, then run.
    let t0 = Instant::now();
    while shared.ready_consumers.load(Ordering::Acquire) < opts.consumers + opts.slow {
        if t0.elapsed() > Duration::from_secs(30) || shared.errors.load(Ordering::Acquire) > 0 {
            eprintln!("romp-bench: consumers not ready ({} of {})", shared.ready_consumers.load(Ordering::Acquire), opts.consumers);
            shared.done.store(true, Ordering::Release);
            std::process::exit(1);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = shared.started.set(Instant::now());
    shared.go.store(true, Ordering::Release);
    let start = Instant::now();
    let mut peak_rss = 0u64;
    std::thread::sleep(opts.warmup);
    let (s0, d0, t_measure) = (shared.sent.load(Ordering::Acquire), shared.delivered.load(Ordering::Acquire), Instant::now());
    let mut last = (Instant::now(), d0);
    while t_measure.elapsed() < opts.duration {
        std::thread::sleep(
            Duration::from_millis(1000).min(opts.duration.saturating_sub(t_measure.elapsed()).max(Duration::from_millis(1))),
        );
        if let Some(pid) = opts.broker_pid {
            peak_rss = peak_rss.max(idle::rss_kib(pid).unwrap_or(0));
        }
        if !opts.json {
            let d = shared.delivered.load(Ordering::Acquire);
            let dt = last.0.elapsed().as_secs_f64();
            eprint!(
                "\r{:>6.1}s  sent {:>10}  delivered {:>10}  {:>12.0} deliveries/s   ",
                start.elapsed().as_secs_f64(),
                shared.sent.load(Ordering::Acquire),
                d,
                (d - last.1) as f64 / dt
            );
            last = (Instant::now(), d);
        }
    }
    let elapsed = t_measure.elapsed().as_secs_f64();
    let (s1, d1) = (shared.sent.load(Ordering::Acquire), shared.delivered.load(Ordering::Acquire));
    shared.stop_sending.store(true, Ordering::Release);
    // Every producer must have stopped and written out what it queued before `expected` is
    // final: a thread that read the go flag just before the stop may still add one batch.
    let t_stop = Instant::now();
    while shared.stopped_threads.load(Ordering::Acquire) < opts.threads && t_stop.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(5));
    }
    // Let everything in flight arrive: until every expected delivery is in, or nothing has
    // moved for 3 s (then what is missing is reported as lost), at most 30 s.
    let t_drain = Instant::now();
    let patience = Duration::from_secs_f64(std::env::var("ROMP_BENCH_PATIENCE").ok().and_then(|v| v.parse().ok()).unwrap_or(3.0));
    let mut last_progress = (Instant::now(), shared.delivered.load(Ordering::Acquire));
    while t_drain.elapsed() < Duration::from_secs(30) {
        let d = shared.delivered.load(Ordering::Acquire);
        if d >= shared.expected.load(Ordering::Acquire) {
            break;
        }
        if d != last_progress.1 {
            last_progress = (Instant::now(), d);
        } else if last_progress.0.elapsed() > patience {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    shared.done.store(true, Ordering::Release);
    let mut tally = Tally::default();
    for t in threads {
        match t.join() {
            Ok(Ok(part)) => tally.merge(part),
            Ok(Err(e)) => {
                eprintln!("romp-bench: {e}");
                tally.errors += 1;
            }
            Err(_) => tally.errors += 1,
        }
    }
    if !opts.json {
        eprintln!();
    }
    let mut report = Report::new(&opts, &tally, (s1 - s0) as f64 / elapsed, (d1 - d0) as f64 / elapsed, elapsed);
    if opts.broker_pid.is_some() {
        report.broker_rss_kib = Some(peak_rss);
    }
    report.print(opts.json);
    if !report.clean() {
        std::process::exit(1);
    }
}
