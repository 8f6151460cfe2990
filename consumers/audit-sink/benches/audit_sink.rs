//! Audit sink measurements against the real stack (issue 5), in one run:
//!
//! 1. Throughput: `BENCH_ROWS` pre-built `AuditRow`s inserted straight through the `clickhouse`
//!    crate in batches of the sink's `batch_max_rows` (raw rows/s), then the same events as
//!    `VerifiedEvent`s in a fresh topic drained from the beginning by an in-process sink until
//!    every row is stored (sink rows/s); the ratio's goal is >= 0.7.
//! 2. Latency: events produced at `BENCH_LATENCY_RATE`/s for `BENCH_LATENCY_SECS` s, each with
//!    its produce time as `occurred_at`; ClickHouse is polled every `BENCH_POLL_MS` and a row's
//!    latency is the poll that first saw it minus its produce time; p50/p99 vs
//!    `flush_interval_ms + 500`.
//! 3. Memory: the `run_sink` example (`BENCH_SINK_BIN`, a release build) as its own process,
//!    stopped (SIGSTOP) while a backlog of 10x `batch_max_rows` is produced, then resumed; its
//!    peak RSS (`VmHWM`, plus `VmRSS` sampled during the drain) vs its idle RSS plus two
//!    encoded batches plus the consumer prefetch bound.
//!
//! `BENCH_PHASES` (default `throughput,latency,memory`) runs a subset, e.g. for profiling; the
//! throughput lines also give the bench process's CPU time per row (raw vs sink, in-process),
//! a figure that wobbles less than rows/s on a shared machine.
//!
//! Run with `scripts/bench-audit-sink` (release build, addresses from `VIGIL_*`).

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::collections::HashSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use clickhouse::{Client, Compression};
use rdkafka::producer::{FutureProducer, FutureRecord};
use vigil_audit_sink::chain::ChainHead;
use vigil_audit_sink::metrics::SinkMetrics;
use vigil_audit_sink::row::AuditRow;
use vigil_audit_sink::sink::SinkSummary;
use vigil_audit_sink::{AuditError, AuditSink, AuditSinkConfig, AuditStore};
use vigil_schemas::codec::Codec;
use vigil_schemas::model::*;
use vigil_schemas::signing::EventSigner;
use vigil_schemas::wire::SchemaId;
use vigil_test_support::{ChildProcess, RunningService, create_topic};
use vigil_topology::{KafkaClientConfig, Telemetry};

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn name(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

/// A realistic verified event: signed raw value, trace, attributes; every 7th rejected.
fn verified_event(
    i: u64,
    signer: &EventSigner,
    raw_codec: &Codec<VerificationEvent>,
) -> VerifiedEvent {
    let platform = [Platform::Rust, Platform::Python, Platform::Js][(i % 3) as usize];
    let mut event = VerificationEvent::new(
        EventClass::SignatureVerification,
        "verify",
        if i.is_multiple_of(7) {
            Status::Failure
        } else {
            Status::Success
        },
        Producer::new(platform, "1.4.2", format!("payments-{}", i % 4))
            .with_host(format!("host-{}.bank.internal", i % 16)),
    )
    .with_subject(
        Subject::principal(format!("user-{}@bank.example", i % 5000))
            .with_key_id(format!("k-{}", i % 64))
            .with_client_ip(format!("10.{}.{}.{}", i % 7, i % 250, i % 200)),
    )
    .with_trace(Trace::new(
        format!("{:032x}", i / 10 + 1),
        format!("{:016x}", i + 1),
    ))
    .with_attribute("channel", "mobile")
    .with_attribute("i", i.to_string());
    event.occurred_at = now_micros();
    let raw = raw_codec.encode_framed(SchemaId(1), &event).unwrap();
    let (state, signature, reason) = if i.is_multiple_of(7) {
        (
            SignatureState::Bad,
            vec![0u8; 64],
            Some("signature invalid".to_owned()),
        )
    } else {
        (
            SignatureState::Valid,
            signer.sign(&raw).to_bytes().to_vec(),
            None,
        )
    };
    VerifiedEvent {
        event,
        state,
        reason,
        verified_at: now_micros(),
        verifier: "bench".into(),
        key_id: Some(format!("k-{}", i % 64)),
        signed_value: raw,
        signature,
        origin_topic: "vigil.events.raw".into(),
        origin_partition: (i % 12) as i32,
        origin_offset: i as i64,
        key_emergency: false,
    }
}

/// Produces framed values round-robin over the topic's partitions (key = subject key id).
async fn produce(producer: &FutureProducer, topic: &str, values: &[(String, Vec<u8>)]) {
    let mut pending = Vec::new();
    for (key, value) in values {
        pending.push(
            producer
                .send_result(FutureRecord::to(topic).key(key.as_bytes()).payload(value))
                .unwrap(),
        );
        if pending.len() >= 5000 {
            for f in pending.drain(..) {
                f.await.unwrap().unwrap();
            }
        }
    }
    for f in pending {
        f.await.unwrap().unwrap();
    }
}

fn raw_client(db: &str) -> Client {
    let mut c = Client::default()
        .with_url(vigil_test_support::clickhouse_url())
        .with_compression(Compression::Lz4)
        .with_database(db);
    if let Ok(user) = std::env::var("VIGIL_CLICKHOUSE_USER") {
        c = c.with_user(user);
    }
    if let Ok(password) = std::env::var("VIGIL_CLICKHOUSE_PASSWORD") {
        c = c.with_password(password);
    }
    c
}

async fn count(store: &AuditStore) -> u64 {
    store
        .client()
        .query("SELECT count() FROM audit_events")
        .fetch_one::<u64>()
        .await
        .unwrap_or(0)
}

fn config(topic: &str, db: &str, batch_rows: usize, flush_ms: u64) -> AuditSinkConfig {
    AuditSinkConfig {
        topic: topic.to_owned(),
        group: name("bench-audit-sink"),
        database: db.to_owned(),
        batch_max_rows: batch_rows,
        flush_interval_ms: flush_ms,
        dlq_topic: format!("{topic}-dlq"),
        ..AuditSinkConfig::default()
    }
}

/// An in-process sink.
type Running = RunningService<Result<SinkSummary, AuditError>>;

/// The Kafka settings of the in-process sinks: `from_env` plus `BENCH_LIBRDKAFKA`
/// (`key=value,key=value` pass-through, for experiments).
fn kafka() -> KafkaClientConfig {
    let mut k = KafkaClientConfig::from_env();
    for kv in std::env::var("BENCH_LIBRDKAFKA")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (key, value) = kv
            .split_once('=')
            .expect("BENCH_LIBRDKAFKA is key=value,...");
        k.librdkafka.insert(key.to_owned(), value.to_owned());
    }
    k
}

/// Starts an in-process sink; returns it and its metrics (read directly while it drains).
fn start_sink(cfg: AuditSinkConfig, store: AuditStore) -> (Running, SinkMetrics) {
    let telemetry = Telemetry::new();
    let metrics = SinkMetrics::register(&telemetry.registry).unwrap();
    let sink = AuditSink::new(
        cfg,
        kafka(),
        store,
        EventSigner::from_seed(&[22; 32]),
        metrics.clone(),
        telemetry.health.clone(),
    )
    .unwrap();
    let running = RunningService::spawn_with(telemetry, move |_, shutdown| sink.run(shutdown));
    (running, metrics)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Returns the CPU time (user + system) this process has used, in seconds.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is 14th, stime 15th overall.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|x| x.parse().ok())
        .collect();
    let ticks = 100.0; // USER_HZ on Linux
    f.iter().sum::<u64>() as f64 / ticks
}

/// Raw insert of `rows`, then the same events through Kafka and an in-process sink.
async fn throughput(
    n: u64,
    partitions: i32,
    batch_rows: usize,
    flush_ms: u64,
    rows: &[AuditRow],
    values: Vec<(String, Vec<u8>)>,
    producer: &FutureProducer,
) {
    let defaults = AuditSinkConfig::default();
    let raw_db = name("bench_audit_raw");
    AuditStore::from_env(&raw_db)
        .unwrap()
        .migrate(defaults.retention_years)
        .await
        .unwrap();
    let client = raw_client(&raw_db);
    let cpu = cpu_secs();
    let started = Instant::now();
    for chunk in rows.chunks(batch_rows) {
        let mut insert = client.insert::<AuditRow>("audit_events").await.unwrap();
        for r in chunk {
            insert.write(r).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    let raw_secs = started.elapsed().as_secs_f64();
    let raw_cpu_us = (cpu_secs() - cpu) * 1e6 / n as f64;
    let raw_rps = n as f64 / raw_secs;
    println!(
        "raw insert: {n} rows in {raw_secs:.2} s = {raw_rps:.0} rows/s (bench process CPU {raw_cpu_us:.1} us/row)"
    );

    // 1b. The same events through Kafka and the sink, drained from the beginning.
    let topic = name("bench-audit");
    create_topic(&topic, partitions).await;
    create_topic(&format!("{topic}-dlq"), 1).await;
    let started = Instant::now();
    produce(producer, &topic, &values).await;
    println!(
        "produced {n} verified events in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    drop(values);
    let sink_db = name("bench_audit_sink");
    let store = AuditStore::from_env(&sink_db).unwrap();
    store.migrate(defaults.retention_years).await.unwrap();
    let cpu = cpu_secs();
    let started = Instant::now();
    let (running, metrics) = start_sink(
        config(&topic, &sink_db, batch_rows, flush_ms),
        store.clone(),
    );
    let deadline = started + Duration::from_secs(600);
    let mut first_batch_secs = None;
    while metrics.rows.get() < n && Instant::now() < deadline && !running.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
        if first_batch_secs.is_none() && metrics.rows.get() > 0 {
            first_batch_secs = Some(started.elapsed().as_secs_f64());
        }
    }
    let sink_secs = started.elapsed().as_secs_f64();
    let sink_cpu_us = (cpu_secs() - cpu) * 1e6 / n as f64;
    let write_secs = metrics.write_seconds.get_sample_sum();
    let batches = metrics.batches.get();
    let summary = running.stop().await.unwrap();
    let stored = count(&store).await;
    assert_eq!(stored, n, "every event stored exactly once ({summary:?})");
    let sink_rps = n as f64 / sink_secs;
    let ratio = sink_rps / raw_rps;
    println!(
        "sink drain: {n} rows in {sink_secs:.2} s = {sink_rps:.0} rows/s ({batches} batches; start-up included; first batch stored after {:.2} s; {write_secs:.2} s in batch writes; bench process CPU {sink_cpu_us:.1} us/row)",
        first_batch_secs.unwrap_or(f64::NAN)
    );
    println!(
        "throughput ratio sink/raw: {ratio:.2} (goal >= 0.70: {})",
        if ratio >= 0.7 { "met" } else { "NOT met" }
    );
}

/// Produce -> row-visible latency at a steady low rate.
async fn latency(
    partitions: i32,
    batch_rows: usize,
    flush_ms: u64,
    rate: u64,
    latency_secs: u64,
    poll_ms: u64,
    producer: &FutureProducer,
) {
    let defaults = AuditSinkConfig::default();
    let topic = name("bench-audit-lat");
    create_topic(&topic, partitions).await;
    create_topic(&format!("{topic}-dlq"), 1).await;
    let lat_db = name("bench_audit_lat");
    let store = AuditStore::from_env(&lat_db).unwrap();
    store.migrate(defaults.retention_years).await.unwrap();
    let (running, _) = start_sink(config(&topic, &lat_db, batch_rows, flush_ms), store.clone());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let total = rate * latency_secs;
    let producer_task = {
        let producer = producer.clone();
        let topic = topic.clone();
        tokio::spawn(async move {
            let signer = EventSigner::from_seed(&[11; 32]);
            let raw_codec = Codec::<VerificationEvent>::new().unwrap();
            let codec = Codec::<VerifiedEvent>::new().unwrap();
            let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate.max(1)));
            let mut pending = Vec::new();
            for i in 0..total {
                tick.tick().await;
                // occurred_at and verified_at are the produce time (same clock as the poller).
                let v = verified_event(i, &signer, &raw_codec);
                let value = codec.encode_framed(SchemaId(1), &v).unwrap();
                let key = v.key_id.clone().unwrap_or_default();
                pending.push(
                    producer
                        .send_result(FutureRecord::to(&topic).key(key.as_bytes()).payload(&value))
                        .unwrap(),
                );
            }
            for f in pending {
                f.await.unwrap().unwrap();
            }
        })
    };
    #[derive(Debug, clickhouse::Row, serde::Deserialize)]
    struct Seen {
        event_id: String,
        occurred_us: i64,
        ingested_us: i64,
    }
    let mut latencies: Vec<f64> = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut watermark = 0i64;
    let deadline = Instant::now() + Duration::from_secs(latency_secs + 60);
    while (seen.len() as u64) < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(poll_ms)).await;
        // Batches become visible in ingested_at order (one writer, one insert per batch).
        let rows: Vec<Seen> = store
            .client()
            .query(
                "SELECT toString(event_id) AS event_id, toUnixTimestamp64Micro(occurred_at) AS occurred_us, \
                 toUnixTimestamp64Micro(ingested_at) AS ingested_us FROM audit_events \
                 WHERE ingested_at >= fromUnixTimestamp64Micro(?, 'UTC')",
            )
            .bind(watermark)
            .fetch_all()
            .await
            .unwrap();
        let now = now_micros();
        for r in rows {
            watermark = watermark.max(r.ingested_us);
            if seen.insert(r.event_id) {
                latencies.push((now - r.occurred_us) as f64 / 1000.0);
            }
        }
    }
    producer_task.await.unwrap();
    running.stop().await.unwrap();
    latencies.sort_by(f64::total_cmp);
    let bound = (flush_ms + 500) as f64;
    let (p50, p99, max) = (
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "latency produce->visible: {} of {total} events at {rate}/s, p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms (poll every {poll_ms} ms); goal p99 <= flush_interval_ms + 500 = {bound:.0} ms: {}",
        latencies.len(),
        if p99 <= bound { "met" } else { "NOT met" }
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    vigil_topology::telemetry::init_tracing(vigil_topology::LogFormat::Text, "warn");
    let defaults = AuditSinkConfig::default();
    let n: u64 = env_or("BENCH_ROWS", 100_000);
    let partitions: i32 = env_or("BENCH_PARTITIONS", 12);
    let batch_rows: usize = env_or("BENCH_BATCH_ROWS", defaults.batch_max_rows);
    let flush_ms: u64 = env_or("BENCH_FLUSH_MS", defaults.flush_interval_ms);
    let rate: u64 = env_or("BENCH_LATENCY_RATE", 200);
    let latency_secs: u64 = env_or("BENCH_LATENCY_SECS", 20);
    let poll_ms: u64 = env_or("BENCH_POLL_MS", 50);
    // Comma-separated subset of throughput,latency,memory (all by default), for profiling runs.
    let phases =
        std::env::var("BENCH_PHASES").unwrap_or_else(|_| "throughput,latency,memory".into());
    let phase = |p: &str| phases.split(',').any(|x| x.trim() == p);
    println!(
        "setup: rows={n} partitions={partitions} batch_max_rows={batch_rows} flush_interval_ms={flush_ms} clickhouse={}",
        vigil_test_support::clickhouse_url()
    );

    let signer = EventSigner::from_seed(&[11; 32]);
    let raw_codec = Codec::<VerificationEvent>::new().unwrap();
    let codec = Codec::<VerifiedEvent>::new().unwrap();
    let events: Vec<VerifiedEvent> = (0..n)
        .map(|i| verified_event(i, &signer, &raw_codec))
        .collect();
    let values: Vec<(String, Vec<u8>)> = events
        .iter()
        .map(|v| {
            (
                v.key_id.clone().unwrap_or_default(),
                codec.encode_framed(SchemaId(1), v).unwrap(),
            )
        })
        .collect();
    let producer: FutureProducer = KafkaClientConfig::from_env().producer().create().unwrap();

    // 1a. Raw clickhouse-crate insert of the same rows, batch by batch.
    let mut heads = vec![ChainHead::default(); partitions as usize];
    let ingested_at = now_micros();
    let rows: Vec<AuditRow> = events
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let p = (i as i32) % partitions;
            let mut r =
                AuditRow::from_verified(v, "bench", p, i as i64 / partitions as i64, ingested_at);
            heads[p as usize].append(&mut r);
            r
        })
        .collect();
    let avg_row_bytes = rows.iter().map(AuditRow::encoded_len).sum::<usize>() as f64 / n as f64;
    // What the sink holds per row: its RowBinary bytes plus an 8-byte verified_at.
    let mut scratch = Vec::new();
    for r in &rows {
        vigil_audit_sink::row::encode_row_binary(&r.view(), &r.chain_hash, &mut scratch);
    }
    let sink_row_bytes = scratch.len() as f64 / n as f64 + 8.0;
    drop(scratch);
    let avg_value_bytes = values.iter().map(|(_, v)| v.len()).sum::<usize>() as f64 / n as f64;
    println!(
        "rows: avg encoded_len {avg_row_bytes:.0} B, RowBinary + verified_at {sink_row_bytes:.0} B, size_of::<AuditRow> {} B, avg kafka value {avg_value_bytes:.0} B",
        std::mem::size_of::<AuditRow>()
    );
    if phase("throughput") {
        throughput(
            n, partitions, batch_rows, flush_ms, &rows, values, &producer,
        )
        .await;
    }
    drop(rows);

    if phase("latency") {
        latency(
            partitions,
            batch_rows,
            flush_ms,
            rate,
            latency_secs,
            poll_ms,
            &producer,
        )
        .await;
    }

    // 3. Memory of a separate sink process draining a 10x backlog.
    if !phase("memory") {
        return;
    }
    let Ok(bin) = std::env::var("BENCH_SINK_BIN") else {
        println!(
            "memory: skipped (set BENCH_SINK_BIN to the run_sink example; scripts/bench-audit-sink does)"
        );
        return;
    };
    let backlog = 10 * batch_rows as u64;
    let topic = name("bench-audit-mem");
    create_topic(&topic, partitions).await;
    create_topic(&format!("{topic}-dlq"), 1).await;
    let mem_db = name("bench_audit_mem");
    let store = AuditStore::from_env(&mem_db).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("sink.pem");
    std::fs::write(
        &key_file,
        EventSigner::from_seed(&[22; 32])
            .to_pkcs8_pem()
            .unwrap()
            .as_bytes(),
    )
    .unwrap();
    let mut cfg = config(&topic, &mem_db, batch_rows, flush_ms);
    cfg.signing_key_file = Some(key_file);
    let mut child = ChildProcess::spawn(
        "the run_sink example",
        std::process::Command::new(&bin)
            .env("AUDIT_SINK_CONFIG", toml::to_string(&cfg).unwrap())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let pid = child.id();
    // Idle: migrated, assigned, nothing to read.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let idle_kib = proc_kib(pid, "VmRSS:").unwrap();
    child.signal("STOP");
    let started = Instant::now();
    let values: Vec<(String, Vec<u8>)> = (0..backlog)
        .map(|i| {
            let v = verified_event(i, &signer, &raw_codec);
            (
                v.key_id.clone().unwrap_or_default(),
                codec.encode_framed(SchemaId(1), &v).unwrap(),
            )
        })
        .collect();
    produce(&producer, &topic, &values).await;
    let backlog_bytes: usize = values.iter().map(|(_, v)| v.len()).sum();
    drop(values);
    println!(
        "memory: backlog of {backlog} events ({:.1} MiB) produced in {:.1} s while the sink was stopped",
        backlog_bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    child.signal("CONT");
    let started = Instant::now();
    let mut peak_sampled = idle_kib;
    let mut last_count = Instant::now();
    let deadline = started + Duration::from_secs(600);
    loop {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if let Some(k) = proc_kib(pid, "VmRSS:") {
            peak_sampled = peak_sampled.max(k);
        }
        if last_count.elapsed() >= Duration::from_millis(200) {
            last_count = Instant::now();
            if count(&store).await >= backlog || Instant::now() > deadline {
                break;
            }
        }
    }
    let drain_secs = started.elapsed().as_secs_f64();
    let hwm_kib = proc_kib(pid, "VmHWM:").unwrap();
    let after_kib = proc_kib(pid, "VmRSS:").unwrap();
    child.signal("TERM");
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match child.try_wait() {
            Some(s) => break Some(s),
            None if Instant::now() > stop_deadline => {
                child.kill();
                break None;
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let stored = count(&store).await;
    assert_eq!(
        stored, backlog,
        "the separate sink stored the whole backlog once"
    );
    let prefetch = KafkaClientConfig::from_env().consumer_prefetch_bytes as f64;
    // The sink holds two encoded batches; the previous design's bound (two batches of owned
    // AuditRows) is printed beside it for comparison with older figures.
    let batch_bytes = batch_rows as f64 * sink_row_bytes;
    let bound_kib = idle_kib as f64 + (2.0 * batch_bytes + prefetch) / 1024.0;
    let old_batch_bytes =
        batch_rows as f64 * (std::mem::size_of::<AuditRow>() as f64 + avg_row_bytes);
    let old_bound_kib = idle_kib as f64 + (2.0 * old_batch_bytes + prefetch) / 1024.0;
    println!(
        "memory: drained {backlog} rows in {drain_secs:.1} s ({:.0} rows/s); RSS idle {:.1} MiB, peak sampled {:.1} MiB, VmHWM {:.1} MiB, after drain {:.1} MiB; bound idle + 2 x encoded batch ({:.1} MiB each) + prefetch ({:.1} MiB) = {:.1} MiB: {}; previous design's bound (2 x batch of AuditRow, {:.1} MiB each) = {:.1} MiB: {} (exit {:?})",
        backlog as f64 / drain_secs,
        mib(idle_kib),
        mib(peak_sampled),
        mib(hwm_kib),
        mib(after_kib),
        batch_bytes / 1048576.0,
        prefetch / 1048576.0,
        bound_kib / 1024.0,
        if (hwm_kib as f64) <= bound_kib {
            "within"
        } else {
            "ABOVE"
        },
        old_batch_bytes / 1048576.0,
        old_bound_kib / 1024.0,
        if (hwm_kib as f64) <= old_bound_kib {
            "within"
        } else {
            "ABOVE"
        },
        status,
    );
}
