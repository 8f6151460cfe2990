//! The names of one throwaway pipeline: topics, consumer groups, schema subjects, database.

use vigil_topology::{ReplicationOverride, Topology};

use crate::error::PipelineError;

/// Longest namespace name accepted (`<prefix>-<id>`): topic names built from it stay far below
/// Kafka's 249-character limit.
const MAX_NAME_CHARS: usize = 64;

/// The names of one pipeline run: `<prefix>-<id>` heads every topic, group and the database.
///
/// Topics are the built-in ones with `vigil` replaced by the name (`vigil.events.raw` becomes
/// `<prefix>-<id>.events.raw`), groups are `<prefix>-<id>-<service>`, the ClickHouse database is
/// the name with `_` for `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    id: String,
    name: String,
}

impl Namespace {
    /// Returns the namespace `<prefix>-<id>`; the prefix is lowercase ASCII letters, digits and
    /// inner `-`, starting with a letter, the id lowercase ASCII letters and digits.
    pub fn new(prefix: &str, id: &str) -> Result<Self, PipelineError> {
        let name = format!("{prefix}-{id}");
        let invalid = |reason: &str| PipelineError::Namespace {
            name: name.clone(),
            reason: reason.to_owned(),
        };
        if !prefix.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid("the prefix must start with a lowercase letter"));
        }
        if prefix.ends_with('-')
            || !prefix
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(invalid(
                "the prefix may hold only lowercase letters, digits and inner '-'",
            ));
        }
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(invalid(
                "the id must be one or more lowercase letters or digits",
            ));
        }
        if name.len() > MAX_NAME_CHARS {
            return Err(invalid(&format!("longer than {MAX_NAME_CHARS} characters")));
        }
        Ok(Namespace {
            id: id.to_owned(),
            name,
        })
    }

    /// Returns a fresh namespace under `prefix` with a random 8-character id.
    pub fn random(prefix: &str) -> Result<Self, PipelineError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self::new(prefix, &id[..8])
    }

    /// Returns the run id (the part after the prefix).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Returns `<prefix>-<id>`: the head of every topic, group and subject of the namespace.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the namespace's copy of a built-in topic (`vigil.events.raw` becomes
    /// `<name>.events.raw`); a name outside `vigil.*` is put under `<name>.` whole.
    pub fn topic(&self, builtin: &str) -> String {
        match builtin.strip_prefix("vigil.") {
            Some(rest) => format!("{}.{rest}", self.name),
            None => format!("{}.{builtin}", self.name),
        }
    }

    /// Returns the consumer group of `service` (`<name>-<service>`).
    pub fn group(&self, service: &str) -> String {
        format!("{}-{service}", self.name)
    }

    /// Returns the ClickHouse database of the namespace (the name with `_` for `-`).
    pub fn database(&self) -> String {
        self.name.replace('-', "_")
    }

    /// Returns whether `topic_or_subject` belongs to the namespace (starts with `<name>.`).
    pub fn owns(&self, topic_or_subject: &str) -> bool {
        topic_or_subject
            .strip_prefix(self.name.as_str())
            .is_some_and(|rest| rest.starts_with('.'))
    }

    /// Returns the namespace's raw events topic.
    pub fn raw_topic(&self) -> String {
        self.topic(vigil_schemas::topics::EVENTS_RAW)
    }

    /// Returns the namespace's verified events topic.
    pub fn verified_topic(&self) -> String {
        self.topic(vigil_schemas::topics::EVENTS_VERIFIED)
    }

    /// Returns the namespace's key registry topic.
    pub fn keys_topic(&self) -> String {
        self.topic(vigil_schemas::topics::KEYS)
    }

    /// Returns the namespace's alerts topic.
    pub fn alerts_topic(&self) -> String {
        self.topic(vigil_schemas::topics::ALERTS)
    }

    /// Returns the namespace's dead-letter topic.
    pub fn dlq_topic(&self) -> String {
        self.topic(vigil_schemas::topics::DLQ)
    }

    /// Returns the namespace's alerter state changelog topic.
    pub fn alerter_state_topic(&self) -> String {
        self.topic(vigil_alerter::STATE_TOPIC)
    }

    /// Returns the built-in topology renamed into the namespace: every topic and its schema
    /// subject renamed, partitions capped at `max_partitions` when given.
    pub fn topology(
        &self,
        overrides: ReplicationOverride,
        max_partitions: Option<i32>,
    ) -> Result<Topology, PipelineError> {
        let mut topology = Topology::builtin(overrides).map_err(PipelineError::Topology)?;
        for spec in &mut topology.topics {
            spec.name = self.topic(&spec.name);
            if let Some(max) = max_partitions {
                spec.partitions = spec.partitions.min(max);
            }
            spec.schema_subject = spec
                .schema_subject
                .as_ref()
                .map(|_| vigil_schemas::topics::value_subject(&spec.name));
        }
        Ok(topology)
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns() -> Namespace {
        Namespace::new("vigil-demo", "ab12cd34").unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn names_topics_groups_and_database() {
        let n = ns();
        assert_eq!(n.id(), "ab12cd34");
        assert_eq!(n.name(), "vigil-demo-ab12cd34");
        assert_eq!(n.to_string(), "vigil-demo-ab12cd34");
        assert_eq!(n.raw_topic(), "vigil-demo-ab12cd34.events.raw");
        assert_eq!(n.verified_topic(), "vigil-demo-ab12cd34.events.verified");
        assert_eq!(n.keys_topic(), "vigil-demo-ab12cd34.keys");
        assert_eq!(n.alerts_topic(), "vigil-demo-ab12cd34.alerts");
        assert_eq!(n.dlq_topic(), "vigil-demo-ab12cd34.dlq");
        assert_eq!(n.alerter_state_topic(), "vigil-demo-ab12cd34.alerter.state");
        assert_eq!(n.topic("other"), "vigil-demo-ab12cd34.other");
        assert_eq!(n.group("verifier"), "vigil-demo-ab12cd34-verifier");
        assert_eq!(n.database(), "vigil_demo_ab12cd34");
    }

    #[test]
    fn owns_only_its_own_topics_and_subjects() {
        let n = ns();
        assert!(n.owns("vigil-demo-ab12cd34.events.raw"));
        assert!(n.owns("vigil-demo-ab12cd34.events.raw-value"));
        assert!(!n.owns("vigil-demo-ab12cd345.events.raw"));
        assert!(!n.owns("vigil-demo-ab12cd34-verifier"));
        assert!(!n.owns("vigil.events.raw"));
    }

    #[test]
    fn refuses_names_that_are_not_topic_group_and_database_safe() {
        for (prefix, id) in [
            ("", "a1"),
            ("1demo", "a1"),
            ("Demo", "a1"),
            ("demo-", "a1"),
            ("de_mo", "a1"),
            ("de.mo", "a1"),
            ("demo", ""),
            ("demo", "A1"),
            ("demo", "a-1"),
        ] {
            assert!(
                Namespace::new(prefix, id).is_err(),
                "{prefix:?} {id:?} accepted"
            );
        }
        assert!(Namespace::new("demo", &"a".repeat(64)).is_err());
        assert!(Namespace::new("t2-x", "0").is_ok());
    }

    #[test]
    fn random_ids_differ() {
        let a = Namespace::random("vigil-test").unwrap_or_else(|e| panic!("{e}"));
        let b = Namespace::random("vigil-test").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.id().len(), 8);
        assert_ne!(a, b);
    }

    #[test]
    fn topology_is_renamed_and_capped() {
        let t = ns()
            .topology(ReplicationOverride::default(), Some(3))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!t.topics.is_empty());
        for spec in &t.topics {
            assert!(ns().owns(&spec.name), "{}", spec.name);
            assert!(spec.partitions <= 3, "{}: {}", spec.name, spec.partitions);
            if let Some(subject) = &spec.schema_subject {
                assert_eq!(subject, &format!("{}-value", spec.name));
            }
        }
        assert!(t.topics.iter().any(|s| s.name == ns().raw_topic()));
        assert!(
            t.topics
                .iter()
                .any(|s| s.name == ns().alerter_state_topic())
        );
    }
}
