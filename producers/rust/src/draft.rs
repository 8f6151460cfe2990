//! Event completion, shared by every front end (the CLI, the Python and Node.js SDKs): an event
//! written as JSON with the Avro field names may leave out what a person or a binding should
//! not have to make up (`event_id`, `nonce`, `occurred_at`, `severity_id`, the producer block),
//! and may give `occurred_at` as RFC 3339 text. Completion happens once, here, so every
//! language gets the same event, and so the same bytes.

use serde_json::{Map, Value};
use vigil_schemas::VerificationEvent;
use vigil_schemas::model::{Platform, now_micros, parse_rfc3339, random_nonce};

/// Longest accepted event JSON, so a runaway caller cannot exhaust memory.
pub const MAX_EVENT_JSON_BYTES: usize = 1024 * 1024;

/// Why a draft is not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    /// Not JSON.
    #[error("invalid JSON: {0}")]
    Json(String),
    /// JSON, but not an object.
    #[error("expected a JSON object")]
    NotAnObject,
    /// Larger than [`MAX_EVENT_JSON_BYTES`].
    #[error("event is {0} bytes of JSON, more than {MAX_EVENT_JSON_BYTES}")]
    TooLarge(usize),
    /// `occurred_at` text that is not RFC 3339.
    #[error("occurred_at {0:?} is not RFC 3339")]
    Time(String),
    /// A field is missing or of the wrong type or value.
    #[error("not a VerificationEvent: {0}")]
    Event(String),
}

/// What the emitting SDK knows about itself, filled into a draft's `producer` block where the
/// draft leaves a field out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerDefaults {
    /// The SDK's language.
    pub platform: Platform,
    /// The SDK's version.
    pub sdk_version: String,
    /// The emitting service.
    pub service: String,
    /// The host name, when known.
    pub host: Option<String>,
}

impl ProducerDefaults {
    fn fill(&self, producer: &mut Map<String, Value>) {
        let platform = serde_json::to_value(self.platform).unwrap_or(Value::Null);
        producer.entry("platform").or_insert(platform);
        producer
            .entry("sdk_version")
            .or_insert_with(|| Value::String(self.sdk_version.clone()));
        producer
            .entry("service")
            .or_insert_with(|| Value::String(self.service.clone()));
        if let Some(host) = &self.host {
            producer
                .entry("host")
                .or_insert_with(|| Value::String(host.clone()));
        }
    }
}

/// Parses `text` and completes it; see [`complete`].
pub fn complete_json(
    text: &str,
    defaults: Option<&ProducerDefaults>,
) -> Result<VerificationEvent, DraftError> {
    if text.len() > MAX_EVENT_JSON_BYTES {
        return Err(DraftError::TooLarge(text.len()));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| DraftError::Json(e.to_string()))?;
    complete(value, defaults)
}

/// Fills the fields a draft may leave out (fresh `event_id` and `nonce`, `occurred_at` = now,
/// `activity_id` 0, `severity_id` informational, empty `subject` and `attributes`, the
/// producer block from `defaults`) and converts RFC 3339 `occurred_at` text to microseconds.
/// A field the draft gives is kept as it is.
pub fn complete(
    value: Value,
    defaults: Option<&ProducerDefaults>,
) -> Result<VerificationEvent, DraftError> {
    let Value::Object(mut obj) = value else {
        return Err(DraftError::NotAnObject);
    };
    fill_missing(&mut obj, "event_id", || {
        Value::String(uuid::Uuid::new_v4().to_string())
    });
    fill_missing(&mut obj, "nonce", || Value::String(random_nonce()));
    fill_missing(&mut obj, "activity_id", || Value::from(0));
    fill_missing(&mut obj, "severity_id", || {
        Value::String("informational".into())
    });
    fill_missing(&mut obj, "subject", || Value::Object(Map::new()));
    fill_missing(&mut obj, "attributes", || Value::Object(Map::new()));
    if let Some(defaults) = defaults {
        fill_missing(&mut obj, "producer", || Value::Object(Map::new()));
        if let Some(Value::Object(producer)) = obj.get_mut("producer") {
            defaults.fill(producer);
        }
    }
    match obj.get("occurred_at") {
        None | Some(Value::Null) => {
            obj.insert("occurred_at".into(), Value::from(now_micros()));
        }
        Some(Value::String(text)) => {
            let micros = parse_rfc3339(text).ok_or_else(|| DraftError::Time(text.clone()))?;
            obj.insert("occurred_at".into(), Value::from(micros));
        }
        Some(_) => {}
    }
    serde_json::from_value(Value::Object(obj)).map_err(|e| DraftError::Event(e.to_string()))
}

/// Inserts `make()` under `key` when the key is absent or null.
fn fill_missing(obj: &mut Map<String, Value>, key: &str, make: impl FnOnce() -> Value) {
    match obj.get(key) {
        None | Some(Value::Null) => {
            obj.insert(key.to_owned(), make());
        }
        Some(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> ProducerDefaults {
        ProducerDefaults {
            platform: Platform::Python,
            sdk_version: "9.9.9".into(),
            service: "billing".into(),
            host: Some("h1".into()),
        }
    }

    #[test]
    fn missing_ids_and_times_are_filled_and_rfc3339_accepted() {
        let e = complete_json(
            r#"{"class_uid":"authentication","activity_name":"login","status_id":"failure",
                "occurred_at":"2026-11-23T10:00:00Z",
                "producer":{"platform":"cli","sdk_version":"1","service":"ssh"}}"#,
            None,
        )
        .expect("valid line");
        assert_eq!(
            e.occurred_at,
            parse_rfc3339("2026-11-23T10:00:00Z").expect("time")
        );
        assert_eq!(e.nonce.len(), 32);
        assert_eq!(e.producer.platform, Platform::Cli);
    }

    #[test]
    fn the_producer_block_comes_from_the_sdk_where_the_draft_is_silent() {
        let e = complete_json(
            r#"{"class_uid":"authentication","activity_name":"login","status_id":"success"}"#,
            Some(&defaults()),
        )
        .expect("valid draft");
        assert_eq!(e.producer.platform, Platform::Python);
        assert_eq!(
            (e.producer.sdk_version.as_str(), e.producer.service.as_str()),
            ("9.9.9", "billing")
        );
        assert_eq!(e.producer.host.as_deref(), Some("h1"));
        let given = complete_json(
            r#"{"class_uid":"authentication","activity_name":"login","status_id":"success",
                "producer":{"service":"other"}}"#,
            Some(&defaults()),
        )
        .expect("valid draft");
        assert_eq!(given.producer.service, "other");
    }

    #[test]
    fn a_complete_event_is_kept_field_for_field() {
        let fixed = vigil_schemas::vectors::fixed_event();
        let text = serde_json::to_string(&fixed).expect("json");
        assert_eq!(complete_json(&text, Some(&defaults())), Ok(fixed));
    }

    #[test]
    fn bad_drafts_say_why() {
        assert!(matches!(complete_json("{", None), Err(DraftError::Json(_))));
        assert_eq!(complete_json("[]", None), Err(DraftError::NotAnObject));
        assert!(matches!(
            complete_json(r#"{"class_uid":"nope"}"#, None),
            Err(DraftError::Event(_))
        ));
        assert!(matches!(
            complete_json(r#"{"occurred_at":"yesterday"}"#, None),
            Err(DraftError::Time(_))
        ));
        let big = format!("\"{}\"", "x".repeat(MAX_EVENT_JSON_BYTES));
        assert!(matches!(
            complete_json(&big, None),
            Err(DraftError::TooLarge(_))
        ));
    }
}
