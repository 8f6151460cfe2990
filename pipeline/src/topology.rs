//! Creating a namespace's topics through the Admin API.

use std::time::Duration;

use vigil_topology::{KafkaClientConfig, Topology, TopologyAdmin};

use crate::error::{PipelineError, TopologyStep};

/// How long each Admin API step may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// Plans and applies `topology` (usually [`crate::Namespace::topology`]): creates the missing
/// topics, each step bounded by 20 s. An error's [`TopologyStep`] says whether topics may
/// already exist.
pub async fn apply_topology(
    kafka: &KafkaClientConfig,
    topology: &Topology,
) -> Result<(), PipelineError> {
    let admin = TopologyAdmin::connect(kafka).map_err(|source| PipelineError::Admin {
        step: TopologyStep::Plan,
        source,
    })?;
    let timeout = |step| PipelineError::AdminTimeout {
        step,
        secs: STEP_TIMEOUT.as_secs(),
    };
    let plan = tokio::time::timeout(STEP_TIMEOUT, admin.plan(topology))
        .await
        .map_err(|_| timeout(TopologyStep::Plan))?
        .map_err(|source| PipelineError::Admin {
            step: TopologyStep::Plan,
            source,
        })?;
    tokio::time::timeout(STEP_TIMEOUT, admin.apply(topology, &plan))
        .await
        .map_err(|_| timeout(TopologyStep::Apply))?
        .map_err(|source| PipelineError::Admin {
            step: TopologyStep::Apply,
            source,
        })
}
