//! `vigil produce --jsonl FILE`: sends one event per JSON line through the producer SDK.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::{Map, Value};
use vigil_producer::{Emitter, EmitterConfig};
use vigil_schemas::model::{format_rfc3339, now_micros, parse_rfc3339, random_nonce};
use vigil_schemas::{EventSigner, KeyId, RecordSigner, VerificationEvent};
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

/// Fills the fields a person writing JSON by hand leaves out, and accepts RFC 3339 times.
fn complete(line: &str) -> Result<VerificationEvent, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("expected a JSON object".into());
    };
    obj.entry("event_id")
        .or_insert_with(|| Value::String(uuid::Uuid::new_v4().to_string()));
    obj.entry("nonce")
        .or_insert_with(|| Value::String(random_nonce()));
    obj.entry("activity_id").or_insert(Value::from(0));
    obj.entry("severity_id")
        .or_insert_with(|| Value::String("informational".into()));
    obj.entry("subject")
        .or_insert_with(|| Value::Object(Map::new()));
    obj.entry("attributes")
        .or_insert_with(|| Value::Object(Map::new()));
    match obj.get("occurred_at") {
        None | Some(Value::Null) => {
            obj.insert("occurred_at".into(), Value::from(now_micros()));
        }
        Some(Value::String(text)) => {
            let micros = parse_rfc3339(text)
                .ok_or_else(|| format!("occurred_at {text:?} is not RFC 3339"))?;
            obj.insert("occurred_at".into(), Value::from(micros));
        }
        Some(_) => {}
    }
    serde_json::from_value(Value::Object(obj)).map_err(|e| format!("not a VerificationEvent: {e}"))
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
                Ok(text) => complete(text).and_then(|e| emitter.emit(e).map_err(|e| e.to_string())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_ids_and_times_are_filled_and_rfc3339_accepted() {
        let e = complete(
            r#"{"class_uid":"authentication","activity_name":"login","status_id":"failure",
                "occurred_at":"2026-11-23T10:00:00Z",
                "producer":{"platform":"cli","sdk_version":"1","service":"ssh"}}"#,
        )
        .expect("valid line");
        assert_eq!(
            e.occurred_at,
            parse_rfc3339("2026-11-23T10:00:00Z").expect("time")
        );
        assert_eq!(e.nonce.len(), 32);
    }

    #[test]
    fn bad_lines_say_why() {
        assert!(
            complete("{")
                .expect_err("bad json")
                .starts_with("invalid JSON")
        );
        assert!(complete("[]").expect_err("array").contains("JSON object"));
        let err = complete(r#"{"class_uid":"nope"}"#).expect_err("bad enum");
        assert!(err.starts_with("not a VerificationEvent"), "{err}");
    }
}
