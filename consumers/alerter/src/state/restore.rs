//! The restore at start: the changelog's latest values become the book's content, within the
//! table bounds and without what has ended by wall clock.

use std::time::Instant;

use super::book::{AlertBook, Inner};
use super::clock::now_ms;
use super::document::{StateKey, StateValue};
use super::entries::{ActiveAlert, Rearm, Silence};
use super::marks::put_mark;
use super::writer::Pending;

/// What [`AlertBook::restore`] rebuilt and dropped.
#[derive(Debug, Default)]
pub struct Restored {
    /// Marks kept.
    pub marks: usize,
    /// Active alerts kept.
    pub alerts: usize,
    /// Silences kept.
    pub silences: usize,
    /// Entries dropped because their wall-clock end had passed.
    pub expired: usize,
    /// Unexpired entries dropped to honour the table bounds.
    pub evicted: usize,
    /// Silences whose matchers no longer compile.
    pub invalid: usize,
    /// Escalation policies of unacknowledged alerts that still have tiers to notify; their
    /// timers start when their record's partition is assigned ([`AlertBook::assign`]).
    pub rearm: Vec<Rearm>,
}

/// What [`AlertBook::restore`] keeps of one table, and what it drops (to be tombstoned).
struct Kept<T> {
    kept: Vec<T>,
    dropped: Vec<T>,
}

/// Splits restored entries, oldest first, into the ones kept and the ones dropped: those whose
/// wall-clock end (`end_ms`) has passed (counted in `out.expired`), then the oldest live ones
/// beyond `limit` (counted in `out.evicted`).
fn keep_live_within<T>(
    items: Vec<T>,
    end_ms: impl Fn(&T) -> i64,
    limit: usize,
    wall_now: i64,
    out: &mut Restored,
) -> Kept<T> {
    let (live, expired): (Vec<T>, Vec<T>) = items.into_iter().partition(|t| end_ms(t) > wall_now);
    let excess = live.len().saturating_sub(limit);
    out.expired += expired.len();
    out.evicted += excess;
    let mut dropped = expired;
    let mut live = live.into_iter();
    dropped.extend(live.by_ref().take(excess));
    Kept {
        kept: live.collect(),
        dropped,
    }
}

impl AlertBook {
    /// Replaces the book's content with the changelog's latest values, honouring the table
    /// bounds: entries whose wall-clock end has passed are dropped, and beyond a bound the
    /// oldest go; both get a tombstone so compaction forgets them.
    pub fn restore(&self, values: Vec<(StateKey, StateValue)>, p: &mut Pending) -> Restored {
        let (inst_now, wall_now) = (Instant::now(), now_ms());
        let mut out = Restored::default();
        let mut marks = Vec::new();
        let mut alerts = Vec::new();
        let mut silences = Vec::new();
        for (key, value) in values {
            match (key, value) {
                (StateKey::Mark(k), StateValue::Mark(m)) => marks.push((k, m)),
                (StateKey::Alert(_), StateValue::Alert(a)) => alerts.push(a),
                (StateKey::Silence(_), StateValue::Silence(s)) => silences.push(s),
                // `changelog::decode` pairs values with their keys; nothing else reaches here.
                _ => out.invalid += 1,
            }
        }
        let mut g = self.lock();
        let owned = std::mem::take(&mut g.owned);
        *g = Inner {
            owned,
            ..Inner::default()
        };

        marks.sort_by_key(|(_, m)| m.expires_at_ms);
        let marks = keep_live_within(
            marks,
            |(_, m)| m.expires_at_ms,
            self.limits.max_dedup_entries,
            wall_now,
            &mut out,
        );
        for (k, _) in marks.dropped {
            self.write(p, StateKey::Mark(k), None);
        }
        for (k, m) in marks.kept {
            put_mark(&mut g, k, &m, true, inst_now, wall_now);
        }

        alerts.sort_by_key(|a| a.notified_at_ms);
        let alerts = keep_live_within(
            alerts,
            |a| a.expires_at_ms,
            self.limits.max_active_alerts,
            wall_now,
            &mut out,
        );
        for a in alerts.dropped {
            self.write(p, StateKey::Alert(a.alert.alert_id), None);
        }
        for a in alerts.kept {
            let id = a.alert.alert_id;
            let active = ActiveAlert::from_doc(*a, inst_now, wall_now);
            // Not armed here: the owner of the record's partition arms it on assignment.
            out.rearm.extend(active.unfinished_escalations());
            g.active_order.push_back(id);
            g.active.insert(id, active);
        }

        silences.sort_by_key(|s| std::cmp::Reverse(s.created_at_ms));
        for s in silences {
            if s.ends_at_ms <= wall_now {
                out.expired += 1;
                self.write(p, StateKey::Silence(s.id), None);
                continue;
            }
            let Some(silence) = Silence::from_doc(s) else {
                out.invalid += 1;
                continue;
            };
            if g.silences.len() >= self.limits.max_silences {
                // Newest first: the oldest silences are the ones dropped.
                out.evicted += 1;
                self.write(p, StateKey::Silence(silence.id), None);
                continue;
            }
            g.silences.insert(silence.id, silence);
        }
        out.marks = g.marks.len();
        out.alerts = g.active.len();
        out.silences = g.silences.len();
        self.metrics.state_evictions.inc_by(out.evicted as u64);
        self.metrics.dedup_entries.set(g.marks.len() as i64);
        self.metrics.active_alerts.set(g.active.len() as i64);
        self.metrics.silences.set(g.silences.len() as i64);
        out
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::route::tests::alert;
    use crate::state::document::{Ack, MarkDoc, SilenceDoc, VERSION};
    use crate::state::fixtures::{alert_doc, book, p, silence_doc};
    use vigil_schemas::Severity;

    #[test]
    fn restore_keeps_the_newest_live_entries_within_the_bound() {
        let mut out = Restored::default();
        // (end, id), oldest first; now = 10: 1 and 2 have ended.
        let items = vec![(1, 'a'), (20, 'b'), (2, 'c'), (30, 'd'), (40, 'e')];
        let k = keep_live_within(items.clone(), |t| t.0, 2, 10, &mut out);
        let ids = |v: &[(i64, char)]| v.iter().map(|t| t.1).collect::<String>();
        assert_eq!(ids(&k.kept), "de", "the two newest live ones");
        assert_eq!(
            ids(&k.dropped),
            "acb",
            "expired first, then the oldest live"
        );
        assert_eq!((out.expired, out.evicted), (2, 1));

        let mut out = Restored::default();
        let k = keep_live_within(items.clone(), |t| t.0, 0, 10, &mut out);
        assert!(k.kept.is_empty());
        assert_eq!((k.dropped.len(), out.expired, out.evicted), (5, 2, 3));

        let mut out = Restored::default();
        let k = keep_live_within(items, |t| t.0, 10, 100, &mut out);
        assert!(k.kept.is_empty(), "all ended");
        assert_eq!((out.expired, out.evicted), (5, 0));
    }

    #[test]
    fn restore_drops_expired_entries_honours_bounds_and_lists_timers_to_rearm() {
        let b = book(2, 2);
        let now = now_ms();
        let id = |_: u8| Uuid::new_v4();
        let mark = |k: &str, exp: i64| {
            (
                StateKey::Mark(k.into()),
                StateValue::Mark(MarkDoc {
                    v: VERSION,
                    alert_id: id(0),
                    expires_at_ms: exp,
                }),
            )
        };
        let (old, mid, new, gone) = (
            alert("r1", Severity::High, &[]),
            alert("r2", Severity::High, &[]),
            alert("r3", Severity::High, &[]),
            alert("r4", Severity::High, &[]),
        );
        let mut acked = alert_doc(&mid, now - 3_000, 60_000, 0);
        acked.ack = Some(Ack {
            by: "alice".into(),
            comment: String::new(),
            at_ms: now - 100,
        });
        let live_silence = silence_doc("r3", now - 10, now + 60_000);
        let ended_silence = SilenceDoc {
            id: Uuid::new_v4(),
            ends_at_ms: now - 1,
            ..live_silence.clone()
        };
        let values = vec![
            mark("expired", now - 1),
            mark("m1", now + 10_000),
            mark("m2", now + 20_000),
            mark("m3", now + 30_000),
            (
                StateKey::Alert(old.alert_id),
                StateValue::Alert(Box::new(alert_doc(&old, now - 5_000, 60_000, 0))),
            ),
            (
                StateKey::Alert(mid.alert_id),
                StateValue::Alert(Box::new(acked)),
            ),
            (
                StateKey::Alert(new.alert_id),
                StateValue::Alert(Box::new(alert_doc(&new, now - 1_000, 60_000, 1))),
            ),
            (
                StateKey::Alert(gone.alert_id),
                StateValue::Alert(Box::new(alert_doc(&gone, now - 90_000, 60_000, 0))),
            ),
            (
                StateKey::Silence(live_silence.id),
                StateValue::Silence(live_silence.clone()),
            ),
            (
                StateKey::Silence(ended_silence.id),
                StateValue::Silence(ended_silence),
            ),
        ];
        let r = b.restore(values, &mut p());
        assert_eq!((r.marks, r.alerts, r.silences), (2, 2, 1));
        assert_eq!(r.expired, 3, "a mark, an alert and a silence had ended");
        assert_eq!(r.evicted, 2, "the oldest mark and the oldest alert");
        assert_eq!(b.metrics.dedup_entries.get(), 2);
        // m1 (earliest end) was evicted; m2 and m3 still suppress other alert ids.
        let t = Instant::now();
        let w = Duration::from_secs(1);
        assert_eq!(b.mark("m1", w, id(0), t, &mut p()), None);
        assert!(b.mark("m3", w, id(0), t, &mut p()).is_some());
        assert_eq!(b.acked(old.alert_id), None, "evicted at the bound");
        assert_eq!(b.acked(mid.alert_id), Some(true));
        assert_eq!(b.acked(new.alert_id), Some(false));
        assert_eq!(b.acked(gone.alert_id), None);
        // Only the unacknowledged alert with a tier left is listed (armed once its partition is
        // assigned), from its next tier.
        assert_eq!(r.rearm.len(), 1);
        assert_eq!(r.rearm[0].alert.alert_id, new.alert_id);
        assert_eq!(r.rearm[0].escalation.fired, 1);
        assert_eq!(
            b.silenced_by(&alert("r3", Severity::Low, &[])),
            Some(live_silence.id)
        );
        let listed = b.list_active();
        assert_eq!(listed[0]["alert"]["alert_id"], new.alert_id.to_string());
        assert_eq!(listed[0]["escalation_tier"], 1);
        assert_eq!(listed[0]["grouped_alerts"], 1);
        assert_eq!(listed[1]["acknowledged"]["by"], "alice");
    }
}
