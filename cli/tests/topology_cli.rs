#![allow(clippy::expect_used, clippy::unwrap_used)] // tests and benches: a failed setup should stop loudly

//! `vigil topology` as a user runs it: exit codes and messages, against the real broker.

use std::process::Command;

fn vigil(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .output()
        .expect("run vigil");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn topics_file(dir: &tempfile::TempDir, body: &str) -> String {
    let path = dir.path().join("topics.yaml");
    std::fs::write(
        &path,
        format!("defaults:\n  replication_factor: 1\n  min_insync_replicas: 1\ntopics:\n{body}"),
    )
    .expect("write topics file");
    path.display().to_string()
}

#[test]
fn invalid_file_is_refused_with_file_line_and_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = topics_file(
        &dir,
        "  - name: x.y\n    partitions: 0\n    retention_ms: 1\n    cleanup_policy: delete\n",
    );
    let (code, _, err) = vigil(&["topology", "validate", "--file", &file]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains(&format!("{file}:6: partitions must be >= 1, got 0")),
        "{err}"
    );
}

#[test]
fn builtin_topology_validates() {
    let (code, out, err) = vigil(&["topology", "validate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("topics, valid"), "{out}");
}

#[test]
fn diff_exits_1_on_drift_and_apply_converges() {
    assert!(
        std::env::var("VIGIL_KAFKA_BOOTSTRAP").is_ok(),
        "VIGIL_KAFKA_BOOTSTRAP must be set (scripts/test sets it)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("e2e-cli-{}", std::process::id());
    let file = topics_file(
        &dir,
        &format!(
            "  - name: {name}\n    partitions: 2\n    retention_ms: 60000\n    cleanup_policy: delete\n"
        ),
    );
    let (code, out, err) = vigil(&["topology", "diff", "--file", &file]);
    assert_eq!(code, 1, "diff on a missing topic exits 1: {out}{err}");
    assert!(
        out.contains(&format!("+ {name}: create (2 partitions")),
        "{out}"
    );

    let (code, out, err) = vigil(&["topology", "apply", "--file", &file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("applied 1 change(s)"), "{out}");

    let (code, out, err) = vigil(&["topology", "apply", "--file", &file]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("no drift"),
        "second apply changes nothing: {out}"
    );
    let (code, out, _) = vigil(&["topology", "diff", "--file", &file]);
    assert_eq!(code, 0, "{out}");
}
