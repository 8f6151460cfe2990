//! The `vigil` command, the single entry point users type.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vigil_topology::LogFormat;

mod commands;

/// Vigil: a Kafka pipeline for signed security verification events.
#[derive(Debug, Parser)]
#[command(name = "vigil", version, about, propagate_version = true)]
struct Cli {
    /// Log output format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "VIGIL_LOG_FORMAT")]
    log_format: LogFormat,
    /// Async worker threads (default: one per core; one for `run verifier`, see
    /// `Service::default_worker_threads`). Services keep librdkafka's threads and the
    /// verifier's signature thread besides these.
    #[arg(long, global = true, env = "VIGIL_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    worker_threads: Option<u16>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, diff and apply the Kafka topic topology.
    Topology(commands::topology::TopologyArgs),
    /// Send signed events from a JSON-lines file.
    Produce(commands::produce::ProduceArgs),
    /// Run one consumer service until SIGTERM.
    Run(commands::run::RunArgs),
    /// Register, rotate, revoke and list signing keys (the `vigil.keys` registry).
    Keys(commands::keys::KeysArgs),
    /// Inspect, count and replay dead letters.
    Dlq(commands::dlq::DlqArgs),
    /// Migrate, verify and export the ClickHouse audit trail.
    Audit(commands::audit::AuditArgs),
    /// Check rule files and backtest them offline over a JSON-lines file.
    Rules(commands::rules::RulesArgs),
    /// Push real events through every service in a throwaway namespace and show what each saw.
    Demo(commands::demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    let workers = cli.worker_threads.map(usize::from).or(match &cli.command {
        Command::Run(args) => args.service.default_worker_threads(),
        _ => None,
    });
    if let Some(n) = workers {
        runtime.worker_threads(n);
    }
    match runtime.enable_all().build() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> ExitCode {
    // The demo installs its own subscriber: its logs go to the run's log file.
    if !matches!(cli.command, Command::Demo(_)) {
        vigil_topology::telemetry::init_tracing(cli.log_format, "warn,vigil=info");
    }
    let result = match cli.command {
        Command::Topology(args) => commands::topology::run(args).await,
        Command::Produce(args) => commands::produce::run(args).await,
        Command::Run(args) => commands::run::run(args).await,
        Command::Keys(args) => commands::keys::run(args).await,
        Command::Dlq(args) => commands::dlq::run(args).await,
        Command::Audit(args) => commands::audit::run(args).await,
        Command::Rules(args) => commands::rules::run(args).await,
        Command::Demo(args) => commands::demo::run(args, cli.log_format).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
