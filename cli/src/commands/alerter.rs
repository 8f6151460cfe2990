//! `vigil run alerter`: consumes alerts, routes them to webhook / Slack / PagerDuty receivers,
//! escalates unacknowledged ones, and serves the ack / silence API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

/// Runs the alerter: loads the config (`--config` YAML, `VIGIL_*` overrides), validates it
/// naming the file and key, serves `/metrics` `/healthz` `/readyz`, and consumes until SIGTERM
/// or SIGINT.
pub async fn run_alerter(
    config: Option<&Path>,
    metrics_listen: SocketAddr,
) -> anyhow::Result<ExitCode> {
    let shown = config.map_or_else(|| "<defaults>".to_owned(), |p| p.display().to_string());
    let config = vigil_alerter::AlerterConfig::load(config)?;
    config.validate(&shown)?;
    let telemetry = vigil_topology::Telemetry::new();
    let (addr, server) = telemetry
        .serve(metrics_listen)
        .await
        .context("starting the metrics server")?;
    tracing::info!(%addr, "metrics server listening");
    let result = vigil_alerter::run(
        &config,
        &shown,
        &telemetry,
        vigil_consumer::shutdown_signal(),
    )
    .await;
    server.abort();
    let summary = result.context("alerter")?;
    tracing::info!(?summary, "alerter stopped");
    Ok(ExitCode::SUCCESS)
}
