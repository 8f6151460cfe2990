#![allow(clippy::expect_used, clippy::unwrap_used)] // tests fail loudly

//! `vigil demo --ci` end to end against the stack: exit 0, a JSON summary whose figures say
//! every stage saw what it should, well under two minutes, nothing left behind, and no log
//! line on the terminal (they go to the run's log file, whose path is printed).

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::Value;
use vigil_test_support::ChildProcess;

/// One demo at a time: two at once would share the 2-core machine and the time bounds.
static ONE_DEMO: Mutex<()> = Mutex::new(());

/// Runs `vigil demo <args>` against the stack; returns its exit status, stdout, stderr and how
/// long it took.
fn run_demo(args: &[&str]) -> (ExitStatus, String, String, Duration) {
    let _one = ONE_DEMO
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let started = Instant::now();
    let mut child = ChildProcess::spawn(
        "vigil demo",
        Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("demo")
            .args(args)
            .env(
                "VIGIL_KAFKA_BOOTSTRAP",
                vigil_test_support::kafka_bootstrap(),
            )
            .env(
                "VIGIL_SCHEMA_REGISTRY_URL",
                vigil_test_support::schema_registry_url(),
            )
            .env("VIGIL_CLICKHOUSE_URL", vigil_test_support::clickhouse_url())
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let mut stdout = child.take_stdout();
    let mut stderr = child.take_stderr();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        stderr.read_to_string(&mut s).unwrap();
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(115) {
            child.kill();
            panic!(
                "vigil demo --ci still running after 115s:\n{}",
                err.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let elapsed = started.elapsed();
    let (stdout, stderr) = (out.join().unwrap(), err.join().unwrap());
    (status, stdout, stderr, elapsed)
}

#[test]
fn demo_ci_passes_and_cleans_up() {
    let (status, stdout, stderr, elapsed) = run_demo(&["--ci", "--events-per-platform", "50"]);
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(elapsed < Duration::from_secs(110), "took {elapsed:?}");
    assert!(
        stderr.contains("vigil-demo-"),
        "the namespace is printed: {stderr}"
    );
    for line in stdout.lines().chain(stderr.lines()) {
        assert!(!is_log_line(line), "a log line on the terminal: {line}");
    }
    let log = stderr
        .lines()
        .find_map(|l| l.strip_prefix("logs of this run: "))
        .unwrap_or_else(|| panic!("the log file is printed: {stderr}"));
    let log_text = std::fs::read_to_string(log).unwrap_or_else(|e| panic!("{log}: {e}"));
    assert!(!log_text.trim().is_empty(), "{log} is empty");
    assert!(
        log_text.lines().any(is_log_line),
        "{log} holds log lines: {log_text}"
    );
    std::fs::remove_file(log).unwrap();

    let s: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(s["ok"], true, "{stdout}");
    assert_eq!(s["failed_stages"].as_array().unwrap().len(), 0);
    for st in s["stages"].as_array().unwrap() {
        assert_eq!(st["ok"], true, "{st}");
    }
    // 3 platforms × 50 normal events + 3 trace hops + 8 forged + 2 replayed + 2 unknown-key
    // + 3 revoked + 1 poison, 5 key operation events signed by the administrators (3 keys
    // registered, the plan approved, one key revoked), and 1 forged key registry record, which
    // the verifier refuses and reports as an untrusted verdict.
    assert_eq!(s["events"]["sent"], 175);
    assert_eq!(s["events"]["verified"], 174);
    assert_eq!(s["events"]["by_state"]["valid"], 159);
    assert_eq!(s["events"]["by_state"]["bad"], 9);
    assert_eq!(s["events"]["by_state"]["revoked"], 3);
    assert_eq!(s["events"]["by_state"]["untrusted"], 3);
    assert_eq!(s["events"]["by_reason"]["nonce replayed"], 1);
    for p in ["rust", "python", "js", "cli"] {
        let v = &s["events"]["per_platform"][p];
        assert_eq!(v["sent"], v["verified"], "{p}: {v}");
    }
    assert_eq!(s["events"]["per_platform"]["python"]["bad"], 8);
    assert_eq!(s["events"]["per_platform"]["js"]["revoked"], 3);

    for attack in [
        "brute_force",
        "forged_key_record",
        "revoked_key",
        "replayed_nonce",
        "cross_platform_trace",
    ] {
        assert_eq!(
            s["alerts"]["expected"][attack]["fired"], true,
            "{attack}: {}",
            s["alerts"]
        );
    }
    let distinct = s["webhook"]["distinct_alerts"].as_u64().unwrap();
    assert!(distinct >= 3, "{}", s["webhook"]);
    assert!(s["webhook"]["hmac_valid"].as_u64().unwrap() >= distinct);
    assert_eq!(s["webhook"]["undelivered_alerts"], 0);

    assert_eq!(s["dlq"]["entries"], 1);
    assert_eq!(s["dlq"]["by_class"]["bad_data"], 1);

    assert_eq!(s["audit"]["rows"], 174);
    // Every valid event re-verified against the key the trail's own key operations registered.
    assert_eq!(s["audit"]["verify"]["clean"], true);
    assert_eq!(s["audit"]["verify"]["rows"], 174);
    assert_eq!(s["audit"]["verify"]["signatures_valid"], 159);
    assert_eq!(s["audit"]["verify"]["signatures_unchecked"], 0);

    // One trace: a Python process started it, a Node.js process continued it, the Rust
    // emitter ended it; the SOC timeline query gives the three hops in order, all verified.
    let trace_id = s["trace"]["trace_id"].as_str().unwrap();
    assert_eq!(trace_id.len(), 32, "{}", s["trace"]);
    assert!(!s["trace"]["sdks"]["python"].as_str().unwrap().is_empty());
    assert!(!s["trace"]["sdks"]["js"].as_str().unwrap().is_empty());
    let hops = s["trace"]["timeline"].as_array().unwrap();
    let platforms: Vec<&str> = hops
        .iter()
        .map(|h| h["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["python", "js", "rust"], "{hops:?}");
    let services: Vec<&str> = hops
        .iter()
        .map(|h| h["service"].as_str().unwrap())
        .collect();
    assert_eq!(
        services,
        ["fraud-scoring", "web-checkout", "payments-api"],
        "{hops:?}"
    );
    for h in hops {
        assert_eq!(h["status"], "failure", "{h}");
        assert_eq!(h["state"], "valid", "{h}");
    }

    let by_key = s["soc_queries"]["failed_verifications_by_key_24h"]["rows"]
        .as_array()
        .unwrap();
    let python = by_key
        .iter()
        .find(|r| r["key_id"] == "demo-python")
        .unwrap();
    assert_eq!(python["bad"], 8);
    // Who changed which key: the three registrations, each planned by one administrator and
    // approved by the other, and the revocation of the js key.
    let ops = s["soc_queries"]["key_operations"]["rows"]
        .as_array()
        .unwrap();
    let registered: Vec<&Value> = ops
        .iter()
        .filter(|r| r["activity"] == "key_registered")
        .collect();
    assert_eq!(registered.len(), 3, "{ops:?}");
    for r in registered {
        assert_eq!(r["state"], "valid", "{r}");
        assert_ne!(r["planned_by"], r["approved_by"], "{r}");
        assert_eq!(r["signed_by"], r["approved_by"], "{r}");
    }
    assert!(
        ops.iter()
            .any(|r| r["activity"] == "key_revoked" && r["key_id"] == "demo-js")
    );
    let top = s["soc_queries"]["top_rejected_producers"]["rows"]
        .as_array()
        .unwrap();
    assert_eq!(top[0]["platform"], "python", "{top:?}");

    // The run's topics were deleted at the end (deletion reaches metadata asynchronously).
    let consumer: BaseConsumer = vigil_test_support::client_config().create().unwrap();
    let prefix = format!(
        "{}.",
        s["namespace"]["consumer_group_prefix"].as_str().unwrap()
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let md = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .unwrap();
        let left: Vec<String> = md
            .topics()
            .iter()
            .map(|t| t.name().to_owned())
            .filter(|n| n.starts_with(&prefix))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn demo_without_the_python_sdk_says_how_to_build_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["demo", "--ci"])
        .env("VIGIL_SDK_PYTHON", "/nonexistent/python")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("VIGIL_SDK_PYTHON") && stderr.contains("scripts/sdk-python"),
        "{stderr}"
    );
    // It stops before touching the stack.
    assert!(!stderr.contains("namespace"), "{stderr}");
}

#[test]
fn demo_verbose_prints_the_logs_instead_of_writing_a_file() {
    let (status, stdout, stderr, _) =
        run_demo(&["--ci", "--verbose", "--events-per-platform", "5"]);
    assert!(
        status.success(),
        "exit {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.lines().any(is_log_line),
        "--verbose prints log lines: {stderr}"
    );
    assert!(
        !stderr.contains("logs of this run: "),
        "no log file with --verbose: {stderr}"
    );
    assert!(
        !stdout.lines().any(is_log_line),
        "stdout holds only the summary: {stdout}"
    );
    let s: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(s["ok"], true, "{stdout}");
}

/// Whether `line` is a tracing line (`<RFC 3339 time>  WARN target: ...`, colours or not)
/// rather than the demo's own output.
fn is_log_line(line: &str) -> bool {
    let line = strip_ansi(line);
    let b = line.trim_start().as_bytes();
    let timestamped =
        b.len() > 20 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[10] == b'T';
    timestamped
        || [" WARN ", " ERROR ", " INFO ", " DEBUG ", "rdkafka::"]
            .iter()
            .any(|level| line.contains(level))
}

/// Drops ANSI colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
