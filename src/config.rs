//! Broker configuration: every key, its finite default, loading and validation.
//!
//! Loaded once on the main thread (and handed to workers as an `Arc<Config>`). Unknown keys and
//! bad values are errors that name the key and the file; without a file the built-in defaults
//! run. `conf/romp.toml` documents every key; keep the two in step.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The smallest non-zero `max_memory` (16 MiB): below it the broker could not hold one
/// default-sized message per worker.
pub const MIN_MAX_MEMORY: u64 = 16 << 20;

/// What a topic subscriber that exceeds `max_pending_bytes` gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SlowConsumerPolicy {
    /// Drop the message for that subscriber only, and count it (`dropped_slow` in stats, a
    /// rate-limited warning in the log).
    Drop,
    /// Send ERROR `slow consumer` and close the subscriber's connection.
    Disconnect,
}

/// What a queue over `max_messages` or `max_queue_bytes` does with one more SEND.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Overflow {
    /// Accept it, and stop reading the connections that send to the queue until it is back
    /// under three quarters of its limits (producer flow control; nobody is disconnected).
    Block,
    /// Refuse it: ERROR `q flup` to the producer, which is closed.
    Reject,
    /// Accept it and dead-letter the oldest ready message (`dlq-reason:overflow`), counted.
    DropHead,
}

impl Wildcards {
    /// The value as written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Wildcards::Activemq => "activemq",
            Wildcards::Rabbitmq => "rabbitmq",
            Wildcards::Off => "off",
        }
    }
}

/// The log's line format (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LogFormat {
    Text,
    Json,
}

/// How a topic SUBSCRIBE's destination may name many topics at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Wildcards {
    /// ActiveMQ's: `.` separates words, `*` is one word, `>` (last) is the rest, at least one.
    Activemq,
    /// RabbitMQ's topic exchange: `.` separates words, `*` is one word, `#` zero or more.
    Rabbitmq,
    /// Names are literal.
    Off,
}

/// Whether a destination's messages go to the durable log (queues, and topics' durable
/// subscriptions; `data_dir = ""` turns the log off altogether).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Persistence {
    /// As the SEND says: `persistent:true` is logged, anything else stays in memory.
    Header,
    /// Every message is logged, and delivered with `persistent:true`.
    Always,
    /// Nothing is logged; a `persistent` header is removed so no consumer is misled.
    Never,
}

pub use crate::journal::syncer::SyncMode;

/// Per-destination settings, `[destinations."NAME"]`. NAME is an exact destination, or a
/// prefix pattern ending in `*` (`"/topic/prices.*"`); an exact entry wins over patterns and a
/// longer pattern over a shorter one. Every key is optional and falls back to the server value.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DestConfig {
    /// Subscribers at once [dest flup].
    pub max_connections: Option<usize>,
    /// Messages held: a queue's ready + unacknowledged, or a topic's retained (`min_delivery`)
    /// [q flup].
    pub max_messages: Option<usize>,
    /// Bytes held (same scope as `max_messages`) [q flup].
    pub max_queue_bytes: Option<usize>,
    /// Body bytes of one SEND (at most the server's `max_message_size`) [msg flup].
    pub max_message_size: Option<usize>,
    /// Default time to live in ms for messages without an `expires` header (0 = none).
    pub expiry: Option<u64>,
    /// Topics: 0 = a message nobody is subscribed to is dropped; N >= 1 = kept until delivered
    /// N times in total, and replayed to new subscribers meanwhile.
    pub min_delivery: Option<u32>,
    /// Topics: route on the value of `filter_header`; subscribers send `filter:NAME=VALUE`.
    pub filter: Option<bool>,
    pub filter_header: Option<String>,
    /// Forbid SUBSCRIBE (read) or SEND (write) (ERROR `blocked`); the `web_` forms only from the web port.
    pub read_block: Option<bool>,
    pub write_block: Option<bool>,
    pub web_read_block: Option<bool>,
    pub web_write_block: Option<bool>,
    /// Every subscription is auto-ack, whatever its `ack` header says.
    pub auto_ack: Option<bool>,
    pub slow_consumer: Option<SlowConsumerPolicy>,
    /// Queues: what a SEND to a full queue does.
    pub overflow: Option<Overflow>,
    /// Queues with `overflow = "block"`: ms a producer may stay blocked before it gets ERROR
    /// `q flup` (0 = no limit).
    pub block_timeout: Option<u64>,
    /// List this destination in the periodic stats messages.
    pub stats: Option<bool>,
    /// Queues: deliveries after the first before a message is dead-lettered (0 = no limit).
    pub max_redeliveries: Option<u32>,
    /// Queues: where dead letters go ("" = discard them, counted and logged). Default
    /// `/queue/DLQ.<name without /queue/>`.
    pub dead_letter: Option<String>,
    /// Queues: `"header"` (default: `persistent:true` SENDs are logged), `"always"` or `"never"`.
    pub persistence: Option<Persistence>,
}

/// An upstream link, `[downstreams."NAME"]`: this broker dials `address`, subscribes to
/// `NAME/up` there and re-publishes what arrives on its own destination NAME.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DownstreamConfig {
    /// `ip:port` of the edge broker.
    pub address: String,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// The remote destination (default `NAME/up`).
    pub remote: Option<String>,
    /// First reconnect delay in ms; doubles per failure up to `reconnect_max`.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min: u64,
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max: u64,
    /// Unacknowledged messages the edge may send at once.
    #[serde(default = "default_link_prefetch")]
    pub prefetch: u32,
    /// Dial the edge over TLS, trusting the CAs in `tls_ca` (PEM), checking the edge's
    /// certificate for `tls_name` (default: the address's IP).
    #[serde(default)]
    pub tls: bool,
    #[serde(default)]
    pub tls_ca: Option<String>,
    #[serde(default)]
    pub tls_name: Option<String>,
}

impl DownstreamConfig {
    /// The TLS client configuration and the server name to check, when `tls` is on.
    pub fn tls_client(&self) -> Result<Option<(std::sync::Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>, String> {
        if !self.tls {
            return Ok(None);
        }
        let ca = self.tls_ca.as_deref().ok_or("tls = true needs tls_ca (the CA that signed the edge's certificate)")?;
        let cfg = crate::tls::client_config("tls_ca", Some(ca)).map_err(|e| e.to_string())?;
        let host = match &self.tls_name {
            Some(n) => n.clone(),
            None => self.address.parse::<std::net::SocketAddr>().map_err(|e| e.to_string())?.ip().to_string(),
        };
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| format!("tls_name {host:?} is not a DNS name or IP address"))?;
        Ok(Some((cfg, name)))
    }
}

fn default_reconnect_min() -> u64 {
    100
}
fn default_reconnect_max() -> u64 {
    30_000
}
fn default_link_prefetch() -> u32 {
    1000
}

/// Configuration errors, each naming the file and the key where known.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: key `{key}`: {message}")]
    Invalid { file: String, key: &'static str, message: String },
    #[error("{file}: {source}")]
    Tls { file: String, source: crate::tls::TlsError },
}

/// Edits (insertions, deletions, substitutions) that turn `a` into `b`.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// A parse error naming an unknown key, with the closest known key suggested first (serde
/// lists every key it expected; a typo is easier to see with the one meant).
fn did_you_mean(message: &str) -> String {
    let Some(rest) = message.split("unknown field `").nth(1) else { return message.to_string() };
    let Some(unknown) = rest.split('`').next() else { return message.to_string() };
    let expected = message.split("expected one of").nth(1).unwrap_or("");
    let best =
        expected.split('`').skip(1).step_by(2).map(|k| (edit_distance(unknown, k), k)).filter(|(d, k)| *d <= 2.max(k.len() / 3)).min();
    match best {
        Some((_, k)) => format!("unknown key `{unknown}`: did you mean `{k}`? ({message})"),
        None => message.to_string(),
    }
}

/// The whole configuration. Field names are the TOML keys.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Server name, sent in CONNECTED `server` and logged.
    pub name: String,
    /// Address the STOMP listeners bind to.
    pub bind_address: String,
    /// STOMP-over-TCP ports. Port 0 asks the OS for one (tests).
    pub ports: Vec<u16>,
    /// Worker threads; 0 = one per online core.
    pub workers: usize,
    /// Pin worker N to core N (a failure is a warning). On by default for the `romp` binary
    /// and in configuration files, which give the broker the machine; off in
    /// `Config::default()`, since a host program embedding romp has threads of its own.
    #[serde(default = "pin_by_default")]
    pub pin_workers: bool,
    /// error, warn, info, debug or trace.
    pub log_level: String,
    /// How log lines are written to stderr: `text` (a timestamp, the level, the message) or
    /// `json` (one object per line: `ts`, `level`, `msg`), for log shippers.
    pub log_format: LogFormat,
    /// Shared login. With `passcode`, every client must present it (unless `user_file` has them).
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// A passwd file: `name:hash[:true]` per line (see docs/auth.md).
    pub user_file: Option<PathBuf>,
    /// Open client connections across all workers; accept pauses at the limit and resumes below
    /// 90% of it.
    pub max_connections: usize,
    /// Milliseconds a new connection has to complete CONNECT.
    pub connect_timeout: u64,
    /// Body bytes of one SEND.
    pub max_message_size: usize,
    /// Header lines in one frame.
    pub max_headers: usize,
    /// Bytes of one `name:value` header line, EOL excluded.
    pub max_header_len: usize,
    /// Subscriptions per connection.
    pub max_subs: usize,
    /// Open transactions per connection.
    pub max_transactions: usize,
    /// Frames (SENDs, ACKs, NACKs) held in one transaction.
    pub max_tx_frames: usize,
    /// Body bytes held in one transaction.
    pub max_tx_bytes: usize,
    /// Bytes waiting to be written to one connection before the slow-consumer policy applies.
    pub max_pending_bytes: usize,
    /// What happens to a topic subscriber over `max_pending_bytes`.
    pub slow_consumer: SlowConsumerPolicy,
    /// What a SEND to a full queue does (`block`, `reject` or `drop-head`).
    pub overflow: Overflow,
    /// ms a producer may stay blocked by a full queue before it gets ERROR `q flup` (0 = no
    /// limit).
    pub block_timeout: u64,
    /// Unacknowledged messages in flight per queue subscription, unless the SUBSCRIBE sets
    /// `prefetch-count` (or `activemq.prefetchSize`).
    pub prefetch: u32,
    /// Upper bound for a client's `prefetch-count`.
    pub max_prefetch: u32,
    /// Messages held by one queue (ready + unacknowledged); past it the `overflow` policy applies.
    pub max_messages: usize,
    /// Body bytes held by one queue; past it the `overflow` policy applies.
    pub max_queue_bytes: usize,
    /// Heart-beat floor in ms: client requests below it (e.g. `1,1`) are raised to it.
    pub heart_beat_min: u32,
    /// Heart-beat ceiling in ms.
    pub heart_beat_max: u32,
    /// A client that promised heart-beats every T ms is closed after T x this factor of silence.
    pub heart_beat_grace: f64,
    /// Capacity of each inter-worker channel, in messages.
    pub bus_capacity: usize,
    /// Serve HTTP GET and STOMP over WebSocket on `web_port`.
    pub enable_web: bool,
    /// The web port (0 lets the OS pick one).
    pub web_port: u16,
    /// Accept WebSocket upgrades on the web port.
    pub websockets: bool,
    /// Paths that accept a WebSocket upgrade.
    pub websocket_paths: Vec<String>,
    /// Allowed `Origin` values for WebSocket upgrades (`*` = any). Requests without Origin
    /// (non-browser clients) are always allowed.
    pub websockets_origin: Vec<String>,
    /// Send STOMP frames as text WebSocket messages when they are valid UTF-8 (binary otherwise).
    pub websocket_text: bool,
    /// Serve static files from this directory instead of the built-in console page. Read once at
    /// start (at most 32 MiB in total).
    pub web_root: Option<PathBuf>,
    /// Serve the JSON info pages (`/romp/info`, `/romp/destinations`).
    pub enable_console: bool,
    /// The stats pages (`/metrics`, `/romp/info`, `/romp/destinations`) answer without
    /// credentials. Off: on a broker with users they need an admin login (HTTP Basic) or, for
    /// `/metrics`, the `metrics_token` bearer.
    pub console_public: bool,
    /// Serve `/metrics` on the web port too (behind the same credentials as on the admin port),
    /// for deployments that keep the admin port private (the container image does).
    pub web_metrics: bool,
    /// A bearer token (`Authorization: Bearer TOKEN`) that opens `/metrics` to scrapers. Setting
    /// it protects the stats pages even on a broker without users.
    pub metrics_token: Option<String>,
    /// Bytes of one HTTP request head.
    pub max_http_head: usize,
    /// Milliseconds a closing connection lingers to flush its last frames (ERROR, RECEIPT).
    pub linger: u64,
    /// Milliseconds to wait for connections to flush on SIGINT/SIGTERM before closing anyway.
    pub shutdown_timeout: u64,
    /// SUBSCRIBE's `selector` header (JMS syntax, see `romp::selector`); off, a SUBSCRIBE
    /// with one is refused with ERROR rather than served unfiltered.
    pub selectors: bool,
    /// The wildcard syntax of topic subscriptions.
    pub wildcards: Wildcards,
    /// Destinations with series of their own on `/metrics`, at most: configured ones first,
    /// then the deepest; the others are summed under `destination="(other)"` and counted in
    /// `romp_destinations_unlisted`, so a broker with very many destinations keeps a small
    /// scrape.
    pub metrics_destinations: usize,
    /// Scheduled messages (`AMQ_SCHEDULED_DELAY` and kin) held at once, server-wide; each
    /// worker holds at most its share (this / workers, rounded up). Past it a scheduled SEND
    /// gets ERROR `q flup`.
    pub max_scheduled: usize,
    /// Producer ids (`dedup-id`, `_AMQ_DUPL_ID`) remembered for de-duplication, server-wide
    /// (each worker its share): a SEND repeating one of them on the same destination is
    /// acknowledged but not enqueued again.
    pub dedup_window: usize,
    /// Wildcard subscriptions held at once, server-wide (each is registered with every worker,
    /// so each costs on every one); past it such a SUBSCRIBE gets ERROR `subs flup`.
    pub max_wildcard_subs: usize,
    /// Accept SEND/SUBSCRIBE to destinations not listed in `destinations` (false: ERROR
    /// `destination unknown`).
    pub create_destinations: bool,
    /// Destinations (queues, and topics with subscribers or kept messages) held at once,
    /// server-wide; each worker holds at most its share (this / workers, rounded up). Past it
    /// a SEND or SUBSCRIBE that would create one gets ERROR `dest flup`.
    pub max_destinations: usize,
    /// Bytes the broker may hold in messages, connection buffers, transactions and
    /// subscription state, process-wide (its own accounting, see `romp::memory`). At it, every
    /// publisher is paused (its connection is no longer read; nobody is disconnected) until
    /// usage is back under 90% of it; consumers keep draining. 0 = 40% of the machine's memory
    /// (or the container's limit), reported at start.
    pub max_memory: u64,
    /// Queues: deliveries after the first before a message is dead-lettered (0 = no limit).
    pub max_redeliveries: u32,
    /// Per-destination settings.
    pub destinations: BTreeMap<String, DestConfig>,
    /// Publish stats JSON to `/xtomp/stat` and `/romp/stat` every `stats_interval` ms.
    pub stats: bool,
    pub stats_interval: u64,
    /// The admin port: STOMP for admin users (`/virt/admin/...`) and HTTP (`/metrics`, JSON).
    pub enable_admin: bool,
    pub admin_port: u16,
    pub admin_bind_address: String,
    /// Token auth: login `"user <unix-seconds> <random>"`, passcode
    /// base64(sha1(login + secret)), valid for `secret_timeout` ms, usable once.
    pub secret: Option<String>,
    pub secret_timeout: u64,
    /// Upstream links.
    pub downstreams: BTreeMap<String, DownstreamConfig>,
    /// Microseconds an idle worker spins, watching its inboxes and sockets, before it sleeps:
    /// trades a little CPU for lower hand-off latency between workers. 0 = sleep at once.
    pub idle_spin_us: u64,
    /// Where the durable log lives (relative to the working directory); `""` = no log: every
    /// message stays in memory and a restart loses them all. `--data-dir` overrides it.
    pub data_dir: String,
    /// When the log is fdatasynced: `"batch"`, `"interval:<ms>"` (1 to 10000) or `"none"`
    /// (see [`SyncMode`]).
    pub sync: String,
    /// Bytes of one log segment file (pre-allocated when it is created).
    pub segment_size: u64,
    /// Bytes the log may use on disk, all workers together (0 = no limit). At it, persistent
    /// SENDs get ERROR `disk flup`; other traffic goes on.
    pub max_disk_bytes: u64,
    /// Free bytes the log's file system must keep; under it, persistent SENDs get ERROR
    /// `disk flup` as above.
    pub min_free_disk: u64,
    /// STOMP-over-TLS ports (`--tls-port N`; 61614 by convention); empty = none.
    pub tls_ports: Vec<u16>,
    /// The web port's TLS twin: HTTPS and WSS (e.g. 8443); unset = none.
    pub web_tls_port: Option<u16>,
    /// The admin port speaks TLS instead of plain TCP.
    pub admin_tls: bool,
    /// The server's certificate chain and its private key (PEM files), for every TLS port.
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// The CA (PEM) that signs client certificates, with `tls_client_auth`.
    pub tls_client_ca: Option<String>,
    /// "none", "optional" or "required": whether TLS clients present a certificate.
    pub tls_client_auth: crate::tls::ClientAuth,
    /// "none" or "cn": a verified client certificate's common name is the login.
    pub tls_cert_login: crate::tls::CertLogin,
    /// What no `[acl]` rule covers: "allow" or "deny".
    pub acl_default: crate::acl::Default,
    /// Named groups of logins, for `[acl]` lists.
    pub groups: BTreeMap<String, Vec<String>>,
    /// Access rules per destination pattern (exact name or `prefix*`, `{user}` = the login).
    pub acl: BTreeMap<String, crate::acl::Rule>,
    /// `--repair` (command line only, never a file key): a start that meets damaged records in
    /// the log skips them, logging each, instead of refusing to start.
    #[serde(skip)]
    pub repair: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "romp".into(),
            bind_address: "127.0.0.1".into(),
            ports: vec![61613],
            workers: 0,
            pin_workers: false,
            log_level: "info".into(),
            log_format: LogFormat::Text,
            login: None,
            passcode: None,
            user_file: None,
            max_connections: 10_000,
            connect_timeout: 10_000,
            max_message_size: 1 << 20,
            max_headers: 64,
            max_header_len: 4096,
            max_subs: 1024,
            max_transactions: 16,
            max_tx_frames: 10_000,
            max_tx_bytes: 16 << 20,
            max_pending_bytes: 4 << 20,
            slow_consumer: SlowConsumerPolicy::Disconnect,
            overflow: Overflow::Block,
            block_timeout: 0,
            prefetch: 1000,
            max_prefetch: 100_000,
            max_messages: 100_000,
            max_queue_bytes: 256 << 20,
            heart_beat_min: 500,
            heart_beat_max: 3_600_000,
            heart_beat_grace: 2.0,
            bus_capacity: 8192,
            enable_web: true,
            web_port: 8080,
            websockets: true,
            websocket_paths: vec!["/".into(), "/stomp".into()],
            websockets_origin: vec!["*".into()],
            websocket_text: false,
            web_root: None,
            enable_console: true,
            console_public: false,
            web_metrics: false,
            metrics_token: None,
            max_http_head: 8192,
            linger: 2_000,
            shutdown_timeout: 3_000,
            selectors: true,
            wildcards: Wildcards::Activemq,
            max_wildcard_subs: 10_000,
            max_scheduled: 100_000,
            metrics_destinations: 1000,
            dedup_window: 100_000,
            create_destinations: true,
            max_destinations: 100_000,
            max_memory: 0,
            max_redeliveries: 0,
            destinations: BTreeMap::new(),
            stats: false,
            stats_interval: 60_000,
            enable_admin: true,
            admin_port: 61616,
            admin_bind_address: "127.0.0.1".into(),
            secret: None,
            secret_timeout: 60_000,
            downstreams: BTreeMap::new(),
            idle_spin_us: 50,
            data_dir: "romp-data".into(),
            sync: "batch".into(),
            segment_size: 16 << 20,
            max_disk_bytes: 0,
            min_free_disk: 50 << 20,
            repair: false,
            acl_default: crate::acl::Default::Allow,
            groups: BTreeMap::new(),
            acl: BTreeMap::new(),
            tls_ports: Vec::new(),
            web_tls_port: None,
            admin_tls: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_auth: crate::tls::ClientAuth::None,
            tls_cert_login: crate::tls::CertLogin::None,
        }
    }
}

/// The most workers the routing tables support.
pub const MAX_WORKERS: usize = 256;

/// `pin_workers` when a configuration file does not say: the standalone broker's default.
fn pin_by_default() -> bool {
    true
}

impl Config {
    /// Parse TOML text; `file` names the source in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| ConfigError::Parse { file: file.into(), message: did_you_mean(e.to_string().trim_end()) })?;
        cfg.validate(file)?;
        Ok(cfg)
    }

    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
        Config::from_toml(&text, &file)
    }

    /// Whether any listener speaks TLS.
    pub fn tls_wanted(&self) -> bool {
        !self.tls_ports.is_empty() || self.web_tls_port.is_some() || self.admin_tls
    }

    /// The TLS server configuration (certificate, key and client CA loaded), if any listener
    /// speaks TLS. `file` names the source in errors.
    pub fn tls_server(&self, file: &str) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>, ConfigError> {
        if !self.tls_wanted() {
            return Ok(None);
        }
        let need = |key: &'static str, v: &Option<String>| match v {
            Some(f) => Ok(f.clone()),
            None => Err(ConfigError::Invalid {
                file: file.into(),
                key,
                message: "a TLS port is configured (tls_ports, web_tls_port or admin_tls): set the PEM file".into(),
            }),
        };
        let (cert, key) = (need("tls_cert", &self.tls_cert)?, need("tls_key", &self.tls_key)?);
        let files =
            crate::tls::ServerFiles { cert: &cert, key: &key, client_ca: self.tls_client_ca.as_deref(), client_auth: self.tls_client_auth };
        crate::tls::server_config(&files).map(Some).map_err(|source| ConfigError::Tls { file: file.into(), source })
    }

    /// Workers to start: `workers`, or the number of online cores.
    pub fn worker_count(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(MAX_WORKERS)
        }
    }

    /// Check cross-key rules. `file` names the source in errors.
    /// Every count, size and duration key with its allowed range (inclusive), checked by
    /// [`Config::validate`] and so by `--check-config` and reloads. The ranges keep a broker that
    /// starts able to work: a channel or buffer of `u64::MAX`, a spin of hours, or a frame limit
    /// past what memory can hold are configuration errors, not a crash later.
    pub fn ranges(&self) -> [(&'static str, u64, u64, u64); 30] {
        const MIB: u64 = 1 << 20;
        const DAY_MS: u64 = 86_400_000;
        [
            ("max_connections", self.max_connections as u64, 1, 1_000_000),
            ("max_destinations", self.max_destinations as u64, 1, 10_000_000),
            ("max_wildcard_subs", self.max_wildcard_subs as u64, 1, 1_000_000),
            ("max_scheduled", self.max_scheduled as u64, 1, 100_000_000),
            ("dedup_window", self.dedup_window as u64, 1, 10_000_000),
            ("metrics_destinations", self.metrics_destinations as u64, 0, 1_000_000),
            ("connect_timeout", self.connect_timeout, 1, 3_600_000),
            ("max_message_size", self.max_message_size as u64, 1, 256 * MIB),
            ("max_headers", self.max_headers as u64, 1, 10_000),
            ("max_header_len", self.max_header_len as u64, 64, MIB),
            ("max_subs", self.max_subs as u64, 1, 100_000),
            ("max_transactions", self.max_transactions as u64, 1, 1024),
            ("max_tx_frames", self.max_tx_frames as u64, 1, 1_000_000),
            ("max_tx_bytes", self.max_tx_bytes as u64, 1, 1024 * MIB),
            ("max_pending_bytes", self.max_pending_bytes as u64, 65_537, 4096 * MIB),
            ("max_prefetch", self.max_prefetch as u64, 1, 1_000_000),
            ("max_messages", self.max_messages as u64, 1, 100_000_000),
            ("max_queue_bytes", self.max_queue_bytes as u64, 1, 64 * 1024 * MIB),
            ("heart_beat_max", self.heart_beat_max as u64, 1, DAY_MS),
            ("bus_capacity", self.bus_capacity as u64, 1, 1_000_000),
            ("max_http_head", self.max_http_head as u64, 1024, MIB),
            ("linger", self.linger, 0, 60_000),
            ("shutdown_timeout", self.shutdown_timeout, 0, 600_000),
            ("stats_interval", self.stats_interval, 100, DAY_MS),
            ("secret_timeout", self.secret_timeout, 1, DAY_MS),
            ("idle_spin_us", self.idle_spin_us, 0, 10_000),
            ("block_timeout", self.block_timeout, 0, DAY_MS),
            ("max_memory", self.max_memory, 0, 1 << 50),
            ("segment_size", self.segment_size, 64 * 1024, 1024 * MIB),
            ("min_free_disk", self.min_free_disk, 0, 1 << 50),
        ]
    }

    /// The memory limit in force: `max_memory`, or its default share of the machine.
    pub fn memory_limit(&self) -> u64 {
        if self.max_memory == 0 {
            crate::memory::default_limit()
        } else {
            self.max_memory
        }
    }

    pub fn validate(&self, file: &str) -> Result<(), ConfigError> {
        let bad = |key: &'static str, message: String| Err(ConfigError::Invalid { file: file.into(), key, message });
        if self.ports.is_empty() {
            return bad("ports", "at least one port is needed".into());
        }
        if self.workers > MAX_WORKERS {
            return bad("workers", format!("at most {MAX_WORKERS}"));
        }
        if self.bind_address.parse::<std::net::IpAddr>().is_err() {
            return bad("bind_address", format!("{:?} is not an IP address", self.bind_address));
        }
        if log_level(&self.log_level).is_none() {
            return bad("log_level", format!("{:?} is not one of error, warn, info, debug, trace", self.log_level));
        }
        if SyncMode::parse(&self.sync).is_none() {
            return bad("sync", format!("{:?} is not \"batch\", \"interval:<ms>\" (1 to 10000) or \"none\"", self.sync));
        }
        if self.login.is_some() != self.passcode.is_some() {
            return bad("passcode", "login and passcode go together".into());
        }
        if self.tls_client_auth != crate::tls::ClientAuth::None && self.tls_client_ca.is_none() {
            return bad("tls_client_ca", "tls_client_auth asks for client certificates: name the CA that signs them".into());
        }
        if self.tls_cert_login == crate::tls::CertLogin::Cn && self.tls_client_auth == crate::tls::ClientAuth::None {
            return bad("tls_cert_login", "\"cn\" takes the login from a client certificate: set tls_client_auth".into());
        }
        if self.tls_ports.iter().any(|p| *p != 0 && self.ports.contains(p)) {
            return bad("tls_ports", "a port cannot be both plain (ports) and TLS (tls_ports)".into());
        }
        // Files the configuration names must be readable now, not only when the broker starts.
        if let Some(p) = &self.user_file {
            if let Err(e) = std::fs::read(p) {
                return bad("user_file", format!("{}: cannot read it: {e}", p.display()));
            }
        }
        for pattern in self.acl.keys() {
            if pattern.trim_end_matches('*').contains('*') || pattern.is_empty() {
                return bad("acl", format!("{pattern:?}: a pattern is an exact name or a prefix ending in one '*'"));
            }
        }
        // The files are read here too, so --check-config and reloads catch a bad certificate.
        self.tls_server(file)?;
        let positive: [(&'static str, usize); 12] = [
            ("max_connections", self.max_connections),
            ("max_message_size", self.max_message_size),
            ("max_headers", self.max_headers),
            ("max_header_len", self.max_header_len),
            ("max_subs", self.max_subs),
            ("max_transactions", self.max_transactions),
            ("max_tx_frames", self.max_tx_frames),
            ("max_tx_bytes", self.max_tx_bytes),
            ("max_messages", self.max_messages),
            ("max_queue_bytes", self.max_queue_bytes),
            ("bus_capacity", self.bus_capacity),
            ("connect_timeout", self.connect_timeout as usize),
        ];
        for (key, v) in positive {
            if v == 0 {
                return bad(key, "must be greater than 0".into());
            }
        }
        for (key, v, min, max) in self.ranges() {
            if v < min || v > max {
                return bad(key, format!("{v} is outside its range {min}..={max}"));
            }
        }
        if self.max_memory != 0 && self.max_memory < MIN_MAX_MEMORY {
            return bad(
                "max_memory",
                format!("{} is too small: 0 (40% of the machine's memory) or at least {MIN_MAX_MEMORY}", self.max_memory),
            );
        }
        if self.max_http_head < 1024 {
            return bad("max_http_head", "must be at least 1024".into());
        }
        if let Some(p) = self.websocket_paths.iter().find(|p| !p.starts_with('/')) {
            return bad("websocket_paths", format!("{p:?} must start with /"));
        }
        if self.enable_web && self.ports.contains(&self.web_port) && self.web_port != 0 {
            return bad("web_port", format!("{} is also in ports", self.web_port));
        }
        if self.max_header_len < 64 {
            return bad("max_header_len", "must be at least 64".into());
        }
        if self.max_pending_bytes < self.max_message_size + 64 * 1024 {
            return bad(
                "max_pending_bytes",
                format!("must hold one largest message: at least max_message_size + 65536 = {}", self.max_message_size + 65536),
            );
        }
        if self.prefetch == 0 || self.prefetch > self.max_prefetch {
            return bad("prefetch", format!("must be between 1 and max_prefetch ({})", self.max_prefetch));
        }
        if self.heart_beat_min == 0 || self.heart_beat_min > self.heart_beat_max {
            return bad("heart_beat_min", "must be between 1 and heart_beat_max".into());
        }
        if !(1.1..=10.0).contains(&self.heart_beat_grace) {
            return bad("heart_beat_grace", "must be between 1.1 and 10".into());
        }
        if self.stats_interval < 100 {
            return bad("stats_interval", "must be at least 100 ms".into());
        }
        if self.admin_bind_address.parse::<std::net::IpAddr>().is_err() {
            return bad("admin_bind_address", format!("{:?} is not an IP address", self.admin_bind_address));
        }
        if self.enable_admin
            && self.admin_port != 0
            && (self.ports.contains(&self.admin_port) || (self.enable_web && self.web_port == self.admin_port))
        {
            return bad("admin_port", format!("{} is also used by ports or web_port", self.admin_port));
        }
        if self.secret.as_deref() == Some("") {
            return bad("secret", "must not be empty".into());
        }
        if self.secret_timeout == 0 {
            return bad("secret_timeout", "must be greater than 0".into());
        }
        for (name, d) in &self.destinations {
            let bad_dest = |key: &str, message: String| {
                Err(ConfigError::Invalid {
                    file: file.into(),
                    key: "destinations",
                    message: format!("[destinations.{name:?}] {key}: {message}"),
                })
            };
            if name.is_empty()
                || name.chars().any(char::is_control)
                || (name.contains('*') && !name.ends_with('*'))
                || name.matches('*').count() > 1
            {
                return bad_dest("name", "must be a destination, or a prefix ending in a single *".into());
            }
            if d.max_message_size.is_some_and(|m| m == 0 || m > self.max_message_size) {
                return bad_dest(
                    "max_message_size",
                    format!("must be between 1 and the server's max_message_size ({})", self.max_message_size),
                );
            }
            if d.max_messages == Some(0) || d.max_queue_bytes == Some(0) || d.max_connections == Some(0) {
                return bad_dest("max_messages/max_queue_bytes/max_connections", "must be greater than 0".into());
            }
            if d.filter == Some(true) && d.filter_header.as_deref().unwrap_or("").is_empty() {
                return bad_dest("filter", "filter = true needs filter_header".into());
            }
            if d.filter_header.as_deref().is_some_and(|h| h.is_empty() || h.contains([':', '=', '\n'])) {
                return bad_dest("filter_header", "must be a header name (no ':' or '=')".into());
            }
            if d.filter_header.is_some() && d.filter != Some(false) && name.starts_with("/queue/") {
                return bad_dest("filter", "filters route topics; queues have competing consumers".into());
            }
            if let Some(dl) = &d.dead_letter {
                if dl.chars().any(char::is_control) || dl.contains('*') {
                    return bad_dest("dead_letter", "must be a destination name or \"\"".into());
                }
            }
        }
        for (name, l) in &self.downstreams {
            let bad_link = |key: &str, message: String| {
                Err(ConfigError::Invalid {
                    file: file.into(),
                    key: "downstreams",
                    message: format!("[downstreams.{name:?}] {key}: {message}"),
                })
            };
            if name.is_empty() || name.chars().any(char::is_control) || name.contains('*') {
                return bad_link("name", "must be a destination name".into());
            }
            if l.address.parse::<std::net::SocketAddr>().is_err() {
                return bad_link("address", format!("{:?} is not ip:port", l.address));
            }
            if l.login.is_some() != l.passcode.is_some() {
                return bad_link("passcode", "login and passcode go together".into());
            }
            if l.reconnect_min == 0 || l.reconnect_min > l.reconnect_max {
                return bad_link("reconnect_min", "must be between 1 and reconnect_max".into());
            }
            if l.prefetch == 0 || l.prefetch > self.max_prefetch {
                return bad_link("prefetch", format!("must be between 1 and max_prefetch ({})", self.max_prefetch));
            }
            if let Err(e) = l.tls_client() {
                return bad_link("tls", e);
            }
        }
        Ok(())
    }

    /// The parsed `sync` (validated at load; `Batch` if somehow not).
    pub fn sync_mode(&self) -> SyncMode {
        SyncMode::parse(&self.sync).unwrap_or(SyncMode::Batch)
    }

    /// The parser limits these settings imply.
    pub fn limits(&self) -> crate::stomp::Limits {
        crate::stomp::Limits { max_headers: self.max_headers, max_header_len: self.max_header_len, max_body: self.max_message_size }
    }
}

/// Keys that take effect only at start: a reload keeps their old values and says so.
pub const RESTART_KEYS: &[&str] = &[
    "name",
    "bind_address",
    "ports",
    "tls_ports",
    "web_tls_port",
    "admin_tls",
    "workers",
    "pin_workers",
    "bus_capacity",
    "enable_web",
    "web_port",
    "websockets",
    "websocket_paths",
    "web_root",
    "enable_admin",
    "admin_port",
    "admin_bind_address",
    "stats",
    "stats_interval",
    "downstreams",
    "idle_spin_us",
    "data_dir",
    "sync",
    "segment_size",
];

/// What a reload changes: the configuration to run with (restart-only keys kept from `old`),
/// the keys applied, and the keys that need a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct ReloadPlan {
    pub config: Config,
    pub applied: Vec<String>,
    pub need_restart: Vec<String>,
}

/// Compare `old` and `new` key by key.
pub fn plan_reload(old: &Config, new: &Config) -> ReloadPlan {
    let (Ok(serde_json::Value::Object(o)), Ok(serde_json::Value::Object(n))) = (serde_json::to_value(old), serde_json::to_value(new))
    else {
        return ReloadPlan { config: old.clone(), applied: Vec::new(), need_restart: Vec::new() };
    };
    let mut merged = n.clone();
    let (mut applied, mut need_restart) = (Vec::new(), Vec::new());
    for (k, v) in &n {
        if o.get(k) == Some(v) {
            continue;
        }
        if RESTART_KEYS.contains(&k.as_str()) {
            need_restart.push(k.clone());
            if let Some(ov) = o.get(k) {
                merged.insert(k.clone(), ov.clone());
            }
        } else {
            applied.push(k.clone());
        }
    }
    let config = serde_json::from_value(serde_json::Value::Object(merged)).unwrap_or_else(|_| old.clone());
    ReloadPlan { config, applied, need_restart }
}

/// Map a `log_level` value to a filter.
pub fn log_level(s: &str) -> Option<log::LevelFilter> {
    Some(match s {
        "error" => log::LevelFilter::Error,
        "warn" => log::LevelFilter::Warn,
        "info" => log::LevelFilter::Info,
        "debug" => log::LevelFilter::Debug,
        "trace" => log::LevelFilter::Trace,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_memory_is_zero_for_the_default_share_or_at_least_16_mib() {
        for (v, ok) in [(0, true), (MIN_MAX_MEMORY, true), (MIN_MAX_MEMORY - 1, false), (1, false)] {
            let r = Config { max_memory: v, ..Config::default() }.validate("t.toml");
            assert_eq!(r.is_ok(), ok, "max_memory = {v}: {r:?}");
            if let Err(e) = r {
                assert!(e.to_string().contains("max_memory") && e.to_string().contains("t.toml"), "{e}");
            }
        }
        assert_eq!(Config { max_memory: 1 << 30, ..Config::default() }.memory_limit(), 1 << 30);
        assert_eq!(Config::default().memory_limit(), crate::memory::default_limit());
    }

    #[test]
    fn every_bounded_key_is_checked_at_and_past_its_limits() {
        let base = Config::default();
        base.validate("t.toml").unwrap();
        for (key, _, min, max) in base.ranges() {
            let mut cases = vec![(max, true), (min, true), (max + 1, false)];
            if min > 0 {
                cases.push((min - 1, false));
            }
            for (v, ok) in cases {
                let text = format!("{key} = {v}\n");
                let cfg = match toml::from_str::<Config>(&text) {
                    Ok(c) => c,
                    Err(e) => {
                        // A value the key's type cannot hold is refused while parsing.
                        assert!(!ok, "{key} = {v}: {e}");
                        continue;
                    }
                };
                // Keep the keys that depend on each other consistent with the one under test.
                let cfg = Config {
                    max_pending_bytes: if key == "max_pending_bytes" {
                        cfg.max_pending_bytes
                    } else {
                        cfg.max_pending_bytes.max(cfg.max_message_size + 65_536)
                    },
                    heart_beat_min: cfg.heart_beat_min.min(cfg.heart_beat_max.max(1)),
                    prefetch: cfg.prefetch.min(cfg.max_prefetch.max(1)),
                    max_message_size: if key == "max_pending_bytes" {
                        cfg.max_message_size.min(cfg.max_pending_bytes.saturating_sub(65_536).max(1))
                    } else {
                        cfg.max_message_size
                    },
                    ..cfg
                };
                let r = cfg.validate("t.toml");
                if ok {
                    assert!(r.is_ok(), "{key} = {v} should pass: {r:?}");
                } else {
                    let e = r.expect_err(&format!("{key} = {v} should fail")).to_string();
                    assert!(e.contains(key) && e.contains("t.toml"), "{e}");
                }
            }
        }
    }

    #[test]
    fn defaults_validate() {
        Config::default().validate("built-in").unwrap();
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let e = Config::from_toml("max_sub = 4\n", "conf/x.toml").unwrap_err().to_string();
        assert!(e.contains("conf/x.toml") && e.contains("max_sub"), "{e}");
    }

    #[test]
    fn bad_type_names_key_and_file() {
        let e = Config::from_toml("workers = \"many\"\n", "a.toml").unwrap_err().to_string();
        assert!(e.contains("a.toml") && e.contains("workers"), "{e}");
    }

    #[test]
    fn cross_key_rules_name_the_key() {
        let e = Config::from_toml("max_message_size = 10000000\n", "a.toml").unwrap_err().to_string();
        assert!(e.contains("`max_pending_bytes`"), "{e}");
        let e = Config::from_toml("login = \"a\"\n", "a.toml").unwrap_err().to_string();
        assert!(e.contains("`passcode`"), "{e}");
        let e = Config::from_toml("slow_consumer = \"explode\"\n", "a.toml").unwrap_err().to_string();
        assert!(e.contains("slow_consumer"), "{e}");
    }

    #[test]
    fn workers_are_pinned_in_the_standalone_broker_and_not_when_embedded() {
        assert!(!Config::default().pin_workers, "an embedder's default leaves its threads alone");
        assert!(Config::from_toml("", "t.toml").unwrap().pin_workers, "a configuration file gives the broker the machine");
        assert!(!Config::from_toml("pin_workers = false\n", "t.toml").unwrap().pin_workers);
    }

    #[test]
    fn reload_plans_split_runtime_and_restart_keys() {
        // As the binary starts (pinned, as a configuration file leaves it).
        let old = Config { pin_workers: true, ..Config::default() };
        let new = Config::from_toml("ports = [1234]\nmax_messages = 5\n[destinations.\"/q\"]\nwrite_block = true\n", "n.toml").unwrap();
        let plan = plan_reload(&old, &new);
        assert_eq!(plan.need_restart, vec!["ports".to_string()]);
        assert_eq!(plan.applied, vec!["destinations".to_string(), "max_messages".to_string()]);
        assert_eq!(plan.config.ports, old.ports);
        assert_eq!(plan.config.max_messages, 5);
        assert_eq!(plan.config.destinations["/q"].write_block, Some(true));
    }

    #[test]
    fn shipped_config_documents_every_key() {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/romp.toml")).unwrap();
        let link = DownstreamConfig {
            address: String::new(),
            login: None,
            passcode: None,
            remote: None,
            reconnect_min: 1,
            reconnect_max: 1,
            prefetch: 1,
            tls: false,
            tls_ca: None,
            tls_name: None,
        };
        let objects = [serde_json::to_value(Config::default()), serde_json::to_value(DestConfig::default()), serde_json::to_value(link)];
        for v in objects {
            for key in v.unwrap().as_object().unwrap().keys() {
                let documented = text.lines().any(|l| {
                    let l = l.trim_start_matches(['#', ' ']);
                    l.starts_with(&format!("{key} ")) || l.starts_with(&format!("{key},")) || l.starts_with(&format!("[{key}."))
                });
                assert!(documented, "conf/romp.toml does not document `{key}`");
            }
        }
    }

    #[test]
    fn a_misspelt_key_gets_a_suggestion_and_a_missing_user_file_is_named() {
        let e = Config::from_toml("bind_adress = \"0.0.0.0\"\n", "romp.toml").unwrap_err().to_string();
        assert!(e.contains("romp.toml") && e.contains("did you mean `bind_address`?"), "{e}");
        let e = Config::from_toml("qwertyuiop = 1\n", "romp.toml").unwrap_err().to_string();
        assert!(!e.contains("did you mean"), "{e}");
        let e = Config::from_toml("user_file = \"/nonexistent/romp.passwd\"\n", "romp.toml").unwrap_err().to_string();
        assert!(e.contains("user_file") && e.contains("/nonexistent/romp.passwd") && e.contains("cannot read"), "{e}");
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn shipped_config_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("conf/romp.toml");
        Config::load(&path).unwrap();
    }
}
