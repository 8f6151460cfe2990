//! `vigil demo`: pushes real signed events through every service against the local stack (or
//! the `VIGIL_*` services) and shows what each stage saw.
//!
//! One run lives in its own namespace: topics `vigil-demo-<runid>.*` created from the built-in
//! topology, consumer groups `vigil-demo-<runid>-*`, ClickHouse database `vigil_demo_<runid>`.
//! The verifier, correlator, alerter and audit sink run in this process as tokio tasks sharing
//! one shutdown switch (the same libraries `vigil run <service>` runs for real); the demo's own
//! HTTP receiver on 127.0.0.1:0 is the alerter's webhook. Three platforms (Rust, Python, JS
//! emitters) send normal traffic, then scripted attacks: a bad-signature burst for one key, use
//! of a key after its revocation, a replayed nonce, events from an unknown key and one poison
//! record. Every figure of the summary is read back from Kafka, the webhook receiver or
//! ClickHouse. Everything is bounded by a total deadline and per-stage deadlines; services are
//! stopped and the namespace deleted at the end (`--keep` keeps the topics and database).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use clap::Args;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_audit_sink::queries::SocQuery;
use vigil_audit_sink::verify::{VerifyOptions, verify_store};
use vigil_audit_sink::{AuditSink, AuditSinkConfig, AuditStore};
use vigil_consumer::ConsumerRuntime;
use vigil_consumer::key_registry::{KeyRegistry, KeyStatusWriter};
use vigil_producer::{Emitter, EmitterConfig};
use vigil_schemas::model::{Platform, now_micros};
use vigil_schemas::signing::PublicKey;
use vigil_schemas::topics::value_subject;
use vigil_schemas::{
    Alert, AvroRecord, Codec, EventClass, EventSigner, KeyId, KeyState, KeyStatus, Producer,
    RecordSigner, SchemaId, SchemaRegistry, SignedRecord, Status, Subject, VerificationEvent,
    VerifiedEvent,
};
use vigil_topology::{KafkaClientConfig, ReplicationOverride, Telemetry, Topology, TopologyAdmin};

/// Arguments of `vigil demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the summary as one JSON object; exit 1 naming every stage that did not see what it
    /// should.
    #[arg(long)]
    pub ci: bool,
    /// Normal events each of the three platforms sends.
    #[arg(long, default_value_t = 100)]
    pub events_per_platform: u32,
    /// Keep the run's topics and ClickHouse database afterwards (for querying them).
    #[arg(long)]
    pub keep: bool,
    /// Total time budget of the run in seconds (teardown included).
    #[arg(long, default_value_t = 110)]
    pub deadline_secs: u64,
}

/// Signed events with a bad signature sent for one key (the correlation threshold is 5).
const BRUTE_FORCE_EVENTS: u64 = 8;
/// Events signed by the revoked key after its revocation.
const REVOKED_EVENTS: u64 = 3;
/// Events signed by a key nobody registered.
const UNKNOWN_KEY_EVENTS: u64 = 2;
/// Poison (undecodable) records written to the raw topic.
const POISON_RECORDS: u64 = 1;
/// Alert rules the scripted attacks must fire.
const EXPECTED_RULES: [(&str, &str); 3] = [
    ("brute_force", "vigil-bad-signature-per-key"),
    ("revoked_key", "vigil-key-used-after-revocation"),
    ("replayed_nonce", "vigil-replayed-nonce"),
];
/// Partitions of each demo topic: enough to show partitioned chains, few enough to start fast.
const DEMO_PARTITIONS: i32 = 3;
/// The saved SOC queries whose answers the summary shows.
const SOC_QUERIES: [&str; 2] = ["failed_verifications_by_key_24h", "top_rejected_producers"];

/// The built-in rule pack, embedded so the demo runs from any directory.
const RULES: [(&str, &str); 6] = [
    (
        "cross-platform-auth.yml",
        include_str!("../../../rules/cross-platform-auth.yml"),
    ),
    (
        "key-revocation.yml",
        include_str!("../../../rules/key-revocation.yml"),
    ),
    (
        "key-rotation.yml",
        include_str!("../../../rules/key-rotation.yml"),
    ),
    ("replay.yml", include_str!("../../../rules/replay.yml")),
    (
        "signature-failures.yml",
        include_str!("../../../rules/signature-failures.yml"),
    ),
    (
        "unknown-key.yml",
        include_str!("../../../rules/unknown-key.yml"),
    ),
];

/// The names of one run.
#[derive(Debug, Clone)]
struct Names {
    runid: String,
    prefix: String,
    raw: String,
    verified: String,
    keys: String,
    alerts: String,
    dlq: String,
    all_topics: Vec<String>,
    database: String,
}

impl Names {
    fn topic(&self, builtin: &str) -> String {
        format!(
            "{}{}",
            self.prefix,
            builtin.strip_prefix("vigil").unwrap_or(builtin)
        )
    }
    fn group(&self, service: &str) -> String {
        format!("{}-{service}", self.prefix)
    }
}

/// One simulated platform.
struct PlatformSpec {
    platform: Platform,
    name: &'static str,
    service: &'static str,
    host: &'static str,
    key_id: &'static str,
}

const PLATFORMS: [PlatformSpec; 3] = [
    PlatformSpec {
        platform: Platform::Rust,
        name: "rust",
        service: "payments-api",
        host: "pay-01",
        key_id: "demo-rust",
    },
    PlatformSpec {
        platform: Platform::Python,
        name: "python",
        service: "fraud-scoring",
        host: "ml-02",
        key_id: "demo-python",
    },
    PlatformSpec {
        platform: Platform::Js,
        name: "js",
        service: "web-checkout",
        host: "edge-03",
        key_id: "demo-js",
    },
];

/// One verdict read back from the verified topic.
#[derive(Debug, Clone)]
struct Verdict {
    platform: String,
    state: String,
    reason: String,
}

/// One alert read back from the alerts topic.
#[derive(Debug, Clone)]
struct SeenAlert {
    rule_id: String,
    title: String,
    severity: String,
    fingerprint: String,
    count: i64,
}

/// One request the demo's webhook receiver got.
#[derive(Debug, Clone)]
struct Delivery {
    rule_id: String,
    fingerprint: String,
    signature_ok: bool,
}

/// What the demo's readers and receiver have seen so far.
#[derive(Debug, Default)]
struct Seen {
    verdicts: Vec<Verdict>,
    undecodable_verdicts: u64,
    dlq: Vec<(String, String)>,
    alerts: Vec<SeenAlert>,
    deliveries: Vec<Delivery>,
}

type Shared = Arc<Mutex<Seen>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Seen> {
    // A reader that panicked mid-push leaves consistent data behind: keep using it.
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A running service task.
struct Service {
    name: &'static str,
    task: JoinHandle<Result<(), String>>,
}

/// One stage's outcome.
#[derive(Debug, Clone)]
struct StageResult {
    stage: &'static str,
    ok: bool,
    detail: String,
    ms: u128,
}

/// The whole run's state.
struct Demo {
    args_ci: bool,
    per_platform: u64,
    started: Instant,
    names: Names,
    kafka: KafkaClientConfig,
    registry_url: String,
    clickhouse_url: String,
    workdir: tempfile::TempDir,
    stop: watch::Sender<bool>,
    services: Vec<Service>,
    background: Vec<JoinHandle<()>>,
    seen: Shared,
    sent: Arc<AtomicU64>,
    sent_by_platform: BTreeMap<String, u64>,
    stages: Vec<StageResult>,
    topics_created: bool,
    key_registry: Option<Arc<KeyRegistry>>,
    key_seeds: BTreeMap<&'static str, [u8; 32]>,
    sink_seed: [u8; 32],
    audit_rows: Option<u64>,
    verify: Option<Value>,
    soc: BTreeMap<&'static str, Value>,
    emitters: Vec<Arc<Emitter>>,
    schema: Option<SchemaId>,
}

fn seed() -> [u8; 32] {
    let mut s = [0_u8; 32];
    s[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    s[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    s
}

fn shutdown_future(
    rx: &watch::Sender<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut rx = rx.subscribe();
    async move {
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

/// Runs `vigil demo`.
pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let runid = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let prefix = format!("vigil-demo-{runid}");
    let mut names = Names {
        runid: runid.clone(),
        prefix,
        raw: String::new(),
        verified: String::new(),
        keys: String::new(),
        alerts: String::new(),
        dlq: String::new(),
        all_topics: Vec::new(),
        database: format!("vigil_demo_{runid}"),
    };
    names.raw = names.topic(vigil_schemas::topics::EVENTS_RAW);
    names.verified = names.topic(vigil_schemas::topics::EVENTS_VERIFIED);
    names.keys = names.topic(vigil_schemas::topics::KEYS);
    names.alerts = names.topic(vigil_schemas::topics::ALERTS);
    names.dlq = names.topic(vigil_schemas::topics::DLQ);
    let (stop, _) = watch::channel(false);
    let mut demo = Demo {
        args_ci: args.ci,
        per_platform: u64::from(args.events_per_platform.max(1)),
        started: Instant::now(),
        names,
        kafka: {
            let mut k = KafkaClientConfig::from_env();
            k.linger_ms = 1;
            k
        },
        registry_url: env_or("VIGIL_SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081"),
        clickhouse_url: env_or("VIGIL_CLICKHOUSE_URL", "http://127.0.0.1:8123"),
        workdir: tempfile::Builder::new()
            .prefix("vigil-demo-")
            .tempdir()
            .context("creating a work folder")?,
        stop,
        services: Vec::new(),
        background: Vec::new(),
        seen: Shared::default(),
        sent: Arc::new(AtomicU64::new(0)),
        sent_by_platform: BTreeMap::new(),
        stages: Vec::new(),
        topics_created: false,
        key_registry: None,
        key_seeds: PLATFORMS.iter().map(|p| (p.key_id, seed())).collect(),
        sink_seed: seed(),
        audit_rows: None,
        verify: None,
        soc: BTreeMap::new(),
        emitters: Vec::new(),
        schema: None,
    };
    eprintln!(
        "vigil demo: namespace {}.* (topics), {}-* (consumer groups), ClickHouse database {}",
        demo.names.prefix, demo.names.prefix, demo.names.database
    );
    eprintln!(
        "  services run in this process for the demo; `vigil run <service>` is how they run for real"
    );
    let total = Duration::from_secs(args.deadline_secs.max(30));
    // Teardown gets its own reserve so a stage that overran never leaves services behind.
    let stage_budget = total.saturating_sub(Duration::from_secs(12));
    let interrupted = tokio::select! {
        r = tokio::time::timeout(stage_budget, demo.stages()) => match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(format!("{e:#}")),
            Err(_) => Some(format!("total deadline of {}s reached", stage_budget.as_secs())),
        },
        () = vigil_consumer::shutdown_signal() => Some("interrupted".to_owned()),
    };
    if let Some(why) = &interrupted {
        demo.progress(&format!("stopped early: {why}"));
        demo.stages.push(StageResult {
            stage: "run",
            ok: false,
            detail: why.clone(),
            ms: 0,
        });
    }
    demo.teardown(args.keep).await;
    let summary = demo.summary();
    let failed: Vec<&StageResult> = demo.stages.iter().filter(|s| !s.ok).collect();
    if demo.args_ci {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_human(&summary);
    }
    for f in &failed {
        eprintln!("stage {} did not see what it should: {}", f.stage, f.detail);
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

impl Demo {
    fn progress(&self, line: &str) {
        eprintln!("[{:>5.1}s] {line}", self.started.elapsed().as_secs_f64());
    }

    fn record(&mut self, stage: &'static str, ok: bool, detail: String, since: Instant) {
        self.progress(&format!(
            "{} {stage}: {detail}",
            if ok { "ok  " } else { "FAIL" }
        ));
        self.stages.push(StageResult {
            stage,
            ok,
            detail,
            ms: since.elapsed().as_millis(),
        });
    }

    fn counts(&self) -> String {
        let s = lock(&self.seen);
        format!(
            "sent {} | verified {} | dlq {} | alerts {} | webhook deliveries {}",
            self.sent.load(Ordering::Relaxed),
            s.verdicts.len(),
            s.dlq.len(),
            s.alerts.len(),
            s.deliveries.len()
        )
    }

    /// Every stage in order; an `Err` ends the run early (teardown still runs).
    async fn stages(&mut self) -> anyhow::Result<()> {
        self.topology().await?;
        let writer = self.keys().await?;
        self.start_services().await?;
        self.normal_traffic().await?;
        self.attacks(&writer).await?;
        self.observe().await;
        self.audit_rows_settle().await;
        self.stop_services().await;
        self.audit_verify().await;
        self.soc_queries().await;
        Ok(())
    }

    /// Applies the built-in topology with every topic renamed into the run's namespace.
    async fn topology(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let mut topology = Topology::builtin(ReplicationOverride::from_env()?)?;
        for spec in &mut topology.topics {
            spec.name = self.names.topic(&spec.name);
            spec.partitions = spec.partitions.min(DEMO_PARTITIONS);
            spec.schema_subject = spec
                .schema_subject
                .as_ref()
                .map(|_| value_subject(&spec.name));
        }
        self.names.all_topics = topology.topics.iter().map(|t| t.name.clone()).collect();
        let admin = TopologyAdmin::connect(&self.kafka)?;
        let plan = tokio::time::timeout(Duration::from_secs(20), admin.plan(&topology))
            .await
            .map_err(|_| anyhow!("topology plan: no answer from Kafka within 20s"))??;
        self.topics_created = true;
        tokio::time::timeout(Duration::from_secs(20), admin.apply(&topology, &plan))
            .await
            .map_err(|_| anyhow!("topology apply: no answer from Kafka within 20s"))??;
        let n = self.names.all_topics.len();
        self.record(
            "topology",
            true,
            format!("{n} topics created under {}.*", self.names.prefix),
            t0,
        );
        Ok(())
    }

    /// Registers one Ed25519 key per platform in the run's key registry topic.
    async fn keys(&mut self) -> anyhow::Result<KeyStatusWriter> {
        let t0 = Instant::now();
        let writer =
            KeyStatusWriter::new(&self.names.keys, &self.registry_url, &self.kafka).await?;
        for p in &PLATFORMS {
            let signer = self.signer(p.key_id)?;
            writer
                .write(&key_status(p.key_id, signer.public_key(), KeyState::Active))
                .await?;
        }
        let ids: Vec<&str> = PLATFORMS.iter().map(|p| p.key_id).collect();
        self.record("keys", true, format!("registered {}", ids.join(", ")), t0);
        Ok(writer)
    }

    fn signer(&self, key_id: &str) -> anyhow::Result<EventSigner> {
        let seed = self
            .key_seeds
            .get(key_id)
            .ok_or_else(|| anyhow!("no seed for {key_id}"))?;
        Ok(EventSigner::from_seed(seed).with_key_id(KeyId::new(key_id)?))
    }

    /// Starts the webhook receiver, the readers and the four services; waits until all are ready.
    async fn start_services(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let hook_secret = format!("demo-hook-{}", self.names.runid);
        let secret_path = self.workdir.path().join("hook-secret");
        let token_path = self.workdir.path().join("api-token");
        std::fs::write(&secret_path, &hook_secret)?;
        std::fs::write(&token_path, format!("demo-api-{}", uuid::Uuid::new_v4()))?;
        let rules_dir = self.workdir.path().join("rules");
        std::fs::create_dir_all(&rules_dir)?;
        for (name, text) in RULES {
            std::fs::write(rules_dir.join(name), text)?;
        }

        let hook_addr = self.start_receiver(hook_secret.into_bytes()).await?;
        self.start_readers()?;

        // Verifier: built first so the demo can watch its key registry apply the revocation.
        let vc = vigil_verifier::VerifierConfig {
            kafka: self.kafka.clone(),
            schema_registry_url: self.registry_url.clone(),
            group_id: self.names.group("verifier"),
            raw_topic: self.names.raw.clone(),
            verified_topic: self.names.verified.clone(),
            keys_topic: self.names.keys.clone(),
            dlq_topic: self.names.dlq.clone(),
            retry_topics: Vec::new(),
            commit_interval_ms: 200,
            shutdown_timeout_ms: 5_000,
            key_registry_load_timeout_ms: 20_000,
            verifier_id: Some(format!("{}-verifier", self.names.prefix)),
            ..Default::default()
        };
        let vt = Telemetry::new();
        let (verifier, registry_task) =
            vigil_verifier::build(&vc, &vt).await.context("verifier")?;
        self.key_registry = Some(Arc::clone(verifier.key_registry()));
        let runtime = ConsumerRuntime::new(vc.runtime_config(), &vc.kafka, &vt)
            .context("verifier runtime")?;
        let shutdown = shutdown_future(&self.stop);
        let mut readiness = vec![("verifier", vt.health.clone())];
        self.services.push(Service {
            name: "verifier",
            task: tokio::spawn(async move {
                let r = runtime.run(verifier, shutdown).await;
                registry_task.abort();
                r.map(|_| ()).map_err(|e| format!("{e:#}"))
            }),
        });

        let cc = vigil_correlator::CorrelatorConfig {
            kafka: self.kafka.clone(),
            schema_registry_url: self.registry_url.clone(),
            group_id: self.names.group("correlator"),
            verified_topic: self.names.verified.clone(),
            alerts_topic: self.names.alerts.clone(),
            dlq_topic: self.names.dlq.clone(),
            // Like the verifier's: the demo's namespace has no retry topics, and the shared
            // vigil.retry.* must not receive (or be read for) the demo's records.
            retry_topics: Vec::new(),
            rules_dir,
            reload_poll_ms: 0,
            rebuild_on_start: false,
            commit_interval_ms: 200,
            shutdown_timeout_ms: 5_000,
            ..Default::default()
        };
        cc.validate()?;
        let ct = Telemetry::new();
        readiness.push(("correlator", ct.health.clone()));
        let shutdown = shutdown_future(&self.stop);
        self.services.push(Service {
            name: "correlator",
            task: tokio::spawn(async move {
                vigil_correlator::run(&cc, &ct, shutdown)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            }),
        });

        let yaml = format!(
            "schema_registry_url: {reg:?}\ngroup_id: {group:?}\nalerts_topic: {alerts:?}\ndlq_topic: {dlq:?}\n\
             state_topic: {state:?}\n\
             commit_interval_ms: 200\n\
             api: {{listen: \"127.0.0.1:0\", bearer_token_file: {token:?}}}\n\
             delivery: {{max_attempts: 4, initial_backoff_ms: 50, max_backoff_ms: 500}}\n\
             receivers:\n  - {{name: demo-webhook, kind: webhook, url: {url:?}, secret_file: {secret:?}, \
             rate_limit_per_minute: 6000, rate_limit_burst: 100, timeout_ms: 2000}}\n\
             route: {{receivers: [demo-webhook], dedup_window_ms: 300000}}\n",
            reg = self.registry_url,
            group = self.names.group("alerter"),
            alerts = self.names.alerts,
            dlq = self.names.dlq,
            state = self.names.topic(vigil_alerter::STATE_TOPIC),
            token = token_path.display().to_string(),
            url = format!("http://{hook_addr}/hooks/vigil"),
            secret = secret_path.display().to_string(),
        );
        let mut ac = vigil_alerter::AlerterConfig::from_yaml(&yaml, "<demo alerter config>")?;
        ac.kafka = self.kafka.clone();
        ac.validate("<demo alerter config>")?;
        let at = Telemetry::new();
        readiness.push(("alerter", at.health.clone()));
        let alerter = vigil_alerter::build(&ac, &at).await.context("alerter")?;
        let shutdown = shutdown_future(&self.stop);
        self.services.push(Service {
            name: "alerter",
            task: tokio::spawn(async move {
                alerter
                    .run(&ac, &at, shutdown)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            }),
        });

        let sc = AuditSinkConfig {
            topic: self.names.verified.clone(),
            group: self.names.group("audit-sink"),
            database: self.names.database.clone(),
            flush_interval_ms: 200,
            digest_every_events: 100,
            digest_interval_ms: 2_000,
            dlq_topic: self.names.dlq.clone(),
            ..AuditSinkConfig::default()
        };
        let st = Telemetry::new();
        readiness.push(("audit-sink", st.health.clone()));
        let metrics = vigil_audit_sink::metrics::SinkMetrics::register(&st.registry)?;
        let store = AuditStore::connect(&self.clickhouse_url, &self.names.database)?;
        let sink = AuditSink::new(
            sc,
            self.kafka.clone(),
            store,
            EventSigner::from_seed(&self.sink_seed),
            metrics,
            st.health.clone(),
        )?;
        let shutdown = shutdown_future(&self.stop);
        self.services.push(Service {
            name: "audit-sink",
            task: tokio::spawn(async move {
                sink.run(shutdown)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            }),
        });

        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let waiting: Vec<&str> = readiness
                .iter()
                .filter(|(_, h)| !h.is_ready())
                .map(|(n, _)| *n)
                .collect();
            if waiting.is_empty() {
                break;
            }
            if let Some(dead) = self.services.iter().find(|s| s.task.is_finished()) {
                bail!("{} stopped during start-up", dead.name);
            }
            if Instant::now() > deadline {
                bail!("not ready after 40s: {}", waiting.join(", "));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.record(
            "services",
            true,
            format!(
                "verifier, correlator, alerter, audit-sink ready; webhook receiver on {hook_addr}"
            ),
            t0,
        );
        Ok(())
    }

    /// Starts the demo's webhook receiver; returns its address.
    async fn start_receiver(&mut self, secret: Vec<u8>) -> anyhow::Result<SocketAddr> {
        let state = Arc::new((self.seen.clone(), secret));
        let app = axum::Router::new().fallback(receive).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        self.background.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!(error = %e, "demo webhook receiver stopped");
            }
        }));
        Ok(addr)
    }

    /// Reads the verified, DLQ and alerts topics from the beginning into `seen`.
    fn start_readers(&mut self) -> anyhow::Result<()> {
        let verified_codec = Arc::new(Codec::<VerifiedEvent>::new()?);
        let seen = self.seen.clone();
        let h = self.reader(&self.names.verified, move |m| {
            let decoded = m
                .payload()
                .and_then(|v| vigil_schemas::wire::split_frame(v).ok())
                .and_then(|(_, body)| verified_codec.decode(body).ok());
            let mut s = lock(&seen);
            match decoded {
                Some(v) => s.verdicts.push(Verdict {
                    platform: v.event.producer.platform.as_str().to_owned(),
                    state: v.state.as_str().to_owned(),
                    reason: v.reason.unwrap_or_default(),
                }),
                None => s.undecodable_verdicts += 1,
            }
        })?;
        self.background.push(h);
        let seen = self.seen.clone();
        let h = self.reader(&self.names.dlq, move |m| {
            let header = |name: &str| {
                m.headers()
                    .and_then(|hs| hs.iter().find(|h| h.key == name).and_then(|h| h.value))
                    .map(|v| String::from_utf8_lossy(v).into_owned())
                    .unwrap_or_default()
            };
            let entry = (
                header(vigil_consumer::dead_letter::ERROR_CLASS),
                header(vigil_consumer::dead_letter::ERROR),
            );
            lock(&seen).dlq.push(entry);
        })?;
        self.background.push(h);
        let alert_codec = Arc::new(Codec::<Alert>::new()?);
        let seen = self.seen.clone();
        let h = self.reader(&self.names.alerts, move |m| {
            let decoded = m
                .payload()
                .and_then(|v| vigil_schemas::wire::split_frame(v).ok())
                .and_then(|(_, body)| alert_codec.decode(body).ok());
            if let Some(a) = decoded {
                lock(&seen).alerts.push(SeenAlert {
                    rule_id: a.rule_id,
                    title: a.rule_title,
                    severity: a.severity_id.as_str().to_owned(),
                    fingerprint: a.fingerprint,
                    count: a.count,
                });
            }
        })?;
        self.background.push(h);
        Ok(())
    }

    fn reader(
        &self,
        topic: &str,
        on: impl Fn(&BorrowedMessage<'_>) + Send + Sync + 'static,
    ) -> anyhow::Result<JoinHandle<()>> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("group.id", format!("{}-reader-{topic}", self.names.prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "50");
        let consumer: StreamConsumer = c.create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..DEMO_PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        }
        consumer.assign(&tpl)?;
        let mut stop = self.stop.subscribe();
        Ok(tokio::spawn(async move {
            loop {
                let m = tokio::select! {
                    m = consumer.recv() => m,
                    _ = stop.changed() => break,
                };
                match m {
                    Ok(m) => on(&m),
                    Err(e) => {
                        tracing::warn!(error = %e, "demo reader");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }))
    }

    fn add_sent(&mut self, platform: &str, n: u64) {
        *self
            .sent_by_platform
            .entry(platform.to_owned())
            .or_default() += n;
        self.sent.fetch_add(n, Ordering::Relaxed);
    }

    /// Each platform's emitter sends its normal traffic; waits until the verifier judged it all.
    async fn normal_traffic(&mut self) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let schema = SchemaRegistry::new(&self.registry_url)?
            .register(
                &value_subject(&self.names.raw),
                <VerificationEvent as AvroRecord>::SCHEMA_JSON,
            )
            .await
            .context("registering the raw event schema")?;
        for (idx, p) in PLATFORMS.iter().enumerate() {
            let mut ec = EmitterConfig::new(self.workdir.path().join(format!("spool-{}", p.name)));
            ec.topic = self.names.raw.clone();
            ec.close_timeout_ms = 5_000;
            let signer = RecordSigner::new(self.signer(p.key_id)?, schema)?;
            let emitter = Arc::new(Emitter::start(&ec, &self.kafka, signer, None)?);
            for i in 0..self.per_platform {
                emitter.emit(normal_event(p, idx as u64, i))?;
            }
            self.emitters.push(emitter);
            self.add_sent(p.name, self.per_platform);
        }
        let emitters = self.emitters.clone();
        let reports = tokio::task::spawn_blocking(move || {
            emitters
                .iter()
                .map(|e| e.flush(Duration::from_secs(20)))
                .collect::<Vec<_>>()
        })
        .await?;
        let pending: u64 = reports.iter().map(|r| r.in_flight + r.spooled).sum();
        let expected = self.per_platform * PLATFORMS.len() as u64;
        let ok = self
            .wait(
                "verifier judges the normal traffic",
                Duration::from_secs(30),
                |s| s.verdicts.len() as u64 >= expected,
            )
            .await;
        let detail = format!(
            "{expected} events from 3 emitters (rust, python, js); {pending} left unacknowledged; {}",
            self.counts()
        );
        self.record("normal_traffic", ok && pending == 0, detail, t0);
        self.schema = Some(schema);
        Ok(())
    }

    /// Sends the scripted attacks: a bad-signature burst, a replayed nonce, unknown-key events,
    /// use of a key after its revocation, and one poison record.
    async fn attacks(&mut self, writer: &KeyStatusWriter) -> anyhow::Result<()> {
        let t0 = Instant::now();
        let schema = self
            .schema
            .ok_or_else(|| anyhow!("raw schema not registered"))?;
        let mut pc = ClientConfig::new();
        pc.set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("linger.ms", "1")
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "20000");
        let producer: FutureProducer = pc.create()?;
        let raw = self.names.raw.clone();

        // Brute force: someone without the python key signs under its key id.
        let python = &PLATFORMS[1];
        let forger = RecordSigner::new(
            EventSigner::generate().with_key_id(KeyId::new(python.key_id)?),
            schema,
        )?;
        for i in 0..BRUTE_FORCE_EVENTS {
            let e = VerificationEvent::new(
                EventClass::Authorization,
                "authorize",
                Status::Success,
                Producer::new(python.platform, "0.1.0", python.service).with_host(python.host),
            )
            .with_subject(
                Subject::principal(format!("svc-batch-{i}"))
                    .with_key_id(python.key_id)
                    .with_client_ip("203.0.113.66"),
            )
            .with_message("forged: signed with a key the registry does not hold");
            send_signed(&producer, &raw, &forger.sign(&e)?).await?;
        }
        self.add_sent(python.name, BRUTE_FORCE_EVENTS);

        // Replay: one correctly signed record sent twice (same nonce, same bytes).
        let rust = &PLATFORMS[0];
        let replayer = RecordSigner::new(self.signer(rust.key_id)?, schema)?;
        let record =
            replayer.sign(&normal_event(rust, 0, 0).with_message("captured and replayed"))?;
        send_signed(&producer, &raw, &record).await?;
        send_signed(&producer, &raw, &record).await?;
        self.add_sent(rust.name, 2);

        // Events signed by a key nobody registered.
        let rogue = RecordSigner::new(
            EventSigner::generate().with_key_id(KeyId::new("demo-rogue")?),
            schema,
        )?;
        for i in 0..UNKNOWN_KEY_EVENTS {
            let e = VerificationEvent::new(
                EventClass::SignatureVerification,
                "verify",
                Status::Success,
                Producer::new(Platform::Other, "0.0.1", "unknown-tool").with_host("laptop-17"),
            )
            .with_subject(
                Subject::principal(format!("intruder-{i}"))
                    .with_key_id("demo-rogue")
                    .with_client_ip("198.51.100.9"),
            );
            send_signed(&producer, &raw, &rogue.sign(&e)?).await?;
        }
        self.add_sent("other", UNKNOWN_KEY_EVENTS);

        // Revocation of the js key, then the js platform keeps signing with it.
        let js = &PLATFORMS[2];
        let mut revoked = key_status(
            js.key_id,
            self.signer(js.key_id)?.public_key(),
            KeyState::Revoked,
        );
        revoked.revoked_at = Some(now_micros());
        revoked.reason = Some("key found in a public build log".to_owned());
        revoked.updated_by = "vigil demo".to_owned();
        writer.write(&revoked).await?;
        let registry = self
            .key_registry
            .clone()
            .ok_or_else(|| anyhow!("verifier key registry missing"))?;
        let deadline = Instant::now() + Duration::from_secs(15);
        while !registry
            .get(js.key_id)
            .is_some_and(|k| k.status.state == KeyState::Revoked)
        {
            if Instant::now() > deadline {
                bail!(
                    "the verifier did not apply the revocation of {} within 15s",
                    js.key_id
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Events after the revocation instant (microsecond clock) are judged against it.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let emitter = self
            .emitters
            .get(2)
            .cloned()
            .ok_or_else(|| anyhow!("js emitter missing"))?;
        for i in 0..REVOKED_EVENTS {
            emitter.emit(normal_event(js, 2, 1_000 + i).with_message("signed after revocation"))?;
        }
        let report =
            tokio::task::spawn_blocking(move || emitter.flush(Duration::from_secs(15))).await?;
        self.add_sent(js.name, REVOKED_EVENTS);

        // Poison: bytes that are neither framed Avro nor signed.
        producer
            .send(
                FutureRecord::to(&raw)
                    .key("poison")
                    .payload(&b"\x00\x00\x00\xff\xffnot avro, not signed"[..]),
                Duration::from_secs(20),
            )
            .await
            .map_err(|(e, _)| anyhow!("sending the poison record: {e}"))?;
        self.sent.fetch_add(POISON_RECORDS, Ordering::Relaxed);
        let detail = format!(
            "{BRUTE_FORCE_EVENTS} forged signatures for {}, 1 nonce replayed, {UNKNOWN_KEY_EVENTS} unknown-key events, \
             {REVOKED_EVENTS} events after revoking {}, {POISON_RECORDS} poison record",
            python.key_id, js.key_id
        );
        self.record(
            "attacks",
            report.in_flight + report.spooled == 0,
            detail,
            t0,
        );
        Ok(())
    }

    /// Polls `seen` until `done` holds or `timeout` passes, printing progress every 2 s.
    async fn wait(&self, what: &str, timeout: Duration, done: impl Fn(&Seen) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut last = Instant::now();
        loop {
            if done(&lock(&self.seen)) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            if last.elapsed() >= Duration::from_secs(2) {
                self.progress(&format!("{what}: {}", self.counts()));
                last = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn expected_verdicts(&self) -> u64 {
        self.sent
            .load(Ordering::Relaxed)
            .saturating_sub(POISON_RECORDS)
    }

    /// Waits for every verdict, the DLQ entry, the expected alerts and their deliveries.
    async fn observe(&mut self) {
        let t0 = Instant::now();
        let expected = self.expected_verdicts();
        let complete = |s: &Seen| {
            let rules: BTreeSet<&str> = s.alerts.iter().map(|a| a.rule_id.as_str()).collect();
            s.verdicts.len() as u64 >= expected
                && s.dlq.len() as u64 >= POISON_RECORDS
                && EXPECTED_RULES.iter().all(|(_, r)| rules.contains(r))
                && undelivered(s).is_empty()
        };
        self.wait("pipeline", Duration::from_secs(40), complete)
            .await;
        // A short quiet period catches anything extra (a second DLQ entry, a late alert).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let s = lock(&self.seen);
        let n = self.per_platform * PLATFORMS.len() as u64;
        let by_state = count_by(s.verdicts.iter().map(|v| v.state.as_str()));
        let want: BTreeMap<&str, u64> = [
            ("valid", n + 1),
            ("bad", BRUTE_FORCE_EVENTS + 1),
            ("revoked", REVOKED_EVENTS),
            ("untrusted", UNKNOWN_KEY_EVENTS),
        ]
        .into_iter()
        .collect();
        let replays = s
            .verdicts
            .iter()
            .filter(|v| v.reason == "nonce replayed")
            .count();
        let verifier_ok = s.verdicts.len() as u64 == expected
            && s.undecodable_verdicts == 0
            && replays == 1
            && want
                .iter()
                .all(|(k, v)| by_state.get(*k).copied().unwrap_or(0) == *v);
        let verifier_detail = format!(
            "{} verdicts (expected {expected}): {by_state:?}, replays {replays}",
            s.verdicts.len()
        );
        let rules: BTreeSet<&str> = s.alerts.iter().map(|a| a.rule_id.as_str()).collect();
        let missing: Vec<&str> = EXPECTED_RULES
            .iter()
            .filter(|(_, r)| !rules.contains(r))
            .map(|(_, r)| *r)
            .collect();
        let alerts_detail = if missing.is_empty() {
            format!(
                "{} alerts, rules {}",
                s.alerts.len(),
                rules.iter().copied().collect::<Vec<_>>().join(", ")
            )
        } else {
            format!("missing alerts of {}", missing.join(", "))
        };
        let undelivered = undelivered(&s);
        let fingerprints: BTreeSet<&str> =
            s.alerts.iter().map(|a| a.fingerprint.as_str()).collect();
        let bad_sigs = s.deliveries.iter().filter(|d| !d.signature_ok).count();
        let webhook_ok = undelivered.is_empty() && bad_sigs == 0 && !fingerprints.is_empty();
        let webhook_detail = format!(
            "{} deliveries for {} distinct alerts, {} undelivered, {bad_sigs} with a bad HMAC",
            s.deliveries.len(),
            fingerprints.len(),
            undelivered.len()
        );
        let dlq_classes = count_by(s.dlq.iter().map(|(c, _)| c.as_str()));
        let dlq_ok = s.dlq.len() as u64 == POISON_RECORDS
            && dlq_classes.get("bad_data").copied() == Some(POISON_RECORDS);
        let dlq_detail = format!(
            "{} entries {dlq_classes:?} (expected {POISON_RECORDS} bad_data)",
            s.dlq.len()
        );
        drop(s);
        self.record("verifier", verifier_ok, verifier_detail, t0);
        self.record("alerts", missing.is_empty(), alerts_detail, t0);
        self.record("webhook", webhook_ok, webhook_detail, t0);
        self.record("dlq", dlq_ok, dlq_detail, t0);
    }

    fn store(&self) -> anyhow::Result<AuditStore> {
        Ok(AuditStore::connect(
            &self.clickhouse_url,
            &self.names.database,
        )?)
    }

    /// Waits until ClickHouse holds one audit row per verdict.
    async fn audit_rows_settle(&mut self) {
        let t0 = Instant::now();
        let verdicts = lock(&self.seen).verdicts.len() as u64;
        let deadline = Instant::now() + Duration::from_secs(25);
        let mut rows = None;
        let mut last = Instant::now();
        let mut error = None;
        while Instant::now() < deadline {
            match self.count_rows().await {
                Ok(n) => {
                    rows = Some(n);
                    error = None;
                    if n >= verdicts {
                        break;
                    }
                }
                Err(e) => error = Some(format!("{e:#}")),
            }
            if last.elapsed() >= Duration::from_secs(2) {
                self.progress(&format!("audit rows {} of {verdicts}", rows.unwrap_or(0)));
                last = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        self.audit_rows = rows;
        let ok = rows == Some(verdicts);
        let mut detail = format!(
            "{} rows in {}.audit_events for {verdicts} verdicts",
            rows.unwrap_or(0),
            self.names.database
        );
        if let Some(e) = error {
            detail.push_str(&format!(" (last error: {e})"));
        }
        self.record("audit_rows", ok, detail, t0);
    }

    async fn count_rows(&self) -> anyhow::Result<u64> {
        let store = self.store()?;
        let rows = query_json(&store, "SELECT count() AS n FROM audit_events", None).await?;
        rows.first()
            .and_then(|r| as_u64(&r["n"]))
            .ok_or_else(|| anyhow!("count() returned nothing"))
    }

    /// Stops every service through the shared switch (the audit sink writes its final digest).
    async fn stop_services(&mut self) {
        let t0 = Instant::now();
        self.stop.send_replace(true);
        let mut errors = Vec::new();
        for s in self.services.drain(..) {
            match tokio::time::timeout(Duration::from_secs(15), s.task).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => errors.push(format!("{}: {e}", s.name)),
                Ok(Err(e)) => errors.push(format!("{}: {e}", s.name)),
                Err(_) => errors.push(format!("{}: did not stop within 15s", s.name)),
            }
        }
        let ok = errors.is_empty();
        let detail = if ok {
            "all four services stopped cleanly".to_owned()
        } else {
            errors.join("; ")
        };
        self.record("shutdown", ok, detail, t0);
    }

    /// `vigil audit verify` over the run's database: chains, signed digests, event signatures.
    async fn audit_verify(&mut self) {
        let t0 = Instant::now();
        let result = async {
            let store = self.store()?;
            let mut producer_keys = BTreeMap::new();
            for p in &PLATFORMS {
                producer_keys.insert(p.key_id.to_owned(), *self.signer(p.key_id)?.public_key());
            }
            let sink_key: PublicKey = *EventSigner::from_seed(&self.sink_seed).public_key();
            let opts = VerifyOptions {
                sink_key,
                producer_keys,
                anchored: false,
                max_digest_lag_micros: 300_000_000,
                now_micros: now_micros(),
            };
            let report = tokio::time::timeout(
                Duration::from_secs(20),
                verify_store(&store, &self.names.verified, opts, None, None, None),
            )
            .await
            .map_err(|_| anyhow!("no answer within 20s"))??;
            anyhow::Ok(report)
        }
        .await;
        match result {
            Ok(report) => {
                let rows: u64 = report.partitions.values().map(|p| p.rows).sum();
                let clean = report.is_clean();
                self.verify = Some(json!({
                    "clean": clean,
                    "rows": rows,
                    "partitions": report.partitions.len(),
                    "digests": report.digests,
                    "signatures_valid": report.signatures_valid,
                    "signatures_unchecked": report.signatures_unchecked,
                    "signatures_skipped": report.signatures_skipped,
                    "findings": report.total_findings,
                    "report": report.to_string(),
                }));
                let detail = format!(
                    "{} ({rows} rows, {} digests, {} signatures re-verified, {} rejected rows skipped, {} findings)",
                    if clean { "clean" } else { "BROKEN" },
                    report.digests,
                    report.signatures_valid,
                    report.signatures_skipped,
                    report.total_findings
                );
                self.record("audit_verify", clean && report.digests > 0, detail, t0);
            }
            Err(e) => {
                self.verify = Some(json!({"clean": false, "error": format!("{e:#}")}));
                self.record("audit_verify", false, format!("{e:#}"), t0);
            }
        }
    }

    /// Runs two saved SOC queries from the audit sink's pack against the run's database.
    async fn soc_queries(&mut self) {
        let t0 = Instant::now();
        let mut errors = Vec::new();
        for name in SOC_QUERIES {
            let Some(q) = SocQuery::named(name) else {
                errors.push(format!("{name}: not in the pack"));
                continue;
            };
            let limit = q.sql.contains("{limit:UInt32}").then_some(5);
            let answer = match self.store() {
                Ok(store) => query_json(&store, &q.statement(), limit).await,
                Err(e) => Err(e),
            };
            match answer {
                Ok(rows) => {
                    self.soc
                        .insert(name, json!({"question": q.question(), "rows": rows}));
                }
                Err(e) => errors.push(format!("{name}: {e:#}")),
            }
        }
        let by_key = self
            .soc
            .get("failed_verifications_by_key_24h")
            .map(|v| v["rows"].clone())
            .unwrap_or_default();
        let row = |key: &str| {
            by_key
                .as_array()
                .and_then(|rows| rows.iter().find(|r| r["key_id"].as_str() == Some(key)))
                .cloned()
        };
        let python_bad = row("demo-python")
            .and_then(|r| as_u64(&r["bad"]))
            .unwrap_or(0);
        let js_revoked = row("demo-js")
            .and_then(|r| as_u64(&r["revoked"]))
            .unwrap_or(0);
        let ok =
            errors.is_empty() && python_bad == BRUTE_FORCE_EVENTS && js_revoked == REVOKED_EVENTS;
        let mut detail = format!(
            "failed verifications by key: demo-python bad {python_bad}, demo-js revoked {js_revoked}"
        );
        if !errors.is_empty() {
            detail.push_str(&format!("; errors: {}", errors.join("; ")));
        }
        self.record("soc_queries", ok, detail, t0);
    }

    /// Stops whatever still runs and deletes the run's namespace (unless `keep`).
    async fn teardown(&mut self, keep: bool) {
        self.stop.send_replace(true);
        for s in self.services.drain(..) {
            let abort = s.task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), s.task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        let emitters: Vec<Arc<Emitter>> = self.emitters.drain(..).collect();
        let closing = tokio::task::spawn_blocking(move || {
            for e in &emitters {
                e.close();
            }
        });
        let _ = tokio::time::timeout(Duration::from_secs(6), closing).await;
        for h in self.background.drain(..) {
            h.abort();
        }
        if keep {
            self.progress(&format!(
                "kept topics {}.* and database {} (--keep)",
                self.names.prefix, self.names.database
            ));
            return;
        }
        let mut removed = Vec::new();
        if self.topics_created {
            match self.delete_topics().await {
                Ok(()) => removed.push(format!("{} topics", self.names.all_topics.len())),
                Err(e) => self.progress(&format!("could not delete the demo topics: {e:#}")),
            }
        }
        match tokio::time::timeout(Duration::from_secs(10), self.delete_subjects()).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => removed.push(format!("{n} schema subjects")),
            Ok(Err(e)) => self.progress(&format!(
                "could not delete the demo's schema subjects: {e:#}"
            )),
            Err(_) => {
                self.progress("could not delete the demo's schema subjects: no answer within 10s")
            }
        }
        let drop_db = async {
            let store = self.store()?;
            store
                .client()
                .query_raw(&format!("DROP DATABASE IF EXISTS {}", self.names.database))
                .execute()
                .await?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(Duration::from_secs(10), drop_db).await {
            Ok(Ok(())) => removed.push(format!("database {}", self.names.database)),
            Ok(Err(e)) => self.progress(&format!("could not drop {}: {e:#}", self.names.database)),
            Err(_) => self.progress(&format!(
                "could not drop {}: no answer within 10s",
                self.names.database
            )),
        }
        self.progress(&format!(
            "stopped all services; removed {}",
            removed.join(" and ")
        ));
    }

    /// Deletes the registry subjects of the run's topics (`<prefix>.*-value`), soft then
    /// permanently as Confluent requires; returns how many were deleted.
    async fn delete_subjects(&self) -> anyhow::Result<usize> {
        let http = reqwest::Client::new();
        let base = self.registry_url.trim_end_matches('/');
        let subjects: Vec<String> = http
            .get(format!("{base}/subjects"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let ours: Vec<&String> = subjects
            .iter()
            .filter(|s| s.starts_with(&format!("{}.", self.names.prefix)))
            .collect();
        for subject in &ours {
            // Subject names of the run's topics are [a-z0-9.-]: nothing to escape in the path.
            for permanent in [false, true] {
                http.delete(format!("{base}/subjects/{subject}?permanent={permanent}"))
                    .send()
                    .await?
                    .error_for_status()?;
            }
        }
        Ok(ours.len())
    }

    async fn delete_topics(&self) -> anyhow::Result<()> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.kafka.bootstrap_servers);
        let admin: AdminClient<DefaultClientContext> = c.create()?;
        let names: Vec<&str> = self.names.all_topics.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            tokio::time::timeout(Duration::from_secs(15), admin.delete_topics(&names, &opts))
                .await
                .map_err(|_| anyhow!("no answer within 15s"))??;
        for r in results {
            r.map_err(|(t, e)| anyhow!("{t}: {e}"))?;
        }
        Ok(())
    }

    /// The summary, built from what the readers, the receiver and ClickHouse returned.
    fn summary(&self) -> Value {
        let s = lock(&self.seen);
        let mut platforms = serde_json::Map::new();
        let mut names: BTreeSet<String> = self.sent_by_platform.keys().cloned().collect();
        names.extend(s.verdicts.iter().map(|v| v.platform.clone()));
        for p in names {
            let states = count_by(
                s.verdicts
                    .iter()
                    .filter(|v| v.platform == p)
                    .map(|v| v.state.as_str()),
            );
            let get = |k: &str| states.get(k).copied().unwrap_or(0);
            platforms.insert(
                p.clone(),
                json!({
                    "sent": self.sent_by_platform.get(&p).copied().unwrap_or(0),
                    "verified": states.values().sum::<u64>(),
                    "valid": get("valid"),
                    "bad": get("bad"),
                    "revoked": get("revoked"),
                    "untrusted": get("untrusted"),
                }),
            );
        }
        let mut rules: BTreeMap<&str, (String, String, u64, BTreeSet<&str>)> = BTreeMap::new();
        for a in &s.alerts {
            let e = rules
                .entry(a.rule_id.as_str())
                .or_insert_with(|| (a.title.clone(), a.severity.clone(), 0, BTreeSet::new()));
            e.2 += 1;
            e.3.insert(a.fingerprint.as_str());
        }
        let deliveries_by_rule = count_by(s.deliveries.iter().map(|d| d.rule_id.as_str()));
        let alerts: Vec<Value> = rules
            .iter()
            .map(|(id, (title, severity, fired, fps))| {
                json!({
                    "rule_id": id,
                    "title": title,
                    "severity": severity,
                    "fired": fired,
                    "distinct": fps.len(),
                    "webhook_deliveries": deliveries_by_rule.get(*id).copied().unwrap_or(0),
                })
            })
            .collect();
        let max_count = s.alerts.iter().map(|a| a.count).max().unwrap_or(0);
        let expected: serde_json::Map<String, Value> = EXPECTED_RULES
            .iter()
            .map(|(attack, rule)| {
                (
                    (*attack).to_owned(),
                    json!({"rule_id": rule, "fired": rules.contains_key(rule)}),
                )
            })
            .collect();
        let failed: Vec<Value> = self
            .stages
            .iter()
            .filter(|st| !st.ok)
            .map(|st| json!({"stage": st.stage, "detail": st.detail}))
            .collect();
        json!({
            "ok": failed.is_empty(),
            "failed_stages": failed,
            "namespace": {
                "run_id": self.names.runid,
                "topics": self.names.all_topics,
                "consumer_group_prefix": self.names.prefix,
                "clickhouse_database": self.names.database,
            },
            "duration_ms": self.started.elapsed().as_millis() as u64,
            "stages": self.stages.iter().map(|st| json!({"stage": st.stage, "ok": st.ok, "ms": st.ms as u64, "detail": st.detail})).collect::<Vec<_>>(),
            "events": {
                "sent": self.sent.load(Ordering::Relaxed),
                "verified": s.verdicts.len(),
                "by_state": count_by(s.verdicts.iter().map(|v| v.state.as_str())),
                "by_reason": count_by(s.verdicts.iter().filter(|v| !v.reason.is_empty()).map(|v| v.reason.as_str())),
                "per_platform": platforms,
            },
            "attacks": {
                "brute_force_events": BRUTE_FORCE_EVENTS,
                "replayed_records": 1,
                "revoked_key_events": REVOKED_EVENTS,
                "unknown_key_events": UNKNOWN_KEY_EVENTS,
                "poison_records": POISON_RECORDS,
            },
            "alerts": {
                "fired": s.alerts.len(),
                "largest_count": max_count,
                "by_rule": alerts,
                "expected": expected,
            },
            "webhook": {
                "deliveries": s.deliveries.len(),
                "hmac_valid": s.deliveries.iter().filter(|d| d.signature_ok).count(),
                "distinct_alerts": s.alerts.iter().map(|a| a.fingerprint.as_str()).collect::<BTreeSet<_>>().len(),
                "undelivered_alerts": undelivered(&s).len(),
            },
            "dlq": {
                "entries": s.dlq.len(),
                "by_class": count_by(s.dlq.iter().map(|(c, _)| c.as_str())),
                "errors": s.dlq.iter().map(|(_, e)| e.as_str()).collect::<Vec<_>>(),
            },
            "audit": {
                "rows": self.audit_rows,
                "verify": self.verify.clone().unwrap_or(Value::Null),
            },
            "soc_queries": self.soc,
        })
    }
}

/// Alert fingerprints not yet delivered to the webhook with a valid HMAC.
fn undelivered(s: &Seen) -> BTreeSet<String> {
    let delivered: BTreeSet<&str> = s
        .deliveries
        .iter()
        .filter(|d| d.signature_ok)
        .map(|d| d.fingerprint.as_str())
        .collect();
    s.alerts
        .iter()
        .filter(|a| !delivered.contains(a.fingerprint.as_str()))
        .map(|a| a.fingerprint.clone())
        .collect()
}

fn count_by<'a>(items: impl Iterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.to_owned()).or_default() += 1;
    }
    m
}

fn as_u64(v: &Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

/// Runs `sql` and returns its rows as JSON objects.
async fn query_json(
    store: &AuditStore,
    sql: &str,
    limit: Option<u32>,
) -> anyhow::Result<Vec<Value>> {
    let mut q = store.client().query_raw(sql);
    if let Some(l) = limit {
        q = q.param("limit", l);
    }
    let fetch = async {
        let bytes = q.fetch_bytes("JSONEachRow")?.collect().await?;
        anyhow::Ok(bytes)
    };
    let bytes = tokio::time::timeout(Duration::from_secs(15), fetch)
        .await
        .map_err(|_| anyhow!("ClickHouse did not answer within 15s"))??;
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).with_context(|| format!("ClickHouse row {l:?}")))
        .collect()
}

async fn send_signed(p: &FutureProducer, topic: &str, r: &SignedRecord) -> anyhow::Result<()> {
    let mut headers = OwnedHeaders::new();
    for (k, v) in &r.headers {
        headers = headers.insert(Header {
            key: k.as_str(),
            value: Some(v.as_slice()),
        });
    }
    p.send(
        FutureRecord::to(topic)
            .key(&r.key)
            .payload(&r.value)
            .headers(headers),
        Duration::from_secs(20),
    )
    .await
    .map_err(|(e, _)| anyhow!("sending to {topic}: {e}"))?;
    Ok(())
}

/// A normal event of platform `p` (index `platform_idx`), the `i`-th of its traffic.
fn normal_event(p: &PlatformSpec, platform_idx: u64, i: u64) -> VerificationEvent {
    let (class, activity) = match i % 3 {
        0 => (EventClass::Authentication, "login"),
        1 => (EventClass::SignatureVerification, "verify"),
        _ => (EventClass::Authorization, "authorize"),
    };
    VerificationEvent::new(
        class,
        activity,
        Status::Success,
        Producer::new(p.platform, "0.1.0", p.service).with_host(p.host),
    )
    .with_subject(
        Subject::principal(format!("user-{:02}", i % 23))
            .with_key_id(p.key_id)
            .with_client_ip(format!("10.{}.0.{}", platform_idx + 1, i % 200 + 1))
            .with_tenant("acme-bank"),
    )
    .with_message(format!("{activity} ok"))
}

/// A key registry entry for `public_key`, valid from an hour ago.
fn key_status(key_id: &str, public_key: &PublicKey, state: KeyState) -> KeyStatus {
    KeyStatus {
        state,
        ..KeyStatus::active(
            key_id,
            public_key,
            now_micros() - 3_600_000_000,
            "vigil demo",
        )
    }
}

/// The webhook receiver: records each delivery, checking its HMAC like a real receiver would.
async fn receive(
    State(state): State<Arc<(Shared, Vec<u8>)>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let timestamp =
        header(vigil_alerter::payload::TIMESTAMP_HEADER).and_then(|t| t.parse::<i64>().ok());
    let signature_ok = match (timestamp, header(vigil_alerter::payload::SIGNATURE_HEADER)) {
        (Some(t), Some(sig)) => vigil_alerter::payload::verify(&state.1, t, &body, sig),
        _ => false,
    };
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |field: &str| v["alert"][field].as_str().unwrap_or_default().to_owned();
    lock(&state.0).deliveries.push(Delivery {
        rule_id: text("rule_id"),
        fingerprint: text("fingerprint"),
        signature_ok,
    });
    StatusCode::OK
}

/// Prints the human summary on stdout.
fn print_human(s: &Value) {
    let ok = s["ok"].as_bool().unwrap_or(false);
    println!();
    println!(
        "Vigil demo {} in {:.1}s — namespace {}",
        if ok { "passed" } else { "FAILED" },
        s["duration_ms"].as_f64().unwrap_or(0.0) / 1000.0,
        s["namespace"]["consumer_group_prefix"]
            .as_str()
            .unwrap_or("")
    );
    println!();
    println!("Events per platform (sent / as judged by the verifier)");
    println!(
        "  {:<8} {:>6} {:>9} {:>6} {:>5} {:>8} {:>10}",
        "platform", "sent", "verified", "valid", "bad", "revoked", "untrusted"
    );
    if let Some(m) = s["events"]["per_platform"].as_object() {
        for (p, v) in m {
            let n = |k: &str| v[k].as_u64().unwrap_or(0);
            println!(
                "  {:<8} {:>6} {:>9} {:>6} {:>5} {:>8} {:>10}",
                p,
                n("sent"),
                n("verified"),
                n("valid"),
                n("bad"),
                n("revoked"),
                n("untrusted")
            );
        }
    }
    println!("  reasons: {}", s["events"]["by_reason"]);
    println!();
    println!("Alerts fired ({} records)", s["alerts"]["fired"]);
    if let Some(rows) = s["alerts"]["by_rule"].as_array() {
        for a in rows {
            println!(
                "  {:<38} {:<9} fired {:>3}, distinct {:>2}, webhook {:>2}  {}",
                a["rule_id"].as_str().unwrap_or(""),
                a["severity"].as_str().unwrap_or(""),
                a["fired"],
                a["distinct"],
                a["webhook_deliveries"],
                a["title"].as_str().unwrap_or("")
            );
        }
    }
    println!();
    println!(
        "Webhook deliveries: {} ({} with a valid HMAC) for {} distinct alerts",
        s["webhook"]["deliveries"], s["webhook"]["hmac_valid"], s["webhook"]["distinct_alerts"]
    );
    println!(
        "DLQ entries: {} {}",
        s["dlq"]["entries"], s["dlq"]["by_class"]
    );
    println!("Audit rows in ClickHouse: {}", s["audit"]["rows"]);
    let v = &s["audit"]["verify"];
    if v.is_null() {
        println!("vigil audit verify: not run");
    } else {
        println!(
            "vigil audit verify: {} ({} rows, {} digests, {} signatures re-verified, {} findings)",
            if v["clean"].as_bool() == Some(true) {
                "clean"
            } else {
                "NOT clean"
            },
            v["rows"],
            v["digests"],
            v["signatures_valid"],
            v["findings"]
        );
    }
    if let Some(m) = s["soc_queries"].as_object() {
        for (name, q) in m {
            println!();
            println!("SOC query {name}: {}", q["question"].as_str().unwrap_or(""));
            for r in q["rows"].as_array().into_iter().flatten() {
                println!("  {r}");
            }
        }
    }
    println!();
    for st in s["stages"].as_array().into_iter().flatten() {
        println!(
            "  [{}] {:<15} {:>6} ms  {}",
            if st["ok"].as_bool() == Some(true) {
                "ok"
            } else {
                "!!"
            },
            st["stage"].as_str().unwrap_or(""),
            st["ms"],
            st["detail"].as_str().unwrap_or("")
        );
    }
    println!();
    println!(
        "Services ran inside this command for the demo; `vigil run <service>` runs each for real."
    );
}
