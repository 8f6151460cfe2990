//! The repository's observability pack as files: shared by the tests that check it against
//! the code (observability_pack.rs) and against Prometheus' own parser (prometheus_rules.rs).

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The repository root (two levels above this crate's `tests/support/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("../.."))
}

/// Files directly in `rel_dir` (relative to the root) whose extension is one of `exts`, sorted.
pub fn files_with_ext(rel_dir: &str, exts: &[&str]) -> Vec<PathBuf> {
    let dir = repo_root().join(rel_dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
        })
        .collect();
    out.sort();
    out
}

/// Every `expr` of every dashboard in deploy/grafana/dashboards, with the file it came from.
pub fn dashboard_exprs() -> Vec<(String, String)> {
    fn walk(v: &Value, file: &str, out: &mut Vec<(String, String)>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(e)) = m.get("expr") {
                    out.push((file.to_owned(), e.clone()));
                }
                m.values().for_each(|x| walk(x, file, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, file, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for f in files_with_ext("deploy/grafana/dashboards", &["json"]) {
        let text = std::fs::read_to_string(&f)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", f.display()));
        let json: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", f.display()));
        walk(&json, &f.display().to_string(), &mut out);
    }
    out
}
