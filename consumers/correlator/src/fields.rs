//! The flat field map Sigma rules address (documented in `rules/README.md`).
//!
//! Keys are literal, dotted where the Avro model nests (`subject.key_id`), with short aliases
//! for the fields SOC rules use most (`key_id`, `principal`, `client_ip`, `trace_id`, …).
//! A literal-key map is what the Sigma engine looks up first, so no path walking happens on
//! the hot path.

use serde_json::{Map, Value};
use vigil_schemas::VerifiedEvent;
use vigil_schemas::model::Status;

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Unknown => "unknown",
        Status::Success => "success",
        Status::Failure => "failure",
    }
}

fn put(map: &mut Map<String, Value>, key: &str, value: impl Into<Value>) {
    map.insert(key.to_owned(), value.into());
}

fn put_opt(map: &mut Map<String, Value>, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), Value::String(v.to_owned()));
    }
}

/// Returns the Sigma field map of one verified event.
pub fn event_fields(v: &VerifiedEvent) -> Value {
    let e = &v.event;
    let mut m = Map::with_capacity(40);
    put(&mut m, "event_id", e.event_id.to_string());
    put(&mut m, "class_uid", e.class_uid.as_str());
    put(&mut m, "activity_id", e.activity_id);
    put(&mut m, "activity_name", e.activity_name.as_str());
    put(&mut m, "status_id", status_str(e.status_id));
    put_opt(&mut m, "status_detail", e.status_detail.as_deref());
    put(&mut m, "severity_id", e.severity_id.as_str());
    put(&mut m, "occurred_at", e.occurred_at);
    put(&mut m, "nonce", e.nonce.as_str());
    put_opt(&mut m, "message", e.message.as_deref());
    put(&mut m, "platform", e.producer.platform.as_str());
    put(&mut m, "producer.platform", e.producer.platform.as_str());
    put(&mut m, "sdk_version", e.producer.sdk_version.as_str());
    put(&mut m, "service", e.producer.service.as_str());
    put(&mut m, "producer.service", e.producer.service.as_str());
    put_opt(&mut m, "host", e.producer.host.as_deref());
    put_opt(&mut m, "instance", e.producer.instance.as_deref());
    put_opt(&mut m, "principal", e.subject.principal.as_deref());
    put_opt(&mut m, "subject.principal", e.subject.principal.as_deref());
    put_opt(&mut m, "client_ip", e.subject.client_ip.as_deref());
    put_opt(&mut m, "subject.client_ip", e.subject.client_ip.as_deref());
    put_opt(&mut m, "tenant", e.subject.tenant.as_deref());
    put_opt(&mut m, "subject.tenant", e.subject.tenant.as_deref());
    put_opt(&mut m, "subject.key_id", e.subject.key_id.as_deref());
    // `key_id`: the key that signed the record (the verifier's view), else the subject's key.
    put_opt(
        &mut m,
        "key_id",
        v.key_id.as_deref().or(e.subject.key_id.as_deref()),
    );
    if let Some(t) = &e.trace {
        put(&mut m, "trace_id", t.trace_id.as_str());
        put(&mut m, "span_id", t.span_id.as_str());
    }
    if let Some(ds) = &e.digital_signature {
        put(&mut m, "digital_signature.state_id", ds.state_id.as_str());
        put(&mut m, "digital_signature.algorithm", ds.algorithm.as_str());
        put_opt(&mut m, "digital_signature.key_id", ds.key_id.as_deref());
    }
    for (k, val) in &e.attributes {
        m.insert(format!("attributes.{k}"), Value::String(val.clone()));
    }
    put(&mut m, "state", v.state.as_str());
    put_opt(&mut m, "reason", v.reason.as_deref());
    put(&mut m, "key_emergency", v.key_emergency);
    put(&mut m, "verifier", v.verifier.as_str());
    put(&mut m, "verified_at", v.verified_at);
    put(&mut m, "origin_topic", v.origin_topic.as_str());
    put(&mut m, "origin_partition", v.origin_partition);
    put(&mut m, "origin_offset", v.origin_offset);
    Value::Object(m)
}
