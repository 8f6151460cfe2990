//! The stored documents: what the state changelog topic holds, and how a record's key and value
//! are encoded and decoded. A leaf: it knows nothing of the book that keeps these entries in
//! memory nor of the topic's producer and consumers.
//!
//! Keys: `mark/<dedup key>`, `alert/<alert id>`, `silence/<silence id>`. Values: a small JSON
//! document with `"v": 1`, wall-clock times in ms since the epoch. Removal, expiry and eviction
//! write a tombstone (null value) so compaction drops the key.

use serde::{Deserialize, Serialize};
use uuid::Uuid;
use vigil_consumer::InboundRecord;
use vigil_schemas::Alert;

use crate::config::{EscalationTier, MatchConfig};

/// Version written in every value; a reader refuses (counts and skips) any other.
pub const VERSION: u32 = 1;

/// Largest changelog value read back; anything bigger is refused as malformed.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;

/// Why a changelog record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangelogError {
    /// The key is not UTF-8 or has no known `<kind>/` prefix.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The value is not the JSON document its key announces.
    #[error("{kind}: malformed value: {reason}")]
    Malformed {
        /// `mark`, `alert` or `silence`.
        kind: &'static str,
        /// The parser's reason.
        reason: String,
    },
    /// The value was written by a version this alerter does not know.
    #[error("{kind}: unknown value version {version} (this alerter reads {VERSION})")]
    UnknownVersion {
        /// `mark`, `alert` or `silence`.
        kind: &'static str,
        /// The version found.
        version: u64,
    },
}

impl ChangelogError {
    /// Returns the metric label of the error.
    pub fn reason(&self) -> &'static str {
        match self {
            ChangelogError::BadKey(_) => "bad_key",
            ChangelogError::Malformed { .. } => "malformed",
            ChangelogError::UnknownVersion { .. } => "unknown_version",
        }
    }
}

/// The key of one changelog record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StateKey {
    /// A dedup or group mark, by its dedup key.
    Mark(String),
    /// An active alert, by alert id.
    Alert(Uuid),
    /// A silence, by silence id.
    Silence(Uuid),
}

impl StateKey {
    /// Returns the record key (`mark/…`, `alert/…`, `silence/…`).
    pub fn encode(&self) -> String {
        match self {
            StateKey::Mark(k) => format!("mark/{k}"),
            StateKey::Alert(id) => format!("alert/{id}"),
            StateKey::Silence(id) => format!("silence/{id}"),
        }
    }

    /// Returns the kind, also the metric label: `mark`, `alert` or `silence`.
    pub fn kind(&self) -> &'static str {
        match self {
            StateKey::Mark(_) => "mark",
            StateKey::Alert(_) => "alert",
            StateKey::Silence(_) => "silence",
        }
    }

    /// Parses a record key.
    pub fn parse(key: &[u8]) -> Result<Self, ChangelogError> {
        let text =
            std::str::from_utf8(key).map_err(|_| ChangelogError::BadKey("not UTF-8".to_owned()))?;
        let (kind, rest) = text
            .split_once('/')
            .ok_or_else(|| ChangelogError::BadKey("no kind prefix".to_owned()))?;
        let id = |what: &str| {
            Uuid::parse_str(rest).map_err(|_| ChangelogError::BadKey(format!("{what}: not a uuid")))
        };
        match kind {
            "mark" if !rest.is_empty() => Ok(StateKey::Mark(rest.to_owned())),
            "alert" => id("alert").map(StateKey::Alert),
            "silence" => id("silence").map(StateKey::Silence),
            _ => Err(ChangelogError::BadKey(format!("unknown kind {kind:?}"))),
        }
    }
}

/// A dedup or group mark: `alert_id` was notified (or is being notified) under this key until
/// `expires_at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkDoc {
    /// Always [`VERSION`].
    pub v: u32,
    /// The alert that set the mark; the same id arriving again is a redelivery, not a duplicate.
    pub alert_id: Uuid,
    /// End of the window, ms since the epoch.
    pub expires_at_ms: i64,
}

/// A running escalation policy of one route of an active alert.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationDoc {
    /// The route whose policy this is.
    pub route: String,
    /// First notification, ms since the epoch; tier delays count from here.
    pub started_at_ms: i64,
    /// Tiers already notified (0: none).
    pub fired: usize,
    /// The policy as it was when the alert was notified.
    pub tiers: Vec<EscalationTier>,
}

/// The consumed record an alert came from, kept for alerts with an escalation policy so a tier
/// that stays undeliverable after a restart can still be dead-lettered byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginDoc {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Record timestamp, ms since the epoch.
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
    /// Record key, hex.
    #[serde(default)]
    pub key_hex: Option<String>,
    /// Record value, hex.
    #[serde(default)]
    pub value_hex: Option<String>,
    /// Headers in wire order, values hex.
    #[serde(default)]
    pub headers: Vec<(String, Option<String>)>,
}

impl OriginDoc {
    /// Captures a consumed record.
    pub fn from_record(r: &InboundRecord) -> Self {
        Self {
            topic: r.topic.clone(),
            partition: r.partition,
            offset: r.offset,
            timestamp_ms: r.timestamp_ms,
            key_hex: r.key.as_deref().map(hex::encode),
            value_hex: r.value.as_deref().map(hex::encode),
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.as_deref().map(hex::encode)))
                .collect(),
        }
    }

    /// Rebuilds the record; `None` when a hex field is corrupt.
    pub fn to_record(&self) -> Option<InboundRecord> {
        let bytes = |h: &Option<String>| match h {
            Some(h) => hex::decode(h).ok().map(Some),
            None => Some(None),
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (k, v) in &self.headers {
            headers.push((k.clone(), bytes(v)?));
        }
        Some(InboundRecord {
            topic: self.topic.clone(),
            partition: self.partition,
            offset: self.offset,
            timestamp_ms: self.timestamp_ms,
            key: bytes(&self.key_hex)?,
            value: bytes(&self.value_hex)?,
            headers,
            attempt: 1,
        })
    }
}

/// Who acknowledged an alert and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Name given by the caller (`api` when none).
    pub by: String,
    /// Free text.
    pub comment: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// An active (notified) alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDoc {
    /// Always [`VERSION`].
    pub v: u32,
    /// The alert as consumed.
    pub alert: Alert,
    /// First notification, ms since the epoch.
    pub notified_at_ms: i64,
    /// End of the active period (`state.active_ttl_ms` after the notification).
    pub expires_at_ms: i64,
    /// Routes it was notified through.
    pub routes: Vec<String>,
    /// Alerts folded into its group.
    #[serde(default)]
    pub grouped: u64,
    /// Highest escalation tier notified.
    #[serde(default)]
    pub escalation_tier: usize,
    /// The acknowledgement, once given.
    #[serde(default)]
    pub ack: Option<Ack>,
    /// Escalation policies still running.
    #[serde(default)]
    pub escalations: Vec<EscalationDoc>,
    /// The record it came from (alerts with an escalation policy only).
    #[serde(default)]
    pub origin: Option<OriginDoc>,
}

/// A silence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceDoc {
    /// Always [`VERSION`].
    pub v: u32,
    /// Silence id.
    pub id: Uuid,
    /// What it matches.
    pub matchers: MatchConfig,
    /// End, ms since the epoch.
    pub ends_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Creation, ms since the epoch.
    pub created_at_ms: i64,
}

/// One decoded changelog value.
#[derive(Debug, Clone, PartialEq)]
pub enum StateValue {
    /// A mark.
    Mark(MarkDoc),
    /// An active alert.
    Alert(Box<AlertDoc>),
    /// A silence.
    Silence(SilenceDoc),
}

#[derive(Deserialize)]
struct VersionProbe {
    v: Option<serde_json::Value>,
}

fn parse<T: for<'de> Deserialize<'de>>(
    kind: &'static str,
    value: &[u8],
) -> Result<T, ChangelogError> {
    let malformed = |reason: String| ChangelogError::Malformed { kind, reason };
    if value.len() > MAX_VALUE_BYTES {
        return Err(malformed(format!(
            "{} bytes, above {MAX_VALUE_BYTES}",
            value.len()
        )));
    }
    let probe: VersionProbe =
        serde_json::from_slice(value).map_err(|e| malformed(e.to_string()))?;
    match probe.v {
        Some(serde_json::Value::Number(n)) if n.as_u64() == Some(u64::from(VERSION)) => {}
        Some(serde_json::Value::Number(n)) => {
            return Err(match n.as_u64() {
                Some(version) => ChangelogError::UnknownVersion { kind, version },
                None => malformed(format!("version {n} is not an unsigned integer")),
            });
        }
        Some(_) | None => return Err(malformed("missing or non-numeric \"v\"".to_owned())),
    }
    serde_json::from_slice(value).map_err(|e| malformed(e.to_string()))
}

/// Decodes one record's value against its key; ids inside the value must match the key.
pub fn decode(key: &StateKey, value: &[u8]) -> Result<StateValue, ChangelogError> {
    match key {
        StateKey::Mark(_) => parse::<MarkDoc>("mark", value).map(StateValue::Mark),
        StateKey::Alert(id) => {
            let doc: AlertDoc = parse("alert", value)?;
            if doc.alert.alert_id != *id {
                return Err(ChangelogError::Malformed {
                    kind: "alert",
                    reason: format!("alert_id {} differs from the key", doc.alert.alert_id),
                });
            }
            Ok(StateValue::Alert(Box::new(doc)))
        }
        StateKey::Silence(id) => {
            let doc: SilenceDoc = parse("silence", value)?;
            if doc.id != *id {
                return Err(ChangelogError::Malformed {
                    kind: "silence",
                    reason: format!("id {} differs from the key", doc.id),
                });
            }
            Ok(StateValue::Silence(doc))
        }
    }
}

/// Encodes a document; serialising these plain structs cannot fail in practice, and an empty
/// value is refused by [`decode`] rather than mistaken for a tombstone.
pub fn encode<T: Serialize>(doc: &T) -> Vec<u8> {
    serde_json::to_vec(doc).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route::tests::alert;
    use vigil_schemas::Severity;

    #[test]
    fn keys_round_trip_and_bad_keys_are_typed_errors() {
        let id = Uuid::new_v4();
        for k in [
            StateKey::Mark("d\u{1f}route\u{1f}fp/with/slashes".into()),
            StateKey::Alert(id),
            StateKey::Silence(id),
        ] {
            assert_eq!(StateKey::parse(k.encode().as_bytes()).unwrap(), k);
        }
        assert_eq!(StateKey::Alert(id).encode(), format!("alert/{id}"));
        for bad in [
            &b"\xff\xfe"[..],
            b"nokind",
            b"alert/not-a-uuid",
            b"thing/x",
            b"mark/",
        ] {
            let e = StateKey::parse(bad).unwrap_err();
            assert_eq!(e.reason(), "bad_key", "{bad:?}: {e}");
        }
    }

    #[test]
    fn mark_value_is_versioned_json_with_wall_clock_times() {
        let id = Uuid::new_v4();
        let doc = MarkDoc {
            v: VERSION,
            alert_id: id,
            expires_at_ms: 1_800_000_000_123,
        };
        let bytes = encode(&doc);
        let json: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["alert_id"], id.to_string());
        assert_eq!(json["expires_at_ms"], 1_800_000_000_123_i64);
        let key = StateKey::Mark("k".into());
        assert_eq!(decode(&key, &bytes).unwrap(), StateValue::Mark(doc));
    }

    #[test]
    fn alert_and_silence_values_round_trip() {
        let a = alert("r1", Severity::Critical, &[("tenant", "acme")]);
        let record = InboundRecord {
            topic: "vigil.alerts".into(),
            partition: 3,
            offset: 42,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"fp".to_vec()),
            value: Some(vec![0, 0, 0, 0, 1, 0xff]),
            headers: vec![
                ("traceparent".into(), Some(b"00-ab".to_vec())),
                ("n".into(), None),
            ],
            attempt: 3,
        };
        let doc = AlertDoc {
            v: VERSION,
            alert: a.clone(),
            notified_at_ms: 1_700_000_000_500,
            expires_at_ms: 1_700_086_400_500,
            routes: vec!["route".into()],
            grouped: 2,
            escalation_tier: 1,
            ack: Some(Ack {
                by: "alice".into(),
                comment: "mine".into(),
                at_ms: 1_700_000_001_000,
            }),
            escalations: vec![EscalationDoc {
                route: "route".into(),
                started_at_ms: 1_700_000_000_500,
                fired: 1,
                tiers: vec![EscalationTier {
                    receivers: vec!["lead".into()],
                    after_ms: 800,
                }],
            }],
            origin: Some(OriginDoc::from_record(&record)),
        };
        let key = StateKey::Alert(a.alert_id);
        let back = decode(&key, &encode(&doc)).unwrap();
        assert_eq!(back, StateValue::Alert(Box::new(doc.clone())));
        let rebuilt = doc.origin.as_ref().unwrap().to_record().unwrap();
        assert_eq!(rebuilt.value, record.value);
        assert_eq!(rebuilt.headers, record.headers);
        assert_eq!((rebuilt.offset, rebuilt.attempt), (42, 1));
        // The key names another alert: refused.
        let other = StateKey::Alert(Uuid::new_v4());
        assert_eq!(
            decode(&other, &encode(&doc)).unwrap_err().reason(),
            "malformed"
        );

        let s = SilenceDoc {
            v: VERSION,
            id: Uuid::new_v4(),
            matchers: MatchConfig {
                rule_id: vec!["noisy".into()],
                ..MatchConfig::default()
            },
            ends_at_ms: 1_700_000_600_000,
            created_by: "bob".into(),
            comment: "maintenance".into(),
            created_at_ms: 1_700_000_000_000,
        };
        let key = StateKey::Silence(s.id);
        assert_eq!(decode(&key, &encode(&s)).unwrap(), StateValue::Silence(s));
    }

    #[test]
    fn unknown_versions_and_garbage_are_typed_errors_not_panics() {
        let key = StateKey::Mark("k".into());
        let id = Uuid::new_v4();
        let v2 = format!(r#"{{"v":2,"alert_id":"{id}","expires_at_ms":1,"new":true}}"#);
        assert_eq!(
            decode(&key, v2.as_bytes()).unwrap_err(),
            ChangelogError::UnknownVersion {
                kind: "mark",
                version: 2
            }
        );
        for bad in [
            &b""[..],
            b"\x00\x01\x02",
            b"null",
            b"[]",
            b"{}",
            br#"{"v":"1"}"#,
            br#"{"v":-1}"#,
            br#"{"v":1.5}"#,
            br#"{"v":1}"#,
            br#"{"v":1,"alert_id":"nope","expires_at_ms":1}"#,
            br#"{"v":1,"alert_id":"00000000-0000-0000-0000-000000000000","expires_at_ms":"soon"}"#,
        ] {
            let e = decode(&key, bad).unwrap_err();
            assert_eq!(
                e.reason(),
                "malformed",
                "{:?}: {e}",
                String::from_utf8_lossy(bad)
            );
        }
        let huge = vec![b' '; MAX_VALUE_BYTES + 1];
        assert_eq!(decode(&key, &huge).unwrap_err().reason(), "malformed");
        let alert_key = StateKey::Alert(id);
        let e = decode(&alert_key, br#"{"v":7}"#).unwrap_err();
        assert_eq!(e.reason(), "unknown_version");
        assert!(e.to_string().contains("unknown value version 7"), "{e}");
    }
}
