//! The demo's python and js platforms: real Python and Node.js processes emitting through the
//! SDKs. The programs are `platforms/platform.py` and `platforms/platform.js` (embedded, written
//! to the run's work folder); each run is one job — a batch of normal traffic, or one hop of a
//! trace — and ends with a JSON report line on stdout.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;
use serde_json::Value;
use tokio::process::Command;
use vigil_pipeline::Endpoints;

/// How long one platform process may take (start, emit, close).
const JOB_TIMEOUT: Duration = Duration::from_secs(40);
/// The `cli` folder of the checkout this binary was built from; `scripts/sdk-python` and
/// `scripts/sdk-js` put the SDKs beside it when no `VIGIL_SDK_*` variable names them.
const CLI_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn checkout() -> &'static Path {
    let cli = Path::new(CLI_DIR);
    cli.parent().unwrap_or(cli)
}

const PYTHON_PROGRAM: &str = include_str!("platforms/platform.py");
const NODE_PROGRAM: &str = include_str!("platforms/platform.js");

/// Which SDK runs a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Runtime {
    /// The Rust SDK, in the demo's own process.
    InProcess,
    /// A Python process using the `vigil` package.
    Python,
    /// A Node.js process using the `vigil-sdk` package.
    Node,
}

/// What a platform process reported.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct JobReport {
    pub(super) emitted: u64,
    pub(super) in_flight: u64,
    pub(super) spooled: u64,
    /// The traceparent a `trace` job hands on to the next service.
    pub(super) traceparent: Option<String>,
}

/// The interpreters and SDK packages the platform processes run with, checked at start.
#[derive(Debug)]
pub(super) struct SdkRuntimes {
    python: PathBuf,
    node: PathBuf,
    js_package: PathBuf,
    /// `vigil.__version__` of the Python SDK.
    pub(super) python_sdk: String,
    /// `SDK_VERSION` of the Node.js SDK.
    pub(super) js_sdk: String,
    programs: PathBuf,
}

impl SdkRuntimes {
    /// Finds the Python SDK (`VIGIL_SDK_PYTHON`, an interpreter that can `import vigil`) and the
    /// Node.js SDK (`VIGIL_SDK_JS`, the built `vigil-sdk` package folder; `node` from `PATH` or
    /// `VIGIL_NODE`), defaulting to where the checkout's `scripts/sdk-*` build them, and writes
    /// the platform programs under `workdir`.
    pub(super) async fn locate(workdir: &Path) -> anyhow::Result<Self> {
        let python = env_path("VIGIL_SDK_PYTHON")
            .unwrap_or_else(|| checkout().join(".cache/sdk-venv/bin/python"));
        let node = env_path("VIGIL_NODE").unwrap_or_else(|| PathBuf::from("node"));
        let js_package =
            env_path("VIGIL_SDK_JS").unwrap_or_else(|| checkout().join("producers/js"));
        let python_sdk = probe(
            Command::new(&python).args(["-c", "import vigil; print(vigil.__version__)"]),
        )
        .await
        .with_context(|| {
            format!(
                "the python platform runs the Python SDK, and {} cannot import it: build it with \
                 `scripts/sdk-python` (or `pip install ./producers/python`) and set \
                 VIGIL_SDK_PYTHON to that interpreter",
                python.display()
            )
        })?;
        let js_sdk = probe(
            Command::new(&node)
                .args(["-e", "console.log(require(process.argv[1]).SDK_VERSION)"])
                .arg(&js_package),
        )
        .await
        .with_context(|| {
            format!(
                "the js platform runs the Node.js SDK, and `{} -e require(...)` cannot load it \
                 from {}: build it with `scripts/sdk-js` (or `npm install ./producers/js`) and \
                 set VIGIL_SDK_JS to the package folder",
                node.display(),
                js_package.display()
            )
        })?;
        let programs = workdir.join("platforms");
        std::fs::create_dir_all(&programs)?;
        std::fs::write(programs.join("platform.py"), PYTHON_PROGRAM)?;
        std::fs::write(programs.join("platform.js"), NODE_PROGRAM)?;
        Ok(SdkRuntimes {
            python,
            node,
            js_package,
            python_sdk,
            js_sdk,
            programs,
        })
    }

    /// One line naming the SDKs, for the progress output.
    pub(super) fn describe(&self) -> String {
        format!(
            "python: {} (vigil {}), js: {} (vigil-sdk {})",
            self.python.display(),
            self.python_sdk,
            self.node.display(),
            self.js_sdk
        )
    }

    /// Runs one platform job in a process of `runtime`; the signing key goes in the
    /// environment, never on the command line.
    pub(super) async fn run(
        &self,
        runtime: Runtime,
        job: &Value,
        signing_key_pem: &str,
        endpoints: &Endpoints,
    ) -> anyhow::Result<JobReport> {
        let mut cmd = match runtime {
            Runtime::Python => {
                let mut c = Command::new(&self.python);
                c.arg(self.programs.join("platform.py"));
                c
            }
            Runtime::Node => {
                let mut c = Command::new(&self.node);
                c.arg(self.programs.join("platform.js"))
                    .env("VIGIL_DEMO_SDK", &self.js_package);
                c
            }
            Runtime::InProcess => bail!("the rust platform runs in the demo's own process"),
        };
        cmd.arg(job.to_string())
            .env("VIGIL_DEMO_SIGNING_KEY", signing_key_pem)
            .env("VIGIL_KAFKA_BOOTSTRAP", &endpoints.kafka.bootstrap_servers)
            .env("VIGIL_SCHEMA_REGISTRY_URL", &endpoints.schema_registry_url)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let name = format!("{runtime:?} platform");
        let output = tokio::time::timeout(JOB_TIMEOUT, cmd.output())
            .await
            .map_err(|_| anyhow!("{name} still running after {}s", JOB_TIMEOUT.as_secs()))?
            .with_context(|| format!("starting the {name}"))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            bail!(
                "{name} exited with {}: {}",
                output.status,
                tail(&String::from_utf8_lossy(&output.stderr))
            );
        }
        let last = stdout.lines().last().unwrap_or_default();
        serde_json::from_str(last).with_context(|| format!("{name} reported {last:?}"))
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Runs a short check command; returns its trimmed stdout, or an error with its stderr.
async fn probe(cmd: &mut Command) -> anyhow::Result<String> {
    let output = tokio::time::timeout(
        Duration::from_secs(20),
        cmd.stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .map_err(|_| anyhow!("no answer within 20s"))??;
    if !output.status.success() {
        bail!("{}", tail(&String::from_utf8_lossy(&output.stderr)));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// What a failed process said: its error line (a Python traceback's last line, Node's
/// `Error: ...`), else its last few lines.
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(line) = lines.iter().rev().find(|l| l.contains("Error:")) {
        return (*line).to_owned();
    }
    lines[lines.len().saturating_sub(6)..].join(" | ")
}
