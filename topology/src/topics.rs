//! The declared topic topology (`topology/topics.yaml`): parsing, validation and the Kafka config
//! each topic maps to.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The topology file shipped with Vigil, embedded so the binary works from any directory.
pub const BUILTIN_TOPICS_YAML: &str = include_str!("../topics.yaml");

/// Kafka topic configs that have a first-class field in `topics.yaml` and so may not appear in a
/// topic's free-form `configs` table.
const FIRST_CLASS_CONFIGS: &[&str] = &[
    "retention.ms",
    "cleanup.policy",
    "min.insync.replicas",
    "max.message.bytes",
    "min.compaction.lag.ms",
];

/// Errors found while reading or validating a topology file; each names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The YAML is malformed or has unknown keys.
    #[error("{path}:{line}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line, 0 when unknown.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Values every topic inherits unless it sets its own.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicDefaults {
    /// Replicas per partition.
    pub replication_factor: i32,
    /// `min.insync.replicas` for topics that do not set it.
    pub min_insync_replicas: i32,
}

/// Cleanup policy of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Delete segments past retention.
    Delete,
    /// Keep the latest record per key.
    Compact,
    /// Compact, and delete past retention.
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

impl CleanupPolicy {
    /// Returns the value Kafka uses for `cleanup.policy`.
    pub fn as_kafka(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }
}

/// One topic as declared in the file, before defaults are applied.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopic {
    name: String,
    #[serde(default)]
    description: String,
    partitions: i64,
    replication_factor: Option<i64>,
    min_insync_replicas: Option<i64>,
    retention_ms: i64,
    cleanup_policy: CleanupPolicy,
    max_message_bytes: Option<i64>,
    min_compaction_lag_ms: Option<i64>,
    schema_subject: Option<String>,
    #[serde(default)]
    configs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    defaults: TopicDefaults,
    topics: Vec<RawTopic>,
}

/// A validated topic with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// What the topic carries.
    pub description: String,
    /// Partition count.
    pub partitions: i32,
    /// Replicas per partition.
    pub replication_factor: i32,
    /// Schema registry subject of the value, when values are Avro.
    pub schema_subject: Option<String>,
    /// Kafka topic configs this declaration manages, by Kafka name.
    pub configs: BTreeMap<String, String>,
    /// 1-based line of the topic's `name:` in the file, for error messages.
    pub line: usize,
}

/// The whole validated topology.
#[derive(Debug, Clone)]
pub struct Topology {
    /// Where it was read from.
    pub path: PathBuf,
    /// Topics in file order.
    pub topics: Vec<TopicSpec>,
}

/// Overrides that adapt one file to clusters of different sizes.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicationOverride {
    /// Replaces `defaults.replication_factor` and every topic's own.
    pub replication_factor: Option<i32>,
    /// Replaces `defaults.min_insync_replicas` and every topic's own.
    pub min_insync_replicas: Option<i32>,
}

impl ReplicationOverride {
    /// Reads `VIGIL_TOPOLOGY_REPLICATION_FACTOR` and `VIGIL_TOPOLOGY_MIN_INSYNC_REPLICAS`.
    pub fn from_env() -> Result<Self, TopologyError> {
        fn read(var: &str) -> Result<Option<i32>, TopologyError> {
            match std::env::var(var) {
                Ok(v) => v
                    .trim()
                    .parse::<i32>()
                    .map(Some)
                    .map_err(|e| TopologyError::Invalid {
                        path: PathBuf::from(format!("${var}")),
                        line: 0,
                        reason: format!("{var}={v:?} is not an integer: {e}"),
                    }),
                Err(_) => Ok(None),
            }
        }
        Ok(Self {
            replication_factor: read("VIGIL_TOPOLOGY_REPLICATION_FACTOR")?,
            min_insync_replicas: read("VIGIL_TOPOLOGY_MIN_INSYNC_REPLICAS")?,
        })
    }
}

impl Topology {
    /// Reads and validates a topology file.
    pub fn load(path: &Path, overrides: ReplicationOverride) -> Result<Self, TopologyError> {
        let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text, overrides)
    }

    /// Parses and validates topology text; `path` is only used in messages.
    pub fn parse(
        path: &Path,
        text: &str,
        overrides: ReplicationOverride,
    ) -> Result<Self, TopologyError> {
        let invalid = |line: usize, reason: String| TopologyError::Invalid {
            path: path.to_owned(),
            line,
            reason,
        };
        let raw: RawTopology = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(0);
            // serde_yaml appends "at line L column C"; the prefix already says where.
            let msg = e.to_string();
            let msg = match msg.rfind(" at line ") {
                Some(i) if line > 0 => msg[..i].to_owned(),
                _ => msg,
            };
            invalid(line, msg)
        })?;

        let default_rf = overrides
            .replication_factor
            .unwrap_or(raw.defaults.replication_factor);
        let default_isr = overrides
            .min_insync_replicas
            .unwrap_or(raw.defaults.min_insync_replicas);

        let mut seen = BTreeSet::new();
        let mut topics = Vec::with_capacity(raw.topics.len());
        for t in raw.topics {
            let line = locate(text, &t.name, None);
            let field_line = |field: &str| locate(text, &t.name, Some(field));
            validate_name(&t.name).map_err(|reason| invalid(line, reason))?;
            if !seen.insert(t.name.clone()) {
                return Err(invalid(line, format!("topic {} is declared twice", t.name)));
            }
            let partitions = positive_i32(t.partitions, "partitions")
                .map_err(|r| invalid(field_line("partitions"), r))?;
            let rf = match (overrides.replication_factor, t.replication_factor) {
                (Some(o), _) => o,
                (None, Some(v)) => positive_i32(v, "replication_factor")
                    .map_err(|r| invalid(field_line("replication_factor"), r))?,
                (None, None) => default_rf,
            };
            let isr = match (overrides.min_insync_replicas, t.min_insync_replicas) {
                (Some(o), _) => o,
                (None, Some(v)) => positive_i32(v, "min_insync_replicas")
                    .map_err(|r| invalid(field_line("min_insync_replicas"), r))?,
                (None, None) => default_isr,
            };
            if rf < 1 {
                return Err(invalid(
                    line,
                    format!("replication_factor must be >= 1, got {rf}"),
                ));
            }
            if isr < 1 || isr > rf {
                return Err(invalid(
                    field_line("min_insync_replicas"),
                    format!(
                        "min_insync_replicas must be between 1 and replication_factor ({rf}), got {isr}"
                    ),
                ));
            }
            if t.retention_ms == 0 || t.retention_ms < -1 {
                return Err(invalid(
                    field_line("retention_ms"),
                    format!(
                        "retention_ms must be -1 (forever) or positive, got {}",
                        t.retention_ms
                    ),
                ));
            }
            let mut configs = BTreeMap::new();
            configs.insert(
                "cleanup.policy".to_owned(),
                t.cleanup_policy.as_kafka().to_owned(),
            );
            configs.insert("retention.ms".to_owned(), t.retention_ms.to_string());
            configs.insert("min.insync.replicas".to_owned(), isr.to_string());
            if let Some(v) = t.max_message_bytes {
                let v = positive_i32(v, "max_message_bytes")
                    .map_err(|r| invalid(field_line("max_message_bytes"), r))?;
                configs.insert("max.message.bytes".to_owned(), v.to_string());
            }
            if let Some(v) = t.min_compaction_lag_ms {
                if v < 0 {
                    return Err(invalid(
                        field_line("min_compaction_lag_ms"),
                        format!("min_compaction_lag_ms must be >= 0, got {v}"),
                    ));
                }
                if t.cleanup_policy == CleanupPolicy::Delete {
                    return Err(invalid(
                        field_line("min_compaction_lag_ms"),
                        "min_compaction_lag_ms needs a compacting cleanup_policy".to_owned(),
                    ));
                }
                configs.insert("min.compaction.lag.ms".to_owned(), v.to_string());
            }
            for (k, v) in t.configs {
                if FIRST_CLASS_CONFIGS.contains(&k.as_str()) {
                    return Err(invalid(
                        field_line("configs"),
                        format!("{k} has its own field; set it there, not under configs"),
                    ));
                }
                configs.insert(k, v);
            }
            if let Some(subject) = &t.schema_subject
                && subject != &format!("{}-value", t.name)
            {
                return Err(invalid(
                    field_line("schema_subject"),
                    format!(
                        "schema_subject must be {}-value (TopicNameStrategy), got {subject}",
                        t.name
                    ),
                ));
            }
            topics.push(TopicSpec {
                name: t.name,
                description: t.description,
                partitions,
                replication_factor: rf,
                schema_subject: t.schema_subject,
                configs,
                line,
            });
        }
        if topics.is_empty() {
            return Err(invalid(0, "no topics declared".to_owned()));
        }
        Ok(Topology {
            path: path.to_owned(),
            topics,
        })
    }

    /// Returns the built-in topology shipped with Vigil.
    pub fn builtin(overrides: ReplicationOverride) -> Result<Self, TopologyError> {
        Self::parse(
            Path::new("topology/topics.yaml"),
            BUILTIN_TOPICS_YAML,
            overrides,
        )
    }

    /// Returns the topic with this name.
    pub fn topic(&self, name: &str) -> Option<&TopicSpec> {
        self.topics.iter().find(|t| t.name == name)
    }
}

fn positive_i32(v: i64, field: &str) -> Result<i32, String> {
    if v < 1 {
        return Err(format!("{field} must be >= 1, got {v}"));
    }
    i32::try_from(v).map_err(|_| format!("{field} is too large: {v}"))
}

/// Checks a name against Kafka's rules (legal characters, length) so the broker never has to.
fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 249 {
        return Err(format!(
            "topic name must be 1 to 249 characters, got {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("topic name {name:?} is not allowed"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("topic name {name:?} has illegal character {c:?}"));
    }
    Ok(())
}

/// Finds the 1-based line of a topic's `name:` entry, or of one of its fields, so semantic errors
/// can point at the line a person must edit. Returns 0 when not found.
fn locate(text: &str, topic: &str, field: Option<&str>) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let is_name_line = |l: &str| {
        let t = l.trim_start().trim_start_matches("- ").trim_start();
        t.strip_prefix("name:")
            .map(|rest| {
                rest.split('#')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .trim_matches(['"', '\''])
                    == topic
            })
            .unwrap_or(false)
    };
    let Some(start) = lines.iter().position(|l| is_name_line(l)) else {
        return 0;
    };
    let Some(field) = field else {
        return start + 1;
    };
    for (i, l) in lines.iter().enumerate().skip(start + 1) {
        let t = l.trim_start();
        if t.starts_with("- ") {
            break;
        }
        if t.starts_with(&format!("{field}:")) {
            return i + 1;
        }
    }
    start + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Topology, TopologyError> {
        Topology::parse(Path::new("t.yaml"), text, ReplicationOverride::default())
    }

    const HEAD: &str = "defaults:\n  replication_factor: 1\n  min_insync_replicas: 1\ntopics:\n";

    #[test]
    fn builtin_topology_is_valid_and_complete() {
        let t = Topology::builtin(ReplicationOverride::default()).expect("builtin parses");
        for name in [
            "vigil.events.raw",
            "vigil.events.verified",
            "vigil.keys",
            "vigil.alerts",
            "vigil.alerter.state",
            "vigil.dlq",
        ] {
            assert!(t.topic(name).is_some(), "{name} missing");
        }
        let state = t.topic("vigil.alerter.state").expect("alerter state");
        assert_eq!(state.configs["cleanup.policy"], "compact");
        assert_eq!(state.partitions, 1);
        let keys = t.topic("vigil.keys").expect("keys");
        assert_eq!(keys.configs["cleanup.policy"], "compact");
        assert_eq!(t.topic("vigil.events.raw").expect("raw").partitions, 12);
    }

    #[test]
    fn zero_partitions_is_refused_with_its_line() {
        let text = format!(
            "{HEAD}  - name: a.b\n    partitions: 0\n    retention_ms: 1000\n    cleanup_policy: delete\n"
        );
        let err = parse(&text).expect_err("0 partitions refused").to_string();
        assert_eq!(err, "t.yaml:6: partitions must be >= 1, got 0");
    }

    #[test]
    fn unknown_key_is_refused_with_its_line() {
        let text = format!(
            "{HEAD}  - name: a.b\n    partitions: 3\n    retention_ms: 1000\n    cleanup_policy: delete\n    partitons: 4\n"
        );
        let err = parse(&text).expect_err("unknown key refused").to_string();
        assert!(err.starts_with("t.yaml:9:"), "{err}");
        assert!(err.contains("unknown field `partitons`"), "{err}");
    }

    #[test]
    fn malformed_yaml_is_refused_with_its_line() {
        let err = parse("defaults: [\n").expect_err("malformed").to_string();
        assert!(err.starts_with("t.yaml:"), "{err}");
    }

    #[test]
    fn first_class_config_in_free_table_is_refused() {
        let text = format!(
            "{HEAD}  - name: a.b\n    partitions: 3\n    retention_ms: 1000\n    cleanup_policy: delete\n    configs:\n      retention.ms: \"5\"\n"
        );
        let err = parse(&text).expect_err("refused").to_string();
        assert!(err.contains("retention.ms has its own field"), "{err}");
        assert!(err.starts_with("t.yaml:9:"), "{err}");
    }

    #[test]
    fn duplicate_topic_and_bad_names_are_refused() {
        let one = "  - name: a.b\n    partitions: 3\n    retention_ms: 1000\n    cleanup_policy: delete\n";
        let err = parse(&format!("{HEAD}{one}{one}"))
            .expect_err("dup")
            .to_string();
        assert!(err.contains("declared twice"), "{err}");
        let bad = one.replace("a.b", "a/b");
        let err = parse(&format!("{HEAD}{bad}"))
            .expect_err("bad name")
            .to_string();
        assert!(err.contains("illegal character '/'"), "{err}");
    }

    #[test]
    fn isr_above_replication_is_refused_and_overrides_apply() {
        let text = format!(
            "{HEAD}  - name: a.b\n    partitions: 3\n    min_insync_replicas: 2\n    retention_ms: 1000\n    cleanup_policy: delete\n"
        );
        let err = parse(&text).expect_err("isr > rf").to_string();
        assert!(err.starts_with("t.yaml:7:"), "{err}");
        let ok = Topology::parse(
            Path::new("t.yaml"),
            &text,
            ReplicationOverride {
                replication_factor: Some(3),
                min_insync_replicas: Some(2),
            },
        )
        .expect("overrides make it valid");
        assert_eq!(ok.topics[0].replication_factor, 3);
        assert_eq!(ok.topics[0].configs["min.insync.replicas"], "2");
    }
}
