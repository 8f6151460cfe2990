#![allow(clippy::expect_used, clippy::unwrap_used)] // tests: a failed setup should stop loudly

//! `docs/events.md` is generated from `schemas/avro/*.avsc`: this test regenerates the text and
//! fails when the committed page differs, so the reference cannot drift from the contract.
//! Pure: reads files only, needs no stack.
//!
//! Regenerate after changing a schema:
//! `VIGIL_REGEN_DOCS=1 cargo test -p vigil-e2e --test docs_reference`

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

const REGEN: &str = "VIGIL_REGEN_DOCS=1 cargo test -p vigil-e2e --test docs_reference";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// One named type (record or enum) waiting to be rendered, with the file that declares it.
struct Pending {
    schema: Value,
    namespace: String,
}

/// Renders the whole reference page from the schema files, in file-name order.
fn render(files: &[(String, Value)]) -> String {
    let mut out = String::new();
    out.push_str(
        "<!-- Generated from schemas/avro/*.avsc by tests/tests/docs_reference.rs; do not edit.\n",
    );
    let _ = writeln!(out, "     Regenerate: {REGEN} -->");
    out.push_str("\n# Event types reference\n\n");
    out.push_str(
        "Every record Vigil writes to Kafka, as declared in `schemas/avro/`. Values are Avro with \
         Confluent framing (magic byte `0x00`, 4-byte big-endian schema id, Avro body), registered \
         under `<topic>-value` with BACKWARD compatibility. Field names follow OCSF where one fits. \
         Signatures and routing metadata travel in Kafka headers, not in these records (see \
         `docs/operations.md`).\n\n",
    );
    out.push_str("| schema file | record | documentation |\n| --- | --- | --- |\n");
    for (file, schema) in files {
        let name = str_of(schema, "name");
        let _ = writeln!(
            out,
            "| `{file}` | [`{name}`](#{}) | {} |",
            anchor(file, name),
            cell(str_of(schema, "doc"))
        );
    }
    // Full names already rendered, with the anchor and the exact JSON, so a type that several
    // files inline identically is described once and linked from the others.
    let mut rendered: BTreeMap<String, (String, Value)> = BTreeMap::new();
    for (file, schema) in files {
        let _ = writeln!(out, "\n## `{file}`\n");
        let namespace = schema
            .get("namespace")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let mut queue = VecDeque::from([Pending {
            schema: schema.clone(),
            namespace,
        }]);
        // Names visible in this file (Avro resolves a bare name against earlier definitions).
        let mut local: BTreeMap<String, String> = BTreeMap::new();
        while let Some(p) = queue.pop_front() {
            render_named(&mut out, file, &p, &mut queue, &mut local, &mut rendered);
        }
    }
    out
}

fn render_named(
    out: &mut String,
    file: &str,
    p: &Pending,
    queue: &mut VecDeque<Pending>,
    local: &mut BTreeMap<String, String>,
    rendered: &mut BTreeMap<String, (String, Value)>,
) {
    let name = str_of(&p.schema, "name");
    let full = full_name(&p.namespace, &p.schema);
    let kind = str_of(&p.schema, "type");
    if let Some((a, json)) = rendered.get(&full)
        && same_type(json, &p.schema)
    {
        local.insert(name.to_owned(), a.clone());
        return;
    }
    let a = anchor(file, name);
    local.insert(name.to_owned(), a.clone());
    rendered.insert(full.clone(), (a.clone(), p.schema.clone()));
    let _ = writeln!(out, "<a id=\"{a}\"></a>\n\n### {kind} `{full}`\n");
    let doc = str_of(&p.schema, "doc");
    if !doc.is_empty() {
        let _ = writeln!(out, "{doc}\n");
    }
    match kind {
        "record" => {
            out.push_str("| field | type | default | documentation |\n| --- | --- | --- | --- |\n");
            let fields = p.schema.get("fields").and_then(Value::as_array);
            for f in fields.into_iter().flatten() {
                let ty = f.get("type").cloned().unwrap_or(Value::Null);
                let rendered_ty = type_text(&ty, file, &p.namespace, queue, local, rendered);
                let default = f
                    .get("default")
                    .map(|d| format!("`{d}`"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "| `{}` | {} | {} | {} |",
                    str_of(f, "name"),
                    rendered_ty,
                    cell(&default),
                    cell(str_of(f, "doc"))
                );
            }
            out.push('\n');
        }
        "enum" => {
            let symbols: Vec<String> = p
                .schema
                .get("symbols")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|s| format!("`{s}`"))
                .collect();
            let _ = writeln!(out, "Symbols, in order: {}.", symbols.join(", "));
            if let Some(d) = p.schema.get("default").and_then(Value::as_str) {
                let _ = writeln!(
                    out,
                    "Default for readers that meet an unknown symbol: `{d}`."
                );
            }
            out.push('\n');
        }
        other => {
            let _ = writeln!(out, "Named type of kind `{other}`.\n");
        }
    }
}

/// Returns the Markdown text of a field type, queueing inline named types for rendering.
fn type_text(
    ty: &Value,
    file: &str,
    namespace: &str,
    queue: &mut VecDeque<Pending>,
    local: &BTreeMap<String, String>,
    rendered: &BTreeMap<String, (String, Value)>,
) -> String {
    match ty {
        Value::String(s) => match local.get(s.as_str()) {
            Some(a) => format!("[`{s}`](#{a})"),
            None => {
                // A type declared earlier in this file's queue but not yet rendered.
                let pending = queue.iter().find(|p| str_of(&p.schema, "name") == s);
                match pending {
                    Some(p) => format!("[`{s}`](#{})", anchor_for(file, p, rendered)),
                    // Declared inside a type another file already described.
                    None => match rendered.get(&format!("{namespace}.{s}")) {
                        Some((a, _)) => format!("[`{s}`](#{a})"),
                        None => format!("`{s}`"),
                    },
                }
            }
        },
        Value::Array(branches) => branches
            .iter()
            .map(|b| type_text(b, file, namespace, queue, local, rendered))
            .collect::<Vec<_>>()
            .join(" \\| "),
        Value::Object(_) => match str_of(ty, "type") {
            "record" | "enum" | "fixed" => {
                let ns = ty
                    .get("namespace")
                    .and_then(Value::as_str)
                    .unwrap_or(namespace)
                    .to_owned();
                let p = Pending {
                    schema: ty.clone(),
                    namespace: ns,
                };
                let a = anchor_for(file, &p, rendered);
                let name = str_of(ty, "name").to_owned();
                queue.push_back(p);
                format!("[`{name}`](#{a})")
            }
            "array" => {
                let items = ty.get("items").cloned().unwrap_or(Value::Null);
                format!(
                    "array of {}",
                    type_text(&items, file, namespace, queue, local, rendered)
                )
            }
            "map" => {
                let values = ty.get("values").cloned().unwrap_or(Value::Null);
                format!(
                    "map of {}",
                    type_text(&values, file, namespace, queue, local, rendered)
                )
            }
            prim => match ty.get("logicalType").and_then(Value::as_str) {
                Some(l) => format!("`{prim}` ({l})"),
                None => format!("`{prim}`"),
            },
        },
        other => format!("`{other}`"),
    }
}

/// The anchor a named type will have: its earlier identical rendering, else this file's.
fn anchor_for(file: &str, p: &Pending, rendered: &BTreeMap<String, (String, Value)>) -> String {
    let full = full_name(&p.namespace, &p.schema);
    match rendered.get(&full) {
        Some((a, json)) if same_type(json, &p.schema) => a.clone(),
        _ => anchor(file, str_of(&p.schema, "name")),
    }
}

/// Two declarations of one full name are the same type when they differ at most in spelling
/// the namespace out (a top-level schema carries it, an inlined copy inherits it).
fn same_type(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("namespace");
        }
        v
    };
    strip(a) == strip(b)
}

fn full_name(namespace: &str, schema: &Value) -> String {
    let name = str_of(schema, "name");
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

fn anchor(file: &str, name: &str) -> String {
    let stem = file.trim_end_matches(".avsc").replace('_', "-");
    format!("{stem}-{}", name.to_lowercase())
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// Escapes text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn load_schemas() -> Vec<(String, Value)> {
    let dir = workspace_root().join("schemas/avro");
    let mut files: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "avsc"))
        .map(|p| {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", p.display()));
            let json: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON: {e}", p.display()));
            let name = p
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            (name, json)
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files
}

#[test]
fn events_reference_matches_the_avro_schemas() {
    let files = load_schemas();
    assert!(
        files.len() >= 4,
        "expected the four record schemas in schemas/avro, found {}",
        files.len()
    );
    let expected = render(&files);
    let page = workspace_root().join("docs/events.md");
    if std::env::var_os("VIGIL_REGEN_DOCS").is_some() {
        std::fs::write(&page, &expected)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", page.display()));
    }
    let actual = std::fs::read_to_string(&page).unwrap_or_default();
    if actual != expected {
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .map_or_else(
                || actual.lines().count().min(expected.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "docs/events.md is out of date with schemas/avro/*.avsc (first difference at line \
             {line}); regenerate it with:\n  {REGEN}"
        );
    }
}

#[test]
fn every_schema_field_is_documented_in_the_reference() {
    // Independent of the renderer: every record and field name of every schema appears in the
    // committed page, with its doc string, so a renderer bug cannot silently drop fields.
    let files = load_schemas();
    let page = std::fs::read_to_string(workspace_root().join("docs/events.md"))
        .unwrap_or_else(|e| panic!("docs/events.md missing ({e}); create it with:\n  {REGEN}"));
    let mut checked = 0;
    let mut stack: Vec<Value> = files.iter().map(|(_, s)| s.clone()).collect();
    while let Some(v) = stack.pop() {
        match &v {
            Value::Object(m) => {
                if m.get("type").and_then(Value::as_str) == Some("record") {
                    let name = str_of(&v, "name");
                    assert!(
                        page.contains(&format!("`io.vigil.{name}`")),
                        "record {name} missing"
                    );
                    for f in m
                        .get("fields")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let fname = str_of(f, "name");
                        assert!(
                            page.contains(&format!("| `{fname}` |")),
                            "field {name}.{fname} missing from docs/events.md; regenerate: {REGEN}"
                        );
                        let doc = cell(str_of(f, "doc"));
                        assert!(
                            page.contains(&doc),
                            "doc of {name}.{fname} missing from docs/events.md; regenerate: {REGEN}"
                        );
                        checked += 1;
                    }
                }
                stack.extend(m.values().cloned());
            }
            Value::Array(a) => stack.extend(a.iter().cloned()),
            _ => {}
        }
    }
    assert!(checked >= 50, "only {checked} fields found in the schemas");
}
