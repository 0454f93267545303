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
    for op in tx.ops {
        match op {
            TxOp::Publish(msg) => publish(conn, msg, f.header("receipt"), ctx)?,
            TxOp::Settle(target) => {
                if !settle(conn, target, ctx) {
                    return Err(Fatal::new(
                        ErrorWord::General,
                        format!("transaction {t:?} acknowledges a message that is no longer pending"),
                    ));
                }
            }
        }
    }
    Ok(())
}

pub(super) fn abort(conn: &mut Conn, f: &Frame<'_>) -> Res {
    let t = required(f, "transaction")?;
    conn.session.txs.remove(t).ok_or_else(|| Fatal::new(ErrorWord::General, format!("ABORT of unknown transaction {t:?}")))?;
    Ok(())
}
