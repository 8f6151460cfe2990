//! `vigil dlq`: count, list, inspect and replay dead letters (a thin layer over
//! `vigil-dead-letter`).
//!
//! Replays change what downstream services see, so executing one needs either a plan signed by
//! a planner and approved by a *different* key (`--plan` then `--approve`), or the explicit
//! `--no-approval` flag, meant for development and tests only. `--dry-run` needs neither.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use vigil_dead_letter::filter::{format_ms, parse_time};
use vigil_dead_letter::replay::{Approval, ReplayOptions, ReplaySummary};
use vigil_dead_letter::scan::{Selection, collect};
use vigil_dead_letter::{Coordinate, DeadLetter, DlqConfig, Filter, ReplayPlan, Stats};
use vigil_schemas::{EventSigner, RecordSigner, SchemaRegistry};
use vigil_topology::KafkaClientConfig;

/// Arguments of `vigil dlq`.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Count dead letters by error class, origin topic and hour of last failure.
    Stats {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// One line per dead letter: PARTITION:OFFSET, class, origin, last failure, error.
    List {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print JSON lines instead.
        #[arg(long)]
        json: bool,
    },
    /// Show one dead letter: headers, and the value decoded when possible, else a hexdump.
    Inspect {
        #[command(flatten)]
        common: Common,
        /// The record, PARTITION:OFFSET.
        at: Coordinate,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Write dead letters back to their origin topic (plan, approve, dry run).
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Kafka bootstrap servers.
    #[arg(long, env = "VIGIL_KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Schema registry URL (decoding in `inspect`, the replay event's schema).
    #[arg(
        long,
        env = "VIGIL_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    schema_registry: String,
    /// The dead-letter topic.
    #[arg(long, default_value = "vigil.dlq")]
    dlq_topic: String,
    /// The replay ledger topic (compacted; created when missing).
    #[arg(long, default_value = vigil_dead_letter::DEFAULT_LEDGER_TOPIC)]
    ledger_topic: String,
    /// Where replay configuration events are written.
    #[arg(long, default_value = "vigil.events.raw")]
    events_topic: String,
    /// Upper bound of a scan, in seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// Most records one command reads into memory.
    #[arg(long, default_value_t = vigil_dead_letter::DEFAULT_MAX_RECORDS)]
    max_records: usize,
}

impl Common {
    fn config(&self) -> DlqConfig {
        let mut c = DlqConfig::new(KafkaClientConfig::new(&self.bootstrap));
        c.dlq_topic = self.dlq_topic.clone();
        c.ledger_topic = self.ledger_topic.clone();
        c.events_topic = self.events_topic.clone();
        c.timeout = Duration::from_secs(self.timeout_secs.max(1));
        c.max_records = self.max_records;
        c
    }
}

#[derive(Debug, Args)]
struct FilterArgs {
    /// Only this error class (`bad_data`, `transient`, `unknown` for unreadable headers).
    #[arg(long)]
    error_class: Option<String>,
    /// Only records from this origin topic.
    #[arg(long)]
    origin_topic: Option<String>,
    /// Only records that last failed at or after this RFC 3339 time.
    #[arg(long)]
    from: Option<String>,
    /// Only records that last failed before this RFC 3339 time.
    #[arg(long)]
    to: Option<String>,
}

impl FilterArgs {
    fn filter(&self) -> anyhow::Result<Filter> {
        let f = Filter {
            error_class: self.error_class.clone(),
            origin_topic: self.origin_topic.clone(),
            from_ms: self.from.as_deref().map(parse_time).transpose()?,
            to_ms: self.to.as_deref().map(parse_time).transpose()?,
        };
        f.validate()?;
        Ok(f)
    }

    fn is_empty(&self) -> bool {
        self.error_class.is_none()
            && self.origin_topic.is_none()
            && self.from.is_none()
            && self.to.is_none()
    }
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    filter: FilterArgs,
    /// Report what would be replayed; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Records per second written back.
    #[arg(long, default_value_t = 100)]
    rate: u32,
    /// Records per transaction.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Write a signed plan of the matching records to this file instead of replaying.
    #[arg(long, requires = "planner_key", conflicts_with_all = ["approve", "no_approval"])]
    plan: Option<PathBuf>,
    /// The planner's Ed25519 key (PKCS#8 PEM) that signs the plan.
    #[arg(long)]
    planner_key: Option<PathBuf>,
    /// Execute exactly the records of this plan (needs a key other than the planner's).
    #[arg(long, requires = "approver_key", conflicts_with = "no_approval")]
    approve: Option<PathBuf>,
    /// The approver's Ed25519 key (PKCS#8 PEM); it also signs the replay's configuration event.
    #[arg(long)]
    approver_key: Option<PathBuf>,
    /// Replay without a plan, signed by --approver-key alone: for development and tests only.
    #[arg(long, requires = "approver_key")]
    no_approval: bool,
    /// Oldest plan accepted by --approve, in seconds.
    #[arg(long, default_value_t = 86_400)]
    max_plan_age_secs: i64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `vigil dlq`.
pub async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        DlqCommand::Stats {
            common,
            filter,
            json,
        } => {
            let cfg = common.config();
            let selection = Selection::Filter(filter.filter()?);
            let stats = blocking(move || {
                let mut stats = Stats::default();
                vigil_dead_letter::scan(&cfg, &selection, |r| {
                    stats.add(&r);
                    Ok(())
                })?;
                Ok(stats)
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stats)?);
            } else {
                print!("{}", stats.to_table());
            }
        }
        DlqCommand::List {
            common,
            filter,
            json,
        } => {
            let cfg = common.config();
            let selection = Selection::Filter(filter.filter()?);
            let records = blocking(move || Ok(collect(&cfg, &selection)?)).await?;
            for r in &records {
                if json {
                    println!("{}", serde_json::to_string(&list_json(r))?);
                } else {
                    println!(
                        "{}\t{}\t{}\t{}\t{}",
                        r.at,
                        r.error_class(),
                        r.origin_topic(),
                        r.failed_at_ms().map_or_else(|| "unknown".into(), format_ms),
                        r.error().replace(['\n', '\t'], " ")
                    );
                }
            }
        }
        DlqCommand::Inspect { common, at, json } => {
            let cfg = common.config();
            let selection = Selection::Exact([at].into_iter().collect());
            let mut records = blocking(move || Ok(collect(&cfg, &selection)?)).await?;
            let Some(record) = records.pop() else {
                bail!("no record at {at} in {}", common.dlq_topic);
            };
            let registry = SchemaRegistry::new(&common.schema_registry).ok();
            let shown = vigil_dead_letter::inspect::inspect(&record, registry.as_ref()).await;
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            } else {
                print!("{}", shown.to_text());
            }
        }
        DlqCommand::Replay(args) => return replay(args).await,
    }
    Ok(ExitCode::SUCCESS)
}

fn list_json(r: &DeadLetter) -> serde_json::Value {
    serde_json::json!({
        "at": r.at.to_string(),
        "error_class": r.error_class(),
        "origin_topic": r.origin_topic(),
        "last_failed_at": r.failed_at_ms().map(format_ms),
        "error": r.error(),
    })
}

async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = args.common.config();

    if let Some(path) = &args.plan {
        let key_path = args
            .planner_key
            .as_ref()
            .context("--plan needs --planner-key")?;
        let planner = load_key(key_path)?;
        let filter = args.filter.filter()?;
        let selection = Selection::Filter(filter.clone());
        let c = cfg.clone();
        let records = blocking(move || Ok(collect(&c, &selection)?)).await?;
        let plan = ReplayPlan::create(&cfg.dlq_topic, &filter, &records, &planner, now_ms())?;
        plan.write(path)?;
        println!(
            "plan {} written to {}: {} records ({} unreplayable left out), planner key {}",
            plan.plan.plan_id,
            path.display(),
            plan.plan.entries.len(),
            plan.plan.unreplayable,
            plan.plan.planner_key_id
        );
        return Ok(ExitCode::SUCCESS);
    }

    let (records, approval, signer) = if let Some(path) = &args.approve {
        if !args.filter.is_empty() {
            bail!("--approve executes the plan's records; filters are not accepted with it");
        }
        let key_path = args
            .approver_key
            .as_ref()
            .context("--approve needs --approver-key")?;
        let approver = load_key(key_path)?;
        let plan = ReplayPlan::read(path)?;
        plan.verify()?;
        plan.check_approver(&approver)?;
        plan.check_age(now_ms(), args.max_plan_age_secs.saturating_mul(1000))?;
        // The plan names its DLQ; approving it against another topic would replay other records.
        cfg.dlq_topic = plan.plan.dlq_topic.clone();
        let selection = Selection::Exact(plan.coordinates());
        let c = cfg.clone();
        let found = blocking(move || Ok(collect(&c, &selection)?)).await?;
        let records = plan.match_records(found)?;
        let approval = Approval {
            mode: "plan".into(),
            planner_key_id: Some(plan.plan.planner_key_id.clone()),
            approver_key_id: approver.key_id().to_string(),
            plan_id: Some(plan.plan.plan_id.clone()),
            plan_sha256: Some(plan.sha256()?),
            filter: plan.plan.filter.clone(),
        };
        (records, approval, Some(approver))
    } else {
        if !args.dry_run && !args.no_approval {
            bail!(
                "a replay needs approval: write a plan with --plan FILE --planner-key KEY, \
                 have another key holder run --approve FILE --approver-key KEY; \
                 or use --dry-run (or --no-approval, for development only)"
            );
        }
        let filter = args.filter.filter()?;
        let selection = Selection::Filter(filter.clone());
        let c = cfg.clone();
        let records = blocking(move || Ok(collect(&c, &selection)?)).await?;
        let signer = args.approver_key.as_ref().map(load_key).transpose()?;
        let approval = Approval {
            mode: if args.dry_run { "dry-run" } else { "none" }.into(),
            approver_key_id: signer
                .as_ref()
                .map(|s| s.key_id().to_string())
                .unwrap_or_default(),
            filter,
            ..Approval::default()
        };
        (records, approval, signer)
    };

    let recorder = match (&signer, args.dry_run) {
        (Some(s), false) => {
            vigil_dead_letter::ledger::ensure_topic(&cfg).await?;
            let id = vigil_dead_letter::event::schema_id(
                &args.common.schema_registry,
                &cfg.events_topic,
            )
            .await?;
            Some(RecordSigner::new(s.clone(), id)?)
        }
        _ => None,
    };
    let mut opts = ReplayOptions::new(approval);
    opts.dry_run = args.dry_run;
    opts.rate_per_sec = args.rate;
    opts.batch_size = args.batch_size;
    let summary = blocking(move || {
        Ok(vigil_dead_letter::replay::replay(
            &cfg,
            records,
            &opts,
            recorder.as_ref(),
        )?)
    })
    .await?;
    print_summary(&summary, args.json)?;
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &ReplaySummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(s)?);
        return Ok(());
    }
    let verb = if s.dry_run {
        "would replay"
    } else {
        "replayed"
    };
    println!(
        "{verb} {} of {} selected records from {} (already replayed: {}, unreplayable: {})",
        s.to_replay, s.selected, s.dlq_topic, s.already_replayed, s.unreplayable
    );
    if !s.range.is_empty() {
        println!("range: {}", s.range_text());
    }
    for (topic, n) in &s.by_origin_topic {
        println!("  {topic}: {n}");
    }
    if let Some(id) = &s.event_id {
        println!(
            "recorded as configuration event {id} (replay {})",
            s.replay_id
        );
    }
    Ok(())
}

fn load_key(path: &PathBuf) -> anyhow::Result<EventSigner> {
    EventSigner::from_pkcs8_pem_file(path)
        .with_context(|| format!("reading key {}", path.display()))
}

fn now_ms() -> i64 {
    vigil_schemas::model::now_micros() / 1000
}

/// Runs the blocking Kafka work of the library off the async runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("dlq worker thread")?
}
