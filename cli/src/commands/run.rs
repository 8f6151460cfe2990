//! `vigil run <service>`: runs one consumer service until SIGTERM.
//!
//! Every service has the same shape and every arm lives here: load the config (`--config`,
//! `VIGIL_*` overrides) with the service's `load`, `validate` it naming the offending key, serve
//! `/metrics` `/healthz` `/readyz`, run the service's `run(&config, &telemetry, shutdown)` until
//! SIGTERM or SIGINT, and log its summary.

use std::fmt::Debug;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, ValueEnum};
use vigil_consumer::shutdown_signal;
use vigil_topology::Telemetry;

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
    let path = args.config.as_deref();
    let listen = args.metrics_listen;
    let telemetry = Telemetry::new();
    match args.service {
        Service::Verifier => {
            let config = vigil_verifier::VerifierConfig::load(path)?;
            config.validate()?;
            let run = vigil_verifier::run(&config, &telemetry, shutdown_signal());
            until_signal("verifier", &telemetry, listen, run).await
        }
        Service::AuditSink => {
            let config = vigil_audit_sink::AuditSinkConfig::load(path)?;
            config.validate()?;
            let run = vigil_audit_sink::run(&config, &telemetry, shutdown_signal());
            until_signal("audit sink", &telemetry, listen, run).await
        }
        Service::Alerter => {
            let shown = path.map_or_else(|| "<defaults>".to_owned(), |p| p.display().to_string());
            let config = vigil_alerter::AlerterConfig::load(path)?;
            config.validate(&shown)?;
            let run = vigil_alerter::run(&config, &telemetry, shutdown_signal());
            until_signal("alerter", &telemetry, listen, run).await
        }
        Service::Correlator => {
            let config = vigil_correlator::CorrelatorConfig::load(path)?;
            config.validate()?;
            let run = vigil_correlator::run(&config, &telemetry, shutdown_signal());
            until_signal("correlator", &telemetry, listen, run).await
        }
    }
}

/// Serves `/metrics` `/healthz` `/readyz` of `telemetry` on `listen`, then drives the service's
/// `run` future (not started before: futures are lazy) until it ends, and logs its summary.
async fn until_signal<S, E>(
    name: &'static str,
    telemetry: &Telemetry,
    listen: SocketAddr,
    run: impl Future<Output = Result<S, E>>,
) -> anyhow::Result<ExitCode>
where
    S: Debug,
    E: std::error::Error + Send + Sync + 'static,
{
    let (addr, server) = telemetry
        .serve(listen)
        .await
        .context("starting the metrics server")?;
    tracing::info!(%addr, "metrics server listening");
    let result = run.await;
    server.abort();
    let summary = result.context(name)?;
    tracing::info!(?summary, "{name} stopped");
    Ok(ExitCode::SUCCESS)
}
