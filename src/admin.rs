//! Admin actions: SENDs to `/virt/admin/<action>` from an admin user on the admin port.
//!
//! This module is the plane's vocabulary and parser (sans-io, no connection or bus): it turns a
//! SEND into an [`Request`] or an error [`AdminReply`], and defines the operations that travel to
//! other workers ([`AdminOp`]). `conn::admin` carries them out on the admin connection's worker:
//! - `shutdown`: stop every worker gracefully (stop accepting, flush, close; the process exits 0);
//! - `purge` (alias `clean`): empty the destination named by the `target` header (a queue's ready
//!   messages, a topic's retained ones), on its owner;
//! - `perms`: change the blocks and limits of `target` (exact name or `prefix*`), and its access
//!   rules (`acl.send`, `acl.subscribe`, `acl.durable`: comma-separated logins, groups, `*` or
//!   `anonymous`; empty denies), at run time, on worker 0, which keeps the master policy table
//!   and sends every worker the new one;
//! - `kick`: close the connection whose session id (`worker-slot-generation`, as in CONNECTED)
//!   is in the `session` header.
//!
//! Every action is answered with a MESSAGE on the admin connection (`subscription:admin`,
//! `destination:/virt/admin/<action>`, `result:ok|error`, a sentence in the body), and with a
//! RECEIPT when the SEND asked for one, written after the action took effect.

use crate::config::DestConfig;
use crate::stomp::Frame;
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
        acl: Box<crate::acl::Rule>,
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

fn header<'a>(f: &'a Frame<'_>, name: &str) -> Option<&'a str> {
    f.header(name).filter(|v| !v.is_empty())
}

/// The `target` header, or the body as text.
fn target(f: &Frame<'_>) -> Option<String> {
    header(f, "target").map(str::to_string).or_else(|| {
        let b = std::str::from_utf8(f.body).ok()?.trim();
        (!b.is_empty() && !b.chars().any(char::is_control)).then(|| b.to_string())
    })
}

/// Read the `perms` access-rule headers (`acl.VERB`: a comma-separated list; empty denies).
fn acl_change(f: &Frame<'_>) -> crate::acl::Rule {
    let list =
        |name: &str| header(f, name).map(|v| v.split(',').map(str::trim).filter(|p| !p.is_empty()).map(str::to_string).collect::<Vec<_>>());
    crate::acl::Rule { send: list("acl.send"), subscribe: list("acl.subscribe"), create: None, durable: list("acl.durable") }
}

/// Read the `perms` headers into a change of limits and blocks, and one of access rules.
/// Errors name the header.
fn perms_change(f: &Frame<'_>) -> Result<(DestConfig, crate::acl::Rule), String> {
    let d = limits_change(f)?;
    let acl = acl_change(f);
    if d == DestConfig::default() && acl == crate::acl::Rule::default() {
        return Err("no change: set one of read_block, write_block, web_read_block, web_write_block, max_connections, max_messages, max_queue_bytes, max_message_size, expiry, acl.send, acl.subscribe, acl.durable".into());
    }
    Ok((d, acl))
}

fn limits_change(f: &Frame<'_>) -> Result<DestConfig, String> {
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
    Ok(d)
}

/// A session id `worker-slot-generation`, as CONNECTED's `session` header gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionId {
    pub worker: u16,
    pub slot: u32,
    pub gen: u32,
}

/// Parse a session id `worker-slot-generation`.
fn session_ref(s: &str) -> Option<SessionId> {
    let mut it = s.split('-');
    let r = SessionId { worker: it.next()?.parse().ok()?, slot: it.next()?.parse().ok()?, gen: it.next()?.parse().ok()? };
    it.next().is_none().then_some(r)
}

/// A well-formed admin action, ready to be carried out.
#[derive(Debug, Clone)]
pub enum Request {
    Shutdown,
    /// `action`: `purge` or `clean`, echoed in the result.
    Purge {
        dest: String,
        action: &'static str,
    },
    Perms {
        target: String,
        change: Box<DestConfig>,
        acl: Box<crate::acl::Rule>,
    },
    Kick {
        target: SessionId,
    },
}

/// Read a SEND to `/virt/admin/<action>`; an error is the reply the admin gets.
pub fn parse(action: &str, f: &Frame<'_>) -> Result<Request, AdminReply> {
    match action {
        "shutdown" => Ok(Request::Shutdown),
        "purge" | "clean" => match target(f) {
            Some(dest) => Ok(Request::Purge { dest, action: if action == "clean" { "clean" } else { "purge" } }),
            None => Err(AdminReply::error(action, "name the destination in a target header")),
        },
        "perms" => match (target(f), perms_change(f)) {
            (Some(target), Ok((change, acl))) => Ok(Request::Perms { target, change: Box::new(change), acl: Box::new(acl) }),
            (None, _) => Err(AdminReply::error("perms", "name the destination (or prefix*) in a target header")),
            (_, Err(e)) => Err(AdminReply::error("perms", e)),
        },
        "kick" => match header(f, "session").and_then(session_ref) {
            Some(target) => Ok(Request::Kick { target }),
            None => Err(AdminReply::error("kick", KICK_USAGE)),
        },
        other => Err(AdminReply::error(other, format!("unknown admin action {other:?}: use shutdown, purge (clean), perms or kick"))),
    }
}

/// The reply to a `kick` without a usable session id.
pub const KICK_USAGE: &str = "name the connection in a session header (worker-slot-generation, as in CONNECTED)";

/// Apply a `perms` change to a copy of the master table entries.
pub fn merge_perms(entries: &mut std::collections::BTreeMap<String, DestConfig>, target: &str, change: &DestConfig) {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_parse_strictly() {
        assert_eq!(session_ref("1-20-3"), Some(SessionId { worker: 1, slot: 20, gen: 3 }));
        assert_eq!(session_ref("1-20"), None);
        assert_eq!(session_ref("1-20-3-4"), None);
        assert_eq!(session_ref("a-b-c"), None);
    }
}
