#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! The observability pack is consistent with the code: every `vigil_*` metric a Grafana
//! dashboard or a Prometheus rule uses is registered by some crate, every rule links to a
//! runbook section that exists, and docker-compose provisions both and scrapes every service.
//! Pure: reads files and builds metrics in a local registry; needs no stack.
//!
//! How "registered" is decided: the metric constructors of the producer, consumer runtime,
//! verifier, alerter and audit sink are run against one `prometheus::Registry`, and each name is
//! probed against that registry's descriptors (registering a metric of the same name fails
//! exactly when a collector already declared it, labelled or not). The correlator and the key
//! registry keep their constructors private, so names with their prefixes are checked against
//! the string literals compiled from their sources instead.

use std::collections::BTreeSet;
use std::path::PathBuf;

use prometheus::{IntGauge, Registry};
use serde_json::Value;
use vigil_test_support::pack::{dashboard_exprs, files_with_ext, repo_root};

fn root() -> PathBuf {
    repo_root()
}

fn read(rel: &str) -> String {
    let p = root().join(rel);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()))
}

/// Every metric constructor that is public, run against one registry.
fn registry_of_all_services() -> Registry {
    let reg = Registry::new();
    let _producer = vigil_producer::ProducerMetrics::new(Some(&reg));
    vigil_consumer::ConsumerMetrics::register(&reg).expect("consumer metrics register");
    vigil_verifier::VerifierMetrics::register(&reg).expect("verifier metrics register");
    vigil_alerter::AlerterMetrics::register(&reg).expect("alerter metrics register");
    vigil_audit_sink::metrics::SinkMetrics::register(&reg).expect("audit-sink metrics register");
    reg
}

/// Returns whether a collector in `reg` already declares `name`: registering a probe of that
/// name fails when it does (same descriptor, or same name with other help and labels).
fn declared(reg: &Registry, name: &str) -> bool {
    let probe = IntGauge::new(name, "observability pack probe").expect("probe name is valid");
    match reg.register(Box::new(probe.clone())) {
        Ok(()) => {
            reg.unregister(Box::new(probe)).expect("probe unregisters");
            false
        }
        Err(_) => true,
    }
}

/// Crates whose metric constructors are private: prefix, and the source files holding them.
const SOURCE_CHECKED: &[(&str, &str)] = &[
    ("vigil_correlator_", "consumers/correlator/src"),
    (
        "vigil_key_registry_",
        "consumers/common/src/key_registry.rs",
    ),
];

/// Returns the `"vigil_…"` string literals in the Rust sources under `rel` (file or folder).
fn literals_in_sources(rel: &str) -> BTreeSet<String> {
    let path = root().join(rel);
    let files = if path.is_dir() {
        files_with_ext(rel, &["rs"])
    } else {
        vec![path]
    };
    let mut out = BTreeSet::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for name in metric_names(&text) {
            if text.contains(&format!("\"{name}\"")) {
                out.insert(name);
            }
        }
    }
    out
}

/// Extracts `vigil_[a-z0-9_]+` tokens that start at a word boundary.
fn metric_names(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    let mut i = 0;
    while let Some(pos) = text[i..].find("vigil_") {
        let start = i + pos;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        let mut end = start + "vigil_".len();
        while end < bytes.len()
            && (bytes[end].is_ascii_lowercase()
                || bytes[end].is_ascii_digit()
                || bytes[end] == b'_')
        {
            end += 1;
        }
        if boundary && end > start + "vigil_".len() {
            out.insert(text[start..end].to_owned());
        }
        i = end;
    }
    out
}

/// Every alerting rule: (file, alert name, expr, the whole rule).
fn rules() -> Vec<(String, String, String, serde_yaml::Value)> {
    let mut out = Vec::new();
    for f in files_with_ext("deploy/prometheus/rules", &["yml", "yaml"]) {
        let text = std::fs::read_to_string(&f).expect("rules readable");
        let doc: serde_yaml::Value = serde_yaml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not YAML: {e}", f.display()));
        let groups = doc["groups"].as_sequence().cloned().unwrap_or_default();
        assert!(!groups.is_empty(), "{} has no rule groups", f.display());
        for g in groups {
            for r in g["rules"].as_sequence().cloned().unwrap_or_default() {
                let name = r["alert"].as_str().unwrap_or_default().to_owned();
                let expr = r["expr"].as_str().unwrap_or_default().to_owned();
                out.push((f.display().to_string(), name, expr, r));
            }
        }
    }
    out
}

/// Returns the registered metric a used name refers to (histogram series map to their base).
fn resolve(
    used: &str,
    reg: &Registry,
    source_literals: &[(&str, BTreeSet<String>)],
) -> Option<String> {
    let mut candidates = vec![used.to_owned()];
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = used.strip_suffix(suffix) {
            candidates.push(base.to_owned());
        }
    }
    candidates.into_iter().find(|c| {
        match source_literals
            .iter()
            .find(|(prefix, _)| c.starts_with(prefix))
        {
            Some((_, names)) => names.contains(c),
            None => declared(reg, c),
        }
    })
}

#[test]
fn every_metric_used_by_dashboards_and_rules_is_registered() {
    let reg = registry_of_all_services();
    let literals: Vec<(&str, BTreeSet<String>)> = SOURCE_CHECKED
        .iter()
        .map(|(prefix, rel)| (*prefix, literals_in_sources(rel)))
        .collect();
    let mut uses: Vec<(String, String)> = dashboard_exprs();
    assert!(
        uses.len() >= 20,
        "dashboards have only {} expressions",
        uses.len()
    );
    let rule_list = rules();
    assert!(
        rule_list.len() >= 6,
        "only {} alerting rules",
        rule_list.len()
    );
    uses.extend(
        rule_list
            .into_iter()
            .map(|(f, name, expr, _)| (format!("{f} ({name})"), expr)),
    );

    let mut missing = Vec::new();
    let mut resolved = BTreeSet::new();
    for (origin, expr) in &uses {
        for name in metric_names(expr) {
            match resolve(&name, &reg, &literals) {
                Some(m) => {
                    resolved.insert(m);
                }
                None => missing.push(format!("{origin}: {name}")),
            }
        }
    }
    assert!(
        missing.is_empty(),
        "metrics used but registered by no crate:\n  {}",
        missing.join("\n  ")
    );
    // The pack covers every stage the issue names.
    for prefix in [
        "vigil_producer_",
        "vigil_consumer_",
        "vigil_verifier_",
        "vigil_alerter_",
        "vigil_audit_sink_",
    ] {
        assert!(
            resolved.iter().any(|m| m.starts_with(prefix)),
            "no dashboard or rule uses a {prefix}* metric"
        );
    }
}

#[test]
fn the_check_rejects_a_name_nobody_registers() {
    // Guards the probe itself: a made-up name and a made-up histogram series must not resolve,
    // while a real histogram series resolves to its base name.
    let reg = registry_of_all_services();
    let literals: Vec<(&str, BTreeSet<String>)> = SOURCE_CHECKED
        .iter()
        .map(|(prefix, rel)| (*prefix, literals_in_sources(rel)))
        .collect();
    assert_eq!(
        resolve("vigil_verifier_made_up_total", &reg, &literals),
        None
    );
    assert_eq!(
        resolve("vigil_correlator_made_up_total", &reg, &literals),
        None
    );
    assert_eq!(
        resolve("vigil_made_up_seconds_bucket", &reg, &literals),
        None
    );
    assert_eq!(
        resolve(
            "vigil_consumer_handle_duration_seconds_bucket",
            &reg,
            &literals
        )
        .as_deref(),
        Some("vigil_consumer_handle_duration_seconds")
    );
    // The probe leaves the registry as it found it.
    assert!(!declared(&reg, "vigil_verifier_made_up_total"));
    assert!(declared(&reg, "vigil_consumer_lag_records"));
}

#[test]
fn metric_names_are_extracted_at_word_boundaries() {
    let names = metric_names(
        "sum(rate(vigil_a_total[5m])) / on() x_vigil_b + vigil_c_bucket{job=\"vigil\"}",
    );
    let expected: BTreeSet<String> = ["vigil_a_total", "vigil_c_bucket"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(names, expected);
}

#[test]
fn every_rule_is_complete_and_links_to_an_existing_runbook_section() {
    let runbook = read("docs/operations.md");
    let anchors: BTreeSet<String> = runbook
        .lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| github_anchor(l.trim_start_matches('#').trim()))
        .collect();
    let mut names = BTreeSet::new();
    for (file, name, expr, rule) in rules() {
        assert!(!name.is_empty(), "{file}: a rule has no alert name");
        assert!(
            names.insert(name.clone()),
            "{file}: alert {name} declared twice"
        );
        assert!(!expr.trim().is_empty(), "{file}: {name} has no expr");
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["critical", "warning"].contains(&severity),
            "{file}: {name} severity is {severity:?}"
        );
        assert!(
            rule["annotations"]["summary"].as_str().is_some(),
            "{file}: {name} has no summary"
        );
        let url = rule["annotations"]["runbook_url"]
            .as_str()
            .unwrap_or_default();
        let anchor = url.strip_prefix("docs/operations.md#").unwrap_or_else(|| {
            panic!("{file}: {name} runbook_url {url:?} is not docs/operations.md#…")
        });
        assert!(
            anchors.contains(anchor),
            "{file}: {name} links to #{anchor}, which is no heading of docs/operations.md"
        );
    }
    // The list: DLQ growth, lag, verification spike, delivery failures, sink stalled,
    // service down.
    for wanted in [
        "VigilDeadLettersGrowing",
        "VigilConsumerLagHigh",
        "VigilVerificationFailureSpike",
        "VigilAlertDeliveryFailing",
        "VigilAuditSinkStalled",
        "VigilServiceDown",
    ] {
        assert!(names.contains(wanted), "rule {wanted} missing");
    }
}

/// GitHub's heading anchor: lowercase, spaces to dashes, punctuation other than `-`/`_` dropped.
fn github_anchor(heading: &str) -> String {
    heading
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

#[test]
fn dashboards_are_well_formed() {
    let files = files_with_ext("deploy/grafana/dashboards", &["json"]);
    assert!(
        !files.is_empty(),
        "no dashboards in deploy/grafana/dashboards"
    );
    for f in files {
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
        assert!(
            json["uid"].as_str().is_some_and(|u| !u.is_empty()),
            "{}: no uid",
            f.display()
        );
        let mut ids = BTreeSet::new();
        for p in json["panels"].as_array().expect("panels array") {
            let id = p["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "{}: panel id {id} repeated", f.display());
            if p["type"] == "row" {
                continue;
            }
            let title = p["title"].as_str().unwrap_or_default();
            let targets = p["targets"].as_array().map(Vec::len).unwrap_or(0);
            assert!(targets > 0, "{}: panel {title:?} has no query", f.display());
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
            assert!(
                x + w <= 24,
                "{}: panel {title:?} overflows the grid",
                f.display()
            );
        }
    }
}

#[test]
fn compose_provisions_the_pack_and_scrapes_every_service() {
    let compose: serde_yaml::Value = serde_yaml::from_str(&read("docker-compose.yml")).unwrap();
    let prometheus = read("deploy/prometheus/prometheus.yml");
    let prom: serde_yaml::Value = serde_yaml::from_str(&prometheus).unwrap();
    let services = compose["services"].as_mapping().expect("services");

    // Every service that serves /metrics is a scrape target.
    let targets: BTreeSet<String> = prom["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|j| {
            j["static_configs"]
                .as_sequence()
                .cloned()
                .unwrap_or_default()
        })
        .flat_map(|s| s["targets"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(str::to_owned))
        .collect();
    let mut serving = 0;
    for (name, svc) in services {
        let name = name.as_str().unwrap_or_default();
        let command: Vec<String> = svc["command"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_owned))
            .collect();
        if let Some(i) = command.iter().position(|c| c == "--metrics-listen") {
            serving += 1;
            let port = command
                .get(i + 1)
                .and_then(|a| a.rsplit(':').next())
                .unwrap_or_default();
            let target = format!("{name}:{port}");
            assert!(
                targets.contains(&target),
                "prometheus.yml does not scrape {target}"
            );
        }
    }
    assert!(
        serving >= 4,
        "only {serving} compose services serve /metrics"
    );

    // Rules and dashboards are mounted where the configs look for them.
    let mounts = |svc: &str| -> Vec<String> {
        services
            .get(svc)
            .and_then(|s| s["volumes"].as_sequence())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    };
    let prom_mounts = mounts("prometheus");
    let rule_mount = prom_mounts
        .iter()
        .find(|m| m.starts_with("./deploy/prometheus/rules:"))
        .expect("prometheus mounts deploy/prometheus/rules");
    let rule_dir = rule_mount.split(':').nth(1).unwrap();
    let rule_files: Vec<String> = prom["rule_files"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().map(str::to_owned))
        .collect();
    assert!(
        rule_files
            .iter()
            .any(|r| r.starts_with(&format!("{rule_dir}/"))),
        "prometheus.yml rule_files {rule_files:?} do not read {rule_dir}"
    );
    let grafana_mounts = mounts("grafana");
    let dash_mount = grafana_mounts
        .iter()
        .find(|m| m.starts_with("./deploy/grafana/dashboards:"))
        .expect("grafana mounts deploy/grafana/dashboards");
    let dash_dir = dash_mount.split(':').nth(1).unwrap();
    assert!(
        grafana_mounts
            .iter()
            .any(|m| m.starts_with("./deploy/grafana/provisioning:/etc/grafana/provisioning")),
        "grafana provisioning is not mounted"
    );
    let provider: serde_yaml::Value =
        serde_yaml::from_str(&read("deploy/grafana/provisioning/dashboards/vigil.yml")).unwrap();
    let paths: Vec<&str> = provider["providers"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|p| p["options"]["path"].as_str())
        .collect();
    assert!(
        paths.contains(&dash_dir),
        "dashboard provider paths {paths:?} do not include the mounted {dash_dir}"
    );
}
