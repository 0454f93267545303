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
use super::{mark_dirty, CloseReason, Conn, Ctx, HoldCause, Phase};
use crate::auth::{AuthJob, Verdict};
use crate::broker::policy::Policy;
use crate::broker::queue::SettleKind;
use crate::broker::FastMap;
use crate::broker::{owner_of, AckMode, DestKind, Message, Publisher, SubKey};
use crate::bus::{Seqs, ToOwner};
use crate::config::SlowConsumerPolicy;
use crate::conn::ctx::AuthBusy;
use crate::stomp::version::{self, negotiate_heart_beat, HeartBeat};
use crate::stomp::{encoder, parse, skip_eols, Command, ErrorWord, Frame, ParseError, Parsed, Version};
use crate::timer::{Timer, TimerKind};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

mod ack;
mod connect;
mod dialect;
pub mod pending;
mod receipts;
mod send;
mod subscribe;
mod temp;
mod tx;

use ack::ack;
use ack::settle;
use connect::connect;
pub use connect::{finish_connect, recv_grace};
pub use receipts::barrier_done;
use receipts::{disconnect, push_receipt};
use send::publish;
use send::send;
pub use subscribe::{drop_subscription, forget_subscription};
use subscribe::{subscribe, unsubscribe};
use tx::{abort, begin, commit};

pub use crate::broker::WorkerSet;

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
    pub pending: pending::PendingList,
    /// Auto-ack queue credits held back while the connection's output is over half full.
    pub owed_credit: u32,
    /// Client-ack queue subscription paused at its owner because the output is full.
    pub paused: bool,
    /// Topic messages dropped for this subscription under the `drop` policy.
    pub dropped: u64,
    /// The filter value of a filtered topic subscription (`filter:HEADER=VALUE`).
    pub filter: Option<Box<str>>,
    /// The SUBSCRIBE's `selector`, parsed.
    pub selector: Option<Arc<crate::selector::Selector>>,
    /// A browsing subscription (`browser:true`): it gets the queue's messages once, then the
    /// end marker, and consumes nothing.
    pub browse: bool,
    /// A wildcard topic subscription's pattern (`dest` is then the pattern's text).
    pub wild: Option<Arc<crate::broker::wildcard::Pattern>>,
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
    /// 1.0 and 1.1 sessions (which ACK by message-id): message id -> (subscription, tag) of
    /// each message awaiting acknowledgement, so an ACK is found without scanning. Entries
    /// leave with the message (settled, or its subscription dropped).
    by_msg_id: FastMap<u64, (u32, u64)>,
    txs: FastMap<Box<str>, Tx>,
    receipts: VecDeque<PendingReceipt>,
    /// The owner that answers the next receipt's barrier on its own (a SUBSCRIBE with a
    /// receipt): no separate `Barrier` goes to it.
    inline_barrier: Option<usize>,
    /// Owners sent anything since the last receipt barrier.
    touched: WorkerSet,
    next_serial: u32,
    next_tag: u64,
    /// Some subscription has `owed_credit`, or is `paused`.
    pub owes_credit: bool,
    /// The destination of the last SEND, its policy and the policy table generation: a producer
    /// nearly always repeats it, so its name is shared instead of allocated again and its policy
    /// is not looked up again for every message.
    last_dest: Option<LastDest>,
    /// Its temporary destinations (boxed: most sessions have none).
    temp: Option<Box<temp::TempState>>,
}

/// What a SEND to the same destination as the last one need not work out again: the policy
/// and the access decisions, valid while the policy generation (reloads, admin `perms`) holds.
#[derive(Debug)]
struct LastDest {
    dest: Arc<str>,
    policy: Arc<Policy>,
    gen: u64,
    /// The `create` and `durable` access rules for this session and destination.
    create: bool,
    durable: bool,
}

impl Session {
    /// Remember a message awaiting acknowledgement by its id (1.0 and 1.1 sessions).
    pub fn index_pending(&mut self, msg_id: u64, serial: u32, tag: u64) {
        self.by_msg_id.insert(msg_id, (serial, tag));
    }

    /// Forget the index entry of a message that no longer awaits acknowledgement.
    fn unindex(&mut self, p: &Pending, serial: u32) {
        if self.by_msg_id.get(&p.msg_id) == Some(&(serial, p.tag)) {
            self.by_msg_id.remove(&p.msg_id);
        }
    }

    /// Bytes this session makes the broker keep: subscriptions (with their ids and pending
    /// acknowledgements), the message-id index, open transactions and receipts in waiting.
    /// For `max_memory`; walks the subscriptions and transactions (bounded by `max_subs` and
    /// `max_transactions`), so it is called on the worker's periodic recount, not per frame.
    pub fn footprint(&self) -> usize {
        use std::mem::size_of;
        let subs: usize = self
            .subs
            .values()
            .map(|s| size_of::<Subscription>() + 64 + 2 * s.id.len() + s.pending.capacity() * (size_of::<Pending>() + 8))
            .sum();
        let txs: usize = self.txs.iter().map(|(id, t)| 64 + id.len() + t.bytes + t.ops.capacity() * size_of::<TxOp>()).sum();
        let index = self.by_msg_id.capacity() * 24;
        let receipts: usize = self.receipts.iter().map(|r| size_of::<PendingReceipt>() + r.id.len()).sum();
        subs + txs + index + receipts
    }

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
    // At INFO: why a client was refused is what an operator looks for first (a failed login
    // names the user it tried).
    if log::log_enabled!(log::Level::Info) {
        let who = conn.who.login.as_deref().map_or(String::new(), |l| format!(" (login {l:?})"));
        log::info!("{} {}: ERROR {}: {}{who}", conn.session_id(), conn.who.peer, f.word, f.detail);
    }
    conn.begin_close(if f.word == ErrorWord::AuthErr { CloseReason::AuthFailed } else { CloseReason::Protocol(f.word) });
}

/// Bytes a connection may have buffered before its CONNECT succeeded: the largest CONNECT
/// accepted, and what a worker reads from an unauthenticated socket at once.
pub const PRE_AUTH_BUDGET: usize = 4096;

/// Frame limits before CONNECT: no body, small headers (and never more than the configured
/// ones), within [`PRE_AUTH_BUDGET`].
fn pre_auth_limits(l: &crate::stomp::Limits) -> crate::stomp::Limits {
    crate::stomp::Limits { max_headers: l.max_headers.min(32), max_header_len: l.max_header_len.min(2048), max_body: 0 }
}

/// Parse and handle frames from `buf`. Returns how many bytes were consumed; the rest is a
/// partial frame, or input left unread because the worker paused reads or the session waits for
/// authentication. Sets `conn.need` when the size of the partial frame is known, else
/// `conn.until` (see [`Conn::input_ready`]); both are relative to `buf[consumed..]`.
pub fn process_input(conn: &mut Conn, buf: &[u8], ctx: &mut Ctx) -> usize {
    let mut pos = 0;
    conn.need = 0;
    conn.until = None;
    loop {
        match conn.phase {
            Phase::Closing | Phase::Released | Phase::Authenticating => return pos,
            Phase::Disconnecting => return buf.len(), // M2: frames after DISCONNECT are ignored
            Phase::Handshake | Phase::Open => {}
        }
        if conn.held.is_some() {
            return pos; // the SEND it is held on stays first in the input
        }
        if ctx.outbox.reads_paused() {
            return pos;
        }
        pos += skip_eols(&buf[pos..]);
        if pos >= buf.len() {
            return pos;
        }
        let pre_auth = conn.phase == Phase::Handshake;
        let handshake_limits;
        let limits = if pre_auth {
            handshake_limits = pre_auth_limits(&ctx.env.limits);
            &handshake_limits
        } else {
            &ctx.env.limits
        };
        match parse(&buf[pos..], conn.version, limits) {
            Ok(Parsed::Frame(f, n)) => {
                if f.command == Command::Send && !conn.sched.peer_closed {
                    if ctx.mem.over() && hold_for_memory(conn, &f, ctx) {
                        return pos;
                    }
                    if !ctx.held.is_empty() && hold(conn, &f, ctx) {
                        return pos;
                    }
                    ctx.mem.sent += n as u64;
                }
                pos += n;
                ctx.stats.frames_in += 1;
                if let Err(fatal) = on_frame(conn, &f, ctx) {
                    let fatal = Fatal { receipt: fatal.receipt.or_else(|| f.header("receipt").map(str::to_string)), ..fatal };
                    fail(conn, ctx, fatal);
                    return pos;
                }
            }
            Ok(Parsed::Incomplete { need, until }) => {
                if pre_auth && (buf.len() - pos > PRE_AUTH_BUDGET || need > PRE_AUTH_BUDGET) {
                    let detail = format!("a CONNECT frame may be {PRE_AUTH_BUDGET} bytes at most");
                    fail(conn, ctx, Fatal::new(ErrorWord::Syntax, detail));
                    return pos;
                }
                conn.need = need;
                conn.until = until;
                return pos;
            }
            Err(ParseError::BodyTooLarge(_)) if pre_auth => {
                fail(conn, ctx, Fatal::new(ErrorWord::Syntax, "CONNECT frames must not have a body (content-length must be 0)"));
                return pos;
            }
            Err(e) if pre_auth && matches!(e, ParseError::HeaderTooLong(_) | ParseError::TooManyHeaders(_)) => {
                let detail = format!("{e} in a CONNECT frame (at most 32 headers of 2048 bytes, {PRE_AUTH_BUDGET} bytes in all)");
                fail(conn, ctx, Fatal::new(ErrorWord::HdrFlup, detail));
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

/// Producer flow control: a SEND (outside a transaction, whose SENDs are published only at
/// COMMIT) to a queue over its limits is not processed; the connection is held, with the SEND
/// first in its input, until the owner lets it go. Returns whether it was held.
fn hold(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> bool {
    if conn.phase != Phase::Open || f.header("transaction").is_some() {
        return false;
    }
    let Some(dest) = f.header("destination") else { return false };
    let Some((name, _)) = ctx.held.get_key_value(dest) else { return false };
    let name = name.clone();
    ctx.held.entry(name.clone()).or_default().push((conn.me.slot, conn.me.gen));
    log::debug!("{} {}: held: {name} is over its limits", conn.session_id(), conn.who.peer);
    set_held(conn, ctx, HoldCause::Queue, name, f.header("receipt"));
    true
}

/// The memory alarm is up (`max_memory`): a SEND, in a transaction or not (both make the
/// broker hold more), is not processed; the connection is held with it first in its input until
/// the alarm clears. Other frames (ACK, NACK, COMMIT, SUBSCRIBE...) still go through, so
/// consumers drain. Returns whether it was held.
fn hold_for_memory(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> bool {
    if conn.phase != Phase::Open {
        return false;
    }
    let dest: Arc<str> = Arc::from(f.header("destination").unwrap_or(""));
    log::debug!("{} {}: held: the broker is over max_memory", conn.session_id(), conn.who.peer);
    ctx.mem.held.push((conn.me.slot, conn.me.gen));
    ctx.stats.memory_holds += 1;
    set_held(conn, ctx, HoldCause::Memory, dest, f.header("receipt"));
    true
}

/// Under the memory alarm, a connection with this many bytes of a partial frame buffered is
/// not read further (a smaller one is, in reads of at most this size, so that ACKs and small
/// SENDs complete: the SENDs are then held whole).
pub const PARTIAL_HOLD: usize = 16 * 1024;

/// The memory alarm is up and this connection is in the middle of a large frame: it is not
/// read further until the alarm clears (so partial SENDs cannot grow while publishers wait).
pub fn hold_partial(conn: &mut Conn, ctx: &mut Ctx) {
    log::debug!("{} {}: held in the middle of a frame: the broker is over max_memory", conn.session_id(), conn.who.peer);
    ctx.mem.held.push((conn.me.slot, conn.me.gen));
    ctx.stats.memory_holds += 1;
    set_held(conn, ctx, HoldCause::Memory, Arc::from(""), None);
}

/// How long a producer held for `dest` may wait (`block_timeout`: the destination's, or the
/// server's for a connection held in the middle of a frame, whose destination is not known).
pub fn block_timeout(ctx: &Ctx, dest: &str) -> u64 {
    if dest.is_empty() {
        ctx.env.cfg.block_timeout
    } else {
        ctx.env.policies.resolve(dest).block_timeout
    }
}

fn set_held(conn: &mut Conn, ctx: &mut Ctx, cause: HoldCause, dest: Arc<str>, receipt: Option<&str>) {
    let timeout = block_timeout(ctx, &dest);
    conn.held = Some(super::Held { cause, dest, since: ctx.time.now, receipt: receipt.map(Box::from) });
    if timeout > 0 {
        let at = ctx.time.now + Duration::from_millis(timeout);
        ctx.time.timers.arm(Timer { at, slot: conn.me.slot, gen: conn.me.gen, kind: TimerKind::Held });
    }
}

/// Forget that a connection is held: it is closing, or its peer closed (see
/// `Sched::peer_closed`).
pub fn unhold(conn: &mut Conn, ctx: &mut Ctx) {
    let me = (conn.me.slot, conn.me.gen);
    if let Some(h) = conn.held.take() {
        match h.cause {
            HoldCause::Queue => {
                if let Some(list) = ctx.held.get_mut(&h.dest) {
                    list.retain(|&e| e != me);
                }
            }
            HoldCause::Memory => ctx.mem.held.retain(|&e| e != me),
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
    // Temporary destinations are handled under their real names.
    let rewritten;
    let f = if matches!(f.command, Command::Send | Command::Subscribe) && temp::names_temp(f) {
        let (g, reply) = temp::rewrite(conn, f);
        if let Some((temp_name, real)) = reply {
            temp::consume_reply_queue(conn, &temp_name, &real, ctx)?;
        }
        rewritten = g;
        &rewritten
    } else {
        f
    };
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

/// A destination header: non-empty and free of control characters (so it can be written to
/// receivers of every version).
/// Longest destination name accepted (bytes). Names are held per subscription, per queue and
/// in every message, so they are bounded like everything else a client can make the broker keep.
pub const MAX_DESTINATION_LEN: usize = 1024;
/// Longest subscription id accepted (bytes).
pub const MAX_SUBSCRIPTION_ID_LEN: usize = 256;

fn destination<'f>(f: &'f Frame<'_>) -> Result<&'f str, Fatal> {
    let d = required(f, "destination")?;
    if d.chars().any(char::is_control) {
        return Err(Fatal::new(ErrorWord::Syntax, "destination names may not contain control characters"));
    }
    if d.len() > MAX_DESTINATION_LEN {
        return Err(Fatal::new(ErrorWord::Syntax, format!("destination names are at most {MAX_DESTINATION_LEN} bytes")));
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

/// Whether the access rules let this session use `verb` on `dest`.
fn allowed(conn: &Conn, verb: crate::acl::Verb, dest: &str, ctx: &Ctx) -> bool {
    let who = crate::acl::Who { login: conn.who.login.as_deref(), admin: conn.who.admin };
    ctx.env.policies.acl.allows(who, verb, dest)
}

/// Whether the access rules let this session create `dest` (its owner refuses otherwise,
/// when it does not hold it yet).
fn may_create(conn: &Conn, dest: &str, ctx: &Ctx) -> bool {
    allowed(conn, crate::acl::Verb::Create, dest, ctx)
}

/// Refuse `verb` on `dest` if the access rules do not let this session's login use it.
fn check_access(conn: &Conn, verb: crate::acl::Verb, dest: &str, ctx: &Ctx) -> Res {
    if allowed(conn, verb, dest, ctx) {
        return Ok(());
    }
    denied(conn, verb, dest)
}

/// The refusal of `verb` on `dest`: logged, and the ERROR that closes the session.
fn denied(conn: &Conn, verb: crate::acl::Verb, dest: &str) -> Res {
    let login = conn.who.login.as_deref().map_or("an anonymous session".to_string(), |l| format!("{l:?}"));
    log::info!("{} {}: access denied: {} on {dest} for {login}", conn.session_id(), conn.who.peer, verb.as_str());
    Err(Fatal::new(ErrorWord::AccessDenied, format!("{login} may not {} on {dest} (the [acl] rules)", verb.as_str())))
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

/// Release everything the session holds (the connection is closing): subscriptions at their
/// owners (queues requeue unacknowledged messages, I6/M3) and open transactions (J3).
pub fn teardown(conn: &mut Conn, ctx: &mut Ctx) {
    unhold(conn, ctx);
    conn.session.txs.clear();
    let serials: Vec<u32> = conn.session.subs.keys().copied().collect();
    for s in serials {
        drop_subscription(conn, s, ctx);
    }
    temp::delete_all(conn, ctx);
    conn.session.receipts.clear();
}
