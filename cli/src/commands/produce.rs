//! `vigil produce --jsonl FILE`: sends one event per JSON line through the producer SDK.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use vigil_producer::{Emitter, EmitterConfig, draft};
use vigil_schemas::model::{format_rfc3339, now_micros};
use vigil_schemas::{EventSigner, KeyId, RecordSigner};
use vigil_topology::KafkaClientConfig;

/// Exit code when events are safe in the spool but not yet delivered (EX_TEMPFAIL).
const EXIT_SPOOLED: u8 = 75;
/// Longest accepted input line, so a runaway file cannot exhaust memory.
const MAX_LINE_BYTES: usize = 1024 * 1024;

/// Arguments of `vigil produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// File with one JSON event per line, using the Avro field names (`-` for stdin).
    #[arg(long)]
    jsonl: PathBuf,
    /// Ed25519 signing key, PKCS#8 PEM (`openssl genpkey -algorithm ed25519`).
    #[arg(long)]
    signing_key: PathBuf,
    /// Key id the signature names (`vigil-key-id` header).
    #[arg(long)]
    key_id: String,
    /// Destination topic.
    #[arg(long, default_value = "vigil.events.raw")]
    topic: String,
    /// Spool directory used while the broker is unreachable; a later run delivers what it holds.
    #[arg(
        long,
        env = "VIGIL_PRODUCE_SPOOL_DIR",
        default_value = ".vigil/produce-spool"
    )]
    spool_dir: PathBuf,
    /// Kafka bootstrap servers.
    #[arg(long, env = "VIGIL_KAFKA_BOOTSTRAP", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    /// Schema registry URL.
    #[arg(
        long,
        env = "VIGIL_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    schema_registry: String,
}

/// Runs `vigil produce`.
pub async fn run(args: ProduceArgs) -> anyhow::Result<ExitCode> {
    let signer = EventSigner::from_pkcs8_pem_file(&args.signing_key)
        .with_context(|| format!("reading signing key {}", args.signing_key.display()))?
        .with_key_id(KeyId::new(&args.key_id).context("--key-id")?);
    let schema_id = vigil_producer::schema_id::resolve(&args.schema_registry, &args.spool_dir)
        .await
        .context("registering the event schema")?;
    let mut config = EmitterConfig::new(&args.spool_dir);
    config.topic = args.topic.clone();
    config.spool_fsync = "always".into();
    let kafka = KafkaClientConfig::new(&args.bootstrap);
    let emitter = Emitter::start(&config, &kafka, RecordSigner::new(signer, schema_id)?, None)?;

    let reader: Box<dyn BufRead> = if args.jsonl.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&args.jsonl)
                .with_context(|| format!("opening {}", args.jsonl.display()))?,
        ))
    };
    let (mut sent, mut failed) = (0u64, 0u64);
    let name = args.jsonl.display().to_string();
    for (index, line) in reader.split(b'\n').enumerate() {
        let number = index + 1;
        let line = line.with_context(|| format!("reading {name}"))?;
        let outcome = if line.len() > MAX_LINE_BYTES {
            Err(format!(
                "line is {} bytes, more than {MAX_LINE_BYTES}",
                line.len()
            ))
        } else {
            match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => draft::complete_json(text, None)
                    .map_err(|e| e.to_string())
                    .and_then(|e| emitter.emit(e).map_err(|e| e.to_string())),
                Err(_) => Err("line is not UTF-8".into()),
            }
        };
        match outcome {
            Ok(()) => sent += 1,
            Err(reason) => {
                failed += 1;
                eprintln!("{name}:{number}: {reason}");
            }
        }
    }
    let report = tokio::task::spawn_blocking(move || {
        let r = emitter.flush(Duration::from_secs(30));
        emitter.close();
        r
    })
    .await?;
    let delivered = sent.saturating_sub(report.spooled + report.in_flight);
    println!(
        "{sent} sent ({delivered} delivered, {} spooled), {failed} failed, to {} at {}",
        report.spooled,
        args.topic,
        format_rfc3339(now_micros()).unwrap_or_default()
    );
    if failed > 0 {
        return Ok(ExitCode::FAILURE);
    }
    if report.spooled > 0 {
        eprintln!(
            "the broker did not take {} event(s); they are safe in {} and go out on the next run",
            report.spooled,
            args.spool_dir.display()
        );
        return Ok(ExitCode::from(EXIT_SPOOLED));
    }
    Ok(ExitCode::SUCCESS)
}
