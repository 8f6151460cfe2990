//! Key registry load: how long a reader takes to load `BENCH_KEYS` (default 10,000) statuses
//! signed by an administrator (each signature checked) against the same statuses unsigned (the
//! migration window's path, which checks nothing): the cost of trusting only signed records.
//!
//! Both topics are written once, then loaded `BENCH_ROUNDS` times each (default 7), alternating,
//! so the noise of a shared machine falls on both. Prints the median wall time and process CPU
//! time of each, and their ratio. Needs the stack: `eval "$(scripts/stack up)"`; run with
//! `scripts/bench-key-registry`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stderr)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use vigil_consumer::key_registry::{KeyRegistry, KeyRegistryConfig};
use vigil_schemas::{Codec, EventSigner, KeyStatus, TrustAnchors};
use vigil_test_support::keys::{KeyRegistryFixture, active};
use vigil_topology::KafkaClientConfig;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds this process has used (user + system), from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name.
    (ticks(11) + ticks(12)) / 100.0
}

async fn load(
    topic: &str,
    anchors: &Arc<TrustAnchors>,
    accept_unsigned: bool,
    n: usize,
) -> (f64, f64) {
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let (registry, task) = KeyRegistry::start(
        &KeyRegistryConfig {
            topic: topic.to_owned(),
            schema_registry_url: vigil_test_support::schema_registry_url(),
            anchors: anchors.clone(),
            accept_unsigned,
        },
        &KafkaClientConfig::new(vigil_test_support::kafka_bootstrap()),
        None,
    )
    .await
    .unwrap();
    registry
        .wait_loaded(Duration::from_secs(120))
        .await
        .unwrap();
    let out = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
    task.abort();
    assert_eq!(registry.len(), n, "every status of {topic} applied");
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env_or("BENCH_KEYS", 10_000);
    let rounds = env_or("BENCH_ROUNDS", 7).max(1);
    let signed = KeyRegistryFixture::create("bkr-signed").await;
    let unsigned_topic = vigil_test_support::unique_name("bkr-unsigned");
    vigil_test_support::create_compacted_topic(&unsigned_topic).await;
    let schema = vigil_test_support::register_schema::<KeyStatus>(&unsigned_topic).await;
    let codec = Codec::<KeyStatus>::new().unwrap();
    let producer = vigil_test_support::producer();
    let keys: Vec<EventSigner> = (0..64).map(|_| EventSigner::generate()).collect();
    let statuses: Vec<KeyStatus> = (0..n)
        .map(|i| active(&format!("key-{i:05}"), &keys[i % keys.len()]))
        .collect();
    let t = Instant::now();
    for chunk in statuses.chunks(1_000) {
        futures::future::try_join_all(chunk.iter().map(|s| signed.writer().write(s)))
            .await
            .unwrap();
        futures::future::join_all(
            chunk.iter().map(|s| {
                let value = codec.encode_framed(schema, s).unwrap();
                let (p, topic) = (producer.clone(), unsigned_topic.clone());
                async move {
                    vigil_test_support::send(&p, &topic, s.key_id.as_bytes(), &value, &[]).await
                }
            }),
        )
        .await;
    }
    eprintln!(
        "wrote {n} signed and {n} unsigned statuses in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let anchors = signed.anchors();
    let (mut sw, mut sc, mut uw, mut uc) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        let (w, c) = load(signed.topic(), &anchors, false, n).await;
        sw.push(w);
        sc.push(c);
        let (w, c) = load(&unsigned_topic, &anchors, true, n).await;
        uw.push(w);
        uc.push(c);
    }
    let (sw, sc, uw, uc) = (median(sw), median(sc), median(uw), median(uc));
    eprintln!("key registry load, {n} keys, median of {rounds} rounds each:");
    eprintln!(
        "  signed   (administrator signature checked): wall {:.3} s, cpu {:.3} s",
        sw, sc
    );
    eprintln!(
        "  unsigned (migration window, nothing checked): wall {:.3} s, cpu {:.3} s",
        uw, uc
    );
    eprintln!(
        "  signed / unsigned: wall {:.2}, cpu {:.2}",
        sw / uw,
        sc / uc
    );
}
