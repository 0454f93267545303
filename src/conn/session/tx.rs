//! Transactions: BEGIN, COMMIT (the buffered SENDs and ACKs applied in order) and ABORT
//! (checklist section J).

use super::*;

pub(super) fn begin(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let t = required(f, "transaction")?;
    if conn.session.txs.contains_key(t) {
        return Err(Fatal::new(ErrorWord::General, format!("transaction {t:?} is already open")));
    }
    if conn.session.txs.len() >= ctx.env.cfg.max_transactions {
        return Err(Fatal::new(
            ErrorWord::TxFlup,
            format!("too many open transactions (limit: max_transactions = {})", ctx.env.cfg.max_transactions),
        ));
    }
    conn.session.txs.insert(Box::from(t), Tx::default());
    Ok(())
}

pub(super) fn commit(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    let t = required(f, "transaction")?;
    let tx = conn.session.txs.remove(t).ok_or_else(|| Fatal::new(ErrorWord::General, format!("COMMIT of unknown transaction {t:?}")))?;
    // Each owner gets the transaction's operations for it as one request, applied (and
    // logged) together.
    ctx.capture = Some(Vec::new());
    let mut result = Ok(());
    for op in tx.ops {
        let r = match op {
            TxOp::Publish(msg) => publish(conn, msg, f.header("receipt"), ctx),
            TxOp::Settle(target) if !settle(conn, target, ctx) => {
                Err(Fatal::new(ErrorWord::General, format!("transaction {t:?} acknowledges a message that is no longer pending")))
            }
            TxOp::Settle(_) => Ok(()),
        };
        if r.is_err() {
            result = r;
            break;
        }
    }
    let mut by_owner: Vec<(usize, Vec<crate::bus::ToOwner>)> = Vec::new();
    for (w, req) in ctx.capture.take().unwrap_or_default() {
        match by_owner.iter_mut().find(|(o, _)| *o == w) {
            Some((_, ops)) => ops.push(req),
            None => by_owner.push((w, vec![req])),
        }
    }
    for (w, ops) in by_owner {
        ctx.outbox.to_owner(w, crate::bus::ToOwner::Commit { from: conn.me, ops });
    }
    result
}

pub(super) fn abort(conn: &mut Conn, f: &Frame<'_>) -> Res {
    let t = required(f, "transaction")?;
    conn.session.txs.remove(t).ok_or_else(|| Fatal::new(ErrorWord::General, format!("ABORT of unknown transaction {t:?}")))?;
    Ok(())
}
