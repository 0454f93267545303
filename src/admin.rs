//! Admin actions: SENDs to `/virt/admin/<action>` from an admin user on the admin port.
//!
//! Runs on the admin connection's worker, which turns each action into bus messages:
//! - `shutdown`: stop every worker gracefully (stop accepting, flush, close; the process exits 0);
//! - `purge` (alias `clean`): empty the destination named by the `target` header (a queue's ready
//!   messages, a topic's retained ones), on its owner;
//! - `perms`: change the blocks and limits of `target` (exact name or `prefix*`) at run time,
//!   on worker 0, which keeps the master policy table and sends every worker the new one;
//! - `kick`: close the connection whose session id (`worker-slot-generation`, as in CONNECTED)
//!   is in the `session` header.
//!
//! Every action is answered with a MESSAGE on the admin connection (`subscription:admin`,
//! `destination:/virt/admin/<action>`, `result:ok|error`, a sentence in the body), and with a
//! RECEIPT when the SEND asked for one, written after the action took effect.

use crate::broker::{owner_of, ConnRef};
use crate::bus::{ToOwner, ToWorker};
use crate::config::DestConfig;
use crate::conn::{mark_dirty, Conn, Ctx};
use std::sync::Arc;

/// The destination prefix of admin actions.
pub const PREFIX: &str = "/virt/admin/";

/// An admin action that runs away from the admin's worker.
#[derive(Debug, Clone)]
pub enum AdminOp {
    /// `action`: the name it was asked by (`purge` or `clean`), echoed in the result.
    Purge {
        dest: Arc<str>,
        action: &'static str,
    },
    Perms {
        target: String,
        change: Box<DestConfig>,
    },
}

impl AdminOp {
    pub fn name(&self) -> &'static str {
        match self {
            AdminOp::Purge { .. } => "purge",
            AdminOp::Perms { .. } => "perms",
        }
    }
}

/// The outcome of an admin action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminReply {
    pub action: String,
    pub ok: bool,
    pub text: String,
    pub headers: Vec<(String, String)>,
}

impl AdminReply {
    pub fn ok(action: &str, text: impl Into<String>) -> AdminReply {
        AdminReply { action: action.to_string(), ok: true, text: text.into(), headers: Vec::new() }
    }
    pub fn error(action: &str, text: impl Into<String>) -> AdminReply {
        AdminReply { action: action.to_string(), ok: false, text: text.into(), headers: Vec::new() }
    }
}

pub fn purge_reply(action: &str, dest: &str, p: crate::broker::shard::Purged) -> AdminReply {
    let mut r = if p.found {
        AdminReply::ok(action, format!("{dest}: {} messages removed", p.messages))
    } else {
        AdminReply::ok(action, format!("{dest}: nothing held"))
    };
    r.headers.push(("purged".into(), p.messages.to_string()));
    r
}

/// Write an admin result to the admin connection.
pub fn write_reply(conn: &mut Conn, reply: &AdminReply, ctx: &mut Ctx) {
    if conn.is_closing() {
        return;
    }
    let mut headers = vec![("result".to_string(), if reply.ok { "ok" } else { "error" }.to_string())];
    headers.extend(reply.headers.iter().cloned());
    headers.push(("content-type".into(), "text/plain".into()));
    let dest = format!("{PREFIX}{}", reply.action);
    let m = crate::api::message(ctx.next_message_id(), &dest, headers, reply.text.clone().into_bytes());
    if conn.out.capacity() == 0 {
        conn.out = ctx.pool.take();
    }
    crate::conn::deliver::write_message(&mut conn.out, conn.version, "admin", &m, None, false, false);
    mark_dirty(conn, ctx);
}

fn header<'a>(f: &'a crate::stomp::Frame<'_>, name: &str) -> Option<&'a str> {
    f.header(name).filter(|v| !v.is_empty())
}

/// The `target` header, or the body as text.
fn target(f: &crate::stomp::Frame<'_>) -> Option<String> {
    header(f, "target").map(str::to_string).or_else(|| {
        let b = std::str::from_utf8(f.body).ok()?.trim();
        (!b.is_empty() && !b.chars().any(char::is_control)).then(|| b.to_string())
    })
}

/// Read the `perms` headers into a change. Errors name the header.
fn perms_change(f: &crate::stomp::Frame<'_>) -> Result<DestConfig, String> {
    let mut d = DestConfig::default();
    let flag = |name: &str| -> Result<Option<bool>, String> {
        match header(f, name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(v) => Err(format!("{name}: {v:?} is not true or false")),
        }
    };
    let num = |name: &str| -> Result<Option<u64>, String> {
        header(f, name).map(|v| v.parse::<u64>().map_err(|_| format!("{name}: {v:?} is not a non-negative integer"))).transpose()
    };
    d.read_block = flag("read_block")?;
    d.write_block = flag("write_block")?;
    d.web_read_block = flag("web_read_block")?;
    d.web_write_block = flag("web_write_block")?;
    d.max_connections = num("max_connections")?.map(|v| v as usize);
    d.max_messages = num("max_messages")?.map(|v| v as usize);
    d.max_queue_bytes = num("max_queue_bytes")?.map(|v| v as usize);
    d.max_message_size = num("max_message_size")?.map(|v| v as usize);
    d.expiry = num("expiry")?;
    if d == DestConfig::default() {
        return Err("no change: set one of read_block, write_block, web_read_block, web_write_block, max_connections, max_messages, max_queue_bytes, max_message_size, expiry".into());
    }
    Ok(d)
}

/// Parse a session id `worker-slot-generation`.
fn session_ref(s: &str) -> Option<ConnRef> {
    let mut it = s.split('-');
    let r = ConnRef { worker: it.next()?.parse().ok()?, slot: it.next()?.parse().ok()?, gen: it.next()?.parse().ok()? };
    it.next().is_none().then_some(r)
}

/// Handle a SEND to `/virt/admin/<action>` from an admin. Returns the owners the action was
/// sent to (a RECEIPT waits for them).
pub fn handle(conn: &mut Conn, f: &crate::stomp::Frame<'_>, action: &str, ctx: &mut Ctx) -> Option<usize> {
    let me = conn.me;
    let sid = conn.session_id();
    match action {
        "shutdown" => {
            log::warn!("{sid} {}: admin shutdown requested by {:?}", conn.peer, conn.login);
            write_reply(conn, &AdminReply::ok("shutdown", "shutting down: no new connections; open ones are flushed and closed"), ctx);
            ctx.request_stop();
            None
        }
        "purge" | "clean" => match target(f) {
            Some(dest) => {
                let w = owner_of(&dest, ctx.outbox.workers());
                log::info!("{sid}: admin purge of {dest}");
                let action = if action == "clean" { "clean" } else { "purge" };
                ctx.outbox.to_owner(w, ToOwner::Admin { from: me, op: AdminOp::Purge { dest: Arc::from(dest), action } });
                Some(w)
            }
            None => {
                write_reply(conn, &AdminReply::error(action, "name the destination in a target header"), ctx);
                None
            }
        },
        "perms" => match (target(f), perms_change(f)) {
            (Some(target), Ok(change)) => {
                log::info!("{sid}: admin perms change of {target}: {change:?}");
                ctx.outbox.to_owner(0, ToOwner::Admin { from: me, op: AdminOp::Perms { target, change: Box::new(change) } });
                Some(0)
            }
            (None, _) => {
                write_reply(conn, &AdminReply::error("perms", "name the destination (or prefix*) in a target header"), ctx);
                None
            }
            (_, Err(e)) => {
                write_reply(conn, &AdminReply::error("perms", e), ctx);
                None
            }
        },
        "kick" => match header(f, "session").and_then(session_ref) {
            Some(target) if (target.worker as usize) < ctx.outbox.workers() => {
                ctx.outbox.to_worker(target.worker as usize, ToWorker::Kick { target, by: me });
                None
            }
            _ => {
                write_reply(
                    conn,
                    &AdminReply::error("kick", "name the connection in a session header (worker-slot-generation, as in CONNECTED)"),
                    ctx,
                );
                None
            }
        },
        other => {
            let text = format!("unknown admin action {other:?}: use shutdown, purge (clean), perms or kick");
            write_reply(conn, &AdminReply::error(other, text), ctx);
            None
        }
    }
}

/// Worker 0: apply a `perms` change to the master table and hand the new table to everyone.
pub fn apply_perms(target: &str, change: &DestConfig, ctx: &mut Ctx) -> AdminReply {
    let mut entries = ctx.policies.entries.clone();
    let e = entries.entry(target.to_string()).or_default();
    let fields = [
        (change.read_block.is_some(), &mut e.read_block, change.read_block),
        (change.write_block.is_some(), &mut e.write_block, change.write_block),
        (change.web_read_block.is_some(), &mut e.web_read_block, change.web_read_block),
        (change.web_write_block.is_some(), &mut e.web_write_block, change.web_write_block),
    ];
    for (set, slot, v) in fields {
        if set {
            *slot = v;
        }
    }
    for (v, slot) in [
        (change.max_connections, &mut e.max_connections),
        (change.max_messages, &mut e.max_messages),
        (change.max_queue_bytes, &mut e.max_queue_bytes),
        (change.max_message_size, &mut e.max_message_size),
    ] {
        if v.is_some() {
            *slot = v;
        }
    }
    if change.expiry.is_some() {
        e.expiry = change.expiry;
    }
    let mut check = (*ctx.cfg).clone();
    check.destinations = entries.clone();
    if let Err(err) = check.validate("perms") {
        return AdminReply::error("perms", err.to_string());
    }
    let policies = Arc::new(crate::broker::policy::Policies::build(&ctx.cfg, entries, ctx.policies.gen + 1));
    let rc = Arc::new(crate::bus::Reconfig { cfg: ctx.cfg.clone(), policies, auth: ctx.auth.clone() });
    for w in 0..ctx.outbox.workers() {
        ctx.outbox.to_worker(w, ToWorker::Reconfigure(rc.clone()));
    }
    AdminReply::ok("perms", format!("{target}: changed; every worker applies it before its next frame"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_parse_strictly() {
        assert_eq!(session_ref("1-20-3"), Some(ConnRef { worker: 1, slot: 20, gen: 3 }));
        assert_eq!(session_ref("1-20"), None);
        assert_eq!(session_ref("1-20-3-4"), None);
        assert_eq!(session_ref("a-b-c"), None);
    }
}
