//! The real side of the [`Disk`] seam: a directory on the file system. The one file of the
//! `journal` module that does I/O; it runs on whichever thread owns the log (the worker's sync
//! thread, and recovery at start).
//!
//! `sync` is `fdatasync` (`File::sync_data`): the data and the size, not the timestamps.
//! `sync_dir` fsyncs the directory itself, which is what makes a created or removed file's
//! name durable (ext4 and xfs do not promise it otherwise).

use super::disk::Disk;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

pub struct FsDisk {
    dir: PathBuf,
    open: HashMap<String, File>,
}

impl FsDisk {
    /// The log directory `dir`, created if missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<FsDisk> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        Ok(FsDisk { dir, open: HashMap::new() })
    }

    fn file(&mut self, name: &str) -> io::Result<&File> {
        if !self.open.contains_key(name) {
            let f = OpenOptions::new().read(true).write(true).open(self.dir.join(name))?;
            self.open.insert(name.to_string(), f);
        }
        self.open.get(name).ok_or_else(|| io::Error::other("file handle vanished"))
    }
}

impl Disk for FsDisk {
    fn create(&mut self, name: &str) -> io::Result<()> {
        let f = OpenOptions::new().read(true).write(true).create_new(true).open(self.dir.join(name))?;
        self.open.insert(name.to_string(), f);
        Ok(())
    }

    fn remove(&mut self, name: &str) -> io::Result<()> {
        self.open.remove(name);
        std::fs::remove_file(self.dir.join(name))
    }

    fn list(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    fn len(&self, name: &str) -> io::Result<u64> {
        Ok(std::fs::metadata(self.dir.join(name))?.len())
    }

    fn write_at(&mut self, name: &str, offset: u64, bytes: &[u8]) -> io::Result<()> {
        self.file(name)?.write_all_at(bytes, offset)
    }

    fn read_all(&self, name: &str) -> io::Result<Vec<u8>> {
        std::fs::read(self.dir.join(name))
    }

    fn sync(&mut self, name: &str) -> io::Result<()> {
        self.file(name)?.sync_data()
    }

    fn sync_dir(&mut self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::log::Log;
    use crate::journal::record::Kind;

    #[test]
    fn a_log_on_the_file_system_recovers_what_it_committed() {
        let dir = std::env::temp_dir().join(format!("romp-journal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut log, got) = Log::open(FsDisk::new(&dir).unwrap(), 512).unwrap();
        assert!(got.is_empty());
        for i in 0..50u64 {
            log.append(Kind::Message, format!("message {i}").as_bytes());
            if i % 5 == 4 {
                log.commit().unwrap();
            }
        }
        drop(log);
        let disk = FsDisk::new(&dir).unwrap();
        assert!(disk.list().len() >= 2, "rolled: {:?}", disk.list());
        let (_, got) = Log::open(disk, 512).unwrap();
        let bodies: Vec<String> = got.iter().map(|r| String::from_utf8(r.payload.clone()).unwrap()).collect();
        assert_eq!(bodies, (0..50).map(|i| format!("message {i}")).collect::<Vec<_>>());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
