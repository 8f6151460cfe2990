#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! Spool behaviour against real files in temporary directories.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vigil_producer::spool::{
    FsyncPolicy, RECORD_OVERHEAD_BYTES, SeqNo, Spool, SpoolConfig, SpoolError, SpoolRecord,
};

fn small_config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        max_bytes: 1024 * 1024,
        segment_bytes: 256,
        max_record_bytes: 200,
        fsync: FsyncPolicy::Never,
        ..SpoolConfig::new(dir)
    }
}

/// A payload whose content depends on `i`, with lengths from 0 to 120 bytes.
fn payload(i: u64) -> Vec<u8> {
    let len = (i * 13 % 121) as usize;
    (0..len).map(|k| (i as usize * 31 + k) as u8).collect()
}

fn open(config: &SpoolConfig) -> Spool {
    Spool::open(config.clone()).expect("open spool")
}

fn read_all(spool: &Spool) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut after = SeqNo::ZERO;
    loop {
        let batch = spool.read_after(after, 7, usize::MAX).expect("read spool");
        let Some(last) = batch.last() else { break };
        after = last.seq;
        out.extend(
            batch
                .into_iter()
                .map(|SpoolRecord { seq, payload }| (seq.get(), payload)),
        );
    }
    out
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("list spool dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    files.sort();
    files
}

fn append_range(spool: &Spool, range: std::ops::Range<u64>) {
    for i in range {
        let seq = spool.append(&payload(i)).expect("append");
        assert_eq!(
            seq.get(),
            i + 1,
            "sequence numbers start at 1 and have no gaps"
        );
    }
}

fn expected(range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    range.map(|i| (i + 1, payload(i))).collect()
}

#[test]
fn round_trip_in_order_across_rotations_then_ack_deletes_and_reopen_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let spool = open(&config);
    append_range(&spool, 0..100);
    let segments = segment_files(tmp.path()).len();
    assert!(
        segments > 10,
        "expected many rotations, got {segments} segments"
    );
    assert_eq!(spool.stats().segments, segments as u64);
    assert_eq!(read_all(&spool), expected(0..100));
    assert_eq!(spool.len(), 100);

    spool.ack(SeqNo::new(60)).expect("ack 60");
    assert!(
        segment_files(tmp.path()).len() < segments,
        "acked segments were not deleted"
    );
    assert_eq!(read_all(&spool), expected(60..100));
    assert_eq!(spool.len(), 40);
    let disk: u64 = segment_files(tmp.path())
        .iter()
        .map(|p| fs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(spool.disk_bytes(), disk);
    drop(spool);

    let spool = open(&config);
    assert_eq!(spool.acked_seq(), SeqNo::new(60));
    assert_eq!(spool.last_seq(), SeqNo::new(100));
    assert_eq!(read_all(&spool), expected(60..100));
    append_range(&spool, 100..110);
    assert_eq!(read_all(&spool), expected(60..110));

    spool.ack(SeqNo::new(110)).expect("ack all");
    assert!(spool.is_empty());
    assert!(
        segment_files(tmp.path()).is_empty(),
        "fully acked spool keeps segment files"
    );
    assert_eq!(spool.disk_bytes(), 0);
    drop(spool);

    // Sequence numbers keep increasing after everything was acked and deleted.
    let spool = open(&config);
    assert_eq!(spool.append(b"next").unwrap(), SeqNo::new(111));
    let stats = spool.stats();
    assert_eq!(
        (stats.torn_tails_total, stats.corrupt_records_total),
        (0, 0)
    );
}

#[test]
fn read_after_pipelines_and_peek_restarts_at_the_ack_cursor() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(&small_config(tmp.path()));
    append_range(&spool, 0..30);
    let first = spool.read_after(SeqNo::ZERO, 10, usize::MAX).unwrap();
    let second = spool.read_after(first[9].seq, 10, usize::MAX).unwrap();
    assert_eq!(second.first().map(|r| r.seq), Some(SeqNo::new(11)));
    spool.ack(SeqNo::new(10)).unwrap();
    // Not delivered: the drain starts again from the cursor.
    let again = spool.peek_batch(5, usize::MAX).unwrap();
    assert_eq!(
        again.iter().map(|r| r.seq.get()).collect::<Vec<_>>(),
        vec![11, 12, 13, 14, 15]
    );
    // A byte budget stops the batch but never returns nothing when records wait.
    let one = spool.read_after(SeqNo::ZERO, 100, 1).unwrap();
    assert_eq!(one.len(), 1);
    assert!(
        spool
            .read_after(SeqNo::new(30), 10, usize::MAX)
            .unwrap()
            .is_empty()
    );
    assert!(
        spool
            .read_after(SeqNo::ZERO, 0, usize::MAX)
            .unwrap()
            .is_empty()
    );
}

/// Appends records 0..n in one big segment and returns the offsets where each record starts.
fn one_segment_with_offsets(config: &SpoolConfig, n: u64) -> Vec<u64> {
    let spool = open(config);
    let mut offsets = Vec::new();
    for i in 0..n {
        offsets.push(spool.disk_bytes());
        spool.append(&payload(i)).unwrap();
    }
    offsets.push(spool.disk_bytes());
    offsets
}

#[test]
fn torn_tail_at_every_offset_of_the_last_record_is_cut_and_counted() {
    let n = 6;
    let probe = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 64 * 1024,
        ..small_config(probe.path())
    };
    let offsets = one_segment_with_offsets(&config, n);
    let (last_start, end) = (offsets[n as usize - 1], offsets[n as usize]);
    assert!(end - last_start > RECORD_OVERHEAD_BYTES);

    for cut in last_start..end {
        let tmp = tempfile::tempdir().unwrap();
        let config = SpoolConfig {
            dir: tmp.path().to_path_buf(),
            ..config.clone()
        };
        one_segment_with_offsets(&config, n);
        let files = segment_files(tmp.path());
        assert_eq!(files.len(), 1);
        OpenOptions::new()
            .write(true)
            .open(&files[0])
            .unwrap()
            .set_len(cut)
            .unwrap();

        let spool = open(&config);
        let stats = spool.stats();
        let torn = u64::from(cut > last_start);
        assert_eq!(stats.torn_tails_total, torn, "cut at {cut}");
        assert_eq!(stats.torn_bytes_total, cut - last_start, "cut at {cut}");
        assert_eq!(stats.corrupt_records_total, 0, "cut at {cut}");
        assert_eq!(read_all(&spool), expected(0..n - 1), "cut at {cut}");
        assert_eq!(
            fs::metadata(&files[0]).unwrap().len(),
            last_start,
            "file truncated at {cut}"
        );
        // Appending continues right after the last intact record, reusing the torn seq.
        assert_eq!(spool.append(&payload(n - 1)).unwrap(), SeqNo::new(n));
        spool.append(&payload(n)).unwrap();
        assert_eq!(read_all(&spool), expected(0..n + 1), "cut at {cut}");
        drop(spool);
        let spool = open(&config);
        assert_eq!(
            spool.stats().torn_tails_total,
            0,
            "clean after repair, cut at {cut}"
        );
        assert_eq!(read_all(&spool), expected(0..n + 1), "cut at {cut}");
    }
}

#[test]
fn torn_first_record_of_a_new_segment_removes_the_empty_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let spool = open(&config);
    let mut n = 0;
    // Append until the last record is alone in a fresh segment.
    loop {
        let before = spool.stats().segments;
        spool.append(&payload(n)).unwrap();
        n += 1;
        if spool.stats().segments > before && n > 5 {
            break;
        }
    }
    drop(spool);
    let files = segment_files(tmp.path());
    let last = files.last().unwrap();
    OpenOptions::new()
        .write(true)
        .open(last)
        .unwrap()
        .set_len(7)
        .unwrap();
    let spool = open(&config);
    assert_eq!(spool.stats().torn_tails_total, 1);
    assert_eq!(segment_files(tmp.path()).len(), files.len() - 1);
    assert_eq!(read_all(&spool), expected(0..n - 1));
    assert_eq!(spool.append(&payload(n - 1)).unwrap(), SeqNo::new(n));
    assert_eq!(read_all(&spool), expected(0..n));
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 64 * 1024,
        ..small_config(tmp.path())
    };
    one_segment_with_offsets(&config, 5);
    let file = segment_files(tmp.path()).pop().unwrap();
    let clean_len = fs::metadata(&file).unwrap().len();
    // Garbage that starts like a record header (magic, version) but is not one.
    let garbage = [
        0x56, 0x01, 0, 0, 9, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7,
    ];
    OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&garbage)
        .unwrap();

    let spool = open(&config);
    let stats = spool.stats();
    assert_eq!(stats.torn_tails_total, 1);
    assert_eq!(stats.torn_bytes_total, garbage.len() as u64);
    assert_eq!(fs::metadata(&file).unwrap().len(), clean_len);
    assert_eq!(read_all(&spool), expected(0..5));
    spool.append(&payload(5)).unwrap();
    assert_eq!(read_all(&spool), expected(0..6));
}

#[test]
fn flipped_crc_of_the_last_record_drops_only_that_record() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 64 * 1024,
        ..small_config(tmp.path())
    };
    let offsets = one_segment_with_offsets(&config, 5);
    let file = segment_files(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&file).unwrap();
    bytes[offsets[4] as usize + 16] ^= 0xff;
    fs::write(&file, &bytes).unwrap();

    let spool = open(&config);
    assert_eq!(spool.stats().torn_tails_total, 1);
    assert_eq!(spool.stats().corrupt_records_total, 0);
    assert_eq!(read_all(&spool), expected(0..4));
}

#[test]
fn corruption_in_the_middle_is_skipped_and_counted_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 64 * 1024,
        ..small_config(tmp.path())
    };
    let offsets = one_segment_with_offsets(&config, 8);
    let file = segment_files(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&file).unwrap();
    // Damage records 3 and 4 (seq 3, 4): a payload byte and a length byte.
    bytes[offsets[2] as usize + RECORD_OVERHEAD_BYTES as usize] ^= 0x01;
    bytes[offsets[3] as usize + 5] ^= 0x40;
    fs::write(&file, &bytes).unwrap();

    let spool = open(&config);
    let stats = spool.stats();
    assert_eq!(stats.corrupt_records_total, 2, "{stats:?}");
    assert_eq!(stats.corrupt_bytes_total, offsets[4] - offsets[2]);
    assert_eq!(stats.torn_tails_total, 0);
    let mut want = expected(0..2);
    want.extend(expected(4..8));
    assert_eq!(read_all(&spool), want);
    // Appends continue, reads keep skipping the damaged stretch, acks pass over it.
    spool.append(&payload(8)).unwrap();
    want.extend(expected(8..9));
    assert_eq!(read_all(&spool), want);
    spool.ack(SeqNo::new(5)).unwrap();
    assert_eq!(read_all(&spool), want[3..].to_vec());
    drop(spool);
    let spool = open(&config);
    assert_eq!(
        spool.stats().corrupt_records_total,
        0,
        "acked damage is not lost data"
    );
    assert_eq!(read_all(&spool), want[3..].to_vec());
}

#[test]
fn corruption_appearing_while_open_is_skipped_and_counted_on_read() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 64 * 1024,
        ..small_config(tmp.path())
    };
    let spool = open(&config);
    let mut offsets = Vec::new();
    for i in 0..6 {
        offsets.push(spool.disk_bytes());
        spool.append(&payload(i)).unwrap();
    }
    let file = segment_files(tmp.path()).pop().unwrap();
    let mut bytes = fs::read(&file).unwrap();
    bytes[offsets[1] as usize + 12] ^= 0x10;
    fs::write(&file, &bytes).unwrap();

    let mut want = expected(0..1);
    want.extend(expected(2..6));
    assert_eq!(read_all(&spool), want);
    assert_eq!(spool.stats().corrupt_records_total, 1);
    // Read again: the known stretch is skipped without counting twice.
    assert_eq!(read_all(&spool), want);
    assert_eq!(spool.stats().corrupt_records_total, 1);

    // Damage the tail record too: the segment is sealed, appends go to a new one.
    bytes[offsets[5] as usize + 20] ^= 0x10;
    fs::write(&file, &bytes).unwrap();
    spool.ack(SeqNo::new(1)).unwrap();
    want.remove(0);
    want.pop();
    let segments_before = spool.stats().segments;
    assert_eq!(read_all(&spool), want);
    assert_eq!(spool.stats().torn_tails_total, 1);
    spool.append(&payload(6)).unwrap();
    assert_eq!(spool.stats().segments, segments_before + 1);
    want.extend(expected(6..7));
    assert_eq!(read_all(&spool), want);
}

#[test]
fn full_spool_refuses_counts_and_keeps_what_it_has_then_reclaims_after_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        max_bytes: 1024,
        ..small_config(tmp.path())
    };
    let spool = open(&config);
    let record = [7u8; 80];
    let mut stored = Vec::new();
    let err = loop {
        match spool.append(&record) {
            Ok(seq) => stored.push(seq),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, SpoolError::Full { max_bytes: 1024 }),
        "{err:?}"
    );
    assert!(matches!(
        spool.append(&record),
        Err(SpoolError::Full { .. })
    ));
    let stats = spool.stats();
    assert_eq!(stats.dropped_full_total, 2);
    assert!(
        stats.disk_bytes <= 1024 && stats.disk_bytes + 100 > 1024,
        "{stats:?}"
    );
    let all = read_all(&spool);
    assert_eq!(all.len(), stored.len());
    assert!(all.iter().all(|(_, p)| p == &record));
    // A small record may still fit where a large one did not.
    let room = 1024 - stats.disk_bytes;
    if room > RECORD_OVERHEAD_BYTES {
        spool
            .append(&vec![1u8; (room - RECORD_OVERHEAD_BYTES) as usize])
            .unwrap();
        assert_eq!(spool.disk_bytes(), 1024);
    }

    // Acking the first segment's records frees its space.
    spool.ack(stored[2]).unwrap();
    assert!(spool.disk_bytes() < stats.disk_bytes);
    spool.append(&record).unwrap();
    spool.ack(spool.last_seq()).unwrap();
    assert_eq!(spool.disk_bytes(), 0);
    for _ in 0..stored.len() {
        spool.append(&record).unwrap();
    }
    drop(spool);
    let spool = open(&config);
    assert_eq!(spool.len(), stored.len() as u64);
}

#[test]
fn append_batch_is_all_or_nothing_for_bound_and_size() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        max_bytes: 1024,
        fsync: FsyncPolicy::Always,
        ..small_config(tmp.path())
    };
    let spool = open(&config);
    let seqs = spool
        .append_batch(&[b"a".as_slice(), b"bb", b"ccc"])
        .unwrap();
    assert_eq!(seqs, vec![SeqNo::new(1), SeqNo::new(2), SeqNo::new(3)]);
    let too_many: Vec<Vec<u8>> = (0..20).map(|_| vec![0u8; 60]).collect();
    assert!(matches!(
        spool.append_batch(&too_many),
        Err(SpoolError::Full { .. })
    ));
    assert_eq!(spool.stats().dropped_full_total, 20);
    let with_large = vec![vec![0u8; 10], vec![0u8; 201]];
    assert!(matches!(
        spool.append_batch(&with_large),
        Err(SpoolError::RecordTooLarge { len: 201, max: 200 })
    ));
    assert_eq!(spool.last_seq(), SeqNo::new(3));
    assert_eq!(read_all(&spool).len(), 3);
}

#[test]
fn oversized_record_and_bad_ack_are_typed_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let spool = open(&small_config(tmp.path()));
    assert!(matches!(
        spool.append(&[0u8; 201]),
        Err(SpoolError::RecordTooLarge { len: 201, max: 200 })
    ));
    assert_eq!(spool.last_seq(), SeqNo::ZERO);
    spool.append(b"x").unwrap();
    assert!(matches!(
        spool.ack(SeqNo::new(2)),
        Err(SpoolError::AckOutOfRange { seq, last }) if seq == SeqNo::new(2) && last == SeqNo::new(1)
    ));
    spool.ack(SeqNo::new(1)).unwrap();
    spool.ack(SeqNo::new(1)).unwrap();
    spool.ack(SeqNo::ZERO).unwrap();
    assert!(spool.is_empty());
}

#[test]
fn a_directory_is_opened_by_one_spool_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let spool = open(&config);
    assert!(matches!(
        Spool::open(config.clone()),
        Err(SpoolError::Locked { .. })
    ));
    drop(spool);
    open(&config);
}

#[test]
fn invalid_config_is_refused_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let config = SpoolConfig {
        segment_bytes: 100,
        ..small_config(tmp.path())
    };
    assert!(matches!(
        Spool::open(config),
        Err(SpoolError::InvalidConfig {
            key: "max_record_bytes",
            ..
        })
    ));
}

#[test]
fn damaged_ack_file_replays_from_the_oldest_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let config = small_config(tmp.path());
    let spool = open(&config);
    append_range(&spool, 0..40);
    spool.ack(SeqNo::new(25)).unwrap();
    let oldest_kept = read_all(&spool);
    drop(spool);
    fs::write(tmp.path().join("ack"), b"garbage").unwrap();

    let spool = open(&config);
    let replay = read_all(&spool);
    // At-least-once: everything not acked is there, plus acked records of the oldest segment.
    assert!(replay.len() >= oldest_kept.len());
    assert!(replay.ends_with(&oldest_kept));
    assert!(replay.first().unwrap().0 <= 26);
    assert_eq!(spool.stats().corrupt_records_total, 0);
}

#[test]
fn fsync_policies_all_round_trip() {
    for fsync in [
        FsyncPolicy::Always,
        FsyncPolicy::EveryN(3),
        FsyncPolicy::Interval(std::time::Duration::from_millis(1)),
        FsyncPolicy::Never,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let config = SpoolConfig {
            fsync,
            ..small_config(tmp.path())
        };
        let spool = open(&config);
        append_range(&spool, 0..20);
        spool.sync().unwrap();
        spool.ack(SeqNo::new(5)).unwrap();
        drop(spool);
        let spool = open(&config);
        assert_eq!(read_all(&spool), expected(5..20), "{fsync:?}");
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>),
    AppendBatch(Vec<Vec<u8>>),
    Read(usize),
    /// Ack the pending record at this fraction (0..=100 percent) of the pending list.
    Ack(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => proptest::collection::vec(any::<u8>(), 0..150).prop_map(Op::Append),
        1 => proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..80), 0..6)
            .prop_map(Op::AppendBatch),
        2 => (1usize..20).prop_map(Op::Read),
        2 => (0u8..=100).prop_map(Op::Ack),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn spool_matches_an_in_memory_queue(ops in proptest::collection::vec(op(), 1..80)) {
        let tmp = tempfile::tempdir().unwrap();
        let config = SpoolConfig { max_bytes: 2048, ..small_config(tmp.path()) };
        let mut spool = Some(open(&config));
        let mut pending: std::collections::VecDeque<(u64, Vec<u8>)> = Default::default();
        let mut last_seq = 0u64;
        for op in ops {
            let s = spool.as_ref().unwrap();
            match op {
                Op::Append(payload) => {
                    let before = s.disk_bytes();
                    match s.append(&payload) {
                        Ok(seq) => {
                            last_seq += 1;
                            prop_assert_eq!(seq.get(), last_seq);
                            pending.push_back((last_seq, payload));
                        }
                        Err(SpoolError::Full { .. }) => {
                            prop_assert!(before + payload.len() as u64 + RECORD_OVERHEAD_BYTES > 2048);
                        }
                        Err(e) => prop_assert!(false, "append failed: {e}"),
                    }
                }
                Op::AppendBatch(payloads) => {
                    let before = s.disk_bytes();
                    let need: u64 = payloads.iter().map(|p| p.len() as u64 + RECORD_OVERHEAD_BYTES).sum();
                    match s.append_batch(&payloads) {
                        Ok(seqs) => {
                            prop_assert_eq!(seqs.len(), payloads.len());
                            for (seq, payload) in seqs.into_iter().zip(payloads) {
                                last_seq += 1;
                                prop_assert_eq!(seq.get(), last_seq);
                                pending.push_back((last_seq, payload));
                            }
                        }
                        Err(SpoolError::Full { .. }) => prop_assert!(before + need > 2048),
                        Err(e) => prop_assert!(false, "append_batch failed: {e}"),
                    }
                }
                Op::Read(n) => {
                    let got: Vec<(u64, Vec<u8>)> = s
                        .peek_batch(n, usize::MAX)
                        .unwrap()
                        .into_iter()
                        .map(|r| (r.seq.get(), r.payload))
                        .collect();
                    let want: Vec<(u64, Vec<u8>)> = pending.iter().take(n).cloned().collect();
                    prop_assert_eq!(got, want);
                }
                Op::Ack(percent) => {
                    if !pending.is_empty() {
                        let idx = (pending.len() - 1) * usize::from(percent) / 100;
                        let up_to = pending[idx].0;
                        s.ack(SeqNo::new(up_to)).unwrap();
                        pending.retain(|(seq, _)| *seq > up_to);
                    }
                }
                Op::Reopen => {
                    drop(spool.take());
                    spool = Some(open(&config));
                }
            }
            let s = spool.as_ref().unwrap();
            let stats = s.stats();
            prop_assert!(stats.disk_bytes <= 2048);
            prop_assert_eq!(stats.pending_records, pending.len() as u64);
            prop_assert_eq!(stats.last_seq, last_seq);
            prop_assert_eq!(stats.torn_tails_total + stats.corrupt_records_total, 0);
            let all = read_all(s);
            let want: Vec<(u64, Vec<u8>)> = pending.iter().cloned().collect();
            prop_assert_eq!(all, want);
        }
    }
}
