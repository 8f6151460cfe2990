//! Active alerts: notified alerts kept for listing and acknowledgement, with the routes they
//! went through and the alerts folded into their group.

use std::time::{Duration, Instant};

use uuid::Uuid;
use vigil_consumer::InboundRecord;
use vigil_schemas::Alert;

use super::book::{AlertBook, Inner};
use super::clock::{now_ms, wall_of};
use super::document::{Ack, EscalationDoc, OriginDoc, StateKey};
use super::entries::ActiveAlert;
use super::writer::Pending;
use crate::config::EscalationTier;
use crate::payload::alert_json;

impl AlertBook {
    /// Records a notified alert, or adds a route to it. `escalation` is the route's policy
    /// (empty: none) and `origin` the consumed record, kept for a later dead letter.
    ///
    /// Returns true when the route is new for this alert: only then does the caller start the
    /// route's escalation timer (a redelivered alert keeps the timer it has).
    pub fn activate(
        &self,
        alert: &Alert,
        route_id: &str,
        now: Instant,
        escalation: &[EscalationTier],
        origin: Option<&InboundRecord>,
        p: &mut Pending,
    ) -> bool {
        let ttl = Duration::from_millis(self.limits.active_ttl_ms);
        let (wall_now, inst_now) = (now_ms(), Instant::now());
        let started_at_ms = wall_of(now, inst_now, wall_now);
        let policy = (!escalation.is_empty()).then(|| EscalationDoc {
            route: route_id.to_owned(),
            started_at_ms,
            fired: 0,
            tiers: escalation.to_vec(),
        });
        // Only a policy's tiers can need the record again (a dead letter after a restart).
        let kept_origin = policy.as_ref().and(origin).map(OriginDoc::from_record);
        let mut g = self.lock();
        if let Some(a) = g.active.get_mut(&alert.alert_id) {
            if a.routes.iter().any(|r| r == route_id) {
                return false;
            }
            a.routes.push(route_id.to_owned());
            if let Some(e) = policy {
                a.escalations.push(e);
                a.timers_here.push(route_id.to_owned());
                if a.origin.is_none() {
                    a.origin = kept_origin;
                }
            }
            let a = a.clone();
            self.write_alert(p, &a);
            return true;
        }
        let expires = now + ttl;
        let a = ActiveAlert {
            alert: alert.clone(),
            notified_at_ms: started_at_ms,
            expires,
            expires_at_ms: wall_of(expires, inst_now, wall_now),
            routes: vec![route_id.to_owned()],
            grouped: 0,
            escalation_tier: 0,
            ack: None,
            origin: kept_origin,
            timers_here: policy.iter().map(|e| e.route.clone()).collect(),
            escalations: policy.into_iter().collect(),
        };
        self.write_alert(p, &a);
        g.active.insert(alert.alert_id, a);
        g.active_order.push_back(alert.alert_id);
        self.trim_active(&mut g, now, Some(p));
        true
    }

    /// Drops expired active alerts and, beyond `max_active_alerts`, the oldest; with `p` each
    /// removal is written as a tombstone, without (a remote write applied) memory only.
    pub(super) fn trim_active(&self, g: &mut Inner, now: Instant, mut p: Option<&mut Pending>) {
        while let Some(front) = g.active_order.front().copied() {
            let over = g.active.len() > self.limits.max_active_alerts;
            match g.active.get(&front) {
                Some(a) if a.expires <= now || over => {
                    if a.expires > now {
                        self.metrics.state_evictions.inc();
                    }
                    g.active.remove(&front);
                    g.active_order.pop_front();
                    self.write_opt(p.as_deref_mut(), StateKey::Alert(front), None);
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
    pub fn fold(&self, alert_id: Uuid, p: &mut Pending) {
        let mut g = self.lock();
        if let Some(a) = g.active.get_mut(&alert_id) {
            a.grouped += 1;
            let a = a.clone();
            self.write_alert(p, &a);
        }
    }

    /// Returns `Some(acked)` for an active alert, `None` once it is gone (expired or evicted).
    pub fn acked(&self, alert_id: Uuid) -> Option<bool> {
        self.lock().active.get(&alert_id).map(|a| a.ack.is_some())
    }

    /// Acknowledges the active alert with id `id`, or every active alert whose fingerprint is
    /// `id`; returns the acknowledged alert ids (empty: nothing matched). An alert acknowledged
    /// before keeps its first acknowledgement, and is written again so a retried call after a
    /// failed write persists it.
    pub fn ack(&self, id: &str, by: &str, comment: &str, p: &mut Pending) -> Vec<Uuid> {
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
                let a = a.clone();
                self.write_alert(p, &a);
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
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::route::tests::alert;
    use crate::state::fixtures::{book, p};
    use vigil_schemas::Severity;

    #[test]
    fn ack_by_id_or_fingerprint_and_active_bound() {
        let b = book(10, 2);
        let now = Instant::now();
        let a1 = alert("r1", Severity::High, &[]);
        let a2 = alert("r2", Severity::High, &[]);
        let a3 = alert("r3", Severity::High, &[]);
        assert!(b.activate(&a1, "route", now, &[], None, &mut p()));
        assert!(
            !b.activate(&a1, "route", now, &[], None, &mut p()),
            "known route"
        );
        b.activate(&a2, "route", now, &[], None, &mut p());
        assert_eq!(b.acked(a1.alert_id), Some(false));
        assert_eq!(
            b.ack(&a1.alert_id.to_string(), "", "", &mut p()),
            vec![a1.alert_id]
        );
        assert_eq!(b.acked(a1.alert_id), Some(true));
        assert_eq!(
            b.ack(&a2.fingerprint, "bob", "mine", &mut p()),
            vec![a2.alert_id]
        );
        assert!(b.ack("nope", "", "", &mut p()).is_empty());
        b.activate(&a3, "route", now, &[], None, &mut p());
        assert_eq!(b.acked(a1.alert_id), None, "oldest evicted at the bound");
        assert_eq!(b.list_active().len(), 2);
    }
}
