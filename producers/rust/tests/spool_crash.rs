#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! Crash safety of the spool under a real `kill -9`.
//!
//! This test binary (harness = false) re-executes itself as a child writer: the child appends
//! records with `FsyncPolicy::Always` and prints each sequence number once `append` returned.
//! The parent SIGKILLs it mid-stream, reopens the spool and checks that every reported record is
//! there, in order, byte for byte, and that nothing corrupt surfaced as a record. Several rounds
//! run on the same directory, with partial acks in between, so recovery after a kill is itself
//! tested against the next kill.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vigil_producer::spool::{FsyncPolicy, SeqNo, Spool, SpoolConfig};
use vigil_test_support::ChildProcess;

const CHILD_DIR_ENV: &str = "VIGIL_SPOOL_CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "VIGIL_SPOOL_CRASH_CHILD_ROUND";
const ROUNDS: u64 = 4;

fn config(dir: &Path) -> SpoolConfig {
    SpoolConfig {
        segment_bytes: 8 * 1024,
        max_record_bytes: 1024,
        max_bytes: 256 * 1024 * 1024,
        fsync: FsyncPolicy::Always,
        ..SpoolConfig::new(dir)
    }
}

/// Payload of the `i`-th record of a round: a parseable prefix plus filler of varying length.
fn payload(round: u64, i: u64) -> Vec<u8> {
    let mut out = format!("round-{round}-n-{i}|").into_bytes();
    let filler = (i * 37 + round * 11) % 700;
    out.extend((0..filler).map(|k| b'a' + ((k + i) % 26) as u8));
    out
}

/// Parses a payload back to (round, i) and checks its filler.
fn check_payload(bytes: &[u8]) -> Option<(u64, u64)> {
    let text = std::str::from_utf8(bytes).ok()?;
    let (prefix, _) = text.split_once('|')?;
    let mut parts = prefix.split('-');
    let (Some("round"), Some(round), Some("n"), Some(i), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let (round, i) = (round.parse().ok()?, i.parse().ok()?);
    (payload(round, i) == bytes).then_some((round, i))
}

fn child(dir: &str, round: u64) -> ! {
    let spool = match Spool::open(config(Path::new(dir))) {
        Ok(spool) => spool,
        Err(e) => {
            eprintln!("child: open failed: {e}");
            std::process::exit(2);
        }
    };
    let stdout = std::io::stdout();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut i = 0u64;
    while Instant::now() < deadline {
        match spool.append(&payload(round, i)) {
            Ok(seq) => {
                let mut out = stdout.lock();
                if writeln!(out, "{} {i}", seq.get())
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    std::process::exit(3);
                }
            }
            Err(e) => {
                eprintln!("child: append failed: {e}");
                std::process::exit(4);
            }
        }
        i += 1;
    }
    eprintln!("child: was never killed");
    std::process::exit(5);
}

/// Runs one child round, kills it after `kill_after` reported appends, returns seq -> payload.
fn run_round(dir: &Path, round: u64, kill_after: usize) -> BTreeMap<u64, Vec<u8>> {
    let exe = std::env::current_exe().expect("current test executable");
    let mut child = ChildProcess::spawn(
        "the child writer",
        Command::new(exe)
            .env(CHILD_DIR_ENV, dir)
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit()),
    );
    let stdout = child.take_stdout();
    let mut reported = BTreeMap::new();
    let mut last_seq = 0u64;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read child stdout");
        let (seq, i) = line.split_once(' ').expect("child line has seq and index");
        let (seq, i): (u64, u64) = (seq.parse().expect("seq"), i.parse().expect("index"));
        assert!(seq > last_seq, "round {round}: seq {seq} after {last_seq}");
        last_seq = seq;
        reported.insert(seq, payload(round, i));
        if reported.len() == kill_after {
            // SIGKILL: no destructor, no flush, no sync runs in the child.
            child.kill();
            break;
        }
    }
    let status = child.wait();
    assert!(
        !status.success(),
        "round {round}: child exited on its own: {status}"
    );
    assert_eq!(
        reported.len(),
        kill_after,
        "round {round}: child stopped early: {status}"
    );
    reported
}

fn read_all(spool: &Spool) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut after = SeqNo::ZERO;
    loop {
        let batch = spool.read_after(after, 97, 64 * 1024).expect("read spool");
        let Some(last) = batch.last() else { break };
        after = last.seq;
        out.extend(batch.into_iter().map(|r| (r.seq.get(), r.payload)));
    }
    out
}

fn parent() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("spool");
    // Everything the children reported and the parent has not acked yet.
    let mut expected: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut delivered_total = 0usize;
    for round in 0..ROUNDS {
        let kill_after = 150 + (round as usize) * 73;
        let reported = run_round(&dir, round, kill_after);
        expected.extend(reported);

        let spool = Spool::open(config(&dir)).expect("reopen after kill");
        let stats = spool.stats();
        assert_eq!(stats.corrupt_records_total, 0, "round {round}: {stats:?}");
        let records = read_all(&spool);
        let mut prev = spool.acked_seq().get();
        for (seq, bytes) in &records {
            assert!(
                *seq > prev,
                "round {round}: records out of order: {seq} after {prev}"
            );
            prev = *seq;
            // Records appended after the last report (killed before printing) are fine, but must
            // be whole records this test wrote, not garbage.
            assert!(
                check_payload(bytes).is_some(),
                "round {round}: seq {seq} holds foreign bytes"
            );
        }
        let stored: BTreeMap<u64, Vec<u8>> = records.into_iter().collect();
        for (seq, bytes) in &expected {
            match stored.get(seq) {
                Some(found) => assert_eq!(found, bytes, "round {round}: seq {seq} differs"),
                None => panic!("round {round}: acknowledged seq {seq} lost after kill -9"),
            }
        }
        // Deliver about half, as a drain would after the broker came back.
        let keys: Vec<u64> = stored.keys().copied().collect();
        if let Some(&up_to) = keys.get(keys.len() / 2) {
            spool.ack(SeqNo::new(up_to)).expect("ack half");
            delivered_total += keys.iter().filter(|&&k| k <= up_to).count();
            expected.retain(|&seq, _| seq > up_to);
        }
        drop(spool);
    }
    // The last reopen delivers everything that is left.
    let spool = Spool::open(config(&dir)).expect("final reopen");
    let rest = read_all(&spool);
    assert!(rest.len() >= expected.len());
    let last = rest.last().map(|(seq, _)| *seq).expect("records remain");
    spool.ack(SeqNo::new(last)).expect("ack all");
    assert!(spool.is_empty());
    assert_eq!(spool.stats().segments, 0);
    println!(
        "spool_crash: {ROUNDS} kill -9 rounds, {} records delivered, none lost",
        delivered_total + rest.len()
    );
}

fn main() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let round = std::env::var(CHILD_ROUND_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        child(&dir, round);
    }
    // cargo test passes libtest flags (e.g. --list for discovery); this binary has one test.
    if std::env::args().any(|a| a == "--list") {
        println!("spool_crash: test");
        return;
    }
    parent();
    println!("test spool_crash ... ok");
}
