//! The seam between the durable log and the file system, and a simulated disk for tests.
//!
//! [`Disk`] is all the log may ask of storage: files by name, positioned writes, reads, a
//! length, fdatasync per file and fsync of the directory. The real implementation (on
//! `std::fs` and `fdatasync`) comes with the log writer; [`SimDisk`] keeps, per file, what has
//! been synced apart from what has only been written, and [`SimDisk::crash`] keeps a random part
//! of the unsynced writes, in any order and possibly torn within a page, the way a power cut may
//! (appends are not persisted in order; a file created without a directory sync may vanish).
//! It can also fail a sync on request, to test that an fsync error is fatal.
//!
//! Invariant of the simulation: after a crash, every byte that a completed `sync` covered is
//! exactly as written.

use std::collections::BTreeMap;
use std::io;

/// Storage for one worker's log: a directory of named files.
pub trait Disk {
    /// Create an empty file (an error if it exists).
    fn create(&mut self, name: &str) -> io::Result<()>;
    fn remove(&mut self, name: &str) -> io::Result<()>;
    /// The files' names, sorted.
    fn list(&self) -> Vec<String>;
    fn len(&self, name: &str) -> io::Result<u64>;
    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()>;
    fn read_all(&self, name: &str) -> io::Result<Vec<u8>>;
    /// fdatasync: what was written to `name` is durable once this returns `Ok`.
    fn sync(&mut self, name: &str) -> io::Result<()>;
    /// fsync of the directory: creations and removals so far are durable.
    fn sync_dir(&mut self) -> io::Result<()>;
}

/// The simulated page size: a crash keeps or loses unsynced writes a page at a time, and may
/// tear the last page it keeps of one.
pub const PAGE: usize = 4096;

#[derive(Debug, Clone, Default)]
struct SimFile {
    /// What a crash now would leave at least (everything synced).
    durable: Vec<u8>,
    /// What reads see: durable plus the writes since the last sync.
    current: Vec<u8>,
    /// Writes since the last sync: (offset, bytes), in order.
    pending: Vec<(u64, Vec<u8>)>,
    /// Created (or removed and recreated) since the last directory sync.
    new: bool,
}

/// A disk in memory whose crashes lose what a real one may. Deterministic for a given seed.
#[derive(Debug, Clone)]
pub struct SimDisk {
    files: BTreeMap<String, SimFile>,
    /// Removed since the last directory sync: a crash may bring them back.
    removed: BTreeMap<String, SimFile>,
    rng: crate::rng::Rng,
    /// Fail the sync after this many more succeed (`None`: never).
    pub fail_sync_after: Option<u32>,
    pub syncs: u64,
}

fn missing(name: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no file {name}"))
}

impl SimDisk {
    pub fn new(seed: u64) -> SimDisk {
        SimDisk { files: BTreeMap::new(), removed: BTreeMap::new(), rng: crate::rng::Rng::new(seed), fail_sync_after: None, syncs: 0 }
    }

    fn next(&mut self) -> u64 {
        self.rng.next_u64()
    }

    /// A power cut: every file keeps what was synced plus a random subset of the pages written
    /// since (the last one kept of each write possibly torn); files created since the last
    /// directory sync may vanish, and files removed since may come back.
    pub fn crash(&mut self) {
        let names: Vec<String> = self.files.keys().cloned().collect();
        for name in names {
            let mut f = self.files.remove(&name).unwrap_or_default();
            if f.new && self.next() % 2 == 0 {
                continue; // its directory entry never reached the disk
            }
            let mut image = f.durable.clone();
            for (off, bytes) in std::mem::take(&mut f.pending) {
                for (i, page) in bytes.chunks(PAGE).enumerate() {
                    let r = self.next();
                    if r % 3 == 0 {
                        continue; // this page was lost
                    }
                    // One in three kept pages is torn: only a prefix of it arrived.
                    let keep = if r % 3 == 1 { (r as usize >> 8) % page.len().max(1) } else { page.len() };
                    let at = off as usize + i * PAGE;
                    if image.len() < at + keep {
                        image.resize(at + keep, 0);
                    }
                    image[at..at + keep].copy_from_slice(&page[..keep]);
                }
            }
            let kept = SimFile { durable: image.clone(), current: image, pending: Vec::new(), new: false };
            self.files.insert(name, kept);
        }
        for (name, f) in std::mem::take(&mut self.removed) {
            if self.next() % 2 == 0 && !self.files.contains_key(&name) {
                self.files.insert(name, SimFile { current: f.durable.clone(), durable: f.durable, pending: Vec::new(), new: false });
            }
        }
    }

    /// What a completed sync guarantees of `name` now (for tests' assertions).
    pub fn durable(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(|f| f.durable.as_slice())
    }
}

impl Disk for SimDisk {
    fn create(&mut self, name: &str) -> io::Result<()> {
        if self.files.contains_key(name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{name} exists")));
        }
        self.files.insert(name.to_string(), SimFile { new: true, ..SimFile::default() });
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        let f = self.files.remove(name).ok_or_else(|| missing(name))?;
        if !f.new {
            self.removed.insert(name.to_string(), f);
        }
        Ok(())
    }

    fn list(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        self.files.get(name).map(|f| f.current.len() as u64).ok_or_else(|| missing(name))
    }

    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let f = self.files.get_mut(name).ok_or_else(|| missing(name))?;
        let end = offset as usize + bytes.len();
        if f.current.len() < end {
            f.current.resize(end, 0);
        }
        f.current[offset as usize..end].copy_from_slice(bytes);
        f.pending.push((offset, bytes.to_vec()));
        Ok(())
    }

    fn read_all(&self, name: &str) -> io::Result<Vec<u8>> {
        self.files.get(name).map(|f| f.current.clone()).ok_or_else(|| missing(name))
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        if let Some(n) = self.fail_sync_after.as_mut() {
            if *n == 0 {
                return Err(io::Error::other("injected fdatasync failure"));
            }
            *n -= 1;
        }
        let f = self.files.get_mut(name).ok_or_else(|| missing(name))?;
        f.durable = f.current.clone();
        f.pending.clear();
        self.syncs += 1;
        Ok(())
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        for f in self.files.values_mut() {
            f.new = false;
        }
        self.removed.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_every_synced_byte_and_only_written_bytes_beyond() {
        for seed in 0..200 {
            let mut d = SimDisk::new(seed);
            d.create("seg-1").unwrap();
            d.sync_dir().unwrap();
            let synced: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8 + 1).collect();
            d.write_at("seg-1", 0, &synced).unwrap();
            d.sync("seg-1").unwrap();
            let unsynced = vec![0xAB; 3 * PAGE + 100];
            d.write_at("seg-1", synced.len() as u64, &unsynced).unwrap();
            assert_eq!(d.read_all("seg-1").unwrap().len(), synced.len() + unsynced.len(), "reads see writes");
            d.crash();
            let after = d.read_all("seg-1").unwrap();
            assert_eq!(&after[..synced.len()], &synced[..], "seed {seed}: synced bytes changed");
            assert!(after[synced.len()..].iter().all(|&b| b == 0xAB || b == 0), "seed {seed}: bytes nobody wrote");
        }
    }

    #[test]
    fn crashes_lose_tear_and_keep_unsynced_pages_in_every_combination() {
        let (mut lost, mut torn, mut kept) = (false, false, false);
        for seed in 0..200 {
            let mut d = SimDisk::new(seed);
            d.create("f").unwrap();
            d.sync_dir().unwrap();
            d.write_at("f", 0, &[7; PAGE]).unwrap();
            d.crash();
            let n = d.read_all("f").unwrap().len();
            lost |= n == 0;
            torn |= n > 0 && n < PAGE;
            kept |= n == PAGE;
        }
        assert!(lost && torn && kept);
    }

    #[test]
    fn files_need_a_directory_sync_and_a_failed_sync_is_reported() {
        let (mut vanished, mut stayed, mut back) = (false, false, false);
        for seed in 0..100 {
            let mut d = SimDisk::new(seed);
            d.create("old").unwrap();
            d.sync_dir().unwrap();
            // Created and synced, but its directory entry not: it may vanish.
            d.create("new").unwrap();
            d.write_at("new", 0, b"x").unwrap();
            d.sync("new").unwrap();
            // Removed without a directory sync: it may come back.
            d.remove("old").unwrap();
            d.crash();
            if d.list().contains(&"new".to_string()) {
                stayed = true;
                assert_eq!(d.read_all("new").unwrap(), b"x");
            } else {
                vanished = true;
            }
            back |= d.list().contains(&"old".to_string());
        }
        assert!(vanished && stayed && back);
        let mut d = SimDisk::new(1);
        d.create("f").unwrap();
        d.fail_sync_after = Some(1);
        assert!(d.sync("f").is_ok());
        assert_eq!(d.sync("f").unwrap_err().to_string(), "injected fdatasync failure");
    }
}
