//! `shutdown_signal()` ends a run on SIGTERM, draining and committing. Alone in its own test
//! binary: once a SIGTERM handler is installed it stays for the life of the process.

#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use vigil_consumer::{ConsumerRuntime, Outcome};
use vigil_topology::Telemetry;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_run_cleanly_and_commits() {
    let topics = Topics::create(2).await;
    let producer = producer();
    for i in 0..20 {
        let v = format!("r{i}");
        produce(
            &producer,
            &topics.source,
            None,
            Some(v.as_bytes()),
            Some(v.as_bytes()),
            &[],
        )
        .await;
    }
    let telemetry = Telemetry::new();
    let runtime = ConsumerRuntime::new(topics.config(), &kafka(), &telemetry).expect("runtime");
    let handler = Scripted::new(|_| Ok(Outcome::Handled));
    let task = tokio::spawn({
        let handler = handler.clone();
        async move {
            runtime
                .run(handler, vigil_consumer::shutdown_signal())
                .await
        }
    });
    eventually("all records handled", WAIT, || handler.count() >= 20).await;

    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let summary = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("the run ends after SIGTERM")
        .expect("no panic")
        .expect("clean stop");
    assert_eq!(summary.handled, 20);
    assert!(!telemetry.health.is_ready());
    assert_eq!(
        committed(&topics.group, &topics.source, 2),
        end_offsets(&topics.source, 2)
    );
}
