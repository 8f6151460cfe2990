//! Compares the declared topology with a live cluster and applies the difference through the
//! Admin API. Applying only ever creates topics, raises partition counts and sets configs; it
//! never deletes a topic or shrinks one.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;

use crate::kafka::KafkaClientConfig;
use crate::topics::{TopicSpec, Topology};

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors while reading or changing the cluster.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The Kafka client failed (broker unreachable, request refused, ...).
    #[error("kafka admin request failed")]
    Kafka(#[from] KafkaError),
    /// The broker refused an operation on one topic.
    #[error("{topic}: {operation} refused by the broker: {reason}")]
    Refused {
        /// Topic concerned.
        topic: String,
        /// What was attempted.
        operation: &'static str,
        /// The broker's answer.
        reason: String,
    },
    /// The declaration asks for something apply will not do (shrinking, changing replication).
    #[error("{file}:{line}: {topic}: {reason}")]
    Impossible {
        /// Topology file.
        file: String,
        /// Line of the topic.
        line: usize,
        /// Topic concerned.
        topic: String,
        /// Why it cannot be applied.
        reason: String,
    },
    /// Changes were accepted but the cluster did not show them in time.
    #[error("the cluster did not reflect these changes within 30 s: {}", remaining.join("; "))]
    NotConverged {
        /// What still differs.
        remaining: Vec<String>,
    },
    /// A blocking metadata call could not be joined.
    #[error("metadata task failed")]
    Join(#[from] tokio::task::JoinError),
}

/// One difference between the declaration and the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The topic does not exist.
    Create(TopicSpec),
    /// The topic has fewer partitions than declared.
    RaisePartitions {
        /// Topic concerned.
        topic: String,
        /// Current count.
        from: i32,
        /// Declared count.
        to: i32,
    },
    /// A managed config differs from the declaration.
    SetConfig {
        /// Topic concerned.
        topic: String,
        /// Kafka config name.
        key: String,
        /// Current value, if any.
        from: Option<String>,
        /// Declared value.
        to: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Create(t) => write!(
                f,
                "+ {}: create ({} partitions, replication {}, {})",
                t.name,
                t.partitions,
                t.replication_factor,
                t.configs
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Change::RaisePartitions { topic, from, to } => {
                write!(f, "~ {topic}: partitions {from} -> {to}")
            }
            Change::SetConfig {
                topic,
                key,
                from,
                to,
            } => write!(
                f,
                "~ {topic}: {key} {} -> {to}",
                from.as_deref().unwrap_or("(unset)")
            ),
        }
    }
}

/// A difference `apply` cannot resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Topology file.
    pub file: String,
    /// Line of the topic.
    pub line: usize,
    /// Topic concerned.
    pub topic: String,
    /// What differs and what to do.
    pub reason: String,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "! {}: {} ({}:{})",
            self.topic, self.reason, self.file, self.line
        )
    }
}

/// Everything that separates the cluster from the declaration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// What `apply` would do.
    pub changes: Vec<Change>,
    /// What `apply` refuses to do.
    pub conflicts: Vec<Conflict>,
}

impl Plan {
    /// Returns true when cluster and declaration agree.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty() && self.conflicts.is_empty()
    }

    /// Returns every difference as a printable line, conflicts first.
    pub fn lines(&self) -> Vec<String> {
        self.conflicts
            .iter()
            .map(ToString::to_string)
            .chain(self.changes.iter().map(ToString::to_string))
            .collect()
    }
}

/// What is on the cluster for one topic.
#[derive(Debug, Clone)]
struct LiveTopic {
    partitions: i32,
    replication_factor: i32,
    configs: BTreeMap<String, String>,
}

/// A connection to the cluster for topology work.
pub struct TopologyAdmin {
    // Shared so blocking metadata calls can run on the blocking pool.
    admin: Arc<AdminClient<DefaultClientContext>>,
    options: AdminOptions,
}

impl TopologyAdmin {
    /// Connects an admin client (the connection itself is made lazily by librdkafka).
    pub fn connect(kafka: &KafkaClientConfig) -> Result<Self, AdminError> {
        let admin = Arc::new(kafka.admin().create()?);
        Ok(Self {
            admin,
            options: AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT)),
        })
    }

    /// Compares the declaration with the cluster: the changes `apply` would make, and the
    /// conflicts it cannot resolve (more partitions than declared, other replication).
    pub async fn plan(&self, topology: &Topology) -> Result<Plan, AdminError> {
        let live = self.describe(topology).await?;
        let mut plan = Plan::default();
        for spec in &topology.topics {
            let Some(current) = live.get(&spec.name) else {
                plan.changes.push(Change::Create(spec.clone()));
                continue;
            };
            let conflict = |reason: String| Conflict {
                file: topology.path.display().to_string(),
                line: spec.line,
                topic: spec.name.clone(),
                reason,
            };
            if spec.partitions < current.partitions {
                plan.conflicts.push(conflict(format!(
                    "declares {} partitions but the topic has {}; Kafka cannot shrink a topic, raise the declaration",
                    spec.partitions, current.partitions
                )));
            }
            if spec.replication_factor != current.replication_factor {
                plan.conflicts.push(conflict(format!(
                    "declares replication {} but the topic has {}; reassign partitions by hand",
                    spec.replication_factor, current.replication_factor
                )));
            }
            if spec.partitions > current.partitions {
                plan.changes.push(Change::RaisePartitions {
                    topic: spec.name.clone(),
                    from: current.partitions,
                    to: spec.partitions,
                });
            }
            for (key, want) in &spec.configs {
                let have = current.configs.get(key);
                if have != Some(want) {
                    plan.changes.push(Change::SetConfig {
                        topic: spec.name.clone(),
                        key: key.clone(),
                        from: have.cloned(),
                        to: want.clone(),
                    });
                }
            }
        }
        Ok(plan)
    }

    /// Applies planned changes in order: creations, partition raises, then config updates.
    /// Refuses a plan with conflicts, naming the file and line of the first.
    pub async fn apply(&self, topology: &Topology, plan: &Plan) -> Result<(), AdminError> {
        if let Some(c) = plan.conflicts.first() {
            return Err(AdminError::Impossible {
                file: c.file.clone(),
                line: c.line,
                topic: c.topic.clone(),
                reason: c.reason.clone(),
            });
        }
        let changes = &plan.changes;
        let creates: Vec<NewTopic<'_>> = changes
            .iter()
            .filter_map(|c| match c {
                Change::Create(t) => {
                    let mut nt = NewTopic::new(
                        &t.name,
                        t.partitions,
                        TopicReplication::Fixed(t.replication_factor),
                    );
                    for (k, v) in &t.configs {
                        nt = nt.set(k, v);
                    }
                    Some(nt)
                }
                _ => None,
            })
            .collect();
        if !creates.is_empty() {
            for result in self.admin.create_topics(&creates, &self.options).await? {
                if let Err((topic, code)) = result {
                    // A concurrent apply may have created it in between; that is success.
                    if code != rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists {
                        return Err(AdminError::Refused {
                            topic,
                            operation: "create",
                            reason: code.to_string(),
                        });
                    }
                }
            }
        }

        let raises: Vec<NewPartitions<'_>> = changes
            .iter()
            .filter_map(|c| match c {
                Change::RaisePartitions { topic, to, .. } => {
                    Some(NewPartitions::new(topic, *to as usize))
                }
                _ => None,
            })
            .collect();
        if !raises.is_empty() {
            for result in self.admin.create_partitions(&raises, &self.options).await? {
                if let Err((topic, code)) = result {
                    return Err(AdminError::Refused {
                        topic,
                        operation: "raise partitions",
                        reason: code.to_string(),
                    });
                }
            }
        }

        // AlterConfigs replaces a topic's whole dynamic config, so send every managed key of a
        // touched topic, not only the ones that drifted.
        let mut touched: Vec<&TopicSpec> = Vec::new();
        for c in changes {
            if let Change::SetConfig { topic, .. } = c
                && let Some(spec) = topology.topic(topic)
                && !touched.iter().any(|t| t.name == spec.name)
            {
                touched.push(spec);
            }
        }
        if !touched.is_empty() {
            let alters: Vec<AlterConfig<'_>> = touched
                .iter()
                .map(|spec| {
                    spec.configs.iter().fold(
                        AlterConfig::new(ResourceSpecifier::Topic(&spec.name)),
                        |a, (k, v)| a.set(k, v),
                    )
                })
                .collect();
            for result in self.admin.alter_configs(&alters, &self.options).await? {
                if let Err((resource, code)) = result {
                    return Err(AdminError::Refused {
                        topic: format!("{resource:?}"),
                        operation: "alter configs",
                        reason: code.to_string(),
                    });
                }
            }
        }
        self.await_converged(topology).await
    }

    /// Waits until the cluster's metadata shows the declaration: a created topic or new
    /// partitions reach every broker's metadata cache a moment after the request succeeds, and a
    /// broker that silently ignored a change must be caught here, not by the next reader.
    async fn await_converged(&self, topology: &Topology) -> Result<(), AdminError> {
        let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
        loop {
            let plan = self.plan(topology).await?;
            if plan.changes.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AdminError::NotConverged {
                    remaining: plan.changes.iter().map(ToString::to_string).collect(),
                });
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn describe(
        &self,
        topology: &Topology,
    ) -> Result<BTreeMap<String, LiveTopic>, AdminError> {
        let admin = Arc::clone(&self.admin);
        let metadata =
            tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, ADMIN_TIMEOUT))
                .await??;
        let mut live = BTreeMap::new();
        for t in metadata.topics() {
            if topology.topic(t.name()).is_none() || t.error().is_some() {
                continue;
            }
            let replication = t
                .partitions()
                .first()
                .map(|p| p.replicas().len() as i32)
                .unwrap_or(0);
            live.insert(
                t.name().to_owned(),
                LiveTopic {
                    partitions: t.partitions().len() as i32,
                    replication_factor: replication,
                    configs: BTreeMap::new(),
                },
            );
        }
        if live.is_empty() {
            return Ok(live);
        }
        let names: Vec<String> = live.keys().cloned().collect();
        let specifiers: Vec<ResourceSpecifier<'_>> =
            names.iter().map(|n| ResourceSpecifier::Topic(n)).collect();
        for (name, result) in names.iter().zip(
            self.admin
                .describe_configs(&specifiers, &self.options)
                .await?,
        ) {
            let resource = result.map_err(|code| AdminError::Refused {
                topic: name.clone(),
                operation: "describe configs",
                reason: code.to_string(),
            })?;
            if let Some(entry) = live.get_mut(name) {
                entry.configs = resource
                    .entries
                    .into_iter()
                    .filter_map(|e| e.value.map(|v| (e.name, v)))
                    .collect();
            }
        }
        Ok(live)
    }
}
