//! A worker's sync thread: it owns the worker's [`Log`], takes the records each loop turn
//! produced, writes and fdatasyncs them, and says how far the log is durable.
//!
//! Group commit without blocking the worker: while one fdatasync runs, the turns that follow
//! queue their records; the thread then takes everything queued and commits it as one batch (one
//! write, one fdatasync), so batches grow with the load by themselves.
//!
//! Sequence numbers are predictable: the log numbers records in the order they arrive, from the
//! `next` sequence recovery reported, so the worker knows each record's number when it sends it
//! and matches receipts against the "durable up to N" the thread reports (through `on_durable`,
//! which the server wires to the worker's inbox and waker).
//!
//! A failed write or fdatasync ends the thread through `on_death`: the server then stops (after
//! a failed fdatasync the kernel may have dropped the pages; retrying would prove nothing), and
//! the restart recovers from what is on disk. Invariant: `on_durable` is called with strictly
//! increasing numbers, each only after the fdatasync that covers it returned.

use super::disk::Disk;
use super::log::Log;
use super::payload::PayloadError;
use super::record::Kind;
use crossbeam_channel::{Receiver, Sender};

/// Jobs queued for the sync thread at most (a worker over it waits: backpressure, not loss).
pub const SYNC_QUEUE: usize = 1024;

/// One turn's records: each `kind` byte, u32 length and payload, `count` of them.
#[derive(Debug, Default)]
pub struct SyncJob {
    pub records: Vec<u8>,
    pub count: u64,
}

impl SyncJob {
    pub fn push(&mut self, kind: Kind, payload: &[u8]) {
        self.records.push(kind as u8);
        self.records.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        self.records.extend_from_slice(payload);
        self.count += 1;
    }
}

/// Split records framed by [`SyncJob::push`] (a sync job, or a `Commit` record's payload,
/// which holds a transaction's records the same way).
pub fn sub_records(buf: &[u8]) -> Result<Vec<(Kind, &[u8])>, PayloadError> {
    let (mut out, mut pos) = (Vec::new(), 0);
    while pos < buf.len() {
        if pos + 5 > buf.len() {
            return Err(PayloadError::Truncated);
        }
        let kind = Kind::from_byte(buf[pos]).ok_or(PayloadError::Kind(buf[pos]))?;
        let len = u32::from_le_bytes([buf[pos + 1], buf[pos + 2], buf[pos + 3], buf[pos + 4]]) as usize;
        let end = pos.checked_add(5 + len).filter(|&e| e <= buf.len()).ok_or(PayloadError::Truncated)?;
        out.push((kind, &buf[pos + 5..end]));
        pos = end;
    }
    Ok(out)
}

/// The running sync thread: where to send jobs, and the thread (it hands the log back when it
/// ends because every sender is gone, `None` after an I/O error).
pub type SyncThread<D> = (Sender<SyncJob>, std::thread::JoinHandle<Option<Log<D>>>);

/// Start the sync thread for `log`. It ends when every sender is dropped (returning the log)
/// or on an I/O error (after `on_death`).
pub fn spawn<D: Disk + Send + 'static>(
    mut log: Log<D>,
    mut on_durable: impl FnMut(u64) + Send + 'static,
    on_death: impl FnOnce(String) + Send + 'static,
) -> std::io::Result<SyncThread<D>> {
    let (tx, rx): (Sender<SyncJob>, Receiver<SyncJob>) = crossbeam_channel::bounded(SYNC_QUEUE);
    let h = std::thread::Builder::new().name("romp-sync".into()).spawn(move || {
        while let Ok(first) = rx.recv() {
            // Everything else already queued joins this batch. Jobs are built by `push`, so
            // they always split.
            for job in std::iter::once(first).chain(rx.try_iter()) {
                for (k, p) in sub_records(&job.records).unwrap_or_default() {
                    log.append(k, p);
                }
            }
            match log.commit() {
                Ok(Some(durable)) => on_durable(durable),
                Ok(None) => {}
                Err(e) => {
                    on_death(format!("the durable log could not be written or synced: {e}"));
                    return None;
                }
            }
        }
        Some(log)
    })?;
    Ok((tx, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::disk::SimDisk;
    use std::sync::{Arc, Mutex};

    #[test]
    fn records_become_durable_in_order_and_survive_a_crash() {
        let (log, _) = Log::open(SimDisk::new(7), 64 * 1024).unwrap();
        let reported = Arc::new(Mutex::new(Vec::new()));
        let r2 = reported.clone();
        let (tx, h) = spawn(log, move |n| r2.lock().unwrap().push(n), |why| panic!("{why}")).unwrap();
        let mut sent = 0u64;
        for turn in 0..200u64 {
            let mut job = SyncJob::default();
            for _ in 0..1 + turn % 7 {
                sent += 1;
                job.push(Kind::Message, format!("record {sent}").as_bytes());
            }
            tx.send(job).unwrap();
        }
        drop(tx);
        let mut disk = h.join().unwrap().expect("the log back").into_disk();
        let reported = reported.lock().unwrap().clone();
        assert!(reported.windows(2).all(|w| w[0] < w[1]), "{reported:?}");
        assert_eq!(reported.last(), Some(&sent));
        assert!(reported.len() <= 200, "one report per batch at most");
        disk.crash();
        let (_, got) = Log::open(disk, 64 * 1024).unwrap();
        let bodies: Vec<String> = got.iter().map(|r| String::from_utf8(r.payload.clone()).unwrap()).collect();
        assert_eq!(bodies, (1..=sent).map(|i| format!("record {i}")).collect::<Vec<_>>());
    }

    #[test]
    fn a_failed_fdatasync_is_fatal_and_nothing_past_it_is_reported_durable() {
        let (mut log, _) = Log::open(SimDisk::new(9), 64 * 1024).unwrap();
        log.disk_mut().fail_sync_after = Some(5); // segment creation takes 1, then 4 commits
        let reported = Arc::new(Mutex::new(Vec::new()));
        let died = Arc::new(Mutex::new(None));
        let (r2, d2) = (reported.clone(), died.clone());
        let (tx, h) = spawn(log, move |n| r2.lock().unwrap().push(n), move |why| *d2.lock().unwrap() = Some(why)).unwrap();
        for i in 0..10u64 {
            let mut job = SyncJob::default();
            job.push(Kind::Message, &i.to_le_bytes());
            if tx.send(job).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(h.join().unwrap().is_none(), "the thread ended on the error");
        let why = died.lock().unwrap().clone().expect("on_death was called");
        assert!(why.contains("injected fdatasync failure"), "{why}");
        let reported = reported.lock().unwrap().clone();
        assert!(reported.len() <= 4 && reported.iter().all(|&n| n <= 4), "{reported:?}");
    }
}
