//! The record format of the per-worker durable log, and the scan that recovery runs over a
//! segment's bytes. Sans-io: bytes in, records out; no file is opened here.
//!
//! # Format
//! Each record is a 28-byte header then its payload, little-endian:
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `R` `J` |
//! | 1 | kind ([`Kind`]) |
//! | 1 | reserved, 0 |
//! | 4 | payload length |
//! | 8 | batch: the sync batch the record was written in |
//! | 8 | sequence: one more than the previous record's, across segments |
//! | 4 | CRC-32 (crc32fast, IEEE) of the 24 bytes above and the payload |
//!
//! Segments are zero-filled ahead of use, so a zero magic is the end of what was written.
//!
//! # Torn or corrupt
//! The sync thread writes batch `b + 1` only after the fdatasync of batch `b` has returned, so a
//! crash can leave at most the last batch partly on disk, and in any order of its pages (appends
//! are not persisted in order). At the first bad record (bad CRC, impossible length, broken
//! sequence) the scan looks ahead for a valid record whose batch is at least two above the last
//! good record's: one proves that the batch holding the bad record had been synced, so the bad
//! record is **corruption** (recovery refuses to start and names the offset). Without one, the
//! bad record may belong to the batch that was being written: it is a **torn tail**, cut there;
//! no RECEIPT was sent for it, since receipts wait for their batch's fdatasync.
//! Invariant: a record's payload never exceeds [`MAX_PAYLOAD`].

use thiserror::Error;

pub const MAGIC: [u8; 2] = *b"RJ";
pub const HEADER_LEN: usize = 28;
/// The largest payload a record may have (a message of `max_message_size` with its headers
/// fits: the largest configurable body is 256 MiB).
pub const MAX_PAYLOAD: usize = 512 << 20;

/// What a record holds (the payload's layout belongs to the kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A persistent message accepted by a durable destination.
    Message = 1,
    /// Messages that left a destination (acknowledged, expired, dead-lettered, purged).
    Drop = 2,
    /// A durable subscription defined or removed.
    Subscription = 3,
    /// A transaction's SENDs and ACKs, all or none.
    Commit = 4,
    /// The live state as of this point, so that recovery need not read what precedes it.
    Checkpoint = 5,
}

impl Kind {
    /// The kind a byte names, if any.
    pub fn from_byte(b: u8) -> Option<Kind> {
        Kind::from_u8(b)
    }

    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Message,
            2 => Kind::Drop,
            3 => Kind::Subscription,
            4 => Kind::Commit,
            5 => Kind::Checkpoint,
            _ => return None,
        })
    }
}

/// One record, its payload borrowed from the scanned bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: Kind,
    pub batch: u64,
    pub seq: u64,
    pub payload: &'a [u8],
}

/// Append `r` to `out`.
pub fn encode(r: &Record<'_>, out: &mut Vec<u8>) {
    debug_assert!(r.payload.len() <= MAX_PAYLOAD);
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(r.kind as u8);
    out.push(0);
    out.extend_from_slice(&(r.payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&r.batch.to_le_bytes());
    out.extend_from_slice(&r.seq.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[start..]);
    h.update(r.payload);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(r.payload);
}

/// Why the record at an offset is not a valid one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Bad {
    #[error("bad magic")]
    Magic,
    #[error("unknown record kind {0}")]
    Kind(u8),
    #[error("payload length {0} over the maximum")]
    Length(u32),
    #[error("runs past the end of the segment")]
    Short,
    #[error("CRC mismatch")]
    Crc,
}

/// The record at the start of `buf`, and the bytes it takes; `Ok(None)` at the end of what was
/// written (a zero magic, or fewer bytes than a header that are all zero).
pub fn decode(buf: &[u8]) -> Result<Option<(Record<'_>, usize)>, Bad> {
    if buf.len() < HEADER_LEN {
        return if buf.iter().all(|&b| b == 0) { Ok(None) } else { Err(Bad::Short) };
    }
    if buf[..2] == [0, 0] {
        return Ok(None);
    }
    if buf[..2] != MAGIC {
        return Err(Bad::Magic);
    }
    let kind = Kind::from_u8(buf[2]).ok_or(Bad::Kind(buf[2]))?;
    let len = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if len as usize > MAX_PAYLOAD {
        return Err(Bad::Length(len));
    }
    let end = HEADER_LEN + len as usize;
    if buf.len() < end {
        return Err(Bad::Short);
    }
    let word = |i: usize| u64::from_le_bytes(buf[i..i + 8].try_into().unwrap_or([0; 8]));
    let crc = u32::from_le_bytes([buf[24], buf[25], buf[26], buf[27]]);
    let mut h = crc32fast::Hasher::new();
    h.update(&buf[..24]);
    h.update(&buf[HEADER_LEN..end]);
    if h.finalize() != crc {
        return Err(Bad::Crc);
    }
    Ok(Some((Record { kind, batch: word(8), seq: word(16), payload: &buf[HEADER_LEN..end] }, end)))
}

/// How a scanned segment ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// At the end of what was written (zeros, or the end of the bytes).
    Clean { end: usize },
    /// A record of the last batch was only partly written: cut the segment at `at`.
    Torn { at: usize, why: Bad },
    /// A record that had been synced is damaged: recovery must not go on silently.
    Corrupt { at: usize, why: Bad },
}

/// What came before the scanned segment: the last good record's batch and sequence, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub batch: u64,
    pub seq: u64,
}

/// Scan a segment: hand each valid record to `each`, in order, and say how the segment ends.
/// `after` is where the previous segment ended (`None` for the first).
pub fn scan<'a>(buf: &'a [u8], after: Option<Position>, mut each: impl FnMut(Record<'a>)) -> (Tail, Option<Position>) {
    let mut pos = 0;
    let mut last = after;
    loop {
        let bad = match decode(&buf[pos..]) {
            Ok(None) => return (Tail::Clean { end: pos }, last),
            Ok(Some((r, n))) => {
                // A segment may start past a gap (compaction deletes whole segments between
                // two that stay); inside one the sequence is continuous.
                let in_order = last.is_none_or(|l| (r.seq == l.seq + 1 || (pos == 0 && r.seq > l.seq)) && r.batch >= l.batch);
                if in_order {
                    last = Some(Position { batch: r.batch, seq: r.seq });
                    each(r);
                    pos += n;
                    continue;
                }
                Bad::Crc // valid bytes out of order: treated like damage at this offset
            }
            Err(why) => why,
        };
        let floor = last.map_or(0, |l| l.batch) + 2;
        let proven = (pos + 1..buf.len().saturating_sub(HEADER_LEN - 1))
            .filter(|&i| buf[i..i + 2] == MAGIC)
            .any(|i| matches!(decode(&buf[i..]), Ok(Some((r, _))) if r.batch >= floor));
        let tail = if proven { Tail::Corrupt { at: pos, why: bad } } else { Tail::Torn { at: pos, why: bad } };
        return (tail, last);
    }
}

/// Where scanning may go on after damage at `from - 1`: the offset of the first valid record
/// at or after `from` that comes after `after` (a later sequence, a batch not earlier), if any.
/// Only `--repair` uses it: a record found this way may follow lost ones.
pub fn resync(buf: &[u8], from: usize, after: Option<Position>) -> Option<usize> {
    (from..buf.len().saturating_sub(HEADER_LEN - 1)).filter(|&i| buf[i..i + 2] == MAGIC).find(|&i| match decode(&buf[i..]) {
        Ok(Some((r, _))) => after.is_none_or(|l| r.seq > l.seq && r.batch >= l.batch),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(batch: u64, seq: u64, payload: &[u8]) -> Record<'_> {
        Record { kind: Kind::Message, batch, seq, payload }
    }

    /// A segment of `batches` batches of `per` records each, zero-filled to `size`; returns it
    /// and each record's offset.
    fn segment(batches: u64, per: u64, size: usize) -> (Vec<u8>, Vec<usize>) {
        let (mut out, mut offsets, mut seq) = (Vec::new(), Vec::new(), 0);
        for b in 1..=batches {
            for _ in 0..per {
                seq += 1;
                offsets.push(out.len());
                let body = format!("message {seq} of batch {b}");
                encode(&rec(b, seq, body.as_bytes()), &mut out);
            }
        }
        out.resize(size.max(out.len()), 0);
        (out, offsets)
    }

    fn scan_all(buf: &[u8]) -> (Tail, Vec<u64>) {
        let mut seqs = Vec::new();
        let (tail, _) = scan(buf, None, |r| seqs.push(r.seq));
        (tail, seqs)
    }

    #[test]
    fn records_round_trip_and_the_zeros_end_the_segment() {
        let (seg, offsets) = segment(3, 4, 4096);
        let (tail, seqs) = scan_all(&seg);
        assert_eq!(seqs, (1..=12).collect::<Vec<_>>());
        let end = offsets[11] + HEADER_LEN + "message 12 of batch 3".len();
        assert_eq!(tail, Tail::Clean { end });
        let (r, n) = decode(&seg[offsets[4]..]).unwrap().unwrap();
        assert_eq!((r.kind, r.batch, r.seq, r.payload, n), (Kind::Message, 2, 5, &b"message 5 of batch 2"[..], HEADER_LEN + 20));
        // Without any zero fill the end of the bytes ends it too.
        assert_eq!(scan_all(&seg[..end]).0, Tail::Clean { end });
    }

    #[test]
    fn a_partly_written_last_batch_is_a_torn_tail_whatever_order_its_pages_reached_the_disk() {
        let (seg, offsets) = segment(3, 4, 4096);
        let last_batch = offsets[8];
        // The end of the last batch cut at every byte.
        for cut in last_batch + 1..offsets[11] + HEADER_LEN + 21 {
            let mut s = seg.clone();
            s[cut..].fill(0);
            let (tail, seqs) = scan_all(&s);
            assert!(matches!(tail, Tail::Torn { .. } | Tail::Clean { .. }), "cut at {cut}: {tail:?}");
            assert!(seqs.len() >= 8, "cut at {cut}: a synced batch was lost");
        }
        // Its first record lost while later ones of the same batch reached the disk.
        let mut s = seg.clone();
        s[offsets[8]..offsets[9]].fill(0);
        assert_eq!(scan_all(&s), (Tail::Clean { end: offsets[8] }, (1..=8).collect()));
        let mut s = seg.clone();
        s[offsets[8] + 10] ^= 0xff;
        assert_eq!(scan_all(&s), (Tail::Torn { at: offsets[8], why: Bad::Crc }, (1..=8).collect()));
    }

    #[test]
    fn damage_before_a_later_synced_batch_is_corruption_named_by_its_offset() {
        let (seg, offsets) = segment(4, 3, 4096);
        for (i, &at) in offsets.iter().enumerate().take(6) {
            // A bit flipped in a record of batch 1 or 2: batch 4 follows, so it had been synced.
            let mut s = seg.clone();
            s[at + HEADER_LEN + 3] ^= 0x01;
            let (tail, seqs) = scan_all(&s);
            assert_eq!(tail, Tail::Corrupt { at, why: Bad::Crc }, "record {i}");
            assert_eq!(seqs, (1..=i as u64).collect::<Vec<_>>());
        }
        // In batch 3, only batch 4 follows: it may have been the batch being written.
        let mut s = seg.clone();
        s[offsets[7] + 2] = 99;
        assert_eq!(scan_all(&s).0, Tail::Torn { at: offsets[7], why: Bad::Kind(99) });
    }

    #[test]
    fn lengths_and_sequences_are_checked() {
        let (seg, offsets) = segment(4, 2, 1024);
        let mut s = seg.clone();
        s[offsets[1] + 4..offsets[1] + 8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(scan_all(&s).0, Tail::Corrupt { at: offsets[1], why: Bad::Length(u32::MAX) });
        // A valid record out of sequence (a stale one from a reused segment) ends the scan.
        let mut out = Vec::new();
        encode(&rec(1, 1, b"a"), &mut out);
        encode(&rec(1, 3, b"c"), &mut out);
        let (tail, seqs) = scan_all(&out);
        assert_eq!((tail, seqs), (Tail::Torn { at: HEADER_LEN + 1, why: Bad::Crc }, vec![1]));
        // The next segment continues the sequence of the previous one.
        let mut next = Vec::new();
        encode(&rec(5, 10, b"x"), &mut next);
        let mut got = Vec::new();
        let (tail, last) = scan(&next, Some(Position { batch: 5, seq: 9 }), |r| got.push(r.seq));
        assert_eq!((tail, last, got), (Tail::Clean { end: HEADER_LEN + 1 }, Some(Position { batch: 5, seq: 10 }), vec![10]));
        // A short non-zero tail is torn, a short zero one is the end.
        assert_eq!(decode(&[b'R', b'J', 1]), Err(Bad::Short));
        assert_eq!(decode(&[0; 5]), Ok(None));
    }
}
