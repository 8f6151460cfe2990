#![allow(clippy::expect_used, clippy::unwrap_used)] // benches: a failed setup should stop loudly

//! The Rust side of `scripts/bench-sdk`: the same JSON drafts the Python and Node benches emit,
//! through the same `SdkEmitter` the bindings wrap, so the ratio measures only what a binding
//! adds. Prints one JSON line: per-emit p50/p99 in µs and events/s from the first emit until
//! the broker acknowledged the last.
//!
//! Input (set by `scripts/bench-sdk`): `VIGIL_BENCH_TOPIC`, `VIGIL_BENCH_EVENTS`,
//! `VIGIL_BENCH_KEY_FILE`, `VIGIL_BENCH_SPOOL`, and the stack's `VIGIL_*` addresses.

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
    let report = emitter.flush(Duration::from_secs(120));
    let elapsed = start.elapsed();
    assert_eq!(
        report.in_flight, 0,
        "broker did not acknowledge every event"
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
            "spooled": report.spooled,
        })
    );
    emitter.close();
}
