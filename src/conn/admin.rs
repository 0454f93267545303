//! Carrying out admin actions (parsed by [`crate::admin`]) on the admin connection's worker:
//! sending their operations over the bus, applying `perms` on worker 0, and writing each result
//! to the admin connection as a MESSAGE.
//!
//! Runs on the worker that holds the admin connection (and, for `perms`, on worker 0).

use super::{mark_dirty, Conn, Ctx};
use crate::admin::{self, AdminOp, AdminReply, Request, PREFIX};
use crate::broker::{owner_of, ConnRef};
use crate::bus::{ToOwner, ToWorker};
use crate::config::DestConfig;
use std::sync::Arc;

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
        conn.out = ctx.turn.pool.take();
    }
    super::deliver::write_message(&mut conn.out, conn.version, "admin", &m, None, false, false);
    mark_dirty(conn, ctx);
}

/// Handle a SEND to `/virt/admin/<action>` from an admin. Returns the owner the action was
/// sent to (a RECEIPT waits for it).
pub fn handle(conn: &mut Conn, f: &crate::stomp::Frame<'_>, action: &str, ctx: &mut Ctx) -> Option<usize> {
    let me = conn.me;
    let sid = conn.session_id();
    let request = match admin::parse(action, f) {
        Ok(r) => r,
        Err(reply) => {
            write_reply(conn, &reply, ctx);
            return None;
        }
    };
    match request {
        Request::Shutdown => {
            log::warn!("{sid} {}: admin shutdown requested by {:?}", conn.who.peer, conn.who.login);
            write_reply(conn, &AdminReply::ok("shutdown", "shutting down: no new connections; open ones are flushed and closed"), ctx);
            ctx.request_stop();
            None
        }
        Request::Purge { dest, action } => {
            let w = owner_of(&dest, ctx.outbox.workers());
            log::info!("{sid}: admin purge of {dest}");
            ctx.outbox.to_owner(w, ToOwner::Admin { from: me, op: AdminOp::Purge { dest: Arc::from(dest), action } });
            Some(w)
        }
        Request::Perms { target, change, acl } => {
            log::info!("{sid}: admin perms change of {target}: {change:?} {acl:?}");
            ctx.outbox.to_owner(0, ToOwner::Admin { from: me, op: AdminOp::Perms { target, change, acl } });
            Some(0)
        }
        Request::Kick { target } if (target.worker as usize) < ctx.outbox.workers() => {
            let target = ConnRef { worker: target.worker, slot: target.slot, gen: target.gen };
            ctx.outbox.to_worker(target.worker as usize, ToWorker::Kick { target, by: me });
            None
        }
        Request::Kick { .. } => {
            write_reply(conn, &AdminReply::error("kick", admin::KICK_USAGE), ctx);
            None
        }
    }
}

/// Worker 0: apply a `perms` change to the master table and hand the new table to everyone.
pub fn apply_perms(target: &str, change: &DestConfig, acl: &crate::acl::Rule, ctx: &mut Ctx) -> AdminReply {
    let mut entries = ctx.env.policies.entries.clone();
    admin::merge_perms(&mut entries, target, change);
    // The access rules as they stand (earlier perms changes included), this one merged in.
    let mut rules = ctx.env.policies.acl.rules();
    if *acl != crate::acl::Rule::default() {
        let r = rules.entry(target.to_string()).or_default();
        for (slot, v) in [(&mut r.send, &acl.send), (&mut r.subscribe, &acl.subscribe), (&mut r.durable, &acl.durable)] {
            if v.is_some() {
                *slot = v.clone();
            }
        }
    }
    let mut check = (*ctx.env.cfg).clone();
    check.destinations = entries.clone();
    check.acl = rules;
    if let Err(err) = check.validate("perms") {
        return AdminReply::error("perms", err.to_string());
    }
    let policies = Arc::new(crate::broker::policy::Policies::build(&check, entries, ctx.env.policies.gen + 1));
    let rc = Arc::new(crate::bus::Reconfig { cfg: ctx.env.cfg.clone(), policies, auth: ctx.env.auth.clone(), tls: ctx.env.tls.clone() });
    for w in 0..ctx.outbox.workers() {
        ctx.outbox.to_worker(w, ToWorker::Reconfigure(rc.clone()));
    }
    AdminReply::ok("perms", format!("{target}: changed; every worker applies it before its next frame"))
}
