//! The STOMP session: what each client frame does (checklist sections D to M).
//!
//! Runs on the connection's worker. Frames become [`ToOwner`] requests to the owners of their
//! destinations; nothing here waits. Receipts are kept in a per-connection queue and written in
//! order (K2): a frame's receipt waits for a barrier answer from every owner the connection has
//! sent anything to since the previous receipt, so "RECEIPT" really means "everything before this
//! has been applied".
//!
//! Decisions (see docs/protocol.md): ACK/NACK of an unknown or already settled id is an ERROR;
//! NACK requeues a queue message at its original place with `redelivered:true`; on a topic, NACK
//! and unacknowledged messages at disconnect are discarded (topics do not redeliver); UNSUBSCRIBE
//! of an unknown id is an ERROR; `receipt` on CONNECT is ignored (D9).

use super::ListenerKind;
use super::{mark_dirty, CloseReason, Conn, Ctx, Phase};
use crate::auth::{self, AuthJob, Verdict};
use crate::broker::policy::Policy;
use crate::broker::queue::SettleKind;
use crate::broker::FastMap;
use crate::broker::{owner_of, AckMode, DestKind, Message, Publisher, SubKey};
use crate::bus::{Seqs, ToOwner};
use crate::config::SlowConsumerPolicy;
use crate::stomp::version::{self, negotiate_heart_beat, HeartBeat};
use crate::stomp::{encoder, parse, skip_eols, Command, ErrorWord, Frame, ParseError, Parsed, Version};
use crate::timer::{Timer, TimerKind};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

/// A set of worker indexes (up to [`crate::config::MAX_WORKERS`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WorkerSet([u64; 4]);

impl WorkerSet {
    pub fn insert(&mut self, w: usize) {
        self.0[w / 64] |= 1 << (w % 64);
    }
    pub fn remove(&mut self, w: usize) -> bool {
        let had = self.contains(w);
        self.0[w / 64] &= !(1 << (w % 64));
        had
    }
    pub fn contains(&self, w: usize) -> bool {
        self.0[w / 64] & (1 << (w % 64)) != 0
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&x| x == 0)
    }
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..256).filter(|&w| self.contains(w))
    }
}

/// A delivered message waiting for ACK/NACK.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub tag: u64,
    pub msg_id: u64,
    /// Queue sequence (0 for topics).
    pub seq: u64,
}

#[derive(Debug)]
pub struct Subscription {
    pub id: Box<str>,
    pub dest: Arc<str>,
    pub kind: DestKind,
    pub mode: AckMode,
    pub prefetch: u32,
    /// Client-ack deliveries not yet settled, in delivery order (tags ascending).
    pub pending: VecDeque<Pending>,
    /// Auto-ack queue credits held back while the connection's output is over half full.
    pub owed_credit: u32,
    /// Topic messages dropped for this subscription under the `drop` policy.
    pub dropped: u64,
    /// The filter value of a filtered topic subscription (`filter:HEADER=VALUE`).
    pub filter: Option<Box<str>>,
    /// What happens when this topic subscriber falls behind (the destination's policy).
    pub slow: SlowConsumerPolicy,
}

/// How an ACK/NACK named its message, resolved when it takes effect.
#[derive(Debug, Clone, Copy)]
struct SettleTarget {
    serial: u32,
    tag: u64,
    kind: SettleKind,
}

#[derive(Debug)]
enum TxOp {
    Publish(Arc<Message>),
    Settle(SettleTarget),
}

#[derive(Debug, Default)]
struct Tx {
    ops: Vec<TxOp>,
    bytes: usize,
}

#[derive(Debug)]
struct PendingReceipt {
    id: Box<str>,
    waiting: WorkerSet,
    closes: bool,
}

/// Per-connection session state.
#[derive(Debug, Default)]
pub struct Session {
    /// Boxed: a map of one entry still allocates four buckets, and most sessions hold one
    /// subscription, so buckets of pointers keep an idle session ~300 bytes smaller.
    pub subs: FastMap<u32, Box<Subscription>>,
    by_id: FastMap<Box<str>, u32>,
    txs: FastMap<Box<str>, Tx>,
    receipts: VecDeque<PendingReceipt>,
    /// Owners sent anything since the last receipt barrier.
    touched: WorkerSet,
    next_serial: u32,
    next_tag: u64,
    /// Some subscription has `owed_credit`.
    pub owes_credit: bool,
    /// The destination of the last SEND, its policy and the policy table generation: a producer
    /// nearly always repeats it, so its name is shared instead of allocated again and its policy
    /// is not looked up again for every message.
    last_dest: Option<(Arc<str>, Arc<Policy>, u64)>,
}

impl Session {
    pub fn next_tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }
}

/// A fatal protocol error: ERROR with `word`, `detail` in the body, then close.
#[derive(Debug)]
pub struct Fatal {
    pub word: ErrorWord,
    pub detail: String,
    pub receipt: Option<String>,
    /// Add `version:1.0,1.1,1.2` (failed negotiation, D4).
    pub versions: bool,
}

impl Fatal {
    pub fn new(word: ErrorWord, detail: impl Into<String>) -> Fatal {
        Fatal { word, detail: detail.into(), receipt: None, versions: false }
    }
}

type Res = Result<(), Fatal>;

/// Send ERROR and start closing.
pub fn fail(conn: &mut Conn, ctx: &mut Ctx, f: Fatal) {
    if conn.is_closing() {
        return;
    }
    if conn.out.capacity() == 0 {
        conn.out = ctx.turn.pool.take();
    }
    let extra: &[(&str, &str)] = if f.versions { &[("version", version::SUPPORTED)] } else { &[] };
    encoder::error(&mut conn.out, conn.version, f.word.as_str(), &f.detail, f.receipt.as_deref(), extra);
    ctx.stats.errors_sent += 1;
    ctx.stats.errors_by_word[f.word.index()] += 1;
    mark_dirty(conn, ctx);
    log::debug!("{} {}: ERROR {}: {}", conn.session_id(), conn.who.peer, f.word, f.detail);
    conn.begin_close(if f.word == ErrorWord::AuthErr { CloseReason::AuthFailed } else { CloseReason::Protocol(f.word) });
}

/// Parse and handle frames from `buf`. Returns how many bytes were consumed; the rest is a
/// partial frame, or input left unread because the worker paused reads or the session waits for
/// authentication. Sets `conn.need` when the size of the partial frame is known.
pub fn process_input(conn: &mut Conn, buf: &[u8], ctx: &mut Ctx) -> usize {
    let mut pos = 0;
    conn.need = 0;
    loop {
        match conn.phase {
            Phase::Closing | Phase::Released | Phase::Authenticating => return pos,
            Phase::Disconnecting => return buf.len(), // M2: frames after DISCONNECT are ignored
            Phase::Handshake | Phase::Open => {}
        }
        if ctx.outbox.reads_paused() {
            return pos;
        }
        pos += skip_eols(&buf[pos..]);
        if pos >= buf.len() {
            return pos;
        }
        match parse(&buf[pos..], conn.version, &ctx.env.limits) {
            Ok(Parsed::Frame(f, n)) => {
                pos += n;
                ctx.stats.frames_in += 1;
                if let Err(fatal) = on_frame(conn, &f, ctx) {
                    let fatal = Fatal { receipt: fatal.receipt.or_else(|| f.header("receipt").map(str::to_string)), ..fatal };
                    fail(conn, ctx, fatal);
                    return pos;
                }
            }
            Ok(Parsed::Incomplete { need }) => {
                conn.need = need;
                return pos;
            }
            Err(e) => {
                let mut fatal = parse_fatal(&e, ctx);
                if e == ParseError::BadCommand {
                    let line = &buf[pos..];
                    let line = &line[..line.iter().position(|&b| b == b'\n').unwrap_or(line.len()).min(32)];
                    fatal.detail = format!("unknown or malformed command {:?}", String::from_utf8_lossy(line));
                }
                fail(conn, ctx, fatal);
                return pos;
            }
        }
    }
}

fn parse_fatal(e: &ParseError, ctx: &Ctx) -> Fatal {
    let detail = match e {
        ParseError::HeaderTooLong(_) => {
            format!("{e} (limit: max_header_len = {})", ctx.env.cfg.max_header_len)
        }
        ParseError::TooManyHeaders(_) => {
            format!("{e} (limit: max_headers = {})", ctx.env.cfg.max_headers)
        }
        ParseError::BodyTooLarge(_) => format!("{e} (limit: max_message_size = {})", ctx.env.cfg.max_message_size),
        _ => e.to_string(),
    };
    Fatal::new(e.word(), detail)
}

fn on_frame(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    if !f.command.takes_body() && !f.body.is_empty() {
        return Err(Fatal::new(ErrorWord::Syntax, format!("{} frames must not have a body", f.command.as_str())));
    }
    match (conn.phase, f.command) {
        (Phase::Handshake, Command::Connect | Command::Stomp) => return connect(conn, f, ctx),
        (Phase::Handshake, c) => {
            return Err(Fatal::new(ErrorWord::Syntax, format!("{} before CONNECT: the first frame must be CONNECT or STOMP", c.as_str())))
        }
        (_, Command::Connect | Command::Stomp) => {
            return Err(Fatal::new(ErrorWord::Syntax, "already connected: a second CONNECT is not allowed"))
        }
        _ => {}
    }
    match f.command {
        Command::Send => send(conn, f, ctx)?,
        Command::Subscribe => subscribe(conn, f, ctx)?,
        Command::Unsubscribe => unsubscribe(conn, f, ctx)?,
        Command::Ack => ack(conn, f, ctx, false)?,
        Command::Nack if conn.version == Version::V1_0 => return Err(Fatal::new(ErrorWord::Syntax, "NACK is not a STOMP 1.0 command")),
        Command::Nack => ack(conn, f, ctx, true)?,
        Command::Begin => begin(conn, f, ctx)?,
        Command::Commit => commit(conn, f, ctx)?,
        Command::Abort => abort(conn, f)?,
        Command::Disconnect => return disconnect(conn, f, ctx),
        c => return Err(Fatal::new(ErrorWord::Syntax, format!("{} is a server frame; clients may not send it", c.as_str()))),
    }
    if let Some(r) = f.header("receipt") {
        push_receipt(conn, ctx, r, false);
    }
    Ok(())
}

fn connect(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let Some(v) = Version::negotiate(f.header("accept-version")) else {
        return Err(Fatal {
            word: ErrorWord::Version,
            detail: format!("no common protocol version: this server speaks {}", version::SUPPORTED),
            receipt: None,
            versions: true,
        });
    };
    conn.version = v;
    conn.negotiated = f.header("accept-version").is_some();
    if v > Version::V1_0 {
        let hb = match f.header("heart-beat") {
            None => HeartBeat::default(),
            Some(s) => HeartBeat::parse(s)
                .ok_or_else(|| Fatal::new(ErrorWord::EcgErr, format!("heart-beat {s:?} is not two non-negative integers \"cx,cy\"")))?,
        };
        conn.beat.hb = negotiate_heart_beat(hb, ctx.env.cfg.heart_beat_min, ctx.env.cfg.heart_beat_max);
    }
    let login = f.header("login");
    conn.who.login = login.map(str::to_string);
    match ctx.env.auth.check(login, f.header("passcode")) {
        Verdict::Accept { admin } => {
            finish_connect(conn, ctx, admin);
            Ok(())
        }
        Verdict::Reject => Err(Fatal::new(ErrorWord::AuthErr, "bad login or passcode")),
        Verdict::Deferred(credential, admin) => {
            let job = AuthJob {
                conn: conn.me,
                credential,
                admin,
                login: login.unwrap_or("").to_string(),
                passcode: f.header("passcode").unwrap_or("").to_string(),
            };
            if !auth::submit(&ctx.env.auth_tx, job) {
                return Err(Fatal::new(ErrorWord::AuthErr, "the authentication service is busy; try again"));
            }
            conn.phase = Phase::Authenticating;
            Ok(())
        }
    }
}

/// Credentials accepted: CONNECTED, then heart-beat timers.
pub fn finish_connect(conn: &mut Conn, ctx: &mut Ctx, admin: bool) {
    if conn.who.listener == ListenerKind::Admin && !admin {
        // The old romp let anyone in here.
        let f = Fatal::new(ErrorWord::AuthErr, "the admin port accepts admin users only (passwd \":true\" or the config login)");
        return fail(conn, ctx, f);
    }
    conn.who.admin = admin;
    conn.phase = Phase::Open;
    if conn.out.capacity() == 0 {
        conn.out = ctx.turn.pool.take();
    }
    let sid = conn.session_id();
    encoder::connected(
        &mut conn.out,
        conn.version,
        conn.negotiated,
        (conn.beat.hb.server_send_ms, conn.beat.hb.client_send_ms),
        &sid,
        &ctx.env.server_header,
    );
    mark_dirty(conn, ctx);
    let (slot, gen) = (conn.me.slot, conn.me.gen);
    if conn.beat.hb.server_send_ms > 0 {
        let at = ctx.time.now + Duration::from_millis(conn.beat.hb.server_send_ms as u64);
        ctx.time.timers.arm(Timer { at, slot, gen, kind: TimerKind::HeartBeatSend });
    }
    if conn.beat.hb.client_send_ms > 0 {
        let at = ctx.time.now + recv_grace(conn, ctx);
        ctx.time.timers.arm(Timer { at, slot, gen, kind: TimerKind::HeartBeatRecv });
    }
    log::debug!("{} {}: connected, STOMP {}, heart-beat {:?}", sid, conn.who.peer, conn.version, conn.beat.hb);
}

/// How long a heart-beating client may stay silent.
pub fn recv_grace(conn: &Conn, ctx: &Ctx) -> Duration {
    Duration::from_millis((conn.beat.hb.client_send_ms as f64 * ctx.env.cfg.heart_beat_grace) as u64)
}

/// A destination header: non-empty and free of control characters (so it can be written to
/// receivers of every version).
fn destination<'f>(f: &'f Frame<'_>) -> Result<&'f str, Fatal> {
    let d = required(f, "destination")?;
    if d.chars().any(char::is_control) {
        return Err(Fatal::new(ErrorWord::Syntax, "destination names may not contain control characters"));
    }
    Ok(d)
}

fn required<'f>(f: &'f Frame<'_>, name: &str) -> Result<&'f str, Fatal> {
    match f.header(name) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Fatal::new(ErrorWord::Syntax, format!("{} requires a non-empty {name} header", f.command.as_str()))),
    }
}

/// Headers the broker sets on MESSAGE itself; a SEND's copies are not passed on.
fn is_broker_header(name: &str) -> bool {
    matches!(name, "destination" | "content-length" | "receipt" | "transaction" | "message-id" | "subscription" | "ack" | "redelivered")
}

/// Refuse a destination the policies do not allow this connection to use.
fn check_policy(conn: &Conn, dest: &str, p: &Policy, write: bool, ctx: &Ctx) -> Res {
    if !ctx.env.policies.allows(dest, p) {
        return Err(Fatal::new(
            ErrorWord::DestinationUnknown,
            format!("{dest} is not a configured destination (create_destinations = false)"),
        ));
    }
    if p.blocks(write, conn.who.listener == ListenerKind::Web) {
        let what = if write { "SEND to" } else { "SUBSCRIBE to" };
        return Err(Fatal::new(ErrorWord::Blocked, format!("{what} {dest} is not allowed here (read_block/write_block)")));
    }
    Ok(())
}

fn send(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let dest = match (&conn.session.last_dest, f.header("destination")) {
        // The same destination as the last SEND: already checked.
        (Some((d, _, _)), Some(name)) if **d == *name => name,
        _ => destination(f)?,
    };
    if let Some(action) = dest.strip_prefix(crate::admin::PREFIX) {
        if conn.who.listener != ListenerKind::Admin || !conn.who.admin {
            return Err(Fatal::new(
                ErrorWord::Blocked,
                format!("{dest}: admin actions are accepted only from an admin user on the admin port"),
            ));
        }
        if let Some(w) = super::admin::handle(conn, f, action, ctx) {
            conn.session.touched.insert(w);
        }
        return Ok(());
    }
    let (dest, policy) = match &conn.session.last_dest {
        Some((d, p, gen)) if **d == *dest && *gen == ctx.env.policies.gen => (d.clone(), p.clone()),
        _ => {
            let d: Arc<str> = Arc::from(dest);
            let p = ctx.env.policies.resolve(&d).clone();
            conn.session.last_dest = Some((d.clone(), p.clone(), ctx.env.policies.gen));
            (d, p)
        }
    };
    check_policy(conn, &dest, &policy, true, ctx)?;
    if f.body.len() > policy.max_message_size {
        return Err(Fatal::new(
            ErrorWord::MsgFlup,
            format!("the body is {} bytes; {dest} accepts at most {} (max_message_size)", f.body.len(), policy.max_message_size),
        ));
    }
    let mut expires = match f.header("expires") {
        None | Some("") => 0,
        Some(v) => {
            v.parse::<u64>().map_err(|_| Fatal::new(ErrorWord::Syntax, format!("expires {v:?} is not milliseconds since the epoch")))?
        }
    };
    let mut headers: Vec<(Box<str>, Box<str>)> = f
        .headers
        .iter()
        .filter(|h| !is_broker_header(&h.name))
        .map(|h| (Box::from(h.name.as_ref()), Box::from(h.value.as_ref())))
        .collect();
    if expires == 0 && policy.expiry > 0 {
        expires = ctx.time.wall_ms.saturating_add(policy.expiry);
        headers.retain(|(k, _)| &**k != "expires");
        headers.push((Box::from("expires"), expires.to_string().into_boxed_str()));
    }
    let mut msg = Message::new(ctx.next_message_id(), dest, headers, f.body.into());
    msg.expires = expires;
    if conn.who.listener == ListenerKind::Admin {
        // Trusted publishers may name their messages.
        msg.custom_id = f.header("message-id").filter(|v| !v.is_empty()).map(Box::from);
    }
    let msg = Arc::new(msg);
    ctx.stats.messages_in += 1;
    match f.header("transaction") {
        Some(t) => {
            let (max_frames, max_bytes) = (ctx.env.cfg.max_tx_frames, ctx.env.cfg.max_tx_bytes);
            let tx =
                conn.session.txs.get_mut(t).ok_or_else(|| Fatal::new(ErrorWord::General, format!("SEND in unknown transaction {t:?}")))?;
            if tx.ops.len() >= max_frames || tx.bytes + msg.body.len() > max_bytes {
                return Err(Fatal::new(
                    ErrorWord::TxFlup,
                    format!("transaction {t:?} holds too much (limits: max_tx_frames = {max_frames}, max_tx_bytes = {max_bytes})"),
                ));
            }
            tx.bytes += msg.body.len();
            tx.ops.push(TxOp::Publish(msg));
        }
        None => publish(conn, msg, f.header("receipt"), ctx)?,
    }
    Ok(())
}

fn publish(conn: &mut Conn, msg: Arc<Message>, receipt: Option<&str>, ctx: &mut Ctx) -> Res {
    let msg = if ctx.env.handlers.is_empty() {
        msg
    } else {
        match run_handlers(conn, msg, ctx)? {
            Some(m) => m,
            None => return Ok(()),
        }
    };
    let w = owner_of(&msg.destination, ctx.outbox.workers());
    conn.session.touched.insert(w);
    ctx.outbox.to_owner(w, ToOwner::Publish { msg, from: Publisher::Conn(conn.me), receipt: receipt.map(Box::from) });
    Ok(())
}

/// Embedded STOMP handlers and the pre-publish hook. Returns the message to publish, or `None`
/// if a handler took it. A panicking handler closes only this connection.
fn run_handlers(conn: &mut Conn, msg: Arc<Message>, ctx: &mut Ctx) -> Result<Option<Arc<Message>>, Fatal> {
    use crate::api::{Draft, Flow, Reply, SendContext, Verdict};
    let handlers = ctx.env.handlers.clone();
    let sid = conn.session_id();
    let (mut to_sender, mut publishes) = (Vec::new(), Vec::new());
    let room = ctx.env.cfg.max_pending_bytes.saturating_sub(conn.pending_out());
    let send = SendContext {
        destination: &msg.destination,
        headers: &msg.headers,
        body: &msg.body,
        session: &sid,
        login: conn.who.login.as_deref(),
        admin: conn.who.admin,
        web: conn.is_web(),
    };
    let mut handled = false;
    let mut verdict = Verdict::Accept;
    let mut draft = None;
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut reply = Reply { to_sender: &mut to_sender, publishes: &mut publishes, room };
        for h in handlers.stomp_for(&msg.destination) {
            if h.on_send(&send, &mut reply) == Flow::Handled {
                handled = true;
                return;
            }
        }
        if let Some(pp) = &handlers.pre_publish {
            let mut d = Draft {
                destination: msg.destination.to_string(),
                headers: msg.headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                body: msg.body.to_vec(),
            };
            verdict = pp.check(&mut d, &send);
            draft = Some(d);
        }
    }));
    if outcome.is_err() {
        log::error!("{sid} {}: a STOMP handler panicked on a SEND to {}", conn.who.peer, msg.destination);
        return Err(Fatal::new(ErrorWord::General, "the server failed to handle this message"));
    }
    for (dest, headers, body) in to_sender {
        let sub_id = conn.session.subs.values().find(|s| *s.dest == *dest).map_or("romp-reply".to_string(), |s| s.id.to_string());
        let m = crate::api::message(ctx.next_message_id(), &dest, headers, body);
        if conn.out.capacity() == 0 {
            conn.out = ctx.turn.pool.take();
        }
        super::deliver::write_message(&mut conn.out, conn.version, &sub_id, &m, None, false, false);
        mark_dirty(conn, ctx);
    }
    for (dest, headers, body) in publishes {
        let m = Arc::new(crate::api::message(ctx.next_message_id(), &dest, headers, body));
        let w = owner_of(&m.destination, ctx.outbox.workers());
        conn.session.touched.insert(w);
        ctx.outbox.to_owner(w, ToOwner::Publish { msg: m, from: Publisher::Conn(conn.me), receipt: None });
    }
    if handled {
        return Ok(None);
    }
    if let Verdict::Reject(reason) = verdict {
        return Err(Fatal::new(ErrorWord::Blocked, reason));
    }
    Ok(Some(match draft {
        Some(d) if d.destination != *msg.destination || d.body != *msg.body || !same_headers(&d.headers, &msg.headers) => {
            if d.destination.is_empty() || d.destination.chars().any(char::is_control) {
                return Err(Fatal::new(ErrorWord::Blocked, "the pre-publish hook produced an invalid destination"));
            }
            Arc::new(crate::api::message(msg.id, &d.destination, d.headers, d.body))
        }
        _ => msg,
    }))
}

fn same_headers(a: &[(String, String)], b: &[(Box<str>, Box<str>)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((k1, v1), (k2, v2))| **k2 == **k1 && **v2 == **v1)
}

fn parse_prefetch(f: &Frame<'_>, ctx: &Ctx) -> Result<u32, Fatal> {
    let raw = f.header("prefetch-count").or_else(|| f.header("activemq.prefetchSize"));
    match raw {
        None => Ok(ctx.env.cfg.prefetch),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if n >= 1 && n <= ctx.env.cfg.max_prefetch => Ok(n),
            _ => Err(Fatal::new(
                ErrorWord::Syntax,
                format!("prefetch-count {v:?} must be an integer from 1 to {}", ctx.env.cfg.max_prefetch),
            )),
        },
    }
}

fn subscribe(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let dest = destination(f)?;
    let id = match f.header("id") {
        Some(id) if !id.is_empty() => id,
        _ if conn.version == Version::V1_0 => dest, // G1: 1.0 ids are optional; the destination names it
        _ => return Err(Fatal::new(ErrorWord::Syntax, "SUBSCRIBE requires an id header")),
    };
    let mode = match f.header("ack").map(|m| (m, AckMode::from_name(m))) {
        None => AckMode::Auto,
        Some((_, Some(mode))) if mode != AckMode::ClientIndividual || conn.version > Version::V1_0 => mode,
        Some((m, _)) => return Err(Fatal::new(ErrorWord::Syntax, format!("ack mode {m:?} is not auto, client or client-individual"))),
    };
    let prefetch = parse_prefetch(f, ctx)?;
    let policy = ctx.env.policies.resolve(dest).clone();
    check_policy(conn, dest, &policy, false, ctx)?;
    let mode = if policy.auto_ack { AckMode::Auto } else { mode };
    let filter = match f.header("filter") {
        None | Some("") => None,
        Some(spec) => {
            let (name, value) =
                spec.split_once('=').ok_or_else(|| Fatal::new(ErrorWord::Syntax, format!("filter {spec:?} is not NAME=VALUE")))?;
            match policy.filter_header.as_deref() {
                Some(h) if h == name && DestKind::of(dest) == DestKind::Topic => Some(Box::<str>::from(value)),
                Some(h) => return Err(Fatal::new(ErrorWord::Syntax, format!("{dest} filters on the {h} header, not {name}"))),
                None => return Err(Fatal::new(ErrorWord::Syntax, format!("{dest} does not filter (no filter_header configured)"))),
            }
        }
    };
    if conn.session.by_id.contains_key(id) {
        return Err(Fatal::new(ErrorWord::Syntax, format!("duplicated subscription identifier {id:?}")));
    }
    if conn.session.subs.len() >= ctx.env.cfg.max_subs {
        return Err(Fatal::new(
            ErrorWord::SubsFlup,
            format!("too many subscriptions on this connection (limit: max_subs = {})", ctx.env.cfg.max_subs),
        ));
    }
    let s = &mut conn.session;
    s.next_serial += 1;
    let serial = s.next_serial;
    let dest: Arc<str> = Arc::from(dest);
    let kind = DestKind::of(&dest);
    s.by_id.insert(Box::from(id), serial);
    s.subs.insert(
        serial,
        Box::new(Subscription {
            id: Box::from(id),
            dest: dest.clone(),
            kind,
            mode,
            prefetch,
            pending: VecDeque::new(),
            owed_credit: 0,
            dropped: 0,
            filter: filter.clone(),
            slow: policy.slow_consumer,
        }),
    );
    if kind == DestKind::Topic {
        let t = ctx.topics.entry(dest.clone()).or_default();
        t.filter_header = policy.filter_header.clone();
        t.add(super::ctx::LocalSub { slot: conn.me.slot, gen: conn.me.gen, serial }, filter.as_deref());
    }
    let w = owner_of(&dest, ctx.outbox.workers());
    s.touched.insert(w);
    ctx.outbox.to_owner(w, ToOwner::Subscribe { dest, key: SubKey { conn: conn.me, serial }, mode, prefetch, filter });
    Ok(())
}

/// Remove a subscription here and at its owner (which requeues what a queue consumer held).
pub fn drop_subscription(conn: &mut Conn, serial: u32, ctx: &mut Ctx) {
    if let Some(sub) = forget_subscription(conn, serial, ctx) {
        let w = owner_of(&sub.dest, ctx.outbox.workers());
        conn.session.touched.insert(w);
        ctx.outbox.to_owner(w, ToOwner::Unsubscribe { dest: sub.dest, key: SubKey { conn: conn.me, serial } });
    }
}

/// Remove a subscription from this worker only (the owner refused it, or is told separately).
pub fn forget_subscription(conn: &mut Conn, serial: u32, ctx: &mut Ctx) -> Option<Subscription> {
    let sub = conn.session.subs.remove(&serial)?;
    conn.session.by_id.remove(&sub.id);
    if sub.kind == DestKind::Topic {
        if let Some(t) = ctx.topics.get_mut(&sub.dest) {
            t.remove(super::ctx::LocalSub { slot: conn.me.slot, gen: conn.me.gen, serial }, sub.filter.as_deref());
            if t.is_empty() {
                ctx.topics.remove(&sub.dest);
            }
        }
    }
    Some(*sub)
}

fn unsubscribe(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let id = match f.header("id") {
        Some(id) => id,
        None if conn.version == Version::V1_0 => required(f, "destination")?,
        None => return Err(Fatal::new(ErrorWord::Syntax, "UNSUBSCRIBE requires an id header")),
    };
    let serial = *conn.session.by_id.get(id).ok_or_else(|| Fatal::new(ErrorWord::Syntax, format!("no subscription with id {id:?}")))?;
    drop_subscription(conn, serial, ctx);
    Ok(())
}

/// Find the pending delivery an ACK/NACK names (I1-I3).
fn resolve_ack(conn: &Conn, f: &Frame<'_>, kind: SettleKind) -> Result<SettleTarget, Fatal> {
    let what = f.command.as_str();
    let unknown = |x: &str| {
        Fatal::new(ErrorWord::General, format!("{what} for {x}, which is not a message awaiting acknowledgement on this connection"))
    };
    let s = &conn.session;
    match conn.version {
        Version::V1_2 => {
            let id = f
                .header("id")
                .ok_or_else(|| Fatal::new(ErrorWord::Syntax, format!("{what} requires an id header (the MESSAGE's ack value)")))?;
            let (serial, tag) =
                id.split_once('.').and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u64>().ok()?))).ok_or_else(|| unknown(id))?;
            let sub = s.subs.get(&serial).ok_or_else(|| unknown(id))?;
            sub.pending.binary_search_by_key(&tag, |p| p.tag).map_err(|_| unknown(id))?;
            Ok(SettleTarget { serial, tag, kind })
        }
        Version::V1_1 => {
            let mid = required(f, "message-id")?;
            let sid = required(f, "subscription")?;
            let serial = *s.by_id.get(sid).ok_or_else(|| unknown(mid))?;
            let ids = ack_ids(mid);
            let p = s.subs.get(&serial).and_then(|sub| sub.pending.iter().find(|p| ids.contains(&p.msg_id))).ok_or_else(|| unknown(mid))?;
            Ok(SettleTarget { serial, tag: p.tag, kind })
        }
        Version::V1_0 => {
            let mid = required(f, "message-id")?;
            let ids = ack_ids(mid);
            s.subs
                .iter()
                .find_map(|(&serial, sub)| {
                    sub.pending.iter().find(|p| ids.contains(&p.msg_id)).map(|p| SettleTarget { serial, tag: p.tag, kind })
                })
                .ok_or_else(|| unknown(mid))
        }
    }
}

/// The pending ids a 1.0/1.1 `message-id` may name: a broker id, or a trusted publisher's own.
fn ack_ids(mid: &str) -> [u64; 2] {
    [mid.parse().unwrap_or(u64::MAX), crate::broker::custom_id_hash(mid)]
}

/// Apply an ACK/NACK: cumulative for `client`, single for `client-individual`. Returns false if
/// the message is no longer pending.
fn settle(conn: &mut Conn, t: SettleTarget, ctx: &mut Ctx) -> bool {
    let Some(sub) = conn.session.subs.get_mut(&t.serial) else {
        return false;
    };
    let Ok(idx) = sub.pending.binary_search_by_key(&t.tag, |p| p.tag) else {
        return false;
    };
    let mut seqs = Seqs::new();
    match sub.mode {
        AckMode::Client => seqs.extend(sub.pending.drain(..=idx).map(|p| p.seq)),
        _ => seqs.extend(sub.pending.remove(idx).map(|p| p.seq)),
    }
    if sub.kind == DestKind::Queue {
        let w = owner_of(&sub.dest, ctx.outbox.workers());
        let req = ToOwner::Settle { dest: sub.dest.clone(), key: SubKey { conn: conn.me, serial: t.serial }, seqs, kind: t.kind };
        conn.session.touched.insert(w);
        ctx.outbox.to_owner(w, req);
    }
    true
}

fn ack(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx, nack: bool) -> Res {
    let kind = match (nack, f.header("requeue")) {
        (false, _) => SettleKind::Ack,
        (true, Some("false")) => SettleKind::Reject,
        (true, _) => SettleKind::Requeue,
    };
    let target = resolve_ack(conn, f, kind)?;
    match f.header("transaction") {
        Some(t) => {
            let max = ctx.env.cfg.max_tx_frames;
            let tx = conn
                .session
                .txs
                .get_mut(t)
                .ok_or_else(|| Fatal::new(ErrorWord::General, format!("{} in unknown transaction {t:?}", f.command.as_str())))?;
            if tx.ops.len() >= max {
                return Err(Fatal::new(
                    ErrorWord::TxFlup,
                    format!("transaction {t:?} holds too many frames (limit: max_tx_frames = {max})"),
                ));
            }
            tx.ops.push(TxOp::Settle(target));
        }
        None => {
            settle(conn, target, ctx);
        }
    }
    Ok(())
}

fn begin(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let t = required(f, "transaction")?;
    if conn.session.txs.contains_key(t) {
        return Err(Fatal::new(ErrorWord::General, format!("transaction {t:?} is already open")));
    }
    if conn.session.txs.len() >= ctx.env.cfg.max_transactions {
        return Err(Fatal::new(
            ErrorWord::TxFlup,
            format!("too many open transactions (limit: max_transactions = {})", ctx.env.cfg.max_transactions),
        ));
    }
    conn.session.txs.insert(Box::from(t), Tx::default());
    Ok(())
}

fn commit(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let t = required(f, "transaction")?;
    let tx = conn.session.txs.remove(t).ok_or_else(|| Fatal::new(ErrorWord::General, format!("COMMIT of unknown transaction {t:?}")))?;
    for op in tx.ops {
        match op {
            TxOp::Publish(msg) => publish(conn, msg, f.header("receipt"), ctx)?,
            TxOp::Settle(target) => {
                if !settle(conn, target, ctx) {
                    return Err(Fatal::new(
                        ErrorWord::General,
                        format!("transaction {t:?} acknowledges a message that is no longer pending"),
                    ));
                }
            }
        }
    }
    Ok(())
}

fn abort(conn: &mut Conn, f: &Frame<'_>) -> Res {
    let t = required(f, "transaction")?;
    conn.session.txs.remove(t).ok_or_else(|| Fatal::new(ErrorWord::General, format!("ABORT of unknown transaction {t:?}")))?;
    Ok(())
}

fn disconnect(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    conn.session.txs.clear(); // J3
    match f.header("receipt") {
        Some(r) => {
            conn.phase = Phase::Disconnecting;
            push_receipt(conn, ctx, r, true);
        }
        None => {
            conn.begin_close(CloseReason::Disconnect);
            mark_dirty(conn, ctx);
        }
    }
    Ok(())
}

fn push_receipt(conn: &mut Conn, ctx: &mut Ctx, id: &str, closes: bool) {
    let s = &mut conn.session;
    let waiting = std::mem::take(&mut s.touched);
    for w in waiting.iter() {
        ctx.outbox.to_owner(w, ToOwner::Barrier { from: conn.me });
    }
    s.receipts.push_back(PendingReceipt { id: Box::from(id), waiting, closes });
    flush_receipts(conn, ctx);
}

/// An owner answered a barrier: the oldest receipt waiting on it is no longer.
pub fn barrier_done(conn: &mut Conn, owner: usize, ctx: &mut Ctx) {
    if let Some(r) = conn.session.receipts.iter_mut().find(|r| r.waiting.contains(owner)) {
        r.waiting.remove(owner);
    }
    flush_receipts(conn, ctx);
}

/// Write every receipt at the front of the queue that waits for nothing (K2: in order).
fn flush_receipts(conn: &mut Conn, ctx: &mut Ctx) {
    while conn.session.receipts.front().is_some_and(|r| r.waiting.is_empty()) {
        let Some(r) = conn.session.receipts.pop_front() else {
            break;
        };
        if conn.is_closing() {
            return;
        }
        if conn.out.capacity() == 0 {
            conn.out = ctx.turn.pool.take();
        }
        encoder::receipt(&mut conn.out, &r.id, conn.version);
        mark_dirty(conn, ctx);
        if r.closes {
            conn.begin_close(CloseReason::Disconnect);
        }
    }
}

/// Release everything the session holds (the connection is closing): subscriptions at their
/// owners (queues requeue unacknowledged messages, I6/M3) and open transactions (J3).
pub fn teardown(conn: &mut Conn, ctx: &mut Ctx) {
    conn.session.txs.clear();
    let serials: Vec<u32> = conn.session.subs.keys().copied().collect();
    for s in serials {
        drop_subscription(conn, s, ctx);
    }
    conn.session.receipts.clear();
}
