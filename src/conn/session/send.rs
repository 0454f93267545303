//! SEND: destination and policy checks, the embedder's handlers and pre-publish hook, and the
//! publish to the destination's owner (checklist sections F and H).

use super::*;

pub(super) fn send(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let dest = match (&conn.session.last_dest, f.header("destination")) {
        // The same destination as the last SEND: already checked.
        (Some(last), Some(name)) if *last.dest == *name => name,
        _ => destination(f)?,
    };
    if let Some(action) = dest.strip_prefix(crate::admin::PREFIX) {
        if conn.who.listener != ListenerKind::Admin || !conn.who.admin {
            return Err(Fatal::new(
                ErrorWord::Blocked,
                format!("{dest}: admin actions are accepted only from an admin user on the admin port"),
            ));
        }
        if let Some(w) = crate::conn::admin::handle(conn, f, action, ctx) {
            conn.session.touched.insert(w);
        }
        return Ok(());
    }
    let (dest, policy, durable) = match &conn.session.last_dest {
        // Checked once per destination (and again after a reload): the rules cannot change
        // without a new generation.
        Some(last) if *last.dest == *dest && last.gen == ctx.env.policies.gen => (last.dest.clone(), last.policy.clone(), last.durable),
        _ => {
            if DestKind::of(dest) == DestKind::Topic
                && !matches!(crate::broker::wildcard::Pattern::parse(dest, ctx.env.cfg.wildcards), Ok(None))
            {
                return Err(Fatal::new(
                    ErrorWord::Syntax,
                    format!("{dest} is a wildcard: a SEND names one topic (wildcards = \"{}\")", ctx.env.cfg.wildcards.as_str()),
                ));
            }
            dialect::rabbit_destination(dest)?;
            check_access(conn, crate::acl::Verb::Send, dest, ctx)?;
            let d: Arc<str> = Arc::from(dest);
            let p = ctx.env.policies.resolve(&d).clone();
            let (create, durable) = (may_create(conn, &d, ctx), allowed(conn, crate::acl::Verb::Durable, &d, ctx));
            let gen = ctx.env.policies.gen;
            conn.session.last_dest = Some(LastDest { dest: d.clone(), policy: p.clone(), gen, create, durable });
            (d, p, durable)
        }
    };
    check_policy(conn, &dest, &policy, true, ctx)?;
    let (deliver_at, period, repeat) = dialect::check_send(f, &dest, ctx.time.wall_ms)?;
    if !durable && f.header("persistent") == Some("true") {
        return denied(conn, crate::acl::Verb::Durable, &dest);
    }
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
    if deliver_at != 0
        && DestKind::of(&dest) == DestKind::Topic
        && f.header("persistent") == Some("true")
        && !ctx.env.cfg.data_dir.is_empty()
    {
        return Err(Fatal::new(
            ErrorWord::Unsupported,
            format!("{dest}: a scheduled topic message is held in memory only; send it without persistent:true, or schedule it to a queue"),
        ));
    }
    let mut msg = Message::new(ctx.next_message_id(), dest, headers, f.body.into());
    msg.expires = expires;
    (msg.deliver_at, msg.period, msg.repeat) = (deliver_at, period, repeat);
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

pub(super) fn publish(conn: &mut Conn, msg: Arc<Message>, receipt: Option<&str>, ctx: &mut Ctx) -> Res {
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
    // Decided with the SEND's other checks (a hook may have renamed the destination).
    let create = match &conn.session.last_dest {
        Some(last) if *last.dest == *msg.destination && last.gen == ctx.env.policies.gen => last.create,
        _ => may_create(conn, &msg.destination, ctx),
    };
    ctx.to_owner(w, ToOwner::Publish { msg, from: Publisher::Conn(conn.me), receipt: receipt.map(Box::from), create });
    Ok(())
}

/// Embedded STOMP handlers and the pre-publish hook. Returns the message to publish, or `None`
/// if a handler took it. A panicking handler closes only this connection.
pub(super) fn run_handlers(conn: &mut Conn, msg: Arc<Message>, ctx: &mut Ctx) -> Result<Option<Arc<Message>>, Fatal> {
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
        crate::conn::deliver::write_message(&mut conn.out, conn.version, &sub_id, &m, None, false, false);
        mark_dirty(conn, ctx);
    }
    for (dest, headers, body) in publishes {
        let m = Arc::new(crate::api::message(ctx.next_message_id(), &dest, headers, body));
        let w = owner_of(&m.destination, ctx.outbox.workers());
        conn.session.touched.insert(w);
        // Published by the embedder's hook, not by the client: no access rule applies.
        ctx.outbox.to_owner(w, ToOwner::Publish { msg: m, from: Publisher::Conn(conn.me), receipt: None, create: true });
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

pub(super) fn same_headers(a: &[(String, String)], b: &[(Box<str>, Box<str>)]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|((k1, v1), (k2, v2))| **k2 == **k1 && **v2 == **v1)
}
