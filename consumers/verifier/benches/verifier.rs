//! Verifier throughput and emergency revocation propagation against the real stack.
//!
//! Run with `scripts/bench-verifier` (release build, stack addresses from `VIGIL_*`).
//! 1. Ceiling: `verify_batch(256)` over pre-signed events, signatures per CPU-second.
//! 2. Pipeline: a pre-filled raw topic (`BENCH_EVENTS`, `BENCH_PARTITIONS`) drained by an
//!    in-process verifier with `verify_batch_max` = `BENCH_BATCH_MAX`; events per CPU-second
//!    of this process (CPU from /proc/self/stat) over the drain, and the ratio to the ceiling.
//! 3. Emergency revocation: `BENCH_TRIALS` keys each revoked with `$VIGIL_BIN keys revoke
//!    --emergency` (or in-process when `VIGIL_BIN` is unset) while events signed with it keep
//!    flowing; time from the command returning to the first `Revoked` verdict (its
//!    `verified_at`), p50/p99.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use vigil_consumer::ConsumerConfig;
use vigil_schemas::model::now_micros;
use vigil_schemas::signing::{BatchItem, verify_batch};
use vigil_schemas::{
    Codec, EventClass, EventSigner, KeyId, Producer, RecordSigner, SignatureHeaders,
    SignatureState, SignedRecord, Status, Subject, VerificationEvent, VerifiedEvent,
};
use vigil_test_support::{KeyRegistryFixture, RunningService, create_topic, metric};
use vigil_topology::{KafkaClientConfig, Telemetry};
use vigil_verifier::VerifierConfig;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command name.
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// CPU seconds per thread group (thread name with digits dropped, e.g. `rdk:broker`), read from
/// /proc/self/task, so the drain's cost can be split between librdkafka, tokio and the checker.
fn cpu_by_thread() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm: String = stat[open + 1..close]
            .chars()
            .filter(|c| !c.is_ascii_digit() && *c != '-')
            .collect();
        let f: Vec<&str> = stat[close + 2..].split_whitespace().collect();
        let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
        *out.entry(comm).or_insert(0.0) += ticks / 100.0;
    }
    out
}

fn name(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

fn event(key_id: &str) -> VerificationEvent {
    VerificationEvent::new(
        EventClass::SignatureVerification,
        "verify",
        Status::Success,
        Producer::rust("bench"),
    )
    .with_subject(Subject::principal("alice").with_key_id(key_id))
}

fn ceiling(
    records: &[SignedRecord],
    key: &vigil_schemas::PublicKey,
    batch: usize,
    secs: f64,
) -> f64 {
    let sigs: Vec<_> = records
        .iter()
        .map(|r| {
            SignatureHeaders::parse(
                r.headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), Some(v.as_slice()))),
            )
            .unwrap()
            .signature
        })
        .collect();
    let n = records.len().min(256 * 20);
    let cpu0 = cpu_seconds();
    let t0 = Instant::now();
    let mut done = 0;
    while done < n || t0.elapsed() < Duration::from_secs_f64(secs) {
        let start = done % (n - batch + 1).max(1);
        let items: Vec<BatchItem<'_>> = (start..start + batch)
            .map(|i| BatchItem {
                value: &records[i].value,
                signature: &sigs[i],
                key,
            })
            .collect();
        assert!(verify_batch(&items).iter().all(Result::is_ok));
        done += batch;
    }
    let cpu = (cpu_seconds() - cpu0).max(t0.elapsed().as_secs_f64() * 0.5);
    done as f64 / cpu
}

fn main() {
    // BENCH_WORKERS: tokio worker threads (default 1, as `vigil run verifier` runs).
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.worker_threads(env_or("BENCH_WORKERS", 1));
    rt.enable_all().build().unwrap().block_on(bench());
}

async fn bench() {
    // The fixtures below need the stack's addresses anyway: no fallback defaults.
    let bootstrap = vigil_test_support::kafka_bootstrap();
    let registry_url = vigil_test_support::schema_registry_url();
    let events: usize = env_or("BENCH_EVENTS", 30_000);
    let partitions: i32 = env_or("BENCH_PARTITIONS", 12);
    let batch_max: usize = env_or("BENCH_BATCH_MAX", 64);
    let trials: usize = env_or("BENCH_TRIALS", 20);

    let (raw, verified, dlq) = (name("bv-raw"), name("bv-verified"), name("bv-dlq"));
    create_topic(&raw, partitions).await;
    create_topic(&verified, 12).await;
    create_topic(&dlq, 1).await;
    let registry = KeyRegistryFixture::create("bv-keys").await;
    let keys = registry.topic().to_owned();
    let schema = vigil_test_support::register_schema::<VerificationEvent>(&raw).await;
    let kafka = KafkaClientConfig::new(bootstrap.clone());
    // Events are keyed by key id: enough keys to spread them over every partition.
    let mut signers = Vec::new();
    for i in 0..64 {
        let key_id = format!("k-bench-{i}");
        let signer = EventSigner::generate().with_key_id(KeyId::new(key_id.as_str()).unwrap());
        registry.activate(&key_id, &signer).await;
        signers.push((key_id, RecordSigner::new(signer, schema).unwrap()));
    }
    let one_key: Vec<SignedRecord> = (0..256 * 20)
        .map(|_| signers[0].1.sign(&event(&signers[0].0)).unwrap())
        .collect();
    let ceiling_per_cpu_s = ceiling(&one_key, signers[0].1.signer().public_key(), 256, 2.0);
    let curve: Vec<String> = [1, 8, 16, 32, 64]
        .iter()
        .map(|&b| {
            let rate = ceiling(&one_key, signers[0].1.signer().public_key(), b, 0.5);
            format!("{b}: {:.1} us", 1e6 / rate)
        })
        .collect();
    let records: Vec<SignedRecord> = (0..events)
        .map(|i| {
            let (k, rs) = &signers[i % signers.len()];
            rs.sign(&event(k)).unwrap()
        })
        .collect();
    eprintln!(
        "ceiling: verify_batch(256) {ceiling_per_cpu_s:.0} signatures per cpu-second ({:.1} us each; smaller batches {})",
        1e6 / ceiling_per_cpu_s,
        curve.join(", ")
    );

    let mut pc = rdkafka::ClientConfig::new();
    pc.set("bootstrap.servers", &bootstrap)
        .set("linger.ms", "5")
        .set("enable.idempotence", "true");
    let p: FutureProducer = pc.create().unwrap();
    for chunk in records.chunks(2_000) {
        futures::future::join_all(
            chunk
                .iter()
                .map(|r| vigil_test_support::send_signed(&p, &raw, r)),
        )
        .await;
    }

    let defaults = VerifierConfig::default();
    let config = VerifierConfig {
        consumer: ConsumerConfig {
            kafka: KafkaClientConfig {
                linger_ms: env_or("BENCH_LINGER_MS", kafka.linger_ms),
                ..kafka.clone()
            },
            schema_registry_url: registry_url.clone(),
            group_id: name("bv-group"),
            dlq_topic: dlq.clone(),
            retry_topics: Vec::new(),
            max_in_flight_per_partition: 1_000,
            pipeline_depth: env_or("BENCH_PIPELINE_DEPTH", 64),
            ..defaults.consumer.clone()
        },
        raw_topic: raw.clone(),
        verified_topic: verified.clone(),
        keys_topic: keys.clone(),
        trust_anchors: Some(registry.anchors_path().to_owned()),
        verify_batch_max: batch_max,
        ..defaults
    };
    let cfg = config.clone();
    let verifier = RunningService::spawn(move |telemetry, shutdown| async move {
        vigil_verifier::run(&cfg, &telemetry, shutdown).await
    });
    let telemetry = verifier.telemetry().clone();
    let verdicts = |t: &Telemetry| metric(t, "vigil_verifier_events_total", &[]);
    while verdicts(&telemetry) < 1.0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (cpu0, t0, n0) = (cpu_seconds(), Instant::now(), verdicts(&telemetry));
    let threads0 = cpu_by_thread();
    eprintln!("draining");
    while verdicts(&telemetry) < events as f64 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (cpu, wall, n) = (
        cpu_seconds() - cpu0,
        t0.elapsed().as_secs_f64(),
        verdicts(&telemetry) - n0,
    );
    let split: Vec<String> = cpu_by_thread()
        .into_iter()
        .map(|(k, v)| (k.clone(), v - threads0.get(&k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v >= 0.01)
        .map(|(k, v)| format!("{k} {:.1} us", v * 1e6 / n.max(1.0)))
        .collect();
    let per_cpu = n / cpu;
    eprintln!(
        "pipeline: batch_max={batch_max} depth={} linger_ms={} partitions={partitions}: {n:.0} events in {wall:.2}s wall ({:.0}/s), {cpu:.2} cpu-s => {per_cpu:.0} events per cpu-second; ratio to ceiling {:.2}",
        config.consumer.pipeline_depth,
        config.consumer.kafka.linger_ms,
        n / wall,
        per_cpu / ceiling_per_cpu_s
    );
    eprintln!("  cpu per event by thread: {}", split.join(", "));
    let metrics = telemetry.render();
    for l in metrics.lines().filter(|l| {
        l.starts_with("vigil_verifier_verify_batch_size_sum")
            || l.starts_with("vigil_verifier_verify_batch_size_count")
    }) {
        eprintln!("  {l}");
    }

    // Emergency revocation propagation.
    if trials == 0 {
        let _ = verifier.stop().await;
        return;
    }
    let vigil_bin = std::env::var("VIGIL_BIN").ok();
    let reader: StreamConsumer = {
        let mut c = rdkafka::ClientConfig::new();
        c.set("bootstrap.servers", &bootstrap)
            .set("group.id", name("bv-reader"))
            .set("auto.offset.reset", "latest")
            .set("enable.auto.commit", "false");
        let c: StreamConsumer = c.create().unwrap();
        c.subscribe(&[verified.as_str()]).unwrap();
        c
    };
    // Make sure the reader is assigned before measuring.
    let _ = tokio::time::timeout(Duration::from_secs(3), reader.recv()).await;
    let codec = Codec::<VerifiedEvent>::new().unwrap();
    let mut latencies = Vec::new();
    let mut from_start = Vec::new();
    for trial in 0..trials {
        let key_id = format!("k-revoke-{trial}-{:08x}", rand::random::<u32>());
        let s = EventSigner::generate().with_key_id(KeyId::new(key_id.as_str()).unwrap());
        registry.activate(&key_id, &s).await;
        let rs = Arc::new(RecordSigner::new(s, schema).unwrap());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let running = Arc::new(AtomicBool::new(true));
        let pump = {
            let (rs, p, raw, running, key_id) = (
                rs.clone(),
                p.clone(),
                raw.clone(),
                running.clone(),
                key_id.clone(),
            );
            tokio::spawn(async move {
                while running.load(Ordering::Relaxed) {
                    vigil_test_support::send_signed(&p, &raw, &rs.sign(&event(&key_id)).unwrap())
                        .await;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started_at = now_micros();
        let returned_at = match &vigil_bin {
            Some(bin) => {
                let (bin, key_id, keys) = (bin.clone(), key_id.clone(), keys.clone());
                let admin = registry.admin_key_path().to_owned();
                let anchors = registry.anchors_path().to_owned();
                let out = tokio::task::spawn_blocking(move || {
                    std::process::Command::new(bin)
                        .args([
                            "keys",
                            "revoke",
                            "--key-id",
                            &key_id,
                            "--reason",
                            "bench",
                            "--emergency",
                            "--topic",
                            &keys,
                        ])
                        .arg("--admin-key")
                        .arg(&admin)
                        .arg("--trust-anchors")
                        .arg(&anchors)
                        .output()
                })
                .await
                .unwrap()
                .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                now_micros()
            }
            None => {
                registry
                    .revoke(&key_id, rs.signer(), now_micros(), None, true)
                    .await;
                now_micros()
            }
        };
        let first_rejection = loop {
            let m = tokio::time::timeout(Duration::from_secs(10), reader.recv())
                .await
                .unwrap()
                .unwrap();
            let Some(v) = m.payload() else { continue };
            let (_, body) = vigil_schemas::wire::split_frame(v).unwrap();
            let ve = codec.decode(body).unwrap();
            if ve.key_id.as_deref() == Some(key_id.as_str()) && ve.state == SignatureState::Revoked
            {
                break ve.verified_at;
            }
        };
        running.store(false, Ordering::Relaxed);
        let _ = pump.await;
        latencies.push((first_rejection - returned_at) as f64 / 1_000.0);
        from_start.push((first_rejection - started_at) as f64 / 1_000.0);
    }
    from_start.sort_by(f64::total_cmp);
    let q = |v: &[f64], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "emergency revocation, command start -> first rejection: p50 {:.1} ms, p99 {:.1} ms",
        q(&from_start, 0.5),
        q(&from_start, 0.99)
    );
    latencies.sort_by(f64::total_cmp);
    let pct = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    eprintln!(
        "emergency revocation, command return -> first rejection (negative: rejected before the command exited) ({} trials, via {}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        latencies.len(),
        if vigil_bin.is_some() {
            "vigil keys revoke --emergency"
        } else {
            "KeyStatusWriter"
        },
        pct(0.5),
        pct(0.99),
        latencies.last().copied().unwrap_or_default()
    );
    let _ = verifier.stop().await;
}
