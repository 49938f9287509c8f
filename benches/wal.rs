//! Throughput of the transaction log on the real disk: one fsync per record (`append_sync`)
//! against group commit (64 appends, one sync), for small and page-sized payloads.
//!
//! The log lives under Cargo's target tmp directory rather than `/tmp`, which may be a tmpfs
//! where fsync costs nothing.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use solidgrid::storage::logfs::DiskFs;
use solidgrid::storage::wal::Wal;

/// Payload sizes measured: a small control record and a 4 KiB page.
const PAYLOAD_SIZES: [usize; 2] = [100, 4096];

/// Records per sync in the group-commit case.
const GROUP: usize = 64;

/// Short runs: the machine is shared, and fsync latency dominates every sample anyway.
const MEASUREMENT_TIME: Duration = Duration::from_secs(3);
const WARM_UP_TIME: Duration = Duration::from_secs(1);

fn bench_root() -> PathBuf {
    option_env!("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir)
}

fn open_wal(dir: &tempfile::TempDir) -> Wal {
    let fs = DiskFs::new(dir.path()).expect("log directory");
    Wal::open(Arc::new(fs), 0).expect("open log").0
}

fn wal_benches(c: &mut Criterion) {
    let root = bench_root();
    std::fs::create_dir_all(&root).expect("bench directory");
    let mut group = c.benchmark_group("wal");
    group
        .measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME)
        .sample_size(10);

    for size in PAYLOAD_SIZES {
        let payload = vec![0x5Au8; size];

        let dir = tempfile::tempdir_in(&root).expect("temp dir");
        let mut wal = open_wal(&dir);
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::new("append_sync", size), &payload, |b, p| {
            b.iter(|| black_box(wal.append_sync(p).expect("append_sync")));
        });
        drop(wal);

        let dir = tempfile::tempdir_in(&root).expect("temp dir");
        let mut wal = open_wal(&dir);
        group.throughput(Throughput::Elements(GROUP as u64));
        group.bench_with_input(
            BenchmarkId::new("group_commit_64", size),
            &payload,
            |b, p| {
                b.iter(|| {
                    for _ in 0..GROUP {
                        black_box(wal.append(p).expect("append"));
                    }
                    wal.sync().expect("sync");
                });
            },
        );
    }
    group.finish();
}

criterion_group!(benches, wal_benches);
criterion_main!(benches);
