//! Topic names and their schema registry subjects (`topology/topics.yaml` declares the topics).

/// Raw signed events written by producers; value [`crate::VerificationEvent`].
pub const EVENTS_RAW: &str = "vigil.events.raw";
/// Events with the verifier's verdict; value [`crate::VerifiedEvent`].
pub const EVENTS_VERIFIED: &str = "vigil.events.verified";
/// Compacted key registry, record key = key id; value [`crate::KeyStatus`].
pub const KEYS: &str = "vigil.keys";
/// Alerts raised by the correlator, record key = fingerprint; value [`crate::Alert`].
pub const ALERTS: &str = "vigil.alerts";
/// Dead-letter topic: original bytes untouched, reason in headers.
pub const DLQ: &str = "vigil.dlq";

/// Returns the registry subject of a topic's value schema (Confluent TopicNameStrategy).
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_subject_uses_topic_name_strategy() {
        assert_eq!(value_subject(EVENTS_RAW), "vigil.events.raw-value");
    }
}
