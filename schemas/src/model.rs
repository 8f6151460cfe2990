//! Typed model of the Avro schemas. Serde names equal Avro names, field for field and in order,
//! because apache-avro's direct serde path matches them by name.

use std::collections::BTreeMap;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// Microseconds since the Unix epoch, UTC (Avro `timestamp-micros`).
pub type TimestampMicros = i64;

/// Returns the current time as [`TimestampMicros`].
pub fn now_micros() -> TimestampMicros {
    // i128 nanoseconds fit i64 microseconds until the year 294247.
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000).unwrap_or(i64::MAX)
}

/// Formats a timestamp as RFC 3339 with microseconds (`2026-11-23T03:24:00.123456Z`).
pub fn format_rfc3339(ts: TimestampMicros) -> Option<String> {
    let dt = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ts) * 1_000).ok()?;
    dt.format(&Rfc3339).ok()
}

/// Parses an RFC 3339 timestamp into [`TimestampMicros`].
pub fn parse_rfc3339(text: &str) -> Option<TimestampMicros> {
    let dt = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(dt.unix_timestamp_nanos() / 1_000).ok()
}

/// Returns a fresh 128-bit nonce as 32 lowercase hex characters.
///
/// Nonces and event ids ([`random_event_id`]) come from the thread's CSPRNG (rand 0.8
/// `ThreadRng`: ChaCha, seeded from the OS, reseeded after a fork, so a forked child never
/// repeats its parent's), not one `getrandom` system call each: every emit in every language
/// makes both (perf put the syscalls at 18 % of draft completion).
pub fn random_nonce() -> String {
    lower_hex(&random_bytes())
}

/// Returns a fresh UUID v4 event id, from the same generator as [`random_nonce`].
pub fn random_event_id() -> Uuid {
    uuid::Builder::from_random_bytes(random_bytes()).into_uuid()
}

fn random_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes
}

/// `bytes` as lowercase hex, through a table: `hex::encode` builds its `String` one `char` at
/// a time, which perf showed as a fifth of the Node.js emit path.
fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Serializes a UUID as its hyphenated string (Avro `string` + `logicalType: uuid`) whatever the
/// serializer's human-readable setting.
pub mod uuid_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    /// Writes the hyphenated lowercase form.
    pub fn serialize<S: Serializer>(id: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buf = Uuid::encode_buffer();
        serializer.serialize_str(id.hyphenated().encode_lower(&mut buf))
    }

    /// Reads any textual UUID form.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(deserializer)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// Security event class (OCSF `class_uid`); the Avro enum symbol is the snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventClass {
    /// Not known; also what an old reader sees for a class added later.
    Unknown,
    /// A signature was checked.
    SignatureVerification,
    /// A principal authenticated (or tried to).
    Authentication,
    /// An access decision was made.
    Authorization,
    /// A key was created, rotated, revoked or expired.
    KeyLifecycle,
    /// Security-relevant configuration changed.
    Configuration,
    /// Performance of a security control (latency, throughput).
    Performance,
    /// Something anomalous was detected.
    SecurityAnomaly,
}

impl EventClass {
    /// Returns the Avro symbol, also used in the CloudEvents type.
    pub const fn as_str(self) -> &'static str {
        match self {
            EventClass::Unknown => "unknown",
            EventClass::SignatureVerification => "signature_verification",
            EventClass::Authentication => "authentication",
            EventClass::Authorization => "authorization",
            EventClass::KeyLifecycle => "key_lifecycle",
            EventClass::Configuration => "configuration",
            EventClass::Performance => "performance",
            EventClass::SecurityAnomaly => "security_anomaly",
        }
    }
}

/// Outcome of an activity (OCSF `status_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Outcome not known.
    Unknown,
    /// The activity succeeded.
    Success,
    /// The activity failed; `status_detail` says why.
    Failure,
}

/// Severity (OCSF `severity_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Severity not known.
    Unknown,
    /// Informational, no action needed.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical: act now.
    Critical,
}

impl Severity {
    /// Returns the Avro symbol.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Unknown => "unknown",
            Severity::Informational => "informational",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Language or runtime of the emitting SDK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    /// Anything else; also what an old reader sees for a platform added later.
    Other,
    /// The Rust SDK.
    Rust,
    /// The Python SDK.
    Python,
    /// The JavaScript SDK.
    Js,
    /// The `vigil` command line.
    Cli,
}

impl Platform {
    /// Returns the Avro symbol, also used in the CloudEvents source.
    pub const fn as_str(self) -> &'static str {
        match self {
            Platform::Other => "other",
            Platform::Rust => "rust",
            Platform::Python => "python",
            Platform::Js => "js",
            Platform::Cli => "cli",
        }
    }
}

/// Result of a signature check (OCSF `digital_signature.state_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignatureState {
    /// Not checked or not decidable.
    Unknown,
    /// The signature verifies under a trusted, current key.
    Valid,
    /// The key was revoked.
    Revoked,
    /// The signature does not verify, or is malformed.
    Bad,
    /// The key is not known or not trusted.
    Untrusted,
}

impl SignatureState {
    /// Returns the Avro symbol.
    pub const fn as_str(self) -> &'static str {
        match self {
            SignatureState::Unknown => "unknown",
            SignatureState::Valid => "valid",
            SignatureState::Revoked => "revoked",
            SignatureState::Bad => "bad",
            SignatureState::Untrusted => "untrusted",
        }
    }
}

/// Lifecycle state of a signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Accepted.
    Active,
    /// Accepted until `grace_until`.
    Rotated,
    /// Rejected from `revoked_at`.
    Revoked,
}

/// Which platform and service emitted an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    /// Language or runtime of the emitting SDK.
    pub platform: Platform,
    /// Version of the Vigil SDK that built the event.
    pub sdk_version: String,
    /// Logical service name, e.g. `payments-api`.
    pub service: String,
    /// Host name of the emitting process.
    pub host: Option<String>,
    /// Instance id of the emitting process, e.g. pod name.
    pub instance: Option<String>,
}

impl Producer {
    /// Returns a producer without host or instance.
    pub fn new(
        platform: Platform,
        sdk_version: impl Into<String>,
        service: impl Into<String>,
    ) -> Self {
        Producer {
            platform,
            sdk_version: sdk_version.into(),
            service: service.into(),
            host: None,
            instance: None,
        }
    }

    /// Returns the producer for this crate's version on the Rust platform.
    pub fn rust(service: impl Into<String>) -> Self {
        Producer::new(Platform::Rust, env!("CARGO_PKG_VERSION"), service)
    }

    /// Sets the host name.
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// Sets the instance id.
    pub fn with_instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }
}

/// Who or what an event is about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// User or service principal acting.
    pub principal: Option<String>,
    /// Id of the key the activity is about; the Kafka record key when present.
    pub key_id: Option<String>,
    /// Client IP address, textual.
    pub client_ip: Option<String>,
    /// Tenant or organisation.
    pub tenant: Option<String>,
}

impl Subject {
    /// Returns a subject naming only a principal.
    pub fn principal(principal: impl Into<String>) -> Self {
        Subject {
            principal: Some(principal.into()),
            ..Subject::default()
        }
    }

    /// Sets the key id.
    pub fn with_key_id(mut self, key_id: impl Into<String>) -> Self {
        self.key_id = Some(key_id.into());
        self
    }

    /// Sets the client IP.
    pub fn with_client_ip(mut self, ip: impl Into<String>) -> Self {
        self.client_ip = Some(ip.into());
        self
    }

    /// Sets the tenant.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }
}

/// W3C trace context of an activity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    /// W3C trace id, 32 lowercase hex characters.
    pub trace_id: String,
    /// W3C span id, 16 lowercase hex characters.
    pub span_id: String,
    /// W3C parent span id, 16 lowercase hex characters.
    pub parent_span_id: Option<String>,
}

fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Trace {
    /// Returns a trace context without a parent span.
    pub fn new(trace_id: impl Into<String>, span_id: impl Into<String>) -> Self {
        Trace {
            trace_id: trace_id.into(),
            span_id: span_id.into(),
            parent_span_id: None,
        }
    }

    /// Returns true when the ids have the W3C shape and are not all zero.
    pub fn is_valid(&self) -> bool {
        is_lower_hex(&self.trace_id, 32)
            && is_lower_hex(&self.span_id, 16)
            && self.trace_id.bytes().any(|b| b != b'0')
            && self.span_id.bytes().any(|b| b != b'0')
    }

    /// Returns the W3C `traceparent` value (`00-<trace>-<span>-01`), or `None` if the ids are invalid.
    pub fn traceparent(&self) -> Option<String> {
        self.is_valid()
            .then(|| format!("00-{}-{}-01", self.trace_id, self.span_id))
    }

    /// Parses a W3C `traceparent` value; the span becomes `span_id`.
    pub fn from_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        // Version 00 has exactly four parts; later versions may append fields we ignore.
        if !is_lower_hex(version, 2) || version == "ff" || !is_lower_hex(flags, 2) {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        let trace = Trace::new(trace_id, span_id);
        trace.is_valid().then_some(trace)
    }
}

/// A signature check a producer performed and reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigitalSignature {
    /// Algorithm checked, e.g. `ed25519`.
    pub algorithm: String,
    /// Key id checked against.
    pub key_id: Option<String>,
    /// Result of the check.
    pub state_id: SignatureState,
    /// Duration of the check in microseconds.
    pub duration_us: Option<i64>,
}

/// One security verification event (value of `vigil.events.raw`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerificationEvent {
    /// Random UUID v4; the idempotency key and CloudEvents `ce_id`.
    #[serde(with = "uuid_string")]
    pub event_id: Uuid,
    /// Event class (OCSF `class_uid`).
    pub class_uid: EventClass,
    /// OCSF-style activity id: 0 unknown, 99 other.
    pub activity_id: i32,
    /// What happened, e.g. `verify`, `logon`, `rotate`.
    pub activity_name: String,
    /// Outcome (OCSF `status_id`).
    pub status_id: Status,
    /// Outcome detail, e.g. the failure reason.
    pub status_detail: Option<String>,
    /// Severity as judged by the producer.
    pub severity_id: Severity,
    /// When it happened, microseconds since the epoch.
    pub occurred_at: TimestampMicros,
    /// 128 random bits as 32 lowercase hex characters.
    pub nonce: String,
    /// Human readable one-line description.
    pub message: Option<String>,
    /// Emitting platform and service.
    pub producer: Producer,
    /// Who or what the event is about.
    pub subject: Subject,
    /// Trace context.
    pub trace: Option<Trace>,
    /// The signature check this event reports.
    pub digital_signature: Option<DigitalSignature>,
    /// Extra attributes, sorted so encoding is deterministic.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl VerificationEvent {
    /// Returns an event with a fresh event id and nonce, `occurred_at` = now, informational severity.
    pub fn new(
        class: EventClass,
        activity_name: impl Into<String>,
        status: Status,
        producer: Producer,
    ) -> Self {
        VerificationEvent {
            event_id: random_event_id(),
            class_uid: class,
            activity_id: 0,
            activity_name: activity_name.into(),
            status_id: status,
            status_detail: None,
            severity_id: Severity::Informational,
            occurred_at: now_micros(),
            nonce: random_nonce(),
            message: None,
            producer,
            subject: Subject::default(),
            trace: None,
            digital_signature: None,
            attributes: BTreeMap::new(),
        }
    }

    /// Sets the OCSF activity id.
    pub fn with_activity_id(mut self, activity_id: i32) -> Self {
        self.activity_id = activity_id;
        self
    }

    /// Sets the status detail.
    pub fn with_status_detail(mut self, detail: impl Into<String>) -> Self {
        self.status_detail = Some(detail.into());
        self
    }

    /// Sets the severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity_id = severity;
        self
    }

    /// Sets the message.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: Subject) -> Self {
        self.subject = subject;
        self
    }

    /// Sets the trace context.
    pub fn with_trace(mut self, trace: Trace) -> Self {
        self.trace = Some(trace);
        self
    }

    /// Sets the reported signature check.
    pub fn with_signature_check(mut self, check: DigitalSignature) -> Self {
        self.digital_signature = Some(check);
        self
    }

    /// Adds one attribute.
    pub fn with_attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    /// Returns the Kafka record key: the subject's key id, else its principal, else empty.
    pub fn record_key(&self) -> &[u8] {
        self.subject
            .key_id
            .as_deref()
            .or(self.subject.principal.as_deref())
            .map(str::as_bytes)
            .unwrap_or_default()
    }

    /// Returns the CloudEvents type `io.vigil.<class>.<activity>`.
    pub fn cloud_event_type(&self) -> String {
        format!(
            "io.vigil.{}.{}",
            self.class_uid.as_str(),
            self.activity_name
        )
    }

    /// Returns the CloudEvents source `/vigil/<platform>/<service>`.
    pub fn cloud_event_source(&self) -> String {
        format!(
            "/vigil/{}/{}",
            self.producer.platform.as_str(),
            self.producer.service
        )
    }
}

/// A [`VerificationEvent`] with the verifier's verdict (value of `vigil.events.verified`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedEvent {
    /// The event as decoded.
    pub event: VerificationEvent,
    /// Verdict on the producer's signature.
    pub state: SignatureState,
    /// Why the verdict is not valid, e.g. `nonce replayed`.
    pub reason: Option<String>,
    /// When the verifier decided.
    pub verified_at: TimestampMicros,
    /// Instance id of the verifier.
    pub verifier: String,
    /// Key id the signature claimed.
    pub key_id: Option<String>,
    /// The exact framed value bytes that were signed.
    #[serde(with = "apache_avro::serde::bytes")]
    pub signed_value: Vec<u8>,
    /// The signature from the `vigil-sig` header.
    #[serde(with = "apache_avro::serde::bytes")]
    pub signature: Vec<u8>,
    /// Topic read from.
    pub origin_topic: String,
    /// Partition read from.
    pub origin_partition: i32,
    /// Offset read from.
    pub origin_offset: i64,
    /// The signing key was revoked as an emergency.
    #[serde(default)]
    pub key_emergency: bool,
}

/// Current status of one signing key (value of compacted `vigil.keys`, record key = key id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyStatus {
    /// Key id as sent in `vigil-key-id`.
    pub key_id: String,
    /// Algorithm, `ed25519`.
    pub algorithm: String,
    /// Raw public key (32 bytes for Ed25519).
    #[serde(with = "apache_avro::serde::bytes")]
    pub public_key: Vec<u8>,
    /// Lifecycle state.
    pub state: KeyState,
    /// Earliest `occurred_at` accepted.
    pub valid_from: TimestampMicros,
    /// Rotated keys: accepted until this instant.
    pub grace_until: Option<TimestampMicros>,
    /// Revoked keys: when revoked.
    pub revoked_at: Option<TimestampMicros>,
    /// Why the state changed.
    pub reason: Option<String>,
    /// Emergency revocation: no grace.
    pub emergency: bool,
    /// Key id of the replacement.
    pub replaced_by: Option<String>,
    /// When this status was written.
    pub updated_at: TimestampMicros,
    /// Key id of the administrator who made the change (the planner of an approved plan).
    pub updated_by: String,
    /// Per-key version: one more than the status this one replaces (0 only in unsigned records
    /// from before versions existed).
    #[serde(default)]
    pub version: i64,
    /// Team or service owning the key.
    #[serde(default)]
    pub owner: Option<String>,
    /// Deployment environment (prod, staging...).
    #[serde(default)]
    pub environment: Option<String>,
    /// Expiry: events that occurred after this instant are rejected as expired.
    #[serde(default)]
    pub not_after: Option<TimestampMicros>,
    /// The approved plan this status executes.
    #[serde(default)]
    pub plan_id: Option<String>,
    /// Key id of the administrator who approved the plan.
    #[serde(default)]
    pub approved_by: Option<String>,
}

impl KeyStatus {
    /// An Active Ed25519 key accepted for events from `valid_from`, written now by `updated_by`.
    pub fn active(
        key_id: impl Into<String>,
        public_key: &crate::signing::PublicKey,
        valid_from: TimestampMicros,
        updated_by: impl Into<String>,
    ) -> Self {
        KeyStatus {
            key_id: key_id.into(),
            algorithm: crate::signing::ALGORITHM.to_owned(),
            public_key: public_key.to_bytes().to_vec(),
            state: KeyState::Active,
            valid_from,
            grace_until: None,
            revoked_at: None,
            reason: None,
            emergency: false,
            replaced_by: None,
            updated_at: now_micros(),
            updated_by: updated_by.into(),
            version: 1,
            owner: None,
            environment: None,
            not_after: None,
            plan_id: None,
            approved_by: None,
        }
    }
}

/// An alert raised by the correlator (value of `vigil.alerts`, record key = fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// Random UUID of this alert instance.
    #[serde(with = "uuid_string")]
    pub alert_id: Uuid,
    /// Rule id plus group key hash; stable across re-fires.
    pub fingerprint: String,
    /// Severity.
    pub severity_id: Severity,
    /// Rule that fired.
    pub rule_id: String,
    /// Rule title.
    pub rule_title: String,
    /// Values grouped by.
    #[serde(default)]
    pub group_key: BTreeMap<String, String>,
    /// Window start.
    pub window_start: TimestampMicros,
    /// Window end.
    pub window_end: TimestampMicros,
    /// Matching events in the window.
    pub count: i64,
    /// Bounded list of evidence event ids.
    #[serde(default)]
    pub evidence_event_ids: Vec<String>,
    /// Bounded list of distinct trace ids.
    #[serde(default)]
    pub trace_ids: Vec<String>,
    /// Earliest matching `occurred_at`.
    pub first_seen: TimestampMicros,
    /// Latest matching `occurred_at`.
    pub last_seen: TimestampMicros,
    /// Routing labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Why it fired.
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_event_fills_identity_and_time() {
        let a = VerificationEvent::new(
            EventClass::Authentication,
            "logon",
            Status::Success,
            Producer::rust("api"),
        );
        let b = a.clone().with_subject(Subject::principal("alice"));
        assert_eq!(a.event_id.get_version_num(), 4);
        assert!(is_lower_hex(&a.nonce, 32));
        assert_ne!(a.nonce, random_nonce());
        assert_eq!(a.event_id.get_version_num(), 4);
        assert_ne!(a.event_id, random_event_id());
        assert!((now_micros() - a.occurred_at).abs() < 60_000_000);
        assert_eq!(a.record_key(), b"");
        assert_eq!(b.record_key(), b"alice");
        let c = b.with_subject(Subject::principal("alice").with_key_id("k1"));
        assert_eq!(c.record_key(), b"k1");
        assert_eq!(c.cloud_event_type(), "io.vigil.authentication.logon");
        assert_eq!(c.cloud_event_source(), "/vigil/rust/api");
    }

    #[test]
    fn traceparent_round_trips_and_rejects_bad_shapes() {
        let t = Trace::new("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        let tp = t.traceparent().unwrap_or_default();
        assert_eq!(
            tp,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
        assert_eq!(Trace::from_traceparent(&tp), Some(t));
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(Trace::from_traceparent(bad), None, "{bad}");
        }
        assert_eq!(Trace::new("zz", "00f067aa0ba902b7").traceparent(), None);
    }

    #[test]
    fn rfc3339_round_trips_microseconds() {
        let ts = 1_795_000_000_123_456;
        let text = format_rfc3339(ts).unwrap_or_default();
        assert!(text.ends_with(".123456Z"), "{text}");
        assert_eq!(parse_rfc3339(&text), Some(ts));
        assert_eq!(format_rfc3339(i64::MAX), None);
    }

    #[test]
    fn the_table_hex_is_hex() {
        let bytes: Vec<u8> = (0..=255).collect();
        assert_eq!(lower_hex(&bytes), hex::encode(&bytes));
    }
}
