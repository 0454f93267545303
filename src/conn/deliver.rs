//! Messages arriving for this worker's connections: deliveries, barrier answers, rejections and
//! authentication results ([`ToWorker`]). Runs on the connection's worker.
//!
//! MESSAGE frames are encoded here, per subscriber, for the subscriber's protocol version (B6):
//! broker headers first (`subscription`, `message-id`, `destination`, `ack`, `redelivered`), then
//! the user headers in the order sent, then `content-length` and the shared body.
//!
//! # Slow consumers
//! A topic delivery to a connection whose output already holds `max_pending_bytes`, or to a
//! client-ack subscription with `prefetch` messages unacknowledged, gets the configured policy:
//! `drop` (counted) or `disconnect` (ERROR `slow consumer`, which waits behind the backlog;
//! if it has not gone out within `linger` ms the connection is dropped, backlog and all). Queue deliveries are bounded by
//! credit instead: auto-ack credit is returned only while the output is under half full.

use super::session::{self, Fatal, Pending};
use super::{mark_dirty, CloseReason, Conn, Ctx, Phase};
use crate::auth::AuthOutcome;
use crate::broker::{owner_of, AckMode, DestKind, Message, SubKey};
use crate::bus::{FromOwner, ToOwner, ToWorker};
use crate::config::SlowConsumerPolicy;
use crate::stomp::{encoder, Command, ErrorWord};
use slab::Slab;
use std::sync::Arc;

/// Look up a live connection by slot and generation.
fn live(conns: &mut Slab<Conn>, slot: u32, gen: u32) -> Option<&mut Conn> {
    conns.get_mut(slot as usize).filter(|c| c.me.gen == gen)
}

/// Encode one MESSAGE for `sub_id` into `out`: the per-subscriber lines, then the message's
/// shared header block for this version, then the body. `cache`: keep the shared block with
/// the message for its other receivers (topics); a message for one receiver (queues, replies)
/// is encoded straight into `out`, without the allocation and copy.
pub fn write_message(
    out: &mut Vec<u8>,
    conn_version: crate::stomp::Version,
    sub_id: &str,
    msg: &Message,
    ack: Option<(u32, u64)>,
    redelivered: bool,
    cache: bool,
) {
    let esc = encoder::escaping(conn_version);
    encoder::command(out, Command::Message);
    encoder::header(out, "subscription", sub_id, esc);
    if let Some((serial, tag)) = ack {
        out.extend_from_slice(b"ack:");
        encoder::push_u64(out, serial as u64);
        out.push(b'.');
        encoder::push_u64(out, tag);
        out.push(b'\n');
    }
    if redelivered {
        out.extend_from_slice(b"redelivered:true\n");
    }
    match msg.cached_head(conn_version) {
        Some(head) => out.extend_from_slice(head),
        None if cache => out.extend_from_slice(msg.shared_head(conn_version, |v| shared_head(v, conn_version, msg))),
        None => shared_head(out, conn_version, msg),
    }
    out.extend_from_slice(&msg.body);
    out.push(0);
}

/// The header lines every receiver of one version gets alike, through the blank line.
fn shared_head(out: &mut Vec<u8>, version: crate::stomp::Version, msg: &Message) {
    let esc = encoder::escaping(version);
    match &msg.custom_id {
        Some(id) => encoder::header(out, "message-id", id, esc),
        None => encoder::header_u64(out, "message-id", msg.id),
    }
    encoder::header(out, "destination", &msg.destination, esc);
    for (k, v) in &msg.headers {
        // STOMP 1.0 has no escaping (B3): a header that holds a colon in its name, or an EOL
        // anywhere, cannot be written without corrupting the frame, so 1.0 receivers do not get
        // it. Other versions escape it.
        if version == crate::stomp::Version::V1_0 && (k.contains([':', '\n', '\r']) || v.contains(['\n', '\r'])) {
            continue;
        }
        encoder::header(out, k, v, esc);
    }
    encoder::header_u64(out, "content-length", msg.body.len() as u64);
    out.push(b'\n');
}

/// Handle one message for this worker's connections.
pub fn handle(msg: ToWorker, conns: &mut Slab<Conn>, ctx: &mut Ctx) {
    match msg {
        ToWorker::Owner(m) => from_owner(m, conns, ctx),
        ToWorker::Kick { target, by } => {
            let reply = match live(conns, target.slot, target.gen) {
                Some(c) if !c.is_closing() => {
                    let sid = c.session_id();
                    session::fail(c, ctx, Fatal::new(ErrorWord::General, "closed by an administrator"));
                    c.close_reason = Some(CloseReason::Kicked);
                    log::info!("{sid}: kicked by admin session {}-{}-{}", by.worker, by.slot, by.gen);
                    crate::admin::AdminReply::ok("kick", format!("{sid}: closed"))
                }
                _ => crate::admin::AdminReply::error("kick", "no such open connection"),
            };
            ctx.outbox.to_worker(by.worker as usize, FromOwner::AdminResult { conn: by, reply }.into());
        }
        ToWorker::Reconfigure(_) => log::error!("a reconfiguration reached the delivery code; it is applied by the worker"),
        ToWorker::InjectPanic => log::error!("an injected fault reached the delivery code; it is the worker's"),
        ToWorker::Durable(_) => log::error!("a durable-log report reached the delivery code; it is the shard's"),
        ToWorker::StatsPart { to: crate::broker::StatsAsker::Worker(_), .. } => {
            log::error!("a stats round answer reached the delivery code; it is collected by the worker")
        }
        ToWorker::StatsPart { to: crate::broker::StatsAsker::Conn(conn), part } => {
            if let Some(c) = live(conns, conn.slot, conn.gen) {
                super::web::stats_part(c, *part, ctx);
            }
        }
        ToWorker::AuthDone { conn, peer, outcome } => {
            ctx.auth_released(peer);
            if let Some(c) = live(conns, conn.slot, conn.gen).filter(|c| c.phase == Phase::Authenticating) {
                if c.is_web() && matches!(c.web.as_deref().map(|w| &w.mode), Some(super::web::Mode::Http { .. })) {
                    // Basic credentials for a stats page, not a STOMP CONNECT.
                    let (ok, admin) = match outcome {
                        AuthOutcome::Accepted { admin } => (true, admin),
                        AuthOutcome::Rejected => (false, false),
                    };
                    return super::web::auth_done(c, ok, admin, ctx);
                }
                match outcome {
                    AuthOutcome::Accepted { admin } => {
                        session::finish_connect(c, ctx, admin);
                        // Frames pipelined after CONNECT waited in inbuf; the worker resumes them.
                        super::want_read(c, ctx);
                    }
                    AuthOutcome::Rejected => session::fail(c, ctx, Fatal::new(ErrorWord::AuthErr, "bad login or passcode")),
                }
            }
        }
    }
}

/// Handle one owner's answer for this worker's connections.
fn from_owner(msg: FromOwner, conns: &mut Slab<Conn>, ctx: &mut Ctx) {
    match msg {
        FromOwner::TopicMessage { dest, msg } => topic_message(&dest, &msg, conns, ctx),
        FromOwner::QueueMessage { key, msg, seq, redelivered, retained, deliveries } => {
            queue_message(key, msg, seq, redelivered, retained, deliveries, conns, ctx)
        }
        FromOwner::Replay { key, msg } => {
            let target = live(conns, key.conn.slot, key.conn.gen).filter(|c| c.phase == Phase::Open);
            if let Some(conn) = target {
                let selected = conn.session.subs.get(&key.serial).is_some_and(|s| s.selector.as_ref().is_none_or(|sel| sel.matches(&*msg)));
                if selected && !msg.expired(ctx.time.wall_ms) {
                    write_to(conn, key.serial, &msg, false, 0, ctx);
                }
            }
        }
        FromOwner::SubscribeRefused { key, word, detail } => {
            if let Some(c) = live(conns, key.conn.slot, key.conn.gen) {
                session::forget_subscription(c, key.serial, ctx);
                session::fail(c, ctx, Fatal::new(word, detail));
            }
        }
        FromOwner::AdminResult { conn, reply } => {
            if let Some(c) = live(conns, conn.slot, conn.gen) {
                super::admin::write_reply(c, &reply, ctx);
            }
        }
        FromOwner::Flow { dest, blocked: true } => {
            ctx.held.entry(dest).or_default();
        }
        FromOwner::Flow { dest, blocked: false } => {
            for (slot, gen) in ctx.held.remove(&dest).unwrap_or_default() {
                if let Some(c) = live(conns, slot, gen) {
                    if c.held.as_ref().is_some_and(|h| h.cause == super::HoldCause::Queue && h.dest == dest) {
                        c.held = None;
                        super::want_read(c, ctx);
                    }
                }
            }
        }
        FromOwner::BarrierDone { conn, owner } => {
            if let Some(c) = live(conns, conn.slot, conn.gen) {
                session::barrier_done(c, owner as usize, ctx);
            }
        }
        FromOwner::Rejected { conn, word, detail, receipt } => {
            if let Some(c) = live(conns, conn.slot, conn.gen) {
                session::fail(c, ctx, Fatal { word, detail, receipt: receipt.map(String::from), versions: false });
            }
        }
    }
}

fn topic_message(dest: &Arc<str>, msg: &Arc<Message>, conns: &mut Slab<Conn>, ctx: &mut Ctx) {
    let subs = ctx.topics.get(dest);
    if subs.is_none() && ctx.wild.is_empty() {
        return;
    }
    if msg.expired(ctx.time.wall_ms) {
        ctx.stats.expired += 1;
        return;
    }
    // Copy the subscribers into the worker's scratch vector (no allocation once warm): the
    // deliveries below need `ctx` mutably. The list cannot change meanwhile: closes started here
    // only change the phase; subscriptions leave the index when the worker finishes the close.
    let mut scratch = std::mem::take(&mut ctx.turn.fanout);
    scratch.clear();
    if let Some(subs) = subs {
        subs.matching(msg, &mut scratch);
    }
    if !ctx.wild.is_empty() {
        let exact = scratch.len();
        ctx.wild.each_match(dest, |(ls, sel)| {
            if sel.as_ref().is_none_or(|s| s.matches(&**msg)) {
                scratch.push(*ls);
            }
        });
        // A pattern may match one name in more than one way (`a.#.b.#`): one copy each.
        if scratch.len() > exact + 1 {
            scratch[exact..].sort_unstable_by_key(|l| (l.slot, l.serial));
            scratch.dedup();
        }
    }
    for &ls in &scratch {
        let Some(conn) = live(conns, ls.slot, ls.gen) else {
            continue;
        };
        if conn.phase != Phase::Open {
            continue;
        }
        let max_pending = ctx.env.cfg.max_pending_bytes;
        let Some(sub) = conn.session.subs.get(&ls.serial) else {
            continue;
        };
        let over = conn.pending_out() >= max_pending || (sub.mode != AckMode::Auto && sub.pending.len() >= sub.prefetch as usize);
        if over {
            match sub.slow {
                SlowConsumerPolicy::Drop => {
                    ctx.stats.dropped_slow += 1;
                    let sid = conn.session_id();
                    if let Some(sub) = conn.session.subs.get_mut(&ls.serial) {
                        sub.dropped += 1;
                        if sub.dropped.is_power_of_two() {
                            log::warn!(
                                "{sid} {}: slow consumer on {dest}: {} messages dropped so far (slow_consumer = \"drop\")",
                                conn.who.peer,
                                sub.dropped
                            );
                        }
                    }
                }
                SlowConsumerPolicy::Disconnect => {
                    let detail = format!("this subscriber on {dest} fell behind (limits: max_pending_bytes = {max_pending}, prefetch); slow_consumer = \"disconnect\"");
                    session::fail(conn, ctx, Fatal::new(ErrorWord::SlowConsumer, detail));
                    conn.close_reason = Some(CloseReason::SlowConsumer);
                    // Its ERROR waits behind the backlog it is not reading: give it `linger`
                    // to go out, then drop the connection and its backlog with it.
                    let at = ctx.time.now + std::time::Duration::from_millis(ctx.env.cfg.linger);
                    let me = conn.me;
                    ctx.time.timers.arm(crate::timer::Timer { at, slot: me.slot, gen: me.gen, kind: crate::timer::TimerKind::Linger });
                }
            }
            continue;
        }
        write_to(conn, ls.serial, msg, false, 0, ctx);
    }
    ctx.turn.fanout = scratch;
}

/// Write a MESSAGE for subscription `serial`, recording it as pending for client-ack modes.
fn write_to(conn: &mut Conn, serial: u32, msg: &Message, redelivered: bool, seq: u64, ctx: &mut Ctx) {
    write_to_with(conn, serial, msg, redelivered, seq, ctx, true)
}

/// [`write_to`]; `shared`: the message goes to other receivers too (cache its header block).
fn write_to_with(conn: &mut Conn, serial: u32, msg: &Message, redelivered: bool, seq: u64, ctx: &mut Ctx, shared: bool) {
    if conn.out.capacity() == 0 {
        conn.out = ctx.turn.pool.take();
    }
    let version = conn.version;
    let s = &mut conn.session;
    let tag = s.next_tag();
    let mut to_index = None;
    let Some(sub) = s.subs.get_mut(&serial) else {
        return;
    };
    let ack = if sub.mode == AckMode::Auto {
        None
    } else {
        let msg_id = msg.ack_id();
        sub.pending.push_back(Pending { tag, msg_id, seq });
        if version < crate::stomp::Version::V1_2 {
            to_index = Some(msg_id);
        }
        Some((serial, tag))
    };
    // 1.0 and 1.1 clients ACK by message-id; the ack header is 1.2's.
    let ack = if version == crate::stomp::Version::V1_2 { ack } else { None };
    write_message(&mut conn.out, version, &sub.id, msg, ack, redelivered, shared);
    if let Some(msg_id) = to_index {
        conn.session.index_pending(msg_id, serial, tag);
    }
    ctx.stats.messages_out += 1;
    mark_dirty(conn, ctx);
}

#[allow(clippy::too_many_arguments)]
fn queue_message(
    key: SubKey,
    msg: Arc<Message>,
    seq: u64,
    redelivered: bool,
    retained: bool,
    deliveries: u32,
    conns: &mut Slab<Conn>,
    ctx: &mut Ctx,
) {
    let target = live(conns, key.conn.slot, key.conn.gen).filter(|c| c.phase == Phase::Open && c.session.subs.contains_key(&key.serial));
    let Some(conn) = target else {
        // The subscription is gone. A retained message is still held by the owner (it was or will
        // be requeued by the Unsubscribe); an auto-ack one must go back, or it would be lost.
        if !retained {
            let dest = msg.destination.clone();
            let w = owner_of(&dest, ctx.outbox.workers());
            ctx.outbox.to_owner(w, ToOwner::Bounce { dest, key, msg, seq, deliveries });
        }
        return;
    };
    // A queue message goes to one consumer: encode it straight into the output, no cache.
    write_to_with(conn, key.serial, &msg, redelivered, seq, ctx, false);
    if !retained {
        let half = ctx.env.cfg.max_pending_bytes / 2;
        if conn.pending_out() < half {
            ctx.add_credit(&msg.destination, key, 1);
        } else if let Some(sub) = conn.session.subs.get_mut(&key.serial) {
            sub.owed_credit += 1;
            conn.session.owes_credit = true;
        }
    } else if conn.pending_out() >= ctx.env.cfg.max_pending_bytes {
        // Credit in bytes: a client-ack consumer's prefetch counts messages; its output is
        // bounded too. Pause it at the owner until the output drains below half.
        if let Some(sub) = conn.session.subs.get_mut(&key.serial).filter(|s| !s.paused) {
            sub.paused = true;
            conn.session.owes_credit = true;
            let dest = msg.destination.clone();
            let w = owner_of(&dest, ctx.outbox.workers());
            ctx.outbox.to_owner(w, ToOwner::Pace { dest, key, paused: true });
        }
    }
}

/// After a flush: give back auto-ack credit held while the output was over half full, and
/// resume client-ack subscriptions paused for a full output.
pub fn release_owed_credit(conn: &mut Conn, ctx: &mut Ctx) {
    if !conn.session.owes_credit || conn.pending_out() >= ctx.env.cfg.max_pending_bytes / 2 {
        return;
    }
    conn.session.owes_credit = false;
    let me = conn.me;
    for (&serial, sub) in conn.session.subs.iter_mut() {
        if sub.owed_credit > 0 && sub.kind == DestKind::Queue {
            let n = std::mem::take(&mut sub.owed_credit);
            ctx.add_credit(&sub.dest, SubKey { conn: me, serial }, n);
        }
        if sub.paused {
            sub.paused = false;
            let w = owner_of(&sub.dest, ctx.outbox.workers());
            ctx.outbox.to_owner(w, ToOwner::Pace { dest: sub.dest.clone(), key: SubKey { conn: me, serial }, paused: false });
        }
    }
}
