//! Loading a rule directory: Sigma detection rules, Sigma v2 correlation rules, and Vigil's
//! `absence` extension, each refused with its file, line and reason.
//!
//! Files are split into YAML documents here (not by the Sigma parser) so every error can name
//! the line of the document it came from; documents of `correlation.type: absence` are Vigil's
//! extension and parsed here, every other document goes to `rsigma-parser`. The merged set is
//! then compiled once into a throw-away engine so unresolved references and bad modifiers are
//! refused at load time rather than at the first event.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use rsigma_eval::{CorrelationConfig, CorrelationEngine};
use rsigma_parser::{SigmaCollection, parse_sigma_yaml};
use serde_yaml::Value as Yaml;
use vigil_schemas::model::Severity;

/// Files larger than this are refused: a rule file is hand-written YAML.
pub const MAX_RULE_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// A rule that cannot be loaded, named by file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct RuleError {
    /// The rule file.
    pub file: PathBuf,
    /// 1-based line in the file.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// "A not followed by B within T", grouped by fields (Vigil's extension to Sigma correlations).
#[derive(Debug, Clone)]
pub struct AbsenceRule {
    /// Rule id (also the alert's `rule_id`).
    pub id: String,
    /// Title.
    pub title: String,
    /// Description, if any.
    pub description: String,
    /// Severity of the alert.
    pub severity: Severity,
    /// Ids of the detection rules that open a window (A).
    pub opened_by: Vec<String>,
    /// Ids of the detection rules that close it (B).
    pub closed_by: Vec<String>,
    /// Fields the windows are keyed by.
    pub group_by: Vec<String>,
    /// How long B may take, microseconds.
    pub timespan_us: i64,
    /// Whether the referenced detection rules also alert on their own.
    pub generate: bool,
}

/// A validated rule set, ready to build engines from.
#[derive(Debug, Clone)]
pub struct RulePack {
    /// Sigma detection and correlation rules, merged over all files.
    pub sigma: SigmaCollection,
    /// Absence rules.
    pub absence: Vec<AbsenceRule>,
    /// Detection rule ids that only feed correlations (no standalone alert).
    pub silent: HashSet<String>,
    /// Fields the standalone alerts of a detection rule are grouped by (Vigil's `group-by` on a
    /// detection rule), by rule id; a rule without one is grouped by the event's subject.
    pub detection_group_by: HashMap<String, Vec<String>>,
    /// Longest correlation timespan, microseconds (bounds the restart replay).
    pub max_timespan_us: i64,
    /// Files read, in order.
    pub files: Vec<PathBuf>,
}

impl RulePack {
    /// Returns the number of rules of every kind.
    pub fn rule_count(&self) -> usize {
        self.sigma.rules.len() + self.sigma.correlations.len() + self.absence.len()
    }

    /// Loads every `*.yml` / `*.yaml` file of `dir` (sorted by name, not recursive).
    pub fn load_dir(dir: &Path) -> Result<Self, RuleError> {
        let err = |reason: String| RuleError {
            file: dir.to_path_buf(),
            line: 0,
            reason,
        };
        let entries =
            std::fs::read_dir(dir).map_err(|e| err(format!("cannot read directory: {e}")))?;
        let mut paths = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|e| err(format!("cannot read directory: {e}")))?
                .path();
            let is_yaml = matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            );
            if is_yaml && path.is_file() {
                paths.push(path);
            }
        }
        paths.sort();
        let mut sources = Vec::with_capacity(paths.len());
        for path in paths {
            let at = |reason: String| RuleError {
                file: path.clone(),
                line: 0,
                reason,
            };
            let len = std::fs::metadata(&path)
                .map_err(|e| at(format!("cannot stat: {e}")))?
                .len();
            if len > MAX_RULE_FILE_BYTES {
                return Err(at(format!(
                    "file is {len} bytes, more than {MAX_RULE_FILE_BYTES}"
                )));
            }
            let text =
                std::fs::read_to_string(&path).map_err(|e| at(format!("cannot read: {e}")))?;
            sources.push((path, text));
        }
        if sources.is_empty() {
            return Err(err("no *.yml or *.yaml rule files".to_owned()));
        }
        Self::from_sources(&sources)
    }

    /// Parses and validates rule files given as (path, text).
    pub fn from_sources(sources: &[(PathBuf, String)]) -> Result<Self, RuleError> {
        let mut sigma = SigmaCollection::default();
        let mut absence = Vec::new();
        // Where each rule id / name / title was defined, to point compile errors at a line.
        let mut origin: HashMap<String, (PathBuf, usize)> = HashMap::new();
        let mut ids = HashSet::new();
        let mut names_to_ids: HashMap<String, String> = HashMap::new();
        let mut absence_docs = Vec::new();
        let mut detection_group_by = HashMap::new();
        for (file, text) in sources {
            for doc in split_documents(text) {
                let at = |line: usize, reason: String| RuleError {
                    file: file.clone(),
                    line,
                    reason,
                };
                let yaml: Yaml = serde_yaml::from_str(doc.text).map_err(|e| {
                    let line = e
                        .location()
                        .map_or(doc.line, |l| doc.line + l.line().saturating_sub(1));
                    at(line, format!("invalid YAML: {e}"))
                })?;
                if yaml.is_null() {
                    continue;
                }
                let Some(map) = yaml.as_mapping() else {
                    return Err(at(doc.line, "a rule document must be a mapping".to_owned()));
                };
                let id = map.get("id").and_then(Yaml::as_str).map(str::to_owned);
                let title = map
                    .get("title")
                    .and_then(Yaml::as_str)
                    .unwrap_or("")
                    .to_owned();
                let Some(id) = id else {
                    return Err(at(
                        doc.line,
                        format!("rule {title:?} has no id (the alert's rule_id)"),
                    ));
                };
                if !ids.insert(id.clone()) {
                    return Err(at(doc.line_of("id:"), format!("duplicate rule id {id:?}")));
                }
                origin.insert(id.clone(), (file.clone(), doc.line));
                if !title.is_empty() {
                    origin
                        .entry(title.clone())
                        .or_insert((file.clone(), doc.line));
                }
                if let Some(name) = map.get("name").and_then(Yaml::as_str) {
                    origin
                        .entry(name.to_owned())
                        .or_insert((file.clone(), doc.line));
                    names_to_ids.insert(name.to_owned(), id.clone());
                }
                let corr_type = map
                    .get("correlation")
                    .and_then(|c| c.get("type"))
                    .and_then(Yaml::as_str);
                if corr_type == Some("absence") {
                    absence_docs.push((file.clone(), doc.line, doc.text.to_owned(), yaml.clone()));
                    continue;
                }
                if corr_type.is_none()
                    && let Some(g) = map.get("group-by")
                {
                    let fields = strings(Some(g))
                        .filter(|l| !l.is_empty() && l.iter().all(|f| !f.trim().is_empty()))
                        .ok_or_else(|| {
                            at(doc.line_of("group-by"), "`group-by` of a detection rule must be a non-empty list of field names".to_owned())
                        })?;
                    detection_group_by.insert(id.clone(), fields);
                }
                let parsed = parse_sigma_yaml(doc.text).map_err(|e| at(doc.line, e.to_string()))?;
                if let Some(first) = parsed.errors.first() {
                    let needle = if first.contains("ondition") {
                        "condition:"
                    } else {
                        "detection:"
                    };
                    return Err(at(doc.line_of(needle), first.trim().to_owned()));
                }
                sigma.rules.extend(parsed.rules);
                sigma.correlations.extend(parsed.correlations);
                sigma.filters.extend(parsed.filters);
            }
        }
        let resolve = |r: &str| names_to_ids.get(r).cloned().unwrap_or_else(|| r.to_owned());
        let detection_ids: HashSet<String> =
            sigma.rules.iter().filter_map(|r| r.id.clone()).collect();
        for (file, line, text, yaml) in absence_docs {
            let doc = Document { line, text: &text };
            absence.push(parse_absence(&file, &doc, &yaml, &resolve, &detection_ids)?);
        }
        let mut silent = HashSet::new();
        let mut max_timespan_us = 0_i64;
        for c in &sigma.correlations {
            if !c.generate {
                for r in &c.rules {
                    silent.insert(resolve(r));
                }
            }
            let us = i64::try_from(c.timespan.seconds)
                .unwrap_or(i64::MAX / 2_000_000)
                .saturating_mul(1_000_000);
            max_timespan_us = max_timespan_us.max(us);
        }
        for a in &absence {
            if !a.generate {
                silent.extend(a.opened_by.iter().cloned());
                silent.extend(a.closed_by.iter().cloned());
            }
            max_timespan_us = max_timespan_us.max(a.timespan_us);
        }
        // Compile once so unresolved references and unsupported modifiers fail now.
        let mut probe = CorrelationEngine::new(CorrelationConfig::default());
        if let Err(e) = probe.add_collection(&sigma) {
            let reason = e.to_string();
            let (file, line) = origin
                .iter()
                .filter(|(k, _)| !k.is_empty() && reason.contains(k.as_str()))
                .max_by_key(|(k, _)| k.len())
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| (sources.first().map(|s| s.0.clone()).unwrap_or_default(), 1));
            return Err(RuleError { file, line, reason });
        }
        Ok(RulePack {
            sigma,
            absence,
            silent,
            detection_group_by,
            max_timespan_us,
            files: sources.iter().map(|s| s.0.clone()).collect(),
        })
    }
}

/// One YAML document of a file and the line it starts on.
struct Document<'a> {
    line: usize,
    text: &'a str,
}

impl Document<'_> {
    /// Returns the file line of the first line containing `needle`, else the document's start.
    fn line_of(&self, needle: &str) -> usize {
        self.text
            .lines()
            .position(|l| l.contains(needle))
            .map_or(self.line, |i| self.line + i)
    }
}

/// Splits on `---` lines, keeping line numbers (the `---` line itself belongs to no document).
fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start_byte = 0;
    let mut start_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if line.trim_end() == "---" {
            docs.push(Document {
                line: start_line,
                text: &text[start_byte..offset],
            });
            start_byte = offset + line.len();
            start_line = i + 2;
        }
        offset += line.len();
    }
    docs.push(Document {
        line: start_line,
        text: &text[start_byte..],
    });
    docs.retain(|d| {
        d.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

/// Parses a Sigma timespan (`30s`, `5m`, `2h`, `1d`) into microseconds.
pub fn parse_timespan_us(text: &str) -> Option<i64> {
    let text = text.trim();
    let (num, unit) = text.split_at(text.len().checked_sub(1)?);
    let n: i64 = num.parse().ok()?;
    let mult: i64 = match unit {
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    };
    if n <= 0 {
        return None;
    }
    n.checked_mul(mult)
}

/// Maps a Sigma `level` to the alert severity.
pub fn severity_of_level(level: Option<&str>) -> Severity {
    match level {
        Some("informational") => Severity::Informational,
        Some("low") => Severity::Low,
        Some("medium") => Severity::Medium,
        Some("high") => Severity::High,
        Some("critical") => Severity::Critical,
        _ => Severity::Medium,
    }
}

fn strings(v: Option<&Yaml>) -> Option<Vec<String>> {
    match v? {
        Yaml::String(s) => Some(vec![s.clone()]),
        Yaml::Sequence(seq) => seq.iter().map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => None,
    }
}

fn parse_absence(
    file: &Path,
    doc: &Document<'_>,
    yaml: &Yaml,
    resolve: &dyn Fn(&str) -> String,
    detection_ids: &HashSet<String>,
) -> Result<AbsenceRule, RuleError> {
    let at = |needle: &str, reason: String| RuleError {
        file: file.to_path_buf(),
        line: doc.line_of(needle),
        reason,
    };
    let corr = yaml
        .get("correlation")
        .ok_or_else(|| at("correlation:", "missing correlation".into()))?;
    if let Some(m) = corr.as_mapping() {
        for k in m.keys() {
            let k = k.as_str().unwrap_or("");
            if !matches!(
                k,
                "type" | "rules" | "followed-by" | "group-by" | "timespan" | "generate"
            ) {
                return Err(at(
                    k,
                    format!("unknown key {k:?} in an absence correlation"),
                ));
            }
        }
    }
    let ids = |key: &str| -> Result<Vec<String>, RuleError> {
        let list = strings(corr.get(key))
            .filter(|l| !l.is_empty())
            .ok_or_else(|| {
                at(
                    key,
                    format!("absence needs `{key}`: a list of detection rule ids or names"),
                )
            })?;
        list.iter()
            .map(|r| {
                let id = resolve(r);
                if detection_ids.contains(&id) {
                    Ok(id)
                } else {
                    Err(at(
                        key,
                        format!("`{key}` names {r:?}, which is no detection rule"),
                    ))
                }
            })
            .collect()
    };
    let opened_by = ids("rules")?;
    let closed_by = ids("followed-by")?;
    let group_by = strings(corr.get("group-by")).unwrap_or_default();
    let generate = corr
        .get("generate")
        .and_then(Yaml::as_bool)
        .unwrap_or(false);
    let timespan = corr
        .get("timespan")
        .and_then(Yaml::as_str)
        .ok_or_else(|| at("timespan", "absence needs `timespan` (e.g. 10m)".into()))?;
    let timespan_us = parse_timespan_us(timespan).ok_or_else(|| {
        at(
            "timespan",
            format!("bad timespan {timespan:?} (use 30s, 5m, 2h, 1d)"),
        )
    })?;
    let s = |k: &str| yaml.get(k).and_then(Yaml::as_str).unwrap_or("").to_owned();
    Ok(AbsenceRule {
        id: s("id"),
        title: s("title"),
        description: s("description"),
        severity: severity_of_level(yaml.get("level").and_then(Yaml::as_str)),
        opened_by,
        closed_by,
        group_by,
        timespan_us,
        generate,
    })
}
