#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! Spool throughput: appends of 500-byte payloads under each fsync policy, and drain (read
//! batches of 500 + ack). Throughput is in records; multiply by 520 bytes (500 + 20 framing)
//! for disk MB/s.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vigil_producer::spool::{FsyncPolicy, SeqNo, Spool, SpoolConfig};

const PAYLOAD_BYTES: usize = 500;
/// Acknowledge (and so delete segments) this often, outside the timed part, to bound disk use.
const RECLAIM_EVERY: u64 = 50_000;

fn open(dir: &std::path::Path, fsync: FsyncPolicy) -> Spool {
    Spool::open(SpoolConfig {
        fsync,
        ..SpoolConfig::new(dir)
    })
    .expect("open spool")
}

fn append(c: &mut Criterion) {
    let payload = vec![0x5au8; PAYLOAD_BYTES];
    let mut group = c.benchmark_group("spool_append_500b");
    group.throughput(Throughput::Elements(1));
    for (name, fsync, secs) in [
        ("never", FsyncPolicy::Never, 5),
        ("every_n_1000", FsyncPolicy::EveryN(1000), 5),
        ("always", FsyncPolicy::Always, 10),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let spool = open(tmp.path(), fsync);
        if matches!(fsync, FsyncPolicy::Always) {
            group.sample_size(10);
        }
        group.measurement_time(Duration::from_secs(secs));
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let mut timed = Duration::ZERO;
                let mut since_reclaim = 0u64;
                let mut start = Instant::now();
                for _ in 0..iters {
                    spool.append(&payload).expect("append");
                    since_reclaim += 1;
                    if since_reclaim == RECLAIM_EVERY {
                        timed += start.elapsed();
                        spool.ack(spool.last_seq()).expect("ack");
                        since_reclaim = 0;
                        start = Instant::now();
                    }
                }
                timed += start.elapsed();
                spool.ack(spool.last_seq()).expect("ack");
                timed
            });
        });
    }
    group.finish();
}

fn drain(c: &mut Criterion) {
    const RECORDS: u64 = 20_000;
    let payload = vec![0xa5u8; PAYLOAD_BYTES];
    let batch: Vec<&[u8]> = (0..500).map(|_| payload.as_slice()).collect();
    let tmp = tempfile::tempdir().expect("tempdir");
    let spool = open(tmp.path(), FsyncPolicy::Never);
    let mut group = c.benchmark_group("spool_drain_500b");
    group.throughput(Throughput::Elements(RECORDS));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("read_500_then_ack", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                for _ in 0..RECORDS / 500 {
                    spool.append_batch(&batch).expect("fill");
                }
                let start = Instant::now();
                let mut read = 0u64;
                loop {
                    let records = spool
                        .read_after(SeqNo::ZERO, 500, usize::MAX)
                        .expect("read");
                    let Some(last) = records.last() else { break };
                    read += records.len() as u64;
                    spool.ack(last.seq).expect("ack");
                }
                timed += start.elapsed();
                assert_eq!(read, RECORDS);
            }
            timed
        });
    });
    group.finish();
}

criterion_group!(benches, append, drain);
criterion_main!(benches);
