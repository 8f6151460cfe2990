#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! Producer figures against the real broker, each a ratio to a ceiling measured in the same run
//! (our machines are shared and noisy). Run through `scripts/bench-producer`.
//!
//! 1. ceiling: encode + frame + sign per event on one core (`RecordSigner::sign`);
//! 2. throughput: events/s through `Emitter` to the broker, and its ratio to the ceiling;
//! 3. overhead on the verification path: a loop of real Ed25519 verifies, with and without one
//!    `emit` per verify, p50 and p99, with the broker up and with it unreachable;
//! 4. memory: resident set size during a 10x burst and during a broker outage, against the bound.

use std::time::{Duration, Instant};

use vigil_producer::{Emitter, EmitterConfig};
use vigil_schemas::{
    EventClass, EventSigner, Platform, Producer, RecordSigner, SchemaId, Status, Subject,
    VerificationEvent,
};
use vigil_topology::KafkaClientConfig;

fn event(i: usize) -> VerificationEvent {
    VerificationEvent::new(
        EventClass::SignatureVerification,
        "verify",
        Status::Success,
        Producer::new(Platform::Rust, "0.1.0", "bench").with_host("bench-host"),
    )
    .with_subject(
        Subject::principal(format!("svc-{}", i % 100)).with_key_id(format!("key-{}", i % 16)),
    )
    .with_attribute("request", format!("req-{i}"))
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/bench-producer"))
}

fn config(dir: &std::path::Path, topic: &str, tag: &str) -> EmitterConfig {
    let mut c = EmitterConfig::new(dir.join(tag));
    c.topic = topic.to_owned();
    c.delivery_timeout_ms = 2000;
    c.close_timeout_ms = 5000;
    c
}

/// Per-iteration latency of `iterations` verifies, each followed by an emit when given one;
/// with `pace`, iterations start that far apart (a service under a steady load) instead of
/// back to back (a saturated core).
fn verify_loop(
    iterations: usize,
    emitter: Option<&Emitter>,
    pace: Option<Duration>,
) -> Vec<Duration> {
    let signer = EventSigner::generate();
    let public = *signer.public_key();
    let message = vec![7u8; 400];
    let signature = signer.sign(&message);
    let mut lat = Vec::with_capacity(iterations);
    let start = Instant::now();
    for i in 0..iterations {
        if let Some(p) = pace {
            let slot = start + p * i as u32;
            while Instant::now() < slot {
                std::hint::spin_loop();
            }
        }
        let t = Instant::now();
        let ok = public.verify(&message, &signature).is_ok();
        // The event is built in both loops: the platform builds it anyway; the difference
        // between the loops is the cost of `emit` alone.
        let e = event(i).with_attribute("ok", ok.to_string());
        match emitter {
            Some(em) => {
                let _ = em.emit(e);
            }
            None => drop(std::hint::black_box(e)),
        }
        lat.push(t.elapsed());
    }
    lat.sort_unstable();
    lat
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else to parse.
    let bootstrap = env("VIGIL_KAFKA_BOOTSTRAP");
    let topic = env("VIGIL_BENCH_TOPIC");
    let schema_id = SchemaId(env("VIGIL_BENCH_SCHEMA_ID").parse().expect("schema id"));
    let n: usize = std::env::var("VIGIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka = KafkaClientConfig::new(&bootstrap);
    let events: Vec<VerificationEvent> = (0..n).map(event).collect();

    // 1. Ceiling.
    let signer = RecordSigner::new(EventSigner::generate(), schema_id).expect("signer");
    let t = Instant::now();
    for e in &events {
        std::hint::black_box(signer.sign(e).expect("sign"));
    }
    let ceiling = n as f64 / t.elapsed().as_secs_f64();
    println!("ceiling          sign+encode+frame: {ceiling:>10.0} events/s on one core");

    // 2. Throughput through the emitter to the broker.
    let emitter = Emitter::start(
        &config(dir.path(), &topic, "tput"),
        &kafka,
        RecordSigner::new(EventSigner::generate(), schema_id).expect("s"),
        None,
    )
    .expect("emitter");
    let rss_before = rss_mib();
    let t = Instant::now();
    for e in events.iter().cloned() {
        emitter.emit(e).expect("emit");
    }
    let report = emitter.flush(Duration::from_secs(120));
    let secs = t.elapsed().as_secs_f64();
    let delivered = emitter.metrics().delivered();
    let spooled = emitter.metrics().spooled();
    let rate = delivered as f64 / secs;
    println!(
        "throughput       emitter -> broker:   {rate:>10.0} events/s  ratio {:.2} of the ceiling  ({delivered} delivered, {spooled} via spool, in flight {})",
        rate / ceiling,
        report.in_flight
    );
    let burst_rss = rss_mib();
    emitter.close();
    drop(emitter);

    // 3. Overhead on the verification path, saturated and at a steady 5k verifies/s.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    let down_kafka = KafkaClientConfig::new(dead.to_string());
    let mut outage_rss = 0.0;
    let mut spooled_down = 0;
    for (mode, iters, pace) in [
        ("saturated", 20_000, None),
        ("5k/s", 10_000, Some(Duration::from_micros(200))),
    ] {
        let base = verify_loop(iters, None, pace);
        let up = Emitter::start(
            &config(dir.path(), &topic, &format!("up-{iters}")),
            &kafka,
            RecordSigner::new(EventSigner::generate(), schema_id).expect("s"),
            None,
        )
        .expect("emitter");
        let with = verify_loop(iters, Some(&up), pace);
        up.close();
        let down = Emitter::start(
            &config(dir.path(), &topic, &format!("down-{iters}")),
            &down_kafka,
            RecordSigner::new(EventSigner::generate(), schema_id).expect("s"),
            None,
        )
        .expect("emitter");
        let with_down = verify_loop(iters, Some(&down), pace);
        outage_rss = rss_mib();
        spooled_down = down.spooled_pending();
        down.close();
        for (name, p) in [("p50", 0.50), ("p99", 0.99)] {
            let b = percentile(&base, p).as_nanos() as f64;
            let u = percentile(&with, p).as_nanos() as f64;
            let d = percentile(&with_down, p).as_nanos() as f64;
            println!(
                "verify {mode:>9} {name}  verify only {:>6.1} us | +emit, broker up {:>6.1} us ({:+.1}%) | +emit, broker down {:>6.1} us ({:+.1}%)",
                b / 1000.0,
                u / 1000.0,
                (u / b - 1.0) * 100.0,
                d / 1000.0,
                (d / b - 1.0) * 100.0
            );
        }
    }

    // 4. Memory against the bound: in-memory queue + librdkafka queue (the spool is on disk).
    let bound_mib = (EmitterConfig::new("x").queue_capacity as f64 * 1024.0
        + kafka.producer_queue_bytes as f64)
        / (1024.0 * 1024.0);
    println!(
        "memory           rss before {rss_before:.0} MiB, after {n}-event burst {burst_rss:.0} MiB, during outage ({spooled_down} spooled) {outage_rss:.0} MiB; queue bound {bound_mib:.0} MiB above baseline"
    );
}
