//! Confluent schema registry client with bounded caches (async; brings no runtime of its own).
//!
//! Subjects follow the TopicNameStrategy: the value schema of topic `t` lives under `t-value`.
//! Lookups by id are cached (bounded); unknown ids are remembered for a short while so a flood
//! of foreign records cannot turn into a flood of registry calls.

use std::collections::HashMap;
use std::error::Error as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use schema_registry_converter::async_impl::schema_registry::{
    SrSettings, get_schema_by_id, is_compatible_schema, post_schema,
};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{RawError, SchemaType, SuppliedSchema};

use crate::codec::{AvroRecord, WriterSchema};
use crate::error::ErrorClass;
use crate::topics::value_subject;
use crate::wire::{SchemaId, WireError};

/// Default bound on cached writer schemas.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;
/// How long an id the registry did not know is answered from memory.
pub const UNKNOWN_ID_TTL: Duration = Duration::from_secs(30);
/// Default HTTP timeout for registry calls.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

const ERROR_SCHEMA_NOT_FOUND: u32 = 40403;
const ERROR_SUBJECT_NOT_FOUND: u32 = 40401;
const ERROR_INCOMPATIBLE: u32 = 409;

/// Failure talking to the schema registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The registry is unreachable or answered 5xx: retry with backoff.
    #[error("schema registry unavailable: {0}")]
    Transient(String),
    /// The registry does not know this schema id (foreign or forged bytes).
    #[error("unknown schema id {0}")]
    UnknownSchemaId(SchemaId),
    /// The registry refused a schema as incompatible with the subject's history.
    #[error("schema incompatible with subject {subject}: {message}")]
    Incompatible {
        /// The subject.
        subject: String,
        /// The registry's message.
        message: String,
    },
    /// The registry returned a schema that is not valid Avro.
    #[error("registry returned an invalid schema")]
    InvalidSchema(#[source] WireError),
    /// Any other refusal (authentication, bad request, unparseable answer).
    #[error("schema registry error: {0}")]
    Registry(String),
}

impl RegistryError {
    /// Returns how a consumer must treat this error.
    pub fn class(&self) -> ErrorClass {
        match self {
            RegistryError::Transient(_) => ErrorClass::Transient,
            RegistryError::UnknownSchemaId(_) | RegistryError::InvalidSchema(_) => {
                ErrorClass::BadData
            }
            RegistryError::Incompatible { .. } | RegistryError::Registry(_) => ErrorClass::Internal,
        }
    }

    /// Returns the equivalent wire error for a decode path that wants a single error type.
    pub fn into_wire_error(self) -> Result<WireError, RegistryError> {
        match self {
            RegistryError::UnknownSchemaId(id) => Ok(WireError::UnknownSchemaId(id)),
            RegistryError::InvalidSchema(e) => Ok(e),
            other => Err(other),
        }
    }
}

fn registry_error_code(err: &SRCError) -> Option<u32> {
    err.source()
        .and_then(|s| s.downcast_ref::<RawError>())
        .map(|raw| raw.error_code)
}

fn classify(err: SRCError, subject: Option<&str>, id: Option<SchemaId>) -> RegistryError {
    let code = registry_error_code(&err);
    // The client marks only connection failures and 502/503 retriable; registry store errors
    // (5xxxx codes) and plain 5xx are just as temporary.
    if err.retriable || code.is_some_and(|c| c >= 50_000 || (500..600).contains(&c)) {
        return RegistryError::Transient(err.to_string());
    }
    match (code, id, subject) {
        (Some(ERROR_SCHEMA_NOT_FOUND), Some(id), _) => RegistryError::UnknownSchemaId(id),
        (Some(ERROR_INCOMPATIBLE), _, Some(subject)) => RegistryError::Incompatible {
            subject: subject.to_owned(),
            message: err.cause.clone().unwrap_or_else(|| err.error.clone()),
        },
        _ => RegistryError::Registry(err.to_string()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The caches hold plain data; a panic elsewhere cannot leave them inconsistent.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bounded writer-schema cache; evicts an arbitrary entry when full (ids are stable, so any
/// eviction is only a cost, never a correctness issue).
#[derive(Debug)]
struct SchemaCache {
    capacity: usize,
    by_id: HashMap<SchemaId, Arc<WriterSchema>>,
    unknown: HashMap<SchemaId, Instant>,
}

impl SchemaCache {
    fn new(capacity: usize) -> Self {
        SchemaCache {
            capacity: capacity.max(1),
            by_id: HashMap::new(),
            unknown: HashMap::new(),
        }
    }

    fn get(&mut self, id: SchemaId, now: Instant) -> Option<Result<Arc<WriterSchema>, SchemaId>> {
        if let Some(schema) = self.by_id.get(&id) {
            return Some(Ok(Arc::clone(schema)));
        }
        match self.unknown.get(&id) {
            Some(at) if now.duration_since(*at) < UNKNOWN_ID_TTL => Some(Err(id)),
            Some(_) => {
                self.unknown.remove(&id);
                None
            }
            None => None,
        }
    }

    fn insert(&mut self, schema: Arc<WriterSchema>) {
        if self.by_id.len() >= self.capacity
            && let Some(victim) = self.by_id.keys().next().copied()
        {
            self.by_id.remove(&victim);
        }
        self.unknown.remove(&schema.id());
        self.by_id.insert(schema.id(), schema);
    }

    fn insert_unknown(&mut self, id: SchemaId, now: Instant) {
        if self.unknown.len() >= self.capacity {
            self.unknown
                .retain(|_, at| now.duration_since(*at) < UNKNOWN_ID_TTL);
            if self.unknown.len() >= self.capacity {
                self.unknown.clear();
            }
        }
        self.unknown.insert(id, now);
    }

    fn len(&self) -> usize {
        self.by_id.len()
    }
}

/// Caching schema registry client.
#[derive(Debug)]
pub struct SchemaRegistry {
    settings: SrSettings,
    /// Registered ids by subject and schema text: a subject holds several versions over time.
    subjects: Mutex<HashMap<(String, String), SchemaId>>,
    schemas: Mutex<SchemaCache>,
}

impl SchemaRegistry {
    /// Connects lazily to the registry at `url` (e.g. `VIGIL_SCHEMA_REGISTRY_URL`) with [`DEFAULT_TIMEOUT`].
    pub fn new(url: &str) -> Result<Self, RegistryError> {
        let settings = SrSettings::new_builder(url.to_owned())
            .set_timeout(DEFAULT_TIMEOUT)
            .build()
            .map_err(|e| RegistryError::Registry(e.to_string()))?;
        Ok(Self::with_settings(settings, DEFAULT_CACHE_CAPACITY))
    }

    /// Uses prepared client settings (authentication, several urls, proxies) and a cache bound.
    pub fn with_settings(settings: SrSettings, cache_capacity: usize) -> Self {
        SchemaRegistry {
            settings,
            subjects: Mutex::new(HashMap::new()),
            schemas: Mutex::new(SchemaCache::new(cache_capacity)),
        }
    }

    /// Registers `schema_json` under `subject` (idempotent) and returns its id; cached per subject.
    ///
    pub async fn register(
        &self,
        subject: &str,
        schema_json: &str,
    ) -> Result<SchemaId, RegistryError> {
        if let Some(id) = lock(&self.subjects).get(&(subject.to_owned(), schema_json.to_owned())) {
            return Ok(*id);
        }
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema_json.to_owned());
        let registered = post_schema(&self.settings, subject.to_owned(), supplied)
            .await
            .map_err(|e| classify(e, Some(subject), None))?;
        let id = SchemaId(registered.id);
        let writer = WriterSchema::parse(id, schema_json).map_err(RegistryError::InvalidSchema)?;
        lock(&self.subjects).insert((subject.to_owned(), schema_json.to_owned()), id);
        lock(&self.schemas).insert(Arc::new(writer));
        Ok(id)
    }

    /// Registers `T`'s schema under `<T::TOPIC>-value` and returns its id.
    pub async fn register_value<T: AvroRecord>(&self) -> Result<SchemaId, RegistryError> {
        self.register(&value_subject(T::TOPIC), T::SCHEMA_JSON)
            .await
    }

    /// Registers every schema of this crate; returns (subject, id) pairs.
    pub async fn register_all(&self) -> Result<Vec<(String, SchemaId)>, RegistryError> {
        let mut out = Vec::new();
        for (topic, json) in crate::schema::all_value_schemas() {
            let subject = value_subject(topic);
            let id = self.register(&subject, json).await?;
            out.push((subject, id));
        }
        Ok(out)
    }

    /// Asks whether `schema_json` is compatible with `subject` under the subject's compatibility level.
    pub async fn is_compatible(
        &self,
        subject: &str,
        schema_json: &str,
    ) -> Result<bool, RegistryError> {
        let supplied = SuppliedSchema::new(None, SchemaType::Avro, schema_json.to_owned());
        match is_compatible_schema(&self.settings, subject.to_owned(), supplied).await {
            Ok(ok) => Ok(ok),
            Err(e) if registry_error_code(&e) == Some(ERROR_SUBJECT_NOT_FOUND) => Ok(true),
            Err(e) => Err(classify(e, Some(subject), None)),
        }
    }

    /// Returns the writer schema for `id`, from the cache when possible.
    pub async fn schema_by_id(&self, id: SchemaId) -> Result<Arc<WriterSchema>, RegistryError> {
        if let Some(hit) = lock(&self.schemas).get(id, Instant::now()) {
            return hit.map_err(RegistryError::UnknownSchemaId);
        }
        match get_schema_by_id(id.0, &self.settings).await {
            Ok(registered) => {
                let writer = WriterSchema::parse(id, &registered.schema)
                    .map_err(RegistryError::InvalidSchema)?;
                let writer = Arc::new(writer);
                lock(&self.schemas).insert(Arc::clone(&writer));
                Ok(writer)
            }
            Err(e) => {
                let err = classify(e, None, Some(id));
                if matches!(err, RegistryError::UnknownSchemaId(_)) {
                    lock(&self.schemas).insert_unknown(id, Instant::now());
                }
                Err(err)
            }
        }
    }

    /// Returns the cached id of `schema_json` under `subject`, if registered by this client.
    pub fn cached_id(&self, subject: &str, schema_json: &str) -> Option<SchemaId> {
        lock(&self.subjects)
            .get(&(subject.to_owned(), schema_json.to_owned()))
            .copied()
    }

    /// Returns how many writer schemas are cached (for a gauge).
    pub fn cached_schemas(&self) -> usize {
        lock(&self.schemas).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_error(code: u32) -> RawError {
        serde_json::from_str(&format!(r#"{{"error_code":{code},"message":"m{code}"}}"#))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn errors_are_classified() {
        let transient = SRCError::retryable_with_cause(raw_error(0), "http call failed");
        assert_eq!(
            classify(transient, None, None).class(),
            ErrorClass::Transient
        );
        let store = SRCError::non_retryable_with_cause(raw_error(50001), "status 500");
        assert_eq!(classify(store, None, None).class(), ErrorClass::Transient);
        let unknown = SRCError::non_retryable_with_cause(raw_error(40403), "status 404");
        let err = classify(unknown, None, Some(SchemaId(77)));
        assert!(matches!(err, RegistryError::UnknownSchemaId(SchemaId(77))));
        assert_eq!(err.class(), ErrorClass::BadData);
        assert!(matches!(
            err.into_wire_error(),
            Ok(WireError::UnknownSchemaId(SchemaId(77)))
        ));
        let incompatible = SRCError::non_retryable_with_cause(raw_error(409), "status 409");
        assert!(matches!(
            classify(incompatible, Some("s-value"), None),
            RegistryError::Incompatible { subject, .. } if subject == "s-value"
        ));
        let auth = SRCError::non_retryable_with_cause(raw_error(40101), "status 401");
        assert_eq!(classify(auth, None, None).class(), ErrorClass::Internal);
    }

    #[test]
    fn cache_is_bounded_and_remembers_unknown_ids_briefly() {
        let mut cache = SchemaCache::new(2);
        let now = Instant::now();
        for id in 1..=3 {
            let w = WriterSchema::parse(SchemaId(id), crate::schema::KEY_STATUS_AVSC)
                .unwrap_or_else(|e| panic!("{e}"));
            cache.insert(Arc::new(w));
        }
        assert_eq!(cache.len(), 2);
        assert!(matches!(cache.get(SchemaId(3), now), Some(Ok(_))));
        cache.insert_unknown(SchemaId(9), now);
        assert!(matches!(
            cache.get(SchemaId(9), now),
            Some(Err(SchemaId(9)))
        ));
        assert!(cache.get(SchemaId(9), now + UNKNOWN_ID_TTL).is_none());
        assert!(cache.get(SchemaId(10), now).is_none());
        for id in 100..110 {
            cache.insert_unknown(SchemaId(id), now);
        }
        assert!(cache.unknown.len() <= 2);
    }

    #[test]
    fn client_builds_without_connecting() {
        let registry = SchemaRegistry::new("http://127.0.0.1:1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(registry.cached_schemas(), 0);
        assert_eq!(registry.cached_id("vigil.events.raw-value", "{}"), None);
    }
}
