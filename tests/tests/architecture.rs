#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! `docs/architecture.md` is the contract: its crate dependency table must be the workspace's
//! real graph (`cargo metadata`, normal and dev dependencies), and the layering rules it states
//! must hold — no producer or consumer service crate depends on another one, not even as a
//! dev-dependency, and test support depends on no service. Pure: runs `cargo metadata --no-deps`
//! and reads files; needs no stack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The crates that are one service (or the SDK) each: none may depend on another of them.
const SERVICES: &[&str] = &[
    "vigil-producer",
    "vigil-verifier",
    "vigil-correlator",
    "vigil-alerter",
    "vigil-audit-sink",
    "vigil-dead-letter",
];

/// A crate's workspace dependencies, split by kind.
#[derive(Debug, Default, PartialEq, Eq)]
struct Deps {
    normal: BTreeSet<String>,
    dev: BTreeSet<String>,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The workspace's own dependency graph, from `cargo metadata`.
fn metadata_graph() -> BTreeMap<String, Deps> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace_root())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let packages = meta["packages"].as_array().expect("packages");
    let members: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect();
    packages
        .iter()
        .map(|p| {
            let mut deps = Deps::default();
            for d in p["dependencies"].as_array().unwrap() {
                let name = d["name"].as_str().unwrap();
                if !members.contains(name) {
                    continue;
                }
                match d["kind"].as_str() {
                    None => deps.normal.insert(name.to_owned()),
                    Some("dev") => deps.dev.insert(name.to_owned()),
                    Some(_) => continue,
                };
            }
            // A crate listing another as both normal and dev dependency has it as normal.
            deps.dev = &deps.dev - &deps.normal;
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

/// The table under "### Dependency graph" in docs/architecture.md: `| crate | normal | dev |`.
fn documented_graph() -> BTreeMap<String, Deps> {
    let page = std::fs::read_to_string(workspace_root().join("docs/architecture.md"))
        .expect("docs/architecture.md");
    let section = page
        .split("### Dependency graph")
        .nth(1)
        .expect("docs/architecture.md has a '### Dependency graph' section");
    let names = |cell: &str| -> BTreeSet<String> {
        cell.split(',')
            .map(|s| s.trim().trim_matches('`').to_owned())
            .filter(|s| !s.is_empty() && s != "—")
            .collect()
    };
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2) // header and separator
        .map(|row| {
            let cells: Vec<&str> = row.trim_matches('|').split('|').collect();
            assert_eq!(cells.len(), 3, "dependency row needs 3 cells: {row}");
            let krate = cells[0].trim().trim_matches('`').to_owned();
            (
                krate,
                Deps {
                    normal: names(cells[1]),
                    dev: names(cells[2]),
                },
            )
        })
        .collect()
}

#[test]
fn the_documented_dependency_graph_is_the_real_one() {
    let real = metadata_graph();
    let documented = documented_graph();
    let real_names: BTreeSet<&String> = real.keys().collect();
    let doc_names: BTreeSet<&String> = documented.keys().collect();
    assert_eq!(
        doc_names, real_names,
        "docs/architecture.md's dependency graph must list every workspace crate, and only those"
    );
    for (krate, deps) in &real {
        assert_eq!(
            &documented[krate], deps,
            "docs/architecture.md's dependency row of {krate} differs from Cargo.toml"
        );
    }
}

#[test]
fn no_service_crate_depends_on_another_and_test_support_on_none() {
    let real = metadata_graph();
    for service in SERVICES {
        let deps = real
            .get(*service)
            .unwrap_or_else(|| panic!("{service} is a workspace crate"));
        for other in deps.normal.iter().chain(&deps.dev) {
            assert!(
                !SERVICES.contains(&other.as_str()),
                "{service} depends on {other}: services meet only above them (vigil-pipeline, vigil)"
            );
            assert_ne!(
                other, "vigil-pipeline",
                "{service} depends on the pipeline that assembles it"
            );
        }
    }
    let support = &real["vigil-test-support"];
    for dep in support.normal.iter().chain(&support.dev) {
        assert!(
            !SERVICES.contains(&dep.as_str()) && dep != "vigil-pipeline",
            "vigil-test-support depends on {dep}: test support stays below the services"
        );
    }
}
