//! Temporary destinations: `/temp-queue/NAME` and `/temp-topic/NAME`, private to the
//! connection that uses them and deleted when it closes (ActiveMQ's temporary destinations,
//! RabbitMQ's temp queues for request/reply).
//!
//! Runs on the connection's worker. A connection's `/temp-queue/x` is the queue
//! `/queue/temp-queue.TOKEN.x` (`/temp-topic/x` the topic `/topic/temp-topic.TOKEN.x`), where
//! TOKEN is random per connection and unguessable. The frames that name one are rewritten
//! before they are handled: `destination` of SEND and SUBSCRIBE, and a SEND's `reply-to`,
//! which responders then send to. A `reply-to` naming a temp queue the connection does not
//! consume yet subscribes it (subscription id `/temp-queue/x`, auto ack), as RabbitMQ does, so a
//! reply is never sent to a queue nobody reads.
//!
//! # Invariants
//! - Only the connection whose token a name holds may SUBSCRIBE to it (others get ERROR
//!   `access denied`); a SEND to one that does not exist (its connection closed) gets ERROR
//!   `destination unknown` from the owner, which never creates one for a SEND.
//! - A connection holds at most `max_subs` temporary destinations (each has a subscription).

use super::*;
use std::borrow::Cow;
use std::hash::{BuildHasher, Hash, Hasher};

pub const TEMP_QUEUE: &str = "/temp-queue/";
pub const TEMP_TOPIC: &str = "/temp-topic/";
use crate::broker::{is_temp, TEMP_QUEUE_PREFIX as QUEUE_PREFIX, TEMP_TOPIC_PREFIX as TOPIC_PREFIX};

/// A connection's temporary destinations.
#[derive(Debug)]
pub struct TempState {
    token: Box<str>,
    /// The real names it subscribed to (deleted when it closes).
    pub dests: Vec<Arc<str>>,
}

thread_local! {
    /// Random keys per worker thread (from the OS): tokens cannot be predicted from slots.
    static KEYS: std::collections::hash_map::RandomState = std::collections::hash_map::RandomState::new();
}

fn token(conn: &mut Conn) -> &str {
    if conn.session.temp.is_none() {
        let me = conn.me;
        let t = KEYS.with(|k| {
            let mut h = k.build_hasher();
            (me.worker, me.slot, me.gen, std::time::Instant::now()).hash(&mut h);
            let a = h.finish();
            me.gen.wrapping_add(1).hash(&mut h);
            format!("{a:016x}{:016x}", h.finish())
        });
        conn.session.temp = Some(Box::new(TempState { token: t.into(), dests: Vec::new() }));
    }
    conn.session.temp.as_ref().map_or("", |t| &t.token)
}

/// The real name of a temp destination of this connection, or `None` for any other name.
fn real(conn: &mut Conn, name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix(TEMP_QUEUE) {
        return Some(format!("{QUEUE_PREFIX}{}.{rest}", token(conn)));
    }
    if let Some(rest) = name.strip_prefix(TEMP_TOPIC) {
        return Some(format!("{TOPIC_PREFIX}{}.{rest}", token(conn)));
    }
    None
}

/// Whether a frame names a temporary destination (checked before any work).
pub(super) fn names_temp(f: &Frame<'_>) -> bool {
    let temp = |v: Option<&str>| v.is_some_and(|d| d.starts_with(TEMP_QUEUE) || d.starts_with(TEMP_TOPIC));
    temp(f.header("destination")) || (f.command == Command::Send && temp(f.header("reply-to")))
}

/// The frame with its temporary names replaced by their real ones; and, for a SEND whose
/// `reply-to` names a temp queue, that name (to be consumed before the SEND goes).
pub(super) fn rewrite<'a>(conn: &mut Conn, f: &Frame<'a>) -> (Frame<'a>, Option<(String, String)>) {
    let mut out = f.clone();
    let mut reply = None;
    let mut seen = (false, false);
    for h in out.headers.iter_mut() {
        let first = match h.name.as_ref() {
            "destination" => !std::mem::replace(&mut seen.0, true),
            "reply-to" if f.command == Command::Send => !std::mem::replace(&mut seen.1, true),
            _ => false,
        };
        if !first {
            continue;
        }
        let Some(r) = real(conn, &h.value) else { continue };
        if h.name == "reply-to" && h.value.starts_with(TEMP_QUEUE) {
            reply = Some((h.value.to_string(), r.clone()));
        }
        h.value = Cow::Owned(r);
    }
    (out, reply)
}

/// Whether `dest` is a temporary destination of this connection.
pub(super) fn is_own(conn: &Conn, dest: &str) -> bool {
    let Some(t) = conn.session.temp.as_ref() else { return false };
    let rest = dest.strip_prefix(QUEUE_PREFIX).or_else(|| dest.strip_prefix(TOPIC_PREFIX));
    rest.and_then(|r| r.strip_prefix(&*t.token)).is_some_and(|r| r.starts_with('.'))
}

/// A SUBSCRIBE to another connection's temporary destination is refused, and so is one more
/// of its own past `max` (`max_subs`).
pub(super) fn check_subscribe(conn: &Conn, dest: &str, max: usize) -> Res {
    if !is_temp(dest) {
        return Ok(());
    }
    if !is_own(conn, dest) {
        return Err(Fatal::new(ErrorWord::AccessDenied, format!("{dest} is another connection's temporary destination")));
    }
    let held = conn.session.temp.as_ref().map_or(&[][..], |t| &t.dests[..]);
    if held.len() >= max && !held.iter().any(|d| &**d == dest) {
        return Err(Fatal::new(
            ErrorWord::SubsFlup,
            format!("too many temporary destinations on this connection (limit: max_subs = {max})"),
        ));
    }
    Ok(())
}

/// Remember a temporary destination the connection subscribed to.
pub(super) fn note(conn: &mut Conn, dest: &Arc<str>) {
    if let Some(t) = conn.session.temp.as_mut() {
        if !t.dests.iter().any(|d| d == dest) {
            t.dests.push(dest.clone());
        }
    }
}

/// Consume the temp queue a SEND's `reply-to` names, unless the connection already does:
/// a SUBSCRIBE with the temp name as its id.
pub(super) fn consume_reply_queue(conn: &mut Conn, temp_name: &str, real: &str, ctx: &mut Ctx) -> Res {
    if conn.session.subs.values().any(|s| &*s.dest == real) {
        return Ok(());
    }
    let mut headers = crate::stomp::frame::Headers::new();
    for (name, value) in [("id", temp_name), ("destination", real), ("ack", "auto")] {
        headers.push(crate::stomp::frame::Header { name: Cow::Borrowed(name), value: Cow::Owned(value.to_string()) });
    }
    let f = Frame { command: Command::Subscribe, headers, body: &[] };
    super::subscribe::subscribe(conn, &f, ctx)
}

/// The connection is closing: its temporary destinations go, with what they hold.
pub(super) fn delete_all(conn: &mut Conn, ctx: &mut Ctx) {
    let Some(t) = conn.session.temp.take() else { return };
    for dest in t.dests {
        let w = owner_of(&dest, ctx.outbox.workers());
        ctx.outbox.to_owner(w, ToOwner::DropTemp { dest });
    }
}
