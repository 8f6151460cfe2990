//! `vigil rules test RULES_DIR EVENTS.jsonl`: runs a rule directory offline over a file of
//! events and prints every alert that fires (backtesting), one JSON object per line.
//!
//! Each input line is a JSON object: either a `VerifiedEvent` as serde writes it, or a flat
//! field map with the names rules address (see `rules/README.md`), with `occurred_at` as
//! microseconds or RFC 3339 text.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Subcommand};
use vigil_correlator::{Correlator, RulePack};
use vigil_schemas::VerifiedEvent;
use vigil_schemas::model::parse_rfc3339;

/// Arguments of `vigil rules`.
#[derive(Debug, Args)]
pub struct RulesArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RulesCommand,
}

/// `vigil rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Runs rules offline over a JSON-lines file and prints what fires.
    Test {
        /// Directory of Sigma rule files.
        rules_dir: PathBuf,
        /// JSON-lines events (VerifiedEvent JSON or flat field maps).
        events: PathBuf,
        /// Allowed lateness, milliseconds.
        #[arg(long, default_value_t = 30_000)]
        allowed_lateness_ms: u64,
    },
    /// Loads a rule directory and reports the first bad rule (file:line: reason).
    Check {
        /// Directory of Sigma rule files.
        rules_dir: PathBuf,
    },
}

/// Runs `vigil rules`.
pub async fn run(args: RulesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        RulesCommand::Check { rules_dir } => match RulePack::load_dir(&rules_dir) {
            Ok(pack) => {
                println!(
                    "{} rules in {} files: ok",
                    pack.rule_count(),
                    pack.files.len()
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(2))
            }
        },
        RulesCommand::Test {
            rules_dir,
            events,
            allowed_lateness_ms,
        } => test(&rules_dir, &events, allowed_lateness_ms),
    }
}

fn occurred_at(v: &serde_json::Value) -> Option<i64> {
    match v.get("occurred_at")? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => parse_rfc3339(s).or_else(|| s.parse().ok()),
        _ => None,
    }
}

fn test(rules_dir: &Path, events: &Path, allowed_lateness_ms: u64) -> anyhow::Result<ExitCode> {
    let pack = match RulePack::load_dir(rules_dir) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(2));
        }
    };
    let settings = vigil_correlator::EngineSettings {
        allowed_lateness_us: i64::try_from(allowed_lateness_ms)
            .unwrap_or(i64::MAX / 1_000)
            .saturating_mul(1_000),
        ..vigil_correlator::EngineSettings::default()
    };
    let mut engine = Correlator::new(Arc::new(pack), settings)?;
    let file =
        std::fs::File::open(events).with_context(|| format!("opening {}", events.display()))?;
    let mut out = std::io::stdout().lock();
    let (mut n, mut fired) = (0_u64, 0_u64);
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("reading {}", events.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let alerts = if let Ok(v) = serde_json::from_str::<VerifiedEvent>(&line) {
            engine.process(&v)
        } else {
            let value: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not JSON", events.display(), i + 1))?;
            let ts = occurred_at(&value).with_context(|| {
                format!(
                    "{}:{}: no occurred_at (micros or RFC 3339)",
                    events.display(),
                    i + 1
                )
            })?;
            engine.process_fields(&value, ts)
        };
        n += 1;
        for a in alerts {
            fired += 1;
            writeln!(out, "{}", serde_json::to_string(&a)?)?;
        }
    }
    let stats = engine.stats();
    eprintln!(
        "{n} events, {fired} alerts, {} late, {} evictions",
        stats.late, stats.evictions
    );
    Ok(ExitCode::SUCCESS)
}
