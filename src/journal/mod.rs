//! The durable log, one per worker (docs/architecture.md, "The durable log"): the record
//! format (`record`, `payload`), segments (`log`) over the `disk` seam (`fs` on a real
//! directory), the sync thread's group commit (`syncer`), replay of recovered records
//! (`replay`) and the generations of a data directory (`store`).
//!
//! `record`, `payload` and `replay` are sans-io (bytes in, bytes out); `log` touches the disk
//! only through `disk::Disk`. The broker side (what gets logged, receipts after sync) is
//! `broker::durable`.

pub mod disk;
pub mod fs;
pub mod log;
pub mod payload;
pub mod record;
pub mod replay;
pub mod store;
pub mod syncer;

#[cfg(test)]
mod tests {
    use super::disk::{Disk, SimDisk};
    use super::record::{encode, scan, Kind, Record, Tail};

    /// Batches written and synced one after another, the last one written but not synced, then a
    /// power cut: the scan of what is left finds every record of every synced batch, and calls
    /// the damage torn (never corruption), whatever the crash kept.
    #[test]
    fn a_crash_during_the_last_batch_loses_nothing_synced_and_is_never_called_corruption() {
        for seed in 0..500 {
            let mut d = SimDisk::new(seed);
            d.create("seg").unwrap();
            d.write_at("seg", 0, &vec![0; 1 << 20]).unwrap(); // zero-filled ahead of use
            d.sync("seg").unwrap();
            d.sync_dir().unwrap();
            let (mut off, mut seq, mut synced) = (0u64, 0u64, 0u64);
            let batches = 2 + seed % 3;
            for b in 1..=batches {
                let mut buf = Vec::new();
                // Batches of many pages, so that a crash can keep pages after a lost one.
                for _ in 0..(10 + (seed * 7 + b) % 40) {
                    seq += 1;
                    let body = vec![(seq % 200) as u8 + 1; 50 + ((seed + seq) % 3000) as usize];
                    encode(&Record { kind: Kind::Message, batch: b, seq, payload: &body }, &mut buf);
                }
                d.write_at("seg", off, &buf).unwrap();
                off += buf.len() as u64;
                if b < batches {
                    d.sync("seg").unwrap();
                    synced = seq;
                }
            }
            d.crash();
            let bytes = d.read_all("seg").unwrap();
            let mut got = Vec::new();
            let (tail, _) = scan(&bytes, None, |r| {
                assert!(r.payload.iter().all(|&x| x == (r.seq % 200) as u8 + 1), "seed {seed}: a damaged record passed");
                got.push(r.seq)
            });
            assert!(!matches!(tail, Tail::Corrupt { .. }), "seed {seed}: {tail:?}");
            assert!(got.len() as u64 >= synced, "seed {seed}: {} of {synced} synced records", got.len());
            assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "seed {seed}");
        }
    }
}
