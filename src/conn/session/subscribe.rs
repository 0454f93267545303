//! SUBSCRIBE and UNSUBSCRIBE: ack modes, prefetch, filters, the local topic index and the
//! owner's registration (checklist section G).

use super::*;

pub(super) fn parse_prefetch(f: &Frame<'_>, ctx: &Ctx) -> Result<u32, Fatal> {
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

pub(super) fn subscribe(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let dest = destination(f)?;
    let id = match f.header("id") {
        Some(id) if !id.is_empty() => id,
        _ if conn.version == Version::V1_0 => dest, // G1: 1.0 ids are optional; the destination names it
        _ => return Err(Fatal::new(ErrorWord::Syntax, "SUBSCRIBE requires an id header")),
    };
    if id.len() > MAX_SUBSCRIPTION_ID_LEN && id != dest {
        return Err(Fatal::new(ErrorWord::Syntax, format!("subscription ids are at most {MAX_SUBSCRIPTION_ID_LEN} bytes")));
    }
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
            pending: super::pending::PendingList::default(),
            owed_credit: 0,
            paused: false,
            dropped: 0,
            filter: filter.clone(),
            slow: policy.slow_consumer,
        }),
    );
    if kind == DestKind::Topic {
        let t = ctx.topics.entry(dest.clone()).or_default();
        t.filter_header = policy.filter_header.clone();
        t.add(crate::conn::ctx::LocalSub { slot: conn.me.slot, gen: conn.me.gen, serial }, filter.as_deref());
    }
    let w = owner_of(&dest, ctx.outbox.workers());
    s.touched.insert(w);
    // With a receipt, the owner answers the barrier itself, before the first MESSAGE.
    let barrier = f.header("receipt").is_some();
    if barrier {
        s.inline_barrier = Some(w);
    }
    ctx.outbox.to_owner(w, ToOwner::Subscribe { dest, key: SubKey { conn: conn.me, serial }, mode, prefetch, filter, barrier });
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
    if !conn.session.by_msg_id.is_empty() {
        for p in sub.pending.iter() {
            conn.session.unindex(p, serial);
        }
    }
    if sub.kind == DestKind::Topic {
        if let Some(t) = ctx.topics.get_mut(&sub.dest) {
            t.remove(crate::conn::ctx::LocalSub { slot: conn.me.slot, gen: conn.me.gen, serial }, sub.filter.as_deref());
            if t.is_empty() {
                ctx.topics.remove(&sub.dest);
            }
        }
    }
    Some(*sub)
}

pub(super) fn unsubscribe(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let id = match f.header("id") {
        Some(id) => id,
        None if conn.version == Version::V1_0 => {
            // 1.0 may name the destination instead. A subscription made without an id has
            // the destination as its id; ones made with an id (stompngo always sends one)
            // are found by destination, all of them, as ActiveMQ does.
            let dest = required(f, "destination")?;
            if !conn.session.by_id.contains_key(dest) {
                let serials: Vec<u32> = conn.session.subs.iter().filter(|(_, s)| &*s.dest == dest).map(|(&k, _)| k).collect();
                if serials.is_empty() {
                    return Err(Fatal::new(ErrorWord::Syntax, format!("no subscription to {dest:?}")));
                }
                for serial in serials {
                    drop_subscription(conn, serial, ctx);
                }
                return Ok(());
            }
            dest
        }
        None => return Err(Fatal::new(ErrorWord::Syntax, "UNSUBSCRIBE requires an id header")),
    };
    let serial = *conn.session.by_id.get(id).ok_or_else(|| Fatal::new(ErrorWord::Syntax, format!("no subscription with id {id:?}")))?;
    drop_subscription(conn, serial, ctx);
    Ok(())
}
