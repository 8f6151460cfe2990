//! `vigil keys`: register, rotate, revoke and list signing keys in the compacted `vigil.keys`
//! topic. Every write is keyed by key id, sent with an idempotent producer, and acknowledged by
//! the broker before the command returns.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use vigil_consumer::key_registry::{KeyRegistry, KeyRegistryConfig, KeyStatusWriter, KeyView};
use vigil_schemas::model::{format_rfc3339, now_micros, parse_rfc3339};
use vigil_schemas::{KeyId, KeyState, KeyStatus, PublicKey};
use vigil_topology::KafkaClientConfig;

/// How long a command waits to read the registry before acting on it.
const LOAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Arguments of `vigil keys`.
#[derive(Debug, Args)]
pub struct KeysArgs {
    /// What to do.
    #[command(subcommand)]
    command: KeysCommand,
    /// The compacted key registry topic.
    #[arg(
        long,
        global = true,
        env = "VIGIL_KEYS_TOPIC",
        default_value = "vigil.keys"
    )]
    topic: String,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        global = true,
        env = "VIGIL_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    /// Schema registry URL.
    #[arg(
        long,
        global = true,
        env = "VIGIL_SCHEMA_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    schema_registry: String,
    /// Who makes the change (written to `updated_by`); defaults to $USER.
    #[arg(long, global = true)]
    actor: Option<String>,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Registers a new active key; refuses a key id that already exists.
    Register {
        /// Key id, as producers send it in `vigil-key-id`.
        #[arg(long)]
        key_id: String,
        /// Ed25519 public key, SPKI PEM (`openssl pkey -pubout`).
        #[arg(long)]
        public_key: PathBuf,
        /// Earliest accepted `occurred_at` (RFC 3339); default: one hour ago.
        #[arg(long)]
        valid_from: Option<String>,
    },
    /// Replaces a key: the new key becomes active, the old one is accepted until the grace ends.
    Rotate {
        /// The key being replaced.
        #[arg(long)]
        key_id: String,
        /// Id of the new key.
        #[arg(long)]
        new_key_id: String,
        /// The new key's Ed25519 public key, SPKI PEM.
        #[arg(long)]
        public_key: PathBuf,
        /// How long the old key stays accepted: `24h`, `30m`, `90s`, `7d`.
        #[arg(long, value_parser = parse_grace)]
        grace: Duration,
        /// Why the key is rotated.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Revokes a key: events occurring from now on are rejected (`--emergency`: all events).
    Revoke {
        /// The key to revoke.
        #[arg(long)]
        key_id: String,
        /// Why (kept in the registry and shown in rejections).
        #[arg(long)]
        reason: String,
        /// The key is compromised: reject every event signed with it, whatever its time.
        #[arg(long)]
        emergency: bool,
    },
    /// Prints every key with its state.
    List,
}

/// Parses `24h`, `30m`, `90s` or `7d`.
fn parse_grace(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: missing unit (s, m, h or d)"))?;
    let (num, unit) = text.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{text:?}: expected a number followed by s, m, h or d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3_600),
        "d" => n.saturating_mul(86_400),
        other => {
            return Err(format!(
                "{text:?}: unknown unit {other:?} (use s, m, h or d)"
            ));
        }
    };
    Ok(Duration::from_secs(secs))
}

/// Runs `vigil keys`.
pub async fn run(args: KeysArgs) -> anyhow::Result<ExitCode> {
    let mut kafka = KafkaClientConfig::new(args.bootstrap.clone());
    kafka.client_id = "vigil-keys".into();
    let actor = args
        .actor
        .clone()
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "unknown".into());
    let registry = load(&args, &kafka).await?;
    let now = now_micros();
    match args.command {
        KeysCommand::List => {
            print_table(&registry.snapshot());
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Register {
            ref key_id,
            ref public_key,
            ref valid_from,
        } => {
            KeyId::new(key_id.as_str()).context("invalid --key-id")?;
            if let Some(existing) = registry.get(key_id) {
                eprintln!(
                    "key {key_id} already exists ({}); use `vigil keys rotate` to replace it",
                    state_name(&existing)
                );
                return Ok(ExitCode::FAILURE);
            }
            let key = read_key(public_key)?;
            let valid_from = match valid_from {
                Some(t) => parse_rfc3339(t)
                    .with_context(|| format!("--valid-from {t:?} is not RFC 3339"))?,
                None => now - 3_600_000_000,
            };
            let status = active(key_id, &key, valid_from, now, &actor, None);
            writer(&args, &kafka).await?.write(&status).await?;
            println!("registered {key_id}");
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Rotate {
            ref key_id,
            ref new_key_id,
            ref public_key,
            grace,
            ref reason,
        } => {
            KeyId::new(new_key_id.as_str()).context("invalid --new-key-id")?;
            let Some(old) = registry.get(key_id) else {
                eprintln!("key {key_id} is not registered");
                return Ok(ExitCode::FAILURE);
            };
            if old.status.state == KeyState::Revoked {
                eprintln!("key {key_id} is revoked; register the new key instead");
                return Ok(ExitCode::FAILURE);
            }
            if registry.get(new_key_id).is_some() {
                eprintln!("key {new_key_id} already exists");
                return Ok(ExitCode::FAILURE);
            }
            let key = read_key(public_key)?;
            let grace_us = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
            let grace_until = now.saturating_add(grace_us);
            let w = writer(&args, &kafka).await?;
            // The new key first, so there is no instant at which neither key is accepted.
            w.write(&active(new_key_id, &key, now, now, &actor, reason.clone()))
                .await?;
            let mut rotated = old.status.clone();
            rotated.state = KeyState::Rotated;
            rotated.grace_until = Some(grace_until);
            rotated.replaced_by = Some(new_key_id.clone());
            rotated.reason = reason.clone().or(Some("rotated".into()));
            rotated.updated_at = now;
            rotated.updated_by = actor.clone();
            w.write(&rotated).await?;
            println!(
                "rotated {key_id} -> {new_key_id}; {key_id} accepted until {}",
                format_rfc3339(grace_until).unwrap_or_default()
            );
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Revoke {
            ref key_id,
            ref reason,
            emergency,
        } => {
            let Some(old) = registry.get(key_id) else {
                eprintln!("key {key_id} is not registered");
                return Ok(ExitCode::FAILURE);
            };
            let mut revoked = old.status.clone();
            revoked.state = KeyState::Revoked;
            revoked.revoked_at = Some(now);
            revoked.reason = Some(reason.clone());
            revoked.emergency = emergency;
            revoked.updated_at = now;
            revoked.updated_by = actor.clone();
            writer(&args, &kafka).await?.write(&revoked).await?;
            println!(
                "revoked {key_id}{}",
                if emergency {
                    " (emergency: every event rejected)"
                } else {
                    ""
                }
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn load(args: &KeysArgs, kafka: &KafkaClientConfig) -> anyhow::Result<Arc<KeyRegistry>> {
    let (registry, task) = KeyRegistry::start(
        &KeyRegistryConfig {
            topic: args.topic.clone(),
            schema_registry_url: args.schema_registry.clone(),
        },
        kafka,
        None,
    )
    .await
    .with_context(|| {
        format!(
            "reading {} (does it exist? `vigil topology apply`)",
            args.topic
        )
    })?;
    let loaded = registry.wait_loaded(LOAD_TIMEOUT).await;
    task.abort();
    loaded.with_context(|| format!("reading {}", args.topic))?;
    Ok(registry)
}

async fn writer(args: &KeysArgs, kafka: &KafkaClientConfig) -> anyhow::Result<KeyStatusWriter> {
    KeyStatusWriter::new(&args.topic, &args.schema_registry, kafka)
        .await
        .context("preparing the key status producer")
}

fn read_key(path: &PathBuf) -> anyhow::Result<PublicKey> {
    PublicKey::from_spki_pem_file(path)
        .with_context(|| format!("reading public key {}", path.display()))
}

fn active(
    key_id: &str,
    key: &PublicKey,
    valid_from: i64,
    now: i64,
    actor: &str,
    reason: Option<String>,
) -> KeyStatus {
    KeyStatus {
        reason,
        updated_at: now,
        ..KeyStatus::active(key_id, key, valid_from, actor)
    }
}

fn state_name(v: &KeyView) -> &'static str {
    match (v.status.state, v.status.emergency) {
        (KeyState::Active, _) => "active",
        (KeyState::Rotated, _) => "rotated",
        (KeyState::Revoked, false) => "revoked",
        (KeyState::Revoked, true) => "revoked!",
    }
}

fn print_table(keys: &[Arc<KeyView>]) {
    let time = |t: Option<i64>| t.and_then(format_rfc3339).unwrap_or_else(|| "-".into());
    let rows: Vec<[String; 6]> = keys
        .iter()
        .map(|v| {
            [
                v.status.key_id.clone(),
                state_name(v).to_owned(),
                time(Some(v.status.valid_from)),
                time(v.status.grace_until),
                time(v.status.revoked_at),
                v.status.reason.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let header = [
        "KEY_ID",
        "STATE",
        "VALID_FROM",
        "GRACE_UNTIL",
        "REVOKED_AT",
        "REASON",
    ];
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for r in &rows {
        line(r.iter().map(String::as_str).collect());
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn grace_accepts_hours_minutes_seconds_and_days() {
        assert_eq!(parse_grace("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_grace("30m"), Ok(Duration::from_secs(1_800)));
        assert_eq!(parse_grace("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_grace("7d"), Ok(Duration::from_secs(604_800)));
        for bad in ["", "24", "h", "5w", "-1h", "1.5h"] {
            assert!(parse_grace(bad).is_err(), "{bad}");
        }
    }
}
