//! Where the run's logs go: a file named after the namespace, so the services' and
//! librdkafka's WARN lines do not interleave with the progress display; with `--verbose`,
//! stderr.

use std::fs::File;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tracing_subscriber::EnvFilter;
use vigil_pipeline::Namespace;
use vigil_topology::LogFormat;

/// What the demo logs (`RUST_LOG` overrides it): what `vigil run` logs, for every service.
const FILTER: &str = "warn,vigil=info";

/// Returns the log file of the run of `ns`: `<temp dir>/vigil-demo/<namespace>.log`.
fn path(ns: &Namespace) -> PathBuf {
    std::env::temp_dir()
        .join("vigil-demo")
        .join(format!("{}.log", ns.name()))
}

/// Installs the tracing subscriber of the run (librdkafka's log lines reach it through the
/// `log` bridge): into the run's log file, whose path it returns, or on stderr if `verbose`.
pub(super) fn init(
    format: LogFormat,
    ns: &Namespace,
    verbose: bool,
) -> anyhow::Result<Option<PathBuf>> {
    if verbose {
        vigil_topology::telemetry::init_tracing(format, FILTER);
        return Ok(None);
    }
    let path = path(ns);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the log folder {}", dir.display()))?;
    }
    // A new file only: the random namespace names it, and an existing path (a symlink
    // planted in a shared temp dir) is never followed.
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(&path)
        .with_context(|| format!("creating the log file {}", path.display()))?;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(Arc::new(file));
    // A subscriber installed before (tests running the command twice) keeps its place.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    tracing::info!(namespace = ns.name(), "vigil demo starting");
    Ok(Some(path))
}
