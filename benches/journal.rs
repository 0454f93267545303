//! The durable log on this machine's file system: one batch committed (written and
//! fdatasynced) per iteration, of 1 record and of 64 records of 100 bytes. The 1-record figure
//! is the floor a persistent SEND with one receipt in flight is judged against (issue 13); the
//! 64-record one shows what group commit buys. Run with `cargo bench --bench journal`; the disk
//! here is virtual and erratic, so compare within one run only.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use romp::journal::fs::FsDisk;
use romp::journal::log::Log;
use romp::journal::record::Kind;

fn bench_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_commit");
    g.sample_size(20);
    for records in [1u64, 64] {
        let dir = std::env::temp_dir().join(format!("romp-bench-journal-{}-{records}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut log, _) = Log::open(FsDisk::new(&dir).expect("log directory"), 64 << 20).expect("open");
        let body = [b'x'; 100];
        g.throughput(Throughput::Elements(records));
        g.bench_with_input(BenchmarkId::from_parameter(records), &records, |b, &n| {
            b.iter(|| {
                for _ in 0..n {
                    log.append(Kind::Message, &body);
                }
                log.commit().expect("commit")
            })
        });
        drop(log);
        let _ = std::fs::remove_dir_all(&dir);
    }
    g.finish();
}

criterion_group!(benches, bench_commit);
criterion_main!(benches);
