//! End-to-end latency: `Emitter::emit` → verifier → correlator → alerter → signed webhook, on
//! the real stack, every service in this process started by `vigil-pipeline` in a fresh
//! namespace (torn down at the end).
//!
//! Each measured event carries its emit time as `occurred_at` (set just before `emit`) and a
//! bench rule (`group-by: [event_id]`) turns every event into exactly one alert with its own
//! fingerprint, so the alerter's dedup hides no sample; the alert's `first_seen` is the event's
//! `occurred_at`, and the webhook receiver subtracts it from its arrival time.
//! Phases: a low rate; paced steps ×1.5 up to the highest rate whose p99 stays under
//! BENCH_SUSTAIN_P99_MS with every alert delivered (the measured maximum); then 70% of it.
//! Knobs (env): BENCH_LOW_RATE (events/s, default 20), BENCH_LOW_SECS (15), BENCH_STEP_START
//! (100), BENCH_STEP_MAX (20000), BENCH_STEP_SECS (4), BENCH_SUSTAIN_P99_MS (100),
//! BENCH_LOAD_SECS (15), BENCH_PARTITIONS (12: a cap on the built-in topology's partitions, which
//! gives raw and verified 12, alerts 6),
//! BENCH_LINGER_MS (unset: the services' default linger), BENCH_KEYS (64 subjects),
//! BENCH_STAGES=1 (also read the verified and alerts topics and print, per phase, when each
//! hop's record was produced (record timestamp, ms) and seen by a reader, since emit).

#![allow(
    clippy::field_reassign_with_default,
    clippy::expect_used,
    clippy::unwrap_used
)]

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use vigil_pipeline::{Endpoints, Namespace, Pipeline, PipelineConfig, apply_topology, teardown};
use vigil_producer::{Emitter, EmitterConfig};
use vigil_schemas::model::now_micros;
use vigil_schemas::{
    EventClass, EventSigner, KeyId, Producer, RecordSigner, Status, Subject, VerificationEvent,
};
use vigil_test_support::unique_name;
use vigil_topology::ReplicationOverride;

const BENCH_RULE: &str = "title: Bench event\nid: bench-e2e\nstatus: test\nlogsource: {product: vigil}\n\
detection:\n  selection:\n    attributes.bench: e2e\n    state: valid\n  condition: selection\n\
group-by: [event_id]\nlevel: high\n";

#[derive(Default)]
struct Seen {
    latencies_us: Vec<i64>,
    fingerprints: HashSet<String>,
    duplicates: u64,
}

async fn receive(State(seen): State<Arc<Mutex<Seen>>>, body: Bytes) -> &'static str {
    let now = now_micros();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let emitted = v["alert"]["first_seen"].as_i64();
    let fp = v["alert"]["fingerprint"].as_str().unwrap_or("").to_owned();
    let mut s = seen.lock().unwrap();
    if !s.fingerprints.insert(fp) {
        s.duplicates += 1;
    } else if let Some(t) = emitted {
        s.latencies_us.push(now - t);
    }
    "ok"
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(l: &[i64], q: f64) -> f64 {
    if l.is_empty() {
        return f64::NAN;
    }
    let idx = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len()) - 1;
    l[idx] as f64 / 1_000.0
}

fn report(phase: &str, rate: f64, sent: u64, mut l: Vec<i64>) -> f64 {
    l.sort_unstable();
    // The machine's load, since other work on a 2-core box shows up in the tail.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load.split_whitespace().next().unwrap_or("?");
    println!(
        "{phase}: rate={rate:.0}/s sent={sent} samples={} p50={:.2}ms p90={:.2}ms p99={:.2}ms max={:.2}ms (load1 {load})",
        l.len(),
        pct(&l, 0.50),
        pct(&l, 0.90),
        pct(&l, 0.99),
        pct(&l, 1.0)
    );
    pct(&l, 0.99)
}

/// Emits `rate × secs` events, paced, over the keys in turn; returns how many.
async fn paced(emitter: &Emitter, keys: &[String], rate: f64, secs: u64) -> u64 {
    let total = (rate * secs as f64).round() as u64;
    let start = Instant::now();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if due > now + Duration::from_micros(500) {
            tokio::time::sleep(due - now).await;
        }
        let mut e = VerificationEvent::new(
            EventClass::SignatureVerification,
            "verify",
            Status::Success,
            Producer::rust("bench-e2e"),
        )
        .with_subject(Subject::principal("bench").with_key_id(&keys[i as usize % keys.len()]))
        .with_attribute("bench", "e2e");
        e.occurred_at = now_micros();
        emitter.emit(e).unwrap();
    }
    total
}

/// Waits until `n` samples arrived (or `timeout`); returns whether all did.
async fn wait_for(seen: &Arc<Mutex<Seen>>, n: usize, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if seen.lock().unwrap().latencies_us.len() >= n {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Per hop: (produced, seen by a reader) latencies since emit, microseconds.
#[derive(Default)]
struct Stages {
    verified: (Vec<i64>, Vec<i64>),
    alerts: (Vec<i64>, Vec<i64>),
}

/// Reads `topic` and records, per record, its timestamp and arrival minus the emit time that
/// `emitted` extracts from the Avro body.
/// Reads a record's emit time (µs) from its value, when it is one of the bench's events.
type EmitTime = Box<dyn Fn(&[u8]) -> Option<i64> + Send>;

fn stage_reader(
    topic: &str,
    stages: Arc<Mutex<Stages>>,
    pick: fn(&mut Stages) -> &mut (Vec<i64>, Vec<i64>),
    emitted: EmitTime,
) {
    use rdkafka::Message;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut c = vigil_test_support::client_config();
    c.set("group.id", unique_name("bench-e2e-reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100");
    let consumer: BaseConsumer = c.create().unwrap();
    consumer.subscribe(&[topic]).unwrap();
    std::thread::spawn(move || {
        loop {
            let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let now = now_micros();
            let Some(t0) = m.payload().and_then(|v| v.get(5..)).and_then(&emitted) else {
                continue;
            };
            let produced = m.timestamp().to_millis().map(|ms| ms * 1_000 - t0);
            let mut s = stages.lock().unwrap();
            let hop = pick(&mut s);
            if let Some(p) = produced {
                hop.0.push(p);
            }
            hop.1.push(now - t0);
        }
    });
}

fn report_stages(stages: &Arc<Mutex<Stages>>) {
    let mut s = stages.lock().unwrap();
    let line = |name: &str, v: &mut Vec<i64>| {
        v.sort_unstable();
        println!(
            "  {name}: n={} p50={:.2}ms p99={:.2}ms max={:.2}ms",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.99),
            pct(v, 1.0)
        );
        v.clear();
    };
    let Stages { verified, alerts } = &mut *s;
    line("verified produced (record ts, ms)", &mut verified.0);
    line("verified seen by a reader", &mut verified.1);
    line("alert produced (record ts, ms)", &mut alerts.0);
    line("alert seen by a reader", &mut alerts.1);
}

fn take(seen: &Arc<Mutex<Seen>>) -> Vec<i64> {
    std::mem::take(&mut seen.lock().unwrap().latencies_us)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let partitions = env("BENCH_PARTITIONS", 12) as i32;
    let ns = Namespace::random("vigil-bench-e2e").unwrap();
    let mut endpoints = Endpoints::from_env();
    if let Ok(v) = std::env::var("BENCH_LINGER_MS") {
        endpoints.kafka.linger_ms = v.parse().expect("BENCH_LINGER_MS is a number");
    }
    let kafka = endpoints.kafka.clone();
    // The built-in topology (raw and verified 12 partitions, alerts 6), capped at `partitions`.
    let topology = ns
        .topology(ReplicationOverride::from_env().unwrap(), Some(partitions))
        .unwrap();
    apply_topology(&kafka, &topology).await.unwrap();
    let topic_names: Vec<String> = topology.topics.iter().map(|t| t.name.clone()).collect();
    let part = |name: String| {
        topology
            .topics
            .iter()
            .find(|t| t.name == name)
            .map_or(0, |t| t.partitions)
    };
    println!(
        "setup: raw {} / verified {} / alerts {} partitions, linger_ms={} (all producers)",
        part(ns.raw_topic()),
        part(ns.verified_topic()),
        part(ns.alerts_topic()),
        kafka.linger_ms
    );
    let (raw, verified, alerts) = (ns.raw_topic(), ns.verified_topic(), ns.alerts_topic());

    // A signing key the verifier trusts.
    let raw_schema = vigil_test_support::register_schema::<VerificationEvent>(&raw).await;
    // One signing key; the events' subjects spread over BENCH_KEYS key ids, so the raw topic's
    // subject key spreads them over partitions as real traffic is.
    let key_id = "bench-e2e-key";
    let subjects: Vec<String> = (0..env("BENCH_KEYS", 64))
        .map(|i| format!("bench-subject-{i}"))
        .collect();
    let signer = EventSigner::generate().with_key_id(KeyId::new(key_id).unwrap());
    let config = PipelineConfig::new(ns.clone(), endpoints.clone());
    let admin = EventSigner::generate();
    let anchors = vigil_test_support::keys::write_anchors(ns.name(), &[&admin]);
    let keys = config.key_writer(admin).await.unwrap();
    keys.write(&vigil_test_support::keys::active(key_id, &signer))
        .await
        .unwrap();

    // The webhook receiver.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let app = Router::new().fallback(receive).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules).unwrap();
    std::fs::write(rules.join("bench.yml"), BENCH_RULE).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "bench-token").unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "bench-secret").unwrap();

    let routing = format!(
        "receivers:\n  - {{name: hook, kind: webhook, url: {hook:?}, secret_file: {secret:?}, \
         rate_limit_per_minute: 100000000, rate_limit_burst: 1000000, timeout_ms: 5000}}\n\
         route: {{receivers: [hook]}}\n",
        secret = secret.display().to_string(),
    );
    let config = config
        .with_verifier(&anchors)
        .with_correlator(&rules)
        .with_alerter(&routing, &token)
        .unwrap();
    let pipeline = Pipeline::start(&config).await.unwrap();
    pipeline.ready(Duration::from_secs(60)).await.unwrap();

    let stages = Arc::new(Mutex::new(Stages::default()));
    let with_stages = std::env::var("BENCH_STAGES").is_ok_and(|v| v == "1");
    if with_stages {
        let vcodec = vigil_schemas::Codec::<vigil_schemas::VerifiedEvent>::new().unwrap();
        stage_reader(
            &verified,
            stages.clone(),
            |s| &mut s.verified,
            Box::new(move |b| vcodec.decode(b).ok().map(|v| v.event.occurred_at)),
        );
        let acodec = vigil_schemas::Codec::<vigil_schemas::Alert>::new().unwrap();
        stage_reader(
            &alerts,
            stages.clone(),
            |s| &mut s.alerts,
            Box::new(move |b| acodec.decode(b).ok().map(|a| a.first_seen)),
        );
    }
    let stage_report = || {
        if with_stages {
            report_stages(&stages);
        }
    };

    let mut ec = EmitterConfig::new(dir.path().join("spool"));
    ec.topic = raw.clone();
    let emitter = Emitter::start(
        &ec,
        &kafka,
        RecordSigner::new(signer, raw_schema).unwrap(),
        None,
    )
    .unwrap();

    // Warm-up: connections, schema caches, fetch sessions.
    let warm = paced(&emitter, &subjects, 50.0, 2).await;
    assert!(
        wait_for(&seen, warm as usize, Duration::from_secs(60)).await,
        "warm-up: {} of {warm} alerts arrived",
        seen.lock().unwrap().latencies_us.len()
    );
    take(&seen);
    tokio::time::sleep(Duration::from_millis(300)).await;
    *stages.lock().unwrap() = Stages::default();

    let low_rate = env("BENCH_LOW_RATE", 20) as f64;
    let n = paced(&emitter, &subjects, low_rate, env("BENCH_LOW_SECS", 15)).await;
    wait_for(&seen, n as usize, Duration::from_secs(30)).await;
    report("low", low_rate, n, take(&seen));
    stage_report();

    let p99_limit_ms = env("BENCH_SUSTAIN_P99_MS", 100) as f64;
    let step_secs = env("BENCH_STEP_SECS", 4);
    let step_max = env("BENCH_STEP_MAX", 20_000) as f64;
    let mut max_rate = 0.0_f64;
    let mut rate = env("BENCH_STEP_START", 100) as f64;
    while rate <= step_max {
        let n = paced(&emitter, &subjects, rate, step_secs).await;
        let all = wait_for(&seen, n as usize, Duration::from_secs(30)).await;
        let l = take(&seen);
        let got = l.len() as u64;
        let p99 = report("step", rate, n, l);
        stage_report();
        let ok = all && got == n && p99 <= p99_limit_ms;
        println!("step: {}", if ok { "sustained" } else { "backlog" });
        if !ok {
            // Let the backlog drain before the next phase.
            wait_for(&seen, n as usize, Duration::from_secs(60)).await;
            tokio::time::sleep(Duration::from_secs(2)).await;
            take(&seen);
            break;
        }
        max_rate = rate;
        rate *= 1.5;
    }
    println!(
        "max sustained ≈ {max_rate:.0} events/s (p99 ≤ {p99_limit_ms} ms, every alert delivered)"
    );

    let load = (max_rate * 0.7).max(1.0);
    let n = paced(&emitter, &subjects, load, env("BENCH_LOAD_SECS", 15)).await;
    wait_for(&seen, n as usize, Duration::from_secs(60)).await;
    report("70%-of-max", load, n, take(&seen));
    stage_report();
    println!("duplicate deliveries: {}", seen.lock().unwrap().duplicates);

    emitter.close();
    for stop in pipeline.stop(Duration::from_secs(30)).await {
        if let Err(e) = stop.outcome {
            eprintln!("{} stopped with an error: {e}", stop.service);
        }
    }
    let report = teardown(&ns, &endpoints, &topic_names).await;
    if let Some(Err(e)) = report.topics {
        eprintln!("teardown: {e}");
    }
}
