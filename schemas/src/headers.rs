//! Kafka headers of a signed event and the record a producer sends.

use crate::codec::Codec;
use crate::error::ErrorClass;
use crate::model::{VerificationEvent, format_rfc3339};
use crate::signing::{ALGORITHM, EventSigner, KeyId, SIGNATURE_LEN, Signature, SigningError};
use crate::wire::{SchemaId, WireError};

/// Header carrying the 64 raw signature bytes.
pub const SIGNATURE: &str = "vigil-sig";
/// Header carrying the signing key id.
pub const KEY_ID: &str = "vigil-key-id";
/// Header carrying the signature algorithm, always [`ALGORITHM`].
pub const ALG: &str = "vigil-alg";
/// W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";
/// CloudEvents binary-mode spec version header.
pub const CE_SPECVERSION: &str = "ce_specversion";
/// CloudEvents id header (the event id).
pub const CE_ID: &str = "ce_id";
/// CloudEvents type header (`io.vigil.<class>.<activity>`).
pub const CE_TYPE: &str = "ce_type";
/// CloudEvents source header (`/vigil/<platform>/<service>`).
pub const CE_SOURCE: &str = "ce_source";
/// CloudEvents time header (RFC 3339 of `occurred_at`).
pub const CE_TIME: &str = "ce_time";
/// Content type header (CloudEvents Kafka binary mode).
pub const CONTENT_TYPE: &str = "content-type";
/// CloudEvents spec version written.
pub const CE_SPECVERSION_VALUE: &str = "1.0";
/// Content type of a Confluent-framed Avro value.
pub const AVRO_CONTENT_TYPE: &str = "application/avro";

/// A record ready to hand to a Kafka producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRecord {
    /// Record key: subject key id, else principal, else empty.
    pub key: Vec<u8>,
    /// Framed Avro value; the signature covers exactly these bytes.
    pub value: Vec<u8>,
    /// Headers in the order they are sent.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl SignedRecord {
    /// Returns the first header with `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }
}

/// Encodes, frames and signs events: the producer's whole per-event CPU cost.
#[derive(Debug)]
pub struct RecordSigner {
    codec: Codec<VerificationEvent>,
    signer: EventSigner,
    schema_id: SchemaId,
}

impl RecordSigner {
    /// Builds a signer for events framed with `schema_id` (the registered id of the value schema).
    pub fn new(signer: EventSigner, schema_id: SchemaId) -> Result<Self, WireError> {
        Ok(RecordSigner {
            codec: Codec::new()?,
            signer,
            schema_id,
        })
    }

    /// Replaces the codec (e.g. to change the value size bound).
    pub fn with_codec(mut self, codec: Codec<VerificationEvent>) -> Self {
        self.codec = codec;
        self
    }

    /// Returns the key signer.
    pub fn signer(&self) -> &EventSigner {
        &self.signer
    }

    /// Returns the schema id values are framed with.
    pub fn schema_id(&self) -> SchemaId {
        self.schema_id
    }

    /// Encodes, frames and signs `event`, and builds the record key and headers.
    pub fn sign(&self, event: &VerificationEvent) -> Result<SignedRecord, WireError> {
        let value = self.codec.encode_framed(self.schema_id, event)?;
        let signature = self.signer.sign(&value);
        let mut headers: Vec<(String, Vec<u8>)> = Vec::with_capacity(11);
        headers.push((SIGNATURE.into(), signature.to_bytes().to_vec()));
        headers.push((
            KEY_ID.into(),
            self.signer.key_id().as_str().as_bytes().to_vec(),
        ));
        headers.push((ALG.into(), ALGORITHM.as_bytes().to_vec()));
        headers.extend(
            event_headers(event)
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v)),
        );
        Ok(SignedRecord {
            key: event.record_key().to_vec(),
            value,
            headers,
        })
    }
}

/// The trace context and CloudEvents (Kafka binary mode) headers of a record carrying `event`,
/// derived from the event itself: what producers send, and what the verifier writes on verified
/// records from the body it checked (never copied from a producer's unchecked headers).
pub fn event_headers(event: &VerificationEvent) -> Vec<(&'static str, Vec<u8>)> {
    let mut headers: Vec<(&'static str, Vec<u8>)> = Vec::with_capacity(7);
    if let Some(tp) = event.trace.as_ref().and_then(|t| t.traceparent()) {
        headers.push((TRACEPARENT, tp.into_bytes()));
    }
    headers.push((CE_SPECVERSION, CE_SPECVERSION_VALUE.as_bytes().to_vec()));
    headers.push((CE_ID, event.event_id.hyphenated().to_string().into_bytes()));
    headers.push((CE_TYPE, event.cloud_event_type().into_bytes()));
    headers.push((CE_SOURCE, event.cloud_event_source().into_bytes()));
    if let Some(time) = format_rfc3339(event.occurred_at) {
        headers.push((CE_TIME, time.into_bytes()));
    }
    headers.push((CONTENT_TYPE, AVRO_CONTENT_TYPE.as_bytes().to_vec()));
    headers
}

/// Failure to read the signature headers of an incoming record; always `bad_data`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderError {
    /// No `vigil-sig` header.
    #[error("missing vigil-sig header")]
    MissingSignature,
    /// No `vigil-key-id` header.
    #[error("missing vigil-key-id header")]
    MissingKeyId,
    /// A header appears twice (an attacker could append a second signature or key id).
    #[error("duplicate {0} header")]
    Duplicate(&'static str),
    /// `vigil-sig` is not 64 bytes.
    #[error("vigil-sig is {0} bytes, expected {SIGNATURE_LEN}")]
    BadSignatureLength(usize),
    /// `vigil-key-id` is not a valid key id.
    #[error("invalid vigil-key-id header")]
    InvalidKeyId,
    /// `vigil-alg` names an algorithm other than ed25519 (shown lossily, at most 64 bytes).
    #[error("unknown vigil-alg {0:?}")]
    UnknownAlgorithm(String),
    /// A header that must be text is not UTF-8.
    #[error("{0} header is not utf-8")]
    NotUtf8(&'static str),
}

impl HeaderError {
    /// Returns how a consumer must treat this error.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::BadData
    }

    /// Returns a short stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            HeaderError::MissingSignature => "missing_signature",
            HeaderError::MissingKeyId => "missing_key_id",
            HeaderError::Duplicate(_) => "duplicate_header",
            HeaderError::BadSignatureLength(_) => "bad_signature_length",
            HeaderError::InvalidKeyId => "invalid_key_id",
            HeaderError::UnknownAlgorithm(_) => "unknown_algorithm",
            HeaderError::NotUtf8(_) => "header_not_utf8",
        }
    }
}

/// The signature headers of an incoming record, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// The claimed signature.
    pub signature: Signature,
    /// The claimed key id.
    pub key_id: KeyId,
    /// Raw `traceparent` value, if present and UTF-8 (not validated).
    pub traceparent: Option<String>,
}

fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    name: &'static str,
    value: &'a [u8],
) -> Result<(), HeaderError> {
    if slot.replace(value).is_some() {
        return Err(HeaderError::Duplicate(name));
    }
    Ok(())
}

impl SignatureHeaders {
    /// Parses headers as (name, value) pairs, as rdkafka yields them (`None` = null value).
    ///
    /// `vigil-alg` may be absent (ed25519 is implied) but, when present, must be `ed25519`.
    pub fn parse<'a, I>(headers: I) -> Result<Self, HeaderError>
    where
        I: IntoIterator<Item = (&'a str, Option<&'a [u8]>)>,
    {
        let (mut sig, mut key_id, mut alg, mut traceparent) = (None, None, None, None);
        for (name, value) in headers {
            let value = value.unwrap_or_default();
            match name {
                SIGNATURE => set_once(&mut sig, SIGNATURE, value)?,
                KEY_ID => set_once(&mut key_id, KEY_ID, value)?,
                ALG => set_once(&mut alg, ALG, value)?,
                TRACEPARENT => set_once(&mut traceparent, TRACEPARENT, value)?,
                _ => {}
            }
        }
        if let Some(alg) = alg
            && alg != ALGORITHM.as_bytes()
        {
            let shown = String::from_utf8_lossy(&alg[..alg.len().min(64)]).into_owned();
            return Err(HeaderError::UnknownAlgorithm(shown));
        }
        let sig = sig.ok_or(HeaderError::MissingSignature)?;
        let signature = Signature::from_slice(sig).map_err(|e| match e {
            SigningError::BadSignatureLength(n) => HeaderError::BadSignatureLength(n),
            _ => HeaderError::BadSignatureLength(sig.len()),
        })?;
        let key_id = key_id.ok_or(HeaderError::MissingKeyId)?;
        let key_id = std::str::from_utf8(key_id).map_err(|_| HeaderError::NotUtf8(KEY_ID))?;
        let key_id = KeyId::new(key_id).map_err(|_| HeaderError::InvalidKeyId)?;
        let traceparent = match traceparent {
            Some(tp) => Some(
                std::str::from_utf8(tp)
                    .map_err(|_| HeaderError::NotUtf8(TRACEPARENT))?
                    .to_owned(),
            ),
            None => None,
        };
        Ok(SignatureHeaders {
            signature,
            key_id,
            traceparent,
        })
    }

    /// Parses the headers of a [`SignedRecord`].
    pub fn from_record(record: &SignedRecord) -> Result<Self, HeaderError> {
        Self::parse(
            record
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), Some(v.as_slice()))),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::*;
    use proptest::prelude::*;

    fn record_signer() -> RecordSigner {
        RecordSigner::new(EventSigner::from_seed(&[7; 32]), SchemaId(1))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn event() -> VerificationEvent {
        VerificationEvent::new(
            EventClass::KeyLifecycle,
            "rotate",
            Status::Success,
            Producer::rust("kms"),
        )
        .with_subject(Subject::principal("ops").with_key_id("k-1"))
        .with_trace(Trace::new(
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "00f067aa0ba902b7",
        ))
    }

    #[test]
    fn signed_record_carries_every_header_and_verifies() {
        let rs = record_signer();
        let ev = event();
        let rec = rs.sign(&ev).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rec.key, b"k-1");
        assert_eq!(rec.header(ALG), Some(&b"ed25519"[..]));
        assert_eq!(
            rec.header(KEY_ID),
            Some(rs.signer().key_id().as_str().as_bytes())
        );
        assert_eq!(
            rec.header(TRACEPARENT),
            Some(&b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..])
        );
        assert_eq!(rec.header(CE_ID), Some(ev.event_id.to_string().as_bytes()));
        assert_eq!(
            rec.header(CE_TYPE),
            Some(&b"io.vigil.key_lifecycle.rotate"[..])
        );
        assert_eq!(rec.header(CE_SOURCE), Some(&b"/vigil/rust/kms"[..]));
        assert_eq!(rec.header(CE_SPECVERSION), Some(&b"1.0"[..]));
        let ce_time = rec
            .header(CE_TIME)
            .and_then(|t| std::str::from_utf8(t).ok())
            .unwrap_or("");
        assert_eq!(parse_rfc3339(ce_time), Some(ev.occurred_at));
        let parsed = SignatureHeaders::from_record(&rec).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            rs.signer()
                .public_key()
                .verify(&rec.value, &parsed.signature)
                .is_ok()
        );
        let decoded = Codec::<VerificationEvent>::new()
            .and_then(|c| c.decode_framed(SchemaId(1), &rec.value))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded, ev);
        // No trace, no traceparent.
        let mut untraced = ev;
        untraced.trace = None;
        assert_eq!(
            rs.sign(&untraced)
                .ok()
                .and_then(|r| r.header(TRACEPARENT).map(<[u8]>::to_vec)),
            None
        );
    }

    #[test]
    fn bad_headers_give_typed_errors() {
        let sig = [1u8; 64];
        let parse =
            |h: &[(&str, &[u8])]| SignatureHeaders::parse(h.iter().map(|(n, v)| (*n, Some(*v))));
        assert_eq!(
            parse(&[(KEY_ID, b"k")]).err(),
            Some(HeaderError::MissingSignature)
        );
        assert_eq!(
            parse(&[(SIGNATURE, &sig)]).err(),
            Some(HeaderError::MissingKeyId)
        );
        assert_eq!(
            parse(&[(SIGNATURE, &sig[..10]), (KEY_ID, b"k")]).err(),
            Some(HeaderError::BadSignatureLength(10))
        );
        assert_eq!(
            parse(&[(SIGNATURE, &sig), (KEY_ID, b"k"), (ALG, b"rsa")]).err(),
            Some(HeaderError::UnknownAlgorithm("rsa".into()))
        );
        assert_eq!(
            parse(&[(SIGNATURE, &sig), (SIGNATURE, &sig), (KEY_ID, b"k")]).err(),
            Some(HeaderError::Duplicate(SIGNATURE))
        );
        assert_eq!(
            parse(&[(SIGNATURE, &sig), (KEY_ID, b"a b")]).err(),
            Some(HeaderError::InvalidKeyId)
        );
        assert_eq!(
            parse(&[(SIGNATURE, &sig), (KEY_ID, &[0xff])]).err(),
            Some(HeaderError::NotUtf8(KEY_ID))
        );
        let ok = parse(&[
            (SIGNATURE, &sig),
            (KEY_ID, b"k"),
            (ALG, b"ed25519"),
            ("other", b"x"),
        ]);
        assert_eq!(
            ok.map(|h| h.key_id.as_str().to_owned()).ok().as_deref(),
            Some("k")
        );
        assert_eq!(
            SignatureHeaders::parse([(SIGNATURE, None), (KEY_ID, Some(&b"k"[..]))]).err(),
            Some(HeaderError::BadSignatureLength(0))
        );
        assert_eq!(HeaderError::MissingSignature.class().as_str(), "bad_data");
    }

    proptest! {
        #[test]
        fn header_parser_never_panics(
            headers in proptest::collection::vec(
                (prop_oneof![Just(SIGNATURE.to_owned()), Just(KEY_ID.to_owned()), Just(ALG.to_owned()),
                             Just(TRACEPARENT.to_owned()), ".{0,12}"],
                 proptest::option::of(proptest::collection::vec(any::<u8>(), 0..80))),
                0..8)
        ) {
            let parsed = SignatureHeaders::parse(headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())));
            if let Err(e) = parsed { prop_assert_eq!(e.class(), ErrorClass::BadData); }
        }
    }
}
