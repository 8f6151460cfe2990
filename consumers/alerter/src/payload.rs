//! Notification bodies: generic webhook (signed JSON), Slack incoming webhook, PagerDuty Events v2.

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use vigil_schemas::model::format_rfc3339;
use vigil_schemas::{Alert, Severity};

/// Header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "x-vigil-signature";
/// Header carrying the signing time in Unix seconds (part of the signed bytes, so a receiver can
/// refuse old replays).
pub const TIMESTAMP_HEADER: &str = "x-vigil-timestamp";

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// First notification of the alert (or of its group).
    Firing,
    /// Escalation to tier `n` (1-based) after no acknowledgement.
    Escalation(usize),
}

impl Reason {
    fn tier(self) -> usize {
        match self {
            Reason::Firing => 0,
            Reason::Escalation(n) => n,
        }
    }
}

/// Returns the alert as JSON with RFC 3339 times next to the raw microseconds.
pub fn alert_json(alert: &Alert) -> Value {
    let mut v = serde_json::to_value(alert).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        for field in ["first_seen", "last_seen", "window_start", "window_end"] {
            if let Some(us) = m.get(field).and_then(Value::as_i64) {
                m.insert(format!("{field}_rfc3339"), Value::String(rfc3339(us)));
            }
        }
    }
    v
}

/// Body of a generic webhook notification.
pub fn webhook_body(alert: &Alert, receiver: &str, reason: Reason) -> Value {
    json!({
        "version": "1",
        "receiver": receiver,
        "status": "firing",
        "escalation_tier": reason.tier(),
        "alert": alert_json(alert),
    })
}

/// Returns the `X-Vigil-Signature` value for `body` signed at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC accepts keys of any length, so new_from_slice cannot fail; fall back to an empty MAC
    // input rather than panic.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signature header in constant time (what a receiver does; used by tests too).
pub fn verify(secret: &[u8], timestamp: i64, body: &[u8], header: &str) -> bool {
    let Some(hex_mac) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(given) = hex::decode(hex_mac) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

fn headline(alert: &Alert, reason: Reason) -> String {
    let escalated = match reason {
        Reason::Firing => String::new(),
        Reason::Escalation(n) => format!(" (escalation tier {n}, not acknowledged)"),
    };
    format!(
        "[{}] {}{}",
        alert.severity_id.as_str().to_ascii_uppercase(),
        alert.rule_title,
        escalated
    )
}

/// Body of a Slack incoming-webhook message.
pub fn slack_body(alert: &Alert, reason: Reason) -> Value {
    let title = headline(alert, reason);
    let labels = alert
        .labels
        .iter()
        .map(|(k, v)| format!("`{k}={v}`"))
        .collect::<Vec<_>>()
        .join(" ");
    json!({
        "text": format!("{title}: {}", alert.description),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": truncate(&title, 150)}},
            {"type": "section", "text": {"type": "mrkdwn", "text": truncate(&alert.description, 3000)}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": format!("*Severity*\n{}", alert.severity_id.as_str())},
                {"type": "mrkdwn", "text": format!("*Rule*\n{}", alert.rule_id)},
                {"type": "mrkdwn", "text": format!("*Events*\n{}", alert.count)},
                {"type": "mrkdwn", "text": format!("*Last seen*\n{}", rfc3339(alert.last_seen))},
            ]},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": truncate(&format!("alert `{}` fingerprint `{}` {labels}", alert.alert_id, alert.fingerprint), 2000)}
            ]},
        ],
    })
}

/// Maps a Vigil severity to PagerDuty's four.
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Informational | Severity::Unknown => "info",
    }
}

/// Body of a PagerDuty Events v2 `trigger` (dedup key = fingerprint, so PagerDuty folds re-fires).
pub fn pagerduty_body(alert: &Alert, routing_key: &str, reason: Reason) -> Value {
    let source = alert
        .labels
        .get("source")
        .or_else(|| alert.labels.get("service"))
        .cloned()
        .unwrap_or_else(|| "vigil".to_owned());
    json!({
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.fingerprint,
        "payload": {
            "summary": truncate(&headline(alert, reason), 1024),
            "severity": pagerduty_severity(alert.severity_id),
            "source": source,
            "timestamp": rfc3339(alert.last_seen),
            "component": alert.rule_id,
            "class": "vigil-alert",
            "custom_details": alert_json(alert),
        },
    })
}

fn rfc3339(us: i64) -> String {
    format_rfc3339(us).unwrap_or_else(|| us.to_string())
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route::tests::alert;

    #[test]
    fn signature_verifies_and_detects_tampering() {
        let body = br#"{"a":1}"#;
        let sig = sign(b"k", 1_700_000_000, body);
        assert!(sig.starts_with("sha256=") && sig.len() == 7 + 64, "{sig}");
        assert!(verify(b"k", 1_700_000_000, body, &sig));
        assert!(!verify(b"k", 1_700_000_001, body, &sig));
        assert!(!verify(b"other", 1_700_000_000, body, &sig));
        assert!(!verify(b"k", 1_700_000_000, br#"{"a":2}"#, &sig));
        assert!(!verify(b"k", 1_700_000_000, body, "sha256=zz"));
    }

    #[test]
    fn pagerduty_payload_has_the_events_v2_shape() {
        let a = alert("r1", Severity::High, &[("service", "api")]);
        let b = pagerduty_body(&a, "RK", Reason::Firing);
        assert_eq!(b["routing_key"], "RK");
        assert_eq!(b["event_action"], "trigger");
        assert_eq!(b["dedup_key"], a.fingerprint.as_str());
        assert_eq!(b["payload"]["severity"], "error");
        assert_eq!(b["payload"]["source"], "api");
        assert_eq!(b["payload"]["summary"], "[HIGH] title of r1");
        assert!(b["payload"]["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(b["payload"]["custom_details"]["rule_id"], "r1");
        for (s, want) in [
            (Severity::Critical, "critical"),
            (Severity::Medium, "warning"),
            (Severity::Low, "info"),
        ] {
            assert_eq!(pagerduty_severity(s), want);
        }
    }

    #[test]
    fn slack_payload_has_text_and_blocks() {
        let a = alert("r1", Severity::Critical, &[]);
        let b = slack_body(&a, Reason::Escalation(2));
        assert!(
            b["text"]
                .as_str()
                .unwrap()
                .starts_with("[CRITICAL] title of r1 (escalation tier 2")
        );
        assert_eq!(b["blocks"][0]["type"], "header");
        assert_eq!(b["blocks"].as_array().unwrap().len(), 4);
    }

    #[test]
    fn webhook_body_carries_the_alert_and_tier() {
        let a = alert("r1", Severity::Low, &[]);
        let b = webhook_body(&a, "hook", Reason::Escalation(1));
        assert_eq!(b["alert"]["alert_id"], a.alert_id.to_string());
        assert_eq!(b["escalation_tier"], 1);
        assert!(b["alert"]["last_seen_rfc3339"].is_string());
        assert_eq!(truncate("ééé", 3), "é…");
    }
}
