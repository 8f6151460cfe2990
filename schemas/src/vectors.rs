//! Canonical test vectors: a fixed key and a fixed event give exact value bytes, headers and
//! signature. The Python and JavaScript SDKs load `testdata/vectors.json` and must reproduce it
//! byte for byte. Rewrite the file with `VIGIL_REGEN_VECTORS=1 cargo test -p vigil-schemas`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::codec::Codec;
use crate::headers::RecordSigner;
use crate::model::{
    DigitalSignature, EventClass, Platform, Producer, Severity, SignatureState, Status, Subject,
    Trace, VerificationEvent,
};
use crate::signing::EventSigner;
use crate::wire::{SchemaId, WireError};

/// RFC 8032 section 7.1 test 1 secret key, so the public key is independently known.
pub const SEED_HEX: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// Schema id the vector frames with.
pub const SCHEMA_ID: SchemaId = SchemaId(1);
/// Key id the vector signs with.
pub const KEY_ID: &str = "vigil-test-key-1";

/// One header as written to the vectors file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderVector {
    /// Header name.
    pub name: String,
    /// Header value bytes in hex.
    pub value_hex: String,
}

/// The contents of `testdata/vectors.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CanonicalVectors {
    /// What this file is.
    pub description: String,
    /// Ed25519 seed (RFC 8032 secret key) in hex.
    pub seed_hex: String,
    /// The same key as PKCS#8 v1 PEM (openssl's format).
    pub signing_key_pem: String,
    /// The public key as SPKI PEM.
    pub public_key_pem: String,
    /// The raw public key in hex.
    pub public_key_hex: String,
    /// Key id sent in `vigil-key-id`.
    pub key_id: String,
    /// Schema id in the Confluent frame.
    pub schema_id: u32,
    /// The event, as serde JSON of the model (field names equal Avro names).
    pub event: VerificationEvent,
    /// Avro body in hex (no frame).
    pub avro_body_hex: String,
    /// Framed value in hex: the bytes that are signed and sent.
    pub value_hex: String,
    /// Signature over the framed value in hex.
    pub signature_hex: String,
    /// Record key in hex.
    pub record_key_hex: String,
    /// Headers in order.
    pub headers: Vec<HeaderVector>,
}

/// Returns the fixed event of the vectors; exercises every field, union branch and the map.
pub fn fixed_event() -> VerificationEvent {
    VerificationEvent {
        event_id: Uuid::from_u128(0x0191_2f3c_7a4b_4c8d_9e0f_1a2b_3c4d_5e6f),
        class_uid: EventClass::SignatureVerification,
        activity_id: 1,
        activity_name: "verify".into(),
        status_id: Status::Failure,
        status_detail: Some("signature invalid".into()),
        severity_id: Severity::High,
        occurred_at: 1_795_000_000_123_456,
        nonce: "00112233445566778899aabbccddeeff".into(),
        message: Some("payment instruction signature rejected".into()),
        producer: Producer {
            platform: Platform::Rust,
            sdk_version: "0.1.0".into(),
            service: "payments-api".into(),
            host: Some("host-1".into()),
            instance: None,
        },
        subject: Subject {
            principal: Some("svc-payments".into()),
            key_id: Some("partner-key-7".into()),
            client_ip: Some("2001:db8::1".into()),
            tenant: Some("acme".into()),
        },
        trace: Some(Trace {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
            parent_span_id: None,
        }),
        digital_signature: Some(DigitalSignature {
            algorithm: "ed25519".into(),
            key_id: Some("partner-key-7".into()),
            state_id: SignatureState::Bad,
            duration_us: Some(53),
        }),
        attributes: BTreeMap::from([
            ("amount_band".into(), "high".into()),
            ("route".into(), "/v1/payments".into()),
            ("unicode".into(), "zürich ✓".into()),
        ]),
    }
}

/// Error building the vectors.
#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    /// Encoding failed.
    #[error(transparent)]
    Wire(#[from] WireError),
    /// Key handling failed.
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    /// The seed constant is not 32 hex bytes.
    #[error("bad seed constant")]
    Seed,
}

/// Computes the vectors from the fixed key and event with this crate's code.
pub fn generate() -> Result<CanonicalVectors, VectorError> {
    let seed: [u8; 32] = hex::decode(SEED_HEX)
        .ok()
        .and_then(|s| s.try_into().ok())
        .ok_or(VectorError::Seed)?;
    let signer = EventSigner::from_seed(&seed).with_key_id(crate::signing::KeyId::new(KEY_ID)?);
    let public = *signer.public_key();
    let signing_key_pem = signer.to_pkcs8_pem()?.to_string();
    let event = fixed_event();
    let avro_body = Codec::<VerificationEvent>::new()?.encode(&event)?;
    let record = RecordSigner::new(signer, SCHEMA_ID)?.sign(&event)?;
    let signature_hex = hex::encode(record.header(crate::headers::SIGNATURE).unwrap_or_default());
    Ok(CanonicalVectors {
        description:
            "Vigil canonical vector: fixed Ed25519 key + fixed VerificationEvent -> exact \
                      Confluent-framed Avro value, Kafka key, headers and signature."
                .into(),
        seed_hex: SEED_HEX.into(),
        signing_key_pem,
        public_key_pem: public.to_spki_pem()?,
        public_key_hex: hex::encode(public.to_bytes()),
        key_id: KEY_ID.into(),
        schema_id: SCHEMA_ID.0,
        event,
        avro_body_hex: hex::encode(avro_body),
        value_hex: hex::encode(&record.value),
        signature_hex,
        record_key_hex: hex::encode(&record.key),
        headers: record
            .headers
            .iter()
            .map(|(name, value)| HeaderVector {
                name: name.clone(),
                value_hex: hex::encode(value),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::{PublicKey, Signature};

    const VECTORS_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/vectors.json");

    #[test]
    fn canonical_vectors_are_reproduced_byte_for_byte() {
        let generated = generate().unwrap_or_else(|e| panic!("{e}"));
        let json =
            serde_json::to_string_pretty(&generated).unwrap_or_else(|e| panic!("{e}")) + "\n";
        if std::env::var_os("VIGIL_REGEN_VECTORS").is_some() {
            std::fs::write(VECTORS_PATH, &json).unwrap_or_else(|e| panic!("{e}"));
        }
        let stored = std::fs::read_to_string(VECTORS_PATH)
            .unwrap_or_else(|e| panic!("{VECTORS_PATH}: {e}; run with VIGIL_REGEN_VECTORS=1"));
        let stored: CanonicalVectors =
            serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored, generated);
    }

    #[test]
    fn vectors_are_consistent_with_independent_facts() {
        let v = generate().unwrap_or_else(|e| panic!("{e}"));
        // RFC 8032 test 1 public key.
        assert_eq!(
            v.public_key_hex,
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
        // Key files written by openssl from the same seed.
        assert_eq!(
            v.signing_key_pem,
            include_str!("../testdata/vector_signing_key.pem")
        );
        assert_eq!(
            v.public_key_pem,
            include_str!("../testdata/vector_public_key.pem")
        );
        assert_eq!(&v.value_hex[..10], "0000000001");
        assert_eq!(&v.value_hex[10..], v.avro_body_hex);
        let value = hex::decode(&v.value_hex).unwrap_or_default();
        let sig = hex::decode(&v.signature_hex)
            .ok()
            .and_then(|s| Signature::from_slice(&s).ok());
        let public = PublicKey::from_spki_pem(&v.public_key_pem).unwrap_or_else(|e| panic!("{e}"));
        assert!(sig.is_some_and(|s| public.verify(&value, &s).is_ok()));
        assert_eq!(
            hex::decode(&v.record_key_hex).unwrap_or_default(),
            b"partner-key-7"
        );
    }
}
