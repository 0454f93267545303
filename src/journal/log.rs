//! One worker's log over a [`Disk`]: appending a batch of records, rolling segments, and
//! recovering what a previous run left. Sans-io in the sense that matters here: every byte goes
//! through the `Disk` seam, so the simulated disk can crash it anywhere.
//!
//! Runs on the worker's sync thread once that exists (the worker hands it each turn's batch);
//! `commit` returns only after the batch's fdatasync, which is what a RECEIPT will wait for.
//!
//! # Invariants
//! - A batch never spans segments: a segment is rolled before a batch that would not fit (a
//!   batch larger than a segment gets a segment of its own size).
//! - A new segment is zero-filled, synced and its directory entry synced before any record goes
//!   into it, so zeros always end what was written.
//! - After recovery the torn tail, if any, is zeroed and synced before anything is appended, so
//!   a later recovery never meets the same damage followed by newer records (which would read
//!   as corruption).

use super::disk::Disk;
use super::record::{encode, resync, scan, Bad, Kind, Position, Record, Tail};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RecoverError {
    #[error("cannot read the log: {0}")]
    Io(#[from] io::Error),
    #[error(
        "the log is damaged in {file} at offset {offset} ({why}): a record that had been synced is not as written \
         (romp --repair skips damaged records, reporting each, and starts without them)"
    )]
    Corrupt { file: String, offset: usize, why: Bad },
}

/// What [`Log::open_with`] gives: the log open for appending, every record recovered in order,
/// and the damage skipped.
pub type Opening<D> = (Log<D>, Vec<Recovered>, Vec<Skipped>);

/// Damage that a repairing open skipped: the bytes `from..to` of `file`, which held the
/// records after sequence `after` (if any record came before) up to the next good one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub from: usize,
    pub to: usize,
    pub why: Bad,
    pub after: Option<u64>,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let after = self.after.map_or("the first record".to_string(), |s| format!("record {s}"));
        write!(
            f,
            "{}: skipped bytes {}..{} ({}), the records after {after} up to the next good one",
            self.file, self.from, self.to, self.why
        )
    }
}

/// A record as recovered: kind, sequence and an owned payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub kind: Kind,
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// What compaction knows of one segment.
#[derive(Debug, Clone, Default)]
struct SegStat {
    /// Records in it still needed (messages not yet dropped, subscriptions not yet removed);
    /// `u64::MAX` for a segment found at open, whose contents this run never counted.
    live: u64,
    /// Older segments holding records that records in this one drop: while any of them is on
    /// disk, this one must stay, or a recovery would bring their records back.
    refs: BTreeSet<u64>,
    size: u64,
    /// Records written into it this run.
    records: u64,
}

pub struct Log<D: Disk> {
    disk: D,
    segment_size: u64,
    /// The segment being appended to, its number, and where the next batch goes in it.
    current: Option<(String, u64)>,
    number: u64,
    offset: u64,
    next: Position,
    /// The batch being gathered.
    pending: Vec<u8>,
    last_pending: u64,
    /// Every segment on disk by number, and each one's first sequence (at most: a segment
    /// found at open starts after the previous one's last record).
    segments: BTreeMap<u64, SegStat>,
    starts: BTreeMap<u64, u64>,
}

/// Write zeros over `name` from `from` to `to`, a bounded chunk at a time (a segment is tens of
/// MiB; its zeros need not all be in memory at once).
fn zero_fill<D: Disk>(disk: &mut D, name: &str, from: u64, to: u64) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0; CHUNK.min(to.saturating_sub(from)) as usize];
    let mut at = from;
    while at < to {
        let n = CHUNK.min(to - at) as usize;
        disk.write_at(name, at, &zeros[..n])?;
        at += n as u64;
    }
    Ok(())
}

fn segment_name(n: u64) -> String {
    format!("{n:010}.seg")
}

impl<D: Disk> Log<D> {
    /// Recover the log on `disk` and open it for appending: every record found, in order.
    /// Damage to a synced record refuses ([`RecoverError::Corrupt`]).
    pub fn open(disk: D, segment_size: u64) -> Result<(Log<D>, Vec<Recovered>), RecoverError> {
        Log::open_with(disk, segment_size, false).map(|(log, out, _)| (log, out))
    }

    /// [`Log::open`], and with `repair` damage is skipped instead: the scan goes on at the next
    /// good record after it (or at the next segment), and each skip is reported. What a skip
    /// loses is lost: messages, acknowledgements (their messages come back), transactions.
    pub fn open_with(mut disk: D, segment_size: u64, repair: bool) -> Result<Opening<D>, RecoverError> {
        let names: Vec<String> = disk.list().into_iter().filter(|n| n.ends_with(".seg")).collect();
        let (mut out, mut skipped) = (Vec::new(), Vec::new());
        let mut last: Option<Position> = None;
        let mut torn: Option<(usize, usize, Bad)> = None; // (segment index, offset, why)
        let (mut starts, mut segments) = (BTreeMap::new(), BTreeMap::new());
        for (i, name) in names.iter().enumerate() {
            let bytes = disk.read_all(name)?;
            let before = out.len();
            let (mut end, mut from) = (last, 0);
            let tail = loop {
                let (t, e) = scan(&bytes[from..], end, |r| out.push(Recovered { kind: r.kind, seq: r.seq, payload: r.payload.to_vec() }));
                end = e;
                break match t {
                    Tail::Clean { end } => Tail::Clean { end: from + end },
                    Tail::Torn { at, why } => Tail::Torn { at: from + at, why },
                    Tail::Corrupt { at, why } if repair => {
                        let at = from + at;
                        let next = resync(&bytes, at + 1, end);
                        skipped.push(Skipped {
                            file: name.clone(),
                            from: at,
                            to: next.unwrap_or(bytes.len()),
                            why,
                            after: end.map(|p| p.seq),
                        });
                        match next {
                            Some(n) => {
                                from = n;
                                continue;
                            }
                            None => Tail::Clean { end: bytes.len() },
                        }
                    }
                    Tail::Corrupt { at, why } => Tail::Corrupt { at: from + at, why },
                };
            };
            if let Some((j, at, why)) = torn {
                // A torn tail in an earlier segment, and this one holds records: that batch had
                // been synced (a later segment is only written after it).
                if end != last {
                    if !repair {
                        return Err(RecoverError::Corrupt { file: names[j].clone(), offset: at, why });
                    }
                    let to = disk.len(&names[j])? as usize;
                    skipped.push(Skipped { file: names[j].clone(), from: at, to, why, after: last.map(|p| p.seq) });
                    torn = None;
                }
            }
            if let Ok(n) = name.trim_end_matches(".seg").parse::<u64>() {
                if let Some(first) = out.get(before) {
                    starts.insert(first.seq, n);
                }
                // This run never learns which of an old segment's records are still needed:
                // one that holds any stays (the restart's rewrite into a new generation is what
                // retires old segments), an empty one may go.
                let live = if out.len() > before { u64::MAX } else { 0 };
                segments.insert(n, SegStat { live, refs: BTreeSet::new(), size: bytes.len() as u64, records: 0 });
            }
            last = end;
            match tail {
                Tail::Clean { .. } => {}
                Tail::Torn { at, why } => torn = torn.or(Some((i, at, why))),
                Tail::Corrupt { at, why } => return Err(RecoverError::Corrupt { file: name.clone(), offset: at, why }),
            }
        }
        if let Some((j, at, _)) = torn {
            let len = disk.len(&names[j])?;
            zero_fill(&mut disk, &names[j], at as u64, len)?;
            disk.sync(&names[j])?;
        }
        let number = names.last().and_then(|n| n.trim_end_matches(".seg").parse().ok()).unwrap_or(0);
        let next = last.map_or(Position { batch: 1, seq: 1 }, |l| Position { batch: l.batch + 1, seq: l.seq + 1 });
        // Appending resumes in a fresh segment: the old ones are only ever read from now on.
        let log =
            Log { disk, segment_size, current: None, number, offset: 0, next, pending: Vec::new(), last_pending: 0, segments, starts };
        Ok((log, out, skipped))
    }

    /// Add a record to the batch being gathered; returns its sequence number.
    pub fn append(&mut self, kind: Kind, payload: &[u8]) -> u64 {
        let seq = self.next.seq + self.last_pending;
        encode(&Record { kind, batch: self.next.batch, seq, payload }, &mut self.pending);
        self.last_pending += 1;
        seq
    }

    /// Write the gathered batch and fdatasync it; returns the last sequence now durable (`None`
    /// if nothing was gathered). An error is fatal for the log: the caller must stop (after a
    /// failed fdatasync the kernel may have dropped the pages; retrying proves nothing).
    pub fn commit(&mut self) -> io::Result<Option<u64>> {
        self.commit_with(true)
    }

    /// [`Log::commit`], with the fdatasync only if `sync` (`sync = "none"`: written to the page
    /// cache, durable only when the kernel writes it back).
    pub fn commit_with(&mut self, sync: bool) -> io::Result<Option<u64>> {
        if self.last_pending == 0 {
            return Ok(None);
        }
        let len = self.pending.len() as u64;
        if self.current.as_ref().is_none_or(|(_, size)| self.offset + len > *size) {
            self.roll(len)?;
            self.starts.insert(self.next.seq, self.number);
        }
        let Some((name, _)) = &self.current else { return Err(io::Error::other("no segment")) };
        self.disk.write_at(name, self.offset, &self.pending)?;
        if sync {
            self.disk.sync(name)?;
        }
        self.offset += len;
        self.pending.clear();
        if let Some(s) = self.segments.get_mut(&self.number) {
            s.records += self.last_pending;
        }
        let last = self.next.seq + self.last_pending - 1;
        self.next = Position { batch: self.next.batch + 1, seq: last + 1 };
        self.last_pending = 0;
        Ok(Some(last))
    }

    /// Start a new segment, large enough for a batch of `need` bytes.
    fn roll(&mut self, need: u64) -> io::Result<()> {
        self.number += 1;
        let name = segment_name(self.number);
        let size = self.segment_size.max(need);
        self.disk.create(&name)?;
        zero_fill(&mut self.disk, &name, 0, size)?;
        self.disk.sync(&name)?;
        self.disk.sync_dir()?;
        self.current = Some((name, size));
        self.offset = 0;
        self.segments.insert(self.number, SegStat { live: 0, refs: BTreeSet::new(), size, records: 0 });
        Ok(())
    }

    /// The next sequence [`Log::append`] will give (after what is gathered).
    pub fn next_seq(&self) -> u64 {
        self.next.seq + self.last_pending
    }

    /// Compaction's accounting after a commit: the batch just committed added `live` records
    /// that stay needed until dropped, and dropped the records numbered `killed` (the batch
    /// holds the drop records that say so). Sequences this run did not write are ignored.
    pub fn account(&mut self, live: u64, killed: &[u64]) {
        let cur = self.number;
        if let Some(s) = self.segments.get_mut(&cur) {
            s.live = s.live.saturating_add(live);
        }
        for &seq in killed {
            let Some((_, &seg)) = self.starts.range(..=seq).next_back() else { continue };
            if let Some(s) = self.segments.get_mut(&seg) {
                if s.live != u64::MAX {
                    s.live = s.live.saturating_sub(1);
                }
            }
            if seg != cur {
                if let Some(s) = self.segments.get_mut(&cur) {
                    s.refs.insert(seg);
                }
            }
        }
    }

    /// Delete the segments nothing needs any more: not the one being appended to, no live
    /// record, and every older segment they drop records from already deleted (and that
    /// deletion synced, in an earlier call: so a crash can never keep a drop's target and lose
    /// the drop). Returns how many went.
    pub fn collect(&mut self) -> io::Result<usize> {
        let cur = self.current.as_ref().map(|_| self.number);
        let victims: Vec<u64> = self
            .segments
            .iter()
            .filter(|(n, s)| Some(**n) != cur && s.live == 0 && s.refs.iter().all(|r| !self.segments.contains_key(r)))
            .map(|(n, _)| *n)
            .collect();
        for &n in &victims {
            self.disk.remove(&segment_name(n))?;
            self.segments.remove(&n);
            self.starts.retain(|_, s| *s != n);
        }
        if !victims.is_empty() {
            self.disk.sync_dir()?;
        }
        Ok(victims.len())
    }

    /// When the oldest segment is mostly dead (at most a quarter of its records live) but
    /// still held by a few live ones, and others followed it: the sequence below which live
    /// records should be written again (by their owner, as copies) so it can be deleted.
    /// Without this, one message nobody acknowledges would keep its segment, and every later
    /// one that drops something from it, forever.
    pub fn relog_below(&self) -> Option<u64> {
        let mut it = self.segments.iter();
        let (_, oldest) = it.next()?;
        let (&second, _) = it.next()?;
        if self.segments.len() < 3 || oldest.live == 0 || oldest.live == u64::MAX || oldest.live * 4 > oldest.records {
            return None;
        }
        // The first sequence of the next segment: everything below it is in the oldest.
        self.starts.iter().find(|(_, &seg)| seg >= second).map(|(&start, _)| start)
    }

    /// Bytes of the segments on disk, and how many there are.
    pub fn footprint(&self) -> (u64, usize) {
        (self.segments.values().map(|s| s.size).sum(), self.segments.len())
    }

    /// The disk, for tests (to crash it) and for the caller's own files.
    pub fn disk_mut(&mut self) -> &mut D {
        &mut self.disk
    }

    pub fn into_disk(self) -> D {
        self.disk
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::disk::SimDisk;

    fn payload(seq: u64) -> Vec<u8> {
        let mut p = seq.to_le_bytes().to_vec();
        p.resize(40 + (seq * 37 % 900) as usize, (seq % 250) as u8);
        p
    }

    /// Runs of random batches with a crash anywhere (between batches, or with the last batch
    /// written but not synced), recovered and continued, over several runs: every record whose
    /// commit returned is recovered exactly, sequences stay continuous, nothing is corrupt.
    #[test]
    fn every_committed_record_survives_crashes_across_segments_and_runs() {
        for seed in 0..150 {
            let mut disk = SimDisk::new(seed);
            let mut committed: Vec<u64> = Vec::new();
            let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let mut roll = || {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                rng >> 33
            };
            for run in 0..4 {
                let (mut log, got) = Log::open(disk, 16 * 1024).unwrap_or_else(|e| panic!("seed {seed} run {run}: {e}"));
                let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
                assert!(seqs.len() >= committed.len(), "seed {seed} run {run}: lost committed records");
                assert_eq!(&seqs[..committed.len()], &committed[..], "seed {seed} run {run}");
                assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "seed {seed} run {run}: a gap");
                for r in &got {
                    assert_eq!(r.payload, payload(r.seq), "seed {seed}: record {} not as written", r.seq);
                }
                // Unsynced records that survived a crash count as written from now on.
                committed = seqs;
                for _ in 0..roll() % 12 {
                    for _ in 0..1 + roll() % 20 {
                        log.append(Kind::Message, &payload(log.next.seq + log.last_pending));
                    }
                    let last = log.commit().unwrap().unwrap();
                    committed.extend(committed.last().map_or(1, |l| l + 1)..=last);
                }
                // Sometimes a last batch written without its sync completing.
                if roll() % 2 == 0 {
                    for _ in 0..1 + roll() % 20 {
                        log.append(Kind::Message, &payload(log.next.seq + log.last_pending));
                    }
                    log.disk_mut().fail_sync_after = Some(0);
                    assert!(log.commit().is_err());
                }
                disk = log.into_disk();
                disk.fail_sync_after = None;
                disk.crash();
            }
        }
    }

    #[test]
    fn damage_in_a_synced_batch_refuses_to_open_naming_the_file_and_offset() {
        let mut log = Log::open(SimDisk::new(3), 4096).unwrap().0;
        for i in 0..30u64 {
            log.append(Kind::Message, &payload(i + 1));
            log.commit().unwrap();
        }
        let mut disk = log.into_disk();
        let mut seg = disk.read_all("0000000001.seg").unwrap();
        seg[100] ^= 0x10;
        disk.write_at("0000000001.seg", 0, &seg).unwrap();
        disk.sync("0000000001.seg").unwrap();
        match Log::open(disk, 4096) {
            Err(RecoverError::Corrupt { file, offset, why }) => {
                assert_eq!((file.as_str(), why), ("0000000001.seg", Bad::Crc));
                assert!(offset <= 100, "{offset}");
            }
            Err(e) => panic!("{e}"),
            Ok((_, got)) => panic!("opened over damage, {} records", got.len()),
        }
    }

    /// Bytes flipped in synced records of several segments: a plain open refuses; a repairing
    /// one recovers every record the damage did not touch, exactly, in order, and reports each
    /// damaged place by file and offset.
    #[test]
    fn repair_skips_damaged_records_and_keeps_every_untouched_one() {
        use crate::journal::record::decode;
        for seed in 0..200u64 {
            let mut log = Log::open(SimDisk::new(seed), 4096).unwrap().0;
            for i in 0..60u64 {
                log.append(Kind::Message, &payload(i + 1));
                log.commit().unwrap();
            }
            let mut disk = log.into_disk();
            // Every record: its file, byte range and sequence.
            let mut records = Vec::new();
            for name in disk.list() {
                let seg = disk.read_all(&name).unwrap();
                let mut at = 0;
                while let Ok(Some((r, n))) = decode(&seg[at..]) {
                    records.push((name.clone(), at..at + n, r.seq));
                    at += n;
                }
            }
            assert_eq!(records.len(), 60);
            // Damage one to three records, never the last one (that would be a torn tail).
            let mut rng = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            let mut next = || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let mut hit = Vec::new();
            for _ in 0..1 + next() % 3 {
                let (name, range, seq) = records[(next() % 59) as usize].clone();
                let at = range.start + (next() as usize % range.len());
                let mut seg = disk.read_all(&name).unwrap();
                seg[at] ^= 1 << (next() % 8);
                disk.write_at(&name, 0, &seg).unwrap();
                disk.sync(&name).unwrap();
                hit.push(seq);
            }
            match Log::open(disk.clone(), 4096) {
                Err(RecoverError::Corrupt { .. }) => {}
                Err(e) => panic!("seed {seed}: {e}"),
                Ok(_) => panic!("seed {seed}: opened over damage to {hit:?}"),
            }
            let (_, got, skipped) = Log::open_with(disk, 4096, true).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            for r in &got {
                assert_eq!(r.payload, payload(r.seq), "seed {seed}: record {} not as written", r.seq);
            }
            let seqs: Vec<u64> = got.iter().map(|r| r.seq).collect();
            let want: Vec<u64> = (1..=60).filter(|s| !hit.contains(s)).collect();
            assert_eq!(seqs, want, "seed {seed}: damaged {hit:?}, skipped {skipped:?}");
            // Each damaged record is inside a reported skip (neighbours share one), and each
            // skip starts at a damaged record.
            let place = |seq: u64| records.iter().find(|r| r.2 == seq).map(|r| (r.0.clone(), r.1.start)).unwrap_or_default();
            for &seq in &hit {
                let (file, at) = place(seq);
                assert!(skipped.iter().any(|k| k.file == file && (k.from..k.to).contains(&at)), "seed {seed}: {seq} {skipped:?}");
            }
            for k in &skipped {
                assert!(hit.iter().any(|&seq| place(seq) == (k.file.clone(), k.from)), "seed {seed}: {k}");
            }
            for k in &skipped {
                assert!(k.to > k.from && k.to_string().contains(&k.file), "{k}");
            }
        }
    }

    /// A steady run of sends and acks with a few long-lived messages, compacted after every
    /// commit: the disk stays bounded, and a crash at any point recovers exactly the messages
    /// not yet dropped (a deleted segment never takes a drop with it while its target stays).
    #[test]
    fn compaction_keeps_disk_bounded_and_never_resurrects_a_dropped_message() {
        use crate::journal::payload::{DropRecord, MessageRecord};
        use crate::journal::replay::Replay;
        for seed in 0..40u64 {
            let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let (mut log, _) = Log::open(SimDisk::new(seed), 4 * 1024).unwrap();
            // Live messages: id -> the log sequence of its record.
            let mut live: BTreeMap<u64, u64> = BTreeMap::new();
            let mut id = 0;
            let mut most = 0;
            for turn in 0..400 {
                let (mut added, mut killed) = (0, Vec::new());
                for _ in 0..1 + next() % 6 {
                    if live.len() < 3 + (next() % 8) as usize {
                        id += 1;
                        let mut p = Vec::new();
                        let body = vec![b'x'; 100 + (next() % 400) as usize];
                        MessageRecord { dest: "/queue/a", id, expires: 0, order: 0, headers: vec![], body: &body }.encode(&mut p);
                        live.insert(id, log.next_seq());
                        log.append(Kind::Message, &p);
                        added += 1;
                    } else {
                        // Mostly the newest go; the oldest few live long.
                        let pick = if next() % 10 == 0 { *live.keys().next().unwrap() } else { *live.keys().next_back().unwrap() };
                        let seq = live.remove(&pick).unwrap();
                        let mut p = Vec::new();
                        DropRecord { dest: "/queue/a", ids: vec![pick] }.encode(&mut p);
                        log.append(Kind::Drop, &p);
                        killed.push(seq);
                    }
                }
                log.commit().unwrap();
                log.account(added, &killed);
                log.collect().unwrap();
                most = most.max(log.footprint().1);
                if turn > 200 && next() % 100 == 0 {
                    break;
                }
            }
            // Over 200 turns write more than 30 segments of 4 KiB.
            assert!(log.number > 30 && most <= 16, "seed {seed}: {most} of {} segments on disk at once", log.number);
            let mut disk = log.into_disk();
            disk.crash();
            let (_, got) = Log::open(disk, 4 * 1024).unwrap();
            let mut replay = Replay::default();
            for r in &got {
                replay.apply(r).unwrap();
            }
            let held: Vec<u64> = replay.destinations.get("/queue/a").map(|m| m.keys().copied().collect()).unwrap_or_default();
            assert_eq!(held, live.keys().copied().collect::<Vec<_>>(), "seed {seed}");
        }
    }
}
