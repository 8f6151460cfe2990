//! `vigil demo`: pushes real signed events through every service against the local stack (or
//! the `VIGIL_*` services) and shows what each stage saw.
//!
//! One run lives in its own namespace ([`vigil_pipeline::Namespace`]): topics
//! `vigil-demo-<runid>.*` created from the built-in topology, consumer groups
//! `vigil-demo-<runid>-*`, ClickHouse database `vigil_demo_<runid>`. The verifier, correlator,
//! alerter and audit sink run in this process ([`vigil_pipeline::Pipeline`], the same libraries
//! `vigil run <service>` runs for real); the demo's own HTTP receiver on 127.0.0.1:0 is the
//! alerter's webhook. Three platforms send normal traffic — the rust platform through the Rust
//! SDK in this process, the python and js platforms as real Python and Node.js processes using
//! their SDKs ([`sdk`]) — then one trace crosses all three (a failed login in each, Python →
//! Node.js → Rust, handing the `traceparent` on), then scripted attacks: a bad-signature burst
//! for one key, use of a key after its revocation, a replayed nonce, events from an unknown key
//! and one poison record. Every figure of the
//! summary is read back from Kafka, the webhook receiver or ClickHouse. Everything is bounded
//! by a total deadline and per-stage deadlines; services are stopped and the namespace deleted
//! at the end (`--keep` keeps the topics and database).
//! Logs (the services', librdkafka's) go to a file named after the namespace, so the progress
//! lines stay readable; `--verbose` prints them on stderr instead.
//!
//! [`traffic`] sends (through [`sdk`] for the python and js platforms), [`observe`] reads back
//! what each stage saw, [`audit`] asks ClickHouse, [`report`] builds the summary.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use clap::Args;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use vigil_consumer::key_plan::{KeyChange, KeyPlan};
use vigil_consumer::key_registry::KeyStatusWriter;
use vigil_pipeline::{Endpoints, Namespace, Pipeline, PipelineConfig, PipelineError, TopologyStep};
use vigil_producer::Emitter;
use vigil_schemas::model::Platform;
use vigil_schemas::model::now_micros;
use vigil_schemas::{EventSigner, KeyId, SchemaId, TrustAnchors};

use crate::commands::keys::KeyEvents;
use vigil_topology::{LogFormat, ReplicationOverride};

use observe::{Shared, lock};
use sdk::{Runtime, SdkRuntimes};

mod audit;
mod logs;
mod observe;
mod report;
mod sdk;
mod traffic;

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
    /// Print the services' and librdkafka's logs on stderr instead of the run's log file.
    #[arg(long)]
    pub verbose: bool,
}

/// Signed events with a bad signature sent for one key (the correlation threshold is 5).
const BRUTE_FORCE_EVENTS: u64 = 8;
/// Events signed by the revoked key after its revocation.
const REVOKED_EVENTS: u64 = 3;
/// Events signed by a key nobody registered.
const UNKNOWN_KEY_EVENTS: u64 = 2;
/// Forged (unsigned) key registry records the attacker writes; the verifier refuses each and
/// reports it as an `untrusted` verdict.
const FORGED_KEY_RECORDS: u64 = 1;
/// Key operation events the administrators sign: one registration per platform key, the plan's
/// approval, the revocation of the js key.
const KEY_EVENTS: u64 = PLATFORMS.len() as u64 + 2;
/// Poison (undecodable) records written to the raw topic.
const POISON_RECORDS: u64 = 1;
/// Events of the cross-platform trace: one failed login per platform.
const TRACE_HOPS: u64 = 3;
/// Alert rules the scripted attacks and the cross-platform trace must fire.
const EXPECTED_RULES: [(&str, &str); 5] = [
    ("brute_force", "vigil-bad-signature-per-key"),
    ("forged_key_record", "vigil-key-record-refused"),
    ("revoked_key", "vigil-key-used-after-revocation"),
    ("replayed_nonce", "vigil-replayed-nonce"),
    ("cross_platform_trace", "vigil-auth-failure-cross-platform"),
];
/// Partitions of each demo topic: enough to show partitioned chains, few enough to start fast.
const DEMO_PARTITIONS: i32 = 3;
/// The saved SOC queries whose answers the summary shows (`trace_timeline` is asked for the
/// cross-platform trace as well).
const SOC_QUERIES: [&str; 3] = [
    "failed_verifications_by_key_24h",
    "top_rejected_producers",
    "key_operations",
];

/// The built-in rule pack, embedded so the demo runs from any directory.
const RULES: [(&str, &str); 7] = [
    (
        "cross-platform-auth.yml",
        include_str!("../../../../rules/cross-platform-auth.yml"),
    ),
    (
        "key-revocation.yml",
        include_str!("../../../../rules/key-revocation.yml"),
    ),
    (
        "key-registry.yml",
        include_str!("../../../../rules/key-registry.yml"),
    ),
    (
        "key-rotation.yml",
        include_str!("../../../../rules/key-rotation.yml"),
    ),
    ("replay.yml", include_str!("../../../../rules/replay.yml")),
    (
        "signature-failures.yml",
        include_str!("../../../../rules/signature-failures.yml"),
    ),
    (
        "unknown-key.yml",
        include_str!("../../../../rules/unknown-key.yml"),
    ),
];

/// One platform of the demo.
struct PlatformSpec {
    platform: Platform,
    runtime: Runtime,
    name: &'static str,
    service: &'static str,
    host: &'static str,
    key_id: &'static str,
}

const PLATFORMS: [PlatformSpec; 3] = [
    PlatformSpec {
        platform: Platform::Rust,
        runtime: Runtime::InProcess,
        name: "rust",
        service: "payments-api",
        host: "pay-01",
        key_id: "demo-rust",
    },
    PlatformSpec {
        platform: Platform::Python,
        runtime: Runtime::Python,
        name: "python",
        service: "fraud-scoring",
        host: "ml-02",
        key_id: "demo-python",
    },
    PlatformSpec {
        platform: Platform::Js,
        runtime: Runtime::Node,
        name: "js",
        service: "web-checkout",
        host: "edge-03",
        key_id: "demo-js",
    },
];

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
    ns: Namespace,
    endpoints: Endpoints,
    /// The namespace's topics, as the topology named them.
    topics: Vec<String>,
    /// Whether topics may exist (the topology plan succeeded), so teardown deletes them.
    topics_created: bool,
    workdir: tempfile::TempDir,
    /// Stops the demo's own readers.
    stop: watch::Sender<bool>,
    pipeline: Option<Pipeline>,
    background: Vec<JoinHandle<()>>,
    seen: Shared,
    sent: Arc<AtomicU64>,
    sent_by_platform: BTreeMap<String, u64>,
    stages: Vec<StageResult>,
    key_seeds: BTreeMap<&'static str, [u8; 32]>,
    sink_seed: [u8; 32],
    /// The administrators: the first plans key registrations, the second approves them.
    admin_seed: [u8; 32],
    checker_seed: [u8; 32],
    audit_rows: Option<u64>,
    verify: Option<Value>,
    soc: BTreeMap<&'static str, Value>,
    /// The rust platform's emitter (the Rust SDK in this process).
    rust_emitter: Option<Arc<Emitter>>,
    /// The Python and Node.js SDKs the other two platforms run with.
    sdk: SdkRuntimes,
    /// The cross-platform trace: its id, and the timeline ClickHouse gave for it.
    trace_id: Option<String>,
    timeline: Option<Value>,
    schema: Option<SchemaId>,
}

fn seed() -> [u8; 32] {
    let mut s = [0_u8; 32];
    s[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    s[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    s
}

/// Runs `vigil demo`; installs the tracing subscriber itself, since its logs go to the run's
/// log file.
pub async fn run(args: DemoArgs, log_format: LogFormat) -> anyhow::Result<ExitCode> {
    let workdir = tempfile::Builder::new()
        .prefix("vigil-demo-")
        .tempdir()
        .context("creating a work folder")?;
    let sdk = SdkRuntimes::locate(workdir.path()).await?;
    let ns = Namespace::random("vigil-demo")?;
    let log_file = logs::init(log_format, &ns, args.verbose)?;
    let mut endpoints = Endpoints::from_env();
    endpoints.kafka.linger_ms = 1;
    let (stop, _) = watch::channel(false);
    let mut demo = Demo {
        args_ci: args.ci,
        per_platform: u64::from(args.events_per_platform.max(1)),
        started: Instant::now(),
        ns,
        endpoints,
        topics: Vec::new(),
        topics_created: false,
        workdir,
        stop,
        pipeline: None,
        background: Vec::new(),
        seen: Shared::default(),
        sent: Arc::new(AtomicU64::new(0)),
        sent_by_platform: BTreeMap::new(),
        stages: Vec::new(),
        key_seeds: PLATFORMS.iter().map(|p| (p.key_id, seed())).collect(),
        sink_seed: seed(),
        admin_seed: seed(),
        checker_seed: seed(),
        audit_rows: None,
        verify: None,
        soc: BTreeMap::new(),
        rust_emitter: None,
        sdk,
        trace_id: None,
        timeline: None,
        schema: None,
    };
    eprintln!(
        "vigil demo: namespace {}.* (topics), {}-* (consumer groups), ClickHouse database {}",
        demo.ns.name(),
        demo.ns.name(),
        demo.ns.database()
    );
    eprintln!(
        "  services run in this process for the demo; `vigil run <service>` is how they run for real"
    );
    eprintln!("  platforms: rust in this process, {}", demo.sdk.describe());
    if let Some(path) = &log_file {
        eprintln!(
            "  logs go to {} (--verbose prints them here)",
            path.display()
        );
    }
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
        report::print_human(&summary);
    }
    for f in &failed {
        eprintln!("stage {} did not see what it should: {}", f.stage, f.detail);
    }
    if let Some(path) = &log_file {
        eprintln!("logs of this run: {}", path.display());
    }
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Formats an error with its sources, as `{:#}` of an `anyhow::Error` does.
fn chain(e: PipelineError) -> String {
    format!("{:#}", anyhow::Error::new(e))
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
        let (writer, events) = self.keys().await?;
        self.start_services().await?;
        self.normal_traffic().await?;
        self.cross_platform_trace().await?;
        self.attacks(&writer, &events).await?;
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
        let topology = self
            .ns
            .topology(ReplicationOverride::from_env()?, Some(DEMO_PARTITIONS))?;
        self.topics = topology.topics.iter().map(|t| t.name.clone()).collect();
        if let Err(e) = vigil_pipeline::apply_topology(&self.endpoints.kafka, &topology).await {
            // After the plan step some topics may exist: teardown deletes them.
            self.topics_created = !matches!(
                e,
                PipelineError::Admin {
                    step: TopologyStep::Plan,
                    ..
                } | PipelineError::AdminTimeout {
                    step: TopologyStep::Plan,
                    ..
                }
            );
            return Err(e.into());
        }
        self.topics_created = true;
        let n = self.topics.len();
        self.record(
            "topology",
            true,
            format!("{n} topics created under {}.*", self.ns.name()),
            t0,
        );
        Ok(())
    }

    /// Registers one Ed25519 key per platform in the run's key registry topic, as an operator
    /// does: one administrator plans, the other approves; every status and its key operation
    /// event is signed by the approver. Returns the approver's writer (the attacks stage
    /// revokes a key with it).
    async fn keys(&mut self) -> anyhow::Result<(KeyStatusWriter, KeyEvents)> {
        let t0 = Instant::now();
        let (planner, approver) = (self.admin(), self.checker());
        let keys_topic = self.ns.keys_topic();
        let mut changes = Vec::new();
        for p in &PLATFORMS {
            changes.push(KeyChange {
                owner: Some(p.service.to_owned()),
                environment: Some("demo".to_owned()),
                ..KeyChange::register(p.key_id, self.signer(p.key_id)?.public_key())
            });
        }
        let now = now_micros();
        let plan = KeyPlan::create(&keys_topic, changes, Vec::new(), &planner, now)?;
        let anchors = TrustAnchors::new([*planner.public_key(), *approver.public_key()]);
        plan.verify(&anchors, &approver, &keys_topic, now, 3_600_000_000)?;
        let statuses = plan.statuses(|_| None, &approver, now)?;
        let events = KeyEvents::new(
            &self.endpoints.schema_registry_url,
            &self.endpoints.kafka,
            &self.ns.raw_topic(),
            &approver,
        )
        .await?;
        let writer = PipelineConfig::new(self.ns.clone(), self.endpoints.clone())
            .key_writer(approver)
            .await?;
        super::keys::execute(&plan, &statuses, &writer, &events).await?;
        // One key_registered event per key and the plan_approved event, all verified as `cli`.
        self.add_sent("cli", statuses.len() as u64 + 1);
        let ids: Vec<&str> = PLATFORMS.iter().map(|p| p.key_id).collect();
        self.record(
            "keys",
            true,
            format!(
                "registered {} (planned by {}, approved by {})",
                ids.join(", "),
                plan.plan.planner_key_id,
                writer.admin_id()
            ),
            t0,
        );
        Ok((writer, events))
    }

    /// The run's first administrator, who plans.
    fn admin(&self) -> EventSigner {
        EventSigner::from_seed(&self.admin_seed)
    }

    /// The run's second administrator, who approves.
    fn checker(&self) -> EventSigner {
        EventSigner::from_seed(&self.checker_seed)
    }

    /// The two administrators' public keys: the trust anchors of the verifier and the audit.
    fn anchors(&self) -> TrustAnchors {
        TrustAnchors::new([*self.admin().public_key(), *self.checker().public_key()])
    }

    /// Writes the administrators' public keys where the verifier reads its trust anchors.
    fn write_trust_anchors(&self) -> anyhow::Result<std::path::PathBuf> {
        let path = self.workdir.path().join("admins.pem");
        let pem = self.admin().public_key().to_spki_pem()?
            + &self.checker().public_key().to_spki_pem()?;
        std::fs::write(&path, pem)?;
        Ok(path)
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
        let hook_secret = format!("demo-hook-{}", self.ns.id());
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

        let routing = format!(
            "delivery: {{max_attempts: 4, initial_backoff_ms: 50, max_backoff_ms: 500}}\n\
             receivers:\n  - {{name: demo-webhook, kind: webhook, url: {url:?}, secret_file: {secret:?}, \
             rate_limit_per_minute: 6000, rate_limit_burst: 100, timeout_ms: 2000}}\n\
             route: {{receivers: [demo-webhook], dedup_window_ms: 300000}}\n",
            url = format!("http://{hook_addr}/hooks/vigil"),
            secret = secret_path.display().to_string(),
        );
        let anchors = self.write_trust_anchors()?;
        let config = PipelineConfig::new(self.ns.clone(), self.endpoints.clone())
            .with_verifier(anchors)
            .with_correlator(rules_dir)
            .with_alerter(&routing, &token_path)?
            .with_audit_sink(EventSigner::from_seed(&self.sink_seed));
        let pipeline = self.pipeline.insert(Pipeline::start(&config).await?);
        pipeline.ready(Duration::from_secs(40)).await?;
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

    /// Stops every service through the shared switch (the audit sink writes its final digest).
    async fn stop_services(&mut self) {
        let t0 = Instant::now();
        self.stop.send_replace(true);
        let mut errors = Vec::new();
        if let Some(pipeline) = self.pipeline.take() {
            for s in pipeline.stop(Duration::from_secs(15)).await {
                if let Err(e) = s.outcome {
                    errors.push(format!("{}: {e}", s.service));
                }
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

    /// Stops whatever still runs and deletes the run's namespace (unless `keep`).
    async fn teardown(&mut self, keep: bool) {
        self.stop.send_replace(true);
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.stop(Duration::from_secs(5)).await;
        }
        if let Some(emitter) = self.rust_emitter.take() {
            let closing = tokio::task::spawn_blocking(move || emitter.close());
            let _ = tokio::time::timeout(Duration::from_secs(6), closing).await;
        }
        for h in self.background.drain(..) {
            h.abort();
        }
        if keep {
            self.progress(&format!(
                "kept topics {}.* and database {} (--keep)",
                self.ns.name(),
                self.ns.database()
            ));
            return;
        }
        let topics = if self.topics_created {
            self.topics.clone()
        } else {
            Vec::new()
        };
        let report = vigil_pipeline::teardown(&self.ns, &self.endpoints, &topics).await;
        let mut removed = Vec::new();
        match report.topics {
            None => {}
            Some(Ok(n)) => removed.push(format!("{n} topics")),
            Some(Err(e)) => {
                self.progress(&format!("could not delete the demo topics: {}", chain(e)))
            }
        }
        match report.subjects {
            Ok(0) => {}
            Ok(n) => removed.push(format!("{n} schema subjects")),
            Err(e) => self.progress(&format!(
                "could not delete the demo's schema subjects: {}",
                chain(e)
            )),
        }
        match report.database {
            Ok(()) => removed.push(format!("database {}", self.ns.database())),
            Err(e) => self.progress(&format!(
                "could not drop {}: {}",
                self.ns.database(),
                chain(e)
            )),
        }
        self.progress(&format!(
            "stopped all services; removed {}",
            removed.join(" and ")
        ));
    }
}
