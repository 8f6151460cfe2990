//! Other instances' writes, read by the changelog follower: applied to memory only, with the
//! restore's expiry and bounds, the last write of a key winning (active alerts merge).

use std::time::Instant;

use super::book::{AlertBook, Inner};
use super::clock::now_ms;
use super::document::{StateKey, StateValue};
use super::entries::{ActiveAlert, Silence};
use super::marks::put_mark;

/// What [`AlertBook::apply_remote`] did with one write of another instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteApplied {
    /// The entry was inserted, or replaced by the write (an active alert merged: see
    /// [`AlertBook::apply_remote`]).
    Upserted,
    /// A tombstone: the entry is gone (if it was held).
    Removed,
    /// The value had already ended by wall clock: the entry is gone instead.
    Expired,
    /// A silence older than every held one while `max_silences` are held: not kept.
    Evicted,
    /// A silence whose matchers do not compile here: ignored.
    Invalid,
}

impl RemoteApplied {
    /// Returns the label: `upserted`, `removed`, or why the write was not kept.
    pub fn as_str(self) -> &'static str {
        match self {
            RemoteApplied::Upserted => "upserted",
            RemoteApplied::Removed => "removed",
            RemoteApplied::Expired => "expired",
            RemoteApplied::Evicted => "evicted",
            RemoteApplied::Invalid => "invalid",
        }
    }
}

impl AlertBook {
    /// Applies one write of another alerter instance, read from the changelog by the follower
    /// (`None`: tombstone). Memory only: nothing is written back, so instances never echo each
    /// other. Wall-clock expiry and the table bounds apply as in [`AlertBook::restore`], except
    /// that what does not fit is dropped from memory only (the writer owns the topic entry).
    ///
    /// The last write of a key in topic order wins, with one exception: an active alert keeps
    /// an acknowledgement, escalation progress, routes and group count it already had (see
    /// [`RemoteApplied`]). A remote acknowledgement stops a local escalation timer: the timer
    /// checks [`AlertBook::acked`] before every tier.
    pub fn apply_remote(&self, key: StateKey, value: Option<StateValue>) -> RemoteApplied {
        let (inst_now, wall_now) = (Instant::now(), now_ms());
        let mut g = self.lock();
        let out = match (key, value) {
            (StateKey::Mark(k), None) => {
                g.marks.remove(&k);
                RemoteApplied::Removed
            }
            (StateKey::Alert(id), None) => {
                g.active.remove(&id);
                RemoteApplied::Removed
            }
            (StateKey::Silence(id), None) => {
                g.silences.remove(&id);
                RemoteApplied::Removed
            }
            (StateKey::Mark(k), Some(StateValue::Mark(m))) => {
                if m.expires_at_ms <= wall_now {
                    g.marks.remove(&k);
                    RemoteApplied::Expired
                } else {
                    put_mark(&mut g, k, &m, false, inst_now, wall_now);
                    self.trim_marks(&mut g, inst_now, None);
                    RemoteApplied::Upserted
                }
            }
            (StateKey::Alert(id), Some(StateValue::Alert(a))) => {
                if a.expires_at_ms <= wall_now {
                    g.active.remove(&id);
                    RemoteApplied::Expired
                } else {
                    let mut active = ActiveAlert::from_doc(*a, inst_now, wall_now);
                    match g.active.get(&id) {
                        Some(local) => active.merge_from(local),
                        None => g.active_order.push_back(id),
                    }
                    // The write may come after this instance took the partition over (the
                    // previous owner's last write was still in flight at the rebalance):
                    // its escalation then continues here.
                    let take_over = if active.owned_in(&g.owned) {
                        active.claim_timers()
                    } else {
                        Vec::new()
                    };
                    g.active.insert(id, active);
                    self.trim_active(&mut g, inst_now, None);
                    self.arm(take_over);
                    RemoteApplied::Upserted
                }
            }
            (StateKey::Silence(id), Some(StateValue::Silence(s))) => {
                if s.ends_at_ms <= wall_now {
                    g.silences.remove(&id);
                    RemoteApplied::Expired
                } else {
                    match Silence::from_doc(s) {
                        None => RemoteApplied::Invalid,
                        Some(silence) => self.put_remote_silence(&mut g, silence),
                    }
                }
            }
            // `changelog::decode` pairs values with their keys; nothing else reaches here.
            _ => RemoteApplied::Invalid,
        };
        self.metrics.dedup_entries.set(g.marks.len() as i64);
        self.metrics.active_alerts.set(g.active.len() as i64);
        self.metrics.silences.set(g.silences.len() as i64);
        out
    }

    /// Inserts a remote silence; at `max_silences` the oldest goes, as at restore (newest kept).
    pub(super) fn put_remote_silence(&self, g: &mut Inner, silence: Silence) -> RemoteApplied {
        if !g.silences.contains_key(&silence.id) && g.silences.len() >= self.limits.max_silences {
            let oldest = g
                .silences
                .values()
                .min_by_key(|s| s.created_at_ms)
                .map(|s| (s.id, s.created_at_ms));
            match oldest {
                Some((old, at)) if at < silence.created_at_ms => {
                    g.silences.remove(&old);
                    self.metrics.state_evictions.inc();
                }
                _ => {
                    self.metrics.state_evictions.inc();
                    return RemoteApplied::Evicted;
                }
            }
        }
        g.silences.insert(silence.id, silence);
        RemoteApplied::Upserted
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;
    use crate::route::tests::alert;
    use crate::state::document::{Ack, MarkDoc, VERSION};
    use crate::state::fixtures::{alert_doc, book, p, silence_doc};
    use vigil_schemas::Severity;

    fn writes(b: &AlertBook) -> u64 {
        ["mark", "alert", "silence", "tombstone"]
            .iter()
            .map(|k| b.metrics.state_writes(k))
            .sum()
    }

    #[test]
    fn remote_writes_change_memory_only_and_honour_expiry_and_bounds() {
        let b = book(2, 10);
        let now = now_ms();
        let (other, mine) = (Uuid::new_v4(), Uuid::new_v4());
        let mark = |exp: i64| {
            Some(StateValue::Mark(MarkDoc {
                v: VERSION,
                alert_id: other,
                expires_at_ms: exp,
            }))
        };
        let key = |k: &str| StateKey::Mark(k.into());
        assert_eq!(
            b.apply_remote(key("k"), mark(now + 60_000)),
            RemoteApplied::Upserted
        );
        let t = Instant::now();
        let w = Duration::from_secs(60);
        assert_eq!(
            b.mark("k", w, mine, t, &mut p()),
            Some(other),
            "another instance's mark suppresses here"
        );
        assert_eq!(writes(&b), 0, "applying wrote nothing");
        // Bounds: the oldest goes from memory, still without a write.
        b.apply_remote(key("k2"), mark(now + 70_000));
        b.apply_remote(key("k3"), mark(now + 80_000));
        assert_eq!(b.metrics.dedup_entries.get(), 2);
        assert_eq!(b.metrics.state_evictions.get(), 1);
        assert_eq!(b.mark("k", w, mine, t, &mut p()), None, "k was evicted");
        assert_eq!(
            writes(&b),
            1,
            "the local mark wrote; the remote mark it evicted left memory only"
        );
        // Expired by wall clock: removes what was held. Tombstone: removes.
        assert_eq!(
            b.apply_remote(key("k2"), mark(now - 1)),
            RemoteApplied::Expired
        );
        assert_eq!(b.apply_remote(key("k3"), None), RemoteApplied::Removed);
        assert_eq!(b.mark("k3", w, mine, t, &mut p()), None);

        let a = alert("r1", Severity::High, &[]);
        let doc = alert_doc(&a, now - 1_000, 60_000, 0);
        let akey = StateKey::Alert(a.alert_id);
        b.apply_remote(akey.clone(), Some(StateValue::Alert(Box::new(doc.clone()))));
        assert_eq!(b.acked(a.alert_id), Some(false));
        let mut acked = doc.clone();
        acked.ack = Some(Ack {
            by: "alice".into(),
            comment: String::new(),
            at_ms: now,
        });
        b.apply_remote(akey.clone(), Some(StateValue::Alert(Box::new(acked))));
        assert_eq!(b.acked(a.alert_id), Some(true), "a remote ack stops timers");
        // The owner's later write that had not seen the ack does not undo it here.
        let mut stale = doc;
        stale.grouped = 5;
        b.apply_remote(akey.clone(), Some(StateValue::Alert(Box::new(stale))));
        assert_eq!(b.acked(a.alert_id), Some(true));
        assert_eq!(b.list_active()[0]["grouped_alerts"], 5);

        let silence = silence_doc("r9", now, now + 60_000);
        let skey = StateKey::Silence(silence.id);
        b.apply_remote(skey.clone(), Some(StateValue::Silence(silence.clone())));
        assert_eq!(
            b.silenced_by(&alert("r9", Severity::Low, &[])),
            Some(silence.id)
        );
        b.apply_remote(skey.clone(), None);
        assert_eq!(b.silenced_by(&alert("r9", Severity::Low, &[])), None);
        assert_eq!(
            writes(&b),
            2,
            "nothing applied remotely wrote, only local marks"
        );
    }
}
