//! The durable log (issue 13), one per worker: its on-disk record format first.
//!
//! Sans-io: this module encodes records into a caller's buffer and scans a segment's bytes; it
//! never opens a file. The worker that owns the log, its sync thread and recovery (to come) are
//! built on it.

pub mod record;
