//! Receipts and DISCONNECT (checklist section K): a receipt waits for a barrier answer from
//! every owner the connection sent to since the previous one, and receipts are written in
//! order, so RECEIPT means "everything before this has been applied".

use super::*;

pub(super) fn disconnect(conn: &mut Conn, f: &Frame<'_>, ctx: &mut Ctx) -> Res {
    conn.session.txs.clear(); // J3
    match f.header("receipt") {
        Some(r) => {
            conn.phase = Phase::Disconnecting;
            push_receipt(conn, ctx, r, true);
        }
        None => {
            conn.begin_close(CloseReason::Disconnect);
            mark_dirty(conn, ctx);
        }
    }
    Ok(())
}

pub(super) fn push_receipt(conn: &mut Conn, ctx: &mut Ctx, id: &str, closes: bool) {
    let s = &mut conn.session;
    let waiting = std::mem::take(&mut s.touched);
    let inline = s.inline_barrier.take();
    for w in waiting.iter().filter(|&w| Some(w) != inline) {
        ctx.outbox.to_owner(w, ToOwner::Barrier { from: conn.me });
    }
    s.receipts.push_back(PendingReceipt { id: Box::from(id), waiting, closes });
    flush_receipts(conn, ctx);
}

/// An owner answered a barrier: the oldest receipt waiting on it is no longer.
pub fn barrier_done(conn: &mut Conn, owner: usize, ctx: &mut Ctx) {
    if let Some(r) = conn.session.receipts.iter_mut().find(|r| r.waiting.contains(owner)) {
        r.waiting.remove(owner);
    }
    flush_receipts(conn, ctx);
}

/// Write every receipt at the front of the queue that waits for nothing (K2: in order).
pub(super) fn flush_receipts(conn: &mut Conn, ctx: &mut Ctx) {
    while conn.session.receipts.front().is_some_and(|r| r.waiting.is_empty()) {
        let Some(r) = conn.session.receipts.pop_front() else {
            break;
        };
        if conn.is_closing() {
            return;
        }
        if conn.out.capacity() == 0 {
            conn.out = ctx.turn.pool.take();
        }
        encoder::receipt(&mut conn.out, &r.id, conn.version);
        mark_dirty(conn, ctx);
        if r.closes {
            conn.begin_close(CloseReason::Disconnect);
        }
    }
}
