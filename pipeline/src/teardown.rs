//! Deleting what a namespace left behind: topics, schema subjects, the ClickHouse database.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use vigil_audit_sink::AuditStore;

use crate::config::Endpoints;
use crate::error::PipelineError;
use crate::namespace::Namespace;

/// How long Kafka may take to delete the topics.
const TOPICS_TIMEOUT: Duration = Duration::from_secs(15);
/// The broker-side operation timeout of the delete request.
const TOPICS_OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the schema registry may take for all subjects.
const SUBJECTS_TIMEOUT: Duration = Duration::from_secs(10);
/// How long ClickHouse may take to drop the database.
const DATABASE_TIMEOUT: Duration = Duration::from_secs(10);

/// What [`teardown`] removed, one result per kind of resource.
#[derive(Debug)]
pub struct TeardownReport {
    /// Topics deleted (how many), or `None` when none were asked for.
    pub topics: Option<Result<usize, PipelineError>>,
    /// Schema subjects deleted (how many).
    pub subjects: Result<usize, PipelineError>,
    /// Whether the database was dropped (it may not have existed).
    pub database: Result<(), PipelineError>,
}

/// Deletes `topics` (the namespace's, as [`crate::Namespace::topology`] named them), every
/// schema subject of the namespace (soft, then permanently) and its ClickHouse database. Each
/// step is bounded in time and runs whatever the one before returned.
pub async fn teardown(ns: &Namespace, endpoints: &Endpoints, topics: &[String]) -> TeardownReport {
    let topics = if topics.is_empty() {
        None
    } else {
        Some(
            delete_topics(endpoints, topics)
                .await
                .map(|()| topics.len()),
        )
    };
    let subjects =
        match tokio::time::timeout(SUBJECTS_TIMEOUT, delete_subjects(ns, endpoints)).await {
            Ok(r) => r,
            Err(_) => Err(PipelineError::Timeout {
                secs: SUBJECTS_TIMEOUT.as_secs(),
            }),
        };
    let database = match tokio::time::timeout(DATABASE_TIMEOUT, drop_database(ns, endpoints)).await
    {
        Ok(r) => r,
        Err(_) => Err(PipelineError::Timeout {
            secs: DATABASE_TIMEOUT.as_secs(),
        }),
    };
    TeardownReport {
        topics,
        subjects,
        database,
    }
}

async fn delete_topics(endpoints: &Endpoints, topics: &[String]) -> Result<(), PipelineError> {
    let admin: AdminClient<DefaultClientContext> = endpoints
        .kafka
        .admin()
        .create()
        .map_err(PipelineError::Kafka)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let opts = AdminOptions::new().operation_timeout(Some(TOPICS_OPERATION_TIMEOUT));
    let results = tokio::time::timeout(TOPICS_TIMEOUT, admin.delete_topics(&names, &opts))
        .await
        .map_err(|_| PipelineError::Timeout {
            secs: TOPICS_TIMEOUT.as_secs(),
        })?
        .map_err(PipelineError::Kafka)?;
    for r in results {
        r.map_err(|(topic, code)| PipelineError::DeleteTopic { topic, code })?;
    }
    Ok(())
}

/// Deletes the registry subjects of the namespace (`<name>.*`), soft then permanently as
/// Confluent requires; returns how many were deleted.
async fn delete_subjects(ns: &Namespace, endpoints: &Endpoints) -> Result<usize, PipelineError> {
    let http = reqwest::Client::new();
    let base = endpoints.schema_registry_url.trim_end_matches('/');
    let subjects: Vec<String> = http
        .get(format!("{base}/subjects"))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(PipelineError::SchemaRegistry)?
        .json()
        .await
        .map_err(PipelineError::SchemaRegistry)?;
    let ours: Vec<&String> = subjects.iter().filter(|s| ns.owns(s)).collect();
    for subject in &ours {
        // Subjects of the namespace's topics are [a-z0-9.-]-value: nothing to escape in the path.
        for permanent in [false, true] {
            http.delete(format!("{base}/subjects/{subject}?permanent={permanent}"))
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(PipelineError::SchemaRegistry)?;
        }
    }
    Ok(ours.len())
}

async fn drop_database(ns: &Namespace, endpoints: &Endpoints) -> Result<(), PipelineError> {
    let database = ns.database();
    // Connected to `default`: a session on the database itself fails when it does not exist.
    let store = AuditStore::connect(&endpoints.clickhouse_url, "default")
        .map_err(PipelineError::AuditSink)?;
    store
        .client()
        .query_raw(&format!("DROP DATABASE IF EXISTS {database}"))
        .execute()
        .await
        .map_err(PipelineError::ClickHouse)
}
