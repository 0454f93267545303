//! ACK and NACK in every version's shape: which queue messages a frame settles, cumulative
//! (client) or one at a time (client-individual), and the settle sent to their owner
//! (checklist section I).

use super::*;

/// Find the pending delivery an ACK/NACK names (I1-I3).
pub(super) fn resolve_ack(conn: &Conn, f: &Frame<'_>, kind: SettleKind) -> Result<SettleTarget, Fatal> {
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
            if !sub.pending.contains(tag) {
                return Err(unknown(id));
            }
            Ok(SettleTarget { serial, tag, kind })
        }
        Version::V1_1 => {
            let mid = required(f, "message-id")?;
            let sid = required(f, "subscription")?;
            let serial = *s.by_id.get(sid).ok_or_else(|| unknown(mid))?;
            let ids = ack_ids(mid);
            if let Some(t) = indexed(s, &ids, Some(serial), kind) {
                return Ok(t);
            }
            let p = s.subs.get(&serial).and_then(|sub| sub.pending.iter().find(|p| ids.contains(&p.msg_id))).ok_or_else(|| unknown(mid))?;
            Ok(SettleTarget { serial, tag: p.tag, kind })
        }
        Version::V1_0 => {
            let mid = required(f, "message-id")?;
            let ids = ack_ids(mid);
            if let Some(t) = indexed(s, &ids, None, kind) {
                return Ok(t);
            }
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
pub(super) fn ack_ids(mid: &str) -> [u64; 2] {
    [mid.parse().unwrap_or(u64::MAX), crate::broker::custom_id_hash(mid)]
}

/// Apply an ACK/NACK: cumulative for `client`, single for `client-individual`. Returns false if
/// the message is no longer pending.
/// The message-id index's answer, checked against the subscription's pending list (an id
/// delivered to two subscriptions of one connection is indexed for the latest; the scan
/// finds the others).
fn indexed(s: &Session, ids: &[u64; 2], serial: Option<u32>, kind: SettleKind) -> Option<SettleTarget> {
    ids.iter().find_map(|id| {
        let &(sub_serial, tag) = s.by_msg_id.get(id)?;
        if serial.is_some_and(|want| want != sub_serial) {
            return None;
        }
        let sub = s.subs.get(&sub_serial)?;
        sub.pending.contains(tag).then_some(())?;
        Some(SettleTarget { serial: sub_serial, tag, kind })
    })
}

pub(super) fn settle(conn: &mut Conn, t: SettleTarget, ctx: &mut Ctx) -> bool {
    let Some(sub) = conn.session.subs.get_mut(&t.serial) else {
        return false;
    };
    // Inline for the usual one (client-individual) or few: no allocation per ACK.
    let done = sub.pending.settle(t.tag, sub.mode == AckMode::Client);
    if done.is_empty() {
        return false;
    }
    let mut seqs = Seqs::new();
    seqs.extend(done.iter().map(|p| p.seq));
    if !conn.session.by_msg_id.is_empty() {
        for p in &done {
            conn.session.unindex(p, t.serial);
        }
    }
    let Some(sub) = conn.session.subs.get(&t.serial) else {
        return false;
    };
    if sub.kind == DestKind::Queue {
        let w = owner_of(&sub.dest, ctx.outbox.workers());
        let req = ToOwner::Settle { dest: sub.dest.clone(), key: SubKey { conn: conn.me, serial: t.serial }, seqs, kind: t.kind };
        conn.session.touched.insert(w);
        ctx.to_owner(w, req);
    }
    true
}

pub(super) fn ack(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx, nack: bool) -> Res {
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
