//! `--fsync-floor DIR`: the disk's own rate for one durable record at a time, measured the way
//! a log writes: append 100 bytes to a file pre-allocated with zeros, then fdatasync, again
//! and again, for the run's duration. One receipt in flight through a durable broker cannot
//! beat this; the benchmark compares against it in the same run (the disk here is erratic).

use crate::Opts;
use std::io::Write;
use std::time::Instant;

pub fn run(o: &Opts, dir: &str) -> Result<(), String> {
    let path = std::path::Path::new(dir).join(format!("romp-bench-fsync-{}", std::process::id()));
    let result = measure(o, &path);
    let _ = std::fs::remove_file(&path);
    let (n, secs, p50, p99) = result?;
    let rate = n as f64 / secs;
    if o.json {
        println!("{{\"scenario\":\"fdatasync per 100-byte append in {dir}\",\"seconds\":{secs:.3},\"syncs\":{n},\"rate\":{rate:.0},\"p50_us\":{p50:.1},\"p99_us\":{p99:.1}}}");
    } else {
        println!("scenario     fdatasync after each 100-byte append, in {dir}");
        println!("rate         {rate:>12.0} syncs/s ({n} in {secs:.1} s)");
        println!("latency      p50 {p50:.0} us  p99 {p99:.0} us");
    }
    Ok(())
}

fn measure(o: &Opts, path: &std::path::Path) -> Result<(u64, f64, f64, f64), String> {
    let size: u64 = 64 << 20;
    let mut f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(path).map_err(|e| e.to_string())?;
    // Zero-filled ahead, as the broker's segments are (appends then do not grow the file).
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        f.write_all(&zeros).map_err(|e| e.to_string())?;
    }
    f.sync_all().map_err(|e| e.to_string())?;
    let record = [0x5au8; 100];
    let mut h = crate::report::latency_histogram();
    let mut off = 0u64;
    let (mut n, start) = (0u64, Instant::now());
    let end = o.warmup + o.duration;
    let mut measured_from = None;
    while start.elapsed() < end {
        if off + 100 > size {
            off = 0;
        }
        let t = Instant::now();
        std::os::unix::fs::FileExt::write_all_at(&f, &record, off).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        off += 100;
        if start.elapsed() >= o.warmup {
            measured_from.get_or_insert_with(Instant::now);
            n += 1;
            let _ = h.record((t.elapsed().as_nanos() as u64).max(1));
        }
    }
    let secs = measured_from.map_or(0.0, |m: Instant| m.elapsed().as_secs_f64()).max(1e-9);
    Ok((n, secs, h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0))
}
