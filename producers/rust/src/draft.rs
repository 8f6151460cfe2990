//! Event completion, shared by every front end (the CLI, the Python and Node.js SDKs): an event
//! written as JSON with the Avro field names may leave out what a person or a binding should
//! not have to make up (`event_id`, `nonce`, `occurred_at`, `severity_id`, the producer block),
//! and may give `occurred_at` as RFC 3339 text. Completion happens once, here, so every
//! language gets the same event, and so the same bytes.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::error::Category;
use uuid::Uuid;
use vigil_schemas::model::{Platform, now_micros, parse_rfc3339, random_event_id, random_nonce};
use vigil_schemas::{
    DigitalSignature, EventClass, Producer, Severity, Status, Subject, Trace, VerificationEvent,
};

use crate::trace::child_span;

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

/// Parses `text` and fills the fields a draft may leave out: fresh `event_id` and `nonce`,
/// `occurred_at` = now, `activity_id` 0, `severity_id` informational, empty `subject` and
/// `attributes`, the producer block from `defaults`; RFC 3339 `occurred_at` text becomes
/// microseconds. A field the draft gives is kept as it is; null counts as left out.
///
/// The text is read straight into a typed draft (no intermediate `serde_json::Value`), and the
/// ids are [`random_event_id`] and [`random_nonce`]: completion is the first step of every SDK
/// emit (`cargo bench -p vigil-producer --bench draft`).
pub fn complete_json(
    text: &str,
    defaults: Option<&ProducerDefaults>,
) -> Result<VerificationEvent, DraftError> {
    if text.len() > MAX_EVENT_JSON_BYTES {
        return Err(DraftError::TooLarge(text.len()));
    }
    if !text.trim_start().starts_with('{') {
        // A struct would also accept a JSON array; only an object is a draft.
        return Err(match serde_json::from_str::<IgnoredAny>(text) {
            Ok(_) => DraftError::NotAnObject,
            Err(e) => DraftError::Json(e.to_string()),
        });
    }
    let draft: Draft = serde_json::from_str(text).map_err(|e| match e.classify() {
        Category::Data => DraftError::Event(e.to_string()),
        Category::Io | Category::Syntax | Category::Eof => DraftError::Json(e.to_string()),
    })?;
    draft.complete(defaults)
}

/// [`complete_json`] for a draft read from any serde deserializer: what a binding uses to read
/// its language's own objects (the Python SDK reads a `dict` this way, with no JSON between).
pub fn complete_from<'de, D>(
    deserializer: D,
    defaults: Option<&ProducerDefaults>,
) -> Result<VerificationEvent, DraftError>
where
    D: serde::Deserializer<'de>,
{
    Draft::deserialize(deserializer)
        .map_err(|e| DraftError::Event(e.to_string()))?
        .complete(defaults)
}

/// A `VerificationEvent` as a caller may write it: everything completion can fill is optional.
#[derive(Deserialize)]
#[serde(rename = "VerificationEvent")]
struct Draft {
    #[serde(default)]
    event_id: Option<Uuid>,
    #[serde(default)]
    class_uid: Option<EventClass>,
    #[serde(default)]
    activity_id: Option<i32>,
    #[serde(default)]
    activity_name: Option<String>,
    #[serde(default)]
    status_id: Option<Status>,
    #[serde(default)]
    status_detail: Option<String>,
    #[serde(default)]
    severity_id: Option<Severity>,
    #[serde(default)]
    occurred_at: Option<DraftTime>,
    #[serde(default)]
    nonce: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    producer: Option<DraftProducer>,
    #[serde(default)]
    subject: Option<Subject>,
    #[serde(default)]
    trace: Option<Trace>,
    #[serde(default)]
    digital_signature: Option<DigitalSignature>,
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct DraftProducer {
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    sdk_version: Option<String>,
    #[serde(default)]
    service: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    instance: Option<String>,
}

/// `occurred_at` as microseconds since the epoch, or RFC 3339 text.
enum DraftTime {
    Micros(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for DraftTime {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = DraftTime;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("microseconds since the epoch or RFC 3339 text")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<DraftTime, E> {
                Ok(DraftTime::Micros(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<DraftTime, E> {
                i64::try_from(v)
                    .map(DraftTime::Micros)
                    .map_err(|_| E::custom(format!("occurred_at {v} is out of range")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DraftTime, E> {
                Ok(DraftTime::Text(v.to_owned()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

fn missing(field: &str) -> DraftError {
    DraftError::Event(format!("missing field `{field}`"))
}

impl Draft {
    fn complete(
        self,
        defaults: Option<&ProducerDefaults>,
    ) -> Result<VerificationEvent, DraftError> {
        let occurred_at = match self.occurred_at {
            None => now_micros(),
            Some(DraftTime::Micros(m)) => m,
            Some(DraftTime::Text(text)) => {
                parse_rfc3339(&text).ok_or_else(|| DraftError::Time(text.clone()))?
            }
        };
        let producer = match (self.producer, defaults) {
            (Some(p), Some(d)) => Producer {
                platform: p.platform.unwrap_or(d.platform),
                sdk_version: p.sdk_version.unwrap_or_else(|| d.sdk_version.clone()),
                service: p.service.unwrap_or_else(|| d.service.clone()),
                host: p.host.or_else(|| d.host.clone()),
                instance: p.instance,
            },
            (None, Some(d)) => Producer {
                platform: d.platform,
                sdk_version: d.sdk_version.clone(),
                service: d.service.clone(),
                host: d.host.clone(),
                instance: None,
            },
            (Some(p), None) => Producer {
                platform: p.platform.ok_or_else(|| missing("platform"))?,
                sdk_version: p.sdk_version.ok_or_else(|| missing("sdk_version"))?,
                service: p.service.ok_or_else(|| missing("service"))?,
                host: p.host,
                instance: p.instance,
            },
            (None, None) => return Err(missing("producer")),
        };
        Ok(VerificationEvent {
            event_id: self.event_id.unwrap_or_else(random_event_id),
            class_uid: self.class_uid.ok_or_else(|| missing("class_uid"))?,
            activity_id: self.activity_id.unwrap_or(0),
            activity_name: self.activity_name.ok_or_else(|| missing("activity_name"))?,
            status_id: self.status_id.ok_or_else(|| missing("status_id"))?,
            status_detail: self.status_detail,
            severity_id: self.severity_id.unwrap_or(Severity::Informational),
            occurred_at,
            nonce: self.nonce.unwrap_or_else(random_nonce),
            message: self.message,
            producer,
            subject: self.subject.unwrap_or_default(),
            trace: self.trace,
            digital_signature: self.digital_signature,
            attributes: self.attributes.unwrap_or_default(),
        })
    }
}

/// Puts an event that has no `trace` into the trace `parent` names, with a span of its own
/// whose parent is `parent`'s span ([`child_span`]); an event with a trace keeps it. The
/// bindings pass their current context (OpenTelemetry's, or the SDK's own) here, so every
/// language continues a trace the same way.
pub fn adopt_trace(event: &mut VerificationEvent, parent: &Trace) -> Result<(), DraftError> {
    if event.trace.is_some() {
        return Ok(());
    }
    if !parent.is_valid() {
        return Err(DraftError::Event(format!(
            "trace context {:?}/{:?} is not a W3C trace id and span id",
            parent.trace_id, parent.span_id
        )));
    }
    event.trace = Some(child_span(parent));
    Ok(())
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

    #[test]
    fn an_event_without_a_trace_gets_a_child_span_of_the_parent() {
        let parent = Trace::new("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        let mut e = complete_json(
            r#"{"class_uid":"authentication","activity_name":"logon","status_id":"failure"}"#,
            Some(&defaults()),
        )
        .unwrap();
        adopt_trace(&mut e, &parent).unwrap();
        let t = e.trace.clone().unwrap();
        assert_eq!(t.trace_id, parent.trace_id);
        assert_eq!(t.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_ne!(t.span_id, parent.span_id);
        assert!(t.is_valid(), "{t:?}");

        // A trace the event gives is kept.
        let other = Trace::new("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
        adopt_trace(&mut e, &other).unwrap();
        assert_eq!(e.trace, Some(t));
    }

    #[test]
    fn a_malformed_parent_is_refused() {
        let mut e = complete_json(
            r#"{"class_uid":"authentication","activity_name":"logon","status_id":"failure"}"#,
            Some(&defaults()),
        )
        .unwrap();
        for (trace_id, span_id) in [
            ("XYZ", "00f067aa0ba902b7"),
            ("4bf92f3577b34da6a3ce929d0e0e4736", "0000000000000000"),
        ] {
            let err = adopt_trace(&mut e, &Trace::new(trace_id, span_id)).unwrap_err();
            assert!(matches!(err, DraftError::Event(_)), "{err}");
            assert!(e.trace.is_none());
        }
    }

    #[test]
    fn ids_and_nonces_are_fresh_for_every_event() {
        let draft =
            r#"{"class_uid":"authentication","activity_name":"logon","status_id":"failure"}"#;
        let mut ids = std::collections::BTreeSet::new();
        let mut nonces = std::collections::BTreeSet::new();
        for _ in 0..1_000 {
            let e = complete_json(draft, Some(&defaults())).unwrap();
            assert_eq!(e.event_id.get_version_num(), 4);
            assert_eq!(e.nonce.len(), 32);
            ids.insert(e.event_id);
            nonces.insert(e.nonce);
        }
        assert_eq!((ids.len(), nonces.len()), (1_000, 1_000));
    }

    #[test]
    fn a_field_given_twice_or_of_the_wrong_type_is_refused() {
        for text in [
            r#"{"class_uid":"authentication","class_uid":"authorization","activity_name":"a","status_id":"failure"}"#,
            r#"{"class_uid":"authentication","activity_name":7,"status_id":"failure"}"#,
            r#"{"class_uid":"authentication","activity_name":"a","status_id":"failure","occurred_at":true}"#,
        ] {
            let err = complete_json(text, Some(&defaults())).unwrap_err();
            assert!(matches!(err, DraftError::Event(_)), "{text}: {err}");
        }
    }
}
