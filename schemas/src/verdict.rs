//! Writing a [`VerifiedEvent`] around the raw event's own bytes.
//!
//! An Avro record is the concatenation of its fields' encodings, and `event` is the first field
//! of `VerifiedEvent`. When the raw record was written with our `VerificationEvent` schema (same
//! parsing-canonical fingerprint) and its body decoded completely, that body *is* a valid
//! encoding of the `event` field. The verifier then appends only the verdict's own fields instead
//! of re-serializing the whole event: measured by `scripts/bench-verifier`, re-encoding was the
//! largest single cost of a verdict after the signature check. Any other writer schema falls back
//! to [`Codec::encode_framed`](crate::Codec::encode_framed) of the decoded event.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;
use apache_avro::writer::datum::GenericDatumWriter;
use serde::Serialize;
use serde_json::Value;

use crate::codec::{AvroRecord, WriterSchema, limit_avro_allocations};
use crate::model::{SignatureState, TimestampMicros, VerificationEvent, VerifiedEvent};
use crate::wire::{self, SchemaId, WireError};

/// Every field of [`VerifiedEvent`] after `event`, borrowed from the record being judged.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct VerdictFields<'a> {
    /// Verdict on the producer's signature.
    pub state: SignatureState,
    /// Why the verdict is not valid.
    pub reason: Option<&'a str>,
    /// When the verifier decided.
    pub verified_at: TimestampMicros,
    /// Instance id of the verifier.
    pub verifier: &'a str,
    /// Key id the signature claimed.
    pub key_id: Option<&'a str>,
    /// The exact framed value bytes that were signed.
    #[serde(with = "serde_bytes")]
    pub signed_value: &'a [u8],
    /// The signature from the `vigil-sig` header.
    #[serde(with = "serde_bytes")]
    pub signature: &'a [u8],
    /// Topic read from.
    pub origin_topic: &'a str,
    /// Partition read from.
    pub origin_partition: i32,
    /// Offset read from.
    pub origin_offset: i64,
    /// The signing key was revoked as an emergency.
    pub key_emergency: bool,
}

impl VerdictFields<'_> {
    /// Returns the owned [`VerifiedEvent`] these fields describe around `event`.
    pub fn to_verified(&self, event: VerificationEvent) -> VerifiedEvent {
        VerifiedEvent {
            event,
            state: self.state,
            reason: self.reason.map(str::to_owned),
            verified_at: self.verified_at,
            verifier: self.verifier.to_owned(),
            key_id: self.key_id.map(str::to_owned),
            signed_value: self.signed_value.to_vec(),
            signature: self.signature.to_vec(),
            origin_topic: self.origin_topic.to_owned(),
            origin_partition: self.origin_partition,
            origin_offset: self.origin_offset,
            key_emergency: self.key_emergency,
        }
    }
}

/// The `VerifiedEvent` schema without its `event` field, as its own record. Named types the
/// remaining fields only reference (e.g. `SignatureState`, defined inside the event) are inlined
/// at their first use so the record stands alone; the binary layout of every field is unchanged.
static VERDICT_FIELDS_SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(|| {
    let event: Value = serde_json::from_str(<VerificationEvent as AvroRecord>::SCHEMA_JSON)
        .map_err(|e| e.to_string())?;
    let verified: Value = serde_json::from_str(<VerifiedEvent as AvroRecord>::SCHEMA_JSON)
        .map_err(|e| e.to_string())?;
    let namespace = verified.get("namespace").cloned().unwrap_or(Value::Null);
    let mut defs = Vec::new();
    collect_named(&event, namespace.as_str().unwrap_or_default(), &mut defs);
    let Some(Value::Array(fields)) = verified.get("fields") else {
        return Err("VerifiedEvent schema has no fields".to_owned());
    };
    match fields
        .first()
        .and_then(|f| f.get("name"))
        .and_then(Value::as_str)
    {
        Some("event") => {}
        other => {
            return Err(format!(
                "VerifiedEvent's first field is {other:?}, not event"
            ));
        }
    }
    let mut rest: Vec<Value> = fields[1..].to_vec();
    for field in &mut rest {
        if let Some(ty) = field.get_mut("type") {
            inline_refs(ty, &mut defs);
        }
    }
    let tail = serde_json::json!({
        "type": "record",
        "name": "VerdictFields",
        "namespace": namespace,
        "fields": rest,
    });
    Schema::parse(&tail).map_err(|e| e.to_string())
});

/// Named type definitions (full name, short name, definition) found in `schema`.
fn collect_named(schema: &Value, namespace: &str, out: &mut Vec<(String, String, Value)>) {
    match schema {
        Value::Object(map) => {
            let ns = map
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            let named = matches!(
                map.get("type").and_then(Value::as_str),
                Some("record" | "enum" | "fixed")
            );
            if let (true, Some(name)) = (named, map.get("name").and_then(Value::as_str)) {
                let full = if name.contains('.') || ns.is_empty() {
                    name.to_owned()
                } else {
                    format!("{ns}.{name}")
                };
                let short = full.rsplit('.').next().unwrap_or(&full).to_owned();
                out.push((full, short, schema.clone()));
            }
            for v in map.values() {
                collect_named(v, ns, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_named(v, namespace, out)),
        _ => {}
    }
}

/// Replaces the first reference to each known named type with its definition.
fn inline_refs(ty: &mut Value, defs: &mut Vec<(String, String, Value)>) {
    match ty {
        Value::String(name) => {
            if let Some(i) = defs
                .iter()
                .position(|(full, short, _)| full == name || short == name)
            {
                *ty = defs.swap_remove(i).2;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| inline_refs(v, defs)),
        Value::Object(map) => {
            for key in ["items", "values"] {
                if let Some(v) = map.get_mut(key) {
                    inline_refs(v, defs);
                }
            }
        }
        _ => {}
    }
}

/// Writes framed `VerifiedEvent`s from a raw event body plus [`VerdictFields`]; build once and
/// share (it is `Send + Sync`).
pub struct VerdictEncoder {
    fields: GenericDatumWriter<'static>,
    event_fingerprint: Vec<u8>,
    max_value_bytes: usize,
}

impl std::fmt::Debug for VerdictEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerdictEncoder")
            .field("max_value_bytes", &self.max_value_bytes)
            .finish_non_exhaustive()
    }
}

impl VerdictEncoder {
    /// Builds the encoder; framed results above `max_value_bytes` are refused.
    pub fn new(max_value_bytes: usize) -> Result<Self, WireError> {
        limit_avro_allocations();
        let schema = VERDICT_FIELDS_SCHEMA
            .as_ref()
            .map_err(|e| WireError::DerivedSchema(format!("VerdictFields: {e}")))?;
        let fields = GenericDatumWriter::builder(schema)
            .human_readable(false)
            .build()
            .map_err(WireError::InvalidSchema)?;
        Ok(VerdictEncoder {
            fields,
            event_fingerprint: <VerificationEvent as AvroRecord>::schema()
                .fingerprint::<Rabin>()
                .bytes,
            max_value_bytes,
        })
    }

    /// Whether a body written with `writer` can be reused as the `event` field as it is.
    pub fn reuses(&self, writer: &WriterSchema) -> bool {
        writer.fingerprint() == self.event_fingerprint.as_slice()
    }

    /// Returns the framed `VerifiedEvent` made of `event_body` (written with `writer` and already
    /// decoded completely by [`Codec::decode_with`](crate::Codec::decode_with)) and `fields`, or
    /// `Ok(None)` when `writer` is not our schema and the caller must re-encode the event.
    pub fn encode_framed(
        &self,
        schema_id: SchemaId,
        writer: &WriterSchema,
        event_body: &[u8],
        fields: &VerdictFields<'_>,
    ) -> Result<Option<Vec<u8>>, WireError> {
        if !self.reuses(writer) {
            return Ok(None);
        }
        let mut out = Vec::with_capacity(
            wire::FRAME_HEADER_LEN + event_body.len() + fields.signed_value.len() + 160,
        );
        wire::frame_into(schema_id, event_body, &mut out);
        self.fields
            .write_ser(&mut out, fields)
            .map_err(WireError::Encode)?;
        if out.len() > self.max_value_bytes {
            return Err(WireError::Oversized {
                len: out.len(),
                max: self.max_value_bytes,
            });
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Codec;
    use crate::model::{DigitalSignature, EventClass, Producer, Severity, Status, Subject, Trace};
    use crate::schema;
    use proptest::prelude::*;

    fn event() -> VerificationEvent {
        VerificationEvent::new(
            EventClass::SignatureVerification,
            "verify",
            Status::Failure,
            Producer::rust("payments-api").with_host("host-1"),
        )
        .with_severity(Severity::High)
        .with_subject(
            Subject::principal("svc")
                .with_key_id("k-1")
                .with_client_ip("10.0.0.1"),
        )
        .with_trace(Trace::new(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ))
        .with_signature_check(DigitalSignature {
            algorithm: "ed25519".into(),
            key_id: Some("k-1".into()),
            state_id: SignatureState::Bad,
            duration_us: Some(53),
        })
        .with_attribute("route", "/v1/pay")
    }

    fn ours() -> WriterSchema {
        WriterSchema::parse(SchemaId(1), schema::VERIFICATION_EVENT_AVSC)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn encoder() -> VerdictEncoder {
        VerdictEncoder::new(crate::wire::DEFAULT_MAX_VALUE_BYTES * 3)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    const STATES: [SignatureState; 5] = [
        SignatureState::Unknown,
        SignatureState::Valid,
        SignatureState::Revoked,
        SignatureState::Bad,
        SignatureState::Untrusted,
    ];

    #[test]
    fn derived_schema_inlines_the_state_enum() {
        let schema = VERDICT_FIELDS_SCHEMA
            .as_ref()
            .unwrap_or_else(|e| panic!("{e}"));
        let Schema::Record(r) = schema else {
            panic!("not a record: {schema:?}")
        };
        let names: Vec<&str> = r.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "state",
                "reason",
                "verified_at",
                "verifier",
                "key_id",
                "signed_value",
                "signature",
                "origin_topic",
                "origin_partition",
                "origin_offset",
                "key_emergency",
            ]
        );
        assert!(matches!(r.fields[0].schema, Schema::Enum(_)));
    }

    #[test]
    fn another_writer_schema_is_not_reused() {
        let v2 = WriterSchema::parse(
            SchemaId(2),
            include_str!("../testdata/verification_event_v2.avsc"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let fields = VerdictFields {
            state: SignatureState::Valid,
            reason: None,
            verified_at: 1,
            verifier: "v",
            key_id: None,
            signed_value: b"x",
            signature: b"s",
            origin_topic: "t",
            origin_partition: 0,
            origin_offset: 0,
            key_emergency: false,
        };
        assert!(!encoder().reuses(&v2));
        assert!(matches!(
            encoder().encode_framed(SchemaId(9), &v2, b"", &fields),
            Ok(None)
        ));
    }

    #[test]
    fn results_over_the_bound_are_refused() {
        let enc = VerdictEncoder::new(64).unwrap_or_else(|e| panic!("{e}"));
        let body = Codec::<VerificationEvent>::new()
            .and_then(|c| c.encode(&event()))
            .unwrap_or_else(|e| panic!("{e}"));
        let fields = VerdictFields {
            state: SignatureState::Valid,
            reason: None,
            verified_at: 1,
            verifier: "v",
            key_id: None,
            signed_value: &body,
            signature: &[0; 64],
            origin_topic: "t",
            origin_partition: 0,
            origin_offset: 0,
            key_emergency: false,
        };
        assert!(matches!(
            enc.encode_framed(SchemaId(9), &ours(), &body, &fields),
            Err(WireError::Oversized { .. })
        ));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// The spliced bytes are exactly what encoding the whole `VerifiedEvent` gives.
        #[test]
        fn splicing_equals_full_encoding(
            state in 0usize..5,
            reason in proptest::option::of(".{0,40}"),
            verified_at in any::<i64>(),
            verifier in ".{0,20}",
            key_id in proptest::option::of("[a-z0-9-]{0,20}"),
            signed_value in proptest::collection::vec(any::<u8>(), 0..300),
            signature in proptest::collection::vec(any::<u8>(), 0..80),
            origin_topic in "[a-z.]{0,30}",
            origin_partition in any::<i32>(),
            origin_offset in any::<i64>(),
            principal in proptest::option::of(".{0,40}"),
            attrs in proptest::collection::btree_map(".{0,10}", ".{0,20}", 0..6),
        ) {
            let mut ev = event();
            ev.subject.principal = principal;
            ev.attributes = attrs;
            let events = Codec::<VerificationEvent>::new().unwrap_or_else(|e| panic!("{e}"));
            let verified = Codec::<VerifiedEvent>::new()
                .unwrap_or_else(|e| panic!("{e}"))
                .with_max_value_bytes(usize::MAX);
            let body = events.encode(&ev).unwrap_or_else(|e| panic!("{e}"));
            let fields = VerdictFields {
                state: STATES[state],
                reason: reason.as_deref(),
                verified_at,
                verifier: &verifier,
                key_id: key_id.as_deref(),
                signed_value: &signed_value,
                signature: &signature,
                origin_topic: &origin_topic,
                origin_partition,
                origin_offset,
                key_emergency: false,
            };
            let spliced = encoder()
                .encode_framed(SchemaId(7), &ours(), &body, &fields)
                .unwrap_or_else(|e| panic!("{e}"));
            let full = verified
                .encode_framed(SchemaId(7), &fields.to_verified(ev.clone()))
                .unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(spliced.as_deref(), Some(full.as_slice()));
            let decoded = verified.decode_framed(SchemaId(7), &full).unwrap_or_else(|e| panic!("{e}"));
            prop_assert_eq!(decoded, fields.to_verified(ev));
        }
    }
}
