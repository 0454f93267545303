//! The data directory: which logs are current, recovery at start, and the lock that keeps a
//! second broker out. Runs on the main thread at start (recovery uses one thread per log).
//!
//! Layout: `DATA_DIR/LOCK` (held with `flock` for the process's life) and generations
//! `DATA_DIR/gen-NNNNNNNNNN/`, each with one log directory per worker (`w0`, `w1`, ...) and a
//! `READY` marker. At start the newest generation with `READY` is read, every log in parallel;
//! its live state (messages not yet dropped, durable subscriptions) is written into a new
//! generation laid out for this run's worker count (each destination in its owner's log, the
//! messages keeping their ids and order), synced, marked `READY`, and only then are the older
//! generations removed. So:
//! - a changed worker count loses nothing (the new layout is written from the old one);
//! - every start compacts: a log holds only what was live at start plus what this run wrote;
//! - a crash during any of it leaves the previous generation intact and current (a generation
//!   without `READY` is incomplete and removed at the next start).
//!
//! Invariant: exactly one generation has `READY` after a successful start; its logs hold every
//! record any earlier generation's recovery would have yielded as live.

use super::fs::FsDisk;
use super::log::{Log, RecoverError};
use super::payload::{MessageRecord, SubscriptionRecord};
use super::record::Kind;
use super::replay::{Replay, ReplayError, StoredMessage};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{path}: another process holds the data directory's lock (is another romp running on it?)")]
    Locked { path: String },
    #[error("{path}: {source}")]
    Recover { path: String, source: RecoverError },
    #[error("{path}: {source}")]
    Replay { path: String, source: ReplayError },
}

/// Bytes gathered before the rewrite commits (bounds its memory beside the recovered state).
const REWRITE_BATCH: usize = 8 << 20;

/// The opened store: this run's logs, one per worker, and what they hold.
pub struct Opened {
    pub logs: Vec<Log<FsDisk>>,
    /// Per worker: the live state of the destinations it owns.
    pub state: Vec<Replay>,
    /// The largest message-id counter (low 48 bits) recovered: new ids must start above it,
    /// or a new message could share an old one's id (and a drop record meant for one).
    pub max_counter: u64,
    /// Records read from the previous generation, and how long the whole start took.
    pub records: u64,
    pub took: Duration,
    /// What `repair` skipped, one line each (empty without damage, or without `repair`).
    pub repairs: Vec<String>,
    /// The lock: held while this lives.
    pub lock: File,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.display().to_string(), source }
}

fn gen_name(n: u64) -> String {
    format!("gen-{n:010}")
}

fn sync_dir(path: &Path) -> Result<(), StoreError> {
    File::open(path).and_then(|f| f.sync_all()).map_err(io_err(path))
}

/// Take the data directory's lock, or say who has it.
fn lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join("LOCK");
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = io::Error::last_os_error();
        return Err(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            StoreError::Locked { path: dir.display().to_string() }
        } else {
            StoreError::Io { path: path.display().to_string(), source: e }
        });
    }
    Ok(f)
}

/// The generations in `dir`, ascending, with whether each is complete.
fn generations(dir: &Path) -> Result<Vec<(u64, bool)>, StoreError> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let e = e.map_err(io_err(dir))?;
        let name = e.file_name().to_string_lossy().to_string();
        if let Some(n) = name.strip_prefix("gen-").and_then(|n| n.parse::<u64>().ok()) {
            out.push((n, e.path().join("READY").exists()));
        }
    }
    out.sort();
    Ok(out)
}

/// One old log as read: its live state, the records read, and (with `repair`) what was skipped.
type Read = (Replay, u64, Vec<String>);

/// Read one old log.
fn read_log(dir: &Path, segment_size: u64, repair: bool) -> Result<Read, StoreError> {
    let disk = FsDisk::new(dir).map_err(io_err(dir))?;
    let (_, records, skipped) =
        Log::open_with(disk, segment_size, repair).map_err(|source| StoreError::Recover { path: dir.display().to_string(), source })?;
    let mut repairs: Vec<String> = skipped.iter().map(|s| format!("{}/{s}", dir.display())).collect();
    let mut replay = Replay::default();
    for r in &records {
        match replay.apply(r) {
            Ok(()) => {}
            // A record whose bytes check out but whose contents do not make sense.
            Err(e) if repair => repairs.push(format!("{}: skipped {e}", dir.display())),
            Err(source) => return Err(StoreError::Replay { path: dir.display().to_string(), source }),
        }
    }
    Ok((replay, records.len() as u64, repairs))
}

/// Write one worker's share of the live state into its new, empty log.
/// Each message's `seq` becomes that of the record now holding it (in the same order).
fn write_log(dir: &Path, segment_size: u64, state: &mut Replay) -> Result<Log<FsDisk>, StoreError> {
    let disk = FsDisk::new(dir).map_err(io_err(dir))?;
    let (mut log, _) = Log::open(disk, segment_size).map_err(|source| StoreError::Recover { path: dir.display().to_string(), source })?;
    let (mut buf, mut gathered, mut live) = (Vec::new(), 0usize, 0u64);
    let commit = |log: &mut Log<FsDisk>, live: &mut u64| -> Result<(), StoreError> {
        log.commit().map_err(io_err(dir))?;
        log.account(std::mem::take(live), &[]);
        Ok(())
    };
    for ((dest, identity, name), seq) in &mut state.subscriptions {
        buf.clear();
        SubscriptionRecord { define: true, identity, name, dest }.encode(&mut buf);
        *seq = log.next_seq();
        log.append(Kind::Subscription, &buf);
        live += 1;
    }
    for (dest, held) in &mut state.destinations {
        let mut order: Vec<(&u64, &mut StoredMessage)> = held.iter_mut().collect();
        order.sort_by_key(|(id, m)| (m.seq, **id));
        for (id, m) in order {
            buf.clear();
            let headers = m.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            MessageRecord { dest, id: *id, expires: m.expires, order: 0, headers, body: &m.body }.encode(&mut buf);
            m.seq = log.next_seq();
            log.append(Kind::Message, &buf);
            live += 1;
            gathered += buf.len();
            if gathered >= REWRITE_BATCH {
                commit(&mut log, &mut live)?;
                gathered = 0;
            }
        }
    }
    commit(&mut log, &mut live)?;
    Ok(log)
}

/// Open (or create) the data directory `dir` for `workers` workers; `owner` maps a destination
/// to the worker that owns it this run. With `repair`, damaged records are skipped (listed in
/// [`Opened::repairs`]) instead of refusing to start; the new generation holds what was left.
pub fn open(dir: &Path, workers: usize, segment_size: u64, repair: bool, owner: impl Fn(&str) -> usize) -> Result<Opened, StoreError> {
    let started = Instant::now();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let lock = lock(dir)?;
    let gens = generations(dir)?;
    let current = gens.iter().rev().find(|(_, ready)| *ready).map(|(n, _)| *n);
    // Incomplete generations newer than the current one are the remains of a start that crashed.
    for (n, _) in gens.iter().filter(|(n, _)| current.is_none_or(|c| *n > c)) {
        let p = dir.join(gen_name(*n));
        std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
    }
    // The old state, every log read in parallel.
    let mut old = Vec::new();
    if let Some(c) = current {
        let g = dir.join(gen_name(c));
        for e in std::fs::read_dir(&g).map_err(io_err(&g))? {
            let e = e.map_err(io_err(&g))?;
            if e.path().is_dir() {
                old.push(e.path());
            }
        }
        old.sort();
    }
    let read: Vec<Result<Read, StoreError>> = std::thread::scope(|s| {
        let hs: Vec<_> = old.iter().map(|p| s.spawn(move || read_log(p, segment_size, repair))).collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StoreError::Io { path: "recovery".into(), source: io::Error::other("a recovery thread panicked") })
                })
            })
            .collect()
    });
    let mut state: Vec<Replay> = (0..workers).map(|_| Replay::default()).collect();
    let (mut records, mut max_counter, mut repairs) = (0u64, 0u64, Vec::new());
    for r in read {
        let (replay, n, skipped) = r?;
        records += n;
        repairs.extend(skipped);
        for (dest, held) in replay.destinations {
            max_counter = max_counter.max(held.keys().map(|id| id & ((1 << 48) - 1)).max().unwrap_or(0));
            // A durable subscription's messages live with its topic.
            let topic = super::payload::split_durable_key(&dest).map_or(dest.as_str(), |k| k.0);
            let w = owner(topic) % workers.max(1);
            state[w].destinations.entry(dest).or_default().extend(held);
        }
        for (sub, seq) in replay.subscriptions {
            let w = owner(&sub.0) % workers.max(1);
            state[w].subscriptions.insert(sub, seq);
        }
    }
    // Messages kept for a durable subscription that no longer exists are not carried over.
    for s in &mut state {
        let subs = &s.subscriptions;
        s.destinations.retain(|d, _| match super::payload::split_durable_key(d) {
            Some((t, i, n)) => subs.contains_key(&(t.to_string(), i.to_string(), n.to_string())),
            None => true,
        });
    }
    // The new generation, written in parallel, then made current.
    let next = current.map_or(1, |c| c + 1);
    let g = dir.join(gen_name(next));
    std::fs::create_dir(&g).map_err(io_err(&g))?;
    sync_dir(dir)?;
    let written: Vec<Result<Log<FsDisk>, StoreError>> = std::thread::scope(|s| {
        let hs: Vec<_> = state
            .iter_mut()
            .enumerate()
            .map(|(i, st)| {
                let p = g.join(format!("w{i}"));
                s.spawn(move || write_log(&p, segment_size, st))
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(StoreError::Io { path: "recovery".into(), source: io::Error::other("a rewrite thread panicked") })
                })
            })
            .collect()
    });
    let logs = written.into_iter().collect::<Result<Vec<_>, _>>()?;
    sync_dir(&g)?;
    let ready = g.join("READY");
    File::create(&ready).and_then(|f| f.sync_all()).map_err(io_err(&ready))?;
    sync_dir(&g)?;
    // Older generations (the one just read, and any a crash left behind) go once this is durable.
    for (n, _) in gens.iter().filter(|(n, _)| *n < next && current.is_some_and(|c| *n <= c)) {
        let p = dir.join(gen_name(*n));
        std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
    }
    sync_dir(dir)?;
    Ok(Opened { logs, state, max_counter, records, repairs, took: started.elapsed(), lock })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::payload::DropRecord;
    use std::path::PathBuf;

    fn temp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("romp-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn send(log: &mut Log<FsDisk>, dest: &str, id: u64) {
        let mut p = Vec::new();
        let body = format!("{dest}#{id}");
        MessageRecord { dest, id, expires: 0, order: 0, headers: vec![("persistent", "true")], body: body.as_bytes() }.encode(&mut p);
        log.append(Kind::Message, &p);
    }

    fn held(o: &Opened) -> Vec<(String, Vec<u64>)> {
        let mut v: Vec<(String, Vec<u64>)> = o
            .state
            .iter()
            .flat_map(|r| {
                r.destinations.iter().map(|(d, m)| {
                    let mut ms: Vec<(&u64, &StoredMessage)> = m.iter().collect();
                    ms.sort_by_key(|(id, m)| (m.seq, **id));
                    (d.clone(), ms.into_iter().map(|(id, _)| *id).collect())
                })
            })
            .collect();
        v.sort();
        v
    }

    fn owner(d: &str) -> usize {
        d.len()
    }

    /// State written under one worker count is all there under others, in order, kept ids,
    /// each destination in its new owner's share; the old generation is gone.
    #[test]
    fn the_live_state_moves_to_a_new_generation_for_any_worker_count() {
        let dir = temp("workers");
        let mut o = open(&dir, 2, 64 * 1024, false, owner).unwrap();
        assert!(held(&o).is_empty());
        // Worker 0 owns the even-length names, worker 1 the odd ones.
        send(&mut o.logs[1], "/queue/a", 9);
        send(&mut o.logs[1], "/queue/a", 3);
        send(&mut o.logs[1], "/queue/a", 5);
        send(&mut o.logs[0], "/queue/bb", (7 << 48) | 12);
        let mut p = Vec::new();
        DropRecord { dest: "/queue/a", ids: vec![3] }.encode(&mut p);
        o.logs[1].append(Kind::Drop, &p);
        for l in &mut o.logs {
            l.commit().unwrap();
        }
        drop(o);
        let want = vec![("/queue/a".to_string(), vec![9, 5]), ("/queue/bb".to_string(), vec![(7 << 48) | 12])];
        for workers in [3, 1, 2] {
            let o = open(&dir, workers, 64 * 1024, false, owner).unwrap();
            assert_eq!(held(&o), want, "{workers} workers");
            assert_eq!(o.max_counter, 12);
            for (w, st) in o.state.iter().enumerate() {
                assert!(st.destinations.keys().all(|d| owner(d) % workers == w), "{workers} workers: {:?} in {w}", st.destinations.keys());
            }
            let gens = generations(&dir).unwrap();
            assert_eq!(gens.len(), 1, "{gens:?}");
            assert!(gens[0].1);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A million messages (100-byte bodies, ten queues, some acknowledged) written by two
    /// workers come back from a start with three, every one in its queue's order with its body,
    /// and none of the acknowledged ones. (The time it takes is a benchmark's business:
    /// scripts/recovery.sh measures the release build.)
    #[test]
    fn a_million_messages_are_recovered_exactly() {
        const N: u64 = 1_000_000;
        let dir = temp("million");
        let mut o = open(&dir, 2, 16 << 20, false, owner).unwrap();
        let dest = |i: u64| format!("/queue/m{}", i % 10);
        let mut p = Vec::new();
        for i in 0..N {
            let d = dest(i);
            let mut body = [b'.'; 100];
            body[..8].copy_from_slice(&i.to_le_bytes());
            p.clear();
            MessageRecord { dest: &d, id: i + 1, expires: 0, order: 0, headers: vec![("persistent", "true")], body: &body }.encode(&mut p);
            let log = &mut o.logs[owner(&d) % 2];
            log.append(Kind::Message, &p);
            if i % 1000 == 999 {
                for l in &mut o.logs {
                    l.commit().unwrap();
                }
            }
        }
        // Every 100th message acknowledged.
        for d in 0..10u64 {
            let name = format!("/queue/m{d}");
            p.clear();
            DropRecord { dest: &name, ids: (0..N).filter(|i| i % 10 == d && i % 100 == 0).map(|i| i + 1).collect() }.encode(&mut p);
            o.logs[owner(&name) % 2].append(Kind::Drop, &p);
        }
        for l in &mut o.logs {
            l.commit().unwrap();
        }
        drop(o);
        let o = open(&dir, 3, 16 << 20, false, owner).unwrap();
        assert_eq!(o.records, N + 10);
        let mut total = 0;
        for st in &o.state {
            for (d, held) in &st.destinations {
                let mut ms: Vec<(&u64, &StoredMessage)> = held.iter().collect();
                ms.sort_by_key(|(id, m)| (m.seq, **id));
                let ids: Vec<u64> = ms.iter().map(|(id, _)| **id).collect();
                let k: u64 = d.trim_start_matches("/queue/m").parse().unwrap();
                let want: Vec<u64> = (0..N).filter(|i| i % 10 == k && i % 100 != 0).map(|i| i + 1).collect();
                assert!(ids == want, "{d}: {} messages, {} wanted, or out of order", ids.len(), want.len());
                for (id, m) in ms {
                    assert!(m.body.len() == 100 && m.body[..8] == (id - 1).to_le_bytes(), "{d}: message {id} is not as written");
                }
                total += held.len() as u64;
            }
        }
        assert_eq!(total, N - N / 100);
        drop(o);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_second_broker_on_the_same_directory_is_refused_and_an_unfinished_generation_ignored() {
        let dir = temp("lock");
        let o = open(&dir, 1, 64 * 1024, false, owner).unwrap();
        match open(&dir, 1, 64 * 1024, false, owner) {
            Err(StoreError::Locked { path }) => assert!(path.contains("romp-store-lock")),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("opened twice"),
        }
        let mut o = o;
        send(&mut o.logs[0], "/queue/x", 1);
        o.logs[0].commit().unwrap();
        drop(o);
        // A start that crashed while writing its generation: the complete one stays current.
        let junk = dir.join(gen_name(99)).join("w0");
        std::fs::create_dir_all(&junk).unwrap();
        std::fs::write(junk.join("0000000001.seg"), b"not a log").unwrap();
        let o = open(&dir, 1, 64 * 1024, false, owner).unwrap();
        assert_eq!(held(&o), vec![("/queue/x".to_string(), vec![1])]);
        assert!(!dir.join(gen_name(99)).exists());
        drop(o);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
