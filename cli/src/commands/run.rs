//! `vigil run <service>`: runs one consumer service until SIGTERM.
//!
//! Each service's arm is owned by that service's crate; this file only dispatches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};

/// Arguments of `vigil run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The service to run.
    #[arg(value_enum)]
    pub service: Service,
    /// Deployment config file (TOML; YAML for the alerter, whose routing tree nests); addresses
    /// also come from `VIGIL_…` environment variables.
    #[arg(long, env = "VIGIL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the `/metrics`, `/healthz` and `/readyz` server.
    #[arg(long, env = "VIGIL_METRICS_LISTEN", default_value = "127.0.0.1:9400")]
    pub metrics_listen: SocketAddr,
}

/// The services `vigil run` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Service {
    /// Verifies signatures of raw events against the key registry.
    Verifier,
    /// Stores verified events in ClickHouse as a hash-chained audit trail.
    AuditSink,
    /// Routes alerts to webhook / Slack / PagerDuty receivers, with dedup, silences and escalation.
    Alerter,
    /// Evaluates Sigma detection and correlation rules over verified events.
    Correlator,
}

impl Service {
    /// Async worker threads when `--worker-threads` is not given (`None`: one per core).
    ///
    /// The verifier checks signatures on its own thread, which bounds its throughput (~70k
    /// events/s per verification thread); its async side needs ~9 µs per event, so one worker
    /// keeps up with it and, measured by `scripts/bench-verifier` on the 2-core host
    /// (`BENCH_WORKERS=1` vs the default), spends 8.5 instead of 11–15 µs per event there,
    /// the rest being wake-ups between two workers.
    pub fn default_worker_threads(self) -> Option<usize> {
        match self {
            Service::Verifier => Some(1),
            Service::AuditSink | Service::Alerter | Service::Correlator => None,
        }
    }
}

/// Runs the chosen service.
pub async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    match args.service {
        Service::Verifier => run_verifier(&args).await,
        Service::AuditSink => {
            super::audit::run_sink(args.config.as_deref(), args.metrics_listen).await
        }
        Service::Alerter => {
            super::alerter::run_alerter(args.config.as_deref(), args.metrics_listen).await
        }
        Service::Correlator => {
            super::rules::run_correlator(args.config.as_deref(), args.metrics_listen).await
        }
    }
}

/// Runs the verifier: loads the config (`--config` TOML, `VIGIL_*` overrides), serves
/// `/metrics` `/healthz` `/readyz`, and consumes until SIGTERM or SIGINT.
async fn run_verifier(args: &RunArgs) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let config = vigil_verifier::VerifierConfig::load(args.config.as_deref())?;
    config.validate()?;
    let telemetry = vigil_topology::Telemetry::new();
    let (addr, server) = telemetry
        .serve(args.metrics_listen)
        .await
        .context("starting the metrics server")?;
    tracing::info!(%addr, "metrics server listening");
    let result = vigil_verifier::run(&config, &telemetry, vigil_consumer::shutdown_signal()).await;
    server.abort();
    let summary = result.context("verifier")?;
    tracing::info!(?summary, "verifier stopped");
    Ok(ExitCode::SUCCESS)
}
