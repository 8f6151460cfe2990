#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! The Prometheus config and alerting rules in deploy/prometheus pass Prometheus' own tooling:
//! `promtool check rules` and `check config` (with lint findings fatal), and `promtool test
//! rules` on deploy/prometheus/tests, which must give every alert a case that fires it and one
//! that must not. promtool is the one docker-compose's Prometheus image ships (3.5.0), built by
//! `scripts/promtool` into .cache on first use (~4 min cold; .ci/run builds it before the suite).
//! A missing Go toolchain fails this test: it never passes without promtool having run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml::Value;

fn root() -> PathBuf {
    vigil_test_support::pack::repo_root()
}

fn yaml_files(rel_dir: &str) -> Vec<PathBuf> {
    let dir = root().join(rel_dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml" || x == "yaml"))
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no YAML files in {}", dir.display());
    out
}

fn read_yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// Runs `scripts/promtool ARGS`: (success, stdout, stderr).
fn run_promtool(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(root().join("scripts/promtool"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("scripts/promtool runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `scripts/promtool ARGS` and returns its stdout; panics with both streams on failure.
fn promtool(args: &[&str]) -> String {
    let (ok, stdout, stderr) = run_promtool(args);
    assert!(
        ok,
        "scripts/promtool {} failed:\n{stdout}\n{stderr}",
        args.join(" ")
    );
    stdout
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("repository paths are UTF-8")
}

#[test]
fn rules_pass_promtool_check_with_lint() {
    for f in yaml_files("deploy/prometheus/rules") {
        let out = promtool(&["check", "rules", "--lint=all", "--lint-fatal", path_str(&f)]);
        assert!(out.contains("SUCCESS"), "{}: {out}", f.display());
    }
}

/// Grafana's interval variables, replaced by what Grafana would put there, so the query is
/// what Prometheus receives.
fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
}

#[test]
fn dashboard_queries_parse_as_promql() {
    // Each query becomes a recording rule, so promtool's parser (the one Prometheus uses)
    // checks its syntax and types: a typo in a panel would otherwise show only as "no data".
    let exprs = vigil_test_support::pack::dashboard_exprs();
    assert!(
        exprs.len() >= 20,
        "dashboards have only {} expressions",
        exprs.len()
    );
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, e))| {
            let promql = grafana_to_promql(e);
            assert!(!promql.contains('$'), "unknown Grafana variable in {e}");
            serde_json::json!({ "record": format!("vigil_dashboard:query_{i}"), "expr": promql })
        })
        .collect();
    let file = root().join(format!(
        "target/tmp/dashboard-queries-{}.yml",
        std::process::id()
    ));
    std::fs::create_dir_all(file.parent().expect("has a parent")).expect("target/tmp");
    let doc = serde_json::json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    // JSON is YAML: promtool reads it as a rule file.
    std::fs::write(&file, doc.to_string()).expect("write rule file");
    let (ok, stdout, stderr) = run_promtool(&["check", "rules", path_str(&file)]);
    let _ = std::fs::remove_file(&file);
    if !ok {
        // Name the panel query behind each failing rule index promtool reports.
        let named: Vec<String> = exprs
            .iter()
            .enumerate()
            .filter(|(i, _)| stderr.contains(&format!("\"vigil_dashboard:query_{i}\"")))
            .map(|(_, (f, e))| format!("{f}: {e}"))
            .collect();
        panic!(
            "dashboard queries do not parse:\n{stderr}\n{}",
            named.join("\n")
        );
    }
    assert!(
        stdout.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{stdout}"
    );
}

#[test]
fn rule_unit_tests_pass() {
    let tests = yaml_files("deploy/prometheus/tests");
    let mut args = vec!["test", "rules"];
    args.extend(tests.iter().map(|p| path_str(p)));
    let out = promtool(&args);
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every alert has a test case that expects it to fire and one that expects it silent.
#[test]
fn every_alert_has_a_firing_and_a_silent_case() {
    let mut alerts = BTreeSet::new();
    for f in yaml_files("deploy/prometheus/rules") {
        let doc = read_yaml(&f);
        for group in doc["groups"].as_sequence().expect("groups is a list") {
            for rule in group["rules"].as_sequence().expect("rules is a list") {
                if let Some(name) = rule["alert"].as_str() {
                    alerts.insert(name.to_owned());
                }
            }
        }
    }
    assert!(!alerts.is_empty(), "no alerting rules found");

    // alert name -> (has a case with alerts expected, has a case with none expected)
    let mut cases: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for f in yaml_files("deploy/prometheus/tests") {
        let doc = read_yaml(&f);
        for test in doc["tests"].as_sequence().expect("tests is a list") {
            let Some(checks) = test["alert_rule_test"].as_sequence() else {
                continue;
            };
            for check in checks {
                let name = check["alertname"].as_str().expect("alertname is a string");
                let fires = check["exp_alerts"]
                    .as_sequence()
                    .is_some_and(|a| !a.is_empty());
                let entry = cases.entry(name.to_owned()).or_default();
                if fires {
                    entry.0 = true;
                } else {
                    entry.1 = true;
                }
            }
        }
    }
    let unknown: Vec<&String> = cases.keys().filter(|n| !alerts.contains(*n)).collect();
    assert!(
        unknown.is_empty(),
        "tests name alerts that no rule defines: {unknown:?}"
    );
    let missing: Vec<String> = alerts
        .iter()
        .filter_map(|a| match cases.get(a) {
            Some((true, true)) => None,
            Some((fires, silent)) => {
                Some(format!("{a} (firing case: {fires}, silent case: {silent})"))
            }
            None => Some(format!("{a} (no test)")),
        })
        .collect();
    assert!(
        missing.is_empty(),
        "alerts without both a firing and a silent case: {missing:?}"
    );
}

/// The scrape config as the Prometheus container sees it: its `rule_files` globs, mapped through
/// docker-compose.yml's volume mounts to this checkout, must pick up every rules file.
#[test]
fn scrape_config_passes_promtool_check_with_the_mounted_rules() {
    let compose = read_yaml(&root().join("docker-compose.yml"));
    let volumes = compose["services"]["prometheus"]["volumes"]
        .as_sequence()
        .expect("docker-compose.yml mounts volumes into prometheus");
    // container path -> host path, for bind mounts of this repository
    let mounts: Vec<(String, PathBuf)> = volumes
        .iter()
        .filter_map(Value::as_str)
        .filter_map(|v| {
            let mut parts = v.split(':');
            let host = parts.next()?;
            let container = parts.next()?;
            host.starts_with("./")
                .then(|| (container.to_owned(), root().join(&host[2..])))
        })
        .collect();
    let config_host = mounts
        .iter()
        .find(|(c, _)| c == "/etc/prometheus/prometheus.yml")
        .map(|(_, h)| h.clone())
        .expect("docker-compose.yml mounts a prometheus.yml");

    let mut config = read_yaml(&config_host);
    let globs = config["rule_files"]
        .as_sequence_mut()
        .expect("prometheus.yml has rule_files");
    assert!(!globs.is_empty(), "prometheus.yml loads no rule files");
    for glob in globs.iter_mut() {
        let in_container = glob
            .as_str()
            .expect("rule_files entries are strings")
            .to_owned();
        let (prefix, host) = mounts
            .iter()
            .find(|(c, _)| in_container.starts_with(&format!("{c}/")))
            .unwrap_or_else(|| panic!("rule file {in_container} is not under a mounted folder"));
        let rest = &in_container[prefix.len() + 1..];
        *glob = Value::String(path_str(&host.join(rest)).to_owned());
    }

    let dir = std::env::temp_dir().join(format!("vigil-promtool-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("prometheus.yml");
    std::fs::write(
        &file,
        serde_yaml::to_string(&config).expect("config serializes"),
    )
    .expect("temp config written");
    let result = std::panic::catch_unwind(|| {
        promtool(&[
            "check",
            "config",
            "--lint=all",
            "--lint-fatal",
            path_str(&file),
        ])
    });
    let _ = std::fs::remove_dir_all(&dir);
    let out = result.unwrap_or_else(|e| std::panic::resume_unwind(e));

    for rules in yaml_files("deploy/prometheus/rules") {
        assert!(
            out.contains(&format!("Checking {}", rules.display())),
            "the mounted rule_files globs do not load {}:\n{out}",
            rules.display()
        );
    }
}
