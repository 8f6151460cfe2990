//! The crate's Avro schemas (`schemas/avro/*.avsc`), embedded at compile time and parsed once.

use std::sync::LazyLock;

use apache_avro::Schema;

/// Avro namespace of every Vigil schema.
pub const NAMESPACE: &str = "io.vigil";

/// JSON text of `avro/verification_event.avsc` (value of `vigil.events.raw`).
pub const VERIFICATION_EVENT_AVSC: &str = include_str!("../avro/verification_event.avsc");
/// JSON text of `avro/verified_event.avsc` (value of `vigil.events.verified`).
pub const VERIFIED_EVENT_AVSC: &str = include_str!("../avro/verified_event.avsc");
/// JSON text of `avro/key_status.avsc` (value of `vigil.keys`).
pub const KEY_STATUS_AVSC: &str = include_str!("../avro/key_status.avsc");
/// JSON text of `avro/alert.avsc` (value of `vigil.alerts`).
pub const ALERT_AVSC: &str = include_str!("../avro/alert.avsc");

fn parse_embedded(name: &str, json: &str) -> Schema {
    // The schemas are compile-time assets covered by unit tests, so a failure here is a build
    // defect, not bad input.
    Schema::parse_str(json).unwrap_or_else(|e| panic!("embedded schema {name} is invalid: {e}"))
}

static VERIFICATION_EVENT: LazyLock<Schema> =
    LazyLock::new(|| parse_embedded("verification_event", VERIFICATION_EVENT_AVSC));
static VERIFIED_EVENT: LazyLock<Schema> =
    LazyLock::new(|| parse_embedded("verified_event", VERIFIED_EVENT_AVSC));
static KEY_STATUS: LazyLock<Schema> =
    LazyLock::new(|| parse_embedded("key_status", KEY_STATUS_AVSC));
static ALERT: LazyLock<Schema> = LazyLock::new(|| parse_embedded("alert", ALERT_AVSC));

/// Returns the parsed `VerificationEvent` schema.
pub fn verification_event() -> &'static Schema {
    &VERIFICATION_EVENT
}

/// Returns the parsed `VerifiedEvent` schema.
pub fn verified_event() -> &'static Schema {
    &VERIFIED_EVENT
}

/// Returns the parsed `KeyStatus` schema.
pub fn key_status() -> &'static Schema {
    &KEY_STATUS
}

/// Returns the parsed `Alert` schema.
pub fn alert() -> &'static Schema {
    &ALERT
}

/// Returns every (topic, schema JSON) pair this crate defines, for registration.
pub fn all_value_schemas() -> [(&'static str, &'static str); 4] {
    [
        (crate::topics::EVENTS_RAW, VERIFICATION_EVENT_AVSC),
        (crate::topics::EVENTS_VERIFIED, VERIFIED_EVENT_AVSC),
        (crate::topics::KEYS, KEY_STATUS_AVSC),
        (crate::topics::ALERTS, ALERT_AVSC),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::schema::RecordSchema;

    fn record(schema: &Schema) -> &RecordSchema {
        match schema {
            Schema::Record(r) => r,
            other => panic!("expected a record schema, got {other:?}"),
        }
    }

    /// Walks the raw JSON so nested records and enums are checked too.
    fn assert_every_field_documented(value: &serde_json::Value, path: &str) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(fields)) = map.get("fields") {
                    for field in fields {
                        let name = field["name"].as_str().unwrap_or("?");
                        let doc = field.get("doc").and_then(|d| d.as_str()).unwrap_or("");
                        assert!(!doc.trim().is_empty(), "field {path}.{name} has no doc");
                        assert_every_field_documented(&field["type"], &format!("{path}.{name}"));
                    }
                }
                if map.get("type").and_then(|t| t.as_str()) == Some("record")
                    || map.get("type").and_then(|t| t.as_str()) == Some("enum")
                {
                    assert!(map.contains_key("doc"), "named type at {path} has no doc");
                }
                for (_, v) in map.iter().filter(|(k, _)| k.as_str() != "fields") {
                    assert_every_field_documented(v, path);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    assert_every_field_documented(item, path);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_schema_parses_in_the_vigil_namespace_with_docs() {
        for (topic, json) in all_value_schemas() {
            let schema = Schema::parse_str(json).unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert_eq!(record(&schema).name.namespace(), Some(NAMESPACE), "{topic}");
            let raw: serde_json::Value =
                serde_json::from_str(json).unwrap_or_else(|e| panic!("{topic}: {e}"));
            assert_every_field_documented(&raw, topic);
        }
        assert_eq!(
            record(verification_event()).name.name(),
            "VerificationEvent"
        );
        assert_eq!(record(verified_event()).name.name(), "VerifiedEvent");
        assert_eq!(record(key_status()).name.name(), "KeyStatus");
        assert_eq!(record(alert()).name.name(), "Alert");
    }

    #[test]
    fn verified_event_embeds_the_current_verification_event() {
        let embedded = record(verified_event())
            .fields
            .iter()
            .find(|f| f.name == "event")
            .map(|f| f.schema.canonical_form())
            .unwrap_or_default();
        assert_eq!(embedded, verification_event().canonical_form());
    }
}
