#![allow(clippy::expect_used, clippy::unwrap_used)] // benches: a failed setup should stop loudly

//! The Rust side of `scripts/bench-sdk`: the same JSON drafts the Python and Node benches emit,
//! through the same `SdkEmitter` the bindings wrap, so the ratio measures only what a binding
//! adds. Prints one JSON line: per-emit p50/p99 in µs and events/s from the first emit until
//! the broker acknowledged the last.
//!
//! Input (set by `scripts/bench-sdk`): `VIGIL_BENCH_TOPIC`, `VIGIL_BENCH_EVENTS`,
//! `VIGIL_BENCH_LOOP`, `VIGIL_BENCH_KEY_FILE`, `VIGIL_BENCH_SPOOL`, `VIGIL_BENCH_DEAD_BROKER`
//! and the stack's `VIGIL_*` addresses.

use std::time::{Duration, Instant};

use vigil_producer::sdk::{SdkEmitter, SdkOptions};
use vigil_schemas::Platform;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run scripts/bench-sdk"))
}

/// The draft every language's bench emits for event `i`.
fn draft(i: usize) -> String {
    format!(
        r#"{{"class_uid":"authentication","activity_name":"logon","status_id":"failure","subject":{{"principal":"svc-{}"}},"attributes":{{"request":"req-{i}"}}}}"#,
        i % 100
    )
}

fn main() {
    let cpus = std::env::var("VIGIL_BENCH_CPUS")
        .ok()
        .filter(|c| !c.is_empty());
    if cpus.is_none() {
        emit_figures();
    }
    let iterations: usize = env("VIGIL_BENCH_LOOP").parse().expect("VIGIL_BENCH_LOOP");
    let broker_up = std::env::var("VIGIL_KAFKA_BOOTSTRAP").unwrap_or_default();
    for (tag, broker) in [
        ("broker-up", broker_up),
        ("broker-down", env("VIGIL_BENCH_DEAD_BROKER")),
    ] {
        println!("{}", overhead(iterations, &broker, tag, cpus.as_deref()));
    }
}

/// `LOOP:OTHER` (`VIGIL_BENCH_CPUS`): this thread, the loop's, on CPU `LOOP`; every other
/// thread of the process (the encoder, librdkafka's) on CPU `OTHER` (through `taskset`).
fn pin(cpus: &str) {
    let (loop_cpu, other_cpu) = cpus
        .split_once(':')
        .expect("VIGIL_BENCH_CPUS is LOOP:OTHER");
    let me = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let me = me
        .file_name()
        .and_then(|n| n.to_str())
        .expect("tid")
        .to_owned();
    for entry in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let tid = entry
            .expect("task")
            .file_name()
            .to_string_lossy()
            .into_owned();
        let cpu = if tid == me { loop_cpu } else { other_cpu };
        let status = std::process::Command::new("taskset")
            .args(["-p", "-c", cpu, &tid])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .expect("taskset");
        // A thread may end between the listing and taskset (the start-up registry client's).
        let gone = !std::path::Path::new("/proc/self/task").join(&tid).exists();
        assert!(status.success() || gone, "taskset -p -c {cpu} {tid}");
    }
}

/// The emit figures: per-emit cost and end-to-end events/s.
fn emit_figures() {
    let events: usize = env("VIGIL_BENCH_EVENTS")
        .parse()
        .expect("VIGIL_BENCH_EVENTS");
    let options = serde_json::json!({
        "service": "bench-rust",
        "key_id": "bench-key",
        "signing_key_file": env("VIGIL_BENCH_KEY_FILE"),
        "emitter": {
            "spool_dir": env("VIGIL_BENCH_SPOOL"),
            "topic": env("VIGIL_BENCH_TOPIC"),
        },
    });
    let options = SdkOptions::from_json(&options.to_string()).expect("options");
    let emitter = SdkEmitter::start(&options, Platform::Rust, "bench").expect("start");
    let drafts: Vec<String> = (0..events).map(draft).collect();
    let mut costs = Vec::with_capacity(events);
    let start = Instant::now();
    for d in &drafts {
        let t = Instant::now();
        emitter.emit_json(d, None).expect("emit");
        costs.push(t.elapsed());
    }
    // A burst faster than signing fills the queue and spills to the spool (by design); the
    // figure runs until the broker acknowledged every event, spilled ones included.
    let deadline = Instant::now() + Duration::from_secs(120);
    emitter.flush(Duration::from_secs(120));
    while emitter.metrics().delivered() < events as u64 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    assert_eq!(
        emitter.metrics().delivered(),
        events as u64,
        "broker did not acknowledge every event within 120 s"
    );
    costs.sort();
    let pct = |p: f64| costs[((costs.len() as f64 * p) as usize).min(costs.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "lang": "rust",
            "events": events,
            "p50_us": pct(0.50).as_secs_f64() * 1e6,
            "p99_us": pct(0.99).as_secs_f64() * 1e6,
            "events_per_s": events as f64 / elapsed.as_secs_f64(),
            "spilled": emitter.metrics().spooled(),
        })
    );
    emitter.close();
}

/// Iterations per block; blocks without and with emit alternate.
const BLOCK: usize = 200;

/// A loop of real Ed25519 verifies (ed25519-dalek, as the verifier does), each iteration timed,
/// without and with one emit per verify: the core's own overhead, the floor under what the
/// Python and Node.js loops (with their languages' verify) can show.
fn overhead(iterations: usize, broker: &str, tag: &str, cpus: Option<&str>) -> serde_json::Value {
    let signer = vigil_schemas::EventSigner::generate();
    let message = [7_u8; 200];
    let signature = signer.sign(&message);
    let public = *signer.public_key();
    // Blocks without and with one emit per verify alternate, so the machine's noise (other
    // tenants, the broker's pauses) falls on both alike.
    let run = |emitter: &SdkEmitter, n: usize| {
        let (mut base, mut loaded) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for block in 0..(n / BLOCK).max(1) {
            for _ in 0..BLOCK {
                let t = Instant::now();
                public.verify(&message, &signature).expect("verify");
                base.push(t.elapsed());
            }
            for i in 0..BLOCK {
                let d = draft(block * BLOCK + i);
                let t = Instant::now();
                public.verify(&message, &signature).expect("verify");
                emitter.emit_json(&d, None).expect("emit");
                loaded.push(t.elapsed());
            }
        }
        base.sort();
        loaded.sort();
        (base, loaded)
    };
    let options = serde_json::json!({
        "service": format!("bench-rust-{tag}"),
        "key_id": "bench-key",
        "signing_key_file": env("VIGIL_BENCH_KEY_FILE"),
        "bootstrap_servers": broker,
        "emitter": {
            "spool_dir": format!("{}-{tag}", env("VIGIL_BENCH_SPOOL")),
            "topic": env("VIGIL_BENCH_TOPIC"),
            "delivery_timeout_ms": 2000,
            "close_timeout_ms": 2000,
        },
    });
    let options = SdkOptions::from_json(&options.to_string()).expect("options");
    let emitter = SdkEmitter::start(&options, Platform::Rust, "bench").expect("start");
    if let Some(cpus) = cpus {
        pin(cpus);
    }
    run(&emitter, iterations / 10); // warm up
    let (base, loaded) = run(&emitter, iterations);
    emitter.close();
    let tag = match cpus {
        Some(_) => format!("{tag} pinned"),
        None => tag.to_owned(),
    };
    let pct = |c: &[Duration], p: f64| {
        c[((c.len() as f64 * p) as usize).min(c.len() - 1)].as_secs_f64() * 1e6
    };
    serde_json::json!({
        "lang": "rust", "overhead": tag, "iterations": iterations,
        "verify_p50_us": pct(&base, 0.5), "verify_p99_us": pct(&base, 0.99),
        "with_emit_p50_us": pct(&loaded, 0.5), "with_emit_p99_us": pct(&loaded, 0.99),
    })
}
