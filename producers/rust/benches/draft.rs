#![allow(clippy::expect_used, clippy::unwrap_used)] // benches: a failed setup should stop loudly

//! Completion of a JSON draft, the first thing every SDK emit does (`draft::complete_json`),
//! per event, with its ceiling measured in the same run: parsing the same text into a
//! `serde_json::Value` (the least any JSON front end can do). Prints one line per figure.
//!
//!   cargo bench -p vigil-producer --bench draft
//!   VIGIL_BENCH_EVENTS=200000 cargo bench -p vigil-producer --bench draft

use std::hint::black_box;
use std::time::Instant;

use vigil_producer::draft::{ProducerDefaults, complete_json};
use vigil_schemas::Platform;

/// The draft every language's SDK bench emits (benches/sdk.rs).
fn draft(i: usize) -> String {
    format!(
        r#"{{"class_uid":"authentication","activity_name":"logon","status_id":"failure","subject":{{"principal":"svc-{}"}},"attributes":{{"request":"req-{i}"}}}}"#,
        i % 100
    )
}

fn per_event(drafts: &[String], mut f: impl FnMut(&str)) -> f64 {
    let t = Instant::now();
    for d in drafts {
        f(d);
    }
    t.elapsed().as_secs_f64() * 1e9 / drafts.len() as f64
}

fn main() {
    let events: usize = std::env::var("VIGIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let drafts: Vec<String> = (0..events).map(draft).collect();
    let defaults = ProducerDefaults {
        platform: Platform::Python,
        sdk_version: "0.1.0".into(),
        service: "bench".into(),
        host: Some("bench-host".into()),
    };
    // Warm up, then three rounds each; the best round is the figure.
    per_event(&drafts[..events / 10], |d| {
        black_box(complete_json(d, Some(&defaults)).unwrap());
    });
    let mut ceiling = f64::MAX;
    let mut complete = f64::MAX;
    for _ in 0..3 {
        ceiling = ceiling.min(per_event(&drafts, |d| {
            black_box(serde_json::from_str::<serde_json::Value>(d).unwrap());
        }));
        complete = complete.min(per_event(&drafts, |d| {
            black_box(complete_json(d, Some(&defaults)).unwrap());
        }));
    }
    println!("parse to serde_json::Value (ceiling): {ceiling:8.0} ns/event");
    println!("draft::complete_json:                {complete:8.0} ns/event");
    println!(
        "ratio (ceiling / complete_json):      {:8.2}",
        ceiling / complete
    );
}
