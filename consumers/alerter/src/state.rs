//! In-memory state: dedup and group marks, active (notified) alerts with their
//! acknowledgement, and silences. Every table is bounded; a restart forgets all of it.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use uuid::Uuid;
use vigil_schemas::Alert;
use vigil_schemas::model::now_micros;

use crate::config::{MatchConfig, StateConfig};
use crate::internal_events::AlerterMetrics;
use crate::payload::alert_json;
use crate::route::Matcher;

#[derive(Debug, Clone, Copy)]
struct Mark {
    expires: Instant,
    alert_id: Uuid,
}

/// Who acknowledged an alert and when.
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    /// Name given by the caller (`api` when none).
    pub by: String,
    /// Free text.
    pub comment: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// A notified alert, kept for listing, acknowledgement and escalation.
#[derive(Debug, Clone)]
struct ActiveAlert {
    alert: Alert,
    notified_at_ms: i64,
    expires: Instant,
    routes: Vec<String>,
    grouped: u64,
    escalation_tier: usize,
    ack: Option<Ack>,
}

/// A silence: alerts matching it are not notified until it ends.
#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    /// Id returned at creation.
    pub id: Uuid,
    /// What it matches.
    pub matchers: MatchConfig,
    /// End, ms since the epoch.
    pub ends_at_ms: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Creation time, ms since the epoch.
    pub created_at_ms: i64,
    #[serde(skip)]
    matcher: Matcher,
}

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

#[derive(Debug, Default)]
struct Inner {
    marks: HashMap<String, Mark>,
    mark_order: VecDeque<(Instant, String)>,
    active: HashMap<Uuid, ActiveAlert>,
    active_order: VecDeque<Uuid>,
    silences: BTreeMap<Uuid, Silence>,
}

/// The alerter's memory.
pub struct AlertBook {
    inner: Mutex<Inner>,
    limits: StateConfig,
    metrics: AlerterMetrics,
}

fn now_ms() -> i64 {
    now_micros() / 1_000
}

impl AlertBook {
    /// Returns an empty book.
    pub fn new(limits: StateConfig, metrics: AlerterMetrics) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            limits,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain maps behind, still usable.
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Sets the mark `key` for `window` unless an unexpired one exists; returns the alert id of
    /// the existing mark (the caller suppresses) or `None` (the caller notifies).
    pub fn mark(&self, key: &str, window: Duration, alert_id: Uuid, now: Instant) -> Option<Uuid> {
        let mut g = self.lock();
        if let Some(m) = g.marks.get(key)
            && m.expires > now
        {
            return Some(m.alert_id);
        }
        let expires = now + window;
        g.marks.insert(key.to_owned(), Mark { expires, alert_id });
        g.mark_order.push_back((expires, key.to_owned()));
        // Drop queue entries that are stale (re-marked or removed) or expired, oldest first.
        while let Some((exp, k)) = g.mark_order.front().cloned() {
            let current = g.marks.get(&k).map(|m| m.expires);
            if current != Some(exp) {
                g.mark_order.pop_front();
            } else if exp <= now {
                g.mark_order.pop_front();
                g.marks.remove(&k);
            } else {
                break;
            }
        }
        while g.marks.len() > self.limits.max_dedup_entries {
            let Some((exp, k)) = g.mark_order.pop_front() else {
                break;
            };
            if g.marks.get(&k).map(|m| m.expires) == Some(exp) {
                g.marks.remove(&k);
                self.metrics.state_evictions.inc();
            }
        }
        self.metrics.dedup_entries.set(g.marks.len() as i64);
        None
    }

    /// Removes a mark set by [`AlertBook::mark`] (the notification failed, so a retry or replay
    /// must not be suppressed).
    pub fn unmark(&self, key: &str) {
        let mut g = self.lock();
        g.marks.remove(key);
        self.metrics.dedup_entries.set(g.marks.len() as i64);
    }

    /// Records a notified alert (or adds a route to it).
    pub fn activate(&self, alert: &Alert, route_id: &str, now: Instant) {
        let ttl = Duration::from_millis(self.limits.active_ttl_ms);
        let mut g = self.lock();
        if let Some(a) = g.active.get_mut(&alert.alert_id) {
            a.routes.push(route_id.to_owned());
            return;
        }
        g.active.insert(
            alert.alert_id,
            ActiveAlert {
                alert: alert.clone(),
                notified_at_ms: now_ms(),
                expires: now + ttl,
                routes: vec![route_id.to_owned()],
                grouped: 0,
                escalation_tier: 0,
                ack: None,
            },
        );
        g.active_order.push_back(alert.alert_id);
        while let Some(front) = g.active_order.front().copied() {
            let over = g.active.len() > self.limits.max_active_alerts;
            match g.active.get(&front) {
                Some(a) if a.expires <= now || over => {
                    if a.expires > now {
                        self.metrics.state_evictions.inc();
                    }
                    g.active.remove(&front);
                    g.active_order.pop_front();
                }
                Some(_) => break,
                None => {
                    g.active_order.pop_front();
                }
            }
        }
        self.metrics.active_alerts.set(g.active.len() as i64);
    }

    /// Counts an alert folded into the group notified as `alert_id`.
    pub fn fold(&self, alert_id: Uuid) {
        if let Some(a) = self.lock().active.get_mut(&alert_id) {
            a.grouped += 1;
        }
    }

    /// Returns `Some(acked)` for an active alert, `None` once it is gone (expired or evicted).
    pub fn acked(&self, alert_id: Uuid) -> Option<bool> {
        self.lock().active.get(&alert_id).map(|a| a.ack.is_some())
    }

    /// Records that escalation tier `tier` fired.
    pub fn escalated(&self, alert_id: Uuid, tier: usize) {
        if let Some(a) = self.lock().active.get_mut(&alert_id) {
            a.escalation_tier = tier;
        }
    }

    /// Acknowledges the active alert with id `id`, or every active alert whose fingerprint is
    /// `id`; returns the acknowledged alert ids (empty: nothing matched).
    pub fn ack(&self, id: &str, by: &str, comment: &str) -> Vec<Uuid> {
        let ack = Ack {
            by: if by.is_empty() {
                "api".into()
            } else {
                by.to_owned()
            },
            comment: comment.to_owned(),
            at_ms: now_ms(),
        };
        let mut g = self.lock();
        let now = Instant::now();
        let ids: Vec<Uuid> = match Uuid::parse_str(id) {
            Ok(u) if g.active.contains_key(&u) => vec![u],
            _ => g
                .active
                .iter()
                .filter(|(_, a)| a.alert.fingerprint == id)
                .map(|(u, _)| *u)
                .collect(),
        };
        let mut done = Vec::new();
        for u in ids {
            if let Some(a) = g.active.get_mut(&u)
                && a.expires > now
            {
                if a.ack.is_none() {
                    a.ack = Some(ack.clone());
                }
                done.push(u);
            }
        }
        done
    }

    /// Returns the active alerts as JSON, newest first.
    pub fn list_active(&self) -> Vec<serde_json::Value> {
        let g = self.lock();
        let now = Instant::now();
        let mut v: Vec<&ActiveAlert> = g.active.values().filter(|a| a.expires > now).collect();
        v.sort_by_key(|a| std::cmp::Reverse(a.notified_at_ms));
        v.into_iter()
            .map(|a| {
                serde_json::json!({
                    "alert": alert_json(&a.alert),
                    "notified_at_ms": a.notified_at_ms,
                    "routes": a.routes,
                    "grouped_alerts": a.grouped,
                    "escalation_tier": a.escalation_tier,
                    "acknowledged": a.ack,
                })
            })
            .collect()
    }

    /// Creates a silence.
    pub fn add_silence(
        &self,
        matchers: MatchConfig,
        ends_at_ms: i64,
        created_by: String,
        comment: String,
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
        g.silences.retain(|_, s| s.ends_at_ms > now);
        if g.silences.len() >= self.limits.max_silences {
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
    pub fn remove_silence(&self, id: Uuid) -> bool {
        let mut g = self.lock();
        let existed = g.silences.remove(&id).is_some();
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
    use vigil_schemas::Severity;

    fn book(max_marks: usize, max_active: usize) -> AlertBook {
        let metrics = AlerterMetrics::register(&prometheus::Registry::new()).unwrap();
        AlertBook::new(
            StateConfig {
                max_dedup_entries: max_marks,
                max_active_alerts: max_active,
                active_ttl_ms: 60_000,
                max_silences: 2,
            },
            metrics,
        )
    }

    #[test]
    fn marks_suppress_within_the_window_and_expire_after_it() {
        let b = book(10, 10);
        let t0 = Instant::now();
        let (a1, a2) = (Uuid::new_v4(), Uuid::new_v4());
        let w = Duration::from_millis(100);
        assert_eq!(b.mark("k", w, a1, t0), None);
        assert_eq!(b.mark("k", w, a2, t0 + Duration::from_millis(99)), Some(a1));
        assert_eq!(b.mark("k", w, a2, t0 + Duration::from_millis(100)), None);
        b.unmark("k");
        assert_eq!(b.mark("k", w, a1, t0 + Duration::from_millis(101)), None);
    }

    #[test]
    fn marks_are_bounded_and_evict_the_oldest() {
        let b = book(3, 10);
        let t0 = Instant::now();
        let w = Duration::from_secs(60);
        for k in ["a", "b", "c", "d"] {
            assert_eq!(b.mark(k, w, Uuid::nil(), t0), None);
        }
        assert_eq!(b.metrics.state_evictions.get(), 1);
        assert_eq!(b.metrics.dedup_entries.get(), 3);
        assert_eq!(b.mark("a", w, Uuid::nil(), t0), None, "a was evicted");
        assert!(b.mark("d", w, Uuid::nil(), t0).is_some());
    }

    #[test]
    fn ack_by_id_or_fingerprint_and_active_bound() {
        let b = book(10, 2);
        let now = Instant::now();
        let a1 = alert("r1", Severity::High, &[]);
        let a2 = alert("r2", Severity::High, &[]);
        let a3 = alert("r3", Severity::High, &[]);
        b.activate(&a1, "route", now);
        b.activate(&a2, "route", now);
        assert_eq!(b.acked(a1.alert_id), Some(false));
        assert_eq!(b.ack(&a1.alert_id.to_string(), "", ""), vec![a1.alert_id]);
        assert_eq!(b.acked(a1.alert_id), Some(true));
        assert_eq!(b.ack(&a2.fingerprint, "bob", "mine"), vec![a2.alert_id]);
        assert!(b.ack("nope", "", "").is_empty());
        b.activate(&a3, "route", now);
        assert_eq!(b.acked(a1.alert_id), None, "oldest evicted at the bound");
        assert_eq!(b.list_active().len(), 2);
    }

    #[test]
    fn silences_match_refuse_empty_and_are_bounded() {
        let b = book(10, 10);
        let future = now_ms() + 60_000;
        let empty = b.add_silence(MatchConfig::default(), future, "x".into(), String::new());
        assert!(matches!(empty, Err(SilenceError::Invalid(_))));
        let m = MatchConfig {
            rule_id: vec!["r1".into()],
            ..MatchConfig::default()
        };
        let past = b.add_silence(m.clone(), now_ms() - 1, "x".into(), String::new());
        assert!(matches!(past, Err(SilenceError::Invalid(_))));
        let s = b
            .add_silence(m.clone(), future, "x".into(), String::new())
            .unwrap();
        assert_eq!(b.silenced_by(&alert("r1", Severity::Low, &[])), Some(s.id));
        assert_eq!(b.silenced_by(&alert("r2", Severity::Low, &[])), None);
        b.add_silence(m.clone(), future, "x".into(), String::new())
            .unwrap();
        assert_eq!(
            b.add_silence(m, future, "x".into(), String::new())
                .unwrap_err(),
            SilenceError::Full(2)
        );
        assert!(b.remove_silence(s.id));
        assert!(!b.remove_silence(s.id));
        assert_eq!(b.silences().len(), 1);
    }
}
