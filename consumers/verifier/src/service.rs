//! The verifier's [`Handler`]: raw record in, verdict published, offset stored by the runtime.

use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use vigil_consumer::key_registry::{KeyDecision, KeyRegistry, KeyView, RefusedKeyRecord, decide};
use vigil_consumer::{HandleError, Handler, InboundRecord, Outcome, Turn};
use vigil_schemas::ErrorChain;
use vigil_schemas::codec::WriterSchema;
use vigil_schemas::model::{TimestampMicros, format_rfc3339, now_micros};
use vigil_schemas::wire::split_frame_with_limit;
use vigil_schemas::{
    Codec, ErrorClass, EventClass, SchemaId, SchemaRegistry, SignatureHeaders, SignatureState,
    VerdictEncoder, VerdictFields, VerificationEvent, VerifiedEvent, headers,
};
use vigil_topology::InternalEvent;

use crate::internal_events::{EventVerified, RecordUndecodable, VerifierMetrics};
use crate::nonce::{NonceCache, NonceCheck};
use crate::signature::SignatureChecker;

/// Header carrying the verdict on verified records, so routers need not decode.
pub const STATE_HEADER: &str = "vigil-signature-state";

/// Everything a verdict needs besides the record.
pub struct Verifier {
    pub(crate) registry: Arc<KeyRegistry>,
    pub(crate) schemas: SchemaRegistry,
    pub(crate) raw_codec: Codec<VerificationEvent>,
    pub(crate) verified_codec: Codec<VerifiedEvent>,
    pub(crate) verdicts: VerdictEncoder,
    pub(crate) verified_schema: SchemaId,
    pub(crate) verified_topic: String,
    pub(crate) producer: FutureProducer,
    pub(crate) checker: SignatureChecker,
    pub(crate) nonces: Mutex<NonceCache>,
    pub(crate) max_skew_us: i64,
    pub(crate) max_value_bytes: usize,
    pub(crate) verifier_id: String,
    pub(crate) metrics: VerifierMetrics,
    pub(crate) origin_hasher: RandomState,
}

fn bad(metrics: &VerifierMetrics, kind: &'static str, msg: impl std::fmt::Display) -> HandleError {
    RecordUndecodable { metrics, kind }.emit();
    HandleError::bad_data(format!("{kind}: {msg}"))
}

/// The verdict and its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Signature state written to the verified topic.
    pub state: SignatureState,
    /// Why it is not valid.
    pub reason: Option<String>,
    /// The key was revoked as an emergency.
    pub key_emergency: bool,
}

impl Verdict {
    fn reject(state: SignatureState, reason: impl Into<String>) -> Self {
        Self {
            state,
            reason: Some(reason.into()),
            key_emergency: false,
        }
    }
}

/// How long a verdict waits for room in the producer queue before the attempt counts as failed.
const PRODUCER_QUEUE_WAIT: Duration = Duration::from_secs(5);

impl Verifier {
    /// Checks the signature (batched with the other records in flight); `None` for an unknown
    /// key. Pure, so it runs before the record's turn.
    async fn check_signature(
        &self,
        value: &[u8],
        sig: &SignatureHeaders,
    ) -> Result<Option<(Arc<KeyView>, bool)>, HandleError> {
        let Some(view) = self.registry.signer(sig.key_id.as_str()) else {
            return Ok(None);
        };
        let ok = self
            .checker
            .check(value, &sig.signature, &view.public_key)
            .await
            .map_err(HandleError::transient)?;
        Ok(Some((view, ok)))
    }

    /// Judges the record from its signature check. Stateful (the replay memory), so it runs in
    /// the record's turn: verdicts come out as if records were handled one at a time.
    fn judge(
        &self,
        record: &InboundRecord,
        sig: &SignatureHeaders,
        event: &VerificationEvent,
        checked: Option<(Arc<KeyView>, bool)>,
        now: TimestampMicros,
    ) -> Verdict {
        let key_id = sig.key_id.as_str();
        let Some((view, ok)) = checked else {
            return Verdict::reject(SignatureState::Untrusted, "unknown key");
        };
        if !ok {
            return Verdict::reject(SignatureState::Bad, "signature does not verify");
        }
        if view.administrator
            && !matches!(
                event.class_uid,
                EventClass::KeyLifecycle | EventClass::Configuration
            )
        {
            return Verdict::reject(
                SignatureState::Untrusted,
                "administrator keys sign only key lifecycle and configuration events",
            );
        }
        match decide(Some(&view), event.occurred_at, now) {
            KeyDecision::Valid => {}
            KeyDecision::Revoked { reason, emergency } => {
                return Verdict {
                    key_emergency: emergency,
                    ..Verdict::reject(SignatureState::Revoked, format!("key revoked: {reason}"))
                };
            }
            KeyDecision::Untrusted { reason } => {
                return Verdict::reject(SignatureState::Untrusted, reason);
            }
            KeyDecision::Expired { grace_until } => {
                let at = format_rfc3339(grace_until).unwrap_or_else(|| grace_until.to_string());
                return Verdict::reject(
                    SignatureState::Untrusted,
                    format!("key rotated; grace ended at {at}"),
                );
            }
            KeyDecision::PastNotAfter { not_after } => {
                let at = format_rfc3339(not_after).unwrap_or_else(|| not_after.to_string());
                return Verdict::reject(
                    SignatureState::Untrusted,
                    format!("key expired at {at} (not_after)"),
                );
            }
        }
        let skew_us = event.occurred_at.saturating_sub(now).saturating_abs();
        if skew_us > self.max_skew_us {
            return Verdict::reject(
                SignatureState::Bad,
                format!(
                    "clock skew {} ms exceeds {} ms",
                    skew_us / 1_000,
                    self.max_skew_us / 1_000
                ),
            );
        }
        let origin = self
            .origin_hasher
            .hash_one((&record.topic, record.partition, record.offset));
        let check = {
            let mut nonces = self
                .nonces
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = nonces.evictions();
            let check = nonces.check(key_id, &event.nonce, event.occurred_at, now, origin);
            self.metrics
                .nonce_evictions
                .inc_by(nonces.evictions().saturating_sub(before));
            self.metrics
                .nonce_entries
                .set(i64::try_from(nonces.len()).unwrap_or(i64::MAX));
            check
        };
        if check == NonceCheck::Replayed {
            return Verdict::reject(SignatureState::Bad, "nonce replayed");
        }
        Verdict {
            state: SignatureState::Valid,
            reason: None,
            key_emergency: false,
        }
    }

    /// Returns the framed verdict: the raw event body reused as it is when it was written with
    /// our schema, otherwise the decoded event encoded again.
    fn encode_verdict(
        &self,
        writer: &WriterSchema,
        body: &[u8],
        event: VerificationEvent,
        fields: &VerdictFields<'_>,
    ) -> Result<Vec<u8>, HandleError> {
        let spliced = self
            .verdicts
            .encode_framed(self.verified_schema, writer, body, fields)
            .map_err(|e| {
                HandleError::internal(format!("encode verified event: {}", ErrorChain(&e)))
            })?;
        match spliced {
            Some(value) => Ok(value),
            None => self
                .verified_codec
                .encode_framed(self.verified_schema, &fields.to_verified(event))
                .map_err(|e| {
                    HandleError::internal(format!("encode verified event: {}", ErrorChain(&e)))
                }),
        }
    }

    /// Hands the verdict to the producer (queued in call order, which the idempotent producer
    /// keeps per partition) and returns the acknowledgement to wait for.
    /// The trace and CloudEvents headers come from the decoded event (`derived`), not from the
    /// producer's headers, which nothing checked.
    async fn enqueue(
        &self,
        record: &InboundRecord,
        state: SignatureState,
        derived: &[(&'static str, Vec<u8>)],
        value: Vec<u8>,
    ) -> Result<DeliveryFuture, HandleError> {
        let hdrs = verdict_headers(derived, state);
        let mut out = FutureRecord::<[u8], Vec<u8>>::to(&self.verified_topic)
            .payload(&value)
            .headers(hdrs);
        if let Some(k) = record.key.as_deref() {
            out = out.key(k);
        }
        let deadline = Instant::now() + PRODUCER_QUEUE_WAIT;
        loop {
            match self.producer.send_result(out) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if Instant::now() < deadline =>
                {
                    out = back;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => {
                    return Err(HandleError::transient(format!(
                        "publish verified event: {e}"
                    )));
                }
            }
        }
    }
}

/// The headers of a verified record: `derived` from the verified event, then the verdict.
fn verdict_headers(derived: &[(&'static str, Vec<u8>)], state: SignatureState) -> OwnedHeaders {
    let mut hdrs = OwnedHeaders::new_with_capacity(derived.len() + 1);
    for (name, v) in derived {
        hdrs = hdrs.insert(Header {
            key: name,
            value: Some(v),
        });
    }
    hdrs.insert(Header {
        key: STATE_HEADER,
        value: Some(state.as_str()),
    })
}

/// `activity_name` of the event that reports a refused key registry record.
pub const KEY_RECORD_REFUSED: &str = "key_record_refused";

impl Verifier {
    /// Publishes a refused key registry record as a verdict on the verified topic: a
    /// `key_lifecycle` / [`KEY_RECORD_REFUSED`] event judged `untrusted`, carrying the refused
    /// bytes and headers, so the correlator alerts on it and the audit trail keeps it. Its
    /// event id is derived from where the record sits, so every instance and every restart
    /// reports the same event.
    pub(crate) async fn report_refused(
        &self,
        keys_topic: &str,
        r: &RefusedKeyRecord,
    ) -> Result<(), String> {
        use sha2::Digest;
        let rec = &r.record;
        let key_id = String::from_utf8_lossy(rec.key.as_deref().unwrap_or_default()).into_owned();
        let admin = rec.admin_key_id.as_deref().map(|a| {
            String::from_utf8_lossy(a)
                .chars()
                .take(128)
                .collect::<String>()
        });
        let place = format!("{keys_topic}/{}/{}", rec.partition, rec.offset);
        let digest = sha2::Sha256::digest(format!("vigil-key-record-refused\n{place}"));
        let mut id = [0_u8; 16];
        id.copy_from_slice(&digest[..16]);
        let mut event = VerificationEvent::new(
            EventClass::KeyLifecycle,
            KEY_RECORD_REFUSED,
            vigil_schemas::model::Status::Failure,
            vigil_schemas::model::Producer::new(
                vigil_schemas::model::Platform::Other,
                env!("CARGO_PKG_VERSION"),
                "vigil-verifier",
            ),
        )
        .with_severity(vigil_schemas::model::Severity::High)
        .with_subject(
            vigil_schemas::model::Subject::principal(admin.clone().unwrap_or_default())
                .with_key_id(key_id.clone()),
        )
        .with_message(format!(
            "key registry record {place} for {key_id:?} refused: {}",
            r.refused
        ))
        .with_attribute("reason", r.refused.reason())
        .with_attribute("detail", r.refused.to_string())
        .with_attribute("keys_topic", keys_topic)
        .with_attribute("partition", rec.partition.to_string())
        .with_attribute("offset", rec.offset.to_string())
        .with_attribute("admin_key_id", admin.clone().unwrap_or_default());
        event.event_id = uuid::Builder::from_random_bytes(id).into_uuid();
        if let Some(ms) = rec.timestamp_ms {
            event.occurred_at = ms.saturating_mul(1_000);
        }
        let value = rec.value.as_deref().unwrap_or_default();
        let kept = if value.len() <= self.max_value_bytes {
            value
        } else {
            &[]
        };
        let verdict = VerifiedEvent {
            event,
            state: SignatureState::Untrusted,
            reason: Some(format!(
                "key registry record refused ({})",
                r.refused.reason()
            )),
            verified_at: now_micros(),
            verifier: self.verifier_id.clone(),
            key_id: admin,
            signed_value: kept.to_vec(),
            signature: rec.signature.clone().unwrap_or_default(),
            origin_topic: keys_topic.to_owned(),
            origin_partition: rec.partition,
            origin_offset: rec.offset,
            key_emergency: false,
        };
        let encoded = self
            .verified_codec
            .encode_framed(self.verified_schema, &verdict)
            .map_err(|e| format!("encode: {}", ErrorChain(&e)))?;
        let hdrs = verdict_headers(
            &headers::event_headers(&verdict.event),
            SignatureState::Untrusted,
        );
        let record = FutureRecord::<str, Vec<u8>>::to(&self.verified_topic)
            .key(&key_id)
            .payload(&encoded)
            .headers(hdrs);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(e, _)| format!("publish: {e}"))
    }
}

impl Handler for Verifier {
    async fn handle(&self, record: &InboundRecord) -> Result<Outcome, HandleError> {
        self.handle_in_turn(record, &mut Turn::solo()).await
    }

    /// Decodes and checks the signature concurrently with the other records in flight, then, in
    /// the record's turn, judges (replay memory) and queues the verdict, so verdicts are judged
    /// and written in the partition's order; the acknowledgement is awaited after the turn.
    async fn handle_in_turn(
        &self,
        record: &InboundRecord,
        turn: &mut Turn,
    ) -> Result<Outcome, HandleError> {
        let started = Instant::now();
        let m = &self.metrics;
        let value = record
            .value
            .as_deref()
            .ok_or_else(|| bad(m, "tombstone", "record has no value"))?;
        if value.len() > self.max_value_bytes {
            return Err(bad(
                m,
                "oversized",
                format!(
                    "value of {} bytes exceeds {}",
                    value.len(),
                    self.max_value_bytes
                ),
            ));
        }
        // Signature material is read before any byte of the value is interpreted.
        let sig = SignatureHeaders::parse(
            record
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_deref())),
        )
        .map_err(|e| bad(m, e.kind(), &e))?;
        let (schema_id, body) = split_frame_with_limit(value, self.max_value_bytes)
            .map_err(|e| bad(m, e.kind(), &e))?;
        let writer = match self.schemas.schema_by_id(schema_id).await {
            Ok(w) => w,
            Err(e) if e.class() == ErrorClass::BadData => {
                return Err(bad(m, "unknown_schema_id", ErrorChain(&e)));
            }
            // An outage or a refused request: the record is fine, retry it later.
            Err(e) => return Err(HandleError::transient(e)),
        };
        let event = self
            .raw_codec
            .decode_with(&writer, body)
            .map_err(|e| bad(m, e.kind(), ErrorChain(&e)))?;
        let checked = self.check_signature(value, &sig).await?;
        turn.wait().await;
        let now = now_micros();
        let verdict = self.judge(record, &sig, &event, checked, now);
        m.verify_duration.observe(started.elapsed().as_secs_f64());
        let event_id = event.event_id.to_string();
        let fields = VerdictFields {
            state: verdict.state,
            reason: verdict.reason.as_deref(),
            verified_at: now,
            verifier: &self.verifier_id,
            key_id: Some(sig.key_id.as_str()),
            signed_value: value,
            signature: sig.signature.as_bytes(),
            origin_topic: &record.topic,
            origin_partition: record.partition,
            origin_offset: record.offset,
            key_emergency: verdict.key_emergency,
        };
        let derived = headers::event_headers(&event);
        let encoded = self.encode_verdict(&writer, body, event, &fields)?;
        let delivery = self
            .enqueue(record, verdict.state, &derived, encoded)
            .await?;
        turn.pass().await;
        match delivery.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => {
                return Err(HandleError::transient(format!(
                    "publish verified event: {e}"
                )));
            }
            Err(_) => {
                return Err(HandleError::transient(
                    "publish verified event: producer closed",
                ));
            }
        }
        EventVerified {
            metrics: m,
            state: verdict.state,
            reason: verdict.reason.as_deref(),
            key_id: sig.key_id.as_str(),
            event_id: &event_id,
        }
        .emit();
        Ok(if verdict.state == SignatureState::Valid {
            Outcome::Handled
        } else {
            Outcome::Rejected
        })
    }
}
