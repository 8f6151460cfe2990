//! Resolves the schema id an emitter frames its values with: registered in the schema registry
//! (idempotent), and cached in a file beside the spool so a restart while the registry is down
//! still produces correctly framed events.

use std::path::Path;

use vigil_schemas::registry::{RegistryError, SchemaRegistry};
use vigil_schemas::{SchemaId, VerificationEvent};

const CACHE_FILE: &str = "schema-id";

/// Failure to obtain a schema id.
#[derive(Debug, thiserror::Error)]
pub enum SchemaIdError {
    /// The registry refused or could not be reached, and no cached id exists.
    #[error("schema registry")]
    Registry(#[from] RegistryError),
}

/// Registers the `VerificationEvent` schema under `vigil.events.raw-value` and returns its id;
/// when the registry is unreachable, returns the id cached in `spool_dir` by an earlier start.
pub async fn resolve(registry_url: &str, spool_dir: &Path) -> Result<SchemaId, SchemaIdError> {
    let cache = spool_dir.join(CACHE_FILE);
    let registered = async {
        let registry = SchemaRegistry::new(registry_url)?;
        registry.register_value::<VerificationEvent>().await
    }
    .await;
    match registered {
        Ok(id) => {
            let _ = std::fs::create_dir_all(spool_dir);
            let tmp = spool_dir.join(format!("{CACHE_FILE}.tmp"));
            if std::fs::write(&tmp, id.0.to_string()).is_ok() {
                let _ = std::fs::rename(&tmp, &cache);
            }
            Ok(id)
        }
        Err(RegistryError::Transient(reason)) => {
            match std::fs::read_to_string(&cache)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
            {
                Some(id) => {
                    tracing::warn!(%reason, id, "schema registry unreachable, using the cached schema id");
                    Ok(SchemaId(id))
                }
                None => Err(RegistryError::Transient(reason).into()),
            }
        }
        Err(e) => Err(e.into()),
    }
}
