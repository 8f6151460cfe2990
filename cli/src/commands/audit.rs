//! `vigil audit`: ClickHouse migrations, chain verification and export of the audit trail.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use vigil_audit_sink::AuditStore;
use vigil_audit_sink::export::{ExportFormat, read_jsonl};
use vigil_audit_sink::migrations::Shorten;
use vigil_audit_sink::row::AuditRow;
use vigil_audit_sink::verify::{KeyHistory, VerifyOptions, Walker, verify_store};
use vigil_schemas::TrustAnchors;
use vigil_schemas::model::{now_micros, parse_rfc3339};
use vigil_schemas::signing::PublicKey;

/// Arguments of `vigil audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: AuditCommand,
    /// ClickHouse database of the audit tables.
    #[arg(
        long,
        env = "VIGIL_AUDIT_DATABASE",
        default_value = "vigil",
        global = true
    )]
    pub database: String,
}

/// `vigil audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Applies the versioned ClickHouse migrations (idempotent).
    Migrate {
        /// Retention of audit rows in years. Applied to existing tables too: raising it is
        /// always allowed, shortening it needs --shorten-retention.
        #[arg(long, default_value_t = 7)]
        retention_years: u32,
        /// Allow a retention below the current one. Rows older than the new retention are
        /// deleted at ClickHouse's next merge.
        #[arg(long)]
        shorten_retention: bool,
    },
    /// Walks the hash chains, checks every digest and event signature; exits 1 on any break.
    Verify(VerifyArgs),
    /// Writes rows plus the chain proof (digests) for offline checking.
    Export(ExportArgs),
}

/// Arguments of `vigil audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Topic whose chains to verify (default: every topic in the table).
    #[arg(long)]
    pub topic: Option<String>,
    /// Only this Kafka partition's chain.
    #[arg(long)]
    pub partition: Option<i32>,
    /// Rows ingested at or after this RFC 3339 time (the walk anchors at the first row).
    #[arg(long)]
    pub from: Option<String>,
    /// Rows ingested before this RFC 3339 time.
    #[arg(long)]
    pub to: Option<String>,
    /// The sink's digest-signing public key (SPKI PEM).
    #[arg(long, env = "VIGIL_AUDIT_PUBLIC_KEY_FILE")]
    pub sink_public_key: PathBuf,
    /// Administrator public keys (SPKI PEM file or folder): the trail's own key operation
    /// events signed by them give the key every `valid` event is re-verified against.
    #[arg(long, env = "VIGIL_TRUST_ANCHORS")]
    pub trust_anchors: Option<PathBuf>,
    /// Folder of producer public keys, `<key_id>.pem` (SPKI), to re-verify event signatures of
    /// keys the trail holds no registration for (registered before key operations were audited).
    #[arg(long)]
    pub keys_dir: Option<PathBuf>,
    /// Rows older than this must be covered by a signed digest.
    #[arg(long, default_value_t = 300)]
    pub max_digest_lag_secs: i64,
    /// Verify a JSON Lines export offline instead of ClickHouse.
    #[arg(long)]
    pub input: Option<PathBuf>,
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// JSON Lines: rows then digests.
    Jsonl,
    /// CSV rows, digests in `<output>.digests.jsonl`.
    Csv,
}

/// Arguments of `vigil audit export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Topic to export.
    #[arg(long, default_value = vigil_schemas::topics::EVENTS_VERIFIED)]
    pub topic: String,
    /// Rows ingested at or after this RFC 3339 time.
    #[arg(long)]
    pub from: Option<String>,
    /// Rows ingested before this RFC 3339 time.
    #[arg(long)]
    pub to: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Output file.
    #[arg(long)]
    pub output: PathBuf,
}

fn time_arg(name: &str, v: &Option<String>) -> anyhow::Result<Option<i64>> {
    v.as_deref()
        .map(|t| parse_rfc3339(t).with_context(|| format!("--{name} {t}: not an RFC 3339 time")))
        .transpose()
}

fn load_keys(dir: Option<&Path>) -> anyhow::Result<BTreeMap<String, PublicKey>> {
    let mut keys = BTreeMap::new();
    let Some(dir) = dir else { return Ok(keys) };
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pem") {
            let id = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let key = PublicKey::from_spki_pem_file(&path)
                .with_context(|| format!("{}", path.display()))?;
            keys.insert(id, key);
        }
    }
    Ok(keys)
}

/// Runs `vigil audit`.
pub async fn run(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        AuditCommand::Migrate {
            retention_years,
            shorten_retention,
        } => {
            let store = AuditStore::from_env(&args.database)?;
            let shorten = if shorten_retention {
                Shorten::Allow
            } else {
                Shorten::Refuse
            };
            let r = store.migrate_with(retention_years, shorten).await?;
            println!(
                "migrations applied: {:?}, already applied: {:?}",
                r.applied, r.already
            );
            for (table, from, to) in &r.retention_changed {
                println!("retention of {table}: {from} -> {to} years");
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify(v) => verify(&args.database, v).await,
        AuditCommand::Export(e) => export(&args.database, e).await,
    }
}

async fn verify(database: &str, v: VerifyArgs) -> anyhow::Result<ExitCode> {
    let sink_key = PublicKey::from_spki_pem_file(&v.sink_public_key)
        .with_context(|| format!("sink public key {}", v.sink_public_key.display()))?;
    let history = match &v.trust_anchors {
        Some(path) => Some(KeyHistory::new(
            &TrustAnchors::load(path).context("reading --trust-anchors")?,
        )),
        None => None,
    };
    let opts = VerifyOptions {
        sink_key,
        producer_keys: load_keys(v.keys_dir.as_deref())?,
        history,
        anchored: v.from.is_some(),
        max_digest_lag_micros: v.max_digest_lag_secs.saturating_mul(1_000_000),
        now_micros: now_micros(),
    };
    let from = time_arg("from", &v.from)?;
    let to = time_arg("to", &v.to)?;
    let mut clean = true;
    if let Some(input) = &v.input {
        let text = std::fs::read_to_string(input)
            .with_context(|| format!("reading {}", input.display()))?;
        let (rows, digests) =
            read_jsonl(&text).map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
        let topic = rows
            .first()
            .map(|r| r.kafka_topic.clone())
            .unwrap_or_default();
        let mut opts = opts;
        if let Some(history) = opts.history.as_mut() {
            let mut by_time: Vec<&AuditRow> = rows.iter().collect();
            by_time.sort_by_key(|r| r.occurred_at);
            for r in by_time {
                history.learn(r);
            }
        }
        let mut walker = Walker::new(
            &topic,
            VerifyOptions {
                anchored: true,
                ..opts
            },
            &digests,
        );
        for r in rows
            .iter()
            .filter(|r| v.partition.is_none_or(|p| p == r.kafka_partition))
        {
            walker.feed(r);
        }
        let report = walker.finish(Some((v.partition, true)));
        print!("{report}");
        clean = report.is_clean();
    } else {
        let store = AuditStore::from_env(database)?;
        let topics = match &v.topic {
            Some(t) => vec![t.clone()],
            None => store.topics().await?,
        };
        if topics.is_empty() {
            bail!("no audit rows in database {database}");
        }
        for topic in topics {
            let report = verify_store(&store, &topic, opts.clone(), v.partition, from, to).await?;
            print!("{report}");
            clean &= report.is_clean();
        }
    }
    Ok(if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn export(database: &str, e: ExportArgs) -> anyhow::Result<ExitCode> {
    let store = AuditStore::from_env(database)?;
    let from = time_arg("from", &e.from)?;
    let to = time_arg("to", &e.to)?;
    let mut out = BufWriter::new(
        File::create(&e.output).with_context(|| format!("creating {}", e.output.display()))?,
    );
    let (format, mut side): (ExportFormat, Box<dyn std::io::Write>) = match e.format {
        Format::Jsonl => (ExportFormat::Jsonl, Box::new(std::io::sink())),
        Format::Csv => {
            let mut p = e.output.clone().into_os_string();
            p.push(".digests.jsonl");
            (
                ExportFormat::Csv,
                Box::new(BufWriter::new(File::create(PathBuf::from(p))?)),
            )
        }
    };
    let (rows, digests) =
        vigil_audit_sink::export::export(&store, &e.topic, from, to, format, &mut out, &mut side)
            .await?;
    eprintln!(
        "exported {rows} rows and {digests} digests to {}",
        e.output.display()
    );
    Ok(ExitCode::SUCCESS)
}
