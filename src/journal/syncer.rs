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
use std::time::{Duration, Instant};

/// When the durable log's sync thread calls fdatasync (`sync = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// After every batch (the records of the loop turns gathered while the last sync ran):
    /// a RECEIPT of a persistent SEND means the record is on disk.
    Batch,
    /// At most once per this many ms, gathering batches in between: a RECEIPT still waits for
    /// the fdatasync, later and for more records at once.
    Interval(u64),
    /// Never: records are written to the page cache and receipted then; a power cut or kernel
    /// crash may lose what the kernel had not written back (a process crash loses nothing).
    None,
}

impl SyncMode {
    pub fn parse(s: &str) -> Option<SyncMode> {
        match s {
            "batch" => Some(SyncMode::Batch),
            "none" => Some(SyncMode::None),
            _ => {
                let ms: u64 = s.strip_prefix("interval:")?.parse().ok()?;
                (1..=10_000).contains(&ms).then_some(SyncMode::Interval(ms))
            }
        }
    }
}

/// Jobs queued for the sync thread at most (a worker over it waits: backpressure, not loss).
pub const SYNC_QUEUE: usize = 1024;

/// One turn's records: each `kind` byte, u32 length and payload, `count` of them; `live` of
/// them stay needed until dropped, and they drop the earlier records numbered `kills`
/// (compaction's accounting, see [`Log::account`]).
#[derive(Debug, Default)]
pub struct SyncJob {
    pub records: Vec<u8>,
    pub count: u64,
    pub live: u64,
    pub kills: Vec<u64>,
}

/// What the sync thread reports after each batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durable {
    /// Every record up to this sequence is on disk (as `SyncMode` defines it).
    pub upto: u64,
    /// The log's segments: bytes and count, after compaction.
    pub disk_bytes: u64,
    pub segments: usize,
    /// Free bytes on the log's file system when last looked (at most every 100 ms).
    pub free: u64,
    /// This batch: its records, and the microseconds its write and fdatasync took.
    pub records: u64,
    pub sync_us: u64,
    /// Compaction asks the worker to write again its live records below this sequence (they
    /// pin the oldest segment, mostly dead otherwise); 0 = nothing to do.
    pub relog_below: u64,
}

impl SyncJob {
    pub fn is_empty(&self) -> bool {
        self.count == 0 && self.kills.is_empty()
    }

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
/// or on an I/O error (after `on_death`). `free`: the free bytes of the log's file system;
/// `spin`: whether it may spin for its next job (see `Pacer`: only with a core to spare).
pub fn spawn<D: Disk + Send + 'static>(
    mut log: Log<D>,
    mode: SyncMode,
    spin: bool,
    free: impl Fn() -> u64 + Send + 'static,
    mut on_durable: impl FnMut(Durable) + Send + 'static,
    on_death: impl FnOnce(String) + Send + 'static,
) -> std::io::Result<SyncThread<D>> {
    let (tx, rx): (Sender<SyncJob>, Receiver<SyncJob>) = crossbeam_channel::bounded(SYNC_QUEUE);
    let h = std::thread::Builder::new().name("romp-sync".into()).spawn(move || {
        let mut last_free = (Instant::now(), free());
        let mut last_sync = Instant::now();
        let (mut live, mut kills) = (0u64, Vec::new());
        let (mut pacer, mut done) = (Pacer::new(spin), Instant::now());
        while let Some(first) = recv_spinning(&rx, &mut pacer, done) {
            let mut jobs = vec![first];
            if let SyncMode::Interval(ms) = mode {
                // Gather until the interval since the last sync is over.
                let due = last_sync + Duration::from_millis(ms);
                while let Ok(j) = rx.recv_deadline(due) {
                    jobs.push(j);
                }
            }
            // Everything else already queued joins this batch. Jobs are built by `push`, so
            // they always split.
            jobs.extend(rx.try_iter());
            let mut records = 0;
            for job in jobs {
                for (k, p) in sub_records(&job.records).unwrap_or_default() {
                    log.append(k, p);
                }
                records += job.count;
                live += job.live;
                kills.extend(job.kills);
            }
            let started = Instant::now();
            let upto = match log.commit_with(mode != SyncMode::None) {
                Ok(Some(upto)) => upto,
                Ok(None) => log.next_seq() - 1,
                Err(e) => {
                    on_death(format!("the durable log could not be written or synced: {e}"));
                    return None;
                }
            };
            let sync_us = started.elapsed().as_micros() as u64;
            last_sync = Instant::now();
            log.account(std::mem::take(&mut live), &kills);
            kills.clear();
            if let Err(e) = log.collect() {
                on_death(format!("the durable log could not delete a segment: {e}"));
                return None;
            }
            if last_free.0.elapsed() >= Duration::from_millis(100) {
                last_free = (Instant::now(), free());
            }
            let (disk_bytes, segments) = log.footprint();
            let relog_below = log.relog_below().unwrap_or(0);
            on_durable(Durable { upto, disk_bytes, segments, free: last_free.1, records, sync_us, relog_below });
            done = Instant::now();
        }
        Some(log)
    })?;
    Ok((tx, h))
}

/// The longest the sync thread spins for its next job before it sleeps (see [`Pacer`]).
const MAX_SPIN: Duration = Duration::from_micros(400);

/// How long the sync thread spins for its next job, from how soon jobs have been coming after
/// each sync. A thread woken from a futex costs tens of microseconds on a virtual machine,
/// against an fdatasync of about 100 us here; with one receipt in flight the next record comes
/// some 100 us after the last sync (receipt out, client, SEND in), so a short fixed spin
/// missed it. The pacer spins twice the recent gap when that is under [`MAX_SPIN`], and not at
/// all when jobs come further apart (a steady 1,000 persistent SENDs a second would otherwise
/// burn a third of a core spinning), so the CPU goes where it saves a wake-up. A busy log
/// never spins: its next job is already queued when the sync ends.
///
/// Spinning only pays with a core to spare: with as many workers as cores (the default) the
/// spinning thread takes the CPU that the worker and the client need to bring the next job,
/// and one receipt in flight measured 15-25% slower with any spin than with none (2 cores, 2
/// workers); with one worker on two cores the pacer gained 10-25%. So the server allows it
/// only when the workers leave a core free.
#[derive(Debug, Clone, Copy)]
struct Pacer {
    /// Moving average of the time from the end of a sync to the next job, microseconds.
    gap_us: f64,
    allowed: bool,
}

impl Pacer {
    fn new(allowed: bool) -> Pacer {
        Pacer { gap_us: MAX_SPIN.as_micros() as f64 * 4.0, allowed }
    }

    fn spin(&self) -> Duration {
        let max = MAX_SPIN.as_micros() as f64;
        if self.allowed && self.gap_us < max {
            Duration::from_micros((self.gap_us * 2.0).min(max) as u64)
        } else {
            Duration::ZERO
        }
    }

    /// A job arrived `gap` after the last sync ended (capped: a long idle spell counts as one
    /// long gap, not as an ever-growing one).
    fn saw(&mut self, gap: Duration) {
        let gap = (gap.as_micros() as f64).min(10_000.0);
        self.gap_us = self.gap_us * 0.75 + gap * 0.25;
    }
}

/// The next job: spin for as long as `pacer` says, then block. `None` once every sender is gone.
fn recv_spinning(rx: &Receiver<SyncJob>, pacer: &mut Pacer, since: Instant) -> Option<SyncJob> {
    let spin = pacer.spin();
    let job = loop {
        match rx.try_recv() {
            Ok(j) => break Some(j),
            Err(crossbeam_channel::TryRecvError::Disconnected) => break None,
            Err(crossbeam_channel::TryRecvError::Empty) if since.elapsed() < spin => std::hint::spin_loop(),
            Err(crossbeam_channel::TryRecvError::Empty) => break rx.recv().ok(),
        }
    };
    pacer.saw(since.elapsed());
    job
}

/// Free bytes for an unprivileged writer on the file system holding `path` (`u64::MAX` if it
/// cannot be asked).
pub fn free_bytes(path: &std::path::Path) -> u64 {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return u64::MAX };
    // SAFETY: statvfs fills the struct it is given; the path is a valid C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return u64::MAX;
    }
    (st.f_bavail as u64).saturating_mul(st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::disk::SimDisk;
    use std::sync::{Arc, Mutex};

    /// Jobs coming soon after each sync: spin twice the gap (within the cap); far apart, or
    /// without a spare core: never.
    #[test]
    fn the_pacer_spins_only_for_jobs_that_come_soon_and_only_with_a_spare_core() {
        let mut p = Pacer::new(true);
        assert_eq!(p.spin(), Duration::ZERO, "no spin before jobs have shown how soon they come");
        for _ in 0..40 {
            p.saw(Duration::from_micros(100));
        }
        let spin = p.spin().as_micros();
        assert!((195..=205).contains(&spin), "{spin}");
        for _ in 0..40 {
            p.saw(Duration::from_micros(300));
        }
        assert_eq!(p.spin(), MAX_SPIN);
        for _ in 0..40 {
            p.saw(Duration::from_millis(900));
        }
        assert_eq!(p.spin(), Duration::ZERO, "jobs a second apart");
        let mut busy = Pacer::new(false);
        for _ in 0..40 {
            busy.saw(Duration::from_micros(10));
        }
        assert_eq!(busy.spin(), Duration::ZERO);
    }

    #[test]
    fn records_become_durable_in_order_and_survive_a_crash() {
        let (log, _) = Log::open(SimDisk::new(7), 64 * 1024).unwrap();
        let reported = Arc::new(Mutex::new(Vec::new()));
        let r2 = reported.clone();
        let (tx, h) =
            spawn(log, SyncMode::Batch, true, || u64::MAX, move |d| r2.lock().unwrap().push(d.upto), |why| panic!("{why}")).unwrap();
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
        let (tx, h) = spawn(
            log,
            SyncMode::Batch,
            true,
            || u64::MAX,
            move |d| r2.lock().unwrap().push(d.upto),
            move |why| *d2.lock().unwrap() = Some(why),
        )
        .unwrap();
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
