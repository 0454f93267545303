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

/// The name of the durable topic subscription a SUBSCRIBE or UNSUBSCRIBE names, in any of the
/// spellings clients use: ActiveMQ's `activemq.subscriptionName`, Artemis'
/// `durable-subscription-name` / `durable-subscriber-name`, RabbitMQ's `durable:true` (or the
/// older `persistent:true`) with the subscription `id` as the name (on SUBSCRIBE, unless
/// `auto-delete:true`).
pub(super) fn durable_name<'f>(f: &'f Frame<'_>, id: Option<&'f str>, subscribe: bool) -> Result<Option<&'f str>, Fatal> {
    let named = ["activemq.subscriptionName", "durable-subscription-name", "durable-subscriber-name"]
        .iter()
        .find_map(|h| f.header(h).filter(|v| !v.is_empty()));
    let rabbit = || {
        let durable = f.header("durable") == Some("true") || f.header("persistent") == Some("true");
        (durable && !(subscribe && f.header("auto-delete") == Some("true"))).then_some(id).flatten()
    };
    match named.or_else(rabbit) {
        Some(n) if n.len() > MAX_SUBSCRIPTION_ID_LEN => {
            Err(Fatal::new(ErrorWord::Syntax, format!("durable subscription names are at most {MAX_SUBSCRIPTION_ID_LEN} bytes")))
        }
        other => Ok(other),
    }
}

/// Whose durable subscriptions this connection names: its `client-id`, or else its login.
fn durable_identity(conn: &Conn) -> Result<Box<str>, Fatal> {
    conn.who.client_id.clone().or_else(|| conn.who.login.as_deref().map(Box::from)).ok_or_else(|| {
        Fatal::new(ErrorWord::Syntax, "a durable subscription needs a client-id header on CONNECT (or a login) to be known by")
    })
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
    dialect::check_subscribe(f, dest)?;
    let (priority, exclusive) = dialect::consumer_dialect(f, dest)?;
    let browse = f.header("browser") == Some("true");
    if browse && DestKind::of(dest) != DestKind::Queue {
        return Err(Fatal::new(ErrorWord::Unsupported, format!("{dest}: browsing (browser:true) is for queues")));
    }
    let prefetch = parse_prefetch(f, ctx)?;
    let policy = ctx.env.policies.resolve(dest).clone();
    check_policy(conn, dest, &policy, false, ctx)?;
    temp::check_subscribe(conn, dest, ctx.env.cfg.max_subs)?;
    // A connection's own temporary destinations are its to use whatever the access rules.
    let own_temp = temp::is_own(conn, dest);
    if !own_temp {
        check_access(conn, crate::acl::Verb::Subscribe, dest, ctx)?;
    }
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
    let selector = match f.header("selector") {
        None | Some("") => None,
        Some(_) if !ctx.env.cfg.selectors => {
            return Err(Fatal::new(ErrorWord::Unsupported, "selectors are turned off on this broker (selectors = false)"))
        }
        Some(text) => Some(Arc::new(
            crate::selector::Selector::parse(text).map_err(|e| Fatal::new(ErrorWord::Syntax, format!("selector {text:?}: {e}")))?,
        )),
    };
    if conn.session.by_id.contains_key(id) {
        return Err(Fatal::new(ErrorWord::Syntax, format!("duplicated subscription identifier {id:?}")));
    }
    let wild = match crate::broker::wildcard::Pattern::parse(dest, ctx.env.cfg.wildcards) {
        Err(detail) => return Err(Fatal::new(ErrorWord::Syntax, detail)),
        Ok(None) => None,
        Ok(Some(_)) if DestKind::of(dest) == DestKind::Queue => {
            return Err(Fatal::new(
                ErrorWord::Unsupported,
                format!("{dest}: wildcard subscriptions are for topics; a queue is consumed by its name"),
            ))
        }
        Ok(Some(_)) if filter.is_some() => {
            return Err(Fatal::new(ErrorWord::Unsupported, "a wildcard subscription cannot filter (use a selector)"))
        }
        Ok(Some(p)) => Some(Arc::new(p)),
    };
    // Queues are durable already; on a topic, a named subscription is a queue of its own.
    let durable = match durable_name(f, Some(id), true)? {
        Some(name) if DestKind::of(dest) == DestKind::Topic => {
            if filter.is_some() {
                return Err(Fatal::new(ErrorWord::Syntax, "a durable subscription cannot also filter"));
            }
            if selector.is_some() {
                return Err(Fatal::new(ErrorWord::Unsupported, "a durable subscription with a selector is not supported"));
            }
            if wild.is_some() {
                return Err(Fatal::new(ErrorWord::Unsupported, "a durable subscription to a wildcard is not supported"));
            }
            check_access(conn, crate::acl::Verb::Durable, dest, ctx)?;
            Some(Box::new((durable_identity(conn)?, Box::<str>::from(name))))
        }
        _ => None,
    };
    if conn.session.subs.len() >= ctx.env.cfg.max_subs {
        return Err(Fatal::new(
            ErrorWord::SubsFlup,
            format!("too many subscriptions on this connection (limit: max_subs = {})", ctx.env.cfg.max_subs),
        ));
    }
    if wild.is_some() {
        let max = ctx.env.cfg.max_wildcard_subs;
        let held = &ctx.env.shared.wildcard_subs;
        if held.fetch_add(1, std::sync::atomic::Ordering::Relaxed) >= max {
            held.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            return Err(Fatal::new(
                ErrorWord::SubsFlup,
                format!("the broker holds as many wildcard subscriptions as it may (max_wildcard_subs = {max})"),
            ));
        }
    }
    let s = &mut conn.session;
    s.next_serial += 1;
    let serial = s.next_serial;
    let dest: Arc<str> = Arc::from(dest);
    // A durable subscription is served like a queue's (acks, credit, redelivery).
    let kind = if durable.is_some() { DestKind::Queue } else { DestKind::of(&dest) };
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
            selector: selector.clone(),
            wild: wild.clone(),
            browse,
            slow: policy.slow_consumer,
        }),
    );
    if browse {
        // Not a consumer: the owner sends a copy of what it holds, then the end.
        let w = owner_of(&dest, ctx.outbox.workers());
        s.touched.insert(w);
        let barrier = f.header("receipt").is_some();
        if barrier {
            s.inline_barrier = Some(w);
        }
        if let Some(sub) = s.subs.get_mut(&serial) {
            sub.mode = AckMode::Auto;
        }
        ctx.outbox.to_owner(w, ToOwner::Browse { dest, key: SubKey { conn: conn.me, serial }, barrier });
        return Ok(());
    }
    if let Some(pattern) = wild {
        // Every owner routes the topics it owns that match; the receipt waits for them all.
        let key = SubKey { conn: conn.me, serial };
        ctx.wild.insert(&pattern, (crate::conn::ctx::LocalSub { slot: conn.me.slot, gen: conn.me.gen, serial }, selector));
        for w in 0..ctx.outbox.workers() {
            s.touched.insert(w);
            ctx.outbox.to_owner(w, ToOwner::WildSubscribe { pattern: pattern.clone(), key });
        }
        return Ok(());
    }
    // A topic subscriber's selector is applied here, as this worker fans out; a queue
    // consumer's by the queue's owner, as it dispatches.
    let selector = if kind == DestKind::Topic {
        let t = ctx.topics.entry(dest.clone()).or_default();
        t.filter_header = policy.filter_header.clone();
        t.add(crate::conn::ctx::LocalSub { slot: conn.me.slot, gen: conn.me.gen, serial }, filter.as_deref(), selector);
        None
    } else {
        selector
    };
    let w = owner_of(&dest, ctx.outbox.workers());
    s.touched.insert(w);
    // With a receipt, the owner answers the barrier itself, before the first MESSAGE.
    let barrier = f.header("receipt").is_some();
    if barrier {
        s.inline_barrier = Some(w);
    }
    let create = own_temp || may_create(conn, &dest, ctx);
    if own_temp {
        temp::note(conn, &dest);
    }
    ctx.outbox.to_owner(
        w,
        ToOwner::Subscribe {
            dest,
            key: SubKey { conn: conn.me, serial },
            mode,
            prefetch,
            filter,
            consumer: crate::broker::queue::ConsumerOpts { selector, priority, exclusive },
            barrier,
            durable,
            create,
        },
    );
    Ok(())
}

/// Remove a subscription here and at its owner (which requeues what a queue consumer held).
pub fn drop_subscription(conn: &mut Conn, serial: u32, ctx: &mut Ctx) {
    if let Some(sub) = forget_subscription(conn, serial, ctx) {
        if sub.browse {
            return;
        }
        if let Some(pattern) = sub.wild {
            let key = SubKey { conn: conn.me, serial };
            for w in 0..ctx.outbox.workers() {
                conn.session.touched.insert(w);
                ctx.outbox.to_owner(w, ToOwner::WildUnsubscribe { pattern: pattern.clone(), key });
            }
            return;
        }
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
    if let Some(pattern) = &sub.wild {
        let ls = crate::conn::ctx::LocalSub { slot: conn.me.slot, gen: conn.me.gen, serial };
        if ctx.wild.remove(pattern, |(l, _)| *l == ls) {
            ctx.env.shared.wildcard_subs.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    } else if sub.kind == DestKind::Topic {
        if let Some(t) = ctx.topics.get_mut(&sub.dest) {
            t.remove(
                crate::conn::ctx::LocalSub { slot: conn.me.slot, gen: conn.me.gen, serial },
                sub.filter.as_deref(),
                sub.selector.is_some(),
            );
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
    let serial = conn.session.by_id.get(id).copied();
    if let Some(name) = durable_name(f, Some(id), false)? {
        // Delete the durable subscription it names, attached here or not (ActiveMQ clients
        // detach first, then delete). Its topic is the attached subscription's, or the
        // frame's destination; failing both, every owner looks for it.
        let identity = durable_identity(conn)?;
        let dest: Option<Arc<str>> = match serial.and_then(|s| conn.session.subs.get(&s)) {
            Some(sub) => Some(sub.dest.clone()),
            None => f.header("destination").map(Arc::from),
        };
        let name: Box<str> = name.into();
        if let Some(serial) = serial {
            drop_subscription(conn, serial, ctx);
        }
        let owners: Vec<usize> = match &dest {
            Some(d) => vec![owner_of(d, ctx.outbox.workers())],
            None => (0..ctx.outbox.workers()).collect(),
        };
        for w in owners {
            conn.session.touched.insert(w);
            let forget = ToOwner::Forget { dest: dest.clone(), from: conn.me, identity: identity.clone(), name: name.clone() };
            ctx.outbox.to_owner(w, forget);
        }
        return Ok(());
    }
    let serial = serial.ok_or_else(|| Fatal::new(ErrorWord::Syntax, format!("no subscription with id {id:?}")))?;
    drop_subscription(conn, serial, ctx);
    Ok(())
}
