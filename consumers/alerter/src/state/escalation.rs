//! Escalation progress and timers: which tiers of an active alert's policies were notified,
//! and which timers run on this instance (those of the alerts-topic partitions it owns).

use std::time::Instant;

use tokio::sync::mpsc;
use uuid::Uuid;

use super::book::AlertBook;
use super::document::EscalationDoc;
use super::entries::Rearm;
use super::writer::Pending;

/// What an escalation timer does with its next tier ([`AlertBook::timer_step`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerStep {
    /// Notify the tier.
    Fire,
    /// Another instance notified it already (learnt from the changelog): go on to the next.
    Skip,
    /// Stop: the alert was acknowledged or is gone, or its partition is not owned here any
    /// more. The timer no longer counts as running here.
    Stop,
}

impl AlertBook {
    /// Returns the escalation policy of route `route_id` of an alert activated by another
    /// instance (learnt from the changelog) when it still has tiers to notify, the alert is
    /// unacknowledged and no timer for it runs here; the caller starts that timer, continuing
    /// from the tiers already notified. Used when this instance consumes such an alert again
    /// (its partition moved here before the record's offset was stored, e.g. the instance that
    /// activated it died), so its escalation is not lost.
    pub fn adopt_escalation(&self, alert_id: Uuid, route_id: &str) -> Option<EscalationDoc> {
        let mut g = self.lock();
        let a = g.active.get_mut(&alert_id)?;
        if a.ack.is_some() || a.timers_here.iter().any(|r| r == route_id) {
            return None;
        }
        let e = a
            .escalations
            .iter()
            .find(|e| e.route == route_id && e.fired < e.tiers.len())?
            .clone();
        a.timers_here.push(route_id.to_owned());
        Some(e)
    }

    /// Records that escalation tier `tier` (1-based) of route `route_id` was notified.
    pub fn escalated(&self, alert_id: Uuid, route_id: &str, tier: usize, p: &mut Pending) {
        let mut g = self.lock();
        if let Some(a) = g.active.get_mut(&alert_id) {
            a.escalation_tier = a.escalation_tier.max(tier);
            if let Some(e) = a.escalations.iter_mut().find(|e| e.route == route_id) {
                e.fired = e.fired.max(tier);
            }
            let a = a.clone();
            self.write_alert(p, &a);
        }
    }
    /// Sets where escalations taken over from followed writes are sent to get their timers
    /// started (once; later calls are ignored).
    pub fn set_armer(&self, armer: mpsc::UnboundedSender<Rearm>) {
        let _ = self.armer.set(armer);
    }

    pub(super) fn arm(&self, rearm: Vec<Rearm>) {
        if rearm.is_empty() {
            return;
        }
        match self.armer.get() {
            Some(tx) => {
                for r in rearm {
                    let _ = tx.send(r);
                }
            }
            None => tracing::debug!(
                timers = rearm.len(),
                "escalations taken over but nothing arms timers"
            ),
        }
    }

    /// Records that alerts-topic partitions `partitions` (topic, partition) are now owned here
    /// and returns the escalations to start: unacknowledged alerts of owned partitions with
    /// tiers left and no timer here, continuing from the tiers already notified.
    pub fn assign(&self, partitions: &[(String, i32)]) -> Vec<Rearm> {
        let mut g = self.lock();
        let g = &mut *g;
        g.owned.extend(partitions.iter().cloned());
        let now = Instant::now();
        let mut out = Vec::new();
        for a in g.active.values_mut() {
            if a.expires > now && a.owned_in(&g.owned) {
                out.extend(a.claim_timers());
            }
        }
        out
    }

    /// Records that alerts-topic partitions `partitions` are no longer owned here: timers of
    /// their alerts stop before their next tier ([`AlertBook::timer_step`]).
    pub fn revoke(&self, partitions: &[(String, i32)]) {
        let mut g = self.lock();
        for p in partitions {
            g.owned.remove(p);
        }
    }

    /// Decides, when tier `tier` (1-based) of route `route_id` is due, whether the timer
    /// notifies it. On [`TimerStep::Stop`] the timer no longer counts as running here, in the
    /// same critical section, so an assignment right after arms a fresh one.
    pub fn timer_step(&self, alert_id: Uuid, route_id: &str, tier: usize) -> TimerStep {
        let mut g = self.lock();
        let g = &mut *g;
        let Some(a) = g.active.get_mut(&alert_id) else {
            return TimerStep::Stop;
        };
        if a.ack.is_some() || !a.owned_in(&g.owned) {
            a.timers_here.retain(|r| r != route_id);
            return TimerStep::Stop;
        }
        let fired = a
            .escalations
            .iter()
            .find(|e| e.route == route_id)
            .map_or(0, |e| e.fired);
        if fired >= tier {
            TimerStep::Skip
        } else {
            TimerStep::Fire
        }
    }

    /// Stops counting the timer of route `route_id` as running here when the alert's
    /// partition is no longer owned; returns whether it was stopped (the timer then ends).
    pub fn release_if_unowned(&self, alert_id: Uuid, route_id: &str) -> bool {
        let mut g = self.lock();
        let g = &mut *g;
        match g.active.get_mut(&alert_id) {
            Some(a) if a.owned_in(&g.owned) => false,
            Some(a) => {
                a.timers_here.retain(|r| r != route_id);
                true
            }
            None => true,
        }
    }

    /// Records that the timer of route `route_id` ended (all tiers done, or the service stops).
    pub fn timer_done(&self, alert_id: Uuid, route_id: &str) {
        if let Some(a) = self.lock().active.get_mut(&alert_id) {
            a.timers_here.retain(|r| r != route_id);
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::config::EscalationTier;
    use crate::route::tests::alert;
    use crate::state::clock::now_ms;
    use crate::state::document::{Ack, StateKey, StateValue};
    use crate::state::fixtures::{alert_doc, book, doc_on, p, tp};
    use vigil_schemas::Severity;

    #[test]
    fn an_escalation_learnt_from_another_instance_is_adopted_once() {
        let b = book(10, 10);
        let now = now_ms();
        let theirs = alert("r1", Severity::High, &[]);
        b.apply_remote(
            StateKey::Alert(theirs.alert_id),
            Some(StateValue::Alert(Box::new(alert_doc(
                &theirs,
                now - 500,
                60_000,
                1,
            )))),
        );
        // Consumed again here: the known route starts no fresh timer, but the policy is taken
        // over from the tier already notified.
        assert!(!b.activate(&theirs, "route", Instant::now(), &[], None, &mut p()));
        let e = b.adopt_escalation(theirs.alert_id, "route").unwrap();
        assert_eq!((e.fired, e.tiers.len()), (1, 2));
        assert!(b.adopt_escalation(theirs.alert_id, "route").is_none());
        // An alert activated here already has its timer.
        let mine = alert("r2", Severity::High, &[]);
        let tiers = [EscalationTier {
            receivers: vec!["lead".into()],
            after_ms: 1_000,
        }];
        assert!(b.activate(&mine, "route", Instant::now(), &tiers, None, &mut p()));
        assert!(b.adopt_escalation(mine.alert_id, "route").is_none());
    }

    #[test]
    fn timers_are_armed_on_assignment_of_their_partition_only_and_once() {
        let b = book(10, 10);
        let (on0, on1, other_topic) = (
            alert("r1", Severity::High, &[]),
            alert("r2", Severity::High, &[]),
            alert("r3", Severity::High, &[]),
        );
        let mut acked = doc_on(&alert("r4", Severity::High, &[]), "alerts", 0, 0);
        acked.ack = Some(Ack {
            by: "a".into(),
            comment: String::new(),
            at_ms: now_ms(),
        });
        let values = vec![
            (
                StateKey::Alert(on0.alert_id),
                StateValue::Alert(Box::new(doc_on(&on0, "alerts", 0, 1))),
            ),
            (
                StateKey::Alert(on1.alert_id),
                StateValue::Alert(Box::new(doc_on(&on1, "alerts", 1, 0))),
            ),
            (
                StateKey::Alert(other_topic.alert_id),
                StateValue::Alert(Box::new(doc_on(&other_topic, "elsewhere", 0, 0))),
            ),
            (
                StateKey::Alert(acked.alert.alert_id),
                StateValue::Alert(Box::new(acked)),
            ),
        ];
        let restored = b.restore(values, &mut p());
        assert_eq!(restored.rearm.len(), 3, "listed, not armed");
        let armed = b.assign(&[tp("alerts", 0)]);
        assert_eq!(
            armed.len(),
            1,
            "only the unacked alert of the assigned partition"
        );
        assert_eq!(armed[0].alert.alert_id, on0.alert_id);
        assert_eq!(
            armed[0].escalation.fired, 1,
            "from the tier already notified"
        );
        assert!(b.assign(&[tp("alerts", 0)]).is_empty(), "its timer runs");
        let armed = b.assign(&[tp("alerts", 1)]);
        assert_eq!(armed.len(), 1);
        assert_eq!(armed[0].alert.alert_id, on1.alert_id);
    }

    #[test]
    fn a_revoked_partition_stops_its_timers_and_a_reassignment_arms_them_again() {
        let b = book(10, 10);
        let a = alert("r1", Severity::High, &[]);
        b.apply_remote(
            StateKey::Alert(a.alert_id),
            Some(StateValue::Alert(Box::new(doc_on(&a, "alerts", 1, 0)))),
        );
        assert_eq!(b.assign(&[tp("alerts", 1)]).len(), 1);
        assert_eq!(b.timer_step(a.alert_id, "route", 1), TimerStep::Fire);
        assert!(!b.release_if_unowned(a.alert_id, "route"), "still owned");
        b.revoke(&[tp("alerts", 1)]);
        // Revoked and assigned again before the timer looked: the running timer continues.
        assert!(b.assign(&[tp("alerts", 1)]).is_empty());
        assert_eq!(b.timer_step(a.alert_id, "route", 1), TimerStep::Fire);
        b.revoke(&[tp("alerts", 1)]);
        assert_eq!(
            b.timer_step(a.alert_id, "route", 1),
            TimerStep::Stop,
            "no tier after a revoke"
        );
        assert!(b.release_if_unowned(a.alert_id, "route"));
        // The timer stopped: the next assignment arms a fresh one.
        assert_eq!(b.assign(&[tp("alerts", 1)]).len(), 1);
        // A tier notified by another instance meanwhile is skipped, not notified again.
        b.escalated(a.alert_id, "route", 1, &mut p());
        assert_eq!(b.timer_step(a.alert_id, "route", 1), TimerStep::Skip);
        assert_eq!(b.timer_step(a.alert_id, "route", 2), TimerStep::Fire);
        b.timer_done(a.alert_id, "route");
        b.ack(&a.alert_id.to_string(), "", "", &mut p());
        assert!(b.assign(&[tp("alerts", 1)]).is_empty(), "acknowledged");
    }

    #[test]
    fn a_followed_write_for_an_owned_partition_is_taken_over_once() {
        let b = book(10, 10);
        let (tx, mut rx) = mpsc::unbounded_channel();
        b.set_armer(tx);
        b.assign(&[tp("alerts", 0)]);
        let (mine, theirs) = (
            alert("r1", Severity::High, &[]),
            alert("r2", Severity::High, &[]),
        );
        // The previous owner's write arrives after the rebalance: armed here.
        let doc = doc_on(&mine, "alerts", 0, 0);
        b.apply_remote(
            StateKey::Alert(mine.alert_id),
            Some(StateValue::Alert(Box::new(doc.clone()))),
        );
        let r = rx.try_recv().expect("taken over");
        assert_eq!(r.alert.alert_id, mine.alert_id);
        // Its next write (a tier notified before it stopped) arms nothing more.
        let mut next = doc;
        next.escalations[0].fired = 1;
        b.apply_remote(
            StateKey::Alert(mine.alert_id),
            Some(StateValue::Alert(Box::new(next))),
        );
        assert!(rx.try_recv().is_err(), "one timer per route");
        assert_eq!(b.timer_step(mine.alert_id, "route", 1), TimerStep::Skip);
        // An alert of a partition owned elsewhere is not armed here.
        b.apply_remote(
            StateKey::Alert(theirs.alert_id),
            Some(StateValue::Alert(Box::new(doc_on(&theirs, "alerts", 1, 0)))),
        );
        assert!(rx.try_recv().is_err());
    }
}
