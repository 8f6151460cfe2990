//! Silences: alerts matching one are not notified until it ends.

use uuid::Uuid;
use vigil_schemas::Alert;

use super::book::AlertBook;
use super::clock::now_ms;
use super::document::{StateKey, encode};
use super::entries::Silence;
use super::writer::Pending;
use crate::config::MatchConfig;
use crate::route::Matcher;

/// Why a silence cannot be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SilenceError {
    /// The matchers are invalid or empty.
    #[error("{0}")]
    Invalid(String),
    /// `state.max_silences` silences exist already.
    #[error("too many silences (limit {0})")]
    Full(usize),
}

impl AlertBook {
    /// Creates a silence.
    pub fn add_silence(
        &self,
        matchers: MatchConfig,
        ends_at_ms: i64,
        created_by: String,
        comment: String,
        p: &mut Pending,
    ) -> Result<Silence, SilenceError> {
        let matcher = Matcher::compile(&matchers).map_err(SilenceError::Invalid)?;
        if matcher.is_empty() {
            return Err(SilenceError::Invalid(
                "matchers must not be empty (a silence would hide every alert)".into(),
            ));
        }
        let now = now_ms();
        if ends_at_ms <= now {
            return Err(SilenceError::Invalid("ends in the past".into()));
        }
        let mut g = self.lock();
        let ended: Vec<Uuid> = g
            .silences
            .values()
            .filter(|s| s.ends_at_ms <= now)
            .map(|s| s.id)
            .collect();
        for id in ended {
            g.silences.remove(&id);
            self.write(p, StateKey::Silence(id), None);
        }
        if g.silences.len() >= self.limits.max_silences {
            self.metrics.silences.set(g.silences.len() as i64);
            return Err(SilenceError::Full(self.limits.max_silences));
        }
        let s = Silence {
            id: Uuid::new_v4(),
            matchers,
            ends_at_ms,
            created_by,
            comment,
            created_at_ms: now,
            matcher,
        };
        self.write(p, StateKey::Silence(s.id), Some(encode(&s.doc())));
        g.silences.insert(s.id, s.clone());
        self.metrics.silences.set(g.silences.len() as i64);
        Ok(s)
    }

    /// Lists unexpired silences.
    pub fn silences(&self) -> Vec<Silence> {
        let now = now_ms();
        self.lock()
            .silences
            .values()
            .filter(|s| s.ends_at_ms > now)
            .cloned()
            .collect()
    }

    /// Deletes a silence; returns whether it existed.
    pub fn remove_silence(&self, id: Uuid, p: &mut Pending) -> bool {
        let mut g = self.lock();
        let existed = g.silences.remove(&id).is_some();
        if existed {
            self.write(p, StateKey::Silence(id), None);
        }
        self.metrics.silences.set(g.silences.len() as i64);
        existed
    }

    /// Returns the id of an unexpired silence matching `alert`.
    pub fn silenced_by(&self, alert: &Alert) -> Option<Uuid> {
        let now = now_ms();
        self.lock()
            .silences
            .values()
            .find(|s| s.ends_at_ms > now && s.matcher.matches(alert))
            .map(|s| s.id)
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route::tests::alert;
    use crate::state::fixtures::{book, p};
    use vigil_schemas::Severity;

    #[test]
    fn silences_match_refuse_empty_and_are_bounded() {
        let b = book(10, 10);
        let future = now_ms() + 60_000;
        let empty = b.add_silence(
            MatchConfig::default(),
            future,
            "x".into(),
            String::new(),
            &mut p(),
        );
        assert!(matches!(empty, Err(SilenceError::Invalid(_))));
        let m = MatchConfig {
            rule_id: vec!["r1".into()],
            ..MatchConfig::default()
        };
        let past = b.add_silence(m.clone(), now_ms() - 1, "x".into(), String::new(), &mut p());
        assert!(matches!(past, Err(SilenceError::Invalid(_))));
        let s = b
            .add_silence(m.clone(), future, "x".into(), String::new(), &mut p())
            .unwrap();
        assert_eq!(b.silenced_by(&alert("r1", Severity::Low, &[])), Some(s.id));
        assert_eq!(b.silenced_by(&alert("r2", Severity::Low, &[])), None);
        b.add_silence(m.clone(), future, "x".into(), String::new(), &mut p())
            .unwrap();
        assert_eq!(
            b.add_silence(m, future, "x".into(), String::new(), &mut p())
                .unwrap_err(),
            SilenceError::Full(2)
        );
        assert!(b.remove_silence(s.id, &mut p()));
        assert!(!b.remove_silence(s.id, &mut p()));
        assert_eq!(b.silences().len(), 1);
    }
}
