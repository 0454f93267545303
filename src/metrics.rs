//! Numbers for the console pages, `/metrics` and the periodic stats message: the counters each
//! worker keeps ([`WorkerStats`]), the [`WorkerSnapshot`] it answers a stats request with, and the
//! rendering of every worker's snapshots (JSON, Prometheus text).
//!
//! Gathered over the bus: the asker (a web or admin connection, or worker 0's stats timer) asks
//! every worker (`ToOwner::Stats`), each answers with a snapshot of its own connections and
//! shard, and the asker renders when all have answered. Counters live per worker, owned by its
//! thread; nothing here is shared or locked. Pure data and formatting: no bus, no sockets.

use crate::broker::durable::{JournalStats, BATCH_BUCKETS, SYNC_BUCKETS_US};
use crate::broker::shard::{DestInfo, ShardStats};
use crate::stomp::ErrorWord;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// Per-worker counters (read by stats; never shared-locked).
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct WorkerStats {
    pub accepted: u64,
    pub closed: u64,
    pub frames_in: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub dropped_slow: u64,
    pub errors_sent: u64,
    /// Topic deliveries skipped because the message had expired.
    pub expired: u64,
    /// Stats snapshots this worker took for a console page or `/metrics`.
    pub snapshots: u64,
    /// Publishers paused because the broker was over `max_memory` (a connection counts once
    /// per pause).
    pub memory_holds: u64,
    /// Closes per [`CloseKind`] (by its index); the JSON pages show them as a map.
    #[serde(skip)]
    pub closed_by: [u64; CloseKind::ALL.len()],
    /// ERROR frames per `message` word (by [`ErrorWord::index`]).
    #[serde(skip)]
    pub errors_by_word: [u64; ErrorWord::ALL.len()],
    /// Loop turns, and microseconds spent in them (not waiting in the poller).
    pub turns: u64,
    pub busy_us: u64,
}

/// Why connections closed, as counted (the connection layer maps its reasons onto these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseKind {
    Disconnect,
    HttpDone,
    PeerClosed,
    Io,
    /// The broker sent ERROR (the word is counted in `errors_by_word`).
    Error,
    WebSocket,
    Internal,
    AuthFailed,
    ConnectTimeout,
    HeartBeatTimeout,
    SlowConsumer,
    Shutdown,
    Kicked,
}

impl CloseKind {
    pub const ALL: [CloseKind; 13] = [
        CloseKind::Disconnect,
        CloseKind::HttpDone,
        CloseKind::PeerClosed,
        CloseKind::Io,
        CloseKind::Error,
        CloseKind::WebSocket,
        CloseKind::Internal,
        CloseKind::AuthFailed,
        CloseKind::ConnectTimeout,
        CloseKind::HeartBeatTimeout,
        CloseKind::SlowConsumer,
        CloseKind::Shutdown,
        CloseKind::Kicked,
    ];

    /// The `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            CloseKind::Disconnect => "disconnect",
            CloseKind::HttpDone => "http_done",
            CloseKind::PeerClosed => "peer_closed",
            CloseKind::Io => "io_error",
            CloseKind::Error => "error_sent",
            CloseKind::WebSocket => "websocket",
            CloseKind::Internal => "internal",
            CloseKind::AuthFailed => "auth_failed",
            CloseKind::ConnectTimeout => "connect_timeout",
            CloseKind::HeartBeatTimeout => "heart_beat_timeout",
            CloseKind::SlowConsumer => "slow_consumer",
            CloseKind::Shutdown => "shutdown",
            CloseKind::Kicked => "kicked",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// One upstream link's state for the console.
#[derive(Debug, Clone, Serialize)]
pub struct LinkInfo {
    pub name: String,
    pub address: String,
    pub remote: String,
    pub state: &'static str,
    pub connects: u64,
    pub failures: u64,
    pub received: u64,
}

/// What rendering needs besides the snapshots: the server's name and age, and its memory
/// gauge (read live, so the alarm shows even when the snapshots are a little old).
#[derive(Debug, Clone, Copy)]
pub struct Env<'a> {
    pub server: &'a str,
    pub uptime_secs: u64,
    pub memory: &'a crate::memory::Gauge,
    /// (messages recovered from the durable log at start, ms the recovery took); none
    /// without a log.
    pub recovery: Option<(u64, u64)>,
    /// Destinations named exactly under `[destinations]`: always listed on `/metrics` (with
    /// zeros while no worker holds them), so an alert on one never meets a missing series.
    pub configured: &'a std::collections::BTreeMap<String, crate::config::DestConfig>,
    /// `metrics_destinations`: destinations with series of their own, at most.
    pub max_series: usize,
}

/// Destinations listed per worker at most (the page says when it was cut).
pub const MAX_LISTED: usize = 10_000;

#[derive(Debug, Clone, Serialize)]
pub struct WorkerSnapshot {
    pub worker: usize,
    pub connections: usize,
    pub stats: WorkerStats,
    pub shard: ShardStats,
    pub destinations: Vec<DestInfo>,
    pub truncated: bool,
    pub links: Vec<LinkInfo>,
    /// Entries in the worker's timer heap.
    pub timers: usize,
    /// Its durable log's figures (none without `data_dir`).
    pub journal: Option<JournalStats>,
    /// Durable topic subscriptions it holds.
    pub durable_subscriptions: usize,
    /// Messages it holds for scheduled delivery.
    pub scheduled: usize,
    /// Wildcard subscriptions of its connections.
    pub wildcard_subscriptions: usize,
    /// Bus messages waiting in its backlogs (a full channel to another worker).
    pub backlog: usize,
    /// Its client sessions by transport label (`tcp`, `tls`, `web`, `web tls`, `admin`, ...).
    #[serde(skip)]
    pub by_transport: Vec<(&'static str, usize)>,
    /// Its open STOMP sessions (at most [`MAX_LISTED_SESSIONS`]), for `/romp/connections`.
    #[serde(skip)]
    pub sessions: Vec<SessionInfo>,
}

/// Sessions one worker lists on `/romp/connections` at most (the page says when it cut).
pub const MAX_LISTED_SESSIONS: usize = 1000;

/// One STOMP session on `/romp/connections` (and `romp ctl connections`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    /// The id `kick` takes (`worker-slot-generation`, as in CONNECTED).
    pub session: String,
    pub peer: String,
    pub login: Option<String>,
    pub transport: &'static str,
    pub version: &'static str,
    pub subscriptions: usize,
    /// Output bytes not yet written to the socket.
    pub pending_bytes: usize,
}

/// The JSON body for a console path, from every worker's snapshot.
pub fn render(path: &str, parts: &[WorkerSnapshot], env: Env<'_>) -> String {
    let mut parts: Vec<&WorkerSnapshot> = parts.iter().collect();
    parts.sort_by_key(|p| p.worker);
    if path == "/metrics" {
        return prometheus(&parts, env);
    }
    let v = if path == "/romp/connections" {
        let mut sessions: Vec<&SessionInfo> = parts.iter().flat_map(|p| p.sessions.iter()).collect();
        sessions.sort_by(|a, b| a.session.cmp(&b.session));
        let listed: usize = parts.iter().map(|p| p.sessions.len()).sum();
        serde_json::json!({
            "connections": sessions,
            "truncated": parts.iter().map(|p| p.connections).sum::<usize>() > listed,
        })
    } else if path == "/romp/destinations" {
        let mut dests: Vec<&DestInfo> = parts.iter().flat_map(|p| p.destinations.iter()).collect();
        dests.sort_by(|a, b| a.name.cmp(&b.name));
        serde_json::json!({
            "destinations": dests,
            "truncated": parts.iter().any(|p| p.truncated),
        })
    } else {
        let mut v = totals(&parts, env);
        v["server"] = env.server.into();
        v["workers"] = parts.len().into();
        v["connections_per_worker"] = parts.iter().map(|p| p.connections).collect::<Vec<_>>().into();
        v["destinations"] = parts.iter().map(|p| p.destinations.len()).sum::<usize>().into();
        v["dropped_slow"] = parts.iter().map(|p| p.stats.dropped_slow).sum::<u64>().into();
        v["links"] = serde_json::json!(parts.iter().flat_map(|p| p.links.iter()).collect::<Vec<_>>());
        v["per_worker"] = serde_json::json!(parts);
        v
    };
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// The server-wide figures the console page and the stats message share.
fn totals(parts: &[&WorkerSnapshot], env: Env<'_>) -> serde_json::Value {
    let total = |f: &dyn Fn(&WorkerSnapshot) -> u64| parts.iter().map(|p| f(p)).sum::<u64>();
    serde_json::json!({
        "uptime_seconds": env.uptime_secs,
        "memory": {
            "used_bytes": env.memory.used(),
            "limit_bytes": env.memory.limit(),
            "alarm": env.memory.alarm(),
            "alarms": env.memory.alarms(),
            "paused_publishers": total(&|p| p.stats.memory_holds),
        },
        "connections": total(&|p| p.connections as u64),
        "messages_in": total(&|p| p.stats.messages_in),
        "messages_out": total(&|p| p.stats.messages_out),
        "published": total(&|p| p.shard.published),
        "rejected": total(&|p| p.shard.rejected),
        "expired": total(&|p| p.shard.expired + p.stats.expired),
        "dead_lettered": total(&|p| p.shard.dead_lettered),
        "durable_subscriptions": total(&|p| p.durable_subscriptions as u64),
        "scheduled": total(&|p| p.scheduled as u64),
        "wildcard_subscriptions": total(&|p| p.wildcard_subscriptions as u64),
        "journal": journal_totals(parts),
        "recovery": env.recovery.map(|(messages, ms)| serde_json::json!({"messages": messages, "milliseconds": ms})),
        "closed_by_reason": CloseKind::ALL.iter().map(|k| (k.label().to_string(), total(&|p| p.stats.closed_by[k.index()]).into())).collect::<serde_json::Map<_, _>>(),
        "errors_by_word": ErrorWord::ALL.iter().map(|w| (w.as_str().to_string(), total(&|p| p.stats.errors_by_word[w.index()]).into())).collect::<serde_json::Map<_, _>>(),
    })
}

/// The durable logs' figures summed over workers (sync times: the worst worker's), or null.
fn journal_totals(parts: &[&WorkerSnapshot]) -> serde_json::Value {
    let logs: Vec<&JournalStats> = parts.iter().filter_map(|p| p.journal.as_ref()).collect();
    if logs.is_empty() {
        return serde_json::Value::Null;
    }
    let sum = |f: fn(&JournalStats) -> u64| logs.iter().map(|j| f(j)).sum::<u64>();
    let max = |f: fn(&JournalStats) -> u64| logs.iter().map(|j| f(j)).max().unwrap_or(0);
    let sync = merged(&logs, |j| &j.sync_buckets[..]);
    let syncs = sum(|j| j.syncs);
    serde_json::json!({
        "records": sum(|j| j.records),
        "syncs": sum(|j| j.syncs),
        "disk_bytes": sum(|j| j.disk_bytes),
        "segments": sum(|j| j.segments),
        "last_sync_us": max(|j| j.last_sync_us),
        "max_sync_us": max(|j| j.max_sync_us),
        "disk_refused": sum(|j| j.disk_refused),
        "sync_p50_us_at_most": quantile_bound(&SYNC_BUCKETS_US, &sync, 0.5),
        "sync_p99_us_at_most": quantile_bound(&SYNC_BUCKETS_US, &sync, 0.99),
        "records_per_sync": if syncs == 0 { 0.0 } else { sum(|j| j.records) as f64 / syncs as f64 },
    })
}

/// One histogram's bucket counts summed over every worker's log.
fn merged(logs: &[&JournalStats], buckets: fn(&JournalStats) -> &[u64]) -> Vec<u64> {
    let mut out = Vec::new();
    for j in logs {
        let b = buckets(j);
        out.resize(out.len().max(b.len()), 0);
        for (o, n) in out.iter_mut().zip(b) {
            *o += n;
        }
    }
    out
}

/// A Prometheus histogram `romp_NAME` from per-bucket counts (`counts[i]` observations at most
/// `bounds[i]`, above the one before; one more count for +Inf) and the observations' sum.
fn histogram(o: &mut String, name: &str, help: &str, bounds: &[String], counts: &[u64], sum: &str) {
    let _ = writeln!(o, "# HELP romp_{name} {help}\n# TYPE romp_{name} histogram");
    let mut acc = 0;
    for (i, n) in counts.iter().enumerate() {
        acc += n;
        let le = bounds.get(i).map_or("+Inf", String::as_str);
        let _ = writeln!(o, "romp_{name}_bucket{{le=\"{le}\"}} {acc}");
    }
    let _ = writeln!(o, "romp_{name}_sum {sum}\nromp_{name}_count {acc}");
}

/// The bound of the bucket holding quantile `q` of a histogram's counts (the last bound for
/// observations above every bound), or 0 without observations.
fn quantile_bound(bounds: &[u64], counts: &[u64], q: f64) -> u64 {
    let total: u64 = counts.iter().sum();
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let mut acc = 0;
    for (i, n) in counts.iter().enumerate() {
        acc += n;
        if acc >= rank && total > 0 {
            return bounds.get(i).or(bounds.last()).copied().unwrap_or(0);
        }
    }
    0
}

/// The process's resident bytes and open file descriptors, from /proc (0 where unavailable).
fn process_usage() -> (u64, u64) {
    let rss = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<u64>().ok()))
        // SAFETY: sysconf has no preconditions.
        .map_or(0, |pages| pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(0) as u64);
    let fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    (rss, fds)
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The Prometheus text exposition of every worker's numbers.
fn prometheus(parts: &[&WorkerSnapshot], env: Env<'_>) -> String {
    let (mut o, mut hists) = (String::new(), String::new());
    let sum = |f: &dyn Fn(&WorkerSnapshot) -> u64| parts.iter().map(|p| f(p)).sum::<u64>();
    let mut metric = |name: &str, kind: &str, help: &str, v: u64| {
        let _ = writeln!(o, "# HELP romp_{name} {help}\n# TYPE romp_{name} {kind}\nromp_{name} {v}");
    };
    metric("uptime_seconds", "gauge", "Seconds since the server started.", env.uptime_secs);
    metric("workers", "gauge", "Worker threads.", parts.len() as u64);
    metric("connections", "gauge", "Open client connections.", sum(&|p| p.connections as u64));
    metric("memory_used_bytes", "gauge", "Bytes the broker counts against max_memory.", env.memory.used());
    metric("memory_limit_bytes", "gauge", "max_memory: publishers are paused at this many bytes.", env.memory.limit());
    metric("memory_alarm", "gauge", "1 while the broker is over max_memory and publishers are paused.", u64::from(env.memory.alarm()));
    metric("memory_alarms_total", "counter", "Times the memory alarm was raised.", env.memory.alarms());
    metric(
        "memory_paused_publishers_total",
        "counter",
        "Publisher pauses for the memory alarm (a connection counts once per pause).",
        sum(&|p| p.stats.memory_holds),
    );
    metric("timers", "gauge", "Armed timers (connections' and the workers' own).", sum(&|p| p.timers as u64));
    let (rss, fds) = process_usage();
    metric("process_resident_memory_bytes", "gauge", "Resident set size of the broker process (the kernel's count).", rss);
    metric("process_open_fds", "gauge", "File descriptors the broker process has open.", fds);
    metric("bus_backlog", "gauge", "Messages between workers waiting for room in a full channel.", sum(&|p| p.backlog as u64));
    metric("connections_accepted_total", "counter", "Connections accepted.", sum(&|p| p.stats.accepted));
    metric("frames_in_total", "counter", "Client frames received.", sum(&|p| p.stats.frames_in));
    metric("messages_in_total", "counter", "SENDs received.", sum(&|p| p.stats.messages_in));
    metric("messages_out_total", "counter", "MESSAGE frames written.", sum(&|p| p.stats.messages_out));
    metric("messages_published_total", "counter", "Messages accepted by destinations.", sum(&|p| p.shard.published));
    metric("messages_unrouted_total", "counter", "Topic messages nobody was subscribed to.", sum(&|p| p.shard.unrouted));
    metric("messages_rejected_total", "counter", "SENDs refused because a destination was full.", sum(&|p| p.shard.rejected));
    metric("messages_expired_total", "counter", "Messages that expired before delivery.", sum(&|p| p.shard.expired + p.stats.expired));
    metric("messages_dead_lettered_total", "counter", "Messages moved to a dead-letter queue.", sum(&|p| p.shard.dead_lettered));
    metric("flow_blocks_total", "counter", "Times a full queue held its producers (overflow = block).", sum(&|p| p.shard.flow_blocks));
    metric(
        "messages_overflow_dropped_total",
        "counter",
        "Messages dropped from the head of a full queue (overflow = drop-head).",
        sum(&|p| p.shard.overflow_dropped),
    );
    metric(
        "messages_deduplicated_total",
        "counter",
        "SENDs acknowledged but not enqueued: their dedup-id was seen lately (dedup_window).",
        sum(&|p| p.shard.deduplicated),
    );
    metric(
        "messages_temp_discarded_total",
        "counter",
        "Messages a temporary queue still held when its connection closed (deleted with it).",
        sum(&|p| p.shard.temp_discarded),
    );
    metric("messages_dead_discarded_total", "counter", "Dead letters discarded (dead_letter = \"\").", sum(&|p| p.shard.dead_discarded));
    metric("messages_dropped_slow_total", "counter", "Topic deliveries dropped for slow consumers.", sum(&|p| p.stats.dropped_slow));
    metric("durable_subscriptions", "gauge", "Durable topic subscriptions held.", sum(&|p| p.durable_subscriptions as u64));
    metric(
        "wildcard_subscriptions",
        "gauge",
        "Wildcard topic subscriptions held (max_wildcard_subs).",
        sum(&|p| p.wildcard_subscriptions as u64),
    );
    metric("scheduled_messages", "gauge", "Messages held for scheduled delivery (max_scheduled).", sum(&|p| p.scheduled as u64));
    metric("messages_scheduled_total", "counter", "SENDs taken for scheduled delivery.", sum(&|p| p.shard.scheduled));
    metric("scheduled_deliveries_total", "counter", "Scheduled firings published to their destination.", sum(&|p| p.shard.scheduled_fired));
    metric(
        "scheduled_retries_total",
        "counter",
        "Scheduled firings their destination refused (offered again 100 ms later).",
        sum(&|p| p.shard.scheduled_retries),
    );
    let logs: Vec<&JournalStats> = parts.iter().filter_map(|p| p.journal.as_ref()).collect();
    if let Some((messages, ms)) = env.recovery {
        metric("journal_recovered_messages", "gauge", "Persistent messages the start recovered from the log.", messages);
        metric("journal_recovery_milliseconds", "gauge", "How long the start's recovery took (read, rewrite, switch).", ms);
    }
    if !logs.is_empty() {
        let jsum = |f: fn(&JournalStats) -> u64| logs.iter().map(|j| f(j)).sum::<u64>();
        let jmax = |f: fn(&JournalStats) -> u64| logs.iter().map(|j| f(j)).max().unwrap_or(0);
        metric("journal_records_total", "counter", "Records made durable in the workers' logs.", jsum(|j| j.records));
        metric("journal_syncs_total", "counter", "Group commits (one write and fdatasync each).", jsum(|j| j.syncs));
        metric("journal_disk_bytes", "gauge", "Bytes of log segments on disk.", jsum(|j| j.disk_bytes));
        metric("journal_segments", "gauge", "Log segment files.", jsum(|j| j.segments));
        metric(
            "journal_last_sync_microseconds",
            "gauge",
            "The latest group commit's write and fdatasync, worst worker.",
            jmax(|j| j.last_sync_us),
        );
        metric("journal_max_sync_microseconds", "gauge", "The slowest group commit since start.", jmax(|j| j.max_sync_us));
        metric("journal_disk_refused_total", "counter", "Persistent SENDs refused for disk limits (disk flup).", jsum(|j| j.disk_refused));
        let sync = merged(&logs, |j| &j.sync_buckets[..]);
        let bounds: Vec<String> = SYNC_BUCKETS_US.iter().map(|us| format!("{}", *us as f64 / 1e6)).collect();
        let sum = format!("{}", jsum(|j| j.sync_us_sum) as f64 / 1e6);
        histogram(&mut hists, "journal_sync_seconds", "Group commit latency (one write and its fdatasync).", &bounds, &sync, &sum);
        let batch = merged(&logs, |j| &j.batch_buckets[..]);
        let bounds: Vec<String> = BATCH_BUCKETS.iter().map(u64::to_string).collect();
        let sum = jsum(|j| j.records).to_string();
        histogram(&mut hists, "journal_batch_records", "Records per group commit.", &bounds, &batch, &sum);
    }
    metric("stats_snapshots_total", "counter", "Snapshots the workers took for console pages and /metrics.", sum(&|p| p.stats.snapshots));
    metric("errors_sent_total", "counter", "ERROR frames sent.", sum(&|p| p.stats.errors_sent));
    o.push_str(&hists);
    let _ = writeln!(o, "# HELP romp_errors_by_word_total ERROR frames sent, by message word.\n# TYPE romp_errors_by_word_total counter");
    for w in ErrorWord::ALL {
        let n = sum(&|p| p.stats.errors_by_word[w.index()]);
        let _ = writeln!(o, "romp_errors_by_word_total{{message=\"{}\"}} {n}", label(w.as_str()));
    }
    let _ =
        writeln!(o, "# HELP romp_connections_closed_total Connections closed, by reason.\n# TYPE romp_connections_closed_total counter");
    for k in CloseKind::ALL {
        let n = sum(&|p| p.stats.closed_by[k.index()]);
        let _ = writeln!(o, "romp_connections_closed_total{{reason=\"{}\"}} {n}", k.label());
    }
    let _ = writeln!(
        o,
        "# HELP romp_worker_busy_seconds_total Time each worker spent working, not waiting for events (its rate is the worker's utilisation).\n# TYPE romp_worker_busy_seconds_total counter"
    );
    for p in parts {
        let _ = writeln!(o, "romp_worker_busy_seconds_total{{worker=\"{}\"}} {:.6}", p.worker, p.stats.busy_us as f64 / 1e6);
    }
    let mut by_transport: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for (t, n) in parts.iter().flat_map(|p| p.by_transport.iter()) {
        *by_transport.entry(t).or_default() += n;
    }
    let _ =
        writeln!(o, "# HELP romp_connections_by_transport Open client sessions by transport.\n# TYPE romp_connections_by_transport gauge");
    for (t, n) in by_transport {
        let _ = writeln!(o, "romp_connections_by_transport{{transport=\"{t}\"}} {n}");
    }
    let _ = writeln!(o, "# HELP romp_worker_turns_total Loop turns of each worker.\n# TYPE romp_worker_turns_total counter");
    for p in parts {
        let _ = writeln!(o, "romp_worker_turns_total{{worker=\"{}\"}} {}", p.worker, p.stats.turns);
    }
    let _ = writeln!(o, "# HELP romp_link_up Upstream link connected and subscribed (1) or not (0).\n# TYPE romp_link_up gauge");
    for l in parts.iter().flat_map(|p| p.links.iter()) {
        let _ = writeln!(o, "romp_link_up{{name=\"{}\",address=\"{}\"}} {}", label(&l.name), l.address, u8::from(l.state == "up"));
    }
    let mut dests: Vec<&DestInfo> = parts.iter().flat_map(|p| p.destinations.iter()).collect();
    let held: std::collections::HashSet<&str> = dests.iter().map(|d| d.name.as_str()).collect();
    let absent: Vec<DestInfo> = env
        .configured
        .keys()
        .filter(|n| !n.ends_with('*') && !held.contains(n.as_str()))
        .map(|n| DestInfo {
            name: n.to_string(),
            kind: if crate::broker::DestKind::of(n) == crate::broker::DestKind::Topic { "topic" } else { "queue" },
            ..DestInfo::default()
        })
        .collect();
    dests.extend(absent.iter());
    // The cap: configured destinations first (alerts name them), then the deepest; the rest
    // summed into one "(other)" series per kind.
    let configured = |d: &DestInfo| env.configured.contains_key(&d.name);
    dests.sort_by(|a, b| configured(b).cmp(&configured(a)).then(b.depth.cmp(&a.depth)).then(a.name.cmp(&b.name)));
    let listed = dests.len().min(env.max_series);
    let mut other: [DestInfo; 2] = [
        DestInfo { name: "(other)".into(), kind: "queue", ..DestInfo::default() },
        DestInfo { name: "(other)".into(), kind: "topic", ..DestInfo::default() },
    ];
    for d in &dests[listed..] {
        let t = &mut other[usize::from(d.kind == "topic")];
        t.subscribers += d.subscribers;
        t.depth += d.depth;
        t.ready += d.ready;
        t.unacked += d.unacked;
        t.enqueued += d.enqueued;
        t.delivered += d.delivered;
        t.bytes += d.bytes;
        t.acked += d.acked;
        t.nacked += d.nacked;
        t.redelivered += d.redelivered;
        t.dead_lettered += d.dead_lettered;
        t.expired += d.expired;
    }
    let unlisted = dests.len() - listed;
    let _ = writeln!(
        o,
        "# HELP romp_destinations_unlisted Destinations without series of their own (metrics_destinations), summed under destination=\"(other)\".\n# TYPE romp_destinations_unlisted gauge\nromp_destinations_unlisted {unlisted}"
    );
    let mut series: Vec<&DestInfo> = dests[..listed].to_vec();
    if unlisted > 0 {
        series.extend(other.iter().filter(|t| t.enqueued + t.depth as u64 + t.subscribers as u64 + t.delivered > 0));
    }
    type Column = (&'static str, &'static str, &'static str, fn(&DestInfo) -> u64);
    let per_dest: [Column; 12] = [
        ("destination_subscribers", "gauge", "Subscribers (consumers) of a destination.", |d| d.subscribers as u64),
        ("destination_depth", "gauge", "Messages a destination holds (ready + unacked).", |d| d.depth as u64),
        ("destination_ready", "gauge", "Messages waiting for a consumer.", |d| d.ready as u64),
        ("destination_unacked", "gauge", "Messages delivered and not acknowledged yet.", |d| d.unacked as u64),
        ("destination_bytes", "gauge", "Bytes of the messages a destination holds.", |d| d.bytes),
        ("destination_enqueued_total", "counter", "Messages published to a destination.", |d| d.enqueued),
        ("destination_delivered_total", "counter", "Deliveries from a destination.", |d| d.delivered),
        ("destination_acked_total", "counter", "Client acknowledgements (ACK) of a destination's messages.", |d| d.acked),
        ("destination_nacked_total", "counter", "NACKs of a destination's messages (requeued or rejected).", |d| d.nacked),
        ("destination_redelivered_total", "counter", "Deliveries of messages delivered before (redelivered:true).", |d| d.redelivered),
        (
            "destination_dead_lettered_total",
            "counter",
            "Messages that left for the dead letters (max_redeliveries, requeue:false, overflow).",
            |d| d.dead_lettered,
        ),
        ("destination_expired_total", "counter", "Messages that expired in a destination.", |d| d.expired),
    ];
    for (name, kind, help, f) in per_dest {
        let _ = writeln!(o, "# HELP romp_{name} {help}\n# TYPE romp_{name} {kind}");
        for d in &series {
            let _ = writeln!(o, "romp_{name}{{destination=\"{}\",kind=\"{}\"}} {}", label(&d.name), d.kind, f(d));
        }
    }
    o
}

/// Destinations the periodic stats messages go to (xtomp's name and romp's).
pub const STAT_DESTINATIONS: [&str; 2] = ["/xtomp/stat", "/romp/stat"];

/// Worker 0's periodic stats: asks every worker, renders when all answered, remembers each
/// destination's delivery total to report "delivered since last time".
#[derive(Debug, Default)]
pub struct Collector {
    due: usize,
    parts: Vec<WorkerSnapshot>,
    prev: HashMap<String, u64>,
}

impl Collector {
    /// A new round expecting `workers` answers (the caller asks them).
    pub fn start(&mut self, workers: usize) {
        if self.due > 0 {
            log::warn!("stats: the previous round had {} answers missing; starting a new one", self.due);
        }
        self.parts.clear();
        self.due = workers;
    }

    /// One worker answered; the JSON body once all have.
    pub fn add(&mut self, part: WorkerSnapshot, env: Env<'_>) -> Option<String> {
        if self.due == 0 {
            return None;
        }
        self.parts.push(part);
        self.due -= 1;
        if self.due > 0 {
            return None;
        }
        let parts = std::mem::take(&mut self.parts);
        let mut prev = HashMap::new();
        let mut dests = Vec::new();
        for d in parts.iter().flat_map(|p| p.destinations.iter()) {
            if !d.stats || STAT_DESTINATIONS.contains(&d.name.as_str()) {
                continue;
            }
            let since = d.delivered.saturating_sub(self.prev.get(&d.name).copied().unwrap_or(0));
            prev.insert(d.name.clone(), d.delivered);
            dests.push(serde_json::json!({
                "name": d.name,
                "kind": d.kind,
                "subscribers": d.subscribers,
                "size": d.depth,
                "delivered": since,
                "total": d.delivered,
                "enqueued": d.enqueued,
            }));
        }
        self.prev = prev;
        let refs: Vec<&WorkerSnapshot> = parts.iter().collect();
        let mut server = totals(&refs, env);
        server["name"] = env.server.into();
        let v = serde_json::json!({
            "server": server,
            "destinations": dests,
            "links": parts.iter().flat_map(|p| p.links.iter()).collect::<Vec<_>>(),
        });
        Some(v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_kinds_sit_at_their_index_with_distinct_labels() {
        for (i, k) in CloseKind::ALL.iter().enumerate() {
            assert_eq!(k.index(), i, "{k:?}");
        }
        let mut labels: Vec<&str> = CloseKind::ALL.iter().map(|k| k.label()).collect();
        labels.sort();
        labels.dedup();
        assert_eq!(labels.len(), CloseKind::ALL.len());
    }
}
