//! `vigil topology validate | diff | apply`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use vigil_topology::{KafkaClientConfig, ReplicationOverride, Topology, TopologyAdmin};

/// Arguments of `vigil topology`.
#[derive(Debug, Args)]
pub struct TopologyArgs {
    /// Topology file; the built-in `topology/topics.yaml` when omitted.
    #[arg(long, global = true, env = "VIGIL_TOPOLOGY_FILE")]
    file: Option<PathBuf>,
    /// Kafka bootstrap servers.
    #[arg(
        long,
        global = true,
        env = "VIGIL_KAFKA_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    bootstrap: String,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Check the file without contacting Kafka.
    Validate,
    /// Print the drift between the file and the cluster; exit 1 when there is any.
    Diff,
    /// Create missing topics, raise partition counts and update configs; never delete.
    Apply,
}

/// Runs `vigil topology`.
pub async fn run(args: TopologyArgs) -> anyhow::Result<ExitCode> {
    let overrides = ReplicationOverride::from_env()?;
    let topology = match &args.file {
        Some(path) => Topology::load(path, overrides)?,
        None => Topology::builtin(overrides)?,
    };
    if let Action::Validate = args.action {
        println!(
            "{}: {} topics, valid",
            topology.path.display(),
            topology.topics.len()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let kafka = KafkaClientConfig::new(args.bootstrap);
    kafka.validate()?;
    let admin = TopologyAdmin::connect(&kafka)?;
    let plan = admin.plan(&topology).await.context("reading the cluster")?;
    let apply = matches!(args.action, Action::Apply);
    if plan.is_empty() {
        println!(
            "no drift: {} topics match {}",
            topology.topics.len(),
            topology.path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for line in plan.lines() {
        println!("{line}");
    }
    if !apply {
        println!(
            "{} difference(s)",
            plan.changes.len() + plan.conflicts.len()
        );
        return Ok(ExitCode::from(1));
    }
    admin
        .apply(&topology, &plan)
        .await
        .context("applying the topology")?;
    println!("applied {} change(s)", plan.changes.len());
    Ok(ExitCode::SUCCESS)
}
